/* Certificates: CreateKeysAndCertificate, CreateCertificateFromCsr, DescribeCertificate,
 * UpdateCertificate, DeleteCertificate and ListCertificates (shared/spec/provisioning.md §6.5,
 * statuses and transitions §4.5, deletion rules §4.8). Certificates come from the local CA with
 * AWS's profile (§1.7). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "http/api.h"

#define CSR_MAX 4096 /* characters, as the model caps certificateSigningRequest */

/* ---- issuing -------------------------------------------------------------------------------- */

void issued_clear(struct issued *i)
{
    if (i->private_pem != NULL)
        OPENSSL_cleanse(i->private_pem, strlen(i->private_pem));
    free(i->cert_pem);
    free(i->public_pem);
    free(i->private_pem);
    memset(i, 0, sizeof(*i));
}

static char *public_key_pem(EVP_PKEY *key)
{
    BIO *bio = BIO_new(BIO_s_mem());
    char *data = NULL, *out = NULL;
    if (bio != NULL && PEM_write_bio_PUBKEY(bio, key) == 1) {
        long n = BIO_get_mem_data(bio, &data);
        if (n > 0 && (out = malloc((size_t)n + 1)) != NULL) {
            memcpy(out, data, (size_t)n);
            out[n] = '\0';
        }
    }
    BIO_free(bio);
    return out;
}

/* Issues for KEY (subject from the CSR when given) and encodes the certificate. */
static bool issue(struct http_request *req, struct http_reply *rep, EVP_PKEY *key,
                  const X509_NAME *subject, struct issued *out)
{
    struct iot_error err = {0};
    X509 *cert = NULL;
    bool ok = false;
    if (req->srv->cfg.ca == NULL) {
        reply_error(rep, 500, "InternalFailureException", "No certificate authority is configured");
        return false;
    }
    if (ca_issue(req->srv->cfg.ca, key, subject, &cert, &err) != IOT_OK)
        reply_iot_error(rep, &err);
    else if (ca_cert_id(cert, out->id) != IOT_OK || (out->cert_pem = ca_cert_to_pem(cert)) == NULL)
        reply_error(rep, 500, "InternalFailureException", "Could not encode the certificate");
    else
        ok = true;
    X509_free(cert);
    return ok;
}

bool issue_with_new_key(struct http_request *req, struct http_reply *rep, struct issued *out)
{
    struct iot_error err = {0};
    EVP_PKEY *key = NULL;
    bool ok = false;
    memset(out, 0, sizeof(*out));
    if (keypool_take(req->srv->cfg.keys, &key, &err) != IOT_OK) {
        reply_iot_error(rep, &err);
        return false;
    }
    if ((out->private_pem = ca_key_to_pem(key)) == NULL ||
        (out->public_pem = public_key_pem(key)) == NULL)
        reply_error(rep, 500, "InternalFailureException", "Could not encode the key pair");
    else
        ok = issue(req, rep, key, NULL, out);
    EVP_PKEY_free(key);
    if (!ok)
        issued_clear(out);
    return ok;
}

/* The certificate is in the registry (and the broker admits it when ACTIVE) before the reply. */
static bool store(struct http_request *req, struct http_reply *rep, const struct issued *i,
                  enum cert_status status)
{
    struct iot_error err = {0};
    struct registry_cert c = {.pem = i->cert_pem, .status = status};
    snprintf(c.id, sizeof(c.id), "%s", i->id);
    if (registry_cert_insert(req->srv->cfg.reg, &c, &err) == IOT_OK)
        return true;
    reply_iot_error(rep, &err);
    return false;
}

static cJSON *issued_json(struct http_request *req, const struct issued *i)
{
    cJSON *out = cJSON_CreateObject();
    add_arn(req, out, "certificateArn", "cert", i->id);
    cJSON_AddStringToObject(out, "certificateId", i->id);
    cJSON_AddStringToObject(out, "certificatePem", i->cert_pem);
    return out;
}

