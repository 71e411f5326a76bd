/* Provisioning templates (shared/spec/provisioning.md §2): parse and validate a template body,
 * render it with parameters into a plan, and apply the plan to the registry atomically.
 *
 * The split is deliberate: template_render() evaluates every intrinsic function and parameter and
 * template_apply() checks every referenced resource before writing anything, so a failure at any
 * point leaves no partial state (§2.7 step 7). */
#ifndef IOTMOCK_TEMPLATE_H
#define IOTMOCK_TEMPLATE_H

#include <stddef.h>

#include <cjson/cJSON.h>

#include "err.h"
#include "registry.h"

#define TEMPLATE_NAME_MAX 36          /* [0-9A-Za-z_-]{1,36} */
#define TEMPLATE_BODY_MAX 10240       /* characters */
#define TEMPLATE_CERT_ID_PARAM "AWS::IoT::Certificate::Id"

struct template;      /* a parsed, validated body */
struct template_plan; /* a rendered template: concrete values, nothing applied yet */

/* true if NAME is a valid template name (1-36 of [0-9A-Za-z_-]). */
int template_name_valid(const char *name);

/* Parses and validates BODY (LEN bytes): JSON object; known sections (Parameters, Mappings,
 * Resources, DeviceConfiguration); resource Types AWS::IoT::Thing|Certificate|Policy; known
 * intrinsic functions only (Ref, Fn::Join, Fn::Select, Fn::Split, Fn::FindInMap, Fn::Sub);
 * no intrinsics inside Mappings; a policy has exactly one of PolicyName/PolicyDocument.
 * Errors: IOT_ERR_INVALID_REQUEST with the reason. Caller frees *out with template_free(). */
enum iot_err template_parse(const char *body, size_t len, struct template **out,
                            struct iot_error *err);
void template_free(struct template *t);

/* Renders with PARAMS, an object of name -> string that already holds, in order of precedence,
 * the hook's overrides, the device's parameters and the built-ins (AWS::IoT::Certificate::Id,
 * and for JITP the subject fields); declared Defaults fill what is missing. A referenced parameter
 * with no value and no Default, or an intrinsic that fails (Select out of range, FindInMap miss),
 * gives IOT_ERR_INVALID_PARAMS. DeviceConfiguration values must be strings (numbers and booleans
 * are stringified; objects are an error). Caller frees *out with template_plan_free(). */
enum iot_err template_render(const struct template *t, const cJSON *params,
                             struct template_plan **out, struct iot_error *err);
void template_plan_free(struct template_plan *p);

/* Borrowed, valid until template_plan_free(). NULL when the template has no thing resource. */
const char *template_plan_thing_name(const struct template_plan *p);
/* Borrowed object of name -> string; never NULL (empty object when there is no section). */
const cJSON *template_plan_device_configuration(const struct template_plan *p);

/* Applies the plan in one registry transaction for certificate CERT_ID (which must exist):
 * policies (an existing PolicyName, or a PolicyDocument stored under the lowercase hex SHA-256 of
 * its minified text, reused if present), the thing (created, or updated per OverrideSettings:
 * DO_NOTHING default, REPLACE, MERGE for AttributePayload and ThingGroups, FAIL ->
 * IOT_ERR_CONFLICT; SNAKE_CASE keys accepted too), the thing type and groups (must exist,
 * else IOT_ERR_INVALID_PARAMS), attach each policy to the certificate, attach the certificate to
 * the thing, and set the certificate status from the template (default ACTIVE, case-insensitive).
 * On any error nothing is changed. */
enum iot_err template_apply(struct registry *reg, const struct template_plan *p,
                            const char *cert_id, struct iot_error *err);

#endif
