/* cacert: registration code and registered CA certificates (see cacert.h for the contract).
 *
 * Every public call holds s->lock for its whole duration; a call that reads then writes does so
 * inside one BEGIN IMMEDIATE transaction, so two registrations of one CA cannot both pass the
 * duplicate check. */
#include "cacert.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include <sqlite3.h>
#include <uuid/uuid.h>

#include "template.h"

#define BUSY_TIMEOUT_MS 5000

struct cacert_store {
    sqlite3 *db;
    pthread_mutex_t lock;
};

static const char SCHEMA_SQL[] =
    "CREATE TABLE IF NOT EXISTS ca_certificates ("
    " id TEXT PRIMARY KEY NOT NULL, pem TEXT NOT NULL, subject_hash INTEGER NOT NULL,"
    " status TEXT NOT NULL CHECK (status IN ('ACTIVE', 'INACTIVE')),"
    " auto_registration TEXT NOT NULL CHECK (auto_registration IN ('ENABLE', 'DISABLE')),"
    " registration_config TEXT,"
    " certificate_mode TEXT NOT NULL CHECK (certificate_mode IN ('DEFAULT', 'SNI_ONLY')),"
    " not_before INTEGER NOT NULL, not_after INTEGER NOT NULL,"
    " customer_version INTEGER NOT NULL, generation_id TEXT NOT NULL,"
    " created INTEGER NOT NULL, modified INTEGER NOT NULL);"
    "CREATE INDEX IF NOT EXISTS ca_certificates_by_subject ON ca_certificates(subject_hash);"
    "CREATE INDEX IF NOT EXISTS ca_certificates_by_created ON ca_certificates(created, id);"
    "CREATE TABLE IF NOT EXISTS registration_code ("
    " one INTEGER PRIMARY KEY CHECK (one = 1), code TEXT NOT NULL, created INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS trusted_device_certificates (id TEXT PRIMARY KEY NOT NULL);"
    "CREATE TABLE IF NOT EXISTS sni_only_certificates (id TEXT PRIMARY KEY NOT NULL);";

#define RECORD_COLUMNS                                                                             \
    "id, pem, status, auto_registration, registration_config, certificate_mode, not_before,"       \
    " not_after, customer_version, generation_id, created, modified"

/* ---- names ------------------------------------------------------------------------------ */

static const char *const STATUS_NAMES[] = {"ACTIVE", "INACTIVE"};
static const char *const AUTO_NAMES[] = {"DISABLE", "ENABLE"};
static const char *const MODE_NAMES[] = {"DEFAULT", "SNI_ONLY"};

const char *cacert_status_name(enum cacert_status s)
{
    return (unsigned)s < 2 ? STATUS_NAMES[s] : "INACTIVE";
}

const char *cacert_auto_name(enum cacert_auto a)
{
    return (unsigned)a < 2 ? AUTO_NAMES[a] : "DISABLE";
}

const char *cacert_mode_name(enum cacert_mode m)
{
    return (unsigned)m < 2 ? MODE_NAMES[m] : "DEFAULT";
}

static bool name_index(const char *s, const char *const names[2], int *out)
{
    for (int i = 0; s != NULL && i < 2; i++) {
        if (strcmp(s, names[i]) == 0) {
            *out = i;
            return true;
        }
    }
    return false;
}

bool cacert_status_parse(const char *s, enum cacert_status *out)
{
    int i;
    if (!name_index(s, STATUS_NAMES, &i))
        return false;
    *out = (enum cacert_status)i;
    return true;
}

bool cacert_auto_parse(const char *s, enum cacert_auto *out)
{
    int i;
    if (!name_index(s, AUTO_NAMES, &i))
        return false;
    *out = (enum cacert_auto)i;
    return true;
}

bool cacert_mode_parse(const char *s, enum cacert_mode *out)
{
    int i;
    if (!name_index(s, MODE_NAMES, &i))
        return false;
    *out = (enum cacert_mode)i;
    return true;
}

/* ---- refusals --------------------------------------------------------------------------- */

static const struct {
    const char *name;
    unsigned int status;
    enum iot_err code;
} EXCEPTIONS[] = {
    [CACERT_EXC_NONE] = {"", 200, IOT_OK},
    [CACERT_EXC_INVALID_REQUEST] = {"InvalidRequestException", 400, IOT_ERR_INVALID_REQUEST},
    [CACERT_EXC_CERTIFICATE_VALIDATION] = {"CertificateValidationException", 400,
                                           IOT_ERR_INVALID_REQUEST},
    [CACERT_EXC_REGISTRATION_CODE] = {"RegistrationCodeValidationException", 400,
                                      IOT_ERR_INVALID_REQUEST},
    [CACERT_EXC_NOT_FOUND] = {"ResourceNotFoundException", 404, IOT_ERR_NOT_FOUND},
    [CACERT_EXC_CERTIFICATE_STATE] = {"CertificateStateException", 406, IOT_ERR_CERT_STATE},
    [CACERT_EXC_ALREADY_EXISTS] = {"ResourceAlreadyExistsException", 409, IOT_ERR_ALREADY_EXISTS},
    [CACERT_EXC_CERTIFICATE_CONFLICT] = {"CertificateConflictException", 409, IOT_ERR_CONFLICT},
    [CACERT_EXC_LIMIT_EXCEEDED] = {"LimitExceededException", 410, IOT_ERR_INVALID_REQUEST},
    [CACERT_EXC_INTERNAL] = {"InternalFailureException", 500, IOT_ERR_INTERNAL},
};

static bool exception_known(enum cacert_exception x)
{
    return (unsigned)x < sizeof(EXCEPTIONS) / sizeof(EXCEPTIONS[0]);
}

const char *cacert_exception_name(enum cacert_exception x)
{
    return exception_known(x) ? EXCEPTIONS[x].name : EXCEPTIONS[CACERT_EXC_INTERNAL].name;
}

unsigned int cacert_exception_status(enum cacert_exception x)
{
    return exception_known(x) ? EXCEPTIONS[x].status : 500;
}

enum iot_err cacert_fail(struct cacert_error *e, enum cacert_exception x, const char *fmt, ...)
{
    enum iot_err code = exception_known(x) ? EXCEPTIONS[x].code : IOT_ERR_INTERNAL;
    if (e == NULL)
        return code;
    e->exception = x;
    e->base.code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->base.message, sizeof(e->base.message), fmt, ap);
    va_end(ap);
    return code;
}

/* A failure reported as a plain iot_error (storage, memory) becomes InternalFailureException,
 * keeping its code and message. */
