/* Provisioning templates and their versions, CreateProvisioningClaim and the REST RegisterThing
 * (shared/spec/provisioning.md §2.1, §1.11, §6.5). Bodies are validated with template_parse(),
 * the same parser fleet provisioning uses, so a template accepted here is one the MQTT API can
 * run. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>

#include "http/api.h"
#include "template.h"

#define TEMPLATE_DESCRIPTION_MAX 500
#define ROLE_ARN_MIN 20
#define ROLE_ARN_MAX 2048
#define HOOK_ARN_MAX 2048
#define HOOK_PAYLOAD_VERSION_DEFAULT "2020-04-01"
#define TEMPLATE_VERSIONS_MAX 5 /* UNCONFIRMED cap (§9 item 14); AWS documents one exists */
#define CLAIM_TTL_SECONDS 300   /* §1.11: five minutes */
#define PARAM_KEY_MAX 2048      /* RegisterThing parameters (§6.5) */
#define PARAM_VALUE_MAX 4096
#define TYPE_FLEET "FLEET_PROVISIONING"
#define TYPE_JITP "JITP"

/* ---- shared pieces -------------------------------------------------------------------------- */

static bool check_template_name(struct http_reply *rep, const char *name)
{
    if (name != NULL && template_name_valid(name))
        return true;
    reply_invalid(rep,
                  "templateName '%s' is invalid: it must be 1 to %d characters of "
                  "[0-9A-Za-z_-]",
                  name ? name : "", TEMPLATE_NAME_MAX);
    return false;
}

static bool check_body(struct http_reply *rep, const char *body)
{
    struct iot_error err = {0};
    struct template *t = NULL;
    size_t len = strlen(body);
    if (len > TEMPLATE_BODY_MAX) {
        reply_invalid(rep, "templateBody is %zu characters; at most %d are allowed", len,
                      TEMPLATE_BODY_MAX);
        return false;
    }
    enum iot_err rc = template_parse(body, len, &t, &err);
    template_free(t);
    if (rc != IOT_OK)
        reply_invalid(rep, "Invalid template body: %s", err.message);
    return rc == IOT_OK;
}

static bool check_role_arn(struct http_reply *rep, const char *arn)
{
    size_t n = arn ? strlen(arn) : 0;
    if (n >= ROLE_ARN_MIN && n <= ROLE_ARN_MAX)
        return true;
    reply_invalid(rep, "provisioningRoleArn must be %d to %d characters", ROLE_ARN_MIN,
                  ROLE_ARN_MAX);
    return false;
}

/* preProvisioningHook: {"targetArn" (required), "payloadVersion" ([0-9-]{10,32})}. */
static bool read_hook(struct http_reply *rep, const cJSON *hook, const char **target,
                      const char **version)
{
    *target = *version = NULL;
    if (hook == NULL)
        return true;
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(hook, "targetArn");
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(hook, "payloadVersion");
    if (!cJSON_IsString(t) || t->valuestring[0] == '\0' || strlen(t->valuestring) > HOOK_ARN_MAX) {
        reply_invalid(rep, "preProvisioningHook.targetArn is required");
        return false;
    }
    size_t n = cJSON_IsString(v) ? strlen(v->valuestring) : 0;
    bool ok = v == NULL || (n >= 10 && n <= 32 && strspn(v->valuestring, "0123456789-") == n);
    if (!ok) {
        reply_invalid(rep, "preProvisioningHook.payloadVersion must be 10 to 32 of [0-9-]");
        return false;
    }
    *target = t->valuestring;
    *version = v ? v->valuestring : HOOK_PAYLOAD_VERSION_DEFAULT;
    return true;
}

static bool check_description(struct http_reply *rep, const char *d)
{
    if (d == NULL || strlen(d) <= TEMPLATE_DESCRIPTION_MAX)
        return true;
    reply_invalid(rep, "description is longer than %d characters", TEMPLATE_DESCRIPTION_MAX);
    return false;
}

static bool version_param(struct http_reply *rep, const char *text, long long *out)
{
    char *end = NULL;
    long long v = text ? strtoll(text, &end, 10) : 0;
    if (text == NULL || *text < '0' || *text > '9' || *end != '\0' || v < 1) {
        reply_invalid(rep, "versionId '%s' is invalid", text ? text : "");
        return false;
    }
    *out = v;
    return true;
}

