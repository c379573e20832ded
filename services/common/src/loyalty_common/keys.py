"""Redis key names shared by the Transaction API and the workers.

The single source is docs/interfaces.md ("Redis keys"); keep them in step.
"""

from __future__ import annotations

__all__ = [
    "CONSUMER_GROUP",
    "DEAD_LETTER_FIELDS",
    "DEAD_LETTER_STREAM",
    "TRANSACTIONS_STREAM",
    "TRANSACTION_FIELDS",
    "USER_FIELDS",
    "idempotency_key",
    "processed_key",
    "user_key",
]

TRANSACTIONS_STREAM = "loyalty:transactions"
CONSUMER_GROUP = "loyalty-workers"
DEAD_LETTER_STREAM = "loyalty:dead"

# Fields of each entry of TRANSACTIONS_STREAM, in the order they are written.
TRANSACTION_FIELDS = (
    "transaction_id",
    "user_id",
    "username",
    "amount",
    "currency",
    "accepted_at",
)
# Fields a dead letter adds to the original ones.
DEAD_LETTER_FIELDS = ("reason", "deliveries", "source_id")
# Fields of the loyalty:user:<id> hash.
USER_FIELDS = ("stamps", "vouchers", "transactions", "username")


def user_key(user_id: int | str) -> str:
    """Hash of one user's loyalty state: ``loyalty:user:<user_id>``."""
    return f"loyalty:user:{user_id}"


def processed_key(transaction_id: str) -> str:
    """Mark that a transaction was awarded: ``loyalty:processed:<id>``."""
    return f"loyalty:processed:{transaction_id}"


def idempotency_key(user_id: int | str, key: str) -> str:
    """Transaction id answered for an Idempotency-Key of one user."""
    return f"loyalty:idempotency:{user_id}:{key}"
