/* Registry event topics and payloads (shared/spec/provisioning.md §5.3). Field order follows
 * AWS's documented examples. Where AWS documents no value iotmock chooses, and says so:
 *   - an absent description is null;
 *   - deprecationDate is the deprecation time in epoch milliseconds, like timestamp (null while the
 *     type is not deprecated);
 *   - propagatingAttributes is [] (iotmock does not model them);
 *   - a group created with a parent is added to that parent's hierarchy, and a deleted child group
 *     removed from it (the only ways iotmock changes a parent; AWS documents no trigger);
 *   - thing type associations use the topic and ADDED/REMOVED operations of the spec, which
 *     newer sources use; an older AWS page showed CREATED/DELETED on a shorter topic. */
#include "registry_events.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

/* The last topic level per operation. */
static const char *const SUFFIXES[] = {
    [REGISTRY_OP_CREATED] = "created", [REGISTRY_OP_UPDATED] = "updated",
    [REGISTRY_OP_DELETED] = "deleted", [REGISTRY_OP_ADDED] = "added",
    [REGISTRY_OP_REMOVED] = "removed",
};

static const char *text(const cJSON *fields, const char *key)
{
    return cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(fields, key));
}

static long long number(const cJSON *fields, const char *key)
{
    return (long long)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(fields, key));
}

/* Integers are written as integers (no exponent, no fraction). */
static bool add_integer(cJSON *o, const char *name, long long v)
{
    char digits[24];
    snprintf(digits, sizeof(digits), "%lld", v);
    return cJSON_AddRawToObject(o, name, digits) != NULL;
}

static bool add_text(cJSON *o, const char *name, const char *v)
{
    return (v ? cJSON_AddStringToObject(o, name, v) : cJSON_AddNullToObject(o, name)) != NULL;
}

/* A copy of FIELDS' KEY, or FALLBACK (an empty object or array) when it is absent or null. */
static bool add_copy(cJSON *o, const char *name, const cJSON *fields, const char *key, bool array)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(fields, key);
    cJSON *copy = v != NULL && !cJSON_IsNull(v) ? cJSON_Duplicate(v, true)
                  : array                       ? cJSON_CreateArray()
                                                : cJSON_CreateObject();
    if (copy == NULL || !cJSON_AddItemToObject(o, name, copy)) {
        cJSON_Delete(copy);
        return false;
    }
    return true;
}

/* "arn:aws:iot:<region>:<account>:<kind>/<name>", malloc'd. */
static char *arn(const struct registry_events_account *acct, const char *kind, const char *name)
{
    size_t n = strlen(acct->region) + strlen(acct->account_id) + strlen(kind) + strlen(name) + 16;
    char *s = malloc(n);
    if (s != NULL)
        snprintf(s, n, "arn:aws:iot:%s:%s:%s/%s", acct->region, acct->account_id, kind, name);
    return s;
}

static bool add_arn(cJSON *o, const char *field, const struct registry_events_account *acct,
                    const char *kind, const char *name)
{
    char *s = arn(acct, kind, name);
    bool ok = s != NULL && cJSON_AddStringToObject(o, field, s) != NULL;
    free(s);
    return ok;
}

/* eventType, eventId, timestamp, operation, accountId: how most events begin. */
static cJSON *head(const struct registry_change *c, const char *type, const char *event_id,
                   const struct registry_events_account *acct)
{
    cJSON *o = cJSON_CreateObject();
    bool ok = o != NULL && cJSON_AddStringToObject(o, "eventType", type) != NULL &&
              cJSON_AddStringToObject(o, "eventId", event_id) != NULL &&
              add_integer(o, "timestamp", c->timestamp_ms) &&
              cJSON_AddStringToObject(o, "operation", registry_operation_name(c->op)) != NULL &&
              cJSON_AddStringToObject(o, "accountId", acct->account_id) != NULL;
    if (!ok) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

static bool thing_body(cJSON *o, const cJSON *f)
{
    return add_text(o, "thingId", text(f, "id")) && add_text(o, "thingName", text(f, "name")) &&
           add_integer(o, "versionNumber", number(f, "version")) &&
           add_text(o, "thingTypeName", text(f, "type_name")) &&
           add_copy(o, "attributes", f, "attributes", false);
}

static bool type_body(cJSON *o, const cJSON *f)
{
    bool deprecated = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(f, "deprecated"));
    long long at = number(f, "deprecated_at");
    return add_text(o, "thingTypeId", text(f, "id")) &&
           add_text(o, "thingTypeName", text(f, "name")) &&
           cJSON_AddBoolToObject(o, "isDeprecated", deprecated) != NULL &&
           (deprecated && at > 0 ? add_integer(o, "deprecationDate", at * 1000)
                                 : cJSON_AddNullToObject(o, "deprecationDate") != NULL) &&
           add_copy(o, "searchableAttributes", f, "searchable", true) &&
           cJSON_AddArrayToObject(o, "propagatingAttributes") != NULL &&
           add_text(o, "description", text(f, "description"));
}

