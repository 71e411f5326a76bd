/* A small thread pool that keeps slow work (RSA key generation, Lambda hook calls, database
 * writes) off Mosquitto's event loop. The loop thread submits jobs; workers run them; the loop
 * collects finished jobs with workq_drain() on its next tick and acts on them there, because only
 * that thread may call into the broker. */
#ifndef IOTMOCK_WORKQ_H
#define IOTMOCK_WORKQ_H

#include <stdbool.h>
#include <stddef.h>

#include "err.h"

struct workq;

/* A job is any struct that begins with this header; the pool links jobs through it. */
struct workq_job {
    struct workq_job *next;
    unsigned long seq;                  /* set by the pool: the order of submission */
    void (*run)(struct workq_job *job); /* on a worker thread */
    /* NULL (the usual case): the job comes back through workq_drain(). Otherwise the job never
     * comes back: the worker calls release(job, true) right after run, and workq_stop() calls
     * release(job, false) for one that never ran. For background work nobody waits for. */
    void (*release)(struct workq_job *job, bool ran);
};

/* Starts THREADS workers for workq_submit() and THREADS / 2 (at least one) for workq_submit_idle().
 * Caller frees with workq_stop(). */
enum iot_err workq_start(int threads, struct workq **out);

/* Queues JOB (the pool borrows it until it comes back through workq_drain). Never blocks. */
void workq_submit(struct workq *q, struct workq_job *job);

/* Queues JOB like workq_submit(), as one that may hold its worker for long (RSA key generation):
 * at most half the normal workers (at least one) run such jobs at once, so that the others stay
 * free for the quick ones. Jobs of both kinds start in the order submitted, as far as that limit
 * allows. */
void workq_submit_slow(struct workq *q, struct workq_job *job);

/* Queues JOB for the pool's idle workers (half as many as the normal ones, at least one), which
 * run nothing else: background work never holds up a request. A long idle job should give way
 * while workq_busy() and end early once workq_stopping(). */
void workq_submit_idle(struct workq *q, struct workq_job *job);

/* True while a job of workq_submit() or workq_submit_slow() waits or runs. Lock-free; any
 * thread. */
bool workq_busy(struct workq *q);

/* True once workq_stop() has begun. Lock-free; any thread. */
bool workq_stopping(struct workq *q);

/* Has NOTIFY(arg) called on the worker thread each time a job is ready for workq_drain() (after it
 * is, outside the pool's lock), so that the draining thread can be woken. NULL turns it off; set
 * it before submitting work. */
void workq_set_notify(struct workq *q, void (*notify)(void *arg), void *arg);

/* Calls DONE(job, arg) on the calling thread for each job that has finished running, in
 * completion order; DONE takes ownership of the job. Returns how many were handed over. */
size_t workq_drain(struct workq *q, void (*done)(struct workq_job *job, void *arg), void *arg);

/* Number of jobs submitted and not yet drained (or released). */
size_t workq_pending(struct workq *q);

/* Stops accepting work, waits for the running jobs, joins the workers, then hands every job not
 * yet drained (finished or never run) to DISCARD (may be NULL) — or to its own release() — and
 * frees the pool. */
void workq_stop(struct workq *q, void (*discard)(struct workq_job *job, void *arg), void *arg);

#endif
