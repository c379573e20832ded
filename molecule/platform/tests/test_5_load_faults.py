"""A bounded burst through the router while hosts and processes fail.

During the burst: one worker instance is SIGKILLed, a whole worker host is
stopped (and started again), a Transaction API host is stopped (and started
again), and Redis is restarted. Afterwards every transaction answered 202 is
awarded exactly once, nothing stays pending, and the failures the clients
saw are the expected ones only.
"""

from __future__ import annotations

import re

from helpers import (
    FIGURES,
    USERS,
    curl_ready_from_edge,
    group_info,
    log,
    loyalty_state,
    pending_count,
    redis_cli,
    redis_lines,
    wait_until_drained,
)
from host_commands import docker
from load import Client, settle
from loyalty_redis import wait_until_awarded

TOTAL = 3000  # transactions at most
RATE = 50  # per second, all threads together
THREADS = 12
MAX_SECONDS = 100  # the burst stops by then whatever was sent
LOAD_USERS = ["alice", "bob"]  # the demo users who may transact
# Schedule of the faults, seconds after the start of the burst.
KILL_INSTANCE_AT = 4
STOP_WORKER_HOST_AT = 8
STOP_API_AT = 12
START_API_AT = 24
RESTART_REDIS_AT = 32
START_WORKER_HOST_AT = 42
# After Redis answers again, the router needs its health checks to pass
# (rise 2 x 1 s) before the API hosts take requests: 503s until then count
# as part of the restart.
REDIS_RECOVERY_SLACK = 8


def instance_restarts() -> int:
    out = docker(
        "exec",
        "platform-worker-1",
        "systemctl",
        "show",
        "-p",
        "NRestarts",
        "--value",
        "loyalty-worker@1.service",
    ).stdout.strip()
    return int(out or 0)


def router_server_state(server: str) -> str:
    """The router's view of one Transaction API server (UP, DOWN, ...)."""
    stat = docker(
        "exec",
        "platform-edge",
        "sh",
        "-c",
        "echo 'show stat transaction_api 4 -1' | socat stdio /run/haproxy/admin.sock",
    ).stdout
    for line in stat.splitlines():
        fields = line.split(",")
        if len(fields) > 17 and fields[1] == server:
            return fields[17]
    return "absent"


def router_log_of_errors() -> str:
    """The router's access-log lines of the last minutes with a 5xx other
    than 503: the termination state in them says which side closed first."""
    log_lines = docker(
        "exec", "platform-edge", "journalctl", "-u", "haproxy", "-o", "cat", "--since", "-10min"
    ).stdout.splitlines()
    errors = [line for line in log_lines if re.search(r"/-?[0-9]+ 50[0-24-9] ", line)]
    return "\n".join(errors)[-3000:]


