/* MOSQ_EVT_TICK: the event loop's heartbeat (every turn of the loop: at least every 100 ms, and
 * right after a worker finishes, see wake.c). Marks the broker ready (listeners are open once the
 * loop runs), hands finished work back to the broker, schedules token expiry, and once a second
 * enforces the 3.1.1 keep-alive and forgets ended connections and old sessions. */
#include "plugin.h"

#include <stdlib.h>

/* Once a second at most: ticks come as often as answers do. */
static void forget_stale_replies(struct plugin *p, time_t now)
{
    if (p->n_replies == 0 || now == p->replies_swept)
        return;
    p->replies_swept = now;
    struct conn *c, *tmp;
    HASH_ITER(hh, p->conns, c, tmp)
    {
        struct pending_reply **link = &c->replies;
        while (*link) {
            struct pending_reply *r = *link;
            if (r->deadline > now) {
                link = &r->next;
                continue;
            }
            *link = r->next;
            replies_free_one(p, r);
        }
    }
}

int on_tick(int event, void *event_data, void *userdata)
{
    struct plugin *p = userdata;
    time_t now = time(NULL);
    atomic_store(&p->ready, true);
    broker_event(p, NULL);
    wake_drained(p->wake);
    workq_drain(p->workq, jobs_done, p);
    reg_events_publish(p);
    broker_tick(p, now);
    if (now >= p->next_sweep) {
        p->next_sweep = now + 1;
        conns_sweep(p, now);
        sessions_expire(p->sessions, now);
    }
    forget_stale_replies(p, now);
    conns_check_certificates(p);
    if (now >= p->next_expiry && !p->expiry_running) {
        p->next_expiry = now + 1;
        jobs_submit_expiry(p);
    }
    return MOSQ_ERR_SUCCESS;
}
