/* registry: AWS IoT Core's account state in SQLite (see registry.h for the contract).
 *
 * Every public call holds reg->lock, a recursive mutex, for its whole duration; registry_begin()
 * keeps it until commit/rollback so that the calls its thread makes in between join the
 * transaction. Each write call runs inside a transaction level of its own (BEGIN IMMEDIATE at the
 * outermost level, a SAVEPOINT inside a caller's transaction), so a multi-statement call is atomic
 * and a failed call undoes exactly its own statements.
 *
 * Durability by group commit: SQLite writes a commit into the write-ahead log without flushing it
 * (synchronous=NORMAL), and the committing thread, once it has let go of the lock, waits until
 * the log is flushed up to its commit. One thread flushes at a time, for every commit made before
 * it started, while the others go on writing; so a write call still returns only once its change
 * is on disk, but concurrent writers share flushes and nobody waits for the disk while holding the
 * lock. */
#include "registry.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>
#include <uthash.h>
#include <uuid/uuid.h>

#define SCHEMA_VERSION 1
#define BUSY_TIMEOUT_MS 5000

/* Authorization versions (registry_authz_version()): a change that can alter what some
 * connection may do marks the certificate id or thing name it concerns, or everyone; the marks
 * are published after the commit, keys first, the version last. One entry per key ever marked
 * (at most one per certificate and thing). */
struct authz_key {
    char *key;
    uint64_t version; /* of the last change concerning it */
    bool pending;     /* marked by the transaction being built */
    struct authz_key *next_pending; /* the keys marked by that transaction */
    UT_hash_handle hh;
};

struct authz_versions {
    _Atomic uint64_t version;
    _Atomic uint64_t everyone; /* version of the last change concerning all */
    pthread_mutex_t lock;      /* keys; taken inside the registry lock, never around it */
    struct authz_key *keys;
    struct authz_key *pending_keys; /* settled at the end of the transaction: not every key */
    /* marks of the transaction being built, under the registry lock */
    bool pending, pending_everyone, pending_lost;
};

/* The group commit (see the top of this file). Commits are numbered under the registry lock;
 * "flushed" is the last one known to be on disk. */
struct wal_sync {
    bool on;              /* a file in WAL mode: commits are flushed here, not by SQLite */
    char *path;           /* the write-ahead log */
    int fd;               /* opened at the first flush; -1 before */
    _Atomic uint64_t committed;
    uint64_t flushed;     /* under lock */
    bool flushing;        /* a thread is in fdatasync(), under lock */
    pthread_mutex_t lock; /* never taken around the registry lock */
    pthread_cond_t done;
};

/* A kept prepared statement (prepare()). */
struct stmt_entry {
    char *sql; /* the key of reg->stmts */
    sqlite3_stmt *st; /* the key of reg->stmts_by_st */
    bool busy; /* handed out, not yet released */
    UT_hash_handle hh, hh_st;
};

#define STMT_CACHE_MAX 256 /* distinct SQL texts kept; the registry has fewer than half as many */

struct registry {
    sqlite3 *db;
    struct stmt_entry *stmts, *stmts_by_st;
    pthread_mutex_t lock;
    int held;                       /* lock levels held by the thread holding it */
    uint64_t unflushed;             /* the holder's last commit, to flush when it lets go */
    struct wal_sync sync;
    int depth;                      /* transaction levels open, on the thread holding the lock */
    sqlite3_int64 changes_at_begin; /* sqlite3_total_changes64() when the outer level opened */
    _Atomic uint64_t version;       /* read without the lock: it is on the CONNECT hot path */
    _Atomic uint64_t cert_version;  /* registry_cert_version() */
    /* registry events: the hook, the enabled types (bit per enum registry_event_type, read
     * without the lock), and the changes of the open transaction with, per level, how many
     * there were when it opened (a rolled-back savepoint drops its own) */
    void (*on_change)(const struct registry_change *c, void *arg);
    void *on_change_arg;
    _Atomic unsigned events_on;
    bool events_stale; /* an event configuration changed in the open transaction */
    struct registry_change *changes;
    size_t n_changes, cap_changes;
    size_t marks[16];
    struct authz_versions authz;
};

/* Indexes serve the lookups the API makes that no primary key covers: by principal, by target,
 * by thing, by certificate and by expiry. */
static const char SCHEMA_SQL[] =
    "CREATE TABLE IF NOT EXISTS certificates ("
    " id TEXT PRIMARY KEY NOT NULL, pem TEXT, status TEXT NOT NULL,"
    " ca_id TEXT NOT NULL DEFAULT '', created INTEGER NOT NULL, modified INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS tokens ("
    " token_hash TEXT PRIMARY KEY NOT NULL,"
    " cert_id TEXT NOT NULL REFERENCES certificates(id) ON DELETE CASCADE,"
    " expires_at INTEGER NOT NULL);"
    "CREATE INDEX IF NOT EXISTS tokens_by_cert ON tokens(cert_id);"
    "CREATE INDEX IF NOT EXISTS tokens_by_expiry ON tokens(expires_at);"
    "CREATE TABLE IF NOT EXISTS thing_types ("
    " name TEXT PRIMARY KEY NOT NULL, created INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS things ("
    " name TEXT PRIMARY KEY NOT NULL, id TEXT NOT NULL, type_name TEXT, attributes TEXT,"
    " version INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS thing_groups ("
    " name TEXT PRIMARY KEY NOT NULL, created INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS thing_group_members ("
    " \"group\" TEXT NOT NULL REFERENCES thing_groups(name) ON DELETE CASCADE,"
    " thing TEXT NOT NULL REFERENCES things(name) ON DELETE CASCADE,"
    " PRIMARY KEY (\"group\", thing)) WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS members_by_thing ON thing_group_members(thing);"
    "CREATE TABLE IF NOT EXISTS thing_principals ("
    " thing TEXT NOT NULL REFERENCES things(name) ON DELETE CASCADE,"
    " principal TEXT NOT NULL REFERENCES certificates(id) ON DELETE CASCADE,"
    " PRIMARY KEY (thing, principal)) WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS principals_by_principal ON thing_principals(principal);"
    "CREATE TABLE IF NOT EXISTS policies ("
    " name TEXT PRIMARY KEY NOT NULL, document TEXT NOT NULL, default_version INTEGER NOT NULL,"
    " created INTEGER NOT NULL, modified INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS policy_versions ("
    " policy TEXT NOT NULL REFERENCES policies(name) ON DELETE CASCADE,"
    " version INTEGER NOT NULL, document TEXT NOT NULL, created INTEGER NOT NULL,"
    " PRIMARY KEY (policy, version)) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS policy_targets ("
    " policy TEXT NOT NULL REFERENCES policies(name), target TEXT NOT NULL,"
    " PRIMARY KEY (policy, target)) WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS targets_by_target ON policy_targets(target);"
    "CREATE TABLE IF NOT EXISTS templates ("
    " name TEXT PRIMARY KEY NOT NULL, body TEXT, type TEXT, description TEXT, role_arn TEXT,"
    " hook_target_arn TEXT, hook_payload_version TEXT, enabled INTEGER NOT NULL,"
    " created INTEGER NOT NULL, modified INTEGER NOT NULL);"
    /* Added for the control plane; templates.body stays the default version's body. */
    "CREATE TABLE IF NOT EXISTS template_versions ("
    " template TEXT NOT NULL REFERENCES templates(name) ON DELETE CASCADE,"
    " version INTEGER NOT NULL, body TEXT NOT NULL, created INTEGER NOT NULL,"
    " PRIMARY KEY (template, version)) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS event_configurations ("
    " event_type TEXT PRIMARY KEY NOT NULL, enabled INTEGER NOT NULL,"
    " created INTEGER NOT NULL, modified INTEGER NOT NULL);";

/* Columns added after schema version 1 shipped. They are added in place when missing (ALTER TABLE
 * ADD COLUMN), so a registry written by an older build opens unchanged and keeps its data. */
static const struct {
    const char *table, *column, *decl;
} ADDED_COLUMNS[] = {
    {"certificates", "customer_version", "INTEGER NOT NULL DEFAULT 1"},
    {"certificates", "claim_template", "TEXT"}, /* set for CreateProvisioningClaim certificates */
    {"certificates", "claim_expires", "INTEGER"},
    {"thing_types", "id", "TEXT"},
    {"thing_types", "description", "TEXT"},
    {"thing_types", "searchable", "TEXT"}, /* JSON array of attribute names */
    {"thing_types", "deprecated", "INTEGER NOT NULL DEFAULT 0"},
    {"thing_types", "deprecated_at", "INTEGER"},
    {"thing_groups", "id", "TEXT"},
    {"thing_groups", "description", "TEXT"},
    {"thing_groups", "attributes", "TEXT"}, /* JSON object */
    {"thing_groups", "parent", "TEXT"},
    {"thing_groups", "version", "INTEGER NOT NULL DEFAULT 1"},
    {"policies", "last_version", "INTEGER NOT NULL DEFAULT 1"}, /* version ids are never reused */
    {"templates", "default_version", "INTEGER NOT NULL DEFAULT 1"},
    {"templates", "last_version", "INTEGER NOT NULL DEFAULT 1"},
    {"thing_group_members", "membership_id", "TEXT"}, /* registry events' membershipId */
};

/* A random (version 4) UUID in SQL, for rows created before ids existed. */
#define SQL_UUID                                                                                   \
    "lower(hex(randomblob(4)) || '-' || hex(randomblob(2)) || '-4' ||"                             \
    " substr(hex(randomblob(2)), 2) || '-' || substr('89ab', 1 + abs(random() % 4), 1) ||"         \
    " substr(hex(randomblob(2)), 2) || '-' || hex(randomblob(6)))"

/* Fills what the added columns need in rows an older build wrote. Idempotent. */
static const char MIGRATE_SQL[] =
    "UPDATE thing_types SET id = " SQL_UUID " WHERE id IS NULL;"
    "UPDATE thing_groups SET id = " SQL_UUID " WHERE id IS NULL;"
    "INSERT OR IGNORE INTO template_versions (template, version, body, created)"
    " SELECT name, default_version, coalesce(body, ''), created FROM templates;"
    "UPDATE thing_group_members SET membership_id = " SQL_UUID " WHERE membership_id IS NULL;";

static const char *const STATUS_NAMES[] = {
    [CERT_STATUS_ACTIVE] = "ACTIVE",
    [CERT_STATUS_INACTIVE] = "INACTIVE",
    [CERT_STATUS_REVOKED] = "REVOKED",
    [CERT_STATUS_PENDING_TRANSFER] = "PENDING_TRANSFER",
    [CERT_STATUS_REGISTER_INACTIVE] = "REGISTER_INACTIVE",
    [CERT_STATUS_PENDING_ACTIVATION] = "PENDING_ACTIVATION",
};
#define STATUS_COUNT (sizeof(STATUS_NAMES) / sizeof(STATUS_NAMES[0]))

/* ---- statements ------------------------------------------------------------------------- */

/* A bound parameter. ARGS() builds a typed array and its length, so that every statement takes its
 * client data as parameters and the compiler checks each one's type. */
struct arg {
    const char *text; /* NULL binds SQL NULL */
    long long num;
    bool is_num;
};
#define ARG_TEXT(s) ((struct arg){.text = (s)})
#define ARG_NUM(n) ((struct arg){.num = (n), .is_num = true})
#define ARGS(...)                                                                                  \
    (const struct arg[]){__VA_ARGS__},                                                             \
        (int)(sizeof((const struct arg[]){__VA_ARGS__}) / sizeof(struct arg))

static long long now_or(long long t)
{
    return t != 0 ? t : (long long)time(NULL);
}

/* Turns a failed SQLite result into the emulator's vocabulary. Constraint failures only happen if
 * this module forgot a check, so they are internal errors rather than client-facing ones. */
static enum iot_err db_error(struct registry *reg, int rc, struct iot_error *err)
{
    enum iot_err code = IOT_ERR_IO;
    if (rc == SQLITE_NOMEM)
        code = IOT_ERR_NOMEM;
    else if ((rc & 0xff) == SQLITE_CONSTRAINT)
        code = IOT_ERR_INTERNAL;
    /* errmsg describes the last failed call, which a bind error or a finalize may not be. */
    const char *msg =
        sqlite3_errcode(reg->db) == (rc & 0xff) ? sqlite3_errmsg(reg->db) : sqlite3_errstr(rc);
    return iot_error_set(err, code, "registry: %s", msg);
}

static int bind_args(sqlite3_stmt *st, const struct arg *args, int n)
{
    int rc = SQLITE_OK;
    for (int i = 0; i < n && rc == SQLITE_OK; i++) {
        if (args[i].is_num)
            rc = sqlite3_bind_int64(st, i + 1, args[i].num);
        else if (args[i].text != NULL)
            rc = sqlite3_bind_text(st, i + 1, args[i].text, -1, SQLITE_STATIC);
        else
            rc = sqlite3_bind_null(st, i + 1);
    }
    return rc;
}

/* *ST is NULL on failure; otherwise the caller finalizes it. */
/* Prepared statements are kept, one per SQL text, and reused: compiling a statement cost as much
 * as running it. A statement is handed out once at a time (a nested call with the same SQL gets
 * one of its own, finalized on release) and reset on release, so that none keeps a read
 * transaction open. Under the registry lock, like every use of the connection. */
static sqlite3_stmt *cached(struct registry *reg, const char *sql)
{
    struct stmt_entry *e = NULL;
    HASH_FIND_STR(reg->stmts, sql, e);
    if (e != NULL && !e->busy) {
        e->busy = true;
        return e->st;
    }
    if (e != NULL || HASH_COUNT(reg->stmts) >= STMT_CACHE_MAX)
        return NULL;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v3(reg->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &st, NULL) != SQLITE_OK ||
        st == NULL || (e = calloc(1, sizeof(*e))) == NULL || (e->sql = strdup(sql)) == NULL) {
        free(e);
        sqlite3_finalize(st);
        return NULL; /* prepared again below, where its error is reported */
    }
    e->st = st;
    e->busy = true;
    HASH_ADD_KEYPTR(hh, reg->stmts, e->sql, strlen(e->sql), e);
    HASH_ADD(hh_st, reg->stmts_by_st, st, sizeof(e->st), e);
    return st;
}

/* Gives back a statement from prepare(): a cached one is reset for its next use, another one is
 * finalized. NULL is a no-op. */
