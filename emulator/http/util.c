/* Helpers every control-plane handler uses: AWS error replies (shared/spec/provisioning.md §6.2,
 * §6.3), request members from the query string, headers and body, name checks, ARNs, paging
 * tokens and timestamps. */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>

#include "http/api.h"

/* ---- replies -------------------------------------------------------------------------------- */

void reply_json(struct http_reply *rep, cJSON *body)
{
    cJSON_Delete(rep->body);
    rep->status = 200;
    rep->error_type = NULL;
    rep->body = body ? body : cJSON_CreateObject();
}

static void verror(struct http_reply *rep, unsigned int status, const char *type, const char *fmt,
                   va_list ap)
{
    char message[512];
    vsnprintf(message, sizeof(message), fmt, ap);
    cJSON_Delete(rep->body);
    rep->status = status;
    rep->error_type = type;
    rep->body = cJSON_CreateObject();
    cJSON_AddStringToObject(rep->body, "message", message);
}

void reply_error(struct http_reply *rep, unsigned int status, const char *type, const char *fmt,
                 ...)
{
    va_list ap;
    va_start(ap, fmt);
    verror(rep, status, type, fmt, ap);
    va_end(ap);
}

void reply_invalid(struct http_reply *rep, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    verror(rep, 400, "InvalidRequestException", fmt, ap);
    va_end(ap);
}

void reply_not_found(struct http_reply *rep, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    verror(rep, 404, "ResourceNotFoundException", fmt, ap);
    va_end(ap);
}

void reply_exists(struct http_reply *rep, const char *id, const char *arn, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    verror(rep, 409, "ResourceAlreadyExistsException", fmt, ap);
    va_end(ap);
    if (rep->body && id)
        cJSON_AddStringToObject(rep->body, "resourceId", id);
    if (rep->body && arn)
        cJSON_AddStringToObject(rep->body, "resourceArn", arn);
}

void reply_iot_error(struct http_reply *rep, const struct iot_error *e)
{
    unsigned int status = 500;
    const char *type = "InternalFailureException";
    switch (e->code) {
    case IOT_ERR_NOT_FOUND:
        status = 404, type = "ResourceNotFoundException";
        break;
    case IOT_ERR_ALREADY_EXISTS:
        status = 409, type = "ResourceAlreadyExistsException";
        break;
    case IOT_ERR_DELETE_CONFLICT:
        status = 409, type = "DeleteConflictException";
        break;
    case IOT_ERR_CERT_STATE:
        status = 406, type = "CertificateStateException";
        break;
    case IOT_ERR_CONFLICT:
        status = 409, type = "ConflictingResourceUpdateException";
        break;
    case IOT_ERR_INVALID_PAYLOAD:
    case IOT_ERR_INVALID_CSR:
    case IOT_ERR_INVALID_PARAMS:
    case IOT_ERR_INVALID_REQUEST:
    case IOT_ERR_INVALID_TOKEN:
    case IOT_ERR_TEMPLATE_DISABLED:
    case IOT_ERR_ACCESS_DENIED:
        status = 400, type = "InvalidRequestException";
        break;
    default:
        break;
    }
    reply_error(rep, status, type, "%s", e->message[0] ? e->message : iot_err_name(e->code));
}

/* ---- transactions --------------------------------------------------------------------------- */

bool txn_begin(struct http_request *req, struct http_reply *rep)
{
    if (registry_begin(req->srv->cfg.reg) == IOT_OK)
        return true;
    reply_error(rep, 500, "InternalFailureException", "The registry is unavailable");
    return false;
}

void txn_end(struct http_request *req, struct http_reply *rep)
{
    if (rep->error_type != NULL) {
        registry_rollback(req->srv->cfg.reg);
        return;
    }
    if (registry_commit(req->srv->cfg.reg) != IOT_OK)
        reply_error(rep, 500, "InternalFailureException", "The registry could not commit");
}

/* ---- request members ------------------------------------------------------------------------ */

char *request_keep(struct http_request *req, char *s)
{
    if (s == NULL)
        return NULL;
    if (req->owned_count == req->owned_cap) {
        size_t cap = req->owned_cap ? req->owned_cap * 2 : 8;
        char **grown = realloc(req->owned, cap * sizeof(*grown));
        if (grown == NULL) {
            free(s);
            return NULL;
        }
        req->owned = grown;
        req->owned_cap = cap;
    }
    req->owned[req->owned_count++] = s;
    return s;
}

