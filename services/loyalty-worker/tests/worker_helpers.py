"""Helpers for the worker's tests: a real redis-server and real worker processes.

Named worker_helpers (not helpers) because every service's tests share one
rootdir, where module names must be unique.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import redis

STREAM = "loyalty:transactions"
GROUP = "loyalty-workers"
DEAD = "loyalty:dead"

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
# The console script installed next to the interpreter running the tests.
WORKER = str(Path(sys.executable).with_name("loyalty-worker"))


def wait_until(predicate: Callable[[], object], timeout: float = 10.0, interval: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {predicate}")
        time.sleep(interval)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """One redis-server on a free port; can be stopped and started again on the same port and data."""

    def __init__(self, directory: Path, *, durable: bool = False) -> None:
        self.directory = directory
        self.port = free_port()
        self.durable = durable
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        persistence = (
            # Every acknowledged write survives a SIGKILL of the server.
            ["--appendonly", "yes", "--appendfsync", "always"]
            if self.durable
            else ["--appendonly", "no"]
        )
        self.process = subprocess.Popen(
            [
                REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1",
                "--save", "", "--dir", str(self.directory), *persistence,
                "--logfile", str(self.directory / "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = self.client()
        try:
            wait_until(lambda: _pings(client), timeout=10)
        finally:
            client.close()

    def kill(self) -> None:
        """Stop abruptly, as a crash or an OOM kill would."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, decode_responses=True, socket_timeout=5)


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except (redis.ConnectionError, redis.exceptions.BusyLoadingError):
        return False


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

    def wait_for(self, pattern: str, timeout: float = 10.0) -> None:
        try:
            wait_until(lambda: re.search(pattern, self.log()), timeout=timeout)
        except AssertionError:
            raise AssertionError(f"no line matching {pattern!r} in:\n{self.log()[-3000:]}") from None

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
        k: v for k, v in os.environ.items()
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
