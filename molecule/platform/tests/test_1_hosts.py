"""Each host on its own (testinfra): units, users, hardening, listening ports."""

from __future__ import annotations

import re

import pytest
from helpers import FIGURES, log

# What the inventory puts on each host: {unit: user of its serving process}.
SERVICES = {
    "platform-edge": {"haproxy.service": "haproxy", "auth-api.service": "auth-api"},
    "platform-redis": {"redis-server.service": "redis"},
    "platform-api-1": {"transaction-api.service": "transaction-api"},
    "platform-api-2": {"transaction-api.service": "transaction-api"},
    "platform-worker-1": {
        "loyalty-worker@1.service": "loyalty-worker",
        "loyalty-worker@2.service": "loyalty-worker",
    },
    "platform-worker-2": {
        "loyalty-worker@1.service": "loyalty-worker",
        "loyalty-worker@2.service": "loyalty-worker",
    },
    "platform-outsider": {},
}

LISTENING = {
    "platform-edge": [
        "tcp://0.0.0.0:80",
        "tcp://0.0.0.0:443",
        "tcp://127.0.0.1:8404",
        "tcp://0.0.0.0:5000",
    ],
    "platform-redis": ["tcp://127.0.0.1:6379", "tcp://172.30.10.11:6379"],
    "platform-api-1": ["tcp://0.0.0.0:5000"],
    "platform-api-2": ["tcp://0.0.0.0:5000"],
    "platform-worker-1": [],
    "platform-worker-2": [],
    "platform-outsider": [],
}

# The platform's own units (python_service role) and the Debian units the
# roles configure; every one must score at most this.
MAX_EXPOSURE = 4.0


def services_of(host):
    return SERVICES[host.backend.get_hostname()]


def test_units_active_and_enabled(host):
    for unit in services_of(host):
        service = host.service(unit)
        assert service.is_running, f"{unit} is not active"
        assert service.is_enabled or "@" in unit, f"{unit} is not enabled"
    assert host.run("systemctl is-system-running").stdout.strip() in ("running", "degraded")


def test_nothing_installed_on_the_outsider(host):
    if host.backend.get_hostname() != "platform-outsider":
        pytest.skip("only the outsider")
    for unit in ("auth-api", "transaction-api", "redis-server", "haproxy", "loyalty-worker@1"):
        assert not host.service(unit).is_running


def test_firewall_loaded_on_platform_hosts(host):
    if not services_of(host):
        pytest.skip("the outsider runs no firewall")
    assert host.service("nftables.service").is_enabled
    table = host.run("nft list table inet loyalty")
    assert table.rc == 0, table.stderr
    assert "policy drop" in table.stdout


def test_each_service_runs_as_its_own_user(host):
    # The user each service's processes run as on the host, by service (the
    # instances of loyalty-worker@ are one service).
    seen: dict[str, str] = {}
    for unit, user in services_of(host).items():
        pid = host.run(f"systemctl show -p MainPID --value {unit}").stdout.strip()
        assert pid not in ("", "0"), f"{unit} has no main process"
        # The process that serves: HAProxy's master stays root and its
        # worker drops to haproxy; every other service's main process is it.
        users = host.run(f"ps -o user= -p {pid} --ppid {pid}").stdout.split()
        if unit == "haproxy.service":
            users = users[1:]
        assert users, f"no process for {unit}"
        assert set(users) == {user}, f"{unit} runs as {users}, expected {user}"
        seen[unit.split("@")[0]] = users[0]
    # No two services share a user.
    assert len(set(seen.values())) == len(seen), seen


def test_exposure_scores(host):
    name = host.backend.get_hostname()
    scores = {}
    for unit in services_of(host):
        out = host.run(f"systemd-analyze security --no-pager {unit}")
        assert out.rc in (0, 1), out.stderr
        match = re.search(r"Overall exposure level for \S+: ([0-9.]+)", out.stdout)
        assert match, out.stdout[-500:]
        scores[unit] = float(match.group(1))
    exposure = FIGURES.setdefault("exposure", {})
    for unit, score in scores.items():
        exposure[f"{name}:{unit}"] = score
        log(f"exposure {name} {unit}: {score}")
    too_high = {u: s for u, s in scores.items() if s > MAX_EXPOSURE}
    assert not too_high, f"exposure above {MAX_EXPOSURE}: {too_high}"


def test_listening_ports(host):
    for address in LISTENING[host.backend.get_hostname()]:
        assert host.socket(address).is_listening, f"nothing listens on {address}"


def test_redis_keeps_an_append_only_file(host):
    if host.backend.get_hostname() != "platform-redis":
        pytest.skip("only the Redis host")
    conf = host.file("/etc/redis/redis.conf").content_string
    assert re.search(r"^appendonly yes", conf, re.M)
