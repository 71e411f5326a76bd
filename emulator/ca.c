/* The local certificate authority: opens or creates the root CA, issues device certificates with
 * the profile AWS IoT uses (shared/spec/provisioning.md §1.7) and the broker's TLS server
 * certificate, checks CSRs the way CreateCertificateFromCsr does (§1.4), and converts keys, CSRs
 * and certificates to and from PEM.
 *
 * Thread-safety: struct ca is never written after ca_open(). The CA certificate is always the
 * result of parsing the PEM file (even right after creating it), so its names carry a cached DER
 * encoding and copying them from several threads reads only; the CA's key identifier is computed
 * once in ca_open() instead of being looked up in the certificate for every issue. */
#include "ca.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#define CA_ROOT_BITS 2048
/* The root must outlive CA_DEVICE_NOT_AFTER (§1.7): clients check the whole chain's validity. */
#define CA_ROOT_NOT_AFTER "20591231235959Z"
#define CA_SERIAL_LEN 20
#define CA_SERVER_DAYS 3650
#define CA_CERT_MODE 0644
#define CA_KEY_MODE 0600

struct ca {
    X509 *cert;                /* parsed from CA_CERT_FILE */
    EVP_PKEY *key;             /* parsed from CA_KEY_FILE */
    ASN1_OCTET_STRING *key_id; /* the CA's subject key id, copied into each issued AKI */
};

/* ---- small helpers ---- */

/* The reason of the latest OpenSSL error, then an empty queue so that the next failure on this
 * thread does not report a stale cause. Reason strings are static, so the pointer outlives the
 * clearing. */
static const char *openssl_reason(void)
{
    unsigned long e = ERR_peek_last_error();
    const char *reason = e != 0 ? ERR_reason_error_string(e) : NULL;
    ERR_clear_error();
    return reason != NULL ? reason : "unknown OpenSSL error";
}

/* strerror() shares a buffer between threads; the XSI strerror_r() does not. */
static const char *errno_text(int e, char *buf, size_t size)
{
    if (strerror_r(e, buf, size) != 0)
        snprintf(buf, size, "error %d", e);
    return buf;
}

/* Copies a memory BIO's contents into a malloc'd NUL-terminated string. */
static char *bio_to_string(BIO *bio)
{
    char *data = NULL;
    long len = BIO_get_mem_data(bio, &data);
    if (len < 0 || data == NULL)
        return NULL;
    char *s = malloc((size_t)len + 1);
    if (s == NULL)
        return NULL;
    memcpy(s, data, (size_t)len);
    s[len] = '\0';
    return s;
}

/* A read-only BIO over LEN bytes, or NULL when LEN does not fit OpenSSL's int. */
static BIO *bio_over(const char *data, size_t len)
{
    if (len > INT_MAX)
        return NULL;
    return BIO_new_mem_buf(data, (int)len);
}

/* A name of one UTF8String attribute. The bytes are set directly rather than through MBSTRING_UTF8
 * because AWS's issuer OU is 66 characters, beyond the 64 of RFC 5280's upper bound that OpenSSL
 * enforces on MBSTRING input, and AWS encodes it anyway (§1.7 hexdump). */
static X509_NAME *name_single(int nid, const char *value)
{
    X509_NAME *name = X509_NAME_new();
    if (name != NULL && !X509_NAME_add_entry_by_NID(name, nid, V_ASN1_UTF8STRING,
                                                    (const unsigned char *)value, -1, -1, 0)) {
        X509_NAME_free(name);
        return NULL;
    }
    return name;
}

/* ---- certificate building ---- */

/* 20 random bytes (§1.7), top bit clear so the INTEGER is positive, first byte non-zero so that DER
 * keeps all 20 bytes. */
static int cert_set_serial(X509 *cert)
{
    unsigned char serial[CA_SERIAL_LEN];
    if (RAND_bytes(serial, sizeof(serial)) != 1)
        return 0;
    serial[0] &= 0x7f;
    if (serial[0] == 0)
        serial[0] = 0x40;
    return ASN1_STRING_set(X509_get_serialNumber(cert), serial, sizeof(serial));
}

/* A v3 certificate with a random serial, notBefore now, and the given key and names; the caller
 * sets notAfter, adds extensions and signs. */
/* Puts a copy of SPKI (algorithm, parameters, key bits) into CERT as it is. X509_set_pubkey()
 * would encode the key and decode it back, which OpenSSL 3.0 does through a decoder chain it
 * builds anew each time: about as costly as the signature itself. */
