"""Fleet provisioning with the official AWS IoT Device SDK v2 for JavaScript
(aws-iot-device-sdk-v2 1.28.0, IotIdentityClientv2; shared/spec/clients.md §1), driven by
tests/js/provision.js: keys and CSR flows over MQTT 5 and 3.1.1, then a reconnect with the new
certificate and a QoS 1 publish. Needs `npm ci` (or `npm install`) in tests/js."""

import json
import shutil
import subprocess

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from iotmock_support import (FLEET_DEFAULT, HEX64, REPO, cert_id, expected_device_configuration,
                             fleet_default_body, load_cert, make_csr, spki_der, unique)

JS_DIR = REPO / "tests" / "js"
SCRIPT = JS_DIR / "provision.js"
NODE = shutil.which("node") or "node"

pytestmark = [
    pytest.mark.skipif(not (JS_DIR / "node_modules").is_dir(),
                       reason="tests/js/node_modules missing: run `npm ci` in tests/js"),
    pytest.mark.usefixtures("broker_still_serves"),
]

RESULT_FIELDS = {"certificateId", "thingName", "deviceConfiguration", "reconnected", "published"}


def run_provision(server, out_dir, mode, protocol, serial, template=FLEET_DEFAULT, extra=()):
    argv = [NODE, str(SCRIPT), "--host", "localhost", "--port", str(server.mqtt_port),
            "--ca", str(server.root_ca), "--cert", str(server.claim_cert),
            "--key", str(server.claim_key), "--mode", mode, "--protocol", protocol,
            "--template", template, "--serial", serial, "--out", str(out_dir),
            "--client-id", unique(f"js-{mode}-{protocol}"), *extra]
    p = subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=str(JS_DIR))
    lines = [l for l in p.stdout.splitlines() if l.strip()]
    assert lines, f"no output (exit {p.returncode}); stderr: {p.stderr[-3000:]}"
    try:
        result = json.loads(lines[-1])
    except ValueError:
        raise AssertionError(f"last line is not JSON: {lines[-1]!r}; stderr: {p.stderr[-3000:]}")
    return p.returncode, result, p.stderr


@pytest.mark.parametrize("protocol", ["mqtt5", "mqtt311"])
@pytest.mark.parametrize("mode", ["keys", "csr"])
def test_js_sdk_provisions_reconnects_and_publishes(server, tmp_path, mode, protocol):
    serial = unique(f"js-{mode}-{protocol}")
    out = tmp_path / "out"
    extra = []
    csr_key = csr_pem = None
    if mode == "csr":
        csr_key, csr_pem = make_csr(tmp_path, "rsa2048", f"/O=iotmock/CN={serial}")
        csr_file = tmp_path / "device.csr"
        csr_file.write_text(csr_pem)
        extra = ["--csr", str(csr_file), "--csr-key", str(csr_key)]

    code, result, stderr = run_provision(server, out, mode, protocol, serial, extra=extra)
    assert code == 0, f"provision.js failed: {result}\nstderr: {stderr[-3000:]}"
    assert set(result) == RESULT_FIELDS, result
    assert HEX64.match(result["certificateId"]), result["certificateId"]
    assert result["thingName"] == serial
    assert result["deviceConfiguration"] == expected_device_configuration(
        fleet_default_body(), {"SerialNumber": serial}, result["certificateId"])
    assert result["reconnected"] is True and result["published"] is True

    cert_pem = (out / "certificate.pem").read_text()
    assert cert_id(cert_pem) == result["certificateId"], "issued certificate file != certificateId"
    cert = load_cert(cert_pem)
    key = serialization.load_pem_private_key((out / "private.key").read_bytes(), password=None)
    assert spki_der(cert) == spki_der(key)
    if mode == "csr":
        csr = x509.load_pem_x509_csr(csr_pem.encode())
        assert cert.subject.public_bytes() == csr.subject.public_bytes()
        assert spki_der(cert) == spki_der(csr)


def test_js_sdk_reports_the_modeled_rejection(server, tmp_path):
    """The SDK parses iotmock's rejection payload into ServiceError.modeledError."""
    code, result, stderr = run_provision(server, tmp_path / "out", "keys", "mqtt5",
                                         unique("js-reject"), template="no-such-template")
    assert code == 1, result
    assert set(result) == {"error", "modeledError"}
    assert result["error"].startswith("RegisterThing:"), result
    modeled = result["modeledError"]
    assert modeled["statusCode"] == 404 and modeled["errorCode"] == "ResourceNotFound", modeled
    assert isinstance(modeled["errorMessage"], str) and modeled["errorMessage"], modeled
