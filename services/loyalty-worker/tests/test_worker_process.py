"""The worker as a process: signals, systemd notifications, Redis outages, configuration."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from worker_helpers import (
    GROUP,
    STREAM,
    WORKER,
    RedisServerLike,
    WorkerProcess,
    queue,
    settled,
    user_state,
    wait_until,
    worker_env,
)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_stop_signal_exits_zero(
    r: redis.Redis, start_worker: Callable[..., WorkerProcess], signum: int
) -> None:
    worker = start_worker(WORKER_CONSUMER_NAME="stopper")
    started = time.monotonic()
    worker.signal(signum)
    assert worker.process.wait(timeout=5) == 0
    worker.stop()
    # One blocking read at most (WORKER_BLOCK_MS, 1 s by default).
    assert time.monotonic() - started < 3
    log = worker.log()
    assert f"received {signal.Signals(signum).name}; stopping" in log
    assert "Traceback" not in log
    # A clean stop with nothing pending leaves no consumer behind.
    assert r.xinfo_consumers(STREAM, GROUP) == []


def test_sigterm_mid_stream_leaves_every_entry_settled_or_pending(
    r: redis.Redis, start_worker: Callable[..., WorkerProcess]
) -> None:
    total = 3000
    for i in range(total):
        queue(r, f"tx-{i}", user_id=i % 5)
    worker = start_worker(WORKER_CONSUMER_NAME="first", WORKER_BATCH_SIZE="20")
    wait_until(lambda: worker.count("awarded") >= 100)
    worker.signal(signal.SIGTERM)
    assert worker.stop() == 0
    awarded = sum(user_state(r, u).get("transactions", 0) for u in range(5))
    assert 0 < awarded < total, "the stop should land mid-stream"
    # Whatever was awarded was also acknowledged, and nothing else was.
    assert len(r.keys("loyalty:processed:*")) == awarded
    assert r.xpending(STREAM, GROUP)["pending"] == 0
    # The next worker carries on where it stopped, exactly once.
    start_worker(WORKER_CONSUMER_NAME="second")
    wait_until(lambda: settled(r))
    assert sum(user_state(r, u)["transactions"] for u in range(5)) == total


# -- systemd notifications ---------------------------------------------------


@pytest.fixture
def notify_socket() -> Iterator[tuple[socket.socket, str]]:
    # A short path: sun_path holds 108 bytes, pytest's tmp_path can be longer.
    directory = tempfile.mkdtemp(prefix="lw-")
    path = os.path.join(directory, "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(0.1)
    yield sock, path
    sock.close()
    os.unlink(path)
    os.rmdir(directory)


def _collect(sock: socket.socket, seconds: float) -> list[str]:
    messages: list[str] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(TimeoutError):
            messages.append(sock.recv(4096).decode())
    return messages


def test_sd_notify_ready_watchdog_and_stopping(
    redis_server: RedisServerLike,
    start_worker: Callable[..., WorkerProcess],
    notify_socket: tuple[socket.socket, str],
) -> None:
    sock, path = notify_socket
    # 300 ms period: a heartbeat every 150 ms even though the queue is idle
    # and WORKER_BLOCK_MS asks for 5 s reads.
    worker = start_worker(NOTIFY_SOCKET=path, WATCHDOG_USEC="300000", WORKER_BLOCK_MS="5000")
    messages = _collect(sock, 1.5)
    assert messages[0] == "STATUS=connecting to Redis"
    assert [m for m in messages if "READY=1" in m.splitlines()] == ["READY=1\nSTATUS=consuming"]
    heartbeats = [m for m in messages if m == "WATCHDOG=1"]
    # About 10; loose bounds for a loaded machine.
    assert 3 <= len(heartbeats) <= 14, messages
    worker.signal(signal.SIGTERM)
    assert worker.stop() == 0
    rest = _collect(sock, 0.3)
    assert any("STOPPING=1" in m.splitlines() for m in rest), rest


def test_sd_notify_abstract_socket_and_foreign_watchdog_pid(
    redis_server: RedisServerLike, start_worker: Callable[..., WorkerProcess]
) -> None:
    name = f"loyalty-worker-test-{os.getpid()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(0.1)
    try:
        # WATCHDOG_PID names another process: this one must not send heartbeats.
        worker = start_worker(NOTIFY_SOCKET="@" + name, WATCHDOG_USEC="200000", WATCHDOG_PID="1")
        messages = _collect(sock, 0.8)
        worker.stop()
    finally:
        sock.close()
    assert any("READY=1" in m.splitlines() for m in messages), messages
    assert "WATCHDOG=1" not in messages


def test_ready_waits_for_redis(
    redis_server: RedisServerLike,
    start_worker: Callable[..., WorkerProcess],
    notify_socket: tuple[socket.socket, str],
) -> None:
    sock, path = notify_socket
    redis_server.kill()
    worker = start_worker(NOTIFY_SOCKET=path, WATCHDOG_USEC="400000", wait_ready=False)
    early = _collect(sock, 1.0)
    assert not any("READY=1" in m for m in early)
    # Still alive, and heartbeating: retrying Redis is not a hang.
    assert worker.process.poll() is None
    assert "WATCHDOG=1" in early
    redis_server.start()
    worker.wait_for(r"ready consumer=", timeout=10)
    assert any("READY=1" in m.splitlines() for m in _collect(sock, 0.5))


# -- Redis outages -----------------------------------------------------------


def test_redis_restarted_under_a_running_worker(
    redis_server: RedisServerLike, tmp_path: Path
) -> None:
    server = redis_server
    # Come back with an append-only file synced on every write, so that a
    # SIGKILL of Redis keeps every reply it gave.
    server.kill()
    server.durable = True
    server.start()
    client = server.client()
    total = 2000
    for i in range(total):
        queue(client, f"tx-{i}", user_id=i % 3)
    worker = WorkerProcess(worker_env(server.url, WORKER_BATCH_SIZE="20"), tmp_path / "w.log")
    try:
        worker.wait_for(r"ready consumer=")
        wait_until(lambda: worker.count("awarded") >= 200)
        server.kill()  # SIGKILL mid-stream; AOF with fsync always keeps every reply given
        worker.wait_for(r"redis unreachable", timeout=5)
        time.sleep(1.5)
        assert worker.process.poll() is None
        # Backing off, not spinning: a handful of attempts in 1.5 s.
        assert worker.count(r"redis unreachable") <= 12
        server.start()
        client = server.client()
        worker.wait_for(r"reconnected to redis", timeout=10)
        queue(client, "tx-after-restart", user_id=9)
        wait_until(lambda: settled(client), timeout=20)
        assert sum(user_state(client, u)["transactions"] for u in range(3)) == total
        assert user_state(client, 9)["transactions"] == 1
        assert len(client.keys("loyalty:processed:*")) == total + 1
        assert worker.stop() == 0
    finally:
        worker.cleanup()
        client.close()


def test_redis_restarted_empty_recreates_the_group(
    redis_server: RedisServerLike, start_worker: Callable[..., WorkerProcess]
) -> None:
    worker = start_worker()
    redis_server.kill()
    worker.wait_for(r"redis unreachable", timeout=5)
    redis_server.start()  # no persistence: stream and group are gone
    worker.wait_for(r"reconnected to redis", timeout=10)
    client = redis_server.client()
    queue(client, "tx-fresh", user_id=1)
    wait_until(lambda: client.exists("loyalty:user:1"), timeout=10)
    assert user_state(client, 1)["transactions"] == 1
    client.close()


# -- configuration -------------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("STAMPS_PER_VOUCHER", "0"),
        ("STAMPS_PER_VOUCHER", "ten"),
        ("STAMPS_PER_VOUCHER", "2.5"),
        ("MIN_STAMP_AMOUNT", "0"),
        ("MIN_STAMP_AMOUNT", "-1"),
        ("WORKER_CONSUMER_NAME", "two words"),
        ("WORKER_CLAIM_IDLE_MS", "0"),
        ("WORKER_CLAIM_IDLE_MS", "soon"),
        ("WORKER_MAX_DELIVERIES", "0"),
        ("WORKER_BATCH_SIZE", "0"),
        ("WORKER_BATCH_SIZE", "1000000"),
        ("WORKER_BLOCK_MS", "0"),
        ("LOG_LEVEL", "LOUD"),
        ("REDIS_URL", "http://127.0.0.1:6379/0"),
        ("REDIS_SOCKET_TIMEOUT", "never"),
        ("REDIS_PASSWORD_FILE", "/nonexistent/password"),
        ("REDIS_SENTINELS", "127.0.0.1:26379,[not-v6]:26379"),
        ("REDIS_SENTINELS", "127.0.0.1:port"),
        ("REDIS_SENTINEL_PASSWORD_FILE", "/nonexistent/sentinel.password"),
    ],
)
def test_bad_variable_stops_with_one_line_and_exit_2(variable: str, value: str) -> None:
    # Configuration is checked before Redis is contacted: nothing listens here.
    env = worker_env("redis://127.0.0.1:1/0", **{variable: value})
    result = subprocess.run([WORKER], env=env, capture_output=True, text=True, timeout=20)
    assert result.returncode == 2, result
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"loyalty-worker: {variable}: "), lines
    assert result.stdout == ""


def test_runs_as_the_restricted_acl_user_with_a_password_file(
    kit: Any,
    r: redis.Redis,
    redis_server: RedisServerLike,
    start_worker: Callable[..., WorkerProcess],
    tmp_path: Path,
) -> None:
    r.execute_command(
        "ACL", "SETUSER", "loyalty", "reset", "on", ">s3cret", "~loyalty:*", *kit.SERVICE_ACL
    )
    password_file = tmp_path / "redis.password"
    password_file.write_text("s3cret\n")
    queue(r, "tx-acl", user_id=1)
    r.xadd(STREAM, {"garbage": "1"})
    worker = start_worker(
        url=f"redis://loyalty@127.0.0.1:{redis_server.port}/0",
        REDIS_PASSWORD_FILE=str(password_file),
        WORKER_CLAIM_IDLE_MS="100",  # reclaim and trim run every 50 ms
    )
    wait_until(lambda: settled(r))
    time.sleep(0.3)
    worker.signal(signal.SIGTERM)
    assert worker.stop() == 0
    log = worker.log()
    assert "NOPERM" not in log and "refused a command" not in log, log
    assert user_state(r, 1)["transactions"] == 1
    assert r.xlen("loyalty:dead") == 1
    assert r.xinfo_consumers(STREAM, GROUP) == []