static void release(struct registry *reg, sqlite3_stmt *st)
{
    if (st == NULL)
        return;
    struct stmt_entry *e = NULL;
    HASH_FIND(hh_st, reg->stmts_by_st, &st, sizeof(st), e);
    if (e == NULL) {
        sqlite3_finalize(st);
        return;
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    e->busy = false;
}

static void drop_statements(struct registry *reg)
{
    struct stmt_entry *e, *tmp;
    HASH_ITER(hh, reg->stmts, e, tmp)
    {
        HASH_DEL(reg->stmts, e);
        HASH_DELETE(hh_st, reg->stmts_by_st, e);
        sqlite3_finalize(e->st);
        free(e->sql);
        free(e);
    }
}

static enum iot_err prepare(struct registry *reg, sqlite3_stmt **st, const char *sql,
                            const struct arg *args, int n, struct iot_error *err)
{
    int rc = SQLITE_OK;
    if ((*st = cached(reg, sql)) == NULL)
        rc = sqlite3_prepare_v2(reg->db, sql, -1, st, NULL);
    if (rc == SQLITE_OK)
        rc = bind_args(*st, args, n);
    if (rc == SQLITE_OK)
        return IOT_OK;
    enum iot_err code = db_error(reg, rc, err);
    release(reg, *st);
    *st = NULL;
    return code;
}

/* Runs a statement that returns no rows. */
static enum iot_err run(struct registry *reg, const char *sql, const struct arg *args, int n,
                        struct iot_error *err)
{
    sqlite3_stmt *st;
    enum iot_err code = prepare(reg, &st, sql, args, n, err);
    if (code != IOT_OK)
        return code;
    int rc = sqlite3_step(st);
    if (rc != SQLITE_DONE)
        code = db_error(reg, rc, err);
    release(reg, st);
    return code;
}

/* Steps ST to its first row: IOT_OK with *FOUND telling whether there is one. */
static enum iot_err first_row(struct registry *reg, sqlite3_stmt *st, bool *found,
                              struct iot_error *err)
{
    int rc = sqlite3_step(st);
    *found = rc == SQLITE_ROW;
    if (rc == SQLITE_ROW || rc == SQLITE_DONE)
        return IOT_OK;
    return db_error(reg, rc, err);
}

/* *OUT = whether the query returns a row. */
static enum iot_err exists(struct registry *reg, const char *sql, const struct arg *args, int n,
                           bool *out, struct iot_error *err)
{
    sqlite3_stmt *st;
    enum iot_err code = prepare(reg, &st, sql, args, n, err);
    if (code == IOT_OK)
        code = first_row(reg, st, out, err);
    release(reg, st);
    return code;
}

/* *OUT = new cJSON array of the first column of every row; the SQL orders them. */
static enum iot_err select_strings(struct registry *reg, const char *sql, const struct arg *args,
                                   int n, cJSON **out, struct iot_error *err)
{
    sqlite3_stmt *st = NULL;
    cJSON *list = cJSON_CreateArray();
    enum iot_err code = list ? prepare(reg, &st, sql, args, n, err)
                             : iot_error_set(err, IOT_ERR_NOMEM, "registry: out of memory");
    int rc = SQLITE_DONE;
    while (code == IOT_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *s = (const char *)sqlite3_column_text(st, 0);
        cJSON *item = s ? cJSON_CreateString(s) : NULL;
        if (item == NULL || !cJSON_AddItemToArray(list, item)) {
            cJSON_Delete(item);
            code = iot_error_set(err, IOT_ERR_NOMEM, "registry: out of memory");
        }
    }
    if (code == IOT_OK && rc != SQLITE_DONE)
        code = db_error(reg, rc, err);
    release(reg, st);
    if (code != IOT_OK) {
        cJSON_Delete(list);
        list = NULL;
    }
    *out = list;
    return code;
}

/* Copies column I (NULL stays NULL). False when out of memory. */
static bool dup_column(sqlite3_stmt *st, int i, char **out)
{
    *out = NULL;
    if (sqlite3_column_type(st, i) == SQLITE_NULL)
        return true;
    const char *s = (const char *)sqlite3_column_text(st, i);
    if (s != NULL)
        *out = strdup(s);
    return *out != NULL;
}

/* Copies column I into a fixed 65-byte id buffer. */
static void copy_id(sqlite3_stmt *st, int i, char out[65])
{
    const char *s = (const char *)sqlite3_column_text(st, i);
    snprintf(out, 65, "%s", s ? s : "");
}

static void new_uuid(char out[37])
{
    uuid_t uuid;
    uuid_generate_random(uuid);
    uuid_unparse_lower(uuid, out);
}

static bool valid_id(const char id[65])
{
    return id[0] != '\0' && memchr(id, '\0', 65) != NULL;
}

static bool empty(const char *s)
{
    return s == NULL || s[0] == '\0';
}

static enum iot_err missing(struct iot_error *err, const char *what)
{
    return iot_error_set(err, IOT_ERR_INVALID_REQUEST, "%s is required", what);
}

/* ---- registry events: recording changes (shared/spec/provisioning.md §5.3) ------------------ */

static const char *const EVENT_TYPE_NAMES[REGISTRY_EVENT_TYPE_COUNT] = {
    [REGISTRY_EVENT_THING] = "THING",
    [REGISTRY_EVENT_THING_TYPE] = "THING_TYPE",
    [REGISTRY_EVENT_THING_GROUP] = "THING_GROUP",
    [REGISTRY_EVENT_THING_GROUP_MEMBERSHIP] = "THING_GROUP_MEMBERSHIP",
    [REGISTRY_EVENT_THING_TYPE_ASSOCIATION] = "THING_TYPE_ASSOCIATION",
    [REGISTRY_EVENT_THING_GROUP_HIERARCHY] = "THING_GROUP_HIERARCHY",
};

const char *registry_event_type_name(enum registry_event_type t)
{
    return (size_t)t < REGISTRY_EVENT_TYPE_COUNT ? EVENT_TYPE_NAMES[t] : NULL;
}

const char *registry_operation_name(enum registry_operation op)
{
    static const char *const names[] = {"CREATED", "UPDATED", "DELETED", "ADDED", "REMOVED"};
    return (size_t)op < sizeof(names) / sizeof(names[0]) ? names[op] : "UNKNOWN";
}

/* Whether changes of type T are to be recorded: the cheap test every write makes. */
static bool wants(struct registry *reg, enum registry_event_type t)
{
    return reg->on_change != NULL && (atomic_load(&reg->events_on) & (1u << t)) != 0;
}

/* Reads the enabled types into the mask; called with the lock held, outside a transaction or
 * after its end. On a read error the mask keeps its value. */
static void load_event_mask(struct registry *reg)
{
    sqlite3_stmt *st;
    unsigned mask = 0;
    if (sqlite3_prepare_v2(reg->db, "SELECT event_type FROM event_configurations WHERE enabled", -1,
                           &st, NULL) != SQLITE_OK)
        return;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *name = (const char *)sqlite3_column_text(st, 0);
        for (size_t i = 0; name != NULL && i < REGISTRY_EVENT_TYPE_COUNT; i++) {
            if (strcmp(name, EVENT_TYPE_NAMES[i]) == 0)
                mask |= 1u << i;
        }
    }
    release(reg, st);
    if (rc == SQLITE_DONE)
        atomic_store(&reg->events_on, mask);
    reg->events_stale = false;
}

void registry_set_change_hook(struct registry *reg,
                              void (*on_change)(const struct registry_change *c, void *arg),
                              void *arg)
{
    pthread_mutex_lock(&reg->lock);
    reg->on_change = on_change;
    reg->on_change_arg = arg;
    pthread_mutex_unlock(&reg->lock);
}

static void drop_changes(struct registry *reg, size_t keep)
{
    while (reg->n_changes > keep)
        cJSON_Delete((cJSON *)reg->changes[--reg->n_changes].fields);
}

/* Records a change of the open transaction; takes FIELDS (NULL: the snapshot failed). A change
 * that cannot be recorded (out of memory) loses its event, not the change itself. */
