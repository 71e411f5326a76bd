/* fuzz_http: the control plane (shared/spec/provisioning.md §6) as a client reaches it: the real
 * libmicrohttpd server of emulator/http/ runs in-process on a free loopback port, and each input
 * is sent to it as one raw HTTP request over a new TCP connection. The handlers need a live
 * MHD_Connection for headers and query strings, so there is no socket-free entry point to call.
 *
 * Input: an HTTP/1.1 request ("METHOD /path?query HTTP/1.1", header lines, a blank line, the
 * body). The harness fixes the framing so that mutations reach the routes rather than the
 * length check: Content-Length and Transfer-Encoding lines are replaced by the body's real length,
 * and "Connection: close" is added. A request without a blank line is all head.
 *
 * The claim certificate the seed registers is new in each process, so the harness replaces every
 * FUZZ_CERT_PLACEHOLDER (64 bytes, like a certificate id) in the input by its id, and seeds can
 * name a certificate that exists.
 *
 * Requests for the two operations that generate an RSA key (CreateKeysAndCertificate and
 * CreateProvisioningClaim, tens of milliseconds each) are skipped: any input whose
 * percent-decoded path mentions them does nothing.
 *
 * Every input starts from the registry's seed (what POST /_iotmock/reset restores, plus the few
 * resources reseed() adds): it is reseeded after any request that may have changed it, so an
 * input behaves the same whenever it runs.
 *
 * IOTMOCK_FUZZ_STRICT=1 also stops at the first 5xx AWS error (an internal failure on client
 * input is worth a look, though not always a bug); IOTMOCK_FUZZ_VERBOSE=1 prints each request
 * line with the answer it got. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "bootstrap.h"
#include "ca.h"
#include "cacert.h"
#include "fuzz_util.h"
#include "http/server.h"
#include "registry.h"

#define FUZZ_CERT_PLACEHOLDER "@@@@iotmock-fuzz-claim-certificate-id-placeholder@@@@@@@@@@@@@@@"
_Static_assert(sizeof(FUZZ_CERT_PLACEHOLDER) - 1 == CA_ID_LEN, "placeholder is 64 bytes");
#define REPLY_TIMEOUT_S 10 /* no answer (nor close) within this is a hang: abort */

static struct registry *reg;
static struct ca *ca;
static struct cacert_store *cas; /* the bring-your-own CA routes */
static char capath_dir[512];
static struct http_server *server;
static struct bootstrap_seed seed;
static int port;
static bool strict, verbose;
static bool dirty; /* the registry may differ from its seed */
static char claim_id[CA_ID_LEN + 1];

static int free_port(void)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof(a)) != 0 ||
        getsockname(s, (struct sockaddr *)&a, &len) != 0) {
        perror("fuzz setup: free port");
        abort();
    }
    close(s);
    return ntohs(a.sin_port);
}

/* The seed a server starts with, plus a few resources for the seeds' requests to find: thing
 * type "sensor", groups "root" and "fleet", thing "dev1" of type sensor in fleet, attached to the
 * claim certificate. */
