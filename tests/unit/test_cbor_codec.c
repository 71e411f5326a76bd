/* CBOR <-> cJSON codec (shared/spec/provisioning.md §1.9). Every vector below was encoded by hand
 * from RFC 8949 (head byte = major type << 5 | length) and is written out as hex, so the tests do
 * not trust the encoder to check the decoder or the other way round. Refusals come first. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "cbor_codec.h"
#include "check.h"

/* Text keys and values used in the vectors, as hex. */
#define H_STATUS_CODE "6a 73 74 61 74 75 73 43 6f 64 65"                 /* "statusCode" */
#define H_ERROR_CODE "69 65 72 72 6f 72 43 6f 64 65"                     /* "errorCode" */
#define H_ERROR_MESSAGE "6c 65 72 72 6f 72 4d 65 73 73 61 67 65"         /* "errorMessage" */
#define H_INVALID_PAYLOAD "6e 49 6e 76 61 6c 69 64 50 61 79 6c 6f 61 64" /* "InvalidPayload" */
#define H_TOKEN_KEY                                                                                \
    "78 19 63 65 72 74 69 66 69 63 61 74 65 4f 77 6e 65 72 73 68 69 70 54 6f 6b 65 6e"
#define H_PARAMETERS "6a 70 61 72 61 6d 65 74 65 72 73"   /* "parameters" */
#define H_SERIAL "6c 53 65 72 69 61 6c 4e 75 6d 62 65 72" /* "SerialNumber" */

/* The spec's RegisterThing request, {"certificateOwnershipToken":"tok",
 * "parameters":{"SerialNumber":"123"}}. */
#define REGISTER_VECTOR                                                                            \
    "a2 " H_TOKEN_KEY " 63 74 6f 6b " H_PARAMETERS " a1 " H_SERIAL " 63 31 32 33"

/* The same request with every map and string indefinite-length (chunks "to"+"k", "12"+"3") and
 * the token key itself in two chunks, "certificate" + "OwnershipToken". */
#define REGISTER_INDEFINITE                                                                        \
    "bf 7f 6b 63 65 72 74 69 66 69 63 61 74 65 6e 4f 77 6e 65 72 73 68 69 70 54 6f 6b 65 6e ff "   \
    "7f 62 74 6f 61 6b ff " H_PARAMETERS " bf " H_SERIAL " 7f 62 31 32 61 33 ff ff ff"

static unsigned char buf[CBOR_CODEC_PAYLOAD_MAX + 1024];

/* Writes the bytes of HEX (pairs of hex digits, spaces ignored) to OUT; returns how many. */
static size_t unhex(const char *hex, unsigned char *out)
{
    size_t n = 0;
    unsigned v = 0;
    int half = 0;
    for (const char *p = hex; *p; p++) {
        if (*p == ' ')
            continue;
        v = v << 4 | (unsigned)(*p <= '9' ? *p - '0' : (*p | 0x20) - 'a' + 10);
        if (++half == 2) {
            out[n++] = (unsigned char)v;
            v = 0;
            half = 0;
        }
    }
    return n;
}

static enum iot_err decode_hex(const char *hex, cJSON **out, struct iot_error *err)
{
    size_t n = unhex(hex, buf);
    return cbor_codec_decode(buf, n, out, err);
}

/* HEX must be refused as InvalidPayload with no tree left behind; MESSAGE (if given) is exact. */
static void refuse(const char *hex, const char *message)
{
    cJSON *out = (cJSON *)1;
    struct iot_error err = {0};
    enum iot_err rc = decode_hex(hex, &out, &err);
    CHECK_INT(rc, IOT_ERR_INVALID_PAYLOAD);
    CHECK_INT(err.code, IOT_ERR_INVALID_PAYLOAD);
    CHECK(out == NULL);
    CHECK(err.message[0] != '\0');
    if (message)
        CHECK_STR(err.message, message);
    if (rc != IOT_ERR_INVALID_PAYLOAD)
        fprintf(stderr, "  input: %s\n", hex);
    cJSON_Delete(rc == IOT_OK ? out : NULL);
}

