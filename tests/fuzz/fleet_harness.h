/* The fleet provisioning API under fuzz (shared/spec/provisioning.md §1): fleet_handle() on a
 * request in one format, against an in-memory registry and a CA made once per process.
 *
 * Input: byte 0 picks what runs, the rest is the payload.
 *   sel & 3 == 0        CreateCertificateFromCsr (§1.4)
 *   sel & 3 == 1 or 2   RegisterThing (§1.5) on template FLEET_TEMPLATES[(sel >> 2) % count]
 *   sel & 3 == 3        left to the target: fuzz_fleet_json parses the payload as a topic
 *                       (fleet_topic_parse, §1.1), fuzz_fleet_cbor decodes it with cbor_codec
 * CreateKeysAndCertificate is not run: it reads nothing from its body but generates an RSA key
 * (tens of milliseconds), and its body parsing is the same parse_body() the two others use.
 *
 * The registry starts each input in the state made at init: every request runs inside a
 * registry transaction that is rolled back afterwards (fleet's own transactions nest inside it),
 * so an input behaves the same whenever it runs and a crash reproduces from its file alone.
 *
 * A valid ownership token cannot be guessed, so the harness issues one at init (through
 * fleet_handle itself, for an EC CSR) and replaces every occurrence of FUZZ_TOKEN_PLACEHOLDER in
 * the payload by it. Both are 64 bytes, so a CBOR text string keeps its length head.
 *
 * IOTMOCK_FUZZ_STRICT=1 also stops at any rejection with a 5xx status (InternalFailure): worth a
 * look on client input, though not always a bug. */
#ifndef IOTMOCK_FUZZ_FLEET_HARNESS_H
#define IOTMOCK_FUZZ_FLEET_HARNESS_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "cbor_codec.h"
#include "fleet.h"
#include "fuzz_util.h"

#define FUZZ_TOKEN_PLACEHOLDER "@@@@iotmock-fuzz-certificate-ownership-token-placeholder@@@@@@@@"
#define FUZZ_TOKEN_LEN 64
_Static_assert(sizeof(FUZZ_TOKEN_PLACEHOLDER) - 1 == FUZZ_TOKEN_LEN, "placeholder is 64 bytes");

/* Template names as a topic carries them; "missing" is in no registry. */
static const char *const FLEET_TEMPLATES[] = {
    "fleet-default", "rich", "no-thing", "off", "jitp", "hooked", "broken", "missing",
};
#define FLEET_TEMPLATE_COUNT (sizeof(FLEET_TEMPLATES) / sizeof(FLEET_TEMPLATES[0]))

/* Every intrinsic function, Mappings, defaults, OverrideSettings, a named and an inline policy,
 * a thing type and groups that exist (§2.2-2.5). */
