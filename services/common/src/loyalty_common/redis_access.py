"""Redis client construction from REDIS_URL, REDIS_PASSWORD_FILE, REDIS_SOCKET_TIMEOUT."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from .config import ConfigError, env_file, env_float, env_str

__all__ = [
    "DEFAULT_REDIS_URL",
    "REDIS_ERRORS",
    "RedisSettings",
    "make_redis",
    "redis_from_env",
    "redis_settings_from_env",
]

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"

# Everything redis-py raises when the server cannot answer right now (down,
# restarting, loading, timing out, wrong password).  Callers map these to a
# 503 or a retry loop; AuthenticationError and BusyLoadingError are
# subclasses of ConnectionError.
REDIS_ERRORS: tuple[type[Exception], ...] = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
)


@dataclass(frozen=True)
class RedisSettings:
    """Where and how to reach Redis; ``repr`` never shows the password."""

    url: str = DEFAULT_REDIS_URL
    password: str | None = field(default=None, repr=False)
    socket_timeout: float = 2.0


def _check_url(url: str) -> None:
    try:
        parts = urlsplit(url)
        port = parts.port  # raises ValueError on a non-numeric port
    except ValueError as error:
        raise ConfigError("REDIS_URL", f"is not a valid URL ({error})") from None
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise ConfigError(
            "REDIS_URL", f"must start with redis://, rediss:// or unix://, got {url!r}"
        )
    if parts.scheme != "unix" and not parts.hostname:
        raise ConfigError("REDIS_URL", "has no host name")
    if port == 0:
        raise ConfigError("REDIS_URL", "port must be between 1 and 65535")
    db = parts.path.lstrip("/")
    if parts.scheme != "unix" and db and not (db.isascii() and db.isdigit()):
        raise ConfigError("REDIS_URL", f"database must be a number, got {db!r}")


def redis_settings_from_env(environ: Mapping[str, str] | None = None) -> RedisSettings:
    """Read and validate REDIS_URL, REDIS_PASSWORD_FILE and REDIS_SOCKET_TIMEOUT."""
    url = env_str("REDIS_URL", DEFAULT_REDIS_URL, environ=environ)
    _check_url(url)
    password: str | None = None
    path = env_file("REDIS_PASSWORD_FILE", required=False, environ=environ)
    if path is not None:
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as error:
            raise ConfigError("REDIS_PASSWORD_FILE", f"cannot be read ({error})") from None
        password = lines[0].strip() if lines else ""
        if not password:
            raise ConfigError("REDIS_PASSWORD_FILE", f"first line is empty: {path}")
    timeout = env_float("REDIS_SOCKET_TIMEOUT", 2.0, minimum=0.01, maximum=300, environ=environ)
    return RedisSettings(url=url, password=password, socket_timeout=timeout)


def make_redis(settings: RedisSettings, **overrides: Any) -> redis.Redis:
    """Build a client with its own connection pool; no I/O happens here.

    Responses are decoded to ``str``.  One retry without back-off lets a pooled
    connection that Redis closed (restart, idle timeout) be replaced
    transparently; a second failure is raised at once so that an HTTP request
    can answer 503 quickly instead of hanging.  Keyword arguments override any
    of these (e.g. ``decode_responses=False``).
    """
    options: dict[str, Any] = {
        "socket_timeout": settings.socket_timeout,
        "socket_connect_timeout": settings.socket_timeout,
        "decode_responses": True,
        "retry": Retry(NoBackoff(), 1),
        "client_name": None,
    }
    options.update(overrides)
    if options.get("client_name") is None:
        del options["client_name"]
    pool = redis.ConnectionPool.from_url(settings.url, **options)
    if settings.password is not None:
        # The file wins over a password embedded in the URL; from_url lets
        # the URL's value win over keyword arguments, so set it afterwards.
        pool.connection_kwargs["password"] = settings.password
    return redis.Redis(connection_pool=pool)


def redis_from_env(environ: Mapping[str, str] | None = None, **overrides: Any) -> redis.Redis:
    """Shorthand for ``make_redis(redis_settings_from_env(environ), **overrides)``."""
    return make_redis(redis_settings_from_env(environ), **overrides)
