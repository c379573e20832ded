"""Fixtures shared by every services test: real processes, nothing mocked.

- ``RedisServer`` / ``redis_server`` (per test) / ``shared_redis`` (per run):
  a real redis-server on a free loopback port in a temp directory, which can
  be stopped and started again on the same port.
- ``RedisHA`` / ``redis_ha`` (per test): a primary, two replicas and three
  Sentinels (the same redis-server binary with ``--sentinel``) watching it as
  ``loyalty``, Sentinels protected by a password; ``redis_ha.env()`` gives the
  REDIS_* variables of a service that finds the primary through them.
- ``jwt_keys`` / ``other_keys``: Ed25519 key pairs written as PEM files.
- ``pki`` (per run): a platform CA with a server and a client certificate
  for 127.0.0.1 and localhost, and another CA with a client certificate that
  the services must refuse (``Pki``: the files' paths).
- ``users_file``: alice and bob may transact, charlie may not (DEMO_PASSWORD).
- ``spawn``: start a console script (``auth-api``, ``transaction-api``) under
  real gunicorn on a free port with the given environment; stopped after the
  test.  ``auth_api`` / ``transaction_api`` are per-run instances.
- ``call``: one HTTP request with http.client, JSON decoded.
- ``run_python``: a Python snippet run by this interpreter in a process of
  its own (how an entry point exits); ``packages_imported_by``: which of some
  top-level packages a fresh process has loaded after given imports.
"""

from __future__ import annotations

import datetime
import http.client
import ipaddress
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
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
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
    "TLS_CERT_FILE",
    "TLS_KEY_FILE",
    "TLS_CLIENT_CA_FILE",
    "METRICS_ENABLED",
    "PROMETHEUS_MULTIPROC_DIR",
    "WORKER_METRICS_PORT",
    "WORKER_METRICS_INSTANCE",
    "REDIS_URL",
    "REDIS_PASSWORD_FILE",
    "REDIS_SOCKET_TIMEOUT",
    "REDIS_SENTINELS",
    "REDIS_SENTINEL_MASTER",
    "REDIS_SENTINEL_PASSWORD_FILE",
    "REDIS_WAIT_REPLICAS",
    "REDIS_WAIT_TIMEOUT_MS",
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


