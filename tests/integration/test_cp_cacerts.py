"""Control plane, bring-your-own CA (shared/spec/provisioning.md §4.1-§4.3, §4.6, §6.4):
GetRegistrationCode, RegisterCACertificate, Describe/Update/List/DeleteCACertificate,
RegisterCertificate, RegisterCertificateWithoutCA and ListCertificatesByCA through /usr/bin/aws
and boto3, every refusal checked in the CLI's own error text and exit code, and the broker's
trust following at once (the capath directory, the next connection)."""

import datetime
import json
import re

import pytest

from cp_support import PUB, Aws, boto3_client
from iotmock_support import unique
from jit_support import (allow_all_policy, expired_ca, make_ca, mosquitto_pub_cert, register_ca,
                         self_signed, sign, verification_cert)

pytestmark = [pytest.mark.usefixtures("broker_still_serves"),
              pytest.mark.skipif(PUB is None, reason="mosquitto_pub not installed")]

HEX64 = re.compile(r"^[0-9a-f]{64}$")


@pytest.fixture
def aws(server):
    return Aws(server)


def capath_files(server) -> set:
    return {p.name for p in (server.state_dir / "capath").iterdir()}


def capath_holds(server, pem: str) -> bool:
    norm = pem.strip()
    return any(p.read_text().strip() == norm for p in (server.state_dir / "capath").iterdir())


def test_registration_code(aws):
    code = aws.ok("get-registration-code")["registrationCode"]
    assert HEX64.match(code)
    assert aws.ok("get-registration-code")["registrationCode"] == code
    assert aws.ok("delete-registration-code") == {}
    fresh = aws.ok("get-registration-code")["registrationCode"]
    assert HEX64.match(fresh) and fresh != code


def test_register_describe_update_delete(server, aws, tmp_path):
    ca = make_ca(tmp_path)
    ver = verification_cert(tmp_path, aws, ca)
    before = capath_files(server)
    out = aws.ok("register-ca-certificate", "--ca-certificate", f"file://{ca.cert}",
                 "--verification-cert", f"file://{ver.cert}")
    assert out == {"certificateId": ca.id,
                   "certificateArn": f"arn:aws:iot:us-east-1:123456789012:cacert/{ca.id}"}
    # In the broker's trust store before the answer (§4.2 + emulator/capath.h).
    assert capath_holds(server, ca.pem) and len(capath_files(server)) == len(before) + 1

    d = aws.ok("describe-ca-certificate", "--certificate-id", ca.id)
    desc = d["certificateDescription"]
    assert set(desc) == {"certificateArn", "certificateId", "status", "certificatePem", "ownedBy",
                         "creationDate", "autoRegistrationStatus", "lastModifiedDate",
                         "customerVersion", "generationId", "validity", "certificateMode"}
    assert (desc["status"], desc["autoRegistrationStatus"], desc["certificateMode"]) == (
        "INACTIVE", "DISABLE", "DEFAULT")
    assert desc["certificatePem"].strip() == ca.pem.strip()
    assert desc["ownedBy"] == "123456789012" and desc["customerVersion"] == 1
    assert "registrationConfig" not in d or d["registrationConfig"] is None

    config = {"templateBody": json.dumps({"Resources": {}}),
              "roleArn": "arn:aws:iam::123456789012:role/JITPRole"}
    aws.ok("update-ca-certificate", "--certificate-id", ca.id, "--new-status", "ACTIVE",
           "--new-auto-registration-status", "ENABLE", "--registration-config",
           json.dumps(config))
    d2 = aws.ok("describe-ca-certificate", "--certificate-id", ca.id)
    assert d2["certificateDescription"]["status"] == "ACTIVE"
    assert d2["certificateDescription"]["autoRegistrationStatus"] == "ENABLE"
    assert d2["certificateDescription"]["generationId"] != desc["generationId"]
    assert d2["registrationConfig"] == config
    aws.fail("InvalidRequestException", "UpdateCACertificate", "update-ca-certificate",
             "--certificate-id", ca.id, "--new-status", "REGISTER_INACTIVE")

    aws.fail("CertificateStateException", "DeleteCACertificate", "delete-ca-certificate",
             "--certificate-id", ca.id, message="must be deactivated")
    aws.ok("update-ca-certificate", "--certificate-id", ca.id, "--new-status", "INACTIVE")
    assert aws.ok("delete-ca-certificate", "--certificate-id", ca.id) == {}
    assert not capath_holds(server, ca.pem)
    aws.fail("ResourceNotFoundException", "DescribeCACertificate", "describe-ca-certificate",
             "--certificate-id", ca.id)
    aws.fail("ResourceNotFoundException", "DeleteCACertificate", "delete-ca-certificate",
             "--certificate-id", ca.id)
    aws.fail("ResourceNotFoundException", "UpdateCACertificate", "update-ca-certificate",
             "--certificate-id", ca.id, "--new-status", "ACTIVE")


