/* The registry: AWS IoT Core's account state (certificates, things, thing types and groups,
 * policies, attachments, provisioning templates, ownership tokens) in SQLite.
 *
 * Durability: a file registry runs in WAL mode with synchronous=FULL, so a change is on disk when
 * the call (or registry_commit()) returns; what a client was told survives kill -9.
 *
 * Threads: one struct registry is shared by the broker thread, provisioning workers and the HTTP
 * thread. Every call locks it. registry_begin() takes the lock until registry_commit() or
 * registry_rollback() on the same thread, so a multi-step change is one atomic transaction; calls
 * made by that thread inside it join the transaction. Calls outside a transaction commit alone.
 *
 * Names: certificates are identified by their 64-hex id everywhere in this API (attachments too);
 * the control plane translates ARNs at its edge. */
#ifndef IOTMOCK_REGISTRY_H
#define IOTMOCK_REGISTRY_H

#include <stdbool.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "err.h"

struct registry;

enum cert_status {
    CERT_STATUS_ACTIVE,
    CERT_STATUS_INACTIVE,
    CERT_STATUS_REVOKED,
    CERT_STATUS_PENDING_TRANSFER,
    CERT_STATUS_REGISTER_INACTIVE,
    CERT_STATUS_PENDING_ACTIVATION,
};

/* "ACTIVE", "PENDING_ACTIVATION", ... (static strings). */
const char *registry_cert_status_name(enum cert_status s);
/* Case-insensitive ("Active" works, as in AWS's samples). Returns false if unknown. */
bool registry_cert_status_parse(const char *s, enum cert_status *out);

/* PATH is a file, or ":memory:". Creates the schema when new. On success the caller owns *out
 * and frees it with registry_close(). A file that is not a registry gives IOT_ERR_IO. */
enum iot_err registry_open(const char *path, struct registry **out, struct iot_error *err);
void registry_close(struct registry *reg);

/* A counter bumped by every committed change, for caches (policy decisions, auth). */
uint64_t registry_version(struct registry *reg);
/* A counter bumped whenever a certificate's status may have changed or a certificate may have
 * gone (set status, delete, token expiry, reset), so that the broker re-checks its connected
 * certificates only then, not after every provisioning. It may move for a change that is then
 * rolled back; readers holding the lock see the committed state. */
uint64_t registry_cert_version(struct registry *reg);

/* What a connection's authorization depends on (broker-and-policy.md §2.6): the default version
 * of a policy, policy attachments, things (type, attributes), thing principals, group membership
 * and groups. registry_authz_version() moves after each commit that changed one of them (not
 * after, say, a new certificate or a status change). registry_authz_changed() says whether a
 * change committed after version SINCE may concern a connection of certificate CERT_ID whose
 * client id is THING (either may be NULL): never a false "no"; a false "yes" for changes that
 * concern everyone (policy versions, group attachments and deletions). Any thread; the first
 * never waits, the second takes a short lock of its own. */
uint64_t registry_authz_version(struct registry *reg);
bool registry_authz_changed(struct registry *reg, uint64_t since, const char *cert_id,
                            const char *thing);

enum iot_err registry_begin(struct registry *reg);
enum iot_err registry_commit(struct registry *reg);
void registry_rollback(struct registry *reg);

/* ---- certificates ---------------------------------------------------------------------- */
struct registry_cert {
    char id[65];
    char *pem; /* owned; freed by registry_cert_clear() */
    enum cert_status status;
    char ca_id[65];    /* "" when not issued by a registered CA */
    long long created; /* epoch seconds */
    long long modified;
};
void registry_cert_clear(struct registry_cert *c);

/* IOT_ERR_ALREADY_EXISTS if the id is taken. created/modified are set to now when 0. */
enum iot_err registry_cert_insert(struct registry *reg, const struct registry_cert *c,
                                  struct iot_error *err);
/* IOT_ERR_NOT_FOUND if absent. On success the caller clears *out. */
enum iot_err registry_cert_get(struct registry *reg, const char *id, struct registry_cert *out,
                               struct iot_error *err);
