"""RegisterThing over MQTT (shared/spec/provisioning.md §1.5, §1.6, §1.8, §2): provisioning through
the shipped template fleet-default and through templates loaded with --templates-dir, then the
device connects with its new certificate; every rejection the contract names."""

import pytest

from iotmock_support import (DEVICE_POLICY, EMPTY_TOKEN_MESSAGE, FLEET_DEFAULT, METRICS_USERNAME,
                             MQTTv311, MQTTv5, PROTOCOLS, REGISTER_ACCEPTED_FIELDS,
                             assert_cannot_connect, create_from_csr, create_keys, expect_accepted,
                             expect_rejected, expected_device_configuration, fleet_default_body,
                             make_csr, provision_request, provision_topic, register_thing,
                             round_trip, simple_template_body, unique, write_credentials,
                             write_template)

pytestmark = pytest.mark.usefixtures("broker_still_serves")

CUSTOM = "tb-custom"
DISABLED = "tb-disabled"
ENABLED_ABSENT = "tb-enabled-absent"

CUSTOM_BODY = {
    "Parameters": {
        "SerialNumber": {"Type": "String"},
        "Location": {"Type": "String", "Default": "lab"},
    },
    "Resources": {
        "thing": {"Type": "AWS::IoT::Thing", "Properties": {
            "ThingName": {"Fn::Join": ["-", ["tb", {"Ref": "SerialNumber"}]]},
            "AttributePayload": {"serialNumber": {"Ref": "SerialNumber"},
                                 "location": {"Ref": "Location"}}}},
        "certificate": {"Type": "AWS::IoT::Certificate", "Properties": {
            "CertificateId": {"Ref": "AWS::IoT::Certificate::Id"}, "Status": "ACTIVE"}},
        "policy": {"Type": "AWS::IoT::Policy", "Properties": {"PolicyName": DEVICE_POLICY}},
    },
    "DeviceConfiguration": {
        "Greeting": "hello",
        "Location": {"Ref": "Location"},
        "Serial": {"Fn::Join": ["", ["sn-", {"Ref": "SerialNumber"}]]},
        "CertificateId": {"Ref": "AWS::IoT::Certificate::Id"},
    },
}


@pytest.fixture(scope="module")
def server(module_server_factory, tmp_path_factory):
    templates = tmp_path_factory.mktemp("templates")
    write_template(templates, CUSTOM, CUSTOM_BODY)
    write_template(templates, DISABLED, simple_template_body("dis-"), enabled=False)
    write_template(templates, ENABLED_ABSENT, simple_template_body("abs-"), enabled=None)
    return module_server_factory("--templates-dir", templates, name="register")


def connect_device_and_publish(mqtt, tmp_path, thing, cert_pem, key_pem, protocol):
    """The new certificate connects (metrics-style username, client id = thing name) and a QoS 1
    publish to devices/<thing>/hello is acknowledged and delivered back to its own
    subscription."""
    cert, key = write_credentials(tmp_path, thing, cert_pem, key_pem)
    device = mqtt(cert, key, protocol=protocol, client_id=thing, username=METRICS_USERNAME)
    round_trip(device, f"devices/{thing}/hello")
    return device


@pytest.mark.parametrize("protocol", list(PROTOCOLS.values()), ids=list(PROTOCOLS))
def test_fleet_default_provisions_and_device_connects(mqtt, tmp_path, protocol):
    claim = mqtt.claim(protocol=protocol)
    keys = create_keys(claim)
    serial = unique("sn")
    which, body = register_thing(claim, FLEET_DEFAULT, keys["certificateOwnershipToken"],
                                 {"SerialNumber": serial}, settle=0.3)
    expect_accepted(which, body, REGISTER_ACCEPTED_FIELDS)
    assert body["thingName"] == serial
    assert body["deviceConfiguration"] == expected_device_configuration(
        fleet_default_body(), {"SerialNumber": serial}, keys["certificateId"])
    assert claim.messages(provision_topic(FLEET_DEFAULT) + "/rejected") == []
    connect_device_and_publish(mqtt, tmp_path, serial, keys["certificatePem"],
                               keys["privateKey"], protocol)
    assert claim.connected, "the claim session is not closed by provisioning"


