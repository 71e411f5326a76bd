"""`iotmock serve --friendly`: MQTT 3.1.1 clients get return codes for policy refusals instead of
the connection being closed (what AWS does, shared/spec/broker-and-policy.md §3.1-§3.3): CONNACK
rc 5 "not authorised", SUBACK 0x80 for a refused filter, and a refused QoS 1 PUBLISH is
acknowledged (3.1.1 has no failure code) but not routed. MQTT 5 is unchanged (0x87). Every
refusal is still logged."""

import pytest

from iotmock_support import (PROTOCOLS, MQTTv311, MQTTv5, NOT_AUTHORIZED_V5,
                             ServerLog, allow, assert_policy_refusal, create_device,
                             create_policy, iot_arn, policy_document, unique)

ALLOWED_ID = unique("friend")


@pytest.fixture(scope="module")
def server(module_server_factory):
    return module_server_factory("--friendly", name="friendly")


@pytest.fixture(scope="module")
def device(server, tmp_path_factory):
    name = create_policy(server, policy_document(
        allow("iot:Connect", f"client/{ALLOWED_ID}*"),
        allow(["iot:Publish", "iot:Receive"], "topic/friendly/ok/*"),
        allow("iot:Subscribe", "topicfilter/friendly/ok/*")))
    d = create_device(server, tmp_path_factory.mktemp("friendly"), name)
    d.policy = name
    return d


@pytest.mark.parametrize("protocol", list(PROTOCOLS.values()), ids=list(PROTOCOLS))
def test_refused_connect_gets_connack_not_authorised(server, clients, device, protocol):
    client_id = unique("stranger")
    log = ServerLog(server)
    res = clients.new(server, device, protocol=protocol, client_id=client_id).try_connect()
    assert not res.ok
    assert res.connack_rc == (5 if protocol == MQTTv311 else NOT_AUTHORIZED_V5), res
    assert_policy_refusal(log.wait_refusal(client_id, "iot:Connect"), action="iot:Connect",
                          client=client_id, cert=device.cert_id,
                          resource=iot_arn(f"client/{client_id}"), policies=[device.policy])


def test_mqtt311_refused_subscribe_gets_suback_0x80_and_stays(server, clients, device):
    client_id = ALLOWED_ID + unique("-s")
    c = clients.connect(server, device, protocol=MQTTv311, client_id=client_id)
    log = ServerLog(server)
    assert c.subscribe_result("friendly/ok/a", "friendly/no/a") == [1, 0x80]
    assert not c.closed and c.connected
    assert_policy_refusal(log.wait_refusal(client_id, "iot:Subscribe"), action="iot:Subscribe",
                          client=client_id, cert=device.cert_id,
                          resource=iot_arn("topicfilter/friendly/no/a"))
    # Still usable: the granted subscription delivers.
    assert c.publish_result("friendly/ok/a", b"after") == 0
    m = c.wait_message("friendly/ok/a", 5)
    assert m is not None and m.payload == b"after"


def test_mqtt311_refused_publish_is_acknowledged_not_routed(server, clients, device):
    client_id = ALLOWED_ID + unique("-p")
    c = clients.connect(server, device, protocol=MQTTv311, client_id=client_id)
    c.subscribe("friendly/ok/#")
    log = ServerLog(server)
    assert c.publish_result("friendly/no/x", b"refused") == 0  # a PUBACK, connection kept
    assert not c.closed and c.connected
    assert_policy_refusal(log.wait_refusal(client_id, "iot:Publish"), action="iot:Publish",
                          client=client_id, cert=device.cert_id,
                          resource=iot_arn("topic/friendly/no/x"))
    # Order on one connection: once the marker is back, the refused message would be too.
    assert c.publish_result("friendly/ok/marker", b"m") == 0
    assert c.wait_message("friendly/ok/marker", 5) is not None
    assert [m.topic for m in c.messages()] == ["friendly/ok/marker"]


def test_mqtt5_unchanged_in_friendly_mode(server, clients, device):
    client_id = ALLOWED_ID + unique("-5")
    c = clients.connect(server, device, protocol=MQTTv5, client_id=client_id)
    assert c.subscribe_result("friendly/ok/a", "friendly/no/a") == [1, NOT_AUTHORIZED_V5]
    assert c.publish_result("friendly/no/x") == NOT_AUTHORIZED_V5
    assert c.publish_result("friendly/ok/a") == 0
    assert not c.closed
