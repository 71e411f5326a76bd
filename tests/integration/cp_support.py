"""Helpers for the control-plane tests (test_cp_*.py): Debian's awscli 2 (/usr/bin/aws) and boto3
(/usr/bin/python3) pointed at a running iotmock, mosquitto_pub with a given certificate, raw HTTP
for what no SDK sends, and the AWS error text the CLI prints.

The CLI is run exactly as a user would run it against AWS, with --endpoint-url added
(shared/spec/clients.md §3). Errors are checked in the CLI's own words:
    An error occurred (<Exception>) when calling the <Operation> operation: <message>
with exit code 254. (With AWS_MAX_ATTEMPTS=1 the CLI's legacy retry mode inserts
" (reached max retries: 0)" before the colon; that is the CLI's doing and is allowed.)
"""

import http.client
import json
import os
import re
import subprocess
from pathlib import Path
from typing import Optional

from iotmock_support import ACCOUNT, REGION, unique, which_or_none, write_credentials

AWS_CLI = "/usr/bin/aws"
PUB = which_or_none("mosquitto_pub")
CLI_SERVICE_ERROR = 254  # the CLI's exit code for an error the service returned

AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "test",
    "AWS_SECRET_ACCESS_KEY": "test",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_PAGER": "",
    "AWS_CONFIG_FILE": "/dev/null",
    "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_MAX_ATTEMPTS": "1",
}

ALLOW_ALL_POLICY = json.dumps({
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "iot:*", "Resource": "*"}],
})


def cert_arn(cert_id: str) -> str:
    return f"arn:aws:iot:{REGION}:{ACCOUNT}:cert/{cert_id}"


def arn(kind: str, name: str) -> str:
    return f"arn:aws:iot:{REGION}:{ACCOUNT}:{kind}/{name}"


def error_pattern(exception: str, operation: str, message: Optional[str] = None) -> re.Pattern:
    """The CLI's error line; MESSAGE (a regex) must occur in the text after the colon."""
    text = (rf"An error occurred \({exception}\) when calling the {operation} operation"
            r"( \(reached max retries: \d+\))?: ")
    if message is not None:
        text += ".*?" + message
    return re.compile(text)


class Aws:
    """`aws iot ...` against one server: ok() expects success and returns the parsed output,
    fail() expects a service error and checks its text and exit code."""

    def __init__(self, server, prefix: str = ""):
        self.server = server
        self.endpoint = f"http://127.0.0.1:{server.http_port}{prefix}"

    def run(self, *args, timeout: float = 60.0) -> subprocess.CompletedProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(AWS_ENV)
        argv = [AWS_CLI, "--endpoint-url", self.endpoint, "--output", "json", "iot",
                *[str(a) for a in args]]
        return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout)

    def ok(self, *args, **kw):
        p = self.run(*args, **kw)
        assert p.returncode == 0, (f"aws iot {' '.join(map(str, args))} exited {p.returncode}\n"
                                   f"{p.stdout}\n{p.stderr}\n{self.server.describe()}")
        return json.loads(p.stdout) if p.stdout.strip() else {}

    def fail(self, exception: str, operation: str, *args, message: Optional[str] = None) -> str:
        """Runs ARGS, expects exit 254 and the CLI's error line for EXCEPTION/OPERATION (and the
        regex MESSAGE). Returns the error text."""
        p = self.run(*args)
        assert p.returncode == CLI_SERVICE_ERROR, (
            f"aws iot {' '.join(map(str, args))}: exit {p.returncode}, expected "
            f"{CLI_SERVICE_ERROR}\n{p.stdout}\n{p.stderr}")
        pattern = error_pattern(exception, operation, message)
        assert pattern.search(p.stderr), f"{p.stderr!r} does not match {pattern.pattern!r}"
        return p.stderr.strip()


def boto3_client(server):
    """Debian's boto3 (tests run on /usr/bin/python3), no retries."""
    import boto3
    from botocore.config import Config
    return boto3.client("iot", endpoint_url=f"http://127.0.0.1:{server.http_port}",
                        region_name=REGION, aws_access_key_id="test",
                        aws_secret_access_key="test",
                        config=Config(retries={"max_attempts": 1, "mode": "standard"}))


def raw_request(server, method: str, path: str, body: Optional[bytes] = None,
                headers: Optional[dict] = None):
    """One plain HTTP request; returns (status, headers as a lowercase dict, body bytes)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=30)
    try:
        chunked = (headers or {}).get("Transfer-Encoding") == "chunked"
        conn.request(method, path, body=body, headers=headers or {}, encode_chunked=chunked)
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
    finally:
        conn.close()


def sigv4_header(service: str) -> dict:
    """An Authorization header shaped like SigV4 with SERVICE in its credential scope (iotmock
    does not verify signatures, so the signature is arbitrary)."""
    return {"Authorization": f"AWS4-HMAC-SHA256 Credential=test/20260101/{REGION}/{service}/"
                             f"aws4_request, SignedHeaders=host;x-amz-date, Signature={'0' * 64}",
            "X-Amz-Date": "20260101T000000Z"}


class Device:
    """A certificate and key on disk, as CreateKeysAndCertificate returned them."""

    def __init__(self, directory: Path, keys: dict, name: Optional[str] = None):
        self.id = keys["certificateId"]
        self.arn = keys["certificateArn"]
        self.name = name or unique("dev")
        self.cert, self.key = write_credentials(directory, self.name, keys["certificatePem"],
                                                keys["keyPair"]["PrivateKey"])


def new_device(aws: Aws, directory: Path, active: bool = True, name: Optional[str] = None):
    keys = aws.ok("create-keys-and-certificate", *(["--set-as-active"] if active else []))
    return Device(directory, keys, name)


def mosquitto_pub(server, cert, key, client_id: str, topic: str,
                  message: str = "hello from the control-plane tests",
                  timeout: float = 20.0) -> subprocess.CompletedProcess:
    """Connects with CERT/KEY over TLS, publishes one QoS 1 message and disconnects; rc 0 only
    if the broker accepted the connection and the message."""
    argv = [PUB, "-h", "localhost", "-p", str(server.mqtt_port), "--cafile", str(server.root_ca),
            "--cert", str(cert), "--key", str(key), "-i", client_id, "-V", "mqttv311", "-q", "1",
            "-u", "?SDK=cp-tests", "-t", topic, "-m", message]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)


def assert_publishes(server, device: Device, client_id: Optional[str] = None):
    cid = client_id or device.name
    p = mosquitto_pub(server, device.cert, device.key, cid, f"devices/{cid}/telemetry")
    assert p.returncode == 0, (f"mosquitto_pub with {device.id} failed ({p.returncode}): "
                               f"{p.stdout}{p.stderr}\n{server.describe()}")


def assert_cannot_publish(server, device: Device, client_id: Optional[str] = None):
    cid = client_id or device.name
    p = mosquitto_pub(server, device.cert, device.key, cid, f"devices/{cid}/telemetry")
    assert p.returncode != 0, f"mosquitto_pub with {device.id} succeeded but must not"