static void add_template_identity(struct http_request *req, cJSON *obj, const char *name)
{
    add_arn(req, obj, "templateArn", "provisioningtemplate", name);
    cJSON_AddStringToObject(obj, "templateName", name);
}

static long long version_count(struct http_request *req, const char *name, struct iot_error *err)
{
    cJSON *items = NULL;
    struct registry_page all = {.limit = REGISTRY_PAGE_MAX};
    if (registry_template_version_list(req->srv->cfg.reg, name, &all, &items, NULL, err) != IOT_OK)
        return -1;
    long long n = cJSON_GetArraySize(items);
    cJSON_Delete(items);
    return n;
}

/* ---- templates ------------------------------------------------------------------------------ */

struct template_input {
    const char *name, *description, *body, *role_arn, *type;
    const char *hook_target, *hook_version;
    bool enabled;
};

static bool read_template_input(struct http_request *req, struct http_reply *rep,
                                struct template_input *in)
{
    const cJSON *hook = NULL, *tags = NULL;
    *in = (struct template_input){.type = TYPE_FLEET}; /* §2.1: enabled false, fleet type */
    if (!body_string(req, rep, "templateName", true, &in->name) ||
        !check_template_name(rep, in->name) ||
        !body_string(req, rep, "description", false, &in->description) ||
        !check_description(rep, in->description) ||
        !body_string(req, rep, "templateBody", true, &in->body) ||
        !body_bool(req, rep, "enabled", &in->enabled) ||
        !body_string(req, rep, "provisioningRoleArn", true, &in->role_arn) ||
        !check_role_arn(rep, in->role_arn) ||
        !body_node(req, rep, "preProvisioningHook", false, &hook) ||
        !read_hook(rep, hook, &in->hook_target, &in->hook_version) ||
        !body_node(req, rep, "tags", true, &tags) ||
        !body_string(req, rep, "type", false, &in->type))
        return false;
    if (strcmp(in->type, TYPE_FLEET) != 0 && strcmp(in->type, TYPE_JITP) != 0) {
        reply_invalid(rep, "type %s is not valid (FLEET_PROVISIONING or JITP)", in->type);
        return false;
    }
    if (hook != NULL && strcmp(in->type, TYPE_JITP) == 0) {
        reply_invalid(rep, "A preProvisioningHook is only allowed for FLEET_PROVISIONING "
                           "templates");
        return false;
    }
    return check_body(rep, in->body);
}

void op_create_provisioning_template(struct http_request *req, struct http_reply *rep)
{
    struct template_input in;
    struct registry_template existing = {0};
    struct iot_error err = {0};
    if (!read_template_input(req, rep, &in) || !txn_begin(req, rep))
        return;
    struct registry_template t = {.name = (char *)in.name,
                                  .body = (char *)in.body,
                                  .type = (char *)in.type,
                                  .description = (char *)in.description,
                                  .role_arn = (char *)in.role_arn,
                                  .hook_target_arn = (char *)in.hook_target,
                                  .hook_payload_version = (char *)in.hook_version,
                                  .enabled = in.enabled};
    if (registry_template_get(req->srv->cfg.reg, in.name, &existing, NULL) == IOT_OK) {
        reply_exists(rep, in.name, arn_of(req, "provisioningtemplate", in.name),
                     "Template with name %s already exists", in.name);
    } else if (registry_template_put(req->srv->cfg.reg, &t, &err) != IOT_OK) {
        reply_iot_error(rep, &err);
    } else {
        cJSON *out = cJSON_CreateObject();
        add_template_identity(req, out, in.name);
        cJSON_AddNumberToObject(out, "defaultVersionId", 1);
        reply_json(rep, out);
    }
    registry_template_clear(&existing);
    txn_end(req, rep);
}

static cJSON *hook_json(const struct registry_template *t)
{
    cJSON *h = cJSON_CreateObject();
    if (t->hook_payload_version != NULL)
        cJSON_AddStringToObject(h, "payloadVersion", t->hook_payload_version);
    cJSON_AddStringToObject(h, "targetArn", t->hook_target_arn);
    return h;
}

