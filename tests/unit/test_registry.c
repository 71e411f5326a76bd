/* Unit test of the registry: every call, its error paths first, transactions, durability across
 * reopen, token expiry (§1.6) and concurrent use from several threads. */
#include "registry.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "check.h"

#define WRITERS 4
#define CYCLES 200

static struct registry *open_memory(void)
{
    struct registry *reg = NULL;
    struct iot_error err = {0};
    enum iot_err rc = registry_open(":memory:", &reg, &err);
    if (rc != IOT_OK) {
        fprintf(stderr, "registry_open(:memory:): %s\n", err.message);
        exit(2);
    }
    return reg;
}

static void make_id(char out[65], unsigned n)
{
    snprintf(out, 65, "%064x", n);
}

static enum iot_err add_cert(struct registry *reg, const char *id, enum cert_status s)
{
    struct registry_cert c = {.pem = (char *)"-----BEGIN CERTIFICATE-----\n", .status = s};
    snprintf(c.id, sizeof(c.id), "%s", id);
    return registry_cert_insert(reg, &c, NULL);
}

static enum iot_err add_thing(struct registry *reg, const char *name)
{
    struct registry_thing t = {.name = (char *)name};
    return registry_thing_put(reg, &t, NULL);
}

/* "a,b,c" from an array of strings, to compare a whole list at once. */
static const char *joined(const cJSON *list, char *buf, size_t size)
{
    const cJSON *item;
    size_t used = 0;
    if (!cJSON_IsArray(list))
        return "(not an array)";
    buf[0] = '\0';
    cJSON_ArrayForEach(item, list)
    {
        if (!cJSON_IsString(item))
            return "(not a string)";
        used +=
            (size_t)snprintf(buf + used, size - used, "%s%s", used ? "," : "", item->valuestring);
        if (used >= size)
            return "(too long)";
    }
    return buf;
}

/* Joins the list a list call produced (or names its error) and frees it. */
static const char *listed(enum iot_err rc, cJSON **list)
{
    static char buf[512];
    const char *s = rc == IOT_OK ? joined(*list, buf, sizeof(buf)) : iot_err_name(rc);
    if (s != buf)
        snprintf(buf, sizeof(buf), "%s", s);
    cJSON_Delete(*list);
    *list = NULL;
    return buf;
}

static void test_status_names(void)
{
    enum cert_status s = CERT_STATUS_REVOKED;
    CHECK(!registry_cert_status_parse("bogus", &s));
    CHECK(!registry_cert_status_parse("", &s));
    CHECK(!registry_cert_status_parse(NULL, &s));
    CHECK(!registry_cert_status_parse("ACTIVE ", &s));
    CHECK_INT(s, CERT_STATUS_REVOKED); /* untouched by a failed parse */
    CHECK_STR(registry_cert_status_name((enum cert_status)99), "UNKNOWN");

    CHECK(registry_cert_status_parse("Active", &s));
    CHECK_INT(s, CERT_STATUS_ACTIVE);
    CHECK(registry_cert_status_parse("pending_activation", &s));
    CHECK_INT(s, CERT_STATUS_PENDING_ACTIVATION);
    CHECK(registry_cert_status_parse("INACTIVE", NULL));

    static const char *const names[] = {
        "ACTIVE",           "INACTIVE",          "REVOKED",
        "PENDING_TRANSFER", "REGISTER_INACTIVE", "PENDING_ACTIVATION"};
    for (int i = 0; i < 6; i++) {
        CHECK_STR(registry_cert_status_name((enum cert_status)i), names[i]);
        CHECK(registry_cert_status_parse(registry_cert_status_name((enum cert_status)i), &s));
        CHECK_INT(s, i);
    }
}

static void test_certificates(void)
{
    struct registry *reg = open_memory();
    struct iot_error err = {0};
    struct registry_cert c = {0};
    enum cert_status s;
    bool attached = true;
    char id[65], other[65];
    make_id(id, 0x4f0b);
    make_id(other, 0xdead);

    CHECK_INT(registry_cert_get(reg, id, &c, &err), IOT_ERR_NOT_FOUND);
    CHECK_INT(err.code, IOT_ERR_NOT_FOUND);
    char expected[128];
    snprintf(expected, sizeof(expected), "Certificate %s not found", id);
    CHECK_STR(err.message, expected);
    CHECK(c.pem == NULL);
    CHECK_INT(registry_cert_get(reg, id, &c, NULL), IOT_ERR_NOT_FOUND);
    CHECK_INT(registry_cert_status(reg, id, &s), IOT_ERR_NOT_FOUND);
    CHECK_INT(registry_cert_set_status(reg, id, CERT_STATUS_ACTIVE, &err), IOT_ERR_NOT_FOUND);
    CHECK_STR(err.message, expected);
    CHECK_INT(registry_cert_delete(reg, id, &err), IOT_ERR_NOT_FOUND);
    CHECK_STR(err.message, expected);
    CHECK_INT(registry_cert_is_attached(reg, id, &attached), IOT_OK);
    CHECK(!attached);
    struct registry_cert bad = {.status = CERT_STATUS_ACTIVE};
    CHECK_INT(registry_cert_insert(reg, &bad, &err), IOT_ERR_INVALID_REQUEST);
    snprintf(bad.id, sizeof(bad.id), "%s", id);
    bad.status = (enum cert_status)42;
    CHECK_INT(registry_cert_insert(reg, &bad, &err), IOT_ERR_INVALID_REQUEST);
    CHECK_INT(registry_cert_status(reg, id, &s), IOT_ERR_NOT_FOUND);

    long long before = (long long)time(NULL);
    struct registry_cert in = {.pem = (char *)"PEM-1", .status = CERT_STATUS_PENDING_ACTIVATION};
    snprintf(in.id, sizeof(in.id), "%s", id);
    snprintf(in.ca_id, sizeof(in.ca_id), "%s", other);
    CHECK_INT(registry_cert_insert(reg, &in, &err), IOT_OK);
    CHECK_INT(registry_cert_insert(reg, &in, &err), IOT_ERR_ALREADY_EXISTS);
    snprintf(expected, sizeof(expected), "Certificate %s already exists", id);
    CHECK_STR(err.message, expected);

    CHECK_INT(registry_cert_get(reg, id, &c, &err), IOT_OK);
    CHECK_STR(c.id, id);
    CHECK_STR(c.pem, "PEM-1");
    CHECK_STR(c.ca_id, other);
    CHECK_INT(c.status, CERT_STATUS_PENDING_ACTIVATION);
    CHECK(c.created >= before && c.created <= (long long)time(NULL));
    CHECK_INT(c.modified, c.created);
    registry_cert_clear(&c);
    CHECK(c.pem == NULL);

    CHECK_INT(registry_cert_set_status(reg, id, CERT_STATUS_ACTIVE, &err), IOT_OK);
    CHECK_INT(registry_cert_status(reg, id, &s), IOT_OK);
    CHECK_INT(s, CERT_STATUS_ACTIVE);
    CHECK_INT(registry_cert_set_status(reg, id, (enum cert_status)77, &err),
              IOT_ERR_INVALID_REQUEST);
    CHECK_INT(registry_cert_status(reg, id, &s), IOT_OK);
    CHECK_INT(s, CERT_STATUS_ACTIVE);

    /* Explicit timestamps and an empty CA id are kept as given. */
    struct registry_cert old = {
        .pem = NULL, .status = CERT_STATUS_REVOKED, .created = 1000, .modified = 2000};
    snprintf(old.id, sizeof(old.id), "%s", other);
    CHECK_INT(registry_cert_insert(reg, &old, &err), IOT_OK);
    CHECK_INT(registry_cert_get(reg, other, &c, &err), IOT_OK);
    CHECK(c.pem == NULL);
    CHECK_STR(c.ca_id, "");
    CHECK_INT(c.status, CERT_STATUS_REVOKED);
    CHECK_INT(c.created, 1000);
    CHECK_INT(c.modified, 2000);
    registry_cert_clear(&c);

    CHECK_INT(registry_cert_delete(reg, other, &err), IOT_OK);
    CHECK_INT(registry_cert_status(reg, other, &s), IOT_ERR_NOT_FOUND);
    CHECK_INT(registry_cert_status(reg, id, &s), IOT_OK);
    registry_cert_clear(NULL);
    registry_close(reg);
}

static void test_things(void)
{
    struct registry *reg = open_memory();
    struct iot_error err = {0};
    struct registry_thing t = {0};

    CHECK_INT(registry_thing_get(reg, "dev1", &t, &err), IOT_ERR_NOT_FOUND);
    CHECK_STR(err.message, "Thing dev1 not found");
    CHECK(t.name == NULL && t.id == NULL && t.attributes == NULL);
    CHECK_INT(registry_thing_delete(reg, "dev1", &err), IOT_ERR_NOT_FOUND);
    CHECK_STR(err.message, "Thing dev1 not found");
    struct registry_thing nameless = {0};
    CHECK_INT(registry_thing_put(reg, &nameless, &err), IOT_ERR_INVALID_REQUEST);
    struct registry_thing typed = {.name = (char *)"dev1", .type_name = (char *)"sensor"};
    CHECK_INT(registry_thing_put(reg, &typed, &err), IOT_ERR_NOT_FOUND);
    CHECK_STR(err.message, "Thing type sensor not found");
    cJSON *array = cJSON_CreateArray();
    struct registry_thing not_object = {.name = (char *)"dev1", .attributes = array};
    CHECK_INT(registry_thing_put(reg, &not_object, &err), IOT_ERR_INVALID_REQUEST);
    cJSON_Delete(array);
    CHECK_INT(registry_thing_get(reg, "dev1", &t, &err), IOT_ERR_NOT_FOUND);

    /* Insert: a fresh lowercase UUID, version 1, no attributes. */
    CHECK_INT(add_thing(reg, "dev1"), IOT_OK);
    CHECK_INT(registry_thing_get(reg, "dev1", &t, &err), IOT_OK);
    CHECK_STR(t.name, "dev1");
    CHECK(t.id != NULL && strlen(t.id) == 36 && t.id[8] == '-' && t.id[14] == '4');
    CHECK(t.id != NULL && strspn(t.id, "0123456789abcdef-") == 36);
    CHECK(t.type_name == NULL);
    CHECK(t.attributes == NULL);
    CHECK_INT(t.version, 1);
    char *first_id = t.id ? strdup(t.id) : NULL;
    registry_thing_clear(&t);
    CHECK(t.name == NULL);

    /* Replace: same id, version 2, new type and attributes. */
    CHECK_INT(registry_thing_type_put(reg, "sensor", &err), IOT_OK);
    cJSON *attrs = cJSON_CreateObject();
    cJSON_AddStringToObject(attrs, "serial", "123");
    cJSON_AddStringToObject(attrs, "room", "kitchen");
    struct registry_thing update = {.name = (char *)"dev1",
                                    .id = (char *)"ignored",
                                    .type_name = (char *)"sensor",
                                    .attributes = attrs};
    CHECK_INT(registry_thing_put(reg, &update, &err), IOT_OK);
    CHECK_INT(registry_thing_get(reg, "dev1", &t, &err), IOT_OK);
    CHECK_STR(t.id, first_id);
    CHECK_INT(t.version, 2);
    CHECK_STR(t.type_name, "sensor");
    CHECK(cJSON_Compare(t.attributes, attrs, true));
    registry_thing_clear(&t);
    cJSON_Delete(attrs);
    free(first_id);

    /* An empty object comes back as an empty object, not as NULL. */
    cJSON *none = cJSON_CreateObject();
    struct registry_thing emptied = {.name = (char *)"dev1", .attributes = none};
    CHECK_INT(registry_thing_put(reg, &emptied, &err), IOT_OK);
    CHECK_INT(registry_thing_get(reg, "dev1", &t, &err), IOT_OK);
    CHECK(cJSON_IsObject(t.attributes) && t.attributes->child == NULL);
    CHECK(t.type_name == NULL);
    CHECK_INT(t.version, 3);
    registry_thing_clear(&t);
    cJSON_Delete(none);

    /* A caller-chosen id is used on insert. */
    struct registry_thing given = {.name = (char *)"dev2", .id = (char *)"my-id"};
    CHECK_INT(registry_thing_put(reg, &given, &err), IOT_OK);
    CHECK_INT(registry_thing_get(reg, "dev2", &t, &err), IOT_OK);
    CHECK_STR(t.id, "my-id");
    CHECK_INT(t.version, 1);
    registry_thing_clear(&t);

    CHECK_INT(registry_thing_delete(reg, "dev2", &err), IOT_OK);
    CHECK_INT(registry_thing_get(reg, "dev2", &t, &err), IOT_ERR_NOT_FOUND);
    CHECK_INT(registry_thing_get(reg, "dev1", &t, &err), IOT_OK);
    registry_thing_clear(&t);
    registry_thing_clear(NULL);
    registry_close(reg);
}

