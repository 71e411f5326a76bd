"""The Docker image, for real (docker/Dockerfile; docs/docker.md).

docker/test-setup.sh installs Debian's docker.io and debootstrap when missing, starts dockerd
when no daemon answers, makes debian:bookworm-slim from this machine's apt mirror when absent
(no registry is needed), and builds the image. The tests then run it as users do, with ports
published on the loopback: a device provisions itself through the published MQTT port with the
official AWS IoT Device SDK v2 for JavaScript (tests/js/provision.js) and reconnects with its new
certificate; the container stops cleanly and restarts on the same volume with its registry.

What stays on the machine as a cache: the packages, the images and a running dockerd. What is
removed: the containers and volumes made here. Figures (image size, seconds to healthy) are
printed at the end of the run.

Skips only when Docker cannot run here at all: not root, no apt-get to install it, or a daemon
that does not start. The file name sorts last, so this heavy module runs after the others.
"""

import faulthandler
import json
import os
import re
import shutil
import statistics
import subprocess
import time
import types
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
from cryptography import x509

from iotmock_support import (FLEET_DEFAULT, HEX64, MQTTv5, REPO, MqttClient, cert_id,
                             expected_device_configuration, fleet_default_body, free_port,
                             load_cert, unique)

SETUP = REPO / "docker" / "test-setup.sh"
JS_DIR = REPO / "tests" / "js"
NODE = shutil.which("node") or "node"
TAG = "iotmock:test"
LABEL = "iotmock-test"  # on every container and volume made here

SETUP_TIMEOUT = 900  # seconds; a fresh machine needs two to four minutes
HEALTHY_TIMEOUT = 30.0  # seconds from `docker run` to the status "healthy"
STOP_TIMEOUT = 10  # `docker stop -t`: after this, Docker would SIGKILL
IMAGE_SIZE_GOAL_MB = 100
WARM_RUNS = 3  # restarts on an existing volume, for the time to healthy

FIGURES: dict = {}


# --------------------------------------------------------------------------------------------
# Set-up


@pytest.fixture(scope="module")
def docker_env(pytestconfig):
    if os.geteuid() != 0:
        pytest.skip("needs root: installs docker.io and starts dockerd")
    # The set-up has its own time limit; on a fresh machine it outlasts faulthandler_timeout,
    # whose stack dump would only be noise here.
    faulthandler.cancel_dump_traceback_later()
    t0 = time.monotonic()
    try:
        p = subprocess.run(["bash", str(SETUP), TAG], capture_output=True, text=True,
                           timeout=SETUP_TIMEOUT, cwd=str(REPO))
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"docker/test-setup.sh took more than {SETUP_TIMEOUT} s\n"
                    f"{(e.stderr or b'')[-4000:]!r}", pytrace=False)
    err_lines = [l for l in p.stderr.splitlines() if l.strip()]
    if p.returncode == 77:
        pytest.skip(err_lines[-1] if err_lines else "docker/test-setup.sh: Docker cannot run")
    if p.returncode != 0:
        pytest.fail(f"docker/test-setup.sh failed with {p.returncode}:\n"
                    + "\n".join(err_lines[-60:]), pytrace=False)
    out = dict(l.split("=", 1) for l in p.stdout.splitlines() if "=" in l)
    env = types.SimpleNamespace(docker=out.get("DOCKER", "/usr/bin/docker"),
                                dockerd_log=out.get("DOCKERD_LOG"),
                                setup_seconds=time.monotonic() - t0)
    # A name of this run's own: a concurrent run rebuilding TAG can neither change nor prune
    # the image these tests run.
    env.image = f"{TAG}-{uuid.uuid4().hex[:12]}"
    _docker(env, "tag", TAG, env.image)
    FIGURES["set-up s"] = round(env.setup_seconds, 1)
    for step in ("INSTALL", "BASE", "BUILD"):
        if f"SECONDS_{step}" in out:
            FIGURES[f"set-up: {step.lower()} s"] = int(out[f"SECONDS_{step}"])
    yield env
    _docker(env, "rmi", env.image, check=False)
    _report(pytestconfig)


def _report(pytestconfig):
    if not FIGURES:
        return
    text = "docker figures:\n" + "".join(f"  {k}: {v}\n" for k, v in FIGURES.items())
    tr = pytestconfig.pluginmanager.get_plugin("terminalreporter")
    capman = pytestconfig.pluginmanager.get_plugin("capturemanager")
    if tr is None or capman is None:
        print(text)
        return
    with capman.global_and_fixture_disabled():  # past the output capture, even with -q
        tr.write("\n" + text)


