"""Fleet provisioning in CBOR (shared/spec/provisioning.md §1.9) from a CBOR client, as the AWS
IoT Device SDK for Embedded C demos use it (clients.md §4): text-string keys and values, unsigned
statusCode, a zero-byte CreateKeysAndCertificate request, answers within the demos' one-second
budget and within their 4096/2048-byte packet buffers."""

import time

import cbor2
import pytest

from iotmock_support import (FLEET_DEFAULT, MQTTv311, MQTTv5, cert_id, make_csr, unique)

pytestmark = pytest.mark.usefixtures("broker_still_serves")

CREATE_KEYS_CBOR = "$aws/certificates/create/cbor"
CREATE_FROM_CSR_CBOR = "$aws/certificates/create-from-csr/cbor"
REGISTER_CBOR = f"$aws/provisioning-templates/{FLEET_DEFAULT}/provision/cbor"
BUDGET_S = 1.0  # MQTT_PROCESS_LOOP_TIMEOUT_MS of the Embedded C demos


def cbor_request(client, topic, payload: bytes):
    """Subscribes to the answers, publishes PAYLOAD, returns (which, raw bytes, seconds)."""
    accepted, rejected = topic + "/accepted", topic + "/rejected"
    client.subscribe(accepted, rejected, qos=1)
    start = time.monotonic()
    client.publish(topic, payload, qos=1)
    m = client.wait_any({accepted, rejected}, 10)
    elapsed = time.monotonic() - start
    assert m is not None, client.state()
    return ("accepted" if m.topic == accepted else "rejected"), m.payload, elapsed


def publish_size(topic: str, payload: bytes) -> int:
    """Bytes of an MQTT 3.1.1 QoS 1 PUBLISH: header, length, topic, packet id, payload."""
    remaining = 2 + len(topic.encode()) + 2 + len(payload)
    length_bytes = 1 if remaining < 128 else 2 if remaining < 16384 else 3
    return 1 + length_bytes + remaining


def all_text(value) -> bool:
    if isinstance(value, dict):
        return all(isinstance(k, str) and all_text(v) for k, v in value.items())
    return isinstance(value, str)


@pytest.mark.parametrize("protocol", [MQTTv311, MQTTv5], ids=["mqtt311", "mqtt5"])
def test_keys_flow_in_cbor_within_budget(mqtt, protocol):
    client = mqtt.claim(protocol=protocol)
    which, raw, seconds = cbor_request(client, CREATE_KEYS_CBOR, b"")  # the C demo sends 0 bytes
    assert which == "accepted", cbor2.loads(raw)
    keys = cbor2.loads(raw)
    assert list(keys) == ["certificateId", "certificatePem", "privateKey",
                          "certificateOwnershipToken"]
    assert all_text(keys)
    assert keys["certificateId"] == cert_id(keys["certificatePem"])
    assert keys["privateKey"].startswith("-----BEGIN RSA PRIVATE KEY-----\n")
    assert publish_size(CREATE_KEYS_CBOR + "/accepted", raw) <= 4096
    assert seconds < BUDGET_S, f"CreateKeysAndCertificate answered in {seconds:.3f} s"

    serial = unique("cbor")
    request = cbor2.dumps({"certificateOwnershipToken": keys["certificateOwnershipToken"],
                           "parameters": {"SerialNumber": serial}})
    which, raw, seconds = cbor_request(client, REGISTER_CBOR, request)
    assert which == "accepted", cbor2.loads(raw)
    answer = cbor2.loads(raw)
    assert answer["thingName"] == serial
    assert all_text(answer)
    assert seconds < BUDGET_S, f"RegisterThing answered in {seconds:.3f} s"


def test_csr_flow_in_cbor_within_budget(mqtt, tmp_path):
    client = mqtt.claim()
    _, csr = make_csr(tmp_path, "p256", subject="/CN=cbor-device")
    which, raw, seconds = cbor_request(client, CREATE_FROM_CSR_CBOR,
                                       cbor2.dumps({"certificateSigningRequest": csr}))
    assert which == "accepted", cbor2.loads(raw)
    body = cbor2.loads(raw)
    assert list(body) == ["certificateOwnershipToken", "certificateId", "certificatePem"]
    assert all_text(body)
    assert publish_size(CREATE_FROM_CSR_CBOR + "/accepted", raw) <= 2048
    assert seconds < BUDGET_S, f"CreateCertificateFromCsr answered in {seconds:.3f} s"
    request = cbor2.dumps({"certificateOwnershipToken": body["certificateOwnershipToken"],
                           "parameters": {"SerialNumber": unique("cborcsr")}})
    which, raw, _ = cbor_request(client, REGISTER_CBOR, request)
    assert which == "accepted", cbor2.loads(raw)


def test_cbor_rejection_bytes(mqtt):
    """A rejection is a definite map of text keys with statusCode an unsigned integer."""
    client = mqtt.claim()
    which, raw, _ = cbor_request(client, CREATE_FROM_CSR_CBOR, bytes([0xA0]))  # empty map
    assert which == "rejected"
    message = b"Missing required field certificateSigningRequest"
    expected = (bytes([0xA3, 0x6A]) + b"statusCode" + bytes([0x19, 0x01, 0x90]) +
                bytes([0x69]) + b"errorCode" + bytes([0x6E]) + b"InvalidPayload" +
                bytes([0x6C]) + b"errorMessage" + bytes([0x78, len(message)]) + message)
    assert raw == expected, raw.hex()


def test_indefinite_length_request_is_accepted(mqtt):
    """Indefinite-length maps and strings in requests are accepted (§1.9)."""
    client = mqtt.claim()
    keys = cbor2.loads(cbor_request(client, CREATE_KEYS_CBOR, bytes([0xBF, 0xFF]))[1])
    token = keys["certificateOwnershipToken"].encode()
    serial = unique("indef").encode()
    request = (bytes([0xBF, 0x78, 25]) + b"certificateOwnershipToken" +
               bytes([0x7F, 0x78, len(token)]) + token + bytes([0xFF]) +
               bytes([0x6A]) + b"parameters" + bytes([0xBF, 0x6C]) + b"SerialNumber" +
               bytes([0x78, len(serial)]) + serial + bytes([0xFF, 0xFF]))
    which, raw, _ = cbor_request(client, REGISTER_CBOR, request)
    assert which == "accepted", cbor2.loads(raw)
    assert cbor2.loads(raw)["thingName"] == serial.decode()


def test_wrong_types_in_cbor_are_invalid_payload(mqtt):
    client = mqtt.claim()
    which, raw, _ = cbor_request(client, CREATE_FROM_CSR_CBOR,
                                 cbor2.dumps({"certificateSigningRequest": b"bytes, not text"}))
    assert which == "rejected"
    body = cbor2.loads(raw)
    assert (body["statusCode"], body["errorCode"]) == (400, "InvalidPayload"), body
