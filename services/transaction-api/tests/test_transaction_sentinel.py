"""The Transaction API against a primary, two replicas and three Sentinels.

Real redis-server processes (conftest's ``redis_ha``): the API finds the
primary through the Sentinels, waits for replicas with WAIT, and answers 503
when they do not acknowledge in time.
"""

from __future__ import annotations

import signal
import time
from typing import Any

STREAM = "loyalty:transactions"
BODY = {"amount": 2000, "currency": "GBP"}


def stream_ids(server: Any) -> list[str]:
    """transaction_id of every entry in the server's stream."""
    client = server.client()
    try:
        return [fields["transaction_id"] for _id, fields in client.xrange(STREAM)]
    finally:
        client.close()


def test_queues_on_the_primary_named_by_the_sentinels(
    kit: Any, spawn: Any, redis_ha: Any, jwt_keys: Any, tmp_path: Any
) -> None:
    # The services' restricted ACL user on every server (ACL rules are not
    # replicated): EVAL and WAIT must be within it, and REDIS_URL's user
    # and the password file must still apply through Sentinel.
    for server in redis_ha.servers:
        client = server.client()
        client.execute_command(
            "ACL", "SETUSER", "loyalty", "reset", "on", ">s3cret", "~loyalty:*", *kit.SERVICE_ACL
        )
        client.close()
    password_file = tmp_path / "redis.password"
    password_file.write_text("s3cret\n")
    env = kit.transaction_env(
        jwt_keys,
        "redis://loyalty@127.0.0.1:1/0",
        REDIS_PASSWORD_FILE=password_file,
        REDIS_WAIT_REPLICAS=2,
        **redis_ha.env(),
    )
    api = spawn("transaction-api", env)
    reply = kit.call(api.port, "POST", "/transactions", BODY, kit.bearer(jwt_keys))
    assert reply.status == 202, reply.body
    transaction_id = reply.json["transaction_id"]
    # WAIT 2 answered: the entry is on the primary and on both replicas.
    for server in redis_ha.servers:
        assert stream_ids(server) == [transaction_id]
    replay = kit.call(
        api.port, "POST", "/transactions", BODY, {**kit.bearer(jwt_keys), "Idempotency-Key": "k"}
    )
    assert replay.status == 202
    replay = kit.call(
        api.port, "POST", "/transactions", BODY, {**kit.bearer(jwt_keys), "Idempotency-Key": "k"}
    )
    assert replay.status == 202 and replay.headers["Idempotent-Replayed"] == "true"
    assert kit.call(api.port, "GET", "/ready").status == 200
    assert kit.call(api.port, "GET", "/loyalty", headers=kit.bearer(jwt_keys)).status == 200
    log = api.log()
    assert f"redis primary is 127.0.0.1:{redis_ha.primary.port}" in log
    assert "NOPERM" not in log and "WARNING" not in log, log


def test_replica_shortfall_answers_503_and_the_same_key_then_202_once(
    kit: Any, spawn: Any, redis_ha: Any, jwt_keys: Any
) -> None:
    env = kit.transaction_env(
        jwt_keys,
        redis_ha.url,
        REDIS_WAIT_REPLICAS=2,
        REDIS_WAIT_TIMEOUT_MS=300,
        **redis_ha.env(),
    )
    api = spawn("transaction-api", env)
    headers = {**kit.bearer(jwt_keys), "Idempotency-Key": "order-1"}
    stalled = redis_ha.replicas[1].process
    stalled.send_signal(signal.SIGSTOP)  # connected, but acknowledges nothing
    try:
        started = time.monotonic()
        reply = kit.call(api.port, "POST", "/transactions", BODY, headers)
        elapsed = time.monotonic() - started
        assert reply.status == 503, reply.body
        assert 0.3 <= elapsed < 2, elapsed  # the WAIT timeout, not a hang
        assert reply.headers["Retry-After"] == "1"
        assert reply.json["replicas_acknowledged"] == 1
        assert reply.json["replicas_required"] == 2
        assert "Idempotency-Key" in reply.json["error"]
        # Queued on the primary, not confirmed; readiness is about reachability.
        assert len(stream_ids(redis_ha.primary)) == 1
        assert kit.call(api.port, "GET", "/ready").status == 200
        # The replay waits too: still 503 while the replica is stalled.
        again = kit.call(api.port, "POST", "/transactions", BODY, headers)
        assert again.status == 503 and again.json["replicas_acknowledged"] == 1
    finally:
        stalled.send_signal(signal.SIGCONT)
    assert "1 of 2 replicas acknowledged within 300 ms; answered 503" in api.log()

    reply = kit.call(api.port, "POST", "/transactions", BODY, headers)
    assert reply.status == 202, reply.body
    assert reply.headers["Idempotent-Replayed"] == "true"
    # One entry, the one the 202 names, on every server.
    for server in redis_ha.servers:
        assert stream_ids(server) == [reply.json["transaction_id"]]