/* HEX must decode to the tree of the JSON text WANT. */
static void accept(const char *hex, const char *want)
{
    cJSON *out = NULL;
    struct iot_error err = {0};
    CHECK_INT(decode_hex(hex, &out, &err), IOT_OK);
    cJSON *expected = cJSON_Parse(want);
    CHECK(expected != NULL);
    CHECK(out != NULL && cJSON_Compare(out, expected, 1));
    if (out == NULL || !cJSON_Compare(out, expected, 1)) {
        char *got = out ? cJSON_PrintUnformatted(out) : NULL;
        fprintf(stderr, "  input: %s\n  got: %s (%s)\n  want: %s\n", hex, got ? got : "(null)",
                err.message, want);
        free(got);
    }
    cJSON_Delete(out);
    cJSON_Delete(expected);
}

/* ---- refusals ------------------------------------------------------------------------------ */

static void test_not_a_map(void)
{
    const char *msg = "Request payload is not a CBOR map";
    refuse("80", msg);          /* [] */
    refuse("9f ff", msg);       /* [_ ] */
    refuse("60", msg);          /* "" */
    refuse("7f ff", msg);       /* (_ ) */
    refuse("40", msg);          /* h'' */
    refuse("5f ff", msg);       /* (_ h'') */
    refuse("01", msg);          /* 1 */
    refuse("20", msg);          /* -1 */
    refuse("f6", msg);          /* null */
    refuse("f5", msg);          /* true */
    refuse("f7", msg);          /* undefined */
    refuse("f9 3c 00", msg);    /* 1.0 */
    refuse("c0 a0", msg);       /* a tagged map */
    refuse("d9 d9 f7 a0", msg); /* self-described CBOR: still a tag, not a map */
    refuse("ff", "Request payload is not valid CBOR");
}

static void test_malformed(void)
{
    const char *bad = "Request payload is not valid CBOR";
    refuse("1c", bad);                   /* reserved additional information 28 */
    refuse("a1 61 61 1f", bad);          /* indefinite length for an integer */
    refuse("a1 61 61 3e", bad);          /* reserved, major type 1 */
    refuse("a1 61 61 df a0", bad);       /* indefinite tag */
    refuse("a1 61 61 ff", bad);          /* break inside a definite map */
    refuse("a1 61 61 82 01 ff", bad);    /* break inside a definite array */
    refuse("bf 61 61 ff", bad);          /* break after a key without its value */
    refuse("a1 61 61 7f 41 61 ff", bad); /* byte chunk inside a text string */
    refuse("a1 61 61 5f 61 61 ff", bad); /* text chunk inside a byte string */
    refuse("a1 61 61 7f 7f ff ff", bad); /* nested indefinite string */
    refuse("a1 61 61 7f 01 ff", bad);    /* integer inside a text string */
    refuse("a1 61 61 7f a0 ff", bad);    /* map inside a text string */
}

static void test_truncated(void)
{
    const char *msg = "Request payload is not valid CBOR: it ends inside an item";
    refuse("a1", msg);
    refuse("bf", msg);
    refuse("bf 61 61 01", msg);                         /* indefinite map never closed */
    refuse("a1 61 61 c0", msg);                         /* tag without its item */
    refuse("a1 61 61 7f 61 61", msg);                   /* chunked string never closed */
    refuse("a1 61 61 19 01", msg);                      /* 2-byte integer with 1 byte */
    refuse("a1 61 61 7b ff ff ff ff ff ff ff ff", msg); /* 2^64-1 bytes of text announced */
    refuse("a1 61 61 9b ff ff ff ff ff ff ff ff", msg); /* 2^64-1 array entries announced */
    refuse("bb ff ff ff ff ff ff ff ff", msg);          /* 2^64-1 pairs announced */
    refuse("ba 00 01 00 00 61 61 01", msg);             /* 65536 pairs in 8 bytes */
}

static void test_trailing(void)
{
    const char *msg = "Request payload has bytes after its CBOR map";
    refuse("a0 00", msg);
    refuse("a0 a0", msg);
    refuse("bf ff ff", msg);
    refuse("a1 61 61 61 62 ff", msg);
    refuse(REGISTER_VECTOR " 00", msg);
}