static int cert_copy_spki(X509 *cert, const X509_PUBKEY *spki)
{
    ASN1_OBJECT *alg = NULL;
    const unsigned char *bits = NULL;
    int n_bits = 0;
    X509_ALGOR *algor = NULL;
    if (!X509_PUBKEY_get0_param(&alg, &bits, &n_bits, &algor, spki) || n_bits <= 0)
        return 0;
    const ASN1_OBJECT *alg_obj = NULL;
    int ptype = V_ASN1_UNDEF;
    const void *pval = NULL;
    X509_ALGOR_get0(&alg_obj, &ptype, &pval, algor);
    void *param = NULL; /* V_ASN1_UNDEF and V_ASN1_NULL carry no value */
    if (ptype == V_ASN1_OBJECT)
        param = OBJ_dup(pval);
    else if (ptype != V_ASN1_UNDEF && ptype != V_ASN1_NULL)
        param = ASN1_STRING_dup(pval);
    ASN1_OBJECT *obj = OBJ_dup(alg_obj);
    unsigned char *copy = OPENSSL_memdup(bits, (size_t)n_bits);
    bool have_param = param != NULL || ptype == V_ASN1_UNDEF || ptype == V_ASN1_NULL;
    if (obj != NULL && copy != NULL && have_param &&
        X509_PUBKEY_set0_param(X509_get_X509_PUBKEY(cert), obj, ptype, param, copy, n_bits))
        return 1;
    ASN1_OBJECT_free(obj);
    OPENSSL_free(copy);
    if (ptype == V_ASN1_OBJECT)
        ASN1_OBJECT_free(param);
    else
        ASN1_STRING_free(param);
    return 0;
}

/* A certificate for PUBKEY, or for the key SPKI describes when PUBKEY is NULL. */
static X509 *cert_new(EVP_PKEY *pubkey, const X509_PUBKEY *spki, const X509_NAME *subject,
                      const X509_NAME *issuer)
{
    X509 *cert = X509_new();
    if (cert == NULL)
        return NULL;
    if (!X509_set_version(cert, X509_VERSION_3) || !cert_set_serial(cert) ||
        X509_gmtime_adj(X509_getm_notBefore(cert), 0) == NULL ||
        !X509_set_subject_name(cert, subject) || !X509_set_issuer_name(cert, issuer) ||
        !(pubkey ? X509_set_pubkey(cert, pubkey) : cert_copy_spki(cert, spki))) {
        X509_free(cert);
        return NULL;
    }
    return cert;
}

/* Adds an extension written in openssl.cnf syntax, e.g. "critical,CA:FALSE". */
static int cert_add_conf_ext(X509 *cert, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, NULL, cert, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_nconf_nid(NULL, &ctx, nid, value);
    int ok = ext != NULL && X509_add_ext(cert, ext, -1);
    X509_EXTENSION_free(ext);
    return ok;
}

/* The RFC 5280 §4.2.1.2 method (1) key identifier: SHA-1 of the subjectPublicKey bits. */
static ASN1_OCTET_STRING *cert_key_id(const X509 *cert)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    if (!X509_pubkey_digest(cert, EVP_sha1(), md, &md_len))
        return NULL;
    ASN1_OCTET_STRING *id = ASN1_OCTET_STRING_new();
    if (id != NULL && !ASN1_OCTET_STRING_set(id, md, (int)md_len)) {
        ASN1_OCTET_STRING_free(id);
        return NULL;
    }
    return id;
}

/* AuthorityKeyIdentifier (when ISSUER_ID is given) then SubjectKeyIdentifier, AWS's order. */
static int cert_add_key_ids(X509 *cert, const ASN1_OCTET_STRING *issuer_id)
{
    int ok = 1;
    if (issuer_id != NULL) {
        AUTHORITY_KEYID *akid = AUTHORITY_KEYID_new();
        ok = akid != NULL && (akid->keyid = ASN1_OCTET_STRING_dup(issuer_id)) != NULL &&
             X509_add1_ext_i2d(cert, NID_authority_key_identifier, akid, 0, X509V3_ADD_DEFAULT);
        AUTHORITY_KEYID_free(akid);
    }
    ASN1_OCTET_STRING *id = ok ? cert_key_id(cert) : NULL;
    ok = id != NULL &&
         X509_add1_ext_i2d(cert, NID_subject_key_identifier, id, 0, X509V3_ADD_DEFAULT);
    ASN1_OCTET_STRING_free(id);
    return ok;
}

