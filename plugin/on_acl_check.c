/* MOSQ_EVT_ACL_CHECK: every PUBLISH, SUBSCRIBE and delivery, as AWS IoT Core checks them
 * (shared/spec/broker-and-policy.md §8.1): iot:Publish (and iot:RetainPublish for retained
 * messages) on topic/<name>, iot:Subscribe on topicfilter/<filter as sent>, iot:Receive on
 * topic/<name> per delivered message. On top of the policies, fleet provisioning's reserved-topic
 * rules: requests are consumed by iotmock and never routed to subscribers, answers reach only the
 * connection that asked, and nobody publishes onto answer topics (provisioning.md §1.1, §1.2).
 * Before the policies, AWS's limits and matching rules (broker.c); after them, subscriptions are
 * counted and tracked. */
#include "plugin.h"

/* Delivery: AWS's matching; nothing routed on fleet provisioning's topics (requests are
 * consumed, answers go to their requester directly, jobs.c); then iot:Receive, refused silently
 * (§3.4). */
static int check_read(struct plugin *p, struct conn *c, const struct mosquitto_evt_acl_check *ed)
{
    int rc = broker_check_read(p, c, ed);
    if (rc != MOSQ_ERR_SUCCESS)
        return rc;
    struct fleet_topic t;
    if (ed->topic[0] == '$' && fleet_topic_parse(ed->topic, &t) != FLEET_TOPIC_NONE)
        return MOSQ_ERR_ACL_DENIED;
    return authz_allowed(p, c, POLICY_ACTION_RECEIVE, ed->topic) ? MOSQ_ERR_SUCCESS
                                                                  : MOSQ_ERR_ACL_DENIED;
}

/* A refusal by the policies: MQTT 3.1.1 closes, recorded as AUTH_ERROR (§5.1). */
static int denied(struct plugin *p, struct conn *c)
{
    int rc = authz_deny_code(p, c);
    return rc == MOSQ_ERR_ACL_DENIED ? rc : broker_closing(c, EVENTS_AUTH_ERROR, rc);
}

/* MQTT 5 can answer a refused QoS 1 PUBLISH with PUBACK 0x87; a QoS 0 one has no answer. AWS
 * probably disconnects (§3.2, UNCONFIRMED). Mosquitto 2.0.11 sends DISCONNECT 0x80 when a check
 * fails with MOSQ_ERR_UNKNOWN and closes silently on MOSQ_ERR_AUTH; it has no way to send 0x87. */
static int denied_qos0_v5(struct plugin *p, struct conn *c)
{
    switch (p->opt.qos0_refusal) {
    case QOS0_REFUSAL_DROP: return MOSQ_ERR_ACL_DENIED;
    case QOS0_REFUSAL_CLOSE: return broker_closing(c, EVENTS_AUTH_ERROR, MOSQ_ERR_AUTH);
    case QOS0_REFUSAL_DISCONNECT: break;
    }
    return broker_closing(c, EVENTS_AUTH_ERROR, MOSQ_ERR_UNKNOWN);
}

static int check_write(struct plugin *p, struct conn *c, const struct mosquitto_evt_acl_check *ed)
{
    int rc = broker_check_write(p, c, ed);
    if (rc != MOSQ_ERR_SUCCESS)
        return rc;
    bool ok = authz_allowed(p, c, POLICY_ACTION_PUBLISH, ed->topic) &&
              (!ed->retain || authz_allowed(p, c, POLICY_ACTION_RETAIN_PUBLISH, ed->topic));
    if (ok)
        return MOSQ_ERR_SUCCESS;
    return c->protocol_version == 5 && ed->qos == 0 ? denied_qos0_v5(p, c) : denied(p, c);
}

static int check_subscribe(struct plugin *p, struct conn *c,
                           const struct mosquitto_evt_acl_check *ed)
{
    if (c->kicked) /* Mosquitto re-checking a persistent session's filters as it closes it */
        return authz_allowed(p, c, POLICY_ACTION_SUBSCRIBE, ed->topic) ? MOSQ_ERR_SUCCESS
                                                                       : MOSQ_ERR_ACL_DENIED;
    int rc = broker_check_subscribe(p, c, ed);
    if (rc != MOSQ_ERR_SUCCESS)
        return rc;
    if (!authz_allowed(p, c, POLICY_ACTION_SUBSCRIBE, ed->topic))
        return denied(p, c);
    return broker_subscribed(p, c, ed->topic, ed->qos);
}

int on_acl_check(int event, void *event_data, void *userdata)
{
    struct mosquitto_evt_acl_check *ed = event_data;
    struct plugin *p = userdata;
    if (ed->topic == NULL)
        return MOSQ_ERR_ACL_DENIED;
    broker_event(p, ed);
    struct conn *c = conns_find(p, ed->client);
    if (c == NULL || !c->accepted) /* not a connection iotmock authenticated */
        return MOSQ_ERR_ACL_DENIED;
    switch (ed->access) {
    case MOSQ_ACL_READ: return check_read(p, c, ed);
    case MOSQ_ACL_WRITE: return check_write(p, c, ed);
    case MOSQ_ACL_SUBSCRIBE: return check_subscribe(p, c, ed);
    case MOSQ_ACL_UNSUBSCRIBE: /* needs no permission */
        broker_unsubscribed(p, c, ed->topic);
        return MOSQ_ERR_SUCCESS;
    default: return MOSQ_ERR_SUCCESS;
    }
}
