/* Fleet provisioning API: the topic grammar, the error catalogue, and each operation from request
 * bytes to response bytes against an in-memory registry and a throw-away CA. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "cbor_codec.h"
#include "check.h"
#include "fleet.h"

struct topic_case {
    const char *topic;
    enum fleet_topic_kind kind;
    enum fleet_op op;
    enum fleet_format format;
    const char *template_name;
};

static const struct topic_case topic_cases[] = {
    /* near misses first */
    {"", FLEET_TOPIC_NONE, FLEET_OP_NONE, 0, ""},
    {"$aws/certificates/create", FLEET_TOPIC_NONE, FLEET_OP_NONE, 0, ""},
    {"$aws/certificates/create/", FLEET_TOPIC_NONE, FLEET_OP_NONE, 0, ""},
    {"$aws/certificates/create/xml", FLEET_TOPIC_NONE, FLEET_OP_NONE, 0, ""},
    {"$aws/certificates/create/json/", FLEET_TOPIC_NONE, FLEET_OP_NONE, 0, ""},
    {"$aws/certificates/create/json/accepted/x", FLEET_TOPIC_NONE, FLEET_OP_NONE, 0, ""},
    {"$aws/certificates/create/jsonx", FLEET_TOPIC_NONE, FLEET_OP_NONE, 0, ""},
    {"$aws/certificates/create-from-csr/json/other", FLEET_TOPIC_NONE, FLEET_OP_NONE, 0, ""},
    {"$aws/provisioning-templates//provision/json", FLEET_TOPIC_NONE, FLEET_OP_NONE, 0, ""},
    {"$aws/provisioning-templates/a b/provision/json", FLEET_TOPIC_NONE, FLEET_OP_NONE, 0, ""},
    {"$aws/provisioning-templates/abcdefghijklmnopqrstuvwxyz0123456789X/provision/json",
     FLEET_TOPIC_NONE, FLEET_OP_NONE, 0, ""},
    {"$aws/provisioning-templates/t/provision", FLEET_TOPIC_NONE, FLEET_OP_NONE, 0, ""},
    {"$aws/provisioning-templates/+/provision/json", FLEET_TOPIC_NONE, FLEET_OP_NONE, 0, ""},
    {"aws/certificates/create/json", FLEET_TOPIC_NONE, FLEET_OP_NONE, 0, ""},
    {"$AWS/certificates/create/json", FLEET_TOPIC_NONE, FLEET_OP_NONE, 0, ""},
    /* the 18 real topics */
    {"$aws/certificates/create/json", FLEET_TOPIC_REQUEST, FLEET_OP_CREATE_KEYS, FLEET_FORMAT_JSON, ""},
    {"$aws/certificates/create/cbor", FLEET_TOPIC_REQUEST, FLEET_OP_CREATE_KEYS, FLEET_FORMAT_CBOR, ""},
    {"$aws/certificates/create/json/accepted", FLEET_TOPIC_ACCEPTED, FLEET_OP_CREATE_KEYS, FLEET_FORMAT_JSON, ""},
    {"$aws/certificates/create/json/rejected", FLEET_TOPIC_REJECTED, FLEET_OP_CREATE_KEYS, FLEET_FORMAT_JSON, ""},
    {"$aws/certificates/create/cbor/accepted", FLEET_TOPIC_ACCEPTED, FLEET_OP_CREATE_KEYS, FLEET_FORMAT_CBOR, ""},
    {"$aws/certificates/create/cbor/rejected", FLEET_TOPIC_REJECTED, FLEET_OP_CREATE_KEYS, FLEET_FORMAT_CBOR, ""},
    {"$aws/certificates/create-from-csr/json", FLEET_TOPIC_REQUEST, FLEET_OP_CREATE_FROM_CSR, FLEET_FORMAT_JSON, ""},
    {"$aws/certificates/create-from-csr/cbor", FLEET_TOPIC_REQUEST, FLEET_OP_CREATE_FROM_CSR, FLEET_FORMAT_CBOR, ""},
    {"$aws/certificates/create-from-csr/json/accepted", FLEET_TOPIC_ACCEPTED, FLEET_OP_CREATE_FROM_CSR, FLEET_FORMAT_JSON, ""},
    {"$aws/certificates/create-from-csr/json/rejected", FLEET_TOPIC_REJECTED, FLEET_OP_CREATE_FROM_CSR, FLEET_FORMAT_JSON, ""},
    {"$aws/certificates/create-from-csr/cbor/accepted", FLEET_TOPIC_ACCEPTED, FLEET_OP_CREATE_FROM_CSR, FLEET_FORMAT_CBOR, ""},
    {"$aws/certificates/create-from-csr/cbor/rejected", FLEET_TOPIC_REJECTED, FLEET_OP_CREATE_FROM_CSR, FLEET_FORMAT_CBOR, ""},
    {"$aws/provisioning-templates/fleet-default/provision/json", FLEET_TOPIC_REQUEST, FLEET_OP_REGISTER_THING, FLEET_FORMAT_JSON, "fleet-default"},
    {"$aws/provisioning-templates/T_1/provision/cbor", FLEET_TOPIC_REQUEST, FLEET_OP_REGISTER_THING, FLEET_FORMAT_CBOR, "T_1"},
    {"$aws/provisioning-templates/t/provision/json/accepted", FLEET_TOPIC_ACCEPTED, FLEET_OP_REGISTER_THING, FLEET_FORMAT_JSON, "t"},
    {"$aws/provisioning-templates/t/provision/json/rejected", FLEET_TOPIC_REJECTED, FLEET_OP_REGISTER_THING, FLEET_FORMAT_JSON, "t"},
    {"$aws/provisioning-templates/t/provision/cbor/accepted", FLEET_TOPIC_ACCEPTED, FLEET_OP_REGISTER_THING, FLEET_FORMAT_CBOR, "t"},
    {"$aws/provisioning-templates/t/provision/cbor/rejected", FLEET_TOPIC_REJECTED, FLEET_OP_REGISTER_THING, FLEET_FORMAT_CBOR, "t"},
    {"$aws/provisioning-templates/abcdefghijklmnopqrstuvwxyz0123456789/provision/json",
     FLEET_TOPIC_REQUEST, FLEET_OP_REGISTER_THING, FLEET_FORMAT_JSON, "abcdefghijklmnopqrstuvwxyz0123456789"},
};

