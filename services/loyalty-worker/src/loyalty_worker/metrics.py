"""The worker's Prometheus metrics and the port that serves them.

Each worker is one process, so the client library's ordinary (single
process) registry is right here. The port is served only when
WORKER_METRICS_PORT is set (non-zero):

* ``WORKER_METRICS_PORT``: base port, 0 (default) for none.
* ``WORKER_METRICS_INSTANCE``: the instance number of a templated unit
  (``%i``); instance N listens on base + N - 1, so the instances of one host
  do not collide.
* ``WORKER_METRICS_HOST``: address to listen on (default ``0.0.0.0``).
* ``TLS_CERT_FILE``/``TLS_KEY_FILE`` (both or neither) serve HTTPS, and
  ``TLS_CLIENT_CA_FILE`` then requires a client certificate signed by that CA.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from loyalty_common import ConfigError, env_file, env_int, env_str
from loyalty_common.keys import CONSUMER_GROUP, DEAD_LETTER_STREAM, TRANSACTIONS_STREAM
from loyalty_common.metrics import certificate_not_after
from prometheus_client import Counter, Gauge, Histogram, start_http_server

__all__ = ["MetricsSettings", "WorkerMetrics", "metrics_settings_from_env", "serve_metrics"]

# Batches of up to WORKER_BATCH_SIZE entries: one round trip per batch.
BATCH_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)


@dataclass(frozen=True)
class MetricsSettings:
    host: str
    port: int  # 0: no metrics port
    certificate: str | None = None
    private_key: str | None = None
    client_ca: str | None = None


def metrics_settings_from_env(environ: Mapping[str, str]) -> MetricsSettings:
    """Validate the WORKER_METRICS_* and TLS_* variables (one line naming the bad one)."""
    base = env_int("WORKER_METRICS_PORT", 0, minimum=0, maximum=65535, environ=environ)
    instance_text = environ.get("WORKER_METRICS_INSTANCE", "").strip()
    instance = 1
    if instance_text:
        if not instance_text.isdigit() or int(instance_text) < 1:
            raise ConfigError(
                "WORKER_METRICS_INSTANCE", f"must be a whole number from 1, not {instance_text!r}"
            )
        instance = int(instance_text)
    port = 0 if base == 0 else base + instance - 1
    if port > 65535:
        raise ConfigError(
            "WORKER_METRICS_INSTANCE", f"{instance} puts the port above 65535 (base {base})"
        )
    host = env_str("WORKER_METRICS_HOST", "0.0.0.0", environ=environ)
    if any(ch.isspace() or ch in "/@" for ch in host):
        raise ConfigError("WORKER_METRICS_HOST", f"is not a host name or address: {host!r}")
    cert = env_file("TLS_CERT_FILE", required=False, environ=environ)
    key = env_file("TLS_KEY_FILE", required=False, environ=environ)
    ca = env_file("TLS_CLIENT_CA_FILE", required=False, environ=environ)
    if (cert is None) != (key is None):
        missing = "TLS_KEY_FILE" if key is None else "TLS_CERT_FILE"
        raise ConfigError(missing, "is required when the other TLS file is set (both or neither)")
    if ca is not None and cert is None:
        raise ConfigError("TLS_CLIENT_CA_FILE", "needs TLS_CERT_FILE and TLS_KEY_FILE set too")
    return MetricsSettings(
        host=host,
        port=port,
        certificate=None if cert is None else str(cert),
        private_key=None if key is None else str(key),
        client_ca=None if ca is None else str(ca),
    )


def serve_metrics(settings: MetricsSettings) -> Any:
    """Start the metrics server in a daemon thread; None when no port is set."""
    if settings.port == 0:
        return None
    if settings.certificate is not None:
        not_after = certificate_not_after(settings.certificate)
        if not_after is not None:
            WorkerMetrics.shared().certificate_expiry.labels("loyalty-worker").set(not_after)
    try:
        server, _thread = start_http_server(
            settings.port,
            addr=settings.host,
            certfile=settings.certificate,
            keyfile=settings.private_key,
            client_cafile=settings.client_ca,
            client_auth_required=settings.client_ca is not None,
        )
    except OSError as error:
        raise ConfigError(
            "WORKER_METRICS_PORT", f"cannot listen on {settings.host}:{settings.port}: {error}"
        ) from None
    return server


def _stream_ms(entry_id: bytes | str) -> int:
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    return int(text.split("-", 1)[0])


_shared: WorkerMetrics | None = None


class WorkerMetrics:
    """Counters updated by the loop, and the stream's state read every maintenance pass."""

    @staticmethod
    def shared() -> WorkerMetrics:
        """The one instance of this process (metric names register once per registry)."""
        global _shared
        if _shared is None:
            _shared = WorkerMetrics()
        return _shared

    def __init__(self) -> None:
        self.awards = Counter(
            "loyalty_worker_awards",
            "Transactions settled by this worker: awarded, duplicate (already awarded) or failed.",
            ["result"],
        )
        self.vouchers = Counter("loyalty_worker_vouchers_earned", "Vouchers earned by awards.")
        self.dead_letters = Counter(
            "loyalty_worker_dead_letters",
            "Entries this worker moved to the dead-letter stream, by reason.",
            ["reason"],
        )
        self.batch_seconds = Histogram(
            "loyalty_worker_batch_duration_seconds",
            "Time to settle one batch of entries (awards and dead letters).",
            buckets=BATCH_BUCKETS,
        )
        self.redis_up = Gauge(
            "loyalty_worker_redis_connected", "1 while the worker is connected to Redis."
        )
        self.lag = Gauge(
            "loyalty_worker_stream_lag",
            "Entries of the stream not yet delivered to the consumer group.",
        )
        self.pending = Gauge(
            "loyalty_worker_stream_pending",
            "Entries delivered to the group and not yet settled.",
        )
        self.oldest_age = Gauge(
            "loyalty_worker_oldest_unawarded_age_seconds",
            "Age of the oldest transaction in the stream not yet settled (0 when none).",
        )
        self.dead_letter_length = Gauge(
            "loyalty_worker_dead_letter_stream_length", "Entries in the dead-letter stream."
        )
        self.observed_at = Gauge(
            "loyalty_worker_stream_observed_timestamp_seconds",
            "When the stream gauges were last read from Redis.",
        )
        self.certificate_expiry = Gauge(
            "loyalty_tls_certificate_expiry_timestamp_seconds",
            "When the certificate of the metrics port (TLS_CERT_FILE) expires.",
            ["service"],
        )
        for result in ("awarded", "duplicate", "failed"):
            self.awards.labels(result)
        for reason in ("unparseable", "max_deliveries", "refused"):
            self.dead_letters.labels(reason)

    def dead_lettered(self, reason: str) -> None:
        if reason.startswith("unparseable"):
            kind = "unparseable"
        elif reason.startswith("delivered"):
            kind = "max_deliveries"
        else:
            kind = "refused"
        self.dead_letters.labels(kind).inc()

    def observe_stream(self, client: Any) -> None:
        """Read the group's lag and pending entries, the oldest one's age, the dead letters."""
        lag = pending = 0
        oldest_ms: int | None = None
        for group in client.xinfo_groups(TRANSACTIONS_STREAM):
            name = group["name"]
            if (name.decode() if isinstance(name, bytes) else name) != CONSUMER_GROUP:
                continue
            pending = int(group["pending"])
            lag = int(group.get("lag") or 0)
            if pending:
                first = client.xpending(TRANSACTIONS_STREAM, CONSUMER_GROUP)["min"]
                if first is not None:
                    oldest_ms = _stream_ms(first)
            if oldest_ms is None and lag:
                last = group["last-delivered-id"]
                last_text = last.decode() if isinstance(last, bytes) else str(last)
                after = client.xrange(TRANSACTIONS_STREAM, min=f"({last_text}", count=1)
                if after:
                    oldest_ms = _stream_ms(after[0][0])
        self.lag.set(lag)
        self.pending.set(pending)
        now = time.time()
        self.oldest_age.set(0 if oldest_ms is None else max(0.0, now - oldest_ms / 1000))
        self.dead_letter_length.set(int(client.xlen(DEAD_LETTER_STREAM)))
        self.observed_at.set(now)
