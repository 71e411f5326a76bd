/* The control plane's HTTP listener (libmicrohttpd, a small pool of its own threads): AWS IoT's
 * REST-JSON operations (shared/spec/provisioning.md §6) at the paths the AWS SDKs and CLI use,
 * and the emulator's own routes under /_iotmock/ (health, root-ca.pem, reset). */
#ifndef IOTMOCK_HTTP_SERVER_H
#define IOTMOCK_HTTP_SERVER_H

#include <stdatomic.h>

#include "bootstrap.h"
#include "ca.h"
#include "cacert.h"
#include "err.h"
#include "keypool.h"
#include "policy_cache.h"
#include "registry.h"

struct http_config {
    const char *bind; /* IPv4 or IPv6 literal; loopback unless told otherwise */
    int port;
    struct registry *reg;     /* borrowed */
    const char *state_dir;    /* root-ca.pem is served from here */
    const atomic_bool *ready; /* set once MQTT accepts connections */
    /* The members below may be left zero: the operations that need one then answer
     * InternalFailureException (ca, seed) or use the default shown. */
    const struct ca *ca;               /* borrowed; issues certificates */
    const char *region;                /* ARNs; default "us-east-1" */
    const char *account_id;            /* ARNs; default "123456789012" */
    const char *host;                  /* DescribeEndpoint's address; default: the CN of the server
                                        * certificate in state_dir (what `iotmock serve --host` issued),
                                        * else "localhost" */
    const struct bootstrap_seed *seed; /* POST /_iotmock/reset re-seeds with it; copied */
    /* Bring-your-own CA (api_cacerts.c): the CA store (borrowed; NULL: those operations answer
     * InternalFailureException) and the broker's capath directory, synced before each answer
     * that changes trust (NULL: not kept). */
    struct cacert_store *cacerts;
    const char *capath;
    struct keypool *keys;              /* borrowed; CreateKeysAndCertificate takes its keys here;
                                        * NULL: generates each one */
    struct policy_cache *policies;     /* borrowed; compiled policies shared with the broker;
                                        * NULL: TestAuthorization compiles its own */
    bool negated_absent_false;         /* policy_context's, as the broker evaluates */
};

struct http_server;

/* Copies CFG (not the strings and objects it points to, which must outlive the server). */
enum iot_err http_server_start(const struct http_config *cfg, struct http_server **out,
                               struct iot_error *err);
void http_server_stop(struct http_server *s);

#endif
