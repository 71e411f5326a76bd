/* Just-in-time registration and provisioning, and the registration of device certificates
 * signed by the account's own CAs (shared/spec/provisioning.md §3, §4.4-§4.6;
 * broker-and-policy.md §3.5): what AWS IoT Core does when a device presents a client
 * certificate it does not know yet, the $aws/events/certificates/registered/<caCertificateId>
 * event, JITP's template evaluation from the certificate subject, RegisterCertificate and
 * RegisterCertificateWithoutCA. The CA certificates themselves are emulator/cacert.h.
 *
 * No broker and no socket here: jit_connect() returns an action the broker adapter carries out
 * (refuse, publish, provision), and the control plane maps the register calls to HTTP. */
#ifndef IOTMOCK_JIT_H
#define IOTMOCK_JIT_H

#include <stdbool.h>
#include <stddef.h>

#include <cjson/cJSON.h>
#include <openssl/x509.h>

#include "ca.h"
#include "cacert.h"
#include "err.h"
#include "registry.h"

#define JIT_REGISTERED_TOPIC_PREFIX "$aws/events/certificates/registered/"
#define JIT_CHAIN_MAX 10                /* certificates read from one chained PEM */
#define JIT_EVENT_TYPE "CA_CERTIFICATE" /* event configuration key of the registered event */

/* The JITP built-in parameters (§2.6, §3.3). */
#define JIT_PARAM_PREFIX "AWS::IoT::Certificate::"
#define JIT_PARAM_ID "AWS::IoT::Certificate::Id"

/* Choices the spec leaves to the emulator; zero is the recommended default of each. */
struct jit_config {
    const char *account_id; /* awsAccountId of the event; "123456789012" when NULL */
    /* §4.4: certificateRegistrationTimestamp is a string of epoch milliseconds; MiniStack's
     * measurement on AWS (shared/spec/anchors.md) saw null. true writes null. */
    bool registration_timestamp_null;
    /* §3.2 item 7 recommends publishing the registered event for JITP too; true does not. */
    bool jitp_without_event;
    /* §2.1 says a disabled template must not provision; AWS's JITP walkthroughs create the JITP
     * template without --enabled, so by default the flag is not required of a template named by
     * a CA's registrationConfig. true requires it. */
    bool jitp_requires_enabled;
};

/* What the broker adapter does with a client certificate at CONNECT. */
enum jit_action {
    JIT_ACCEPT,                   /* a registered ACTIVE certificate: go on with iot:Connect */
    JIT_REFUSE,                   /* refuse the connection; nothing to publish */
    JIT_REFUSE_AND_PUBLISH_EVENT, /* JITR: publish decision.event, refuse the connection */
    JIT_PROVISION_THEN_REFUSE,    /* JITP: refuse the connection, publish decision.event when it
                                     has a topic, and run jit_provision(cert_id) off the event
                                     loop; the device reconnects once it is ACTIVE (§3.2 item 5) */
};
/* "ACCEPT", "REFUSE", ... (static), for logs. */
const char *jit_action_name(enum jit_action a);

/* A message to publish: both strings malloc'd and NUL-terminated. */
struct jit_event {
    char *topic;
    char *payload;
    size_t payload_len;
};
void jit_event_clear(struct jit_event *e);

struct jit_decision {
    enum jit_action action;
    char cert_id[CA_ID_LEN + 1];
    char ca_id[CA_ID_LEN + 1]; /* the registered CA involved; "" when none */
    bool registered;           /* this call registered the certificate (PENDING_ACTIVATION) */
    struct jit_event event;    /* topic NULL when there is nothing to publish */
    char reason[192];          /* one line for the adapter's log */
};
void jit_decision_clear(struct jit_decision *d);

/* The CONNECT decision for the client certificate CERT, with CHAIN the other certificates the
 * client presented (may be NULL; may or may not start with CERT), at NOW_MS (epoch ms):
 *   registered and ACTIVE                                   ACCEPT (even if its CA is now
 *                                                           INACTIVE: §4.3)
 *   registered PENDING_ACTIVATION, its CA ACTIVE + ENABLE   REFUSE_AND_PUBLISH_EVENT (the event
 *                                                           again, on every retry: §4.4 item 3)
 *   registered in any other state                           REFUSE
 *   unknown, its issuer a registered CA (subject = issuer and the CA's key verifies the
 *   signature; a CA that is in CHAIN wins when several match) that is ACTIVE with
 *   autoRegistrationStatus ENABLE, the certificate within its validity:
 *     registered PENDING_ACTIVATION with that caCertificateId, then
 *     the CA has a template (registrationConfig templateBody or templateName)
 *                                                           PROVISION_THEN_REFUSE
 *     else                                                  REFUSE_AND_PUBLISH_EVENT
 *   unknown otherwise (no registered issuer, CA INACTIVE or DISABLE, expired)  REFUSE
 * When the account's CA_CERTIFICATE event configuration was explicitly disabled (§5.3: default
 * on) there is no event: REFUSE instead of REFUSE_AND_PUBLISH_EVENT, PROVISION_THEN_REFUSE with
 * no topic. The registered certificate's PEM is CERT alone, re-encoded. The certificate
 * registration timestamp is the registry's (seconds) x 1000, so a retry's event repeats the first
 * one's. Errors (IOT_ERR_*) only when the registry or the store failed: *out is then REFUSE.
 * The caller clears *out. Runs on the broker thread: one registry read, a store read, signature
 * checks, and at most one registry insert. */
enum iot_err jit_connect(struct cacert_store *s, struct registry *reg, const struct jit_config *cfg,
                         X509 *cert, STACK_OF(X509) * chain, long long now_ms,
                         struct jit_decision *out, struct iot_error *err);