static void test_types_and_groups(void)
{
    cJSON *list = NULL;
    struct registry *reg = open_memory();
    struct iot_error err = {0};

    CHECK(!registry_thing_type_exists(reg, "sensor"));
    CHECK(!registry_thing_type_exists(reg, NULL));
    CHECK(!registry_thing_group_exists(reg, "g1"));
    CHECK_INT(registry_thing_type_put(reg, "", &err), IOT_ERR_INVALID_REQUEST);
    CHECK_INT(registry_thing_group_put(reg, NULL, &err), IOT_ERR_INVALID_REQUEST);
    CHECK_INT(registry_thing_group_add(reg, "g1", "dev1", &err), IOT_ERR_NOT_FOUND);
    CHECK_STR(err.message, "Thing group g1 not found");
    CHECK_INT(registry_thing_group_put(reg, "g1", &err), IOT_OK);
    CHECK_INT(registry_thing_group_add(reg, "g1", "dev1", &err), IOT_ERR_NOT_FOUND);
    CHECK_STR(err.message, "Thing dev1 not found");
    CHECK_INT(registry_thing_group_remove(reg, "nope", "dev1", &err), IOT_ERR_NOT_FOUND);
    CHECK_STR(err.message, "Thing group nope not found");
    CHECK_STR(listed(registry_thing_groups(reg, "dev1", &list), &list), "");

    CHECK_INT(registry_thing_type_put(reg, "sensor", &err), IOT_OK);
    CHECK_INT(registry_thing_type_put(reg, "sensor", &err), IOT_OK); /* idempotent */
    CHECK(registry_thing_type_exists(reg, "sensor"));
    CHECK(!registry_thing_type_exists(reg, "Sensor"));
    CHECK(registry_thing_group_exists(reg, "g1"));
    CHECK(!registry_thing_group_exists(reg, "sensor")); /* types and groups are apart */

    CHECK_INT(add_thing(reg, "dev1"), IOT_OK);
    CHECK_INT(add_thing(reg, "dev2"), IOT_OK);
    const char *groups[] = {"zeta", "alpha", "mid", "Beta"};
    for (int i = 0; i < 4; i++) {
        CHECK_INT(registry_thing_group_put(reg, groups[i], &err), IOT_OK);
        CHECK_INT(registry_thing_group_add(reg, groups[i], "dev1", &err), IOT_OK);
    }
    CHECK_INT(registry_thing_group_add(reg, "mid", "dev1", &err), IOT_OK); /* idempotent */
    CHECK_INT(registry_thing_group_add(reg, "g1", "dev2", &err), IOT_OK);
    CHECK_STR(listed(registry_thing_groups(reg, "dev1", &list), &list), "Beta,alpha,mid,zeta");
    CHECK_STR(listed(registry_thing_groups(reg, "dev2", &list), &list), "g1");

    CHECK_INT(registry_thing_group_remove(reg, "mid", "dev1", &err), IOT_OK);
    CHECK_INT(registry_thing_group_remove(reg, "mid", "dev1", &err), IOT_OK); /* not a member */
    CHECK_STR(listed(registry_thing_groups(reg, "dev1", &list), &list), "Beta,alpha,zeta");

    /* Deleting the thing drops its memberships; the groups stay. */
    CHECK_INT(registry_thing_delete(reg, "dev1", &err), IOT_OK);
    CHECK_INT(add_thing(reg, "dev1"), IOT_OK);
    CHECK_STR(listed(registry_thing_groups(reg, "dev1", &list), &list), "");
    CHECK(registry_thing_group_exists(reg, "zeta"));
    registry_close(reg);
}

static void test_principals(void)
{
    cJSON *list = NULL;
    struct registry *reg = open_memory();
    struct iot_error err = {0};
    bool attached = true;
    char c1[65], c2[65], expected[128];
    make_id(c1, 1);
    make_id(c2, 2);

    CHECK_INT(registry_thing_principal_attach(reg, "dev1", c1, &err), IOT_ERR_NOT_FOUND);
    CHECK_STR(err.message, "Thing dev1 not found");
    CHECK_INT(registry_thing_principal_detach(reg, "dev1", c1, &err), IOT_ERR_NOT_FOUND);
    CHECK_STR(err.message, "Thing dev1 not found");
    CHECK_INT(add_thing(reg, "dev1"), IOT_OK);
    CHECK_INT(registry_thing_principal_attach(reg, "dev1", c1, &err), IOT_ERR_NOT_FOUND);
    snprintf(expected, sizeof(expected), "Certificate %s not found", c1);
    CHECK_STR(err.message, expected);
    CHECK_INT(registry_thing_principal_attach(reg, "dev1", "", &err), IOT_ERR_INVALID_REQUEST);
    CHECK_STR(listed(registry_principal_things(reg, c1, &list), &list), "");
    CHECK_STR(listed(registry_thing_principals(reg, "dev1", &list), &list), "");

    CHECK_INT(add_cert(reg, c1, CERT_STATUS_ACTIVE), IOT_OK);
    CHECK_INT(add_cert(reg, c2, CERT_STATUS_ACTIVE), IOT_OK);
    CHECK_INT(add_thing(reg, "dev0"), IOT_OK);
    CHECK_INT(registry_thing_principal_attach(reg, "dev1", c2, &err), IOT_OK);
    CHECK_INT(registry_thing_principal_attach(reg, "dev1", c1, &err), IOT_OK);
    CHECK_INT(registry_thing_principal_attach(reg, "dev1", c1, &err), IOT_OK); /* idempotent */
    CHECK_INT(registry_thing_principal_attach(reg, "dev0", c1, &err), IOT_OK);
    CHECK_STR(listed(registry_principal_things(reg, c1, &list), &list), "dev0,dev1");
    char both[160];
    snprintf(both, sizeof(both), "%s,%s", c1, c2);
    CHECK_STR(listed(registry_thing_principals(reg, "dev1", &list), &list), both);
    CHECK_INT(registry_cert_is_attached(reg, c1, &attached), IOT_OK);
    CHECK(attached);

    CHECK_INT(registry_thing_principal_detach(reg, "dev1", c1, &err), IOT_OK);
    CHECK_INT(registry_thing_principal_detach(reg, "dev1", c1, &err), IOT_OK); /* not attached */
    CHECK_STR(listed(registry_principal_things(reg, c1, &list), &list), "dev0");
    CHECK_STR(listed(registry_thing_principals(reg, "dev1", &list), &list), c2);
    CHECK_INT(registry_thing_principal_detach(reg, "dev0", c1, &err), IOT_OK);
    CHECK_INT(registry_cert_is_attached(reg, c1, &attached), IOT_OK);
    CHECK(!attached);

    /* Deleting the thing drops its principals. */
    CHECK_INT(registry_thing_delete(reg, "dev1", &err), IOT_OK);
    CHECK_STR(listed(registry_principal_things(reg, c2, &list), &list), "");
    registry_close(reg);
}

static void test_policies(void)
{
    cJSON *list = NULL;
    struct registry *reg = open_memory();
    struct iot_error err = {0};
    char *doc = (char *)"sentinel";
    char cert[65];
    make_id(cert, 7);

    CHECK_INT(registry_policy_get(reg, "p1", &doc, &err), IOT_ERR_NOT_FOUND);
    CHECK_STR(err.message, "Policy p1 not found");
    CHECK(doc == NULL);
    CHECK_INT(registry_policy_delete(reg, "p1", &err), IOT_ERR_NOT_FOUND);
    CHECK_STR(err.message, "Policy p1 not found");
    CHECK_INT(registry_policy_attach(reg, "p1", cert, &err), IOT_ERR_NOT_FOUND);
    CHECK_STR(err.message, "Policy p1 not found");
    CHECK_INT(registry_policy_detach(reg, "p1", cert, &err), IOT_ERR_NOT_FOUND);
    CHECK_INT(registry_policy_create(reg, "p1", NULL, &err), IOT_ERR_INVALID_REQUEST);
    CHECK_INT(registry_policy_create(reg, "", "{}", &err), IOT_ERR_INVALID_REQUEST);
    CHECK_STR(listed(registry_target_policies(reg, cert, &list), &list), "");

    const char *document = "{\"Version\":\"2012-10-17\",\"Statement\":[]}";
    CHECK_INT(registry_policy_create(reg, "p1", document, &err), IOT_OK);
    CHECK_INT(registry_policy_create(reg, "p1", "{}", &err), IOT_ERR_ALREADY_EXISTS);
    CHECK_STR(err.message, "Policy p1 already exists");
    CHECK_INT(registry_policy_get(reg, "p1", &doc, &err), IOT_OK);
    CHECK_STR(doc, document);
    free(doc);

    CHECK_INT(registry_policy_create(reg, "a-policy", "{}", &err), IOT_OK);
    CHECK_INT(registry_policy_attach(reg, "p1", cert, &err), IOT_OK);
    CHECK_INT(registry_policy_attach(reg, "p1", cert, &err), IOT_OK); /* idempotent */
    CHECK_INT(registry_policy_attach(reg, "a-policy", cert, &err), IOT_OK);
    CHECK_INT(registry_policy_attach(reg, "p1", "arn:aws:iot:::thinggroup/g", &err), IOT_OK);
    CHECK_STR(listed(registry_target_policies(reg, cert, &list), &list), "a-policy,p1");
    CHECK_STR(listed(registry_target_policies(reg, "arn:aws:iot:::thinggroup/g", &list), &list),
              "p1");

    CHECK_INT(registry_policy_delete(reg, "p1", &err), IOT_ERR_DELETE_CONFLICT);
    CHECK_STR(err.message, "The policy cannot be deleted as the policy is attached to one or more "
                           "principals (name=p1)");
    CHECK_INT(registry_policy_get(reg, "p1", &doc, &err), IOT_OK);
    free(doc);
    CHECK_INT(registry_policy_detach(reg, "p1", cert, &err), IOT_OK);
    CHECK_INT(registry_policy_detach(reg, "p1", cert, &err), IOT_OK);            /* not attached */
    CHECK_INT(registry_policy_delete(reg, "p1", &err), IOT_ERR_DELETE_CONFLICT); /* group left */
    CHECK_INT(registry_policy_detach(reg, "p1", "arn:aws:iot:::thinggroup/g", &err), IOT_OK);
    CHECK_INT(registry_policy_delete(reg, "p1", &err), IOT_OK);
    CHECK_INT(registry_policy_get(reg, "p1", &doc, &err), IOT_ERR_NOT_FOUND);
    CHECK_STR(listed(registry_target_policies(reg, cert, &list), &list), "a-policy");

    /* The name is free again, versions included. */
    CHECK_INT(registry_policy_create(reg, "p1", "{\"v\":2}", &err), IOT_OK);
    CHECK_INT(registry_policy_get(reg, "p1", &doc, &err), IOT_OK);
    CHECK_STR(doc, "{\"v\":2}");
    free(doc);
    registry_close(reg);
}

