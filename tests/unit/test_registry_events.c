/* Registry events (provisioning.md §5.3): the exact topic and payload of each event type, and the
 * registry's change hook (only committed changes, only enabled types, savepoints respected). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "check.h"
#include "registry.h"
#include "registry_events.h"

#define EVENT_ID "f5ae9b94-8b8e-4d8e-8c8f-b3266dd89853"
#define TS 1234567890123LL

static const struct registry_events_account acct = {.account_id = "123456789012",
                                                    .region = "us-east-1"};

/* Builds the event of TYPE/OP with FIELDS (JSON text) and checks its topic and payload. */
static void expect(enum registry_event_type type, enum registry_operation op, const char *fields,
                   const char *topic, const char *payload)
{
    cJSON *f = cJSON_Parse(fields);
    CHECK(f != NULL);
    struct registry_change c = {.type = type, .op = op, .timestamp_ms = TS, .fields = f};
    struct events_message m;
    CHECK_INT(registry_events_build(&c, &acct, EVENT_ID, &m), IOT_OK);
    CHECK_STR(m.topic, topic);
    CHECK_STR(m.payload, payload);
    CHECK_INT(m.payload_len, m.payload ? strlen(m.payload) : 0);
    events_message_clear(&m);
    cJSON_Delete(f);
}

static void test_refusals(void)
{
    struct events_message m = {.topic = (char *)"stale"};
    cJSON *f = cJSON_Parse("{\"id\":\"x\"}"); /* no name: no topic */
    struct registry_change c = {
        .type = REGISTRY_EVENT_THING, .op = REGISTRY_OP_CREATED, .timestamp_ms = TS, .fields = f};
    CHECK_INT(registry_events_build(&c, &acct, EVENT_ID, &m), IOT_ERR_INVALID_REQUEST);
    CHECK(m.topic == NULL && m.payload == NULL);
    c.type = REGISTRY_EVENT_TYPE_COUNT;
    CHECK_INT(registry_events_build(&c, &acct, EVENT_ID, &m), IOT_ERR_INVALID_REQUEST);
    c.type = REGISTRY_EVENT_THING_GROUP_MEMBERSHIP; /* needs group and thing */
    CHECK_INT(registry_events_build(&c, &acct, EVENT_ID, &m), IOT_ERR_INVALID_REQUEST);
    cJSON_Delete(f);
    CHECK(registry_event_type_name(REGISTRY_EVENT_TYPE_COUNT) == NULL);
    CHECK_STR(registry_event_type_name(REGISTRY_EVENT_THING_GROUP_MEMBERSHIP),
              "THING_GROUP_MEMBERSHIP");
    CHECK_STR(registry_operation_name((enum registry_operation)42), "UNKNOWN");
}

static void test_thing_payloads(void)
{
    expect(
        REGISTRY_EVENT_THING, REGISTRY_OP_CREATED,
        "{\"name\":\"MyThing\",\"id\":\"b604f69c-aa9a-4d4a-829e-c480e958a0b5\","
        "\"type_name\":null,\"attributes\":{\"attribute1\":\"value1\"},\"version\":1}",
        "$aws/events/thing/MyThing/created",
        "{\"eventType\":\"THING_EVENT\",\"eventId\":\"" EVENT_ID "\","
        "\"timestamp\":1234567890123,\"operation\":\"CREATED\",\"accountId\":\"123456789012\","
        "\"thingId\":\"b604f69c-aa9a-4d4a-829e-c480e958a0b5\",\"thingName\":\"MyThing\","
        "\"versionNumber\":1,\"thingTypeName\":null,\"attributes\":{\"attribute1\":\"value1\"}}");
    expect(REGISTRY_EVENT_THING, REGISTRY_OP_UPDATED,
           "{\"name\":\"t\",\"id\":\"i\",\"type_name\":\"Lamp\",\"version\":12}",
           "$aws/events/thing/t/updated",
           "{\"eventType\":\"THING_EVENT\",\"eventId\":\"" EVENT_ID "\","
           "\"timestamp\":1234567890123,\"operation\":\"UPDATED\",\"accountId\":\"123456789012\","
           "\"thingId\":\"i\",\"thingName\":\"t\",\"versionNumber\":12,\"thingTypeName\":\"Lamp\","
           "\"attributes\":{}}");
    expect(REGISTRY_EVENT_THING, REGISTRY_OP_DELETED,
           "{\"name\":\"t\",\"id\":\"i\",\"type_name\":null,\"attributes\":{},\"version\":3}",
           "$aws/events/thing/t/deleted",
           "{\"eventType\":\"THING_EVENT\",\"eventId\":\"" EVENT_ID "\","
           "\"timestamp\":1234567890123,\"operation\":\"DELETED\",\"accountId\":\"123456789012\","
           "\"thingId\":\"i\",\"thingName\":\"t\",\"versionNumber\":3,\"thingTypeName\":null,"
           "\"attributes\":{}}");
}

