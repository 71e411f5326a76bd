/* jit: JITR/JITP decisions, the registered event, JITP evaluation and device certificate
 * registration against registered CAs (see jit.h for the contract). */
#include "jit.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/pem.h>

#include "capath.h"
#include "template.h"

#define DEFAULT_ACCOUNT_ID "123456789012"

/* ---- small things ------------------------------------------------------------------------ */

const char *jit_action_name(enum jit_action a)
{
    static const char *const names[] = {
        [JIT_ACCEPT] = "ACCEPT",
        [JIT_REFUSE] = "REFUSE",
        [JIT_REFUSE_AND_PUBLISH_EVENT] = "REFUSE_AND_PUBLISH_EVENT",
        [JIT_PROVISION_THEN_REFUSE] = "PROVISION_THEN_REFUSE",
    };
    return (unsigned)a < sizeof(names) / sizeof(names[0]) ? names[a] : "REFUSE";
}

void jit_event_clear(struct jit_event *e)
{
    if (e == NULL)
        return;
    free(e->topic);
    free(e->payload);
    *e = (struct jit_event){0};
}

void jit_decision_clear(struct jit_decision *d)
{
    if (d == NULL)
        return;
    jit_event_clear(&d->event);
    *d = (struct jit_decision){0};
}

void jit_pems_clear(struct jit_pems *p)
{
    if (p == NULL)
        return;
    for (size_t i = 0; i < p->n; i++)
        free(p->pems[i]);
    free(p->pems);
    *p = (struct jit_pems){0};
}

static bool has_template(const struct cacert *ca)
{
    return cJSON_IsString(
               cJSON_GetObjectItemCaseSensitive(ca->registration_config, "templateBody")) ||
           cJSON_IsString(
               cJSON_GetObjectItemCaseSensitive(ca->registration_config, "templateName"));
}

static bool auto_registering(const struct cacert *ca)
{
    return ca->status == CACERT_STATUS_ACTIVE && ca->auto_registration == CACERT_AUTO_ENABLE;
}

static bool within_validity(X509 *cert)
{
    return X509_cmp_current_time(X509_get0_notAfter(cert)) > 0 &&
           X509_cmp_current_time(X509_get0_notBefore(cert)) <= 0;
}

static bool signed_by(X509 *cert, X509 *ca)
{
    bool ok = X509_NAME_cmp(X509_get_issuer_name(cert), X509_get_subject_name(ca)) == 0 &&
              X509_verify(cert, X509_get0_pubkey(ca)) == 1;
    ERR_clear_error();
    return ok;
}

static X509 *pem_cert(const char *pem)
{
    X509 *c = NULL;
    if (pem == NULL || ca_cert_from_pem(pem, strlen(pem), &c, NULL) != IOT_OK)
        ERR_clear_error();
    return c;
}

/* ---- the registered event (§4.4) --------------------------------------------------------- */

static bool add_integer(cJSON *o, const char *name, long long v)
{
    char digits[24];
    snprintf(digits, sizeof(digits), "%lld", v);
    return cJSON_AddRawToObject(o, name, digits) != NULL;
}

enum iot_err jit_registered_event(const struct jit_config *cfg, const char *cert_id,
                                  const char *ca_id, long long timestamp_ms,
                                  long long registered_ms, struct jit_event *out)
{
    static const struct jit_config defaults = {0};
    char registered[24];
    if (cfg == NULL)
        cfg = &defaults;
    *out = (struct jit_event){0};
    snprintf(registered, sizeof(registered), "%lld", registered_ms);
    cJSON *o = cJSON_CreateObject();
    bool ok =
        o != NULL && cJSON_AddStringToObject(o, "certificateId", cert_id) != NULL &&
        cJSON_AddStringToObject(o, "caCertificateId", ca_id) != NULL &&
        add_integer(o, "timestamp", timestamp_ms) &&
        cJSON_AddStringToObject(o, "certificateStatus", "PENDING_ACTIVATION") != NULL &&
        cJSON_AddStringToObject(o, "awsAccountId",
                                cfg->account_id ? cfg->account_id : DEFAULT_ACCOUNT_ID) != NULL &&
        (cfg->registration_timestamp_null
             ? cJSON_AddNullToObject(o, "certificateRegistrationTimestamp") != NULL
             : cJSON_AddStringToObject(o, "certificateRegistrationTimestamp", registered) != NULL);
    size_t topic_len = strlen(JIT_REGISTERED_TOPIC_PREFIX) + strlen(ca_id) + 1;
    out->payload = ok ? cJSON_PrintUnformatted(o) : NULL;
    out->topic = out->payload ? malloc(topic_len) : NULL;
    cJSON_Delete(o);
    if (out->topic == NULL) {
        jit_event_clear(out);
        return IOT_ERR_NOMEM;
    }
    snprintf(out->topic, topic_len, "%s%s", JIT_REGISTERED_TOPIC_PREFIX, ca_id);
    out->payload_len = strlen(out->payload);
    return IOT_OK;
}