static enum iot_err internal(struct cacert_error *e, enum iot_err code)
{
    if (code != IOT_OK && e->exception == CACERT_EXC_NONE) {
        e->exception = CACERT_EXC_INTERNAL;
        e->base.code = code;
    }
    return code;
}

/* ---- SQLite ----------------------------------------------------------------------------- */

static enum iot_err db_error(struct cacert_store *s, struct iot_error *err, const char *what)
{
    int rc = sqlite3_errcode(s->db);
    return iot_error_set(err, rc == SQLITE_NOMEM ? IOT_ERR_NOMEM : IOT_ERR_IO, "CA store: %s: %s",
                         what, sqlite3_errmsg(s->db));
}

static enum iot_err exec(struct cacert_store *s, const char *sql, struct iot_error *err)
{
    if (sqlite3_exec(s->db, sql, NULL, NULL, NULL) != SQLITE_OK)
        return db_error(s, err, sql);
    return IOT_OK;
}

static enum iot_err prepare(struct cacert_store *s, const char *sql, sqlite3_stmt **st,
                            struct iot_error *err)
{
    if (sqlite3_prepare_v2(s->db, sql, -1, st, NULL) != SQLITE_OK)
        return db_error(s, err, "prepare");
    return IOT_OK;
}

static int bind_text(sqlite3_stmt *st, int i, const char *v)
{
    return v ? sqlite3_bind_text(st, i, v, -1, SQLITE_TRANSIENT) : sqlite3_bind_null(st, i);
}

/* Steps a statement that returns no row. */
static enum iot_err run(struct cacert_store *s, sqlite3_stmt *st, struct iot_error *err)
{
    int rc = sqlite3_step(st);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW)
        return db_error(s, err, "step");
    return IOT_OK;
}

/* Steps once: *row = whether a row came. */
static enum iot_err step_row(struct cacert_store *s, sqlite3_stmt *st, bool *row,
                             struct iot_error *err)
{
    int rc = sqlite3_step(st);
    *row = rc == SQLITE_ROW;
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return db_error(s, err, "step");
    return IOT_OK;
}

static char *column_dup(sqlite3_stmt *st, int i)
{
    const unsigned char *t = sqlite3_column_text(st, i);
    return t ? strdup((const char *)t) : NULL;
}

static void column_copy(sqlite3_stmt *st, int i, char *out, size_t size)
{
    const unsigned char *t = sqlite3_column_text(st, i);
    snprintf(out, size, "%s", t ? (const char *)t : "");
}

static enum iot_err txn_begin(struct cacert_store *s, struct iot_error *err)
{
    return exec(s, "BEGIN IMMEDIATE", err);
}

/* Commits when CODE is IOT_OK, else rolls back; returns the first failure. */
static enum iot_err txn_end(struct cacert_store *s, enum iot_err code, struct iot_error *err)
{
    if (code == IOT_OK)
        code = exec(s, "COMMIT", err);
    if (code != IOT_OK && !sqlite3_get_autocommit(s->db))
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    return code;
}

/* ---- the store ------------------------------------------------------------------------- */

static enum iot_err check_made_by_registry(struct cacert_store *s, const char *path,
                                           struct iot_error *err)
{
    sqlite3_stmt *st = NULL;
    bool row = false;
    enum iot_err code = prepare(s, "PRAGMA user_version", &st, err);
    if (code == IOT_OK)
        code = step_row(s, st, &row, err);
    long long version = row ? sqlite3_column_int64(st, 0) : 0;
    sqlite3_finalize(st);
    if (code == IOT_OK && version == 0)
        code = iot_error_set(err, IOT_ERR_IO,
                             "CA store %s: not a registry file (open the registry first)", path);
    return code;
}

static enum iot_err store_connect(struct cacert_store *s, const char *path, struct iot_error *err)
{
    bool memory = strcmp(path, ":memory:") == 0;
    int rc = sqlite3_open_v2(path, &s->db,
                             SQLITE_OPEN_READWRITE | (memory ? SQLITE_OPEN_CREATE : 0), NULL);
    if (rc != SQLITE_OK) {
        const char *msg = s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc);
        return iot_error_set(err, rc == SQLITE_NOMEM ? IOT_ERR_NOMEM : IOT_ERR_IO,
                             "CA store %s: cannot open: %s", path, msg);
    }
    sqlite3_busy_timeout(s->db, BUSY_TIMEOUT_MS);
    /* The same durability as the registry: a registered CA is on disk when the call returns. */
    enum iot_err code =
        memory ? IOT_OK : exec(s, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;", err);
    if (code == IOT_OK && !memory)
        code = check_made_by_registry(s, path, err);
    if (code == IOT_OK)
        code = txn_begin(s, err);
    if (code == IOT_OK)
        code = txn_end(s, exec(s, SCHEMA_SQL, err), err);
    return code;
}

enum iot_err cacert_store_open(const char *path, struct cacert_store **out, struct iot_error *err)
{
    *out = NULL;
    if (path == NULL || path[0] == '\0')
        return iot_error_set(err, IOT_ERR_IO, "CA store: no path");
    struct cacert_store *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return iot_error_set(err, IOT_ERR_NOMEM, "out of memory");
    if (pthread_mutex_init(&s->lock, NULL) != 0) {
        free(s);
        return iot_error_set(err, IOT_ERR_INTERNAL, "CA store: cannot create its lock");
    }
    enum iot_err code = store_connect(s, path, err);
    if (code != IOT_OK) {
        cacert_store_close(s);
        return code;
    }
    *out = s;
    return IOT_OK;
}

