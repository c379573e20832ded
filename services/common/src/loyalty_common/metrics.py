"""Prometheus metrics of the HTTP APIs: a WSGI wrapper and ``/metrics``.

The APIs run several gunicorn worker processes, so the Prometheus client
library runs in its multiprocess mode: each process writes its samples to
files in ``PROMETHEUS_MULTIPROC_DIR`` and ``/metrics`` (answered by any
worker) adds them up. The directory must be set before ``prometheus_client``
is first imported, which is why this module imports it only inside functions
and :func:`prepare_multiprocess_dir` runs in the gunicorn master before any
worker exists.

Variables:

* ``METRICS_ENABLED`` (``true``/``false``, default ``true``): ``false`` serves
  no ``/metrics`` (404) and counts nothing (the bench compares both).
* ``PROMETHEUS_MULTIPROC_DIR``: a directory the service may write to, emptied
  at start (systemd's ``RuntimeDirectory=`` makes a fresh one). Unset: a
  private temporary directory, removed at exit.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from .config import ConfigError

__all__ = [
    "METRICS_PATH",
    "UNAVAILABLE_CAUSE",
    "MetricsMiddleware",
    "certificate_not_after",
    "mark_process_dead",
    "metrics_enabled",
    "prepare_multiprocess_dir",
]

log = logging.getLogger(__name__)

METRICS_PATH = "/metrics"
MULTIPROC_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
# A route sets this WSGI environ key to say why it answered 503 (for
# loyalty_http_unavailable_total{cause}); unset, the cause is "redis".
UNAVAILABLE_CAUSE = "loyalty.unavailable_cause"

# Latency buckets (seconds): the APIs answer in milliseconds; a token costs an
# scrypt verification (about 50 ms); a WAIT for replicas can take up to a second.
LATENCY_BUCKETS = (0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def metrics_enabled(environ: Mapping[str, str] | None = None) -> bool:
    """METRICS_ENABLED: true (default) or false; anything else is a ConfigError."""
    env = os.environ if environ is None else environ
    raw = env.get("METRICS_ENABLED", "").strip().lower()
    if raw == "" or raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ConfigError("METRICS_ENABLED", f"must be true or false, not {raw!r}")


def prepare_multiprocess_dir(environ: dict[str, str] | None = None) -> Path | None:
    """Check or create PROMETHEUS_MULTIPROC_DIR and empty it; return a directory to remove.

    Returns the path of a temporary directory made here (the caller removes
    it at exit), or None when the directory was given.
    """
    env: Any = os.environ if environ is None else environ
    given = env.get(MULTIPROC_VARIABLE, "")
    if not given:
        made = Path(tempfile.mkdtemp(prefix="prometheus-"))
        env[MULTIPROC_VARIABLE] = str(made)
        return made
    directory = Path(given)
    if not directory.is_absolute():
        raise ConfigError(MULTIPROC_VARIABLE, f"must be an absolute path, not {given!r}")
    if not directory.is_dir():
        raise ConfigError(MULTIPROC_VARIABLE, f"{given} is not a directory")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise ConfigError(MULTIPROC_VARIABLE, f"{given} is not writable by this user")
    # Samples of an earlier run would be added to this one's.
    for stale in directory.glob("*.db"):
        stale.unlink(missing_ok=True)
    return None


def remove_dir(path: Path | None) -> None:
    if path is not None:
        shutil.rmtree(path, ignore_errors=True)


def mark_process_dead(pid: int) -> None:
    """gunicorn's child_exit hook: drop the live-gauge files of a dead worker."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid)


def certificate_not_after(path: str) -> float | None:
    """The expiry (Unix time) of the first certificate in a PEM file, None if unreadable."""
    if not path:
        return None
    try:
        from cryptography import x509

        certificate = x509.load_pem_x509_certificate(Path(path).read_bytes())
    except (OSError, ValueError):
        return None
    return certificate.not_valid_after_utc.timestamp()


