"""Just-in-time provisioning (shared/spec/provisioning.md §3): a CA registered with a template in
its registrationConfig; a device certificate it signed provisions on its first connect from the
certificate subject's parameters (thing, policy, attachments, ACTIVE), that first connection is
refused (§3.2 item 5; `--jitp-first-connect accept` lets it in instead), and the second connect
publishes. A template that fails leaves the certificate PENDING_ACTIVATION (§3.2 item 6)."""

import json
import time

import pytest

from cp_support import PUB, Aws, new_device
from iotmock_support import MqttClient, unique
from jit_support import (REGISTERED_PREFIX, allow_all_policy, make_ca, mosquitto_pub_cert,
                         register_ca, sign)

pytestmark = [pytest.mark.usefixtures("broker_still_serves"),
              pytest.mark.skipif(PUB is None, reason="mosquitto_pub not installed")]

ROLE_ARN = "arn:aws:iam::123456789012:role/JITPRole"


def jitp_template(extra_parameter: str = "") -> dict:
    """The shape of AWS's JITP walkthrough template: thing named by the CN, its country as an
    attribute, an inline policy, the certificate ACTIVE."""
    params = {f"AWS::IoT::Certificate::{p}": {"Type": "String"}
              for p in ("CommonName", "Country", "Id")}
    if extra_parameter:
        params[f"AWS::IoT::Certificate::{extra_parameter}"] = {"Type": "String"}
    policy = {"Version": "2012-10-17",
              "Statement": [{"Effect": "Allow", "Action": "iot:*", "Resource": "*"}]}
    return {
        "Parameters": params,
        "Resources": {
            "thing": {"Type": "AWS::IoT::Thing", "Properties": {
                "ThingName": {"Ref": "AWS::IoT::Certificate::CommonName"},
                "AttributePayload": {"version": "v1",
                                     "country": {"Ref": "AWS::IoT::Certificate::Country"}}}},
            "certificate": {"Type": "AWS::IoT::Certificate", "Properties": {
                "CertificateId": {"Ref": "AWS::IoT::Certificate::Id"}, "Status": "ACTIVE"}},
            "policy": {"Type": "AWS::IoT::Policy",
                       "Properties": {"PolicyDocument": json.dumps(policy)}},
        },
    }


@pytest.fixture
def aws(server):
    return Aws(server)


