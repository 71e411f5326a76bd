/* CBOR <-> cJSON for the fleet provisioning MQTT API (shared/spec/provisioning.md §1.9): a CBOR
 * request becomes the cJSON tree its JSON twin would parse to, so fleet.c validates both formats
 * with the same code, and an answer tree becomes CBOR. libcbor does the byte-level work.
 *
 * Decoding, CBOR -> cJSON:
 *   map (definite or indefinite)          -> object; keys must be text strings, each once
 *   text string (definite or chunked)     -> string; well-formed UTF-8 without NUL
 *   unsigned / negative integer, float    -> number
 *   true, false, null                     -> true, false, null
 *   array (definite or indefinite)        -> array
 *   byte string (definite or chunked)     -> [] (no JSON twin: an array, which no fleet field
 *                                            accepts, so it is refused as a wrong type)
 *   tag N + item                          -> [N, item] (same reason)
 *   undefined                             -> [] (same reason)
 * The top level must be one map and nothing after it; zero bytes count as an empty map. */
#ifndef IOTMOCK_CBOR_CODEC_H
#define IOTMOCK_CBOR_CODEC_H

#include <stddef.h>

#include <cjson/cJSON.h>

#include "err.h"

#define CBOR_CODEC_PAYLOAD_MAX (128 * 1024) /* bytes of one request */
#define CBOR_CODEC_DEPTH_MAX 4              /* nested maps, arrays and tags, the top map included */
#define CBOR_CODEC_PAIRS_MAX 1024           /* entries of one map (duplicate checks stay cheap) */

/* Decodes LEN bytes of BUF. On IOT_OK *OUT is a new object (caller frees with cJSON_Delete);
 * otherwise *OUT is NULL and ERR says why: IOT_ERR_INVALID_PAYLOAD for anything a client sent
 * wrong, IOT_ERR_NOMEM if memory ran out. */
enum iot_err cbor_codec_decode(const void *buf, size_t len, cJSON **out, struct iot_error *err);

/* Encodes IN as CBOR: definite-length maps and arrays in cJSON order, text strings, integral
 * numbers as the shortest unsigned/negative integer (other numbers as doubles). A string is cut
 * at its first byte that is not well-formed UTF-8, so the output is always valid CBOR. On IOT_OK
 * *OUT is malloc'd (caller frees with free()) and holds *OUT_LEN bytes; IOT_ERR_NOMEM if memory
 * ran out, IOT_ERR_INTERNAL if IN nests deeper than CBOR_CODEC_DEPTH_MAX or holds a raw item. */
enum iot_err cbor_codec_encode(const cJSON *in, unsigned char **out, size_t *out_len);

#endif
