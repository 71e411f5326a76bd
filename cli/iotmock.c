/* `iotmock serve`: prepares the state directory (CA, server and claim certificates), writes the
 * Mosquitto configuration into it, and replaces itself with Debian's mosquitto loading
 * iotmock.so, so there is one process to run and to stop (SIGINT/SIGTERM stop it cleanly). */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bootstrap.h"
#include "ca.h"
#include "keypool.h"
#include "quota.h"
#include "trust.h"

#define DEFAULT_MOSQUITTO "/usr/sbin/mosquitto"

/* The hashed directory of client-certificate issuers the plugin keeps (emulator/capath.h). */
#define CAPATH_DIR "capath"

struct serve_opts {
    const char *state_dir, *host, *bind, *region, *account_id, *lambda_endpoint, *templates_dir;
    int mqtt_port, http_port;
    long token_ttl;
    int in_memory;
    int friendly;
    const char *qos0_refusal; /* disconnect (default), close or drop */
    const char *negated_absent; /* "true" (IAM, the default) or "false" */
    unsigned without;      /* AWS behaviours switched off (--without), bits of AWS_BEHAVIOURS */
    int alpn_port;         /* a second MQTT listener (e.g. 443), 0 = none */
    unsigned max_keepalive;
    int jitp_accept_first; /* --jitp-first-connect accept */
    unsigned long key_pool; /* pre-generated keys for CreateKeysAndCertificate, 0 = none */
};

/* AWS IoT Core behaviours that differ from stock Mosquitto, all on unless named in --without
 * (shared/spec/broker-and-policy.md §4, §5, §8.3). */
static const char *const AWS_BEHAVIOURS[] = {
#define W_QOS_LIMIT (1u << 0)
    "qos-limit", /* max_qos 1: no QoS 2 (§4.1) */
#define W_PAYLOAD_LIMIT (1u << 1)
    "payload-limit", /* 128 KB payloads (§4.5) */
#define W_TOPIC_LIMITS (1u << 2)
    "topic-limits", /* 256 bytes, 7 slashes (§4.4) */
#define W_SUBSCRIPTION_LIMIT (1u << 3)
    "subscription-limit", /* 50 per connection (§4.6) */
#define W_CLIENT_ID_RULES (1u << 4)
    "client-id-rules", /* 128 bytes, no leading $ (§4.2) */
#define W_KEEPALIVE_CLAMP (1u << 5)
    "keepalive-clamp", /* 0 and above the maximum mean the maximum (§4.3) */
#define W_RETAINED_EXACT (1u << 6)
    "retained-exact", /* retained messages on subscribe only to exact filters (§4.8) */
#define W_HASH_PARENT (1u << 7)
    "hash-parent", /* `#` does not match its parent level (§4.4) */
#define W_LIFECYCLE_EVENTS (1u << 8)
    "lifecycle-events", /* $aws/events/presence|subscriptions (§5) */
#define W_MQTT5_LIMITS (1u << 9)
    "mqtt5-limits", /* topic alias maximum 8, receive maximum 100 (§4.6, §4.10) */
#define W_SESSION_EXPIRY (1u << 10)
    "session-expiry", /* persistent sessions end after 1 h offline (§4.7) */
};
#define N_AWS_BEHAVIOURS (sizeof(AWS_BEHAVIOURS) / sizeof(AWS_BEHAVIOURS[0]))

/* Adds the behaviours named in LIST (comma-separated) to *WITHOUT; 0 for an unknown name. */
static int parse_without(const char *list, unsigned *without)
{
    char buf[512];
    snprintf(buf, sizeof(buf), "%s", list);
    char *save = NULL;
    for (char *name = strtok_r(buf, ",", &save); name; name = strtok_r(NULL, ",", &save)) {
        size_t i = 0;
        while (i < N_AWS_BEHAVIOURS && strcmp(name, AWS_BEHAVIOURS[i]) != 0)
            i++;
        if (i == N_AWS_BEHAVIOURS) {
            fprintf(stderr, "iotmock: --without %s: not one of", name);
            for (size_t j = 0; j < N_AWS_BEHAVIOURS; j++)
                fprintf(stderr, " %s", AWS_BEHAVIOURS[j]);
            fprintf(stderr, "\n");
            return 0;
        }
        *without |= 1u << i;
    }
    return 1;
}