static void describe_template(struct http_request *req, struct http_reply *rep, const char *name)
{
    struct registry_template t = {0};
    struct iot_error err = {0};
    long long v = 0;
    if (registry_template_get(req->srv->cfg.reg, name, &t, &err) != IOT_OK ||
        registry_template_default_version(req->srv->cfg.reg, name, &v, &err) != IOT_OK) {
        reply_iot_error(rep, &err);
        registry_template_clear(&t);
        return;
    }
    cJSON *out = cJSON_CreateObject();
    add_template_identity(req, out, t.name);
    if (t.description != NULL)
        cJSON_AddStringToObject(out, "description", t.description);
    add_time(out, "creationDate", t.created);
    add_time(out, "lastModifiedDate", t.modified);
    cJSON_AddNumberToObject(out, "defaultVersionId", (double)v);
    cJSON_AddStringToObject(out, "templateBody", t.body ? t.body : "");
    cJSON_AddBoolToObject(out, "enabled", t.enabled);
    if (t.role_arn != NULL)
        cJSON_AddStringToObject(out, "provisioningRoleArn", t.role_arn);
    if (t.hook_target_arn != NULL)
        cJSON_AddItemToObject(out, "preProvisioningHook", hook_json(&t));
    cJSON_AddStringToObject(out, "type", t.type ? t.type : TYPE_FLEET);
    registry_template_clear(&t);
    reply_json(rep, out);
}

void op_describe_provisioning_template(struct http_request *req, struct http_reply *rep)
{
    if (!check_template_name(rep, req->params[0]) || !txn_begin(req, rep))
        return;
    describe_template(req, rep, req->params[0]);
    txn_end(req, rep);
}

void op_list_provisioning_templates(struct http_request *req, struct http_reply *rep)
{
    struct registry_page pg;
    struct iot_error err = {0};
    cJSON *items = NULL, *item;
    char *next = NULL;
    if (!page_read(req, rep, "maxResults", "nextToken", &pg))
        return;
    if (registry_template_list(req->srv->cfg.reg, &pg, &items, &next, &err) != IOT_OK) {
        reply_iot_error(rep, &err);
        return;
    }
    cJSON *out = cJSON_CreateObject();
    cJSON *templates = cJSON_AddArrayToObject(out, "templates");
    cJSON_ArrayForEach(item, items)
    {
        cJSON *t = cJSON_CreateObject();
        add_template_identity(req, t, item_str(item, "name"));
        if (item_str(item, "description") != NULL)
            cJSON_AddStringToObject(t, "description", item_str(item, "description"));
        add_time(t, "creationDate", item_num(item, "created"));
        add_time(t, "lastModifiedDate", item_num(item, "modified"));
        cJSON_AddBoolToObject(t, "enabled", item_num(item, "enabled") != 0);
        cJSON_AddStringToObject(t, "type",
                                item_str(item, "type") ? item_str(item, "type") : TYPE_FLEET);
        cJSON_AddItemToArray(templates, t);
    }
    cJSON_Delete(items);
    page_next(out, "nextToken", next);
    reply_json(rep, out);
}

static void replace(char **field, const char *value)
{
    free(*field);
    *field = value ? strdup(value) : NULL;
}

struct template_update {
    const char *description, *role_arn, *hook_target, *hook_version;
    const cJSON *hook;
    bool enabled, has_enabled, remove_hook;
    long long default_version;
};

static bool read_update(struct http_request *req, struct http_reply *rep, struct template_update *u)
{
    const cJSON *enabled = cJSON_GetObjectItemCaseSensitive(req->body, "enabled");
    *u = (struct template_update){.default_version = -1};
    u->has_enabled = enabled != NULL && !cJSON_IsNull(enabled);
    if (!body_string(req, rep, "description", false, &u->description) ||
        !check_description(rep, u->description) || !body_bool(req, rep, "enabled", &u->enabled) ||
        !body_int(req, rep, "defaultVersionId", &u->default_version) ||
        !body_string(req, rep, "provisioningRoleArn", false, &u->role_arn) ||
        (u->role_arn != NULL && !check_role_arn(rep, u->role_arn)) ||
        !body_node(req, rep, "preProvisioningHook", false, &u->hook) ||
        !read_hook(rep, u->hook, &u->hook_target, &u->hook_version) ||
        !body_bool(req, rep, "removePreProvisioningHook", &u->remove_hook))
        return false;
    if (u->hook != NULL && u->remove_hook) {
        reply_invalid(rep, "preProvisioningHook and removePreProvisioningHook cannot be used "
                           "together");
        return false;
    }
    return true;
}

