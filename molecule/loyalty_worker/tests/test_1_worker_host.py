"""The worker host: package, user, files, template unit, instances, hardening."""

from service_host import (
    assert_code_in_virtualenv,
    assert_environment_file,
    assert_exposure_at_most,
    assert_readable_by_service_only,
    assert_system_user_without_login,
)

testinfra_hosts = ["loyalty-worker-molecule-1"]


def test_system_user_without_login(host):
    assert_system_user_without_login(host, "loyalty-worker")


def test_code_installed_in_virtualenv(host):
    assert_code_in_virtualenv(host, "loyalty-worker", "loyalty-worker")


def test_environment_and_password_files(host):
    content = assert_environment_file(
        host,
        "/etc/loyalty-worker/loyalty-worker.env",
        "loyalty-worker",
        (
            'REDIS_URL="rediss://loyalty@172.30.7.11:6379/0"',
            'REDIS_PASSWORD_FILE="/etc/loyalty-worker/redis.password"',
            'REDIS_TLS_CA_FILE="/etc/loyalty-worker/tls-ca.pem"',
            'REDIS_TLS_CERT_FILE="/etc/loyalty-worker/tls-certificate.pem"',
            'REDIS_TLS_KEY_FILE="/etc/loyalty-worker/tls-private-key.pem"',
        ),
    )
    # The unit names each consumer; the file must not override it.
    assert "WORKER_CONSUMER_NAME" not in content
    assert_readable_by_service_only(host, "/etc/loyalty-worker/redis.password", "loyalty-worker")


def test_template_unit(host):
    unit = host.file("/etc/systemd/system/loyalty-worker@.service").content_string
    for line in (
        "Type=notify",
        "NotifyAccess=main",
        "WatchdogSec=30",
        "Environment=WORKER_CONSUMER_NAME=%H-%i",
    ):
        assert line in unit


def test_two_instances_active_and_enabled(host):
    for instance in ("1", "2"):
        service = host.service(f"loyalty-worker@{instance}")
        assert service.is_running, instance
        assert service.is_enabled, instance
    assert not host.service("loyalty-worker@3").is_running
    pids = host.check_output("pgrep -u loyalty-worker -f loyalty-worker").split()
    assert len(pids) == 2


def test_unit_hardening_exposure(host):
    assert_exposure_at_most(host, "loyalty-worker@1.service")