static const char RICH_TEMPLATE[] =
    "{\"Parameters\":{"
    "\"SerialNumber\":{\"Type\":\"String\"},"
    "\"Location\":{\"Type\":\"String\",\"Default\":\"Seattle\"},"
    "\"Groups\":{\"Type\":\"String\",\"Default\":\"fleet,extra\"},"
    "\"Index\":{\"Type\":\"String\",\"Default\":\"0\"},"
    "\"AWS::IoT::Certificate::Id\":{\"Type\":\"String\"}},"
    "\"Mappings\":{\"LocationTable\":{"
    "\"Seattle\":{\"Url\":\"https://example.aws\",\"Group\":\"fleet\"},"
    "\"Berlin\":{\"Url\":\"https://example.de\",\"Group\":\"extra\"}}},"
    "\"Resources\":{"
    "\"thing\":{\"Type\":\"AWS::IoT::Thing\","
    "\"OverrideSettings\":{\"AttributePayload\":\"MERGE\",\"ThingGroups\":\"MERGE\","
    "\"ThingTypeName\":\"REPLACE\"},"
    "\"Properties\":{"
    "\"ThingName\":{\"Fn::Join\":[\"_\",[\"dev\",{\"Ref\":\"SerialNumber\"}]]},"
    "\"ThingTypeName\":\"fp_demo_things\","
    "\"AttributePayload\":{\"location\":{\"Ref\":\"Location\"},"
    "\"first\":{\"Fn::Select\":[{\"Ref\":\"Index\"},"
    "{\"Fn::Split\":[\",\",{\"Ref\":\"Groups\"}]}]}},"
    "\"ThingGroups\":["
    "{\"Fn::FindInMap\":[\"LocationTable\",{\"Ref\":\"Location\"},\"Group\"]}]}},"
    "\"certificate\":{\"Type\":\"AWS::IoT::Certificate\","
    "\"OverrideSettings\":{\"Status\":\"REPLACE\"},"
    "\"Properties\":{\"CertificateId\":{\"Ref\":\"AWS::IoT::Certificate::Id\"},"
    "\"Status\":\"Active\"}},"
    "\"named\":{\"Type\":\"AWS::IoT::Policy\","
    "\"Properties\":{\"PolicyName\":\"iotmock-device-policy\"}},"
    "\"inline\":{\"Type\":\"AWS::IoT::Policy\",\"Properties\":{\"PolicyDocument\":"
    "\"{\\\"Version\\\":\\\"2012-10-17\\\",\\\"Statement\\\":[{\\\"Effect\\\":\\\"Allow\\\","
    "\\\"Action\\\":\\\"iot:Connect\\\",\\\"Resource\\\":\\\"*\\\"}]}\"}}},"
    "\"DeviceConfiguration\":{"
    "\"Url\":{\"Fn::FindInMap\":[\"LocationTable\",{\"Ref\":\"Location\"},\"Url\"]},"
    "\"Greeting\":{\"Fn::Sub\":\"hello ${SerialNumber} from ${Location}\"},"
    "\"Count\":3,\"On\":true}}";

/* No thing resource: the answer has no thingName (§1.5). */
static const char NO_THING_TEMPLATE[] =
    "{\"Resources\":{\"certificate\":{\"Type\":\"AWS::IoT::Certificate\",\"Properties\":{"
    "\"CertificateId\":{\"Ref\":\"AWS::IoT::Certificate::Id\"}}}},"
    "\"DeviceConfiguration\":{\"Id\":{\"Ref\":\"AWS::IoT::Certificate::Id\"}}}";

static struct fleet_config fleet_cfg;
static struct registry *fleet_reg;
static struct ca *fleet_ca;
static char fleet_token[128];
static bool fleet_strict; /* IOTMOCK_FUZZ_STRICT=1: an InternalFailure answer stops the run */

static void put_template(const char *name, const char *body, const char *type, bool enabled,
                         const char *hook)
{
    struct iot_error err = {0};
    struct registry_template t = {.name = (char *)name,
                                  .body = (char *)body,
                                  .type = (char *)type,
                                  .enabled = enabled,
                                  .hook_target_arn = (char *)hook};
    fuzz_need(registry_template_put(fleet_reg, &t, &err), &err, "registry_template_put");
}

/* The shipped fleet-default template and device policy (fixtures/), as a server seeds them. */
static void put_fixtures(void)
{
    struct iot_error err = {0};
    char *text = fuzz_read_file(FIXTURES_DIR "/templates/fleet-default.json", NULL);
    cJSON *doc = cJSON_Parse(text);
    char *body = cJSON_PrintUnformatted(cJSON_GetObjectItemCaseSensitive(doc, "templateBody"));
    if (body == NULL)
        abort();
    put_template("fleet-default", body, "FLEET_PROVISIONING", true, NULL);
    free(body);
    cJSON_Delete(doc);
    free(text);

    text = fuzz_read_file(FIXTURES_DIR "/policies/iotmock-device-policy.json", NULL);
    doc = cJSON_Parse(text);
    char *policy = cJSON_PrintUnformatted(cJSON_GetObjectItemCaseSensitive(doc, "policyDocument"));
    if (policy == NULL)
        abort();
    fuzz_need(registry_policy_create(fleet_reg, "iotmock-device-policy", policy, &err), &err,
              "registry_policy_create");
    free(policy);
    cJSON_Delete(doc);
    free(text);
}

