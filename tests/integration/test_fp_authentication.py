"""Who may connect (the contract of `iotmock serve`; shared/spec/clients.md §6.1): the first start
creates root-ca.pem and an ACTIVE claim certificate; the server certificate is signed by that root
and names localhost, 127.0.0.1 and ::1; identity is the TLS client certificate and the MQTT
username is ignored; certificates iotmock did not issue cannot connect."""

import ipaddress
import socket
import ssl

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from iotmock_support import (METRICS_USERNAME, MQTTv311, MQTTv5, PROTOCOLS,
                             assert_cannot_connect, load_cert, make_foreign_ca_cert,
                             make_self_signed, claim_round_trip, run_openssl, spki_der)

pytestmark = pytest.mark.usefixtures("broker_still_serves")


def test_first_start_creates_root_ca_and_claim_credentials(server):
    root = load_cert(server.root_ca)
    bc = root.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert bc.ca is True
    assert root.issuer == root.subject, "root-ca.pem is not self-signed"
    verify = run_openssl("verify", "-CAfile", server.root_ca, server.claim_cert).strip()
    assert verify == f"{server.claim_cert}: OK"
    key = serialization.load_pem_private_key(server.claim_key.read_bytes(), password=None)
    assert spki_der(key) == spki_der(load_cert(server.claim_cert))


def peer_certificate(server, server_hostname):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cafile=str(server.root_ca))
    ctx.load_cert_chain(str(server.claim_cert), str(server.claim_key))
    with socket.create_connection(("127.0.0.1", server.mqtt_port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=server_hostname) as tls:
            return x509.load_der_x509_certificate(tls.getpeercert(binary_form=True))


@pytest.mark.parametrize("hostname", ["localhost", "127.0.0.1"])
def test_server_certificate_is_signed_by_root_ca_with_sans(server, hostname):
    cert = peer_certificate(server, hostname)  # verified against root-ca.pem, name checked
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in sans.get_values_for_type(x509.DNSName)
    ips = set(sans.get_values_for_type(x509.IPAddress))
    assert {ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")} <= ips
    assert cert.issuer == load_cert(server.root_ca).subject


@pytest.mark.parametrize("username,password", [
    (None, None),
    (METRICS_USERNAME, None),
    ("?SDK=IoTDeviceSDK/JS&Platform=Unix&Metadata=(CRTVersion=1.33.1;IoTSDKVersion=1.28.0)", None),
    ("some-other-thing", "some-password"),
], ids=["no-username", "metrics", "crt-metrics", "username-and-password"])
@pytest.mark.parametrize("protocol", list(PROTOCOLS.values()), ids=list(PROTOCOLS))
def test_claim_certificate_connects_whatever_the_username(mqtt, protocol, username, password):
    client = mqtt.claim(protocol=protocol, username=username, password=password)
    claim_round_trip(client)


def test_connect_by_ip_address(server, mqtt):
    client = mqtt.claim(host="127.0.0.1")
    claim_round_trip(client)


@pytest.mark.parametrize("protocol", [MQTTv311, MQTTv5], ids=["mqtt311", "mqtt5"])
@pytest.mark.parametrize("kind", ["self-signed", "foreign-ca"])
def test_unknown_certificates_cannot_connect(server, tmp_path, kind, protocol):
    if kind == "self-signed":
        cert, key = make_self_signed(tmp_path)
    else:
        cert, key = make_foreign_ca_cert(tmp_path)
    assert_cannot_connect(server, cert, key, protocol=protocol, username=METRICS_USERNAME)

