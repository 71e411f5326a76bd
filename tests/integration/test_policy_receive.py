"""iot:Receive on the wire (shared/spec/broker-and-policy.md §2.2, §3.4, §2.7 E5): checked on
topic/<name> at every delivery. A subscriber allowed to subscribe but not to receive gets a
granted SUBACK and then nothing on that topic, and stays connected (both MQTT versions); the
refusal is logged (no statement allowed it / the deciding Deny)."""

import pytest

from iotmock_support import (PROTOCOLS, PUBACK_OK, MQTTv5, ServerLog, allow,
                             assert_policy_refusal, create_device, create_policy, deny, iot_arn,
                             policy_document, unique)


@pytest.fixture(scope="module")
def devices(server, tmp_path_factory):
    d = tmp_path_factory.mktemp("rcv")
    base = [allow("iot:Connect", "client/*"), allow("iot:Subscribe", "topicfilter/rcv/*")]
    implicit = create_policy(server, policy_document(
        *base, allow("iot:Receive", "topic/rcv/yes/*")))
    explicit = create_policy(server, policy_document(
        *base, allow("iot:Receive", "topic/rcv/*"), deny("iot:Receive", "topic/rcv/no/*")))
    publisher = create_policy(server, policy_document(
        allow("iot:Connect", "client/*"), allow("iot:Publish", "topic/rcv/*")))
    out = {"implicit": create_device(server, d, implicit),
           "explicit": create_device(server, d, explicit),
           "publisher": create_device(server, d, publisher)}
    out["implicit"].policy, out["explicit"].policy = implicit, explicit
    return out


@pytest.mark.parametrize("protocol", list(PROTOCOLS.values()), ids=list(PROTOCOLS))
@pytest.mark.parametrize("kind", ["implicit", "explicit"])
def test_subscribed_but_not_allowed_to_receive(server, clients, devices, protocol, kind):
    sub_device = devices[kind]
    sub = clients.connect(server, sub_device, protocol=protocol, client_id=unique("rcv"))
    pub = clients.connect(server, devices["publisher"], protocol=MQTTv5, client_id=unique("src"))
    u = unique("r")
    refused, allowed = f"rcv/no/{u}", f"rcv/yes/{u}"
    log = ServerLog(server)
    assert sub.subscribe_result(refused, allowed) == [1, 1], "Subscribe is allowed on both"
    assert pub.publish_result(refused, b"secret") == 0
    assert pub.publish_result(allowed, b"public") == 0
    m = sub.wait_message(allowed, 5)  # published after REFUSED: delivered after it, if at all
    assert m is not None and m.payload == b"public", sub.state()
    assert sub.messages(refused) == [], "message delivered without iot:Receive"
    assert not sub.closed and sub.connected, sub.state()
    assert sub.subscribe_result(f"rcv/still/{u}") == [1], "subscriber no longer usable"
    r = log.wait_refusal(sub.client_id, "iot:Receive")
    assert_policy_refusal(r, action="iot:Receive", client=sub.client_id,
                          cert=sub_device.cert_id, resource=iot_arn(f"topic/{refused}"),
                          policies=[sub_device.policy],
                          denied_by=(sub_device.policy, 3) if kind == "explicit" else None)
    log.assert_no_refusal(pub.client_id)


@pytest.mark.parametrize("protocol", list(PROTOCOLS.values()), ids=list(PROTOCOLS))
def test_fleet_answer_needs_receive_too(server, clients, tmp_path, protocol):
    """A fleet provisioning answer is a delivery like any other: without iot:Receive on its topic
    the requester does not get it (and stays connected), and the log says why."""
    create = "$aws/certificates/create/json"
    policy = create_policy(server, policy_document(
        allow("iot:Connect", "client/*"), allow("iot:Publish", f"topic/{create}"),
        allow("iot:Subscribe", f"topicfilter/{create}/*"),
        allow("iot:Receive", f"topic/{create}/rejected")))
    device = create_device(server, tmp_path, policy)
    c = clients.connect(server, device, protocol=protocol, client_id=unique("fleetrcv"))
    log = ServerLog(server)
    assert c.subscribe_result(f"{create}/accepted", f"{create}/rejected") == [1, 1]
    assert c.publish_result(create, b"{}") in PUBACK_OK
    r = log.wait_refusal(c.client_id, "iot:Receive")
    assert_policy_refusal(r, action="iot:Receive", client=c.client_id, cert=device.cert_id,
                          resource=iot_arn(f"topic/{create}/accepted"), policies=[policy],
                          denied_by=None)
    # The rejected topic is allowed: a bad request's answer arrives, after nothing else.
    assert c.publish_result(create, b"{not json") in PUBACK_OK
    m = c.wait_message(f"{create}/rejected", 10)
    assert m is not None, c.state()
    assert m.json() == {"statusCode": 400, "errorCode": "InvalidPayload",
                        "errorMessage": "Request payload is not valid JSON"}
    assert (m.qos, m.retain) == (1, False)
    assert [x.topic for x in c.messages()] == [f"{create}/rejected"]
    assert not c.closed and c.connected, c.state()
