"""Helpers for the iotmock integration tests: the server process, an MQTT client on Debian's
python3-paho-mqtt 1.6.1, the fleet provisioning request/response helpers, a fake AWS Lambda
endpoint for pre-provisioning hooks, and openssl / X.509 helpers.

Fixtures live in conftest.py; this module holds plain code so that test files can import it.

Run with Debian's interpreter (the `python3` on PATH is a pyenv build without paho):
    /usr/bin/python3 -m pytest tests/integration
"""

import base64
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Optional

import paho.mqtt.client as paho
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtensionOID, NameOID

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "fixtures"
FLEET_DEFAULT_TEMPLATE_FILE = FIXTURES / "templates" / "fleet-default.json"
IOTMOCK_BIN = Path(os.environ.get("IOTMOCK_BIN", str(REPO / "build" / "cli" / "iotmock")))

HEALTH_TIMEOUT = 20.0  # seconds until GET /_iotmock/health must answer 200
STOP_TIMEOUT = 10.0  # seconds the server gets to exit after SIGTERM
# Exit statuses accepted after SIGTERM: 0 (handled the signal, shut down cleanly) or -15 (the
# default action of SIGTERM; Popen reports death by signal N as -N). The contract allows both.
ACCEPTED_EXIT_CODES = (0, -signal.SIGTERM)

ACCOUNT = "123456789012"
REGION = "us-east-1"
DEVICE_POLICY = "iotmock-device-policy"
FLEET_DEFAULT = "fleet-default"

# Issued-certificate profile (shared/spec/provisioning.md §1.7).
AWS_ISSUER_OU = "Amazon Web Services O=Amazon.com Inc. L=Seattle ST=Washington C=US"
AWS_ISSUER_LINE = "issuer=OU = " + AWS_ISSUER_OU  # `openssl x509 -noout -issuer`, OpenSSL 3
AWS_NOT_AFTER_LINE = "notAfter=Dec 31 23:59:59 2049 GMT"  # `openssl x509 -noout -enddate`
KEYS_SUBJECT_CN = "AWS IoT Certificate"

# Fleet provisioning topics (shared/spec/provisioning.md §1.1).
CREATE_KEYS = "$aws/certificates/create/json"
CREATE_FROM_CSR = "$aws/certificates/create-from-csr/json"


def provision_topic(template: str) -> str:
    return f"$aws/provisioning-templates/{template}/provision/json"


def template_arn(template: str) -> str:
    return f"arn:aws:iot:{REGION}:{ACCOUNT}:provisioningtemplate/{template}"


def lambda_arn(function: str) -> str:
    return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{function}"


EMPTY_TOKEN_MESSAGE = "Certificate ownership token cannot be empty."
KEYS_ACCEPTED_FIELDS = {"certificateId", "certificatePem", "privateKey", "certificateOwnershipToken"}
CSR_ACCEPTED_FIELDS = {"certificateId", "certificatePem", "certificateOwnershipToken"}
REGISTER_ACCEPTED_FIELDS = {"deviceConfiguration", "thingName"}
REJECTED_FIELDS = {"statusCode", "errorCode", "errorMessage"}
HEX64 = re.compile(r"^[0-9a-f]{64}$")

METRICS_USERNAME = "?SDK=Test&Version=1"


# Plain (non-reserved) topics the tests use with the claim certificate for round trips and
# markers. Authorization policies are not enforced yet; once they are, the claim policy
# (fixtures/policies/iotmock-claim-policy.json) allows only the provisioning topics and these
# helpers must move to topics it allows (or to a device certificate).
PLAIN_TOPIC_PREFIX = "iotmock-test"


def plain_topic(kind: str) -> str:
    return f"{PLAIN_TOPIC_PREFIX}/{unique(kind)}"


def unique(prefix: str) -> str:
    """A name unique to this run, valid as thing name, client id and topic level."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def free_port() -> int:
    """A TCP port on the loopback that was free a moment ago (bind port 0, read it, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_accepts(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


# --------------------------------------------------------------------------------------------
# The server


class ServerStartError(Exception):
    pass


def start_on_free_ports(make, attempts: int = 3):
    """MAKE(attempt) -> a new server object, which is started and returned; made again when the
    ports free_port() picked were taken meanwhile (any other start failure is raised)."""
    for attempt in range(attempts):
        srv = make(attempt)
        try:
            return srv.start()
        except ServerStartError:
            if "in use" not in srv.stderr_text().lower():
                raise
    raise AssertionError(f"no free ports in {attempts} attempts")


# The default claim policy allows exactly the calls of template fleet-default (as AWS recommends).
# Most tests provision through other templates and use marker topics, so after start the fixture
# does what a user does on AWS: create a wider policy and attach it to the claim certificate.
TEST_CLAIM_POLICY = "iotmock-test-claim"


def test_claim_policy_document() -> dict:
    topics = ["$aws/certificates/*", "$aws/provisioning-templates/*", f"{PLAIN_TOPIC_PREFIX}/*"]
    arn = "arn:aws:iot:us-east-1:123456789012"
    return {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["iot:Publish", "iot:Receive", "iot:RetainPublish"],
         "Resource": [f"{arn}:topic/{t}" for t in topics]},
        {"Effect": "Allow", "Action": "iot:Subscribe",
         "Resource": [f"{arn}:topicfilter/{t}" for t in topics]}]}