static int is_ip_address(const char *host)
{
    ASN1_OCTET_STRING *ip = a2i_IPADDRESS(host);
    int is_ip = ip != NULL;
    ASN1_OCTET_STRING_free(ip);
    ERR_clear_error(); /* "not an address" is an answer here, not a failure */
    return is_ip;
}

static int names_push(GENERAL_NAMES *names, int type, const char *value)
{
    GENERAL_NAME *name = a2i_GENERAL_NAME(NULL, NULL, NULL, type, value, 0);
    if (name == NULL || !sk_GENERAL_NAME_push(names, name)) {
        GENERAL_NAME_free(name);
        return 0;
    }
    return 1;
}

/* SANs for the server certificate: HOST as DNS or IP name, plus the loopback names a client on the
 * same machine or container uses, each once. */
static int cert_add_server_sans(X509 *cert, const char *host)
{
    static const struct {
        int type;
        const char *value;
    } loopback[] = {{GEN_DNS, "localhost"}, {GEN_IPADD, "127.0.0.1"}, {GEN_IPADD, "::1"}};
    GENERAL_NAMES *names = sk_GENERAL_NAME_new_null();
    int ok = names != NULL && names_push(names, is_ip_address(host) ? GEN_IPADD : GEN_DNS, host);
    for (size_t i = 0; ok && i < sizeof(loopback) / sizeof(loopback[0]); i++) {
        if (strcasecmp(host, loopback[i].value) != 0)
            ok = names_push(names, loopback[i].type, loopback[i].value);
    }
    ok = ok && X509_add1_ext_i2d(cert, NID_subject_alt_name, names, 0, X509V3_ADD_DEFAULT);
    GENERAL_NAMES_free(names);
    return ok;
}

/* ---- key generation ---- */

enum iot_err ca_generate_rsa(int bits, EVP_PKEY **out, struct iot_error *err)
{
    *out = bits > 0 ? EVP_RSA_gen((unsigned int)bits) : NULL;
    if (*out == NULL)
        return iot_error_set(err, IOT_ERR_INTERNAL, "cannot generate an RSA key of %d bits: %s",
                             bits, openssl_reason());
    return IOT_OK;
}

enum iot_err ca_generate_ec(const char *curve, EVP_PKEY **out, struct iot_error *err)
{
    *out = curve != NULL ? EVP_EC_gen(curve) : NULL;
    if (*out == NULL)
        return iot_error_set(err, IOT_ERR_INTERNAL, "cannot generate an EC key on curve %s: %s",
                             curve != NULL ? curve : "(none)", openssl_reason());
    return IOT_OK;
}

/* ---- PEM ---- */

char *ca_cert_to_pem(X509 *cert)
{
    BIO *bio = BIO_new(BIO_s_mem());
    char *pem = NULL;
    if (bio != NULL && PEM_write_bio_X509(bio, cert))
        pem = bio_to_string(bio);
    BIO_free(bio);
    ERR_clear_error();
    return pem;
}

char *ca_key_to_pem(EVP_PKEY *key)
{
    BIO *bio = BIO_new(BIO_s_mem());
    char *pem = NULL;
    /* "traditional" is the type-specific encoding: PKCS#1 for RSA, RFC 5915 for EC (what AWS
     * returns in privateKey); PKCS#8 only for key types that have no such form. */
    if (bio != NULL &&
        (PEM_write_bio_PrivateKey_traditional(bio, key, NULL, NULL, 0, NULL, NULL) ||
         (BIO_reset(bio) == 1 && PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL))))
        pem = bio_to_string(bio);
    if (bio != NULL) {
        /* The memory BIO held the private key: wipe it before it goes back to the allocator. */
        char *data = NULL;
        long len = BIO_get_mem_data(bio, &data);
        if (len > 0 && data != NULL)
            OPENSSL_cleanse(data, (size_t)len);
    }
    BIO_free(bio);
    ERR_clear_error();
    return pem;
}

char *ca_csr_to_pem(X509_REQ *req)
{
    BIO *bio = BIO_new(BIO_s_mem());
    char *pem = NULL;
    if (bio != NULL && PEM_write_bio_X509_REQ(bio, req))
        pem = bio_to_string(bio);
    BIO_free(bio);
    ERR_clear_error();
    return pem;
}

enum iot_err ca_cert_from_pem(const char *pem, size_t len, X509 **out, struct iot_error *err)
{
    *out = NULL;
    BIO *bio = pem != NULL ? bio_over(pem, len) : NULL;
    if (bio != NULL)
        *out = PEM_read_bio_X509(bio, NULL, NULL, NULL);
    BIO_free(bio);
    if (*out == NULL)
        return iot_error_set(err, IOT_ERR_INVALID_REQUEST, "no PEM certificate could be read: %s",
                             openssl_reason());
    return IOT_OK;
}