def test_register_ca_refusals(aws, tmp_path):
    ca = make_ca(tmp_path)
    # Verification certificate whose CN is not the registration code.
    wrong_cn = sign(tmp_path, ca, "/CN=" + "0" * 64)
    aws.fail("RegistrationCodeValidationException", "RegisterCACertificate",
             "register-ca-certificate", "--ca-certificate", f"file://{ca.cert}",
             "--verification-cert", f"file://{wrong_cn.cert}")
    # Verification certificate with the right CN but signed by another key.
    other = make_ca(tmp_path)
    not_signed = verification_cert(tmp_path, aws, other)
    aws.fail("CertificateValidationException", "RegisterCACertificate",
             "register-ca-certificate", "--ca-certificate", f"file://{ca.cert}",
             "--verification-cert", f"file://{not_signed.cert}")
    # Missing verification certificate in DEFAULT mode; present in SNI_ONLY mode.
    aws.fail("InvalidRequestException", "RegisterCACertificate", "register-ca-certificate",
             "--ca-certificate", f"file://{ca.cert}")
    good = verification_cert(tmp_path, aws, ca)
    aws.fail("InvalidRequestException", "RegisterCACertificate", "register-ca-certificate",
             "--ca-certificate", f"file://{ca.cert}", "--verification-cert",
             f"file://{good.cert}", "--certificate-mode", "SNI_ONLY")
    # Expired CA; a certificate that is no CA.
    old = expired_ca(tmp_path)
    old_ver = verification_cert(tmp_path, aws, old)
    aws.fail("CertificateValidationException", "RegisterCACertificate",
             "register-ca-certificate", "--ca-certificate", f"file://{old.cert}",
             "--verification-cert", f"file://{old_ver.cert}", message="expired")
    leaf = self_signed(tmp_path, "not-a-ca")
    aws.fail("CertificateValidationException", "RegisterCACertificate",
             "register-ca-certificate", "--ca-certificate", f"file://{leaf.cert}",
             "--certificate-mode", "SNI_ONLY")
    # Registered twice.
    ca_id = register_ca(tmp_path, aws, ca)
    again = verification_cert(tmp_path, aws, ca)
    err = aws.fail("ResourceAlreadyExistsException", "RegisterCACertificate",
                   "register-ca-certificate", "--ca-certificate", f"file://{ca.cert}",
                   "--verification-cert", f"file://{again.cert}")
    assert err
    # A registrationConfig naming a template that does not exist.
    third = make_ca(tmp_path)
    ver3 = verification_cert(tmp_path, aws, third)
    aws.fail("ResourceNotFoundException", "RegisterCACertificate", "register-ca-certificate",
             "--ca-certificate", f"file://{third.cert}", "--verification-cert",
             f"file://{ver3.cert}", "--registration-config",
             json.dumps({"templateName": unique("missing")}))
    assert aws.ok("describe-ca-certificate", "--certificate-id", ca_id)


def test_sni_only_mode(aws, tmp_path):
    ca = make_ca(tmp_path)
    out = aws.ok("register-ca-certificate", "--ca-certificate", f"file://{ca.cert}",
                 "--certificate-mode", "SNI_ONLY", "--set-as-active")
    d = aws.ok("describe-ca-certificate", "--certificate-id", out["certificateId"])
    assert d["certificateDescription"]["certificateMode"] == "SNI_ONLY"
    assert d["certificateDescription"]["status"] == "ACTIVE"
    # Device certificates take their CA's mode (§4.6).
    dev = sign(tmp_path, ca, "/CN=sni-device")
    aws.ok("register-certificate", "--certificate-pem", f"file://{dev.cert}")
    assert aws.ok("describe-certificate", "--certificate-id", dev.id)[
        "certificateDescription"]["certificateMode"] == "SNI_ONLY"
    by_ca = aws.ok("list-certificates-by-ca", "--ca-certificate-id", out["certificateId"])
    assert [(c["certificateId"], c["certificateMode"]) for c in by_ca["certificates"]] == [
        (dev.id, "SNI_ONLY")]


