"""Pre-provisioning hooks (shared/spec/provisioning.md §2.9): RegisterThing on a template with a
preProvisioningHook invokes the function through the Lambda Invoke API at --lambda-endpoint with
the documented event, applies parameterOverrides, and turns deny / error / timeout (5 s) into 403
AccessDenied with nothing provisioned."""

import time

import pytest

from iotmock_support import (ALLOW_ALL_POLICY, PROTOCOLS, REGISTER_ACCEPTED_FIELDS,
                             assert_broker_serves, assert_cannot_connect, cert_der, cert_id,
                             create_keys, expect_accepted, expect_rejected, free_port,
                             provision_topic, register_thing, round_trip, simple_template_body,
                             template_arn, unique, write_credentials, write_template)

pytestmark = pytest.mark.usefixtures("broker_still_serves")

HOOKED, FN = "hooked", "fp-hook"
UNHOOKED = "unhooked"
MISSING_FN_TEMPLATE = "hooked-missing"
EVENT_FIELDS = {"claimCertificateId", "certificateId", "certificatePem", "templateArn",
                "clientId", "parameters"}

HOOKED_BODY = {
    "Parameters": {"SerialNumber": {"Type": "String"},
                   "DeviceLocation": {"Type": "String", "Default": "nowhere"}},
    "Resources": {
        "thing": {"Type": "AWS::IoT::Thing", "Properties": {
            "ThingName": {"Fn::Join": ["", ["hk-", {"Ref": "SerialNumber"}]]}}},
        "certificate": {"Type": "AWS::IoT::Certificate", "Properties": {
            "CertificateId": {"Ref": "AWS::IoT::Certificate::Id"}, "Status": "ACTIVE"}},
        "policy": {"Type": "AWS::IoT::Policy", "Properties": {"PolicyDocument": ALLOW_ALL_POLICY}},
    },
    "DeviceConfiguration": {"Serial": {"Ref": "SerialNumber"},
                            "Location": {"Ref": "DeviceLocation"}},
}


def write_hook_templates(directory):
    write_template(directory, HOOKED, HOOKED_BODY, hook_function=FN)
    write_template(directory, UNHOOKED, simple_template_body("uh-", {"Hooked": "no"}))
    write_template(directory, MISSING_FN_TEMPLATE, simple_template_body("mf-"),
                   hook_function="no-such-function")


@pytest.fixture(scope="module")
def server(module_server_factory, fake_lambda, tmp_path_factory):
    templates = tmp_path_factory.mktemp("templates")
    write_hook_templates(templates)
    return module_server_factory("--templates-dir", templates, "--lambda-endpoint",
                                 fake_lambda.url, name="hook")


@pytest.fixture(autouse=True)
def fresh_lambda(fake_lambda):
    fake_lambda.clear()
    yield fake_lambda


def assert_pending(server, tmp_path, keys):
    cert, key = write_credentials(tmp_path, unique("pending"), keys["certificatePem"],
                                  keys["privateKey"])
    assert_cannot_connect(server, cert, key)


@pytest.mark.parametrize("protocol", list(PROTOCOLS.values()), ids=list(PROTOCOLS))
def test_allow_event_is_exact_and_device_connects(server, mqtt, fake_lambda, tmp_path, protocol):
    fake_lambda.allow(FN)
    client_id = unique("hook-client")
    claim = mqtt.claim(client_id=client_id, protocol=protocol)
    keys = create_keys(claim)
    serial = unique("allow")
    params = {"SerialNumber": serial, "DeviceLocation": "Seattle"}
    which, body = register_thing(claim, HOOKED, keys["certificateOwnershipToken"], params)
    expect_accepted(which, body, REGISTER_ACCEPTED_FIELDS)
    assert body == {"thingName": f"hk-{serial}",
                    "deviceConfiguration": {"Serial": serial, "Location": "Seattle"}}

    calls = fake_lambda.calls()
    assert len(calls) == 1, [c.path for c in calls]
    call = calls[0]
    assert call.path == f"/2015-03-31/functions/{FN}/invocations"
    event = call.event
    assert isinstance(event, dict), call.raw[:200]
    assert set(event) == EVENT_FIELDS
    assert event["claimCertificateId"] == cert_id(server.claim_cert.read_text())
    assert event["certificateId"] == keys["certificateId"]
    assert isinstance(event["certificatePem"], str)
    assert cert_der(event["certificatePem"]) == cert_der(keys["certificatePem"])
    assert event["templateArn"] == template_arn(HOOKED)
    assert event["clientId"] == client_id
    assert event["parameters"] == params

    cert, key = write_credentials(tmp_path, f"hk-{serial}", keys["certificatePem"],
                                  keys["privateKey"])
    device = mqtt(cert, key, protocol=protocol, client_id=f"hk-{serial}")
    round_trip(device, f"devices/hk-{serial}/hello")


def test_parameter_overrides_are_applied(mqtt, fake_lambda):
    overridden = unique("over")
    fake_lambda.allow(FN, overrides={"SerialNumber": overridden, "DeviceLocation": "Tacoma"})
    claim = mqtt.claim()
    keys = create_keys(claim)
    requested = unique("asked")
    which, body = register_thing(claim, HOOKED, keys["certificateOwnershipToken"],
                                 {"SerialNumber": requested})
    expect_accepted(which, body, REGISTER_ACCEPTED_FIELDS)
    assert body == {"thingName": f"hk-{overridden}",
                    "deviceConfiguration": {"Serial": overridden, "Location": "Tacoma"}}
    calls = fake_lambda.calls(FN)
    assert len(calls) == 1
    assert calls[0].event["parameters"] == {"SerialNumber": requested}, \
        "the event carries the device's parameters, not the overrides"


