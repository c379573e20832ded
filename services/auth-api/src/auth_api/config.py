"""The Auth API's configuration, read from the environment and validated."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from loyalty_common import ConfigError, check_jwt_secret, env_file, env_int, env_str
from loyalty_common.serve import HttpSettings, http_settings_from_env
from loyalty_common.tokens import DEFAULT_ISSUER, load_private_key

from .passwords import parse_hash

__all__ = ["Settings", "User", "load_settings", "load_users"]


@dataclass(frozen=True, slots=True)
class User:
    """One entry of the users file."""

    id: int
    username: str
    password_hash: str
    can_transact: bool


@dataclass(frozen=True)
class Settings:
    """Everything the Auth API needs, fully loaded (key parsed, users read)."""

    http: HttpSettings
    private_key: Ed25519PrivateKey
    users: dict[str, User]
    issuer: str
    token_ttl: int


def _bad(path: Path, where: str, problem: str) -> ConfigError:
    return ConfigError("USERS_FILE", f"{path}: {where}: {problem}")


def load_users(path: Path) -> dict[str, User]:
    """Read and validate the users file; ConfigError names USERS_FILE."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ConfigError("USERS_FILE", f"cannot be read ({error.strerror}): {path}") from None
    except ValueError as error:
        raise ConfigError("USERS_FILE", f"{path} is not valid JSON ({error})") from None
    if not isinstance(data, list):
        raise ConfigError("USERS_FILE", f"{path} must hold a JSON list of users")
    users: dict[str, User] = {}
    ids: set[int] = set()
    for index, entry in enumerate(data):
        where = f"entry {index}"
        if not isinstance(entry, dict):
            raise _bad(path, where, "is not an object")
        if "password" in entry:
            # The originals kept plain-text passwords; say how to convert.
            raise _bad(
                path,
                where,
                "has a plain-text 'password'; replace it with 'password_hash' "
                "made by auth-api-hash-password",
            )
        user_id = entry.get("id")
        username = entry.get("username")
        password_hash = entry.get("password_hash")
        can_transact = entry.get("can_transact")
        if type(user_id) is not int or user_id < 0:
            raise _bad(path, where, "'id' must be a non-negative integer")
        if not isinstance(username, str) or not username.strip():
            raise _bad(path, where, "'username' must be a non-empty string")
        if type(can_transact) is not bool:
            raise _bad(path, where, "'can_transact' must be true or false")
        if not isinstance(password_hash, str):
            raise _bad(path, where, "'password_hash' must be a string")
        try:
            parse_hash(password_hash)
        except ValueError as error:
            raise _bad(path, where, f"'password_hash' is malformed ({error})") from None
        if username in users:
            raise _bad(path, where, f"username {username!r} appears twice")
        if user_id in ids:
            raise _bad(path, where, f"id {user_id} appears twice")
        ids.add(user_id)
        users[username] = User(user_id, username, password_hash, can_transact)
    if not users:
        raise ConfigError("USERS_FILE", f"{path} holds no users")
    return users


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read every variable, the key and the users file; raise ConfigError."""
    check_jwt_secret("JWT_PRIVATE_KEY_FILE", environ=environ)
    http = http_settings_from_env(environ)
    key_path = env_file("JWT_PRIVATE_KEY_FILE", environ=environ)
    users_path = env_file("USERS_FILE", environ=environ)
    assert key_path is not None and users_path is not None  # required=True
    return Settings(
        http=http,
        private_key=load_private_key(key_path),
        users=load_users(users_path),
        issuer=env_str("JWT_ISSUER", DEFAULT_ISSUER, environ=environ),
        token_ttl=env_int("TOKEN_TTL_SECONDS", 30, minimum=1, maximum=86400, environ=environ),
    )
