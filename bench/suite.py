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
sys.path.insert(0, str(REPO / "molecule" / "shared"))
from host_commands import SYSTEMD_HOST_OPTIONS  # noqa: E402  -- the flags that boot a test host

import services  # noqa: E402  -- the service-level benchmark's load generator

NETWORK = "bench"
SUBNET = "172.30.30.0/24"
GATEWAY = "172.30.30.1"  # this machine, as the hosts see it
LABEL = "org.loyalty.bench=1"
# The hosts' Debian release and image, from LOYALTY_DEBIAN_RELEASE; main()
# sets them before any host starts.
RELEASE = ""
IMAGE = ""
DEBIAN_VERSIONS = {"trixie": "13", "bookworm": "12"}
VENV = REPO / ".venv" / "bin"
HELLO_PORT = 5099
HELLO_FILE = "/usr/local/lib/bench_hello_app.py"
API_PORT = 5000
# Every Debian package a role installs (roles/*/tasks/install.yml, packages.yml).
APT_PACKAGES = ["nftables", "redis-server", "redis-tools", "haproxy", "socat", "python3-venv"]
# One virtualenv per Python service, as the roles make them.
PIP_PACKAGES = {
    "auth-api": "loyalty-auth-api",
    "transaction-api": "loyalty-transaction-api",
    "loyalty-worker": "loyalty-worker",
}

STARTED = time.monotonic()


def log(message: str) -> None:
    print(f"[bench {time.monotonic() - STARTED:6.0f} s] {message}", flush=True)


def run(
    argv: list[str], timeout: float, check: bool = True, **kwargs: Any
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, text=True, capture_output=True, timeout=timeout, **kwargs)
    if check and result.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv)} failed ({result.returncode}): {result.stderr[-2000:]}"
        )
    return result


def dexec(
    host: str, command: str, timeout: float = 120, check: bool = True
) -> subprocess.CompletedProcess[str]:
    return run(["docker", "exec", host, "bash", "-c", command], timeout=timeout, check=check)


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


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


