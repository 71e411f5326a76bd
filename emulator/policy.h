/* The AWS IoT policy engine (shared/spec/broker-and-policy.md §2): compile a policy document once,
 * describe a connection once, then decide every Connect/Publish/Subscribe/Receive/RetainPublish
 * against the policies that apply to it. Also the reserved-topic rules that hold whatever a
 * policy says (§6, §8.3 item 8).
 *
 * Nothing here knows the broker: the plugin builds a struct policy_context per connection (client
 * ID, thing association, certificate), an ARN per request (policy_arn_for()), and maps the
 * decision onto Mosquitto's answer (§3, §8.1-8.2).
 *
 * Thread-safety: a compiled policy is read-only and may be evaluated from several threads at once;
 * a context is read-only during evaluation. */
#ifndef IOTMOCK_POLICY_H
#define IOTMOCK_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include <openssl/x509.h>

#include "err.h"

/* AWS's limits (§2.1). */
#define POLICY_DOC_MAX_CHARS 2048   /* characters of the document, whitespace excluded */
#define POLICY_DOC_MAX_BYTES 404600 /* the policyDocument field itself, whitespace included */
#define POLICY_NAME_MAX 128         /* [\w+=,.@-]{1,128} */
#define POLICY_VERSION_CURRENT "2012-10-17"
#define POLICY_VERSION_OLD "2008-10-17" /* IAM: no policy variables in this version */
#define POLICY_ATTACHED_MAX 10          /* policies per certificate (LIM-OLD, UNCONFIRMED) */

/* Certificate variables (§2.4): arrays keep their first 5 values, longer strings and strings
 * holding a wildcard character are never substituted into a policy. */
#define POLICY_CERT_VALUES_MAX 5
#define POLICY_VAR_VALUE_MAX 1024

#define POLICY_ARN_MAX 1024 /* arn:aws:iot:<region>:<account>:topicfilter/$share/<128>/<256>... */
#define POLICY_EXPLANATION_MAX 768

enum policy_action {
    /* The MQTT data plane (§2.2). */
    POLICY_ACTION_CONNECT = 0,
    POLICY_ACTION_PUBLISH,
    POLICY_ACTION_SUBSCRIBE,
    POLICY_ACTION_RECEIVE,
    POLICY_ACTION_RETAIN_PUBLISH,
    /* HTTP data-plane actions, so that `iot:*Shadow`-style patterns compile to the right set. */
    POLICY_ACTION_GET_RETAINED_MESSAGE,
    POLICY_ACTION_LIST_RETAINED_MESSAGES,
    POLICY_ACTION_GET_THING_SHADOW,
    POLICY_ACTION_UPDATE_THING_SHADOW,
    POLICY_ACTION_DELETE_THING_SHADOW,
    POLICY_ACTION_LIST_NAMED_SHADOWS_FOR_THING,
    POLICY_ACTION_DESCRIBE_JOB_EXECUTION,
    POLICY_ACTION_GET_PENDING_JOB_EXECUTIONS,
    POLICY_ACTION_UPDATE_JOB_EXECUTION,
    POLICY_ACTION_START_NEXT_PENDING_JOB_EXECUTION,
    POLICY_ACTION_ASSUME_ROLE_WITH_CERTIFICATE,
    POLICY_ACTION_COUNT
};

enum policy_effect {
    POLICY_DENY_IMPLICIT = 0, /* no statement allowed it (the default) */
    POLICY_ALLOW,
    POLICY_DENY_EXPLICIT, /* a Deny statement matched: it wins over every Allow */
};

/* What a resource ARN names (§2.2): client/<id> for Connect, topicfilter/<filter> for Subscribe,
 * topic/<name> for the rest. */
enum policy_resource_type {
    POLICY_RESOURCE_CLIENT,
    POLICY_RESOURCE_TOPIC,
    POLICY_RESOURCE_TOPICFILTER,
};

/* "iot:Publish"...; NULL for a value out of range. Static strings. */
const char *policy_action_name(enum policy_action a);
/* Parses "iot:Publish" (case-insensitively, as AWS matches action names). false if unknown. */
bool policy_action_parse(const char *name, enum policy_action *out);
/* "ALLOW", "DENY_IMPLICIT", "DENY_EXPLICIT". */
const char *policy_effect_name(enum policy_effect e);

/* ---- compiling -------------------------------------------------------------------------- */

struct policy; /* a compiled, immutable policy document */

/* true if NAME is a valid policy name ([\w+=,.@-]{1,128}). */
bool policy_name_valid(const char *name);

