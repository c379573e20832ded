"""The Auth API host: package, user, files, unit, hardening, port."""

import re

testinfra_hosts = ["auth-api-1"]


def test_venv_support_installed(host):
    assert host.package("python3-venv").is_installed


def test_system_user_without_login(host):
    user = host.user("auth-api")
    assert user.exists
    assert user.uid < 1000
    assert user.group == "auth-api"
    assert user.shell == "/usr/sbin/nologin"
    assert user.home == "/nonexistent"
    assert not host.file("/nonexistent").exists


def test_code_installed_in_virtualenv(host):
    assert host.file("/opt/auth-api/venv/bin/auth-api").is_file
    assert host.file("/opt/auth-api/venv").user == "root"
    pip = host.run(
        "/opt/auth-api/venv/bin/python -m pip list --format=freeze --disable-pip-version-check"
    )
    assert "loyalty-auth-api==" in pip.stdout
    assert "gunicorn==" in pip.stdout


def test_environment_file(host):
    env = host.file("/etc/auth-api/auth-api.env")
    assert env.mode == 0o640
    assert (env.user, env.group) == ("root", "auth-api")
    content = env.content_string
    for line in (
        'HTTP_PORT="5000"',
        'TOKEN_TTL_SECONDS="30"',
        'JWT_ISSUER="loyalty-auth"',
        'JWT_PRIVATE_KEY_FILE="/etc/auth-api/jwt-ed25519.key"',
        'USERS_FILE="/etc/auth-api/users.json"',
    ):
        assert line in content


def test_secret_files_readable_by_service_only(host):
    for path in ("/etc/auth-api/jwt-ed25519.key", "/etc/auth-api/users.json"):
        secret = host.file(path)
        assert secret.mode == 0o640, path
        assert (secret.user, secret.group) == ("root", "auth-api"), path
    assert host.file("/etc/auth-api").mode == 0o750
    assert "BEGIN PRIVATE KEY" in host.file("/etc/auth-api/jwt-ed25519.key").content_string


def test_users_file_holds_hashes_only(host):
    users = host.file("/etc/auth-api/users.json").content_string
    assert '"username": "alice"' in users
    assert re.search(r'"password_hash": "scrypt\$16384\$8\$1\$', users)


def test_unit_active_enabled_and_unprivileged(host):
    service = host.service("auth-api")
    assert service.is_running
    assert service.is_enabled
    main_pid = host.check_output("systemctl show -p MainPID --value auth-api")
    assert host.check_output(f"ps -o user= -p {main_pid}").strip() == "auth-api"


def test_listens_on_its_port(host):
    assert host.socket("tcp://0.0.0.0:5000").is_listening


def test_unit_hardening_exposure(host):
    report = host.check_output("systemd-analyze security --no-pager auth-api.service")
    exposure = float(
        re.search(r"Overall exposure level for auth-api\.service: ([0-9.]+)", report).group(1)
    )
    assert exposure <= 4.0, report
