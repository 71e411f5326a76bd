/* DescribeEndpoint, Describe/UpdateEventConfigurations (shared/spec/provisioning.md §6.5), and
 * the emulator's own routes: health, the root CA, and reset. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/api.h"

/* ---- DescribeEndpoint ------------------------------------------------------------------------ */

/* The endpoint types AWS accepts. Every one of them is the broker (or, for the credential
 * provider, nothing iotmock serves; answering the same host keeps scripts going). */
static const char *const ENDPOINT_TYPES[] = {"iot:Data", "iot:Data-ATS", "iot:CredentialProvider",
                                             "iot:Jobs"};

void op_describe_endpoint(struct http_request *req, struct http_reply *rep)
{
    /* An omitted type means the legacy iot:Data endpoint (§6.5, UNCONFIRMED); same host here. */
    const char *type = req_query(req, "endpointType");
    bool known = type == NULL;
    for (size_t i = 0; !known && i < sizeof(ENDPOINT_TYPES) / sizeof(ENDPOINT_TYPES[0]); i++)
        known = strcmp(type, ENDPOINT_TYPES[i]) == 0;
    if (!known) {
        reply_invalid(rep, "Endpoint type %s is not valid", type);
        return;
    }
    cJSON *out = cJSON_CreateObject();
    cJSON_AddStringToObject(out, "endpointAddress", req->srv->host);
    reply_json(rep, out);
}

/* ---- event configurations -------------------------------------------------------------------- */

static const char *const EVENT_TYPES[] = {"THING",
                                          "THING_GROUP",
                                          "THING_TYPE",
                                          "THING_GROUP_MEMBERSHIP",
                                          "THING_GROUP_HIERARCHY",
                                          "THING_TYPE_ASSOCIATION",
                                          "JOB",
                                          "JOB_EXECUTION",
                                          "POLICY",
                                          "CERTIFICATE",
                                          "CA_CERTIFICATE"};
#define EVENT_TYPE_COUNT (sizeof(EVENT_TYPES) / sizeof(EVENT_TYPES[0]))

static bool event_type_known(const char *t)
{
    for (size_t i = 0; i < EVENT_TYPE_COUNT; i++) {
        if (strcmp(t, EVENT_TYPES[i]) == 0)
            return true;
    }
    return false;
}

/* Every type is listed; the ones never configured are disabled (AWS's default). */
void op_describe_event_configurations(struct http_request *req, struct http_reply *rep)
{
    struct iot_error err = {0};
    cJSON *stored = NULL;
    long long created = 0, modified = 0;
    if (registry_event_configs(req->srv->cfg.reg, &stored, &created, &modified, &err) != IOT_OK) {
        reply_iot_error(rep, &err);
        return;
    }
    cJSON *out = cJSON_CreateObject();
    cJSON *configs = cJSON_AddObjectToObject(out, "eventConfigurations");
    for (size_t i = 0; i < EVENT_TYPE_COUNT; i++) {
        cJSON *c = cJSON_AddObjectToObject(configs, EVENT_TYPES[i]);
        cJSON_AddBoolToObject(
            c, "Enabled", cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(stored, EVENT_TYPES[i])));
    }
    cJSON_Delete(stored);
    if (created != 0) {
        add_time(out, "creationDate", created);
        add_time(out, "lastModifiedDate", modified);
    }
    reply_json(rep, out);
}

/* Checks the whole request first, so that an invalid entry changes nothing. */
static bool read_event_configs(struct http_request *req, struct http_reply *rep, const cJSON **out)
{
    const cJSON *c;
    if (!body_node(req, rep, "eventConfigurations", false, out))
        return false;
    cJSON_ArrayForEach(c, *out)
    {
        if (!event_type_known(c->string)) {
            reply_invalid(rep, "Unknown event type %s", c->string);
            return false;
        }
        const cJSON *enabled = cJSON_GetObjectItemCaseSensitive(c, "Enabled");
        if (!cJSON_IsObject(c) || (enabled != NULL && !cJSON_IsBool(enabled))) {
            reply_invalid(rep, "eventConfigurations.%s must be {\"Enabled\": boolean}", c->string);
            return false;
        }
    }
    return true;
}

