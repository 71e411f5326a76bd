/* Provisioning templates (shared/spec/provisioning.md §2).
 *
 * template_parse() checks the structure of a body once, when it is stored, so that a broken
 * template is refused at CreateProvisioningTemplate rather than at a device's RegisterThing.
 * template_render() evaluates parameters and intrinsic functions (§2.5) into a plan of concrete
 * strings; template_apply() checks every resource the plan names and then writes it in a single
 * registry transaction (§2.7 steps 6-7). */
#include "template.h"

#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>

#define THING_NAME_MAX 128 /* AWS ThingName: [a-zA-Z0-9:_-]{1,128} */

struct template
{
    cJSON *root;
    const cJSON *parameters; /* borrowed from root; NULL when the section is absent */
    const cJSON *mappings;
    const cJSON *resources;
    const cJSON *device_configuration;
};

enum override { OVERRIDE_DO_NOTHING, OVERRIDE_REPLACE, OVERRIDE_FAIL, OVERRIDE_MERGE };

struct plan_thing {
    char *resource; /* logical name, for messages */
    char *name;
    char *type_name;   /* NULL when the template sets no ThingTypeName */
    cJSON *attributes; /* object name -> string; NULL when no AttributePayload */
    cJSON *groups;     /* array of strings; NULL when no ThingGroups */
    enum override on_attributes, on_type, on_groups;
};

struct plan_policy {
    char *resource; /* logical name, for messages */
    char *name;
    char *document; /* minified; NULL for a PolicyName reference */
};

struct template_plan {
    struct plan_thing *thing; /* NULL when the template has no thing resource */
    bool has_certificate;
    char *certificate_resource;
    char *certificate_id;
    enum cert_status status;
    struct plan_policy *policies;
    size_t n_policies;
    cJSON *device_configuration;
};

/* ---- small helpers --------------------------------------------------------------------- */

static char *dup_str(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d != NULL)
        memcpy(d, s, n);
    return d;
}

static enum iot_err nomem(struct iot_error *err)
{
    return iot_error_set(err, IOT_ERR_NOMEM, "Out of memory while processing the template");
}

/* A growing string for Fn::Join and Fn::Sub. */
struct sbuf {
    char *p;
    size_t len, cap;
    bool failed;
};

