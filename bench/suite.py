#!/usr/bin/env python3
"""Provisioning and throughput benchmark of the whole platform on local test hosts.

Run it through bench/run (which cleans up even when this is killed).  In one
run, on systemd-booted containers named bench-* on the Docker network
"bench" (172.30.30.0/24), each step bounded in time, in this order:

  floor         plain apt-get and pip on one fresh host (provisioning.py)
  accelerators  first converge with plain linear on other fresh hosts
  (always)      first converge of the five-host platform as configured
  second        second converge as configured (changed must be 0)
  accelerators  second converges with one setting changed at a time
  http          Transaction API beside a bare Bottle app, wrk (platform_http.py)
  router        Transaction API through the router, wrk (platform_http.py)
  workers       the workers with 1, 2 and 4 instances (platform_workers.py)
  award         202 -> award visible in GET /loyalty (platform_workers.py)
  scale         first converge with 1, 3 and 6 worker hosts added

--only and --skip name parts ("throughput" stands for http, router, workers
and award). The hosts run the Debian release of LOYALTY_DEBIAN_RELEASE
(trixie, Debian 13, the default, or bookworm, Debian 12), booted from
loyalty-host:<release> (scripts/host-image); the results name it.

Writes latest.json, latest.md and latest.png to --out (bench/results).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
# bench/ modules, put on the path above
import platform_http  # noqa: E402
import platform_workers  # noqa: E402
import provisioning  # noqa: E402
from hosts import STARTED, load_average, log, remove_hosts, run, start_load_namespace  # noqa: E402
from report import write_results  # noqa: E402

PARTS = ("floor", "accelerators", "second", "http", "router", "workers", "award", "scale")
GROUPS = {"throughput": ("http", "router", "workers", "award")}
PLATFORM_PARTS = set(PARTS) - {"floor"}
FLOOR_HOST = ("bench-floor", "172.30.30.50")
PLATFORM_WORKER_HOSTS = 2


@dataclass
class Bench:
    """One bench/run: its settings, hosts' release and image, and figures so far."""

    args: argparse.Namespace
    parts: set[str]
    release: str
    image: str
    work: Path
    figures: dict[str, Any]

    def over_budget(self, what: str, need: float) -> bool:
        """True, and the row noted as skipped, when it would end past --budget."""
        if time.monotonic() - STARTED + need > self.args.budget:
            self.figures["skipped"].append(f"{what} (time budget {self.args.budget:.0f} s)")
            log(f"skipping {what}: time budget")
            return True
        return False

    def save(self) -> None:
        write_results(self.figures, self.args.out)

    def measure(self, part: str, need: float, row: Callable[[], dict[str, Any]]) -> None:
        """One throughput row into figures["throughput"]; a failure is noted
        and the run goes on to the next row."""
        if part not in self.parts or self.over_budget(part, need):
            return
        try:
            self.figures.setdefault("throughput", {}).update(row())
        # A row's failure (SystemExit from a bounded wait included) must not
        # cost the rows after it.
        except (Exception, SystemExit) as error:  # noqa: BLE001
            self.figures.setdefault("errors", []).append(f"{part}: {error}")
            log(f"{part} failed: {error}")
        self.save()


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


def selected_parts(only: str, skip: str, parser: argparse.ArgumentParser) -> set[str]:
    def names(text: str) -> set[str]:
        chosen: set[str] = set()
        for name in filter(None, (x.strip() for x in text.split(","))):
            if name in GROUPS:
                chosen.update(GROUPS[name])
            elif name in PARTS:
                chosen.add(name)
            else:
                parser.error(f"unknown part {name!r}; parts: {', '.join(PARTS)}, throughput")
        return chosen

    return (names(only) if only else set(PARTS)) - names(skip)


def provisioning_rows(bench: Bench, hosts: dict[str, dict[str, Any]]) -> None:
    """First converges (plain linear, then as configured) and second converges;
    leaves the platform of `hosts` converged as configured."""
    prov: dict[str, Any] = {"second": {}}
    bench.figures["provisioning"] = prov
    work, image = bench.work, bench.image
    accelerators = "accelerators" in bench.parts
    # Plain linear (no Mitogen) first, on its own fresh hosts, so that the
    # configured first converge is measured beside it in this run.
    if accelerators and not bench.over_budget("first converge, plain linear", 300):
        prov["first_linear"], _ = provisioning.first_converge(
            hosts, image, work, "5-linear", provisioning.PLAIN_LINEAR
        )
        remove_hosts()
    prov["first"], inventory = provisioning.first_converge(hosts, image, work, "5")
    if bench.figures.get("floor"):
        prov["first_to_floor_ratio"] = round(
            prov["first"]["seconds"] / bench.figures["floor"]["seconds"], 2
        )
    docker_api_inventory = None
    if accelerators:
        docker_api_inventory = provisioning.write_inventory(
            work / "inventory-5-api", hosts, work / "secrets", "community.docker.docker_api"
        )
    variants = provisioning.second_converge_variants(inventory, docker_api_inventory)
    for name, (inv, env) in variants.items():
        # Without the accelerators' rows, every row is the configured one.
        if "second" not in bench.parts and (name == "configured" or not accelerators):
            continue
        if name != "configured" and bench.over_budget(f"second converge {name}", 150):
            continue
        prov["second"][name] = provisioning.second_converge(name, inv, env, work)
    bench.save()