void cacert_store_close(struct cacert_store *s)
{
    if (s == NULL)
        return;
    sqlite3_close(s->db);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

enum iot_err cacert_store_reset(struct cacert_store *s, struct iot_error *err)
{
    pthread_mutex_lock(&s->lock);
    enum iot_err code = txn_begin(s, err);
    if (code == IOT_OK)
        code = txn_end(s,
                       exec(s,
                            "DELETE FROM ca_certificates; DELETE FROM registration_code;"
                            "DELETE FROM trusted_device_certificates;"
                            "DELETE FROM sni_only_certificates;",
                            err),
                       err);
    pthread_mutex_unlock(&s->lock);
    return code;
}

/* ---- registration code ----------------------------------------------------------------- */

static enum iot_err code_read(struct cacert_store *s, char out[CACERT_CODE_LEN + 1], bool *found,
                              struct iot_error *err)
{
    sqlite3_stmt *st = NULL;
    enum iot_err code = prepare(s, "SELECT code FROM registration_code WHERE one = 1", &st, err);
    if (code == IOT_OK)
        code = step_row(s, st, found, err);
    if (code == IOT_OK && *found)
        column_copy(st, 0, out, CACERT_CODE_LEN + 1);
    sqlite3_finalize(st);
    return code;
}

static enum iot_err code_create(struct cacert_store *s, char out[CACERT_CODE_LEN + 1],
                                struct iot_error *err)
{
    unsigned char raw[CACERT_CODE_LEN / 2];
    if (RAND_bytes(raw, sizeof(raw)) != 1)
        return iot_error_set(err, IOT_ERR_INTERNAL, "no random bytes for a registration code");
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < sizeof(raw); i++) {
        out[2 * i] = hex[raw[i] >> 4];
        out[2 * i + 1] = hex[raw[i] & 0x0f];
    }
    out[CACERT_CODE_LEN] = '\0';
    sqlite3_stmt *st = NULL;
    enum iot_err code = prepare(
        s, "INSERT INTO registration_code (one, code, created) VALUES (1, ?1, ?2)", &st, err);
    if (code == IOT_OK) {
        bind_text(st, 1, out);
        sqlite3_bind_int64(st, 2, (sqlite3_int64)time(NULL));
        code = run(s, st, err);
    }
    sqlite3_finalize(st);
    return code;
}

enum iot_err cacert_registration_code(struct cacert_store *s, char out[CACERT_CODE_LEN + 1],
                                      struct iot_error *err)
{
    bool found = false;
    out[0] = '\0';
    pthread_mutex_lock(&s->lock);
    enum iot_err code = txn_begin(s, err);
    if (code == IOT_OK) {
        code = code_read(s, out, &found, err);
        if (code == IOT_OK && !found)
            code = code_create(s, out, err);
        code = txn_end(s, code, err);
    }
    pthread_mutex_unlock(&s->lock);
    if (code != IOT_OK)
        out[0] = '\0';
    return code;
}

enum iot_err cacert_registration_code_delete(struct cacert_store *s, struct iot_error *err)
{
    pthread_mutex_lock(&s->lock);
    enum iot_err code = exec(s, "DELETE FROM registration_code", err);
    int deleted = code == IOT_OK ? sqlite3_changes(s->db) : 0;
    pthread_mutex_unlock(&s->lock);
    if (code == IOT_OK && deleted == 0)
        code = iot_error_set(err, IOT_ERR_NOT_FOUND, "There is no registration code to delete");
    return code;
}

/* ---- records ----------------------------------------------------------------------------- */

void cacert_clear(struct cacert *c)
{
    if (c == NULL)
        return;
    free(c->pem);
    cJSON_Delete(c->registration_config);
    *c = (struct cacert){0};
}

void cacert_array_free(struct cacert *a, size_t n)
{
    for (size_t i = 0; a != NULL && i < n; i++)
        cacert_clear(&a[i]);
    free(a);
}

/* Reads a row of RECORD_COLUMNS. The CHECK constraints keep the enum columns valid. */
static enum iot_err record_read(sqlite3_stmt *st, struct cacert *c, struct iot_error *err)
{
    *c = (struct cacert){0};
    column_copy(st, 0, c->id, sizeof(c->id));
    c->pem = column_dup(st, 1);
    (void)cacert_status_parse((const char *)sqlite3_column_text(st, 2), &c->status);
    (void)cacert_auto_parse((const char *)sqlite3_column_text(st, 3), &c->auto_registration);
    const unsigned char *config = sqlite3_column_text(st, 4);
    if (config != NULL)
        c->registration_config = cJSON_Parse((const char *)config);
    (void)cacert_mode_parse((const char *)sqlite3_column_text(st, 5), &c->mode);
    c->not_before = sqlite3_column_int64(st, 6);
    c->not_after = sqlite3_column_int64(st, 7);
    c->customer_version = sqlite3_column_int64(st, 8);
    column_copy(st, 9, c->generation_id, sizeof(c->generation_id));
    c->created = sqlite3_column_int64(st, 10);
    c->modified = sqlite3_column_int64(st, 11);
    if (c->pem == NULL || (config != NULL && c->registration_config == NULL)) {
        cacert_clear(c);
        return iot_error_set(err, IOT_ERR_NOMEM, "out of memory");
    }
    return IOT_OK;
}

/* *found = whether ID exists; *out filled when it does (caller clears). */
static enum iot_err record_get(struct cacert_store *s, const char *id, struct cacert *out,
                               bool *found, struct iot_error *err)
{
    sqlite3_stmt *st = NULL;
    *out = (struct cacert){0};
    enum iot_err code =
        prepare(s, "SELECT " RECORD_COLUMNS " FROM ca_certificates WHERE id = ?1", &st, err);
    if (code == IOT_OK) {
        bind_text(st, 1, id);
        code = step_row(s, st, found, err);
    }
    if (code == IOT_OK && *found)
        code = record_read(st, out, err);
    sqlite3_finalize(st);
    return code;
}

static void new_uuid(char out[37])
{
    uuid_t u;
    uuid_generate_random(u);
    uuid_unparse_lower(u, out);
}

/* Writes the mutable fields of C (status, auto-registration, config, version, generation,
 * modified) back. */
static enum iot_err record_update(struct cacert_store *s, const struct cacert *c,
                                  struct iot_error *err)
{
    sqlite3_stmt *st = NULL;
    char *config = c->registration_config ? cJSON_PrintUnformatted(c->registration_config) : NULL;
    if (c->registration_config != NULL && config == NULL)
        return iot_error_set(err, IOT_ERR_NOMEM, "out of memory");
    enum iot_err code = prepare(s,
                                "UPDATE ca_certificates SET status = ?2, auto_registration = ?3,"
                                " registration_config = ?4, customer_version = ?5,"
                                " generation_id = ?6, modified = ?7 WHERE id = ?1",
                                &st, err);
    if (code == IOT_OK) {
        bind_text(st, 1, c->id);
        bind_text(st, 2, cacert_status_name(c->status));
        bind_text(st, 3, cacert_auto_name(c->auto_registration));
        bind_text(st, 4, config);
        sqlite3_bind_int64(st, 5, c->customer_version);
        bind_text(st, 6, c->generation_id);
        sqlite3_bind_int64(st, 7, c->modified);
        code = run(s, st, err);
    }
    sqlite3_finalize(st);
    free(config);
    return code;
}

/* ---- certificate checks ------------------------------------------------------------------ */

static long long asn1_epoch(const ASN1_TIME *t)
{
    struct tm tm;
    if (t == NULL || !ASN1_TIME_to_tm(t, &tm))
        return 0;
    return (long long)timegm(&tm);
}