/* §5.3: the CA_CERTIFICATE configuration defaults to on; only an explicit false turns the event
 * off. A registry that cannot be read keeps the default. */
static bool events_enabled(struct registry *reg)
{
    cJSON *configs = NULL;
    long long created, modified;
    bool on = true;
    if (registry_event_configs(reg, &configs, &created, &modified, NULL) == IOT_OK) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(configs, JIT_EVENT_TYPE);
        on = v == NULL || !cJSON_IsFalse(v);
    }
    cJSON_Delete(configs);
    return on;
}

/* Sets D's event for the certificate registered at REGISTERED_S (epoch seconds), unless the
 * account turned the event off. */
static enum iot_err decide_event(struct registry *reg, const struct jit_config *cfg,
                                 struct jit_decision *d, long long now_ms, long long registered_s,
                                 struct iot_error *err)
{
    if (!events_enabled(reg)) {
        if (d->action == JIT_REFUSE_AND_PUBLISH_EVENT)
            d->action = JIT_REFUSE;
        return IOT_OK;
    }
    if (jit_registered_event(cfg, d->cert_id, d->ca_id, now_ms, registered_s * 1000, &d->event) !=
        IOT_OK)
        return iot_error_set(err, IOT_ERR_NOMEM, "out of memory");
    return IOT_OK;
}

/* ---- finding the issuing CA -------------------------------------------------------------- */

/* The registered CAs that signed CERT (issuer name = CA subject, signature verifies), oldest
 * first. *out NULL when none; free with cacert_array_free(). */
static enum iot_err find_signers(struct cacert_store *s, X509 *cert, struct cacert **out, size_t *n,
                                 struct iot_error *err)
{
    struct cacert *all = NULL;
    size_t count = 0, kept = 0;
    *out = NULL;
    *n = 0;
    enum iot_err code = cacert_find_by_subject(s, X509_get_issuer_name(cert), &all, &count, err);
    if (code != IOT_OK)
        return code;
    for (size_t i = 0; i < count; i++) {
        X509 *ca = pem_cert(all[i].pem);
        bool signer = ca != NULL && signed_by(cert, ca);
        X509_free(ca);
        if (!signer) {
            cacert_clear(&all[i]);
            continue;
        }
        if (kept != i) {
            all[kept] = all[i];
            all[i] = (struct cacert){0};
        }
        kept++;
    }
    if (kept == 0) {
        cacert_array_free(all, count);
        return IOT_OK;
    }
    *out = all; /* the entries past KEPT were moved or cleared */
    *n = kept;
    return IOT_OK;
}

static bool in_chain(STACK_OF(X509) * chain, const char *ca_id)
{
    char id[CA_ID_LEN + 1];
    for (int i = 0; chain != NULL && i < sk_X509_num(chain); i++)
        if (ca_cert_id(sk_X509_value(chain, i), id) == IOT_OK && strcmp(id, ca_id) == 0)
            return true;
    return false;
}

/* Among several signers (the same CA registered twice, or two CAs sharing subject and key):
 * the one the client presented, else one that auto-registers, else the oldest. */
static size_t pick_signer(const struct cacert *signers, size_t n, STACK_OF(X509) * chain)
{
    for (size_t i = 0; i < n; i++)
        if (in_chain(chain, signers[i].id))
            return i;
    for (size_t i = 0; i < n; i++)
        if (auto_registering(&signers[i]))
            return i;
    return 0;
}

/* ---- CONNECT ------------------------------------------------------------------------------- */

