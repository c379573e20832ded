"""The award rule, exactly-once under redelivery, and dead-lettering, through a real worker."""

from __future__ import annotations

from collections.abc import Callable

import redis
from worker_helpers import (
    DEAD,
    GROUP,
    STREAM,
    RedisServerLike,
    WorkerProcess,
    queue,
    settled,
    user_state,
    wait_until,
)


def test_voucher_rule_at_its_boundaries(
    r: redis.Redis, start_worker: Callable[..., WorkerProcess]
) -> None:
    # user id = number of stamp-earning transactions queued for that user
    counts = (9, 10, 11, 20)
    for n in counts:
        for i in range(n):
            queue(r, f"tx-{n}-{i}", user_id=n, amount=1)
    worker = start_worker()
    wait_until(lambda: settled(r))
    assert user_state(r, 9) == {"stamps": 9, "vouchers": 0, "transactions": 9}
    assert user_state(r, 10) == {"stamps": 0, "vouchers": 1, "transactions": 10}
    assert user_state(r, 11) == {"stamps": 1, "vouchers": 1, "transactions": 11}
    assert user_state(r, 20) == {"stamps": 0, "vouchers": 2, "transactions": 20}
    assert r.hget("loyalty:user:20", "username") == "user20"
    assert worker.count_once_logged(r"vouchers_earned=1", 1 + 1 + 2) == 1 + 1 + 2
    assert r.xlen(DEAD) == 0


def test_amounts_below_the_minimum_count_but_earn_no_stamp(
    r: redis.Redis, start_worker: Callable[..., WorkerProcess]
) -> None:
    for i, amount in enumerate((499, 500, 0, 1, 501, 100_000_000_000_000_000_000)):
        queue(r, f"tx-{i}", user_id=1, amount=amount)
    start_worker(MIN_STAMP_AMOUNT="500", STAMPS_PER_VOUCHER="2")
    wait_until(lambda: settled(r))
    # stamps from 500, 501 and the huge amount: 3 stamps = 1 voucher + 1 stamp
    assert user_state(r, 1) == {"stamps": 1, "vouchers": 1, "transactions": 6}


def test_one_stamp_per_voucher(r: redis.Redis, start_worker: Callable[..., WorkerProcess]) -> None:
    for i in range(3):
        queue(r, f"tx-{i}", user_id=5)
    start_worker(STAMPS_PER_VOUCHER="1")
    wait_until(lambda: settled(r))
    assert user_state(r, 5) == {"stamps": 0, "vouchers": 3, "transactions": 3}


def test_same_transaction_twice_in_the_stream_awards_once(
    r: redis.Redis, start_worker: Callable[..., WorkerProcess]
) -> None:
    queue(r, "tx-dup", user_id=1)
    queue(r, "tx-other", user_id=1)
    queue(r, "tx-dup", user_id=1)
    worker = start_worker()
    wait_until(lambda: settled(r))
    assert user_state(r, 1) == {"stamps": 2, "vouchers": 0, "transactions": 2}
    assert worker.count_once_logged(r"duplicate transaction_id=tx-dup ", 1) == 1
    # The mark remembers which entry awarded it, and expires eventually.
    assert r.exists("loyalty:processed:tx-dup")
    assert 0 < r.ttl("loyalty:processed:tx-dup") <= 30 * 24 * 3600


def test_entry_left_pending_by_a_crashed_worker_is_awarded_once(
    r: redis.Redis, start_worker: Callable[..., WorkerProcess]
) -> None:
    r.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    queue(r, "tx-read-not-settled", user_id=1)
    queue(r, "tx-awarded-not-acked", user_id=1)
    # A worker that died after reading both entries, and (for the second)
    # after a mark was written but before the entry was acknowledged -- the
    # state an older, non-atomic worker or a hand-replayed entry could leave.
    r.xreadgroup(GROUP, "dead-worker", {STREAM: ">"}, count=2)
    r.set("loyalty:processed:tx-awarded-not-acked", "earlier")
    r.hset("loyalty:user:1", mapping={"stamps": 1, "vouchers": 0, "transactions": 1})
    worker = start_worker(WORKER_CLAIM_IDLE_MS="200")
    wait_until(lambda: settled(r))
    assert user_state(r, 1) == {"stamps": 2, "vouchers": 0, "transactions": 2}
    assert worker.count_once_logged(r"reclaimed 2 entries", 1) == 1
    assert worker.count_once_logged(r"awarded transaction_id=tx-read-not-settled ", 1) == 1
    assert worker.count_once_logged(r"duplicate transaction_id=tx-awarded-not-acked ", 1) == 1


