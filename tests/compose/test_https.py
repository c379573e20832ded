"""The compose router's HTTPS: the certificate signed by the CA the
`secrets` service makes (the platform_secrets role's kinds), verified by
name; the HTTPie flow over it; TLS 1.2 and 1.3 only, with the profile's
ciphers; ALPN h2; HSTS on every answer; the plain port answering 308 to the
same path on the published HTTPS port; a renewed certificate taken up by a
reload.

The other tests of the directory already speak HTTPS (conftest.py's
Platform.request verifies against the compose CA); these check the TLS
itself.
"""

from __future__ import annotations

import http.client
import json
import shutil
import socket
import ssl
import subprocess
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import Platform, wait_for

# Mozilla's intermediate profile as containers/router/haproxy.cfg sets it:
# TLS 1.2's ECDHE AEAD suites (ECDSA, the certificate's key) and TLS 1.3's.
TLS12_CIPHERS = {
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305",
}
TLS13_CIPHERS = {"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"}
HSTS = "max-age=63072000"


def host_port(address: str) -> tuple[str, int]:
    host, port = address.rsplit(":", 1)
    return host, int(port)


def handshake(platform: Platform, context: ssl.SSLContext, server_name: str = "127.0.0.1") -> dict:
    """One TLS handshake with the router's HTTPS port: what was agreed."""
    host, port = host_port(urllib.parse.urlsplit(platform.base_url).netloc)
    with (
        socket.create_connection((host, port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=server_name) as tls,
    ):
        return {
            "version": tls.version(),
            "cipher": tls.cipher()[0],
            "alpn": tls.selected_alpn_protocol(),
            "certificate": tls.getpeercert(),
        }


def refused(context: ssl.SSLContext, platform: Platform) -> str:
    """The error a handshake the router must refuse ends with."""
    with pytest.raises(ssl.SSLError) as error:
        handshake(platform, context)
    return str(error.value)


def legacy_client(maximum: ssl.TLSVersion, ciphers: str = "ALL:@SECLEVEL=0") -> ssl.SSLContext:
    """A client that offers what the router must refuse (nothing verified)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    context.maximum_version = maximum
    context.set_ciphers(ciphers)
    return context


def https_request(
    platform: Platform,
    method: str,
    url: str,
    body: bytes | None = None,
    headers: dict | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """One request over HTTPS verified against the compose CA, redirects not followed."""
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPSConnection(
        parts.hostname, parts.port, timeout=10, context=platform.tls_context()
    )
    try:
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        connection.request(method, target, body=body, headers=headers or {})
        answer = connection.getresponse()
        return answer.status, {k.lower(): v for k, v in answer.getheaders()}, answer.read()
    finally:
        connection.close()


def plain_request(
    platform: Platform,
    method: str,
    target: str,
    body: bytes | None = None,
    headers: dict | None = None,
) -> tuple[int, dict[str, str]]:
    """One request to the plain port, redirects not followed."""
    host, port = host_port(platform.plain_address)
    connection = http.client.HTTPConnection(host, port, timeout=10)
    try:
        connection.request(method, target, body=body, headers=headers or {})
        answer = connection.getresponse()
        answer.read()
        return answer.status, {k.lower(): v for k, v in answer.getheaders()}
    finally:
        connection.close()


def test_certificate_is_the_compose_cas_for_the_routers_names(platform: Platform) -> None:
    agreed = handshake(platform, platform.tls_context())
    certificate = agreed["certificate"]
    names = {value for _, value in certificate["subjectAltName"]}
    assert names == {"router", "localhost", "127.0.0.1"}, certificate["subjectAltName"]
    issuer = dict(pair[0] for pair in certificate["issuer"])
    assert issuer["commonName"] == "Loyalty platform CA"
    # The name is checked: localhost is in it, another name is not.
    handshake(platform, platform.tls_context(), server_name="localhost")
    assert "match" in refused_for_name(platform, "example.com")


def refused_for_name(platform: Platform, name: str) -> str:
    with pytest.raises(ssl.SSLCertVerificationError) as error:
        handshake(platform, platform.tls_context(), server_name=name)
    return str(error.value)


def test_a_client_without_the_compose_ca_refuses_the_certificate(platform: Platform) -> None:
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(platform, ssl.create_default_context())


def test_httpie_flow_over_https(platform: Platform) -> None:
    """The README's flow on the HTTPS port, verified against ca.crt: a token
    from form fields, a transaction accepted (202), the loyalty state."""
    token = platform.token("alice")
    answer = platform.request(
        "POST",
        "/transactions/transactions",
        form={"token": token, "amount": "2000", "currency": "GBP"},
    )
    assert platform.base_url.startswith("https://")
    assert answer.status == 202, (answer.status, answer.raw)
    assert answer.headers["strict-transport-security"] == HSTS
    state = platform.request(
        "GET", "/transactions/loyalty", headers={"Authorization": f"Bearer {token}"}
    )
    assert state.status == 200, (state.status, state.raw)


# TLS 1.0 and 1.1 are deprecated in Python's ssl too: offered here on purpose.
@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning")
def test_tls_12_and_13_with_the_profiles_ciphers_only(platform: Platform) -> None:
    tls13 = platform.tls_context()
    tls13.minimum_version = ssl.TLSVersion.TLSv1_3
    agreed = handshake(platform, tls13)
    assert agreed["version"] == "TLSv1.3" and agreed["cipher"] in TLS13_CIPHERS, agreed

    tls12 = platform.tls_context()
    tls12.maximum_version = ssl.TLSVersion.TLSv1_2
    agreed = handshake(platform, tls12)
    assert agreed["version"] == "TLSv1.2" and agreed["cipher"] in TLS12_CIPHERS, agreed

    # Older protocols and non-AEAD ciphers: the router itself says no.
    for maximum in (ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1):
        error = refused(legacy_client(maximum), platform)
        assert "PROTOCOL_VERSION" in error.upper() or "NO_PROTOCOLS" in error.upper(), error
    for cipher in ("ECDHE-ECDSA-AES128-SHA", "ECDHE-ECDSA-AES256-SHA384", "AES128-GCM-SHA256"):
        error = refused(legacy_client(ssl.TLSVersion.TLSv1_2, cipher), platform)
        assert "HANDSHAKE_FAILURE" in error.upper() or "NO_CIPHERS" in error.upper(), (
            cipher,
            error,
        )


def test_alpn_offers_h2_and_http_11(platform: Platform) -> None:
    for offered, expected in ((["h2", "http/1.1"], "h2"), (["http/1.1"], "http/1.1")):
        context = platform.tls_context()
        context.set_alpn_protocols(offered)
        assert handshake(platform, context)["alpn"] == expected, offered


def test_hsts_on_every_answer_of_the_https_port(platform: Platform) -> None:
    for path, status in (
        ("/transactions/ready", 200),
        ("/authentication/health", 200),
        ("/nowhere", 404),
        ("/transactions/loyalty", 401),
    ):
        got, headers, _ = https_request(platform, "GET", platform.base_url + path)
        assert got == status, (path, got)
        assert headers.get("strict-transport-security") == HSTS, (path, headers)


def test_plain_port_answers_308_to_the_same_path_on_the_https_port(platform: Platform) -> None:
    for method, target in (
        ("GET", "/transactions/loyalty?page=2&x=%20y"),
        ("POST", "/transactions/transactions"),
        ("GET", "/"),
        ("GET", "/nowhere"),
    ):
        status, headers = plain_request(
            platform, method, target, body=b"" if method == "POST" else None
        )
        assert status == 308, (method, target, status)
        assert headers["location"] == platform.base_url + target, headers
        assert "strict-transport-security" not in headers, headers
    # The Host header a client sent decides the host; the port is the HTTPS one.
    port = urllib.parse.urlsplit(platform.base_url).port
    _, headers = plain_request(
        platform, "GET", "/a", headers={"Host": f"localhost:{host_port(platform.plain_address)[1]}"}
    )
    assert headers["location"] == f"https://localhost:{port}/a", headers


def test_a_post_follows_the_redirect_with_its_body(platform: Platform) -> None:
    """308 keeps the method and the body: a client that follows it (HTTPie
    --follow, curl -L) has its transaction accepted over HTTPS."""
    token = platform.token("bob")
    body = json.dumps({"token": token, "amount": 300, "currency": "GBP"}).encode()
    headers = {"Content-Type": "application/json"}
    status, redirect = plain_request(platform, "POST", "/transactions/transactions", body, headers)
    assert status == 308
    status, _, raw = https_request(platform, "POST", redirect["location"], body, headers)
    assert status == 202, (status, raw)


def router_pem(platform: Platform) -> str:
    (router,) = platform.container_ids("router")
    return subprocess.run(
        ["docker", "exec", router, "cat", "/run/secrets/router_pem"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def test_a_renewed_certificate_is_taken_up_by_a_reload_that_fails_no_request(
    platform: Platform,
) -> None:
    """The `secrets` service signs the router's certificate again when it
    expires within its renewal window (here a window longer than the
    certificate's life, as when it nears expiry) and writes it to the
    router's volume, which the running router sees; SIGUSR2 (what
    scripts/compose-up sends) reloads HAProxy while requests keep coming,
    each on a new connection, none failing."""
    before = handshake(platform, platform.tls_context())["certificate"]["serialNumber"]
    content = router_pem(platform)
    output = platform.compose("run", "--rm", "-T", "-e", "SECRETS_TLS_RENEW_DAYS=400", "secrets")
    assert "made router.crt" in output, output
    assert router_pem(platform) != content, "the router's volume still has the old certificate"

    statuses: list[int | str] = []
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            try:
                statuses.append(
                    https_request(platform, "GET", platform.base_url + "/transactions/ready")[0]
                )
            except (OSError, ssl.SSLError) as error:
                statuses.append(repr(error))

    worker = threading.Thread(target=load)
    worker.start()
    try:
        time.sleep(0.5)
        platform.compose("kill", "-s", "USR2", "router")
        wait_for(
            "the router to serve the renewed certificate",
            lambda: (
                handshake(platform, platform.tls_context())["certificate"]["serialNumber"] != before
            ),
            timeout=20,
        )
        time.sleep(0.5)
    finally:
        stop.set()
        worker.join()
    failed = [status for status in statuses if status != 200]
    assert len(statuses) > 10 and not failed, (len(statuses), failed[:5])
    (router,) = platform.container_ids("router")
    assert inspect_restart_count(router) == 0


def inspect_restart_count(container: str) -> int:
    out = subprocess.run(
        ["docker", "inspect", "-f", "{{.RestartCount}}", container],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return int(out.strip())


@pytest.mark.skipif(shutil.which("tcpdump") is None, reason="tcpdump is not installed")
def test_the_password_and_the_token_cross_the_published_port_only_encrypted(
    platform: Platform, tmp_path: Path
) -> None:
    """A capture of the router's published ports, both sides of Docker's
    port forwarding (-i any), during the flow over HTTPS: neither the demo
    password nor the token appears in it. The control: the same password
    sent to the plain port is in the capture, since the client sends its body
    before the 308 comes back (so clients should start with https). The
    control sends a marker of the password's shape, not the password: a
    test never puts the real one on the wire in clear."""
    tls_port = urllib.parse.urlsplit(platform.base_url).port
    plain_port = host_port(platform.plain_address)[1]
    ports = " or ".join(f"tcp port {p}" for p in (tls_port, 8443, plain_port, 8080))

    def capture(action: Callable[[], str | None]) -> tuple[bytes, str | None]:
        pcap = tmp_path / "capture.pcap"
        tcpdump = subprocess.Popen(
            ["tcpdump", "-i", "any", "--immediate-mode", "-U", "-n", "-w", str(pcap), ports],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert tcpdump.stderr is not None
            # "listening on any, ..." once it captures (a data link line may come first).
            lines = [tcpdump.stderr.readline() for _ in range(1)]
            while "listening" not in lines[-1] and lines[-1] and len(lines) < 5:
                lines.append(tcpdump.stderr.readline())
            assert "listening" in lines[-1], lines
            result = action()
            time.sleep(0.5)
        finally:
            tcpdump.terminate()
            tcpdump.wait(timeout=10)
        return pcap.read_bytes(), result

    def flow() -> str:
        token = platform.token("alice")
        answer = platform.request(
            "POST",
            "/transactions/transactions",
            form={"token": token, "amount": "100", "currency": "GBP"},
        )
        assert answer.status == 202, (answer.status, answer.raw)
        return token

    captured, token = capture(flow)
    assert token and len(captured) > 4000, len(captured)
    assert platform.password.encode() not in captured
    assert token.encode() not in captured
    assert token.split(".")[1].encode() not in captured

    marker = f"control{uuid.uuid4().hex}"
    form = urllib.parse.urlencode({"username": "alice", "password": marker}).encode()
    host, port = host_port(platform.plain_address)

    def plain() -> None:
        # Headers and body in one write, the answer read before the capture
        # stops: the marker is on the wire whatever the router does first.
        head = (
            f"POST /authentication/token HTTP/1.1\r\nHost: {host}:{port}\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n"
            f"Content-Length: {len(form)}\r\nConnection: close\r\n\r\n"
        ).encode()
        with socket.create_connection((host, port), timeout=10) as connection:
            connection.sendall(head + form)
            answer = connection.recv(4096)
        assert answer.split(b" ", 2)[1] == b"308", answer[:200]

    # The control must show that clear text on these ports is seen; a
    # capture missed that one packet once in many runs, so it gets three
    # tries (each with its own capture), and any one seeing it proves it.
    seen = []
    for _ in range(3):
        captured, _ = capture(plain)
        seen.append(marker.encode() in captured)
        if seen[-1]:
            break
    assert any(seen), f"the clear-text control was not in any of {len(seen)} captures"
