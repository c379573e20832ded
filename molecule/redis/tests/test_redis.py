"""Checks of the redis role: package, configuration, binding, ACL, access."""

import os
import shlex
import time
from pathlib import Path

import pytest
import testinfra.utils.ansible_runner

SECRETS = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "secrets" / "redis"
ADMIN = (SECRETS / "admin.password").read_text().strip()
LOYALTY = (SECRETS / "loyalty.password").read_text().strip()

testinfra_hosts = testinfra.utils.ansible_runner.AnsibleRunner(
    os.environ["MOLECULE_INVENTORY_FILE"]
).get_hosts("all")


# The TLS files each host presents: the server's from the role, the client's
# from converge.yml.
TLS_FILES = {"redis-1": "/etc/redis/tls", "redis-client-1": "/etc/redis-client"}


def tls_options(host, files=None):
    files = files or TLS_FILES[host.backend.get_hostname()]
    return (
        f"--tls --cacert {files}/ca.pem --cert {files}/certificate.pem "
        f"--key {files}/private-key.pem "
    )


def cli(host, *args, user=None, password=None, address="127.0.0.1", tls=None, port=6379):
    """Run redis-cli on `host` over TLS with the host's files (`tls` gives
    other options, "" for plain text); return the command's result."""
    auth = ""
    if password is not None:
        auth = f"REDISCLI_AUTH={shlex.quote(password)} "
    user_opt = f"--user {shlex.quote(user)} " if user else ""
    line = " ".join(shlex.quote(a) for a in args)
    options = tls_options(host) if tls is None else tls
    return host.run(
        f"{auth}redis-cli {options}--no-auth-warning -h {address} -p {port} {user_opt}{line}"
    )


def only_server(host):
    if host.backend.get_hostname() != "redis-1":
        pytest.skip("server checks run on redis-1")


def test_package_and_service(host):
    only_server(host)
    assert host.package("redis-server").is_installed
    service = host.service("redis-server")
    assert service.is_running
    assert service.is_enabled


def test_start_up_prints_no_warning_but_the_containers_overcommit(host):
    only_server(host)
    log = host.run("journalctl -u redis-server -b --no-pager -o cat").stdout
    # Redis 7.0 logs its start-up lines at warning level ("#") too, so a
    # warning is a line that says so. A container cannot set the kernel's
    # vm.overcommit_memory (the role does on a VM), so that one stays.
    warnings = [
        line
        for line in log.splitlines()
        if "WARNING" in line and "Memory overcommit must be enabled" not in line
    ]
    assert warnings == []
    assert "deprecat" not in log.lower()


def test_config_file_mode(host):
    only_server(host)
    conf = host.file("/etc/redis/redis.conf")
    assert conf.user == "redis"
    assert conf.group == "redis"
    assert conf.mode == 0o640
    # Passwords are stored only as digests.
    assert ADMIN not in conf.content_string
    assert LOYALTY not in conf.content_string


def test_listens_only_on_given_addresses(host):
    only_server(host)
    assert host.socket("tcp://127.0.0.1:6379").is_listening
    assert host.socket("tcp://172.30.1.10:6379").is_listening
    assert not host.socket("tcp://0.0.0.0:6379").is_listening
    assert not host.socket("tcp://:::6379").is_listening


def test_persistence_and_memory_policy(host):
    only_server(host)
    for key, value in (
        ("appendonly", "yes"),
        ("appendfsync", "everysec"),
        ("maxmemory-policy", "noeviction"),
        ("maxmemory", str(256 * 1024 * 1024)),
        ("protected-mode", "yes"),
    ):
        out = cli(host, "CONFIG", "GET", key, password=ADMIN).stdout.split()
        assert out == [key, value]


def test_auth_required(host):
    only_server(host)
    assert "NOAUTH" in cli(host, "PING").stdout
    assert cli(host, "PING", password="wrong").stdout.strip() != "PONG"
    assert cli(host, "PING", password=ADMIN).stdout.strip() == "PONG"


def test_service_user_limited_to_its_keys_and_commands(host):
    only_server(host)
    ok = cli(host, "XADD", "loyalty:test", "*", "f", "1", user="loyalty", password=LOYALTY)
    assert ok.rc == 0 and "-" in ok.stdout and "NOPERM" not in ok.stdout
    assert "NOPERM" in cli(host, "SET", "other", "1", user="loyalty", password=LOYALTY).stdout
    for command in (
        ["FLUSHALL"],
        ["CONFIG", "GET", "maxmemory"],
        ["ACL", "LIST"],
        ["SHUTDOWN"],
        ["SCAN", "0"],
    ):
        assert "NOPERM" in cli(host, *command, user="loyalty", password=LOYALTY).stdout
    cli(host, "DEL", "loyalty:test", password=ADMIN)


def test_queue_survives_restart(host):
    only_server(host)
    cli(host, "DEL", "loyalty:restart-check", password=ADMIN)
    cli(host, "XADD", "loyalty:restart-check", "*", "n", "1", user="loyalty", password=LOYALTY)
    assert host.run("systemctl restart redis-server").rc == 0
    for _ in range(30):
        if cli(host, "PING", password=ADMIN).stdout.strip() == "PONG":
            break
        time.sleep(0.5)
    assert cli(host, "XLEN", "loyalty:restart-check", password=ADMIN).stdout.strip() == "1"
    cli(host, "DEL", "loyalty:restart-check", password=ADMIN)