/* Refuses a certificate outside its validity period (WHAT names it in the message). */
static enum iot_err check_validity(X509 *cert, const char *what, struct cacert_error *err)
{
    if (X509_cmp_current_time(X509_get0_notAfter(cert)) <= 0)
        return cacert_fail(err, CACERT_EXC_CERTIFICATE_VALIDATION, "The %s has expired", what);
    if (X509_cmp_current_time(X509_get0_notBefore(cert)) > 0)
        return cacert_fail(err, CACERT_EXC_CERTIFICATE_VALIDATION, "The %s is not yet valid", what);
    return IOT_OK;
}

static enum iot_err parse_pem(const char *pem, size_t len, const char *what, X509 **out,
                              struct cacert_error *err)
{
    *out = NULL;
    if (pem == NULL || len == 0)
        return cacert_fail(err, CACERT_EXC_CERTIFICATE_VALIDATION, "The %s is empty", what);
    if (len > CACERT_PEM_MAX)
        return cacert_fail(err, CACERT_EXC_CERTIFICATE_VALIDATION, "The %s is longer than %d bytes",
                           what, CACERT_PEM_MAX);
    if (ca_cert_from_pem(pem, len, out, NULL) != IOT_OK) {
        ERR_clear_error();
        return cacert_fail(err, CACERT_EXC_CERTIFICATE_VALIDATION,
                           "The %s is not a valid PEM certificate", what);
    }
    return IOT_OK;
}

/* basicConstraints CA:TRUE, and extensions OpenSSL could decode. */
static enum iot_err check_is_ca(X509 *ca, struct cacert_error *err)
{
    uint32_t flags = X509_get_extension_flags(ca);
    if (flags & EXFLAG_INVALID)
        return cacert_fail(err, CACERT_EXC_CERTIFICATE_VALIDATION,
                           "The CA certificate has malformed extensions");
    if (!(flags & EXFLAG_CA))
        return cacert_fail(err, CACERT_EXC_CERTIFICATE_VALIDATION,
                           "The certificate is not a CA certificate (basicConstraints CA:TRUE)");
    return IOT_OK;
}

/* The first CN of NAME as UTF-8, malloc'd; NULL when there is none. */
static char *common_name(const X509_NAME *name)
{
    int i = X509_NAME_get_index_by_NID(name, NID_commonName, -1);
    X509_NAME_ENTRY *e = i >= 0 ? X509_NAME_get_entry(name, i) : NULL;
    unsigned char *utf8 = NULL;
    if (e == NULL || ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(e)) < 0)
        return NULL;
    char *copy = strdup((const char *)utf8);
    OPENSSL_free(utf8);
    return copy;
}

/* §4.2 DEFAULT mode: proof that the registrant holds the CA's key and this account's code. */
static enum iot_err check_verification(struct cacert_store *s, X509 *ca,
                                       const struct cacert_request *rq, struct cacert_error *err)
{
    X509 *v = NULL;
    char *cn = NULL;
    char reg_code[CACERT_CODE_LEN + 1] = "";
    bool have_code = false;
    if (rq->verification_pem == NULL || rq->verification_pem_len == 0)
        return cacert_fail(err, CACERT_EXC_INVALID_REQUEST,
                           "A verification certificate is required in DEFAULT certificate mode");
    enum iot_err code = parse_pem(rq->verification_pem, rq->verification_pem_len,
                                  "verification certificate", &v, err);
    if (code == IOT_OK)
        code = check_validity(v, "verification certificate", err);
    if (code == IOT_OK && X509_verify(v, X509_get0_pubkey(ca)) != 1) {
        ERR_clear_error();
        code = cacert_fail(err, CACERT_EXC_CERTIFICATE_VALIDATION,
                           "The verification certificate is not signed by the CA certificate's "
                           "private key");
    }
    if (code == IOT_OK)
        code = internal(err, code_read(s, reg_code, &have_code, &err->base));
    if (code == IOT_OK && !have_code)
        code = cacert_fail(err, CACERT_EXC_REGISTRATION_CODE,
                           "The account has no registration code: call GetRegistrationCode first");
    if (code == IOT_OK) {
        cn = common_name(X509_get_subject_name(v));
        if (cn == NULL || strcmp(cn, reg_code) != 0)
            code = cacert_fail(err, CACERT_EXC_REGISTRATION_CODE,
                               "The verification certificate's common name (%s) is not the "
                               "registration code",
                               cn ? cn : "none");
    }
    free(cn);
    X509_free(v);
    return code;
}

/* ---- registrationConfig ------------------------------------------------------------------ */

static bool member_string(const cJSON *config, const char *name, const cJSON **out)
{
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(config, name);
    *out = m;
    return m == NULL || cJSON_IsNull(m) || cJSON_IsString(m);
}

static enum iot_err check_template_body(const char *body, struct cacert_error *err)
{
    struct template *t = NULL;
    struct iot_error terr = {0};
    size_t len = strlen(body);
    if (len > TEMPLATE_BODY_MAX)
        return cacert_fail(err, CACERT_EXC_INVALID_REQUEST,
                           "registrationConfig.templateBody is longer than %d characters",
                           TEMPLATE_BODY_MAX);
    enum iot_err code = template_parse(body, len, &t, &terr);
    template_free(t);
    if (code != IOT_OK)
        return cacert_fail(err, CACERT_EXC_INVALID_REQUEST,
                           "registrationConfig.templateBody is not a valid template: %s",
                           terr.message);
    return IOT_OK;
}

static enum iot_err check_template_name(struct registry *reg, const char *name,
                                        struct cacert_error *err)
{
    if (!template_name_valid(name))
        return cacert_fail(err, CACERT_EXC_INVALID_REQUEST,
                           "registrationConfig.templateName is not a valid template name");
    if (reg == NULL)
        return IOT_OK;
    struct registry_template t = {0};
    struct iot_error rerr = {0};
    enum iot_err code = registry_template_get(reg, name, &t, &rerr);
    if (code == IOT_ERR_NOT_FOUND)
        code = cacert_fail(err, CACERT_EXC_NOT_FOUND, "The provisioning template %s does not exist",
                           name);
    else if (code != IOT_OK)
        code = cacert_fail(err, CACERT_EXC_INTERNAL, "%s", rerr.message);
    else if (t.type == NULL || strcmp(t.type, "JITP") != 0) /* §3.1 */
        code = cacert_fail(err, CACERT_EXC_INVALID_REQUEST,
                           "The provisioning template %s is of type %s, not JITP", name,
                           t.type ? t.type : "FLEET_PROVISIONING");
    registry_template_clear(&t);
    return code;
}

