"""After the failovers: the stopped hosts come back and the floating address
stays where it moved. The old primary runs Redis 7.0 (Debian 12) and the new
one Redis 8.0 (Debian 13): Sentinel makes the old primary a replica, which
cannot load the newer RDB format and never syncs, so running the Redis plays
again stops that host with a sentence saying why and what to do, keeps the
new primary on every other host and reports no change the second time.
test_4_migration then replaces that host."""

from __future__ import annotations

import time

from helpers import (
    ADDRESSES,
    FIGURES,
    REDIS_HOSTS,
    RELEASES,
    REPO,
    STOPPED,
    current_primary,
    log,
    play_outcome,
    replication_info,
    request,
    role_of,
    run_playbooks,
    synced_replica,
    vip_holder,
)
from host_commands import dexec, docker

PLAYBOOKS = [REPO / "playbooks" / "redis.yml", REPO / "playbooks" / "redis_sentinel.yml"]


def redis_log(host: str) -> str:
    return dexec(host, "journalctl", "-u", "redis-server", "-b", "--no-pager", "-o", "cat").stdout


def role_or_error(address: str) -> str:
    try:
        return role_of(address)
    except AssertionError as error:
        return str(error)


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
    while not all(role_or_error(ADDRESSES[h]) == "slave" for h in old):
        assert time.monotonic() < deadline, "the old primary did not become a replica"
        time.sleep(1)
    FIGURES["old_primary_replica_after_start_s"] = round(time.monotonic() - started, 1)
    assert current_primary() == primary
    # Redis 7.0 cannot read Redis 8.0's RDB: the replica stays unsynced.
    for host in old:
        assert RELEASES[host] == "bookworm"
        deadline = time.monotonic() + 60
        while "Can't handle RDB format version" not in redis_log(host):
            assert time.monotonic() < deadline, f"{host}: {replication_info(ADDRESSES[host])}"
            time.sleep(1)
        assert not synced_replica(ADDRESSES[host])
    holder = vip_holder()
    status, _, _ = request("GET", "/transactions/health")
    assert status == 200
    assert holder not in stopped, f"the floating address went back to {holder}"


def test_running_the_redis_plays_again_stops_only_the_older_replica_and_keeps_the_primary():
    primary = current_primary()
    older = [h for h in REDIS_HOSTS if RELEASES[h] == "bookworm"]
    started = time.monotonic()
    first, failures = play_outcome(run_playbooks(*PLAYBOOKS))
    FIGURES["reconverge_seconds"] = round(time.monotonic() - started, 1)
    FIGURES["reconverge_changed"] = len(first)
    log(f"changed after the failovers: {first}; failed: {failures}")
    assert sorted(failures) == older, failures
    for host in older:
        assert any(
            f"{host} runs Redis 7.0, which cannot load the data of the current primary" in m
            for m in failures[host]
        ), failures[host]
    FIGURES["older_replica_message"] = failures[older[0]][-1][:160]
    assert current_primary() == primary
    assert role_of(primary) == "master"
    # Only the replication file follows the Sentinels' new view.
    assert all(
        name.endswith("Write /etc/redis/replication.conf from the current primary")
        for name in first
    ), first
    second, failures = play_outcome(run_playbooks(*PLAYBOOKS))
    FIGURES["reconverge_again_changed"] = len(second)
    assert second == [], second
    assert sorted(failures) == older, failures
    assert current_primary() == primary
