/* First start and every start: the files a state directory holds (CA, server and claim
 * certificates) and the registry's seed (claim certificate, default policies, templates).
 * Everything is created once and reused afterwards. */
#ifndef IOTMOCK_BOOTSTRAP_H
#define IOTMOCK_BOOTSTRAP_H

#include "err.h"
#include "registry.h"

#define BOOTSTRAP_SERVER_CERT "server-cert.pem"
#define BOOTSTRAP_SERVER_KEY "server-key.pem"
#define BOOTSTRAP_CLAIM_CERT "claim-cert.pem"
#define BOOTSTRAP_CLAIM_KEY "claim-key.pem"
#define BOOTSTRAP_REGISTRY "registry.db"
#define BOOTSTRAP_CLAIM_POLICY "iotmock-claim-policy"

/* Creates STATE_DIR (mode 0700) and, where missing, the root CA, a server certificate valid for
 * HOST, localhost, 127.0.0.1 and ::1 (re-issued when HOST changed), and the claim certificate and
 * key. Private keys are written with mode 0600. */
enum iot_err bootstrap_files(const char *state_dir, const char *host, struct iot_error *err);

struct bootstrap_seed {
    const char *state_dir;     /* where claim-cert.pem is */
    const char *data_dir;      /* holds policies/ and templates/ (the shipped fixtures) */
    const char *templates_dir; /* extra templates, may be NULL */
    const char *region;
    const char *account_id;
};

/* Registers the claim certificate ACTIVE with the claim policy attached, creates the shipped
 * policies that are missing ({{region}} and {{account}} are substituted), and loads every
 * template file (replacing templates of the same name). */
enum iot_err bootstrap_registry(struct registry *reg, const struct bootstrap_seed *seed,
                                struct iot_error *err);

/* Reads a whole file into a NUL-terminated malloc'd buffer (caller frees); NULL on failure. */
char *bootstrap_read_file(const char *path, size_t *len);

#endif
