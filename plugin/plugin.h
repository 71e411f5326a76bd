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
#include "cacert.h"
#include "events.h"
#include "fleet.h"
#include "keypool.h"
#include "http/server.h"
#include "jit.h"
#include "quota.h"
#include "policy.h"
#include "policy_cache.h"
#include "registry.h"
#include "sessions.h"
#include "subscriptions.h"
#include "workq.h"

#define IOTMOCK_EXPORT __attribute__((visibility("default")))
/* Worker threads: twice the cores, at least 4 and at most 64. Key generation (the slow lane)
 * gets half of them, so it can use every core and still leaves as many workers for the rest. */
#define PLUGIN_WORKERS_MIN 4
#define PLUGIN_WORKERS_MAX 64
#define AUTHZ_ALLOWED_MAX 8 /* allowed (action, topic) pairs remembered per connection */

/* What iotmock knows of one connection (conns.c), from its authentication until the tick after
 * it ended — longer for a persistent session, whose offline context Mosquitto still queues
 * messages for. */
struct conn {
    const struct mosquitto *client; /* the key: one Mosquitto context per network connection */
    char *client_id;
    uint64_t generation; /* unique per accepted CONNECT */
    char cert_id[CA_ID_LEN + 1];
    int protocol_version; /* 3, 4 (3.1.1) or 5 */
    /* authorization (authz.c) */
    struct policy_context ctx;
    struct policy_cache *cache; /* where policies come from (the plugin's) */
    const struct policy **policies; /* references into cache */
    size_t n_policies;
    struct policy_attr *attrs;
    size_t n_attrs;
    char *thing_type;
    char *source_ip;
    uint64_t loaded_version; /* registry_authz_version() the policies were loaded at; 0 = never */
    /* the last actions allowed (authz.c): a client publishes to and receives from few topics */
    struct authz_allowed {
        uint32_t hash; /* 0: empty */
        enum policy_action action;
        char *name;
    } allowed[AUTHZ_ALLOWED_MAX];
    unsigned allowed_next;   /* the slot to fill next */
    bool allowed_off;        /* a policy depends on the time: nothing remembered */
    /* broker behaviour (broker.c) and lifecycle events (lifecycle.c) */
    bool accepted;           /* BASIC_AUTH let it in */
    bool ended;              /* MOSQ_EVT_DISCONNECT seen: kept for the Will's check */
    bool persistent;         /* asked to keep its session (clean session/start 0) */
    bool reported;           /* its disconnected event is out */
    bool kicked;             /* iotmock is closing it (Mosquitto re-checks its subscriptions) */
    bool end_reason_known;   /* iotmock itself ended it, for END_REASON */
    enum events_reason end_reason;
    char session_id[SESSIONS_ID_LEN + 1];
    long long version;       /* lifecycle versionNumber */
    unsigned keepalive;      /* enforced by iotmock (3.1.1 clamp), 0 = Mosquitto's own */
    time_t last_activity;    /* last PUBLISH/SUBSCRIBE/UNSUBSCRIBE seen */
    time_t ended_at;
    /* the delivery being checked: Mosquitto asks once per matching subscription (broker.c) */
    uint64_t read_epoch;
    const char *read_topic;
    const void *read_payload;
    size_t read_copies;
    UT_hash_handle hh;       /* p->conns, by client */
    UT_hash_handle hh_id;    /* p->current, by client id */
};

/* The SUBSCRIBE or UNSUBSCRIBE being handled. Mosquitto checks each filter of one packet in a
 * row, and sends the stored retained messages of a filter right after its check; both end at the
 * next event of any other kind (broker.c). */
struct sub_batch {
    struct conn *c; /* NULL: none open */
    bool subscribe;
    char **filters;
    size_t n, cap;
};

/* AWS behaviour that differs from stock Mosquitto; each can be switched off
 * (shared/spec/broker-and-policy.md §4, §5, §8.3). */
struct aws_behaviour {
    size_t payload_max;       /* bytes, 0 = no limit (§4.5) */
    bool topic_limits;        /* 256 bytes, 7 slashes (§4.4) */
    size_t subscriptions_max; /* per connection, 0 = no limit (§4.6) */
    bool client_id_rules;     /* 128 bytes, no leading $ (§4.2) */
    unsigned keepalive_max;   /* 3.1.1 keep-alive 0 or above it means it (§4.3); 0 = off */
    bool retained_exact;      /* retained messages on subscribe only to exact filters (§4.8) */
    bool hash_parent;         /* `#` does not match its parent level (§4.4) */
    bool lifecycle_events;    /* $aws/events/presence|subscriptions (§5) */
    const char *broker_log;   /* Mosquitto's log file, read for disconnect reasons */
};

