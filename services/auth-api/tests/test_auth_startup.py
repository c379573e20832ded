"""Start-up refusals of auth-api, and the password-hashing command."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from auth_api.passwords import hash_password, parse_hash, verify_password

PASSWORDS_PY = Path(__file__).parents[1] / "src" / "auth_api" / "passwords.py"


@pytest.fixture
def files(tmp_path: Path, jwt_keys: Any, users_file: Path) -> dict[str, Path]:
    plain = tmp_path / "plain.json"
    plain.write_text(
        json.dumps([{"id": 1, "username": "a", "password": "x", "can_transact": True}])
    )
    bad_hash = tmp_path / "bad-hash.json"
    bad_hash.write_text(
        json.dumps([{"id": 1, "username": "a", "password_hash": "md5$x", "can_transact": True}])
    )
    not_json = tmp_path / "not.json"
    not_json.write_text("[{")
    empty = tmp_path / "empty.json"
    empty.write_text("[]")
    garbage = tmp_path / "garbage.key"
    garbage.write_text("not a key\n")
    return {
        "plain": plain,
        "bad_hash": bad_hash,
        "not_json": not_json,
        "empty": empty,
        "garbage": garbage,
        "public": jwt_keys.public_path,
    }


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("HTTP_PORT", "abc"),
        ("HTTP_PORT", "70000"),
        ("HTTP_PORT", "0"),
        ("HTTP_HOST", "a b"),
        ("WEB_CONCURRENCY", "0"),
        ("WEB_CONCURRENCY", "two"),
        ("GUNICORN_TIMEOUT", "-1"),
        ("GUNICORN_THREADS", "0"),
        ("GUNICORN_KEEPALIVE", "forever"),
        ("LOG_LEVEL", "LOUD"),
        ("TOKEN_TTL_SECONDS", "0"),
        ("TOKEN_TTL_SECONDS", "1.5"),
        ("JWT_PRIVATE_KEY_FILE", "/nonexistent/jwt.key"),
        ("JWT_PRIVATE_KEY_FILE", "<garbage>"),
        ("JWT_PRIVATE_KEY_FILE", "<public>"),
        ("JWT_PRIVATE_KEY_FILE", None),
        ("USERS_FILE", "/nonexistent/users.json"),
        ("USERS_FILE", "<plain>"),
        ("USERS_FILE", "<bad_hash>"),
        ("USERS_FILE", "<not_json>"),
        ("USERS_FILE", "<empty>"),
        ("USERS_FILE", None),
    ],
)
def test_bad_variable_stops_start_up_with_one_line(
    kit: Any,
    jwt_keys: Any,
    users_file: Path,
    files: dict[str, Path],
    variable: str,
    value: str | None,
) -> None:
    env = kit.auth_env(jwt_keys, users_file)
    if value is None:
        del env[variable]
    elif value.startswith("<"):
        env[variable] = str(files[value.strip("<>")])
    else:
        env[variable] = value
    kit.assert_refused_at_start_up(kit.run_console("auth-api", env), "auth-api", variable)


def test_jwt_secret_alone_explains_the_key_pair(kit: Any, users_file: Path) -> None:
    env = kit.service_env(JWT_SECRET="the-old-shared-secret", USERS_FILE=users_file)
    result = kit.run_console("auth-api", env)
    kit.assert_refused_at_start_up(result, "auth-api", "JWT_SECRET")
    assert "Ed25519" in result.stderr
    assert "openssl genpkey -algorithm ed25519" in result.stderr
    assert "JWT_PRIVATE_KEY_FILE" in result.stderr


def test_jwt_secret_beside_the_key_file_is_ignored(
    kit: Any, spawn: Any, jwt_keys: Any, users_file: Path
) -> None:
    service = spawn("auth-api", kit.auth_env(jwt_keys, users_file, JWT_SECRET="old"))
    assert kit.call(service.port, "GET", "/health").status == 200


# ---------------------------------------------------------------- passwords


def test_hash_format_and_verification() -> None:
    encoded = hash_password("s3cret")
    scheme, n, r, p, salt, digest = encoded.split("$")
    assert (scheme, n, r, p) == ("scrypt", "16384", "8", "1")
    assert "=" not in salt + digest
    assert len(parse_hash(encoded)[3]) == 16
    assert verify_password("s3cret", encoded)
    assert not verify_password("s3cret ", encoded)
    assert not verify_password("s3cret", "scrypt$garbage")
    assert hash_password("s3cret") != encoded  # fresh salt each time


def test_plain_script_with_system_python_reads_stdin(tmp_path: Path) -> None:
    # The control node runs the file with its own python3, package not installed.
    python = shutil.which("python3", path="/usr/bin:/bin") or "python3"
    result = subprocess.run(
        [python, str(PASSWORDS_PY)],
        input="pass word\n",
        capture_output=True,
        text=True,
        check=False,
        timeout=20,
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
    encoded = result.stdout.strip()
    assert verify_password("pass word", encoded)


def test_console_script_hashes_stdin(kit: Any) -> None:
    result = kit.run_console("auth-api-hash-password", kit.service_env(), stdin="alice-pw\n")
    assert result.returncode == 0, result.stderr
    assert verify_password("alice-pw", result.stdout.strip())


def test_console_script_refuses_an_empty_password(kit: Any) -> None:
    result = kit.run_console("auth-api-hash-password", kit.service_env(), stdin="\n")
    assert result.returncode == 1
    assert "empty" in result.stderr and "Traceback" not in result.stderr
