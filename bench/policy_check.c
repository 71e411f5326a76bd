/* bench_policy: the cost of one policy decision (emulator/policy.h) as the broker pays it on every
 * PUBLISH: the policies are compiled once, the connection context is built once, and only
 * policy_evaluate() is timed. A realistic device policy with policy variables decides an
 * iot:Publish on the device's own topic; with 10 attached policies the nine others are
 * look-alikes for other topics, so every statement for iot:Publish is examined. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "policy.h"

#define ARN "arn:aws:iot:us-east-1:123456789012:"

static const char *const device_policy =
    "{\"Version\":\"2012-10-17\",\"Statement\":["
    "{\"Effect\":\"Allow\",\"Action\":\"iot:Connect\","
    "\"Resource\":\"" ARN "client/${iot:Connection.Thing.ThingName}\"},"
    "{\"Effect\":\"Allow\",\"Action\":[\"iot:Publish\",\"iot:Receive\"],\"Resource\":["
    "\"" ARN "topic/$aws/things/${iot:Connection.Thing.ThingName}/shadow/*\","
    "\"" ARN "topic/devices/${iot:ClientId}/telemetry/*\"]},"
    "{\"Effect\":\"Allow\",\"Action\":\"iot:Subscribe\",\"Resource\":["
    "\"" ARN "topicfilter/$aws/things/${iot:Connection.Thing.ThingName}/shadow/*\","
    "\"" ARN "topicfilter/devices/${iot:ClientId}/commands/*\"]},"
    "{\"Effect\":\"Deny\",\"Action\":\"iot:Publish\",\"Resource\":\"" ARN "topic/devices/*/admin\"}"
    "]}";

/* One of the other attached policies: same shape, topics of another fleet. */
static char *other_policy(int i)
{
    char *doc = malloc(1024);
    if (doc == NULL)
        return NULL;
    snprintf(doc, 1024,
             "{\"Version\":\"2012-10-17\",\"Statement\":["
             "{\"Effect\":\"Allow\",\"Action\":[\"iot:Publish\",\"iot:Receive\"],\"Resource\":["
             "\"" ARN "topic/fleet%d/${iot:Connection.Thing.ThingName}/*\","
             "\"" ARN "topic/fleet%d/shared/${iot:Connection.Thing.Attributes[site]}\"]},"
             "{\"Effect\":\"Allow\",\"Action\":\"iot:Publish\",\"Resource\":\"" ARN
             "topic/fleet%d/${iot:ClientId}\","
             "\"Condition\":{\"StringEquals\":{\"iot:Connection.Thing.ThingTypeName\":\"sensor\"}}}"
             "]}",
             i, i, i);
    return doc;
}

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* ns per policy_evaluate() with the first N of POLICIES, or -1 if the decision is not ALLOW. */
static double time_checks(const struct policy *const *policies, size_t n,
                          const struct policy_context *ctx, long iterations)
{
    char arn[POLICY_ARN_MAX];
    const char *topic = "devices/sensor-0042/telemetry/temperature";
    size_t len = policy_arn_for(arn, sizeof(arn), ctx, POLICY_ACTION_PUBLISH, topic, strlen(topic));
    struct policy_decision d;
    if (policy_evaluate(policies, n, ctx, POLICY_ACTION_PUBLISH, arn, len, &d) != IOT_OK ||
        d.effect != POLICY_ALLOW) {
        fprintf(stderr, "bench_policy: expected ALLOW: %s\n", d.explanation);
        return -1;
    }
    volatile int sink = 0;
    double t0 = now_ns();
    for (long i = 0; i < iterations; i++) {
        policy_evaluate(policies, n, ctx, POLICY_ACTION_PUBLISH, arn, len, &d);
        sink += (int)d.effect;
    }
    double t = now_ns() - t0;
    (void)sink;
    return t / (double)iterations;
}

int main(int argc, char **argv)
{
    long iterations = argc > 1 ? atol(argv[1]) : 200000;
    if (iterations < 1) {
        fprintf(stderr, "usage: bench_policy [ITERATIONS]\n");
        return 2;
    }
    struct policy *policies[10] = {0};
    struct iot_error err = {0};
    int rc = 1;
    /* The device policy comes last, so that with 10 policies the nine others are examined first. */
    if (policy_compile("device", device_policy, strlen(device_policy), &policies[9], &err) != IOT_OK)
        goto cleanup;
    for (int i = 0; i < 9; i++) {
        char name[16], *doc = other_policy(i);
        snprintf(name, sizeof(name), "other%d", i);
        enum iot_err e = doc ? policy_compile(name, doc, strlen(doc), &policies[i], &err) : IOT_ERR_NOMEM;
        free(doc);
        if (e != IOT_OK)
            goto cleanup;
    }
    struct policy_attr attrs[] = {{"site", "berlin"}, {"model", "t1000"}};
    struct policy_context ctx;
    policy_context_init(&ctx);
    ctx.region = "us-east-1";
    ctx.account = "123456789012";
    ctx.client_id = "sensor-0042";
    ctx.source_ip = "127.0.0.1";
    ctx.thing_associated = true;
    ctx.thing_name = "sensor-0042";
    ctx.thing_type_name = "sensor";
    ctx.thing_attributes = attrs;
    ctx.n_thing_attributes = 2;
    ctx.is_attached = POLICY_BOOL_TRUE;
    ctx.certificate_id = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    double one = time_checks((const struct policy *const *)&policies[9], 1, &ctx, iterations);
    double ten = time_checks((const struct policy *const *)policies, 10, &ctx, iterations);
    policy_context_cleanup(&ctx);
    if (one < 0 || ten < 0)
        goto cleanup;
    printf("ns_per_check_1 %.1f\nns_per_check_10 %.1f\n", one, ten);
    rc = 0;
cleanup:
    if (err.message[0])
        fprintf(stderr, "bench_policy: %s\n", err.message);
    for (int i = 0; i < 10; i++)
        policy_free(policies[i]);
    return rc;
}
