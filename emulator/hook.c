/* Pre-provisioning hook client over libcurl. */
#include "hook.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>

#define HOOK_RESPONSE_MAX (256 * 1024) /* a Lambda response is at most 6 MB; a hook's is tiny */

struct body {
    char *data;
    size_t len;
    bool too_big;
};

struct headers {
    bool function_error;
};

int hook_function_name(const char *target_arn, char *out, size_t out_len)
{
    const char *name = target_arn;
    if (strncmp(target_arn, "arn:", 4) == 0) {
        const char *fn = strstr(target_arn, ":function:");
        if (fn == NULL)
            return 0;
        name = fn + strlen(":function:");
    }
    size_t n = strcspn(name, ":"); /* drop a version or alias qualifier */
    if (n == 0 || n >= out_len)
        return 0;
    memcpy(out, name, n);
    out[n] = '\0';
    return 1;
}

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    struct body *b = userdata;
    size_t n = size * nmemb;
    if (b->len + n > HOOK_RESPONSE_MAX) {
        b->too_big = true;
        return 0;
    }
    char *grown = realloc(b->data, b->len + n + 1);
    if (grown == NULL)
        return 0;
    memcpy(grown + b->len, ptr, n);
    b->data = grown;
    b->len += n;
    b->data[b->len] = '\0';
    return n;
}

static size_t on_header(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    struct headers *h = userdata;
    size_t n = size * nmemb;
    static const char name[] = "x-amz-function-error:";
    if (n >= sizeof(name) - 1 && strncasecmp(ptr, name, sizeof(name) - 1) == 0)
        h->function_error = true;
    return n;
}

static bool allowed(const cJSON *answer)
{
    const cJSON *allow = cJSON_GetObjectItemCaseSensitive(answer, "allowProvisioning");
    if (cJSON_IsTrue(allow))
        return true;
    /* [HOOK] says the string "true"; every example returns a boolean: accept both (§2.9). */
    return cJSON_IsString(allow) && strcasecmp(allow->valuestring, "true") == 0;
}

/* Turns the function's answer into a decision and overrides. */
static enum iot_err decide(const struct body *b, cJSON **overrides, struct iot_error *err)
{
    cJSON *answer = cJSON_ParseWithLength(b->data ? b->data : "", b->len);
    if (!cJSON_IsObject(answer)) {
        cJSON_Delete(answer);
        return iot_error_set(err, IOT_ERR_ACCESS_DENIED,
                             "Pre-provisioning hook returned a response that is not a JSON object");
    }
    if (!allowed(answer)) {
        cJSON_Delete(answer);
        return iot_error_set(err, IOT_ERR_ACCESS_DENIED,
                             "Pre-provisioning hook denied provisioning (allowProvisioning is not true)");
    }
    cJSON *ov = cJSON_DetachItemFromObjectCaseSensitive(answer, "parameterOverrides");
    cJSON_Delete(answer);
    if (ov == NULL || cJSON_IsNull(ov)) {
        cJSON_Delete(ov);
        ov = cJSON_CreateObject();
    }
    if (!cJSON_IsObject(ov)) {
        cJSON_Delete(ov);
        return iot_error_set(err, IOT_ERR_ACCESS_DENIED,
                             "Pre-provisioning hook returned parameterOverrides that is not an object");
    }
    const cJSON *item;
    cJSON_ArrayForEach(item, ov)
    {
        if (!cJSON_IsString(item)) {
            cJSON_Delete(ov);
            return iot_error_set(err, IOT_ERR_ACCESS_DENIED,
                                 "Pre-provisioning hook override %s is not a string", item->string);
        }
    }
    *overrides = ov;
    return IOT_OK;
}

enum iot_err hook_invoke(const char *endpoint, const char *target_arn, const cJSON *event,
                         long timeout_ms, cJSON **overrides, struct iot_error *err)
{
    char name[256], url[2048];
    if (endpoint == NULL || endpoint[0] == '\0')
        return iot_error_set(err, IOT_ERR_ACCESS_DENIED,
                             "Template has a pre-provisioning hook but iotmock was started without "
                             "--lambda-endpoint");
    if (!hook_function_name(target_arn, name, sizeof(name)))
        return iot_error_set(err, IOT_ERR_ACCESS_DENIED, "Hook target %s is not a Lambda function",
                             target_arn);
    size_t elen = strlen(endpoint);
    while (elen > 0 && endpoint[elen - 1] == '/')
        elen--;
    snprintf(url, sizeof(url), "%.*s/2015-03-31/functions/%s/invocations", (int)elen, endpoint,
             name);

    enum iot_err rc = IOT_ERR_ACCESS_DENIED;
    struct body body = {0};
    struct headers hdrs = {0};
    struct curl_slist *list = NULL;
    char *payload = cJSON_PrintUnformatted(event);
    CURL *curl = curl_easy_init();
    if (payload == NULL || curl == NULL) {
        rc = iot_error_set(err, IOT_ERR_NOMEM, "out of memory invoking the hook");
        goto cleanup;
    }
    list = curl_slist_append(list, "Content-Type: application/json");
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, list);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, payload);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &body);
    curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(curl, CURLOPT_HEADERDATA, &hdrs);

    CURLcode cc = curl_easy_perform(curl);
    long status = 0;
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    if (cc == CURLE_OPERATION_TIMEDOUT)
        iot_error_set(err, rc, "Pre-provisioning hook %s did not answer within %ld ms", name,
                      timeout_ms);
    else if (cc != CURLE_OK)
        iot_error_set(err, rc, "Pre-provisioning hook %s could not be invoked at %s: %s", name, url,
                      curl_easy_strerror(cc));
    else if (status < 200 || status > 299)
        iot_error_set(err, rc, "Pre-provisioning hook %s failed: HTTP %ld", name, status);
    else if (hdrs.function_error)
        iot_error_set(err, rc, "Pre-provisioning hook %s raised an error", name);
    else
        rc = decide(&body, overrides, err);

cleanup:
    curl_slist_free_all(list);
    curl_easy_cleanup(curl);
    free(payload);
    free(body.data);
    return rc;
}
