#!/usr/bin/env python3
"""Provisioning and throughput benchmark of the whole platform on local test hosts.

Run it through bench/run (which cleans up even when this is killed).  In one
run, on systemd-booted containers named bench-* on the Docker network
"bench" (172.30.30.0/24), each step bounded in time:

1. floor: on one fresh host, plain apt-get of every Debian package the roles
   install and plain python3 -m venv + pip install from the same wheelhouse;
2. the five-host platform (inventory/local's groups): first converge of
   site.yml on fresh hosts with plain linear and, on other fresh hosts, as
   configured (Mitogen); then second converges (changed must be 0) as
   configured and with one setting changed at a time;
3. throughput on that platform, load from this machine: POST /transactions
   on the Transaction API host beside a bare Bottle app on the same host
   under the same gunicorn settings; the workers' rate with 1, 2 and 4
   instances; p50/p99 from a 202 to the award visible in GET /loyalty;
4. scale: first converge of fresh platforms with 1, 3 and 6 worker hosts.

The hosts run the Debian release of LOYALTY_DEBIAN_RELEASE (trixie, Debian
13, the default, or bookworm, Debian 12; 13 and 12 work too), booted from
loyalty-host:<release> (scripts/host-image); the results name it.

Writes bench/results/latest.json, latest.md and latest.png.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
from hosts import (  # noqa: E402  -- bench/, put on the path above
    STARTED,
    dexec,
    load_average,
    log,
    remove_hosts,
    remove_workers,
    run,
    start_hosts,
)
from platform_load import API_PORT, HELLO_PORT, award_latency, http_rows, worker_rows  # noqa: E402
from report import write_results  # noqa: E402

GATEWAY = "172.30.30.1"  # this machine, as the hosts see it
# The hosts' Debian release and image, from LOYALTY_DEBIAN_RELEASE; main()
# sets them before any host starts.
RELEASE = ""
IMAGE = ""
VENV = REPO / ".venv" / "bin"
# Every Debian package a role installs (roles/*/tasks/install.yml, packages.yml).
APT_PACKAGES = ["nftables", "redis-server", "redis-tools", "haproxy", "socat", "python3-venv"]
# One virtualenv per Python service, as the roles make them.
PIP_PACKAGES = {
    "auth-api": "loyalty-auth-api",
    "transaction-api": "loyalty-transaction-api",
    "loyalty-worker": "loyalty-worker",
}


def release_and_image() -> tuple[str, str]:
    """The release of LOYALTY_DEBIAN_RELEASE and its host image, named by the
    shell functions every script uses, so that the bench accepts exactly
    the values they do. Exits with their one-line error otherwise."""
    script = (
        'source "$1/scripts/lib/debian-release.sh" && release="$(debian_release)" '
        '&& echo "$release $(host_image "$release")"'
    )
    result = subprocess.run(
        ["bash", "-c", script, "bash", str(REPO)], capture_output=True, text=True, check=False
    )
    if result.returncode:
        lines = result.stderr.strip().splitlines() or [f"bash exited with {result.returncode}"]
        raise SystemExit(f"bench: {lines[-1]}")
    release, image = result.stdout.split()
    return release, image


# -------------------------------------------------------------- CPU evidence


# ------------------------------------------------------------------- hosts


# --------------------------------------------------------------- inventory


def platform_hosts(workers: int) -> dict[str, dict[str, Any]]:
    hosts = {
        "bench-edge": {"address": "172.30.30.10", "groups": ["router", "auth_api"]},
        "bench-redis": {"address": "172.30.30.11", "groups": ["redis"]},
        "bench-api": {"address": "172.30.30.12", "groups": ["transaction_api"]},
    }
    for n in range(1, workers + 1):
        hosts[f"bench-worker-{n}"] = {
            "address": f"172.30.30.{20 + n}",
            "groups": ["loyalty_worker"],
        }
    return hosts


def write_inventory(
    directory: Path,
    hosts: dict[str, dict[str, Any]],
    secrets: Path,
    connection: str = "docker",
) -> Path:
    """inventory/local's groups and group_vars, with bench-* hosts and three bench-only extras."""
    if directory.exists():
        shutil.rmtree(directory)
    shutil.copytree(REPO / "inventory" / "local" / "group_vars", directory / "group_vars")
    groups: dict[str, dict[str, Any]] = {}
    for name, host in hosts.items():
        for group in host["groups"]:
            groups.setdefault(group, {"hosts": {}})["hosts"][name] = None
    inventory = {
        "all": {
            "vars": {
                "ansible_connection": connection,
                "ansible_python_interpreter": "/usr/bin/python3",
                "loyalty_secrets_dir": str(secrets),
            },
            "hosts": {name: {"private_address": h["address"]} for name, h in hosts.items()},
            "children": groups,
        }
    }
    (directory / "hosts.yml").write_text(json.dumps(inventory, indent=2) + "\n")
    # The load comes from this machine: let it reach the API host's service
    # port, the bare app's port beside it, and Redis (to fill the stream).
    extra = {
        "transaction_api": [API_PORT, HELLO_PORT],
        "redis": [6379],
    }
    for group, ports in extra.items():
        (directory / "group_vars" / group).mkdir(parents=True, exist_ok=True)
        rules = [{"port": p, "sources": [GATEWAY], "comment": f"bench load {p}"} for p in ports]
        (directory / "group_vars" / group / "bench.yml").write_text(
            json.dumps({"firewall_extra_rules": rules}, indent=2) + "\n"
        )
    return directory