enum iot_err cacert_config_check(struct registry *reg, const cJSON *config,
                                 struct cacert_error *err)
{
    const cJSON *body, *role, *name;
    if (!cJSON_IsObject(config))
        return cacert_fail(err, CACERT_EXC_INVALID_REQUEST, "registrationConfig must be an object");
    if (!member_string(config, "templateBody", &body) || !member_string(config, "roleArn", &role) ||
        !member_string(config, "templateName", &name))
        return cacert_fail(err, CACERT_EXC_INVALID_REQUEST,
                           "registrationConfig members templateBody, roleArn and templateName "
                           "must be strings");
    if (cJSON_IsString(body) && cJSON_IsString(name))
        return cacert_fail(err, CACERT_EXC_INVALID_REQUEST,
                           "registrationConfig takes templateBody or templateName, not both");
    if (cJSON_IsString(role)) {
        size_t n = strlen(role->valuestring);
        if (n < CACERT_ROLE_ARN_MIN || n > CACERT_ROLE_ARN_MAX)
            return cacert_fail(err, CACERT_EXC_INVALID_REQUEST,
                               "registrationConfig.roleArn must be %d to %d characters",
                               CACERT_ROLE_ARN_MIN, CACERT_ROLE_ARN_MAX);
    }
    if (cJSON_IsString(body))
        return check_template_body(body->valuestring, err);
    if (cJSON_IsString(name))
        return check_template_name(reg, name->valuestring, err);
    return IOT_OK;
}

/* The known string members of a checked CONFIG, as a new object; NULL with *ok = true when it
 * has none (stored as "no registrationConfig"). */
static cJSON *config_copy(const cJSON *config, bool *ok)
{
    static const char *const members[] = {"templateBody", "roleArn", "templateName"};
    cJSON *copy = cJSON_CreateObject();
    *ok = copy != NULL;
    for (size_t i = 0; *ok && i < sizeof(members) / sizeof(members[0]); i++) {
        const cJSON *m = cJSON_GetObjectItemCaseSensitive(config, members[i]);
        if (cJSON_IsString(m))
            *ok = cJSON_AddStringToObject(copy, members[i], m->valuestring) != NULL;
    }
    if (!*ok || copy->child == NULL) {
        cJSON_Delete(copy);
        return NULL;
    }
    return copy;
}

static bool config_given(const cJSON *config)
{
    return config != NULL && !cJSON_IsNull(config);
}

/* ---- RegisterCACertificate --------------------------------------------------------------- */

/* The checks on the certificates themselves (everything before the store is consulted but the
 * registration code). */
static enum iot_err check_request(struct cacert_store *s, struct registry *reg,
                                  const struct cacert_request *rq, X509 **ca,
                                  enum cacert_mode *mode, struct cacert_error *err)
{
    *mode = CACERT_MODE_DEFAULT;
    if (rq->certificate_mode != NULL && !cacert_mode_parse(rq->certificate_mode, mode))
        return cacert_fail(err, CACERT_EXC_INVALID_REQUEST,
                           "certificateMode must be DEFAULT or SNI_ONLY, not %s",
                           rq->certificate_mode);
    enum iot_err code = parse_pem(rq->ca_pem, rq->ca_pem_len, "CA certificate", ca, err);
    if (code == IOT_OK)
        code = check_is_ca(*ca, err);
    if (code == IOT_OK)
        code = check_validity(*ca, "CA certificate", err);
    if (code != IOT_OK)
        return code;
    if (*mode == CACERT_MODE_DEFAULT) {
        pthread_mutex_lock(&s->lock);
        code = check_verification(s, *ca, rq, err);
        pthread_mutex_unlock(&s->lock);
    } else if (rq->verification_pem != NULL && rq->verification_pem_len > 0) {
        code = cacert_fail(err, CACERT_EXC_INVALID_REQUEST,
                           "A verification certificate must not be given in SNI_ONLY mode");
    }
    if (code == IOT_OK && config_given(rq->registration_config))
        code = cacert_config_check(reg, rq->registration_config, err);
    return code;
}

/* Registered CAs whose subject is NAME, oldest first; the lock is held by the caller. The hash
 * column narrows the search, the comparison of the names settles it. */
static enum iot_err select_by_subject(struct cacert_store *s, const X509_NAME *name,
                                      struct cacert **out, size_t *n, struct iot_error *err)
{
    sqlite3_stmt *st = NULL;
    struct cacert *all = NULL;
    size_t count = 0, cap = 0;
    bool row = true;
    *out = NULL;
    *n = 0;
    unsigned long hash = X509_NAME_hash_ex(name, NULL, NULL, NULL);
    enum iot_err code = prepare(s,
                                "SELECT " RECORD_COLUMNS " FROM ca_certificates"
                                " WHERE subject_hash = ?1 ORDER BY created, id",
                                &st, err);
    if (code == IOT_OK)
        sqlite3_bind_int64(st, 1, (sqlite3_int64)hash);
    while (code == IOT_OK && (code = step_row(s, st, &row, err)) == IOT_OK && row) {
        if (count == cap) {
            size_t grown_cap = cap ? 2 * cap : 4;
            struct cacert *grown = realloc(all, grown_cap * sizeof(*grown));
            if (grown == NULL) {
                code = iot_error_set(err, IOT_ERR_NOMEM, "out of memory");
                break;
            }
            all = grown, cap = grown_cap;
        }
        code = record_read(st, &all[count], err);
        if (code != IOT_OK)
            break;
        X509 *c = NULL;
        bool same = all[count].pem != NULL &&
                    ca_cert_from_pem(all[count].pem, strlen(all[count].pem), &c, NULL) == IOT_OK &&
                    X509_NAME_cmp(X509_get_subject_name(c), name) == 0;
        X509_free(c);
        if (same)
            count++;
        else
            cacert_clear(&all[count]);
    }
    sqlite3_finalize(st);
    ERR_clear_error();
    if (code != IOT_OK || count == 0) {
        cacert_array_free(all, count);
        return code;
    }
    *out = all;
    *n = count;
    return IOT_OK;
}

static enum iot_err count_subject(struct cacert_store *s, X509 *ca, size_t *count,
                                  struct iot_error *err)
{
    struct cacert *same = NULL;
    enum iot_err code = select_by_subject(s, X509_get_subject_name(ca), &same, count, err);
    cacert_array_free(same, *count);
    return code;
}

