"""Control plane: the router (methods, paths, prefixes, percent-encoding, bodies, signatures,
AWS's error shape), DescribeEndpoint, event configurations, the emulator's own routes (health,
root CA, reset), boto3's view of errors and timestamps, and concurrent writes
(shared/spec/provisioning.md §6.1-§6.5, spec/clients.md §3)."""

import datetime
import json
import threading

import pytest

from cp_support import (ALLOW_ALL_POLICY, PUB, Aws, arn, assert_cannot_publish, assert_publishes,
                        boto3_client, new_device, raw_request, sigv4_header)
from iotmock_support import FIXTURES, create_keys, unique

pytestmark = pytest.mark.usefixtures("broker_still_serves")

EVENT_TYPES = ["THING", "THING_GROUP", "THING_TYPE", "THING_GROUP_MEMBERSHIP",
               "THING_GROUP_HIERARCHY", "THING_TYPE_ASSOCIATION", "JOB", "JOB_EXECUTION",
               "POLICY", "CERTIFICATE", "CA_CERTIFICATE"]


@pytest.fixture
def aws(server):
    return Aws(server)


def error_of(status, headers, body):
    assert headers.get("content-type") == "application/json"
    assert headers.get("x-amzn-requestid")
    return status, headers.get("x-amzn-errortype"), json.loads(body)["message"]


def test_aws_error_shape_for_unknown_routes_and_bad_bodies(server):
    status, etype, message = error_of(*raw_request(server, "GET", "/no/such/operation"))
    assert (status, etype) == (404, "UnknownOperationException")
    assert "iotmock implements no AWS IoT operation at GET /no/such/operation" in message
    status, etype, message = error_of(*raw_request(server, "DELETE", "/things"))
    assert (status, etype) == (405, "MethodNotAllowedException")
    assert message == ("iotmock has no DELETE operation at /things; it has POST (RegisterThing), "
                       "GET (ListThings)")

    name = unique("body")
    status, etype, message = error_of(*raw_request(server, "POST", f"/things/{name}",
                                                   b'{"thingTypeName": ',
                                                   {"Content-Type": "application/json"}))
    assert (status, etype, message) == (400, "InvalidRequestException",
                                        "The request body is not valid JSON")
    status, etype, message = error_of(*raw_request(server, "POST", f"/things/{name}",
                                                   b'{"thingTypeName": "x"} trailing'))
    assert (status, etype, message) == (400, "InvalidRequestException",
                                        "The request body is not valid JSON")
    status, etype, message = error_of(*raw_request(server, "POST", f"/things/{name}", b"[1, 2]"))
    assert (status, etype) == (400, "InvalidRequestException") and "JSON object" in message
    status, etype, _ = error_of(*raw_request(server, "POST", f"/things/{name}",
                                             b'{"attributePayload": "no"}'))
    assert (status, etype) == (400, "InvalidRequestException")

    big = b'{"x": "' + b"a" * (1024 * 1024) + b'"}'
    status, etype, message = error_of(*raw_request(server, "POST", f"/things/{name}", big))
    assert (status, etype) == (413, "InvalidRequestException") and "larger than" in message
    chunks = iter([big[i:i + 65536] for i in range(0, len(big), 65536)])
    status, etype, _ = error_of(*raw_request(server, "POST", f"/things/{name}", chunks,
                                             {"Transfer-Encoding": "chunked"}))
    assert (status, etype) == (413, "InvalidRequestException")
    status, etype, _ = error_of(*raw_request(server, "GET", "/things/bad%zzescape"))
    assert (status, etype) == (400, "InvalidRequestException")

    # Empty bodies and "{}" are the same (§6.1), and nothing above created the thing.
    status, _, body = raw_request(server, "POST", f"/things/{name}", b"")
    assert status == 200 and json.loads(body)["thingName"] == name
    status, _, _ = raw_request(server, "GET", f"/things/{name}")
    assert status == 200


