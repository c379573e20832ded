"""playbooks/vars/packages.yml (one apt transaction per host in site.yml)
against the roles: every package a role installs on a group is in that
group's row, and the table names nothing no role installs.

Only files are read (PyYAML); no Ansible runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]

# Which roles' packages site.yml installs on each group (playbooks/*.yml):
# the firewall and the node exporter on every host; redis_backup's source
# side on the Redis hosts. router_vip's keepalived is left to the role.
EVERYWHERE = {"firewall": "__firewall_packages", "node_exporter": "__node_exporter_packages"}
BY_GROUP = {
    "redis": {"redis": "__redis_packages", "redis_backup": "__redis_backup_source_packages"},
    "redis_sentinel": {"redis": "__redis_sentinel_packages"},
    "router": {"router": "__router_packages"},
    "auth_api": {"python_service": "__python_service_packages"},
    "transaction_api": {"python_service": "__python_service_packages"},
    "loyalty_worker": {"python_service": "__python_service_packages"},
    "monitoring": {"monitoring": "__monitoring_packages"},
}


def role_vars(role: str) -> dict[str, Any]:
    return yaml.safe_load((REPO / "roles" / role / "vars" / "main.yml").read_text())


def packages(roles: dict[str, str]) -> list[str]:
    return sorted({name for role, var in roles.items() for name in role_vars(role)[var]})


TABLE = yaml.safe_load((REPO / "playbooks" / "vars" / "packages.yml").read_text())


def test_every_host_gets_the_firewall_and_the_node_exporter() -> None:
    assert sorted(TABLE["platform_packages_everywhere"]) == packages(EVERYWHERE)


def test_each_group_gets_exactly_its_roles_packages() -> None:
    table = {group: sorted(names) for group, names in TABLE["platform_packages_by_group"].items()}
    assert table == {group: packages(roles) for group, roles in BY_GROUP.items()}


def test_the_packages_play_runs_on_every_group_of_the_table() -> None:
    play = yaml.safe_load((REPO / "playbooks" / "packages.yml").read_text())[0]
    assert set(play["hosts"].split(":")) == set(BY_GROUP)