/* Issues one certificate through the API under test, for an EC CSR (cheap, unlike RSA), and
 * keeps its ownership token. */
static void issue_token(void)
{
    struct iot_error err = {0};
    EVP_PKEY *key = NULL;
    X509_REQ *req = NULL;
    fuzz_need(ca_generate_ec("P-256", &key, &err), &err, "ca_generate_ec");
    fuzz_need(ca_make_csr(key, "/CN=fuzz-device/O=iotmock", &req, &err), &err, "ca_make_csr");
    char *pem = ca_csr_to_pem(req);
    cJSON *body = cJSON_CreateObject();
    cJSON_AddStringToObject(body, "certificateSigningRequest", pem);
    char *payload = cJSON_PrintUnformatted(body);

    const char *topic = "$aws/certificates/create-from-csr/json";
    struct fleet_topic t;
    fleet_topic_parse(topic, &t);
    struct fleet_request r = {.topic = &t,
                              .request_topic = topic,
                              .client_id = "fuzz",
                              .client_cert_id = "",
                              .payload = payload,
                              .payload_len = strlen(payload)};
    struct fleet_response resp;
    fuzz_need(fleet_handle(&fleet_cfg, &r, &resp), &resp.error, "fleet_handle");
    cJSON *answer = cJSON_ParseWithLength(resp.payload, resp.payload_len);
    const char *token =
        cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(answer, "certificateOwnershipToken"));
    if (!resp.accepted || token == NULL || strlen(token) != FUZZ_TOKEN_LEN) {
        fprintf(stderr, "fuzz setup: no 64-character token in %.*s\n", (int)resp.payload_len,
                resp.payload);
        abort();
    }
    snprintf(fleet_token, sizeof(fleet_token), "%s", token);
    cJSON_Delete(answer);
    fleet_response_clear(&resp);
    free(payload);
    cJSON_Delete(body);
    free(pem);
    X509_REQ_free(req);
    EVP_PKEY_free(key);
}

static void fleet_harness_init(void)
{
    struct iot_error err = {0};
    const char *dir = fuzz_dir_make();
    fleet_strict = getenv("IOTMOCK_FUZZ_STRICT") != NULL && getenv("IOTMOCK_FUZZ_STRICT")[0] == '1';
    fuzz_need(ca_open(dir, &fleet_ca, &err), &err, "ca_open");
    fuzz_need(registry_open(":memory:", &fleet_reg, &err), &err, "registry_open");
    fleet_cfg = (struct fleet_config){.reg = fleet_reg,
                                      .ca = fleet_ca,
                                      .region = "us-east-1",
                                      .account_id = "123456789012",
                                      .lambda_endpoint = NULL,
                                      .token_ttl = FLEET_TOKEN_TTL_DEFAULT,
                                      .hook_timeout_ms = 100};
    put_fixtures();
    put_template("rich", RICH_TEMPLATE, "FLEET_PROVISIONING", true, NULL);
    put_template("no-thing", NO_THING_TEMPLATE, "FLEET_PROVISIONING", true, NULL);
    put_template("off", NO_THING_TEMPLATE, "FLEET_PROVISIONING", false, NULL);
    put_template("jitp", NO_THING_TEMPLATE, "JITP", true, NULL);
    /* No lambda endpoint is configured: the hook is refused without any network traffic. */
    put_template("hooked", NO_THING_TEMPLATE, "FLEET_PROVISIONING", true,
                 "arn:aws:lambda:us-east-1:123456789012:function:fuzz-hook");
    put_template("broken", "{\"Resources\":", "FLEET_PROVISIONING", true, NULL);
    fuzz_need(registry_thing_type_put(fleet_reg, "fp_demo_things", &err), &err, "thing type");
    fuzz_need(registry_thing_group_put(fleet_reg, "fleet", &err), &err, "thing group");
    fuzz_need(registry_thing_group_put(fleet_reg, "extra", &err), &err, "thing group");
    /* An existing thing, so that OverrideSettings has something to override. */
    cJSON *attrs = cJSON_CreateObject();
    cJSON_AddStringToObject(attrs, "location", "Berlin");
    struct registry_thing thing = {.name = (char *)"dev_1", .attributes = attrs};
    fuzz_need(registry_thing_put(fleet_reg, &thing, &err), &err, "registry_thing_put");
    cJSON_Delete(attrs);
    issue_token();
}

