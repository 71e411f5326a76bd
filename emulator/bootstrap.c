/* State directory and registry seeding. */
#include "bootstrap.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "ca.h"
#include "template.h"

char *bootstrap_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    char *buf = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (n + 4096 + 1 > cap) {
            cap = cap ? cap * 2 : 8192;
            char *grown = realloc(buf, cap);
            if (grown == NULL) {
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = grown;
        }
        size_t got = fread(buf + n, 1, 4096, f);
        n += got;
        if (got < 4096)
            break;
    }
    int failed = ferror(f);
    fclose(f);
    if (failed) {
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    if (len)
        *len = n;
    return buf;
}

/* DIR/NAME into OUT; a path too long for OUT is cut to "" so it names no file at all. */
static void join(char *out, size_t out_len, const char *dir, const char *name)
{
    int n = snprintf(out, out_len, "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= out_len)
        out[0] = '\0';
}

static int exists(const char *path)
{
    return access(path, F_OK) == 0;
}

static X509 *load_cert(const char *path)
{
    size_t len = 0;
    char *pem = bootstrap_read_file(path, &len);
    X509 *cert = NULL;
    if (pem)
        ca_cert_from_pem(pem, len, &cert, NULL);
    free(pem);
    return cert;
}

/* Writes a new key and a certificate issued for it. SERVER_HOST NULL = a claim certificate. */
static enum iot_err write_pair(const struct ca *ca, const char *cert_path, const char *key_path,
                               const char *server_host, struct iot_error *err)
{
    EVP_PKEY *key = NULL;
    X509 *cert = NULL;
    char *cert_pem = NULL, *key_pem = NULL;
    enum iot_err rc = ca_generate_rsa(2048, &key, err);
    if (rc != IOT_OK)
        goto cleanup;
    rc = server_host ? ca_issue_server(ca, key, server_host, &cert, err)
                     : ca_issue(ca, key, NULL, &cert, err);
    if (rc != IOT_OK)
        goto cleanup;
    cert_pem = ca_cert_to_pem(cert);
    key_pem = ca_key_to_pem(key);
    if (cert_pem == NULL || key_pem == NULL) {
        rc = iot_error_set(err, IOT_ERR_NOMEM, "could not encode %s", cert_path);
        goto cleanup;
    }
    if ((rc = ca_write_file(key_path, key_pem, 0600, err)) != IOT_OK)
        goto cleanup;
    rc = ca_write_file(cert_path, cert_pem, 0644, err);
cleanup:
    free(cert_pem);
    free(key_pem);
    X509_free(cert);
    EVP_PKEY_free(key);
    return rc;
}

static EVP_PKEY *load_key(const char *path)
{
    BIO *bio = BIO_new_file(path, "r");
    EVP_PKEY *key = bio ? PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL) : NULL;
    BIO_free(bio);
    ERR_clear_error();
    return key;
}

/* The server pair is re-issued when the certificate does not name HOST any more, or when either
 * file is unreadable or they do not belong together: both are derived from the CA, which is what
 * devices trust, so new ones serve as well as the old ones did. */
static int server_pair_current(const char *cert_path, const char *key_path, const char *host)
{
    X509 *cert = load_cert(cert_path);
    EVP_PKEY *key = cert ? load_key(key_path) : NULL;
    int ok = key != NULL && X509_check_private_key(cert, key) == 1 &&
             (X509_check_host(cert, host, 0, 0, NULL) == 1 ||
              X509_check_ip_asc(cert, host, 0) == 1);
    ERR_clear_error();
    EVP_PKEY_free(key);
    X509_free(cert);
    return ok;
}

/* The claim pair is handed to devices, so it is never replaced behind the user's back: a
 * damaged one is an error that says what to do. */
static enum iot_err check_claim_pair(const char *cert_path, const char *key_path,
                                     struct iot_error *err)
{
    X509 *cert = load_cert(cert_path);
    EVP_PKEY *key = cert ? load_key(key_path) : NULL;
    enum iot_err rc = IOT_OK;
    if (cert == NULL)
        rc = iot_error_set(err, IOT_ERR_IO,
                           "%s is not a PEM certificate (remove it and %s to issue a new claim "
                           "certificate)", cert_path, key_path);
    else if (key == NULL)
        rc = iot_error_set(err, IOT_ERR_IO,
                           "%s is not a PEM private key (remove it and %s to issue a new claim "
                           "certificate)", key_path, cert_path);
    else if (X509_check_private_key(cert, key) != 1)
        rc = iot_error_set(err, IOT_ERR_IO, "%s is not the key of %s", key_path, cert_path);
    ERR_clear_error();
    EVP_PKEY_free(key);
    X509_free(cert);
    return rc;
}

/* A first start killed between writing root-ca.key and root-ca.pem leaves the key alone, and
 * ca_open() refuses a key without its certificate. When nothing else is in the directory yet,
 * nothing was ever issued with that key: it is moved aside (root-ca.key.orphaned) and a new CA
 * is made. */
