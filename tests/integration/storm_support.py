"""The provisioning storm shared by test_load_faults.py and test_valgrind.py: devices that
run the keys or CSR flow through fleet-default over their own claim connections, some dropping
the connection at a chosen point mid-flow; an observer that keeps publishing through the storm;
and the checks of what the registry holds afterwards."""

import json
import os
import random
import re
import socket
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from iotmock_support import (CREATE_FROM_CSR, CREATE_KEYS, DEVICE_POLICY, FLEET_DEFAULT,
                             MqttClient, Server, cert_id, create_from_csr,
                             load_cert, provision_topic, register_thing, spki_der, unique,
                             write_credentials)

# CreateKeysAndCertificate makes an RSA-2048 key on the server (about 0.3 s of CPU each on the
# 2-core test machine); the other devices send CSRs for EC keys made up front.
KEYS_FLOW_SHARE = float(os.environ.get("IOTMOCK_LOAD_KEYS_SHARE", "0.05"))
FAULT_SHARE = 0.20  # devices that drop the claim connection mid-flow
ANSWER_TIMEOUT = 60.0  # the whole storm is queued behind 4 worker threads: be patient
OBSERVER_PERIOD = 0.05  # seconds between the observer's round trips

REGISTER = provision_topic(FLEET_DEFAULT)
REG_ACC, REG_REJ = REGISTER + "/accepted", REGISTER + "/rejected"
# What must never appear in the output of a server or of `iotmock serve`.
CRASH_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                 "Sanitizer", "Segmentation fault", "Aborted", "core dumped", "stack-overflow")

# Where a faulty device drops its claim connection:
#   after-create-request   the create request got its PUBACK, the answer is not awaited
#   after-create-answer    the certificate was issued (PENDING_ACTIVATION), RegisterThing never sent
#   after-register-request RegisterThing got its PUBACK, the answer is not awaited; half of these
#                          come back on a new claim connection and retry with the same token
FAULTS = ("after-create-request", "after-create-answer", "after-register-request")


@dataclass
class Device:
    index: int
    flow: str  # "csr" | "keys"
    fault: Optional[str]
    abrupt: bool  # drop the TCP connection rather than send DISCONNECT
    retry: bool  # after-register-request only: retry RegisterThing on a new connection
    key_pem: Optional[str] = None  # csr flow: made up front
    csr_pem: Optional[str] = None
    spki: Optional[bytes] = None
    serial: str = ""
    cert_id: Optional[str] = None
    token: Optional[str] = None
    outcome: str = "not run"  # completed | abandoned | failed
    error: str = ""
    seconds: float = 0.0
    tokens_seen: list = field(default_factory=list)


def make_devices(rng: random.Random, count: int, prefix: str, faults=FAULTS,
                 fault_share=FAULT_SHARE, keys_share=KEYS_FLOW_SHARE) -> list:
    devices = []
    for i in range(count):
        fault = rng.choice(faults) if rng.random() < fault_share else None
        d = Device(i, "keys" if rng.random() < keys_share else "csr", fault,
                   abrupt=rng.random() < 0.5, retry=rng.random() < 0.5,
                   serial=f"{prefix}-{i:04d}-{rng.getrandbits(32):08x}")
        if d.flow == "csr":
            key = ec.generate_private_key(ec.SECP256R1())
            csr = (x509.CertificateSigningRequestBuilder()
                   .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, d.serial)]))
                   .sign(key, hashes.SHA256()))
            d.key_pem = key.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.TraditionalOpenSSL,
                                          serialization.NoEncryption()).decode()
            d.csr_pem = csr.public_bytes(serialization.Encoding.PEM).decode()
            d.spki = spki_der(key)
        devices.append(d)
    return devices


# --------------------------------------------------------------------------------------------
# One device


class DeviceError(Exception):
    pass


