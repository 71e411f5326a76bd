/* Per-connection state, keyed by client id. Mosquitto 2.0 gives plugins no per-client storage,
 * so iotmock keeps its own: which certificate a connection authenticated with, and a generation
 * number that tells one connection from a later one reusing its client id (an answer is owed to
 * the connection that asked, not to whoever holds the id next). */
#include "plugin.h"

#include <stdlib.h>
#include <string.h>

struct conn *conns_connect(struct plugin *p, const struct mosquitto *client, const char *cert_id)
{
    const char *id = mosquitto_client_id(client);
    if (id == NULL)
        return NULL;
    struct conn *c = NULL;
    HASH_FIND_STR(p->conns, id, c);
    if (c == NULL) {
        c = calloc(1, sizeof(*c));
        if (c == NULL || (c->client_id = strdup(id)) == NULL) {
            free(c);
            return NULL;
        }
        HASH_ADD_KEYPTR(hh, p->conns, c->client_id, strlen(c->client_id), c);
    }
    c->client = client;
    c->generation = ++p->generations;
    snprintf(c->cert_id, sizeof(c->cert_id), "%s", cert_id);
    return c;
}

struct conn *conns_by_id(struct plugin *p, const char *client_id)
{
    struct conn *c = NULL;
    if (client_id)
        HASH_FIND_STR(p->conns, client_id, c);
    return c;
}

struct conn *conns_find(struct plugin *p, const struct mosquitto *client)
{
    struct conn *c = conns_by_id(p, mosquitto_client_id(client));
    return c && c->client == client ? c : NULL;
}

static void conn_free(struct plugin *p, struct conn *c)
{
    HASH_DEL(p->conns, c);
    authz_clear(c);
    free(c->client_id);
    free(c);
}

void conns_disconnect(struct plugin *p, const struct mosquitto *client)
{
    struct conn *c = conns_find(p, client);
    if (c)
        conn_free(p, c);
}

void conns_clear(struct plugin *p)
{
    struct conn *c, *tmp;
    HASH_ITER(hh, p->conns, c, tmp)
    conn_free(p, c);
}

int on_disconnect(int event, void *event_data, void *userdata)
{
    struct mosquitto_evt_disconnect *ed = event_data;
    conns_disconnect(userdata, ed->client);
    return MOSQ_ERR_SUCCESS;
}
