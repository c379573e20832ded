"""The platform on two libvirt VMs made by `vagrant up --provider=libvirt`
(inventory/vagrant-compact), in order: boot, first and second `site.yml`,
the README's HTTPie walkthrough, the firewall seen from the other machine,
Prometheus scraping both, a worker VM powered off hard under load, a real
reboot, a backup restored onto a new edge VM after the old one is lost, and
`vagrant destroy -f` leaving nothing behind. Each test uses what the previous left.
"""

from __future__ import annotations

import functools
import http.client
import json
import os
import platform
import socket
import ssl
import subprocess
import threading
import time
import uuid
from pathlib import Path

import loyalty_redis
from conftest import (
    ADDRESSES,
    CA_FILE,
    EDGE,
    FIGURES,
    REPO,
    ROUTER,
    TOKENS,
    USERS,
    VIRSH,
    WORKER,
    ansible_playbook,
    demo_password,
    group_info,
    libvirt_names,
    log,
    recap,
    redis_cli,
    redis_lines,
    request,
    run,
    ssh,
    vagrant,
    wait_for_ssh,
)
from http_requests import connection, tls_context

# Values one test leaves for a later one.
STATE: dict[str, object] = {}
HTTPIE = REPO / ".venv" / "bin" / "https"


@functools.cache
def tls() -> ssl.SSLContext:
    """Trusts the platform's CA, which the first site.yml makes."""
    return tls_context(str(CA_FILE))


def domain_id(machine: str) -> str:
    """The libvirt domain's UUID, as Vagrant recorded it."""
    path = Path(os.environ["VAGRANT_DOTFILE_PATH"]) / "machines" / machine / "libvirt" / "id"
    return path.read_text().strip()


def loyalty_state(user: str) -> dict[str, int]:
    return loyalty_redis.loyalty_state(redis_cli, USERS[user])


def boot_id(machine: str) -> str:
    result = ssh(machine, "cat /proc/sys/kernel/random/boot_id", timeout=30)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def queue_one_transaction(user: str, when: str, timeout: float = 120) -> None:
    """POST one transaction with a new token until it gets its 202."""
    token, _ = TOKENS.fresh(user, deadline=timeout)
    deadline = time.monotonic() + timeout
    while True:
        status, _, body = request(
            "POST",
            "/transactions/transactions",
            {"amount": "100", "currency": "GBP"},
            {"Authorization": f"Bearer {token}"},
        )
        if status == 202:
            return
        assert time.monotonic() < deadline, f"no 202 {when}: {status} {body}"
        time.sleep(2)


def test_1_machines_boot_with_kernels_of_their_own() -> None:
    STATE["before"] = {kind: libvirt_names(kind) for kind in ("list", "net-list", "vol-list")}
    for machine in (EDGE, WORKER):
        started = time.monotonic()
        result = vagrant("up", "--no-provision", machine)
        seconds = round(time.monotonic() - started, 1)
        assert result.returncode == 0, (
            f"vagrant up {machine}:\n{result.stdout[-3000:]}{result.stderr}"
        )
        FIGURES[f"vagrant_up_seconds_{machine}"] = seconds
        log(f"vagrant up {machine}: {seconds} s")
    assert "loyalty: libvirt runs the machines with" in result.stderr + result.stdout
    host_kernel = platform.release()
    for machine in (EDGE, WORKER):
        result = ssh(machine, "uname -r; cat /proc/1/comm; systemd-detect-virt", timeout=30)
        kernel, init, virt = result.stdout.split()
        assert init == "systemd"
        # Its own kernel, booted by QEMU: not the control machine's.
        assert kernel != host_kernel and virt in ("qemu", "kvm"), (kernel, virt)
    FIGURES["vm_kernel"] = kernel


def test_2_site_converges_over_ssh() -> None:
    started = time.monotonic()
    result = vagrant("provision")
    FIGURES["first_converge_seconds"] = round(time.monotonic() - started, 1)
    hosts = recap(result.stdout)
    assert set(hosts) == {"localhost", EDGE, WORKER}, result.stdout[-3000:]
    assert result.returncode == 0 and all(
        h["failed"] == 0 and h["unreachable"] == 0 for h in hosts.values()
    ), result.stdout[-5000:]
    log(f"first site.yml: {FIGURES['first_converge_seconds']} s, {hosts}")