static void test_templates(void)
{
    struct registry *reg = open_memory();
    struct iot_error err = {0};
    struct registry_template t = {0};

    CHECK_INT(registry_template_get(reg, "t1", &t, &err), IOT_ERR_NOT_FOUND);
    CHECK_STR(err.message, "Template t1 not found");
    CHECK(t.name == NULL);
    CHECK_INT(registry_template_delete(reg, "t1", &err), IOT_ERR_NOT_FOUND);
    CHECK_STR(err.message, "Template t1 not found");
    struct registry_template nameless = {.body = (char *)"{}"};
    CHECK_INT(registry_template_put(reg, &nameless, &err), IOT_ERR_INVALID_REQUEST);

    struct registry_template in = {
        .name = (char *)"t1",
        .body = (char *)"{\"Resources\":{}}",
        .type = (char *)"FLEET_PROVISIONING",
        .description = (char *)"first",
        .role_arn = (char *)"arn:aws:iam::123456789012:role/prov",
        .hook_target_arn = (char *)"arn:aws:lambda:us-east-1:123456789012:function:hook",
        .hook_payload_version = (char *)"2020-04-01",
        .enabled = true,
        .created = 1000,
        .modified = 1000,
    };
    CHECK_INT(registry_template_put(reg, &in, &err), IOT_OK);
    CHECK_INT(registry_template_get(reg, "t1", &t, &err), IOT_OK);
    CHECK_STR(t.name, "t1");
    CHECK_STR(t.body, "{\"Resources\":{}}");
    CHECK_STR(t.type, "FLEET_PROVISIONING");
    CHECK_STR(t.description, "first");
    CHECK_STR(t.role_arn, "arn:aws:iam::123456789012:role/prov");
    CHECK_STR(t.hook_target_arn, "arn:aws:lambda:us-east-1:123456789012:function:hook");
    CHECK_STR(t.hook_payload_version, "2020-04-01");
    CHECK(t.enabled);
    CHECK_INT(t.created, 1000);
    CHECK_INT(t.modified, 1000);
    registry_template_clear(&t);

    /* Replace: created is kept, the rest (absent fields included) is the new value. */
    struct registry_template replace = {.name = (char *)"t1",
                                        .body = (char *)"{}",
                                        .type = (char *)"JITP",
                                        .enabled = false,
                                        .created = 5000,
                                        .modified = 0};
    long long before = (long long)time(NULL);
    CHECK_INT(registry_template_put(reg, &replace, &err), IOT_OK);
    CHECK_INT(registry_template_get(reg, "t1", &t, &err), IOT_OK);
    CHECK_STR(t.body, "{}");
    CHECK_STR(t.type, "JITP");
    CHECK(t.description == NULL && t.role_arn == NULL && t.hook_target_arn == NULL);
    CHECK(t.hook_payload_version == NULL);
    CHECK(!t.enabled);
    CHECK_INT(t.created, 1000);
    CHECK(t.modified >= before);
    registry_template_clear(&t);
    registry_template_clear(NULL);

    CHECK_INT(registry_template_delete(reg, "t1", &err), IOT_OK);
    CHECK_INT(registry_template_get(reg, "t1", &t, &err), IOT_ERR_NOT_FOUND);
    CHECK_INT(registry_template_delete(reg, "t1", &err), IOT_ERR_NOT_FOUND);
    registry_close(reg);
}

static void test_tokens(void)
{
    struct registry *reg = open_memory();
    struct iot_error err = {0};
    char cert[65], other[65], found[65] = "guard", expected[128];
    long long expires = -1;
    make_id(cert, 11);
    make_id(other, 12);

    CHECK_INT(registry_token_find(reg, "h1", found, &expires), IOT_ERR_NOT_FOUND);
    CHECK_STR(found, "guard");
    CHECK_INT(expires, -1);
    CHECK_INT(registry_token_find(reg, "", found, &expires), IOT_ERR_NOT_FOUND);
    CHECK_INT(registry_token_put(reg, "h1", cert, 100, &err), IOT_ERR_NOT_FOUND);
    snprintf(expected, sizeof(expected), "Certificate %s not found", cert);
    CHECK_STR(err.message, expected);
    CHECK_INT(registry_token_put(reg, "", cert, 100, &err), IOT_ERR_INVALID_REQUEST);

    CHECK_INT(add_cert(reg, cert, CERT_STATUS_PENDING_ACTIVATION), IOT_OK);
    CHECK_INT(add_cert(reg, other, CERT_STATUS_PENDING_ACTIVATION), IOT_OK);
    CHECK_INT(registry_token_put(reg, "h1", cert, 100, &err), IOT_OK);
    CHECK_INT(registry_token_find(reg, "h1", found, &expires), IOT_OK);
    CHECK_STR(found, cert);
    CHECK_INT(expires, 100);
    CHECK_INT(registry_token_find(reg, "h1", NULL, NULL), IOT_OK);

    /* Putting the same hash again rebinds it. */
    CHECK_INT(registry_token_put(reg, "h1", other, 200, &err), IOT_OK);
    CHECK_INT(registry_token_find(reg, "h1", found, &expires), IOT_OK);
    CHECK_STR(found, other);
    CHECK_INT(expires, 200);
    registry_close(reg);
}

static void test_cert_delete_cascades(void)
{
    cJSON *list = NULL;
    struct registry *reg = open_memory();
    struct iot_error err = {0};
    char cert[65], keep[65];
    make_id(cert, 21);
    make_id(keep, 22);

    CHECK_INT(add_cert(reg, cert, CERT_STATUS_ACTIVE), IOT_OK);
    CHECK_INT(add_cert(reg, keep, CERT_STATUS_ACTIVE), IOT_OK);
    CHECK_INT(add_thing(reg, "dev1"), IOT_OK);
    CHECK_INT(registry_policy_create(reg, "p1", "{}", &err), IOT_OK);
    CHECK_INT(registry_policy_attach(reg, "p1", cert, &err), IOT_OK);
    CHECK_INT(registry_policy_attach(reg, "p1", keep, &err), IOT_OK);
    CHECK_INT(registry_thing_principal_attach(reg, "dev1", cert, &err), IOT_OK);
    CHECK_INT(registry_thing_principal_attach(reg, "dev1", keep, &err), IOT_OK);
    CHECK_INT(registry_token_put(reg, "hash-a", cert, 100, &err), IOT_OK);
    CHECK_INT(registry_token_put(reg, "hash-b", cert, 200, &err), IOT_OK);
    CHECK_INT(registry_token_put(reg, "hash-k", keep, 200, &err), IOT_OK);

    CHECK_INT(registry_cert_delete(reg, cert, &err), IOT_OK);
    enum cert_status s;
    CHECK_INT(registry_cert_status(reg, cert, &s), IOT_ERR_NOT_FOUND);
    CHECK_INT(registry_token_find(reg, "hash-a", NULL, NULL), IOT_ERR_NOT_FOUND);
    CHECK_INT(registry_token_find(reg, "hash-b", NULL, NULL), IOT_ERR_NOT_FOUND);
    CHECK_STR(listed(registry_target_policies(reg, cert, &list), &list), "");
    CHECK_STR(listed(registry_principal_things(reg, cert, &list), &list), "");
    /* Everything else is untouched. */
    CHECK_INT(registry_token_find(reg, "hash-k", NULL, NULL), IOT_OK);
    CHECK_STR(listed(registry_target_policies(reg, keep, &list), &list), "p1");
    CHECK_STR(listed(registry_thing_principals(reg, "dev1", &list), &list), keep);
    struct registry_thing t = {0};
    CHECK_INT(registry_thing_get(reg, "dev1", &t, &err), IOT_OK);
    registry_thing_clear(&t);
    CHECK_INT(registry_cert_delete(reg, cert, &err), IOT_ERR_NOT_FOUND);
    registry_close(reg);
}

static void test_expire_tokens(void)
{
    cJSON *list = NULL;
    struct registry *reg = open_memory();
    struct iot_error err = {0};
    enum cert_status s;
    int deleted = -1;
    char pending[65], active[65], with_policy[65], with_thing[65], fresh[65], boundary[65];
    make_id(pending, 31);
    make_id(active, 32);
    make_id(with_policy, 33);
    make_id(with_thing, 34);
    make_id(fresh, 35);
    make_id(boundary, 36);

    CHECK_INT(registry_expire_tokens(reg, 1000, &deleted), IOT_OK); /* nothing to do */
    CHECK_INT(deleted, 0);

    CHECK_INT(add_cert(reg, pending, CERT_STATUS_PENDING_ACTIVATION), IOT_OK);
    CHECK_INT(add_cert(reg, active, CERT_STATUS_ACTIVE), IOT_OK);
    CHECK_INT(add_cert(reg, with_policy, CERT_STATUS_PENDING_ACTIVATION), IOT_OK);
    CHECK_INT(add_cert(reg, with_thing, CERT_STATUS_PENDING_ACTIVATION), IOT_OK);
    CHECK_INT(add_cert(reg, fresh, CERT_STATUS_PENDING_ACTIVATION), IOT_OK);
    CHECK_INT(add_cert(reg, boundary, CERT_STATUS_PENDING_ACTIVATION), IOT_OK);
    CHECK_INT(registry_policy_create(reg, "p1", "{}", &err), IOT_OK);
    CHECK_INT(registry_policy_attach(reg, "p1", with_policy, &err), IOT_OK);
    CHECK_INT(add_thing(reg, "dev1"), IOT_OK);
    CHECK_INT(registry_thing_principal_attach(reg, "dev1", with_thing, &err), IOT_OK);
    CHECK_INT(registry_token_put(reg, "t-pending", pending, 100, &err), IOT_OK);
    CHECK_INT(registry_token_put(reg, "t-active", active, 100, &err), IOT_OK);
    CHECK_INT(registry_token_put(reg, "t-policy", with_policy, 100, &err), IOT_OK);
    CHECK_INT(registry_token_put(reg, "t-thing", with_thing, 100, &err), IOT_OK);
    CHECK_INT(registry_token_put(reg, "t-fresh", fresh, 201, &err), IOT_OK);
    CHECK_INT(registry_token_put(reg, "t-boundary", boundary, 200, &err), IOT_OK);

    uint64_t v = registry_version(reg);
    CHECK_INT(registry_expire_tokens(reg, 200, &deleted), IOT_OK);
    CHECK_INT(deleted, 2);
    CHECK_INT(registry_version(reg), v + 1);
    CHECK_INT(registry_cert_status(reg, pending, &s), IOT_ERR_NOT_FOUND);
    CHECK_INT(registry_cert_status(reg, boundary, &s), IOT_ERR_NOT_FOUND);
    CHECK_INT(registry_cert_status(reg, active, &s), IOT_OK);
    CHECK_INT(s, CERT_STATUS_ACTIVE);
    CHECK_INT(registry_cert_status(reg, with_policy, &s), IOT_OK);
    CHECK_INT(s, CERT_STATUS_PENDING_ACTIVATION);
    CHECK_INT(registry_cert_status(reg, with_thing, &s), IOT_OK);
    CHECK_INT(registry_cert_status(reg, fresh, &s), IOT_OK);
    /* Every expired token is gone, kept certificates' included; the unexpired one stays. */
    CHECK_INT(registry_token_find(reg, "t-pending", NULL, NULL), IOT_ERR_NOT_FOUND);
    CHECK_INT(registry_token_find(reg, "t-active", NULL, NULL), IOT_ERR_NOT_FOUND);
    CHECK_INT(registry_token_find(reg, "t-policy", NULL, NULL), IOT_ERR_NOT_FOUND);
    CHECK_INT(registry_token_find(reg, "t-thing", NULL, NULL), IOT_ERR_NOT_FOUND);
    CHECK_INT(registry_token_find(reg, "t-boundary", NULL, NULL), IOT_ERR_NOT_FOUND);
    CHECK_INT(registry_token_find(reg, "t-fresh", NULL, NULL), IOT_OK);
    CHECK_STR(listed(registry_target_policies(reg, with_policy, &list), &list), "p1");
    CHECK_STR(listed(registry_thing_principals(reg, "dev1", &list), &list), with_thing);

    /* A second pass finds nothing and changes nothing. */
    v = registry_version(reg);
    CHECK_INT(registry_expire_tokens(reg, 200, &deleted), IOT_OK);
    CHECK_INT(deleted, 0);
    CHECK_INT(registry_version(reg), v);
    CHECK_INT(registry_expire_tokens(reg, 201, NULL), IOT_OK);
    CHECK_INT(registry_cert_status(reg, fresh, &s), IOT_ERR_NOT_FOUND);
    registry_close(reg);
}