static void test_type_and_group_payloads(void)
{
    expect(REGISTRY_EVENT_THING_TYPE, REGISTRY_OP_UPDATED,
           "{\"name\":\"Lamp\",\"id\":\"ty\",\"description\":\"A lamp\",\"searchable\":[\"w\"],"
           "\"deprecated\":true,\"deprecated_at\":1700000000}",
           "$aws/events/thingType/Lamp/updated",
           "{\"eventType\":\"THING_TYPE_EVENT\",\"eventId\":\"" EVENT_ID "\","
           "\"timestamp\":1234567890123,\"operation\":\"UPDATED\",\"accountId\":\"123456789012\","
           "\"thingTypeId\":\"ty\",\"thingTypeName\":\"Lamp\",\"isDeprecated\":true,"
           "\"deprecationDate\":1700000000000,\"searchableAttributes\":[\"w\"],"
           "\"propagatingAttributes\":[],\"description\":\"A lamp\"}");
    expect(REGISTRY_EVENT_THING_TYPE, REGISTRY_OP_CREATED,
           "{\"name\":\"Lamp\",\"id\":\"ty\",\"description\":null,\"searchable\":[],"
           "\"deprecated\":false,\"deprecated_at\":null}",
           "$aws/events/thingType/Lamp/created",
           "{\"eventType\":\"THING_TYPE_EVENT\",\"eventId\":\"" EVENT_ID "\","
           "\"timestamp\":1234567890123,\"operation\":\"CREATED\",\"accountId\":\"123456789012\","
           "\"thingTypeId\":\"ty\",\"thingTypeName\":\"Lamp\",\"isDeprecated\":false,"
           "\"deprecationDate\":null,\"searchableAttributes\":[],"
           "\"propagatingAttributes\":[],\"description\":null}");
    expect(
        REGISTRY_EVENT_THING_GROUP, REGISTRY_OP_CREATED,
        "{\"name\":\"leaf\",\"id\":\"g3\",\"description\":\"d\",\"parent\":\"mid\","
        "\"parent_id\":\"g2\",\"attributes\":{\"a\":\"1\"},\"version\":1,"
        "\"ancestors\":[{\"name\":\"root\",\"id\":\"g1\"},{\"name\":\"mid\",\"id\":\"g2\"}]}",
        "$aws/events/thingGroup/leaf/created",
        "{\"eventType\":\"THING_GROUP_EVENT\",\"eventId\":\"" EVENT_ID "\","
        "\"timestamp\":1234567890123,\"operation\":\"CREATED\",\"accountId\":\"123456789012\","
        "\"thingGroupId\":\"g3\",\"thingGroupName\":\"leaf\",\"versionNumber\":1,"
        "\"parentGroupName\":\"mid\",\"parentGroupId\":\"g2\",\"description\":\"d\","
        "\"rootToParentThingGroups\":["
        "{\"groupArn\":\"arn:aws:iot:us-east-1:123456789012:thinggroup/root\",\"groupId\":\"g1\"},"
        "{\"groupArn\":\"arn:aws:iot:us-east-1:123456789012:thinggroup/mid\",\"groupId\":\"g2\"}],"
        "\"attributes\":{\"a\":\"1\"},\"dynamicGroupMappingId\":null}");
    expect(REGISTRY_EVENT_THING_GROUP, REGISTRY_OP_DELETED,
           "{\"name\":\"root\",\"id\":\"g1\",\"description\":null,\"parent\":null,"
           "\"parent_id\":null,\"attributes\":{},\"version\":1,\"ancestors\":[]}",
           "$aws/events/thingGroup/root/deleted",
           "{\"eventType\":\"THING_GROUP_EVENT\",\"eventId\":\"" EVENT_ID "\","
           "\"timestamp\":1234567890123,\"operation\":\"DELETED\",\"accountId\":\"123456789012\","
           "\"thingGroupId\":\"g1\",\"thingGroupName\":\"root\",\"versionNumber\":1,"
           "\"parentGroupName\":null,\"parentGroupId\":null,\"description\":null,"
           "\"rootToParentThingGroups\":[],\"attributes\":{},\"dynamicGroupMappingId\":null}");
}