/* Compiles the document TEXT (LEN bytes, need not be NUL-terminated) of the policy NAME.
 * Refuses, with IOT_ERR_INVALID_REQUEST and a sentence naming the problem (what AWS reports as
 * MalformedPolicyException): an invalid name, more than POLICY_DOC_MAX_BYTES bytes or
 * POLICY_DOC_MAX_CHARS non-whitespace characters, invalid JSON, a Version other than 2012-10-17 /
 * 2008-10-17, no Statement, an unknown or duplicated field, Principal, a bad Effect, both or
 * neither of Action/NotAction or Resource/NotResource, an action not of the form service:name,
 * a resource neither "*" nor an ARN, an unknown condition operator, a condition value that does
 * not fit its operator (number, date, IP/CIDR, boolean). IOT_ERR_NOMEM when memory runs out.
 * On success *out is owned by the caller: free with policy_free(). */
enum iot_err policy_compile(const char *name, const char *text, size_t len, struct policy **out,
                            struct iot_error *err);
void policy_free(struct policy *p);

/* Borrowed; valid until policy_free(). */
const char *policy_name(const struct policy *p);
size_t policy_statement_count(const struct policy *p);
/* Whether a decision of P can change with the time alone (a condition or variable on
 * aws:CurrentTime or aws:EpochTime): such decisions cannot be remembered. */
bool policy_varies_with_time(const struct policy *p);

/* ---- the connection: values of policy variables and condition keys (§2.4, §2.5) ----------- */

struct policy_attr {
    const char *name; /* thing attribute name, case-sensitive */
    const char *value;
};

enum policy_bool { POLICY_BOOL_ABSENT = 0, POLICY_BOOL_FALSE, POLICY_BOOL_TRUE };

/* iot:ConnectAttributes (§2.5), a set; only present on iot:Connect. */
#define POLICY_CONNECT_PERSISTENT                                                                  \
    0x1u /* "PersistentConnect": a session that outlives the connection */
#define POLICY_CONNECT_LAST_WILL 0x2u /* "LastWill": the CONNECT carries a will */

struct policy_cert; /* certificate variables; see policy_context_from_cert() */

/* Filled by the caller once per connection, read-only during evaluation. Every pointer is
 * borrowed and must outlive the evaluations, except cert (see below). A NULL string is an absent
 * key: a variable naming it stays unresolved (§2.4). */
struct policy_context {
    const char *region;      /* for iot:LastWillTopic's ARN; "us-east-1" */
    const char *account;     /* "123456789012" */
    const char *client_id;   /* iot:ClientId */
    const char *source_ip;   /* aws:SourceIp */
    const char *domain_name; /* iot:DomainName */

    /* §1.4: the caller decides whether the connection is associated with a thing (client ID ==
     * name and certificate attached, or exclusive association). The thing variables
     * (iot:Connection.Thing.ThingName, .ThingTypeName, .Attributes[x]) resolve only when true. */
    bool thing_associated;
    const char *thing_name;
    const char *thing_type_name; /* NULL when the thing has no type */
    const struct policy_attr *thing_attributes;
    size_t n_thing_attributes;
    /* iot:Connection.Thing.IsAttached, independent of thing_associated (§2.4): FALSE when a thing
     * named like the client ID exists but is not attached to the certificate. */
    enum policy_bool is_attached;

    const char
        *certificate_id; /* iot:CertificateId; NULL: the id policy_context_from_cert() computed */
    unsigned
        connect_attributes; /* POLICY_CONNECT_* bits; iot:ConnectAttributes on iot:Connect only */
    const char *last_will_topic; /* the will's topic name; iot:LastWillTopic on iot:Connect only */
    time_t now; /* aws:CurrentTime / aws:EpochTime; 0: the clock at each evaluation */
    /* A Not operator (StringNotEquals, ArnNotLike, NotIpAddress...) on a key absent from the
     * request: false holds it true, as IAM documents (the default); true makes it false, as
     * broker-and-policy.md §2.5 reads it. IfExists, Null and the set operators are unaffected. */
    bool negated_absent_false;

    /* Owned by the context: set by policy_context_from_cert() / policy_context_cert_add(),
     * freed by policy_context_cleanup(). */
    struct policy_cert *cert;
};

/* Zeroes CTX. */
void policy_context_init(struct policy_context *ctx);
/* Frees what the context owns (the certificate variables) and zeroes it. NULL-safe. */
void policy_context_cleanup(struct policy_context *ctx);

/* Fills the certificate variables from X (which stays the caller's): subject and issuer attributes
 * (iot:Certificate.Subject.CommonName ... GenerationQualifier, every value in order, at most
 * POLICY_CERT_VALUES_MAX each), subject and issuer alternative names (RFC822Name, DNSName,
 * DirectoryName, UniformResourceIdentifier, IPAddress), the serial number in decimal, the
 * validity dates and the certificate id. Values are stored the way a policy must write them:
 * , " \ + = < > ; are backslash-escaped (§2.4); DirectoryName is rendered like
 * "cn=Device,ou=Unit,o=Org,c=US". Replaces any certificate variables the context had.
 * IOT_ERR_NOMEM or IOT_ERR_INTERNAL (OpenSSL failed) on error, leaving ctx->cert NULL. */
enum iot_err policy_context_from_cert(struct policy_context *ctx, X509 *x, struct iot_error *err);