def release(c: MqttClient):
    """close(), and the socket pair paho 1.6.1 keeps to wake its network thread: left to the
    garbage collector (the client sits in reference cycles), those pile up past descriptor 1024,
    where paho's select() fails and new connections die before their CONNACK."""
    c.close()
    try:
        c._c._reset_sockets(sockpair_only=True)
    except (AttributeError, OSError):
        pass


def drop(c: MqttClient, abrupt: bool):
    """Leaves: a TCP reset-like close without DISCONNECT, or a clean DISCONNECT."""
    if abrupt:
        sock = c._c.socket()
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
    release(c)


def request(c: MqttClient, topic: str, payload) -> None:
    info = c._c.publish(topic, json.dumps(payload), qos=1)
    if info.rc != 0:
        raise DeviceError(f"publish to {topic} failed locally: rc={info.rc}")
    info.wait_for_publish(ANSWER_TIMEOUT)
    if not info.is_published():
        raise DeviceError(f"no PUBACK for {topic}; {c.state()}")


def answer(c: MqttClient, topic: str) -> dict:
    m = c.wait_any({topic + "/accepted", topic + "/rejected"}, ANSWER_TIMEOUT)
    if m is None:
        raise DeviceError(f"no answer on {topic} within {ANSWER_TIMEOUT} s; {c.state()}")
    body = m.json()
    if m.topic.endswith("/rejected"):
        raise DeviceError(f"{topic} rejected: {body}")
    return body


def claim_connection(srv: Server, d: Device, topics) -> MqttClient:
    c = MqttClient(srv, srv.claim_cert, srv.claim_key, client_id=unique(f"claim{d.index}"))
    try:
        res = c.try_connect(timeout=ANSWER_TIMEOUT)
        if not res.ok:
            raise DeviceError(f"claim connection failed: {res}")
        c.subscribe(*[t + s for t in topics for s in ("/accepted", "/rejected")], qos=1,
                    timeout=ANSWER_TIMEOUT)
    except BaseException:
        release(c)
        raise
    return c


def register(c: MqttClient, d: Device):
    request(c, REGISTER, {"certificateOwnershipToken": d.token,
                          "parameters": {"SerialNumber": d.serial}})


def check_register_answer(d: Device, body: dict):
    if body.get("thingName") != d.serial:
        raise DeviceError(f"RegisterThing answered for {body.get('thingName')}, not {d.serial}")


def provision(srv: Server, d: Device, creds: Path, stats: "Stats"):
    """The fleet provisioning flow of one device, with its fault, then the device certificate's
    first connection."""
    t0 = time.monotonic()
    create = CREATE_KEYS if d.flow == "keys" else CREATE_FROM_CSR
    c = claim_connection(srv, d, (create, REGISTER))
    try:
        request(c, create, {} if d.flow == "keys" else {"certificateSigningRequest": d.csr_pem})
        stats.count("create requests")
        if d.fault == "after-create-request":
            drop(c, d.abrupt)
            d.outcome = "abandoned"
            return
        body = answer(c, create)
        d.cert_id, d.token = body["certificateId"], body["certificateOwnershipToken"]
        d.tokens_seen.append(d.token)
        if cert_id(body["certificatePem"]) != d.cert_id:
            raise DeviceError("certificateId is not the certificate's")
        cert = load_cert(body["certificatePem"])
        if d.flow == "keys":  # the private key sent is the certificate's, and only to us
            d.key_pem = body["privateKey"]
            key = serialization.load_pem_private_key(d.key_pem.encode(), None)
            if spki_der(key) != spki_der(cert):
                raise DeviceError("privateKey does not belong to certificatePem")
        elif spki_der(cert) != d.spki:
            raise DeviceError("the certificate does not carry my CSR's key: someone else's answer")
        stats.count("create accepted")
        if d.fault == "after-create-answer":
            drop(c, d.abrupt)
            d.outcome = "abandoned"
            return
        register(c, d)
        if d.fault == "after-register-request":
            drop(c, d.abrupt)
            if not d.retry:
                d.outcome = "abandoned"
                return
            # The token is good until it expires: a new connection retries.
            c = claim_connection(srv, d, (REGISTER,))
            register(c, d)
            stats.count("register retries")
        check_register_answer(d, answer(c, REGISTER))
        stats.count("register accepted")
    finally:
        release(c)
    # The new certificate works: client id = thing name, a QoS 1 publish is acknowledged and
    # comes back to the device's own subscription (a policy refusal would not).
    cert_path, key_path = write_credentials(creds, d.serial, body["certificatePem"], d.key_pem)
    dev = MqttClient(srv, cert_path, key_path, client_id=d.serial)
    try:
        res = dev.try_connect(timeout=ANSWER_TIMEOUT)
        if not res.ok:
            raise DeviceError(f"the new certificate cannot connect: {res}")
        topic = f"devices/{d.serial}/hello"
        dev.subscribe(topic, qos=1, timeout=ANSWER_TIMEOUT)
        request(dev, topic, {"serial": d.serial})
        m = dev.wait_message(topic, ANSWER_TIMEOUT)
        if m is None or m.json() != {"serial": d.serial}:
            raise DeviceError(f"own message on {topic} not delivered: {m}; {dev.state()}")
    finally:
        release(dev)
    d.outcome = "completed"
    d.seconds = time.monotonic() - t0


