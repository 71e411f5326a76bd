/* Unit test of the process-wide policy cache (each (name, document) compiled once, shared, freed
 * after its last user once replaced; safe from several threads) and of the registry's
 * authorization versions (what moves them and what does not). */
#include "policy_cache.h"
#include "registry.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

#define THREADS 4
#define ROUNDS 2000

static const char DOC_A[] = "{\"Version\":\"2012-10-17\",\"Statement\":{\"Effect\":\"Allow\","
                            "\"Action\":\"iot:Connect\",\"Resource\":\"*\"}}";
static const char DOC_B[] = "{\"Version\":\"2012-10-17\",\"Statement\":{\"Effect\":\"Deny\","
                            "\"Action\":\"iot:Connect\",\"Resource\":\"*\"}}";

static enum policy_effect connect_effect(const struct policy *p)
{
    struct policy_context ctx;
    struct policy_decision d;
    const char arn[] = "arn:aws:iot:us-east-1:123456789012:client/c";
    policy_context_init(&ctx);
    ctx.region = "us-east-1";
    ctx.account = "123456789012";
    ctx.client_id = "c";
    const struct policy *list[] = {p};
    enum iot_err rc = policy_evaluate(list, 1, &ctx, POLICY_ACTION_CONNECT, arn, strlen(arn), &d);
    policy_context_cleanup(&ctx);
    return rc == IOT_OK ? d.effect : (enum policy_effect) - 1;
}

static void test_errors_are_not_cached(void)
{
    struct policy_cache *pc = policy_cache_new();
    struct policy_cache_stats s;
    const struct policy *p = (const struct policy *)1;
    struct iot_error err = {0};
    CHECK_INT(policy_cache_get(pc, "bad", "{not json", &p, &err), IOT_ERR_INVALID_REQUEST);
    CHECK(p == NULL);
    CHECK(err.message[0] != '\0');
    CHECK_INT(policy_cache_get(pc, "bad", "{not json", &p, &err), IOT_ERR_INVALID_REQUEST);
    CHECK_INT(policy_cache_get(pc, "bad name!", DOC_A, &p, &err), IOT_ERR_INVALID_REQUEST);
    policy_cache_stats(pc, &s);
    CHECK_INT(s.compiles, 3);
    CHECK_INT(s.entries, 0);
    policy_cache_release(pc, NULL); /* NULL-safe */
    policy_cache_free(pc);
    policy_cache_free(NULL);
}

static void test_compiled_once_and_shared(void)
{
    struct policy_cache *pc = policy_cache_new();
    struct policy_cache_stats s;
    const struct policy *a1, *a2, *other;
    CHECK_INT(policy_cache_get(pc, "a", DOC_A, &a1, NULL), IOT_OK);
    CHECK_INT(policy_cache_get(pc, "a", DOC_A, &a2, NULL), IOT_OK);
    CHECK(a1 == a2);
    CHECK_STR(policy_name(a1), "a");
    /* Same text under another name: another policy (the name appears in explanations). */
    CHECK_INT(policy_cache_get(pc, "other", DOC_A, &other, NULL), IOT_OK);
    CHECK(other != a1);
    policy_cache_stats(pc, &s);
    CHECK_INT(s.compiles, 2);
    CHECK_INT(s.hits, 1);
    CHECK_INT(s.entries, 2);
    policy_cache_release(pc, a1);
    policy_cache_release(pc, a2);
    policy_cache_release(pc, other);
    /* Unused but current entries stay compiled for the next connection. */
    CHECK_INT(policy_cache_get(pc, "a", DOC_A, &a1, NULL), IOT_OK);
    policy_cache_stats(pc, &s);
    CHECK_INT(s.compiles, 2);
    CHECK_INT(s.entries, 2);
    policy_cache_release(pc, a1);
    policy_cache_free(pc);
}

