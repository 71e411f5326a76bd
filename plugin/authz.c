/* Authorization: IoT policies evaluated on every CONNECT, PUBLISH, SUBSCRIBE and delivery
 * (shared/spec/broker-and-policy.md §2, §3, §8.1). Each connection keeps its policy context and
 * references to its policies, compiled once per document for the whole process (policy_cache).
 * Both are rebuilt only when the registry reports a change that may concern this connection
 * (registry_authz_changed(): its certificate's attachments, its thing, a policy's default
 * version, groups), so a change applies at the client's next action while provisioning other
 * devices costs connected clients nothing. The cost of a check depends only on the policies
 * that apply to that client; and the last few actions allowed are remembered until the next
 * reload, so a client publishing to the same topics pays for the evaluation once (refusals are
 * always evaluated again: each is explained in the log). */
#include "plugin.h"

#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

static void forget_allowed(struct conn *c)
{
    for (size_t i = 0; i < AUTHZ_ALLOWED_MAX; i++) {
        free(c->allowed[i].name);
        c->allowed[i] = (struct authz_allowed){0};
    }
    c->allowed_next = 0;
}

/* FNV-1a over the action and NAME; never 0, the mark of an empty slot. */
static uint32_t allowed_hash(enum policy_action action, const char *name)
{
    uint32_t h = 2166136261u ^ (uint32_t)action;
    for (const unsigned char *s = (const unsigned char *)name; *s; s++)
        h = (h ^ *s) * 16777619u;
    return h ? h : 1;
}

static bool was_allowed(const struct conn *c, enum policy_action action, const char *name,
                        uint32_t hash)
{
    for (size_t i = 0; i < AUTHZ_ALLOWED_MAX; i++) {
        const struct authz_allowed *a = &c->allowed[i];
        if (a->hash == hash && a->action == action && strcmp(a->name, name) == 0)
            return true;
    }
    return false;
}

static void remember_allowed(struct conn *c, enum policy_action action, const char *name,
                             uint32_t hash)
{
    if (c->allowed_off)
        return;
    char *copy = strdup(name);
    if (copy == NULL)
        return;
    struct authz_allowed *a = &c->allowed[c->allowed_next];
    c->allowed_next = (c->allowed_next + 1) % AUTHZ_ALLOWED_MAX;
    free(a->name);
    *a = (struct authz_allowed){.hash = hash, .action = action, .name = copy};
}

static void free_policies(struct conn *c)
{
    forget_allowed(c);
    for (size_t i = 0; i < c->n_policies; i++)
        policy_cache_release(c->cache, c->policies[i]);
    free(c->policies);
    c->policies = NULL;
    c->n_policies = 0;
}

static void free_thing(struct conn *c)
{
    for (size_t i = 0; i < c->n_attrs; i++) {
        free((char *)c->attrs[i].name);
        free((char *)c->attrs[i].value);
    }
    free(c->attrs);
    c->attrs = NULL;
    c->n_attrs = 0;
    free(c->thing_type);
    c->thing_type = NULL;
    c->ctx.thing_associated = false;
    c->ctx.thing_name = NULL;
    c->ctx.thing_type_name = NULL;
    c->ctx.thing_attributes = NULL;
    c->ctx.n_thing_attributes = 0;
    c->ctx.is_attached = POLICY_BOOL_ABSENT;
}

static bool array_has(const cJSON *array, const char *s)
{
    const cJSON *item;
    cJSON_ArrayForEach(item, array) if (cJSON_IsString(item) && strcmp(item->valuestring, s) == 0)
        return true;
    return false;
}

/* §1.4: non-exclusive association — the client id names a thing the certificate is attached to. */
static void load_thing(struct plugin *p, struct conn *c)
{
    cJSON *things = NULL;
    struct registry_thing t = {0};
    registry_principal_things(p->reg, c->cert_id, &things);
    bool attached = array_has(things, c->client_id);
    cJSON_Delete(things);
    if (registry_thing_get(p->reg, c->client_id, &t, NULL) != IOT_OK) {
        c->ctx.is_attached = POLICY_BOOL_ABSENT;
        return;
    }
    c->ctx.is_attached = attached ? POLICY_BOOL_TRUE : POLICY_BOOL_FALSE;
    if (attached) {
        c->ctx.thing_associated = true;
        c->ctx.thing_name = c->client_id;
        c->thing_type = t.type_name ? strdup(t.type_name) : NULL;
        c->ctx.thing_type_name = c->thing_type;
        int n = cJSON_GetArraySize(t.attributes);
        c->attrs = n > 0 ? calloc((size_t)n, sizeof(*c->attrs)) : NULL;
        const cJSON *a;
        cJSON_ArrayForEach(a, t.attributes)
        {
            if (c->attrs && cJSON_IsString(a)) {
                c->attrs[c->n_attrs].name = strdup(a->string);
                c->attrs[c->n_attrs].value = strdup(a->valuestring);
                c->n_attrs++;
            }
        }
        c->ctx.thing_attributes = c->attrs;
        c->ctx.n_thing_attributes = c->n_attrs;
    }
    registry_thing_clear(&t);
}

