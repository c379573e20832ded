"""The Auth API serving HTTPS under real gunicorn (TLS_* variables).

Certificates are made here with the cryptography library: the platform's CA
and another CA, a server certificate for 127.0.0.1 and client certificates
from each CA.
"""

from __future__ import annotations

import datetime
import http.client
import shutil
import signal
import socket
import ssl
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass
class Pki:
    ca: Path
    ca_key: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path
    other_client_cert: Path
    other_client_key: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def _ca(directory: Path, name: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(_name(name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    (directory / f"{name}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(directory / f"{name}.key", key)
    return cert, key


def _leaf(
    directory: Path,
    name: str,
    ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey],
) -> tuple[Path, Path]:
    import ipaddress

    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(ca[0].subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca[1].public_key()), critical=False
        )
        .sign(ca[1], hashes.SHA256())
    )
    cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(key_path, key)
    return cert_path, key_path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("tls")
    ca = _ca(directory, "platform-ca")
    other = _ca(directory, "other-ca")
    server = _leaf(directory, "server", ca)
    client = _leaf(directory, "router", ca)
    other_client = _leaf(directory, "intruder", other)
    return Pki(
        ca=directory / "platform-ca.crt",
        ca_key=directory / "platform-ca.key",
        server_cert=server[0],
        server_key=server[1],
        client_cert=client[0],
        client_key=client[1],
        other_ca=directory / "other-ca.crt",
        other_client_cert=other_client[0],
        other_client_key=other_client[1],
    )


def _client_context(pki: Pki, cert: Path | None, key: Path | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki.ca))
    if cert is not None and key is not None:
        context.load_cert_chain(str(cert), str(key))
    return context


def _get(port: int, context: ssl.SSLContext, path: str = "/health") -> int:
    connection = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=5)
    try:
        connection.request("GET", path)
        return connection.getresponse().status
    finally:
        connection.close()


def _start(kit: Any, tmp_path: Path, env: dict[str, str], context: ssl.SSLContext) -> Any:
    port = kit.free_port()
    env = {**env, "HTTP_PORT": str(port)}
    log_path = tmp_path / "auth-api-tls.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(kit.BIN / "auth-api")], env=env, stdout=log, stderr=subprocess.STDOUT
        )
    service = kit.Service(process, port, log_path)

    def healthy() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"auth-api exited {process.returncode}:\n{service.log()}")
        try:
            return _get(port, context) == 200
        except (OSError, ssl.SSLError):
            return False

    try:
        kit.wait_until(healthy, timeout=20, interval=0.1)
    except BaseException:
        service.stop()
        raise
    return service


@pytest.fixture(scope="module")
def tls_api(
    kit: Any, tmp_path_factory: pytest.TempPathFactory, pki: Pki, jwt_keys: Any, users_file: Path
) -> Any:
    env = kit.auth_env(
        jwt_keys,
        users_file,
        TLS_CERT_FILE=pki.server_cert,
        TLS_KEY_FILE=pki.server_key,
        TLS_CLIENT_CA_FILE=pki.ca,
    )
    service = _start(
        kit,
        tmp_path_factory.mktemp("tls-api"),
        env,
        _client_context(pki, pki.client_cert, pki.client_key),
    )
    yield service
    service.stop()


