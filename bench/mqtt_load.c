/* bench_mqtt: the load generator of bench/run, on libmosquitto (TLS with a client certificate).
 * Every client of a run lives in one thread and one poll() loop, so that thousands of connections
 * cost one process. Modes (results on stdout as "name value" lines, progress on stderr):
 *
 *   provision  N fleet-provisioning flows over C connections with the claim certificate:
 *              keys flow (CreateKeysAndCertificate + RegisterThing) or CSR flow
 *              (CreateCertificateFromCsr with CSRs made before the clock starts + RegisterThing);
 *              flows/s and p50/p99 latency per request and per flow.
 *   publish    C clients each publish M messages to their own topic and receive them back
 *              (QoS 0 or 1, at most W in flight per client): messages/s and p50/p99 latency.
 *   probe      one client publishing QoS 1 at R messages/s until SIGTERM or --seconds: latency.
 *   hold       N connections kept open until SIGTERM; prints "connected N" once all are up.
 */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <mosquitto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#define TOKEN_MAX 1024
#define CONNECTING_MAX 64 /* TLS handshakes in progress at once (hold mode) */

enum mode { MODE_PROVISION, MODE_PUBLISH, MODE_PROBE, MODE_HOLD };

struct opts {
    enum mode mode;
    const char *host, *cafile, *cert, *key, *template_name, *prefix;
    int port, clients, qos, window, payload;
    long n;        /* flows (provision), messages per client (publish), connections (hold) */
    int csr;       /* provision: CSR flow instead of keys flow */
    double rate;   /* probe: messages per second */
    double seconds; /* probe: stop after this long (0: at SIGTERM) */
};

struct samples {
    double *v;
    size_t n, cap;
};

struct client {
    struct mosquitto *m;
    int idx;
    int connected, ready, failed;
    /* provision */
    int step; /* 0 idle, 1 create sent, 2 register sent */
    long flow;
    double t_flow, t_req;
    /* publish / probe */
    long sent, received;
    int in_flight;
};

static struct opts o = {.host = "localhost", .port = 8883, .clients = 1, .qos = 1, .window = 1,
                        .payload = 64, .n = 1, .template_name = "fleet-default", .rate = 50};
static struct client *clients;
static volatile sig_atomic_t stop_requested;
static long flows_started, flows_done, errors, ready_count, connected_count;
static char **csrs; /* provision --csr: one JSON-escaped PEM per flow */
static struct samples lat_create, lat_register, lat_flow, lat_msg;
static char topic_create[128], topic_register[192];

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what)
{
    fprintf(stderr, "bench_mqtt: %s\n", what);
    exit(1);
}

static void sample_add(struct samples *s, double v)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 1024;
        s->v = realloc(s->v, s->cap * sizeof(*s->v));
        if (s->v == NULL)
            die("out of memory");
    }
    s->v[s->n++] = v;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Prints NAME_p50_ms, NAME_p99_ms, NAME_max_ms (nearest-rank percentiles). */
static void sample_print(const char *name, struct samples *s)
{
    if (s->n == 0) {
        printf("%s_count 0\n", name);
        return;
    }
    qsort(s->v, s->n, sizeof(*s->v), cmp_double);
    size_t i50 = (s->n * 50 + 99) / 100, i99 = (s->n * 99 + 99) / 100;
    printf("%s_count %zu\n%s_p50_ms %.3f\n%s_p99_ms %.3f\n%s_max_ms %.3f\n", name, s->n, name,
           s->v[i50 ? i50 - 1 : 0] * 1e3, name, s->v[i99 ? i99 - 1 : 0] * 1e3, name,
           s->v[s->n - 1] * 1e3);
}

/* ---- provisioning ------------------------------------------------------------------------ */

