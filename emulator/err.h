/* The one error vocabulary of the emulator. Every module returns an enum iot_err and, where a
 * client will read it, fills a struct iot_error with a human sentence. Each edge translates it once:
 * the MQTT provisioning API to {"statusCode","errorCode","errorMessage"} (shared/spec/provisioning.md
 * §1.8), the control plane to an HTTP status and x-amzn-ErrorType. */
#ifndef IOTMOCK_ERR_H
#define IOTMOCK_ERR_H

#include <stddef.h>

enum iot_err {
    IOT_OK = 0,
    IOT_ERR_NOMEM,
    IOT_ERR_INVALID_PAYLOAD,   /* unparseable or wrongly typed request */
    IOT_ERR_INVALID_TOKEN,     /* certificateOwnershipToken empty, unknown, expired */
    IOT_ERR_INVALID_CSR,       /* CSR unparseable, bad signature, weak or unsupported key */
    IOT_ERR_INVALID_PARAMS,    /* template parameter missing, template evaluation failed */
    IOT_ERR_ACCESS_DENIED,     /* pre-provisioning hook denied, errored or timed out */
    IOT_ERR_NOT_FOUND,         /* a named resource (template, thing, policy, certificate) is absent */
    IOT_ERR_TEMPLATE_DISABLED, /* template exists but enabled=false */
    IOT_ERR_CONFLICT,          /* OverrideSettings FAIL on an existing resource */
    IOT_ERR_ALREADY_EXISTS,
    IOT_ERR_INVALID_REQUEST,   /* control-plane request invalid, malformed template */
    IOT_ERR_CERT_STATE,        /* certificate in a state that forbids the operation */
    IOT_ERR_DELETE_CONFLICT,
    IOT_ERR_IO,                /* file system or database failure */
    IOT_ERR_INTERNAL,
};

/* A code plus the sentence a client or log reader sees. Fixed size: no ownership to track. */
struct iot_error {
    enum iot_err code;
    char message[256];
};

/* Sets e (if not NULL) and returns code, so callers can write `return iot_error_set(...)`. */
enum iot_err iot_error_set(struct iot_error *e, enum iot_err code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Stable identifier of a code, e.g. "IOT_ERR_INVALID_CSR"; for logs and tests. */
const char *iot_err_name(enum iot_err code);

#endif
