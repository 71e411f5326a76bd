/* IoT policies: create/get/list/delete, versions, attachments to targets, and the deprecated
 * principal-policy forms (shared/spec/provisioning.md §6.4, §6.5, §4.8). Documents are checked
 * with the policy engine's compiler (policy.h), so a policy the broker could not enforce is
 * refused here with MalformedPolicyException, as AWS refuses it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/api.h"
#include "policy.h"

#define POLICY_VERSIONS_MAX 5 /* AWS's cap on versions per policy */

/* ---- shared pieces -------------------------------------------------------------------------- */

static bool check_policy_name(struct http_reply *rep, const char *name)
{
    return check_name(rep, "policyName", name, POLICY_NAME_CHARS, POLICY_NAME_MAX);
}

/* Compiles DOCUMENT, as CreatePolicy validates it. With CACHE (DOCUMENT is to become the default
 * version) the compiled form stays there, so connections find the policy compiled once, when
 * stored. */
static bool check_document(struct http_reply *rep, struct policy_cache *cache, const char *name,
                           const char *document)
{
    struct iot_error err = {0};
    enum iot_err rc;
    if (cache != NULL) {
        const struct policy *shared = NULL;
        rc = policy_cache_get(cache, name, document, &shared, &err);
        policy_cache_release(cache, shared);
    } else {
        struct policy *compiled = NULL;
        rc = policy_compile(name, document, strlen(document), &compiled, &err);
        policy_free(compiled);
    }
    if (rc == IOT_ERR_INVALID_REQUEST)
        reply_error(rep, 400, "MalformedPolicyException", "%s", err.message);
    else if (rc != IOT_OK)
        reply_iot_error(rep, &err);
    return rc == IOT_OK;
}

/* A {policyVersionId} path segment. */
static bool version_param(struct http_reply *rep, const char *text, long long *out)
{
    char *end = NULL;
    long long v = text ? strtoll(text, &end, 10) : 0;
    if (text == NULL || *text < '0' || *text > '9' || *end != '\0' || v < 1) {
        reply_invalid(rep, "policyVersionId '%s' is invalid", text ? text : "");
        return false;
    }
    *out = v;
    return true;
}

static void version_text(long long v, char out[24])
{
    snprintf(out, 24, "%lld", v);
}

static cJSON *policy_name_and_arn(struct http_request *req, const char *name)
{
    cJSON *p = cJSON_CreateObject();
    cJSON_AddStringToObject(p, "policyName", name);
    add_arn(req, p, "policyArn", "policy", name);
    return p;
}

/* Policies answer pages by name (AWS's order is by creation, UNCONFIRMED); isAscendingOrder=false
 * reverses them. */
static bool read_policy_page(struct http_request *req, struct http_reply *rep,
                             struct registry_page *pg)
{
    bool ascending = true;
    if (!page_read(req, rep, "pageSize", "marker", pg) ||
        !req_query_bool(req, rep, "isAscendingOrder", &ascending))
        return false;
    pg->descending = !ascending;
    return true;
}

static void reply_policy_list(struct http_request *req, struct http_reply *rep, cJSON *items,
                              char *next)
{
    cJSON *out = cJSON_CreateObject(), *item;
    cJSON *policies = cJSON_AddArrayToObject(out, "policies");
    cJSON_ArrayForEach(item, items)
    {
        cJSON_AddItemToArray(policies, policy_name_and_arn(req, item_str(item, "name")));
    }
    cJSON_Delete(items);
    page_next(out, "nextMarker", next);
    reply_json(rep, out);
}

/* ---- policies ------------------------------------------------------------------------------- */

void op_create_policy(struct http_request *req, struct http_reply *rep)
{
    struct iot_error err = {0};
    const char *name = req->params[0], *document = NULL;
    if (!check_policy_name(rep, name) ||
        !body_string(req, rep, "policyDocument", true, &document) ||
        !check_document(rep, req->srv->cfg.policies, name, document))
        return;
    enum iot_err rc = registry_policy_create(req->srv->cfg.reg, name, document, &err);
    if (rc == IOT_ERR_ALREADY_EXISTS) {
        reply_exists(rep, name, arn_of(req, "policy", name),
                     "Policy cannot be created - name already exists (name=%s)", name);
        return;
    }
    if (rc != IOT_OK) {
        reply_iot_error(rep, &err);
        return;
    }
    cJSON *out = policy_name_and_arn(req, name);
    cJSON_AddStringToObject(out, "policyDocument", document);
    cJSON_AddStringToObject(out, "policyVersionId", "1");
    reply_json(rep, out);
}

