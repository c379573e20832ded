"""Checks of the router role, run against router-1 and its two backends."""

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from ipaddress import ip_address
from pathlib import Path

import pytest
import testinfra.utils.ansible_runner
from playbook_runs import ansible_environment, ansible_playbook, inventory_directory

RUNNER = testinfra.utils.ansible_runner.AnsibleRunner(os.environ["MOLECULE_INVENTORY_FILE"])
testinfra_hosts = ["router-1"]
ROUTER = "https://172.30.2.10"
ROUTER_PLAIN = "http://172.30.2.10"
# The platform's CA as the role installs it on the router host.
CA = "/etc/haproxy/tls/ca.pem"
PROJECT = Path(os.environ["MOLECULE_PROJECT_DIRECTORY"])


@pytest.fixture(scope="module")
def backends():
    return [RUNNER.get_host(name) for name in ("router-backend-1", "router-backend-2")]


def request(host, url, method="GET", data=None, options=""):
    """Send one request with curl on `host` (HTTPS verified against the
    platform's CA); return (status, headers, body)."""
    cmd = f"curl -s -m 5 --cacert {CA} {options} -D - -o /tmp/body -X {method} "
    if data is not None:
        cmd += f"--data {data!r} "
    result = host.run(cmd + f"{url!r} && echo && cat /tmp/body")
    head, _, body = result.stdout.partition("\r\n\r\n")
    lines = head.splitlines()
    status = int(lines[0].split()[1]) if lines else 0
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, body.strip()