void op_update_event_configurations(struct http_request *req, struct http_reply *rep)
{
    const cJSON *configs = NULL, *c;
    struct iot_error err = {0};
    struct registry *reg = req->srv->cfg.reg;
    if (!read_event_configs(req, rep, &configs))
        return;
    enum iot_err rc = registry_begin(reg);
    cJSON_ArrayForEach(c, configs)
    {
        const cJSON *enabled = cJSON_GetObjectItemCaseSensitive(c, "Enabled");
        if (rc == IOT_OK && enabled != NULL)
            rc = registry_event_config_set(reg, c->string, cJSON_IsTrue(enabled), &err);
    }
    if (rc == IOT_OK)
        rc = registry_commit(reg);
    else
        registry_rollback(reg);
    /* The CA store empties with the registry's file; an in-memory registry's store does not. */
    if (rc == IOT_OK && req->srv->cfg.cacerts != NULL)
        rc = cacert_store_reset(req->srv->cfg.cacerts, &err);
    if (rc != IOT_OK) {
        if (err.code == IOT_OK)
            iot_error_set(&err, rc, "registry unavailable");
        reply_iot_error(rep, &err);
        return;
    }
    reply_json(rep, NULL);
}

/* ---- the emulator's own routes --------------------------------------------------------------- */

void op_iotmock_health(struct http_request *req, struct http_reply *rep)
{
    bool ready = req->srv->cfg.ready == NULL || atomic_load(req->srv->cfg.ready);
    cJSON *out = cJSON_CreateObject();
    cJSON_AddStringToObject(out, "status", ready ? "ok" : "starting");
    reply_json(rep, out);
    rep->status = ready ? 200 : 503;
}

void op_iotmock_root_ca(struct http_request *req, struct http_reply *rep)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", req->srv->cfg.state_dir, CA_CERT_FILE);
    char *pem = bootstrap_read_file(path, NULL);
    if (pem == NULL) {
        reply_error(rep, 500, "InternalFailureException", "root-ca.pem is unreadable");
        return;
    }
    reply_json(rep, NULL);
    rep->raw = pem;
    rep->content_type = "application/x-pem-file";
}

/* Back to the first start: every registry row goes, the seed (claim certificate, shipped
 * policies and templates) comes back; the CA and the files in the state directory stay. One
 * transaction, so the broker sees either the old registry or the new one. */
void op_iotmock_reset(struct http_request *req, struct http_reply *rep)
{
    struct iot_error err = {0};
    struct registry *reg = req->srv->cfg.reg;
    if (!req->srv->have_seed) {
        reply_error(rep, 500, "InternalFailureException", "this server was started without a seed");
        return;
    }
    enum iot_err rc = registry_begin(reg);
    if (rc == IOT_OK && (rc = registry_reset(reg, &err)) == IOT_OK)
        rc = bootstrap_registry(reg, &req->srv->seed, &err);
    if (rc == IOT_OK)
        rc = registry_commit(reg);
    else
        registry_rollback(reg);
    /* The CA store empties with the registry's file; an in-memory registry's store does not. */
    if (rc == IOT_OK && req->srv->cfg.cacerts != NULL)
        rc = cacert_store_reset(req->srv->cfg.cacerts, &err);
    if (rc != IOT_OK) {
        if (err.code == IOT_OK)
            iot_error_set(&err, rc, "registry unavailable");
        reply_error(rep, 500, "InternalFailureException", "reset failed: %s", err.message);
        return;
    }
    if (!trust_sync(req, rep))
        return;
    cJSON *out = cJSON_CreateObject();
    cJSON_AddStringToObject(out, "status", "reset");
    reply_json(rep, out);
}
