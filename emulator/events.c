/* Lifecycle event topics and payloads (shared/spec/broker-and-policy.md §5). Field order follows
 * AWS's documented examples; integers are written as integers (no exponent, no fraction). */
#include "events.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

static const char *const REASONS[] = {
    [EVENTS_AUTH_ERROR] = "AUTH_ERROR",
    [EVENTS_CLIENT_INITIATED_DISCONNECT] = "CLIENT_INITIATED_DISCONNECT",
    [EVENTS_CLIENT_ERROR] = "CLIENT_ERROR",
    [EVENTS_CONNECTION_LOST] = "CONNECTION_LOST",
    [EVENTS_DUPLICATE_CLIENTID] = "DUPLICATE_CLIENTID",
    [EVENTS_FORBIDDEN_ACCESS] = "FORBIDDEN_ACCESS",
    [EVENTS_MQTT_KEEP_ALIVE_TIMEOUT] = "MQTT_KEEP_ALIVE_TIMEOUT",
    [EVENTS_SERVER_ERROR] = "SERVER_ERROR",
    [EVENTS_SERVER_INITIATED_DISCONNECT] = "SERVER_INITIATED_DISCONNECT",
    [EVENTS_THROTTLED] = "THROTTLED",
    [EVENTS_WEBSOCKET_TTL_EXPIRATION] = "WEBSOCKET_TTL_EXPIRATION",
    [EVENTS_CUSTOMAUTH_TTL_EXPIRATION] = "CUSTOMAUTH_TTL_EXPIRATION",
    [EVENTS_API_INITIATED_DISCONNECT] = "API_INITIATED_DISCONNECT",
};

const char *events_reason_name(enum events_reason r)
{
    if ((size_t)r < sizeof(REASONS) / sizeof(REASONS[0]) && REASONS[r] != NULL)
        return REASONS[r];
    return "UNKNOWN";
}

bool events_client_id_has_events(const char *client_id)
{
    return client_id != NULL && strpbrk(client_id, "+#") == NULL;
}

void events_message_clear(struct events_message *m)
{
    free(m->topic);
    free(m->payload);
    *m = (struct events_message){0};
}

long long events_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static bool add_integer(cJSON *o, const char *name, long long v)
{
    char digits[24];
    snprintf(digits, sizeof(digits), "%lld", v);
    return cJSON_AddRawToObject(o, name, digits) != NULL;
}

/* The fields every event starts with: clientId, [thingName], timestamp, eventType,
 * sessionIdentifier, principalIdentifier. */
static cJSON *head(const struct events_client *c, long long timestamp_ms, const char *type)
{
    cJSON *o = cJSON_CreateObject();
    bool ok =
        o != NULL && cJSON_AddStringToObject(o, "clientId", c->client_id) != NULL &&
        (c->thing_name == NULL || cJSON_AddStringToObject(o, "thingName", c->thing_name) != NULL) &&
        add_integer(o, "timestamp", timestamp_ms) &&
        cJSON_AddStringToObject(o, "eventType", type) != NULL &&
        cJSON_AddStringToObject(o, "sessionIdentifier", c->session_id) != NULL &&
        cJSON_AddStringToObject(o, "principalIdentifier", c->principal) != NULL;
    if (!ok) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

/* Serialises O (consumed) as the payload of PREFIX<clientId>. */
static enum iot_err finish(cJSON *o, const char *prefix, const struct events_client *c,
                           struct events_message *out)
{
    char *payload = o ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    size_t n = strlen(prefix) + strlen(c->client_id) + 1;
    char *topic = payload ? malloc(n) : NULL;
    if (topic == NULL) {
        free(payload);
        return IOT_ERR_NOMEM;
    }
    snprintf(topic, n, "%s%s", prefix, c->client_id);
    *out =
        (struct events_message){.topic = topic, .payload = payload, .payload_len = strlen(payload)};
    return IOT_OK;
}

static bool add_ip(cJSON *o, const char *ip_address)
{
    return cJSON_AddStringToObject(o, "ipAddress", ip_address ? ip_address : "") != NULL;
}

enum iot_err events_connected(const struct events_client *c, long long timestamp_ms,
                              const char *ip_address, struct events_message *out)
{
    *out = (struct events_message){0};
    cJSON *o = head(c, timestamp_ms, "connected");
    if (o && !(add_ip(o, ip_address) && add_integer(o, "versionNumber", c->version))) {
        cJSON_Delete(o);
        o = NULL;
    }
    return finish(o, EVENTS_CONNECTED_PREFIX, c, out);
}

enum iot_err events_disconnected(const struct events_client *c, long long timestamp_ms,
                                 enum events_reason reason, struct events_message *out)
{
    *out = (struct events_message){0};
    cJSON *o = head(c, timestamp_ms, "disconnected");
    bool by_client = reason == EVENTS_CLIENT_INITIATED_DISCONNECT;
    if (o && !(cJSON_AddBoolToObject(o, "clientInitiatedDisconnect", by_client) != NULL &&
               cJSON_AddStringToObject(o, "disconnectReason", events_reason_name(reason)) != NULL &&
               add_integer(o, "versionNumber", c->version))) {
        cJSON_Delete(o);
        o = NULL;
    }
    return finish(o, EVENTS_DISCONNECTED_PREFIX, c, out);
}

enum iot_err events_connect_failed(const struct events_client *c, long long timestamp_ms,
                                   const char *ip_address, struct events_message *out)
{
    *out = (struct events_message){0};
    cJSON *o = head(c, timestamp_ms, "connect_failed");
    if (o && !(cJSON_AddStringToObject(o, "connectFailureReason", "AUTHORIZATION_FAILED") != NULL &&
               add_ip(o, ip_address))) {
        cJSON_Delete(o);
        o = NULL;
    }
    return finish(o, EVENTS_CONNECT_FAILED_PREFIX, c, out);
}

enum iot_err events_subscriptions(const struct events_client *c, long long timestamp_ms,
                                  bool subscribed, const char *const *filters, size_t n,
                                  struct events_message *out)
{
    *out = (struct events_message){0};
    cJSON *o = head(c, timestamp_ms, subscribed ? "subscribed" : "unsubscribed");
    cJSON *topics = o ? cJSON_AddArrayToObject(o, "topics") : NULL;
    for (size_t i = 0; topics != NULL && i < n; i++) {
        cJSON *t = cJSON_CreateString(filters[i]);
        if (t == NULL || !cJSON_AddItemToArray(topics, t)) {
            cJSON_Delete(t);
            topics = NULL;
        }
    }
    if (topics == NULL) {
        cJSON_Delete(o);
        o = NULL;
    }
    return finish(o, subscribed ? EVENTS_SUBSCRIBED_PREFIX : EVENTS_UNSUBSCRIBED_PREFIX, c, out);
}
