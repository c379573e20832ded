"""The Auth API host: package, user, files, unit, hardening, port."""

import re

from service_host import (
    assert_code_in_virtualenv,
    assert_environment_file,
    assert_exposure_at_most,
    assert_readable_by_service_only,
    assert_system_user_without_login,
    assert_unit_runs_as,
)

testinfra_hosts = ["auth-api-1"]


def test_venv_support_installed(host):
    assert host.package("python3-venv").is_installed


def test_system_user_without_login(host):
    assert_system_user_without_login(host, "auth-api")
    assert host.user("auth-api").group == "auth-api"
    assert not host.file("/nonexistent").exists


def test_code_installed_in_virtualenv(host):
    assert_code_in_virtualenv(host, "auth-api", "auth-api")
    assert host.file("/opt/auth-api/venv").user == "root"
    listed = host.run(
        "/opt/auth-api/venv/bin/python -c "
        "'import importlib.metadata as m; "
        "print(*sorted(d.name for d in m.distributions()), sep=chr(10))'"
    )
    installed = set(listed.stdout.split())
    assert {"loyalty-auth-api", "gunicorn", "bottle"} <= installed, installed
    # Made without pip: the service needs neither pip nor setuptools.
    assert not {"pip", "setuptools"} & installed, installed


def test_environment_file(host):
    assert_environment_file(
        host,
        "/etc/auth-api/auth-api.env",
        "auth-api",
        (
            'HTTP_PORT="5000"',
            'TLS_CERT_FILE="/etc/auth-api/tls-certificate.pem"',
            'TLS_KEY_FILE="/etc/auth-api/tls-private-key.pem"',
            'TLS_CLIENT_CA_FILE="/etc/auth-api/tls-ca.pem"',
            'TOKEN_TTL_SECONDS="30"',
            'JWT_ISSUER="loyalty-auth"',
            'JWT_PRIVATE_KEY_FILE="/etc/auth-api/jwt-ed25519.key"',
            'USERS_FILE="/etc/auth-api/users.json"',
        ),
    )


def test_secret_files_readable_by_service_only(host):
    for path in (
        "/etc/auth-api/jwt-ed25519.key",
        "/etc/auth-api/users.json",
        "/etc/auth-api/tls-certificate.pem",
        "/etc/auth-api/tls-private-key.pem",
        "/etc/auth-api/tls-ca.pem",
    ):
        assert_readable_by_service_only(host, path, "auth-api")
    assert host.file("/etc/auth-api").mode == 0o750
    assert "BEGIN PRIVATE KEY" in host.file("/etc/auth-api/jwt-ed25519.key").content_string


def test_users_file_holds_hashes_only(host):
    users = host.file("/etc/auth-api/users.json").content_string
    assert '"username": "alice"' in users
    assert re.search(r'"password_hash": "scrypt\$16384\$8\$1\$', users)


def test_unit_active_enabled_and_unprivileged(host):
    assert_unit_runs_as(host, "auth-api", "auth-api")


def test_listens_on_its_port(host):
    assert host.socket("tcp://0.0.0.0:5000").is_listening


def test_https_on_the_host_with_its_own_files(host):
    # As the role's health check asks: the host's certificate presented,
    # the server's verified against the CA copied beside it.
    code = (
        "import ssl, urllib.request\n"
        "context = ssl.create_default_context(cafile='/etc/auth-api/tls-ca.pem')\n"
        "context.load_cert_chain('/etc/auth-api/tls-certificate.pem',"
        " '/etc/auth-api/tls-private-key.pem')\n"
        "with urllib.request.urlopen('https://127.0.0.1:5000/health', timeout=5,"
        " context=context) as answer:\n"
        "    print(answer.status)"
    )
    assert host.check_output("python3 -c %s", code).strip() == "200"


def test_unit_hardening_exposure(host):
    assert_exposure_at_most(host, "auth-api.service")
