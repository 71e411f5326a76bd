/* Unit tests for emulator/policy.c (shared/spec/broker-and-policy.md §2, §6).
 *
 * First the decision vectors of every fixtures/policy-vectors/ JSON file, every file of the
 * directory: each case names its policies, its connection and one request, and expects an effect
 * with the deciding policy and statement, or (expectCompileError) a refused document. Then what a
 * table cannot say: compile limits at their boundaries, the ARN builders against guard bytes, the
 * reserved-topic rules, certificate variables read from a real X509, the cost of an evaluation, and
 * the glob against a naive reference on random patterns. */
#include <dirent.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <openssl/asn1.h>
#include <openssl/bn.h>
#include <openssl/x509v3.h>

#include "ca.h"
#include "check.h"
#include "policy.h"

#define REGION "us-east-1"
#define ACCOUNT "123456789012"
#define ARN_PREFIX "arn:aws:iot:" REGION ":" ACCOUNT ":"
#define VECTORS_DIR FIXTURES_DIR "/policy-vectors"

static bool contains(const char *haystack, const char *needle)
{
    return haystack != NULL && needle != NULL && strstr(haystack, needle) != NULL;
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    long n = -1;
    if (f != NULL && fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 &&
        fseek(f, 0, SEEK_SET) == 0)
        buf = malloc((size_t)n + 1);
    if (buf != NULL && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    if (buf != NULL) {
        buf[n] = '\0';
        *len = (size_t)n;
    }
    if (f != NULL)
        fclose(f);
    return buf;
}

/* ---- the vector runner ------------------------------------------------------------------- */

#define VEC_POLICIES_MAX 16
#define VEC_ATTRS_MAX 64

struct vec {
    const char *file;
    const char *name;
    struct policy_context ctx;
    struct policy_attr attrs[VEC_ATTRS_MAX];
    struct policy *policies[VEC_POLICIES_MAX];
    size_t n_policies;
};

static int vectors_run, vectors_failed;
static cJSON *spec_names; /* names of every case, to check §2.7's examples are all there */

__attribute__((format(printf, 2, 3))) static void mismatch(const struct vec *v, const char *fmt,
                                                           ...)
{
    va_list ap;
    fprintf(stderr, "%s: %s: ", v->file, v->name);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    vectors_failed++;
}

static const char *str_of(const cJSON *obj, const char *key)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsString(item) ? item->valuestring : NULL;
}

/* The document text of a policy entry: a string as is, an object printed. Caller frees. */
static char *document_text(const cJSON *doc)
{
    if (cJSON_IsString(doc))
        return strdup(doc->valuestring);
    return doc ? cJSON_PrintUnformatted(doc) : NULL;
}

static bool context_certificate(struct vec *v, const cJSON *cert)
{
    for (const cJSON *f = cert ? cert->child : NULL; f != NULL; f = f->next) {
        const cJSON *first = cJSON_IsArray(f) ? f->child : f;
        for (const cJSON *e = first; e != NULL; e = cJSON_IsArray(f) ? e->next : NULL) {
            struct iot_error err = {0};
            if (!cJSON_IsString(e) ||
                policy_context_cert_add(&v->ctx, f->string, e->valuestring, &err) != IOT_OK) {
                mismatch(v, "bad certificate field %s in the vector", f->string);
                return false;
            }
        }
    }
    return true;
}

static bool context_thing(struct vec *v, const cJSON *thing)
{
    if (thing == NULL)
        return true;
    v->ctx.thing_associated = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(thing, "associated"));
    v->ctx.thing_name = str_of(thing, "name");
    v->ctx.thing_type_name = str_of(thing, "type");
    const cJSON *attrs = cJSON_GetObjectItemCaseSensitive(thing, "attributes");
    v->ctx.thing_attributes = v->attrs;
    for (const cJSON *a = attrs ? attrs->child : NULL; a != NULL; a = a->next) {
        if (!cJSON_IsString(a) || v->ctx.n_thing_attributes == VEC_ATTRS_MAX) {
            mismatch(v, "bad thing attribute %s in the vector", a->string);
            return false;
        }
        v->attrs[v->ctx.n_thing_attributes++] = (struct policy_attr){a->string, a->valuestring};
    }
    return true;
}

static bool context_from_json(struct vec *v, const cJSON *j)
{
    struct policy_context *ctx = &v->ctx;
    policy_context_init(ctx);
    ctx->region = str_of(j, "region") ? str_of(j, "region") : REGION;
    ctx->account = str_of(j, "account") ? str_of(j, "account") : ACCOUNT;
    ctx->client_id = str_of(j, "clientId");
    ctx->source_ip = str_of(j, "sourceIp");
    ctx->domain_name = str_of(j, "domainName");
    ctx->certificate_id = str_of(j, "certificateId");
    ctx->last_will_topic = str_of(j, "lastWillTopic");
    const cJSON *attached = cJSON_GetObjectItemCaseSensitive(j, "isAttached");
    if (cJSON_IsBool(attached))
        ctx->is_attached = cJSON_IsTrue(attached) ? POLICY_BOOL_TRUE : POLICY_BOOL_FALSE;
    ctx->negated_absent_false =
        cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "negatedAbsentFalse"));
    const cJSON *now = cJSON_GetObjectItemCaseSensitive(j, "now");
    if (cJSON_IsNumber(now))
        ctx->now = (time_t)now->valuedouble;
    const cJSON *ca = cJSON_GetObjectItemCaseSensitive(j, "connectAttributes");
    for (const cJSON *a = ca ? ca->child : NULL; a != NULL; a = a->next) {
        if (cJSON_IsString(a) && strcmp(a->valuestring, "PersistentConnect") == 0)
            ctx->connect_attributes |= POLICY_CONNECT_PERSISTENT;
        else if (cJSON_IsString(a) && strcmp(a->valuestring, "LastWill") == 0)
            ctx->connect_attributes |= POLICY_CONNECT_LAST_WILL;
    }
    return context_thing(v, cJSON_GetObjectItemCaseSensitive(j, "thing")) &&
           context_certificate(v, cJSON_GetObjectItemCaseSensitive(j, "certificate"));
}

/* A case's policy: {"name", "document"} inline, or the name of one in the file's "policies". */
static bool compile_entry(struct vec *v, const cJSON *entry, const cJSON *shared)
{
    const char *name = cJSON_IsString(entry) ? entry->valuestring : str_of(entry, "name");
    const cJSON *doc = cJSON_IsString(entry) ? cJSON_GetObjectItemCaseSensitive(shared, name)
                                             : cJSON_GetObjectItemCaseSensitive(entry, "document");
    char *text = document_text(doc);
    struct iot_error err = {0};
    enum iot_err rc = IOT_ERR_INVALID_REQUEST;
    if (v->n_policies < VEC_POLICIES_MAX && name != NULL && text != NULL)
        rc = policy_compile(name, text, strlen(text), &v->policies[v->n_policies], &err);
    free(text);
    if (rc != IOT_OK) {
        mismatch(v, "policy %s does not compile: %s", name ? name : "(unnamed)", err.message);
        return false;
    }
    v->n_policies++;
    return true;
}

static void check_compile_error(struct vec *v, const cJSON *c)
{
    const char *want = str_of(c, "expectCompileError");
    const char *name = str_of(c, "policyName") ? str_of(c, "policyName") : "p";
    char *text = document_text(cJSON_GetObjectItemCaseSensitive(c, "document"));
    struct policy *p = NULL;
    struct iot_error err = {0};
    enum iot_err rc = policy_compile(name, text ? text : "", text ? strlen(text) : 0, &p, &err);
    if (rc != IOT_ERR_INVALID_REQUEST)
        mismatch(v, "expected a refused document, got %s", iot_err_name(rc));
    else if (!contains(err.message, want))
        mismatch(v, "message \"%s\" lacks \"%s\"", err.message, want);
    policy_free(p);
    free(text);
}

