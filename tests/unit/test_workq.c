/* The worker pool: every job runs exactly once, comes back exactly once, and stop discards what
 * was never drained. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

#include "check.h"
#include "workq.h"

struct counted {
    struct workq_job base;
    int value;
    int ran;
};

static atomic_int runs;

static void run(struct workq_job *j)
{
    struct counted *c = (struct counted *)j;
    c->ran++;
    atomic_fetch_add(&runs, 1);
}

static int drained_sum, drained_count;

static void done(struct workq_job *j, void *arg)
{
    struct counted *c = (struct counted *)j;
    CHECK_INT(c->ran, 1);
    drained_sum += c->value;
    drained_count++;
    free(c);
}

static int discarded;

static void discard(struct workq_job *j, void *arg)
{
    discarded++;
    free(j);
}

/* Released jobs (workq_job.release) never come back through the drain. */
static atomic_int released_ran, released_unrun;

static void release(struct workq_job *j, bool ran)
{
    atomic_fetch_add(ran ? &released_ran : &released_unrun, 1);
    free(j);
}

static atomic_int notified;

static void notify(void *arg)
{
    CHECK(arg == &notified);
    atomic_fetch_add(&notified, 1);
}

/* A job that holds its worker until told to go. */
static atomic_bool gate_open;
static atomic_int idle_ran;

static void gated(struct workq_job *j)
{
    while (!atomic_load(&gate_open))
        usleep(500);
}

static void idle_run(struct workq_job *j)
{
    atomic_fetch_add(&idle_ran, 1);
}

static void drop(struct workq_job *j, void *arg)
{
    free(j);
}

static bool wait_for(atomic_int *v, int value)
{
    for (int i = 0; i < 2000 && atomic_load(v) != value; i++)
        usleep(1000);
    return atomic_load(v) == value;
}

/* Idle jobs run on their own workers, even while every normal worker is taken; workq_busy() tells
 * whether normal work waits or runs; released jobs are not drained; notify fires per drained job. */
static void test_idle_release_notify(void)
{
    struct workq *q = NULL;
    CHECK_INT(workq_start(1, &q), IOT_OK);
    workq_set_notify(q, notify, &notified);
    CHECK(!workq_busy(q));
    for (int i = 0; i < 3; i++) {
        struct workq_job *j = calloc(1, sizeof(*j));
        j->run = gated;
        workq_submit(q, j); /* the only normal worker is held by the first */
    }
    CHECK(workq_busy(q));
    struct workq_job *idle = calloc(1, sizeof(*idle));
    idle->run = idle_run;
    idle->release = release;
    workq_submit_idle(q, idle);
    CHECK(wait_for(&idle_ran, 1)); /* ran while the normal worker is held */
    CHECK(wait_for(&released_ran, 1));
    CHECK(workq_busy(q));
    CHECK_INT(atomic_load(&notified), 0);
    atomic_store(&gate_open, true);
    for (int tries = 0; tries < 2000 && workq_pending(q) > 0; tries++) {
        workq_drain(q, drop, NULL);
        usleep(1000);
    }
    CHECK_INT(workq_pending(q), 0);
    CHECK(!workq_busy(q));
    CHECK_INT(atomic_load(&notified), 3); /* the three drained jobs, not the released one */
    CHECK(!workq_stopping(q));

    /* a released job that never ran is released on stop, not discarded */
    atomic_store(&gate_open, false);
    struct workq_job *hold = calloc(1, sizeof(*hold));
    hold->run = gated;
    workq_submit_idle(q, hold); /* holds the only idle worker */
    usleep(20000);
    struct workq_job *unrun = calloc(1, sizeof(*unrun));
    unrun->run = idle_run;
    unrun->release = release;
    workq_submit_idle(q, unrun);
    usleep(20000);
    CHECK_INT(atomic_load(&idle_ran), 1);
    atomic_store(&gate_open, true);
    workq_stop(q, drop, NULL); /* hold is drained-type: discarded through drop */
    CHECK_INT(atomic_load(&released_unrun) + atomic_load(&released_ran), 2);
}

static atomic_int slow_started;

static void slow_gated(struct workq_job *j)
{
    atomic_fetch_add(&slow_started, 1);
    gated(j);
}

/* Slow jobs take at most half the normal workers: with 4 workers and 3 slow jobs holding on, only
 * 2 start, and quick jobs submitted after them still run. Once the slow ones let go, the third
 * starts and everything comes back. */
static void test_slow_lane(void)
{
    struct workq *q = NULL;
    CHECK_INT(workq_start(4, &q), IOT_OK);
    atomic_store(&gate_open, false);
    for (int i = 0; i < 3; i++) {
        struct workq_job *j = calloc(1, sizeof(*j));
        j->run = slow_gated;
        workq_submit_slow(q, j);
    }
    CHECK(wait_for(&slow_started, 2));
    int before = atomic_load(&runs);
    for (int i = 0; i < 20; i++) {
        struct counted *c = calloc(1, sizeof(*c));
        c->base.run = run;
        workq_submit(q, &c->base);
    }
    CHECK(wait_for(&runs, before + 20)); /* on the two workers the slow jobs left */
    usleep(20000);
    CHECK_INT(atomic_load(&slow_started), 2);
    CHECK(workq_busy(q));
    atomic_store(&gate_open, true);
    CHECK(wait_for(&slow_started, 3));
    for (int tries = 0; tries < 2000 && workq_pending(q) > 0; tries++) {
        workq_drain(q, drop, NULL);
        usleep(1000);
    }
    CHECK_INT(workq_pending(q), 0);
    CHECK(!workq_busy(q));
    workq_stop(q, drop, NULL);
    atomic_store(&runs, 0); /* main() counts from zero */
}

int main(void)
{
    test_idle_release_notify();
    test_slow_lane();
    struct workq *q = NULL;
    CHECK_INT(workq_start(3, &q), IOT_OK);
    int expected = 0;
    for (int i = 1; i <= 500; i++) {
        struct counted *c = calloc(1, sizeof(*c));
        c->base.run = run;
        c->value = i;
        expected += i;
        workq_submit(q, &c->base);
    }
    for (int tries = 0; tries < 500 && drained_count < 500; tries++) {
        workq_drain(q, done, NULL);
        usleep(2000);
    }
    CHECK_INT(drained_count, 500);
    CHECK_INT(drained_sum, expected);
    CHECK_INT(atomic_load(&runs), 500);
    CHECK_INT(workq_pending(q), 0);

    /* jobs that finished but were never drained are handed to discard on stop */
    for (int i = 0; i < 5; i++) {
        struct counted *c = calloc(1, sizeof(*c));
        c->base.run = run;
        workq_submit(q, &c->base);
    }
    while (atomic_load(&runs) < 505)
        usleep(1000);
    workq_stop(q, discard, NULL);
    CHECK_INT(discarded, 5);
    return check_summary();
}
