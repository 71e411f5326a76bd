/* Per-client-id session records (broker-and-policy.md §4.7, §5.1): versionNumber per connection,
 * reset after an hour offline; sessionIdentifier and filters kept only across persistent
 * connections; takeover (two connections of one id); expiry and the offline cap. */
#include <stdlib.h>

#include "check.h"
#include "sessions.h"

static bool is_uuid(const char *s)
{
    if (strlen(s) != SESSIONS_ID_LEN)
        return false;
    for (int i = 0; i < SESSIONS_ID_LEN; i++) {
        bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? s[i] != '-' : strchr("0123456789abcdef", s[i]) == NULL)
            return false;
    }
    return true;
}

static void test_versions_and_ids(void)
{
    struct sessions *t = sessions_new(0);
    time_t now = 1000000;
    CHECK(sessions_find(t, "c") == NULL);
    struct session *s = sessions_connect(t, "c", false, now);
    CHECK(s != NULL);
    CHECK_INT(s->version, 0);
    CHECK(is_uuid(s->id));
    CHECK_STR(s->client_id, "c");
    char first[SESSIONS_ID_LEN + 1];
    memcpy(first, s->id, sizeof(first));
    sessions_disconnect(t, s, now + 1);
    CHECK(sessions_find(t, "c") == s); /* kept offline, for the version */
    s = sessions_connect(t, "c", false, now + 2);
    CHECK_INT(s->version, 1);
    CHECK(strcmp(s->id, first) != 0); /* a clean connection is a new session */
    sessions_disconnect(t, s, now + 3);
    /* Offline for over an hour: versionNumber starts again at 0. */
    s = sessions_connect(t, "c", false, now + 3 + SESSIONS_RESET_AFTER_S + 1);
    CHECK_INT(s->version, 0);
    sessions_free(t);
}

static void test_persistent(void)
{
    struct sessions *t = sessions_new(0);
    time_t now = 5000;
    struct session *s = sessions_connect(t, "p", true, now);
    char id[SESSIONS_ID_LEN + 1];
    memcpy(id, s->id, sizeof(id));
    CHECK_INT(subscriptions_add(s->subs, "a/#", 1), IOT_OK);
    sessions_disconnect(t, s, now);
    CHECK_INT(subscriptions_count(s->subs), 1); /* the session outlives the connection */
    s = sessions_connect(t, "p", true, now + 10);
    CHECK_STR(s->id, id);
    CHECK_INT(s->version, 1);
    CHECK(subscriptions_has(s->subs, "a/#"));
    sessions_disconnect(t, s, now + 11);
    /* A clean connection ends the session. */
    s = sessions_connect(t, "p", false, now + 12);
    CHECK(strcmp(s->id, id) != 0);
    CHECK_INT(subscriptions_count(s->subs), 0);
    CHECK_INT(subscriptions_add(s->subs, "b", 1), IOT_OK);
    sessions_disconnect(t, s, now + 13);
    CHECK_INT(subscriptions_count(s->subs), 0); /* non-persistent: filters dropped */
    /* Persistent after a clean one: a new session too. */
    memcpy(id, s->id, sizeof(id));
    s = sessions_connect(t, "p", true, now + 14);
    CHECK(strcmp(s->id, id) != 0);
    sessions_free(t);
}

static void test_takeover(void)
{
    struct sessions *t = sessions_new(0);
    struct session *old = sessions_connect(t, "d", true, 10);
    CHECK_INT(subscriptions_add(old->subs, "x", 1), IOT_OK);
    char id[SESSIONS_ID_LEN + 1];
    memcpy(id, old->id, sizeof(id));
    /* The newcomer is accepted while the old connection is still up. */
    struct session *now = sessions_connect(t, "d", true, 11);
    CHECK(now == old);
    CHECK_INT(now->connections, 2);
    CHECK_INT(now->version, 1);
    CHECK_STR(now->id, id);
    sessions_disconnect(t, old, 11); /* the old connection goes */
    CHECK_INT(now->connections, 1);
    CHECK(subscriptions_has(now->subs, "x"));
    CHECK_INT(sessions_expire(t, 11 + 2 * SESSIONS_RESET_AFTER_S), 0); /* online: never */
    sessions_disconnect(t, now, 12);
    sessions_disconnect(t, now, 12); /* extra: ignored */
    CHECK_INT(now->connections, 0);
    sessions_free(t);
}

static void test_expiry(void)
{
    struct sessions *t = sessions_new(3);
    char id[16];
    for (int i = 0; i < 5; i++) {
        snprintf(id, sizeof(id), "e%d", i);
        sessions_disconnect(t, sessions_connect(t, id, false, 100 + i), 100 + i);
    }
    CHECK_INT(sessions_count(t), 5);
    CHECK_INT(sessions_expire(t, 200), 2); /* over the cap: the two oldest */
    CHECK(sessions_find(t, "e0") == NULL && sessions_find(t, "e1") == NULL);
    CHECK(sessions_find(t, "e2") != NULL);
    /* Back online: off the offline list, never expired while connected. */
    struct session *s = sessions_connect(t, "e2", false, 300);
    CHECK_INT(s->version, 1);
    CHECK_INT(sessions_expire(t, 104 + SESSIONS_RESET_AFTER_S + 1), 2); /* e3, e4 */
    CHECK_INT(sessions_count(t), 1);
    CHECK(sessions_find(t, "e2") == s);
    sessions_free(t);
    sessions_free(NULL);
}

/* Records come from blocks and go back to a free list: thousands of client ids, including ids
 * longer than a record holds inline (AWS's 128-byte limit switched off) and ids of exactly 128
 * bytes, keep their own state through expiry and reuse. */
static void test_many_and_long_ids(void)
{
    struct sessions *t = sessions_new(1000);
    char id[300];
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < 1500; i++) {
            int pad = i % 3 == 0 ? 250 : i % 3 == 1 ? 128 : 1;
            snprintf(id, sizeof(id), "%0*d", pad, i);
            struct session *s = sessions_connect(t, id, i % 2 == 0, 1000 * round + i);
            CHECK(s != NULL);
            CHECK_STR(s->client_id, id);
            CHECK_INT(subscriptions_count(s->subs), i % 2 == 0 && round > 0 && i >= 500 ? 1 : 0);
            CHECK_INT(subscriptions_add(s->subs, "x/+", 1), IOT_OK);
            sessions_disconnect(t, s, 1000 * round + i);
        }
        /* The cap of 1000 offline records: the 500 oldest of this round go. */
        CHECK_INT(sessions_expire(t, 1000 * round + 1500), 500);
        CHECK_INT(sessions_count(t), 1000);
        snprintf(id, sizeof(id), "%0*d", 250, 1497);
        struct session *s = sessions_find(t, id);
        CHECK(s != NULL && strcmp(s->client_id, id) == 0);
        CHECK_INT(s->version, round);
        snprintf(id, sizeof(id), "%0*d", 128, 499);
        CHECK(sessions_find(t, id) == NULL);
    }
    sessions_free(t);
}

int main(void)
{
    test_versions_and_ids();
    test_persistent();
    test_takeover();
    test_expiry();
    test_many_and_long_ids();
    return check_summary();
}