static void check_decision(struct vec *v, const cJSON *c, const struct policy_decision *d)
{
    const cJSON *expect = cJSON_GetObjectItemCaseSensitive(c, "expect");
    const char *effect = str_of(expect, "effect");
    const char *policy = str_of(expect, "policy");
    const cJSON *stmt = cJSON_GetObjectItemCaseSensitive(expect, "statement");
    int statement = cJSON_IsNumber(stmt) ? stmt->valueint : -1;
    if (effect == NULL || strcmp(effect, policy_effect_name(d->effect)) != 0 ||
        (policy ? d->policy == NULL || strcmp(policy, d->policy) != 0 : d->policy != NULL) ||
        statement != d->statement) {
        mismatch(v, "expected %s %s #%d, got %s %s #%d\n    %s", effect ? effect : "?",
                 policy ? policy : "-", statement, policy_effect_name(d->effect),
                 d->policy ? d->policy : "-", d->statement, d->explanation);
        return;
    }
    const cJSON *want = cJSON_GetObjectItemCaseSensitive(c, "explanationContains");
    const cJSON *first = cJSON_IsArray(want) ? want->child : want;
    for (const cJSON *w = first; w != NULL; w = cJSON_IsArray(want) ? w->next : NULL)
        if (!cJSON_IsString(w) || !contains(d->explanation, w->valuestring))
            mismatch(v, "explanation \"%s\" lacks \"%s\"", d->explanation,
                     cJSON_IsString(w) ? w->valuestring : "?");
}

static void run_decision(struct vec *v, const cJSON *c, const cJSON *shared)
{
    const cJSON *entries = cJSON_GetObjectItemCaseSensitive(c, "policies");
    for (const cJSON *e = entries ? entries->child : NULL; e != NULL; e = e->next)
        if (!compile_entry(v, e, shared))
            return;
    if (!context_from_json(v, cJSON_GetObjectItemCaseSensitive(c, "context")))
        return;
    enum policy_action action;
    const char *resource = str_of(c, "resource");
    if (!policy_action_parse(str_of(c, "action"), &action) || resource == NULL) {
        mismatch(v, "the vector needs an action and a resource");
        return;
    }
    size_t size = strlen(ARN_PREFIX) + strlen(resource) + 1;
    char *arn = malloc(size);
    if (arn == NULL)
        return;
    snprintf(arn, size, "%s%s", strncmp(resource, "arn:", 4) == 0 ? "" : ARN_PREFIX, resource);
    struct policy_decision d;
    enum iot_err rc = policy_evaluate((const struct policy *const *)v->policies, v->n_policies,
                                      &v->ctx, action, arn, strlen(arn), &d);
    free(arn);
    if (rc != IOT_OK)
        mismatch(v, "evaluation failed: %s", iot_err_name(rc));
    else
        check_decision(v, c, &d);
}

static void run_case(const char *file, const cJSON *c, const cJSON *shared)
{
    struct vec v = {.file = file, .name = str_of(c, "name") ? str_of(c, "name") : "(unnamed)"};
    int failed_before = vectors_failed;
    cJSON_AddItemToArray(spec_names, cJSON_CreateString(v.name));
    if (cJSON_GetObjectItemCaseSensitive(c, "expectCompileError"))
        check_compile_error(&v, c);
    else
        run_decision(&v, c, shared);
    for (size_t i = 0; i < v.n_policies; i++)
        policy_free(v.policies[i]);
    policy_context_cleanup(&v.ctx);
    vectors_run++;
    CHECK(vectors_failed == failed_before);
}

static int json_file(const struct dirent *e)
{
    size_t n = strlen(e->d_name);
    return n > 5 && strcmp(e->d_name + n - 5, ".json") == 0;
}

static void run_vector_file(const char *name)
{
    char path[512];
    size_t len = 0;
    snprintf(path, sizeof(path), "%s/%s", VECTORS_DIR, name);
    char *text = read_file(path, &len);
    cJSON *root = text ? cJSON_ParseWithLength(text, len) : NULL;
    const cJSON *cases = cJSON_GetObjectItemCaseSensitive(root, "cases");
    CHECK(cJSON_IsArray(cases) && cJSON_GetArraySize(cases) > 0);
    if (!cJSON_IsArray(cases))
        fprintf(stderr, "%s: not a vector file (no \"cases\" array)\n", path);
    const cJSON *shared = cJSON_GetObjectItemCaseSensitive(root, "policies");
    for (const cJSON *c = cases ? cases->child : NULL; c != NULL; c = c->next)
        run_case(name, c, shared);
    cJSON_Delete(root);
    free(text);
}

static bool has_case(const char *prefix)
{
    for (const cJSON *n = spec_names->child; n != NULL; n = n->next)
        if (strncmp(n->valuestring, prefix, strlen(prefix)) == 0)
            return true;
    return false;
}

static void test_vectors(void)
{
    struct dirent **list = NULL;
    int n = scandir(VECTORS_DIR, &list, json_file, alphasort);
    CHECK(n >= 2);
    spec_names = cJSON_CreateArray();
    for (int i = 0; i < n; i++) {
        run_vector_file(list[i]->d_name);
        free(list[i]);
    }
    free(list);
    /* Every worked example of §2.7 is in the vectors, named after it. */
    static const char *const examples[] = {"E1-", "E2-", "E3-", "E4-", "E5-",
                                           "E6-", "E7-", "E8-", "E9-", "E10-"};
    for (size_t i = 0; i < sizeof(examples) / sizeof(examples[0]); i++) {
        CHECK(has_case(examples[i]));
        if (!has_case(examples[i]))
            fprintf(stderr, "no vector for §2.7 example %s\n", examples[i]);
    }
    cJSON_Delete(spec_names);
    printf("policy vectors: %d cases in %d files, %d failed\n", vectors_run, n, vectors_failed);
}

/* ---- compile refusals at the limits -------------------------------------------------------- */

static enum iot_err compile(const char *name, const char *text, struct iot_error *err,
                            struct policy **out)
{
    return policy_compile(name, text, text ? strlen(text) : 0, out, err);
}

/* A document of exactly CHARS non-whitespace characters plus SPACES blanks. Caller frees. */
static char *document_of_size(size_t chars, size_t spaces)
{
    static const char head[] = "{\"Version\":\"2012-10-17\",\"Statement\":{\"Sid\":\"";
    static const char tail[] =
        "\",\"Effect\":\"Allow\",\"Action\":\"iot:Connect\",\"Resource\":\"*\"}}";
    size_t fixed = strlen(head) + strlen(tail);
    char *doc = malloc(chars + spaces + 1);
    if (doc == NULL || chars < fixed)
        return doc;
    char *p = doc;
    memcpy(p, head, strlen(head));
    p += strlen(head);
    memset(p, 'x', chars - fixed);
    p += chars - fixed;
    memcpy(p, tail, strlen(tail));
    p += strlen(tail);
    memset(p, ' ', spaces);
    p[spaces] = '\0';
    return doc;
}

