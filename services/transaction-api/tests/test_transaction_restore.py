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

import time
from pathlib import Path
from typing import Any

import jwt
from test_transaction_api import claims_for

STREAM = "loyalty:transactions"
FILLER_KEYS = 3000
LOAD_DELAY_US = 2500  # per key: about 7 s of LOADING


def test_api_answers_503_while_redis_loads_a_restored_backup_and_replays_old_keys(
    kit: Any, spawn: Any, jwt_keys: Any, tmp_path: Path
) -> None:
    data = tmp_path / "redis"
    data.mkdir()
    server = kit.AofRedis(data, kit.free_port())
    server.start()
    kit.wait_until(lambda: server.state() == "data", timeout=10)
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
    kit.wait_until(lambda: not server.rewriting(client), timeout=10)
    server.backup(tmp_path / "backup")
    assert client.xlen(STREAM) == 1
    lost = kit.call(api.port, "POST", "/transactions", body, headers("after-backup"))
    assert lost.status == 202
    client.close()

    server.restore(tmp_path / "backup", LOAD_DELAY_US)
    kit.wait_until(lambda: server.state() == "loading", timeout=10)
    # (loading before, POST status, GET status, loading after) of each round
    rounds: list[tuple[bool, int, int, bool]] = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        before_round = server.state() == "loading"
        post = kit.call(api.port, "POST", "/transactions", body, headers("during-restore"))
        get = kit.call(api.port, "GET", "/loyalty", headers=headers())
        after_round = server.state() == "loading"
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
