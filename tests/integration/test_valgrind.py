"""The real broker and iotmock.so under valgrind's memcheck (issue 7 item 4, the valgrind half;
the ASan/LSan half is every other test, run against build/asan).

A small provisioning storm in the style of test_load_faults.py (IOTMOCK_VALGRIND_DEVICES devices,
default 40: mostly CSR flow, a few CreateKeysAndCertificate, about a fifth of them dropping the
claim connection mid-flow, abruptly or with DISCONNECT) runs against a server whose broker is
tests/valgrind/mosquitto-memcheck.sh, i.e. /usr/sbin/mosquitto under memcheck with the plugin of
the non-sanitizer build build/valgrind (scripts/setup.sh test makes it; IOTMOCK_VALGRIND_BIN
overrides). Meanwhile the control plane creates things, groups and policies, attaches a policy,
and sets a connected device's certificate INACTIVE, which disconnects it; before that the device
has a publish and a subscription refused (MQTT 5) and a publish refused on MQTT 3.1.1, which
closes its connection.

After SIGTERM the memcheck report must exist and say: no errors, and nothing definitely or
indirectly lost. tests/valgrind/third-party.supp may hide noise from Mosquitto or the libraries
(never a frame of iotmock.so). The provisioning outcomes are checked as in the load test, so the
test cannot pass by doing nothing. Skipped only when valgrind is not installed.

Knobs: IOTMOCK_VALGRIND_DEVICES, IOTMOCK_LOAD_SEED (the random seed, printed), and
IOTMOCK_VALGRIND_EXTRA (more valgrind options, e.g. --track-origins=yes to see where an
uninitialised value came from).
"""

import os
import random
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import storm_support
from iotmock_support import (MQTTv5, MQTTv311, NOT_AUTHORIZED_V5, PUBACK_OK, REPO,
                             PolicyClient, Server, add_thing_to_group, allow, attach_policy,
                             cert_arn, cert_id, control_ok, create_policy, create_policy_version,
                             create_thing, create_thing_group, policy_document,
                             set_certificate_status, start_on_free_ports, unique, which_or_none)
from storm_support import (FAULTS, Stats, check_outcomes, half_provisioned, make_devices,
                           provisioned_device, read_registry, release, run_device)

VALGRIND = which_or_none("valgrind")
needs_valgrind = pytest.mark.skipif(
    VALGRIND is None, reason="valgrind is not installed (scripts/setup.sh test installs it)")

VALGRIND_BIN = Path(os.environ.get("IOTMOCK_VALGRIND_BIN",
                                   str(REPO / "build" / "valgrind" / "cli" / "iotmock")))
WRAPPER = REPO / "tests" / "valgrind" / "mosquitto-memcheck.sh"
DEVICES = int(os.environ.get("IOTMOCK_VALGRIND_DEVICES", "40"))
KEYS_DEVICES = 2  # an RSA-2048 key costs 10-30 s of CPU under memcheck
CONCURRENCY = 8
FAULT_SHARE = 0.2
SEED = int(os.environ.get("IOTMOCK_LOAD_SEED", str(int(time.time()))))
SLOW = 30.0  # seconds for what takes milliseconds natively (a timeout, not an expectation)


class MemcheckServer(Server):
    """`iotmock serve` from build/valgrind, its broker under memcheck, reporting to LOG."""

    binary = VALGRIND_BIN
    health_timeout_s = 120.0  # memcheck starts the broker and plugin in seconds, not milliseconds
    stop_timeout_s = 180.0  # the leak check at exit walks the whole heap

    def __init__(self, workdir: Path, extra_args, log: Path):
        super().__init__(workdir, extra_args, name="memcheck", grant_test_policy=False)
        self.log = log
        self.extra_env = {"IOTMOCK_MOSQUITTO": str(WRAPPER), "IOTMOCK_VALGRIND_LOG": str(log)}


def start_memcheck_server(tmp_path_factory) -> MemcheckServer:
    if not VALGRIND_BIN.exists():
        pytest.fail(f"{VALGRIND_BIN} missing: `scripts/setup.sh test` builds it (or set "
                    "IOTMOCK_VALGRIND_BIN)", pytrace=False)
    def make(_attempt):
        work = tmp_path_factory.mktemp("memcheck")
        # One pre-generated key: the pool's fill, take and refill paths run, at little cost.
        return MemcheckServer(work, ("--key-pool", "1"), work / "memcheck.log")

    return start_on_free_ports(make)