/* Appends one raw VALUE to the certificate field FIELD, named as in the variable without its
 * "iot:Certificate." prefix: "Subject.CommonName", "Issuer.AlternativeName.DNSName",
 * "SerialNumber"... (escaped as above; DirectoryName and SerialNumber are stored as given).
 * Values past POLICY_CERT_VALUES_MAX are ignored, as AWS ignores them. For certificates that do
 * not come as an X509 and for tests. IOT_ERR_INVALID_REQUEST for an unknown field. */
enum iot_err policy_context_cert_add(struct policy_context *ctx, const char *field,
                                     const char *value, struct iot_error *err);

/* The INDEX-th stored value of FIELD (named as for policy_context_cert_add()), or NULL.
 * Borrowed; valid until the context's certificate variables change. */
const char *policy_context_cert_get(const struct policy_context *ctx, const char *field,
                                    size_t index);
/* The certificate's validity, when policy_context_from_cert() read one. AWS documents no policy
 * variable for it; it is kept for the caller (expiry checks, logs). */
bool policy_context_cert_validity(const struct policy_context *ctx, time_t *not_before,
                                  time_t *not_after);

/* ---- resources ------------------------------------------------------------------------- */

enum policy_resource_type policy_action_resource_type(enum policy_action a);

/* Writes "arn:aws:iot:<region>:<account>:<client|topic|topicfilter>/<name>" (NAME is NAME_LEN
 * bytes, used exactly as sent: `+`, `#` and `$` included) into BUF of SIZE bytes, NUL-terminated.
 * Returns the ARN's length; when that is >= SIZE nothing is written but BUF[0] = '\0' (when
 * SIZE > 0), like a refused snprintf. */
size_t policy_arn_build(char *buf, size_t size, const char *region, const char *account,
                        enum policy_resource_type type, const char *name, size_t name_len);
/* The same with the region and account of CTX and the resource type ACTION is checked against. */
size_t policy_arn_for(char *buf, size_t size, const struct policy_context *ctx,
                      enum policy_action action, const char *name, size_t name_len);

/* ---- evaluating ------------------------------------------------------------------------ */

struct policy_decision {
    enum policy_effect effect;
    /* The deciding policy (borrowed from it; valid until policy_free()) and the 0-based index of
     * the deciding statement in its Statement list; NULL and -1 for an implicit deny. For ALLOW
     * this is the first statement that allowed, in the order the policies were given. */
    const char *policy;
    int statement;
    /* Statements whose action matched and were examined further: evaluation cost is linear in
     * the statements of the policies passed in, and policies with no statement for the action
     * are skipped at once. */
    unsigned statements_evaluated;
    /* One line for logs: effect, action, resource, the deciding statement or "no statement
     * allowed it", the policies considered, and the values of the variables and condition keys
     * the examined statements use. Always NUL-terminated; truncated lines end in "...". */
    char explanation[POLICY_EXPLANATION_MAX];
};

/* Decides ACTION on RESOURCE (the full ARN, RESOURCE_LEN bytes) for the connection CTX under the
 * N policies POLICIES (borrowed; NULL entries are skipped), per §2.6: an explicit Deny anywhere
 * wins, else any Allow allows, else deny. Variables are substituted from CTX; an unresolved one
 * stays as its literal ${...} text, and a substituted value never acts as a wildcard (§2.3, §2.4).
 * Allocates nothing. Returns IOT_OK with *out filled, or IOT_ERR_INVALID_REQUEST for an unknown
 * action (then *out is an implicit deny). */
enum iot_err policy_evaluate(const struct policy *const *policies, size_t n,
                             const struct policy_context *ctx, enum policy_action action,
                             const char *resource, size_t resource_len,
                             struct policy_decision *out);

/* ---- reserved topics (§6, §5.4, §8.3 item 8; DG reserved-topics) --------------------------- */

enum policy_reserved {
    POLICY_RESERVED_NONE = 0, /* not a reserved ($) topic: the policies alone decide */
    POLICY_RESERVED_ALLOWED,  /* a reserved topic clients may use this way; policies still apply */
    POLICY_RESERVED_DENIED,   /* refused whatever the policies say */
};

/* Whether ACTION on TOPIC (a topic name; for POLICY_ACTION_SUBSCRIBE the filter as sent,
 * `$share/<group>/` included) is possible at all: clients publish only to the request topics of
 * AWS services (shadow get/update/delete, jobs get/start-next/<id>/get/<id>/update, fleet
 * provisioning create/create-from-csr/provision in json|cbor, defender metrics, stream
 * get/describe, $aws/rules/<rule>...), subscribe only to the topics AWS publishes (responses,
 * deltas, notify, $aws/events/..., tunnels, streams, SiteWise) and to shadow request topics, never
 * retain a message on a `$` topic, and use no other `$` topic. *WHY (if not NULL) receives a static
 * sentence saying which rule applied. */
enum policy_reserved policy_reserved_check(enum policy_action action, const char *topic,
                                           const char **why);

#endif
