"""loyalty_common in-process: configuration, entry point, tokens, Redis, keys."""

from __future__ import annotations

import re
import time
import uuid
from pathlib import Path
from typing import Any

import jwt
import pytest
from loyalty_common import (
    ConfigError,
    check_jwt_secret,
    env_file,
    env_float,
    env_int,
    env_log_level,
    env_str,
    idempotency_key,
    keys,
    parse_sentinels,
    processed_key,
    user_key,
)
from loyalty_common.redis_access import make_redis, primary_address, redis_settings_from_env
from loyalty_common.tokens import REQUIRED_CLAIMS, InvalidToken, TokenVerifier
from redis.sentinel import SentinelConnectionPool


def test_env_helpers_defaults_and_values() -> None:
    assert env_str("X", "d", environ={}) == "d"
    assert env_str("X", "d", environ={"X": "  "}) == "d"  # blank means default
    assert env_int("X", 5, environ={"X": "7"}) == 7
    assert env_float("X", 2.0, environ={"X": "0.5"}) == 0.5
    assert env_log_level(environ={"LOG_LEVEL": "debug"}) == 10
    assert env_file("X", required=False, environ={}) is None


@pytest.mark.parametrize(
    ("call", "variable"),
    [
        (lambda: env_str("NEEDED", required=True, environ={}), "NEEDED"),
        (lambda: env_int("PORT", 1, environ={"PORT": "1_000"}), "PORT"),
        (lambda: env_int("PORT", 1, maximum=10, environ={"PORT": "11"}), "PORT"),
        (lambda: env_float("T", 1.0, environ={"T": "inf"}), "T"),
        (lambda: env_log_level(environ={"LOG_LEVEL": "LOUD"}), "LOG_LEVEL"),
        (lambda: env_file("F", environ={"F": "/nonexistent"}), "F"),
        (lambda: redis_settings_from_env({"REDIS_URL": "tcp://x"}), "REDIS_URL"),
    ],
)
def test_config_errors_name_the_variable(call: Any, variable: str) -> None:
    with pytest.raises(ConfigError) as caught:
        call()
    assert caught.value.variable == variable
    assert str(caught.value).startswith(f"{variable}: ")


def test_jwt_secret_check() -> None:
    check_jwt_secret("JWT_PUBLIC_KEY_FILE", environ={})
    check_jwt_secret(
        "JWT_PUBLIC_KEY_FILE", environ={"JWT_SECRET": "x", "JWT_PUBLIC_KEY_FILE": "/k"}
    )
    with pytest.raises(ConfigError, match="Ed25519 key pair"):
        check_jwt_secret("JWT_PUBLIC_KEY_FILE", environ={"JWT_SECRET": "x"})


def test_entry_point_prints_one_line_and_exits_2(run_python) -> None:
    script = (
        "from loyalty_common import entry_point, env_int\n"
        "@entry_point('demo')\n"
        "def main():\n"
        "    env_int('HTTP_PORT', 1, environ={'HTTP_PORT': 'x'})\n"
        "main()\n"
    )
    result = run_python(script)
    assert result.returncode == 2
    assert result.stderr == "demo: HTTP_PORT: must be an integer, got 'x'\n"


def test_the_top_level_imports_only_the_standard_library(packages_imported_by) -> None:
    third_party = ("redis", "jwt", "cryptography", "bottle", "gunicorn")
    assert packages_imported_by("loyalty_common", third_party) == []


def test_redis_settings(tmp_path: Path) -> None:
    password = tmp_path / "pw"
    password.write_text("from-file\nsecond\n")
    settings = redis_settings_from_env(
        {"REDIS_URL": "redis://:in-url@h:1/2", "REDIS_PASSWORD_FILE": str(password)}
    )
    assert settings.password == "from-file"
    assert "from-file" not in repr(settings)
    client = make_redis(settings)
    kwargs = client.connection_pool.connection_kwargs
    assert kwargs["password"] == "from-file"
    assert (kwargs["host"], kwargs["port"], kwargs["db"]) == ("h", 1, 2)
    assert kwargs["socket_timeout"] == 2.0


def test_key_names_follow_the_interfaces_document() -> None:
    assert user_key(1) == "loyalty:user:1"
    assert processed_key("t") == "loyalty:processed:t"
    assert idempotency_key(1, "k") == "loyalty:idempotency:1:k"