static void test_transactions(void)
{
    cJSON *list = NULL;
    struct registry *reg = open_memory();
    struct iot_error err = {0};
    enum cert_status s;
    char a[65], b[65], c[65];
    make_id(a, 41);
    make_id(b, 42);
    make_id(c, 43);

    CHECK_INT(registry_commit(reg), IOT_ERR_INTERNAL); /* no transaction open */
    registry_rollback(reg);                            /* harmless without one */

    /* Rollback leaves nothing and does not move the version. */
    uint64_t v = registry_version(reg);
    CHECK_INT(registry_begin(reg), IOT_OK);
    CHECK_INT(add_cert(reg, a, CERT_STATUS_ACTIVE), IOT_OK);
    CHECK_INT(registry_policy_create(reg, "p1", "{}", &err), IOT_OK);
    CHECK_INT(registry_cert_status(reg, a, &s), IOT_OK); /* visible inside */
    registry_rollback(reg);
    CHECK_INT(registry_cert_status(reg, a, &s), IOT_ERR_NOT_FOUND);
    char *doc = NULL;
    CHECK_INT(registry_policy_get(reg, "p1", &doc, &err), IOT_ERR_NOT_FOUND);
    CHECK_INT(registry_version(reg), v);

    /* Commit persists and bumps once for the whole transaction. */
    CHECK_INT(registry_begin(reg), IOT_OK);
    CHECK_INT(add_cert(reg, a, CERT_STATUS_ACTIVE), IOT_OK);
    CHECK_INT(registry_policy_create(reg, "p1", "{}", &err), IOT_OK);
    CHECK_INT(registry_policy_attach(reg, "p1", a, &err), IOT_OK);
    CHECK_INT(registry_version(reg), v); /* not before commit */
    CHECK_INT(registry_commit(reg), IOT_OK);
    CHECK_INT(registry_version(reg), v + 1);
    CHECK_INT(registry_cert_status(reg, a, &s), IOT_OK);
    CHECK_STR(listed(registry_target_policies(reg, a, &list), &list), "p1");

    /* Reads, failed writes and writes that change nothing do not bump it. */
    v = registry_version(reg);
    CHECK_INT(add_cert(reg, a, CERT_STATUS_ACTIVE), IOT_ERR_ALREADY_EXISTS);
    CHECK_INT(registry_policy_delete(reg, "p1", &err), IOT_ERR_DELETE_CONFLICT);
    CHECK_INT(registry_policy_attach(reg, "p1", a, &err), IOT_OK); /* already attached */
    CHECK_INT(registry_cert_status(reg, a, &s), IOT_OK);
    CHECK_INT(registry_version(reg), v);
    /* An autocommitted write bumps it. */
    CHECK_INT(add_cert(reg, b, CERT_STATUS_ACTIVE), IOT_OK);
    CHECK_INT(registry_version(reg), v + 1);

    /* A failing call inside a transaction undoes only itself; the rest still commits. */
    v = registry_version(reg);
    CHECK_INT(registry_begin(reg), IOT_OK);
    CHECK_INT(add_cert(reg, c, CERT_STATUS_ACTIVE), IOT_OK);
    CHECK_INT(add_cert(reg, c, CERT_STATUS_ACTIVE), IOT_ERR_ALREADY_EXISTS);
    CHECK_INT(registry_policy_delete(reg, "p1", &err), IOT_ERR_DELETE_CONFLICT);
    CHECK_INT(registry_cert_delete(reg, "no-such-cert", &err), IOT_ERR_NOT_FOUND);
    CHECK_INT(registry_commit(reg), IOT_OK);
    CHECK_INT(registry_version(reg), v + 1);
    CHECK_INT(registry_cert_status(reg, c, &s), IOT_OK);
    CHECK_INT(registry_policy_get(reg, "p1", &doc, &err), IOT_OK);
    free(doc);

    /* Nested begin is a savepoint: the inner rollback undoes only the inner work. */
    CHECK_INT(registry_cert_delete(reg, c, &err), IOT_OK);
    CHECK_INT(registry_begin(reg), IOT_OK);
    CHECK_INT(registry_policy_create(reg, "outer", "{}", &err), IOT_OK);
    CHECK_INT(registry_begin(reg), IOT_OK);
    CHECK_INT(add_cert(reg, c, CERT_STATUS_ACTIVE), IOT_OK);
    registry_rollback(reg);
    CHECK_INT(registry_cert_status(reg, c, &s), IOT_ERR_NOT_FOUND);
    CHECK_INT(registry_commit(reg), IOT_OK);
    CHECK_INT(registry_policy_get(reg, "outer", &doc, &err), IOT_OK);
    free(doc);
    CHECK_INT(registry_commit(reg), IOT_ERR_INTERNAL); /* both levels are closed */
    registry_close(reg);
}

/* ---- other threads ------------------------------------------------------------------------ */

struct peek {
    struct registry *reg;
    const char *id;
    enum iot_err rc;
};

static void *peek_status(void *arg)
{
    struct peek *p = arg;
    enum cert_status s;
    p->rc = registry_cert_status(p->reg, p->id, &s);
    return NULL;
}

/* Another thread waits for an open transaction and never sees its uncommitted rows. */
static void test_isolation(void)
{
    struct registry *reg = open_memory();
    char id[65];
    make_id(id, 51);
    struct peek p = {.reg = reg, .id = id, .rc = IOT_ERR_INTERNAL};
    pthread_t thread;

    CHECK_INT(registry_begin(reg), IOT_OK);
    CHECK_INT(add_cert(reg, id, CERT_STATUS_ACTIVE), IOT_OK);
    CHECK_INT(pthread_create(&thread, NULL, peek_status, &p), 0);
    nanosleep(&(struct timespec){.tv_nsec = 100 * 1000 * 1000}, NULL);
    registry_rollback(reg);
    pthread_join(thread, NULL);
    CHECK_INT(p.rc, IOT_ERR_NOT_FOUND);

    p.rc = IOT_ERR_INTERNAL;
    CHECK_INT(registry_begin(reg), IOT_OK);
    CHECK_INT(add_cert(reg, id, CERT_STATUS_ACTIVE), IOT_OK);
    CHECK_INT(pthread_create(&thread, NULL, peek_status, &p), 0);
    nanosleep(&(struct timespec){.tv_nsec = 100 * 1000 * 1000}, NULL);
    CHECK_INT(registry_commit(reg), IOT_OK);
    pthread_join(thread, NULL);
    CHECK_INT(p.rc, IOT_OK);
    registry_close(reg);
}

struct load {
    struct registry *reg;
    unsigned writer;
    atomic_int *failures;
    atomic_bool *done;
};

static void *write_certs(void *arg)
{
    struct load *l = arg;
    char id[65], token[32];
    for (unsigned i = 0; i < CYCLES; i++) {
        enum cert_status s;
        make_id(id, l->writer * 1000 + i);
        snprintf(token, sizeof(token), "tok-%u-%u", l->writer, i);
        bool ok = registry_begin(l->reg) == IOT_OK;
        ok = ok && add_cert(l->reg, id, CERT_STATUS_ACTIVE) == IOT_OK;
        ok = ok && registry_token_put(l->reg, token, id, 1, NULL) == IOT_OK;
        ok = ok && registry_cert_status(l->reg, id, &s) == IOT_OK && s == CERT_STATUS_ACTIVE;
        ok = ok && registry_commit(l->reg) == IOT_OK;
        if (!ok)
            atomic_fetch_add(l->failures, 1);
    }
    return NULL;
}

/* Reads statuses while the writers run: every answer is ACTIVE or not found, never an error, and
 * the version never goes back. */
static void *read_statuses(void *arg)
{
    struct load *l = arg;
    char id[65];
    uint64_t last = registry_version(l->reg);
    for (unsigned n = 0; !atomic_load(l->done); n++) {
        enum cert_status s = CERT_STATUS_REVOKED;
        make_id(id, (n % WRITERS) * 1000 + n % CYCLES);
        enum iot_err rc = registry_cert_status(l->reg, id, &s);
        uint64_t v = registry_version(l->reg);
        if ((rc != IOT_OK && rc != IOT_ERR_NOT_FOUND) ||
            (rc == IOT_OK && s != CERT_STATUS_ACTIVE) || v < last)
            atomic_fetch_add(l->failures, 1);
        last = v;
    }
    return NULL;
}

