"""Start-up refusals of transaction-api: one line naming the variable, exit 2."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest


@pytest.fixture
def files(tmp_path: Path, jwt_keys: Any) -> dict[str, Path]:
    garbage = tmp_path / "garbage.pub"
    garbage.write_text("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
    empty_password = tmp_path / "empty.password"
    empty_password.write_text("\n")
    return {"garbage": garbage, "private": jwt_keys.private_path, "empty_password": empty_password}


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("HTTP_PORT", "5000x"),
        ("HTTP_PORT", "65536"),
        ("WEB_CONCURRENCY", "many"),
        ("WEB_CONCURRENCY", "-2"),
        ("GUNICORN_TIMEOUT", "soon"),
        ("GUNICORN_THREADS", "0"),
        ("GUNICORN_KEEPALIVE", "forever"),
        ("LOG_LEVEL", "chatty"),
        ("REDIS_URL", "http://127.0.0.1:6379/0"),
        ("REDIS_URL", "redis://127.0.0.1:notaport/0"),
        ("REDIS_URL", "redis://127.0.0.1:6379/zero"),
        ("REDIS_URL", "redis:///0"),
        ("REDIS_PASSWORD_FILE", "/nonexistent/redis.password"),
        ("REDIS_PASSWORD_FILE", "<empty_password>"),
        ("REDIS_SOCKET_TIMEOUT", "fast"),
        ("REDIS_SOCKET_TIMEOUT", "0"),
        ("REDIS_SOCKET_TIMEOUT", "nan"),
        ("JWT_PUBLIC_KEY_FILE", "/nonexistent/jwt.pub"),
        ("JWT_PUBLIC_KEY_FILE", "<garbage>"),
        ("JWT_PUBLIC_KEY_FILE", "<private>"),
        ("JWT_PUBLIC_KEY_FILE", None),
        ("MAX_AMOUNT", "0"),
        ("MAX_AMOUNT", "1e6"),
        ("IDEMPOTENCY_TTL_SECONDS", "a day"),
        ("IDEMPOTENCY_TTL_SECONDS", "0"),
        ("REDIS_SENTINELS", "127.0.0.1"),
        ("REDIS_SENTINELS", "127.0.0.1:26379,sentinel-2:0"),
        ("REDIS_SENTINELS", "sentinel-1:65536"),
        ("REDIS_SENTINELS", "::1:26379"),
        ("REDIS_SENTINELS", "[::1]:26379,,[::2]:26379"),
        ("REDIS_SENTINEL_MASTER", "two words"),
        ("REDIS_SENTINEL_PASSWORD_FILE", "/nonexistent/sentinel.password"),
        ("REDIS_SENTINEL_PASSWORD_FILE", "<empty_password>"),
        ("REDIS_WAIT_REPLICAS", "one"),
        ("REDIS_WAIT_REPLICAS", "-1"),
        ("REDIS_WAIT_TIMEOUT_MS", "0"),
        ("REDIS_WAIT_TIMEOUT_MS", "30000"),
    ],
)
def test_bad_variable_stops_start_up_with_one_line(
    kit: Any, jwt_keys: Any, files: dict[str, Path], variable: str, value: str | None
) -> None:
    env = kit.transaction_env(jwt_keys, "redis://127.0.0.1:6379/0")
    if value is None:
        del env[variable]
    elif value.startswith("<"):
        env[variable] = str(files[value.strip("<>")])
    else:
        env[variable] = value
    kit.assert_refused_at_start_up(
        kit.run_console("transaction-api", env), "transaction-api", variable
    )


def test_jwt_secret_alone_explains_the_key_pair(kit: Any) -> None:
    result = kit.run_console("transaction-api", kit.service_env(JWT_SECRET="old-shared-secret"))
    kit.assert_refused_at_start_up(result, "transaction-api", "JWT_SECRET")
    assert "Ed25519" in result.stderr
    assert "openssl pkey -in jwt.key -pubout -out jwt.pub" in result.stderr
    assert "JWT_PUBLIC_KEY_FILE" in result.stderr