def test_register_certificate(server, aws, tmp_path):
    ca = make_ca(tmp_path)
    ca_id = register_ca(tmp_path, aws, ca, "--set-as-active")
    policy = allow_all_policy(aws)

    # With the CA's PEM and status ACTIVE: connects at once.
    dev = sign(tmp_path, ca, "/CN=registered-with-ca")
    out = aws.ok("register-certificate", "--certificate-pem", f"file://{dev.cert}",
                 "--ca-certificate-pem", f"file://{ca.cert}", "--status", "ACTIVE")
    assert out == {"certificateId": dev.id, "certificateArn": dev.arn}
    aws.ok("attach-policy", "--policy-name", policy, "--target", dev.arn)
    assert mosquitto_pub_cert(server, dev.cert, dev.key, unique("r"), "r/t").returncode == 0
    d = aws.ok("describe-certificate", "--certificate-id", dev.id)["certificateDescription"]
    assert d["caCertificateId"] == ca_id and d["status"] == "ACTIVE"
    assert d["certificateMode"] == "DEFAULT"

    # Without it: the registered CA is found by issuer; inactive unless told (§4.6).
    dev2 = sign(tmp_path, ca, "/CN=registered-without-ca-pem")
    aws.ok("register-certificate", "--certificate-pem", f"file://{dev2.cert}")
    assert aws.ok("describe-certificate", "--certificate-id", dev2.id)[
        "certificateDescription"]["status"] == "INACTIVE"
    aws.ok("attach-policy", "--policy-name", policy, "--target", dev2.arn)
    assert mosquitto_pub_cert(server, dev2.cert, dev2.key, unique("r"), "r/t").returncode != 0
    ids = {c["certificateId"] for c in
           aws.ok("list-certificates-by-ca", "--ca-certificate-id", ca_id)["certificates"]}
    assert ids == {dev.id, dev2.id}

    # Refusals.
    aws.fail("ResourceAlreadyExistsException", "RegisterCertificate", "register-certificate",
             "--certificate-pem", f"file://{dev.cert}")
    dev3 = sign(tmp_path, ca, "/CN=pending")
    aws.fail("CertificateStateException", "RegisterCertificate", "register-certificate",
             "--certificate-pem", f"file://{dev3.cert}", "--status", "PENDING_ACTIVATION")
    stranger = make_ca(tmp_path)
    foreign = sign(tmp_path, stranger, "/CN=foreign")
    aws.fail("CertificateValidationException", "RegisterCertificate", "register-certificate",
             "--certificate-pem", f"file://{foreign.cert}")
    aws.ok("update-ca-certificate", "--certificate-id", ca_id, "--new-status", "INACTIVE")
    aws.fail("CertificateStateException", "RegisterCertificate", "register-certificate",
             "--certificate-pem", f"file://{dev3.cert}", "--status", "ACTIVE")
    # Registered devices of the now INACTIVE CA keep connecting (§4.3).
    assert mosquitto_pub_cert(server, dev.cert, dev.key, unique("r"), "r/t").returncode == 0


def test_register_certificate_without_ca(server, aws, tmp_path):
    dev = self_signed(tmp_path, "self-signed-device")
    # Unknown to the broker's trust store: refused during TLS.
    assert mosquitto_pub_cert(server, dev.cert, dev.key, unique("s"), "s/t").returncode != 0
    out = aws.ok("register-certificate-without-ca", "--certificate-pem", f"file://{dev.cert}",
                 "--status", "ACTIVE")
    assert out == {"certificateId": dev.id, "certificateArn": dev.arn}
    assert capath_holds(server, dev.pem)
    aws.ok("attach-policy", "--policy-name", allow_all_policy(aws), "--target", dev.arn)
    res = mosquitto_pub_cert(server, dev.cert, dev.key, unique("s"), "s/t")
    assert res.returncode == 0, res
    d = aws.ok("describe-certificate", "--certificate-id", dev.id)["certificateDescription"]
    assert d["status"] == "ACTIVE" and "caCertificateId" not in d
    assert d["certificateMode"] == "SNI_ONLY"  # §4.6
    listed = {c["certificateId"]: c["certificateMode"]
              for c in aws.ok("list-certificates")["certificates"]}
    assert listed[dev.id] == "SNI_ONLY"

    aws.fail("ResourceAlreadyExistsException", "RegisterCertificateWithoutCA",
             "register-certificate-without-ca", "--certificate-pem", f"file://{dev.cert}")
    other = self_signed(tmp_path, "pending-device")
    aws.fail("CertificateStateException", "RegisterCertificateWithoutCA",
             "register-certificate-without-ca", "--certificate-pem", f"file://{other.cert}",
             "--status", "PENDING_ACTIVATION")
    bad = tmp_path / "bad.pem"
    bad.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    aws.fail("CertificateValidationException", "RegisterCertificateWithoutCA",
             "register-certificate-without-ca", "--certificate-pem", f"file://{bad}")

    # Deleted, it leaves the broker's trust store too.
    aws.ok("update-certificate", "--certificate-id", dev.id, "--new-status", "INACTIVE")
    aws.ok("delete-certificate", "--certificate-id", dev.id, "--force-delete")
    assert not capath_holds(server, dev.pem)