static void sbuf_add(struct sbuf *b, const char *s, size_t n)
{
    if (b->failed)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = (b->len + n + 1) * 2;
        char *p = realloc(b->p, cap);
        if (p == NULL) {
            b->failed = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

/* Hands the text over as a cJSON string, freeing the buffer. */
static enum iot_err sbuf_finish(struct sbuf *b, cJSON **out, struct iot_error *err)
{
    sbuf_add(b, "", 0);
    *out = b->failed ? NULL : cJSON_CreateString(b->p ? b->p : "");
    free(b->p);
    return *out ? IOT_OK : nomem(err);
}

static bool is_intrinsic_key(const char *key)
{
    return key != NULL && (strcmp(key, "Ref") == 0 || strncmp(key, "Fn::", 4) == 0);
}

/* If NODE uses the {"Ref": ...} / {"Fn::X": ...} syntax, the member naming the function. */
static const cJSON *intrinsic_call(const cJSON *node)
{
    if (!cJSON_IsObject(node))
        return NULL;
    for (const cJSON *c = node->child; c != NULL; c = c->next)
        if (is_intrinsic_key(c->string))
            return c;
    return NULL;
}

/* A literal string or anything an intrinsic function may turn into one. */
static bool is_text_node(const cJSON *node)
{
    return cJSON_IsString(node) || intrinsic_call(node) != NULL;
}

/* Fn::Select's index: a non-negative integer, as a JSON number or a numeric string (§2.5). */
static bool index_parse(const cJSON *node, int *out)
{
    if (cJSON_IsNumber(node)) {
        double d = node->valuedouble;
        if (d < 0 || d > INT_MAX || d != (double)(int)d)
            return false;
        *out = (int)d;
        return true;
    }
    if (!cJSON_IsString(node))
        return false;
    const char *s = node->valuestring;
    size_t n = strlen(s);
    if (n == 0 || n > 9 || strspn(s, "0123456789") != n)
        return false;
    *out = atoi(s);
    return true;
}

static bool name_chars_valid(const char *s, size_t max)
{
    size_t n = strlen(s);
    return n >= 1 && n <= max &&
           strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789:_-") == n;
}

int template_name_valid(const char *name)
{
    if (name == NULL)
        return 0;
    size_t n = strlen(name);
    return n >= 1 && n <= TEMPLATE_NAME_MAX &&
           strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") == n;
}

/* ---- override settings (§2.4) ---------------------------------------------------------- */

struct override_key {
    const char *name;
    const char *alias; /* the SNAKE_CASE spelling of the prose in [TPL]; NULL if none */
    bool merge_ok;
};

static const struct override_key thing_overrides[] = {
    {"AttributePayload", "ATTRIBUTE_PAYLOAD", true},
    {"ThingTypeName", "THING_TYPE_NAME", false},
    {"ThingGroups", "THING_GROUPS", true},
    {NULL, NULL, false},
};

static const struct override_key certificate_overrides[] = {
    {"Status", NULL, false},
    {NULL, NULL, false},
};

static const struct override_key *override_key_find(const struct override_key *keys,
                                                    const char *key)
{
    for (; keys->name != NULL; keys++)
        if (strcmp(key, keys->name) == 0 || (keys->alias && strcmp(key, keys->alias) == 0))
            return keys;
    return NULL;
}

/* iotmock compares the value case-insensitively, as it does Status (§2.3). */
static bool override_parse(const char *s, enum override *out)
{
    static const char *const names[] = {"DO_NOTHING", "REPLACE", "FAIL", "MERGE"};
    for (int i = 0; i < 4; i++) {
        if (strcasecmp(s, names[i]) == 0) {
            *out = (enum override)i;
            return true;
        }
    }
    return false;
}

/* The setting for KEY in a validated OverrideSettings object; DO_NOTHING when omitted (§2.4:
 * AWS documents no default; this is iotmock's choice). */
static enum override override_of(const cJSON *settings, const struct override_key *keys,
                                 const char *key)
{
    const struct override_key *want = override_key_find(keys, key);
    enum override v = OVERRIDE_DO_NOTHING;
    for (const cJSON *c = settings ? settings->child : NULL; c != NULL; c = c->next)
        if (override_key_find(keys, c->string) == want && cJSON_IsString(c))
            override_parse(c->valuestring, &v);
    return v;
}

static bool certificate_status_parse(const char *s, enum cert_status *out)
{
    if (strcasecmp(s, "ACTIVE") == 0)
        *out = CERT_STATUS_ACTIVE;
    else if (strcasecmp(s, "INACTIVE") == 0)
        *out = CERT_STATUS_INACTIVE;
    else
        return false;
    return true;
}

/* ---- intrinsic functions: the table ---------------------------------------------------- */

struct render_ctx {
    const struct template *t;
    const cJSON *params;
};

struct intrinsic {
    const char *name;
    int n_args; /* length of the argument list; 0 = not a list (Ref, Fn::Sub) */
    enum iot_err (*check)(const cJSON *args, const char *where, struct iot_error *err);
    enum iot_err (*eval)(const struct render_ctx *c, const cJSON *args, cJSON **out,
                         struct iot_error *err);
};

static const struct intrinsic *intrinsic_find(const char *name);
static enum iot_err check_value(const cJSON *node, const char *where, struct iot_error *err);
static enum iot_err eval(const struct render_ctx *c, const cJSON *node, cJSON **out,
                         struct iot_error *err);

/* ---- intrinsic functions: validation at parse time ------------------------------------- */

static enum iot_err check_ref(const cJSON *arg, const char *where, struct iot_error *err)
{
    if (!cJSON_IsString(arg) || arg->valuestring[0] == '\0')
        return iot_error_set(err, IOT_ERR_INVALID_REQUEST,
                             "Ref in %s must name a parameter as a string", where);
    return IOT_OK;
}

static enum iot_err check_join(const cJSON *args, const char *where, struct iot_error *err)
{
    const cJSON *list = cJSON_GetArrayItem(args, 1);
    if (!cJSON_IsString(cJSON_GetArrayItem(args, 0)))
        return iot_error_set(err, IOT_ERR_INVALID_REQUEST,
                             "The Fn::Join delimiter in %s must be a string", where);
    if (!cJSON_IsArray(list) && intrinsic_call(list) == NULL)
        return iot_error_set(err, IOT_ERR_INVALID_REQUEST,
                             "Fn::Join in %s needs a list of values to join", where);
    return check_value(list, where, err);
}

static enum iot_err check_select(const cJSON *args, const char *where, struct iot_error *err)
{
    const cJSON *index = cJSON_GetArrayItem(args, 0), *list = cJSON_GetArrayItem(args, 1);
    int i;
    if (intrinsic_call(index) == NULL && !index_parse(index, &i))
        return iot_error_set(err, IOT_ERR_INVALID_REQUEST,
                             "The Fn::Select index in %s must be a non-negative integer", where);
    if (!cJSON_IsArray(list) && intrinsic_call(list) == NULL)
        return iot_error_set(err, IOT_ERR_INVALID_REQUEST,
                             "Fn::Select in %s needs a list to select from", where);
    enum iot_err rc = check_value(index, where, err);
    return rc != IOT_OK ? rc : check_value(list, where, err);
}

static enum iot_err check_split(const cJSON *args, const char *where, struct iot_error *err)
{
    const cJSON *delim = cJSON_GetArrayItem(args, 0), *source = cJSON_GetArrayItem(args, 1);
    if (!cJSON_IsString(delim) || delim->valuestring[0] == '\0')
        return iot_error_set(err, IOT_ERR_INVALID_REQUEST,
                             "The Fn::Split delimiter in %s must be a non-empty string", where);
    if (!is_text_node(source))
        return iot_error_set(err, IOT_ERR_INVALID_REQUEST,
                             "Fn::Split in %s needs a string to split", where);
    return check_value(source, where, err);
}

static enum iot_err check_find_in_map(const cJSON *args, const char *where, struct iot_error *err)
{
    for (const cJSON *a = args->child; a != NULL; a = a->next) {
        if (!is_text_node(a))
            return iot_error_set(err, IOT_ERR_INVALID_REQUEST,
                                 "Fn::FindInMap in %s takes a map name and two keys as strings",
                                 where);
        enum iot_err rc = check_value(a, where, err);
        if (rc != IOT_OK)
            return rc;
    }
    return IOT_OK;
}

/* ${Name} placeholders; ${!Text} is CloudFormation's escape for a literal "${Text}". */
static enum iot_err check_sub_text(const char *s, const char *where, struct iot_error *err)
{
    for (const char *p = strstr(s, "${"); p != NULL; p = strstr(p, "${")) {
        const char *end = strchr(p + 2, '}');
        if (p[2] == '!') {
            p += 3;
            continue;
        }
        if (end == NULL)
            return iot_error_set(err, IOT_ERR_INVALID_REQUEST,
                                 "Fn::Sub in %s has a \"${\" without its closing \"}\"", where);
        if (end == p + 2)
            return iot_error_set(err, IOT_ERR_INVALID_REQUEST,
                                 "Fn::Sub in %s has an empty ${} placeholder", where);
        p = end + 1;
    }
    return IOT_OK;
}

/* Fn::Sub: "text" or ["text", {"Var": value, ...}] (the array form is CloudFormation's; §2.5
 * marks it unconfirmed for IoT, iotmock accepts it). */
static enum iot_err check_sub(const cJSON *arg, const char *where, struct iot_error *err)
{
    if (cJSON_IsString(arg))
        return check_sub_text(arg->valuestring, where, err);
    const cJSON *text = cJSON_GetArrayItem(arg, 0), *vars = cJSON_GetArrayItem(arg, 1);
    if (!cJSON_IsArray(arg) || cJSON_GetArraySize(arg) != 2 || !cJSON_IsString(text) ||
        !cJSON_IsObject(vars) || intrinsic_call(vars) != NULL)
        return iot_error_set(err, IOT_ERR_INVALID_REQUEST,
                             "Fn::Sub in %s takes a string, or a list of a string and an "
                             "object of variables",
                             where);
    enum iot_err rc = check_sub_text(text->valuestring, where, err);
    for (const cJSON *v = vars->child; v != NULL && rc == IOT_OK; v = v->next)
        rc = check_value(v, where, err);
    return rc;
}

static enum iot_err check_call(const cJSON *node, const cJSON *call, const char *where,
                               struct iot_error *err)
{
    const struct intrinsic *fn = intrinsic_find(call->string);
    if (fn == NULL)
        return iot_error_set(err, IOT_ERR_INVALID_REQUEST,
                             "Unsupported intrinsic function %s in %s (supported: Ref, Fn::Join, "
                             "Fn::Select, Fn::Split, Fn::FindInMap, Fn::Sub)",
                             call->string, where);
    if (cJSON_GetArraySize(node) != 1)
        return iot_error_set(err, IOT_ERR_INVALID_REQUEST,
                             "%s in %s must be the only key of its object", fn->name, where);
    if (fn->n_args > 0 && (!cJSON_IsArray(call) || cJSON_GetArraySize(call) != fn->n_args))
        return iot_error_set(err, IOT_ERR_INVALID_REQUEST, "%s in %s takes a list of %d values",
                             fn->name, where, fn->n_args);
    return fn->check(call, where, err);
}

/* Walks NODE and validates every intrinsic function call in it. */
static enum iot_err check_value(const cJSON *node, const char *where, struct iot_error *err)
{
    const cJSON *call = intrinsic_call(node);
    if (call != NULL)
        return check_call(node, call, where, err);
    if (cJSON_IsObject(node) || cJSON_IsArray(node)) {
        for (const cJSON *c = node->child; c != NULL; c = c->next) {
            enum iot_err rc = check_value(c, where, err);
            if (rc != IOT_OK)
                return rc;
        }
    }
    return IOT_OK;
}

/* ---- intrinsic functions: evaluation --------------------------------------------------- */

/* A parameter's value: PARAMS (already merged by the caller, §2.2), else the declared Default. */
static enum iot_err param_value(const struct render_ctx *c, const char *name, const char **out,
                                struct iot_error *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(c->params, name);
    if (!cJSON_IsString(v)) {
        const cJSON *decl = cJSON_GetObjectItemCaseSensitive(c->t->parameters, name);
        v = cJSON_GetObjectItemCaseSensitive(decl, "Default");
    }
    if (!cJSON_IsString(v))
        return iot_error_set(err, IOT_ERR_INVALID_PARAMS,
                             "Parameter %s has no value and no Default", name);
    *out = v->valuestring;
    return IOT_OK;
}

/* A scalar as text: strings as they are, numbers and booleans printed (§2.2 DeviceConfiguration:
 * AWS leaves these undocumented; iotmock stringifies them everywhere a string is expected). */
static enum iot_err scalar_text(const cJSON *v, const char *what, char **out, struct iot_error *err)
{
    if (cJSON_IsString(v))
        *out = dup_str(v->valuestring);
    else if (cJSON_IsBool(v))
        *out = dup_str(cJSON_IsTrue(v) ? "true" : "false");
    else if (cJSON_IsNumber(v))
        *out = cJSON_PrintUnformatted(v);
    else
        return iot_error_set(err, IOT_ERR_INVALID_PARAMS, "%s must evaluate to a string", what);
    return *out ? IOT_OK : nomem(err);
}

static enum iot_err eval_text(const struct render_ctx *c, const cJSON *node, const char *what,
                              char **out, struct iot_error *err)
{
    cJSON *v = NULL;
    enum iot_err rc = eval(c, node, &v, err);
    if (rc == IOT_OK)
        rc = scalar_text(v, what, out, err);
    cJSON_Delete(v);
    return rc;
}

/* NODE evaluated to a new array of strings. */
static enum iot_err eval_list(const struct render_ctx *c, const cJSON *node, const char *what,
                              cJSON **out, struct iot_error *err)
{
    cJSON *v = NULL, *list = NULL;
    enum iot_err rc = eval(c, node, &v, err);
    if (rc == IOT_OK && !cJSON_IsArray(v))
        rc = iot_error_set(err, IOT_ERR_INVALID_PARAMS, "%s must evaluate to a list", what);
    if (rc == IOT_OK && (list = cJSON_CreateArray()) == NULL)
        rc = nomem(err);
    for (const cJSON *e = v ? v->child : NULL; e != NULL && rc == IOT_OK; e = e->next) {
        char *s = NULL;
        rc = scalar_text(e, what, &s, err);
        if (rc == IOT_OK && !cJSON_AddItemToArray(list, cJSON_CreateString(s)))
            rc = nomem(err);
        free(s);
    }
    cJSON_Delete(v);
    if (rc != IOT_OK)
        cJSON_Delete(list);
    else
        *out = list;
    return rc;
}

static enum iot_err ev_ref(const struct render_ctx *c, const cJSON *arg, cJSON **out,
                           struct iot_error *err)
{
    const char *value = NULL;
    enum iot_err rc = param_value(c, arg->valuestring, &value, err);
    if (rc != IOT_OK)
        return rc;
    *out = cJSON_CreateString(value);
    return *out ? IOT_OK : nomem(err);
}

static enum iot_err ev_join(const struct render_ctx *c, const cJSON *args, cJSON **out,
                            struct iot_error *err)
{
    const char *delim = cJSON_GetArrayItem(args, 0)->valuestring;
    cJSON *list = NULL;
    enum iot_err rc = eval_list(c, cJSON_GetArrayItem(args, 1), "Each Fn::Join value", &list, err);
    if (rc != IOT_OK)
        return rc;
    struct sbuf b = {0};
    for (const cJSON *e = list->child; e != NULL; e = e->next) {
        if (e != list->child)
            sbuf_add(&b, delim, strlen(delim));
        sbuf_add(&b, e->valuestring, strlen(e->valuestring));
    }
    cJSON_Delete(list);
    return sbuf_finish(&b, out, err);
}

static enum iot_err ev_select(const struct render_ctx *c, const cJSON *args, cJSON **out,
                              struct iot_error *err)
{
    cJSON *index = NULL, *list = NULL;
    int i = 0;
    enum iot_err rc = eval(c, cJSON_GetArrayItem(args, 0), &index, err);
    if (rc == IOT_OK && !index_parse(index, &i))
        rc = iot_error_set(err, IOT_ERR_INVALID_PARAMS,
                           "The Fn::Select index must be a non-negative integer");
    if (rc == IOT_OK)
        rc = eval_list(c, cJSON_GetArrayItem(args, 1), "The Fn::Select list", &list, err);
    if (rc == IOT_OK && i >= cJSON_GetArraySize(list))
        rc = iot_error_set(err, IOT_ERR_INVALID_PARAMS,
                           "Fn::Select index %d is out of range for a list of %d values", i,
                           cJSON_GetArraySize(list));
    if (rc == IOT_OK)
        *out = cJSON_DetachItemFromArray(list, i);
    cJSON_Delete(index);
    cJSON_Delete(list);
    return rc;
}

static enum iot_err ev_split(const struct render_ctx *c, const cJSON *args, cJSON **out,
                             struct iot_error *err)
{
    const char *delim = cJSON_GetArrayItem(args, 0)->valuestring;
    size_t dlen = strlen(delim);
    char *text = NULL;
    enum iot_err rc = eval_text(c, cJSON_GetArrayItem(args, 1), "The Fn::Split source", &text, err);
    if (rc != IOT_OK)
        return rc;
    cJSON *list = cJSON_CreateArray();
    bool ok = list != NULL;
    char *p = text;
    for (char *hit = strstr(p, delim); ok; hit = strstr(p, delim)) {
        size_t n = hit ? (size_t)(hit - p) : strlen(p);
        char save = p[n];
        p[n] = '\0';
        ok = cJSON_AddItemToArray(list, cJSON_CreateString(p));
        p[n] = save;
        if (hit == NULL)
            break;
        p = hit + dlen;
    }
    free(text);
    if (!ok) {
        cJSON_Delete(list);
        return nomem(err);
    }
    *out = list;
    return IOT_OK;
}

static enum iot_err ev_find_in_map(const struct render_ctx *c, const cJSON *args, cJSON **out,
                                   struct iot_error *err)
{
    char *key[3] = {NULL, NULL, NULL};
    enum iot_err rc = IOT_OK;
    const cJSON *a = args->child;
    for (int i = 0; i < 3 && rc == IOT_OK; i++, a = a->next)
        rc = eval_text(c, a, "Each Fn::FindInMap argument", &key[i], err);
    if (rc == IOT_OK) {
        const cJSON *v = c->t->mappings;
        for (int i = 0; i < 3; i++)
            v = cJSON_GetObjectItemCaseSensitive(v, key[i]);
        if (v == NULL)
            rc = iot_error_set(err, IOT_ERR_INVALID_PARAMS,
                               "Fn::FindInMap found no value for [%s, %s, %s] in Mappings", key[0],
                               key[1], key[2]);
        else if ((*out = cJSON_Duplicate(v, true)) == NULL)
            rc = nomem(err);
    }
    for (int i = 0; i < 3; i++)
        free(key[i]);
    return rc;
}

/* One ${Name}: a variable of the array form first, then a parameter. */
static enum iot_err sub_lookup(const struct render_ctx *c, const cJSON *vars, const char *name,
                               struct sbuf *b, struct iot_error *err)
{
    const cJSON *var = cJSON_GetObjectItemCaseSensitive(vars, name);
    if (var != NULL) {
        char *s = NULL;
        enum iot_err rc = eval_text(c, var, "Each Fn::Sub variable", &s, err);
        if (rc == IOT_OK)
            sbuf_add(b, s, strlen(s));
        free(s);
        return rc;
    }
    const char *value = NULL;
    enum iot_err rc = param_value(c, name, &value, err);
    if (rc == IOT_OK)
        sbuf_add(b, value, strlen(value));
    return rc;
}

static enum iot_err ev_sub(const struct render_ctx *c, const cJSON *arg, cJSON **out,
                           struct iot_error *err)
{
    const cJSON *vars = cJSON_IsArray(arg) ? cJSON_GetArrayItem(arg, 1) : NULL;
    const char *p = cJSON_IsArray(arg) ? cJSON_GetArrayItem(arg, 0)->valuestring : arg->valuestring;
    struct sbuf b = {0};
    enum iot_err rc = IOT_OK;
    for (const char *hit = strstr(p, "${"); hit != NULL && rc == IOT_OK; hit = strstr(p, "${")) {
        sbuf_add(&b, p, (size_t)(hit - p));
        if (hit[2] == '!') { /* ${!Text} -> ${Text} */
            sbuf_add(&b, "${", 2);
            p = hit + 3;
            continue;
        }
        const char *end = strchr(hit, '}'); /* present: checked at parse */
        size_t n = (size_t)(end - hit - 2);
        char *name = malloc(n + 1);
        if (name == NULL) {
            rc = nomem(err);
            break;
        }
        memcpy(name, hit + 2, n);
        name[n] = '\0';
        rc = sub_lookup(c, vars, name, &b, err);
        free(name);
        p = end + 1;
    }
    sbuf_add(&b, p, strlen(p));
    if (rc != IOT_OK) {
        free(b.p);
        return rc;
    }
    return sbuf_finish(&b, out, err);
}

static const struct intrinsic intrinsics[] = {
    {"Ref", 0, check_ref, ev_ref},
    {"Fn::Join", 2, check_join, ev_join},
    {"Fn::Select", 2, check_select, ev_select},
    {"Fn::Split", 2, check_split, ev_split},
    {"Fn::FindInMap", 3, check_find_in_map, ev_find_in_map},
    {"Fn::Sub", 0, check_sub, ev_sub},
};

static const struct intrinsic *intrinsic_find(const char *name)
{
    for (size_t i = 0; i < sizeof(intrinsics) / sizeof(intrinsics[0]); i++)
        if (strcmp(name, intrinsics[i].name) == 0)
            return &intrinsics[i];
    return NULL;
}

/* A literal object or array with its members evaluated. */
static enum iot_err eval_members(const struct render_ctx *c, const cJSON *node, cJSON **out,
                                 struct iot_error *err)
{
    cJSON *copy = cJSON_IsArray(node) ? cJSON_CreateArray() : cJSON_CreateObject();
    if (copy == NULL)
        return nomem(err);
    for (const cJSON *m = node->child; m != NULL; m = m->next) {
        cJSON *v = NULL;
        enum iot_err rc = eval(c, m, &v, err);
        bool added =
            rc == IOT_OK && (cJSON_IsArray(node) ? cJSON_AddItemToArray(copy, v)
                                                 : cJSON_AddItemToObject(copy, m->string, v));
        if (!added) {
            cJSON_Delete(v);
            cJSON_Delete(copy);
            return rc != IOT_OK ? rc : nomem(err);
        }
    }
    *out = copy;
    return IOT_OK;
}

/* NODE with every intrinsic function in it evaluated; *out is new. */
static enum iot_err eval(const struct render_ctx *c, const cJSON *node, cJSON **out,
                         struct iot_error *err)
{
    *out = NULL;
    const cJSON *call = intrinsic_call(node);
    if (call != NULL) {
        const struct intrinsic *fn = intrinsic_find(call->string); /* known: checked at parse */
        return fn->eval(c, call, out, err);
    }
    if (cJSON_IsObject(node) || cJSON_IsArray(node))
        return eval_members(c, node, out, err);
    *out = cJSON_Duplicate(node, false);
    return *out ? IOT_OK : nomem(err);
}

/* ---- parse: sections ------------------------------------------------------------------- */

static enum iot_err check_parameters(const cJSON *params, struct iot_error *err)
{
    if (params == NULL)
        return IOT_OK;
    if (!cJSON_IsObject(params))
        return iot_error_set(err, IOT_ERR_INVALID_REQUEST, "Parameters must be an object");
    for (const cJSON *p = params->child; p != NULL; p = p->next) {
        if (!cJSON_IsObject(p) || !cJSON_IsString(cJSON_GetObjectItemCaseSensitive(p, "Type")))
            return iot_error_set(err, IOT_ERR_INVALID_REQUEST,
                                 "Parameter %s must be an object with a Type string", p->string);
        for (const cJSON *k = p->child; k != NULL; k = k->next) {
            if (strcmp(k->string, "Default") == 0 && !cJSON_IsString(k))
                return iot_error_set(err, IOT_ERR_INVALID_REQUEST,
                                     "The Default of parameter %s must be a string", p->string);
            if (strcmp(k->string, "Type") != 0 && strcmp(k->string, "Default") != 0 &&
                strcmp(k->string, "Description") != 0)
                return iot_error_set(err, IOT_ERR_INVALID_REQUEST,
                                     "Parameter %s has an unsupported key %s (supported: Type, "
                                     "Default, Description)",
                                     p->string, k->string);
        }
    }
    return IOT_OK;
}

/* A Mappings leaf: a string, number or boolean, or a list of strings. */
static bool mapping_value_valid(const cJSON *v)
{
    if (cJSON_IsArray(v)) {
        for (const cJSON *e = v->child; e != NULL; e = e->next)
            if (!cJSON_IsString(e))
                return false;
        return true;
    }
    return cJSON_IsString(v) || cJSON_IsNumber(v) || cJSON_IsBool(v);
}

static bool contains_intrinsic(const cJSON *node)
{
    if (intrinsic_call(node) != NULL)
        return true;
    for (const cJSON *c = node->child; c != NULL; c = c->next)
        if (contains_intrinsic(c))
            return true;
    return false;
}

static enum iot_err mapping_error(const char *map, const char *key, const cJSON *node,
                                  struct iot_error *err)
{
    if (contains_intrinsic(node))
        return iot_error_set(err, IOT_ERR_INVALID_REQUEST,
                             "Mappings may not contain intrinsic functions (found in map %s, "
                             "key %s)",
                             map, key);
    return iot_error_set(err, IOT_ERR_INVALID_REQUEST,
                         "Mappings must be MapName -> key -> key -> string (map %s, key %s)", map,
                         key);
}

/* MapName -> TopLevelKey -> SecondLevelKey -> value, nothing evaluated inside (§2.2). */
static enum iot_err check_map(const cJSON *map, struct iot_error *err)
{
    if (!cJSON_IsObject(map) || intrinsic_call(map) != NULL)
        return mapping_error(map->string, "-", map, err);
    for (const cJSON *top = map->child; top != NULL; top = top->next) {
        if (!cJSON_IsObject(top) || intrinsic_call(top) != NULL)
            return mapping_error(map->string, top->string, top, err);
        for (const cJSON *v = top->child; v != NULL; v = v->next)
            if (!mapping_value_valid(v))
                return mapping_error(map->string, v->string, v, err);
    }
    return IOT_OK;
}

static enum iot_err check_mappings(const cJSON *maps, struct iot_error *err)
{
    if (maps == NULL)
        return IOT_OK;
    if (!cJSON_IsObject(maps) || intrinsic_call(maps) != NULL)
        return iot_error_set(err, IOT_ERR_INVALID_REQUEST,
                             "Mappings must be an object and may not contain intrinsic functions");
    for (const cJSON *m = maps->child; m != NULL; m = m->next) {
        enum iot_err rc = check_map(m, err);
        if (rc != IOT_OK)
            return rc;
    }
    return IOT_OK;
}

static enum iot_err check_device_configuration(const cJSON *dc, struct iot_error *err)
{
    if (dc == NULL)
        return IOT_OK;
    if (!cJSON_IsObject(dc) || intrinsic_call(dc) != NULL)
        return iot_error_set(err, IOT_ERR_INVALID_REQUEST,
                             "DeviceConfiguration must be an object of name -> string");
    return check_value(dc, "DeviceConfiguration", err);
}

/* ---- parse: resources (§2.3) ----------------------------------------------------------- */

static enum iot_err render_thing(const struct render_ctx *c, const char *name,
                                 const cJSON *resource, struct template_plan *p,
                                 struct iot_error *err);
static enum iot_err render_certificate(const struct render_ctx *c, const char *name,
                                       const cJSON *resource, struct template_plan *p,
                                       struct iot_error *err);
static enum iot_err render_policy(const struct render_ctx *c, const char *name,
                                  const cJSON *resource, struct template_plan *p,
                                  struct iot_error *err);

/* Parses TEXT as a JSON object with nothing after it; NULL if it is not one. */
static cJSON *parse_object_text(const char *text)
{
    cJSON *doc = cJSON_ParseWithOpts(text, NULL, 1);
    if (doc != NULL && !cJSON_IsObject(doc)) {
        cJSON_Delete(doc);
        doc = NULL;
    }
    return doc;
}

static enum iot_err check_thing(const char *name, const cJSON *props, struct iot_error *err)
{
    const cJSON *attrs = cJSON_GetObjectItemCaseSensitive(props, "AttributePayload");
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(props, "ThingTypeName");
    const cJSON *groups = cJSON_GetObjectItemCaseSensitive(props, "ThingGroups");
    if (!is_text_node(cJSON_GetObjectItemCaseSensitive(props, "ThingName")))
        return iot_error_set(err, IOT_ERR_INVALID_REQUEST,
                             "Resource %s (AWS::IoT::Thing) needs a ThingName string", name);
    if (type != NULL && !is_text_node(type))
        return iot_error_set(err, IOT_ERR_INVALID_REQUEST,
                             "The ThingTypeName of resource %s must be a string", name);
    if (groups != NULL && !cJSON_IsArray(groups) && intrinsic_call(groups) == NULL)
        return iot_error_set(err, IOT_ERR_INVALID_REQUEST,
                             "The ThingGroups of resource %s must be a list of group names", name);
    if (attrs == NULL)
        return IOT_OK;
    /* In a template the payload is the attribute map itself, unlike the REST API (§2.3). */
    if (!cJSON_IsObject(attrs) || intrinsic_call(attrs) != NULL)
        return iot_error_set(err, IOT_ERR_INVALID_REQUEST,
                             "The AttributePayload of resource %s must be an object of name -> "
                             "string",
                             name);
    for (const cJSON *a = attrs->child; a != NULL; a = a->next)
        if ((cJSON_IsObject(a) && intrinsic_call(a) == NULL) || cJSON_IsArray(a))
            return iot_error_set(err, IOT_ERR_INVALID_REQUEST,
                                 "Attribute %s of resource %s must be a string", a->string, name);
    return IOT_OK;
}

static enum iot_err check_certificate(const char *name, const cJSON *props, struct iot_error *err)
{
    const cJSON *status = cJSON_GetObjectItemCaseSensitive(props, "Status");
    enum cert_status s;
    if (!is_text_node(cJSON_GetObjectItemCaseSensitive(props, "CertificateId")))
        return iot_error_set(err, IOT_ERR_INVALID_REQUEST,
                             "Resource %s (AWS::IoT::Certificate) needs a CertificateId, "
                             "normally {\"Ref\":\"AWS::IoT::Certificate::Id\"}",
                             name);
    if (status != NULL && !is_text_node(status))
        return iot_error_set(err, IOT_ERR_INVALID_REQUEST,
                             "The Status of resource %s must be a string", name);
    if (cJSON_IsString(status) && !certificate_status_parse(status->valuestring, &s))
        return iot_error_set(err, IOT_ERR_INVALID_REQUEST,
                             "The Status of resource %s must be ACTIVE or INACTIVE, not %s", name,
                             status->valuestring);
    return IOT_OK;
}

static enum iot_err check_policy(const char *name, const cJSON *props, struct iot_error *err)
{
    const cJSON *pname = cJSON_GetObjectItemCaseSensitive(props, "PolicyName");
    const cJSON *doc = cJSON_GetObjectItemCaseSensitive(props, "PolicyDocument");
    if ((pname == NULL) == (doc == NULL))
        return iot_error_set(err, IOT_ERR_INVALID_REQUEST,
                             "Resource %s (AWS::IoT::Policy) needs exactly one of PolicyName and "
                             "PolicyDocument",
                             name);
    if (pname != NULL && !is_text_node(pname))
        return iot_error_set(err, IOT_ERR_INVALID_REQUEST,
                             "The PolicyName of resource %s must be a string", name);
    if (doc == NULL || cJSON_IsObject(doc))
        return IOT_OK;
    /* §2.3: an escaped string (bulk/JITP examples) or a raw object (fleet examples). */
    cJSON *parsed = cJSON_IsString(doc) ? parse_object_text(doc->valuestring) : NULL;
    cJSON_Delete(parsed);
    if (parsed == NULL)
        return iot_error_set(err, IOT_ERR_INVALID_REQUEST,
                             "The PolicyDocument of resource %s must be a JSON object or a string "
                             "holding one",
                             name);
    return IOT_OK;
}

static const char *const thing_properties[] = {"ThingName", "AttributePayload", "ThingTypeName",
                                               "ThingGroups", NULL};
static const char *const certificate_properties[] = {"CertificateId", "Status", NULL};
static const char *const policy_properties[] = {"PolicyName", "PolicyDocument", NULL};

struct resource_kind {
    const char *type;
    bool single; /* at most one resource of this type per template (iotmock's rule) */
    const char *const *properties;
    const struct override_key *overrides; /* NULL: OverrideSettings not allowed */
    enum iot_err (*check)(const char *name, const cJSON *props, struct iot_error *err);
    enum iot_err (*render)(const struct render_ctx *c, const char *name, const cJSON *resource,
                           struct template_plan *p, struct iot_error *err);
};

static const struct resource_kind resource_kinds[] = {
    {"AWS::IoT::Thing", true, thing_properties, thing_overrides, check_thing, render_thing},
    {"AWS::IoT::Certificate", true, certificate_properties, certificate_overrides,
     check_certificate, render_certificate},
    {"AWS::IoT::Policy", false, policy_properties, NULL, check_policy, render_policy},
};
#define N_RESOURCE_KINDS (sizeof(resource_kinds) / sizeof(resource_kinds[0]))

static const struct resource_kind *resource_kind_find(const char *type)
{
    for (size_t i = 0; i < N_RESOURCE_KINDS; i++)
        if (strcmp(type, resource_kinds[i].type) == 0)
            return &resource_kinds[i];
    return NULL;
}

static bool name_listed(const char *const *names, const char *name)
{
    for (; *names != NULL; names++)
        if (strcmp(*names, name) == 0)
            return true;
    return false;
}

static enum iot_err check_overrides(const char *name, const struct resource_kind *kind,
                                    const cJSON *settings, struct iot_error *err)
{
    if (settings == NULL)
        return IOT_OK;
    if (kind->overrides == NULL)
        return iot_error_set(err, IOT_ERR_INVALID_REQUEST,
                             "OverrideSettings are not available for policies (resource %s)", name);
    if (!cJSON_IsObject(settings))
        return iot_error_set(err, IOT_ERR_INVALID_REQUEST,
                             "The OverrideSettings of resource %s must be an object", name);
    for (const cJSON *s = settings->child; s != NULL; s = s->next) {
        const struct override_key *key = override_key_find(kind->overrides, s->string);
        enum override v;
        if (key == NULL)
            return iot_error_set(err, IOT_ERR_INVALID_REQUEST,
                                 "Resource %s has an unsupported OverrideSettings key %s", name,
                                 s->string);
        if (!cJSON_IsString(s) || !override_parse(s->valuestring, &v))
            return iot_error_set(err, IOT_ERR_INVALID_REQUEST,
                                 "OverrideSettings %s of resource %s must be DO_NOTHING, REPLACE, "
                                 "FAIL or MERGE",
                                 s->string, name);
        if (v == OVERRIDE_MERGE && !key->merge_ok)
            return iot_error_set(err, IOT_ERR_INVALID_REQUEST,
                                 "MERGE is only available for AttributePayload and ThingGroups "
                                 "(resource %s, %s)",
                                 name, s->string);
    }
    return IOT_OK;
}

static enum iot_err check_resource_keys(const cJSON *r, struct iot_error *err)
{
    if (!cJSON_IsObject(r))
        return iot_error_set(err, IOT_ERR_INVALID_REQUEST, "Resource %s must be an object",
                             r->string);
    for (const cJSON *k = r->child; k != NULL; k = k->next) {
        if (strcmp(k->string, "Condition") == 0)
            return iot_error_set(err, IOT_ERR_INVALID_REQUEST,
                                 "Resource %s: conditions are not supported in provisioning "
                                 "templates",
                                 r->string);
        if (strcmp(k->string, "Type") != 0 && strcmp(k->string, "Properties") != 0 &&
            strcmp(k->string, "OverrideSettings") != 0)
            return iot_error_set(err, IOT_ERR_INVALID_REQUEST,
                                 "Resource %s has an unsupported key %s (supported: Type, "
                                 "Properties, OverrideSettings)",
                                 r->string, k->string);
    }
    return IOT_OK;
}

static enum iot_err check_properties(const char *name, const struct resource_kind *kind,
                                     const cJSON *props, struct iot_error *err)
{
    char where[128];
    snprintf(where, sizeof(where), "resource %s", name);
    if (!cJSON_IsObject(props) || intrinsic_call(props) != NULL)
        return iot_error_set(err, IOT_ERR_INVALID_REQUEST, "Resource %s needs a Properties object",
                             name);
    for (const cJSON *p = props->child; p != NULL; p = p->next) {
        if (!name_listed(kind->properties, p->string))
            return iot_error_set(err, IOT_ERR_INVALID_REQUEST,
                                 "Resource %s (%s) has an unsupported property %s", name,
                                 kind->type, p->string);
        enum iot_err rc = check_value(p, where, err);
        if (rc != IOT_OK)
            return rc;
    }
    return kind->check(name, props, err);
}

static enum iot_err check_resource(const cJSON *r, int counts[N_RESOURCE_KINDS],
                                   struct iot_error *err)
{
    enum iot_err rc = check_resource_keys(r, err);
    if (rc != IOT_OK)
        return rc;
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(r, "Type");
    const struct resource_kind *kind =
        cJSON_IsString(type) ? resource_kind_find(type->valuestring) : NULL;
    if (kind == NULL)
        return iot_error_set(err, IOT_ERR_INVALID_REQUEST,
                             "Resource %s has an unsupported Type %s (supported: AWS::IoT::Thing, "
                             "AWS::IoT::Certificate, AWS::IoT::Policy)",
                             r->string, cJSON_IsString(type) ? type->valuestring : "(none)");
    if (kind->single && counts[kind - resource_kinds]++ > 0)
        return iot_error_set(err, IOT_ERR_INVALID_REQUEST,
                             "A template may have only one %s resource (second: %s)", kind->type,
                             r->string);
    rc = check_properties(r->string, kind, cJSON_GetObjectItemCaseSensitive(r, "Properties"), err);
    if (rc != IOT_OK)
        return rc;
    return check_overrides(r->string, kind, cJSON_GetObjectItemCaseSensitive(r, "OverrideSettings"),
                           err);
}

static enum iot_err check_resources(const cJSON *resources, struct iot_error *err)
{
    int counts[N_RESOURCE_KINDS] = {0};
    if (resources == NULL)
        return IOT_OK;
    if (!cJSON_IsObject(resources) || intrinsic_call(resources) != NULL)
        return iot_error_set(err, IOT_ERR_INVALID_REQUEST,
                             "Resources must be an object of logical name -> resource");
    for (const cJSON *r = resources->child; r != NULL; r = r->next) {
        enum iot_err rc = check_resource(r, counts, err);
        if (rc != IOT_OK)
            return rc;
    }
    return IOT_OK;
}

/* ---- parse: the body ------------------------------------------------------------------- */

/* The limit is in characters (§2.1), so a UTF-8 sequence counts once. */
static size_t utf8_chars(const char *s, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++)
        n += ((unsigned char)s[i] & 0xC0) != 0x80;
    return n;
}

/* The whole of BODY must be one JSON value (whitespace after it is fine). */
static cJSON *parse_body(const char *body, size_t len)
{
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(body, len, &end, 0);
    if (root == NULL)
        return NULL;
    for (; end != NULL && end < body + len; end++) {
        if (strchr(" \t\r\n", *end) == NULL || *end == '\0') {
            cJSON_Delete(root);
            return NULL;
        }
    }
    return root;
}

static enum iot_err check_sections(const cJSON *root, struct iot_error *err)
{
    static const char *const sections[] = {"Parameters", "Mappings", "Resources",
                                           "DeviceConfiguration", NULL};
    for (const cJSON *s = root->child; s != NULL; s = s->next) {
        if (strcmp(s->string, "Conditions") == 0)
            return iot_error_set(err, IOT_ERR_INVALID_REQUEST,
                                 "The Conditions section is not supported in provisioning "
                                 "templates");
        if (!name_listed(sections, s->string))
            return iot_error_set(err, IOT_ERR_INVALID_REQUEST,
                                 "Unknown template section %s (supported: Parameters, Mappings, "
                                 "Resources, DeviceConfiguration)",
                                 s->string);
    }
    return IOT_OK;
}

static enum iot_err check_template(const struct template *t, struct iot_error *err)
{
    enum iot_err rc = check_sections(t->root, err);
    if (rc == IOT_OK)
        rc = check_parameters(t->parameters, err);
    if (rc == IOT_OK)
        rc = check_mappings(t->mappings, err);
    if (rc == IOT_OK)
        rc = check_resources(t->resources, err);
    if (rc == IOT_OK)
        rc = check_device_configuration(t->device_configuration, err);
    return rc;
}

enum iot_err template_parse(const char *body, size_t len, struct template **out,
                            struct iot_error *err)
{
    *out = NULL;
    if (body == NULL)
        return iot_error_set(err, IOT_ERR_INVALID_REQUEST, "The template body is missing");
    size_t chars = utf8_chars(body, len);
    if (chars > TEMPLATE_BODY_MAX)
        return iot_error_set(err, IOT_ERR_INVALID_REQUEST,
                             "The template body is %zu characters long; the limit is %d", chars,
                             TEMPLATE_BODY_MAX);
    cJSON *root = parse_body(body, len);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return iot_error_set(err, IOT_ERR_INVALID_REQUEST,
                             "The template body is not a valid JSON object");
    }
    struct template *t = calloc(1, sizeof(*t));
    if (t == NULL) {
        cJSON_Delete(root);
        return nomem(err);
    }
    t->root = root;
    t->parameters = cJSON_GetObjectItemCaseSensitive(root, "Parameters");
    t->mappings = cJSON_GetObjectItemCaseSensitive(root, "Mappings");
    t->resources = cJSON_GetObjectItemCaseSensitive(root, "Resources");
    t->device_configuration = cJSON_GetObjectItemCaseSensitive(root, "DeviceConfiguration");
    enum iot_err rc = check_template(t, err);
    if (rc != IOT_OK) {
        template_free(t);
        return rc;
    }
    *out = t;
    return IOT_OK;
}