def _docker(env, *args, check=True, timeout=60) -> str:
    p = subprocess.run([env.docker, *map(str, args)], capture_output=True, text=True,
                       timeout=timeout)
    if check:
        assert p.returncode == 0, f"docker {' '.join(map(str, args))}: {p.stderr.strip()}"
    return p.stdout


@pytest.fixture
def docker(docker_env):
    """docker(*args, check=True) -> stdout; containers and volumes made through .container() and
    .volume() are removed after the test."""
    made = {"containers": [], "volumes": []}

    def run(*args, check=True, timeout=60):
        return _docker(docker_env, *args, check=check, timeout=timeout)

    def volume():
        name = f"iotmock-test-{uuid.uuid4().hex[:12]}"
        run("volume", "create", "--label", LABEL, name)
        made["volumes"].append(name)
        return name

    def container(volume_name, *opts, env=None, mqtt_port=8883, http_port=4580):
        """docker run -d with both ports published on free loopback ports; returns a Container
        once Docker reports it healthy, with the times to ready and to healthy."""
        for attempt in range(2):
            c = Container(docker_env, f"iotmock-test-{uuid.uuid4().hex[:12]}")
            argv = ["run", "-d", "--name", c.name, "--label", LABEL,
                    "-p", f"127.0.0.1:{c.mqtt_port}:{mqtt_port}",
                    "-p", f"127.0.0.1:{c.http_port}:{http_port}",
                    "-v", f"{volume_name}:/var/lib/iotmock"]
            for k, v in (env or {}).items():
                argv += ["-e", f"{k}={v}"]
            t0 = time.monotonic()
            p = subprocess.run([docker_env.docker, *argv, *opts, docker_env.image],
                               capture_output=True, text=True, timeout=60)
            made["containers"].append(c.name)
            if p.returncode == 0:
                c.wait_healthy(t0)
                return c
            # A port free a moment ago may have been taken meanwhile: once more then.
            run("rm", "-f", c.name, check=False)
            if attempt == 0 and re.search(r"already allocated|in use", p.stderr):
                continue
            pytest.fail(f"docker run failed: {p.stderr.strip()}", pytrace=False)

    run.volume = volume
    run.container = container
    yield run
    for name in made["containers"]:
        run("rm", "-f", "-v", name, check=False)
    for name in made["volumes"]:
        run("volume", "rm", "-f", name, check=False)


class Container:
    def __init__(self, env, name):
        self.env = env
        self.name = name
        self.mqtt_port = free_port()
        self.http_port = free_port()
        while self.http_port == self.mqtt_port:
            self.http_port = free_port()
        self.seconds_to_ready = None  # first 200 from /_iotmock/health through the published port
        self.seconds_to_healthy = None  # Docker's health status "healthy"

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.http_port}{path}"

    def state(self) -> dict:
        return json.loads(_docker(self.env, "inspect", "-f", "{{json .State}}", self.name))

    def logs(self) -> str:
        p = subprocess.run([self.env.docker, "logs", self.name], capture_output=True, text=True,
                           timeout=30)
        return p.stdout + p.stderr

    def describe(self) -> str:
        st = self.state()
        health = (st.get("Health") or {}).get("Log") or []
        probes = "\n".join(f"  exit {h.get('ExitCode')}: {h.get('Output', '').strip()}"
                           for h in health[-3:])
        return (f"container {self.name}: status {st.get('Status')}, exit {st.get('ExitCode')}\n"
                f"last health probes:\n{probes}\n--- docker logs (tail) ---\n"
                f"{self.logs()[-4000:]}\n--- end ---")

    def wait_healthy(self, t0: float):
        deadline = t0 + HEALTHY_TIMEOUT
        while time.monotonic() < deadline:
            if self.seconds_to_ready is None:
                try:
                    with urllib.request.urlopen(self.url("/_iotmock/health"), timeout=0.5) as r:
                        if r.status == 200:
                            self.seconds_to_ready = time.monotonic() - t0
                except (OSError, urllib.error.HTTPError):
                    pass
            st = self.state()
            if (st.get("Health") or {}).get("Status") == "healthy":
                self.seconds_to_healthy = time.monotonic() - t0
                if self.seconds_to_ready is None:
                    self.seconds_to_ready = self.seconds_to_healthy
                return
            if not st.get("Running"):
                pytest.fail(f"the container stopped before it was healthy\n{self.describe()}",
                            pytrace=False)
            time.sleep(0.02)
        pytest.fail(f"not healthy within {HEALTHY_TIMEOUT} s of docker run\n{self.describe()}",
                    pytrace=False)

    def copy_out(self, path: str, dest: Path) -> Path:
        _docker(self.env, "cp", f"{self.name}:{path}", dest)
        return dest

    def stop(self) -> float:
        """docker stop; the broker must exit 0 on SIGTERM well before Docker would kill it."""
        t0 = time.monotonic()
        _docker(self.env, "stop", "-t", STOP_TIMEOUT, self.name, timeout=STOP_TIMEOUT + 30)
        took = time.monotonic() - t0
        st = self.state()
        assert st["ExitCode"] == 0 and not st.get("OOMKilled"), (
            f"exit code {st['ExitCode']} after docker stop\n{self.describe()}")
        assert took < STOP_TIMEOUT - 1, f"docker stop took {took:.1f} s: SIGTERM not handled"
        return took