static void test_membership_and_association_payloads(void)
{
    expect(REGISTRY_EVENT_THING_GROUP_MEMBERSHIP, REGISTRY_OP_ADDED,
           "{\"group\":\"G\",\"group_id\":\"gid\",\"thing\":\"T\",\"thing_id\":\"tid\","
           "\"membership_id\":\"mid\"}",
           "$aws/events/thingGroupMembership/thingGroup/G/thing/T/added",
           "{\"eventType\":\"THING_GROUP_MEMBERSHIP_EVENT\",\"eventId\":\"" EVENT_ID "\","
           "\"timestamp\":1234567890123,\"operation\":\"ADDED\",\"accountId\":\"123456789012\","
           "\"groupArn\":\"arn:aws:iot:us-east-1:123456789012:thinggroup/G\",\"groupId\":\"gid\","
           "\"thingArn\":\"arn:aws:iot:us-east-1:123456789012:thing/T\",\"thingId\":\"tid\","
           "\"membershipId\":\"mid\"}");
    expect(REGISTRY_EVENT_THING_GROUP_HIERARCHY, REGISTRY_OP_ADDED,
           "{\"name\":\"leaf\",\"id\":\"g3\",\"description\":null,\"parent\":\"mid\","
           "\"parent_id\":\"g2\",\"attributes\":{},\"version\":1,\"ancestors\":[]}",
           "$aws/events/thingGroupHierarchy/thingGroup/mid/childThingGroup/leaf/added",
           "{\"eventType\":\"THING_GROUP_HIERARCHY_EVENT\",\"eventId\":\"" EVENT_ID "\","
           "\"timestamp\":1234567890123,\"operation\":\"ADDED\",\"accountId\":\"123456789012\","
           "\"thingGroupId\":\"g2\",\"thingGroupName\":\"mid\",\"childGroupId\":\"g3\","
           "\"childGroupName\":\"leaf\"}");
    expect(REGISTRY_EVENT_THING_TYPE_ASSOCIATION, REGISTRY_OP_REMOVED,
           "{\"thing\":\"T\",\"thing_id\":\"tid\",\"type\":\"Lamp\"}",
           "$aws/events/thingTypeAssociation/thing/T/thingType/Lamp/removed",
           "{\"eventId\":\"" EVENT_ID "\",\"eventType\":\"THING_TYPE_ASSOCIATION_EVENT\","
           "\"operation\":\"REMOVED\",\"thingId\":\"tid\",\"thingName\":\"T\","
           "\"thingTypeName\":\"Lamp\",\"timestamp\":1234567890123}");
}

/* ---- the change hook ---- */

/* What the hook saw: "<TYPE> <topic>" per change, and the last change's fields. */
static char seen[4096];
static int n_seen;
static cJSON *last_fields;

static void on_change(const struct registry_change *c, void *arg)
{
    struct events_message m;
    CHECK(arg == &seen);
    if (registry_events_build(c, &acct, EVENT_ID, &m) != IOT_OK)
        return;
    size_t len = strlen(seen);
    snprintf(seen + len, sizeof(seen) - len, "%s%s %s", len ? ";" : "",
             registry_event_type_name(c->type), m.topic);
    events_message_clear(&m);
    cJSON_Delete(last_fields);
    last_fields = cJSON_Duplicate(c->fields, true);
    CHECK(c->timestamp_ms > 1600000000000LL);
    n_seen++;
}

static const char *taken(void)
{
    static char out[sizeof(seen)];
    snprintf(out, sizeof(out), "%s", seen);
    seen[0] = '\0';
    n_seen = 0;
    return out;
}

static const char *field(const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(last_fields, key);
    static char buf[128];
    if (cJSON_IsString(v))
        return v->valuestring;
    snprintf(buf, sizeof(buf), "%g", cJSON_IsNumber(v) ? v->valuedouble : -1.0);
    return buf;
}

static enum iot_err put_thing(struct registry *reg, const char *name, const char *type)
{
    struct registry_thing t = {.name = (char *)name, .type_name = (char *)type};
    return registry_thing_put(reg, &t, NULL);
}

static struct registry *open_with_hook(void)
{
    struct registry *reg = NULL;
    if (registry_open(":memory:", &reg, NULL) != IOT_OK) {
        fprintf(stderr, "registry_open failed\n");
        exit(2);
    }
    registry_set_change_hook(reg, on_change, &seen);
    return reg;
}

