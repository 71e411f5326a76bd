"""Control plane, things family: things, thing types, thing groups and thing principals through
Debian's `aws iot` (and boto3 where the CLI's auto-pagination would hide the wire), with the
broker's behaviour checked alongside (shared/spec/provisioning.md §6.4, §6.5, §4.8)."""

import re

import pytest

from cp_support import (ALLOW_ALL_POLICY, PUB, Aws, arn, assert_publishes, boto3_client,
                        cert_arn, new_device, raw_request)
from iotmock_support import unique

pytestmark = pytest.mark.usefixtures("broker_still_serves")

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


@pytest.fixture
def aws(server):
    return Aws(server)


@pytest.mark.skipif(PUB is None, reason="mosquitto_pub not installed")
def test_thing_lifecycle_with_a_device_on_the_broker(server, aws, tmp_path):
    ttype, name = unique("sensor"), unique("thing")
    aws.ok("create-thing-type", "--thing-type-name", ttype)
    created = aws.ok("create-thing", "--thing-name", name, "--thing-type-name", ttype,
                     "--attribute-payload", '{"attributes": {"serial": "1", "color": "red"}}')
    assert set(created) == {"thingName", "thingArn", "thingId"}
    assert created["thingName"] == name
    assert created["thingArn"] == arn("thing", name)
    assert UUID.match(created["thingId"])

    # §6.5: the same request again succeeds with the same thing; another configuration does not.
    assert aws.ok("create-thing", "--thing-name", name, "--thing-type-name", ttype,
                  "--attribute-payload",
                  '{"attributes": {"color": "red", "serial": "1"}}') == created
    aws.fail("ResourceAlreadyExistsException", "CreateThing", "create-thing", "--thing-name", name,
             message=f"Thing {name} already exists")

    described = aws.ok("describe-thing", "--thing-name", name)
    assert described == {"defaultClientId": name, "thingName": name,
                         "thingId": created["thingId"], "thingArn": created["thingArn"],
                         "thingTypeName": ttype,
                         "attributes": {"serial": "1", "color": "red"}, "version": 1}

    # UpdateThing: merge adds and, with an empty value, removes; the version moves each time.
    aws.ok("update-thing", "--thing-name", name, "--attribute-payload",
           '{"attributes": {"serial": "2", "color": "", "site": "lab"}, "merge": true}')
    aws.fail("VersionConflictException", "UpdateThing", "update-thing", "--thing-name", name,
             "--expected-version", "1", "--remove-thing-type",
             message=f"The version for thing {name} does not match the expected version")
    aws.ok("update-thing", "--thing-name", name, "--expected-version", "2",
           "--remove-thing-type")
    described = aws.ok("describe-thing", "--thing-name", name)
    assert described["attributes"] == {"serial": "2", "site": "lab"}
    assert described["version"] == 3
    assert "thingTypeName" not in described
    aws.ok("update-thing", "--thing-name", name, "--attribute-payload",
           '{"attributes": {"only": "this"}}')  # merge false: replaces
    assert aws.ok("describe-thing", "--thing-name", name)["attributes"] == {"only": "this"}

    # A device: certificate + policy + thing attachment, then it publishes through the broker.
    dev = new_device(aws, tmp_path, name=name)
    policy = unique("allow-all")
    aws.ok("create-policy", "--policy-name", policy, "--policy-document", ALLOW_ALL_POLICY)
    aws.ok("attach-policy", "--policy-name", policy, "--target", dev.arn)
    assert aws.ok("attach-thing-principal", "--thing-name", name, "--principal", dev.arn) == {}
    aws.ok("attach-thing-principal", "--thing-name", name, "--principal", dev.arn)  # idempotent
    assert aws.ok("list-thing-principals", "--thing-name", name) == {"principals": [dev.arn]}
    assert aws.ok("list-principal-things", "--principal", dev.arn) == {"things": [name]}
    assert_publishes(server, dev, client_id=name)

    # §4.8: a thing with principals cannot be deleted, and the error is InvalidRequestException.
    aws.fail("InvalidRequestException", "DeleteThing", "delete-thing", "--thing-name", name,
             message=f"Cannot delete. Thing {name} is still attached to one or more principals")
    aws.ok("detach-thing-principal", "--thing-name", name, "--principal", dev.arn)
    assert aws.ok("list-thing-principals", "--thing-name", name) == {"principals": []}
    assert aws.ok("list-principal-things", "--principal", dev.arn) == {"things": []}
    aws.fail("VersionConflictException", "DeleteThing", "delete-thing", "--thing-name", name,
             "--expected-version", "1")
    aws.ok("delete-thing", "--thing-name", name, "--expected-version", "4")
    aws.fail("ResourceNotFoundException", "DescribeThing", "describe-thing", "--thing-name", name,
             message=f"Thing {name} not found")
    aws.ok("delete-thing", "--thing-name", name)  # deleting nothing succeeds (§4.8)
    assert_publishes(server, dev)  # the certificate itself is untouched


