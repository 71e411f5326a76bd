/* Work that must not run on the broker's thread, and what the broker does with its results. */
#include "plugin.h"

#include <stdlib.h>
#include <string.h>

enum job_kind { JOB_FLEET, JOB_EXPIRY, JOB_JITP };

struct job {
    struct workq_job base; /* first: the pool links jobs through it */
    enum job_kind kind;
    struct plugin *p;
    /* JOB_FLEET */
    struct fleet_topic topic;
    char *request_topic;
    char *client_id;
    uint64_t generation;
    char cert_id[CA_ID_LEN + 1];
    void *payload;
    size_t payload_len;
    struct fleet_response resp;
    enum iot_err rc;
    /* JOB_EXPIRY */
    int expired;
    /* JOB_JITP: cert_id, rc and */
    struct iot_error err;
};

static void run_fleet(struct workq_job *base)
{
    struct job *j = (struct job *)base;
    struct fleet_request req = {.topic = &j->topic, .request_topic = j->request_topic,
                                .client_id = j->client_id, .client_cert_id = j->cert_id,
                                .payload = j->payload, .payload_len = j->payload_len};
    j->rc = fleet_handle(&j->p->fleet, &req, &j->resp);
}

static void run_expiry(struct workq_job *base)
{
    struct job *j = (struct job *)base;
    registry_expire_tokens(j->p->reg, (long long)time(NULL), &j->expired);
}

/* JITP (shared/spec/provisioning.md §3.2): the template of the certificate's CA, off the loop. */
static void run_jitp(struct workq_job *base)
{
    struct job *j = (struct job *)base;
    j->rc = jit_provision(j->p->cacerts, j->p->reg, &j->p->jit, j->cert_id, &j->err);
}

static void job_free(struct job *j)
{
    free(j->request_topic);
    free(j->client_id);
    free(j->payload);
    fleet_response_clear(&j->resp);
    free(j);
}

void jobs_submit_fleet(struct plugin *p, const struct conn *c, const struct fleet_topic *t,
                       const char *topic, const void *payload, size_t payload_len)
{
    struct job *j = calloc(1, sizeof(*j));
    if (j == NULL)
        return;
    j->kind = JOB_FLEET;
    j->base.run = run_fleet;
    j->p = p;
    j->topic = *t;
    j->request_topic = strdup(topic);
    j->client_id = strdup(c->client_id);
    j->generation = c->generation;
    snprintf(j->cert_id, sizeof(j->cert_id), "%s", c->cert_id);
    j->payload = malloc(payload_len + 1);
    if (j->request_topic == NULL || j->client_id == NULL || j->payload == NULL) {
        job_free(j);
        return;
    }
    if (payload_len)
        memcpy(j->payload, payload, payload_len);
    j->payload_len = payload_len;
    /* A CreateKeysAndCertificate that will find the key pool empty generates its key, which
     * takes a core for 100 ms or more: it goes to the slow lane, so that a storm of them leaves
     * workers for CSRs, RegisterThing and the rest. */
    if (t->op == FLEET_OP_CREATE_KEYS && p->keys_jobs++ >= keypool_ready(p->keys))
        workq_submit_slow(p->workq, &j->base);
    else
        workq_submit(p->workq, &j->base);
}

void jobs_submit_expiry(struct plugin *p)
{
    struct job *j = calloc(1, sizeof(*j));
    if (j == NULL)
        return;
    j->kind = JOB_EXPIRY;
    j->base.run = run_expiry;
    j->p = p;
    p->expiry_running = true;
    workq_submit(p->workq, &j->base);
}

void jobs_submit_jitp(struct plugin *p, const char *cert_id)
{
    struct job *j = calloc(1, sizeof(*j));
    if (j == NULL)
        return;
    j->kind = JOB_JITP;
    j->base.run = run_jitp;
    j->p = p;
    snprintf(j->cert_id, sizeof(j->cert_id), "%s", cert_id);
    workq_submit(p->workq, &j->base);
}

/* AWS reports JITP failures only in CloudWatch (§3.2 item 6): the log says it loudly. */
static void jitp_done(const struct job *j)
{
    if (j->rc == IOT_OK)
        mosquitto_log_printf(MOSQ_LOG_NOTICE, "iotmock: JITP provisioned | cert=%s", j->cert_id);
    else
        mosquitto_log_printf(MOSQ_LOG_ERR, "iotmock: JITP failed | cert=%s | %s (the certificate "
                             "stays PENDING_ACTIVATION)", j->cert_id, j->err.message);
}

/* Subscriptions of one connection can overlap: copies of one answer beyond this are not sent. */
#define ANSWER_COPIES_MAX 8

/* An answer goes to its requester only (shared/spec/provisioning.md §1.2), straight into that
 * connection's queue rather than through the subscription routing, which would ask every
 * subscriber of the answer topic about it. So it is sent as the routing would have sent it: only
 * if a subscription of the requester matches, one copy per matching filter, each at that
 * filter's QoS capped at 1 (§1.2), never retained, and only if its policies allow iot:Receive
 * (refused silently, broker-and-policy.md §3.4). */
static void deliver(struct plugin *p, struct job *j)
{
    if (j->rc != IOT_OK || j->resp.payload == NULL)
        return;
    struct conn *c = conns_by_id(p, j->client_id);
    if (c == NULL || c->generation != j->generation) {
        mosquitto_log_printf(MOSQ_LOG_INFO, "iotmock: %s answer dropped | client=%s | the "
                             "connection that asked is gone", j->request_topic, j->client_id);
        return;
    }
    if (!j->resp.accepted)
        mosquitto_log_printf(MOSQ_LOG_NOTICE, "iotmock: %s rejected | client=%s | cert=%s | %s",
                             j->request_topic, j->client_id, j->cert_id, j->resp.error.message);
    int qos[ANSWER_COPIES_MAX];
    size_t copies = broker_copies(p, c, j->resp.topic, qos, ANSWER_COPIES_MAX);
    if (copies == 0) {
        mosquitto_log_printf(MOSQ_LOG_INFO, "iotmock: answer not sent | client=%s | topic=%s | "
                             "the client is not subscribed to it (AWS drops it too)",
                             j->client_id, j->resp.topic);
        return;
    }
    if (!authz_allowed(p, c, POLICY_ACTION_RECEIVE, j->resp.topic))
        return;
    for (size_t i = 0; i < copies && i < ANSWER_COPIES_MAX; i++)
        mosquitto_broker_publish_copy(c->client_id, j->resp.topic, (int)j->resp.payload_len,
                                      j->resp.payload, qos[i] > 1 ? 1 : qos[i], false, NULL);
}

void jobs_done(struct workq_job *base, void *arg)
{
    struct plugin *p = arg;
    struct job *j = (struct job *)base;
    if (j->kind == JOB_FLEET && j->topic.op == FLEET_OP_CREATE_KEYS)
        p->keys_jobs--;
    if (j->kind == JOB_FLEET)
        deliver(p, j);
    else if (j->kind == JOB_JITP)
        jitp_done(j);
    else {
        p->expiry_running = false;
        if (j->expired > 0)
            mosquitto_log_printf(MOSQ_LOG_INFO,
                                 "iotmock: removed %d certificates whose ownership token expired "
                                 "unused", j->expired);
    }
    job_free(j);
}

void jobs_discard(struct workq_job *base, void *arg)
{
    job_free((struct job *)base);
}