/* The payload of $aws/events/certificates/registered/<caCertificateId> (§4.4), fields in AWS's
 * order: certificateId, caCertificateId, timestamp (number, ms), certificateStatus
 * ("PENDING_ACTIVATION"), awsAccountId (string), certificateRegistrationTimestamp (string of
 * epoch ms, or null per cfg). Fills *out (cleared first). */
enum iot_err jit_registered_event(const struct jit_config *cfg, const char *cert_id,
                                  const char *ca_id, long long timestamp_ms,
                                  long long registered_ms, struct jit_event *out);

/* JITP (§3.2 item 4): evaluates the template of the registrationConfig of certificate CERT_ID's
 * CA with the parameters of its subject and applies it (template_render(), template_apply()), so
 * that the certificate ends ACTIVE (or as the template says) with its thing, policies and
 * attachments. The certificate must be PENDING_ACTIVATION (else IOT_ERR_CERT_STATE) and
 * registered under a CA with a template (else IOT_ERR_NOT_FOUND). A failure (a declared parameter
 * the subject lacks, a missing thing type, a template gone or not of type JITP...) changes
 * nothing: the certificate stays PENDING_ACTIVATION, as §3.2 item 6 recommends, and err says why
 * for the log (AWS reports it only in CloudWatch). A later connection republishes the event but
 * does not provision again (the template is evaluated when the certificate is registered). May
 * run on any thread. */
enum iot_err jit_provision(struct cacert_store *s, struct registry *reg,
                           const struct jit_config *cfg, const char *cert_id,
                           struct iot_error *err);

/* The JITP parameters of CERT (§3.3): AWS::IoT::Certificate::CommonName (CN), ::Country (C),
 * ::Organization (O), ::OrganizationalUnit (OU), ::DistinguishedNameQualifier (dnQualifier),
 * ::StateName (ST), ::SerialNumber (the subject's serialNumber attribute, not the certificate's
 * serial), each the first value of its attribute as UTF-8 and absent when the subject has none,
 * and ::Id = CERT_ID. *out = new object (caller cJSON_Delete()s). */
enum iot_err jit_subject_params(X509 *cert, const char *cert_id, cJSON **out);

/* ---- RegisterCertificate / RegisterCertificateWithoutCA (§4.6) -------------------------- */
struct jit_register_request {
    const char *cert_pem; /* may be a chain: the first certificate is the device's */
    size_t cert_pem_len;
    const char *ca_pem; /* caCertificatePem, RegisterCertificate only; NULL/0 when absent */
    size_t ca_pem_len;
    const char *status; /* NULL: ACTIVE if set_as_active, else INACTIVE */
    bool set_as_active; /* deprecated by AWS; status wins when both are given */
};

/* RegisterCertificate: refusals in this order:
 *   certificatePem unreadable, over CACERT_PEM_MAX, expired, not yet valid
 *                                                         CertificateValidation
 *   status not ACTIVE/INACTIVE/REVOKED: PENDING_ACTIVATION, PENDING_TRANSFER, REGISTER_INACTIVE
 *     CertificateState (406; AWS measured for PENDING_ACTIVATION); anything else InvalidRequest
 *   caCertificatePem given but unreadable                 CertificateValidation
 *   caCertificatePem given but not registered, or not the signer  CertificateValidation
 *   no registered CA signed it                            CertificateValidation
 *   several registered CAs (same subject and key) signed it and caCertificatePem does not say
 *     which                                               CertificateConflict
 *   the signing CA is INACTIVE ([REGCA]: it must be ACTIVE)  CertificateState
 *   already registered                                    ResourceAlreadyExists (resource_id)
 * Then registers it with that caCertificateId. Publishes no event (anchors: measured). */
enum iot_err jit_register_certificate(struct cacert_store *s, struct registry *reg,
                                      const struct jit_register_request *rq, char id[CA_ID_LEN + 1],
                                      struct cacert_error *err);

/* RegisterCertificateWithoutCA: the same certificate and status checks (ca_pem is ignored), no
 * CA lookup, caCertificateId "". A self-signed certificate is also added to the store's trusted
 * device certificates, so that jit_trusted_pems() puts it in the capath. */
enum iot_err jit_register_certificate_without_ca(struct cacert_store *s, struct registry *reg,
                                                 const struct jit_register_request *rq,
                                                 char id[CA_ID_LEN + 1], struct cacert_error *err);

/* ---- the capath's contents -------------------------------------------------------------- */
struct jit_pems {
    char **pems;
    size_t n;
};
void jit_pems_clear(struct jit_pems *p);

/* What the TLS layer must trust (emulator/capath.h): ROOT_PEM (iotmock's root CA; may be NULL),
 * every registered CA (whatever its status: certificates registered under an INACTIVE CA keep
 * working, §4.3, and the adapter refuses the rest at CONNECT), and the trusted device
 * certificates still in the registry (ids whose certificate was deleted are dropped from the
 * store here). Fills *out (caller clears). */
enum iot_err jit_trusted_pems(struct cacert_store *s, struct registry *reg, const char *root_pem,
                              struct jit_pems *out, struct iot_error *err);

/* Brings the hashed directory DIR (emulator/capath.h) in line with jit_trusted_pems(), the root
 * CA read from ROOT_PEM_PATH (a missing file counts as none). Every change that affects trust
 * calls it before it answers; a process-wide lock makes the syncs of the HTTP threads and the
 * broker thread take turns. */
enum iot_err jit_sync_capath(struct cacert_store *s, struct registry *reg,
                             const char *root_pem_path, const char *dir, struct iot_error *err);

#endif