class _Metrics:
    """The API metrics, created once per worker process."""

    def __init__(self, service: str) -> None:
        from prometheus_client import Counter, Gauge, Histogram

        self.service = service
        self.requests = Counter(
            "loyalty_http_requests",
            "HTTP requests answered, by route, method and status.",
            ["service", "route", "method", "status"],
        )
        self.latency = Histogram(
            "loyalty_http_request_duration_seconds",
            "Time from the request reaching the application to its answer.",
            ["service", "route"],
            buckets=LATENCY_BUCKETS,
        )
        self.unavailable = Counter(
            "loyalty_http_unavailable",
            "503 answers, by cause.",
            ["service", "route", "cause"],
        )
        self.tokens = Counter(
            "loyalty_tokens",
            "POST /token outcomes: issued, or refused with a reason.",
            ["outcome", "reason"],
        )
        self.queued = Counter(
            "loyalty_transactions_queued",
            "Transactions accepted (202) and written to the stream, replays excluded.",
        )
        self.replays = Counter(
            "loyalty_idempotent_replays",
            "202 answers that replayed an earlier transaction (same Idempotency-Key).",
        )
        not_after = certificate_not_after(os.environ.get("TLS_CERT_FILE", ""))
        if not_after is not None:
            expiry = Gauge(
                "loyalty_tls_certificate_expiry_timestamp_seconds",
                "When the certificate the service serves (TLS_CERT_FILE) expires.",
                ["service"],
                multiprocess_mode="min",
            )
            expiry.labels(service).set(not_after)


def _token_outcome(status: int) -> tuple[str, str]:
    if status == 200:
        return "issued", ""
    if status == 401:
        return "refused", "bad_credentials"
    if status == 422:
        return "refused", "blank_field"
    if status == 503:
        return "refused", "unavailable"
    return "refused", "malformed_request"


class MetricsMiddleware:
    """Wrap a Bottle app: count and time each request, answer GET /metrics.

    The route label is the Bottle rule that matched (``/transactions``), or
    ``unmatched``: a scan of random paths must not create a series per path.
    """

    def __init__(self, app: Any, service: str) -> None:
        self.app = app
        self.metrics = _Metrics(service)

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == METRICS_PATH:
            return self._exposition(environ, start_response)
        started = time.perf_counter()
        seen: dict[str, Any] = {}

        def recording_start_response(
            status: str, headers: list[tuple[str, str]], *rest: Any
        ) -> Any:
            seen["status"] = status
            seen["headers"] = headers
            return start_response(status, headers, *rest)

        body = self.app(environ, recording_start_response)
        try:
            self._record(environ, seen, time.perf_counter() - started)
        except Exception as error:  # noqa: BLE001 -- a metric must never fail a request
            log.warning("could not record the request's metrics: %r", error)
        return body

    def _record(self, environ: dict[str, Any], seen: dict[str, Any], elapsed: float) -> None:
        metrics = self.metrics
        route_object = environ.get("bottle.route")
        route = getattr(route_object, "rule", None) or "unmatched"
        method = str(environ.get("REQUEST_METHOD", "")).upper()
        if method not in {"GET", "POST", "HEAD", "PUT", "DELETE", "PATCH", "OPTIONS"}:
            method = "other"
        status_text = str(seen.get("status", "500"))
        try:
            status = int(status_text.split(" ", 1)[0])
        except ValueError:
            status = 500
        metrics.requests.labels(metrics.service, route, method, str(status)).inc()
        metrics.latency.labels(metrics.service, route).observe(elapsed)
        if status == 503:
            cause = str(environ.get(UNAVAILABLE_CAUSE) or "redis")
            metrics.unavailable.labels(metrics.service, route, cause).inc()
        if route == "/token" and method == "POST":
            metrics.tokens.labels(*_token_outcome(status)).inc()
        elif route == "/transactions" and method == "POST" and status == 202:
            headers = {name.lower(): value for name, value in seen.get("headers", [])}
            if headers.get("idempotent-replayed") == "true":
                metrics.replays.inc()
            else:
                metrics.queued.inc()

    def _exposition(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        from prometheus_client import (
            CONTENT_TYPE_LATEST,
            CollectorRegistry,
            generate_latest,
            multiprocess,
        )

        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            body = b'{"error":"Method not allowed"}'
            start_response(
                "405 Method Not Allowed",
                [
                    ("Content-Type", "application/json"),
                    ("Allow", "GET, HEAD"),
                    ("Content-Length", str(len(body))),
                ],
            )
            return [body]
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        data = generate_latest(registry)
        start_response(
            "200 OK",
            [("Content-Type", CONTENT_TYPE_LATEST), ("Content-Length", str(len(data)))],
        )
        return [b"" if environ.get("REQUEST_METHOD") == "HEAD" else data]
