"""Fleet provisioning answers go to the requesting connection only, and only through its own
subscription (shared/spec/provisioning.md §1.2): another client subscribed to the same /accepted
topic, or to the request topic, receives nothing; a requester without a matching subscription
receives nothing either.

Ordering trick: a client's messages are delivered in order, so once a marker published after the
provisioning has reached the eavesdropper, anything misrouted to it would already be there."""

import time

import pytest

from iotmock_support import (CREATE_FROM_CSR, CREATE_KEYS, FLEET_DEFAULT, MQTTv5, PROTOCOLS,
                             REGISTER_ACCEPTED_FIELDS, create_from_csr, create_keys,
                             expect_accepted, expect_rejected, make_csr, provision_request,
                             plain_topic, provision_topic, register_thing, unique)

pytestmark = pytest.mark.usefixtures("broker_still_serves")

# Long enough for an RSA key to be generated and the answer to be published.
QUIET_PERIOD = 2.0


def topics_of(request_topic):
    return [request_topic, request_topic + "/accepted", request_topic + "/rejected"]


def sync_with_marker(subscriber, publisher):
    """Publishes a marker on a topic SUBSCRIBER is subscribed to and waits for it."""
    marker = subscriber.marker_topic
    payload = unique("marker").encode()
    publisher.publish(marker, payload)
    m = subscriber.wait_message(marker, 10)
    assert m is not None and m.payload == payload, f"marker lost; {subscriber.state()}"


def answer_topics(request_topic):
    return [request_topic + "/accepted", request_topic + "/rejected"]


def eavesdropper(mqtt, protocol):
    spy = mqtt.claim(protocol=protocol, client_id=unique("spy"))
    requests = [CREATE_KEYS, CREATE_FROM_CSR, provision_topic(FLEET_DEFAULT)]
    spy.subscribe(*[t for r in requests for t in answer_topics(r)])
    if protocol == MQTTv5:
        # Request topics are publish-only on AWS: MQTT 5 gets SUBACK 0x87 and keeps the
        # connection (3.1.1 would be disconnected: test_subscribing_to_a_request_topic_is_refused).
        assert spy.subscribe(*requests, require_granted=False) == [0x87] * 3
        # Wildcards over the reserved topics: refusing them is fine, delivering through them is not.
        spy.subscribe("$aws/certificates/#", "$aws/provisioning-templates/#", require_granted=False)
    spy.marker_topic = plain_topic("marker")
    spy.subscribe(spy.marker_topic)
    return spy


@pytest.mark.parametrize("spy_protocol", list(PROTOCOLS.values()), ids=list(PROTOCOLS))
def test_third_client_receives_nothing(mqtt, tmp_path, spy_protocol):
    spy = eavesdropper(mqtt, spy_protocol)
    requester = mqtt.claim(client_id=unique("requester"))

    keys = create_keys(requester)
    expect_rejected(*provision_request(requester, CREATE_KEYS, b"{not json"), 400,
                    "InvalidPayload")
    create_from_csr(requester, make_csr(tmp_path, "p256")[1])
    expect_rejected(*provision_request(requester, CREATE_FROM_CSR, b"{}"), 400, "InvalidPayload")
    serial = unique("iso")
    which, body = register_thing(requester, FLEET_DEFAULT, keys["certificateOwnershipToken"],
                                 {"SerialNumber": serial})
    expect_accepted(which, body, REGISTER_ACCEPTED_FIELDS)
    expect_rejected(*register_thing(requester, FLEET_DEFAULT, "", {"SerialNumber": serial}), 400,
                    "InvalidCertificateOwnershipToken")

    sync_with_marker(spy, requester)
    leaked = [(m.topic, m.payload[:80]) for m in spy.messages() if m.topic != spy.marker_topic]
    assert leaked == [], f"the third client received: {leaked}"
    # The requester got exactly its own six answers and never its own requests back.
    assert [m.topic for m in requester.messages()] == [
        CREATE_KEYS + "/accepted", CREATE_KEYS + "/rejected",
        CREATE_FROM_CSR + "/accepted", CREATE_FROM_CSR + "/rejected",
        provision_topic(FLEET_DEFAULT) + "/accepted", provision_topic(FLEET_DEFAULT) + "/rejected"]