class _RedisProcess:
    """A redis-server process (a server or a Sentinel) on its own free port."""

    port: int
    process: subprocess.Popen[bytes] | None

    def client(self) -> redis.Redis:
        raise NotImplementedError

    def _launch(self, argv: list[str]) -> None:
        """Start ``argv`` and return once it answers PING."""
        self.process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = self.client()
        try:
            wait_until(lambda: _pings(client), timeout=10)
        finally:
            client.close()

    def kill(self) -> None:
        """Stop abruptly, as a crash or an OOM kill would."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None


class RedisServer(_RedisProcess):
    """One redis-server on a free port; stop/kill and start again keep the port."""

    def __init__(
        self, directory: Path, *, durable: bool = False, replicaof: int | None = None
    ) -> None:
        self.directory = directory
        self.port = free_port()
        self.durable = durable
        self.replicaof = replicaof
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
        if self.replicaof is not None:
            persistence += ["--replicaof", "127.0.0.1", str(self.replicaof)]
        # Any server may become a primary; the default 5 s pause before a
        # full sync to a new replica would dominate the tests' time.
        persistence += ["--repl-diskless-sync-delay", "0"]
        self._launch(
            [
                REDIS_SERVER,
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--dir", str(self.directory),
                *persistence,
                "--logfile", str(self.directory / "redis.log"),
            ]
        )  # fmt: skip

    def stop(self) -> None:
        """Stop gracefully (SIGTERM), as systemctl stop would."""
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, decode_responses=True, socket_timeout=5)


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except (redis.ConnectionError, redis.exceptions.BusyLoadingError):
        return False


SENTINEL_MASTER = "loyalty"
SENTINEL_PASSWORD = "sentinel-test-password"


class SentinelServer(_RedisProcess):
    """One Sentinel (``redis-server sentinel.conf --sentinel``) on a free port."""

    def __init__(self, directory: Path, primary_port: int) -> None:
        self.directory = directory
        self.port = free_port()
        self.primary_port = primary_port
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        config = self.directory / "sentinel.conf"  # Sentinel rewrites it: its own copy
        # Quorum 2 of 3; a primary silent for 1 s is down, so a failover
        # takes a few seconds instead of the production defaults' minute.
        config.write_text(
            f"port {self.port}\n"
            "bind 127.0.0.1\n"
            f"dir {self.directory}\n"
            f"logfile {self.directory / 'sentinel.log'}\n"
            f"requirepass {SENTINEL_PASSWORD}\n"
            f"sentinel monitor {SENTINEL_MASTER} 127.0.0.1 {self.primary_port} 2\n"
            f"sentinel down-after-milliseconds {SENTINEL_MASTER} 1000\n"
            f"sentinel failover-timeout {SENTINEL_MASTER} 5000\n"
            f"sentinel parallel-syncs {SENTINEL_MASTER} 2\n",
            encoding="utf-8",
        )
        self._launch([REDIS_SERVER, str(config), "--sentinel"])

    def client(self) -> redis.Redis:
        return redis.Redis(
            port=self.port, password=SENTINEL_PASSWORD, decode_responses=True, socket_timeout=5
        )


class RedisHA:
    """A primary, two replicas and three Sentinels, all on loopback.

    Two replicas, so that after a failover the new primary still has one and
    a Transaction API with REDIS_WAIT_REPLICAS=1 can go on answering 202.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.primary = RedisServer(directory / "primary")
        self.replicas: list[RedisServer] = []
        self.sentinels: list[SentinelServer] = []
        self.password_file = directory / "sentinel.password"

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.password_file.write_text(SENTINEL_PASSWORD + "\n", encoding="utf-8")
        self.primary.directory.mkdir(parents=True)
        self.primary.start()
        for n in (1, 2):
            replica = RedisServer(self.directory / f"replica-{n}", replicaof=self.primary.port)
            replica.directory.mkdir(parents=True)
            self.replicas.append(replica)
            replica.start()
        # Sentinels learn the replicas from the primary's INFO at once only
        # when they are already attached.
        for replica in self.replicas:
            client = replica.client()
            try:
                wait_until(
                    lambda c=client: c.info("replication")["master_link_status"] == "up",
                    timeout=10,
                )
            finally:
                client.close()
        # "up" is not yet "acknowledging": the first acknowledgements after a
        # full sync can take most of a second.  Tests start once both flow.
        primary = self.primary.client()
        try:
            primary.set("ha:warm-up", "1")
            wait_until(lambda: primary.wait(2, 100) == 2, timeout=10)
            primary.delete("ha:warm-up")
        finally:
            primary.close()
        for n in (1, 2, 3):
            sentinel = SentinelServer(self.directory / f"sentinel-{n}", self.primary.port)
            self.sentinels.append(sentinel)
            sentinel.start()

    def stop(self) -> None:
        """Kill everything, stopped (SIGSTOP) processes included."""
        for process in (*self.sentinels, *self.replicas, self.primary):
            if process.process is not None and process.process.poll() is None:
                process.process.send_signal(signal.SIGCONT)
            process.kill()

    @property
    def servers(self) -> list[RedisServer]:
        return [self.primary, *self.replicas]

    # The REDIS_URL to give with env(): port 1, where nothing listens, since
    # with REDIS_SENTINELS its host and port must not be used.
    url = "redis://127.0.0.1:1/0"

    def env(self) -> dict[str, str]:
        """REDIS_SENTINELS and REDIS_SENTINEL_PASSWORD_FILE of a service using these Sentinels."""
        return {
            "REDIS_SENTINELS": ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels),
            "REDIS_SENTINEL_PASSWORD_FILE": str(self.password_file),
        }

    def primary_port(self) -> int:
        """The port the Sentinels name as the primary right now."""
        client = self.sentinels[0].client()
        try:
            _host, port = client.sentinel_get_master_addr_by_name(SENTINEL_MASTER)
            return int(port)
        finally:
            client.close()

    def server_on(self, port: int) -> RedisServer:
        return next(server for server in self.servers if server.port == port)

    def wait_until_acquainted(self, timeout: float = 15) -> None:
        """Each Sentinel knows the two others and both replicas (needed to fail over)."""

        def acquainted() -> bool:
            for sentinel in self.sentinels:
                client = sentinel.client()
                try:
                    state = client.sentinel_master(SENTINEL_MASTER)
                finally:
                    client.close()
                if state["num-other-sentinels"] < 2 or state["num-slaves"] < 2:
                    return False
            return True

        wait_until(acquainted, timeout=timeout, interval=0.1)


