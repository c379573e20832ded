"""What site.yml built on a mixed fleet of Debian 12 and Debian 13 hosts: one
primary and two replicas, three Sentinels that agree on it, the services
pointed at the Sentinels, each with wheels for its own host's Python, the
floating address on the first router host; and a play with a host whose
Python cannot be served stops before it changes anything."""

from __future__ import annotations

import json
import re
import tempfile
import time
from pathlib import Path

from helpers import (
    ADDRESSES,
    EDGE_HOSTS,
    FIGURES,
    REDIS_HOSTS,
    RELEASES,
    REPO,
    VIP,
    WORKER_HOSTS,
    os_release,
    request,
    role_of,
    run_playbooks,
    secret,
    sentinel_view,
    synced_replica,
    vip_holder,
)
from host_commands import dexec

SENTINELS = ",".join(f"{ADDRESSES[h]}:26379" for h in REDIS_HOSTS)


def test_every_sentinel_watches_the_first_redis_host_with_two_replicas_and_two_peers():
    deadline = time.monotonic() + 60
    while True:
        views = {host: sentinel_view(host) for host in REDIS_HOSTS}
        wanted = (ADDRESSES["platform_ha-redis-1"], "2", "2", "2")
        if all(view == wanted for view in views.values()):
            break
        assert time.monotonic() < deadline, f"Sentinels' views: {views}"
        time.sleep(2)
    assert role_of(ADDRESSES["platform_ha-redis-1"]) == "master"
    for host in REDIS_HOSTS[1:]:
        assert synced_replica(ADDRESSES[host]), f"{host} is not a synced replica"


def test_each_host_runs_its_release_with_that_releases_redis_and_haproxy():
    versions = {}
    for host, release in RELEASES.items():
        assert os_release(host) == release, host
        command = "haproxy -v" if host in EDGE_HOSTS else "redis-server --version"
        out = dexec(host, "sh", "-c", command).stdout
        versions[host] = re.search(r"(?:version |v=)(\d+\.\d+)", out).group(1)
    FIGURES["versions"] = versions
    expected = {
        ("trixie", True): "3.0",
        ("bookworm", True): "2.6",
        ("trixie", False): "8.0",
        ("bookworm", False): "7.0",
    }
    for host, release in RELEASES.items():
        assert versions[host] == expected[(release, host in EDGE_HOSTS)], (host, versions[host])


def host_python(host: str) -> str:
    return dexec(
        host, "python3", "-c", "import sys; print('%d.%d' % sys.version_info[:2])"
    ).stdout.strip()


def test_each_service_runs_on_wheels_for_its_own_hosts_python():
    services = [(h, s) for h in EDGE_HOSTS for s in ("auth-api", "transaction-api")]
    services += [(h, "loyalty-worker") for h in WORKER_HOSTS]
    pythons = {}
    for host, service in services:
        python = host_python(host)
        pythons[host] = python
        tag = "cp" + python.replace(".", "")
        wheels = dexec(host, "tar", "-tf", f"/opt/{service}/wheelhouse.tar").stdout.split()
        binary = [w for w in wheels if w.startswith("cffi-")]
        assert binary and all(f"-{tag}-" in w for w in binary), (host, service, binary)
        # The compiled parts import in the service's own interpreter.
        out = dexec(
            host,
            f"/opt/{service}/venv/bin/python",
            "-c",
            "import sys, _cffi_backend, cryptography.hazmat.bindings._rust;"
            " print('%d.%d' % sys.version_info[:2])",
        ).stdout.strip()
        assert out == python, (host, service, out)
    FIGURES["pythons"] = pythons
    assert len(set(pythons.values())) == 2, f"expected two Pythons in the fleet: {pythons}"


