/* Unit test of the CA module: root CA files, the AWS device-certificate profile (§1.7), the CSR
 * rules (§1.4), the server certificate, PEM encodings and certificate ids. Every property is
 * checked with OpenSSL calls independent of ca.c's own helpers. */
#include "ca.h"

#include <dirent.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "check.h"

#define ISSUER_ONELINE "/OU=" CA_ISSUER_OU
#define RSA_KEY_BEGIN "-----BEGIN RSA PRIVATE KEY-----\n"
#define EC_KEY_BEGIN "-----BEGIN EC PRIVATE KEY-----\n"
#define CSR_SUBJECT "/O=Acme Corp/CN=IntelliDrive/OU=aws-cn/serialNumber=1234"

/* Keys shared by the cases: RSA generation is the slow part of this test. */
static EVP_PKEY *rsa2048, *rsa1024, *ec256;
static char tmp_root[] = "/tmp/test_ca.XXXXXX";

/* ---- helpers ---- */

/* Setup that cannot fail unless something unrelated is broken: stop rather than cascade. */
static void *need(void *p, const char *what)
{
    if (p == NULL) {
        fprintf(stderr, "setup failed: %s\n", what);
        exit(2);
    }
    return p;
}

static void path_join(char *out, size_t size, const char *dir, const char *name)
{
    snprintf(out, size, "%s/%s", dir, name);
}

/* A fresh directory under tmp_root. */
static void make_dir(char *out, size_t size, const char *name)
{
    path_join(out, size, tmp_root, name);
    CHECK_INT(mkdir(out, 0700), 0);
}

static char *read_text(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    char *buf = calloc(1, 65536);
    size_t n = buf != NULL ? fread(buf, 1, 65535, f) : 0;
    (void)n;
    fclose(f);
    return buf;
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    if (f == NULL)
        return;
    fputs(text, f);
    fclose(f);
}

static int count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    int n = 0;
    if (d == NULL)
        return -1;
    for (struct dirent *e; (e = readdir(d)) != NULL;)
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

static void remove_tree(const char *dir)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return;
    char path[512];
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        path_join(path, sizeof(path), dir, e->d_name);
        struct stat st;
        if (lstat(path, &st) == 0 && S_ISDIR(st.st_mode))
            remove_tree(path);
        else
            unlink(path);
    }
    closedir(d);
    rmdir(dir);
}

static char *csr_pem_for(EVP_PKEY *key, const char *subject)
{
    X509_REQ *req = NULL;
    CHECK_INT(ca_make_csr(key, subject, &req, NULL), IOT_OK);
    char *pem = ca_csr_to_pem(need(req, "ca_make_csr"));
    X509_REQ_free(req);
    return need(pem, "ca_csr_to_pem");
}

/* PEM of arbitrary DER under LABEL, to feed the parser things ca.c would never produce. */
static char *pem_of_der(const char *label, const unsigned char *der, long len)
{
    BIO *bio = BIO_new(BIO_s_mem());
    char *pem = NULL, *data = NULL;
    if (PEM_write_bio(bio, label, "", der, len) > 0) {
        long n = BIO_get_mem_data(bio, &data);
        pem = calloc(1, (size_t)n + 1);
        memcpy(pem, data, (size_t)n);
    }
    BIO_free(bio);
    return need(pem, "PEM_write_bio");
}

/* Parses TEXT (NUL-terminated) as a CSR and expects refusal with MESSAGE (NULL: any message). */
static void check_csr_refused(const char *text, size_t len, const char *message)
{
    struct iot_error err = {0};
    X509_REQ *req = (X509_REQ *)&err; /* must be reset to NULL */
    CHECK_INT(ca_csr_parse(text, len, &req, &err), IOT_ERR_INVALID_CSR);
    CHECK(req == NULL);
    if (req != (X509_REQ *)&err)
        X509_REQ_free(req);
    CHECK_INT(err.code, IOT_ERR_INVALID_CSR);
    CHECK(err.message[0] != '\0');
    if (message != NULL)
        CHECK_STR(err.message, message);
}

static void check_csr_accepted(const char *text, size_t len)
{
    struct iot_error err = {0};
    X509_REQ *req = NULL;
    CHECK_INT(ca_csr_parse(text, len, &req, &err), IOT_OK);
    if (err.code != IOT_OK)
        fprintf(stderr, "  refused: %s\n", err.message);
    CHECK(req != NULL);
    X509_REQ_free(req);
}

static void time_text(const ASN1_TIME *t, char *out, size_t size)
{
    int len = ASN1_STRING_length(t);
    snprintf(out, size, "%.*s", len, (const char *)ASN1_STRING_get0_data(t));
}

static int ext_nid_at(X509 *cert, int i)
{
    return OBJ_obj2nid(X509_EXTENSION_get_object(X509_get_ext(cert, i)));
}

static int ext_critical(X509 *cert, int nid)
{
    int i = X509_get_ext_by_NID(cert, nid, -1);
    return i < 0 ? -1 : X509_EXTENSION_get_critical(X509_get_ext(cert, i));
}

/* The id computed without ca.c: SHA-256 of i2d_X509(), lowercase hex. */
static void independent_id(X509 *cert, char out[CA_ID_LEN + 1])
{
    unsigned char *der = NULL, md[32];
    int len = i2d_X509(cert, &der);
    unsigned int md_len = 0;
    CHECK(len > 0);
    CHECK_INT(EVP_Digest(der, (size_t)len, md, &md_len, EVP_sha256(), NULL), 1);
    for (unsigned int i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
    OPENSSL_free(der);
}

/* Full path validation against the CA alone, as a device or a server would do it. */
static int chain_verifies(X509 *ca_cert, X509 *cert)
{
    X509_STORE *store = X509_STORE_new();
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    int ok = X509_STORE_add_cert(store, ca_cert) && X509_STORE_CTX_init(ctx, store, cert, NULL) &&
             X509_verify_cert(ctx) == 1;
    if (!ok)
        fprintf(stderr, "  verify: %s\n",
                X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx)));
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(store);
    return ok;
}

