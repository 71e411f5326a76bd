/* capath: keeps a hashed certificate directory equal to a given set (see capath.h). */
#include "capath.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>

#include "ca.h"

/* A certificate the directory must hold, and where it goes. */
struct wanted {
    X509 *cert;
    char id[CA_ID_LEN + 1];
    unsigned long hash;
    unsigned int suffix;
    bool placed;
};

/* A hashed name found in the directory, and the certificate it holds ("" when unreadable). */
struct entry {
    char name[CAPATH_NAME_MAX];
    unsigned long hash;
    unsigned int suffix;
    char id[CA_ID_LEN + 1];
    bool temporary; /* <name>.tmp left by an interrupted write */
};

struct plan {
    struct wanted *wanted;
    size_t n_wanted;
    struct entry *entries;
    size_t n_entries, cap_entries;
};

static void plan_free(struct plan *p)
{
    for (size_t i = 0; i < p->n_wanted; i++)
        X509_free(p->wanted[i].cert);
    free(p->wanted);
    free(p->entries);
}

static bool subject_hash(X509 *cert, unsigned long *out)
{
    int ok = 0;
    *out = X509_NAME_hash_ex(X509_get_subject_name(cert), NULL, NULL, &ok);
    return ok == 1;
}

enum iot_err capath_name(X509 *cert, unsigned int n, char out[CAPATH_NAME_MAX])
{
    unsigned long hash;
    out[0] = '\0';
    if (cert == NULL || !subject_hash(cert, &hash)) {
        ERR_clear_error();
        return IOT_ERR_INTERNAL;
    }
    snprintf(out, CAPATH_NAME_MAX, "%08lx.%u", hash & 0xffffffffUL, n);
    return IOT_OK;
}

/* ---- the set to hold ----------------------------------------------------------------------- */

static int wanted_order(const void *a, const void *b)
{
    const struct wanted *x = a, *y = b;
    if (x->hash != y->hash)
        return x->hash < y->hash ? -1 : 1;
    return strcmp(x->id, y->id);
}

static bool already_wanted(const struct plan *p, const char *id)
{
    for (size_t i = 0; i < p->n_wanted; i++)
        if (strcmp(p->wanted[i].id, id) == 0)
            return true;
    return false;
}

static enum iot_err read_wanted(struct plan *p, const char *const *pems, size_t n,
                                struct iot_error *err)
{
    if (n > CAPATH_MAX_CERTS)
        return iot_error_set(err, IOT_ERR_INVALID_REQUEST, "capath: more than %d certificates",
                             CAPATH_MAX_CERTS);
    p->wanted = calloc(n ? n : 1, sizeof(*p->wanted));
    if (p->wanted == NULL)
        return iot_error_set(err, IOT_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        struct wanted *w = &p->wanted[p->n_wanted];
        if (pems[i] == NULL ||
            ca_cert_from_pem(pems[i], strlen(pems[i]), &w->cert, NULL) != IOT_OK ||
            ca_cert_id(w->cert, w->id) != IOT_OK || !subject_hash(w->cert, &w->hash)) {
            X509_free(w->cert);
            w->cert = NULL;
            ERR_clear_error();
            return iot_error_set(err, IOT_ERR_INVALID_REQUEST,
                                 "capath: PEM %zu is not a readable certificate", i);
        }
        w->hash &= 0xffffffffUL;
        if (already_wanted(p, w->id)) {
            X509_free(w->cert);
            *w = (struct wanted){0};
            continue;
        }
        p->n_wanted++;
    }
    if (p->n_wanted > 1)
        qsort(p->wanted, p->n_wanted, sizeof(*p->wanted), wanted_order);
    return IOT_OK;
}

/* ---- what the directory holds -------------------------------------------------------------- */

