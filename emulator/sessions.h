/* What AWS IoT Core keeps per client id from one connection to the next
 * (shared/spec/broker-and-policy.md §4.7, §5.1): the lifecycle versionNumber — one per
 * connection, increasing, back to 0 once the client id has been offline for about an hour — the
 * sessionIdentifier — a UUID per session, kept when a persistent session is resumed — and the
 * session's topic filters.
 *
 * Not thread-safe: one owner (the broker thread). */
#ifndef IOTMOCK_SESSIONS_H
#define IOTMOCK_SESSIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "subscriptions.h"

#define SESSIONS_RESET_AFTER_S 3600 /* offline this long: versionNumber restarts at 0 */
#define SESSIONS_OFFLINE_MAX 100000 /* offline records kept at most (oldest forgotten) */
#define SESSIONS_ID_LEN 36          /* a UUID in its 8-4-4-4-12 text form */

struct session {
    const char *client_id;        /* valid as long as the record */
    char id[SESSIONS_ID_LEN + 1]; /* sessionIdentifier */
    long long version;            /* versionNumber of the latest connection */
    struct subscriptions *subs;   /* the session's filters as subscribed */
    bool persistent;              /* the latest connection asked to keep its session */
    int connections;              /* live connections of this client id (2 during a takeover) */
    time_t offline_since;         /* when connections dropped to 0 */
};

struct sessions;

/* An empty table; NULL when out of memory. MAX_OFFLINE 0 means SESSIONS_OFFLINE_MAX. */
struct sessions *sessions_new(size_t max_offline);
void sessions_free(struct sessions *s); /* NULL is a no-op */

/* The record of CLIENT_ID, or NULL. Borrowed: valid until sessions_expire() or _free(). */
struct session *sessions_find(struct sessions *s, const char *client_id);

/* A connection of CLIENT_ID was accepted at NOW. PERSISTENT: it asked to keep or resume its
 * session (MQTT clean session / clean start = 0). Its versionNumber is the previous connection's
 * plus one, or 0 for a client id not seen within SESSIONS_RESET_AFTER_S. The session identifier
 * and the filters carry over when both this and the previous connection are persistent;
 * otherwise the session is new (new identifier, no filters). Returns the record (borrowed, as
 * for sessions_find()), NULL when out of memory. */
struct session *sessions_connect(struct sessions *s, const char *client_id, bool persistent,
                                 time_t now);

/* One connection of SESSION ended at NOW. When it was the last one, a non-persistent session's
 * filters are dropped, and the record is kept (for versionNumber) until sessions_expire(). */
void sessions_disconnect(struct sessions *s, struct session *session, time_t now);

/* Forgets the records offline since before NOW - SESSIONS_RESET_AFTER_S, and the oldest offline
 * ones beyond the table's maximum. Returns how many were forgotten. */
size_t sessions_expire(struct sessions *s, time_t now);

/* Records in the table (online and offline). */
size_t sessions_count(const struct sessions *s);

#endif
