"""Provisioning answers come back in milliseconds, not on the broker's next 100 ms turn (issue #7):
a worker's result wakes Mosquitto's event loop (plugin/wake.c), and CreateKeysAndCertificate takes
its RSA-2048 key from a pool generated in the background (`--key-pool N`, default 16; 0: none).

The timed clients set TCP_NODELAY: paho does not, and Nagle on the client would hold each request
behind the broker's delayed ACK of the previous PUBACK (40 ms), measuring the client, not iotmock."""

import json
import socket
import statistics
import subprocess
import time

import pytest
from cryptography.hazmat.primitives import serialization

from iotmock_support import (CREATE_FROM_CSR, CREATE_KEYS, IOTMOCK_BIN, KEYS_ACCEPTED_FIELDS,
                             MqttClient, check_issued, control_ok, make_csr)

ROUNDS = 20
MEDIAN_MAX_S = 0.050  # Mosquitto's idle loop turns every 100 ms; awake answers take ~10 ms
POOL_WARM_S = 8.0  # 16 keys on two idle-priority workers of a loaded 2-core machine


def fast_claim_client(server) -> MqttClient:
    c = MqttClient(server, server.claim_cert, server.claim_key).connect()
    c._c.socket().setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return c


def timed_requests(client, topic, payload, rounds):
    """ROUNDS sequential requests; returns (latencies in seconds, accepted bodies)."""
    accepted, rejected = topic + "/accepted", topic + "/rejected"
    client.subscribe(accepted, rejected)
    latencies, bodies = [], []
    for _ in range(rounds):
        t0 = time.monotonic()
        info = client._c.publish(topic, payload, qos=1)  # the answer may beat the PUBACK
        assert info.rc == 0
        m = client.wait_any({accepted, rejected}, timeout=15)
        latencies.append(time.monotonic() - t0)
        assert m is not None and m.topic == accepted, m and m.payload[:300]
        bodies.append(m.json())
    return latencies, bodies


def private_key_der(body) -> bytes:
    key = serialization.load_pem_private_key(body["privateKey"].encode(), password=None)
    return key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


@pytest.fixture(scope="module")
def warm_server(module_server_factory):
    srv = module_server_factory(name="pool")
    time.sleep(POOL_WARM_S)
    return srv


def test_create_keys_from_a_warm_pool_answers_within_milliseconds(warm_server):
    with fast_claim_client(warm_server) as c:
        latencies, bodies = timed_requests(c, CREATE_KEYS, b"{}", ROUNDS)
    median = statistics.median(latencies)
    assert median < MEDIAN_MAX_S, f"median {median * 1000:.1f} ms; all: " + \
        ", ".join(f"{x * 1000:.0f}" for x in latencies)
    for b in bodies:
        assert set(b) == KEYS_ACCEPTED_FIELDS, sorted(b)
        check_issued(b)
    # each pooled key is handed out once
    keys = {private_key_der(b) for b in bodies}
    assert len(keys) == ROUNDS
    assert len({b["certificateId"] for b in bodies}) == ROUNDS


def test_create_from_csr_answers_within_milliseconds(warm_server, tmp_path):
    _key, csr = make_csr(tmp_path, "rsa2048")
    payload = json.dumps({"certificateSigningRequest": csr})
    with fast_claim_client(warm_server) as c:
        latencies, bodies = timed_requests(c, CREATE_FROM_CSR, payload, ROUNDS)
    median = statistics.median(latencies)
    assert median < MEDIAN_MAX_S, f"median {median * 1000:.1f} ms; all: " + \
        ", ".join(f"{x * 1000:.0f}" for x in latencies)
    assert len({b["certificateId"] for b in bodies}) == ROUNDS


def test_http_create_keys_uses_distinct_keys_too(warm_server):
    pems = set()
    for _ in range(3):
        reply = control_ok(warm_server, "POST", "/keys-and-certificate?setAsActive=false")
        pems.add(reply["keyPair"]["PrivateKey"])
    assert len(pems) == 3


def test_pool_disabled_still_issues_keys(module_server_factory):
    srv = module_server_factory("--key-pool", "0", name="nopool")
    assert "plugin_opt_key_pool 0\n" in (srv.state_dir / "mosquitto.conf").read_text()
    with fast_claim_client(srv) as c:
        _lat, bodies = timed_requests(c, CREATE_KEYS, b"{}", 3)
    for b in bodies:
        check_issued(b)
    assert len({private_key_der(b) for b in bodies}) == 3
    reply = control_ok(srv, "POST", "/keys-and-certificate?setAsActive=false")
    assert reply["keyPair"]["PrivateKey"].startswith("-----BEGIN RSA PRIVATE KEY-----\n")


def test_default_pool_size_is_written_to_the_plugin(warm_server):
    assert "plugin_opt_key_pool 16\n" in (warm_server.state_dir / "mosquitto.conf").read_text()


@pytest.mark.parametrize("value", ["-1", "4097", "abc", ""])
def test_invalid_key_pool_values_are_refused(tmp_path, value):
    proc = subprocess.run([str(IOTMOCK_BIN), "serve", "--state-dir", str(tmp_path / "s"),
                           "--key-pool", value], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2, proc.stderr
    assert "--key-pool N" in proc.stderr


KEYGEN_STORM = 8  # CreateKeysAndCertificate requests that each generate a key (no pool)


def test_csr_is_not_queued_behind_key_generation(module_server_factory, tmp_path):
    """CreateKeysAndCertificate requests that must generate their key take at most half the
    workers (the slow lane of emulator/workq.c), so a CSR sent after 8 of them is answered while
    they are still generating. Without the lane the CSR waits in line behind the first 4 keys,
    which take 100 ms or more each; with it, at most a key or two that happened to be quick can
    come back before the CSR's answer."""
    srv = module_server_factory("--key-pool", "0", name="nopool-lane")
    _key, csr = make_csr(tmp_path, "p256")
    with fast_claim_client(srv) as keys, fast_claim_client(srv) as other:
        keys.subscribe(CREATE_KEYS + "/accepted", CREATE_KEYS + "/rejected")
        other.subscribe(CREATE_FROM_CSR + "/accepted", CREATE_FROM_CSR + "/rejected")
        for _ in range(KEYGEN_STORM):
            keys.publish(CREATE_KEYS, b"{}")  # PUBACK: the job is queued
        other.publish(CREATE_FROM_CSR, {"certificateSigningRequest": csr})
        m = other.wait_any({CREATE_FROM_CSR + "/accepted", CREATE_FROM_CSR + "/rejected"}, 30)
        assert m is not None and m.topic == CREATE_FROM_CSR + "/accepted", m and m.payload[:300]
        before = len(keys.messages(CREATE_KEYS + "/accepted"))
        assert before <= 2, f"{before} of {KEYGEN_STORM} keys were answered before the CSR"
        answered = 0
        while answered < KEYGEN_STORM:
            m = keys.wait_any({CREATE_KEYS + "/accepted", CREATE_KEYS + "/rejected"}, 60)
            assert m is not None and m.topic == CREATE_KEYS + "/accepted", (
                f"{answered} of {KEYGEN_STORM} keys answered; {m and m.payload[:300]}")
            answered += 1
