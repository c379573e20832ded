"""HTTP throughput of a converged bench platform, load from wrk on this machine.

- api_against_bare_app: POST /transactions on the Transaction API host with
  a reused token and with a new token per request, beside a bare Bottle app
  on the same host under the same gunicorn settings; the ratios to it;
- through_router: the same POST with a reused token, through HAProxy (HTTPS).

The deployed API serves HTTPS only and requires the routers' client
certificate, which wrk cannot present. Both sides of the first row are
therefore run beside the service, each over HTTPS with the host's own
certificate and no client certificate asked: a second Transaction API from
the deployed environment file (another port) and the bare app. With
keep-alive a client certificate costs only at the handshake, so the
comparison is the same as with the service itself.

The targets are only the addresses the caller passes (the bench's own test
hosts); every wrk run is bounded by its duration.
"""

from __future__ import annotations

import math
import re
import ssl
from functools import partial
from pathlib import Path
from typing import Any

import http_load
from hosts import REPO, CpuMeter, dexec, load_average, log, run
from probes import http_status, make_token, new_tokens, wait_until

SERVICE_PORT = 5000
API_PORT = 5098
HELLO_PORT = 5099
HELLO_FILE = "/usr/local/lib/bench_hello_app.py"
CONFIG_DIR = "/etc/transaction-api"
# The host's certificate and key, as python_service installs them for the service.
TLS_ENV = (
    f"--setenv=TLS_CERT_FILE={CONFIG_DIR}/tls-certificate.pem "
    f"--setenv=TLS_KEY_FILE={CONFIG_DIR}/tls-private-key.pem"
)
ROUNDS = 3


def signing_key(secrets: Path) -> Any:
    """The Auth API's private key, to mint tokens as the Auth API does."""
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    return load_pem_private_key((secrets / "jwt" / "ed25519.key").read_bytes(), password=None)


def client_tls(secrets: Path) -> ssl.SSLContext:
    """Verifies the platform's CA and presents a platform certificate, as the router does."""
    certificate = sorted((secrets / "tls" / "hosts").glob("*.crt"))[0]
    context = ssl.create_default_context(cafile=str(secrets / "tls" / "ca.crt"))
    context.load_cert_chain(str(certificate), str(certificate.with_suffix(".key")))
    return context


def api_gunicorn_workers(api_host: str) -> int:
    """WEB_CONCURRENCY of the deployed Transaction API (2 when unset, as the service)."""
    env_file = dexec(api_host, f"cat {CONFIG_DIR}/transaction-api.env").stdout
    found = re.search(r"^WEB_CONCURRENCY=\"?(\d+)", env_file, re.M)
    return int(found[1]) if found else 2


def start_bare_app(api_host: str, api_address: str, gunicorn_workers: int, ca_file: Path) -> None:
    """bench/hello_app.py on the API host, with its venv, user and worker count."""
    # Through stdin: docker cp cannot write into the host's /tmp (a tmpfs).
    run(
        ["docker", "exec", "-i", api_host, "sh", "-c", f"cat > {HELLO_FILE}"],
        60,
        input=(REPO / "bench" / "hello_app.py").read_text(),
    )
    dexec(
        api_host,
        f"chmod 644 {HELLO_FILE} && systemd-run --unit=bench-hello "
        "--uid=transaction-api --gid=transaction-api "
        f"--setenv=HTTP_PORT={HELLO_PORT} --setenv=WEB_CONCURRENCY={gunicorn_workers} "
        f"--setenv=LOG_LEVEL=WARNING {TLS_ENV} "
        f"/opt/transaction-api/venv/bin/python {HELLO_FILE}",
    )
    wait_until(
        lambda: http_status(api_address, HELLO_PORT, "/health", ca_file) == 200,
        30,
        "the bare app",
    )


def start_direct_api(api_host: str, api_address: str, ca_file: Path) -> None:
    """A second Transaction API from the service's own environment file, on
    API_PORT, without TLS_CLIENT_CA_FILE (see the module's docstring)."""
    dexec(
        api_host,
        "systemd-run --unit=bench-api --uid=transaction-api --gid=transaction-api "
        "sh -c 'set -a; . "
        f"{CONFIG_DIR}/transaction-api.env; HTTP_PORT={API_PORT}; unset TLS_CLIENT_CA_FILE; "
        "exec /opt/transaction-api/venv/bin/transaction-api'",
    )
    wait_until(
        lambda: http_status(api_address, API_PORT, "/ready", ca_file) == 200,
        30,
        "the Transaction API beside the service",
    )


