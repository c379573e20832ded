"""Running ansible-playbook from a test the way Molecule runs it: the
scenario's generated ansible.cfg and inventory, the project's roles, the
ansible-playbook of the Python that runs the tests."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def ansible_environment(repo: Path) -> dict[str, str]:
    """This process's environment plus Molecule's ansible.cfg and the roles."""
    env = dict(os.environ)
    ephemeral = os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY")
    if ephemeral:
        env["ANSIBLE_CONFIG"] = str(Path(ephemeral) / "ansible.cfg")
    env["ANSIBLE_ROLES_PATH"] = str(repo / "roles")
    env["ANSIBLE_FILTER_PLUGINS"] = str(repo / "playbooks" / "filter_plugins")
    return env


def inventory_directory() -> str | None:
    """The directory of Molecule's inventory: the inventory file plus the
    linked group_vars/host_vars (the file alone would miss them)."""
    inventory = os.environ.get("MOLECULE_INVENTORY_FILE")
    return str(Path(inventory).parent) if inventory else None


def ansible_playbook() -> str:
    """The ansible-playbook beside this Python (the venv's), whether or not
    the venv is on PATH."""
    return str(Path(sys.executable).with_name("ansible-playbook"))
