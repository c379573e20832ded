"""Redis access of the Transaction API: the stream, idempotency, loyalty reads."""

from __future__ import annotations

import redis
from loyalty_common import (
    TRANSACTIONS_STREAM,
    idempotency_key,
    user_key,
)

__all__ = ["TransactionQueue"]

# Check the key, queue, remember the key: one atomic step, so a crash or a
# concurrent retry can never leave a key pointing at a transaction that was
# not queued, nor queue one transaction twice.  XADD comes first: if it fails
# (OOM, stream missing permissions), nothing at all was written.
_IDEMPOTENT_XADD = """
local existing = redis.call('GET', KEYS[1])
if existing then
  return {0, existing}
end
redis.call('XADD', KEYS[2], '*', unpack(ARGV, 3))
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[1])
return {1, ARGV[2]}
"""


class TransactionQueue:
    """Thin wrapper over one client (and so one connection pool) per process.

    Every method lets redis-py's errors through; the app maps them to 503.
    """

    def __init__(self, client: redis.Redis, idempotency_ttl: int) -> None:
        self._redis = client
        self._ttl = idempotency_ttl
        self._idempotent_xadd = client.register_script(_IDEMPOTENT_XADD)

    def enqueue(self, fields: dict[str, str]) -> None:
        """XADD one transaction; returns once Redis has it."""
        self._redis.xadd(TRANSACTIONS_STREAM, fields)

    def enqueue_once(self, user_id: int, key: str, fields: dict[str, str]) -> tuple[str, bool]:
        """Queue unless this user already used ``key``.

        Returns (transaction_id, replayed): the id answered the first time and
        True when nothing new was queued.
        """
        args: list[str] = [str(self._ttl), fields["transaction_id"]]
        for name, value in fields.items():
            args += (name, value)
        created, transaction_id = self._idempotent_xadd(
            keys=[idempotency_key(user_id, key), TRANSACTIONS_STREAM], args=args
        )
        return str(transaction_id), not created

    def loyalty(self, user_id: int) -> dict[str, str]:
        """The worker's hash for this user (empty when nothing was awarded yet)."""
        result: dict[str, str] = self._redis.hgetall(user_key(user_id))
        return result

    def ping(self) -> bool:
        """True when Redis answers PING."""
        return bool(self._redis.ping())
