"""Shared by the platform_ha scenario's tests: addresses, secrets, HTTP, Redis.

Everything here talks only to the scenario's own hosts (172.30.11.0/24,
reached from the control machine over the Docker network, or inside a host
through `docker exec`), always with a timeout.
"""

from __future__ import annotations

import functools
import json
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
SECRETS = REPO / ".secrets"
FIGURES_FILE = REPO / "build" / "platform_ha-figures.json"

# Inventory of the scenario (molecule.yml, host_vars/, group_vars/).
ADDRESSES = {
    "platform_ha-edge-1": "172.30.11.10",
    "platform_ha-edge-2": "172.30.11.11",
    "platform_ha-redis-1": "172.30.11.21",
    "platform_ha-redis-2": "172.30.11.22",
    "platform_ha-redis-3": "172.30.11.23",
}
HOST_BY_ADDRESS = {address: host for host, address in ADDRESSES.items()}
VIP = "172.30.11.100"
ROUTER_PORT = 443
CA_FILE = SECRETS / "tls" / "ca.crt"
EDGE_HOSTS = ["platform_ha-edge-1", "platform_ha-edge-2"]
REDIS_HOSTS = ["platform_ha-redis-1", "platform_ha-redis-2", "platform_ha-redis-3"]
WORKER_HOSTS = ["platform_ha-redis-2", "platform_ha-redis-3"]
# The Debian release each host starts with (molecule.yml's images): a mixed
# fleet, which test_4_migration moves to Debian 13 host by host.
RELEASES = {
    "platform_ha-edge-1": "trixie",
    "platform_ha-edge-2": "bookworm",
    "platform_ha-redis-1": "bookworm",
    "platform_ha-redis-2": "trixie",
    "platform_ha-redis-3": "trixie",
}
MASTER_NAME = "loyalty"

USERS = {"alice": 1, "bob": 2, "charlie": 3}

# Figures printed at the end of the run (conftest.py).
FIGURES: dict[str, object] = {}
# Hosts the tests stopped, so that later tests know which ones are down.
STOPPED: set[str] = set()


def log(message: str) -> None:
    """One line on the real terminal, also under pytest's capture."""
    sys.__stdout__.write(f"[platform_ha] {message}\n")
    sys.__stdout__.flush()


def secret(name: str) -> str:
    return (SECRETS / name).read_text().strip()


def demo_password() -> str:
    return secret("users/demo.password")


def running_redis_host() -> str:
    """A Redis host that is up, to run redis-cli on."""
    return next(h for h in REDIS_HOSTS if h not in STOPPED)


# --- Sentinel and Redis ---------------------------------------------------------


def sentinel_cli(*args: str, host: str | None = None, timeout: float = 30) -> str:
    result = dexec(
        host or running_redis_host(),
        "redis-cli-tls",
        "-p",
        "26379",
        "--no-auth-warning",
        *args,
        env={"REDISCLI_AUTH": secret("redis/sentinel.password")},
        timeout=timeout,
    )
    return result.stdout.strip()


def sentinel_view(host: str) -> tuple[str | None, ...]:
    """What the Sentinel on `host` knows of the primary: its address, the
    number of replicas, of other Sentinels, and the quorum."""
    lines = sentinel_cli("SENTINEL", "MASTER", MASTER_NAME, host=host).splitlines()
    info = dict(zip(lines[0::2], lines[1::2], strict=False))
    return tuple(info.get(k) for k in ("ip", "num-slaves", "num-other-sentinels", "quorum"))


def current_primary() -> str:
    """Address of the primary as the Sentinels see it."""
    lines = sentinel_cli("SENTINEL", "get-master-addr-by-name", MASTER_NAME).splitlines()
    return lines[0]


def redis_cli(*args: str, address: str | None = None, timeout: float = 30) -> str:
    """As administrator, against the current primary (or `address`)."""
    result = dexec(
        running_redis_host(),
        "redis-cli-tls",
        "-h",
        address or current_primary(),
        "--no-auth-warning",
        *args,
        env={"REDISCLI_AUTH": secret("redis/admin.password")},
        timeout=timeout,
    )
    return result.stdout.strip()


def redis_lines(commands: list[str], timeout: float = 120) -> list[str]:
    """Many commands (one a line) in one redis-cli run on the primary."""
    result = dexec(
        running_redis_host(),
        "redis-cli-tls",
        "-h",
        current_primary(),
        "--no-auth-warning",
        env={"REDISCLI_AUTH": secret("redis/admin.password")},
        stdin="".join(c + "\n" for c in commands),
        timeout=timeout,
    )
    return result.stdout.splitlines()