static void update_template(struct http_request *req, struct http_reply *rep, const char *name,
                            const struct template_update *u)
{
    struct registry_template t = {0};
    struct iot_error err = {0};
    if (registry_template_get(req->srv->cfg.reg, name, &t, &err) != IOT_OK) {
        reply_iot_error(rep, &err);
        return;
    }
    if (u->hook != NULL && t.type != NULL && strcmp(t.type, TYPE_JITP) == 0) {
        reply_invalid(rep, "A preProvisioningHook is only allowed for FLEET_PROVISIONING "
                           "templates");
        registry_template_clear(&t);
        return;
    }
    if (u->description != NULL)
        replace(&t.description, u->description);
    if (u->role_arn != NULL)
        replace(&t.role_arn, u->role_arn);
    if (u->hook != NULL || u->remove_hook) {
        replace(&t.hook_target_arn, u->hook_target);
        replace(&t.hook_payload_version, u->hook_version);
    }
    if (u->has_enabled)
        t.enabled = u->enabled;
    t.modified = 0; /* now */
    if (registry_template_put(req->srv->cfg.reg, &t, &err) != IOT_OK ||
        (u->default_version >= 0 &&
         registry_template_version_set_default(req->srv->cfg.reg, name, u->default_version, &err) !=
             IOT_OK))
        reply_iot_error(rep, &err);
    else
        reply_json(rep, NULL);
    registry_template_clear(&t);
}

void op_update_provisioning_template(struct http_request *req, struct http_reply *rep)
{
    struct template_update u;
    if (!check_template_name(rep, req->params[0]) || !read_update(req, rep, &u) ||
        !txn_begin(req, rep))
        return;
    update_template(req, rep, req->params[0], &u);
    txn_end(req, rep);
}

void op_delete_provisioning_template(struct http_request *req, struct http_reply *rep)
{
    struct iot_error err = {0};
    if (!check_template_name(rep, req->params[0]))
        return;
    if (registry_template_delete(req->srv->cfg.reg, req->params[0], &err) != IOT_OK)
        reply_iot_error(rep, &err);
    else
        reply_json(rep, NULL);
}

/* ---- versions ------------------------------------------------------------------------------- */

static void create_version(struct http_request *req, struct http_reply *rep, const char *name,
                           const char *body, bool set_default)
{
    struct iot_error err = {0};
    long long v = 0, n = version_count(req, name, &err);
    if (n < 0)
        reply_iot_error(rep, &err);
    else if (n >= TEMPLATE_VERSIONS_MAX)
        reply_error(rep, 409, "VersionsLimitExceededException",
                    "The template %s already has the maximum number of versions (%d)", name,
                    TEMPLATE_VERSIONS_MAX);
    else if (registry_template_version_add(req->srv->cfg.reg, name, body, set_default, &v, &err) !=
             IOT_OK)
        reply_iot_error(rep, &err);
    else {
        cJSON *out = cJSON_CreateObject();
        add_template_identity(req, out, name);
        cJSON_AddNumberToObject(out, "versionId", (double)v);
        cJSON_AddBoolToObject(out, "isDefaultVersion", set_default);
        reply_json(rep, out);
    }
}

void op_create_provisioning_template_version(struct http_request *req, struct http_reply *rep)
{
    const char *body = NULL;
    bool set_default = false;
    if (!check_template_name(rep, req->params[0]) ||
        !req_query_bool(req, rep, "setAsDefault", &set_default) ||
        !body_string(req, rep, "templateBody", true, &body) || !check_body(rep, body) ||
        !txn_begin(req, rep))
        return;
    create_version(req, rep, req->params[0], body, set_default);
    txn_end(req, rep);
}

void op_describe_provisioning_template_version(struct http_request *req, struct http_reply *rep)
{
    struct iot_error err = {0};
    char *body = NULL;
    long long v, created = 0;
    bool is_default = false;
    if (!check_template_name(rep, req->params[0]) || !version_param(rep, req->params[1], &v))
        return;
    if (registry_template_version_get(req->srv->cfg.reg, req->params[0], v, &body, &created,
                                      &is_default, &err) != IOT_OK) {
        reply_iot_error(rep, &err);
        return;
    }
    cJSON *out = cJSON_CreateObject();
    cJSON_AddNumberToObject(out, "versionId", (double)v);
    add_time(out, "creationDate", created);
    cJSON_AddStringToObject(out, "templateBody", body);
    cJSON_AddBoolToObject(out, "isDefaultVersion", is_default);
    free(body);
    reply_json(rep, out);
}

