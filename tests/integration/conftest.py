"""Fixtures for the iotmock integration tests (helpers: iotmock_support.py).

Run:  /usr/bin/python3 -m pytest tests/integration        (Debian's python3 has paho-mqtt 1.6.1)
Binary: $IOTMOCK_BIN, default <repo>/build/cli/iotmock.

Servers: `server` is one default `iotmock serve` per test module; modules needing other flags
start their own with `module_server_factory` (module scope) or `server_factory` (per test), and
override `server` so the shared fixtures (`broker_still_serves`, `mqtt`) use it.
Stopping a server sends SIGTERM and requires an exit within 10 s with status 0 or -15 (death by
the signal), its whole process group gone and the MQTT port closed.
"""

import pytest

from iotmock_support import (ClientPool, FakeLambda, MqttClient, Server, ServerStartError,
                             assert_broker_serves)

_RUNNING: list = []  # servers alive right now, for failure reports


class _ServerPool:
    def __init__(self, tmp_path_factory):
        self._tmp = tmp_path_factory
        self.servers: list = []

    def start(self, *extra_args, name: str = "iotmock", grant_test_policy: bool = True) -> Server:
        last_error = None
        for _attempt in range(2):
            srv = Server(self._tmp.mktemp(name), extra_args, name=name,
                         grant_test_policy=grant_test_policy)
            try:
                srv.start()
            except ServerStartError as e:
                last_error = e
                # A port picked by free_port() may have been taken meanwhile: retry once then.
                if "in use" in srv.stderr_text().lower():
                    continue
                break
            _RUNNING.append(srv)
            self.servers.append(srv)
            return srv
        pytest.fail(f"iotmock serve did not start: {last_error}", pytrace=False)

    def stop_all(self):
        report = []
        for srv in reversed(self.servers):
            problems = srv.stop()
            if srv in _RUNNING:
                _RUNNING.remove(srv)
            if problems:
                report.append("; ".join(problems) + "\n" + srv.describe())
        self.servers.clear()
        assert not report, "server shutdown problems:\n" + "\n".join(report)


@pytest.fixture
def server_factory(tmp_path_factory):
    """start(*extra_args, name=...) -> a running Server, stopped after the test."""
    pool = _ServerPool(tmp_path_factory)
    yield pool.start
    pool.stop_all()


@pytest.fixture(scope="module")
def module_server_factory(tmp_path_factory):
    """Like server_factory, but the servers live until the end of the module."""
    pool = _ServerPool(tmp_path_factory)
    yield pool.start
    pool.stop_all()


@pytest.fixture(scope="module")
def server(module_server_factory) -> Server:
    """One default server per module (no extra flags)."""
    return module_server_factory(name="default")


@pytest.fixture
def mqtt(server):
    """mqtt(cert, key, **kw) -> a connected MqttClient (closed after the test);
    mqtt.claim(**kw) connects with the server's claim certificate; `srv=` picks another server."""
    clients = []

    def connect(cert, key, srv=None, **kw):
        c = MqttClient(srv or server, cert, key, **kw)
        clients.append(c)
        return c.connect()

    def claim(srv=None, **kw):
        s = srv or server
        return connect(s.claim_cert, s.claim_key, srv=s, **kw)

    def unconnected(cert, key, srv=None, **kw):
        c = MqttClient(srv or server, cert, key, **kw)
        clients.append(c)
        return c

    connect.claim = claim
    connect.unconnected = unconnected
    yield connect
    for c in clients:
        c.close()


@pytest.fixture
def clients(request):
    """The MQTT clients of one test, closed at its end: a ClientPool (PolicyClients), or the pool
    class a test module names in CLIENT_POOL."""
    pool = getattr(request.module, "CLIENT_POOL", ClientPool)()
    yield pool
    pool.close_all()


@pytest.fixture
def broker_still_serves(server):
    """After the test: the server is still running and a new claim-certificate client can connect
    and do a pub/sub round trip."""
    yield
    assert_broker_serves(server)


@pytest.fixture(scope="module")
def fake_lambda():
    lam = FakeLambda()
    yield lam
    lam.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for srv in _RUNNING:
            report.sections.append((f"iotmock server {srv.name} (mqtt {srv.mqtt_port})",
                                    srv.describe()))