struct new_record {
    const char *id;
    const char *pem;
    unsigned long subject_hash;
    enum cacert_status status;
    enum cacert_auto auto_registration;
    const char *config; /* JSON text or NULL */
    enum cacert_mode mode;
    long long not_before, not_after;
};

static enum iot_err record_insert(struct cacert_store *s, const struct new_record *r,
                                  struct iot_error *err)
{
    char generation[37];
    long long now = (long long)time(NULL);
    sqlite3_stmt *st = NULL;
    new_uuid(generation);
    enum iot_err code = prepare(s,
                                "INSERT INTO ca_certificates (" RECORD_COLUMNS ", subject_hash)"
                                " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 1, ?9, ?10, ?10, ?11)",
                                &st, err);
    if (code == IOT_OK) {
        bind_text(st, 1, r->id);
        bind_text(st, 2, r->pem);
        bind_text(st, 3, cacert_status_name(r->status));
        bind_text(st, 4, cacert_auto_name(r->auto_registration));
        bind_text(st, 5, r->config);
        bind_text(st, 6, cacert_mode_name(r->mode));
        sqlite3_bind_int64(st, 7, r->not_before);
        sqlite3_bind_int64(st, 8, r->not_after);
        bind_text(st, 9, generation);
        sqlite3_bind_int64(st, 10, now);
        sqlite3_bind_int64(st, 11, (sqlite3_int64)r->subject_hash);
        code = run(s, st, err);
    }
    sqlite3_finalize(st);
    return code;
}

static enum iot_err exists_id(struct cacert_store *s, const char *id, bool *found,
                              struct iot_error *err)
{
    sqlite3_stmt *st = NULL;
    enum iot_err code = prepare(s, "SELECT 1 FROM ca_certificates WHERE id = ?1", &st, err);
    if (code == IOT_OK) {
        bind_text(st, 1, id);
        code = step_row(s, st, found, err);
    }
    sqlite3_finalize(st);
    return code;
}

/* Duplicate and per-subject limit, then the insert; inside the caller's transaction. */
static enum iot_err store_new(struct cacert_store *s, const struct new_record *r, X509 *ca,
                              struct cacert_error *err)
{
    bool dup = false;
    size_t same = 0;
    enum iot_err code = internal(err, exists_id(s, r->id, &dup, &err->base));
    if (code == IOT_OK && dup) {
        snprintf(err->resource_id, sizeof(err->resource_id), "%s", r->id);
        return cacert_fail(err, CACERT_EXC_ALREADY_EXISTS,
                           "The CA certificate is already registered (id %s)", r->id);
    }
    if (code == IOT_OK)
        code = internal(err, count_subject(s, ca, &same, &err->base));
    if (code == IOT_OK && same >= CACERT_SAME_SUBJECT_MAX)
        return cacert_fail(err, CACERT_EXC_LIMIT_EXCEEDED,
                           "The account already has %d CA certificates with this subject",
                           CACERT_SAME_SUBJECT_MAX);
    if (code == IOT_OK)
        code = internal(err, record_insert(s, r, &err->base));
    return code;
}

enum iot_err cacert_register(struct cacert_store *s, struct registry *reg,
                             const struct cacert_request *rq, char id[CA_ID_LEN + 1],
                             struct cacert_error *err)
{
    struct cacert_error scratch;
    X509 *ca = NULL;
    char *pem = NULL, *config = NULL;
    cJSON *kept = NULL;
    enum cacert_mode mode;
    bool ok = true;
    if (err == NULL)
        err = &scratch;
    *err = (struct cacert_error){0};
    id[0] = '\0';
    enum iot_err code = check_request(s, reg, rq, &ca, &mode, err);
    if (code == IOT_OK && config_given(rq->registration_config)) {
        kept = config_copy(rq->registration_config, &ok);
        config = kept ? cJSON_PrintUnformatted(kept) : NULL;
        ok = ok && (kept == NULL || config != NULL);
    }
    if (code == IOT_OK &&
        (ca_cert_id(ca, id) != IOT_OK || (pem = ca_cert_to_pem(ca)) == NULL || !ok))
        code = cacert_fail(err, CACERT_EXC_INTERNAL, "out of memory");
    if (code == IOT_OK) {
        struct new_record r = {
            .id = id,
            .pem = pem,
            .subject_hash = X509_NAME_hash_ex(X509_get_subject_name(ca), NULL, NULL, NULL),
            .status = rq->set_as_active ? CACERT_STATUS_ACTIVE : CACERT_STATUS_INACTIVE,
            .auto_registration =
                rq->allow_auto_registration ? CACERT_AUTO_ENABLE : CACERT_AUTO_DISABLE,
            .config = config,
            .mode = mode,
            .not_before = asn1_epoch(X509_get0_notBefore(ca)),
            .not_after = asn1_epoch(X509_get0_notAfter(ca)),
        };
        pthread_mutex_lock(&s->lock);
        code = internal(err, txn_begin(s, &err->base));
        if (code == IOT_OK)
            code = txn_end(s, store_new(s, &r, ca, err), &err->base);
        pthread_mutex_unlock(&s->lock);
        internal(err, code);
    }
    if (code != IOT_OK)
        id[0] = '\0';
    free(config);
    cJSON_Delete(kept);
    free(pem);
    X509_free(ca);
    return code;
}

/* ---- UpdateCACertificate / DescribeCACertificate / DeleteCACertificate -------------------- */

/* The update's values, checked before the store is touched. */
struct update_values {
    bool status_given, auto_given;
    enum cacert_status status;
    enum cacert_auto auto_registration;
};

static enum iot_err check_update(struct registry *reg, const struct cacert_update *u,
                                 struct update_values *v, struct cacert_error *err)
{
    *v = (struct update_values){0};
    if ((v->status_given = u->new_status != NULL) &&
        !cacert_status_parse(u->new_status, &v->status))
        return cacert_fail(err, CACERT_EXC_INVALID_REQUEST,
                           "newStatus must be ACTIVE or INACTIVE, not %s", u->new_status);
    if ((v->auto_given = u->new_auto_registration != NULL) &&
        !cacert_auto_parse(u->new_auto_registration, &v->auto_registration))
        return cacert_fail(err, CACERT_EXC_INVALID_REQUEST,
                           "newAutoRegistrationStatus must be ENABLE or DISABLE, not %s",
                           u->new_auto_registration);
    if (!config_given(u->registration_config))
        return IOT_OK;
    if (u->remove_auto_registration)
        return cacert_fail(err, CACERT_EXC_INVALID_REQUEST,
                           "removeAutoRegistration cannot come with a registrationConfig");
    return cacert_config_check(reg, u->registration_config, err);
}

