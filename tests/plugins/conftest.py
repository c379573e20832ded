"""The filter plugins under test, found by Ansible's own plugin loader in
the directory ansible-playbook searches beside the playbooks."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from ansible.parsing.dataloader import DataLoader
from ansible.plugins.loader import filter_loader, init_plugin_loader
from ansible.template import Templar, trust_as_template

FILTER_PLUGINS = Path(__file__).resolve().parents[2] / "playbooks" / "filter_plugins"


@pytest.fixture(scope="session")
def ansible_filters() -> None:
    """Ansible's plugin loader, with the project's filter directory added."""
    init_plugin_loader()
    filter_loader.add_directory(str(FILTER_PLUGINS))


@pytest.fixture(scope="session")
def load_filter(ansible_filters: None) -> Callable[[str], Callable[..., Any]]:
    """The function behind a filter, as Ansible finds it by name."""

    def load(name: str) -> Callable[..., Any]:
        plugin = filter_loader.get(name)
        assert plugin is not None, f"Ansible finds no filter {name!r} in {FILTER_PLUGINS}"
        return plugin.j2_function

    return load


@pytest.fixture(scope="session")
def render(ansible_filters: None) -> Callable[[str, dict[str, Any]], Any]:
    """A Jinja expression templated by Ansible with the given variables, as a
    task's argument would be."""

    def template(expression: str, variables: dict[str, Any]) -> Any:
        templar = Templar(loader=DataLoader(), variables=variables)
        return templar.template(trust_as_template(expression))

    return template
