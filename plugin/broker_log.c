/* Why a connection ended, as Mosquitto 2.0.11 logs it. Its MOSQ_EVT_DISCONNECT always carries
 * reason -1, but do_disconnect() logs one line per cause just before raising the event
 * ("Client X closed its connection.", "Client X has exceeded timeout, disconnecting.", ...).
 * `iotmock serve` has Mosquitto write its log to a file as well as stderr (log_dest file,
 * connection_messages true), and this file reads the lines added since the last look, on the
 * broker thread, at each disconnect. Lines are flushed one by one by the writer, which is the
 * same thread; the file is emptied once it holds 1 MiB that has been read.
 *
 * The lines and the disconnectReason each stands for (shared/spec/broker-and-policy.md §5.1,
 * §8.3 item 9). Without the file every reason iotmock did not cause itself is CONNECTION_LOST. */
#include "plugin.h"

#include <ctype.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define LINE_MAX_LEN 2048     /* Mosquitto's own lines are below 1000 bytes */
#define TRUNCATE_AT (1 << 20) /* bytes read before the file is emptied */

struct broker_log {
    int fd;
    off_t offset;
    char line[LINE_MAX_LEN];
    size_t line_len; /* bytes of an unfinished line carried over */
    bool line_cut;   /* the carried line overflowed: ignore it */
};

static const struct {
    const char *rest; /* after "Client <id> " */
    enum events_reason why;
} CLIENT_LINES[] = {
    {"disconnected.", EVENTS_CLIENT_INITIATED_DISCONNECT}, /* DISCONNECT received */
    {"closed its connection.", EVENTS_CONNECTION_LOST},
    {"has exceeded timeout, disconnecting.", EVENTS_MQTT_KEEP_ALIVE_TIMEOUT},
    {"disconnected due to malformed packet.", EVENTS_CLIENT_ERROR},
    {"disconnected due to protocol error.", EVENTS_CLIENT_ERROR},
    {"disconnected due to oversize packet.", EVENTS_CLIENT_ERROR},
    {"disconnected due to oversize payload.", EVENTS_CLIENT_ERROR},
    {"disconnected due to QoS too high or retain not supported.", EVENTS_CLIENT_ERROR},
    {"disconnected due to out of memory.", EVENTS_SERVER_ERROR},
    {"disconnected, not authorised.", EVENTS_AUTH_ERROR},
    {"been disconnected by administrative action.", EVENTS_SERVER_INITIATED_DISCONNECT},
    {"already connected, closing old connection.", EVENTS_DUPLICATE_CLIENTID},
};

/* "Bad socket read/write on client <id>: <error>": the packet errors without a line of their
 * own are the client's doing; the rest (TLS, sockets) lost connections. */
static const char *const CLIENT_FAULTS[] = {
    "Requested QoS not supported on server.", "Malformed UTF-8",
    "Duplicate property in property list", "Unknown error.", /* e.g. an invalid topic alias */
};

struct broker_log *broker_log_open(const char *path)
{
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        mosquitto_log_printf(MOSQ_LOG_WARNING,
                             "iotmock: cannot read the broker log %s: "
                             "disconnect reasons will be approximate",
                             path);
        if (fd >= 0)
            close(fd);
        return NULL;
    }
    struct broker_log *l = calloc(1, sizeof(*l));
    if (l == NULL) {
        close(fd);
        return NULL;
    }
    l->fd = fd;
    l->offset = st.st_size; /* what came before is not ours to read */
    return l;
}

void broker_log_close(struct broker_log *l)
{
    if (l == NULL)
        return;
    close(l->fd);
    free(l);
}

static bool starts_with(const char *s, const char *end, const char *prefix, size_t n)
{
    return (size_t)(end - s) >= n && memcmp(s, prefix, n) == 0;
}

static bool equals(const char *s, const char *end, const char *word)
{
    size_t n = strlen(word);
    return (size_t)(end - s) == n && memcmp(s, word, n) == 0;
}

/* The reason LINE states about client ID, if it is a disconnect line about that client. */
static bool line_reason(const char *s, const char *end, const char *id, enum events_reason *out)
{
    const char *digits = s;
    while (s < end && isdigit((unsigned char)*s))
        s++;
    if (s > digits && starts_with(s, end, ": ", 2))
        s += 2; /* the timestamp */
    else
        s = digits;
    size_t id_len = strlen(id);
    if (starts_with(s, end, "Client ", 7) && starts_with(s + 7, end, id, id_len) &&
        starts_with(s + 7 + id_len, end, " ", 1)) {
        const char *rest = s + 7 + id_len + 1;
        for (size_t i = 0; i < sizeof(CLIENT_LINES) / sizeof(CLIENT_LINES[0]); i++)
            if (equals(rest, end, CLIENT_LINES[i].rest)) {
                *out = CLIENT_LINES[i].why;
                return true;
            }
        if (starts_with(rest, end, "disconnected: ", 14)) { /* a socket error */
            *out = EVENTS_CONNECTION_LOST;
            return true;
        }
        return false;
    }
    static const char bad[] = "Bad socket read/write on client ";
    if (starts_with(s, end, bad, sizeof(bad) - 1) &&
        starts_with(s + sizeof(bad) - 1, end, id, id_len) &&
        starts_with(s + sizeof(bad) - 1 + id_len, end, ": ", 2)) {
        const char *err = s + sizeof(bad) - 1 + id_len + 2;
        *out = EVENTS_CONNECTION_LOST;
        for (size_t i = 0; i < sizeof(CLIENT_FAULTS) / sizeof(CLIENT_FAULTS[0]); i++)
            if (equals(err, end, CLIENT_FAULTS[i]))
                *out = EVENTS_CLIENT_ERROR;
        return true;
    }
    return false;
}

/* Feeds N bytes of the file; every complete line is looked at. */
static void feed(struct broker_log *l, const char *buf, size_t n, const char *id, bool *found,
                 enum events_reason *out)
{
    const char *p = buf, *end = buf + n;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *stop = nl ? nl : end;
        size_t len = (size_t)(stop - p);
        if (l->line_len + len >= sizeof(l->line))
            l->line_cut = true;
        else {
            memcpy(l->line + l->line_len, p, len);
            l->line_len += len;
        }
        if (nl == NULL)
            return;
        if (!l->line_cut && line_reason(l->line, l->line + l->line_len, id, out))
            *found = true;
        l->line_len = 0;
        l->line_cut = false;
        p = nl + 1;
    }
}

bool broker_log_reason(struct broker_log *l, const char *client_id, enum events_reason *out)
{
    char buf[16384];
    bool found = false;
    struct stat st;
    if (fstat(l->fd, &st) == 0 && st.st_size < l->offset) /* emptied by someone else */
        l->offset = 0;
    for (;;) {
        ssize_t n = pread(l->fd, buf, sizeof(buf), l->offset);
        if (n <= 0)
            break;
        l->offset += n;
        feed(l, buf, (size_t)n, client_id, &found, out);
    }
    if (l->offset >= TRUNCATE_AT && l->line_len == 0 && ftruncate(l->fd, 0) == 0)
        l->offset = 0;
    return found;
}
