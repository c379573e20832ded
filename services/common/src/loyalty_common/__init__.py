"""Shared code of the loyalty services: configuration, entry point, key names.

This top level imports only the standard library, so that each service loads
only the libraries it uses: Redis access (``loyalty_common.redis_access``,
redis), tokens (``loyalty_common.tokens``, PyJWT) and the HTTP helpers
(``web``, ``serve``, ``openapi``: Bottle, gunicorn) come from their modules.
"""

from .config import (
    JWT_SECRET_MESSAGE,
    ConfigError,
    check_jwt_secret,
    configure_logging,
    env_file,
    env_float,
    env_int,
    env_log_level,
    env_str,
)
from .entry import EXIT_CONFIG, entry_point, run_main
from .keys import (
    CONSUMER_GROUP,
    DEAD_LETTER_STREAM,
    TRANSACTIONS_STREAM,
    idempotency_key,
    processed_key,
    user_key,
)
from .sentinel import DEFAULT_SENTINEL_MASTER, parse_sentinel_master, parse_sentinels

__all__ = [
    "CONSUMER_GROUP",
    "DEAD_LETTER_STREAM",
    "DEFAULT_SENTINEL_MASTER",
    "EXIT_CONFIG",
    "JWT_SECRET_MESSAGE",
    "TRANSACTIONS_STREAM",
    "ConfigError",
    "check_jwt_secret",
    "configure_logging",
    "entry_point",
    "env_file",
    "env_float",
    "env_int",
    "env_log_level",
    "env_str",
    "idempotency_key",
    "parse_sentinel_master",
    "parse_sentinels",
    "processed_key",
    "run_main",
    "user_key",
]