static void test_keys(void)
{
    const char *msg = "CBOR map keys must be text strings";
    refuse("a1 01 02", msg);          /* integer key */
    refuse("a1 41 61 61 62", msg);    /* byte string key */
    refuse("a1 f6 01", msg);          /* null key */
    refuse("a1 a0 01", msg);          /* map key */
    refuse("a1 80 01", msg);          /* array key */
    refuse("a1 c0 61 61 01", msg);    /* tagged text key */
    refuse("bf 01 02 ff", msg);       /* same, indefinite map */
    refuse("a1 61 61 a1 01 02", msg); /* nested map */
    refuse("a2 61 61 01 61 61 02", "CBOR map has a duplicate key");
    refuse("bf 61 61 01 7f 61 61 ff 02 ff", "CBOR map has a duplicate key");
}

static void test_text(void)
{
    const char *msg = "CBOR text string is not well-formed UTF-8 or contains NUL";
    refuse("a1 61 61 62 c3 28", msg);          /* bad continuation byte */
    refuse("a1 61 61 63 61 00 62", msg);       /* NUL */
    refuse("a1 62 61 00 01", msg);             /* NUL in a key */
    refuse("a1 61 61 62 c0 80", msg);          /* overlong NUL */
    refuse("a1 61 61 63 e0 80 af", msg);       /* overlong '/' */
    refuse("a1 61 61 63 ed a0 80", msg);       /* UTF-16 surrogate U+D800 */
    refuse("a1 61 61 64 f4 90 80 80", msg);    /* beyond U+10FFFF */
    refuse("a1 61 61 61 ff", msg);             /* 0xFF is never UTF-8 */
    refuse("a1 61 61 61 80", msg);             /* lone continuation byte */
    refuse("a1 61 61 7f 61 c3 61 a9 ff", msg); /* é split across chunks (RFC 8949 §3.2.3) */
    accept("a1 61 61 62 c3 a9", "{\"a\":\"\xc3\xa9\"}");
    accept("a1 61 61 64 f0 9f 98 80", "{\"a\":\"\xf0\x9f\x98\x80\"}"); /* U+1F600 */
}

static void test_depth(void)
{
    const char *msg = "CBOR items nest too deep";
    /* four levels pass: the top map and three below it */
    accept("a1 61 61 a1 61 62 a1 61 63 a0", "{\"a\":{\"b\":{\"c\":{}}}}");
    accept("a1 61 61 81 81 80", "{\"a\":[[[]]]}");
    accept("a1 61 61 c0 c0 c0 01", "{\"a\":[0,[0,[0,1]]]}");
    refuse("a1 61 61 a1 61 62 a1 61 63 a1 61 64 a0", msg);
    refuse("a1 61 61 81 81 81 80", msg);
    refuse("bf 61 61 9f 9f 9f 9f ff ff ff ff ff", msg);
    refuse("a1 61 61 c0 c0 c0 c0 01", msg);
    refuse("a1 61 61 c0 81 a1 61 62 a0", msg);
    /* byte strings and undefined become [] (a level of the tree like any array), so they obey
     * the cap too (found by fuzz_fleet_cbor: a tree the encoder then refused) */
    accept("a1 61 61 81 81 41 00", "{\"a\":[[[]]]}");
    accept("a1 61 61 81 81 f7", "{\"a\":[[[]]]}");
    refuse("a1 61 61 81 81 81 41 00", msg);
    refuse("a1 61 61 81 81 81 f7", msg);
    refuse("a1 61 61 81 81 81 5f 41 00 ff", msg);
    refuse("a1 61 61 c0 c0 c0 40", msg);
    /* a thousand levels: refused at the fifth, nothing deeper is looked at */
    size_t n = unhex("a1 61 61", buf);
    memset(buf + n, 0x81, 1000);
    buf[n + 1000] = 0x80;
    cJSON *out = NULL;
    struct iot_error err = {0};
    CHECK_INT(cbor_codec_decode(buf, n + 1001, &out, &err), IOT_ERR_INVALID_PAYLOAD);
    CHECK_STR(err.message, msg);
    CHECK(out == NULL);
}