# --------------------------------------------------------------------------------------------
# The memcheck report

LEAK_LINE = re.compile(r"(definitely|indirectly|possibly) lost: ([\d,]+) bytes in ([\d,]+) blocks")
ERROR_SUMMARY = re.compile(r"ERROR SUMMARY: (\d+) errors from (\d+) contexts")


def memcheck_findings(report: str) -> list:
    """What is wrong in a memcheck report: errors, definite or indirect leaks, or a report that
    did not get to its end."""
    problems = []
    if "Memcheck, a memory error detector" not in report:
        problems.append("not a memcheck report")
    summaries = ERROR_SUMMARY.findall(report)
    if not summaries:
        problems.append("no ERROR SUMMARY: the broker did not exit through valgrind")
    elif summaries[-1] != ("0", "0"):
        problems.append(f"ERROR SUMMARY: {summaries[-1][0]} errors from {summaries[-1][1]} "
                        "contexts")
    leaks = {kind: int(size.replace(",", "")) for kind, size, _ in LEAK_LINE.findall(report)}
    if "definitely" not in leaks:
        problems.append("no LEAK SUMMARY")
    for kind in ("definitely", "indirectly"):
        if leaks.get(kind):
            problems.append(f"{kind} lost: {leaks[kind]} bytes")
    return problems


def loss_records(report: str) -> list:
    """The leak and error blocks of a report (each block: its lines up to a blank one), those that
    go through iotmock.so first."""
    blocks, cur = [], []
    for line in report.splitlines():
        text = re.sub(r"^==\d+== ?", "", line)
        if text.strip():
            cur.append(text)
        elif cur:
            blocks.append("\n".join(cur))
            cur = []
    if cur:
        blocks.append("\n".join(cur))
    interesting = [b for b in blocks
                   if re.search(r"are definitely lost|are indirectly lost|^Invalid |depends on "
                                r"uninitialised|^Mismatched |^Syscall param|^Source and "
                                r"destination|^Use of uninitialised", b, re.M)]
    return sorted(interesting, key=lambda b: not ours(b))


# The sources of iotmock.so; memcheck names a frame of ours "function (file.c:line)".
OUR_SOURCES = sorted({p.name for d in ("plugin", "emulator") for p in (REPO / d).rglob("*.c")})


def ours(block: str) -> bool:
    return "iotmock.so" in block or any(f"({name}:" in block for name in OUR_SOURCES)


def suppression_problems(text: str) -> list:
    """tests/valgrind/third-party.supp's rules: each entry follows a comment, none names
    iotmock or starts with a frame that would match anything."""
    problems, lines = [], text.splitlines()
    for i, line in enumerate(lines):
        if line.strip() != "{":
            continue
        before = [x.strip() for x in lines[:i] if x.strip()]
        if not before or not before[-1].startswith("#"):
            problems.append(f"line {i + 1}: an entry without a comment saying why it is not ours")
        body = []
        for x in lines[i + 1:]:
            if x.strip() == "}":
                break
            body.append(x.strip())
        frames = [x for x in body[2:] if not x.startswith("match-leak-kinds")]
        if any("iotmock" in f for f in body):
            problems.append(f"line {i + 1}: names iotmock")
        if frames and frames[0] in ("obj:*", "fun:*", "..."):
            problems.append(f"line {i + 1}: its first frame matches any code")
        for f in frames:
            name = f[4:] if f.startswith("fun:") else ""
            if name and "*" not in name and "?" not in name and \
                    re.search(rf"^[A-Za-z_][\w *]*\b{re.escape(name)}\(", our_code(), re.M):
                problems.append(f"line {i + 1}: {name} is a function of iotmock")
    return problems


def our_code() -> str:
    """The C sources of iotmock.so (a function is defined from the start of a line)."""
    return "\n".join(p.read_text(errors="replace") for d in ("plugin", "emulator")
                     for p in (REPO / d).rglob("*.c"))


def test_suppressions_are_third_party_only():
    supp = WRAPPER.parent / "third-party.supp"
    assert f'--suppressions="$here/{supp.name}"' in WRAPPER.read_text()
    problems = suppression_problems(supp.read_text())
    assert not problems, f"{supp}: " + "; ".join(problems)


# --------------------------------------------------------------------------------------------
# The device that has things refused, then its certificate deactivated