def test_3_second_converge_changes_nothing() -> None:
    started = time.monotonic()
    result = vagrant("provision", WORKER, "--provision-with", "site")
    FIGURES["second_converge_seconds"] = round(time.monotonic() - started, 1)
    hosts = recap(result.stdout)
    assert set(hosts) == {"localhost", EDGE, WORKER}, result.stdout[-3000:]
    assert result.returncode == 0, result.stdout[-5000:]
    assert {name: h["changed"] for name, h in hosts.items()} == {
        "localhost": 0,
        EDGE: 0,
        WORKER: 0,
    }, result.stdout[-8000:]
    log(f"second site.yml: {FIGURES['second_converge_seconds']} s, changed=0")


def httpie(*args: str) -> str:
    result = run(
        [
            str(HTTPIE),
            "--ignore-stdin",
            "--check-status",
            "--body",
            "--verify",
            str(CA_FILE),
            *args,
        ],
        timeout=60,
    )
    assert result.returncode == 0, f"https {' '.join(args[:3])}: {result.stdout}{result.stderr}"
    return result.stdout


def test_4_httpie_walkthrough_through_the_router() -> None:
    password = demo_password()
    before = loyalty_state("alice")["transactions"]
    token = json.loads(
        httpie(
            "--form",
            "POST",
            f"{ROUTER}/authentication/token",
            "username=alice",
            f"password={password}",
        )
    )["token"]
    queued = json.loads(
        httpie(
            "--form",
            "POST",
            f"{ROUTER}/transactions/transactions",
            f"token={token}",
            "amount=2000",
            "currency=GBP",
        )
    )
    assert queued["transaction_id"]
    deadline = time.monotonic() + 60
    while True:
        loyalty = json.loads(
            httpie(f"{ROUTER}/transactions/loyalty", f"Authorization:Bearer {token}")
        )
        if loyalty_state("alice")["transactions"] == before + 1:
            break
        assert time.monotonic() < deadline, f"not awarded within 60 s: {loyalty}"
        time.sleep(1)
    # The port Vagrant forwards on the control machine reaches the router too.
    port = int(os.environ["LOYALTY_VAGRANT_ROUTER_PORT"])
    status, _, _ = request(
        "GET",
        "/authentication/health",
        host="127.0.0.1",
        port=port,
        context=tls(),
    )
    assert status == 200


def reachable_from_worker(port: int) -> bool:
    probe = f"timeout 5 bash -c '</dev/tcp/{ADDRESSES[EDGE]}/{port}' 2>/dev/null"
    return ssh(WORKER, probe, timeout=30).returncode == 0


def reachable_from_here(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=5):
            return True
    except OSError:
        return False


def test_5_firewall_seen_from_the_other_machine() -> None:
    # The worker machine is a Redis client of the edge's, and nothing else:
    # not an API, the router's admin page, the metrics or Prometheus.
    closed = (5000, 5001, 8404, 8405, 9090, 9100)
    seen = {port: reachable_from_worker(port) for port in (443, 6379, *closed)}
    assert seen == {443: True, 6379: True} | dict.fromkeys(closed, False), seen
    # The control machine is in no group: the router only.
    here = {port: reachable_from_here(ROUTER, port) for port in (443, 6379, *closed)}
    assert here == {443: True, 6379: False} | dict.fromkeys(closed, False), here
    # The worker machine's metrics are for the monitoring host (the edge) only.
    assert not reachable_from_here(ADDRESSES[WORKER], 9100)
    assert not reachable_from_here(ADDRESSES[WORKER], 9481)


