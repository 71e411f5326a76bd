"""A refused MQTT 5 QoS 0 PUBLISH (shared/spec/broker-and-policy.md §3.2): it has no PUBACK to
carry 0x87. AWS's answer is UNCONFIRMED; the spec's default is DISCONNECT 0x87. Mosquitto 2.0.11
lets a plugin end the connection with DISCONNECT 0x80 or a plain close, not with 0x87, so iotmock
sends DISCONNECT 0x80 by default; `--qos0-refusal close` closes without DISCONNECT and
`--qos0-refusal drop` drops the message and keeps the connection (stock Mosquitto). QoS 1 keeps its
PUBACK 0x87 in every mode. The bytes are read off the wire with a hand-made MQTT client."""

import subprocess

import pytest

from broker_support import RawMqtt
from iotmock_support import (IOTMOCK_BIN, ServerLog, allow, create_device, create_policy, iot_arn,
                             policy_document, unique)

DISCONNECT = 0xE0
PUBACK = 0x40
RC_UNSPECIFIED = 0x80
RC_NOT_AUTHORIZED = 0x87


@pytest.fixture(scope="module")
def servers(module_server_factory):
    return {"default": module_server_factory(name="qos0-default"),
            "close": module_server_factory("--qos0-refusal", "close", name="qos0-close"),
            "drop": module_server_factory("--qos0-refusal", "drop", name="qos0-drop")}


@pytest.fixture(scope="module")
def server(servers):
    return servers["default"]


def device_on(srv, tmp_path_factory):
    name = create_policy(srv, policy_document(
        allow("iot:Connect", "client/*"),
        allow(["iot:Publish", "iot:Receive"], "topic/q0/ok/*"),
        allow("iot:Subscribe", "topicfilter/q0/*")))
    return create_device(srv, tmp_path_factory.mktemp("qos0"), name)


@pytest.fixture
def raw_on(servers, tmp_path_factory):
    conns, devices = [], {}

    def make(mode):
        srv = servers[mode]
        if mode not in devices:
            devices[mode] = device_on(srv, tmp_path_factory)
        d = devices[mode]
        r = RawMqtt(srv, d.cert, d.key)
        r.device = d
        conns.append(r)
        r.connect(unique("q0"))
        assert r.connack()[0] == 0
        return r

    yield make
    for r in conns:
        r.close()


def refused_publish(r, srv, qos=0, packet_id=1):
    topic = f"q0/no/{unique('t')}"
    log = ServerLog(srv)
    r.publish(topic, b"refused", qos=qos, packet_id=packet_id)
    return topic, log


def assert_puback_ok(packet, packet_id):
    """A PUBACK for PACKET_ID with a success code (0x10: no subscribers, as Mosquitto says)."""
    assert packet[0] == PUBACK and packet[1][:2] == packet_id.to_bytes(2, "big"), packet
    assert packet[1][2:3] in (b"", b"\x00", b"\x10"), packet


def assert_logged(log, r, topic):
    refusals = [x for x in log.refusals(action="iot:Publish") if topic in x.line]
    assert len(refusals) == 1, log.text()
    assert iot_arn(f"topic/{topic}") in refusals[0].line
    assert refusals[0].cert == r.device.cert_id


def test_default_is_disconnect_0x80(servers, raw_on):
    r = raw_on("default")
    topic, log = refused_publish(r, servers["default"])
    assert r.read_packet() == (DISCONNECT, bytes([RC_UNSPECIFIED]))
    assert r.read_packet() is None, "connection not closed after DISCONNECT"
    assert_logged(log, r, topic)


def test_default_disconnect_publishes_the_will(servers, raw_on, tmp_path_factory):
    will_topic = f"q0/ok/will-{unique('w')}"
    watcher = raw_on("default")
    watcher.subscribe([(will_topic, 1)], packet_id=3)
    assert watcher.read_packet()[0] == 0x90  # SUBACK
    r = RawMqtt(servers["default"], watcher.device.cert, watcher.device.key)
    try:
        r.connect(unique("q0will"), will=(will_topic, b"gone", 0, False))
        assert r.connack()[0] == 0
        refused_publish(r, servers["default"])
        assert r.read_packet() == (DISCONNECT, bytes([RC_UNSPECIFIED]))
    finally:
        r.close()
    first, body = watcher.read_packet()
    assert first & 0xF0 == 0x30 and will_topic.encode() in body and body.endswith(b"gone"), body


def test_close_mode_closes_without_disconnect(servers, raw_on):
    r = raw_on("close")
    topic, log = refused_publish(r, servers["close"])
    assert r.read_packet() is None, "expected a close without any packet"
    assert_logged(log, r, topic)


def test_drop_mode_keeps_the_connection(servers, raw_on):
    r = raw_on("drop")
    topic, log = refused_publish(r, servers["drop"])
    # Still usable: an allowed QoS 1 PUBLISH is acknowledged.
    r.publish(f"q0/ok/{unique('t')}", b"ok", qos=1, packet_id=9)
    assert_puback_ok(r.read_packet(), 9)  # still usable after the dropped QoS 0
    assert_logged(log, r, topic)


@pytest.mark.parametrize("mode", ["default", "close", "drop"])
def test_qos1_still_gets_puback_0x87(servers, raw_on, mode):
    r = raw_on(mode)
    topic, log = refused_publish(r, servers[mode], qos=1, packet_id=7)
    assert r.read_packet() == (PUBACK, b"\x00\x07" + bytes([RC_NOT_AUTHORIZED]))
    r.publish(f"q0/ok/{unique('t')}", b"ok", qos=1, packet_id=8)
    assert_puback_ok(r.read_packet(), 8)  # still usable after PUBACK 0x87
    assert_logged(log, r, topic)


def test_unknown_mode_is_refused_by_the_cli(tmp_path):
    p = subprocess.run([str(IOTMOCK_BIN), "serve", "--state-dir", str(tmp_path),
                        "--qos0-refusal", "maybe"], capture_output=True, text=True, timeout=20)
    assert p.returncode != 0 and "--qos0-refusal disconnect|close|drop" in p.stderr, p
