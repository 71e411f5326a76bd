/* Private header of the Mosquitto adapter: the one state struct every callback receives as
 * userdata, and the callbacks. These are the only files that include Mosquitto headers. */
#ifndef IOTMOCK_PLUGIN_H
#define IOTMOCK_PLUGIN_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include <mosquitto.h>
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>
#include <uthash.h>

#include "ca.h"
#include "fleet.h"
#include "http/server.h"
#include "policy.h"
#include "registry.h"
#include "workq.h"

#define IOTMOCK_EXPORT __attribute__((visibility("default")))
#define PLUGIN_WORKERS 4
#define REPLY_TTL_S 10 /* how long a queued answer may wait for its delivery check */

/* An answer on its way to one client. Mosquitto routes it like any message (so only a matching
 * subscription receives it, at that subscription's QoS); the read check lets it through to
 * CLIENT_ID only (shared/spec/provisioning.md §1.2). */
struct pending_reply {
    struct pending_reply *next;
    char *client_id;
    uint64_t generation; /* of the connection that asked */
    char *topic;
    void *payload;
    size_t payload_len;
    time_t deadline;
};

/* What iotmock knows of one live connection (conns.c). */
struct conn {
    char *client_id; /* the key */
    const struct mosquitto *client;
    uint64_t generation; /* unique per accepted CONNECT */
    char cert_id[CA_ID_LEN + 1];
    int protocol_version; /* 3, 4 (3.1.1) or 5 */
    /* authorization (authz.c) */
    struct policy_context ctx;
    struct policy **policies;
    size_t n_policies;
    struct policy_attr *attrs;
    size_t n_attrs;
    char *thing_type;
    char *source_ip;
    uint64_t loaded_version; /* registry version the policies were loaded at; 0 = never */
    UT_hash_handle hh;
};

struct options {
    const char *state_dir;
    const char *data_dir;
    const char *templates_dir;
    const char *registry_path; /* default STATE_DIR/registry.db; ":memory:" allowed */
    const char *bind;
    const char *region;
    const char *account_id;
    const char *lambda_endpoint;
    int http_port;
    long token_ttl;
    bool friendly; /* answer MQTT 3.1.1 refusals with return codes instead of closing */
};

struct plugin {
    mosquitto_plugin_id_t *id;
    struct options opt;
    struct registry *reg;
    struct ca *ca;
    struct workq *workq;
    struct http_server *http;
    struct fleet_config fleet;
    atomic_bool ready;
    struct pending_reply *replies;
    struct conn *conns;
    uint64_t generations;
    time_t next_expiry;
    bool expiry_running;
};

int on_basic_auth(int event, void *event_data, void *userdata);
int on_acl_check(int event, void *event_data, void *userdata);
int on_message(int event, void *event_data, void *userdata);
int on_tick(int event, void *event_data, void *userdata);
int on_disconnect(int event, void *event_data, void *userdata);

/* Connections: registered at authentication, forgotten at disconnect. conns_find() returns the
 * entry of this very connection (NULL for an older one whose client id was taken over). */
struct conn *conns_connect(struct plugin *p, const struct mosquitto *client, const char *cert_id);
struct conn *conns_find(struct plugin *p, const struct mosquitto *client);
struct conn *conns_by_id(struct plugin *p, const char *client_id);
void conns_disconnect(struct plugin *p, const struct mosquitto *client);
void conns_clear(struct plugin *p);

/* Authorization (authz.c). authz_prepare() sets up a new connection's context from its
 * certificate; authz_allowed() decides one action on one topic, filter or client id, logging every
 * refusal with its explanation; authz_deny_code() is what to return to Mosquitto for a refused
 * PUBLISH or SUBSCRIBE on this connection. */
bool authz_prepare(struct plugin *p, struct conn *c, struct mosquitto *client, X509 *cert);
void authz_clear(struct conn *c);
bool authz_allowed(struct plugin *p, struct conn *c, enum policy_action action, const char *name);
int authz_deny_code(const struct plugin *p, const struct conn *c);

/* Jobs run on workers and come back through on_tick. */
void jobs_submit_fleet(struct plugin *p, const struct conn *c, const struct fleet_topic *t,
                       const char *topic, const void *payload, size_t payload_len);
void jobs_submit_expiry(struct plugin *p);
void jobs_done(struct workq_job *job, void *arg);
void jobs_discard(struct workq_job *job, void *arg);

/* The certificate id of a connected client, or false if it presented none. */
bool client_cert_id(struct mosquitto *client, char out[CA_ID_LEN + 1]);

#endif
