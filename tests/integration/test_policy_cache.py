"""Compiled policies and per-connection authorization are reloaded only when something that can
change a connection's rights changed (issue #3 items 1 and 9; shared/spec/broker-and-policy.md
§2.6): provisioning other devices (certificates, things, their policy attachments and
principals), creating unrelated policies and changing certificate status leave connected clients
alone, while a new default policy version, a change of the client's own attachment, thing or
groups applies at its next action. Every reload of a connected client is one server log line
"iotmock: authorization reloaded | client=… | cert=… | policies=N | compiled documents=N"; that
count of compiled documents grows by one per policy document first used, not per connection."""

import json
import re
import time

import pytest

from iotmock_support import (PUBACK_OK, MQTTv5, NOT_AUTHORIZED_V5, ServerLog, allow,
                             add_thing_to_group, attach_policy, attach_thing_principal,
                             control_ok, create_device, create_policy, create_policy_version,
                             create_thing, create_thing_group, deny, detach_policy,
                             policy_document, set_certificate_status, unique)

RELOAD = re.compile(r"iotmock: authorization reloaded \| client=(?P<client>\S+) \| "
                    r"cert=(?P<cert>\S+) \| policies=(?P<n>\d+) \| compiled documents=(?P<c>\d+)")


def reloads(log, client=None):
    return [m for m in RELOAD.finditer(log.text()) if client is None or m["client"] == client]


def cache_policy(prefix):
    return policy_document(
        allow("iot:Connect", "client/*"),
        allow(["iot:Publish", "iot:Receive"], f"topic/{prefix}/*"),
        allow("iot:Subscribe", f"topicfilter/{prefix}/*"))


@pytest.fixture
def setup(server, clients, tmp_path):
    """One certificate, a thing named like client A attached to it; A (thing-associated) and B
    (another client id, same certificate) connected and authorized once."""
    prefix = unique("cache")
    policy = create_policy(server, cache_policy(prefix))
    device = create_device(server, tmp_path, policy)
    thing = unique("cache-thing")
    create_thing(server, thing)
    attach_thing_principal(server, thing, device.arn)
    a = clients.connect(server, device, protocol=MQTTv5, client_id=thing)
    b = clients.connect(server, device, protocol=MQTTv5, client_id=unique("cache-b"))
    for c in (a, b):
        assert c.publish_result(f"{prefix}/{unique('t')}") in PUBACK_OK
    return prefix, policy, device, thing, a, b


def provision_others(server, tmp_path, policy, n=5):
    """What fleet provisioning does for N other devices, plus unrelated control-plane work."""
    for i in range(n):
        d = create_device(server, tmp_path / f"other{i}", policy)
        name = unique("other-thing")
        create_thing(server, name, attributes={"n": str(i)})
        attach_thing_principal(server, name, d.arn)
        set_certificate_status(server, d.cert_id, "INACTIVE")
    create_policy(server, cache_policy("unrelated"))


def test_provisioning_others_reloads_nobody(server, setup, tmp_path):
    prefix, policy, device, thing, a, b = setup
    for i in range(5):
        (tmp_path / f"other{i}").mkdir()
    log = ServerLog(server)
    provision_others(server, tmp_path, policy)
    for c in (a, b):
        assert c.publish_result(f"{prefix}/{unique('t')}") in PUBACK_OK
        assert c.publish_result(f"elsewhere/{unique('t')}") == NOT_AUTHORIZED_V5
    assert reloads(log) == [], "connected clients reloaded after unrelated changes"
    # The control: a change to their own certificate's attachments does reload both.
    attach_policy(server, create_policy(server, cache_policy("more")), device.arn)
    for c in (a, b):
        assert c.publish_result(f"more/{unique('t')}") in PUBACK_OK
    assert sorted(m["client"] for m in reloads(log)) == sorted([a.client_id, b.client_id])


def test_policy_version_reloads_at_next_action_compiled_once(server, setup):
    prefix, policy, device, thing, a, b = setup
    log = ServerLog(server)
    create_policy_version(server, policy, policy_document(
        allow("iot:Connect", "client/*"), deny("iot:Publish", f"topic/{prefix}/*")))
    topic = f"{prefix}/{unique('t')}"
    for c in (a, b):
        assert c.publish_result(topic) == NOT_AUTHORIZED_V5, "new version not applied"
        assert log.wait_refusal(c.client_id, "iot:Publish")
    found = {m["client"]: m for m in reloads(log)}
    assert set(found) >= {a.client_id, b.client_id}, log.text()
    assert found[a.client_id]["cert"] == device.cert_id and found[a.client_id]["n"] == "1"
    # Both connections share the new version's compiled form: compiled once, by the first.
    assert int(found[b.client_id]["c"]) == int(found[a.client_id]["c"]), log.text()


