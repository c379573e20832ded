"""Ed25519 key loading and access-token verification (EdDSA only)."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import (
    load_pem_private_key,
    load_pem_public_key,
)

from .config import ConfigError

__all__ = [
    "ALGORITHM",
    "DEFAULT_ISSUER",
    "REQUIRED_CLAIMS",
    "Claims",
    "InvalidToken",
    "TokenVerifier",
    "load_private_key",
    "load_public_key",
]

ALGORITHM = "EdDSA"
DEFAULT_ISSUER = "loyalty-auth"
REQUIRED_CLAIMS = (
    "user_id",
    "username",
    "can_transact",
    "sub",
    "iat",
    "exp",
    "jti",
    "iss",
)


class InvalidToken(Exception):
    """The token must be refused; the message says why (for logs, not clients)."""


@dataclass(frozen=True, slots=True)
class Claims:
    """The verified claims an API acts on."""

    user_id: int
    username: str
    can_transact: bool
    jti: str
    iat: int
    exp: int


def _read(path: Path, variable: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise ConfigError(variable, f"cannot be read ({error.strerror}): {path}") from None


def load_private_key(path: Path, variable: str = "JWT_PRIVATE_KEY_FILE") -> Ed25519PrivateKey:
    """Load an unencrypted Ed25519 private key (PEM, PKCS#8) or raise ConfigError."""
    try:
        key = load_pem_private_key(_read(path, variable), password=None)
    except (ValueError, TypeError) as error:
        raise ConfigError(
            variable, f"is not an unencrypted PEM private key ({error}): {path}"
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(variable, f"is not an Ed25519 key: {path}")
    return key


def load_public_key(path: Path, variable: str = "JWT_PUBLIC_KEY_FILE") -> Ed25519PublicKey:
    """Load an Ed25519 public key (PEM, SubjectPublicKeyInfo) or raise ConfigError."""
    try:
        key = load_pem_public_key(_read(path, variable))
    except (ValueError, TypeError) as error:
        raise ConfigError(variable, f"is not a PEM public key ({error}): {path}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ConfigError(variable, f"is not an Ed25519 key: {path}")
    return key


class TokenVerifier:
    """Verify access tokens against one public key and issuer.

    Build it once per process: the key object is parsed once and reused.
    ``jwt.decode`` does the work with ``"EdDSA"`` as the only algorithm (so
    ``none`` and HS256 keyed with the public key fail), the issuer given
    here, every claim in REQUIRED_CLAIMS required and no leeway on ``exp``,
    ``iat`` or ``nbf``; the claims the APIs act on are then checked for
    their types.

    ``cache_size`` > 0 keeps that many verified tokens (exact strings) per
    process, so a client reusing its token (they live 30 s) skips the
    Ed25519 check; expiry is re-checked on every use, and only tokens that
    passed the full check are ever stored.
    """

    def __init__(
        self,
        public_key: Ed25519PublicKey,
        issuer: str = DEFAULT_ISSUER,
        *,
        cache_size: int = 0,
    ) -> None:
        self._key = public_key
        self._issuer = issuer
        self._cache_size = cache_size
        self._cache: dict[str, Claims] = {}

    @property
    def issuer(self) -> str:
        """The issuer every token must carry."""
        return self._issuer

    def verify(self, token: str) -> Claims:
        """Return the token's claims or raise InvalidToken."""
        now = time.time()
        cached = self._cache.get(token) if self._cache_size else None
        if cached is not None:
            if now < cached.exp:
                return cached
            # pop, not del: another thread of the worker may have dropped it.
            self._cache.pop(token, None)
            raise InvalidToken("token has expired")
        claims = self._verify(token)
        if self._cache_size:
            if len(self._cache) >= self._cache_size:
                # Dicts keep insertion order: drop the oldest half at once
                # instead of paying for LRU bookkeeping on every hit.
                for stale in list(self._cache)[: self._cache_size // 2 or 1]:
                    self._cache.pop(stale, None)
            self._cache[token] = claims
        return claims

    def _verify(self, token: str) -> Claims:
        if not isinstance(token, str) or not 0 < len(token) <= 4096:
            raise InvalidToken("token is empty or too long")
        # PyJWT also takes base64 '=' padding; the Auth API never writes it,
        # and refusing it keeps one accepted spelling (and cache entry) per token.
        if not _COMPACT_JWS.fullmatch(token):
            raise InvalidToken("not a compact JWS (three base64url segments)")
        try:
            payload = jwt.decode(
                token,
                self._key,
                algorithms=[ALGORITHM],
                issuer=self._issuer,
                # The Auth API writes no audience, and tokens were never
                # refused for carrying one.
                options={"require": list(REQUIRED_CLAIMS), "verify_aud": False},
            )
        except jwt.ExpiredSignatureError:
            raise InvalidToken("token has expired") from None
        except jwt.PyJWTError as error:
            raise InvalidToken(str(error) or type(error).__name__) from None
        return _claims(payload)


_COMPACT_JWS = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")


def _numeric_date(payload: dict[str, Any], claim: str) -> int | float:
    # PyJWT compares int(value), which also takes "123" and true.
    value = payload[claim]
    if type(value) not in (int, float) or value != value:  # bool, NaN
        raise InvalidToken(f"claim {claim!r} is not a number")
    return value  # type: ignore[no-any-return]


def _claims(payload: dict[str, Any]) -> Claims:
    exp = _numeric_date(payload, "exp")
    iat = _numeric_date(payload, "iat")
    if "nbf" in payload:
        _numeric_date(payload, "nbf")
    user_id = payload["user_id"]
    username = payload["username"]
    can_transact = payload["can_transact"]
    jti = payload["jti"]
    # bool is an int subclass: refuse it explicitly as a user id.
    if type(user_id) is not int or user_id < 0:
        raise InvalidToken("user_id is not a non-negative integer")
    if not isinstance(username, str) or not username:
        raise InvalidToken("username is not a non-empty string")
    if type(can_transact) is not bool:
        raise InvalidToken("can_transact is not a boolean")
    if not isinstance(jti, str) or not jti:
        raise InvalidToken("jti is not a non-empty string")
    if payload["sub"] != str(user_id):
        raise InvalidToken("sub does not match user_id")
    return Claims(
        user_id=user_id,
        username=username,
        can_transact=can_transact,
        jti=jti,
        iat=int(iat),
        exp=int(exp),
    )