static void test_concurrency(void)
{
    struct registry *reg = open_memory();
    atomic_int failures = 0;
    atomic_bool done = false;
    pthread_t writers[WRITERS], reader;
    struct load loads[WRITERS + 1];
    uint64_t v = registry_version(reg);

    for (unsigned w = 0; w <= WRITERS; w++)
        loads[w] = (struct load){.reg = reg, .writer = w, .failures = &failures, .done = &done};
    CHECK_INT(pthread_create(&reader, NULL, read_statuses, &loads[WRITERS]), 0);
    for (unsigned w = 0; w < WRITERS; w++)
        CHECK_INT(pthread_create(&writers[w], NULL, write_certs, &loads[w]), 0);
    for (unsigned w = 0; w < WRITERS; w++)
        pthread_join(writers[w], NULL);
    atomic_store(&done, true);
    pthread_join(reader, NULL);

    CHECK_INT(atomic_load(&failures), 0);
    int present = 0;
    char id[65];
    for (unsigned w = 0; w < WRITERS; w++) {
        for (unsigned i = 0; i < CYCLES; i++) {
            enum cert_status s;
            make_id(id, w * 1000 + i);
            present += registry_cert_status(reg, id, &s) == IOT_OK && s == CERT_STATUS_ACTIVE;
        }
    }
    CHECK_INT(present, WRITERS * CYCLES);
    CHECK_INT(registry_version(reg), v + WRITERS * CYCLES);
    /* The tokens all expired at 1, but the certificates are active: all stay. */
    int deleted = -1;
    CHECK_INT(registry_expire_tokens(reg, 1, &deleted), IOT_OK);
    CHECK_INT(deleted, 0);
    registry_close(reg);
}

/* ---- files ------------------------------------------------------------------------------- */

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        perror(path);
        exit(2);
    }
    fputs(text, f);
    fclose(f);
}

static void read_file(const char *path, char *buf, size_t size)
{
    FILE *f = fopen(path, "r");
    size_t n = f ? fread(buf, 1, size - 1, f) : 0;
    buf[n] = '\0';
    if (f)
        fclose(f);
}

/* Runs SQL on a database file directly, to build files the registry must refuse. */
static void sqlite_run(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    if (sqlite3_open(path, &db) != SQLITE_OK ||
        sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK) {
        fprintf(stderr, "%s: %s\n", path, sqlite3_errmsg(db));
        exit(2);
    }
    sqlite3_close(db);
}

static void test_open_errors(const char *dir)
{
    struct registry *reg = (struct registry *)&reg; /* any non-NULL value */
    struct iot_error err = {0};
    char path[512], text[256];
    const char *garbage = "this is a text file, not a database\nsecond line\n";

    snprintf(path, sizeof(path), "%s/garbage.txt", dir);
    write_file(path, garbage);
    CHECK_INT(registry_open(path, &reg, &err), IOT_ERR_IO);
    CHECK(reg == NULL);
    CHECK_INT(err.code, IOT_ERR_IO);
    CHECK(strstr(err.message, "not a database") != NULL);
    CHECK(strstr(err.message, path) != NULL);
    read_file(path, text, sizeof(text));
    CHECK_STR(text, garbage); /* left as it was */
    CHECK_INT(registry_open(path, &reg, NULL), IOT_ERR_IO);

    CHECK_INT(registry_open(dir, &reg, &err), IOT_ERR_IO); /* a directory */
    CHECK(reg == NULL);
    snprintf(path, sizeof(path), "%s/missing-dir/reg.db", dir);
    CHECK_INT(registry_open(path, &reg, &err), IOT_ERR_IO);
    CHECK_INT(registry_open("", &reg, &err), IOT_ERR_INVALID_REQUEST);

    snprintf(path, sizeof(path), "%s/other.db", dir);
    sqlite_run(path, "CREATE TABLE unrelated (x)");
    CHECK_INT(registry_open(path, &reg, &err), IOT_ERR_IO);
    CHECK(strstr(err.message, "not an iotmock registry") != NULL);

    snprintf(path, sizeof(path), "%s/newer.db", dir);
    CHECK_INT(registry_open(path, &reg, &err), IOT_OK);
    registry_close(reg);
    sqlite_run(path, "PRAGMA user_version = 2");
    CHECK_INT(registry_open(path, &reg, &err), IOT_ERR_IO);
    CHECK(strstr(err.message, "schema version 2") != NULL);
    registry_close(NULL);
}

static void fill(struct registry *reg, const char *cert)
{
    struct iot_error err = {0};
    cJSON *attrs = cJSON_CreateObject();
    cJSON_AddStringToObject(attrs, "serial", "42");
    struct registry_thing t = {
        .name = (char *)"dev1", .type_name = (char *)"sensor", .attributes = attrs};
    struct registry_template tpl = {.name = (char *)"t1", .body = (char *)"{}", .enabled = true};

    CHECK_INT(add_cert(reg, cert, CERT_STATUS_PENDING_ACTIVATION), IOT_OK);
    CHECK_INT(registry_thing_type_put(reg, "sensor", &err), IOT_OK);
    CHECK_INT(registry_thing_group_put(reg, "g1", &err), IOT_OK);
    CHECK_INT(registry_thing_put(reg, &t, &err), IOT_OK);
    CHECK_INT(registry_thing_group_add(reg, "g1", "dev1", &err), IOT_OK);
    CHECK_INT(registry_thing_principal_attach(reg, "dev1", cert, &err), IOT_OK);
    CHECK_INT(registry_policy_create(reg, "p1", "{\"doc\":1}", &err), IOT_OK);
    CHECK_INT(registry_policy_attach(reg, "p1", cert, &err), IOT_OK);
    CHECK_INT(registry_template_put(reg, &tpl, &err), IOT_OK);
    CHECK_INT(registry_token_put(reg, "hash", cert, 12345, &err), IOT_OK);
    /* Committed but never closed: the data is in the write-ahead log. */
    CHECK_INT(registry_begin(reg), IOT_OK);
    CHECK_INT(registry_cert_set_status(reg, cert, CERT_STATUS_ACTIVE, &err), IOT_OK);
    CHECK_INT(registry_commit(reg), IOT_OK);
    cJSON_Delete(attrs);
}

static void verify(struct registry *reg, const char *cert)
{
    cJSON *list = NULL;
    struct iot_error err = {0};
    struct registry_thing t = {0};
    struct registry_template tpl = {0};
    enum cert_status s;
    char *doc = NULL, found[65] = "";
    long long expires = 0;

    CHECK_INT(registry_cert_status(reg, cert, &s), IOT_OK);
    CHECK_INT(s, CERT_STATUS_ACTIVE);
    CHECK(registry_thing_type_exists(reg, "sensor"));
    CHECK(registry_thing_group_exists(reg, "g1"));
    CHECK_INT(registry_thing_get(reg, "dev1", &t, &err), IOT_OK);
    CHECK_STR(t.type_name, "sensor");
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(t.attributes, "serial")), "42");
    registry_thing_clear(&t);
    CHECK_STR(listed(registry_thing_groups(reg, "dev1", &list), &list), "g1");
    CHECK_STR(listed(registry_principal_things(reg, cert, &list), &list), "dev1");
    CHECK_STR(listed(registry_target_policies(reg, cert, &list), &list), "p1");
    CHECK_INT(registry_policy_get(reg, "p1", &doc, &err), IOT_OK);
    CHECK_STR(doc, "{\"doc\":1}");
    free(doc);
    CHECK_INT(registry_template_get(reg, "t1", &tpl, &err), IOT_OK);
    CHECK(tpl.enabled);
    registry_template_clear(&tpl);
    CHECK_INT(registry_token_find(reg, "hash", found, &expires), IOT_OK);
    CHECK_STR(found, cert);
    CHECK_INT(expires, 12345);
}

static void test_file_registry(const char *dir)
{
    struct registry *reg = NULL;
    struct iot_error err = {0};
    char path[512], wal[520], cert[65];
    make_id(cert, 61);
    snprintf(path, sizeof(path), "%s/registry.db", dir);
    snprintf(wal, sizeof(wal), "%s-wal", path);

    CHECK_INT(registry_open(path, &reg, &err), IOT_OK);
    if (reg == NULL)
        return;
    fill(reg, cert);
    CHECK_INT(access(wal, F_OK), 0); /* journal_mode=WAL */
    registry_close(reg);

    reg = NULL;
    CHECK_INT(registry_open(path, &reg, &err), IOT_OK);
    if (reg == NULL)
        return;
    verify(reg, cert);
    registry_close(reg);

    /* Opening twice at once works too (a CLI next to the broker). */
    struct registry *second = NULL;
    CHECK_INT(registry_open(path, &reg, &err), IOT_OK);
    CHECK_INT(registry_open(path, &second, &err), IOT_OK);
    if (reg != NULL && second != NULL) {
        char other[65];
        make_id(other, 62);
        CHECK_INT(add_cert(second, other, CERT_STATUS_ACTIVE), IOT_OK);
        enum cert_status s;
        CHECK_INT(registry_cert_status(reg, other, &s), IOT_OK);
    }
    registry_close(second);
    registry_close(reg);
}

/* Writers on a file share the log flushes (group commit): every write call returns IOT_OK, and
 * every change is there after a reopen. */
static void test_group_commit(const char *dir)
{
    struct registry *reg = NULL;
    struct iot_error err = {0};
    char path[512];
    snprintf(path, sizeof(path), "%s/group.db", dir);
    CHECK_INT(registry_open(path, &reg, &err), IOT_OK);
    if (reg == NULL)
        return;
    atomic_int failures = 0;
    atomic_bool done = false;
    pthread_t writers[WRITERS];
    struct load loads[WRITERS];
    for (unsigned w = 0; w < WRITERS; w++) {
        loads[w] = (struct load){.reg = reg, .writer = w, .failures = &failures, .done = &done};
        CHECK_INT(pthread_create(&writers[w], NULL, write_certs, &loads[w]), 0);
    }
    for (unsigned w = 0; w < WRITERS; w++)
        pthread_join(writers[w], NULL);
    CHECK_INT(atomic_load(&failures), 0);
    /* A transaction of the caller's: flushed at its commit. */
    char id[65];
    make_id(id, 99999);
    CHECK_INT(registry_begin(reg), IOT_OK);
    CHECK_INT(add_cert(reg, id, CERT_STATUS_ACTIVE), IOT_OK);
    CHECK_INT(registry_commit(reg), IOT_OK);
    registry_close(reg);

    reg = NULL;
    CHECK_INT(registry_open(path, &reg, &err), IOT_OK);
    if (reg == NULL)
        return;
    int present = 0;
    for (unsigned w = 0; w < WRITERS; w++) {
        for (unsigned i = 0; i < CYCLES; i++) {
            enum cert_status st;
            make_id(id, w * 1000 + i);
            present += registry_cert_status(reg, id, &st) == IOT_OK && st == CERT_STATUS_ACTIVE;
        }
    }
    CHECK_INT(present, WRITERS * CYCLES);
    enum cert_status st;
    make_id(id, 99999);
    CHECK_INT(registry_cert_status(reg, id, &st), IOT_OK);
    registry_close(reg);
}

/* ---- control-plane additions --------------------------------------------------------------- */

/* "a,b,c" from the KEY member of each object of a list call's result (numbers as integers), or
 * the call's error name; frees the list. */
static const char *keys(enum iot_err rc, cJSON **list, const char *key)
{
    static char buf[1024];
    const cJSON *item;
    size_t used = 0;
    buf[0] = '\0';
    const cJSON *array = rc == IOT_OK ? *list : NULL;
    if (rc != IOT_OK)
        snprintf(buf, sizeof(buf), "%s", iot_err_name(rc));
    cJSON_ArrayForEach(item, array)
    {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(item, key);
        char one[128];
        if (cJSON_IsNumber(v))
            snprintf(one, sizeof(one), "%lld", (long long)v->valuedouble);
        else
            snprintf(one, sizeof(one), "%s", cJSON_IsString(v) ? v->valuestring : "-");
        used += (size_t)snprintf(buf + used, sizeof(buf) - used, "%s%s", used ? "," : "", one);
        if (used >= sizeof(buf))
            break;
    }
    cJSON_Delete(*list);
    *list = NULL;
    return buf;
}