# Prometheus's scrape jobs on the edge machine and how many targets each.
TARGETS = {
    "prometheus": 1,
    "alertmanager": 1,
    "node": 2,
    "auth-api": 1,
    "transaction-api": 1,
    "loyalty-worker": 4,
    "haproxy": 1,
    "redis": 1,
}
TARGETS_UP = """
import json, urllib.request
url = "http://127.0.0.1:9090/api/v1/targets?state=active"
with urllib.request.urlopen(url, timeout=10) as reply:
    targets = json.load(reply)["data"]["activeTargets"]
up = {}
for target in targets:
    if target["health"] == "up":
        up[target["labels"]["job"]] = up.get(target["labels"]["job"], 0) + 1
print(json.dumps(up))
"""


def test_6_prometheus_scrapes_every_target_across_the_machines() -> None:
    deadline = time.monotonic() + 120
    while True:
        result = ssh(EDGE, "python3 -", timeout=30, stdin=TARGETS_UP)
        up = json.loads(result.stdout) if result.returncode == 0 else result.stderr
        if up == TARGETS:
            break
        assert time.monotonic() < deadline, f"targets up by job: {up}, expected {TARGETS}"
        time.sleep(5)


class Load:
    """`total` transactions through the router, one after another on a kept-
    alive HTTPS connection at most `rate` a second, each with its own
    Idempotency-Key; bounded by `max_seconds`."""

    def __init__(self, total: int, rate: float, max_seconds: float) -> None:
        self.total, self.rate, self.max_seconds = total, rate, max_seconds
        self.accepted: dict[str, str] = {}  # transaction id -> user
        self.other: list[str] = []
        self.sent = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        started = time.monotonic()
        conn = None
        for index in range(self.total):
            if time.monotonic() - started > self.max_seconds:
                break
            time.sleep(max(0.0, started + index / self.rate - time.monotonic()))
            user = list(USERS)[index % len(USERS)]
            headers = {
                "Authorization": f"Bearer {TOKENS.get(user)}",
                "Idempotency-Key": str(uuid.uuid4()),
            }
            fields = {"amount": "100", "currency": "GBP"}
            for _attempt in (1, 2):
                conn = conn or connection(ROUTER, 443, timeout=15, context=tls())
                try:
                    status, _, body = request(
                        "POST", "/transactions/transactions", fields, headers, conn=conn
                    )
                    break
                except (OSError, http.client.HTTPException) as error:
                    # A kept-alive connection the router closed: once more on
                    # a new one, with the same Idempotency-Key.
                    conn.close()
                    conn = None
                    status, body = 0, str(error)
            self.sent += 1
            if status == 202:
                self.accepted[body["transaction_id"]] = user
            else:
                self.other.append(f"{status} {body}"[:200])


def test_7_worker_vm_powered_off_hard_under_load_loses_nothing() -> None:
    before = {user: loyalty_state(user)["transactions"] for user in USERS}
    load = Load(total=150, rate=5, max_seconds=90)
    load.thread.start()
    while load.sent < 40 and load.thread.is_alive():
        time.sleep(0.2)
    destroyed = run([*VIRSH, "destroy", domain_id(WORKER)], timeout=60)
    assert destroyed.returncode == 0, destroyed.stderr
    log(f"virsh destroy {WORKER} after {load.sent} transactions")
    load.thread.join(timeout=120)
    assert not load.thread.is_alive()
    started = run([*VIRSH, "start", domain_id(WORKER)], timeout=60)
    assert started.returncode == 0, started.stderr
    FIGURES["worker_cold_boot_to_ssh_seconds"] = round(wait_for_ssh(WORKER), 1)
    assert load.other == [], f"answers other than 202: {load.other[:5]}"
    ids = list(load.accepted)
    marked = loyalty_redis.wait_until_awarded(redis_lines, group_info, ids, timeout=240)
    assert marked == len(ids), f"{len(ids) - marked} of {len(ids)} accepted transactions lost"
    after = {user: loyalty_state(user)["transactions"] for user in USERS}
    sent = {user: sum(1 for u in load.accepted.values() if u == user) for user in USERS}
    # Each accepted transaction counted once: none lost, none twice.
    assert {u: after[u] - before[u] for u in USERS} == sent
    FIGURES["load_accepted"] = len(ids)
    # The restarted machine's workers came back by themselves.
    units = ssh(WORKER, "systemctl is-system-running --wait", timeout=180)
    assert units.stdout.strip() == "running", ssh(WORKER, "systemctl --failed").stdout