static void test_caps(void)
{
    /* exactly CBOR_CODEC_PAYLOAD_MAX bytes: {"a": "xxx…"} with a 4-byte text length */
    size_t head = unhex("a1 61 61 7a", buf);
    size_t text = CBOR_CODEC_PAYLOAD_MAX - head - 4;
    buf[head] = (unsigned char)(text >> 24);
    buf[head + 1] = (unsigned char)(text >> 16);
    buf[head + 2] = (unsigned char)(text >> 8);
    buf[head + 3] = (unsigned char)text;
    memset(buf + head + 4, 'x', text);
    cJSON *out = NULL;
    struct iot_error err = {0};
    CHECK_INT(cbor_codec_decode(buf, CBOR_CODEC_PAYLOAD_MAX, &out, &err), IOT_OK);
    const char *s = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(out, "a"));
    CHECK(s != NULL && strlen(s) == text);
    cJSON_Delete(out);
    out = NULL;
    /* one byte more is refused before decoding */
    CHECK_INT(cbor_codec_decode(buf, CBOR_CODEC_PAYLOAD_MAX + 1, &out, &err),
              IOT_ERR_INVALID_PAYLOAD);
    CHECK_STR(err.message, "Request payload is 131073 bytes; at most 131072 are allowed");
    CHECK(out == NULL);

    /* map entries: CBOR_CODEC_PAIRS_MAX pass, one more is refused (indefinite and definite) */
    for (int extra = 0; extra <= 1; extra++) {
        for (int definite = 0; definite <= 1; definite++) {
            int pairs = CBOR_CODEC_PAIRS_MAX + extra;
            size_t n = 0;
            if (definite) {
                buf[n++] = 0xb9;
                buf[n++] = (unsigned char)(pairs >> 8);
                buf[n++] = (unsigned char)pairs;
            } else {
                buf[n++] = 0xbf;
            }
            for (int i = 0; i < pairs; i++) {
                n += (size_t)sprintf((char *)buf + n, "%c%05d", 0x65, i); /* 5-char text key */
                buf[n++] = 0x00;
            }
            if (!definite)
                buf[n++] = 0xff;
            out = NULL;
            enum iot_err rc = cbor_codec_decode(buf, n, &out, &err);
            CHECK_INT(rc, extra ? IOT_ERR_INVALID_PAYLOAD : IOT_OK);
            if (extra)
                CHECK_STR(err.message, "CBOR map has too many entries");
            else
                CHECK_INT(cJSON_GetArraySize(out), CBOR_CODEC_PAIRS_MAX);
            cJSON_Delete(out);
        }
    }
}

/* A valid message cut short anywhere is refused; flipping any one bit never crashes. */
static void test_every_cut_and_flip(const char *hex)
{
    unsigned char msg[256];
    size_t len = unhex(hex, msg);
    for (size_t cut = 1; cut < len; cut++) {
        cJSON *out = (cJSON *)1;
        struct iot_error err = {0};
        enum iot_err rc = cbor_codec_decode(msg, cut, &out, &err);
        CHECK_INT(rc, IOT_ERR_INVALID_PAYLOAD);
        CHECK(out == NULL);
        if (rc != IOT_ERR_INVALID_PAYLOAD)
            fprintf(stderr, "  accepted a cut at %zu of %zu\n", cut, len);
    }
    for (size_t bit = 0; bit < len * 8; bit++) {
        msg[bit / 8] ^= (unsigned char)(1u << (bit % 8));
        cJSON *out = (cJSON *)1;
        struct iot_error err = {0};
        enum iot_err rc = cbor_codec_decode(msg, len, &out, &err);
        CHECK(rc == IOT_OK ? cJSON_IsObject(out) : rc == IOT_ERR_INVALID_PAYLOAD && out == NULL);
        if (rc == IOT_OK)
            cJSON_Delete(out);
        msg[bit / 8] ^= (unsigned char)(1u << (bit % 8));
    }
}

/* ---- decoding ------------------------------------------------------------------------------ */

