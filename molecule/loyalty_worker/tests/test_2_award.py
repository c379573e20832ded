"""A transaction pushed onto the stream is awarded by a worker, once."""

import json
import time
import uuid

testinfra_hosts = ["loyalty-worker-molecule-redis"]


def redis(host, password, *args):
    result = host.run(
        "REDISCLI_AUTH=%s redis-cli-tls --no-auth-warning --json " + " ".join(["%s"] * len(args)),
        password,
        *args,
    )
    assert result.rc == 0, result.stderr
    return json.loads(result.stdout) if result.stdout.strip() else None


def test_transaction_awarded(host, admin_password):
    transaction_id = str(uuid.uuid4())
    user_id = "7001"
    redis(
        host,
        admin_password,
        "XADD",
        "loyalty:transactions",
        "*",
        "transaction_id",
        transaction_id,
        "user_id",
        user_id,
        "username",
        "molecule-bob",
        "amount",
        "2000",
        "currency",
        "GBP",
        "accepted_at",
        "2026-01-01T00:00:00Z",
    )
    state = {}
    for _ in range(30):
        state = redis(host, admin_password, "HGETALL", f"loyalty:user:{user_id}") or {}
        if state.get("transactions") == "1":
            break
        time.sleep(1)
    assert state.get("transactions") == "1", state
    assert state.get("stamps") == "1", state
    assert redis(host, admin_password, "EXISTS", f"loyalty:processed:{transaction_id}") == 1
    found = redis(
        host, admin_password, "XINFO", "CONSUMERS", "loyalty:transactions", "loyalty-workers"
    )
    # redis-cli --json gives each consumer as a map (RESP3) or a flat list.
    as_maps = [c if isinstance(c, dict) else dict(zip(c[::2], c[1::2], strict=True)) for c in found]
    names = sorted(c["name"] for c in as_maps)
    assert names == ["loyalty-worker-molecule-1-1", "loyalty-worker-molecule-1-2"], names
