/* Bring-your-own CA over HTTP (shared/spec/provisioning.md §4.1-§4.3, §4.6, §6.4): the
 * registration code, the CA certificate operations, RegisterCertificate,
 * RegisterCertificateWithoutCA and ListCertificatesByCA. The rules live in emulator/cacert.h and
 * emulator/jit.h; this file maps requests to them and their refusals to AWS's exceptions.
 *
 * Whatever changes what the broker's TLS layer trusts (a CA registered or deleted, a device
 * certificate registered without a CA) re-syncs the capath directory before the answer leaves,
 * so the next handshake already sees it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "capath.h"
#include "http/api.h"
#include "jit.h"

static struct cacert_store *store(struct http_request *req, struct http_reply *rep)
{
    struct cacert_store *s = req->srv->cfg.cacerts;
    if (s == NULL)
        reply_error(rep, 500, "InternalFailureException", "No CA certificate store is configured");
    return s;
}

/* A refusal of cacert/jit as AWS's exception; KIND names the ARN of a resource that exists. */
static void reply_cacert_error(struct http_request *req, struct http_reply *rep,
                               const struct cacert_error *e, const char *kind)
{
    if (e->exception == CACERT_EXC_ALREADY_EXISTS) {
        reply_exists(rep, e->resource_id, arn_of(req, kind, e->resource_id), "%s", e->base.message);
        return;
    }
    if (e->exception == CACERT_EXC_NONE) {
        reply_iot_error(rep, &e->base);
        return;
    }
    reply_error(rep, cacert_exception_status(e->exception), cacert_exception_name(e->exception),
                "%s", e->base.message);
}

bool trust_sync(struct http_request *req, struct http_reply *rep)
{
    const struct http_config *cfg = &req->srv->cfg;
    struct iot_error err = {0};
    char root[4096];
    if (cfg->capath == NULL || cfg->cacerts == NULL)
        return true;
    snprintf(root, sizeof(root), "%s/root-ca.pem", cfg->state_dir ? cfg->state_dir : ".");
    if (jit_sync_capath(cfg->cacerts, cfg->reg, root, cfg->capath, &err) == IOT_OK)
        return true;
    reply_error(rep, 500, "InternalFailureException", "Could not update the trusted CAs: %s",
                err.message);
    return false;
}

/* {certificateArn, certificateId} of a registration. */
static void reply_registered(struct http_request *req, struct http_reply *rep, const char *kind,
                             const char *id)
{
    cJSON *out = cJSON_CreateObject();
    add_arn(req, out, "certificateArn", kind, id);
    cJSON_AddStringToObject(out, "certificateId", id);
    reply_json(rep, out);
}

/* ---- registration code (§4.1) ---------------------------------------------------------------- */

void op_get_registration_code(struct http_request *req, struct http_reply *rep)
{
    struct cacert_store *s = store(req, rep);
    char code[CACERT_CODE_LEN + 1];
    struct iot_error err = {0};
    if (s == NULL)
        return;
    if (cacert_registration_code(s, code, &err) != IOT_OK) {
        reply_iot_error(rep, &err);
        return;
    }
    cJSON *out = cJSON_CreateObject();
    cJSON_AddStringToObject(out, "registrationCode", code);
    reply_json(rep, out);
}

void op_delete_registration_code(struct http_request *req, struct http_reply *rep)
{
    struct cacert_store *s = store(req, rep);
    struct iot_error err = {0};
    if (s == NULL)
        return;
    if (cacert_registration_code_delete(s, &err) != IOT_OK)
        reply_iot_error(rep, &err);
    else
        reply_json(rep, NULL);
}

/* ---- CA certificates (§4.2, §4.3) ------------------------------------------------------------ */

static const cJSON *config_or_null(const cJSON *config)
{
    return config != NULL && !cJSON_IsNull(config) ? config : NULL;
}

void op_register_ca_certificate(struct http_request *req, struct http_reply *rep)
{
    struct cacert_store *s = store(req, rep);
    struct cacert_request rq = {0};
    const char *ca = NULL, *verification = NULL;
    const cJSON *config = NULL;
    struct cacert_error err = {0};
    char id[CA_ID_LEN + 1];
    if (s == NULL || !body_string(req, rep, "caCertificate", true, &ca) ||
        !body_string(req, rep, "verificationCertificate", false, &verification) ||
        !body_string(req, rep, "certificateMode", false, &rq.certificate_mode) ||
        !body_node(req, rep, "registrationConfig", false, &config) ||
        !req_query_bool(req, rep, "setAsActive", &rq.set_as_active) ||
        !req_query_bool(req, rep, "allowAutoRegistration", &rq.allow_auto_registration))
        return;
    rq.ca_pem = ca;
    rq.ca_pem_len = strlen(ca);
    rq.verification_pem = verification;
    rq.verification_pem_len = verification ? strlen(verification) : 0;
    rq.registration_config = config_or_null(config);
    if (cacert_register(s, req->srv->cfg.reg, &rq, id, &err) != IOT_OK) {
        reply_cacert_error(req, rep, &err, "cacert");
        return;
    }
    if (trust_sync(req, rep))
        reply_registered(req, rep, "cacert", id);
}

