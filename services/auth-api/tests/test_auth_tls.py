"""The Auth API serving HTTPS under real gunicorn (TLS_* variables).

Certificates come from the suite's ``pki`` fixture: the platform's CA and
another CA, a server certificate for 127.0.0.1 and client certificates from
each CA.
"""

from __future__ import annotations

import http.client
import shutil
import signal
import socket
import ssl
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization


def _client_context(pki: Any, cert: Path | None, key: Path | None) -> ssl.SSLContext:
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
    kit: Any, tmp_path_factory: pytest.TempPathFactory, pki: Any, jwt_keys: Any, users_file: Path
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


def test_https_served_to_a_client_with_a_platform_certificate(tls_api: Any, pki: Any) -> None:
    context = _client_context(pki, pki.client_cert, pki.client_key)
    assert _get(tls_api.port, context) == 200
    with (
        socket.create_connection(("127.0.0.1", tls_api.port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        assert tls.version() in ("TLSv1.2", "TLSv1.3")


def test_one_tls_connection_carries_many_requests(tls_api: Any, pki: Any) -> None:
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


def test_client_certificate_from_another_ca_is_refused(tls_api: Any, pki: Any) -> None:
    context = _client_context(pki, pki.other_client_cert, pki.other_client_key)
    with pytest.raises((ssl.SSLError, OSError)):
        _get(tls_api.port, context)


def test_no_client_certificate_is_refused(tls_api: Any, pki: Any) -> None:
    with pytest.raises((ssl.SSLError, OSError)):
        _get(tls_api.port, _client_context(pki, None, None))


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_tls_1_1_is_refused(tls_api: Any, pki: Any) -> None:
    context = _client_context(pki, pki.client_cert, pki.client_key)
    context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    context.maximum_version = ssl.TLSVersion.TLSv1_1
    with pytest.raises((ssl.SSLError, OSError)):
        _get(tls_api.port, context)


def test_https_without_client_ca_needs_no_client_certificate(
    kit: Any, tmp_path: Path, pki: Any, jwt_keys: Any, users_file: Path
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
    kit: Any, pki: Any, jwt_keys: Any, users_file: Path, variables: dict[str, str], named: str
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
    kit: Any, tmp_path: Path, pki: Any, jwt_keys: Any, users_file: Path
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
    kit: Any, tmp_path: Path, pki: Any, jwt_keys: Any, users_file: Path
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
        ca_key = serialization.load_pem_private_key(pki.ca_key.read_bytes(), password=None)
        kit.make_leaf(directory, "renewed", "platform-ca", ca_key)
        renewed_cert, renewed_key = directory / "renewed.crt", directory / "renewed.key"
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


def test_metrics_need_a_platform_client_certificate(tls_api: Any, pki: Any) -> None:
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