void op_list_provisioning_template_versions(struct http_request *req, struct http_reply *rep)
{
    struct registry_page pg;
    struct iot_error err = {0};
    cJSON *items = NULL, *item;
    char *next = NULL;
    if (!check_template_name(rep, req->params[0]) ||
        !page_read(req, rep, "maxResults", "nextToken", &pg))
        return;
    if (registry_template_version_list(req->srv->cfg.reg, req->params[0], &pg, &items, &next,
                                       &err) != IOT_OK) {
        reply_iot_error(rep, &err);
        return;
    }
    cJSON *out = cJSON_CreateObject();
    cJSON *versions = cJSON_AddArrayToObject(out, "versions");
    cJSON_ArrayForEach(item, items)
    {
        cJSON *v = cJSON_CreateObject();
        cJSON_AddNumberToObject(v, "versionId", (double)item_num(item, "version"));
        add_time(v, "creationDate", item_num(item, "created"));
        cJSON_AddBoolToObject(v, "isDefaultVersion", item_num(item, "is_default") != 0);
        cJSON_AddItemToArray(versions, v);
    }
    cJSON_Delete(items);
    page_next(out, "nextToken", next);
    reply_json(rep, out);
}

void op_delete_provisioning_template_version(struct http_request *req, struct http_reply *rep)
{
    struct iot_error err = {0};
    long long v;
    if (!check_template_name(rep, req->params[0]) || !version_param(rep, req->params[1], &v))
        return;
    if (registry_template_version_delete(req->srv->cfg.reg, req->params[0], v, &err) != IOT_OK)
        reply_iot_error(rep, &err);
    else
        reply_json(rep, NULL);
}

/* ---- CreateProvisioningClaim (§1.11) --------------------------------------------------------- */

/* A temporary claim: ACTIVE for five minutes, never listed, recorded with its template
 * (registry_cert_get_meta()), then deleted by the registry's expiry sweep. Its permissions are
 * implicit, as on AWS, which shows no policy for them: the broker grants what
 * fleet_claim_policy_document() says (plugin/authz.c). */
static void store_claim(struct http_request *req, struct http_reply *rep, const char *name,
                        const struct issued *i, long long expires)
{
    struct registry_template t = {0};
    struct iot_error err = {0};
    struct registry_cert c = {.pem = i->cert_pem, .status = CERT_STATUS_ACTIVE};
    snprintf(c.id, sizeof(c.id), "%s", i->id);
    if (registry_template_get(req->srv->cfg.reg, name, &t, &err) != IOT_OK)
        reply_iot_error(rep, &err);
    else if (t.type != NULL && strcmp(t.type, TYPE_FLEET) != 0)
        reply_invalid(rep, "Template %s is not a FLEET_PROVISIONING template", name);
    else if (registry_cert_insert(req->srv->cfg.reg, &c, &err) != IOT_OK ||
             registry_cert_set_claim(req->srv->cfg.reg, i->id, name, expires, &err) != IOT_OK)
        reply_iot_error(rep, &err);
    else {
        cJSON *out = cJSON_CreateObject();
        cJSON_AddStringToObject(out, "certificateId", i->id);
        cJSON_AddStringToObject(out, "certificatePem", i->cert_pem);
        cJSON_AddItemToObject(out, "keyPair", key_pair_json(i));
        add_time(out, "expiration", expires);
        reply_json(rep, out);
    }
    registry_template_clear(&t);
}

void op_create_provisioning_claim(struct http_request *req, struct http_reply *rep)
{
    struct issued i;
    struct registry_template t = {0};
    struct iot_error err = {0};
    const char *name = req->params[0];
    if (!check_template_name(rep, name))
        return;
    /* Refuse an unknown template before spending a key generation on it. */
    if (registry_template_get(req->srv->cfg.reg, name, &t, &err) != IOT_OK) {
        reply_iot_error(rep, &err);
        return;
    }
    registry_template_clear(&t);
    if (!issue_with_new_key(req, rep, &i))
        return;
    if (txn_begin(req, rep)) {
        store_claim(req, rep, name, &i, (long long)time(NULL) + CLAIM_TTL_SECONDS);
        txn_end(req, rep);
    }
    issued_clear(&i);
}

