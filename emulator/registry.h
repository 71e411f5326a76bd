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

enum iot_err registry_begin(struct registry *reg);
enum iot_err registry_commit(struct registry *reg);
void registry_rollback(struct registry *reg);

/* ---- certificates ---------------------------------------------------------------------- */
struct registry_cert {
    char id[65];
    char *pem;            /* owned; freed by registry_cert_clear() */
    enum cert_status status;
    char ca_id[65];       /* "" when not issued by a registered CA */
    long long created;    /* epoch seconds */
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
    char *name;          /* owned */
    char *id;            /* owned; a UUID assigned on insert when NULL */
    char *type_name;     /* owned; NULL when none */
    cJSON *attributes;   /* owned; object of name -> string; NULL when none */
    long long version;   /* 1 on insert, +1 on each update */
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
enum iot_err registry_thing_group_remove(struct registry *reg, const char *group,
                                         const char *thing, struct iot_error *err);
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
    char *name;                 /* owned, each field below too; NULL when absent */
    char *body;                 /* the template JSON text */
    char *type;                 /* "FLEET_PROVISIONING" or "JITP" */
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
enum iot_err registry_token_find(struct registry *reg, const char *token_hash,
                                 char cert_id[65], long long *expires_at);
/* Removes tokens with expires_at <= NOW; deletes each one's certificate if it is still
 * PENDING_ACTIVATION and attached to no policy and no thing (§1.6). *deleted = certificates
 * removed (may be NULL). */
enum iot_err registry_expire_tokens(struct registry *reg, long long now, int *deleted);

#endif