def test_client_host_connects_with_password(host):
    if host.backend.get_hostname() != "redis-client-1":
        pytest.skip("client checks run on redis-client-1")
    answer = cli(host, "PING", user="loyalty", password=LOYALTY, address="172.30.1.10")
    assert answer.stdout.strip() == "PONG"
    assert "NOAUTH" in cli(host, "PING", address="172.30.1.10").stdout


def test_plain_text_is_refused(host):
    """The plain port is closed (port 0): the TLS port does not speak plain text."""
    only_server(host)
    plain = cli(host, "PING", password=ADMIN, tls="")
    assert plain.stdout.strip() != "PONG", plain.stdout
    # Sentinel's port speaks no plain text either (no Sentinel runs in this
    # one-node scenario: nothing answers there at all).
    sentinel = cli(host, "PING", tls="", port=26379)
    assert sentinel.stdout.strip() != "PONG", sentinel.stdout
    config = cli(host, "CONFIG", "GET", "port", password=ADMIN).stdout.split()
    assert config == ["port", "0"]
    assert cli(host, "CONFIG", "GET", "tls-auth-clients", password=ADMIN).stdout.split() == [
        "tls-auth-clients",
        "yes",
    ]


def test_wrapper_for_operators_speaks_tls(host):
    only_server(host)
    out = host.run(f"REDISCLI_AUTH={shlex.quote(ADMIN)} redis-cli-tls --no-auth-warning PING")
    assert out.stdout.strip() == "PONG"


def test_certificates_of_another_ca_are_refused(host):
    """A client presenting a certificate of another CA, or none, is refused;
    a server of another CA is refused by the client (checked against the
    platform's CA)."""
    if host.backend.get_hostname() != "redis-client-1":
        pytest.skip("client checks run on redis-client-1")
    host.run(
        "mkdir -p /tmp/stranger && cd /tmp/stranger && "
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 "
        "-subj /CN=stranger -keyout private-key.pem -out certificate.pem 2>/dev/null && "
        "cp certificate.pem ca.pem"
    )
    stranger = (
        "--tls --cacert /etc/redis-client/ca.pem --cert /tmp/stranger/certificate.pem "
        "--key /tmp/stranger/private-key.pem "
    )
    no_certificate = "--tls --cacert /etc/redis-client/ca.pem "
    for options in (stranger, no_certificate):
        answer = cli(
            host, "PING", user="loyalty", password=LOYALTY, address="172.30.1.10", tls=options
        )
        assert answer.stdout.strip() != "PONG", options
    # The client trusts only the platform's CA: told to trust another, it
    # refuses the server's certificate.
    wrong_ca = tls_options(host).replace("/etc/redis-client/ca.pem", "/tmp/stranger/ca.pem")
    answer = cli(
        host, "PING", user="loyalty", password=LOYALTY, address="172.30.1.10", tls=wrong_ca
    )
    assert answer.stdout.strip() != "PONG"
    right = cli(host, "PING", user="loyalty", password=LOYALTY, address="172.30.1.10")
    assert right.stdout.strip() == "PONG"


def test_replication_runs_over_tls(host):
    """A replica started beside the primary (loopback port 6390, the host's
    TLS files, tls-replication yes) syncs over TLS: the primary has no plain
    port to sync from."""
    only_server(host)
    files = TLS_FILES["redis-1"]
    replica = (
        "redis-server --port 0 --tls-port 6390 --bind 127.0.0.1 "
        f"--tls-cert-file {files}/certificate.pem --tls-key-file {files}/private-key.pem "
        f"--tls-ca-cert-file {files}/ca.pem --tls-replication yes "
        f"--replicaof 127.0.0.1 6379 --masterauth {shlex.quote(ADMIN)} "
        "--dir /tmp --dbfilename replica-check.rdb --save '' --appendonly no "
        "--pidfile /tmp/replica-check.pid --logfile /tmp/replica-check.log --daemonize yes"
    )
    assert host.run(replica).rc == 0
    try:
        cli(host, "SET", "loyalty:replication-check", "over-tls", password=ADMIN)
        status = value = ""
        for _ in range(40):
            status = cli(host, "INFO", "replication", port=6390).stdout
            value = cli(host, "GET", "loyalty:replication-check", port=6390).stdout.strip()
            if "master_link_status:up" in status and value == "over-tls":
                break
            time.sleep(0.5)
        assert "master_link_status:up" in status, host.run("cat /tmp/replica-check.log").stdout
        assert value == "over-tls"
        primary = cli(host, "INFO", "replication", password=ADMIN).stdout
        assert "connected_slaves:1" in primary
    finally:
        cli(host, "SHUTDOWN", "NOSAVE", port=6390)
        cli(host, "DEL", "loyalty:replication-check", password=ADMIN)
        host.run("rm -f /tmp/replica-check.rdb")
