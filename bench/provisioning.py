"""Provisioning rows of the bench: the floor (plain apt-get and pip on a
fresh host) and timed converges of site.yml on bench-* hosts.

Each function takes the hosts, release and image it works on as arguments.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from hosts import (
    LOAD_ADDRESS,
    REPO,
    dexec,
    load_average,
    log,
    remove_hosts,
    remove_workers,
    run,
    start_hosts,
)
from platform_http import API_PORT, HELLO_PORT, SERVICE_PORT

GATEWAY = "172.30.30.1"  # this machine, as the hosts see it
VENV = REPO / ".venv" / "bin"
# Every Debian package the roles install on the bench platform (the apt
# tasks of firewall, redis, router, python_service, redis_backup,
# node_exporter and monitoring; not router_vip's keepalived nor Sentinel,
# whose groups the bench has not).
APT_PACKAGES = [
    "nftables",
    "netbase",
    "redis-server",
    "redis-tools",
    "haproxy",
    "socat",
    "python3-venv",
    "openssh-client",
    "prometheus-node-exporter",
    "prometheus",
    "prometheus-alertmanager",
    "prometheus-redis-exporter",
]
# One virtualenv per Python service, as the roles make them.
PIP_PACKAGES = {
    "auth-api": "loyalty-auth-api",
    "transaction-api": "loyalty-transaction-api",
    "loyalty-worker": "loyalty-worker",
}


def platform_hosts(workers: int) -> dict[str, dict[str, Any]]:
    hosts = {
        # The groups of inventory/local: backups kept on the edge, the
        # monitoring beside Redis.
        "bench-edge": {"address": "172.30.30.10", "groups": ["router", "auth_api", "backup"]},
        "bench-redis": {"address": "172.30.30.11", "groups": ["redis", "monitoring"]},
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
    # The load comes from this machine, wrk from the namespace of bench-load:
    # let both reach the API host's service port, the bare app's port beside
    # it, and Redis (to fill the stream).
    extra = {
        "transaction_api": [SERVICE_PORT, API_PORT, HELLO_PORT],
        "redis": [6379],
    }
    for group, ports in extra.items():
        (directory / "group_vars" / group).mkdir(parents=True, exist_ok=True)
        sources = [GATEWAY, LOAD_ADDRESS]
        rules = [{"port": p, "sources": sources, "comment": f"bench load {p}"} for p in ports]
        (directory / "group_vars" / group / "bench.yml").write_text(
            json.dumps({"firewall_extra_rules": rules}, indent=2) + "\n"
        )
    return directory


RECAP = re.compile(
    r"^(\S+)\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M
)
PROFILE = re.compile(r"^(.{1,200}?) -+ (\d+\.\d+)s$", re.M)


def time_by_role(timings: list[tuple[str, float]]) -> list[dict[str, Any]]:
    """The tasks' seconds and count per role ("role : task" in profile_tasks'
    names; a play's own tasks count as "(plays)"), the costliest first."""
    roles: dict[str, dict[str, Any]] = {}
    for name, seconds in timings:
        role = name.split(" : ", 1)[0] if " : " in name else "(plays)"
        entry = roles.setdefault(role, {"role": role, "seconds": 0.0, "tasks": 0})
        entry["seconds"] += seconds
        entry["tasks"] += 1
    for entry in roles.values():
        entry["seconds"] = round(entry["seconds"], 1)
    return sorted(roles.values(), key=lambda e: -e["seconds"])


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
        # Every task's time, not only the slowest, for the time per role.
        "PROFILE_TASKS_TASK_OUTPUT_LIMIT": "all",
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
    timings = [(name.strip(), float(t)) for name, t in PROFILE.findall(result.stdout)]
    slowest = sorted(timings, key=lambda x: -x[1])[:8]
    changed = sum(r["changed"] for r in recap.values())
    log(f"converge {label}: {seconds:.1f} s, changed={changed}")
    return {
        "seconds": round(seconds, 1),
        "changed": changed,
        "tasks_ok": sum(r["ok"] for r in recap.values()),
        "hosts": len(recap),
        "slowest_tasks": [{"task": n, "seconds": t} for n, t in slowest],
        "by_role": time_by_role(timings),
        "load_average": load_average(),
        "command": "ansible-playbook -i <bench inventory> site.yml"
        + "".join(f" {k}={v}" for k, v in (env_extra or {}).items()),
    }