static int name_count(X509 *cert)
{
    GENERAL_NAMES *names = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
    int n = names != NULL ? sk_GENERAL_NAME_num(names) : -1;
    GENERAL_NAMES_free(names);
    return n;
}

/* ---- ca_open ---- */

static void test_open_refuses_half_pairs(void)
{
    char dir[256], path[512];
    struct iot_error err = {0};
    struct ca *ca = (struct ca *)&err;

    make_dir(dir, sizeof(dir), "cert-only");
    path_join(path, sizeof(path), dir, CA_CERT_FILE);
    write_text(path, "not used\n");
    CHECK_INT(ca_open(dir, &ca, &err), IOT_ERR_IO);
    CHECK(ca == NULL);
    CHECK(strstr(err.message, "remove both") != NULL);
    CHECK_INT(count_entries(dir), 1); /* no key was created next to it */

    ca = (struct ca *)&err;
    make_dir(dir, sizeof(dir), "key-only");
    path_join(path, sizeof(path), dir, CA_KEY_FILE);
    write_text(path, "not used\n");
    CHECK_INT(ca_open(dir, &ca, &err), IOT_ERR_IO);
    CHECK(ca == NULL);
    CHECK_INT(count_entries(dir), 1);

    path_join(dir, sizeof(dir), tmp_root, "does/not/exist");
    CHECK_INT(ca_open(dir, &ca, &err), IOT_ERR_IO);
    CHECK(ca == NULL);
}

