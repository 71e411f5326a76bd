"""iot:Connect on the wire (shared/spec/broker-and-policy.md §2.2, §3.1, §1.4, §2.7 E2): the
resource is client/<client id>; a refused CONNECT is CONNACK 0x87 on MQTT 5 and a closed
connection without any CONNACK on MQTT 3.1.1, and the server logs one line naming the client, the
certificate, the resource and "no statement allowed it".
`client/${iot:Connection.Thing.ThingName}` allows exactly the client id naming a thing the
certificate is attached to."""

import pytest

from iotmock_support import (PROTOCOLS, MQTTv5, NOT_AUTHORIZED_V5, PolicyClient,
                             ServerLog, allow, assert_policy_refusal, attach_thing_principal,
                             create_device, create_policy, create_thing, iot_arn,
                             policy_document, unique)

ALLOWED_ID = unique("allowed")


@pytest.fixture(scope="module")
def id_device(server, tmp_path_factory):
    """A certificate whose only policy allows iot:Connect as ALLOWED_ID."""
    name = create_policy(server, policy_document(allow("iot:Connect", f"client/{ALLOWED_ID}")))
    device = create_device(server, tmp_path_factory.mktemp("id"), name, server_key=True)
    device.policy = name
    return device


@pytest.fixture(scope="module")
def thing_device(server, tmp_path_factory):
    """A certificate allowed iot:Connect on client/${iot:Connection.Thing.ThingName}, attached to
    thing `attached`; thing `unattached` exists but the certificate is not attached to it."""
    name = create_policy(server, policy_document(
        allow("iot:Connect", "client/${iot:Connection.Thing.ThingName}")))
    device = create_device(server, tmp_path_factory.mktemp("thing"), name)
    device.policy = name
    device.attached, device.unattached = unique("attached"), unique("unattached")
    create_thing(server, device.attached)
    create_thing(server, device.unattached)
    attach_thing_principal(server, device.attached, device.arn)
    return device


def expect_refused_connect(client: PolicyClient, protocol):
    res = client.try_connect(timeout=10.0)
    assert not res.ok, f"{client.client_id} connected but must not: {res}"
    if protocol == MQTTv5:
        assert res.connack_rc == NOT_AUTHORIZED_V5, f"expected CONNACK 0x87: {res}"
    else:
        # AWS sends no CONNACK on 3.1.1 (§3.1): the server closes the connection.
        assert res.connack_rc is None, f"3.1.1 got a CONNACK: {res}"
        assert res.error == "connection closed before CONNACK", res


@pytest.mark.parametrize("protocol", list(PROTOCOLS.values()), ids=list(PROTOCOLS))
def test_allowed_client_id_connects(server, clients, id_device, protocol):
    log = ServerLog(server)
    c = clients.connect(server, id_device, protocol=protocol, client_id=ALLOWED_ID)
    assert c.connected
    c.close()
    log.assert_no_refusal(ALLOWED_ID)


@pytest.mark.parametrize("protocol", list(PROTOCOLS.values()), ids=list(PROTOCOLS))
@pytest.mark.parametrize("kind", ["other", "longer"])
def test_refused_client_id(server, clients, id_device, protocol, kind):
    client_id = unique("other") if kind == "other" else ALLOWED_ID + "-dbg"
    log = ServerLog(server)
    expect_refused_connect(clients.new(server, id_device, protocol=protocol,
                                       client_id=client_id), protocol)
    assert_policy_refusal(log.wait_refusal(client_id, "iot:Connect"), action="iot:Connect",
                          client=client_id, cert=id_device.cert_id,
                          resource=iot_arn(f"client/{client_id}"), policies=[id_device.policy])


@pytest.mark.parametrize("protocol", list(PROTOCOLS.values()), ids=list(PROTOCOLS))
def test_thing_name_variable_allows_the_associated_thing(server, clients, thing_device,
                                                          protocol):
    log = ServerLog(server)
    c = clients.connect(server, thing_device, protocol=protocol, client_id=thing_device.attached)
    assert c.connected
    log.assert_no_refusal(thing_device.attached)


@pytest.mark.parametrize("protocol", list(PROTOCOLS.values()), ids=list(PROTOCOLS))
@pytest.mark.parametrize("kind", ["thing-not-attached", "not-a-thing", "attached-thing-prefix"])
def test_thing_name_variable_refuses_without_association(server, clients, thing_device,
                                                         protocol, kind):
    """Client id == a thing's name but the certificate is not attached to it; a client id naming
    no thing (while the certificate is attached to another one); a longer id."""
    client_id = {"thing-not-attached": thing_device.unattached,
                 "not-a-thing": unique("nothing"),
                 "attached-thing-prefix": thing_device.attached + "-dbg"}[kind]
    log = ServerLog(server)
    expect_refused_connect(clients.new(server, thing_device, protocol=protocol,
                                       client_id=client_id), protocol)
    d = assert_policy_refusal(log.wait_refusal(client_id, "iot:Connect"), action="iot:Connect",
                              client=client_id, cert=thing_device.cert_id,
                              resource=iot_arn(f"client/{client_id}"),
                              policies=[thing_device.policy])
    # The variable did not resolve: the explanation says so instead of naming a thing.
    assert d["values"] is not None and "iot:Connection.Thing.ThingName=" in d["values"], d
    assert f'ThingName="{client_id}"' not in d["values"], d
