/* The topic filters one MQTT session holds, and how AWS IoT Core matches them against topics
 * (shared/spec/broker-and-policy.md §4.4, §4.8, §8.3 items 1–2). Two differences from the MQTT
 * specification: `#` does not match its parent level (`sensor/#` does not receive `sensor`), and
 * a stored retained message is sent on subscribe only to an exact (wildcard-free, unshared)
 * filter. A broker that matches by the specification asks this module which deliveries AWS would
 * not make. */
#ifndef IOTMOCK_SUBSCRIPTIONS_H
#define IOTMOCK_SUBSCRIPTIONS_H

#include <stdbool.h>
#include <stddef.h>

#include "err.h"

enum subscriptions_match {
    SUBSCRIPTIONS_NO_MATCH = 0,
    SUBSCRIPTIONS_MATCH,       /* matches on AWS and by the MQTT specification */
    SUBSCRIPTIONS_PARENT_ONLY, /* matches only by MQTT's "# also matches the parent level" rule */
};

/* How FILTER (a topic filter; a shared one with its $share/<name>/ prefix) matches TOPIC.
 * Wildcards in the first level never match a topic starting with `$`. */
enum subscriptions_match subscriptions_match(const char *filter, const char *topic);

/* FILTER without its $share/<name>/ prefix (FILTER itself if it is not shared); borrowed. */
const char *subscriptions_filter_part(const char *filter);

/* Whether a stored retained message is sent when FILTER is subscribed (§4.8): only when the
 * filter has no wildcard and is not a shared subscription. */
bool subscriptions_retained_on_subscribe(const char *filter);

struct subscriptions_entry;

/* A set of filters. Its fields are private to subscriptions.c; they are declared here only so
 * that a set can be a member of another struct (subscriptions_init()). */
struct subscriptions {
    struct subscriptions_entry *by_filter;
    size_t parent_hashes; /* filters ending in "/#": the only ones AWS and MQTT disagree on */
};

/* An empty set; NULL when out of memory. Free with subscriptions_free() (NULL is a no-op). */
struct subscriptions *subscriptions_new(void);
void subscriptions_free(struct subscriptions *s);
/* An empty set in place, for a set inside another struct; subscriptions_clear() releases what
 * it holds. */
void subscriptions_init(struct subscriptions *s);
void subscriptions_clear(struct subscriptions *s);

size_t subscriptions_count(const struct subscriptions *s);
bool subscriptions_has(const struct subscriptions *s, const char *filter);
/* Adds a copy of FILTER (exact string as subscribed) with its QoS; a filter already present only
 * takes the new QoS. IOT_ERR_NOMEM. */
enum iot_err subscriptions_add(struct subscriptions *s, const char *filter, int qos);
/* Removes FILTER; false if the set did not hold it. */
bool subscriptions_remove(struct subscriptions *s, const char *filter);

/* How many filters of the set match TOPIC: *AWS by AWS's rules, *MQTT by the MQTT
 * specification's (which also counts the filters matching only as the parent of their `#`). A
 * broker matching by the specification sends *MQTT copies, one per matching subscription; AWS
 * sends *AWS. When the set holds no filter ending in `/#` both are equal and nothing is
 * scanned. */
void subscriptions_count_matches(const struct subscriptions *s, const char *topic, size_t *aws,
                                 size_t *mqtt);

/* The filters of the set that match TOPIC by AWS's rules (by the specification's with
 * MQTT_RULES): returns how many, and stores the QoS of the first MAX of them in QOS. This is how a
 * message published to one client directly, outside the broker's subscription routing, is sent as
 * the routing would have sent it: one copy per matching filter. */
size_t subscriptions_matching(const struct subscriptions *s, const char *topic, bool mqtt_rules,
                              int *qos, size_t max);

#endif