static enum iot_err apply_update(struct cacert_store *s, const char *id,
                                 const struct cacert_update *u, const struct update_values *v,
                                 struct cacert_error *err)
{
    struct cacert c;
    bool found = false, ok = true;
    enum iot_err code = internal(err, record_get(s, id, &c, &found, &err->base));
    if (code == IOT_OK && !found)
        return cacert_fail(err, CACERT_EXC_NOT_FOUND, "CA certificate %s does not exist", id);
    if (code != IOT_OK)
        return code;
    if (v->status_given)
        c.status = v->status;
    if (v->auto_given)
        c.auto_registration = v->auto_registration;
    if (u->remove_auto_registration || config_given(u->registration_config)) {
        cJSON_Delete(c.registration_config);
        c.registration_config =
            u->remove_auto_registration ? NULL : config_copy(u->registration_config, &ok);
    }
    if (!ok)
        code = cacert_fail(err, CACERT_EXC_INTERNAL, "out of memory");
    if (code == IOT_OK) {
        c.customer_version++;
        new_uuid(c.generation_id);
        c.modified = (long long)time(NULL);
        code = internal(err, record_update(s, &c, &err->base));
    }
    cacert_clear(&c);
    return code;
}

enum iot_err cacert_update(struct cacert_store *s, struct registry *reg, const char *id,
                           const struct cacert_update *u, struct cacert_error *err)
{
    struct cacert_error scratch;
    struct update_values v;
    if (err == NULL)
        err = &scratch;
    *err = (struct cacert_error){0};
    enum iot_err code = check_update(reg, u, &v, err);
    if (code != IOT_OK)
        return code;
    pthread_mutex_lock(&s->lock);
    code = internal(err, txn_begin(s, &err->base));
    if (code == IOT_OK)
        code = txn_end(s, apply_update(s, id, u, &v, err), &err->base);
    pthread_mutex_unlock(&s->lock);
    return internal(err, code);
}

enum iot_err cacert_get(struct cacert_store *s, const char *id, struct cacert *out,
                        struct cacert_error *err)
{
    struct cacert_error scratch;
    bool found = false;
    if (err == NULL)
        err = &scratch;
    *err = (struct cacert_error){0};
    pthread_mutex_lock(&s->lock);
    enum iot_err code = internal(err, record_get(s, id, out, &found, &err->base));
    pthread_mutex_unlock(&s->lock);
    if (code == IOT_OK && !found)
        code = cacert_fail(err, CACERT_EXC_NOT_FOUND, "CA certificate %s does not exist", id);
    return code;
}

static enum iot_err delete_inactive(struct cacert_store *s, const char *id,
                                    struct cacert_error *err)
{
    struct cacert c;
    bool found = false;
    sqlite3_stmt *st = NULL;
    enum iot_err code = internal(err, record_get(s, id, &c, &found, &err->base));
    if (code == IOT_OK && !found)
        return cacert_fail(err, CACERT_EXC_NOT_FOUND, "CA certificate %s does not exist", id);
    if (code == IOT_OK && c.status == CACERT_STATUS_ACTIVE)
        code = cacert_fail(
            err, CACERT_EXC_CERTIFICATE_STATE,
            "CA certificate must be deactivated (not ACTIVE) before deletion. Id: %s", id);
    cacert_clear(&c);
    if (code == IOT_OK)
        code =
            internal(err, prepare(s, "DELETE FROM ca_certificates WHERE id = ?1", &st, &err->base));
    if (code == IOT_OK) {
        bind_text(st, 1, id);
        code = internal(err, run(s, st, &err->base));
    }
    sqlite3_finalize(st);
    return code;
}

enum iot_err cacert_delete(struct cacert_store *s, const char *id, struct cacert_error *err)
{
    struct cacert_error scratch;
    if (err == NULL)
        err = &scratch;
    *err = (struct cacert_error){0};
    pthread_mutex_lock(&s->lock);
    enum iot_err code = internal(err, txn_begin(s, &err->base));
    if (code == IOT_OK)
        code = txn_end(s, delete_inactive(s, id, err), &err->base);
    pthread_mutex_unlock(&s->lock);
    return internal(err, code);
}

/* ---- ListCACertificates ------------------------------------------------------------------ */

static const char LIST_ASC[] =
    "SELECT id, status, created, certificate_mode FROM ca_certificates"
    " WHERE (?1 IS NULL OR json_extract(registration_config, '$.templateName') = ?1)"
    " AND (?2 IS NULL OR (created, id) > (?2, ?3)) ORDER BY created, id LIMIT ?4";
static const char LIST_DESC[] =
    "SELECT id, status, created, certificate_mode FROM ca_certificates"
    " WHERE (?1 IS NULL OR json_extract(registration_config, '$.templateName') = ?1)"
    " AND (?2 IS NULL OR (created, id) < (?2, ?3)) ORDER BY created DESC, id DESC LIMIT ?4";

/* A cursor is "<created>:<id>" of the last item of the previous page; anything else starts from
 * the beginning. */
static void bind_cursor(sqlite3_stmt *st, const char *after)
{
    char *end = NULL;
    long long created = after ? strtoll(after, &end, 10) : 0;
    if (after == NULL || end == after || *end != ':') {
        sqlite3_bind_null(st, 2);
        return;
    }
    sqlite3_bind_int64(st, 2, created);
    bind_text(st, 3, end + 1);
}

