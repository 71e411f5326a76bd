"""Helpers for the bring-your-own CA tests (test_jit_*.py, test_cp_cacerts.py): CAs, verification
certificates and device certificates made with the openssl CLI as the AWS walkthroughs make them,
and the steps of registering a CA through /usr/bin/aws."""

import datetime
import json
import subprocess
from pathlib import Path
from typing import Optional

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from cp_support import ALLOW_ALL_POLICY, Aws, cert_arn
from iotmock_support import cert_id, run_openssl, unique

REGISTERED_PREFIX = "$aws/events/certificates/registered/"


class Pem:
    """A certificate and its key on disk."""

    def __init__(self, cert: Path, key: Path):
        self.cert = cert
        self.key = key

    @property
    def pem(self) -> str:
        return self.cert.read_text()

    @property
    def id(self) -> str:
        return cert_id(self.pem)

    @property
    def arn(self) -> str:
        return cert_arn(self.id)


def _key(directory: Path, name: str) -> Path:
    key = directory / f"{name}.key"
    run_openssl("genrsa", "-out", str(key), "2048")
    return key


def make_ca(directory: Path, cn: Optional[str] = None, days: int = 365) -> Pem:
    """A self-signed CA (basicConstraints CA:TRUE), as `openssl req -x509` makes it."""
    name = unique("ca")
    key = _key(directory, name)
    cert = directory / f"{name}.pem"
    run_openssl("req", "-x509", "-new", "-key", str(key), "-out", str(cert), "-days", str(days),
                "-sha256", "-subj", f"/CN={cn or name}/O=iotmock tests",
                "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    return Pem(cert, key)


def sign(directory: Path, ca: Pem, subject: str, name: Optional[str] = None,
         key: Optional[Path] = None, days: int = 30) -> Pem:
    """A certificate for SUBJECT (openssl's /K=V form) signed by CA, with a new key unless KEY."""
    name = name or unique("leaf")
    key = key or _key(directory, name)
    csr = directory / f"{name}.csr"
    cert = directory / f"{name}.pem"
    run_openssl("req", "-new", "-key", str(key), "-out", str(csr), "-subj", subject)
    run_openssl("x509", "-req", "-in", str(csr), "-CA", str(ca.cert), "-CAkey", str(ca.key),
                "-CAcreateserial", "-out", str(cert), "-days", str(days), "-sha256")
    return Pem(cert, key)


def self_signed(directory: Path, cn: str) -> Pem:
    """A self-signed device certificate, explicitly no CA (`openssl req -x509` would add
    Debian's v3_ca extensions)."""
    name = unique("self")
    key = _key(directory, name)
    csr, cert, ext = (directory / f"{name}.csr", directory / f"{name}.pem",
                      directory / f"{name}.ext")
    ext.write_text("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                   "extendedKeyUsage=clientAuth\n")
    run_openssl("req", "-new", "-key", str(key), "-out", str(csr), "-subj", f"/CN={cn}")
    run_openssl("x509", "-req", "-in", str(csr), "-signkey", str(key), "-out", str(cert),
                "-days", "30", "-extfile", str(ext))
    return Pem(cert, key)


def expired_ca(directory: Path) -> Pem:
    """A CA whose validity ended yesterday (OpenSSL 3.0's CLI cannot backdate one)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = datetime.datetime.now(datetime.timezone.utc)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, unique("expired-ca"))])
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=30))
            .not_valid_after(now - datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    name = unique("expired")
    cert_path, key_path = directory / f"{name}.pem", directory / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.TraditionalOpenSSL,
                                           serialization.NoEncryption()))
    return Pem(cert_path, key_path)


def chain_file(directory: Path, device: Pem, ca: Pem) -> Path:
    """The device certificate followed by its CA, as many guides tell devices to present."""
    path = directory / f"{unique('chain')}.pem"
    path.write_text(device.pem + ca.pem)
    return path


def verification_cert(directory: Path, aws: Aws, ca: Pem) -> Pem:
    """The proof of possession of §4.2: CN = the account's registration code, signed by CA."""
    code = aws.ok("get-registration-code")["registrationCode"]
    return sign(directory, ca, f"/CN={code}")


def register_ca(directory: Path, aws: Aws, ca: Pem, *extra) -> str:
    """register-ca-certificate with a verification certificate; returns the CA's id."""
    ver = verification_cert(directory, aws, ca)
    out = aws.ok("register-ca-certificate", "--ca-certificate", f"file://{ca.cert}",
                 "--verification-cert", f"file://{ver.cert}", *extra)
    assert out["certificateId"] == ca.id
    return out["certificateId"]


def allow_all_policy(aws: Aws) -> str:
    name = unique("jit-allow-all")
    aws.ok("create-policy", "--policy-name", name, "--policy-document", ALLOW_ALL_POLICY)
    return name


def openssl_subject(pem: str) -> str:
    return run_openssl("x509", "-noout", "-subject", "-nameopt", "RFC2253",
                       input_text=pem).strip()


def event_fields(payload: bytes) -> dict:
    return json.loads(payload.decode())


def mosquitto_pub_cert(server, cert: Path, key: Path, client_id: str, topic: str,
                       message: str = "hello") -> subprocess.CompletedProcess:
    from cp_support import mosquitto_pub
    return mosquitto_pub(server, cert, key, client_id, topic, message)