void op_get_policy(struct http_request *req, struct http_reply *rep)
{
    struct registry_policy p = {0};
    struct iot_error err = {0};
    char version[24], generation[37];
    if (!check_policy_name(rep, req->params[0]))
        return;
    if (registry_policy_info(req->srv->cfg.reg, req->params[0], &p, &err) != IOT_OK) {
        reply_iot_error(rep, &err);
        return;
    }
    cJSON *out = policy_name_and_arn(req, p.name);
    cJSON_AddStringToObject(out, "policyDocument", p.document);
    version_text(p.default_version, version);
    cJSON_AddStringToObject(out, "defaultVersionId", version);
    add_time(out, "creationDate", p.created);
    add_time(out, "lastModifiedDate", p.modified);
    generation_id(p.name, p.default_version, p.modified, generation);
    cJSON_AddStringToObject(out, "generationId", generation);
    registry_policy_clear(&p);
    reply_json(rep, out);
}

void op_list_policies(struct http_request *req, struct http_reply *rep)
{
    struct registry_page pg;
    struct iot_error err = {0};
    cJSON *items = NULL;
    char *next = NULL;
    if (!read_policy_page(req, rep, &pg))
        return;
    if (registry_policy_list(req->srv->cfg.reg, &pg, &items, &next, &err) != IOT_OK) {
        reply_iot_error(rep, &err);
        return;
    }
    reply_policy_list(req, rep, items, next);
}

/* §4.8: refused while attached (the registry's message is AWS's) or while versions other than
 * the default exist. */
static void delete_policy(struct http_request *req, struct http_reply *rep, const char *name)
{
    struct iot_error err = {0};
    cJSON *versions = NULL;
    if (registry_policy_versions(req->srv->cfg.reg, name, &versions, &err) != IOT_OK)
        reply_iot_error(rep, &err);
    else if (cJSON_GetArraySize(versions) > 1)
        reply_error(rep, 409, "DeleteConflictException",
                    "The policy cannot be deleted as versions other than the default version "
                    "exist (name=%s)",
                    name);
    else if (registry_policy_delete(req->srv->cfg.reg, name, &err) != IOT_OK)
        reply_iot_error(rep, &err);
    else
        reply_json(rep, NULL);
    cJSON_Delete(versions);
}

void op_delete_policy(struct http_request *req, struct http_reply *rep)
{
    if (!check_policy_name(rep, req->params[0]) || !txn_begin(req, rep))
        return;
    delete_policy(req, rep, req->params[0]);
    txn_end(req, rep);
}

/* ---- versions ------------------------------------------------------------------------------- */

static void create_version(struct http_request *req, struct http_reply *rep, const char *name,
                           const char *document, bool set_default)
{
    struct iot_error err = {0};
    cJSON *versions = NULL;
    long long v = 0;
    char text[24];
    if (registry_policy_versions(req->srv->cfg.reg, name, &versions, &err) != IOT_OK)
        reply_iot_error(rep, &err);
    else if (cJSON_GetArraySize(versions) >= POLICY_VERSIONS_MAX)
        reply_error(rep, 409, "VersionsLimitExceededException",
                    "The policy %s already has the maximum number of versions (%d)", name,
                    POLICY_VERSIONS_MAX);
    else if (registry_policy_version_add(req->srv->cfg.reg, name, document, set_default, &v,
                                         &err) != IOT_OK)
        reply_iot_error(rep, &err);
    else {
        cJSON *out = cJSON_CreateObject();
        add_arn(req, out, "policyArn", "policy", name);
        cJSON_AddStringToObject(out, "policyDocument", document);
        version_text(v, text);
        cJSON_AddStringToObject(out, "policyVersionId", text);
        cJSON_AddBoolToObject(out, "isDefaultVersion", set_default);
        reply_json(rep, out);
    }
    cJSON_Delete(versions);
}

void op_create_policy_version(struct http_request *req, struct http_reply *rep)
{
    const char *name = req->params[0], *document = NULL;
    bool set_default = false;
    if (!check_policy_name(rep, name) ||
        !body_string(req, rep, "policyDocument", true, &document) ||
        !req_query_bool(req, rep, "setAsDefault", &set_default) ||
        !check_document(rep, set_default ? req->srv->cfg.policies : NULL, name, document) ||
        !txn_begin(req, rep))
        return;
    create_version(req, rep, name, document, set_default);
    txn_end(req, rep);
}