def throughput_rows(bench: Bench, hosts: dict[str, dict[str, Any]]) -> None:
    """The HTTP rows (workers paused), then the workers' rows, each on its own."""
    args, secrets = bench.args, bench.work / "secrets"
    api, edge, redis = (hosts[n]["address"] for n in ("bench-api", "bench-edge", "bench-redis"))
    workers = sorted(n for n in hosts if n.startswith("bench-worker-"))
    every_host = list(hosts)
    netns = None
    if {"http", "router"} & bench.parts:
        platform_http.pause_workers(workers)
        netns = start_load_namespace(bench.image)
    bench.measure(
        "http",
        60 + 4 * args.seconds,
        lambda: platform_http.api_against_bare_app(
            "bench-api", api, secrets, args.seconds, args.clients, every_host, netns
        ),
    )
    bench.measure(
        "router",
        30 + args.seconds,
        lambda: platform_http.through_router(edge, secrets, args.seconds, args.clients, netns),
    )
    bench.measure(
        "workers",
        120,
        lambda: platform_workers.worker_rates(redis, secrets, workers, args.backlog, every_host),
    )
    if "award" in bench.parts:
        # The deployed workers again, in case the workers' rows did not run.
        platform_workers.restore_workers(workers)
    bench.measure("award", 60, lambda: platform_workers.award_latency(api, secrets, args.samples))


def scale_rows(bench: Bench) -> None:
    """First converges with more worker hosts, as configured."""
    args = bench.args
    bench.figures["scale"] = []
    bench.figures["scale_mode"] = args.scale_mode
    if args.scale_mode == "fresh":
        remove_hosts()
    for count in (int(x) for x in args.scale.split(",") if x.strip()):
        need = 60 + 40 * (count + 3) if args.scale_mode == "fresh" else 60 + 30 * count
        if bench.over_budget(f"scale row with {count} worker hosts", need):
            continue
        row = provisioning.scale_row(count, args.scale_mode, bench.image, bench.work)
        bench.figures["scale"].append(row)
        bench.save()


def parse_args() -> tuple[argparse.Namespace, set[str]]:
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
    parser.add_argument("--only", default="", help=f"comma-separated parts: {', '.join(PARTS)}")
    parser.add_argument("--skip", default="", help="comma-separated parts left out")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = parser.parse_args()
    if (
        not 1 <= args.seconds <= 60
        or not 1 <= args.clients <= 256
        or not 100 <= args.backlog <= 50000
        or not 10 <= args.samples <= 2000
    ):
        parser.error("--seconds 1..60, --clients 1..256, --backlog 100..50000, --samples 10..2000")
    parts = selected_parts(args.only, args.skip, parser)
    if not args.scale.strip():
        parts.discard("scale")
    return args, parts


def main() -> int:
    args, parts = parse_args()
    release, image = release_and_image()
    image_id = run(["docker", "image", "inspect", "-f", "{{.Id}}", image], 60, check=False)
    if image_id.returncode:
        raise SystemExit(f"bench: image {image} is missing; run scripts/host-image {release}.")
    work = Path(tempfile.mkdtemp(prefix="loyalty-bench-"))
    figures: dict[str, Any] = {
        "started_at": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": {"cpus": os.cpu_count(), "load_average_start": load_average()},
        "debian_release": release,
        "host_image": image,
        "host_image_id": image_id.stdout.strip(),
        "settings": vars(args) | {"out": str(args.out), "parts": sorted(parts)},
        "skipped": [],
        "logs": str(work),
    }
    bench = Bench(args, parts, release, image, work, figures)
    try:
        remove_hosts()
        if "floor" in parts:
            figures["floor"] = provisioning.floor(*FLOOR_HOST, release, image)
        if parts & PLATFORM_PARTS:
            hosts = provisioning.platform_hosts(PLATFORM_WORKER_HOSTS)
            provisioning_rows(bench, hosts)
            throughput_rows(bench, hosts)
            if "scale" in parts:
                scale_rows(bench)
    finally:
        figures["machine"]["load_average_end"] = load_average()
        figures["duration_seconds"] = round(time.monotonic() - STARTED, 1)
        bench.save()
        remove_hosts()
    log(f"wrote {args.out}/latest.json, latest.md, latest.png; logs in {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
