"""playbooks/upgrade.yml while a client keeps sending transactions through the router.

The "new version" is a value the upgrade adds to every service's
environment (LOYALTY_RELEASE, through the roles' *_extra_environment): the
services must restart with it, one host at a time, without a failed request.
The services do not report a version over HTTP, so the new version is read
from each running main process's environment (/proc/PID/environ).
"""

from __future__ import annotations

import itertools
import json
import re
import time
import uuid

from helpers import (
    FIGURES,
    REPO,
    TOKENS,
    curl_ready_from_edge,
    log,
    request,
    run_playbook,
    wait_until_drained,
)
from host_commands import dexec
from load import Client

RELEASE = f"upgrade-{uuid.uuid4().hex[:8]}"
RATE = 10  # transactions per second during the upgrade
MAX_SECONDS = 600  # the client stops by then even if the playbook hangs

UNITS = {
    "platform-edge": ["auth-api.service"],
    "platform-api-1": ["transaction-api.service"],
    "platform-api-2": ["transaction-api.service"],
    "platform-worker-1": ["loyalty-worker@1.service", "loyalty-worker@2.service"],
    "platform-worker-2": ["loyalty-worker@1.service", "loyalty-worker@2.service"],
}


def release_of(host: str, unit: str) -> str | None:
    pid = dexec(host, "systemctl", "show", "-p", "MainPID", "--value", unit).stdout.strip()
    environ = dexec(host, "cat", f"/proc/{pid}/environ").stdout
    for item in environ.split("\0"):
        if item.startswith("LOYALTY_RELEASE="):
            return item.partition("=")[2]
    return None


def test_rolling_upgrade_without_a_failed_request():
    curl_ready_from_edge()
    wait_until_drained()
    extra = {
        "auth_api_extra_environment": {"LOYALTY_RELEASE": RELEASE},
        "transaction_api_extra_environment": {"LOYALTY_RELEASE": RELEASE},
        "loyalty_worker_extra_environment": {"LOYALTY_RELEASE": RELEASE},
    }
    refresh_failures_before = TOKENS.refresh_failures
    client = Client(
        ["alice", "bob"], total=RATE * MAX_SECONDS, rate=RATE, threads=4, max_seconds=MAX_SECONDS
    )
    client.start()
    started = time.monotonic()
    try:
        result = run_playbook(
            REPO / "playbooks" / "upgrade.yml", "-e", json.dumps(extra), timeout=MAX_SECONDS
        )
        upgrade_seconds = time.monotonic() - started
        time.sleep(2)  # a little traffic after the last host is back
    finally:
        client.stop()
        client.join()
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    failures = [o for o in client.outcomes if o.status != 202]
    starts = sorted(o.started for o in client.outcomes)
    longest_pause = max((b - a for a, b in itertools.pairwise(starts)), default=0.0)
    FIGURES.update(
        upgrade_sent=len(client.outcomes),
        upgrade_failures=len(failures),
        upgrade_token_refresh_failures=TOKENS.refresh_failures - refresh_failures_before,
        upgrade_seconds=round(upgrade_seconds, 1),
        upgrade_longest_pause=round(longest_pause, 1),
        upgrade_stale_connection_retries=client.stale_retries,
    )
    log(f"upgrade: {len(client.outcomes)} sent, {len(failures)} failed, in {upgrade_seconds:.1f} s")
    # One host at a time: every API host had its own batch, drained and back.
    for name in ("platform-api-1", "platform-api-2", "platform-edge"):
        assert re.search(
            rf"Set the server to drain on every router.*?\n.*?{name}", result.stdout, re.S
        )
    assert len(client.outcomes) >= 50, "the client sent too little to judge"
    assert not failures, f"{len(failures)} failed requests, e.g. {failures[:5]}"

    # The new version answers: every service restarted with the new value.
    old = {
        (h, u): r for h, units in UNITS.items() for u in units if (r := release_of(h, u)) != RELEASE
    }
    assert not old, f"services still on the old version: {old}"
    status, _, body = request(
        "POST",
        "/transactions/transactions",
        {"token": TOKENS.get("bob"), "amount": "300", "currency": "GBP"},
    )
    assert status == 202, body
    status, _, body = request("GET", "/authentication/health")
    assert status == 200, body