def wait_for_servers(host, backend, state, count, timeout=15):
    """Wait until `count` servers of `backend` have status `state`."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        out = host.run(
            f"echo 'show stat {backend} 4 -1' | socat stdio UNIX-CONNECT:/run/haproxy/admin.sock"
        ).stdout
        states = [line.split(",")[17] for line in out.splitlines() if line.startswith(backend)]
        if states.count(state) == count:
            return
        time.sleep(0.5)
    raise AssertionError(f"{backend}: not {count} servers {state}")


def test_haproxy_installed_and_running(host):
    assert host.package("haproxy").is_installed
    assert host.service("haproxy").is_running
    assert host.service("haproxy").is_enabled
    conf = host.file("/etc/haproxy/haproxy.cfg")
    assert conf.mode == 0o640
    assert host.run("haproxy -dW -c -f /etc/haproxy/haproxy.cfg").rc == 0
    # The sandboxing drop-in is in force.
    sandbox = host.run("systemctl show -p ProtectSystem haproxy").stdout.strip()
    assert sandbox == "ProtectSystem=strict"


def test_configuration_check_prints_no_warning(host):
    # HAProxy 2.6 (Debian 12) says the file is valid; 3.0 (Debian 13) says nothing.
    check = host.run("haproxy -c -f /etc/haproxy/haproxy.cfg")
    assert check.rc == 0
    output = (check.stdout + check.stderr).strip()
    assert output in ("", "Configuration file is valid"), output


def test_authentication_prefix_is_removed(host):
    status, _, body = request(host, f"{ROUTER}/authentication/health")
    assert status == 200
    assert json.loads(body)["path"] == "/health"


def test_transactions_prefix_is_removed(host):
    status, _, body = request(host, f"{ROUTER}/transactions/x?a=1")
    assert status == 200
    assert json.loads(body)["path"] == "/x?a=1"
    status, _, body = request(host, f"{ROUTER}/transactions/transactions", "POST", "amount=1")
    assert status == 200
    answer = json.loads(body)
    assert (answer["path"], answer["method"]) == ("/transactions", "POST")


def test_both_backends_serve(host):
    hosts = {json.loads(request(host, f"{ROUTER}/transactions/y")[2])["host"] for _ in range(4)}
    assert hosts == {"router-backend-1", "router-backend-2"}


@pytest.mark.parametrize("path", ["/", "/other", "/authenticationx", "/transactionsx/y"])
def test_unknown_path_is_json_404(host, path):
    status, headers, body = request(host, ROUTER + path)
    assert status == 404
    assert headers["content-type"] == "application/json"
    assert json.loads(body) == {"error": "Not found"}


def test_access_log_in_journal(host):
    request(host, f"{ROUTER}/authentication/health?logcheck=1")
    time.sleep(1)
    journal = host.run("journalctl -u haproxy --no-pager --since -2min").stdout
    # HTTP/2 (curl's choice over ALPN) logs the request's absolute URI.
    assert "/authentication/health?logcheck=1 HTTP/" in journal


def test_admin_endpoints_only_on_loopback(host, backends):
    assert host.socket("tcp://127.0.0.1:8404").is_listening
    assert not host.socket("tcp://0.0.0.0:8404").is_listening
    status, _, body = request(host, "http://127.0.0.1:8404/metrics")
    assert status == 200 and "haproxy_process_" in body
    assert request(host, "http://127.0.0.1:8404/stats")[0] == 200
    assert backends[0].run("curl -s -m 3 http://172.30.2.10:8404/stats").rc != 0


def test_stopped_backend_costs_no_request(host, backends):
    backends[0].run("systemctl stop stub-backend")
    try:
        # At once, before the health checks notice: retries carry the requests.
        statuses = [request(host, f"{ROUTER}/transactions/z")[0] for _ in range(10)]
        # A POST whose connection failed never reached a server: retried too.
        statuses += [
            request(host, f"{ROUTER}/transactions/transactions", "POST", "amount=1")[0]
            for _ in range(6)
        ]
        assert statuses == [200] * 16
        wait_for_servers(host, "transaction_api", "DOWN", 1)
        answers = [json.loads(request(host, f"{ROUTER}/transactions/z")[2]) for _ in range(4)]
        assert {a["host"] for a in answers} == {"router-backend-2"}
    finally:
        backends[0].run("systemctl start stub-backend")
    wait_for_servers(host, "transaction_api", "UP", 2)


def test_no_backend_up_is_json_503(host, backends):
    for backend in backends:
        backend.run("systemctl stop stub-backend")
    try:
        wait_for_servers(host, "auth_api", "DOWN", 2)
        status, headers, body = request(host, f"{ROUTER}/authentication/health")
        assert status == 503
        assert headers["content-type"] == "application/json"
        assert "error" in json.loads(body)
    finally:
        for backend in backends:
            backend.run("systemctl start stub-backend")
    wait_for_servers(host, "auth_api", "UP", 2)
    wait_for_servers(host, "transaction_api", "UP", 2)


def test_token_rate_limit(host):
    # The scenario allows 5 requests per 10 s per client address.
    answers = [request(host, f"{ROUTER}/authentication/token", "POST", "u=a") for _ in range(8)]
    statuses = [status for status, _, _ in answers]
    assert 200 in statuses
    assert statuses.count(429) >= 2
    _, headers, body = next(a for a in answers if a[0] == 429)
    assert headers["retry-after"] == "10"
    assert headers["content-type"] == "application/json"
    assert json.loads(body) == {"error": "Too many requests"}
    # Other paths are not limited.
    assert request(host, f"{ROUTER}/authentication/health")[0] == 200


def test_plain_http_answers_308_to_the_same_path_over_https(host):
    status, headers, _ = request(host, f"{ROUTER_PLAIN}/transactions/x?a=1", "POST", "amount=1")
    assert status == 308
    assert headers["location"] == f"{ROUTER}/transactions/x?a=1"


def test_https_offers_http2_and_sends_hsts(host):
    out = host.run(
        f"curl -s -m 5 --cacert {CA} --http2 -o /dev/null -D - {ROUTER}/authentication/health"
    ).stdout
    assert out.startswith("HTTP/2 200"), out
    assert "strict-transport-security: max-age=63072000" in out.lower()


def test_tls_scan_finds_nothing_below_mozilla_intermediate():
    """sslyze (from the control machine, against the scenario's router only)
    checks the protocols, ciphers, curves and certificate against Mozilla's
    intermediate profile and exits non-zero on any gap."""
    # scripts/bootstrap installs it in a virtualenv of its own under .venv.
    sslyze = Path(sys.prefix) / "opt" / "sslyze" / "bin" / "sslyze"
    scan = subprocess.run(
        [
            str(sslyze),
            "--mozilla_config=intermediate",
            f"--certinfo_ca_file={PROJECT / '.secrets' / 'tls' / 'ca.crt'}",
            "172.30.2.10:443",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    report = scan.stdout[-3000:]
    assert scan.returncode == 0, report
    assert 'against Mozilla\'s "intermediate" configuration' in report, report
    assert "OK - Compliant" in report, report


def test_backend_with_a_certificate_of_another_ca_is_refused(host, backends):
    """The router verifies the APIs' certificates: a backend that presents
    one from another CA is marked down and gets no request."""
    stranger = backends[0]
    stranger.run(
        "cd /etc/stub-backend && cp certificate.pem certificate.pem.orig && "
        "cp private-key.pem private-key.pem.orig && "
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 "
        "-subj /CN=router-backend-1 -addext subjectAltName=DNS:router-backend-1 "
        "-keyout private-key.pem -out certificate.pem 2>/dev/null && "
        "systemctl restart stub-backend"
    )
    try:
        wait_for_servers(host, "transaction_api", "DOWN", 1)
        answers = [json.loads(request(host, f"{ROUTER}/transactions/z")[2]) for _ in range(4)]
        assert {a["host"] for a in answers} == {"router-backend-2"}
    finally:
        stranger.run(
            "cd /etc/stub-backend && mv certificate.pem.orig certificate.pem && "
            "mv private-key.pem.orig private-key.pem && systemctl restart stub-backend"
        )
    wait_for_servers(host, "transaction_api", "UP", 2)


def new_router_certificate() -> tuple[str, str, int]:
    """A new certificate for router-1 from the platform's CA: PEM text of it
    and of its key, and its serial number."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    tls = PROJECT / ".secrets" / "tls"
    ca = x509.load_pem_x509_certificate((tls / "ca.crt").read_bytes())
    ca_key = serialization.load_pem_private_key((tls / "ca.key").read_bytes(), password=None)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    names = [x509.DNSName("router-1"), x509.IPAddress(ip_address("172.30.2.10"))]
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "router-1")]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(days=90))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    cert_pem = certificate.public_bytes(serialization.Encoding.PEM).decode()
    return cert_pem, key_pem, certificate.serial_number