/* Both files present but unusable: a corrupt certificate, a key of another CA. */
static void test_open_refuses_bad_pairs(const char *good_dir)
{
    char dir[256], path[512];
    struct iot_error err = {0};
    struct ca *ca = NULL;

    path_join(path, sizeof(path), good_dir, CA_CERT_FILE);
    char *cert_pem = need(read_text(path), CA_CERT_FILE);
    path_join(path, sizeof(path), good_dir, CA_KEY_FILE);
    char *key_pem = need(read_text(path), CA_KEY_FILE);
    char *other_key = need(ca_key_to_pem(rsa2048), "ca_key_to_pem");

    make_dir(dir, sizeof(dir), "corrupt-cert");
    path_join(path, sizeof(path), dir, CA_CERT_FILE);
    write_text(path, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
    path_join(path, sizeof(path), dir, CA_KEY_FILE);
    write_text(path, key_pem);
    CHECK_INT(ca_open(dir, &ca, &err), IOT_ERR_IO);
    CHECK(ca == NULL);
    CHECK(strstr(err.message, "cannot read the CA certificate") != NULL);

    make_dir(dir, sizeof(dir), "foreign-key");
    path_join(path, sizeof(path), dir, CA_CERT_FILE);
    write_text(path, cert_pem);
    path_join(path, sizeof(path), dir, CA_KEY_FILE);
    write_text(path, other_key);
    CHECK_INT(ca_open(dir, &ca, &err), IOT_ERR_IO);
    CHECK(ca == NULL);
    CHECK(strstr(err.message, "is not the key of") != NULL);

    free(cert_pem);
    free(key_pem);
    free(other_key);
}

static void check_root_certificate(X509 *root)
{
    char text[64];
    CHECK_INT(X509_get_version(root), X509_VERSION_3);
    CHECK_INT(X509_NAME_cmp(X509_get_subject_name(root), X509_get_issuer_name(root)), 0);
    CHECK_INT(X509_verify(root, X509_get0_pubkey(root)), 1);
    CHECK(EVP_PKEY_is_a(X509_get0_pubkey(root), "RSA"));
    CHECK_INT(EVP_PKEY_get_bits(X509_get0_pubkey(root)), 2048);
    time_text(X509_get0_notAfter(root), text, sizeof(text));
    CHECK_STR(text, "20591231235959Z");
    CHECK_INT(X509_get0_notAfter(root)->type, V_ASN1_GENERALIZEDTIME);
    CHECK_INT(X509_get_signature_nid(root), NID_sha256WithRSAEncryption);
    CHECK_INT(ext_critical(root, NID_basic_constraints), 1);
    CHECK_INT(X509_check_ca(root), 1);
    CHECK_INT(ext_critical(root, NID_key_usage), 1);
    CHECK_INT(X509_get_key_usage(root), KU_KEY_CERT_SIGN | KU_CRL_SIGN);
    CHECK(X509_get0_subject_key_id(root) != NULL);
    CHECK_INT(X509_get_ext_by_NID(root, NID_ext_key_usage, -1), -1);
    CHECK_INT(X509_get_serialNumber(root)->length, 20);
}

static struct ca *test_open_creates_then_loads(char *dir, size_t size)
{
    char cert_path[512], key_path[512], id1[CA_ID_LEN + 1], id2[CA_ID_LEN + 1];
    struct iot_error err = {0};
    struct ca *ca = NULL, *again = NULL;
    struct stat st;

    make_dir(dir, size, "root");
    CHECK_INT(ca_open(dir, &ca, &err), IOT_OK);
    CHECK(ca != NULL);
    if (ca == NULL) {
        fprintf(stderr, "  ca_open: %s\n", err.message);
        return NULL;
    }
    path_join(cert_path, sizeof(cert_path), dir, CA_CERT_FILE);
    path_join(key_path, sizeof(key_path), dir, CA_KEY_FILE);
    CHECK_INT(stat(key_path, &st), 0);
    CHECK_INT(st.st_mode & 07777, 0600);
    CHECK_INT(stat(cert_path, &st), 0);
    CHECK_INT(count_entries(dir), 2); /* no temporary or extra copy of the key left behind */

    char *key_pem = read_text(key_path);
    CHECK(key_pem != NULL && strncmp(key_pem, RSA_KEY_BEGIN, strlen(RSA_KEY_BEGIN)) == 0);
    CHECK(key_pem != NULL && strchr(key_pem, '\r') == NULL);
    free(key_pem);

    check_root_certificate(ca_certificate(ca));

    CHECK_INT(ca_open(dir, &again, &err), IOT_OK);
    CHECK(again != NULL);
    if (again != NULL) {
        CHECK_INT(ca_cert_id(ca_certificate(ca), id1), IOT_OK);
        CHECK_INT(ca_cert_id(ca_certificate(again), id2), IOT_OK);
        CHECK_STR(id1, id2);
        /* The reloaded key signs what the first certificate verifies. */
        X509 *cert = NULL;
        CHECK_INT(ca_issue(again, rsa2048, NULL, &cert, &err), IOT_OK);
        CHECK(cert != NULL && X509_verify(cert, X509_get0_pubkey(ca_certificate(ca))) == 1);
        X509_free(cert);
    }
    ca_free(again);
    ca_free(NULL);
    return ca;
}

/* ---- CSRs ---- */

static void test_csr_refused_inputs(const char *good, X509 *some_cert)
{
    size_t good_len = strlen(good);
    char buf[8192];

    check_csr_refused("", 0, "the CSR is empty");
    check_csr_refused(" \r\n\t", 4, "the CSR is empty");
    check_csr_refused(good, 0, "the CSR is empty"); /* LEN, not the NUL, decides */
    check_csr_refused("hello, world", 12, "the CSR is not a PEM-encoded certificate request");
    check_csr_refused("-----BEGIN CERTIFICATE REQUEST-----\n", 36, NULL);
    check_csr_refused(good, good_len / 2, NULL);
    check_csr_refused(good, good_len - 10, NULL); /* END line cut short */

    char *cert_pem = need(ca_cert_to_pem(some_cert), "ca_cert_to_pem");
    check_csr_refused(cert_pem, strlen(cert_pem),
                      "the PEM block is a \"CERTIFICATE\", not a \"CERTIFICATE REQUEST\"");
    /* A certificate in front of a valid CSR is not skipped over. */
    snprintf(buf, sizeof(buf), "%s%s", cert_pem, good);
    check_csr_refused(buf, strlen(buf), NULL);
    free(cert_pem);

    snprintf(buf, sizeof(buf), "%sjunk\n", good);
    check_csr_refused(buf, strlen(buf), "unexpected data after the CSR's END line");
    snprintf(buf, sizeof(buf), "%s%s", good, good);
    check_csr_refused(buf, strlen(buf), "unexpected data after the CSR's END line");
    snprintf(buf, sizeof(buf), "junk\n%s", good);
    check_csr_refused(buf, strlen(buf), "the CSR is not a PEM-encoded certificate request");

    /* Broken base64 in the body, and an embedded NUL. */
    snprintf(buf, sizeof(buf), "%s", good);
    buf[60] = '!';
    check_csr_refused(buf, good_len, NULL);
    snprintf(buf, sizeof(buf), "%s", good);
    buf[70] = '\0';
    check_csr_refused(buf, good_len, NULL);
}

/* Valid base64 of bytes that are not exactly one PKCS#10 structure. */
static void test_csr_refused_der(const char *good)
{
    X509_REQ *req = NULL;
    CHECK_INT(ca_csr_parse(good, strlen(good), &req, NULL), IOT_OK);
    unsigned char *der = NULL;
    int len = i2d_X509_REQ(req, &der);
    CHECK(len > 10);
    unsigned char *longer = calloc(1, (size_t)len + 2);
    memcpy(longer, der, (size_t)len);

    char *pem = pem_of_der("CERTIFICATE REQUEST", longer, len + 2); /* trailing zero bytes */
    check_csr_refused(pem, strlen(pem), NULL);
    free(pem);
    pem = pem_of_der("CERTIFICATE REQUEST", der, len - 1); /* one byte short */
    check_csr_refused(pem, strlen(pem), NULL);
    free(pem);
    pem = pem_of_der("CERTIFICATE REQUEST", (const unsigned char *)"\x30\x03\x02\x01\x00", 5);
    check_csr_refused(pem, strlen(pem), NULL);
    free(pem);

    free(longer);
    OPENSSL_free(der);
    X509_REQ_free(req);
}

static void check_corrupt_byte_refused(const char *good, int offset_from_end)
{
    X509_REQ *req = NULL;
    CHECK_INT(ca_csr_parse(good, strlen(good), &req, NULL), IOT_OK);
    unsigned char *der = NULL;
    int len = i2d_X509_REQ(req, &der);
    CHECK(len > offset_from_end);
    der[len - offset_from_end] ^= 0x01;
    char *pem = pem_of_der("CERTIFICATE REQUEST", der, len);
    check_csr_refused(pem, strlen(pem), "the CSR's signature does not verify");
    free(pem);
    OPENSSL_free(der);
    X509_REQ_free(req);
}

/* A signature byte, then a subject byte: either way the self-signature no longer holds. */
static void test_csr_refused_signature(const char *good)
{
    check_corrupt_byte_refused(good, 1);

    X509_REQ *req = NULL;
    CHECK_INT(ca_csr_parse(good, strlen(good), &req, NULL), IOT_OK);
    unsigned char *der = NULL;
    int len = i2d_X509_REQ(req, &der);
    const char *needle = "IntelliDrive";
    unsigned char *hit = NULL;
    for (int i = 0; i + 12 <= len && hit == NULL; i++)
        hit = memcmp(der + i, needle, 12) == 0 ? der + i : NULL;
    CHECK(hit != NULL);
    if (hit != NULL) {
        hit[0] = 'X';
        char *pem = pem_of_der("CERTIFICATE REQUEST", der, len);
        check_csr_refused(pem, strlen(pem), "the CSR's signature does not verify");
        free(pem);
    }
    OPENSSL_free(der);
    X509_REQ_free(req);
}

static void test_csr_refused_keys(void)
{
    char *pem = csr_pem_for(rsa1024, "/CN=weak");
    check_csr_refused(pem, strlen(pem),
                      "RSA key of 1024 bits is too short: at least 2048 are required");
    free(pem);

    EVP_PKEY *k1 = NULL;
    CHECK_INT(ca_generate_ec("secp256k1", &k1, NULL), IOT_OK);
    pem = csr_pem_for(k1, "/CN=koblitz");
    check_csr_refused(pem, strlen(pem),
                      "EC curve secp256k1 is not supported: use P-256, P-384 or P-521");
    free(pem);
    EVP_PKEY_free(k1);

    EVP_PKEY *ed = need(EVP_PKEY_Q_keygen(NULL, NULL, "ED25519"), "Ed25519 key");
    X509_REQ *req = need(X509_REQ_new(), "X509_REQ_new");
    CHECK_INT(X509_REQ_set_pubkey(req, ed), 1);
    CHECK(X509_REQ_sign(req, ed, NULL) > 0);
    pem = need(ca_csr_to_pem(req), "ca_csr_to_pem");
    check_csr_refused(pem, strlen(pem),
                      "ED25519 keys are not supported: use RSA (2048 bits or more) or EC on "
                      "P-256, P-384 or P-521");
    free(pem);
    X509_REQ_free(req);
    EVP_PKEY_free(ed);
}

static void test_csr_accepted_keys(void)
{
    static const char *curves[] = {"P-256", "P-384", "P-521"};
    char *pem = csr_pem_for(rsa2048, CSR_SUBJECT);
    check_csr_accepted(pem, strlen(pem));
    free(pem);
    for (size_t i = 0; i < sizeof(curves) / sizeof(curves[0]); i++) {
        EVP_PKEY *key = NULL;
        CHECK_INT(ca_generate_ec(curves[i], &key, NULL), IOT_OK);
        pem = csr_pem_for(need(key, "ca_generate_ec"), "/CN=ec");
        check_csr_accepted(pem, strlen(pem));
        free(pem);
        EVP_PKEY_free(key);
    }
    pem = csr_pem_for(ec256, NULL); /* empty subject: still a valid request */
    check_csr_accepted(pem, strlen(pem));
    free(pem);
}

/* LEN is the whole story: bytes after it are never read, and its exact end may be the END line. */
static void test_csr_length(const char *good)
{
    size_t len = strlen(good);
    char buf[8192];

    snprintf(buf, sizeof(buf), "%sGARBAGE that must not be read", good);
    check_csr_accepted(buf, len);
    /* Exactly LEN bytes with no NUL after them: ASan reports any read beyond. */
    char *exact = malloc(len);
    memcpy(exact, good, len);
    check_csr_accepted(exact, len);
    check_csr_accepted(exact, len - 1); /* without the final newline */
    free(exact);

    snprintf(buf, sizeof(buf), "\n  %s \r\n\n", good);
    check_csr_accepted(buf, strlen(buf));

    /* CRLF line endings, as a Windows client may send. */
    size_t j = 0;
    for (size_t i = 0; i < len && j + 2 < sizeof(buf); i++) {
        if (good[i] == '\n')
            buf[j++] = '\r';
        buf[j++] = good[i];
    }
    buf[j] = '\0';
    check_csr_accepted(buf, j);
}

static void test_make_csr_refused(void)
{
    struct iot_error err = {0};
    X509_REQ *req = (X509_REQ *)&err;
    CHECK_INT(ca_make_csr(ec256, "/CN", &req, &err), IOT_ERR_INVALID_REQUEST);
    CHECK(req == NULL);
    CHECK_STR(err.message, "subject component \"CN\" has no '='");
    CHECK_INT(ca_make_csr(ec256, "/CN=a/NOPE=1", &req, &err), IOT_ERR_INVALID_REQUEST);
    CHECK(req == NULL);
}

/* ---- device certificates ---- */

static void check_issuer(X509 *cert)
{
    char line[256];
    const X509_NAME *issuer = X509_get_issuer_name(cert);
    CHECK_INT(X509_NAME_entry_count(issuer), 1);
    CHECK_STR(X509_NAME_oneline(issuer, line, sizeof(line)), ISSUER_ONELINE);

    BIO *bio = BIO_new(BIO_s_mem());
    X509_NAME_print_ex(bio, issuer, 0, XN_FLAG_ONELINE);
    char *data = NULL;
    long n = BIO_get_mem_data(bio, &data);
    snprintf(line, sizeof(line), "%.*s", (int)n, data);
    CHECK_STR(line, "OU = " CA_ISSUER_OU);
    BIO_free(bio);

    /* The bytes of AWS's issuer (§1.7 hexdump): one SET, one UTF8String of 66 bytes. */
    static const unsigned char head[] = {0x30, 0x4d, 0x31, 0x4b, 0x30, 0x49, 0x06,
                                         0x03, 0x55, 0x04, 0x0b, 0x0c, 0x42};
    unsigned char *der = NULL;
    int len = i2d_X509_NAME(issuer, &der);
    CHECK_INT(len, 0x4f);
    CHECK(len >= (int)sizeof(head) && memcmp(der, head, sizeof(head)) == 0);
    OPENSSL_free(der);
}

static void check_serial(X509 *cert)
{
    const ASN1_INTEGER *serial = X509_get0_serialNumber(cert);
    CHECK_INT(ASN1_STRING_type(serial), V_ASN1_INTEGER); /* not V_ASN1_NEG_INTEGER */
    unsigned char *der = NULL;
    int len = i2d_ASN1_INTEGER(serial, &der);
    CHECK_INT(len, 22);
    if (len == 22) {
        CHECK_INT(der[0], 0x02);
        CHECK_INT(der[1], 20);
        CHECK(der[2] != 0 && der[2] < 0x80);
    }
    OPENSSL_free(der);
}

static void check_validity(X509 *cert)
{
    char text[64];
    const ASN1_TIME *not_after = X509_get0_notAfter(cert);
    time_text(not_after, text, sizeof(text));
    CHECK_STR(text, "491231235959Z");
    CHECK_INT(ASN1_STRING_type(not_after), V_ASN1_UTCTIME);
    struct tm tm;
    CHECK_INT(ASN1_TIME_to_tm(not_after, &tm), 1);
    CHECK_INT(tm.tm_year + 1900, 2049);
    CHECK_INT(tm.tm_mon + 1, 12);
    CHECK_INT(tm.tm_mday, 31);
    CHECK_INT(tm.tm_hour * 3600 + tm.tm_min * 60 + tm.tm_sec, 23 * 3600 + 59 * 60 + 59);

    int days = -1, secs = -1;
    time_t now = time(NULL);
    ASN1_TIME *now_t = ASN1_TIME_set(NULL, now);
    CHECK_INT(ASN1_TIME_diff(&days, &secs, now_t, X509_get0_notBefore(cert)), 1);
    CHECK(days == 0 && secs <= 0 && secs > -300); /* issued just now */
    ASN1_TIME_free(now_t);
}

/* Exactly AKI, SKI, basicConstraints, keyUsage, in that order; no EKU. */
static void check_device_extensions(X509 *cert, X509 *root)
{
    CHECK_INT(X509_get_ext_count(cert), 4);
    CHECK_INT(ext_nid_at(cert, 0), NID_authority_key_identifier);
    CHECK_INT(ext_nid_at(cert, 1), NID_subject_key_identifier);
    CHECK_INT(ext_nid_at(cert, 2), NID_basic_constraints);
    CHECK_INT(ext_nid_at(cert, 3), NID_key_usage);
    CHECK_INT(X509_get_ext_by_NID(cert, NID_ext_key_usage, -1), -1);
    CHECK_INT(X509_get_ext_by_NID(cert, NID_subject_alt_name, -1), -1);

    CHECK_INT(ext_critical(cert, NID_basic_constraints), 1);
    BASIC_CONSTRAINTS *bc = X509_get_ext_d2i(cert, NID_basic_constraints, NULL, NULL);
    CHECK(bc != NULL && bc->ca == 0 && bc->pathlen == NULL);
    BASIC_CONSTRAINTS_free(bc);
    CHECK_INT(X509_check_ca(cert), 0);
    CHECK_INT(ext_critical(cert, NID_key_usage), 1);
    CHECK_INT(X509_get_key_usage(cert), KU_DIGITAL_SIGNATURE);
    CHECK_INT(ext_critical(cert, NID_subject_key_identifier), 0);
    CHECK_INT(ext_critical(cert, NID_authority_key_identifier), 0);

    const ASN1_OCTET_STRING *aki = X509_get0_authority_key_id(cert);
    CHECK(aki != NULL && ASN1_OCTET_STRING_cmp(aki, X509_get0_subject_key_id(root)) == 0);
    unsigned char md[20];
    unsigned int md_len = 0;
    CHECK_INT(X509_pubkey_digest(cert, EVP_sha1(), md, &md_len), 1);
    const ASN1_OCTET_STRING *ski = X509_get0_subject_key_id(cert);
    CHECK(ski != NULL && ASN1_STRING_length(ski) == 20 &&
          memcmp(ASN1_STRING_get0_data(ski), md, 20) == 0);
}

static void check_device_cert(X509 *cert, X509 *root, EVP_PKEY *key)
{
    CHECK_INT(X509_get_version(cert), X509_VERSION_3);
    check_serial(cert);
    check_validity(cert);
    check_issuer(cert);
    check_device_extensions(cert, root);
    CHECK_INT(X509_get_signature_nid(cert), NID_sha256WithRSAEncryption);
    CHECK_INT(X509_verify(cert, X509_get0_pubkey(root)), 1);
    CHECK_INT(EVP_PKEY_eq(X509_get0_pubkey(cert), key), 1);
    CHECK(chain_verifies(root, cert));
    CHECK_INT(X509_check_purpose(cert, X509_PURPOSE_SSL_CLIENT, 0), 1);
}

static void test_cert_id(X509 *cert)
{
    struct {
        char before[8];
        char id[CA_ID_LEN + 1];
        char after[8];
    } buf;
    char expected[CA_ID_LEN + 1];
    memset(&buf, 0x5a, sizeof(buf));
    CHECK_INT(ca_cert_id(cert, buf.id), IOT_OK);
    CHECK_INT(strlen(buf.id), CA_ID_LEN);
    CHECK_INT(strspn(buf.id, "0123456789abcdef"), CA_ID_LEN);
    independent_id(cert, expected);
    CHECK_STR(buf.id, expected);
    static const char guard[8] = {0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a};
    CHECK(memcmp(buf.before, guard, 8) == 0 && memcmp(buf.after, guard, 8) == 0);
    CHECK_INT(ca_cert_id(NULL, buf.id), IOT_ERR_INTERNAL);
}

static void test_issue_default_subject(const struct ca *ca)
{
    struct iot_error err = {0};
    X509 *cert = (X509 *)&err, *second = NULL;
    char line[256], id1[CA_ID_LEN + 1], id2[CA_ID_LEN + 1];

    CHECK_INT(ca_issue(ca, NULL, NULL, &cert, &err), IOT_ERR_INTERNAL);
    CHECK(cert == NULL);

    CHECK_INT(ca_issue(ca, rsa2048, NULL, &cert, &err), IOT_OK);
    CHECK(cert != NULL);
    if (cert == NULL)
        return;
    CHECK_STR(X509_NAME_oneline(X509_get_subject_name(cert), line, sizeof(line)),
              "/CN=" CA_DEFAULT_SUBJECT_CN);
    check_device_cert(cert, ca_certificate(ca), rsa2048);
    test_cert_id(cert);

    /* Same key, new certificate: a new serial, hence a new id (§1.4). */
    CHECK_INT(ca_issue(ca, rsa2048, NULL, &second, &err), IOT_OK);
    CHECK(second != NULL);
    CHECK(ASN1_INTEGER_cmp(X509_get0_serialNumber(cert), X509_get0_serialNumber(second)) != 0);
    CHECK_INT(ca_cert_id(cert, id1), IOT_OK);
    CHECK_INT(ca_cert_id(second, id2), IOT_OK);
    CHECK(strcmp(id1, id2) != 0);
    X509_free(second);
    X509_free(cert);
}

/* The DER of CERT's SubjectPublicKeyInfo equals that of REQ. */
static bool same_spki(X509 *cert, X509_REQ *req)
{
    unsigned char *a = NULL, *b = NULL;
    int na = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(cert), &a);
    int nb = i2d_X509_PUBKEY(X509_REQ_get_X509_PUBKEY(req), &b);
    bool same = na > 0 && na == nb && memcmp(a, b, (size_t)na) == 0;
    OPENSSL_free(a);
    OPENSSL_free(b);
    return same;
}

