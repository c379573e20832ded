"""The worker's metrics port: real worker processes, real redis-server, real HTTP(S)."""

from __future__ import annotations

import http.client
import socket
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families
from worker_helpers import (
    DEAD,
    GROUP,
    STREAM,
    WORKER,
    WorkerProcess,
    queue,
    settled,
    wait_until,
    worker_env,
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def parse(text: str) -> dict[str, float]:
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}"] = sample.value
    return samples


def scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        return parse(reply.read().decode())


def test_counts_match_what_the_worker_wrote(
    r: redis.Redis, start_worker: Callable[..., WorkerProcess]
) -> None:
    base = free_port() - 1  # instance 2 listens on base + 1
    for i in range(25):
        queue(r, f"tx-{i}", user_id=7, amount=2000)
    r.xadd(STREAM, {"transaction_id": "broken", "amount": "lots"})  # dead-lettered
    start_worker(
        WORKER_METRICS_PORT=str(base),
        WORKER_METRICS_INSTANCE="2",
        WORKER_METRICS_HOST="127.0.0.1",
        WORKER_CLAIM_IDLE_MS="1000",  # a maintenance pass (stream gauges) every 0.5 s
    )
    wait_until(lambda: settled(r), timeout=15)
    state = r.hgetall("loyalty:user:7")
    assert int(state["transactions"]) == 25 and int(state["vouchers"]) == 2
    port = base + 1

    def observed() -> bool:
        samples = scrape(port)
        return samples.get("loyalty_worker_dead_letter_stream_length{}") == 1

    wait_until(observed, timeout=10)
    samples = scrape(port)
    assert samples["loyalty_worker_awards_total{result=awarded}"] == 25
    assert samples["loyalty_worker_awards_total{result=duplicate}"] == 0
    assert samples["loyalty_worker_vouchers_earned_total{}"] == 2
    assert samples["loyalty_worker_dead_letters_total{reason=unparseable}"] == 1
    assert samples["loyalty_worker_dead_letters_total{reason=max_deliveries}"] == 0
    assert samples["loyalty_worker_stream_lag{}"] == 0
    assert samples["loyalty_worker_stream_pending{}"] == 0
    assert samples["loyalty_worker_oldest_unawarded_age_seconds{}"] == 0
    assert samples["loyalty_worker_redis_connected{}"] == 1
    assert samples["loyalty_worker_batch_duration_seconds_count{}"] >= 1
    assert r.xlen(DEAD) == 1


def test_backlog_and_age_of_the_oldest_unsettled_entry(
    r: redis.Redis, start_worker: Callable[..., WorkerProcess]
) -> None:
    # Three transactions queued two minutes ago and delivered to a consumer
    # that died without settling them (and that nobody reclaims for a minute),
    # then five never delivered: the worker is started with no throughput.
    old_ms = int(time.time() * 1000) - 120_000
    for i in range(3):
        r.xadd(STREAM, {"transaction_id": f"old-{i}", "user_id": "1"}, id=f"{old_ms}-{i}")
    r.xgroup_create(STREAM, GROUP, id="0")
    r.xreadgroup(GROUP, "ghost", {STREAM: ">"}, count=3)
    port = free_port()
    worker = start_worker(
        WORKER_METRICS_PORT=str(port),
        WORKER_METRICS_HOST="127.0.0.1",
        WORKER_CLAIM_IDLE_MS="60000",
    )
    samples = {}

    def seen() -> bool:
        nonlocal samples
        samples = scrape(port)
        return samples.get("loyalty_worker_stream_observed_timestamp_seconds{}", 0) > 0

    wait_until(seen, timeout=10)
    assert samples["loyalty_worker_stream_pending{}"] == 3
    assert 115 < samples["loyalty_worker_oldest_unawarded_age_seconds{}"] < 200
    assert worker.process.poll() is None


def test_https_with_a_client_certificate(
    start_worker: Callable[..., WorkerProcess], pki: Any
) -> None:
    port = free_port()
    start_worker(
        WORKER_METRICS_PORT=str(port),
        WORKER_METRICS_HOST="127.0.0.1",
        TLS_CERT_FILE=str(pki.server_cert),
        TLS_KEY_FILE=str(pki.server_key),
        TLS_CLIENT_CA_FILE=str(pki.ca),
    )

    def get(with_certificate: bool) -> int:
        context = ssl.create_default_context(cafile=str(pki.ca))
        if with_certificate:
            context.load_cert_chain(str(pki.client_cert), str(pki.client_key))
        connection = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=5)
        try:
            connection.request("GET", "/metrics")
            reply = connection.getresponse()
            assert "loyalty_worker_awards_total" in reply.read().decode()
            return reply.status
        finally:
            connection.close()

    assert get(True) == 200
    context = ssl.create_default_context(cafile=str(pki.ca))
    context.load_cert_chain(str(pki.client_cert), str(pki.client_key))
    with urllib.request.urlopen(f"https://127.0.0.1:{port}/metrics", context=context) as reply:
        samples = parse(reply.read().decode())
    expiry = samples["loyalty_tls_certificate_expiry_timestamp_seconds{service=loyalty-worker}"]
    assert 0 < expiry - time.time() <= 86400 + 60  # the test certificate lives one day
    with pytest.raises((ssl.SSLError, OSError)):
        get(False)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("WORKER_METRICS_PORT", "http"),
        ("WORKER_METRICS_INSTANCE", "a"),
        ("WORKER_METRICS_HOST", "a b"),
        ("TLS_CLIENT_CA_FILE", "/nonexistent/ca.pem"),
    ],
)
def test_bad_metrics_variable_stops_with_one_line(variable: str, value: str) -> None:
    env = worker_env("redis://127.0.0.1:1/0", **{"WORKER_METRICS_PORT": "9481", variable: value})
    result = subprocess.run([WORKER], env=env, capture_output=True, text=True, timeout=20)
    assert result.returncode == 2, result
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"loyalty-worker: {variable}: "), lines


def test_a_port_in_use_is_one_line(start_worker: Any) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = worker_env(
            "redis://127.0.0.1:1/0", WORKER_METRICS_PORT=str(port), WORKER_METRICS_HOST="127.0.0.1"
        )
        result = subprocess.run([WORKER], env=env, capture_output=True, text=True, timeout=20)
    assert result.returncode == 2, result
    assert result.stderr.startswith("loyalty-worker: WORKER_METRICS_PORT: cannot listen on")
