"""Control plane, policies: create/get/list/delete, versions, attachments and the deprecated
principal-policy operations, checked in the CLI's output (shared/spec/provisioning.md §6.4,
§6.5, §4.8) and on the broker: a device with an attached policy connects and publishes."""

import json
import re

import pytest

from cp_support import (ALLOW_ALL_POLICY, PUB, Aws, arn, assert_cannot_publish,
                        assert_publishes, boto3_client, new_device)
from iotmock_support import unique

pytestmark = pytest.mark.usefixtures("broker_still_serves")


def document(n: int) -> str:
    return json.dumps({"Version": "2012-10-17",
                       "Statement": [{"Effect": "Allow", "Action": "iot:Publish",
                                      "Resource": f"arn:aws:iot:us-east-1:123456789012:topic/t{n}"}]})


@pytest.fixture
def aws(server):
    return Aws(server)


@pytest.mark.skipif(PUB is None, reason="mosquitto_pub not installed")
def test_policy_lifecycle_and_attachment(server, aws, tmp_path):
    name = unique("pol")
    created = aws.ok("create-policy", "--policy-name", name, "--policy-document", ALLOW_ALL_POLICY)
    assert created == {"policyName": name, "policyArn": arn("policy", name),
                       "policyDocument": ALLOW_ALL_POLICY, "policyVersionId": "1"}
    aws.fail("ResourceAlreadyExistsException", "CreatePolicy", "create-policy", "--policy-name",
             name, "--policy-document", ALLOW_ALL_POLICY,
             message=re.escape(f"Policy cannot be created - name already exists (name={name})"))
    got = aws.ok("get-policy", "--policy-name", name)
    assert got["policyName"] == name and got["policyArn"] == arn("policy", name)
    assert got["policyDocument"] == ALLOW_ALL_POLICY and got["defaultVersionId"] == "1"
    assert {"creationDate", "lastModifiedDate", "generationId"} <= set(got)
    assert name in [p["policyName"] for p in aws.ok("list-policies")["policies"]]

    # Attached to a device's certificate, the device connects and publishes; detached, it
    # cannot (the broker evaluates the registry's attachments at each CONNECT).
    dev = new_device(aws, tmp_path)
    assert_cannot_publish(server, dev)
    assert aws.ok("attach-policy", "--policy-name", name, "--target", dev.arn) == {}
    aws.ok("attach-policy", "--policy-name", name, "--target", dev.arn)  # idempotent
    assert aws.ok("list-attached-policies", "--target", dev.arn) == {
        "policies": [{"policyName": name, "policyArn": arn("policy", name)}]}
    assert aws.ok("list-targets-for-policy", "--policy-name", name) == {"targets": [dev.arn]}
    assert_publishes(server, dev)

    aws.fail("DeleteConflictException", "DeletePolicy", "delete-policy", "--policy-name", name,
             message=re.escape("The policy cannot be deleted as the policy is attached to one or "
                               f"more principals (name={name})"))
    aws.ok("detach-policy", "--policy-name", name, "--target", dev.arn)
    assert_cannot_publish(server, dev)
    assert aws.ok("list-attached-policies", "--target", dev.arn) == {"policies": []}
    assert aws.ok("list-targets-for-policy", "--policy-name", name) == {"targets": []}
    aws.ok("delete-policy", "--policy-name", name)
    aws.fail("ResourceNotFoundException", "GetPolicy", "get-policy", "--policy-name", name,
             message=f"Policy {name} not found")
    aws.fail("ResourceNotFoundException", "AttachPolicy", "attach-policy", "--policy-name", name,
             "--target", dev.arn)


def test_malformed_policies(aws):
    aws.fail("MalformedPolicyException", "CreatePolicy", "create-policy", "--policy-name",
             unique("bad"), "--policy-document", '{"Version": "2012-10-17"}',
             message="Statement")
    aws.fail("MalformedPolicyException", "CreatePolicy", "create-policy", "--policy-name",
             unique("bad"), "--policy-document", "not json")
    aws.fail("InvalidRequestException", "CreatePolicy", "create-policy", "--policy-name",
             "no spaces allowed", "--policy-document", ALLOW_ALL_POLICY,
             message="policyName 'no spaces allowed' is invalid")