cJSON *key_pair_json(const struct issued *i)
{
    cJSON *k = cJSON_CreateObject();
    cJSON_AddStringToObject(k, "PublicKey", i->public_pem);
    cJSON_AddStringToObject(k, "PrivateKey", i->private_pem);
    return k;
}

/* §6.5: ACTIVE with setAsActive=true, else INACTIVE. */
void op_create_keys_and_certificate(struct http_request *req, struct http_reply *rep)
{
    struct issued i;
    bool active = false;
    if (!req_query_bool(req, rep, "setAsActive", &active) || !issue_with_new_key(req, rep, &i))
        return;
    if (store(req, rep, &i, active ? CERT_STATUS_ACTIVE : CERT_STATUS_INACTIVE)) {
        cJSON *out = issued_json(req, &i);
        cJSON_AddItemToObject(out, "keyPair", key_pair_json(&i));
        reply_json(rep, out);
    }
    issued_clear(&i);
}

void op_create_certificate_from_csr(struct http_request *req, struct http_reply *rep)
{
    struct issued i = {0};
    struct iot_error err = {0};
    X509_REQ *csr = NULL;
    const char *pem = NULL;
    bool active = false;
    if (!req_query_bool(req, rep, "setAsActive", &active) ||
        !body_string(req, rep, "certificateSigningRequest", true, &pem))
        return;
    size_t len = strlen(pem);
    if (len > CSR_MAX) {
        reply_invalid(rep, "certificateSigningRequest is %zu characters; at most %d are allowed",
                      len, CSR_MAX);
        return;
    }
    if (ca_csr_parse(pem, len, &csr, &err) != IOT_OK) {
        reply_invalid(rep, "%s", err.message);
        return;
    }
    if (issue(req, rep, X509_REQ_get0_pubkey(csr), X509_REQ_get_subject_name(csr), &i) &&
        store(req, rep, &i, active ? CERT_STATUS_ACTIVE : CERT_STATUS_INACTIVE))
        reply_json(rep, issued_json(req, &i));
    X509_REQ_free(csr);
    issued_clear(&i);
}

/* ---- describe ------------------------------------------------------------------------------- */

static long long asn1_epoch(const ASN1_TIME *t)
{
    struct tm tm;
    if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1)
        return 0;
    return (long long)timegm(&tm);
}

static cJSON *validity(const char *pem)
{
    X509 *cert = NULL;
    cJSON *v = cJSON_CreateObject();
    if (pem != NULL && ca_cert_from_pem(pem, strlen(pem), &cert, NULL) == IOT_OK) {
        add_time(v, "notBefore", asn1_epoch(X509_get0_notBefore(cert)));
        add_time(v, "notAfter", asn1_epoch(X509_get0_notAfter(cert)));
    }
    X509_free(cert);
    return v;
}

static cJSON *description(struct http_request *req, const struct registry_cert *c,
                          const struct registry_cert_meta *m)
{
    char generation[37];
    cJSON *d = cJSON_CreateObject();
    add_arn(req, d, "certificateArn", "cert", c->id);
    cJSON_AddStringToObject(d, "certificateId", c->id);
    if (c->ca_id[0] != '\0')
        cJSON_AddStringToObject(d, "caCertificateId", c->ca_id);
    cJSON_AddStringToObject(d, "status", registry_cert_status_name(c->status));
    cJSON_AddStringToObject(d, "certificatePem", c->pem ? c->pem : "");
    cJSON_AddStringToObject(d, "ownedBy", req->srv->cfg.account_id);
    add_time(d, "creationDate", c->created);
    add_time(d, "lastModifiedDate", c->modified);
    cJSON_AddNumberToObject(d, "customerVersion", (double)m->customer_version);
    cJSON_AddObjectToObject(d, "transferData");
    generation_id(c->id, m->customer_version, c->modified, generation);
    cJSON_AddStringToObject(d, "generationId", generation);
    cJSON_AddItemToObject(d, "validity", validity(c->pem));
    cJSON_AddStringToObject(d, "certificateMode",
                            cacert_mode_name(cacert_device_mode(req->srv->cfg.cacerts, c->id)));
    return d;
}