def refusals(srv: Server, name: str, cert: Path, key: Path) -> PolicyClient:
    """A device's refused publish and subscription (MQTT 5: PUBACK / SUBACK 0x87, the connection
    stays), then a refused publish on MQTT 3.1.1 (the connection is closed). Returns a new MQTT 5
    connection of the device."""
    c = PolicyClient(srv, cert, key, protocol=MQTTv5, client_id=name)
    assert c.try_connect(SLOW).ok, c.state()
    assert c.publish_result(f"devices/{name}/ok", b"1", timeout=SLOW) in PUBACK_OK
    assert c.publish_result(f"elsewhere/{name}", b"2", timeout=SLOW) == NOT_AUTHORIZED_V5
    assert c.subscribe_result("elsewhere/#", timeout=SLOW) == [NOT_AUTHORIZED_V5]
    assert not c.closed, c.state()
    release(c)
    old = PolicyClient(srv, cert, key, protocol=MQTTv311, client_id=name)
    assert old.try_connect(SLOW).ok, old.state()
    assert old.publish_result(f"elsewhere/{name}", b"3", timeout=SLOW) is None
    assert old.wait_closed(SLOW), "MQTT 3.1.1: a refused publish must close the connection"
    release(old)
    c = PolicyClient(srv, cert, key, protocol=MQTTv5, client_id=name)
    assert c.try_connect(SLOW).ok, c.state()
    return c


def control_plane_work(srv: Server, device_cert_id: str, tag: str):
    """Registry writes and reads while the storm runs, a refused call among them."""
    thing, group = unique(f"{tag}-thing"), unique(f"{tag}-group")
    create_thing(srv, thing, attributes={"kind": "memcheck"})
    create_thing_group(srv, group)
    add_thing_to_group(srv, group, thing)
    policy = create_policy(srv, policy_document(allow("iot:Publish", "topic/extra/*")))
    attach_policy(srv, policy, cert_arn(device_cert_id))
    assert create_policy_version(srv, policy, policy_document(
        allow("iot:Subscribe", "topicfilter/extra/*"))) == "2"
    assert control_ok(srv, "GET", f"/things/{thing}")["thingName"] == thing
    control_ok(srv, "GET", "/things")
    control_ok(srv, "GET", f"/certificates/{device_cert_id}")
    status, _ = srv.control_plane("POST", f"/things/{unique(tag)}", {"attributePayload": 7})
    assert 400 <= status < 500, f"a malformed CreateThing got HTTP {status}"
    control_ok(srv, "DELETE", f"/things/{thing}")


# --------------------------------------------------------------------------------------------


def plan(rng: random.Random) -> list:
    """DEVICES devices (CSR keys made up front), KEYS_DEVICES of them on the keys flow, and a
    FAULT_SHARE of them dropping mid-flow in every way test_load_faults.py knows."""
    devices = make_devices(rng, DEVICES, "vg", fault_share=0, keys_share=0)
    ways = [(f, abrupt, retry) for f in FAULTS for abrupt in (True, False) for retry in (True, False)
            if f == "after-register-request" or retry]
    for i, d in enumerate(rng.sample(devices, max(len(ways), int(DEVICES * FAULT_SHARE)))):
        d.fault, d.abrupt, d.retry = ways[i % len(ways)]
    keys = rng.sample(devices, KEYS_DEVICES)
    for d in keys:
        d.flow, d.key_pem, d.csr_pem, d.spki = "keys", None, None, None
    keys[0].fault = None  # one completes, one leaves with its new key unused
    keys[1].fault, keys[1].abrupt = "after-create-answer", True
    return devices


