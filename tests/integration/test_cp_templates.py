"""Control plane, provisioning templates: create/describe/list/update/delete, versions,
CreateProvisioningClaim and the REST RegisterThing (shared/spec/provisioning.md §2.1, §1.11,
§6.5). Every change is checked where it matters: on fleet provisioning over MQTT (enabled flag,
default version), on the claim certificate's connection, on the broker admitting a device."""

import json
import re
import time

import pytest

from cp_support import (ALLOW_ALL_POLICY, PUB, Aws, Device, arn, assert_publishes, cert_arn,
                        new_device)
from iotmock_support import (DEVICE_POLICY, FLEET_DEFAULT, cert_id, create_keys, make_csr,
                             register_thing, unique, write_credentials)

pytestmark = pytest.mark.usefixtures("broker_still_serves")

ROLE = "arn:aws:iam::123456789012:role/iotmock-provisioning"


def body(prefix: str) -> str:
    return json.dumps({
        "Parameters": {"SerialNumber": {"Type": "String"}},
        "Resources": {
            "thing": {"Type": "AWS::IoT::Thing",
                      "Properties": {"ThingName": {"Fn::Join": ["", [prefix,
                                                                     {"Ref": "SerialNumber"}]]}}},
            "certificate": {"Type": "AWS::IoT::Certificate",
                            "Properties": {"CertificateId": {"Ref": "AWS::IoT::Certificate::Id"},
                                           "Status": "ACTIVE"}},
            "policy": {"Type": "AWS::IoT::Policy", "Properties": {"PolicyName": DEVICE_POLICY}},
        }})


@pytest.fixture
def aws(server):
    return Aws(server)


@pytest.fixture
def claim(aws, mqtt, tmp_path):
    """claim(template) -> an MQTT client connected with a CreateProvisioningClaim certificate for
    TEMPLATE (an allow-all policy attached, so the test holds whatever the broker enforces)."""
    policy = unique("claim-allow")
    aws.ok("create-policy", "--policy-name", policy, "--policy-document", ALLOW_ALL_POLICY)

    def connect(template):
        out = aws.ok("create-provisioning-claim", "--template-name", template)
        cert, key = write_credentials(tmp_path, unique("claim"), out["certificatePem"],
                                      out["keyPair"]["PrivateKey"])
        aws.ok("attach-policy", "--policy-name", policy, "--target", cert_arn(out["certificateId"]))
        return mqtt(cert, key)

    return connect


def provision(client, template: str, serial: str):
    keys = create_keys(client)
    return register_thing(client, template, keys["certificateOwnershipToken"],
                          {"SerialNumber": serial})


def test_template_lifecycle_drives_fleet_provisioning(aws, claim):
    name = unique("tpl")
    created = aws.ok("create-provisioning-template", "--template-name", name,
                     "--provisioning-role-arn", ROLE, "--template-body", body("a-"),
                     "--description", "lifecycle")
    assert created == {"templateArn": arn("provisioningtemplate", name), "templateName": name,
                       "defaultVersionId": 1}
    d = aws.ok("describe-provisioning-template", "--template-name", name)
    assert d["enabled"] is False and d["type"] == "FLEET_PROVISIONING"  # §2.1 defaults
    assert d["defaultVersionId"] == 1 and d["templateBody"] == body("a-")
    assert d["provisioningRoleArn"] == ROLE and d["description"] == "lifecycle"
    assert "preProvisioningHook" not in d and {"creationDate", "lastModifiedDate"} <= set(d)

    client = claim(name)
    serial = unique("sn")
    which, answer = provision(client, name, serial)
    assert which == "rejected", answer  # a disabled template does not provision

    aws.ok("update-provisioning-template", "--template-name", name, "--enabled")
    which, answer = provision(client, name, serial)
    assert which == "accepted" and answer["thingName"] == "a-" + serial, answer
    assert aws.ok("describe-thing", "--thing-name", "a-" + serial)["thingName"] == "a-" + serial

    v2 = aws.ok("create-provisioning-template-version", "--template-name", name,
                "--template-body", body("b-"))
    assert v2 == {"templateArn": arn("provisioningtemplate", name), "templateName": name,
                  "versionId": 2, "isDefaultVersion": False}
    which, answer = provision(client, name, serial + "x")
    assert answer["thingName"] == "a-" + serial + "x"  # still the default, version 1
    v3 = aws.ok("create-provisioning-template-version", "--template-name", name,
                "--template-body", body("c-"), "--set-as-default")
    assert v3["versionId"] == 3 and v3["isDefaultVersion"] is True
    d = aws.ok("describe-provisioning-template", "--template-name", name)
    assert d["defaultVersionId"] == 3 and d["templateBody"] == body("c-")
    which, answer = provision(client, name, serial + "y")
    assert answer["thingName"] == "c-" + serial + "y"  # the new default, at once

    versions = aws.ok("list-provisioning-template-versions", "--template-name", name)["versions"]
    assert [(v["versionId"], v["isDefaultVersion"]) for v in versions] == [
        (1, False), (2, False), (3, True)]
    v = aws.ok("describe-provisioning-template-version", "--template-name", name,
               "--version-id", "2")
    assert v["versionId"] == 2 and v["templateBody"] == body("b-") and not v["isDefaultVersion"]
    aws.fail("ResourceNotFoundException", "DescribeProvisioningTemplateVersion",
             "describe-provisioning-template-version", "--template-name", name,
             "--version-id", "99")
    aws.fail("DeleteConflictException", "DeleteProvisioningTemplateVersion",
             "delete-provisioning-template-version", "--template-name", name, "--version-id", "3",
             message=f"Cannot delete the default version of template {name}")
    aws.ok("update-provisioning-template", "--template-name", name, "--default-version-id", "1")
    aws.ok("delete-provisioning-template-version", "--template-name", name, "--version-id", "3")
    for prefix in ("d-", "e-", "f-"):
        aws.ok("create-provisioning-template-version", "--template-name", name,
               "--template-body", body(prefix))
    aws.fail("VersionsLimitExceededException", "CreateProvisioningTemplateVersion",
             "create-provisioning-template-version", "--template-name", name,
             "--template-body", body("g-"),
             message=f"The template {name} already has the maximum number of versions")
    which, answer = provision(client, name, serial + "z")
    assert answer["thingName"] == "a-" + serial + "z"

    listed = aws.ok("list-provisioning-templates")["templates"]
    mine = [t for t in listed if t["templateName"] == name]
    assert len(mine) == 1 and mine[0]["enabled"] is True and mine[0]["description"] == "lifecycle"
    assert {"templateArn", "creationDate", "lastModifiedDate", "type"} <= set(mine[0])

    aws.ok("delete-provisioning-template", "--template-name", name)
    aws.fail("ResourceNotFoundException", "DescribeProvisioningTemplate",
             "describe-provisioning-template", "--template-name", name,
             message=f"Template {name} not found")
    which, answer = provision(client, name, serial + "w")
    assert which == "rejected"


