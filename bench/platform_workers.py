"""The Loyalty Workers on a converged bench platform: not HTTP load.

- worker_rates: transactions/s of 1, 2 and 4 loyalty-worker@N units
  draining a stream filled from this machine;
- award_latency: p50/p99 from a 202 to the award visible in GET /loyalty,
  one request at a time, with the deployed workers.

The targets are only the addresses the caller passes; every wait is bounded.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from hosts import CpuMeter, dexec, load_average, log
from platform_http import SERVICE_PORT, client_tls, signing_key
from probes import make_token, percentile, queue_backlog, stamp_latency, wait_until

STREAM = "loyalty:transactions"
GROUP = "loyalty-workers"
USERS = range(1000, 1100)  # the 100 users queue_backlog spreads its entries over


def worker_layouts(worker_hosts: list[str]) -> dict[int, list[tuple[str, int]]]:
    """(host, instance) of each unit for 1, 2 and 4 workers, spread over the hosts."""
    first, last = worker_hosts[0], worker_hosts[-1]
    if first == last:
        return {n: [(first, i) for i in range(1, n + 1)] for n in (1, 2, 4)}
    return {
        1: [(first, 1)],
        2: [(first, 1), (last, 1)],
        4: [(first, 1), (first, 2), (last, 1), (last, 2)],
    }


def redis_admin(redis_address: str, secrets: Path) -> Any:
    import redis

    password = (secrets / "redis" / "admin.password").read_text().split("\n")[0]
    # TLS only, with a client certificate of the platform's CA (as every client).
    certificate = sorted((secrets / "tls" / "hosts").glob("*.crt"))[0]
    return redis.Redis(
        host=redis_address,
        password=password,
        decode_responses=True,
        ssl=True,
        ssl_ca_certs=str(secrets / "tls" / "ca.crt"),
        ssl_certfile=str(certificate),
        ssl_keyfile=str(certificate.with_suffix(".key")),
    )


def drain_rate(
    rc: Any, layout: list[tuple[str, int]], worker_hosts: list[str], backlog: int,
    metered_hosts: list[str],
) -> dict[str, Any]:  # fmt: skip
    """One row: a fresh stream and group, the layout's units started, then
    `backlog` entries queued; rate = entries / time until all are acknowledged."""
    for worker in worker_hosts:
        dexec(worker, "systemctl stop 'loyalty-worker@*'", check=False)
    rc.delete(STREAM, *(f"loyalty:user:{u}" for u in USERS))
    rc.xgroup_create(STREAM, GROUP, id="$", mkstream=True)
    for worker, instance in layout:
        dexec(worker, f"systemctl start loyalty-worker@{instance}")
    wait_until(
        lambda: len(rc.xinfo_consumers(STREAM, GROUP)) >= len(layout),
        30,
        f"{len(layout)} consumer(s) to join the group",
    )
    time.sleep(1.0)

    def settled() -> bool:
        for group in rc.xinfo_groups(STREAM):
            if group["name"] == GROUP:
                return group["entries-read"] >= backlog and group["pending"] == 0
        return False

    with CpuMeter(metered_hosts) as cpu:
        start = time.monotonic()
        queue_backlog(rc, backlog, batch=500)
        filled = time.monotonic() - start
        wait_until(settled, 300, f"{len(layout)} worker(s) to settle {backlog} entries")
        elapsed = time.monotonic() - start
    awarded = sum(int(rc.hget(f"loyalty:user:{u}", "transactions") or 0) for u in USERS)
    return {
        "tps": round(backlog / elapsed, 1),
        "backlog": backlog,
        "awarded": awarded,
        "fill_seconds": round(filled, 2),
        "instances": [f"{w}:loyalty-worker@{i}" for w, i in layout],
        "cpu": cpu.summary(),
        "load_average": load_average(),
    }


def worker_rates(
    redis_address: str, secrets: Path, worker_hosts: list[str], backlog: int,
    metered_hosts: list[str],
) -> dict[str, Any]:  # fmt: skip
    """Transactions/s with 1, 2 and 4 workers; the deployed units again afterwards."""
    rc = redis_admin(redis_address, secrets)
    rows: dict[str, Any] = {}
    try:
        for count, layout in worker_layouts(worker_hosts).items():
            rows[str(count)] = row = drain_rate(rc, layout, worker_hosts, backlog, metered_hosts)
            log(
                f"workers x{count}: {row['tps']:.0f} transactions/s "
                f"({row['awarded']}/{backlog} awarded), cpu {row['cpu']}"
            )
    finally:
        restore_workers(worker_hosts)
    return {
        "workers": rows,
        "workers_command": f"{backlog} entries XADDed from this machine to "
        f"{redis_address}:6379 (TLS) while systemctl-started loyalty-worker@N units drain them; "
        "rate = entries / time to all acknowledged",
    }


def restore_workers(worker_hosts: list[str]) -> None:
    """The deployed layout: loyalty-worker@1 and @2 on every worker host."""
    for worker in worker_hosts:
        dexec(worker, "systemctl stop 'loyalty-worker@*'", check=False)
        dexec(worker, "systemctl start loyalty-worker@1 loyalty-worker@2", check=False)


def award_latency(api_address: str, secrets: Path, samples: int) -> dict[str, Any]:
    """p50/p99 from each 202 to GET /loyalty showing it, with the deployed workers."""
    token = make_token(signing_key(secrets), 1)
    time.sleep(1.0)
    latencies = stamp_latency(api_address, SERVICE_PORT, token, samples, client_tls(secrets))
    figures = {
        "stamp_p50_ms": round(percentile(latencies, 0.5) * 1000, 2),
        "stamp_p99_ms": round(percentile(latencies, 0.99) * 1000, 2),
        "stamp_max_ms": round(max(latencies) * 1000, 2),
        "stamp_samples": len(latencies),
        "stamp_command": f"probes.stamp_latency() to https://{api_address}:{SERVICE_PORT}: "
        f"{samples} times "
        "POST /transactions, then GET /loyalty until the award shows; deployed workers",
    }
    log(f"202 -> award: p50 {figures['stamp_p50_ms']} ms, p99 {figures['stamp_p99_ms']} ms")
    return figures
