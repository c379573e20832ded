"""Configuration read from environment variables, validated at start-up.

Every helper raises :class:`ConfigError` whose message starts with the name of
the offending variable, so that an operator reading one line on standard error
knows what to fix.  Helpers take an optional ``environ`` mapping so tests need
not touch ``os.environ``.
"""

from __future__ import annotations

import logging
import math
import os
import sys
from collections.abc import Mapping
from pathlib import Path

__all__ = [
    "JWT_SECRET_MESSAGE",
    "ConfigError",
    "check_jwt_secret",
    "configure_logging",
    "env_file",
    "env_float",
    "env_int",
    "env_log_level",
    "env_str",
]


class ConfigError(Exception):
    """A missing or malformed environment variable.

    ``str(error)`` is ``"<VARIABLE>: <problem>"``; ``error.variable`` holds the
    name on its own.
    """

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"{variable}: {problem}")
        self.variable = variable
        self.problem = problem


def _env(environ: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if environ is None else environ


def _raw(name: str, environ: Mapping[str, str] | None) -> str | None:
    """Return the stripped value, or None when unset or blank.

    A blank value counts as unset: systemd environment files and compose files
    often write ``NAME=`` to mean "use the default".
    """
    value = _env(environ).get(name)
    if value is None:
        return None
    value = value.strip()
    return value or None


def env_str(
    name: str,
    default: str | None = None,
    *,
    required: bool = False,
    environ: Mapping[str, str] | None = None,
) -> str:
    """Return the variable as a string, or ``default`` when unset or blank.

    Raises ConfigError when it is required (or has no default) and unset.
    """
    value = _raw(name, environ)
    if value is None:
        if required or default is None:
            raise ConfigError(name, "is required but not set")
        return default
    return value


def env_int(
    name: str,
    default: int,
    *,
    minimum: int | None = None,
    maximum: int | None = None,
    environ: Mapping[str, str] | None = None,
) -> int:
    """Return the variable as a decimal integer within [minimum, maximum]."""
    value = _raw(name, environ)
    if value is None:
        return default
    # int() alone would accept "1_000" and " +5"; operators mean digits.
    body = value[1:] if value[:1] in "+-" else value
    if not (body.isascii() and body.isdigit()):
        raise ConfigError(name, f"must be an integer, got {value!r}")
    number = int(value)
    _check_range(name, number, minimum, maximum, value)
    return number


def env_float(
    name: str,
    default: float,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    environ: Mapping[str, str] | None = None,
) -> float:
    """Return the variable as a finite number within [minimum, maximum]."""
    value = _raw(name, environ)
    if value is None:
        return default
    try:
        number = float(value)
    except ValueError:
        raise ConfigError(name, f"must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise ConfigError(name, f"must be a finite number, got {value!r}")
    _check_range(name, number, minimum, maximum, value)
    return number


def _check_range(
    name: str,
    number: float,
    minimum: float | None,
    maximum: float | None,
    shown: str,
) -> None:
    if minimum is not None and number < minimum:
        raise ConfigError(name, f"must be at least {minimum}, got {shown!r}")
    if maximum is not None and number > maximum:
        raise ConfigError(name, f"must be at most {maximum}, got {shown!r}")


def env_file(
    name: str,
    *,
    required: bool = True,
    environ: Mapping[str, str] | None = None,
) -> Path | None:
    """Return the path named by the variable, checked to be a readable file.

    Returns None when the variable is unset and not required.
    """
    value = _raw(name, environ)
    if value is None:
        if required:
            raise ConfigError(name, "is required but not set")
        return None
    path = Path(value)
    if not path.is_file():
        raise ConfigError(name, f"no such file: {value}")
    if not os.access(path, os.R_OK):
        raise ConfigError(name, f"file is not readable: {value}")
    return path


_LEVELS = ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG")


def env_log_level(
    name: str = "LOG_LEVEL",
    default: str = "INFO",
    *,
    environ: Mapping[str, str] | None = None,
) -> int:
    """Return the logging level (an int) named by the variable."""
    value = (_raw(name, environ) or default).upper()
    if value == "WARN":
        value = "WARNING"
    if value not in _LEVELS:
        raise ConfigError(name, f"must be one of {', '.join(_LEVELS)}, got {value!r}")
    return logging.getLevelName(value)


def configure_logging(level: int) -> None:
    """Send one line per record to standard output (journald on the hosts).

    No timestamp: journald and docker add their own.
    """
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


JWT_SECRET_MESSAGE = (
    "is no longer used: tokens are now signed with an Ed25519 key pair "
    "(EdDSA); make one with 'openssl genpkey -algorithm ed25519 -out jwt.key' "
    "and 'openssl pkey -in jwt.key -pubout -out jwt.pub', then set {key_var} "
    "to the {which} and unset JWT_SECRET"
)


def check_jwt_secret(
    key_file_variable: str,
    *,
    environ: Mapping[str, str] | None = None,
) -> None:
    """Refuse the originals' JWT_SECRET when it is set without the key file.

    ``key_file_variable`` is ``JWT_PRIVATE_KEY_FILE`` (Auth API) or
    ``JWT_PUBLIC_KEY_FILE`` (Transaction API).  An operator upgrading from the
    originals would otherwise see a confusing "key file required" line.
    """
    if _raw("JWT_SECRET", environ) is None or _raw(key_file_variable, environ):
        return
    which = (
        "private key file (jwt.key)"
        if "PRIVATE" in key_file_variable
        else "public key file (jwt.pub)"
    )
    raise ConfigError(
        "JWT_SECRET",
        JWT_SECRET_MESSAGE.format(key_var=key_file_variable, which=which),
    )