void template_free(struct template *t)
{
    if (t == NULL)
        return;
    cJSON_Delete(t->root);
    free(t);
}

/* ---- render ---------------------------------------------------------------------------- */

static enum iot_err render_attributes(const struct render_ctx *c, const char *resource,
                                      const cJSON *node, cJSON **out, struct iot_error *err)
{
    cJSON *v = NULL, *attrs = cJSON_CreateObject();
    enum iot_err rc = attrs ? eval(c, node, &v, err) : nomem(err);
    for (const cJSON *a = v ? v->child : NULL; a != NULL && rc == IOT_OK; a = a->next) {
        char what[160], *s = NULL;
        snprintf(what, sizeof(what), "Attribute %s of resource %s", a->string, resource);
        rc = scalar_text(a, what, &s, err);
        if (rc == IOT_OK && !cJSON_AddItemToObject(attrs, a->string, cJSON_CreateString(s)))
            rc = nomem(err);
        free(s);
    }
    cJSON_Delete(v);
    if (rc != IOT_OK)
        cJSON_Delete(attrs);
    else
        *out = attrs;
    return rc;
}

static enum iot_err render_thing_properties(const struct render_ctx *c, const char *resource,
                                            const cJSON *props, struct plan_thing *th,
                                            struct iot_error *err)
{
    const cJSON *attrs = cJSON_GetObjectItemCaseSensitive(props, "AttributePayload");
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(props, "ThingTypeName");
    const cJSON *groups = cJSON_GetObjectItemCaseSensitive(props, "ThingGroups");
    enum iot_err rc = eval_text(c, cJSON_GetObjectItemCaseSensitive(props, "ThingName"),
                                "ThingName", &th->name, err);
    if (rc == IOT_OK && !name_chars_valid(th->name, THING_NAME_MAX))
        rc = iot_error_set(err, IOT_ERR_INVALID_PARAMS,
                           "Thing name \"%s\" is invalid: use 1-%d characters from a-z, A-Z, "
                           "0-9, ':', '_' and '-'",
                           th->name, THING_NAME_MAX);
    if (rc == IOT_OK && attrs != NULL)
        rc = render_attributes(c, resource, attrs, &th->attributes, err);
    if (rc == IOT_OK && type != NULL)
        rc = eval_text(c, type, "ThingTypeName", &th->type_name, err);
    if (rc == IOT_OK && groups != NULL)
        rc = eval_list(c, groups, "ThingGroups", &th->groups, err);
    return rc;
}