/* "<8 hex>.<digits>" or the same + ".tmp". */
static bool parse_name(const char *s, unsigned long *hash, unsigned int *suffix, bool *temporary)
{
    size_t len = strlen(s);
    *temporary = len > 4 && strcmp(s + len - 4, ".tmp") == 0;
    if (*temporary)
        len -= 4;
    if (len < CAPATH_HASH_LEN + 2 || len > CAPATH_HASH_LEN + 1 + 9 || s[CAPATH_HASH_LEN] != '.')
        return false;
    unsigned long h = 0, n = 0;
    for (size_t i = 0; i < CAPATH_HASH_LEN; i++) {
        const char *digits = "0123456789abcdef", *d = strchr(digits, s[i]);
        if (s[i] == '\0' || d == NULL)
            return false;
        h = h * 16 + (unsigned long)(d - digits);
    }
    for (size_t i = CAPATH_HASH_LEN + 1; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        n = n * 10 + (unsigned long)(s[i] - '0');
    }
    if (n > UINT_MAX)
        return false;
    *hash = h;
    *suffix = (unsigned int)n;
    return true;
}

/* The id of the first certificate in PATH, "" when there is none (or the file is too big). */
static void read_entry_id(const char *path, char id[CA_ID_LEN + 1])
{
    struct stat st;
    id[0] = '\0';
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > CAPATH_FILE_MAX)
        return;
    BIO *bio = BIO_new_file(path, "r");
    X509 *cert = bio ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
    if (cert == NULL || ca_cert_id(cert, id) != IOT_OK)
        id[0] = '\0';
    X509_free(cert);
    BIO_free(bio);
    ERR_clear_error();
}

static enum iot_err add_entry(struct plan *p, const struct entry *e, struct iot_error *err)
{
    if (p->n_entries == p->cap_entries) {
        size_t cap = p->cap_entries ? 2 * p->cap_entries : 16;
        struct entry *grown = realloc(p->entries, cap * sizeof(*grown));
        if (grown == NULL)
            return iot_error_set(err, IOT_ERR_NOMEM, "out of memory");
        p->entries = grown;
        p->cap_entries = cap;
    }
    p->entries[p->n_entries++] = *e;
    return IOT_OK;
}

static int entry_order(const void *a, const void *b)
{
    const struct entry *x = a, *y = b;
    if (x->hash != y->hash)
        return x->hash < y->hash ? -1 : 1;
    if (x->suffix != y->suffix)
        return x->suffix < y->suffix ? -1 : 1;
    return (int)x->temporary - (int)y->temporary;
}

static enum iot_err read_entries(struct plan *p, const char *dir, struct iot_error *err)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return iot_error_set(err, IOT_ERR_IO, "capath: cannot read %.200s: %s", dir,
                             strerror(errno));
    enum iot_err code = IOT_OK;
    struct dirent *de;
    while (code == IOT_OK && (de = readdir(d)) != NULL) {
        struct entry e = {0};
        char path[PATH_MAX];
        if (!parse_name(de->d_name, &e.hash, &e.suffix, &e.temporary))
            continue;
        size_t len = strlen(de->d_name); /* parse_name() allows at most 22 */
        if (len >= sizeof(e.name))
            continue;
        memcpy(e.name, de->d_name, len + 1);
        if (snprintf(path, sizeof(path), "%s/%s", dir, de->d_name) >= (int)sizeof(path))
            code = iot_error_set(err, IOT_ERR_IO, "capath: path too long in %.200s", dir);
        if (code == IOT_OK && !e.temporary)
            read_entry_id(path, e.id);
        if (code == IOT_OK)
            code = add_entry(p, &e, err);
    }
    closedir(d);
    if (code == IOT_OK && p->n_entries > 1)
        qsort(p->entries, p->n_entries, sizeof(*p->entries), entry_order);
    return code;
}

/* ---- placing ------------------------------------------------------------------------------- */

static struct wanted *find_unplaced(struct plan *p, unsigned long hash, const char *id)
{
    for (size_t i = 0; i < p->n_wanted; i++) {
        struct wanted *w = &p->wanted[i];
        if (!w->placed && w->hash == hash && strcmp(w->id, id) == 0)
            return w;
    }
    return NULL;
}

/* Per hash: the certificates already there keep their relative order, then the new ones (by
 * id); suffixes 0, 1, ... in that order. */