static enum iot_err add_cert_at(struct registry *reg, unsigned n, long long created)
{
    struct registry_cert c = {.pem = (char *)"pem",
                              .status = CERT_STATUS_ACTIVE,
                              .created = created,
                              .modified = created};
    make_id(c.id, n);
    return registry_cert_insert(reg, &c, NULL);
}

static void test_cert_list_and_claims(void)
{
    struct registry *reg = open_memory();
    struct iot_error err = {0};
    struct registry_cert_meta meta;
    cJSON *list = NULL;
    char *next = NULL, id[65], claim[65];
    make_id(claim, 3);

    CHECK_STR(keys(registry_cert_list(reg, NULL, &list, &next, &err), &list, "id"), "");
    CHECK(next == NULL);
    /* Creation time orders, the id breaks ties; a claim certificate is never listed. */
    CHECK_INT(add_cert_at(reg, 1, 300), IOT_OK);
    CHECK_INT(add_cert_at(reg, 2, 100), IOT_OK);
    CHECK_INT(add_cert_at(reg, 3, 100), IOT_OK);
    CHECK_INT(add_cert_at(reg, 4, 100), IOT_OK);
    CHECK_INT(add_cert_at(reg, 5, 200), IOT_OK);
    CHECK_INT(registry_cert_set_claim(reg, claim, "tpl", 500, &err), IOT_OK);
    struct registry_page pg = {.limit = 2};
    CHECK_INT(registry_cert_list(reg, &pg, &list, &next, &err), IOT_OK);
    CHECK_INT(cJSON_GetArraySize(list), 2);
    make_id(id, 2);
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetArrayItem(list, 0), "id")), id);
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetArrayItem(list, 0), "status")),
              "ACTIVE");
    CHECK_INT(cJSON_GetNumberValue(cJSON_GetObjectItem(cJSON_GetArrayItem(list, 0), "created")),
              100);
    cJSON_Delete(list);
    CHECK(next != NULL);
    pg.after = next;
    CHECK_INT(registry_cert_list(reg, &pg, &list, &next, &err), IOT_OK);
    free((char *)pg.after);
    CHECK_INT(cJSON_GetArraySize(list), 2); /* 5 (200) and 1 (300) */
    cJSON_Delete(list);
    CHECK(next == NULL); /* exactly at the end: no empty last page */
    pg = (struct registry_page){.descending = true};
    CHECK_INT(registry_cert_list(reg, &pg, &list, &next, &err), IOT_OK);
    make_id(id, 1);
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetArrayItem(list, 0), "id")), id);
    CHECK_INT(cJSON_GetArraySize(list), 4);
    cJSON_Delete(list);

    /* Claims: metadata, and expiry by the token sweep. */
    CHECK_INT(registry_cert_set_claim(reg, "nope", "tpl", 1, &err), IOT_ERR_NOT_FOUND);
    CHECK_INT(registry_cert_set_claim(reg, claim, "", 1, &err), IOT_ERR_INVALID_REQUEST);
    CHECK_INT(registry_cert_get_meta(reg, "nope", &meta, &err), IOT_ERR_NOT_FOUND);
    CHECK_INT(registry_cert_get_meta(reg, claim, &meta, &err), IOT_OK);
    CHECK_STR(meta.claim_template, "tpl");
    CHECK_INT(meta.claim_expires, 500);
    CHECK_INT(meta.customer_version, 1);
    make_id(id, 1);
    CHECK_INT(registry_cert_get_meta(reg, id, &meta, &err), IOT_OK);
    CHECK_STR(meta.claim_template, "");
    CHECK_INT(meta.claim_expires, 0);
    /* customerVersion moves with real status changes only. */
    CHECK_INT(registry_cert_set_status(reg, id, CERT_STATUS_ACTIVE, &err), IOT_OK);
    CHECK_INT(registry_cert_set_status(reg, id, CERT_STATUS_INACTIVE, &err), IOT_OK);
    CHECK_INT(registry_cert_set_status(reg, id, CERT_STATUS_INACTIVE, &err), IOT_OK);
    CHECK_INT(registry_cert_get_meta(reg, id, &meta, &err), IOT_OK);
    CHECK_INT(meta.customer_version, 2);

    int deleted = -1;
    CHECK_INT(registry_expire_tokens(reg, 499, &deleted), IOT_OK);
    CHECK_INT(deleted, 0);
    enum cert_status s;
    CHECK_INT(registry_cert_status(reg, claim, &s), IOT_OK);
    CHECK_INT(registry_expire_tokens(reg, 500, &deleted), IOT_OK);
    CHECK_INT(deleted, 1);
    CHECK_INT(registry_cert_status(reg, claim, &s), IOT_ERR_NOT_FOUND);
    CHECK_INT(registry_cert_status(reg, id, &s), IOT_OK); /* others untouched */
    registry_close(reg);
}

static enum iot_err put_thing_attrs(struct registry *reg, const char *name, const char *type,
                                    const char *attrs_json)
{
    cJSON *attrs = attrs_json ? cJSON_Parse(attrs_json) : NULL;
    struct registry_thing t = {
        .name = (char *)name, .type_name = (char *)type, .attributes = attrs};
    enum iot_err rc = registry_thing_put(reg, &t, NULL);
    cJSON_Delete(attrs);
    return rc;
}

static const char *things_where(struct registry *reg, struct registry_thing_filter f)
{
    cJSON *list = NULL;
    return keys(registry_thing_list(reg, &f, NULL, &list, NULL, NULL), &list, "name");
}

static void test_thing_lists(void)
{
    struct registry *reg = open_memory();
    struct iot_error err = {0};
    cJSON *list = NULL;
    char *next = NULL;

    CHECK_INT(registry_thing_type_put(reg, "sensor", &err), IOT_OK);
    CHECK_INT(put_thing_attrs(reg, "a", "sensor", "{\"serial\":\"100\",\"color\":\"red\"}"),
              IOT_OK);
    CHECK_INT(put_thing_attrs(reg, "b", NULL, "{\"serial\":\"1001\"}"), IOT_OK);
    CHECK_INT(put_thing_attrs(reg, "c", "sensor", NULL), IOT_OK);
    CHECK_INT(put_thing_attrs(reg, "d", NULL, "{\"color\":\"100\"}"), IOT_OK);

    CHECK_STR(things_where(reg, (struct registry_thing_filter){0}), "a,b,c,d");
    CHECK_STR(things_where(reg, (struct registry_thing_filter){.type_name = "sensor"}), "a,c");
    CHECK_STR(things_where(reg, (struct registry_thing_filter){.type_name = "x"}), "");
    CHECK_STR(things_where(reg, (struct registry_thing_filter){.attribute_name = "serial",
                                                               .attribute_value = "100"}),
              "a");
    CHECK_STR(things_where(reg, (struct registry_thing_filter){.attribute_name = "serial",
                                                               .attribute_value = "100",
                                                               .attribute_prefix = true}),
              "a,b");
    CHECK_STR(things_where(reg, (struct registry_thing_filter){.attribute_name = "color"}), "a,d");
    CHECK_STR(things_where(reg, (struct registry_thing_filter){.attribute_value = "100"}), "a,d");
    CHECK_STR(things_where(reg, (struct registry_thing_filter){.attribute_name = "serial",
                                                               .type_name = "sensor"}),
              "a");

    /* Objects carry the whole thing; paging continues after the cursor. */
    struct registry_page pg = {.limit = 3};
    CHECK_INT(registry_thing_list(reg, NULL, &pg, &list, &next, &err), IOT_OK);
    const cJSON *a = cJSON_GetArrayItem(list, 0);
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(a, "type_name")), "sensor");
    CHECK_STR(
        cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetObjectItem(a, "attributes"), "color")),
        "red");
    CHECK_INT(cJSON_GetNumberValue(cJSON_GetObjectItem(a, "version")), 1);
    CHECK(cJSON_GetObjectItem(a, "id") != NULL);
    CHECK(cJSON_GetObjectItem(cJSON_GetArrayItem(list, 2), "attributes") == NULL);
    cJSON_Delete(list);
    CHECK_STR(next, "c");
    pg.after = next;
    CHECK_STR(keys(registry_thing_list(reg, NULL, &pg, &list, &next, &err), &list, "name"), "d");
    CHECK(next == NULL);
    free((char *)pg.after);

    /* Groups: hierarchy, members, recursion. */
    struct registry_thing_group root = {.name = (char *)"root", .description = (char *)"top"};
    struct registry_thing_group kid = {.name = (char *)"kid", .parent = (char *)"root"};
    struct registry_thing_group leaf = {.name = (char *)"leaf", .parent = (char *)"kid"};
    struct registry_thing_group orphan = {.name = (char *)"orphan", .parent = (char *)"none"};
    CHECK_INT(registry_thing_group_create(reg, &orphan, &err), IOT_ERR_INVALID_REQUEST);
    CHECK_INT(registry_thing_group_create(reg, &root, &err), IOT_OK);
    CHECK_INT(registry_thing_group_create(reg, &root, &err), IOT_ERR_ALREADY_EXISTS);
    CHECK_INT(registry_thing_group_create(reg, &kid, &err), IOT_OK);
    CHECK_INT(registry_thing_group_create(reg, &leaf, &err), IOT_OK);
    CHECK_INT(registry_thing_group_put(reg, "other", &err), IOT_OK);
    CHECK_INT(registry_thing_group_add(reg, "root", "a", &err), IOT_OK);
    CHECK_INT(registry_thing_group_add(reg, "leaf", "c", &err), IOT_OK);
    CHECK_INT(registry_thing_group_add(reg, "other", "b", &err), IOT_OK);
    CHECK_STR(things_where(reg, (struct registry_thing_filter){.group = "root"}), "a");
    CHECK_STR(things_where(reg, (struct registry_thing_filter){.group = "root", .recursive = true}),
              "a,c");
    CHECK_STR(things_where(reg, (struct registry_thing_filter){.group = "kid", .recursive = true}),
              "c");
    CHECK_STR(things_where(reg, (struct registry_thing_filter){.group = "nope"}), "");

    CHECK_STR(keys(registry_thing_group_list(reg, NULL, NULL, false, NULL, &list, NULL, &err),
                   &list, "name"),
              "kid,leaf,other,root");
    CHECK_STR(keys(registry_thing_group_list(reg, "root", NULL, false, NULL, &list, NULL, &err),
                   &list, "name"),
              "kid");
    CHECK_STR(keys(registry_thing_group_list(reg, "root", NULL, true, NULL, &list, NULL, &err),
                   &list, "name"),
              "kid,leaf");
    CHECK_STR(keys(registry_thing_group_list(reg, NULL, "o", false, NULL, &list, NULL, &err), &list,
                   "name"),
              "other");
    CHECK_STR(keys(registry_thing_group_list(reg, "root", "l", true, NULL, &list, NULL, &err),
                   &list, "name"),
              "leaf");
    CHECK_STR(
        keys(registry_thing_group_list_for_thing(reg, "a", NULL, &list, NULL, &err), &list, "name"),
        "root");
    CHECK_INT(registry_thing_group_ancestors(reg, "leaf", &list), IOT_OK);
    CHECK_STR(listed(IOT_OK, &list), "root,kid");
    CHECK_INT(registry_thing_group_ancestors(reg, "root", &list), IOT_OK);
    CHECK_STR(listed(IOT_OK, &list), "");

    struct registry_thing_group g = {0};
    CHECK_INT(registry_thing_group_get(reg, "nope", &g, &err), IOT_ERR_NOT_FOUND);
    CHECK_INT(registry_thing_group_get(reg, "kid", &g, &err), IOT_OK);
    CHECK_STR(g.parent, "root");
    CHECK_INT(g.version, 1);
    CHECK(g.id != NULL && strlen(g.id) == 36);
    registry_thing_group_clear(&g);
    CHECK_INT(registry_thing_group_get(reg, "other", &g, &err), IOT_OK); /* made by _put */
    CHECK(g.id != NULL && strlen(g.id) == 36 && g.parent == NULL);
    registry_thing_group_clear(&g);

    CHECK_INT(registry_thing_group_delete(reg, "kid", &err), IOT_ERR_DELETE_CONFLICT);
    CHECK_INT(registry_thing_group_delete(reg, "nope", &err), IOT_ERR_NOT_FOUND);
    CHECK_INT(registry_thing_group_delete(reg, "leaf", &err), IOT_OK);
    CHECK_STR(listed(registry_thing_groups(reg, "c", &list), &list), "");
    CHECK_INT(registry_thing_group_delete(reg, "kid", &err), IOT_OK);

    /* Principals, both directions. */
    char c1[65], c2[65];
    make_id(c1, 71);
    make_id(c2, 72);
    CHECK_INT(add_cert(reg, c1, CERT_STATUS_ACTIVE), IOT_OK);
    CHECK_INT(add_cert(reg, c2, CERT_STATUS_ACTIVE), IOT_OK);
    CHECK_INT(registry_thing_principal_attach(reg, "a", c2, &err), IOT_OK);
    CHECK_INT(registry_thing_principal_attach(reg, "a", c1, &err), IOT_OK);
    CHECK_INT(registry_thing_principal_attach(reg, "b", c1, &err), IOT_OK);
    pg = (struct registry_page){.limit = 1};
    CHECK_INT(registry_thing_principal_list(reg, "a", &pg, &list, &next, &err), IOT_OK);
    CHECK_STR(keys(IOT_OK, &list, "principal"), c1);
    CHECK_STR(next, c1);
    free(next);
    CHECK_STR(keys(registry_principal_thing_list(reg, c1, NULL, &list, NULL, &err), &list, "thing"),
              "a,b");
    registry_close(reg);
}

