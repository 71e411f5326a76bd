/* Fleet provisioning MQTT API: topic grammar, requests and responses, and the three operations
 * (shared/spec/provisioning.md §1). Both formats meet as cJSON trees: a JSON body is parsed by
 * cJSON, a CBOR body (§1.9) decoded by cbor_codec into the same tree, so one validation path
 * serves both; the answer tree is printed back in the request's format. */
#include "fleet.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "cbor_codec.h"
#include "hook.h"

#define TOKEN_RANDOM_BYTES 48 /* 64 base64url characters: unguessable, and small for CBOR clients */
#define TOKEN_EMPTY_MESSAGE "Certificate ownership token cannot be empty." /* observed, js-v2#69 */

/* ---- topics -------------------------------------------------------------------------------- */

/* If S starts with LIT, returns the rest of S, else NULL. */
static const char *skip(const char *s, const char *lit)
{
    size_t n = strlen(lit);
    return strncmp(s, lit, n) == 0 ? s + n : NULL;
}

/* Parses "<fmt>[/accepted|/rejected]" at the end of a topic. */
static enum fleet_topic_kind parse_tail(const char *s, struct fleet_topic *out)
{
    const char *rest;
    if ((rest = skip(s, "json")) != NULL)
        out->format = FLEET_FORMAT_JSON;
    else if ((rest = skip(s, "cbor")) != NULL)
        out->format = FLEET_FORMAT_CBOR;
    else
        return FLEET_TOPIC_NONE;
    if (*rest == '\0')
        return FLEET_TOPIC_REQUEST;
    if (strcmp(rest, FLEET_ACCEPTED) == 0)
        return FLEET_TOPIC_ACCEPTED;
    if (strcmp(rest, FLEET_REJECTED) == 0)
        return FLEET_TOPIC_REJECTED;
    return FLEET_TOPIC_NONE;
}

static enum fleet_topic_kind parse_template_topic(const char *s, struct fleet_topic *out)
{
    const char *end = strstr(s, FLEET_PROVISION_PART);
    if (end == NULL || (size_t)(end - s) > TEMPLATE_NAME_MAX)
        return FLEET_TOPIC_NONE;
    memcpy(out->template_name, s, (size_t)(end - s));
    out->template_name[end - s] = '\0';
    if (!template_name_valid(out->template_name))
        return FLEET_TOPIC_NONE;
    out->op = FLEET_OP_REGISTER_THING;
    return parse_tail(end + strlen(FLEET_PROVISION_PART), out);
}

enum fleet_topic_kind fleet_topic_parse(const char *topic, struct fleet_topic *out)
{
    struct fleet_topic t = {0};
    const char *rest;
    if ((rest = skip(topic, FLEET_CERT_CSR_PREFIX)) != NULL) {
        t.op = FLEET_OP_CREATE_FROM_CSR;
        t.kind = parse_tail(rest, &t);
    } else if ((rest = skip(topic, FLEET_CERT_CREATE_PREFIX)) != NULL) {
        t.op = FLEET_OP_CREATE_KEYS;
        t.kind = parse_tail(rest, &t);
    } else if ((rest = skip(topic, FLEET_TEMPLATES_PREFIX)) != NULL) {
        t.kind = parse_template_topic(rest, &t);
    }
    if (t.kind == FLEET_TOPIC_NONE)
        t.op = FLEET_OP_NONE;
    *out = t;
    return t.kind;
}

/* ---- errors -------------------------------------------------------------------------------- */

/* §1.8: only InvalidCertificateOwnershipToken/400 is observed; the other codes follow the
 * spec's recommended catalogue (status codes from AWS's own C library, names in AWS style). */
int fleet_status_code(enum iot_err code)
{
    switch (code) {
    case IOT_ERR_INVALID_PAYLOAD:
    case IOT_ERR_INVALID_TOKEN:
    case IOT_ERR_INVALID_CSR:
    case IOT_ERR_INVALID_PARAMS:
    case IOT_ERR_INVALID_REQUEST: return 400;
    case IOT_ERR_ACCESS_DENIED:
    case IOT_ERR_TEMPLATE_DISABLED: return 403;
    case IOT_ERR_NOT_FOUND: return 404;
    case IOT_ERR_CONFLICT: return 409;
    default: return 500;
    }
}

