"""REDIS_SENTINELS and REDIS_SENTINEL_MASTER: where the Sentinels are, what they watch."""

from __future__ import annotations

import ipaddress

from .config import ConfigError

__all__ = ["DEFAULT_SENTINEL_MASTER", "parse_sentinel_master", "parse_sentinels"]

DEFAULT_SENTINEL_MASTER = "loyalty"

_FORBIDDEN_IN_HOST = frozenset("/@[]:?#")


def _entry(text: str) -> tuple[str, int]:
    """One ``host:port`` or ``[ipv6]:port``; raise ConfigError naming REDIS_SENTINELS."""
    if text.startswith("["):
        address, bracket, rest = text[1:].partition("]")
        if not bracket or not rest.startswith(":"):
            raise ConfigError("REDIS_SENTINELS", f"{text!r} is not [address]:port")
        try:
            host = str(ipaddress.IPv6Address(address))
        except ValueError:
            raise ConfigError(
                "REDIS_SENTINELS", f"{address!r} in {text!r} is not an IPv6 address"
            ) from None
        port_text = rest[1:]
    else:
        host, colon, port_text = text.rpartition(":")
        if not colon or not host:
            raise ConfigError("REDIS_SENTINELS", f"{text!r} is not host:port")
        if any(c.isspace() or c in _FORBIDDEN_IN_HOST for c in host):
            raise ConfigError(
                "REDIS_SENTINELS",
                f"{host!r} in {text!r} is not a host name or IPv4 address "
                "(write an IPv6 address as [address]:port)",
            )
    if not (port_text.isascii() and port_text.isdigit() and 1 <= int(port_text) <= 65535):
        raise ConfigError("REDIS_SENTINELS", f"port of {text!r} must be a number from 1 to 65535")
    return host, int(port_text)


def parse_sentinels(value: str | None) -> tuple[tuple[str, int], ...]:
    """``host:port,[::1]:port,...`` as (host, port) pairs; empty when unset or blank."""
    if value is None or not value.strip():
        return ()
    entries = [part.strip() for part in value.split(",")]
    if any(not part for part in entries):
        raise ConfigError("REDIS_SENTINELS", f"has an empty entry: {value!r}")
    pairs = tuple(_entry(part) for part in entries)
    if len(set(pairs)) != len(pairs):
        raise ConfigError("REDIS_SENTINELS", f"names a Sentinel twice: {value!r}")
    return pairs


def parse_sentinel_master(value: str | None) -> str:
    """The master name of ``sentinel monitor <name> ...``: one printable word."""
    if value is None or not value.strip():
        return DEFAULT_SENTINEL_MASTER
    name = value.strip()
    if len(name) > 200 or not name.isprintable() or any(c.isspace() for c in name):
        raise ConfigError(
            "REDIS_SENTINEL_MASTER",
            f"must be one word of at most 200 printable characters, got {name!r}",
        )
    return name
