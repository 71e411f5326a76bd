"""Transport as AWS IoT clients use it (shared/spec/broker-and-policy.md §4.12; clients.md §1, §6):
TLS with SNI and ALPN `x-amzn-mqtt-ca` is accepted (Mosquitto 2.0.11 ignores the ALPN offer and
selects none), an optional second listener serves the port AWS uses with ALPN (443), and
`iotmock trust` / `untrust` put the root CA in and out of the system trust store for clients
that know only that store."""

import os
import shutil
import ssl
import subprocess
from pathlib import Path

import pytest

from broker_support import Clients, RawMqtt, open_device
from iotmock_support import (IOTMOCK_BIN, MQTTv311, MQTTv5, PROTOCOLS, PUBACK_OK, REPO,
                             free_port, unique)

ALPN = "x-amzn-mqtt-ca"
CONNECT_311 = (b"\x10\x14\x00\x04MQTT\x04\x02\x00\x3c\x00\x08alpn-sc1")  # clean, keep-alive 60
CONNACK_OK = b"\x20\x02\x00\x00"


@pytest.fixture(scope="module")
def alpn_server(module_server_factory):
    port = free_port()
    return module_server_factory("--alpn-port", str(port), name="alpn"), port


@pytest.fixture(scope="module")
def device(alpn_server, tmp_path_factory):
    return open_device(alpn_server[0], tmp_path_factory.mktemp("transport"))


CLIENT_POOL = Clients


@pytest.mark.parametrize("which", ["main", "alpn"])
def test_openssl_s_client_with_sni_and_alpn(alpn_server, which):
    """openssl s_client offering ALPN x-amzn-mqtt-ca with SNI: the handshake succeeds and an MQTT
    CONNECT sent through it is answered with CONNACK 0 (bytes on the wire)."""
    srv, alpn_port = alpn_server
    port = srv.mqtt_port if which == "main" else alpn_port
    argv = ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "localhost",
            "-alpn", ALPN, "-CAfile", str(srv.root_ca), "-cert", str(srv.claim_cert),
            "-key", str(srv.claim_key), "-verify_return_error", "-quiet"]
    p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    try:
        p.stdin.write(CONNECT_311)
        p.stdin.flush()
        answer = p.stdout.read(4)
    finally:
        p.kill()
        _, err = p.communicate(timeout=10)
    assert answer == CONNACK_OK, f"got {answer!r}; s_client: {err.decode(errors='replace')}"


@pytest.mark.parametrize("protocol", list(PROTOCOLS.values()), ids=list(PROTOCOLS))
@pytest.mark.parametrize("which", ["main", "alpn"])
def test_paho_with_alpn_and_sni_on_both_listeners(alpn_server, device, clients, protocol, which):
    srv, alpn_port = alpn_server
    port = None if which == "main" else alpn_port
    c = clients.new(srv, device, protocol=protocol, port=port, alpn=[ALPN])
    assert c.try_connect().ok
    sock = c.tls_socket()
    assert sock.server_hostname == "localhost", "SNI sent"
    assert sock.selected_alpn_protocol() is None, "Mosquitto 2.0.11 selects no ALPN protocol"
    topic = f"alpn/{unique('t')}"
    assert c.subscribe_result(topic) == [1]
    assert c.publish_result(topic) in PUBACK_OK
    assert c.wait_message(topic, 5) is not None


def test_listeners_share_one_broker(alpn_server, device, clients):
    srv, alpn_port = alpn_server
    on_main = clients.connect(srv, device, protocol=MQTTv311)
    on_alpn = clients.new(srv, device, protocol=MQTTv5, port=alpn_port, alpn=[ALPN])
    assert on_alpn.try_connect().ok
    topic = f"cross/{unique('t')}"
    assert on_main.subscribe_result(topic) == [1]
    assert on_alpn.publish_result(topic, b"across") in PUBACK_OK
    m = on_main.wait_message(topic, 5)
    assert m is not None and m.payload == b"across"


def test_alpn_listener_applies_aws_limits(alpn_server, device):
    """The second listener is configured like the first: Maximum QoS 1."""
    srv, alpn_port = alpn_server
    r = RawMqtt(srv, device.cert, device.key, port=alpn_port, alpn=[ALPN])
    try:
        r.connect(unique("q"))
        code, props = r.connack()
        assert code == 0 and b"\x24\x01" in props, props.hex()
    finally:
        r.close()