/* ---- certificate ids ---- */

enum iot_err ca_cert_id(X509 *cert, char out[CA_ID_LEN + 1])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    out[0] = '\0';
    if (cert == NULL || !X509_digest(cert, EVP_sha256(), md, &md_len) || md_len * 2 != CA_ID_LEN) {
        ERR_clear_error();
        return IOT_ERR_INTERNAL;
    }
    static const char hex[] = "0123456789abcdef";
    for (unsigned int i = 0; i < md_len; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 0x0f];
    }
    out[CA_ID_LEN] = '\0';
    return IOT_OK;
}

/* ---- CSRs ---- */

static int is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Only whitespace may follow the PEM block: anything else means the client sent something other
 * than one CSR, and silently ignoring it would hide the mistake. */
static int bio_rest_is_space(BIO *bio)
{
    char buf[256];
    int n;
    while ((n = BIO_read(bio, buf, sizeof(buf))) > 0) {
        for (int i = 0; i < n; i++) {
            if (!is_space(buf[i]))
                return 0;
        }
    }
    return 1;
}

/* Decodes exactly one PEM "CERTIFICATE REQUEST" block surrounded by nothing but whitespace.
 * PEM_read_bio_X509_REQ() alone would skip text and other PEM blocks before the CSR and ignore
 * everything after it. */
static enum iot_err csr_decode(const char *pem, size_t len, X509_REQ **out, struct iot_error *err)
{
    static const char begin[] = "-----BEGIN ";
    enum iot_err rc = IOT_ERR_INVALID_CSR;
    char *name = NULL, *header = NULL;
    unsigned char *der = NULL;
    long der_len = 0;
    BIO *bio = NULL;

    while (len > 0 && is_space(*pem))
        pem++, len--;
    if (len < sizeof(begin) - 1 || memcmp(pem, begin, sizeof(begin) - 1) != 0) {
        rc = iot_error_set(err, IOT_ERR_INVALID_CSR,
                           len == 0 ? "the CSR is empty"
                                    : "the CSR is not a PEM-encoded certificate request");
        goto cleanup;
    }
    if ((bio = bio_over(pem, len)) == NULL) {
        rc = iot_error_set(err, IOT_ERR_INVALID_CSR, "the CSR is too long");
        goto cleanup;
    }
    if (!PEM_read_bio(bio, &name, &header, &der, &der_len)) {
        rc = iot_error_set(err, IOT_ERR_INVALID_CSR, "the CSR is not valid PEM: %s",
                           openssl_reason());
        goto cleanup;
    }
    if (strcmp(name, PEM_STRING_X509_REQ) != 0 && strcmp(name, PEM_STRING_X509_REQ_OLD) != 0) {
        rc = iot_error_set(err, IOT_ERR_INVALID_CSR,
                           "the PEM block is a \"%.40s\", not a \"CERTIFICATE REQUEST\"", name);
        goto cleanup;
    }
    if (!bio_rest_is_space(bio)) {
        rc = iot_error_set(err, IOT_ERR_INVALID_CSR, "unexpected data after the CSR's END line");
        goto cleanup;
    }
    const unsigned char *p = der;
    *out = d2i_X509_REQ(NULL, &p, der_len);
    if (*out == NULL || p != der + der_len) {
        X509_REQ_free(*out);
        *out = NULL;
        rc = iot_error_set(err, IOT_ERR_INVALID_CSR, "the CSR is not a valid PKCS#10 request: %s",
                           openssl_reason());
        goto cleanup;
    }
    rc = IOT_OK;
cleanup:
    OPENSSL_free(name);
    OPENSSL_free(header);
    OPENSSL_free(der);
    BIO_free(bio);
    return rc;
}