static void test_compile_limits(void)
{
    struct iot_error err = {0};
    struct policy *p = NULL;

    /* Names: [\w+=,.@-]{1,128}. */
    static const char ok_doc[] =
        "{\"Version\":\"2012-10-17\",\"Statement\":{\"Effect\":\"Allow\",\"Action\":\"*\","
        "\"Resource\":\"*\"}}";
    CHECK_INT(compile(NULL, ok_doc, &err, &p), IOT_ERR_INVALID_REQUEST);
    CHECK_INT(compile("", ok_doc, &err, &p), IOT_ERR_INVALID_REQUEST);
    CHECK_INT(compile("has space", ok_doc, &err, &p), IOT_ERR_INVALID_REQUEST);
    CHECK(contains(err.message, "policy name"));
    CHECK(p == NULL);
    char name[POLICY_NAME_MAX + 2];
    memset(name, 'n', sizeof(name) - 1);
    name[sizeof(name) - 1] = '\0';
    CHECK_INT(compile(name, ok_doc, &err, &p), IOT_ERR_INVALID_REQUEST);
    name[POLICY_NAME_MAX] = '\0';
    CHECK_INT(compile(name, ok_doc, &err, &p), IOT_OK);
    policy_free(p);
    CHECK_INT(compile("a_b+c=d,e.f@g-h", ok_doc, &err, &p), IOT_OK);
    CHECK_STR(policy_name(p), "a_b+c=d,e.f@g-h");
    CHECK_INT(policy_statement_count(p), 1);
    policy_free(p);
    CHECK(policy_name_valid("x"));
    CHECK(!policy_name_valid("x/y"));

    /* Empty documents. */
    p = NULL;
    CHECK_INT(policy_compile("p", NULL, 0, &p, &err), IOT_ERR_INVALID_REQUEST);
    CHECK_INT(policy_compile("p", ok_doc, 0, &p, &err), IOT_ERR_INVALID_REQUEST);
    /* LEN is honoured: the text need not be NUL-terminated. */
    char padded[sizeof(ok_doc) + 8];
    memcpy(padded, ok_doc, sizeof(ok_doc) - 1);
    memcpy(padded + sizeof(ok_doc) - 1, "GARBAGE!", 8);
    CHECK_INT(policy_compile("p", padded, sizeof(ok_doc) - 1, &p, &err), IOT_OK);
    policy_free(p);
    CHECK_INT(policy_compile("p", padded, sizeof(padded), &p, &err), IOT_ERR_INVALID_REQUEST);
    CHECK(contains(err.message, "not valid JSON"));

    /* 2048 characters excluding whitespace: the limit itself passes, one more does not, and
     * whitespace never counts. */
    char *doc = document_of_size(POLICY_DOC_MAX_CHARS, 0);
    CHECK_INT(compile("p", doc, &err, &p), IOT_OK);
    policy_free(p);
    free(doc);
    doc = document_of_size(POLICY_DOC_MAX_CHARS + 1, 0);
    CHECK_INT(compile("p", doc, &err, &p), IOT_ERR_INVALID_REQUEST);
    CHECK(contains(err.message, "2049 characters"));
    free(doc);
    doc = document_of_size(POLICY_DOC_MAX_CHARS, 20000);
    CHECK_INT(compile("p", doc, &err, &p), IOT_OK);
    policy_free(p);
    free(doc);
    doc = document_of_size(200, POLICY_DOC_MAX_BYTES);
    CHECK_INT(compile("p", doc, &err, &p), IOT_ERR_INVALID_REQUEST);
    CHECK(contains(err.message, "404600 bytes"));
    free(doc);
    /* A UTF-8 character counts once. */
    static const char utf8_doc[] =
        "{\"Version\":\"2012-10-17\",\"Statement\":{\"Sid\":\"\xc3\xa9\","
        "\"Effect\":\"Allow\",\"Action\":\"*\",\"Resource\":\"*\"}}";
    CHECK_INT(compile("p", utf8_doc, &err, &p), IOT_OK);
    policy_free(p);
}

/* ---- ARNs ----------------------------------------------------------------------------------- */

static void test_arns(void)
{
    char buf[128 + 8];
    struct policy_context ctx;
    policy_context_init(&ctx);
    ctx.region = REGION;
    ctx.account = ACCOUNT;

    CHECK_INT(policy_arn_for(buf, sizeof(buf), &ctx, POLICY_ACTION_CONNECT, "dev-1", 5),
              strlen(ARN_PREFIX "client/dev-1"));
    CHECK_STR(buf, ARN_PREFIX "client/dev-1");
    policy_arn_for(buf, sizeof(buf), &ctx, POLICY_ACTION_PUBLISH, "a/+/#", 5);
    CHECK_STR(buf, ARN_PREFIX "topic/a/+/#");
    policy_arn_for(buf, sizeof(buf), &ctx, POLICY_ACTION_RECEIVE, "$aws/x", 6);
    CHECK_STR(buf, ARN_PREFIX "topic/$aws/x");
    policy_arn_for(buf, sizeof(buf), &ctx, POLICY_ACTION_RETAIN_PUBLISH, "t", 1);
    CHECK_STR(buf, ARN_PREFIX "topic/t");
    policy_arn_for(buf, sizeof(buf), &ctx, POLICY_ACTION_SUBSCRIBE, "$share/g/a/#", 12);
    CHECK_STR(buf, ARN_PREFIX "topicfilter/$share/g/a/#");
    /* NAME_LEN is honoured: "abc" of "abcdef". */
    policy_arn_build(buf, sizeof(buf), "r", "a", POLICY_RESOURCE_TOPIC, "abcdef", 3);
    CHECK_STR(buf, "arn:aws:iot:r:a:topic/abc");
    policy_arn_build(buf, sizeof(buf), NULL, NULL, POLICY_RESOURCE_CLIENT, "", 0);
    CHECK_STR(buf, "arn:aws:iot:::client/");

    /* Exactly fitting and one byte short, with guard bytes after the buffer. */
    size_t need = strlen(ARN_PREFIX "topic/abc");
    memset(buf, 0x5a, sizeof(buf));
    CHECK_INT(policy_arn_for(buf, need + 1, &ctx, POLICY_ACTION_PUBLISH, "abc", 3), need);
    CHECK_STR(buf, ARN_PREFIX "topic/abc");
    for (size_t i = need + 1; i < sizeof(buf); i++)
        CHECK_INT((unsigned char)buf[i], 0x5a);
    memset(buf, 0x5a, sizeof(buf));
    CHECK_INT(policy_arn_for(buf, need, &ctx, POLICY_ACTION_PUBLISH, "abc", 3), need);
    CHECK_INT(buf[0], 0);
    for (size_t i = 1; i < sizeof(buf); i++)
        CHECK_INT((unsigned char)buf[i], 0x5a);
    CHECK_INT(policy_arn_for(buf, 0, &ctx, POLICY_ACTION_PUBLISH, "abc", 3), need);
    CHECK_INT((unsigned char)buf[1], 0x5a);

    CHECK_INT(policy_action_resource_type(POLICY_ACTION_CONNECT), POLICY_RESOURCE_CLIENT);
    CHECK_INT(policy_action_resource_type(POLICY_ACTION_SUBSCRIBE), POLICY_RESOURCE_TOPICFILTER);
    CHECK_INT(policy_action_resource_type(POLICY_ACTION_RECEIVE), POLICY_RESOURCE_TOPIC);

    enum policy_action a;
    CHECK(policy_action_parse("IOT:retainpublish", &a) && a == POLICY_ACTION_RETAIN_PUBLISH);
    CHECK(!policy_action_parse("iot:Publis", &a));
    CHECK_STR(policy_action_name(POLICY_ACTION_RECEIVE), "iot:Receive");
    CHECK(policy_action_name(POLICY_ACTION_COUNT) == NULL);
    CHECK_STR(policy_effect_name(POLICY_DENY_EXPLICIT), "DENY_EXPLICIT");
}

/* ---- reserved topics ------------------------------------------------------------------------ */