static void test_topics(void)
{
    for (size_t i = 0; i < sizeof(topic_cases) / sizeof(topic_cases[0]); i++) {
        const struct topic_case *c = &topic_cases[i];
        struct fleet_topic t;
        enum fleet_topic_kind k = fleet_topic_parse(c->topic, &t);
        CHECK_INT(k, c->kind);
        CHECK_INT(t.kind, c->kind);
        CHECK_INT(t.op, c->op);
        if (c->kind != FLEET_TOPIC_NONE) {
            CHECK_INT(t.format, c->format);
            CHECK_STR(t.template_name, c->template_name);
        }
        if (k != c->kind)
            fprintf(stderr, "  topic: %s\n", c->topic);
    }
}

static void test_error_catalogue(void)
{
    CHECK_INT(fleet_status_code(IOT_ERR_INVALID_PAYLOAD), 400);
    CHECK_STR(fleet_error_code(IOT_ERR_INVALID_PAYLOAD), "InvalidPayload");
    CHECK_INT(fleet_status_code(IOT_ERR_INVALID_TOKEN), 400);
    CHECK_STR(fleet_error_code(IOT_ERR_INVALID_TOKEN), "InvalidCertificateOwnershipToken");
    CHECK_INT(fleet_status_code(IOT_ERR_INVALID_CSR), 400);
    CHECK_STR(fleet_error_code(IOT_ERR_INVALID_CSR), "InvalidCsr");
    CHECK_INT(fleet_status_code(IOT_ERR_INVALID_PARAMS), 400);
    CHECK_STR(fleet_error_code(IOT_ERR_INVALID_PARAMS), "InvalidParameters");
    CHECK_INT(fleet_status_code(IOT_ERR_ACCESS_DENIED), 403);
    CHECK_STR(fleet_error_code(IOT_ERR_ACCESS_DENIED), "AccessDenied");
    CHECK_INT(fleet_status_code(IOT_ERR_TEMPLATE_DISABLED), 403);
    CHECK_INT(fleet_status_code(IOT_ERR_NOT_FOUND), 404);
    CHECK_STR(fleet_error_code(IOT_ERR_NOT_FOUND), "ResourceNotFound");
    CHECK_INT(fleet_status_code(IOT_ERR_INTERNAL), 500);
    CHECK_STR(fleet_error_code(IOT_ERR_INTERNAL), "InternalFailure");
}

/* ---- operations ---------------------------------------------------------------------------- */

static struct fleet_config cfg;
static char state_dir[] = "/tmp/iotmock-test-fleet-XXXXXX";

static const char *TEMPLATE_BODY =
    "{\"Parameters\":{\"SerialNumber\":{\"Type\":\"String\"}},"
    "\"Resources\":{\"thing\":{\"Type\":\"AWS::IoT::Thing\",\"Properties\":{"
    "\"ThingName\":{\"Fn::Join\":[\"\",[\"dev_\",{\"Ref\":\"SerialNumber\"}]]}}},"
    "\"certificate\":{\"Type\":\"AWS::IoT::Certificate\",\"Properties\":{"
    "\"CertificateId\":{\"Ref\":\"AWS::IoT::Certificate::Id\"},\"Status\":\"Active\"}}},"
    "\"DeviceConfiguration\":{\"Foo\":\"Bar\"}}";