class Server:
    """One `iotmock serve` process in its own state directory and process group.

    A subclass may run another build (BINARY), wait longer (HEALTH_TIMEOUT_S, STOP_TIMEOUT_S) or
    add environment variables for the process (EXTRA_ENV), as test_valgrind.py does."""

    binary: Path = IOTMOCK_BIN
    health_timeout_s: float = HEALTH_TIMEOUT
    stop_timeout_s: float = STOP_TIMEOUT
    extra_env: dict = {}

    def __init__(self, workdir: Path, extra_args=(), name: str = "iotmock",
                 grant_test_policy: bool = True):
        self.grant_test_policy = grant_test_policy
        self.name = name
        self.workdir = Path(workdir)
        self.state_dir = self.workdir / "state"
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.mqtt_port = free_port()
        self.http_port = free_port()
        while self.http_port == self.mqtt_port:
            self.http_port = free_port()
        self.extra_args = [str(a) for a in extra_args]
        self.stdout_path = self.workdir / "server.stdout"
        self.stderr_path = self.workdir / "server.stderr"
        self.proc: Optional[subprocess.Popen] = None
        self.exit_code: Optional[int] = None

    # Paths the server creates on its first start.
    @property
    def root_ca(self) -> Path:
        return self.state_dir / "root-ca.pem"

    @property
    def claim_cert(self) -> Path:
        return self.state_dir / "claim-cert.pem"

    @property
    def claim_key(self) -> Path:
        return self.state_dir / "claim-key.pem"

    @property
    def host(self) -> str:
        return "localhost"

    @property
    def health_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}/_iotmock/health"

    @property
    def argv(self):
        return [str(self.binary), "serve", "--state-dir", str(self.state_dir),
                "--mqtt-port", str(self.mqtt_port), "--http-port", str(self.http_port),
                "--host", "localhost", *self.extra_args]

    def stderr_text(self, limit: int = 20000) -> str:
        try:
            data = self.stderr_path.read_text(errors="replace")
        except OSError:
            return "<no stderr file>"
        return data[-limit:]

    def describe(self) -> str:
        return (f"{self.name}: {' '.join(self.argv)}\n"
                f"--- server stderr (tail) ---\n{self.stderr_text()}\n--- end ---")

    def start(self) -> "Server":
        if not Path(self.binary).exists():
            raise ServerStartError(
                f"iotmock binary not found at {self.binary}; build it (cmake --build build) "
                "or set IOTMOCK_BIN")
        env = {**os.environ, **self.extra_env} if self.extra_env else None
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                         start_new_session=True, cwd=str(self.workdir), env=env)
        try:
            self._wait_ready()
            if self.grant_test_policy:
                self.attach_claim_policy(TEST_CLAIM_POLICY, test_claim_policy_document())
        except BaseException:
            self._kill_group()
            raise
        return self

    def control_plane(self, method: str, path: str, body=None, headers=None):
        """One control-plane call; returns (status, parsed JSON or None)."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"http://127.0.0.1:{self.http_port}{path}", data=data,
                                     method=method, headers=headers or {})
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                raw = resp.read()
                return resp.status, (json.loads(raw) if raw else None)
        except urllib.error.HTTPError as e:
            raw = e.read()
            return e.code, (json.loads(raw) if raw else None)

    def attach_claim_policy(self, name: str, document: dict):
        """CreatePolicy + AttachPolicy onto the claim certificate, as a user would on AWS."""
        status, body = self.control_plane("POST", f"/policies/{name}",
                                          {"policyDocument": json.dumps(document)})
        if status not in (200, 409):
            raise ServerStartError(f"CreatePolicy {name}: HTTP {status} {body}")
        claim_arn = "arn:aws:iot:us-east-1:123456789012:cert/" + cert_id(self.claim_cert.read_text())
        status, body = self.control_plane("PUT", f"/target-policies/{name}", {"target": claim_arn})
        if status != 200:
            raise ServerStartError(f"AttachPolicy {name}: HTTP {status} {body}")

    def _wait_ready(self):
        deadline = time.monotonic() + self.health_timeout_s
        last = "no answer"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServerStartError(f"iotmock serve exited with {self.proc.returncode} before "
                                       f"it was healthy\n{self.describe()}")
            try:
                with urllib.request.urlopen(self.health_url, timeout=1.0) as resp:
                    if resp.status == 200:
                        break
                    last = f"HTTP {resp.status}"
            except urllib.error.HTTPError as e:
                last = f"HTTP {e.code}"
            except OSError as e:
                last = repr(e)
            time.sleep(0.1)
        else:
            raise ServerStartError(f"health check not 200 within {self.health_timeout_s} s (last: {last})"
                                   f"\n{self.describe()}")
        # The contract says the broker is ready once health answers; allow the MQTT listener a
        # short grace in case health is served by a thread that starts first.
        grace = time.monotonic() + 2.0
        while not port_accepts(self.mqtt_port):
            if time.monotonic() > grace:
                raise ServerStartError(f"health is 200 but nothing listens on MQTT port "
                                       f"{self.mqtt_port}\n{self.describe()}")
            time.sleep(0.05)
        for path in (self.root_ca, self.claim_cert, self.claim_key):
            if not path.is_file():
                raise ServerStartError(f"{path} missing after start\n{self.describe()}")

    def _group_alive(self) -> bool:
        try:
            os.killpg(self.proc.pid, 0)
            return True
        except ProcessLookupError:
            return False
        except PermissionError:
            return True

    def _kill_group(self):
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass

    def stop(self) -> list:
        """SIGTERM, then check the exit. Returns a list of problems (empty when clean)."""
        problems = []
        if self.proc is None:
            return problems
        if self.proc.poll() is not None:
            problems.append(f"server had already exited with {self.proc.returncode} before stop")
        else:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=self.stop_timeout_s)
            except subprocess.TimeoutExpired:
                problems.append(f"server did not exit within {self.stop_timeout_s} s of SIGTERM")
                self._kill_group()
        self.exit_code = self.proc.returncode
        if not problems and self.exit_code not in ACCEPTED_EXIT_CODES:
            problems.append(f"server exit code {self.exit_code}, expected one of "
                            f"{ACCEPTED_EXIT_CODES}")
        # The broker child (if any) must go with it and release the MQTT port.
        deadline = time.monotonic() + 3.0
        while self._group_alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        if self._group_alive():
            problems.append("processes of the server's process group still alive after it exited")
            self._kill_group()
        elif port_accepts(self.mqtt_port):
            problems.append(f"MQTT port {self.mqtt_port} still accepts connections after stop")
        return problems


# --------------------------------------------------------------------------------------------
# MQTT client (paho 1.6.1)

MQTTv311 = paho.MQTTv311
MQTTv5 = paho.MQTTv5
PROTOCOLS = {"mqtt311": MQTTv311, "mqtt5": MQTTv5}
NOT_AUTHORISED = {MQTTv311: 5, MQTTv5: 135}


@dataclass
class Message:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    properties: Any = None

    def json(self):
        return json.loads(self.payload.decode("utf-8"))


@dataclass
class ConnectResult:
    ok: bool
    connack_rc: Optional[int] = None  # CONNACK return/reason code, if a CONNACK arrived
    error: Optional[str] = None  # TLS or socket failure, if any

    def __str__(self):
        return f"ok={self.ok} connack_rc={self.connack_rc} error={self.error}"


class _PahoClient(paho.Client):
    """paho's threaded loop, made to end (not retry) when the connection ends and to report the
    TLS errors that 1.6.1 lets escape from the network thread (e.g. a TLS 1.3 alert about the
    client certificate, which arrives on the first read after the handshake)."""

    owner: "MqttClient"

    def _thread_main(self):
        try:
            self.loop_forever(retry_first_connection=False)
        except Exception as exc:  # ssl.SSLError, OSError
            self.owner._loop_failed(exc)
        finally:
            self.owner._loop_ended()


class MqttClient:
    """A TLS MQTT client with a client certificate that records everything it receives."""

    def __init__(self, server: Server, cert, key, *, client_id: Optional[str] = None,
                 protocol=MQTTv311, username: Optional[str] = None,
                 password: Optional[str] = None, ca=None, keepalive: int = 30,
                 host: Optional[str] = None):
        self.server = server
        self.cert = str(cert)
        self.key = str(key)
        self.ca = str(ca or server.root_ca)
        self.protocol = protocol
        self.client_id = client_id or unique("pytest")
        self.username = username
        self.keepalive = keepalive
        self.host = host or server.host
        self._cond = threading.Condition()
        self._messages: list = []  # every Message, in arrival order
        self._taken: set = set()  # indexes of messages handed out by wait_*()
        self._subacks: dict = {}
        self._connack_rc: Optional[int] = None
        self._connected = False
        self._loop_error: Optional[str] = None
        self._loop_done = False
        self._disconnect_rc: Optional[int] = None
        kwargs = {"client_id": self.client_id, "protocol": protocol, "reconnect_on_failure": False}
        if protocol == MQTTv311:
            kwargs["clean_session"] = True
        self._c = _PahoClient(**kwargs)
        self._c.owner = self
        if username is not None:
            self._c.username_pw_set(username, password)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(cafile=self.ca)
        ctx.load_cert_chain(certfile=self.cert, keyfile=self.key)
        self._c.tls_set_context(ctx)
        self._c.on_connect = self._on_connect
        self._c.on_disconnect = self._on_disconnect
        self._c.on_message = self._on_message
        self._c.on_subscribe = self._on_subscribe
        self._c.on_unsubscribe = self._on_unsubscribe

    # paho callbacks (network thread) ----------------------------------------------------------
    def _on_connect(self, client, userdata, flags, rc, properties=None):
        code = rc.value if hasattr(rc, "value") else int(rc)
        with self._cond:
            self._connack_rc = code
            self._connected = code == 0
            self._cond.notify_all()

    def _on_disconnect(self, client, userdata, rc, properties=None):
        code = rc.value if hasattr(rc, "value") else int(rc)
        with self._cond:
            self._connected = False
            self._disconnect_rc = code
            self._cond.notify_all()

    def _on_message(self, client, userdata, msg):
        with self._cond:
            self._messages.append(Message(msg.topic, bytes(msg.payload), msg.qos, bool(msg.retain),
                                          getattr(msg, "properties", None)))
            self._cond.notify_all()

    def _on_subscribe(self, client, userdata, mid, granted, properties=None):
        codes = [g.value if hasattr(g, "value") else int(g) for g in granted]
        with self._cond:
            self._subacks[mid] = codes
            self._cond.notify_all()

    def _on_unsubscribe(self, client, userdata, mid, properties=None, reasons=None):
        with self._cond:
            self._subacks[mid] = []
            self._cond.notify_all()

    def _loop_failed(self, exc):
        with self._cond:
            self._loop_error = f"{type(exc).__name__}: {exc}"
            self._connected = False
            self._cond.notify_all()

    def _loop_ended(self):
        with self._cond:
            self._loop_done = True
            self._connected = False
            self._cond.notify_all()

    # connection ------------------------------------------------------------------------------
    def try_connect(self, timeout: float = 10.0) -> ConnectResult:
        try:
            self._c.connect(self.host, self.server.mqtt_port, keepalive=self.keepalive)
        except (OSError, ssl.SSLError) as exc:  # TLS handshake refused, connection refused
            return ConnectResult(False, None, f"{type(exc).__name__}: {exc}")
        self._c.loop_start()
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._connack_rc is None and not self._loop_done and self._loop_error is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            if self._connack_rc == 0 and self._connected:
                return ConnectResult(True, 0)
            rc, err = self._connack_rc, self._loop_error
            if rc is None and err is None:
                err = ("connection closed before CONNACK" if self._loop_done
                       else f"no CONNACK within {timeout} s")
        self.close()
        return ConnectResult(False, rc, err)

    def connect(self, timeout: float = 10.0) -> "MqttClient":
        res = self.try_connect(timeout)
        assert res.ok, f"client {self.client_id} with {self.cert} could not connect: {res}"
        return self

    @property
    def connected(self) -> bool:
        with self._cond:
            return self._connected

    def state(self) -> str:
        return (f"client {self.client_id}: connected={self._connected} "
                f"disconnect_rc={self._disconnect_rc} loop_error={self._loop_error}")

    def close(self):
        try:
            if self._connected:
                self._c.disconnect()
        except Exception:
            pass
        try:
            self._c.loop_stop()
        except Exception:
            pass
        sock = self._c.socket()
        if sock is not None:  # a connection that never got a CONNACK
            try:
                sock.close()
            except OSError:
                pass
        # paho 1.6.1 keeps a socket pair per client that only the garbage collector frees; a run
        # with hundreds of clients would otherwise pass 1024 descriptors and break select().
        try:
            self._c._reset_sockets(sockpair_only=True)
        except Exception:
            pass

    # subscribe / publish ----------------------------------------------------------------------
    def subscribe(self, *topics: str, qos: int = 1, timeout: float = 10.0,
                  require_granted: bool = True) -> list:
        """SUBSCRIBE and wait for the SUBACK; returns the granted QoS / reason codes."""
        rc, mid = self._c.subscribe([(t, qos) for t in topics])
        assert rc == paho.MQTT_ERR_SUCCESS, f"subscribe failed locally: rc={rc}; {self.state()}"
        codes = self._wait_ack(mid, timeout, "SUBACK")
        if require_granted:
            assert all(c < 0x80 for c in codes), (
                f"subscription to {topics} refused: {codes}")
        return codes

    def unsubscribe(self, *topics: str, timeout: float = 10.0):
        rc, mid = self._c.unsubscribe(list(topics))
        assert rc == paho.MQTT_ERR_SUCCESS, f"unsubscribe failed locally: rc={rc}"
        self._wait_ack(mid, timeout, "UNSUBACK")

    def _wait_ack(self, mid, timeout, what):
        deadline = time.monotonic() + timeout
        with self._cond:
            while mid not in self._subacks:
                left = deadline - time.monotonic()
                assert left > 0 and not self._loop_done, (
                    f"no {what} within {timeout} s; {self.state()}")
                self._cond.wait(min(left, 0.2))
            return self._subacks.pop(mid)

    def publish(self, topic: str, payload=None, qos: int = 1, timeout: float = 10.0):
        """Publishes; payload None sends zero bytes, dict/list is JSON-encoded. For QoS 1 waits
        for the PUBACK."""
        if isinstance(payload, (dict, list)):
            payload = json.dumps(payload)
        info = self._c.publish(topic, payload, qos=qos)
        assert info.rc == paho.MQTT_ERR_SUCCESS, f"publish to {topic} failed: rc={info.rc}"
        if qos > 0:
            info.wait_for_publish(timeout)
            assert info.is_published(), (f"no PUBACK for {topic} within {timeout} s; "
                                         f"{self.state()}")
        return info

    # received messages ------------------------------------------------------------------------
    def wait_any(self, topics, timeout: float = 10.0) -> Optional[Message]:
        """The first not-yet-taken message on one of TOPICS (exact names), or None."""
        topics = {topics} if isinstance(topics, str) else set(topics)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for i, m in enumerate(self._messages):
                    if i not in self._taken and m.topic in topics:
                        self._taken.add(i)
                        return m
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(min(left, 0.2))

    def wait_message(self, topic: str, timeout: float = 10.0) -> Optional[Message]:
        return self.wait_any({topic}, timeout)

    def messages(self, topic: Optional[str] = None) -> list:
        """Every message received so far (on TOPIC if given), taken or not."""
        with self._cond:
            return [m for m in self._messages if topic is None or m.topic == topic]

    def untaken(self) -> list:
        with self._cond:
            return [m for i, m in enumerate(self._messages) if i not in self._taken]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def claim_client(server: Server, **kw) -> MqttClient:
    """A connected client authenticated with the server's claim certificate."""
    return MqttClient(server, server.claim_cert, server.claim_key, **kw).connect()


