/* Unit tests for emulator/capath.c: the hashed certificate directory the broker's TLS layer reads.
 * Refusals first (nothing changes), then the layout against OpenSSL's own tools (`openssl x509
 * -hash`, `openssl rehash`, `openssl verify -CApath`) and its lookup API, hash collisions, and
 * updates that keep what stays. */
#include <dirent.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "ca.h"
#include "capath.h"
#include "check.h"

#define DAY 86400L

static char tmp_root[] = "/tmp/test_capath.XXXXXX";
static EVP_PKEY *root_key, *ca_key, *twin_key, *dev_key;
static bool have_openssl_cli;

static void path_join(char *out, size_t size, const char *dir, const char *name)
{
    snprintf(out, size, "%s/%s", dir, name);
}

static void add_ext(X509 *cert, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, issuer ? issuer : cert, cert, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    CHECK(ext != NULL && X509_add_ext(cert, ext, -1) == 1);
    X509_EXTENSION_free(ext);
}

/* A certificate for KEY named CN, issued by ISSUER (NULL: self-signed); AKI ties it to the
 * issuer's key so that OpenSSL tells apart two CAs with one subject. */
static X509 *make(const char *cn, EVP_PKEY *key, X509 *issuer, EVP_PKEY *issuer_key, bool ca)
{
    static long serial = 1;
    X509 *c = X509_new();
    X509_NAME *name = X509_NAME_new();
    X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8, (const unsigned char *)"iotmock", -1, -1,
                               0);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1, -1, 0);
    X509_set_version(c, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(c), serial++);
    X509_set_subject_name(c, name);
    X509_set_issuer_name(c, issuer ? X509_get_subject_name(issuer) : name);
    X509_gmtime_adj(X509_getm_notBefore(c), -DAY);
    X509_gmtime_adj(X509_getm_notAfter(c), 365 * DAY);
    X509_set_pubkey(c, key);
    add_ext(c, issuer, NID_basic_constraints, ca ? "critical,CA:TRUE" : "CA:FALSE");
    add_ext(c, issuer, NID_subject_key_identifier, "hash");
    add_ext(c, issuer, NID_authority_key_identifier, "keyid:always");
    CHECK(X509_sign(c, issuer_key ? issuer_key : key, EVP_sha256()) > 0);
    X509_NAME_free(name);
    return c;
}

static EVP_PKEY *key_new(void)
{
    EVP_PKEY *k = NULL;
    CHECK_INT(ca_generate_ec("P-256", &k, NULL), IOT_OK);
    return k;
}

/* Sorted, space-separated names of DIR's entries (not . and ..); "" when empty or absent. */
static void listing(const char *dir, char *out, size_t size)
{
    struct dirent **names = NULL;
    int n = scandir(dir, &names, NULL, alphasort);
    out[0] = '\0';
    for (int i = 0; i < n; i++) {
        if (strcmp(names[i]->d_name, ".") != 0 && strcmp(names[i]->d_name, "..") != 0) {
            size_t len = strlen(out);
            snprintf(out + len, size - len, "%s%s", len ? " " : "", names[i]->d_name);
        }
        free(names[i]);
    }
    free(names);
}

