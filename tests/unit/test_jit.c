/* Unit tests for emulator/cacert.c and emulator/jit.c (shared/spec/provisioning.md §3, §4):
 * the registration code, RegisterCACertificate's refusals and what it stores, the CA
 * life cycle, the CONNECT decisions of JITR and JITP with the exact registered event, JITP
 * evaluation from the certificate subject, RegisterCertificate(WithoutCA) and the capath's
 * contents. Every certificate is made here with OpenSSL; the registry and the store are in
 * memory (one file-backed case checks persistence). Negative cases come first in each group. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "capath.h"
#include "check.h"
#include "jit.h"
#include "template.h"

#define ACCOUNT "111122223333"
#define NOW_MS 1700000000123LL
#define DAY 86400L

static struct registry *reg;
static struct cacert_store *store;
static EVP_PKEY *ca_key, *ca2_key, *dev_key, *other_key;

static bool contains(const char *haystack, const char *needle)
{
    bool ok = haystack != NULL && strstr(haystack, needle) != NULL;
    if (!ok)
        fprintf(stderr, "  \"%s\" lacks \"%s\"\n", haystack ? haystack : "(null)", needle);
    return ok;
}

static void fresh(void)
{
    registry_close(reg);
    cacert_store_close(store);
    reg = NULL;
    store = NULL;
    CHECK_INT(registry_open(":memory:", &reg, NULL), IOT_OK);
    CHECK_INT(cacert_store_open(":memory:", &store, NULL), IOT_OK);
}

static EVP_PKEY *key_new(void)
{
    EVP_PKEY *k = NULL;
    CHECK_INT(ca_generate_ec("P-256", &k, NULL), IOT_OK);
    return k;
}

/* ---- certificates ------------------------------------------------------------------------ */

struct spec {
    const char *subject; /* "/C=DE/CN=x" */
    EVP_PKEY *key;       /* the subject's key */
    X509 *issuer;        /* NULL: self-signed */
    EVP_PKEY *issuer_key;
    bool ca;         /* basicConstraints CA:TRUE (else CA:FALSE) */
    bool no_basic;   /* no basicConstraints at all */
    long not_before; /* seconds from now */
    long not_after;  /* seconds from now; 0 = one year */
    long serial;
};

static X509_NAME *name_of(const char *subject)
{
    X509_NAME *name = X509_NAME_new();
    char *copy = strdup(subject), *save = NULL;
    for (char *part = strtok_r(copy, "/", &save); part; part = strtok_r(NULL, "/", &save)) {
        char *eq = strchr(part, '=');
        if (eq == NULL)
            continue;
        *eq = '\0';
        CHECK(X509_NAME_add_entry_by_txt(name, part, MBSTRING_UTF8, (unsigned char *)eq + 1, -1, -1,
                                         0) == 1);
    }
    free(copy);
    return name;
}

static void add_ext(X509 *cert, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, issuer ? issuer : cert, cert, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    CHECK(ext != NULL && X509_add_ext(cert, ext, -1) == 1);
    X509_EXTENSION_free(ext);
}

static X509 *make(const struct spec *s)
{
    static long serial = 1000;
    X509 *c = X509_new();
    X509_NAME *name = name_of(s->subject);
    X509_set_version(c, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(c), s->serial ? s->serial : serial++);
    X509_set_subject_name(c, name);
    X509_set_issuer_name(c, s->issuer ? X509_get_subject_name(s->issuer) : name);
    X509_gmtime_adj(X509_getm_notBefore(c), s->not_before);
    X509_gmtime_adj(X509_getm_notAfter(c), s->not_after ? s->not_after : 365 * DAY);
    X509_set_pubkey(c, s->key);
    if (!s->no_basic)
        add_ext(c, s->issuer, NID_basic_constraints, s->ca ? "critical,CA:TRUE" : "CA:FALSE");
    if (s->ca)
        add_ext(c, s->issuer, NID_key_usage, "critical,keyCertSign,cRLSign");
    add_ext(c, s->issuer, NID_subject_key_identifier, "hash");
    CHECK(X509_sign(c, s->issuer_key ? s->issuer_key : s->key, EVP_sha256()) > 0);
    X509_NAME_free(name);
    return c;
}

static X509 *make_ca(const char *subject, EVP_PKEY *key)
{
    return make(&(struct spec){.subject = subject, .key = key, .ca = true});
}

static X509 *make_device(const char *subject, X509 *ca, EVP_PKEY *cakey)
{
    return make(
        &(struct spec){.subject = subject, .key = dev_key, .issuer = ca, .issuer_key = cakey});
}

static void id_of(X509 *c, char out[CA_ID_LEN + 1])
{
    CHECK_INT(ca_cert_id(c, out), IOT_OK);
}

/* ---- helpers over the API ----------------------------------------------------------------- */

static void check_refusal(enum iot_err rc, const struct cacert_error *e, enum cacert_exception x,
                          const char *message_part)
{
    CHECK(rc != IOT_OK);
    CHECK_INT(rc, e->base.code);
    CHECK_INT(e->exception, x);
    if (e->exception != x)
        fprintf(stderr, "  got %s: %s\n", cacert_exception_name(e->exception), e->base.message);
    CHECK(contains(e->base.message, message_part));
}

static int ca_count(void)
{
    cJSON *items = NULL;
    char *next = NULL;
    CHECK_INT(cacert_list(store, NULL, NULL, 0, false, &items, &next, NULL), IOT_OK);
    int n = cJSON_GetArraySize(items);
    cJSON_Delete(items);
    free(next);
    return n;
}

static void code_of_account(char out[CACERT_CODE_LEN + 1])
{
    CHECK_INT(cacert_registration_code(store, out, NULL), IOT_OK);
}

/* A verification certificate for CA: subject CN=CN, signed by SIGNER_KEY. */
static char *verification_pem(X509 *ca, EVP_PKEY *signer_key, const char *cn, long not_after)
{
    char subject[128];
    snprintf(subject, sizeof(subject), "/CN=%s", cn);
    X509 *v = make(&(struct spec){.subject = subject,
                                  .key = other_key,
                                  .issuer = ca,
                                  .issuer_key = signer_key,
                                  .not_after = not_after});
    char *pem = ca_cert_to_pem(v);
    X509_free(v);
    return pem;
}

/* Registers CA in DEFAULT mode with a valid verification certificate. */
static enum iot_err register_ca_with(X509 *ca, EVP_PKEY *key, bool active, bool auto_reg,
                                     const cJSON *config, char id[CA_ID_LEN + 1],
                                     struct cacert_error *e)
{
    char code[CACERT_CODE_LEN + 1];
    code_of_account(code);
    char *ca_pem = ca_cert_to_pem(ca), *v_pem = verification_pem(ca, key, code, 0);
    struct cacert_request rq = {.ca_pem = ca_pem,
                                .ca_pem_len = strlen(ca_pem),
                                .verification_pem = v_pem,
                                .verification_pem_len = strlen(v_pem),
                                .registration_config = config,
                                .set_as_active = active,
                                .allow_auto_registration = auto_reg};
    enum iot_err rc = cacert_register(store, reg, &rq, id, e);
    free(ca_pem);
    free(v_pem);
    return rc;
}

static void register_ca(X509 *ca, EVP_PKEY *key, bool active, bool auto_reg, const cJSON *config,
                        char id[CA_ID_LEN + 1])
{
    struct cacert_error e = {0};
    enum iot_err rc = register_ca_with(ca, key, active, auto_reg, config, id, &e);
    CHECK_INT(rc, IOT_OK);
    if (rc != IOT_OK)
        fprintf(stderr, "  register_ca: %s\n", e.base.message);
}

static enum iot_err register_sni(const char *ca_pem, const char *v_pem, const char *mode,
                                 char id[CA_ID_LEN + 1], struct cacert_error *e)
{
    struct cacert_request rq = {.ca_pem = ca_pem,
                                .ca_pem_len = ca_pem ? strlen(ca_pem) : 0,
                                .verification_pem = v_pem,
                                .verification_pem_len = v_pem ? strlen(v_pem) : 0,
                                .certificate_mode = mode};
    return cacert_register(store, reg, &rq, id, e);
}

static enum cert_status status_of(const char *id)
{
    enum cert_status s = CERT_STATUS_REGISTER_INACTIVE;
    CHECK_INT(registry_cert_status(reg, id, &s), IOT_OK);
    return s;
}

static bool cert_known(const char *id)
{
    enum cert_status s;
    return registry_cert_status(reg, id, &s) != IOT_ERR_NOT_FOUND;
}

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *text = malloc((size_t)n + 1);
    size_t got = fread(text, 1, (size_t)n, f);
    text[got] = '\0';
    fclose(f);
    return text;
}

/* The templateBody of fixtures/jitp/jitp-default.json, as text. */
static char *fixture_body(void)
{
    char *text = read_file(FIXTURES_DIR "/jitp/jitp-default.json");
    cJSON *doc = cJSON_Parse(text);
    char *body = cJSON_PrintUnformatted(cJSON_GetObjectItemCaseSensitive(doc, "templateBody"));
    CHECK(body != NULL);
    cJSON_Delete(doc);
    free(text);
    return body;
}

static cJSON *config_with_body(const char *body)
{
    cJSON *c = cJSON_CreateObject();
    cJSON_AddStringToObject(c, "templateBody", body);
    cJSON_AddStringToObject(c, "roleArn", "arn:aws:iam::111122223333:role/JITPRole");
    return c;
}

static void put_template(const char *name, const char *body, const char *type, bool enabled)
{
    struct registry_template t = {
        .name = strdup(name), .body = strdup(body), .type = strdup(type), .enabled = enabled};
    CHECK_INT(registry_template_put(reg, &t, NULL), IOT_OK);
    registry_template_clear(&t);
}

/* ---- registration code (§4.1) -------------------------------------------------------------- */

