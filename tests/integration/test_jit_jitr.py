"""Just-in-time registration (shared/spec/provisioning.md §4.2-§4.5): the AWS walkthrough step by
step with the openssl CLI, /usr/bin/aws, mosquitto_pub and a paho subscriber — a CA registered
with its verification certificate, a device certificate it signed refused on its first connect and
registered PENDING_ACTIVATION, the registered event received with AWS's fields and types, then
activation, a policy, and a second connect that publishes. Also: chained device certificates, a
deactivated CA, and a live client kicked by update-certificate."""

import json
import re
import time

import pytest

from cp_support import PUB, Aws, new_device
from iotmock_support import MqttClient, unique
from jit_support import (REGISTERED_PREFIX, allow_all_policy, chain_file, make_ca,
                         mosquitto_pub_cert, register_ca, sign)

pytestmark = [pytest.mark.usefixtures("broker_still_serves"),
              pytest.mark.skipif(PUB is None, reason="mosquitto_pub not installed")]


@pytest.fixture
def aws(server):
    return Aws(server)


def events_policy(aws: Aws) -> str:
    """What a JITR listener needs and no more: connect, subscribe to and receive the registered
    events, and the walkthrough's own test topics."""
    prefix = "arn:aws:iot:us-east-1:123456789012:"
    doc = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "iot:Connect", "Resource": prefix + "client/*"},
        {"Effect": "Allow", "Action": "iot:Subscribe",
         "Resource": [prefix + "topicfilter/$aws/events/certificates/registered/*",
                      prefix + "topicfilter/jitr/*"]},
        {"Effect": "Allow", "Action": "iot:Receive",
         "Resource": [prefix + "topic/$aws/events/certificates/registered/*",
                      prefix + "topic/jitr/*"]}]}
    name = unique("jitr-events")
    aws.ok("create-policy", "--policy-name", name, "--policy-document", json.dumps(doc))
    return name


@pytest.fixture
def listener(server, aws, tmp_path):
    """A connected client allowed the registered events only, subscribed to them."""
    dev = new_device(aws, tmp_path)
    aws.ok("attach-policy", "--policy-name", events_policy(aws), "--target", dev.arn)
    client = MqttClient(server, dev.cert, dev.key).connect()
    client.subscribe(REGISTERED_PREFIX + "#")
    yield client
    client.close()


def test_jitr_walkthrough(server, aws, tmp_path, listener):
    # 1. The CA and its proof of possession; registered ACTIVE with auto-registration.
    ca = make_ca(tmp_path, "JITR walkthrough CA")
    ca_id = register_ca(tmp_path, aws, ca, "--set-as-active", "--allow-auto-registration")
    d = aws.ok("describe-ca-certificate", "--certificate-id", ca_id)["certificateDescription"]
    assert (d["status"], d["autoRegistrationStatus"], d["certificateMode"]) == (
        "ACTIVE", "ENABLE", "DEFAULT")

    # 2. A device certificate the CA signed: the first connect is refused...
    device = sign(tmp_path, ca, "/CN=jitr-device-1")
    client_id = unique("jitr")
    topic = f"jitr/{client_id}/hello"
    before_ms = int(time.time() * 1000)
    first = mosquitto_pub_cert(server, device.cert, device.key, client_id, topic)
    assert first.returncode != 0, first

    # ... and the registered event reaches the subscriber, with AWS's fields and types (§4.4).
    event = listener.wait_message(REGISTERED_PREFIX + ca_id, timeout=10)
    assert event is not None, listener.state()
    body = event.json()
    assert list(body) == ["certificateId", "caCertificateId", "timestamp", "certificateStatus",
                          "awsAccountId", "certificateRegistrationTimestamp"]
    assert body["certificateId"] == device.id
    assert body["caCertificateId"] == ca_id
    assert body["certificateStatus"] == "PENDING_ACTIVATION"
    assert body["awsAccountId"] == "123456789012"
    assert isinstance(body["timestamp"], int) and before_ms <= body["timestamp"] <= time.time() * 1000
    assert isinstance(body["certificateRegistrationTimestamp"], str)
    assert re.fullmatch(r"\d{13}", body["certificateRegistrationTimestamp"])
    assert event.retain is False

    # The certificate is registered PENDING_ACTIVATION under that CA.
    cd = aws.ok("describe-certificate", "--certificate-id", device.id)["certificateDescription"]
    assert cd["status"] == "PENDING_ACTIVATION" and cd["caCertificateId"] == ca_id
    listed = aws.ok("list-certificates-by-ca", "--ca-certificate-id", ca_id)["certificates"]
    assert [(c["certificateId"], c["status"]) for c in listed] == [
        (device.id, "PENDING_ACTIVATION")]

    # 3. Each retry while pending publishes the event again (§4.4 item 3), same registration time.
    again = mosquitto_pub_cert(server, device.cert, device.key, client_id, topic)
    assert again.returncode != 0
    second = listener.wait_message(REGISTERED_PREFIX + ca_id, timeout=10)
    assert second is not None
    assert second.json()["certificateRegistrationTimestamp"] == (
        body["certificateRegistrationTimestamp"])

    # 4. Activation and a policy, as the JITR Lambda would do; then the device connects.
    aws.ok("update-certificate", "--certificate-id", device.id, "--new-status", "ACTIVE")
    aws.ok("attach-policy", "--policy-name", allow_all_policy(aws), "--target", device.arn)
    listener.subscribe(topic)
    ok = mosquitto_pub_cert(server, device.cert, device.key, client_id, topic, "registered!")
    assert ok.returncode == 0, ok
    got = listener.wait_message(topic, timeout=10)
    assert got is not None and got.payload == b"registered!"
    # Connected again: no new event.
    assert len(listener.messages(REGISTERED_PREFIX + ca_id)) == 2


