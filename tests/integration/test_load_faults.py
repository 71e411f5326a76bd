"""Load and faults (issue 7 item 4): 1,000 devices provision at once through fleet-default, a
bounded number of claim connections at a time, about 20% of them dropping their connection at a
random point mid-flow (abruptly or with DISCONNECT).

Every device that completes gets a working certificate (it reconnects with it and a QoS 1 publish
is acknowledged); none is left half-provisioned (a certificate is ACTIVE with its thing and
iotmock-device-policy, or PENDING_ACTIVATION with nothing attached); no answer, private key or
ownership token reaches anyone but its requester or lands in the registry or the log; an
unrelated device's publish/subscribe round trips keep working throughout (their latency is
printed, not judged). On a server with --token-ttl 2, the certificates abandoned while pending are
deleted once their tokens expire, and the tokens with them.

Knobs: IOTMOCK_LOAD_DEVICES (default 1000), IOTMOCK_LOAD_CONCURRENCY (default 64),
IOTMOCK_LOAD_KEYS_SHARE (default 0.05), IOTMOCK_LOAD_SEED (random seed, printed).
"""

import inspect
import os
import random
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from iotmock_support import (CREATE_FROM_CSR, CREATE_KEYS, MqttClient, Server, start_on_free_ports,
                             cert_id, unique)
from storm_support import (CRASH_MARKERS, FAULTS, REGISTER, Observer, Stats, check_outcomes,
                           half_provisioned, make_devices, provisioned_device, read_registry,
                           release, run_device, state_bytes, tokens_in)

DEVICES = int(os.environ.get("IOTMOCK_LOAD_DEVICES", "1000"))
CONCURRENCY = int(os.environ.get("IOTMOCK_LOAD_CONCURRENCY", "64"))
SEED = int(os.environ.get("IOTMOCK_LOAD_SEED", str(int(time.time()))))


# --------------------------------------------------------------------------------------------
# Fixtures


def _start(tmp_path_factory, name: str, *args) -> Server:
    # The shipped claim policy is all the flows need: no test policy is attached at start, where
    # the support code offers that switch.
    kw = ({"grant_test_policy": False}
          if "grant_test_policy" in inspect.signature(Server.__init__).parameters else {})
    return start_on_free_ports(lambda _: Server(tmp_path_factory.mktemp(name), args, name=name,
                                                **kw))


def _stop_clean(srv: Server):
    problems = srv.stop()
    log = srv.stderr_text(10 ** 8)
    assert not problems, "; ".join(problems) + "\n" + srv.describe()
    found = [m for m in CRASH_MARKERS if m in log]
    assert not found, f"{found} in the server log:\n{log[-20000:]}"


@pytest.fixture
def load_server(tmp_path_factory):
    """A default server; after the test it must stop cleanly with no sanitizer report."""
    srv = _start(tmp_path_factory, "load")
    yield srv
    _stop_clean(srv)


@pytest.fixture
def ttl_server(tmp_path_factory):
    srv = _start(tmp_path_factory, "load-ttl", "--token-ttl", "2")
    yield srv
    _stop_clean(srv)


# --------------------------------------------------------------------------------------------
# Tests