static void test_reserved(void)
{
    enum { N = POLICY_RESERVED_NONE, A = POLICY_RESERVED_ALLOWED, D = POLICY_RESERVED_DENIED };
    static const struct {
        enum policy_action action;
        const char *topic;
        int want;
    } cases[] = {
        /* Not reserved: the policies decide. */
        {POLICY_ACTION_PUBLISH, "sensor/1", N},
        {POLICY_ACTION_SUBSCRIBE, "#", N},
        {POLICY_ACTION_SUBSCRIBE, "+/things/x/shadow/get/accepted", N},
        {POLICY_ACTION_RETAIN_PUBLISH, "sensor/1", N},
        {POLICY_ACTION_CONNECT, "$aws/anything", N},
        {POLICY_ACTION_SUBSCRIBE, "$share/group/sensor/#", N},
        /* Fleet provisioning (§6.3): requests are publishable, answers are not. */
        {POLICY_ACTION_PUBLISH, "$aws/certificates/create/json", A},
        {POLICY_ACTION_PUBLISH, "$aws/certificates/create/cbor", A},
        {POLICY_ACTION_PUBLISH, "$aws/certificates/create-from-csr/json", A},
        {POLICY_ACTION_PUBLISH, "$aws/certificates/create-from-csr/cbor", A},
        {POLICY_ACTION_PUBLISH, "$aws/provisioning-templates/tpl/provision/json", A},
        {POLICY_ACTION_PUBLISH, "$aws/provisioning-templates/tpl/provision/cbor", A},
        {POLICY_ACTION_PUBLISH, "$aws/certificates/create/xml", D},
        {POLICY_ACTION_PUBLISH, "$aws/certificates/create/json/accepted", D},
        {POLICY_ACTION_PUBLISH, "$aws/certificates/create-from-csr/json/rejected", D},
        {POLICY_ACTION_PUBLISH, "$aws/provisioning-templates/tpl/provision/json/accepted", D},
        {POLICY_ACTION_PUBLISH, "$aws/provisioning-templates//provision/json", D},
        {POLICY_ACTION_SUBSCRIBE, "$aws/certificates/create/json/accepted", A},
        {POLICY_ACTION_SUBSCRIBE, "$aws/certificates/create/+/accepted", A},
        {POLICY_ACTION_SUBSCRIBE, "$aws/certificates/create/json/#", A},
        {POLICY_ACTION_SUBSCRIBE, "$aws/provisioning-templates/+/provision/json/rejected", A},
        {POLICY_ACTION_SUBSCRIBE, "$aws/certificates/create/json", D},
        /* Device Shadow (§6.1; DG: request topics are Publish/Subscribe). */
        {POLICY_ACTION_PUBLISH, "$aws/things/lamp-1/shadow/update", A},
        {POLICY_ACTION_PUBLISH, "$aws/things/lamp-1/shadow/get", A},
        {POLICY_ACTION_PUBLISH, "$aws/things/lamp-1/shadow/delete", A},
        {POLICY_ACTION_PUBLISH, "$aws/things/lamp-1/shadow/name/cfg/update", A},
        {POLICY_ACTION_PUBLISH, "$aws/things/lamp-1/shadow/update/accepted", D},
        {POLICY_ACTION_PUBLISH, "$aws/things/lamp-1/shadow/update/delta", D},
        {POLICY_ACTION_PUBLISH, "$aws/things/lamp-1/shadow/update/documents", D},
        {POLICY_ACTION_PUBLISH, "$aws/things/lamp-1/shadow/name/cfg/get/rejected", D},
        {POLICY_ACTION_PUBLISH, "$aws/things/lamp-1/shadow/name/update", D},
        {POLICY_ACTION_PUBLISH, "$aws/things/lamp-1/shadow/patch", D},
        {POLICY_ACTION_SUBSCRIBE, "$aws/things/lamp-1/shadow/update", A},
        {POLICY_ACTION_SUBSCRIBE, "$aws/things/lamp-1/shadow/update/delta", A},
        {POLICY_ACTION_SUBSCRIBE, "$aws/things/lamp-1/shadow/#", A},
        {POLICY_ACTION_SUBSCRIBE, "$aws/things/+/shadow/name/+/get/accepted", A},
        /* Jobs (§6.2): requests publish-only, answers and notifications subscribe-only. */
        {POLICY_ACTION_PUBLISH, "$aws/things/t/jobs/get", A},
        {POLICY_ACTION_PUBLISH, "$aws/things/t/jobs/start-next", A},
        {POLICY_ACTION_PUBLISH, "$aws/things/t/jobs/job-7/get", A},
        {POLICY_ACTION_PUBLISH, "$aws/things/t/jobs/$next/get", A},
        {POLICY_ACTION_PUBLISH, "$aws/things/t/jobs/job-7/update", A},
        {POLICY_ACTION_PUBLISH, "$aws/things/t/jobs/notify", D},
        {POLICY_ACTION_PUBLISH, "$aws/things/t/jobs/notify-next", D},
        {POLICY_ACTION_PUBLISH, "$aws/things/t/jobs/get/accepted", D},
        {POLICY_ACTION_PUBLISH, "$aws/things/t/jobs/job-7/update/rejected", D},
        {POLICY_ACTION_SUBSCRIBE, "$aws/things/t/jobs/notify-next", A},
        {POLICY_ACTION_SUBSCRIBE, "$aws/things/t/jobs/+/update/accepted", A},
        {POLICY_ACTION_SUBSCRIBE, "$aws/things/t/jobs/get", D},
        {POLICY_ACTION_SUBSCRIBE, "$aws/things/t/jobs/start-next", D},
        /* Events (§5): subscribe-only. */
        {POLICY_ACTION_PUBLISH, "$aws/events/presence/connected/dev1", D},
        {POLICY_ACTION_PUBLISH, "$aws/events/anything", D},
        {POLICY_ACTION_SUBSCRIBE, "$aws/events/presence/connected/dev1", A},
        {POLICY_ACTION_SUBSCRIBE, "$aws/events/presence/connected/a/b", A},
        {POLICY_ACTION_SUBSCRIBE, "$aws/events/presence/+/+", A},
        {POLICY_ACTION_SUBSCRIBE, "$aws/events/subscriptions/subscribed/dev1", A},
        {POLICY_ACTION_SUBSCRIBE, "$aws/events/thing/t/created", A},
        {POLICY_ACTION_SUBSCRIBE, "$aws/events/jobExecution/j/timed_out", A},
        {POLICY_ACTION_SUBSCRIBE, "$aws/events/certificates/registered/abc", A},
        {POLICY_ACTION_SUBSCRIBE, "$aws/events/#", A},
        {POLICY_ACTION_SUBSCRIBE, "$aws/events/unknown/x", D},
        /* Other reserved families (§6.4). */
        {POLICY_ACTION_PUBLISH, "$aws/rules/myRule", A},
        {POLICY_ACTION_PUBLISH, "$aws/rules/myRule/some/topic", A},
        {POLICY_ACTION_PUBLISH, "$AWS/Rules/myRule/x", A},
        {POLICY_ACTION_PUBLISH, "$aws/rules/", D},
        {POLICY_ACTION_SUBSCRIBE, "$aws/rules/myRule/#", D},
        {POLICY_ACTION_PUBLISH, "$aws/things/t/defender/metrics/json", A},
        {POLICY_ACTION_PUBLISH, "$aws/things/t/defender/metrics/json/accepted", D},
        {POLICY_ACTION_SUBSCRIBE, "$aws/things/t/defender/metrics/cbor/rejected", A},
        {POLICY_ACTION_SUBSCRIBE, "$aws/things/t/tunnels/notify", A},
        {POLICY_ACTION_PUBLISH, "$aws/things/t/tunnels/notify", D},
        {POLICY_ACTION_PUBLISH, "$aws/things/t/streams/s1/get/cbor", A},
        {POLICY_ACTION_PUBLISH, "$aws/things/t/streams/s1/describe/json", A},
        {POLICY_ACTION_PUBLISH, "$aws/things/t/streams/s1/data/cbor", D},
        {POLICY_ACTION_SUBSCRIBE, "$aws/things/t/streams/s1/description/json", A},
        {POLICY_ACTION_SUBSCRIBE, "$aws/sitewise/asset-models/m/assets/a/properties/p", A},
        {POLICY_ACTION_PUBLISH, "$aws/sitewise/asset-models/m/assets/a/properties/p", D},
        /* Anything else starting with $ is unsupported; retain never on $ topics. */
        {POLICY_ACTION_PUBLISH, "$SYS/broker/uptime", D},
        {POLICY_ACTION_SUBSCRIBE, "$SYS/#", D},
        {POLICY_ACTION_PUBLISH, "$aws/things/t/unknown", D},
        {POLICY_ACTION_PUBLISH, "$share/g/topic", D},
        {POLICY_ACTION_SUBSCRIBE, "$share/g/$aws/things/t/shadow/update/accepted", A},
        {POLICY_ACTION_SUBSCRIBE, "$share/g/$aws/things/t/jobs/get", D},
        {POLICY_ACTION_SUBSCRIBE, "$share/g", D},
        {POLICY_ACTION_RETAIN_PUBLISH, "$aws/things/t/shadow/update", D},
        {POLICY_ACTION_RETAIN_PUBLISH, "$aws/rules/r", D},
        {POLICY_ACTION_RECEIVE, "$aws/things/t/shadow/update/accepted", A},
        {POLICY_ACTION_RECEIVE, "sensor", N},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *why = NULL;
        int got = (int)policy_reserved_check(cases[i].action, cases[i].topic, &why);
        CHECK_INT(got, cases[i].want);
        CHECK(why != NULL && why[0] != '\0');
        if (got != cases[i].want)
            fprintf(stderr, "  %s %s: %s\n", policy_action_name(cases[i].action), cases[i].topic,
                    why ? why : "(null)");
    }
    const char *why = NULL;
    policy_reserved_check(POLICY_ACTION_PUBLISH, "$aws/events/presence/connected/x", &why);
    CHECK(contains(why, "subscribe"));
    policy_reserved_check(POLICY_ACTION_SUBSCRIBE, "$aws/things/t/jobs/get", &why);
    CHECK(contains(why, "publish"));
    CHECK_INT(policy_reserved_check(POLICY_ACTION_PUBLISH, "$aws/things/t/shadow/get", NULL),
              POLICY_RESERVED_ALLOWED);
}

