"""CreateCertificateFromCsr over MQTT (shared/spec/provisioning.md §1.4, §1.7, §1.8): RSA and EC
CSRs are signed with the CSR's subject and key; weak, broken or unsupported CSRs are rejected
400 InvalidCsr; a missing or wrongly typed field is 400 InvalidPayload."""

import pytest
from cryptography import x509

from iotmock_support import (CREATE_FROM_CSR, CSR_ACCEPTED_FIELDS, PROTOCOLS,
                             assert_cannot_connect, check_aws_profile, corrupt_csr_signature,
                             create_from_csr, expect_rejected, load_cert, make_csr,
                             provision_request, run_openssl, spki_der, write_credentials)

pytestmark = pytest.mark.usefixtures("broker_still_serves")

SUBJECT = "/C=US/ST=Washington/L=Seattle/O=Acme Devices/OU=fleet/CN=dev-{kind}/serialNumber=SN-42"
GOOD_KINDS = ["rsa2048", "p256", "p384"]


@pytest.fixture(scope="module")
def good_csrs(tmp_path_factory):
    d = tmp_path_factory.mktemp("csr")
    return {kind: make_csr(d, kind, SUBJECT.format(kind=kind)) for kind in GOOD_KINDS}


@pytest.fixture(scope="module")
def bad_csrs(tmp_path_factory, good_csrs):
    d = tmp_path_factory.mktemp("badcsr")
    return {
        "garbage": "this is not a certificate signing request",
        "pem-armoured-garbage": "-----BEGIN CERTIFICATE REQUEST-----\nbm90IGEgY3NyIGF0IGFsbA==\n"
                                "-----END CERTIFICATE REQUEST-----\n",
        "rsa1024": make_csr(d, "rsa1024", "/CN=weak-rsa")[1],
        "bad-signature": corrupt_csr_signature(good_csrs["rsa2048"][1]),
        "secp256k1": make_csr(d, "secp256k1", "/CN=koblitz")[1],
    }


@pytest.mark.parametrize("kind", GOOD_KINDS)
def test_csr_is_signed_keeping_subject_and_key(server, mqtt, good_csrs, kind):
    key_path, csr_pem = good_csrs[kind]
    body = create_from_csr(mqtt.claim(), csr_pem, settle=0.3)
    assert set(body) == CSR_ACCEPTED_FIELDS  # no privateKey
    cert = load_cert(body["certificatePem"])
    csr = x509.load_pem_x509_csr(csr_pem.encode())
    assert cert.subject.public_bytes() == csr.subject.public_bytes(), \
        f"subject {cert.subject.rfc4514_string()} != CSR {csr.subject.rfc4514_string()}"
    csr_subject = run_openssl("req", "-noout", "-subject", input_text=csr_pem).strip()
    cert_subject = run_openssl("x509", "-noout", "-subject",
                               input_text=body["certificatePem"]).strip()
    assert cert_subject == csr_subject
    assert spki_der(cert) == spki_der(csr), "certificate does not carry the CSR's public key"
    check_aws_profile(body["certificatePem"], server.root_ca)


def test_same_csr_twice_gives_two_certificates(mqtt, good_csrs):
    client = mqtt.claim()
    csr_pem = good_csrs["p256"][1]
    first, second = create_from_csr(client, csr_pem), create_from_csr(client, csr_pem)
    assert first["certificateId"] != second["certificateId"]
    assert first["certificateOwnershipToken"] != second["certificateOwnershipToken"]
    assert load_cert(first["certificatePem"]).serial_number != \
        load_cert(second["certificatePem"]).serial_number


@pytest.mark.parametrize("protocol", list(PROTOCOLS.values()), ids=list(PROTOCOLS))
def test_csr_certificate_is_pending_and_cannot_connect(server, mqtt, good_csrs, tmp_path,
                                                       protocol):
    key_path, csr_pem = good_csrs["rsa2048"]
    body = create_from_csr(mqtt.claim(), csr_pem)
    cert, _ = write_credentials(tmp_path, "pending", body["certificatePem"], key_path.read_text())
    assert_cannot_connect(server, cert, key_path, protocol=protocol)


@pytest.mark.parametrize("case", ["garbage", "pem-armoured-garbage", "rsa1024", "bad-signature",
                                  "secp256k1"])
def test_bad_csr_is_rejected_invalid_csr(mqtt, bad_csrs, case):
    client = mqtt.claim()
    which, body = provision_request(client, CREATE_FROM_CSR,
                                    {"certificateSigningRequest": bad_csrs[case]}, settle=0.3)
    expect_rejected(which, body, 400, "InvalidCsr")
    assert client.messages(CREATE_FROM_CSR + "/accepted") == []
    assert client.connected


@pytest.mark.parametrize("payload", [
    None,
    b"{}",
    b'{"certificateSigningRequest": 42}',
    b'{"certificateSigningRequest": null}',
    b'{"certificateSigningRequest": ["-----BEGIN CERTIFICATE REQUEST-----"]}',
    b'{"certificateSigningRequest": {"pem": "x"}}',
    b'{"certificateSigningRequest": "-----BEGIN CERTIFICATE',
    b'"-----BEGIN CERTIFICATE REQUEST-----"',
], ids=["empty-payload", "missing-field", "number", "null", "array", "object", "malformed-json",
        "json-string-not-object"])
def test_missing_or_wrongly_typed_csr_is_invalid_payload(mqtt, payload):
    client = mqtt.claim()
    which, body = provision_request(client, CREATE_FROM_CSR, payload, settle=0.3)
    expect_rejected(which, body, 400, "InvalidPayload")
    assert client.connected
