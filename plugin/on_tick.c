/* MOSQ_EVT_TICK: the event loop's heartbeat. Marks the broker ready (listeners are open once the
 * loop runs), hands finished work back to the broker, and schedules token expiry. */
#include "plugin.h"

#include <stdlib.h>

static void forget_stale_replies(struct plugin *p, time_t now)
{
    struct pending_reply **link = &p->replies;
    while (*link) {
        struct pending_reply *r = *link;
        if (r->deadline > now) {
            link = &r->next;
            continue;
        }
        *link = r->next;
        free(r->client_id);
        free(r->topic);
        free(r->payload);
        free(r);
    }
}

int on_tick(int event, void *event_data, void *userdata)
{
    struct plugin *p = userdata;
    time_t now = time(NULL);
    atomic_store(&p->ready, true);
    workq_drain(p->workq, jobs_done, p);
    forget_stale_replies(p, now);
    if (now >= p->next_expiry && !p->expiry_running) {
        p->next_expiry = now + 1;
        jobs_submit_expiry(p);
    }
    return MOSQ_ERR_SUCCESS;
}