/* ---- REST RegisterThing (§6.5) --------------------------------------------------------------- *
 * A synchronous, inline template: the certificate resource names the certificate by
 * CertificateId, CertificateSigningRequest (a new certificate is issued) or CertificatePem
 * (registered if unknown). template.c speaks only CertificateId = Ref AWS::IoT::Certificate::Id,
 * so the resource is rewritten to that form once the certificate is known. A value is a literal
 * or {"Ref": parameter} (parameters, then the declared Default). */

struct register_ctx {
    cJSON *body;         /* the template, parsed; rewritten in place */
    const cJSON *params; /* the request's parameters */
    cJSON *merged;       /* params + AWS::IoT::Certificate::Id */
    const char *cert_resource;
    char cert_id[CA_ID_LEN + 1];
    char *cert_pem; /* owned */
    bool new_cert;  /* to insert in the transaction */
    struct template *parsed;
    struct template_plan *plan;
};

static const char *declared_default(const struct register_ctx *c, const char *param)
{
    const cJSON *decl = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(c->body, "Parameters"), param);
    return cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(decl, "Default"));
}

/* A literal string or {"Ref": name}; NULL for anything else or an unknown parameter. */
static const char *simple_value(const struct register_ctx *c, const cJSON *node)
{
    if (cJSON_IsString(node))
        return node->valuestring;
    const cJSON *ref = cJSON_GetObjectItemCaseSensitive(node, "Ref");
    if (!cJSON_IsObject(node) || cJSON_GetArraySize(node) != 1 || !cJSON_IsString(ref))
        return NULL;
    const char *v =
        cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(c->params, ref->valuestring));
    return v ? v : declared_default(c, ref->valuestring);
}

static bool check_parameters(struct http_reply *rep, const cJSON *params)
{
    const cJSON *p;
    cJSON_ArrayForEach(p, params)
    {
        if (!cJSON_IsString(p) || strlen(p->string) > PARAM_KEY_MAX ||
            strlen(p->valuestring) > PARAM_VALUE_MAX) {
            reply_invalid(rep,
                          "parameters must map names of at most %d characters to strings "
                          "of at most %d",
                          PARAM_KEY_MAX, PARAM_VALUE_MAX);
            return false;
        }
    }
    return true;
}

/* §6.3: what goes wrong while the template is evaluated or applied. */
static void registration_failed(struct http_reply *rep, const char *what, const char *detail)
{
    reply_error(rep, 400, "ResourceRegistrationFailureException", "%s%s", what, detail);
}

static cJSON *certificate_resource(struct register_ctx *c)
{
    cJSON *r;
    cJSON_ArrayForEach(r, cJSON_GetObjectItemCaseSensitive(c->body, "Resources"))
    {
        const char *type = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(r, "Type"));
        if (type != NULL && strcmp(type, "AWS::IoT::Certificate") == 0) {
            c->cert_resource = r->string;
            return r;
        }
    }
    return NULL;
}

static bool from_csr(struct http_request *req, struct http_reply *rep, struct register_ctx *c,
                     const char *pem)
{
    struct iot_error err = {0};
    X509_REQ *csr = NULL;
    X509 *cert = NULL;
    bool ok = false;
    if (req->srv->cfg.ca == NULL) {
        reply_error(rep, 500, "InternalFailureException", "No certificate authority is configured");
        return false;
    }
    if (ca_csr_parse(pem, strlen(pem), &csr, &err) != IOT_OK)
        registration_failed(rep, "CertificateSigningRequest: ", err.message);
    else if (ca_issue_csr(req->srv->cfg.ca, csr, &cert, &err) != IOT_OK)
        reply_iot_error(rep, &err);
    else if (ca_cert_id(cert, c->cert_id) != IOT_OK || (c->cert_pem = ca_cert_to_pem(cert)) == NULL)
        reply_error(rep, 500, "InternalFailureException", "Could not encode the certificate");
    else
        ok = c->new_cert = true;
    X509_free(cert);
    X509_REQ_free(csr);
    return ok;
}

