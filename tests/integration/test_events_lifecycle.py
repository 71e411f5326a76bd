"""Lifecycle events on the wire (shared/spec/broker-and-policy.md §5; provisioning.md §5.1–5.2):
$aws/events/presence/connected|disconnected/<clientId> and
$aws/events/subscriptions/subscribed|unsubscribed/<clientId>, with AWS's fields in AWS's order,
millisecond timestamps, the certificate id as principalIdentifier, one UUID per session, one
versionNumber per connection, and disconnectReason for each way a connection ends. Subscribers
need iot:Subscribe and iot:Receive on them like on any topic. No events for client ids
containing `+` or `#`."""

import time

import pytest

from broker_support import (CONNECT_FAILED_FIELDS, CONNECTED_FIELDS, DISCONNECTED_FIELDS,
                            PAYLOAD_MAX, RC_NOT_AUTHORIZED, RC_QOS_NOT_SUPPORTED,
                            SUBSCRIPTION_FIELDS, Clients, RawMqtt, Watcher, check_common, now_ms,
                            open_device)
from iotmock_support import (MQTTv311, MQTTv5, PROTOCOLS, allow, create_device, create_policy,
                             policy_document, unique)

PROTOCOL_IDS = list(PROTOCOLS)
ALL_PROTOCOLS = list(PROTOCOLS.values())


@pytest.fixture(scope="module")
def device(server, tmp_path_factory):
    return open_device(server, tmp_path_factory.mktemp("events"))


@pytest.fixture(scope="module")
def narrow(server, tmp_path_factory):
    """Connects only as narrow-*, publishes only to allowed/*."""
    name = create_policy(server, policy_document(
        allow("iot:Connect", "client/narrow-*"),
        allow("iot:Publish", "topic/allowed/*")))
    return create_device(server, tmp_path_factory.mktemp("narrow"), name)


CLIENT_POOL = Clients


@pytest.fixture
def watcher(server, clients, device):
    return Watcher(clients, server, device)


def connected_event(watcher, c, device, since):
    ev = watcher.expect("connected", c.client_id)
    check_common(ev, CONNECTED_FIELDS, "connected", c.client_id, device.cert_id, since)
    assert ev["ipAddress"] == "127.0.0.1"
    assert type(ev["versionNumber"]) is int and ev["versionNumber"] >= 0
    return ev


def disconnected_event(watcher, c, device, connected, reason, since):
    ev = watcher.expect("disconnected", c.client_id)
    check_common(ev, DISCONNECTED_FIELDS, "disconnected", c.client_id, device.cert_id, since)
    assert ev["disconnectReason"] == reason, ev
    assert ev["clientInitiatedDisconnect"] is (reason == "CLIENT_INITIATED_DISCONNECT"), ev
    assert ev["sessionIdentifier"] == connected["sessionIdentifier"]
    assert ev["versionNumber"] == connected["versionNumber"]
    return ev


@pytest.mark.parametrize("protocol", ALL_PROTOCOLS, ids=PROTOCOL_IDS)
def test_connected_then_client_disconnect(server, clients, device, watcher, protocol):
    since = now_ms()
    c = clients.connect(server, device, protocol=protocol, client_id=unique("ev-clean"))
    connected = connected_event(watcher, c, device, since)
    assert connected["versionNumber"] == 0, "first connection of a new client id"
    c.close()  # sends DISCONNECT
    disconnected_event(watcher, c, device, connected, "CLIENT_INITIATED_DISCONNECT", since)


@pytest.mark.parametrize("protocol", ALL_PROTOCOLS, ids=PROTOCOL_IDS)
def test_connection_lost(server, clients, device, watcher, protocol):
    since = now_ms()
    c = clients.connect(server, device, protocol=protocol, client_id=unique("ev-lost"))
    connected = connected_event(watcher, c, device, since)
    c.drop()
    disconnected_event(watcher, c, device, connected, "CONNECTION_LOST", since)


