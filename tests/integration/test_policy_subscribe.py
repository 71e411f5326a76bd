"""iot:Subscribe on the wire (shared/spec/broker-and-policy.md §2.2, §2.3, §3.3, §2.7 E10): the
resource is topicfilter/<filter exactly as sent> — a `topic/` grant allows no SUBSCRIBE, and `+`
in a policy is a literal character. MQTT 5 answers each filter of one SUBSCRIBE on its own (0x01 /
0x87) and keeps the connection; MQTT 3.1.1 closes the connection without a SUBACK when any filter
is refused. Each refused filter is one server log line."""

import pytest

from iotmock_support import (PROTOCOLS, MQTTv5, NOT_AUTHORIZED_V5, ServerLog, allow,
                             assert_policy_refusal, create_device, create_policy, iot_arn,
                             policy_document, unique)


@pytest.fixture(scope="module")
def device(server, tmp_path_factory):
    name = create_policy(server, policy_document(
        allow("iot:Connect", "client/*"),
        allow("iot:Subscribe", ["topicfilter/sub/ok/*", "topicfilter/lit/+/t"]),
        # The wrong resource type for Subscribe (a documented mistake, §2.7 E10): grants nothing.
        allow("iot:Subscribe", "topic/sub/wrong/*"),
        allow(["iot:Publish", "iot:Receive"], "topic/*")))
    d = create_device(server, tmp_path_factory.mktemp("sub"), name)
    d.policy = name
    return d


def expect_refused_subscribe(c, codes, expected_v5):
    if c.protocol == MQTTv5:
        assert codes == expected_v5, f"SUBACK {codes}, expected {expected_v5}"
        assert not c.closed and c.connected, c.state()
    else:
        assert codes is None, f"3.1.1 got a SUBACK {codes} for a refused filter"
        assert c.wait_closed(), f"3.1.1 connection not closed: {c.state()}"


def delivered_topics(c, *topics):
    """Publishes to each topic from C itself, then a marker on a granted filter; returns the
    topics (of TOPICS) that came back (order on one connection makes the marker a barrier)."""
    marker = f"sub/ok/{unique('marker')}"
    assert c.subscribe_result(marker) == [1]
    for t in topics:
        assert c.publish_result(t) is not None
    assert c.publish_result(marker) == 0
    assert c.wait_message(marker, 5) is not None
    return [m.topic for m in c.messages() if m.topic in topics]


@pytest.mark.parametrize("protocol", list(PROTOCOLS.values()), ids=list(PROTOCOLS))
def test_allowed_filter(server, clients, device, protocol):
    c = clients.connect(server, device, protocol=protocol, client_id=unique("sub"))
    topic = f"sub/ok/{unique('t')}"
    log = ServerLog(server)
    assert c.subscribe_result(topic, "sub/ok/+/x") == [1, 1]
    assert delivered_topics(c, topic) == [topic]
    log.assert_no_refusal(c.client_id)


@pytest.mark.parametrize("protocol", list(PROTOCOLS.values()), ids=list(PROTOCOLS))
def test_topic_grant_does_not_allow_subscribing(server, clients, device, protocol):
    c = clients.connect(server, device, protocol=protocol, client_id=unique("sub"))
    topic = f"sub/wrong/{unique('t')}"
    log = ServerLog(server)
    expect_refused_subscribe(c, c.subscribe_result(topic), [NOT_AUTHORIZED_V5])
    assert_policy_refusal(log.wait_refusal(c.client_id, "iot:Subscribe"), action="iot:Subscribe",
                          client=c.client_id, cert=device.cert_id,
                          resource=iot_arn(f"topicfilter/{topic}"), policies=[device.policy])
    if protocol == MQTTv5:
        assert delivered_topics(c, topic) == [], "a refused filter delivered messages"


@pytest.mark.parametrize("protocol", list(PROTOCOLS.values()), ids=list(PROTOCOLS))
def test_plus_in_a_policy_is_literal(server, clients, device, protocol):
    """topicfilter/lit/+/t allows the filter `lit/+/t` as written, not `lit/x/t`."""
    c = clients.connect(server, device, protocol=protocol, client_id=unique("lit"))
    log = ServerLog(server)
    assert c.subscribe_result("lit/+/t") == [1]
    expect_refused_subscribe(c, c.subscribe_result("lit/x/t"), [NOT_AUTHORIZED_V5])
    assert_policy_refusal(log.wait_refusal(c.client_id, "iot:Subscribe"), action="iot:Subscribe",
                          client=c.client_id, cert=device.cert_id,
                          resource=iot_arn("topicfilter/lit/x/t"))


@pytest.mark.parametrize("protocol", list(PROTOCOLS.values()), ids=list(PROTOCOLS))
def test_mixed_filters_in_one_subscribe(server, clients, device, protocol):
    c = clients.connect(server, device, protocol=protocol, client_id=unique("mix"))
    u = unique("m")
    filters = [f"sub/ok/{u}/a", f"sub/no/{u}/b", f"sub/ok/{u}/c", f"sub/wrong/{u}/d"]
    log = ServerLog(server)
    expect_refused_subscribe(c, c.subscribe_result(*filters),
                             [1, NOT_AUTHORIZED_V5, 1, NOT_AUTHORIZED_V5])
    lines = log.refusals(c.client_id, "iot:Subscribe")
    if protocol == MQTTv5:
        assert sorted(r.decision()["resource"] for r in lines) == [
            iot_arn(f"topicfilter/{filters[1]}"), iot_arn(f"topicfilter/{filters[3]}")]
        for r in lines:
            assert r.decision()["reason"] == "no statement allowed it", r.line
        # The granted filters deliver, the refused ones do not.
        assert sorted(delivered_topics(c, *filters)) == [filters[0], filters[2]]
    else:
        # The connection ends at the first refused filter; that one is logged.
        assert [r.decision()["resource"] for r in lines][:1] == \
            [iot_arn(f"topicfilter/{filters[1]}")], [r.line for r in lines]