void op_update_ca_certificate(struct http_request *req, struct http_reply *rep)
{
    struct cacert_store *s = store(req, rep);
    struct cacert_update u = {0};
    const cJSON *config = NULL;
    struct cacert_error err = {0};
    char id[CA_ID_LEN + 1];
    if (s == NULL || !check_cert_id(rep, req->params[0], id) ||
        !body_node(req, rep, "registrationConfig", false, &config) ||
        !body_bool(req, rep, "removeAutoRegistration", &u.remove_auto_registration))
        return;
    u.new_status = req_query(req, "newStatus");
    u.new_auto_registration = req_query(req, "newAutoRegistrationStatus");
    u.registration_config = config_or_null(config);
    if (cacert_update(s, req->srv->cfg.reg, id, &u, &err) != IOT_OK)
        reply_cacert_error(req, rep, &err, "cacert");
    else
        reply_json(rep, NULL);
}

static cJSON *ca_description(struct http_request *req, const struct cacert *c)
{
    cJSON *d = cJSON_CreateObject();
    add_arn(req, d, "certificateArn", "cacert", c->id);
    cJSON_AddStringToObject(d, "certificateId", c->id);
    cJSON_AddStringToObject(d, "status", cacert_status_name(c->status));
    cJSON_AddStringToObject(d, "certificatePem", c->pem ? c->pem : "");
    cJSON_AddStringToObject(d, "ownedBy", req->srv->cfg.account_id);
    add_time(d, "creationDate", c->created);
    cJSON_AddStringToObject(d, "autoRegistrationStatus", cacert_auto_name(c->auto_registration));
    add_time(d, "lastModifiedDate", c->modified);
    cJSON_AddNumberToObject(d, "customerVersion", (double)c->customer_version);
    cJSON_AddStringToObject(d, "generationId", c->generation_id);
    cJSON *v = cJSON_AddObjectToObject(d, "validity");
    add_time(v, "notBefore", c->not_before);
    add_time(v, "notAfter", c->not_after);
    cJSON_AddStringToObject(d, "certificateMode", cacert_mode_name(c->mode));
    return d;
}

void op_describe_ca_certificate(struct http_request *req, struct http_reply *rep)
{
    struct cacert_store *s = store(req, rep);
    struct cacert c = {0};
    struct cacert_error err = {0};
    char id[CA_ID_LEN + 1];
    if (s == NULL || !check_cert_id(rep, req->params[0], id))
        return;
    if (cacert_get(s, id, &c, &err) != IOT_OK) {
        reply_cacert_error(req, rep, &err, "cacert");
        return;
    }
    cJSON *out = cJSON_CreateObject();
    cJSON_AddItemToObject(out, "certificateDescription", ca_description(req, &c));
    /* AWS answers null when there is none (§4.3, observed). */
    if (c.registration_config != NULL)
        cJSON_AddItemToObject(out, "registrationConfig",
                              cJSON_Duplicate(c.registration_config, true));
    else
        cJSON_AddNullToObject(out, "registrationConfig");
    cacert_clear(&c);
    reply_json(rep, out);
}

void op_list_ca_certificates(struct http_request *req, struct http_reply *rep)
{
    struct cacert_store *s = store(req, rep);
    struct registry_page pg;
    struct iot_error err = {0};
    cJSON *items = NULL, *item;
    char *next = NULL;
    bool ascending = true;
    if (s == NULL || !page_read(req, rep, "pageSize", "marker", &pg) ||
        !req_query_bool(req, rep, "isAscendingOrder", &ascending))
        return;
    if (cacert_list(s, req_query(req, "templateName"), pg.after, pg.limit, !ascending, &items,
                    &next, &err) != IOT_OK) {
        reply_iot_error(rep, &err);
        return;
    }
    cJSON *out = cJSON_CreateObject();
    cJSON *cas = cJSON_AddArrayToObject(out, "certificates");
    cJSON_ArrayForEach(item, items)
    {
        cJSON *c = cJSON_CreateObject();
        add_arn(req, c, "certificateArn", "cacert", item_str(item, "id"));
        cJSON_AddStringToObject(c, "certificateId", item_str(item, "id"));
        cJSON_AddStringToObject(c, "status", item_str(item, "status"));
        add_time(c, "creationDate", item_num(item, "created"));
        cJSON_AddItemToArray(cas, c);
    }
    cJSON_Delete(items);
    page_next(out, "nextMarker", next);
    reply_json(rep, out);
}