static void reason(struct jit_decision *d, enum jit_action a, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void reason(struct jit_decision *d, enum jit_action a, const char *fmt, ...)
{
    va_list ap;
    d->action = a;
    va_start(ap, fmt);
    vsnprintf(d->reason, sizeof(d->reason), fmt, ap);
    va_end(ap);
}

/* A certificate the registry knows (§4.4 item 3, §4.5, broker §3.5). */
static enum iot_err decide_known(struct cacert_store *s, struct registry *reg,
                                 const struct jit_config *cfg, const struct registry_cert *rc,
                                 long long now_ms, struct jit_decision *d, struct iot_error *err)
{
    struct cacert ca = {0};
    struct cacert_error cerr = {0};
    snprintf(d->ca_id, sizeof(d->ca_id), "%s", rc->ca_id);
    if (rc->status == CERT_STATUS_ACTIVE) {
        reason(d, JIT_ACCEPT, "certificate is ACTIVE");
        return IOT_OK;
    }
    if (rc->status != CERT_STATUS_PENDING_ACTIVATION || rc->ca_id[0] == '\0') {
        reason(d, JIT_REFUSE, "certificate status is %s, not ACTIVE",
               registry_cert_status_name(rc->status));
        return IOT_OK;
    }
    enum iot_err code = cacert_get(s, rc->ca_id, &ca, &cerr);
    if (code == IOT_ERR_NOT_FOUND) {
        reason(d, JIT_REFUSE, "certificate is PENDING_ACTIVATION and its CA %s is gone", rc->ca_id);
        return IOT_OK;
    }
    if (code != IOT_OK)
        return iot_error_set(err, code, "%s", cerr.base.message);
    if (!auto_registering(&ca)) {
        reason(d, JIT_REFUSE, "certificate is PENDING_ACTIVATION; its CA %s does not auto-register",
               rc->ca_id);
    } else if (has_template(&ca) && cfg->jitp_without_event) {
        reason(d, JIT_REFUSE, "certificate is PENDING_ACTIVATION (JITP CA %s)", rc->ca_id);
    } else {
        reason(d, JIT_REFUSE_AND_PUBLISH_EVENT,
               "certificate is PENDING_ACTIVATION: registered event again for CA %s", rc->ca_id);
        code = decide_event(reg, cfg, d, now_ms, rc->created, err);
    }
    cacert_clear(&ca);
    return code;
}

static enum iot_err register_pending(struct registry *reg, X509 *cert, const char *ca_id,
                                     long long now_ms, struct jit_decision *d, bool *raced,
                                     struct iot_error *err)
{
    struct registry_cert rc = {.status = CERT_STATUS_PENDING_ACTIVATION};
    *raced = false;
    snprintf(rc.id, sizeof(rc.id), "%s", d->cert_id);
    snprintf(rc.ca_id, sizeof(rc.ca_id), "%s", ca_id);
    rc.created = rc.modified = now_ms / 1000;
    if ((rc.pem = ca_cert_to_pem(cert)) == NULL)
        return iot_error_set(err, IOT_ERR_NOMEM, "out of memory");
    struct iot_error insert = {0};
    enum iot_err code = registry_cert_insert(reg, &rc, &insert);
    free(rc.pem);
    if (code == IOT_ERR_ALREADY_EXISTS) { /* another connection registered it meanwhile */
        *raced = true;
        return IOT_OK;
    }
    d->registered = code == IOT_OK;
    return code == IOT_OK ? IOT_OK : iot_error_set(err, code, "%s", insert.message);
}

/* A certificate the registry does not know: JITR / JITP (§3.2, §4.4). */
static enum iot_err decide_unknown(struct cacert_store *s, struct registry *reg,
                                   const struct jit_config *cfg, X509 *cert, STACK_OF(X509) * chain,
                                   long long now_ms, struct jit_decision *d, bool *raced,
                                   struct iot_error *err)
{
    struct cacert *signers = NULL;
    size_t n = 0;
    enum iot_err code = find_signers(s, cert, &signers, &n, err);
    if (code != IOT_OK)
        return code;
    if (n == 0) {
        reason(d, JIT_REFUSE,
               "certificate is not registered and its issuer is not a registered CA");
        return IOT_OK;
    }
    const struct cacert *ca = &signers[pick_signer(signers, n, chain)];
    snprintf(d->ca_id, sizeof(d->ca_id), "%s", ca->id);
    if (ca->status != CACERT_STATUS_ACTIVE)
        reason(d, JIT_REFUSE, "certificate is not registered and its CA %s is INACTIVE", ca->id);
    else if (ca->auto_registration != CACERT_AUTO_ENABLE)
        reason(d, JIT_REFUSE,
               "certificate is not registered and its CA %s has auto-registration DISABLE", ca->id);
    else if (!within_validity(cert))
        reason(d, JIT_REFUSE, "certificate is outside its validity period (CA %s)", ca->id);
    else
        code = register_pending(reg, cert, ca->id, now_ms, d, raced, err);
    /* §3.2 item 9: the auto-registered certificate takes its CA's mode. */
    if (code == IOT_OK && d->registered && ca->mode == CACERT_MODE_SNI_ONLY)
        code = cacert_device_mode_set(s, d->cert_id, ca->mode, err);
    if (code == IOT_OK && d->registered) {
        bool jitp = has_template(ca);
        if (jitp)
            reason(d, JIT_PROVISION_THEN_REFUSE, "registered PENDING_ACTIVATION under CA %s: JITP",
                   ca->id);
        else
            reason(d, JIT_REFUSE_AND_PUBLISH_EVENT,
                   "registered PENDING_ACTIVATION under CA %s: JITR event", ca->id);
        if (!jitp || !cfg->jitp_without_event)
            code = decide_event(reg, cfg, d, now_ms, now_ms / 1000, err);
    }
    cacert_array_free(signers, n);
    return code;
}

/* RETRY: once, when another connection registered the certificate between our lookup and our
 * insert; the decision is then the one for the certificate now registered. */
static enum iot_err decide(struct cacert_store *s, struct registry *reg,
                           const struct jit_config *cfg, X509 *cert, STACK_OF(X509) * chain,
                           long long now_ms, bool retry, struct jit_decision *out,
                           struct iot_error *err)
{
    struct registry_cert rc = {0};
    struct iot_error lookup = {0};
    bool raced = false;
    enum iot_err code = registry_cert_get(reg, out->cert_id, &rc, &lookup);
    if (code != IOT_OK && code != IOT_ERR_NOT_FOUND)
        return iot_error_set(err, code, "%s", lookup.message);
    if (code == IOT_ERR_NOT_FOUND)
        code = decide_unknown(s, reg, cfg, cert, chain, now_ms, out, &raced, err);
    else if (code == IOT_OK)
        code = decide_known(s, reg, cfg, &rc, now_ms, out, err);
    registry_cert_clear(&rc);
    if (code == IOT_OK && raced && retry)
        return decide(s, reg, cfg, cert, chain, now_ms, false, out, err);
    if (code == IOT_OK && raced)
        reason(out, JIT_REFUSE, "certificate registered by a concurrent connection");
    return code;
}

enum iot_err jit_connect(struct cacert_store *s, struct registry *reg, const struct jit_config *cfg,
                         X509 *cert, STACK_OF(X509) * chain, long long now_ms,
                         struct jit_decision *out, struct iot_error *err)
{
    static const struct jit_config defaults = {0};
    *out = (struct jit_decision){.action = JIT_REFUSE};
    if (cfg == NULL)
        cfg = &defaults;
    if (cert == NULL) {
        reason(out, JIT_REFUSE, "no client certificate");
        return IOT_OK;
    }
    if (ca_cert_id(cert, out->cert_id) != IOT_OK)
        return iot_error_set(err, IOT_ERR_INTERNAL, "cannot compute the certificate id");
    enum iot_err code = decide(s, reg, cfg, cert, chain, now_ms, true, out, err);
    if (code != IOT_OK) {
        jit_event_clear(&out->event);
        out->action = JIT_REFUSE;
    }
    return code;
}

/* ---- JITP (§3) ------------------------------------------------------------------------------ */

static const struct {
    const char *param;
    int nid;
} SUBJECT_PARAMS[] = {
    {JIT_PARAM_PREFIX "CommonName", NID_commonName},
    {JIT_PARAM_PREFIX "Country", NID_countryName},
    {JIT_PARAM_PREFIX "Organization", NID_organizationName},
    {JIT_PARAM_PREFIX "OrganizationalUnit", NID_organizationalUnitName},
    {JIT_PARAM_PREFIX "DistinguishedNameQualifier", NID_dnQualifier},
    {JIT_PARAM_PREFIX "StateName", NID_stateOrProvinceName},
    {JIT_PARAM_PREFIX "SerialNumber", NID_serialNumber},
};

/* Adds the first value of NID in NAME under PARAM; nothing when the subject has none. */
static bool add_subject_value(cJSON *params, const X509_NAME *name, int nid, const char *param)
{
    int i = X509_NAME_get_index_by_NID(name, nid, -1);
    if (i < 0)
        return true;
    unsigned char *utf8 = NULL;
    int len = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, i)));
    if (len < 0) {
        ERR_clear_error();
        return true; /* an undecodable value is treated as absent */
    }
    bool ok = cJSON_AddStringToObject(params, param, (const char *)utf8) != NULL;
    OPENSSL_free(utf8);
    return ok;
}