def test_unauthorized_publish_on_311_is_auth_error(server, clients, narrow, watcher):
    since = now_ms()
    c = clients.connect(server, narrow, protocol=MQTTv311, client_id=unique("narrow-auth"))
    connected = connected_event(watcher, c, narrow, since)
    assert c.publish_result(f"denied/{unique('t')}") is None and c.wait_closed()
    disconnected_event(watcher, c, narrow, connected, "AUTH_ERROR", since)


@pytest.mark.parametrize("protocol", ALL_PROTOCOLS, ids=PROTOCOL_IDS)
def test_oversize_payload_is_client_error(server, clients, device, watcher, protocol):
    since = now_ms()
    c = clients.connect(server, device, protocol=protocol, client_id=unique("ev-big"))
    connected = connected_event(watcher, c, device, since)
    assert c.publish_result(f"big/{unique('t')}", b"x" * (PAYLOAD_MAX + 1)) is None
    assert c.wait_closed()
    disconnected_event(watcher, c, device, connected, "CLIENT_ERROR", since)


def test_qos2_publish_on_mqtt5_is_client_error(server, device, watcher):
    since = now_ms()
    client_id = unique("ev-qos2")
    raw = RawMqtt(server, device.cert, device.key)
    try:
        raw.connect(client_id)
        assert raw.connack()[0] == 0
        connected = watcher.expect("connected", client_id)
        raw.publish(f"q/{unique('t')}", b"x", qos=2)
        assert raw.read_packet() == (0xE0, bytes([RC_QOS_NOT_SUPPORTED])), "DISCONNECT 0x9B"
        assert raw.read_packet() is None
    finally:
        raw.close()
    ev = watcher.expect("disconnected", client_id)
    check_common(ev, DISCONNECTED_FIELDS, "disconnected", client_id, device.cert_id, since)
    assert (ev["disconnectReason"], ev["clientInitiatedDisconnect"]) == ("CLIENT_ERROR", False)
    assert ev["versionNumber"] == connected["versionNumber"]


def test_version_number_and_session_per_connection(server, clients, device, watcher):
    client_id = unique("ev-version")
    seen = []
    for _ in range(3):
        c = clients.connect(server, device, protocol=MQTTv311, client_id=client_id)
        connected = watcher.expect("connected", client_id)
        c.close()
        disconnected = watcher.expect("disconnected", client_id)
        assert disconnected["versionNumber"] == connected["versionNumber"]
        assert disconnected["sessionIdentifier"] == connected["sessionIdentifier"]
        seen.append((connected["versionNumber"], connected["sessionIdentifier"]))
    assert [v for v, _ in seen] == [0, 1, 2], seen
    assert len({s for _, s in seen}) == 3, "each clean connection is a new session"


def test_persistent_session_keeps_its_identifier(server, clients, device, watcher):
    client_id = unique("ev-persist")
    ids = []
    for clean in (False, False, True):
        c = clients.new(server, device, protocol=MQTTv311, client_id=client_id)
        c._c._clean_session = clean
        assert c.try_connect().ok
        ids.append(watcher.expect("connected", client_id)["sessionIdentifier"])
        c.close()
        watcher.expect("disconnected", client_id)
    assert ids[0] == ids[1], "a resumed persistent session keeps its sessionIdentifier"
    assert ids[2] != ids[1], "a clean connection starts a new session"


@pytest.mark.parametrize("protocol", ALL_PROTOCOLS, ids=PROTOCOL_IDS)
def test_subscribed_and_unsubscribed_list_the_packet_filters(server, clients, device, watcher,
                                                             protocol):
    since = now_ms()
    c = clients.connect(server, device, protocol=protocol, client_id=unique("ev-sub"))
    base = unique("s")
    filters = [f"{base}/a", f"{base}/+/b", f"{base}/#"]
    assert c.subscribe_result(*filters) == [1, 1, 1]
    ev = watcher.expect("subscribed", c.client_id)
    check_common(ev, SUBSCRIPTION_FIELDS, "subscribed", c.client_id, device.cert_id, since)
    assert ev["topics"] == filters
    c._c.unsubscribe(filters[:2])
    ev = watcher.expect("unsubscribed", c.client_id)
    check_common(ev, SUBSCRIPTION_FIELDS, "unsubscribed", c.client_id, device.cert_id, since)
    assert ev["topics"] == filters[:2]
    assert watcher.wait("subscribed", c.client_id, 0.5) is None, "one event per packet"