/* ---- evaluation helpers for the direct tests ------------------------------------------------ */

static struct policy *must_compile(const char *name, const char *doc)
{
    struct policy *p = NULL;
    struct iot_error err = {0};
    if (policy_compile(name, doc, strlen(doc), &p, &err) != IOT_OK)
        fprintf(stderr, "  %s does not compile: %s\n", name, err.message);
    CHECK(p != NULL);
    return p;
}

static enum policy_effect decide(struct policy *const *ps, size_t n,
                                 const struct policy_context *ctx, enum policy_action action,
                                 const char *name, struct policy_decision *d)
{
    char arn[POLICY_ARN_MAX];
    struct policy_decision local = {0};
    d = d ? d : &local;
    policy_arn_for(arn, sizeof(arn), ctx, action, name, strlen(name));
    CHECK_INT(
        policy_evaluate((const struct policy *const *)ps, n, ctx, action, arn, strlen(arn), d),
        IOT_OK);
    return d->effect;
}

/* ---- certificate variables from a real X509 -------------------------------------------------- */

/* UTF8String whatever the attribute: AWS's issuer OU is longer than the 64 characters
 * OpenSSL's string table allows for O and OU. */
static void name_add(X509_NAME *n, const char *field, const char *value)
{
    CHECK(X509_NAME_add_entry_by_txt(n, field, V_ASN1_UTF8STRING, (const unsigned char *)value, -1,
                                     -1, 0) == 1);
}

static GENERAL_NAME *ia5_name(int type, const char *text)
{
    GENERAL_NAME *g = GENERAL_NAME_new();
    ASN1_IA5STRING *s = ASN1_IA5STRING_new();
    ASN1_STRING_set(s, text, -1);
    GENERAL_NAME_set0_value(g, type, s);
    return g;
}

static GENERAL_NAME *ip_name(const char *text)
{
    GENERAL_NAME *g = GENERAL_NAME_new();
    GENERAL_NAME_set0_value(g, GEN_IPADD, a2i_IPADDRESS(text));
    return g;
}

static void add_alt_names(X509 *x)
{
    GENERAL_NAMES *san = sk_GENERAL_NAME_new_null();
    sk_GENERAL_NAME_push(san, ia5_name(GEN_DNS, "example.com"));
    sk_GENERAL_NAME_push(san, ia5_name(GEN_DNS, "second.example.com"));
    sk_GENERAL_NAME_push(san, ip_name("1.2.3.4"));
    sk_GENERAL_NAME_push(san, ip_name("2001:db8::1"));
    sk_GENERAL_NAME_push(san, ia5_name(GEN_URI, "ResourceIdentifier001"));
    sk_GENERAL_NAME_push(san, ia5_name(GEN_EMAIL, "device1@example.com"));
    X509_NAME *dir = X509_NAME_new();
    name_add(dir, "C", "US");
    name_add(dir, "O", "IoT");
    name_add(dir, "OU", "SmartHome");
    name_add(dir, "CN", "LightBulbCert");
    GENERAL_NAME *g = GENERAL_NAME_new();
    GENERAL_NAME_set0_value(g, GEN_DIRNAME, dir);
    sk_GENERAL_NAME_push(san, g);
    CHECK(X509_add1_ext_i2d(x, NID_subject_alt_name, san, 0, X509V3_ADD_DEFAULT) == 1);
    GENERAL_NAMES_free(san);

    GENERAL_NAMES *ian = sk_GENERAL_NAME_new_null();
    sk_GENERAL_NAME_push(ian, ia5_name(GEN_DNS, "issuer.com"));
    sk_GENERAL_NAME_push(ian, ip_name("5.6.7.8"));
    CHECK(X509_add1_ext_i2d(x, NID_issuer_alt_name, ian, 0, X509V3_ADD_DEFAULT) == 1);
    GENERAL_NAMES_free(ian);
}

/* The example certificate of DG use-policy-variables, with more values where §2.4 has rules. */
static X509 *make_cert(void)
{
    EVP_PKEY *key = NULL;
    struct iot_error err = {0};
    CHECK_INT(ca_generate_ec("P-256", &key, &err), IOT_OK);
    X509 *x = X509_new();
    X509_set_version(x, 2);
    BIGNUM *bn = NULL;
    BN_hex2bn(&bn, "921285cbb7a5e086");
    BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x));
    BN_free(bn);
    ASN1_TIME_set(X509_getm_notBefore(x), 1711423540); /* 2024-03-26T03:25:40Z */
    ASN1_TIME_set(X509_getm_notAfter(x), 1745810740);  /* 2025-04-28T03:25:40Z */
    X509_NAME *subject = X509_get_subject_name(x);
    name_add(subject, "C", "US");
    name_add(subject, "O", "IoT Devices");
    name_add(subject, "OU", "LightBulb");
    name_add(subject, "ST", "NY");
    name_add(subject, "L", "Brooklyn"); /* Locality is no AWS variable: ignored */
    static const char *const cns[] = {"first",  "second", "Administrator",
                                      "fourth", "fifth",  "sixth"};
    for (size_t i = 0; i < sizeof(cns) / sizeof(cns[0]); i++)
        name_add(subject, "CN", cns[i]);
    name_add(subject, "GN", "Bulb");
    name_add(subject, "initials", "ZZ");
    name_add(subject, "dnQualifier", "Bulb001");
    name_add(subject, "SN", "Multi Color");
    name_add(subject, "title", "RGB");
    name_add(subject, "pseudonym", "RGB Device");
    name_add(subject, "generationQualifier", "4");
    name_add(subject, "serialNumber", "123");
    X509_NAME *issuer = X509_get_issuer_name(x);
    name_add(issuer, "C", "US");
    name_add(issuer, "O", "Amazon Web Services O=Amazon.com Inc. L=Seattle ST=Washington C=US");
    name_add(issuer, "OU", "wild*card");
    name_add(issuer, "CN", "IoT Devices Primary CA");
    X509_set_pubkey(x, key);
    add_alt_names(x);
    CHECK(X509_sign(x, key, EVP_sha256()) > 0);
    EVP_PKEY_free(key);
    return x;
}