static void usage(FILE *to)
{
    fprintf(to,
            "usage: iotmock serve [--state-dir DIR] [--host NAME] [--mqtt-port N] [--http-port N]\n"
            "                     [--bind ADDR] [--region R] [--account-id ID]\n"
            "                     [--lambda-endpoint URL] [--templates-dir DIR]\n"
            "                     [--token-ttl SECONDS] [--in-memory] [--friendly]\n"
            "                     [--alpn-port N] [--max-keepalive SECONDS] [--key-pool N]\n"
            "                     [--qos0-refusal disconnect|close|drop]\n"
            "                     [--negated-absent true|false]\n"
            "                     [--without BEHAVIOUR[,BEHAVIOUR...]]\n"
            "                     [--jitp-first-connect refuse|accept]\n"
            "       iotmock trust|untrust [--state-dir DIR]\n"
            "defaults: ./.iotmock, localhost, 8883 (MQTT over TLS), 4580 (HTTP), 127.0.0.1,\n"
            "          us-east-1, 123456789012\n"
            "behaviours --without switches off: qos-limit payload-limit topic-limits\n"
            "  subscription-limit client-id-rules keepalive-clamp retained-exact hash-parent\n"
            "  lifecycle-events mqtt5-limits session-expiry\n");
}

static int parse_port(const char *s, int *out)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v < 1 || v > 65535)
        return 0;
    *out = (int)v;
    return 1;
}

static int parse_args(int argc, char **argv, struct serve_opts *o)
{
    static const struct option longs[] = {
        {"state-dir", required_argument, NULL, 's'}, {"host", required_argument, NULL, 'H'},
        {"mqtt-port", required_argument, NULL, 'm'}, {"http-port", required_argument, NULL, 'p'},
        {"bind", required_argument, NULL, 'b'},      {"region", required_argument, NULL, 'r'},
        {"account-id", required_argument, NULL, 'a'},
        {"lambda-endpoint", required_argument, NULL, 'l'},
        {"templates-dir", required_argument, NULL, 't'},
        {"token-ttl", required_argument, NULL, 'T'}, {"in-memory", no_argument, NULL, 'M'},
        {"friendly", no_argument, NULL, 'F'},
        {"qos0-refusal", required_argument, NULL, 'Q'},
        {"negated-absent", required_argument, NULL, 'N'},
        {"alpn-port", required_argument, NULL, 'A'}, {"without", required_argument, NULL, 'W'},
        {"max-keepalive", required_argument, NULL, 'K'},
        {"jitp-first-connect", required_argument, NULL, 'J'},
        {"key-pool", required_argument, NULL, 'P'},
        {"help", no_argument, NULL, 'h'},            {NULL, 0, NULL, 0}};
    *o = (struct serve_opts){.state_dir = "./.iotmock", .host = "localhost", .bind = "127.0.0.1",
                             .region = "us-east-1", .account_id = "123456789012",
                             .mqtt_port = 8883, .http_port = 4580, .token_ttl = 3600,
                             .max_keepalive = QUOTA_KEEPALIVE_MAX,
                             .key_pool = KEYPOOL_DEFAULT_SIZE};
    int c;
    while ((c = getopt_long(argc, argv, "h", longs, NULL)) != -1) {
        switch (c) {
        case 's': o->state_dir = optarg; break;
        case 'H': o->host = optarg; break;
        case 'b': o->bind = optarg; break;
        case 'r': o->region = optarg; break;
        case 'a': o->account_id = optarg; break;
        case 'l': o->lambda_endpoint = optarg; break;
        case 't': o->templates_dir = optarg; break;
        case 'M': o->in_memory = 1; break;
        case 'F': o->friendly = 1; break;
        case 'J':
            if (strcmp(optarg, "accept") != 0 && strcmp(optarg, "refuse") != 0)
                return 0;
            o->jitp_accept_first = strcmp(optarg, "accept") == 0;
            break;
        case 'Q':
            if (strcmp(optarg, "disconnect") != 0 && strcmp(optarg, "close") != 0 &&
                strcmp(optarg, "drop") != 0)
                return 0;
            o->qos0_refusal = optarg;
            break;
        case 'N':
            if (strcmp(optarg, "true") != 0 && strcmp(optarg, "false") != 0)
                return 0;
            o->negated_absent = optarg;
            break;
        case 'A':
            if (!parse_port(optarg, &o->alpn_port))
                return 0;
            break;
        case 'W':
            if (!parse_without(optarg, &o->without))
                return 0;
            break;
        case 'K': {
            char *end;
            unsigned long v = strtoul(optarg, &end, 10);
            if (*optarg == '\0' || *end != '\0' || v < 10 || v > 65535) /* Mosquitto's range */
                return 0;
            o->max_keepalive = (unsigned)v;
            break;
        }
        case 'P': {
            char *end;
            unsigned long v = strtoul(optarg, &end, 10);
            if (*optarg == '\0' || *optarg == '-' || *end != '\0' || v > KEYPOOL_MAX_SIZE)
                return 0;
            o->key_pool = v;
            break;
        }
        case 'T':
            o->token_ttl = atol(optarg);
            if (o->token_ttl < 1)
                return 0;
            break;
        case 'm':
            if (!parse_port(optarg, &o->mqtt_port))
                return 0;
            break;
        case 'p':
            if (!parse_port(optarg, &o->http_port))
                return 0;
            break;
        case 'h': usage(stdout); exit(0);
        default: return 0;
        }
    }
    return optind == argc;
}