enum iot_err jit_subject_params(X509 *cert, const char *cert_id, cJSON **out)
{
    *out = NULL;
    cJSON *params = cJSON_CreateObject();
    const X509_NAME *name = cert ? X509_get_subject_name(cert) : NULL;
    bool ok = params != NULL && name != NULL;
    for (size_t i = 0; ok && i < sizeof(SUBJECT_PARAMS) / sizeof(SUBJECT_PARAMS[0]); i++)
        ok = add_subject_value(params, name, SUBJECT_PARAMS[i].nid, SUBJECT_PARAMS[i].param);
    ok = ok && cJSON_AddStringToObject(params, JIT_PARAM_ID, cert_id ? cert_id : "") != NULL;
    if (!ok) {
        cJSON_Delete(params);
        return cert == NULL ? IOT_ERR_INVALID_REQUEST : IOT_ERR_NOMEM;
    }
    *out = params;
    return IOT_OK;
}

/* [JITP]: "The certificate must contain values for all of the parameters in the template body":
 * every declared parameter needs a value from the subject, or a Default. */
static enum iot_err check_declared(const char *body, const cJSON *params, struct iot_error *err)
{
    cJSON *root = cJSON_Parse(body);
    const cJSON *decl = cJSON_GetObjectItemCaseSensitive(root, "Parameters"), *p;
    enum iot_err code = IOT_OK;
    cJSON_ArrayForEach(p, decl)
    {
        if (cJSON_GetObjectItemCaseSensitive(params, p->string) != NULL ||
            cJSON_GetObjectItemCaseSensitive(p, "Default") != NULL)
            continue;
        bool builtin = strncmp(p->string, JIT_PARAM_PREFIX, strlen(JIT_PARAM_PREFIX)) == 0;
        code = iot_error_set(err, IOT_ERR_INVALID_PARAMS,
                             builtin ? "The certificate subject has no value for parameter %s"
                                     : "Parameter %s has no Default and JITP takes values only "
                                       "from the certificate subject",
                             p->string);
        break;
    }
    cJSON_Delete(root);
    return code;
}