static void test_hook_disabled_and_rollbacks(void)
{
    struct registry *reg = open_with_hook();
    /* Every type is disabled by default: nothing is reported. */
    CHECK_INT(put_thing(reg, "quiet", NULL), IOT_OK);
    CHECK_INT(registry_thing_group_put(reg, "g", NULL), IOT_OK);
    CHECK_INT(registry_thing_group_add(reg, "g", "quiet", NULL), IOT_OK);
    CHECK_STR(taken(), "");
    /* Enabling inside a transaction that is rolled back enables nothing. */
    CHECK_INT(registry_begin(reg), IOT_OK);
    CHECK_INT(registry_event_config_set(reg, "THING", true, NULL), IOT_OK);
    registry_rollback(reg);
    CHECK_INT(put_thing(reg, "quiet", NULL), IOT_OK);
    CHECK_STR(taken(), "");

    CHECK_INT(registry_event_config_set(reg, "THING", true, NULL), IOT_OK);
    CHECK_INT(put_thing(reg, "a", NULL), IOT_OK);
    CHECK_STR(taken(), "THING $aws/events/thing/a/created");
    CHECK_STR(field("version"), "1");
    /* A rolled-back transaction reports nothing; a committed one reports at its commit. */
    CHECK_INT(registry_begin(reg), IOT_OK);
    CHECK_INT(put_thing(reg, "b", NULL), IOT_OK);
    registry_rollback(reg);
    CHECK_STR(taken(), "");
    CHECK_INT(registry_begin(reg), IOT_OK);
    CHECK_INT(put_thing(reg, "c", NULL), IOT_OK);
    CHECK_INT(put_thing(reg, "a", NULL), IOT_OK);
    CHECK_INT(n_seen, 0);
    CHECK_INT(registry_commit(reg), IOT_OK);
    CHECK_STR(taken(), "THING $aws/events/thing/c/created;THING $aws/events/thing/a/updated");
    CHECK_STR(field("version"), "2");
    /* A rolled-back inner level drops only its own changes. */
    CHECK_INT(registry_begin(reg), IOT_OK);
    CHECK_INT(put_thing(reg, "d", NULL), IOT_OK);
    CHECK_INT(registry_begin(reg), IOT_OK);
    CHECK_INT(put_thing(reg, "e", NULL), IOT_OK);
    registry_rollback(reg);
    CHECK_INT(put_thing(reg, "f", NULL), IOT_OK);
    CHECK_INT(registry_commit(reg), IOT_OK);
    CHECK_STR(taken(), "THING $aws/events/thing/d/created;THING $aws/events/thing/f/created");
    /* A failed call reports nothing; a deletion reports the thing as it was. */
    CHECK_INT(put_thing(reg, "g", "NoSuchType"), IOT_ERR_NOT_FOUND);
    CHECK_INT(registry_thing_delete(reg, "nobody", NULL), IOT_ERR_NOT_FOUND);
    CHECK_STR(taken(), "");
    CHECK_INT(registry_thing_delete(reg, "a", NULL), IOT_OK);
    CHECK_STR(taken(), "THING $aws/events/thing/a/deleted");
    CHECK_STR(field("version"), "2");
    /* A reset forgets the configuration: events are off again. */
    CHECK_INT(registry_reset(reg, NULL), IOT_OK);
    CHECK_INT(put_thing(reg, "a", NULL), IOT_OK);
    CHECK_STR(taken(), "");
    registry_close(reg);
}

