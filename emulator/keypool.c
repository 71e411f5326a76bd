/* The key pool: a stack of ready keys under a mutex, and refill jobs that each generate one key on
 * the work queue's idle workers. A refill gives way to requests: it starts only while no request
 * job waits or runs, and abandons a key half generated when one arrives (OpenSSL's keygen callback
 * runs every few milliseconds of work), so a burst of requests gets the CPU to itself. */
#include "keypool.h"

#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/rsa.h>

#define KEYPOOL_YIELD_NS 2000000L /* how often a waiting refill looks again */

#include "ca.h"

struct keypool {
    pthread_mutex_t lock;
    struct workq *q; /* borrowed */
    size_t size;
    size_t count;  /* keys ready in keys[0..count) */
    size_t queued; /* refill jobs submitted and not yet finished */
    EVP_PKEY **keys;
};

struct refill {
    struct workq_job base; /* first: the pool links jobs through it */
    struct keypool *kp;
};

/* OpenSSL's progress callback: 0 abandons the key. */
static int keep_going(EVP_PKEY_CTX *ctx)
{
    struct workq *q = EVP_PKEY_CTX_get_app_data(ctx);
    return !workq_busy(q) && !workq_stopping(q);
}

/* One RSA key generated only while Q has no request to run; NULL when stopping or on failure. */
static EVP_PKEY *generate_when_idle(struct workq *q)
{
    const struct timespec pause = {.tv_nsec = KEYPOOL_YIELD_NS};
    EVP_PKEY *key = NULL;
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
    if (ctx == NULL || EVP_PKEY_keygen_init(ctx) <= 0 ||
        EVP_PKEY_CTX_set_rsa_keygen_bits(ctx, KEYPOOL_BITS) <= 0)
        goto cleanup;
    EVP_PKEY_CTX_set_app_data(ctx, q);
    EVP_PKEY_CTX_set_cb(ctx, keep_going);
    int failures = 0;
    while (!workq_stopping(q) && failures < 3) {
        if (workq_busy(q)) {
            nanosleep(&pause, NULL);
            continue;
        }
        if (EVP_PKEY_generate(ctx, &key) > 0)
            break;
        key = NULL;
        ERR_clear_error();
        if (keep_going(ctx))
            failures++; /* not abandoned for a request: OpenSSL failed */
    }
cleanup:
    EVP_PKEY_CTX_free(ctx);
    return key;
}

/* Idle worker: one key into the pool, unless it filled up meanwhile. */
static void refill_run(struct workq_job *job)
{
    struct keypool *kp = ((struct refill *)job)->kp;
    EVP_PKEY *key = generate_when_idle(kp->q);
    pthread_mutex_lock(&kp->lock);
    if (key != NULL && kp->count < kp->size) {
        kp->keys[kp->count++] = key;
        key = NULL;
    }
    kp->queued--;
    pthread_mutex_unlock(&kp->lock);
    EVP_PKEY_free(key);
}

/* The job frees itself (workq_job.release); one never run still counts as queued, which no longer
 * matters: the queue is stopping. */
static void refill_release(struct workq_job *job, bool ran)
{
    free(job);
}

/* Queues jobs for the keys missing, counting those already on their way (lock held). */
static void top_up(struct keypool *kp)
{
    while (kp->count + kp->queued < kp->size) {
        struct refill *r = calloc(1, sizeof(*r));
        if (r == NULL)
            return;
        r->base.run = refill_run;
        r->base.release = refill_release;
        r->kp = kp;
        kp->queued++;
        workq_submit_idle(kp->q, &r->base);
    }
}

enum iot_err keypool_new(size_t size, struct workq *q, struct keypool **out)
{
    if (size > KEYPOOL_MAX_SIZE || (size > 0 && q == NULL))
        return IOT_ERR_INTERNAL;
    struct keypool *kp = calloc(1, sizeof(*kp));
    if (kp == NULL || (size > 0 && (kp->keys = calloc(size, sizeof(*kp->keys))) == NULL)) {
        free(kp);
        return IOT_ERR_NOMEM;
    }
    pthread_mutex_init(&kp->lock, NULL);
    kp->q = q;
    kp->size = size;
    pthread_mutex_lock(&kp->lock);
    top_up(kp);
    pthread_mutex_unlock(&kp->lock);
    *out = kp;
    return IOT_OK;
}

enum iot_err keypool_take(struct keypool *kp, EVP_PKEY **out, struct iot_error *err)
{
    *out = NULL;
    if (kp != NULL && kp->size > 0) {
        pthread_mutex_lock(&kp->lock);
        if (kp->count > 0) {
            *out = kp->keys[--kp->count];
            kp->keys[kp->count] = NULL;
        }
        top_up(kp);
        pthread_mutex_unlock(&kp->lock);
    }
    if (*out != NULL)
        return IOT_OK;
    return ca_generate_rsa(KEYPOOL_BITS, out, err);
}

size_t keypool_ready(struct keypool *kp)
{
    if (kp == NULL)
        return 0;
    pthread_mutex_lock(&kp->lock);
    size_t n = kp->count;
    pthread_mutex_unlock(&kp->lock);
    return n;
}

void keypool_free(struct keypool *kp)
{
    if (kp == NULL)
        return;
    for (size_t i = 0; i < kp->count; i++)
        EVP_PKEY_free(kp->keys[i]); /* OpenSSL clears RSA key material as it frees it */
    free(kp->keys);
    pthread_mutex_destroy(&kp->lock);
    free(kp);
}