/* The template text of CA's registrationConfig, malloc'd. */
static enum iot_err template_text(struct registry *reg, const struct jit_config *cfg,
                                  const struct cacert *ca, char **out, struct iot_error *err)
{
    const cJSON *body = cJSON_GetObjectItemCaseSensitive(ca->registration_config, "templateBody");
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(ca->registration_config, "templateName");
    struct registry_template t = {0};
    *out = NULL;
    if (cJSON_IsString(body)) {
        *out = strdup(body->valuestring);
        return *out ? IOT_OK : iot_error_set(err, IOT_ERR_NOMEM, "out of memory");
    }
    if (!cJSON_IsString(name))
        return iot_error_set(err, IOT_ERR_NOT_FOUND, "CA %s has no provisioning template", ca->id);
    enum iot_err code = registry_template_get(reg, name->valuestring, &t, err);
    if (code == IOT_ERR_NOT_FOUND)
        code = iot_error_set(err, IOT_ERR_NOT_FOUND,
                             "The provisioning template %s of CA %s does not exist",
                             name->valuestring, ca->id);
    else if (code == IOT_OK && (t.type == NULL || strcmp(t.type, "JITP") != 0))
        code = iot_error_set(err, IOT_ERR_INVALID_REQUEST,
                             "The provisioning template %s is not of type JITP", name->valuestring);
    else if (code == IOT_OK && cfg->jitp_requires_enabled && !t.enabled)
        code = iot_error_set(err, IOT_ERR_TEMPLATE_DISABLED,
                             "The provisioning template %s is disabled", name->valuestring);
    if (code == IOT_OK && t.body == NULL)
        code = iot_error_set(err, IOT_ERR_NOT_FOUND, "The provisioning template %s has no body",
                             name->valuestring);
    if (code == IOT_OK) {
        *out = t.body;
        t.body = NULL;
    }
    registry_template_clear(&t);
    return code;
}

/* Parameters, render, apply: one atomic change in the registry, or none. */
static enum iot_err evaluate(struct registry *reg, const char *body, X509 *cert,
                             const char *cert_id, struct iot_error *err)
{
    struct template *t = NULL;
    struct template_plan *plan = NULL;
    cJSON *params = NULL;
    if (body == NULL)
        return iot_error_set(err, IOT_ERR_INTERNAL, "No template to evaluate");
    enum iot_err code = template_parse(body, strlen(body), &t, err);
    if (code == IOT_OK && jit_subject_params(cert, cert_id, &params) != IOT_OK)
        code = iot_error_set(err, IOT_ERR_NOMEM, "out of memory");
    if (code == IOT_OK)
        code = check_declared(body, params, err);
    if (code == IOT_OK)
        code = template_render(t, params, &plan, err);
    if (code == IOT_OK)
        code = template_apply(reg, plan, cert_id, err);
    template_plan_free(plan);
    cJSON_Delete(params);
    template_free(t);
    return code;
}

enum iot_err jit_provision(struct cacert_store *s, struct registry *reg,
                           const struct jit_config *cfg, const char *cert_id, struct iot_error *err)
{
    static const struct jit_config defaults = {0};
    struct registry_cert rc = {0};
    struct cacert ca = {0};
    struct cacert_error cerr = {0};
    char *body = NULL;
    X509 *cert = NULL;
    if (cfg == NULL)
        cfg = &defaults;
    enum iot_err code = registry_cert_get(reg, cert_id, &rc, err);
    if (code == IOT_OK && rc.status != CERT_STATUS_PENDING_ACTIVATION)
        code =
            iot_error_set(err, IOT_ERR_CERT_STATE, "Certificate %s is %s, not PENDING_ACTIVATION",
                          cert_id, registry_cert_status_name(rc.status));
    if (code == IOT_OK && rc.ca_id[0] == '\0')
        code = iot_error_set(err, IOT_ERR_NOT_FOUND, "Certificate %s was not registered under a CA",
                             cert_id);
    if (code == IOT_OK && (code = cacert_get(s, rc.ca_id, &ca, &cerr)) != IOT_OK)
        iot_error_set(err, code, "%s", cerr.base.message);
    if (code == IOT_OK)
        code = template_text(reg, cfg, &ca, &body, err);
    if (code == IOT_OK && (cert = pem_cert(rc.pem)) == NULL)
        code = iot_error_set(err, IOT_ERR_INTERNAL, "Certificate %s has no readable PEM", cert_id);
    if (code == IOT_OK)
        code = evaluate(reg, body, cert, cert_id, err);
    X509_free(cert);
    free(body);
    cacert_clear(&ca);
    registry_cert_clear(&rc);
    return code;
}

