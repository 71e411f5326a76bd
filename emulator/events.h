/* AWS IoT Core's lifecycle events (shared/spec/broker-and-policy.md §5; provisioning.md
 * §5.1–5.2): their topics and their JSON payloads, field for field and in AWS's order. Building
 * them is all this module does; the adapter decides when they happen and publishes them. */
#ifndef IOTMOCK_EVENTS_H
#define IOTMOCK_EVENTS_H

#include <stdbool.h>
#include <stddef.h>

#include "err.h"

#define EVENTS_CONNECTED_PREFIX "$aws/events/presence/connected/"
#define EVENTS_DISCONNECTED_PREFIX "$aws/events/presence/disconnected/"
#define EVENTS_CONNECT_FAILED_PREFIX "$aws/events/presence/connect_failed/"
#define EVENTS_SUBSCRIBED_PREFIX "$aws/events/subscriptions/subscribed/"
#define EVENTS_UNSUBSCRIBED_PREFIX "$aws/events/subscriptions/unsubscribed/"

/* disconnectReason values (§5.1; the DisconnectReasonValue enum of the API model). */
enum events_reason {
    EVENTS_AUTH_ERROR,
    EVENTS_CLIENT_INITIATED_DISCONNECT,
    EVENTS_CLIENT_ERROR,
    EVENTS_CONNECTION_LOST,
    EVENTS_DUPLICATE_CLIENTID,
    EVENTS_FORBIDDEN_ACCESS,
    EVENTS_MQTT_KEEP_ALIVE_TIMEOUT,
    EVENTS_SERVER_ERROR,
    EVENTS_SERVER_INITIATED_DISCONNECT,
    EVENTS_THROTTLED,
    EVENTS_WEBSOCKET_TTL_EXPIRATION,
    EVENTS_CUSTOMAUTH_TTL_EXPIRATION,
    EVENTS_API_INITIATED_DISCONNECT,
};

/* "AUTH_ERROR", "CLIENT_INITIATED_DISCONNECT", ... (static). */
const char *events_reason_name(enum events_reason r);

/* Whether CLIENT_ID has lifecycle events at all: not when it contains `+` or `#` (§5). */
bool events_client_id_has_events(const char *client_id);

/* Who an event is about. */
struct events_client {
    const char *client_id;
    const char *principal;  /* principalIdentifier: the certificate id for mTLS */
    const char *session_id; /* sessionIdentifier */
    long long version;      /* versionNumber */
    const char *thing_name; /* thingName: only with an exclusive thing association, else NULL */
};

/* One event: both strings malloc'd and NUL-terminated; events_message_clear() frees them. */
struct events_message {
    char *topic;
    char *payload;
    size_t payload_len;
};
void events_message_clear(struct events_message *m);

/* Each builder fills *OUT (cleared first) for the event at TIMESTAMP_MS (epoch milliseconds).
 * IOT_ERR_NOMEM when out of memory (*OUT then empty). */
enum iot_err events_connected(const struct events_client *c, long long timestamp_ms,
                              const char *ip_address, struct events_message *out);
enum iot_err events_disconnected(const struct events_client *c, long long timestamp_ms,
                                 enum events_reason reason, struct events_message *out);
/* connect_failed (§5.2): connectFailureReason is "AUTHORIZATION_FAILED", the only value AWS
 * documents. */
enum iot_err events_connect_failed(const struct events_client *c, long long timestamp_ms,
                                   const char *ip_address, struct events_message *out);
/* subscribed / unsubscribed with the N topic filters of one SUBSCRIBE / UNSUBSCRIBE. */
enum iot_err events_subscriptions(const struct events_client *c, long long timestamp_ms,
                                  bool subscribed, const char *const *filters, size_t n,
                                  struct events_message *out);

/* Now, in epoch milliseconds (CLOCK_REALTIME). */
long long events_now_ms(void);

#endif