const char *fleet_error_code(enum iot_err code)
{
    switch (code) {
    case IOT_ERR_INVALID_PAYLOAD:
    case IOT_ERR_INVALID_REQUEST: return "InvalidPayload";
    case IOT_ERR_INVALID_TOKEN: return "InvalidCertificateOwnershipToken";
    case IOT_ERR_INVALID_CSR: return "InvalidCsr";
    case IOT_ERR_INVALID_PARAMS: return "InvalidParameters";
    case IOT_ERR_ACCESS_DENIED:
    case IOT_ERR_TEMPLATE_DISABLED: return "AccessDenied";
    case IOT_ERR_NOT_FOUND: return "ResourceNotFound";
    case IOT_ERR_CONFLICT: return "ResourceConflicts";
    default: return "InternalFailure";
    }
}

/* ---- responses ----------------------------------------------------------------------------- */

/* BODY in the request's format: compact JSON, or CBOR with text strings and definite maps. */
static enum iot_err serialize(enum fleet_format format, const cJSON *body,
                              struct fleet_response *out)
{
    if (body == NULL)
        return IOT_ERR_NOMEM;
    if (format == FLEET_FORMAT_CBOR) {
        unsigned char *cbor = NULL;
        enum iot_err e = cbor_codec_encode(body, &cbor, &out->payload_len);
        out->payload = (char *)cbor;
        return e;
    }
    if ((out->payload = cJSON_PrintUnformatted(body)) == NULL)
        return IOT_ERR_NOMEM;
    out->payload_len = strlen(out->payload);
    return IOT_OK;
}

static enum iot_err respond(struct fleet_response *out, const struct fleet_request *req,
                            bool accepted, cJSON *body)
{
    snprintf(out->topic, sizeof(out->topic), "%s%s", req->request_topic,
             accepted ? FLEET_ACCEPTED : FLEET_REJECTED);
    out->accepted = accepted;
    enum iot_err e = serialize(req->topic->format, body, out);
    cJSON_Delete(body);
    return e;
}

static enum iot_err reject(struct fleet_response *out, const struct fleet_request *req)
{
    cJSON *body = cJSON_CreateObject();
    if (body) {
        cJSON_AddNumberToObject(body, "statusCode", fleet_status_code(out->error.code));
        cJSON_AddStringToObject(body, "errorCode", fleet_error_code(out->error.code));
        cJSON_AddStringToObject(body, "errorMessage", out->error.message);
    }
    return respond(out, req, false, body);
}

/* ---- requests ------------------------------------------------------------------------------ */

/* What may follow the JSON value: white space, and NUL bytes that C clients send as terminators
 * (anything else makes the payload invalid, as every other parser of iotmock decides). */
static bool only_padding(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] != '\0' && s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n')
            return false;
    return true;
}

/* Parses a request body into an object. An empty payload counts as {} (the C SDK sends zero
 * bytes); a CBOR body must be a map (cbor_codec.h). */
static enum iot_err parse_body(const struct fleet_request *req, cJSON **out, struct iot_error *err)
{
    if (req->topic->format == FLEET_FORMAT_CBOR)
        return cbor_codec_decode(req->payload, req->payload_len, out, err);
    const char *p = req->payload, *end = NULL;
    size_t n = req->payload_len;
    *out = n == 0 ? cJSON_CreateObject() : cJSON_ParseWithLengthOpts(p, n, &end, false);
    if (*out != NULL && end != NULL && !only_padding(end, (size_t)(p + n - end))) {
        cJSON_Delete(*out);
        *out = NULL;
    }
    if (*out == NULL)
        return iot_error_set(err, IOT_ERR_INVALID_PAYLOAD, "Request payload is not valid JSON");
    if (!cJSON_IsObject(*out)) {
        cJSON_Delete(*out);
        *out = NULL;
        return iot_error_set(err, IOT_ERR_INVALID_PAYLOAD, "Request payload is not a JSON object");
    }
    return IOT_OK;
}

static void hex(const unsigned char *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = '\0';
}

static void token_hash(const char *token, char out[65])
{
    unsigned char md[32];
    unsigned int len = 0;
    EVP_Digest(token, strlen(token), md, &len, EVP_sha256(), NULL);
    hex(md, sizeof(md), out);
}

