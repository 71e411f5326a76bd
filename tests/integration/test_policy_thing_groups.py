"""Thing-group policies (shared/spec/broker-and-policy.md §1.3-§1.5, §2.6, §8.4 item 10): a
policy attached to a thing group applies only to a connection associated with a thing of the
group — client id == thing name and the certificate attached to that thing. The same certificate
under another client id, or a group member the certificate is not attached to, does not get it
(MQTT 5 PUBACK 0x87; 3.1.1 closed), and the log lists only the certificate's own policies. A
group's ancestors' policies apply too."""

import pytest

from iotmock_support import (PROTOCOLS, PUBACK_OK, MQTTv5, NOT_AUTHORIZED_V5,
                             ServerLog, add_thing_to_group, allow, assert_policy_refusal,
                             attach_policy, attach_thing_principal, create_device, create_policy,
                             create_thing, create_thing_group, iot_arn, policy_document, unique)


@pytest.fixture(scope="module")
def group_setup(server, tmp_path_factory):
    """A certificate allowed only to connect; a group whose policy allows grp/*; thing `member`
    in the group with the certificate attached, thing `unattached` in the group without it; a
    parent group whose policy allows parent/*, the group being its child."""
    conn_only = create_policy(server, policy_document(allow("iot:Connect", "client/*")))
    device = create_device(server, tmp_path_factory.mktemp("grp"), conn_only)
    parent, group = unique("parent"), unique("group")
    parent_arn = create_thing_group(server, parent)
    group_arn = create_thing_group(server, group, parent=parent)
    group_policy = create_policy(server, policy_document(
        allow(["iot:Publish", "iot:Receive"], "topic/grp/*"),
        allow("iot:Subscribe", "topicfilter/grp/*")))
    parent_policy = create_policy(server, policy_document(allow("iot:Publish", "topic/parent/*")))
    attach_policy(server, group_policy, group_arn)
    attach_policy(server, parent_policy, parent_arn)
    member, unattached = unique("member"), unique("unattached")
    for t in (member, unattached):
        create_thing(server, t)
        add_thing_to_group(server, group, t)
    attach_thing_principal(server, member, device.arn)
    return {"device": device, "member": member, "unattached": unattached,
            "conn_only": conn_only, "group_policy": group_policy}


@pytest.mark.parametrize("protocol", list(PROTOCOLS.values()), ids=list(PROTOCOLS))
def test_group_policy_applies_to_associated_thing(server, clients, group_setup, protocol):
    s = group_setup
    c = clients.connect(server, s["device"], protocol=protocol, client_id=s["member"])
    u = unique("g")
    log = ServerLog(server)
    assert c.subscribe_result(f"grp/{u}") == [1]
    assert c.publish_result(f"grp/{u}", b"via group") == 0
    m = c.wait_message(f"grp/{u}", 5)
    assert m is not None and m.payload == b"via group"
    log.assert_no_refusal(s["member"])


@pytest.mark.parametrize("protocol", list(PROTOCOLS.values()), ids=list(PROTOCOLS))
@pytest.mark.parametrize("kind", ["other-client-id", "member-not-attached"])
def test_group_policy_needs_association(server, clients, group_setup, protocol, kind):
    """Same certificate, but the client id is not a thing attached to it: the group's policy is
    not among the policies considered."""
    s = group_setup
    client_id = unique("notmember") if kind == "other-client-id" else s["unattached"]
    c = clients.connect(server, s["device"], protocol=protocol, client_id=client_id)
    topic = f"grp/{unique('g')}"
    log = ServerLog(server)
    rc = c.publish_result(topic)
    if protocol == MQTTv5:
        assert rc == NOT_AUTHORIZED_V5, rc
    else:
        assert rc is None and c.wait_closed(), (rc, c.state())
    assert_policy_refusal(log.wait_refusal(client_id, "iot:Publish"), action="iot:Publish",
                          client=client_id, cert=s["device"].cert_id,
                          resource=iot_arn(f"topic/{topic}"), policies=[s["conn_only"]])


def test_parent_group_policy_is_inherited(server, clients, group_setup):
    """§1.5: a thing gets the policies of every ancestor of its groups."""
    s = group_setup
    c = clients.connect(server, s["device"], protocol=MQTTv5, client_id=s["member"])
    log = ServerLog(server)
    rc = c.publish_result(f"parent/{unique('p')}")
    assert rc in PUBACK_OK, (f"PUBACK {rc:#x}: the parent group's policy was not applied\n" +
                             "\n".join(r.line for r in log.refusals(s["member"])))
