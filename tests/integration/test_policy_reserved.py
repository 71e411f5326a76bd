"""Reserved topics hold whatever the policy says (shared/spec/broker-and-policy.md §6.4, §5.4,
§4.8, §8.3 item 8; provisioning.md §1.1): even with `iot:*` on `*`, a client cannot publish onto
a topic only AWS IoT publishes to (lifecycle events under $aws/events/..., fleet provisioning
answers such as $aws/certificates/create/json/accepted) nor retain a message on a `$` topic. The
refusal looks like any unauthorized publish — PUBACK 0x87 on MQTT 5 (connection kept), closed
connection without PUBACK on MQTT 3.1.1 — nothing is delivered, and the log names the rule."""

import pytest

from iotmock_support import (PROTOCOLS, PUBACK_OK, MQTTv5, NOT_AUTHORIZED_V5,
                             ServerLog, allow, create_device, create_policy, policy_document,
                             unique)

ANSWER_ONLY = ("only AWS IoT publishes to this reserved topic; clients may only subscribe to it")
NO_RETAIN = "retained messages are not allowed on reserved topics"


@pytest.fixture(scope="module")
def device(server, tmp_path_factory):
    """A certificate whose policy allows everything."""
    name = create_policy(server, policy_document(allow("iot:*", "*")))
    return create_device(server, tmp_path_factory.mktemp("reserved"), name)


def forgeries(u):
    """(topic, retain, action refused, rule) — each refused whatever the policy."""
    return {
        "lifecycle-event": (f"$aws/events/presence/connected/{u}", False, "iot:Publish",
                            ANSWER_ONLY),
        "registry-event": (f"$aws/events/thing/{u}/created", False, "iot:Publish", ANSWER_ONLY),
        "create-keys-accepted": ("$aws/certificates/create/json/accepted", False, "iot:Publish",
                                 ANSWER_ONLY),
        "retained-shadow-update": (f"$aws/things/{u}/shadow/update", True, "iot:RetainPublish",
                                   NO_RETAIN),
    }


@pytest.mark.parametrize("protocol", list(PROTOCOLS.values()), ids=list(PROTOCOLS))
@pytest.mark.parametrize("kind", ["lifecycle-event", "registry-event", "create-keys-accepted",
                                  "retained-shadow-update"])
def test_reserved_topic_refused_despite_allow_all(server, clients, device, protocol, kind):
    u = unique("res")
    topic, retain, action, rule = forgeries(u)[kind]
    spy = clients.connect(server, device, protocol=MQTTv5, client_id=unique("spy"))
    marker = f"marker/{u}"
    assert spy.subscribe_result(topic, marker) == [1, 1]
    c = clients.connect(server, device, protocol=protocol, client_id=unique("forger"))
    log = ServerLog(server)
    rc = c.publish_result(topic, b'{"forged": true}', retain=retain)
    if protocol == MQTTv5:
        assert rc == NOT_AUTHORIZED_V5, f"PUBACK reason {rc}, expected 0x87"
        assert not c.closed and c.connected, c.state()
        assert c.publish_result(marker, b"m") == 0, "connection unusable after 0x87"
    else:
        assert rc is None, f"3.1.1 got a PUBACK ({rc}) for a reserved topic"
        assert c.wait_closed(), c.state()
        assert spy.publish_result(marker, b"m") == 0
    assert spy.wait_message(marker, 5) is not None
    assert spy.messages(topic) == [], "forged message delivered"
    r = log.wait_refusal(c.client_id, action)
    assert r.cert == device.cert_id, r.line
    assert r.why == f"topic={topic} | reserved topic: {rule}", r.line


def test_allow_all_still_allows_ordinary_and_request_topics(server, clients, device):
    """The control for the test above: the same certificate publishes elsewhere."""
    c = clients.connect(server, device, protocol=MQTTv5, client_id=unique("ok"))
    u = unique("ok")
    log = ServerLog(server)
    assert c.publish_result(f"plain/{u}", b"x", retain=True) in PUBACK_OK
    assert c.publish_result(f"$aws/things/{u}/shadow/update", b"{}") in PUBACK_OK
    log.assert_no_refusal(c.client_id)