RECAP = re.compile(
    r"^(\S+)\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M
)
PROFILE = re.compile(r"^(.{1,200}?) -+ (\d+\.\d+)s$", re.M)


def converge(
    inventory: Path,
    label: str,
    logs: Path,
    timeout: float,
    facts: str,
    env_extra: dict[str, str] | None = None,
) -> dict[str, Any]:
    """One timed ansible-playbook site.yml.

    ``facts`` names the fact cache: one per set of hosts, so that a first
    converge never starts with another row's facts.
    """
    env = {
        **os.environ,
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_CACHE_PLUGIN_CONNECTION": str(logs / "facts" / facts),
        "PATH": f"{VENV}:{os.environ['PATH']}",
        **(env_extra or {}),
    }
    argv = [str(VENV / "ansible-playbook"), "-i", str(inventory), "site.yml"]
    log(f"converge {label}: {' '.join(argv[1:])} {env_extra or ''}")
    start = time.monotonic()
    result = subprocess.run(
        argv, cwd=REPO, env=env, text=True, capture_output=True, timeout=timeout
    )
    seconds = time.monotonic() - start
    (logs / f"{label}.log").write_text(result.stdout + result.stderr)
    recap = {
        m[0]: {"ok": int(m[1]), "changed": int(m[2]), "unreachable": int(m[3]), "failed": int(m[4])}
        for m in RECAP.findall(result.stdout)
    }
    if result.returncode != 0 or not recap:
        raise RuntimeError(
            f"converge {label} failed; see {logs / (label + '.log')}:\n{result.stdout[-3000:]}"
        )
    slowest = sorted(
        ((name.strip(), float(t)) for name, t in PROFILE.findall(result.stdout)),
        key=lambda x: -x[1],
    )[:8]
    changed = sum(r["changed"] for r in recap.values())
    log(f"converge {label}: {seconds:.1f} s, changed={changed}")
    return {
        "seconds": round(seconds, 1),
        "changed": changed,
        "tasks_ok": sum(r["ok"] for r in recap.values()),
        "hosts": len(recap),
        "slowest_tasks": [{"task": n, "seconds": t} for n, t in slowest],
        "load_average": load_average(),
        "command": "ansible-playbook -i <bench inventory> site.yml"
        + "".join(f" {k}={v}" for k, v in (env_extra or {}).items()),
    }


# ------------------------------------------------------------------- floor


def wheelhouse_archive() -> Path:
    """The newest wheelhouse that site.yml built for the hosts' release: its
    wheels are for that release's Python."""
    pattern = f"{RELEASE}-py*/wheelhouse.tar"
    archives = sorted(
        (REPO / "build" / "wheelhouse").glob(pattern), key=lambda p: p.stat().st_mtime
    )
    if not archives:
        raise RuntimeError(
            f"no wheelhouse for {RELEASE} built yet (build/wheelhouse/{pattern}): "
            f"converge {RELEASE} hosts once first (LOYALTY_DEBIAN_RELEASE={RELEASE} scripts/up)"
        )
    return archives[-1]