/* ---- RegisterCertificate / RegisterCertificateWithoutCA (§4.6) ---------------------------- */

static enum iot_err read_device(const struct jit_register_request *rq, X509 **cert,
                                struct cacert_error *err)
{
    *cert = NULL;
    if (rq->cert_pem == NULL || rq->cert_pem_len == 0)
        return cacert_fail(err, CACERT_EXC_INVALID_REQUEST, "certificatePem is required");
    if (rq->cert_pem_len > CACERT_PEM_MAX)
        return cacert_fail(err, CACERT_EXC_CERTIFICATE_VALIDATION,
                           "certificatePem is longer than %d bytes", CACERT_PEM_MAX);
    if (ca_cert_from_pem(rq->cert_pem, rq->cert_pem_len, cert, NULL) != IOT_OK) {
        ERR_clear_error();
        return cacert_fail(err, CACERT_EXC_CERTIFICATE_VALIDATION,
                           "certificatePem is not a valid PEM certificate");
    }
    if (X509_cmp_current_time(X509_get0_notAfter(*cert)) <= 0)
        return cacert_fail(err, CACERT_EXC_CERTIFICATE_VALIDATION, "The certificate has expired");
    if (X509_cmp_current_time(X509_get0_notBefore(*cert)) > 0)
        return cacert_fail(err, CACERT_EXC_CERTIFICATE_VALIDATION,
                           "The certificate is not yet valid");
    return IOT_OK;
}

/* status (or the deprecated setAsActive): only ACTIVE, INACTIVE and REVOKED may be asked for. */
static enum iot_err register_status(const struct jit_register_request *rq, enum cert_status *out,
                                    struct cacert_error *err)
{
    static const struct {
        const char *name;
        enum cert_status status;
        bool allowed;
    } statuses[] = {
        {"ACTIVE", CERT_STATUS_ACTIVE, true},
        {"INACTIVE", CERT_STATUS_INACTIVE, true},
        {"REVOKED", CERT_STATUS_REVOKED, true},
        {"PENDING_ACTIVATION", CERT_STATUS_PENDING_ACTIVATION, false},
        {"PENDING_TRANSFER", CERT_STATUS_PENDING_TRANSFER, false},
        {"REGISTER_INACTIVE", CERT_STATUS_REGISTER_INACTIVE, false},
    };
    *out = rq->set_as_active ? CERT_STATUS_ACTIVE : CERT_STATUS_INACTIVE; /* [MANREG] */
    if (rq->status == NULL)
        return IOT_OK;
    for (size_t i = 0; i < sizeof(statuses) / sizeof(statuses[0]); i++) {
        if (strcmp(rq->status, statuses[i].name) != 0)
            continue;
        if (!statuses[i].allowed)
            return cacert_fail(err, CACERT_EXC_CERTIFICATE_STATE,
                               "A certificate cannot be registered with status %s", rq->status);
        *out = statuses[i].status;
        return IOT_OK;
    }
    return cacert_fail(err, CACERT_EXC_INVALID_REQUEST,
                       "status must be ACTIVE, INACTIVE or REVOKED, not %s", rq->status);
}

/* caCertificatePem names the CA: it must be registered and have signed CERT. */
static enum iot_err named_signer(struct cacert_store *s, const struct jit_register_request *rq,
                                 X509 *cert, struct cacert *out, struct cacert_error *err)
{
    X509 *ca = NULL;
    char id[CA_ID_LEN + 1] = "";
    if (rq->ca_pem_len > CACERT_PEM_MAX ||
        ca_cert_from_pem(rq->ca_pem, rq->ca_pem_len, &ca, NULL) != IOT_OK) {
        ERR_clear_error();
        return cacert_fail(err, CACERT_EXC_CERTIFICATE_VALIDATION,
                           "caCertificatePem is not a valid PEM certificate");
    }
    bool signer = signed_by(cert, ca);
    enum iot_err code = ca_cert_id(ca, id);
    X509_free(ca);
    if (code != IOT_OK)
        return cacert_fail(err, CACERT_EXC_INTERNAL, "cannot compute the CA certificate id");
    code = cacert_get(s, id, out, err);
    if (code == IOT_ERR_NOT_FOUND)
        return cacert_fail(err, CACERT_EXC_CERTIFICATE_VALIDATION,
                           "The CA certificate %s is not registered", id);
    if (code == IOT_OK && !signer)
        code = cacert_fail(err, CACERT_EXC_CERTIFICATE_VALIDATION,
                           "The certificate is not signed by the CA certificate %s", id);
    return code;
}