static void test_registration_code(void)
{
    struct {
        char before[8];
        char code[CACERT_CODE_LEN + 1];
        char after[8];
    } g1, g2;
    memset(&g1, 0x5a, sizeof(g1));
    memset(&g2, 0x5a, sizeof(g2));
    fresh();
    CHECK_INT(cacert_registration_code_delete(store, NULL), IOT_ERR_NOT_FOUND); /* none yet */
    CHECK_INT(cacert_registration_code(store, g1.code, NULL), IOT_OK);
    CHECK_INT(strlen(g1.code), 64);
    CHECK(strspn(g1.code, "0123456789abcdef") == 64);
    for (size_t i = 0; i < 8; i++)
        CHECK(g1.before[i] == 0x5a && g1.after[i] == 0x5a);
    CHECK_INT(cacert_registration_code(store, g2.code, NULL), IOT_OK);
    CHECK_STR(g2.code, g1.code); /* stable */
    CHECK_INT(cacert_registration_code_delete(store, NULL), IOT_OK);
    CHECK_INT(cacert_registration_code_delete(store, NULL), IOT_ERR_NOT_FOUND);
    CHECK_INT(cacert_registration_code(store, g2.code, NULL), IOT_OK);
    CHECK(strcmp(g2.code, g1.code) != 0); /* a new one after deletion */
}

/* The store refuses a file the registry did not make, persists, and registry_reset() empties
 * it when they share the file. */
static void test_store_file(void)
{
    char dir[] = "/tmp/test_jit.XXXXXX", path[128], foreign[128], code[65], again[65], id[65];
    struct cacert_store *s = NULL;
    struct registry *r = NULL;
    struct iot_error err = {0};
    CHECK(mkdtemp(dir) != NULL);
    snprintf(path, sizeof(path), "%s/registry.db", dir);
    snprintf(foreign, sizeof(foreign), "%s/foreign.db", dir);
    CHECK_INT(cacert_store_open(foreign, &s, &err), IOT_ERR_IO); /* does not exist */
    CHECK(s == NULL);
    FILE *f = fopen(foreign, "w");
    fclose(f);
    CHECK_INT(cacert_store_open(foreign, &s, &err), IOT_ERR_IO); /* user_version 0 */
    CHECK(contains(err.message, "open the registry first"));
    CHECK_INT(registry_open(path, &r, NULL), IOT_OK);
    CHECK_INT(cacert_store_open(path, &s, NULL), IOT_OK);
    CHECK_INT(cacert_registration_code(s, code, NULL), IOT_OK);
    X509 *ca = make_ca("/CN=Persisted CA", ca_key);
    char *pem = ca_cert_to_pem(ca);
    struct cacert_request rq = {
        .ca_pem = pem, .ca_pem_len = strlen(pem), .certificate_mode = "SNI_ONLY"};
    CHECK_INT(cacert_register(s, r, &rq, id, NULL), IOT_OK);
    cacert_store_close(s);
    registry_close(r);
    /* reopened: the same code and CA; the registry still opens its file */
    CHECK_INT(registry_open(path, &r, NULL), IOT_OK);
    CHECK_INT(cacert_store_open(path, &s, NULL), IOT_OK);
    CHECK_INT(cacert_registration_code(s, again, NULL), IOT_OK);
    CHECK_STR(again, code);
    struct cacert c = {0};
    CHECK_INT(cacert_get(s, id, &c, NULL), IOT_OK);
    cacert_clear(&c);
    CHECK_INT(registry_reset(r, NULL), IOT_OK);
    CHECK_INT(cacert_get(s, id, &c, NULL), IOT_ERR_NOT_FOUND);
    CHECK_INT(cacert_registration_code(s, again, NULL), IOT_OK);
    CHECK(strcmp(again, code) != 0);
    cacert_store_close(s);
    registry_close(r);
    X509_free(ca);
    free(pem);
    char cmd[160];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    CHECK_INT(system(cmd), 0);
}

/* ---- RegisterCACertificate: refusals (§4.2) ----------------------------------------------- */

static void test_register_ca_refusals_certificate(void)
{
    struct cacert_error e;
    char id[65], code[65];
    fresh();
    code_of_account(code);
    X509 *leaf = make(&(struct spec){.subject = "/CN=Not a CA", .key = ca_key});
    X509 *v1 =
        make(&(struct spec){.subject = "/CN=No constraints", .key = ca_key, .no_basic = true});
    X509 *expired = make(&(struct spec){.subject = "/CN=Expired CA",
                                        .key = ca_key,
                                        .ca = true,
                                        .not_before = -30 * DAY,
                                        .not_after = -DAY});
    X509 *future = make(&(struct spec){.subject = "/CN=Future CA",
                                       .key = ca_key,
                                       .ca = true,
                                       .not_before = 10 * DAY,
                                       .not_after = 20 * DAY});
    char *leaf_pem = ca_cert_to_pem(leaf), *v1_pem = ca_cert_to_pem(v1);
    char *expired_pem = ca_cert_to_pem(expired), *future_pem = ca_cert_to_pem(future);
    char *big = malloc(CACERT_PEM_MAX + 2);
    memset(big, 'A', CACERT_PEM_MAX + 1);
    big[CACERT_PEM_MAX + 1] = '\0';

    check_refusal(register_sni(leaf_pem, NULL, "BOGUS", id, &e), &e, CACERT_EXC_INVALID_REQUEST,
                  "certificateMode");
    CHECK_STR(id, "");
    check_refusal(register_sni(NULL, NULL, "SNI_ONLY", id, &e), &e,
                  CACERT_EXC_CERTIFICATE_VALIDATION, "empty");
    check_refusal(register_sni("not a pem", NULL, "SNI_ONLY", id, &e), &e,
                  CACERT_EXC_CERTIFICATE_VALIDATION, "not a valid PEM");
    check_refusal(register_sni(big, NULL, "SNI_ONLY", id, &e), &e,
                  CACERT_EXC_CERTIFICATE_VALIDATION, "longer than");
    check_refusal(register_sni(leaf_pem, NULL, "SNI_ONLY", id, &e), &e,
                  CACERT_EXC_CERTIFICATE_VALIDATION, "not a CA");
    check_refusal(register_sni(v1_pem, NULL, "SNI_ONLY", id, &e), &e,
                  CACERT_EXC_CERTIFICATE_VALIDATION, "not a CA");
    check_refusal(register_sni(expired_pem, NULL, "SNI_ONLY", id, &e), &e,
                  CACERT_EXC_CERTIFICATE_VALIDATION, "expired");
    check_refusal(register_sni(future_pem, NULL, "SNI_ONLY", id, &e), &e,
                  CACERT_EXC_CERTIFICATE_VALIDATION, "not yet valid");
    CHECK_STR(cacert_exception_name(CACERT_EXC_CERTIFICATE_VALIDATION),
              "CertificateValidationException");
    CHECK_INT(cacert_exception_status(CACERT_EXC_CERTIFICATE_VALIDATION), 400);
    CHECK_INT(ca_count(), 0);
    X509_free(leaf);
    X509_free(v1);
    X509_free(expired);
    X509_free(future);
    free(leaf_pem);
    free(v1_pem);
    free(expired_pem);
    free(future_pem);
    free(big);
}

static void test_register_ca_refusals_verification(void)
{
    struct cacert_error e;
    char id[65], code[65];
    fresh();
    code_of_account(code);
    X509 *ca = make_ca("/O=Acme/CN=Acme Root", ca_key);
    char *ca_pem = ca_cert_to_pem(ca);
    char *wrong_key = verification_pem(ca, other_key, code, 0);
    char *wrong_cn = verification_pem(
        ca, ca_key, "0000000000000000000000000000000000000000000000000000000000000000", 0);
    char *expired = NULL;
    {
        X509 *v = make(&(struct spec){.subject = "/CN=x",
                                      .key = other_key,
                                      .issuer = ca,
                                      .issuer_key = ca_key,
                                      .not_before = -10 * DAY,
                                      .not_after = -DAY});
        expired = ca_cert_to_pem(v);
        X509_free(v);
    }
    char *good = verification_pem(ca, ca_key, code, 0);

    check_refusal(register_sni(ca_pem, NULL, NULL, id, &e), &e, CACERT_EXC_INVALID_REQUEST,
                  "verification certificate is required");
    check_refusal(register_sni(ca_pem, NULL, "DEFAULT", id, &e), &e, CACERT_EXC_INVALID_REQUEST,
                  "required");
    check_refusal(register_sni(ca_pem, "garbage", NULL, id, &e), &e,
                  CACERT_EXC_CERTIFICATE_VALIDATION, "verification certificate is not a valid PEM");
    check_refusal(register_sni(ca_pem, expired, NULL, id, &e), &e,
                  CACERT_EXC_CERTIFICATE_VALIDATION, "verification certificate has expired");
    check_refusal(register_sni(ca_pem, wrong_key, NULL, id, &e), &e,
                  CACERT_EXC_CERTIFICATE_VALIDATION, "not signed by the CA");
    check_refusal(register_sni(ca_pem, wrong_cn, NULL, id, &e), &e, CACERT_EXC_REGISTRATION_CODE,
                  "is not the registration code");
    CHECK_STR(cacert_exception_name(e.exception), "RegistrationCodeValidationException");
    CHECK_INT(cacert_exception_status(e.exception), 400);
    check_refusal(register_sni(ca_pem, good, "SNI_ONLY", id, &e), &e, CACERT_EXC_INVALID_REQUEST,
                  "must not be given in SNI_ONLY");
    /* the code the verification certificate carries was deleted */
    CHECK_INT(cacert_registration_code_delete(store, NULL), IOT_OK);
    check_refusal(register_sni(ca_pem, good, NULL, id, &e), &e, CACERT_EXC_REGISTRATION_CODE,
                  "no registration code");
    char fresh_code[65];
    code_of_account(fresh_code);
    check_refusal(register_sni(ca_pem, good, NULL, id, &e), &e, CACERT_EXC_REGISTRATION_CODE,
                  code); /* the message names the CN it saw */
    CHECK_INT(ca_count(), 0);
    X509_free(ca);
    free(ca_pem);
    free(wrong_key);
    free(wrong_cn);
    free(expired);
    free(good);
}