def test_template_errors_and_hooks(aws):
    name = unique("tpl")
    aws.fail("InvalidRequestException", "CreateProvisioningTemplate",
             "create-provisioning-template", "--template-name", name,
             "--provisioning-role-arn", ROLE, "--template-body", '{"Resources": {"x": 1}}',
             message="Invalid template body")
    aws.fail("InvalidRequestException", "CreateProvisioningTemplate",
             "create-provisioning-template", "--template-name", "bad name",
             "--provisioning-role-arn", ROLE, "--template-body", body("x-"),
             message="templateName 'bad name' is invalid")
    hook = "targetArn=arn:aws:lambda:us-east-1:123456789012:function:hook"
    aws.fail("InvalidRequestException", "CreateProvisioningTemplate",
             "create-provisioning-template", "--template-name", name, "--type", "JITP",
             "--provisioning-role-arn", ROLE, "--template-body", body("x-"),
             "--pre-provisioning-hook", hook, message="only allowed for FLEET_PROVISIONING")

    aws.ok("create-provisioning-template", "--template-name", name, "--provisioning-role-arn",
           ROLE, "--template-body", body("x-"), "--pre-provisioning-hook", hook, "--enabled")
    d = aws.ok("describe-provisioning-template", "--template-name", name)
    assert d["preProvisioningHook"] == {"targetArn": hook.split("=", 1)[1],
                                        "payloadVersion": "2020-04-01"}
    assert d["enabled"] is True
    aws.fail("ResourceAlreadyExistsException", "CreateProvisioningTemplate",
             "create-provisioning-template", "--template-name", name,
             "--provisioning-role-arn", ROLE, "--template-body", body("x-"),
             message=f"Template with name {name} already exists")
    aws.ok("update-provisioning-template", "--template-name", name,
           "--remove-pre-provisioning-hook", "--no-enabled", "--description", "no hook")
    d = aws.ok("describe-provisioning-template", "--template-name", name)
    assert "preProvisioningHook" not in d and d["enabled"] is False
    assert d["description"] == "no hook"
    aws.fail("ResourceNotFoundException", "UpdateProvisioningTemplate",
             "update-provisioning-template", "--template-name", name, "--default-version-id", "5")
    aws.ok("delete-provisioning-template", "--template-name", name)
    aws.fail("ResourceNotFoundException", "DeleteProvisioningTemplate",
             "delete-provisioning-template", "--template-name", name)
    aws.fail("ResourceNotFoundException", "CreateProvisioningClaim", "create-provisioning-claim",
             "--template-name", name)