/* What a refused MQTT 5 QoS 0 PUBLISH gets (--qos0-refusal). AWS: UNCONFIRMED, the spec's default is
 * DISCONNECT 0x87 (shared/spec/broker-and-policy.md §3.2), a code a Mosquitto 2.0.11 plugin cannot
 * choose: the nearest it can send is DISCONNECT 0x80 (see docs/features.md). */
enum qos0_refusal {
    QOS0_REFUSAL_DISCONNECT = 0, /* DISCONNECT 0x80, then close (the default) */
    QOS0_REFUSAL_CLOSE,          /* close without DISCONNECT, as on MQTT 3.1.1 */
    QOS0_REFUSAL_DROP,           /* drop the message, keep the connection (stock Mosquitto) */
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
    const char *host;   /* DescribeEndpoint's answer (`iotmock serve --host`) */
    const char *capath; /* the listener's capath directory, kept by iotmock (emulator/capath.h) */
    /* JITP's triggering connection (shared/spec/provisioning.md §3.2 item 5): refused after the
     * provisioning is queued (AWS as reported, the default), or provisioned on the spot and let
     * in when this is true. */
    bool jitp_accept_first;
    struct jit_config jit; /* the spec's open choices (emulator/jit.h), plugin_opt_jit_* */
    size_t key_pool; /* pre-generated keys for CreateKeysAndCertificate; 0 = none */
    enum qos0_refusal qos0_refusal;
    bool negated_absent_false; /* --negated-absent false: §2.5's reading instead of IAM's */
    struct aws_behaviour aws;
};

struct broker_log;
struct reg_events;
struct wake;

struct plugin {
    mosquitto_plugin_id_t *id;
    struct options opt;
    struct registry *reg;
    struct policy_cache *policies; /* compiled policies, shared by connections and HTTP */
    struct ca *ca;
    struct cacert_store *cacerts;
    struct jit_config jit;
    struct workq *workq;
    struct keypool *keys;
    size_t keys_jobs; /* CreateKeysAndCertificate jobs submitted and not yet drained */
    struct wake *wake; /* NULL: results wait for the next tick */
    struct http_server *http;
    struct fleet_config fleet;
    atomic_bool ready;
    struct conn *conns;   /* by client */
    struct conn *current; /* by client id: the latest accepted connection */
    uint64_t generations;
    struct sessions *sessions;
    struct sub_batch batch;
    uint64_t epoch; /* bumped by every event but a delivery check */
    struct broker_log *log;
    time_t next_sweep;
    time_t next_keepalive_scan;
    uint64_t swept_version; /* registry_cert_version() at the last certificate-status sweep */
    long long swept_at_ms;  /* CLOCK_MONOTONIC of that sweep */
    time_t next_expiry;
    bool expiry_running;
    struct reg_events *reg_events; /* registry events waiting for the tick (registry_events.c) */
};

int on_basic_auth(int event, void *event_data, void *userdata);
int on_acl_check(int event, void *event_data, void *userdata);
int on_message(int event, void *event_data, void *userdata);
int on_tick(int event, void *event_data, void *userdata);
int on_disconnect(int event, void *event_data, void *userdata);

/* Connections (conns.c). conns_connect() registers a connection being authenticated (replacing
 * a stale entry of the same context); conns_accept() makes it the client id's current one and
 * returns the previous current connection if that one is still up (a takeover), NULL otherwise.
 * conns_find() returns the entry of this very context, ended or not; conns_by_id() the current
 * connection of a client id if it is up. conns_refuse() forgets a connection that was not
 * accepted, conns_end() marks one ended, conns_sweep() frees the ended ones whose time is over. */