def served_serial(host) -> int:
    """The serial number of the certificate the router serves now (0: none)."""
    out = host.run(
        "openssl s_client -connect 172.30.2.10:443 -servername router-1 </dev/null 2>/dev/null"
        " | openssl x509 -noout -serial"
    ).stdout.strip()
    return int(out.removeprefix("serial="), 16) if out.startswith("serial=") else 0


def converge(*extra: str) -> subprocess.CompletedProcess:
    """The scenario's converge.yml, run as Molecule runs it."""
    playbook = PROJECT / "molecule" / "router" / "converge.yml"
    return subprocess.run(
        [ansible_playbook(), "-i", inventory_directory(), str(playbook), *extra],
        env=ansible_environment(PROJECT),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_a_new_edge_certificate_is_taken_up_by_a_reload_that_fails_no_request(host, tmp_path):
    """The role run again with another edge certificate (as an inventory
    gives one): HAProxy reloads, serves the new one, and requests sent all
    along, each on a new connection, all succeed."""
    cert_pem, key_pem, serial = new_router_certificate()
    extra = tmp_path / "edge.json"
    extra.write_text(
        json.dumps({"router_tls_certificate": cert_pem, "router_tls_private_key": key_pem})
    )
    # At most 400 requests, 25 ms apart, stopped after 60 s whatever happens.
    host.run(
        "rm -f /tmp/reload-codes; nohup timeout 60 sh -c 'for i in $(seq 1 400); do "
        f'curl -s -m 5 --cacert {CA} -o /dev/null -w "%{{http_code}}\\n" '
        f"{ROUTER}/authentication/health >> /tmp/reload-codes; sleep 0.025; done' "
        ">/dev/null 2>&1 & echo $! > /tmp/reload-pid"
    )
    try:
        run = converge("-e", f"@{extra}")
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
        assert "RUNNING HANDLER [router : Reload HAProxy]" in run.stdout, "no reload"
        # The reload returns before the new worker takes connections.
        deadline = time.time() + 15
        while (served := served_serial(host)) != serial and time.time() < deadline:
            time.sleep(0.5)
        assert served == serial, f"still serving serial {served:X}, not {serial:X}"
        deadline = time.time() + 70
        while host.run("kill -0 $(cat /tmp/reload-pid)").rc == 0 and time.time() < deadline:
            time.sleep(1)
        codes = host.file("/tmp/reload-codes").content_string.split()
        assert len(codes) >= 100, f"only {len(codes)} requests were sent"
        assert set(codes) == {"200"}, f"failed in the reload: {[c for c in codes if c != '200']}"
    finally:
        # The host's own certificate again, for whatever test runs next.
        restored = converge()
    assert restored.returncode == 0, restored.stdout[-3000:]
