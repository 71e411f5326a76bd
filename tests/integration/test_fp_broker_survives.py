"""The broker keeps serving whatever a client sends to the provisioning topics: after each abuse a
new client connects with the claim certificate and completes a pub/sub round trip, and the
provisioning API still answers. Also: a burst of requests on one connection is answered once
each, in order; a client that leaves before its answer does no harm."""

import time

import pytest

from iotmock_support import (MQTTv5, CREATE_FROM_CSR, CREATE_KEYS, FLEET_DEFAULT, KEYS_ACCEPTED_FIELDS,
                             assert_broker_serves, check_issued, create_keys, expect_rejected,
                             provision_request, provision_topic, unique)

pytestmark = pytest.mark.usefixtures("broker_still_serves")

REGISTER = provision_topic(FLEET_DEFAULT)

# (request topic, payload, expected (statusCode, errorCode) or None when only survival matters).
# Payloads stay within AWS's 128 KB limit: above it the broker closes the connection instead of
# answering (shared/spec/broker-and-policy.md §4.5; test_broker_limits.py).
ABUSE = {
    "keys-binary": (CREATE_KEYS, bytes(range(256)), (400, "InvalidPayload")),
    "keys-deep-nesting": (CREATE_KEYS, b"[" * 100000, (400, "InvalidPayload")),
    "csr-invalid-utf8": (CREATE_FROM_CSR, b'{"certificateSigningRequest": "\xff\xfe\xfd"}', None),
    "csr-huge": (CREATE_FROM_CSR, b'{"certificateSigningRequest": "' + b"A" * 120000 + b'"}',
                 None),
    "csr-nul-bytes": (CREATE_FROM_CSR, b'{"certificateSigningRequest": "-----BEGIN\x00"}', None),
    "register-deep-nesting": (REGISTER, b'{"parameters":' * 9000, (400, "InvalidPayload")),
    "register-huge-parameter": (REGISTER, b'{"certificateOwnershipToken": "x", "parameters": '
                                b'{"SerialNumber": "' + b"S" * 120000 + b'"}}', None),
    "register-many-parameters": (REGISTER, ('{"certificateOwnershipToken": "x", "parameters": {' +
                                 ",".join(f'"p{i}": "v"' for i in range(9000)) + "}}").encode(),
                                 None),
    "register-huge-token": (REGISTER, b'{"certificateOwnershipToken": "' + b"t" * 120000 +
                            b'", "parameters": {"SerialNumber": "1"}}', None),
}

# Topics under the reserved prefixes that are not (valid) requests: no crash, whatever happens.
ODD_TOPICS = {
    "template-name-too-long": provision_topic("t" * 37),
    "template-name-invalid-chars": provision_topic("bad.name%s"),
    "template-name-empty": "$aws/provisioning-templates//provision/json",
    "cbor-garbage": "$aws/certificates/create/cbor",
    "unknown-format": "$aws/certificates/create/xml",
    "forged-accepted": CREATE_KEYS + "/accepted",
    "forged-rejected": REGISTER + "/rejected",
    "trailing-level": CREATE_KEYS + "/extra",
    "provision-without-format": "$aws/provisioning-templates/fleet-default/provision",
}


@pytest.mark.parametrize("case", list(ABUSE))
def test_abusive_payloads(server, mqtt, case):
    topic, payload, expected = ABUSE[case]
    client = mqtt.claim()
    which, body = provision_request(client, topic, payload, timeout=20)
    if expected is None:
        assert which == "rejected", f"{case} accepted: {body}"
        assert body.get("statusCode") == 400, body
    else:
        expect_rejected(which, body, *expected)
    assert_broker_serves(server)


@pytest.mark.parametrize("case", list(ODD_TOPICS))
def test_odd_reserved_topics(server, mqtt, case):
    topic = ODD_TOPICS[case]
    # MQTT 5, so that a refused SUBSCRIBE (unsupported reserved topics are refused whatever the
    # policy says) comes back as a reason code instead of a disconnection.
    client = mqtt.claim(protocol=MQTTv5)
    client.subscribe(topic + "/accepted", topic + "/rejected", require_granted=False)
    try:
        client.publish(topic, b"\xbf\xff{garbage", qos=0)
    except AssertionError:
        pass  # refusing the publish is fine
    time.sleep(0.3)
    assert_broker_serves(server)
    with_keys = mqtt.claim()
    create_keys(with_keys)


def test_burst_of_requests_on_one_connection(mqtt):
    client = mqtt.claim()
    client.subscribe(CREATE_KEYS + "/accepted", CREATE_KEYS + "/rejected")
    count = 8
    for _ in range(count):
        client.publish(CREATE_KEYS, b"{}", qos=1)
    answers = []
    for _ in range(count):
        m = client.wait_any({CREATE_KEYS + "/accepted", CREATE_KEYS + "/rejected"}, 30)
        assert m is not None, f"only {len(answers)} of {count} answers; {client.state()}"
        assert m.topic == CREATE_KEYS + "/accepted", m.payload[:200]
        answers.append(m.json())
    time.sleep(0.5)
    assert len(client.messages()) == count, "more answers than requests"
    for body in answers:
        assert set(body) == KEYS_ACCEPTED_FIELDS
        check_issued(body)
    assert len({b["certificateId"] for b in answers}) == count


def test_client_leaving_before_its_answer(server, mqtt):
    for _ in range(3):
        client = mqtt.claim(client_id=unique("leaver"))
        client.subscribe(CREATE_KEYS + "/accepted", CREATE_KEYS + "/rejected")
        client.publish(CREATE_KEYS, b"{}", qos=1)
        client.close()
    time.sleep(1.0)
    assert_broker_serves(server)
    create_keys(mqtt.claim())

