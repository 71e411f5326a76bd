/* The key pool: size 0 generates every key, a pool fills in the background, hands out each key
 * once (all distinct, RSA-2048), refills after use, and frees what is left. */
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "keypool.h"

#define POOL 4

static bool wait_ready(struct keypool *kp, size_t n, int seconds)
{
    time_t end = time(NULL) + seconds;
    while (keypool_ready(kp) < n && time(NULL) < end)
        usleep(5000);
    return keypool_ready(kp) == n;
}

static void check_rsa2048(EVP_PKEY *k)
{
    CHECK(k != NULL);
    CHECK(k != NULL && EVP_PKEY_is_a(k, "RSA"));
    CHECK_INT(k ? EVP_PKEY_get_bits(k) : 0, 2048);
}

static atomic_bool gate_open;

static void gated(struct workq_job *j)
{
    while (!atomic_load(&gate_open))
        usleep(1000);
}

static void drop(struct workq_job *j, void *arg)
{
    free(j);
}

/* Refills give way to requests: nothing is generated while a request job waits or runs. */
static void test_refill_waits_for_requests(void)
{
    struct workq *q = NULL;
    struct keypool *kp = NULL;
    CHECK_INT(workq_start(1, &q), IOT_OK);
    struct workq_job *req = calloc(1, sizeof(*req));
    req->run = gated;
    workq_submit(q, req);
    CHECK_INT(keypool_new(2, q, &kp), IOT_OK);
    usleep(1500000); /* several key generations' worth */
    CHECK_INT(keypool_ready(kp), 0);
    atomic_store(&gate_open, true);
    CHECK(wait_ready(kp, 2, 60));
    workq_drain(q, drop, NULL);
    workq_stop(q, drop, NULL);
    keypool_free(kp);
}

int main(void)
{
    test_refill_waits_for_requests();
    struct keypool *kp = NULL;
    EVP_PKEY *k = NULL;

    /* refused: too large, or a pool with nothing to fill it */
    CHECK_INT(keypool_new(KEYPOOL_MAX_SIZE + 1, NULL, &kp), IOT_ERR_INTERNAL);
    CHECK_INT(keypool_new(1, NULL, &kp), IOT_ERR_INTERNAL);

    /* no pool (NULL) and size 0: each take generates a key, nothing is kept */
    CHECK_INT(keypool_take(NULL, &k, NULL), IOT_OK);
    check_rsa2048(k);
    EVP_PKEY_free(k);
    CHECK_INT(keypool_new(0, NULL, &kp), IOT_OK);
    CHECK_INT(keypool_take(kp, &k, NULL), IOT_OK);
    check_rsa2048(k);
    EVP_PKEY_free(k);
    CHECK_INT(keypool_ready(kp), 0);
    keypool_free(kp);
    keypool_free(NULL);

    struct workq *q = NULL;
    CHECK_INT(workq_start(2, &q), IOT_OK);
    CHECK_INT(keypool_new(POOL, q, &kp), IOT_OK);
    CHECK(wait_ready(kp, POOL, 60)); /* filled in the background */

    /* POOL takes empty it; then one more comes generated on this thread; all distinct */
    EVP_PKEY *taken[POOL + 1] = {0};
    for (int i = 0; i < POOL; i++) {
        CHECK_INT(keypool_take(kp, &taken[i], NULL), IOT_OK);
        check_rsa2048(taken[i]);
    }
    CHECK(keypool_ready(kp) < POOL);
    CHECK_INT(keypool_take(kp, &taken[POOL], NULL), IOT_OK);
    check_rsa2048(taken[POOL]);
    for (int i = 0; i <= POOL; i++)
        for (int j = i + 1; j <= POOL; j++)
            CHECK(EVP_PKEY_eq(taken[i], taken[j]) != 1);

    /* refilled after use, and the refills are new keys again */
    CHECK(wait_ready(kp, POOL, 60));
    for (int i = 0; i < POOL; i++) {
        CHECK_INT(keypool_take(kp, &k, NULL), IOT_OK);
        for (int j = 0; j <= POOL; j++)
            CHECK(EVP_PKEY_eq(k, taken[j]) != 1);
        EVP_PKEY_free(k);
    }
    for (int i = 0; i <= POOL; i++)
        EVP_PKEY_free(taken[i]);

    /* stop with refills queued or running, then free: nothing leaks (LSan), nothing runs late */
    workq_stop(q, NULL, NULL);
    keypool_free(kp);
    return check_summary();
}
