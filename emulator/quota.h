/* AWS IoT Core's message broker limits that a stock MQTT broker does not have
 * (shared/spec/broker-and-policy.md §4.2–§4.6): topic and topic-filter length and depth, client
 * ids, payload size, the keep-alive range, subscriptions per connection. Pure functions on
 * strings; the adapter decides what a violation does on the wire (§3). */
#ifndef IOTMOCK_QUOTA_H
#define IOTMOCK_QUOTA_H

#include <stdbool.h>
#include <stddef.h>

#define QUOTA_PAYLOAD_MAX (128 * 1024) /* bytes of PUBLISH payload (§4.5) */
#define QUOTA_TOPIC_MAX 256            /* bytes, after the prefixes below (§4.4) */
#define QUOTA_TOPIC_SLASHES_MAX 7      /* at most 8 levels, after the prefixes below */
#define QUOTA_SHARE_NAME_MAX 128       /* the <name> of $share/<name>/ */
#define QUOTA_FILTERS_PER_SUBSCRIBE 8  /* topic filters in one SUBSCRIBE (§4.6) */
#define QUOTA_SUBSCRIPTIONS_MAX 50     /* subscriptions per connection (§4.6) */
#define QUOTA_CLIENT_ID_MAX 128        /* bytes (§4.2) */
#define QUOTA_KEEPALIVE_MIN 30         /* seconds (§4.3) */
#define QUOTA_KEEPALIVE_MAX 1200       /* seconds; also what 0 means */

/* Prefixes that do not count towards the length and depth of a topic (§4.4): Basic Ingest
 * ($aws/rules/<rule>/, compared case-insensitively as the CRT does) and, for filters, a shared
 * subscription's $share/<name>/. */
#define QUOTA_RULES_PREFIX "$aws/rules/"
#define QUOTA_RULES_PREFIX_LEN 11
#define QUOTA_SHARE_PREFIX "$share/"
#define QUOTA_SHARE_PREFIX_LEN 7

enum quota_result {
    QUOTA_OK = 0,
    QUOTA_EMPTY,           /* an empty topic, filter or share name */
    QUOTA_TOO_LONG,        /* topic or filter over 256 bytes, client id over 128 */
    QUOTA_TOO_DEEP,        /* more than 7 slashes */
    QUOTA_BAD_SHARE,       /* $share/<name>/<filter> without a filter, or a name over 128
                               bytes or containing + or # */
    QUOTA_RESERVED_PREFIX, /* a client id starting with $ */
};

/* A sentence saying which rule a result broke ("" for QUOTA_OK); static. */
const char *quota_result_text(enum quota_result r);

/* A topic name of LEN bytes (PUBLISH, Will). */
enum quota_result quota_check_topic(const char *topic, size_t len);
/* A topic filter of LEN bytes as sent in SUBSCRIBE, $share/<name>/ included. */
enum quota_result quota_check_filter(const char *filter, size_t len);
/* A client id of LEN bytes. */
enum quota_result quota_check_client_id(const char *id, size_t len);

/* The keep-alive AWS applies when a client asks for REQUESTED seconds: 0 and anything above MAX
 * become MAX, 1..29 become 30 (§4.3). MAX 0 means QUOTA_KEEPALIVE_MAX. */
unsigned quota_keepalive(unsigned requested, unsigned max);

#endif
