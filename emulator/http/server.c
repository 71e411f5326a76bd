/* Control-plane HTTP server: route table, AWS-shaped errors, emulator routes. */
#include "http/server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <microhttpd.h>

#include "bootstrap.h"

struct http_server {
    struct MHD_Daemon *daemon;
    struct http_config cfg;
};

static enum MHD_Result send_text(struct MHD_Connection *conn, unsigned int status,
                                 const char *content_type, const char *body, const char *error_type)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(strlen(body), (void *)body,
                                                             MHD_RESPMEM_MUST_COPY);
    if (r == NULL)
        return MHD_NO;
    MHD_add_response_header(r, "Content-Type", content_type);
    if (error_type)
        MHD_add_response_header(r, "x-amzn-ErrorType", error_type);
    enum MHD_Result ret = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return ret;
}

/* AWS's REST-JSON error shape: status, x-amzn-ErrorType, {"message": ...}. */
static enum MHD_Result send_error(struct MHD_Connection *conn, unsigned int status,
                                  const char *type, const char *message)
{
    char body[512];
    snprintf(body, sizeof(body), "{\"message\":\"%s\"}", message);
    return send_text(conn, status, "application/json", body, type);
}

static enum MHD_Result route_health(struct http_server *s, struct MHD_Connection *conn)
{
    if (!atomic_load(s->cfg.ready))
        return send_text(conn, 503, "application/json", "{\"status\":\"starting\"}", NULL);
    return send_text(conn, 200, "application/json", "{\"status\":\"ok\"}", NULL);
}

static enum MHD_Result route_root_ca(struct http_server *s, struct MHD_Connection *conn)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/root-ca.pem", s->cfg.state_dir);
    char *pem = bootstrap_read_file(path, NULL);
    if (pem == NULL)
        return send_error(conn, 500, "InternalFailureException", "root-ca.pem is unreadable");
    enum MHD_Result ret = send_text(conn, 200, "application/x-pem-file", pem, NULL);
    free(pem);
    return ret;
}

struct route {
    const char *method;
    const char *path;
    enum MHD_Result (*handler)(struct http_server *s, struct MHD_Connection *conn);
};

static const struct route routes[] = {
    {"GET", "/_iotmock/health", route_health},
    {"GET", "/_iotmock/root-ca.pem", route_root_ca},
};

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **req_cls)
{
    struct http_server *s = cls;
    if (*req_cls == NULL) { /* first call: headers only; wait for the body */
        *req_cls = (void *)1;
        return MHD_YES;
    }
    if (*upload_data_size != 0) { /* bodies are not used by these routes yet */
        *upload_data_size = 0;
        return MHD_YES;
    }
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        if (strcmp(routes[i].path, url) == 0 && strcmp(routes[i].method, method) == 0)
            return routes[i].handler(s, conn);
    }
    return send_error(conn, 404, "ResourceNotFoundException", "No such operation in iotmock yet");
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
    unsigned int flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG;
    if (family == AF_INET6)
        flags |= MHD_USE_IPv6;
    s->daemon = MHD_start_daemon(flags, (uint16_t)cfg->port, NULL, NULL, on_request, s,
                                 MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss, MHD_OPTION_END);
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