/* A CSR for a fresh EC P-256 key, as a JSON string body (newlines escaped). Caller frees. */
static char *make_csr_json(long i)
{
    EVP_PKEY *pk = EVP_EC_gen("P-256");
    X509_REQ *req = X509_REQ_new();
    BIO *bio = BIO_new(BIO_s_mem());
    char cn[64], *out = NULL;
    snprintf(cn, sizeof(cn), "bench-%ld", i);
    if (pk == NULL || req == NULL || bio == NULL)
        goto cleanup;
    X509_NAME *name = X509_REQ_get_subject_name(req);
    if (!X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (unsigned char *)cn, -1, -1, 0) ||
        !X509_REQ_set_pubkey(req, pk) || !X509_REQ_sign(req, pk, EVP_sha256()) ||
        !PEM_write_bio_X509_REQ(bio, req))
        goto cleanup;
    char *pem;
    long len = BIO_get_mem_data(bio, &pem);
    out = malloc((size_t)len * 2 + 64);
    if (out == NULL)
        goto cleanup;
    char *p = out + sprintf(out, "{\"certificateSigningRequest\":\"");
    for (long k = 0; k < len; k++) {
        if (pem[k] == '\n') {
            *p++ = '\\';
            *p++ = 'n';
        } else {
            *p++ = pem[k];
        }
    }
    strcpy(p, "\"}");
cleanup:
    BIO_free(bio);
    X509_REQ_free(req);
    EVP_PKEY_free(pk);
    return out;
}

static void flow_start(struct client *c)
{
    if (flows_started >= o.n || stop_requested) {
        c->step = 0;
        return;
    }
    c->flow = flows_started++;
    c->step = 1;
    c->t_flow = c->t_req = now_s();
    const char *body = o.csr ? csrs[c->flow] : "{}";
    if (mosquitto_publish(c->m, NULL, topic_create, (int)strlen(body), body, 1, false) !=
        MOSQ_ERR_SUCCESS)
        c->failed = 1;
}

/* Copies the string value of "KEY" in the JSON text P (LEN bytes) into OUT; 0 if absent. */
static int json_string(const char *p, int len, const char *key, char *out, size_t size)
{
    char pat[64];
    snprintf(pat, sizeof(pat), "\"%s\":\"", key);
    const char *end = p + len, *s = memmem(p, (size_t)len, pat, strlen(pat));
    if (s == NULL)
        return 0;
    s += strlen(pat);
    const char *q = memchr(s, '"', (size_t)(end - s));
    if (q == NULL || (size_t)(q - s) >= size)
        return 0;
    memcpy(out, s, (size_t)(q - s));
    out[q - s] = '\0';
    return 1;
}

static void on_provision_message(struct client *c, const struct mosquitto_message *msg)
{
    double t = now_s();
    size_t lc = strlen(topic_create), lr = strlen(topic_register);
    if (strncmp(msg->topic, topic_create, lc) == 0 && strcmp(msg->topic + lc, "/accepted") == 0 &&
        c->step == 1) {
        char token[TOKEN_MAX], body[TOKEN_MAX + 256];
        sample_add(&lat_create, t - c->t_req);
        if (!json_string(msg->payload, msg->payloadlen, "certificateOwnershipToken", token,
                         sizeof(token))) {
            fprintf(stderr, "bench_mqtt: no token in %.*s\n", msg->payloadlen,
                    (const char *)msg->payload);
            c->failed = 1;
            return;
        }
        int len = snprintf(body, sizeof(body),
                           "{\"certificateOwnershipToken\":\"%s\",\"parameters\":"
                           "{\"SerialNumber\":\"%s-%ld\"}}",
                           token, o.prefix, c->flow);
        c->step = 2;
        c->t_req = now_s();
        if (mosquitto_publish(c->m, NULL, topic_register, len, body, 1, false) != MOSQ_ERR_SUCCESS)
            c->failed = 1;
    } else if (strncmp(msg->topic, topic_register, lr) == 0 &&
               strcmp(msg->topic + lr, "/accepted") == 0 && c->step == 2) {
        sample_add(&lat_register, t - c->t_req);
        sample_add(&lat_flow, t - c->t_flow);
        flows_done++;
        flow_start(c);
    } else {
        fprintf(stderr, "bench_mqtt: %s: %.*s\n", msg->topic, msg->payloadlen > 300 ? 300 : msg->payloadlen,
                (const char *)msg->payload);
        errors++;
        c->failed = 1;
    }
}

