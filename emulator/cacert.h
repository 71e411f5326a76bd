/* Bring-your-own CA (shared/spec/provisioning.md §4.1-§4.3, §4.8, §6.4): the account's
 * registration code, the CA certificates it registers (RegisterCACertificate,
 * UpdateCACertificate, DescribeCACertificate, ListCACertificates, DeleteCACertificate) and the
 * storage behind them. What happens when a device presents a certificate one of these CAs signed
 * (JITR, JITP) is emulator/jit.h.
 *
 * Storage: the module keeps its own tables (ca_certificates, registration_code,
 * trusted_device_certificates) through its own SQLite connection. Give it the registry's file,
 * opened AFTER registry_open() (the registry refuses a file it did not create first): the tables
 * then live in the one file an operator backs up, and registry_reset() empties them too, as it
 * empties every table of its file. A separate connection rather than the registry's handle
 * because the registry's transactions (registry_begin() ... registry_commit()) hold its handle
 * across calls: statements of ours on the same handle would silently join them. SQLite's WAL and
 * busy timeout arbitrate between the two connections.
 *
 * Threads: every call locks the store; one store may serve the broker thread and the HTTP
 * thread. */
#ifndef IOTMOCK_CACERT_H
#define IOTMOCK_CACERT_H

#include <stdbool.h>
#include <stddef.h>

#include <cjson/cJSON.h>
#include <openssl/x509.h>

#include "ca.h"
#include "err.h"
#include "registry.h"

#define CACERT_CODE_LEN 64         /* registration code: lowercase hex (§0.2, §4.1) */
#define CACERT_PEM_MAX 65536       /* bytes of any PEM a client sends us */
#define CACERT_SAME_SUBJECT_MAX 10 /* CA certificates with one subject per account (§4.2) */
#define CACERT_ROLE_ARN_MIN 20     /* registrationConfig.roleArn length (§3.1) */
#define CACERT_ROLE_ARN_MAX 2048
#define CACERT_LIST_MAX 250 /* ListCACertificates pageSize cap */

enum cacert_status { CACERT_STATUS_ACTIVE, CACERT_STATUS_INACTIVE };
enum cacert_auto { CACERT_AUTO_DISABLE, CACERT_AUTO_ENABLE };
enum cacert_mode { CACERT_MODE_DEFAULT, CACERT_MODE_SNI_ONLY };

/* AWS's spellings ("ACTIVE", "ENABLE", "SNI_ONLY"...), static strings. */
const char *cacert_status_name(enum cacert_status s);
const char *cacert_auto_name(enum cacert_auto a);
const char *cacert_mode_name(enum cacert_mode m);
/* Exact, case-sensitive matches of those spellings (AWS's enums are); false otherwise. The
 * deprecated CA status REGISTER_INACTIVE is refused (§4.3). */
bool cacert_status_parse(const char *s, enum cacert_status *out);
bool cacert_auto_parse(const char *s, enum cacert_auto *out);
bool cacert_mode_parse(const char *s, enum cacert_mode *out);

/* ---- refusals -------------------------------------------------------------------------- */
/* The AWS exception of a refusal (§6.3). err.h has no code for several of them, so a refusal
 * carries both: base.code (the nearest iot_err, for logs and generic edges) and the exception
 * the control plane must send. The mapping, with the modeled HTTP status:
 *   CACERT_EXC_INVALID_REQUEST         InvalidRequestException              400
 * IOT_ERR_INVALID_REQUEST CACERT_EXC_CERTIFICATE_VALIDATION  CertificateValidationException 400
 * IOT_ERR_INVALID_REQUEST CACERT_EXC_REGISTRATION_CODE       RegistrationCodeValidationException
 * 400 IOT_ERR_INVALID_REQUEST CACERT_EXC_NOT_FOUND               ResourceNotFoundException 404
 * IOT_ERR_NOT_FOUND CACERT_EXC_CERTIFICATE_STATE       CertificateStateException            406
 * IOT_ERR_CERT_STATE CACERT_EXC_ALREADY_EXISTS          ResourceAlreadyExistsException       409
 * IOT_ERR_ALREADY_EXISTS CACERT_EXC_CERTIFICATE_CONFLICT    CertificateConflictException 409
 * IOT_ERR_CONFLICT CACERT_EXC_LIMIT_EXCEEDED          LimitExceededException               410
 * IOT_ERR_INVALID_REQUEST CACERT_EXC_INTERNAL                InternalFailureException 500
 * IOT_ERR_IO/NOMEM/INTERNAL The HTTP edge replies with cacert_exception_status(),
 * cacert_exception_name() and base.message; for ResourceAlreadyExistsException also resourceId =
 * resource_id (and the ARN it builds from it). */