static bool from_pem(struct http_reply *rep, struct register_ctx *c, const char *pem)
{
    struct iot_error err = {0};
    X509 *cert = NULL;
    bool ok = false;
    if (ca_cert_from_pem(pem, strlen(pem), &cert, &err) != IOT_OK)
        registration_failed(rep, "CertificatePem: ", err.message);
    else if (ca_cert_id(cert, c->cert_id) != IOT_OK || (c->cert_pem = strdup(pem)) == NULL)
        reply_error(rep, 500, "InternalFailureException", "Could not read the certificate");
    else
        ok = c->new_cert = true; /* unless registered already: checked in the transaction */
    X509_free(cert);
    return ok;
}

/* Fills cert_id (and cert_pem for a new certificate) from whichever property names it. */
static bool resolve_certificate(struct http_request *req, struct http_reply *rep,
                                struct register_ctx *c, cJSON *props)
{
    static const char *const ways[] = {"CertificateId", "CertificateSigningRequest",
                                       "CertificatePem"};
    const char *values[3] = {NULL, NULL, NULL};
    int given = 0;
    for (int i = 0; i < 3; i++) {
        const cJSON *node = cJSON_GetObjectItemCaseSensitive(props, ways[i]);
        if (node == NULL)
            continue;
        given++;
        if ((values[i] = simple_value(c, node)) == NULL) {
            reply_error(rep, 400, "ResourceRegistrationFailureException",
                        "The certificate's %s must be a string or a Ref to a parameter with a "
                        "value",
                        ways[i]);
            return false;
        }
    }
    if (given != 1) {
        reply_invalid(rep,
                      "Resource %s must name its certificate by exactly one of "
                      "CertificateId, CertificateSigningRequest, CertificatePem",
                      c->cert_resource);
        return false;
    }
    if (values[0] != NULL) {
        snprintf(c->cert_id, sizeof(c->cert_id), "%s", values[0]);
        return true;
    }
    return values[1] != NULL ? from_csr(req, rep, c, values[1]) : from_pem(rep, c, values[2]);
}

/* Rewrites the certificate resource to CertificateId = Ref AWS::IoT::Certificate::Id and adds
 * that parameter; then parses the result as any template. */
static bool prepare_template(struct http_request *req, struct http_reply *rep,
                             struct register_ctx *c)
{
    struct iot_error err = {0};
    cJSON *resource = certificate_resource(c);
    if (resource == NULL) {
        reply_invalid(rep, "The template needs an AWS::IoT::Certificate resource");
        return false;
    }
    cJSON *props = cJSON_GetObjectItemCaseSensitive(resource, "Properties");
    if (!cJSON_IsObject(props)) {
        reply_invalid(rep, "Resource %s has no Properties", c->cert_resource);
        return false;
    }
    if (!resolve_certificate(req, rep, c, props))
        return false;
    cJSON_DeleteItemFromObjectCaseSensitive(props, "CertificateSigningRequest");
    cJSON_DeleteItemFromObjectCaseSensitive(props, "CertificatePem");
    cJSON_DeleteItemFromObjectCaseSensitive(props, "CACertificatePem");
    cJSON_DeleteItemFromObjectCaseSensitive(props, "CertificateId");
    cJSON *ref = cJSON_AddObjectToObject(props, "CertificateId");
    cJSON_AddStringToObject(ref, "Ref", TEMPLATE_CERT_ID_PARAM);
    c->merged = c->params ? cJSON_Duplicate(c->params, 1) : cJSON_CreateObject();
    cJSON_DeleteItemFromObjectCaseSensitive(c->merged, TEMPLATE_CERT_ID_PARAM);
    cJSON_AddStringToObject(c->merged, TEMPLATE_CERT_ID_PARAM, c->cert_id);
    char *text = cJSON_PrintUnformatted(c->body);
    enum iot_err rc = text ? template_parse(text, strlen(text), &c->parsed, &err) : IOT_ERR_NOMEM;
    free(text);
    if (rc != IOT_OK) {
        reply_invalid(rep, "Invalid template body: %s", err.message);
        return false;
    }
    if (template_render(c->parsed, c->merged, &c->plan, &err) != IOT_OK) {
        registration_failed(rep, "", err.message);
        return false;
    }
    return true;
}

/* The policy a policy resource names: PolicyName's value, or the name template.c gives a
 * PolicyDocument (lowercase hex SHA-256 of the minified text). NULL when it takes evaluation. */