/* ---- publish / probe --------------------------------------------------------------------- */

static void client_topic(const struct client *c, char *buf, size_t size)
{
    snprintf(buf, size, "bench/%s/%d", o.prefix, c->idx);
}

static void publish_one(struct client *c)
{
    char topic[128];
    unsigned char payload[65536];
    double t = now_s();
    size_t size = (size_t)o.payload < sizeof(t) ? sizeof(t) : (size_t)o.payload;
    memset(payload, 'x', size);
    memcpy(payload, &t, sizeof(t)); /* the sending time travels in the message */
    client_topic(c, topic, sizeof(topic));
    if (mosquitto_publish(c->m, NULL, topic, (int)size, payload, o.qos, false) != MOSQ_ERR_SUCCESS)
        c->failed = 1;
    c->sent++;
    c->in_flight++;
}

static void on_publish_message(struct client *c, const struct mosquitto_message *msg)
{
    double sent;
    if (msg->payloadlen < (int)sizeof(sent)) {
        errors++;
        return;
    }
    memcpy(&sent, msg->payload, sizeof(sent));
    sample_add(&lat_msg, now_s() - sent);
    c->received++;
    c->in_flight--;
    if (o.mode == MODE_PUBLISH && c->sent < o.n)
        publish_one(c);
}

/* ---- callbacks --------------------------------------------------------------------------- */

static void on_connect(struct mosquitto *m, void *obj, int rc)
{
    struct client *c = obj;
    if (rc != 0) {
        fprintf(stderr, "bench_mqtt: client %d: CONNACK %d (%s)\n", c->idx, rc,
                mosquitto_connack_string(rc));
        c->failed = 1;
        return;
    }
    c->connected = 1;
    connected_count++;
    if (o.mode == MODE_HOLD) {
        c->ready = 1;
        ready_count++;
        return;
    }
    if (o.mode == MODE_PROVISION) {
        char f[4][224];
        char *filters[4] = {f[0], f[1], f[2], f[3]};
        snprintf(f[0], sizeof(f[0]), "%s/accepted", topic_create);
        snprintf(f[1], sizeof(f[1]), "%s/rejected", topic_create);
        snprintf(f[2], sizeof(f[2]), "%s/accepted", topic_register);
        snprintf(f[3], sizeof(f[3]), "%s/rejected", topic_register);
        if (mosquitto_subscribe_multiple(m, NULL, 4, filters, 1, 0, NULL) != MOSQ_ERR_SUCCESS)
            c->failed = 1;
        return;
    }
    char topic[128];
    client_topic(c, topic, sizeof(topic));
    if (mosquitto_subscribe(m, NULL, topic, o.qos) != MOSQ_ERR_SUCCESS)
        c->failed = 1;
}

static void on_subscribe(struct mosquitto *m, void *obj, int mid, int n, const int *granted)
{
    struct client *c = obj;
    (void)m;
    (void)mid;
    for (int i = 0; i < n; i++) {
        if (granted[i] > 2) {
            fprintf(stderr, "bench_mqtt: client %d: subscription refused (%d)\n", c->idx, granted[i]);
            c->failed = 1;
            return;
        }
    }
    c->ready = 1;
    ready_count++;
}

static void on_message(struct mosquitto *m, void *obj, const struct mosquitto_message *msg)
{
    (void)m;
    if (o.mode == MODE_PROVISION)
        on_provision_message(obj, msg);
    else
        on_publish_message(obj, msg);
}