def test_signatures_are_accepted_for_both_signing_names_only(server):
    for service in ("iot", "execute-api"):
        status, _, body = raw_request(server, "GET", "/things?maxResults=1", None,
                                      sigv4_header(service))
        assert status == 200 and "things" in json.loads(body), service
    status, etype, message = error_of(*raw_request(server, "GET", "/things", None,
                                                   sigv4_header("s3")))
    assert (status, etype) == (403, "InvalidSignatureException") and "'s3'" in message


def test_paths_prefix_and_percent_encoding(server, aws, tmp_path):
    # A path in --endpoint-url is kept by the CLI as a prefix (spec/clients.md §3).
    prefixed = Aws(server, "/iotapi/v1")
    name = unique("pre") + ":x_y"  # ':' travels percent-encoded in the path
    created = prefixed.ok("create-thing", "--thing-name", name)
    assert created["thingArn"] == arn("thing", name)
    assert aws.ok("describe-thing", "--thing-name", name)["thingName"] == name
    status, _, body = raw_request(server, "GET", "/things/" + name.replace(":", "%3A"))
    assert status == 200 and json.loads(body)["thingName"] == name
    # A certificate ARN in the path: ':' and '/' encoded (ListAttachedPolicies).
    dev = new_device(aws, tmp_path, active=False)
    policy = unique("enc")
    aws.ok("create-policy", "--policy-name", policy, "--policy-document", ALLOW_ALL_POLICY)
    aws.ok("attach-policy", "--policy-name", policy, "--target", dev.arn)
    path = "/attached-policies/" + dev.arn.replace(":", "%3A").replace("/", "%2F")
    status, _, body = raw_request(server, "POST", path)
    assert status == 200 and json.loads(body)["policies"][0]["policyName"] == policy
    assert prefixed.ok("list-attached-policies", "--target", dev.arn)["policies"][0][
        "policyName"] == policy


def test_describe_endpoint(aws):
    for endpoint_type in ("iot:Data", "iot:Data-ATS", "iot:CredentialProvider", "iot:Jobs"):
        assert aws.ok("describe-endpoint", "--endpoint-type", endpoint_type) == {
            "endpointAddress": "localhost"}
    assert aws.ok("describe-endpoint") == {"endpointAddress": "localhost"}
    aws.fail("InvalidRequestException", "DescribeEndpoint", "describe-endpoint",
             "--endpoint-type", "iot:Bogus", message="Endpoint type iot:Bogus is not valid")


def test_event_configurations(server, aws):
    before = aws.ok("describe-event-configurations")["eventConfigurations"]
    assert sorted(before) == sorted(EVENT_TYPES)
    assert aws.ok("update-event-configurations", "--event-configurations",
                  '{"THING": {"Enabled": true}, "POLICY": {"Enabled": true}}') == {}
    after = aws.ok("describe-event-configurations")
    assert after["eventConfigurations"]["THING"] == {"Enabled": True}
    assert after["eventConfigurations"]["POLICY"] == {"Enabled": True}
    assert after["eventConfigurations"]["JOB"] == {"Enabled": False}
    assert {"creationDate", "lastModifiedDate"} <= set(after)
    aws.ok("update-event-configurations", "--event-configurations",
           '{"THING": {"Enabled": false}}')
    assert aws.ok("describe-event-configurations")["eventConfigurations"]["THING"] == {
        "Enabled": False}
    aws.fail("InvalidRequestException", "UpdateEventConfigurations", "update-event-configurations",
             "--event-configurations", '{"NOT_A_TYPE": {"Enabled": true}}',
             message="Unknown event type NOT_A_TYPE")
    # The invalid request changed nothing.
    assert aws.ok("describe-event-configurations")["eventConfigurations"]["POLICY"] == {
        "Enabled": True}


