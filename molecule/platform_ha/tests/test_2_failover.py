"""A bounded load through the floating address while the Redis primary host
and then the active router host are stopped.

Sentinel promotes a replica and the services follow it; the floating address
moves to the other router host. Clients re-send with the same
Idempotency-Key after a 503 or a dropped connection. Afterwards every
transaction that got 202 is awarded exactly once, and the figures of each
failover are recorded.
"""

from __future__ import annotations

import threading
import time

from helpers import (
    ADDRESSES,
    EDGE_HOSTS,
    FIGURES,
    HOST_BY_ADDRESS,
    STOPPED,
    TOKENS,
    USERS,
    current_primary,
    group_info,
    log,
    loyalty_state,
    redis_lines,
    vip_holder,
    wait_until_drained,
)
from host_commands import docker
from load import Client
from loyalty_redis import wait_until_awarded

TOTAL = 1200  # transactions at most
RATE = 20  # per second, all threads together
THREADS = 10
MAX_SECONDS = 55  # no transaction starts later than this
LOAD_USERS = ["alice", "bob"]
STOP_PRIMARY_AT = 8  # seconds after the start
STOP_ROUTER_AT = 32


def stop_in_background(host: str) -> threading.Thread:
    """`docker stop` (the host shuts down as on a power button) in a thread,
    so that the time to recover is measured from the moment it begins."""
    thread = threading.Thread(
        target=docker, args=("stop", host), kwargs={"timeout": 120}, daemon=True
    )
    thread.start()
    return thread


def wait_for(predicate, timeout: float, interval: float = 0.2):
    """Seconds until predicate() is true (None when it never was)."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        try:
            if predicate():
                return time.monotonic() - start
        except AssertionError:
            pass
        time.sleep(interval)
    return None


def window_figures(transactions, t0: float, start: float, end: float) -> dict[str, object]:
    """What the clients saw between one fault (start) and the next (end)."""
    attempts = [a for tx in transactions for a in tx.attempts if start <= a.started - t0 < end]
    failed = [a for a in attempts if a.status != 202]
    recovery = max((a.finished - t0 for a in failed), default=start) - start
    accepted = sum(
        1
        for tx in transactions
        for a in tx.attempts
        if a.status == 202 and start <= a.finished - t0 <= start + recovery
    )
    statuses: dict[int, int] = {}
    for a in failed:
        statuses[a.status] = statuses.get(a.status, 0) + 1
    return {
        "recovery_seconds": round(recovery, 1),
        "accepted_during": accepted,
        "failed_requests": len(failed),
        "failed_statuses": statuses,
    }


def test_failovers_under_load_award_every_accepted_transaction_exactly_once():
    wait_until_drained()
    primary = current_primary()
    primary_host = HOST_BY_ADDRESS[primary]
    router_host = vip_holder()
    assert router_host == EDGE_HOSTS[0], f"floating address on {router_host}"
    before = {u: loyalty_state(USERS[u]) for u in LOAD_USERS}

    client = Client(LOAD_USERS, TOTAL, RATE, THREADS, MAX_SECONDS)
    marks: dict[str, float] = {}
    client.start()
    try:
        client.at(STOP_PRIMARY_AT)
        marks["primary_stop"] = client.since_start()
        STOPPED.add(primary_host)
        stopping = stop_in_background(primary_host)
        promoted = wait_for(lambda: current_primary() != primary, timeout=60)
        marks["promoted"] = client.since_start()
        stopping.join(timeout=120)
        marks["primary_stopped"] = client.since_start()
        client.at(STOP_ROUTER_AT)
        marks["router_stop"] = client.since_start()
        STOPPED.add(router_host)
        stopping = stop_in_background(router_host)
        moved = wait_for(lambda: vip_holder() not in (None, router_host), timeout=60)
        marks["moved"] = client.since_start()
        stopping.join(timeout=120)
        marks["router_stopped"] = client.since_start()
    finally:
        client.join()
    new_primary = current_primary()
    log(f"fault times (s after start): { ({k: round(v, 1) for k, v in marks.items()}) }")
    t0 = client.t0
    transactions = client.transactions
    end = max(a.finished for tx in transactions for a in tx.attempts) - t0

    redis_window = window_figures(transactions, t0, marks["primary_stop"], marks["router_stop"])
    router_window = window_figures(transactions, t0, marks["router_stop"], end + 1)
    attempts = [a for tx in transactions for a in tx.attempts]
    # Answer times of 202s before the first fault (each includes the WAIT
    # for a replica).
    steady = sorted(
        (a.finished - a.started) * 1000
        for a in attempts
        if a.status == 202 and a.finished - t0 < marks["primary_stop"]
    )
    accepted = [tx for tx in transactions if tx.transaction_id]
    unsettled = [tx for tx in transactions if not tx.transaction_id]

    ids_by_user: dict[str, set[str]] = {u: set() for u in LOAD_USERS}
    for tx in accepted:
        ids_by_user[tx.user].add(tx.transaction_id)
    all_ids = [i for ids in ids_by_user.values() for i in ids]
    marked = wait_until_awarded(redis_lines, group_info, all_ids, timeout=240)
    after = {u: loyalty_state(USERS[u]) for u in LOAD_USERS}
    awarded = sum(after[u]["transactions"] - before[u]["transactions"] for u in LOAD_USERS)

    FIGURES.update(
        sent=len(transactions),
        accepted=len(accepted),
        accepted_ids=len(all_ids),
        awarded=awarded,
        lost=len(all_ids) - marked,
        duplicated=max(0, awarded - len(all_ids)),
        requests=len(attempts),
        failed_requests=sum(1 for a in attempts if a.status != 202),
        resends=len(attempts) - len(transactions),
        unsettled=len(unsettled),
        token_refresh_failures=TOKENS.refresh_failures,
        redis_failover=redis_window
        | {
            "stopped": primary_host,
            "new_primary": HOST_BY_ADDRESS.get(new_primary, new_primary),
            "sentinel_promoted_after_s": None if promoted is None else round(promoted, 1),
        },
        router_failover=router_window
        | {
            "stopped": router_host,
            "address_moved_after_s": None if moved is None else round(moved, 1),
        },
        load_seconds=round(end, 1),
        steady_202_ms={
            "p50": round(steady[len(steady) // 2], 1) if steady else None,
            "p95": round(steady[int(len(steady) * 0.95)], 1) if steady else None,
        },
        fault_times={k: round(v, 1) for k, v in marks.items()},
    )
    log(f"before {before} after {after}")
    log(f"redis failover {FIGURES['redis_failover']}")
    log(f"router failover {FIGURES['router_failover']}")

    assert promoted is not None, "no replica was promoted"
    assert new_primary != primary and new_primary in ADDRESSES.values()
    assert moved is not None, "the floating address did not move"
    assert len(transactions) >= 500, f"only {len(transactions)} sent"
    assert not unsettled, f"{len(unsettled)} transactions never accepted, e.g. {unsettled[:2]}"
    assert len(all_ids) == len(accepted), "one id answered for two keys"
    assert marked == len(all_ids), f"{len(all_ids) - marked} accepted transactions never awarded"
    assert awarded == len(all_ids), f"awarded {awarded} for {len(all_ids)} accepted transactions"
