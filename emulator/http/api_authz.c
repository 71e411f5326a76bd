/* TestAuthorization and GetEffectivePolicies: the broker's policy decisions, asked over HTTP.
 * The context is built as the broker builds it for a connection (shared/spec/broker-and-policy.md
 * §1.4, §2.4, §2.6): the certificate's variables, the thing named by the client ID when the
 * certificate is attached to it, the certificate's policies and, for that thing, its groups'. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/api.h"
#include "policy.h"

#define AUTH_INFOS_MAX 10 /* the model's cap */

/* What one evaluation needs; everything in it is owned and freed by authz_clear(). */
struct authz {
    struct policy_context ctx;
    struct policy_cache *cache;     /* the shared compiled policies, or NULL */
    const struct policy **policies; /* references into cache, or owned when cache is NULL */
    size_t n_policies;
    cJSON *names; /* the policies considered, in order: array of names */
    struct registry_thing thing;
    struct policy_attr *attrs;
    char cert_id[CA_ID_LEN + 1];
};

static void authz_clear(struct authz *a)
{
    policy_context_cleanup(&a->ctx);
    for (size_t i = 0; i < a->n_policies; i++) {
        if (a->cache)
            policy_cache_release(a->cache, a->policies[i]);
        else
            policy_free((struct policy *)a->policies[i]);
    }
    free(a->policies);
    cJSON_Delete(a->names);
    registry_thing_clear(&a->thing);
    free(a->attrs);
    memset(a, 0, sizeof(*a));
}

static bool listed(const cJSON *names, const char *name)
{
    const cJSON *n;
    cJSON_ArrayForEach(n, names)
    {
        if (cJSON_IsString(n) && strcmp(n->valuestring, name) == 0)
            return true;
    }
    return false;
}

/* Adds the policies attached to TARGET (minus SKIP) to the names considered. */
static void add_target(struct http_request *req, struct authz *a, const char *target,
                       const cJSON *skip)
{
    cJSON *names = NULL;
    const cJSON *n;
    if (registry_target_policies(req->srv->cfg.reg, target, &names) != IOT_OK)
        return;
    cJSON_ArrayForEach(n, names)
    {
        if (!listed(a->names, n->valuestring) && !listed(skip, n->valuestring))
            cJSON_AddItemToArray(a->names, cJSON_CreateString(n->valuestring));
    }
    cJSON_Delete(names);
}

/* §1.4: the client ID names a thing the certificate is attached to. */
static void associate(struct http_request *req, struct authz *a, const char *client_id)
{
    cJSON *things = NULL;
    if (client_id == NULL ||
        registry_thing_get(req->srv->cfg.reg, client_id, &a->thing, NULL) != IOT_OK)
        return;
    registry_principal_things(req->srv->cfg.reg, a->cert_id, &things);
    bool attached = listed(things, client_id);
    cJSON_Delete(things);
    a->ctx.is_attached = attached ? POLICY_BOOL_TRUE : POLICY_BOOL_FALSE;
    if (!attached)
        return;
    a->ctx.thing_associated = true;
    a->ctx.thing_name = a->thing.name;
    a->ctx.thing_type_name = a->thing.type_name;
    int n = cJSON_GetArraySize(a->thing.attributes);
    a->attrs = n > 0 ? calloc((size_t)n, sizeof(*a->attrs)) : NULL;
    const cJSON *attr, *attributes = a->attrs ? a->thing.attributes : NULL;
    cJSON_ArrayForEach(attr, attributes)
    {
        if (cJSON_IsString(attr))
            a->attrs[a->ctx.n_thing_attributes++] =
                (struct policy_attr){.name = attr->string, .value = attr->valuestring};
    }
    a->ctx.thing_attributes = a->attrs;
}