def test_csr_certificate_provisions_and_connects_with_csr_key(mqtt, tmp_path):
    key_path, csr_pem = make_csr(tmp_path, "p256", "/CN=csr-device")
    claim = mqtt.claim(protocol=MQTTv5)
    issued = create_from_csr(claim, csr_pem)
    serial = unique("csr")
    which, body = register_thing(claim, FLEET_DEFAULT, issued["certificateOwnershipToken"],
                                 {"SerialNumber": serial})
    expect_accepted(which, body, REGISTER_ACCEPTED_FIELDS)
    assert body["thingName"] == serial
    connect_device_and_publish(mqtt, tmp_path, serial, issued["certificatePem"],
                               key_path.read_text(), MQTTv5)


@pytest.mark.parametrize("location", [None, "Seattle"], ids=["default", "given"])
def test_template_from_templates_dir_evaluates_device_configuration(mqtt, tmp_path, location):
    claim = mqtt.claim()
    keys = create_keys(claim)
    serial = unique("c")
    params = {"SerialNumber": serial}
    if location:
        params["Location"] = location
    which, body = register_thing(claim, CUSTOM, keys["certificateOwnershipToken"], params)
    expect_accepted(which, body, REGISTER_ACCEPTED_FIELDS)
    assert body == {
        "thingName": f"tb-{serial}",
        "deviceConfiguration": {"Greeting": "hello", "Location": location or "lab",
                                "Serial": f"sn-{serial}", "CertificateId": keys["certificateId"]},
    }
    connect_device_and_publish(mqtt, tmp_path, f"tb-{serial}", keys["certificatePem"],
                               keys["privateKey"], MQTTv311)


def test_unknown_fields_in_request_are_ignored(mqtt):
    """The legacy JS API sends templateName inside the body (shared/spec/clients.md §1)."""
    claim = mqtt.claim()
    keys = create_keys(claim)
    serial = unique("legacy")
    which, body = provision_request(claim, provision_topic(FLEET_DEFAULT), {
        "certificateOwnershipToken": keys["certificateOwnershipToken"],
        "parameters": {"SerialNumber": serial}, "templateName": FLEET_DEFAULT})
    expect_accepted(which, body, REGISTER_ACCEPTED_FIELDS)
    assert body["thingName"] == serial


def test_token_is_not_bound_to_the_requesting_connection(mqtt, tmp_path):
    first = mqtt.claim(client_id=unique("issuer"))
    keys = create_keys(first)
    first.close()
    second = mqtt.claim(client_id=unique("registrar"), protocol=MQTTv5)
    serial = unique("moved")
    which, body = register_thing(second, FLEET_DEFAULT, keys["certificateOwnershipToken"],
                                 {"SerialNumber": serial})
    expect_accepted(which, body, REGISTER_ACCEPTED_FIELDS)
    assert body["thingName"] == serial
    connect_device_and_publish(mqtt, tmp_path, serial, keys["certificatePem"],
                               keys["privateKey"], MQTTv311)


# ---- rejections ------------------------------------------------------------------------------

@pytest.mark.parametrize("omit", [False, True], ids=["empty-string", "missing"])
def test_empty_or_missing_token(server, mqtt, tmp_path, omit):
    claim = mqtt.claim()
    keys = create_keys(claim)  # a pending certificate that must stay pending
    which, body = register_thing(claim, FLEET_DEFAULT, "", {"SerialNumber": unique("e")},
                                 omit_token=omit, settle=0.3)
    expect_rejected(which, body, 400, "InvalidCertificateOwnershipToken", EMPTY_TOKEN_MESSAGE)
    assert claim.connected
    cert, key = write_credentials(tmp_path, "pending", keys["certificatePem"], keys["privateKey"])
    assert_cannot_connect(server, cert, key)