def run_device(srv: Server, d: Device, creds: Path, stats: "Stats"):
    try:
        provision(srv, d, creds, stats)
    except (DeviceError, AssertionError, OSError, ValueError, KeyError) as e:
        d.outcome, d.error = "failed", f"{type(e).__name__}: {e}"


class Stats:
    def __init__(self):
        self._lock = threading.Lock()
        self.counts = {}

    def count(self, what: str):
        with self._lock:
            self.counts[what] = self.counts.get(what, 0) + 1


# --------------------------------------------------------------------------------------------
# The unrelated device and the spy


class Observer(threading.Thread):
    """A provisioned device doing QoS 1 publish/subscribe round trips on its own topic for as
    long as the storm lasts."""

    def __init__(self, client: MqttClient, thing: str):
        super().__init__(daemon=True)
        self.c, self.topic = client, f"devices/{thing}/ping"
        self.latencies, self.failures = [], []
        self.stop = threading.Event()

    def run(self):
        self.c.subscribe(self.topic, qos=1)
        n = 0
        while not self.stop.is_set():
            n += 1
            body = f"ping-{n}".encode()
            t0 = time.monotonic()
            try:
                self.c.publish(self.topic, body, qos=1, timeout=30)
                m = self.c.wait_message(self.topic, 30)
            except AssertionError as e:
                self.failures.append(f"round trip {n}: {e}")
                return
            if m is None or m.payload != body:
                self.failures.append(f"round trip {n}: {m and m.payload!r} instead of {body!r}; "
                                     f"{self.c.state()}")
                return
            self.latencies.append(time.monotonic() - t0)
            self.stop.wait(OBSERVER_PERIOD)

    def summary(self) -> str:
        lat = sorted(self.latencies)
        if not lat:
            return "no round trips"

        def pct(p):
            return lat[min(len(lat) - 1, int(p / 100 * len(lat)))] * 1000

        return (f"{len(lat)} round trips, p50 {pct(50):.1f} ms, p99 {pct(99):.1f} ms, "
                f"max {lat[-1] * 1000:.1f} ms")


def provisioned_device(srv: Server, tmp: Path, name: str) -> MqttClient:
    """A device provisioned the usual way (CSR flow), connected with its certificate."""
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
           .sign(key, hashes.SHA256())).public_bytes(serialization.Encoding.PEM).decode()
    claim = MqttClient(srv, srv.claim_cert, srv.claim_key, client_id=unique("obsclaim")).connect()
    try:
        body = create_from_csr(claim, csr)
        which, reg = register_thing(claim, FLEET_DEFAULT, body["certificateOwnershipToken"],
                                    {"SerialNumber": name})
        assert which == "accepted", reg
    finally:
        release(claim)
    key_pem = key.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption()).decode()
    cert, key_path = write_credentials(tmp, name, body["certificatePem"], key_pem)
    return MqttClient(srv, cert, key_path, client_id=name).connect()