static X509 *read_cert(const char *path)
{
    BIO *bio = BIO_new_file(path, "r");
    X509 *c = bio ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
    BIO_free(bio);
    return c;
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

static void write_cert(const char *path, X509 *c)
{
    char *pem = ca_cert_to_pem(c);
    write_text(path, pem);
    free(pem);
}

static void make_dir(char *out, size_t size, const char *name)
{
    path_join(out, size, tmp_root, name);
    CHECK_INT(mkdir(out, 0755), 0);
}

static enum iot_err sync_certs(const char *dir, X509 *const *certs, size_t n, struct iot_error *err)
{
    char *pems[16] = {0};
    for (size_t i = 0; i < n; i++)
        pems[i] = ca_cert_to_pem(certs[i]);
    enum iot_err rc = capath_sync(dir, (const char *const *)pems, n, err);
    for (size_t i = 0; i < n; i++)
        free(pems[i]);
    return rc;
}

/* The certificate at DIR/NAME is CERT. */
static bool holds(const char *dir, const char *name, X509 *cert)
{
    char path[512];
    path_join(path, sizeof(path), dir, name);
    X509 *c = read_cert(path);
    bool same = c != NULL && X509_cmp(c, cert) == 0;
    X509_free(c);
    return same;
}

static void name_of(X509 *cert, unsigned int n, char out[CAPATH_NAME_MAX])
{
    CHECK_INT(capath_name(cert, n, out), IOT_OK);
}

/* OpenSSL's hashed-directory lookup, as a TLS server configured with capath uses it. */
static bool api_verifies(const char *dir, X509 *cert)
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

/* `openssl verify -CApath DIR cert.pem`; true when the tool is absent (the API check stands). */
static bool cli_verifies(const char *dir, X509 *cert, bool expected)
{
    if (!have_openssl_cli)
        return expected;
    char pem_path[512], cmd[1200];
    path_join(pem_path, sizeof(pem_path), tmp_root, "candidate.pem");
    write_cert(pem_path, cert);
    snprintf(cmd, sizeof(cmd), "openssl verify -CApath '%s' '%s' >/dev/null 2>&1", dir, pem_path);
    int rc = system(cmd);
    unlink(pem_path);
    return rc == 0;
}

/* ---- refusals ------------------------------------------------------------------------------ */

static void test_refusals(X509 *root, X509 *ca)
{
    char dir[512], before[2048], after[2048], file[512];
    struct iot_error err = {0};
    make_dir(dir, sizeof(dir), "refusals");
    X509 *set[] = {root, ca};
    CHECK_INT(sync_certs(dir, set, 2, NULL), IOT_OK);
    listing(dir, before, sizeof(before));

    CHECK_INT(capath_sync(NULL, NULL, 0, &err), IOT_ERR_INVALID_REQUEST);
    CHECK_INT(capath_sync("", NULL, 0, &err), IOT_ERR_INVALID_REQUEST);
    CHECK_INT(capath_sync(dir, NULL, 1, &err), IOT_ERR_INVALID_REQUEST);
    char *root_pem = ca_cert_to_pem(root);
    const char *bad[] = {root_pem,
                         "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"};
    CHECK_INT(capath_sync(dir, bad, 2, &err), IOT_ERR_INVALID_REQUEST);
    CHECK(strstr(err.message, "PEM 1") != NULL);
    const char *null_pem[] = {NULL};
    CHECK_INT(capath_sync(dir, null_pem, 1, &err), IOT_ERR_INVALID_REQUEST);
    CHECK(strstr(err.message, "PEM 0") != NULL);
    const char **many = calloc(CAPATH_MAX_CERTS + 1, sizeof(*many));
    CHECK_INT(capath_sync(dir, many, CAPATH_MAX_CERTS + 1, &err), IOT_ERR_INVALID_REQUEST);
    free(many);
    listing(dir, after, sizeof(after));
    CHECK_STR(after, before); /* nothing changed */
    /* a file where the directory should be */
    path_join(file, sizeof(file), tmp_root, "a-file");
    write_text(file, "x");
    const char *good[] = {root_pem};
    CHECK_INT(capath_sync(file, good, 1, &err), IOT_ERR_IO);
    CHECK(strstr(err.message, "not a directory") != NULL);
    free(root_pem);
}

/* ---- names as OpenSSL makes them ------------------------------------------------------------- */

static void test_names(X509 *root, X509 *ca)
{
    char name[CAPATH_NAME_MAX], expected[CAPATH_NAME_MAX];
    int ok = 0;
    unsigned long h = X509_NAME_hash_ex(X509_get_subject_name(ca), NULL, NULL, &ok);
    CHECK_INT(ok, 1);
    snprintf(expected, sizeof(expected), "%08lx.3", h);
    name_of(ca, 3, name);
    CHECK_STR(name, expected);
    CHECK_INT(capath_name(NULL, 0, name), IOT_ERR_INTERNAL);
    CHECK_STR(name, "");
    if (!have_openssl_cli)
        return;
    /* `openssl x509 -hash` prints the same hash */
    char pem_path[512], cmd[700], line[64] = "";
    path_join(pem_path, sizeof(pem_path), tmp_root, "hash.pem");
    write_cert(pem_path, root);
    snprintf(cmd, sizeof(cmd), "openssl x509 -hash -noout -in '%s'", pem_path);
    FILE *p = popen(cmd, "r");
    CHECK(p != NULL && fgets(line, sizeof(line), p) != NULL);
    if (p)
        pclose(p);
    line[strcspn(line, "\n")] = '\0';
    name_of(root, 0, name);
    char cli_name[96];
    snprintf(cli_name, sizeof(cli_name), "%s.0", line);
    CHECK_STR(name, cli_name);
    unlink(pem_path);
}

/* The same certificates through `openssl rehash`: the same hashed names. */
static void test_like_rehash(X509 *root, X509 *ca, X509 *twin)
{
    char ours[512], theirs[512], mine[2048], rehashed[2048], path[600], cmd[700];
    if (!have_openssl_cli)
        return;
    make_dir(ours, sizeof(ours), "ours");
    make_dir(theirs, sizeof(theirs), "theirs");
    X509 *set[] = {root, ca, twin};
    CHECK_INT(sync_certs(ours, set, 3, NULL), IOT_OK);
    const char *files[] = {"root.pem", "ca.pem", "twin.pem"};
    for (int i = 0; i < 3; i++) {
        path_join(path, sizeof(path), theirs, files[i]);
        write_cert(path, set[i]);
    }
    snprintf(cmd, sizeof(cmd), "openssl rehash '%s' >/dev/null 2>&1", theirs);
    CHECK_INT(system(cmd), 0);
    for (int i = 0; i < 3; i++) { /* keep only the links rehash made */
        path_join(path, sizeof(path), theirs, files[i]);
        unlink(path);
    }
    listing(ours, mine, sizeof(mine));
    listing(theirs, rehashed, sizeof(rehashed));
    CHECK_STR(mine, rehashed);
}

/* ---- contents and verification -------------------------------------------------------------- */

static void test_verify(X509 *root, X509 *ca)
{
    char dir[512], list[2048], expected[2048], root_name[CAPATH_NAME_MAX], ca_name[CAPATH_NAME_MAX];
    path_join(dir, sizeof(dir), tmp_root, "created/by/sync"); /* the parent does not exist */
    X509 *set[] = {root, ca};
    CHECK_INT(sync_certs(dir, set, 2, NULL), IOT_ERR_IO);
    path_join(dir, sizeof(dir), tmp_root, "verify"); /* absent: made by capath_sync */
    X509 *dev = make("device-1", dev_key, ca, ca_key, false);
    X509 *root_dev = make("device-2", dev_key, root, root_key, false);
    CHECK(!api_verifies(tmp_root, dev));

    CHECK_INT(sync_certs(dir, set, 2, NULL), IOT_OK);
    name_of(root, 0, root_name);
    name_of(ca, 0, ca_name);
    snprintf(expected, sizeof(expected), "%s %s",
             strcmp(root_name, ca_name) < 0 ? root_name : ca_name,
             strcmp(root_name, ca_name) < 0 ? ca_name : root_name);
    listing(dir, list, sizeof(list));
    CHECK_STR(list, expected);
    CHECK(holds(dir, root_name, root) && holds(dir, ca_name, ca));
    struct stat st;
    char path[600];
    path_join(path, sizeof(path), dir, ca_name);
    CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0644);
    CHECK(api_verifies(dir, dev));
    CHECK(cli_verifies(dir, dev, true));
    CHECK(api_verifies(dir, root_dev));

    /* the CA leaves the set: its devices no longer verify, the root's still do */
    CHECK_INT(sync_certs(dir, set, 1, NULL), IOT_OK);
    listing(dir, list, sizeof(list));
    CHECK_STR(list, root_name);
    CHECK(!api_verifies(dir, dev));
    CHECK(!cli_verifies(dir, dev, false));
    CHECK(cli_verifies(dir, root_dev, true));
    /* nothing at all */
    CHECK_INT(sync_certs(dir, NULL, 0, NULL), IOT_OK);
    listing(dir, list, sizeof(list));
    CHECK_STR(list, "");
    X509_free(dev);
    X509_free(root_dev);
}

