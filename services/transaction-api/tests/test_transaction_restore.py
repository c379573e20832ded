"""The Transaction API while Redis is restored from a backup (docs/backups.md).

A restore stops redis-server, puts the backup's AOF directory in place and
starts it again; until the data is loaded Redis answers LOADING. Here a real
redis-server with append-only persistence is backed up the way the role
redis_backup does it (the AOF directory copied while no rewrite runs),
restored, and slowed down while loading (key-load-delay) so that requests
arrive meanwhile: they get 503 with Retry-After, never 500; afterwards an
Idempotency-Key accepted before the backup gets the same transaction_id
and queues nothing new.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import jwt
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from test_transaction_api import claims_for

STREAM = "loyalty:transactions"
FILLER_KEYS = 3000
LOAD_DELAY_US = 2500  # per key: about 7 s of LOADING


class AofRedis:
    """redis-server with AOF on a fixed port and directory, started with extra options."""

    def __init__(self, directory: Path, port: int) -> None:
        self.directory = directory
        self.port = port
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, *extra: str) -> None:
        self.process = subprocess.Popen(
            [
                shutil.which("redis-server") or "/usr/bin/redis-server",
                "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--dir", str(self.directory), "--appendonly", "yes", "--appendfsync", "always",
                "--logfile", str(self.directory / "redis.log"), *extra,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip

    def client(self) -> redis.Redis:
        # No retries: redis-py would otherwise wait through LOADING itself.
        return redis.Redis(
            port=self.port, decode_responses=True, socket_timeout=5, retry=Retry(NoBackoff(), 0)
        )

    def loading(self) -> bool:
        client = self.client()
        try:
            client.dbsize()  # PING is answered while loading, DBSIZE is not
        except redis.exceptions.BusyLoadingError:
            return True
        except redis.ConnectionError:
            return False
        finally:
            client.close()
        return False

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=20)
            self.process = None

    def backup(self, dest: Path) -> None:
        """The AOF directory, copied with automatic rewrites paused and none running."""
        client = self.client()
        client.config_set("auto-aof-rewrite-percentage", 0)
        while _rewriting(client):
            time.sleep(0.05)
        shutil.copytree(self.directory / "appendonlydir", dest)
        client.config_set("auto-aof-rewrite-percentage", 100)
        client.close()

    def restore(self, source: Path) -> None:
        """As the restore playbook does: stopped, AOF directory replaced, started."""
        self.stop()
        shutil.rmtree(self.directory / "appendonlydir")
        shutil.copytree(source, self.directory / "appendonlydir")
        # Slowed down, and answering between small steps of the load (by
        # default Redis serves clients every 2 MB loaded).
        self.start(
            "--key-load-delay", str(LOAD_DELAY_US),
            "--loading-process-events-interval-bytes", "1024",
        )  # fmt: skip


def test_api_answers_503_while_redis_loads_a_restored_backup_and_replays_old_keys(
    kit: Any, spawn: Any, jwt_keys: Any, tmp_path: Path
) -> None:
    data = tmp_path / "redis"
    data.mkdir()
    server = AofRedis(data, kit.free_port())
    server.start()
    kit.wait_until(lambda: not server.loading() and _pings(server), timeout=10)
    api = spawn(
        "transaction-api",
        kit.transaction_env(jwt_keys, f"redis://127.0.0.1:{server.port}/0", REDIS_SOCKET_TIMEOUT=1),
    )

    def headers(key: str | None = None) -> dict[str, str]:
        token = jwt.encode(claims_for(), jwt_keys.private_key, algorithm="EdDSA")
        extra = {"Idempotency-Key": key} if key else {}
        return {"Authorization": f"Bearer {token}", **extra}

    body = {"amount": 700, "currency": "GBP"}
    before = kit.call(api.port, "POST", "/transactions", body, headers("before-backup"))
    assert before.status == 202, before.body
    client = server.client()
    client.mset({f"filler:{i}": "x" for i in range(FILLER_KEYS)})
    client.bgrewriteaof()  # the filler in the RDB base, where key-load-delay applies
    kit.wait_until(lambda: not _rewriting(client), timeout=10)
    server.backup(tmp_path / "backup")
    assert client.xlen(STREAM) == 1
    lost = kit.call(api.port, "POST", "/transactions", body, headers("after-backup"))
    assert lost.status == 202
    client.close()

    server.restore(tmp_path / "backup")
    kit.wait_until(server.loading, timeout=10)
    # (loading before, POST status, GET status, loading after) of each round
    rounds: list[tuple[bool, int, int, bool]] = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        before_round = server.loading()
        post = kit.call(api.port, "POST", "/transactions", body, headers("during-restore"))
        get = kit.call(api.port, "GET", "/loyalty", headers=headers())
        after_round = server.loading()
        rounds.append((before_round, post.status, get.status, after_round))
        for reply in (post, get):
            assert reply.status in (200, 202, 503), reply.body
            if reply.status == 503:
                assert reply.headers["Retry-After"] == "1" and reply.json["error"], reply.body
        if before_round and after_round:  # loading all along: refused
            assert (post.status, get.status) == (503, 503), rounds
        if not before_round and post.status == 202:
            break
        time.sleep(0.1)
    assert rounds[-1][1] == 202, rounds
    # A round fell entirely within the load (each request there waits up
    # to its socket timeout, so the load holds only a few).
    assert any(r[0] and r[3] for r in rounds), rounds
    ready = kit.call(api.port, "GET", "/ready")
    assert ready.status == 200
    assert "Traceback" not in api.log()

    # The key accepted before the backup: same answer, nothing queued again.
    again = kit.call(api.port, "POST", "/transactions", body, headers("before-backup"))
    assert again.status == 202
    assert again.json["transaction_id"] == before.json["transaction_id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    client = server.client()
    # The backup's entry and the one accepted after the restore; the one
    # accepted between backup and restore is lost with the data.
    assert client.xlen(STREAM) == 2
    assert client.dbsize() >= FILLER_KEYS
    client.close()
    server.stop()


def _rewriting(client: redis.Redis) -> bool:
    persistence = client.info("persistence")
    return bool(persistence["aof_rewrite_in_progress"] or persistence["aof_rewrite_scheduled"])


def _pings(server: AofRedis) -> bool:
    client = server.client()
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()
