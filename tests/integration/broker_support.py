"""Helpers for the broker-behaviour and lifecycle-event tests (test_broker_*.py, test_events_*.py;
shared/spec/broker-and-policy.md §4, §5): a device whose policy allows every topic, a client that
also records what paho 1.6.1 reports of CONNACK and DISCONNECT, and a watcher of
$aws/events/#."""

import json
import re
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Optional

from iotmock_support import (ClientPool, MQTTv5, PolicyClient, Server, allow, create_device, create_policy,
                             policy_document, unique)

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")

# Field order of AWS's documented examples (§5.1, §5.2, §5.3).
CONNECTED_FIELDS = ["clientId", "timestamp", "eventType", "sessionIdentifier",
                    "principalIdentifier", "ipAddress", "versionNumber"]
DISCONNECTED_FIELDS = ["clientId", "timestamp", "eventType", "sessionIdentifier",
                       "principalIdentifier", "clientInitiatedDisconnect", "disconnectReason",
                       "versionNumber"]
SUBSCRIPTION_FIELDS = ["clientId", "timestamp", "eventType", "sessionIdentifier",
                       "principalIdentifier", "topics"]
CONNECT_FAILED_FIELDS = ["clientId", "timestamp", "eventType", "sessionIdentifier",
                         "principalIdentifier", "connectFailureReason", "ipAddress"]

EVENT_TOPIC = {
    "connected": "$aws/events/presence/connected/{}",
    "disconnected": "$aws/events/presence/disconnected/{}",
    "connect_failed": "$aws/events/presence/connect_failed/{}",
    "subscribed": "$aws/events/subscriptions/subscribed/{}",
    "unsubscribed": "$aws/events/subscriptions/unsubscribed/{}",
}

PAYLOAD_MAX = 128 * 1024

# MQTT 5 reason codes the tests look for.
RC_NOT_AUTHORIZED = 0x87
RC_UNSPECIFIED = 0x80
RC_QOS_NOT_SUPPORTED = 0x9B


def open_policy_document() -> dict:
    """Everything on every topic: the tests of broker behaviour are not about policies."""
    return policy_document(
        allow("iot:Connect", "client/*"),
        allow(["iot:Publish", "iot:Receive", "iot:RetainPublish"], "topic/*"),
        allow("iot:Subscribe", "topicfilter/*"))


def open_device(server: Server, directory: Path):
    return create_device(server, directory, create_policy(server, open_policy_document()))


def now_ms() -> int:
    return int(time.time() * 1000)


class WireClient(PolicyClient):
    """A PolicyClient that keeps the CONNACK's MQTT 5 properties and can reach another port."""

    def __init__(self, server, cert, key, port: Optional[int] = None, alpn=None, **kw):
        if port is not None:  # the same server through another listener
            server = SimpleNamespace(mqtt_port=port, root_ca=server.root_ca, host=server.host,
                                     real=server)
        super().__init__(server, cert, key, **kw)
        self.connack_properties = None
        self.disconnect_codes = []  # every reason paho reported, a DISCONNECT packet's first
        if alpn:
            self._c._ssl_context.set_alpn_protocols(list(alpn))

    def _on_connect(self, client, userdata, flags, rc, properties=None):
        self.connack_properties = properties
        super()._on_connect(client, userdata, flags, rc, properties)

    def _on_disconnect(self, client, userdata, rc, properties=None):
        with self._cond:
            self.disconnect_codes.append(rc.value if hasattr(rc, "value") else int(rc))
        super()._on_disconnect(client, userdata, rc, properties)

    def connack_property(self, name: str):
        return getattr(self.connack_properties, name, None)

    @property
    def server_disconnect_code(self):
        """The reason code of the server's MQTT 5 DISCONNECT, None if none came."""
        with self._cond:
            codes = [c for c in self.disconnect_codes if c >= 0x80]
            return codes[0] if codes else None

    def tls_socket(self):
        return self._c.socket()

    def drop(self):
        """Ends the connection without DISCONNECT, as a network failure would."""
        import socket
        sock = self._c.socket()
        if sock is not None:
            sock.shutdown(socket.SHUT_RDWR)