/* The one registered CA that signed CERT. */
static enum iot_err only_signer(struct cacert_store *s, X509 *cert, struct cacert *out,
                                struct cacert_error *err)
{
    struct cacert *signers = NULL;
    size_t n = 0;
    enum iot_err code = find_signers(s, cert, &signers, &n, &err->base);
    if (code != IOT_OK)
        return cacert_fail(err, CACERT_EXC_INTERNAL, "%s", err->base.message);
    if (n == 0)
        code = cacert_fail(err, CACERT_EXC_CERTIFICATE_VALIDATION,
                           "The certificate is not signed by a registered CA certificate");
    else if (n > 1)
        code = cacert_fail(err, CACERT_EXC_CERTIFICATE_CONFLICT,
                           "%zu registered CA certificates share the subject and key that signed "
                           "the certificate: name one with caCertificatePem",
                           n);
    else {
        *out = signers[0];
        signers[0] = (struct cacert){0};
    }
    cacert_array_free(signers, n);
    return code;
}

static enum iot_err insert_device(struct registry *reg, X509 *cert, const char *id,
                                  enum cert_status status, const char *ca_id,
                                  struct cacert_error *err)
{
    struct registry_cert rc = {.status = status};
    snprintf(rc.id, sizeof(rc.id), "%s", id);
    snprintf(rc.ca_id, sizeof(rc.ca_id), "%s", ca_id);
    if ((rc.pem = ca_cert_to_pem(cert)) == NULL)
        return cacert_fail(err, CACERT_EXC_INTERNAL, "out of memory");
    enum iot_err code = registry_cert_insert(reg, &rc, &err->base);
    free(rc.pem);
    if (code == IOT_ERR_ALREADY_EXISTS) {
        snprintf(err->resource_id, sizeof(err->resource_id), "%s", id);
        return cacert_fail(err, CACERT_EXC_ALREADY_EXISTS,
                           "The certificate is already provisioned or registered (id %s)", id);
    }
    if (code != IOT_OK)
        return cacert_fail(err, CACERT_EXC_INTERNAL, "%s", err->base.message);
    return IOT_OK;
}

/* The checks both operations make; *cert and id set on success. */
static enum iot_err register_common(const struct jit_register_request *rq, X509 **cert,
                                    enum cert_status *status, char id[CA_ID_LEN + 1],
                                    struct cacert_error *err)
{
    enum iot_err code = read_device(rq, cert, err);
    if (code == IOT_OK)
        code = register_status(rq, status, err);
    if (code == IOT_OK && ca_cert_id(*cert, id) != IOT_OK)
        code = cacert_fail(err, CACERT_EXC_INTERNAL, "cannot compute the certificate id");
    return code;
}

enum iot_err jit_register_certificate(struct cacert_store *s, struct registry *reg,
                                      const struct jit_register_request *rq, char id[CA_ID_LEN + 1],
                                      struct cacert_error *err)
{
    struct cacert_error scratch;
    struct cacert ca = {0};
    enum cert_status status;
    X509 *cert = NULL;
    if (err == NULL)
        err = &scratch;
    *err = (struct cacert_error){0};
    enum iot_err code = register_common(rq, &cert, &status, id, err);
    if (code == IOT_OK)
        code = rq->ca_pem != NULL && rq->ca_pem_len > 0 ? named_signer(s, rq, cert, &ca, err)
                                                        : only_signer(s, cert, &ca, err);
    if (code == IOT_OK && ca.status != CACERT_STATUS_ACTIVE)
        code = cacert_fail(err, CACERT_EXC_CERTIFICATE_STATE,
                           "The CA certificate %s is INACTIVE: activate it before registering "
                           "certificates it signed",
                           ca.id);
    if (code == IOT_OK)
        code = insert_device(reg, cert, id, status, ca.id, err);
    if (code == IOT_OK && cacert_device_mode_set(s, id, ca.mode, &err->base) != IOT_OK)
        code = cacert_fail(err, CACERT_EXC_INTERNAL, "%s", err->base.message);
    if (code != IOT_OK)
        id[0] = '\0';
    cacert_clear(&ca);
    X509_free(cert);
    return code;
}

static bool self_signed(X509 *cert)
{
    return signed_by(cert, cert);
}

