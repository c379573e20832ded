"""Redis over TLS with the REDIS_TLS_* variables, against a real redis-server
and a real Sentinel that speak TLS only (port 0) and require client
certificates, as the redis role configures them. Certificates come from
the suite's ``pki`` fixture: the platform's CA, and another CA whose
certificates must be refused both ways."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from loyalty_common import ConfigError
from loyalty_common.redis_access import redis_from_env, redis_settings_from_env

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
PASSWORD = "tls-test-password"


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tls_arguments(pki: Any, port: int) -> list[str]:
    return [
        "--port", "0",
        "--tls-port", str(port),
        "--tls-cert-file", str(pki.server_cert),
        "--tls-key-file", str(pki.server_key),
        "--tls-ca-cert-file", str(pki.ca),
        "--tls-auth-clients", "yes",
        "--tls-replication", "yes",
    ]  # fmt: skip


def wait_for(client: redis.Redis) -> None:
    deadline = time.monotonic() + 10
    while True:
        try:
            if client.ping():
                return
        except redis.RedisError:
            pass
        assert time.monotonic() < deadline, "the TLS server did not answer"
        time.sleep(0.1)


def good_client(pki: Any, port: int, password: str = PASSWORD) -> redis.Redis:
    return redis.Redis(
        port=port,
        password=password,
        ssl=True,
        ssl_ca_certs=str(pki.ca),
        ssl_certfile=str(pki.client_cert),
        ssl_keyfile=str(pki.client_key),
        ssl_cert_reqs="required",
    )


@pytest.fixture(scope="module")
def tls_servers(pki: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, int]]:
    """A TLS-only redis-server and a TLS-only Sentinel watching it."""
    directory = tmp_path_factory.mktemp("redis-tls")
    port, sentinel_port = free_port(), free_port()
    processes = [
        subprocess.Popen(
            [REDIS_SERVER, *tls_arguments(pki, port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(directory), "--requirepass", PASSWORD],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
    ]  # fmt: skip
    try:
        wait_for(good_client(pki, port))
        config = directory / "sentinel.conf"
        # The same settings as the server's, as sentinel.conf lines.
        settings = tls_arguments(pki, sentinel_port)
        lines = [f"{settings[n][2:]} {settings[n + 1]}" for n in range(0, len(settings), 2)]
        config.write_text(
            "\n".join(
                [
                    "bind 127.0.0.1",
                    *lines,
                    f"requirepass {PASSWORD}",
                    f"sentinel monitor loyalty 127.0.0.1 {port} 1",
                    f"sentinel auth-pass loyalty {PASSWORD}",
                ]
            )
            + "\n"
        )
        processes.append(
            subprocess.Popen(
                [REDIS_SERVER, str(config), "--sentinel"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
        )  # fmt: skip
        wait_for(good_client(pki, sentinel_port))
        yield {"redis": port, "sentinel": sentinel_port}
    finally:
        for process in processes:
            process.kill()
            process.wait(timeout=10)


def environment(pki: Any, port: int, password_file: Path, **extra: str) -> dict[str, str]:
    return {
        "REDIS_URL": f"rediss://127.0.0.1:{port}/0",
        "REDIS_PASSWORD_FILE": str(password_file),
        "REDIS_TLS_CA_FILE": str(pki.ca),
        "REDIS_TLS_CERT_FILE": str(pki.client_cert),
        "REDIS_TLS_KEY_FILE": str(pki.client_key),
        **extra,
    }


@pytest.fixture
def password_file(tmp_path: Path) -> Path:
    path = tmp_path / "redis.password"
    path.write_text(PASSWORD + "\n")
    return path


def test_a_verified_tls_connection_works(pki, tls_servers, password_file):
    client = redis_from_env(environment(pki, tls_servers["redis"], password_file))
    assert client.ping()
    assert client.xadd("loyalty:tls-check", {"n": "1"})
    assert client.delete("loyalty:tls-check") == 1


def test_through_the_sentinels_over_tls(pki, tls_servers, password_file):
    env = environment(
        pki,
        tls_servers["redis"],
        password_file,
        REDIS_SENTINELS=f"127.0.0.1:{tls_servers['sentinel']}",
        REDIS_SENTINEL_MASTER="loyalty",
        REDIS_SENTINEL_PASSWORD_FILE=str(password_file),
    )
    client = redis_from_env(env)
    assert client.set("loyalty:via-sentinel", "1")
    assert client.get("loyalty:via-sentinel") == "1"
    client.delete("loyalty:via-sentinel")


def test_a_client_certificate_of_another_ca_is_refused_by_the_server(
    pki, tls_servers, password_file
):
    env = environment(
        pki,
        tls_servers["redis"],
        password_file,
        REDIS_TLS_CERT_FILE=str(pki.other_client_cert),
        REDIS_TLS_KEY_FILE=str(pki.other_client_key),
    )
    with pytest.raises(redis.ConnectionError):
        redis_from_env(env).ping()


def test_no_client_certificate_is_refused_by_the_server(pki, tls_servers, password_file):
    env = environment(pki, tls_servers["redis"], password_file)
    del env["REDIS_TLS_CERT_FILE"], env["REDIS_TLS_KEY_FILE"]
    with pytest.raises(redis.ConnectionError):
        redis_from_env(env).ping()


def test_a_server_of_another_ca_is_refused_by_the_client(pki, tls_servers, password_file):
    env = environment(pki, tls_servers["redis"], password_file, REDIS_TLS_CA_FILE=str(pki.other_ca))
    with pytest.raises(redis.ConnectionError):
        redis_from_env(env).ping()


def test_plain_text_is_refused_by_a_tls_only_server(pki, tls_servers, password_file):
    env = {
        "REDIS_URL": f"redis://127.0.0.1:{tls_servers['redis']}/0",
        "REDIS_PASSWORD_FILE": str(password_file),
    }
    with pytest.raises(redis.ConnectionError):
        redis_from_env(env, socket_timeout=2).ping()


def test_a_certificate_without_its_key_names_the_missing_variable(pki, password_file):
    env = environment(pki, 6379, password_file)
    del env["REDIS_TLS_KEY_FILE"]
    with pytest.raises(ConfigError) as caught:
        redis_settings_from_env(env)
    assert caught.value.variable == "REDIS_TLS_KEY_FILE"


def test_tls_files_with_a_plain_url_are_refused(pki, password_file):
    env = environment(pki, 6379, password_file, REDIS_URL="redis://127.0.0.1:6379/0")
    with pytest.raises(ConfigError) as caught:
        redis_settings_from_env(env)
    assert caught.value.variable == "REDIS_TLS_CA_FILE"
    assert "rediss://" in str(caught.value)


def test_an_unreadable_tls_file_is_named(pki, password_file, tmp_path):
    env = environment(pki, 6379, password_file, REDIS_TLS_CA_FILE=str(tmp_path / "missing.pem"))
    with pytest.raises(ConfigError) as caught:
        redis_settings_from_env(env)
    assert caught.value.variable == "REDIS_TLS_CA_FILE"


def test_a_certificate_of_another_key_is_named(pki, password_file):
    env = environment(pki, 6379, password_file, REDIS_TLS_KEY_FILE=str(pki.other_client_key))
    with pytest.raises(ConfigError) as caught:
        redis_settings_from_env(env)
    assert caught.value.variable == "REDIS_TLS_CERT_FILE"
    assert "\n" not in str(caught.value)


def test_a_ca_file_without_a_certificate_is_named(pki, password_file, tmp_path):
    empty = tmp_path / "empty.pem"
    empty.write_text("not a certificate\n", encoding="utf-8")
    env = environment(pki, 6379, password_file, REDIS_TLS_CA_FILE=str(empty))
    with pytest.raises(ConfigError) as caught:
        redis_settings_from_env(env)
    assert caught.value.variable == "REDIS_TLS_CA_FILE"