def assert_cannot_connect(server: Server, cert, key, protocol=MQTTv311, **kw):
    """The connection must not succeed: a CONNACK 'not authorised' (5 on 3.1.1, 135 on 5) or a
    TLS/socket failure before any CONNACK."""
    c = MqttClient(server, cert, key, protocol=protocol, **kw)
    res = c.try_connect(timeout=10.0)
    c.close()
    assert not res.ok, f"{cert} connected but must not: {res}"
    if res.connack_rc is not None:
        assert res.connack_rc == NOT_AUTHORISED[protocol], (
            f"CONNACK code {res.connack_rc}, expected {NOT_AUTHORISED[protocol]} (not authorised)")
    return res


def round_trip(client: MqttClient, topic: Optional[str] = None, timeout: float = 10.0):
    """Subscribes to a plain topic, publishes to it at QoS 1 and checks the message comes back."""
    topic = topic or plain_topic("rt")
    body = unique("payload").encode()
    client.subscribe(topic)
    client.publish(topic, body, qos=1)
    m = client.wait_message(topic, timeout)
    assert m is not None, f"own message on {topic} not delivered; {client.state()}"
    assert m.payload == body
    return m


def claim_round_trip(client: MqttClient, timeout: float = 10.0):
    """The round trip a claim certificate's policy allows (the claim policy permits exactly the
    provisioning calls): a CreateCertificateFromCsr request without a CSR, answered with its
    rejection."""
    which, body = provision_request(client, "$aws/certificates/create-from-csr/json", b"{}",
                                    timeout=timeout)
    assert which == "rejected", body
    assert body["errorCode"] == "InvalidPayload", body
    return body


