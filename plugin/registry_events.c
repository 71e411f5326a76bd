/* Registry events (shared/spec/provisioning.md §5.3): the registry reports each committed change
 * from whichever thread made it (HTTP, workers, the broker); on_change builds the event there and
 * queues it, and the broker thread publishes the queue on its next tick, at QoS 1 and not
 * retained, like the lifecycle events. Which types are reported is the registry's business: only
 * those UpdateEventConfigurations enabled (all off by default, as on AWS). */
#include "plugin.h"

#include <pthread.h>
#include <stdlib.h>

#include <uuid/uuid.h>

#include "registry_events.h"

#define EVENT_QOS 1     /* as the lifecycle events: AWS's is undocumented */
#define QUEUE_MAX 10000 /* events waiting for a tick; more are dropped with a warning */

struct queued_event {
    struct queued_event *next;
    struct events_message m;
};

struct reg_events {
    pthread_mutex_t lock;
    struct queued_event *head, **tail;
    size_t n;
    size_t dropped; /* since the last tick */
    struct registry_events_account acct;
    struct wake *wake; /* asked to run the next tick now; NULL: it comes within 100 ms */
};

/* The registry's hook: on any thread, with the registry locked. */
static void on_change(const struct registry_change *c, void *arg)
{
    struct reg_events *q = arg;
    char event_id[37];
    uuid_t u;
    uuid_generate_random(u);
    uuid_unparse_lower(u, event_id);
    struct queued_event *e = calloc(1, sizeof(*e));
    if (e == NULL || registry_events_build(c, &q->acct, event_id, &e->m) != IOT_OK) {
        free(e);
        e = NULL;
    }
    pthread_mutex_lock(&q->lock);
    if (e != NULL && q->n < QUEUE_MAX) {
        *q->tail = e;
        q->tail = &e->next;
        q->n++;
        e = NULL;
    } else {
        q->dropped++;
    }
    pthread_mutex_unlock(&q->lock);
    if (e != NULL) {
        events_message_clear(&e->m);
        free(e);
    } else {
        wake_request(q->wake);
    }
}

bool reg_events_start(struct plugin *p)
{
    struct reg_events *q = calloc(1, sizeof(*q));
    if (q == NULL || pthread_mutex_init(&q->lock, NULL) != 0) {
        free(q);
        return false;
    }
    q->tail = &q->head;
    q->acct =
        (struct registry_events_account){.account_id = p->opt.account_id, .region = p->opt.region};
    q->wake = p->wake;
    p->reg_events = q;
    registry_set_change_hook(p->reg, on_change, q);
    return true;
}

/* Takes the whole queue, so the lock is held only for the swap. */
static struct queued_event *take(struct reg_events *q, size_t *dropped)
{
    pthread_mutex_lock(&q->lock);
    struct queued_event *all = q->head;
    q->head = NULL;
    q->tail = &q->head;
    q->n = 0;
    *dropped = q->dropped;
    q->dropped = 0;
    pthread_mutex_unlock(&q->lock);
    return all;
}

void reg_events_publish(struct plugin *p)
{
    size_t dropped;
    if (p->reg_events == NULL)
        return;
    struct queued_event *e = take(p->reg_events, &dropped);
    if (dropped > 0)
        mosquitto_log_printf(MOSQ_LOG_WARNING, "iotmock: %zu registry events dropped", dropped);
    while (e != NULL) {
        struct queued_event *next = e->next;
        int rc = mosquitto_broker_publish_copy(NULL, e->m.topic, (int)e->m.payload_len,
                                               e->m.payload, EVENT_QOS, false, NULL);
        if (rc != MOSQ_ERR_SUCCESS)
            mosquitto_log_printf(MOSQ_LOG_WARNING, "iotmock: cannot publish %s: error %d",
                                 e->m.topic, rc);
        events_message_clear(&e->m);
        free(e);
        e = next;
    }
}

void reg_events_stop(struct plugin *p)
{
    struct reg_events *q = p->reg_events;
    size_t dropped;
    if (q == NULL)
        return;
    if (p->reg != NULL)
        registry_set_change_hook(p->reg, NULL, NULL);
    for (struct queued_event *e = take(q, &dropped), *next; e != NULL; e = next) {
        next = e->next;
        events_message_clear(&e->m);
        free(e);
    }
    pthread_mutex_destroy(&q->lock);
    free(q);
    p->reg_events = NULL;
}
