/* MOSQ_EVT_TICK: the event loop's heartbeat (every turn of the loop: at least every 100 ms, and
 * right after a worker finishes, see wake.c). Marks the broker ready (listeners are open once the
 * loop runs), hands finished work back to the broker, schedules token expiry, and once a second
 * enforces the 3.1.1 keep-alive and forgets ended connections and old sessions. */
#include "plugin.h"

#include <stdlib.h>

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
    conns_check_certificates(p);
    if (now >= p->next_expiry && !p->expiry_running) {
        p->next_expiry = now + 1;
        jobs_submit_expiry(p);
    }
    return MOSQ_ERR_SUCCESS;
}