static char *policy_name_of(const struct register_ctx *c, const cJSON *props)
{
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(props, "PolicyName");
    const cJSON *doc = cJSON_GetObjectItemCaseSensitive(props, "PolicyDocument");
    if (name != NULL) {
        const char *v = simple_value(c, name);
        return v ? strdup(v) : NULL;
    }
    cJSON *parsed = cJSON_IsString(doc) ? cJSON_Parse(doc->valuestring) : NULL;
    char *text = cJSON_PrintUnformatted(parsed ? parsed : doc);
    cJSON_Delete(parsed);
    if (text == NULL || strstr(text, "\"Ref\"") != NULL || strstr(text, "\"Fn::") != NULL) {
        free(text);
        return NULL;
    }
    unsigned char md[32];
    unsigned int n = 0;
    char *hex = malloc(65);
    EVP_Digest(text, strlen(text), md, &n, EVP_sha256(), NULL);
    for (unsigned int i = 0; hex && i < n; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    free(text);
    return hex;
}

static cJSON *resource_arns(struct http_request *req, const struct register_ctx *c)
{
    cJSON *arns = cJSON_CreateObject(), *r;
    cJSON_ArrayForEach(r, cJSON_GetObjectItemCaseSensitive(c->body, "Resources"))
    {
        const char *type = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(r, "Type"));
        const cJSON *props = cJSON_GetObjectItemCaseSensitive(r, "Properties");
        const char *thing = template_plan_thing_name(c->plan);
        if (type == NULL)
            continue;
        if (strcmp(type, "AWS::IoT::Certificate") == 0)
            add_arn(req, arns, r->string, "cert", c->cert_id);
        else if (strcmp(type, "AWS::IoT::Thing") == 0 && thing != NULL)
            add_arn(req, arns, r->string, "thing", thing);
        else if (strcmp(type, "AWS::IoT::Policy") == 0) {
            char *name = policy_name_of(c, props);
            if (name != NULL)
                add_arn(req, arns, r->string, "policy", name);
            free(name);
        }
    }
    return arns;
}

/* Inserts a new certificate (INACTIVE until the template's Status applies) and applies the plan,
 * all in one transaction: a failure leaves nothing behind. */
static void apply_registration(struct http_request *req, struct http_reply *rep,
                               struct register_ctx *c)
{
    struct registry *reg = req->srv->cfg.reg;
    struct iot_error err = {0};
    struct registry_cert cert = {0};
    enum cert_status s;
    if (c->new_cert && registry_cert_status(reg, c->cert_id, &s) == IOT_ERR_NOT_FOUND) {
        struct registry_cert fresh = {.pem = c->cert_pem, .status = CERT_STATUS_INACTIVE};
        snprintf(fresh.id, sizeof(fresh.id), "%s", c->cert_id);
        if (registry_cert_insert(reg, &fresh, &err) != IOT_OK) {
            reply_iot_error(rep, &err);
            return;
        }
    }
    if (registry_cert_get(reg, c->cert_id, &cert, &err) != IOT_OK) {
        registration_failed(rep, "No such certificate: ", c->cert_id);
        return;
    }
    if (template_apply(reg, c->plan, c->cert_id, &err) != IOT_OK)
        registration_failed(rep, "", err.message);
    else {
        cJSON *out = cJSON_CreateObject();
        cJSON_AddStringToObject(out, "certificatePem", cert.pem ? cert.pem : "");
        cJSON_AddItemToObject(out, "resourceArns", resource_arns(req, c));
        reply_json(rep, out);
    }
    registry_cert_clear(&cert);
}

void op_register_thing(struct http_request *req, struct http_reply *rep)
{
    struct register_ctx c = {0};
    const char *body = NULL;
    if (!body_string(req, rep, "templateBody", true, &body) ||
        !body_node(req, rep, "parameters", false, &c.params) || !check_parameters(rep, c.params))
        return;
    if (strlen(body) > TEMPLATE_BODY_MAX) {
        reply_invalid(rep, "templateBody is longer than %d characters", TEMPLATE_BODY_MAX);
        return;
    }
    c.body = cJSON_Parse(body);
    if (!cJSON_IsObject(c.body))
        reply_invalid(rep, "Invalid template body: not a JSON object");
    else if (prepare_template(req, rep, &c) && txn_begin(req, rep)) {
        apply_registration(req, rep, &c);
        txn_end(req, rep);
    }
    template_plan_free(c.plan);
    template_free(c.parsed);
    cJSON_Delete(c.merged);
    cJSON_Delete(c.body);
    free(c.cert_pem);
}
