/* `iotmock trust [--state-dir DIR]` copies DIR/root-ca.pem into Debian's local CA directory and
 * runs update-ca-certificates, so that clients which trust only the system store (the official
 * AWS IoT Device SDK samples, which have no CA option and only know port 8883) accept iotmock's
 * server certificate. `iotmock untrust` removes it again. The file is named after the CA's
 * certificate id, so trusting the CAs of two state directories keeps both and untrust removes
 * the right one. IOTMOCK_CA_DIR and IOTMOCK_UPDATE_CA replace the directory and the command. */
#include "trust.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/pem.h>
#include <openssl/x509.h>

#include "bootstrap.h"
#include "ca.h"

#define CA_DIR "/usr/local/share/ca-certificates"
#define UPDATE_CA "update-ca-certificates"
#define ROOT_CA_FILE "root-ca.pem"
#define NAME_ID_CHARS 16 /* of the certificate id, in the file name */

static const char *env_or(const char *name, const char *fallback)
{
    const char *v = getenv(name);
    return v && v[0] ? v : fallback;
}

/* "iotmock-<first 16 hex digits of the CA's certificate id>.crt" for the CA in PEM_PATH. */
static int store_name(const char *pem_path, char *out, size_t n)
{
    FILE *f = fopen(pem_path, "r");
    if (f == NULL) {
        fprintf(stderr,
                "iotmock: %s: %s (start `iotmock serve` with this state directory once "
                "to create it)\n",
                pem_path, strerror(errno));
        return 0;
    }
    X509 *cert = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    char id[CA_ID_LEN + 1];
    int ok = cert != NULL && ca_cert_id(cert, id) == IOT_OK;
    X509_free(cert);
    if (!ok) {
        fprintf(stderr, "iotmock: %s is not a PEM certificate\n", pem_path);
        return 0;
    }
    snprintf(out, n, "iotmock-%.*s.crt", NAME_ID_CHARS, id);
    return 1;
}

static int copy_file(const char *from, const char *to)
{
    size_t len = 0;
    char *data = bootstrap_read_file(from, &len);
    if (data == NULL)
        return 0;
    FILE *f = fopen(to, "w");
    int ok = f != NULL && fwrite(data, 1, len, f) == len;
    if (f != NULL && fclose(f) != 0)
        ok = 0;
    free(data);
    return ok && chmod(to, 0644) == 0;
}

/* Runs the trust store's update command; its exit status. */
static int update_store(void)
{
    const char *cmd = env_or("IOTMOCK_UPDATE_CA", UPDATE_CA);
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0)
        return 1;
    if (pid == 0) {
        execlp(cmd, cmd, (char *)NULL);
        fprintf(stderr, "iotmock: cannot run %s: %s\n", cmd, strerror(errno));
        _exit(127);
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}

static int parse(int argc, char **argv, const char **state_dir)
{
    static const struct option longs[] = {{"state-dir", required_argument, NULL, 's'},
                                          {"help", no_argument, NULL, 'h'},
                                          {NULL, 0, NULL, 0}};
    *state_dir = "./.iotmock";
    int c;
    while ((c = getopt_long(argc, argv, "h", longs, NULL)) != -1) {
        if (c == 's')
            *state_dir = optarg;
        else
            return 0;
    }
    return optind == argc;
}

int trust_main(int argc, char **argv, bool add)
{
    const char *state_dir;
    if (!parse(argc, argv, &state_dir)) {
        fprintf(stderr, "usage: iotmock %s [--state-dir DIR]\n", add ? "trust" : "untrust");
        return 2;
    }
    char pem[PATH_MAX], name[64], target[PATH_MAX + 64];
    const char *dir = env_or("IOTMOCK_CA_DIR", CA_DIR);
    snprintf(pem, sizeof(pem), "%s/%s", state_dir, ROOT_CA_FILE);
    if (!store_name(pem, name, sizeof(name)))
        return 1;
    snprintf(target, sizeof(target), "%s/%s", dir, name);
    if (add) {
        if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
            fprintf(stderr, "iotmock: %s: %s\n", dir, strerror(errno));
            return 1;
        }
        if (!copy_file(pem, target)) {
            fprintf(stderr, "iotmock: cannot write %s: %s\n", target, strerror(errno));
            return 1;
        }
    } else if (unlink(target) != 0) {
        if (errno != ENOENT) {
            fprintf(stderr, "iotmock: cannot remove %s: %s\n", target, strerror(errno));
            return 1;
        }
        printf("iotmock: %s was not trusted (no %s)\n", pem, target);
        return 0;
    }
    if (update_store() != 0) {
        fprintf(stderr, "iotmock: %s failed\n", env_or("IOTMOCK_UPDATE_CA", UPDATE_CA));
        return 1;
    }
    printf(add ? "iotmock: %s is now trusted by the system (%s)\n"
               : "iotmock: %s is no longer trusted by the system (removed %s)\n",
           pem, target);
    return 0;
}