def floor(host: str) -> dict[str, Any]:
    """Plain apt-get and plain pip on a fresh host: the time the tools themselves need."""
    start_hosts({host: "172.30.30.50"}, IMAGE)
    archive = wheelhouse_archive()
    start = time.monotonic()
    dexec(
        host,
        "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "
        + " ".join(APT_PACKAGES)
        + " >/dev/null",
        timeout=600,
    )
    apt_seconds = time.monotonic() - start
    start = time.monotonic()
    run(["docker", "cp", str(archive), f"{host}:/root/wheelhouse.tar"], 120)
    dexec(host, "mkdir -p /root/wh && tar -C /root/wh -xf /root/wheelhouse.tar", 120)
    for service, package in PIP_PACKAGES.items():
        dexec(
            host,
            f"python3 -m venv /opt/{service}/venv && /opt/{service}/venv/bin/python -m pip "
            f"install -q --no-index --find-links /root/wh --disable-pip-version-check {package}",
            timeout=600,
        )
    pip_seconds = time.monotonic() - start
    run(["docker", "rm", "-f", host], 60, check=False)
    figures = {
        "apt_seconds": round(apt_seconds, 1),
        "pip_seconds": round(pip_seconds, 1),
        "seconds": round(apt_seconds + pip_seconds, 1),
        "apt_packages": APT_PACKAGES,
        "pip_venvs": list(PIP_PACKAGES.values()),
        "load_average": load_average(),
        "command": "apt-get update && apt-get install -y "
        + " ".join(APT_PACKAGES)
        + "; docker cp wheelhouse.tar; tar -x; per service: python3 -m venv + "
        "pip install --no-index --find-links WH <package> (3 venvs)",
    }
    log(f"floor: apt {apt_seconds:.1f} s + pip {pip_seconds:.1f} s")
    return figures


# --------------------------------------------------------------- throughput


# -------------------------------------------------------------------- report


