/* AWS IoT Core's broker behaviour where it differs from stock Mosquitto
 * (shared/spec/broker-and-policy.md §4, §8.3), enforced from the ACL check:
 *
 *  - limits (§4.4–§4.6): 128 KB payloads (over it: closed, both MQTT versions), topics and filters
 *    of at most 256 bytes and 7 slashes outside the $aws/rules/<rule>/ and $share/<name>/
 *    prefixes (refused like an unauthorized PUBLISH/SUBSCRIBE: 3.1.1 closed, MQTT 5 0x87), 50
 *    subscriptions per connection (SUBACK 0x80 on 3.1.1 as AWS answers; 0x87 on MQTT 5, where AWS
 *    is thought to answer 0x97 — a code this hook cannot give);
 *  - matching (§4.4, §4.8): `#` does not match its parent level, and stored retained messages go
 *    only to exact filters when subscribing. Mosquitto matches by the MQTT specification and asks
 *    MOSQ_ACL_READ for each delivery; this file refuses the ones AWS would not make, from the
 *    filters each session holds;
 *  - keep-alive (§4.3): Mosquitto's max_keepalive clamps MQTT 5 clients (0 and above it); for
 *    MQTT 3.1.1 it does nothing, so iotmock ends a 3.1.1 connection asking for 0 or more than the
 *    maximum once it has been silent for 1.5 × the maximum. It sees PUBLISH, SUBSCRIBE and
 *    UNSUBSCRIBE, not PINGREQ or PUBACK.
 *
 * Which SUBSCRIBE a filter belongs to: Mosquitto checks the filters of one packet one after the
 * other, each followed at once by the checks of the retained messages it receives, and nothing
 * else happens in between. iotmock keeps them as one batch until any other event. Two SUBSCRIBE
 * packets handled back to back (they arrived in one read) fall into one batch: that is why the
 * 8-filters-per-SUBSCRIBE limit is not enforced, and why one subscribed event may list the filters
 * of both. */
#include "plugin.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define KEEPALIVE_SCAN_S 1

int broker_closing(struct conn *c, enum events_reason why, int rc)
{
    if (!c->end_reason_known) {
        c->end_reason_known = true;
        c->end_reason = why;
    }
    return rc;
}

void broker_refusal(const struct conn *c, const char *action, const char *why_fmt, ...)
{
    char why[512];
    va_list ap;
    va_start(ap, why_fmt);
    vsnprintf(why, sizeof(why), why_fmt, ap);
    va_end(ap);
    mosquitto_log_printf(MOSQ_LOG_NOTICE, "iotmock: %s refused | client=%s | cert=%s | %s", action,
                         c->client_id, c->cert_id, why);
}

static struct subscriptions *subs_of(struct plugin *p, const struct conn *c)
{
    struct session *s = sessions_find(p->sessions, c->client_id);
    return s ? s->subs : NULL;
}

/* ---- the SUBSCRIBE / UNSUBSCRIBE batch -------------------------------------------------- */

static void batch_flush(struct plugin *p)
{
    struct sub_batch *b = &p->batch;
    if (b->c != NULL && b->n > 0)
        lifecycle_subscriptions(p, b->c, b->subscribe, (const char *const *)b->filters, b->n);
    for (size_t i = 0; i < b->n; i++)
        free(b->filters[i]);
    b->n = 0;
    b->c = NULL;
}

static void batch_add(struct plugin *p, struct conn *c, bool subscribe, const char *filter)
{
    struct sub_batch *b = &p->batch;
    if (b->c != c || b->subscribe != subscribe)
        batch_flush(p);
    b->c = c;
    b->subscribe = subscribe;
    if (b->n == b->cap) {
        size_t cap = b->cap ? 2 * b->cap : 8;
        char **grown = realloc(b->filters, cap * sizeof(*grown));
        if (grown == NULL)
            return;
        b->filters = grown;
        b->cap = cap;
    }
    if ((b->filters[b->n] = strdup(filter)) != NULL)
        b->n++;
}