void op_delete_ca_certificate(struct http_request *req, struct http_reply *rep)
{
    struct cacert_store *s = store(req, rep);
    struct cacert_error err = {0};
    char id[CA_ID_LEN + 1];
    if (s == NULL || !check_cert_id(rep, req->params[0], id))
        return;
    if (cacert_delete(s, id, &err) != IOT_OK) {
        reply_cacert_error(req, rep, &err, "cacert");
        return;
    }
    if (trust_sync(req, rep))
        reply_json(rep, NULL);
}

/* ---- device certificates (§4.6) -------------------------------------------------------------- */

/* The members both register calls share. */
static bool read_register(struct http_request *req, struct http_reply *rep, bool with_ca,
                          struct jit_register_request *rq)
{
    const char *pem = NULL, *ca = NULL;
    *rq = (struct jit_register_request){0};
    if (!body_string(req, rep, "certificatePem", true, &pem) ||
        !body_string(req, rep, "status", false, &rq->status) ||
        (with_ca && (!body_string(req, rep, "caCertificatePem", false, &ca) ||
                     !req_query_bool(req, rep, "setAsActive", &rq->set_as_active))))
        return false;
    rq->cert_pem = pem;
    rq->cert_pem_len = strlen(pem);
    rq->ca_pem = ca;
    rq->ca_pem_len = ca ? strlen(ca) : 0;
    return true;
}

void op_register_certificate(struct http_request *req, struct http_reply *rep)
{
    struct cacert_store *s = store(req, rep);
    struct jit_register_request rq;
    struct cacert_error err = {0};
    char id[CA_ID_LEN + 1];
    if (s == NULL || !read_register(req, rep, true, &rq))
        return;
    if (jit_register_certificate(s, req->srv->cfg.reg, &rq, id, &err) != IOT_OK)
        reply_cacert_error(req, rep, &err, "cert");
    else
        reply_registered(req, rep, "cert", id);
}

void op_register_certificate_without_ca(struct http_request *req, struct http_reply *rep)
{
    struct cacert_store *s = store(req, rep);
    struct jit_register_request rq;
    struct cacert_error err = {0};
    char id[CA_ID_LEN + 1];
    if (s == NULL || !read_register(req, rep, false, &rq))
        return;
    if (jit_register_certificate_without_ca(s, req->srv->cfg.reg, &rq, id, &err) != IOT_OK) {
        reply_cacert_error(req, rep, &err, "cert");
        return;
    }
    if (trust_sync(req, rep))
        reply_registered(req, rep, "cert", id);
}

/* The registry lists every certificate; this keeps those of one CA. Each round asks for as many
 * as are still missing, so a page never holds more than was asked and the registry's cursor
 * after it is the right continuation token. */
void op_list_certificates_by_ca(struct http_request *req, struct http_reply *rep)
{
    struct registry_page pg;
    struct iot_error err = {0};
    char ca_id[CA_ID_LEN + 1];
    bool ascending = true;
    if (!check_cert_id(rep, req->params[0], ca_id) ||
        !page_read(req, rep, "pageSize", "marker", &pg) ||
        !req_query_bool(req, rep, "isAscendingOrder", &ascending))
        return;
    pg.descending = !ascending;
    int wanted = pg.limit > 0 ? pg.limit : HTTP_PAGE_DEFAULT, found = 0;
    char *cursor = NULL, *next = NULL;
    cJSON *out = cJSON_CreateObject();
    cJSON *certs = cJSON_AddArrayToObject(out, "certificates");
    for (;;) {
        cJSON *items = NULL, *item;
        pg.limit = wanted - found;
        if (registry_cert_list(req->srv->cfg.reg, &pg, &items, &next, &err) != IOT_OK) {
            cJSON_Delete(out);
            free(cursor);
            reply_iot_error(rep, &err);
            return;
        }
        cJSON_ArrayForEach(item, items)
        {
            if (strcmp(item_str(item, "ca_id") ? item_str(item, "ca_id") : "", ca_id) != 0)
                continue;
            cJSON *c = cJSON_CreateObject();
            add_arn(req, c, "certificateArn", "cert", item_str(item, "id"));
            cJSON_AddStringToObject(c, "certificateId", item_str(item, "id"));
            cJSON_AddStringToObject(c, "status", item_str(item, "status"));
            cJSON_AddStringToObject(
                c, "certificateMode",
                cacert_mode_name(cacert_device_mode(req->srv->cfg.cacerts, item_str(item, "id"))));
            add_time(c, "creationDate", item_num(item, "created"));
            cJSON_AddItemToArray(certs, c);
            found++;
        }
        cJSON_Delete(items);
        free(cursor);
        cursor = next;
        if (next == NULL || found >= wanted)
            break;
        pg.after = cursor;
    }
    page_next(out, "nextMarker", cursor);
    reply_json(rep, out);
}
