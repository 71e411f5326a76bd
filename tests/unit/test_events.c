/* Lifecycle event topics and payloads (broker-and-policy.md §5): the exact bytes, field order
 * included, for each event type. */
#include <stdlib.h>

#include "check.h"
#include "events.h"

#define CERT "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define SESSION "a4666d2a-7d84-4ae4-ac5d-7b38c9cb7967"

static const struct events_client client = {
    .client_id = "186b5", .principal = CERT, .session_id = SESSION, .version = 7};

static void test_connected(void)
{
    struct events_message m;
    CHECK_INT(events_connected(&client, 1573002230757LL, "192.0.2.0", &m), IOT_OK);
    CHECK_STR(m.topic, "$aws/events/presence/connected/186b5");
    CHECK_STR(m.payload, "{\"clientId\":\"186b5\",\"timestamp\":1573002230757,"
                         "\"eventType\":\"connected\",\"sessionIdentifier\":\"" SESSION "\","
                         "\"principalIdentifier\":\"" CERT "\",\"ipAddress\":\"192.0.2.0\","
                         "\"versionNumber\":7}");
    CHECK_INT(m.payload_len, strlen(m.payload));
    events_message_clear(&m);
    CHECK(m.topic == NULL && m.payload == NULL);
}

static void test_disconnected(void)
{
    static const struct {
        enum events_reason reason;
        const char *name;
        const char *by_client;
    } cases[] = {
        {EVENTS_CLIENT_INITIATED_DISCONNECT, "CLIENT_INITIATED_DISCONNECT", "true"},
        {EVENTS_CONNECTION_LOST, "CONNECTION_LOST", "false"},
        {EVENTS_DUPLICATE_CLIENTID, "DUPLICATE_CLIENTID", "false"},
        {EVENTS_MQTT_KEEP_ALIVE_TIMEOUT, "MQTT_KEEP_ALIVE_TIMEOUT", "false"},
        {EVENTS_AUTH_ERROR, "AUTH_ERROR", "false"},
        {EVENTS_CLIENT_ERROR, "CLIENT_ERROR", "false"},
        {EVENTS_API_INITIATED_DISCONNECT, "API_INITIATED_DISCONNECT", "false"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct events_message m;
        char want[512];
        CHECK_INT(events_disconnected(&client, 1573002340451LL, cases[i].reason, &m), IOT_OK);
        CHECK_STR(m.topic, "$aws/events/presence/disconnected/186b5");
        snprintf(want, sizeof(want),
                 "{\"clientId\":\"186b5\",\"timestamp\":1573002340451,"
                 "\"eventType\":\"disconnected\",\"sessionIdentifier\":\"" SESSION "\","
                 "\"principalIdentifier\":\"" CERT "\",\"clientInitiatedDisconnect\":%s,"
                 "\"disconnectReason\":\"%s\",\"versionNumber\":7}",
                 cases[i].by_client, cases[i].name);
        CHECK_STR(m.payload, want);
        events_message_clear(&m);
    }
}

static void test_subscriptions(void)
{
    const char *filters[] = {"foo/bar", "device/+/data", "quote\"d"};
    struct events_message m;
    CHECK_INT(events_subscriptions(&client, 1460065214626LL, true, filters, 3, &m), IOT_OK);
    CHECK_STR(m.topic, "$aws/events/subscriptions/subscribed/186b5");
    CHECK_STR(m.payload, "{\"clientId\":\"186b5\",\"timestamp\":1460065214626,"
                         "\"eventType\":\"subscribed\",\"sessionIdentifier\":\"" SESSION "\","
                         "\"principalIdentifier\":\"" CERT "\","
                         "\"topics\":[\"foo/bar\",\"device/+/data\",\"quote\\\"d\"]}");
    events_message_clear(&m);
    CHECK_INT(events_subscriptions(&client, 1, false, filters, 1, &m), IOT_OK);
    CHECK_STR(m.topic, "$aws/events/subscriptions/unsubscribed/186b5");
    CHECK(strstr(m.payload, "\"eventType\":\"unsubscribed\"") != NULL);
    CHECK(strstr(m.payload, "\"topics\":[\"foo/bar\"]}") != NULL);
    events_message_clear(&m);
}

static void test_connect_failed_and_thing(void)
{
    struct events_client c = client;
    c.thing_name = "Thing1";
    struct events_message m;
    CHECK_INT(events_connect_failed(&c, 42, "::1", &m), IOT_OK);
    CHECK_STR(m.topic, "$aws/events/presence/connect_failed/186b5");
    CHECK_STR(m.payload,
              "{\"clientId\":\"186b5\",\"thingName\":\"Thing1\",\"timestamp\":42,"
              "\"eventType\":\"connect_failed\",\"sessionIdentifier\":\"" SESSION "\","
              "\"principalIdentifier\":\"" CERT "\","
              "\"connectFailureReason\":\"AUTHORIZATION_FAILED\",\"ipAddress\":\"::1\"}");
    events_message_clear(&m);
}

static void test_client_ids_and_names(void)
{
    CHECK(events_client_id_has_events("thing-1"));
    CHECK(events_client_id_has_events("a/b"));
    CHECK(!events_client_id_has_events("a+b"));
    CHECK(!events_client_id_has_events("#"));
    CHECK(!events_client_id_has_events(NULL));
    CHECK_STR(events_reason_name(EVENTS_THROTTLED), "THROTTLED");
    CHECK_STR(events_reason_name((enum events_reason)99), "UNKNOWN");
    long long t = events_now_ms();
    CHECK(t > 1600000000000LL && t < 4102444800000LL); /* 2020 .. 2100, in milliseconds */
}

int main(void)
{
    test_connected();
    test_disconnected();
    test_subscriptions();
    test_connect_failed_and_thing();
    test_client_ids_and_names();
    return check_summary();
}