def test_restarted_consumer_settles_its_own_pending_entries_at_once(
    r: redis.Redis, start_worker: Callable[..., WorkerProcess]
) -> None:
    r.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    queue(r, "tx-mine", user_id=1)
    r.xreadgroup(GROUP, "worker-1", {STREAM: ">"}, count=1)
    # Same consumer name as before its crash (systemd's %H-%i); the default
    # 30 s claim idle time would be far too slow for this test.
    worker = start_worker(WORKER_CONSUMER_NAME="worker-1")
    wait_until(lambda: settled(r), timeout=5)
    assert user_state(r, 1)["transactions"] == 1
    assert worker.count_once_logged(r"re-reading 1 entries left pending", 1) == 1


def test_unparseable_entries_are_dead_lettered_and_do_not_block(
    r: redis.Redis, redis_server: RedisServerLike, start_worker: Callable[..., WorkerProcess]
) -> None:
    bad = {
        "missing field transaction_id": {"user_id": "1", "username": "a", "amount": "1"},
        "missing field amount": {"transaction_id": "b1", "user_id": "1", "username": "a"},
        "field amount is not a non-negative integer": {
            "transaction_id": "b2",
            "user_id": "1",
            "username": "a",
            "amount": "-5",
        },
        "field user_id is not a non-negative integer": {
            "transaction_id": "b3",
            "user_id": "x",
            "username": "a",
            "amount": "1",
        },
        "field username is not UTF-8": {
            "transaction_id": "b4",
            "user_id": "1",
            "username": b"\xff\xfe",
            "amount": "1",
        },
    }
    ids = {reason: r.xadd(STREAM, fields) for reason, fields in bad.items()}
    queue(r, "good", user_id=1)
    worker = start_worker()
    wait_until(lambda: settled(r))
    assert user_state(r, 1) == {"stamps": 1, "vouchers": 0, "transactions": 1}
    raw = redis.Redis(port=redis_server.port)  # bytes: one field is not UTF-8
    letters = {entry[1][b"source_id"].decode(): entry[1] for entry in raw.xrange(DEAD)}
    raw.close()
    assert len(letters) == len(bad)
    for reason, source_id in ids.items():
        letter = letters[source_id]
        assert letter[b"reason"] == f"unparseable: {reason}".encode()
        assert letter[b"deliveries"] == b"1"
        for name, value in bad[reason].items():
            assert letter[name.encode()] == (value if isinstance(value, bytes) else value.encode())
    assert worker.count_once_logged(r"WARNING loyalty_worker: dead-lettered ", len(bad)) == len(bad)
    assert not r.keys("loyalty:processed:b*")


def test_entry_delivered_too_often_is_dead_lettered(
    r: redis.Redis, start_worker: Callable[..., WorkerProcess]
) -> None:
    r.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    at_limit = queue(r, "tx-at-limit", user_id=1)
    over_limit = queue(r, "tx-over-limit", user_id=1)
    r.xreadgroup(GROUP, "ghost", {STREAM: ">"}, count=2)  # delivery 1 of both
    r.xclaim(STREAM, GROUP, "ghost", 0, [over_limit])  # delivery 2 of one
    # The worker's reclaim is delivery 2 of the first (allowed) and 3 of
    # the second (over WORKER_MAX_DELIVERIES=2).
    worker = start_worker(WORKER_CLAIM_IDLE_MS="100", WORKER_MAX_DELIVERIES="2")
    wait_until(lambda: settled(r))
    assert user_state(r, 1)["transactions"] == 1
    assert worker.count_once_logged(r"awarded transaction_id=tx-at-limit ", 1) == 1
    letters = r.xrange(DEAD)
    assert len(letters) == 1
    fields = letters[0][1]
    assert fields["source_id"] == over_limit
    assert fields["transaction_id"] == "tx-over-limit"
    assert fields["deliveries"] == "3"
    assert fields["reason"] == "delivered 3 times, more than WORKER_MAX_DELIVERIES=2"
    assert not r.exists("loyalty:processed:tx-over-limit")
    assert at_limit != over_limit


def test_a_user_state_that_is_not_a_hash_dead_letters_without_a_partial_award(
    r: redis.Redis, start_worker: Callable[..., WorkerProcess]
) -> None:
    r.set("loyalty:user:7", "corrupt")
    r.hset("loyalty:user:8", mapping={"stamps": "x"})
    queue(r, "tx-7", user_id=7)
    queue(r, "tx-8", user_id=8)
    queue(r, "tx-9", user_id=9)
    start_worker()
    wait_until(lambda: settled(r))
    reasons = sorted(fields["reason"] for _, fields in r.xrange(DEAD))
    assert reasons == [
        "cannot award: loyalty:user:7 holds a string, not a hash",
        "cannot award: loyalty:user:8 field stamps is not a count: x",
    ]
    assert not r.exists("loyalty:processed:tx-7")
    assert not r.exists("loyalty:processed:tx-8")
    assert r.get("loyalty:user:7") == "corrupt"
    assert user_state(r, 9)["transactions"] == 1
