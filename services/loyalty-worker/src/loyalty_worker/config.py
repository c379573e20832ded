"""The worker's configuration, read from the environment and checked at start-up."""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass

from loyalty_common import ConfigError, env_int, env_log_level, env_str
from loyalty_common.redis_access import RedisSettings, redis_settings_from_env

__all__ = ["WorkerConfig", "load_config"]

# Long enough to cover every way one transaction can reach the stream twice
# (the Transaction API retrying an XADD, an entry redelivered after a crash,
# dead-lettered entries replayed by an operator), short enough that marks do
# not grow without bound on a Redis that never evicts.
PROCESSED_MARK_TTL_SECONDS = 30 * 24 * 3600


@dataclass(frozen=True)
class WorkerConfig:
    redis: RedisSettings
    log_level: int
    stamps_per_voucher: int = 10
    min_stamp_amount: int = 1
    consumer_name: str = "worker"
    claim_idle_ms: int = 30_000
    max_deliveries: int = 5
    batch_size: int = 50
    block_ms: int = 1_000
    processed_ttl_seconds: int = PROCESSED_MARK_TTL_SECONDS


def _consumer_name(environ: Mapping[str, str]) -> str:
    default = f"{socket.gethostname()}-{os.getpid()}"
    name = env_str("WORKER_CONSUMER_NAME", default, environ=environ)
    # The name appears in log lines and XINFO output; keep it one printable word.
    if len(name) > 200 or not name.isprintable() or any(c.isspace() for c in name):
        raise ConfigError(
            "WORKER_CONSUMER_NAME",
            f"must be at most 200 printable characters without spaces, got {name!r}",
        )
    return name


def load_config(environ: Mapping[str, str] | None = None) -> WorkerConfig:
    """Read every variable the worker uses; raise ConfigError on the first bad one."""
    env = os.environ if environ is None else environ
    return WorkerConfig(
        redis=redis_settings_from_env(env),
        log_level=env_log_level(environ=env),
        stamps_per_voucher=env_int(
            "STAMPS_PER_VOUCHER", 10, minimum=1, maximum=1_000_000, environ=env
        ),
        min_stamp_amount=env_int("MIN_STAMP_AMOUNT", 1, minimum=1, environ=env),
        consumer_name=_consumer_name(env),
        claim_idle_ms=env_int(
            "WORKER_CLAIM_IDLE_MS", 30_000, minimum=1, maximum=86_400_000, environ=env
        ),
        max_deliveries=env_int("WORKER_MAX_DELIVERIES", 5, minimum=1, maximum=1_000, environ=env),
        batch_size=env_int("WORKER_BATCH_SIZE", 50, minimum=1, maximum=10_000, environ=env),
        # 0 would make XREADGROUP block forever and starve the watchdog and
        # the reclaim pass.
        block_ms=env_int("WORKER_BLOCK_MS", 1_000, minimum=1, maximum=60_000, environ=env),
    )