static void test_register_ca_refusals_config(void)
{
    struct cacert_error e;
    char id[65];
    fresh();
    X509 *ca = make_ca("/CN=Config CA", ca_key);
    static const struct {
        const char *json;
        enum cacert_exception x;
        const char *part;
    } cases[] = {
        {"[]", CACERT_EXC_INVALID_REQUEST, "must be an object"},
        {"{\"templateBody\":5}", CACERT_EXC_INVALID_REQUEST, "must be strings"},
        {"{\"templateBody\":\"not json\"}", CACERT_EXC_INVALID_REQUEST, "not a valid template"},
        {"{\"templateBody\":\"{\\\"Resources\\\":{\\\"x\\\":{\\\"Type\\\":\\\"AWS::S3::Bucket\\\"}}"
         "}\"}",
         CACERT_EXC_INVALID_REQUEST, "not a valid template"},
        {"{\"templateBody\":\"{}\",\"templateName\":\"jitp\"}", CACERT_EXC_INVALID_REQUEST,
         "not both"},
        {"{\"roleArn\":\"arn:short\"}", CACERT_EXC_INVALID_REQUEST, "roleArn"},
        {"{\"templateName\":\"bad name!\"}", CACERT_EXC_INVALID_REQUEST,
         "not a valid template name"},
        {"{\"templateName\":\"absent\"}", CACERT_EXC_NOT_FOUND, "does not exist"},
        {"{\"templateName\":\"fleet\"}", CACERT_EXC_INVALID_REQUEST, "not JITP"},
    };
    put_template("fleet", "{}", "FLEET_PROVISIONING", true);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        cJSON *config = cJSON_Parse(cases[i].json);
        CHECK(config != NULL);
        check_refusal(register_ca_with(ca, ca_key, true, true, config, id, &e), &e, cases[i].x,
                      cases[i].part);
        cJSON_Delete(config);
    }
    CHECK_STR(cacert_exception_name(CACERT_EXC_NOT_FOUND), "ResourceNotFoundException");
    CHECK_INT(cacert_exception_status(CACERT_EXC_NOT_FOUND), 404);
    CHECK_INT(ca_count(), 0);
    X509_free(ca);
}

/* ---- RegisterCACertificate: what is stored ------------------------------------------------- */

static void test_register_ca_stored(void)
{
    struct cacert_error e;
    struct {
        char before[8];
        char id[CA_ID_LEN + 1];
        char after[8];
    } g;
    char expected[65], again[65];
    memset(&g, 0x5a, sizeof(g));
    fresh();
    X509 *ca = make_ca("/C=US/O=Acme/CN=Acme Devices CA", ca_key);
    id_of(ca, expected);
    CHECK_INT(register_ca_with(ca, ca_key, false, false, NULL, g.id, &e), IOT_OK);
    CHECK_STR(g.id, expected); /* SHA-256 of the DER (§4.7) */
    for (size_t i = 0; i < 8; i++)
        CHECK(g.before[i] == 0x5a && g.after[i] == 0x5a);
    struct cacert c = {0};
    CHECK_INT(cacert_get(store, g.id, &c, NULL), IOT_OK);
    CHECK_STR(cacert_status_name(c.status), "INACTIVE");
    CHECK_STR(cacert_auto_name(c.auto_registration), "DISABLE");
    CHECK_STR(cacert_mode_name(c.mode), "DEFAULT");
    CHECK(c.registration_config == NULL);
    CHECK_INT(c.customer_version, 1);
    CHECK_INT(strlen(c.generation_id), 36);
    CHECK(c.created > 0 && c.created == c.modified);
    CHECK(c.not_after - c.not_before >= 365 * DAY - 2 &&
          c.not_after - c.not_before <= 365 * DAY + 2);
    X509 *back = NULL;
    CHECK_INT(ca_cert_from_pem(c.pem, strlen(c.pem), &back, NULL), IOT_OK);
    CHECK(back != NULL && X509_cmp(back, ca) == 0);
    X509_free(back);
    cacert_clear(&c);

    /* the same CA again, whatever the flags */
    check_refusal(register_ca_with(ca, ca_key, true, true, NULL, again, &e), &e,
                  CACERT_EXC_ALREADY_EXISTS, "already registered");
    CHECK_STR(e.resource_id, expected);
    CHECK_STR(cacert_exception_name(e.exception), "ResourceAlreadyExistsException");
    CHECK_INT(cacert_exception_status(e.exception), 409);

    /* SNI_ONLY: no proof of possession, no registration code needed */
    CHECK_INT(cacert_registration_code_delete(store, NULL), IOT_OK);
    X509 *sni = make_ca("/CN=Shared CA", ca2_key);
    char *sni_pem = ca_cert_to_pem(sni);
    CHECK_INT(register_sni(sni_pem, NULL, "SNI_ONLY", again, &e), IOT_OK);
    CHECK_INT(cacert_get(store, again, &c, NULL), IOT_OK);
    CHECK_STR(cacert_mode_name(c.mode), "SNI_ONLY");
    cacert_clear(&c);

    /* flags and a registrationConfig with an unknown member, which is not kept */
    X509 *jitp = make_ca("/CN=JITP CA", other_key);
    cJSON *config = cJSON_Parse("{\"templateBody\":\"{}\",\"roleArn\":"
                                "\"arn:aws:iam::111122223333:role/JITPRole\",\"extra\":1}");
    register_ca(jitp, other_key, true, true, config, again);
    CHECK_INT(cacert_get(store, again, &c, NULL), IOT_OK);
    CHECK_STR(cacert_status_name(c.status), "ACTIVE");
    CHECK_STR(cacert_auto_name(c.auto_registration), "ENABLE");
    char *stored = cJSON_PrintUnformatted(c.registration_config);
    CHECK_STR(stored, "{\"templateBody\":\"{}\",\"roleArn\":\"arn:aws:iam::111122223333:role/"
                      "JITPRole\"}");
    free(stored);
    cacert_clear(&c);
    cJSON_Delete(config);
    CHECK_INT(ca_count(), 3);
    X509_free(ca);
    X509_free(sni);
    X509_free(jitp);
    free(sni_pem);
}

/* §4.2: at most ten CA certificates with one subject. */
static void test_register_ca_subject_limit(void)
{
    struct cacert_error e;
    char id[65];
    fresh();
    for (int i = 0; i < CACERT_SAME_SUBJECT_MAX; i++) {
        EVP_PKEY *k = key_new();
        X509 *ca = make_ca("/O=Same/CN=Same Subject", k);
        register_ca(ca, k, false, false, NULL, id);
        X509_free(ca);
        EVP_PKEY_free(k);
    }
    EVP_PKEY *k = key_new();
    X509 *eleventh = make_ca("/O=Same/CN=Same Subject", k);
    check_refusal(register_ca_with(eleventh, k, false, false, NULL, id, &e), &e,
                  CACERT_EXC_LIMIT_EXCEEDED, "10 CA certificates");
    CHECK_STR(cacert_exception_name(e.exception), "LimitExceededException");
    CHECK_INT(cacert_exception_status(e.exception), 410);
    X509 *other = make_ca("/O=Same/CN=Other Subject", k);
    register_ca(other, k, false, false, NULL, id); /* another subject is fine */
    CHECK_INT(ca_count(), CACERT_SAME_SUBJECT_MAX + 1);
    X509_free(eleventh);
    X509_free(other);
    EVP_PKEY_free(k);
}

/* ---- Update / Describe / Delete / List (§4.3) -------------------------------------------- */

static void test_ca_life_cycle(void)
{
    struct cacert_error e;
    char id[65];
    struct cacert c = {0};
    fresh();
    X509 *ca = make_ca("/CN=Cycle CA", ca_key);
    register_ca(ca, ca_key, false, false, NULL, id);
    check_refusal(
        cacert_update(store, reg, "ffff", &(struct cacert_update){.new_status = "ACTIVE"}, &e), &e,
        CACERT_EXC_NOT_FOUND, "does not exist");
    check_refusal(cacert_update(store, reg, id,
                                &(struct cacert_update){.new_status = "REGISTER_INACTIVE"}, &e),
                  &e, CACERT_EXC_INVALID_REQUEST, "newStatus");
    check_refusal(
        cacert_update(store, reg, id, &(struct cacert_update){.new_status = "active"}, &e), &e,
        CACERT_EXC_INVALID_REQUEST, "newStatus");
    check_refusal(
        cacert_update(store, reg, id, &(struct cacert_update){.new_auto_registration = "YES"}, &e),
        &e, CACERT_EXC_INVALID_REQUEST, "newAutoRegistrationStatus");
    cJSON *config = cJSON_Parse("{\"templateBody\":\"{}\"}");
    check_refusal(cacert_update(store, reg, id,
                                &(struct cacert_update){.registration_config = config,
                                                        .remove_auto_registration = true},
                                &e),
                  &e, CACERT_EXC_INVALID_REQUEST, "removeAutoRegistration");
    CHECK_INT(cacert_get(store, id, &c, NULL), IOT_OK);
    CHECK_INT(c.customer_version, 1); /* refusals changed nothing */
    char generation[37];
    snprintf(generation, sizeof(generation), "%s", c.generation_id);
    cacert_clear(&c);

    CHECK_INT(cacert_update(store, reg, id,
                            &(struct cacert_update){.new_status = "ACTIVE",
                                                    .new_auto_registration = "ENABLE",
                                                    .registration_config = config},
                            &e),
              IOT_OK);
    CHECK_INT(cacert_get(store, id, &c, NULL), IOT_OK);
    CHECK_STR(cacert_status_name(c.status), "ACTIVE");
    CHECK_STR(cacert_auto_name(c.auto_registration), "ENABLE");
    CHECK(c.registration_config != NULL);
    CHECK_INT(c.customer_version, 2);
    CHECK(strcmp(c.generation_id, generation) != 0);
    cacert_clear(&c);
    /* removeAutoRegistration: JITP -> JITR, auto-registration stays on */
    CHECK_INT(cacert_update(store, reg, id,
                            &(struct cacert_update){.remove_auto_registration = true}, &e),
              IOT_OK);
    CHECK_INT(cacert_get(store, id, &c, NULL), IOT_OK);
    CHECK(c.registration_config == NULL);
    CHECK_STR(cacert_auto_name(c.auto_registration), "ENABLE");
    CHECK_INT(c.customer_version, 3);
    cacert_clear(&c);

    /* delete: not while ACTIVE */
    check_refusal(cacert_delete(store, id, &e), &e, CACERT_EXC_CERTIFICATE_STATE,
                  "must be deactivated");
    CHECK_STR(cacert_exception_name(e.exception), "CertificateStateException");
    CHECK_INT(cacert_exception_status(e.exception), 406);
    CHECK_INT(cacert_update(store, reg, id, &(struct cacert_update){.new_status = "INACTIVE"}, &e),
              IOT_OK);
    CHECK_INT(cacert_delete(store, id, &e), IOT_OK);
    check_refusal(cacert_get(store, id, &c, &e), &e, CACERT_EXC_NOT_FOUND, id);
    check_refusal(cacert_delete(store, id, &e), &e, CACERT_EXC_NOT_FOUND, "does not exist");
    cJSON_Delete(config);
    X509_free(ca);
}

