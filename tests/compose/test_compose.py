"""The composed platform through its router: the secrets made by the
one-shot `secrets` service, each service seeing only its own; the originals'
HTTPie flow, JSON errors, a worker killed under load; a restart (`down`,
then `up -d`) that keeps the data and the secrets; and `down -v` leaving
nothing.

The tests share one platform (conftest.py) and run in file order; the last
one takes it down, after every other test of the directory (conftest.py).
"""

from __future__ import annotations

import json
import re
import subprocess
import time
import uuid

import pytest
from conftest import (
    PROJECT,
    WORKERS,
    Platform,
    demo_password_from_logs,
    project_resources,
    wait_for,
)

# What each service finds under /run/secrets/ (its own volume): only the
# files it reads.
SERVICE_SECRETS = {
    "auth-api": {"jwt_private_key", "users_json"},
    "transaction-api": {"jwt_public_key", "redis_loyalty_password"},
    "loyalty-worker": {"redis_loyalty_password"},
    "redis": {"redis_admin_password", "redis_loyalty_password"},
    "router": {"router_pem"},
}


def loyalty(platform: Platform, token: str) -> dict:
    answer = platform.request(
        "GET", "/transactions/loyalty", headers={"Authorization": f"Bearer {token}"}
    )
    assert answer.status == 200, (answer.status, answer.raw)
    return answer.body


def stamp_total(state: dict) -> int:
    """Stamps ever awarded: every voucher took ten (STAMPS_PER_VOUCHER)."""
    return state["vouchers"] * 10 + state["stamps"]


def pending_by_consumer(platform: Platform) -> dict[str, int]:
    """Entries delivered and not yet acknowledged, per consumer of the group."""
    lines = platform.redis(["XPENDING", "loyalty:transactions", "loyalty-workers"])
    if lines[0] == "0":
        return {}
    pairs = lines[3:]
    return {pairs[i]: int(pairs[i + 1]) for i in range(0, len(pairs), 2)}


def inspect(container: str) -> dict:
    out = subprocess.run(
        ["docker", "inspect", container], capture_output=True, text=True, check=True
    ).stdout
    return json.loads(out)[0]