/* The certificate's policies, then (for an associated thing) its groups' by name and by ARN. */
static void collect_names(struct http_request *req, struct authz *a, const char *thing,
                          const cJSON *skip)
{
    cJSON *groups = NULL;
    const cJSON *g;
    if (a->cert_id[0] != '\0')
        add_target(req, a, a->cert_id, skip);
    if (thing == NULL)
        return;
    registry_thing_groups(req->srv->cfg.reg, thing, &groups);
    cJSON_ArrayForEach(g, groups)
    {
        add_target(req, a, g->valuestring, skip);
        add_target(req, a, arn_of(req, "thinggroup", g->valuestring), skip);
    }
    cJSON_Delete(groups);
}

/* Appends the compiled policy NAME (document DOC): the shared one when there is a cache. */
static enum iot_err compile_one(struct http_request *req, struct authz *a, const char *name,
                                const char *doc, struct iot_error *err)
{
    const struct policy **slot = &a->policies[a->n_policies];
    a->cache = req->srv->cfg.policies;
    if (a->cache)
        return policy_cache_get(a->cache, name, doc, slot, err);
    struct policy *own = NULL;
    enum iot_err rc = policy_compile(name, doc, strlen(doc), &own, err);
    *slot = own;
    return rc;
}

static bool compile_all(struct http_reply *rep, struct http_request *req, struct authz *a)
{
    const cJSON *n;
    size_t count = (size_t)cJSON_GetArraySize(a->names);
    a->policies = count ? calloc(count, sizeof(*a->policies)) : NULL;
    cJSON_ArrayForEach(n, a->names)
    {
        char *doc = NULL;
        struct iot_error err = {0};
        if (registry_policy_get(req->srv->cfg.reg, n->valuestring, &doc, &err) != IOT_OK) {
            reply_not_found(rep, "Policy %s not found", n->valuestring);
            return false;
        }
        enum iot_err rc =
            a->policies ? compile_one(req, a, n->valuestring, doc, &err) : IOT_ERR_NOMEM;
        free(doc);
        if (rc != IOT_OK) {
            reply_iot_error(rep, &err);
            return false;
        }
        a->n_policies++;
    }
    return true;
}

/* Reads the principal (a certificate ARN) and loads its certificate variables. */
static bool load_principal(struct http_request *req, struct http_reply *rep, struct authz *a,
                           const char *principal)
{
    struct registry_cert c = {0};
    struct iot_error err = {0};
    X509 *x = NULL;
    if (!principal_cert_id(rep, principal, a->cert_id))
        return false;
    if (registry_cert_get(req->srv->cfg.reg, a->cert_id, &c, &err) != IOT_OK) {
        reply_not_found(rep, "The certificate %s does not exist", a->cert_id);
        return false;
    }
    bool ok = c.pem != NULL && ca_cert_from_pem(c.pem, strlen(c.pem), &x, &err) == IOT_OK &&
              policy_context_from_cert(&a->ctx, x, &err) == IOT_OK;
    if (!ok)
        reply_error(rep, 500, "InternalFailureException", "Certificate %s is unreadable: %s",
                    a->cert_id, err.message);
    X509_free(x);
    registry_cert_clear(&c);
    return ok;
}

/* ---- TestAuthorization ----------------------------------------------------------------------- */

static const struct {
    const char *name;
    enum policy_action action;
} ACTION_TYPES[] = {{"PUBLISH", POLICY_ACTION_PUBLISH},
                    {"SUBSCRIBE", POLICY_ACTION_SUBSCRIBE},
                    {"RECEIVE", POLICY_ACTION_RECEIVE},
                    {"CONNECT", POLICY_ACTION_CONNECT}};

static bool action_of(const char *name, enum policy_action *out)
{
    for (size_t i = 0; name && i < sizeof(ACTION_TYPES) / sizeof(ACTION_TYPES[0]); i++) {
        if (strcmp(name, ACTION_TYPES[i].name) == 0) {
            *out = ACTION_TYPES[i].action;
            return true;
        }
    }
    return false;
}

