"""Fleet provisioning with Debian's mosquitto-clients 2.0: mosquitto_rr does a request and waits
for the answer on one connection (subscribe first, then publish), which is what the API needs;
mosquitto_pub connects with the issued certificate only after RegisterThing; mosquitto_sub on
another connection never sees someone else's answer."""

import json
import subprocess
import threading
import time

import pytest
from cryptography import x509

from iotmock_support import (CREATE_FROM_CSR, CREATE_KEYS, CSR_ACCEPTED_FIELDS, FLEET_DEFAULT,
                             KEYS_ACCEPTED_FIELDS, METRICS_USERNAME, REGISTER_ACCEPTED_FIELDS,
                             check_issued, load_cert, make_csr, plain_topic, provision_topic,
                             spki_der, unique,
                             which_or_none, write_credentials)

pytestmark = pytest.mark.usefixtures("broker_still_serves")

RR, SUB, PUB = which_or_none("mosquitto_rr"), which_or_none("mosquitto_sub"), \
    which_or_none("mosquitto_pub")
if not (RR and SUB and PUB):
    pytest.skip("mosquitto-clients (mosquitto_rr, mosquitto_sub, mosquitto_pub) not installed",
                allow_module_level=True)


def tls_args(server, cert=None, key=None):
    return ["-h", "localhost", "-p", str(server.mqtt_port), "--cafile", str(server.root_ca),
            "--cert", str(cert or server.claim_cert), "--key", str(key or server.claim_key)]


def rr(server, request_topic, message_args, version="5", timeout=15):
    """mosquitto_rr: subscribe to REQUEST/accepted, publish, print the first answer."""
    argv = [RR, *tls_args(server), "-V", version, "-q", "1", "-u", METRICS_USERNAME,
            "-i", unique("rr"), "-t", request_topic, "-e", request_topic + "/accepted",
            "-W", "10", *message_args]
    p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, f"mosquitto_rr exit {p.returncode}: {p.stdout} {p.stderr}"
    lines = p.stdout.splitlines()
    assert len(lines) == 1, p.stdout
    return json.loads(lines[0])


def pub(server, cert, key, topic, version="mqttv311", client_id=None):
    return subprocess.run([PUB, *tls_args(server, cert, key), "-V", version, "-q", "1",
                           "-i", client_id or unique("pub"), "-u", METRICS_USERNAME, "-t", topic,
                           "-m", "hello from mosquitto_pub"],
                          capture_output=True, text=True, timeout=20)


@pytest.mark.parametrize("version,message", [("5", ["-m", "{}"]), ("311", ["-n"])],
                         ids=["mqtt5-empty-object", "mqtt311-empty-payload"])
def test_rr_create_keys(server, version, message):
    body = rr(server, CREATE_KEYS, message, version)
    assert set(body) == KEYS_ACCEPTED_FIELDS
    check_issued(body)


def test_rr_full_flow_then_mosquitto_pub_with_new_certificate(server, tmp_path):
    keys = rr(server, CREATE_KEYS, ["-m", "{}"])
    cert, key = write_credentials(tmp_path, "device", keys["certificatePem"], keys["privateKey"])
    serial = unique("cli")
    topic = f"devices/{serial}/hello"

    before = pub(server, cert, key, topic, client_id=serial)
    assert before.returncode != 0, "a PENDING_ACTIVATION certificate published"

    request = json.dumps({"certificateOwnershipToken": keys["certificateOwnershipToken"],
                          "parameters": {"SerialNumber": serial}})
    body = rr(server, provision_topic(FLEET_DEFAULT), ["-m", request], "311")
    assert set(body) == REGISTER_ACCEPTED_FIELDS and body["thingName"] == serial

    for version in ("mqttv311", "mqttv5"):
        after = pub(server, cert, key, topic, version, client_id=serial)
        assert after.returncode == 0, f"{version}: {after.stdout} {after.stderr}"


def test_rr_create_from_csr(server, tmp_path):
    key, csr = make_csr(tmp_path, "rsa2048", "/O=CLI/CN=mosquitto-rr")
    # mosquitto_rr 2.0.11 accepts -f FILE but publishes an empty payload, so pass the text.
    body = rr(server, CREATE_FROM_CSR, ["-m", json.dumps({"certificateSigningRequest": csr})])
    assert set(body) == CSR_ACCEPTED_FIELDS
    check_issued(body)
    req = x509.load_pem_x509_csr(csr.encode())
    assert spki_der(load_cert(body["certificatePem"])) == spki_der(req)


def test_mosquitto_sub_does_not_receive_another_clients_answer(server):
    marker_topic = plain_topic("marker")
    # stdbuf: mosquitto_sub's debug lines are block-buffered on a pipe.
    sub = subprocess.Popen(["stdbuf", "-oL", SUB, *tls_args(server), "-i", unique("sub"), "-d", "-C", "1",
                            "-W", "30", "-F", "MESSAGE %t %p",
                            "-t", CREATE_KEYS + "/accepted", "-t", marker_topic],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines, subscribed = [], threading.Event()

    def read():
        for line in sub.stdout:
            lines.append(line.rstrip("\n"))
            if "received SUBACK" in line:
                subscribed.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert subscribed.wait(15), f"mosquitto_sub not subscribed: {lines}"
        body = rr(server, CREATE_KEYS, ["-m", "{}"])  # answered on mosquitto_rr's connection
        assert set(body) == KEYS_ACCEPTED_FIELDS
        time.sleep(0.5)
        marker = pub(server, server.claim_cert, server.claim_key, marker_topic)
        assert marker.returncode == 0, marker.stderr
        assert sub.wait(20) == 0, f"mosquitto_sub did not exit after one message: {lines}"
    finally:
        if sub.poll() is None:
            sub.kill()
            sub.wait()
    reader.join(5)
    messages = [l for l in lines if l.startswith("MESSAGE ")]
    assert messages == [f"MESSAGE {marker_topic} hello from mosquitto_pub"], lines