def test_every_container_is_healthy_unprivileged_and_read_only(platform: Platform) -> None:
    services = ["router", "redis", "auth-api", "transaction-api", "loyalty-worker"]
    for service in services:
        ids = platform.container_ids(service)
        assert len(ids) == (WORKERS if service == "loyalty-worker" else 1), service
        for container in ids:
            wait_for(
                f"{service} to be healthy",
                lambda c=container: inspect(c)["State"]["Health"]["Status"] == "healthy",
                timeout=60,
            )
            info = inspect(container)
            assert info["HostConfig"]["ReadonlyRootfs"], service
            uid = subprocess.run(
                ["docker", "exec", container, "id", "-u"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
            assert uid != "0", f"{service} runs as root"


def running_container(platform: Platform, service: str) -> str:
    """One running container of the service (a killed worker's stays listed)."""
    running = [c for c in platform.container_ids(service) if inspect(c)["State"]["Running"]]
    assert running, f"no {service} container is running"
    return running[0]


def read_secret(platform: Platform, service: str, name: str) -> str:
    container = running_container(platform, service)
    return subprocess.run(
        ["docker", "exec", container, "cat", f"/run/secrets/{name}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def test_secrets_made_once_by_the_one_shot_service_each_service_sees_its_own(
    platform: Platform,
) -> None:
    """The `secrets` service ran to completion (exit 0) before the others;
    each service's /run/secrets holds only what it reads, read-only; the
    passwords have the role's strength (32 letters and digits), the token
    key is Ed25519, the users file holds scrypt hashes, none of the demo
    password in clear."""
    (init,) = platform.compose("ps", "-a", "-q", "secrets").split()
    state = inspect(init)["State"]
    assert (state["Status"], state["ExitCode"]) == ("exited", 0), state
    for service, expected in SERVICE_SECRETS.items():
        container = running_container(platform, service)
        listed = subprocess.run(
            ["docker", "exec", container, "ls", "-A", "/run/secrets"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        assert set(listed) == expected, (service, listed)
        mounts = {m["Destination"]: m for m in inspect(container)["Mounts"]}
        assert mounts["/run/secrets"]["RW"] is False, service
        assert mounts["/run/secrets"]["Name"] == f"{PROJECT}_secrets-{service}", service
    for name in ("redis_admin_password", "redis_loyalty_password"):
        value = read_secret(platform, "redis", name).strip()
        assert re.fullmatch(r"[A-Za-z0-9]{32}", value), name
    assert re.fullmatch(r"[A-Za-z0-9]{32}", platform.password)
    key = read_secret(platform, "auth-api", "jwt_private_key")
    assert key.startswith("-----BEGIN PRIVATE KEY-----")
    algorithm = subprocess.run(
        ["openssl", "pkey", "-noout", "-text"], input=key, capture_output=True, text=True
    ).stdout
    assert algorithm.startswith("ED25519 Private-Key"), algorithm[:80]
    users = json.loads(read_secret(platform, "auth-api", "users_json"))
    assert [(u["username"], u["can_transact"]) for u in users] == [
        ("alice", True),
        ("bob", True),
        ("charlie", False),
    ]
    hashes = [u["password_hash"] for u in users]
    assert all(h.startswith("scrypt$") for h in hashes) and len(set(hashes)) == 3
    assert platform.password not in json.dumps(users)


def test_router_published_on_loopback_only(platform: Platform) -> None:
    (router,) = platform.container_ids("router")
    published = inspect(router)["HostConfig"]["PortBindings"]
    assert sorted(published) == ["8080/tcp", "8443/tcp"], published
    for bindings in published.values():
        assert [b["HostIp"] for b in bindings] == ["127.0.0.1"]
    for service in ("redis", "auth-api", "transaction-api", "loyalty-worker"):
        for container in platform.container_ids(service):
            assert not inspect(container)["HostConfig"]["PortBindings"], service


def logs(container: str) -> str:
    result = subprocess.run(
        ["docker", "logs", container], capture_output=True, text=True, check=True
    )
    return result.stdout + result.stderr


def test_redis_and_router_start_without_warnings(platform: Platform) -> None:
    # Both releases' packages (Redis 8.0 and 7.0, HAProxy 3.0 and 2.6) read
    # the same files: a keyword one of them deprecates shows up here first.
    (redis,) = platform.container_ids("redis")
    log = logs(redis)
    assert "Ready to accept connections" in log, log[-2000:]
    # Redis marks warnings with "#". Redis 7.0 (Debian 12) also marks four
    # start-up notices so (7.2 and later no longer do), and a container
    # cannot set the kernel's vm.overcommit_memory, so that warning stays.
    expected = (
        "Memory overcommit must be enabled",
        "oO0OoO0OoO0Oo Redis is starting",
        "Redis version=",
        "Configuration loaded",
        "Server initialized",
    )
    warnings = [
        line
        for line in log.splitlines()
        if " # " in line and not any(text in line for text in expected)
    ]
    assert warnings == [], warnings
    assert "deprecat" not in log.lower(), log[-2000:]

    (router,) = platform.container_ids("router")
    log = logs(router)
    # HAProxy reports a server's state changes as warnings too: the
    # server-template's slots without a container go down, by design.
    complaints = [
        line
        for line in log.splitlines()
        if ("[WARNING]" in line or "[ALERT]" in line or "deprecat" in line.lower())
        and not re.search(r"Server \S+ is (going DOWN|UP)|has no server available", line)
    ]
    assert complaints == [], "\n".join(complaints)


def test_redis_keeps_queued_work_and_requires_passwords(platform: Platform) -> None:
    assert platform.redis(
        ["CONFIG", "GET", "appendonly"], ["CONFIG", "GET", "maxmemory-policy"]
    ) == ["appendonly", "yes", "maxmemory-policy", "noeviction"]
    assert platform.redis(["PING"], user=None)[0].startswith("NOAUTH")
    # The services' user: the platform's keys and data commands only.
    # (redis-cli follows each error reply with an empty line.)
    replies = [
        reply
        for reply in platform.redis(
            ["PING"],
            ["EXISTS", "loyalty:transactions"],
            ["GET", "other:key"],
            ["CONFIG", "GET", "appendonly"],
            ["FLUSHALL"],
            user="loyalty",
        )
        if reply
    ]
    assert replies[0] == "PONG"
    assert replies[1] in ("0", "1")
    assert all(reply.startswith("NOPERM") for reply in replies[2:]), replies


def test_originals_httpie_flow(platform: Platform) -> None:
    # 1. A token from the originals' form fields.
    answer = platform.request(
        "POST",
        "/authentication/token",
        form={"username": "alice", "password": platform.password},
    )
    assert answer.status == 200, answer.raw
    assert answer.body["token_type"] == "Bearer"
    assert answer.body["expires_in"] == 30
    token = answer.body["token"]
    before = loyalty(platform, token)

    # 2. A transaction as the originals' form, then as JSON with the header.
    form = platform.request(
        "POST",
        "/transactions/transactions",
        form={"token": token, "amount": "2000", "currency": "GBP"},
    )
    assert form.status == 202, form.raw
    assert form.body["status"] == "queued"
    assert form.body["user_id"] == 1
    assert form.body["amount"] == 2000
    assert form.body["currency"] == "GBP"
    as_json = platform.request(
        "POST",
        "/transactions/transactions",
        json_body={"amount": 2000, "currency": "GBP"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert as_json.status == 202, as_json.raw
    assert as_json.body["transaction_id"] != form.body["transaction_id"]

    # 3. The workers award both.
    after = wait_for(
        "both transactions to be awarded",
        lambda: (
            (state := loyalty(platform, token))["transactions"] == before["transactions"] + 2
            and state
        ),
        timeout=20,
    )
    assert after["username"] == "alice"
    assert stamp_total(after) == stamp_total(before) + 2


def test_charlie_may_not_transact(platform: Platform) -> None:
    token = platform.token("charlie")
    answer = platform.request(
        "POST",
        "/transactions/transactions",
        form={"token": token, "amount": "2000", "currency": "GBP"},
    )
    assert answer.status == 403, answer.raw
    assert answer.body == {"error": "User cannot transact"}


def test_bad_input_gets_json_4xx_through_the_router(platform: Platform) -> None:
    token = platform.token("bob")
    bearer = {"Authorization": f"Bearer {token}"}
    cases = {
        "unknown path": (404, "GET", "/nowhere", {}),
        # The services' own metrics are never routed, however the path is spelt.
        "metrics": (404, "GET", "/authentication/metrics", {}),
        "metrics, encoded": (404, "GET", "/transactions/%6Detrics", {}),
        "metrics, doubled slash": (404, "GET", "/transactions//METRICS/", {}),
        "wrong password": (
            401,
            "POST",
            "/authentication/token",
            {"form": {"username": "alice", "password": "wrong"}},
        ),
        "bad token": (
            401,
            "POST",
            "/transactions/transactions",
            {"form": {"token": "not.a.token", "amount": "1", "currency": "GBP"}},
        ),
        "no token": (401, "GET", "/transactions/loyalty", {}),
        "missing amount": (
            422,
            "POST",
            "/transactions/transactions",
            {"json_body": {"currency": "GBP"}, "headers": bearer},
        ),
        "malformed JSON": (
            400,
            "POST",
            "/transactions/transactions",
            {"data": b"{not json", "headers": {**bearer, "Content-Type": "application/json"}},
        ),
        "body too large": (
            413,
            "POST",
            "/transactions/transactions",
            {
                "data": json.dumps({"amount": 1, "currency": "GBP", "x": "a" * 20000}).encode(),
                "headers": {**bearer, "Content-Type": "application/json"},
            },
        ),
    }
    for name, (status, method, path, options) in cases.items():
        answer = platform.request(method, path, **options)
        assert answer.status == status, (name, answer.status, answer.raw)
        assert answer.content_type.startswith("application/json"), (name, answer.headers)
        assert isinstance(answer.body, dict), (name, answer.raw)
        assert answer.body.get("error"), (name, answer.body)
    answer = platform.request(
        "GET", "/transactions/loyalty", headers={"Authorization": "Bearer not.a.token"}
    )
    assert answer.headers.get("www-authenticate", "").startswith("Bearer")


def test_worker_killed_under_load_awards_each_transaction_once(platform: Platform) -> None:
    """Send transactions while one of the workers is killed (SIGKILL): every
    202 is awarded exactly once, nothing stays pending or is dead-lettered."""
    token = platform.token("bob")
    bearer = {"Authorization": f"Bearer {token}"}
    before = loyalty(platform, token)
    (victim, *_) = platform.container_ids("loyalty-worker")
    accepted: list[str] = []
    total = 300
    started = time.monotonic()
    victim_consumer = f"{inspect(victim)['Config']['Hostname']}-1"
    held = None
    for n in range(total):
        # Paused while blocked in its read, the victim is still handed new
        # entries by Redis; killed later, it dies holding them unacknowledged.
        if n == total // 3:
            subprocess.run(["docker", "pause", victim], capture_output=True, check=True)
        if n == 2 * total // 3:
            subprocess.run(["docker", "kill", victim], capture_output=True, check=True)
            held = pending_by_consumer(platform).get(victim_consumer, 0)
        key = str(uuid.uuid4())
        headers = {**bearer, "Idempotency-Key": key}
        body = {"amount": 100 + n, "currency": "GBP"}
        answer = platform.request(
            "POST", "/transactions/transactions", json_body=body, headers=headers
        )
        assert answer.status == 202, (n, answer.status, answer.raw)
        accepted.append(answer.body["transaction_id"])
    assert time.monotonic() - started < 25, "sending took longer than a token lives"
    assert inspect(victim)["State"]["Status"] == "exited"
    assert len(set(accepted)) == total

    # Entries the killed worker held are taken over by the others once idle
    # for WORKER_CLAIM_IDLE_MS (2 s here).
    after = wait_for(
        "every accepted transaction to be awarded",
        lambda: (
            (state := loyalty(platform, token))["transactions"] >= before["transactions"] + total
            and state
        ),
        timeout=60,
        interval=0.5,
    )
    time.sleep(1)  # a duplicate award would show up by now
    after = loyalty(platform, token)
    assert after["transactions"] == before["transactions"] + total
    assert stamp_total(after) == stamp_total(before) + total

    replies = platform.redis(
        *(["EXISTS", f"loyalty:processed:{tid}"] for tid in accepted),
        ["XLEN", "loyalty:dead"],
    )
    assert replies[:-1] == ["1"] * total
    assert replies[-1] == "0", "dead letters were written"
    assert pending_by_consumer(platform) == {}
    print(f"\nkilled worker held {held} unacknowledged entries; all {total} awarded once")


@pytest.mark.restarts_platform
def test_a_restart_keeps_the_data_and_the_secrets(platform: Platform) -> None:
    """`down` (without -v) and `up -d` again: the same password, token key,
    Redis passwords and router certificate (the saved ca.crt still verifies
    it), alice's loyalty state as it was, and the `secrets` service says it
    made nothing."""
    token = platform.token("alice")
    before_state = loyalty(platform, token)
    kept = {
        (service, name): read_secret(platform, service, name)
        for service, names in SERVICE_SECRETS.items()
        for name in names
    }
    platform.compose("down", "--timeout", "5")
    assert project_resources()["containers"] == []
    started = time.monotonic()
    platform.compose("up", "-d", timeout=300)
    platform.plain_address = platform.compose("port", "router", "8080").strip()
    wait_for("the first 202 after the restart", platform.first_accepted, timeout=120)
    platform.figures["restart_up_to_first_202_seconds"] = round(time.monotonic() - started, 1)
    print(f"\nrestart: up -d to the first 202 in {round(time.monotonic() - started, 1)} s")

    logs = platform.compose("logs", "--no-color", "secrets")
    assert demo_password_from_logs(logs) == platform.password
    # Its last start's summary: three lines, the first saying nothing was made.
    summary = [line for line in logs.splitlines() if "secrets: " in line][-3:]
    assert summary[0].endswith("secrets: all kept from the last start"), summary
    for (service, name), content in kept.items():
        assert read_secret(platform, service, name) == content, (service, name)
    after = loyalty(platform, platform.token("alice"))
    # The first_accepted() above added one transaction of alice's.
    assert after["transactions"] >= before_state["transactions"] + 1, (before_state, after)
    assert stamp_total(after) >= stamp_total(before_state)


@pytest.mark.takes_platform_down
def test_down_removes_every_container_network_and_volume(platform: Platform) -> None:
    assert any(project_resources().values())
    platform.compose("down", "-v", "--remove-orphans", "--timeout", "5")
    assert project_resources() == {"containers": [], "networks": [], "volumes": []}, PROJECT