static void put_template(const char *name, bool enabled, const char *type)
{
    struct registry_template t = {.name = (char *)name, .body = (char *)TEMPLATE_BODY,
                                  .type = (char *)type, .enabled = enabled};
    CHECK_INT(registry_template_put(cfg.reg, &t, NULL), IOT_OK);
}

/* Runs one request; returns the parsed answer (caller deletes) and whether it was accepted. */
static cJSON *call(const char *topic, const char *payload, bool *accepted, char *resp_topic)
{
    struct fleet_topic t;
    CHECK_INT(fleet_topic_parse(topic, &t), FLEET_TOPIC_REQUEST);
    struct fleet_request req = {.topic = &t, .request_topic = topic, .client_id = "client-1",
                                .client_cert_id = "", .payload = payload,
                                .payload_len = payload ? strlen(payload) : 0};
    struct fleet_response resp;
    CHECK_INT(fleet_handle(&cfg, &req, &resp), IOT_OK);
    *accepted = resp.accepted;
    if (resp_topic)
        strcpy(resp_topic, resp.topic);
    cJSON *answer = cJSON_ParseWithLength(resp.payload, resp.payload_len);
    CHECK(answer != NULL);
    fleet_response_clear(&resp);
    return answer;
}

static void check_rejection(cJSON *answer, int status, const char *code, const char *message)
{
    CHECK_INT(cJSON_GetArraySize(answer), 3);
    cJSON *s = cJSON_GetObjectItemCaseSensitive(answer, "statusCode");
    CHECK(cJSON_IsNumber(s) && s->valueint == status);
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(answer, "errorCode")), code);
    const char *m = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(answer, "errorMessage"));
    CHECK(m != NULL && m[0] != '\0');
    if (message)
        CHECK_STR(m, message);
}

static void expect_reject(const char *topic, const char *payload, int status, const char *code,
                          const char *message)
{
    bool accepted = true;
    char rt[256];
    cJSON *a = call(topic, payload, &accepted, rt);
    CHECK(!accepted);
    char want[256];
    snprintf(want, sizeof(want), "%s/rejected", topic);
    CHECK_STR(rt, want);
    check_rejection(a, status, code, message);
    cJSON_Delete(a);
}

static const char *str(cJSON *o, const char *k)
{
    return cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, k));
}

static void test_create_keys(char *token_out, size_t token_len, char *cert_id_out)
{
    const char *topic = "$aws/certificates/create/json";
    expect_reject(topic, "{", 400, "InvalidPayload", NULL);
    expect_reject(topic, "[]", 400, "InvalidPayload", NULL);
    expect_reject(topic, "\"x\"", 400, "InvalidPayload", NULL);
    expect_reject(topic, "{}garbage", 400, "InvalidPayload", "Request payload is not valid JSON");
    expect_reject(topic, "{} {}", 400, "InvalidPayload", NULL);

    const char *payloads[] = {NULL, "{}", " {} ", "{\"unknown\":1}", "{}\n"};
    for (size_t i = 0; i < 5; i++) {
        bool accepted = false;
        char rt[256];
        cJSON *a = call(topic, payloads[i], &accepted, rt);
        CHECK(accepted);
        CHECK_STR(rt, "$aws/certificates/create/json/accepted");
        CHECK_INT(cJSON_GetArraySize(a), 4);
        const char *id = str(a, "certificateId");
        CHECK(id != NULL && strlen(id) == 64);
        CHECK(strncmp(str(a, "certificatePem"), "-----BEGIN CERTIFICATE-----\n", 28) == 0);
        CHECK(strncmp(str(a, "privateKey"), "-----BEGIN RSA PRIVATE KEY-----\n", 32) == 0);
        const char *tok = str(a, "certificateOwnershipToken");
        CHECK(tok != NULL && strlen(tok) == 64);
        enum cert_status st;
        CHECK_INT(registry_cert_status(cfg.reg, id, &st), IOT_OK);
        CHECK_INT(st, CERT_STATUS_PENDING_ACTIVATION);
        if (i == 0) {
            snprintf(token_out, token_len, "%s", tok);
            strcpy(cert_id_out, id);
        }
        cJSON_Delete(a);
    }
}