static void test_decode_register_vector(void)
{
    cJSON *out = NULL;
    struct iot_error err = {0};
    CHECK_INT(decode_hex(REGISTER_VECTOR, &out, &err), IOT_OK);
    CHECK_INT(cJSON_GetArraySize(out), 2);
    const cJSON *first = out ? out->child : NULL;
    CHECK(first != NULL && strcmp(first->string, "certificateOwnershipToken") == 0);
    CHECK_STR(cJSON_GetStringValue(first), "tok");
    const cJSON *params = first ? first->next : NULL;
    CHECK(params != NULL && strcmp(params->string, "parameters") == 0);
    CHECK(cJSON_IsObject(params));
    CHECK_INT(cJSON_GetArraySize(params), 1);
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(params, "SerialNumber")),
              "123");
    cJSON_Delete(out);

    const char *json = "{\"certificateOwnershipToken\":\"tok\",\"parameters\":{\"SerialNumber\":"
                       "\"123\"}}";
    accept(REGISTER_VECTOR, json);
    accept(REGISTER_INDEFINITE, json);
    /* AWS's parser tests: an indefinite map inside a definite one */
    accept("a2 " H_TOKEN_KEY " 63 74 6f 6b " H_PARAMETERS " bf " H_SERIAL " 63 31 32 33 ff", json);
}

static void test_decode_types(void)
{
    accept("a0", "{}");
    accept("bf ff", "{}");
    accept("a1 61 61 7f ff", "{\"a\":\"\"}");
    accept("a1 61 61 60", "{\"a\":\"\"}");
    accept("a1 61 61 a0", "{\"a\":{}}");
    accept("a1 61 61 bf ff", "{\"a\":{}}");
    /* integers of every width, both signs */
    accept("a1 61 61 00", "{\"a\":0}");
    accept("a1 61 61 17", "{\"a\":23}");
    accept("a1 61 61 18 ff", "{\"a\":255}");
    accept("a1 61 61 19 01 90", "{\"a\":400}");
    accept("a1 61 61 1a 00 01 00 00", "{\"a\":65536}");
    accept("a1 61 61 1b 00 00 00 01 00 00 00 00", "{\"a\":4294967296}");
    accept("a1 61 61 20", "{\"a\":-1}");
    accept("a1 61 61 38 63", "{\"a\":-100}");
    accept("a1 61 61 39 01 f3", "{\"a\":-500}");
    accept("a1 61 61 3a 00 01 00 00", "{\"a\":-65537}");
    accept("a1 61 61 3b 00 00 00 01 00 00 00 00", "{\"a\":-4294967297}");
    /* floats of every width */
    accept("a1 61 61 f9 3c 00", "{\"a\":1}");
    accept("a1 61 61 fa 3f c0 00 00", "{\"a\":1.5}");
    accept("a1 61 61 fb 3f f1 99 99 99 99 99 9a", "{\"a\":1.1}");
    /* simple values */
    accept("a1 61 61 f4", "{\"a\":false}");
    accept("a1 61 61 f5", "{\"a\":true}");
    accept("a1 61 61 f6", "{\"a\":null}");
    /* no JSON twin: arrays, which no fleet field accepts */
    accept("a1 61 61 f7", "{\"a\":[]}");
    accept("a1 61 61 43 01 02 03", "{\"a\":[]}");
    accept("a1 61 61 5f 41 01 42 02 03 ff", "{\"a\":[]}");
    accept("a1 61 61 c1 1a 51 4b 67 b0", "{\"a\":[1,1363896240]}");
    accept("a1 61 61 d8 20 63 61 62 63", "{\"a\":[32,\"abc\"]}");
    /* arrays */
    accept("a1 61 61 82 61 78 61 79", "{\"a\":[\"x\",\"y\"]}");
    accept("a1 61 61 9f 01 7f 61 7a ff ff", "{\"a\":[1,\"z\"]}");
    /* zero bytes: the Embedded C SDK's CreateKeysAndCertificate request */
    cJSON *out = NULL;
    CHECK_INT(cbor_codec_decode("", 0, &out, NULL), IOT_OK);
    CHECK(cJSON_IsObject(out) && out->child == NULL);
    cJSON_Delete(out);
}

/* ---- encoding ------------------------------------------------------------------------------ */

