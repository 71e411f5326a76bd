/* fuzz_fleet_json: the fleet provisioning MQTT API with JSON payloads, and its topic grammar.
 * Byte 0 picks the operation and template (fleet_harness.h); 3 in its low bits parses the rest as
 * a topic instead. */
#include "fleet_harness.h"

/* fleet.h's promise about topics: a topic is classified only if it is exactly one of the 18
 * forms of §1.1, so the topic rebuilt from what was parsed must be the topic itself. */
static void parse_topic(const uint8_t *data, size_t size)
{
    char *topic = fuzz_strndup(data, size);
    struct fleet_topic t;
    enum fleet_topic_kind k = fleet_topic_parse(topic, &t);
    if (k != t.kind || (k == FLEET_TOPIC_NONE) != (t.op == FLEET_OP_NONE))
        abort();
    if (k != FLEET_TOPIC_NONE) {
        char again[FLEET_TOPIC_MAX + 16];
        const char *fmt = t.format == FLEET_FORMAT_CBOR ? "cbor" : "json";
        const char *tail = k == FLEET_TOPIC_ACCEPTED   ? FLEET_ACCEPTED
                           : k == FLEET_TOPIC_REJECTED ? FLEET_REJECTED
                                                       : "";
        if (t.op == FLEET_OP_REGISTER_THING)
            snprintf(again, sizeof(again), "%s%s%s%s%s", FLEET_TEMPLATES_PREFIX, t.template_name,
                     FLEET_PROVISION_PART, fmt, tail);
        else
            snprintf(again, sizeof(again), "%s%s%s",
                     t.op == FLEET_OP_CREATE_KEYS ? FLEET_CERT_CREATE_PREFIX
                                                  : FLEET_CERT_CSR_PREFIX,
                     fmt, tail);
        if (strcmp(again, topic) != 0 ||
            !(t.op != FLEET_OP_REGISTER_THING || template_name_valid(t.template_name))) {
            fprintf(stderr, "topic %s was classified as %s\n", topic, again);
            abort();
        }
    }
    free(topic);
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
        parse_topic(data + 1, size - 1);
    else
        fleet_harness_request(FLEET_FORMAT_JSON, data[0], data + 1, size - 1);
    return 0;
}
