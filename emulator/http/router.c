/* The route table of the control plane: every AWS IoT operation iotmock answers, by method and
 * URI template exactly as the service model has them (shared/spec/provisioning.md §6.4), plus
 * the emulator's own routes under /_iotmock/.
 *
 * Matching works on the raw path: it is split at "/" first and each segment decoded afterwards,
 * so an encoded "/" stays inside its segment (ListAttachedPolicies puts a certificate ARN in the
 * path, spec/clients.md §3). A path given in --endpoint-url is kept by the clients as a prefix;
 * up to HTTP_PREFIX_MAX leading segments that match no route are skipped. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/api.h"

struct route {
    const char *method;
    const char *pattern; /* "/a/{b}/c": literal segments and {member} segments */
    const char *op;
    http_handler handler;
    bool internal; /* an /_iotmock/ route: no AWS signature expected */
};

/* Within one path shape, literal segments come before {member} segments. */
static const struct route ROUTES[] = {
    {"GET", "/_iotmock/health", "iotmock.Health", op_iotmock_health, true},
    {"GET", "/_iotmock/root-ca.pem", "iotmock.RootCa", op_iotmock_root_ca, true},
    {"POST", "/_iotmock/reset", "iotmock.Reset", op_iotmock_reset, true},

    {"POST", "/things", "RegisterThing", op_register_thing, false},
    {"GET", "/things", "ListThings", op_list_things, false},
    {"POST", "/things/{thingName}", "CreateThing", op_create_thing, false},
    {"GET", "/things/{thingName}", "DescribeThing", op_describe_thing, false},
    {"PATCH", "/things/{thingName}", "UpdateThing", op_update_thing, false},
    {"DELETE", "/things/{thingName}", "DeleteThing", op_delete_thing, false},
    {"PUT", "/things/{thingName}/principals", "AttachThingPrincipal", op_attach_thing_principal,
     false},
    {"DELETE", "/things/{thingName}/principals", "DetachThingPrincipal", op_detach_thing_principal,
     false},
    {"GET", "/things/{thingName}/principals", "ListThingPrincipals", op_list_thing_principals,
     false},
    {"GET", "/things/{thingName}/thing-groups", "ListThingGroupsForThing",
     op_list_thing_groups_for_thing, false},
    {"GET", "/principals/things", "ListPrincipalThings", op_list_principal_things, false},

    {"GET", "/thing-types", "ListThingTypes", op_list_thing_types, false},
    {"POST", "/thing-types/{thingTypeName}", "CreateThingType", op_create_thing_type, false},
    {"GET", "/thing-types/{thingTypeName}", "DescribeThingType", op_describe_thing_type, false},
    {"DELETE", "/thing-types/{thingTypeName}", "DeleteThingType", op_delete_thing_type, false},
    {"POST", "/thing-types/{thingTypeName}/deprecate", "DeprecateThingType",
     op_deprecate_thing_type, false},

    {"GET", "/thing-groups", "ListThingGroups", op_list_thing_groups, false},
    {"PUT", "/thing-groups/addThingToThingGroup", "AddThingToThingGroup",
     op_add_thing_to_thing_group, false},
    {"PUT", "/thing-groups/removeThingFromThingGroup", "RemoveThingFromThingGroup",
     op_remove_thing_from_thing_group, false},
    {"POST", "/thing-groups/{thingGroupName}", "CreateThingGroup", op_create_thing_group, false},
    {"GET", "/thing-groups/{thingGroupName}", "DescribeThingGroup", op_describe_thing_group, false},
    {"DELETE", "/thing-groups/{thingGroupName}", "DeleteThingGroup", op_delete_thing_group, false},
    {"GET", "/thing-groups/{thingGroupName}/things", "ListThingsInThingGroup",
     op_list_things_in_thing_group, false},

    {"POST", "/keys-and-certificate", "CreateKeysAndCertificate", op_create_keys_and_certificate,
     false},
    {"POST", "/certificates", "CreateCertificateFromCsr", op_create_certificate_from_csr, false},
    {"GET", "/certificates", "ListCertificates", op_list_certificates, false},
    {"GET", "/certificates/{certificateId}", "DescribeCertificate", op_describe_certificate, false},
    {"PUT", "/certificates/{certificateId}", "UpdateCertificate", op_update_certificate, false},
    {"DELETE", "/certificates/{certificateId}", "DeleteCertificate", op_delete_certificate, false},

    {"GET", "/policies", "ListPolicies", op_list_policies, false},
    {"POST", "/policies/{policyName}", "CreatePolicy", op_create_policy, false},
    {"GET", "/policies/{policyName}", "GetPolicy", op_get_policy, false},
    {"DELETE", "/policies/{policyName}", "DeletePolicy", op_delete_policy, false},
    {"POST", "/policies/{policyName}/version", "CreatePolicyVersion", op_create_policy_version,
     false},
    {"GET", "/policies/{policyName}/version", "ListPolicyVersions", op_list_policy_versions, false},
    {"GET", "/policies/{policyName}/version/{policyVersionId}", "GetPolicyVersion",
     op_get_policy_version, false},
    {"PATCH", "/policies/{policyName}/version/{policyVersionId}", "SetDefaultPolicyVersion",
     op_set_default_policy_version, false},
    {"DELETE", "/policies/{policyName}/version/{policyVersionId}", "DeletePolicyVersion",
     op_delete_policy_version, false},
    {"PUT", "/target-policies/{policyName}", "AttachPolicy", op_attach_policy, false},
    {"POST", "/target-policies/{policyName}", "DetachPolicy", op_detach_policy, false},
    {"POST", "/attached-policies/{target}", "ListAttachedPolicies", op_list_attached_policies,
     false},
    {"POST", "/policy-targets/{policyName}", "ListTargetsForPolicy", op_list_targets_for_policy,
     false},
    {"GET", "/principal-policies", "ListPrincipalPolicies", op_list_principal_policies, false},
    {"PUT", "/principal-policies/{policyName}", "AttachPrincipalPolicy", op_attach_principal_policy,
     false},
    {"DELETE", "/principal-policies/{policyName}", "DetachPrincipalPolicy",
     op_detach_principal_policy, false},
    {"GET", "/policy-principals", "ListPolicyPrincipals", op_list_policy_principals, false},
    {"POST", "/test-authorization", "TestAuthorization", op_test_authorization, false},
    {"POST", "/effective-policies", "GetEffectivePolicies", op_get_effective_policies, false},

    {"POST", "/provisioning-templates", "CreateProvisioningTemplate",
     op_create_provisioning_template, false},
    {"GET", "/provisioning-templates", "ListProvisioningTemplates", op_list_provisioning_templates,
     false},
    {"GET", "/provisioning-templates/{templateName}", "DescribeProvisioningTemplate",
     op_describe_provisioning_template, false},
    {"PATCH", "/provisioning-templates/{templateName}", "UpdateProvisioningTemplate",
     op_update_provisioning_template, false},
    {"DELETE", "/provisioning-templates/{templateName}", "DeleteProvisioningTemplate",
     op_delete_provisioning_template, false},
    {"POST", "/provisioning-templates/{templateName}/versions", "CreateProvisioningTemplateVersion",
     op_create_provisioning_template_version, false},
    {"GET", "/provisioning-templates/{templateName}/versions", "ListProvisioningTemplateVersions",
     op_list_provisioning_template_versions, false},
    {"GET", "/provisioning-templates/{templateName}/versions/{versionId}",
     "DescribeProvisioningTemplateVersion", op_describe_provisioning_template_version, false},
    {"DELETE", "/provisioning-templates/{templateName}/versions/{versionId}",
     "DeleteProvisioningTemplateVersion", op_delete_provisioning_template_version, false},
    {"POST", "/provisioning-templates/{templateName}/provisioning-claim", "CreateProvisioningClaim",
     op_create_provisioning_claim, false},

    {"GET", "/registrationcode", "GetRegistrationCode", op_get_registration_code, false},
    {"DELETE", "/registrationcode", "DeleteRegistrationCode", op_delete_registration_code, false},
    {"POST", "/cacertificate", "RegisterCACertificate", op_register_ca_certificate, false},
    {"GET", "/cacertificates", "ListCACertificates", op_list_ca_certificates, false},
    {"GET", "/cacertificate/{caCertificateId}", "DescribeCACertificate",
     op_describe_ca_certificate, false},
    {"PUT", "/cacertificate/{caCertificateId}", "UpdateCACertificate", op_update_ca_certificate,
     false},
    {"DELETE", "/cacertificate/{caCertificateId}", "DeleteCACertificate",
     op_delete_ca_certificate, false},
    {"POST", "/certificate/register", "RegisterCertificate", op_register_certificate, false},
    {"POST", "/certificate/register-no-ca", "RegisterCertificateWithoutCA",
     op_register_certificate_without_ca, false},
    {"GET", "/certificates-by-ca/{caCertificateId}", "ListCertificatesByCA",
     op_list_certificates_by_ca, false},

    {"GET", "/endpoint", "DescribeEndpoint", op_describe_endpoint, false},
    {"GET", "/event-configurations", "DescribeEventConfigurations",
     op_describe_event_configurations, false},
    {"PATCH", "/event-configurations", "UpdateEventConfigurations", op_update_event_configurations,
     false},
};
#define ROUTE_COUNT (sizeof(ROUTES) / sizeof(ROUTES[0]))