def http_get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=5) as r:
        assert r.status == 200, f"GET {url}: HTTP {r.status}"
        return r.read()


def provision(c: Container, workdir: Path, serial: str) -> dict:
    """tests/js/provision.js through the published MQTT port: CreateKeysAndCertificate and
    RegisterThing with the claim certificate, then a reconnect with the new certificate."""
    argv = [NODE, str(JS_DIR / "provision.js"), "--host", "localhost",
            "--port", str(c.mqtt_port), "--ca", str(workdir / "root-ca.pem"),
            "--cert", str(workdir / "claim-cert.pem"), "--key", str(workdir / "claim-key.pem"),
            "--mode", "keys", "--protocol", "mqtt5", "--template", FLEET_DEFAULT,
            "--serial", serial, "--out", str(workdir / "device"),
            "--client-id", unique("docker-claim")]
    p = subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=str(JS_DIR))
    lines = [l for l in p.stdout.splitlines() if l.strip()]
    assert lines, f"provision.js printed nothing (exit {p.returncode}): {p.stderr[-3000:]}"
    result = json.loads(lines[-1])
    assert p.returncode == 0, (f"provision.js failed: {result}\nstderr: {p.stderr[-3000:]}\n"
                               f"{c.describe()}")
    return result


# --------------------------------------------------------------------------------------------
# Tests


def test_image_is_small_and_configured(docker, docker_env):
    size_mb = int(docker("image", "inspect", "-f", "{{.Size}}", docker_env.image)) / 1e6
    FIGURES["image size MB"] = round(size_mb, 1)
    cfg = json.loads(docker("image", "inspect", "-f", "{{json .Config}}", docker_env.image))
    assert cfg["User"] == "iotmock"
    assert "/var/lib/iotmock" in (cfg.get("Volumes") or {})
    assert {"8883/tcp", "4580/tcp"} <= set(cfg.get("ExposedPorts") or {})
    assert cfg["Healthcheck"]["Test"][0] in ("CMD", "CMD-SHELL")
    assert size_mb <= IMAGE_SIZE_GOAL_MB, f"image is {size_mb:.1f} MB"


@pytest.mark.skipif(not (JS_DIR / "node_modules").is_dir(),
                    reason="tests/js/node_modules missing: run `npm ci` in tests/js")
