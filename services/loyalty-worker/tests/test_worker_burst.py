"""Two workers share a burst, one is killed mid-stream: every transaction is awarded once."""

from __future__ import annotations

import random
import signal
import time
from collections import Counter
from collections.abc import Callable

import redis
from worker_helpers import (
    DEAD,
    GROUP,
    STREAM,
    WorkerProcess,
    queue,
    settled,
    user_state,
    wait_until,
)

USERS = 7
TOTAL = 4000
STAMPS_PER_VOUCHER = 10
MIN_STAMP_AMOUNT = 100
AWARDED = " awarded transaction_id="


def expected_state(queued: list[tuple[str, int, int]]) -> dict[int, dict[str, int]]:
    """The rule applied to what was queued, counting each transaction id once."""
    seen: set[str] = set()
    stamps: Counter[int] = Counter()
    transactions: Counter[int] = Counter()
    for transaction_id, user_id, amount in queued:
        if transaction_id in seen:
            continue
        seen.add(transaction_id)
        transactions[user_id] += 1
        stamps[user_id] += amount >= MIN_STAMP_AMOUNT
    return {
        user: {
            "stamps": stamps[user] % STAMPS_PER_VOUCHER,
            "vouchers": stamps[user] // STAMPS_PER_VOUCHER,
            "transactions": transactions[user],
        }
        for user in transactions
    }


def test_two_workers_one_killed_mid_stream(
    r: redis.Redis, start_worker: Callable[..., WorkerProcess]
) -> None:
    rng = random.Random(9)
    queued: list[tuple[str, int, int]] = []
    for i in range(TOTAL):
        transaction = (f"burst-{i}", rng.randrange(USERS), rng.choice((1, 99, 100, 101, 5000)))
        queued.append(transaction)
        # A few transactions queued twice, as a retried XADD would.
        if i % 500 == 0:
            queued.append(transaction)

    env = {
        "WORKER_CLAIM_IDLE_MS": "300",
        "WORKER_BATCH_SIZE": "25",
        "STAMPS_PER_VOUCHER": str(STAMPS_PER_VOUCHER),
        "MIN_STAMP_AMOUNT": str(MIN_STAMP_AMOUNT),
    }
    victim = start_worker(WORKER_CONSUMER_NAME="victim", **env)
    survivor = start_worker(WORKER_CONSUMER_NAME="survivor", **env)
    # Queue in chunks, as traffic arrives, and kill one worker half-way:
    # both are busy then, and the second half can only go to the survivor.
    chunk = 200
    kill_at = chunk * 10
    victim_pending = 0
    for start in range(0, len(queued), chunk):
        # The chunk after the kill goes in with MULTI: if the kill landed
        # between two batches (nothing pending on the victim), a read in the
        # same transaction leaves entries on the dead consumer, as a kill an
        # instant later would have, so the reclaim path runs every time.
        pipe = r.pipeline(transaction=start == kill_at + chunk)
        for transaction_id, user_id, amount in queued[start : start + chunk]:
            queue(pipe, transaction_id, user_id, amount)
        if start == kill_at + chunk and not victim_pending:
            pipe.xreadgroup(GROUP, "victim", {STREAM: ">"}, count=25)
        pipe.execute()
        if start == kill_at:
            wait_until(lambda: victim.count(AWARDED) > 0 and survivor.count(AWARDED) > 0)
            victim.signal(signal.SIGKILL)
            victim.process.wait(timeout=5)
            consumers = {c["name"]: c["pending"] for c in r.xinfo_consumers(STREAM, GROUP)}
            victim_pending = consumers.get("victim", 0)
        time.sleep(0.02)

    wait_until(lambda: settled(r), timeout=30)
    assert survivor.count(r"reclaimed \d+ entries") >= 1
    for user, state in expected_state(queued).items():
        assert user_state(r, user) == state, f"user {user}"
    assert r.xlen(DEAD) == 0
    assert len(r.keys("loyalty:processed:*")) == TOTAL
    # No transaction was logged as awarded twice.  (Some awards of the
    # victim may have no log line: SIGKILL can land between the award and
    # its line, which is why the state above, not the log, is the proof.)
    lines = [
        line
        for worker in (victim, survivor)
        for line in worker.log().splitlines()
        if AWARDED in line
    ]
    ids = [line.split("transaction_id=")[1].split()[0] for line in lines]
    assert len(ids) == len(set(ids))
    assert TOTAL - 25 <= len(ids) <= TOTAL
    # Settled entries are trimmed away (whole stream nodes at a time), so
    # the queue does not grow without bound on a Redis that never evicts.
    wait_until(lambda: r.xlen(STREAM) < 300, timeout=5)
    assert survivor.stop() == 0