static void test_ca_list(void)
{
    char ids[5][65], *next = NULL;
    cJSON *page = NULL;
    fresh();
    put_template("jitp-one", "{}", "JITP", false);
    cJSON *by_name = cJSON_Parse("{\"templateName\":\"jitp-one\"}");
    for (int i = 0; i < 5; i++) {
        char subject[32];
        snprintf(subject, sizeof(subject), "/CN=List CA %d", i);
        EVP_PKEY *k = key_new();
        X509 *ca = make_ca(subject, k);
        register_ca(ca, k, false, false, i % 2 ? by_name : NULL, ids[i]);
        X509_free(ca);
        EVP_PKEY_free(k);
    }
    /* pages of two, ascending: all five exactly once */
    int seen = 0;
    char *after = NULL;
    do {
        CHECK_INT(cacert_list(store, NULL, after, 2, false, &page, &next, NULL), IOT_OK);
        CHECK(cJSON_GetArraySize(page) <= 2);
        const cJSON *item;
        cJSON_ArrayForEach(item, page)
        {
            const char *id = cJSON_GetObjectItem(item, "id")->valuestring;
            for (int i = 0; i < 5; i++)
                seen += strcmp(ids[i], id) == 0;
            CHECK_STR(cJSON_GetObjectItem(item, "status")->valuestring, "INACTIVE");
            CHECK(cJSON_IsNumber(cJSON_GetObjectItem(item, "created")));
        }
        cJSON_Delete(page);
        free(after);
        after = next;
    } while (after != NULL);
    CHECK_INT(seen, 5);
    /* the templateName filter */
    CHECK_INT(cacert_list(store, "jitp-one", NULL, 0, false, &page, &next, NULL), IOT_OK);
    CHECK_INT(cJSON_GetArraySize(page), 2);
    CHECK(next == NULL);
    cJSON_Delete(page);
    /* descending reverses the ascending order */
    cJSON *asc = NULL, *desc = NULL;
    CHECK_INT(cacert_list(store, NULL, NULL, 0, false, &asc, &next, NULL), IOT_OK);
    CHECK_INT(cacert_list(store, NULL, NULL, 0, true, &desc, &next, NULL), IOT_OK);
    for (int i = 0; i < 5; i++)
        CHECK_STR(cJSON_GetObjectItem(cJSON_GetArrayItem(asc, i), "id")->valuestring,
                  cJSON_GetObjectItem(cJSON_GetArrayItem(desc, 4 - i), "id")->valuestring);
    cJSON_Delete(asc);
    cJSON_Delete(desc);
    /* any cursor is accepted */
    CHECK_INT(cacert_list(store, NULL, "nonsense", 0, false, &page, &next, NULL), IOT_OK);
    CHECK_INT(cJSON_GetArraySize(page), 5);
    cJSON_Delete(page);
    cJSON_Delete(by_name);
}

/* ---- the registered event (§4.4) ----------------------------------------------------------- */

static void test_event_payload(void)
{
    struct jit_event ev;
    const char *cert = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90";
    const char *ca = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";
    struct jit_config cfg = {.account_id = ACCOUNT};
    CHECK_INT(jit_registered_event(&cfg, cert, ca, 1577248409400LL, 1552061705277LL, &ev), IOT_OK);
    CHECK_STR(ev.topic, "$aws/events/certificates/registered/"
                        "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0");
    CHECK_STR(
        ev.payload,
        "{\"certificateId\":\"a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90\","
        "\"caCertificateId\":\"0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0\","
        "\"timestamp\":1577248409400,\"certificateStatus\":\"PENDING_ACTIVATION\","
        "\"awsAccountId\":\"111122223333\",\"certificateRegistrationTimestamp\":"
        "\"1552061705277\"}");
    CHECK_INT(ev.payload_len, strlen(ev.payload));
    jit_event_clear(&ev);
    /* the measured-null option and the default account */
    cfg = (struct jit_config){.registration_timestamp_null = true};
    CHECK_INT(jit_registered_event(&cfg, cert, ca, 5, 4, &ev), IOT_OK);
    CHECK(contains(ev.payload, "\"awsAccountId\":\"123456789012\","
                               "\"certificateRegistrationTimestamp\":null}"));
    jit_event_clear(&ev);
    CHECK_INT(jit_registered_event(NULL, cert, ca, 5, 4, &ev), IOT_OK);
    CHECK(contains(ev.payload, "\"timestamp\":5,"));
    CHECK(contains(ev.payload, "\"certificateRegistrationTimestamp\":\"4\"}"));
    jit_event_clear(&ev);
    jit_event_clear(NULL);
}

/* ---- JITR at CONNECT (§4.4, §4.5, broker §3.5) --------------------------------------------- */

static void connect_as(X509 *cert, STACK_OF(X509) * chain, const struct jit_config *cfg,
                       long long now_ms, struct jit_decision *d)
{
    struct iot_error err = {0};
    enum iot_err rc = jit_connect(store, reg, cfg, cert, chain, now_ms, d, &err);
    CHECK_INT(rc, IOT_OK);
    if (rc != IOT_OK)
        fprintf(stderr, "  jit_connect: %s\n", err.message);
}

static void expect(const struct jit_decision *d, enum jit_action a, bool event)
{
    CHECK_STR(jit_action_name(d->action), jit_action_name(a));
    CHECK_INT(d->event.topic != NULL, event);
    if (d->action != a)
        fprintf(stderr, "  reason: %s\n", d->reason);
}

static void test_jitr_refusals(void)
{
    struct jit_decision d;
    struct jit_config cfg = {.account_id = ACCOUNT};
    char active_id[65], inactive_id[65], disabled_id[65], dev_id[65];
    fresh();
    X509 *active = make_ca("/CN=Active CA", ca_key);
    X509 *inactive = make_ca("/CN=Inactive CA", ca2_key);
    X509 *disabled = make_ca("/CN=Disabled CA", other_key);
    register_ca(active, ca_key, true, true, NULL, active_id);
    register_ca(inactive, ca2_key, false, true, NULL, inactive_id);
    register_ca(disabled, other_key, true, false, NULL, disabled_id);
    EVP_PKEY *stray_key = key_new();
    X509 *stray_ca = make_ca("/CN=Unregistered CA", stray_key);

    connect_as(NULL, NULL, &cfg, NOW_MS, &d);
    expect(&d, JIT_REFUSE, false);
    jit_decision_clear(&d);

    static const char *const subject = "/CN=device-1";
    struct {
        const char *what;
        X509 *cert;
        const char *reason;
    } cases[] = {
        {"unregistered issuer", make_device(subject, stray_ca, stray_key), "not a registered CA"},
        /* the issuer name of a registered CA but another key: not its certificate */
        {"mismatched key", make_device(subject, active, stray_key), "not a registered CA"},
        {"INACTIVE CA", make_device(subject, inactive, ca2_key), "INACTIVE"},
        {"auto-registration DISABLE", make_device(subject, disabled, other_key), "DISABLE"},
        {"expired",
         make(&(struct spec){.subject = subject,
                             .key = dev_key,
                             .issuer = active,
                             .issuer_key = ca_key,
                             .not_before = -10 * DAY,
                             .not_after = -DAY}),
         "validity"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        connect_as(cases[i].cert, NULL, &cfg, NOW_MS, &d);
        expect(&d, JIT_REFUSE, false);
        CHECK(!d.registered);
        CHECK(contains(d.reason, cases[i].reason));
        id_of(cases[i].cert, dev_id);
        CHECK(!cert_known(dev_id)); /* nothing registered */
        jit_decision_clear(&d);
        X509_free(cases[i].cert);
    }

    /* known certificates that are not ACTIVE */
    X509 *dev = make_device("/CN=known", active, ca_key);
    char *pem = ca_cert_to_pem(dev);
    id_of(dev, dev_id);
    static const enum cert_status refused[] = {CERT_STATUS_INACTIVE, CERT_STATUS_REVOKED,
                                               CERT_STATUS_PENDING_TRANSFER};
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        struct registry_cert rc = {.pem = pem, .status = refused[i]};
        snprintf(rc.id, sizeof(rc.id), "%s", dev_id);
        snprintf(rc.ca_id, sizeof(rc.ca_id), "%s", active_id);
        CHECK_INT(registry_cert_insert(reg, &rc, NULL), IOT_OK);
        connect_as(dev, NULL, &cfg, NOW_MS, &d);
        expect(&d, JIT_REFUSE, false);
        CHECK(contains(d.reason, registry_cert_status_name(refused[i])));
        jit_decision_clear(&d);
        CHECK_INT(registry_cert_delete(reg, dev_id, NULL), IOT_OK);
    }
    /* PENDING_ACTIVATION without a CA (a fleet-provisioning certificate): no event */
    struct registry_cert pending = {.pem = pem, .status = CERT_STATUS_PENDING_ACTIVATION};
    snprintf(pending.id, sizeof(pending.id), "%s", dev_id);
    CHECK_INT(registry_cert_insert(reg, &pending, NULL), IOT_OK);
    connect_as(dev, NULL, &cfg, NOW_MS, &d);
    expect(&d, JIT_REFUSE, false);
    jit_decision_clear(&d);
    CHECK_INT(registry_cert_delete(reg, dev_id, NULL), IOT_OK);
    /* PENDING_ACTIVATION under a CA that no longer auto-registers: no event */
    X509 *dev2 = make_device("/CN=pending-disabled", disabled, other_key);
    char *pem2 = ca_cert_to_pem(dev2);
    struct registry_cert pending2 = {.pem = pem2, .status = CERT_STATUS_PENDING_ACTIVATION};
    id_of(dev2, pending2.id);
    snprintf(pending2.ca_id, sizeof(pending2.ca_id), "%s", disabled_id);
    CHECK_INT(registry_cert_insert(reg, &pending2, NULL), IOT_OK);
    connect_as(dev2, NULL, &cfg, NOW_MS, &d);
    expect(&d, JIT_REFUSE, false);
    CHECK(contains(d.reason, "does not auto-register"));
    jit_decision_clear(&d);

    X509_free(dev);
    X509_free(dev2);
    free(pem);
    free(pem2);
    X509_free(active);
    X509_free(inactive);
    X509_free(disabled);
    X509_free(stray_ca);
    EVP_PKEY_free(stray_key);
}