/* §1.4: RSA of at least 2048 bits, or EC on one of the three NIST curves. */
static enum iot_err csr_check_key(const EVP_PKEY *key, struct iot_error *err)
{
    if (EVP_PKEY_is_a(key, "RSA")) {
        int bits = EVP_PKEY_get_bits(key);
        if (bits < 2048)
            return iot_error_set(err, IOT_ERR_INVALID_CSR,
                                 "RSA key of %d bits is too short: at least 2048 are required",
                                 bits);
        return IOT_OK;
    }
    if (EVP_PKEY_is_a(key, "EC")) {
        char curve[80];
        if (!EVP_PKEY_get_group_name(key, curve, sizeof(curve), NULL)) {
            ERR_clear_error();
            return iot_error_set(err, IOT_ERR_INVALID_CSR,
                                 "EC key without a named curve: use P-256, P-384 or P-521");
        }
        int nid = OBJ_txt2nid(curve);
        if (nid == NID_undef)
            nid = EC_curve_nist2nid(curve);
        if (nid != NID_X9_62_prime256v1 && nid != NID_secp384r1 && nid != NID_secp521r1)
            return iot_error_set(err, IOT_ERR_INVALID_CSR,
                                 "EC curve %s is not supported: use P-256, P-384 or P-521", curve);
        return IOT_OK;
    }
    const char *type = EVP_PKEY_get0_type_name(key);
    return iot_error_set(err, IOT_ERR_INVALID_CSR,
                         "%s keys are not supported: use RSA (2048 bits or more) or EC on P-256, "
                         "P-384 or P-521",
                         type != NULL ? type : "these");
}

enum iot_err ca_csr_parse(const char *pem, size_t len, X509_REQ **out, struct iot_error *err)
{
    X509_REQ *req = NULL;
    *out = NULL;
    if (pem == NULL)
        return iot_error_set(err, IOT_ERR_INVALID_CSR, "the CSR is empty");
    enum iot_err rc = csr_decode(pem, len, &req, err);
    if (rc != IOT_OK)
        goto cleanup;
    EVP_PKEY *key = X509_REQ_get0_pubkey(req);
    if (key == NULL) {
        rc = iot_error_set(err, IOT_ERR_INVALID_CSR, "the CSR's public key cannot be decoded: %s",
                           openssl_reason());
        goto cleanup;
    }
    if (X509_REQ_verify(req, key) != 1) {
        ERR_clear_error();
        rc = iot_error_set(err, IOT_ERR_INVALID_CSR, "the CSR's signature does not verify");
        goto cleanup;
    }
    if ((rc = csr_check_key(key, err)) != IOT_OK)
        goto cleanup;
    *out = req;
    req = NULL;
cleanup:
    X509_REQ_free(req);
    return rc;
}

/* Adds the attributes of "/CN=dev/O=acme" to NAME. Values cannot contain '/': enough for the tests
 * and claim material this serves. */
static enum iot_err name_parse(X509_NAME *name, const char *subject, struct iot_error *err)
{
    char *copy = strdup(subject);
    if (copy == NULL)
        return iot_error_set(err, IOT_ERR_NOMEM, "out of memory");
    enum iot_err rc = IOT_OK;
    char *save = NULL;
    for (char *part = strtok_r(copy, "/", &save); part != NULL && rc == IOT_OK;
         part = strtok_r(NULL, "/", &save)) {
        char *eq = strchr(part, '=');
        if (eq == NULL) {
            rc = iot_error_set(err, IOT_ERR_INVALID_REQUEST,
                               "subject component \"%.60s\" has no '='", part);
            break;
        }
        *eq = '\0';
        if (!X509_NAME_add_entry_by_txt(name, part, MBSTRING_UTF8, (const unsigned char *)(eq + 1),
                                        -1, -1, 0))
            rc = iot_error_set(err, IOT_ERR_INVALID_REQUEST, "bad subject attribute %.60s: %s",
                               part, openssl_reason());
    }
    free(copy);
    return rc;
}

enum iot_err ca_make_csr(EVP_PKEY *key, const char *subject, X509_REQ **out, struct iot_error *err)
{
    X509_REQ *req = X509_REQ_new();
    X509_NAME *name = X509_NAME_new();
    enum iot_err rc = IOT_ERR_INTERNAL;
    *out = NULL;
    if (req == NULL || name == NULL) {
        rc = iot_error_set(err, IOT_ERR_NOMEM, "out of memory");
        goto cleanup;
    }
    if (subject != NULL && (rc = name_parse(name, subject, err)) != IOT_OK)
        goto cleanup;
    if (!X509_REQ_set_version(req, X509_REQ_VERSION_1) || !X509_REQ_set_subject_name(req, name) ||
        !X509_REQ_set_pubkey(req, key) || !X509_REQ_sign(req, key, EVP_sha256())) {
        rc = iot_error_set(err, IOT_ERR_INTERNAL, "cannot build the CSR: %s", openssl_reason());
        goto cleanup;
    }
    *out = req;
    req = NULL;
    rc = IOT_OK;
cleanup:
    X509_REQ_free(req);
    X509_NAME_free(name);
    return rc;
}