/* Status only: the hot path at CONNECT. IOT_ERR_NOT_FOUND if absent. */
enum iot_err registry_cert_status(struct registry *reg, const char *id, enum cert_status *out);
enum iot_err registry_cert_set_status(struct registry *reg, const char *id, enum cert_status s,
                                      struct iot_error *err);
/* Deletes the certificate, its token and its attachments. IOT_ERR_NOT_FOUND if absent. */
enum iot_err registry_cert_delete(struct registry *reg, const char *id, struct iot_error *err);
/* *out = true if any policy or thing is attached to the certificate. */
enum iot_err registry_cert_is_attached(struct registry *reg, const char *id, bool *out);

/* ---- things, types, groups ------------------------------------------------------------- */
struct registry_thing {
    char *name;        /* owned */
    char *id;          /* owned; a UUID assigned on insert when NULL */
    char *type_name;   /* owned; NULL when none */
    cJSON *attributes; /* owned; object of name -> string; NULL when none */
    long long version; /* 1 on insert, +1 on each update */
};
void registry_thing_clear(struct registry_thing *t);

enum iot_err registry_thing_get(struct registry *reg, const char *name, struct registry_thing *out,
                                struct iot_error *err);
/* Inserts, or replaces the existing thing of that name (keeping its id, version + 1). */
enum iot_err registry_thing_put(struct registry *reg, const struct registry_thing *t,
                                struct iot_error *err);
/* Deletes the thing and its group memberships and principal attachments. */
enum iot_err registry_thing_delete(struct registry *reg, const char *name, struct iot_error *err);

bool registry_thing_type_exists(struct registry *reg, const char *name);
enum iot_err registry_thing_type_put(struct registry *reg, const char *name, struct iot_error *err);
bool registry_thing_group_exists(struct registry *reg, const char *name);
enum iot_err registry_thing_group_put(struct registry *reg, const char *name,
                                      struct iot_error *err);
/* Group membership. add is idempotent. */
enum iot_err registry_thing_group_add(struct registry *reg, const char *group, const char *thing,
                                      struct iot_error *err);
enum iot_err registry_thing_group_remove(struct registry *reg, const char *group, const char *thing,
                                         struct iot_error *err);
/* *out = new cJSON array of group names of THING (sorted); caller frees with cJSON_Delete(). */
enum iot_err registry_thing_groups(struct registry *reg, const char *thing, cJSON **out);

/* ---- thing principals ------------------------------------------------------------------ */
/* PRINCIPAL is a certificate id. attach is idempotent. */
enum iot_err registry_thing_principal_attach(struct registry *reg, const char *thing,
                                             const char *principal, struct iot_error *err);
enum iot_err registry_thing_principal_detach(struct registry *reg, const char *thing,
                                             const char *principal, struct iot_error *err);
/* *out = new cJSON array of thing names attached to PRINCIPAL (sorted). */
enum iot_err registry_principal_things(struct registry *reg, const char *principal, cJSON **out);
/* *out = new cJSON array of principals attached to THING (sorted). */
enum iot_err registry_thing_principals(struct registry *reg, const char *thing, cJSON **out);

/* ---- policies -------------------------------------------------------------------------- */
/* IOT_ERR_NOT_FOUND if absent; *document is malloc'd, caller frees with free(). */
enum iot_err registry_policy_get(struct registry *reg, const char *name, char **document,
                                 struct iot_error *err);
/* Creates the policy (version 1). IOT_ERR_ALREADY_EXISTS if the name is taken. */
enum iot_err registry_policy_create(struct registry *reg, const char *name, const char *document,
                                    struct iot_error *err);
/* Deletes a policy that has no targets (else IOT_ERR_DELETE_CONFLICT). */
enum iot_err registry_policy_delete(struct registry *reg, const char *name, struct iot_error *err);
/* TARGET is a certificate id or another principal/ARN string. attach is idempotent. */
enum iot_err registry_policy_attach(struct registry *reg, const char *policy, const char *target,
                                    struct iot_error *err);
