"""/metrics of the Transaction API: real gunicorn (two workers), real redis-server."""

from __future__ import annotations

import os
import signal
import uuid
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families


def scrape(kit: Any, port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    reply = kit.call(port, "GET", "/metrics")
    assert reply.status == 200, reply.body
    assert reply.content_type.startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(reply.body.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def post(kit: Any, port: int, keys: Any, key: str | None = None) -> Any:
    headers = dict(kit.bearer(keys))
    if key is not None:
        headers["Idempotency-Key"] = key
    return kit.call(port, "POST", "/transactions", {"amount": 500, "currency": "EUR"}, headers)


def test_counts_agree_with_the_answers_across_workers(
    kit: Any, spawn: Any, jwt_keys: Any, shared_redis: Any, tmp_path: Path
) -> None:
    directory = tmp_path / "prometheus"
    directory.mkdir()
    stale = directory / "counter_99999.db"
    stale.write_bytes(b"left by an earlier run")
    api = spawn(
        "transaction-api",
        kit.transaction_env(
            jwt_keys, shared_redis.url, WEB_CONCURRENCY=2, PROMETHEUS_MULTIPROC_DIR=directory
        ),
    )
    assert not stale.exists(), "samples of an earlier run must be removed at start"
    # /health answered from one worker; the other may still be booting.
    kit.wait_until(lambda: len(_children(api.process.pid)) == 2, timeout=20)
    statuses = [post(kit, api.port, jwt_keys).status for _ in range(8)]
    key = str(uuid.uuid4())
    first, again = post(kit, api.port, jwt_keys, key), post(kit, api.port, jwt_keys, key)
    assert again.headers.get("Idempotent-Replayed") == "true"
    refused = kit.call(api.port, "POST", "/transactions", {"amount": 1, "currency": "EUR"})
    unknown = kit.call(api.port, "GET", f"/no-such-path/{uuid.uuid4()}")
    assert statuses == [202] * 8 and first.status == 202 and again.status == 202
    assert refused.status == 401 and unknown.status == 404

    # Each scrape is answered by whichever worker accepts it: all agree.
    for _ in range(4):
        samples = scrape(kit, api.port)
        assert value(samples, "loyalty_transactions_queued_total") == 9
        assert value(samples, "loyalty_idempotent_replays_total") == 1
        requests = "loyalty_http_requests_total"
        labels = {"service": "transaction-api", "route": "/transactions", "method": "POST"}
        assert value(samples, requests, **labels, status="202") == 10
        assert value(samples, requests, **labels, status="401") == 1
        assert (
            value(
                samples,
                requests,
                service="transaction-api",
                route="unmatched",
                method="GET",
                status="404",
            )
            == 1
        )
        histogram = "loyalty_http_request_duration_seconds"
        route = {"service": "transaction-api", "route": "/transactions"}
        assert value(samples, f"{histogram}_count", **route) == 11
        assert value(samples, f"{histogram}_bucket", **route, le="+Inf") == 11
        assert 0 < value(samples, f"{histogram}_sum", **route) < 11 * 5
        # No series per unknown path.
        assert not any("no-such-path" in str(labels) for _, labels in samples)

    # A worker killed outright: gunicorn starts another; the counts survive.
    workers = _children(api.process.pid)
    assert len(workers) == 2, workers
    os.kill(workers[0], signal.SIGKILL)
    kit.wait_until(
        lambda: (
            len(
                [
                    p
                    for p in Path("/proc").iterdir()
                    if p.name.isdigit()
                    and _parent(int(p.name)) == api.process.pid
                    and int(p.name) not in workers
                ]
            )
            == 1
        ),
        timeout=20,
    )
    assert post(kit, api.port, jwt_keys).status == 202
    for _ in range(4):
        assert value(scrape(kit, api.port), "loyalty_transactions_queued_total") == 10


def _children(pid: int) -> list[int]:
    return [
        int(p.name)
        for p in Path("/proc").iterdir()
        if p.name.isdigit() and _parent(int(p.name)) == pid
    ]


def _parent(pid: int) -> int:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return -1
    return int(stat.rsplit(")", 1)[1].split()[1])


def test_503_is_counted_by_cause(kit: Any, spawn: Any, jwt_keys: Any) -> None:
    closed = f"redis://127.0.0.1:{kit.free_port()}/0"
    api = spawn("transaction-api", kit.transaction_env(jwt_keys, closed, REDIS_SOCKET_TIMEOUT=1))
    assert post(kit, api.port, jwt_keys).status == 503
    assert kit.call(api.port, "GET", "/ready").status == 503
    samples = scrape(kit, api.port)
    unavailable = "loyalty_http_unavailable_total"
    svc = "transaction-api"
    assert value(samples, unavailable, service=svc, route="/transactions", cause="redis") == 1
    assert value(samples, unavailable, service=svc, route="/ready", cause="redis") == 1
    assert value(samples, "loyalty_transactions_queued_total") == 0


def test_metrics_off_serves_no_metrics(
    kit: Any, spawn: Any, jwt_keys: Any, shared_redis: Any
) -> None:
    api = spawn(
        "transaction-api", kit.transaction_env(jwt_keys, shared_redis.url, METRICS_ENABLED="false")
    )
    assert post(kit, api.port, jwt_keys).status == 202
    reply = kit.call(api.port, "GET", "/metrics")
    assert reply.status == 404
    assert reply.json == {"error": "Not found"}


def test_metrics_answers_get_only(kit: Any, transaction_api: Any) -> None:
    reply = kit.call(transaction_api.port, "POST", "/metrics", b"")
    assert reply.status == 405
    assert reply.json == {"error": "Method not allowed"}


def test_bad_metrics_variables_are_refused_at_start_up(
    kit: Any, jwt_keys: Any, shared_redis: Any, tmp_path: Path
) -> None:
    cases = {
        "METRICS_ENABLED": {"METRICS_ENABLED": "maybe"},
        "PROMETHEUS_MULTIPROC_DIR": {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "missing")},
    }
    for variable, extra in cases.items():
        env = kit.transaction_env(jwt_keys, shared_redis.url, HTTP_PORT=kit.free_port(), **extra)
        result = kit.run_console("transaction-api", env)
        kit.assert_refused_at_start_up(result, "transaction-api", variable)