/* ---- issuing ---- */

static enum iot_err issue(const struct ca *ca, EVP_PKEY *pubkey, const X509_PUBKEY *spki,
                          const X509_NAME *subject, X509 **out, struct iot_error *err)
{
    enum iot_err rc = IOT_ERR_INTERNAL;
    X509_NAME *default_subject = NULL;
    X509 *cert = NULL;
    *out = NULL;
    if (pubkey == NULL && spki == NULL)
        return iot_error_set(err, IOT_ERR_INTERNAL, "no public key to certify");
    if (subject == NULL) {
        default_subject = name_single(NID_commonName, CA_DEFAULT_SUBJECT_CN);
        if (default_subject == NULL) {
            rc = iot_error_set(err, IOT_ERR_NOMEM, "out of memory");
            goto cleanup;
        }
        subject = default_subject;
    }
    cert = cert_new(pubkey, spki, subject, X509_get_subject_name(ca->cert));
    if (cert == NULL || !ASN1_TIME_set_string_X509(X509_getm_notAfter(cert), CA_DEVICE_NOT_AFTER) ||
        !cert_add_key_ids(cert, ca->key_id) ||
        !cert_add_conf_ext(cert, NID_basic_constraints, "critical,CA:FALSE") ||
        !cert_add_conf_ext(cert, NID_key_usage, "critical,digitalSignature") ||
        !X509_sign(cert, ca->key, EVP_sha256())) {
        rc = iot_error_set(err, IOT_ERR_INTERNAL, "cannot issue the certificate: %s",
                           openssl_reason());
        goto cleanup;
    }
    *out = cert;
    cert = NULL;
    rc = IOT_OK;
cleanup:
    X509_free(cert);
    X509_NAME_free(default_subject);
    return rc;
}

enum iot_err ca_issue(const struct ca *ca, EVP_PKEY *pubkey, const X509_NAME *subject, X509 **out,
                      struct iot_error *err)
{
    *out = NULL;
    return pubkey != NULL ? issue(ca, pubkey, NULL, subject, out, err)
                          : iot_error_set(err, IOT_ERR_INTERNAL, "no public key to certify");
}

enum iot_err ca_issue_csr(const struct ca *ca, X509_REQ *csr, X509 **out, struct iot_error *err)
{
    const X509_PUBKEY *spki = csr ? X509_REQ_get_X509_PUBKEY(csr) : NULL;
    if (spki == NULL) {
        *out = NULL;
        return iot_error_set(err, IOT_ERR_INTERNAL, "no public key to certify");
    }
    return issue(ca, NULL, spki, X509_REQ_get_subject_name(csr), out, err);
}

enum iot_err ca_issue_server(const struct ca *ca, EVP_PKEY *key, const char *host, X509 **out,
                             struct iot_error *err)
{
    enum iot_err rc = IOT_ERR_INTERNAL;
    X509_NAME *subject = NULL;
    X509 *cert = NULL;
    *out = NULL;
    if (key == NULL || host == NULL || host[0] == '\0')
        return iot_error_set(err, IOT_ERR_INVALID_REQUEST,
                             "the server certificate needs a key and a host name");
    subject = name_single(NID_commonName, host);
    cert = subject != NULL ? cert_new(key, NULL, subject, X509_get_subject_name(ca->cert)) : NULL;
    if (cert == NULL ||
        X509_time_adj_ex(X509_getm_notAfter(cert), CA_SERVER_DAYS, 0, NULL) == NULL ||
        !cert_add_key_ids(cert, ca->key_id) ||
        !cert_add_conf_ext(cert, NID_basic_constraints, "critical,CA:FALSE") ||
        !cert_add_conf_ext(cert, NID_key_usage, "critical,digitalSignature,keyEncipherment") ||
        !cert_add_conf_ext(cert, NID_ext_key_usage, "serverAuth") ||
        !cert_add_server_sans(cert, host) || !X509_sign(cert, ca->key, EVP_sha256())) {
        rc = iot_error_set(err, IOT_ERR_INTERNAL,
                           "cannot issue the server certificate for %.100s: %s", host,
                           openssl_reason());
        goto cleanup;
    }
    *out = cert;
    cert = NULL;
    rc = IOT_OK;
cleanup:
    X509_free(cert);
    X509_NAME_free(subject);
    return rc;
}

/* ---- files ---- */

static int write_all(int fd, const char *data, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, data, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return 0;
        data += n;
        len -= (size_t)n;
    }
    return 1;
}

