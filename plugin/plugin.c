/* Entry points: option parsing, start-up and shutdown. */
#include "plugin.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>

#include "bootstrap.h"
#include "hook.h"

IOTMOCK_EXPORT int mosquitto_plugin_version(int count, const int *versions);
IOTMOCK_EXPORT int mosquitto_plugin_init(mosquitto_plugin_id_t *id, void **userdata,
                                         struct mosquitto_opt *opts, int opt_count);
IOTMOCK_EXPORT int mosquitto_plugin_cleanup(void *userdata, struct mosquitto_opt *opts,
                                            int opt_count);

int mosquitto_plugin_version(int count, const int *versions)
{
    return 5;
}

static bool is_true(const char *v)
{
    return strcmp(v, "true") == 0;
}

static enum qos0_refusal parse_qos0_refusal(const char *v)
{
    if (strcmp(v, "close") == 0)
        return QOS0_REFUSAL_CLOSE;
    return strcmp(v, "drop") == 0 ? QOS0_REFUSAL_DROP : QOS0_REFUSAL_DISCONNECT;
}

/* plugin_opt_* for AWS's broker behaviour (each on by default); false if K is not one. */
static bool read_aws_option(struct aws_behaviour *a, const char *k, const char *v)
{
    if (strcmp(k, "payload_limit") == 0) a->payload_max = strtoul(v, NULL, 10);
    else if (strcmp(k, "topic_limits") == 0) a->topic_limits = is_true(v);
    else if (strcmp(k, "subscription_limit") == 0) a->subscriptions_max = strtoul(v, NULL, 10);
    else if (strcmp(k, "client_id_rules") == 0) a->client_id_rules = is_true(v);
    else if (strcmp(k, "keepalive_max") == 0) a->keepalive_max = (unsigned)strtoul(v, NULL, 10);
    else if (strcmp(k, "retained_exact") == 0) a->retained_exact = is_true(v);
    else if (strcmp(k, "hash_parent") == 0) a->hash_parent = is_true(v);
    else if (strcmp(k, "lifecycle_events") == 0) a->lifecycle_events = is_true(v);
    else if (strcmp(k, "broker_log") == 0) a->broker_log = v;
    else return false;
    return true;
}

static void read_options(struct options *o, struct mosquitto_opt *opts, int n)
{
    *o = (struct options){.bind = "127.0.0.1", .region = "us-east-1",
                          .account_id = "123456789012", .http_port = 4580,
                          .token_ttl = FLEET_TOKEN_TTL_DEFAULT,
                          .key_pool = KEYPOOL_DEFAULT_SIZE,
                          .aws = {.payload_max = QUOTA_PAYLOAD_MAX, .topic_limits = true,
                                  .subscriptions_max = QUOTA_SUBSCRIPTIONS_MAX,
                                  .client_id_rules = true, .keepalive_max = QUOTA_KEEPALIVE_MAX,
                                  .retained_exact = true, .hash_parent = true,
                                  .lifecycle_events = true}};
    for (int i = 0; i < n; i++) {
        const char *k = opts[i].key, *v = opts[i].value;
        if (read_aws_option(&o->aws, k, v))
            continue;
        if (strcmp(k, "state_dir") == 0) o->state_dir = v;
        else if (strcmp(k, "data_dir") == 0) o->data_dir = v;
        else if (strcmp(k, "templates_dir") == 0) o->templates_dir = v;
        else if (strcmp(k, "registry") == 0) o->registry_path = v;
        else if (strcmp(k, "bind") == 0) o->bind = v;
        else if (strcmp(k, "region") == 0) o->region = v;
        else if (strcmp(k, "account_id") == 0) o->account_id = v;
        else if (strcmp(k, "lambda_endpoint") == 0) o->lambda_endpoint = v;
        else if (strcmp(k, "http_port") == 0) o->http_port = atoi(v);
        else if (strcmp(k, "token_ttl") == 0) o->token_ttl = atol(v);
        else if (strcmp(k, "friendly") == 0) o->friendly = is_true(v);
        else if (strcmp(k, "host") == 0) o->host = v;
        else if (strcmp(k, "capath") == 0) o->capath = v;
        else if (strcmp(k, "jitp_first_connect") == 0)
            o->jitp_accept_first = strcmp(v, "accept") == 0;
        else if (strcmp(k, "jit_registration_timestamp_null") == 0)
            o->jit.registration_timestamp_null = is_true(v);
        else if (strcmp(k, "jitp_without_event") == 0) o->jit.jitp_without_event = is_true(v);
        else if (strcmp(k, "jitp_requires_enabled") == 0) o->jit.jitp_requires_enabled = is_true(v);
        else if (strcmp(k, "key_pool") == 0) o->key_pool = strtoul(v, NULL, 10);
        else if (strcmp(k, "qos0_refusal") == 0) o->qos0_refusal = parse_qos0_refusal(v);
        else if (strcmp(k, "negated_absent") == 0) o->negated_absent_false = !is_true(v);
        else mosquitto_log_printf(MOSQ_LOG_WARNING, "iotmock: unknown option plugin_opt_%s", k);
    }
}