static enum iot_err render_thing(const struct render_ctx *c, const char *name,
                                 const cJSON *resource, struct template_plan *p,
                                 struct iot_error *err)
{
    const cJSON *settings = cJSON_GetObjectItemCaseSensitive(resource, "OverrideSettings");
    p->thing = calloc(1, sizeof(*p->thing));
    if (p->thing == NULL || (p->thing->resource = dup_str(name)) == NULL)
        return nomem(err);
    p->thing->on_attributes = override_of(settings, thing_overrides, "AttributePayload");
    p->thing->on_type = override_of(settings, thing_overrides, "ThingTypeName");
    p->thing->on_groups = override_of(settings, thing_overrides, "ThingGroups");
    return render_thing_properties(
        c, name, cJSON_GetObjectItemCaseSensitive(resource, "Properties"), p->thing, err);
}

/* The template's Status always applies: the certificate being provisioned is new (or, for JITP,
 * just auto-registered), so OverrideSettings.Status is accepted but has nothing to protect
 * (§2.4; iotmock's choice, AWS documents no default). */
static enum iot_err render_certificate(const struct render_ctx *c, const char *name,
                                       const cJSON *resource, struct template_plan *p,
                                       struct iot_error *err)
{
    const cJSON *props = cJSON_GetObjectItemCaseSensitive(resource, "Properties");
    const cJSON *status = cJSON_GetObjectItemCaseSensitive(props, "Status");
    char *text = NULL;
    p->has_certificate = true;
    p->status = CERT_STATUS_ACTIVE; /* §2.3: default ACTIVE */
    if ((p->certificate_resource = dup_str(name)) == NULL)
        return nomem(err);
    enum iot_err rc = eval_text(c, cJSON_GetObjectItemCaseSensitive(props, "CertificateId"),
                                "CertificateId", &p->certificate_id, err);
    if (rc == IOT_OK && status != NULL)
        rc = eval_text(c, status, "Status", &text, err);
    if (rc == IOT_OK && text != NULL && !certificate_status_parse(text, &p->status))
        rc = iot_error_set(err, IOT_ERR_INVALID_PARAMS,
                           "The Status of resource %s must be ACTIVE or INACTIVE, not %s", name,
                           text);
    free(text);
    return rc;
}