static void on_disconnect(struct mosquitto *m, void *obj, int rc)
{
    struct client *c = obj;
    (void)m;
    if (c->connected && !stop_requested && rc != 0) {
        fprintf(stderr, "bench_mqtt: client %d disconnected (%d)\n", c->idx, rc);
        c->failed = 1;
    }
    c->connected = 0;
}

/* ---- the loop ---------------------------------------------------------------------------- */

static void client_new(struct client *c, int idx)
{
    char id[96];
    snprintf(id, sizeof(id), "%s-%d", o.prefix, idx);
    c->idx = idx;
    c->m = mosquitto_new(id, true, c);
    if (c->m == NULL)
        die("mosquitto_new failed");
    int nodelay = 1;
    mosquitto_int_option(c->m, MOSQ_OPT_TCP_NODELAY, nodelay);
    mosquitto_connect_callback_set(c->m, on_connect);
    mosquitto_subscribe_callback_set(c->m, on_subscribe);
    mosquitto_message_callback_set(c->m, on_message);
    mosquitto_disconnect_callback_set(c->m, on_disconnect);
}

static void client_tls(struct client *c)
{
    if (mosquitto_tls_set(c->m, o.cafile, NULL, o.cert, o.key, NULL) != MOSQ_ERR_SUCCESS)
        die("mosquitto_tls_set failed (certificate files?)");
}

static void client_connect(struct client *c)
{
    int rc = mosquitto_connect_async(c->m, o.host, o.port, 1200);
    if (rc != MOSQ_ERR_SUCCESS) {
        fprintf(stderr, "bench_mqtt: client %d: connect: %s\n", c->idx,
                rc == MOSQ_ERR_ERRNO ? strerror(errno) : mosquitto_strerror(rc));
        c->failed = 1;
    }
}

/* One round of poll() over every open socket, then the libmosquitto read/write/misc steps. */
static void loop_once(int timeout_ms, struct pollfd *fds, int *map)
{
    int n = 0;
    for (int i = 0; i < o.clients; i++) {
        int s = mosquitto_socket(clients[i].m);
        if (s < 0)
            continue;
        fds[n] = (struct pollfd){.fd = s, .events = POLLIN};
        if (mosquitto_want_write(clients[i].m))
            fds[n].events |= POLLOUT;
        map[n++] = i;
    }
    if (poll(fds, (nfds_t)n, timeout_ms) < 0 && errno != EINTR)
        die("poll failed");
    for (int k = 0; k < n; k++) {
        struct client *c = &clients[map[k]];
        int rc = MOSQ_ERR_SUCCESS;
        if (fds[k].revents & (POLLIN | POLLERR | POLLHUP))
            rc = mosquitto_loop_read(c->m, 1);
        if (rc == MOSQ_ERR_SUCCESS && (fds[k].revents & POLLOUT))
            rc = mosquitto_loop_write(c->m, 1);
        if (rc != MOSQ_ERR_SUCCESS && rc != MOSQ_ERR_NO_CONN && !stop_requested) {
            fprintf(stderr, "bench_mqtt: client %d: %s\n", c->idx,
                    rc == MOSQ_ERR_ERRNO ? strerror(errno) : mosquitto_strerror(rc));
            c->failed = 1;
        }
    }
}

static int any_failed(void)
{
    for (int i = 0; i < o.clients; i++)
        if (clients[i].failed)
            return 1;
    return 0;
}