def test_own_changes_reload_only_the_client_concerned(server, setup):
    prefix, policy, device, thing, a, b = setup
    log = ServerLog(server)
    # A's thing joins a group: A (associated with the thing) is concerned; B, on the same
    # certificate but under another client id, is not associated with it.
    group = unique("cache-group")
    create_thing_group(server, group)
    add_thing_to_group(server, group, thing)
    assert a.publish_result(f"{prefix}/{unique('t')}") in PUBACK_OK
    assert b.publish_result(f"{prefix}/{unique('t')}") in PUBACK_OK
    assert [m["client"] for m in reloads(log)] == [a.client_id], log.text()
    # A new attachment to the certificate concerns both.
    log = ServerLog(server)
    extra = create_policy(server, policy_document(deny("iot:Publish", f"topic/{prefix}/no/*")))
    attach_policy(server, extra, device.arn)
    for c in (a, b):
        assert c.publish_result(f"{prefix}/no/{unique('t')}") == NOT_AUTHORIZED_V5
        assert c.publish_result(f"{prefix}/{unique('t')}") in PUBACK_OK
    assert sorted(m["client"] for m in reloads(log)) == sorted([a.client_id, b.client_id])
    assert all(m["n"] == "2" for m in reloads(log)), log.text()


def test_documents_are_compiled_when_stored(server, setup):
    """CreatePolicy and CreatePolicyVersion --set-as-default compile the document into the shared
    cache as they validate it; a version that is not the default is only validated."""
    prefix, policy, device, thing, a, b = setup

    def compiled_after_reload(target_policy, attach):
        log = ServerLog(server)
        (attach_policy if attach else detach_policy)(server, target_policy, device.arn)
        assert a.publish_result(f"{prefix}/{unique('t')}") in PUBACK_OK
        (found,) = reloads(log, a.client_id)
        return int(found["c"])

    extra = create_policy(server, cache_policy("extra"))
    before = compiled_after_reload(extra, attach=True)
    create_policy(server, cache_policy(unique("stored")))  # attached to nobody
    after_create = compiled_after_reload(extra, attach=False)
    assert after_create == before + 1, "CreatePolicy did not compile into the cache"
    create_policy_version(server, extra, cache_policy(unique("v2")))  # default, unused here
    after_version = compiled_after_reload(extra, attach=True)
    # +1 for the new default version of EXTRA, compiled when stored, found compiled by A.
    assert after_version == after_create + 1, (before, after_create, after_version)
    control_ok(server, "POST", f"/policies/{extra}/version?setAsDefault=false",
               {"policyDocument": json.dumps(cache_policy(unique("v3")))})
    assert compiled_after_reload(extra, attach=False) == after_version, \
        "a non-default version was compiled into the cache"


def test_an_allowed_topic_is_checked_again_after_a_change(server, setup):
    """A client's last allowed actions are remembered, and forgotten with any change that
    concerns it: the same topic, allowed a moment ago, is refused once the new default policy
    version no longer allows it."""
    prefix, policy, device, thing, a, b = setup
    topic = f"{prefix}/same/{unique('t')}"
    for _ in range(3):
        assert a.publish_result(topic) in PUBACK_OK
    create_policy_version(server, policy, policy_document(
        allow("iot:Connect", "client/*"), allow("iot:Publish", f"topic/{prefix}/other/*")))
    assert a.publish_result(topic) == NOT_AUTHORIZED_V5
    assert a.connected, a.state()


def test_time_conditions_are_evaluated_at_every_action(server, clients, tmp_path):
    """A decision that depends on aws:CurrentTime is never remembered: the same publish that was
    allowed before the policy's deadline is refused after it."""
    prefix = unique("clock")
    deadline = time.time() + 3
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(deadline))
    policy = create_policy(server, policy_document(
        allow("iot:Connect", "client/*"),
        allow("iot:Publish", f"topic/{prefix}/*",
              condition={"DateLessThan": {"aws:CurrentTime": stamp}})))
    device = create_device(server, tmp_path, policy)
    c = clients.connect(server, device, protocol=MQTTv5, client_id=unique("clock"))
    topic = f"{prefix}/t"
    for _ in range(3):
        assert c.publish_result(topic) in PUBACK_OK
    time.sleep(max(0.0, int(deadline) - time.time()) + 1.2)
    log = ServerLog(server)
    assert c.publish_result(topic) == NOT_AUTHORIZED_V5
    assert c.connected, c.state()
    log.wait_refusal(c.client_id, "iot:Publish")
