"""Shared code of the loyalty services: configuration, tokens, Redis access.

Import what you need from this package directly; the submodules are an
implementation detail.
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
    DEAD_LETTER_FIELDS,
    DEAD_LETTER_STREAM,
    TRANSACTION_FIELDS,
    TRANSACTIONS_STREAM,
    USER_FIELDS,
    idempotency_key,
    processed_key,
    user_key,
)
from .redis_access import (
    DEFAULT_REDIS_URL,
    REDIS_ERRORS,
    RedisSettings,
    make_redis,
    primary_address,
    redis_from_env,
    redis_settings_from_env,
)
from .sentinel import DEFAULT_SENTINEL_MASTER, parse_sentinel_master, parse_sentinels
from .tokens import (
    ALGORITHM,
    DEFAULT_ISSUER,
    REQUIRED_CLAIMS,
    Claims,
    InvalidToken,
    TokenVerifier,
    load_private_key,
    load_public_key,
)

__all__ = [
    "ALGORITHM",
    "CONSUMER_GROUP",
    "DEAD_LETTER_FIELDS",
    "DEAD_LETTER_STREAM",
    "DEFAULT_ISSUER",
    "DEFAULT_REDIS_URL",
    "DEFAULT_SENTINEL_MASTER",
    "EXIT_CONFIG",
    "JWT_SECRET_MESSAGE",
    "REDIS_ERRORS",
    "REQUIRED_CLAIMS",
    "TRANSACTIONS_STREAM",
    "TRANSACTION_FIELDS",
    "USER_FIELDS",
    "Claims",
    "ConfigError",
    "InvalidToken",
    "RedisSettings",
    "TokenVerifier",
    "check_jwt_secret",
    "configure_logging",
    "entry_point",
    "env_file",
    "env_float",
    "env_int",
    "env_log_level",
    "env_str",
    "idempotency_key",
    "load_private_key",
    "load_public_key",
    "make_redis",
    "parse_sentinel_master",
    "parse_sentinels",
    "primary_address",
    "processed_key",
    "redis_from_env",
    "redis_settings_from_env",
    "run_main",
    "user_key",
]