static void test_jitr_registers(void)
{
    struct jit_decision d;
    struct jit_config cfg = {.account_id = ACCOUNT};
    char ca_id[65], dev_id[65], expected[1024];
    fresh();
    X509 *ca = make_ca("/O=Acme/CN=Acme JITR CA", ca_key);
    register_ca(ca, ca_key, true, true, NULL, ca_id);
    X509 *dev = make_device("/C=DE/O=Acme/CN=sensor-17", ca, ca_key);
    id_of(dev, dev_id);

    connect_as(dev, NULL, &cfg, NOW_MS, &d);
    expect(&d, JIT_REFUSE_AND_PUBLISH_EVENT, true);
    CHECK(d.registered);
    CHECK_STR(d.cert_id, dev_id);
    CHECK_STR(d.ca_id, ca_id);
    snprintf(expected, sizeof(expected), "$aws/events/certificates/registered/%s", ca_id);
    CHECK_STR(d.event.topic, expected);
    snprintf(expected, sizeof(expected),
             "{\"certificateId\":\"%s\",\"caCertificateId\":\"%s\",\"timestamp\":1700000000123,"
             "\"certificateStatus\":\"PENDING_ACTIVATION\",\"awsAccountId\":\"111122223333\","
             "\"certificateRegistrationTimestamp\":\"1700000000000\"}",
             dev_id, ca_id);
    CHECK_STR(d.event.payload, expected);
    /* the types AWS sends (§4.4) */
    cJSON *ev = cJSON_Parse(d.event.payload);
    CHECK(cJSON_IsNumber(cJSON_GetObjectItem(ev, "timestamp")));
    CHECK(cJSON_IsString(cJSON_GetObjectItem(ev, "certificateRegistrationTimestamp")));
    CHECK(cJSON_IsString(cJSON_GetObjectItem(ev, "awsAccountId")));
    CHECK_INT(cJSON_GetArraySize(ev), 6);
    cJSON_Delete(ev);
    jit_decision_clear(&d);
    /* registered PENDING_ACTIVATION with its CA and its PEM */
    struct registry_cert rc = {0};
    CHECK_INT(registry_cert_get(reg, dev_id, &rc, NULL), IOT_OK);
    CHECK_STR(registry_cert_status_name(rc.status), "PENDING_ACTIVATION");
    CHECK_STR(rc.ca_id, ca_id);
    CHECK_INT(rc.created, NOW_MS / 1000);
    X509 *stored = NULL;
    CHECK_INT(ca_cert_from_pem(rc.pem, strlen(rc.pem), &stored, NULL), IOT_OK);
    CHECK(stored != NULL && X509_cmp(stored, dev) == 0);
    X509_free(stored);
    registry_cert_clear(&rc);

    /* every retry: the event again, the same registration time */
    connect_as(dev, NULL, &cfg, NOW_MS + 5000, &d);
    expect(&d, JIT_REFUSE_AND_PUBLISH_EVENT, true);
    CHECK(!d.registered);
    CHECK(contains(d.event.payload, "\"timestamp\":1700000005123,"));
    CHECK(contains(d.event.payload, "\"certificateRegistrationTimestamp\":\"1700000000000\"}"));
    jit_decision_clear(&d);

    /* the account turned CA_CERTIFICATE events off: refuse, publish nothing */
    CHECK_INT(registry_event_config_set(reg, JIT_EVENT_TYPE, false, NULL), IOT_OK);
    connect_as(dev, NULL, &cfg, NOW_MS, &d);
    expect(&d, JIT_REFUSE, false);
    jit_decision_clear(&d);
    CHECK_INT(registry_event_config_set(reg, JIT_EVENT_TYPE, true, NULL), IOT_OK);

    /* the harness activates it: the device connects */
    CHECK_INT(registry_cert_set_status(reg, dev_id, CERT_STATUS_ACTIVE, NULL), IOT_OK);
    connect_as(dev, NULL, &cfg, NOW_MS, &d);
    expect(&d, JIT_ACCEPT, false);
    jit_decision_clear(&d);

    /* §4.3: deactivating the CA stops new registrations, not the registered certificates */
    CHECK_INT(
        cacert_update(store, reg, ca_id, &(struct cacert_update){.new_status = "INACTIVE"}, NULL),
        IOT_OK);
    connect_as(dev, NULL, &cfg, NOW_MS, &d);
    expect(&d, JIT_ACCEPT, false);
    jit_decision_clear(&d);
    EVP_PKEY *k = key_new();
    X509 *newcomer = make(
        &(struct spec){.subject = "/CN=sensor-18", .key = k, .issuer = ca, .issuer_key = ca_key});
    connect_as(newcomer, NULL, &cfg, NOW_MS, &d);
    expect(&d, JIT_REFUSE, false);
    CHECK(!cert_known(d.cert_id));
    jit_decision_clear(&d);
    X509_free(newcomer);
    EVP_PKEY_free(k);
    X509_free(dev);
    X509_free(ca);
}

/* Two registered CA certificates with one subject and one key (a CA re-issued): the one the
 * device presents in its chain is the one it is registered under; without a chain, the one that
 * auto-registers. */
static void test_jitr_chain(void)
{
    struct jit_decision d;
    char old_id[65], new_id[65];
    fresh();
    X509 *old_ca =
        make(&(struct spec){.subject = "/CN=Reissued CA", .key = ca_key, .ca = true, .serial = 1});
    X509 *new_ca =
        make(&(struct spec){.subject = "/CN=Reissued CA", .key = ca_key, .ca = true, .serial = 2});
    register_ca(old_ca, ca_key, true, true, NULL, old_id);
    register_ca(new_ca, ca_key, true, true, NULL, new_id);
    CHECK(strcmp(old_id, new_id) != 0);

    X509 *dev = make_device("/CN=chained", new_ca, ca_key);
    STACK_OF(X509) *chain = sk_X509_new_null();
    sk_X509_push(chain, dev); /* as SSL_get0_verified_chain gives it: the leaf first */
    sk_X509_push(chain, new_ca);
    connect_as(dev, chain, NULL, NOW_MS, &d);
    expect(&d, JIT_REFUSE_AND_PUBLISH_EVENT, true);
    CHECK_STR(d.ca_id, new_id);
    CHECK(contains(d.event.topic, new_id));
    jit_decision_clear(&d);

    /* the same with the old certificate in the chain, for another device */
    EVP_PKEY *k = key_new();
    X509 *dev2 = make(&(struct spec){
        .subject = "/CN=chained-2", .key = k, .issuer = old_ca, .issuer_key = ca_key});
    STACK_OF(X509) *chain2 = sk_X509_new_null();
    sk_X509_push(chain2, old_ca); /* the peer chain without the leaf */
    connect_as(dev2, chain2, NULL, NOW_MS, &d);
    CHECK_STR(d.ca_id, old_id);
    jit_decision_clear(&d);

    /* no chain: the CA that auto-registers */
    CHECK_INT(cacert_update(store, reg, old_id,
                            &(struct cacert_update){.new_auto_registration = "DISABLE"}, NULL),
              IOT_OK);
    EVP_PKEY *k3 = key_new();
    X509 *dev3 = make(&(struct spec){
        .subject = "/CN=unchained", .key = k3, .issuer = old_ca, .issuer_key = ca_key});
    connect_as(dev3, NULL, NULL, NOW_MS, &d);
    expect(&d, JIT_REFUSE_AND_PUBLISH_EVENT, true);
    CHECK_STR(d.ca_id, new_id);
    CHECK(contains(d.event.payload, "\"awsAccountId\":\"123456789012\"")); /* default */
    jit_decision_clear(&d);

    /* a third CA with the same subject but its own key: only its devices are its own, even
     * though the older two come first in the lookup by subject */
    EVP_PKEY *k4 = NULL;
    X509 *third = NULL;
    char third_id[65];
    int passed_before = check_passed; /* the number of tries varies: not counted */
    do { /* the same creation second: the lookup then orders by id, so make it the last */
        X509_free(third);
        EVP_PKEY_free(k4);
        k4 = NULL;
        (void)ca_generate_ec("P-256", &k4, NULL);
        third = make(&(struct spec){.subject = "/CN=Reissued CA", .key = k4, .ca = true});
        (void)ca_cert_id(third, third_id);
    } while (strcmp(third_id, old_id) < 0 || strcmp(third_id, new_id) < 0);
    check_passed = passed_before;
    register_ca(third, k4, true, true, NULL, third_id);
    X509 *dev4 = make(
        &(struct spec){.subject = "/CN=third's", .key = k4, .issuer = third, .issuer_key = k4});
    connect_as(dev4, NULL, NULL, NOW_MS, &d);
    expect(&d, JIT_REFUSE_AND_PUBLISH_EVENT, true);
    CHECK_STR(d.ca_id, third_id);
    jit_decision_clear(&d);
    X509_free(dev4);
    X509_free(third);
    EVP_PKEY_free(k4);

    sk_X509_free(chain);
    sk_X509_free(chain2);
    X509_free(dev);
    X509_free(dev2);
    X509_free(dev3);
    EVP_PKEY_free(k);
    EVP_PKEY_free(k3);
    X509_free(old_ca);
    X509_free(new_ca);
}

/* ---- JITP (§3) ------------------------------------------------------------------------------- */

#define FULL_SUBJECT                                                                               \
    "/C=DE/ST=Bavaria/O=Acme GmbH/OU=Sensors/OU=Second Unit/dnQualifier=acme-q1"                   \
    "/serialNumber=SN-0042/CN=thermo-42"