static bool check_auth_infos(struct http_reply *rep, const cJSON *infos)
{
    const cJSON *info, *r;
    enum policy_action action;
    int n = cJSON_GetArraySize(infos);
    if (n < 1 || n > AUTH_INFOS_MAX) {
        reply_invalid(rep, "authInfos must hold 1 to %d entries", AUTH_INFOS_MAX);
        return false;
    }
    cJSON_ArrayForEach(info, infos)
    {
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(info, "actionType");
        const cJSON *resources = cJSON_GetObjectItemCaseSensitive(info, "resources");
        if (!action_of(cJSON_GetStringValue(type), &action) || !cJSON_IsArray(resources) ||
            cJSON_GetArraySize(resources) < 1) {
            reply_invalid(rep, "Each authInfo needs an actionType (PUBLISH, SUBSCRIBE, RECEIVE, "
                               "CONNECT) and resources");
            return false;
        }
        cJSON_ArrayForEach(r, resources)
        {
            if (!cJSON_IsString(r)) {
                reply_invalid(rep, "authInfo resources must be strings");
                return false;
            }
        }
    }
    return true;
}

static cJSON *policy_list(struct http_request *req, const cJSON *names)
{
    cJSON *out = cJSON_CreateObject(), *list = cJSON_AddArrayToObject(out, "policies");
    const cJSON *n;
    cJSON_ArrayForEach(n, names)
    {
        cJSON *p = cJSON_CreateObject();
        cJSON_AddStringToObject(p, "policyName", n->valuestring);
        add_arn(req, p, "policyArn", "policy", n->valuestring);
        cJSON_AddItemToArray(list, p);
    }
    return out;
}

static void add_name(cJSON *names, const char *name)
{
    if (name != NULL && !listed(names, name))
        cJSON_AddItemToArray(names, cJSON_CreateString(name));
}

/* One authInfo: every resource decided; an explicit deny anywhere wins, then any implicit deny. */
static cJSON *auth_result(struct http_request *req, struct authz *a, const cJSON *info)
{
    enum policy_action action = POLICY_ACTION_PUBLISH; /* check_auth_infos() validated it */
    const cJSON *r;
    cJSON *allowed = cJSON_CreateArray(), *explicit_deny = cJSON_CreateArray();
    bool implicit = false;
    action_of(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(info, "actionType")), &action);
    cJSON_ArrayForEach(r, cJSON_GetObjectItemCaseSensitive(info, "resources"))
    {
        struct policy_decision d;
        policy_evaluate(a->policies, a->n_policies, &a->ctx, action, r->valuestring,
                        strlen(r->valuestring), &d);
        if (d.effect == POLICY_ALLOW)
            add_name(allowed, d.policy);
        else if (d.effect == POLICY_DENY_EXPLICIT)
            add_name(explicit_deny, d.policy);
        else
            implicit = true;
    }
    bool explicitly = cJSON_GetArraySize(explicit_deny) > 0;
    cJSON *out = cJSON_CreateObject();
    cJSON_AddItemToObject(out, "authInfo", cJSON_Duplicate(info, 1));
    cJSON_AddItemToObject(out, "allowed", policy_list(req, allowed));
    cJSON *denied = cJSON_AddObjectToObject(out, "denied");
    cJSON *none = cJSON_CreateArray();
    /* An implicit deny is every policy considered not allowing: all of them are listed. */
    cJSON_AddItemToObject(denied, "implicitDeny",
                          policy_list(req, implicit && !explicitly ? a->names : none));
    cJSON_AddItemToObject(denied, "explicitDeny", policy_list(req, explicit_deny));
    cJSON_AddStringToObject(out, "authDecision",
                            explicitly ? "EXPLICIT_DENY"
                            : implicit ? "IMPLICIT_DENY"
                                       : "ALLOWED");
    cJSON_AddArrayToObject(out, "missingContextValues");
    cJSON_Delete(none);
    cJSON_Delete(allowed);
    cJSON_Delete(explicit_deny);
    return out;
}

static bool read_names(struct http_request *req, struct http_reply *rep, const char *key,
                       const cJSON **out)
{
    const cJSON *n;
    if (!body_node(req, rep, key, true, out))
        return false;
    cJSON_ArrayForEach(n, *out)
    {
        if (!cJSON_IsString(n)) {
            reply_invalid(rep, "%s must be a list of policy names", key);
            return false;
        }
    }
    return true;
}