def assert_broker_serves(server: Server):
    """A new client can connect with the claim certificate and be answered."""
    assert server.proc.poll() is None, f"server exited with {server.proc.returncode}"
    with claim_client(server, client_id=unique("alive")) as c:
        claim_round_trip(c)


# --------------------------------------------------------------------------------------------
# Fleet provisioning requests


def provision_request(client: MqttClient, topic: str, payload=None, timeout: float = 15.0,
                      settle: float = 0.0, subscribe: bool = True):
    """Subscribes to TOPIC/accepted and TOPIC/rejected (waiting for the SUBACK), publishes PAYLOAD
    to TOPIC at QoS 1 and returns ("accepted"|"rejected", parsed JSON). With SETTLE > 0 waits that
    long afterwards and checks no second answer came on either topic."""
    accepted, rejected = topic + "/accepted", topic + "/rejected"
    if subscribe:
        client.subscribe(accepted, rejected, qos=1)
    client.publish(topic, payload, qos=1)
    m = client.wait_any({accepted, rejected}, timeout)
    assert m is not None, (f"no answer on {accepted} or {rejected} within {timeout} s; "
                           f"{client.state()}")
    which = "accepted" if m.topic == accepted else "rejected"
    try:
        body = m.json()
    except (ValueError, UnicodeDecodeError) as e:
        raise AssertionError(f"answer on {m.topic} is not JSON ({e}): {m.payload[:200]!r}")
    assert isinstance(body, dict), f"answer on {m.topic} is not a JSON object: {body!r}"
    if settle > 0:
        extra = client.wait_any({accepted, rejected}, settle)
        assert extra is None, f"second answer on {extra.topic}: {extra.payload[:200]!r}"
    return which, body


def expect_accepted(which, body, fields):
    assert which == "accepted", f"expected accepted, got rejected: {body}"
    assert set(body) == set(fields), f"accepted fields {sorted(body)} != {sorted(fields)}"
    return body


def expect_rejected(which, body, status: int, code: str, message: Optional[str] = None):
    assert which == "rejected", f"expected rejected {status}/{code}, got accepted: {body}"
    assert set(body) == REJECTED_FIELDS, f"rejected fields {sorted(body)}"
    assert type(body["statusCode"]) is int, f"statusCode not an integer: {body['statusCode']!r}"
    assert isinstance(body["errorCode"], str) and isinstance(body["errorMessage"], str), body
    assert (body["statusCode"], body["errorCode"]) == (status, code), body
    if message is not None:
        assert body["errorMessage"] == message, body
    else:
        assert body["errorMessage"].strip(), f"empty errorMessage: {body}"
    return body


def create_keys(client: MqttClient, payload=b"{}", **kw) -> dict:
    body = expect_accepted(*provision_request(client, CREATE_KEYS, payload, **kw),
                           KEYS_ACCEPTED_FIELDS)
    check_issued(body)
    return body


def create_from_csr(client: MqttClient, csr_pem: str, **kw) -> dict:
    body = expect_accepted(*provision_request(
        client, CREATE_FROM_CSR, {"certificateSigningRequest": csr_pem}, **kw), CSR_ACCEPTED_FIELDS)
    check_issued(body)
    return body


def register_thing(client: MqttClient, template: str, token, parameters=None, *,
                   omit_token=False, **kw):
    payload = {} if omit_token else {"certificateOwnershipToken": token}
    if parameters is not None:
        payload["parameters"] = parameters
    return provision_request(client, provision_topic(template), payload, **kw)


def check_issued(body: dict):
    """The common checks on a CreateKeysAndCertificate / CreateCertificateFromCsr answer."""
    for k, v in body.items():
        assert isinstance(v, str), f"{k} is {type(v).__name__}, expected string"
    assert HEX64.match(body["certificateId"]), body["certificateId"]
    assert body["certificateOwnershipToken"], "empty certificateOwnershipToken"
    pem = body["certificatePem"]
    assert pem.startswith("-----BEGIN CERTIFICATE-----\n"), pem[:40]
    assert pem.rstrip("\n").endswith("-----END CERTIFICATE-----"), pem[-40:]
    assert "\r" not in pem
    assert pem.count("-----BEGIN CERTIFICATE-----") == 1, "more than one certificate in PEM"
    assert cert_id(pem) == body["certificateId"], "certificateId is not SHA-256 of the DER"


