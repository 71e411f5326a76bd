/* Unit tests for emulator/template.c (shared/spec/provisioning.md §2): parse-time refusals,
 * intrinsic functions and parameters as tables, then apply against an in-memory registry.
 *
 * Template bodies are written with ' for " to stay readable; q() swaps them back. */
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "check.h"
#include "template.h"

#define CERT "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define CERT2 "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210"

/* S with every ' turned into "; returns a buffer reused by the next call. */
static const char *q(const char *s)
{
    static char buf[16384];
    size_t n = strlen(s);
    if (n >= sizeof(buf))
        n = sizeof(buf) - 1;
    for (size_t i = 0; i < n; i++)
        buf[i] = s[i] == '\'' ? '"' : s[i];
    buf[n] = '\0';
    return buf;
}

static struct template *parse_ok(const char *body_q)
{
    struct template *t = NULL;
    struct iot_error err = {0};
    const char *body = q(body_q);
    enum iot_err rc = template_parse(body, strlen(body), &t, &err);
    CHECK_STR(iot_err_name(rc), "IOT_OK");
    if (rc != IOT_OK)
        fprintf(stderr, "  parse: %s\n", err.message);
    return t;
}

static cJSON *params_of(const char *json_q)
{
    return json_q ? cJSON_Parse(q(json_q)) : NULL;
}

static bool contains(const char *haystack, const char *needle)
{
    bool ok = strstr(haystack, needle) != NULL;
    if (!ok)
        fprintf(stderr, "  message \"%s\" lacks \"%s\"\n", haystack, needle);
    return ok;
}

/* ---- names and limits ------------------------------------------------------------------ */

static void test_names(void)
{
    static const struct {
        const char *name;
        int valid;
    } cases[] = {
        {"", 0},
        {"has space", 0},
        {"dot.ted", 0},
        {"abcdefghijabcdefghijabcdefghijabcdefg", 0}, /* 37 */
        {"abcdefghijabcdefghijabcdefghijabcdef", 1},  /* 36 */
        {"fleet-default", 1},
        {"My_Template-2", 1},
    };
    CHECK_INT(template_name_valid(NULL), 0);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        CHECK_INT(template_name_valid(cases[i].name), cases[i].valid);
}

/* A body of exactly N characters: {"DeviceConfiguration":{"v":"aaa..."}} padded with C (a
 * one- or multi-byte character). */
static char *body_of_chars(size_t n, const char *c)
{
    const char *head = "{\"DeviceConfiguration\":{\"v\":\"", *tail = "\"}}";
    size_t pad = n - strlen(head) - strlen(tail), clen = strlen(c);
    char *b = malloc(strlen(head) + pad * clen + strlen(tail) + 1), *p = b;
    p += sprintf(p, "%s", head);
    for (size_t i = 0; i < pad; i++, p += clen)
        memcpy(p, c, clen);
    sprintf(p, "%s", tail);
    return b;
}

static void test_body_limit(void)
{
    struct template *t = NULL;
    struct iot_error err = {0};
    char *body = body_of_chars(TEMPLATE_BODY_MAX + 1, "a");
    CHECK_INT(template_parse(body, strlen(body), &t, &err), IOT_ERR_INVALID_REQUEST);
    CHECK(t == NULL);
    CHECK(contains(err.message, "10240"));
    free(body);

    body = body_of_chars(TEMPLATE_BODY_MAX, "a");
    CHECK_INT(template_parse(body, strlen(body), &t, &err), IOT_OK);
    template_free(t);
    free(body);

    /* The limit counts characters, not bytes: 10240 characters, some of them two bytes. */
    body = body_of_chars(TEMPLATE_BODY_MAX, "\xc3\xa9");
    CHECK(strlen(body) > TEMPLATE_BODY_MAX);
    CHECK_INT(template_parse(body, strlen(body), &t, &err), IOT_OK);
    template_free(t);
    free(body);
}

/* ---- parse-time refusals --------------------------------------------------------------- */

#define THING_R "'thing':{'Type':'AWS::IoT::Thing','Properties':{'ThingName':'t1'}}"

