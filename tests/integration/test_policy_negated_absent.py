"""A Not condition operator on a key the request does not have (docs/features.md): IAM's rule,
the default, holds it true; `iotmock serve --negated-absent false` makes it false, as
shared/spec/broker-and-policy.md §2.5 reads it. Here the key is iot:Connection.Thing.ThingName, absent
because the client id names no thing attached to the certificate."""

import pytest

from iotmock_support import (MQTTv5, NOT_AUTHORIZED_V5, ServerLog, control_ok,
                             create_device, create_policy, iot_arn, policy_document, unique)


@pytest.fixture(scope="module")
def servers(module_server_factory):
    return {"iam": module_server_factory(name="negated-iam"),
            "spec": module_server_factory("--negated-absent", "false", name="negated-spec")}


@pytest.fixture(scope="module")
def server(servers):
    return servers["iam"]


def device_on(srv, directory):
    name = create_policy(srv, policy_document({
        "Effect": "Allow", "Action": "iot:Connect", "Resource": "*",
        "Condition": {"StringNotLike": {"iot:Connection.Thing.ThingName": "blocked-*"}}}))
    return create_device(srv, directory, name)


@pytest.mark.parametrize("protocol", [MQTTv5], ids=["mqtt5"])
@pytest.mark.parametrize("mode,allowed", [("iam", True), ("spec", False)])
def test_not_operator_on_absent_key(servers, clients, tmp_path, mode, allowed, protocol):
    srv = servers[mode]
    d = device_on(srv, tmp_path)
    client_id = unique("nothing")
    log = ServerLog(srv)
    res = clients.new(srv, d, protocol=protocol, client_id=client_id).try_connect()
    if allowed:
        assert res.ok and res.connack_rc == 0, res
        log.assert_no_refusal(client_id)
    else:
        assert not res.ok and res.connack_rc == NOT_AUTHORIZED_V5, res
        assert log.wait_refusal(client_id, "iot:Connect")
    # TestAuthorization decides as the broker does.
    reply = control_ok(srv, "POST", "/test-authorization", {
        "principal": d.arn, "clientId": client_id,
        "authInfos": [{"actionType": "CONNECT", "resources": [iot_arn(f"client/{client_id}")]}]})
    assert reply["authResults"][0]["authDecision"] == ("ALLOWED" if allowed else "IMPLICIT_DENY")