def test_request_topic_is_not_echoed_to_the_requester(mqtt):
    client = mqtt.claim(protocol=MQTTv5)
    assert client.subscribe(CREATE_KEYS, require_granted=False) == [0x87]
    create_keys(client)
    time.sleep(0.3)
    assert client.messages(CREATE_KEYS) == []


@pytest.mark.parametrize("request_topic", [CREATE_KEYS, CREATE_FROM_CSR,
                                           provision_topic(FLEET_DEFAULT)])
def test_subscribing_to_a_request_topic_is_refused(mqtt, request_topic):
    """Request topics are publish-only (shared/spec/broker-and-policy.md §6.4), whatever the
    policy says: MQTT 5 gets SUBACK 0x87 and stays connected; MQTT 3.1.1 cannot carry the refusal,
    so the connection is closed without a SUBACK (§3.3)."""
    v5 = mqtt.claim(protocol=MQTTv5)
    assert v5.subscribe(request_topic, require_granted=False) == [0x87]
    create_keys(v5)  # still connected and served
    v311 = mqtt.claim(protocol=PROTOCOLS["mqtt311"])
    with pytest.raises(AssertionError, match="no SUBACK"):
        v311.subscribe(request_topic, timeout=5)
    assert not v311.connected


@pytest.mark.parametrize("subscriptions", [[], ["/rejected"]], ids=["none", "rejected-only"])
def test_requester_without_accepted_subscription_receives_nothing(mqtt, subscriptions):
    client = mqtt.claim()
    client.marker_topic = plain_topic("marker")
    client.subscribe(client.marker_topic)
    if subscriptions:
        client.subscribe(*[CREATE_KEYS + s for s in subscriptions])
    client.publish(CREATE_KEYS, b"{}")
    time.sleep(QUIET_PERIOD)
    sync_with_marker(client, client)
    assert [m.topic for m in client.messages()] == [client.marker_topic]
    # Control: the same connection, now subscribed, gets exactly one answer to a new request
    # (the earlier answer was dropped, not held back).
    which, body = provision_request(client, CREATE_KEYS, b"{}", settle=0.5)
    assert which == "accepted", body


def test_rejection_without_rejected_subscription_is_not_delivered(mqtt):
    client = mqtt.claim()
    client.marker_topic = plain_topic("marker")
    client.subscribe(client.marker_topic, CREATE_KEYS + "/accepted")
    client.publish(CREATE_KEYS, b"{not json")
    time.sleep(0.5)
    sync_with_marker(client, client)
    assert [m.topic for m in client.messages()] == [client.marker_topic]


def test_unsubscribed_requester_receives_nothing(mqtt):
    """The v2 SDKs subscribe and unsubscribe per request (shared/spec/clients.md §6.6)."""
    client = mqtt.claim(protocol=MQTTv5)
    client.marker_topic = plain_topic("marker")
    client.subscribe(client.marker_topic)
    create_keys(client)  # subscribes to /accepted and /rejected
    client.unsubscribe(CREATE_KEYS + "/accepted", CREATE_KEYS + "/rejected")
    before = len(client.messages())
    client.publish(CREATE_KEYS, b"{}")
    time.sleep(QUIET_PERIOD)
    sync_with_marker(client, client)
    assert [m.topic for m in client.messages()[before:]] == [client.marker_topic]


