"""Debian packages, as Ansible filters.

``missing_packages`` reads what ``dpkg-query`` printed and says which of the
wanted packages still need apt; ``platform_packages`` gives a host's packages
from its inventory groups (the table in playbooks/vars/packages.yml). Asking
dpkg costs a small fraction of an apt task, which opens apt's whole cache
even when nothing is missing, so the roles ask first and run apt only for a
package that is not installed.

Ansible finds them beside the playbooks (playbooks/filter_plugins) and
through ansible.cfg's filter_plugins. Tests: tests/plugins/.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any


def missing_packages(dpkg_query_output: str, wanted: Iterable[str]) -> list[str]:
    """The packages of ``wanted`` that dpkg does not show fully installed.

    ``dpkg_query_output`` is the standard output of
    ``dpkg-query --show --showformat='${Package} ${db:Status-Abbrev}\\n' NAME...``;
    a package dpkg has never heard of is absent from it (dpkg-query says so
    on standard error), one removed or half-installed shows another status.
    """
    installed = set()
    for line in dpkg_query_output.splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[1] == "ii":
            installed.add(fields[0].split(":")[0])
    return [name for name in wanted if name not in installed]


def platform_packages(
    group_names: Iterable[str],
    by_group: Mapping[str, Iterable[str]],
    everywhere: Iterable[str] = (),
) -> list[str]:
    """Every package of ``everywhere`` and of the host's groups in ``by_group``,
    each once, in the table's order."""
    groups = set(group_names)
    packages: list[str] = list(everywhere)
    for group, names in by_group.items():
        if group in groups:
            packages.extend(names)
    return list(dict.fromkeys(packages))


class FilterModule:
    """Ansible's entry point for the filters of this file."""

    def filters(self) -> dict[str, Callable[..., Any]]:
        return {
            "missing_packages": missing_packages,
            "platform_packages": platform_packages,
        }
