"""Control plane, certificates: CreateKeysAndCertificate, CreateCertificateFromCsr,
DescribeCertificate, UpdateCertificate, DeleteCertificate and ListCertificates, each checked in
the CLI's output and in what the broker then admits (shared/spec/provisioning.md §4.5, §4.8,
§6.5): a status change is in force for the very next connection."""

import re
import time

import pytest

from cp_support import (ALLOW_ALL_POLICY, PUB, Aws, Device, assert_cannot_publish,
                        assert_publishes, boto3_client, cert_arn, new_device)
from iotmock_support import (AWS_ISSUER_LINE, AWS_NOT_AFTER_LINE, FLEET_DEFAULT, cert_id,
                             make_csr, openssl_x509, unique)

pytestmark = [pytest.mark.usefixtures("broker_still_serves"),
              pytest.mark.skipif(PUB is None, reason="mosquitto_pub not installed")]

HEX64 = re.compile(r"^[0-9a-f]{64}$")


@pytest.fixture
def aws(server):
    return Aws(server)


@pytest.fixture
def allow_all(aws):
    """A policy allowing everything, so that the tests hold once the broker enforces policies."""
    name = unique("allow-all")
    aws.ok("create-policy", "--policy-name", name, "--policy-document", ALLOW_ALL_POLICY)
    return name


def test_certificate_lifecycle_on_the_broker(server, aws, tmp_path, allow_all):
    keys = aws.ok("create-keys-and-certificate", "--set-as-active")
    assert set(keys) == {"certificateArn", "certificateId", "certificatePem", "keyPair"}
    assert set(keys["keyPair"]) == {"PublicKey", "PrivateKey"}
    assert HEX64.match(keys["certificateId"])
    assert keys["certificateId"] == cert_id(keys["certificatePem"])  # §4.7: SHA-256 of the DER
    assert keys["certificateArn"] == cert_arn(keys["certificateId"])
    assert keys["keyPair"]["PrivateKey"].startswith("-----BEGIN RSA PRIVATE KEY-----")
    assert keys["keyPair"]["PublicKey"].startswith("-----BEGIN PUBLIC KEY-----")
    assert AWS_ISSUER_LINE in openssl_x509(keys["certificatePem"], "-issuer")
    dev = Device(tmp_path, keys)
    aws.ok("attach-policy", "--policy-name", allow_all, "--target", dev.arn)
    assert_publishes(server, dev)

    d = aws.ok("describe-certificate", "--certificate-id", dev.id)["certificateDescription"]
    assert d["certificateArn"] == dev.arn and d["certificateId"] == dev.id
    assert d["status"] == "ACTIVE" and d["certificatePem"] == keys["certificatePem"]
    assert d["ownedBy"] == "123456789012" and d["customerVersion"] == 1
    assert d["certificateMode"] == "DEFAULT" and "caCertificateId" not in d
    assert d["validity"]["notAfter"].startswith("2049-12-31T23:59:59")
    assert {"creationDate", "lastModifiedDate", "generationId"} <= set(d)

    # ACTIVE -> INACTIVE: refused at the very next CONNECT; and back.
    assert aws.ok("update-certificate", "--certificate-id", dev.id, "--new-status",
                  "INACTIVE") == {}
    d2 = aws.ok("describe-certificate", "--certificate-id", dev.id)["certificateDescription"]
    assert d2["status"] == "INACTIVE" and d2["customerVersion"] == 2
    assert d2["generationId"] != d["generationId"]
    assert_cannot_publish(server, dev)
    aws.ok("update-certificate", "--certificate-id", dev.id, "--new-status", "INACTIVE")
    aws.ok("update-certificate", "--certificate-id", dev.id, "--new-status", "ACTIVE")
    assert_publishes(server, dev)

    # §4.5: internal statuses cannot be set; REVOKED is terminal.
    aws.fail("InvalidRequestException", "UpdateCertificate", "update-certificate",
             "--certificate-id", dev.id, "--new-status", "PENDING_ACTIVATION",
             message="Status PENDING_ACTIVATION cannot be set")
    aws.ok("update-certificate", "--certificate-id", dev.id, "--new-status", "REVOKED")
    assert_cannot_publish(server, dev)
    aws.fail("CertificateStateException", "UpdateCertificate", "update-certificate",
             "--certificate-id", dev.id, "--new-status", "ACTIVE",
             message="a revoked certificate cannot change status")
    aws.ok("update-certificate", "--certificate-id", dev.id, "--new-status", "REVOKED")

    # §4.8: policies must be detached first, unless forceDelete.
    aws.fail("DeleteConflictException", "DeleteCertificate", "delete-certificate",
             "--certificate-id", dev.id,
             message=re.escape(f"Certificate policies must be detached before deletion "
                               f"(arn: {dev.arn})"))
    assert aws.ok("delete-certificate", "--certificate-id", dev.id, "--force-delete") == {}
    aws.fail("ResourceNotFoundException", "DescribeCertificate", "describe-certificate",
             "--certificate-id", dev.id, message=f"The certificate {dev.id} does not exist")
    assert aws.ok("list-targets-for-policy", "--policy-name", allow_all) == {"targets": []}
    assert_cannot_publish(server, dev)