#define SEGMENTS_MAX 16

/* A path cut into its raw segments (pointers into a copy). */
struct path {
    char *copy;
    const char *seg[SEGMENTS_MAX];
    int n;
};

static bool split(const char *url, struct path *p)
{
    p->n = 0;
    p->copy = strdup(url[0] == '/' ? url + 1 : url);
    if (p->copy == NULL)
        return false;
    char *s = p->copy;
    for (;;) {
        if (p->n == SEGMENTS_MAX)
            return false;
        p->seg[p->n++] = s;
        char *slash = strchr(s, '/');
        if (slash == NULL)
            return true;
        *slash = '\0';
        s = slash + 1;
    }
}

/* Whether PATTERN matches segments [from, n) of P. Literals compare against decoded segments. */
static bool matches(const char *pattern, const struct path *p, int from)
{
    char buf[256];
    snprintf(buf, sizeof(buf), "%s", pattern + 1);
    int i = from;
    for (char *save = NULL, *part = strtok_r(buf, "/", &save); part;
         part = strtok_r(NULL, "/", &save), i++) {
        if (i >= p->n || p->seg[i][0] == '\0')
            return false;
        if (part[0] == '{')
            continue;
        char *decoded = http_percent_decode(p->seg[i], strlen(p->seg[i]));
        bool same = decoded != NULL && strcmp(decoded, part) == 0;
        free(decoded);
        if (!same)
            return false;
    }
    return i == p->n;
}

