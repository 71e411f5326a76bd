/* AWS IoT Core's topic, client id and keep-alive limits (shared/spec/broker-and-policy.md §4). */
#include "quota.h"

#include <string.h>
#include <strings.h>

const char *quota_result_text(enum quota_result r)
{
    switch (r) {
    case QUOTA_OK:
        return "";
    case QUOTA_EMPTY:
        return "empty topic, topic filter or share name";
    case QUOTA_TOO_LONG:
        return "longer than AWS IoT allows (topics 256 bytes, client ids 128)";
    case QUOTA_TOO_DEEP:
        return "more than 7 forward slashes";
    case QUOTA_BAD_SHARE:
        return "not a valid $share/<name>/<filter> shared subscription";
    case QUOTA_RESERVED_PREFIX:
        return "client ids starting with $ are reserved for AWS";
    }
    return "invalid";
}

/* After `$aws/rules/<rule>/`, if S starts with it (the rule name may not be empty). */
static const char *skip_rules_prefix(const char *s, const char *end)
{
    if ((size_t)(end - s) <= QUOTA_RULES_PREFIX_LEN ||
        strncasecmp(s, QUOTA_RULES_PREFIX, QUOTA_RULES_PREFIX_LEN) != 0)
        return s;
    const char *rule = s + QUOTA_RULES_PREFIX_LEN;
    const char *slash = memchr(rule, '/', (size_t)(end - rule));
    return slash != NULL && slash != rule ? slash + 1 : s;
}

/* Length and depth of what remains once the exempt prefixes are gone. */
static enum quota_result check_rest(const char *s, const char *end)
{
    s = skip_rules_prefix(s, end);
    if ((size_t)(end - s) > QUOTA_TOPIC_MAX)
        return QUOTA_TOO_LONG;
    int slashes = 0;
    for (const char *p = s; p < end; p++)
        if (*p == '/' && ++slashes > QUOTA_TOPIC_SLASHES_MAX)
            return QUOTA_TOO_DEEP;
    return QUOTA_OK;
}

enum quota_result quota_check_topic(const char *topic, size_t len)
{
    if (topic == NULL || len == 0)
        return QUOTA_EMPTY;
    return check_rest(topic, topic + len);
}

enum quota_result quota_check_filter(const char *filter, size_t len)
{
    if (filter == NULL || len == 0)
        return QUOTA_EMPTY;
    const char *end = filter + len;
    if (len >= QUOTA_SHARE_PREFIX_LEN &&
        memcmp(filter, QUOTA_SHARE_PREFIX, QUOTA_SHARE_PREFIX_LEN) == 0) {
        const char *name = filter + QUOTA_SHARE_PREFIX_LEN;
        const char *slash = memchr(name, '/', (size_t)(end - name));
        if (slash == NULL || slash == name || slash + 1 == end)
            return QUOTA_BAD_SHARE;
        size_t name_len = (size_t)(slash - name);
        if (name_len > QUOTA_SHARE_NAME_MAX || memchr(name, '+', name_len) != NULL ||
            memchr(name, '#', name_len) != NULL)
            return QUOTA_BAD_SHARE;
        filter = slash + 1;
    }
    return check_rest(filter, end);
}

enum quota_result quota_check_client_id(const char *id, size_t len)
{
    if (id == NULL || len == 0)
        return QUOTA_EMPTY;
    if (len > QUOTA_CLIENT_ID_MAX)
        return QUOTA_TOO_LONG;
    if (id[0] == '$')
        return QUOTA_RESERVED_PREFIX;
    return QUOTA_OK;
}

unsigned quota_keepalive(unsigned requested, unsigned max)
{
    if (max == 0)
        max = QUOTA_KEEPALIVE_MAX;
    if (requested == 0 || requested > max)
        return max;
    if (requested < QUOTA_KEEPALIVE_MIN)
        return max < QUOTA_KEEPALIVE_MIN ? max : QUOTA_KEEPALIVE_MIN;
    return requested;
}
