/* CBOR <-> cJSON for the fleet provisioning API (shared/spec/provisioning.md §1.9); the mapping is
 * in cbor_codec.h. Decoding drives libcbor's streaming decoder with callbacks that build the cJSON
 * tree as items arrive, so nothing is allocated for a count a client merely announces and every
 * cap is checked before the item it guards is built. Encoding builds a libcbor item tree and lets
 * libcbor serialize it. */
#include "cbor_codec.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cbor.h>

#define MSG_MALFORMED "Request payload is not valid CBOR"
#define MSG_TRUNCATED "Request payload is not valid CBOR: it ends inside an item"
#define MSG_NOT_MAP "Request payload is not a CBOR map"
#define MSG_TRAILING "Request payload has bytes after its CBOR map"
#define MSG_KEY_TYPE "CBOR map keys must be text strings"
#define MSG_KEY_TWICE "CBOR map has a duplicate key"
#define MSG_TEXT "CBOR text string is not well-formed UTF-8 or contains NUL"
#define MSG_NOMEM "out of memory decoding CBOR"
#define MSG_DEEP "CBOR items nest too deep"

/* ---- UTF-8 --------------------------------------------------------------------------------- */

/* Length of the well-formed UTF-8 character (RFC 3629) at S, or 0 (NUL counts as ill-formed:
 * cJSON and C strings would cut the text there). */