static void test_new_version_replaces_old(void)
{
    struct policy_cache *pc = policy_cache_new();
    struct policy_cache_stats s;
    const struct policy *v1, *v2, *again;
    CHECK_INT(policy_cache_get(pc, "p", DOC_A, &v1, NULL), IOT_OK);
    CHECK_INT(policy_cache_get(pc, "p", DOC_B, &v2, NULL), IOT_OK);
    CHECK(v1 != v2);
    /* The old version stays valid for the connection still holding it. */
    CHECK_INT(connect_effect(v1), POLICY_ALLOW);
    CHECK_INT(connect_effect(v2), POLICY_DENY_EXPLICIT);
    policy_cache_stats(pc, &s);
    CHECK_INT(s.entries, 2);
    policy_cache_release(pc, v1); /* its last user: freed */
    policy_cache_stats(pc, &s);
    CHECK_INT(s.entries, 1);
    CHECK_INT(policy_cache_get(pc, "p", DOC_B, &again, NULL), IOT_OK);
    CHECK(again == v2);
    /* Back to the first document (SetDefaultPolicyVersion to v1): compiled again, once. */
    const struct policy *back;
    CHECK_INT(policy_cache_get(pc, "p", DOC_A, &back, NULL), IOT_OK);
    CHECK_INT(connect_effect(back), POLICY_ALLOW);
    CHECK_INT(connect_effect(v2), POLICY_DENY_EXPLICIT); /* still held twice */
    policy_cache_stats(pc, &s);
    CHECK_INT(s.compiles, 3);
    CHECK_INT(s.entries, 2);
    policy_cache_release(pc, v2);
    policy_cache_release(pc, again);
    policy_cache_stats(pc, &s);
    CHECK_INT(s.entries, 1);
    policy_cache_release(pc, back);
    policy_cache_free(pc);
}

struct worker {
    struct policy_cache *pc;
    int failures;
};

static void *hammer(void *arg)
{
    struct worker *w = arg;
    for (int i = 0; i < ROUNDS; i++) {
        const struct policy *p = NULL;
        const char *doc = (i % 50 == 49) ? DOC_B : DOC_A; /* versions flip under the others */
        if (policy_cache_get(w->pc, i % 2 ? "x" : "y", doc, &p, NULL) != IOT_OK ||
            connect_effect(p) != (doc == DOC_A ? POLICY_ALLOW : POLICY_DENY_EXPLICIT))
            w->failures++;
        policy_cache_release(w->pc, p);
    }
    return NULL;
}

static void test_threads(void)
{
    struct policy_cache *pc = policy_cache_new();
    struct worker w[THREADS];
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++) {
        w[i] = (struct worker){.pc = pc};
        CHECK_INT(pthread_create(&t[i], NULL, hammer, &w[i]), 0);
    }
    for (int i = 0; i < THREADS; i++) {
        pthread_join(t[i], NULL);
        CHECK_INT(w[i].failures, 0);
    }
    struct policy_cache_stats s;
    policy_cache_stats(pc, &s);
    CHECK_INT(s.compiles + s.hits, (uint64_t)THREADS * ROUNDS);
    CHECK(s.entries <= 2); /* nothing held: only the current documents of x and y remain */
    policy_cache_free(pc);
}

/* ---- authorization versions ---------------------------------------------------------------- */

static struct registry *open_memory(void)
{
    struct registry *reg = NULL;
    struct iot_error err = {0};
    if (registry_open(":memory:", &reg, &err) != IOT_OK) {
        fprintf(stderr, "registry_open: %s\n", err.message);
        exit(2);
    }
    return reg;
}

static void add_cert(struct registry *reg, unsigned n, char id[65])
{
    struct registry_cert c = {.pem = (char *)"-----BEGIN CERTIFICATE-----\n",
                              .status = CERT_STATUS_ACTIVE};
    snprintf(id, 65, "%064x", n);
    snprintf(c.id, sizeof(c.id), "%s", id);
    CHECK_INT(registry_cert_insert(reg, &c, NULL), IOT_OK);
}

static void add_thing(struct registry *reg, const char *name)
{
    struct registry_thing t = {.name = (char *)name};
    CHECK_INT(registry_thing_put(reg, &t, NULL), IOT_OK);
}