void op_get_policy_version(struct http_request *req, struct http_reply *rep)
{
    struct iot_error err = {0};
    const char *name = req->params[0];
    char *document = NULL, text[24], generation[37];
    long long v, created = 0;
    bool is_default = false;
    if (!check_policy_name(rep, name) || !version_param(rep, req->params[1], &v))
        return;
    if (registry_policy_version_get(req->srv->cfg.reg, name, v, &document, &created, &is_default,
                                    &err) != IOT_OK) {
        reply_iot_error(rep, &err);
        return;
    }
    cJSON *out = cJSON_CreateObject();
    add_arn(req, out, "policyArn", "policy", name);
    cJSON_AddStringToObject(out, "policyName", name);
    cJSON_AddStringToObject(out, "policyDocument", document);
    version_text(v, text);
    cJSON_AddStringToObject(out, "policyVersionId", text);
    cJSON_AddBoolToObject(out, "isDefaultVersion", is_default);
    add_time(out, "creationDate", created);
    add_time(out, "lastModifiedDate", created); /* a version never changes */
    generation_id(name, v, created, generation);
    cJSON_AddStringToObject(out, "generationId", generation);
    free(document);
    reply_json(rep, out);
}

void op_list_policy_versions(struct http_request *req, struct http_reply *rep)
{
    struct iot_error err = {0};
    cJSON *items = NULL, *item;
    char text[24];
    if (!check_policy_name(rep, req->params[0]))
        return;
    if (registry_policy_versions(req->srv->cfg.reg, req->params[0], &items, &err) != IOT_OK) {
        reply_iot_error(rep, &err);
        return;
    }
    cJSON *out = cJSON_CreateObject();
    cJSON *versions = cJSON_AddArrayToObject(out, "policyVersions");
    cJSON_ArrayForEach(item, items)
    {
        cJSON *v = cJSON_CreateObject();
        version_text(item_num(item, "version"), text);
        cJSON_AddStringToObject(v, "versionId", text);
        cJSON_AddBoolToObject(v, "isDefaultVersion", item_num(item, "is_default") != 0);
        add_time(v, "createDate", item_num(item, "created"));
        cJSON_AddItemToArray(versions, v);
    }
    cJSON_Delete(items);
    reply_json(rep, out);
}

void op_set_default_policy_version(struct http_request *req, struct http_reply *rep)
{
    struct iot_error err = {0};
    long long v;
    if (!check_policy_name(rep, req->params[0]) || !version_param(rep, req->params[1], &v))
        return;
    if (registry_policy_version_set_default(req->srv->cfg.reg, req->params[0], v, &err) != IOT_OK)
        reply_iot_error(rep, &err);
    else
        reply_json(rep, NULL);
}

void op_delete_policy_version(struct http_request *req, struct http_reply *rep)
{
    struct iot_error err = {0};
    long long v;
    if (!check_policy_name(rep, req->params[0]) || !version_param(rep, req->params[1], &v))
        return;
    if (registry_policy_version_delete(req->srv->cfg.reg, req->params[0], v, &err) != IOT_OK)
        reply_iot_error(rep, &err);
    else
        reply_json(rep, NULL);
}

/* ---- attachments ---------------------------------------------------------------------------- */

/* A target must exist when iotmock can tell: certificates (by ARN) and thing groups. Other
 * principals (Cognito identities...) are kept as given. */
static bool target_exists(struct http_request *req, struct http_reply *rep, const char *target,
                          const char *key)
{
    enum cert_status s;
    const char *group = strstr(target, ":thinggroup/");
    if (key != target) {
        if (registry_cert_status(req->srv->cfg.reg, key, &s) == IOT_OK)
            return true;
        reply_not_found(rep, "The certificate %s does not exist", key);
        return false;
    }
    if (strncmp(target, "arn:", 4) == 0 && strstr(target, ":cert/") != NULL) {
        reply_invalid(rep, "Target %s is not a valid certificate ARN", target);
        return false;
    }
    if (group != NULL && !registry_thing_group_exists(req->srv->cfg.reg, group + 12)) {
        reply_not_found(rep, "Thing group %s not found", group + 12);
        return false;
    }
    return true;
}

static void attach(struct http_request *req, struct http_reply *rep, const char *policy,
                   const char *target)
{
    struct iot_error err = {0};
    cJSON *attached = NULL;
    const char *key = target_key(req, target);
    if (!target_exists(req, rep, target, key))
        return;
    if (registry_target_policies(req->srv->cfg.reg, key, &attached) != IOT_OK)
        reply_error(rep, 500, "InternalFailureException", "The registry is unavailable");
    else if (cJSON_GetArraySize(attached) >= POLICY_ATTACHED_MAX) {
        const cJSON *p;
        bool already = false;
        cJSON_ArrayForEach(p, attached) already = already || strcmp(p->valuestring, policy) == 0;
        if (already)
            reply_json(rep, NULL);
        else
            reply_error(rep, 410, "LimitExceededException",
                        "Target %s already has the maximum number of policies attached (%d)",
                        target, POLICY_ATTACHED_MAX);
    } else if (registry_policy_attach(req->srv->cfg.reg, policy, key, &err) != IOT_OK)
        reply_iot_error(rep, &err);
    else
        reply_json(rep, NULL);
    cJSON_Delete(attached);
}