static cJSON *list_item(sqlite3_stmt *st)
{
    cJSON *o = cJSON_CreateObject();
    const char *id = (const char *)sqlite3_column_text(st, 0);
    const char *status = (const char *)sqlite3_column_text(st, 1);
    const char *mode = (const char *)sqlite3_column_text(st, 3);
    if (o == NULL || !cJSON_AddStringToObject(o, "id", id ? id : "") ||
        !cJSON_AddStringToObject(o, "status", status ? status : "") ||
        !cJSON_AddNumberToObject(o, "created", (double)sqlite3_column_int64(st, 2)) ||
        !cJSON_AddStringToObject(o, "mode", mode ? mode : "")) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

static enum iot_err list_rows(struct cacert_store *s, sqlite3_stmt *st, int limit, cJSON *items,
                              char **next, struct iot_error *err)
{
    bool row = true;
    int n = 0;
    enum iot_err code = IOT_OK;
    long long last_created = 0;
    char last_id[CA_ID_LEN + 1] = "";
    while ((code = step_row(s, st, &row, err)) == IOT_OK && row) {
        if (n == limit) { /* one row more than the page: there is a next page */
            size_t size = 24 + strlen(last_id) + 1;
            *next = malloc(size);
            if (*next == NULL)
                return iot_error_set(err, IOT_ERR_NOMEM, "out of memory");
            snprintf(*next, size, "%lld:%s", last_created, last_id);
            break;
        }
        cJSON *item = list_item(st);
        if (item == NULL || !cJSON_AddItemToArray(items, item)) {
            cJSON_Delete(item);
            return iot_error_set(err, IOT_ERR_NOMEM, "out of memory");
        }
        last_created = sqlite3_column_int64(st, 2);
        column_copy(st, 0, last_id, sizeof(last_id));
        n++;
    }
    return code;
}

enum iot_err cacert_list(struct cacert_store *s, const char *template_name, const char *after,
                         int limit, bool descending, cJSON **out, char **next,
                         struct iot_error *err)
{
    sqlite3_stmt *st = NULL;
    *out = NULL;
    *next = NULL;
    if (limit <= 0 || limit > CACERT_LIST_MAX)
        limit = CACERT_LIST_MAX;
    cJSON *items = cJSON_CreateArray();
    if (items == NULL)
        return iot_error_set(err, IOT_ERR_NOMEM, "out of memory");
    pthread_mutex_lock(&s->lock);
    enum iot_err code = prepare(s, descending ? LIST_DESC : LIST_ASC, &st, err);
    if (code == IOT_OK) {
        bind_text(st, 1, template_name);
        bind_cursor(st, after != NULL && after[0] != '\0' ? after : NULL);
        sqlite3_bind_int(st, 4, limit + 1);
        code = list_rows(s, st, limit, items, next, err);
    }
    sqlite3_finalize(st);
    pthread_mutex_unlock(&s->lock);
    if (code != IOT_OK) {
        cJSON_Delete(items);
        free(*next);
        *next = NULL;
        return code;
    }
    *out = items;
    return IOT_OK;
}

/* ---- lookups ----------------------------------------------------------------------------- */

enum iot_err cacert_find_by_subject(struct cacert_store *s, const X509_NAME *name,
                                    struct cacert **out, size_t *n, struct iot_error *err)
{
    pthread_mutex_lock(&s->lock);
    enum iot_err code = select_by_subject(s, name, out, n, err);
    pthread_mutex_unlock(&s->lock);
    return code;
}

/* *out = new array of the first column of SQL's rows, as strings. Lock held by the caller. */
static enum iot_err select_strings(struct cacert_store *s, const char *sql, cJSON **out,
                                   struct iot_error *err)
{
    sqlite3_stmt *st = NULL;
    bool row = true;
    cJSON *all = cJSON_CreateArray();
    enum iot_err code =
        all ? prepare(s, sql, &st, err) : iot_error_set(err, IOT_ERR_NOMEM, "out of memory");
    while (code == IOT_OK && (code = step_row(s, st, &row, err)) == IOT_OK && row) {
        const char *v = (const char *)sqlite3_column_text(st, 0);
        cJSON *item = cJSON_CreateString(v ? v : "");
        if (item == NULL || !cJSON_AddItemToArray(all, item)) {
            cJSON_Delete(item);
            code = iot_error_set(err, IOT_ERR_NOMEM, "out of memory");
        }
    }
    sqlite3_finalize(st);
    if (code != IOT_OK) {
        cJSON_Delete(all);
        all = NULL;
    }
    *out = all;
    return code;
}

enum iot_err cacert_pems(struct cacert_store *s, cJSON **out, struct iot_error *err)
{
    pthread_mutex_lock(&s->lock);
    enum iot_err code = select_strings(s, "SELECT pem FROM ca_certificates ORDER BY id", out, err);
    pthread_mutex_unlock(&s->lock);
    return code;
}

/* ---- trusted device certificates --------------------------------------------------------- */

static enum iot_err trust_change(struct cacert_store *s, const char *sql, const char *id,
                                 struct iot_error *err)
{
    sqlite3_stmt *st = NULL;
    if (id == NULL || strlen(id) != CA_ID_LEN)
        return iot_error_set(err, IOT_ERR_INVALID_REQUEST, "not a certificate id");
    pthread_mutex_lock(&s->lock);
    enum iot_err code = prepare(s, sql, &st, err);
    if (code == IOT_OK) {
        bind_text(st, 1, id);
        code = run(s, st, err);
    }
    sqlite3_finalize(st);
    pthread_mutex_unlock(&s->lock);
    return code;
}

enum iot_err cacert_trust_add(struct cacert_store *s, const char *cert_id, struct iot_error *err)
{
    return trust_change(s, "INSERT OR IGNORE INTO trusted_device_certificates (id) VALUES (?1)",
                        cert_id, err);
}

enum iot_err cacert_trust_remove(struct cacert_store *s, const char *cert_id, struct iot_error *err)
{
    return trust_change(s, "DELETE FROM trusted_device_certificates WHERE id = ?1", cert_id, err);
}

enum iot_err cacert_trust_ids(struct cacert_store *s, cJSON **out, struct iot_error *err)
{
    pthread_mutex_lock(&s->lock);
    enum iot_err code =
        select_strings(s, "SELECT id FROM trusted_device_certificates ORDER BY id", out, err);
    pthread_mutex_unlock(&s->lock);
    return code;
}

/* ---- device certificate modes ---------------------------------------------------------- */

enum iot_err cacert_device_mode_set(struct cacert_store *s, const char *cert_id,
                                    enum cacert_mode mode, struct iot_error *err)
{
    return trust_change(s,
                        mode == CACERT_MODE_SNI_ONLY
                            ? "INSERT OR IGNORE INTO sni_only_certificates (id) VALUES (?1)"
                            : "DELETE FROM sni_only_certificates WHERE id = ?1",
                        cert_id, err);
}

enum cacert_mode cacert_device_mode(struct cacert_store *s, const char *cert_id)
{
    sqlite3_stmt *st = NULL;
    bool row = false;
    if (s == NULL || cert_id == NULL)
        return CACERT_MODE_DEFAULT;
    pthread_mutex_lock(&s->lock);
    if (prepare(s, "SELECT 1 FROM sni_only_certificates WHERE id = ?1", &st, NULL) == IOT_OK) {
        bind_text(st, 1, cert_id);
        if (step_row(s, st, &row, NULL) != IOT_OK)
            row = false;
    }
    sqlite3_finalize(st);
    pthread_mutex_unlock(&s->lock);
    return row ? CACERT_MODE_SNI_ONLY : CACERT_MODE_DEFAULT;
}
