/* Thread pool: FIFOs of submitted jobs (quick and slow) and one of idle-priority jobs guarded by
 * one mutex, and a list of finished ones. */
#include "workq.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

/* Workers run at a lower priority than the thread that submits (Mosquitto's event loop): when
 * key generation saturates the cores, the loop still gets the CPU at once and other clients'
 * messages keep flowing. Raising one's own nice value needs no privilege (Linux: per thread). */
#define WORKQ_NICE 5
#define WORKQ_IDLE_NICE 10

struct workq {
    pthread_mutex_t lock;
    pthread_cond_t wake;      /* normal workers */
    pthread_cond_t wake_idle; /* idle workers */
    struct workq_job *todo_head, *todo_tail;
    struct workq_job *slow_head, *slow_tail;
    struct workq_job *idle_head, *idle_tail;
    int slow_running, slow_max; /* slow jobs running now, and at most */
    unsigned long next_seq;
    struct workq_job *done_head, *done_tail;
    size_t pending;
    atomic_int busy; /* normal jobs submitted and not yet run to their end */
    atomic_bool stopping;
    int nthreads;
    pthread_t *threads;
    void (*notify)(void *arg);
    void *notify_arg;
};

static void push(struct workq_job **head, struct workq_job **tail, struct workq_job *job)
{
    job->next = NULL;
    if (*tail)
        (*tail)->next = job;
    else
        *head = job;
    *tail = job;
}

static struct workq_job *pop(struct workq_job **head, struct workq_job **tail)
{
    struct workq_job *job = *head;
    if (job) {
        *head = job->next;
        if (*head == NULL)
            *tail = NULL;
        job->next = NULL;
    }
    return job;
}

/* The next job for a normal worker, or NULL: the earlier submitted of the two queues' heads,
 * the slow one only while fewer than slow_max slow jobs run (lock held). */
static struct workq_job *take(struct workq *q, bool *slow)
{
    bool slow_ok = q->slow_head != NULL && q->slow_running < q->slow_max;
    *slow = false;
    if (q->todo_head != NULL && (!slow_ok || q->todo_head->seq < q->slow_head->seq))
        return pop(&q->todo_head, &q->todo_tail);
    if (!slow_ok)
        return NULL;
    *slow = true;
    q->slow_running++;
    return pop(&q->slow_head, &q->slow_tail);
}

struct worker_arg {
    struct workq *q;
    bool idle;
};

static void *worker(void *arg)
{
    struct workq *q = ((struct worker_arg *)arg)->q;
    bool idle = ((struct worker_arg *)arg)->idle;
    free(arg);
    (void)setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), idle ? WORKQ_IDLE_NICE : WORKQ_NICE);
    pthread_mutex_lock(&q->lock);
    for (;;) {
        struct workq_job *job = NULL;
        bool slow = false;
        while (!q->stopping &&
               (job = idle ? pop(&q->idle_head, &q->idle_tail) : take(q, &slow)) == NULL)
            pthread_cond_wait(idle ? &q->wake_idle : &q->wake, &q->lock);
        if (q->stopping)
            break;
        pthread_mutex_unlock(&q->lock);
        /* read before run: a released job may be gone afterwards */
        void (*release)(struct workq_job *, bool) = job->release;
        job->run(job);
        if (release)
            release(job, true);
        if (!idle)
            atomic_fetch_sub(&q->busy, 1);
        pthread_mutex_lock(&q->lock);
        if (slow && q->slow_running-- == q->slow_max && q->slow_head != NULL)
            pthread_cond_signal(&q->wake); /* a waiting slow job may start now */
        if (release) {
            q->pending--;
            continue;
        }
        push(&q->done_head, &q->done_tail, job);
        void (*notify)(void *) = q->notify;
        void *notify_arg = q->notify_arg;
        pthread_mutex_unlock(&q->lock);
        if (notify)
            notify(notify_arg);
        pthread_mutex_lock(&q->lock);
    }
    pthread_mutex_unlock(&q->lock);
    return NULL;
}

static bool start_worker(struct workq *q, bool idle)
{
    struct worker_arg *a = malloc(sizeof(*a));
    if (a == NULL)
        return false;
    *a = (struct worker_arg){.q = q, .idle = idle};
    if (pthread_create(&q->threads[q->nthreads], NULL, worker, a) != 0) {
        free(a);
        return false;
    }
    q->nthreads++;
    return true;
}

