"""How AWS IoT Core matches topics where the MQTT specification (and stock Mosquitto) differ
(shared/spec/broker-and-policy.md §4.4, §4.8, §4.10): `sensor/#` does not receive `sensor`;
stored retained messages are sent on subscribe only to exact filters, never to wildcard or shared
subscriptions (which still receive live messages); shared subscriptions deliver each message to
one member of each group. Both AWS rules can be switched off."""

import time

import pytest

from broker_support import Clients, open_device
from iotmock_support import MQTTv311, MQTTv5, PROTOCOLS, PUBACK_OK, unique

PROTOCOL_IDS = list(PROTOCOLS)
ALL_PROTOCOLS = list(PROTOCOLS.values())


@pytest.fixture(scope="module")
def device(server, tmp_path_factory):
    return open_device(server, tmp_path_factory.mktemp("match"))


CLIENT_POOL = Clients


def received(c, topics, marker_prefix, timeout=5.0):
    """Publishes a marker on MARKER_PREFIX/marker (which C must be subscribed to) and returns,
    once it arrived, the topics of TOPICS that C received (order on one connection makes the
    marker a barrier)."""
    marker = f"{marker_prefix}/marker"
    assert c.publish_result(marker) in PUBACK_OK
    assert c.wait_message(marker, timeout) is not None, "marker lost"
    return [m.topic for m in c.messages() if m.topic in topics]


def publish_retained(c, topic, payload):
    assert c.publish_result(topic, payload, retain=True) in PUBACK_OK


# ---- `#` and its parent level (§4.4) ----------------------------------------------------------

@pytest.mark.parametrize("protocol", ALL_PROTOCOLS, ids=PROTOCOL_IDS)
def test_hash_does_not_match_its_parent(server, clients, device, protocol):
    c = clients.connect(server, device, protocol=protocol)
    base = unique("sensor")
    assert c.subscribe_result(f"{base}/#") == [1]
    topics = [base, f"{base}/", f"{base}/a", f"{base}/a/b"]
    for t in topics:
        assert c.publish_result(t) in PUBACK_OK
    assert received(c, topics, base) == topics[1:], "sensor/# must not receive sensor"


def test_hash_after_plus_does_not_match_the_parent(server, clients, device):
    c = clients.connect(server, device, protocol=MQTTv311)
    base = unique("dev")
    assert c.subscribe_result(f"{base}/+/#") == [1]
    topics = [f"{base}/x", f"{base}/x/y"]
    for t in topics:
        assert c.publish_result(t) in PUBACK_OK
    assert received(c, topics, f"{base}/m") == topics[1:]


def test_parent_still_reaches_its_own_subscription(server, clients, device):
    """An exact filter on the parent receives it, once; the `#` filter adds nothing."""
    c = clients.connect(server, device, protocol=MQTTv5)
    base = unique("both")
    assert c.subscribe_result(f"{base}/#", base) == [1, 1]
    assert c.publish_result(base) in PUBACK_OK
    assert received(c, [base], base) == [base]


def test_other_subscribers_are_not_affected(server, clients, device):
    """The rule is per subscriber: a `#` subscriber misses the parent, an exact one gets it."""
    hash_sub = clients.connect(server, device, protocol=MQTTv311)
    exact_sub = clients.connect(server, device, protocol=MQTTv311)
    base = unique("per")
    assert hash_sub.subscribe_result(f"{base}/#") == [1]
    assert exact_sub.subscribe_result(base, f"{base}/marker") == [1, 1]
    assert exact_sub.publish_result(base) in PUBACK_OK
    assert received(exact_sub, [base], base) == [base]
    assert received(hash_sub, [base], base) == []


def test_unsubscribing_the_exact_filter_restores_the_rule(server, clients, device):
    c = clients.connect(server, device, protocol=MQTTv5)
    base = unique("unsub")
    assert c.subscribe_result(f"{base}/#", base) == [1, 1]
    c.unsubscribe(base)
    assert c.publish_result(base) in PUBACK_OK
    assert received(c, [base], base) == []


# ---- retained messages (§4.8) -----------------------------------------------------------------

@pytest.mark.parametrize("protocol", ALL_PROTOCOLS, ids=PROTOCOL_IDS)
def test_retained_sent_only_to_exact_filters(server, clients, device, protocol):
    pub = clients.connect(server, device, protocol=MQTTv311)
    base = unique("ret")
    topic = f"{base}/room/temp"
    publish_retained(pub, topic, b"21")
    c = clients.connect(server, device, protocol=protocol)
    # One SUBSCRIBE: retained messages follow each filter's check; only the exact one gets it.
    assert c.subscribe_result(f"{base}/+/temp", f"{base}/#", topic) == [1, 1, 1]
    m = c.wait_message(topic, 5)
    assert m is not None and m.payload == b"21" and m.retain, m
    assert c.wait_message(topic, 1.0) is None, "sent again for a wildcard filter"