# ---------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="LOYALTY_DEBIAN_RELEASE: trixie (Debian 13, the default) or bookworm "
        "(Debian 12), the release of the hosts and their image loyalty-host:<release>.",
    )
    parser.add_argument(
        "--budget", type=float, default=1500, help="seconds; later rows are skipped past it"
    )
    parser.add_argument("--seconds", type=float, default=8.0, help="HTTP load per target")
    parser.add_argument("--clients", type=int, default=8, help="wrk's open connections")
    parser.add_argument(
        "--backlog", type=int, default=30000, help="stream entries per worker measurement"
    )
    parser.add_argument("--samples", type=int, default=200, help="202 -> award latency samples")
    parser.add_argument("--scale", default="1,3,6", help="worker hosts per scale row ('' for none)")
    parser.add_argument(
        "--scale-mode",
        choices=["add", "fresh"],
        default="add",
        help="add: fresh worker hosts joined to the provisioned core; fresh: all hosts new",
    )
    parser.add_argument("--skip", default="", help="comma-separated: floor,accelerators,throughput")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    if (
        not 1 <= args.seconds <= 60
        or not 100 <= args.backlog <= 50000
        or not 10 <= args.samples <= 2000
    ):
        parser.error("--seconds 1..60, --backlog 100..50000, --samples 10..2000")
    global RELEASE, IMAGE
    RELEASE, IMAGE = release_and_image()
    image_id = run(["docker", "image", "inspect", "-f", "{{.Id}}", IMAGE], 60, check=False)
    if image_id.returncode:
        raise SystemExit(f"bench: image {IMAGE} is missing; run scripts/host-image {RELEASE}.")

    work = Path(tempfile.mkdtemp(prefix="loyalty-bench-"))
    secrets = work / "secrets"
    figures: dict[str, Any] = {
        "started_at": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": {"cpus": os.cpu_count(), "load_average_start": load_average()},
        "debian_release": RELEASE,
        "host_image": IMAGE,
        "host_image_id": image_id.stdout.strip(),
        "settings": vars(args) | {"out": str(args.out)},
        "skipped": [],
        "logs": str(work),
    }
    figures["settings"]["skip"] = sorted(skip)

    def over_budget(what: str, need: float) -> bool:
        if time.monotonic() - STARTED + need > args.budget:
            figures["skipped"].append(f"{what} (time budget {args.budget:.0f} s)")
            log(f"skipping {what}: time budget")
            return True
        return False

    try:
        remove_hosts()
        if "floor" not in skip:
            figures["floor"] = floor("bench-floor")

        hosts5 = platform_hosts(2)
        prov: dict[str, Any] = {"second": {}}
        figures["provisioning"] = prov
        # Plain linear (no Mitogen) first, on its own fresh hosts, so that the
        # configured first converge below is measured beside it in this run.
        linear = {"ANSIBLE_STRATEGY": "linear"}
        if "accelerators" not in skip and not over_budget("first converge, plain linear", 300):
            start_hosts({n: h["address"] for n, h in hosts5.items()}, IMAGE)
            inventory = write_inventory(work / "inventory-5", hosts5, secrets)
            prov["first_linear"] = converge(
                inventory, "first-5-linear", work, 900, "platform-5-linear", linear
            )
            remove_hosts()
        start_hosts({n: h["address"] for n, h in hosts5.items()}, IMAGE)
        inventory = write_inventory(work / "inventory-5", hosts5, secrets)
        prov["first"] = converge(inventory, "first-5", work, 900, "platform-5")
        if figures.get("floor"):
            prov["first_to_floor_ratio"] = round(
                prov["first"]["seconds"] / figures["floor"]["seconds"], 2
            )
        # "configured" is ansible.cfg as it is: the mitogen_or_linear strategy
        # (Mitogen), pipelining, the fact cache. Each other row changes one thing.
        variants: dict[str, tuple[Path, dict[str, str]]] = {"configured": (inventory, {})}
        if "accelerators" not in skip:
            api_inv = write_inventory(
                work / "inventory-5-api", hosts5, secrets, "community.docker.docker_api"
            )
            variants |= {
                "linear, no Mitogen": (inventory, linear),
                "linear, no Mitogen, no pipelining": (
                    inventory,
                    linear | {"ANSIBLE_PIPELINING": "false"},
                ),
                "strategy free, no Mitogen": (inventory, {"ANSIBLE_STRATEGY": "free"}),
                "linear, docker_api connection": (api_inv, linear),
                "configured, no fact cache": (
                    inventory,
                    {"ANSIBLE_GATHERING": "implicit", "ANSIBLE_CACHE_PLUGIN": "memory"},
                ),
                # Once more at the end: the spread between the two "configured"
                # rows shows how much the machine's load moved during the rows.
                "configured, again": (inventory, {}),
            }
        for name, (inv, env) in variants.items():
            if name != "configured" and over_budget(f"second converge {name}", 150):
                continue
            label = "second-5-" + re.sub(r"[^a-z_]+", "-", name.lower())
            second = converge(inv, label, work, 600, "platform-5", env)
            if inv != inventory:
                second["command"] += " (ansible_connection: community.docker.docker_api)"
            prov["second"][name] = second
            if second["changed"] != 0:
                log(f"WARNING: second converge ({name}) changed {second['changed']} (must be 0)")
        write_results(figures, args.out)

        if "throughput" not in skip and not over_budget("throughput", 150):
            try:
                figures["throughput"] = {
                    **http_rows(secrets, hosts5, args.seconds, args.clients),
                    **worker_rows(secrets, hosts5, args.backlog),
                    **award_latency(secrets, hosts5, args.samples),
                }
            except Exception as error:  # noqa: BLE001 -- keep going to the scale rows
                figures.setdefault("errors", []).append(f"throughput: {error}")
                log(f"throughput failed: {error}")
            write_results(figures, args.out)
        figures["scale"] = []
        # The scale rows run as configured (Mitogen, pipelining, fact cache).
        scale_env: dict[str, str] = {}
        figures["scale_mode"] = args.scale_mode
        counts = [int(x) for x in args.scale.split(",") if x.strip()]
        if args.scale_mode == "fresh":
            remove_hosts()
        for count in counts:
            need = 60 + 40 * (count + 3) if args.scale_mode == "fresh" else 60 + 30 * count
            if over_budget(f"scale row with {count} worker hosts", need):
                continue
            hosts = platform_hosts(count)
            facts = work / "facts" / f"scale-{count}"
            if args.scale_mode == "fresh":
                start_hosts({n: h["address"] for n, h in hosts.items()}, IMAGE)
                setup = f"{count + 3} fresh hosts"
            else:
                # The core (edge, redis, api) stays provisioned; every worker
                # host is new, and so are its facts.
                remove_workers()
                start_hosts({n: h["address"] for n, h in hosts.items() if "worker" in n}, IMAGE)
                shutil.copytree(work / "facts" / "platform-5", facts)
                for cached in facts.glob("bench-worker-*"):
                    cached.unlink()
                setup = f"{count} fresh worker hosts added to the provisioned edge, redis, api"
            inv = write_inventory(work / f"inventory-scale-{count}", hosts, secrets)
            row = converge(inv, f"scale-{count}", work, 900, f"scale-{count}", scale_env)
            figures["scale"].append({"worker_hosts": count, "setup": setup, **row})
            if args.scale_mode == "fresh":
                remove_hosts()
            write_results(figures, args.out)
    finally:
        figures["machine"]["load_average_end"] = load_average()
        figures["duration_seconds"] = round(time.monotonic() - STARTED, 1)
        write_results(figures, args.out)
        remove_hosts()
    log(f"wrote {args.out}/latest.json, latest.md, latest.png; logs in {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
