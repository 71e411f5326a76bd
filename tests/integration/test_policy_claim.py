"""The default claim policy (fixtures/policies/iotmock-claim-policy.json, attached to the claim
certificate on the first start; shared/spec/provisioning.md §1.2, broker-and-policy.md §2.7 E1):
the claim certificate connects with any client id and makes exactly the provisioning calls of
template fleet-default — CreateKeysAndCertificate, CreateCertificateFromCsr, RegisterThing with
fleet-default, each answered — and nothing else: RegisterThing on another (existing) template's
topic, and any other publish or subscribe, is refused (MQTT 5: 0x87 for each, connection kept;
MQTT 3.1.1: connection closed), each refusal logged as "no statement allowed it" by the claim
policy.

The server runs without the wider test policy the other modules attach to the claim
certificate (grant_test_policy=False)."""

import json
import urllib.parse

import pytest

from iotmock_support import (CLAIM_POLICY, FLEET_DEFAULT, PLAIN_TOPIC_PREFIX, PROTOCOLS,
                             REGISTER_ACCEPTED_FIELDS, MQTTv311, MQTTv5,
                             NOT_AUTHORIZED_V5, ServerLog,
                             assert_policy_refusal, cert_id, claim_round_trip, control_ok,
                             create_from_csr, create_keys, expect_accepted, iot_arn, make_csr,
                             provision_topic, register_thing, simple_template_body, unique)

OTHER_TEMPLATE = "other-template"


@pytest.fixture(scope="module")
def server(module_server_factory):
    srv = module_server_factory(name="claim-default", grant_test_policy=False)
    control_ok(srv, "POST", "/provisioning-templates", {
        "templateName": OTHER_TEMPLATE, "enabled": True,
        "templateBody": json.dumps(simple_template_body("other-")),
        "provisioningRoleArn": "arn:aws:iam::123456789012:role/iotmock-provisioning"})
    return srv


@pytest.fixture(scope="module")
def claim_id(server):
    return cert_id(server.claim_cert.read_text())


def claim(server, clients, protocol, client_id=None):
    return clients.connect(server, (server.claim_cert, server.claim_key), protocol=protocol,
                           client_id=client_id or unique("claim"))


def test_only_the_claim_policy_is_attached(server, claim_id):
    """The premise of this module: nothing but the default claim policy applies."""
    target = urllib.parse.quote(iot_arn(f"cert/{claim_id}"), safe="")
    reply = control_ok(server, "POST", f"/attached-policies/{target}")
    assert [p["policyName"] for p in reply["policies"]] == [CLAIM_POLICY]


@pytest.mark.parametrize("protocol", list(PROTOCOLS.values()), ids=list(PROTOCOLS))
@pytest.mark.parametrize("client_id", ["anything", "1", "dev:with:colons", "a/b/c", "x" * 128],
                         ids=["word", "digit", "colons", "slashes", "128-chars"])
def test_claim_connects_with_any_client_id(server, clients, protocol, client_id):
    log = ServerLog(server)
    c = claim(server, clients, protocol, client_id)
    claim_round_trip(c)
    log.assert_no_refusal(client_id)


@pytest.mark.parametrize("protocol", list(PROTOCOLS.values()), ids=list(PROTOCOLS))
def test_claim_makes_the_fleet_default_calls(server, clients, tmp_path, protocol):
    c = claim(server, clients, protocol)
    log = ServerLog(server)
    keys = create_keys(c)
    _, csr = make_csr(tmp_path, "p256", subject="/CN=claim-policy-test")
    create_from_csr(c, csr)
    serial = unique("serial")
    which, body = register_thing(c, FLEET_DEFAULT, keys["certificateOwnershipToken"],
                                 {"SerialNumber": serial})
    expect_accepted(which, body, REGISTER_ACCEPTED_FIELDS)
    assert body["thingName"] == serial
    assert not c.closed
    log.assert_no_refusal(c.client_id)