class AofRedis:
    """redis-server with append-only persistence in a directory of the test's,
    backed up and restored the way roles/redis_backup and playbooks/restore.yml
    do it (docs/backups.md)."""

    def __init__(self, directory: Path, port: int) -> None:
        self.directory = directory
        self.port = port
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, *extra: str) -> None:
        self.process = subprocess.Popen(
            [
                shutil.which("redis-server") or "/usr/bin/redis-server",
                "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--dir", str(self.directory), "--appendonly", "yes", "--appendfsync", "always",
                "--logfile", str(self.directory / "redis.log"), *extra,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip

    def client(self) -> redis.Redis:
        # No retries: redis-py would otherwise wait through LOADING itself.
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        return redis.Redis(
            port=self.port, decode_responses=True, socket_timeout=5, retry=Retry(NoBackoff(), 0)
        )

    def state(self) -> str:
        """ "data", "loading" or "down": what DBSIZE gets (PING is answered while loading)."""
        client = self.client()
        try:
            client.dbsize()
        except redis.exceptions.BusyLoadingError:
            return "loading"
        except redis.ConnectionError:
            return "down"
        finally:
            client.close()
        return "data"

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=20)
            self.process = None

    @staticmethod
    def rewriting(client: redis.Redis) -> bool:
        persistence = client.info("persistence")
        return bool(persistence["aof_rewrite_in_progress"] or persistence["aof_rewrite_scheduled"])

    def backup(self, dest: Path) -> None:
        """The AOF directory, copied with automatic rewrites paused and none running."""
        client = self.client()
        try:
            client.config_set("auto-aof-rewrite-percentage", 0)
            wait_until(lambda: not self.rewriting(client), timeout=10)
            shutil.copytree(self.directory / "appendonlydir", dest)
        finally:
            client.config_set("auto-aof-rewrite-percentage", 100)
            client.close()

    def restore(self, source: Path, key_load_delay_us: int) -> None:
        """Stopped, the AOF directory replaced by the backup's, started again
        slowed down by key_load_delay_us per key and answering clients
        between small steps of the load (by default every 2 MB loaded)."""
        self.stop()
        shutil.rmtree(self.directory / "appendonlydir")
        shutil.copytree(source, self.directory / "appendonlydir")
        self.start(
            "--key-load-delay", str(key_load_delay_us),
            "--loading-process-events-interval-bytes", "1024",
        )  # fmt: skip


@pytest.fixture
def redis_ha(tmp_path: Path) -> Iterator[RedisHA]:
    """A primary, two replicas and three Sentinels of this test's own."""
    ha = RedisHA(tmp_path / "redis-ha")
    try:
        ha.start()
        yield ha
    finally:
        ha.stop()


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


# ---------------------------------------------------------------------- TLS


@dataclass(frozen=True)
class Pki:
    """The files make_pki wrote (certificates and keys in PEM)."""

    ca: Path
    ca_key: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path
    other_client_cert: Path
    other_client_key: Path


def _subject(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, common_name)])


def _write(
    directory: Path, name: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey
) -> None:
    (directory / f"{name}.crt").write_bytes(cert.public_bytes(Encoding.PEM))
    (directory / f"{name}.key").write_bytes(
        key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    )


def _certificate(
    name: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(_subject(name))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    )


