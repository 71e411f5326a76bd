/* Private to emulator/http/: what the router, the shared helpers and the operation handlers
 * (api_*.c, one file per resource family) share. Handlers follow AWS's REST-JSON model
 * (shared/spec/provisioning.md §6): members from the URI, the query string, headers or a JSON
 * body; a JSON answer with status 200, or an AWS error (status, x-amzn-ErrorType, {"message"}).
 *
 * A handler never sends anything itself: it fills a struct http_reply, which the server sends
 * once the handler returns. Every registry write a handler makes is committed before that, so
 * the broker sees the change (certificate status at CONNECT, attachments) before the client
 * hears about it. */
#ifndef IOTMOCK_HTTP_API_H
#define IOTMOCK_HTTP_API_H

#include <stdbool.h>
#include <stddef.h>

#include <cjson/cJSON.h>
#include <microhttpd.h>

#include "bootstrap.h"
#include "ca.h"
#include "err.h"
#include "http/server.h"
#include "registry.h"

#define HTTP_BODY_MAX (1024 * 1024) /* bytes; larger bodies get 413 */
#define HTTP_PARAMS_MAX 3           /* {param} segments in one route */
#define HTTP_PREFIX_MAX 4           /* path segments a --endpoint-url may put before the API */
#define HTTP_PAGE_DEFAULT 100       /* items per page when the client names no size */
#define HTTP_HOST_MAX 256

struct http_server {
    struct MHD_Daemon *daemon;
    struct http_config cfg;     /* the pointers in it are borrowed */
    struct bootstrap_seed seed; /* copy of *cfg.seed (its strings are borrowed) */
    bool have_seed;
    char host[HTTP_HOST_MAX]; /* DescribeEndpoint's answer */
};

/* One request being answered. Strings it hands out live until the request ends. */
struct http_request {
    const struct http_server *srv;
    struct MHD_Connection *conn;
    const char *method;
    const char *op;                /* AWS operation name */
    char *params[HTTP_PARAMS_MAX]; /* decoded {param} path segments, in pattern order */
    cJSON *body;                   /* the JSON body; an empty object when there was none */
    char **owned;                  /* strings to free with the request */
    size_t owned_count, owned_cap;
};

struct http_reply {
    unsigned int status;
    cJSON *body;              /* owned; sent as JSON (NULL: "{}") */
    const char *error_type;   /* x-amzn-ErrorType, NULL on success (static string) */
    char *raw;                /* owned; sent instead of BODY when not NULL */
    const char *content_type; /* for RAW */
};

typedef void (*http_handler)(struct http_request *req, struct http_reply *rep);

/* ---- router.c ---- */
/* Matches METHOD and the raw (still percent-encoded) URL path, fills REQ's op and params, and runs
 * the handler; answers 404/405/400/403 itself when no operation applies. */
void http_route(struct http_request *req, const char *url, struct http_reply *rep);

/* ---- util.c: replies ---- */
void reply_json(struct http_reply *rep, cJSON *body); /* takes BODY; NULL -> new {} */
void reply_error(struct http_reply *rep, unsigned int status, const char *type, const char *fmt,
                 ...) __attribute__((format(printf, 4, 5)));
/* The emulator's error codes as AWS exceptions (§6.3): NOT_FOUND -> ResourceNotFoundException 404,
 * ALREADY_EXISTS -> ResourceAlreadyExistsException 409, DELETE_CONFLICT -> DeleteConflictException
 * 409, CERT_STATE -> CertificateStateException 406, request/payload/CSR/parameter errors ->
 * InvalidRequestException 400, the rest -> InternalFailureException 500. */