/* Two CAs with one subject share a hash: .0 and .1, both usable; what stays keeps its name. */
static void test_collisions(X509 *ca, X509 *twin)
{
    char dir[512], list[2048], n0[CAPATH_NAME_MAX], n1[CAPATH_NAME_MAX], path[600];
    struct stat before, after;
    make_dir(dir, sizeof(dir), "collide");
    X509 *dev = make("device-a", dev_key, ca, ca_key, false);
    X509 *twin_dev = make("device-b", dev_key, twin, twin_key, false);
    name_of(ca, 0, n0);
    name_of(ca, 1, n1);

    /* the one already there is the one a fresh placement (by id) would put second */
    char ca_id[CA_ID_LEN + 1], twin_id[CA_ID_LEN + 1];
    CHECK_INT(ca_cert_id(ca, ca_id), IOT_OK);
    CHECK_INT(ca_cert_id(twin, twin_id), IOT_OK);
    X509 *old = strcmp(ca_id, twin_id) > 0 ? ca : twin, *young = old == ca ? twin : ca;
    X509 *first[] = {old};
    CHECK_INT(sync_certs(dir, first, 1, NULL), IOT_OK);
    path_join(path, sizeof(path), dir, n0);
    CHECK_INT(stat(path, &before), 0);
    X509 *both[] = {young, old, old}; /* the duplicate is kept once */
    CHECK_INT(sync_certs(dir, both, 3, NULL), IOT_OK);
    char expected[64];
    snprintf(expected, sizeof(expected), "%s %s", n0, n1);
    listing(dir, list, sizeof(list));
    CHECK_STR(list, expected);
    CHECK(holds(dir, n0, old));   /* stays where it was */
    CHECK(holds(dir, n1, young)); /* the newcomer goes after it */
    CHECK_INT(stat(path, &after), 0);
    CHECK(before.st_ino == after.st_ino); /* not rewritten */
    CHECK(api_verifies(dir, dev) && api_verifies(dir, twin_dev));
    CHECK(cli_verifies(dir, dev, true) && cli_verifies(dir, twin_dev, true));

    /* the first leaves: the suffixes stay contiguous (OpenSSL stops at the first gap) */
    X509 *second[] = {young};
    CHECK_INT(sync_certs(dir, second, 1, NULL), IOT_OK);
    listing(dir, list, sizeof(list));
    CHECK_STR(list, n0);
    CHECK(holds(dir, n0, young));
    X509 *gone_dev = old == ca ? dev : twin_dev, *kept_dev = old == ca ? twin_dev : dev;
    CHECK(!api_verifies(dir, gone_dev) && api_verifies(dir, kept_dev));
    X509_free(dev);
    X509_free(twin_dev);
}

