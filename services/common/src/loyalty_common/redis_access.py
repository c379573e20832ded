"""Redis client construction from the REDIS_* variables.

Without REDIS_SENTINELS the client talks to REDIS_URL's host and port.  With
it, the client asks the Sentinels for the current primary of
REDIS_SENTINEL_MASTER before each new connection (redis-py's
``Sentinel.master_for``); REDIS_URL then only supplies the scheme, the ACL
user, the password and the database number.

A rediss:// URL means TLS, to the data nodes and to the Sentinels alike
(redis-py takes the settings in two places: the pool's connections and
``sentinel_kwargs``). The server's certificate is verified, its host name
or address included, against REDIS_TLS_CA_FILE (else the system's CAs);
REDIS_TLS_CERT_FILE and REDIS_TLS_KEY_FILE are the client's own, for a
server that requires one.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import redis
from redis.backoff import NoBackoff
from redis.connection import parse_url
from redis.retry import Retry
from redis.sentinel import Sentinel, SentinelConnectionPool

from .config import ConfigError, env_file, env_float, env_str
from .sentinel import DEFAULT_SENTINEL_MASTER, parse_sentinel_master, parse_sentinels

__all__ = [
    "DEFAULT_REDIS_URL",
    "REDIS_ERRORS",
    "RedisSettings",
    "TlsFiles",
    "make_redis",
    "primary_address",
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
class TlsFiles:
    """The client's TLS files; None where not given."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None

    def options(self) -> dict[str, Any]:
        """redis-py's keyword arguments for a verified TLS connection."""
        return {
            "ssl_cert_reqs": "required",
            "ssl_check_hostname": True,
            "ssl_ca_certs": self.ca_file,
            "ssl_certfile": self.cert_file,
            "ssl_keyfile": self.key_file,
        }


@dataclass(frozen=True)
class RedisSettings:
    """Where and how to reach Redis; ``repr`` never shows the password."""

    url: str = DEFAULT_REDIS_URL
    password: str | None = field(default=None, repr=False)
    socket_timeout: float = 2.0
    # Empty: REDIS_URL's host and port.  Otherwise the Sentinels to ask.
    sentinels: tuple[tuple[str, int], ...] = ()
    sentinel_master: str = DEFAULT_SENTINEL_MASTER
    sentinel_password: str | None = field(default=None, repr=False)
    # Set for a rediss:// URL: TLS to Redis and to the Sentinels.
    tls: TlsFiles | None = None


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


def _password_from_file(variable: str, environ: Mapping[str, str] | None) -> str | None:
    """The first line of the file the variable names; None when it is unset."""
    path = env_file(variable, required=False, environ=environ)
    if path is None:
        return None
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(variable, f"cannot be read ({error})") from None
    password = lines[0].strip() if lines else ""
    if not password:
        raise ConfigError(variable, f"first line is empty: {path}")
    return password


def _tls_files(url: str, environ: Mapping[str, str] | None) -> TlsFiles | None:
    """REDIS_TLS_* for a rediss:// URL; refused with any other scheme, where
    they would be ignored and the connection would go out in plain text."""
    names = ("REDIS_TLS_CA_FILE", "REDIS_TLS_CERT_FILE", "REDIS_TLS_KEY_FILE")
    paths = {name: env_file(name, required=False, environ=environ) for name in names}
    if urlsplit(url).scheme != "rediss":
        given = [name for name, path in paths.items() if path is not None]
        if given:
            raise ConfigError(given[0], "is set but REDIS_URL does not start with rediss:// (TLS)")
        return None
    cert, key = paths["REDIS_TLS_CERT_FILE"], paths["REDIS_TLS_KEY_FILE"]
    if (cert is None) != (key is None):
        missing = "REDIS_TLS_KEY_FILE" if key is None else "REDIS_TLS_CERT_FILE"
        other = "REDIS_TLS_CERT_FILE" if key is None else "REDIS_TLS_KEY_FILE"
        raise ConfigError(missing, f"is required when {other} is set")
    _check_tls_files(paths)
    return TlsFiles(*(None if path is None else str(path) for path in paths.values()))


def _check_tls_files(paths: Mapping[str, Path | None]) -> None:
    """Load the files as the TLS connection would, so that a wrong file fails
    at start-up with its variable's name rather than on the first command."""
    cert, key, ca = (
        paths["REDIS_TLS_CERT_FILE"],
        paths["REDIS_TLS_KEY_FILE"],
        paths["REDIS_TLS_CA_FILE"],
    )
    if cert is not None and key is not None:
        try:
            ssl.create_default_context().load_cert_chain(str(cert), str(key))
        except (ssl.SSLError, OSError) as error:
            raise ConfigError(
                "REDIS_TLS_CERT_FILE",
                f"{cert} is not the certificate of REDIS_TLS_KEY_FILE {key} "
                f"({error.strerror or error})",
            ) from None
    if ca is not None:
        try:
            ssl.create_default_context(cafile=str(ca))
        except (ssl.SSLError, OSError) as error:
            raise ConfigError(
                "REDIS_TLS_CA_FILE", f"{ca} holds no CA certificate ({error.strerror or error})"
            ) from None