def test_provisioning_claim(server, aws, mqtt, tmp_path):
    before = time.time()
    out = aws.ok("create-provisioning-claim", "--template-name", FLEET_DEFAULT)
    assert set(out) == {"certificateId", "certificatePem", "keyPair", "expiration"}
    assert out["certificateId"] == cert_id(out["certificatePem"])
    assert set(out["keyPair"]) == {"PublicKey", "PrivateKey"}
    # The CLI prints timestamps as ISO 8601; five minutes from now (§1.11).
    exp = time.mktime(time.strptime(out["expiration"][:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
    assert before + 290 <= exp <= time.time() + 310, out["expiration"]
    listed = [c["certificateId"] for c in aws.ok("list-certificates")["certificates"]]
    assert out["certificateId"] not in listed
    # Its permissions are implicit, as on AWS: no policy is attached, none is created.
    assert aws.ok("list-attached-policies", "--target", cert_arn(out["certificateId"])) == {
        "policies": []}
    names = [p["policyName"] for p in aws.ok("list-policies")["policies"]]
    assert not [n for n in names if n.startswith("iotmock-provisioning-claim")], names

    # The claim connects (ACTIVE at once) and runs fleet provisioning for its template.
    cert, key = write_credentials(tmp_path, "claim", out["certificatePem"],
                                  out["keyPair"]["PrivateKey"])
    client = mqtt(cert, key)
    serial = unique("claimed")
    which, answer = provision(client, FLEET_DEFAULT, serial)
    assert which == "accepted" and answer["thingName"] == serial, answer


@pytest.mark.skipif(PUB is None, reason="mosquitto_pub not installed")
def test_register_thing_rest(server, aws, tmp_path):
    thing = unique("reg")
    key, csr = make_csr(tmp_path, "rsa2048", subject=f"/CN={thing}")
    template = json.dumps({
        "Parameters": {"ThingName": {"Type": "String"}, "CSR": {"Type": "String"},
                       "Floor": {"Type": "String", "Default": "3"}},
        "Resources": {
            "thing": {"Type": "AWS::IoT::Thing",
                      "Properties": {"ThingName": {"Ref": "ThingName"},
                                     "AttributePayload": {"floor": {"Ref": "Floor"}}}},
            "certificate": {"Type": "AWS::IoT::Certificate",
                            "Properties": {"CertificateSigningRequest": {"Ref": "CSR"},
                                           "Status": "ACTIVE"}},
            "policy": {"Type": "AWS::IoT::Policy", "Properties": {"PolicyName": DEVICE_POLICY}},
        }})
    params = tmp_path / "params.json"
    params.write_text(json.dumps({"ThingName": thing, "CSR": csr}))
    out = aws.ok("register-thing", "--template-body", template, "--parameters",
                 f"file://{params}")
    assert set(out) == {"certificatePem", "resourceArns"}
    cid = cert_id(out["certificatePem"])
    assert out["resourceArns"] == {"thing": arn("thing", thing), "certificate": cert_arn(cid),
                                   "policy": arn("policy", DEVICE_POLICY)}
    d = aws.ok("describe-thing", "--thing-name", thing)
    assert d["attributes"] == {"floor": "3"}
    assert aws.ok("list-thing-principals", "--thing-name", thing) == {"principals": [cert_arn(cid)]}
    assert aws.ok("describe-certificate", "--certificate-id", cid)[
        "certificateDescription"]["status"] == "ACTIVE"
    dev = Device.__new__(Device)
    dev.id, dev.arn, dev.name, dev.key = cid, cert_arn(cid), thing, key
    dev.cert = tmp_path / "reg.cert.pem"
    dev.cert.write_text(out["certificatePem"])
    allow = unique("allow")
    aws.ok("create-policy", "--policy-name", allow, "--policy-document", ALLOW_ALL_POLICY)
    aws.ok("attach-policy", "--policy-name", allow, "--target", dev.arn)
    assert_publishes(server, dev, client_id=thing)

    # An existing certificate, by id: the template's Status applies to it.
    existing = new_device(aws, tmp_path, active=False)
    by_id = json.dumps({"Parameters": {"Id": {"Type": "String"}},
                        "Resources": {"certificate": {"Type": "AWS::IoT::Certificate",
                                                      "Properties": {"CertificateId":
                                                                     {"Ref": "Id"},
                                                                     "Status": "ACTIVE"}}}})
    out = aws.ok("register-thing", "--template-body", by_id, "--parameters",
                 f"Id={existing.id}")
    assert out["resourceArns"] == {"certificate": existing.arn}
    assert aws.ok("describe-certificate", "--certificate-id", existing.id)[
        "certificateDescription"]["status"] == "ACTIVE"

    aws.fail("ResourceRegistrationFailureException", "RegisterThing", "register-thing",
             "--template-body", template, "--parameters", f"ThingName={unique('x')}",
             message="CertificateSigningRequest")
    aws.fail("InvalidRequestException", "RegisterThing", "register-thing", "--template-body",
             json.dumps({"Resources": {}}), message="needs an AWS::IoT::Certificate resource")
    # A failed registration leaves nothing behind.
    bad = json.loads(template)
    bad["Resources"]["thing"]["Properties"]["ThingTypeName"] = unique("no-such-type")
    params.write_text(json.dumps({"ThingName": unique("ghost"), "CSR": csr}))
    before = len(aws.ok("list-certificates")["certificates"])
    aws.fail("ResourceRegistrationFailureException", "RegisterThing", "register-thing",
             "--template-body", json.dumps(bad), "--parameters", f"file://{params}")
    assert len(aws.ok("list-certificates")["certificates"]) == before
    assert re.match(r"^[0-9a-f]{64}$", cid)