def replication_info(address: str) -> dict[str, str]:
    """INFO replication of that server, as a mapping."""
    lines = redis_cli("INFO", "replication", address=address).splitlines()
    return dict(line.strip().split(":", 1) for line in lines if ":" in line)


def role_of(address: str) -> str:
    """`master` or `slave`, from INFO replication of that server."""
    return replication_info(address).get("role", "unknown")


def synced_replica(address: str) -> bool:
    """A replica whose link to its primary is up: it loaded the primary's
    data and follows its stream of writes."""
    info = replication_info(address)
    return info.get("role") == "slave" and info.get("master_link_status") == "up"


def wait_for_sentinels_to_agree(primary_address: str, timeout: float = 60) -> None:
    """Until every Sentinel names primary_address, with two replicas and two
    other Sentinels known."""
    deadline = time.monotonic() + timeout
    while True:
        views = {h: sentinel_view(h) for h in REDIS_HOSTS}
        if all(view == (primary_address, "2", "2", "2") for view in views.values()):
            return
        assert time.monotonic() < deadline, f"Sentinels' views: {views}"
        time.sleep(2)


def os_release(host: str) -> str:
    """VERSION_CODENAME of the host's /etc/os-release."""
    for line in dexec(host, "cat", "/etc/os-release").stdout.splitlines():
        if line.startswith("VERSION_CODENAME="):
            return line.split("=", 1)[1].strip()
    return "unknown"


def loyalty_state(user_id: int) -> dict[str, int]:
    return loyalty_redis.loyalty_state(redis_cli, user_id)


def group_info() -> dict[str, str]:
    return loyalty_redis.group_info(redis_cli)


def wait_until_drained(timeout: float = 120) -> None:
    """Until the workers have read and settled everything queued so far; a
    failed read (no primary for a moment) is tried again."""
    loyalty_redis.wait_until_drained(group_info, timeout, retry_errors=True)


def vip_holder() -> str | None:
    """The edge host whose interface carries the floating address."""
    for host in EDGE_HOSTS:
        if host in STOPPED:
            continue
        out = dexec(host, "ip", "-4", "-o", "addr", "show", check=False, timeout=30).stdout
        if f" {VIP}/" in out:
            return host
    return None


# --- HTTP through the floating address --------------------------------------------


# One request through the floating address; returns (status, headers,
# parsed JSON or text).
@functools.cache
def tls() -> ssl.SSLContext:
    """Trusts the platform's CA only; the floating address is in both
    routers' certificates, and is checked."""
    return http_requests.tls_context(str(CA_FILE))


def request(*args: Any, **kwargs: Any) -> http_requests.Answer:
    """Over HTTPS to the floating address unless keyword arguments say otherwise."""
    kwargs.setdefault("host", VIP)
    kwargs.setdefault("port", ROUTER_PORT)
    kwargs.setdefault("context", tls())
    return http_requests.request(*args, **kwargs)


# One cache of tokens for every test of the run: the router limits how
# often one address may ask for one.
TOKENS = Tokens(request, demo_password)


# --- Ansible, as Molecule runs it ----------------------------------------------


def run_playbooks(
    *playbooks: Path, options: tuple[str, ...] = (), timeout: float = 600
) -> subprocess.CompletedProcess:
    """ansible-playbook on the scenario's inventory, results as JSON;
    `options` go before the playbooks (e.g. --limit, another -i)."""
    env = ansible_environment(REPO)
    env["ANSIBLE_STDOUT_CALLBACK"] = "ansible.builtin.json"
    # Only the timer besides: its one line comes after the JSON document.
    env["ANSIBLE_CALLBACKS_ENABLED"] = "ansible.posix.timer"
    inventory = inventory_directory()
    command = [ansible_playbook()]
    if inventory:
        command += ["-i", inventory]
    command += [*options, *(str(p) for p in playbooks)]
    return subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def play_outcome(result) -> tuple[list[str], dict[str, list[str]]]:
    """From the json callback: "host: task" of every task that changed
    something, and the messages of the failed tasks by host."""
    report, _ = json.JSONDecoder().raw_decode(result.stdout[result.stdout.index("{") :])
    changed: list[str] = []
    failures: dict[str, list[str]] = {}
    for play in report["plays"]:
        for task in play["tasks"]:
            for host, outcome in task["hosts"].items():
                if outcome.get("changed"):
                    changed.append(f"{host}: {task['task']['name']}")
                if outcome.get("failed"):
                    failures.setdefault(host, []).append(str(outcome.get("msg", "")))
    return changed, failures


def changed_tasks(result) -> list[str]:
    """Tasks that changed something in a run that must have succeeded."""
    assert result.returncode == 0, (result.stdout[-3000:], result.stderr[-3000:])
    return play_outcome(result)[0]