def write_credentials(directory: Path, name: str, cert_pem: str, key_pem: str):
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / f"{name}.cert.pem", directory / f"{name}.key.pem"
    cert.write_text(cert_pem)
    key.write_text(key_pem)
    key.chmod(0o600)
    return cert, key


# --------------------------------------------------------------------------------------------
# Certificates


def cert_der(pem: str) -> bytes:
    return ssl.PEM_cert_to_DER_cert(pem)


def cert_id(pem: str) -> str:
    """Certificate ID = lowercase hex SHA-256 of the DER encoding."""
    return hashlib.sha256(cert_der(pem)).hexdigest()


def load_cert(pem) -> x509.Certificate:
    if isinstance(pem, Path):
        pem = pem.read_text()
    return x509.load_pem_x509_certificate(pem.encode())


def spki_der(key_or_cert) -> bytes:
    pub = key_or_cert.public_key()
    return pub.public_bytes(serialization.Encoding.DER,
                            serialization.PublicFormat.SubjectPublicKeyInfo)


def run_openssl(*args, input_text: Optional[str] = None, check: bool = True) -> str:
    p = subprocess.run(["openssl", *map(str, args)], input=input_text, capture_output=True,
                       text=True, timeout=60)
    if check:
        assert p.returncode == 0, f"openssl {' '.join(map(str, args))} failed: {p.stderr}"
    return p.stdout


def openssl_x509(pem: str, *opts) -> str:
    return run_openssl("x509", "-noout", *opts, input_text=pem).strip()


def der_integer_content(cert_der_bytes: bytes) -> bytes:
    """Content octets of the serialNumber INTEGER, read from the DER (not via a library, so that
    a leading 0x00 byte or a too-long serial is visible)."""

    def tlv(buf, pos):
        tag = buf[pos]
        length = buf[pos + 1]
        pos += 2
        if length & 0x80:
            n = length & 0x7F
            length = int.from_bytes(buf[pos:pos + n], "big")
            pos += n
        return tag, pos, length

    tag, pos, _ = tlv(cert_der_bytes, 0)  # Certificate SEQUENCE
    assert tag == 0x30
    tag, pos, _ = tlv(cert_der_bytes, pos)  # TBSCertificate SEQUENCE
    assert tag == 0x30
    tag, p2, ln = tlv(cert_der_bytes, pos)
    if tag == 0xA0:  # [0] version
        pos = p2 + ln
        tag, p2, ln = tlv(cert_der_bytes, pos)
    assert tag == 0x02, f"serialNumber tag {tag:#x}"
    return cert_der_bytes[p2:p2 + ln]


def check_aws_profile(pem: str, root_ca: Path):
    """§1.7: issuer (one OU attribute), notAfter 2049-12-31T23:59:59Z, 20-byte positive serial,
    sha256WithRSA, basicConstraints critical CA:FALSE, keyUsage critical digitalSignature, no EKU;
    and the certificate chains to the server's root CA."""
    assert openssl_x509(pem, "-issuer") == AWS_ISSUER_LINE
    assert openssl_x509(pem, "-enddate") == AWS_NOT_AFTER_LINE
    cert = load_cert(pem)
    issuer_attrs = [(a.oid, a.value) for rdn in cert.issuer.rdns for a in rdn]
    assert len(cert.issuer.rdns) == 1 and issuer_attrs == [
        (NameOID.ORGANIZATIONAL_UNIT_NAME, AWS_ISSUER_OU)], issuer_attrs
    ca = load_cert(root_ca)
    assert cert.issuer.public_bytes() == ca.subject.public_bytes(), "issuer != root CA subject"
    serial = der_integer_content(cert_der(pem))
    assert len(serial) == 20, f"serial is {len(serial)} bytes: {serial.hex()}"
    assert serial[0] & 0x80 == 0, "serial is negative"
    assert cert.signature_algorithm_oid.dotted_string == "1.2.840.113549.1.1.11"  # sha256WithRSA
    bc = cert.extensions.get_extension_for_oid(ExtensionOID.BASIC_CONSTRAINTS)
    assert bc.critical and bc.value.ca is False
    ku = cert.extensions.get_extension_for_oid(ExtensionOID.KEY_USAGE)
    assert ku.critical and ku.value.digital_signature
    assert not (ku.value.key_cert_sign or ku.value.crl_sign)
    oids = {e.oid for e in cert.extensions}
    assert ExtensionOID.EXTENDED_KEY_USAGE not in oids, "AWS device certificates carry no EKU"
    assert ExtensionOID.SUBJECT_KEY_IDENTIFIER in oids
    assert ExtensionOID.AUTHORITY_KEY_IDENTIFIER in oids
    verify = subprocess.run(["openssl", "verify", "-CAfile", str(root_ca)], input=pem,
                            capture_output=True, text=True, timeout=30)
    assert verify.returncode == 0 and verify.stdout.strip() == "stdin: OK", \
        verify.stdout + verify.stderr


# openssl key / CSR / certificate makers -------------------------------------------------------

KEY_KINDS = {
    "rsa2048": ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
    "rsa1024": ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024"],
    "p256": ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
    "p384": ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"],
    "secp256k1": ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:secp256k1"],
}


def make_key(directory: Path, kind: str, name: Optional[str] = None) -> Path:
    path = Path(directory) / f"{name or unique(kind)}.key.pem"
    run_openssl("genpkey", *KEY_KINDS[kind], "-out", path)
    return path


def make_csr(directory: Path, kind: str, subject: str = "/CN=iotmock-test-device",
             key: Optional[Path] = None):
    """Returns (key_path, csr_pem) for a fresh key of KIND ("rsa2048", "rsa1024", "p256", "p384",
    "secp256k1") and a CSR signed with SHA-256."""
    key = key or make_key(directory, kind)
    csr = run_openssl("req", "-new", "-key", key, "-subj", subject, "-sha256")
    assert csr.startswith("-----BEGIN CERTIFICATE REQUEST-----")
    return key, csr


def corrupt_csr_signature(csr_pem: str) -> str:
    """The same CSR with one bit of the signature flipped: still parses, no longer verifies."""
    body = "".join(l for l in csr_pem.splitlines() if not l.startswith("-----"))
    der = bytearray(base64.b64decode(body))
    der[-1] ^= 0x01  # the last byte belongs to the signature BIT STRING
    b64 = base64.b64encode(bytes(der)).decode()
    lines = [b64[i:i + 64] for i in range(0, len(b64), 64)]
    pem = "-----BEGIN CERTIFICATE REQUEST-----\n" + "\n".join(lines) + \
          "\n-----END CERTIFICATE REQUEST-----\n"
    req = x509.load_pem_x509_csr(pem.encode())
    assert not req.is_signature_valid
    return pem