void op_describe_certificate(struct http_request *req, struct http_reply *rep)
{
    char id[CA_ID_LEN + 1];
    struct registry_cert c = {0};
    struct registry_cert_meta m = {0};
    struct iot_error err = {0};
    if (!check_cert_id(rep, req->params[0], id))
        return;
    /* One lock for both reads, so the description is of one state. */
    if (!txn_begin(req, rep))
        return;
    enum iot_err rc = registry_cert_get(req->srv->cfg.reg, id, &c, &err);
    if (rc == IOT_OK)
        rc = registry_cert_get_meta(req->srv->cfg.reg, id, &m, &err);
    if (rc == IOT_ERR_NOT_FOUND)
        reply_not_found(rep, "The certificate %s does not exist", id);
    else if (rc != IOT_OK)
        reply_iot_error(rep, &err);
    else {
        cJSON *out = cJSON_CreateObject();
        cJSON_AddItemToObject(out, "certificateDescription", description(req, &c, &m));
        reply_json(rep, out);
    }
    txn_end(req, rep);
    registry_cert_clear(&c);
}

/* ---- update --------------------------------------------------------------------------------- */

/* §4.5: PENDING_TRANSFER, PENDING_ACTIVATION and REGISTER_INACTIVE are internal statuses that
 * UpdateCertificate cannot set; a REVOKED certificate stays REVOKED; a certificate being
 * transferred changes only through the transfer operations. */
static void update_status(struct http_request *req, struct http_reply *rep, const char *id,
                          enum cert_status to)
{
    struct iot_error err = {0};
    enum cert_status from;
    enum iot_err rc = registry_cert_status(req->srv->cfg.reg, id, &from);
    if (rc == IOT_ERR_NOT_FOUND)
        reply_not_found(rep, "The certificate %s does not exist", id);
    else if (rc != IOT_OK)
        reply_error(rep, 500, "InternalFailureException", "The registry is unavailable");
    else if (from == CERT_STATUS_REVOKED && to != CERT_STATUS_REVOKED)
        reply_error(rep, 406, "CertificateStateException",
                    "Certificate %s is REVOKED; a revoked certificate cannot change status", id);
    else if (from == CERT_STATUS_PENDING_TRANSFER)
        reply_error(rep, 406, "CertificateStateException",
                    "Certificate %s is PENDING_TRANSFER; its transfer must end first", id);
    else if (from != to && registry_cert_set_status(req->srv->cfg.reg, id, to, &err) != IOT_OK)
        reply_iot_error(rep, &err);
    else
        reply_json(rep, NULL);
}

void op_update_certificate(struct http_request *req, struct http_reply *rep)
{
    char id[CA_ID_LEN + 1];
    enum cert_status to;
    if (!check_cert_id(rep, req->params[0], id))
        return;
    const char *status = req_query(req, "newStatus");
    if (status == NULL) {
        reply_invalid(rep, "newStatus is required");
        return;
    }
    if (!registry_cert_status_parse(status, &to) ||
        strcmp(registry_cert_status_name(to), status) != 0) {
        reply_invalid(rep, "newStatus %s is not a certificate status", status);
        return;
    }
    if (to == CERT_STATUS_PENDING_TRANSFER || to == CERT_STATUS_PENDING_ACTIVATION ||
        to == CERT_STATUS_REGISTER_INACTIVE) {
        reply_invalid(rep, "Status %s cannot be set with UpdateCertificate", status);
        return;
    }
    if (!txn_begin(req, rep))
        return;
    update_status(req, rep, id, to);
    txn_end(req, rep);
}

/* ---- delete --------------------------------------------------------------------------------- */

/* §4.8, AWS's messages verbatim: an ACTIVE certificate, one attached to a thing, or (without
 * forceDelete) one with policies cannot be deleted. */