def test_deny(server, mqtt, fake_lambda, tmp_path):
    fake_lambda.deny(FN)
    claim = mqtt.claim()
    keys = create_keys(claim)
    which, body = register_thing(claim, HOOKED, keys["certificateOwnershipToken"],
                                 {"SerialNumber": unique("deny")}, settle=0.3)
    expect_rejected(which, body, 403, "AccessDenied")
    assert len(fake_lambda.calls(FN)) == 1
    assert claim.connected
    assert_pending(server, tmp_path, keys)


@pytest.mark.parametrize("status,payload", [
    (500, {"errorMessage": "internal failure", "errorType": "ServiceException"}),
    (200, b"this is not json"),
    (200, {"parameterOverrides": {"SerialNumber": "x"}}),
], ids=["http-500", "body-not-json", "allow-missing"])
def test_hook_error_is_access_denied(server, mqtt, fake_lambda, tmp_path, status, payload):
    fake_lambda.respond(FN, status, payload)
    claim = mqtt.claim()
    keys = create_keys(claim)
    which, body = register_thing(claim, HOOKED, keys["certificateOwnershipToken"],
                                 {"SerialNumber": unique("err")}, settle=0.3)
    expect_rejected(which, body, 403, "AccessDenied")
    assert len(fake_lambda.calls(FN)) == 1
    assert_pending(server, tmp_path, keys)


def test_unknown_function_is_access_denied(server, mqtt, fake_lambda, tmp_path):
    """The endpoint answers 404 ResourceNotFoundException like Lambda for a missing function."""
    claim = mqtt.claim()
    keys = create_keys(claim)
    which, body = register_thing(claim, MISSING_FN_TEMPLATE, keys["certificateOwnershipToken"],
                                 {"SerialNumber": unique("nofn")})
    expect_rejected(which, body, 403, "AccessDenied")
    assert [c.function for c in fake_lambda.calls()] == ["no-such-function"]
    assert_pending(server, tmp_path, keys)


def test_slow_hook_times_out_after_5_seconds(server, mqtt, fake_lambda, tmp_path):
    fake_lambda.allow(FN, delay=6.0)  # would allow, but too late
    claim = mqtt.claim()
    keys = create_keys(claim)
    claim.subscribe(provision_topic(HOOKED) + "/accepted", provision_topic(HOOKED) + "/rejected")
    started = time.monotonic()
    which, body = register_thing(claim, HOOKED, keys["certificateOwnershipToken"],
                                 {"SerialNumber": unique("slow")}, timeout=12, subscribe=False)
    elapsed = time.monotonic() - started
    expect_rejected(which, body, 403, "AccessDenied")
    assert 4.5 <= elapsed <= 7.5, f"rejection after {elapsed:.1f} s, expected ~5 s"
    # The late "allow" (at 6 s) must not provision anything.
    time.sleep(max(0.0, started + 6.8 - time.monotonic()))
    assert claim.messages(provision_topic(HOOKED) + "/accepted") == []
    assert_pending(server, tmp_path, keys)


def test_requester_leaving_during_a_slow_hook(server, mqtt, fake_lambda):
    fake_lambda.allow(FN, delay=2.0)
    claim = mqtt.claim()
    keys = create_keys(claim)
    claim.subscribe(provision_topic(HOOKED) + "/accepted", provision_topic(HOOKED) + "/rejected")
    claim.publish(provision_topic(HOOKED), {"certificateOwnershipToken":
                                            keys["certificateOwnershipToken"],
                                            "parameters": {"SerialNumber": unique("gone")}})
    claim.close()
    time.sleep(2.5)  # the answer is produced for a client that is gone
    assert_broker_serves(server)


def test_template_without_hook_does_not_call_lambda(mqtt, fake_lambda):
    fake_lambda.deny(FN)  # would fail the test if it were consulted
    claim = mqtt.claim()
    keys = create_keys(claim)
    serial = unique("nohook")
    which, body = register_thing(claim, UNHOOKED, keys["certificateOwnershipToken"],
                                 {"SerialNumber": serial})
    expect_accepted(which, body, REGISTER_ACCEPTED_FIELDS)
    assert body == {"thingName": f"uh-{serial}", "deviceConfiguration": {"Hooked": "no"}}
    assert fake_lambda.calls() == []


def test_unreachable_lambda_endpoint_is_access_denied(server_factory, mqtt, tmp_path):
    templates = tmp_path / "templates"
    write_hook_templates(templates)
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    other = server_factory("--templates-dir", templates, "--lambda-endpoint", closed,
                           name="hook-unreachable")
    claim = mqtt.claim(srv=other)
    keys = create_keys(claim)
    started = time.monotonic()
    which, body = register_thing(claim, HOOKED, keys["certificateOwnershipToken"],
                                 {"SerialNumber": unique("unreach")})
    expect_rejected(which, body, 403, "AccessDenied")
    assert time.monotonic() - started < 5.5
    assert_pending(other, tmp_path, keys)