def test_8_edge_reboots_and_everything_comes_back_by_itself() -> None:
    state = {user: loyalty_state(user) for user in USERS}
    old_boot = boot_id(EDGE)
    started = time.monotonic()
    ssh(EDGE, "sudo systemctl reboot", timeout=30)
    while True:
        try:
            if ssh(EDGE, "true", timeout=10).returncode != 0:
                break
        except subprocess.TimeoutExpired:
            break
        assert time.monotonic() - started < 120, f"{EDGE} did not go down for its reboot"
        time.sleep(1)
    wait_for_ssh(EDGE, timeout=600)
    assert boot_id(EDGE) != old_boot
    units = ssh(EDGE, "systemctl is-system-running --wait", timeout=300)
    assert units.stdout.strip() == "running", ssh(EDGE, "systemctl --failed").stdout
    # Redis kept the loyalty state (AOF), and a transaction is accepted again.
    assert {user: loyalty_state(user) for user in USERS} == state
    queue_one_transaction("alice", "after the reboot")
    FIGURES["edge_reboot_to_202_seconds"] = round(time.monotonic() - started, 1)


def test_9_restore_onto_a_fresh_edge_vm() -> None:
    # A backup to the worker VM (the backup host), then one more transaction
    # that the restore will not bring back (what the backup's age loses).
    result = ansible_playbook("playbooks/backup.yml")
    assert result.returncode == 0, result.stdout[-5000:]
    at_backup = {user: loyalty_state(user) for user in USERS}
    token, _ = TOKENS.fresh("alice", deadline=60)
    status, _, body = request(
        "POST",
        "/transactions/transactions",
        {"amount": "100", "currency": "GBP"},
        {"Authorization": f"Bearer {token}"},
    )
    assert status == 202, body

    # The edge VM is lost and a new, empty one takes its name and address.
    started = time.monotonic()
    for command in (("destroy", "-f", EDGE), ("up", EDGE)):
        result = vagrant(*command)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    result = vagrant("provision", WORKER, "--provision-with", "site")
    assert result.returncode == 0, result.stdout[-5000:]
    assert loyalty_state("alice") == {"stamps": 0, "vouchers": 0, "transactions": 0}

    refused = ansible_playbook("playbooks/restore.yml")
    assert refused.returncode != 0
    assert f"-e redis_backup_restore_confirm={EDGE}" in refused.stdout, refused.stdout[-3000:]
    restored = ansible_playbook(
        "playbooks/restore.yml", "-e", f"redis_backup_restore_confirm={EDGE}"
    )
    assert restored.returncode == 0, restored.stdout[-5000:]
    FIGURES["fresh_edge_to_restored_seconds"] = round(time.monotonic() - started, 1)
    assert {user: loyalty_state(user) for user in USERS} == at_backup

    # The platform works on: a transaction is queued and awarded once.
    before = loyalty_state("bob")["transactions"]
    queue_one_transaction("bob", "after the restore")
    deadline = time.monotonic() + 120
    while loyalty_state("bob")["transactions"] != before + 1:
        assert time.monotonic() < deadline, "the transaction after the restore was not awarded"
        time.sleep(2)


def test_10_destroy_leaves_no_domain_volume_or_network() -> None:
    ours = {domain_id(EDGE), domain_id(WORKER)}
    result = vagrant("destroy", "-f")
    assert result.returncode == 0, result.stdout + result.stderr
    before = STATE["before"]
    domains = {run([*VIRSH, "domuuid", name], 30).stdout.strip() for name in libvirt_names("list")}
    assert not ours & domains
    assert libvirt_names("list") == before["list"]
    assert libvirt_names("net-list") == before["net-list"]
    # vagrant-libvirt keeps the box's base image in the pool for the next
    # machine of that box (scripts/vm-test removes it on exit): nothing else.
    left = libvirt_names("vol-list") - before["vol-list"]
    assert all(name.startswith("loyalty-test-VAGRANTSLASH-") for name in left), left