def test_policy_versions(server, aws):
    name = unique("ver")
    aws.ok("create-policy", "--policy-name", name, "--policy-document", document(1))
    v2 = aws.ok("create-policy-version", "--policy-name", name, "--policy-document", document(2))
    assert v2 == {"policyArn": arn("policy", name), "policyDocument": document(2),
                  "policyVersionId": "2", "isDefaultVersion": False}
    assert aws.ok("get-policy", "--policy-name", name)["policyDocument"] == document(1)
    v3 = aws.ok("create-policy-version", "--policy-name", name, "--policy-document", document(3),
                "--set-as-default")
    assert v3["policyVersionId"] == "3" and v3["isDefaultVersion"] is True
    got = aws.ok("get-policy", "--policy-name", name)
    assert got["policyDocument"] == document(3) and got["defaultVersionId"] == "3"

    versions = aws.ok("list-policy-versions", "--policy-name", name)["policyVersions"]
    assert [(v["versionId"], v["isDefaultVersion"]) for v in versions] == [
        ("1", False), ("2", False), ("3", True)]
    assert all("createDate" in v for v in versions)
    one = aws.ok("get-policy-version", "--policy-name", name, "--policy-version-id", "2")
    assert one["policyName"] == name and one["policyVersionId"] == "2"
    assert one["policyDocument"] == document(2) and one["isDefaultVersion"] is False
    assert {"creationDate", "lastModifiedDate", "generationId", "policyArn"} <= set(one)
    aws.fail("ResourceNotFoundException", "GetPolicyVersion", "get-policy-version",
             "--policy-name", name, "--policy-version-id", "9")

    aws.ok("set-default-policy-version", "--policy-name", name, "--policy-version-id", "1")
    assert aws.ok("get-policy", "--policy-name", name)["policyDocument"] == document(1)
    aws.fail("DeleteConflictException", "DeletePolicyVersion", "delete-policy-version",
             "--policy-name", name, "--policy-version-id", "1",
             message="Cannot delete the default version of a policy")
    aws.fail("MalformedPolicyException", "CreatePolicyVersion", "create-policy-version",
             "--policy-name", name, "--policy-document", "{}")

    # Five versions at most.
    aws.ok("create-policy-version", "--policy-name", name, "--policy-document", document(4))
    aws.ok("create-policy-version", "--policy-name", name, "--policy-document", document(5))
    aws.fail("VersionsLimitExceededException", "CreatePolicyVersion", "create-policy-version",
             "--policy-name", name, "--policy-document", document(6),
             message=f"The policy {name} already has the maximum number of versions \\(5\\)")
    aws.fail("DeleteConflictException", "DeletePolicy", "delete-policy", "--policy-name", name,
             message="versions other than the default version exist")
    for v in ("2", "3", "4", "5"):
        aws.ok("delete-policy-version", "--policy-name", name, "--policy-version-id", v)
    # Ids are not reused.
    assert aws.ok("create-policy-version", "--policy-name", name, "--policy-document",
                  document(6))["policyVersionId"] == "6"
    aws.ok("delete-policy-version", "--policy-name", name, "--policy-version-id", "6")
    aws.ok("delete-policy", "--policy-name", name)


def test_deprecated_principal_policy_operations(server, aws, tmp_path):
    name = unique("old")
    aws.ok("create-policy", "--policy-name", name, "--policy-document", ALLOW_ALL_POLICY)
    dev = new_device(aws, tmp_path, active=False)
    assert aws.ok("attach-principal-policy", "--policy-name", name, "--principal", dev.arn) == {}
    assert aws.ok("list-principal-policies", "--principal", dev.arn) == {
        "policies": [{"policyName": name, "policyArn": arn("policy", name)}]}
    assert aws.ok("list-policy-principals", "--policy-name", name) == {"principals": [dev.arn]}
    # The newer operations see the same attachment.
    assert aws.ok("list-targets-for-policy", "--policy-name", name) == {"targets": [dev.arn]}
    aws.ok("detach-principal-policy", "--policy-name", name, "--principal", dev.arn)
    assert aws.ok("list-principal-policies", "--principal", dev.arn) == {"policies": []}
    aws.fail("ResourceNotFoundException", "ListPolicyPrincipals", "list-policy-principals",
             "--policy-name", unique("nope"))
    aws.fail("ResourceNotFoundException", "ListPrincipalPolicies", "list-principal-policies",
             "--principal", arn("cert", "cd" * 32))


def test_policy_limits_and_pages(server, aws, tmp_path):
    dev = new_device(aws, tmp_path, active=False)
    iot = boto3_client(server)
    names = sorted(unique("lim") for _ in range(11))
    for n in names:
        iot.create_policy(policyName=n, policyDocument=ALLOW_ALL_POLICY)
    for n in names[:10]:
        iot.attach_policy(policyName=n, target=dev.arn)
    aws.fail("LimitExceededException", "AttachPolicy", "attach-policy", "--policy-name",
             names[10], "--target", dev.arn,
             message="already has the maximum number of policies attached")

    # pageSize + marker, by name.
    page = iot.list_attached_policies(target=dev.arn, pageSize=4)
    seen = [p["policyName"] for p in page["policies"]]
    while "nextMarker" in page:
        page = iot.list_attached_policies(target=dev.arn, pageSize=4, marker=page["nextMarker"])
        seen += [p["policyName"] for p in page["policies"]]
    assert seen == names[:10]
    backwards = iot.list_policies(ascendingOrder=False, pageSize=250)["policies"]
    mine = [p["policyName"] for p in backwards if p["policyName"] in names]
    assert mine == list(reversed(names))