def pause_workers(worker_hosts: list[str]) -> None:
    """Stop every loyalty-worker unit; the stream keeps what the API accepts.

    On a machine this small the workers share its cores with the API host
    and would award, during the API's rows only, what the API accepts,
    taking CPU from it that the bare app never loses.
    """
    for worker in worker_hosts:
        dexec(worker, "systemctl stop 'loyalty-worker@*'", check=False)


def api_against_bare_app(
    api_host: str,
    api_address: str,
    secrets: Path,
    seconds: float,
    clients: int,
    metered_hosts: list[str],
    netns: str | None = None,
) -> dict[str, Any]:
    """Requests/s of the bare app and of the Transaction API (token reused,
    new token per request), loaded in turn, and the API's ratios to the app.

    The caller pauses the workers first (pause_workers).
    """
    key = signing_key(secrets)
    token = make_token(key, 1)
    gunicorn_workers = api_gunicorn_workers(api_host)
    ca_file = secrets / "tls" / "ca.crt"
    start_bare_app(api_host, api_address, gunicorn_workers, ca_file)
    start_direct_api(api_host, api_address, ca_file)
    api_url = f"https://{api_address}:{API_PORT}/transactions"
    targets = [
        http_load.Target("hello", f"https://{api_address}:{HELLO_PORT}/transactions", token),
        http_load.Target("reused", api_url, token),
        http_load.Target("fresh", api_url, fresh_tokens=partial(new_tokens, key)),
    ]
    log(f"load: wrk, {clients} connections, {seconds:g} s per target in {ROUNDS} rounds")
    try:
        with CpuMeter(metered_hosts) as cpu:
            http_load.drive(targets, seconds, ROUNDS, clients, netns)
    finally:
        dexec(api_host, "systemctl stop bench-hello bench-api", check=False)
    hello, reused, fresh = targets
    figures = {
        "clients": clients,
        "seconds_per_target": seconds,
        "gunicorn_workers": gunicorn_workers,
        **http_load.throughput_figures(hello, reused, fresh),
        "latency_us_p50_p99": {t.name: t.latencies_us for t in targets},
        "http_cpu": cpu.summary(),
        "load_average_after_http": load_average(),
        "http_command": f"{wrk_prefix(netns)}wrk -t1 -c{clients} -d<turn> -s bench/post.lua, "
        f"from this machine to {api_url} and "
        f"https://{api_address}:{HELLO_PORT}/transactions (bare Bottle), "
        f"{seconds:g} s each in {ROUNDS} alternating turns",
    }
    log(
        f"bare app {hello.rps:.0f}/s, Transaction API {reused.rps:.0f}/s "
        f"(new token each {fresh.rps:.0f}/s), ratio {figures['ratio']} "
        f"({figures['ratio_fresh_token']})"
    )
    return figures


def through_router(
    router_address: str, secrets: Path, seconds: float, clients: int, netns: str | None = None
) -> dict[str, Any]:
    """Requests/s of POST /transactions through HAProxy (it cuts the /transactions prefix)."""
    token = make_token(signing_key(secrets), 1)
    url = f"https://{router_address}/transactions/transactions"
    router = http_load.Target("router", url, token)
    turn = max(1, math.ceil(seconds / 2))
    http_load.drive([router], turn, 1, clients, netns)
    log(f"through the router: {router.rps:.0f}/s ({router.failures} failed)")
    return {
        "router_transactions_rps": round(router.rps, 1),
        "router_failures": router.failures,
        "router_client_cores": http_load.client_cores([router]),
        "router_latency_us_p50_p99": router.latencies_us,
        "router_command": f"{wrk_prefix(netns)}wrk -t1 -c{clients} -d{turn}s "
        f"-s bench/post.lua {url}",
    }


def wrk_prefix(netns: str | None) -> str:
    return "nsenter --net=<bench-load's namespace> " if netns else ""