void request_free(struct http_request *req)
{
    for (size_t i = 0; i < req->owned_count; i++)
        free(req->owned[i]);
    free(req->owned);
    req->owned = NULL;
    req->owned_count = req->owned_cap = 0;
}

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

char *http_percent_decode(const char *s, size_t len)
{
    char *out = malloc(len + 1);
    size_t n = 0;
    if (out == NULL)
        return NULL;
    for (size_t i = 0; i < len; i++) {
        if (s[i] != '%') {
            out[n++] = s[i];
            continue;
        }
        int hi = i + 2 < len ? hex_digit(s[i + 1]) : -1;
        int lo = i + 2 < len ? hex_digit(s[i + 2]) : -1;
        if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) { /* malformed, or an embedded NUL */
            free(out);
            return NULL;
        }
        out[n++] = (char)(hi * 16 + lo);
        i += 2;
    }
    out[n] = '\0';
    return out;
}

const char *req_header(const struct http_request *req, const char *name)
{
    return MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, name);
}

const char *req_query(struct http_request *req, const char *name)
{
    const char *raw = MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, name);
    if (raw == NULL)
        return NULL;
    char *decoded = http_percent_decode(raw, strlen(raw));
    return request_keep(req, decoded ? decoded : strdup(raw)); /* a stray '%' is taken as is */
}

bool req_query_bool(struct http_request *req, struct http_reply *rep, const char *name, bool *out)
{
    const char *v = req_query(req, name);
    if (v == NULL)
        return true;
    if (strcasecmp(v, "true") == 0 || strcasecmp(v, "false") == 0) {
        *out = strcasecmp(v, "true") == 0;
        return true;
    }
    reply_invalid(rep, "%s must be true or false", name);
    return false;
}

bool req_query_int(struct http_request *req, struct http_reply *rep, const char *name,
                   long long min, long long max, long long *out)
{
    const char *v = req_query(req, name);
    if (v == NULL)
        return true;
    char *end = NULL;
    long long n = strtoll(v, &end, 10);
    if (*v == '\0' || *end != '\0' || n < min || n > max) {
        reply_invalid(rep, "%s must be an integer from %lld to %lld", name, min, max);
        return false;
    }
    *out = n;
    return true;
}

static bool body_member(struct http_request *req, struct http_reply *rep, const char *name,
                        bool required, const cJSON **out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(req->body, name);
    if (cJSON_IsNull(v))
        v = NULL;
    if (v == NULL && required) {
        reply_invalid(rep, "%s is required", name);
        return false;
    }
    *out = v;
    return true;
}

bool body_string(struct http_request *req, struct http_reply *rep, const char *name, bool required,
                 const char **out)
{
    const cJSON *v;
    if (!body_member(req, rep, name, required, &v))
        return false;
    if (v == NULL)
        return true;
    if (!cJSON_IsString(v)) {
        reply_invalid(rep, "%s must be a string", name);
        return false;
    }
    *out = v->valuestring;
    return true;
}

bool body_bool(struct http_request *req, struct http_reply *rep, const char *name, bool *out)
{
    const cJSON *v;
    if (!body_member(req, rep, name, false, &v))
        return false;
    if (v == NULL)
        return true;
    if (!cJSON_IsBool(v)) {
        reply_invalid(rep, "%s must be a boolean", name);
        return false;
    }
    *out = cJSON_IsTrue(v);
    return true;
}

bool body_int(struct http_request *req, struct http_reply *rep, const char *name, long long *out)
{
    const cJSON *v;
    if (!body_member(req, rep, name, false, &v))
        return false;
    if (v == NULL)
        return true;
    if (!cJSON_IsNumber(v) || v->valuedouble != (double)(long long)v->valuedouble) {
        reply_invalid(rep, "%s must be an integer", name);
        return false;
    }
    *out = (long long)v->valuedouble;
    return true;
}

bool body_node(struct http_request *req, struct http_reply *rep, const char *name, bool array,
               const cJSON **out)
{
    const cJSON *v;
    *out = NULL;
    if (!body_member(req, rep, name, false, &v))
        return false;
    if (v != NULL && (array ? !cJSON_IsArray(v) : !cJSON_IsObject(v))) {
        reply_invalid(rep, "%s must be a JSON %s", name, array ? "array" : "object");
        return false;
    }
    *out = v;
    return true;
}

/* ---- validation ----------------------------------------------------------------------------- */