/* Makes the rename itself durable: without it a crash can leave the old directory entry. */
static enum iot_err dir_sync(const char *path, struct iot_error *err)
{
    char dir[PATH_MAX];
    const char *slash = strrchr(path, '/');
    size_t len = slash == NULL ? 1 : slash == path ? 1 : (size_t)(slash - path);
    if (len >= sizeof(dir))
        return iot_error_set(err, IOT_ERR_IO, "path too long: %.200s", path);
    memcpy(dir, slash == NULL ? "." : path, len);
    dir[len] = '\0';
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || fsync(fd) != 0) {
        int e = errno;
        char msg[128];
        if (fd >= 0)
            close(fd);
        return iot_error_set(err, IOT_ERR_IO, "cannot sync directory %.200s: %s", dir,
                             errno_text(e, msg, sizeof(msg)));
    }
    close(fd);
    return IOT_OK;
}

enum iot_err ca_write_file(const char *path, const char *data, int mode, struct iot_error *err)
{
    char tmp[PATH_MAX], msg[128];
    if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp))
        return iot_error_set(err, IOT_ERR_IO, "path too long: %.200s", path);
    /* A temporary left by a crash may have other permissions or be a symlink: start afresh, and let
     * O_EXCL|O_NOFOLLOW refuse anything that reappears in between. */
    (void)unlink(tmp);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, (mode_t)mode);
    if (fd < 0)
        return iot_error_set(err, IOT_ERR_IO, "cannot create %.200s: %s", tmp,
                             errno_text(errno, msg, sizeof(msg)));
    /* fchmod because open() applies the umask, and callers ask for an exact mode. */
    bool ok = fchmod(fd, (mode_t)mode) == 0 && write_all(fd, data, strlen(data)) && fsync(fd) == 0;
    int e = errno;
    if (close(fd) != 0 && ok) {
        ok = false;
        e = errno;
    }
    if (ok && rename(tmp, path) != 0) {
        ok = false;
        e = errno;
    }
    if (!ok) {
        (void)unlink(tmp);
        return iot_error_set(err, IOT_ERR_IO, "cannot write %.200s: %s", path,
                             errno_text(e, msg, sizeof(msg)));
    }
    return dir_sync(path, err);
}

static enum iot_err file_exists(const char *path, bool *exists, struct iot_error *err)
{
    struct stat st;
    *exists = stat(path, &st) == 0;
    if (!*exists && errno != ENOENT) {
        char msg[128];
        return iot_error_set(err, IOT_ERR_IO, "cannot examine %.200s: %s", path,
                             errno_text(errno, msg, sizeof(msg)));
    }
    return IOT_OK;
}

/* ---- the root CA ---- */

static X509 *root_build(EVP_PKEY *key)
{
    X509_NAME *name = name_single(NID_organizationalUnitName, CA_ISSUER_OU);
    X509 *cert = name != NULL ? cert_new(key, NULL, name, name) : NULL;
    X509_NAME_free(name);
    if (cert == NULL || !ASN1_TIME_set_string_X509(X509_getm_notAfter(cert), CA_ROOT_NOT_AFTER) ||
        !cert_add_conf_ext(cert, NID_basic_constraints, "critical,CA:TRUE") ||
        !cert_add_conf_ext(cert, NID_key_usage, "critical,keyCertSign,cRLSign") ||
        !cert_add_key_ids(cert, NULL) || !X509_sign(cert, key, EVP_sha256())) {
        X509_free(cert);
        return NULL;
    }
    return cert;
}

/* Creates the key and the self-signed certificate. The key goes first, so that a crash in between
 * leaves a key without a certificate, which ca_open() reports, never a certificate whose key is
 * lost. */
static enum iot_err root_create(const char *cert_path, const char *key_path, struct iot_error *err)
{
    EVP_PKEY *key = NULL;
    X509 *cert = NULL;
    char *key_pem = NULL, *cert_pem = NULL;
    enum iot_err rc = ca_generate_rsa(CA_ROOT_BITS, &key, err);
    if (rc != IOT_OK)
        goto cleanup;
    if ((cert = root_build(key)) == NULL) {
        rc = iot_error_set(err, IOT_ERR_INTERNAL, "cannot build the root CA certificate: %s",
                           openssl_reason());
        goto cleanup;
    }
    key_pem = ca_key_to_pem(key);
    cert_pem = ca_cert_to_pem(cert);
    if (key_pem == NULL || cert_pem == NULL) {
        rc = iot_error_set(err, IOT_ERR_NOMEM, "out of memory");
        goto cleanup;
    }
    rc = ca_write_file(key_path, key_pem, CA_KEY_MODE, err);
    if (rc == IOT_OK && (rc = ca_write_file(cert_path, cert_pem, CA_CERT_MODE, err)) != IOT_OK)
        (void)unlink(key_path); /* neither file, rather than a key alone */
cleanup:
    if (key_pem != NULL)
        OPENSSL_cleanse(key_pem, strlen(key_pem));
    free(key_pem);
    free(cert_pem);
    X509_free(cert);
    EVP_PKEY_free(key);
    return rc;
}

