"""Redis access of the Transaction API: the stream, idempotency, loyalty reads."""

from __future__ import annotations

import logging
from typing import Any

import redis
from loyalty_common import TRANSACTIONS_STREAM, idempotency_key, user_key
from loyalty_common.redis_access import primary_address

__all__ = ["ReplicaShortfall", "TransactionQueue"]

log = logging.getLogger("transaction_api")

# Check the key, queue, remember the key: one atomic step, so a crash or a
# concurrent retry can never leave a key pointing at a transaction that was
# not queued, nor queue one transaction twice.  XADD comes first: if it fails
# (OOM, stream missing permissions), nothing at all was written.
#
# A replay rewrites the key with its own value and TTL.  That write changes
# nothing, but it puts this connection's replication offset after the first
# request's XADD, so the WAIT that follows it covers that XADD: a replayed 202
# means the entry is on the replicas just as a first 202 does.  (WAIT counts
# only the writes of the connection that sends it.)
_IDEMPOTENT_XADD = """
local existing = redis.call('GET', KEYS[1])
if existing then
  redis.call('SET', KEYS[1], existing, 'KEEPTTL')
  return {0, existing}
end
redis.call('XADD', KEYS[2], '*', unpack(ARGV, 3))
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[1])
return {1, ARGV[2]}
"""


class ReplicaShortfall(Exception):
    """The entry is on the primary, but fewer replicas than required acknowledged it in time."""

    def __init__(
        self,
        transaction_id: str,
        replayed: bool,
        acknowledged: int,
        required: int,
        timeout_ms: int,
    ) -> None:
        super().__init__(
            f"transaction_id={transaction_id}: {acknowledged} of {required} replicas "
            f"acknowledged within {timeout_ms} ms"
        )
        self.transaction_id = transaction_id
        self.replayed = replayed
        self.acknowledged = acknowledged
        self.required = required
        self.timeout_ms = timeout_ms


class TransactionQueue:
    """Thin wrapper over one client (and so one connection pool) per process.

    Every method lets redis-py's errors through; the app maps them to 503.
    With ``wait_replicas`` > 0 the queueing methods also raise
    ReplicaShortfall.
    """

    def __init__(
        self,
        client: redis.Redis,
        idempotency_ttl: int,
        *,
        wait_replicas: int = 0,
        wait_timeout_ms: int = 500,
    ) -> None:
        self._redis = client
        self._ttl = idempotency_ttl
        self._wait_replicas = wait_replicas
        self._wait_timeout_ms = wait_timeout_ms
        self._primary: str | None = None

    def _queue(self, pipe: Any) -> tuple[Any, int | None]:
        """Run ``pipe``, with a WAIT after it, on one connection.

        Returns the first reply and the number of replicas that acknowledged
        (None when no WAIT is configured).

        One pipeline is one connection: WAIT must be sent on the connection
        that wrote, or it would wait for nothing.  The script goes as EVAL
        (Redis keeps it compiled by its SHA1), so a freshly promoted primary,
        which has no scripts loaded, needs no NOSCRIPT round trip.
        """
        if self._wait_replicas:
            pipe.wait(self._wait_replicas, self._wait_timeout_ms)
        replies = pipe.execute()
        self._note_primary()
        return replies[0], int(replies[-1]) if self._wait_replicas else None

    def _confirm(self, acknowledged: int | None, transaction_id: str, replayed: bool) -> None:
        if acknowledged is not None and acknowledged < self._wait_replicas:
            # Missing acknowledgements are also what a primary that was just
            # replaced sees: its replicas follow the new one, yet it accepts
            # writes until the Sentinels demote it (seconds later), and those
            # writes are then discarded.  Close the pooled connections so the
            # client's retry asks the Sentinels again instead of writing to it.
            self._redis.connection_pool.disconnect()
            raise ReplicaShortfall(
                transaction_id, replayed, acknowledged, self._wait_replicas, self._wait_timeout_ms
            )

    def enqueue(self, fields: dict[str, str]) -> None:
        """XADD one transaction; returns once Redis (and the replicas required) have it."""
        pipe = self._redis.pipeline(transaction=False)
        pipe.xadd(TRANSACTIONS_STREAM, fields)
        _, acknowledged = self._queue(pipe)
        self._confirm(acknowledged, fields["transaction_id"], False)

    def enqueue_once(self, user_id: int, key: str, fields: dict[str, str]) -> tuple[str, bool]:
        """Queue unless this user already used ``key``.

        Returns (transaction_id, replayed): the id answered the first time and
        True when nothing new was queued.
        """
        args: list[str] = [str(self._ttl), fields["transaction_id"]]
        for name, value in fields.items():
            args += (name, value)
        pipe = self._redis.pipeline(transaction=False)
        pipe.eval(_IDEMPOTENT_XADD, 2, idempotency_key(user_id, key), TRANSACTIONS_STREAM, *args)
        (created, transaction_id), acknowledged = self._queue(pipe)
        self._confirm(acknowledged, str(transaction_id), not created)
        return str(transaction_id), not created

    def loyalty(self, user_id: int) -> dict[str, str]:
        """The worker's hash for this user (empty when nothing was awarded yet)."""
        result: dict[str, str] = self._redis.hgetall(user_key(user_id))
        return result

    def ping(self) -> bool:
        """True when Redis (the current primary, with Sentinel) answers PING."""
        answered = bool(self._redis.ping())
        self._note_primary()
        return answered

    def _note_primary(self) -> None:
        """Log once whenever Sentinel names a new primary (a failover was followed)."""
        address = primary_address(self._redis)
        if address is None or address == self._primary:
            return
        if self._primary is None:
            log.info("redis primary is %s (through Sentinel)", address)
        else:
            log.warning(
                "redis primary is now %s (was %s): followed a failover", address, self._primary
            )
        self._primary = address