/* A new random token as base64url without padding. */
static enum iot_err token_new(char *out, size_t out_len)
{
    unsigned char raw[TOKEN_RANDOM_BYTES];
    unsigned char b64[TOKEN_RANDOM_BYTES * 4 / 3 + 4];
    if (RAND_bytes(raw, sizeof(raw)) != 1)
        return IOT_ERR_INTERNAL;
    int n = EVP_EncodeBlock(b64, raw, sizeof(raw));
    if (n <= 0 || (size_t)n >= out_len)
        return IOT_ERR_INTERNAL;
    for (int i = 0; i < n; i++)
        out[i] = b64[i] == '+' ? '-' : b64[i] == '/' ? '_' : (char)b64[i];
    while (n > 0 && out[n - 1] == '=')
        n--;
    out[n] = '\0';
    return IOT_OK;
}

/* Stores a new PENDING_ACTIVATION certificate and its ownership token in one transaction, so a
 * client is never told about a certificate the registry lacks. */
static enum iot_err store_issued(const struct fleet_config *cfg, const char *id, const char *pem,
                                 char *token, size_t token_len, struct iot_error *err)
{
    char hash[65];
    if (token_new(token, token_len) != IOT_OK)
        return iot_error_set(err, IOT_ERR_INTERNAL, "could not draw a random token");
    token_hash(token, hash);

    struct registry_cert c = {0};
    snprintf(c.id, sizeof(c.id), "%s", id);
    c.pem = (char *)pem;
    c.status = CERT_STATUS_PENDING_ACTIVATION;
    enum iot_err rc = registry_begin(cfg->reg);
    if (rc != IOT_OK)
        return iot_error_set(err, rc, "registry unavailable");
    if ((rc = registry_cert_insert(cfg->reg, &c, err)) != IOT_OK ||
        (rc = registry_token_put(cfg->reg, hash, id, (long long)time(NULL) + cfg->token_ttl,
                                 err)) != IOT_OK) {
        registry_rollback(cfg->reg);
        return rc;
    }
    if ((rc = registry_commit(cfg->reg)) != IOT_OK)
        return iot_error_set(err, rc, "registry commit failed");
    return IOT_OK;
}

/* Issues a certificate for KEY, or for the key and subject of CSR, stores it, and builds the
 * accepted body; PRIVATE_PEM is added when the service generated the key. */
static enum iot_err issue(const struct fleet_config *cfg, EVP_PKEY *key, X509_REQ *csr,
                          const char *private_pem, cJSON **out, struct iot_error *err)
{
    X509 *cert = NULL;
    char *pem = NULL;
    char id[CA_ID_LEN + 1], token[128];
    enum iot_err rc = csr ? ca_issue_csr(cfg->ca, csr, &cert, err)
                          : ca_issue(cfg->ca, key, NULL, &cert, err);
    if (rc != IOT_OK)
        goto cleanup;
    if ((rc = ca_cert_id(cert, id)) != IOT_OK || (pem = ca_cert_to_pem(cert)) == NULL) {
        rc = iot_error_set(err, IOT_ERR_INTERNAL, "could not encode the certificate");
        goto cleanup;
    }
    if ((rc = store_issued(cfg, id, pem, token, sizeof(token), err)) != IOT_OK)
        goto cleanup;
    /* Field order as AWS documents the response (§1.3, §1.4). */
    *out = cJSON_CreateObject();
    if (private_pem == NULL)
        cJSON_AddStringToObject(*out, "certificateOwnershipToken", token);
    cJSON_AddStringToObject(*out, "certificateId", id);
    cJSON_AddStringToObject(*out, "certificatePem", pem);
    if (private_pem != NULL) {
        cJSON_AddStringToObject(*out, "privateKey", private_pem);
        cJSON_AddStringToObject(*out, "certificateOwnershipToken", token);
    }
cleanup:
    X509_free(cert);
    free(pem);
    return rc;
}

static enum iot_err create_keys(const struct fleet_config *cfg, cJSON *body, cJSON **out,
                                struct iot_error *err)
{
    EVP_PKEY *key = NULL;
    char *key_pem = NULL;
    enum iot_err rc = keypool_take(cfg->keys, &key, err);
    if (rc != IOT_OK)
        goto cleanup;
    if ((key_pem = ca_key_to_pem(key)) == NULL) {
        rc = iot_error_set(err, IOT_ERR_INTERNAL, "could not encode the private key");
        goto cleanup;
    }
    rc = issue(cfg, key, NULL, key_pem, out, err);
cleanup:
    if (key_pem)
        OPENSSL_cleanse(key_pem, strlen(key_pem));
    free(key_pem);
    EVP_PKEY_free(key);
    return rc;
}

