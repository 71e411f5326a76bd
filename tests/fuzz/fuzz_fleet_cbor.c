/* fuzz_fleet_cbor: the fleet provisioning MQTT API with CBOR payloads (§1.9), and the CBOR codec
 * on its own. Byte 0 picks the operation and template (fleet_harness.h); 3 in its low bits runs
 * cbor_codec_decode() on the rest and checks what cbor_codec.h promises of a decoded tree:
 *   - it is an object, and encoding it succeeds (it nests no deeper than the decoder allows);
 *   - the encoding decodes again, to an equal tree when every number is finite (cJSON compares
 *     NaN unequal to itself). */
#include <math.h>

#include "fleet_harness.h"

static bool finite_numbers(const cJSON *v)
{
    if (cJSON_IsNumber(v))
        return isfinite(v->valuedouble);
    for (const cJSON *c = v->child; c != NULL; c = c->next) {
        if (!finite_numbers(c))
            return false;
    }
    return true;
}

static void codec_round_trip(const uint8_t *data, size_t size)
{
    uint8_t *buf = fuzz_memdup(data, size);
    cJSON *tree = NULL, *again = NULL;
    struct iot_error err = {0};
    enum iot_err rc = cbor_codec_decode(buf, size, &tree, &err);
    free(buf);
    if (rc != IOT_OK) {
        if (tree != NULL || err.code != rc || err.message[0] == '\0') {
            fprintf(stderr, "refusal %s left out=%p, err %s \"%s\"\n", iot_err_name(rc),
                    (void *)tree, iot_err_name(err.code), err.message);
            abort(); /* a refusal leaves *out NULL and says why */
        }
        return;
    }
    if (!cJSON_IsObject(tree))
        abort();
    unsigned char *enc = NULL;
    size_t enc_len = 0;
    if (cbor_codec_encode(tree, &enc, &enc_len) != IOT_OK)
        abort();
    if (cbor_codec_decode(enc, enc_len, &again, &err) != IOT_OK) {
        fprintf(stderr, "re-decoding the encoding failed: %s\n", err.message);
        abort();
    }
    if (finite_numbers(tree) && !cJSON_Compare(tree, again, true)) {
        fprintf(stderr, "CBOR round trip changed the tree\n");
        abort();
    }
    cJSON_Delete(again);
    free(enc);
    cJSON_Delete(tree);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fleet_harness_init();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    if ((data[0] & 3) == 3)
        codec_round_trip(data + 1, size - 1);
    else
        fleet_harness_request(FLEET_FORMAT_CBOR, data[0], data + 1, size - 1);
    return 0;
}
