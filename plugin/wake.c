/* Waking Mosquitto's event loop as soon as a worker has a result, instead of on its next turn.
 *
 * Mosquitto 2.0.11's main loop (src/loop.c) runs, in order: the messages plugins queued with
 * mosquitto_broker_publish*, keep-alive checks, the wait for socket events (epoll_wait with a
 * fixed 100 ms timeout, mux_epoll.c), session and Will expiry, then MOSQ_EVT_TICK. A worker's
 * result is drained on TICK, so on an idle broker it waited up to 100 ms for the wait to time out,
 * and the answer the drain publishes goes out at the top of the very next turn, before the wait.
 * Waking the wait is therefore enough to answer within a millisecond or so.
 *
 * How: a real-time signal with a handler that does nothing, sent with pthread_kill() to the
 * thread that ran plugin init (the loop's thread). epoll_wait() returns EINTR on any handled
 * signal (SA_RESTART does not apply to it), and Mosquitto treats EINTR as a turn with no events.
 * SA_RESTART keeps every other call of that thread (socket reads and writes) unaffected.
 * Mosquitto's own signals (SIGINT, SIGTERM, SIGHUP, SIGUSR1, SIGUSR2) are untouched; the plugin's
 * threads are created with the signal blocked, so only the loop's thread ever takes it.
 * A signal that arrives while the loop is not waiting is lost, so a small waker thread repeats it
 * every millisecond until the drain has run (wake_drained()).
 *
 * Considered and not taken: a private loopback MQTT connection to poke the broker would show up
 * as a client (lifecycle events, $SYS counters, a client id) and needs credentials; a pipe or
 * eventfd cannot be added to Mosquitto's epoll set from a plugin. */
#include "plugin.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <time.h>

#define WAKE_REPEAT_NS 1000000L /* re-signal period while a result waits */
#define WAKE_FIRST_SIGNAL 4     /* SIGRTMIN + this: clear of what glibc and common libraries use */

struct wake {
    pthread_t loop;   /* the broker thread */
    pthread_t thread; /* the waker */
    bool thread_started;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool requested; /* a result waits for the drain */
    bool stopping;
    int signo;
    struct sigaction old;
    sigset_t loop_mask; /* the loop thread's mask before wake_new() */
};

static void on_wake_signal(int signo)
{
    (void)signo; /* interrupting epoll_wait() is the whole point */
}

/* The first real-time signal nobody in the process handles yet; 0 if none. */
static int pick_signal(void)
{
    for (int s = SIGRTMIN + WAKE_FIRST_SIGNAL; s <= SIGRTMAX; s++) {
        struct sigaction cur;
        if (sigaction(s, NULL, &cur) == 0 && cur.sa_handler == SIG_DFL &&
            !(cur.sa_flags & SA_SIGINFO))
            return s;
    }
    return 0;
}

static void *waker(void *arg)
{
    struct wake *w = arg;
    pthread_mutex_lock(&w->lock);
    while (!w->stopping) {
        if (!w->requested) {
            pthread_cond_wait(&w->cond, &w->lock);
            continue;
        }
        pthread_mutex_unlock(&w->lock);
        pthread_kill(w->loop, w->signo);
        pthread_mutex_lock(&w->lock);
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_nsec += WAKE_REPEAT_NS;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        while (!w->stopping && w->requested &&
               pthread_cond_timedwait(&w->cond, &w->lock, &until) != ETIMEDOUT) {
        }
    }
    pthread_mutex_unlock(&w->lock);
    return NULL;
}

struct wake *wake_new(void)
{
    struct wake *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return NULL;
    w->loop = pthread_self();
    if ((w->signo = pick_signal()) == 0) {
        mosquitto_log_printf(MOSQ_LOG_WARNING, "iotmock: no free real-time signal; answers wait "
                                               "for the broker's next turn (up to 100 ms)");
        free(w);
        return NULL;
    }
    struct sigaction sa = {.sa_handler = on_wake_signal, .sa_flags = SA_RESTART};
    sigemptyset(&sa.sa_mask);
    sigaction(w->signo, &sa, &w->old);
    /* Blocked here until wake_arm(): every thread started in between inherits the block. */
    sigset_t block;
    sigemptyset(&block);
    sigaddset(&block, w->signo);
    pthread_sigmask(SIG_BLOCK, &block, &w->loop_mask);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&w->cond, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&w->lock, NULL);
    w->thread_started = pthread_create(&w->thread, NULL, waker, w) == 0;
    if (!w->thread_started) {
        wake_free(w);
        return NULL;
    }
    return w;
}

void wake_arm(struct wake *w)
{
    if (w == NULL)
        return;
    sigset_t unblock;
    sigemptyset(&unblock);
    sigaddset(&unblock, w->signo);
    pthread_sigmask(SIG_UNBLOCK, &unblock, NULL);
}

void wake_request(void *arg)
{
    struct wake *w = arg;
    if (w == NULL)
        return;
    pthread_mutex_lock(&w->lock);
    if (!w->requested) {
        w->requested = true;
        pthread_cond_signal(&w->cond);
    }
    pthread_mutex_unlock(&w->lock);
}

void wake_drained(struct wake *w)
{
    if (w == NULL)
        return;
    pthread_mutex_lock(&w->lock);
    w->requested = false;
    pthread_mutex_unlock(&w->lock);
}

void wake_free(struct wake *w)
{
    if (w == NULL)
        return;
    if (w->thread_started) {
        pthread_mutex_lock(&w->lock);
        w->stopping = true;
        pthread_cond_signal(&w->cond);
        pthread_mutex_unlock(&w->lock);
        pthread_join(w->thread, NULL);
    }
    /* The loop thread's mask as it was, then the old handler (a signal still pending on it
     * would otherwise meet SIG_DFL, which terminates; blocked-and-pending ones are discarded by
     * SIG_IGN first). */
    struct sigaction ign = {.sa_handler = SIG_IGN};
    sigemptyset(&ign.sa_mask);
    sigaction(w->signo, &ign, NULL);
    if (pthread_equal(pthread_self(), w->loop))
        pthread_sigmask(SIG_SETMASK, &w->loop_mask, NULL);
    sigaction(w->signo, &w->old, NULL);
    pthread_cond_destroy(&w->cond);
    pthread_mutex_destroy(&w->lock);
    free(w);
}
