"""Backups and a restore of the loyalty state (docs/backups.md), on the HA
layout after the migration: the primary is the one a failover promoted, the
backups go to the edge host of group `backup`.

Load through the floating address, a backup (playbooks/backup.yml), more
load; the state at the backup is recorded. Then FLUSHALL on the primary and
playbooks/restore.yml of that backup while a client keeps asking: the API
answers 503 with Retry-After (never 500) while it runs, every user's
stamps, vouchers and transactions equal those recorded exactly, the
replicas resync and the Sentinels follow, a transaction accepted before the
backup and sent again gets the same answer and no second award, and the
workers resume. RPO and RTO are measured here (figures `backup_restore`).
"""

from __future__ import annotations

import json
import threading
import time
import uuid

import loyalty_redis
from helpers import (
    ADDRESSES,
    FIGURES,
    HOST_BY_ADDRESS,
    REDIS_HOSTS,
    REPO,
    TOKENS,
    USERS,
    current_primary,
    group_info,
    log,
    loyalty_state,
    play_outcome,
    redis_cli,
    redis_lines,
    request,
    run_playbooks,
    synced_replica,
    wait_for_sentinels_to_agree,
    wait_until_drained,
)
from host_commands import dexec
from load import Client
from loyalty_redis import wait_until_awarded

BACKUP_HOST = "platform_ha-edge-1"  # group backup (molecule.yml)
LOAD_USERS = ["alice", "bob"]
PLAYBOOKS = REPO / "playbooks"
METRICS = "/var/lib/prometheus/node-exporter/loyalty_redis_backup.prom"


def stored_backups() -> list[dict]:
    """The backup host's store, newest first (the program's `list`)."""
    out = dexec(BACKUP_HOST, "/usr/local/sbin/loyalty-redis-backup", "list").stdout
    return json.loads(out)


def states() -> dict[str, dict[str, int]]:
    return {u: loyalty_state(USERS[u]) for u in LOAD_USERS}


def load(total: int, seconds: float):
    """`total` transactions through the floating address, every 202 awarded."""
    client = Client(LOAD_USERS, total, total / seconds, 4, seconds + 5)
    client.start()
    client.join()
    accepted = [tx for tx in client.transactions if tx.transaction_id]
    assert len(accepted) == total, [tx.attempts[-1] for tx in client.transactions][:3]
    ids = [tx.transaction_id for tx in accepted]
    assert wait_until_awarded(redis_lines, group_info, ids, timeout=120) == len(ids)
    wait_until_drained()
    return accepted


def post(user: str, key: str) -> tuple[int, dict, object]:
    return request(
        "POST",
        "/transactions/transactions",
        {"amount": "1200", "currency": "GBP"},
        headers={"Authorization": f"Bearer {TOKENS.get_lenient(user)}", "Idempotency-Key": key},
    )


class Prober(threading.Thread):
    """Re-sends one transaction accepted before the backup (its key) and reads
    a user's state, every 0.2 s, recording what the API answered and when."""

    def __init__(self, key: str) -> None:
        super().__init__(daemon=True)
        self.key = key
        self.answers: list[tuple[float, str, int, str | None, object]] = []
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            for kind, call in (
                ("post", lambda: post("alice", self.key)),
                ("get", lambda: request(
                    "GET", "/transactions/loyalty",
                    headers={"Authorization": f"Bearer {TOKENS.get_lenient('bob')}"},
                )),
            ):  # fmt: skip
                try:
                    status, headers, body = call()
                    retry_after = headers.get("Retry-After")
                except (OSError, AssertionError) as error:
                    status, retry_after, body = 0, None, str(error)
                self.answers.append((time.monotonic(), kind, status, retry_after, body))
            time.sleep(0.2)


def test_backups_run_on_the_primary_only_and_reach_the_backup_host():
    primary = HOST_BY_ADDRESS[current_primary()]
    for host in REDIS_HOSTS:
        assert (
            dexec(host, "systemctl", "is-enabled", "loyalty-redis-backup.timer").stdout.strip()
            == "enabled"
        )
    replica = next(h for h in REDIS_HOSTS if h != primary)
    before = len(stored_backups())
    dexec(replica, "systemctl", "start", "loyalty-redis-backup.service", timeout=120)
    said = dexec(replica, "journalctl", "-t", "loyalty-redis-backup", "-n", "1", "-o", "cat").stdout
    assert "not the primary: no backup taken here" in said, said
    assert len(stored_backups()) == before
    FIGURES["backup_primary"] = primary