static void test_hook_families(void)
{
    struct registry *reg = open_with_hook();
    static const char *const types[] = {"THING_TYPE", "THING_GROUP", "THING_GROUP_MEMBERSHIP",
                                        "THING_TYPE_ASSOCIATION", "THING_GROUP_HIERARCHY"};
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
        CHECK_INT(registry_event_config_set(reg, types[i], true, NULL), IOT_OK);
    struct registry_thing_type ty = {.name = (char *)"Lamp", .description = (char *)"d"};
    CHECK_INT(registry_thing_type_create(reg, &ty, NULL), IOT_OK);
    CHECK_INT(registry_thing_type_put(reg, "Lamp", NULL), IOT_OK); /* exists: no event */
    CHECK_INT(registry_thing_type_put(reg, "Bulb", NULL), IOT_OK);
    CHECK_STR(taken(), "THING_TYPE $aws/events/thingType/Lamp/created;"
                       "THING_TYPE $aws/events/thingType/Bulb/created");
    CHECK_INT(registry_thing_type_deprecate(reg, "Bulb", true, NULL), IOT_OK);
    CHECK_STR(taken(), "THING_TYPE $aws/events/thingType/Bulb/updated");
    CHECK(cJSON_IsTrue(cJSON_GetObjectItem(last_fields, "deprecated")));
    CHECK_INT(registry_thing_type_delete(reg, "Bulb", NULL), IOT_OK);
    CHECK_STR(taken(), "THING_TYPE $aws/events/thingType/Bulb/deleted");

    /* THING is off: only the association is reported. */
    CHECK_INT(put_thing(reg, "t", "Lamp"), IOT_OK);
    CHECK_STR(taken(), "THING_TYPE_ASSOCIATION $aws/events/thingTypeAssociation/thing/t/thingType/"
                       "Lamp/added");
    CHECK_INT(put_thing(reg, "t", "Lamp"), IOT_OK); /* same type: no association event */
    CHECK_INT(put_thing(reg, "t", NULL), IOT_OK);
    CHECK_STR(taken(), "THING_TYPE_ASSOCIATION $aws/events/thingTypeAssociation/thing/t/thingType/"
                       "Lamp/removed");

    struct registry_thing_group root = {.name = (char *)"root"};
    struct registry_thing_group leaf = {.name = (char *)"leaf", .parent = (char *)"root"};
    CHECK_INT(registry_thing_group_create(reg, &root, NULL), IOT_OK);
    CHECK_INT(registry_thing_group_create(reg, &leaf, NULL), IOT_OK);
    CHECK_INT(registry_thing_group_create(reg, &leaf, NULL), IOT_ERR_ALREADY_EXISTS);
    CHECK_STR(taken(), "THING_GROUP $aws/events/thingGroup/root/created;"
                       "THING_GROUP $aws/events/thingGroup/leaf/created;"
                       "THING_GROUP_HIERARCHY $aws/events/thingGroupHierarchy/thingGroup/root/"
                       "childThingGroup/leaf/added");
    CHECK_STR(field("parent"), "root");
    const cJSON *up = cJSON_GetObjectItem(last_fields, "ancestors");
    CHECK_INT(cJSON_GetArraySize(up), 1);
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetArrayItem(up, 0), "name")), "root");
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetArrayItem(up, 0), "id")),
              field("parent_id"));

    CHECK_INT(registry_thing_group_add(reg, "leaf", "t", NULL), IOT_OK);
    CHECK_STR(taken(), "THING_GROUP_MEMBERSHIP $aws/events/thingGroupMembership/thingGroup/leaf/"
                       "thing/t/added");
    char membership[64];
    snprintf(membership, sizeof(membership), "%s", field("membership_id"));
    CHECK_INT(strlen(membership), 36);
    CHECK_INT(registry_thing_group_add(reg, "leaf", "t", NULL), IOT_OK);    /* already: no event */
    CHECK_INT(registry_thing_group_remove(reg, "root", "t", NULL), IOT_OK); /* not a member */
    CHECK_STR(taken(), "");
    CHECK_INT(registry_thing_group_remove(reg, "leaf", "t", NULL), IOT_OK);
    CHECK_STR(taken(), "THING_GROUP_MEMBERSHIP $aws/events/thingGroupMembership/thingGroup/leaf/"
                       "thing/t/removed");
    CHECK_STR(field("membership_id"), membership);
    CHECK_INT(registry_thing_group_delete(reg, "root", NULL), IOT_ERR_DELETE_CONFLICT);
    CHECK_INT(registry_thing_group_delete(reg, "leaf", NULL), IOT_OK);
    CHECK_STR(taken(), "THING_GROUP_HIERARCHY $aws/events/thingGroupHierarchy/thingGroup/root/"
                       "childThingGroup/leaf/removed;"
                       "THING_GROUP $aws/events/thingGroup/leaf/deleted");
    /* Without a hook nothing is recorded, enabled or not. */
    registry_set_change_hook(reg, NULL, NULL);
    CHECK_INT(registry_thing_group_delete(reg, "root", NULL), IOT_OK);
    CHECK_STR(taken(), "");
    registry_close(reg);
}

int main(void)
{
    test_refusals();
    test_thing_payloads();
    test_type_and_group_payloads();
    test_membership_and_association_payloads();
    test_hook_disabled_and_rollbacks();
    test_hook_families();
    cJSON_Delete(last_fields);
    return check_summary();
}