static void place(struct plan *p)
{
    for (size_t i = 0; i < p->n_wanted;) {
        unsigned long hash = p->wanted[i].hash;
        unsigned int next = 0;
        for (size_t k = 0; k < p->n_entries; k++) {
            const struct entry *e = &p->entries[k];
            struct wanted *w =
                e->hash == hash && !e->temporary && e->id[0] ? find_unplaced(p, hash, e->id) : NULL;
            if (w != NULL) {
                w->suffix = next++;
                w->placed = true;
            }
        }
        for (; i < p->n_wanted && p->wanted[i].hash == hash; i++) {
            if (!p->wanted[i].placed) {
                p->wanted[i].suffix = next++;
                p->wanted[i].placed = true;
            }
        }
    }
}

static const struct entry *entry_named(const struct plan *p, const char *name)
{
    for (size_t i = 0; i < p->n_entries; i++)
        if (strcmp(p->entries[i].name, name) == 0)
            return &p->entries[i];
    return NULL;
}

static bool name_wanted(const struct plan *p, const struct entry *e)
{
    if (e->temporary)
        return false;
    for (size_t i = 0; i < p->n_wanted; i++)
        if (p->wanted[i].hash == e->hash && p->wanted[i].suffix == e->suffix)
            return true;
    return false;
}

/* ---- applying ------------------------------------------------------------------------------ */

static enum iot_err write_wanted(const struct plan *p, const char *dir, struct iot_error *err)
{
    for (size_t i = 0; i < p->n_wanted; i++) {
        const struct wanted *w = &p->wanted[i];
        char name[CAPATH_NAME_MAX], path[PATH_MAX];
        snprintf(name, sizeof(name), "%08lx.%u", w->hash, w->suffix);
        const struct entry *e = entry_named(p, name);
        if (e != NULL && strcmp(e->id, w->id) == 0)
            continue; /* already there */
        if (snprintf(path, sizeof(path), "%s/%s", dir, name) >= (int)sizeof(path))
            return iot_error_set(err, IOT_ERR_IO, "capath: path too long in %.200s", dir);
        char *pem = ca_cert_to_pem(w->cert);
        if (pem == NULL)
            return iot_error_set(err, IOT_ERR_NOMEM, "out of memory");
        enum iot_err code = ca_write_file(path, pem, 0644, err);
        free(pem);
        if (code != IOT_OK)
            return code;
    }
    return IOT_OK;
}

static enum iot_err remove_stale(const struct plan *p, const char *dir, struct iot_error *err)
{
    bool removed = false;
    for (size_t i = 0; i < p->n_entries; i++) {
        const struct entry *e = &p->entries[i];
        char path[PATH_MAX];
        if (name_wanted(p, e))
            continue;
        if (snprintf(path, sizeof(path), "%s/%s", dir, e->name) >= (int)sizeof(path))
            return iot_error_set(err, IOT_ERR_IO, "capath: path too long in %.200s", dir);
        if (unlink(path) != 0 && errno != ENOENT)
            return iot_error_set(err, IOT_ERR_IO, "capath: cannot remove %.200s: %s", path,
                                 strerror(errno));
        removed = true;
    }
    if (!removed)
        return IOT_OK;
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    bool synced = fd >= 0 && fsync(fd) == 0;
    if (fd >= 0)
        close(fd);
    return synced ? IOT_OK : iot_error_set(err, IOT_ERR_IO, "capath: cannot sync %.200s", dir);
}

static enum iot_err ensure_dir(const char *dir, struct iot_error *err)
{
    struct stat st;
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        return iot_error_set(err, IOT_ERR_IO, "capath: cannot create %.200s: %s", dir,
                             strerror(errno));
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return iot_error_set(err, IOT_ERR_IO, "capath: %.200s is not a directory", dir);
    return IOT_OK;
}

enum iot_err capath_sync(const char *dir, const char *const *pems, size_t n, struct iot_error *err)
{
    struct plan p = {0};
    if (dir == NULL || dir[0] == '\0' || (n > 0 && pems == NULL))
        return iot_error_set(err, IOT_ERR_INVALID_REQUEST, "capath: no directory or no PEMs");
    enum iot_err code = read_wanted(&p, pems, n, err);
    if (code == IOT_OK)
        code = ensure_dir(dir, err);
    if (code == IOT_OK)
        code = read_entries(&p, dir, err);
    if (code == IOT_OK) {
        place(&p);
        code = write_wanted(&p, dir, err);
    }
    if (code == IOT_OK)
        code = remove_stale(&p, dir, err);
    plan_free(&p);
    return code;
}
