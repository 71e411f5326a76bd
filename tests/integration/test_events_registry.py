"""Registry events on the wire (shared/spec/provisioning.md §5.3): with an event type enabled by
UpdateEventConfigurations, each committed change to a thing, thing type, thing group, group
membership, group hierarchy or thing type association is published on its $aws/events/... topic with AWS's fields
in AWS's order; every type is disabled by default and a disabled type publishes nothing. Changes
come from the control plane (/usr/bin/aws, boto3) and from fleet provisioning over MQTT."""

import json

import pytest

from broker_support import UUID, Clients, Watcher, _ordered, now_ms, open_device
from cp_support import Aws, arn, boto3_client
from iotmock_support import (ACCOUNT, FLEET_DEFAULT, REGISTER_ACCEPTED_FIELDS, create_keys,
                             expect_accepted, register_thing, unique)

pytestmark = pytest.mark.usefixtures("broker_still_serves")

REGISTRY_TYPES = ["THING", "THING_TYPE", "THING_GROUP", "THING_GROUP_MEMBERSHIP",
                  "THING_TYPE_ASSOCIATION", "THING_GROUP_HIERARCHY"]

# Field order of AWS's documented examples (§5.3).
THING_FIELDS = ["eventType", "eventId", "timestamp", "operation", "accountId", "thingId",
                "thingName", "versionNumber", "thingTypeName", "attributes"]
THING_TYPE_FIELDS = ["eventType", "eventId", "timestamp", "operation", "accountId", "thingTypeId",
                     "thingTypeName", "isDeprecated", "deprecationDate", "searchableAttributes",
                     "propagatingAttributes", "description"]
THING_GROUP_FIELDS = ["eventType", "eventId", "timestamp", "operation", "accountId",
                      "thingGroupId", "thingGroupName", "versionNumber", "parentGroupName",
                      "parentGroupId", "description", "rootToParentThingGroups", "attributes",
                      "dynamicGroupMappingId"]
MEMBERSHIP_FIELDS = ["eventType", "eventId", "timestamp", "operation", "accountId", "groupArn",
                     "groupId", "thingArn", "thingId", "membershipId"]
HIERARCHY_FIELDS = ["eventType", "eventId", "timestamp", "operation", "accountId", "thingGroupId",
                    "thingGroupName", "childGroupId", "childGroupName"]
ASSOCIATION_FIELDS = ["eventId", "eventType", "operation", "thingId", "thingName",
                      "thingTypeName", "timestamp"]

QUIET_S = 1.5  # how long "nothing is published" is watched: many ticks of 100 ms


@pytest.fixture(scope="module")
def device(server, tmp_path_factory):
    return open_device(server, tmp_path_factory.mktemp("regev"))


@pytest.fixture(scope="module")
def iot(server):
    return boto3_client(server)


CLIENT_POOL = Clients


@pytest.fixture
def watcher(server, clients, device):
    return Watcher(clients, server, device, filters=("$aws/events/#",))


@pytest.fixture
def enable(iot):
    """enable(*types) turns registry event types on; every registry type is off again after."""
    def on(*types):
        iot.update_event_configurations(
            eventConfigurations={t: {"Enabled": True} for t in types})
    yield on
    iot.update_event_configurations(
        eventConfigurations={t: {"Enabled": False} for t in REGISTRY_TYPES})


def expect_event(watcher, topic: str, fields: list, since: int, timeout: float = 5.0) -> dict:
    m = watcher.client.wait_message(topic, timeout)
    assert m is not None, (f"no event on {topic} within {timeout} s; got "
                           f"{[x.topic for x in watcher.client.messages()]}")
    assert m.qos == 1 and not m.retain, f"event QoS {m.qos} retain {m.retain}"
    ev = json.loads(m.payload, object_pairs_hook=_ordered)
    assert ev.keys_in_order == fields, f"fields {ev.keys_in_order}, expected {fields}"
    assert UUID.match(ev["eventId"]), ev["eventId"]
    ts = ev["timestamp"]
    assert type(ts) is int and since - 1000 <= ts <= now_ms() + 1000, f"timestamp {ts!r}"
    if "accountId" in fields:
        assert ev["accountId"] == ACCOUNT
    return ev


