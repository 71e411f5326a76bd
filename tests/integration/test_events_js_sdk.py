"""Lifecycle events for a session of the official AWS IoT Device SDK v2 for JavaScript
(aws-iot-device-sdk-v2 1.28.0, tests/js/lifecycle.js), which always offers ALPN x-amzn-mqtt-ca
and sends SNI (shared/spec/clients.md §1): connected, subscribed, unsubscribed and disconnected
(CLIENT_INITIATED_DISCONNECT) arrive with AWS's fields, over MQTT 5 and 3.1.1, on the main
listener and on the second one (--alpn-port)."""

import shutil

import pytest

from broker_support import (CONNECTED_FIELDS, DISCONNECTED_FIELDS, SUBSCRIPTION_FIELDS, Clients,
                            Watcher, check_common, now_ms, open_device)
from iotmock_support import REPO, free_port, unique
from test_broker_transport import run_js_session

JS_DIR = REPO / "tests" / "js"

pytestmark = pytest.mark.skipif(
    not (JS_DIR / "node_modules").is_dir() or shutil.which("node") is None,
    reason="tests/js/node_modules missing: run `npm ci` in tests/js")


@pytest.fixture(scope="module")
def alpn_server(module_server_factory):
    port = free_port()
    return module_server_factory("--alpn-port", str(port), name="js-events"), port


@pytest.fixture(scope="module")
def device(alpn_server, tmp_path_factory):
    return open_device(alpn_server[0], tmp_path_factory.mktemp("js"))


CLIENT_POOL = Clients


@pytest.mark.parametrize("protocol", ["mqtt5", "mqtt311"])
@pytest.mark.parametrize("which", ["main", "alpn"])
def test_js_sdk_session_events(alpn_server, device, clients, protocol, which):
    srv, alpn_port = alpn_server
    watcher = Watcher(clients, srv, device)
    client_id, topic = unique(f"js-{protocol}"), f"js/{unique('t')}"
    since = now_ms()
    out = run_js_session(srv, device, protocol, ca=srv.root_ca, client_id=client_id,
                         port=alpn_port if which == "alpn" else None, topic=topic)
    assert out == {"connected": True, "received": f"hello from {client_id}"}, out

    connected = watcher.expect("connected", client_id)
    check_common(connected, CONNECTED_FIELDS, "connected", client_id, device.cert_id, since)
    assert connected["ipAddress"] == "127.0.0.1" and connected["versionNumber"] == 0
    subscribed = watcher.expect("subscribed", client_id)
    check_common(subscribed, SUBSCRIPTION_FIELDS, "subscribed", client_id, device.cert_id, since)
    assert subscribed["topics"] == [topic]
    unsubscribed = watcher.expect("unsubscribed", client_id)
    assert unsubscribed["topics"] == [topic]
    disconnected = watcher.expect("disconnected", client_id)
    check_common(disconnected, DISCONNECTED_FIELDS, "disconnected", client_id, device.cert_id,
                 since)
    assert (disconnected["disconnectReason"], disconnected["clientInitiatedDisconnect"]) == \
        ("CLIENT_INITIATED_DISCONNECT", True)
    for ev in (subscribed, unsubscribed, disconnected):
        assert ev["sessionIdentifier"] == connected["sessionIdentifier"]
    assert disconnected["versionNumber"] == connected["versionNumber"]