enum iot_err jit_register_certificate_without_ca(struct cacert_store *s, struct registry *reg,
                                                 const struct jit_register_request *rq,
                                                 char id[CA_ID_LEN + 1], struct cacert_error *err)
{
    struct cacert_error scratch;
    enum cert_status status;
    X509 *cert = NULL;
    if (err == NULL)
        err = &scratch;
    *err = (struct cacert_error){0};
    enum iot_err code = register_common(rq, &cert, &status, id, err);
    /* Trusted first: an id without its certificate is dropped by jit_trusted_pems(), a
     * certificate without its trust entry would fail the TLS handshake. */
    if (code == IOT_OK && self_signed(cert) && cacert_trust_add(s, id, &err->base) != IOT_OK)
        code = cacert_fail(err, CACERT_EXC_INTERNAL, "%s", err->base.message);
    if (code == IOT_OK)
        code = insert_device(reg, cert, id, status, "", err);
    /* §4.6: certificates registered without a CA are SNI_ONLY. */
    if (code == IOT_OK && cacert_device_mode_set(s, id, CACERT_MODE_SNI_ONLY, &err->base) != IOT_OK)
        code = cacert_fail(err, CACERT_EXC_INTERNAL, "%s", err->base.message);
    if (code != IOT_OK)
        id[0] = '\0';
    X509_free(cert);
    return code;
}

/* ---- the capath's contents ------------------------------------------------------------------ */

static bool pems_add(struct jit_pems *p, const char *pem)
{
    char **grown = realloc(p->pems, (p->n + 1) * sizeof(*grown));
    if (grown == NULL)
        return false;
    p->pems = grown;
    if ((p->pems[p->n] = strdup(pem)) == NULL)
        return false;
    p->n++;
    return true;
}

static enum iot_err add_trusted_devices(struct cacert_store *s, struct registry *reg,
                                        struct jit_pems *out, struct iot_error *err)
{
    cJSON *ids = NULL, *id;
    enum iot_err code = cacert_trust_ids(s, &ids, err);
    cJSON_ArrayForEach(id, ids)
    {
        struct registry_cert rc = {0};
        enum iot_err got = registry_cert_get(reg, id->valuestring, &rc, NULL);
        if (got == IOT_ERR_NOT_FOUND)
            code = cacert_trust_remove(s, id->valuestring, err);
        else if (got != IOT_OK)
            code = iot_error_set(err, got, "cannot read certificate %s", id->valuestring);
        else if (rc.pem != NULL && !pems_add(out, rc.pem))
            code = iot_error_set(err, IOT_ERR_NOMEM, "out of memory");
        registry_cert_clear(&rc);
        if (code != IOT_OK)
            break;
    }
    cJSON_Delete(ids);
    return code;
}

enum iot_err jit_trusted_pems(struct cacert_store *s, struct registry *reg, const char *root_pem,
                              struct jit_pems *out, struct iot_error *err)
{
    cJSON *cas = NULL, *pem;
    *out = (struct jit_pems){0};
    enum iot_err code = IOT_OK;
    if (root_pem != NULL && !pems_add(out, root_pem))
        code = iot_error_set(err, IOT_ERR_NOMEM, "out of memory");
    if (code == IOT_OK)
        code = cacert_pems(s, &cas, err);
    cJSON_ArrayForEach(pem, cas)
    {
        if (code == IOT_OK && !pems_add(out, pem->valuestring))
            code = iot_error_set(err, IOT_ERR_NOMEM, "out of memory");
    }
    cJSON_Delete(cas);
    if (code == IOT_OK)
        code = add_trusted_devices(s, reg, out, err);
    if (code != IOT_OK)
        jit_pems_clear(out);
    return code;
}

/* A root CA file larger than this is not one (the directory's own cap would refuse it later). */
#define ROOT_PEM_MAX 65536

static char *read_small_file(const char *path)
{
    FILE *f = path ? fopen(path, "r") : NULL;
    if (f == NULL)
        return NULL;
    char *buf = malloc(ROOT_PEM_MAX + 1);
    size_t n = buf ? fread(buf, 1, ROOT_PEM_MAX, f) : 0;
    fclose(f);
    if (buf != NULL)
        buf[n] = '\0';
    return buf;
}

static pthread_mutex_t capath_lock = PTHREAD_MUTEX_INITIALIZER;

enum iot_err jit_sync_capath(struct cacert_store *s, struct registry *reg,
                             const char *root_pem_path, const char *dir, struct iot_error *err)
{
    struct jit_pems pems = {0};
    char *root = read_small_file(root_pem_path);
    pthread_mutex_lock(&capath_lock);
    enum iot_err code = jit_trusted_pems(s, reg, root, &pems, err);
    if (code == IOT_OK)
        code = capath_sync(dir, (const char *const *)pems.pems, pems.n, err);
    pthread_mutex_unlock(&capath_lock);
    jit_pems_clear(&pems);
    free(root);
    return code;
}