/* Loops until every client is ready (subscribed / connected); 0 on failure or timeout. */
static int wait_ready(struct pollfd *fds, int *map, double timeout)
{
    double end = now_s() + timeout, last_misc = now_s();
    int next = 0; /* hold mode connects gradually: at most CONNECTING_MAX handshakes at once */
    while (ready_count < o.clients) {
        while (next < o.clients && next - connected_count < CONNECTING_MAX)
            client_connect(&clients[next++]);
        loop_once(10, fds, map);
        if (any_failed() || stop_requested || now_s() > end)
            return 0;
        if (now_s() - last_misc > 1.0) {
            for (int i = 0; i < next; i++)
                mosquitto_loop_misc(clients[i].m);
            last_misc = now_s();
            fprintf(stderr, "bench_mqtt: %ld/%d ready\n", ready_count, o.clients);
        }
    }
    return 1;
}

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: bench_mqtt MODE --cafile F --cert F --key F [--host H] [--port P]\n"
            "         [--clients C] [--n N] [--csr] [--qos Q] [--window W] [--payload BYTES]\n"
            "         [--rate R] [--seconds S] [--prefix P]\n"
            "MODE: provision | publish | probe | hold\n");
    exit(2);
}

static void parse(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"host", 1, 0, 'h'},   {"port", 1, 0, 'p'},    {"cafile", 1, 0, 'a'}, {"cert", 1, 0, 'c'},
        {"key", 1, 0, 'k'},    {"clients", 1, 0, 'C'}, {"n", 1, 0, 'n'},      {"csr", 0, 0, 'S'},
        {"qos", 1, 0, 'q'},    {"window", 1, 0, 'w'},  {"payload", 1, 0, 'b'}, {"rate", 1, 0, 'r'},
        {"seconds", 1, 0, 's'}, {"prefix", 1, 0, 'P'}, {"template", 1, 0, 'T'}, {0, 0, 0, 0}};
    if (argc < 2)
        usage();
    const char *m = argv[1];
    o.mode = !strcmp(m, "provision") ? MODE_PROVISION
             : !strcmp(m, "publish") ? MODE_PUBLISH
             : !strcmp(m, "probe")   ? MODE_PROBE
             : !strcmp(m, "hold")    ? MODE_HOLD
                                     : (usage(), MODE_HOLD);
    int ch;
    optind = 2;
    while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (ch) {
        case 'h': o.host = optarg; break;
        case 'p': o.port = atoi(optarg); break;
        case 'a': o.cafile = optarg; break;
        case 'c': o.cert = optarg; break;
        case 'k': o.key = optarg; break;
        case 'C': o.clients = atoi(optarg); break;
        case 'n': o.n = atol(optarg); break;
        case 'S': o.csr = 1; break;
        case 'q': o.qos = atoi(optarg); break;
        case 'w': o.window = atoi(optarg); break;
        case 'b': o.payload = atoi(optarg); break;
        case 'r': o.rate = atof(optarg); break;
        case 's': o.seconds = atof(optarg); break;
        case 'P': o.prefix = optarg; break;
        case 'T': o.template_name = optarg; break;
        default: usage();
        }
    }
    if (!o.cafile || !o.cert || !o.key || o.clients < 1 || o.n < 1 || o.qos < 0 || o.qos > 1 ||
        o.window < 1 || o.payload < 8 || o.payload > 65536 || o.rate <= 0)
        usage();
    if (o.mode == MODE_PROBE)
        o.clients = 1;
    if (o.mode == MODE_HOLD)
        o.clients = (int)o.n;
}