bool check_name(struct http_reply *rep, const char *what, const char *value, const char *extra,
                size_t max)
{
    size_t n = value ? strlen(value) : 0;
    bool ok = n >= 1 && n <= max;
    for (size_t i = 0; ok && i < n; i++)
        ok = isalnum((unsigned char)value[i]) || strchr(extra, value[i]) != NULL;
    if (!ok)
        reply_invalid(rep, "%s '%s' is invalid: it must be 1 to %zu characters of [a-zA-Z0-9%s]",
                      what, value ? value : "", max, extra);
    return ok;
}

bool check_thing_name(struct http_reply *rep, const char *what, const char *value)
{
    return check_name(rep, what, value, THING_NAME_CHARS, NAME_MAX_LEN);
}

#define ATTRIBUTE_VALUE_CHARS "_.,@/:#-"
#define ATTRIBUTE_NAME_MAX 128
#define ATTRIBUTE_VALUE_MAX 800
#define ATTRIBUTES_MAX 50

static bool attribute_text_ok(const char *s, size_t max, bool allow_empty)
{
    size_t n = strlen(s);
    if ((n == 0 && !allow_empty) || n > max)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (!isalnum((unsigned char)s[i]) && strchr(ATTRIBUTE_VALUE_CHARS, s[i]) == NULL)
            return false;
    }
    return true;
}

bool check_attributes(struct http_reply *rep, const cJSON *attributes)
{
    const cJSON *a;
    if (attributes == NULL)
        return true;
    if (!cJSON_IsObject(attributes)) {
        reply_invalid(rep, "attributes must be a JSON object of strings");
        return false;
    }
    if (cJSON_GetArraySize(attributes) > ATTRIBUTES_MAX) {
        reply_invalid(rep, "At most %d attributes are allowed", ATTRIBUTES_MAX);
        return false;
    }
    cJSON_ArrayForEach(a, attributes)
    {
        if (!attribute_text_ok(a->string, ATTRIBUTE_NAME_MAX, false)) {
            reply_invalid(rep, "Attribute name '%s' is invalid", a->string);
            return false;
        }
        if (!cJSON_IsString(a) || !attribute_text_ok(a->valuestring, ATTRIBUTE_VALUE_MAX, true)) {
            reply_invalid(rep, "The value of attribute '%s' is invalid", a->string);
            return false;
        }
    }
    return true;
}

bool check_cert_id(struct http_reply *rep, const char *value, char out[CA_ID_LEN + 1])
{
    size_t n = value ? strlen(value) : 0;
    bool ok = n == CA_ID_LEN;
    for (size_t i = 0; ok && i < n; i++)
        ok = isxdigit((unsigned char)value[i]);
    if (!ok) {
        reply_invalid(rep, "certificateId '%s' is invalid: it must be 64 hexadecimal characters",
                      value ? value : "");
        return false;
    }
    for (size_t i = 0; i <= n; i++)
        out[i] = (char)tolower((unsigned char)value[i]);
    return true;
}

/* ---- ARNs ----------------------------------------------------------------------------------- */

const char *arn_of(struct http_request *req, const char *kind, const char *name)
{
    const struct http_config *c = &req->srv->cfg;
    size_t n = strlen(c->region) + strlen(c->account_id) + strlen(kind) + strlen(name) + 32;
    char *s = malloc(n);
    if (s == NULL)
        return "";
    snprintf(s, n, "arn:aws:iot:%s:%s:%s/%s", c->region, c->account_id, kind, name);
    const char *kept = request_keep(req, s);
    return kept ? kept : "";
}

void add_arn(struct http_request *req, cJSON *obj, const char *key, const char *kind,
             const char *name)
{
    cJSON_AddStringToObject(obj, key, arn_of(req, kind, name));
}

/* "arn:<partition>:iot:<region>:<account>:cert/<id>" -> a pointer to <id>, else NULL. */
static const char *cert_arn_id(const char *arn)
{
    if (arn == NULL || strncmp(arn, "arn:", 4) != 0)
        return NULL;
    const char *p = arn + 4;
    for (int field = 0; field < 4; field++) { /* partition, service, region, account */
        const char *colon = strchr(p, ':');
        if (colon == NULL)
            return NULL;
        if (field == 1 && (colon - p != 3 || strncmp(p, "iot", 3) != 0))
            return NULL;
        p = colon + 1;
    }
    return strncmp(p, "cert/", 5) == 0 ? p + 5 : NULL;
}