static void add_policy(struct plugin *p, struct conn *c, const char *name)
{
    for (size_t i = 0; i < c->n_policies; i++)
        if (strcmp(policy_name(c->policies[i]), name) == 0)
            return;
    char *doc = NULL;
    const struct policy *pol = NULL;
    struct iot_error err = {0};
    if (registry_policy_get(p->reg, name, &doc, NULL) == IOT_OK &&
        policy_cache_get(p->policies, name, doc, &pol, &err) == IOT_OK) {
        const struct policy **grown = realloc(c->policies, (c->n_policies + 1) * sizeof(*grown));
        if (grown) {
            c->policies = grown;
            c->policies[c->n_policies++] = pol;
            pol = NULL;
        }
    } else if (doc) {
        mosquitto_log_printf(MOSQ_LOG_WARNING, "iotmock: policy %s does not compile: %s", name,
                             err.message);
    }
    policy_cache_release(p->policies, pol);
    free(doc);
}

static void add_target_policies(struct plugin *p, struct conn *c, const char *target)
{
    cJSON *names = NULL;
    if (registry_target_policies(p->reg, target, &names) != IOT_OK)
        return;
    const cJSON *n;
    cJSON_ArrayForEach(n, names) if (cJSON_IsString(n)) add_policy(p, c, n->valuestring);
    cJSON_Delete(names);
}

static void add_group_policies(struct plugin *p, struct conn *c, const char *group)
{
    char arn[512];
    snprintf(arn, sizeof(arn), "arn:aws:iot:%s:%s:thinggroup/%s", p->opt.region,
             p->opt.account_id, group);
    add_target_policies(p, c, group);
    add_target_policies(p, c, arn);
}

/* A CreateProvisioningClaim certificate's rights are implicit (fleet.h); they show in
 * refusals under this name (never a policy of the registry). */
#define CLAIM_POLICY_NAME "iotmock-implicit-provisioning-claim"

static void add_claim_policy(struct plugin *p, struct conn *c)
{
    struct registry_cert_meta m = {0};
    const struct policy *pol = NULL;
    if (registry_cert_get_meta(p->reg, c->cert_id, &m, NULL) != IOT_OK || m.claim_template[0] == 0)
        return;
    char *doc = fleet_claim_policy_document(p->opt.region, p->opt.account_id, m.claim_template);
    const struct policy **grown = NULL;
    if (doc != NULL && policy_cache_get(p->policies, CLAIM_POLICY_NAME, doc, &pol, NULL) == IOT_OK &&
        (grown = realloc(c->policies, (c->n_policies + 1) * sizeof(*grown))) != NULL) {
        c->policies = grown;
        c->policies[c->n_policies++] = pol;
        pol = NULL;
    }
    policy_cache_release(p->policies, pol);
    free(doc);
}

/* The union of the certificate's policies and, for an associated thing, its groups' (§2.6). */
static void load_policies(struct plugin *p, struct conn *c)
{
    add_target_policies(p, c, c->cert_id);
    add_claim_policy(p, c);
    if (!c->ctx.thing_associated)
        return;
    cJSON *groups = NULL;
    registry_thing_groups(p->reg, c->client_id, &groups);
    const cJSON *g;
    cJSON_ArrayForEach(g, groups)
    {
        add_group_policies(p, c, g->valuestring);
        /* Policies are inherited down the group hierarchy (broker-and-policy.md §1.5). */
        cJSON *ancestors = NULL;
        registry_thing_group_ancestors(p->reg, g->valuestring, &ancestors);
        const cJSON *a;
        cJSON_ArrayForEach(a, ancestors) if (cJSON_IsString(a))
            add_group_policies(p, c, a->valuestring);
        cJSON_Delete(ancestors);
    }
    cJSON_Delete(groups);
}

/* Reloads what the connection's authorization depends on if a change since it was loaded may
 * concern it. The version is read before the registry, so a change committed meanwhile is seen
 * again at the next check. */
