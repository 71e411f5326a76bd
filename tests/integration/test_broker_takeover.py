"""Client id takeover (shared/spec/broker-and-policy.md §4.2, §5.1): a second connection with a
client id in use wins; the old connection is closed, its Will is published, and its disconnected
event says DUPLICATE_CLIENTID with the old connection's session and versionNumber, before the
newcomer's connected event. A newcomer that is refused takes nothing over. A resumed persistent
session keeps its subscriptions."""

import pytest

from broker_support import Clients, Watcher, open_device
from iotmock_support import (MQTTv311, MQTTv5, PROTOCOLS, PUBACK_OK, allow, create_device,
                             create_policy, policy_document, unique)

COMBOS = [(old, new) for old in PROTOCOLS.values() for new in PROTOCOLS.values()]
COMBO_IDS = [f"{o}-then-{n}" for o in PROTOCOLS for n in PROTOCOLS]


@pytest.fixture(scope="module")
def device(server, tmp_path_factory):
    return open_device(server, tmp_path_factory.mktemp("takeover"))


CLIENT_POOL = Clients


@pytest.fixture
def watcher(server, clients, device):
    return Watcher(clients, server, device, filters=("$aws/events/#", "will/#"))


@pytest.mark.parametrize("old_protocol,new_protocol", COMBOS, ids=COMBO_IDS)
def test_newcomer_wins_and_old_will_is_published(server, clients, device, watcher, old_protocol,
                                                 new_protocol):
    client_id = unique("dup")
    will = f"will/{unique('w')}"
    old = clients.new(server, device, protocol=old_protocol, client_id=client_id)
    old._c.will_set(will, b"old connection gone", qos=1)
    assert old.try_connect().ok
    first = watcher.expect("connected", client_id)

    new = clients.connect(server, device, protocol=new_protocol, client_id=client_id)
    assert old.wait_closed(), "the old connection must be closed"
    assert new.connected and not new.closed

    m = watcher.client.wait_message(will, 5)
    assert m is not None and m.payload == b"old connection gone", "old Will not published"

    gone = watcher.expect("disconnected", client_id)
    assert (gone["disconnectReason"], gone["clientInitiatedDisconnect"]) == \
        ("DUPLICATE_CLIENTID", False)
    assert gone["versionNumber"] == first["versionNumber"]
    assert gone["sessionIdentifier"] == first["sessionIdentifier"]
    second = watcher.expect("connected", client_id)
    assert second["versionNumber"] == first["versionNumber"] + 1
    assert second["sessionIdentifier"] != first["sessionIdentifier"], "clean: a new session"
    presence = "$aws/events/presence/{}/" + client_id
    assert watcher.about(client_id)[:3] == [presence.format("connected"),
                                             presence.format("disconnected"),
                                             presence.format("connected")], "old out, then new in"

    # The newcomer is fully served, and its own end is reported once, as its own.
    topic = f"dup/{unique('t')}"
    assert new.subscribe_result(topic) == [1]
    assert new.publish_result(topic) in PUBACK_OK
    assert new.wait_message(topic, 5) is not None
    new.close()
    end = watcher.expect("disconnected", client_id)
    assert (end["disconnectReason"], end["versionNumber"]) == \
        ("CLIENT_INITIATED_DISCONNECT", second["versionNumber"])


@pytest.mark.xfail(strict=True, reason="Mosquitto 2.0.11 closes a taken-over MQTT 5 connection "
                   "without sending DISCONNECT 0x8E Session taken over, and a plugin cannot")
def test_old_mqtt5_connection_gets_disconnect_0x8e(server, clients, device):
    client_id = unique("dup5")
    old = clients.connect(server, device, protocol=MQTTv5, client_id=client_id)
    clients.connect(server, device, protocol=MQTTv5, client_id=client_id)
    assert old.wait_closed()
    assert old.server_disconnect_code == 0x8E, old.disconnect_codes


@pytest.mark.parametrize("protocol", list(PROTOCOLS.values()), ids=list(PROTOCOLS))
def test_refused_newcomer_takes_nothing_over(server, clients, device, watcher, tmp_path,
                                             protocol):
    """Refused at CONNECT (its policy does not allow the client id): the old connection stays
    up and keeps its rights."""
    client_id = unique("keep")
    old = clients.connect(server, device, protocol=protocol, client_id=client_id)
    topic = f"keep/{unique('t')}"
    assert old.subscribe_result(topic) == [1]
    stranger = create_device(server, tmp_path, create_policy(server, policy_document(
        allow("iot:Connect", "client/someone-else"))))
    res = clients.new(server, stranger, protocol=protocol, client_id=client_id).try_connect()
    assert not res.ok, res
    assert not old.closed and old.connected
    assert old.publish_result(topic) in PUBACK_OK
    assert old.wait_message(topic, 5) is not None
    assert watcher.wait("disconnected", client_id, 0.5) is None


def test_resumed_session_keeps_subscriptions_and_matching(server, clients, device):
    client_id = unique("resume")
    base = unique("rs")
    old = clients.new(server, device, protocol=MQTTv311, client_id=client_id)
    old._c._clean_session = False
    assert old.try_connect().ok
    assert old.subscribe_result(f"{base}/#") == [1]
    new = clients.new(server, device, protocol=MQTTv311, client_id=client_id)
    new._c._clean_session = False
    assert new.try_connect().ok
    assert old.wait_closed()
    pub = clients.connect(server, device, protocol=MQTTv311)
    for t in (base, f"{base}/x"):
        assert pub.publish_result(t) in PUBACK_OK
    m = new.wait_message(f"{base}/x", 5)
    assert m is not None, "the resumed session's subscription delivers"
    assert new.wait_message(base, 0.5) is None, "and still by AWS's rules (# not the parent)"