def make_self_signed(directory: Path, cn: str = "self-signed-device"):
    key = make_key(directory, "rsa2048")
    cert = Path(directory) / f"{unique('selfsigned')}.cert.pem"
    run_openssl("req", "-x509", "-new", "-key", key, "-subj", f"/CN={cn}", "-days", "2",
                "-sha256", "-out", cert)
    return cert, key


def make_foreign_ca_cert(directory: Path, cn: str = "foreign-device"):
    """A device certificate signed by a CA the server does not know; returns (cert, key)."""
    directory = Path(directory)
    ca_key = make_key(directory, "rsa2048")
    ca_cert = directory / f"{unique('foreignca')}.pem"
    run_openssl("req", "-x509", "-new", "-key", ca_key, "-subj", "/CN=Foreign Test CA",
                "-days", "2", "-sha256", "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-out", ca_cert)
    key, csr = make_csr(directory, "rsa2048", f"/CN={cn}")
    csr_path = directory / f"{unique('foreign')}.csr"
    csr_path.write_text(csr)
    cert = directory / f"{unique('foreign')}.cert.pem"
    run_openssl("x509", "-req", "-in", csr_path, "-CA", ca_cert, "-CAkey", ca_key,
                "-CAcreateserial", "-days", "2", "-sha256", "-out", cert)
    return cert, key


# --------------------------------------------------------------------------------------------
# Templates


def write_template(directory: Path, name: str, body: dict, *, enabled: Optional[bool] = True,
                   hook_function: Optional[str] = None) -> Path:
    """A --templates-dir file: {"templateName","enabled","type","templateBody",
    "preProvisioningHook"}; ENABLED None leaves the key out (AWS then treats it as false)."""
    doc = {"templateName": name, "type": "FLEET_PROVISIONING", "templateBody": body}
    if enabled is not None:
        doc["enabled"] = enabled
    if hook_function:
        doc["preProvisioningHook"] = {"targetArn": lambda_arn(hook_function),
                                      "payloadVersion": "2020-04-01"}
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.json"
    path.write_text(json.dumps(doc, indent=2))
    return path


ALLOW_ALL_POLICY = json.dumps({"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": "iot:*", "Resource": "*"}]})


def simple_template_body(thing_prefix: str, device_configuration: Optional[dict] = None) -> dict:
    """Thing named THING_PREFIX + SerialNumber, certificate ACTIVE, an inline allow-all policy."""
    body = {
        "Parameters": {"SerialNumber": {"Type": "String"},
                       "AWS::IoT::Certificate::Id": {"Type": "String"}},
        "Resources": {
            "thing": {"Type": "AWS::IoT::Thing", "Properties": {
                "ThingName": {"Fn::Join": ["", [thing_prefix, {"Ref": "SerialNumber"}]]},
                "AttributePayload": {"serialNumber": {"Ref": "SerialNumber"}}}},
            "certificate": {"Type": "AWS::IoT::Certificate", "Properties": {
                "CertificateId": {"Ref": "AWS::IoT::Certificate::Id"}, "Status": "ACTIVE"}},
            "policy": {"Type": "AWS::IoT::Policy",
                       "Properties": {"PolicyDocument": ALLOW_ALL_POLICY}},
        },
    }
    if device_configuration is not None:
        body["DeviceConfiguration"] = device_configuration
    return body


def _evaluate(value, params: dict):
    """The few intrinsic functions a DeviceConfiguration is likely to use."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and len(value) == 1:
        (fn, arg), = value.items()
        if fn == "Ref":
            return params[arg]
        if fn == "Fn::Join":
            delim, parts = arg
            return delim.join(_evaluate(p, params) for p in parts)
        if fn == "Fn::Sub" and isinstance(arg, str):
            return re.sub(r"\$\{([^}]+)\}", lambda m: params[m.group(1)], arg)
    raise NotImplementedError(f"test helper cannot evaluate {value!r} in DeviceConfiguration")


def fleet_default_body() -> dict:
    assert FLEET_DEFAULT_TEMPLATE_FILE.is_file(), f"{FLEET_DEFAULT_TEMPLATE_FILE} missing"
    doc = json.loads(FLEET_DEFAULT_TEMPLATE_FILE.read_text())
    body = doc.get("templateBody", doc)
    if isinstance(body, str):  # AWS stores the body as a string; accept both shapes
        body = json.loads(body)
    return body


def expected_device_configuration(body: dict, parameters: dict, certificate_id: str) -> dict:
    params = {name: decl["Default"] for name, decl in body.get("Parameters", {}).items()
              if isinstance(decl, dict) and "Default" in decl}
    params.update(parameters)
    params["AWS::IoT::Certificate::Id"] = certificate_id
    return {k: _evaluate(v, params) for k, v in body.get("DeviceConfiguration", {}).items()}


# --------------------------------------------------------------------------------------------
# Fake AWS Lambda (Invoke API) for pre-provisioning hooks


@dataclass
class Invocation:
    function: str
    path: str
    headers: dict
    raw: bytes
    event: Any  # parsed JSON, or None if the body was not JSON
    at: float = field(default_factory=time.monotonic)


class FakeLambda:
    """POST /2015-03-31/functions/NAME/invocations on a free loopback port. Each function answers
    as configured with allow()/deny()/respond(); unknown functions get Lambda's 404."""

    PATH = re.compile(r"^/2015-03-31/functions/([^/?]+)/invocations(\?.*)?$")

    def __init__(self):
        self.invocations: list = []
        self._behaviour: dict = {}
        self._cond = threading.Condition()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                m = owner.PATH.match(self.path)
                fn = m.group(1) if m else None
                try:
                    event = json.loads(raw) if raw else None
                except ValueError:
                    event = None
                with owner._cond:
                    owner.invocations.append(Invocation(fn, self.path, dict(self.headers), raw,
                                                        event))
                    behaviour = owner._behaviour.get(fn)
                    owner._cond.notify_all()
                if behaviour is None:
                    self._send(404, {"Type": "User", "message": f"Function not found: {fn}"},
                               {"x-amzn-ErrorType": "ResourceNotFoundException"})
                    return
                if behaviour.get("delay"):
                    time.sleep(behaviour["delay"])
                self._send(behaviour["status"], behaviour["body"], behaviour.get("headers", {}))

            def _send(self, status, body, headers):
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the caller gave up (timeout test)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def respond(self, function: str, status: int = 200, body=None, delay: float = 0.0,
                headers=None):
        with self._cond:
            self._behaviour[function] = {"status": status, "body": body if body is not None else {},
                                         "delay": delay, "headers": headers or {}}

    def allow(self, function: str, overrides: Optional[dict] = None, delay: float = 0.0):
        body = {"allowProvisioning": True}
        if overrides is not None:
            body["parameterOverrides"] = overrides
        self.respond(function, 200, body, delay)

    def deny(self, function: str):
        self.respond(function, 200, {"allowProvisioning": False})

    def calls(self, function: Optional[str] = None) -> list:
        with self._cond:
            return [i for i in self.invocations if function is None or i.function == function]

    def clear(self):
        with self._cond:
            self.invocations.clear()

    def close(self):
        self._httpd.shutdown()
        self._httpd.server_close()


