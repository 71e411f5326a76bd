/* MOSQ_EVT_BASIC_AUTH: a device is its TLS client certificate, never its MQTT username (AWS SDKs
 * put a metrics string there). Only a registered ACTIVE certificate may connect, and only if its
 * policies allow iot:Connect on client/<clientId>.
 *
 * A refused certificate gets no CONNACK in either MQTT version: AWS ends such connections without
 * one (shared/spec/broker-and-policy.md §3.5). Mosquitto closes the socket silently when this
 * callback returns anything but MOSQ_ERR_SUCCESS or MOSQ_ERR_AUTH (which sends CONNACK "not
 * authorised"), so certificate refusals return REFUSE_SILENTLY. A policy refusal is CONNACK 0x87
 * on MQTT 5 and a silent close on 3.1.1 (§3.1), unless the friendly mode asks for CONNACK 5.
 *
 * AWS's client id rules (§4.2: at most 128 bytes, no leading `$`) refuse the same way as a
 * policy: AWS's CONNACK 0x85 "Client Identifier not valid" is not a code a Mosquitto 2.0 plugin
 * can send, so MQTT 5 gets 0x87. An accepted connection becomes its client id's current one
 * (taking over from an older connection, which Mosquitto then closes) and its connected event
 * goes out (§5.1). */
#include "plugin.h"

#include <time.h>

#include <openssl/x509.h>

#define REFUSE_SILENTLY MOSQ_ERR_UNKNOWN

bool client_cert_id(struct mosquitto *client, char out[CA_ID_LEN + 1])
{
    X509 *cert = mosquitto_client_certificate(client); /* a reference we must free */
    if (cert == NULL)
        return false;
    bool ok = ca_cert_id(cert, out) == IOT_OK;
    X509_free(cert);
    return ok;
}

static void refuse(struct mosquitto *client, const char *cert_id, const char *why)
{
    const char *id = mosquitto_client_id(client);
    mosquitto_log_printf(MOSQ_LOG_NOTICE, "iotmock: CONNECT refused | client=%s | cert=%s | %s",
                         id ? id : "", cert_id, why);
}

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The registered event (shared/spec/provisioning.md §4.4): QoS 1 and not retained, as the
 * lifecycle events; whoever may receive it gets it through the usual READ check. */
static void publish_registered(const struct jit_event *e)
{
    if (e->topic == NULL)
        return;
    int rc = mosquitto_broker_publish_copy(NULL, e->topic, (int)e->payload_len, e->payload, 1,
                                           false, NULL);
    if (rc != MOSQ_ERR_SUCCESS)
        mosquitto_log_printf(MOSQ_LOG_WARNING, "iotmock: cannot publish %s: error %d", e->topic,
                             rc);
}

/* JITP when the first connection is let in (plugin_opt_jitp_first_connect accept): the template
 * is applied here, on the broker thread, and the certificate must then be ACTIVE. */
static bool provision_now(struct plugin *p, struct mosquitto *client, const char *id)
{
    struct iot_error err = {0};
    enum cert_status status;
    if (jit_provision(p->cacerts, p->reg, &p->jit, id, &err) != IOT_OK) {
        refuse(client, id, err.message);
        return false;
    }
    if (registry_cert_status(p->reg, id, &status) != IOT_OK || status != CERT_STATUS_ACTIVE) {
        refuse(client, id, "JITP left the certificate inactive");
        return false;
    }
    return true;
}

/* Only registered ACTIVE certificates authenticate; an unknown one from a registered CA is
 * registered just in time (JITR/JITP, emulator/jit.h) and, but for JITP's opt-in, refused. */
static bool certificate_ok(struct plugin *p, struct mosquitto *client, X509 *cert, const char *id)
{
    struct jit_decision d = {0};
    struct iot_error err = {0};
    bool ok = false;
    if (jit_connect(p->cacerts, p->reg, &p->jit, cert, NULL, now_ms(), &d, &err) != IOT_OK) {
        refuse(client, id, "registry unavailable");
        jit_decision_clear(&d);
        return false;
    }
    switch (d.action) {
    case JIT_ACCEPT: ok = true; break;
    case JIT_REFUSE: refuse(client, id, d.reason); break;
    case JIT_REFUSE_AND_PUBLISH_EVENT:
        publish_registered(&d.event);
        refuse(client, id, d.reason);
        break;
    case JIT_PROVISION_THEN_REFUSE:
        publish_registered(&d.event);
        if (p->opt.jitp_accept_first) {
            ok = provision_now(p, client, id);
            break;
        }
        jobs_submit_jitp(p, id);
        refuse(client, id, d.reason);
        break;
    }
    jit_decision_clear(&d);
    return ok;
}

/* A refusal after the certificate was accepted: CONNACK "not authorised" on MQTT 5 (and with
 * --friendly on 3.1.1), otherwise a close without CONNACK. */
static int refuse_connect(struct plugin *p, struct conn *c)
{
    int rc = c->protocol_version == 5 || p->opt.friendly ? MOSQ_ERR_AUTH : REFUSE_SILENTLY;
    conns_refuse(p, c);
    return rc;
}

static bool client_id_ok(struct plugin *p, struct mosquitto *client, const struct conn *c)
{
    if (!p->opt.aws.client_id_rules)
        return true;
    enum quota_result r = quota_check_client_id(c->client_id, strlen(c->client_id));
    if (r == QUOTA_OK)
        return true;
    refuse(client, c->cert_id, quota_result_text(r));
    return false;
}

static int admit(struct plugin *p, struct conn *c, struct mosquitto *client)
{
    struct conn *prev = conns_accept(p, c);
    if (prev != NULL) { /* Mosquitto closes it once this returns: newcomer wins (§4.2) */
        (void)broker_closing(prev, EVENTS_DUPLICATE_CLIENTID, 0);
        lifecycle_disconnected(p, prev, EVENTS_DUPLICATE_CLIENTID);
    }
    broker_accepted(p, c, client);
    lifecycle_connected(p, c);
    return MOSQ_ERR_SUCCESS;
}

int on_basic_auth(int event, void *event_data, void *userdata)
{
    struct mosquitto_evt_basic_auth *ed = event_data;
    struct plugin *p = userdata;
    char id[CA_ID_LEN + 1];
    broker_event(p, NULL);
    X509 *cert = mosquitto_client_certificate(ed->client); /* a reference we must free */
    if (cert == NULL || ca_cert_id(cert, id) != IOT_OK) {
        refuse(ed->client, "-", "no client certificate was presented");
        X509_free(cert);
        return REFUSE_SILENTLY;
    }
    if (!certificate_ok(p, ed->client, cert, id)) {
        X509_free(cert);
        return REFUSE_SILENTLY;
    }
    struct conn *c = conns_connect(p, ed->client, id);
    bool ready = c != NULL && authz_prepare(p, c, ed->client, cert);
    X509_free(cert);
    if (!ready) {
        conns_refuse(p, c);
        return REFUSE_SILENTLY;
    }
    if (!client_id_ok(p, ed->client, c))
        return refuse_connect(p, c);
    if (!authz_allowed(p, c, POLICY_ACTION_CONNECT, c->client_id)) {
        lifecycle_connect_failed(p, c);
        return refuse_connect(p, c);
    }
    return admit(p, c, ed->client);
}