void reply_iot_error(struct http_reply *rep, const struct iot_error *e);
/* ResourceAlreadyExistsException with its resourceId and resourceArn members. */
void reply_exists(struct http_reply *rep, const char *id, const char *arn, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void reply_invalid(struct http_reply *rep, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void reply_not_found(struct http_reply *rep, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* ---- util.c: transactions ----
 * A handler that reads and then writes (check a state, then change it) does both inside one
 * registry transaction, so that no MQTT or HTTP change can slip in between and no half of a
 * multi-step change is ever visible. */
/* Opens the transaction; false + 500 reply when the registry is unavailable. */
bool txn_begin(struct http_request *req, struct http_reply *rep);
/* Commits when REP holds a success, else rolls back; a failed commit becomes a 500. */
void txn_end(struct http_request *req, struct http_reply *rep);

/* ---- util.c: request members ---- */
/* Keeps S (malloc'd) until the request ends and returns it; NULL stays NULL. */
char *request_keep(struct http_request *req, char *s);
void request_free(struct http_request *req);
/* Decodes %XX escapes (and nothing else) into a new string; NULL when an escape is malformed. */
char *http_percent_decode(const char *s, size_t len);
/* A header, as sent; NULL when absent. */
const char *req_header(const struct http_request *req, const char *name);
/* A decoded query parameter; NULL when absent. */
const char *req_query(struct http_request *req, const char *name);
/* Query booleans ("true"/"false"): *OUT untouched when absent. false + 400 reply when invalid. */
bool req_query_bool(struct http_request *req, struct http_reply *rep, const char *name, bool *out);
/* Query integers within [MIN, MAX]: *OUT untouched when absent. */
bool req_query_int(struct http_request *req, struct http_reply *rep, const char *name,
                   long long min, long long max, long long *out);
/* Body members. Absent members leave *OUT untouched (required ones get a 400); a member of the
 * wrong JSON type always gets a 400. Strings point into the body. */
bool body_string(struct http_request *req, struct http_reply *rep, const char *name, bool required,
                 const char **out);
bool body_bool(struct http_request *req, struct http_reply *rep, const char *name, bool *out);
bool body_int(struct http_request *req, struct http_reply *rep, const char *name, long long *out);
/* Objects (or arrays when ARRAY): borrowed from the body; NULL when absent. */
bool body_node(struct http_request *req, struct http_reply *rep, const char *name, bool array,
               const cJSON **out);

/* ---- util.c: validation ---- */
/* Names of 1..MAX characters of [A-Za-z0-9] and EXTRA; 400 naming WHAT otherwise. */
bool check_name(struct http_reply *rep, const char *what, const char *value, const char *extra,
                size_t max);
#define THING_NAME_CHARS ":_-"      /* things, thing types, thing groups: [a-zA-Z0-9:_-]{1,128} */
#define POLICY_NAME_CHARS "_+=,.@-" /* policies: [\w+=,.@-]{1,128} */
#define NAME_MAX_LEN 128
bool check_thing_name(struct http_reply *rep, const char *what, const char *value);
/* Attribute maps (things, groups): an object of string values within AWS's character set. */
bool check_attributes(struct http_reply *rep, const cJSON *attributes);
/* certificateId: 64 hex digits (the model's pattern also allows a 0x prefix, which AWS never
 * issues). Copies it lowercase into OUT. */
bool check_cert_id(struct http_reply *rep, const char *value, char out[CA_ID_LEN + 1]);

/* ---- util.c: ARNs ---- */
/* arn:aws:iot:<region>:<account>:<kind>/<name> into a new string kept by REQ. */
const char *arn_of(struct http_request *req, const char *kind, const char *name);
/* Adds KEY: arn_of(kind, name) to OBJ. */
void add_arn(struct http_request *req, cJSON *obj, const char *key, const char *kind,
             const char *name);
/* A certificate principal "arn:aws:iot:<region>:<account>:cert/<64 hex>" -> its id. Region and
 * account are not compared (a principal is the certificate, wherever the client thinks it is).
 * false + 400 when PRINCIPAL names something else. */
bool principal_cert_id(struct http_reply *rep, const char *principal, char id[CA_ID_LEN + 1]);
/* The registry's form of a policy target: the id for a certificate ARN, else the text itself. */
const char *target_key(struct http_request *req, const char *target);
/* The client's form of a registry target: a certificate ARN for a certificate id. */
const char *target_arn(struct http_request *req, const char *key);

/* ---- util.c: paging ---- */
/* Reads a page size (1..250, default HTTP_PAGE_DEFAULT) and a continuation token from the named
 * query parameters into PG (the decoded cursor is kept by REQ). Tokens are base64 of the
 * registry's cursor; a token that is not base64 gets a 400. */
bool page_read(struct http_request *req, struct http_reply *rep, const char *size_name,
               const char *token_name, struct registry_page *pg);
/* Adds KEY: base64(NEXT) to OBJ when NEXT is not NULL, and frees NEXT. */
void page_next(cJSON *obj, const char *key, char *next);

/* ---- util.c: JSON output ---- */
void add_time(cJSON *obj, const char *key, long long epoch_seconds);
/* A generationId: a stable id of one state of a resource (KEY at A, B), shaped as AWS's are (a
 * UUID); it changes when the state does. */
void generation_id(const char *key, long long a, long long b, char out[37]);
/* OBJ[KEY] as a C string / long long, for registry list items. */
const char *item_str(const cJSON *obj, const char *key);
long long item_num(const cJSON *obj, const char *key);

/* ---- the operations, by family ---- */
/* api_things.c */
void op_create_thing(struct http_request *req, struct http_reply *rep);
void op_describe_thing(struct http_request *req, struct http_reply *rep);
void op_update_thing(struct http_request *req, struct http_reply *rep);
void op_delete_thing(struct http_request *req, struct http_reply *rep);
void op_list_things(struct http_request *req, struct http_reply *rep);
void op_create_thing_type(struct http_request *req, struct http_reply *rep);
void op_describe_thing_type(struct http_request *req, struct http_reply *rep);
void op_list_thing_types(struct http_request *req, struct http_reply *rep);
void op_deprecate_thing_type(struct http_request *req, struct http_reply *rep);
void op_delete_thing_type(struct http_request *req, struct http_reply *rep);
void op_create_thing_group(struct http_request *req, struct http_reply *rep);
void op_describe_thing_group(struct http_request *req, struct http_reply *rep);
void op_list_thing_groups(struct http_request *req, struct http_reply *rep);
void op_delete_thing_group(struct http_request *req, struct http_reply *rep);
void op_add_thing_to_thing_group(struct http_request *req, struct http_reply *rep);
void op_remove_thing_from_thing_group(struct http_request *req, struct http_reply *rep);
void op_list_things_in_thing_group(struct http_request *req, struct http_reply *rep);
void op_list_thing_groups_for_thing(struct http_request *req, struct http_reply *rep);
void op_attach_thing_principal(struct http_request *req, struct http_reply *rep);
void op_detach_thing_principal(struct http_request *req, struct http_reply *rep);
void op_list_thing_principals(struct http_request *req, struct http_reply *rep);
void op_list_principal_things(struct http_request *req, struct http_reply *rep);
/* api_certs.c */
void op_create_keys_and_certificate(struct http_request *req, struct http_reply *rep);
void op_create_certificate_from_csr(struct http_request *req, struct http_reply *rep);
void op_describe_certificate(struct http_request *req, struct http_reply *rep);
void op_update_certificate(struct http_request *req, struct http_reply *rep);
void op_delete_certificate(struct http_request *req, struct http_reply *rep);
void op_list_certificates(struct http_request *req, struct http_reply *rep);
/* api_policies.c */
void op_create_policy(struct http_request *req, struct http_reply *rep);
void op_get_policy(struct http_request *req, struct http_reply *rep);
void op_list_policies(struct http_request *req, struct http_reply *rep);
void op_delete_policy(struct http_request *req, struct http_reply *rep);
void op_create_policy_version(struct http_request *req, struct http_reply *rep);
void op_get_policy_version(struct http_request *req, struct http_reply *rep);
void op_list_policy_versions(struct http_request *req, struct http_reply *rep);
void op_set_default_policy_version(struct http_request *req, struct http_reply *rep);
void op_delete_policy_version(struct http_request *req, struct http_reply *rep);
void op_attach_policy(struct http_request *req, struct http_reply *rep);
void op_detach_policy(struct http_request *req, struct http_reply *rep);
void op_list_attached_policies(struct http_request *req, struct http_reply *rep);
void op_list_targets_for_policy(struct http_request *req, struct http_reply *rep);
void op_attach_principal_policy(struct http_request *req, struct http_reply *rep);
void op_detach_principal_policy(struct http_request *req, struct http_reply *rep);
void op_list_principal_policies(struct http_request *req, struct http_reply *rep);
void op_list_policy_principals(struct http_request *req, struct http_reply *rep);
/* api_authz.c */
void op_test_authorization(struct http_request *req, struct http_reply *rep);
void op_get_effective_policies(struct http_request *req, struct http_reply *rep);
/* api_templates.c */
void op_create_provisioning_template(struct http_request *req, struct http_reply *rep);
void op_describe_provisioning_template(struct http_request *req, struct http_reply *rep);
void op_list_provisioning_templates(struct http_request *req, struct http_reply *rep);
void op_update_provisioning_template(struct http_request *req, struct http_reply *rep);
void op_delete_provisioning_template(struct http_request *req, struct http_reply *rep);
void op_create_provisioning_template_version(struct http_request *req, struct http_reply *rep);
void op_describe_provisioning_template_version(struct http_request *req, struct http_reply *rep);
void op_list_provisioning_template_versions(struct http_request *req, struct http_reply *rep);
void op_delete_provisioning_template_version(struct http_request *req, struct http_reply *rep);
void op_create_provisioning_claim(struct http_request *req, struct http_reply *rep);
void op_register_thing(struct http_request *req, struct http_reply *rep);
/* api_cacerts.c */
void op_get_registration_code(struct http_request *req, struct http_reply *rep);
void op_delete_registration_code(struct http_request *req, struct http_reply *rep);
void op_register_ca_certificate(struct http_request *req, struct http_reply *rep);
void op_update_ca_certificate(struct http_request *req, struct http_reply *rep);
void op_describe_ca_certificate(struct http_request *req, struct http_reply *rep);
void op_list_ca_certificates(struct http_request *req, struct http_reply *rep);
void op_delete_ca_certificate(struct http_request *req, struct http_reply *rep);
void op_register_certificate(struct http_request *req, struct http_reply *rep);
void op_register_certificate_without_ca(struct http_request *req, struct http_reply *rep);
void op_list_certificates_by_ca(struct http_request *req, struct http_reply *rep);
/* Re-syncs the broker's capath after a change to what TLS trusts; false + 500 on failure. */
bool trust_sync(struct http_request *req, struct http_reply *rep);
/* api_misc.c */
void op_describe_endpoint(struct http_request *req, struct http_reply *rep);
void op_describe_event_configurations(struct http_request *req, struct http_reply *rep);
void op_update_event_configurations(struct http_request *req, struct http_reply *rep);
void op_iotmock_health(struct http_request *req, struct http_reply *rep);
void op_iotmock_root_ca(struct http_request *req, struct http_reply *rep);
void op_iotmock_reset(struct http_request *req, struct http_reply *rep);

/* Shared by api_certs.c and api_templates.c: a certificate issued for a new RSA-2048 key, as
 * PEM texts (owned; issued_clear() frees them, cleansing the private key first). */
struct issued {
    char id[CA_ID_LEN + 1];
    char *cert_pem;
    char *public_pem;
    char *private_pem;
};
void issued_clear(struct issued *i);
/* Generates the key and the certificate; stores nothing. */
bool issue_with_new_key(struct http_request *req, struct http_reply *rep, struct issued *out);
/* {"PublicKey","PrivateKey"}: capitalised, unlike every other member of the API (§6.5). */
cJSON *key_pair_json(const struct issued *i);

#endif