void broker_event(struct plugin *p, const struct mosquitto_evt_acl_check *next)
{
    const struct sub_batch *b = &p->batch;
    if (next == NULL || next->access != MOSQ_ACL_READ)
        p->epoch++;
    if (b->c == NULL)
        return;
    if (next != NULL && next->client == b->c->client &&
        (next->access == MOSQ_ACL_READ ||
         next->access == (b->subscribe ? MOSQ_ACL_SUBSCRIBE : MOSQ_ACL_UNSUBSCRIBE)))
        return;
    batch_flush(p);
}

void broker_clear(struct plugin *p)
{
    struct sub_batch *b = &p->batch;
    for (size_t i = 0; i < b->n; i++)
        free(b->filters[i]);
    free(b->filters);
    *b = (struct sub_batch){0};
}

/* ---- checks ------------------------------------------------------------------------------ */

/* A topic or filter AWS would refuse: refused like an unauthorized one on this connection. */
static int refuse_limit(struct plugin *p, struct conn *c, const char *action, const char *kind,
                        const char *name, enum quota_result r)
{
    broker_refusal(c, action, "%s=%s | limit: %s", kind, name, quota_result_text(r));
    int rc = authz_deny_code(p, c);
    return rc == MOSQ_ERR_ACL_DENIED ? rc : broker_closing(c, EVENTS_CLIENT_ERROR, rc);
}

int broker_check_write(struct plugin *p, struct conn *c, const struct mosquitto_evt_acl_check *ed)
{
    const struct aws_behaviour *aws = &p->opt.aws;
    if (!c->ended)
        c->last_activity = time(NULL);
    if (aws->payload_max > 0 && ed->payloadlen > aws->payload_max) {
        broker_refusal(c, policy_action_name(POLICY_ACTION_PUBLISH),
                       "topic=%s | limit: a payload of %u bytes is over %zu (AWS closes the "
                       "connection)",
                       ed->topic, (unsigned)ed->payloadlen, aws->payload_max);
        return broker_closing(c, EVENTS_CLIENT_ERROR, MOSQ_ERR_PAYLOAD_SIZE);
    }
    if (aws->topic_limits) {
        enum quota_result r = quota_check_topic(ed->topic, strlen(ed->topic));
        if (r != QUOTA_OK)
            return refuse_limit(p, c, policy_action_name(POLICY_ACTION_PUBLISH), "topic", ed->topic,
                                r);
    }
    return MOSQ_ERR_SUCCESS;
}

int broker_check_subscribe(struct plugin *p, struct conn *c,
                           const struct mosquitto_evt_acl_check *ed)
{
    c->last_activity = time(NULL);
    if (!p->opt.aws.topic_limits)
        return MOSQ_ERR_SUCCESS;
    enum quota_result r = quota_check_filter(ed->topic, strlen(ed->topic));
    if (r != QUOTA_OK)
        return refuse_limit(p, c, policy_action_name(POLICY_ACTION_SUBSCRIBE), "topicfilter",
                            ed->topic, r);
    return MOSQ_ERR_SUCCESS;
}

int broker_subscribed(struct plugin *p, struct conn *c, const char *filter, int qos)
{
    struct subscriptions *subs = subs_of(p, c);
    size_t max = p->opt.aws.subscriptions_max;
    if (max > 0 && subs != NULL && !subscriptions_has(subs, filter) &&
        subscriptions_count(subs) >= max) {
        broker_refusal(c, policy_action_name(POLICY_ACTION_SUBSCRIBE),
                       "topicfilter=%s | limit: %zu subscriptions per connection", filter, max);
        return MOSQ_ERR_ACL_DENIED; /* SUBACK 0x80 / 0x87: the connection stays */
    }
    if (subs != NULL && subscriptions_add(subs, filter, qos) != IOT_OK)
        mosquitto_log_printf(MOSQ_LOG_WARNING, "iotmock: out of memory tracking %s", filter);
    batch_add(p, c, true, filter);
    return MOSQ_ERR_SUCCESS;
}

size_t broker_copies(struct plugin *p, const struct conn *c, const char *topic, int *qos,
                     size_t max)
{
    return subscriptions_matching(subs_of(p, c), topic, !p->opt.aws.hash_parent, qos, max);
}

void broker_unsubscribed(struct plugin *p, struct conn *c, const char *filter)
{
    c->last_activity = time(NULL);
    subscriptions_remove(subs_of(p, c), filter);
    batch_add(p, c, false, filter);
}

