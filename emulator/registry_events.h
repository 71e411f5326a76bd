/* Registry events (shared/spec/provisioning.md §5.3): the topic and JSON payload AWS IoT Core
 * publishes for one registry change, field for field and in AWS's order. The registry reports
 * the changes (registry_set_change_hook()); the adapter publishes what this module builds. */
#ifndef IOTMOCK_REGISTRY_EVENTS_H
#define IOTMOCK_REGISTRY_EVENTS_H

#include "err.h"
#include "events.h"
#include "registry.h"

/* Where the events go and what ARNs say. */
struct registry_events_account {
    const char *account_id;
    const char *region;
};

/* Fills *OUT (cleared first) with the event for change C, identified by EVENT_ID (a UUID the
 * caller makes). IOT_ERR_INVALID_REQUEST if C lacks a field its topic needs, IOT_ERR_NOMEM when
 * out of memory (*OUT then empty); events_message_clear() frees *OUT. */
enum iot_err registry_events_build(const struct registry_change *c,
                                   const struct registry_events_account *acct, const char *event_id,
                                   struct events_message *out);

#endif