def make_ca(directory: Path, name: str) -> ec.EllipticCurvePrivateKey:
    """<name>.crt and <name>.key: a CA that signs certificates only; its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        _certificate(name, key, _subject(name), key)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write(directory, name, cert, key)
    return key


def make_leaf(directory: Path, name: str, ca_name: str, ca_key: ec.EllipticCurvePrivateKey) -> None:
    """<name>.crt and <name>.key, signed by the CA <ca_name>: for 127.0.0.1
    and localhost, a server's and a client's alike, as the platform's are."""
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        _certificate(name, key, _subject(ca_name), ca_key)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [x509.oid.ExtendedKeyUsageOID.SERVER_AUTH, x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    _write(directory, name, cert, key)


def make_pki(directory: Path) -> Pki:
    platform_ca = make_ca(directory, "platform-ca")
    make_leaf(directory, "server", "platform-ca", platform_ca)
    make_leaf(directory, "client", "platform-ca", platform_ca)
    other_ca = make_ca(directory, "other-ca")
    make_leaf(directory, "other-client", "other-ca", other_ca)
    return Pki(
        *(directory / f for f in ("platform-ca.crt", "platform-ca.key")),
        *(directory / f for f in ("server.crt", "server.key", "client.crt", "client.key")),
        *(directory / f for f in ("other-ca.crt", "other-client.crt", "other-client.key")),
    )


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


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


def bearer(keys: KeyPair, user_id: int = 1, username: str = "alice") -> dict[str, str]:
    """An Authorization header with a fresh 30-second token signed by ``keys``."""
    import jwt

    now = int(time.time())
    claims = {
        "user_id": user_id,
        "username": username,
        "can_transact": True,
        "sub": str(user_id),
        "iat": now,
        "exp": now + 30,
        "jti": os.urandom(16).hex(),
        "iss": "loyalty-auth",
    }
    return {"Authorization": f"Bearer {jwt.encode(claims, keys.private_key, 'EdDSA')}"}


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


REPO_ROOT = Path(__file__).resolve().parents[1]

# The rules roles/redis gives the services' ACL user, read from the role so
# that the tests grant exactly what a deployed Redis grants.
SERVICE_ACL: list[str] = list(
    yaml.safe_load((REPO_ROOT / "roles" / "redis" / "vars" / "main.yml").read_text())[
        "__redis_service_acl_commands"
    ]
)


class Kit:
    """The helpers above, handed to tests as the ``kit`` fixture.

    Tests do not ``import conftest``: several conftest.py files exist under
    services/ and pytest imports each as the same module name.
    """

    DEMO_PASSWORD = DEMO_PASSWORD
    SERVICE_ACL = SERVICE_ACL
    call = staticmethod(call)
    httpie = staticmethod(httpie)
    service_env = staticmethod(service_env)
    auth_env = staticmethod(auth_env)
    transaction_env = staticmethod(transaction_env)
    run_console = staticmethod(run_console)
    assert_refused_at_start_up = staticmethod(assert_refused_at_start_up)
    bearer = staticmethod(bearer)
    wait_until = staticmethod(wait_until)
    make_key_pair = staticmethod(make_key_pair)
    make_leaf = staticmethod(make_leaf)
    free_port = staticmethod(free_port)
    BIN = BIN
    Service = Service
    AofRedis = AofRedis


@pytest.fixture(scope="session")
def kit() -> type[Kit]:
    """Helpers: kit.call(port, method, path, ...), kit.httpie(...), envs, etc."""
    return Kit


@pytest.fixture
def run_python() -> Callable[[str], subprocess.CompletedProcess[str]]:
    def run(script: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, check=False, timeout=30
        )

    return run


@pytest.fixture
def packages_imported_by(
    run_python: Callable[[str], subprocess.CompletedProcess[str]],
) -> Callable[[str, tuple[str, ...]], list[str]]:
    def imported(modules: str, packages: tuple[str, ...]) -> list[str]:
        """The modules of `packages` loaded after `import <modules>`."""
        result = run_python(
            f"import json, sys\nimport {modules}\n"
            f"loaded = [m for m in sys.modules if m.split('.')[0] in {packages!r}]\n"
            "print(json.dumps(sorted(loaded)))\n"
        )
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    return imported