int main(int argc, char **argv)
{
    parse(argc, argv);
    static char prefix[48];
    if (o.prefix == NULL) {
        snprintf(prefix, sizeof(prefix), "bench-%ld-%d", (long)time(NULL), (int)getpid());
        o.prefix = prefix;
    }
    snprintf(topic_create, sizeof(topic_create), "$aws/certificates/%s/json",
             o.csr ? "create-from-csr" : "create");
    snprintf(topic_register, sizeof(topic_register), "$aws/provisioning-templates/%s/provision/json",
             o.template_name);
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    signal(SIGPIPE, SIG_IGN);
    mosquitto_lib_init();

    if (o.mode == MODE_PROVISION && o.csr) {
        csrs = calloc((size_t)o.n, sizeof(*csrs));
        for (long i = 0; csrs && i < o.n; i++)
            if ((csrs[i] = make_csr_json(i)) == NULL)
                die("cannot make a CSR");
    }
    clients = calloc((size_t)o.clients, sizeof(*clients));
    struct pollfd *fds = calloc((size_t)o.clients, sizeof(*fds));
    int *map = calloc((size_t)o.clients, sizeof(*map));
    if (!clients || !fds || !map)
        die("out of memory");
    /* mosquitto_new() opens a socket pair per client to wake mosquitto_loop(), which this poll()
     * loop never uses: with no descriptor available it only warns. Without that, 10,000 clients
     * would need 30,000 descriptors instead of 10,000. */
    struct rlimit nofile, none = {0, 0};
    if (getrlimit(RLIMIT_NOFILE, &nofile) != 0)
        die("getrlimit failed");
    none.rlim_max = nofile.rlim_max;
    setrlimit(RLIMIT_NOFILE, &none);
    for (int i = 0; i < o.clients; i++)
        client_new(&clients[i], i);
    if (setrlimit(RLIMIT_NOFILE, &nofile) != 0)
        die("setrlimit failed");
    for (int i = 0; i < o.clients; i++)
        client_tls(&clients[i]);

    double t_conn = now_s();
    if (!wait_ready(fds, map, o.mode == MODE_HOLD ? 600 : 60))
        die("clients did not all connect and subscribe");
    printf("connect_s %.3f\n", now_s() - t_conn);
    if (o.mode == MODE_HOLD) {
        printf("connected %d\n", o.clients);
        fflush(stdout);
    }

    double t0 = now_s(), last_misc = t0, next_probe = t0;
    if (o.mode == MODE_PROVISION) {
        for (int i = 0; i < o.clients; i++)
            flow_start(&clients[i]);
    } else if (o.mode == MODE_PUBLISH) {
        for (int i = 0; i < o.clients; i++)
            for (int w = 0; w < o.window && clients[i].sent < o.n; w++)
                publish_one(&clients[i]);
    }
    long expected = (long)o.clients * o.n;
    for (;;) {
        if (o.mode == MODE_PROVISION && flows_done >= o.n)
            break;
        if (o.mode == MODE_PUBLISH && (long)lat_msg.n >= expected)
            break;
        if (stop_requested || (o.seconds > 0 && now_s() - t0 > o.seconds))
            break;
        if (any_failed())
            die("a client failed (see above)");
        if (o.mode == MODE_PROBE && now_s() >= next_probe) {
            if (clients[0].in_flight == 0)
                publish_one(&clients[0]);
            next_probe += 1.0 / o.rate;
        }
        loop_once(o.mode == MODE_PROBE ? 1 : 50, fds, map);
        if (now_s() - last_misc > 1.0) {
            for (int i = 0; i < o.clients; i++)
                mosquitto_loop_misc(clients[i].m);
            last_misc = now_s();
        }
    }
    double wall = now_s() - t0;
    printf("wall_s %.3f\n", wall);
    if (o.mode == MODE_PROVISION) {
        printf("flows %ld\nflows_per_s %.2f\n", flows_done, (double)flows_done / wall);
        sample_print(o.csr ? "req_create_csr" : "req_create_keys", &lat_create);
        sample_print("req_register", &lat_register);
        sample_print("flow", &lat_flow);
    } else if (o.mode != MODE_HOLD) {
        printf("messages %zu\nmessages_per_s %.1f\n", lat_msg.n, (double)lat_msg.n / wall);
        sample_print("msg", &lat_msg);
    }
    fflush(stdout);
    stop_requested = 1;
    for (int i = 0; i < o.clients; i++) {
        mosquitto_disconnect(clients[i].m);
        mosquitto_loop_write(clients[i].m, 1);
        mosquitto_destroy(clients[i].m);
    }
    mosquitto_lib_cleanup();
    return errors ? 1 : 0;
}