static int fail(struct iot_error *err)
{
    mosquitto_log_printf(MOSQ_LOG_ERR, "iotmock: %s", err->message);
    return MOSQ_ERR_UNKNOWN;
}

static int workers(void)
{
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    long n = cores > 0 ? 2 * cores : PLUGIN_WORKERS_MIN;
    if (n < PLUGIN_WORKERS_MIN)
        n = PLUGIN_WORKERS_MIN;
    return (int)(n > PLUGIN_WORKERS_MAX ? PLUGIN_WORKERS_MAX : n);
}

static int open_state(struct plugin *p, struct iot_error *err)
{
    char path[4096];
    const char *reg_path = p->opt.registry_path;
    if (reg_path == NULL) {
        snprintf(path, sizeof(path), "%s/%s", p->opt.state_dir, BOOTSTRAP_REGISTRY);
        reg_path = path;
    }
    struct bootstrap_seed seed = {.state_dir = p->opt.state_dir, .data_dir = p->opt.data_dir,
                                  .templates_dir = p->opt.templates_dir,
                                  .region = p->opt.region, .account_id = p->opt.account_id};
    if (registry_open(reg_path, &p->reg, err) != IOT_OK ||
        bootstrap_registry(p->reg, &seed, err) != IOT_OK ||
        ca_open(p->opt.state_dir, &p->ca, err) != IOT_OK ||
        cacert_store_open(reg_path, &p->cacerts, err) != IOT_OK)
        return fail(err);
    p->jit = p->opt.jit;
    p->jit.account_id = p->opt.account_id;
    if (p->opt.capath != NULL) { /* before the listeners start: the broker reads it at once */
        char root[4096];
        snprintf(root, sizeof(root), "%s/root-ca.pem", p->opt.state_dir);
        if (jit_sync_capath(p->cacerts, p->reg, root, p->opt.capath, err) != IOT_OK)
            return fail(err);
    }
    if ((p->sessions = sessions_new(0)) == NULL || (p->policies = policy_cache_new()) == NULL) {
        iot_error_set(err, IOT_ERR_NOMEM, "out of memory");
        return fail(err);
    }
    if (p->opt.aws.broker_log != NULL)
        p->log = broker_log_open(p->opt.aws.broker_log);
    if (!reg_events_start(p)) {
        iot_error_set(err, IOT_ERR_NOMEM, "out of memory");
        return fail(err);
    }
    if (workq_start(workers(), &p->workq) != IOT_OK) {
        iot_error_set(err, IOT_ERR_INTERNAL, "cannot start worker threads");
        return fail(err);
    }
    workq_set_notify(p->workq, wake_request, p->wake);
    if (keypool_new(p->opt.key_pool, p->workq, &p->keys) != IOT_OK) {
        iot_error_set(err, IOT_ERR_INTERNAL, "cannot create a key pool of %zu keys (at most %d)",
                      p->opt.key_pool, KEYPOOL_MAX_SIZE);
        return fail(err);
    }
    struct http_config hc = {.bind = p->opt.bind, .port = p->opt.http_port, .reg = p->reg,
                             .state_dir = p->opt.state_dir, .ready = &p->ready, .ca = p->ca,
                             .region = p->opt.region, .account_id = p->opt.account_id,
                             .seed = &seed, .host = p->opt.host, .cacerts = p->cacerts,
                             .capath = p->opt.capath, .keys = p->keys, .policies = p->policies,
                             .negated_absent_false = p->opt.negated_absent_false};
    if (http_server_start(&hc, &p->http, err) != IOT_OK)
        return fail(err);
    return MOSQ_ERR_SUCCESS;
}

