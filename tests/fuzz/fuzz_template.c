/* fuzz_template: provisioning templates (shared/spec/provisioning.md §2) from body to registry:
 * template_parse(), template_render(), and template_apply() of the plan inside a registry
 * transaction that is rolled back, so every input starts from the same registry.
 *
 * Input: the template body, optionally followed by a NUL byte and the parameters as
 * "Name=value" lines (what a device sends in RegisterThing, §1.5). Without that part every
 * parameter the body declares gets the value "1" (a valid thing name and Fn::Select index), so
 * that mutated bodies still render. AWS::IoT::Certificate::Id is always the certificate the
 * harness registered, unless a line names it. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "fuzz_util.h"
#include "template.h"

#define CERT_ID "0000000000000000000000000000000000000000000000000000000000000001"

static struct registry *reg;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    struct iot_error err = {0};
    fuzz_need(registry_open(":memory:", &reg, &err), &err, "registry_open");
    struct registry_cert c = {.id = CERT_ID,
                              .pem = (char *)"-----BEGIN CERTIFICATE-----\n",
                              .status = CERT_STATUS_PENDING_ACTIVATION};
    fuzz_need(registry_cert_insert(reg, &c, &err), &err, "registry_cert_insert");
    fuzz_need(registry_policy_create(reg, "iotmock-device-policy",
                                     "{\"Version\":\"2012-10-17\",\"Statement\":[{\"Effect\":"
                                     "\"Allow\",\"Action\":\"iot:*\",\"Resource\":\"*\"}]}",
                                     &err),
              &err, "registry_policy_create");
    fuzz_need(registry_thing_type_put(reg, "fp_demo_things", &err), &err, "thing type");
    fuzz_need(registry_thing_group_put(reg, "fleet", &err), &err, "thing group");
    cJSON *attrs = cJSON_CreateObject();
    cJSON_AddStringToObject(attrs, "location", "Berlin");
    struct registry_thing thing = {.name = (char *)"dev_1", .attributes = attrs};
    fuzz_need(registry_thing_put(reg, &thing, &err), &err, "registry_thing_put");
    cJSON_Delete(attrs);
    return 0;
}

/* "Name=value" lines of TEXT[0..N) into PARAMS; a line without '=' is a name with value "". */
static void params_from_lines(cJSON *params, const char *text, size_t n)
{
    while (n > 0) {
        const char *nl = memchr(text, '\n', n);
        size_t line = nl ? (size_t)(nl - text) : n;
        const char *eq = memchr(text, '=', line);
        size_t name_len = eq ? (size_t)(eq - text) : line;
        char *name = fuzz_strndup((const uint8_t *)text, name_len);
        char *value = eq ? fuzz_strndup((const uint8_t *)eq + 1, line - name_len - 1)
                         : fuzz_strndup((const uint8_t *)"", 0);
        /* Names and values are C strings: an embedded NUL ends them, as it would in cJSON. */
        cJSON_DeleteItemFromObjectCaseSensitive(params, name);
        cJSON_AddStringToObject(params, name, value);
        free(name);
        free(value);
        text += line + (nl ? 1 : 0);
        n -= line + (nl ? 1 : 0);
    }
}

/* Every parameter BODY declares, with the value "1". */
static void params_declared(cJSON *params, const char *body, size_t len)
{
    cJSON *doc = cJSON_ParseWithLength(body, len);
    const cJSON *declared = cJSON_GetObjectItemCaseSensitive(doc, "Parameters"), *p;
    cJSON_ArrayForEach(p, declared)
    {
        if (p->string != NULL && !cJSON_HasObjectItem(params, p->string))
            cJSON_AddStringToObject(params, p->string, "1");
    }
    cJSON_Delete(doc);
}

/* template.h's promises about a plan. */
static void check_plan(const struct template_plan *plan)
{
    const cJSON *dc = template_plan_device_configuration(plan), *v;
    if (!cJSON_IsObject(dc))
        abort();
    cJSON_ArrayForEach(v, dc)
    {
        if (!cJSON_IsString(v))
            abort();
    }
    const char *thing = template_plan_thing_name(plan);
    if (thing != NULL && strlen(thing) > 1024 * 1024)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nul = memchr(data, '\0', size);
    size_t body_len = nul ? (size_t)(nul - data) : size;
    char *body = (char *)fuzz_memdup(data, body_len); /* not NUL-terminated, on purpose */
    struct template *t = NULL;
    struct template_plan *plan = NULL;
    struct iot_error err = {0};
    cJSON *params = cJSON_CreateObject();

    enum iot_err rc = template_parse(body, body_len, &t, &err);
    if (rc != IOT_OK) {
        if (t != NULL || err.message[0] == '\0')
            abort();
        goto cleanup;
    }
    if (nul)
        params_from_lines(params, (const char *)nul + 1, size - body_len - 1);
    else
        params_declared(params, body, body_len);
    if (!cJSON_HasObjectItem(params, TEMPLATE_CERT_ID_PARAM))
        cJSON_AddStringToObject(params, TEMPLATE_CERT_ID_PARAM, CERT_ID);
    if (template_render(t, params, &plan, &err) != IOT_OK)
        goto cleanup;
    check_plan(plan);
    if (registry_begin(reg) != IOT_OK)
        abort();
    template_apply(reg, plan, CERT_ID, &err);
    registry_rollback(reg);
cleanup:
    template_plan_free(plan);
    template_free(t);
    cJSON_Delete(params);
    free(body);
    return 0;
}
