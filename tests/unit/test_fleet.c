/* Fleet provisioning API: the topic grammar, the error catalogue, and each operation from request
 * bytes to response bytes against an in-memory registry and a throw-away CA. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

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

    const char *payloads[] = {NULL, "{}", " {} ", "{\"unknown\":1}"};
    for (size_t i = 0; i < 4; i++) {
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

    registry_close(reg);
    ca_free(ca);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", state_dir);
    CHECK_INT(system(cmd), 0);
    return check_summary();
}