def registry_topics(watcher) -> list:
    """The registry event topics received so far (not the lifecycle ones)."""
    return [m.topic for m in watcher.client.messages()
            if not m.topic.startswith(("$aws/events/presence/", "$aws/events/subscriptions/"))]


def test_all_disabled_by_default_and_disabled_types_publish_nothing(iot, watcher, enable):
    configs = iot.describe_event_configurations()["eventConfigurations"]
    assert all(configs[t] == {"Enabled": False} for t in REGISTRY_TYPES), configs
    name, group = unique("quiet"), unique("qg")
    since = now_ms()
    iot.create_thing(thingName=name, attributePayload={"attributes": {"a": "1"}})
    iot.update_thing(thingName=name, attributePayload={"attributes": {"a": "2"}})
    iot.create_thing_group(thingGroupName=group)
    iot.add_thing_to_thing_group(thingGroupName=group, thingName=name)
    assert watcher.client.wait_message(f"$aws/events/thing/{name}/created", QUIET_S) is None
    assert registry_topics(watcher) == []
    # Only the enabled type is published: THING_GROUP on, THING and membership still off.
    enable("THING_GROUP")
    other = unique("qg")
    iot.delete_thing(thingName=name)
    iot.create_thing_group(thingGroupName=other)
    expect_event(watcher, f"$aws/events/thingGroup/{other}/created", THING_GROUP_FIELDS, since)
    assert watcher.client.wait_message(f"$aws/events/thing/{name}/deleted", QUIET_S) is None
    assert registry_topics(watcher) == [f"$aws/events/thingGroup/{other}/created"]


def test_thing_created_updated_deleted_with_the_cli(server, watcher, enable):
    aws = Aws(server)
    aws.ok("update-event-configurations", "--event-configurations",
           '{"THING": {"Enabled": true}}')
    name = unique("evthing")
    since = now_ms()
    created = aws.ok("create-thing", "--thing-name", name, "--attribute-payload",
                     '{"attributes": {"color": "red", "size": "2"}}')
    ev = expect_event(watcher, f"$aws/events/thing/{name}/created", THING_FIELDS, since)
    assert ev == {"eventType": "THING_EVENT", "eventId": ev["eventId"], "timestamp": ev["timestamp"],
                  "operation": "CREATED", "accountId": ACCOUNT, "thingId": created["thingId"],
                  "thingName": name, "versionNumber": 1, "thingTypeName": None,
                  "attributes": {"color": "red", "size": "2"}}
    first_id = ev["eventId"]

    aws.ok("update-thing", "--thing-name", name, "--attribute-payload",
           '{"attributes": {"size": "3"}, "merge": true}')
    ev = expect_event(watcher, f"$aws/events/thing/{name}/updated", THING_FIELDS, since)
    assert (ev["operation"], ev["thingId"], ev["versionNumber"], ev["attributes"]) == (
        "UPDATED", created["thingId"], 2, {"color": "red", "size": "3"})
    assert ev["eventId"] != first_id

    # A refused call changes nothing and publishes nothing.
    aws.fail("ResourceNotFoundException", "UpdateThing", "update-thing", "--thing-name", name,
             "--thing-type-name", unique("nosuchtype"))
    aws.ok("delete-thing", "--thing-name", name)
    ev = expect_event(watcher, f"$aws/events/thing/{name}/deleted", THING_FIELDS, since)
    assert (ev["operation"], ev["thingId"], ev["thingName"], ev["versionNumber"]) == (
        "DELETED", created["thingId"], name, 2)
    assert registry_topics(watcher) == [f"$aws/events/thing/{name}/{op}"
                                        for op in ("created", "updated", "deleted")]


def test_fleet_provisioning_publishes_thing_created(mqtt, watcher, enable):
    enable("THING")
    claim = mqtt.claim()
    keys = create_keys(claim)
    serial = unique("evsn")
    since = now_ms()
    which, body = register_thing(claim, FLEET_DEFAULT, keys["certificateOwnershipToken"],
                                 {"SerialNumber": serial})
    expect_accepted(which, body, REGISTER_ACCEPTED_FIELDS)
    ev = expect_event(watcher, f"$aws/events/thing/{serial}/created", THING_FIELDS, since)
    assert (ev["operation"], ev["thingName"], ev["versionNumber"], ev["thingTypeName"],
            ev["attributes"]) == ("CREATED", serial, 1, None, {"serialNumber": serial})
    assert UUID.match(ev["thingId"]), ev["thingId"]