static void reseed(void)
{
    struct iot_error err = {0};
    fuzz_need(registry_reset(reg, &err), &err, "registry_reset");
    fuzz_need(cacert_store_reset(cas, &err), &err, "cacert_store_reset");
    fuzz_need(bootstrap_registry(reg, &seed, &err), &err, "bootstrap_registry");
    cJSON *attrs = cJSON_CreateObject();
    cJSON_AddStringToObject(attrs, "serialNumber", "42");
    struct registry_thing dev1 = {
        .name = (char *)"dev1", .type_name = (char *)"sensor", .attributes = attrs};
    fuzz_need(registry_thing_type_put(reg, "sensor", &err), &err, "thing type");
    fuzz_need(registry_thing_group_put(reg, "root", &err), &err, "thing group");
    fuzz_need(registry_thing_group_put(reg, "fleet", &err), &err, "thing group");
    fuzz_need(registry_thing_put(reg, &dev1, &err), &err, "registry_thing_put");
    fuzz_need(registry_thing_group_add(reg, "fleet", "dev1", &err), &err, "group add");
    fuzz_need(registry_thing_principal_attach(reg, "dev1", claim_id, &err), &err, "attach");
    cJSON_Delete(attrs);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    struct iot_error err = {0};
    const char *dir = fuzz_dir_make();
    strict = getenv("IOTMOCK_FUZZ_STRICT") != NULL && getenv("IOTMOCK_FUZZ_STRICT")[0] == '1';
    verbose = getenv("IOTMOCK_FUZZ_VERBOSE") != NULL && getenv("IOTMOCK_FUZZ_VERBOSE")[0] == '1';
    fuzz_need(bootstrap_files(dir, "localhost", &err), &err, "bootstrap_files");
    fuzz_need(ca_open(dir, &ca, &err), &err, "ca_open");
    fuzz_need(registry_open(":memory:", &reg, &err), &err, "registry_open");
    fuzz_need(cacert_store_open(":memory:", &cas, &err), &err, "cacert_store_open");
    snprintf(capath_dir, sizeof(capath_dir), "%s/capath", dir);
    if (mkdir(capath_dir, 0755) != 0)
        abort();
    char path[256];
    size_t len = 0;
    X509 *claim = NULL;
    snprintf(path, sizeof(path), "%s/%s", dir, BOOTSTRAP_CLAIM_CERT);
    char *pem = fuzz_read_file(path, &len);
    fuzz_need(ca_cert_from_pem(pem, len, &claim, &err), &err, "ca_cert_from_pem");
    fuzz_need(ca_cert_id(claim, claim_id), NULL, "ca_cert_id");
    X509_free(claim);
    free(pem);
    seed = (struct bootstrap_seed){.state_dir = dir,
                                   .data_dir = FIXTURES_DIR,
                                   .region = "us-east-1",
                                   .account_id = "123456789012"};
    reseed();
    enum iot_err rc = IOT_ERR_IO;
    for (int attempt = 0; attempt < 10 && rc != IOT_OK; attempt++) {
        port = free_port();
        struct http_config cfg = {.bind = "127.0.0.1",
                                  .port = port,
                                  .reg = reg,
                                  .state_dir = dir,
                                  .ca = ca,
                                  .region = "us-east-1",
                                  .account_id = "123456789012",
                                  .host = "localhost",
                                  .seed = &seed,
                                  .cacerts = cas,
                                  .capath = capath_dir};
        rc = http_server_start(&cfg, &server, &err);
    }
    fuzz_need(rc, &err, "http_server_start");
    return 0;
}