static void note(struct registry *reg, enum registry_event_type t, enum registry_operation op,
                 cJSON *fields)
{
    if (fields == NULL)
        return;
    if (reg->n_changes == reg->cap_changes) {
        size_t cap = reg->cap_changes ? reg->cap_changes * 2 : 8;
        struct registry_change *grown = realloc(reg->changes, cap * sizeof(*grown));
        if (grown == NULL) {
            cJSON_Delete(fields);
            return;
        }
        reg->changes = grown;
        reg->cap_changes = cap;
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    reg->changes[reg->n_changes++] =
        (struct registry_change){.type = t,
                                 .op = op,
                                 .timestamp_ms = (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000,
                                 .fields = fields};
}

/* After the outer COMMIT: hands every recorded change to the hook, then forgets them. */
static void deliver_changes(struct registry *reg)
{
    for (size_t i = 0; i < reg->n_changes && reg->on_change != NULL; i++)
        reg->on_change(&reg->changes[i], reg->on_change_arg);
    drop_changes(reg, 0);
}

/* The first column of the first row of SQL (with text arguments A and B, B may be NULL), a JSON
 * text built by SQLite, parsed; NULL when there is no row or on error. */
static cJSON *snapshot(struct registry *reg, const char *sql, const char *a, const char *b)
{
    sqlite3_stmt *st = NULL;
    cJSON *out = NULL;
    enum iot_err code = b ? prepare(reg, &st, sql, ARGS(ARG_TEXT(a), ARG_TEXT(b)), NULL)
                          : prepare(reg, &st, sql, ARGS(ARG_TEXT(a)), NULL);
    if (code == IOT_OK && sqlite3_step(st) == SQLITE_ROW) {
        const char *text = (const char *)sqlite3_column_text(st, 0);
        out = text ? cJSON_Parse(text) : NULL;
    }
    release(reg, st);
    return out;
}

/* Absent values come out as JSON null. */
static cJSON *thing_snapshot(struct registry *reg, const char *name)
{
    return snapshot(reg,
                    "SELECT json_object('name', name, 'id', id, 'type_name', type_name,"
                    " 'attributes', json(coalesce(attributes, '{}')), 'version', version)"
                    " FROM things WHERE name = ?1",
                    name, NULL);
}

static cJSON *type_snapshot(struct registry *reg, const char *name)
{
    return snapshot(reg,
                    "SELECT json_object('name', name, 'id', id, 'description', description,"
                    " 'searchable', json(coalesce(searchable, '[]')),"
                    " 'deprecated', json(CASE WHEN deprecated THEN 'true' ELSE 'false' END),"
                    " 'deprecated_at', deprecated_at) FROM thing_types WHERE name = ?1",
                    name, NULL);
}

static cJSON *group_snapshot(struct registry *reg, const char *name)
{
    return snapshot(
        reg,
        "WITH RECURSIVE up(name, id, parent, depth) AS ("
        " SELECT name, id, parent, 0 FROM thing_groups WHERE name = ?1 UNION ALL"
        " SELECT g.name, g.id, g.parent, up.depth + 1 FROM thing_groups g JOIN up"
        " ON g.name = up.parent WHERE up.depth < 16)"
        " SELECT json_object('name', g.name, 'id', g.id, 'description', g.description,"
        " 'parent', g.parent, 'parent_id', (SELECT id FROM thing_groups WHERE name = g.parent),"
        " 'attributes', json(coalesce(g.attributes, '{}')), 'version', g.version,"
        " 'ancestors', (SELECT json_group_array(json_object('name', name, 'id', id)) FROM"
        " (SELECT name, id FROM up WHERE depth > 0 ORDER BY depth DESC)))"
        " FROM thing_groups g WHERE g.name = ?1",
        name, NULL);
}

static cJSON *membership_snapshot(struct registry *reg, const char *group, const char *thing)
{
    return snapshot(reg,
                    "SELECT json_object('group', g.name, 'group_id', g.id, 'thing', t.name,"
                    " 'thing_id', t.id, 'membership_id', m.membership_id)"
                    " FROM thing_group_members m JOIN thing_groups g ON g.name = m.\"group\""
                    " JOIN things t ON t.name = m.thing WHERE m.\"group\" = ?1 AND m.thing = ?2",
                    group, thing);
}

/* A thing's type association changed from BEFORE's type to AFTER's (either thing may be NULL). */
static void note_association(struct registry *reg, const cJSON *before, const cJSON *after)
{
    const char *was = cJSON_GetStringValue(cJSON_GetObjectItem(before, "type_name"));
    const char *is = cJSON_GetStringValue(cJSON_GetObjectItem(after, "type_name"));
    if ((was == NULL && is == NULL) || (was != NULL && is != NULL && strcmp(was, is) == 0))
        return;
    const cJSON *thing = after ? after : before;
    for (int added = 0; added <= 1; added++) {
        const char *type = added ? is : was;
        if (type == NULL)
            continue;
        cJSON *f = cJSON_CreateObject();
        cJSON_AddItemToObject(f, "thing", cJSON_Duplicate(cJSON_GetObjectItem(thing, "name"), 0));
        cJSON_AddItemToObject(f, "thing_id", cJSON_Duplicate(cJSON_GetObjectItem(thing, "id"), 0));
        cJSON_AddStringToObject(f, "type", type);
        note(reg, REGISTRY_EVENT_THING_TYPE_ASSOCIATION,
             added ? REGISTRY_OP_ADDED : REGISTRY_OP_REMOVED, f);
    }
}

/* Around a write to thing NAME: when thing_watched(), a thing_snapshot() BEFORE it, then
 * thing_noted() after it succeeded, which records what changed and frees BEFORE. */
static bool thing_watched(struct registry *reg)
{
    return wants(reg, REGISTRY_EVENT_THING) || wants(reg, REGISTRY_EVENT_THING_TYPE_ASSOCIATION);
}

static void thing_noted(struct registry *reg, const char *name, cJSON *before, bool existed)
{
    cJSON *after = thing_snapshot(reg, name);
    if (wants(reg, REGISTRY_EVENT_THING)) {
        if (after != NULL)
            note(reg, REGISTRY_EVENT_THING, existed ? REGISTRY_OP_UPDATED : REGISTRY_OP_CREATED,
                 cJSON_Duplicate(after, 1));
        else if (before != NULL)
            note(reg, REGISTRY_EVENT_THING, REGISTRY_OP_DELETED, cJSON_Duplicate(before, 1));
    }
    if (after != NULL && wants(reg, REGISTRY_EVENT_THING_TYPE_ASSOCIATION))
        note_association(reg, before, after);
    cJSON_Delete(before);
    cJSON_Delete(after);
}

/* ---- locking and transactions ----------------------------------------------------------- */

/* The errno of this thread's failed flush (0: none); reported and cleared by durable(). */
static _Thread_local int flush_errno;

/* Waits until commit SEQ is on disk, flushing the log itself unless another thread is at it. */
static void flush_through(struct wal_sync *ws, uint64_t seq)
{
    pthread_mutex_lock(&ws->lock);
    while (ws->flushed < seq) {
        if (ws->flushing) {
            pthread_cond_wait(&ws->done, &ws->lock);
            continue;
        }
        ws->flushing = true;
        uint64_t upto = atomic_load(&ws->committed); /* every commit whose write has returned */
        if (ws->fd < 0)
            ws->fd = open(ws->path, O_RDWR | O_CLOEXEC);
        int fd = ws->fd;
        pthread_mutex_unlock(&ws->lock);
        bool synced = fd >= 0 && fdatasync(fd) == 0;
        if (!synced)
            flush_errno = errno ? errno : EIO;
        pthread_mutex_lock(&ws->lock);
        ws->flushing = false;
        if (synced && upto > ws->flushed)
            ws->flushed = upto;
        pthread_cond_broadcast(&ws->done);
        if (!synced)
            break;
    }
    pthread_mutex_unlock(&ws->lock);
}

static void lock(struct registry *reg)
{
    pthread_mutex_lock(&reg->lock);
    reg->held++;
}

/* The last level let go of: the thread's commit, if any, is flushed outside the lock. */
static void unlock(struct registry *reg)
{
    uint64_t seq = 0;
    if (--reg->held == 0) {
        seq = reg->unflushed;
        reg->unflushed = 0;
    }
    pthread_mutex_unlock(&reg->lock);
    if (seq != 0)
        flush_through(&reg->sync, seq);
}

/* After the lock is let go: whether this thread's last commit reached the disk. */
static enum iot_err durable(struct iot_error *err)
{
    int e = flush_errno;
    if (e == 0)
        return IOT_OK;
    flush_errno = 0;
    return iot_error_set(err, IOT_ERR_IO, "registry: a committed change could not be written "
                                          "to disk (%s)", strerror(e));
}

static enum iot_err exec(struct registry *reg, const char *sql, struct iot_error *err)
{
    int rc = sqlite3_exec(reg->db, sql, NULL, NULL, NULL);
    return rc == SQLITE_OK ? IOT_OK : db_error(reg, rc, err);
}

/* Takes the lock and opens a transaction level; on failure the lock is released. IMMEDIATE takes
 * the write lock up front, so no later statement of the transaction can fail with SQLITE_BUSY. */
static enum iot_err txn_open(struct registry *reg, struct iot_error *err)
{
    lock(reg);
    enum iot_err code;
    if (reg->depth == 0)
        code = run(reg, "BEGIN IMMEDIATE", NULL, 0, err);
    else if (sqlite3_get_autocommit(reg->db)) /* SQLite already rolled the caller's back */
        code = iot_error_set(err, IOT_ERR_IO, "registry: transaction aborted by an earlier error");
    else
        code = run(reg, "SAVEPOINT level", NULL, 0, err);
    if (code != IOT_OK) {
        unlock(reg);
        return code;
    }
    if (reg->depth == 0)
        reg->changes_at_begin = sqlite3_total_changes64(reg->db);
    if ((size_t)reg->depth < sizeof(reg->marks) / sizeof(reg->marks[0]))
        reg->marks[reg->depth] = reg->n_changes;
    reg->depth++;
    return IOT_OK;
}

static enum iot_err close_savepoint(struct registry *reg, bool commit, struct iot_error *err)
{
    if (sqlite3_get_autocommit(reg->db))
        return commit ? iot_error_set(err, IOT_ERR_IO, "registry: transaction aborted") : IOT_OK;
    enum iot_err code = commit ? IOT_OK : run(reg, "ROLLBACK TO level", NULL, 0, err);
    if (code == IOT_OK)
        code = run(reg, "RELEASE level", NULL, 0, err);
    if (!commit && (size_t)reg->depth < sizeof(reg->marks) / sizeof(reg->marks[0]))
        drop_changes(reg, reg->marks[reg->depth]);
    return code;
}

/* Marks KEY (a certificate id or thing name; NULL: every connection) as changed by the
 * transaction being built. Out of memory, the change is published as concerning everyone. */
static void authz_touch(struct registry *reg, const char *key)
{
    struct authz_versions *a = &reg->authz;
    struct authz_key *k = NULL;
    a->pending = true;
    if (key == NULL) {
        a->pending_everyone = true;
        return;
    }
    pthread_mutex_lock(&a->lock);
    HASH_FIND_STR(a->keys, key, k);
    if (k == NULL && (k = calloc(1, sizeof(*k))) != NULL) {
        if ((k->key = strdup(key)) != NULL) {
            HASH_ADD_KEYPTR(hh, a->keys, k->key, strlen(k->key), k);
        } else {
            free(k);
            k = NULL;
        }
    }
    if (k != NULL && !k->pending) {
        k->pending = true;
        k->next_pending = a->pending_keys;
        a->pending_keys = k;
    } else if (k == NULL)
        a->pending_lost = true;
    pthread_mutex_unlock(&a->lock);
}

/* Ends the outer transaction's marks: published when COMMITTED, dropped otherwise. */
static void authz_settle(struct registry *reg, bool committed)
{
    struct authz_versions *a = &reg->authz;
    if (!a->pending)
        return;
    uint64_t v = atomic_load(&a->version) + 1;
    pthread_mutex_lock(&a->lock);
    for (struct authz_key *k = a->pending_keys; k != NULL; k = k->next_pending) {
        if (committed)
            k->version = v;
        k->pending = false;
    }
    a->pending_keys = NULL;
    pthread_mutex_unlock(&a->lock);
    if (committed) {
        if (a->pending_everyone || a->pending_lost)
            atomic_store(&a->everyone, v);
        atomic_store(&a->version, v);
    }
    a->pending = a->pending_everyone = a->pending_lost = false;
}

static void authz_free(struct authz_versions *a)
{
    struct authz_key *k, *tmp;
    HASH_ITER(hh, a->keys, k, tmp)
    {
        HASH_DEL(a->keys, k);
        free(k->key);
        free(k);
    }
    pthread_mutex_destroy(&a->lock);
}

uint64_t registry_authz_version(struct registry *reg)
{
    return atomic_load(&reg->authz.version);
}

static bool key_changed(struct authz_versions *a, const char *key, uint64_t since)
{
    struct authz_key *k = NULL;
    if (key == NULL)
        return false;
    HASH_FIND_STR(a->keys, key, k);
    return k != NULL && k->version > since;
}

bool registry_authz_changed(struct registry *reg, uint64_t since, const char *cert_id,
                            const char *thing)
{
    struct authz_versions *a = &reg->authz;
    if (atomic_load(&a->everyone) > since)
        return true;
    pthread_mutex_lock(&a->lock);
    bool changed = key_changed(a, cert_id, since) || key_changed(a, thing, since);
    pthread_mutex_unlock(&a->lock);
    return changed;
}

/* The version moves only when a commit actually changed rows; a failed or empty one leaves
 * caches valid. */
static enum iot_err finish_outer(struct registry *reg, bool committed, enum iot_err code)
{
    if (committed)
        deliver_changes(reg);
    else
        drop_changes(reg, 0);
    if (reg->events_stale)
        load_event_mask(reg);
    return code;
}

static enum iot_err close_outer(struct registry *reg, bool commit, struct iot_error *err)
{
    if (sqlite3_get_autocommit(reg->db)) {
        authz_settle(reg, false);
        return finish_outer(reg, false,
                            commit ? iot_error_set(err, IOT_ERR_IO, "registry: transaction aborted")
                                   : IOT_OK);
    }
    enum iot_err code = IOT_OK;
    if (commit) {
        code = run(reg, "COMMIT", NULL, 0, err);
        if (code == IOT_OK) {
            bool changed = sqlite3_total_changes64(reg->db) != reg->changes_at_begin;
            if (changed && reg->sync.on)
                reg->unflushed = atomic_fetch_add(&reg->sync.committed, 1) + 1;
            if (changed)
                atomic_fetch_add(&reg->version, 1);
            authz_settle(reg, changed);
            return finish_outer(reg, true, IOT_OK);
        }
    }
    sqlite3_exec(reg->db, "ROLLBACK", NULL, NULL, NULL);
    authz_settle(reg, false);
    return finish_outer(reg, false, code);
}

/* Closes the level txn_open() opened and releases its lock. */
static enum iot_err txn_close(struct registry *reg, bool commit, struct iot_error *err)
{
    reg->depth--;
    enum iot_err code =
        reg->depth > 0 ? close_savepoint(reg, commit, err) : close_outer(reg, commit, err);
    unlock(reg);
    return code;
}

/* Ends a write call: commits its level if CODE is IOT_OK, else rolls it back and returns CODE. */
static enum iot_err txn_end(struct registry *reg, enum iot_err code, struct iot_error *err)
{
    enum iot_err closed = txn_close(reg, code == IOT_OK, err);
    if (closed == IOT_OK)
        closed = durable(err); /* a flush happens only when the outermost level lets go */
    return code != IOT_OK ? code : closed;
}

enum iot_err registry_begin(struct registry *reg)
{
    return txn_open(reg, NULL);
}

enum iot_err registry_commit(struct registry *reg)
{
    lock(reg);
    enum iot_err code = reg->depth > 0 ? txn_close(reg, true, NULL) : IOT_ERR_INTERNAL;
    unlock(reg);
    return code == IOT_OK ? durable(NULL) : code;
}

void registry_rollback(struct registry *reg)
{
    lock(reg);
    if (reg->depth > 0)
        txn_close(reg, false, NULL);
    unlock(reg);
}

uint64_t registry_version(struct registry *reg)
{
    return atomic_load(&reg->version);
}

uint64_t registry_cert_version(struct registry *reg)
{
    return atomic_load(&reg->cert_version);
}

/* ---- open and close --------------------------------------------------------------------- */

/* PRAGMA journal_mode answers the mode now in force. */
static int wal_mode_set(void *arg, int n, char **values, char **names)
{
    *(bool *)arg = n == 1 && values[0] != NULL && strcasecmp(values[0], "wal") == 0;
    return 0;
}

static enum iot_err connect_db(struct registry *reg, const char *path, struct iot_error *err)
{
    int rc = sqlite3_open_v2(path, &reg->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_busy_timeout(reg->db, BUSY_TIMEOUT_MS);
    /* WAL, so that readers never block the writer, with commits flushed by the group commit; if
     * the file system cannot do WAL, SQLite's own flush at each commit (FULL). The first
     * statement also reads the header, so a foreign file fails here. */
    bool memory = strcmp(path, ":memory:") == 0;
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(reg->db, "PRAGMA foreign_keys=ON;", NULL, NULL, NULL);
    if (rc == SQLITE_OK && !memory)
        rc = sqlite3_exec(reg->db, "PRAGMA journal_mode=WAL;", wal_mode_set, &reg->sync.on, NULL);
    if (rc == SQLITE_OK && !memory)
        rc = sqlite3_exec(reg->db,
                          reg->sync.on ? "PRAGMA synchronous=NORMAL;" : "PRAGMA synchronous=FULL;",
                          NULL, NULL, NULL);
    if (rc == SQLITE_OK && reg->sync.on) {
        size_t n = strlen(path) + sizeof("-wal");
        if ((reg->sync.path = malloc(n)) == NULL)
            return iot_error_set(err, IOT_ERR_NOMEM, "registry: out of memory");
        snprintf(reg->sync.path, n, "%s-wal", path);
    }
    if (rc == SQLITE_OK)
        return IOT_OK;
    const char *msg = reg->db ? sqlite3_errmsg(reg->db) : sqlite3_errstr(rc);
    return iot_error_set(err, rc == SQLITE_NOMEM ? IOT_ERR_NOMEM : IOT_ERR_IO,
                         "registry %s: cannot open: %s", path, msg);
}

static enum iot_err read_int(struct registry *reg, const char *sql, long long *out,
                             struct iot_error *err)
{
    sqlite3_stmt *st;
    bool found = false;
    enum iot_err code = prepare(reg, &st, sql, NULL, 0, err);
    if (code == IOT_OK)
        code = first_row(reg, st, &found, err);
    *out = found ? sqlite3_column_int64(st, 0) : 0;
    release(reg, st);
    return code;
}

/* Refuses a database written by a newer iotmock, or one that some other program made. */
static enum iot_err check_schema(struct registry *reg, const char *path, struct iot_error *err)
{
    long long version, objects;
    enum iot_err code = read_int(reg, "PRAGMA user_version", &version, err);
    if (code == IOT_OK)
        code = read_int(reg, "SELECT count(*) FROM sqlite_master", &objects, err);
    if (code != IOT_OK)
        return code;
    if (version > SCHEMA_VERSION)
        return iot_error_set(err, IOT_ERR_IO, "registry %s: schema version %lld is newer than %d",
                             path, version, SCHEMA_VERSION);
    if (version == 0 && objects > 0)
        return iot_error_set(err, IOT_ERR_IO, "registry %s: not an iotmock registry", path);
    return IOT_OK;
}

static enum iot_err column_exists(struct registry *reg, const char *table, const char *column,
                                  bool *out, struct iot_error *err)
{
    return exists(reg, "SELECT 1 FROM pragma_table_info(?1) WHERE name = ?2",
                  ARGS(ARG_TEXT(table), ARG_TEXT(column)), out, err);
}

static enum iot_err add_columns(struct registry *reg, struct iot_error *err)
{
    enum iot_err code = IOT_OK;
    for (size_t i = 0; code == IOT_OK && i < sizeof(ADDED_COLUMNS) / sizeof(ADDED_COLUMNS[0]);
         i++) {
        bool present = false;
        code = column_exists(reg, ADDED_COLUMNS[i].table, ADDED_COLUMNS[i].column, &present, err);
        if (code != IOT_OK || present)
            continue;
        char sql[256]; /* names from the table above, never from a client */
        snprintf(sql, sizeof(sql), "ALTER TABLE %s ADD COLUMN %s %s", ADDED_COLUMNS[i].table,
                 ADDED_COLUMNS[i].column, ADDED_COLUMNS[i].decl);
        code = exec(reg, sql, err);
    }
    return code;
}

static enum iot_err create_schema(struct registry *reg, const char *path, struct iot_error *err)
{
    enum iot_err code = txn_open(reg, err);
    if (code != IOT_OK)
        return code;
    code = check_schema(reg, path, err);
    if (code == IOT_OK)
        code = exec(reg, SCHEMA_SQL, err);
    if (code == IOT_OK)
        code = add_columns(reg, err);
    if (code == IOT_OK)
        code = exec(reg, MIGRATE_SQL, err);
    if (code == IOT_OK)
        code = exec(reg, "PRAGMA user_version = 1", err);
    return txn_end(reg, code, err);
}

static enum iot_err init_lock(struct registry *reg)
{
    pthread_mutexattr_t attr;
    if (pthread_mutexattr_init(&attr) != 0)
        return IOT_ERR_INTERNAL;
    int rc = pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_RECURSIVE);
    if (rc == 0)
        rc = pthread_mutex_init(&reg->lock, &attr);
    pthread_mutexattr_destroy(&attr);
    return rc == 0 ? IOT_OK : IOT_ERR_INTERNAL;
}

enum iot_err registry_open(const char *path, struct registry **out, struct iot_error *err)
{
    *out = NULL;
    if (empty(path))
        return missing(err, "Registry path");
    struct registry *reg = calloc(1, sizeof(*reg));
    if (reg == NULL)
        return iot_error_set(err, IOT_ERR_NOMEM, "registry: out of memory");
    if (init_lock(reg) != IOT_OK) {
        free(reg);
        return iot_error_set(err, IOT_ERR_INTERNAL, "registry: cannot create its lock");
    }
    if (pthread_mutex_init(&reg->authz.lock, NULL) != 0) {
        pthread_mutex_destroy(&reg->lock);
        free(reg);
        return iot_error_set(err, IOT_ERR_INTERNAL, "registry: cannot create its lock");
    }
    reg->sync.fd = -1;
    if (pthread_mutex_init(&reg->sync.lock, NULL) != 0 ||
        pthread_cond_init(&reg->sync.done, NULL) != 0) {
        pthread_mutex_destroy(&reg->authz.lock);
        pthread_mutex_destroy(&reg->lock);
        free(reg);
        return iot_error_set(err, IOT_ERR_INTERNAL, "registry: cannot create its lock");
    }
    /* Starting at 1 means a cache stamped 0 (never filled) never looks current. */
    atomic_init(&reg->version, 1);
    atomic_init(&reg->authz.version, 1);
    enum iot_err code = connect_db(reg, path, err);
    if (code == IOT_OK)
        code = create_schema(reg, path, err);
    if (code != IOT_OK) {
        registry_close(reg);
        return code;
    }
    load_event_mask(reg);
    *out = reg;
    return IOT_OK;
}

void registry_close(struct registry *reg)
{
    if (reg == NULL)
        return;
    if (reg->depth > 0 && reg->db != NULL) /* a transaction nobody ended is not committed */
        sqlite3_exec(reg->db, "ROLLBACK", NULL, NULL, NULL);
    drop_changes(reg, 0);
    free(reg->changes);
    drop_statements(reg);
    sqlite3_close(reg->db);
    authz_free(&reg->authz);
    if (reg->sync.fd >= 0)
        close(reg->sync.fd);
    free(reg->sync.path);
    pthread_cond_destroy(&reg->sync.done);
    pthread_mutex_destroy(&reg->sync.lock);
    pthread_mutex_destroy(&reg->lock);
    free(reg);
}

/* ---- certificate status names ----------------------------------------------------------- */

const char *registry_cert_status_name(enum cert_status s)
{
    if ((unsigned)s >= STATUS_COUNT)
        return "UNKNOWN"; /* still a static string, so a caller can print it */
    return STATUS_NAMES[s];
}

bool registry_cert_status_parse(const char *s, enum cert_status *out)
{
    if (s == NULL)
        return false;
    for (size_t i = 0; i < STATUS_COUNT; i++) {
        if (strcasecmp(s, STATUS_NAMES[i]) == 0) {
            if (out != NULL)
                *out = (enum cert_status)i;
            return true;
        }
    }
    return false;
}

/* ---- certificates ----------------------------------------------------------------------- */

void registry_cert_clear(struct registry_cert *c)
{
    if (c == NULL)
        return;
    free(c->pem);
    memset(c, 0, sizeof(*c));
}

static enum iot_err cert_exists(struct registry *reg, const char *id, bool *out,
                                struct iot_error *err)
{
    return exists(reg, "SELECT 1 FROM certificates WHERE id = ?1", ARGS(ARG_TEXT(id)), out, err);
}

static enum iot_err require_cert(struct registry *reg, const char *id, struct iot_error *err)
{
    bool found;
    enum iot_err code = cert_exists(reg, id, &found, err);
    if (code == IOT_OK && !found)
        code = iot_error_set(err, IOT_ERR_NOT_FOUND, "Certificate %s not found", id);
    return code;
}

static enum iot_err insert_cert(struct registry *reg, const struct registry_cert *c,
                                struct iot_error *err)
{
    if (!valid_id(c->id) || memchr(c->ca_id, '\0', sizeof(c->ca_id)) == NULL)
        return missing(err, "Certificate id");
    if ((unsigned)c->status >= STATUS_COUNT)
        return iot_error_set(err, IOT_ERR_INVALID_REQUEST, "Invalid certificate status %d",
                             (int)c->status);
    bool taken;
    enum iot_err code = cert_exists(reg, c->id, &taken, err);
    if (code != IOT_OK)
        return code;
    if (taken)
        return iot_error_set(err, IOT_ERR_ALREADY_EXISTS, "Certificate %s already exists", c->id);
    long long created = now_or(c->created);
    return run(reg,
               "INSERT INTO certificates (id, pem, status, ca_id, created, modified)"
               " VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
               ARGS(ARG_TEXT(c->id), ARG_TEXT(c->pem), ARG_TEXT(STATUS_NAMES[c->status]),
                    ARG_TEXT(c->ca_id), ARG_NUM(created), ARG_NUM(now_or(c->modified))),
               err);
}

enum iot_err registry_cert_insert(struct registry *reg, const struct registry_cert *c,
                                  struct iot_error *err)
{
    enum iot_err code = txn_open(reg, err);
    if (code != IOT_OK)
        return code;
    return txn_end(reg, insert_cert(reg, c, err), err);
}

/* Reads a status column; a value this build does not know means the file was edited by hand. */
static enum iot_err column_status(sqlite3_stmt *st, int i, enum cert_status *out,
                                  struct iot_error *err)
{
    const char *s = (const char *)sqlite3_column_text(st, i);
    if (registry_cert_status_parse(s, out))
        return IOT_OK;
    return iot_error_set(err, IOT_ERR_INTERNAL, "registry: unknown certificate status '%s'",
                         s ? s : "");
}

static enum iot_err read_cert(sqlite3_stmt *st, struct registry_cert *out, struct iot_error *err)
{
    copy_id(st, 0, out->id);
    copy_id(st, 3, out->ca_id);
    out->created = sqlite3_column_int64(st, 4);
    out->modified = sqlite3_column_int64(st, 5);
    if (!dup_column(st, 1, &out->pem))
        return iot_error_set(err, IOT_ERR_NOMEM, "registry: out of memory");
    return column_status(st, 2, &out->status, err);
}

static enum iot_err get_cert(struct registry *reg, const char *id, struct registry_cert *out,
                             struct iot_error *err)
{
    sqlite3_stmt *st;
    bool found = false;
    enum iot_err code =
        prepare(reg, &st,
                "SELECT id, pem, status, ca_id, created, modified FROM certificates WHERE id = ?1",
                ARGS(ARG_TEXT(id)), err);
    if (code == IOT_OK)
        code = first_row(reg, st, &found, err);
    if (code == IOT_OK && !found)
        code = iot_error_set(err, IOT_ERR_NOT_FOUND, "Certificate %s not found", id);
    if (code == IOT_OK)
        code = read_cert(st, out, err);
    release(reg, st);
    return code;
}

enum iot_err registry_cert_get(struct registry *reg, const char *id, struct registry_cert *out,
                               struct iot_error *err)
{
    memset(out, 0, sizeof(*out));
    if (empty(id))
        return missing(err, "Certificate id");
    lock(reg);
    enum iot_err code = get_cert(reg, id, out, err);
    unlock(reg);
    if (code != IOT_OK)
        registry_cert_clear(out);
    return code;
}

static enum iot_err get_status(struct registry *reg, const char *id, enum cert_status *out)
{
    sqlite3_stmt *st;
    bool found = false;
    enum iot_err code = prepare(reg, &st, "SELECT status FROM certificates WHERE id = ?1",
                                ARGS(ARG_TEXT(id)), NULL);
    if (code == IOT_OK)
        code = first_row(reg, st, &found, NULL);
    if (code == IOT_OK)
        code = found ? column_status(st, 0, out, NULL) : IOT_ERR_NOT_FOUND;
    release(reg, st);
    return code;
}

enum iot_err registry_cert_status(struct registry *reg, const char *id, enum cert_status *out)
{
    if (empty(id))
        return IOT_ERR_NOT_FOUND;
    lock(reg);
    enum iot_err code = get_status(reg, id, out);
    unlock(reg);
    return code;
}

static enum iot_err set_status(struct registry *reg, const char *id, enum cert_status s,
                               struct iot_error *err)
{
    if ((unsigned)s >= STATUS_COUNT)
        return iot_error_set(err, IOT_ERR_INVALID_REQUEST, "Invalid certificate status %d", (int)s);
    /* customerVersion counts changes (§6.5; the increment rule is UNCONFIRMED). */
    enum iot_err code = run(reg,
                            "UPDATE certificates SET customer_version = customer_version +"
                            " (status <> ?2), status = ?2, modified = ?3 WHERE id = ?1",
                            ARGS(ARG_TEXT(id), ARG_TEXT(STATUS_NAMES[s]), ARG_NUM(now_or(0))), err);
    if (code == IOT_OK && sqlite3_changes(reg->db) == 0)
        code = iot_error_set(err, IOT_ERR_NOT_FOUND, "Certificate %s not found", id);
    if (code == IOT_OK)
        atomic_fetch_add(&reg->cert_version, 1);
    return code;
}

enum iot_err registry_cert_set_status(struct registry *reg, const char *id, enum cert_status s,
                                      struct iot_error *err)
{
    if (empty(id))
        return missing(err, "Certificate id");
    enum iot_err code = txn_open(reg, err);
    if (code != IOT_OK)
        return code;
    return txn_end(reg, set_status(reg, id, s, err), err);
}

/* Removes the certificate and every row naming it. Policy targets carry no foreign key (a target
 * may be any principal string), so they are deleted by hand; the rest are explicit too, so the
 * cascade does not depend on foreign_keys being on. */
static enum iot_err delete_cert(struct registry *reg, const char *id, struct iot_error *err)
{
    static const char *const sql[] = {
        "DELETE FROM tokens WHERE cert_id = ?1",
        "DELETE FROM policy_targets WHERE target = ?1",
        "DELETE FROM thing_principals WHERE principal = ?1",
        "DELETE FROM certificates WHERE id = ?1",
    };
    enum iot_err code = require_cert(reg, id, err);
    authz_touch(reg, id); /* its policy attachments and thing principals go */
    atomic_fetch_add(&reg->cert_version, 1);
    for (size_t i = 0; code == IOT_OK && i < sizeof(sql) / sizeof(sql[0]); i++)
        code = run(reg, sql[i], ARGS(ARG_TEXT(id)), err);
    return code;
}

enum iot_err registry_cert_delete(struct registry *reg, const char *id, struct iot_error *err)
{
    if (empty(id))
        return missing(err, "Certificate id");
    enum iot_err code = txn_open(reg, err);
    if (code != IOT_OK)
        return code;
    return txn_end(reg, delete_cert(reg, id, err), err);
}

enum iot_err registry_cert_is_attached(struct registry *reg, const char *id, bool *out)
{
    *out = false;
    lock(reg);
    enum iot_err code =
        exists(reg,
               "SELECT 1 WHERE EXISTS (SELECT 1 FROM policy_targets WHERE target = ?1)"
               " OR EXISTS (SELECT 1 FROM thing_principals WHERE principal = ?1)",
               ARGS(ARG_TEXT(id)), out, NULL);
    unlock(reg);
    return code;
}

/* ---- things ----------------------------------------------------------------------------- */

void registry_thing_clear(struct registry_thing *t)
{
    if (t == NULL)
        return;
    free(t->name);
    free(t->id);
    free(t->type_name);
    cJSON_Delete(t->attributes);
    memset(t, 0, sizeof(*t));
}

static enum iot_err require_thing(struct registry *reg, const char *name, struct iot_error *err)
{
    bool found;
    enum iot_err code =
        exists(reg, "SELECT 1 FROM things WHERE name = ?1", ARGS(ARG_TEXT(name)), &found, err);
    if (code == IOT_OK && !found)
        code = iot_error_set(err, IOT_ERR_NOT_FOUND, "Thing %s not found", name);
    return code;
}

static enum iot_err read_thing(sqlite3_stmt *st, struct registry_thing *out, struct iot_error *err)
{
    char *attributes = NULL;
    enum iot_err code = IOT_OK;
    out->version = sqlite3_column_int64(st, 4);
    if (!dup_column(st, 0, &out->name) || !dup_column(st, 1, &out->id) ||
        !dup_column(st, 2, &out->type_name) || !dup_column(st, 3, &attributes)) {
        code = iot_error_set(err, IOT_ERR_NOMEM, "registry: out of memory");
        goto cleanup;
    }
    if (attributes != NULL && (out->attributes = cJSON_Parse(attributes)) == NULL)
        code = iot_error_set(err, IOT_ERR_INTERNAL, "registry: attributes of thing %s unreadable",
                             out->name);
cleanup:
    free(attributes);
    return code;
}

static enum iot_err get_thing(struct registry *reg, const char *name, struct registry_thing *out,
                              struct iot_error *err)
{
    sqlite3_stmt *st;
    bool found = false;
    enum iot_err code = prepare(
        reg, &st, "SELECT name, id, type_name, attributes, version FROM things WHERE name = ?1",
        ARGS(ARG_TEXT(name)), err);
    if (code == IOT_OK)
        code = first_row(reg, st, &found, err);
    if (code == IOT_OK && !found)
        code = iot_error_set(err, IOT_ERR_NOT_FOUND, "Thing %s not found", name);
    if (code == IOT_OK)
        code = read_thing(st, out, err);
    release(reg, st);
    return code;
}

enum iot_err registry_thing_get(struct registry *reg, const char *name, struct registry_thing *out,
                                struct iot_error *err)
{
    memset(out, 0, sizeof(*out));
    if (empty(name))
        return missing(err, "Thing name");
    lock(reg);
    enum iot_err code = get_thing(reg, name, out, err);
    unlock(reg);
    if (code != IOT_OK)
        registry_thing_clear(out);
    return code;
}

static enum iot_err require_type(struct registry *reg, const char *name, struct iot_error *err)
{
    bool found;
    enum iot_err code =
        exists(reg, "SELECT 1 FROM thing_types WHERE name = ?1", ARGS(ARG_TEXT(name)), &found, err);
    if (code == IOT_OK && !found)
        code = iot_error_set(err, IOT_ERR_NOT_FOUND, "Thing type %s not found", name);
    return code;
}

/* An upsert rather than INSERT OR REPLACE: REPLACE deletes the old row first, which would cascade
 * away the thing's group memberships and principals. */
static enum iot_err put_thing(struct registry *reg, const struct registry_thing *t,
                              struct iot_error *err)
{
    char *attributes = NULL;
    char uuid_text[37];
    enum iot_err code = IOT_OK;
    if (t->type_name != NULL && (code = require_type(reg, t->type_name, err)) != IOT_OK)
        return code;
    if (t->attributes != NULL && !cJSON_IsObject(t->attributes))
        return iot_error_set(err, IOT_ERR_INVALID_REQUEST, "Thing attributes must be an object");
    if (t->attributes != NULL && (attributes = cJSON_PrintUnformatted(t->attributes)) == NULL)
        return iot_error_set(err, IOT_ERR_NOMEM, "registry: out of memory");
    if (t->id == NULL)
        new_uuid(uuid_text);
    authz_touch(reg, t->name); /* type and attributes are policy variables */
    code = run(reg,
               "INSERT INTO things (name, id, type_name, attributes, version)"
               " VALUES (?1, ?2, ?3, ?4, 1) ON CONFLICT (name) DO UPDATE SET"
               " type_name = excluded.type_name, attributes = excluded.attributes,"
               " version = version + 1",
               ARGS(ARG_TEXT(t->name), ARG_TEXT(t->id ? t->id : uuid_text), ARG_TEXT(t->type_name),
                    ARG_TEXT(attributes)),
               err);
    free(attributes);
    return code;
}

enum iot_err registry_thing_put(struct registry *reg, const struct registry_thing *t,
                                struct iot_error *err)
{
    if (empty(t->name))
        return missing(err, "Thing name");
    enum iot_err code = txn_open(reg, err);
    if (code != IOT_OK)
        return code;
    cJSON *before = thing_watched(reg) ? thing_snapshot(reg, t->name) : NULL;
    bool existed = before != NULL;
    code = put_thing(reg, t, err);
    if (code == IOT_OK && thing_watched(reg))
        thing_noted(reg, t->name, before, existed);
    else
        cJSON_Delete(before);
    return txn_end(reg, code, err);
}

static enum iot_err delete_thing(struct registry *reg, const char *name, struct iot_error *err)
{
    static const char *const sql[] = {
        "DELETE FROM thing_group_members WHERE thing = ?1",
        "DELETE FROM thing_principals WHERE thing = ?1",
        "DELETE FROM things WHERE name = ?1",
    };
    enum iot_err code = require_thing(reg, name, err);
    authz_touch(reg, name);
    for (size_t i = 0; code == IOT_OK && i < sizeof(sql) / sizeof(sql[0]); i++)
        code = run(reg, sql[i], ARGS(ARG_TEXT(name)), err);
    return code;
}

enum iot_err registry_thing_delete(struct registry *reg, const char *name, struct iot_error *err)
{
    if (empty(name))
        return missing(err, "Thing name");
    enum iot_err code = txn_open(reg, err);
    if (code != IOT_OK)
        return code;
    cJSON *before = thing_watched(reg) ? thing_snapshot(reg, name) : NULL;
    code = delete_thing(reg, name, err);
    if (code == IOT_OK && thing_watched(reg))
        thing_noted(reg, name, before, true);
    else
        cJSON_Delete(before);
    return txn_end(reg, code, err);
}

/* ---- thing types and groups ------------------------------------------------------------- */

static bool name_exists(struct registry *reg, const char *sql, const char *name)
{
    bool found = false;
    if (empty(name))
        return false;
    lock(reg);
    if (exists(reg, sql, ARGS(ARG_TEXT(name)), &found, NULL) != IOT_OK)
        found = false;
    unlock(reg);
    return found;
}

/* Records the creation of the type or group NAME that SQL inserted. */
static void note_created(struct registry *reg, const char *sql, const char *name)
{
    bool type = strstr(sql, "thing_types") != NULL;
    if (type && wants(reg, REGISTRY_EVENT_THING_TYPE))
        note(reg, REGISTRY_EVENT_THING_TYPE, REGISTRY_OP_CREATED, type_snapshot(reg, name));
    else if (!type && wants(reg, REGISTRY_EVENT_THING_GROUP))
        note(reg, REGISTRY_EVENT_THING_GROUP, REGISTRY_OP_CREATED, group_snapshot(reg, name));
}

/* Idempotent, as AWS's CreateThingType/CreateThingGroup are for an identical request. */
static enum iot_err put_name(struct registry *reg, const char *sql, const char *name,
                             const char *what, struct iot_error *err)
{
    if (empty(name))
        return missing(err, what);
    char id[37];
    new_uuid(id);
    enum iot_err code = txn_open(reg, err);
    if (code != IOT_OK)
        return code;
    code = run(reg, sql, ARGS(ARG_TEXT(name), ARG_NUM(now_or(0)), ARG_TEXT(id)), err);
    if (code == IOT_OK && sqlite3_changes(reg->db) > 0)
        note_created(reg, sql, name);
    return txn_end(reg, code, err);
}

bool registry_thing_type_exists(struct registry *reg, const char *name)
{
    return name_exists(reg, "SELECT 1 FROM thing_types WHERE name = ?1", name);
}

enum iot_err registry_thing_type_put(struct registry *reg, const char *name, struct iot_error *err)
{
    return put_name(reg,
                    "INSERT OR IGNORE INTO thing_types (name, created, id) VALUES (?1, ?2, ?3)",
                    name, "Thing type name", err);
}

bool registry_thing_group_exists(struct registry *reg, const char *name)
{
    return name_exists(reg, "SELECT 1 FROM thing_groups WHERE name = ?1", name);
}

enum iot_err registry_thing_group_put(struct registry *reg, const char *name, struct iot_error *err)
{
    return put_name(reg,
                    "INSERT OR IGNORE INTO thing_groups (name, created, id) VALUES (?1, ?2, ?3)",
                    name, "Thing group name", err);
}

static enum iot_err require_group_and_thing(struct registry *reg, const char *group,
                                            const char *thing, struct iot_error *err)
{
    bool found;
    enum iot_err code = exists(reg, "SELECT 1 FROM thing_groups WHERE name = ?1",
                               ARGS(ARG_TEXT(group)), &found, err);
    if (code == IOT_OK && !found)
        code = iot_error_set(err, IOT_ERR_NOT_FOUND, "Thing group %s not found", group);
    if (code == IOT_OK)
        code = require_thing(reg, thing, err);
    return code;
}

/* Runs SQL on the (group, thing) pair once both exist. */
static enum iot_err change_membership(struct registry *reg, const char *sql, const char *group,
                                      const char *thing, struct iot_error *err)
{
    if (empty(group) || empty(thing))
        return missing(err, empty(group) ? "Thing group name" : "Thing name");
    enum iot_err code = txn_open(reg, err);
    if (code != IOT_OK)
        return code;
    bool watch = wants(reg, REGISTRY_EVENT_THING_GROUP_MEMBERSHIP);
    bool add = strncmp(sql, "INSERT", 6) == 0;
    cJSON *before = watch && !add ? membership_snapshot(reg, group, thing) : NULL;
    code = require_group_and_thing(reg, group, thing, err);
    authz_touch(reg, thing); /* the thing's group policies */
    if (code == IOT_OK)
        code = run(reg, sql, ARGS(ARG_TEXT(group), ARG_TEXT(thing)), err);
    if (code == IOT_OK && watch && sqlite3_changes(reg->db) > 0) {
        note(reg, REGISTRY_EVENT_THING_GROUP_MEMBERSHIP,
             add ? REGISTRY_OP_ADDED : REGISTRY_OP_REMOVED,
             add ? membership_snapshot(reg, group, thing) : before);
        before = NULL;
    }
    cJSON_Delete(before);
    return txn_end(reg, code, err);
}

enum iot_err registry_thing_group_add(struct registry *reg, const char *group, const char *thing,
                                      struct iot_error *err)
{
    return change_membership(
        reg,
        "INSERT OR IGNORE INTO thing_group_members (\"group\", thing, membership_id)"
        " VALUES (?1, ?2, " SQL_UUID ")",
        group, thing, err);
}

enum iot_err registry_thing_group_remove(struct registry *reg, const char *group, const char *thing,
                                         struct iot_error *err)
{
    return change_membership(reg,
                             "DELETE FROM thing_group_members WHERE \"group\" = ?1 AND thing = ?2",
                             group, thing, err);
}

/* The list functions answer an empty array for an unknown key: they have no way to say which
 * resource was missing, and the callers check existence where AWS reports it. */
static enum iot_err list_by(struct registry *reg, const char *sql, const char *key, cJSON **out)
{
    lock(reg);
    enum iot_err code = select_strings(reg, sql, ARGS(ARG_TEXT(key)), out, NULL);
    unlock(reg);
    return code;
}

enum iot_err registry_thing_groups(struct registry *reg, const char *thing, cJSON **out)
{
    return list_by(reg, "SELECT \"group\" FROM thing_group_members WHERE thing = ?1 ORDER BY 1",
                   thing, out);
}

/* ---- thing principals ------------------------------------------------------------------- */

static enum iot_err attach_principal(struct registry *reg, const char *thing, const char *principal,
                                     struct iot_error *err)
{
    enum iot_err code = require_thing(reg, thing, err);
    if (code == IOT_OK)
        code = require_cert(reg, principal, err);
    authz_touch(reg, thing); /* the association of client id THING */
    if (code == IOT_OK)
        code = run(reg, "INSERT OR IGNORE INTO thing_principals (thing, principal) VALUES (?1, ?2)",
                   ARGS(ARG_TEXT(thing), ARG_TEXT(principal)), err);
    return code;
}

enum iot_err registry_thing_principal_attach(struct registry *reg, const char *thing,
                                             const char *principal, struct iot_error *err)
{
    if (empty(thing) || empty(principal))
        return missing(err, empty(thing) ? "Thing name" : "Principal");
    enum iot_err code = txn_open(reg, err);
    if (code != IOT_OK)
        return code;
    return txn_end(reg, attach_principal(reg, thing, principal, err), err);
}

/* Detaching what is not attached succeeds, as DetachThingPrincipal does. */
static enum iot_err detach_principal(struct registry *reg, const char *thing, const char *principal,
                                     struct iot_error *err)
{
    enum iot_err code = require_thing(reg, thing, err);
    authz_touch(reg, thing);
    if (code == IOT_OK)
        code = run(reg, "DELETE FROM thing_principals WHERE thing = ?1 AND principal = ?2",
                   ARGS(ARG_TEXT(thing), ARG_TEXT(principal)), err);
    return code;
}

enum iot_err registry_thing_principal_detach(struct registry *reg, const char *thing,
                                             const char *principal, struct iot_error *err)
{
    if (empty(thing) || empty(principal))
        return missing(err, empty(thing) ? "Thing name" : "Principal");
    enum iot_err code = txn_open(reg, err);
    if (code != IOT_OK)
        return code;
    return txn_end(reg, detach_principal(reg, thing, principal, err), err);
}

enum iot_err registry_principal_things(struct registry *reg, const char *principal, cJSON **out)
{
    return list_by(reg, "SELECT thing FROM thing_principals WHERE principal = ?1 ORDER BY 1",
                   principal, out);
}

enum iot_err registry_thing_principals(struct registry *reg, const char *thing, cJSON **out)
{
    return list_by(reg, "SELECT principal FROM thing_principals WHERE thing = ?1 ORDER BY 1", thing,
                   out);
}

/* ---- policies --------------------------------------------------------------------------- */

static enum iot_err policy_exists(struct registry *reg, const char *name, bool *out,
                                  struct iot_error *err)
{
    return exists(reg, "SELECT 1 FROM policies WHERE name = ?1", ARGS(ARG_TEXT(name)), out, err);
}

static enum iot_err require_policy(struct registry *reg, const char *name, struct iot_error *err)
{
    bool found;
    enum iot_err code = policy_exists(reg, name, &found, err);
    if (code == IOT_OK && !found)
        code = iot_error_set(err, IOT_ERR_NOT_FOUND, "Policy %s not found", name);
    return code;
}

static enum iot_err get_policy(struct registry *reg, const char *name, char **document,
                               struct iot_error *err)
{
    sqlite3_stmt *st;
    bool found = false;
    enum iot_err code = prepare(reg, &st, "SELECT document FROM policies WHERE name = ?1",
                                ARGS(ARG_TEXT(name)), err);
    if (code == IOT_OK)
        code = first_row(reg, st, &found, err);
    if (code == IOT_OK && !found)
        code = iot_error_set(err, IOT_ERR_NOT_FOUND, "Policy %s not found", name);
    if (code == IOT_OK && !dup_column(st, 0, document))
        code = iot_error_set(err, IOT_ERR_NOMEM, "registry: out of memory");
    release(reg, st);
    return code;
}

enum iot_err registry_policy_get(struct registry *reg, const char *name, char **document,
                                 struct iot_error *err)
{
    *document = NULL;
    if (empty(name))
        return missing(err, "Policy name");
    lock(reg);
    enum iot_err code = get_policy(reg, name, document, err);
    unlock(reg);
    return code;
}

static enum iot_err create_policy(struct registry *reg, const char *name, const char *document,
                                  struct iot_error *err)
{
    bool taken;
    enum iot_err code = policy_exists(reg, name, &taken, err);
    if (code == IOT_OK && taken)
        code = iot_error_set(err, IOT_ERR_ALREADY_EXISTS, "Policy %s already exists", name);
    long long now = now_or(0);
    if (code == IOT_OK)
        code = run(reg,
                   "INSERT INTO policies (name, document, default_version, created, modified)"
                   " VALUES (?1, ?2, 1, ?3, ?3)",
                   ARGS(ARG_TEXT(name), ARG_TEXT(document), ARG_NUM(now)), err);
    if (code == IOT_OK)
        code = run(reg,
                   "INSERT INTO policy_versions (policy, version, document, created)"
                   " VALUES (?1, 1, ?2, ?3)",
                   ARGS(ARG_TEXT(name), ARG_TEXT(document), ARG_NUM(now)), err);
    return code;
}

enum iot_err registry_policy_create(struct registry *reg, const char *name, const char *document,
                                    struct iot_error *err)
{
    if (empty(name) || document == NULL)
        return missing(err, empty(name) ? "Policy name" : "Policy document");
    enum iot_err code = txn_open(reg, err);
    if (code != IOT_OK)
        return code;
    return txn_end(reg, create_policy(reg, name, document, err), err);
}

static enum iot_err delete_policy(struct registry *reg, const char *name, struct iot_error *err)
{
    bool attached = false;
    enum iot_err code = require_policy(reg, name, err);
    if (code == IOT_OK)
        code = exists(reg, "SELECT 1 FROM policy_targets WHERE policy = ?1", ARGS(ARG_TEXT(name)),
                      &attached, err);
    if (code == IOT_OK && attached) /* AWS's DeletePolicy message, verbatim */
        code = iot_error_set(err, IOT_ERR_DELETE_CONFLICT,
                             "The policy cannot be deleted as the policy is attached to one or "
                             "more principals (name=%s)",
                             name);
    authz_touch(reg, NULL);
    if (code == IOT_OK)
        code = run(reg, "DELETE FROM policy_versions WHERE policy = ?1", ARGS(ARG_TEXT(name)), err);
    if (code == IOT_OK)
        code = run(reg, "DELETE FROM policies WHERE name = ?1", ARGS(ARG_TEXT(name)), err);
    return code;
}

enum iot_err registry_policy_delete(struct registry *reg, const char *name, struct iot_error *err)
{
    if (empty(name))
        return missing(err, "Policy name");
    enum iot_err code = txn_open(reg, err);
    if (code != IOT_OK)
        return code;
    return txn_end(reg, delete_policy(reg, name, err), err);
}

/* A certificate id: 64 lowercase hex digits (the SHA-256 of its DER). */
static bool is_cert_id(const char *s)
{
    size_t n = 0;
    for (; s[n]; n++)
        if (!((s[n] >= '0' && s[n] <= '9') || (s[n] >= 'a' && s[n] <= 'f')))
            return false;
    return n == 64;
}

/* Runs SQL on the (policy, target) pair once the policy exists. */
static enum iot_err change_target(struct registry *reg, const char *sql, const char *policy,
                                  const char *target, struct iot_error *err)
{
    if (empty(policy) || empty(target))
        return missing(err, empty(policy) ? "Policy name" : "Target");
    enum iot_err code = txn_open(reg, err);
    if (code != IOT_OK)
        return code;
    code = require_policy(reg, policy, err);
    /* A certificate's attachments concern its connections; a group's (or any other target's),
     * potentially everyone's. */
    authz_touch(reg, is_cert_id(target) ? target : NULL);
    if (code == IOT_OK)
        code = run(reg, sql, ARGS(ARG_TEXT(policy), ARG_TEXT(target)), err);
    return txn_end(reg, code, err);
}

enum iot_err registry_policy_attach(struct registry *reg, const char *policy, const char *target,
                                    struct iot_error *err)
{
    return change_target(reg,
                         "INSERT OR IGNORE INTO policy_targets (policy, target) VALUES (?1, ?2)",
                         policy, target, err);
}

enum iot_err registry_policy_detach(struct registry *reg, const char *policy, const char *target,
                                    struct iot_error *err)
{
    return change_target(reg, "DELETE FROM policy_targets WHERE policy = ?1 AND target = ?2",
                         policy, target, err);
}

enum iot_err registry_target_policies(struct registry *reg, const char *target, cJSON **out)
{
    return list_by(reg, "SELECT policy FROM policy_targets WHERE target = ?1 ORDER BY 1", target,
                   out);
}

/* ---- provisioning templates ------------------------------------------------------------- */

void registry_template_clear(struct registry_template *t)
{
    if (t == NULL)
        return;
    free(t->name);
    free(t->body);
    free(t->type);
    free(t->description);
    free(t->role_arn);
    free(t->hook_target_arn);
    free(t->hook_payload_version);
    memset(t, 0, sizeof(*t));
}

static enum iot_err read_template(sqlite3_stmt *st, struct registry_template *out,
                                  struct iot_error *err)
{
    char **text[] = {&out->name,
                     &out->body,
                     &out->type,
                     &out->description,
                     &out->role_arn,
                     &out->hook_target_arn,
                     &out->hook_payload_version};
    for (int i = 0; i < (int)(sizeof(text) / sizeof(text[0])); i++) {
        if (!dup_column(st, i, text[i]))
            return iot_error_set(err, IOT_ERR_NOMEM, "registry: out of memory");
    }
    out->enabled = sqlite3_column_int(st, 7) != 0;
    out->created = sqlite3_column_int64(st, 8);
    out->modified = sqlite3_column_int64(st, 9);
    return IOT_OK;
}

static enum iot_err get_template(struct registry *reg, const char *name,
                                 struct registry_template *out, struct iot_error *err)
{
    sqlite3_stmt *st;
    bool found = false;
    enum iot_err code = prepare(reg, &st,
                                "SELECT name, body, type, description, role_arn, hook_target_arn,"
                                " hook_payload_version, enabled, created, modified"
                                " FROM templates WHERE name = ?1",
                                ARGS(ARG_TEXT(name)), err);
    if (code == IOT_OK)
        code = first_row(reg, st, &found, err);
    if (code == IOT_OK && !found)
        code = iot_error_set(err, IOT_ERR_NOT_FOUND, "Template %s not found", name);
    if (code == IOT_OK)
        code = read_template(st, out, err);
    release(reg, st);
    return code;
}

enum iot_err registry_template_get(struct registry *reg, const char *name,
                                   struct registry_template *out, struct iot_error *err)
{
    memset(out, 0, sizeof(*out));
    if (empty(name))
        return missing(err, "Template name");
    lock(reg);
    enum iot_err code = get_template(reg, name, out, err);
    unlock(reg);
    if (code != IOT_OK)
        registry_template_clear(out);
    return code;
}

enum iot_err registry_template_put(struct registry *reg, const struct registry_template *t,
                                   struct iot_error *err)
{
    if (empty(t->name))
        return missing(err, "Template name");
    long long created = now_or(t->created);
    enum iot_err code = txn_open(reg, err);
    if (code != IOT_OK)
        return code;
    code = run(reg,
               "INSERT INTO templates (name, body, type, description, role_arn, hook_target_arn,"
               " hook_payload_version, enabled, created, modified)"
               " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) ON CONFLICT (name) DO UPDATE SET"
               " body = excluded.body, type = excluded.type, description = excluded.description,"
               " role_arn = excluded.role_arn, hook_target_arn = excluded.hook_target_arn,"
               " hook_payload_version = excluded.hook_payload_version,"
               " enabled = excluded.enabled, modified = excluded.modified",
               ARGS(ARG_TEXT(t->name), ARG_TEXT(t->body), ARG_TEXT(t->type),
                    ARG_TEXT(t->description), ARG_TEXT(t->role_arn), ARG_TEXT(t->hook_target_arn),
                    ARG_TEXT(t->hook_payload_version), ARG_NUM(t->enabled ? 1 : 0),
                    ARG_NUM(created), ARG_NUM(now_or(t->modified))),
               err);
    /* The body written is the default version's body. */
    if (code == IOT_OK)
        code = run(reg,
                   "INSERT INTO template_versions (template, version, body, created)"
                   " SELECT name, default_version, coalesce(body, ''), modified FROM templates"
                   " WHERE name = ?1 ON CONFLICT (template, version) DO UPDATE SET"
                   " body = excluded.body",
                   ARGS(ARG_TEXT(t->name)), err);
    return txn_end(reg, code, err);
}

static enum iot_err delete_template(struct registry *reg, const char *name, struct iot_error *err)
{
    enum iot_err code =
        run(reg, "DELETE FROM template_versions WHERE template = ?1", ARGS(ARG_TEXT(name)), err);
    if (code == IOT_OK)
        code = run(reg, "DELETE FROM templates WHERE name = ?1", ARGS(ARG_TEXT(name)), err);
    if (code == IOT_OK && sqlite3_changes(reg->db) == 0)
        code = iot_error_set(err, IOT_ERR_NOT_FOUND, "Template %s not found", name);
    return code;
}

enum iot_err registry_template_delete(struct registry *reg, const char *name, struct iot_error *err)
{
    if (empty(name))
        return missing(err, "Template name");
    enum iot_err code = txn_open(reg, err);
    if (code != IOT_OK)
        return code;
    return txn_end(reg, delete_template(reg, name, err), err);
}

/* ---- certificate ownership tokens ------------------------------------------------------- */

static enum iot_err put_token(struct registry *reg, const char *token_hash, const char *cert_id,
                              long long expires_at, struct iot_error *err)
{
    enum iot_err code = require_cert(reg, cert_id, err);
    if (code == IOT_OK)
        code = run(reg,
                   "INSERT INTO tokens (token_hash, cert_id, expires_at) VALUES (?1, ?2, ?3)"
                   " ON CONFLICT (token_hash) DO UPDATE SET"
                   " cert_id = excluded.cert_id, expires_at = excluded.expires_at",
                   ARGS(ARG_TEXT(token_hash), ARG_TEXT(cert_id), ARG_NUM(expires_at)), err);
    return code;
}

enum iot_err registry_token_put(struct registry *reg, const char *token_hash, const char *cert_id,
                                long long expires_at, struct iot_error *err)
{
    if (empty(token_hash) || empty(cert_id))
        return missing(err, empty(token_hash) ? "Token hash" : "Certificate id");
    enum iot_err code = txn_open(reg, err);
    if (code != IOT_OK)
        return code;
    return txn_end(reg, put_token(reg, token_hash, cert_id, expires_at, err), err);
}

static enum iot_err find_token(struct registry *reg, const char *token_hash, char cert_id[65],
                               long long *expires_at)
{
    sqlite3_stmt *st;
    bool found = false;
    enum iot_err code =
        prepare(reg, &st, "SELECT cert_id, expires_at FROM tokens WHERE token_hash = ?1",
                ARGS(ARG_TEXT(token_hash)), NULL);
    if (code == IOT_OK)
        code = first_row(reg, st, &found, NULL);
    if (code == IOT_OK && !found)
        code = IOT_ERR_NOT_FOUND;
    if (code == IOT_OK && cert_id != NULL)
        copy_id(st, 0, cert_id);
    if (code == IOT_OK && expires_at != NULL)
        *expires_at = sqlite3_column_int64(st, 1);
    release(reg, st);
    return code;
}

enum iot_err registry_token_find(struct registry *reg, const char *token_hash, char cert_id[65],
                                 long long *expires_at)
{
    if (empty(token_hash))
        return IOT_ERR_NOT_FOUND;
    lock(reg);
    enum iot_err code = find_token(reg, token_hash, cert_id, expires_at);
    unlock(reg);
    return code;
}

/* §1.11: a temporary provisioning-claim certificate is gone once its five minutes are over. */
static enum iot_err expire_claims(struct registry *reg, long long now, int *deleted)
{
    cJSON *doomed = NULL, *id;
    enum iot_err code = select_strings(
        reg,
        "SELECT id FROM certificates WHERE claim_template IS NOT NULL AND claim_expires <= ?1"
        " ORDER BY 1",
        ARGS(ARG_NUM(now)), &doomed, NULL);
    cJSON_ArrayForEach(id, doomed)
    {
        if (code == IOT_OK)
            code = delete_cert(reg, id->valuestring, NULL);
    }
    if (code == IOT_OK)
        *deleted = cJSON_GetArraySize(doomed);
    cJSON_Delete(doomed);
    return code;
}

/* §1.6: a certificate whose token expired before it was activated or attached is deleted. */
static enum iot_err expire_tokens(struct registry *reg, long long now, int *deleted)
{
    cJSON *doomed = NULL, *id;
    enum iot_err code = select_strings(
        reg,
        "SELECT DISTINCT c.id FROM tokens t JOIN certificates c ON c.id = t.cert_id"
        " WHERE t.expires_at <= ?1 AND c.status = ?2"
        " AND NOT EXISTS (SELECT 1 FROM policy_targets WHERE target = c.id)"
        " AND NOT EXISTS (SELECT 1 FROM thing_principals WHERE principal = c.id) ORDER BY 1",
        ARGS(ARG_NUM(now), ARG_TEXT(STATUS_NAMES[CERT_STATUS_PENDING_ACTIVATION])), &doomed, NULL);
    cJSON_ArrayForEach(id, doomed)
    {
        if (code == IOT_OK)
            code = delete_cert(reg, id->valuestring, NULL);
    }
    if (code == IOT_OK)
        code = run(reg, "DELETE FROM tokens WHERE expires_at <= ?1", ARGS(ARG_NUM(now)), NULL);
    int claims = 0;
    if (code == IOT_OK)
        code = expire_claims(reg, now, &claims);
    if (code == IOT_OK && deleted != NULL)
        *deleted = cJSON_GetArraySize(doomed) + claims;
    cJSON_Delete(doomed);
    return code;
}

enum iot_err registry_expire_tokens(struct registry *reg, long long now, int *deleted)
{
    if (deleted != NULL)
        *deleted = 0;
    enum iot_err code = txn_open(reg, NULL);
    if (code != IOT_OK)
        return code;
    return txn_end(reg, expire_tokens(reg, now, deleted), NULL);
}

/* ==== control-plane additions ================================================================
 * Listings, details and versions the REST operations need (shared/spec/provisioning.md §6). */

/* ---- listings --------------------------------------------------------------------------- */

/* Adds column I of ST to OBJ under its alias: numbers as numbers, text as strings, an alias
 * ending in "_json" as the parsed JSON under the alias without the suffix; NULL adds nothing. */
static bool add_column(cJSON *obj, sqlite3_stmt *st, int i)
{
    const char *name = sqlite3_column_name(st, i);
    int type = sqlite3_column_type(st, i);
    if (type == SQLITE_NULL)
        return true;
    if (type == SQLITE_INTEGER || type == SQLITE_FLOAT)
        return cJSON_AddNumberToObject(obj, name, (double)sqlite3_column_int64(st, i)) != NULL;
    const char *text = (const char *)sqlite3_column_text(st, i);
    size_t n = strlen(name);
    if (n <= 5 || strcmp(name + n - 5, "_json") != 0)
        return text != NULL && cJSON_AddStringToObject(obj, name, text) != NULL;
    char key[64];
    snprintf(key, sizeof(key), "%.*s", (int)(n - 5), name);
    cJSON *value = text ? cJSON_Parse(text) : NULL;
    if (value == NULL) /* written by this module, so unreadable means a hand-edited file */
        return true;
    cJSON_AddItemToObject(obj, key, value);
    return true;
}

static enum iot_err oom(struct iot_error *err)
{
    return iot_error_set(err, IOT_ERR_NOMEM, "registry: out of memory");
}

/* Runs SQL: column 0 of each row is its cursor (sort key), the other columns become one object
 * of *OUT per row. With LIMIT > 0 the SQL returns up to LIMIT + 1 rows; LIMIT are kept and, if
 * one more came, *NEXT = copy of the last kept row's cursor (else NULL). */
static enum iot_err select_objects(struct registry *reg, const char *sql, const struct arg *args,
                                   int n, int limit, cJSON **out, char **next,
                                   struct iot_error *err)
{
    sqlite3_stmt *st = NULL;
    char *last = NULL;
    int rows = 0, rc = SQLITE_DONE;
    *out = cJSON_CreateArray();
    if (next != NULL)
        *next = NULL;
    enum iot_err code = *out ? prepare(reg, &st, sql, args, n, err) : oom(err);
    while (code == IOT_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (limit > 0 && rows == limit) {
            if (next != NULL) {
                *next = last;
                last = NULL;
            }
            break;
        }
        rows++;
        cJSON *obj = cJSON_CreateObject();
        if (obj == NULL || !cJSON_AddItemToArray(*out, obj)) {
            cJSON_Delete(obj);
            code = oom(err);
            break;
        }
        for (int i = 1; code == IOT_OK && i < sqlite3_column_count(st); i++) {
            if (!add_column(obj, st, i))
                code = oom(err);
        }
        free(last);
        last = NULL;
        const char *cursor = (const char *)sqlite3_column_text(st, 0);
        if (code == IOT_OK && (last = strdup(cursor ? cursor : "")) == NULL)
            code = oom(err);
    }
    if (code == IOT_OK && rc != SQLITE_ROW && rc != SQLITE_DONE)
        code = db_error(reg, rc, err);
    release(reg, st);
    free(last);
    if (code != IOT_OK) {
        cJSON_Delete(*out);
        *out = NULL;
        if (next != NULL) {
            free(*next);
            *next = NULL;
        }
    }
    return code;
}

/* A paged query: SELECT <cursor>, <columns> <from> AND <cursor beyond ?1> ORDER BY 1 LIMIT ?2.
 * FROM holds the WHERE clause; its own parameters start at ?3. All parts are literals of this
 * file: client values only ever arrive as bound parameters. */
struct page_query {
    const char *with; /* a WITH clause, or NULL */
    const char *cursor;
    const char *columns;
    const char *from;
};

#define PAGE_FIXED_ARGS 2

static int page_limit(const struct registry_page *pg)
{
    return pg == NULL || pg->limit <= 0 || pg->limit > REGISTRY_PAGE_MAX ? REGISTRY_PAGE_MAX
                                                                         : pg->limit;
}

/* ARGS[0] and ARGS[1] are filled here (cursor and limit); the caller fills the rest. */
static enum iot_err select_page(struct registry *reg, const struct page_query *q,
                                const struct registry_page *pg, struct arg *args, int n,
                                cJSON **out, char **next, struct iot_error *err)
{
    char sql[2048];
    bool desc = pg != NULL && pg->descending;
    int len = snprintf(sql, sizeof(sql),
                       "%s SELECT %s AS cursor, %s %s AND (?1 IS NULL OR %s %s ?1)"
                       " ORDER BY 1 %s LIMIT ?2",
                       q->with ? q->with : "", q->cursor, q->columns, q->from, q->cursor,
                       desc ? "<" : ">", desc ? "DESC" : "ASC");
    if (len < 0 || (size_t)len >= sizeof(sql))
        return iot_error_set(err, IOT_ERR_INTERNAL, "registry: query too long");
    int limit = page_limit(pg);
    args[0] = ARG_TEXT(pg != NULL && !empty(pg->after) ? pg->after : NULL);
    args[1] = ARG_NUM(limit + 1);
    lock(reg);
    enum iot_err code = select_objects(reg, sql, args, n, limit, out, next, err);
    unlock(reg);
    return code;
}

enum iot_err registry_cert_list(struct registry *reg, const struct registry_page *pg, cJSON **out,
                                char **next, struct iot_error *err)
{
    static const struct page_query q = {.cursor = "printf('%020d/%s', created, id)",
                                        .columns = "id, status, ca_id, created, modified",
                                        .from = "FROM certificates WHERE claim_template IS NULL"};
    struct arg args[PAGE_FIXED_ARGS];
    return select_page(reg, &q, pg, args, PAGE_FIXED_ARGS, out, next, err);
}

enum iot_err registry_thing_list(struct registry *reg, const struct registry_thing_filter *f,
                                 const struct registry_page *pg, cJSON **out, char **next,
                                 struct iot_error *err)
{
    static const struct page_query q = {
        .with = "WITH RECURSIVE sub(name) AS (SELECT ?7 UNION"
                " SELECT g.name FROM thing_groups g JOIN sub ON g.parent = sub.name WHERE ?8)",
        .cursor = "name",
        .columns = "name, id, type_name, attributes AS attributes_json, version",
        .from = "FROM things WHERE (?3 IS NULL OR type_name = ?3)"
                " AND ((?4 IS NULL AND ?5 IS NULL) OR EXISTS (SELECT 1 FROM"
                " json_each(things.attributes) a WHERE (?4 IS NULL OR a.key = ?4) AND (?5 IS NULL"
                " OR a.value = ?5 OR (?6 AND substr(a.value, 1, length(?5)) = ?5))))"
                " AND (?7 IS NULL OR name IN (SELECT thing FROM thing_group_members"
                " WHERE \"group\" IN (SELECT name FROM sub)))"};
    static const struct registry_thing_filter none = {0};
    if (f == NULL)
        f = &none;
    struct arg args[] = {{0},
                         {0},
                         ARG_TEXT(f->type_name),
                         ARG_TEXT(f->attribute_name),
                         ARG_TEXT(f->attribute_value),
                         ARG_NUM(f->attribute_prefix),
                         ARG_TEXT(f->group),
                         ARG_NUM(f->recursive)};
    return select_page(reg, &q, pg, args, (int)(sizeof(args) / sizeof(args[0])), out, next, err);
}

enum iot_err registry_thing_type_list(struct registry *reg, const char *name,
                                      const struct registry_page *pg, cJSON **out, char **next,
                                      struct iot_error *err)
{
    static const struct page_query q = {
        .cursor = "name",
        .columns = "name, id, description, searchable AS searchable_json, deprecated,"
                   " deprecated_at, created",
        .from = "FROM thing_types WHERE (?3 IS NULL OR name = ?3)"};
    struct arg args[] = {{0}, {0}, ARG_TEXT(empty(name) ? NULL : name)};
    return select_page(reg, &q, pg, args, 3, out, next, err);
}

enum iot_err registry_thing_group_list(struct registry *reg, const char *parent, const char *prefix,
                                       bool recursive, const struct registry_page *pg, cJSON **out,
                                       char **next, struct iot_error *err)
{
    static const struct page_query q = {
        .with = "WITH RECURSIVE sub(name) AS (SELECT ?4 UNION"
                " SELECT g.name FROM thing_groups g JOIN sub ON g.parent = sub.name)",
        .cursor = "name",
        .columns = "name, id, parent",
        .from = "FROM thing_groups WHERE (?3 IS NULL OR substr(name, 1, length(?3)) = ?3)"
                " AND (?4 IS NULL OR (?5 AND name <> ?4 AND name IN (SELECT name FROM sub))"
                " OR (NOT ?5 AND parent = ?4))"};
    struct arg args[] = {{0},
                         {0},
                         ARG_TEXT(empty(prefix) ? NULL : prefix),
                         ARG_TEXT(empty(parent) ? NULL : parent),
                         ARG_NUM(recursive)};
    return select_page(reg, &q, pg, args, 5, out, next, err);
}

enum iot_err registry_thing_group_list_for_thing(struct registry *reg, const char *thing,
                                                 const struct registry_page *pg, cJSON **out,
                                                 char **next, struct iot_error *err)
{
    static const struct page_query q = {.cursor = "\"group\"",
                                        .columns = "\"group\" AS name",
                                        .from = "FROM thing_group_members WHERE thing = ?3"};
    struct arg args[] = {{0}, {0}, ARG_TEXT(thing)};
    return select_page(reg, &q, pg, args, 3, out, next, err);
}

enum iot_err registry_thing_principal_list(struct registry *reg, const char *thing,
                                           const struct registry_page *pg, cJSON **out, char **next,
                                           struct iot_error *err)
{
    static const struct page_query q = {.cursor = "principal",
                                        .columns = "principal",
                                        .from = "FROM thing_principals WHERE thing = ?3"};
    struct arg args[] = {{0}, {0}, ARG_TEXT(thing)};
    return select_page(reg, &q, pg, args, 3, out, next, err);
}

enum iot_err registry_principal_thing_list(struct registry *reg, const char *principal,
                                           const struct registry_page *pg, cJSON **out, char **next,
                                           struct iot_error *err)
{
    static const struct page_query q = {.cursor = "thing",
                                        .columns = "thing",
                                        .from = "FROM thing_principals WHERE principal = ?3"};
    struct arg args[] = {{0}, {0}, ARG_TEXT(principal)};
    return select_page(reg, &q, pg, args, 3, out, next, err);
}

enum iot_err registry_policy_list(struct registry *reg, const struct registry_page *pg, cJSON **out,
                                  char **next, struct iot_error *err)
{
    static const struct page_query q = {
        .cursor = "name", .columns = "name, created", .from = "FROM policies WHERE 1"};
    struct arg args[PAGE_FIXED_ARGS];
    return select_page(reg, &q, pg, args, PAGE_FIXED_ARGS, out, next, err);
}

enum iot_err registry_policy_target_list(struct registry *reg, const char *policy,
                                         const struct registry_page *pg, cJSON **out, char **next,
                                         struct iot_error *err)
{
    static const struct page_query q = {
        .cursor = "target", .columns = "target", .from = "FROM policy_targets WHERE policy = ?3"};
    struct arg args[] = {{0}, {0}, ARG_TEXT(policy)};
    return select_page(reg, &q, pg, args, 3, out, next, err);
}

enum iot_err registry_target_policy_list(struct registry *reg, const char *target,
                                         const struct registry_page *pg, cJSON **out, char **next,
                                         struct iot_error *err)
{
    static const struct page_query q = {.cursor = "policy",
                                        .columns = "policy AS name",
                                        .from = "FROM policy_targets WHERE target = ?3"};
    struct arg args[] = {{0}, {0}, ARG_TEXT(target)};
    return select_page(reg, &q, pg, args, 3, out, next, err);
}

enum iot_err registry_template_list(struct registry *reg, const struct registry_page *pg,
                                    cJSON **out, char **next, struct iot_error *err)
{
    static const struct page_query q = {.cursor = "name",
                                        .columns =
                                            "name, description, created, modified, enabled, type",
                                        .from = "FROM templates WHERE 1"};
    struct arg args[PAGE_FIXED_ARGS];
    return select_page(reg, &q, pg, args, PAGE_FIXED_ARGS, out, next, err);
}

/* ---- certificates: details and provisioning claims -------------------------------------- */

static enum iot_err get_cert_meta(struct registry *reg, const char *id,
                                  struct registry_cert_meta *out, struct iot_error *err)
{
    sqlite3_stmt *st;
    bool found = false;
    enum iot_err code = prepare(reg, &st,
                                "SELECT customer_version, claim_template, claim_expires"
                                " FROM certificates WHERE id = ?1",
                                ARGS(ARG_TEXT(id)), err);
    if (code == IOT_OK)
        code = first_row(reg, st, &found, err);
    if (code == IOT_OK && !found)
        code = iot_error_set(err, IOT_ERR_NOT_FOUND, "Certificate %s not found", id);
    if (code == IOT_OK) {
        const char *tpl = (const char *)sqlite3_column_text(st, 1);
        out->customer_version = sqlite3_column_int64(st, 0);
        snprintf(out->claim_template, sizeof(out->claim_template), "%s", tpl ? tpl : "");
        out->claim_expires = sqlite3_column_int64(st, 2);
    }
    release(reg, st);
    return code;
}

enum iot_err registry_cert_get_meta(struct registry *reg, const char *id,
                                    struct registry_cert_meta *out, struct iot_error *err)
{
    memset(out, 0, sizeof(*out));
    if (empty(id))
        return missing(err, "Certificate id");
    lock(reg);
    enum iot_err code = get_cert_meta(reg, id, out, err);
    unlock(reg);
    return code;
}

enum iot_err registry_cert_set_claim(struct registry *reg, const char *id,
                                     const char *template_name, long long expires_at,
                                     struct iot_error *err)
{
    if (empty(id) || empty(template_name))
        return missing(err, empty(id) ? "Certificate id" : "Template name");
    enum iot_err code = txn_open(reg, err);
    if (code != IOT_OK)
        return code;
    code = run(reg, "UPDATE certificates SET claim_template = ?2, claim_expires = ?3 WHERE id = ?1",
               ARGS(ARG_TEXT(id), ARG_TEXT(template_name), ARG_NUM(expires_at)), err);
    if (code == IOT_OK && sqlite3_changes(reg->db) == 0)
        code = iot_error_set(err, IOT_ERR_NOT_FOUND, "Certificate %s not found", id);
    return txn_end(reg, code, err);
}

/* ---- thing types ------------------------------------------------------------------------ */

void registry_thing_type_clear(struct registry_thing_type *t)
{
    if (t == NULL)
        return;
    free(t->name);
    free(t->id);
    free(t->description);
    cJSON_Delete(t->searchable);
    memset(t, 0, sizeof(*t));
}

/* Serialises an optional JSON value of the expected kind; *OUT NULL when absent. */
static enum iot_err json_text(const cJSON *v, bool object, const char *what, char **out,
                              struct iot_error *err)
{
    *out = NULL;
    if (v == NULL)
        return IOT_OK;
    if (object ? !cJSON_IsObject(v) : !cJSON_IsArray(v))
        return iot_error_set(err, IOT_ERR_INVALID_REQUEST, "%s must be a JSON %s", what,
                             object ? "object" : "array");
    return (*out = cJSON_PrintUnformatted(v)) != NULL ? IOT_OK : oom(err);
}

static enum iot_err create_type(struct registry *reg, const struct registry_thing_type *t,
                                const char *searchable, struct iot_error *err)
{
    bool taken;
    char id[37];
    enum iot_err code = exists(reg, "SELECT 1 FROM thing_types WHERE name = ?1",
                               ARGS(ARG_TEXT(t->name)), &taken, err);
    if (code == IOT_OK && taken)
        code = iot_error_set(err, IOT_ERR_ALREADY_EXISTS, "Thing type %s already exists", t->name);
    if (t->id == NULL)
        new_uuid(id);
    if (code == IOT_OK)
        code =
            run(reg,
                "INSERT INTO thing_types (name, created, id, description, searchable)"
                " VALUES (?1, ?2, ?3, ?4, ?5)",
                ARGS(ARG_TEXT(t->name), ARG_NUM(now_or(t->created)), ARG_TEXT(t->id ? t->id : id),
                     ARG_TEXT(t->description), ARG_TEXT(searchable)),
                err);
    return code;
}

enum iot_err registry_thing_type_create(struct registry *reg, const struct registry_thing_type *t,
                                        struct iot_error *err)
{
    if (empty(t->name))
        return missing(err, "Thing type name");
    char *searchable = NULL;
    enum iot_err code = json_text(t->searchable, false, "searchableAttributes", &searchable, err);
    if (code == IOT_OK && (code = txn_open(reg, err)) == IOT_OK) {
        code = create_type(reg, t, searchable, err);
        if (code == IOT_OK && wants(reg, REGISTRY_EVENT_THING_TYPE))
            note(reg, REGISTRY_EVENT_THING_TYPE, REGISTRY_OP_CREATED, type_snapshot(reg, t->name));
        code = txn_end(reg, code, err);
    }
    free(searchable);
    return code;
}

static enum iot_err get_type(struct registry *reg, const char *name,
                             struct registry_thing_type *out, struct iot_error *err)
{
    sqlite3_stmt *st;
    bool found = false;
    char *searchable = NULL;
    enum iot_err code = prepare(reg, &st,
                                "SELECT name, id, description, searchable, deprecated,"
                                " deprecated_at, created FROM thing_types WHERE name = ?1",
                                ARGS(ARG_TEXT(name)), err);
    if (code == IOT_OK)
        code = first_row(reg, st, &found, err);
    if (code == IOT_OK && !found)
        code = iot_error_set(err, IOT_ERR_NOT_FOUND, "Thing type %s not found", name);
    if (code == IOT_OK &&
        (!dup_column(st, 0, &out->name) || !dup_column(st, 1, &out->id) ||
         !dup_column(st, 2, &out->description) || !dup_column(st, 3, &searchable)))
        code = oom(err);
    if (code == IOT_OK) {
        out->deprecated = sqlite3_column_int(st, 4) != 0;
        out->deprecated_at = sqlite3_column_int64(st, 5);
        out->created = sqlite3_column_int64(st, 6);
        out->searchable = searchable ? cJSON_Parse(searchable) : NULL;
    }
    free(searchable);
    release(reg, st);
    return code;
}

enum iot_err registry_thing_type_get(struct registry *reg, const char *name,
                                     struct registry_thing_type *out, struct iot_error *err)
{
    memset(out, 0, sizeof(*out));
    if (empty(name))
        return missing(err, "Thing type name");
    lock(reg);
    enum iot_err code = get_type(reg, name, out, err);
    unlock(reg);
    if (code != IOT_OK)
        registry_thing_type_clear(out);
    return code;
}

enum iot_err registry_thing_type_deprecate(struct registry *reg, const char *name, bool deprecated,
                                           struct iot_error *err)
{
    if (empty(name))
        return missing(err, "Thing type name");
    enum iot_err code = txn_open(reg, err);
    if (code != IOT_OK)
        return code;
    code = run(reg,
               "UPDATE thing_types SET deprecated = ?2,"
               " deprecated_at = CASE WHEN ?2 THEN ?3 ELSE NULL END WHERE name = ?1",
               ARGS(ARG_TEXT(name), ARG_NUM(deprecated), ARG_NUM(now_or(0))), err);
    if (code == IOT_OK && sqlite3_changes(reg->db) == 0)
        code = iot_error_set(err, IOT_ERR_NOT_FOUND, "Thing type %s not found", name);
    if (code == IOT_OK && wants(reg, REGISTRY_EVENT_THING_TYPE))
        note(reg, REGISTRY_EVENT_THING_TYPE, REGISTRY_OP_UPDATED, type_snapshot(reg, name));
    return txn_end(reg, code, err);
}

static enum iot_err delete_type(struct registry *reg, const char *name, struct iot_error *err)
{
    bool used = false;
    enum iot_err code = require_type(reg, name, err);
    if (code == IOT_OK)
        code = exists(reg, "SELECT 1 FROM things WHERE type_name = ?1", ARGS(ARG_TEXT(name)), &used,
                      err);
    if (code == IOT_OK && used)
        code = iot_error_set(err, IOT_ERR_DELETE_CONFLICT,
                             "Thing type %s is still associated with one or more things", name);
    if (code == IOT_OK)
        code = run(reg, "DELETE FROM thing_types WHERE name = ?1", ARGS(ARG_TEXT(name)), err);
    return code;
}

enum iot_err registry_thing_type_delete(struct registry *reg, const char *name,
                                        struct iot_error *err)
{
    if (empty(name))
        return missing(err, "Thing type name");
    enum iot_err code = txn_open(reg, err);
    if (code != IOT_OK)
        return code;
    cJSON *before = wants(reg, REGISTRY_EVENT_THING_TYPE) ? type_snapshot(reg, name) : NULL;
    code = delete_type(reg, name, err);
    if (code == IOT_OK)
        note(reg, REGISTRY_EVENT_THING_TYPE, REGISTRY_OP_DELETED, before);
    else
        cJSON_Delete(before);
    return txn_end(reg, code, err);
}

/* ---- thing groups ----------------------------------------------------------------------- */

void registry_thing_group_clear(struct registry_thing_group *g)
{
    if (g == NULL)
        return;
    free(g->name);
    free(g->id);
    free(g->description);
    free(g->parent);
    cJSON_Delete(g->attributes);
    memset(g, 0, sizeof(*g));
}

static enum iot_err create_group(struct registry *reg, const struct registry_thing_group *g,
                                 const char *attributes, struct iot_error *err)
{
    bool taken, parent = true;
    char id[37];
    enum iot_err code = exists(reg, "SELECT 1 FROM thing_groups WHERE name = ?1",
                               ARGS(ARG_TEXT(g->name)), &taken, err);
    if (code == IOT_OK && taken)
        code = iot_error_set(err, IOT_ERR_ALREADY_EXISTS, "Thing group %s already exists", g->name);
    if (code == IOT_OK && !empty(g->parent))
        code = exists(reg, "SELECT 1 FROM thing_groups WHERE name = ?1", ARGS(ARG_TEXT(g->parent)),
                      &parent, err);
    if (code == IOT_OK && !parent)
        code = iot_error_set(err, IOT_ERR_INVALID_REQUEST, "Parent thing group %s not found",
                             g->parent);
    if (g->id == NULL)
        new_uuid(id);
    if (code == IOT_OK)
        code = run(reg,
                   "INSERT INTO thing_groups (name, created, id, description, attributes, parent,"
                   " version) VALUES (?1, ?2, ?3, ?4, ?5, ?6, 1)",
                   ARGS(ARG_TEXT(g->name), ARG_NUM(now_or(g->created)),
                        ARG_TEXT(g->id ? g->id : id), ARG_TEXT(g->description),
                        ARG_TEXT(attributes), ARG_TEXT(empty(g->parent) ? NULL : g->parent)),
                   err);
    return code;
}

enum iot_err registry_thing_group_create(struct registry *reg, const struct registry_thing_group *g,
                                         struct iot_error *err)
{
    if (empty(g->name))
        return missing(err, "Thing group name");
    char *attributes = NULL;
    enum iot_err code = json_text(g->attributes, true, "attributes", &attributes, err);
    if (code == IOT_OK && (code = txn_open(reg, err)) == IOT_OK) {
        code = create_group(reg, g, attributes, err);
        if (code == IOT_OK && wants(reg, REGISTRY_EVENT_THING_GROUP))
            note(reg, REGISTRY_EVENT_THING_GROUP, REGISTRY_OP_CREATED,
                 group_snapshot(reg, g->name));
        if (code == IOT_OK && !empty(g->parent) && wants(reg, REGISTRY_EVENT_THING_GROUP_HIERARCHY))
            note(reg, REGISTRY_EVENT_THING_GROUP_HIERARCHY, REGISTRY_OP_ADDED,
                 group_snapshot(reg, g->name));
        code = txn_end(reg, code, err);
    }
    free(attributes);
    return code;
}

static enum iot_err get_group(struct registry *reg, const char *name,
                              struct registry_thing_group *out, struct iot_error *err)
{
    sqlite3_stmt *st;
    bool found = false;
    char *attributes = NULL;
    enum iot_err code = prepare(reg, &st,
                                "SELECT name, id, description, parent, attributes, version, created"
                                " FROM thing_groups WHERE name = ?1",
                                ARGS(ARG_TEXT(name)), err);
    if (code == IOT_OK)
        code = first_row(reg, st, &found, err);
    if (code == IOT_OK && !found)
        code = iot_error_set(err, IOT_ERR_NOT_FOUND, "Thing group %s not found", name);
    if (code == IOT_OK && (!dup_column(st, 0, &out->name) || !dup_column(st, 1, &out->id) ||
                           !dup_column(st, 2, &out->description) ||
                           !dup_column(st, 3, &out->parent) || !dup_column(st, 4, &attributes)))
        code = oom(err);
    if (code == IOT_OK) {
        out->version = sqlite3_column_int64(st, 5);
        out->created = sqlite3_column_int64(st, 6);
        out->attributes = attributes ? cJSON_Parse(attributes) : NULL;
    }
    free(attributes);
    release(reg, st);
    return code;
}

enum iot_err registry_thing_group_get(struct registry *reg, const char *name,
                                      struct registry_thing_group *out, struct iot_error *err)
{
    memset(out, 0, sizeof(*out));
    if (empty(name))
        return missing(err, "Thing group name");
    lock(reg);
    enum iot_err code = get_group(reg, name, out, err);
    unlock(reg);
    if (code != IOT_OK)
        registry_thing_group_clear(out);
    return code;
}

/* Depth-capped: AWS allows seven levels, and a cap keeps a hand-made cycle from looping. */
enum iot_err registry_thing_group_ancestors(struct registry *reg, const char *name, cJSON **out)
{
    lock(reg);
    enum iot_err code = select_strings(
        reg,
        "WITH RECURSIVE up(name, parent, depth) AS ("
        " SELECT name, parent, 0 FROM thing_groups WHERE name = ?1 UNION ALL"
        " SELECT g.name, g.parent, up.depth + 1 FROM thing_groups g JOIN up ON g.name = up.parent"
        " WHERE up.depth < 16)"
        " SELECT name FROM up WHERE depth > 0 ORDER BY depth DESC",
        ARGS(ARG_TEXT(name)), out, NULL);
    unlock(reg);
    return code;
}

static enum iot_err delete_group(struct registry *reg, const char *name, struct iot_error *err)
{
    bool found, children = false;
    enum iot_err code = exists(reg, "SELECT 1 FROM thing_groups WHERE name = ?1",
                               ARGS(ARG_TEXT(name)), &found, err);
    if (code == IOT_OK && !found)
        code = iot_error_set(err, IOT_ERR_NOT_FOUND, "Thing group %s not found", name);
    if (code == IOT_OK)
        code = exists(reg, "SELECT 1 FROM thing_groups WHERE parent = ?1", ARGS(ARG_TEXT(name)),
                      &children, err);
    if (code == IOT_OK && children)
        code = iot_error_set(err, IOT_ERR_DELETE_CONFLICT, "Thing group %s has child thing groups",
                             name);
    authz_touch(reg, NULL); /* its members' policies */
    if (code == IOT_OK)
        code = run(reg, "DELETE FROM thing_group_members WHERE \"group\" = ?1",
                   ARGS(ARG_TEXT(name)), err);
    if (code == IOT_OK)
        code = run(reg, "DELETE FROM thing_groups WHERE name = ?1", ARGS(ARG_TEXT(name)), err);
    return code;
}

enum iot_err registry_thing_group_delete(struct registry *reg, const char *name,
                                         struct iot_error *err)
{
    if (empty(name))
        return missing(err, "Thing group name");
    enum iot_err code = txn_open(reg, err);
    if (code != IOT_OK)
        return code;
    bool hierarchy = wants(reg, REGISTRY_EVENT_THING_GROUP_HIERARCHY);
    cJSON *before =
        wants(reg, REGISTRY_EVENT_THING_GROUP) || hierarchy ? group_snapshot(reg, name) : NULL;
    code = delete_group(reg, name, err);
    if (code == IOT_OK && hierarchy && cJSON_IsString(cJSON_GetObjectItem(before, "parent")))
        note(reg, REGISTRY_EVENT_THING_GROUP_HIERARCHY, REGISTRY_OP_REMOVED,
             cJSON_Duplicate(before, true));
    if (code == IOT_OK && wants(reg, REGISTRY_EVENT_THING_GROUP))
        note(reg, REGISTRY_EVENT_THING_GROUP, REGISTRY_OP_DELETED, before);
    else
        cJSON_Delete(before);
    return txn_end(reg, code, err);
}

/* ---- policies: details and versions ----------------------------------------------------- */

void registry_policy_clear(struct registry_policy *p)
{
    if (p == NULL)
        return;
    free(p->name);
    free(p->document);
    memset(p, 0, sizeof(*p));
}

static enum iot_err get_policy_info(struct registry *reg, const char *name,
                                    struct registry_policy *out, struct iot_error *err)
{
    sqlite3_stmt *st;
    bool found = false;
    enum iot_err code = prepare(reg, &st,
                                "SELECT name, document, default_version, created, modified"
                                " FROM policies WHERE name = ?1",
                                ARGS(ARG_TEXT(name)), err);
    if (code == IOT_OK)
        code = first_row(reg, st, &found, err);
    if (code == IOT_OK && !found)
        code = iot_error_set(err, IOT_ERR_NOT_FOUND, "Policy %s not found", name);
    if (code == IOT_OK && (!dup_column(st, 0, &out->name) || !dup_column(st, 1, &out->document)))
        code = oom(err);
    if (code == IOT_OK) {
        out->default_version = sqlite3_column_int(st, 2);
        out->created = sqlite3_column_int64(st, 3);
        out->modified = sqlite3_column_int64(st, 4);
    }
    release(reg, st);
    return code;
}

enum iot_err registry_policy_info(struct registry *reg, const char *name,
                                  struct registry_policy *out, struct iot_error *err)
{
    memset(out, 0, sizeof(*out));
    if (empty(name))
        return missing(err, "Policy name");
    lock(reg);
    enum iot_err code = get_policy_info(reg, name, out, err);
    unlock(reg);
    if (code != IOT_OK)
        registry_policy_clear(out);
    return code;
}

enum iot_err registry_policy_versions(struct registry *reg, const char *name, cJSON **out,
                                      struct iot_error *err)
{
    *out = NULL;
    if (empty(name))
        return missing(err, "Policy name");
    lock(reg);
    enum iot_err code = require_policy(reg, name, err);
    if (code == IOT_OK)
        code = select_objects(reg,
                              "SELECT v.version, v.version AS version, v.created AS created,"
                              " v.version = p.default_version AS is_default"
                              " FROM policy_versions v JOIN policies p ON p.name = v.policy"
                              " WHERE v.policy = ?1 ORDER BY v.version",
                              ARGS(ARG_TEXT(name)), 0, out, NULL, err);
    unlock(reg);
    return code;
}

/* One version row: *DOCUMENT malloc'd (caller frees), *CREATED, *IS_DEFAULT. */
struct version_row {
    char *text;
    long long created;
    bool is_default;
};

static enum iot_err get_version_row(struct registry *reg, const char *sql, const char *owner,
                                    long long version, const char *what, struct version_row *out,
                                    struct iot_error *err)
{
    sqlite3_stmt *st;
    bool found = false;
    enum iot_err code = prepare(reg, &st, sql, ARGS(ARG_TEXT(owner), ARG_NUM(version)), err);
    if (code == IOT_OK)
        code = first_row(reg, st, &found, err);
    if (code == IOT_OK && !found)
        code = iot_error_set(err, IOT_ERR_NOT_FOUND, "%s %s version %lld not found", what, owner,
                             version);
    if (code == IOT_OK && !dup_column(st, 0, &out->text))
        code = oom(err);
    if (code == IOT_OK) {
        out->created = sqlite3_column_int64(st, 1);
        out->is_default = sqlite3_column_int(st, 2) != 0;
    }
    release(reg, st);
    return code;
}

enum iot_err registry_policy_version_get(struct registry *reg, const char *name, long long version,
                                         char **document, long long *created, bool *is_default,
                                         struct iot_error *err)
{
    struct version_row row = {0};
    *document = NULL;
    if (empty(name))
        return missing(err, "Policy name");
    lock(reg);
    enum iot_err code = get_version_row(
        reg,
        "SELECT v.document, v.created, v.version = p.default_version FROM policy_versions v"
        " JOIN policies p ON p.name = v.policy WHERE v.policy = ?1 AND v.version = ?2",
        name, version, "Policy", &row, err);
    unlock(reg);
    *document = row.text;
    if (created != NULL)
        *created = row.created;
    if (is_default != NULL)
        *is_default = row.is_default;
    return code;
}

/* ---- versioned resources -------------------------------------------------------------- */
/* Policies and provisioning templates share one versioning scheme: a parent row that holds the
 * default version's text (what the broker and fleet provisioning read) and a table of versions
 * whose ids are never reused. The descriptors name constant tables and columns only; client data
 * is always bound. */
struct versioned {
    const char *noun;     /* "Policy", "Template": for messages */
    const char *parent;   /* parent table */
    const char *versions; /* version table */
    const char *owner;    /* the version table's column naming the parent */
    const char *text;     /* the text column, same name in both tables */
    bool touch_on_add;    /* adding a version also updates the parent's modified time */
};

static const struct versioned POLICY_VERSIONS = {"Policy", "policies", "policy_versions",
                                                 "policy", "document", false};
static const struct versioned TEMPLATE_VERSIONS = {"Template", "templates", "template_versions",
                                                   "template", "body", true};

static enum iot_err set_default_version(struct registry *reg, const struct versioned *vd,
                                        const char *name, long long version,
                                        struct iot_error *err)
{
    char sql[512];
    bool found;
    snprintf(sql, sizeof(sql), "SELECT 1 FROM %s WHERE %s = ?1 AND version = ?2", vd->versions,
             vd->owner);
    enum iot_err code = exists(reg, sql, ARGS(ARG_TEXT(name), ARG_NUM(version)), &found, err);
    if (code == IOT_OK && !found)
        code = iot_error_set(err, IOT_ERR_NOT_FOUND, "%s %s version %lld not found", vd->noun,
                             name, version);
    if (code != IOT_OK)
        return code;
    snprintf(sql, sizeof(sql),
             "UPDATE %s SET default_version = ?2, modified = ?3, %s ="
             " (SELECT %s FROM %s WHERE %s = ?1 AND version = ?2) WHERE name = ?1",
             vd->parent, vd->text, vd->text, vd->versions, vd->owner);
    return run(reg, sql, ARGS(ARG_TEXT(name), ARG_NUM(version), ARG_NUM(now_or(0))), err);
}

/* The next version id: one past the highest ever used (last_version), so ids are not reused. */
static enum iot_err next_version(struct registry *reg, const struct versioned *vd,
                                 const char *name, long long *out, struct iot_error *err)
{
    char sql[512];
    sqlite3_stmt *st;
    bool found = false;
    snprintf(sql, sizeof(sql),
             "SELECT max(last_version, (SELECT coalesce(max(version), 0) FROM %s WHERE %s = ?1))"
             " + 1 FROM %s WHERE name = ?1",
             vd->versions, vd->owner, vd->parent);
    enum iot_err code = prepare(reg, &st, sql, ARGS(ARG_TEXT(name)), err);
    if (code == IOT_OK)
        code = first_row(reg, st, &found, err);
    if (code == IOT_OK && !found)
        code = iot_error_set(err, IOT_ERR_NOT_FOUND, "%s %s not found", vd->noun, name);
    if (code == IOT_OK)
        *out = sqlite3_column_int64(st, 0);
    release(reg, st);
    return code;
}

static enum iot_err add_version(struct registry *reg, const struct versioned *vd, const char *name,
                                const char *text, bool set_default, long long *version,
                                struct iot_error *err)
{
    char sql[512];
    long long v = 0;
    enum iot_err code = next_version(reg, vd, name, &v, err);
    if (code == IOT_OK) {
        snprintf(sql, sizeof(sql),
                 "INSERT INTO %s (%s, version, %s, created) VALUES (?1, ?2, ?3, ?4)",
                 vd->versions, vd->owner, vd->text);
        code = run(reg, sql, ARGS(ARG_TEXT(name), ARG_NUM(v), ARG_TEXT(text), ARG_NUM(now_or(0))),
                   err);
    }
    if (code == IOT_OK) {
        snprintf(sql, sizeof(sql), "UPDATE %s SET last_version = ?2%s WHERE name = ?1",
                 vd->parent, vd->touch_on_add ? ", modified = ?3" : "");
        code = vd->touch_on_add
                   ? run(reg, sql, ARGS(ARG_TEXT(name), ARG_NUM(v), ARG_NUM(now_or(0))), err)
                   : run(reg, sql, ARGS(ARG_TEXT(name), ARG_NUM(v)), err);
    }
    if (code == IOT_OK && set_default)
        code = set_default_version(reg, vd, name, v, err);
    if (code == IOT_OK && version != NULL)
        *version = v;
    return code;
}

static enum iot_err set_default_policy(struct registry *reg, const char *name, long long version,
                                       struct iot_error *err)
{
    return set_default_version(reg, &POLICY_VERSIONS, name, version, err);
}

static enum iot_err add_policy_version(struct registry *reg, const char *name, const char *document,
                                       bool set_default, long long *version, struct iot_error *err)
{
    return add_version(reg, &POLICY_VERSIONS, name, document, set_default, version, err);
}

static enum iot_err set_default_template(struct registry *reg, const char *name, long long version,
                                         struct iot_error *err)
{
    return set_default_version(reg, &TEMPLATE_VERSIONS, name, version, err);
}

static enum iot_err add_template_version(struct registry *reg, const char *name, const char *body,
                                         bool set_default, long long *version,
                                         struct iot_error *err)
{
    return add_version(reg, &TEMPLATE_VERSIONS, name, body, set_default, version, err);
}

enum iot_err registry_policy_version_add(struct registry *reg, const char *name,
                                         const char *document, bool set_default, long long *version,
                                         struct iot_error *err)
{
    if (empty(name) || document == NULL)
        return missing(err, empty(name) ? "Policy name" : "Policy document");
    enum iot_err code = txn_open(reg, err);
    if (code != IOT_OK)
        return code;
    if (set_default)
        authz_touch(reg, NULL);
    return txn_end(reg, add_policy_version(reg, name, document, set_default, version, err), err);
}

enum iot_err registry_policy_version_set_default(struct registry *reg, const char *name,
                                                 long long version, struct iot_error *err)
{
    if (empty(name))
        return missing(err, "Policy name");
    enum iot_err code = txn_open(reg, err);
    if (code != IOT_OK)
        return code;
    authz_touch(reg, NULL);
    return txn_end(reg, set_default_policy(reg, name, version, err), err);
}

static enum iot_err delete_policy_version(struct registry *reg, const char *name, long long version,
                                          struct iot_error *err)
{
    bool found, is_default = false;
    enum iot_err code =
        exists(reg, "SELECT 1 FROM policy_versions WHERE policy = ?1 AND version = ?2",
               ARGS(ARG_TEXT(name), ARG_NUM(version)), &found, err);
    if (code == IOT_OK && !found)
        code = iot_error_set(err, IOT_ERR_NOT_FOUND, "Policy %s version %lld not found", name,
                             version);
    if (code == IOT_OK)
        code = exists(reg, "SELECT 1 FROM policies WHERE name = ?1 AND default_version = ?2",
                      ARGS(ARG_TEXT(name), ARG_NUM(version)), &is_default, err);
    if (code == IOT_OK && is_default)
        code = iot_error_set(err, IOT_ERR_DELETE_CONFLICT,
                             "Cannot delete the default version of a policy");
    if (code == IOT_OK)
        code = run(reg, "DELETE FROM policy_versions WHERE policy = ?1 AND version = ?2",
                   ARGS(ARG_TEXT(name), ARG_NUM(version)), err);
    return code;
}

enum iot_err registry_policy_version_delete(struct registry *reg, const char *name,
                                            long long version, struct iot_error *err)
{
    if (empty(name))
        return missing(err, "Policy name");
    enum iot_err code = txn_open(reg, err);
    if (code != IOT_OK)
        return code;
    return txn_end(reg, delete_policy_version(reg, name, version, err), err);
}

/* ---- provisioning template versions ----------------------------------------------------- */

static enum iot_err require_template(struct registry *reg, const char *name, struct iot_error *err)
{
    bool found;
    enum iot_err code =
        exists(reg, "SELECT 1 FROM templates WHERE name = ?1", ARGS(ARG_TEXT(name)), &found, err);
    if (code == IOT_OK && !found)
        code = iot_error_set(err, IOT_ERR_NOT_FOUND, "Template %s not found", name);
    return code;
}

enum iot_err registry_template_default_version(struct registry *reg, const char *name,
                                               long long *out, struct iot_error *err)
{
    *out = 0;
    if (empty(name))
        return missing(err, "Template name");
    lock(reg);
    sqlite3_stmt *st;
    bool found = false;
    enum iot_err code = prepare(reg, &st, "SELECT default_version FROM templates WHERE name = ?1",
                                ARGS(ARG_TEXT(name)), err);
    if (code == IOT_OK)
        code = first_row(reg, st, &found, err);
    if (code == IOT_OK && !found)
        code = iot_error_set(err, IOT_ERR_NOT_FOUND, "Template %s not found", name);
    if (code == IOT_OK)
        *out = sqlite3_column_int64(st, 0);
    release(reg, st);
    unlock(reg);
    return code;
}

enum iot_err registry_template_version_list(struct registry *reg, const char *name,
                                            const struct registry_page *pg, cJSON **out,
                                            char **next, struct iot_error *err)
{
    static const struct page_query q = {
        .cursor = "printf('%020d', v.version)",
        .columns = "v.version AS version, v.created AS created,"
                   " v.version = t.default_version AS is_default",
        .from = "FROM template_versions v JOIN templates t ON t.name = v.template"
                " WHERE v.template = ?3"};
    *out = NULL;
    if (next != NULL)
        *next = NULL;
    if (empty(name))
        return missing(err, "Template name");
    lock(reg); /* recursive: existence and listing see the same state */
    enum iot_err code = require_template(reg, name, err);
    struct arg args[] = {{0}, {0}, ARG_TEXT(name)};
    if (code == IOT_OK)
        code = select_page(reg, &q, pg, args, 3, out, next, err);
    unlock(reg);
    return code;
}

enum iot_err registry_template_version_get(struct registry *reg, const char *name,
                                           long long version, char **body, long long *created,
                                           bool *is_default, struct iot_error *err)
{
    struct version_row row = {0};
    *body = NULL;
    if (empty(name))
        return missing(err, "Template name");
    lock(reg);
    enum iot_err code = require_template(reg, name, err);
    if (code == IOT_OK)
        code = get_version_row(
            reg,
            "SELECT v.body, v.created, v.version = t.default_version FROM template_versions v"
            " JOIN templates t ON t.name = v.template WHERE v.template = ?1 AND v.version = ?2",
            name, version, "Template", &row, err);
    unlock(reg);
    *body = row.text;
    if (created != NULL)
        *created = row.created;
    if (is_default != NULL)
        *is_default = row.is_default;
    return code;
}

enum iot_err registry_template_version_add(struct registry *reg, const char *name, const char *body,
                                           bool set_default, long long *version,
                                           struct iot_error *err)
{
    if (empty(name) || body == NULL)
        return missing(err, empty(name) ? "Template name" : "Template body");
    enum iot_err code = txn_open(reg, err);
    if (code != IOT_OK)
        return code;
    return txn_end(reg, add_template_version(reg, name, body, set_default, version, err), err);
}

enum iot_err registry_template_version_set_default(struct registry *reg, const char *name,
                                                   long long version, struct iot_error *err)
{
    if (empty(name))
        return missing(err, "Template name");
    enum iot_err code = txn_open(reg, err);
    if (code != IOT_OK)
        return code;
    code = require_template(reg, name, err);
    if (code == IOT_OK)
        code = set_default_template(reg, name, version, err);
    return txn_end(reg, code, err);
}

static enum iot_err delete_template_version(struct registry *reg, const char *name,
                                            long long version, struct iot_error *err)
{
    bool found, is_default = false;
    enum iot_err code = require_template(reg, name, err);
    if (code == IOT_OK)
        code = exists(reg, "SELECT 1 FROM template_versions WHERE template = ?1 AND version = ?2",
                      ARGS(ARG_TEXT(name), ARG_NUM(version)), &found, err);
    if (code == IOT_OK && !found)
        code = iot_error_set(err, IOT_ERR_NOT_FOUND, "Template %s version %lld not found", name,
                             version);
    if (code == IOT_OK)
        code = exists(reg, "SELECT 1 FROM templates WHERE name = ?1 AND default_version = ?2",
                      ARGS(ARG_TEXT(name), ARG_NUM(version)), &is_default, err);
    if (code == IOT_OK && is_default)
        code = iot_error_set(err, IOT_ERR_DELETE_CONFLICT,
                             "Cannot delete the default version of template %s", name);
    if (code == IOT_OK)
        code = run(reg, "DELETE FROM template_versions WHERE template = ?1 AND version = ?2",
                   ARGS(ARG_TEXT(name), ARG_NUM(version)), err);
    return code;
}

enum iot_err registry_template_version_delete(struct registry *reg, const char *name,
                                              long long version, struct iot_error *err)
{
    if (empty(name))
        return missing(err, "Template name");
    enum iot_err code = txn_open(reg, err);
    if (code != IOT_OK)
        return code;
    return txn_end(reg, delete_template_version(reg, name, version, err), err);
}

/* ---- event configurations --------------------------------------------------------------- */

enum iot_err registry_event_configs(struct registry *reg, cJSON **out, long long *created,
                                    long long *modified, struct iot_error *err)
{
    cJSON *rows = NULL, *row;
    *out = NULL;
    lock(reg);
    enum iot_err code = select_objects(reg,
                                       "SELECT event_type, event_type AS type, enabled, created,"
                                       " modified FROM event_configurations ORDER BY 1",
                                       NULL, 0, 0, &rows, NULL, err);
    unlock(reg);
    if (code != IOT_OK)
        return code;
    *out = cJSON_CreateObject();
    *created = *modified = 0;
    cJSON_ArrayForEach(row, rows)
    {
        long long c = (long long)cJSON_GetNumberValue(cJSON_GetObjectItem(row, "created"));
        long long m = (long long)cJSON_GetNumberValue(cJSON_GetObjectItem(row, "modified"));
        *created = *created == 0 || c < *created ? c : *created;
        *modified = m > *modified ? m : *modified;
        bool on = cJSON_GetNumberValue(cJSON_GetObjectItem(row, "enabled")) != 0;
        if (*out != NULL)
            cJSON_AddBoolToObject(*out, cJSON_GetStringValue(cJSON_GetObjectItem(row, "type")), on);
    }
    cJSON_Delete(rows);
    return *out != NULL ? IOT_OK : oom(err);
}

enum iot_err registry_event_config_set(struct registry *reg, const char *type, bool enabled,
                                       struct iot_error *err)
{
    if (empty(type))
        return missing(err, "Event type");
    enum iot_err code = txn_open(reg, err);
    if (code != IOT_OK)
        return code;
    code = run(reg,
               "INSERT INTO event_configurations (event_type, enabled, created, modified)"
               " VALUES (?1, ?2, ?3, ?3) ON CONFLICT (event_type) DO UPDATE SET"
               " enabled = excluded.enabled, modified = excluded.modified",
               ARGS(ARG_TEXT(type), ARG_NUM(enabled), ARG_NUM(now_or(0))), err);
    reg->events_stale = true; /* the mask is read again when the transaction ends */
    return txn_end(reg, code, err);
}

bool registry_event_enabled(struct registry *reg, const char *type)
{
    bool on = false;
    if (empty(type))
        return false;
    lock(reg);
    if (exists(reg, "SELECT 1 FROM event_configurations WHERE event_type = ?1 AND enabled",
               ARGS(ARG_TEXT(type)), &on, NULL) != IOT_OK)
        on = false;
    unlock(reg);
    return on;
}

/* ---- reset ------------------------------------------------------------------------------ */

/* Every table, whoever added it: the order does not matter because foreign keys are checked
 * only at the commit, when all of them are empty. */
static enum iot_err wipe(struct registry *reg, struct iot_error *err)
{
    cJSON *tables = NULL, *t;
    atomic_fetch_add(&reg->cert_version, 1);
    enum iot_err code = exec(reg, "PRAGMA defer_foreign_keys = ON", err);
    if (code == IOT_OK)
        code = select_strings(reg,
                              "SELECT name FROM sqlite_master WHERE type = 'table'"
                              " AND name NOT LIKE 'sqlite_%' ORDER BY 1",
                              NULL, 0, &tables, err);
    cJSON_ArrayForEach(t, tables)
    {
        char *sql = code == IOT_OK ? sqlite3_mprintf("DELETE FROM \"%w\"", t->valuestring) : NULL;
        if (code == IOT_OK && sql == NULL)
            code = oom(err);
        if (code == IOT_OK)
            code = exec(reg, sql, err);
        sqlite3_free(sql);
    }
    cJSON_Delete(tables);
    return code;
}

enum iot_err registry_reset(struct registry *reg, struct iot_error *err)
{
    enum iot_err code = txn_open(reg, err);
    if (code != IOT_OK)
        return code;
    reg->events_stale = true;
    authz_touch(reg, NULL);
    return txn_end(reg, wipe(reg, err), err);
}
