"""The consumer loop: read the transactions stream, award, dead-letter, reclaim.

Correctness rests on the Lua scripts, not on this loop: every entry is
settled (awarded or dead-lettered, and acknowledged) by one atomic script, so
the loop may crash, lose Redis or be killed at any point and the worst
outcome is that an entry is delivered again -- which the award script turns
into a no-op.
"""

from __future__ import annotations

import hashlib
import logging
import random
import re
import signal
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from types import FrameType
from typing import Any

import redis
from loyalty_common import (
    CONSUMER_GROUP,
    DEAD_LETTER_STREAM,
    TRANSACTIONS_STREAM,
    processed_key,
    user_key,
)
from loyalty_common.redis_access import REDIS_ERRORS, primary_address

from .config import WorkerConfig
from .metrics import WorkerMetrics
from .sdnotify import Notifier

__all__ = ["Transaction", "Unparseable", "Worker", "parse_entry"]

log = logging.getLogger("loyalty_worker")

# Raw stream entries: decode_responses is off so that one entry with bytes
# that are not UTF-8 is dead-lettered instead of breaking a whole read.
Fields = Mapping[bytes, bytes]
Entry = tuple[bytes, Fields]

# A dead letter keeps at most this many original field pairs: the script
# passes them through Lua's unpack(), whose stack is limited.
MAX_DEAD_LETTER_FIELDS = 256

_USER_ID = re.compile(rb"[0-9]{1,20}")
_AMOUNT = re.compile(rb"[0-9]{1,30}")


class Unparseable(ValueError):
    """The entry can never be awarded; the message says why."""


@dataclass(frozen=True, slots=True)
class Transaction:
    transaction_id: str
    user_id: int
    username: str
    amount: int


def _text(fields: Fields, name: str) -> str:
    raw = fields.get(name.encode())
    if raw is None:
        raise Unparseable(f"missing field {name}")
    try:
        return raw.decode()
    except UnicodeDecodeError:
        raise Unparseable(f"field {name} is not UTF-8") from None


def parse_entry(fields: Fields) -> Transaction:
    """Return the transaction an entry describes, or raise Unparseable.

    Only what the award needs is checked; ``currency`` and ``accepted_at``
    are the Transaction API's business and are carried along untouched.
    """
    if not fields:
        # XADD refuses an entry without fields, so this one was deleted from
        # the stream while it was pending.
        raise Unparseable("entry has no fields (deleted from the stream)")
    transaction_id = _text(fields, "transaction_id")
    if (
        not 0 < len(transaction_id) <= 200
        or not transaction_id.isprintable()
        or any(c.isspace() for c in transaction_id)
    ):
        raise Unparseable(
            "field transaction_id is not 1 to 200 printable characters without spaces"
        )
    user_id = fields.get(b"user_id")
    if user_id is None:
        raise Unparseable("missing field user_id")
    if not _USER_ID.fullmatch(user_id):
        raise Unparseable("field user_id is not a non-negative integer")
    username = _text(fields, "username")
    if not username:
        raise Unparseable("field username is empty")
    amount = fields.get(b"amount")
    if amount is None:
        raise Unparseable("missing field amount")
    if not _AMOUNT.fullmatch(amount):
        raise Unparseable("field amount is not a non-negative integer")
    return Transaction(transaction_id, int(user_id), username, int(amount))


def _shown_id(fields: Fields) -> str:
    """The transaction id for a log line, even from an entry that did not parse."""
    raw = fields.get(b"transaction_id")
    if raw is None:
        return "-"
    text = raw[:200].decode(errors="replace")
    return text if text.isprintable() and " " not in text and text else repr(text)


def _stream_id(value: bytes | str) -> tuple[int, int]:
    text = value.decode() if isinstance(value, bytes) else value
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


class _Script:
    """A Lua script from this package, run by EVALSHA.

    The SHA1 is computed here rather than taken from SCRIPT LOAD, so a
    pipeline can name the script before Redis has seen it; NOSCRIPT (Redis
    restarted, SCRIPT FLUSH) is answered by loading it again.
    """

    def __init__(self, filename: str) -> None:
        self.source = resources.files(__package__).joinpath(filename).read_text(encoding="utf-8")
        self.sha = hashlib.sha1(self.source.encode()).hexdigest()

    def load(self, client: redis.Redis) -> None:
        client.script_load(self.source)