def test_inactive_by_default_and_delete_rules(server, aws, tmp_path, allow_all):
    dev = new_device(aws, tmp_path, active=False)
    d = aws.ok("describe-certificate", "--certificate-id", dev.id)["certificateDescription"]
    assert d["status"] == "INACTIVE"  # §6.5: no --set-as-active
    aws.ok("attach-policy", "--policy-name", allow_all, "--target", dev.arn)
    assert_cannot_publish(server, dev)

    aws.ok("update-certificate", "--certificate-id", dev.id, "--new-status", "ACTIVE")
    assert_publishes(server, dev)
    aws.fail("CertificateStateException", "DeleteCertificate", "delete-certificate",
             "--certificate-id", dev.id,
             message=f"Certificate must be deactivated \\(not ACTIVE\\) before deletion. "
                     f"Id: {dev.id}")
    aws.ok("update-certificate", "--certificate-id", dev.id, "--new-status", "INACTIVE")
    thing = unique("holder")
    aws.ok("create-thing", "--thing-name", thing)
    aws.ok("attach-thing-principal", "--thing-name", thing, "--principal", dev.arn)
    # A thing attachment blocks deletion even with forceDelete.
    aws.fail("DeleteConflictException", "DeleteCertificate", "delete-certificate",
             "--certificate-id", dev.id, "--force-delete",
             message=re.escape(f"Things must be detached before deletion (arn: {dev.arn})"))
    aws.ok("detach-thing-principal", "--thing-name", thing, "--principal", dev.arn)
    aws.ok("detach-policy", "--policy-name", allow_all, "--target", dev.arn)
    aws.ok("delete-certificate", "--certificate-id", dev.id)
    aws.ok("delete-thing", "--thing-name", thing)


def test_certificate_id_errors(aws):
    aws.fail("InvalidRequestException", "DescribeCertificate", "describe-certificate",
             "--certificate-id", "z" * 64, message="must be 64 hexadecimal characters")
    aws.fail("ResourceNotFoundException", "UpdateCertificate", "update-certificate",
             "--certificate-id", "0" * 64, "--new-status", "ACTIVE")
    aws.fail("ResourceNotFoundException", "DeleteCertificate", "delete-certificate",
             "--certificate-id", "0" * 64)


@pytest.mark.parametrize("kind", ["rsa2048", "p256"])
def test_create_certificate_from_csr(server, aws, tmp_path, allow_all, kind):
    name = unique("csr")
    key, csr = make_csr(tmp_path, kind, subject=f"/CN={name}/O=iotmock tests")
    out = aws.ok("create-certificate-from-csr", "--set-as-active",
                 "--certificate-signing-request", csr)
    assert set(out) == {"certificateArn", "certificateId", "certificatePem"}
    assert out["certificateId"] == cert_id(out["certificatePem"])
    subject = openssl_x509(out["certificatePem"], "-subject")
    assert f"CN = {name}" in subject and "O = iotmock tests" in subject
    assert AWS_NOT_AFTER_LINE in openssl_x509(out["certificatePem"], "-enddate")
    cert = tmp_path / f"{name}.cert.pem"
    cert.write_text(out["certificatePem"])
    dev = Device.__new__(Device)
    dev.id, dev.arn, dev.name, dev.cert, dev.key = (out["certificateId"], out["certificateArn"],
                                                    name, cert, key)
    aws.ok("attach-policy", "--policy-name", allow_all, "--target", dev.arn)
    assert_publishes(server, dev)


def test_create_certificate_from_csr_errors(aws):
    aws.fail("InvalidRequestException", "CreateCertificateFromCsr", "create-certificate-from-csr",
             "--certificate-signing-request",
             "-----BEGIN CERTIFICATE REQUEST-----\nnot a csr\n-----END CERTIFICATE REQUEST-----\n")


def test_list_certificates(server, aws, tmp_path):
    iot = boto3_client(server)
    made = []
    for _ in range(3):
        made.append(iot.create_keys_and_certificate(setAsActive=False)["certificateId"])
        time.sleep(1.1)  # creation dates one second apart: the order is observable
    # (The CLI treats --page-size as ListCertificates' own pageSize and then does not follow
    # nextMarker itself, against AWS as here; so the pages are walked with boto3 below.)
    listed = aws.ok("list-certificates")["certificates"]
    ids = [c["certificateId"] for c in listed]
    assert [i for i in ids if i in made] == made  # oldest first
    mine = next(c for c in listed if c["certificateId"] == made[0])
    assert set(mine) == {"certificateArn", "certificateId", "status", "certificateMode",
                         "creationDate"}
    assert mine["status"] == "INACTIVE" and mine["certificateMode"] == "DEFAULT"

    # The wire: pageSize + marker -> nextMarker (base64, the model's Marker pattern).
    page = iot.list_certificates(pageSize=2)
    assert len(page["certificates"]) == 2 and re.match(r"^[A-Za-z0-9+/]+={0,2}$",
                                                       page["nextMarker"])
    walked = [c["certificateId"] for c in page["certificates"]]
    while "nextMarker" in page:
        page = iot.list_certificates(pageSize=2, marker=page["nextMarker"])
        walked += [c["certificateId"] for c in page["certificates"]]
    assert walked == ids
    newest_first = iot.list_certificates(ascendingOrder=False, pageSize=250)["certificates"]
    order = [c["certificateId"] for c in newest_first if c["certificateId"] in made]
    assert order == list(reversed(made))

    # §1.11: a provisioning claim is a certificate, but it is never listed.
    claim = aws.ok("create-provisioning-claim", "--template-name", FLEET_DEFAULT)
    every = [c["certificateId"] for c in aws.ok("list-certificates")["certificates"]]
    assert claim["certificateId"] not in every and made[0] in every
    described = aws.ok("describe-certificate", "--certificate-id", claim["certificateId"])
    assert described["certificateDescription"]["status"] == "ACTIVE"
