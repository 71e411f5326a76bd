/* Pre-provisioning hooks (shared/spec/provisioning.md §2.9), invoked through the AWS Lambda Invoke
 * HTTP API (POST <endpoint>/2015-03-31/functions/<name>/invocations), which AWS's Lambda runtime
 * interface emulator and `sam local start-lambda` serve, so users run their real hook locally. */
#ifndef IOTMOCK_HOOK_H
#define IOTMOCK_HOOK_H

#include <cjson/cJSON.h>

#include "err.h"

#define HOOK_TIMEOUT_MS 5000 /* AWS: the function must answer within 5 seconds */

/* Extracts the function name from a Lambda ARN (arn:aws:lambda:R:A:function:NAME[:QUALIFIER]);
 * a bare name is returned as it is. Writes at most out_len bytes; false if it does not fit or
 * the ARN is not a function ARN. */
int hook_function_name(const char *target_arn, char *out, size_t out_len);

/* Invokes the hook with EVENT and decides: IOT_OK when the function answered
 * allowProvisioning true (boolean, or the string "true" in any case), with *overrides set to a
 * new object of parameterOverrides (caller frees with cJSON_Delete; empty object when none).
 * Anything else, a non-2xx answer, a function error (X-Amz-Function-Error), malformed JSON,
 * no endpoint configured, or no answer within TIMEOUT_MS, gives IOT_ERR_ACCESS_DENIED with the
 * reason in err. Blocks: call from a worker thread. */
enum iot_err hook_invoke(const char *endpoint, const char *target_arn, const cJSON *event,
                         long timeout_ms, cJSON **overrides, struct iot_error *err);

#endif