class CpuMeter:
    """CPU seconds used by each bench container and by the whole machine."""

    def __init__(self, hosts: list[str]) -> None:
        self.paths = {}
        for host in hosts:
            cid = run(["docker", "inspect", "-f", "{{.Id}}", host], 30).stdout.strip()
            self.paths[host] = Path(f"/sys/fs/cgroup/cpuacct/docker/{cid}/cpuacct.usage")

    @staticmethod
    def _machine() -> tuple[float, float]:
        fields = [float(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
        idle = fields[3] + fields[4]
        return sum(fields), idle

    def _read(self) -> dict[str, float]:
        out = {}
        for host, path in self.paths.items():
            try:
                out[host] = int(path.read_text()) / 1e9
            except OSError:
                out[host] = 0.0
        return out

    def __enter__(self) -> CpuMeter:
        self.t0 = time.monotonic()
        self.c0 = self._read()
        self.m0 = self._machine()
        return self

    def __exit__(self, *exc: object) -> None:
        elapsed = time.monotonic() - self.t0
        c1 = self._read()
        m1 = self._machine()
        total = m1[0] - self.m0[0]
        self.machine_busy = round(100 * (1 - (m1[1] - self.m0[1]) / total), 1) if total else 0.0
        # cores used by each container over the window (2.0 = both cores)
        self.cores = {h: round((c1[h] - self.c0[h]) / elapsed, 2) for h in self.paths}
        self.elapsed = elapsed

    def summary(self) -> dict[str, Any]:
        return {"machine_busy_percent": self.machine_busy, "cores_by_host": self.cores}


# ------------------------------------------------------------------- hosts


def start_hosts(hosts: dict[str, str]) -> None:
    if run(["docker", "network", "inspect", NETWORK], 30, check=False).returncode != 0:
        run(["docker", "network", "create", "--subnet", SUBNET, "--label", LABEL, NETWORK], 60)
    for name, address in hosts.items():
        assert name.startswith("bench-")
        run(["docker", "rm", "-f", name], 60, check=False)
        run(
            [
                "docker",
                "run",
                "--detach",
                "--name",
                name,
                "--hostname",
                name,
                "--label",
                LABEL,
                "--network",
                NETWORK,
                "--ip",
                address,
                *SYSTEMD_HOST_OPTIONS,
                IMAGE,
                "/sbin/init",
            ],
            120,
        )
    for name in hosts:
        deadline = time.monotonic() + 90
        while True:
            state = dexec(name, "systemctl is-system-running", 30, check=False).stdout.strip()
            if state in ("running", "degraded"):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not boot (systemd says {state!r})")
            time.sleep(0.5)


def remove_hosts() -> None:
    """Remove this bench's hosts (label and bench-* name both) and its network."""
    ids = run(["docker", "ps", "-aq", "--filter", f"label={LABEL}"], 60, check=False).stdout.split()
    names: list[str] = []
    if ids:
        inspect = ["docker", "inspect", "-f", "{{.Name}}", *ids]
        names = run(inspect, 60, check=False).stdout.split()
    mine = [i for i, n in zip(ids, names, strict=False) if n.lstrip("/").startswith("bench-")]
    if mine:
        run(["docker", "rm", "-f", *mine], 120, check=False)
    run(["docker", "network", "rm", NETWORK], 60, check=False)


def remove_workers() -> None:
    ids = run(["docker", "ps", "-aq", "--filter", f"label={LABEL}"], 60, check=False).stdout.split()
    for cid in ids:
        name = run(["docker", "inspect", "-f", "{{.Name}}", cid], 60, check=False).stdout.strip()
        if name.startswith("/bench-worker-"):
            run(["docker", "rm", "-f", cid], 120, check=False)


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
    start_hosts({host: "172.30.30.50"})
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


def throughput(
    secrets: Path,
    hosts: dict[str, dict[str, Any]],
    seconds: float,
    clients: int,
    backlog: int,
    samples: int,
) -> dict[str, Any]:
    import redis
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    api = hosts["bench-api"]["address"]
    edge = hosts["bench-edge"]["address"]
    workers = sorted(h for h in hosts if h.startswith("bench-worker-"))
    key = load_pem_private_key((secrets / "jwt" / "ed25519.key").read_bytes(), password=None)
    token = services.make_token(key, 1)
    out: dict[str, Any] = {"clients": clients, "seconds_per_target": seconds}

    # The bare app: same host, same venv, same gunicorn settings and worker count.
    env_file = dexec("bench-api", "cat /etc/transaction-api/transaction-api.env").stdout
    concurrency = re.search(r"^WEB_CONCURRENCY=\"?(\d+)", env_file, re.M)
    web_concurrency = int(concurrency[1]) if concurrency else 2
    out["gunicorn_workers"] = web_concurrency
    # Through stdin: docker cp cannot write into the host's /tmp (a tmpfs).
    run(
        ["docker", "exec", "-i", "bench-api", "sh", "-c", f"cat > {HELLO_FILE}"],
        60,
        input=(REPO / "bench" / "hello_app.py").read_text(),
    )
    dexec(
        "bench-api",
        f"chmod 644 {HELLO_FILE} && systemd-run --unit=bench-hello "
        "--uid=transaction-api --gid=transaction-api "
        f"--setenv=HTTP_PORT={HELLO_PORT} --setenv=WEB_CONCURRENCY={web_concurrency} "
        "--setenv=LOG_LEVEL=WARNING "
        f"/opt/transaction-api/venv/bin/python {HELLO_FILE}",
    )
    services.HOST = api  # services.py's load generator reads its target address from here
    services.wait_until(
        lambda: services.http_status(HELLO_PORT, "/health") == 200, 30, "the bare app"
    )
    services.wait_until(
        lambda: services.http_status(API_PORT, "/ready") == 200, 30, "the Transaction API"
    )

    body = b"amount=2000&currency=GBP"
    form = {"Content-Type": "application/x-www-form-urlencoded"}

    def transaction(bearer: str, path: str = "/transactions", close: bool = False) -> bytes:
        # HAProxy keeps a connection open unless asked not to, and the load
        # generator reads each answer until the connection closes.
        extra = {"Connection": "close"} if close else {}
        return services.build_request(
            path, body, {"Authorization": f"Bearer {bearer}", **form, **extra}
        )

    per_client = max(200, int(seconds * 1500 / clients))
    fresh = [
        [
            transaction(services.make_token(key, 1 + (c * per_client + i) % 1000))
            for i in range(per_client)
        ]
        for c in range(clients)
    ]
    targets = [
        services.Target(
            "hello", HELLO_PORT, [[services.build_request("/transactions", b"", {})]] * clients, 200
        ),
        services.Target("reused", API_PORT, [[transaction(token)]] * clients, 202),
        services.Target("fresh", API_PORT, fresh, 202),
    ]
    # The workers pause while the HTTP rows run: on a machine this small they
    # share its cores with the API host and would award, during the API's
    # rows only, what the API accepts, taking CPU from it that the bare app
    # never loses. The stream holds the entries; the worker rows below
    # measure the workers on their own.
    for worker in workers:
        dexec(worker, "systemctl stop 'loyalty-worker@*'", check=False)
    log(f"load: {clients} client processes, {seconds:g} s per target in 3 rounds, to {api}")
    with CpuMeter(list(hosts)) as cpu:
        services.drive(targets, seconds, 3)
    hello_t, reused_t, fresh_t = targets
    dexec("bench-api", "systemctl stop bench-hello", check=False)
    out.update(
        services.throughput_figures(*targets),
        http_cpu=cpu.summary(),
        load_average_after_http=load_average(),
        http_command=f"bench/run: services.drive() from this machine to {api}:{API_PORT} "
        "(POST /transactions) "
        f"and {api}:{HELLO_PORT} (bare Bottle POST /transactions), {clients} clients, "
        f"{seconds:g} s each in 3 alternating rounds",
    )
    log(
        f"hello {hello_t.rps:.0f}/s, transactions {reused_t.rps:.0f}/s "
        f"(fresh token {fresh_t.rps:.0f}/s), "
        f"ratio {out['ratio']}"
    )

    # Through the router too (prefix /transactions cut by HAProxy).
    services.HOST = edge
    router_t = services.Target(
        "router",
        80,
        [[transaction(token, "/transactions/transactions", close=True)]] * clients,
        202,
    )
    services.drive([router_t], seconds / 2, 1)
    out.update(router_transactions_rps=round(router_t.rps, 1), router_failures=router_t.bad)
    log(f"through the router: {router_t.rps:.0f}/s ({router_t.bad} failed)")

    # Workers: 1, 2, 4 instances on a stream filled from this machine.
    password = (secrets / "redis" / "admin.password").read_text().split("\n")[0]
    rc = redis.Redis(host=hosts["bench-redis"]["address"], password=password, decode_responses=True)
    layouts = {
        1: [(workers[0], 1)],
        2: [(workers[0], 1), (workers[-1], 1)],
        4: [(workers[0], 1), (workers[0], 2), (workers[-1], 1), (workers[-1], 2)],
    }
    if len(workers) < 2:
        layouts = {n: [(workers[0], i) for i in range(1, n + 1)] for n in (1, 2, 4)}
    out["workers"] = {}
    for count, layout in layouts.items():
        for worker in workers:
            dexec(worker, "systemctl stop 'loyalty-worker@*'", check=False)
        rc.delete("loyalty:transactions")
        for u in range(100):
            rc.delete(f"loyalty:user:{1000 + u}")
        rc.xgroup_create("loyalty:transactions", "loyalty-workers", id="$", mkstream=True)
        for worker, instance in layout:
            dexec(worker, f"systemctl start loyalty-worker@{instance}")
        services.wait_until(
            lambda n=count: len(rc.xinfo_consumers("loyalty:transactions", "loyalty-workers")) >= n,
            30,
            f"{count} consumer(s) to join the group",
        )
        time.sleep(1.0)
        with CpuMeter(list(hosts)) as cpu:
            start = time.monotonic()
            services.queue_backlog(rc, backlog, batch=500)
            filled = time.monotonic() - start

            def settled() -> bool:
                for group in rc.xinfo_groups("loyalty:transactions"):
                    if group["name"] == "loyalty-workers":
                        return group["entries-read"] >= backlog and group["pending"] == 0
                return False

            services.wait_until(settled, 300, f"{count} worker(s) to settle {backlog} entries")
            elapsed = time.monotonic() - start
        awarded = sum(
            int(rc.hget(f"loyalty:user:{1000 + u}", "transactions") or 0) for u in range(100)
        )
        out["workers"][str(count)] = {
            "tps": round(backlog / elapsed, 1),
            "backlog": backlog,
            "awarded": awarded,
            "fill_seconds": round(filled, 2),
            "instances": [f"{w}:loyalty-worker@{i}" for w, i in layout],
            "cpu": cpu.summary(),
            "load_average": load_average(),
        }
        log(
            f"workers x{count}: {backlog / elapsed:.0f} transactions/s "
            f"({awarded}/{backlog} awarded), "
            f"cpu {cpu.summary()}"
        )
    for worker in workers:
        dexec(worker, "systemctl start loyalty-worker@1 loyalty-worker@2", check=False)
        if len(workers) < 2:
            dexec(worker, "systemctl stop loyalty-worker@3 loyalty-worker@4", check=False)
    out["workers_command"] = (
        f"bench/run: {backlog} entries XADDed from this machine to the Redis host while "
        "systemctl-started loyalty-worker@N units drain them; "
        "rate = entries / time to all acknowledged"
    )

    # 202 -> award visible, with the deployed workers (2 hosts x 2 instances).
    services.HOST = api
    time.sleep(1.0)
    latencies = services.stamp_latency(API_PORT, token, samples)
    out.update(
        stamp_p50_ms=round(services.percentile(latencies, 0.5) * 1000, 2),
        stamp_p99_ms=round(services.percentile(latencies, 0.99) * 1000, 2),
        stamp_max_ms=round(max(latencies) * 1000, 2),
        stamp_samples=len(latencies),
        stamp_command=f"bench/run: services.stamp_latency() to {api}:{API_PORT}, "
        f"{samples} POST then GET /loyalty "
        "polls, deployed workers",
    )
    log(f"202 -> award: p50 {out['stamp_p50_ms']} ms, p99 {out['stamp_p99_ms']} ms")
    return out


# -------------------------------------------------------------------- report


def write_results(figures: dict[str, Any], out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "latest.json").write_text(json.dumps(figures, indent=2) + "\n")
    (out_dir / "latest.md").write_text(markdown(figures))
    try:
        chart(figures, out_dir / "latest.png")
    except Exception as error:  # noqa: BLE001 -- the figures matter more than the chart
        log(f"chart failed: {error}")


def markdown(f: dict[str, Any]) -> str:
    rows: list[tuple[str, str, str, str]] = []
    setup5 = "5 fresh bench-* hosts (edge: router+auth, redis, api, worker-1/2), docker connection"
    fl = f.get("floor")
    if fl:
        rows.append(
            (
                "Floor: apt-get of the roles' packages",
                f"{fl['apt_seconds']} s",
                "apt-get update && apt-get install " + " ".join(fl["apt_packages"]),
                "1 fresh host",
            )
        )
        rows.append(
            (
                "Floor: venv + pip from the wheelhouse (3 venvs)",
                f"{fl['pip_seconds']} s",
                "python3 -m venv; pip install --no-index --find-links WH",
                "same host",
            )
        )
    prov = f.get("provisioning", {})
    if "first" in prov:
        ratio = prov.get("first_to_floor_ratio")
        rows.append(
            (
                "First converge of the site",
                f"{prov['first']['seconds']} s"
                + (f" ({ratio}x floor, target <= 2x)" if ratio else ""),
                prov["first"]["command"],
                setup5,
            )
        )
    if "first_linear" in prov:
        first_linear = prov["first_linear"]
        rows.append(
            (
                "First converge of the site, plain linear (no Mitogen)",
                f"{first_linear['seconds']} s",
                first_linear["command"],
                setup5,
            )
        )
    for name, second in prov.get("second", {}).items():
        rows.append(
            (
                f"Second converge, {name}",
                f"{second['seconds']} s, changed={second['changed']}"
                + (" (target < 20 s)" if name.startswith("configured") else ""),
                second["command"],
                setup5,
            )
        )
    t = f.get("throughput")
    if t:
        setup = (
            f"bench-api, gunicorn {t['gunicorn_workers']} sync workers, "
            f"{t['clients']} client processes here, loyalty workers paused"
        )
        rows.append(("Bare Bottle app, POST", f"{t['hello_rps']} req/s", t["http_command"], setup))
        rows.append(
            (
                "Transaction API, POST /transactions (token reused)",
                f"{t['transactions_rps']} req/s, ratio {t['ratio']} (target >= 0.5)",
                t["http_command"],
                setup,
            )
        )
        rows.append(
            (
                "Transaction API, new token per request",
                f"{t['transactions_fresh_token_rps']} req/s, ratio {t['ratio_fresh_token']}",
                t["http_command"],
                setup,
            )
        )
        rows.append(
            (
                "Transaction API through the router",
                f"{t['router_transactions_rps']} req/s",
                "same load to bench-edge:80/transactions/transactions",
                "router on bench-edge",
            )
        )
        for count, w in t.get("workers", {}).items():
            rows.append(
                (
                    f"Loyalty workers x{count}",
                    f"{w['tps']} tx/s ({w['awarded']}/{w['backlog']} awarded)",
                    t["workers_command"],
                    ", ".join(w["instances"]),
                )
            )
        rows.append(
            (
                "202 -> award visible (p50 / p99)",
                f"{t['stamp_p50_ms']} / {t['stamp_p99_ms']} ms",
                t["stamp_command"],
                "2 worker hosts x 2 instances",
            )
        )
    for row in f.get("scale", []):
        rows.append(
            (
                f"First converge, {row['worker_hosts']} worker host(s)",
                f"{row['seconds']} s",
                row["command"],
                row.get("setup", ""),
            )
        )
    lines = [
        f"Run {f['started_at']} on {f['machine']['cpus']} CPUs; load average at start "
        f"{f['machine']['load_average_start']}, at end {f['machine'].get('load_average_end')} "
        "(the machine is shared with other test runs). Whole run: "
        f"{f.get('duration_seconds')} s.",
    ]
    release = f.get("debian_release")
    if release:
        version = DEBIAN_VERSIONS.get(release)
        lines.append(
            f"Hosts: Debian {version} ({release})" if version else f"Hosts: Debian {release}"
        )
        lines[-1] += f", image `{f['host_image']}` ({f['host_image_id'][:19]})."
    lines += [
        "",
        "| figure | value | command | host set-up |",
        "|---|---|---|---|",
    ]
    lines += [f"| {a} | {b} | `{c}` | {d} |" for a, b, c, d in rows]
    if f.get("errors"):
        lines += ["", "Errors: " + "; ".join(f["errors"])]
    if f.get("skipped"):
        lines += ["", "Skipped: " + "; ".join(f["skipped"])]
    return "\n".join(lines) + "\n"


def chart(f: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(16, 5.5))
    ax = axes[0]
    labels, values = [], []
    if f.get("floor"):
        labels.append("floor (apt+pip)")
        values.append(f["floor"]["seconds"])
    prov = f.get("provisioning", {})
    if "first_linear" in prov:
        labels.append("first (linear)")
        values.append(prov["first_linear"]["seconds"])
    if "first" in prov:
        labels.append("first")
        values.append(prov["first"]["seconds"])
    for name, second in prov.get("second", {}).items():
        labels.append("2nd: " + name)
        values.append(second["seconds"])
    ax.bar(range(len(values)), values, color=["grey"] + ["tab:blue"] * (len(values) - 1))
    ax.set_xticks(range(len(values)), labels, fontsize=7, rotation=40, ha="right")
    ax.axhline(20, color="red", linestyle=":", linewidth=1)
    ax.set_ylabel("seconds")
    ax.set_title("Provisioning, 5 hosts")
    ax = axes[1]
    scale = sorted(f.get("scale", []), key=lambda r: r["worker_hosts"])
    if scale:
        ax.plot([r["worker_hosts"] for r in scale], [r["seconds"] for r in scale], "o-")
        for r in scale:
            ax.annotate(f"{r['seconds']:.0f} s", (r["worker_hosts"], r["seconds"]), fontsize=8)
    ax.set_xlabel("worker hosts (+ edge, redis, api)")
    ax.set_ylabel("first converge, seconds")
    ax.set_title("Scale: provisioning time")
    ax = axes[2]
    t = f.get("throughput")
    if t:
        names = ["bare\nBottle", "POST\n/transactions", "new token\neach", "via\nrouter"]
        vals = [
            t["hello_rps"],
            t["transactions_rps"],
            t["transactions_fresh_token_rps"],
            t["router_transactions_rps"],
        ]
        for count, w in t.get("workers", {}).items():
            names.append(f"workers\nx{count}")
            vals.append(w["tps"])
        ax.bar(
            range(len(vals)),
            vals,
            color=["grey"] + ["tab:green"] * 3 + ["tab:orange"] * (len(vals) - 4),
        )
        ax.set_xticks(range(len(vals)), names, fontsize=7)
        ax.set_ylabel("per second")
        ax.set_title(
            f"Throughput (202->award p50 {t['stamp_p50_ms']} ms, p99 {t['stamp_p99_ms']} ms)",
            fontsize=9,
        )
    hosts = f" on {f['debian_release']} hosts" if f.get("debian_release") else ""
    fig.suptitle(
        f"bench/run {f['started_at']}{hosts}, "
        f"load average at start {f['machine']['load_average_start'][0]}"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


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
    parser.add_argument("--clients", type=int, default=8)
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
            start_hosts({n: h["address"] for n, h in hosts5.items()})
            inventory = write_inventory(work / "inventory-5", hosts5, secrets)
            prov["first_linear"] = converge(
                inventory, "first-5-linear", work, 900, "platform-5-linear", linear
            )
            remove_hosts()
        start_hosts({n: h["address"] for n, h in hosts5.items()})
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
                figures["throughput"] = throughput(
                    secrets, hosts5, args.seconds, args.clients, args.backlog, args.samples
                )
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
                start_hosts({n: h["address"] for n, h in hosts.items()})
                setup = f"{count + 3} fresh hosts"
            else:
                # The core (edge, redis, api) stays provisioned; every worker
                # host is new, and so are its facts.
                remove_workers()
                start_hosts({n: h["address"] for n, h in hosts.items() if "worker" in n})
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