static enum iot_err set_aside_orphan_ca_key(const char *state_dir, struct iot_error *err)
{
    static const char *const later[] = {CA_CERT_FILE,        BOOTSTRAP_SERVER_CERT,
                                        BOOTSTRAP_SERVER_KEY, BOOTSTRAP_CLAIM_CERT,
                                        BOOTSTRAP_CLAIM_KEY,  BOOTSTRAP_REGISTRY};
    char key[4096], path[4096], aside[4200];
    join(key, sizeof(key), state_dir, CA_KEY_FILE);
    if (!exists(key))
        return IOT_OK;
    for (size_t i = 0; i < sizeof(later) / sizeof(later[0]); i++) {
        join(path, sizeof(path), state_dir, later[i]);
        if (exists(path))
            return IOT_OK;
    }
    snprintf(aside, sizeof(aside), "%s.orphaned", key);
    if (rename(key, aside) != 0)
        return iot_error_set(err, IOT_ERR_IO, "%s exists without %s/%s and cannot be moved aside: "
                             "%s", key, state_dir, CA_CERT_FILE, strerror(errno));
    return IOT_OK;
}

enum iot_err bootstrap_files(const char *state_dir, const char *host, struct iot_error *err)
{
    char cert[4096], key[4096];
    struct stat st;
    if (mkdir(state_dir, 0700) != 0 && errno != EEXIST)
        return iot_error_set(err, IOT_ERR_IO, "cannot create state directory %s: %s", state_dir,
                             strerror(errno));
    if (stat(state_dir, &st) != 0)
        return iot_error_set(err, IOT_ERR_IO, "cannot use state directory %s: %s", state_dir,
                             strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return iot_error_set(err, IOT_ERR_IO, "state directory %s is not a directory", state_dir);
    struct ca *ca = NULL;
    enum iot_err rc = set_aside_orphan_ca_key(state_dir, err);
    if (rc == IOT_OK)
        rc = ca_open(state_dir, &ca, err);
    if (rc != IOT_OK)
        return rc;
    join(cert, sizeof(cert), state_dir, BOOTSTRAP_SERVER_CERT);
    join(key, sizeof(key), state_dir, BOOTSTRAP_SERVER_KEY);
    if (!server_pair_current(cert, key, host))
        rc = write_pair(ca, cert, key, host, err);
    join(cert, sizeof(cert), state_dir, BOOTSTRAP_CLAIM_CERT);
    join(key, sizeof(key), state_dir, BOOTSTRAP_CLAIM_KEY);
    /* Neither file, or one alone (a first start killed in between): issue both. */
    if (rc == IOT_OK && (!exists(cert) || !exists(key)))
        rc = write_pair(ca, cert, key, NULL, err);
    else if (rc == IOT_OK)
        rc = check_claim_pair(cert, key, err);
    ca_free(ca);
    return rc;
}

/* ---- registry seed ------------------------------------------------------------------------- */

/* Replaces every {{region}} and {{account}} in TEXT; returns a malloc'd string. */
static char *substitute(const char *text, const char *region, const char *account)
{
    size_t cap = strlen(text) * 2 + 256;
    char *out = malloc(cap);
    if (out == NULL)
        return NULL;
    size_t n = 0;
    while (*text && n + 64 < cap) {
        const char *value = NULL;
        size_t skip = 0;
        if (strncmp(text, "{{region}}", 10) == 0)
            value = region, skip = 10;
        else if (strncmp(text, "{{account}}", 11) == 0)
            value = account, skip = 11;
        if (value) {
            size_t vl = strlen(value);
            if (n + vl + 64 >= cap)
                break;
            memcpy(out + n, value, vl);
            n += vl;
            text += skip;
        } else {
            out[n++] = *text++;
        }
    }
    out[n] = '\0';
    return out;
}

typedef enum iot_err (*file_loader)(struct registry *reg, const struct bootstrap_seed *seed,
                                    const cJSON *doc, const char *path, struct iot_error *err);

/* Calls LOAD for every *.json file of DIR, in name order. A missing DIR is not an error. */
static enum iot_err for_each_json(struct registry *reg, const struct bootstrap_seed *seed,
                                  const char *dir, file_loader load, struct iot_error *err)
{
    struct dirent **names = NULL;
    int n = scandir(dir, &names, NULL, alphasort);
    if (n < 0)
        return IOT_OK;
    enum iot_err rc = IOT_OK;
    for (int i = 0; i < n; i++) {
        const char *name = names[i]->d_name;
        size_t len = strlen(name);
        char path[4096];
        if (rc == IOT_OK && len > 5 && strcmp(name + len - 5, ".json") == 0) {
            join(path, sizeof(path), dir, name);
            char *text = bootstrap_read_file(path, NULL);
            cJSON *doc = text ? cJSON_Parse(text) : NULL;
            if (doc == NULL)
                rc = iot_error_set(err, IOT_ERR_INVALID_REQUEST, "%s is not valid JSON", path);
            else
                rc = load(reg, seed, doc, path, err);
            cJSON_Delete(doc);
            free(text);
        }
        free(names[i]);
    }
    free(names);
    return rc;
}

static enum iot_err load_policy(struct registry *reg, const struct bootstrap_seed *seed,
                                const cJSON *doc, const char *path, struct iot_error *err)
{
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(doc, "policyName");
    const cJSON *body = cJSON_GetObjectItemCaseSensitive(doc, "policyDocument");
    if (!cJSON_IsString(name) || !cJSON_IsObject(body))
        return iot_error_set(err, IOT_ERR_INVALID_REQUEST,
                             "%s: expected {\"policyName\": string, \"policyDocument\": object}",
                             path);
    char *existing = NULL;
    if (registry_policy_get(reg, name->valuestring, &existing, NULL) == IOT_OK) {
        free(existing); /* users may have edited it: never overwrite */
        return IOT_OK;
    }
    char *raw = cJSON_PrintUnformatted(body);
    char *text = raw ? substitute(raw, seed->region, seed->account_id) : NULL;
    enum iot_err rc = text ? registry_policy_create(reg, name->valuestring, text, err)
                           : iot_error_set(err, IOT_ERR_NOMEM, "out of memory");
    free(raw);
    free(text);
    return rc;
}

static char *dup_string(const cJSON *obj, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsString(v) ? strdup(v->valuestring) : NULL;
}

/* A template file holds the template resource as CreateProvisioningTemplate takes it, with
 * templateBody as a string or, for readability, an object. */
static enum iot_err load_template(struct registry *reg, const struct bootstrap_seed *seed,
                                  const cJSON *doc, const char *path, struct iot_error *err)
{
    const cJSON *body = cJSON_GetObjectItemCaseSensitive(doc, "templateBody");
    const cJSON *hook = cJSON_GetObjectItemCaseSensitive(doc, "preProvisioningHook");
    struct registry_template t = {0};
    t.name = dup_string(doc, "templateName");
    t.body = cJSON_IsString(body) ? strdup(body->valuestring) : cJSON_PrintUnformatted(body);
    t.type = dup_string(doc, "type");
    if (t.type == NULL)
        t.type = strdup("FLEET_PROVISIONING");
    t.description = dup_string(doc, "description");
    t.role_arn = dup_string(doc, "provisioningRoleArn");
    t.hook_target_arn = dup_string(hook, "targetArn");
    t.hook_payload_version = dup_string(hook, "payloadVersion");
    t.enabled = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(doc, "enabled"));
    enum iot_err rc;
    struct template *parsed = NULL;
    if (t.name == NULL || !template_name_valid(t.name) || t.body == NULL)
        rc = iot_error_set(err, IOT_ERR_INVALID_REQUEST,
                           "%s: needs a valid templateName and a templateBody", path);
    else if ((rc = template_parse(t.body, strlen(t.body), &parsed, err)) != IOT_OK)
        iot_error_set(err, rc, "%s: %s", path, err ? err->message : "invalid template");
    else
        rc = registry_template_put(reg, &t, err);
    template_free(parsed);
    registry_template_clear(&t);
    return rc;
}