/* Lowercase hex SHA-256 of TEXT: the name of a policy given by its document (§2.3; AWS says
 * "a hash of the policy document" without the algorithm, this is iotmock's choice). */
static enum iot_err sha256_hex(const char *text, char **out, struct iot_error *err)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    if (!EVP_Digest(text, strlen(text), md, &n, EVP_sha256(), NULL))
        return iot_error_set(err, IOT_ERR_INTERNAL, "Could not hash the policy document");
    char *hex = malloc(2 * n + 1);
    if (hex == NULL)
        return nomem(err);
    for (unsigned int i = 0; i < n; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    *out = hex;
    return IOT_OK;
}

/* The document as minified text. A string is the document's text, taken as is; a raw object has
 * its intrinsic functions evaluated; an intrinsic function must yield the text. */
static enum iot_err render_policy_document(const struct render_ctx *c, const char *name,
                                           const cJSON *node, char **out, struct iot_error *err)
{
    cJSON *doc = NULL;
    char *text = NULL;
    enum iot_err rc = IOT_OK;
    if (cJSON_IsString(node) || intrinsic_call(node) != NULL) {
        rc = eval_text(c, node, "PolicyDocument", &text, err);
        if (rc == IOT_OK && (doc = parse_object_text(text)) == NULL)
            rc = iot_error_set(err, IOT_ERR_INVALID_PARAMS,
                               "The PolicyDocument of resource %s is not a JSON object", name);
        free(text);
    } else {
        rc = eval(c, node, &doc, err);
    }
    if (rc == IOT_OK && (*out = cJSON_PrintUnformatted(doc)) == NULL)
        rc = nomem(err);
    cJSON_Delete(doc);
    return rc;
}

