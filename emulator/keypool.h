/* Pre-generated RSA-2048 key pairs for CreateKeysAndCertificate (MQTT and HTTP), so that a burst of
 * requests does not wait for key generation, which costs tens of milliseconds per key. The pool is
 * filled on the worker pool at idle priority when it is created and topped up after every take.
 * Keys live only in memory, each is handed out once, and the pool wipes what is left on free. */
#ifndef IOTMOCK_KEYPOOL_H
#define IOTMOCK_KEYPOOL_H

#include <stddef.h>

#include <openssl/evp.h>

#include "err.h"
#include "workq.h"

#define KEYPOOL_BITS 2048       /* what AWS generates (shared/spec/provisioning.md §1.3) */
#define KEYPOOL_DEFAULT_SIZE 16 /* iotmock's choice: one burst of a typical test suite */
#define KEYPOOL_MAX_SIZE 4096

struct keypool;

/* A pool of SIZE keys (at most KEYPOOL_MAX_SIZE; 0: no pool, every take generates its key)
 * filled by jobs on Q, which must outlive the pool's use and be stopped before keypool_free().
 * Caller frees with keypool_free(). */
enum iot_err keypool_new(size_t size, struct workq *q, struct keypool **out);

/* One RSA key nobody else has or will get: from the pool if it has one (and a refill is queued),
 * else generated on the calling thread. KP may be NULL (no pool). Caller frees *OUT with
 * EVP_PKEY_free(). Thread-safe. */
enum iot_err keypool_take(struct keypool *kp, EVP_PKEY **out, struct iot_error *err);

/* Keys ready now (0 for a NULL pool). */
size_t keypool_ready(struct keypool *kp);

/* Frees the keys left. Stop the work queue first (workq_stop), so that no refill still runs. */
void keypool_free(struct keypool *kp);

#endif
