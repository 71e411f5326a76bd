/* Lifecycle events (shared/spec/broker-and-policy.md §5): published by iotmock itself on the
 * broker thread, at QoS 1 and not retained, to whoever is subscribed and allowed iot:Receive on
 * them (the READ check applies as to any message). Mosquitto queues what a plugin publishes and
 * routes it at the start of its next loop, so publishing from inside an event is safe. None for
 * client ids containing `+` or `#`. thingName is never sent: it belongs to exclusive thing
 * associations, which iotmock does not model. */
#include "plugin.h"

#include <uuid/uuid.h>

#define EVENT_QOS 1 /* AWS's is undocumented (§5): subscribers get min(1, their QoS) */

static bool wanted(const struct plugin *p, const struct conn *c)
{
    return p->opt.aws.lifecycle_events && events_client_id_has_events(c->client_id);
}

static struct events_client who(const struct conn *c)
{
    return (struct events_client){.client_id = c->client_id,
                                  .principal = c->cert_id,
                                  .session_id = c->session_id,
                                  .version = c->version};
}

/* Publishes M if it was built (RC), then clears it. */
static void publish(enum iot_err rc, struct events_message *m)
{
    if (rc != IOT_OK) {
        mosquitto_log_printf(MOSQ_LOG_WARNING, "iotmock: out of memory building an event");
        return;
    }
    int mrc = mosquitto_broker_publish_copy(NULL, m->topic, (int)m->payload_len, m->payload,
                                            EVENT_QOS, false, NULL);
    if (mrc != MOSQ_ERR_SUCCESS)
        mosquitto_log_printf(MOSQ_LOG_WARNING, "iotmock: cannot publish %s: error %d", m->topic,
                             mrc);
    events_message_clear(m);
}

void lifecycle_connected(struct plugin *p, struct conn *c)
{
    struct events_message m;
    struct events_client w = who(c);
    if (wanted(p, c))
        publish(events_connected(&w, events_now_ms(), c->source_ip, &m), &m);
}

void lifecycle_disconnected(struct plugin *p, struct conn *c, enum events_reason why)
{
    struct events_message m;
    struct events_client w = who(c);
    c->reported = true;
    if (wanted(p, c))
        publish(events_disconnected(&w, events_now_ms(), why, &m), &m);
}

void lifecycle_connect_failed(struct plugin *p, struct conn *c)
{
    struct events_message m;
    struct events_client w = who(c);
    char session[SESSIONS_ID_LEN + 1];
    uuid_t u;
    uuid_generate_random(u);
    uuid_unparse_lower(u, session);
    w.session_id = session;
    if (wanted(p, c))
        publish(events_connect_failed(&w, events_now_ms(), c->source_ip, &m), &m);
}

void lifecycle_subscriptions(struct plugin *p, struct conn *c, bool subscribed,
                             const char *const *filters, size_t n)
{
    struct events_message m;
    struct events_client w = who(c);
    if (wanted(p, c))
        publish(events_subscriptions(&w, events_now_ms(), subscribed, filters, n, &m), &m);
}
