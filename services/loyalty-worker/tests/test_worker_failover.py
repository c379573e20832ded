"""A real failover: the primary is killed, Sentinel promotes a replica.

The Transaction API (REDIS_WAIT_REPLICAS=1) and a running worker find the
new primary through the Sentinels by themselves; every transaction that got
a 202 is awarded exactly once on the new primary.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from worker_helpers import DEAD, WorkerProcess, settled, user_state, wait_until, worker_env

BODY = {"amount": 2000, "currency": "GBP"}


def post_until_accepted(kit: Any, port: int, jwt_keys: Any, key: str, deadline: float) -> int:
    """Send one transaction as a careful client does: on 503, again with the same key.

    Returns the number of 503 answers seen before the 202.
    """
    refused = 0
    while True:
        headers = {**kit.bearer(jwt_keys), "Idempotency-Key": key}
        reply = kit.call(port, "POST", "/transactions", BODY, headers)
        if reply.status == 202:
            return refused
        assert reply.status == 503, reply.body
        assert reply.headers["Retry-After"] == "1"
        refused += 1
        assert time.monotonic() < deadline, f"{key} still refused: {reply.body!r}"
        time.sleep(0.2)


def test_kill_the_primary_api_and_worker_follow_the_promoted_replica(
    kit: Any, spawn: Any, redis_ha: Any, jwt_keys: Any, tmp_path: Path
) -> None:
    redis_ha.wait_until_acquainted()
    api = spawn(
        "transaction-api",
        kit.transaction_env(
            jwt_keys,
            redis_ha.url,
            REDIS_WAIT_REPLICAS=1,
            REDIS_SOCKET_TIMEOUT=1,
            **redis_ha.env(),
        ),
    )
    old = redis_ha.primary
    worker = WorkerProcess(
        worker_env(redis_ha.url, WORKER_CONSUMER_NAME="follower", **redis_ha.env()),
        tmp_path / "worker.log",
    )
    try:
        worker.wait_for(rf"ready consumer=follower primary=127\.0\.0\.1:{old.port}\b")
        keys = [f"before-{n}" for n in range(5)]
        for key in keys:
            assert post_until_accepted(kit, api.port, jwt_keys, key, time.monotonic() + 5) == 0
        worker.wait_for(r"(awarded transaction_id=.*\n.*){5}")

        old.kill()
        killed = time.monotonic()
        refused = post_until_accepted(kit, api.port, jwt_keys, "during", killed + 30)
        recovered = time.monotonic() - killed
        new_port = redis_ha.primary_port()
        assert new_port != old.port
        print(f"API answered 202 again {recovered:.1f} s after the kill ({refused} x 503)")
        assert refused > 0 and recovered < 30
        after = [f"after-{n}" for n in range(10)]
        for key in after:
            post_until_accepted(kit, api.port, jwt_keys, key, time.monotonic() + 10)
        keys += ["during", *after]

        worker.wait_for(
            rf"following the new primary 127\.0\.0\.1:{new_port} \(was 127\.0\.0\.1:{old.port}\)",
            timeout=20,
        )
        client = redis_ha.server_on(new_port).client()
        try:
            wait_until(lambda: settled(client), timeout=20)
            ids = {key: client.get(f"loyalty:idempotency:1:{key}") for key in keys}
            marks = client.keys("loyalty:processed:*")
            transactions = user_state(client, 1)["transactions"]
            dead = client.xlen(DEAD)
        finally:
            client.close()
        # Every 202 is on the new primary and was awarded once: one mark and
        # one counted transaction each, nothing dead-lettered.
        assert None not in ids.values() and len(set(ids.values())) == len(keys)
        assert {m.removeprefix("loyalty:processed:") for m in marks} == set(ids.values())
        assert transactions == len(keys)
        assert dead == 0
        log = worker.log()
        for key in ["during", *after]:
            # Queued after the kill, so only ever seen by the new primary.
            assert log.count(f"awarded transaction_id={ids[key]} ") == 1
        assert "Traceback" not in log
        assert api.process.poll() is None and worker.process.poll() is None
    finally:
        worker.cleanup()


def test_forced_failover_with_every_replica_waited_for_loses_no_202(
    kit: Any, spawn: Any, redis_ha: Any, jwt_keys: Any, tmp_path: Path
) -> None:
    """SENTINEL FAILOVER while the primary is alive: it is demoted seconds later.

    Until then it still takes writes, and a replica that has not yet been
    moved to the new primary still acknowledges them; they are discarded when
    it is demoted.  Waiting for every replica (2 here) refuses those writes,
    since the promoted replica no longer acknowledges: no 202 is lost.
    (With fewer, some can be: see docs/interfaces.md.)
    """
    redis_ha.wait_until_acquainted()
    api = spawn(
        "transaction-api",
        kit.transaction_env(jwt_keys, redis_ha.url, REDIS_WAIT_REPLICAS=2, **redis_ha.env()),
    )
    old = redis_ha.primary
    worker = WorkerProcess(
        worker_env(redis_ha.url, WORKER_CONSUMER_NAME="forced", **redis_ha.env()),
        tmp_path / "worker.log",
    )
    try:
        worker.wait_for(r"ready consumer=forced ")
        sentinel = redis_ha.sentinels[0].client()
        try:
            sentinel.execute_command("SENTINEL", "FAILOVER", "loyalty")
        finally:
            sentinel.close()
        started = time.monotonic()
        keys: list[str] = []
        refused = 0
        # Keep sending through the switch and until the demoted primary has
        # become a replica of the new one (two replicas acknowledge again).
        while time.monotonic() - started < 30:
            key = f"forced-{len(keys)}"
            refused += post_until_accepted(kit, api.port, jwt_keys, key, started + 30)
            keys.append(key)
            if redis_ha.primary_port() != old.port and refused and len(keys) >= 10:
                break
            time.sleep(0.05)
        new_port = redis_ha.primary_port()
        assert new_port != old.port and refused > 0
        took = time.monotonic() - started
        print(f"forced failover: {len(keys)} accepted, {refused} x 503 in {took:.1f} s")
        worker.wait_for(rf"following the new primary 127\.0\.0\.1:{new_port} ", timeout=20)
        client = redis_ha.server_on(new_port).client()
        try:
            wait_until(lambda: settled(client), timeout=20)
            ids = {key: client.get(f"loyalty:idempotency:1:{key}") for key in keys}
            marks = client.keys("loyalty:processed:*")
            transactions = user_state(client, 1)["transactions"]
        finally:
            client.close()
        assert None not in ids.values() and len(set(ids.values())) == len(keys)
        assert {m.removeprefix("loyalty:processed:") for m in marks} == set(ids.values())
        assert transactions == len(keys)
    finally:
        worker.cleanup()
