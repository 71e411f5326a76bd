/* Per-client-id session records: versionNumber, sessionIdentifier, filters
 * (shared/spec/broker-and-policy.md §4.7, §5.1). Offline records sit on a list in the order they
 * went offline, so expiry looks only at the oldest.
 *
 * Records outlive the connections they were made for by up to an hour. Taken from the heap one
 * by one, each (with its client id and filter set) was allocated amid the broker's buffers for
 * that connection and stayed behind when those were freed: after 10,000 connections came and
 * went, the broker's heap was a sieve and every later malloc() of the broker's paid for it (15%
 * more CPU per published message, docs/benchmarks.md). So records come from blocks of
 * SESSIONS_BLOCK records each, client id and filter set inside, and a freed record goes back on
 * the table's free list. Blocks are kept until sessions_free(): the table holds on to the memory
 * of its largest size. */
#include "sessions.h"

#include <stdlib.h>
#include <string.h>

#include <uthash.h>
#include <utlist.h>
#include <uuid/uuid.h>

#include "quota.h"

#define SESSIONS_BLOCK 256 /* records per block */

/* Under AddressSanitizer a record off duty is poisoned, so that a pointer kept past
 * sessions_expire() still fails as loudly as after free(). */
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define OFF_DUTY(r) ASAN_POISON_MEMORY_REGION((r), sizeof(*(r)))
#define ON_DUTY(r) ASAN_UNPOISON_MEMORY_REGION((r), sizeof(*(r)))
#else
#define OFF_DUTY(r) ((void)(r))
#define ON_DUTY(r) ((void)(r))
#endif

struct record {
    struct session pub; /* first: a struct session * is a struct record * */
    struct subscriptions subs;
    UT_hash_handle hh;
    struct record *prev, *next; /* the offline list (oldest first), or the free list (next) */
    char *long_id;              /* a client id longer than inline_id holds (limits off) */
    char inline_id[QUOTA_CLIENT_ID_MAX + 1];
};

struct block {
    struct block *next;
    struct record records[SESSIONS_BLOCK];
};

struct sessions {
    struct record *by_id;
    struct record *offline;
    size_t n_offline;
    size_t max_offline;
    struct record *free; /* unused records, linked through next */
    struct block *blocks;
};

struct sessions *sessions_new(size_t max_offline)
{
    struct sessions *s = calloc(1, sizeof(*s));
    if (s)
        s->max_offline = max_offline ? max_offline : SESSIONS_OFFLINE_MAX;
    return s;
}

static void record_free(struct sessions *s, struct record *r)
{
    HASH_DEL(s->by_id, r);
    if (r->pub.connections == 0) {
        DL_DELETE(s->offline, r);
        s->n_offline--;
    }
    subscriptions_clear(&r->subs);
    free(r->long_id);
    r->long_id = NULL;
    r->next = s->free;
    s->free = r;
    OFF_DUTY(r);
}

void sessions_free(struct sessions *s)
{
    if (s == NULL)
        return;
    struct record *r, *tmp;
    HASH_ITER(hh, s->by_id, r, tmp)
    record_free(s, r);
    while (s->blocks != NULL) {
        struct block *b = s->blocks;
        s->blocks = b->next;
        for (size_t i = 0; i < SESSIONS_BLOCK; i++)
            ON_DUTY(&b->records[i]);
        free(b);
    }
    free(s);
}

struct session *sessions_find(struct sessions *s, const char *client_id)
{
    struct record *r = NULL;
    HASH_FIND_STR(s->by_id, client_id, r);
    return r ? &r->pub : NULL;
}

static void new_session_id(struct session *ss)
{
    uuid_t u;
    uuid_generate_random(u);
    uuid_unparse_lower(u, ss->id);
}

/* A record off the free list, a new block's worth of them first if it is empty. */
static struct record *record_take(struct sessions *s)
{
    if (s->free == NULL) {
        struct block *b = malloc(sizeof(*b));
        if (b == NULL)
            return NULL;
        b->next = s->blocks;
        s->blocks = b;
        for (size_t i = SESSIONS_BLOCK; i-- > 0;) {
            b->records[i].next = s->free;
            s->free = &b->records[i];
            OFF_DUTY(&b->records[i]);
        }
    }
    struct record *r = s->free;
    ON_DUTY(r);
    s->free = r->next;
    memset(r, 0, sizeof(*r));
    return r;
}

static struct record *record_new(struct sessions *s, const char *client_id)
{
    size_t len = strlen(client_id);
    struct record *r = record_take(s);
    if (r == NULL)
        return NULL;
    const char *id = r->inline_id;
    if (len < sizeof(r->inline_id)) {
        memcpy(r->inline_id, client_id, len + 1);
    } else if ((id = r->long_id = strdup(client_id)) == NULL) {
        r->next = s->free;
        s->free = r;
        OFF_DUTY(r);
        return NULL;
    }
    subscriptions_init(&r->subs);
    r->pub.subs = &r->subs;
    r->pub.client_id = id;
    r->pub.version = -1;
    HASH_ADD_KEYPTR(hh, s->by_id, id, len, r);
    return r;
}

struct session *sessions_connect(struct sessions *s, const char *client_id, bool persistent,
                                 time_t now)
{
    struct record *r = (struct record *)sessions_find(s, client_id);
    bool fresh = r == NULL;
    if (r == NULL && (r = record_new(s, client_id)) == NULL)
        return NULL;
    struct session *ss = &r->pub;
    if (ss->connections == 0 && !fresh) {
        DL_DELETE(s->offline, r);
        s->n_offline--;
        if (now - ss->offline_since > SESSIONS_RESET_AFTER_S)
            ss->version = -1;
    }
    bool resume = !fresh && persistent && ss->persistent;
    if (!resume) {
        new_session_id(ss);
        subscriptions_clear(ss->subs);
    }
    ss->persistent = persistent;
    ss->version++;
    ss->connections++;
    return ss;
}

void sessions_disconnect(struct sessions *s, struct session *ss, time_t now)
{
    if (ss == NULL || ss->connections == 0)
        return;
    if (--ss->connections > 0)
        return;
    if (!ss->persistent)
        subscriptions_clear(ss->subs);
    ss->offline_since = now;
    struct record *r = (struct record *)ss;
    DL_APPEND(s->offline, r);
    s->n_offline++;
}

size_t sessions_expire(struct sessions *s, time_t now)
{
    size_t n = 0;
    while (s->offline != NULL && (s->n_offline > s->max_offline ||
                                  now - s->offline->pub.offline_since > SESSIONS_RESET_AFTER_S)) {
        record_free(s, s->offline);
        n++;
    }
    return n;
}

size_t sessions_count(const struct sessions *s)
{
    return HASH_COUNT(s->by_id);
}
