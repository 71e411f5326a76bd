/* A session's topic filters and AWS IoT Core's matching rules (shared/spec/broker-and-policy.md
 * §4.4, §4.8). */
#include "subscriptions.h"

#include <stdlib.h>
#include <string.h>

#include <uthash.h>

#include "quota.h"

struct subscriptions_entry {
    char *filter;
    int qos; /* as granted: what the subscriber asked for */
    UT_hash_handle hh;
};

const char *subscriptions_filter_part(const char *filter)
{
    if (strncmp(filter, QUOTA_SHARE_PREFIX, QUOTA_SHARE_PREFIX_LEN) != 0)
        return filter;
    const char *slash = strchr(filter + QUOTA_SHARE_PREFIX_LEN, '/');
    return slash ? slash + 1 : filter + strlen(filter);
}

enum subscriptions_match subscriptions_match(const char *filter, const char *topic)
{
    const char *f = subscriptions_filter_part(filter), *t = topic;
    if (t[0] == '$' && (f[0] == '+' || f[0] == '#'))
        return SUBSCRIPTIONS_NO_MATCH;
    bool topic_done = false; /* every level of the topic has been matched */
    for (;;) {
        size_t fl = strcspn(f, "/");
        if (fl == 1 && f[0] == '#')
            return topic_done ? SUBSCRIPTIONS_PARENT_ONLY : SUBSCRIPTIONS_MATCH;
        if (topic_done)
            return SUBSCRIPTIONS_NO_MATCH;
        size_t tl = strcspn(t, "/");
        if (!(fl == 1 && f[0] == '+') && (fl != tl || memcmp(f, t, fl) != 0))
            return SUBSCRIPTIONS_NO_MATCH;
        f += fl;
        t += tl;
        if (*f == '\0')
            return *t == '\0' ? SUBSCRIPTIONS_MATCH : SUBSCRIPTIONS_NO_MATCH;
        f++; /* the slash */
        if (*t == '\0')
            topic_done = true;
        else
            t++;
    }
}

bool subscriptions_retained_on_subscribe(const char *filter)
{
    return strncmp(filter, QUOTA_SHARE_PREFIX, QUOTA_SHARE_PREFIX_LEN) != 0 &&
           strpbrk(filter, "+#") == NULL;
}

static bool ends_in_parent_hash(const char *filter)
{
    size_t n = strlen(filter);
    return n >= 2 && filter[n - 1] == '#' && filter[n - 2] == '/';
}

struct subscriptions *subscriptions_new(void)
{
    return calloc(1, sizeof(struct subscriptions));
}

void subscriptions_init(struct subscriptions *s)
{
    *s = (struct subscriptions){0};
}

void subscriptions_clear(struct subscriptions *s)
{
    if (s == NULL)
        return;
    struct subscriptions_entry *e, *tmp;
    HASH_ITER(hh, s->by_filter, e, tmp)
    {
        HASH_DEL(s->by_filter, e);
        free(e->filter);
        free(e);
    }
    s->parent_hashes = 0;
}

void subscriptions_free(struct subscriptions *s)
{
    subscriptions_clear(s);
    free(s);
}

size_t subscriptions_count(const struct subscriptions *s)
{
    return s ? HASH_COUNT(s->by_filter) : 0;
}

static struct subscriptions_entry *find(const struct subscriptions *s, const char *filter)
{
    struct subscriptions_entry *e = NULL;
    HASH_FIND_STR(s->by_filter, filter, e);
    return e;
}

bool subscriptions_has(const struct subscriptions *s, const char *filter)
{
    return s != NULL && find(s, filter) != NULL;
}

enum iot_err subscriptions_add(struct subscriptions *s, const char *filter, int qos)
{
    struct subscriptions_entry *e = find(s, filter);
    if (e != NULL) {
        e->qos = qos; /* subscribing again replaces the subscription */
        return IOT_OK;
    }
    e = calloc(1, sizeof(*e));
    if (e == NULL || (e->filter = strdup(filter)) == NULL) {
        free(e);
        return IOT_ERR_NOMEM;
    }
    e->qos = qos;
    HASH_ADD_KEYPTR(hh, s->by_filter, e->filter, strlen(e->filter), e);
    if (ends_in_parent_hash(subscriptions_filter_part(filter)))
        s->parent_hashes++;
    return IOT_OK;
}

bool subscriptions_remove(struct subscriptions *s, const char *filter)
{
    struct subscriptions_entry *e = s ? find(s, filter) : NULL;
    if (e == NULL)
        return false;
    if (ends_in_parent_hash(subscriptions_filter_part(filter)))
        s->parent_hashes--;
    HASH_DEL(s->by_filter, e);
    free(e->filter);
    free(e);
    return true;
}

void subscriptions_count_matches(const struct subscriptions *s, const char *topic, size_t *aws,
                                 size_t *mqtt)
{
    *aws = *mqtt = 0;
    if (s == NULL || s->parent_hashes == 0)
        return;
    for (const struct subscriptions_entry *e = s->by_filter; e != NULL; e = e->hh.next) {
        switch (subscriptions_match(e->filter, topic)) {
        case SUBSCRIPTIONS_MATCH:
            (*aws)++;
            (*mqtt)++;
            break;
        case SUBSCRIPTIONS_PARENT_ONLY:
            (*mqtt)++;
            break;
        case SUBSCRIPTIONS_NO_MATCH:
            break;
        }
    }
}

size_t subscriptions_matching(const struct subscriptions *s, const char *topic, bool mqtt_rules,
                              int *qos, size_t max)
{
    size_t n = 0;
    for (const struct subscriptions_entry *e = s ? s->by_filter : NULL; e != NULL; e = e->hh.next) {
        enum subscriptions_match m = subscriptions_match(e->filter, topic);
        if (m == SUBSCRIPTIONS_MATCH || (m == SUBSCRIPTIONS_PARENT_ONLY && mqtt_rules)) {
            if (n < max)
                qos[n] = e->qos;
            n++;
        }
    }
    return n;
}