static const char *env_or(const char *name, const char *fallback)
{
    const char *v = getenv(name);
    return v && v[0] ? v : fallback;
}

/* Mosquitto starts as this user and, as root, would otherwise switch to "mosquitto", which
 * cannot read the state directory. */
static const char *current_user(void)
{
    struct passwd *pw = getpwuid(geteuid());
    return pw ? pw->pw_name : "root";
}

/* One MQTT over TLS listener, client certificate required; AWS's Maximum QoS 1 and topic alias
 * maximum are per listener in Mosquitto. */
static void write_listener(FILE *f, int port, const char *state, const struct serve_opts *o)
{
    fprintf(f,
            "listener %d %s\n"
            "cafile %s/root-ca.pem\n"
            "capath %s/%s\n"
            "certfile %s/%s\n"
            "keyfile %s/%s\n"
            "require_certificate true\n",
            port, o->bind, state, state, CAPATH_DIR, state, BOOTSTRAP_SERVER_CERT, state,
            BOOTSTRAP_SERVER_KEY);
    if (!(o->without & W_QOS_LIMIT))
        fprintf(f, "max_qos 1\n");
    if (!(o->without & W_MQTT5_LIMITS))
        fprintf(f, "max_topic_alias 8\n");
}

/* AWS's broker behaviour: Mosquitto's own settings where it has one, the plugin's otherwise.
 * The broker log file is read back by the plugin for disconnect reasons (plugin/broker_log.c). */
static void write_aws_config(FILE *f, const char *state, const struct serve_opts *o)
{
    unsigned w = o->without;
    fprintf(f, "log_dest file %s/broker.log\n", state);
    if (!(w & W_KEEPALIVE_CLAMP))
        fprintf(f, "max_keepalive %u\n", o->max_keepalive);
    if (!(w & W_MQTT5_LIMITS))
        fprintf(f, "max_inflight_messages 100\n");
    if (!(w & W_SESSION_EXPIRY))
        fprintf(f, "persistent_client_expiration 1h\n");
    fprintf(f,
            "plugin_opt_broker_log %s/broker.log\n"
            "plugin_opt_payload_limit %d\n"
            "plugin_opt_topic_limits %s\n"
            "plugin_opt_subscription_limit %d\n"
            "plugin_opt_client_id_rules %s\n"
            "plugin_opt_keepalive_max %u\n"
            "plugin_opt_retained_exact %s\n"
            "plugin_opt_hash_parent %s\n"
            "plugin_opt_lifecycle_events %s\n",
            state, w & W_PAYLOAD_LIMIT ? 0 : QUOTA_PAYLOAD_MAX,
            w & W_TOPIC_LIMITS ? "false" : "true",
            w & W_SUBSCRIPTION_LIMIT ? 0 : QUOTA_SUBSCRIPTIONS_MAX,
            w & W_CLIENT_ID_RULES ? "false" : "true",
            w & W_KEEPALIVE_CLAMP ? 0 : o->max_keepalive,
            w & W_RETAINED_EXACT ? "false" : "true", w & W_HASH_PARENT ? "false" : "true",
            w & W_LIFECYCLE_EVENTS ? "false" : "true");
}

