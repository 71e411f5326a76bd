/* MOSQ_EVT_DISCONNECT: a connection ended. Its disconnected event goes out with the reason
 * (shared/spec/broker-and-policy.md §5.1, §8.3 item 9): the one iotmock recorded when it ended
 * the connection itself, else the one Mosquitto logged (the event carries none in 2.0.11). The
 * entry stays until the next tick: Mosquitto checks the Will right after this event. */
#include "plugin.h"

/* Why a connection iotmock did not end itself ended. */
static enum events_reason reason_of(struct plugin *p, const struct conn *c)
{
    enum events_reason why = EVENTS_CONNECTION_LOST; /* if Mosquitto's log says nothing */
    bool logged = p->log != NULL && broker_log_reason(p->log, c->client_id, &why);
    if (c->end_reason_known)
        return c->end_reason;
    return logged ? why : EVENTS_CONNECTION_LOST;
}

int on_disconnect(int event, void *event_data, void *userdata)
{
    struct mosquitto_evt_disconnect *ed = event_data;
    struct plugin *p = userdata;
    broker_event(p, NULL);
    struct conn *c = conns_find(p, ed->client);
    if (c == NULL)
        return MOSQ_ERR_SUCCESS;
    if (!c->accepted) { /* refused during authentication */
        conns_refuse(p, c);
        return MOSQ_ERR_SUCCESS;
    }
    if (c->ended) /* a persistent session's offline context, taken over */
        return MOSQ_ERR_SUCCESS;
    time_t now = time(NULL);
    enum events_reason why = reason_of(p, c);
    if (!c->reported)
        lifecycle_disconnected(p, c, why);
    struct session *s = sessions_find(p->sessions, c->client_id);
    if (s != NULL)
        sessions_disconnect(p->sessions, s, now);
    conns_end(p, c, now);
    return MOSQ_ERR_SUCCESS;
}
