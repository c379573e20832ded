#!/usr/bin/env python3
"""Benchmark the services on this machine, loopback only, bounded in time.

Prints, in one run:

1. requests/s of a bare Bottle "hello" app and of the Transaction API's
   POST /transactions (JWT verify + XADD), both under the same gunicorn
   settings (gthread workers, same count), driven by the same bounded load, and
   their ratio (target >= 0.5);
2. if the loyalty-worker package is installed: the workers' transactions/s
   with 1 and 2 processes on a pre-filled stream, and p50/p99 of the time
   from a 202 to the stamp being visible in GET /loyalty.

Usage: .venv/bin/python bench/services.py [--seconds 10] [--workers 2]
       [--clients 8] [--backlog 20000] [--samples 200] [--json FILE]

The HTTP load comes from wrk (bench/http_load.py), with --clients open
connections: a client in C that takes a small share of a core, so that the
servers, not the client, set the figures. Both apps get the same requests,
so the ratio is fair.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

# bench/http_load.py and bench/probes.py, beside this file
import http_load
from probes import (
    http_status,
    make_token,
    new_tokens,
    percentile,
    queue_backlog,
    stamp_latency,
    wait_until,
)

BIN = Path(sys.executable).parent
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
HOST = "127.0.0.1"  # traffic never leaves the loopback interface


# ------------------------------------------------------------------ helpers


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


class Processes:
    """Everything the bench started, stopped in reverse order on exit."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen[bytes]] = []

    def start(self, argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
        with log.open("ab") as out:
            process = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
        self.started.append(process)
        return process

    def stop(self, process: subprocess.Popen[bytes]) -> None:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def stop_all(self) -> None:
        for process in reversed(self.started):
            self.stop(process)


# ---------------------------------------------------------------- hello app


def serve_hello(port: int, workers: int) -> None:
    """Run a bare Bottle app under exactly the APIs' gunicorn settings."""
    import bottle
    from loyalty_common.serve import HttpSettings, serve

    def factory() -> bottle.Bottle:
        app = bottle.Bottle()

        @app.post("/transactions")
        def hello() -> str:
            return "hello"

        return app

    serve(factory, HttpSettings(host=HOST, port=port, workers=workers, log_level=30), "hello")


# ------------------------------------------------------------------ workers


def worker_command() -> list[str] | None:
    script = BIN / "loyalty-worker"
    if script.exists():
        return [str(script)]
    try:
        import loyalty_worker  # noqa: F401
    except ImportError:
        return None
    return [sys.executable, "-m", "loyalty_worker"]


def worker_throughput(
    redis_client: Any, procs: Processes, command: list[str], env: dict[str, str],
    count: int, backlog: int, logs: Path,
) -> float:  # fmt: skip
    """Pre-fill the stream, start ``count`` workers, time until all are settled."""
    from loyalty_common import CONSUMER_GROUP, TRANSACTIONS_STREAM

    redis_client.flushdb()
    queue_backlog(redis_client, backlog)

    def settled() -> bool:
        try:
            groups = redis_client.xinfo_groups(TRANSACTIONS_STREAM)
        except Exception:  # noqa: BLE001 -- the group may not exist yet
            return False
        for group in groups:
            if group["name"] == CONSUMER_GROUP:
                return group["entries-read"] == backlog and group["pending"] == 0
        return False

    workers = []
    start = time.monotonic()
    for n in range(count):
        worker_env = {**env, "WORKER_CONSUMER_NAME": f"bench-{count}-{n}"}
        workers.append(procs.start(command, worker_env, logs / f"worker-{count}-{n}.log"))
    wait_until(settled, timeout=600, what=f"{count} worker(s) to settle the backlog")
    elapsed = time.monotonic() - start
    total = sum(
        int(redis_client.hget(f"loyalty:user:{1000 + u}", "transactions") or 0) for u in range(100)
    )
    for worker in workers:
        procs.stop(worker)
    if total != backlog:
        print(f"bench: warning: {total} of {backlog} transactions awarded", file=sys.stderr)
    return backlog / elapsed


# --------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="load duration per app")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes")
    parser.add_argument("--clients", type=int, default=8, help="wrk's open connections")
    parser.add_argument("--rounds", type=int, default=3, help="alternating turns per target")
    parser.add_argument("--backlog", type=int, default=20000, help="entries for worker throughput")
    parser.add_argument("--samples", type=int, default=200, help="latency samples")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--serve-hello", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_hello:
        serve_hello(args.serve_hello, args.workers)
        return 0
    if not 1 <= args.seconds <= 120:
        parser.error("--seconds must be between 1 and 120")

    import redis
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    procs = Processes()
    tmp = Path(tempfile.mkdtemp(prefix="loyalty-bench-"))
    figures: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "gunicorn_workers": args.workers,
        "clients": args.clients,
        "seconds": args.seconds,
    }
    try:
        key = Ed25519PrivateKey.generate()
        public = tmp / "jwt.pub"
        public.write_bytes(
            key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
        )
        token = make_token(key, 1)

        redis_port = free_port()
        procs.start(
            [REDIS_SERVER, "--port", str(redis_port), "--bind", HOST, "--save", "",
             "--appendonly", "yes", "--appendfsync", "everysec", "--dir", str(tmp),
             "--logfile", str(tmp / "redis.log")],
            dict(os.environ),
            tmp / "redis.out",
        )  # fmt: skip
        client = redis.Redis(port=redis_port, decode_responses=True)

        def redis_up() -> bool:
            try:
                return bool(client.ping())
            except redis.RedisError:
                return False

        wait_until(redis_up, 10, "redis-server")
        redis_url = f"redis://{HOST}:{redis_port}/0"
        base_env = {
            **os.environ,
            "HTTP_HOST": HOST,
            "WEB_CONCURRENCY": str(args.workers),
            "LOG_LEVEL": "WARNING",
            "REDIS_URL": redis_url,
        }

        # 1. both apps up at once (an idle worker costs nothing), so
        # that the load can alternate between them.
        hello_port = free_port()
        hello = procs.start(
            [sys.executable, __file__, "--serve-hello", str(hello_port),
             "--workers", str(args.workers)],
            base_env,
            tmp / "hello.log",
        )  # fmt: skip
        api_port = free_port()
        api_env = {**base_env, "HTTP_PORT": str(api_port), "JWT_PUBLIC_KEY_FILE": str(public)}
        api = procs.start([str(BIN / "transaction-api")], api_env, tmp / "transaction-api.log")
        wait_until(lambda: http_status(HOST, hello_port, "/") == 404, 20, "the hello app")
        wait_until(lambda: http_status(HOST, api_port, "/ready") == 200, 20, "the Transaction API")

        # 2. requests: the same token each time (a client reuses its token
        # for its 30 s), and, as the worst case, a new token for every
        # request so that each one pays for the Ed25519 check.
        api_url = f"http://{HOST}:{api_port}/transactions"
        targets = [
            http_load.Target("hello", f"http://{HOST}:{hello_port}/transactions", token),
            http_load.Target("reused", api_url, token),
            http_load.Target("fresh", api_url, fresh_tokens=partial(new_tokens, key)),
        ]
        http_load.drive(targets, args.seconds, args.rounds, args.clients)
        hello_t, reused_t, fresh_t = targets
        queued = client.xlen("loyalty:transactions")
        procs.stop(hello)

        figures.update(http_load.throughput_figures(*targets), transactions_queued=queued)
        ratio = figures["ratio"]
        fresh_ratio = figures["ratio_fresh_token"]
        print(
            f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end; "
            f"gunicorn workers: {args.workers}; wrk connections: {args.clients}; "
            f"{args.seconds:g} s per target in {args.rounds} alternating rounds"
        )
        print(f"bare Bottle hello                       : {hello_t.rps:8.0f} requests/s "
              f"({hello_t.failures} failed)")  # fmt: skip
        print(f"POST /transactions, token reused        : {reused_t.rps:8.0f} requests/s "
              f"({reused_t.failures} failed)  ratio {ratio:.2f} (target >= 0.50)")  # fmt: skip
        print(f"POST /transactions, new token each time : {fresh_t.rps:8.0f} requests/s "
              f"({fresh_t.failures} failed)  ratio {fresh_ratio:.2f}")  # fmt: skip
        print(f"entries on the stream after the load    : {queued:8d}")

        # 3. workers
        command = worker_command()
        if command is None:
            print("loyalty-worker is not installed: worker figures skipped")
        else:
            worker_env = {**base_env, "WORKER_BLOCK_MS": "100"}
            for count in (1, 2):
                rate = worker_throughput(
                    client, procs, command, worker_env, count, args.backlog, tmp
                )
                figures[f"worker_tps_{count}"] = round(rate, 1)
                print(
                    f"workers x{count}: {rate:8.0f} transactions/s "
                    f"({args.backlog} queued beforehand)"
                )
            client.flushdb()
            workers = [
                procs.start(
                    command,
                    {**worker_env, "WORKER_CONSUMER_NAME": f"lat-{n}"},
                    tmp / f"lat-{n}.log",
                )
                for n in range(2)
            ]
            latencies = stamp_latency(HOST, api_port, token, args.samples)
            p50 = percentile(latencies, 0.50) * 1000
            p99 = percentile(latencies, 0.99) * 1000
            figures.update(
                stamp_p50_ms=round(p50, 2),
                stamp_p99_ms=round(p99, 2),
                stamp_max_ms=round(max(latencies) * 1000, 2),
                samples=len(latencies),
            )
            mean = statistics.mean(latencies) * 1000
            print(
                f"202 -> stamp visible in GET /loyalty (2 workers, {len(latencies)} samples): "
                f"p50 {p50:.1f} ms, p99 {p99:.1f} ms, mean {mean:.1f} ms, "
                f"max {max(latencies) * 1000:.1f} ms"
            )
            for worker in workers:
                procs.stop(worker)
        procs.stop(api)
    finally:
        procs.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
