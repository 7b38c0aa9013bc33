"""TLS from certificate flags: `tolk serve --ssl-certfile --ssl-keyfile` serves wss:// and https://."""

from __future__ import annotations

import datetime
import json
import ssl
import urllib.request
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from websockets.sync.client import connect

from support.subprocess_server import tolk_serve


def self_signed(tmp: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def test_wss_and_https_with_certificate_flags(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    ctx = ssl.create_default_context(cafile=str(cert))
    args = ["--engine", "fake", "--ssl-certfile", str(cert), "--ssl-keyfile", str(key)]
    with tolk_serve(*args, timeout=60, scheme="https", ssl_context=ctx) as (base, _proc):
        host = base.replace("https://127.0.0.1", "localhost")
        with urllib.request.urlopen(f"https://{host}/health", context=ctx, timeout=5) as r:
            assert json.loads(r.read()) == {"status": "ok"}
        with connect(f"wss://{host}/v1/stream", ssl=ctx, compression=None) as ws:
            assert json.loads(ws.recv(5))["type"] == "ready"
            ws.send(json.dumps({"type": "translate", "id": "t", "text": "hello there",
                                "source": "en", "target": "fi"}))
            while json.loads(ws.recv(5))["type"] != "complete":
                pass