static void refresh(struct plugin *p, struct conn *c)
{
    uint64_t v = registry_authz_version(p->reg);
    if (c->loaded_version == v)
        return;
    bool reload = c->loaded_version != 0;
    if (reload && !registry_authz_changed(p->reg, c->loaded_version, c->cert_id, c->client_id)) {
        c->loaded_version = v;
        return;
    }
    free_policies(c);
    free_thing(c);
    load_thing(p, c);
    load_policies(p, c);
    c->allowed_off = false;
    for (size_t i = 0; i < c->n_policies; i++)
        c->allowed_off |= policy_varies_with_time(c->policies[i]);
    c->loaded_version = v;
    if (reload) { /* rare: only a change that may concern this client */
        struct policy_cache_stats s;
        policy_cache_stats(p->policies, &s);
        mosquitto_log_printf(MOSQ_LOG_NOTICE,
                             "iotmock: authorization reloaded | client=%s | cert=%s | "
                             "policies=%zu | compiled documents=%llu",
                             c->client_id, c->cert_id, c->n_policies,
                             (unsigned long long)s.compiles);
    }
}

bool authz_prepare(struct plugin *p, struct conn *c, struct mosquitto *client, X509 *cert)
{
    struct iot_error err = {0};
    authz_clear(c);
    policy_context_init(&c->ctx);
    if (policy_context_from_cert(&c->ctx, cert, &err) != IOT_OK) {
        mosquitto_log_printf(MOSQ_LOG_WARNING, "iotmock: certificate variables unavailable: %s",
                             err.message);
        return false;
    }
    c->cache = p->policies;
    c->protocol_version = mosquitto_client_protocol_version(client);
    c->ctx.region = p->opt.region;
    c->ctx.account = p->opt.account_id;
    c->ctx.client_id = c->client_id;
    c->ctx.certificate_id = c->cert_id;
    c->ctx.negated_absent_false = p->opt.negated_absent_false;
    free(c->source_ip);
    const char *ip = mosquitto_client_address(client);
    c->source_ip = ip ? strdup(ip) : NULL;
    c->ctx.source_ip = c->source_ip;
    if (!mosquitto_client_clean_session(client))
        c->ctx.connect_attributes |= POLICY_CONNECT_PERSISTENT;
    c->loaded_version = 0;
    return true;
}

void authz_clear(struct conn *c)
{
    free_policies(c);
    free_thing(c);
    policy_context_cleanup(&c->ctx);
    free(c->source_ip);
    c->source_ip = NULL;
    c->loaded_version = 0;
}

bool authz_allowed(struct plugin *p, struct conn *c, enum policy_action action, const char *name)
{
    char arn[POLICY_ARN_MAX];
    struct policy_decision d;
    const char *why = NULL;
    refresh(p, c); /* first: a reload forgets what was allowed */
    uint32_t hash = allowed_hash(action, name);
    if (was_allowed(c, action, name, hash))
        return true;
    if (action != POLICY_ACTION_CONNECT &&
        policy_reserved_check(action, name, &why) == POLICY_RESERVED_DENIED) {
        mosquitto_log_printf(MOSQ_LOG_NOTICE,
                             "iotmock: %s refused | client=%s | cert=%s | topic=%s | reserved "
                             "topic: %s",
                             policy_action_name(action), c->client_id, c->cert_id, name,
                             why ? why : "not allowed on AWS IoT");
        return false;
    }
    size_t len = policy_arn_for(arn, sizeof(arn), &c->ctx, action, name, strlen(name));
    if (len == 0 || len >= sizeof(arn))
        return false;
    if (policy_evaluate(c->policies, c->n_policies, &c->ctx, action, arn, len, &d) != IOT_OK)
        return false;
    if (d.effect == POLICY_ALLOW) {
        remember_allowed(c, action, name, hash);
        return true;
    }
    /* Every refusal explained on one line: what AWS never says. */
    mosquitto_log_printf(MOSQ_LOG_NOTICE, "iotmock: %s refused | client=%s | cert=%s | %s",
                         policy_action_name(action), c->client_id, c->cert_id, d.explanation);
    return false;
}

int authz_deny_code(const struct plugin *p, const struct conn *c)
{
    /* MQTT 3.1.1 cannot carry a refusal: AWS closes the connection (§3.2, §3.3). Mosquitto does
     * the same when an ACL check fails with anything but MOSQ_ERR_ACL_DENIED. */
    if (c->protocol_version == 5 || p->opt.friendly)
        return MOSQ_ERR_ACL_DENIED;
    return MOSQ_ERR_AUTH;
}