def test_no_second_listener_by_default(server):
    conf = (server.state_dir / "mosquitto.conf").read_text()
    assert conf.count("\nlistener ") == 1, conf


# ---- iotmock trust / untrust ---------------------------------------------------------------

def run_iotmock(*args, env=None):
    return subprocess.run([str(IOTMOCK_BIN), *map(str, args)], capture_output=True, text=True,
                          timeout=120, env={**os.environ, **(env or {})})


def store_file_name(root_ca: Path) -> str:
    from iotmock_support import cert_id
    return f"iotmock-{cert_id(root_ca.read_text())[:16]}.crt"


def test_trust_and_untrust_in_a_given_directory(server, tmp_path):
    store = tmp_path / "ca-certificates"
    env = {"IOTMOCK_CA_DIR": str(store), "IOTMOCK_UPDATE_CA": "true"}
    p = run_iotmock("trust", "--state-dir", server.state_dir, env=env)
    assert p.returncode == 0, p.stderr
    installed = store / store_file_name(server.root_ca)
    assert installed.read_text() == server.root_ca.read_text()
    assert oct(installed.stat().st_mode & 0o777) == "0o644"
    p = run_iotmock("untrust", "--state-dir", server.state_dir, env=env)
    assert p.returncode == 0 and not installed.exists(), p.stderr
    p = run_iotmock("untrust", "--state-dir", server.state_dir, env=env)
    assert p.returncode == 0 and "was not trusted" in p.stdout, p.stdout + p.stderr


def test_trust_reports_a_failing_update_and_a_missing_ca(server, tmp_path):
    env = {"IOTMOCK_CA_DIR": str(tmp_path / "store"), "IOTMOCK_UPDATE_CA": "false"}
    p = run_iotmock("trust", "--state-dir", server.state_dir, env=env)
    assert p.returncode == 1 and "false failed" in p.stderr, p.stderr
    p = run_iotmock("trust", "--state-dir", tmp_path / "nowhere", env=env)
    assert p.returncode == 1 and "root-ca.pem" in p.stderr, p.stderr
    assert run_iotmock("trust", "extra-argument").returncode == 2


SYSTEM_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
JS_DIR = REPO / "tests" / "js"


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("update-ca-certificates") is None,
                    reason="changing the system trust store needs root and ca-certificates")
def test_trust_makes_system_store_clients_connect(alpn_server, device, clients):
    """Clients without a CA option (the official samples) trust the system store: after
    `iotmock trust` a default TLS context verifies iotmock; after `untrust` it no longer does."""
    srv, _ = alpn_server
    pem = srv.root_ca.read_text().strip()
    p = run_iotmock("trust", "--state-dir", srv.state_dir)
    try:
        assert p.returncode == 0, p.stderr
        assert pem in SYSTEM_BUNDLE.read_text()
        c = clients.new(srv, device, protocol=MQTTv311)
        ctx = ssl.create_default_context()  # the system store only
        ctx.load_cert_chain(certfile=str(device.cert), keyfile=str(device.key))
        c._c._ssl_context = ctx
        assert c.try_connect().ok
        if (JS_DIR / "node_modules").is_dir() and shutil.which("node"):
            out = run_js_session(srv, device, "mqtt5", ca=None)
            assert out.get("connected") is True, out
    finally:
        p = run_iotmock("untrust", "--state-dir", srv.state_dir)
    assert p.returncode == 0, p.stderr
    assert pem not in SYSTEM_BUNDLE.read_text()
    c = clients.new(srv, device, protocol=MQTTv311)
    ctx = ssl.create_default_context()
    ctx.load_cert_chain(certfile=str(device.cert), keyfile=str(device.key))
    c._c._ssl_context = ctx
    assert not c.try_connect().ok, "still trusted after untrust"


def run_js_session(srv, device, protocol, ca, client_id=None, port=None, topic=None):
    import json
    argv = [shutil.which("node") or "node", str(JS_DIR / "lifecycle.js"), "--host", "localhost",
            "--port", str(port or srv.mqtt_port), "--cert", str(device.cert),
            "--key", str(device.key), "--client-id", client_id or unique("js"),
            "--topic", topic or f"js/{unique('t')}", "--protocol", protocol]
    if ca is not None:
        argv += ["--ca", str(ca)]
    p = subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=str(JS_DIR))
    lines = [line for line in p.stdout.splitlines() if line.strip()]
    assert lines, f"no output (exit {p.returncode}): {p.stderr[-2000:]}"
    return json.loads(lines[-1])
