"""iot:Publish and iot:RetainPublish on the wire (shared/spec/broker-and-policy.md §2.2, §3.2,
§2.7 E7): the resource is topic/<name>; a refused QoS 1 PUBLISH gets PUBACK 0x87 on MQTT 5 and the
connection stays, on MQTT 3.1.1 the connection is closed without a PUBACK (QoS 0 too); the message
is not routed. A retained PUBLISH needs iot:RetainPublish in addition to iot:Publish. Each refusal
is one server log line naming the action, client, certificate, resource and why.

Ordering trick: messages from one connection are delivered in order, so once a marker published
after a refused message has arrived, the refused message would have arrived before it."""

import pytest

from iotmock_support import (PROTOCOLS, PUBACK_OK, MQTTv5,
                             NOT_AUTHORIZED_V5, ServerLog, allow, assert_policy_refusal,
                             create_device, create_policy, iot_arn, policy_document, unique)


@pytest.fixture(scope="module")
def device(server, tmp_path_factory):
    name = create_policy(server, policy_document(
        allow("iot:Connect", "client/*"),
        allow("iot:Publish", ["topic/pub/ok/*", "topic/pub/retain/*"]),
        allow("iot:RetainPublish", "topic/pub/retain/yes/*"),
        allow("iot:Receive", "topic/pub/*"),
        allow("iot:Subscribe", "topicfilter/pub/*")))
    d = create_device(server, tmp_path_factory.mktemp("pub"), name)
    d.policy = name
    return d


@pytest.fixture
def watcher(server, clients, device):
    """An MQTT 5 client subscribed to pub/#, to see what gets routed."""
    w = clients.connect(server, device, protocol=MQTTv5, client_id=unique("watcher"))
    w.subscribe("pub/#")
    return w


def sync(watcher):
    """Publishes a marker from the watcher and waits for it: everything routed before is in."""
    marker = f"pub/ok/{unique('marker')}"
    assert watcher.publish_result(marker, b"marker") == 0
    assert watcher.wait_message(marker, 5) is not None, watcher.state()


def routed(watcher, topic):
    sync(watcher)
    return watcher.messages(topic)


@pytest.mark.parametrize("protocol", list(PROTOCOLS.values()), ids=list(PROTOCOLS))
def test_allowed_publish_is_acknowledged_and_routed(server, clients, device, watcher, protocol):
    c = clients.connect(server, device, protocol=protocol, client_id=unique("pub"))
    topic = f"pub/ok/{unique('t')}"
    log = ServerLog(server)
    assert c.publish_result(topic, b"hello") == 0
    m = watcher.wait_message(topic, 5)
    assert m is not None and m.payload == b"hello"
    assert not c.closed
    log.assert_no_refusal(c.client_id)


@pytest.mark.parametrize("protocol", list(PROTOCOLS.values()), ids=list(PROTOCOLS))
def test_refused_publish(server, clients, device, watcher, protocol):
    c = clients.connect(server, device, protocol=protocol, client_id=unique("pub"))
    topic = f"pub/no/{unique('t')}"
    log = ServerLog(server)
    rc = c.publish_result(topic, b"refused")
    if protocol == MQTTv5:
        assert rc == NOT_AUTHORIZED_V5, f"PUBACK reason {rc}, expected 0x87"
        assert not c.closed and c.connected, c.state()
        assert c.publish_result(f"pub/ok/{unique('t')}") == 0, "connection unusable after 0x87"
    else:
        assert rc is None, f"3.1.1 got a PUBACK ({rc}) for a refused publish"
        assert c.wait_closed(), f"3.1.1 connection not closed: {c.state()}"
    assert routed(watcher, topic) == [], "refused message was routed"
    assert_policy_refusal(log.wait_refusal(c.client_id, "iot:Publish"), action="iot:Publish",
                          client=c.client_id, cert=device.cert_id,
                          resource=iot_arn(f"topic/{topic}"), policies=[device.policy])


@pytest.mark.parametrize("protocol", list(PROTOCOLS.values()), ids=list(PROTOCOLS))
def test_refused_qos0_publish(server, clients, device, watcher, protocol):
    """QoS 0: 3.1.1 is disconnected (§3.2); MQTT 5 too, by default with DISCONNECT 0x80 (the
    reason code and the other modes: test_policy_qos0.py)."""
    c = clients.connect(server, device, protocol=protocol, client_id=unique("pub0"))
    topic = f"pub/no/{unique('q0')}"
    log = ServerLog(server)
    c._c.publish(topic, b"refused", qos=0)
    assert c.wait_closed(), f"connection not closed: {c.state()}"
    assert_policy_refusal(log.wait_refusal(c.client_id, "iot:Publish"), action="iot:Publish",
                          client=c.client_id, cert=device.cert_id,
                          resource=iot_arn(f"topic/{topic}"))
    assert routed(watcher, topic) == []


def retained_on_subscribe(server, clients, device, topic):
    """What a new subscriber to exactly TOPIC gets when it subscribes (marker-synchronised)."""
    s = clients.connect(server, device, protocol=MQTTv5, client_id=unique("late"))
    marker = f"pub/ok/{unique('m')}"
    s.subscribe(topic)
    s.subscribe(marker)
    assert s.publish_result(marker, b"m") == 0
    assert s.wait_message(marker, 5) is not None
    return s.messages(topic)


@pytest.mark.parametrize("protocol", list(PROTOCOLS.values()), ids=list(PROTOCOLS))
def test_retained_publish_needs_retain_publish(server, clients, device, watcher, protocol):
    c = clients.connect(server, device, protocol=protocol, client_id=unique("ret"))
    topic = f"pub/retain/{unique('r')}"  # iot:Publish granted, iot:RetainPublish not
    log = ServerLog(server)
    rc = c.publish_result(topic, b"retained", retain=True)
    if protocol == MQTTv5:
        assert rc == NOT_AUTHORIZED_V5, f"PUBACK reason {rc}, expected 0x87"
        assert not c.closed
        # The same publish without RETAIN is allowed: only RetainPublish was missing.
        assert c.publish_result(topic, b"plain") == 0
    else:
        assert rc is None, f"3.1.1 got a PUBACK ({rc}) for a refused retained publish"
        assert c.wait_closed(), c.state()
    assert [m.payload for m in routed(watcher, topic)] == ([b"plain"] if protocol == MQTTv5
                                                           else [])
    assert retained_on_subscribe(server, clients, device, topic) == [], "refused message retained"
    assert_policy_refusal(log.wait_refusal(c.client_id, "iot:RetainPublish"),
                          action="iot:RetainPublish", client=c.client_id, cert=device.cert_id,
                          resource=iot_arn(f"topic/{topic}"), policies=[device.policy])
    assert log.refusals(c.client_id, "iot:Publish") == [], "iot:Publish was granted"


@pytest.mark.parametrize("protocol", list(PROTOCOLS.values()), ids=list(PROTOCOLS))
def test_retained_publish_with_retain_publish(server, clients, device, protocol):
    c = clients.connect(server, device, protocol=protocol, client_id=unique("ret"))
    topic = f"pub/retain/yes/{unique('r')}"
    log = ServerLog(server)
    assert c.publish_result(topic, b"kept", retain=True) in PUBACK_OK
    got = retained_on_subscribe(server, clients, device, topic)
    assert [(m.payload, m.retain) for m in got] == [(b"kept", True)]
    assert not c.closed
    log.assert_no_refusal(c.client_id)