static enum iot_err create_from_csr(const struct fleet_config *cfg, cJSON *body, cJSON **out,
                                    struct iot_error *err)
{
    const cJSON *csr = cJSON_GetObjectItemCaseSensitive(body, "certificateSigningRequest");
    if (csr == NULL)
        return iot_error_set(err, IOT_ERR_INVALID_PAYLOAD,
                             "Missing required field certificateSigningRequest");
    if (!cJSON_IsString(csr))
        return iot_error_set(err, IOT_ERR_INVALID_PAYLOAD,
                             "certificateSigningRequest must be a string");
    size_t len = strlen(csr->valuestring);
    if (len > FLEET_CSR_MAX)
        return iot_error_set(err, IOT_ERR_INVALID_CSR,
                             "certificateSigningRequest is %zu characters; at most %d are allowed",
                             len, FLEET_CSR_MAX);
    X509_REQ *req = NULL;
    enum iot_err rc = ca_csr_parse(csr->valuestring, len, &req, err);
    if (rc != IOT_OK)
        return rc;
    rc = issue(cfg, NULL, req, NULL, out, err);
    X509_REQ_free(req);
    return rc;
}

/* ---- RegisterThing ------------------------------------------------------------------------- */

struct register_ctx {
    const struct fleet_config *cfg;
    const struct fleet_request *req;
    const char *token;
    const cJSON *device_params; /* borrowed from the body; may be NULL */
    struct registry_template tpl;
    struct template *parsed;
    struct registry_cert cert;
    cJSON *params;              /* merged parameters, owned */
};

static enum iot_err read_register_body(struct register_ctx *rc, cJSON *body, struct iot_error *err)
{
    const cJSON *token = cJSON_GetObjectItemCaseSensitive(body, "certificateOwnershipToken");
    if (token != NULL && !cJSON_IsString(token) && !cJSON_IsNull(token))
        return iot_error_set(err, IOT_ERR_INVALID_PAYLOAD,
                             "certificateOwnershipToken must be a string");
    if (!cJSON_IsString(token) || token->valuestring[0] == '\0')
        return iot_error_set(err, IOT_ERR_INVALID_TOKEN, TOKEN_EMPTY_MESSAGE);
    rc->token = token->valuestring;

    const cJSON *params = cJSON_GetObjectItemCaseSensitive(body, "parameters");
    if (params == NULL || cJSON_IsNull(params))
        return IOT_OK;
    if (!cJSON_IsObject(params))
        return iot_error_set(err, IOT_ERR_INVALID_PAYLOAD, "parameters must be a JSON object");
    const cJSON *p;
    cJSON_ArrayForEach(p, params)
    {
        if (!cJSON_IsString(p))
            return iot_error_set(err, IOT_ERR_INVALID_PAYLOAD,
                                 "Parameter %s must be a string", p->string);
    }
    rc->device_params = params;
    return IOT_OK;
}

/* §2.7 step 1: the template must exist, be a fleet template, and be enabled. */
static enum iot_err load_template(struct register_ctx *rc, struct iot_error *err)
{
    const char *name = rc->req->topic->template_name;
    enum iot_err e = registry_template_get(rc->cfg->reg, name, &rc->tpl, NULL);
    if (e == IOT_ERR_NOT_FOUND || (e == IOT_OK && rc->tpl.type &&
                                   strcmp(rc->tpl.type, "FLEET_PROVISIONING") != 0))
        return iot_error_set(err, IOT_ERR_NOT_FOUND, "Template %s not found", name);
    if (e != IOT_OK)
        return iot_error_set(err, e, "registry unavailable");
    if (!rc->tpl.enabled)
        return iot_error_set(err, IOT_ERR_TEMPLATE_DISABLED, "Template %s is disabled", name);
    const char *body = rc->tpl.body ? rc->tpl.body : "";
    return template_parse(body, strlen(body), &rc->parsed, err);
}

