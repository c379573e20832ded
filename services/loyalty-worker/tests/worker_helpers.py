"""Helpers for the worker's tests: real worker processes and the queue they read.

Named worker_helpers (not helpers) because every service's tests share one
rootdir, where module names must be unique; services/conftest.py itself is not
importable (several conftest modules share that name).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import redis

STREAM = "loyalty:transactions"
GROUP = "loyalty-workers"
DEAD = "loyalty:dead"

# The console script installed next to the interpreter running the tests.
WORKER = str(Path(sys.executable).with_name("loyalty-worker"))


def wait_until(
    predicate: Callable[[], object], timeout: float = 10.0, interval: float = 0.02
) -> None:
    """Poll until truthy; conftest's ``kit.wait_until``, usable without the fixture."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {predicate}")
        time.sleep(interval)


class RedisServerLike(Protocol):
    """What the tests use of services/conftest.py's RedisServer (not importable here)."""

    port: int
    durable: bool

    @property
    def url(self) -> str: ...

    def start(self) -> None: ...

    def kill(self) -> None: ...

    def client(self) -> redis.Redis: ...


class WorkerProcess:
    """A ``loyalty-worker`` process whose standard output goes to a file."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self._out = log_path.open("wb")
        self.process = subprocess.Popen(
            [WORKER], env=env, stdout=self._out, stderr=subprocess.STDOUT
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def count(self, pattern: str) -> int:
        return len(re.findall(pattern, self.log()))

    def count_once_logged(self, pattern: str, expected: int, timeout: float = 10.0) -> int:
        """Lines matching ``pattern``, counted once ``expected`` of them are there (or at timeout).

        Redis shows an award as soon as the script ran, a moment before the
        worker has written its log line about it: a count taken at once can
        come out short. More lines than expected still show in the result.
        """
        # At the timeout the caller's own assertion reports the short count.
        with contextlib.suppress(AssertionError):
            wait_until(lambda: self.count(pattern) >= expected, timeout=timeout)
        return self.count(pattern)

    def wait_for(self, pattern: str, timeout: float = 10.0) -> None:
        try:
            wait_until(lambda: re.search(pattern, self.log()), timeout=timeout)
        except AssertionError:
            raise AssertionError(
                f"no line matching {pattern!r} in:\n{self.log()[-3000:]}"
            ) from None

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def stop(self, timeout: float = 10.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        finally:
            self._out.close()

    def cleanup(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._out.close()


def worker_env(url: str, **overrides: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("REDIS_", "WORKER_", "NOTIFY_", "WATCHDOG_"))
        and k not in ("STAMPS_PER_VOUCHER", "MIN_STAMP_AMOUNT", "LOG_LEVEL")
    }
    env.update({"REDIS_URL": url, "PYTHONUNBUFFERED": "1"})
    env.update(overrides)
    return env


def queue(
    client: redis.Redis,
    transaction_id: str,
    user_id: int = 1,
    amount: int = 2000,
    username: str | None = None,
) -> str:
    """Queue a transaction the way the Transaction API does."""
    return str(
        client.xadd(
            STREAM,
            {
                "transaction_id": transaction_id,
                "user_id": str(user_id),
                "username": username or f"user{user_id}",
                "amount": str(amount),
                "currency": "GBP",
                "accepted_at": "2024-01-01T00:00:00Z",
            },
        )
    )


def user_state(client: redis.Redis, user_id: int) -> dict[str, int]:
    raw = client.hgetall(f"loyalty:user:{user_id}")
    return {k: int(v) for k, v in raw.items() if k != "username"}


def settled(client: redis.Redis) -> bool:
    """Every entry in the stream has been delivered and acknowledged."""
    groups = client.xinfo_groups(STREAM)
    last = client.xinfo_stream(STREAM)["last-generated-id"]
    return bool(groups) and groups[0]["pending"] == 0 and groups[0]["last-delivered-id"] == last