def redis_settings_from_env(environ: Mapping[str, str] | None = None) -> RedisSettings:
    """Read and validate REDIS_URL, REDIS_PASSWORD_FILE, REDIS_SOCKET_TIMEOUT,
    REDIS_TLS_* and, when REDIS_SENTINELS is set, REDIS_SENTINEL_MASTER and
    REDIS_SENTINEL_PASSWORD_FILE."""
    url = env_str("REDIS_URL", DEFAULT_REDIS_URL, environ=environ)
    _check_url(url)
    tls = _tls_files(url, environ)
    password = _password_from_file("REDIS_PASSWORD_FILE", environ)
    timeout = env_float("REDIS_SOCKET_TIMEOUT", 2.0, minimum=0.01, maximum=300, environ=environ)
    env = os.environ if environ is None else environ
    sentinels = parse_sentinels(env.get("REDIS_SENTINELS"))
    # Checked even without REDIS_SENTINELS: a typo there must not hide a bad
    # value here until the day the Sentinels are switched on.
    master = parse_sentinel_master(env.get("REDIS_SENTINEL_MASTER"))
    sentinel_password = _password_from_file("REDIS_SENTINEL_PASSWORD_FILE", environ)
    if not sentinels:
        return RedisSettings(url=url, password=password, socket_timeout=timeout, tls=tls)
    if urlsplit(url).scheme == "unix":
        raise ConfigError(
            "REDIS_SENTINELS",
            "cannot be combined with a unix:// REDIS_URL; use redis:// (its host "
            "and port are then ignored, the user and database still apply)",
        )
    return RedisSettings(
        url=url,
        password=password,
        socket_timeout=timeout,
        sentinels=sentinels,
        sentinel_master=master,
        sentinel_password=sentinel_password,
        tls=tls,
    )


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
    if settings.tls is not None:
        options |= settings.tls.options()
    options.update(overrides)
    if options.get("client_name") is None:
        del options["client_name"]
    if settings.sentinels:
        return _sentinel_client(settings, options)
    pool = redis.ConnectionPool.from_url(settings.url, **options)
    if settings.password is not None:
        # The file wins over a password embedded in the URL; from_url lets
        # the URL's value win over keyword arguments, so set it afterwards.
        pool.connection_kwargs["password"] = settings.password
    return redis.Redis(connection_pool=pool)


def redis_from_env(environ: Mapping[str, str] | None = None, **overrides: Any) -> redis.Redis:
    """Shorthand for ``make_redis(redis_settings_from_env(environ), **overrides)``."""
    return make_redis(redis_settings_from_env(environ), **overrides)


def _sentinel_client(settings: RedisSettings, options: dict[str, Any]) -> redis.Redis:
    """A client of the primary that the Sentinels name, found again after a failover.

    redis-py asks the Sentinels (``SENTINEL MASTERS``) before every new
    connection, drops idle connections to a former primary, and turns a
    READONLY reply (the primary was demoted) into a ConnectionError after
    closing that connection, so the next attempt finds the new primary.
    """
    url_options = parse_url(settings.url)
    # The Sentinels decide where the primary is; REDIS_URL's address is unused.
    for name in ("host", "port", "connection_class", "path"):
        url_options.pop(name, None)
    if urlsplit(settings.url).scheme == "rediss":
        url_options["ssl"] = True  # SentinelConnectionPool picks its TLS class
    url_options.update(options)
    if settings.password is not None:
        url_options["password"] = settings.password
    sentinel_kwargs: dict[str, Any] = {
        "socket_timeout": settings.socket_timeout,
        "socket_connect_timeout": settings.socket_timeout,
        "password": settings.sentinel_password,
        "decode_responses": True,
        # discover_master already moves on to the next Sentinel; a retry
        # with back-off on a dead one would only delay the answer.
        "retry": Retry(NoBackoff(), 0),
    }
    if settings.tls is not None:
        # The Sentinels speak TLS as the data nodes do: the same files.
        sentinel_kwargs |= {"ssl": True, **settings.tls.options()}
    sentinel = Sentinel(list(settings.sentinels), sentinel_kwargs=sentinel_kwargs)
    return sentinel.master_for(settings.sentinel_master, **url_options)


def primary_address(client: redis.Redis) -> str | None:
    """``host:port`` of the primary the client last connected to through Sentinel.

    None for a client of a fixed address, or before its first connection.
    """
    pool = client.connection_pool
    if not isinstance(pool, SentinelConnectionPool):
        return None
    address = pool.master_address
    if address is None:
        return None
    host, port = address
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
