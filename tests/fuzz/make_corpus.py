#!/usr/bin/env python3
"""Writes the seed corpus of every fuzz target into tests/fuzz/corpus/<target>/ (docs/fuzzing.md).

The seeds are valid inputs taken from shared/spec/provisioning.md (§1.3-1.5 requests, §1.9 CBOR
vectors, §2.8 templates), the shipped fixtures (templates, policies, policy vectors) and CSRs made
with the openssl command, plus a few near misses. Run it again after changing a harness's input
format; it only adds and overwrites files named seed-*, so regression inputs (crash-*) stay.

Usage: tests/fuzz/make_corpus.py   (needs python3 and the openssl command; nothing else)
"""
import json
import os
import pathlib
import subprocess
import sys
import tempfile

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent.parent
FIXTURES = ROOT / "fixtures"
CORPUS = HERE / "corpus"

# Must match fleet_harness.h and fuzz_http.c.
TOKEN = b"@@@@iotmock-fuzz-certificate-ownership-token-placeholder@@@@@@@@"
CERT_ID = b"@@@@iotmock-fuzz-claim-certificate-id-placeholder@@@@@@@@@@@@@@@"
assert len(TOKEN) == 64 and len(CERT_ID) == 64
TOKEN_TEXT = TOKEN.decode()
TEMPLATES = ["fleet-default", "rich", "no-thing", "off", "jitp", "hooked", "broken", "missing"]


def write(target, name, data):
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    (d / f"seed-{name}").write_bytes(data)


def js(obj):
    return json.dumps(obj, separators=(",", ":")).encode()


# ---- CBOR, by hand: definite and indefinite forms, no dependency ------------------------------
def head(major, n):
    m = major << 5
    if n < 24:
        return bytes([m | n])
    for ai, size in ((24, 1), (25, 2), (26, 4), (27, 8)):
        if n < 1 << (8 * size):
            return bytes([m | ai]) + n.to_bytes(size, "big")
    raise ValueError(n)


def cbor(v):
    if isinstance(v, bool):
        return b"\xf5" if v else b"\xf4"
    if v is None:
        return b"\xf6"
    if isinstance(v, int):
        return head(0, v) if v >= 0 else head(1, -1 - v)
    if isinstance(v, float):
        import struct
        return b"\xfb" + struct.pack(">d", v)
    if isinstance(v, bytes):
        return head(2, len(v)) + v
    if isinstance(v, str):
        b = v.encode()
        return head(3, len(b)) + b
    if isinstance(v, list):
        return head(4, len(v)) + b"".join(cbor(x) for x in v)
    if isinstance(v, dict):
        return head(5, len(v)) + b"".join(cbor(k) + cbor(x) for k, x in v.items())
    raise TypeError(v)


def cbor_text_raw(b):
    """A text string whose bytes are B as they are (the token placeholder)."""
    return head(3, len(b)) + b


# ---- CSRs and certificates, made with openssl ------------------------------------------------
def openssl(*args, input=None):
    return subprocess.run(["openssl", *args], check=True, capture_output=True, input=input).stdout


