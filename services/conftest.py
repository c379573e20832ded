"""Fixtures shared by every services test: real processes, nothing mocked.

- ``RedisServer`` / ``redis_server`` (per test) / ``shared_redis`` (per run):
  a real redis-server on a free loopback port in a temp directory, which can
  be stopped and started again on the same port.
- ``jwt_keys`` / ``other_keys``: Ed25519 key pairs written as PEM files.
- ``users_file``: alice and bob may transact, charlie may not (DEMO_PASSWORD).
- ``spawn``: start a console script (``auth-api``, ``transaction-api``) under
  real gunicorn on a free port with the given environment; stopped after the
  test.  ``auth_api`` / ``transaction_api`` are per-run instances.
- ``call``: one HTTP request with http.client, JSON decoded.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

BIN = Path(sys.executable).parent
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
DEMO_PASSWORD = "correct horse battery staple"
# Environment variables the services read: never inherited from the caller's
# shell, so a developer's exported REDIS_URL cannot change a test.
SERVICE_VARIABLES = [
    "HTTP_HOST",
    "HTTP_PORT",
    "WEB_CONCURRENCY",
    "GUNICORN_TIMEOUT",
    "LOG_LEVEL",
    "REDIS_URL",
    "REDIS_PASSWORD_FILE",
    "REDIS_SOCKET_TIMEOUT",
    "JWT_ISSUER",
    "JWT_SECRET",
    "JWT_PRIVATE_KEY_FILE",
    "JWT_PUBLIC_KEY_FILE",
    "USERS_FILE",
    "TOKEN_TTL_SECONDS",
    "MAX_AMOUNT",
    "IDEMPOTENCY_TTL_SECONDS",
]


def wait_until(
    predicate: Callable[[], object], timeout: float = 10.0, interval: float = 0.02
) -> None:
    """Poll ``predicate`` until it is truthy; AssertionError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {predicate}")
        time.sleep(interval)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --------------------------------------------------------------------- Redis


class RedisServer:
    """One redis-server on a free port; stop/kill and start again keep the port."""

    def __init__(self, directory: Path, *, durable: bool = False) -> None:
        self.directory = directory
        self.port = free_port()
        self.durable = durable
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        persistence = (
            ["--appendonly", "yes", "--appendfsync", "always"]
            if self.durable
            else ["--appendonly", "no"]
        )
        self.process = subprocess.Popen(
            [
                REDIS_SERVER,
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--dir", str(self.directory),
                *persistence,
                "--logfile", str(self.directory / "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        client = self.client()
        try:
            wait_until(lambda: _pings(client), timeout=10)
        finally:
            client.close()

    def stop(self) -> None:
        """Stop gracefully (SIGTERM), as systemctl stop would."""
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None

    def kill(self) -> None:
        """Stop abruptly, as a crash or an OOM kill would."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, decode_responses=True, socket_timeout=5)


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except (redis.ConnectionError, redis.exceptions.BusyLoadingError):
        return False


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test's own."""
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.kill()


@pytest.fixture(scope="session")
def shared_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One redis-server for the whole run (never stopped by a test)."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.kill()


# ---------------------------------------------------------------- keys, users


@dataclass(frozen=True)
class KeyPair:
    private_path: Path
    public_path: Path
    private_key: Ed25519PrivateKey
    public_key: Ed25519PublicKey

    @property
    def public_pem(self) -> bytes:
        return self.public_path.read_bytes()


def make_key_pair(directory: Path) -> KeyPair:
    """Write jwt.key (PKCS#8) and jwt.pub (SPKI) as openssl would."""
    directory.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    private_path = directory / "jwt.key"
    public_path = directory / "jwt.pub"
    private_path.write_bytes(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    public_path.write_bytes(
        key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    )
    return KeyPair(private_path, public_path, key, key.public_key())


@pytest.fixture(scope="session")
def jwt_keys(tmp_path_factory: pytest.TempPathFactory) -> KeyPair:
    """The platform's key pair."""
    return make_key_pair(tmp_path_factory.mktemp("keys"))


@pytest.fixture(scope="session")
def other_keys(tmp_path_factory: pytest.TempPathFactory) -> KeyPair:
    """A key pair the services do not trust (for forged tokens)."""
    return make_key_pair(tmp_path_factory.mktemp("other-keys"))


@pytest.fixture(scope="session")
def users_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """alice (1) and bob (2) may transact; charlie (3) may not."""
    from auth_api.passwords import hash_password

    users = [
        {"id": 1, "username": "alice", "can_transact": True},
        {"id": 2, "username": "bob", "can_transact": True},
        {"id": 3, "username": "charlie", "can_transact": False},
    ]
    for user in users:
        user["password_hash"] = hash_password(DEMO_PASSWORD)
    path = tmp_path_factory.mktemp("users") / "users.json"
    path.write_text(json.dumps(users), encoding="utf-8")
    return path


# ------------------------------------------------------------------ processes


def service_env(**variables: object) -> dict[str, str]:
    """The caller's environment minus service variables, plus ``variables``.

    A value of None leaves the variable unset.
    """
    env = {k: v for k, v in os.environ.items() if k not in SERVICE_VARIABLES}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["HTTP_HOST"] = "127.0.0.1"
    env["WEB_CONCURRENCY"] = "1"
    for name, value in variables.items():
        if value is not None:
            env[name] = str(value)
    return env


def run_console(
    script: str, env: dict[str, str], stdin: str | None = None, timeout: float = 20
) -> subprocess.CompletedProcess[str]:
    """Run a console script to completion (for start-up failures)."""
    return subprocess.run(
        [str(BIN / script)],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@dataclass
class Service:
    """A console script serving HTTP under gunicorn."""

    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_service(script: str, env: dict[str, str], log_path: Path) -> Service:
    """Start ``script`` with HTTP_PORT set to a free port; wait for /health."""
    port = free_port()
    env = {**env, "HTTP_PORT": str(port)}
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(BIN / script)], env=env, stdout=log, stderr=subprocess.STDOUT
        )
    service = Service(process, port, log_path)

    def healthy() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"{script} exited {process.returncode}:\n{service.log()}")
        try:
            return call(port, "GET", "/health").status == 200
        except OSError:
            return False

    try:
        wait_until(healthy, timeout=20, interval=0.05)
    except BaseException:
        service.stop()
        raise
    return service


@dataclass
class Spawner:
    directory: Path
    started: list[Service] = field(default_factory=list)

    def __call__(self, script: str, env: dict[str, str]) -> Service:
        log_path = self.directory / f"{script}-{len(self.started)}.log"
        service = start_service(script, env, log_path)
        self.started.append(service)
        return service

    def stop_all(self) -> None:
        for service in reversed(self.started):
            service.stop()


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Spawner]:
    """``spawn(script, env)`` starts a service for this test only."""
    spawner = Spawner(tmp_path)
    yield spawner
    spawner.stop_all()


@pytest.fixture(scope="session")
def session_spawn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Spawner]:
    spawner = Spawner(tmp_path_factory.mktemp("services"))
    yield spawner
    spawner.stop_all()