static void test_create_from_csr(void)
{
    const char *topic = "$aws/certificates/create-from-csr/json";
    expect_reject(topic, "{}", 400, "InvalidPayload", "Missing required field certificateSigningRequest");
    expect_reject(topic, "{\"certificateSigningRequest\":42}", 400, "InvalidPayload", NULL);
    expect_reject(topic, "{\"certificateSigningRequest\":\"garbage\"}", 400, "InvalidCsr", NULL);

    EVP_PKEY *key = NULL;
    X509_REQ *req = NULL;
    CHECK_INT(ca_generate_ec("P-256", &key, NULL), IOT_OK);
    CHECK_INT(ca_make_csr(key, "/CN=sensor-7/O=Acme", &req, NULL), IOT_OK);
    char *pem = ca_csr_to_pem(req);
    cJSON *body = cJSON_CreateObject();
    cJSON_AddStringToObject(body, "certificateSigningRequest", pem);
    char *payload = cJSON_PrintUnformatted(body);
    bool accepted = false;
    cJSON *a = call(topic, payload, &accepted, NULL);
    CHECK(accepted);
    CHECK_INT(cJSON_GetArraySize(a), 3);
    CHECK(str(a, "privateKey") == NULL);
    CHECK(str(a, "certificateOwnershipToken") != NULL);
    const char *cert_pem = str(a, "certificatePem");
    X509 *cert = NULL;
    CHECK_INT(ca_cert_from_pem(cert_pem, strlen(cert_pem), &cert, NULL), IOT_OK);
    char subject[256] = "";
    X509_NAME_oneline(X509_get_subject_name(cert), subject, sizeof(subject));
    CHECK_STR(subject, "/CN=sensor-7/O=Acme");
    char id[65];
    ca_cert_id(cert, id);
    CHECK_STR(str(a, "certificateId"), id);
    X509_free(cert);
    cJSON_Delete(a);
    free(payload);
    cJSON_Delete(body);
    free(pem);
    X509_REQ_free(req);
    EVP_PKEY_free(key);
}

static void test_register_thing(const char *token, const char *cert_id)
{
    char payload[512];
    const char *topic = "$aws/provisioning-templates/tpl/provision/json";
    put_template("tpl", true, "FLEET_PROVISIONING");
    put_template("off", false, "FLEET_PROVISIONING");
    put_template("jitp", true, "JITP");

    expect_reject(topic, "{}", 400, "InvalidCertificateOwnershipToken",
                  "Certificate ownership token cannot be empty.");
    expect_reject(topic, "{\"certificateOwnershipToken\":\"\"}", 400,
                  "InvalidCertificateOwnershipToken", "Certificate ownership token cannot be empty.");
    expect_reject(topic, "{\"certificateOwnershipToken\":7}", 400, "InvalidPayload", NULL);
    expect_reject(topic, "{\"certificateOwnershipToken\":\"nope\",\"parameters\":{}}", 400,
                  "InvalidCertificateOwnershipToken", NULL);
    snprintf(payload, sizeof(payload), "{\"certificateOwnershipToken\":\"%s\",\"parameters\":[]}",
             token);
    expect_reject(topic, payload, 400, "InvalidPayload", NULL);
    snprintf(payload, sizeof(payload),
             "{\"certificateOwnershipToken\":\"%s\",\"parameters\":{\"SerialNumber\":5}}", token);
    expect_reject(topic, payload, 400, "InvalidPayload", NULL);
    snprintf(payload, sizeof(payload), "{\"certificateOwnershipToken\":\"%s\"}", token);
    expect_reject(topic, payload, 400, "InvalidParameters", NULL);
    expect_reject("$aws/provisioning-templates/missing/provision/json", payload, 404,
                  "ResourceNotFound", "Template missing not found");
    expect_reject("$aws/provisioning-templates/jitp/provision/json", payload, 404,
                  "ResourceNotFound", NULL);
    expect_reject("$aws/provisioning-templates/off/provision/json", payload, 403, "AccessDenied",
                  "Template off is disabled");
    /* nothing above touched the certificate */
    enum cert_status st;
    CHECK_INT(registry_cert_status(cfg.reg, cert_id, &st), IOT_OK);
    CHECK_INT(st, CERT_STATUS_PENDING_ACTIVATION);

    snprintf(payload, sizeof(payload),
             "{\"certificateOwnershipToken\":\"%s\",\"parameters\":{\"SerialNumber\":\"42\","
             "\"AWS::IoT::Certificate::Id\":\"forged\"},\"templateName\":\"tpl\"}",
             token);
    bool accepted = false;
    char rt[256];
    cJSON *a = call(topic, payload, &accepted, rt);
    CHECK(accepted);
    CHECK_STR(rt, "$aws/provisioning-templates/tpl/provision/json/accepted");
    CHECK_STR(str(a, "thingName"), "dev_42");
    CHECK_STR(str(cJSON_GetObjectItemCaseSensitive(a, "deviceConfiguration"), "Foo"), "Bar");
    CHECK_INT(cJSON_GetArraySize(a), 2);
    cJSON_Delete(a);
    CHECK_INT(registry_cert_status(cfg.reg, cert_id, &st), IOT_OK);
    CHECK_INT(st, CERT_STATUS_ACTIVE);
    cJSON *things = NULL;
    CHECK_INT(registry_principal_things(cfg.reg, cert_id, &things), IOT_OK);
    CHECK_INT(cJSON_GetArraySize(things), 1);
    CHECK_STR(cJSON_GetStringValue(cJSON_GetArrayItem(things, 0)), "dev_42");
    cJSON_Delete(things);
}