def test_boto3_sees_aws_errors_and_timestamps(server):
    iot = boto3_client(server)
    with pytest.raises(iot.exceptions.ResourceNotFoundException) as e:
        iot.describe_thing(thingName=unique("missing"))
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    assert e.value.response["Error"]["Code"] == "ResourceNotFoundException"
    name = unique("exists")
    iot.create_thing(thingName=name)
    with pytest.raises(iot.exceptions.ResourceAlreadyExistsException) as e:
        iot.create_thing(thingName=name, attributePayload={"attributes": {"a": "b"}})
    assert e.value.response["resourceId"]  # the exception's own members (§6.2)
    assert e.value.response["resourceArn"] == arn("thing", name)
    with pytest.raises(iot.exceptions.CertificateStateException):
        keys = iot.create_keys_and_certificate(setAsActive=True)
        iot.delete_certificate(certificateId=keys["certificateId"])
    policy = iot.get_policy(policyName="iotmock-device-policy")
    assert isinstance(policy["creationDate"], datetime.datetime)  # epoch seconds on the wire


def test_health_and_root_ca(server):
    status, headers, body = raw_request(server, "GET", "/_iotmock/health")
    assert status == 200 and json.loads(body) == {"status": "ok"}
    status, headers, body = raw_request(server, "GET", "/_iotmock/root-ca.pem")
    assert status == 200 and headers["content-type"] == "application/x-pem-file"
    assert body.decode() == server.root_ca.read_text()


@pytest.mark.skipif(PUB is None, reason="mosquitto_pub not installed")
def test_reset_and_host_on_a_second_server(server_factory, mqtt, tmp_path):
    srv = server_factory("--host", "iot.example.test", name="reset")
    aws = Aws(srv)
    assert aws.ok("describe-endpoint", "--endpoint-type", "iot:Data-ATS") == {
        "endpointAddress": "iot.example.test"}
    shipped = sorted(json.loads(f.read_text())["policyName"]
                     for f in (FIXTURES / "policies").glob("*.json"))
    certs = aws.ok("list-certificates")["certificates"]

    thing = unique("gone")
    aws.ok("create-thing", "--thing-name", thing)
    dev = new_device(aws, tmp_path, name=thing)
    aws.ok("create-policy", "--policy-name", "allow-all", "--policy-document", ALLOW_ALL_POLICY)
    aws.ok("attach-policy", "--policy-name", "allow-all", "--target", dev.arn)
    aws.ok("update-event-configurations", "--event-configurations", '{"THING": {"Enabled": true}}')
    assert_publishes(srv, dev)

    status, _, body = raw_request(srv, "POST", "/_iotmock/reset")
    assert status == 200 and json.loads(body) == {"status": "reset"}
    assert aws.ok("list-things") == {"things": []}
    assert [p["policyName"] for p in aws.ok("list-policies")["policies"]] == shipped
    assert [c["certificateId"] for c in aws.ok("list-certificates")["certificates"]] == \
        [c["certificateId"] for c in certs]  # the seeded claim certificate is back
    assert aws.ok("describe-event-configurations")["eventConfigurations"]["THING"] == {
        "Enabled": False}
    assert_cannot_publish(srv, dev)
    client = mqtt.claim(srv=srv)  # the claim certificate still works: provisioning runs
    assert create_keys(client)["certificateId"]


def test_concurrent_writes_are_all_kept(server, aws):
    """Writers on several threads (HTTP) while a device provisions over MQTT: every write is
    there afterwards, whole."""
    tag = unique("conc").replace("-", "")
    errors = []

    def writer(n):
        try:
            iot = boto3_client(server)
            for i in range(8):
                name = f"{tag}-{n}-{i}"
                iot.create_thing(thingName=name,
                                 attributePayload={"attributes": {"batch": tag, "n": str(n)}})
                keys = iot.create_keys_and_certificate(setAsActive=True)
                iot.attach_thing_principal(thingName=name, principal=keys["certificateArn"])
                iot.update_thing(thingName=name,
                                 attributePayload={"attributes": {"i": str(i)}, "merge": True})
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors
    iot = boto3_client(server)
    things = iot.list_things(attributeName="batch", attributeValue=tag, maxResults=250)["things"]
    assert len(things) == 32
    for t in things:
        n, i = t["thingName"].split("-")[-2:]
        assert t["attributes"] == {"batch": tag, "n": n, "i": i} and t["version"] == 2
        assert len(iot.list_thing_principals(thingName=t["thingName"])["principals"]) == 1
