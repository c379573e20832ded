"""The Transaction API's configuration, read from the environment and validated."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from loyalty_common import ConfigError, check_jwt_secret, env_file, env_int, env_str
from loyalty_common.redis_access import RedisSettings, redis_settings_from_env
from loyalty_common.serve import HttpSettings, http_settings_from_env
from loyalty_common.tokens import DEFAULT_ISSUER, TokenVerifier, load_public_key

__all__ = ["Settings", "load_settings"]


@dataclass(frozen=True)
class Settings:
    """Everything the Transaction API needs, with the public key parsed."""

    http: HttpSettings
    redis: RedisSettings
    verifier: TokenVerifier
    max_amount: int
    idempotency_ttl: int
    # WAIT after queueing: replicas that must acknowledge (0: no WAIT) and
    # how long to wait for them.
    wait_replicas: int = 0
    wait_timeout_ms: int = 500


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read every variable and the public key; raise ConfigError."""
    check_jwt_secret("JWT_PUBLIC_KEY_FILE", environ=environ)
    http = http_settings_from_env(environ)
    redis = redis_settings_from_env(environ)
    key_path = env_file("JWT_PUBLIC_KEY_FILE", environ=environ)
    assert key_path is not None  # required=True
    issuer = env_str("JWT_ISSUER", DEFAULT_ISSUER, environ=environ)
    settings = Settings(
        http=http,
        redis=redis,
        # Clients reuse a token for its 30 s: remember the verified ones.
        verifier=TokenVerifier(load_public_key(key_path), issuer, cache_size=4096),
        # 10**15 keeps every amount exact in JSON clients that use doubles.
        max_amount=env_int("MAX_AMOUNT", 100_000_000, minimum=1, maximum=10**15, environ=environ),
        idempotency_ttl=env_int(
            "IDEMPOTENCY_TTL_SECONDS",
            86400,
            minimum=1,
            maximum=30 * 86400,
            environ=environ,
        ),
        wait_replicas=env_int("REDIS_WAIT_REPLICAS", 0, minimum=0, maximum=100, environ=environ),
        # 0 would make WAIT block forever; past a minute the router and
        # gunicorn have given up on the request long before.
        wait_timeout_ms=env_int(
            "REDIS_WAIT_TIMEOUT_MS", 500, minimum=1, maximum=60_000, environ=environ
        ),
    )
    if settings.wait_timeout_ms >= http.timeout * 1000:
        # gunicorn would kill the worker in the middle of a WAIT.
        raise ConfigError(
            "REDIS_WAIT_TIMEOUT_MS",
            f"must be shorter than GUNICORN_TIMEOUT ({http.timeout} s), "
            f"got {settings.wait_timeout_ms}",
        )
    return settings