@pytest.mark.skipif(PUB is None, reason="mosquitto_pub not installed")
def test_test_authorization_and_effective_policies(server, aws, tmp_path):
    thing, group = unique("authz"), unique("authz-group")
    topic = f"arn:aws:iot:us-east-1:123456789012:topic/devices/{thing}"
    allow, deny, grouped = unique("allow"), unique("deny"), unique("grp")
    aws.ok("create-policy", "--policy-name", allow, "--policy-document", json.dumps({
        "Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": "iot:Connect",
             "Resource": "arn:aws:iot:us-east-1:123456789012:client/"
                         "${iot:Connection.Thing.ThingName}"},
            {"Effect": "Allow", "Action": "iot:Publish",
             "Resource": "arn:aws:iot:us-east-1:123456789012:topic/devices/"
                         "${iot:Connection.Thing.ThingName}/*"}]}))
    aws.ok("create-policy", "--policy-name", deny, "--policy-document", json.dumps({
        "Version": "2012-10-17", "Statement": [
            {"Effect": "Deny", "Action": "iot:Publish", "Resource": f"{topic}/secret"}]}))
    aws.ok("create-policy", "--policy-name", grouped, "--policy-document", json.dumps({
        "Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": "iot:Subscribe",
             "Resource": "arn:aws:iot:us-east-1:123456789012:topicfilter/devices/*"}]}))
    dev = new_device(aws, tmp_path, name=thing)
    aws.ok("create-thing", "--thing-name", thing)
    aws.ok("attach-thing-principal", "--thing-name", thing, "--principal", dev.arn)
    aws.ok("attach-policy", "--policy-name", allow, "--target", dev.arn)
    aws.ok("attach-policy", "--policy-name", deny, "--target", dev.arn)
    aws.ok("create-thing-group", "--thing-group-name", group)
    aws.ok("add-thing-to-thing-group", "--thing-group-name", group, "--thing-name", thing)
    aws.ok("attach-policy", "--policy-name", grouped, "--target", arn("thinggroup", group))

    def decide(action, resource, *extra, client_id=thing):
        out = aws.ok("test-authorization", "--principal", dev.arn, "--client-id", client_id,
                     "--auth-infos", json.dumps([{"actionType": action,
                                                  "resources": [resource]}]), *extra)
        (result,) = out["authResults"]
        assert result["authInfo"] == {"actionType": action, "resources": [resource]}
        return result

    ok = decide("PUBLISH", f"{topic}/telemetry")
    assert ok["authDecision"] == "ALLOWED"
    assert ok["allowed"]["policies"] == [{"policyName": allow, "policyArn": arn("policy", allow)}]
    assert ok["denied"] == {"implicitDeny": {"policies": []}, "explicitDeny": {"policies": []}}
    assert_publishes(server, dev, client_id=thing)  # the broker agrees

    denied = decide("PUBLISH", f"{topic}/secret")
    assert denied["authDecision"] == "EXPLICIT_DENY"
    assert [p["policyName"] for p in denied["denied"]["explicitDeny"]["policies"]] == [deny]
    assert decide("PUBLISH", "arn:aws:iot:us-east-1:123456789012:topic/elsewhere")[
        "authDecision"] == "IMPLICIT_DENY"
    assert decide("SUBSCRIBE", "arn:aws:iot:us-east-1:123456789012:topicfilter/devices/x/#")[
        "allowed"]["policies"][0]["policyName"] == grouped  # through the thing's group
    # Without the association (another client ID) the thing variables do not resolve.
    assert decide("PUBLISH", f"{topic}/telemetry", client_id="someone-else")[
        "authDecision"] == "IMPLICIT_DENY"
    assert decide("PUBLISH", f"{topic}/telemetry", "--policy-names-to-skip", allow)[
        "authDecision"] == "IMPLICIT_DENY"
    aws.fail("InvalidRequestException", "TestAuthorization", "test-authorization", "--principal",
             dev.arn, "--auth-infos", '[{"actionType": "FLY", "resources": ["x"]}]',
             message="Each authInfo needs an actionType")

    effective = aws.ok("get-effective-policies", "--principal", dev.arn, "--thing-name", thing)
    names = [p["policyName"] for p in effective["effectivePolicies"]]
    assert sorted(names) == sorted([allow, deny, grouped])
    assert all(p["policyArn"] == arn("policy", p["policyName"]) and p["policyDocument"]
               for p in effective["effectivePolicies"])
    aws.fail("ResourceNotFoundException", "GetEffectivePolicies", "get-effective-policies",
             "--principal", arn("cert", "ef" * 32))
