"""Restart every host at once: everything comes back by itself, the stamps stay."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from helpers import (
    ALL_HOSTS,
    FIGURES,
    TOKENS,
    USERS,
    curl_ready_from_edge,
    log,
    loyalty_state,
    redis_cli,
    request,
    wait_until_drained,
)
from host_commands import dexec, docker
from test_1_hosts import SERVICES


def wait_for(what: str, check, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except AssertionError:
            pass
        assert time.monotonic() < deadline, f"{what} did not come back within {timeout} s"
        time.sleep(1)


def booted(host: str) -> bool:
    state = dexec(host, "systemctl", "is-system-running", check=False).stdout.strip()
    return state in ("running", "degraded")


def test_every_host_comes_back_after_a_restart():
    wait_until_drained()
    before = {u: loyalty_state(USERS[u]) for u in ("alice", "bob")}
    assert before["alice"]["transactions"] > 0 and before["bob"]["transactions"] > 0
    started = time.monotonic()
    with ThreadPoolExecutor(len(ALL_HOSTS)) as pool:
        list(pool.map(lambda h: docker("restart", h, timeout=120), ALL_HOSTS))
    for host in ALL_HOSTS:
        wait_for(f"systemd on {host}", lambda h=host: booted(h))
    wait_for("Redis", lambda: redis_cli("PING") == "PONG")
    # The stamps recorded before (append-only file), read before any new traffic.
    after = {u: loyalty_state(USERS[u]) for u in ("alice", "bob")}
    assert after == before, f"loyalty state changed over the restart: {before} -> {after}"
    curl_ready_from_edge()

    def flow_works() -> bool:
        status, _, _ = request(
            "POST",
            "/transactions/transactions",
            {"token": TOKENS.get("alice"), "amount": "500", "currency": "GBP"},
        )
        return status == 202

    wait_for("the flow through the router", flow_works)
    wait_until_drained()
    seconds = time.monotonic() - started
    FIGURES["restart_seconds"] = round(seconds, 1)
    log(f"every host restarted and serving again in {seconds:.1f} s")
    for host, units in SERVICES.items():
        for unit in units:
            state = dexec(host, "systemctl", "is-active", unit, check=False).stdout.strip()
            assert state == "active", f"{unit} on {host} is {state} after the restart"
        if units:
            assert (
                dexec(host, "nft", "list", "table", "inet", "loyalty", check=False).returncode == 0
            )
    final = loyalty_state(USERS["alice"])
    assert final["transactions"] == before["alice"]["transactions"] + 1