static void test_thing_types(void)
{
    struct registry *reg = open_memory();
    struct iot_error err = {0};
    struct registry_thing_type t = {0};
    cJSON *list = NULL;

    cJSON *searchable = cJSON_Parse("[\"serial\",\"model\"]");
    struct registry_thing_type in = {
        .name = (char *)"sensor", .description = (char *)"temp", .searchable = searchable};
    struct registry_thing_type bad = {.name = (char *)"bad", .searchable = cJSON_CreateObject()};
    CHECK_INT(registry_thing_type_create(reg, &bad, &err), IOT_ERR_INVALID_REQUEST);
    cJSON_Delete(bad.searchable);
    CHECK_INT(registry_thing_type_get(reg, "sensor", &t, &err), IOT_ERR_NOT_FOUND);
    CHECK_STR(err.message, "Thing type sensor not found");
    CHECK_INT(registry_thing_type_create(reg, &in, &err), IOT_OK);
    CHECK_INT(registry_thing_type_create(reg, &in, &err), IOT_ERR_ALREADY_EXISTS);
    CHECK(registry_thing_type_exists(reg, "sensor"));
    CHECK_INT(registry_thing_type_get(reg, "sensor", &t, &err), IOT_OK);
    CHECK_STR(t.description, "temp");
    CHECK_STR(cJSON_GetStringValue(cJSON_GetArrayItem(t.searchable, 1)), "model");
    CHECK(!t.deprecated && t.created > 0 && t.id && strlen(t.id) == 36);
    registry_thing_type_clear(&t);
    registry_thing_type_clear(NULL);
    cJSON_Delete(searchable);

    CHECK_INT(registry_thing_type_put(reg, "gateway", &err), IOT_OK);
    CHECK_STR(keys(registry_thing_type_list(reg, NULL, NULL, &list, NULL, &err), &list, "name"),
              "gateway,sensor");
    CHECK_STR(keys(registry_thing_type_list(reg, "sensor", NULL, &list, NULL, &err), &list,
                   "description"),
              "temp");

    CHECK_INT(registry_thing_type_deprecate(reg, "nope", true, &err), IOT_ERR_NOT_FOUND);
    CHECK_INT(registry_thing_type_deprecate(reg, "sensor", true, &err), IOT_OK);
    CHECK_INT(registry_thing_type_get(reg, "sensor", &t, &err), IOT_OK);
    CHECK(t.deprecated && t.deprecated_at > 0);
    registry_thing_type_clear(&t);
    CHECK_INT(registry_thing_type_deprecate(reg, "sensor", false, &err), IOT_OK);
    CHECK_INT(registry_thing_type_get(reg, "sensor", &t, &err), IOT_OK);
    CHECK(!t.deprecated && t.deprecated_at == 0);
    registry_thing_type_clear(&t);

    CHECK_INT(put_thing_attrs(reg, "dev", "sensor", NULL), IOT_OK);
    CHECK_INT(registry_thing_type_delete(reg, "sensor", &err), IOT_ERR_DELETE_CONFLICT);
    CHECK_INT(registry_thing_type_delete(reg, "nope", &err), IOT_ERR_NOT_FOUND);
    CHECK_INT(put_thing_attrs(reg, "dev", NULL, NULL), IOT_OK);
    CHECK_INT(registry_thing_type_delete(reg, "sensor", &err), IOT_OK);
    CHECK(!registry_thing_type_exists(reg, "sensor"));
    registry_close(reg);
}

static void test_policy_versions(void)
{
    struct registry *reg = open_memory();
    struct iot_error err = {0};
    struct registry_policy p = {0};
    cJSON *list = NULL;
    char *doc = NULL, *next = NULL;
    long long v = 0, created = 0;
    bool is_default = false;

    CHECK_INT(registry_policy_info(reg, "p", &p, &err), IOT_ERR_NOT_FOUND);
    CHECK_INT(registry_policy_version_add(reg, "p", "{}", false, &v, &err), IOT_ERR_NOT_FOUND);
    CHECK_INT(registry_policy_versions(reg, "p", &list, &err), IOT_ERR_NOT_FOUND);
    CHECK_INT(registry_policy_create(reg, "p", "{\"v\":1}", &err), IOT_OK);
    CHECK_INT(registry_policy_info(reg, "p", &p, &err), IOT_OK);
    CHECK_INT(p.default_version, 1);
    CHECK_STR(p.document, "{\"v\":1}");
    registry_policy_clear(&p);

    CHECK_INT(registry_policy_version_add(reg, "p", "{\"v\":2}", false, &v, &err), IOT_OK);
    CHECK_INT(v, 2);
    CHECK_INT(registry_policy_get(reg, "p", &doc, &err), IOT_OK);
    CHECK_STR(doc, "{\"v\":1}"); /* not the default */
    free(doc);
    CHECK_INT(registry_policy_version_add(reg, "p", "{\"v\":3}", true, &v, &err), IOT_OK);
    CHECK_INT(v, 3);
    CHECK_INT(registry_policy_get(reg, "p", &doc, &err), IOT_OK);
    CHECK_STR(doc, "{\"v\":3}");
    free(doc);
    CHECK_STR(keys(registry_policy_versions(reg, "p", &list, &err), &list, "version"), "1,2,3");
    CHECK_STR(keys(registry_policy_versions(reg, "p", &list, &err), &list, "is_default"), "0,0,1");

    CHECK_INT(registry_policy_version_get(reg, "p", 2, &doc, &created, &is_default, &err), IOT_OK);
    CHECK_STR(doc, "{\"v\":2}");
    CHECK(!is_default && created > 0);
    free(doc);
    CHECK_INT(registry_policy_version_get(reg, "p", 9, &doc, NULL, NULL, &err), IOT_ERR_NOT_FOUND);
    CHECK(doc == NULL);

    CHECK_INT(registry_policy_version_delete(reg, "p", 3, &err), IOT_ERR_DELETE_CONFLICT);
    CHECK_INT(registry_policy_version_delete(reg, "p", 9, &err), IOT_ERR_NOT_FOUND);
    CHECK_INT(registry_policy_version_set_default(reg, "p", 9, &err), IOT_ERR_NOT_FOUND);
    CHECK_INT(registry_policy_version_set_default(reg, "p", 1, &err), IOT_OK);
    CHECK_INT(registry_policy_version_delete(reg, "p", 3, &err), IOT_OK);
    /* Ids are not reused after the newest is deleted. */
    CHECK_INT(registry_policy_version_add(reg, "p", "{\"v\":4}", false, &v, &err), IOT_OK);
    CHECK_INT(v, 4);
    CHECK_INT(registry_policy_info(reg, "p", &p, &err), IOT_OK);
    CHECK_INT(p.default_version, 1);
    CHECK_STR(p.document, "{\"v\":1}");
    registry_policy_clear(&p);

    /* Listings of policies and of targets in both directions. */
    CHECK_INT(registry_policy_create(reg, "a", "{}", &err), IOT_OK);
    CHECK_INT(registry_policy_attach(reg, "p", "t2", &err), IOT_OK);
    CHECK_INT(registry_policy_attach(reg, "p", "t1", &err), IOT_OK);
    CHECK_INT(registry_policy_attach(reg, "a", "t1", &err), IOT_OK);
    struct registry_page pg = {.limit = 1};
    CHECK_INT(registry_policy_list(reg, &pg, &list, &next, &err), IOT_OK);
    CHECK_STR(keys(IOT_OK, &list, "name"), "a");
    pg.after = next;
    CHECK_STR(keys(registry_policy_list(reg, &pg, &list, &next, &err), &list, "name"), "p");
    CHECK(next == NULL);
    free((char *)pg.after);
    pg = (struct registry_page){.descending = true};
    CHECK_STR(keys(registry_policy_list(reg, &pg, &list, NULL, &err), &list, "name"), "p,a");
    CHECK_STR(keys(registry_policy_target_list(reg, "p", NULL, &list, NULL, &err), &list, "target"),
              "t1,t2");
    CHECK_STR(keys(registry_target_policy_list(reg, "t1", NULL, &list, NULL, &err), &list, "name"),
              "a,p");

    /* DeletePolicy still removes every version. */
    CHECK_INT(registry_policy_detach(reg, "p", "t1", &err), IOT_OK);
    CHECK_INT(registry_policy_detach(reg, "p", "t2", &err), IOT_OK);
    CHECK_INT(registry_policy_delete(reg, "p", &err), IOT_OK);
    CHECK_INT(registry_policy_create(reg, "p", "{\"new\":1}", &err), IOT_OK);
    CHECK_STR(keys(registry_policy_versions(reg, "p", &list, &err), &list, "version"), "1");
    registry_close(reg);
}

