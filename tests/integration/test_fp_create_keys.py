"""CreateKeysAndCertificate over MQTT (shared/spec/provisioning.md §1.3, §1.7): the payload
variants real clients send, the exact answer, the issued certificate's profile, and that the new
certificate is PENDING_ACTIVATION (cannot connect) until RegisterThing."""

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from iotmock_support import (CREATE_KEYS, KEYS_ACCEPTED_FIELDS, KEYS_SUBJECT_CN, MQTTv5,
                             PROTOCOLS, assert_cannot_connect, check_aws_profile, check_issued,
                             create_keys, der_integer_content, cert_der, expect_accepted,
                             expect_rejected, load_cert, provision_request, spki_der,
                             write_credentials)

pytestmark = pytest.mark.usefixtures("broker_still_serves")

# Zero bytes (C SDK, CBOR demo), "{}" (JSON SDKs), extra keys (ignored), whitespace around {}.
PAYLOADS = {
    "empty": None,
    "empty-object": b"{}",
    "extra-key": b'{"extra":1}',
    "whitespace": b" \n{ }\t\n",
}


@pytest.mark.parametrize("payload", list(PAYLOADS.values()), ids=list(PAYLOADS))
def test_payload_variants_are_accepted_with_exact_fields(mqtt, payload):
    client = mqtt.claim()
    which, body = provision_request(client, CREATE_KEYS, payload, settle=0.5)
    expect_accepted(which, body, KEYS_ACCEPTED_FIELDS)
    check_issued(body)
    assert client.messages(CREATE_KEYS + "/rejected") == []
    answer = client.messages(CREATE_KEYS + "/accepted")
    assert len(answer) == 1 and answer[0].retain is False and answer[0].qos <= 1


def test_private_key_is_pkcs1_rsa_2048_matching_the_certificate(mqtt):
    body = create_keys(mqtt.claim())
    key_pem = body["privateKey"]
    assert key_pem.startswith("-----BEGIN RSA PRIVATE KEY-----\n"), key_pem[:40]
    assert key_pem.endswith("-----END RSA PRIVATE KEY-----\n"), key_pem[-40:]
    assert "\r" not in key_pem
    key = serialization.load_pem_private_key(key_pem.encode(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    assert key.key_size == 2048
    cert = load_cert(body["certificatePem"])
    assert spki_der(cert) == spki_der(key), "privateKey does not belong to certificatePem"


def test_certificate_profile(server, mqtt):
    body = create_keys(mqtt.claim())
    check_aws_profile(body["certificatePem"], server.root_ca)
    cert = load_cert(body["certificatePem"])
    subject = [(a.oid, a.value) for rdn in cert.subject.rdns for a in rdn]
    assert subject == [(NameOID.COMMON_NAME, KEYS_SUBJECT_CN)], subject


def test_every_request_issues_a_new_certificate_and_token(mqtt):
    client = mqtt.claim()
    first, second = create_keys(client), create_keys(client)
    for field in ("certificateId", "certificatePem", "privateKey", "certificateOwnershipToken"):
        assert first[field] != second[field], field
    assert der_integer_content(cert_der(first["certificatePem"])) != \
        der_integer_content(cert_der(second["certificatePem"]))


def test_mqtt5_requester_is_answered(mqtt):
    body = create_keys(mqtt.claim(protocol=MQTTv5))
    assert set(body) == KEYS_ACCEPTED_FIELDS


@pytest.mark.parametrize("protocol", list(PROTOCOLS.values()), ids=list(PROTOCOLS))
def test_new_certificate_is_pending_and_cannot_connect(server, mqtt, tmp_path, protocol):
    body = create_keys(mqtt.claim())
    cert, key = write_credentials(tmp_path, "pending", body["certificatePem"], body["privateKey"])
    assert_cannot_connect(server, cert, key, protocol=protocol)


@pytest.mark.parametrize("payload", [b"{", b"not json", b'{"a":}', b"\xff\xfe\x00"],
                         ids=["truncated", "text", "bad-value", "binary"])
def test_malformed_json_is_rejected(mqtt, payload):
    client = mqtt.claim()
    which, body = provision_request(client, CREATE_KEYS, payload, settle=0.3)
    expect_rejected(which, body, 400, "InvalidPayload")
    assert client.connected, "a rejected request must not cost the connection"
