/* MOSQ_EVT_ACL_CHECK: the reserved-topic rules of fleet provisioning. Requests are consumed by
 * iotmock and never routed to subscribers; answers reach only the client that asked; clients may
 * not publish onto answer topics (shared/spec/provisioning.md §1.1, §1.2). IoT policies are
 * evaluated here as well once the policy engine lands. */
#include "plugin.h"

#include <string.h>

static bool reply_expected(struct plugin *p, const struct mosquitto_evt_acl_check *ed)
{
    const struct conn *c = conns_find(p, ed->client);
    if (c == NULL)
        return false;
    for (const struct pending_reply *r = p->replies; r; r = r->next) {
        if (r->payload_len == ed->payloadlen && r->generation == c->generation &&
            strcmp(r->client_id, c->client_id) == 0 &&
            strcmp(r->topic, ed->topic) == 0 &&
            (r->payload_len == 0 || memcmp(r->payload, ed->payload, r->payload_len) == 0))
            return true;
    }
    return false;
}

int on_acl_check(int event, void *event_data, void *userdata)
{
    struct mosquitto_evt_acl_check *ed = event_data;
    struct plugin *p = userdata;
    if (ed->topic == NULL || ed->topic[0] != '$')
        return MOSQ_ERR_SUCCESS;
    struct fleet_topic t;
    enum fleet_topic_kind kind = fleet_topic_parse(ed->topic, &t);
    if (kind == FLEET_TOPIC_NONE)
        return MOSQ_ERR_SUCCESS;
    switch (ed->access) {
    case MOSQ_ACL_READ:
        if (kind == FLEET_TOPIC_REQUEST)
            return MOSQ_ERR_ACL_DENIED;
        return reply_expected(p, ed) ? MOSQ_ERR_SUCCESS : MOSQ_ERR_ACL_DENIED;
    case MOSQ_ACL_WRITE:
        return kind == FLEET_TOPIC_REQUEST ? MOSQ_ERR_SUCCESS : MOSQ_ERR_ACL_DENIED;
    default:
        return MOSQ_ERR_SUCCESS;
    }
}
