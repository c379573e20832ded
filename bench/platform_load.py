"""Load on a converged bench platform, one measurement per function:

- http_rows: requests/s of POST /transactions on the Transaction API host,
  beside a bare Bottle app on the same host under the same gunicorn
  settings, with a reused token and with a new token per request, and
  through the router (HTTP load from wrk, bench/http_load.py);
- worker_rows: the workers' transactions/s with 1, 2 and 4 instances on a
  stream filled from this machine;
- award_latency: p50/p99 from a 202 to the award visible in GET /loyalty.

Traffic goes only to the bench's own hosts, each row bounded in time.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import http_load
from hosts import REPO, CpuMeter, dexec, load_average, log, run

import services

HELLO_PORT = 5099
HELLO_FILE = "/usr/local/lib/bench_hello_app.py"
API_PORT = 5000


def signing_key(secrets: Path) -> Any:
    """The Auth API's private key, to mint tokens as the Auth API does."""
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    return load_pem_private_key((secrets / "jwt" / "ed25519.key").read_bytes(), password=None)


def http_rows(
    secrets: Path, hosts: dict[str, dict[str, Any]], seconds: float, clients: int
) -> dict[str, Any]:
    key = signing_key(secrets)
    token = services.make_token(key, 1)
    workers = sorted(h for h in hosts if h.startswith("bench-worker-"))
    out: dict[str, Any] = {"clients": clients, "seconds_per_target": seconds}
    api = hosts["bench-api"]["address"]
    edge = hosts["bench-edge"]["address"]

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
    services.wait_until(
        lambda: services.http_status(HELLO_PORT, "/health", api) == 200, 30, "the bare app"
    )
    services.wait_until(
        lambda: services.http_status(API_PORT, "/ready", api) == 200, 30, "the Transaction API"
    )

    def new_tokens(count: int) -> list[str]:
        return [services.make_token(key, 1 + i % 1000) for i in range(count)]

    targets = [
        http_load.Target("hello", f"http://{api}:{HELLO_PORT}/transactions", token),
        http_load.Target("reused", f"http://{api}:{API_PORT}/transactions", token),
        http_load.Target("fresh", f"http://{api}:{API_PORT}/transactions", fresh_tokens=new_tokens),
    ]
    # The workers pause while the HTTP rows run: on a machine this small they
    # share its cores with the API host and would award, during the API's
    # rows only, what the API accepts, taking CPU from it that the bare app
    # never loses. The stream holds the entries; the worker rows below
    # measure the workers on their own.
    for worker in workers:
        dexec(worker, "systemctl stop 'loyalty-worker@*'", check=False)
    log(f"load: wrk, {clients} connections, {seconds:g} s per target in 3 rounds, to {api}")
    with CpuMeter(list(hosts)) as cpu:
        http_load.drive(targets, seconds, 3, clients)
    hello_t, reused_t, fresh_t = targets
    dexec("bench-api", "systemctl stop bench-hello", check=False)
    out.update(
        http_load.throughput_figures(*targets),
        http_cpu=cpu.summary(),
        load_average_after_http=load_average(),
        http_command=f"bench/run: wrk (bench/http_load.py) from this machine to "
        f"{api}:{API_PORT} (POST /transactions) "
        f"and {api}:{HELLO_PORT} (bare Bottle POST /transactions), {clients} connections, "
        f"{seconds:g} s each in 3 alternating rounds",
    )
    log(
        f"hello {hello_t.rps:.0f}/s, transactions {reused_t.rps:.0f}/s "
        f"(fresh token {fresh_t.rps:.0f}/s), "
        f"ratio {out['ratio']}"
    )

    # Through the router too (prefix /transactions cut by HAProxy).
    router_t = http_load.Target("router", f"http://{edge}/transactions/transactions", token)
    http_load.drive([router_t], seconds / 2, 1, clients)
    out.update(router_transactions_rps=round(router_t.rps, 1), router_failures=router_t.failures)
    log(f"through the router: {router_t.rps:.0f}/s ({router_t.failures} failed)")

    return out


def worker_rows(secrets: Path, hosts: dict[str, dict[str, Any]], backlog: int) -> dict[str, Any]:
    import redis

    workers = sorted(h for h in hosts if h.startswith("bench-worker-"))
    out: dict[str, Any] = {}
    # 1, 2, 4 instances on a stream filled from this machine.
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

    return out


def award_latency(secrets: Path, hosts: dict[str, dict[str, Any]], samples: int) -> dict[str, Any]:
    """With the deployed workers (2 hosts x 2 instances)."""
    api = hosts["bench-api"]["address"]
    token = services.make_token(signing_key(secrets), 1)
    out: dict[str, Any] = {}
    time.sleep(1.0)
    latencies = services.stamp_latency(API_PORT, token, samples, api)
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