# --------------------------------------------------------------------------------------------
# Command-line tools


def which_or_none(name: str) -> Optional[str]:
    for d in ("/usr/bin", "/usr/sbin"):
        p = Path(d) / name
        if p.exists():
            return str(p)
    return shutil.which(name)


# --------------------------------------------------------------------------------------------
# Policy enforcement on the wire (tests/integration/test_policy_*.py;
# shared/spec/broker-and-policy.md §2, §3)

IOT_ARN = f"arn:aws:iot:{REGION}:{ACCOUNT}"
NOT_AUTHORIZED_V5 = 0x87  # CONNACK / PUBACK / SUBACK "Not authorized" (MQTT 5)
# A PUBACK accepting the message: 0x00, or 0x10 "No matching subscribers", which Mosquitto sends on
# MQTT 5 when nobody is subscribed (AWS documents only 0x00 as success, spec §4.11).
PUBACK_OK = (0x00, 0x10)
CLAIM_POLICY = "iotmock-claim-policy"  # attached to the claim certificate on the first start


def iot_arn(resource: str) -> str:
    """iot_arn("topic/a/b") -> "arn:aws:iot:us-east-1:123456789012:topic/a/b"."""
    return f"{IOT_ARN}:{resource}"


def cert_arn(certificate_id: str) -> str:
    return iot_arn(f"cert/{certificate_id}")


def statement(effect: str, actions, resources, sid: Optional[str] = None,
              condition: Optional[dict] = None) -> dict:
    """One policy statement; RESOURCES are written without the ARN prefix ("topic/a/*") or as
    "*"."""
    resources = [resources] if isinstance(resources, str) else list(resources)
    st = {"Effect": effect, "Action": actions,
          "Resource": [r if r == "*" or r.startswith("arn:") else iot_arn(r) for r in resources]}
    if sid is not None:
        st["Sid"] = sid
    if condition is not None:
        st["Condition"] = condition
    return st


def allow(actions, resources, **kw) -> dict:
    return statement("Allow", actions, resources, **kw)


def deny(actions, resources, **kw) -> dict:
    return statement("Deny", actions, resources, **kw)


def policy_document(*statements) -> dict:
    return {"Version": "2012-10-17", "Statement": list(statements)}


def control_ok(server: Server, method: str, path: str, body=None, headers=None):
    """A control-plane call that must answer 200; returns the parsed body."""
    status, reply = server.control_plane(method, path, body, headers)
    assert status == 200, f"{method} {path}: HTTP {status} {reply}"
    return reply


def create_policy(server: Server, document: dict, name: Optional[str] = None) -> str:
    name = name or unique("pol")
    control_ok(server, "POST", f"/policies/{name}", {"policyDocument": json.dumps(document)})
    return name


def attach_policy(server: Server, name: str, target: str):
    control_ok(server, "PUT", f"/target-policies/{name}", {"target": target})


def detach_policy(server: Server, name: str, target: str):
    control_ok(server, "POST", f"/target-policies/{name}", {"target": target})


def create_policy_version(server: Server, name: str, document: dict) -> str:
    """CreatePolicyVersion with setAsDefault=true; returns the new version id."""
    reply = control_ok(server, "POST", f"/policies/{name}/version?setAsDefault=true",
                       {"policyDocument": json.dumps(document)})
    return reply["policyVersionId"]


def create_thing(server: Server, name: str, attributes: Optional[dict] = None,
                 thing_type: Optional[str] = None):
    body = {}
    if attributes is not None:
        body["attributePayload"] = {"attributes": attributes}
    if thing_type is not None:
        body["thingTypeName"] = thing_type
    control_ok(server, "POST", f"/things/{name}", body)


def attach_thing_principal(server: Server, thing: str, principal: str):
    control_ok(server, "PUT", f"/things/{thing}/principals",
               headers={"x-amzn-principal": principal})


def create_thing_group(server: Server, name: str, parent: Optional[str] = None) -> str:
    """Returns the group's ARN."""
    reply = control_ok(server, "POST", f"/thing-groups/{name}",
                       {"parentGroupName": parent} if parent else {})
    return reply["thingGroupArn"]


def add_thing_to_group(server: Server, group: str, thing: str):
    control_ok(server, "PUT", "/thing-groups/addThingToThingGroup",
               {"thingGroupName": group, "thingName": thing})


def set_certificate_status(server: Server, certificate_id: str, status: str):
    control_ok(server, "PUT", f"/certificates/{certificate_id}?newStatus={status}")


@dataclass
class Device:
    """Credentials of a certificate registered with the server."""
    cert: Path
    key: Path
    cert_id: str

    @property
    def arn(self) -> str:
        return cert_arn(self.cert_id)


def create_device(server: Server, directory: Path, *policies: str,
                  server_key: bool = False) -> Device:
    """An ACTIVE certificate with each named policy attached (AttachPolicy). By default from a
    local P-256 key through CreateCertificateFromCsr (fast); with SERVER_KEY through
    CreateKeysAndCertificate (the server generates an RSA key)."""
    directory = Path(directory)
    if server_key:
        reply = control_ok(server, "POST", "/keys-and-certificate?setAsActive=true")
        key_pem = reply["keyPair"]["PrivateKey"]
    else:
        key, csr = make_csr(directory, "p256", subject="/CN=iotmock-policy-test")
        reply = control_ok(server, "POST", "/certificates?setAsActive=true",
                           {"certificateSigningRequest": csr})
        key_pem = key.read_text()
    assert reply["certificateArn"] == cert_arn(reply["certificateId"]), reply["certificateArn"]
    cert, key = write_credentials(directory, reply["certificateId"][:16], reply["certificatePem"],
                                  key_pem)
    device = Device(cert, key, reply["certificateId"])
    for p in policies:
        attach_policy(server, p, device.arn)
    return device


