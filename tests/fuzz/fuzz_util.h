/* What the fuzz harnesses share: a throw-away state directory removed at exit, a NUL-terminated
 * copy of an input (exactly sized, so AddressSanitizer sees any read past it), and a way to stop
 * the run loudly when the setup itself fails (a harness that silently fuzzes nothing is worse than
 * none). Header-only: each target is one small executable. */
#ifndef IOTMOCK_FUZZ_UTIL_H
#define IOTMOCK_FUZZ_UTIL_H

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "err.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Aborts with the error's sentence when setup fails. */
static inline void fuzz_need(enum iot_err rc, const struct iot_error *err, const char *what)
{
    if (rc == IOT_OK)
        return;
    fprintf(stderr, "fuzz setup: %s failed: %s %s\n", what, iot_err_name(rc),
            err ? err->message : "");
    abort();
}

static char fuzz_dir_path[64];

/* Removes the state directory (one level of plain files, which is all the harnesses create). */
static inline void fuzz_dir_remove(void)
{
    DIR *d = opendir(fuzz_dir_path);
    if (d == NULL)
        return;
    char path[512];
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(path, sizeof(path), "%s/%s", fuzz_dir_path, e->d_name);
        unlink(path);
    }
    closedir(d);
    rmdir(fuzz_dir_path);
}

/* A new directory under $TMPDIR (or /tmp), removed when the process exits normally. A crash
 * leaves it behind, next to the reproducer; it holds only a throw-away CA. */
static inline const char *fuzz_dir_make(void)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(fuzz_dir_path, sizeof(fuzz_dir_path), "%s/iotmock-fuzz-XXXXXX",
             tmp && strlen(tmp) < 32 ? tmp : "/tmp");
    if (mkdtemp(fuzz_dir_path) == NULL) {
        perror("fuzz setup: mkdtemp");
        abort();
    }
    atexit(fuzz_dir_remove);
    return fuzz_dir_path;
}

/* A malloc'd copy of DATA with a NUL after its SIZE bytes; caller frees. */
static inline char *fuzz_strndup(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    if (s == NULL)
        abort();
    if (size)
        memcpy(s, data, size);
    s[size] = '\0';
    return s;
}

/* A malloc'd copy of exactly SIZE bytes (at least one byte is allocated); caller frees. */
static inline uint8_t *fuzz_memdup(const uint8_t *data, size_t size)
{
    uint8_t *p = malloc(size ? size : 1);
    if (p == NULL)
        abort();
    if (size)
        memcpy(p, data, size);
    return p;
}

/* Reads a whole file; aborts if it cannot. Caller frees. */
static inline char *fuzz_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        perror(path);
        abort();
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (buf == NULL || fread(buf, 1, (size_t)n, f) != (size_t)n)
        abort();
    fclose(f);
    buf[n] = '\0';
    if (len)
        *len = (size_t)n;
    return buf;
}

#endif