/* Replaces every FUZZ_TOKEN_PLACEHOLDER in P[0..N) by the issued token, in place. */
static void put_token(uint8_t *p, size_t n)
{
    for (size_t i = 0; i + FUZZ_TOKEN_LEN <= n; i++) {
        if (p[i] == '@' && memcmp(p + i, FUZZ_TOKEN_PLACEHOLDER, FUZZ_TOKEN_LEN) == 0) {
            memcpy(p + i, fleet_token, FUZZ_TOKEN_LEN);
            i += FUZZ_TOKEN_LEN - 1;
        }
    }
}

/* The answer must be well-formed in the request's format: a JSON or CBOR object. */
static void check_answer(enum fleet_format format, const struct fleet_response *resp)
{
    cJSON *answer = NULL;
    if (format == FLEET_FORMAT_CBOR)
        cbor_codec_decode(resp->payload, resp->payload_len, &answer, NULL);
    else
        answer = cJSON_ParseWithLength(resp->payload, resp->payload_len);
    if (!cJSON_IsObject(answer)) {
        fprintf(stderr, "fleet answered something that is not a %s object (%zu bytes)\n",
                format == FLEET_FORMAT_CBOR ? "CBOR" : "JSON", resp->payload_len);
        abort();
    }
    cJSON_Delete(answer);
}

/* Runs the request SEL picks (sel & 3 is 0, 1 or 2) with payload DATA. */
static void fleet_harness_request(enum fleet_format format, uint8_t sel, const uint8_t *data,
                                  size_t size)
{
    char topic[FLEET_TOPIC_MAX];
    const char *fmt = format == FLEET_FORMAT_CBOR ? "cbor" : "json";
    if ((sel & 3) == 0)
        snprintf(topic, sizeof(topic), "%s%s", FLEET_CERT_CSR_PREFIX, fmt);
    else
        snprintf(topic, sizeof(topic), "%s%s%s%s", FLEET_TEMPLATES_PREFIX,
                 FLEET_TEMPLATES[(sel >> 2) % FLEET_TEMPLATE_COUNT], FLEET_PROVISION_PART, fmt);
    struct fleet_topic t;
    if (fleet_topic_parse(topic, &t) != FLEET_TOPIC_REQUEST)
        abort();

    uint8_t *payload = fuzz_memdup(data, size);
    put_token(payload, size);
    struct fleet_request req = {.topic = &t,
                                .request_topic = topic,
                                .client_id = "fuzz-client",
                                .client_cert_id = "",
                                .payload = payload,
                                .payload_len = size};
    struct fleet_response resp;
    if (registry_begin(fleet_reg) != IOT_OK)
        abort();
    enum iot_err rc = fleet_handle(&fleet_cfg, &req, &resp);
    registry_rollback(fleet_reg);
    if (rc != IOT_OK)
        abort(); /* not even a rejection could be built, with memory to spare */
    if (!resp.accepted && resp.error.code == IOT_OK)
        abort(); /* a rejection must say why */
    if (fleet_strict && !resp.accepted && fleet_status_code(resp.error.code) >= 500) {
        fprintf(stderr, "fleet answered %d: %s\n", fleet_status_code(resp.error.code),
                resp.error.message);
        abort();
    }
    check_answer(format, &resp);
    fleet_response_clear(&resp);
    free(payload);
}

#endif