static void test_subject_params(void)
{
    X509 *ca = make_ca("/CN=Params CA", ca_key);
    X509 *full = make(&(struct spec){.subject = FULL_SUBJECT,
                                     .key = dev_key,
                                     .issuer = ca,
                                     .issuer_key = ca_key,
                                     .serial = 777});
    X509 *bare = make_device("/CN=Gerät-ß", ca, ca_key);
    cJSON *p = NULL;
    static const struct {
        const char *name, *value;
    } expected[] = {
        {"AWS::IoT::Certificate::CommonName", "thermo-42"},
        {"AWS::IoT::Certificate::Country", "DE"},
        {"AWS::IoT::Certificate::Organization", "Acme GmbH"},
        {"AWS::IoT::Certificate::OrganizationalUnit", "Sensors"}, /* the first of two */
        {"AWS::IoT::Certificate::DistinguishedNameQualifier", "acme-q1"},
        {"AWS::IoT::Certificate::StateName", "Bavaria"},
        {"AWS::IoT::Certificate::SerialNumber", "SN-0042"}, /* not the X.509 serial 777 */
        {"AWS::IoT::Certificate::Id", "the-id"},
    };
    CHECK_INT(jit_subject_params(NULL, "x", &p), IOT_ERR_INVALID_REQUEST);
    CHECK(p == NULL);
    CHECK_INT(jit_subject_params(full, "the-id", &p), IOT_OK);
    CHECK_INT(cJSON_GetArraySize(p), 8);
    for (size_t i = 0; i < sizeof(expected) / sizeof(expected[0]); i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(p, expected[i].name);
        CHECK_STR(cJSON_IsString(v) ? v->valuestring : NULL, expected[i].value);
    }
    cJSON_Delete(p);
    CHECK_INT(jit_subject_params(bare, "id2", &p), IOT_OK);
    CHECK_INT(cJSON_GetArraySize(p), 2); /* CN and Id only */
    CHECK_STR(cJSON_GetObjectItem(p, "AWS::IoT::Certificate::CommonName")->valuestring, "Gerät-ß");
    CHECK(cJSON_GetObjectItem(p, "AWS::IoT::Certificate::Country") == NULL);
    cJSON_Delete(p);
    X509_free(full);
    X509_free(bare);
    X509_free(ca);
}

/* A CA with the fixture's template inline; returns its certificate. */
static X509 *jitp_ca(char ca_id[65])
{
    char *body = fixture_body();
    cJSON *config = config_with_body(body);
    X509 *ca = make_ca("/O=Acme GmbH/CN=Acme JITP CA", ca_key);
    register_ca(ca, ca_key, true, true, config, ca_id);
    cJSON_Delete(config);
    free(body);
    return ca;
}

static void provision_refused(const char *cert_id, enum iot_err code, const char *part)
{
    struct iot_error err = {0};
    CHECK_INT(jit_provision(store, reg, NULL, cert_id, &err), code);
    CHECK(contains(err.message, part));
}

static void test_jitp_failures(void)
{
    struct jit_decision d;
    char ca_id[65], id[65];
    fresh();
    X509 *ca = jitp_ca(ca_id);
    CHECK_INT(registry_thing_group_put(reg, "DE", NULL), IOT_OK);

    provision_refused("0000000000000000000000000000000000000000000000000000000000000000",
                      IOT_ERR_NOT_FOUND, "");
    /* a certificate without serialNumber in its subject: the declared parameter has no value */
    X509 *no_serial = make_device("/C=DE/CN=thermo-1", ca, ca_key);
    connect_as(no_serial, NULL, NULL, NOW_MS, &d);
    expect(&d, JIT_PROVISION_THEN_REFUSE, true); /* §3.2 item 7: the event for JITP too */
    CHECK(d.registered);
    snprintf(id, sizeof(id), "%s", d.cert_id);
    jit_decision_clear(&d);
    provision_refused(id, IOT_ERR_INVALID_PARAMS, "AWS::IoT::Certificate::SerialNumber");
    CHECK_STR(registry_cert_status_name(status_of(id)), "PENDING_ACTIVATION");
    struct registry_thing t = {0};
    CHECK_INT(registry_thing_get(reg, "thermo-1", &t, NULL), IOT_ERR_NOT_FOUND);
    registry_thing_clear(&t);
    /* the next attempt republishes the event and does not provision again */
    connect_as(no_serial, NULL, NULL, NOW_MS + 1000, &d);
    expect(&d, JIT_REFUSE_AND_PUBLISH_EVENT, true);
    jit_decision_clear(&d);

    /* a thing group that does not exist: nothing is applied, no policy attached */
    X509 *no_group = make_device("/C=FR/serialNumber=SN-9/CN=thermo-2", ca, ca_key);
    connect_as(no_group, NULL, NULL, NOW_MS, &d);
    snprintf(id, sizeof(id), "%s", d.cert_id);
    jit_decision_clear(&d);
    provision_refused(id, IOT_ERR_INVALID_PARAMS, "FR");
    CHECK_STR(registry_cert_status_name(status_of(id)), "PENDING_ACTIVATION");
    cJSON *policies = NULL;
    CHECK_INT(registry_target_policies(reg, id, &policies), IOT_OK);
    CHECK_INT(cJSON_GetArraySize(policies), 0);
    cJSON_Delete(policies);
    CHECK_INT(registry_thing_get(reg, "thermo-2", &t, NULL), IOT_ERR_NOT_FOUND);
    registry_thing_clear(&t);

    /* not PENDING_ACTIVATION any more */
    CHECK_INT(registry_cert_set_status(reg, id, CERT_STATUS_INACTIVE, NULL), IOT_OK);
    provision_refused(id, IOT_ERR_CERT_STATE, "INACTIVE");
    /* PENDING_ACTIVATION but not under a CA */
    X509 *lone = make_device("/CN=lone", ca, ca_key);
    char *pem = ca_cert_to_pem(lone);
    struct registry_cert rc = {.pem = pem, .status = CERT_STATUS_PENDING_ACTIVATION};
    id_of(lone, rc.id);
    CHECK_INT(registry_cert_insert(reg, &rc, NULL), IOT_OK);
    provision_refused(rc.id, IOT_ERR_NOT_FOUND, "not registered under a CA");
    /* a JITR CA (no template) */
    CHECK_INT(cacert_update(store, reg, ca_id,
                            &(struct cacert_update){.remove_auto_registration = true}, NULL),
              IOT_OK);
    X509 *jitr = make_device("/CN=jitr", ca, ca_key);
    connect_as(jitr, NULL, NULL, NOW_MS, &d);
    expect(&d, JIT_REFUSE_AND_PUBLISH_EVENT, true);
    provision_refused(d.cert_id, IOT_ERR_NOT_FOUND, "no provisioning template");
    jit_decision_clear(&d);

    free(pem);
    X509_free(lone);
    X509_free(jitr);
    X509_free(no_serial);
    X509_free(no_group);
    X509_free(ca);
}

static void check_provisioned(const char *cert_id, const char *thing, const char *serial)
{
    struct registry_thing t = {0};
    CHECK_STR(registry_cert_status_name(status_of(cert_id)), "ACTIVE");
    CHECK_INT(registry_thing_get(reg, thing, &t, NULL), IOT_OK);
    CHECK_STR(cJSON_GetObjectItem(t.attributes, "serialNumber")->valuestring, serial);
    CHECK_STR(cJSON_GetObjectItem(t.attributes, "provisionedBy")->valuestring, "jitp");
    registry_thing_clear(&t);
    cJSON *things = NULL, *groups = NULL, *policies = NULL;
    CHECK_INT(registry_principal_things(reg, cert_id, &things), IOT_OK);
    CHECK_INT(cJSON_GetArraySize(things), 1);
    CHECK_STR(cJSON_GetArrayItem(things, 0)->valuestring, thing);
    CHECK_INT(registry_thing_groups(reg, thing, &groups), IOT_OK);
    CHECK_INT(cJSON_GetArraySize(groups), 1);
    CHECK_STR(cJSON_GetArrayItem(groups, 0)->valuestring, "DE");
    CHECK_INT(registry_target_policies(reg, cert_id, &policies), IOT_OK);
    CHECK_INT(cJSON_GetArraySize(policies), 1);
    CHECK_INT(strlen(cJSON_GetArrayItem(policies, 0)->valuestring), 64); /* named by its hash */
    cJSON_Delete(things);
    cJSON_Delete(groups);
    cJSON_Delete(policies);
}

static void test_jitp_provisions(void)
{
    struct jit_decision d;
    struct iot_error err = {0};
    char ca_id[65];
    fresh();
    X509 *ca = jitp_ca(ca_id);
    CHECK_INT(registry_thing_group_put(reg, "DE", NULL), IOT_OK);
    X509 *dev = make_device(FULL_SUBJECT, ca, ca_key);
    connect_as(dev, NULL, &(struct jit_config){.account_id = ACCOUNT}, NOW_MS, &d);
    expect(&d, JIT_PROVISION_THEN_REFUSE, true);
    CHECK(contains(d.event.payload, "\"certificateStatus\":\"PENDING_ACTIVATION\""));
    enum iot_err rc = jit_provision(store, reg, NULL, d.cert_id, &err);
    CHECK_INT(rc, IOT_OK);
    if (rc != IOT_OK)
        fprintf(stderr, "  jit_provision: %s\n", err.message);
    check_provisioned(d.cert_id, "thermo-42", "SN-0042");
    /* the device reconnects */
    char id[65];
    snprintf(id, sizeof(id), "%s", d.cert_id);
    jit_decision_clear(&d);
    connect_as(dev, NULL, NULL, NOW_MS, &d);
    expect(&d, JIT_ACCEPT, false);
    jit_decision_clear(&d);
    provision_refused(id, IOT_ERR_CERT_STATE, "ACTIVE"); /* nothing to do twice */

    /* jitp_without_event: the action stays, the event goes */
    EVP_PKEY *k = key_new();
    X509 *quiet = make(&(struct spec){.subject = "/C=DE/serialNumber=SN-7/CN=quiet-7",
                                      .key = k,
                                      .issuer = ca,
                                      .issuer_key = ca_key});
    connect_as(quiet, NULL, &(struct jit_config){.jitp_without_event = true}, NOW_MS, &d);
    expect(&d, JIT_PROVISION_THEN_REFUSE, false);
    CHECK_INT(jit_provision(store, reg, NULL, d.cert_id, &err), IOT_OK);
    check_provisioned(d.cert_id, "quiet-7", "SN-7");
    jit_decision_clear(&d);
    X509_free(quiet);
    EVP_PKEY_free(k);
    X509_free(dev);
    X509_free(ca);
}

