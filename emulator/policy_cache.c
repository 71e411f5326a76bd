/* Compiled policies shared by the whole process; see policy_cache.h. One mutex guards the two
 * indexes and the reference counts; compiling happens under it too, so that a document is
 * compiled once even when two threads ask for it at the same moment (compiling takes
 * microseconds, and only happens when a policy version is first used). */
#include "policy_cache.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <uthash.h>

struct entry {
    char *name;
    char *text;
    struct policy *pol;
    unsigned refs;
    bool current;      /* in by_name: the latest document seen for this name */
    UT_hash_handle hh; /* by_name, keyed by name */
    UT_hash_handle hp; /* by_policy, keyed by the pol pointer */
};

struct policy_cache {
    pthread_mutex_t lock;
    struct entry *by_name;
    struct entry *by_policy;
    struct policy_cache_stats stats;
};

struct policy_cache *policy_cache_new(void)
{
    struct policy_cache *pc = calloc(1, sizeof(*pc));
    if (pc != NULL && pthread_mutex_init(&pc->lock, NULL) != 0) {
        free(pc);
        return NULL;
    }
    return pc;
}

static void entry_free(struct entry *e)
{
    policy_free(e->pol);
    free(e->name);
    free(e->text);
    free(e);
}

void policy_cache_free(struct policy_cache *pc)
{
    if (pc == NULL)
        return;
    struct entry *e, *tmp;
    HASH_CLEAR(hh, pc->by_name); /* every entry is also in by_policy */
    HASH_ITER(hp, pc->by_policy, e, tmp)
    {
        HASH_DELETE(hp, pc->by_policy, e);
        entry_free(e);
    }
    pthread_mutex_destroy(&pc->lock);
    free(pc);
}

/* Forgets E as NAME's current document; frees it unless someone still holds it. */
static void retire(struct policy_cache *pc, struct entry *e)
{
    HASH_DELETE(hh, pc->by_name, e);
    e->current = false;
    if (e->refs == 0) {
        HASH_DELETE(hp, pc->by_policy, e);
        entry_free(e);
    }
}

static enum iot_err add(struct policy_cache *pc, const char *name, const char *text,
                        struct entry **out, struct iot_error *err)
{
    struct entry *e = calloc(1, sizeof(*e));
    if (e == NULL || (e->name = strdup(name)) == NULL || (e->text = strdup(text)) == NULL) {
        if (e)
            free(e->name);
        free(e);
        return iot_error_set(err, IOT_ERR_NOMEM, "policy cache: out of memory");
    }
    pc->stats.compiles++;
    enum iot_err rc = policy_compile(name, text, strlen(text), &e->pol, err);
    if (rc != IOT_OK) {
        entry_free(e);
        return rc;
    }
    e->current = true;
    HASH_ADD_KEYPTR(hh, pc->by_name, e->name, strlen(e->name), e);
    HASH_ADD(hp, pc->by_policy, pol, sizeof(e->pol), e);
    *out = e;
    return IOT_OK;
}

enum iot_err policy_cache_get(struct policy_cache *pc, const char *name, const char *text,
                              const struct policy **out, struct iot_error *err)
{
    struct entry *e = NULL;
    enum iot_err rc = IOT_OK;
    *out = NULL;
    pthread_mutex_lock(&pc->lock);
    HASH_FIND(hh, pc->by_name, name, strlen(name), e);
    if (e != NULL && strcmp(e->text, text) == 0) {
        pc->stats.hits++;
    } else {
        struct entry *old = e;
        rc = add(pc, name, text, &e, err);
        if (rc == IOT_OK && old != NULL)
            retire(pc, old); /* a new default version replaced it */
    }
    if (rc == IOT_OK) {
        e->refs++;
        *out = e->pol;
    }
    pthread_mutex_unlock(&pc->lock);
    return rc;
}

void policy_cache_release(struct policy_cache *pc, const struct policy *p)
{
    if (p == NULL)
        return;
    struct entry *e = NULL;
    pthread_mutex_lock(&pc->lock);
    HASH_FIND(hp, pc->by_policy, &p, sizeof(p), e);
    if (e != NULL && e->refs > 0 && --e->refs == 0 && !e->current) {
        HASH_DELETE(hp, pc->by_policy, e);
        entry_free(e);
    }
    pthread_mutex_unlock(&pc->lock);
}

void policy_cache_stats(struct policy_cache *pc, struct policy_cache_stats *out)
{
    pthread_mutex_lock(&pc->lock);
    *out = pc->stats;
    out->entries = HASH_CNT(hp, pc->by_policy);
    pthread_mutex_unlock(&pc->lock);
}
