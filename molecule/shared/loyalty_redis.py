"""Reading the loyalty data and the workers' stream group from redis-cli's
output. Each scenario reaches Redis its own way (one server, or the primary
behind Sentinel), so the functions take that scenario's `redis_cli`."""

from __future__ import annotations

import time
from collections.abc import Callable

RedisCli = Callable[..., str]

STREAM = "loyalty:transactions"
GROUP = "loyalty-workers"


def pairs(lines: list[str]) -> dict[str, str]:
    """A flat reply (key, value, key, value, ...) as a dictionary."""
    return dict(zip(lines[0::2], lines[1::2], strict=False))


def loyalty_state(redis_cli: RedisCli, user_id: int) -> dict[str, int]:
    """A user's stamps, vouchers and transactions (0 when not set)."""
    state = pairs(redis_cli("HGETALL", f"loyalty:user:{user_id}").splitlines())
    return {k: int(state.get(k, 0) or 0) for k in ("stamps", "vouchers", "transactions")}


def group_info(redis_cli: RedisCli) -> dict[str, str]:
    """XINFO GROUPS of the stream for the workers' group (name -> value)."""
    info = pairs(redis_cli("XINFO", "GROUPS", STREAM).splitlines())
    return info if info.get("name") == GROUP else {}


def wait_until_drained(
    read_group_info: Callable[[], dict[str, str]],
    timeout: float = 120,
    retry_errors: bool = False,
) -> None:
    """Until the workers have read and settled everything queued so far.

    With `retry_errors`, a failed read (Redis between two primaries) counts
    as not drained yet instead of failing the test at once."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            info = read_group_info()
        except AssertionError as error:
            if not retry_errors:
                raise
            info = {"error": str(error)}
        if info.get("pending") == "0" and info.get("lag") in ("0", None):
            return
        assert time.monotonic() < deadline, f"the workers did not catch up: {info}"
        time.sleep(1)


def processed_marks(redis_lines: Callable[[list[str]], list[str]], ids: list[str]) -> int:
    """How many of these transaction ids a worker has marked as processed."""
    replies = redis_lines([f"EXISTS loyalty:processed:{i}" for i in ids])
    return sum(1 for r in replies if r.strip() == "1")


def wait_until_awarded(
    redis_lines: Callable[[list[str]], list[str]],
    read_group_info: Callable[[], dict[str, str]],
    ids: list[str],
    timeout: float = 180,
) -> int:
    """Until every id has its processed mark and nothing is pending in the
    workers' group; returns how many ids have a mark (fewer than all when
    `timeout` passed first, for the test to report as lost)."""
    deadline = time.monotonic() + timeout
    while True:
        marked = processed_marks(redis_lines, ids)
        done = marked == len(ids) and read_group_info().get("pending") == "0"
        if done or time.monotonic() > deadline:
            return marked
        time.sleep(2)