static void encodes(const cJSON *in, const char *want_hex)
{
    unsigned char want[4096];
    size_t want_len = unhex(want_hex, want);
    unsigned char *got = NULL;
    size_t got_len = 0;
    CHECK_INT(cbor_codec_encode(in, &got, &got_len), IOT_OK);
    CHECK_INT(got_len, want_len);
    CHECK(got != NULL && got_len == want_len && memcmp(got, want, want_len) == 0);
    if (got == NULL || got_len != want_len || memcmp(got, want, want_len) != 0) {
        fprintf(stderr, "  want %s\n  got ", want_hex);
        for (size_t i = 0; got && i < got_len; i++)
            fprintf(stderr, "%02x ", got[i]);
        fprintf(stderr, "\n");
    }
    free(got);
}

static void encodes_json(const char *json, const char *want_hex)
{
    cJSON *in = cJSON_Parse(json);
    CHECK(in != NULL);
    encodes(in, want_hex);
    cJSON_Delete(in);
}

static void test_encode_spec_rejection(void)
{
    /* built the way fleet.c builds it: statusCode added as a number */
    cJSON *r = cJSON_CreateObject();
    cJSON_AddNumberToObject(r, "statusCode", 400);
    cJSON_AddStringToObject(r, "errorCode", "InvalidPayload");
    cJSON_AddStringToObject(r, "errorMessage", "bad");
    encodes(r, "a3 6a 73 74 61 74 75 73 43 6f 64 65 19 01 90 69 65 72 72 6f 72 43 6f 64 65 6e 49 "
               "6e 76 61 6c 69 64 50 61 79 6c 6f 61 64 6c 65 72 72 6f 72 4d 65 73 73 61 67 65 63 "
               "62 61 64");
    cJSON_Delete(r);
    /* the same from its parts, to show which bytes are which */
    encodes_json("{\"statusCode\":400,\"errorCode\":\"InvalidPayload\",\"errorMessage\":\"bad\"}",
                 "a3 " H_STATUS_CODE " 19 01 90 " H_ERROR_CODE " " H_INVALID_PAYLOAD
                 " " H_ERROR_MESSAGE " 63 62 61 64");
}

static void test_encode(void)
{
    encodes_json("{}", "a0");
    encodes_json("{\"deviceConfiguration\":{\"Foo\":\"Bar\"},\"thingName\":\"dev_42\"}",
                 "a2 73 64 65 76 69 63 65 43 6f 6e 66 69 67 75 72 61 74 69 6f 6e a1 63 46 6f 6f "
                 "63 42 61 72 69 74 68 69 6e 67 4e 61 6d 65 66 64 65 76 5f 34 32");
    encodes_json("{\"deviceConfiguration\":{}}",
                 "a1 73 64 65 76 69 63 65 43 6f 6e 66 69 67 75 72 61 74 69 6f 6e a0");
    /* shortest integer heads */
    encodes_json("[0,23,24,255,256,65535,65536,4294967295,4294967296]",
                 "89 00 17 18 18 18 ff 19 01 00 19 ff ff 1a 00 01 00 00 1a ff ff ff ff "
                 "1b 00 00 00 01 00 00 00 00");
    encodes_json("[-1,-24,-25,-256,-257,-500,-65537]",
                 "87 20 37 38 18 38 ff 39 01 00 39 01 f3 3a 00 01 00 00");
    encodes_json("[1.5,true,false,null,[]]", "85 fb 3f f8 00 00 00 00 00 00 f5 f4 f6 80");
    encodes_json("{\"a\":\"\xc3\xa9\"}", "a1 61 61 62 c3 a9");
    /* a 300-character string takes a 2-byte length */
    char *long_text = malloc(301);
    memset(long_text, 'y', 300);
    long_text[300] = '\0';
    cJSON *s = cJSON_CreateString(long_text);
    unsigned char *got = NULL;
    size_t got_len = 0;
    CHECK_INT(cbor_codec_encode(s, &got, &got_len), IOT_OK);
    CHECK_INT(got_len, 303);
    CHECK(got != NULL && got[0] == 0x79 && got[1] == 0x01 && got[2] == 0x2c && got[3] == 'y');
    free(got);
    cJSON_Delete(s);
    free(long_text);
    /* a string cut mid-character (an error message vsnprintf truncated) ends before it */
    s = cJSON_CreateString("ab\xc3");
    encodes(s, "62 61 62");
    cJSON_Delete(s);
}

