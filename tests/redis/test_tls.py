"""rediss:// against a real redis-server with TLS and a private CA."""

from __future__ import annotations

import datetime
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import pytest_twisted
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from installsure.redis.client import RedisService
from installsure.redis.interfaces import RedisUnavailable
from installsure.redis.target import RedisTarget
from tests.fixtures.redis import find_redis_server, free_port
from tests.redis.helpers import within


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_pki(directory: Path) -> tuple[Path, Path, Path]:
    """A throw-away CA and a certificate for "localhost" signed by it."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("test CA"))
        .issuer_name(_name("test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("localhost"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_path, cert_path = directory / "ca.pem", directory / "cert.pem"
    key_path = directory / "key.pem"
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return ca_path, cert_path, key_path


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """A redis-server speaking only TLS on a free port; yields (port, CA file)."""
    ca, cert, key = _write_pki(tmp_path)
    port = free_port()
    log = tmp_path / "redis.log"
    process = subprocess.Popen([
        find_redis_server(), "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
        "--tls-cert-file", str(cert), "--tls-key-file", str(key),
        "--tls-ca-cert-file", str(ca), "--tls-auth-clients", "no",
        "--save", "", "--appendonly", "no", "--dir", str(tmp_path), "--logfile", str(log),
    ])
    try:
        deadline = time.monotonic() + 10
        while "Ready to accept connections" not in (log.read_text() if log.exists() else ""):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"TLS redis-server did not start:\n{log.read_text()}")
            time.sleep(0.02)
        yield port, ca
    finally:
        process.kill()
        process.wait(10)


@pytest_twisted.ensureDeferred
async def test_rediss_with_private_ca(tls_redis: tuple[int, Path]) -> None:
    """rediss://localhost:port?ca=... verifies the server against that CA and works."""
    port, ca = tls_redis
    service = RedisService(RedisTarget.from_url(f"rediss://localhost:{port}/0?ca={ca}"),
                           command_timeout=2.0)
    service.startService()
    try:
        assert await within(10, service.execute("ECHO", "over TLS")) == "over TLS"
    finally:
        await service.stopService()


@pytest_twisted.ensureDeferred
async def test_rediss_refuses_untrusted_certificate(tls_redis: tuple[int, Path]) -> None:
    """Without the private CA the certificate is not trusted: no command goes through,
    the error says why, and the connection never counts as made."""
    port, _ = tls_redis
    service = RedisService(RedisTarget.from_url(f"rediss://localhost:{port}/0"),
                           command_timeout=1.0)
    service.startService()
    try:
        with pytest.raises(RedisUnavailable, match="certificate verify failed"):
            await within(10, service.execute("PING"))
        assert not service.is_connected
    finally:
        await service.stopService()


def test_unreadable_ca_file_is_a_clear_error(tmp_path: Path) -> None:
    """A CA file that is missing or not PEM is reported when the service is built."""
    missing = RedisTarget.from_url(f"rediss://localhost:1/0?ca={tmp_path}/nope.pem")
    with pytest.raises(ValueError, match="cannot read the Redis TLS CA file"):
        RedisService(missing)
    (tmp_path / "junk.pem").write_text("not a certificate")
    junk = RedisTarget.from_url(f"rediss://localhost:1/0?ca={tmp_path}/junk.pem")
    with pytest.raises(ValueError, match="does not hold a PEM certificate"):
        RedisService(junk)