/* §1.6: the token must be known, unexpired, and its certificate still registered. */
static enum iot_err check_token(struct register_ctx *rc, struct iot_error *err)
{
    char hash[65], cert_id[65];
    long long expires = 0;
    token_hash(rc->token, hash);
    if (registry_token_find(rc->cfg->reg, hash, cert_id, &expires) != IOT_OK)
        return iot_error_set(err, IOT_ERR_INVALID_TOKEN, "Certificate ownership token is invalid.");
    if (expires <= (long long)time(NULL))
        return iot_error_set(err, IOT_ERR_INVALID_TOKEN,
                             "Certificate ownership token has expired.");
    if (registry_cert_get(rc->cfg->reg, cert_id, &rc->cert, NULL) != IOT_OK)
        return iot_error_set(err, IOT_ERR_INVALID_TOKEN,
                             "The certificate of this ownership token no longer exists.");
    return IOT_OK;
}

static cJSON *hook_event(const struct register_ctx *rc)
{
    char arn[256];
    snprintf(arn, sizeof(arn), "arn:aws:iot:%s:%s:provisioningtemplate/%s", rc->cfg->region,
             rc->cfg->account_id, rc->tpl.name);
    cJSON *ev = cJSON_CreateObject();
    cJSON_AddStringToObject(ev, "claimCertificateId", rc->req->client_cert_id);
    cJSON_AddStringToObject(ev, "certificateId", rc->cert.id);
    cJSON_AddStringToObject(ev, "certificatePem", rc->cert.pem);
    cJSON_AddStringToObject(ev, "templateArn", arn);
    cJSON_AddStringToObject(ev, "clientId", rc->req->client_id);
    cJSON_AddItemToObject(ev, "parameters", rc->device_params
                                                ? cJSON_Duplicate(rc->device_params, 1)
                                                : cJSON_CreateObject());
    return ev;
}

static void put_string(cJSON *obj, const char *key, const char *value)
{
    cJSON_DeleteItemFromObjectCaseSensitive(obj, key);
    cJSON_AddStringToObject(obj, key, value);
}

/* Parameters by precedence (§2.2): hook overrides > device parameters; the certificate id is a
 * built-in that no one may override, or a device could name another's certificate. */
static enum iot_err merge_params(struct register_ctx *rc, const cJSON *overrides)
{
    rc->params = rc->device_params ? cJSON_Duplicate(rc->device_params, 1) : cJSON_CreateObject();
    if (rc->params == NULL)
        return IOT_ERR_NOMEM;
    const cJSON *o;
    cJSON_ArrayForEach(o, overrides) put_string(rc->params, o->string, o->valuestring);
    put_string(rc->params, TEMPLATE_CERT_ID_PARAM, rc->cert.id);
    return IOT_OK;
}

static enum iot_err run_hook(struct register_ctx *rc, cJSON **overrides, struct iot_error *err)
{
    if (rc->tpl.hook_target_arn == NULL || rc->tpl.hook_target_arn[0] == '\0') {
        *overrides = cJSON_CreateObject();
        return IOT_OK;
    }
    cJSON *ev = hook_event(rc);
    enum iot_err e = hook_invoke(rc->cfg->lambda_endpoint, rc->tpl.hook_target_arn, ev,
                                 rc->cfg->hook_timeout_ms, overrides, err);
    cJSON_Delete(ev);
    return e;
}

static cJSON *register_answer(const struct template_plan *plan)
{
    cJSON *body = cJSON_CreateObject();
    cJSON_AddItemToObject(body, "deviceConfiguration",
                          cJSON_Duplicate(template_plan_device_configuration(plan), 1));
    const char *thing = template_plan_thing_name(plan);
    if (thing)
        cJSON_AddStringToObject(body, "thingName", thing);
    return body;
}

static enum iot_err register_thing(const struct fleet_config *cfg, const struct fleet_request *req,
                                   cJSON *body, cJSON **out, struct iot_error *err)
{
    struct register_ctx rc = {.cfg = cfg, .req = req};
    struct template_plan *plan = NULL;
    cJSON *overrides = NULL;
    enum iot_err e;
    if ((e = read_register_body(&rc, body, err)) != IOT_OK ||
        (e = load_template(&rc, err)) != IOT_OK || (e = check_token(&rc, err)) != IOT_OK ||
        (e = run_hook(&rc, &overrides, err)) != IOT_OK || (e = merge_params(&rc, overrides)) != IOT_OK ||
        (e = template_render(rc.parsed, rc.params, &plan, err)) != IOT_OK ||
        (e = template_apply(cfg->reg, plan, rc.cert.id, err)) != IOT_OK)
        goto cleanup;
    *out = register_answer(plan);
cleanup:
    template_plan_free(plan);
    template_free(rc.parsed);
    registry_template_clear(&rc.tpl);
    registry_cert_clear(&rc.cert);
    cJSON_Delete(rc.params);
    cJSON_Delete(overrides);
    return e;
}

