/* The key pool: a stack of ready keys under a mutex, and refill jobs that each generate one key. */
#include "keypool.h"

#include <pthread.h>
#include <stdlib.h>

#include "ca.h"

struct keypool {
    pthread_mutex_t lock;
    struct workq *q; /* borrowed */
    size_t size;
    size_t count;    /* keys ready in keys[0..count) */
    size_t queued;   /* refill jobs submitted and not yet finished */
    EVP_PKEY **keys;
};

struct refill {
    struct workq_job base; /* first: the pool links jobs through it */
    struct keypool *kp;
};

/* Worker thread: one key into the pool, unless it filled up meanwhile. */
static void refill_run(struct workq_job *job)
{
    struct keypool *kp = ((struct refill *)job)->kp;
    EVP_PKEY *key = NULL;
    if (ca_generate_rsa(KEYPOOL_BITS, &key, NULL) != IOT_OK)
        key = NULL;
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