static void check_cert_values(const struct policy_context *ctx)
{
    CHECK_STR(policy_context_cert_get(ctx, "Subject.Country", 0), "US");
    CHECK_STR(policy_context_cert_get(ctx, "Subject.Organization", 0), "IoT Devices");
    CHECK_STR(policy_context_cert_get(ctx, "Subject.OrganizationalUnit", 0), "LightBulb");
    CHECK_STR(policy_context_cert_get(ctx, "Subject.State", 0), "NY");
    CHECK_STR(policy_context_cert_get(ctx, "Subject.CommonName", 0), "first");
    CHECK_STR(policy_context_cert_get(ctx, "Subject.CommonName", 4), "fifth");
    CHECK(policy_context_cert_get(ctx, "Subject.CommonName", 5) == NULL); /* arrays keep 5 */
    CHECK_STR(policy_context_cert_get(ctx, "iot:Certificate.Subject.GivenName", 0), "Bulb");
    CHECK_STR(policy_context_cert_get(ctx, "Subject.Initials", 0), "ZZ");
    CHECK_STR(policy_context_cert_get(ctx, "Subject.DistinguishedNameQualifier", 0), "Bulb001");
    CHECK_STR(policy_context_cert_get(ctx, "Subject.Surname", 0), "Multi Color");
    CHECK_STR(policy_context_cert_get(ctx, "Subject.Title", 0), "RGB");
    CHECK_STR(policy_context_cert_get(ctx, "Subject.Pseudonym", 0), "RGB Device");
    CHECK_STR(policy_context_cert_get(ctx, "Subject.GenerationQualifier", 0), "4");
    CHECK_STR(policy_context_cert_get(ctx, "Subject.SerialNumber", 0), "123");
    CHECK_STR(policy_context_cert_get(ctx, "Issuer.Organization", 0),
              "Amazon Web Services O\\=Amazon.com Inc. L\\=Seattle ST\\=Washington C\\=US");
    CHECK_STR(policy_context_cert_get(ctx, "Issuer.CommonName", 0), "IoT Devices Primary CA");
    CHECK_STR(policy_context_cert_get(ctx, "Subject.AlternativeName.DNSName", 1),
              "second.example.com");
    CHECK_STR(policy_context_cert_get(ctx, "Subject.AlternativeName.IPAddress", 0), "1.2.3.4");
    CHECK_STR(policy_context_cert_get(ctx, "Subject.AlternativeName.IPAddress", 1), "2001:db8::1");
    CHECK_STR(policy_context_cert_get(ctx, "Subject.AlternativeName.UniformResourceIdentifier", 0),
              "ResourceIdentifier001");
    CHECK_STR(policy_context_cert_get(ctx, "Subject.AlternativeName.RFC822Name", 0),
              "device1@example.com");
    CHECK_STR(policy_context_cert_get(ctx, "Subject.AlternativeName.DirectoryName", 0),
              "cn=LightBulbCert,ou=SmartHome,o=IoT,c=US");
    CHECK_STR(policy_context_cert_get(ctx, "Issuer.AlternativeName.DNSName", 0), "issuer.com");
    CHECK_STR(policy_context_cert_get(ctx, "Issuer.AlternativeName.IPAddress", 0), "5.6.7.8");
    CHECK_STR(policy_context_cert_get(ctx, "SerialNumber", 0), "10525622389124227206");
    CHECK(policy_context_cert_get(ctx, "Subject.Locality", 0) == NULL);
    time_t nb = 0, na = 0;
    CHECK(policy_context_cert_validity(ctx, &nb, &na));
    CHECK_INT(nb, 1711423540);
    CHECK_INT(na, 1745810740);
}

static void check_cert_decisions(X509 *x, const struct policy_context *ctx)
{
    char id[CA_ID_LEN + 1];
    CHECK_INT(ca_cert_id(x, id), IOT_OK);
    char doc[2048];
    snprintf(
        doc, sizeof(doc),
        "{'Version':'2012-10-17','Statement':["
        "{'Effect':'Allow','Action':'iot:Connect','Resource':'%sclient/${iot:Certificate."
        "SerialNumber}'},"
        "{'Effect':'Allow','Action':'iot:Publish','Resource':["
        "'%stopic/${iot:Certificate.Subject.CommonName.2}/${iot:CertificateId}',"
        "'%stopic/o/${iot:Certificate.Issuer.OrganizationalUnit}',"
        "'%stopic/san/${iot:Certificate.Subject.AlternativeName.DNSName.1}']},"
        "{'Effect':'Allow','Action':'iot:Subscribe','Resource':'*','Condition':{"
        "'ForAnyValue:StringEquals':{'iot:Certificate.Subject.CommonName.List':'Administrator',"
        "'iot:Certificate.AvailableKeys':'iot:Certificate.Issuer.AlternativeName.IPAddress'},"
        "'ForAllValues:StringNotEquals':{'iot:Certificate.Subject.CommonName.List':'sixth'}}}]}",
        ARN_PREFIX, ARN_PREFIX, ARN_PREFIX, ARN_PREFIX);
    for (char *c = doc; *c; c++)
        *c = *c == '\'' ? '"' : *c;
    struct policy *p = must_compile("cert", doc);
    struct policy_context c = *ctx;
    c.client_id = "10525622389124227206";
    char topic[128];
    snprintf(topic, sizeof(topic), "Administrator/%s", id);
    CHECK_INT(decide(&p, 1, &c, POLICY_ACTION_CONNECT, c.client_id, NULL), POLICY_ALLOW);
    CHECK_INT(decide(&p, 1, &c, POLICY_ACTION_CONNECT, "921285cbb7a5e086", NULL),
              POLICY_DENY_IMPLICIT);
    CHECK_INT(decide(&p, 1, &c, POLICY_ACTION_PUBLISH, topic, NULL), POLICY_ALLOW);
    CHECK_INT(decide(&p, 1, &c, POLICY_ACTION_PUBLISH, "san/second.example.com", NULL),
              POLICY_ALLOW);
    /* "wild*card" holds a wildcard character: never substituted (§2.4). */
    CHECK_INT(decide(&p, 1, &c, POLICY_ACTION_PUBLISH, "o/wild*card", NULL), POLICY_DENY_IMPLICIT);
    CHECK_INT(decide(&p, 1, &c, POLICY_ACTION_PUBLISH,
                     "o/${iot:Certificate.Issuer.OrganizationalUnit}", NULL),
              POLICY_ALLOW);
    /* "sixth" was the sixth CN: dropped, so ForAllValues:StringNotEquals holds. */
    CHECK_INT(decide(&p, 1, &c, POLICY_ACTION_SUBSCRIBE, "any", NULL), POLICY_ALLOW);
    policy_free(p);
}