static void test_authz_versions(void)
{
    struct registry *reg = open_memory();
    char mine[65], other[65], spare[65];
    add_cert(reg, 1, mine);
    add_thing(reg, "lamp-1");
    CHECK_INT(registry_policy_create(reg, "pol", DOC_A, NULL), IOT_OK);
    CHECK_INT(registry_policy_attach(reg, "pol", mine, NULL), IOT_OK);
    CHECK_INT(registry_thing_principal_attach(reg, "lamp-1", mine, NULL), IOT_OK);
    uint64_t seen = registry_authz_version(reg);
    CHECK(!registry_authz_changed(reg, seen, mine, "lamp-1"));

    /* Provisioning other devices concerns other keys only. */
    uint64_t any = registry_version(reg);
    for (unsigned i = 2; i < 40; i++) {
        char name[32];
        add_cert(reg, i, other);
        snprintf(name, sizeof(name), "lamp-%u", i);
        add_thing(reg, name);
        CHECK_INT(registry_policy_attach(reg, "pol", other, NULL), IOT_OK);
        CHECK_INT(registry_thing_principal_attach(reg, name, other, NULL), IOT_OK);
    }
    CHECK(registry_version(reg) > any);
    CHECK(registry_authz_version(reg) > seen);
    CHECK(!registry_authz_changed(reg, seen, mine, "lamp-1"));
    CHECK(registry_authz_changed(reg, seen, other, NULL));
    CHECK(registry_authz_changed(reg, seen, NULL, "lamp-39"));
    /* Certificates alone, and status changes, do not move the version at all. */
    uint64_t v = registry_authz_version(reg);
    add_cert(reg, 100, spare);
    CHECK_INT(registry_cert_set_status(reg, spare, CERT_STATUS_INACTIVE, NULL), IOT_OK);
    CHECK_INT(registry_authz_version(reg), v);
    /* A refused change moves nothing. */
    CHECK_INT(registry_thing_principal_attach(reg, "nope", mine, NULL), IOT_ERR_NOT_FOUND);
    CHECK_INT(registry_policy_attach(reg, "nope", mine, NULL), IOT_ERR_NOT_FOUND);
    CHECK_INT(registry_authz_version(reg), v);

    /* Changes that concern the connection of (mine, lamp-1). */
    seen = registry_authz_version(reg);
    CHECK_INT(registry_policy_detach(reg, "pol", mine, NULL), IOT_OK);
    CHECK(registry_authz_changed(reg, seen, mine, NULL));
    seen = registry_authz_version(reg);
    struct registry_thing t = {.name = (char *)"lamp-1", .attributes = cJSON_CreateObject()};
    cJSON_AddStringToObject(t.attributes, "room", "kitchen");
    CHECK_INT(registry_thing_put(reg, &t, NULL), IOT_OK);
    cJSON_Delete(t.attributes);
    CHECK(registry_authz_changed(reg, seen, NULL, "lamp-1"));
    CHECK(!registry_authz_changed(reg, seen, mine, NULL));
    seen = registry_authz_version(reg);
    CHECK_INT(registry_thing_principal_detach(reg, "lamp-1", mine, NULL), IOT_OK);
    CHECK(registry_authz_changed(reg, seen, mine, "lamp-1"));
    seen = registry_authz_version(reg);
    struct registry_thing_group g = {.name = (char *)"g"};
    CHECK_INT(registry_thing_group_create(reg, &g, NULL), IOT_OK);
    CHECK_INT(registry_authz_version(reg), seen); /* an empty new group concerns nobody */
    CHECK_INT(registry_thing_group_add(reg, "g", "lamp-1", NULL), IOT_OK);
    CHECK(registry_authz_changed(reg, seen, NULL, "lamp-1"));
    /* Policy versions and group attachments concern everyone. */
    seen = registry_authz_version(reg);
    CHECK_INT(registry_policy_version_add(reg, "pol", DOC_B, false, NULL, NULL), IOT_OK);
    CHECK_INT(registry_authz_version(reg), seen); /* not the default: nothing changes */
    CHECK_INT(registry_policy_version_add(reg, "pol", DOC_B, true, NULL, NULL), IOT_OK);
    CHECK(registry_authz_changed(reg, seen, "f00", "anyone"));
    seen = registry_authz_version(reg);
    CHECK_INT(registry_policy_attach(reg, "pol", "g", NULL), IOT_OK);
    CHECK(registry_authz_changed(reg, seen, NULL, NULL));
    /* A transaction's marks are published once, at the outer commit. */
    seen = registry_authz_version(reg);
    CHECK_INT(registry_begin(reg), IOT_OK);
    add_thing(reg, "inside");
    CHECK_INT(registry_authz_version(reg), seen);
    CHECK_INT(registry_commit(reg), IOT_OK);
    CHECK_INT(registry_authz_version(reg), seen + 1);
    CHECK(registry_authz_changed(reg, seen, NULL, "inside"));
    /* ... and dropped by a rollback. */
    seen = registry_authz_version(reg);
    CHECK_INT(registry_begin(reg), IOT_OK);
    add_thing(reg, "rolled-back");
    registry_rollback(reg);
    CHECK_INT(registry_authz_version(reg), seen);
    CHECK(!registry_authz_changed(reg, seen, NULL, "rolled-back"));
    registry_close(reg);
}

int main(void)
{
    test_errors_are_not_cached();
    test_compiled_once_and_shared();
    test_new_version_replaces_old();
    test_threads();
    test_authz_versions();
    return check_summary();
}
