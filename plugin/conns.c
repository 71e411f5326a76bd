/* Per-connection state. Mosquitto 2.0 gives plugins no per-client storage, so iotmock keeps its
 * own, keyed by the Mosquitto context (one per network connection), plus an index of the
 * current connection of each client id. Two contexts share a client id during a takeover: the
 * newcomer is authenticated while the old connection is still up, and Mosquitto checks the old
 * one's Will after that (shared/spec/broker-and-policy.md §4.2). The generation number tells one
 * connection from a later one reusing its client id (an answer is owed to the connection that
 * asked, not to whoever holds the id next).
 *
 * An entry outlives its connection: Mosquitto checks the Will (MOSQ_ACL_WRITE) right after
 * MOSQ_EVT_DISCONNECT, and keeps the context of a persistent session, queueing messages for it
 * (MOSQ_ACL_READ) until the client comes back or the session expires. */
#include "plugin.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SWEEP_INTERVAL_MS 500 /* the certificate-status sweep, at most this often */

static void conn_free(struct plugin *p, struct conn *c)
{
    if (p->batch.c == c)
        p->batch.c = NULL; /* callers flush first; never leave a dangling batch owner */
    HASH_DEL(p->conns, c);
    struct conn *cur = NULL;
    HASH_FIND(hh_id, p->current, c->client_id, strlen(c->client_id), cur);
    if (cur == c)
        HASH_DELETE(hh_id, p->current, c);
    authz_clear(c);
    free(c->client_id);
    free(c);
}

struct conn *conns_connect(struct plugin *p, const struct mosquitto *client, const char *cert_id)
{
    const char *id = mosquitto_client_id(client);
    if (id == NULL)
        return NULL;
    struct conn *c = conns_find(p, client);
    if (c != NULL) /* a freed context's address, reused */
        conn_free(p, c);
    c = calloc(1, sizeof(*c));
    if (c == NULL || (c->client_id = strdup(id)) == NULL) {
        free(c);
        return NULL;
    }
    c->client = client;
    c->generation = ++p->generations;
    snprintf(c->cert_id, sizeof(c->cert_id), "%s", cert_id);
    HASH_ADD_PTR(p->conns, client, c);
    return c;
}

struct conn *conns_accept(struct plugin *p, struct conn *c)
{
    struct conn *prev = NULL;
    HASH_FIND(hh_id, p->current, c->client_id, strlen(c->client_id), prev);
    if (prev != NULL)
        HASH_DELETE(hh_id, p->current, prev);
    HASH_ADD_KEYPTR(hh_id, p->current, c->client_id, strlen(c->client_id), c);
    c->accepted = true;
    if (prev != NULL && prev->ended) { /* an offline persistent session, now resumed or reset */
        conn_free(p, prev);
        prev = NULL;
    }
    return prev;
}

struct conn *conns_find(struct plugin *p, const struct mosquitto *client)
{
    struct conn *c = NULL;
    HASH_FIND_PTR(p->conns, &client, c);
    return c;
}

struct conn *conns_by_id(struct plugin *p, const char *client_id)
{
    struct conn *c = NULL;
    if (client_id)
        HASH_FIND(hh_id, p->current, client_id, strlen(client_id), c);
    return c && !c->ended ? c : NULL;
}

void conns_refuse(struct plugin *p, struct conn *c)
{
    if (c != NULL && !c->accepted)
        conn_free(p, c);
}

void conns_end(struct plugin *p, struct conn *c, time_t now)
{
    c->ended = true;
    c->ended_at = now;
    struct conn *cur = NULL;
    HASH_FIND(hh_id, p->current, c->client_id, strlen(c->client_id), cur);
    if (cur == c && !c->persistent)
        HASH_DELETE(hh_id, p->current, c);
}

/* A connection stays after it ended until the next tick (its Will has been checked by then);
 * a persistent session's until it is resumed or has been offline as long as a session lives. */
void conns_sweep(struct plugin *p, time_t now)
{
    struct conn *c, *tmp;
    HASH_ITER(hh, p->conns, c, tmp)
    {
        if (!c->ended)
            continue;
        struct conn *cur = NULL;
        HASH_FIND(hh_id, p->current, c->client_id, strlen(c->client_id), cur);
        if (cur != c || now - c->ended_at > SESSIONS_RESET_AFTER_S)
            conn_free(p, c);
    }
}

/* AWS disconnects the devices of a certificate that leaves ACTIVE or is deleted
 * (broker-and-policy.md §3.5; "within a few minutes" there, at the next check here). Checked when
 * the registry changed, at most every SWEEP_INTERVAL_MS, since a provisioning storm changes it on
 * every tick. */
void conns_check_certificates(struct plugin *p)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    long long now_ms = (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    uint64_t v = registry_cert_version(p->reg);
    if (v == p->swept_version || now_ms - p->swept_at_ms < SWEEP_INTERVAL_MS)
        return;
    p->swept_version = v;
    p->swept_at_ms = now_ms;
    struct conn *c, *tmp;
    HASH_ITER(hh, p->conns, c, tmp)
    {
        if (c->ended || c->kicked || !c->accepted || conns_by_id(p, c->client_id) != c)
            continue;
        enum cert_status status = CERT_STATUS_ACTIVE;
        enum iot_err rc = registry_cert_status(p->reg, c->cert_id, &status);
        if (rc == IOT_OK && status == CERT_STATUS_ACTIVE)
            continue;
        mosquitto_log_printf(MOSQ_LOG_NOTICE,
                             "iotmock: disconnecting | client=%s | cert=%s | certificate %s",
                             c->client_id, c->cert_id,
                             rc == IOT_ERR_NOT_FOUND ? "was deleted"
                                                     : registry_cert_status_name(status));
        (void)broker_closing(c, EVENTS_AUTH_ERROR, 0);
        c->kicked = true;
        mosquitto_kick_client_by_clientid(c->client_id, true); /* ends in on_disconnect */
    }
}

void conns_clear(struct plugin *p)
{
    struct conn *c, *tmp;
    HASH_ITER(hh, p->conns, c, tmp)
    conn_free(p, c);
}