enum iot_err registry_policy_detach(struct registry *reg, const char *policy, const char *target,
                                    struct iot_error *err);
/* *out = new cJSON array of policy names attached to TARGET (sorted). */
enum iot_err registry_target_policies(struct registry *reg, const char *target, cJSON **out);

/* ---- provisioning templates ------------------------------------------------------------ */
struct registry_template {
    char *name; /* owned, each field below too; NULL when absent */
    char *body; /* the template JSON text */
    char *type; /* "FLEET_PROVISIONING" or "JITP" */
    char *description;
    char *role_arn;
    char *hook_target_arn;      /* preProvisioningHook.targetArn */
    char *hook_payload_version; /* preProvisioningHook.payloadVersion */
    bool enabled;
    long long created;
    long long modified;
};
void registry_template_clear(struct registry_template *t);
enum iot_err registry_template_get(struct registry *reg, const char *name,
                                   struct registry_template *out, struct iot_error *err);
/* Inserts or replaces (keeping created). */
enum iot_err registry_template_put(struct registry *reg, const struct registry_template *t,
                                   struct iot_error *err);
enum iot_err registry_template_delete(struct registry *reg, const char *name,
                                      struct iot_error *err);

/* ---- certificate ownership tokens (§1.6) ----------------------------------------------- */
/* TOKEN_HASH: hex SHA-256 of the token the client holds (the token itself is never stored). */
enum iot_err registry_token_put(struct registry *reg, const char *token_hash, const char *cert_id,
                                long long expires_at, struct iot_error *err);
/* IOT_ERR_NOT_FOUND if unknown. Expired tokens are still found: the caller compares. */
enum iot_err registry_token_find(struct registry *reg, const char *token_hash, char cert_id[65],
                                 long long *expires_at);
/* Removes tokens with expires_at <= NOW; deletes each one's certificate if it is still
 * PENDING_ACTIVATION and attached to no policy and no thing (§1.6). *deleted = certificates
 * removed (may be NULL). */
enum iot_err registry_expire_tokens(struct registry *reg, long long now, int *deleted);

/* ==== control-plane additions ==============================================================
 * What the REST operations need beyond the calls above (shared/spec/provisioning.md §6).
 * Nothing above changed meaning; two internal effects are new: registry_cert_set_status() bumps
 * the certificate's customer version when the status changes, and registry_expire_tokens() also
 * deletes provisioning-claim certificates whose five minutes are over (counted in *deleted). */

/* ---- listings ----
 * A list call returns at most LIMIT items (1..REGISTRY_PAGE_MAX; 0 = the maximum) that follow
 * the cursor AFTER (NULL or "" = from the start), as a new cJSON array of objects (caller frees
 * with cJSON_Delete()), and sets *NEXT to a malloc'd cursor for the following page, or NULL when
 * no item follows (caller frees with free()). Cursors are the registry's sort keys: opaque to
 * callers, who hand them back unchanged; any string is accepted. Object keys are given with each
 * call; absent values are absent keys; timestamps are epoch seconds; booleans are 0/1. */
#define REGISTRY_PAGE_MAX 250
struct registry_page {
    const char *after;
    int limit;
    bool descending; /* certificates and policies only: reverse the order */
};

/* Certificates by creation time, without provisioning-claim certificates:
 * {"id","status","ca_id","created","modified"}. */
enum iot_err registry_cert_list(struct registry *reg, const struct registry_page *pg, cJSON **out,
                                char **next, struct iot_error *err);

/* Things by name: {"name","id","type_name","attributes" (object),"version"}. Every filter member
 * is optional (NULL/false = no filter). An attribute filter matches a thing that has an attribute
 * named ATTRIBUTE_NAME (any name when NULL) whose value is ATTRIBUTE_VALUE (any value when NULL;
 * a prefix of it when ATTRIBUTE_PREFIX). GROUP keeps the members of that group (and of its
 * descendants when RECURSIVE). */