def test_device_provisions_through_published_ports_and_survives_restarts(docker, tmp_path):
    vol = docker.volume()

    # First start: the state volume is empty, so the CA and certificates are made now.
    c = docker.container(vol)
    FIGURES["first start: s to healthy"] = round(c.seconds_to_healthy, 2)

    # Unprivileged, and logging while it runs (stderr, not a block-buffered stdout).
    procs = [l.split() for l in docker("top", c.name, "-eo", "pid,uid,comm").splitlines()[1:]]
    assert [p[1:] for p in procs] == [["10001", "mosquitto"]], procs
    assert "mosquitto version" in c.logs()

    # What a device needs: the root CA from the control plane, the claim pair from the volume.
    root_ca = http_get(c.url("/_iotmock/root-ca.pem"))
    assert root_ca.startswith(b"-----BEGIN CERTIFICATE-----")
    (tmp_path / "root-ca.pem").write_bytes(root_ca)
    c.copy_out("/var/lib/iotmock/root-ca.pem", tmp_path / "volume-root-ca.pem")
    assert (tmp_path / "volume-root-ca.pem").read_bytes() == root_ca
    c.copy_out("/var/lib/iotmock/claim-cert.pem", tmp_path / "claim-cert.pem")
    c.copy_out("/var/lib/iotmock/claim-key.pem", tmp_path / "claim-key.pem")

    serial = unique("docker")
    result = provision(c, tmp_path, serial)
    assert result["thingName"] == serial
    assert HEX64.match(result["certificateId"]), result
    assert result["reconnected"] is True and result["published"] is True
    assert result["deviceConfiguration"] == expected_device_configuration(
        fleet_default_body(), {"SerialNumber": serial}, result["certificateId"])
    device_cert = tmp_path / "device" / "certificate.pem"
    assert cert_id(device_cert.read_text()) == result["certificateId"]
    c.stop()

    # Restarts on the same volume: same CA, the registry kept the device.
    warm, ready = [], []
    for i in range(WARM_RUNS):
        # One run hardened the way docs/docker.md suggests.
        opts = (["--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges"]
                if i == 1 else [])
        c = docker.container(vol, *opts)
        warm.append(c.seconds_to_healthy)
        ready.append(c.seconds_to_ready)
        if i == 0:
            assert http_get(c.url("/_iotmock/root-ca.pem")) == root_ca
            device = types.SimpleNamespace(host="localhost", mqtt_port=c.mqtt_port,
                                           root_ca=tmp_path / "root-ca.pem")
            client = MqttClient(device, device_cert, tmp_path / "device" / "private.key",
                                client_id=serial, protocol=MQTTv5).connect()
            try:
                client.publish(f"devices/{serial}/hello", {"after": "restart"}, qos=1)
            finally:
                client.close()
        c.stop()
    FIGURES["existing volume: s to healthy (median)"] = round(statistics.median(warm), 2)
    FIGURES["existing volume: s to healthy (each)"] = " ".join(f"{s:.2f}" for s in warm)
    FIGURES["existing volume: s to first 200 from /_iotmock/health (median)"] = round(
        statistics.median(ready), 2)
    assert max(warm) < HEALTHY_TIMEOUT


def test_environment_variables_configure_the_server(docker, tmp_path):
    """The IOTMOCK_* variables reach `iotmock serve`; the health check follows the HTTP port."""
    vol = docker.volume()
    env = {"IOTMOCK_HOST": "iotmock.test", "IOTMOCK_MQTT_PORT": "18883",
           "IOTMOCK_HTTP_PORT": "14580", "IOTMOCK_REGION": "eu-west-1",
           "IOTMOCK_ACCOUNT_ID": "210987654321",
           "IOTMOCK_LAMBDA_ENDPOINT": "http://lambda.test:3001", "IOTMOCK_TOKEN_TTL": "120",
           "IOTMOCK_KEY_POOL": "3", "IOTMOCK_QOS0_REFUSAL": "drop",
           "IOTMOCK_NEGATED_ABSENT": "false", "IOTMOCK_JITP_FIRST_CONNECT": "accept",
           "IOTMOCK_FRIENDLY": "on", "IOTMOCK_MAX_KEEPALIVE": "600",
           "IOTMOCK_WITHOUT": "hash-parent"}
    c = docker.container(vol, env=env, mqtt_port=18883, http_port=14580)
    conf = c.copy_out("/var/lib/iotmock/mosquitto.conf", tmp_path / "mosquitto.conf").read_text()
    for line in ("listener 18883 0.0.0.0", "plugin_opt_http_port 14580",
                 "plugin_opt_region eu-west-1", "plugin_opt_account_id 210987654321",
                 "plugin_opt_lambda_endpoint http://lambda.test:3001",
                 "plugin_opt_token_ttl 120", "plugin_opt_state_dir /var/lib/iotmock",
                 "plugin_opt_data_dir /usr/share/iotmock", "plugin_opt_key_pool 3",
                 "plugin_opt_qos0_refusal drop", "plugin_opt_negated_absent false",
                 "plugin_opt_jitp_first_connect accept", "plugin_opt_friendly true",
                 "max_keepalive 600", "plugin_opt_host iotmock.test"):
        assert re.search(rf"^{re.escape(line)}$", conf, re.M), f"{line!r} not in\n{conf}"
    assert re.search(r"^plugin_opt_hash_parent false$", conf, re.M), conf
    server_cert = load_cert(c.copy_out("/var/lib/iotmock/server-cert.pem",
                                       tmp_path / "server-cert.pem"))
    names = server_cert.extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    assert "iotmock.test" in names and "localhost" in names, names
    c.stop()