def test_every_shared_key_name_is_used_by_a_service() -> None:
    services = Path(__file__).resolve().parents[2]
    sources = "\n".join(
        path.read_text()
        for path in services.glob("*/src/*/*.py")
        if path.parent.name != "loyalty_common"
    )
    unused = [name for name in keys.__all__ if not re.search(rf"\b{name}\b", sources)]
    assert unused == []


# ------------------------------------------------------------------- tokens


def _claims(**over: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {
        "user_id": 1, "username": "alice", "can_transact": True, "sub": "1",
        "iat": now, "exp": now + 30, "jti": uuid.uuid4().hex, "iss": "loyalty-auth",
    }  # fmt: skip
    claims.update(over)
    return claims


def test_verifies_a_pyjwt_token(jwt_keys: Any) -> None:
    verifier = TokenVerifier(jwt_keys.public_key)
    token = jwt.encode(_claims(), jwt_keys.private_key, algorithm="EdDSA")
    claims = verifier.verify(token)
    assert (claims.user_id, claims.username, claims.can_transact) == (1, "alice", True)


def test_expiry_has_no_leeway(jwt_keys: Any) -> None:
    verifier = TokenVerifier(jwt_keys.public_key)
    now = int(time.time())
    token = jwt.encode(_claims(iat=now - 30, exp=now), jwt_keys.private_key, algorithm="EdDSA")
    with pytest.raises(InvalidToken, match="expired"):
        verifier.verify(token)


def test_cache_rechecks_expiry(jwt_keys: Any) -> None:
    verifier = TokenVerifier(jwt_keys.public_key, cache_size=2)
    exp = time.time() + 1.2
    token = jwt.encode(_claims(exp=exp), jwt_keys.private_key, algorithm="EdDSA")
    assert verifier.verify(token) is verifier.verify(token)  # second from the cache
    time.sleep(max(0.0, int(exp) - time.time()) + 0.01)
    with pytest.raises(InvalidToken):
        verifier.verify(token)


def test_cache_stays_bounded(jwt_keys: Any) -> None:
    verifier = TokenVerifier(jwt_keys.public_key, cache_size=4)
    for _ in range(10):
        verifier.verify(jwt.encode(_claims(), jwt_keys.private_key, algorithm="EdDSA"))
    assert len(verifier._cache) <= 4


@pytest.mark.parametrize(
    "header",
    ['{"alg":"HS256"}', '{"alg":"none"}', '{"alg":"eddsa"}', '{"alg":"EdDSA","crit":["x"]}', "[]"],
)
def test_other_headers_are_refused_even_with_a_valid_signature(jwt_keys: Any, header: str) -> None:
    import base64
    import json

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    signing_input = f"{b64(header.encode())}.{b64(json.dumps(_claims()).encode())}"
    token = f"{signing_input}.{b64(jwt_keys.private_key.sign(signing_input.encode()))}"
    with pytest.raises(InvalidToken):
        TokenVerifier(jwt_keys.public_key).verify(token)


def test_tokens_are_decoded_by_pyjwt_once_while_cached(
    jwt_keys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[dict[str, Any]] = []
    decode = jwt.decode

    def spy(*args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs)
        return decode(*args, **kwargs)

    monkeypatch.setattr(jwt, "decode", spy)
    verifier = TokenVerifier(jwt_keys.public_key, "loyalty-auth", cache_size=8)
    token = jwt.encode(_claims(), jwt_keys.private_key, algorithm="EdDSA")
    assert verifier.verify(token) is verifier.verify(token)
    assert len(calls) == 1
    assert calls[0]["algorithms"] == ["EdDSA"]
    assert calls[0]["issuer"] == "loyalty-auth"
    assert set(calls[0]["options"]["require"]) == set(REQUIRED_CLAIMS)


@pytest.mark.parametrize(
    ("change", "accepted"),
    [
        ({"exp": str(int(time.time()) + 30)}, False),  # PyJWT alone would take int("...")
        ({"iat": True}, False),
        ({"nbf": "0"}, False),
        ({"aud": "someone"}, True),  # never checked: the Auth API writes none
    ],
)
def test_claim_types_are_checked_as_before(
    jwt_keys: Any, change: dict[str, Any], accepted: bool
) -> None:
    token = jwt.encode(_claims(**change), jwt_keys.private_key, algorithm="EdDSA")
    verifier = TokenVerifier(jwt_keys.public_key)
    if accepted:
        assert verifier.verify(token).user_id == 1
    else:
        with pytest.raises(InvalidToken):
            verifier.verify(token)


def test_padded_token_is_refused(jwt_keys: Any) -> None:
    token = jwt.encode(_claims(), jwt_keys.private_key, algorithm="EdDSA")
    assert len(token.rsplit(".", 1)[1]) % 4 == 2  # a 64-byte signature
    with pytest.raises(InvalidToken):
        TokenVerifier(jwt_keys.public_key).verify(token + "==")


@pytest.mark.parametrize("token", ["", "a.b", "a.b.c.d", "a.b.c", "a.b.c=", "é.b.c", "x" * 5000])
def test_malformed_tokens_are_refused(jwt_keys: Any, token: str) -> None:
    with pytest.raises(InvalidToken):
        TokenVerifier(jwt_keys.public_key).verify(token)


# -- Sentinel ------------------------------------------------------------------


def test_sentinel_list_parses_names_ipv4_and_bracketed_ipv6() -> None:
    assert parse_sentinels(None) == () and parse_sentinels("  ") == ()
    assert parse_sentinels(" redis-1:26379, 10.0.0.2:26380 ,[fd00::3]:1") == (
        ("redis-1", 26379),
        ("10.0.0.2", 26380),
        ("fd00::3", 1),
    )


@pytest.mark.parametrize(
    "value",
    [
        "redis-1",
        "redis-1:",
        ":26379",
        "redis-1:0",
        "redis-1:65536",
        "redis-1:+1",
        "redis-1:2637 9",
        "fd00::3:26379",
        "[fd00::3]",
        "[fd00::3]26379",
        "[not-an-address]:26379",
        "redis-1:26379,",
        "redis-1:26379,redis-1:26379",
        "user@redis-1:26379",
        "redis://redis-1:26379",
    ],
)
def test_bad_sentinel_lists_name_the_variable(value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        redis_settings_from_env({"REDIS_SENTINELS": value})
    assert caught.value.variable == "REDIS_SENTINELS"
    assert "\n" not in str(caught.value)


def test_sentinel_settings_keep_the_url_user_password_and_database(tmp_path: Path) -> None:
    password_file = tmp_path / "sentinel.password"
    password_file.write_text("sentinel-secret\n")
    settings = redis_settings_from_env(
        {
            "REDIS_URL": "redis://loyalty:from-url@ignored.example:1/3",
            "REDIS_SENTINELS": "127.0.0.1:26379,[::1]:26380",
            "REDIS_SENTINEL_MASTER": "payments",
            "REDIS_SENTINEL_PASSWORD_FILE": str(password_file),
        }
    )
    assert settings.sentinels == (("127.0.0.1", 26379), ("::1", 26380))
    assert settings.sentinel_master == "payments"
    assert "sentinel-secret" not in repr(settings)
    client = make_redis(settings)  # no I/O: nothing listens on these ports
    pool = client.connection_pool
    assert isinstance(pool, SentinelConnectionPool) and pool.service_name == "payments"
    kwargs = pool.connection_kwargs
    assert (kwargs["username"], kwargs["password"], kwargs["db"]) == ("loyalty", "from-url", 3)
    assert "host" not in kwargs or kwargs["host"] != "ignored.example"
    sentinel = pool.sentinel_manager.sentinels[0].connection_pool.connection_kwargs
    assert sentinel["password"] == "sentinel-secret"
    assert primary_address(client) is None  # not connected yet


def test_sentinels_unset_keeps_the_url_address() -> None:
    settings = redis_settings_from_env({"REDIS_URL": "redis://127.0.0.1:6390/2"})
    assert settings.sentinels == () and settings.sentinel_master == "loyalty"
    client = make_redis(settings)
    assert client.connection_pool.connection_kwargs["port"] == 6390
    assert primary_address(client) is None


def test_sentinels_refuse_a_unix_socket_url() -> None:
    with pytest.raises(ConfigError) as caught:
        redis_settings_from_env(
            {"REDIS_URL": "unix:///run/redis.sock", "REDIS_SENTINELS": "127.0.0.1:26379"}
        )
    assert caught.value.variable == "REDIS_SENTINELS"