class Clients(ClientPool):
    """WireClients of one test (MQTT 5 unless asked otherwise), closed at its end."""

    def new(self, server, device, *, protocol=MQTTv5, client_id=None, **kw) -> WireClient:
        c = WireClient(server, device.cert, device.key, protocol=protocol,
                       client_id=client_id or unique("brk"), **kw)
        self._clients.append(c)
        return c


class Watcher:
    """An MQTT 5 client subscribed to $aws/events/# (QoS 1)."""

    def __init__(self, clients: Clients, server, device, filters=("$aws/events/#",)):
        # A short keep-alive: paho 1.6.1 ignores a Server Keep Alive lower than its own.
        self.client = clients.connect(server, device, client_id=unique("watcher"), keepalive=5)
        codes = self.client.subscribe_result(*filters)
        assert codes == [1] * len(filters), f"watcher SUBACK {codes}"

    def wait(self, kind: str, client_id: str, timeout: float = 5.0) -> Optional[dict]:
        """The next not-yet-taken event of KIND about CLIENT_ID, parsed (None if none came)."""
        m = self.client.wait_message(EVENT_TOPIC[kind].format(client_id), timeout)
        if m is None:
            return None
        assert m.qos <= 1 and not m.retain, f"event QoS {m.qos} retain {m.retain}"
        return json.loads(m.payload, object_pairs_hook=_ordered)

    def expect(self, kind: str, client_id: str, timeout: float = 5.0) -> dict:
        ev = self.wait(kind, client_id, timeout)
        assert ev is not None, (f"no {kind} event for {client_id} within {timeout} s; got "
                                f"{[m.topic for m in self.client.messages()]}")
        return ev

    def about(self, client_id: str) -> list:
        """Every event received so far whose topic ends with CLIENT_ID."""
        return [m.topic for m in self.client.messages() if m.topic.endswith("/" + client_id)]


class _Ordered(dict):
    """A dict that remembers the key order of the JSON object it came from."""

    keys_in_order: list


def _ordered(pairs):
    d = _Ordered(pairs)
    d.keys_in_order = [k for k, _ in pairs]
    return d


def check_common(ev: dict, fields: list, event_type: str, client_id: str, cert_id: str,
                 since_ms: int):
    assert ev.keys_in_order == fields, f"fields {ev.keys_in_order}, expected {fields}"
    assert ev["clientId"] == client_id
    assert ev["eventType"] == event_type
    assert ev["principalIdentifier"] == cert_id
    assert UUID.match(ev["sessionIdentifier"]), ev["sessionIdentifier"]
    ts = ev["timestamp"]
    assert type(ts) is int, f"timestamp {ts!r} is not an integer"
    assert since_ms - 1000 <= ts <= now_ms() + 1000, f"timestamp {ts} not in milliseconds of now"


# --------------------------------------------------------------------------------------------
# MQTT packets by hand, for what paho 1.6.1 does not show: it ignores a DISCONNECT whose remaining
# length is 1 (reason code only, as Mosquitto sends it) and hides the SUBACK of a QoS 2 request.

def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n % 128, n // 128
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _string(s) -> bytes:
    b = s.encode() if isinstance(s, str) else s
    return len(b).to_bytes(2, "big") + b


def _packet(first: int, body: bytes) -> bytes:
    return bytes([first]) + _varint(len(body)) + body


