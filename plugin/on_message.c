/* MOSQ_EVT_MESSAGE: fleet provisioning requests go to a worker; everything else passes. */
#include "plugin.h"

int on_message(int event, void *event_data, void *userdata)
{
    struct mosquitto_evt_message *ed = event_data;
    struct plugin *p = userdata;
    struct fleet_topic t;
    broker_event(p, NULL);
    if (ed->client == NULL || ed->topic == NULL || ed->topic[0] != '$')
        return MOSQ_ERR_SUCCESS;
    if (fleet_topic_parse(ed->topic, &t) != FLEET_TOPIC_REQUEST)
        return MOSQ_ERR_SUCCESS;
    ed->retain = false; /* a request is an operation, never something to keep */
    const struct conn *c = conns_find(p, ed->client);
    if (c != NULL)
        jobs_submit_fleet(p, c, &t, ed->topic, ed->payload, ed->payloadlen);
    return MOSQ_ERR_SUCCESS;
}