def test_a_host_whose_python_cannot_be_served_stops_the_play_before_any_change():
    host = "platform_ha-edge-2"
    with tempfile.TemporaryDirectory() as tmp:
        extra = Path(tmp) / "unservable.yml"
        # An inventory source of its own, merged into the scenario's: only
        # this host claims a Python that no pinned wheel supports.
        extra.write_text(
            json.dumps({"all": {"hosts": {host: {"service_wheelhouse_python_version": "3.4.10"}}}})
        )
        # The wheelhouse play, then the service's, as site.yml runs them.
        result = run_playbooks(
            REPO / "playbooks" / "wheelhouses.yml",
            REPO / "playbooks" / "auth_api.yml",
            options=("-i", str(extra)),
            timeout=300,
        )
    assert result.returncode != 0, "the play went on with a host it cannot serve"
    report, _ = json.JSONDecoder().raw_decode(result.stdout[result.stdout.index("{") :])
    changed = {h: stats["changed"] for h, stats in report["stats"].items()}
    assert all(count == 0 for count in changed.values()), f"changes before the stop: {changed}"
    messages = [
        outcome.get("msg", "")
        for play in report["plays"]
        for task in play["tasks"]
        for outcome in task["hosts"].values()
        if outcome.get("failed")
    ]
    wanted = f"{host} runs Python 3.4.10 on x86_64"
    assert any(wanted in m for m in messages), messages
    FIGURES["unservable_python_message"] = next(m for m in messages if wanted in m)[:200]


def test_sentinel_refuses_clients_without_its_password():
    out = dexec(REDIS_HOSTS[0], "redis-cli-tls", "-p", "26379", "SENTINEL", "masters").stdout
    assert "NOAUTH" in out


def test_redis_server_cannot_rewrite_its_configuration():
    out = dexec(
        REDIS_HOSTS[1],
        "redis-cli-tls",
        "--no-auth-warning",
        "CONFIG",
        "REWRITE",
        env={"REDISCLI_AUTH": secret("redis/admin.password")},
    ).stdout
    assert "ERR" in out, out


def test_services_find_redis_through_the_sentinels():
    for host in EDGE_HOSTS:
        env = dexec(host, "cat", "/etc/transaction-api/transaction-api.env").stdout
        assert f'REDIS_SENTINELS="{SENTINELS}"' in env
        assert 'REDIS_SENTINEL_MASTER="loyalty"' in env
        assert 'REDIS_SENTINEL_PASSWORD_FILE="/etc/transaction-api/sentinel.password"' in env
        assert 'REDIS_WAIT_REPLICAS="1"' in env
        mode = dexec(host, "stat", "-c", "%a %U", "/etc/transaction-api/sentinel.password").stdout
        assert mode.split()[0] == "640"
    for host in WORKER_HOSTS:
        env = dexec(host, "cat", "/etc/loyalty-worker/loyalty-worker.env").stdout
        assert f'REDIS_SENTINELS="{SENTINELS}"' in env
        assert "REDIS_WAIT_REPLICAS" not in env


def test_floating_address_is_on_the_first_router_and_answers():
    deadline = time.monotonic() + 30
    while vip_holder() != EDGE_HOSTS[0]:
        assert time.monotonic() < deadline, f"floating address on {vip_holder()}"
        time.sleep(1)
    status, _, _ = request("GET", "/transactions/health")
    assert status == 200, f"https://{VIP}/transactions/health -> {status}"
    for host in EDGE_HOSTS:
        state = dexec(host, "systemctl", "is-active", "keepalived").stdout.strip()
        assert state == "active"


def test_keepalived_check_prints_no_warning_on_either_release():
    for host in EDGE_HOSTS:
        config = "/etc/keepalived/keepalived.conf"
        check = dexec(host, "keepalived", "-t", "-f", config, check=False)
        assert check.returncode == 0, (host, check.stderr)
        assert (check.stdout + check.stderr).strip() == "", (host, check.stdout, check.stderr)
        log = dexec(host, "journalctl", "-u", "keepalived", "-b", "--no-pager", "-o", "cat").stdout
        assert "deprecat" not in log.lower() and "warning" not in log.lower(), (host, log)


def test_exposure_of_the_new_units():
    scores = {}
    for host, unit in (
        (REDIS_HOSTS[0], "redis-sentinel.service"),
        (REDIS_HOSTS[0], "redis-server.service"),
        (EDGE_HOSTS[0], "keepalived.service"),
    ):
        out = dexec(host, "systemd-analyze", "security", "--no-pager", unit, check=False).stdout
        match = re.search(r"Overall exposure level for \S+: ([0-9.]+)", out)
        scores[unit] = float(match.group(1)) if match else None
    FIGURES["exposure"] = scores
    assert scores["redis-sentinel.service"] is not None and scores["redis-sentinel.service"] <= 4.0