static void detach(struct http_request *req, struct http_reply *rep, const char *policy,
                   const char *target)
{
    struct iot_error err = {0};
    if (registry_policy_detach(req->srv->cfg.reg, policy, target_key(req, target), &err) != IOT_OK)
        reply_iot_error(rep, &err);
    else
        reply_json(rep, NULL);
}

static void change_attachment(struct http_request *req, struct http_reply *rep, bool on,
                              const char *target)
{
    if (!check_policy_name(rep, req->params[0]))
        return;
    if (target == NULL || target[0] == '\0') {
        reply_invalid(rep, "target is required");
        return;
    }
    if (!txn_begin(req, rep))
        return;
    if (on)
        attach(req, rep, req->params[0], target);
    else
        detach(req, rep, req->params[0], target);
    txn_end(req, rep);
}

void op_attach_policy(struct http_request *req, struct http_reply *rep)
{
    const char *target = NULL;
    if (body_string(req, rep, "target", true, &target))
        change_attachment(req, rep, true, target);
}

void op_detach_policy(struct http_request *req, struct http_reply *rep)
{
    const char *target = NULL;
    if (body_string(req, rep, "target", true, &target))
        change_attachment(req, rep, false, target);
}

static void list_target_policies(struct http_request *req, struct http_reply *rep,
                                 const char *target)
{
    struct registry_page pg;
    struct iot_error err = {0};
    cJSON *items = NULL;
    char *next = NULL;
    if (target == NULL || target[0] == '\0') {
        reply_invalid(rep, "The principal or target is required");
        return;
    }
    const char *key = target_key(req, target);
    if (!read_policy_page(req, rep, &pg) || !target_exists(req, rep, target, key))
        return;
    if (registry_target_policy_list(req->srv->cfg.reg, key, &pg, &items, &next, &err) != IOT_OK) {
        reply_iot_error(rep, &err);
        return;
    }
    reply_policy_list(req, rep, items, next);
}

/* `recursive` matters for thing groups (policies of parent groups); iotmock lists the target's
 * own attachments. */
void op_list_attached_policies(struct http_request *req, struct http_reply *rep)
{
    bool recursive = false;
    if (req_query_bool(req, rep, "recursive", &recursive))
        list_target_policies(req, rep, req->params[0]);
}

static void list_policy_targets(struct http_request *req, struct http_reply *rep,
                                const char *policy, const char *key)
{
    struct registry_page pg;
    struct iot_error err = {0};
    struct registry_policy p = {0};
    cJSON *items = NULL, *item;
    char *next = NULL;
    if (!check_policy_name(rep, policy) || !read_policy_page(req, rep, &pg))
        return;
    if (registry_policy_info(req->srv->cfg.reg, policy, &p, &err) != IOT_OK ||
        registry_policy_target_list(req->srv->cfg.reg, policy, &pg, &items, &next, &err) !=
            IOT_OK) {
        registry_policy_clear(&p);
        reply_iot_error(rep, &err);
        return;
    }
    registry_policy_clear(&p);
    cJSON *out = cJSON_CreateObject();
    cJSON *targets = cJSON_AddArrayToObject(out, key);
    cJSON_ArrayForEach(item, items)
    {
        cJSON_AddItemToArray(targets,
                             cJSON_CreateString(target_arn(req, item_str(item, "target"))));
    }
    cJSON_Delete(items);
    page_next(out, "nextMarker", next);
    reply_json(rep, out);
}

void op_list_targets_for_policy(struct http_request *req, struct http_reply *rep)
{
    list_policy_targets(req, rep, req->params[0], "targets");
}

/* ---- the deprecated principal forms (header x-amzn-iot-principal) ---------------------------- */

void op_attach_principal_policy(struct http_request *req, struct http_reply *rep)
{
    change_attachment(req, rep, true, req_header(req, "x-amzn-iot-principal"));
}

void op_detach_principal_policy(struct http_request *req, struct http_reply *rep)
{
    change_attachment(req, rep, false, req_header(req, "x-amzn-iot-principal"));
}

void op_list_principal_policies(struct http_request *req, struct http_reply *rep)
{
    list_target_policies(req, rep, req_header(req, "x-amzn-iot-principal"));
}

void op_list_policy_principals(struct http_request *req, struct http_reply *rep)
{
    const char *policy = req_header(req, "x-amzn-iot-policy");
    if (policy == NULL) {
        reply_invalid(rep, "policyName (header x-amzn-iot-policy) is required");
        return;
    }
    list_policy_targets(req, rep, policy, "principals");
}