def wait_status(aws: Aws, cert_id: str, status: str, timeout: float = 15.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        d = aws.ok("describe-certificate", "--certificate-id", cert_id)["certificateDescription"]
        if d["status"] == status or time.monotonic() > deadline:
            return d
        time.sleep(0.2)


def test_jitp_walkthrough_inline_template(server, aws, tmp_path):
    watcher = new_device(aws, tmp_path)
    aws.ok("attach-policy", "--policy-name", allow_all_policy(aws), "--target", watcher.arn)
    listener = MqttClient(server, watcher.cert, watcher.key).connect()
    listener.subscribe(REGISTERED_PREFIX + "#")

    ca = make_ca(tmp_path, "JITP walkthrough CA")
    config = {"templateBody": json.dumps(jitp_template()), "roleArn": ROLE_ARN}
    ca_id = register_ca(tmp_path, aws, ca, "--set-as-active", "--allow-auto-registration",
                        "--registration-config", json.dumps(config))
    described = aws.ok("describe-ca-certificate", "--certificate-id", ca_id)
    assert described["registrationConfig"] == config

    thing = unique("jitp-thing")
    device = sign(tmp_path, ca, f"/C=DE/O=iotmock/CN={thing}")
    first = mosquitto_pub_cert(server, device.cert, device.key, thing, f"jitp/{thing}")
    assert first.returncode != 0, "JITP's first connection must be refused (§3.2 item 5)"
    # The registration step is shared with JITR, so is its event (§3.2 item 7, iotmock's default).
    event = listener.wait_message(REGISTERED_PREFIX + ca_id, timeout=10)
    assert event is not None and event.json()["certificateId"] == device.id
    listener.close()

    d = wait_status(aws, device.id, "ACTIVE")
    assert d["status"] == "ACTIVE" and d["caCertificateId"] == ca_id
    t = aws.ok("describe-thing", "--thing-name", thing)
    assert t["attributes"] == {"version": "v1", "country": "DE"}
    assert aws.ok("list-thing-principals", "--thing-name", thing)["principals"] == [device.arn]
    policies = aws.ok("list-attached-policies", "--target", device.arn)["policies"]
    assert len(policies) == 1
    document = json.loads(aws.ok("get-policy", "--policy-name",
                                 policies[0]["policyName"])["policyDocument"])
    assert document["Statement"][0]["Action"] == "iot:*"

    second = mosquitto_pub_cert(server, device.cert, device.key, thing, f"jitp/{thing}")
    assert second.returncode == 0, second


def test_jitp_by_template_name_and_list_filter(server, aws, tmp_path):
    name = unique("jitp-tpl")
    aws.ok("create-provisioning-template", "--template-name", name, "--type", "JITP",
           "--provisioning-role-arn", ROLE_ARN, "--template-body", json.dumps(jitp_template()))
    ca = make_ca(tmp_path)
    ca_id = register_ca(tmp_path, aws, ca, "--set-as-active", "--allow-auto-registration",
                        "--registration-config", json.dumps({"templateName": name}))
    listed = aws.ok("list-ca-certificates", "--template-name", name)["certificates"]
    assert [c["certificateId"] for c in listed] == [ca_id]
    assert aws.ok("list-ca-certificates", "--template-name", unique("none"))["certificates"] == []

    thing = unique("named")
    device = sign(tmp_path, ca, f"/C=FR/CN={thing}")
    assert mosquitto_pub_cert(server, device.cert, device.key, thing, "t").returncode != 0
    assert wait_status(aws, device.id, "ACTIVE")["status"] == "ACTIVE"
    assert aws.ok("describe-thing", "--thing-name", thing)["attributes"]["country"] == "FR"
    assert mosquitto_pub_cert(server, device.cert, device.key, thing, "t").returncode == 0

    # removeAutoRegistration turns the CA back into a JITR one.
    aws.ok("update-ca-certificate", "--certificate-id", ca_id, "--remove-auto-registration")
    described = aws.ok("describe-ca-certificate", "--certificate-id", ca_id)
    assert described.get("registrationConfig") in (None, {})
    other = sign(tmp_path, ca, f"/C=FR/CN={unique('jitr-now')}")
    assert mosquitto_pub_cert(server, other.cert, other.key, unique("o"), "t").returncode != 0
    time.sleep(1.0)
    assert aws.ok("describe-certificate", "--certificate-id", other.id)[
        "certificateDescription"]["status"] == "PENDING_ACTIVATION"


def test_failed_template_leaves_certificate_pending(server, aws, tmp_path):
    ca = make_ca(tmp_path)
    config = {"templateBody": json.dumps(jitp_template("Organization")), "roleArn": ROLE_ARN}
    register_ca(tmp_path, aws, ca, "--set-as-active", "--allow-auto-registration",
                "--registration-config", json.dumps(config))
    thing = unique("no-org")
    device = sign(tmp_path, ca, f"/C=DE/CN={thing}")  # no O: the declared parameter is missing
    assert mosquitto_pub_cert(server, device.cert, device.key, thing, "t").returncode != 0
    time.sleep(2.0)
    assert aws.ok("describe-certificate", "--certificate-id", device.id)[
        "certificateDescription"]["status"] == "PENDING_ACTIVATION"
    aws.fail("ResourceNotFoundException", "DescribeThing", "describe-thing", "--thing-name", thing)
    assert mosquitto_pub_cert(server, device.cert, device.key, thing, "t").returncode != 0


def test_first_connection_accepted_when_asked(server_factory, tmp_path):
    srv = server_factory("--jitp-first-connect", "accept", name="jitp-accept")
    aws = Aws(srv)
    ca = make_ca(tmp_path)
    config = {"templateBody": json.dumps(jitp_template()), "roleArn": ROLE_ARN}
    register_ca(tmp_path, aws, ca, "--set-as-active", "--allow-auto-registration",
                "--registration-config", json.dumps(config))
    thing = unique("at-once")
    device = sign(tmp_path, ca, f"/C=DE/CN={thing}")
    first = mosquitto_pub_cert(srv, device.cert, device.key, thing, f"jitp/{thing}")
    assert first.returncode == 0, first
    assert aws.ok("describe-thing", "--thing-name", thing)["thingName"] == thing