static void test_certificate(void)
{
    X509 *x = make_cert();
    struct policy_context ctx;
    struct iot_error err = {0};
    policy_context_init(&ctx);
    ctx.region = REGION;
    ctx.account = ACCOUNT;
    CHECK_INT(policy_context_from_cert(&ctx, x, &err), IOT_OK);
    check_cert_values(&ctx);
    check_cert_decisions(x, &ctx);
    /* Reading again replaces, never appends. */
    CHECK_INT(policy_context_from_cert(&ctx, x, &err), IOT_OK);
    CHECK_STR(policy_context_cert_get(&ctx, "Subject.CommonName", 0), "first");
    CHECK(policy_context_cert_get(&ctx, "Subject.CommonName", 5) == NULL);
    CHECK_INT(policy_context_from_cert(&ctx, NULL, &err), IOT_ERR_INVALID_REQUEST);
    CHECK_INT(policy_context_cert_add(&ctx, "Subject.Nickname", "x", &err),
              IOT_ERR_INVALID_REQUEST);
    CHECK_INT(policy_context_cert_add(&ctx, "Subject.Organization", "a;b<c>", &err), IOT_OK);
    CHECK_STR(policy_context_cert_get(&ctx, "Subject.Organization", 1), "a\\;b\\<c\\>");
    policy_context_cleanup(&ctx);
    CHECK(ctx.cert == NULL);
    policy_context_cleanup(NULL);
    X509_free(x);
}

/* ---- cost ----------------------------------------------------------------------------------- */

static void test_cost(void)
{
    enum { UNRELATED = 300 };
    static struct policy *many[UNRELATED + 1];
    char doc[512];
    for (int i = 0; i < UNRELATED; i++) {
        snprintf(doc, sizeof(doc),
                 "{\"Version\":\"2012-10-17\",\"Statement\":[{\"Effect\":\"Allow\",\"Action\":"
                 "\"iot:Connect\",\"Resource\":\"*\"},{\"Effect\":\"Deny\",\"Action\":\"iot:"
                 "Connect\",\"Resource\":\"%sclient/bad-%d\"}]}",
                 ARN_PREFIX, i);
        char name[32];
        snprintf(name, sizeof(name), "unrelated-%d", i);
        many[i] = must_compile(name, doc);
    }
    struct policy *dev =
        must_compile("dev", "{\"Version\":\"2012-10-17\",\"Statement\":["
                            "{\"Effect\":\"Allow\",\"Action\":\"iot:Publish\",\"Resource\":\"*\"},"
                            "{\"Effect\":\"Allow\",\"Action\":\"iot:Receive\",\"Resource\":\"*\"},"
                            "{\"Effect\":\"Allow\",\"Action\":[\"iot:Publish\",\"iot:Subscribe\"],"
                            "\"Resource\":\"*\"}]}");
    struct policy_context ctx;
    policy_context_init(&ctx);
    ctx.region = REGION;
    ctx.account = ACCOUNT;
    struct policy_decision d;

    /* Only the policies passed in are looked at, and only their statements for the action. */
    CHECK_INT(decide(&dev, 1, &ctx, POLICY_ACTION_PUBLISH, "t", &d), POLICY_ALLOW);
    CHECK_INT(d.statements_evaluated, 2);
    CHECK_INT(decide(&dev, 1, &ctx, POLICY_ACTION_RECEIVE, "t", &d), POLICY_ALLOW);
    CHECK_INT(d.statements_evaluated, 1);
    /* Hundreds of policies with nothing for Publish cost nothing for a Publish. */
    many[UNRELATED] = dev;
    CHECK_INT(decide(many, UNRELATED + 1, &ctx, POLICY_ACTION_PUBLISH, "t", &d), POLICY_ALLOW);
    CHECK_INT(d.statements_evaluated, 2);
    CHECK_INT(decide(many, UNRELATED, &ctx, POLICY_ACTION_PUBLISH, "t", &d), POLICY_DENY_IMPLICIT);
    CHECK_INT(d.statements_evaluated, 0);
    /* A Connect looks at every Connect statement until a Deny ends it. */
    CHECK_INT(decide(many, UNRELATED, &ctx, POLICY_ACTION_CONNECT, "ok", &d), POLICY_ALLOW);
    CHECK_INT(d.statements_evaluated, 2 * UNRELATED);
    CHECK_INT(decide(many, UNRELATED, &ctx, POLICY_ACTION_CONNECT, "bad-0", &d),
              POLICY_DENY_EXPLICIT);
    CHECK_INT(d.statements_evaluated, 2);
    CHECK_STR(d.policy, "unrelated-0");
    CHECK_INT(d.statement, 1);
    for (int i = 0; i < UNRELATED; i++)
        policy_free(many[i]);
    policy_free(dev);
}

/* ---- explanations and arguments ---------------------------------------------------------------
 */

static void test_explanation(void)
{
    struct policy *p = must_compile(
        "thing-policy",
        "{\"Version\":\"2012-10-17\",\"Statement\":["
        "{\"Sid\":\"own\",\"Effect\":\"Allow\",\"Action\":\"iot:Publish\",\"Resource\":"
        "\"" ARN_PREFIX "topic/${iot:Connection.Thing.ThingName}/*\"},"
        "{\"Sid\":\"locked\",\"Effect\":\"Deny\",\"Action\":\"iot:Publish\",\"Resource\":\"*\","
        "\"Condition\":{\"StringEquals\":{\"iot:Connection.Thing.Attributes[locked]\":\"yes\"}}}]"
        "}");
    struct policy *q = must_compile("other", "{\"Version\":\"2012-10-17\",\"Statement\":{"
                                             "\"Effect\":\"Allow\",\"Action\":\"iot:Connect\","
                                             "\"Resource\":\"*\"}}");
    struct policy *both[] = {q, p};
    struct policy_attr attrs[] = {{"locked", "no"}};
    struct policy_context ctx;
    policy_context_init(&ctx);
    ctx.region = REGION;
    ctx.account = ACCOUNT;
    ctx.client_id = "lamp-1";
    ctx.thing_associated = true;
    ctx.thing_name = "lamp-1";
    ctx.thing_attributes = attrs;
    ctx.n_thing_attributes = 1;
    struct policy_decision d;

    CHECK_INT(decide(both, 2, &ctx, POLICY_ACTION_PUBLISH, "lamp-1/x", &d), POLICY_ALLOW);
    CHECK(contains(d.explanation, "ALLOW iot:Publish " ARN_PREFIX "topic/lamp-1/x"));
    CHECK(contains(d.explanation, "allowed by policy thing-policy statement 0 (Sid own)"));
    CHECK(contains(d.explanation, "policies considered: other, thing-policy"));
    CHECK(contains(d.explanation, "iot:Connection.Thing.ThingName=\"lamp-1\""));
    CHECK(contains(d.explanation, "iot:Connection.Thing.Attributes[locked]=\"no\""));
    CHECK_INT(decide(both, 2, &ctx, POLICY_ACTION_PUBLISH, "lamp-2/x", &d), POLICY_DENY_IMPLICIT);
    CHECK(contains(d.explanation, "no statement allowed it"));
    attrs[0].value = "yes";
    CHECK_INT(decide(both, 2, &ctx, POLICY_ACTION_PUBLISH, "lamp-1/x", &d), POLICY_DENY_EXPLICIT);
    CHECK(contains(d.explanation, "denied by policy thing-policy statement 1 (Sid locked)"));
    ctx.thing_associated = false;
    CHECK_INT(decide(both, 2, &ctx, POLICY_ACTION_PUBLISH, "lamp-1/x", &d), POLICY_DENY_IMPLICIT);
    CHECK(contains(d.explanation, "iot:Connection.Thing.ThingName=(absent)"));
    CHECK_INT(decide(NULL, 0, &ctx, POLICY_ACTION_PUBLISH, "x", &d), POLICY_DENY_IMPLICIT);
    CHECK(contains(d.explanation, "policies considered: none"));

    /* A long resource is cut, and the line still ends inside the buffer with "...". */
    char longtopic[POLICY_EXPLANATION_MAX * 2];
    memset(longtopic, 'x', sizeof(longtopic) - 1);
    longtopic[sizeof(longtopic) - 1] = '\0';
    enum { LONG_NAMES = 8 };
    struct policy *names[LONG_NAMES];
    char name[POLICY_NAME_MAX + 1];
    for (size_t i = 0; i < LONG_NAMES; i++) {
        memset(name, (int)('a' + i), POLICY_NAME_MAX);
        name[POLICY_NAME_MAX] = '\0';
        names[i] = must_compile(name, "{\"Version\":\"2012-10-17\",\"Statement\":{\"Effect\":"
                                      "\"Allow\",\"Action\":\"iot:Connect\",\"Resource\":\"*\"}}");
    }
    decide(names, LONG_NAMES, &ctx, POLICY_ACTION_CONNECT, longtopic, &d);
    size_t len = strnlen(d.explanation, sizeof(d.explanation));
    CHECK(len == sizeof(d.explanation) - 1);
    CHECK(strcmp(d.explanation + len - 3, "...") == 0);
    for (size_t i = 0; i < LONG_NAMES; i++)
        policy_free(names[i]);

    /* Arguments. */
    CHECK_INT(policy_evaluate(NULL, 0, &ctx, POLICY_ACTION_COUNT, "x", 1, &d),
              IOT_ERR_INVALID_REQUEST);
    CHECK_INT(d.effect, POLICY_DENY_IMPLICIT);
    const struct policy *with_null[] = {NULL, q};
    CHECK_INT(policy_evaluate(with_null, 2, NULL, POLICY_ACTION_CONNECT, "x", 1, &d), IOT_OK);
    CHECK_INT(d.effect, POLICY_ALLOW);
    CHECK_STR(d.policy, "other");
    policy_free(p);
    policy_free(q);
}

