"""The package filters (playbooks/filter_plugins/packages.py): which wanted
packages dpkg does not show installed, read from this machine's real
dpkg-query, and a host's share of the table in playbooks/vars/packages.yml."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from typing import Any

import pytest

# The argument the roles give dpkg-query (dpkg-query reads the \n itself).
SHOW_FORMAT = "--showformat=${Package} ${db:Status-Abbrev}\\n"


def dpkg_query(*names: str) -> str:
    """What the roles' dpkg-query prints for ``names`` on this machine."""
    return subprocess.run(
        ["dpkg-query", "--show", SHOW_FORMAT, *names], capture_output=True, text=True
    ).stdout


@pytest.fixture(scope="module")
def missing(load_filter: Callable[[str], Callable[..., Any]]) -> Callable[..., Any]:
    return load_filter("missing_packages")


def test_installed_packages_are_not_missing(missing) -> None:
    assert missing(dpkg_query("dpkg", "bash"), ["dpkg", "bash"]) == []


def test_a_package_dpkg_never_heard_of_is_missing(missing) -> None:
    output = dpkg_query("dpkg", "loyalty-no-such-package")
    assert missing(output, ["dpkg", "loyalty-no-such-package"]) == ["loyalty-no-such-package"]


def test_a_removed_package_that_left_its_files_is_missing(missing) -> None:
    assert missing("haproxy rc \nsocat ii \n", ["haproxy", "socat"]) == ["haproxy"]


def test_architecture_qualified_names_count_as_installed(missing) -> None:
    assert missing("libc6:amd64 ii \n", ["libc6"]) == []


def test_nothing_printed_means_everything_is_missing(missing) -> None:
    assert missing("", ["nftables"]) == ["nftables"]


def test_a_host_gets_the_packages_of_its_groups_each_once(render) -> None:
    variables = {
        "group_names": ["router", "auth_api", "transaction_api"],
        "by_group": {
            "redis": ["redis-server"],
            "router": ["haproxy", "socat"],
            "auth_api": ["python3-venv"],
            "transaction_api": ["python3-venv"],
        },
        "everywhere": ["nftables"],
    }
    assert render("{{ group_names | platform_packages(by_group, everywhere) }}", variables) == [
        "nftables",
        "haproxy",
        "socat",
        "python3-venv",
    ]
