"""The Transaction API host: package, user, files, unit, hardening, port."""

from service_host import (
    assert_code_in_virtualenv,
    assert_environment_file,
    assert_exposure_at_most,
    assert_readable_by_service_only,
    assert_system_user_without_login,
    assert_unit_runs_as,
)

testinfra_hosts = ["transaction-api-1"]


def test_system_user_without_login(host):
    assert_system_user_without_login(host, "transaction-api")


def test_code_installed_in_virtualenv(host):
    assert_code_in_virtualenv(host, "transaction-api", "transaction-api")
    assert host.file("/opt/transaction-api/wheelhouse").is_directory


def test_environment_file(host):
    content = assert_environment_file(
        host,
        "/etc/transaction-api/transaction-api.env",
        "transaction-api",
        (
            'REDIS_URL="rediss://loyalty@172.30.6.11:6379/0"',
            'REDIS_PASSWORD_FILE="/etc/transaction-api/redis.password"',
            'REDIS_TLS_CA_FILE="/etc/transaction-api/tls-ca.pem"',
            'REDIS_TLS_CERT_FILE="/etc/transaction-api/tls-certificate.pem"',
            'REDIS_TLS_KEY_FILE="/etc/transaction-api/tls-private-key.pem"',
            'JWT_PUBLIC_KEY_FILE="/etc/transaction-api/jwt-ed25519.pub"',
            'MAX_AMOUNT="500000"',
            'HTTP_PORT="5000"',
        ),
    )
    # The password is in its own file, never in the environment.
    assert "REDIS_PASSWORD=" not in content


def test_key_and_password_files(host):
    for path in ("/etc/transaction-api/jwt-ed25519.pub", "/etc/transaction-api/redis.password"):
        assert_readable_by_service_only(host, path, "transaction-api")
    assert "BEGIN PUBLIC KEY" in host.file("/etc/transaction-api/jwt-ed25519.pub").content_string
    # Only the public key reaches this host.
    assert not host.file("/etc/transaction-api/jwt-ed25519.key").exists


def test_unit_active_enabled_and_listening(host):
    assert_unit_runs_as(host, "transaction-api", "transaction-api")
    assert host.socket("tcp://0.0.0.0:5000").is_listening


def test_unit_hardening_exposure(host):
    assert_exposure_at_most(host, "transaction-api.service")