/* ---- the glob against a naive reference ---------------------------------------------------- */

static unsigned rng_state = 12345;

static unsigned rnd(unsigned n)
{
    rng_state = rng_state * 1103515245u + 12345u;
    return (rng_state >> 16) % n;
}

/* Plain recursive IAM glob: * any run (`:` too), ? one character. */
static bool ref_glob(const char *p, const char *s)
{
    if (*p == '\0')
        return *s == '\0';
    if (*p == '*')
        return ref_glob(p + 1, s) || (*s && ref_glob(p, s + 1));
    return *s && (*p == '?' || *p == *s) && ref_glob(p + 1, s + 1);
}

/* IAM Arn*: six `:`-separated fields (the last takes the rest), each globbed alone. */
static bool ref_arn(const char *p, const char *s)
{
    char pf[6][64], sf[6][64];
    const char *srcs[2] = {p, s};
    char(*dst[2])[64] = {pf, sf};
    for (int k = 0; k < 2; k++) {
        const char *q = srcs[k];
        for (int f = 0; f < 6; f++) {
            const char *colon = f < 5 ? strchr(q, ':') : NULL;
            if (f < 5 && colon == NULL)
                return false;
            size_t n = colon ? (size_t)(colon - q) : strlen(q);
            snprintf(dst[k][f], 64, "%.*s", (int)n, q);
            q = colon ? colon + 1 : q + n;
        }
    }
    for (int f = 0; f < 6; f++)
        if (!ref_glob(pf[f], sf[f]))
            return false;
    return true;
}

static void random_text(char *out, size_t max, const char *alphabet)
{
    size_t n = rnd((unsigned)max), k = strlen(alphabet);
    for (size_t i = 0; i < n; i++)
        out[i] = alphabet[rnd((unsigned)k)];
    out[n] = '\0';
}

static void test_glob_reference(void)
{
    int mismatches = 0;
    struct policy_context ctx;
    policy_context_init(&ctx);
    for (int round = 0; round < 3000 && mismatches < 5; round++) {
        char pat[16], subject[16], doc[256], res[64];
        random_text(pat, 10, "ab:/*?");
        random_text(subject, 10, "ab:/");
        snprintf(doc, sizeof(doc),
                 "{\"Version\":\"2012-10-17\",\"Statement\":{\"Effect\":\"Allow\",\"Action\":"
                 "\"iot:Publish\",\"Resource\":\"arn:%s\"}}",
                 pat);
        struct policy *p = must_compile("g", doc);
        snprintf(res, sizeof(res), "arn:%s", subject);
        struct policy_decision d;
        policy_evaluate((const struct policy *const *)&p, 1, &ctx, POLICY_ACTION_PUBLISH, res,
                        strlen(res), &d);
        bool want = ref_glob(pat, subject);
        if ((d.effect == POLICY_ALLOW) != want) {
            mismatches++;
            fprintf(stderr, "  glob %s over %s: got %d, want %d\n", pat, subject,
                    d.effect == POLICY_ALLOW, want);
        }
        policy_free(p);

        /* ArnLike on iot:LastWillTopic, whose ARN gets its colons from the region. */
        char region[16], topic[16];
        random_text(region, 6, "a:");
        random_text(topic, 6, "ab:/");
        random_text(pat, 14, "ab:/*?");
        char will[128], arnpat[64];
        snprintf(arnpat, sizeof(arnpat), "arn:aws:%s", pat);
        snprintf(doc, sizeof(doc),
                 "{\"Version\":\"2012-10-17\",\"Statement\":{\"Effect\":\"Allow\",\"Action\":"
                 "\"iot:Connect\",\"Resource\":\"*\",\"Condition\":{\"ArnLike\":{"
                 "\"iot:LastWillTopic\":\"%s\"}}}}",
                 arnpat);
        p = must_compile("a", doc);
        ctx.region = region;
        ctx.account = "1";
        ctx.last_will_topic = topic;
        snprintf(will, sizeof(will), "arn:aws:iot:%s:1:topic/%s", region, topic);
        policy_evaluate((const struct policy *const *)&p, 1, &ctx, POLICY_ACTION_CONNECT, "x", 1,
                        &d);
        want = ref_arn(arnpat, will);
        if ((d.effect == POLICY_ALLOW) != want) {
            mismatches++;
            fprintf(stderr, "  ArnLike %s over %s: got %d, want %d\n", arnpat, will,
                    d.effect == POLICY_ALLOW, want);
        }
        policy_free(p);
    }
    CHECK_INT(mismatches, 0);
}

/* Whether DOC's decisions can change with the time alone (-1: it does not compile). */
static int varies(const char *doc)
{
    struct policy *p = NULL;
    if (policy_compile("t", doc, strlen(doc), &p, NULL) != IOT_OK)
        return -1;
    int v = policy_varies_with_time(p);
    policy_free(p);
    return v;
}

static void test_varies_with_time(void)
{
    CHECK_INT(varies("{\"Version\":\"2012-10-17\",\"Statement\":{\"Effect\":\"Allow\","
                     "\"Action\":\"iot:Publish\",\"Resource\":\"arn:aws:iot:*:*:topic/"
                     "${iot:ClientId}\"}}"),
              0);
    CHECK_INT(varies("{\"Version\":\"2012-10-17\",\"Statement\":{\"Effect\":\"Allow\","
                     "\"Action\":\"iot:Publish\",\"Resource\":\"*\",\"Condition\":"
                     "{\"DateLessThan\":{\"aws:CurrentTime\":\"2030-01-01T00:00:00Z\"}}}}"),
              1);
    CHECK_INT(varies("{\"Version\":\"2012-10-17\",\"Statement\":[{\"Effect\":\"Deny\","
                     "\"Action\":\"iot:Receive\",\"Resource\":\"*\"},{\"Effect\":"
                     "\"Allow\",\"Action\":\"iot:*\",\"Resource\":\"*\",\"Condition\":"
                     "{\"NumericGreaterThan\":{\"aws:EpochTime\":\"1\"}}}]}"),
              1);
    CHECK(!policy_varies_with_time(NULL));
}

int main(void)
{
    test_vectors();
    test_varies_with_time();
    test_compile_limits();
    test_arns();
    test_reserved();
    test_certificate();
    test_cost();
    test_explanation();
    test_glob_reference();
    return check_summary();
}