/* CERT as a client gets it: encoded and parsed again. */
static X509 *reparsed(X509 *cert)
{
    char *pem = ca_cert_to_pem(cert);
    BIO *bio = pem ? BIO_new_mem_buf(pem, -1) : NULL;
    X509 *out = bio ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
    BIO_free(bio);
    free(pem);
    return out;
}

/* Both ways to issue for a CSR: from its decoded key (ca_issue) and from its SubjectPublicKeyInfo
 * as sent (ca_issue_csr), for an EC and an RSA key: same subject, same key, same profile. */
static void test_issue_from_csr(const struct ca *ca)
{
    struct iot_error err = {0};
    EVP_PKEY *keys[] = {ec256, rsa2048};
    for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++) {
        for (int as_sent = 0; as_sent <= 1; as_sent++) {
            X509_REQ *req = NULL;
            X509 *cert = NULL;
            char line[256];
            char *pem = csr_pem_for(keys[k], CSR_SUBJECT);
            CHECK_INT(ca_csr_parse(pem, strlen(pem), &req, &err), IOT_OK);
            free(pem);
            if (req == NULL)
                return;
            enum iot_err rc = as_sent ? ca_issue_csr(ca, req, &cert, &err)
                                      : ca_issue(ca, X509_REQ_get0_pubkey(req),
                                                 X509_REQ_get_subject_name(req), &cert, &err);
            CHECK_INT(rc, IOT_OK);
            X509 *got = cert ? reparsed(cert) : NULL;
            CHECK(got != NULL);
            if (got != NULL) {
                CHECK_STR(X509_NAME_oneline(X509_get_subject_name(got), line, sizeof(line)),
                          CSR_SUBJECT);
                CHECK_INT(X509_NAME_cmp(X509_get_subject_name(got), X509_REQ_get_subject_name(req)),
                          0);
                CHECK(same_spki(got, req));
                check_device_cert(got, ca_certificate(ca), keys[k]);
                test_cert_id(cert);
            }
            X509_free(got);
            X509_free(cert);
            X509_REQ_free(req);
        }
    }
    X509 *cert = NULL;
    CHECK_INT(ca_issue_csr(ca, NULL, &cert, &err), IOT_ERR_INTERNAL);
    CHECK(cert == NULL);
}

