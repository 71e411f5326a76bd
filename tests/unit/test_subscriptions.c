/* AWS IoT Core's topic-filter matching (broker-and-policy.md §4.4, §4.8): a decision table that
 * includes every case where AWS and the MQTT specification disagree, then the session set. */
#include <stdlib.h>

#include "check.h"
#include "subscriptions.h"

#define NO SUBSCRIPTIONS_NO_MATCH
#define YES SUBSCRIPTIONS_MATCH
#define PARENT SUBSCRIPTIONS_PARENT_ONLY

static void test_match_table(void)
{
    static const struct {
        const char *filter, *topic;
        enum subscriptions_match want;
    } cases[] = {
        /* `#` and its parent level: the AWS deviation */
        {"sensor/#", "sensor", PARENT},
        {"sensor/+/#", "sensor/a", PARENT},
        {"$share/g/sensor/#", "sensor", PARENT},
        {"sensor/#", "sensor/", YES},
        {"sensor/#", "sensor/a", YES},
        {"sensor/#", "sensor/a/b", YES},
        {"sensor/#", "sensors", NO},
        {"sensor/#", "other", NO},
        {"#", "sensor", YES},
        {"#", "a/b/c", YES},
        /* `+` */
        {"a/+", "a", NO},
        {"a/+", "a/b", YES},
        {"a/+", "a/", YES}, /* an empty level is a level */
        {"a/+", "a/b/c", NO},
        {"+/+", "/x", YES},
        {"+", "a", YES},
        {"+", "a/b", NO},
        /* exact */
        {"a/b", "a/b", YES},
        {"a/b", "a/bc", NO},
        {"a/b", "a/b/", NO},
        {"a/b/", "a/b", NO},
        {"a//b", "a//b", YES},
        /* `$` topics and first-level wildcards */
        {"#", "$aws/events/x", NO},
        {"+/events/#", "$aws/events/x", NO},
        {"$aws/events/#", "$aws/events/presence/connected/c", YES},
        {"$aws/events/presence/+/c", "$aws/events/presence/connected/c", YES},
        {"$share/g/#", "$SYS/x", NO},
        /* shared subscriptions match by their filter part */
        {"$share/g/a/+", "a/b", YES},
        {"$share/g/a/b", "g/a/b", NO},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        enum subscriptions_match got = subscriptions_match(cases[i].filter, cases[i].topic);
        if (got != cases[i].want)
            fprintf(stderr, "case %zu: %s vs %s\n", i, cases[i].filter, cases[i].topic);
        CHECK_INT(got, cases[i].want);
    }
}

static void test_filter_part_and_retained(void)
{
    CHECK_STR(subscriptions_filter_part("$share/g/a/b"), "a/b");
    CHECK_STR(subscriptions_filter_part("a/b"), "a/b");
    CHECK_STR(subscriptions_filter_part("$share/g"), "");
    CHECK(!subscriptions_retained_on_subscribe("a/+"));
    CHECK(!subscriptions_retained_on_subscribe("a/#"));
    CHECK(!subscriptions_retained_on_subscribe("#"));
    CHECK(!subscriptions_retained_on_subscribe("$share/g/a/b"));
    CHECK(subscriptions_retained_on_subscribe("a/b"));
    CHECK(subscriptions_retained_on_subscribe("$aws/things/t/shadow/get/accepted"));
}

/* The counts for TOPIC as "aws/mqtt". */
static const char *counts(const struct subscriptions *s, const char *topic)
{
    static char buf[32];
    size_t aws = 99, mqtt = 99;
    subscriptions_count_matches(s, topic, &aws, &mqtt);
    snprintf(buf, sizeof(buf), "%zu/%zu", aws, mqtt);
    return buf;
}

