"""The worker host: package, user, files, template unit, instances, hardening."""

import re

testinfra_hosts = ["loyalty-worker-molecule-1"]


def test_system_user_without_login(host):
    user = host.user("loyalty-worker")
    assert user.exists
    assert user.uid < 1000
    assert user.shell == "/usr/sbin/nologin"
    assert user.home == "/nonexistent"


def test_code_installed_in_virtualenv(host):
    assert host.package("python3-venv").is_installed
    assert host.file("/opt/loyalty-worker/venv/bin/loyalty-worker").is_file


def test_environment_and_password_files(host):
    env = host.file("/etc/loyalty-worker/loyalty-worker.env")
    assert env.mode == 0o640
    assert (env.user, env.group) == ("root", "loyalty-worker")
    assert 'REDIS_URL="redis://loyalty@172.30.7.11:6379/0"' in env.content_string
    assert 'REDIS_PASSWORD_FILE="/etc/loyalty-worker/redis.password"' in env.content_string
    # The unit names each consumer; the file must not override it.
    assert "WORKER_CONSUMER_NAME" not in env.content_string
    password = host.file("/etc/loyalty-worker/redis.password")
    assert password.mode == 0o640
    assert (password.user, password.group) == ("root", "loyalty-worker")


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
    report = host.check_output("systemd-analyze security --no-pager loyalty-worker@1.service")
    exposure = float(
        re.search(r"Overall exposure level for loyalty-worker@1\.service: ([0-9.]+)", report).group(
            1
        )
    )
    assert exposure <= 4.0, report