/* ---- entry point --------------------------------------------------------------------------- */

enum iot_err fleet_handle(const struct fleet_config *cfg, const struct fleet_request *req,
                          struct fleet_response *out)
{
    memset(out, 0, sizeof(*out));
    cJSON *body = NULL, *answer = NULL;
    enum iot_err e = parse_body(req, &body, &out->error);
    if (e == IOT_OK) {
        switch (req->topic->op) {
        case FLEET_OP_CREATE_KEYS: e = create_keys(cfg, body, &answer, &out->error); break;
        case FLEET_OP_CREATE_FROM_CSR: e = create_from_csr(cfg, body, &answer, &out->error); break;
        case FLEET_OP_REGISTER_THING:
            e = register_thing(cfg, req, body, &answer, &out->error);
            break;
        default: e = iot_error_set(&out->error, IOT_ERR_INTERNAL, "not a request topic"); break;
        }
    }
    cJSON_Delete(body);
    if (e == IOT_OK && answer != NULL)
        return respond(out, req, true, answer);
    cJSON_Delete(answer);
    if (out->error.code == IOT_OK)
        iot_error_set(&out->error, e, "internal error");
    return reject(out, req);
}

void fleet_response_clear(struct fleet_response *r)
{
    if (r == NULL)
        return;
    free(r->payload);
    r->payload = NULL;
    r->payload_len = 0;
}

/* ---- CreateProvisioningClaim's implicit permissions (§1.11) ---- */

char *fleet_claim_policy_document(const char *region, const char *account_id,
                                  const char *template_name)
{
    char prefix[256];
    snprintf(prefix, sizeof(prefix), "arn:aws:iot:%s:%s:", region, account_id);
    static const char *const TOPICS[] = {"$aws/certificates/create/*",
                                         "$aws/certificates/create-from-csr/*", NULL};
    cJSON *doc = cJSON_CreateObject(), *st = cJSON_AddArrayToObject(doc, "Statement");
    cJSON_AddStringToObject(doc, "Version", "2012-10-17");
    cJSON *connect = cJSON_CreateObject(), *pub = cJSON_CreateObject(), *sub = cJSON_CreateObject();
    cJSON *pub_actions = cJSON_CreateArray(), *pub_res = cJSON_CreateArray(),
          *sub_res = cJSON_CreateArray();
    char arn[512];
    cJSON_AddStringToObject(connect, "Effect", "Allow");
    cJSON_AddStringToObject(connect, "Action", "iot:Connect");
    snprintf(arn, sizeof(arn), "%sclient/*", prefix);
    cJSON_AddStringToObject(connect, "Resource", arn);
    cJSON_AddItemToArray(pub_actions, cJSON_CreateString("iot:Publish"));
    cJSON_AddItemToArray(pub_actions, cJSON_CreateString("iot:Receive"));
    for (int i = 0; i < 3; i++) {
        char topic[128];
        if (TOPICS[i] != NULL)
            snprintf(topic, sizeof(topic), "%s", TOPICS[i]);
        else
            snprintf(topic, sizeof(topic), "$aws/provisioning-templates/%s/provision/*",
                     template_name);
        snprintf(arn, sizeof(arn), "%stopic/%s", prefix, topic);
        cJSON_AddItemToArray(pub_res, cJSON_CreateString(arn));
        snprintf(arn, sizeof(arn), "%stopicfilter/%s", prefix, topic);
        cJSON_AddItemToArray(sub_res, cJSON_CreateString(arn));
    }
    cJSON_AddStringToObject(pub, "Effect", "Allow");
    cJSON_AddItemToObject(pub, "Action", pub_actions);
    cJSON_AddItemToObject(pub, "Resource", pub_res);
    cJSON_AddStringToObject(sub, "Effect", "Allow");
    cJSON_AddStringToObject(sub, "Action", "iot:Subscribe");
    cJSON_AddItemToObject(sub, "Resource", sub_res);
    cJSON_AddItemToArray(st, connect);
    cJSON_AddItemToArray(st, pub);
    cJSON_AddItemToArray(st, sub);
    char *text = cJSON_PrintUnformatted(doc);
    cJSON_Delete(doc);
    return text;
}