static void test_encode_refusals(void)
{
    unsigned char *got = (unsigned char *)1;
    size_t got_len = 7;
    CHECK_INT(cbor_codec_encode(NULL, &got, &got_len), IOT_ERR_INTERNAL);
    CHECK(got == NULL && got_len == 0);
    cJSON *deep = cJSON_Parse("{\"a\":{\"b\":{\"c\":{\"d\":{}}}}}");
    CHECK_INT(cbor_codec_encode(deep, &got, &got_len), IOT_ERR_INTERNAL);
    CHECK(got == NULL);
    cJSON_Delete(deep);
    cJSON *raw = cJSON_CreateObject();
    cJSON_AddRawToObject(raw, "r", "{}");
    CHECK_INT(cbor_codec_encode(raw, &got, &got_len), IOT_ERR_INTERNAL);
    CHECK(got == NULL);
    cJSON_Delete(raw);
}

/* Whatever the decoder returns, the encoder accepts: the deepest trees of every kind. */
static void test_decoded_encodes(void)
{
    const char *deepest[] = {"a1 61 61 a1 61 62 a1 61 63 a0", "a1 61 61 81 81 80",
                             "a1 61 61 81 81 41 00", "a1 61 61 9f 81 5f ff ff", "a1 61 61 81 81 f7",
                             "a1 61 61 c0 c0 c0 01"};
    for (size_t i = 0; i < sizeof(deepest) / sizeof(deepest[0]); i++) {
        cJSON *tree = NULL;
        unsigned char *bytes = NULL;
        size_t len = 0;
        CHECK_INT(decode_hex(deepest[i], &tree, NULL), IOT_OK);
        CHECK_INT(cbor_codec_encode(tree, &bytes, &len), IOT_OK);
        free(bytes);
        cJSON_Delete(tree);
    }
}

/* What the encoder writes, the decoder reads back unchanged (key order included). */
static void test_round_trip(void)
{
    const char *json = "{\"certificateId\":\"0123456789abcdef0123456789abcdef0123456789abcdef0123"
                       "456789abcdef\",\"certificatePem\":\"-----BEGIN CERTIFICATE-----\\nMIIB\\n"
                       "-----END CERTIFICATE-----\\n\",\"privateKey\":\"k\",\"certificateOwnership"
                       "Token\":\"t\",\"n\":[1,-2,true,null,{\"x\":\"\xc3\xa9\"}]}";
    cJSON *in = cJSON_Parse(json);
    unsigned char *bytes = NULL;
    size_t len = 0;
    CHECK_INT(cbor_codec_encode(in, &bytes, &len), IOT_OK);
    cJSON *back = NULL;
    CHECK_INT(cbor_codec_decode(bytes, len, &back, NULL), IOT_OK);
    char *a = cJSON_PrintUnformatted(in), *b = back ? cJSON_PrintUnformatted(back) : NULL;
    CHECK_STR(b, a); /* same keys in the same order */
    free(a);
    free(b);
    free(bytes);
    cJSON_Delete(back);
    cJSON_Delete(in);
}

int main(void)
{
    test_not_a_map();
    test_malformed();
    test_truncated();
    test_trailing();
    test_keys();
    test_text();
    test_depth();
    test_caps();
    test_every_cut_and_flip(REGISTER_VECTOR);
    test_every_cut_and_flip(REGISTER_INDEFINITE);
    test_every_cut_and_flip("a3 " H_STATUS_CODE " 19 01 90 " H_ERROR_CODE " " H_INVALID_PAYLOAD
                            " " H_ERROR_MESSAGE " 63 62 61 64");
    test_decode_register_vector();
    test_decode_types();
    test_encode_spec_rejection();
    test_encode();
    test_encode_refusals();
    test_decoded_encodes();
    test_round_trip();
    return check_summary();
}