def storm(srv: MemcheckServer, tmp_path: Path) -> str:
    """The provisioning storm and everything around it; returns a summary line."""
    rng = random.Random(SEED)
    devices = plan(rng)
    claim_id = cert_id(srv.claim_cert.read_text())
    stats = Stats()

    name = unique("vg-bystander")
    first = provisioned_device(srv, tmp_path, name)
    cert, key = Path(first.cert), Path(first.key)
    release(first)
    bystander_id = cert_id(cert.read_text())
    bystander = refusals(srv, name, cert, key)

    t0 = time.monotonic()
    cp_error = []
    with ThreadPoolExecutor(max_workers=CONCURRENCY) as pool:
        futures = [pool.submit(run_device, srv, d, tmp_path / "creds", stats) for d in devices]
        cp = threading.Thread(target=_guard, args=(cp_error, control_plane_work, srv,
                                                   bystander_id, "vg"))
        cp.start()
        # A connected device whose certificate leaves ACTIVE is disconnected, and stays out.
        set_certificate_status(srv, bystander_id, "INACTIVE")
        assert bystander.wait_closed(SLOW), "still connected after its certificate went INACTIVE"
        release(bystander)
        again = PolicyClient(srv, cert, key, protocol=MQTTv5, client_id=name)
        assert not again.try_connect(SLOW).ok, "an INACTIVE certificate connected"
        release(again)
        cp.join()
        for f in futures:
            f.result()
    storm_s = time.monotonic() - t0
    assert not cp_error, cp_error[0]

    # ---- every device as its plan says (the load test's checks) ----
    completed = check_outcomes(devices, SEED)
    assert len(completed) >= DEVICES // 2, "too few devices completed to mean anything"
    assert any(d.flow == "keys" for d in completed), "no keys-flow device completed"
    reg = read_registry(srv)
    assert reg["certs"].get(bystander_id) == "INACTIVE"
    problems = [p for p in half_provisioned(reg, claim_id)
                if not p.startswith(bystander_id[:12]) and name not in p]
    assert not problems, "half-provisioned:\n" + "\n".join(problems[:20])
    for d in completed:
        assert reg["certs"].get(d.cert_id) == "ACTIVE", d.serial
        assert (d.serial, d.cert_id) in reg["principals"], d.serial
    assert srv.proc.poll() is None, f"the broker exited with {srv.proc.returncode}"

    flows = {f: sum(1 for d in devices if d.flow == f) for f in ("csr", "keys")}
    faults = {f: sum(1 for d in devices if d.fault == f) for f in FAULTS}
    slow = sorted(d.seconds for d in completed)
    return (f"{DEVICES} devices ({flows['csr']} CSR, {flows['keys']} keys), {CONCURRENCY} at a "
            f"time, faults {faults}; completed {len(completed)}, device flow p50 "
            f"{slow[len(slow) // 2]:.1f} s, max {slow[-1]:.1f} s; storm {storm_s:.1f} s")


@needs_valgrind
def test_storm_under_memcheck(tmp_path_factory, tmp_path, monkeypatch):
    # Under memcheck one RSA key takes 10-30 s of CPU, and the broker's threads share one core.
    monkeypatch.setattr(storm_support, "ANSWER_TIMEOUT", 240.0)
    t0 = time.monotonic()
    srv = start_memcheck_server(tmp_path_factory)
    started_s = time.monotonic() - t0
    storm_error = None
    try:
        summary = storm(srv, tmp_path)
    except BaseException as e:  # raised below, after memcheck's report has been read
        storm_error = e
    finally:
        t_stop = time.monotonic()
        stop_problems = srv.stop()
        stop_s = time.monotonic() - t_stop

    # ---- the memcheck report ----
    assert srv.log.is_file(), f"no memcheck report at {srv.log}\n{srv.describe()}"
    report = srv.log.read_text(errors="replace")
    assert "Memcheck" in report and "Command: /usr/sbin/mosquitto" in report, report[:2000]
    plugin = VALGRIND_BIN.parents[1] / "plugin" / "iotmock.so"
    assert f"Loading plugin: {plugin}" in srv.stderr_text(10 ** 8), \
        f"the broker did not load {plugin}\n{srv.describe()}"
    findings = memcheck_findings(report)
    details = "\n\n".join(loss_records(report)[:8])
    also = f"\n(the storm failed too: {storm_error!r:.2000})" if storm_error else ""
    assert not findings, (f"memcheck: {'; '.join(findings)} (full report: {srv.log}){also}\n\n"
                          f"{details[:30000]}")
    if storm_error is not None:
        raise storm_error
    assert not stop_problems, "; ".join(stop_problems) + "\n" + srv.describe()

    possibly = re.findall(r"possibly lost: ([\d,]+) bytes", report)
    reachable = re.findall(r"still reachable: ([\d,]+) bytes", report)
    print(f"\nmemcheck (seed {SEED}): {summary}\n"
          f"  start {started_s:.1f} s, stop {stop_s:.1f} s; 0 errors, nothing definitely or "
          f"indirectly lost; possibly lost {possibly[-1] if possibly else 0} B, still reachable "
          f"{reachable[-1] if reachable else 0} B at exit")


def _guard(errors: list, fn, *args):
    try:
        fn(*args)
    except BaseException as e:  # reported by the main thread
        errors.append(e)