/* Fills REQ's params from the {member} segments of ROUTE. false for a malformed escape. */
static bool bind_params(struct http_request *req, const struct route *route, const struct path *p,
                        int from)
{
    int seg = from, param = 0;
    for (const char *c = route->pattern; *c; c++) {
        if (*c != '/')
            continue;
        if (c[1] == '{' && param < HTTP_PARAMS_MAX) {
            const char *raw = p->seg[seg];
            req->params[param] = request_keep(req, http_percent_decode(raw, strlen(raw)));
            if (req->params[param++] == NULL)
                return false;
        }
        seg++;
    }
    return true;
}

/* §6.1: SigV4 is accepted with the credential scope of either signing name the IoT model has
 * used (iot, and execute-api before 2023) and never verified: the emulator has no secrets. A
 * request signed for some other service is a misconfigured client, and AWS refuses it too. */
static bool scope_ok(const struct http_request *req, struct http_reply *rep)
{
    const char *auth = req_header(req, "Authorization");
    const char *cred =
        auth && strncmp(auth, "AWS4-HMAC-SHA256", 16) == 0 ? strstr(auth, "Credential=") : NULL;
    if (cred == NULL)
        return true;
    const char *p = cred + strlen("Credential=");
    for (int slash = 0; slash < 3; slash++) { /* key/date/region/service/aws4_request */
        p = strchr(p, '/');
        if (p == NULL)
            return true;
        p++;
    }
    size_t n = strcspn(p, "/, ");
    if ((n == 3 && strncmp(p, "iot", 3) == 0) || (n == 11 && strncmp(p, "execute-api", 11) == 0))
        return true;
    reply_error(rep, 403, "InvalidSignatureException",
                "Credential should be scoped to correct service: 'iot' (got '%.*s')", (int)n, p);
    return false;
}

static void dispatch(struct http_request *req, const struct route *r, const struct path *p,
                     int from, struct http_reply *rep)
{
    req->op = r->op;
    if (!bind_params(req, r, p, from)) {
        reply_invalid(rep, "The request path has a malformed percent-encoding");
        return;
    }
    if (!r->internal && !scope_ok(req, rep))
        return;
    r->handler(req, rep);
}

void http_route(struct http_request *req, const char *url, struct http_reply *rep)
{
    struct path p = {0};
    if (!split(url, &p)) {
        free(p.copy);
        reply_error(rep, 404, "UnknownOperationException", "No operation has the path %s", url);
        return;
    }
    for (int from = 0; from <= HTTP_PREFIX_MAX && from < p.n; from++) {
        char others[512] = "";
        size_t used = 0;
        for (size_t i = 0; i < ROUTE_COUNT; i++) {
            if (!matches(ROUTES[i].pattern, &p, from))
                continue;
            if (strcmp(ROUTES[i].method, req->method) == 0) {
                dispatch(req, &ROUTES[i], &p, from, rep);
                free(p.copy);
                return;
            }
            int n = snprintf(others + used, sizeof(others) - used, "%s%s (%s)", used ? ", " : "",
                             ROUTES[i].method, ROUTES[i].op);
            if (n > 0 && (size_t)n < sizeof(others) - used)
                used += (size_t)n;
        }
        if (used > 0) {
            reply_error(rep, 405, "MethodNotAllowedException",
                        "iotmock has no %s operation at %s; it has %s", req->method, url, others);
            free(p.copy);
            return;
        }
    }
    free(p.copy);
    reply_error(rep, 404, "UnknownOperationException",
                "iotmock implements no AWS IoT operation at %s %s", req->method, url);
}
