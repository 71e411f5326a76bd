"""Policy variables on the wire (shared/spec/broker-and-policy.md §2.4, §1.4, §2.7 E2): a Publish
grant on topic/<prefix>/${variable} lets each connection publish exactly to its own topic — the
one its client id, associated thing, thing attribute or certificate common name names — and
refuses the topic of a sibling connection holding the same policy (PUBACK 0x87 on MQTT 5, closed
connection on 3.1.1). Thing variables resolve only for an associated thing (client id == thing
name and certificate attached). The refusal log shows the variable's value."""

import pytest

from iotmock_support import (PROTOCOLS, PUBACK_OK, ClientPool, Device, MQTTv5, NOT_AUTHORIZED_V5,
                             ServerLog, allow, assert_policy_refusal, attach_policy,
                             attach_thing_principal, create_device, create_from_csr,
                             create_policy, create_thing, iot_arn, make_csr, policy_document,
                             set_certificate_status, unique, write_credentials)

VARIABLES = {  # kind -> (topic prefix, variable)
    "client-id": ("cid", "iot:ClientId"),
    "thing-name": ("tn", "iot:Connection.Thing.ThingName"),
    "thing-attribute": ("attr", "iot:Connection.Thing.Attributes[room]"),
    "certificate-cn": ("cn", "iot:Certificate.Subject.CommonName"),
}


def variable_policy(server, kind):
    prefix, var = VARIABLES[kind]
    return create_policy(server, policy_document(
        allow("iot:Connect", "client/*"),
        allow("iot:Publish", f"topic/{prefix}/${{{var}}}")))


@pytest.fixture(scope="module")
def identities(server, tmp_path_factory):
    """kind -> (policy, [(device, client id, value the variable takes)] * 2): two connections
    holding the same policy, each with its own value."""
    tmp = tmp_path_factory.mktemp("vars")
    out = {}

    pol = variable_policy(server, "client-id")
    dev = create_device(server, tmp, pol)
    a, b = unique("cid-a"), unique("cid-b")
    out["client-id"] = (pol, [(dev, a, a), (dev, b, b)])

    # One certificate attached to two things, as in §2.7 E2.
    pol = variable_policy(server, "thing-name")
    dev = create_device(server, tmp, pol)
    things = [unique("lamp"), unique("lamp")]
    for t in things:
        create_thing(server, t)
        attach_thing_principal(server, t, dev.arn)
    out["thing-name"] = (pol, [(dev, t, t) for t in things])

    pol = variable_policy(server, "thing-attribute")
    dev = create_device(server, tmp, pol)
    rooms = [unique("room"), unique("room")]
    pairs = []
    for room in rooms:
        t = unique("sensor")
        create_thing(server, t, attributes={"room": room, "floor": "2"})
        attach_thing_principal(server, t, dev.arn)
        pairs.append((dev, t, room))
    out["thing-attribute"] = (pol, pairs)

    # Certificates with a chosen common name: a CSR signed through CreateCertificateFromCsr over
    # MQTT (with the claim certificate), then activated and given the policy.
    pol = variable_policy(server, "certificate-cn")
    pairs = []
    claim = ClientPool()
    try:
        c = claim.connect(server, (server.claim_cert, server.claim_key), client_id=unique("csr"))
        for _ in range(2):
            cn = unique("cn")
            key, csr = make_csr(tmp, "p256", subject=f"/CN={cn}/O=iotmock-test")
            body = create_from_csr(c, csr)
            cert, _ = write_credentials(tmp, cn, body["certificatePem"], key.read_text())
            set_certificate_status(server, body["certificateId"], "ACTIVE")
            dev = Device(cert, key, body["certificateId"])
            attach_policy(server, pol, dev.arn)
            pairs.append((dev, unique("cnclient"), cn))
    finally:
        claim.close_all()
    out["certificate-cn"] = (pol, pairs)
    return out


@pytest.mark.parametrize("protocol", list(PROTOCOLS.values()), ids=list(PROTOCOLS))
@pytest.mark.parametrize("kind", list(VARIABLES))
def test_variable_allows_exactly_its_own_topic(server, clients, identities, kind, protocol):
    prefix, var = VARIABLES[kind]
    policy, [(dev, client_id, value), (_, _, other_value)] = identities[kind]
    own, other = f"{prefix}/{value}", f"{prefix}/{other_value}"
    c = clients.connect(server, dev, protocol=protocol, client_id=client_id)
    log = ServerLog(server)
    assert c.publish_result(own, b"mine") in PUBACK_OK, f"{var} did not allow {own}"
    rc = c.publish_result(other, b"not mine")
    if protocol == MQTTv5:
        assert rc == NOT_AUTHORIZED_V5, f"PUBACK {rc} for {other}"
        assert not c.closed
    else:
        assert rc is None and c.wait_closed(), (rc, c.state())
    d = assert_policy_refusal(log.wait_refusal(client_id, "iot:Publish"), action="iot:Publish",
                              client=client_id, cert=dev.cert_id,
                              resource=iot_arn(f"topic/{other}"), policies=[policy])
    assert f'{var}="{value}"' in (d["values"] or ""), d


@pytest.mark.parametrize("protocol", list(PROTOCOLS.values()), ids=list(PROTOCOLS))
@pytest.mark.parametrize("kind", ["thing-name", "thing-attribute"])
def test_thing_variables_need_association(server, clients, identities, kind, protocol):
    """Same certificate, client id naming no thing: the variable stays unresolved, so neither the
    client id's topic nor an attached thing's topic is allowed."""
    prefix, var = VARIABLES[kind]
    policy, [(dev, _, value), _] = identities[kind]
    client_id = unique("loose")
    c = clients.connect(server, dev, protocol=protocol, client_id=client_id)
    log = ServerLog(server)
    topic = f"{prefix}/{value}"
    rc = c.publish_result(topic)
    if protocol == MQTTv5:
        assert rc == NOT_AUTHORIZED_V5, f"PUBACK {rc} for {topic}"
        assert c.publish_result(f"{prefix}/{client_id}") == NOT_AUTHORIZED_V5
    else:
        assert rc is None and c.wait_closed(), (rc, c.state())
    refusals = log.refusals(client_id, "iot:Publish")
    assert refusals, "no refusal logged"
    d = assert_policy_refusal(refusals[0], action="iot:Publish", client=client_id,
                              cert=dev.cert_id, resource=iot_arn(f"topic/{topic}"),
                              policies=[policy])
    assert f"{var}=" in (d["values"] or "") and f'{var}="' not in d["values"], d