static int write_config(const char *path, const char *state, const struct serve_opts *o,
                        const char *templates_dir)
{
    char capath[PATH_MAX + 32];
    snprintf(capath, sizeof(capath), "%s/%s", state, CAPATH_DIR);
    if (mkdir(capath, 0755) != 0 && errno != EEXIST)
        return 0;
    FILE *f = fopen(path, "w");
    if (f == NULL)
        return 0;
    fprintf(f, "# Written by `iotmock serve` at every start; edits are lost.\n"
               "per_listener_settings false\n"
               "allow_anonymous false\n"
               "persistence false\n"
               "user %s\n"
               "log_dest stderr\n"
               "log_type error\nlog_type warning\nlog_type notice\nlog_type information\n"
               "connection_messages true\n"
               /* Nagle would hold an answer written right after the PUBACK until the client's
                * delayed ACK (40 ms or more on Linux) */
               "set_tcp_nodelay true\n",
            current_user());
    write_listener(f, o->mqtt_port, state, o);
    if (o->alpn_port)
        write_listener(f, o->alpn_port, state, o);
    fprintf(f, "plugin %s\n"
               "plugin_opt_state_dir %s\n"
               "plugin_opt_data_dir %s\n"
               "plugin_opt_bind %s\n"
               "plugin_opt_http_port %d\n"
               "plugin_opt_region %s\n"
               "plugin_opt_account_id %s\n"
               "plugin_opt_token_ttl %ld\n"
               "plugin_opt_key_pool %lu\n",
            env_or("IOTMOCK_PLUGIN", IOTMOCK_PLUGIN_PATH), state,
            env_or("IOTMOCK_DATA_DIR", IOTMOCK_DATA_DIR), o->bind, o->http_port, o->region,
            o->account_id, o->token_ttl, o->key_pool);
    if (o->lambda_endpoint)
        fprintf(f, "plugin_opt_lambda_endpoint %s\n", o->lambda_endpoint);
    if (templates_dir)
        fprintf(f, "plugin_opt_templates_dir %s\n", templates_dir);
    if (o->in_memory)
        fprintf(f, "plugin_opt_registry :memory:\n");
    if (o->friendly)
        fprintf(f, "plugin_opt_friendly true\n");
    /* The CAs and self-signed devices registered over HTTP (emulator/capath.h), and the host
     * DescribeEndpoint answers. */
    fprintf(f, "plugin_opt_capath %s/%s\nplugin_opt_host %s\nplugin_opt_jitp_first_connect %s\n",
            state, CAPATH_DIR, o->host, o->jitp_accept_first ? "accept" : "refuse");
    if (o->qos0_refusal)
        fprintf(f, "plugin_opt_qos0_refusal %s\n", o->qos0_refusal);
    if (o->negated_absent)
        fprintf(f, "plugin_opt_negated_absent %s\n", o->negated_absent);
    write_aws_config(f, state, o);
    return fclose(f) == 0;
}