void op_test_authorization(struct http_request *req, struct http_reply *rep)
{
    struct authz a = {0};
    const char *principal = NULL, *cognito = NULL;
    const cJSON *infos = NULL, *add = NULL, *skip = NULL, *n, *info;
    const char *client_id = req_query(req, "clientId");
    if (!body_string(req, rep, "principal", false, &principal) ||
        !body_string(req, rep, "cognitoIdentityPoolId", false, &cognito) ||
        !body_node(req, rep, "authInfos", true, &infos) || !check_auth_infos(rep, infos) ||
        !read_names(req, rep, "policyNamesToAdd", &add) ||
        !read_names(req, rep, "policyNamesToSkip", &skip))
        return;
    if (principal == NULL) {
        reply_invalid(rep, "principal is required (iotmock tests certificate principals)");
        return;
    }
    policy_context_init(&a.ctx);
    a.names = cJSON_CreateArray();
    if (!load_principal(req, rep, &a, principal))
        goto cleanup;
    a.ctx.region = req->srv->cfg.region;
    a.ctx.account = req->srv->cfg.account_id;
    a.ctx.client_id = client_id;
    a.ctx.certificate_id = a.cert_id;
    a.ctx.negated_absent_false = req->srv->cfg.negated_absent_false;
    associate(req, &a, client_id);
    collect_names(req, &a, a.ctx.thing_associated ? a.thing.name : NULL, skip);
    cJSON_ArrayForEach(n, add) add_name(a.names, n->valuestring);
    if (!compile_all(rep, req, &a))
        goto cleanup;
    cJSON *out = cJSON_CreateObject();
    cJSON *results = cJSON_AddArrayToObject(out, "authResults");
    cJSON_ArrayForEach(info, infos) cJSON_AddItemToArray(results, auth_result(req, &a, info));
    reply_json(rep, out);
cleanup:
    authz_clear(&a);
}

/* ---- GetEffectivePolicies -------------------------------------------------------------------- */

void op_get_effective_policies(struct http_request *req, struct http_reply *rep)
{
    struct authz a = {0};
    struct registry_thing t = {0};
    struct iot_error err = {0};
    const char *principal = NULL, *cognito = NULL, *n_thing = req_query(req, "thingName");
    const cJSON *n;
    if (!body_string(req, rep, "principal", false, &principal) ||
        !body_string(req, rep, "cognitoIdentityPoolId", false, &cognito))
        return;
    if (principal == NULL && n_thing == NULL) {
        reply_invalid(rep, "principal or thingName is required");
        return;
    }
    a.names = cJSON_CreateArray();
    if (principal != NULL && !principal_cert_id(rep, principal, a.cert_id))
        goto cleanup;
    enum cert_status s;
    if (principal != NULL && registry_cert_status(req->srv->cfg.reg, a.cert_id, &s) != IOT_OK) {
        reply_not_found(rep, "The certificate %s does not exist", a.cert_id);
        goto cleanup;
    }
    if (n_thing != NULL && registry_thing_get(req->srv->cfg.reg, n_thing, &t, &err) != IOT_OK) {
        reply_iot_error(rep, &err);
        goto cleanup;
    }
    collect_names(req, &a, n_thing, NULL);
    cJSON *out = cJSON_CreateObject();
    cJSON *list = cJSON_AddArrayToObject(out, "effectivePolicies");
    cJSON_ArrayForEach(n, a.names)
    {
        char *doc = NULL;
        if (registry_policy_get(req->srv->cfg.reg, n->valuestring, &doc, NULL) != IOT_OK)
            continue;
        cJSON *p = cJSON_CreateObject();
        cJSON_AddStringToObject(p, "policyName", n->valuestring);
        add_arn(req, p, "policyArn", "policy", n->valuestring);
        cJSON_AddStringToObject(p, "policyDocument", doc);
        cJSON_AddItemToArray(list, p);
        free(doc);
    }
    reply_json(rep, out);
cleanup:
    registry_thing_clear(&t);
    authz_clear(&a);
}