def test_thing_input_errors(aws):
    aws.fail("InvalidRequestException", "CreateThing", "create-thing", "--thing-name", "bad name!",
             message="thingName 'bad name!' is invalid")
    aws.fail("ResourceNotFoundException", "CreateThing", "create-thing", "--thing-name",
             unique("t"), "--thing-type-name", unique("no-such-type"),
             message="Thing type .* not found")
    aws.fail("InvalidRequestException", "CreateThing", "create-thing", "--thing-name",
             unique("t"), "--attribute-payload", '{"attributes": {"k": "no spaces"}}',
             message="The value of attribute 'k' is invalid")
    aws.fail("ResourceNotFoundException", "UpdateThing", "update-thing", "--thing-name",
             unique("missing"), "--remove-thing-type")
    aws.fail("InvalidRequestException", "UpdateThing", "update-thing", "--thing-name",
             unique("t"), "--thing-type-name", "x", "--remove-thing-type",
             message="thingTypeName and removeThingType cannot be used together")


def test_list_things_filters_and_pages(server, aws):
    tag = unique("batch").replace("-", "")
    names = sorted(unique(f"lt{i}") for i in range(5))
    ttype = unique("lt-type")
    aws.ok("create-thing-type", "--thing-type-name", ttype)
    for i, n in enumerate(names):
        extra = ["--thing-type-name", ttype] if i % 2 == 0 else []
        aws.ok("create-thing", "--thing-name", n, "--attribute-payload",
               f'{{"attributes": {{"batch": "{tag}", "index": "{i}"}}}}', *extra)

    listed = aws.ok("list-things", "--attribute-name", "batch", "--attribute-value", tag)
    assert [t["thingName"] for t in listed["things"]] == names
    first = listed["things"][0]
    assert first == {"thingName": names[0], "thingTypeName": ttype,
                     "thingArn": arn("thing", names[0]),
                     "attributes": {"batch": tag, "index": "0"}, "version": 1}
    assert [t["thingName"] for t in aws.ok("list-things", "--thing-type-name", ttype)["things"]] \
        == names[0::2]
    prefix = aws.ok("list-things", "--attribute-name", "batch", "--attribute-value", tag[:-2],
                    "--use-prefix-attribute-value")
    assert [t["thingName"] for t in prefix["things"]] == names

    # The CLI follows nextToken by itself: pages of 2 still give every thing, in order.
    paged = aws.ok("list-things", "--attribute-name", "batch", "--attribute-value", tag,
                   "--page-size", "2")
    assert [t["thingName"] for t in paged["things"]] == names

    # The wire: maxResults + nextToken.
    iot = boto3_client(server)
    page = iot.list_things(attributeName="batch", attributeValue=tag, maxResults=2)
    assert [t["thingName"] for t in page["things"]] == names[:2]
    seen = [t["thingName"] for t in page["things"]]
    while "nextToken" in page:
        page = iot.list_things(attributeName="batch", attributeValue=tag, maxResults=2,
                               nextToken=page["nextToken"])
        seen += [t["thingName"] for t in page["things"]]
    assert seen == names
    assert len(page["things"]) == 1  # five things: 2 + 2 + 1, and no empty page after

    with pytest.raises(iot.exceptions.InvalidRequestException, match="nextToken .* is invalid"):
        iot.list_things(nextToken="not base64!")
    status, headers, body = raw_request(server, "GET", "/things?maxResults=0")
    assert status == 400 and headers["x-amzn-errortype"] == "InvalidRequestException"
    assert b"maxResults must be an integer from 1 to 250" in body


