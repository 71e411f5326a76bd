/* MOSQ_EVT_BASIC_AUTH: a device is its TLS client certificate, never its MQTT username (AWS SDKs
 * put a metrics string there). Only a registered ACTIVE certificate may connect.
 *
 * A refused certificate gets no CONNACK in either MQTT version: AWS ends such connections without
 * one (shared/spec/broker-and-policy.md §3.5). Mosquitto closes the socket silently when this
 * callback returns anything but MOSQ_ERR_SUCCESS or MOSQ_ERR_AUTH (which would send CONNACK
 * "not authorised"), so certificate refusals return REFUSE_SILENTLY. */
#include "plugin.h"

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

int on_basic_auth(int event, void *event_data, void *userdata)
{
    struct mosquitto_evt_basic_auth *ed = event_data;
    struct plugin *p = userdata;
    char id[CA_ID_LEN + 1];
    if (!client_cert_id(ed->client, id)) {
        refuse(ed->client, "-", "no client certificate was presented");
        return REFUSE_SILENTLY;
    }
    enum cert_status status;
    enum iot_err rc = registry_cert_status(p->reg, id, &status);
    if (rc == IOT_ERR_NOT_FOUND) {
        refuse(ed->client, id, "certificate is not registered");
        return REFUSE_SILENTLY;
    }
    if (rc != IOT_OK) {
        refuse(ed->client, id, "registry unavailable");
        return REFUSE_SILENTLY;
    }
    if (status != CERT_STATUS_ACTIVE) {
        char why[96];
        snprintf(why, sizeof(why), "certificate status is %s, not ACTIVE",
                 registry_cert_status_name(status));
        refuse(ed->client, id, why);
        return REFUSE_SILENTLY;
    }
    if (conns_connect(p, ed->client, id) == NULL)
        return MOSQ_ERR_NOMEM;
    return MOSQ_ERR_SUCCESS;
}
