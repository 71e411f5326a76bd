/* Error vocabulary: formatting and names. */
#include "err.h"

#include <stdarg.h>
#include <stdio.h>

enum iot_err iot_error_set(struct iot_error *e, enum iot_err code, const char *fmt, ...)
{
    if (e == NULL)
        return code;
    e->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof(e->message), fmt, ap);
    va_end(ap);
    return code;
}

const char *iot_err_name(enum iot_err code)
{
    switch (code) {
    case IOT_OK: return "IOT_OK";
    case IOT_ERR_NOMEM: return "IOT_ERR_NOMEM";
    case IOT_ERR_INVALID_PAYLOAD: return "IOT_ERR_INVALID_PAYLOAD";
    case IOT_ERR_INVALID_TOKEN: return "IOT_ERR_INVALID_TOKEN";
    case IOT_ERR_INVALID_CSR: return "IOT_ERR_INVALID_CSR";
    case IOT_ERR_INVALID_PARAMS: return "IOT_ERR_INVALID_PARAMS";
    case IOT_ERR_ACCESS_DENIED: return "IOT_ERR_ACCESS_DENIED";
    case IOT_ERR_NOT_FOUND: return "IOT_ERR_NOT_FOUND";
    case IOT_ERR_TEMPLATE_DISABLED: return "IOT_ERR_TEMPLATE_DISABLED";
    case IOT_ERR_CONFLICT: return "IOT_ERR_CONFLICT";
    case IOT_ERR_ALREADY_EXISTS: return "IOT_ERR_ALREADY_EXISTS";
    case IOT_ERR_INVALID_REQUEST: return "IOT_ERR_INVALID_REQUEST";
    case IOT_ERR_CERT_STATE: return "IOT_ERR_CERT_STATE";
    case IOT_ERR_DELETE_CONFLICT: return "IOT_ERR_DELETE_CONFLICT";
    case IOT_ERR_IO: return "IOT_ERR_IO";
    case IOT_ERR_INTERNAL: return "IOT_ERR_INTERNAL";
    }
    return "IOT_ERR_UNKNOWN";
}
