"""Shared by the platform scenario's tests: addresses, secrets, HTTP, Redis.

Everything here talks only to the scenario's own hosts (172.30.10.0/24,
reached from the control machine over the Docker network, or inside a host
through `docker exec`), always with a timeout.
"""

from __future__ import annotations

import functools
import os
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import http_requests
import loyalty_redis
from host_commands import dexec
from playbook_runs import ansible_environment, ansible_playbook, inventory_directory
from tokens import Tokens

REPO = Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY") or Path(__file__).resolve().parents[3])
SCENARIO = REPO / "molecule" / "platform"
SECRETS = REPO / ".secrets"
FIGURES_FILE = REPO / "build" / "platform-figures.json"

# Inventory of the scenario (molecule.yml, host_vars/).
ADDRESSES = {
    "platform-edge": "172.30.10.10",
    "platform-redis": "172.30.10.11",
    "platform-api-1": "172.30.10.12",
    "platform-api-2": "172.30.10.13",
    "platform-worker-1": "172.30.10.21",
    "platform-worker-2": "172.30.10.22",
    "platform-outsider": "172.30.10.30",
}
ROUTER = ADDRESSES["platform-edge"]
ROUTER_PORT = 443
# The router's plain port: it only redirects to HTTPS.
ROUTER_PLAIN_PORT = 80
CA_FILE = SECRETS / "tls" / "ca.crt"
API_HOSTS = ["platform-api-1", "platform-api-2"]
WORKER_HOSTS = ["platform-worker-1", "platform-worker-2"]
ALL_HOSTS = list(ADDRESSES)

USERS = {"alice": 1, "bob": 2, "charlie": 3}
STAMPS_PER_VOUCHER = 10  # the loyalty_worker role's default

# Figures the issue asks for, printed at the end of the run (conftest.py).
FIGURES: dict[str, object] = {}
# Values one test leaves for a later one (e.g. the token whose expiry is checked).
STATE: dict[str, object] = {}


def log(message: str) -> None:
    """One line on the real terminal, also under pytest's capture."""
    sys.__stdout__.write(f"[platform] {message}\n")
    sys.__stdout__.flush()


def demo_password() -> str:
    return (SECRETS / "users" / "demo.password").read_text().strip()


def admin_password() -> str:
    return (SECRETS / "redis" / "admin.password").read_text().strip()


# --- Inside a host (docker and dexec come from host_commands) --------------------


def host_python(host: str, code: str, *args: str, timeout: float = 60) -> str:
    """Run a Python snippet inside a host, return its standard output."""
    return dexec(host, "python3", "-c", code, *args, timeout=timeout).stdout


# --- Redis (as administrator, on the Redis host itself) -------------------------


def redis_cli(*args: str, timeout: float = 30) -> str:
    result = dexec(
        "platform-redis",
        "redis-cli-tls",
        "--no-auth-warning",
        *args,
        env={"REDISCLI_AUTH": admin_password()},
        timeout=timeout,
    )
    return result.stdout.strip()


def redis_lines(commands: list[str], timeout: float = 120) -> list[str]:
    """Send many commands (one a line) in one redis-cli run; one reply a line."""
    result = dexec(
        "platform-redis",
        "redis-cli-tls",
        "--no-auth-warning",
        env={"REDISCLI_AUTH": admin_password()},
        stdin="".join(c + "\n" for c in commands),
        timeout=timeout,
    )
    return result.stdout.splitlines()


def loyalty_state(user_id: int) -> dict[str, int]:
    return loyalty_redis.loyalty_state(redis_cli, user_id)


def pending_count() -> int:
    out = redis_cli("XPENDING", "loyalty:transactions", "loyalty-workers").splitlines()
    return int(out[0]) if out and out[0].lstrip("-").isdigit() else 0


def group_info() -> dict[str, str]:
    """XINFO GROUPS of the stream for the workers' group (name -> value)."""
    return loyalty_redis.group_info(redis_cli)


def wait_until_drained(timeout: float = 120) -> None:
    """Until the workers have read and settled everything queued so far."""
    loyalty_redis.wait_until_drained(group_info, timeout)


# --- HTTP through the router ----------------------------------------------------


# One request through the router (`host=`, `port=` may name another server);
# returns (status, headers, parsed JSON or text).
@functools.cache
def tls() -> ssl.SSLContext:
    """Trusts the platform's CA only; host names (here the router's address,
    in its certificate) are checked."""
    return http_requests.tls_context(str(CA_FILE))


def request(*args: Any, **kwargs: Any) -> http_requests.Answer:
    """Over HTTPS to the router unless `host=`, `port=` or `context=` say otherwise."""
    kwargs.setdefault("host", ROUTER)
    kwargs.setdefault("port", ROUTER_PORT)
    kwargs.setdefault("context", tls())
    return http_requests.request(*args, **kwargs)


# One cache of tokens for every test of the run: the router limits how
# often one address may ask for one.
TOKENS = Tokens(request, demo_password)


# What the router presents to the APIs, and trusts: the edge host's own
# certificate, key and CA, as the Auth API on the same host has them.
CURL_TLS = [
    "--cacert",
    "/etc/auth-api/tls-ca.pem",
    "--cert",
    "/etc/auth-api/tls-certificate.pem",
    "--key",
    "/etc/auth-api/tls-private-key.pem",
]


def curl_from_edge(address: str, path: str, token: str, method: str = "POST") -> tuple[int, str]:
    """From the router host (the only host the firewall lets reach an API)."""
    command = [
        "curl",
        "-sS",
        *CURL_TLS,
        "--max-time",
        "10",
        "-o",
        "/dev/stdout",
        "-w",
        "\n%{http_code}",
        "-X",
        method,
        "-H",
        f"Authorization: Bearer {token}",
    ]
    if method == "POST":
        command += ["--data-urlencode", "amount=100", "--data-urlencode", "currency=EUR"]
    out = dexec("platform-edge", *command, f"https://{address}:5000{path}", timeout=30).stdout
    body, _, code = out.rpartition("\n")
    return int(code), body


def curl_ready_from_edge(timeout: float = 120) -> None:
    """Until both API hosts answer /ready from the router host and the
    router counts them UP again."""
    deadline = time.monotonic() + timeout
    while True:
        states = []
        for host in API_HOSTS:
            out = dexec(
                "platform-edge",
                "curl",
                "-s",
                *CURL_TLS,
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--max-time",
                "3",
                f"https://{ADDRESSES[host]}:5000/ready",
                check=False,
                timeout=30,
            )
            states.append(out.stdout.strip())
        stat = dexec(
            "platform-edge",
            "sh",
            "-c",
            "echo 'show stat transaction_api 4 -1' | socat stdio /run/haproxy/admin.sock",
            check=False,
            timeout=30,
        ).stdout
        up = [
            line.split(",")[17]
            for line in stat.splitlines()
            if line.startswith("transaction_api,platform-")
        ]
        if states == ["200", "200"] and up == ["UP", "UP"]:
            return
        assert time.monotonic() < deadline, f"API hosts not back: /ready {states}, router {up}"
        time.sleep(1)


# --- Ansible, as Molecule runs it ----------------------------------------------


def run_playbook(playbook: Path, *extra: str, timeout: float = 900) -> subprocess.CompletedProcess:
    command = [ansible_playbook(), "-i", inventory_directory(), str(playbook), *extra]
    return subprocess.run(
        command,
        env=ansible_environment(REPO),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