struct registry_thing_filter {
    const char *attribute_name;
    const char *attribute_value;
    bool attribute_prefix;
    const char *type_name;
    const char *group;
    bool recursive;
};
enum iot_err registry_thing_list(struct registry *reg, const struct registry_thing_filter *f,
                                 const struct registry_page *pg, cJSON **out, char **next,
                                 struct iot_error *err);
/* Thing types by name, optionally only NAME: {"name","id","description","searchable" (array),
 * "deprecated","deprecated_at","created"}. */
enum iot_err registry_thing_type_list(struct registry *reg, const char *name,
                                      const struct registry_page *pg, cJSON **out, char **next,
                                      struct iot_error *err);
/* Thing groups by name: {"name","id","parent"}. PREFIX filters names; PARENT keeps its children
 * (all its descendants when RECURSIVE); no PARENT lists every group. */
enum iot_err registry_thing_group_list(struct registry *reg, const char *parent, const char *prefix,
                                       bool recursive, const struct registry_page *pg, cJSON **out,
                                       char **next, struct iot_error *err);
/* Groups THING belongs to: {"name"}. */
enum iot_err registry_thing_group_list_for_thing(struct registry *reg, const char *thing,
                                                 const struct registry_page *pg, cJSON **out,
                                                 char **next, struct iot_error *err);
/* Principals (certificate ids) of THING: {"principal"}; things of PRINCIPAL: {"thing"}. */
enum iot_err registry_thing_principal_list(struct registry *reg, const char *thing,
                                           const struct registry_page *pg, cJSON **out, char **next,
                                           struct iot_error *err);
enum iot_err registry_principal_thing_list(struct registry *reg, const char *principal,
                                           const struct registry_page *pg, cJSON **out, char **next,
                                           struct iot_error *err);
/* Policies by name: {"name","created"}. */
enum iot_err registry_policy_list(struct registry *reg, const struct registry_page *pg, cJSON **out,
                                  char **next, struct iot_error *err);
/* Targets of POLICY: {"target"}; policies attached to TARGET: {"name"}. */
enum iot_err registry_policy_target_list(struct registry *reg, const char *policy,
                                         const struct registry_page *pg, cJSON **out, char **next,
                                         struct iot_error *err);
enum iot_err registry_target_policy_list(struct registry *reg, const char *target,
                                         const struct registry_page *pg, cJSON **out, char **next,
                                         struct iot_error *err);
/* Templates by name: {"name","description","created","modified","enabled","type"}. */
enum iot_err registry_template_list(struct registry *reg, const struct registry_page *pg,
                                    cJSON **out, char **next, struct iot_error *err);

/* ---- certificates: details and provisioning claims (§1.11) ---- */
struct registry_cert_meta {
    long long customer_version; /* 1 at insert, +1 at each status change */
    char claim_template[37];    /* "" unless a CreateProvisioningClaim certificate */
    long long claim_expires;    /* epoch seconds; 0 unless a claim certificate */
};
enum iot_err registry_cert_get_meta(struct registry *reg, const char *id,
                                    struct registry_cert_meta *out, struct iot_error *err);
/* Marks certificate ID as a temporary claim for TEMPLATE_NAME until EXPIRES_AT: it is no longer
 * listed, and registry_expire_tokens() deletes it from then on. IOT_ERR_NOT_FOUND if absent. */
enum iot_err registry_cert_set_claim(struct registry *reg, const char *id,
                                     const char *template_name, long long expires_at,
                                     struct iot_error *err);

/* ---- thing types ---- */
struct registry_thing_type {
    char *name; /* owned, as every pointer below; NULL when absent */
    char *id;   /* a UUID assigned on create when NULL */
    char *description;
    cJSON *searchable; /* array of attribute names */
    bool deprecated;
    long long deprecated_at;
    long long created; /* set to now on create when 0 */
};
void registry_thing_type_clear(struct registry_thing_type *t);
/* IOT_ERR_ALREADY_EXISTS if the name is taken. */
enum iot_err registry_thing_type_create(struct registry *reg, const struct registry_thing_type *t,
                                        struct iot_error *err);