static enum iot_err render_policy(const struct render_ctx *c, const char *name,
                                  const cJSON *resource, struct template_plan *p,
                                  struct iot_error *err)
{
    const cJSON *props = cJSON_GetObjectItemCaseSensitive(resource, "Properties");
    const cJSON *pname = cJSON_GetObjectItemCaseSensitive(props, "PolicyName");
    struct plan_policy *grown = realloc(p->policies, (p->n_policies + 1) * sizeof(*grown));
    if (grown == NULL)
        return nomem(err);
    p->policies = grown;
    struct plan_policy *pol = &p->policies[p->n_policies++];
    memset(pol, 0, sizeof(*pol));
    if ((pol->resource = dup_str(name)) == NULL)
        return nomem(err);
    if (pname != NULL)
        return eval_text(c, pname, "PolicyName", &pol->name, err);
    enum iot_err rc = render_policy_document(
        c, name, cJSON_GetObjectItemCaseSensitive(props, "PolicyDocument"), &pol->document, err);
    return rc != IOT_OK ? rc : sha256_hex(pol->document, &pol->name, err);
}

static enum iot_err render_resources(const struct render_ctx *c, struct template_plan *p,
                                     struct iot_error *err)
{
    for (const cJSON *r = c->t->resources ? c->t->resources->child : NULL; r != NULL; r = r->next) {
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(r, "Type");
        const struct resource_kind *kind = resource_kind_find(type->valuestring);
        enum iot_err rc = kind->render(c, r->string, r, p, err);
        if (rc != IOT_OK)
            return rc;
    }
    return IOT_OK;
}