struct conn *conns_connect(struct plugin *p, const struct mosquitto *client, const char *cert_id);
struct conn *conns_accept(struct plugin *p, struct conn *c);
struct conn *conns_find(struct plugin *p, const struct mosquitto *client);
struct conn *conns_by_id(struct plugin *p, const char *client_id);
void conns_refuse(struct plugin *p, struct conn *c);
void conns_end(struct plugin *p, struct conn *c, time_t now);
void conns_sweep(struct plugin *p, time_t now);
void conns_clear(struct plugin *p);
/* Disconnects every client whose certificate is no longer ACTIVE (or was deleted). */
void conns_check_certificates(struct plugin *p);

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
void jobs_submit_jitp(struct plugin *p, const char *cert_id);
void jobs_done(struct workq_job *job, void *arg);
void jobs_discard(struct workq_job *job, void *arg);

/* AWS broker behaviour on top of Mosquitto's (broker.c). The checks return a Mosquitto code for
 * on_acl_check (MOSQ_ERR_SUCCESS: go on with authorization); broker_accepted() sets up a newly
 * accepted connection; broker_event() closes the open SUBSCRIBE/UNSUBSCRIBE batch unless the
 * coming check continues it (NEXT NULL: any other event); broker_subscribed() counts and tracks
 * a filter the policies allowed (at QOS), refusing it over the subscription quota;
 * broker_copies() tells how many copies of a message on TOPIC the routing would send C and at
 * which QoS each (its matching subscriptions, up to MAX of them in QOS); broker_tick()
 * enforces the 3.1.1 keep-alive; broker_clear() frees what the batch holds. */
int broker_check_write(struct plugin *p, struct conn *c, const struct mosquitto_evt_acl_check *ed);
int broker_check_subscribe(struct plugin *p, struct conn *c,
                           const struct mosquitto_evt_acl_check *ed);
int broker_subscribed(struct plugin *p, struct conn *c, const char *filter, int qos);
size_t broker_copies(struct plugin *p, const struct conn *c, const char *topic, int *qos,
                     size_t max);
void broker_unsubscribed(struct plugin *p, struct conn *c, const char *filter);
int broker_check_read(struct plugin *p, struct conn *c, const struct mosquitto_evt_acl_check *ed);
void broker_accepted(struct plugin *p, struct conn *c, struct mosquitto *client);
void broker_event(struct plugin *p, const struct mosquitto_evt_acl_check *next);
void broker_tick(struct plugin *p, time_t now);
void broker_clear(struct plugin *p);
/* Records why iotmock ends C (for its disconnected event) and returns RC. */
int broker_closing(struct conn *c, enum events_reason why, int rc);
/* One refusal line, in authz.c's format: "iotmock: ACTION refused | client=… | cert=… | WHY". */
void broker_refusal(const struct conn *c, const char *action, const char *why_fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Lifecycle events (lifecycle.c), published from the broker thread. */
void lifecycle_connected(struct plugin *p, struct conn *c);
void lifecycle_disconnected(struct plugin *p, struct conn *c, enum events_reason why);
void lifecycle_connect_failed(struct plugin *p, struct conn *c);
void lifecycle_subscriptions(struct plugin *p, struct conn *c, bool subscribed,
                             const char *const *filters, size_t n);

/* Registry events (registry_events.c): reg_events_start() hooks the registry (false when out of
 * memory), reg_events_publish() publishes what was queued since (broker thread, on the tick),
 * reg_events_stop() unhooks and frees the queue once no other thread writes the registry. */
bool reg_events_start(struct plugin *p);
void reg_events_publish(struct plugin *p);
void reg_events_stop(struct plugin *p);
/* Mosquitto's own log, read back for why a connection ended (broker_log.c): MOSQ_EVT_DISCONNECT
 * carries no reason in Mosquitto 2.0.11. broker_log_reason() reads what was logged since the
 * last call and reports the last disconnect line about CLIENT_ID in it, if any. */
struct broker_log *broker_log_open(const char *path);
bool broker_log_reason(struct broker_log *l, const char *client_id, enum events_reason *out);
void broker_log_close(struct broker_log *l);

/* Waking the event loop when a worker finishes (wake.c). wake_new(), on the loop's thread before
 * any other thread starts, installs the signal and blocks it until wake_arm(); NULL if it cannot
 * (answers then wait for the next tick). wake_request() (any thread; a workq notify) asks for a
 * drain; wake_drained() (loop thread, before draining) says it is happening. */
struct wake *wake_new(void);
void wake_arm(struct wake *w);
void wake_request(void *w);
void wake_drained(struct wake *w);
void wake_free(struct wake *w);

/* The certificate id of a connected client, or false if it presented none. */
bool client_cert_id(struct mosquitto *client, char out[CA_ID_LEN + 1]);

#endif
