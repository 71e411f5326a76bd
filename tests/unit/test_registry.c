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

static void remove_dir(const char *dir)
{
    static const char *const names[] = {"garbage.txt",  "other.db",        "newer.db",
                                        "registry.db",  "registry.db-wal", "registry.db-shm",
                                        "newer.db-wal", "newer.db-shm"};
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
    remove_dir(dir);
    return check_summary();
}