enum iot_err workq_start(int threads, struct workq **out)
{
    struct workq *q = calloc(1, sizeof(*q));
    if (q == NULL)
        return IOT_ERR_NOMEM;
    int idle_threads = threads / 2 > 0 ? threads / 2 : 1;
    q->slow_max = idle_threads; /* the same share: half the normal workers, at least one */
    q->threads = calloc((size_t)(threads + idle_threads), sizeof(pthread_t));
    if (q->threads == NULL) {
        free(q);
        return IOT_ERR_NOMEM;
    }
    pthread_mutex_init(&q->lock, NULL);
    pthread_cond_init(&q->wake, NULL);
    pthread_cond_init(&q->wake_idle, NULL);
    atomic_init(&q->busy, 0);
    atomic_init(&q->stopping, false);
    bool ok = true;
    for (int i = 0; i < threads && ok; i++)
        ok = start_worker(q, false);
    for (int i = 0; i < idle_threads && ok; i++)
        ok = start_worker(q, true);
    if (!ok) {
        workq_stop(q, NULL, NULL);
        return IOT_ERR_INTERNAL;
    }
    *out = q;
    return IOT_OK;
}

static void submit(struct workq *q, struct workq_job *job, bool slow)
{
    pthread_mutex_lock(&q->lock);
    job->seq = q->next_seq++;
    if (slow)
        push(&q->slow_head, &q->slow_tail, job);
    else
        push(&q->todo_head, &q->todo_tail, job);
    q->pending++;
    atomic_fetch_add(&q->busy, 1);
    pthread_cond_signal(&q->wake);
    pthread_mutex_unlock(&q->lock);
}

void workq_submit(struct workq *q, struct workq_job *job)
{
    submit(q, job, false);
}

void workq_submit_slow(struct workq *q, struct workq_job *job)
{
    submit(q, job, true);
}

void workq_submit_idle(struct workq *q, struct workq_job *job)
{
    pthread_mutex_lock(&q->lock);
    push(&q->idle_head, &q->idle_tail, job);
    q->pending++;
    pthread_cond_signal(&q->wake_idle);
    pthread_mutex_unlock(&q->lock);
}

void workq_set_notify(struct workq *q, void (*notify)(void *arg), void *arg)
{
    pthread_mutex_lock(&q->lock);
    q->notify = notify;
    q->notify_arg = arg;
    pthread_mutex_unlock(&q->lock);
}

size_t workq_drain(struct workq *q, void (*done)(struct workq_job *job, void *arg), void *arg)
{
    pthread_mutex_lock(&q->lock);
    struct workq_job *list = q->done_head;
    q->done_head = q->done_tail = NULL;
    pthread_mutex_unlock(&q->lock);

    size_t n = 0;
    while (list) {
        struct workq_job *next = list->next;
        done(list, arg);
        list = next;
        n++;
    }
    pthread_mutex_lock(&q->lock);
    q->pending -= n;
    pthread_mutex_unlock(&q->lock);
    return n;
}

bool workq_busy(struct workq *q)
{
    return atomic_load(&q->busy) > 0;
}

bool workq_stopping(struct workq *q)
{
    return atomic_load(&q->stopping);
}

size_t workq_pending(struct workq *q)
{
    pthread_mutex_lock(&q->lock);
    size_t n = q->pending;
    pthread_mutex_unlock(&q->lock);
    return n;
}

void workq_stop(struct workq *q, void (*discard)(struct workq_job *job, void *arg), void *arg)
{
    if (q == NULL)
        return;
    pthread_mutex_lock(&q->lock);
    q->stopping = true;
    pthread_cond_broadcast(&q->wake);
    pthread_cond_broadcast(&q->wake_idle);
    pthread_mutex_unlock(&q->lock);
    for (int i = 0; i < q->nthreads; i++)
        pthread_join(q->threads[i], NULL);

    struct workq_job *lists[4] = {q->done_head, q->todo_head, q->slow_head, q->idle_head};
    for (int i = 0; i < 4; i++) {
        while (lists[i]) {
            struct workq_job *next = lists[i]->next;
            if (lists[i]->release)
                lists[i]->release(lists[i], false);
            else if (discard)
                discard(lists[i], arg);
            lists[i] = next;
        }
    }
    pthread_cond_destroy(&q->wake);
    pthread_cond_destroy(&q->wake_idle);
    pthread_mutex_destroy(&q->lock);
    free(q->threads);
    free(q);
}