static bool ancestors(cJSON *o, const cJSON *f, const struct registry_events_account *acct)
{
    cJSON *list = cJSON_AddArrayToObject(o, "rootToParentThingGroups");
    const cJSON *g;
    cJSON_ArrayForEach(g, cJSON_GetObjectItemCaseSensitive(f, "ancestors"))
    {
        const char *name = text(g, "name");
        cJSON *item = list && name ? cJSON_CreateObject() : NULL;
        if (item == NULL || !cJSON_AddItemToArray(list, item)) {
            cJSON_Delete(item);
            return false;
        }
        if (!add_arn(item, "groupArn", acct, "thinggroup", name) ||
            !add_text(item, "groupId", text(g, "id")))
            return false;
    }
    return list != NULL;
}

static bool group_body(cJSON *o, const cJSON *f, const struct registry_events_account *acct)
{
    return add_text(o, "thingGroupId", text(f, "id")) &&
           add_text(o, "thingGroupName", text(f, "name")) &&
           add_integer(o, "versionNumber", number(f, "version")) &&
           add_text(o, "parentGroupName", text(f, "parent")) &&
           add_text(o, "parentGroupId", text(f, "parent_id")) &&
           add_text(o, "description", text(f, "description")) && ancestors(o, f, acct) &&
           add_copy(o, "attributes", f, "attributes", false) &&
           cJSON_AddNullToObject(o, "dynamicGroupMappingId") != NULL;
}

/* The parent first, then the child: the group the change is about. */
static bool hierarchy_body(cJSON *o, const cJSON *f)
{
    return add_text(o, "thingGroupId", text(f, "parent_id")) &&
           add_text(o, "thingGroupName", text(f, "parent")) &&
           add_text(o, "childGroupId", text(f, "id")) &&
           add_text(o, "childGroupName", text(f, "name"));
}

static bool membership_body(cJSON *o, const cJSON *f, const struct registry_events_account *acct)
{
    return add_arn(o, "groupArn", acct, "thinggroup", text(f, "group")) &&
           add_text(o, "groupId", text(f, "group_id")) &&
           add_arn(o, "thingArn", acct, "thing", text(f, "thing")) &&
           add_text(o, "thingId", text(f, "thing_id")) &&
           add_text(o, "membershipId", text(f, "membership_id"));
}