def test_thing_types(aws):
    ttype = unique("type")
    created = aws.ok("create-thing-type", "--thing-type-name", ttype, "--thing-type-properties",
                     '{"thingTypeDescription": "a sensor", '
                     '"searchableAttributes": ["serial", "model"]}')
    assert set(created) == {"thingTypeName", "thingTypeArn", "thingTypeId"}
    assert created["thingTypeArn"] == arn("thingtype", ttype) and UUID.match(created["thingTypeId"])
    aws.fail("ResourceAlreadyExistsException", "CreateThingType", "create-thing-type",
             "--thing-type-name", ttype, message=f"Thing type {ttype} already exists")

    described = aws.ok("describe-thing-type", "--thing-type-name", ttype)
    assert described["thingTypeName"] == ttype and described["thingTypeId"] == \
        created["thingTypeId"]
    assert described["thingTypeProperties"] == {"thingTypeDescription": "a sensor",
                                                "searchableAttributes": ["serial", "model"]}
    meta = described["thingTypeMetadata"]
    assert meta["deprecated"] is False and "creationDate" in meta
    listed = aws.ok("list-thing-types", "--thing-type-name", ttype)["thingTypes"]
    assert len(listed) == 1 and listed[0]["thingTypeArn"] == created["thingTypeArn"]

    thing = unique("typed")
    aws.ok("create-thing", "--thing-name", thing, "--thing-type-name", ttype)
    aws.fail("InvalidRequestException", "DeleteThingType", "delete-thing-type",
             "--thing-type-name", ttype, message=f"Thing type {ttype} must be deprecated")
    aws.ok("deprecate-thing-type", "--thing-type-name", ttype)
    meta = aws.ok("describe-thing-type", "--thing-type-name", ttype)["thingTypeMetadata"]
    assert meta["deprecated"] is True and "deprecationDate" in meta
    aws.fail("InvalidRequestException", "CreateThing", "create-thing", "--thing-name",
             unique("t"), "--thing-type-name", ttype,
             message=f"Can not create or update a thing with deprecated thing type {ttype}")
    aws.fail("InvalidRequestException", "DeleteThingType", "delete-thing-type",
             "--thing-type-name", ttype, message="still associated with one or more things")
    aws.ok("update-thing", "--thing-name", thing, "--remove-thing-type")
    aws.ok("deprecate-thing-type", "--thing-type-name", ttype, "--undo-deprecate")
    assert aws.ok("describe-thing-type", "--thing-type-name", ttype)["thingTypeMetadata"][
        "deprecated"] is False
    aws.ok("deprecate-thing-type", "--thing-type-name", ttype)
    aws.ok("delete-thing-type", "--thing-type-name", ttype)
    aws.fail("ResourceNotFoundException", "DescribeThingType", "describe-thing-type",
             "--thing-type-name", ttype, message=f"Thing type {ttype} not found")
    aws.fail("ResourceNotFoundException", "DeprecateThingType", "deprecate-thing-type",
             "--thing-type-name", ttype)


