"""The move from Debian 12 to Debian 13, host by host, as docs/debian-13.md
describes it: each Debian 12 host is replaced by a fresh Debian 13 host with
the same name and address, and site.yml, limited to that host, provisions
it. The platform keeps answering through the floating address meanwhile,
the new Redis host becomes a synced replica of the current primary, the new
router can take the floating address over (a last site.yml over the whole
fleet, after the backup and restore, is test_6_site_afterwards)."""

from __future__ import annotations

import time

from helpers import (
    ADDRESSES,
    EDGE_HOSTS,
    FIGURES,
    RELEASES,
    REPO,
    TOKENS,
    changed_tasks,
    current_primary,
    log,
    loyalty_state,
    os_release,
    request,
    run_playbooks,
    synced_replica,
    vip_holder,
    wait_for_sentinels_to_agree,
    wait_until_drained,
)
from host_commands import dexec, docker, start_systemd_host

NETWORK = "platform_ha"
SITE = REPO / "site.yml"


def new_trixie_host(host: str) -> None:
    """Remove the host's container and start a fresh Debian 13 one with the
    same name and address, booted the way Molecule boots the others."""
    docker("rm", "--force", host, timeout=120)
    # Molecule's label, so that its destroy step and scripts/test's clean-up
    # find the new container too; VRRP needs NET_RAW on the routers.
    options = ["--label=owner=molecule", "--label=org.loyalty.test-host=true"]
    if host in EDGE_HOSTS:
        options.append("--cap-add=NET_RAW")
    start_systemd_host(host, "loyalty-host:trixie", NETWORK, ADDRESSES[host], *options)
    dexec(host, "systemctl", "is-system-running", "--wait", check=False, timeout=180)


def provision(host: str) -> float:
    """site.yml limited to the new host; seconds it took."""
    started = time.monotonic()
    result = run_playbooks(SITE, options=("--limit", host), timeout=900)
    changed_tasks(result)  # fails the test when the run failed
    return round(time.monotonic() - started, 1)


def transact(username: str = "alice") -> str:
    token = TOKENS.get(username)
    status, _, data = request(
        "POST",
        "/transactions/transactions",
        {"amount": "500", "currency": "GBP"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert status == 202, (status, data)
    return data["transaction_id"]


def test_replace_the_debian_12_redis_host_with_a_debian_13_one():
    host = "platform_ha-redis-1"
    assert RELEASES[host] == "bookworm"
    primary = current_primary()
    assert primary != ADDRESSES[host], "the Debian 12 host is still the primary"
    new_trixie_host(host)
    seconds = provision(host)
    FIGURES["migration_redis_provision_s"] = seconds
    assert os_release(host) == "trixie"
    deadline = time.monotonic() + 60
    while not synced_replica(ADDRESSES[host]):
        assert time.monotonic() < deadline, f"{host} is not a synced replica of {primary}"
        time.sleep(1)
    assert current_primary() == primary
    # Every Sentinel, the new one included, sees two replicas and two peers.
    wait_for_sentinels_to_agree(primary)
    # The data the old host held reached the new one from the primary.
    transaction_id = transact()
    wait_until_drained()
    log(f"{host} on Debian 13 in {seconds} s; transaction {transaction_id} awarded")


def test_replace_the_debian_12_router_host_with_a_debian_13_one():
    host = "platform_ha-edge-2"
    other = "platform_ha-edge-1"
    assert RELEASES[host] == "bookworm"
    before = loyalty_state(1)["transactions"]
    # The floating address leaves the host before it goes (it holds it since
    # the router failover): keepalived stopped there moves it in a second.
    if vip_holder() == host:
        dexec(host, "systemctl", "stop", "keepalived")
        deadline = time.monotonic() + 30
        while vip_holder() != other:
            assert time.monotonic() < deadline, "the floating address did not move"
            time.sleep(0.5)
    new_trixie_host(host)
    transact()  # served by the other router and its APIs meanwhile
    seconds = provision(host)
    FIGURES["migration_router_provision_s"] = seconds
    assert os_release(host) == "trixie"
    assert vip_holder() == other, "the new router took the address on its first start"
    # The new router takes over when the other one's keepalived stops.
    dexec(other, "systemctl", "stop", "keepalived")
    try:
        deadline = time.monotonic() + 30
        while vip_holder() != host:
            assert time.monotonic() < deadline, "the new router did not take the address"
            time.sleep(0.5)
        transact()
        status, _, _ = request("GET", "/authentication/health")
        assert status == 200
    finally:
        dexec(other, "systemctl", "start", "keepalived")
    wait_until_drained()
    assert loyalty_state(1)["transactions"] == before + 2