class RawMqtt:
    """One TLS connection speaking MQTT from hand-made packets."""

    def __init__(self, server, cert, key, port: Optional[int] = None, alpn=None,
                 server_hostname: str = "localhost"):
        import socket
        import ssl
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(cafile=str(server.root_ca))
        ctx.load_cert_chain(certfile=str(cert), keyfile=str(key))
        if alpn:
            ctx.set_alpn_protocols(list(alpn))
        raw = socket.create_connection(("127.0.0.1", port or server.mqtt_port), timeout=5)
        self.sock = ctx.wrap_socket(raw, server_hostname=server_hostname)
        self.version = None

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def send(self, data: bytes):
        self.sock.sendall(data)

    def _read_exact(self, n: int) -> Optional[bytes]:
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                return None
            buf += chunk
        return buf

    def read_packet(self, timeout: float = 5.0):
        """(first byte, body) of the next packet; None when the server closed the connection;
        "timeout" when nothing came within TIMEOUT."""
        import socket
        import ssl
        self.sock.settimeout(timeout)
        try:
            head = self._read_exact(1)
            if head is None:
                return None
            length, shift = 0, 0
            while True:
                b = self._read_exact(1)
                if b is None:
                    return None
                length |= (b[0] & 0x7F) << shift
                shift += 7
                if not b[0] & 0x80:
                    break
            body = self._read_exact(length) if length else b""
            return None if body is None else (head[0], body)
        except socket.timeout:
            return "timeout"
        except (ConnectionError, ssl.SSLError, OSError):
            return None

    def connect(self, client_id: str, version: int = 5, keepalive: int = 60, clean: bool = True,
                will: Optional[tuple] = None, properties: bytes = b""):
        """Sends CONNECT; WILL is (topic, payload, qos, retain)."""
        self.version = version
        flags = 0x02 if clean else 0
        payload = _string(client_id)
        if will:
            topic, message, qos, retain = will
            flags |= 0x04 | (qos << 3) | (0x20 if retain else 0)
            payload += (b"\x00" if version == 5 else b"") + _string(topic) + _string(message)
        body = _string("MQTT") + bytes([version, flags]) + keepalive.to_bytes(2, "big")
        if version == 5:
            body += _varint(len(properties)) + properties
        self.send(_packet(0x10, body + payload))

    def connack(self):
        """(return/reason code, raw properties) of the CONNACK, or None / "timeout"."""
        p = self.read_packet()
        if p is None or p == "timeout":
            return p
        first, body = p
        assert first == 0x20, f"expected CONNACK, got {first:#x}"
        props = b""
        if self.version == 5 and len(body) > 2:
            n, i, shift = 0, 2, 0
            while True:
                n |= (body[i] & 0x7F) << shift
                shift += 7
                i += 1
                if not body[i - 1] & 0x80:
                    break
            props = body[i:i + n]
        return body[1], props

    def publish(self, topic: str, payload: bytes = b"", qos: int = 0, packet_id: int = 1,
                retain: bool = False):
        body = _string(topic) + (packet_id.to_bytes(2, "big") if qos else b"")
        if self.version == 5:
            body += b"\x00"
        self.send(_packet(0x30 | (qos << 1) | int(retain), body + payload))

    def subscribe(self, filters, packet_id: int = 1, properties: bytes = b""):
        """FILTERS: [(filter, options byte)]."""
        body = packet_id.to_bytes(2, "big")
        if self.version == 5:
            body += _varint(len(properties)) + properties
        for f, opts in filters:
            body += _string(f) + bytes([opts])
        self.send(_packet(0x82, body))


def mqtt5_properties(raw: bytes) -> dict:
    """The CONNACK properties iotmock's tests look at, by MQTT 5 identifier."""
    sizes = {0x24: 1, 0x25: 1, 0x28: 1, 0x29: 1, 0x2A: 1, 0x13: 2, 0x21: 2, 0x22: 2,
             0x11: 4, 0x27: 4}
    out, i = {}, 0
    while i < len(raw):
        ident = raw[i]
        i += 1
        if ident in sizes:
            out[ident] = int.from_bytes(raw[i:i + sizes[ident]], "big")
            i += sizes[ident]
        elif ident in (0x12, 0x1A, 0x1C, 0x1F):  # strings
            n = int.from_bytes(raw[i:i + 2], "big")
            out[ident] = raw[i + 2:i + 2 + n].decode()
            i += 2 + n
        else:
            raise AssertionError(f"unexpected CONNACK property {ident:#x} in {raw.hex()}")
    return out


PROP_MAXIMUM_QOS = 0x24
PROP_RETAIN_AVAILABLE = 0x25
PROP_RECEIVE_MAXIMUM = 0x21
PROP_TOPIC_ALIAS_MAXIMUM = 0x22
PROP_SERVER_KEEP_ALIVE = 0x13
PROP_ASSIGNED_CLIENT_ID = 0x12
PROP_SUBSCRIPTION_IDENTIFIER = 0x0B