def test_thing_groups(server, aws):
    root, child, leaf = unique("root"), unique("child"), unique("leaf")
    created = aws.ok("create-thing-group", "--thing-group-name", root, "--thing-group-properties",
                     '{"thingGroupDescription": "top", '
                     '"attributePayload": {"attributes": {"floor": "1"}}}')
    assert set(created) == {"thingGroupName", "thingGroupArn", "thingGroupId"}
    assert created["thingGroupArn"] == arn("thinggroup", root)
    aws.ok("create-thing-group", "--thing-group-name", child, "--parent-group-name", root)
    aws.ok("create-thing-group", "--thing-group-name", leaf, "--parent-group-name", child)
    aws.fail("ResourceAlreadyExistsException", "CreateThingGroup", "create-thing-group",
             "--thing-group-name", root)
    aws.fail("InvalidRequestException", "CreateThingGroup", "create-thing-group",
             "--thing-group-name", unique("orphan"), "--parent-group-name", unique("none"),
             message="Parent thing group .* not found")

    d = aws.ok("describe-thing-group", "--thing-group-name", leaf)
    assert d["thingGroupName"] == leaf and d["version"] == 1
    assert d["thingGroupMetadata"]["parentGroupName"] == child
    assert d["thingGroupMetadata"]["rootToParentThingGroups"] == [
        {"groupName": root, "groupArn": arn("thinggroup", root)},
        {"groupName": child, "groupArn": arn("thinggroup", child)}]
    d = aws.ok("describe-thing-group", "--thing-group-name", root)
    assert d["thingGroupProperties"] == {"thingGroupDescription": "top",
                                         "attributePayload": {"attributes": {"floor": "1"}}}

    kids = aws.ok("list-thing-groups", "--parent-group", root)["thingGroups"]
    assert kids == [{"groupName": child, "groupArn": arn("thinggroup", child)}]
    tree = aws.ok("list-thing-groups", "--parent-group", root, "--recursive")["thingGroups"]
    assert sorted(g["groupName"] for g in tree) == sorted([child, leaf])
    aws.fail("ResourceNotFoundException", "ListThingGroups", "list-thing-groups",
             "--parent-group", unique("nope"))

    a, b = unique("member"), unique("member")
    for t in (a, b):
        aws.ok("create-thing", "--thing-name", t)
    aws.ok("add-thing-to-thing-group", "--thing-group-name", root, "--thing-name", a)
    aws.ok("add-thing-to-thing-group", "--thing-group-arn", arn("thinggroup", leaf),
           "--thing-arn", arn("thing", b))
    assert aws.ok("list-things-in-thing-group", "--thing-group-name", root) == {"things": [a]}
    assert sorted(aws.ok("list-things-in-thing-group", "--thing-group-name", root,
                         "--recursive")["things"]) == sorted([a, b])
    assert aws.ok("list-thing-groups-for-thing", "--thing-name", b)["thingGroups"] == [
        {"groupName": leaf, "groupArn": arn("thinggroup", leaf)}]
    aws.fail("ResourceNotFoundException", "AddThingToThingGroup", "add-thing-to-thing-group",
             "--thing-group-name", root, "--thing-name", unique("ghost"))
    aws.fail("ResourceNotFoundException", "ListThingsInThingGroup", "list-things-in-thing-group",
             "--thing-group-name", unique("ghost"))
    aws.ok("remove-thing-from-thing-group", "--thing-group-name", leaf, "--thing-name", b)
    assert aws.ok("list-thing-groups-for-thing", "--thing-name", b) == {"thingGroups": []}

    aws.fail("InvalidRequestException", "DeleteThingGroup", "delete-thing-group",
             "--thing-group-name", child, message="it has child thing groups")
    aws.fail("VersionConflictException", "DeleteThingGroup", "delete-thing-group",
             "--thing-group-name", leaf, "--expected-version", "7")
    aws.ok("delete-thing-group", "--thing-group-name", leaf, "--expected-version", "1")
    aws.ok("delete-thing-group", "--thing-group-name", child)
    aws.ok("delete-thing-group", "--thing-group-name", root)
    aws.ok("delete-thing-group", "--thing-group-name", root)  # nothing to delete: success
    assert aws.ok("list-thing-groups-for-thing", "--thing-name", a) == {"thingGroups": []}
    aws.fail("ResourceNotFoundException", "DescribeThingGroup", "describe-thing-group",
             "--thing-group-name", root, message=f"Thing group {root} not found")


def test_thing_principal_errors(aws, tmp_path):
    thing = unique("p")
    aws.ok("create-thing", "--thing-name", thing)
    aws.fail("InvalidRequestException", "AttachThingPrincipal", "attach-thing-principal",
             "--thing-name", thing, "--principal", "arn:aws:iam::123456789012:user/someone",
             message="is not a certificate ARN")
    missing = arn("cert", "ab" * 32)
    aws.fail("ResourceNotFoundException", "AttachThingPrincipal", "attach-thing-principal",
             "--thing-name", thing, "--principal", missing, message=f"Certificate {'ab' * 32}")
    aws.fail("ResourceNotFoundException", "ListPrincipalThings", "list-principal-things",
             "--principal", missing)
    dev = new_device(aws, tmp_path, active=False)
    aws.fail("ResourceNotFoundException", "AttachThingPrincipal", "attach-thing-principal",
             "--thing-name", unique("nothing"), "--principal", dev.arn, message="Thing .* not found")
    aws.fail("ResourceNotFoundException", "ListThingPrincipals", "list-thing-principals",
             "--thing-name", unique("nothing"))
    # A certificate id in the ARN is matched whatever its case.
    aws.ok("attach-thing-principal", "--thing-name", thing, "--principal",
           cert_arn(dev.id.upper()))
    assert aws.ok("list-thing-principals", "--thing-name", thing) == {"principals": [dev.arn]}