static enum iot_err root_read(struct ca *ca, const char *cert_path, const char *key_path,
                              struct iot_error *err)
{
    BIO *bio = BIO_new_file(cert_path, "r");
    ca->cert = bio != NULL ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
    BIO_free(bio);
    if (ca->cert == NULL)
        return iot_error_set(err, IOT_ERR_IO, "cannot read the CA certificate %.200s: %s",
                             cert_path, openssl_reason());
    bio = BIO_new_file(key_path, "r");
    ca->key = bio != NULL ? PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL) : NULL;
    BIO_free(bio);
    if (ca->key == NULL)
        return iot_error_set(err, IOT_ERR_IO, "cannot read the CA key %.200s: %s", key_path,
                             openssl_reason());
    return IOT_OK;
}

/* Refuses a pair that cannot work, and computes what ca_issue() needs from the certificate now,
 * while a single thread owns the struct. */
static enum iot_err root_check(struct ca *ca, const char *cert_path, const char *key_path,
                               struct iot_error *err)
{
    if (X509_check_private_key(ca->cert, ca->key) != 1)
        return iot_error_set(err, IOT_ERR_IO, "%.200s is not the key of %.200s: %s", key_path,
                             cert_path, openssl_reason());
    if (X509_check_ca(ca->cert) == 0)
        return iot_error_set(err, IOT_ERR_IO, "%.200s is not a CA certificate", cert_path);
    const ASN1_OCTET_STRING *ski = X509_get0_subject_key_id(ca->cert);
    ca->key_id = ski != NULL ? ASN1_OCTET_STRING_dup(ski) : cert_key_id(ca->cert);
    if (ca->key_id == NULL)
        return iot_error_set(err, IOT_ERR_INTERNAL, "cannot compute the CA's key identifier: %s",
                             openssl_reason());
    return IOT_OK;
}

enum iot_err ca_open(const char *dir, struct ca **out, struct iot_error *err)
{
    char cert_path[PATH_MAX], key_path[PATH_MAX];
    bool has_cert = false, has_key = false;
    enum iot_err rc;
    *out = NULL;
    if (snprintf(cert_path, sizeof(cert_path), "%s/%s", dir, CA_CERT_FILE) >=
            (int)sizeof(cert_path) ||
        snprintf(key_path, sizeof(key_path), "%s/%s", dir, CA_KEY_FILE) >= (int)sizeof(key_path))
        return iot_error_set(err, IOT_ERR_IO, "CA directory path too long: %.200s", dir);
    if ((rc = file_exists(cert_path, &has_cert, err)) != IOT_OK ||
        (rc = file_exists(key_path, &has_key, err)) != IOT_OK)
        return rc;
    if (has_cert != has_key)
        return iot_error_set(err, IOT_ERR_IO,
                             "%.200s exists without %.200s: restore the missing file, or remove "
                             "both to create a new CA",
                             has_cert ? cert_path : key_path, has_cert ? key_path : cert_path);
    if (!has_cert && (rc = root_create(cert_path, key_path, err)) != IOT_OK)
        return rc;

    /* Always load from disk, even right after creating: one code path, and a parsed certificate
     * whose encoding is cached (see the file header). */
    struct ca *ca = calloc(1, sizeof(*ca));
    if (ca == NULL)
        return iot_error_set(err, IOT_ERR_NOMEM, "out of memory");
    if ((rc = root_read(ca, cert_path, key_path, err)) != IOT_OK ||
        (rc = root_check(ca, cert_path, key_path, err)) != IOT_OK) {
        ca_free(ca);
        return rc;
    }
    *out = ca;
    return IOT_OK;
}

void ca_free(struct ca *ca)
{
    if (ca == NULL)
        return;
    X509_free(ca->cert);
    EVP_PKEY_free(ca->key);
    ASN1_OCTET_STRING_free(ca->key_id);
    free(ca);
}

X509 *ca_certificate(const struct ca *ca)
{
    return ca->cert;
}