/* ca_issue() from several threads at once on one struct ca (the worker pool's use). */
#define THREADS 4
#define PER_THREAD 6
struct issue_job {
    const struct ca *ca;
    char ids[PER_THREAD][CA_ID_LEN + 1];
    int ok;
};

static void *issue_worker(void *arg)
{
    struct issue_job *job = arg;
    for (int i = 0; i < PER_THREAD; i++) {
        X509 *cert = NULL;
        job->ok += ca_issue(job->ca, ec256, NULL, &cert, NULL) == IOT_OK && cert != NULL &&
                   X509_verify(cert, X509_get0_pubkey(ca_certificate(job->ca))) == 1 &&
                   ca_cert_id(cert, job->ids[i]) == IOT_OK;
        X509_free(cert);
    }
    return NULL;
}

static void test_issue_threads(const struct ca *ca)
{
    static struct issue_job jobs[THREADS];
    pthread_t tids[THREADS];
    for (int t = 0; t < THREADS; t++) {
        jobs[t].ca = ca;
        CHECK_INT(pthread_create(&tids[t], NULL, issue_worker, &jobs[t]), 0);
    }
    for (int t = 0; t < THREADS; t++)
        CHECK_INT(pthread_join(tids[t], NULL), 0);
    int distinct = 1;
    for (int a = 0; a < THREADS * PER_THREAD; a++) {
        CHECK_INT(jobs[a / PER_THREAD].ok, PER_THREAD);
        for (int b = a + 1; b < THREADS * PER_THREAD; b++)
            distinct &= strcmp(jobs[a / PER_THREAD].ids[a % PER_THREAD],
                               jobs[b / PER_THREAD].ids[b % PER_THREAD]) != 0;
    }
    CHECK(distinct);
}