static void test_expired_token(void)
{
    long saved = cfg.token_ttl;
    cfg.token_ttl = -1; /* already expired when issued */
    bool accepted = false;
    cJSON *a = call("$aws/certificates/create/json", "{}", &accepted, NULL);
    CHECK(accepted);
    char payload[512];
    snprintf(payload, sizeof(payload),
             "{\"certificateOwnershipToken\":\"%s\",\"parameters\":{\"SerialNumber\":\"1\"}}",
             str(a, "certificateOwnershipToken"));
    expect_reject("$aws/provisioning-templates/tpl/provision/json", payload, 400,
                  "InvalidCertificateOwnershipToken", "Certificate ownership token has expired.");
    char id[65];
    strcpy(id, str(a, "certificateId"));
    int deleted = 0;
    CHECK_INT(registry_expire_tokens(cfg.reg, (long long)time(NULL), &deleted), IOT_OK);
    CHECK(deleted >= 1);
    enum cert_status st;
    CHECK_INT(registry_cert_status(cfg.reg, id, &st), IOT_ERR_NOT_FOUND);
    cJSON_Delete(a);
    cfg.token_ttl = saved;
}

/* ---- CBOR (§1.9, clients.md §4) ----------------------------------------------------------- */

#define EC_DEMO_PACKET_MAX_KEYS 4096 /* the Embedded C keys demo's network buffer */
#define EC_DEMO_PACKET_MAX_CSR 2048  /* the Embedded C CSR demo's */

/* Appends a definite string of major type MAJOR (2 bytes, 3 text) with its head, by hand. */
static void put_str(unsigned char *b, size_t *n, unsigned major, const char *s, size_t len)
{
    unsigned char m = (unsigned char)(major << 5);
    if (len < 24) {
        b[(*n)++] = (unsigned char)(m | len);
    } else if (len < 256) {
        b[(*n)++] = m | 24;
        b[(*n)++] = (unsigned char)len;
    } else {
        b[(*n)++] = m | 25;
        b[(*n)++] = (unsigned char)(len >> 8);
        b[(*n)++] = (unsigned char)len;
    }
    memcpy(b + *n, s, len);
    *n += len;
}

static void put_text(unsigned char *b, size_t *n, const char *s)
{
    put_str(b, n, 3, s, strlen(s));
}

static void put_raw(unsigned char *b, size_t *n, const char *bytes, size_t len)
{
    memcpy(b + *n, bytes, len);
    *n += len;
}

/* The size of the MQTT 3.1.1 QoS 1 PUBLISH carrying PAYLOAD_LEN bytes on TOPIC: fixed header,
 * remaining length, topic length + topic, packet id, payload. */
static size_t publish_size(const char *topic, size_t payload_len)
{
    size_t remaining = 2 + strlen(topic) + 2 + payload_len;
    size_t varint = remaining < 128 ? 1 : remaining < 16384 ? 2 : 3;
    return 1 + varint + remaining;
}

/* Runs one CBOR request. Returns the answer decoded (caller deletes); RESP keeps the raw bytes
 * (caller clears). */
static cJSON *call_cbor(const char *topic, const void *payload, size_t len,
                        struct fleet_response *resp)
{
    struct fleet_topic t;
    CHECK_INT(fleet_topic_parse(topic, &t), FLEET_TOPIC_REQUEST);
    CHECK_INT(t.format, FLEET_FORMAT_CBOR);
    struct fleet_request req = {.topic = &t, .request_topic = topic, .client_id = "client-1",
                                .client_cert_id = "", .payload = payload, .payload_len = len};
    CHECK_INT(fleet_handle(&cfg, &req, resp), IOT_OK);
    char want[256];
    snprintf(want, sizeof(want), "%s%s", topic, resp->accepted ? "/accepted" : "/rejected");
    CHECK_STR(resp->topic, want);
    cJSON *body = NULL;
    CHECK_INT(cbor_codec_decode(resp->payload, resp->payload_len, &body, NULL), IOT_OK);
    return body;
}

/* The answer must be a rejection whose raw bytes start a3 "statusCode" 19 <status>, an
 * unsigned integer, followed by the usual two text strings. */