def make_x509():
    """{name: (csr_pem, csr_der)} for the keys AWS accepts and a few it refuses, and a cert."""
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        keys = {
            "rsa2048": ["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
            "rsa1024-weak": ["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024"],
            "ec-p256": ["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
            "ec-p384": ["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"],
            "ec-p521": ["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-521"],
            "ec-secp256k1-unsupported": ["genpkey", "-algorithm", "EC", "-pkeyopt",
                                         "ec_paramgen_curve:secp256k1"],
            "ed25519-unsupported": ["genpkey", "-algorithm", "ED25519"],
        }
        for name, args in keys.items():
            key = os.path.join(tmp, name + ".key")
            openssl(*args, "-out", key)
            subj = "/CN=sensor-7/O=Acme/C=US/serialNumber=1234"
            pem = openssl("req", "-new", "-key", key, "-subj", subj)
            der = openssl("req", "-in", "/dev/stdin", "-outform", "DER", input=pem)
            out[name] = (pem, der)
            if name == "ec-p256":
                cert = openssl("req", "-new", "-x509", "-key", key, "-subj", subj, "-days", "1",
                               "-addext", "subjectAltName=DNS:dev.example.com,IP:192.0.2.7")
                cert_der = openssl("x509", "-in", "/dev/stdin", "-outform", "DER", input=cert)
                out["cert"] = (cert, cert_der)
    return out


# ---- fleet (JSON and CBOR) -------------------------------------------------------------------
def fleet_requests(x509):
    """(name, selector, request object) for both formats."""
    TOKEN = TOKEN_TEXT
    reqs = []
    for name in ("ec-p256", "rsa2048", "rsa1024-weak", "ed25519-unsupported"):
        reqs.append((f"csr-{name}", 0, {"certificateSigningRequest": x509[name][0].decode()}))
    reqs += [
        ("csr-missing", 0, {}),
        ("csr-number", 0, {"certificateSigningRequest": 42}),
        ("csr-garbage", 0, {"certificateSigningRequest": "-----BEGIN CERTIFICATE REQUEST-----\n"}),
    ]
    for i, tpl in enumerate(TEMPLATES):
        sel = (i << 2) | 1
        reqs.append((f"register-{tpl}", sel, {
            "certificateOwnershipToken": TOKEN,
            "parameters": {"SerialNumber": "1234", "DeviceLocation": "Seattle"}}))
    rich = (1 << 2) | 2
    reqs += [
        ("register-rich-berlin", rich, {"certificateOwnershipToken": TOKEN,
                                         "parameters": {"SerialNumber": "1", "Location": "Berlin",
                                                        "Index": "1"}}),
        ("register-rich-select-out-of-range", rich, {
            "certificateOwnershipToken": TOKEN,
            "parameters": {"SerialNumber": "2", "Groups": "a", "Index": "5"}}),
        ("register-rich-no-mapping", rich, {"certificateOwnershipToken": TOKEN,
                                            "parameters": {"SerialNumber": "3", "Location": "Mars"}}),
        ("register-forged-cert-id", 1, {"certificateOwnershipToken": TOKEN, "parameters": {
            "SerialNumber": "4", "AWS::IoT::Certificate::Id": "forged"}}),
        ("register-no-params", 1, {"certificateOwnershipToken": TOKEN}),
        ("register-null-params", 1, {"certificateOwnershipToken": TOKEN, "parameters": None}),
        ("register-params-array", 1, {"certificateOwnershipToken": TOKEN, "parameters": []}),
        ("register-param-number", 1, {"certificateOwnershipToken": TOKEN,
                                      "parameters": {"SerialNumber": 5}}),
        ("register-empty-token", 1, {"certificateOwnershipToken": ""}),
        ("register-unknown-token", 1, {"certificateOwnershipToken": "nope", "parameters": {}}),
        ("register-token-number", 1, {"certificateOwnershipToken": 7}),
        ("register-empty", 1, {}),
    ]
    return reqs


def fleet_json(x509):
    t = "fuzz_fleet_json"
    for name, sel, req in fleet_requests(x509):
        write(t, name, bytes([sel]) + js(req))
    write(t, "create-keys-sdk-empty-object", b"\x01{}")
    write(t, "zero-bytes", b"\x01")
    write(t, "whitespace-object", b"\x00 {} ")
    write(t, "not-object", b"\x00[]")
    write(t, "truncated", b"\x01{")
    topics = ["$aws/certificates/create/json", "$aws/certificates/create/cbor/accepted",
              "$aws/certificates/create-from-csr/json/rejected",
              "$aws/certificates/create-from-csr/cbor",
              "$aws/provisioning-templates/fleet-default/provision/json",
              "$aws/provisioning-templates/T_1/provision/cbor/accepted",
              "$aws/provisioning-templates/abcdefghijklmnopqrstuvwxyz0123456789/provision/json",
              "$aws/provisioning-templates/+/provision/json",
              "$aws/certificates/create/jsonx", "$aws/provisioning-templates//provision/json"]
    for i, topic in enumerate(topics):
        write(t, f"topic-{i}", b"\x03" + topic.encode())


def fleet_cbor(x509):
    t = "fuzz_fleet_cbor"
    for name, sel, req in fleet_requests(x509):
        write(t, name, bytes([sel]) + cbor(req))
    write(t, "create-keys-empty-map", b"\x00\xa0")
    write(t, "zero-bytes", b"\x01")
    # §1.9: the RegisterThing example, with the token placeholder, and with indefinite forms.
    write(t, "spec-register", b"\x05" + cbor({"certificateOwnershipToken": "tok",
                                              "parameters": {"SerialNumber": "123"}}))
    indef = (b"\xbf" + cbor("certificateOwnershipToken") + b"\x7f" + cbor_text_raw(TOKEN)
             + b"\xff" + cbor("parameters") + b"\xbf"
             + cbor("SerialNumber") + cbor("123") + b"\xff\xff")
    write(t, "register-indefinite", b"\x05" + indef)
    # Codec vectors (selector 3): the §1.9 rejection, every major type, and near misses.
    rejection = bytes.fromhex(
        "a36a737461747573436f6465190190696572726f72436f64656e496e76616c69645061796c6f6164"
        "6c6572726f724d65737361676563626164")
    codec = {
        "spec-rejection": rejection,
        "all-types": cbor({"u": 1, "n": -500, "big": 2**64 - 1, "neg": -2**64, "f": 1.5,
                           "t": True, "f2": False, "z": None, "a": [1, "x", [2]],
                           "b": b"\x00\x01", "m": {"k": "v"}}),
        "half-single-float": b"\xa2\x61h\xf9\x3c\x00\x61s\xfa\x47\xc3\x50\x00",
        "nan-inf": b"\xa2\x61n\xf9\x7e\x00\x61i\xf9\x7c\x00",
        "tag-undefined": b"\xa2\x61t\xc1\x1a\x51\x4b\x67\xb0\x61u\xf7",
        "indefinite-all": b"\xbf\x61a\x9f\x01\x02\xff\x61b\x5f\x41\x00\xff\x61c\x7f\x61x\x61y\xff\xff",
        "empty-map": b"\xa0",
        "zero-bytes": b"",
        "duplicate-key": b"\xa2\x61a\x01\x61a\x02",
        "int-key": b"\xa1\x01\x02",
        "trailing": b"\xa0\x00",
        "too-deep": b"\xa1\x61a\xa1\x61b\xa1\x61c\xa1\x61d\xa0",
        "truncated": b"\xa1\x61a",
        "bad-utf8": b"\xa1\x61a\x62\xc3\x28",
        "nul-in-text": b"\xa1\x61a\x61\x00",
        "not-map": b"\x80",
    }
    for name, data in codec.items():
        write(t, f"codec-{name}", b"\x03" + data)


# ---- templates ---------------------------------------------------------------------------------
def templates():
    t = "fuzz_template"
    default = json.loads((FIXTURES / "templates" / "fleet-default.json").read_text())["templateBody"]
    write(t, "fleet-default", js(default))
    write(t, "fleet-default-params", js(default) + b"\x00SerialNumber=dev-42\n")
    write(t, "fleet-default-missing-param", js(default) + b"\x00Other=1\n")
    spec_fleet = {  # §2.8, the embedded-C demo's template
        "Parameters": {"SerialNumber": {"Type": "String"},
                       "AWS::IoT::Certificate::Id": {"Type": "String"}},
        "Resources": {
            "certificate": {"Type": "AWS::IoT::Certificate",
                            "Properties": {"CertificateId": {"Ref": "AWS::IoT::Certificate::Id"},
                                           "Status": "Active"}},
            "policy": {"Type": "AWS::IoT::Policy",
                       "Properties": {"PolicyName": "iotmock-device-policy"}},
            "thing": {"Type": "AWS::IoT::Thing",
                      "OverrideSettings": {"AttributePayload": "MERGE", "ThingGroups": "DO_NOTHING",
                                           "ThingTypeName": "REPLACE"},
                      "Properties": {"AttributePayload": {}, "ThingGroups": [],
                                     "ThingName": {"Fn::Join": ["", ["fp_demo_",
                                                                     {"Ref": "SerialNumber"}]]},
                                     "ThingTypeName": "fp_demo_things"}}},
        "DeviceConfiguration": {"Foo": "Bar"}}
    write(t, "spec-fleet-demo", js(spec_fleet) + b"\x00SerialNumber=1234\n")
    spec_jitp = {  # §2.8 / §3, JITP shape with an escaped-string policy document
        "Parameters": {"AWS::IoT::Certificate::CommonName": {"Type": "String"},
                       "AWS::IoT::Certificate::SerialNumber": {"Type": "String"},
                       "AWS::IoT::Certificate::Country": {"Type": "String"},
                       "AWS::IoT::Certificate::Id": {"Type": "String"}},
        "Resources": {
            "thing": {"Type": "AWS::IoT::Thing", "Properties": {
                "ThingName": {"Ref": "AWS::IoT::Certificate::CommonName"},
                "AttributePayload": {"version": "v1",
                                     "serialNumber": {"Ref": "AWS::IoT::Certificate::SerialNumber"}},
                "ThingGroups": ["fleet", {"Ref": "AWS::IoT::Certificate::Country"}]}},
            "certificate": {"Type": "AWS::IoT::Certificate",
                            "Properties": {"CertificateId": {"Ref": "AWS::IoT::Certificate::Id"},
                                           "Status": "ACTIVE"},
                            "OverrideSettings": {"Status": "DO_NOTHING"}},
            "policy": {"Type": "AWS::IoT::Policy", "Properties": {"PolicyDocument": json.dumps(
                {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": ["iot:Connect",
                 "iot:Publish"], "Resource": ["*"]}]})}}}}
    write(t, "spec-jitp", js(spec_jitp) + b"\x00AWS::IoT::Certificate::CommonName=dev1\n"
          b"AWS::IoT::Certificate::SerialNumber=7\nAWS::IoT::Certificate::Country=fleet\n")
    rich = {
        "Parameters": {"SerialNumber": {"Type": "String"},
                       "Location": {"Type": "String", "Default": "Seattle"},
                       "Groups": {"Type": "String", "Default": "fleet,extra"}},
        "Mappings": {"LocationTable": {"Seattle": {"Url": "https://example.aws", "Group": "fleet"}}},
        "Resources": {
            "thing": {"Type": "AWS::IoT::Thing",
                      "OverrideSettings": {"ATTRIBUTE_PAYLOAD": "MERGE", "THING_GROUPS": "merge",
                                           "THING_TYPE_NAME": "FAIL"},
                      "Properties": {
                          "ThingName": {"Fn::Sub": "dev_${SerialNumber}"},
                          "AttributePayload": {"first": {"Fn::Select": ["0", {"Fn::Split": [
                              ",", {"Ref": "Groups"}]}]}},
                          "ThingGroups": [{"Fn::FindInMap": ["LocationTable", {"Ref": "Location"},
                                                              "Group"]}]}},
            "inline": {"Type": "AWS::IoT::Policy", "Properties": {"PolicyDocument": {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "iot:Connect", "Resource": "*"}]}}}},
        "DeviceConfiguration": {
            "Url": {"Fn::FindInMap": ["LocationTable", {"Ref": "Location"}, "Url"]},
            "Sub": {"Fn::Sub": ["${A}-${SerialNumber}", {"A": {"Ref": "Location"}}]},
            "Count": 3, "On": True}}
    write(t, "rich", js(rich) + b"\x00SerialNumber=1\n")
    write(t, "rich-dev1-exists", js(rich) + b"\x00SerialNumber=1\nLocation=Seattle\n")
    write(t, "unknown-function", js({"Resources": {}, "DeviceConfiguration": {
        "x": {"Fn::If": ["c", "a", "b"]}}}))
    write(t, "intrinsic-in-mappings", js({"Mappings": {"M": {"a": {"b": {"Ref": "X"}}}}}))
    write(t, "not-json", b'{"Resources":')