/* ---- server certificate ---- */

static void test_server_refused(const struct ca *ca)
{
    struct iot_error err = {0};
    X509 *cert = (X509 *)&err;
    CHECK_INT(ca_issue_server(ca, rsa2048, "", &cert, &err), IOT_ERR_INVALID_REQUEST);
    CHECK(cert == NULL);
    CHECK_INT(ca_issue_server(ca, rsa2048, NULL, &cert, &err), IOT_ERR_INVALID_REQUEST);
    CHECK_INT(ca_issue_server(ca, NULL, "myhost.example", &cert, &err), IOT_ERR_INVALID_REQUEST);
    CHECK(cert == NULL);
}

static void check_server_common(X509 *cert, X509 *root)
{
    CHECK_INT(X509_check_host(cert, "localhost", 0, 0, NULL), 1);
    CHECK_INT(X509_check_ip_asc(cert, "127.0.0.1", 0), 1);
    CHECK_INT(X509_check_ip_asc(cert, "::1", 0), 1);
    CHECK_INT(X509_check_host(cert, "other.example", 0, 0, NULL), 0);
    CHECK_INT(X509_check_ip_asc(cert, "10.0.0.1", 0), 0);
    CHECK_INT(X509_get_extended_key_usage(cert), XKU_SSL_SERVER);
    CHECK_INT(X509_get_key_usage(cert), KU_DIGITAL_SIGNATURE | KU_KEY_ENCIPHERMENT);
    CHECK_INT(X509_check_ca(cert), 0);
    CHECK_INT(X509_check_purpose(cert, X509_PURPOSE_SSL_SERVER, 0), 1);
    CHECK_INT(X509_check_purpose(cert, X509_PURPOSE_SSL_CLIENT, 0), 0);
    CHECK_INT(X509_get_signature_nid(cert), NID_sha256WithRSAEncryption);
    CHECK(chain_verifies(root, cert));
    check_serial(cert);
    int days = 0, secs = 0;
    CHECK_INT(ASN1_TIME_diff(&days, &secs, X509_get0_notBefore(cert), X509_get0_notAfter(cert)), 1);
    CHECK_INT(days, 3650);
    CHECK_INT(secs, 0);
}