def test_concurrent_requesters_each_get_exactly_their_own_answer(mqtt):
    spy = eavesdropper(mqtt, MQTTv5)
    clients = [mqtt.claim(client_id=unique(f"conc{i}")) for i in range(3)]
    for c in clients:
        c.subscribe(CREATE_KEYS + "/accepted", CREATE_KEYS + "/rejected")
    for c in clients:
        c.publish(CREATE_KEYS, b"{}", qos=1)
    ids = []
    for c in clients:
        m = c.wait_message(CREATE_KEYS + "/accepted", 20)
        assert m is not None, c.state()
        ids.append(m.json()["certificateId"])
    time.sleep(0.5)
    for c in clients:
        assert len(c.messages()) == 1, [m.topic for m in c.messages()]
    assert len(set(ids)) == 3
    sync_with_marker(spy, clients[0])
    assert [m.topic for m in spy.messages()] == [spy.marker_topic]


def test_answer_is_not_delivered_to_a_later_connection_with_the_same_client_id(mqtt):
    """Answers go back on the connection that asked (shared/spec/provisioning.md §1.2): a new
    connection (clean session) with the same client id, already subscribed when the old
    connection's answer is produced, does not receive it."""
    client_id = unique("takeover")
    old = mqtt.claim(client_id=client_id)
    old.subscribe(CREATE_KEYS + "/accepted", CREATE_KEYS + "/rejected")
    old.publish(CREATE_KEYS, b"{}", qos=1)
    old.close()
    new = mqtt.claim(client_id=client_id)
    new.marker_topic = plain_topic("marker")
    new.subscribe(new.marker_topic, CREATE_KEYS + "/accepted", CREATE_KEYS + "/rejected")
    time.sleep(2.0)
    new.publish(new.marker_topic, b"m")
    assert new.wait_message(new.marker_topic, 10) is not None
    assert [m.topic for m in new.messages()] == [new.marker_topic]
    which, body = provision_request(new, CREATE_KEYS, b"{}", settle=0.5)
    assert which == "accepted", body


@pytest.mark.parametrize("protocol", list(PROTOCOLS.values()), ids=list(PROTOCOLS))
@pytest.mark.parametrize("sub_qos", [0, 1])
def test_answer_comes_at_the_qos_of_the_subscription(mqtt, protocol, sub_qos):
    """The answer is published at QoS 1 and reaches the requester at the lower of that and its
    subscription's QoS (shared/spec/provisioning.md §1.2), never retained."""
    client = mqtt.claim(protocol=protocol)
    client.subscribe(CREATE_KEYS + "/accepted", CREATE_KEYS + "/rejected", qos=sub_qos)
    client.publish(CREATE_KEYS, b"{}", qos=1)
    m = client.wait_message(CREATE_KEYS + "/accepted", 20)
    assert m is not None, client.state()
    assert (m.qos, m.retain) == (sub_qos, False)
    assert len(m.json()["certificateId"]) == 64
    # Subscribing again at the other QoS replaces the subscription: the next answer follows it.
    client.subscribe(CREATE_KEYS + "/accepted", qos=1 - sub_qos)
    client.publish(CREATE_KEYS, b"{}", qos=1)
    deadline = time.monotonic() + 20
    while len(client.messages(CREATE_KEYS + "/accepted")) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    answers = client.messages(CREATE_KEYS + "/accepted")
    assert [a.qos for a in answers] == [sub_qos, 1 - sub_qos], client.state()


def test_overlapping_subscriptions_get_one_copy_each(mqtt):
    """Like any message, an answer reaches each matching subscription of the requester once: an
    exact filter and a `+` filter give two copies, identical."""
    client = mqtt.claim(protocol=MQTTv5)
    client.marker_topic = plain_topic("marker")
    client.subscribe(client.marker_topic)
    client.subscribe(CREATE_KEYS + "/accepted", "$aws/certificates/create/+/accepted")
    client.publish(CREATE_KEYS, b"{}", qos=1)
    first = client.wait_message(CREATE_KEYS + "/accepted", 20)
    assert first is not None, client.state()
    time.sleep(0.5)
    sync_with_marker(client, client)
    answers = client.messages(CREATE_KEYS + "/accepted")
    assert len(answers) == 2, [m.topic for m in client.messages()]
    assert answers[0].payload == answers[1].payload
    assert [m.topic for m in client.messages()] == [CREATE_KEYS + "/accepted"] * 2 + \
        [client.marker_topic]