static void test_parse_rejects(void)
{
    static const struct {
        const char *body;
        const char *message; /* a part of the expected message */
    } cases[] = {
        {"", "not a valid JSON object"},
        {"{", "not a valid JSON object"},
        {"[]", "not a valid JSON object"},
        {"'text'", "not a valid JSON object"},
        {"{} {}", "not a valid JSON object"},
        {"{'Resources':{}} x", "not a valid JSON object"},
        {"{'Conditions':{}}", "Conditions section is not supported"},
        {"{'Outputs':{}}", "Unknown template section Outputs"},
        {"{'Parameters':[]}", "Parameters must be an object"},
        {"{'Parameters':{'A':{}}}", "Parameter A must be an object with a Type"},
        {"{'Parameters':{'A':{'Type':'String','Default':5}}}", "Default of parameter A"},
        {"{'Parameters':{'A':{'Type':'String','AllowedValues':['x']}}}", "unsupported key"},
        {"{'Mappings':{'M':{'k':{'v':{'Ref':'A'}}}}}", "Mappings may not contain intrinsic"},
        {"{'Mappings':{'M':{'k':{'Ref':'A'}}}}", "Mappings may not contain intrinsic"},
        {"{'Mappings':{'M':{'k':{'v':['a',{'Fn::Join':['',[]]}]}}}}",
         "Mappings may not contain intrinsic"},
        {"{'Mappings':{'M':{'k':'flat'}}}", "Mappings must be MapName"},
        {"{'Resources':[]}", "Resources must be an object"},
        {"{'Resources':{'w':{'Type':'AWS::IoT::Widget','Properties':{}}}}",
         "unsupported Type AWS::IoT::Widget"},
        {"{'Resources':{'w':{'Properties':{}}}}", "unsupported Type (none)"},
        {"{'Resources':{'thing':{'Type':'AWS::IoT::Thing'}}}", "needs a Properties object"},
        {"{'Resources':{'thing':{'Type':'AWS::IoT::Thing','Properties':{}}}}", "needs a ThingName"},
        {"{'Resources':{'thing':{'Type':'AWS::IoT::Thing','Condition':'c','Properties':{}}}}",
         "conditions are not supported"},
        {"{'Resources':{'thing':{'Type':'AWS::IoT::Thing','DependsOn':'x','Properties':{}}}}",
         "unsupported key DependsOn"},
        {"{'Resources':{'thing':{'Type':'AWS::IoT::Thing','Properties':{'ThingName':'t',"
         "'BillingGroup':'b'}}}}",
         "unsupported property BillingGroup"},
        {"{'Resources':{" THING_R ",'t2':{'Type':'AWS::IoT::Thing','Properties':{'ThingName':"
         "'t2'}}}}",
         "only one AWS::IoT::Thing"},
        {"{'Resources':{'thing':{'Type':'AWS::IoT::Thing','Properties':{'ThingName':'t',"
         "'AttributePayload':{'a':{'b':'c'}}}}}}",
         "Attribute a of resource thing must be a string"},
        {"{'Resources':{'thing':{'Type':'AWS::IoT::Thing','Properties':{'ThingName':'t',"
         "'AttributePayload':{'attributes':{},'merge':true}}}}}",
         "Attribute attributes of resource thing"},
        {"{'Resources':{'thing':{'Type':'AWS::IoT::Thing','Properties':{'ThingName':'t',"
         "'ThingGroups':'g1'}}}}",
         "must be a list of group names"},
        {"{'Resources':{'c':{'Type':'AWS::IoT::Certificate','Properties':{}}}}",
         "needs a CertificateId"},
        {"{'Resources':{'c':{'Type':'AWS::IoT::Certificate','Properties':{'CertificateId':"
         "'x','Status':'PENDING'}}}}",
         "must be ACTIVE or INACTIVE, not PENDING"},
        {"{'Resources':{'c':{'Type':'AWS::IoT::Certificate','Properties':{'CertificatePem':"
         "'x'}}}}",
         "unsupported property CertificatePem"},
        {"{'Resources':{'p':{'Type':'AWS::IoT::Policy','Properties':{}}}}",
         "exactly one of PolicyName and PolicyDocument"},
        {"{'Resources':{'p':{'Type':'AWS::IoT::Policy','Properties':{'PolicyName':'a',"
         "'PolicyDocument':{}}}}}",
         "exactly one of PolicyName and PolicyDocument"},
        {"{'Resources':{'p':{'Type':'AWS::IoT::Policy','Properties':{'PolicyDocument':"
         "'not json'}}}}",
         "PolicyDocument of resource p must be a JSON object"},
        {"{'Resources':{'p':{'Type':'AWS::IoT::Policy','Properties':{'PolicyDocument':"
         "'[1]'}}}}",
         "PolicyDocument of resource p must be a JSON object"},
        {"{'Resources':{'p':{'Type':'AWS::IoT::Policy','Properties':{'PolicyDocument':"
         "7}}}}",
         "PolicyDocument of resource p must be a JSON object"},
        {"{'Resources':{'p':{'Type':'AWS::IoT::Policy','OverrideSettings':{},"
         "'Properties':{'PolicyName':'a'}}}}",
         "OverrideSettings are not available for policies"},
        {"{'Resources':{'thing':{'Type':'AWS::IoT::Thing','OverrideSettings':{'ThingTypeName':"
         "'MERGE'},'Properties':{'ThingName':'t'}}}}",
         "MERGE is only available"},
        {"{'Resources':{'c':{'Type':'AWS::IoT::Certificate','OverrideSettings':{'Status':"
         "'MERGE'},'Properties':{'CertificateId':'x'}}}}",
         "MERGE is only available"},
        {"{'Resources':{'thing':{'Type':'AWS::IoT::Thing','OverrideSettings':{'ThingName':"
         "'REPLACE'},'Properties':{'ThingName':'t'}}}}",
         "unsupported OverrideSettings key ThingName"},
        {"{'Resources':{'thing':{'Type':'AWS::IoT::Thing','OverrideSettings':{'ThingGroups':"
         "'OVERWRITE'},'Properties':{'ThingName':'t'}}}}",
         "must be DO_NOTHING, REPLACE, FAIL or MERGE"},
        {"{'DeviceConfiguration':[]}", "DeviceConfiguration must be an object"},
        {"{'DeviceConfiguration':{'v':{'Fn::If':['c','a','b']}}}",
         "Unsupported intrinsic function Fn::If in DeviceConfiguration"},
        {"{'DeviceConfiguration':{'v':{'Fn::Join':['',[{'Fn::Equals':['a','b']}]]}}}",
         "Unsupported intrinsic function Fn::Equals"},
        {"{'Resources':{'thing':{'Type':'AWS::IoT::Thing','Properties':{'ThingName':"
         "{'Fn::GetAtt':['a','b']}}}}}",
         "Unsupported intrinsic function Fn::GetAtt in resource thing"},
        {"{'DeviceConfiguration':{'v':{'Ref':'A','x':1}}}", "must be the only key"},
        {"{'DeviceConfiguration':{'v':{'Ref':5}}}", "Ref in DeviceConfiguration must name"},
        {"{'DeviceConfiguration':{'v':{'Fn::Join':['-']}}}", "takes a list of 2 values"},
        {"{'DeviceConfiguration':{'v':{'Fn::Join':[1,['a']]}}}", "delimiter"},
        {"{'DeviceConfiguration':{'v':{'Fn::Join':['-','a']}}}", "needs a list"},
        {"{'DeviceConfiguration':{'v':{'Fn::Select':[-1,['a']]}}}", "non-negative integer"},
        {"{'DeviceConfiguration':{'v':{'Fn::Select':['one',['a']]}}}", "non-negative integer"},
        {"{'DeviceConfiguration':{'v':{'Fn::Select':[1.5,['a']]}}}", "non-negative integer"},
        {"{'DeviceConfiguration':{'v':{'Fn::Split':['','abc']}}}", "non-empty string"},
        {"{'DeviceConfiguration':{'v':{'Fn::FindInMap':['M','k']}}}", "takes a list of 3"},
        {"{'DeviceConfiguration':{'v':{'Fn::FindInMap':['M','k',['x']]}}}", "map name and two"},
        {"{'DeviceConfiguration':{'v':{'Fn::Sub':'a ${Name'}}}", "without its closing"},
        {"{'DeviceConfiguration':{'v':{'Fn::Sub':'a ${}'}}}", "empty ${}"},
        {"{'DeviceConfiguration':{'v':{'Fn::Sub':['x']}}}", "takes a string, or a list"},
        {"{'DeviceConfiguration':{'v':{'Fn::Sub':['${A}',{'A':{'Fn::If':[]}}]}}}",
         "Unsupported intrinsic function Fn::If"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct template *t = (struct template *)&t;
        struct iot_error err = {0};
        const char *body = q(cases[i].body);
        enum iot_err rc = template_parse(body, strlen(body), &t, &err);
        if (rc != IOT_ERR_INVALID_REQUEST)
            fprintf(stderr, "  parse case %zu: %s\n", i, cases[i].body);
        CHECK_STR(iot_err_name(rc), "IOT_ERR_INVALID_REQUEST");
        CHECK(t == NULL);
        CHECK(contains(err.message, cases[i].message));
        template_free(rc == IOT_OK ? t : NULL);
    }
}

/* ---- intrinsic functions and parameters ------------------------------------------------ */

#define PARAMS_DECL                                                                                \
    "'Parameters':{'SerialNumber':{'Type':'String'},'Location':{'Type':'String','Default':'WA'},"  \
    "'Region':{'Type':'String','Default':'us-east-1'},'Missing':{'Type':'String'}},"
#define MAPPINGS                                                                                   \
    "'Mappings':{'LocationTable':{'Seattle':{'Url':'https://example.aws','Port':8883,"             \
    "'Zones':['a','b']},'WA':{'Url':'https://wa.example'}}},"
#define DEVICE_PARAMS                                                                              \
    "{'SerialNumber':'abc-123-xyz','Location':'Seattle','AWS::IoT::Certificate::Id':'" CERT "'}"

/* Renders {"v": EXPR} as DeviceConfiguration under the parameters and mappings above. */
static enum iot_err render_value(const char *expr_q, const char *params_q, char *out, size_t n,
                                 struct iot_error *err)
{
    char body[4096];
    snprintf(body, sizeof(body), "{" PARAMS_DECL MAPPINGS "'DeviceConfiguration':{'v':%s}}",
             expr_q);
    struct template *t = parse_ok(body);
    struct template_plan *p = (struct template_plan *)&p;
    cJSON *params = params_of(params_q);
    enum iot_err rc = t ? template_render(t, params, &p, err) : IOT_ERR_INTERNAL;
    if (rc == IOT_OK) {
        const cJSON *v =
            cJSON_GetObjectItemCaseSensitive(template_plan_device_configuration(p), "v");
        snprintf(out, n, "%s", cJSON_IsString(v) ? v->valuestring : "(not a string)");
        template_plan_free(p);
    } else {
        CHECK(p == NULL);
    }
    cJSON_Delete(params);
    template_free(t);
    return rc;
}

static void test_render_errors(void)
{
    static const struct {
        const char *expr;
        const char *message;
    } cases[] = {
        {"{'Ref':'Missing'}", "Parameter Missing has no value and no Default"},
        {"{'Ref':'Undeclared'}", "Parameter Undeclared has no value and no Default"},
        {"{'Fn::Sub':'x-${Missing}'}", "Parameter Missing has no value and no Default"},
        {"{'Fn::Join':['-',['a',{'Ref':'Missing'}]]}", "Parameter Missing has no value"},
        {"{'Fn::Select':[3,['a','b','c']]}",
         "Fn::Select index 3 is out of range for a list of 3 values"},
        {"{'Fn::Select':['1',['a']]}", "Fn::Select index 1 is out of range for a list of 1"},
        {"{'Fn::Select':[0,[]]}", "Fn::Select index 0 is out of range for a list of 0"},
        {"{'Fn::Select':[{'Ref':'Location'},['a']]}", "index must be a non-negative integer"},
        {"{'Fn::Select':[5,{'Fn::Split':['-',{'Ref':'SerialNumber'}]}]}",
         "index 5 is out of range for a list of 3"},
        {"{'Fn::Select':[0,{'Ref':'SerialNumber'}]}", "must evaluate to a list"},
        {"{'Fn::FindInMap':['LocationTable',{'Ref':'Location'},'Nope']}",
         "Fn::FindInMap found no value for [LocationTable, Seattle, Nope] in Mappings"},
        {"{'Fn::FindInMap':['LocationTable','Tokyo','Url']}", "[LocationTable, Tokyo, Url]"},
        {"{'Fn::FindInMap':['NoMap','Seattle','Url']}", "[NoMap, Seattle, Url]"},
        {"{'Fn::FindInMap':['LocationTable','Seattle','Zones']}", "must evaluate to a string"},
        {"{'Fn::Join':['-',[['nested']]]}", "Each Fn::Join value must evaluate to a string"},
        {"{'Fn::Join':['-',[{'a':'b'}]]}", "Each Fn::Join value must evaluate to a string"},
        {"{'Fn::Split':['-',{'Fn::FindInMap':['LocationTable','Seattle','Zones']}]}",
         "Fn::Split source must evaluate to a string"},
        {"{'a':'b'}", "DeviceConfiguration value v (nested objects and lists are not supported)"},
        {"['a','b']", "DeviceConfiguration value v"},
        {"{'Fn::Split':['-','a-b']}", "DeviceConfiguration value v"},
        {"null", "DeviceConfiguration value v"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char out[256] = "";
        struct iot_error err = {0};
        enum iot_err rc = render_value(cases[i].expr, DEVICE_PARAMS, out, sizeof(out), &err);
        if (rc != IOT_ERR_INVALID_PARAMS)
            fprintf(stderr, "  render case %zu: %s -> %s\n", i, cases[i].expr, out);
        CHECK_STR(iot_err_name(rc), "IOT_ERR_INVALID_PARAMS");
        CHECK(contains(err.message, cases[i].message));
    }
}

static void test_render_values(void)
{
    static const struct {
        const char *expr;
        const char *params; /* NULL: DEVICE_PARAMS */
        const char *want;
    } cases[] = {
        {"'plain'", NULL, "plain"},
        {"42", NULL, "42"},
        {"1.5", NULL, "1.5"},
        {"true", NULL, "true"},
        {"false", NULL, "false"},
        {"{'Ref':'SerialNumber'}", NULL, "abc-123-xyz"},
        {"{'Ref':'Location'}", NULL, "Seattle"},              /* device value beats Default */
        {"{'Ref':'Location'}", "{'SerialNumber':'s'}", "WA"}, /* Default used */
        {"{'Ref':'Region'}", NULL, "us-east-1"},
        {"{'Ref':'AWS::IoT::Certificate::Id'}", NULL, CERT}, /* undeclared built-in */
        {"{'Ref':'Missing'}", "{'Missing':''}", ""},         /* an empty value is a value */
        {"{'Fn::Join':['-',['a','b','c']]}", NULL, "a-b-c"},
        {"{'Fn::Join':['',['fp_',{'Ref':'SerialNumber'}]]}", NULL, "fp_abc-123-xyz"},
        {"{'Fn::Join':[', ',[]]}", NULL, ""},
        {"{'Fn::Join':['-',['only']]}", NULL, "only"},
        {"{'Fn::Join':['/',['a',1,true]]}", NULL, "a/1/true"},
        {"{'Fn::Select':[1,['a','b','c']]}", NULL, "b"},
        {"{'Fn::Select':['1',['a','b','c']]}", NULL, "b"},
        {"{'Fn::Select':['0',['a']]}", NULL, "a"},
        {"{'Fn::Select':[2,{'Fn::Split':['-',{'Ref':'SerialNumber'}]}]}", NULL, "xyz"},
        {"{'Fn::Select':[{'Fn::Select':[0,['1']]},['a','b']]}", NULL, "b"},
        {"{'Fn::Select':[1,{'Fn::Split':[',','a,,b']}]}", NULL, ""},
        {"{'Fn::Select':[0,{'Fn::Split':[',','']}]}", NULL, ""},
        {"{'Fn::Select':[1,{'Fn::Split':['::','x::y::z']}]}", NULL, "y"},
        {"{'Fn::Join':['_',{'Fn::Split':['-',{'Ref':'SerialNumber'}]}]}", NULL, "abc_123_xyz"},
        {"{'Fn::Join':['+',{'Fn::Split':['-','a-']}]}", NULL, "a+"},
        {"{'Fn::FindInMap':['LocationTable',{'Ref':'Location'},'Url']}", NULL,
         "https://example.aws"},
        {"{'Fn::FindInMap':['LocationTable',{'Ref':'Location'},'Url']}", "{'SerialNumber':'s'}",
         "https://wa.example"},
        {"{'Fn::FindInMap':['LocationTable','Seattle','Port']}", NULL, "8883"},
        {"{'Fn::Select':[1,{'Fn::FindInMap':['LocationTable','Seattle','Zones']}]}", NULL, "b"},
        {"{'Fn::Sub':'${SerialNumber}@${Location}'}", NULL, "abc-123-xyz@Seattle"},
        {"{'Fn::Sub':'no placeholders'}", NULL, "no placeholders"},
        {"{'Fn::Sub':'${Region}'}", NULL, "us-east-1"},
        {"{'Fn::Sub':'lit ${!Literal} $ {x} $'}", NULL, "lit ${Literal} $ {x} $"},
        {"{'Fn::Sub':['${Name}-${Region}',{'Name':{'Fn::Select':[0,{'Fn::Split':['-',"
         "{'Ref':'SerialNumber'}]}]}}]}",
         NULL, "abc-us-east-1"},
        {"{'Fn::Sub':['${Location}',{'Location':'override'}]}", NULL, "override"},
        {"{'Fn::Join':['',[{'Fn::Sub':'${Location}/'},{'Fn::FindInMap':['LocationTable',"
         "{'Fn::Select':[0,['Seattle']]},'Url']},'/',{'Fn::Select':['2',{'Fn::Split':['-',"
         "{'Fn::Join':['-',['x','y',{'Ref':'SerialNumber'}]]}]}]}]]}",
         NULL, "Seattle/https://example.aws/abc"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char out[256] = "";
        struct iot_error err = {0};
        enum iot_err rc =
            render_value(cases[i].expr, cases[i].params ? cases[i].params : DEVICE_PARAMS, out,
                         sizeof(out), &err);
        if (rc != IOT_OK)
            fprintf(stderr, "  value case %zu: %s: %s\n", i, cases[i].expr, err.message);
        CHECK_STR(iot_err_name(rc), "IOT_OK");
        CHECK_STR(out, cases[i].want);
    }
}

static void test_render_params(void)
{
    struct template *t = parse_ok("{" PARAMS_DECL "'DeviceConfiguration':{'v':{'Ref':'Region'}}}");
    struct template_plan *p = NULL;
    struct iot_error err = {0};
    static const char *const bad[] = {"{'SerialNumber':5}", "{'SerialNumber':null}",
                                      "{'SerialNumber':{'a':'b'}}", "['x']"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cJSON *params = params_of(bad[i]);
        CHECK_INT(template_render(t, params, &p, &err), IOT_ERR_INVALID_PARAMS);
        CHECK(p == NULL);
        cJSON_Delete(params);
    }
    CHECK(contains(err.message, "must be an object"));
    /* No params at all: Defaults still apply, and no DeviceConfiguration -> thing name NULL. */
    CHECK_INT(template_render(t, NULL, &p, &err), IOT_OK);
    CHECK_STR(cJSON_GetObjectItem(template_plan_device_configuration(p), "v")->valuestring,
              "us-east-1");
    CHECK(template_plan_thing_name(p) == NULL);
    template_plan_free(p);
    template_free(t);

    t = parse_ok("{'Resources':{}}");
    CHECK_INT(template_render(t, NULL, &p, &err), IOT_OK);
    CHECK(cJSON_IsObject(template_plan_device_configuration(p)));
    CHECK_INT(cJSON_GetArraySize(template_plan_device_configuration(p)), 0);
    template_plan_free(p);
    template_free(t);

    t = parse_ok("{}");
    CHECK_INT(template_render(t, NULL, &p, &err), IOT_OK);
    CHECK_INT(cJSON_GetArraySize(template_plan_device_configuration(p)), 0);
    template_plan_free(p);
    template_free(t);
    template_free(NULL);
    template_plan_free(NULL);
}

static void test_render_resources(void)
{
    struct iot_error err = {0};
    struct template_plan *p = NULL;
    cJSON *params = params_of(DEVICE_PARAMS);
    struct template *t =
        parse_ok("{'Resources':{'thing':{'Type':'AWS::IoT::Thing','Properties':{'ThingName':"
                 "{'Fn::Join':['',['fp_',{'Ref':'SerialNumber'}]]}}}}}");
    CHECK_INT(template_render(t, params, &p, &err), IOT_OK);
    CHECK_STR(template_plan_thing_name(p), "fp_abc-123-xyz");
    template_plan_free(p);
    template_free(t);

    /* A thing name a device supplies is checked against AWS's pattern. */
    t = parse_ok("{'Resources':{'thing':{'Type':'AWS::IoT::Thing','Properties':{'ThingName':"
                 "{'Fn::Sub':'${SerialNumber} x'}}}}}");
    CHECK_INT(template_render(t, params, &p, &err), IOT_ERR_INVALID_PARAMS);
    CHECK(contains(err.message, "Thing name \"abc-123-xyz x\" is invalid"));
    template_free(t);

    t = parse_ok("{'Resources':{'thing':{'Type':'AWS::IoT::Thing','Properties':{'ThingName':"
                 "'t','AttributePayload':{'a':{'Fn::Split':['-','x-y']}}}}}}");
    CHECK_INT(template_render(t, params, &p, &err), IOT_ERR_INVALID_PARAMS);
    CHECK(contains(err.message, "Attribute a of resource thing must evaluate to a string"));
    template_free(t);

    t = parse_ok("{'Resources':{'c':{'Type':'AWS::IoT::Certificate','Properties':{"
                 "'CertificateId':{'Ref':'AWS::IoT::Certificate::Id'},'Status':{'Ref':"
                 "'Location'}}}}}");
    CHECK_INT(template_render(t, params, &p, &err), IOT_ERR_INVALID_PARAMS);
    CHECK(contains(err.message, "must be ACTIVE or INACTIVE, not Seattle"));
    template_free(t);

    t = parse_ok("{'Resources':{'p':{'Type':'AWS::IoT::Policy','Properties':{"
                 "'PolicyDocument':{'Fn::Sub':'not json ${Location}'}}}}}");
    CHECK_INT(template_render(t, params, &p, &err), IOT_ERR_INVALID_PARAMS);
    CHECK(contains(err.message, "PolicyDocument of resource p is not a JSON object"));
    template_free(t);
    cJSON_Delete(params);
}

/* ---- apply ----------------------------------------------------------------------------- */

static struct registry *fixture_registry(void)
{
    struct registry *reg = NULL;
    struct iot_error err = {0};
    CHECK_INT(registry_open(":memory:", &reg, &err), IOT_OK);
    struct registry_cert c = {.id = CERT, .status = CERT_STATUS_PENDING_ACTIVATION};
    CHECK_INT(registry_cert_insert(reg, &c, &err), IOT_OK);
    struct registry_cert c2 = {.id = CERT2, .status = CERT_STATUS_PENDING_ACTIVATION};
    CHECK_INT(registry_cert_insert(reg, &c2, &err), IOT_OK);
    CHECK_INT(registry_policy_create(reg, "iotmock-device-policy", "{}", &err), IOT_OK);
    CHECK_INT(registry_thing_type_put(reg, "sensor", &err), IOT_OK);
    CHECK_INT(registry_thing_type_put(reg, "gateway", &err), IOT_OK);
    CHECK_INT(registry_thing_group_put(reg, "g1", &err), IOT_OK);
    CHECK_INT(registry_thing_group_put(reg, "g2", &err), IOT_OK);
    CHECK_INT(registry_thing_group_put(reg, "g3", &err), IOT_OK);
    return reg;
}

/* Parses BODY_Q, renders it with PARAMS_Q and applies it for CERT_ID. */
static enum iot_err provision(struct registry *reg, const char *body_q, const char *params_q,
                              const char *cert_id, struct iot_error *err)
{
    struct template *t = parse_ok(body_q);
    struct template_plan *p = NULL;
    cJSON *params = params_of(params_q);
    enum iot_err rc = t ? template_render(t, params, &p, err) : IOT_ERR_INTERNAL;
    if (rc == IOT_OK)
        rc = template_apply(reg, p, cert_id, err);
    template_plan_free(p);
    cJSON_Delete(params);
    template_free(t);
    return rc;
}

static const char *cert_status(struct registry *reg, const char *id)
{
    enum cert_status s = CERT_STATUS_REVOKED;
    if (registry_cert_status(reg, id, &s) != IOT_OK)
        return "(none)";
    return registry_cert_status_name(s);
}

/* A cJSON list of strings as "a,b,c"; frees the list. */
static const char *joined(cJSON *list)
{
    static char buf[512];
    buf[0] = '\0';
    for (const cJSON *e = list ? list->child : NULL; e != NULL; e = e->next) {
        if (e != list->child)
            strcat(buf, ",");
        strncat(buf, e->valuestring, sizeof(buf) - strlen(buf) - 2);
    }
    cJSON_Delete(list);
    return buf;
}

static const char *groups_of(struct registry *reg, const char *thing)
{
    cJSON *l = NULL;
    registry_thing_groups(reg, thing, &l);
    return joined(l);
}

static const char *policies_of(struct registry *reg, const char *target)
{
    cJSON *l = NULL;
    registry_target_policies(reg, target, &l);
    return joined(l);
}

static const char *things_of(struct registry *reg, const char *principal)
{
    cJSON *l = NULL;
    registry_principal_things(reg, principal, &l);
    return joined(l);
}

static const char *attributes_of(struct registry *reg, const char *thing)
{
    static char buf[512];
    struct registry_thing t = {0};
    snprintf(buf, sizeof(buf), "(no thing)");
    if (registry_thing_get(reg, thing, &t, NULL) == IOT_OK) {
        char *s = t.attributes ? cJSON_PrintUnformatted(t.attributes) : NULL;
        snprintf(buf, sizeof(buf), "%s", s ? s : "(none)");
        free(s);
    }
    registry_thing_clear(&t);
    return buf;
}

static const char *type_of(struct registry *reg, const char *thing)
{
    static char buf[128];
    struct registry_thing t = {0};
    snprintf(buf, sizeof(buf), "(no thing)");
    if (registry_thing_get(reg, thing, &t, NULL) == IOT_OK)
        snprintf(buf, sizeof(buf), "%s", t.type_name ? t.type_name : "(none)");
    registry_thing_clear(&t);
    return buf;
}

static long long version_of(struct registry *reg, const char *thing)
{
    struct registry_thing t = {0};
    long long v = -1;
    if (registry_thing_get(reg, thing, &t, NULL) == IOT_OK)
        v = t.version;
    registry_thing_clear(&t);
    return v;
}

#define POLICY_DOC_MIN                                                                             \
    "{'Version':'2012-10-17','Statement':[{'Effect':'Allow','Action':['iot:Connect'],"             \
    "'Resource':'*'}]}"

/* The full template: thing with attributes, type and groups, certificate, a named policy and a
 * document policy. TYPE, DOC are substituted. */
static void full_template(char *out, size_t n, const char *type, const char *doc)
{
    snprintf(out, n,
             "{'Parameters':{'SerialNumber':{'Type':'String'}},"
             "'Resources':{'thing':{'Type':'AWS::IoT::Thing','Properties':{"
             "'ThingName':{'Fn::Join':['',['dev_',{'Ref':'SerialNumber'}]]},"
             "'AttributePayload':{'serial':{'Ref':'SerialNumber'},'model':'m1'},"
             "'ThingTypeName':'%s','ThingGroups':['g2','g1']}},"
             "'certificate':{'Type':'AWS::IoT::Certificate','Properties':{"
             "'CertificateId':{'Ref':'AWS::IoT::Certificate::Id'},'Status':'Active'}},"
             "'named':{'Type':'AWS::IoT::Policy','Properties':{'PolicyName':"
             "'iotmock-device-policy'}},"
             "'doc':{'Type':'AWS::IoT::Policy','Properties':{'PolicyDocument':%s}}},"
             "'DeviceConfiguration':{'Foo':'Bar'}}",
             type, doc);
}

static void sha256_hex_of(const char *text, char hex[65])
{
    unsigned char md[32];
    unsigned int n = 0;
    EVP_Digest(text, strlen(text), md, &n, EVP_sha256(), NULL);
    for (unsigned int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
}

static void test_apply_missing_resources(void)
{
    static const char *const types[] = {"nope", "sensor"};
    struct registry *reg = fixture_registry();
    char body[4096];
    struct iot_error err = {0};
    uint64_t before = registry_version(reg);

    /* Thing type missing: nothing at all is written. */
    full_template(body, sizeof(body), types[0], POLICY_DOC_MIN);
    CHECK_INT(provision(reg, body, "{'SerialNumber':'1','AWS::IoT::Certificate::Id':'" CERT "'}",
                        CERT, &err),
              IOT_ERR_INVALID_PARAMS);
    CHECK(contains(err.message, "thing type nope does not exist"));
    CHECK(contains(err.message, "Resource thing"));
    CHECK_STR(cert_status(reg, CERT), "PENDING_ACTIVATION");
    CHECK_STR(type_of(reg, "dev_1"), "(no thing)");
    CHECK_STR(things_of(reg, CERT), "");
    CHECK_STR(policies_of(reg, CERT), "");
    CHECK_INT(registry_version(reg), before);
    char hash[65], *doc = NULL;
    sha256_hex_of(q(POLICY_DOC_MIN), hash);
    CHECK_INT(registry_policy_get(reg, hash, &doc, NULL), IOT_ERR_NOT_FOUND);
    free(doc);

    /* A missing group, a missing named policy, an unknown certificate, a foreign CertificateId. */
    CHECK_INT(provision(reg,
                        "{'Resources':{'thing':{'Type':'AWS::IoT::Thing','Properties':{"
                        "'ThingName':'t','ThingGroups':['g1','nogroup']}}}}",
                        NULL, CERT, &err),
              IOT_ERR_INVALID_PARAMS);
    CHECK(contains(err.message, "thing group nogroup does not exist"));
    CHECK_INT(provision(reg,
                        "{'Resources':{'pol':{'Type':'AWS::IoT::Policy','Properties':{"
                        "'PolicyName':'absent'}},'thing':{'Type':'AWS::IoT::Thing',"
                        "'Properties':{'ThingName':'t'}}}}",
                        NULL, CERT, &err),
              IOT_ERR_INVALID_PARAMS);
    CHECK(contains(err.message, "Resource pol: policy absent does not exist"));
    full_template(body, sizeof(body), types[1], POLICY_DOC_MIN);
    CHECK_INT(provision(reg, body, "{'SerialNumber':'1','AWS::IoT::Certificate::Id':'" CERT2 "'}",
                        CERT2 "0", &err),
              IOT_ERR_INVALID_PARAMS);
    CHECK(contains(err.message, "does not exist"));
    CHECK_INT(provision(reg, body, "{'SerialNumber':'1','AWS::IoT::Certificate::Id':'" CERT2 "'}",
                        CERT, &err),
              IOT_ERR_INVALID_PARAMS);
    CHECK(contains(err.message, "is not the certificate being provisioned"));
    CHECK_STR(cert_status(reg, CERT), "PENDING_ACTIVATION");
    CHECK_STR(type_of(reg, "dev_1"), "(no thing)");
    CHECK_STR(type_of(reg, "t"), "(no thing)");
    CHECK_STR(policies_of(reg, CERT), "");
    CHECK_INT(registry_version(reg), before);
    registry_close(reg);
}

static void test_apply_new_thing(void)
{
    struct registry *reg = fixture_registry();
    char body[4096], hash[65];
    struct iot_error err = {0};
    uint64_t before = registry_version(reg);
    sha256_hex_of(q(POLICY_DOC_MIN), hash);

    /* PolicyDocument as an escaped string, with whitespace that minifying removes. */
    full_template(body, sizeof(body), "sensor",
                  "'{ \\'Version\\': \\'2012-10-17\\', \\'Statement\\': [ { \\'Effect\\': "
                  "\\'Allow\\', \\'Action\\': [\\'iot:Connect\\'], \\'Resource\\': \\'*\\' } ] }'");
    CHECK_INT(provision(reg, body, "{'SerialNumber':'001','AWS::IoT::Certificate::Id':'" CERT "'}",
                        CERT, &err),
              IOT_OK);
    CHECK(registry_version(reg) > before);
    CHECK_STR(type_of(reg, "dev_001"), "sensor");
    CHECK_STR(attributes_of(reg, "dev_001"), q("{'serial':'001','model':'m1'}"));
    CHECK_STR(groups_of(reg, "dev_001"), "g1,g2");
    CHECK_STR(cert_status(reg, CERT), "ACTIVE"); /* "Active" accepted */
    CHECK_STR(things_of(reg, CERT), "dev_001");
    char want[160];
    snprintf(want, sizeof(want), "%s,iotmock-device-policy", hash);
    CHECK_STR(policies_of(reg, CERT), want);
    char *doc = NULL;
    CHECK_INT(registry_policy_get(reg, hash, &doc, NULL), IOT_OK);
    CHECK_STR(doc, q(POLICY_DOC_MIN));
    free(doc);

    /* PolicyDocument as a raw object: the same name, and the stored policy is reused. */
    full_template(body, sizeof(body), "sensor", POLICY_DOC_MIN);
    CHECK_INT(provision(reg, body, "{'SerialNumber':'002','AWS::IoT::Certificate::Id':'" CERT2 "'}",
                        CERT2, &err),
              IOT_OK);
    CHECK_STR(policies_of(reg, CERT2), want);
    CHECK_STR(things_of(reg, CERT2), "dev_002");
    CHECK_STR(cert_status(reg, CERT2), "ACTIVE");
    registry_close(reg);
}

static void test_apply_certificate_status(void)
{
    static const struct {
        const char *status; /* NULL: omitted */
        const char *want;
    } cases[] = {
        {NULL, "ACTIVE"},           {"'ACTIVE'", "ACTIVE"},     {"'active'", "ACTIVE"},
        {"'Inactive'", "INACTIVE"}, {"'INACTIVE'", "INACTIVE"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct registry *reg = fixture_registry();
        struct iot_error err = {0};
        char body[1024];
        /* OverrideSettings Status DO_NOTHING (the JITP example) still lets the status apply. */
        snprintf(body, sizeof(body),
                 "{'Resources':{'c':{'Type':'AWS::IoT::Certificate','OverrideSettings':{"
                 "'Status':'DO_NOTHING'},'Properties':{'CertificateId':{'Ref':"
                 "'AWS::IoT::Certificate::Id'}%s%s}}}}",
                 cases[i].status ? ",'Status':" : "", cases[i].status ? cases[i].status : "");
        CHECK_INT(provision(reg, body, "{'AWS::IoT::Certificate::Id':'" CERT "'}", CERT, &err),
                  IOT_OK);
        CHECK_STR(cert_status(reg, CERT), cases[i].want);
        CHECK_STR(things_of(reg, CERT), "");
        registry_close(reg);
    }
}

/* An existing thing: type sensor, attributes {a:1,b:2}, group g1. The template says type
 * gateway, attributes {b:20,c:3}, groups [g2]. */
#define EXISTING_TEMPLATE                                                                          \
    "{'Resources':{'thing':{'Type':'AWS::IoT::Thing','OverrideSettings':{%s},"                     \
    "'Properties':{'ThingName':'dev1','AttributePayload':{'b':'20','c':'3'},"                      \
    "'ThingTypeName':'gateway','ThingGroups':['g2']}},"                                            \
    "'c':{'Type':'AWS::IoT::Certificate','Properties':{'CertificateId':{'Ref':"                    \
    "'AWS::IoT::Certificate::Id'}}}}}"

static struct registry *registry_with_thing(void)
{
    struct registry *reg = fixture_registry();
    struct iot_error err = {0};
    char name[] = "dev1", type[] = "sensor";
    struct registry_thing t = {.name = name, .type_name = type};
    t.attributes = cJSON_Parse(q("{'a':'1','b':'2'}"));
    CHECK_INT(registry_thing_put(reg, &t, &err), IOT_OK);
    cJSON_Delete(t.attributes);
    CHECK_INT(registry_thing_group_add(reg, "g1", "dev1", &err), IOT_OK);
    return reg;
}

static void test_apply_overrides(void)
{
    static const struct {
        const char *settings;
        enum iot_err code;
        const char *type, *attributes, *groups;
        long long version;
    } cases[] = {
        {"", IOT_OK, "sensor", "{'a':'1','b':'2'}", "g1", 1},
        {"'AttributePayload':'DO_NOTHING','ThingTypeName':'DO_NOTHING','ThingGroups':"
         "'DO_NOTHING'",
         IOT_OK, "sensor", "{'a':'1','b':'2'}", "g1", 1},
        {"'AttributePayload':'REPLACE','ThingTypeName':'REPLACE','ThingGroups':'REPLACE'", IOT_OK,
         "gateway", "{'b':'20','c':'3'}", "g2", 2},
        {"'ATTRIBUTE_PAYLOAD':'REPLACE','THING_TYPE_NAME':'REPLACE','THING_GROUPS':'REPLACE'",
         IOT_OK, "gateway", "{'b':'20','c':'3'}", "g2", 2},
        {"'AttributePayload':'MERGE','ThingGroups':'MERGE'", IOT_OK, "sensor",
         "{'a':'1','b':'20','c':'3'}", "g1,g2", 2},
        {"'ThingTypeName':'REPLACE'", IOT_OK, "gateway", "{'a':'1','b':'2'}", "g1", 2},
        {"'ThingGroups':'merge'", IOT_OK, "sensor", "{'a':'1','b':'2'}", "g1,g2", 1},
        {"'AttributePayload':'FAIL'", IOT_ERR_CONFLICT, "sensor", "{'a':'1','b':'2'}", "g1", 1},
        {"'ThingTypeName':'FAIL'", IOT_ERR_CONFLICT, "sensor", "{'a':'1','b':'2'}", "g1", 1},
        {"'ThingGroups':'FAIL'", IOT_ERR_CONFLICT, "sensor", "{'a':'1','b':'2'}", "g1", 1},
        {"'AttributePayload':'MERGE','ThingGroups':'FAIL'", IOT_ERR_CONFLICT, "sensor",
         "{'a':'1','b':'2'}", "g1", 1},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct registry *reg = registry_with_thing();
        struct iot_error err = {0};
        char body[2048];
        snprintf(body, sizeof(body), EXISTING_TEMPLATE, cases[i].settings);
        uint64_t before = registry_version(reg);
        enum iot_err rc =
            provision(reg, body, "{'AWS::IoT::Certificate::Id':'" CERT "'}", CERT, &err);
        if (rc != cases[i].code)
            fprintf(stderr, "  override case %zu: %s\n", i, err.message);
        CHECK_STR(iot_err_name(rc), iot_err_name(cases[i].code));
        CHECK_STR(type_of(reg, "dev1"), cases[i].type);
        CHECK_STR(attributes_of(reg, "dev1"), q(cases[i].attributes));
        CHECK_STR(groups_of(reg, "dev1"), cases[i].groups);
        CHECK_INT(version_of(reg, "dev1"), cases[i].version);
        if (rc == IOT_OK) {
            CHECK_STR(things_of(reg, CERT), "dev1");
            CHECK_STR(cert_status(reg, CERT), "ACTIVE");
        } else {
            CHECK(contains(err.message, "ResourceConflictsException"));
            CHECK(contains(err.message, "dev1"));
            CHECK_STR(things_of(reg, CERT), "");
            CHECK_STR(cert_status(reg, CERT), "PENDING_ACTIVATION");
            CHECK_INT(registry_version(reg), before);
        }
        registry_close(reg);
    }
}

/* FAIL aborts only when the template would change something. */
static void test_apply_fail_when_equal(void)
{
    struct registry *reg = registry_with_thing();
    struct iot_error err = {0};
    CHECK_INT(provision(reg,
                        "{'Resources':{'thing':{'Type':'AWS::IoT::Thing','OverrideSettings':{"
                        "'AttributePayload':'FAIL','ThingTypeName':'FAIL','ThingGroups':'FAIL'},"
                        "'Properties':{'ThingName':'dev1','AttributePayload':{'b':'2','a':'1'},"
                        "'ThingTypeName':'sensor','ThingGroups':['g1','g1']}},"
                        "'c':{'Type':'AWS::IoT::Certificate','Properties':{'CertificateId':"
                        "{'Ref':'AWS::IoT::Certificate::Id'}}}}}",
                        "{'AWS::IoT::Certificate::Id':'" CERT "'}", CERT, &err),
              IOT_OK);
    CHECK_INT(version_of(reg, "dev1"), 1);
    CHECK_STR(things_of(reg, CERT), "dev1");
    registry_close(reg);
}

/* ---- the default fleet template -------------------------------------------------------- */

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    char *buf = calloc(1, 65536);
    size_t n = buf ? fread(buf, 1, 65535, f) : 0;
    fclose(f);
    if (buf != NULL)
        buf[n] = '\0';
    return buf;
}

static void test_fleet_default_fixture(void)
{
    char *text = read_file(FIXTURES_DIR "/templates/fleet-default.json");
    CHECK(text != NULL);
    cJSON *resource = cJSON_Parse(text ? text : "");
    free(text);
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(resource, "templateName")), "fleet-default");
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(resource, "type")), "FLEET_PROVISIONING");
    CHECK(cJSON_IsTrue(cJSON_GetObjectItem(resource, "enabled")));
    CHECK(cJSON_IsString(cJSON_GetObjectItem(resource, "description")));
    CHECK(template_name_valid("fleet-default"));
    char *body = cJSON_PrintUnformatted(cJSON_GetObjectItem(resource, "templateBody"));
    cJSON_Delete(resource);
    CHECK(body != NULL);
    if (body == NULL)
        return;

    struct template *t = NULL;
    struct template_plan *p = NULL;
    struct iot_error err = {0};
    CHECK_INT(template_parse(body, strlen(body), &t, &err), IOT_OK);
    free(body);
    cJSON *params = params_of("{'AWS::IoT::Certificate::Id':'" CERT "'}");
    CHECK_INT(template_render(t, params, &p, &err), IOT_ERR_INVALID_PARAMS);
    CHECK(contains(err.message, "Parameter SerialNumber has no value and no Default"));
    cJSON_Delete(params);

    params = params_of("{'SerialNumber':'abc123','AWS::IoT::Certificate::Id':'" CERT "'}");
    CHECK_INT(template_render(t, params, &p, &err), IOT_OK);
    CHECK_STR(template_plan_thing_name(p), "abc123");
    struct registry *reg = fixture_registry();
    CHECK_INT(template_apply(reg, p, CERT, &err), IOT_OK);
    CHECK_STR(attributes_of(reg, "abc123"), q("{'serialNumber':'abc123'}"));
    CHECK_STR(cert_status(reg, CERT), "ACTIVE");
    CHECK_STR(things_of(reg, CERT), "abc123");
    CHECK_STR(policies_of(reg, CERT), "iotmock-device-policy");
    const cJSON *dc = template_plan_device_configuration(p);
    CHECK(cJSON_IsObject(dc));
    for (const cJSON *v = dc ? dc->child : NULL; v != NULL; v = v->next)
        CHECK(cJSON_IsString(v));

    /* A second device with the same serial number: the thing is kept and the new cert joins. */
    CHECK_INT(template_apply(reg, p, CERT2, &err), IOT_ERR_INVALID_PARAMS); /* Id is CERT */
    template_plan_free(p);
    cJSON_Delete(params);
    params = params_of("{'SerialNumber':'abc123','AWS::IoT::Certificate::Id':'" CERT2 "'}");
    CHECK_INT(template_render(t, params, &p, &err), IOT_OK);
    CHECK_INT(template_apply(reg, p, CERT2, &err), IOT_OK);
    CHECK_STR(things_of(reg, CERT2), "abc123");
    CHECK_INT(version_of(reg, "abc123"), 1);
    template_plan_free(p);
    cJSON_Delete(params);
    template_free(t);
    registry_close(reg);
}

int main(void)
{
    test_names();
    test_body_limit();
    test_parse_rejects();
    test_render_errors();
    test_render_values();
    test_render_params();
    test_render_resources();
    test_apply_missing_resources();
    test_apply_new_thing();
    test_apply_certificate_status();
    test_apply_overrides();
    test_apply_fail_when_equal();
    test_fleet_default_fixture();
    return check_summary();
}
