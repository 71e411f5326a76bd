"""Policy and certificate changes apply to connected clients at their next action, without
reconnecting (shared/spec/broker-and-policy.md §2.1 "an emulator should apply changes
immediately", §3.5): detaching a policy, or making a new version the default, refuses the next
PUBLISH (MQTT 5 PUBACK 0x87, connection kept; MQTT 3.1.1 closed) and revokes delivery on existing
subscriptions; attaching it again (or restoring the version) allows again. A certificate set
INACTIVE can no longer connect: no CONNACK in either MQTT version (§3.5)."""

import time

import pytest

from iotmock_support import (PROTOCOLS, PUBACK_OK, MQTTv311, MQTTv5,
                             NOT_AUTHORIZED_V5, ServerLog, allow, assert_policy_refusal,
                             attach_policy, control_ok, create_device, create_policy,
                             create_policy_version, detach_policy, iot_arn, policy_document,
                             set_certificate_status, unique)


def imm_policy(prefix="imm"):
    return policy_document(
        allow("iot:Connect", "client/*"),
        allow(["iot:Publish", "iot:Receive"], f"topic/{prefix}/*"),
        allow("iot:Subscribe", f"topicfilter/{prefix}/*"))


def expect_refused_publish(c, rc):
    if c.protocol == MQTTv5:
        assert rc == NOT_AUTHORIZED_V5, f"PUBACK {rc}, expected 0x87"
        assert not c.closed and c.connected, c.state()
    else:
        assert rc is None, f"3.1.1 got a PUBACK ({rc})"
        assert c.wait_closed(), c.state()


@pytest.mark.parametrize("protocol", list(PROTOCOLS.values()), ids=list(PROTOCOLS))
def test_detach_then_reattach(server, clients, tmp_path, protocol):
    policy = create_policy(server, imm_policy())
    device = create_device(server, tmp_path, policy)
    c = clients.connect(server, device, protocol=protocol, client_id=unique("imm"))
    topic = f"imm/{unique('t')}"
    assert c.publish_result(topic) in PUBACK_OK
    detach_policy(server, policy, device.arn)
    log = ServerLog(server)
    expect_refused_publish(c, c.publish_result(topic))
    assert_policy_refusal(log.wait_refusal(c.client_id, "iot:Publish"), action="iot:Publish",
                          client=c.client_id, cert=device.cert_id,
                          resource=iot_arn(f"topic/{topic}"), policies=[])
    attach_policy(server, policy, device.arn)
    if protocol == MQTTv311:  # the refusal closed it; a new connection is allowed again
        c = clients.connect(server, device, protocol=protocol, client_id=unique("imm"))
    assert c.publish_result(topic) in PUBACK_OK, "re-attached policy not applied"


@pytest.mark.parametrize("protocol", list(PROTOCOLS.values()), ids=list(PROTOCOLS))
def test_new_default_version_then_back(server, clients, tmp_path, protocol):
    policy = create_policy(server, imm_policy())
    device = create_device(server, tmp_path, policy)
    c = clients.connect(server, device, protocol=protocol, client_id=unique("ver"))
    topic = f"imm/{unique('t')}"
    assert c.publish_result(topic) in PUBACK_OK
    assert create_policy_version(server, policy, imm_policy("elsewhere")) == "2"
    log = ServerLog(server)
    expect_refused_publish(c, c.publish_result(topic))
    assert_policy_refusal(log.wait_refusal(c.client_id, "iot:Publish"), action="iot:Publish",
                          client=c.client_id, cert=device.cert_id,
                          resource=iot_arn(f"topic/{topic}"), policies=[policy])
    control_ok(server, "PATCH", f"/policies/{policy}/version/1")  # SetDefaultPolicyVersion
    if protocol == MQTTv311:
        c = clients.connect(server, device, protocol=protocol, client_id=unique("ver"))
    assert c.publish_result(topic) in PUBACK_OK, "restored default version not applied"