def test_refused_filters_are_not_listed(server, clients, device, watcher):
    c = clients.connect(server, device, protocol=MQTTv5, client_id=unique("ev-subref"))
    base = unique("s")
    # A fleet provisioning request topic is publish-only: refused whatever the policy says.
    codes = c.subscribe_result(f"{base}/1", "$aws/certificates/create/json", f"{base}/2")
    assert codes == [1, RC_NOT_AUTHORIZED, 1]
    assert watcher.expect("subscribed", c.client_id)["topics"] == [f"{base}/1", f"{base}/2"]


@pytest.mark.parametrize("client_id", ["ev+plus", "ev#hash"])
def test_no_events_for_wildcard_client_ids(server, clients, device, watcher, client_id):
    client_id = f"{client_id}-{unique('x')}"
    c = clients.connect(server, device, protocol=MQTTv5, client_id=client_id)
    assert c.subscribe_result(f"{unique('s')}/x") == [1]
    c.close()
    marker = clients.connect(server, device, client_id=unique("ev-marker"))
    watcher.expect("connected", marker.client_id)  # events flow; the earlier ones came first
    time.sleep(0.3)
    assert watcher.about(client_id) == [], watcher.about(client_id)


def test_connect_failed(server, clients, narrow, watcher):
    since = now_ms()
    c = clients.new(server, narrow, protocol=MQTTv5, client_id=unique("not-narrow"))
    res = c.try_connect()
    assert not res.ok and res.connack_rc == RC_NOT_AUTHORIZED, res
    ev = watcher.expect("connect_failed", c.client_id)
    check_common(ev, CONNECT_FAILED_FIELDS, "connect_failed", c.client_id, narrow.cert_id, since)
    assert ev["connectFailureReason"] == "AUTHORIZATION_FAILED"
    assert ev["ipAddress"] == "127.0.0.1"
    assert watcher.wait("connected", c.client_id, 0.3) is None


def test_receiving_events_needs_receive_permission(server, clients, device, tmp_path):
    """iot:Subscribe on the event filter is not enough: each event is an iot:Receive (§3.4)."""
    name = create_policy(server, policy_document(
        allow("iot:Connect", "client/*"),
        allow("iot:Subscribe", "topicfilter/$aws/events/*"),
        allow("iot:Receive", "topic/$aws/events/presence/connected/*")))
    partial = create_device(server, tmp_path, name)
    w = Watcher(clients, server, partial)
    c = clients.connect(server, device, protocol=MQTTv311, client_id=unique("ev-recv"))
    assert w.wait("connected", c.client_id) is not None
    c.close()
    assert w.wait("disconnected", c.client_id, 1.5) is None, "delivered without iot:Receive"


def test_subscribing_to_events_needs_subscribe_permission(server, clients, tmp_path):
    name = create_policy(server, policy_document(
        allow("iot:Connect", "client/*"), allow("iot:Receive", "topic/*")))
    d = create_device(server, tmp_path, name)
    c = clients.connect(server, d, protocol=MQTTv5, client_id=unique("ev-nosub"))
    assert c.subscribe_result("$aws/events/#") == [RC_NOT_AUTHORIZED]


def test_clients_cannot_publish_events(server, clients, device):
    c = clients.connect(server, device, protocol=MQTTv5, client_id=unique("ev-forge"))
    assert c.publish_result(f"$aws/events/presence/connected/{unique('x')}", b"{}") == \
        RC_NOT_AUTHORIZED


def test_events_can_be_switched_off(module_server_factory, clients, tmp_path):
    srv = module_server_factory("--without", "lifecycle-events", name="no-events")
    d = open_device(srv, tmp_path)
    w = Watcher(clients, srv, d)
    c = clients.connect(srv, d, client_id=unique("ev-off"))
    assert c.subscribe_result(f"{unique('s')}/x") == [1]
    c.close()
    time.sleep(1.0)
    assert w.client.messages() == [], [m.topic for m in w.client.messages()]