/* §2.2: a flat map of name -> string returned to the device; {} when there is no section. */
static enum iot_err render_device_configuration(const struct render_ctx *c, struct template_plan *p,
                                                struct iot_error *err)
{
    const cJSON *dc = c->t->device_configuration;
    if ((p->device_configuration = cJSON_CreateObject()) == NULL)
        return nomem(err);
    for (const cJSON *v = dc ? dc->child : NULL; v != NULL; v = v->next) {
        char what[160], *s = NULL;
        snprintf(what, sizeof(what),
                 "DeviceConfiguration value %s (nested objects and lists are not supported)",
                 v->string);
        enum iot_err rc = eval_text(c, v, what, &s, err);
        if (rc == IOT_OK &&
            !cJSON_AddItemToObject(p->device_configuration, v->string, cJSON_CreateString(s)))
            rc = nomem(err);
        free(s);
        if (rc != IOT_OK)
            return rc;
    }
    return IOT_OK;
}

/* Parameter values are strings (§1.5: RegisterThing parameters are string -> string). */
static enum iot_err check_param_values(const cJSON *params, struct iot_error *err)
{
    if (params == NULL)
        return IOT_OK;
    if (!cJSON_IsObject(params))
        return iot_error_set(err, IOT_ERR_INVALID_PARAMS,
                             "Template parameters must be an object of name -> string");
    for (const cJSON *v = params->child; v != NULL; v = v->next)
        if (!cJSON_IsString(v))
            return iot_error_set(err, IOT_ERR_INVALID_PARAMS,
                                 "The value of parameter %s must be a string", v->string);
    return IOT_OK;
}

enum iot_err template_render(const struct template *t, const cJSON *params,
                             struct template_plan **out, struct iot_error *err)
{
    *out = NULL;
    enum iot_err rc = check_param_values(params, err);
    if (rc != IOT_OK)
        return rc;
    struct template_plan *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return nomem(err);
    struct render_ctx c = {t, params};
    rc = render_resources(&c, p, err);
    if (rc == IOT_OK)
        rc = render_device_configuration(&c, p, err);
    if (rc != IOT_OK) {
        template_plan_free(p);
        return rc;
    }
    *out = p;
    return IOT_OK;
}

void template_plan_free(struct template_plan *p)
{
    if (p == NULL)
        return;
    if (p->thing != NULL) {
        free(p->thing->resource);
        free(p->thing->name);
        free(p->thing->type_name);
        cJSON_Delete(p->thing->attributes);
        cJSON_Delete(p->thing->groups);
        free(p->thing);
    }
    for (size_t i = 0; i < p->n_policies; i++) {
        free(p->policies[i].resource);
        free(p->policies[i].name);
        free(p->policies[i].document);
    }
    free(p->policies);
    free(p->certificate_resource);
    free(p->certificate_id);
    cJSON_Delete(p->device_configuration);
    free(p);
}

const char *template_plan_thing_name(const struct template_plan *p)
{
    return p->thing ? p->thing->name : NULL;
}

const cJSON *template_plan_device_configuration(const struct template_plan *p)
{
    return p->device_configuration;
}

/* ---- apply: checks before any write (§2.7 step 7) -------------------------------------- */

/* What the registry holds for the plan's thing before anything is written. */
struct existing_thing {
    bool found;
    struct registry_thing thing;
    cJSON *groups; /* its group names */
};

static bool str_eq(const char *a, const char *b)
{
    return (a == NULL || b == NULL) ? a == b : strcmp(a, b) == 0;
}

/* Attribute maps, a missing one being empty. */
static bool attributes_equal(const cJSON *a, const cJSON *b)
{
    if (cJSON_GetArraySize(a) != cJSON_GetArraySize(b))
        return false;
    for (const cJSON *e = a ? a->child : NULL; e != NULL; e = e->next) {
        const cJSON *other = cJSON_GetObjectItemCaseSensitive(b, e->string);
        if (!cJSON_IsString(other) || !str_eq(other->valuestring, e->valuestring))
            return false;
    }
    return true;
}

static bool list_has(const cJSON *list, const char *s)
{
    for (const cJSON *e = list ? list->child : NULL; e != NULL; e = e->next)
        if (cJSON_IsString(e) && strcmp(e->valuestring, s) == 0)
            return true;
    return false;
}

/* Lists of strings compared as sets. */
static bool sets_equal(const cJSON *a, const cJSON *b)
{
    for (const cJSON *e = a ? a->child : NULL; e != NULL; e = e->next)
        if (!list_has(b, e->valuestring))
            return false;
    for (const cJSON *e = b ? b->child : NULL; e != NULL; e = e->next)
        if (!list_has(a, e->valuestring))
            return false;
    return true;
}

static enum iot_err conflict(const struct plan_thing *th, const char *property,
                             struct iot_error *err)
{
    return iot_error_set(err, IOT_ERR_CONFLICT,
                         "ResourceConflictsException: thing %s already exists with a different "
                         "%s and resource %s says FAIL in its OverrideSettings",
                         th->name, property, th->resource);
}

/* OverrideSettings FAIL aborts only when the template would change the value (§2.4). */
static enum iot_err check_fail_settings(const struct plan_thing *th,
                                        const struct existing_thing *ex, struct iot_error *err)
{
    if (th->on_type == OVERRIDE_FAIL && th->type_name != NULL &&
        !str_eq(th->type_name, ex->thing.type_name))
        return conflict(th, "ThingTypeName", err);
    if (th->on_attributes == OVERRIDE_FAIL && th->attributes != NULL &&
        !attributes_equal(th->attributes, ex->thing.attributes))
        return conflict(th, "AttributePayload", err);
    if (th->on_groups == OVERRIDE_FAIL && th->groups != NULL && !sets_equal(th->groups, ex->groups))
        return conflict(th, "ThingGroups", err);
    return IOT_OK;
}

static enum iot_err load_existing_thing(struct registry *reg, const struct plan_thing *th,
                                        struct existing_thing *ex, struct iot_error *err)
{
    enum iot_err rc = registry_thing_get(reg, th->name, &ex->thing, err);
    if (rc == IOT_ERR_NOT_FOUND)
        return IOT_OK;
    if (rc != IOT_OK)
        return rc;
    ex->found = true;
    rc = registry_thing_groups(reg, th->name, &ex->groups);
    if (rc != IOT_OK)
        return iot_error_set(err, rc, "Could not read the groups of thing %s", th->name);
    return check_fail_settings(th, ex, err);
}

/* The thing type and groups must exist (§2.3: AWS requires the type; iotmock requires the
 * groups too, as the spec recommends). */
static enum iot_err validate_thing(struct registry *reg, const struct plan_thing *th,
                                   struct existing_thing *ex, struct iot_error *err)
{
    if (th->type_name != NULL && !registry_thing_type_exists(reg, th->type_name))
        return iot_error_set(err, IOT_ERR_INVALID_PARAMS,
                             "Resource %s: thing type %s does not exist", th->resource,
                             th->type_name);
    for (const cJSON *g = th->groups ? th->groups->child : NULL; g != NULL; g = g->next)
        if (!registry_thing_group_exists(reg, g->valuestring))
            return iot_error_set(err, IOT_ERR_INVALID_PARAMS,
                                 "Resource %s: thing group %s does not exist", th->resource,
                                 g->valuestring);
    return load_existing_thing(reg, th, ex, err);
}

