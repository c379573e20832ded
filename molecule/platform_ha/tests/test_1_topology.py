"""What site.yml built: one primary and two replicas, three Sentinels that
agree on it, the services pointed at the Sentinels, the floating address on
the first router host."""

from __future__ import annotations

import re
import time

from helpers import (
    ADDRESSES,
    EDGE_HOSTS,
    FIGURES,
    REDIS_HOSTS,
    VIP,
    WORKER_HOSTS,
    request,
    role_of,
    secret,
    sentinel_cli,
    vip_holder,
)
from host_commands import dexec

SENTINELS = ",".join(f"{ADDRESSES[h]}:26379" for h in REDIS_HOSTS)


def test_every_sentinel_watches_the_first_redis_host_with_two_replicas_and_two_peers():
    deadline = time.monotonic() + 60
    while True:
        views = {}
        for host in REDIS_HOSTS:
            lines = sentinel_cli("SENTINEL", "MASTER", "loyalty", host=host).splitlines()
            info = dict(zip(lines[0::2], lines[1::2], strict=False))
            views[host] = (
                info.get("ip"),
                info.get("num-slaves"),
                info.get("num-other-sentinels"),
                info.get("quorum"),
            )
        wanted = (ADDRESSES["platform_ha-redis-1"], "2", "2", "2")
        if all(view == wanted for view in views.values()):
            break
        assert time.monotonic() < deadline, f"Sentinels' views: {views}"
        time.sleep(2)
    assert role_of(ADDRESSES["platform_ha-redis-1"]) == "master"
    for host in REDIS_HOSTS[1:]:
        assert role_of(ADDRESSES[host]) == "slave"


def test_sentinel_refuses_clients_without_its_password():
    out = dexec(REDIS_HOSTS[0], "redis-cli", "-p", "26379", "SENTINEL", "masters").stdout
    assert "NOAUTH" in out


def test_redis_server_cannot_rewrite_its_configuration():
    out = dexec(
        REDIS_HOSTS[1],
        "redis-cli",
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
    assert status == 200, f"http://{VIP}/transactions/health -> {status}"
    for host in EDGE_HOSTS:
        state = dexec(host, "systemctl", "is-active", "keepalived").stdout.strip()
        assert state == "active"


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