def test_burst_with_faults_awards_every_accepted_transaction_exactly_once():
    wait_until_drained()
    before = {u: loyalty_state(USERS[u]) for u in LOAD_USERS}
    dead_before = int(redis_cli("XLEN", "loyalty:dead") or 0)
    restarts_before = instance_restarts()
    client = Client(LOAD_USERS, TOTAL, RATE, THREADS, MAX_SECONDS)
    marks = {}
    client.start()
    try:
        client.at(KILL_INSTANCE_AT)
        marks["kill"] = client.since_start()
        docker("exec", "platform-worker-1", "systemctl", "kill", "-s", "KILL", "loyalty-worker@1")
        client.at(STOP_WORKER_HOST_AT)
        marks["worker_stop"] = client.since_start()
        docker("stop", "platform-worker-2", timeout=60)
        client.at(STOP_API_AT)
        marks["api_stop"] = client.since_start()
        docker("stop", "platform-api-2", timeout=60)
        marks["api_stopped"] = client.since_start()
        client.at(START_API_AT)
        api_2_state = router_server_state("platform-api-2")
        marks["api_start"] = client.since_start()
        docker("start", "platform-api-2", timeout=60)
        client.at(RESTART_REDIS_AT)
        marks["redis_restart"] = client.since_start()
        docker("exec", "platform-redis", "systemctl", "restart", "redis-server", timeout=60)
        marks["redis_restarted"] = client.since_start()
        client.at(START_WORKER_HOST_AT)
        marks["worker_start"] = client.since_start()
        docker("start", "platform-worker-2", timeout=60)
    finally:
        client.join()
    burst_seconds = max(o.finished for o in client.outcomes) - client.t0
    log(f"fault times (s after start): { ({k: round(v, 1) for k, v in marks.items()}) }")

    outcomes = client.outcomes
    t0 = client.t0

    def started_between(o, a, b):
        return a <= o.started - t0 <= b

    statuses: dict[int, int] = {}
    for o in outcomes:
        statuses[o.status] = statuses.get(o.status, 0) + 1
    log(f"statuses: {statuses}")
    accepted = [o for o in outcomes if o.status == 202]
    api_window = [o for o in outcomes if started_between(o, marks["api_stop"], marks["api_start"])]
    api_failures = [o for o in api_window if o.status != 202]
    redis_end = marks["redis_restarted"] + REDIS_RECOVERY_SLACK
    redis_503 = [
        o
        for o in outcomes
        if o.status == 503 and started_between(o, marks["redis_restart"], redis_end)
    ]
    other_503 = [o for o in outcomes if o.status == 503 and o not in redis_503]
    hangs = [o for o in outcomes if o.status == 0]
    unexpected = [o for o in outcomes if o.status not in (202, 503)]

    # Whatever the client did not learn the fate of is asked again with its key.
    settled = settle(outcomes)
    log(f"settled after an error: {settled}")
    ids_by_user: dict[str, set[str]] = {u: set() for u in LOAD_USERS}
    for o in outcomes:
        if o.transaction_id:
            ids_by_user[o.user].add(o.transaction_id)
    all_ids = [i for ids in ids_by_user.values() for i in ids]
    assert len(all_ids) == sum(1 for o in outcomes if o.transaction_id), (
        "one id answered for two keys"
    )

    marked = wait_until_awarded(redis_lines, group_info, all_ids)
    pending = pending_count()
    after = {u: loyalty_state(USERS[u]) for u in LOAD_USERS}
    awarded = sum(after[u]["transactions"] - before[u]["transactions"] for u in LOAD_USERS)
    stamps_ok = all(
        (after[u]["stamps"] + 10 * after[u]["vouchers"])
        - (before[u]["stamps"] + 10 * before[u]["vouchers"])
        == len(ids_by_user[u])
        and after[u]["transactions"] - before[u]["transactions"] == len(ids_by_user[u])
        and 0 <= after[u]["stamps"] < 10
        for u in LOAD_USERS
    )
    dead = int(redis_cli("XLEN", "loyalty:dead") or 0) - dead_before
    dead_without_reason = 0
    if dead:
        entries = redis_cli("XREVRANGE", "loyalty:dead", "+", "-", "COUNT", str(dead)).splitlines()
        dead_without_reason = dead - sum(1 for line in entries if line == "reason")

    killed_restarts = instance_restarts() - restarts_before
    FIGURES.update(
        sent=len(outcomes),
        accepted=len(accepted),
        settled_after_error=settled,
        awarded=awarded,
        accepted_in_all=len(all_ids),
        lost=len(all_ids) - marked,
        duplicated=max(0, awarded - len(all_ids)),
        rejected_503=statuses.get(503, 0),
        redis_restart_503=len(redis_503),
        api_stop_requests=len(api_window),
        api_stop_failures=len(api_failures),
        api_2_state_while_stopped=api_2_state,
        stale_connection_retries=client.stale_retries,
        killed_instance_restarts=killed_restarts,
        dead_letters=dead,
        pending_after=pending,
        burst_seconds=round(burst_seconds, 1),
        statuses=statuses,
        fault_times=({k: round(v, 1) for k, v in marks.items()}),
    )
    log(f"before {before} after {after}")

    assert len(outcomes) >= 1000, f"only {len(outcomes)} sent: the platform was too slow to test"
    # The faults happened: systemd restarted the killed instance, and the
    # router had taken the stopped API host out of rotation by itself.
    assert killed_restarts >= 1, "loyalty-worker@1 on platform-worker-1 was not restarted"
    assert api_2_state.startswith("DOWN"), f"router saw the stopped API host as {api_2_state}"
    assert not hangs, f"{len(hangs)} requests without an answer, e.g. {hangs[:3]}"
    assert not unexpected, (
        f"statuses other than 202/503: {unexpected[:5]}; the router's log of them "
        f"(termination state after the status):\n{router_log_of_errors()}"
    )
    late = [(round(o.started - t0, 1), o.error) for o in other_503[:5]]
    assert not other_503, f"503 outside the Redis restart: {late}"
    assert not api_failures, f"failures while an API host was stopped: {api_failures[:5]}"
    assert settled["unsettled"] == 0
    assert marked == len(all_ids), f"{len(all_ids) - marked} accepted transactions never awarded"
    assert awarded == len(all_ids), f"awarded {awarded} for {len(all_ids)} accepted transactions"
    assert stamps_ok, f"stamps/vouchers do not follow the rule: before {before}, after {after}"
    assert pending == 0
    assert dead_without_reason == 0

    # The stopped hosts are back: both API hosts ready for the next tests.
    curl_ready_from_edge()
