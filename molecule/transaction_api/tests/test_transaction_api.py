"""The Transaction API host: package, user, files, unit, hardening, port."""

import re

testinfra_hosts = ["transaction-api-1"]


def test_system_user_without_login(host):
    user = host.user("transaction-api")
    assert user.exists
    assert user.uid < 1000
    assert user.shell == "/usr/sbin/nologin"
    assert user.home == "/nonexistent"


def test_code_installed_in_virtualenv(host):
    assert host.package("python3-venv").is_installed
    assert host.file("/opt/transaction-api/venv/bin/transaction-api").is_file
    assert host.file("/opt/transaction-api/wheelhouse").is_directory


def test_environment_file(host):
    env = host.file("/etc/transaction-api/transaction-api.env")
    assert env.mode == 0o640
    assert (env.user, env.group) == ("root", "transaction-api")
    content = env.content_string
    for line in (
        'REDIS_URL="redis://loyalty@172.30.6.11:6379/0"',
        'REDIS_PASSWORD_FILE="/etc/transaction-api/redis.password"',
        'JWT_PUBLIC_KEY_FILE="/etc/transaction-api/jwt-ed25519.pub"',
        'MAX_AMOUNT="500000"',
        'HTTP_PORT="5000"',
    ):
        assert line in content
    # The password is in its own file, never in the environment.
    assert "REDIS_PASSWORD=" not in content


def test_key_and_password_files(host):
    for path in ("/etc/transaction-api/jwt-ed25519.pub", "/etc/transaction-api/redis.password"):
        secret = host.file(path)
        assert secret.mode == 0o640, path
        assert (secret.user, secret.group) == ("root", "transaction-api"), path
    assert "BEGIN PUBLIC KEY" in host.file("/etc/transaction-api/jwt-ed25519.pub").content_string
    # Only the public key reaches this host.
    assert not host.file("/etc/transaction-api/jwt-ed25519.key").exists


def test_unit_active_enabled_and_listening(host):
    service = host.service("transaction-api")
    assert service.is_running
    assert service.is_enabled
    assert host.socket("tcp://0.0.0.0:5000").is_listening
    main_pid = host.check_output("systemctl show -p MainPID --value transaction-api")
    assert host.check_output(f"ps -o user= -p {main_pid}").strip() == "transaction-api"


def test_unit_hardening_exposure(host):
    report = host.check_output("systemd-analyze security --no-pager transaction-api.service")
    exposure = float(
        re.search(r"Overall exposure level for transaction-api\.service: ([0-9.]+)", report).group(
            1
        )
    )
    assert exposure <= 4.0, report