/* AWS's example has its own order and no accountId. */
static cJSON *association(const struct registry_change *c, const char *event_id)
{
    const cJSON *f = c->fields;
    cJSON *o = cJSON_CreateObject();
    bool ok = o != NULL && cJSON_AddStringToObject(o, "eventId", event_id) != NULL &&
              cJSON_AddStringToObject(o, "eventType", "THING_TYPE_ASSOCIATION_EVENT") != NULL &&
              cJSON_AddStringToObject(o, "operation", registry_operation_name(c->op)) != NULL &&
              add_text(o, "thingId", text(f, "thing_id")) &&
              add_text(o, "thingName", text(f, "thing")) &&
              add_text(o, "thingTypeName", text(f, "type")) &&
              add_integer(o, "timestamp", c->timestamp_ms);
    if (!ok) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

/* The payload object of C, or NULL when out of memory. */
static cJSON *payload(const struct registry_change *c, const struct registry_events_account *acct,
                      const char *event_id)
{
    static const char *const TYPES[] = {
        [REGISTRY_EVENT_THING] = "THING_EVENT",
        [REGISTRY_EVENT_THING_TYPE] = "THING_TYPE_EVENT",
        [REGISTRY_EVENT_THING_GROUP] = "THING_GROUP_EVENT",
        [REGISTRY_EVENT_THING_GROUP_MEMBERSHIP] = "THING_GROUP_MEMBERSHIP_EVENT",
        [REGISTRY_EVENT_THING_GROUP_HIERARCHY] = "THING_GROUP_HIERARCHY_EVENT",
    };
    if (c->type == REGISTRY_EVENT_THING_TYPE_ASSOCIATION)
        return association(c, event_id);
    cJSON *o = head(c, TYPES[c->type], event_id, acct);
    bool ok = o != NULL;
    if (ok && c->type == REGISTRY_EVENT_THING)
        ok = thing_body(o, c->fields);
    else if (ok && c->type == REGISTRY_EVENT_THING_TYPE)
        ok = type_body(o, c->fields);
    else if (ok && c->type == REGISTRY_EVENT_THING_GROUP)
        ok = group_body(o, c->fields, acct);
    else if (ok && c->type == REGISTRY_EVENT_THING_GROUP_HIERARCHY)
        ok = hierarchy_body(o, c->fields);
    else if (ok)
        ok = membership_body(o, c->fields, acct);
    if (!ok) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

/* PARTS joined with '/', malloc'd; NULL if a part is missing or out of memory. */
static char *join(const char *const *parts, size_t n)
{
    size_t len = 0;
    for (size_t i = 0; i < n; i++) {
        if (parts[i] == NULL)
            return NULL;
        len += strlen(parts[i]) + 1;
    }
    char *s = malloc(len);
    if (s == NULL)
        return NULL;
    s[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        if (i > 0)
            strcat(s, "/");
        strcat(s, parts[i]);
    }
    return s;
}

/* The topic of C (§5.3), malloc'd; NULL if a name it needs is missing or out of memory. */
static char *topic(const struct registry_change *c)
{
    const cJSON *f = c->fields;
    const char *op = SUFFIXES[c->op];
    switch (c->type) {
    case REGISTRY_EVENT_THING:
        return join((const char *[]){"$aws/events/thing", text(f, "name"), op}, 3);
    case REGISTRY_EVENT_THING_TYPE:
        return join((const char *[]){"$aws/events/thingType", text(f, "name"), op}, 3);
    case REGISTRY_EVENT_THING_GROUP:
        return join((const char *[]){"$aws/events/thingGroup", text(f, "name"), op}, 3);
    case REGISTRY_EVENT_THING_GROUP_MEMBERSHIP:
        return join((const char *[]){"$aws/events/thingGroupMembership/thingGroup",
                                     text(f, "group"), "thing", text(f, "thing"), op},
                    5);
    case REGISTRY_EVENT_THING_GROUP_HIERARCHY:
        return join((const char *[]){"$aws/events/thingGroupHierarchy/thingGroup",
                                     text(f, "parent"), "childThingGroup", text(f, "name"), op},
                    5);
    case REGISTRY_EVENT_THING_TYPE_ASSOCIATION:
        return join((const char *[]){"$aws/events/thingTypeAssociation/thing", text(f, "thing"),
                                     "thingType", text(f, "type"), op},
                    5);
    default:
        return NULL;
    }
}

enum iot_err registry_events_build(const struct registry_change *c,
                                   const struct registry_events_account *acct, const char *event_id,
                                   struct events_message *out)
{
    *out = (struct events_message){0};
    if ((size_t)c->type >= REGISTRY_EVENT_TYPE_COUNT ||
        (size_t)c->op >= sizeof(SUFFIXES) / sizeof(SUFFIXES[0]))
        return IOT_ERR_INVALID_REQUEST;
    char *t = topic(c);
    if (t == NULL)
        return IOT_ERR_INVALID_REQUEST;
    cJSON *o = payload(c, acct, event_id);
    char *p = o ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    if (p == NULL) {
        free(t);
        return IOT_ERR_NOMEM;
    }
    *out = (struct events_message){.topic = t, .payload = p, .payload_len = strlen(p)};
    return IOT_OK;
}