def auth_env(keys: KeyPair, users: Path, **variables: object) -> dict[str, str]:
    """Environment of an Auth API using ``keys`` and ``users``."""
    return service_env(JWT_PRIVATE_KEY_FILE=keys.private_path, USERS_FILE=users, **variables)


def transaction_env(keys: KeyPair, redis_url: str, **variables: object) -> dict[str, str]:
    """Environment of a Transaction API trusting ``keys`` and using ``redis_url``."""
    return service_env(JWT_PUBLIC_KEY_FILE=keys.public_path, REDIS_URL=redis_url, **variables)


@pytest.fixture(scope="session")
def auth_api(session_spawn: Spawner, jwt_keys: KeyPair, users_file: Path) -> Service:
    """An Auth API with the defaults (30-second tokens), two workers."""
    return session_spawn("auth-api", auth_env(jwt_keys, users_file, WEB_CONCURRENCY=2))


@pytest.fixture(scope="session")
def transaction_api(
    session_spawn: Spawner, jwt_keys: KeyPair, shared_redis: RedisServer
) -> Service:
    """A Transaction API on ``shared_redis``, two workers."""
    return session_spawn(
        "transaction-api",
        transaction_env(jwt_keys, shared_redis.url, WEB_CONCURRENCY=2, MAX_AMOUNT=100000),
    )


# ----------------------------------------------------------------------- HTTP


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", "")


def call(
    port: int,
    method: str,
    path: str,
    body: bytes | str | dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
    *,
    form: dict[str, str] | None = None,
) -> Reply:
    """One request to 127.0.0.1:port; a dict body is sent as JSON."""
    headers = dict(headers or {})
    data: bytes | None
    if form is not None:
        from urllib.parse import urlencode

        data = urlencode(form).encode()
        headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
    elif isinstance(body, dict):
        data = json.dumps(body).encode()
        headers.setdefault("Content-Type", "application/json")
    elif isinstance(body, str):
        data = body.encode()
    else:
        data = body
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    try:
        connection.request(method, path, body=data, headers=headers)
        response = connection.getresponse()
        return Reply(response.status, response.headers, response.read())
    finally:
        connection.close()


def httpie(*args: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    """Run HTTPie itself (``http``), printing headers and body."""
    return subprocess.run(
        [str(BIN / "http"), "--ignore-stdin", "--print=hb", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def assert_refused_at_start_up(
    result: subprocess.CompletedProcess[str], program: str, variable: str
) -> None:
    """Exit code 2 and exactly one line on stderr, naming the variable; no traceback."""
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"{program}: ")
    assert variable in lines[0]
    assert "Traceback" not in result.stderr + result.stdout


class Kit:
    """The helpers above, handed to tests as the ``kit`` fixture.

    Tests do not ``import conftest``: several conftest.py files exist under
    services/ and pytest imports each as the same module name.
    """

    DEMO_PASSWORD = DEMO_PASSWORD
    call = staticmethod(call)
    httpie = staticmethod(httpie)
    service_env = staticmethod(service_env)
    auth_env = staticmethod(auth_env)
    transaction_env = staticmethod(transaction_env)
    run_console = staticmethod(run_console)
    assert_refused_at_start_up = staticmethod(assert_refused_at_start_up)
    wait_until = staticmethod(wait_until)
    make_key_pair = staticmethod(make_key_pair)
    free_port = staticmethod(free_port)
    BIN = BIN


@pytest.fixture(scope="session")
def kit() -> type[Kit]:
    """Helpers: kit.call(port, method, path, ...), kit.httpie(...), envs, etc."""
    return Kit