def test_thousand_devices_with_disconnects(load_server, tmp_path):
    srv = load_server
    rng = random.Random(SEED)
    t_setup = time.monotonic()
    devices = make_devices(rng, DEVICES, "load")
    setup_s = time.monotonic() - t_setup
    claim_id = cert_id(srv.claim_cert.read_text())
    creds = tmp_path / "creds"
    stats = Stats()

    observer_name = unique("observer")
    observer = Observer(provisioned_device(srv, tmp_path, observer_name), observer_name)
    # A claim client that asks nothing but listens on every answer topic it may subscribe to.
    spy = MqttClient(srv, srv.claim_cert, srv.claim_key, client_id=unique("spy")).connect()
    spy_topics = [t + s for t in (CREATE_KEYS, CREATE_FROM_CSR, REGISTER)
                  for s in ("/accepted", "/rejected")]
    spy.subscribe(*spy_topics, qos=1)
    observer.start()

    t0 = time.monotonic()
    try:
        with ThreadPoolExecutor(max_workers=CONCURRENCY) as pool:
            for d in devices:
                pool.submit(run_device, srv, d, creds, stats)
        storm_s = time.monotonic() - t0
    finally:
        observer.stop.set()
        observer.join(timeout=60)
        release(observer.c)
    spied = spy.messages()
    release(spy)

    # ---- every device as its plan says ----
    completed = check_outcomes(devices, SEED)
    assert not observer.failures, f"the broker stopped serving: {observer.failures}"
    assert len(observer.latencies) > 0
    assert srv.proc.poll() is None, f"server exited with {srv.proc.returncode}"
    assert not spied, (f"a bystander received {len(spied)} provisioning answers, e.g. "
                       f"{spied[0].topic}: {spied[0].payload[:200]!r}")

    # ---- the registry: nothing half-provisioned, everything promised is there ----
    reg = read_registry(srv)
    problems = half_provisioned(reg, claim_id)
    assert not problems, f"{len(problems)} half-provisioned:\n" + "\n".join(problems[:20])
    for d in completed:
        assert reg["certs"].get(d.cert_id) == "ACTIVE", f"{d.serial}: {reg['certs'].get(d.cert_id)}"
        assert (d.serial, d.cert_id) in reg["principals"], d.serial
    for d in devices:
        if d.fault == "after-create-answer":
            assert reg["certs"].get(d.cert_id) == "PENDING_ACTIVATION", \
                f"{d.serial} never registered, its certificate is {reg['certs'].get(d.cert_id)}"
    issued = sum(1 for d in devices if d.cert_id)
    requested = stats.counts.get("create requests", 0)
    # Every answered request is a certificate; an unanswered one (the device left) may be too.
    assert issued <= len(reg["certs"]) - 2 <= requested, (issued, len(reg["certs"]), requested)
    assert reg["tokens"] <= len(reg["certs"]) - 1  # at most one per certificate

    # ---- no private key or token outside its answer ----
    stored = state_bytes(srv)
    assert b"PRIVATE KEY" not in stored, "a private key is stored in the registry"
    log = srv.stderr_text(10 ** 8) + srv.stdout_path.read_text(errors="replace")
    assert "PRIVATE KEY" not in log, "a private key is in the server log"
    tokens = {t for d in devices for t in d.tokens_seen}
    leaked = tokens_in(tokens, log.encode()) | tokens_in(tokens, stored)
    assert not leaked, f"{len(leaked)} ownership tokens in the log or the registry files"

    flows = {f: sum(1 for d in devices if d.flow == f) for f in ("csr", "keys")}
    faults = {f: sum(1 for d in devices if d.fault == f) for f in FAULTS}
    slow = sorted(d.seconds for d in completed)
    print(f"\nload (seed {SEED}): {DEVICES} devices ({flows['csr']} CSR, {flows['keys']} keys), "
          f"{CONCURRENCY} at a time, storm {storm_s:.1f} s (+{setup_s:.1f} s making keys)\n"
          f"  faults: {faults}, abrupt {sum(1 for d in devices if d.fault and d.abrupt)}\n"
          f"  completed {len(completed)} (incl. {stats.counts.get('register retries', 0)} "
          f"retries), abandoned {sum(1 for d in devices if d.outcome == 'abandoned')}, "
          f"device flow p50 {slow[len(slow) // 2]:.2f} s, max {slow[-1]:.2f} s\n"
          f"  registry: {len(reg['certs'])} certificates "
          f"({sum(1 for s in reg['certs'].values() if s == 'ACTIVE')} ACTIVE), "
          f"{len(reg['things'])} things, {reg['tokens']} tokens\n"
          f"  bystander device: {observer.summary()}")


def test_abandoned_pending_certificates_expire(ttl_server, tmp_path):
    """--token-ttl 2: certificates issued to devices that left before RegisterThing are deleted
    with their tokens; the registered ones stay."""
    srv = ttl_server
    rng = random.Random(f"{SEED}-ttl")
    # CSR flow only and few at a time: a registering device must beat the 2 s lifetime.
    devices = make_devices(rng, 30, "ttl", faults=("after-create-request", "after-create-answer"),
                           fault_share=0.6, keys_share=0)
    claim_id = cert_id(srv.claim_cert.read_text())
    stats = Stats()
    with ThreadPoolExecutor(max_workers=4) as pool:
        for d in devices:
            pool.submit(run_device, srv, d, tmp_path / "creds", stats)
    failed = [d for d in devices if d.outcome == "failed"]
    assert not failed, "\n".join(f"#{d.index} {d.fault}: {d.error}" for d in failed[:10])
    completed = {d.cert_id for d in devices if d.outcome == "completed"}
    pending = {d.cert_id for d in devices if d.fault == "after-create-answer"}
    before = read_registry(srv)  # some tokens may have expired already
    assert not {c for c in pending if before["certs"].get(c, "PENDING_ACTIVATION") !=
                "PENDING_ACTIVATION"}, "an abandoned certificate is not pending"
    assert not half_provisioned(before, claim_id)

    deadline = time.monotonic() + 15
    while True:
        reg = read_registry(srv)
        left = {c for c, s in reg["certs"].items() if s == "PENDING_ACTIVATION"}
        if not left and reg["tokens"] == 0:
            break
        assert time.monotonic() < deadline, (
            f"{len(left)} pending certificates and {reg['tokens']} tokens still there 15 s "
            f"after a 2 s token lifetime")
        time.sleep(0.5)
    assert set(reg["certs"]) == completed | {claim_id}, (
        f"expected the claim and the {len(completed)} registered certificates, found "
        f"{len(reg['certs'])}")
    assert not half_provisioned(reg, claim_id)
    left_early = sum(1 for d in devices if d.outcome == "abandoned")
    print(f"\ntoken expiry: {len(devices)} devices, {len(completed)} registered, {left_early} "
          f"left before RegisterThing ({len(pending)} with their certificate id); "
          f"{len(before['certs']) - 1 - len(completed)} pending certificates and "
          f"{before['tokens']} tokens when the last device was done, none "
          f"{15 - (deadline - time.monotonic()):.1f} s later")