static enum iot_err validate_policies(struct registry *reg, const struct template_plan *p,
                                      struct iot_error *err)
{
    for (size_t i = 0; i < p->n_policies; i++) {
        const struct plan_policy *pol = &p->policies[i];
        char *doc = NULL;
        if (pol->document != NULL)
            continue;
        enum iot_err rc = registry_policy_get(reg, pol->name, &doc, err);
        free(doc);
        if (rc == IOT_ERR_NOT_FOUND)
            return iot_error_set(err, IOT_ERR_INVALID_PARAMS,
                                 "Resource %s: policy %s does not exist", pol->resource, pol->name);
        if (rc != IOT_OK)
            return rc;
    }
    return IOT_OK;
}

static enum iot_err validate_certificate(struct registry *reg, const struct template_plan *p,
                                         const char *cert_id, struct iot_error *err)
{
    enum cert_status s;
    enum iot_err rc = registry_cert_status(reg, cert_id, &s);
    if (rc == IOT_ERR_NOT_FOUND)
        return iot_error_set(err, IOT_ERR_INVALID_PARAMS, "Certificate %s does not exist", cert_id);
    if (rc != IOT_OK)
        return iot_error_set(err, rc, "Could not read certificate %s", cert_id);
    if (p->has_certificate && strcmp(p->certificate_id, cert_id) != 0)
        return iot_error_set(err, IOT_ERR_INVALID_PARAMS,
                             "Resource %s: CertificateId %s is not the certificate being "
                             "provisioned; use {\"Ref\":\"AWS::IoT::Certificate::Id\"}",
                             p->certificate_resource, p->certificate_id);
    return IOT_OK;
}

static enum iot_err validate_plan(struct registry *reg, const struct template_plan *p,
                                  const char *cert_id, struct existing_thing *ex,
                                  struct iot_error *err)
{
    enum iot_err rc = validate_certificate(reg, p, cert_id, err);
    if (rc == IOT_OK)
        rc = validate_policies(reg, p, err);
    if (rc == IOT_OK && p->thing != NULL)
        rc = validate_thing(reg, p->thing, ex, err);
    return rc;
}

/* ---- apply: writes --------------------------------------------------------------------- */

/* A document policy is stored under its hash name, or reused if that name exists (§2.3). */
static enum iot_err create_policies(struct registry *reg, const struct template_plan *p,
                                    struct iot_error *err)
{
    for (size_t i = 0; i < p->n_policies; i++) {
        const struct plan_policy *pol = &p->policies[i];
        char *doc = NULL;
        if (pol->document == NULL)
            continue;
        enum iot_err rc = registry_policy_get(reg, pol->name, &doc, err);
        free(doc);
        if (rc == IOT_ERR_NOT_FOUND)
            rc = registry_policy_create(reg, pol->name, pol->document, err);
        if (rc != IOT_OK)
            return rc;
    }
    return IOT_OK;
}

/* Existing attributes with the template's added, the template winning a clash (§2.4 MERGE). */
static cJSON *attributes_merge(const cJSON *old, const cJSON *add)
{
    cJSON *merged = old ? cJSON_Duplicate(old, true) : cJSON_CreateObject();
    for (const cJSON *a = add->child; a != NULL && merged != NULL; a = a->next) {
        cJSON *v = cJSON_Duplicate(a, false);
        bool ok = cJSON_GetObjectItemCaseSensitive(merged, a->string)
                      ? cJSON_ReplaceItemInObjectCaseSensitive(merged, a->string, v)
                      : cJSON_AddItemToObject(merged, a->string, v);
        if (!ok) {
            cJSON_Delete(v);
            cJSON_Delete(merged);
            merged = NULL;
        }
    }
    return merged;
}

static enum iot_err join_groups(struct registry *reg, const struct plan_thing *th,
                                struct iot_error *err)
{
    for (const cJSON *g = th->groups ? th->groups->child : NULL; g != NULL; g = g->next) {
        enum iot_err rc = registry_thing_group_add(reg, g->valuestring, th->name, err);
        if (rc != IOT_OK)
            return rc;
    }
    return IOT_OK;
}

/* REPLACE leaves exactly the template's groups; MERGE only adds; DO_NOTHING keeps (§2.4). */
static enum iot_err update_groups(struct registry *reg, const struct plan_thing *th,
                                  const struct existing_thing *ex, struct iot_error *err)
{
    if (th->groups == NULL || th->on_groups == OVERRIDE_DO_NOTHING ||
        th->on_groups == OVERRIDE_FAIL) /* FAIL passed validation: the sets are equal */
        return IOT_OK;
    for (const cJSON *g = ex->groups ? ex->groups->child : NULL; g != NULL; g = g->next) {
        if (th->on_groups == OVERRIDE_REPLACE && !list_has(th->groups, g->valuestring)) {
            enum iot_err rc = registry_thing_group_remove(reg, g->valuestring, th->name, err);
            if (rc != IOT_OK)
                return rc;
        }
    }
    return join_groups(reg, th, err);
}

static enum iot_err update_thing(struct registry *reg, const struct plan_thing *th,
                                 const struct existing_thing *ex, struct iot_error *err)
{
    struct registry_thing t = ex->thing; /* borrowed fields: not cleared here */
    cJSON *merged = NULL;
    enum iot_err rc = IOT_OK;
    if (th->on_type == OVERRIDE_REPLACE && th->type_name != NULL)
        t.type_name = th->type_name;
    if (th->on_attributes == OVERRIDE_REPLACE && th->attributes != NULL)
        t.attributes = th->attributes;
    if (th->on_attributes == OVERRIDE_MERGE && th->attributes != NULL) {
        if ((merged = attributes_merge(ex->thing.attributes, th->attributes)) == NULL)
            return nomem(err);
        t.attributes = merged;
    }
    if (!str_eq(t.type_name, ex->thing.type_name) ||
        !attributes_equal(t.attributes, ex->thing.attributes))
        rc = registry_thing_put(reg, &t, err);
    cJSON_Delete(merged);
    return rc != IOT_OK ? rc : update_groups(reg, th, ex, err);
}

static enum iot_err create_thing(struct registry *reg, const struct plan_thing *th,
                                 struct iot_error *err)
{
    struct registry_thing t = {
        .name = th->name, .type_name = th->type_name, .attributes = th->attributes};
    enum iot_err rc = registry_thing_put(reg, &t, err);
    return rc != IOT_OK ? rc : join_groups(reg, th, err);
}

/* Without a certificate resource the template says nothing about the certificate, so iotmock
 * neither attaches it nor changes its status (§2.3/§2.7; AWS undocumented). */
static enum iot_err attach_certificate(struct registry *reg, const struct template_plan *p,
                                       const char *cert_id, struct iot_error *err)
{
    enum iot_err rc = IOT_OK;
    if (!p->has_certificate)
        return IOT_OK;
    for (size_t i = 0; i < p->n_policies && rc == IOT_OK; i++)
        rc = registry_policy_attach(reg, p->policies[i].name, cert_id, err);
    if (rc == IOT_OK && p->thing != NULL)
        rc = registry_thing_principal_attach(reg, p->thing->name, cert_id, err);
    if (rc == IOT_OK)
        rc = registry_cert_set_status(reg, cert_id, p->status, err);
    return rc;
}

static enum iot_err apply_plan(struct registry *reg, const struct template_plan *p,
                               const char *cert_id, struct iot_error *err)
{
    struct existing_thing ex = {0};
    enum iot_err rc = validate_plan(reg, p, cert_id, &ex, err);
    if (rc == IOT_OK)
        rc = create_policies(reg, p, err);
    if (rc == IOT_OK && p->thing != NULL)
        rc = ex.found ? update_thing(reg, p->thing, &ex, err) : create_thing(reg, p->thing, err);
    if (rc == IOT_OK)
        rc = attach_certificate(reg, p, cert_id, err);
    registry_thing_clear(&ex.thing);
    cJSON_Delete(ex.groups);
    return rc;
}

enum iot_err template_apply(struct registry *reg, const struct template_plan *p,
                            const char *cert_id, struct iot_error *err)
{
    if (p == NULL || cert_id == NULL || cert_id[0] == '\0')
        return iot_error_set(err, IOT_ERR_INVALID_PARAMS, "No plan or no certificate to provision");
    enum iot_err rc = registry_begin(reg);
    if (rc != IOT_OK)
        return iot_error_set(err, rc, "Could not start a registry transaction");
    rc = apply_plan(reg, p, cert_id, err);
    if (rc != IOT_OK) {
        registry_rollback(reg);
        return rc;
    }
    rc = registry_commit(reg); /* a failed commit is rolled back by the registry */
    if (rc != IOT_OK)
        return iot_error_set(err, rc, "Could not commit the provisioning changes");
    return IOT_OK;
}