static void expect_reject_cbor(const char *topic, const void *payload, size_t len, int status,
                               const char *code, const char *message)
{
    struct fleet_response resp;
    cJSON *a = call_cbor(topic, payload, len, &resp);
    CHECK(!resp.accepted);
    const unsigned char head[] = {0xa3, 0x6a, 's', 't', 'a', 't', 'u', 's', 'C', 'o', 'd', 'e',
                                  0x19, (unsigned char)(status >> 8), (unsigned char)status};
    CHECK(resp.payload_len > sizeof(head) && memcmp(resp.payload, head, sizeof(head)) == 0);
    check_rejection(a, status, code, message);
    const char *m = str(a, "errorMessage");
    if (resp.accepted || m == NULL || (message && strcmp(m, message) != 0))
        fprintf(stderr, "  topic %s: %s\n", topic, m ? m : "(no errorMessage)");
    cJSON_Delete(a);
    fleet_response_clear(&resp);
}

/* BODY has exactly the keys KEYS, in that order, each a text string. */
static void check_text_keys(const cJSON *body, const char *const *keys, size_t n)
{
    const cJSON *item = body ? body->child : NULL;
    for (size_t i = 0; i < n; i++, item = item ? item->next : NULL) {
        CHECK(item != NULL && strcmp(item->string, keys[i]) == 0);
        CHECK(cJSON_IsString(item)); /* a byte string would have decoded to an array */
    }
    CHECK(item == NULL);
}

static void test_cbor_create_keys(char *token_out, size_t token_len, char *cert_id_out)
{
    const char *topic = "$aws/certificates/create/cbor";
    expect_reject_cbor(topic, "\x80", 1, 400, "InvalidPayload",
                       "Request payload is not a CBOR map");
    expect_reject_cbor(topic, "\xa0\x00", 2, 400, "InvalidPayload",
                       "Request payload has bytes after its CBOR map");
    expect_reject_cbor(topic, "\xff", 1, 400, "InvalidPayload",
                       "Request payload is not valid CBOR");
    expect_reject_cbor(topic, "\xa1", 1, 400, "InvalidPayload", NULL);
    expect_reject_cbor(topic, "{}", 2, 400, "InvalidPayload", NULL); /* JSON on the CBOR topic */

    static const char *const keys[] = {"certificateId", "certificatePem", "privateKey",
                                       "certificateOwnershipToken"};
    /* zero bytes (the Embedded C demo), {}, {_ }, and an unknown key (ignored) */
    const struct {
        const char *bytes;
        size_t len;
    } payloads[] = {{NULL, 0}, {"\xa0", 1}, {"\xbf\xff", 2}, {"\xa1\x61x\x01", 4}};
    for (size_t i = 0; i < sizeof(payloads) / sizeof(payloads[0]); i++) {
        struct fleet_response resp;
        cJSON *a = call_cbor(topic, payloads[i].bytes, payloads[i].len, &resp);
        CHECK(resp.accepted);
        CHECK_STR(resp.topic, "$aws/certificates/create/cbor/accepted");
        CHECK_INT((unsigned char)resp.payload[0], 0xa4); /* a definite map of 4 */
        check_text_keys(a, keys, 4);
        const char *id = str(a, "certificateId"), *pem = str(a, "certificatePem");
        const char *tok = str(a, "certificateOwnershipToken");
        CHECK(id != NULL && strlen(id) == 64);
        CHECK(pem != NULL && strncmp(pem, "-----BEGIN CERTIFICATE-----\n", 28) == 0);
        const char *key = str(a, "privateKey");
        CHECK(key != NULL && strncmp(key, "-----BEGIN RSA PRIVATE KEY-----\n", 32) == 0);
        CHECK(tok != NULL && strlen(tok) == 64);
        enum cert_status st;
        CHECK_INT(registry_cert_status(cfg.reg, id ? id : "", &st), IOT_OK);
        CHECK_INT(st, CERT_STATUS_PENDING_ACTIVATION);
        /* clients.md §4: the whole PUBLISH within the keys demo's 4096 bytes */
        size_t packet = publish_size(resp.topic, resp.payload_len);
        CHECK(packet <= EC_DEMO_PACKET_MAX_KEYS);
        CHECK(pem != NULL && strlen(pem) <= 2048);
        if (i == 0 && id && pem && key && tok) {
            printf("CreateKeysAndCertificate CBOR: payload %zu bytes (key %zu, cert %zu), "
                   "PUBLISH %zu of %d\n", resp.payload_len, strlen(key), strlen(pem), packet,
                   EC_DEMO_PACKET_MAX_KEYS);
            snprintf(token_out, token_len, "%s", tok);
            strcpy(cert_id_out, id);
        }
        cJSON_Delete(a);
        fleet_response_clear(&resp);
    }
}

/* {"certificateSigningRequest": PEM} with the PEM as MAJOR (3 text, 2 bytes) or, CHUNKS > 0,
 * as an indefinite text string of that many chunks. */