static enum iot_err seed_claim(struct registry *reg, const struct bootstrap_seed *seed,
                               struct iot_error *err)
{
    char path[4096], id[CA_ID_LEN + 1];
    join(path, sizeof(path), seed->state_dir, BOOTSTRAP_CLAIM_CERT);
    size_t len = 0;
    char *pem = bootstrap_read_file(path, &len);
    X509 *cert = NULL;
    enum iot_err rc = pem ? ca_cert_from_pem(pem, len, &cert, err)
                          : iot_error_set(err, IOT_ERR_IO, "cannot read %s", path);
    if (pem != NULL && rc != IOT_OK)
        rc = iot_error_set(err, rc, "%s is not a PEM certificate", path);
    if (rc == IOT_OK && (rc = ca_cert_id(cert, id)) == IOT_OK) {
        enum cert_status status;
        if (registry_cert_status(reg, id, &status) == IOT_ERR_NOT_FOUND) {
            struct registry_cert c = {.pem = pem, .status = CERT_STATUS_ACTIVE};
            snprintf(c.id, sizeof(c.id), "%s", id);
            rc = registry_cert_insert(reg, &c, err);
            if (rc == IOT_OK)
                rc = registry_policy_attach(reg, BOOTSTRAP_CLAIM_POLICY, id, err);
        }
    }
    X509_free(cert);
    free(pem);
    return rc;
}

enum iot_err bootstrap_registry(struct registry *reg, const struct bootstrap_seed *seed,
                                struct iot_error *err)
{
    char dir[4096];
    enum iot_err rc = registry_begin(reg);
    if (rc != IOT_OK)
        return iot_error_set(err, rc, "registry unavailable");
    join(dir, sizeof(dir), seed->data_dir, "policies");
    rc = for_each_json(reg, seed, dir, load_policy, err);
    join(dir, sizeof(dir), seed->data_dir, "templates");
    if (rc == IOT_OK)
        rc = for_each_json(reg, seed, dir, load_template, err);
    if (rc == IOT_OK && seed->templates_dir)
        rc = for_each_json(reg, seed, seed->templates_dir, load_template, err);
    if (rc == IOT_OK)
        rc = seed_claim(reg, seed, err);
    if (rc != IOT_OK) {
        registry_rollback(reg);
        return rc;
    }
    return registry_commit(reg);
}
