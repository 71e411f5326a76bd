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

int main(void)
{
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