@pytest.mark.parametrize("protocol", ALL_PROTOCOLS, ids=PROTOCOL_IDS)
@pytest.mark.parametrize("wildcard", ["{base}/+", "{base}/#", "+/x", "#"])
def test_wildcard_subscriptions_get_no_retained_message(server, clients, device, protocol,
                                                        wildcard):
    pub = clients.connect(server, device, protocol=MQTTv311)
    base = unique("retw")
    topic = f"{base}/x"
    publish_retained(pub, topic, b"kept")
    c = clients.connect(server, device, protocol=protocol)
    assert c.subscribe_result(wildcard.format(base=base), f"{base}/marker") == [1, 1]
    assert received(c, [topic], base) == [], "a stored retained message reached a wildcard"
    # Live messages still flow to the wildcard filter, retained or not.
    publish_retained(pub, topic, b"live")
    m = c.wait_message(topic, 5)
    assert m is not None and m.payload == b"live"


def test_shared_subscriptions_get_no_retained_message_but_live_ones(server, clients, device):
    pub = clients.connect(server, device, protocol=MQTTv311)
    base = unique("rets")
    topic = f"{base}/x"
    publish_retained(pub, topic, b"kept")
    c = clients.connect(server, device, protocol=MQTTv5)
    assert c.subscribe_result(f"$share/grp/{topic}", f"{base}/marker") == [1, 1]
    assert received(c, [topic], base) == []
    assert pub.publish_result(topic, b"live") in PUBACK_OK
    m = c.wait_message(topic, 5)
    assert m is not None and m.payload == b"live"


def test_retained_message_still_sent_to_a_later_exact_subscription(server, clients, device):
    """Refusing it to a wildcard filter does not lose it: an exact SUBSCRIBE later gets it."""
    pub = clients.connect(server, device, protocol=MQTTv311)
    base = unique("retl")
    topic = f"{base}/x"
    publish_retained(pub, topic, b"v1")
    c = clients.connect(server, device, protocol=MQTTv311)
    assert c.subscribe_result(f"{base}/#") == [1]
    assert c.subscribe_result(topic) == [1]
    m = c.wait_message(topic, 5)
    assert m is not None and m.payload == b"v1" and m.retain


# ---- shared subscriptions (§4.10) -------------------------------------------------------------

@pytest.mark.parametrize("protocol", ALL_PROTOCOLS, ids=PROTOCOL_IDS)
def test_shared_subscription_delivers_to_one_member_per_group(server, clients, device, protocol):
    base = unique("shared")
    members = [clients.connect(server, device, protocol=protocol) for _ in range(2)]
    other_group = clients.connect(server, device, protocol=protocol)
    for m in members:
        assert m.subscribe_result(f"$share/g1/{base}/#") == [1]
    assert other_group.subscribe_result(f"$share/g2/{base}/#") == [1]
    pub = clients.connect(server, device, protocol=MQTTv311)
    topics = [f"{base}/{i}" for i in range(10)]
    for t in topics:
        assert pub.publish_result(t) in PUBACK_OK
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and len(other_group.messages()) < len(topics):
        time.sleep(0.05)
    time.sleep(0.3)
    got = sorted(m.topic for c in members for m in c.messages())
    assert got == sorted(topics), "each message to exactly one member of g1"
    assert sorted(m.topic for m in other_group.messages()) == sorted(topics), "and one of g2"


def test_shared_subscription_follows_the_hash_rule(server, clients, device):
    c = clients.connect(server, device, protocol=MQTTv5)
    base = unique("sh")
    assert c.subscribe_result(f"$share/g/{base}/#", f"{base}/marker") == [1, 1]
    assert c.publish_result(base) in PUBACK_OK
    assert received(c, [base], base) == []


# ---- switches ---------------------------------------------------------------------------------

def test_stock_matching_when_switched_off(module_server_factory, clients, tmp_path):
    srv = module_server_factory("--without", "hash-parent,retained-exact", name="stock-match")
    d = open_device(srv, tmp_path)
    pub = clients.connect(srv, d, protocol=MQTTv311)
    base = unique("stock")
    publish_retained(pub, f"{base}/x", b"kept")
    c = clients.connect(srv, d, protocol=MQTTv311)
    assert c.subscribe_result(f"{base}/#") == [1]
    m = c.wait_message(f"{base}/x", 5)
    assert m is not None and m.retain, "MQTT: retained messages go to wildcard filters too"
    assert pub.publish_result(base) in PUBACK_OK
    assert c.wait_message(base, 5) is not None, "MQTT: sensor/# receives sensor"