static void banner(const char *state, const struct serve_opts *o)
{
    printf("iotmock: AWS IoT Core emulator\n"
           "  MQTT (TLS, client certificate)  %s:%d  (listening on %s)\n"
           "  control plane (HTTP)            http://%s:%d\n"
           "  region %s, account %s\n"
           "  a device needs: %s/root-ca.pem (trust it as AmazonRootCA1.pem)\n"
           "                  %s/claim-cert.pem + %s/claim-key.pem (fleet provisioning claim,\n"
           "                  template fleet-default)\n",
           o->host, o->mqtt_port, o->bind, o->bind, o->http_port, o->region, o->account_id, state,
           state, state);
    if (o->alpn_port)
        printf("  MQTT also on port %d (for clients that use 443 with ALPN x-amzn-mqtt-ca)\n",
               o->alpn_port);
    fflush(stdout);
}

/* Opens (and, on a first start, creates) the registry once before the broker starts, so that a
 * damaged or foreign registry.db is one clear line from `iotmock serve` instead of a plugin
 * initialisation failure amid the broker's log. The plugin opens it again. */
static int registry_opens(const char *state, struct iot_error *err)
{
    char path[PATH_MAX + 32];
    struct registry *reg = NULL;
    snprintf(path, sizeof(path), "%s/%s", state, BOOTSTRAP_REGISTRY);
    if (registry_open(path, &reg, err) != IOT_OK)
        return 0;
    registry_close(reg);
    return 1;
}

/* The sanitizer build preloads its runtime into the (uninstrumented) broker. Leaks are checked
 * when the broker exits, except for Mosquitto's own (tests/sanitizers/lsan-broker.supp says
 * which); ASAN_OPTIONS and LSAN_OPTIONS set by the caller win. */
static void preload_sanitizer(void)
{
#ifdef IOTMOCK_ASAN_RUNTIME
    setenv("LD_PRELOAD", IOTMOCK_ASAN_RUNTIME, 1);
    setenv("ASAN_OPTIONS", "detect_leaks=1", 0);
#ifdef IOTMOCK_LSAN_SUPPRESSIONS
    setenv("LSAN_OPTIONS", "suppressions=" IOTMOCK_LSAN_SUPPRESSIONS, 0);
#endif
#endif
}

static int serve(int argc, char **argv)
{
    struct serve_opts o;
    if (!parse_args(argc, argv, &o)) {
        usage(stderr);
        return 2;
    }
    struct iot_error err = {0};
    char state[PATH_MAX], templates[PATH_MAX], conf[PATH_MAX + 32];
    if (bootstrap_files(o.state_dir, o.host, &err) != IOT_OK) {
        fprintf(stderr, "iotmock: %s\n", err.message);
        return 1;
    }
    if (realpath(o.state_dir, state) == NULL) {
        fprintf(stderr, "iotmock: %s: %s\n", o.state_dir, strerror(errno));
        return 1;
    }
    if (o.templates_dir && realpath(o.templates_dir, templates) == NULL) {
        fprintf(stderr, "iotmock: %s: %s\n", o.templates_dir, strerror(errno));
        return 1;
    }
    if (!o.in_memory && !registry_opens(state, &err)) {
        fprintf(stderr, "iotmock: %s\n", err.message);
        return 1;
    }
    snprintf(conf, sizeof(conf), "%s/mosquitto.conf", state);
    if (!write_config(conf, state, &o, o.templates_dir ? templates : NULL)) {
        fprintf(stderr, "iotmock: cannot write %s: %s\n", conf, strerror(errno));
        return 1;
    }
    banner(state, &o);
    preload_sanitizer();
    const char *mosquitto = env_or("IOTMOCK_MOSQUITTO", DEFAULT_MOSQUITTO);
    execl(mosquitto, mosquitto, "-c", conf, (char *)NULL);
    fprintf(stderr, "iotmock: cannot run %s: %s\n", mosquitto, strerror(errno));
    return 1;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "serve") == 0)
        return serve(argc - 1, argv + 1);
    if (argc >= 2 && (strcmp(argv[1], "trust") == 0 || strcmp(argv[1], "untrust") == 0))
        return trust_main(argc - 1, argv + 1, strcmp(argv[1], "trust") == 0);
    usage(argc >= 2 && strcmp(argv[1], "--help") == 0 ? stdout : stderr);
    return 2;
}
