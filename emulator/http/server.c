/* Control-plane HTTP server: the libmicrohttpd daemon, request bodies, and sending the replies the
 * handlers build (shared/spec/provisioning.md §6.1, §6.2). Routing is router.c's. */
#include "http/server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <microhttpd.h>
#include <openssl/x509.h>
#include <uuid/uuid.h>

#include "http/api.h"

#define HTTP_THREADS 4 /* RSA key generation in one request must not stall the others */

/* What a connection accumulates between libmicrohttpd's calls for one request. */
struct request_ctx {
    char *body;
    size_t len, cap;
    bool too_large;
};

static void free_ctx(void *cls, struct MHD_Connection *conn, void **req_cls,
                     enum MHD_RequestTerminationCode toe)
{
    struct request_ctx *ctx = *req_cls;
    if (ctx == NULL)
        return;
    free(ctx->body);
    free(ctx);
    *req_cls = NULL;
}

/* Appends a piece of the body; past HTTP_BODY_MAX the rest is read and dropped. */
static void accumulate(struct request_ctx *ctx, const char *data, size_t n)
{
    if (ctx->too_large || ctx->len + n > HTTP_BODY_MAX) {
        ctx->too_large = true;
        return;
    }
    if (ctx->len + n + 1 > ctx->cap) {
        size_t cap = ctx->cap ? ctx->cap : 4096;
        while (cap < ctx->len + n + 1)
            cap *= 2;
        char *grown = realloc(ctx->body, cap);
        if (grown == NULL) {
            ctx->too_large = true; /* answered as too large: nothing better to say */
            return;
        }
        ctx->body = grown;
        ctx->cap = cap;
    }
    memcpy(ctx->body + ctx->len, data, n);
    ctx->len += n;
    ctx->body[ctx->len] = '\0';
}

static enum MHD_Result send_reply(struct MHD_Connection *conn, struct http_reply *rep)
{
    char *text = rep->raw;
    const char *type = rep->raw ? rep->content_type : "application/json";
    if (text == NULL)
        text = rep->body ? cJSON_PrintUnformatted(rep->body) : strdup("{}");
    if (text == NULL)
        return MHD_NO;
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
    if (r == NULL) {
        free(text);
        return MHD_NO;
    }
    rep->raw = NULL; /* the response owns it now */
    uuid_t uuid;
    char request_id[37];
    uuid_generate_random(uuid);
    uuid_unparse_lower(uuid, request_id);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    MHD_add_response_header(r, "x-amzn-RequestId", request_id);
    if (rep->error_type)
        MHD_add_response_header(r, "x-amzn-ErrorType", rep->error_type);
    enum MHD_Result ret = MHD_queue_response(conn, rep->status ? rep->status : 200, r);
    MHD_destroy_response(r);
    return ret;
}

static void reply_clear(struct http_reply *rep)
{
    cJSON_Delete(rep->body);
    free(rep->raw);
    memset(rep, 0, sizeof(*rep));
}

/* §6.1: operations without body members send nothing (or "{}"); others a JSON object. */
static bool parse_body(const struct request_ctx *ctx, cJSON **out, struct http_reply *rep)
{
    if (ctx->too_large) {
        reply_error(rep, 413, "InvalidRequestException", "The request body is larger than %d bytes",
                    HTTP_BODY_MAX);
        return false;
    }
    size_t start = 0;
    while (start < ctx->len && strchr(" \t\r\n", ctx->body[start]) != NULL)
        start++;
    if (start == ctx->len) {
        *out = cJSON_CreateObject();
        return *out != NULL;
    }
    /* Nothing may follow the object; cJSON checks that by finding the NUL accumulate() wrote
     * after the body, so the length given includes it. */
    *out = cJSON_ParseWithLengthOpts(ctx->body, ctx->len + 1, NULL, true);
    if (*out == NULL) {
        reply_invalid(rep, "The request body is not valid JSON");
        return false;
    }
    if (!cJSON_IsObject(*out)) {
        cJSON_Delete(*out);
        *out = NULL;
        reply_invalid(rep, "The request body must be a JSON object");
        return false;
    }
    return true;
}

static enum MHD_Result answer(struct http_server *s, struct MHD_Connection *conn, const char *url,
                              const char *method, struct request_ctx *ctx)
{
    struct http_request req = {.srv = s, .conn = conn, .method = method};
    struct http_reply rep = {0};
    if (parse_body(ctx, &req.body, &rep))
        http_route(&req, url, &rep);
    else if (rep.status == 0)
        reply_error(&rep, 500, "InternalFailureException", "out of memory");
    if (rep.status >= 500 && rep.error_type != NULL)
        fprintf(stderr, "iotmock: HTTP %s %s -> %u %s\n", method, url, rep.status,
                rep.error_type ? rep.error_type : "");
    enum MHD_Result ret = send_reply(conn, &rep);
    reply_clear(&rep);
    cJSON_Delete(req.body);
    request_free(&req);
    return ret;
}