@pytest.mark.parametrize("kind", ["unknown", "garbled"])
def test_unknown_or_garbled_token(server, mqtt, tmp_path, kind):
    claim = mqtt.claim()
    keys = create_keys(claim)
    real = keys["certificateOwnershipToken"]
    if kind == "unknown":
        token = "not-a-real-certificate-ownership-token"
    else:  # same length, one character in the middle changed (not the last one: in base64
        # text its low bits may be padding that decodes to the same bytes)
        mid = len(real) // 2
        token = real[:mid] + ("x" if real[mid] != "x" else "y") + real[mid + 1:]
    which, body = register_thing(claim, FLEET_DEFAULT, token, {"SerialNumber": unique("g")},
                                 settle=0.3)
    expect_rejected(which, body, 400, "InvalidCertificateOwnershipToken")
    assert body["errorMessage"] != EMPTY_TOKEN_MESSAGE
    cert, key = write_credentials(tmp_path, "pending", keys["certificatePem"], keys["privateKey"])
    assert_cannot_connect(server, cert, key)


@pytest.mark.parametrize("parameters", [{}, None, {"Other": "x"}],
                         ids=["empty-object", "absent", "only-other-parameter"])
def test_missing_template_parameter(server, mqtt, tmp_path, parameters):
    claim = mqtt.claim()
    keys = create_keys(claim)
    which, body = register_thing(claim, FLEET_DEFAULT, keys["certificateOwnershipToken"],
                                 parameters, settle=0.3)
    expect_rejected(which, body, 400, "InvalidParameters")
    cert, key = write_credentials(tmp_path, "pending", keys["certificatePem"], keys["privateKey"])
    assert_cannot_connect(server, cert, key)


def test_unknown_template(server, mqtt, tmp_path):
    claim = mqtt.claim()
    keys = create_keys(claim)
    which, body = register_thing(claim, "no-such-template", keys["certificateOwnershipToken"],
                                 {"SerialNumber": unique("u")}, settle=0.3)
    expect_rejected(which, body, 404, "ResourceNotFound")
    cert, key = write_credentials(tmp_path, "pending", keys["certificatePem"], keys["privateKey"])
    assert_cannot_connect(server, cert, key)


@pytest.mark.parametrize("template", [DISABLED, ENABLED_ABSENT],
                         ids=["enabled-false", "enabled-absent"])
def test_disabled_template(server, mqtt, tmp_path, template):
    claim = mqtt.claim()
    keys = create_keys(claim)
    which, body = register_thing(claim, template, keys["certificateOwnershipToken"],
                                 {"SerialNumber": unique("d")}, settle=0.3)
    expect_rejected(which, body, 403, "AccessDenied")
    cert, key = write_credentials(tmp_path, "pending", keys["certificatePem"], keys["privateKey"])
    assert_cannot_connect(server, cert, key)


@pytest.mark.parametrize("payload_fn", [
    lambda tok: b'{"certificateOwnershipToken": "' + tok.encode() + b'", "parameters": {',
    lambda tok: b"not json at all",
    lambda tok: b"[]",
    lambda tok: {"certificateOwnershipToken": tok, "parameters": "SerialNumber=1"},
    lambda tok: {"certificateOwnershipToken": tok, "parameters": ["SerialNumber"]},
    lambda tok: {"certificateOwnershipToken": tok, "parameters": {"SerialNumber": 5}},
    lambda tok: {"certificateOwnershipToken": tok, "parameters": {"SerialNumber": {"a": "b"}}},
    lambda tok: {"certificateOwnershipToken": tok, "parameters": {"SerialNumber": None}},
    lambda tok: {"certificateOwnershipToken": tok, "parameters": {"SerialNumber": True}},
], ids=["truncated-json", "text", "json-array", "parameters-string", "parameters-array",
        "value-number", "value-object", "value-null", "value-bool"])
def test_malformed_or_wrongly_typed_request(server, mqtt, tmp_path, payload_fn):
    claim = mqtt.claim()
    keys = create_keys(claim)
    payload = payload_fn(keys["certificateOwnershipToken"])
    which, body = provision_request(claim, provision_topic(FLEET_DEFAULT), payload, settle=0.3)
    expect_rejected(which, body, 400, "InvalidPayload")
    assert claim.connected
    cert, key = write_credentials(tmp_path, "pending", keys["certificatePem"], keys["privateKey"])
    assert_cannot_connect(server, cert, key)