/* On success the caller clears *out. */
enum iot_err registry_thing_type_get(struct registry *reg, const char *name,
                                     struct registry_thing_type *out, struct iot_error *err);
/* DEPRECATED false undoes a deprecation. */
enum iot_err registry_thing_type_deprecate(struct registry *reg, const char *name, bool deprecated,
                                           struct iot_error *err);
/* IOT_ERR_DELETE_CONFLICT while a thing has the type. */
enum iot_err registry_thing_type_delete(struct registry *reg, const char *name,
                                        struct iot_error *err);

/* ---- thing groups ---- */
struct registry_thing_group {
    char *name; /* owned, as every pointer below; NULL when absent */
    char *id;   /* a UUID assigned on create when NULL */
    char *description;
    char *parent;
    cJSON *attributes; /* object of name -> string */
    long long version; /* 1 on create */
    long long created;
};
void registry_thing_group_clear(struct registry_thing_group *g);
/* IOT_ERR_ALREADY_EXISTS if the name is taken; IOT_ERR_INVALID_REQUEST if PARENT is unknown. */
enum iot_err registry_thing_group_create(struct registry *reg, const struct registry_thing_group *g,
                                         struct iot_error *err);
enum iot_err registry_thing_group_get(struct registry *reg, const char *name,
                                      struct registry_thing_group *out, struct iot_error *err);
/* *out = new cJSON array of the names from the root down to NAME's parent ([] for a root). */
enum iot_err registry_thing_group_ancestors(struct registry *reg, const char *name, cJSON **out);
/* Deletes the group and its memberships. IOT_ERR_DELETE_CONFLICT while it has child groups. */
enum iot_err registry_thing_group_delete(struct registry *reg, const char *name,
                                         struct iot_error *err);

/* ---- policies: details and versions ----
 * registry_policy_get() reads the default version's document. Version ids grow and are never
 * reused. */
struct registry_policy {
    char *name;     /* owned */
    char *document; /* owned; the default version's */
    int default_version;
    long long created;
    long long modified; /* moves when the default version changes */
};
void registry_policy_clear(struct registry_policy *p);
enum iot_err registry_policy_info(struct registry *reg, const char *name,
                                  struct registry_policy *out, struct iot_error *err);
/* *out = new array, by version: {"version","created","is_default"}. */
enum iot_err registry_policy_versions(struct registry *reg, const char *name, cJSON **out,
                                      struct iot_error *err);
/* *document malloc'd (caller frees); created and is_default may be NULL. */
enum iot_err registry_policy_version_get(struct registry *reg, const char *name, long long version,
                                         char **document, long long *created, bool *is_default,
                                         struct iot_error *err);
/* Adds a version (*version = its id, may be NULL), made the default when SET_DEFAULT. */
enum iot_err registry_policy_version_add(struct registry *reg, const char *name,
                                         const char *document, bool set_default, long long *version,
                                         struct iot_error *err);
enum iot_err registry_policy_version_set_default(struct registry *reg, const char *name,
                                                 long long version, struct iot_error *err);
/* IOT_ERR_DELETE_CONFLICT for the default version. */
enum iot_err registry_policy_version_delete(struct registry *reg, const char *name,
                                            long long version, struct iot_error *err);

/* ---- provisioning template versions ----
 * registry_template_put() writes the default version's body (version 1 for a new template);
 * registry_template_get() reads it. Version ids grow and are never reused. */
enum iot_err registry_template_default_version(struct registry *reg, const char *name,
                                               long long *out, struct iot_error *err);
/* Pages of {"version","created","is_default"}; IOT_ERR_NOT_FOUND for an unknown template. */
enum iot_err registry_template_version_list(struct registry *reg, const char *name,
                                            const struct registry_page *pg, cJSON **out,
                                            char **next, struct iot_error *err);
/* *body malloc'd (caller frees); created and is_default may be NULL. */
enum iot_err registry_template_version_get(struct registry *reg, const char *name,
                                           long long version, char **body, long long *created,
                                           bool *is_default, struct iot_error *err);