static size_t utf8_char(const unsigned char *s, size_t n)
{
    static const uint32_t least[5] = {0, 0, 0x80, 0x800, 0x10000}; /* no overlong forms */
    unsigned char c = s[0];
    size_t len = c == 0               ? 0
                 : c < 0x80           ? 1
                 : (c & 0xE0) == 0xC0 ? 2
                 : (c & 0xF0) == 0xE0 ? 3
                 : (c & 0xF8) == 0xF0 ? 4
                                      : 0;
    if (len == 0 || len > n)
        return 0;
    if (len == 1)
        return 1;
    uint32_t cp = c & (0x7Fu >> len);
    for (size_t k = 1; k < len; k++) {
        if ((s[k] & 0xC0) != 0x80)
            return 0;
        cp = cp << 6 | (s[k] & 0x3Fu);
    }
    if (cp < least[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return len;
}

/* Length of the longest well-formed prefix of S[0..N). */
static size_t utf8_prefix(const unsigned char *s, size_t n)
{
    size_t i = 0, k;
    while (i < n && (k = utf8_char(s + i, n - i)) > 0)
        i += k;
    return i;
}

/* ---- decoding ------------------------------------------------------------------------------ */

enum frame_kind { FRAME_MAP, FRAME_ARRAY, FRAME_TAG };

/* A container still being filled. Its node joins the parent only when complete. */
struct frame {
    enum frame_kind kind;
    bool indefinite;
    size_t size;  /* definite: entries announced (map: pairs; tag: 1) */
    size_t count; /* entries so far */
    cJSON *node;  /* owned */
    cJSON *key;   /* map: a key waiting for its value, owned */
};

enum chunks { CHUNKS_NONE, CHUNKS_TEXT, CHUNKS_BYTES };

struct decoder {
    struct frame stack[CBOR_CODEC_DEPTH_MAX];
    int depth;
    enum chunks chunks; /* inside an indefinite-length string */
    char *text;         /* CHUNKS_TEXT: the chunks joined so far */
    size_t text_len;
    cJSON *root; /* the top-level map, once complete */
    bool failed;
    enum iot_err code;
    struct iot_error *err;
};

static void fail(struct decoder *d, enum iot_err code, const char *msg)
{
    if (d->failed)
        return;
    d->failed = true;
    d->code = iot_error_set(d->err, code, "%s", msg);
}

/* May a new item (not a string chunk) start here? Only a map may start the payload. */
static bool ready(struct decoder *d, bool is_map)
{
    if (d->chunks != CHUNKS_NONE) /* chunks are definite strings of the string's type (RFC 8949) */
        fail(d, IOT_ERR_INVALID_PAYLOAD, MSG_MALFORMED);
    else if (d->depth == 0 && !is_map)
        fail(d, IOT_ERR_INVALID_PAYLOAD, MSG_NOT_MAP);
    return !d->failed;
}

static void pop(struct decoder *d);

static void set_key(struct decoder *d, struct frame *f, cJSON *key)
{
    if (!cJSON_IsString(key))
        fail(d, IOT_ERR_INVALID_PAYLOAD, MSG_KEY_TYPE);
    else if (cJSON_GetObjectItemCaseSensitive(f->node, key->valuestring) != NULL)
        fail(d, IOT_ERR_INVALID_PAYLOAD, MSG_KEY_TWICE);
    else if (f->count >= CBOR_CODEC_PAIRS_MAX)
        fail(d, IOT_ERR_INVALID_PAYLOAD, "CBOR map has too many entries");
    if (d->failed)
        cJSON_Delete(key);
    else
        f->key = key;
}

/* Hands a complete item V (owned) to the innermost container. */
static void add(struct decoder *d, cJSON *v)
{
    if (v == NULL) {
        fail(d, IOT_ERR_NOMEM, MSG_NOMEM);
        return;
    }
    struct frame *f = &d->stack[d->depth - 1];
    if (f->kind == FRAME_MAP && f->key == NULL) {
        set_key(d, f, v);
        return;
    }
    bool ok = f->kind == FRAME_MAP ? cJSON_AddItemToObject(f->node, f->key->valuestring, v)
                                   : cJSON_AddItemToArray(f->node, v);
    cJSON_Delete(f->key);
    f->key = NULL;
    if (!ok) {
        cJSON_Delete(v);
        fail(d, IOT_ERR_NOMEM, MSG_NOMEM);
        return;
    }
    if (++f->count == f->size && !f->indefinite)
        pop(d);
}

static void push(struct decoder *d, enum frame_kind kind, bool indefinite, size_t size, cJSON *node)
{
    if (node == NULL) {
        fail(d, IOT_ERR_NOMEM, MSG_NOMEM);
        return;
    }
    if (d->depth == CBOR_CODEC_DEPTH_MAX) {
        cJSON_Delete(node);
        fail(d, IOT_ERR_INVALID_PAYLOAD, MSG_DEEP);
        return;
    }
    d->stack[d->depth++] =
        (struct frame){.kind = kind, .indefinite = indefinite, .size = size, .node = node};
    if (!indefinite && size == 0)
        pop(d);
}

static void pop(struct decoder *d)
{
    struct frame *f = &d->stack[--d->depth];
    if (d->depth == 0)
        d->root = f->node;
    else
        add(d, f->node);
    f->node = NULL;
}

/* A byte string or undefined: no JSON twin, so an empty array (cbor_codec.h). That array is one
 * level of the tree like any other, so it obeys the depth cap too, and every tree the decoder
 * returns is one cbor_codec_encode() accepts. */
static void add_typeless(struct decoder *d)
{
    if (d->depth == CBOR_CODEC_DEPTH_MAX)
        fail(d, IOT_ERR_INVALID_PAYLOAD, MSG_DEEP);
    else
        add(d, cJSON_CreateArray());
}

static cJSON *text(const void *data, size_t len)
{
    char *s = malloc(len + 1);
    if (s == NULL)
        return NULL;
    if (len > 0)
        memcpy(s, data, len);
    s[len] = '\0';
    cJSON *v = cJSON_CreateString(s);
    free(s);
    return v;
}

static void append(struct decoder *d, const void *data, size_t len)
{
    char *grown = realloc(d->text, d->text_len + len + 1);
    if (grown == NULL) {
        fail(d, IOT_ERR_NOMEM, MSG_NOMEM);
        return;
    }
    d->text = grown;
    if (len > 0)
        memcpy(d->text + d->text_len, data, len);
    d->text_len += len;
}

/* ---- libcbor callbacks (one per decoded item header) ---- */

static void number(void *ctx, double v)
{
    if (ready(ctx, false))
        add(ctx, cJSON_CreateNumber(v));
}

static void on_uint8(void *ctx, uint8_t v)
{
    number(ctx, v);
}

static void on_uint16(void *ctx, uint16_t v)
{
    number(ctx, v);
}

static void on_uint32(void *ctx, uint32_t v)
{
    number(ctx, v);
}

static void on_uint64(void *ctx, uint64_t v)
{
    number(ctx, (double)v);
}

static void on_negint8(void *ctx, uint8_t v)
{
    number(ctx, -1.0 - v);
}

static void on_negint16(void *ctx, uint16_t v)
{
    number(ctx, -1.0 - v);
}

static void on_negint32(void *ctx, uint32_t v)
{
    number(ctx, -1.0 - v);
}

static void on_negint64(void *ctx, uint64_t v)
{
    number(ctx, -1.0 - (double)v);
}

static void on_float(void *ctx, float v)
{
    number(ctx, v);
}

static void on_double(void *ctx, double v)
{
    number(ctx, v);
}

/* A definite text string, or one chunk of an indefinite one (each chunk must be well-formed). */
static void on_string(void *ctx, cbor_data data, size_t len)
{
    struct decoder *d = ctx;
    if (d->chunks == CHUNKS_BYTES)
        fail(d, IOT_ERR_INVALID_PAYLOAD, MSG_MALFORMED);
    else if (utf8_prefix(data, len) != len)
        fail(d, IOT_ERR_INVALID_PAYLOAD, MSG_TEXT);
    else if (d->chunks == CHUNKS_TEXT)
        append(d, data, len);
    else if (ready(d, false))
        add(d, text(data, len));
}

static void on_string_start(void *ctx)
{
    struct decoder *d = ctx;
    if (ready(d, false)) {
        d->chunks = CHUNKS_TEXT;
        d->text_len = 0;
    }
}

/* A definite byte string, or one chunk of an indefinite one: only its type survives. */
static void on_bytes(void *ctx, cbor_data data, size_t len)
{
    struct decoder *d = ctx;
    if (d->chunks == CHUNKS_TEXT)
        fail(d, IOT_ERR_INVALID_PAYLOAD, MSG_MALFORMED);
    else if (d->chunks == CHUNKS_NONE && ready(d, false))
        add_typeless(d);
}

static void on_bytes_start(void *ctx)
{
    struct decoder *d = ctx;
    if (ready(d, false))
        d->chunks = CHUNKS_BYTES;
}

static void on_array_start(void *ctx, size_t size)
{
    if (ready(ctx, false))
        push(ctx, FRAME_ARRAY, false, size, cJSON_CreateArray());
}

static void on_indef_array_start(void *ctx)
{
    if (ready(ctx, false))
        push(ctx, FRAME_ARRAY, true, 0, cJSON_CreateArray());
}

static void on_map_start(void *ctx, size_t size)
{
    if (ready(ctx, true))
        push(ctx, FRAME_MAP, false, size, cJSON_CreateObject());
}

static void on_indef_map_start(void *ctx)
{
    if (ready(ctx, true))
        push(ctx, FRAME_MAP, true, 0, cJSON_CreateObject());
}

static void on_tag(void *ctx, uint64_t tag)
{
    if (!ready(ctx, false))
        return;
    cJSON *node = cJSON_CreateArray();
    if (node != NULL && !cJSON_AddItemToArray(node, cJSON_CreateNumber((double)tag))) {
        cJSON_Delete(node);
        node = NULL;
    }
    push(ctx, FRAME_TAG, false, 1, node);
}

static void on_undefined(void *ctx)
{
    if (ready(ctx, false))
        add_typeless(ctx);
}

static void on_null(void *ctx)
{
    if (ready(ctx, false))
        add(ctx, cJSON_CreateNull());
}

static void on_bool(void *ctx, bool v)
{
    if (ready(ctx, false))
        add(ctx, cJSON_CreateBool(v));
}

static void on_break(void *ctx)
{
    struct decoder *d = ctx;
    enum chunks c = d->chunks;
    d->chunks = CHUNKS_NONE;
    if (c == CHUNKS_TEXT) {
        add(d, text(d->text ? d->text : "", d->text_len));
        return;
    }
    if (c == CHUNKS_BYTES) {
        add_typeless(d);
        return;
    }
    const struct frame *f = d->depth > 0 ? &d->stack[d->depth - 1] : NULL;
    if (f == NULL || !f->indefinite || f->key != NULL) /* no open container, or a key alone */
        fail(d, IOT_ERR_INVALID_PAYLOAD, MSG_MALFORMED);
    else
        pop(d);
}

/* libcbor 0.8 names two fields the other way round from their comments: byte_string is the
 * definite string, byte_string_start the start of an indefinite one. */
static const struct cbor_callbacks callbacks = {
    .uint8 = on_uint8,
    .uint16 = on_uint16,
    .uint32 = on_uint32,
    .uint64 = on_uint64,
    .negint8 = on_negint8,
    .negint16 = on_negint16,
    .negint32 = on_negint32,
    .negint64 = on_negint64,
    .byte_string = on_bytes,
    .byte_string_start = on_bytes_start,
    .string = on_string,
    .string_start = on_string_start,
    .array_start = on_array_start,
    .indef_array_start = on_indef_array_start,
    .map_start = on_map_start,
    .indef_map_start = on_indef_map_start,
    .tag = on_tag,
    .float2 = on_float,
    .float4 = on_float,
    .float8 = on_double,
    .undefined = on_undefined,
    .null = on_null,
    .boolean = on_bool,
    .indef_break = on_break,
};

/* Feeds item headers to the callbacks until the top-level map is complete; returns the bytes
 * consumed. */
static size_t run(struct decoder *d, const unsigned char *p, size_t len)
{
    size_t pos = 0;
    while (!d->failed && d->root == NULL && pos < len) {
        struct cbor_decoder_result r = cbor_stream_decode(p + pos, len - pos, &callbacks, d);
        if (r.status != CBOR_DECODER_FINISHED)
            fail(d, IOT_ERR_INVALID_PAYLOAD,
                 r.status == CBOR_DECODER_NEDATA ? MSG_TRUNCATED : MSG_MALFORMED);
        pos += r.read;
    }
    return pos;
}

static void decoder_clear(struct decoder *d)
{
    for (int i = 0; i < d->depth; i++) {
        cJSON_Delete(d->stack[i].node);
        cJSON_Delete(d->stack[i].key);
    }
    free(d->text);
    if (d->failed)
        cJSON_Delete(d->root);
}

enum iot_err cbor_codec_decode(const void *buf, size_t len, cJSON **out, struct iot_error *err)
{
    *out = NULL;
    if (len == 0) { /* the Embedded C SDK's CreateKeysAndCertificate request (clients.md §4) */
        *out = cJSON_CreateObject();
        return *out ? IOT_OK : iot_error_set(err, IOT_ERR_NOMEM, MSG_NOMEM);
    }
    if (len > CBOR_CODEC_PAYLOAD_MAX)
        return iot_error_set(err, IOT_ERR_INVALID_PAYLOAD,
                             "Request payload is %zu bytes; at most %d are allowed", len,
                             CBOR_CODEC_PAYLOAD_MAX);
    struct decoder d = {.err = err};
    size_t used = run(&d, buf, len);
    if (d.root == NULL)
        fail(&d, IOT_ERR_INVALID_PAYLOAD, MSG_TRUNCATED);
    else if (used < len)
        fail(&d, IOT_ERR_INVALID_PAYLOAD, MSG_TRAILING);
    decoder_clear(&d);
    if (d.failed)
        return d.code;
    *out = d.root;
    return IOT_OK;
}

/* ---- encoding ------------------------------------------------------------------------------ */

/* Only what JSON answers hold, nested no deeper than a request may be. */
static bool encodable(const cJSON *v, int depth)
{
    if (!cJSON_IsObject(v) && !cJSON_IsArray(v))
        return cJSON_IsString(v) || cJSON_IsNumber(v) || cJSON_IsBool(v) || cJSON_IsNull(v);
    if (depth >= CBOR_CODEC_DEPTH_MAX)
        return false;
    const cJSON *child;
    cJSON_ArrayForEach(child, v)
    {
        if (!encodable(child, depth + 1))
            return false;
    }
    return true;
}

static cbor_item_t *text_item(const char *s)
{
    s = s ? s : "";
    return cbor_build_stringn(s, utf8_prefix((const unsigned char *)s, strlen(s)));
}

/* The shortest head for N, as RFC 8949 §4.2.1 prefers (400 -> 19 01 90). */
static cbor_item_t *uint_item(uint64_t n, bool negative)
{
    if (n <= UINT8_MAX)
        return negative ? cbor_build_negint8((uint8_t)n) : cbor_build_uint8((uint8_t)n);
    if (n <= UINT16_MAX)
        return negative ? cbor_build_negint16((uint16_t)n) : cbor_build_uint16((uint16_t)n);
    if (n <= UINT32_MAX)
        return negative ? cbor_build_negint32((uint32_t)n) : cbor_build_uint32((uint32_t)n);
    return negative ? cbor_build_negint64(n) : cbor_build_uint64(n);
}

static cbor_item_t *number_item(double x)
{
    if (x >= 0 && x < 18446744073709551616.0 && (double)(uint64_t)x == x)
        return uint_item((uint64_t)x, false);
    if (x < 0 && x >= -9223372036854775808.0 && (double)(int64_t)x == x)
        return uint_item((uint64_t)(-1 - (int64_t)x), true);
    return cbor_build_float8(x);
}

static cbor_item_t *item_of(const cJSON *v, int depth);

/* Adds CHILD to CONTAINER (a map under CHILD's key, or an array); libcbor takes its own
 * references, ours are dropped either way. */
static bool add_child(cbor_item_t *container, const cJSON *child, int depth)
{
    bool map = cbor_isa_map(container);
    cbor_item_t *key = map ? text_item(child->string) : NULL;
    cbor_item_t *value = item_of(child, depth);
    bool ok = value != NULL;
    if (ok && map)
        ok = key != NULL && cbor_map_add(container, (struct cbor_pair){.key = key, .value = value});
    else if (ok)
        ok = cbor_array_push(container, value);
    if (key)
        cbor_decref(&key);
    if (value)
        cbor_decref(&value);
    return ok;
}

static cbor_item_t *container_item(const cJSON *v, int depth)
{
    size_t n = (size_t)cJSON_GetArraySize(v);
    cbor_item_t *c = cJSON_IsObject(v) ? cbor_new_definite_map(n) : cbor_new_definite_array(n);
    const cJSON *child;
    cJSON_ArrayForEach(child, v)
    {
        if (c == NULL || !add_child(c, child, depth + 1)) {
            if (c)
                cbor_decref(&c);
            return NULL;
        }
    }
    return c;
}

static cbor_item_t *item_of(const cJSON *v, int depth)
{
    if (cJSON_IsString(v))
        return text_item(v->valuestring);
    if (cJSON_IsNumber(v))
        return number_item(v->valuedouble);
    if (cJSON_IsBool(v))
        return cbor_build_bool(cJSON_IsTrue(v));
    if (cJSON_IsNull(v))
        return cbor_new_null();
    return container_item(v, depth);
}

enum iot_err cbor_codec_encode(const cJSON *in, unsigned char **out, size_t *out_len)
{
    *out = NULL;
    *out_len = 0;
    if (in == NULL || !encodable(in, 0))
        return IOT_ERR_INTERNAL;
    cbor_item_t *item = item_of(in, 0);
    if (item == NULL)
        return IOT_ERR_NOMEM;
    unsigned char *buf = NULL;
    size_t cap = 0;
    size_t n = cbor_serialize_alloc(item, &buf, &cap);
    cbor_decref(&item);
    if (n == 0) {
        free(buf);
        return IOT_ERR_NOMEM;
    }
    *out = buf;
    *out_len = n;
    return IOT_OK;
}
