"""After the failovers: the stopped hosts come back, the old primary becomes
a replica of the new one, the floating address stays where it moved, and
running the Redis plays again neither demotes the new primary nor keeps
reporting changes."""

from __future__ import annotations

import json
import time

from helpers import (
    ADDRESSES,
    FIGURES,
    REDIS_HOSTS,
    REPO,
    STOPPED,
    current_primary,
    log,
    request,
    role_of,
    run_playbooks,
    vip_holder,
)
from host_commands import dexec, docker

PLAYBOOKS = [REPO / "playbooks" / "redis.yml", REPO / "playbooks" / "redis_sentinel.yml"]


def changed_tasks(result) -> list[str]:
    """Names of the tasks that changed something, from the json callback."""
    assert result.returncode == 0, (result.stdout[-3000:], result.stderr[-3000:])
    report, _ = json.JSONDecoder().raw_decode(result.stdout[result.stdout.index("{") :])
    names = []
    for play in report["plays"]:
        for task in play["tasks"]:
            for host, outcome in task["hosts"].items():
                if outcome.get("changed"):
                    names.append(f"{host}: {task['task']['name']}")
    return names


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