def test_reset_forgets_the_cas(server_factory, tmp_path):
    srv = server_factory(name="cacert-reset")
    aws = Aws(srv)
    ca = make_ca(tmp_path)
    register_ca(tmp_path, aws, ca, "--set-as-active")
    dev = self_signed(tmp_path, "reset-device")
    aws.ok("register-certificate-without-ca", "--certificate-pem", f"file://{dev.cert}")
    assert capath_holds(srv, ca.pem) and capath_holds(srv, dev.pem)
    status, body = srv.control_plane("POST", "/_iotmock/reset")
    assert status == 200, body
    assert aws.ok("list-ca-certificates")["certificates"] == []
    assert not capath_holds(srv, ca.pem) and not capath_holds(srv, dev.pem)
    assert capath_holds(srv, srv.root_ca.read_text())


def test_boto3_ca_family(server, aws, tmp_path):
    iot = boto3_client(server)
    code = iot.get_registration_code()["registrationCode"]
    assert HEX64.match(code)
    ids = []
    for _ in range(3):
        ca = make_ca(tmp_path)
        ver = sign(tmp_path, ca, f"/CN={code}")
        out = iot.register_ca_certificate(caCertificate=ca.pem, verificationCertificate=ver.pem,
                                          setAsActive=True, allowAutoRegistration=True)
        ids.append(out["certificateId"])
    d = iot.describe_ca_certificate(certificateId=ids[0])
    desc = d["certificateDescription"]
    assert isinstance(desc["creationDate"], datetime.datetime)
    assert isinstance(desc["validity"]["notAfter"], datetime.datetime)
    assert desc["status"] == "ACTIVE" and desc["autoRegistrationStatus"] == "ENABLE"

    # Pagination as the model: pageSize / marker / nextMarker.
    seen, marker = [], None
    while True:
        kw = {"pageSize": 1}
        if marker:
            kw["marker"] = marker
        page = iot.list_ca_certificates(**kw)
        assert len(page["certificates"]) <= 1
        seen += [c["certificateId"] for c in page["certificates"]]
        marker = page.get("nextMarker")
        if not marker:
            break
    assert set(ids) <= set(seen) and len(seen) == len(set(seen))
    newest_first = [c["certificateId"] for c in
                    iot.list_ca_certificates(ascendingOrder=False)["certificates"]]
    assert newest_first.index(ids[2]) < newest_first.index(ids[0])

    with pytest.raises(iot.exceptions.CertificateStateException):
        iot.delete_ca_certificate(certificateId=ids[0])
    with pytest.raises(iot.exceptions.ResourceNotFoundException):
        iot.describe_ca_certificate(certificateId="0" * 64)
    with pytest.raises(iot.exceptions.RegistrationCodeValidationException):
        ca = make_ca(tmp_path)
        iot.register_ca_certificate(caCertificate=ca.pem,
                                    verificationCertificate=sign(tmp_path, ca, "/CN=nope").pem)
    iot.update_ca_certificate(certificateId=ids[0], newStatus="INACTIVE")
    iot.delete_ca_certificate(certificateId=ids[0])
    with pytest.raises(iot.exceptions.ResourceNotFoundException):
        iot.describe_ca_certificate(certificateId=ids[0])

    # ListCertificatesByCA pages the same way.
    ca = make_ca(tmp_path)
    ca_id = iot.register_ca_certificate(caCertificate=ca.pem,
                                        verificationCertificate=sign(tmp_path, ca,
                                                                     f"/CN={code}").pem,
                                        setAsActive=True)["certificateId"]
    devices = set()
    for i in range(3):
        dev = sign(tmp_path, ca, f"/CN=by-ca-{i}")
        devices.add(iot.register_certificate(certificatePem=dev.pem)["certificateId"])
    got, marker = [], None
    while True:
        kw = {"caCertificateId": ca_id, "pageSize": 2}
        if marker:
            kw["marker"] = marker
        page = iot.list_certificates_by_ca(**kw)
        assert len(page["certificates"]) <= 2
        got += [c["certificateId"] for c in page["certificates"]]
        marker = page.get("nextMarker")
        if not marker:
            break
    assert sorted(got) == sorted(devices)