# ---- policies ----------------------------------------------------------------------------------
def policies():
    t = "fuzz_policy"
    for f in sorted((FIXTURES / "policies").glob("*.json")):
        doc = json.loads(f.read_text())["policyDocument"]
        text = js(doc).replace(b"{{region}}", b"us-east-1").replace(b"{{account}}",
                                                                       b"123456789012")
        write(t, f.stem, text)
    for f in sorted((FIXTURES / "policy-vectors").glob("*.json")):
        vec = json.loads(f.read_text())
        docs = vec.get("policies", {})
        for case in vec.get("cases", []):
            name = f"{f.stem}-{case.get('name', 'case')}"
            if "document" in case:
                d = case["document"]
                write(t, name, d if isinstance(d, str) else js(d))
                continue
            names = case.get("policies") or []
            if not names or names[0] not in docs or "action" not in case:
                continue
            d = docs[names[0]]
            text = d.encode() if isinstance(d, str) else js(d)
            res = case["resource"]
            if not res.startswith("arn:"):
                res = res.split("/", 1)[1] if "/" in res else res
            write(t, name, text + b"\x00" + f"{case['action']} {res}\n".encode())


# ---- CSRs --------------------------------------------------------------------------------------
def csrs(x509):
    t = "fuzz_csr"
    for name, (pem, der) in x509.items():
        if name == "cert":
            write(t, "cert-pem", b"\x00" + pem)
            write(t, "cert-der", b"\x03" + der)
            continue
        write(t, f"{name}-pem", b"\x00" + pem)
        write(t, f"{name}-der", b"\x01" + der)
    ec = x509["ec-p256"][0]
    write(t, "pem-trailing-garbage", b"\x00" + ec + b"trailing")
    write(t, "pem-crlf", b"\x00" + ec.replace(b"\n", b"\r\n"))
    write(t, "pem-no-end", b"\x00" + ec.split(b"-----END")[0])