def test_device_presenting_its_chain(server, aws, tmp_path, listener):
    ca = make_ca(tmp_path)
    ca_id = register_ca(tmp_path, aws, ca, "--set-as-active", "--allow-auto-registration")
    device = sign(tmp_path, ca, "/CN=chained-device")
    chain = chain_file(tmp_path, device, ca)
    client_id = unique("chain")
    assert mosquitto_pub_cert(server, chain, device.key, client_id, "c/t").returncode != 0
    event = listener.wait_message(REGISTERED_PREFIX + ca_id, timeout=10)
    assert event is not None and event.json()["certificateId"] == device.id
    aws.ok("update-certificate", "--certificate-id", device.id, "--new-status", "ACTIVE")
    aws.ok("attach-policy", "--policy-name", allow_all_policy(aws), "--target", device.arn)
    res = mosquitto_pub_cert(server, chain, device.key, client_id, "c/t")
    assert res.returncode == 0, res


def test_deactivated_ca_stops_only_new_registrations(server, aws, tmp_path, listener):
    ca = make_ca(tmp_path)
    ca_id = register_ca(tmp_path, aws, ca, "--set-as-active", "--allow-auto-registration")
    known = sign(tmp_path, ca, "/CN=known-device")
    assert mosquitto_pub_cert(server, known.cert, known.key, unique("k"), "k/t").returncode != 0
    assert listener.wait_message(REGISTERED_PREFIX + ca_id, timeout=10) is not None
    aws.ok("update-certificate", "--certificate-id", known.id, "--new-status", "ACTIVE")
    aws.ok("attach-policy", "--policy-name", allow_all_policy(aws), "--target", known.arn)

    aws.ok("update-ca-certificate", "--certificate-id", ca_id, "--new-status", "INACTIVE")
    # A new device of that CA: refused, not registered, no event.
    newcomer = sign(tmp_path, ca, "/CN=new-device")
    assert mosquitto_pub_cert(server, newcomer.cert, newcomer.key, unique("n"),
                              "n/t").returncode != 0
    aws.fail("ResourceNotFoundException", "DescribeCertificate", "describe-certificate",
             "--certificate-id", newcomer.id)
    # The registered device keeps connecting (§4.3).
    res = mosquitto_pub_cert(server, known.cert, known.key, unique("k"), "k/t")
    assert res.returncode == 0, res
    assert listener.wait_message(REGISTERED_PREFIX + ca_id, timeout=1) is None

    # Auto-registration DISABLE on an ACTIVE CA: the same.
    aws.ok("update-ca-certificate", "--certificate-id", ca_id, "--new-status", "ACTIVE",
           "--new-auto-registration-status", "DISABLE")
    assert mosquitto_pub_cert(server, newcomer.cert, newcomer.key, unique("n"),
                              "n/t").returncode != 0
    aws.fail("ResourceNotFoundException", "DescribeCertificate", "describe-certificate",
             "--certificate-id", newcomer.id)


def test_live_client_kicked_by_update_certificate(server, aws, tmp_path, listener):
    ca = make_ca(tmp_path)
    ca_id = register_ca(tmp_path, aws, ca, "--set-as-active")
    device = sign(tmp_path, ca, "/CN=kicked-device")
    aws.ok("register-certificate", "--certificate-pem", f"file://{device.cert}",
           "--ca-certificate-pem", f"file://{ca.cert}", "--status", "ACTIVE")
    aws.ok("attach-policy", "--policy-name", allow_all_policy(aws), "--target", device.arn)
    client = MqttClient(server, device.cert, device.key).connect()
    try:
        aws.ok("update-certificate", "--certificate-id", device.id, "--new-status", "INACTIVE")
        deadline = time.monotonic() + 3
        while client.connected and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not client.connected, client.state()
    finally:
        client.close()
    assert mosquitto_pub_cert(server, device.cert, device.key, unique("k"), "k/t").returncode != 0
    assert aws.ok("list-certificates-by-ca", "--ca-certificate-id", ca_id)["certificates"][0][
        "status"] == "INACTIVE"
