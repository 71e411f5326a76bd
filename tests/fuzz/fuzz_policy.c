/* fuzz_policy: the policy engine (shared/spec/broker-and-policy.md §2): policy_compile() of a
 * document a client sent to CreatePolicy, then policy_evaluate() of MQTT requests under it in a
 * connection context that gives every policy variable and condition key a value.
 *
 * Input: the policy document, optionally followed by a NUL byte and request lines
 * "iot:Action name" (name is a client id, topic or topic filter, as sent; a name starting with
 * "arn:" is used as the whole resource ARN). Without that part a fixed set of requests runs. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "policy.h"

static struct policy_context ctx;

static const struct policy_attr ATTRS[] = {
    {"serialNumber", "42"},
    {"location", "Seattle"},
    {"wild", "a*b?c"},
};

/* Certificate variables as policy_context_from_cert() would store them (§2.4). */
static const char *const CERT_FIELDS[][2] = {
    {"Subject.CommonName", "dev1"},
    {"Subject.Organization", "Acme, Inc."},
    {"Subject.Country", "US"},
    {"Subject.OrganizationalUnit", "unit-a"},
    {"Subject.OrganizationalUnit", "unit-b"},
    {"Issuer.CommonName", "iotmock CA"},
    {"Subject.AlternativeName.DNSName", "dev1.example.com"},
    {"Subject.AlternativeName.IPAddress", "192.0.2.7"},
    {"SerialNumber", "123456789"},
};

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    struct iot_error err = {0};
    policy_context_init(&ctx);
    ctx.region = "us-east-1";
    ctx.account = "123456789012";
    ctx.client_id = "dev1";
    ctx.source_ip = "192.0.2.7";
    ctx.domain_name = "iot.example.com";
    ctx.thing_associated = true;
    ctx.thing_name = "dev1";
    ctx.thing_type_name = "sensor";
    ctx.thing_attributes = ATTRS;
    ctx.n_thing_attributes = sizeof(ATTRS) / sizeof(ATTRS[0]);
    ctx.is_attached = POLICY_BOOL_TRUE;
    ctx.certificate_id = "0000000000000000000000000000000000000000000000000000000000000001";
    ctx.connect_attributes = POLICY_CONNECT_PERSISTENT | POLICY_CONNECT_LAST_WILL;
    ctx.last_will_topic = "devices/dev1/will";
    ctx.now = 1700000000;
    for (size_t i = 0; i < sizeof(CERT_FIELDS) / sizeof(CERT_FIELDS[0]); i++)
        fuzz_need(policy_context_cert_add(&ctx, CERT_FIELDS[i][0], CERT_FIELDS[i][1], &err), &err,
                  "policy_context_cert_add");
    return 0;
}

static void evaluate(const struct policy *p, enum policy_action action, const char *name,
                     size_t name_len)
{
    char arn[POLICY_ARN_MAX + 1];
    const char *resource = arn;
    size_t len;
    if (name_len >= 4 && memcmp(name, "arn:", 4) == 0) {
        resource = name;
        len = name_len;
    } else {
        len = policy_arn_for(arn, sizeof(arn), &ctx, action, name, name_len);
        if (len >= sizeof(arn))
            return; /* too long to be a resource AWS would build */
    }
    const struct policy *set[] = {p, NULL};
    struct policy_decision d;
    if (policy_evaluate(set, 2, &ctx, action, resource, len, &d) != IOT_OK)
        abort(); /* every enum value below POLICY_ACTION_COUNT is a known action */
    if (strnlen(d.explanation, sizeof(d.explanation)) == sizeof(d.explanation))
        abort();
    if ((d.effect == POLICY_DENY_IMPLICIT) != (d.policy == NULL) ||
        (d.policy != NULL && (d.statement < 0 || (size_t)d.statement >= policy_statement_count(p))))
        abort();
    if (action != POLICY_ACTION_CONNECT && memchr(name, '\0', name_len) == NULL) {
        char *topic = fuzz_strndup((const uint8_t *)name, name_len);
        policy_reserved_check(action, topic, NULL);
        free(topic);
    }
}

static const struct {
    enum policy_action action;
    const char *name;
} FIXED[] = {
    {POLICY_ACTION_CONNECT, "dev1"},
    {POLICY_ACTION_CONNECT, "other"},
    {POLICY_ACTION_PUBLISH, "devices/dev1/telemetry"},
    {POLICY_ACTION_PUBLISH, "$aws/things/dev1/shadow/update"},
    {POLICY_ACTION_SUBSCRIBE, "devices/dev1/#"},
    {POLICY_ACTION_SUBSCRIBE, "$share/g/devices/+/cmd"},
    {POLICY_ACTION_RECEIVE, "devices/dev1/cmd"},
    {POLICY_ACTION_RETAIN_PUBLISH, "devices/dev1/state"},
    {POLICY_ACTION_GET_THING_SHADOW, "$aws/things/dev1/shadow/get"},
};

/* "iot:Action name" lines of TEXT[0..N). */
static void evaluate_lines(const struct policy *p, const char *text, size_t n)
{
    while (n > 0) {
        const char *nl = memchr(text, '\n', n);
        size_t line = nl ? (size_t)(nl - text) : n;
        const char *sp = memchr(text, ' ', line);
        if (sp != NULL && (size_t)(sp - text) < 64) {
            char action_name[64];
            memcpy(action_name, text, (size_t)(sp - text));
            action_name[sp - text] = '\0';
            enum policy_action a;
            if (policy_action_parse(action_name, &a))
                evaluate(p, a, sp + 1, line - (size_t)(sp - text) - 1);
        }
        text += line + (nl ? 1 : 0);
        n -= line + (nl ? 1 : 0);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nul = memchr(data, '\0', size);
    size_t doc_len = nul ? (size_t)(nul - data) : size;
    char *doc = (char *)fuzz_memdup(data, doc_len); /* not NUL-terminated, on purpose */
    struct policy *p = NULL;
    struct iot_error err = {0};
    enum iot_err rc = policy_compile("fuzz-policy", doc, doc_len, &p, &err);
    free(doc);
    if (rc != IOT_OK) {
        if (p != NULL || err.message[0] == '\0')
            abort();
        return 0;
    }
    if (nul != NULL) {
        char *lines = fuzz_strndup(nul + 1, size - doc_len - 1);
        evaluate_lines(p, lines, size - doc_len - 1);
        free(lines);
    } else {
        for (size_t i = 0; i < sizeof(FIXED) / sizeof(FIXED[0]); i++)
            evaluate(p, FIXED[i].action, FIXED[i].name, strlen(FIXED[i].name));
    }
    policy_free(p);
    return 0;
}