def test_thing_type_created_deprecated_deleted(iot, watcher, enable):
    enable("THING_TYPE")
    name = unique("evtype")
    since = now_ms()
    created = iot.create_thing_type(thingTypeName=name, thingTypeProperties={
        "thingTypeDescription": "lamps", "searchableAttributes": ["watts"]})
    ev = expect_event(watcher, f"$aws/events/thingType/{name}/created", THING_TYPE_FIELDS, since)
    assert ev == {"eventType": "THING_TYPE_EVENT", "eventId": ev["eventId"],
                  "timestamp": ev["timestamp"], "operation": "CREATED", "accountId": ACCOUNT,
                  "thingTypeId": created["thingTypeId"], "thingTypeName": name,
                  "isDeprecated": False, "deprecationDate": None,
                  "searchableAttributes": ["watts"], "propagatingAttributes": [],
                  "description": "lamps"}
    iot.deprecate_thing_type(thingTypeName=name)
    ev = expect_event(watcher, f"$aws/events/thingType/{name}/updated", THING_TYPE_FIELDS, since)
    assert ev["isDeprecated"] is True and ev["operation"] == "UPDATED"
    assert type(ev["deprecationDate"]) is int and abs(ev["deprecationDate"] - now_ms()) < 60000
    iot.delete_thing_type(thingTypeName=name)
    ev = expect_event(watcher, f"$aws/events/thingType/{name}/deleted", THING_TYPE_FIELDS, since)
    assert (ev["operation"], ev["thingTypeId"]) == ("DELETED", created["thingTypeId"])


def test_thing_group_created_with_its_ancestors_and_deleted(iot, watcher, enable):
    enable("THING_GROUP")
    root, child = unique("evroot"), unique("evchild")
    since = now_ms()
    root_id = iot.create_thing_group(thingGroupName=root)["thingGroupId"]
    child_id = iot.create_thing_group(
        thingGroupName=child, parentGroupName=root,
        thingGroupProperties={"thingGroupDescription": "floor 2",
                              "attributePayload": {"attributes": {"site": "b"}}})["thingGroupId"]
    ev = expect_event(watcher, f"$aws/events/thingGroup/{root}/created", THING_GROUP_FIELDS, since)
    assert (ev["thingGroupId"], ev["parentGroupName"], ev["rootToParentThingGroups"]) == (
        root_id, None, [])
    ev = expect_event(watcher, f"$aws/events/thingGroup/{child}/created", THING_GROUP_FIELDS,
                      since)
    assert ev == {"eventType": "THING_GROUP_EVENT", "eventId": ev["eventId"],
                  "timestamp": ev["timestamp"], "operation": "CREATED", "accountId": ACCOUNT,
                  "thingGroupId": child_id, "thingGroupName": child, "versionNumber": 1,
                  "parentGroupName": root, "parentGroupId": root_id, "description": "floor 2",
                  "rootToParentThingGroups": [{"groupArn": arn("thinggroup", root),
                                               "groupId": root_id}],
                  "attributes": {"site": "b"}, "dynamicGroupMappingId": None}
    iot.delete_thing_group(thingGroupName=child)
    ev = expect_event(watcher, f"$aws/events/thingGroup/{child}/deleted", THING_GROUP_FIELDS,
                      since)
    assert (ev["operation"], ev["thingGroupId"], ev["parentGroupName"]) == (
        "DELETED", child_id, root)