def test_https_served_to_a_client_with_a_platform_certificate(tls_api: Any, pki: Pki) -> None:
    context = _client_context(pki, pki.client_cert, pki.client_key)
    assert _get(tls_api.port, context) == 200
    with (
        socket.create_connection(("127.0.0.1", tls_api.port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        assert tls.version() in ("TLSv1.2", "TLSv1.3")


def test_one_tls_connection_carries_many_requests(tls_api: Any, pki: Pki) -> None:
    # The router keeps its connections to the API open: a handshake per
    # request would cost more than the request (bench/README.md).
    context = _client_context(pki, pki.client_cert, pki.client_key)
    connection = http.client.HTTPSConnection("127.0.0.1", tls_api.port, context=context, timeout=5)
    try:
        connection.connect()
        local_port = connection.sock.getsockname()[1]
        for _ in range(5):
            connection.request("GET", "/health")
            reply = connection.getresponse()
            reply.read()
            assert reply.status == 200
            assert reply.getheader("Connection", "").lower() != "close"
        # the same socket all along: http.client would have reconnected
        # (with another local port) after a close
        assert connection.sock.getsockname()[1] == local_port
    finally:
        connection.close()


def test_plain_http_is_refused(tls_api: Any) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", tls_api.port, timeout=5)
    try:
        with pytest.raises((OSError, http.client.HTTPException)):
            connection.request("GET", "/health")
            reply = connection.getresponse()
            # gunicorn may close without a status line; never a 200
            assert reply.status != 200
            raise OSError("answered plain text")
    finally:
        connection.close()


def test_client_certificate_from_another_ca_is_refused(tls_api: Any, pki: Pki) -> None:
    context = _client_context(pki, pki.other_client_cert, pki.other_client_key)
    with pytest.raises((ssl.SSLError, OSError)):
        _get(tls_api.port, context)


def test_no_client_certificate_is_refused(tls_api: Any, pki: Pki) -> None:
    with pytest.raises((ssl.SSLError, OSError)):
        _get(tls_api.port, _client_context(pki, None, None))


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_tls_1_1_is_refused(tls_api: Any, pki: Pki) -> None:
    context = _client_context(pki, pki.client_cert, pki.client_key)
    context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    context.maximum_version = ssl.TLSVersion.TLSv1_1
    with pytest.raises((ssl.SSLError, OSError)):
        _get(tls_api.port, context)


def test_https_without_client_ca_needs_no_client_certificate(
    kit: Any, tmp_path: Path, pki: Pki, jwt_keys: Any, users_file: Path
) -> None:
    env = kit.auth_env(
        jwt_keys, users_file, TLS_CERT_FILE=pki.server_cert, TLS_KEY_FILE=pki.server_key
    )
    service = _start(kit, tmp_path, env, _client_context(pki, None, None))
    try:
        assert _get(service.port, _client_context(pki, None, None)) == 200
    finally:
        service.stop()


@pytest.mark.parametrize(
    ("variables", "named"),
    [
        ({"TLS_CERT_FILE": "cert"}, "TLS_KEY_FILE"),
        ({"TLS_KEY_FILE": "key"}, "TLS_CERT_FILE"),
        ({"TLS_CLIENT_CA_FILE": "ca"}, "TLS_CLIENT_CA_FILE"),
        ({"TLS_CERT_FILE": "/nonexistent.crt", "TLS_KEY_FILE": "key"}, "TLS_CERT_FILE"),
        ({"TLS_CERT_FILE": "cert", "TLS_KEY_FILE": "other_key"}, "TLS_KEY_FILE"),
    ],
)
def test_tls_configuration_mistakes_are_one_line_naming_the_variable(
    kit: Any, pki: Pki, jwt_keys: Any, users_file: Path, variables: dict[str, str], named: str
) -> None:
    paths = {
        "cert": pki.server_cert,
        "key": pki.server_key,
        "ca": pki.ca,
        "other_key": pki.client_key,
    }
    env = kit.auth_env(
        jwt_keys,
        users_file,
        HTTP_PORT=kit.free_port(),
        **{name: paths.get(value, value) for name, value in variables.items()},
    )
    result = kit.run_console("auth-api", env)
    assert result.returncode == 2, result
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert named in lines[0], result.stderr


def _handshake(
    port: int, context: ssl.SSLContext, session: ssl.SSLSession | None = None
) -> tuple[ssl.SSLSession | None, bool, bytes]:
    """One GET /health on a new connection: (session, whether it was resumed, server cert)."""
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1", session=session) as tls,
    ):
        certificate = tls.getpeercert(binary_form=True)
        assert certificate is not None
        reused = tls.session_reused
        tls.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        reply = tls.recv(65536)
        assert reply.startswith(b"HTTP/1.1 200"), reply[:200]
        # TLS 1.3 tickets come after the handshake: the session is whole now
        return tls.session, reused, certificate


def test_a_worker_keeps_its_context_so_sessions_resume(
    kit: Any, tmp_path: Path, pki: Pki, jwt_keys: Any, users_file: Path
) -> None:
    # gunicorn asks for a context per connection; a new context each time
    # would have no session cache and no stable ticket key.
    context = _client_context(pki, pki.client_cert, pki.client_key)
    env = kit.auth_env(
        jwt_keys,
        users_file,
        WEB_CONCURRENCY=1,
        TLS_CERT_FILE=pki.server_cert,
        TLS_KEY_FILE=pki.server_key,
        TLS_CLIENT_CA_FILE=pki.ca,
    )
    service = _start(kit, tmp_path, env, context)
    try:
        session, reused, _ = _handshake(service.port, context)
        assert not reused
        assert session is not None
        for _ in range(3):
            session, reused, _ = _handshake(service.port, context, session)
            assert reused, "the worker did not resume the TLS session"
    finally:
        service.stop()


def test_sighup_takes_up_a_renewed_certificate(
    kit: Any, tmp_path: Path, pki: Pki, jwt_keys: Any, users_file: Path
) -> None:
    directory = tmp_path / "files"
    directory.mkdir()
    cert_path, key_path = directory / "tls-certificate.pem", directory / "tls-private-key.pem"
    shutil.copy(pki.server_cert, cert_path)
    shutil.copy(pki.server_key, key_path)
    context = _client_context(pki, pki.client_cert, pki.client_key)
    env = kit.auth_env(
        jwt_keys,
        users_file,
        TLS_CERT_FILE=cert_path,
        TLS_KEY_FILE=key_path,
        TLS_CLIENT_CA_FILE=pki.ca,
    )
    service = _start(kit, tmp_path, env, context)
    try:
        _, _, before = _handshake(service.port, context)
        assert before == x509.load_pem_x509_certificate(pki.server_cert.read_bytes()).public_bytes(
            serialization.Encoding.DER
        )
        ca = (
            x509.load_pem_x509_certificate(pki.ca.read_bytes()),
            serialization.load_pem_private_key(pki.ca_key.read_bytes(), password=None),
        )
        renewed_cert, renewed_key = _leaf(directory, "renewed", ca)  # type: ignore[arg-type]
        shutil.copy(renewed_key, key_path)
        shutil.copy(renewed_cert, cert_path)
        renewed = x509.load_pem_x509_certificate(renewed_cert.read_bytes()).public_bytes(
            serialization.Encoding.DER
        )
        service.process.send_signal(signal.SIGHUP)

        def serves_renewed() -> bool:
            # every worker (two) is new: a few connections all see it
            return all(_handshake(service.port, context)[2] == renewed for _ in range(4))

        kit.wait_until(serves_renewed, timeout=20, interval=0.2)
        assert service.process.poll() is None
    finally:
        service.stop()


def test_metrics_need_a_platform_client_certificate(tls_api: Any, pki: Pki) -> None:
    # Prometheus scrapes /metrics presenting the monitoring host's certificate.
    context = _client_context(pki, pki.client_cert, pki.client_key)
    assert _get(tls_api.port, context, "/metrics") == 200
    connection = http.client.HTTPSConnection("127.0.0.1", tls_api.port, context=context, timeout=5)
    try:
        connection.request("GET", "/metrics")
        text = connection.getresponse().read().decode()
    finally:
        connection.close()
    expiry = [
        line.split()[-1]
        for line in text.splitlines()
        if line.startswith("loyalty_tls_certificate_expiry_timestamp_seconds{")
    ]
    assert len(expiry) == 1, text
    # The test server certificate lives one day.
    assert 0 < float(expiry[0]) - time.time() <= 86400 + 60
    with pytest.raises((ssl.SSLError, OSError)):
        _get(tls_api.port, _client_context(pki, None, None), "/metrics")