enum iot_err registry_template_version_add(struct registry *reg, const char *name, const char *body,
                                           bool set_default, long long *version,
                                           struct iot_error *err);
enum iot_err registry_template_version_set_default(struct registry *reg, const char *name,
                                                   long long version, struct iot_error *err);
/* IOT_ERR_DELETE_CONFLICT for the default version. */
enum iot_err registry_template_version_delete(struct registry *reg, const char *name,
                                              long long version, struct iot_error *err);

/* ---- event configurations (UpdateEventConfigurations) ---- */
/* *out = new object of event type -> bool, for the types ever set; *created and *modified the
 * earliest creation and latest change (0 when none). */
enum iot_err registry_event_configs(struct registry *reg, cJSON **out, long long *created,
                                    long long *modified, struct iot_error *err);
enum iot_err registry_event_config_set(struct registry *reg, const char *type, bool enabled,
                                       struct iot_error *err);
/* false for an unknown type or when the registry cannot be read. */
bool registry_event_enabled(struct registry *reg, const char *type);

/* ---- registry events (shared/spec/provisioning.md §5.3) ----
 * After a commit, the registry reports each change it made to things, thing types, thing groups,
 * group memberships, thing type associations and the group hierarchy to the hook, in the order they
 * were made. Only committed changes are reported (a rolled-back transaction or savepoint reports
 * nothing), and only for event types enabled by registry_event_config_set(): with every type
 * disabled (AWS's default) a change costs one atomic load. */
enum registry_event_type {
    REGISTRY_EVENT_THING,
    REGISTRY_EVENT_THING_TYPE,
    REGISTRY_EVENT_THING_GROUP,
    REGISTRY_EVENT_THING_GROUP_MEMBERSHIP,
    REGISTRY_EVENT_THING_TYPE_ASSOCIATION,
    REGISTRY_EVENT_THING_GROUP_HIERARCHY,
    REGISTRY_EVENT_TYPE_COUNT
};
/* The event configuration key ("THING", ...; static), or NULL when out of range. */
const char *registry_event_type_name(enum registry_event_type t);

enum registry_operation {
    REGISTRY_OP_CREATED,
    REGISTRY_OP_UPDATED,
    REGISTRY_OP_DELETED,
    REGISTRY_OP_ADDED,
    REGISTRY_OP_REMOVED,
};
/* "CREATED", "UPDATED", ... (static). */
const char *registry_operation_name(enum registry_operation op);

/* One change. FIELDS (owned by the registry, valid during the call) is the resource after the
 * change, or before it for DELETED/REMOVED; absent values are absent keys:
 *   THING                   {"name","id","type_name","attributes" (object),"version"}
 *   THING_TYPE              {"name","id","description","searchable" (array),"deprecated" (bool),
 *                            "deprecated_at" (epoch seconds)}
 *   THING_GROUP             {"name","id","description","parent","parent_id","attributes",
 *                            "version","ancestors" (array of {"name","id"}, root first)}
 *   THING_GROUP_MEMBERSHIP  {"group","group_id","thing","thing_id","membership_id"}
 *   THING_TYPE_ASSOCIATION  {"thing","thing_id","type"}
 *   THING_GROUP_HIERARCHY   as THING_GROUP, for the child group added to or removed from its
 *                           parent (created with a parent, or deleted) */
struct registry_change {
    enum registry_event_type type;
    enum registry_operation op;
    long long timestamp_ms; /* when the change was made (epoch milliseconds) */
    const cJSON *fields;
};
/* Sets the hook (NULL removes it). It runs on the thread that committed, with the registry locked:
 * it must be quick and must not call the registry (queue the change). Set it before other threads
 * use the registry, or after they stopped. */
void registry_set_change_hook(struct registry *reg,
                              void (*on_change)(const struct registry_change *c, void *arg),
                              void *arg);

/* ---- reset ---- */
/* Empties every table in one transaction (the schema stays). */
enum iot_err registry_reset(struct registry *reg, struct iot_error *err);

#endif
