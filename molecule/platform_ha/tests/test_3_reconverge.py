"""After the failovers: the stopped hosts come back, the old primary (Redis
7.0 on Debian 12) becomes a synced replica of the new one (Redis 8.0 on
Debian 13), the floating address stays where it moved, and
running the Redis plays again neither demotes the new primary nor keeps
reporting changes."""

from __future__ import annotations

import time

from helpers import (
    ADDRESSES,
    FIGURES,
    REDIS_HOSTS,
    REPO,
    STOPPED,
    changed_tasks,
    current_primary,
    log,
    request,
    role_of,
    run_playbooks,
    synced_replica,
    vip_holder,
)
from host_commands import dexec, docker

PLAYBOOKS = [REPO / "playbooks" / "redis.yml", REPO / "playbooks" / "redis_sentinel.yml"]


def role_or_error(address: str) -> str:
    try:
        return role_of(address)
    except AssertionError as error:
        return str(error)


def synced_or_false(address: str) -> bool:
    try:
        return synced_replica(address)
    except AssertionError:
        return False


def test_stopped_hosts_come_back_without_taking_over():
    primary = current_primary()
    started = time.monotonic()
    stopped = set(STOPPED)
    for host in sorted(stopped):
        docker("start", host, timeout=120)
    for host in sorted(stopped):
        # Until systemd in the host has started every unit.
        dexec(host, "systemctl", "is-system-running", "--wait", check=False, timeout=180)
        STOPPED.discard(host)
    deadline = time.monotonic() + 120
    old = [h for h in stopped if h in REDIS_HOSTS]
    while not all(synced_or_false(ADDRESSES[h]) for h in old):
        assert time.monotonic() < deadline, (
            f"the old primary is not a synced replica: {[role_or_error(ADDRESSES[h]) for h in old]}"
        )
        time.sleep(1)
    FIGURES["old_primary_replica_after_start_s"] = round(time.monotonic() - started, 1)
    assert current_primary() == primary
    holder = vip_holder()
    status, _, _ = request("GET", "/transactions/health")
    assert status == 200
    assert holder not in stopped, f"the floating address went back to {holder}"


def test_running_the_redis_plays_again_keeps_the_new_primary():
    primary = current_primary()
    started = time.monotonic()
    first = changed_tasks(run_playbooks(*PLAYBOOKS))
    FIGURES["reconverge_seconds"] = round(time.monotonic() - started, 1)
    FIGURES["reconverge_changed"] = len(first)
    log(f"changed after the failovers: {first}")
    assert current_primary() == primary
    assert role_of(primary) == "master"
    # Only the replication file follows the Sentinels' new view.
    assert all(
        name.endswith("Write /etc/redis/replication.conf from the current primary")
        for name in first
    ), first
    second = changed_tasks(run_playbooks(*PLAYBOOKS))
    FIGURES["reconverge_again_changed"] = len(second)
    assert second == [], second
    assert current_primary() == primary