def test_thing_added_to_and_removed_from_a_group(iot, watcher, enable):
    enable("THING_GROUP_MEMBERSHIP")
    group, thing = unique("evmg"), unique("evmt")
    group_id = iot.create_thing_group(thingGroupName=group)["thingGroupId"]
    thing_id = iot.create_thing(thingName=thing)["thingId"]
    since = now_ms()
    iot.add_thing_to_thing_group(thingGroupName=group, thingName=thing)
    iot.add_thing_to_thing_group(thingGroupName=group, thingName=thing)  # already: no event
    topic = f"$aws/events/thingGroupMembership/thingGroup/{group}/thing/{thing}"
    added = expect_event(watcher, topic + "/added", MEMBERSHIP_FIELDS, since)
    assert added == {"eventType": "THING_GROUP_MEMBERSHIP_EVENT", "eventId": added["eventId"],
                     "timestamp": added["timestamp"], "operation": "ADDED", "accountId": ACCOUNT,
                     "groupArn": arn("thinggroup", group), "groupId": group_id,
                     "thingArn": arn("thing", thing), "thingId": thing_id,
                     "membershipId": added["membershipId"]}
    assert UUID.match(added["membershipId"]), added["membershipId"]
    iot.remove_thing_from_thing_group(thingGroupName=group, thingName=thing)
    removed = expect_event(watcher, topic + "/removed", MEMBERSHIP_FIELDS, since)
    assert removed["operation"] == "REMOVED"
    assert removed["membershipId"] == added["membershipId"]
    assert registry_topics(watcher) == [topic + "/added", topic + "/removed"]


def test_thing_type_associated_and_disassociated(iot, watcher, enable):
    enable("THING_TYPE_ASSOCIATION")
    ttype, thing = unique("evat"), unique("evath")
    iot.create_thing_type(thingTypeName=ttype)
    since = now_ms()
    thing_id = iot.create_thing(thingName=thing, thingTypeName=ttype)["thingId"]
    topic = f"$aws/events/thingTypeAssociation/thing/{thing}/thingType/{ttype}"
    ev = expect_event(watcher, topic + "/added", ASSOCIATION_FIELDS, since)
    assert ev == {"eventId": ev["eventId"], "eventType": "THING_TYPE_ASSOCIATION_EVENT",
                  "operation": "ADDED", "thingId": thing_id, "thingName": thing,
                  "thingTypeName": ttype, "timestamp": ev["timestamp"]}
    iot.update_thing(thingName=thing, removeThingType=True)
    ev = expect_event(watcher, topic + "/removed", ASSOCIATION_FIELDS, since)
    assert (ev["operation"], ev["thingId"]) == ("REMOVED", thing_id)


def test_child_group_added_to_and_removed_from_its_parent(iot, watcher, enable):
    enable("THING_GROUP_HIERARCHY")
    parent, child = unique("evpar"), unique("evkid")
    since = now_ms()
    parent_id = iot.create_thing_group(thingGroupName=parent)["thingGroupId"]
    child_id = iot.create_thing_group(thingGroupName=child, parentGroupName=parent)["thingGroupId"]
    topic = f"$aws/events/thingGroupHierarchy/thingGroup/{parent}/childThingGroup/{child}"
    ev = expect_event(watcher, topic + "/added", HIERARCHY_FIELDS, since)
    assert ev == {"eventType": "THING_GROUP_HIERARCHY_EVENT", "eventId": ev["eventId"],
                  "timestamp": ev["timestamp"], "operation": "ADDED", "accountId": ACCOUNT,
                  "thingGroupId": parent_id, "thingGroupName": parent, "childGroupId": child_id,
                  "childGroupName": child}
    iot.delete_thing_group(thingGroupName=child)
    ev = expect_event(watcher, topic + "/removed", HIERARCHY_FIELDS, since)
    assert (ev["operation"], ev["thingGroupId"], ev["childGroupId"]) == (
        "REMOVED", parent_id, child_id)
    iot.delete_thing_group(thingGroupName=parent)  # a root group: no hierarchy event
    # Events leave in commit order: once a later one arrived, an event of the deletion would have.
    marker, kid = unique("evpar"), unique("evkid")
    iot.create_thing_group(thingGroupName=marker)
    iot.create_thing_group(thingGroupName=kid, parentGroupName=marker)
    later = f"$aws/events/thingGroupHierarchy/thingGroup/{marker}/childThingGroup/{kid}/added"
    expect_event(watcher, later, HIERARCHY_FIELDS, since)
    assert registry_topics(watcher) == [topic + "/added", topic + "/removed", later]