static void test_set(void)
{
    struct subscriptions *s = subscriptions_new();
    CHECK(s != NULL);
    CHECK_INT(subscriptions_count(s), 0);
    CHECK(!subscriptions_remove(s, "a"));
    CHECK_STR(counts(s, "a"), "0/0");
    CHECK_INT(subscriptions_add(s, "a/#", 1), IOT_OK);
    CHECK_INT(subscriptions_add(s, "a/#", 1), IOT_OK); /* again: still one */
    CHECK_INT(subscriptions_count(s), 1);
    CHECK(subscriptions_has(s, "a/#"));
    CHECK(!subscriptions_has(s, "a/+"));
    /* Only the parent-level filter matches `a`: MQTT sends one copy, AWS none. */
    CHECK_STR(counts(s, "a"), "0/1");
    CHECK_STR(counts(s, "a/b"), "1/1");
    CHECK_STR(counts(s, "zzz"), "0/0");
    /* An exact filter for the parent too: AWS one copy, MQTT two. */
    CHECK_INT(subscriptions_add(s, "a", 1), IOT_OK);
    CHECK_STR(counts(s, "a"), "1/2");
    CHECK_INT(subscriptions_add(s, "+", 1), IOT_OK);
    CHECK_STR(counts(s, "a"), "2/3");
    CHECK(subscriptions_remove(s, "+"));
    CHECK(subscriptions_remove(s, "a"));
    CHECK_STR(counts(s, "a"), "0/1");
    CHECK(subscriptions_remove(s, "a/#"));
    CHECK(!subscriptions_remove(s, "a/#"));
    CHECK_INT(subscriptions_count(s), 0);
    /* Without a "/#" filter nothing is scanned: both counts stay 0. */
    CHECK_INT(subscriptions_add(s, "a", 1), IOT_OK);
    CHECK_STR(counts(s, "a"), "0/0");
    CHECK(subscriptions_remove(s, "a"));
    /* Shared: the same rule through the filter part. */
    CHECK_INT(subscriptions_add(s, "$share/g/b/#", 1), IOT_OK);
    CHECK_STR(counts(s, "b"), "0/1");
    CHECK_STR(counts(s, "b/c"), "1/1");
    char name[32];
    for (int i = 0; i < 60; i++) {
        snprintf(name, sizeof(name), "t/%d", i);
        CHECK_INT(subscriptions_add(s, name, 1), IOT_OK);
    }
    CHECK_INT(subscriptions_count(s), 61);
    subscriptions_clear(s);
    CHECK_INT(subscriptions_count(s), 0);
    CHECK_STR(counts(s, "b"), "0/0");
    subscriptions_free(s);
    subscriptions_free(NULL);
    CHECK_STR(counts(NULL, "b"), "0/0");
    CHECK_INT(subscriptions_count(NULL), 0);
}

/* The QoS of each filter matching TOPIC, as "n:q,q,...". */
static const char *matching(const struct subscriptions *s, const char *topic, bool mqtt_rules)
{
    static char buf[64];
    int qos[4];
    size_t n = subscriptions_matching(s, topic, mqtt_rules, qos, 4);
    int at = snprintf(buf, sizeof(buf), "%zu:", n);
    int sum = 0;
    for (size_t i = 0; i < n && i < 4; i++)
        sum += qos[i]; /* the hash order is not the subscription order: a sum is stable */
    snprintf(buf + at, sizeof(buf) - (size_t)at, "%d", sum);
    return buf;
}

static void test_matching(void)
{
    struct subscriptions *s = subscriptions_new();
    CHECK(s != NULL);
    CHECK_STR(matching(s, "$aws/certificates/create/json/accepted", false), "0:0");
    CHECK_INT(subscriptions_add(s, "$aws/certificates/create/json/accepted", 0), IOT_OK);
    CHECK_STR(matching(s, "$aws/certificates/create/json/accepted", false), "1:0");
    /* Subscribing again replaces the QoS. */
    CHECK_INT(subscriptions_add(s, "$aws/certificates/create/json/accepted", 1), IOT_OK);
    CHECK_STR(matching(s, "$aws/certificates/create/json/accepted", false), "1:1");
    CHECK_STR(matching(s, "$aws/certificates/create/json/rejected", false), "0:0");
    /* A second matching filter: a second copy. */
    CHECK_INT(subscriptions_add(s, "$aws/certificates/create/json/+", 2), IOT_OK);
    CHECK_STR(matching(s, "$aws/certificates/create/json/accepted", false), "2:3");
    CHECK_STR(matching(s, "$aws/certificates/create/json/rejected", false), "1:2");
    /* `#` does not match its parent on AWS; it does by the specification. */
    CHECK_INT(subscriptions_add(s, "$aws/certificates/create/json/accepted/#", 1), IOT_OK);
    CHECK_STR(matching(s, "$aws/certificates/create/json/accepted", false), "2:3");
    CHECK_STR(matching(s, "$aws/certificates/create/json/accepted", true), "3:4");
    /* A first-level wildcard never matches a `$` topic; a shared filter matches by its part. */
    CHECK_INT(subscriptions_add(s, "#", 1), IOT_OK);
    CHECK_STR(matching(s, "$aws/certificates/create/json/rejected", false), "1:2");
    CHECK_INT(subscriptions_add(s, "$share/g/$aws/certificates/create/json/rejected", 0), IOT_OK);
    CHECK_STR(matching(s, "$aws/certificates/create/json/rejected", false), "2:2");
    /* More matches than room: the count is whole, only MAX QoS values are written. */
    int one[1] = {-1};
    CHECK_INT(subscriptions_matching(s, "$aws/certificates/create/json/rejected", false, one, 1),
              2);
    CHECK(one[0] == 0 || one[0] == 2);
    CHECK_INT(subscriptions_matching(NULL, "a", false, one, 1), 0);
    subscriptions_free(s);
}

int main(void)
{
    test_match_table();
    test_filter_part_and_retained();
    test_set();
    test_matching();
    return check_summary();
}