@pytest.mark.parametrize("protocol", list(PROTOCOLS.values()), ids=list(PROTOCOLS))
def test_detach_revokes_delivery_on_existing_subscription(server, clients, tmp_path, protocol):
    sub_policy = create_policy(server, imm_policy())
    pub_policy = create_policy(server, imm_policy())
    sub_dev = create_device(server, tmp_path, sub_policy)
    pub_dev = create_device(server, tmp_path, pub_policy)
    sub = clients.connect(server, sub_dev, protocol=protocol, client_id=unique("sub"))
    pub = clients.connect(server, pub_dev, protocol=MQTTv5, client_id=unique("pub"))
    u = unique("t")
    before, after, marker = f"imm/{u}/before", f"imm/{u}/after", f"imm/{u}/marker"
    assert sub.subscribe_result(f"imm/{u}/#") == [1]
    assert pub.publish_result(before, b"1") == 0
    assert sub.wait_message(before, 5) is not None
    detach_policy(server, sub_policy, sub_dev.arn)
    log = ServerLog(server)
    assert pub.publish_result(after, b"2") == 0
    attach_policy(server, sub_policy, sub_dev.arn)
    assert pub.publish_result(marker, b"3") == 0
    assert sub.wait_message(marker, 5) is not None, "delivery not restored after re-attach"
    assert sub.messages(after) == [], "delivered while the policy was detached"
    assert not sub.closed, "a refused Receive must not disconnect"
    assert_policy_refusal(log.wait_refusal(sub.client_id, "iot:Receive"), action="iot:Receive",
                          client=sub.client_id, cert=sub_dev.cert_id,
                          resource=iot_arn(f"topic/{after}"), policies=[])


@pytest.mark.parametrize("protocol", list(PROTOCOLS.values()), ids=list(PROTOCOLS))
def test_inactive_certificate_cannot_reconnect(server, clients, tmp_path, protocol):
    device = create_device(server, tmp_path, create_policy(server, imm_policy()))
    client_id = unique("inactive")
    first = clients.connect(server, device, protocol=protocol, client_id=client_id)
    first.close()
    set_certificate_status(server, device.cert_id, "INACTIVE")
    log = ServerLog(server)
    res = clients.new(server, device, protocol=protocol, client_id=client_id).try_connect()
    assert not res.ok
    assert (res.connack_rc, res.error) == (None, "connection closed before CONNACK"), res
    r = log.wait_refusal(client_id, "CONNECT")
    assert r.cert == device.cert_id, r.line
    assert r.why == "certificate status is INACTIVE, not ACTIVE", r.line
    set_certificate_status(server, device.cert_id, "ACTIVE")
    clients.connect(server, device, protocol=protocol, client_id=client_id)


@pytest.mark.parametrize("protocol", list(PROTOCOLS.values()), ids=list(PROTOCOLS))
@pytest.mark.parametrize("status", ["INACTIVE", "REVOKED"])
def test_live_client_is_disconnected_when_its_certificate_leaves_active(server, clients, tmp_path,
                                                                       protocol, status):
    """§3.5: AWS disconnects the devices of a certificate that stops being ACTIVE ("within a few
    minutes"); iotmock does it within a second. REVOKED is terminal."""
    device = create_device(server, tmp_path, create_policy(server, imm_policy()))
    client_id = unique("live")
    c = clients.connect(server, device, protocol=protocol, client_id=client_id)
    assert c.publish_result(f"imm/{unique('before')}") in PUBACK_OK
    log = ServerLog(server)
    set_certificate_status(server, device.cert_id, status)
    assert c.wait_closed(2.0), "still connected 2 s after the certificate left ACTIVE"
    expected = (f"iotmock: disconnecting | client={client_id} | cert={device.cert_id} "
                f"| certificate {status}")
    deadline = time.monotonic() + 3
    while expected not in log.text() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert expected in log.text(), log.text()
    res = clients.new(server, device, protocol=protocol, client_id=client_id).try_connect()
    assert not res.ok
