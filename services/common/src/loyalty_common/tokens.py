"""Ed25519 key loading and access-token verification (EdDSA only)."""

from __future__ import annotations

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
    Only EdDSA is accepted (so ``none`` and HS256 keyed with the public key
    fail), every claim in REQUIRED_CLAIMS must be present, ``iss`` must match,
    and there is no leeway on ``exp``, ``iat`` or ``nbf``.
    """

    def __init__(self, public_key: Ed25519PublicKey, issuer: str = DEFAULT_ISSUER) -> None:
        self._key = public_key
        self._issuer = issuer
        self._jwt = jwt.PyJWT(
            options={
                "require": list(REQUIRED_CLAIMS),
                "verify_signature": True,
                "verify_exp": True,
                "verify_iat": True,
                "verify_nbf": True,
                "verify_iss": True,
                "verify_aud": False,
            }
        )

    @property
    def issuer(self) -> str:
        """The issuer every token must carry."""
        return self._issuer

    def verify(self, token: str) -> Claims:
        """Return the token's claims or raise InvalidToken."""
        if not isinstance(token, str) or not token or len(token) > 4096:
            raise InvalidToken("token is empty or too long")
        try:
            payload: dict[str, Any] = self._jwt.decode(
                token,
                key=self._key,
                algorithms=[ALGORITHM],
                issuer=self._issuer,
                leeway=0,
            )
        except jwt.PyJWTError as error:
            raise InvalidToken(str(error) or type(error).__name__) from None
        except (ValueError, TypeError) as error:  # defensive: odd headers
            raise InvalidToken(f"malformed token ({error})") from None
        return _claims(payload)


def _claims(payload: dict[str, Any]) -> Claims:
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
        iat=int(payload["iat"]),
        exp=int(payload["exp"]),
    )
