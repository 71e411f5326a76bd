/* bench_ossl: the machine's own limits for the two operations provisioning is made of, on
 * OpenSSL 3 through EVP: RSA-2048 signatures (SHA-256, PKCS#1 v1.5, what the CA does for every
 * certificate) and RSA-2048 key generation (what CreateKeysAndCertificate does), one thread per
 * core, each for a fixed time. Prints "sign_per_s <rate>" and "keygen_per_s <rate>". */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/rsa.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static EVP_PKEY *rsa2048(void)
{
    EVP_PKEY *pk = NULL;
    EVP_PKEY_CTX *kc = EVP_PKEY_CTX_new_id(EVP_PKEY_RSA, NULL);
    if (kc == NULL || EVP_PKEY_keygen_init(kc) <= 0 || EVP_PKEY_CTX_set_rsa_keygen_bits(kc, 2048) <= 0 ||
        EVP_PKEY_keygen(kc, &pk) <= 0)
        pk = NULL;
    EVP_PKEY_CTX_free(kc);
    return pk;
}

struct job {
    int keygen; /* 0: sign, 1: keygen */
    double seconds;
    EVP_PKEY *key; /* for signing; shared read-only */
    unsigned long done;
    int failed;
};

static void *run(void *arg)
{
    struct job *j = arg;
    unsigned char msg[64] = "a to-be-signed certificate stands in here";
    unsigned char sig[512];
    double end = now_s() + j->seconds;
    while (now_s() < end) {
        if (j->keygen) {
            EVP_PKEY *pk = rsa2048();
            if (pk == NULL) {
                j->failed = 1;
                break;
            }
            EVP_PKEY_free(pk);
        } else {
            size_t len = sizeof(sig);
            EVP_MD_CTX *md = EVP_MD_CTX_new();
            int ok = md && EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, j->key) > 0 &&
                     EVP_DigestSign(md, sig, &len, msg, sizeof(msg)) > 0;
            EVP_MD_CTX_free(md);
            if (!ok) {
                j->failed = 1;
                break;
            }
        }
        j->done++;
    }
    return NULL;
}

/* Runs KEYGEN or signing on THREADS threads for SECONDS; returns operations per second, or -1. */
static double rate(int keygen, int threads, double seconds, EVP_PKEY *key)
{
    pthread_t tid[256];
    struct job jobs[256];
    unsigned long total = 0;
    double t0 = now_s();
    for (int i = 0; i < threads; i++) {
        jobs[i] = (struct job){.keygen = keygen, .seconds = seconds, .key = key};
        if (pthread_create(&tid[i], NULL, run, &jobs[i]) != 0)
            return -1;
    }
    int failed = 0;
    for (int i = 0; i < threads; i++) {
        pthread_join(tid[i], NULL);
        total += jobs[i].done;
        failed |= jobs[i].failed;
    }
    double wall = now_s() - t0;
    return failed ? -1 : (double)total / wall;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: bench_ossl THREADS SECONDS\n");
        return 2;
    }
    int threads = atoi(argv[1]);
    double seconds = atof(argv[2]);
    if (threads < 1 || threads > 256 || seconds <= 0) {
        fprintf(stderr, "bench_ossl: THREADS in 1..256, SECONDS > 0\n");
        return 2;
    }
    EVP_PKEY *key = rsa2048();
    if (key == NULL) {
        fprintf(stderr, "bench_ossl: RSA key generation failed\n");
        return 1;
    }
    double sign = rate(0, threads, seconds, key);
    double keygen = rate(1, threads, seconds, key);
    EVP_PKEY_free(key);
    if (sign < 0 || keygen < 0) {
        fprintf(stderr, "bench_ossl: an OpenSSL operation failed\n");
        return 1;
    }
    printf("threads %d\nsign_per_s %.1f\nkeygen_per_s %.2f\n", threads, sign, keygen);
    return 0;
}