def wheelhouse_archive(release: str) -> Path:
    """The newest wheelhouse that site.yml built for the hosts' release: its
    wheels are for that release's Python."""
    pattern = f"{release}-py*/wheelhouse.tar"
    archives = sorted(
        (REPO / "build" / "wheelhouse").glob(pattern), key=lambda p: p.stat().st_mtime
    )
    if not archives:
        raise RuntimeError(
            f"no wheelhouse for {release} built yet (build/wheelhouse/{pattern}): "
            f"converge {release} hosts once first (LOYALTY_DEBIAN_RELEASE={release} scripts/up)"
        )
    return archives[-1]


def floor(host: str, address: str, release: str, image: str) -> dict[str, Any]:
    """Plain apt-get and plain pip on a fresh host: the time the tools themselves need."""
    start_hosts({host: address}, image)
    archive = wheelhouse_archive(release)
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


def addresses(hosts: dict[str, dict[str, Any]]) -> dict[str, str]:
    return {name: host["address"] for name, host in hosts.items()}


PLAIN_LINEAR = {"ANSIBLE_STRATEGY": "linear"}


def first_converge(
    hosts: dict[str, dict[str, Any]], image: str, work: Path, label: str,
    env_extra: dict[str, str] | None = None,
) -> tuple[dict[str, Any], Path]:  # fmt: skip
    """Fresh hosts, then one timed site.yml; its figures and the inventory."""
    start_hosts(addresses(hosts), image)
    inventory = write_inventory(work / f"inventory-{label}", hosts, work / "secrets")
    return converge(
        inventory, f"first-{label}", work, 900, f"platform-{label}", env_extra
    ), inventory


def second_converge_variants(
    inventory: Path, docker_api_inventory: Path | None
) -> dict[str, tuple[Path, dict[str, str]]]:
    """The second converges to time: "configured" is ansible.cfg as it is (the
    mitogen_or_linear strategy, pipelining, the fact cache); each other row
    changes one thing. Without docker_api_inventory, "configured" three
    times: on these shared machines one run of the same converge differs from
    the next by a second or two, and the three show the spread.
    `strategy: free` is not among them: site.yml's wheelhouse play builds
    once for every host (run_once) and each host then reads the result,
    which needs the hosts in step."""
    variants = {"configured": (inventory, {})}
    if docker_api_inventory is None:
        return variants | {
            "configured, again": (inventory, {}),
            "configured, third": (inventory, {}),
        }
    return variants | {
        "linear, no Mitogen": (inventory, PLAIN_LINEAR),
        "linear, no Mitogen, no pipelining": (
            inventory,
            PLAIN_LINEAR | {"ANSIBLE_PIPELINING": "false"},
        ),
        "linear, docker_api connection": (docker_api_inventory, PLAIN_LINEAR),
        "configured, no fact cache": (
            inventory,
            {"ANSIBLE_GATHERING": "implicit", "ANSIBLE_CACHE_PLUGIN": "memory"},
        ),
        # Once more at the end: the spread between the two "configured"
        # rows shows how much the machine's load moved during the rows.
        "configured, again": (inventory, {}),
    }


def second_converge(name: str, inventory: Path, env: dict[str, str], work: Path) -> dict[str, Any]:
    """site.yml once more on the converged hosts of platform-5: changed must be 0."""
    label = "second-5-" + re.sub(r"[^a-z_]+", "-", name.lower())
    second = converge(inventory, label, work, 600, "platform-5", env)
    if "docker_api" in name:
        second["command"] += " (ansible_connection: community.docker.docker_api)"
    if second["changed"] != 0:
        log(f"WARNING: second converge ({name}) changed {second['changed']} (must be 0)")
    return second


def scale_row(count: int, mode: str, image: str, work: Path) -> dict[str, Any]:
    """First converge with `count` fresh worker hosts: added to the provisioned
    edge, redis and api of platform-5 ("add"), or all hosts fresh ("fresh")."""
    hosts = platform_hosts(count)
    facts = work / "facts" / f"scale-{count}"
    if mode == "fresh":
        start_hosts(addresses(hosts), image)
        setup = f"{count + 3} fresh hosts"
    else:
        # The core (edge, redis, api) stays provisioned; every worker host
        # is new, and so are its facts.
        remove_workers()
        start_hosts({n: a for n, a in addresses(hosts).items() if "worker" in n}, image)
        shutil.copytree(work / "facts" / "platform-5", facts)
        for cached in facts.glob("bench-worker-*"):
            cached.unlink()
        setup = f"{count} fresh worker hosts added to the provisioned edge, redis, api"
    inventory = write_inventory(work / f"inventory-scale-{count}", hosts, work / "secrets")
    row = converge(inventory, f"scale-{count}", work, 900, f"scale-{count}")
    if mode == "fresh":
        remove_hosts()
    return {"worker_hosts": count, "setup": setup, **row}