bool principal_cert_id(struct http_reply *rep, const char *principal, char id[CA_ID_LEN + 1])
{
    const char *cert = cert_arn_id(principal);
    if (cert == NULL) {
        reply_invalid(rep,
                      "Principal '%s' is not a certificate ARN "
                      "(arn:aws:iot:<region>:<account>:cert/<certificateId>); iotmock supports "
                      "certificate principals only",
                      principal ? principal : "");
        return false;
    }
    return check_cert_id(rep, cert, id);
}

const char *target_key(struct http_request *req, const char *target)
{
    const char *cert = cert_arn_id(target);
    if (cert == NULL || strlen(cert) != CA_ID_LEN)
        return target;
    char *id = strdup(cert);
    for (char *c = id; c && *c; c++)
        *c = (char)tolower((unsigned char)*c);
    const char *kept = request_keep(req, id);
    return kept ? kept : target;
}

const char *target_arn(struct http_request *req, const char *key)
{
    size_t n = strlen(key);
    bool cert = n == CA_ID_LEN;
    for (size_t i = 0; cert && i < n; i++)
        cert = isxdigit((unsigned char)key[i]);
    return cert ? arn_of(req, "cert", key) : key;
}

/* ---- paging --------------------------------------------------------------------------------- */

static char *base64_encode(const char *s)
{
    size_t n = strlen(s);
    char *out = malloc(4 * ((n + 2) / 3) + 1);
    if (out != NULL)
        EVP_EncodeBlock((unsigned char *)out, (const unsigned char *)s, (int)n);
    return out;
}

/* NULL when S is not base64 of a text without NUL. A space is read as '+': a client that did not
 * percent-encode the token had its '+' turned into a space by form decoding. */
static char *base64_decode(const char *text)
{
    size_t n = strlen(text);
    if (n == 0 || n % 4 != 0)
        return NULL;
    char *s = strdup(text);
    char *out = malloc(n / 4 * 3 + 1);
    if (s == NULL || out == NULL) {
        free(s);
        free(out);
        return NULL;
    }
    for (char *c = s; *c; c++)
        *c = *c == ' ' ? '+' : *c;
    int len = EVP_DecodeBlock((unsigned char *)out, (const unsigned char *)s, (int)n);
    if (len >= 0) /* DecodeBlock counts the bytes that padding stands for */
        len -= (n >= 1 && s[n - 1] == '=') + (n >= 2 && s[n - 2] == '=');
    free(s);
    if (len < 0 || memchr(out, '\0', (size_t)len) != NULL) {
        free(out);
        return NULL;
    }
    out[len] = '\0';
    return out;
}

bool page_read(struct http_request *req, struct http_reply *rep, const char *size_name,
               const char *token_name, struct registry_page *pg)
{
    long long size = HTTP_PAGE_DEFAULT;
    *pg = (struct registry_page){0};
    if (!req_query_int(req, rep, size_name, 1, REGISTRY_PAGE_MAX, &size))
        return false;
    pg->limit = (int)size;
    const char *token = req_query(req, token_name);
    if (token == NULL || token[0] == '\0')
        return true;
    char *cursor = base64_decode(token);
    if (cursor == NULL) {
        reply_invalid(rep, "%s '%s' is invalid", token_name, token);
        return false;
    }
    pg->after = request_keep(req, cursor);
    return true;
}

void page_next(cJSON *obj, const char *key, char *next)
{
    if (next == NULL)
        return;
    char *token = base64_encode(next);
    if (token != NULL)
        cJSON_AddStringToObject(obj, key, token);
    free(token);
    free(next);
}

/* ---- JSON output ---------------------------------------------------------------------------- */

void generation_id(const char *key, long long a, long long b, char out[37])
{
    char text[512];
    unsigned char md[32];
    unsigned int n = 0;
    snprintf(text, sizeof(text), "%s/%lld/%lld", key, a, b);
    EVP_Digest(text, strlen(text), md, &n, EVP_sha256(), NULL);
    snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", md[0],
             md[1], md[2], md[3], md[4], md[5], md[6], md[7], md[8], md[9], md[10], md[11], md[12],
             md[13], md[14], md[15]);
}

void add_time(cJSON *obj, const char *key, long long epoch_seconds)
{
    cJSON_AddNumberToObject(obj, key, (double)epoch_seconds);
}

const char *item_str(const cJSON *obj, const char *key)
{
    return cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(obj, key));
}

long long item_num(const cJSON *obj, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsNumber(v) ? (long long)v->valuedouble : 0;
}