static void test_server_cert(const struct ca *ca)
{
    static const struct {
        const char *host, *subject;
        int names;
    } cases[] = {
        {"myhost.example", "/CN=myhost.example", 4}, /* DNS:host, DNS:localhost, IP x2 */
        {"192.0.2.7", "/CN=192.0.2.7", 4},           /* IP:host, DNS:localhost, IP x2 */
        {"localhost", "/CN=localhost", 3},           /* not listed twice */
        {"::1", "/CN=::1", 3},
    };
    char line[256];
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct iot_error err = {0};
        X509 *cert = NULL;
        CHECK_INT(ca_issue_server(ca, rsa2048, cases[i].host, &cert, &err), IOT_OK);
        CHECK(cert != NULL);
        if (cert == NULL)
            continue;
        CHECK_STR(X509_NAME_oneline(X509_get_subject_name(cert), line, sizeof(line)),
                  cases[i].subject);
        CHECK_INT(name_count(cert), cases[i].names);
        check_server_common(cert, ca_certificate(ca));
        X509_free(cert);
    }
    X509 *cert = NULL;
    CHECK_INT(ca_issue_server(ca, rsa2048, "myhost.example", &cert, NULL), IOT_OK);
    CHECK(cert != NULL && X509_check_host(cert, "myhost.example", 0, 0, NULL) == 1);
    CHECK(cert != NULL && X509_check_ip_asc(cert, "192.0.2.7", 0) == 0);
    X509_free(cert);
    cert = NULL;
    CHECK_INT(ca_issue_server(ca, rsa2048, "192.0.2.7", &cert, NULL), IOT_OK);
    CHECK(cert != NULL && X509_check_ip_asc(cert, "192.0.2.7", 0) == 1);
    /* The address is an IP name only, not also a DNS name. */
    CHECK(cert != NULL && X509_check_host(cert, "192.0.2.7", 0, 0, NULL) == 0);
    X509_free(cert);
}

/* ---- PEM and files ---- */