static void test_template_versions(void)
{
    struct registry *reg = open_memory();
    struct iot_error err = {0};
    struct registry_template t = {0};
    cJSON *list = NULL;
    char *body = NULL, *next = NULL;
    long long v = 0;
    bool is_default = false;

    CHECK_INT(registry_template_version_list(reg, "t", NULL, &list, &next, &err),
              IOT_ERR_NOT_FOUND);
    CHECK_INT(registry_template_default_version(reg, "t", &v, &err), IOT_ERR_NOT_FOUND);
    struct registry_template in = {
        .name = (char *)"t", .body = (char *)"{\"b\":1}", .enabled = true, .created = 10};
    CHECK_INT(registry_template_put(reg, &in, &err), IOT_OK);
    CHECK_INT(registry_template_default_version(reg, "t", &v, &err), IOT_OK);
    CHECK_INT(v, 1);
    CHECK_INT(registry_template_version_get(reg, "t", 1, &body, NULL, &is_default, &err), IOT_OK);
    CHECK_STR(body, "{\"b\":1}");
    CHECK(is_default);
    free(body);

    CHECK_INT(registry_template_version_add(reg, "t", "{\"b\":2}", false, &v, &err), IOT_OK);
    CHECK_INT(v, 2);
    CHECK_INT(registry_template_get(reg, "t", &t, &err), IOT_OK);
    CHECK_STR(t.body, "{\"b\":1}");
    registry_template_clear(&t);
    CHECK_INT(registry_template_version_add(reg, "t", "{\"b\":3}", true, &v, &err), IOT_OK);
    CHECK_INT(registry_template_get(reg, "t", &t, &err), IOT_OK);
    CHECK_STR(t.body, "{\"b\":3}"); /* fleet provisioning reads the default's body */
    CHECK(t.enabled);
    registry_template_clear(&t);

    struct registry_page pg = {.limit = 2};
    CHECK_INT(registry_template_version_list(reg, "t", &pg, &list, &next, &err), IOT_OK);
    CHECK_STR(keys(IOT_OK, &list, "version"), "1,2");
    CHECK(next != NULL);
    pg.after = next;
    CHECK_INT(registry_template_version_list(reg, "t", &pg, &list, &next, &err), IOT_OK);
    CHECK_STR(keys(IOT_OK, &list, "is_default"), "1");
    CHECK(next == NULL);
    free((char *)pg.after);

    CHECK_INT(registry_template_version_delete(reg, "t", 3, &err), IOT_ERR_DELETE_CONFLICT);
    CHECK_INT(registry_template_version_delete(reg, "t", 7, &err), IOT_ERR_NOT_FOUND);
    CHECK_INT(registry_template_version_set_default(reg, "t", 7, &err), IOT_ERR_NOT_FOUND);
    CHECK_INT(registry_template_version_set_default(reg, "t", 2, &err), IOT_OK);
    CHECK_INT(registry_template_version_delete(reg, "t", 3, &err), IOT_OK);
    CHECK_INT(registry_template_version_add(reg, "t", "{\"b\":4}", false, &v, &err), IOT_OK);
    CHECK_INT(v, 4);

    /* A put (bootstrap reloading a file) rewrites the default version's body. */
    struct registry_template reload = {.name = (char *)"t", .body = (char *)"{\"file\":1}"};
    CHECK_INT(registry_template_put(reg, &reload, &err), IOT_OK);
    CHECK_INT(registry_template_version_get(reg, "t", 2, &body, NULL, &is_default, &err), IOT_OK);
    CHECK_STR(body, "{\"file\":1}");
    CHECK(is_default);
    free(body);

    struct registry_template other = {
        .name = (char *)"a", .body = (char *)"{}", .description = (char *)"first"};
    CHECK_INT(registry_template_put(reg, &other, &err), IOT_OK);
    CHECK_STR(keys(registry_template_list(reg, NULL, &list, NULL, &err), &list, "name"), "a,t");
    CHECK_STR(keys(registry_template_list(reg, NULL, &list, NULL, &err), &list, "enabled"), "0,0");

    CHECK_INT(registry_template_delete(reg, "t", &err), IOT_OK);
    CHECK_INT(registry_template_put(reg, &in, &err), IOT_OK); /* same name again: fresh versions */
    CHECK_STR(
        keys(registry_template_version_list(reg, "t", NULL, &list, NULL, &err), &list, "version"),
        "1");
    registry_close(reg);
}

static void test_events_and_reset(void)
{
    struct registry *reg = open_memory();
    struct iot_error err = {0};
    cJSON *cfg = NULL, *list = NULL;
    long long created = -1, modified = -1;
    char cert[65];
    make_id(cert, 90);

    CHECK_INT(registry_event_configs(reg, &cfg, &created, &modified, &err), IOT_OK);
    CHECK_INT(cJSON_GetArraySize(cfg), 0);
    CHECK_INT(created, 0);
    cJSON_Delete(cfg);
    CHECK(!registry_event_enabled(reg, "THING"));
    CHECK_INT(registry_event_config_set(reg, "", true, &err), IOT_ERR_INVALID_REQUEST);
    CHECK_INT(registry_event_config_set(reg, "THING", true, &err), IOT_OK);
    CHECK_INT(registry_event_config_set(reg, "POLICY", false, &err), IOT_OK);
    CHECK(registry_event_enabled(reg, "THING"));
    CHECK(!registry_event_enabled(reg, "POLICY"));
    CHECK_INT(registry_event_config_set(reg, "THING", false, &err), IOT_OK);
    CHECK(!registry_event_enabled(reg, "THING"));
    CHECK_INT(registry_event_configs(reg, &cfg, &created, &modified, &err), IOT_OK);
    CHECK(cJSON_IsFalse(cJSON_GetObjectItem(cfg, "THING")));
    CHECK(cJSON_IsFalse(cJSON_GetObjectItem(cfg, "POLICY")));
    CHECK(created > 0 && modified >= created);
    cJSON_Delete(cfg);

    /* Reset empties every table, foreign keys notwithstanding, and the registry stays usable. */
    CHECK_INT(add_cert(reg, cert, CERT_STATUS_ACTIVE), IOT_OK);
    CHECK_INT(add_thing(reg, "dev"), IOT_OK);
    CHECK_INT(registry_thing_group_put(reg, "g", &err), IOT_OK);
    CHECK_INT(registry_thing_group_add(reg, "g", "dev", &err), IOT_OK);
    CHECK_INT(registry_thing_principal_attach(reg, "dev", cert, &err), IOT_OK);
    CHECK_INT(registry_policy_create(reg, "p", "{}", &err), IOT_OK);
    CHECK_INT(registry_policy_attach(reg, "p", cert, &err), IOT_OK);
    CHECK_INT(registry_token_put(reg, "h", cert, 99, &err), IOT_OK);
    uint64_t v = registry_version(reg);
    CHECK_INT(registry_reset(reg, &err), IOT_OK);
    CHECK(registry_version(reg) > v);
    enum cert_status s;
    CHECK_INT(registry_cert_status(reg, cert, &s), IOT_ERR_NOT_FOUND);
    CHECK(!registry_thing_group_exists(reg, "g"));
    CHECK_STR(keys(registry_thing_list(reg, NULL, NULL, &list, NULL, &err), &list, "name"), "");
    CHECK_STR(keys(registry_policy_list(reg, NULL, &list, NULL, &err), &list, "name"), "");
    CHECK_INT(registry_token_find(reg, "h", NULL, NULL), IOT_ERR_NOT_FOUND);
    CHECK(!registry_event_enabled(reg, "THING"));
    CHECK_INT(add_cert(reg, cert, CERT_STATUS_ACTIVE), IOT_OK);
    /* Inside a caller's transaction it is undone with it. */
    CHECK_INT(registry_begin(reg), IOT_OK);
    CHECK_INT(registry_reset(reg, &err), IOT_OK);
    registry_rollback(reg);
    CHECK_INT(registry_cert_status(reg, cert, &s), IOT_OK);
    registry_close(reg);
}

/* A registry written before the control-plane columns existed gains them and keeps its data. */
static void test_added_columns(const char *dir)
{
    struct registry *reg = NULL;
    struct iot_error err = {0};
    char path[512], cert[65];
    struct registry_cert_meta meta;
    struct registry_thing_type t = {0};
    long long v = 0;
    make_id(cert, 91);
    snprintf(path, sizeof(path), "%s/old.db", dir);
    CHECK_INT(registry_open(path, &reg, &err), IOT_OK);
    if (reg == NULL)
        return;
    CHECK_INT(add_cert(reg, cert, CERT_STATUS_ACTIVE), IOT_OK);
    CHECK_INT(registry_thing_type_put(reg, "sensor", &err), IOT_OK);
    struct registry_template tpl = {.name = (char *)"t", .body = (char *)"{\"old\":1}"};
    CHECK_INT(registry_template_put(reg, &tpl, &err), IOT_OK);
    registry_close(reg);
    sqlite_run(path, "ALTER TABLE certificates DROP COLUMN customer_version;"
                     "ALTER TABLE certificates DROP COLUMN claim_template;"
                     "ALTER TABLE thing_types DROP COLUMN id;"
                     "ALTER TABLE templates DROP COLUMN default_version;"
                     "DROP TABLE template_versions; DROP TABLE event_configurations;");
    reg = NULL;
    CHECK_INT(registry_open(path, &reg, &err), IOT_OK);
    if (reg == NULL)
        return;
    CHECK_INT(registry_cert_get_meta(reg, cert, &meta, &err), IOT_OK);
    CHECK_INT(meta.customer_version, 1);
    CHECK_STR(meta.claim_template, "");
    CHECK_INT(registry_thing_type_get(reg, "sensor", &t, &err), IOT_OK);
    CHECK(t.id != NULL && strlen(t.id) == 36);
    registry_thing_type_clear(&t);
    CHECK_INT(registry_template_default_version(reg, "t", &v, &err), IOT_OK);
    CHECK_INT(v, 1);
    char *body = NULL;
    CHECK_INT(registry_template_version_get(reg, "t", 1, &body, NULL, NULL, &err), IOT_OK);
    CHECK_STR(body, "{\"old\":1}");
    free(body);
    CHECK_INT(registry_event_config_set(reg, "THING", true, &err), IOT_OK);
    registry_close(reg);
}

static void remove_dir(const char *dir)
{
    static const char *const names[] = {"garbage.txt",  "other.db",        "newer.db",
                                        "registry.db",  "registry.db-wal", "registry.db-shm",
                                        "newer.db-wal", "newer.db-shm",    "old.db",
                                        "old.db-wal",   "old.db-shm"};
    char path[512];
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        unlink(path);
    }
    if (rmdir(dir) != 0)
        perror(dir);
}

int main(void)
{
    char dir[] = "/tmp/test_registry.XXXXXX";
    if (mkdtemp(dir) == NULL) {
        perror("mkdtemp");
        return 2;
    }
    test_status_names();
    test_open_errors(dir);
    test_certificates();
    test_things();
    test_types_and_groups();
    test_principals();
    test_policies();
    test_templates();
    test_tokens();
    test_cert_delete_cascades();
    test_expire_tokens();
    test_transactions();
    test_isolation();
    test_concurrency();
    test_file_registry(dir);
    test_group_commit(dir);
    test_cert_list_and_claims();
    test_thing_lists();
    test_thing_types();
    test_policy_versions();
    test_template_versions();
    test_events_and_reset();
    test_added_columns(dir);
    remove_dir(dir);
    return check_summary();
}
