"""An explicit Deny beats an Allow (shared/spec/broker-and-policy.md §2.6, §8.4 item 10): with
one policy allowing everything and another denying some resources attached to the same
certificate, in either order, Connect, Publish and Subscribe on a denied resource are refused on
the wire (MQTT 5: CONNACK / PUBACK / SUBACK 0x87, connection kept after PUBACK/SUBACK; MQTT 3.1.1:
closed without an answer) and the log names the deciding Deny statement and its Sid."""

import pytest

from iotmock_support import (PROTOCOLS, MQTTv5, NOT_AUTHORIZED_V5, ServerLog, allow,
                             assert_policy_refusal, create_device, create_policy, deny, iot_arn,
                             policy_document, unique)


@pytest.fixture(scope="module")
def deny_setup(server, tmp_path_factory):
    allow_all = create_policy(server, policy_document(allow("iot:*", "*")))
    denials = create_policy(server, policy_document(
        deny("iot:Publish", "topic/deny/*", sid="NoPublish"),
        deny("iot:Connect", "client/blocked-*", sid="NoConnect"),
        deny("iot:Subscribe", "topicfilter/deny/*", sid="NoSubscribe")))
    d = tmp_path_factory.mktemp("deny")
    return {"allow-first": create_device(server, d, allow_all, denials),
            "deny-first": create_device(server, d, denials, allow_all),
            "policies": [allow_all, denials], "deny": denials}


def expect_refused(c, rc, what):
    if c.protocol == MQTTv5:
        assert rc == NOT_AUTHORIZED_V5 or rc == [NOT_AUTHORIZED_V5], f"{what}: {rc}"
        assert not c.closed, c.state()
    else:
        assert rc is None, f"3.1.1 {what} answered {rc}"
        assert c.wait_closed(), c.state()


@pytest.mark.parametrize("protocol", list(PROTOCOLS.values()), ids=list(PROTOCOLS))
@pytest.mark.parametrize("order", ["allow-first", "deny-first"])
@pytest.mark.parametrize("action", ["iot:Connect", "iot:Publish", "iot:Subscribe"])
def test_explicit_deny_beats_allow(server, clients, deny_setup, protocol, order, action):
    device = deny_setup[order]
    u = unique("d")
    log = ServerLog(server)
    if action == "iot:Connect":
        client_id = f"blocked-{u}"
        c = clients.new(server, device, protocol=protocol, client_id=client_id)
        res = c.try_connect()
        assert not res.ok
        if protocol == MQTTv5:
            assert res.connack_rc == NOT_AUTHORIZED_V5, res
        else:
            assert (res.connack_rc, res.error) == (None, "connection closed before CONNACK"), res
        resource, statement = iot_arn(f"client/{client_id}"), 1
    else:
        c = clients.connect(server, device, protocol=protocol, client_id=unique("deny"))
        client_id = c.client_id
        # The Allow really allows everything else.
        assert c.subscribe_result(f"fine/{u}") == [1]
        assert c.publish_result(f"fine/{u}") == 0
        if action == "iot:Publish":
            expect_refused(c, c.publish_result(f"deny/{u}"), "publish")
            resource, statement = iot_arn(f"topic/deny/{u}"), 0
        else:
            expect_refused(c, c.subscribe_result(f"deny/{u}"), "subscribe")
            resource, statement = iot_arn(f"topicfilter/deny/{u}"), 2
    r = log.wait_refusal(client_id, action)
    d = assert_policy_refusal(r, action=action, client=client_id, cert=device.cert_id,
                              resource=resource, policies=deny_setup["policies"],
                              denied_by=(deny_setup["deny"], statement))
    assert d["sid"] == {0: "NoPublish", 1: "NoConnect", 2: "NoSubscribe"}[statement], r.line