/* registrationConfig.templateName: a JITP template of the registry. */
static void test_jitp_template_name(void)
{
    struct jit_decision d;
    struct iot_error err = {0};
    char ca_id[65], id[65];
    fresh();
    char *body = fixture_body();
    put_template("jitp-default", body, "JITP", false);
    CHECK_INT(registry_thing_group_put(reg, "DE", NULL), IOT_OK);
    cJSON *config = cJSON_Parse("{\"templateName\":\"jitp-default\"}");
    X509 *ca = make_ca("/CN=Named JITP CA", ca_key);
    register_ca(ca, ca_key, true, true, config, ca_id);
    X509 *dev = make_device(FULL_SUBJECT, ca, ca_key);
    connect_as(dev, NULL, NULL, NOW_MS, &d);
    expect(&d, JIT_PROVISION_THEN_REFUSE, true);
    snprintf(id, sizeof(id), "%s", d.cert_id);
    jit_decision_clear(&d);
    /* disabled: refused only when the configuration asks for enabled templates */
    struct jit_config strict = {.jitp_requires_enabled = true};
    CHECK_INT(jit_provision(store, reg, &strict, id, &err), IOT_ERR_TEMPLATE_DISABLED);
    CHECK(contains(err.message, "disabled"));
    /* the template became FLEET_PROVISIONING, then disappeared */
    put_template("jitp-default", body, "FLEET_PROVISIONING", false);
    provision_refused(id, IOT_ERR_INVALID_REQUEST, "not of type JITP");
    CHECK_INT(registry_template_delete(reg, "jitp-default", NULL), IOT_OK);
    provision_refused(id, IOT_ERR_NOT_FOUND, "does not exist");
    CHECK_STR(registry_cert_status_name(status_of(id)), "PENDING_ACTIVATION");
    /* back as a disabled JITP template: the default configuration provisions */
    put_template("jitp-default", body, "JITP", false);
    CHECK_INT(jit_provision(store, reg, NULL, id, &err), IOT_OK);
    check_provisioned(id, "thermo-42", "SN-0042");
    cJSON_Delete(config);
    free(body);
    X509_free(dev);
    X509_free(ca);
}

/* ---- RegisterCertificate / RegisterCertificateWithoutCA (§4.6) ----------------------------- */

static enum iot_err register_device(const char *pem, const char *ca_pem, const char *status,
                                    bool set_active, bool without_ca, char id[65],
                                    struct cacert_error *e)
{
    struct jit_register_request rq = {.cert_pem = pem,
                                      .cert_pem_len = pem ? strlen(pem) : 0,
                                      .ca_pem = ca_pem,
                                      .ca_pem_len = ca_pem ? strlen(ca_pem) : 0,
                                      .status = status,
                                      .set_as_active = set_active};
    return without_ca ? jit_register_certificate_without_ca(store, reg, &rq, id, e)
                      : jit_register_certificate(store, reg, &rq, id, e);
}

static void test_register_certificate_refusals(void)
{
    struct cacert_error e;
    char ca_id[65], inactive_id[65], id[65];
    fresh();
    X509 *ca = make_ca("/CN=Register CA", ca_key);
    X509 *inactive = make_ca("/CN=Inactive Register CA", ca2_key);
    register_ca(ca, ca_key, true, false, NULL, ca_id);
    register_ca(inactive, ca2_key, false, false, NULL, inactive_id);
    EVP_PKEY *stray_key = key_new();
    X509 *stray = make_ca("/CN=Stray CA", stray_key);
    X509 *dev = make_device("/CN=reg-1", ca, ca_key);
    X509 *expired = make(&(struct spec){.subject = "/CN=old",
                                        .key = dev_key,
                                        .issuer = ca,
                                        .issuer_key = ca_key,
                                        .not_before = -9 * DAY,
                                        .not_after = -DAY});
    X509 *by_stray = make_device("/CN=reg-2", stray, stray_key);
    X509 *by_inactive = make_device("/CN=reg-3", inactive, ca2_key);
    char *dev_pem = ca_cert_to_pem(dev), *expired_pem = ca_cert_to_pem(expired);
    char *stray_pem = ca_cert_to_pem(stray), *by_stray_pem = ca_cert_to_pem(by_stray);
    char *by_inactive_pem = ca_cert_to_pem(by_inactive), *other_ca_pem = ca_cert_to_pem(inactive);

    check_refusal(register_device(NULL, NULL, NULL, false, false, id, &e), &e,
                  CACERT_EXC_INVALID_REQUEST, "required");
    CHECK_STR(id, "");
    check_refusal(register_device("junk", NULL, NULL, false, false, id, &e), &e,
                  CACERT_EXC_CERTIFICATE_VALIDATION, "not a valid PEM");
    check_refusal(register_device(expired_pem, NULL, NULL, false, false, id, &e), &e,
                  CACERT_EXC_CERTIFICATE_VALIDATION, "expired");
    static const char *const states[] = {"PENDING_ACTIVATION", "PENDING_TRANSFER",
                                         "REGISTER_INACTIVE"};
    for (size_t i = 0; i < 3; i++) {
        for (int without = 0; without < 2; without++) {
            check_refusal(register_device(dev_pem, NULL, states[i], false, without, id, &e), &e,
                          CACERT_EXC_CERTIFICATE_STATE, states[i]);
            CHECK_INT(cacert_exception_status(e.exception), 406);
        }
    }
    check_refusal(register_device(dev_pem, NULL, "active", false, false, id, &e), &e,
                  CACERT_EXC_INVALID_REQUEST, "status must be");
    check_refusal(register_device(by_stray_pem, NULL, NULL, false, false, id, &e), &e,
                  CACERT_EXC_CERTIFICATE_VALIDATION, "not signed by a registered CA");
    check_refusal(register_device(dev_pem, "junk", NULL, false, false, id, &e), &e,
                  CACERT_EXC_CERTIFICATE_VALIDATION, "caCertificatePem");
    check_refusal(register_device(by_stray_pem, stray_pem, NULL, false, false, id, &e), &e,
                  CACERT_EXC_CERTIFICATE_VALIDATION, "is not registered");
    check_refusal(register_device(dev_pem, other_ca_pem, NULL, false, false, id, &e), &e,
                  CACERT_EXC_CERTIFICATE_VALIDATION, "not signed by the CA certificate");
    check_refusal(register_device(by_inactive_pem, NULL, NULL, true, false, id, &e), &e,
                  CACERT_EXC_CERTIFICATE_STATE, "INACTIVE");
    /* nothing was registered by any of these */
    char dev_id[65];
    id_of(dev, dev_id);
    CHECK(!cert_known(dev_id));

    /* two registered CAs with the same subject and key both verify it */
    X509 *twin =
        make(&(struct spec){.subject = "/CN=Register CA", .key = ca_key, .ca = true, .serial = 99});
    char twin_id[65];
    register_ca(twin, ca_key, true, false, NULL, twin_id);
    check_refusal(register_device(dev_pem, NULL, NULL, false, false, id, &e), &e,
                  CACERT_EXC_CERTIFICATE_CONFLICT, "caCertificatePem");
    CHECK_STR(cacert_exception_name(e.exception), "CertificateConflictException");
    CHECK_INT(cacert_exception_status(e.exception), 409);
    char *twin_pem = ca_cert_to_pem(twin);
    CHECK_INT(register_device(dev_pem, twin_pem, NULL, false, false, id, &e), IOT_OK);
    struct registry_cert rc = {0};
    CHECK_INT(registry_cert_get(reg, id, &rc, NULL), IOT_OK);
    CHECK_STR(rc.ca_id, twin_id);
    registry_cert_clear(&rc);
    /* and once more: already registered */
    check_refusal(register_device(dev_pem, twin_pem, "ACTIVE", false, false, id, &e), &e,
                  CACERT_EXC_ALREADY_EXISTS, "already provisioned or registered");
    CHECK_STR(e.resource_id, dev_id);
    check_refusal(register_device(dev_pem, NULL, NULL, false, true, id, &e), &e,
                  CACERT_EXC_ALREADY_EXISTS, dev_id);

    free(twin_pem);
    X509_free(twin);
    free(dev_pem);
    free(expired_pem);
    free(stray_pem);
    free(by_stray_pem);
    free(by_inactive_pem);
    free(other_ca_pem);
    X509_free(ca);
    X509_free(inactive);
    X509_free(stray);
    X509_free(dev);
    X509_free(expired);
    X509_free(by_stray);
    X509_free(by_inactive);
    EVP_PKEY_free(stray_key);
}

