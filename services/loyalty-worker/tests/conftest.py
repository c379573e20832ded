"""Fixtures for the worker's tests; ``redis_server`` comes from services/conftest.py."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from worker_helpers import RedisServerLike, WorkerProcess, worker_env


@pytest.fixture
def r(redis_server: RedisServerLike) -> Iterator[redis.Redis]:
    client = redis_server.client()
    yield client
    client.close()


@pytest.fixture
def start_worker(
    redis_server: RedisServerLike, tmp_path: Path
) -> Iterator[Callable[..., WorkerProcess]]:
    """Start a worker against ``redis_server``; keyword arguments become environment variables."""
    started: list[WorkerProcess] = []

    def start(*, url: str | None = None, wait_ready: bool = True, **env: str) -> WorkerProcess:
        worker = WorkerProcess(
            worker_env(url or redis_server.url, **env), tmp_path / f"worker-{len(started)}.log"
        )
        started.append(worker)
        if wait_ready:
            worker.wait_for(r"ready consumer=")
        return worker

    yield start
    for worker in started:
        worker.cleanup()