static void check_key_pem(EVP_PKEY *key, const char *begin, const char *end)
{
    char *pem = ca_key_to_pem(key);
    CHECK(pem != NULL);
    if (pem == NULL)
        return;
    CHECK(strncmp(pem, begin, strlen(begin)) == 0);
    size_t len = strlen(pem);
    CHECK(len > strlen(end) && strcmp(pem + len - strlen(end), end) == 0);
    CHECK(strchr(pem, '\r') == NULL);
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    EVP_PKEY *back = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
    CHECK(back != NULL && EVP_PKEY_eq(back, key) == 1);
    EVP_PKEY_free(back);
    BIO_free(bio);
    free(pem);
}

static void test_pem(const struct ca *ca)
{
    check_key_pem(rsa2048, RSA_KEY_BEGIN, "-----END RSA PRIVATE KEY-----\n");
    check_key_pem(ec256, EC_KEY_BEGIN, "-----END EC PRIVATE KEY-----\n");

    struct iot_error err = {0};
    X509 *back = (X509 *)&err;
    CHECK_INT(ca_cert_from_pem("", 0, &back, &err), IOT_ERR_INVALID_REQUEST);
    CHECK(back == NULL);
    CHECK_INT(ca_cert_from_pem("garbage", 7, &back, &err), IOT_ERR_INVALID_REQUEST);
    CHECK(back == NULL);

    char *pem = need(ca_cert_to_pem(ca_certificate(ca)), "ca_cert_to_pem");
    CHECK(strncmp(pem, "-----BEGIN CERTIFICATE-----\n", 28) == 0);
    CHECK(strchr(pem, '\r') == NULL);
    check_csr_refused(pem, 0, NULL);
    CHECK_INT(ca_cert_from_pem(pem, strlen(pem) / 2, &back, &err), IOT_ERR_INVALID_REQUEST);
    CHECK_INT(ca_cert_from_pem(pem, strlen(pem), &back, &err), IOT_OK);
    CHECK(back != NULL && X509_cmp(back, ca_certificate(ca)) == 0);
    X509_free(back);
    free(pem);

    char *csr = csr_pem_for(ec256, "/CN=x");
    CHECK(strncmp(csr, "-----BEGIN CERTIFICATE REQUEST-----\n", 36) == 0);
    free(csr);
}

static void test_write_file(void)
{
    char dir[256], path[512], tmp[520];
    struct iot_error err = {0};
    struct stat st;
    make_dir(dir, sizeof(dir), "write");
    path_join(path, sizeof(path), dir, "f.txt");
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);

    write_text(tmp, "stale temporary\n");
    CHECK_INT(chmod(tmp, 0666), 0);
    mode_t old_mask = umask(077); /* the mode asked for wins over the umask */
    CHECK_INT(ca_write_file(path, "one\n", 0640, &err), IOT_OK);
    umask(old_mask);
    CHECK_INT(stat(path, &st), 0);
    CHECK_INT(st.st_mode & 07777, 0640);
    CHECK_INT(access(tmp, F_OK), -1);
    char *text = read_text(path);
    CHECK_STR(text, "one\n");
    free(text);

    CHECK_INT(ca_write_file(path, "two\n", 0600, &err), IOT_OK);
    CHECK_INT(stat(path, &st), 0);
    CHECK_INT(st.st_mode & 07777, 0600);
    text = read_text(path);
    CHECK_STR(text, "two\n");
    free(text);
    CHECK_INT(count_entries(dir), 1);

    path_join(path, sizeof(path), dir, "missing/f.txt");
    CHECK_INT(ca_write_file(path, "x", 0600, &err), IOT_ERR_IO);
    CHECK_INT(err.code, IOT_ERR_IO);
}

static void test_generate_refused(void)
{
    struct iot_error err = {0};
    EVP_PKEY *key = (EVP_PKEY *)&err;
    CHECK_INT(ca_generate_ec("no-such-curve", &key, &err), IOT_ERR_INTERNAL);
    CHECK(key == NULL);
    key = (EVP_PKEY *)&err;
    CHECK_INT(ca_generate_rsa(0, &key, &err), IOT_ERR_INTERNAL);
    CHECK(key == NULL);
}

int main(void)
{
    char dir[256];
    umask(022);
    if (mkdtemp(tmp_root) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    CHECK_INT(ca_generate_rsa(2048, &rsa2048, NULL), IOT_OK);
    CHECK_INT(ca_generate_rsa(1024, &rsa1024, NULL), IOT_OK);
    CHECK_INT(ca_generate_ec("P-256", &ec256, NULL), IOT_OK);
    if (rsa2048 == NULL || rsa1024 == NULL || ec256 == NULL)
        return check_summary();

    test_generate_refused();
    test_open_refuses_half_pairs();
    test_write_file();
    struct ca *ca = test_open_creates_then_loads(dir, sizeof(dir));
    if (ca != NULL) {
        test_open_refuses_bad_pairs(dir);

        char *good = csr_pem_for(rsa2048, CSR_SUBJECT);
        test_csr_refused_inputs(good, ca_certificate(ca));
        test_csr_refused_der(good);
        test_csr_refused_signature(good);
        test_csr_refused_keys();
        test_make_csr_refused();
        test_csr_accepted_keys();
        test_csr_length(good);
        free(good);

        test_issue_default_subject(ca);
        test_issue_from_csr(ca);
        test_issue_threads(ca);
        test_server_refused(ca);
        test_server_cert(ca);
        test_pem(ca);
        ca_free(ca);
    }
    EVP_PKEY_free(rsa2048);
    EVP_PKEY_free(rsa1024);
    EVP_PKEY_free(ec256);
    remove_tree(tmp_root);
    return check_summary();
}