static void test_register_certificate(void)
{
    struct cacert_error e;
    struct jit_decision d;
    char ca_id[65], id[65], expected[65];
    fresh();
    X509 *ca = make_ca("/CN=Manual CA", ca_key);
    register_ca(ca, ca_key, true, true, NULL, ca_id); /* auto-registration on: still no event */
    char *ca_pem = ca_cert_to_pem(ca);
    static const struct {
        const char *status;
        bool set_active;
        const char *expected;
    } cases[] = {
        {NULL, false, "INACTIVE"}, /* [MANREG] default */
        {NULL, true, "ACTIVE"},         {"ACTIVE", false, "ACTIVE"}, {"REVOKED", false, "REVOKED"},
        {"INACTIVE", true, "INACTIVE"}, /* status wins over the deprecated flag */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char subject[32];
        snprintf(subject, sizeof(subject), "/CN=manual-%zu", i);
        EVP_PKEY *k = key_new();
        X509 *dev =
            make(&(struct spec){.subject = subject, .key = k, .issuer = ca, .issuer_key = ca_key});
        char *dev_pem = ca_cert_to_pem(dev);
        /* chained: the device certificate first, then its CA */
        size_t len = strlen(dev_pem) + strlen(ca_pem) + 1;
        char *chained = malloc(len);
        snprintf(chained, len, "%s%s", dev_pem, ca_pem);
        CHECK_INT(
            register_device(chained, NULL, cases[i].status, cases[i].set_active, false, id, &e),
            IOT_OK);
        id_of(dev, expected);
        CHECK_STR(id, expected);
        struct registry_cert rc = {0};
        CHECK_INT(registry_cert_get(reg, id, &rc, NULL), IOT_OK);
        CHECK_STR(registry_cert_status_name(rc.status), cases[i].expected);
        CHECK_STR(rc.ca_id, ca_id);
        registry_cert_clear(&rc);
        /* at CONNECT: ACTIVE connects, the others are refused without any event */
        connect_as(dev, NULL, NULL, NOW_MS, &d);
        expect(&d, strcmp(cases[i].expected, "ACTIVE") == 0 ? JIT_ACCEPT : JIT_REFUSE, false);
        jit_decision_clear(&d);
        free(chained);
        free(dev_pem);
        X509_free(dev);
        EVP_PKEY_free(k);
    }
    free(ca_pem);
    X509_free(ca);
}

static bool pems_have(const struct jit_pems *p, X509 *cert)
{
    for (size_t i = 0; i < p->n; i++) {
        X509 *c = NULL;
        bool same = ca_cert_from_pem(p->pems[i], strlen(p->pems[i]), &c, NULL) == IOT_OK &&
                    X509_cmp(c, cert) == 0;
        X509_free(c);
        if (same)
            return true;
    }
    return false;
}

static void test_register_without_ca(void)
{
    struct cacert_error e;
    char id[65], self_id[65], ca_id[65];
    struct jit_pems pems;
    fresh();
    X509 *root = make_ca("/CN=iotmock root", other_key);
    char *root_pem = ca_cert_to_pem(root);
    X509 *ca = make_ca("/CN=Trusted CA", ca_key);
    register_ca(ca, ca_key, false, false, NULL, ca_id); /* INACTIVE CAs are trusted too */
    X509 *self = make(&(struct spec){.subject = "/CN=self-signed device", .key = dev_key});
    EVP_PKEY *stray_key = key_new();
    X509 *stray = make_ca("/CN=Someone's CA", stray_key);
    X509 *foreign = make_device("/CN=foreign device", stray, stray_key);
    char *self_pem = ca_cert_to_pem(self), *foreign_pem = ca_cert_to_pem(foreign);

    CHECK_INT(register_device(self_pem, NULL, "ACTIVE", false, true, self_id, &e), IOT_OK);
    CHECK_INT(register_device(foreign_pem, NULL, NULL, false, true, id, &e), IOT_OK);
    struct registry_cert rc = {0};
    CHECK_INT(registry_cert_get(reg, id, &rc, NULL), IOT_OK);
    CHECK_STR(rc.ca_id, "");
    CHECK_STR(registry_cert_status_name(rc.status), "INACTIVE");
    registry_cert_clear(&rc);
    /* §4.6: both SNI_ONLY; an unknown id and the CA's own id are DEFAULT. */
    CHECK_INT(cacert_device_mode(store, id), CACERT_MODE_SNI_ONLY);
    CHECK_INT(cacert_device_mode(store, self_id), CACERT_MODE_SNI_ONLY);
    CHECK_INT(cacert_device_mode(store, ca_id), CACERT_MODE_DEFAULT);
    CHECK_INT(cacert_device_mode(NULL, id), CACERT_MODE_DEFAULT);
    CHECK_INT(cacert_device_mode_set(store, id, CACERT_MODE_DEFAULT, NULL), IOT_OK);
    CHECK_INT(cacert_device_mode(store, id), CACERT_MODE_DEFAULT);
    cJSON *trusted = NULL;
    CHECK_INT(cacert_trust_ids(store, &trusted, NULL), IOT_OK);
    CHECK_INT(cJSON_GetArraySize(trusted), 1); /* only the self-signed one */
    CHECK_STR(cJSON_GetArrayItem(trusted, 0)->valuestring, self_id);
    cJSON_Delete(trusted);

    CHECK_INT(jit_trusted_pems(store, reg, root_pem, &pems, NULL), IOT_OK);
    CHECK_INT(pems.n, 3);
    CHECK(pems_have(&pems, root) && pems_have(&pems, ca) && pems_have(&pems, self));
    CHECK(!pems_have(&pems, foreign) && !pems_have(&pems, stray));
    jit_pems_clear(&pems);
    /* DeleteCertificate: the next listing drops it, and forgets the id */
    CHECK_INT(registry_cert_delete(reg, self_id, NULL), IOT_OK);
    CHECK_INT(jit_trusted_pems(store, reg, NULL, &pems, NULL), IOT_OK);
    CHECK_INT(pems.n, 1);
    CHECK(pems_have(&pems, ca));
    jit_pems_clear(&pems);
    CHECK_INT(cacert_trust_ids(store, &trusted, NULL), IOT_OK);
    CHECK_INT(cJSON_GetArraySize(trusted), 0);
    cJSON_Delete(trusted);
    CHECK_INT(cacert_trust_add(store, "short", NULL), IOT_ERR_INVALID_REQUEST);

    free(root_pem);
    free(self_pem);
    free(foreign_pem);
    X509_free(root);
    X509_free(ca);
    X509_free(self);
    X509_free(stray);
    X509_free(foreign);
    EVP_PKEY_free(stray_key);
}

/* The whole path for the TLS layer: registered CAs -> capath -> a device verifies; after the CA
 * is deleted it no longer does. */
static bool verifies(const char *dir, X509 *cert)
{
    X509_STORE *st = X509_STORE_new();
    X509_LOOKUP *lookup = X509_STORE_add_lookup(st, X509_LOOKUP_hash_dir());
    X509_LOOKUP_add_dir(lookup, dir, X509_FILETYPE_PEM);
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    X509_STORE_CTX_init(ctx, st, cert, NULL);
    bool ok = X509_verify_cert(ctx) == 1;
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(st);
    return ok;
}

static void test_capath_from_registry(void)
{
    char dir[] = "/tmp/test_jit_capath.XXXXXX", ca_id[65];
    struct jit_pems pems;
    fresh();
    CHECK(mkdtemp(dir) != NULL);
    X509 *ca = make_ca("/CN=Capath CA", ca_key);
    X509 *dev = make_device("/CN=capath-device", ca, ca_key);
    CHECK(!verifies(dir, dev));
    register_ca(ca, ca_key, false, false, NULL, ca_id);
    CHECK_INT(jit_trusted_pems(store, reg, NULL, &pems, NULL), IOT_OK);
    CHECK_INT(capath_sync(dir, (const char *const *)pems.pems, pems.n, NULL), IOT_OK);
    jit_pems_clear(&pems);
    CHECK(verifies(dir, dev));
    CHECK_INT(cacert_delete(store, ca_id, NULL), IOT_OK);
    CHECK_INT(jit_trusted_pems(store, reg, NULL, &pems, NULL), IOT_OK);
    CHECK_INT(capath_sync(dir, (const char *const *)pems.pems, pems.n, NULL), IOT_OK);
    jit_pems_clear(&pems);
    CHECK(!verifies(dir, dev));
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    CHECK_INT(system(cmd), 0);
    X509_free(ca);
    X509_free(dev);
}

/* jit_sync_capath(): the same directory from the store plus a root CA read from a file (a
 * missing file counts as none). */
static void test_sync_capath(void)
{
    char dir[] = "/tmp/test_jit_sync.XXXXXX", ca_id[65], root_path[64], cmd[128];
    fresh();
    CHECK(mkdtemp(dir) != NULL);
    X509 *ca = make_ca("/CN=Sync CA", ca_key), *root = make_ca("/CN=Sync root", ca2_key);
    X509 *dev = make_device("/CN=sync-device", ca, ca_key);
    X509 *root_dev = make_device("/CN=sync-root-device", root, ca2_key);
    register_ca(ca, ca_key, false, false, NULL, ca_id);
    snprintf(root_path, sizeof(root_path), "%s.root.pem", dir);
    CHECK_INT(jit_sync_capath(store, reg, root_path, dir, NULL), IOT_OK); /* no root file yet */
    CHECK(verifies(dir, dev));
    CHECK(!verifies(dir, root_dev));
    FILE *f = fopen(root_path, "w");
    CHECK(f != NULL && PEM_write_X509(f, root) == 1);
    fclose(f);
    CHECK_INT(jit_sync_capath(store, reg, root_path, dir, NULL), IOT_OK);
    CHECK(verifies(dir, root_dev));
    CHECK_INT(cacert_delete(store, ca_id, NULL), IOT_OK);
    CHECK_INT(jit_sync_capath(store, reg, root_path, dir, NULL), IOT_OK);
    CHECK(!verifies(dir, dev));
    CHECK(verifies(dir, root_dev));
    snprintf(cmd, sizeof(cmd), "rm -rf %s %s", dir, root_path);
    CHECK_INT(system(cmd), 0);
    X509_free(ca);
    X509_free(root);
    X509_free(dev);
    X509_free(root_dev);
}

int main(void)
{
    ca_key = key_new();
    ca2_key = key_new();
    dev_key = key_new();
    other_key = key_new();
    test_registration_code();
    test_store_file();
    test_register_ca_refusals_certificate();
    test_register_ca_refusals_verification();
    test_register_ca_refusals_config();
    test_register_ca_stored();
    test_register_ca_subject_limit();
    test_ca_life_cycle();
    test_ca_list();
    test_event_payload();
    test_jitr_refusals();
    test_jitr_registers();
    test_jitr_chain();
    test_subject_params();
    test_jitp_failures();
    test_jitp_provisions();
    test_jitp_template_name();
    test_register_certificate_refusals();
    test_register_certificate();
    test_register_without_ca();
    test_capath_from_registry();
    test_sync_capath();
    registry_close(reg);
    cacert_store_close(store);
    EVP_PKEY_free(ca_key);
    EVP_PKEY_free(ca2_key);
    EVP_PKEY_free(dev_key);
    EVP_PKEY_free(other_key);
    return check_summary();
}