class PolicyClient(MqttClient):
    """An MqttClient that also reports what paho 1.6.1 hides: the reason code of each PUBACK
    (MQTT 5; paho drops it) and whether the server closed the connection before answering."""

    def __init__(self, server: Server, cert, key, **kw):
        super().__init__(server, cert, key, **kw)
        self._pubacks: dict = {}
        paho_client = self._c
        original = paho_client._handle_pubackcomp

        def handle_pubackcomp(cmd):
            packet = paho_client._in_packet["packet"]
            if len(packet) >= 2:
                mid = int.from_bytes(packet[:2], "big")
                code = packet[2] if len(packet) > 2 else 0  # 3.1.1, or MQTT 5 success
                with self._cond:
                    self._pubacks[mid] = code
                    self._cond.notify_all()
            return original(cmd)

        paho_client._handle_pubackcomp = handle_pubackcomp

    @property
    def closed(self) -> bool:
        """The network loop ended: the server (or we) closed the connection."""
        with self._cond:
            return self._loop_done or self._loop_error is not None

    def _wait_for(self, ready, timeout):
        deadline = time.monotonic() + timeout
        with self._cond:
            while not ready() and not (self._loop_done or self._loop_error is not None):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(min(left, 0.2))
            return ready()

    def publish_result(self, topic: str, payload=b"", qos: int = 1, retain: bool = False,
                       timeout: float = 5.0) -> Optional[int]:
        """Publishes and returns the PUBACK's reason code (always 0 on MQTT 3.1.1), or None when
        the connection ended without a PUBACK (or none came within TIMEOUT). QoS 0: waits
        TIMEOUT and returns None, or 0 if the connection is still open."""
        info = self._c.publish(topic, payload, qos=qos, retain=retain)
        if info.rc != paho.MQTT_ERR_SUCCESS:
            return None  # not even sent: the connection is gone
        if qos == 0:
            self._wait_for(lambda: False, timeout)
            return None if self.closed else 0
        if self._wait_for(lambda: info.mid in self._pubacks, timeout):
            with self._cond:
                return self._pubacks.pop(info.mid)
        return None

    def subscribe_result(self, *filters: str, qos: int = 1,
                         timeout: float = 5.0) -> Optional[list]:
        """One SUBSCRIBE with FILTERS; the SUBACK's codes, or None when the connection ended
        without a SUBACK."""
        rc, mid = self._c.subscribe([(f, qos) for f in filters])
        if rc != paho.MQTT_ERR_SUCCESS:
            return None
        if self._wait_for(lambda: mid in self._subacks, timeout):
            with self._cond:
                return self._subacks.pop(mid)
        return None

    def wait_closed(self, timeout: float = 5.0) -> bool:
        """Waits up to TIMEOUT for the connection to end; whether it did."""
        self._wait_for(lambda: False, timeout)
        return self.closed


class ClientPool:
    """PolicyClients made by one test, all closed at its end."""

    def __init__(self):
        self._clients: list = []

    def new(self, server: Server, device, *, protocol=MQTTv311, client_id=None,
            **kw) -> PolicyClient:
        cert, key = (device.cert, device.key) if isinstance(device, Device) else device
        c = PolicyClient(server, cert, key, protocol=protocol, client_id=client_id, **kw)
        self._clients.append(c)
        return c

    def connect(self, server: Server, device, **kw) -> PolicyClient:
        c = self.new(server, device, **kw)
        res = c.try_connect()
        assert res.ok, f"client {c.client_id} could not connect: {res}"
        return c

    def close_all(self):
        for c in self._clients:
            c.close()
        self._clients.clear()


# The server's refusal log (plugin/authz.c): one line per refusal,
#   iotmock: <action> refused | client=<id> | cert=<certificate id> | <why>
# where <why> is the policy engine's explanation,
#   <EFFECT> <action> <resource ARN>: <no statement allowed it | denied by policy P statement N
#   (Sid S)>; policies considered: <names | none>[; values: <variable>=<value>, ...]
# or, for a reserved topic, "topic=<topic> | reserved topic: <rule>".
REFUSAL_LINE = re.compile(r"iotmock: (?P<action>\S+) refused \| client=(?P<client>[^|]*) \| "
                          r"cert=(?P<cert>[^ |]*) \| (?P<why>.*)$")
DECISION = re.compile(
    r"^(?P<effect>DENY_IMPLICIT|DENY_EXPLICIT) (?P<action>\S+) (?P<resource>\S+): "
    r"(?P<reason>no statement allowed it|denied by policy (?P<policy>\S+) statement "
    r"(?P<statement>\d+)(?: \(Sid (?P<sid>[^)]*)\))?); policies considered: "
    r"(?P<policies>.*?)(?:; values: (?P<values>.*))?$")


@dataclass
class Refusal:
    line: str
    action: str
    client: str
    cert: str
    why: str

    def decision(self) -> dict:
        """The policy engine's explanation, parsed (AssertionError if it is not one)."""
        m = DECISION.match(self.why)
        assert m, f"not a policy decision: {self.why!r} (line {self.line!r})"
        d = m.groupdict()
        d["policies"] = [] if d["policies"] == "none" else d["policies"].split(", ")
        return d


class ServerLog:
    """The server's stderr from the moment this object was made."""

    def __init__(self, server: Server):
        self.server = server
        self.start = self._size()

    def _size(self) -> int:
        try:
            return self.server.stderr_path.stat().st_size
        except OSError:
            return 0

    def text(self) -> str:
        with open(self.server.stderr_path, "rb") as f:
            f.seek(self.start)
            return f.read().decode("utf-8", errors="replace")

    def refusals(self, client: Optional[str] = None, action: Optional[str] = None) -> list:
        out = []
        for line in self.text().splitlines():
            m = REFUSAL_LINE.search(line)
            if m and (client is None or m["client"] == client) and \
                    (action is None or m["action"] == action):
                out.append(Refusal(line, m["action"], m["client"], m["cert"], m["why"]))
        return out

    def wait_refusal(self, client: str, action: str, timeout: float = 5.0) -> Refusal:
        """The one refusal of ACTION for CLIENT logged since the start (fails if there are none
        within TIMEOUT or more than one)."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.refusals(client, action)
            if found or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert len(found) == 1, (f"expected one '{action} refused' line for client {client}, "
                                 f"found {len(found)}:\n" +
                                 "\n".join(r.line for r in self.refusals()))
        return found[0]

    def assert_no_refusal(self, client: str):
        found = self.refusals(client)
        assert not found, "unexpected refusals:\n" + "\n".join(r.line for r in found)


def assert_policy_refusal(refusal: Refusal, *, action: str, client: str, cert: str,
                          resource: str, policies=None, denied_by: Optional[tuple] = None):
    """The log line explains the refusal: ACTION on RESOURCE (an ARN) for CLIENT with CERT,
    either "no statement allowed it" or, with DENIED_BY=(policy, statement index), the deciding
    Deny statement; POLICIES (if given) is the set of policies considered."""
    assert (refusal.action, refusal.client, refusal.cert) == (action, client, cert), refusal.line
    d = refusal.decision()
    assert (d["action"], d["resource"]) == (action, resource), refusal.line
    if denied_by is None:
        assert (d["effect"], d["reason"]) == ("DENY_IMPLICIT", "no statement allowed it"), \
            refusal.line
    else:
        assert d["effect"] == "DENY_EXPLICIT", refusal.line
        assert (d["policy"], int(d["statement"])) == denied_by, refusal.line
    if policies is not None:
        assert sorted(d["policies"]) == sorted(policies), refusal.line
    return d
