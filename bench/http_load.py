"""HTTP load from wrk (Debian's package, installed by scripts/bootstrap).

wrk is written in C around epoll: one thread keeps every connection busy
with a small share of a core, so the server under test, not the client,
sets the figure. Each run is bounded by its duration; the targets are only
the addresses the caller names (loopback or the bench's own test hosts).
"""

from __future__ import annotations

import json
import math
import os
import resource
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from probes import FORM_BODY

POST_SCRIPT = Path(__file__).with_name("post.lua")
# New tokens made per second of a turn: above the fastest new-token row
# measured, so that no token is sent twice (the Transaction API keeps
# verified tokens in a cache, and a repeat would skip the signature check).
NEW_TOKENS_PER_SECOND = 6000


@dataclass
class Target:
    """One URL to load with POST requests, and what it answered in all runs."""

    name: str
    url: str
    token: str | None = None
    # Makes n new tokens before every run: a new token for each request.
    fresh_tokens: Callable[[int], list[str]] | None = None
    requests: int = 0
    failures: int = 0
    seconds: float = 0.0
    latencies_us: list[tuple[int, int]] = field(default_factory=list)
    # Requests that went out with a token already sent in the same turn.
    tokens_repeated: int = 0
    # CPU seconds wrk itself used: the load tool's share of the machine.
    client_cpu_seconds: float = 0.0

    @property
    def rps(self) -> float:
        """Requests per second answered with a 2xx."""
        return (self.requests - self.failures) / self.seconds if self.seconds else 0.0


def wrk_binary() -> str:
    found = shutil.which("wrk")
    if not found:
        raise SystemExit("bench: wrk is missing; run scripts/bootstrap (it installs Debian's wrk).")
    return found


def run_wrk(
    url: str,
    seconds: int,
    connections: int,
    token: str | None = None,
    tokens: list[str] | None = None,
    netns: str | None = None,
) -> dict[str, Any]:
    """One wrk run of POST requests to url; its counters as a dict.

    netns: a network namespace (/proc/PID/ns/net) for wrk to enter first,
    with TCP settings of its own (hosts.start_load_namespace).

    failures in the result count every request that got no 2xx answer:
    connection errors, timeouts and non-2xx statuses alike.
    """
    env = dict(os.environ, WRK_BODY=FORM_BODY)
    env.pop("WRK_TOKEN", None)
    env.pop("WRK_TOKENS", None)
    with tempfile.NamedTemporaryFile("w", suffix=".tokens") as token_file:
        if tokens:
            token_file.write("\n".join(tokens) + "\n")
            token_file.flush()
            env["WRK_TOKENS"] = token_file.name
        elif token:
            env["WRK_TOKEN"] = token
        enter = ["nsenter", f"--net={netns}"] if netns else []
        command = [
            *enter,
            wrk_binary(),
            "--threads", "1",
            "--connections", str(connections),
            "--duration", f"{seconds}s",
            "--timeout", "10s",
            "--script", str(POST_SCRIPT),
            url,
        ]  # fmt: skip
        cpu_before = children_cpu_seconds()
        try:
            done = subprocess.run(
                command, env=env, capture_output=True, text=True, timeout=seconds + 60, check=False
            )
        except subprocess.TimeoutExpired:
            # wrk outlives its duration when no connection can be made.
            message = f"bench: wrk got no answer from {url} (is the port reachable?)"
            raise SystemExit(message) from None
    line = next((x for x in done.stdout.splitlines() if x.startswith("WRK_JSON ")), None)
    if done.returncode != 0 or line is None:
        raise SystemExit(f"bench: wrk failed on {url}: {done.stderr.strip() or done.stdout[-500:]}")
    counters = json.loads(line.removeprefix("WRK_JSON "))
    counters["client_cpu_seconds"] = children_cpu_seconds() - cpu_before
    counters["failures"] = sum(
        counters[k] for k in ("connect", "read", "write", "status", "timeout")
    )
    return counters


def children_cpu_seconds() -> float:
    """User and system CPU of this process's finished children (wrk runs)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def drive(
    targets: list[Target],
    seconds: float,
    rounds: int,
    connections: int,
    netns: str | None = None,
) -> None:
    """Load each target for about `seconds` in all, in `rounds` alternating turns.

    Short alternating turns rather than one long run each spread any change
    in the machine's background load (it is shared) over every target. A
    one-second turn first lets every gunicorn worker import and connect.
    """
    turn = max(1, math.ceil(seconds / rounds))
    for target in targets:
        run_wrk(target.url, 1, connections, target.token, tokens_for(target, connections), netns)
    for _ in range(rounds):
        for target in targets:
            tokens = tokens_for(target, turn * NEW_TOKENS_PER_SECOND)
            counters = run_wrk(target.url, turn, connections, target.token, tokens, netns)
            if tokens:
                target.tokens_repeated += max(0, counters["requests"] - len(tokens))
            target.client_cpu_seconds += counters["client_cpu_seconds"]
            target.requests += counters["requests"]
            target.failures += counters["failures"]
            target.seconds += counters["duration_us"] / 1e6
            target.latencies_us.append((counters["p50_us"], counters["p99_us"]))


def tokens_for(target: Target, count: int) -> list[str] | None:
    """A new token for each of `count` requests when the target wants them."""
    if target.fresh_tokens is None:
        return None
    return target.fresh_tokens(count)


def throughput_figures(hello: Target, reused: Target, fresh: Target) -> dict[str, float | int]:
    """Requests/s of the three targets and the API's ratios to the bare app."""
    return {
        "client_cores": client_cores([hello, reused, fresh]),
        "hello_rps": round(hello.rps, 1),
        "hello_failures": hello.failures,
        "transactions_rps": round(reused.rps, 1),
        "transactions_failures": reused.failures,
        "transactions_fresh_token_rps": round(fresh.rps, 1),
        "transactions_fresh_token_failures": fresh.failures,
        "transactions_fresh_token_repeated": fresh.tokens_repeated,
        "ratio": round(reused.rps / hello.rps, 3) if hello.rps else 0.0,
        "ratio_fresh_token": round(fresh.rps / hello.rps, 3) if hello.rps else 0.0,
    }


def client_cores(targets: list[Target]) -> float:
    """Cores wrk kept busy on average while it ran: the load tool's share of the machine."""
    seconds = sum(t.seconds for t in targets)
    return round(sum(t.client_cpu_seconds for t in targets) / seconds, 2) if seconds else 0.0