static void delete_cert(struct http_request *req, struct http_reply *rep, const char *id,
                        bool force)
{
    struct registry *reg = req->srv->cfg.reg;
    struct iot_error err = {0};
    cJSON *things = NULL, *policies = NULL;
    enum cert_status status;
    enum iot_err rc = registry_cert_status(reg, id, &status);
    if (rc == IOT_OK)
        rc = registry_principal_things(reg, id, &things);
    if (rc == IOT_OK)
        rc = registry_target_policies(reg, id, &policies);
    if (rc == IOT_ERR_NOT_FOUND)
        reply_not_found(rep, "The certificate %s does not exist", id);
    else if (rc != IOT_OK)
        reply_error(rep, 500, "InternalFailureException", "The registry is unavailable");
    else if (status == CERT_STATUS_ACTIVE)
        reply_error(rep, 406, "CertificateStateException",
                    "Certificate must be deactivated (not ACTIVE) before deletion. Id: %s", id);
    else if (cJSON_GetArraySize(things) > 0)
        reply_error(rep, 409, "DeleteConflictException",
                    "Things must be detached before deletion (arn: %s)", arn_of(req, "cert", id));
    else if (cJSON_GetArraySize(policies) > 0 && !force)
        reply_error(rep, 409, "DeleteConflictException",
                    "Certificate policies must be detached before deletion (arn: %s)",
                    arn_of(req, "cert", id));
    else if (registry_cert_delete(reg, id, &err) != IOT_OK)
        reply_iot_error(rep, &err);
    else
        reply_json(rep, NULL);
    cJSON_Delete(things);
    cJSON_Delete(policies);
}

void op_delete_certificate(struct http_request *req, struct http_reply *rep)
{
    char id[CA_ID_LEN + 1];
    bool force = false;
    if (!check_cert_id(rep, req->params[0], id) ||
        !req_query_bool(req, rep, "forceDelete", &force) || !txn_begin(req, rep))
        return;
    delete_cert(req, rep, id, force);
    txn_end(req, rep);
    /* A self-signed certificate registered without a CA leaves the broker's trust with it. */
    if (rep->error_type == NULL)
        (void)trust_sync(req, rep);
}

/* ---- list ----------------------------------------------------------------------------------- */

/* Oldest first unless isAscendingOrder=false (the model does not say which order an absent flag
 * means; iotmock's choice). Provisioning-claim certificates are not listed (§1.11). */
void op_list_certificates(struct http_request *req, struct http_reply *rep)
{
    struct registry_page pg;
    struct iot_error err = {0};
    cJSON *items = NULL, *item;
    char *next = NULL;
    bool ascending = true;
    if (!page_read(req, rep, "pageSize", "marker", &pg) ||
        !req_query_bool(req, rep, "isAscendingOrder", &ascending))
        return;
    pg.descending = !ascending;
    if (registry_cert_list(req->srv->cfg.reg, &pg, &items, &next, &err) != IOT_OK) {
        reply_iot_error(rep, &err);
        return;
    }
    cJSON *out = cJSON_CreateObject();
    cJSON *certs = cJSON_AddArrayToObject(out, "certificates");
    cJSON_ArrayForEach(item, items)
    {
        cJSON *c = cJSON_CreateObject();
        add_arn(req, c, "certificateArn", "cert", item_str(item, "id"));
        cJSON_AddStringToObject(c, "certificateId", item_str(item, "id"));
        cJSON_AddStringToObject(c, "status", item_str(item, "status"));
        cJSON_AddStringToObject(
            c, "certificateMode",
            cacert_mode_name(cacert_device_mode(req->srv->cfg.cacerts, item_str(item, "id"))));
        add_time(c, "creationDate", item_num(item, "created"));
        cJSON_AddItemToArray(certs, c);
    }
    cJSON_Delete(items);
    page_next(out, "nextMarker", next);
    reply_json(rep, out);
}