enum cacert_exception {
    CACERT_EXC_NONE,
    CACERT_EXC_INVALID_REQUEST,
    CACERT_EXC_CERTIFICATE_VALIDATION,
    CACERT_EXC_REGISTRATION_CODE,
    CACERT_EXC_NOT_FOUND,
    CACERT_EXC_CERTIFICATE_STATE,
    CACERT_EXC_ALREADY_EXISTS,
    CACERT_EXC_CERTIFICATE_CONFLICT,
    CACERT_EXC_LIMIT_EXCEEDED,
    CACERT_EXC_INTERNAL,
};
const char *cacert_exception_name(enum cacert_exception x);    /* "" for CACERT_EXC_NONE */
unsigned int cacert_exception_status(enum cacert_exception x); /* 200 for CACERT_EXC_NONE */

struct cacert_error {
    struct iot_error base;
    enum cacert_exception exception;
    char resource_id[CA_ID_LEN + 1]; /* ResourceAlreadyExistsException: the id that exists */
};

/* Sets E (if not NULL): the exception, its iot_err, the message. Returns that iot_err. */
enum iot_err cacert_fail(struct cacert_error *e, enum cacert_exception x, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- the store ------------------------------------------------------------------------- */
struct cacert_store;

/* Opens PATH (the registry file, after registry_open(); or ":memory:") and creates the tables
 * when absent. A file whose user_version is 0 (not made by registry_open()) gives IOT_ERR_IO.
 * On success the caller frees *out with cacert_store_close(). */
enum iot_err cacert_store_open(const char *path, struct cacert_store **out, struct iot_error *err);
void cacert_store_close(struct cacert_store *s);
/* Empties the store's tables (registry_reset() does it too when they share a file). */
enum iot_err cacert_store_reset(struct cacert_store *s, struct iot_error *err);

/* ---- registration code (§4.1) ---------------------------------------------------------- */
/* GetRegistrationCode: the account's code, created (32 random bytes as hex) on first use and then
 * the same on every call until deleted. */
enum iot_err cacert_registration_code(struct cacert_store *s, char out[CACERT_CODE_LEN + 1],
                                      struct iot_error *err);
/* DeleteRegistrationCode: IOT_ERR_NOT_FOUND (ResourceNotFoundException) when there is none.
 * Already registered CAs are not affected; the next cacert_registration_code() makes a new one. */
enum iot_err cacert_registration_code_delete(struct cacert_store *s, struct iot_error *err);

/* ---- CA certificates ------------------------------------------------------------------- */
struct cacert {
    char id[CA_ID_LEN + 1];
    char *pem; /* owned */
    enum cacert_status status;
    enum cacert_auto auto_registration;
    cJSON *registration_config; /* owned; {templateBody?, roleArn?, templateName?}; NULL unset */
    enum cacert_mode mode;
    long long not_before, not_after; /* validity, epoch seconds */
    long long customer_version;      /* 1 at registration, +1 per update */
    char generation_id[37];          /* a new UUID per change */
    long long created, modified;     /* epoch seconds */
};
/* Frees what C owns and zeroes it; NULL and cleared records are fine. */
void cacert_clear(struct cacert *c);
void cacert_array_free(struct cacert *a, size_t n);

/* RegisterCACertificate (§4.2). Members are the request's; lengths are explicit, texts need not
 * be NUL-terminated. An absent verification certificate is NULL or length 0; an absent
 * registrationConfig is NULL or a JSON null. */
struct cacert_request {
    const char *ca_pem;
    size_t ca_pem_len;
    const char *verification_pem;
    size_t verification_pem_len;
    const cJSON *registration_config;
    const char *certificate_mode; /* NULL = DEFAULT */
    bool set_as_active;
    bool allow_auto_registration;
};

/* Checks in this order, each refusal with its exception:
 *   certificateMode unknown                                         InvalidRequest
 *   caCertificate over CACERT_PEM_MAX or not a PEM certificate       CertificateValidation
 *   not a CA (basicConstraints CA:TRUE), malformed extensions        CertificateValidation
 *   expired or not yet valid                                        CertificateValidation
 *   DEFAULT: verificationCertificate missing                         InvalidRequest
 *            unreadable, expired, not signed by the CA's key          CertificateValidation
 *            no registration code, or its subject CN is not the code  RegistrationCodeValidation
 *   SNI_ONLY: verificationCertificate present                        InvalidRequest
 *   registrationConfig invalid (see cacert_config_check())           InvalidRequest/NotFound
 *   the same certificate already registered                          ResourceAlreadyExists
 *   CACERT_SAME_SUBJECT_MAX CAs with this subject already            LimitExceeded
 * Then stores it INACTIVE unless set_as_active, DISABLE unless allow_auto_registration, and
 * writes its id (SHA-256 of the DER, §4.7) to ID. REG (may be NULL: not checked) resolves a
 * registrationConfig.templateName. */
enum iot_err cacert_register(struct cacert_store *s, struct registry *reg,
                             const struct cacert_request *rq, char id[CA_ID_LEN + 1],
                             struct cacert_error *err);

/* A registrationConfig (§3.1): a JSON object whose known members are strings: templateBody (at
 * most TEMPLATE_BODY_MAX characters, a valid template), roleArn (CACERT_ROLE_ARN_MIN..MAX),
 * templateName (a valid name; with REG, a template that exists - else ResourceNotFound - of type
 * JITP). Not both templateBody and templateName (iotmock's choice: AWS documents them as
 * alternatives). Unknown members are ignored and not stored. */
enum iot_err cacert_config_check(struct registry *reg, const cJSON *config,
                                 struct cacert_error *err);

/* UpdateCACertificate (§4.3). NULL members leave the field as it is. removeAutoRegistration
 * clears the registrationConfig (how a CA goes from JITP to JITR) and may not come with one. */
struct cacert_update {
    const char *new_status;            /* "ACTIVE" | "INACTIVE" */
    const char *new_auto_registration; /* "ENABLE" | "DISABLE" */
    const cJSON *registration_config;
    bool remove_auto_registration;
};
/* Refusals: unknown id ResourceNotFound; bad values InvalidRequest (REGISTER_INACTIVE too). */
enum iot_err cacert_update(struct cacert_store *s, struct registry *reg, const char *id,
                           const struct cacert_update *u, struct cacert_error *err);

/* DescribeCACertificate. ResourceNotFound when unknown. The caller clears *out. */
enum iot_err cacert_get(struct cacert_store *s, const char *id, struct cacert *out,
                        struct cacert_error *err);

/* DeleteCACertificate: CertificateStateException while ACTIVE (§4.3; mirrors DeleteCertificate,
 * §4.8), ResourceNotFound when unknown. Device certificates registered under it keep their
 * caCertificateId. */
enum iot_err cacert_delete(struct cacert_store *s, const char *id, struct cacert_error *err);

/* ListCACertificates: at most LIMIT (1..CACERT_LIST_MAX, 0 = the max) CAs by creation, after the
 * cursor AFTER (NULL or "" = from the start; opaque, handed back unchanged), optionally only those
 * whose registrationConfig.templateName is TEMPLATE_NAME. *out = new array of
 * {"id","status","created","mode"} (caller cJSON_Delete()s); *next = malloc'd cursor of the next
 * page or NULL at the end (caller free()s). */
enum iot_err cacert_list(struct cacert_store *s, const char *template_name, const char *after,
                         int limit, bool descending, cJSON **out, char **next,
                         struct iot_error *err);

/* Registered CAs whose subject is NAME, oldest first (JITR and RegisterCertificate look for a
 * device certificate's issuer here). *out is a malloc'd array of *n records, NULL when none;
 * free with cacert_array_free(). */
enum iot_err cacert_find_by_subject(struct cacert_store *s, const X509_NAME *name,
                                    struct cacert **out, size_t *n, struct iot_error *err);

/* *out = new array of the PEMs of every registered CA, in id order (capath). */
enum iot_err cacert_pems(struct cacert_store *s, cJSON **out, struct iot_error *err);

/* ---- device certificates trusted without a CA ------------------------------------------ */
/* Self-signed device certificates registered with RegisterCertificateWithoutCA are their own
 * issuer: the TLS layer must trust them one by one (emulator/capath.h). Only their ids are kept
 * here; the PEM stays in the registry. add is idempotent. */
enum iot_err cacert_trust_add(struct cacert_store *s, const char *cert_id, struct iot_error *err);
enum iot_err cacert_trust_remove(struct cacert_store *s, const char *cert_id,
                                 struct iot_error *err);
/* *out = new array of the ids, sorted. */
enum iot_err cacert_trust_ids(struct cacert_store *s, cJSON **out, struct iot_error *err);

/* ---- device certificate modes ---------------------------------------------------------- */
/* A device certificate's certificateMode (§3.2 item 9, §4.6): SNI_ONLY when registered without a
 * CA or under an SNI_ONLY CA, else DEFAULT. Only the SNI_ONLY ones are kept; set is idempotent and
 * DEFAULT forgets the id. cacert_device_mode() answers DEFAULT for unknown ids and on errors. */
enum iot_err cacert_device_mode_set(struct cacert_store *s, const char *cert_id,
                                    enum cacert_mode mode, struct iot_error *err);
enum cacert_mode cacert_device_mode(struct cacert_store *s, const char *cert_id);

#endif
