"""The bench's test hosts: systemd-booted containers named bench-* on the
Docker network "bench", the commands run on them, and the CPU they use."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "molecule" / "shared"))
from host_commands import SYSTEMD_HOST_OPTIONS  # noqa: E402  -- the flags that boot a test host

NETWORK = "bench"
SUBNET = "172.30.30.0/24"
LABEL = "org.loyalty.bench=1"
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


def start_hosts(hosts: dict[str, str], image: str) -> None:
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
                image,
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


LOAD_HOST = "bench-load"
LOAD_ADDRESS = "172.30.30.5"
# The load namespace's own TCP settings (net.* sysctls are per namespace;
# the machine's own are left as they are). A client that opens a
# connection per request (a new token, a closed keep-alive) leaves each
# closed one in TIME_WAIT for 60 s: with the kernel's default tcp_tw_reuse=2
# (reuse on loopback only) and 28 232 ports, a client could open only about
# 470 connections a second to one address and port once the first 28 000
# were used. tcp_tw_reuse=1 frees a port a second after it closed.
LOAD_SYSCTLS = {
    "net.ipv4.tcp_tw_reuse": "1",
    "net.ipv4.ip_local_port_range": "15000 64999",
}


def start_load_namespace(image: str) -> str:
    """A container on the bench network that only holds a network namespace
    for wrk (its /proc/PID/ns/net path is returned): wrk still runs here, on
    this machine's CPUs and files, entering only that namespace (nsenter)."""
    if run(["docker", "network", "inspect", NETWORK], 30, check=False).returncode != 0:
        run(["docker", "network", "create", "--subnet", SUBNET, "--label", LABEL, NETWORK], 60)
    run(["docker", "rm", "-f", LOAD_HOST], 60, check=False)
    sysctls = [arg for key, value in LOAD_SYSCTLS.items() for arg in ("--sysctl", f"{key}={value}")]
    run(
        ["docker", "run", "--detach", "--name", LOAD_HOST, "--label", LABEL,
         "--network", NETWORK, "--ip", LOAD_ADDRESS, *sysctls,
         "--entrypoint", "sleep", image, "infinity"],
        120,
    )  # fmt: skip
    pid = run(["docker", "inspect", "-f", "{{.State.Pid}}", LOAD_HOST], 30).stdout.strip()
    return f"/proc/{pid}/ns/net"


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