def test_mqtt5_other_template_refused(server, clients, claim_id):
    c = claim(server, clients, MQTTv5)
    keys = create_keys(c)
    topic = provision_topic(OTHER_TEMPLATE)
    log = ServerLog(server)
    assert c.subscribe_result(topic + "/accepted", topic + "/rejected") == \
        [NOT_AUTHORIZED_V5, NOT_AUTHORIZED_V5]
    payload = json.dumps({"certificateOwnershipToken": keys["certificateOwnershipToken"],
                          "parameters": {"SerialNumber": unique("s")}})
    assert c.publish_result(topic, payload) == NOT_AUTHORIZED_V5
    assert not c.closed
    subs = log.refusals(c.client_id, "iot:Subscribe")
    assert sorted(r.decision()["resource"] for r in subs) == [
        iot_arn(f"topicfilter/{topic}/accepted"), iot_arn(f"topicfilter/{topic}/rejected")]
    for r in subs:
        assert_policy_refusal(r, action="iot:Subscribe", client=c.client_id, cert=claim_id,
                              resource=r.decision()["resource"], policies=[CLAIM_POLICY])
    assert_policy_refusal(log.wait_refusal(c.client_id, "iot:Publish"), action="iot:Publish",
                          client=c.client_id, cert=claim_id, resource=iot_arn(f"topic/{topic}"),
                          policies=[CLAIM_POLICY])
    # The token was not consumed by the refused request: fleet-default still accepts it.
    which, body = register_thing(c, FLEET_DEFAULT, keys["certificateOwnershipToken"],
                                 {"SerialNumber": unique("serial")})
    expect_accepted(which, body, REGISTER_ACCEPTED_FIELDS)


def other_topics(u):
    """Publish targets and subscribe filters outside the claim policy."""
    publish = [f"plain/{u}", f"{PLAIN_TOPIC_PREFIX}/{u}", f"$aws/things/{u}/shadow/update",
               f"$aws/things/{u}/jobs/get", f"$aws/rules/{u}rule/x"]
    subscribe = ["#", f"plain/{u}", f"$aws/things/{u}/shadow/update/accepted",
                 "$aws/certificates/#",
                 "$aws/provisioning-templates/+/provision/json/accepted",
                 f"$aws/things/{u}/jobs/notify"]
    return publish, subscribe


def test_mqtt5_nothing_else(server, clients, claim_id):
    c = claim(server, clients, MQTTv5)
    publish, subscribe = other_topics(unique("o").replace("-", ""))
    log = ServerLog(server)
    assert c.subscribe_result(*subscribe) == [NOT_AUTHORIZED_V5] * len(subscribe)
    for t in publish:
        assert c.publish_result(t, b"{}") == NOT_AUTHORIZED_V5, t
    assert not c.closed
    claim_round_trip(c)  # still connected and still allowed its own calls
    expected = sorted([iot_arn(f"topicfilter/{f}") for f in subscribe] +
                      [iot_arn(f"topic/{t}") for t in publish])
    refusals = log.refusals(c.client_id)
    assert sorted(r.decision()["resource"] for r in refusals) == expected
    for r in refusals:
        d = r.decision()
        assert_policy_refusal(r, action=d["action"], client=c.client_id, cert=claim_id,
                              resource=d["resource"], policies=[CLAIM_POLICY])


@pytest.mark.parametrize("what", ["publish-plain", "publish-other-template", "subscribe-all",
                                  "subscribe-other-template"])
def test_mqtt311_nothing_else_closes(server, clients, claim_id, what):
    c = claim(server, clients, MQTTv311)
    topic = {"publish-plain": f"plain/{unique('p')}",
             "publish-other-template": provision_topic(OTHER_TEMPLATE),
             "subscribe-all": "#",
             "subscribe-other-template": provision_topic(OTHER_TEMPLATE) + "/accepted"}[what]
    log = ServerLog(server)
    if what.startswith("publish"):
        assert c.publish_result(topic, b"{}") is None, "3.1.1 got a PUBACK"
        action, resource = "iot:Publish", iot_arn(f"topic/{topic}")
    else:
        assert c.subscribe_result(topic) is None, "3.1.1 got a SUBACK"
        action, resource = "iot:Subscribe", iot_arn(f"topicfilter/{topic}")
    assert c.wait_closed(), c.state()
    assert_policy_refusal(log.wait_refusal(c.client_id, action), action=action,
                          client=c.client_id, cert=claim_id, resource=resource,
                          policies=[CLAIM_POLICY])
