"""Redis key names shared by the Transaction API and the workers.

The single source is docs/interfaces.md ("Redis keys"), which also lists
the fields of each key; keep them in step.
"""

from __future__ import annotations

__all__ = [
    "CONSUMER_GROUP",
    "DEAD_LETTER_STREAM",
    "TRANSACTIONS_STREAM",
    "idempotency_key",
    "processed_key",
    "user_key",
]

TRANSACTIONS_STREAM = "loyalty:transactions"
CONSUMER_GROUP = "loyalty-workers"
DEAD_LETTER_STREAM = "loyalty:dead"


def user_key(user_id: int | str) -> str:
    """Hash of one user's loyalty state: ``loyalty:user:<user_id>``."""
    return f"loyalty:user:{user_id}"


def processed_key(transaction_id: str) -> str:
    """Mark that a transaction was awarded: ``loyalty:processed:<id>``."""
    return f"loyalty:processed:{transaction_id}"


def idempotency_key(user_id: int | str, key: str) -> str:
    """Transaction id answered for an Idempotency-Key of one user."""
    return f"loyalty:idempotency:{user_id}:{key}"