/* A body over the cap is read and dropped, then answered 413: clients write the whole body
 * before they read, and an early answer would reach them as a broken pipe. Only an absurd
 * Content-Length is refused before reading (the connection then closes). */
#define HTTP_BODY_DRAIN_MAX (64 * HTTP_BODY_MAX)

static bool declared_absurd(struct MHD_Connection *conn)
{
    const char *cl =
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    return cl != NULL && strtoull(cl, NULL, 10) > HTTP_BODY_DRAIN_MAX;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **req_cls)
{
    struct http_server *s = cls;
    struct request_ctx *ctx = *req_cls;
    if (ctx == NULL) { /* first call: headers only */
        if ((ctx = calloc(1, sizeof(*ctx))) == NULL)
            return MHD_NO;
        *req_cls = ctx;
        if (!declared_absurd(conn))
            return MHD_YES;
        ctx->too_large = true;
        return answer(s, conn, url, method, ctx);
    }
    if (*upload_data_size != 0) {
        accumulate(ctx, upload_data, *upload_data_size);
        *upload_data_size = 0;
        return MHD_YES;
    }
    return answer(s, conn, url, method, ctx);
}

/* The router decodes the path itself, segment by segment, so that an encoded "/" (as in
 * ListAttachedPolicies' certificate ARN) stays inside its segment; query values are decoded when
 * read. libmicrohttpd must therefore hand both over as they arrived. */
static size_t keep_escapes(void *cls, struct MHD_Connection *conn, char *s)
{
    return strlen(s);
}

static int parse_bind(const char *bind, int port, struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof(*ss));
    struct sockaddr_in *v4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, bind, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)port);
        return AF_INET;
    }
    if (inet_pton(AF_INET6, bind, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)port);
        return AF_INET6;
    }
    return 0;
}

/* The host `iotmock serve --host` issued the server certificate for: its CN. */
static void host_from_server_cert(const char *state_dir, char *out, size_t n)
{
    char path[4096];
    size_t len = 0;
    X509 *cert = NULL;
    snprintf(out, n, "localhost");
    if (state_dir == NULL)
        return;
    snprintf(path, sizeof(path), "%s/%s", state_dir, BOOTSTRAP_SERVER_CERT);
    char *pem = bootstrap_read_file(path, &len);
    if (pem != NULL && ca_cert_from_pem(pem, len, &cert, NULL) == IOT_OK) {
        char cn[HTTP_HOST_MAX];
        if (X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, cn, sizeof(cn)) >
            0)
            snprintf(out, n, "%s", cn);
    }
    X509_free(cert);
    free(pem);
}

enum iot_err http_server_start(const struct http_config *cfg, struct http_server **out,
                               struct iot_error *err)
{
    struct sockaddr_storage ss;
    int family = parse_bind(cfg->bind, cfg->port, &ss);
    if (family == 0)
        return iot_error_set(err, IOT_ERR_INVALID_REQUEST, "--bind %s is not an IP address",
                             cfg->bind);
    struct http_server *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return iot_error_set(err, IOT_ERR_NOMEM, "out of memory");
    s->cfg = *cfg;
    s->cfg.seed = NULL;
    if (cfg->seed != NULL) {
        s->seed = *cfg->seed;
        s->have_seed = true;
    }
    if (s->cfg.region == NULL)
        s->cfg.region = "us-east-1";
    if (s->cfg.account_id == NULL)
        s->cfg.account_id = "123456789012";
    if (cfg->host != NULL)
        snprintf(s->host, sizeof(s->host), "%s", cfg->host);
    else
        host_from_server_cert(cfg->state_dir, s->host, sizeof(s->host));
    unsigned int flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG;
    if (family == AF_INET6)
        flags |= MHD_USE_IPv6;
    s->daemon =
        MHD_start_daemon(flags, (uint16_t)cfg->port, NULL, NULL, on_request, s,
                         MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss, MHD_OPTION_THREAD_POOL_SIZE,
                         (unsigned int)HTTP_THREADS, MHD_OPTION_NOTIFY_COMPLETED, free_ctx, NULL,
                         MHD_OPTION_UNESCAPE_CALLBACK, keep_escapes, NULL, MHD_OPTION_END);
    if (s->daemon == NULL) {
        free(s);
        return iot_error_set(err, IOT_ERR_IO, "cannot listen for HTTP on %s:%d", cfg->bind,
                             cfg->port);
    }
    *out = s;
    return IOT_OK;
}

void http_server_stop(struct http_server *s)
{
    if (s == NULL)
        return;
    MHD_stop_daemon(s->daemon);
    free(s);
}