static size_t csr_request(unsigned char *b, const char *pem, unsigned major, int chunks)
{
    size_t n = 0, len = strlen(pem);
    b[n++] = 0xa1;
    put_text(b, &n, "certificateSigningRequest");
    if (chunks == 0) {
        put_str(b, &n, major, pem, len);
        return n;
    }
    b[n++] = 0x7f;
    for (int i = 0; i < chunks; i++) {
        size_t from = len * (size_t)i / (size_t)chunks, to = len * (size_t)(i + 1) / (size_t)chunks;
        put_str(b, &n, 3, pem + from, to - from);
    }
    b[n++] = 0xff;
    return n;
}

static void test_cbor_create_from_csr(void)
{
    const char *topic = "$aws/certificates/create-from-csr/cbor";
    unsigned char b[4096];
    expect_reject_cbor(topic, "\xa0", 1, 400, "InvalidPayload",
                       "Missing required field certificateSigningRequest");
    size_t n = 0;
    b[n++] = 0xa1;
    put_text(b, &n, "certificateSigningRequest");
    b[n++] = 0x18;
    b[n++] = 42;
    expect_reject_cbor(topic, b, n, 400, "InvalidPayload",
                       "certificateSigningRequest must be a string");
    expect_reject_cbor(topic, b, csr_request(b, "garbage", 3, 0), 400, "InvalidCsr", NULL);

    EVP_PKEY *key = NULL;
    X509_REQ *req = NULL;
    CHECK_INT(ca_generate_ec("P-256", &key, NULL), IOT_OK);
    CHECK_INT(ca_make_csr(key, "/CN=FleetProvisioningDemo/O=Acme", &req, NULL), IOT_OK);
    char *pem = ca_csr_to_pem(req);
    /* the PEM as a byte string: a wrong type, as in JSON */
    expect_reject_cbor(topic, b, csr_request(b, pem, 2, 0), 400, "InvalidPayload",
                       "certificateSigningRequest must be a string");

    static const char *const keys[] = {"certificateOwnershipToken", "certificateId",
                                       "certificatePem"};
    for (int chunks = 0; chunks <= 3; chunks += 3) {
        struct fleet_response resp;
        cJSON *a = call_cbor(topic, b, csr_request(b, pem, 3, chunks), &resp);
        CHECK(resp.accepted);
        CHECK_INT((unsigned char)resp.payload[0], 0xa3);
        check_text_keys(a, keys, 3);
        const char *cert_pem = str(a, "certificatePem") ? str(a, "certificatePem") : "";
        X509 *cert = NULL;
        CHECK_INT(ca_cert_from_pem(cert_pem, strlen(cert_pem), &cert, NULL), IOT_OK);
        char subject[256] = "", id[65] = "";
        if (cert) {
            X509_NAME_oneline(X509_get_subject_name(cert), subject, sizeof(subject));
            ca_cert_id(cert, id);
        }
        CHECK_STR(subject, "/CN=FleetProvisioningDemo/O=Acme");
        CHECK_STR(str(a, "certificateId"), id);
        X509_free(cert);
        /* clients.md §4: the whole PUBLISH within the CSR demo's 2048 bytes */
        size_t packet = publish_size(resp.topic, resp.payload_len);
        CHECK(packet <= EC_DEMO_PACKET_MAX_CSR);
        if (chunks == 0)
            printf("CreateCertificateFromCsr CBOR (EC P-256): payload %zu bytes (cert %zu), "
                   "PUBLISH %zu of %d\n", resp.payload_len, strlen(cert_pem), packet,
                   EC_DEMO_PACKET_MAX_CSR);
        cJSON_Delete(a);
        fleet_response_clear(&resp);
    }
    free(pem);
    X509_REQ_free(req);
    EVP_PKEY_free(key);
}

/* {"certificateOwnershipToken": TOKEN, "parameters": PARAMS} with PARAMS given as raw CBOR
 * (NULL: no parameters). */
static size_t register_request(unsigned char *b, const char *token, const char *params,
                               size_t params_len)
{
    size_t n = 0;
    b[n++] = params ? 0xa2 : 0xa1;
    put_text(b, &n, "certificateOwnershipToken");
    put_text(b, &n, token);
    if (params) {
        put_text(b, &n, "parameters");
        put_raw(b, &n, params, params_len);
    }
    return n;
}

