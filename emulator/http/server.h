/* The control plane's HTTP listener (libmicrohttpd, its own thread). Today it serves the
 * emulator's own routes under /_iotmock/; the AWS REST operations are added route by route. */
#ifndef IOTMOCK_HTTP_SERVER_H
#define IOTMOCK_HTTP_SERVER_H

#include <stdatomic.h>

#include "err.h"
#include "registry.h"

struct http_config {
    const char *bind;        /* IPv4 or IPv6 literal; loopback unless told otherwise */
    int port;
    struct registry *reg;    /* borrowed */
    const char *state_dir;   /* root-ca.pem is served from here */
    const atomic_bool *ready; /* set once MQTT accepts connections */
};

struct http_server;

enum iot_err http_server_start(const struct http_config *cfg, struct http_server **out,
                               struct iot_error *err);
void http_server_stop(struct http_server *s);

#endif
