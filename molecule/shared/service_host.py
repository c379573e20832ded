"""Checks of a host that runs one of the platform's Python services (the
python_service role: Auth API, Transaction API, worker), for testinfra's
`host` fixture. Each service role's scenario asserts the same properties of
its own user, directories and unit; the scenario keeps what is its own."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

# The most `systemd-analyze security` may score a service unit.
MAX_EXPOSURE = 4.0


def assert_system_user_without_login(host: Any, name: str) -> None:
    """The service's user is a system user that cannot log in and has no home."""
    user = host.user(name)
    assert user.exists
    assert user.uid < 1000
    assert user.shell == "/usr/sbin/nologin"
    assert user.home == "/nonexistent"


def assert_code_in_virtualenv(host: Any, service: str, command: str) -> None:
    """The service's entry point is installed in its own venv under /opt."""
    assert host.package("python3-venv").is_installed
    assert host.file(f"/opt/{service}/venv/bin/{command}").is_file


def assert_readable_by_service_only(host: Any, path: str, group: str) -> Any:
    """A file holding configuration or secrets: root's, readable by the
    service's group only. Returns the file."""
    secret = host.file(path)
    assert secret.mode == 0o640, path
    assert (secret.user, secret.group) == ("root", group), path
    return secret


def assert_environment_file(host: Any, path: str, group: str, lines: Iterable[str]) -> str:
    """The unit's environment file is private to the service and holds these
    lines. Returns its content for further checks."""
    content = assert_readable_by_service_only(host, path, group).content_string
    for line in lines:
        assert line in content
    return content


def assert_unit_runs_as(host: Any, unit: str, user: str) -> None:
    """The unit is active, enabled, and its main process runs as `user`."""
    service = host.service(unit)
    assert service.is_running
    assert service.is_enabled
    main_pid = host.check_output(f"systemctl show -p MainPID --value {unit}")
    assert host.check_output(f"ps -o user= -p {main_pid}").strip() == user


def assert_exposure_at_most(host: Any, unit: str, limit: float = MAX_EXPOSURE) -> None:
    """`systemd-analyze security` scores the unit's hardening at most `limit`."""
    report = host.check_output(f"systemd-analyze security --no-pager {unit}")
    found = re.search(rf"Overall exposure level for {re.escape(unit)}: ([0-9.]+)", report)
    assert found, report
    assert float(found.group(1)) <= limit, report