def _delay(failures: int) -> float:
    """Back-off before the next attempt: 0.1 s doubling to 5 s, with jitter.

    Jitter keeps n workers that lost Redis together from reconnecting in
    lock-step; the cap keeps recovery quick once Redis is back.
    """
    base = min(5.0, 0.1 * 2 ** min(failures - 1, 10))
    return base * random.uniform(0.75, 1.25)


class Worker:
    """One consumer of the ``loyalty-workers`` group."""

    def __init__(self, config: WorkerConfig, client: redis.Redis, notifier: Notifier) -> None:
        self._config = config
        self._client = client
        self._notifier = notifier
        self._metrics = WorkerMetrics.shared()
        self._award = _Script("award.lua")
        self._dead_letter = _Script("dead_letter.lua")
        self._release = _Script("release.lua")
        self._stopping = False
        self._stop_signal: str | None = None
        self._connected = False
        self._ready_sent = False
        # host:port of the primary Sentinel named last (None without Sentinel).
        self._primary: str | None = None
        # Reclaiming more often than half the idle time gains nothing: an
        # entry becomes claimable only once it has been idle that long.
        self._maintenance_interval = min(10.0, max(0.05, config.claim_idle_ms / 2000))
        self._next_maintenance = 0.0
        block = min(config.block_ms, int(self._maintenance_interval * 1000))
        if notifier.watchdog_interval is not None:
            # The heartbeat is sent between reads, so a read must never
            # outlast the interval between heartbeats.
            block = min(block, int(notifier.watchdog_interval * 500))
        self._block_ms = max(1, block)

    # -- signals ---------------------------------------------------------

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        # Only set flags here: logging from a signal handler can deadlock on
        # the handler's lock.
        self._stopping = True
        if self._stop_signal is None:
            self._stop_signal = signal.Signals(signum).name

    def request_stop(self) -> None:
        self._stopping = True

    # -- main loop -------------------------------------------------------

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        config = self._config
        log.info(
            "starting consumer=%s stream=%s group=%s stamps_per_voucher=%d "
            "min_stamp_amount=%d claim_idle_ms=%d max_deliveries=%d batch_size=%d",
            config.consumer_name,
            TRANSACTIONS_STREAM,
            CONSUMER_GROUP,
            config.stamps_per_voucher,
            config.min_stamp_amount,
            config.claim_idle_ms,
            config.max_deliveries,
            config.batch_size,
        )
        self._notifier.status("connecting to Redis")
        failures = 0
        while not self._stopping:
            self._notifier.heartbeat()
            try:
                if not self._connected:
                    self._connect()
                self._step()
                failures = 0
            except redis.exceptions.RedisError as error:
                # Unreachable, restarting, loading, failed over (READONLY),
                # or the group vanished with the data (NOGROUP): reconnect
                # from scratch, which recreates the group and the scripts and
                # re-reads this consumer's pending entries.  With Sentinel, a
                # connection refused or a READONLY reply (redis-py turns the
                # latter into a ConnectionError and drops the connection)
                # makes the next connection ask the Sentinels for the primary
                # again, so this same loop follows a failover.
                self._connected = False
                self._metrics.redis_up.set(0)
                failures += 1
                delay = _delay(failures)
                kind = "unreachable" if isinstance(error, REDIS_ERRORS) else "refused a command"
                log.warning(
                    "redis %s (%s: %s); retrying in %.1f s (attempt %d)",
                    kind,
                    type(error).__name__,
                    error,
                    delay,
                    failures,
                )
                self._notifier.status(f"Redis {kind}, retrying (attempt {failures})")
                self._sleep(delay)
        if self._stop_signal:
            log.info("received %s; stopping", self._stop_signal)
        self._notifier.stopping()
        self._leave_group()
        log.info("stopped consumer=%s", config.consumer_name)
        self._notifier.close()
        return 0

    def _sleep(self, seconds: float) -> None:
        """Sleep, but stay responsive to a stop request and keep the watchdog fed."""
        deadline = time.monotonic() + seconds
        while not self._stopping:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self._notifier.heartbeat()
            time.sleep(min(left, 0.2))

    def _connect(self) -> None:
        for script in (self._award, self._dead_letter, self._release):
            script.load(self._client)
        try:
            # From id 0, not $: entries the Transaction API queued before any
            # worker existed must be processed too.
            self._client.xgroup_create(TRANSACTIONS_STREAM, CONSUMER_GROUP, id="0", mkstream=True)
            log.info("created consumer group %s on %s", CONSUMER_GROUP, TRANSACTIONS_STREAM)
        except redis.exceptions.ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise
        self._connected = True
        self._metrics.redis_up.set(1)
        primary = primary_address(self._client)
        where = f" primary={primary}" if primary else ""
        if self._ready_sent:
            if self._primary is not None and primary != self._primary:
                # The one line that says a failover happened and was followed;
                # the loop itself just reconnected like after any outage.
                log.warning(
                    "reconnected to redis: following the new primary %s (was %s)",
                    primary,
                    self._primary,
                )
            else:
                log.info("reconnected to redis%s", where)
            self._notifier.status("consuming")
        else:
            self._ready_sent = True
            log.info("ready consumer=%s%s", self._config.consumer_name, where)
            self._notifier.ready("consuming")
        self._primary = primary
        self._next_maintenance = 0.0
        self._recover_own_pending()

    def _step(self) -> None:
        if time.monotonic() >= self._next_maintenance:
            self._reclaim()
            self._trim()
            self._metrics.observe_stream(self._client)
            self._next_maintenance = time.monotonic() + self._maintenance_interval
        if self._stopping:
            return
        reply = self._client.xreadgroup(
            CONSUMER_GROUP,
            self._config.consumer_name,
            {TRANSACTIONS_STREAM: ">"},
            count=self._config.batch_size,
            block=self._block_ms,
        )
        for _stream, entries in reply or ():
            if entries:
                self._handle(entries, None)

    # -- pending entries -------------------------------------------------

    def _recover_own_pending(self) -> None:
        """Settle entries delivered to this consumer name before a crash or a lost connection.

        Reading them back by id counts as a delivery, so an entry that keeps
        crashing the worker still reaches WORKER_MAX_DELIVERIES.
        """
        start: bytes | str = "0"
        while not self._stopping:
            reply = self._client.xreadgroup(
                CONSUMER_GROUP,
                self._config.consumer_name,
                {TRANSACTIONS_STREAM: start},
                count=self._config.batch_size,
            )
            entries = reply[0][1] if reply else []
            if not entries:
                return
            log.info("re-reading %d entries left pending on this consumer", len(entries))
            self._handle(entries, self._delivery_counts([entry_id for entry_id, _ in entries]))
            start = entries[-1][0]

    def _reclaim(self) -> None:
        """Take over entries left pending on any consumer for longer than WORKER_CLAIM_IDLE_MS."""
        start: bytes | str = "0-0"
        while not self._stopping:
            next_start, entries, deleted = self._client.xautoclaim(
                TRANSACTIONS_STREAM,
                CONSUMER_GROUP,
                self._config.consumer_name,
                min_idle_time=self._config.claim_idle_ms,
                start_id=start,
                count=self._config.batch_size,
            )
            if deleted:
                # Redis drops these from the group's pending list itself.
                log.warning(
                    "%d pending entries were deleted from the stream before being settled: %s",
                    len(deleted),
                    " ".join(d.decode() for d in deleted[:20]),
                )
            if entries:
                log.info(
                    "reclaimed %d entries idle for over %d ms",
                    len(entries),
                    self._config.claim_idle_ms,
                )
                self._handle(entries, self._delivery_counts([entry_id for entry_id, _ in entries]))
            if _stream_id(next_start) == (0, 0):
                return
            start = next_start

    def _delivery_counts(self, ids: Sequence[bytes]) -> dict[bytes, int]:
        pipe = self._client.pipeline(transaction=False)
        for entry_id in ids:
            pipe.xpending_range(
                TRANSACTIONS_STREAM, CONSUMER_GROUP, min=entry_id, max=entry_id, count=1
            )
        counts: dict[bytes, int] = {}
        for rows in pipe.execute():
            for row in rows:
                counts[row["message_id"]] = int(row["times_delivered"])
        return counts

    def _trim(self) -> None:
        """Drop entries that every group has acknowledged.

        Nothing else removes them, and on a Redis that never evicts the
        stream would grow until writes fail.  The floor is the oldest entry
        still pending in any group, or the last one delivered: everything
        before it is settled, and ids only grow, so nothing unsettled can
        appear below it between this read and the XTRIM.
        """
        floor: tuple[int, int] | None = None
        for group in self._client.xinfo_groups(TRANSACTIONS_STREAM):
            if int(group["pending"]):
                first = self._client.xpending(TRANSACTIONS_STREAM, group["name"])["min"]
            else:
                first = group["last-delivered-id"]
            if first is None:
                continue
            candidate = _stream_id(first)
            floor = candidate if floor is None else min(floor, candidate)
        if floor is not None and floor > (0, 0):
            # Approximate trimming removes whole radix-tree nodes only: cheap.
            self._client.xtrim(
                TRANSACTIONS_STREAM, minid=f"{floor[0]}-{floor[1]}", approximate=True
            )

    # -- settling entries ------------------------------------------------

    def _handle(self, entries: Sequence[Entry], deliveries: Mapping[bytes, int] | None) -> None:
        with self._metrics.batch_seconds.time():
            self._settle(entries, deliveries)

    def _settle(self, entries: Sequence[Entry], deliveries: Mapping[bytes, int] | None) -> None:
        awards: list[tuple[bytes, Transaction]] = []
        dead: list[tuple[bytes, Fields, str, int]] = []
        limit = self._config.max_deliveries
        for entry_id, fields in entries:
            if entry_id is None:
                # Redis before 7.0 reports an entry deleted while pending as
                # nil inside XAUTOCLAIM's reply; there is nothing to settle.
                continue
            count = deliveries.get(entry_id, 1) if deliveries else 1
            try:
                transaction = parse_entry(fields)
            except Unparseable as error:
                dead.append((entry_id, fields, f"unparseable: {error}", count))
                continue
            if count > limit:
                dead.append(
                    (
                        entry_id,
                        fields,
                        f"delivered {count} times, more than WORKER_MAX_DELIVERIES={limit}",
                        count,
                    )
                )
                continue
            awards.append((entry_id, transaction))
        refused = self._run_awards(awards, deliveries)
        self._run_dead_letters(dead + refused)
        self._notifier.heartbeat()

    def _execute(self, queue: Any) -> list[Any]:
        """Run what ``queue(pipe)`` queues in one round trip; reload the scripts once on NOSCRIPT.

        Running a batch again is safe: each script settles an entry at most once.
        """
        for attempt in (1, 2):
            pipe = self._client.pipeline(transaction=False)
            queue(pipe)
            results = pipe.execute(raise_on_error=False)
            if attempt == 1 and any(isinstance(r, redis.exceptions.NoScriptError) for r in results):
                log.info("redis lost the scripts (restart or SCRIPT FLUSH); loading them again")
                for script in (self._award, self._dead_letter, self._release):
                    script.load(self._client)
                continue
            return list(results)
        raise AssertionError("unreachable")

    def _run_awards(
        self, awards: Sequence[tuple[bytes, Transaction]], deliveries: Mapping[bytes, int] | None
    ) -> list[tuple[bytes, Fields, str, int]]:
        """Award each transaction; return those the script refused, for dead-lettering."""
        if not awards:
            return []
        config = self._config

        def queue(pipe: Any) -> None:
            for entry_id, tx in awards:
                pipe.evalsha(
                    self._award.sha,
                    3,
                    TRANSACTIONS_STREAM,
                    user_key(tx.user_id),
                    processed_key(tx.transaction_id),
                    CONSUMER_GROUP,
                    entry_id,
                    1 if tx.amount >= config.min_stamp_amount else 0,
                    config.stamps_per_voucher,
                    tx.username,
                    config.processed_ttl_seconds,
                )

        refused: list[tuple[bytes, Fields, str, int]] = []
        for (entry_id, tx), result in zip(awards, self._execute(queue), strict=True):
            entry = entry_id.decode()
            if isinstance(result, Exception):
                # Left pending: it is retried after WORKER_CLAIM_IDLE_MS and
                # dead-lettered once it has failed WORKER_MAX_DELIVERIES times.
                self._metrics.awards.labels("failed").inc()
                log.error(
                    "failed transaction_id=%s entry=%s error=%r; left pending for a retry",
                    tx.transaction_id,
                    entry,
                    str(result),
                )
            elif result[0] == 1:
                _, stamps, vouchers, transactions, earned = result
                self._metrics.awards.labels("awarded").inc()
                if earned:
                    self._metrics.vouchers.inc(int(earned))
                log.info(
                    "awarded transaction_id=%s entry=%s user_id=%d amount=%d stamp=%d "
                    "stamps=%d vouchers=%d transactions=%d vouchers_earned=%d",
                    tx.transaction_id,
                    entry,
                    tx.user_id,
                    tx.amount,
                    int(tx.amount >= config.min_stamp_amount),
                    stamps,
                    vouchers,
                    transactions,
                    earned,
                )
            elif result[0] == 0:
                self._metrics.awards.labels("duplicate").inc()
                log.info(
                    "duplicate transaction_id=%s entry=%s user_id=%d already awarded; acknowledged",
                    tx.transaction_id,
                    entry,
                    tx.user_id,
                )
            else:
                reason = result[1].decode(errors="replace")
                count = deliveries.get(entry_id, 1) if deliveries else 1
                refused.append((entry_id, self._fields_of(tx), f"cannot award: {reason}", count))
        return refused

    def _fields_of(self, tx: Transaction) -> Fields:
        # Only reached for the rare refused award; re-reading the entry would
        # cost a round trip for the same information.
        return {
            b"transaction_id": tx.transaction_id.encode(),
            b"user_id": str(tx.user_id).encode(),
            b"username": tx.username.encode(),
            b"amount": str(tx.amount).encode(),
        }

    def _run_dead_letters(self, dead: Sequence[tuple[bytes, Fields, str, int]]) -> None:
        if not dead:
            return

        def queue(pipe: Any) -> None:
            for entry_id, fields, reason, count in dead:
                args: list[bytes | str | int] = []
                for name, value in list(fields.items())[:MAX_DEAD_LETTER_FIELDS]:
                    if name not in (b"reason", b"deliveries", b"source_id"):
                        args += [name, value]
                args += ["reason", reason, "deliveries", count, "source_id", entry_id]
                pipe.evalsha(
                    self._dead_letter.sha,
                    2,
                    TRANSACTIONS_STREAM,
                    DEAD_LETTER_STREAM,
                    CONSUMER_GROUP,
                    entry_id,
                    *args,
                )

        for (entry_id, fields, reason, count), result in zip(
            dead, self._execute(queue), strict=True
        ):
            shown = _shown_id(fields)
            entry = entry_id.decode()
            if isinstance(result, Exception):
                log.error(
                    "failed to dead-letter transaction_id=%s entry=%s reason=%r error=%r; "
                    "left pending",
                    shown,
                    entry,
                    reason,
                    str(result),
                )
            elif result == 1:
                self._metrics.dead_lettered(reason)
                log.warning(
                    "dead-lettered transaction_id=%s entry=%s deliveries=%d reason=%r",
                    shown,
                    entry,
                    count,
                    reason,
                )
            else:
                log.info(
                    "skipped transaction_id=%s entry=%s: already settled by another worker",
                    shown,
                    entry,
                )

    # -- shutdown --------------------------------------------------------

    def _leave_group(self) -> None:
        if not self._connected:
            return
        try:
            self._client.evalsha(
                self._release.sha,
                1,
                TRANSACTIONS_STREAM,
                CONSUMER_GROUP,
                self._config.consumer_name,
            )
        except redis.exceptions.RedisError as error:
            # Best effort: a consumer left behind holds nothing and costs a
            # line in XINFO CONSUMERS.
            log.debug("could not remove consumer from group: %s", error)