def test_backup_flushall_restore_gives_back_the_state_of_the_backup():
    # 1. Load, then a backup, then more load.
    first = load(total=120, seconds=6)
    primary_address = current_primary()
    primary = HOST_BY_ADDRESS[primary_address]
    started = time.monotonic()
    _, failures = play_outcome(run_playbooks(PLAYBOOKS / "backup.yml"))
    backup_seconds = round(time.monotonic() - started, 1)
    assert not failures, failures
    at_backup = states()
    backup = stored_backups()[0]
    assert backup["primary"] == primary and backup["verified"] is True, backup
    # It loaded with the keys the primary had (each transaction of the load
    # left an idempotency record and an award mark among them).
    assert backup["keys"] == backup["primary_keys"] >= 2 * len(first), backup
    metrics = dexec(BACKUP_HOST, "cat", METRICS).stdout
    assert f"loyalty_redis_backup_last_good_timestamp_seconds {backup['created_epoch']}" in metrics
    assert f"loyalty_redis_backup_last_good_keys {backup['keys']}" in metrics
    backup_taken = time.monotonic()
    second = load(total=60, seconds=3)
    lost_after_backup = len(second)
    assert states() != at_backup

    # 2. An operator's FLUSHALL on the primary: replicas copy it at once.
    assert redis_cli("FLUSHALL") == "OK"
    assert loyalty_state(USERS["alice"])["transactions"] == 0

    # 3. The restore refuses to run unconfirmed, naming what it overwrites.
    name = backup["name"]
    refused = run_playbooks(
        PLAYBOOKS / "restore.yml", options=("-e", f"redis_backup_restore_name={name}")
    )
    _, failures = play_outcome(refused)
    assert refused.returncode != 0
    message = " ".join(m for ms in failures.values() for m in ms)
    assert f"OVERWRITES ALL DATA of Redis on {primary}" in message, message
    assert f"-e redis_backup_restore_confirm={primary}" in message, message

    # 4. The restore, confirmed, while a client keeps sending.
    old = first[0]
    prober = Prober(old.key)
    prober.start()
    time.sleep(1)
    restore_started = time.monotonic()
    result = run_playbooks(
        PLAYBOOKS / "restore.yml",
        options=(
            "-e", f"redis_backup_restore_name={name}",
            "-e", f"redis_backup_restore_confirm={primary}",
        ),
    )  # fmt: skip
    restore_seconds = round(time.monotonic() - restore_started, 1)
    _, failures = play_outcome(result)
    assert result.returncode == 0 and not failures, (failures, result.stdout[-2000:])
    # Until the old transaction is answered from the restored data.
    deadline = time.monotonic() + 60
    while not any(
        a[1] == "post" and a[2] == 202 and a[0] > restore_started
        and isinstance(a[4], dict) and a[4].get("transaction_id") == old.transaction_id
        for a in prober.answers
    ):  # fmt: skip
        assert time.monotonic() < deadline, prober.answers[-4:]
        time.sleep(0.5)
    time.sleep(1)
    prober.halt.set()
    prober.join(timeout=30)

    answers = [a for a in prober.answers if a[0] >= restore_started]
    statuses = sorted({a[2] for a in answers})
    assert set(statuses) <= {200, 202, 503}, [a for a in answers if a[2] not in (200, 202, 503)][:3]
    unavailable = [a for a in answers if a[2] == 503]
    assert unavailable, "no 503 while the restore ran"
    assert all(a[3] for a in unavailable), [a for a in unavailable if not a[3]][:3]
    outage_start = min(a[0] for a in unavailable)
    recovered = min(
        a[0] for a in answers
        if a[1] == "post" and a[2] == 202 and a[0] > max(x[0] for x in unavailable)
    )  # fmt: skip
    after_restore = [a for a in answers if a[0] > recovered and a[1] == "post"]
    assert after_restore and all(
        a[2] == 202 and a[4]["transaction_id"] == old.transaction_id for a in after_restore
    ), after_restore[:3]

    # 5. Exactly the state recorded at the backup, on the primary and on
    #    every replica, which resynced; the Sentinels follow the primary.
    assert current_primary() == primary_address
    assert states() == at_backup, (states(), at_backup)
    for host in REDIS_HOSTS:
        if host == primary:
            continue
        address = ADDRESSES[host]
        deadline = time.monotonic() + 60
        while not synced_replica(address):
            assert time.monotonic() < deadline, f"{host} did not resync"
            time.sleep(1)
        for user in LOAD_USERS:
            replica_state = loyalty_redis.loyalty_state(
                lambda *args, a=address: redis_cli(*args, address=a), USERS[user]
            )
            assert replica_state == at_backup[user], (host, user, replica_state)
    wait_for_sentinels_to_agree(primary_address)

    # 6. Sent again after the restore: the transactions accepted before the
    #    backup get their answers back, and nothing is awarded again.
    for tx in first[:20]:
        status, headers, body = post(tx.user, tx.key)
        assert status == 202 and body["transaction_id"] == tx.transaction_id, (status, body)
        assert headers.get("Idempotent-Replayed") == "true"
    wait_until_drained()
    assert states() == at_backup

    # 7. The workers resume: new transactions are awarded once each.
    third = load(total=20, seconds=2)
    after = states()
    assert sum(after[u]["transactions"] - at_backup[u]["transactions"] for u in LOAD_USERS) == len(
        third
    )

    FIGURES["backup_restore"] = {
        "backup": name,
        "backup_keys": backup["keys"],
        "backup_bytes": backup["size_bytes"],
        "backup_playbook_s": backup_seconds,
        "backup_copy_s": backup["copy_seconds"],
        "backup_verify_s": backup["verify_seconds"],
        "lost_after_backup": lost_after_backup,
        "backup_to_flush_s": round(time.monotonic() - backup_taken, 1),
        "restore_playbook_s": restore_seconds,
        "rto_s": round(recovered - restore_started, 1),
        "unavailable_s": round(recovered - outage_start, 1),
        "answers_503": len(unavailable),
        "statuses": statuses,
    }
    log(f"backup and restore: {FIGURES['backup_restore']}")


def test_a_new_idempotency_key_after_the_restore_is_queued_once():
    key = str(uuid.uuid4())
    status, _, body = post("alice", key)
    assert status == 202
    again_status, headers, again = post("alice", key)
    assert again_status == 202 and again["transaction_id"] == body["transaction_id"]
    assert headers.get("Idempotent-Replayed") == "true"
    assert wait_until_awarded(redis_lines, group_info, [body["transaction_id"]], timeout=60) == 1