/* Entries OpenSSL would read but that are not in the set go; other files stay. */
static void test_foreign_entries(X509 *root)
{
    char dir[512], list[2048], path[600], name[CAPATH_NAME_MAX];
    make_dir(dir, sizeof(dir), "foreign");
    name_of(root, 0, name);
    const char *stale[] = {"deadbeef.0", "deadbeef.1", "deadbeef.0.tmp",
                           "README",     "ca.pem",     "DEADBEEF.0"};
    for (size_t i = 0; i < sizeof(stale) / sizeof(stale[0]); i++) {
        path_join(path, sizeof(path), dir, stale[i]);
        write_text(path, "not a certificate\n");
    }
    path_join(path, sizeof(path), dir, name); /* garbage under the right name: replaced */
    write_text(path, "garbage\n");
    X509 *set[] = {root};
    CHECK_INT(sync_certs(dir, set, 1, NULL), IOT_OK);
    static const struct {
        const char *name;
        bool stays;
    } after[] = {
        {"deadbeef.0", false}, {"deadbeef.1", false}, {"deadbeef.0.tmp", false},
        {"README", true},      {"ca.pem", true},      {"DEADBEEF.0", true}, /* not a hash name */
    };
    for (size_t i = 0; i < sizeof(after) / sizeof(after[0]); i++) {
        path_join(path, sizeof(path), dir, after[i].name);
        CHECK_INT(access(path, F_OK) == 0, after[i].stays);
    }
    listing(dir, list, sizeof(list));
    CHECK(strstr(list, name) != NULL);
    CHECK_INT(strlen(list), strlen(name) + strlen(" DEADBEEF.0 README ca.pem"));
    CHECK(holds(dir, name, root));
}

static void remove_tree(const char *dir)
{
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    CHECK_INT(system(cmd), 0);
}

int main(void)
{
    CHECK(mkdtemp(tmp_root) != NULL);
    have_openssl_cli = system("openssl version >/dev/null 2>&1") == 0;
    if (!have_openssl_cli)
        fprintf(stderr, "note: no openssl command; the CLI comparisons are skipped\n");
    root_key = key_new();
    ca_key = key_new();
    twin_key = key_new();
    dev_key = key_new();
    X509 *root = make("iotmock root", root_key, NULL, NULL, true);
    X509 *ca = make("Customer CA", ca_key, NULL, NULL, true);
    X509 *twin = make("Customer CA", twin_key, NULL, NULL, true); /* same subject, other key */

    test_refusals(root, ca);
    test_names(root, ca);
    test_like_rehash(root, ca, twin);
    test_verify(root, ca);
    test_collisions(ca, twin);
    test_foreign_entries(root);

    X509_free(root);
    X509_free(ca);
    X509_free(twin);
    EVP_PKEY_free(root_key);
    EVP_PKEY_free(ca_key);
    EVP_PKEY_free(twin_key);
    EVP_PKEY_free(dev_key);
    remove_tree(tmp_root);
    return check_summary();
}