static int hex_digit(char c)
{
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

/* Percent-decodes S[0..N) (invalid escapes stay as they are) into a new string. */
static char *decode(const char *s, size_t n)
{
    char *out = malloc(n + 1), *o = out;
    if (out == NULL)
        abort();
    for (size_t i = 0; i < n; i++) {
        int hi = i + 2 < n && s[i] == '%' ? hex_digit(s[i + 1]) : -1;
        int lo = hi >= 0 ? hex_digit(s[i + 2]) : -1;
        if (lo >= 0) {
            *o++ = (char)(hi << 4 | lo);
            i += 2;
        } else {
            *o++ = s[i];
        }
    }
    *o = '\0';
    return out;
}

/* Whether the request line of HEAD names an operation that generates an RSA key. */
static bool generates_key(const char *head, size_t n)
{
    const char *eol = memchr(head, '\n', n);
    size_t line = eol ? (size_t)(eol - head) : n;
    char *path = decode(head, line);
    bool slow =
        strstr(path, "keys-and-certificate") != NULL || strstr(path, "provisioning-claim") != NULL;
    free(path);
    return slow;
}

static bool framing_header(const char *line, size_t n)
{
    static const char *const names[] = {"content-length:", "transfer-encoding:"};
    for (size_t i = 0; i < 2; i++) {
        size_t k = strlen(names[i]);
        if (n >= k && strncasecmp(line, names[i], k) == 0)
            return true;
    }
    return false;
}

/* The request as sent: HEAD's lines minus framing headers, our framing, the body. */
static char *frame(const char *head, size_t head_len, const char *body, size_t body_len,
                   size_t *out_len)
{
    size_t cap = head_len + body_len + 128;
    char *out = malloc(cap), *o = out;
    if (out == NULL)
        abort();
    while (head_len > 0) {
        const char *nl = memchr(head, '\n', head_len);
        size_t line = nl ? (size_t)(nl - head) + 1 : head_len;
        if (!framing_header(head, line)) {
            memcpy(o, head, line);
            o += line;
            if (nl == NULL) { /* the last line had no end: give it one */
                *o++ = '\r';
                *o++ = '\n';
            }
        }
        head += line;
        head_len -= line;
    }
    o += sprintf(o, "Content-Length: %zu\r\nConnection: close\r\n\r\n", body_len);
    if (body_len)
        memcpy(o, body, body_len);
    *out_len = (size_t)(o - out) + body_len;
    return out;
}

/* connect(), resumed when a signal interrupts it (libFuzzer's SIGALRM for -timeout does). */
static int connect_loopback(int s)
{
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (connect(s, (struct sockaddr *)&a, sizeof(a)) == 0)
        return 0;
    if (errno != EINTR)
        return -1;
    struct pollfd p = {.fd = s, .events = POLLOUT};
    int soerr = 0;
    socklen_t len = sizeof(soerr);
    int n;
    while ((n = poll(&p, 1, REPLY_TIMEOUT_S * 1000)) < 0 && errno == EINTR)
        ;
    if (n != 1 || getsockopt(s, SOL_SOCKET, SO_ERROR, &soerr, &len) != 0 || soerr != 0)
        return -1;
    return 0;
}

static char answer[1024]; /* the first bytes of the last answer, NUL-terminated */

/* Sends REQ and reads the answer until the server closes; returns the status (0: none). */
static int exchange(const char *req, size_t len)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct timeval tv = {.tv_sec = REPLY_TIMEOUT_S};
    if (s < 0 || setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) != 0 ||
        connect_loopback(s) != 0) {
        perror("fuzz: connect");
        abort();
    }
    for (size_t sent = 0; sent < len;) {
        ssize_t n = send(s, req + sent, len - sent, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break; /* the server may close early on a request it refuses */
        sent += (size_t)n;
    }
    shutdown(s, SHUT_WR);
    size_t got = 0;
    answer[0] = '\0';
    for (;;) {
        char buf[4096];
        ssize_t n = recv(s, buf, sizeof(buf), 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            fprintf(stderr, "fuzz: no answer within %d s: the server hangs\n", REPLY_TIMEOUT_S);
            abort();
        }
        if (n <= 0)
            break;
        if (got < sizeof(answer) - 1) {
            size_t k = sizeof(answer) - 1 - got < (size_t)n ? sizeof(answer) - 1 - got : (size_t)n;
            memcpy(answer + got, buf, k);
            answer[got + k] = '\0';
        }
        got += (size_t)n;
    }
    close(s);
    int status = 0;
    if (strncmp(answer, "HTTP/1.", 7) == 0)
        status = atoi(answer + 9);
    return status;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *in = (const char *)data;
    const char *blank = NULL;
    for (size_t i = 0; blank == NULL && i + 4 <= size; i++)
        blank = memcmp(in + i, "\r\n\r\n", 4) == 0 ? in + i : NULL;
    size_t head_len = blank ? (size_t)(blank - in) + 2 : size;
    const char *body = blank ? blank + 4 : in + size;
    size_t body_len = size - (size_t)(body - in);
    if (head_len == 0 || generates_key(in, head_len))
        return 0;
    size_t len = 0;
    char *req = frame(in, head_len, body, body_len, &len);
    for (size_t i = 0; i + CA_ID_LEN <= len; i++) {
        if (req[i] == '@' && memcmp(req + i, FUZZ_CERT_PLACEHOLDER, CA_ID_LEN) == 0)
            memcpy(req + i, claim_id, CA_ID_LEN);
    }
    if (dirty)
        reseed();
    int status = exchange(req, len);
    /* Reseeding takes milliseconds, so it is done only when the registry may have changed: a GET
     * changes nothing, and an operation that fails changes nothing either (its transaction is
     * rolled back, api.h). */
    dirty = status >= 200 && status < 300 && !(head_len > 4 && memcmp(in, "GET ", 4) == 0);
    free(req);
    if (verbose) {
        const char *eol = memchr(in, '\r', head_len);
        const char *body_start = strstr(answer, "\r\n\r\n");
        size_t shown = eol ? (size_t)(eol - in) : head_len < 60 ? head_len : 60;
        fprintf(stderr, "fuzz: %d <- %.*s\n      %.200s\n", status, (int)shown, in,
                body_start ? body_start + 4 : "");
    }
    /* 5xx answers of libmicrohttpd itself (505 for an HTTP version) carry no AWS error type. */
    if (strict && status >= 500 && strstr(answer, "x-amzn-ErrorType") != NULL) {
        fprintf(stderr, "fuzz: the server answered %d\n", status);
        abort();
    }
    return 0;
}