static int register_callbacks(struct plugin *p)
{
    struct {
        int event;
        MOSQ_FUNC_generic_callback cb;
    } table[] = {
        {MOSQ_EVT_BASIC_AUTH, on_basic_auth},
        {MOSQ_EVT_ACL_CHECK, on_acl_check},
        {MOSQ_EVT_MESSAGE, on_message},
        {MOSQ_EVT_TICK, on_tick},
        {MOSQ_EVT_DISCONNECT, on_disconnect},
    };
    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
        int rc = mosquitto_callback_register(p->id, table[i].event, table[i].cb, NULL, p);
        if (rc != MOSQ_ERR_SUCCESS) {
            mosquitto_log_printf(MOSQ_LOG_ERR, "iotmock: cannot register callback %d: %d",
                                 table[i].event, rc);
            return rc;
        }
    }
    return MOSQ_ERR_SUCCESS;
}

static void destroy(struct plugin *p)
{
    http_server_stop(p->http);
    workq_stop(p->workq, jobs_discard, p);
    keypool_free(p->keys);
    wake_free(p->wake);
    reg_events_stop(p);
    broker_clear(p);
    conns_clear(p);
    policy_cache_free(p->policies); /* after the connections gave their policies back */
    sessions_free(p->sessions);
    broker_log_close(p->log);
    ca_free(p->ca);
    cacert_store_close(p->cacerts);
    registry_close(p->reg);
    free(p);
}

int mosquitto_plugin_init(mosquitto_plugin_id_t *id, void **userdata, struct mosquitto_opt *opts,
                          int opt_count)
{
    struct iot_error err = {0};
    struct plugin *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return MOSQ_ERR_NOMEM;
    p->id = id;
    atomic_init(&p->ready, false);
    read_options(&p->opt, opts, opt_count);
    if (p->opt.state_dir == NULL || p->opt.data_dir == NULL) {
        mosquitto_log_printf(MOSQ_LOG_ERR, "iotmock: plugin_opt_state_dir and plugin_opt_data_dir "
                                           "are required (use `iotmock serve`)");
        free(p);
        return MOSQ_ERR_INVAL;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    p->wake = wake_new(); /* before open_state() starts the workers and the HTTP threads */
    int rc = open_state(p, &err);
    if (rc == MOSQ_ERR_SUCCESS)
        rc = register_callbacks(p);
    if (rc != MOSQ_ERR_SUCCESS) {
        destroy(p);
        return rc;
    }
    p->fleet = (struct fleet_config){.reg = p->reg, .ca = p->ca, .region = p->opt.region,
                                     .account_id = p->opt.account_id,
                                     .lambda_endpoint = p->opt.lambda_endpoint,
                                     .token_ttl = p->opt.token_ttl,
                                     .hook_timeout_ms = HOOK_TIMEOUT_MS, .keys = p->keys};
    wake_arm(p->wake);
    *userdata = p;
    mosquitto_log_printf(MOSQ_LOG_INFO, "iotmock: ready to serve (state %s, control plane %s:%d)",
                         p->opt.state_dir, p->opt.bind, p->opt.http_port);
    return MOSQ_ERR_SUCCESS;
}

int mosquitto_plugin_cleanup(void *userdata, struct mosquitto_opt *opts, int opt_count)
{
    struct plugin *p = userdata;
    if (p == NULL)
        return MOSQ_ERR_SUCCESS;
    mosquitto_callback_unregister(p->id, MOSQ_EVT_BASIC_AUTH, on_basic_auth, NULL);
    mosquitto_callback_unregister(p->id, MOSQ_EVT_ACL_CHECK, on_acl_check, NULL);
    mosquitto_callback_unregister(p->id, MOSQ_EVT_MESSAGE, on_message, NULL);
    mosquitto_callback_unregister(p->id, MOSQ_EVT_TICK, on_tick, NULL);
    mosquitto_callback_unregister(p->id, MOSQ_EVT_DISCONNECT, on_disconnect, NULL);
    destroy(p);
    curl_global_cleanup();
    return MOSQ_ERR_SUCCESS;
}
