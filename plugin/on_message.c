/* MOSQ_EVT_MESSAGE: fleet provisioning requests go to a worker; everything else passes. */
#include "plugin.h"

int on_message(int event, void *event_data, void *userdata)
{
    struct mosquitto_evt_message *ed = event_data;
    struct plugin *p = userdata;
    struct fleet_topic t;
    if (ed->client == NULL || ed->topic == NULL || ed->topic[0] != '$')
        return MOSQ_ERR_SUCCESS;
    if (fleet_topic_parse(ed->topic, &t) != FLEET_TOPIC_REQUEST)
        return MOSQ_ERR_SUCCESS;
    if (t.format == FLEET_FORMAT_CBOR)
        return MOSQ_ERR_SUCCESS; /* CBOR requests: not served yet (wire-fidelity issue) */
    ed->retain = false; /* a request is an operation, never something to keep */
    char cert_id[CA_ID_LEN + 1] = "";
    client_cert_id(ed->client, cert_id);
    const char *client_id = mosquitto_client_id(ed->client);
    jobs_submit_fleet(p, &t, ed->topic, client_id ? client_id : "", cert_id, ed->payload,
                      ed->payloadlen);
    return MOSQ_ERR_SUCCESS;
}
