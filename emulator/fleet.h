/* The fleet provisioning MQTT API (shared/spec/provisioning.md §1): CreateKeysAndCertificate,
 * CreateCertificateFromCsr and RegisterThing as request -> response, with no broker in sight.
 * The plugin recognises request topics with fleet_topic_parse(), runs fleet_handle() on a worker
 * thread, and publishes the response it returns to the requesting client only. */
#ifndef IOTMOCK_FLEET_H
#define IOTMOCK_FLEET_H

#include <stdbool.h>
#include <stddef.h>

#include "ca.h"
#include "err.h"
#include "keypool.h"
#include "registry.h"
#include "template.h"

/* Topic pieces (§1.1), each with its length. */
#define FLEET_CERT_CREATE_PREFIX "$aws/certificates/create/"
#define FLEET_CERT_CSR_PREFIX "$aws/certificates/create-from-csr/"
#define FLEET_TEMPLATES_PREFIX "$aws/provisioning-templates/"
#define FLEET_PROVISION_PART "/provision/"
#define FLEET_ACCEPTED "/accepted"
#define FLEET_REJECTED "/rejected"
#define FLEET_TOPIC_MAX 160 /* longest: templates prefix + 36 + /provision/json/rejected */

#define FLEET_CSR_MAX 4096          /* characters, as the REST model caps it */
#define FLEET_TOKEN_TTL_DEFAULT 3600 /* seconds (§1.6) */

enum fleet_op {
    FLEET_OP_NONE = 0,
    FLEET_OP_CREATE_KEYS,
    FLEET_OP_CREATE_FROM_CSR,
    FLEET_OP_REGISTER_THING,
};

enum fleet_format {
    FLEET_FORMAT_JSON,
    FLEET_FORMAT_CBOR,
};

enum fleet_topic_kind {
    FLEET_TOPIC_NONE = 0, /* not a fleet provisioning topic */
    FLEET_TOPIC_REQUEST,
    FLEET_TOPIC_ACCEPTED,
    FLEET_TOPIC_REJECTED,
};

struct fleet_topic {
    enum fleet_topic_kind kind;
    enum fleet_op op;
    enum fleet_format format;
    char template_name[TEMPLATE_NAME_MAX + 1]; /* RegisterThing only */
};

/* Classifies TOPIC (NUL-terminated). Any `$aws/certificates/create...` or
 * `$aws/provisioning-templates/...` topic that is not exactly one of the 18 forms of §1.1 is
 * FLEET_TOPIC_NONE (a template name that is not valid included). */
enum fleet_topic_kind fleet_topic_parse(const char *topic, struct fleet_topic *out);

struct fleet_config {
    struct registry *reg;      /* borrowed */
    const struct ca *ca;       /* borrowed */
    const char *region;        /* for ARNs in hook events */
    const char *account_id;
    const char *lambda_endpoint; /* NULL: templates with hooks are refused */
    long token_ttl;            /* seconds */
    long hook_timeout_ms;
    struct keypool *keys;      /* borrowed; NULL: CreateKeysAndCertificate generates its key */
};

struct fleet_request {
    const struct fleet_topic *topic; /* a FLEET_TOPIC_REQUEST */
    const char *request_topic;       /* the topic as published */
    const char *client_id;
    const char *client_cert_id;      /* the requester's certificate id ("" if unknown) */
    const void *payload;
    size_t payload_len;
};

struct fleet_response {
    char topic[FLEET_TOPIC_MAX + 16]; /* request topic + /accepted or /rejected */
    bool accepted;
    char *payload;                    /* malloc'd; freed by fleet_response_clear() */
    size_t payload_len;               /* JSON text, or binary CBOR in a CBOR topic's answer */
    struct iot_error error;           /* why, when rejected (also in the payload) */
};

/* Runs one request to completion: blocking (key generation, hook), so call it on a worker.
 * Always fills OUT with the answer to send (accepted or rejected, same format as the request);
 * returns IOT_OK if OUT is usable, IOT_ERR_NOMEM if not even a rejection could be built. */
enum iot_err fleet_handle(const struct fleet_config *cfg, const struct fleet_request *req,
                          struct fleet_response *out);
void fleet_response_clear(struct fleet_response *r);

/* AWS's rejection shape for an error (§1.8): status code and errorCode string. */
int fleet_status_code(enum iot_err code);
const char *fleet_error_code(enum iot_err code);

/* The permissions a certificate from CreateProvisioningClaim has without any policy attached
 * (§1.11; AWS shows none, UNCONFIRMED which exactly): iot:Connect, and Publish/Receive/Subscribe
 * on the fleet provisioning API of TEMPLATE_NAME only (certificates/create*, its
 * provision topics), as the shipped iotmock-claim-policy grants for fleet-default. A policy
 * document; caller free()s; NULL when out of memory. */
char *fleet_claim_policy_document(const char *region, const char *account_id,
                                  const char *template_name);

#endif
