/* Per-client-id session records: versionNumber, sessionIdentifier, filters
 * (shared/spec/broker-and-policy.md §4.7, §5.1). Offline records sit on a list in the order they
 * went offline, so expiry looks only at the oldest. */
#include "sessions.h"

#include <stdlib.h>
#include <string.h>

#include <uthash.h>
#include <utlist.h>
#include <uuid/uuid.h>

struct record {
    struct session pub; /* first: a struct session * is a struct record * */
    char *client_id;
    UT_hash_handle hh;
    struct record *prev, *next; /* the offline list, oldest first */
};

struct sessions {
    struct record *by_id;
    struct record *offline;
    size_t n_offline;
    size_t max_offline;
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
    subscriptions_free(r->pub.subs);
    free(r->client_id);
    free(r);
}

void sessions_free(struct sessions *s)
{
    if (s == NULL)
        return;
    struct record *r, *tmp;
    HASH_ITER(hh, s->by_id, r, tmp)
    record_free(s, r);
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

static struct record *record_new(struct sessions *s, const char *client_id)
{
    struct record *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return NULL;
    r->client_id = strdup(client_id);
    r->pub.subs = subscriptions_new();
    if (r->client_id == NULL || r->pub.subs == NULL) {
        subscriptions_free(r->pub.subs);
        free(r->client_id);
        free(r);
        return NULL;
    }
    r->pub.client_id = r->client_id;
    r->pub.version = -1;
    HASH_ADD_KEYPTR(hh, s->by_id, r->client_id, strlen(r->client_id), r);
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