/* Mosquitto checks a message once per subscription of the client that matches it by the MQTT
 * specification, one after the other with nothing else in between; AWS sends one copy per filter
 * matching by its own rules (none for `sensor/#` on `sensor`). The copies beyond AWS's count are
 * refused. One message: same epoch, same topic and payload buffers. */
static bool copy_wanted(struct plugin *p, struct conn *c, const struct mosquitto_evt_acl_check *ed)
{
    size_t aws, mqtt;
    subscriptions_count_matches(subs_of(p, c), ed->topic, &aws, &mqtt);
    if (aws == mqtt)
        return true;
    bool same =
        c->read_epoch == p->epoch && c->read_topic == ed->topic && c->read_payload == ed->payload;
    c->read_copies = same ? c->read_copies + 1 : 1;
    c->read_epoch = p->epoch;
    c->read_topic = ed->topic;
    c->read_payload = ed->payload;
    if (c->read_copies <= aws)
        return true;
    mosquitto_log_printf(MOSQ_LOG_INFO,
                         "iotmock: message not delivered | client=%s | topic=%s | a `/#` filter "
                         "matches it only as its parent level (AWS: no match)",
                         c->client_id, ed->topic);
    return false;
}

int broker_check_read(struct plugin *p, struct conn *c, const struct mosquitto_evt_acl_check *ed)
{
    const struct sub_batch *b = &p->batch;
    if (p->opt.aws.retained_exact && ed->retain && b->c == c && b->subscribe && b->n > 0) {
        const char *filter = b->filters[b->n - 1]; /* being subscribed: a stored message */
        if (subscriptions_match(filter, ed->topic) != SUBSCRIPTIONS_NO_MATCH &&
            !subscriptions_retained_on_subscribe(filter)) {
            mosquitto_log_printf(MOSQ_LOG_INFO,
                                 "iotmock: retained message not sent | client=%s | topic=%s | "
                                 "filter %s is not an exact topic (AWS sends retained messages "
                                 "only to those)",
                                 c->client_id, ed->topic, filter);
            return MOSQ_ERR_ACL_DENIED;
        }
    }
    if (p->opt.aws.hash_parent && !copy_wanted(p, c, ed))
        return MOSQ_ERR_ACL_DENIED;
    return MOSQ_ERR_SUCCESS;
}

/* ---- connections ------------------------------------------------------------------------- */

void broker_accepted(struct plugin *p, struct conn *c, struct mosquitto *client)
{
    time_t now = time(NULL);
    c->persistent = !mosquitto_client_clean_session(client);
    c->last_activity = now;
    struct session *s = sessions_connect(p->sessions, c->client_id, c->persistent, now);
    if (s != NULL) {
        c->version = s->version;
        memcpy(c->session_id, s->id, sizeof(c->session_id));
    }
    unsigned max = p->opt.aws.keepalive_max;
    int asked = mosquitto_client_keepalive(client);
    if (max > 0 && c->protocol_version != 5 && (asked <= 0 || (unsigned)asked > max))
        c->keepalive = quota_keepalive(asked > 0 ? (unsigned)asked : 0, max);
}

void broker_tick(struct plugin *p, time_t now)
{
    if (now < p->next_keepalive_scan)
        return;
    p->next_keepalive_scan = now + KEEPALIVE_SCAN_S;
    struct conn *c, *tmp;
    HASH_ITER(hh, p->conns, c, tmp)
    {
        if (c->keepalive == 0 || c->ended || !c->accepted ||
            now - c->last_activity <= (time_t)c->keepalive * 3 / 2 ||
            conns_by_id(p, c->client_id) != c)
            continue;
        mosquitto_log_printf(MOSQ_LOG_NOTICE,
                             "iotmock: client %s silent for %lds, 1.5 x its keep-alive of %us "
                             "(AWS clamps 0 and values above the maximum): disconnecting",
                             c->client_id, (long)(now - c->last_activity), c->keepalive);
        (void)broker_closing(c, EVENTS_MQTT_KEEP_ALIVE_TIMEOUT, 0);
        c->kicked = true;
        mosquitto_kick_client_by_clientid(c->client_id, true); /* ends in on_disconnect */
    }
}