# ---- HTTP --------------------------------------------------------------------------------------
SIGV4 = ("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240101/us-east-1/iot/aws4_request, "
         "SignedHeaders=host;x-amz-date, Signature=0")


def http_request(method, path, body=None, headers=()):
    lines = [f"{method} {path} HTTP/1.1", "Host: localhost", f"Authorization: {SIGV4}"]
    lines += list(headers)
    data = b""
    if body is not None:
        data = body if isinstance(body, bytes) else js(body)
        lines += ["Content-Type: application/x-amz-json-1.1", f"Content-Length: {len(data)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + data


def http(x509):
    t = "fuzz_http"
    cert_arn = "arn:aws:iot:us-east-1:123456789012:cert/" + CERT_ID.decode()
    tpl = json.loads((FIXTURES / "templates" / "fleet-default.json").read_text())["templateBody"]
    policy = {"Version": "2012-10-17",
              "Statement": [{"Effect": "Allow", "Action": "iot:*", "Resource": "*"}]}
    reqs = {
        "health": ("GET", "/_iotmock/health", None),
        "root-ca": ("GET", "/_iotmock/root-ca.pem", None),
        "reset": ("POST", "/_iotmock/reset", None),
        "describe-endpoint": ("GET", "/endpoint?endpointType=iot:Data-ATS", None),
        "create-thing": ("POST", "/things/dev3", {"attributePayload": {"attributes": {"a": "1"}}}),
        "create-thing-typed": ("POST", "/things/dev2", {"thingTypeName": "sensor"}),
        "describe-thing": ("GET", "/things/dev1", None),
        "update-thing": ("PATCH", "/things/dev1", {"attributePayload": {
            "attributes": {"b": "2"}, "merge": True}, "expectedVersion": 1,
            "removeThingType": False}),
        "delete-thing": ("DELETE", "/things/dev1?expectedVersion=1", None),
        "list-things": ("GET", "/things?maxResults=2&attributeName=a&attributeValue=1"
                               "&usePrefixAttributeValue=true&thingTypeName=sensor", None),
        "list-things-token": ("GET", "/things?nextToken=ZGV2MQ%3D%3D", None),
        "create-thing-type": ("POST", "/thing-types/camera", {
            "thingTypeProperties": {"thingTypeDescription": "d",
                                    "searchableAttributes": ["a", "b"]}}),
        "deprecate-thing-type": ("POST", "/thing-types/sensor/deprecate", {"undoDeprecate": False}),
        "list-thing-types": ("GET", "/thing-types?thingTypeName=sensor", None),
        "create-thing-group": ("POST", "/thing-groups/lab", {
            "parentGroupName": "root", "thingGroupProperties": {
                "thingGroupDescription": "d", "attributePayload": {"attributes": {"k": "v"}}}}),
        "list-thing-groups": ("GET", "/thing-groups?parentGroup=root&namePrefixFilter=f"
                                     "&recursive=true", None),
        "add-thing-to-group": ("PUT", "/thing-groups/addThingToThingGroup",
                               {"thingGroupName": "fleet", "thingName": "dev1"}),
        "things-in-group": ("GET", "/thing-groups/fleet/things?recursive=true", None),
        "groups-for-thing": ("GET", "/things/dev1/thing-groups", None),
        "attach-thing-principal": ("PUT", "/things/dev1/principals", None,
                                   [f"x-amzn-principal: {cert_arn}"]),
        "list-principal-things": ("GET", "/principals/things", None,
                                  [f"x-amzn-principal: {cert_arn}"]),
        "list-thing-principals": ("GET", "/things/dev1/principals", None),
        "create-cert-from-csr": ("POST", "/certificates?setAsActive=true", {
            "certificateSigningRequest": x509["ec-p256"][0].decode()}),
        "describe-cert": ("GET", "/certificates/" + CERT_ID.decode(), None),
        "update-cert": ("PUT", f"/certificates/{CERT_ID.decode()}?newStatus=INACTIVE", None),
        "delete-cert": ("DELETE", f"/certificates/{CERT_ID.decode()}?forceDelete=true", None),
        "list-certs": ("GET", "/certificates?pageSize=1&isAscendingOrder=true", None),
        "create-policy": ("POST", "/policies/p1", {"policyDocument": json.dumps(policy)}),
        "get-policy": ("GET", "/policies/iotmock-device-policy", None),
        "create-policy-version": ("POST", "/policies/iotmock-device-policy/version?setAsDefault=true",
                                  {"policyDocument": json.dumps(policy)}),
        "list-policy-versions": ("GET", "/policies/iotmock-device-policy/version", None),
        "get-policy-version": ("GET", "/policies/iotmock-device-policy/version/1", None),
        "set-default-version": ("PATCH", "/policies/iotmock-device-policy/version/1", None),
        "attach-policy": ("PUT", "/target-policies/iotmock-device-policy", {"target": cert_arn}),
        "detach-policy": ("POST", "/target-policies/iotmock-claim-policy", {"target": cert_arn}),
        "list-attached-policies": ("POST", "/attached-policies/"
                                   + cert_arn.replace(":", "%3A").replace("/", "%2F")
                                   + "?recursive=false&pageSize=5", None),
        "list-targets-for-policy": ("POST", "/policy-targets/iotmock-claim-policy", None),
        "attach-principal-policy": ("PUT", "/principal-policies/iotmock-device-policy", None,
                                    [f"x-amzn-iot-principal: {cert_arn}"]),
        "list-policy-principals": ("GET", "/policy-principals", None,
                                   ["x-amzn-iot-policy: iotmock-claim-policy"]),
        "create-template": ("POST", "/provisioning-templates", {
            "templateName": "t1", "templateBody": json.dumps(tpl), "enabled": True,
            "provisioningRoleArn": "arn:aws:iam::123456789012:role/r",
            "preProvisioningHook": {"targetArn":
                                    "arn:aws:lambda:us-east-1:123456789012:function:h"}}),
        "describe-template": ("GET", "/provisioning-templates/fleet-default", None),
        "update-template": ("PATCH", "/provisioning-templates/fleet-default", {
            "enabled": False, "defaultVersionId": 1, "removePreProvisioningHook": True}),
        "create-template-version": ("POST", "/provisioning-templates/fleet-default/versions"
                                            "?setAsDefault=true", {"templateBody": json.dumps(tpl)}),
        "list-template-versions": ("GET", "/provisioning-templates/fleet-default/versions", None),
        "list-templates": ("GET", "/provisioning-templates?maxResults=1", None),
        "register-thing": ("POST", "/things", {"templateBody": json.dumps(tpl), "parameters": {
            "SerialNumber": "dev9", "AWS::IoT::Certificate::Id": CERT_ID.decode()}}),
        "update-event-configurations": ("PATCH", "/event-configurations", {
            "eventConfigurations": {"THING": {"Enabled": True}}}),
        "describe-event-configurations": ("GET", "/event-configurations", None),
        "test-authorization": ("POST", "/test-authorization?clientId=dev1", {
            "principal": cert_arn, "policyNamesToAdd": ["iotmock-device-policy"],
            "policyNamesToSkip": ["iotmock-claim-policy"], "authInfos": [
                {"actionType": "PUBLISH", "resources": [
                    "arn:aws:iot:us-east-1:123456789012:topic/devices/dev1/x"]},
                {"actionType": "CONNECT", "resources": [
                    "arn:aws:iot:us-east-1:123456789012:client/dev1"]},
                {"actionType": "SUBSCRIBE", "resources": [
                    "arn:aws:iot:us-east-1:123456789012:topicfilter/devices/+/x"]}]}),
        "effective-policies": ("POST", "/effective-policies?thingName=dev1",
                               {"principal": cert_arn}),
        "endpoint-url-prefix": ("GET", "/prefix/path/things", None),
        "wrong-method": ("PUT", "/things", None),
        "unknown-path": ("GET", "/nothing/here", None),
        "bad-json": ("POST", "/things/dev1", b"{"),
        "wrong-scope": ("GET", "/things", None),
    }
    for name, spec in reqs.items():
        method, path, body = spec[:3]
        headers = spec[3] if len(spec) > 3 else ()
        data = http_request(method, path, body, headers)
        if name == "wrong-scope":
            data = data.replace(b"/iot/aws4_request", b"/s3/aws4_request")
        write(t, name, data)


def http_ca():
    """The bring-your-own CA routes: a CA, a verification certificate and a device certificate
    it signed (the registration code differs per run, so the verification is refused; the
    mutations still reach every check before it)."""
    t = "fuzz_http"
    with tempfile.TemporaryDirectory() as tmp:
        ca_key, dev_key, ver_key = (os.path.join(tmp, n) for n in ("ca.key", "dev.key", "ver.key"))
        for k in (ca_key, dev_key, ver_key):
            openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-out", k)
        ca = os.path.join(tmp, "ca.pem")
        openssl("req", "-new", "-x509", "-key", ca_key, "-subj", "/CN=Fuzz Root CA", "-days", "2",
                "-out", ca)
        ca_pem = open(ca).read()

        def signed(key, subj):
            csr = openssl("req", "-new", "-key", key, "-subj", subj)
            ext = os.path.join(tmp, "ext.cnf")
            with open(ext, "w") as f:
                f.write("basicConstraints=CA:FALSE\n")
            return openssl("x509", "-req", "-in", "/dev/stdin", "-CA", ca, "-CAkey", ca_key,
                           "-CAcreateserial", "-days", "1", "-extfile", ext,
                           input=csr).decode()
        ver_pem = signed(ver_key, "/CN=" + "0" * 64)
        dev_pem = signed(dev_key, "/CN=sensor-8/O=Acme/C=US")
    ca_id = "0" * 64
    cfg = {"templateBody": json.dumps({"Parameters": {
        "AWS::IoT::Certificate::CommonName": {"Type": "String"}}, "Resources": {}}),
        "roleArn": "arn:aws:iam::123456789012:role/JITPRole"}
    reqs = {
        "ca-registration-code": ("GET", "/registrationcode", None),
        "ca-register": ("POST", "/cacertificate?setAsActive=true&allowAutoRegistration=true",
                        {"caCertificate": ca_pem, "verificationCertificate": ver_pem,
                         "registrationConfig": cfg}),
        "ca-register-sni-only": ("POST", "/cacertificate?setAsActive=false",
                                 {"caCertificate": ca_pem, "certificateMode": "SNI_ONLY"}),
        "ca-update": ("PUT", f"/cacertificate/{ca_id}?newStatus=INACTIVE"
                             "&newAutoRegistrationStatus=DISABLE",
                      {"registrationConfig": cfg, "removeAutoRegistration": False}),
        "ca-describe": ("GET", f"/cacertificate/{ca_id}", None),
        "ca-list": ("GET", "/cacertificates?pageSize=1&isAscendingOrder=true&templateName=t",
                    None),
        "ca-delete": ("DELETE", f"/cacertificate/{ca_id}", None),
        "cert-register": ("POST", "/certificate/register?setAsActive=true",
                          {"certificatePem": dev_pem + ca_pem, "caCertificatePem": ca_pem,
                           "status": "ACTIVE"}),
        "cert-register-no-ca": ("POST", "/certificate/register-no-ca",
                                {"certificatePem": dev_pem, "status": "INACTIVE"}),
        "certs-by-ca": ("GET", f"/certificates-by-ca/{ca_id}?pageSize=2", None),
        "registration-code-delete": ("DELETE", "/registrationcode", None),
    }
    for name, (method, path, body) in reqs.items():
        write(t, name, http_request(method, path, body))


def main():
    if sys.argv[1:] == ["http-ca"]:  # only these seeds, leaving the others as they are
        http_ca()
        return
    x509 = make_x509()
    fleet_json(x509)
    fleet_cbor(x509)
    templates()
    policies()
    csrs(x509)
    http(x509)
    http_ca()
    for d in sorted(CORPUS.iterdir()):
        print(f"{d.name}: {len(list(d.iterdir()))} files")


if __name__ == "__main__":
    main()
