"""The ``loyalty-worker`` console script."""

from __future__ import annotations

import os

from loyalty_common import configure_logging, entry_point
from loyalty_common.redis_access import make_redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from .config import load_config
from .metrics import metrics_settings_from_env, serve_metrics
from .sdnotify import Notifier
from .worker import Worker

__all__ = ["main"]


@entry_point("loyalty-worker")
def main() -> int:
    """Validate the environment, then consume until SIGTERM or SIGINT."""
    config = load_config()
    metrics = metrics_settings_from_env(os.environ)
    configure_logging(config.log_level)
    serve_metrics(metrics)
    client = make_redis(
        config.redis,
        # Raw bytes: a single entry that is not UTF-8 must be dead-lettered,
        # not make every read that returns it fail.
        decode_responses=False,
        # A blocking XREADGROUP waits up to WORKER_BLOCK_MS before it
        # answers; only the time beyond that counts as Redis being slow.
        socket_timeout=config.redis.socket_timeout + config.block_ms / 1000,
        # No silent retry: after a lost connection the loop must know, so
        # that it re-reads the entries a lost reply may have delivered.
        retry=Retry(NoBackoff(), 0),
    )
    return Worker(config, client, Notifier()).run()