# --------------------------------------------------------------------------------------------
# The registry, read beside the running server


def read_registry(srv: Server) -> dict:
    con = sqlite3.connect(f"file:{srv.state_dir / 'registry.db'}?mode=ro", uri=True, timeout=30)
    try:
        return {
            "certs": dict(con.execute("SELECT id, status FROM certificates")),
            "things": {r[0] for r in con.execute("SELECT name FROM things")},
            "principals": set(con.execute("SELECT thing, principal FROM thing_principals")),
            "targets": set(con.execute("SELECT policy, target FROM policy_targets")),
            "tokens": con.execute("SELECT count(*) FROM tokens").fetchone()[0],
            "foreign_keys": con.execute("PRAGMA foreign_key_check").fetchall(),
        }
    finally:
        con.close()


def half_provisioned(reg: dict, claim_id: str) -> list:
    """ACTIVE without thing or policy, PENDING with attachments, a thing without its ACTIVE
    certificate."""
    problems = []
    things_of, certs_of = {}, {}
    for thing, principal in reg["principals"]:
        things_of.setdefault(principal, set()).add(thing)
        certs_of.setdefault(thing, set()).add(principal)
    policies_of = {}
    for policy, target in reg["targets"]:
        policies_of.setdefault(target, set()).add(policy)
    for cid, status in reg["certs"].items():
        if cid == claim_id:
            continue
        if status == "ACTIVE":
            if not things_of.get(cid) or DEVICE_POLICY not in policies_of.get(cid, ()):
                problems.append(f"{cid[:12]} ACTIVE with things {things_of.get(cid)} and "
                                f"policies {policies_of.get(cid)}")
        elif status == "PENDING_ACTIVATION":
            if things_of.get(cid) or policies_of.get(cid):
                problems.append(f"{cid[:12]} PENDING_ACTIVATION with things "
                                f"{things_of.get(cid)} and policies {policies_of.get(cid)}")
        else:
            problems.append(f"{cid[:12]} in status {status}")
    for thing in reg["things"]:
        if not any(reg["certs"].get(c) == "ACTIVE" for c in certs_of.get(thing, ())):
            problems.append(f"thing {thing} without an ACTIVE certificate")
    if reg["foreign_keys"]:
        problems.append(f"foreign_key_check: {reg['foreign_keys'][:5]}")
    return problems


def tokens_in(tokens: set, data: bytes) -> set:
    """The TOKENS that occur anywhere in DATA (also run together with other text): every window
    of a token's length inside a run of token characters is looked up."""
    found = set()
    for length in {len(t) for t in tokens}:
        wanted = {t.encode() for t in tokens if len(t) == length}
        for run in re.finditer(rb"[A-Za-z0-9_+/=-]{%d,}" % length, data):
            text = run.group()
            found.update(text[i:i + length].decode() for i in range(len(text) - length + 1)
                         if text[i:i + length] in wanted)
    return found


def state_bytes(srv: Server) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(srv.state_dir.glob("registry.db*")))




def check_outcomes(devices: list, seed: int) -> list:
    """Every device ended as its plan says: none failed, and exactly those with no fault (or a
    retried RegisterThing) completed. Returns the completed devices."""
    failed = [d for d in devices if d.outcome == "failed"]
    assert not failed, (f"{len(failed)} of {len(devices)} devices failed (seed {seed}), e.g.:\n" +
                        "\n".join(f"#{d.index} {d.flow} fault={d.fault}: {d.error}"
                                  for d in failed[:15]))
    completed = [d for d in devices if d.outcome == "completed"]
    expected = [d for d in devices
                if d.fault is None or (d.fault == "after-register-request" and d.retry)]
    assert {d.index for d in completed} == {d.index for d in expected}
    return completed