static void test_cbor_register_thing(const char *token, const char *cert_id)
{
    const char *topic = "$aws/provisioning-templates/tpl/provision/cbor";
    unsigned char b[512];
    size_t n = 0;
    const char *empty = "Certificate ownership token cannot be empty.";
    expect_reject_cbor(topic, "\xa0", 1, 400, "InvalidCertificateOwnershipToken", empty);
    b[n++] = 0xa1;
    put_text(b, &n, "certificateOwnershipToken");
    b[n++] = 0xf6; /* null, as JSON null */
    expect_reject_cbor(topic, b, n, 400, "InvalidCertificateOwnershipToken", empty);
    n = 0;
    b[n++] = 0xa1;
    put_text(b, &n, "certificateOwnershipToken");
    put_str(b, &n, 2, token, strlen(token)); /* the right token, as a byte string */
    expect_reject_cbor(topic, b, n, 400, "InvalidPayload",
                       "certificateOwnershipToken must be a string");
    expect_reject_cbor(topic, b, register_request(b, "nope", NULL, 0), 400,
                       "InvalidCertificateOwnershipToken",
                       "Certificate ownership token is invalid.");
    const char *not_object = "parameters must be a JSON object";
    expect_reject_cbor(topic, b, register_request(b, token, "\x80", 1), 400, "InvalidPayload",
                       not_object);
    expect_reject_cbor(topic, b, register_request(b, token, "\x41\x00", 2), 400, "InvalidPayload",
                       not_object);
    static const char serial_int[] = "\xa1\x6cSerialNumber\x05";
    expect_reject_cbor(topic, b, register_request(b, token, serial_int, sizeof(serial_int) - 1),
                       400, "InvalidPayload", "Parameter SerialNumber must be a string");
    static const char serial_bytes[] = "\xa1\x6cSerialNumber\x42\x34\x32";
    expect_reject_cbor(topic, b, register_request(b, token, serial_bytes, sizeof(serial_bytes) - 1),
                       400, "InvalidPayload", "Parameter SerialNumber must be a string");
    static const char nested[] = "\xa1\x6cSerialNumber\xa0";
    expect_reject_cbor(topic, b, register_request(b, token, nested, sizeof(nested) - 1), 400,
                       "InvalidPayload", "Parameter SerialNumber must be a string");
    expect_reject_cbor(topic, b, register_request(b, token, NULL, 0), 400, "InvalidParameters",
                       NULL);
    expect_reject_cbor("$aws/provisioning-templates/missing/provision/cbor", b,
                       register_request(b, token, NULL, 0), 404, "ResourceNotFound",
                       "Template missing not found");
    expect_reject_cbor("$aws/provisioning-templates/off/provision/cbor", b,
                       register_request(b, token, NULL, 0), 403, "AccessDenied",
                       "Template off is disabled");
    enum cert_status st;
    CHECK_INT(registry_cert_status(cfg.reg, cert_id, &st), IOT_OK);
    CHECK_INT(st, CERT_STATUS_PENDING_ACTIVATION);

    /* parameters as an indefinite map with a chunked value: {_ "SerialNumber": (_ "7", "7")} */
    static const char serial[] = "\xbf\x6cSerialNumber\x7f\x61\x37\x61\x37\xff\xff";
    struct fleet_response resp;
    cJSON *a = call_cbor(topic, b, register_request(b, token, serial, sizeof(serial) - 1), &resp);
    CHECK(resp.accepted);
    /* {"deviceConfiguration":{"Foo":"Bar"},"thingName":"dev_77"}, byte for byte */
    const char want[] = "\xa2\x73" "deviceConfiguration" "\xa1\x63" "Foo" "\x63" "Bar"
                        "\x69" "thingName" "\x66" "dev_77";
    CHECK_INT(resp.payload_len, sizeof(want) - 1);
    CHECK(resp.payload_len == sizeof(want) - 1 &&
          memcmp(resp.payload, want, sizeof(want) - 1) == 0);
    CHECK_STR(str(a, "thingName"), "dev_77");
    cJSON_Delete(a);
    fleet_response_clear(&resp);
    CHECK_INT(registry_cert_status(cfg.reg, cert_id, &st), IOT_OK);
    CHECK_INT(st, CERT_STATUS_ACTIVE);
}

int main(void)
{
    test_topics();
    test_error_catalogue();

    struct ca *ca = NULL;
    struct registry *reg = NULL;
    CHECK(mkdtemp(state_dir) != NULL);
    CHECK_INT(ca_open(state_dir, &ca, NULL), IOT_OK);
    CHECK_INT(registry_open(":memory:", &reg, NULL), IOT_OK);
    cfg = (struct fleet_config){.reg = reg, .ca = ca, .region = "us-east-1",
                                .account_id = "123456789012", .token_ttl = 3600,
                                .hook_timeout_ms = 1000};
    char token[128], cert_id[65];
    test_create_keys(token, sizeof(token), cert_id);
    test_create_from_csr();
    test_register_thing(token, cert_id);
    test_expired_token();
    char cbor_token[128], cbor_cert_id[65];
    test_cbor_create_keys(cbor_token, sizeof(cbor_token), cbor_cert_id);
    test_cbor_create_from_csr();
    test_cbor_register_thing(cbor_token, cbor_cert_id);

    registry_close(reg);
    ca_free(ca);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", state_dir);
    CHECK_INT(system(cmd), 0);
    return check_summary();
}
