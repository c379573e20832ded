"""Helpers shared by this scenario's tests."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

SCENARIO = Path(__file__).resolve().parent.parent
SECRETS = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "secrets"


@pytest.fixture(scope="session")
def admin_password():
    return (SECRETS / "redis" / "admin.password").read_text().strip()


def converge_workers(**extra_vars):
    """Run the workers' play again, as molecule converge does, with extra vars."""
    env = dict(os.environ)
    env["ANSIBLE_CONFIG"] = str(Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "ansible.cfg")
    env["ANSIBLE_NOCOLOR"] = "1"
    env["ANSIBLE_ROLES_PATH"] = str(Path(os.environ["MOLECULE_PROJECT_DIRECTORY"]) / "roles")
    # The ansible-playbook beside the Python running the tests (the venv's),
    # whether or not the venv is on PATH.
    beside = Path(sys.executable).parent / "ansible-playbook"
    command = [
        str(beside) if beside.exists() else "ansible-playbook",
        "-i",
        os.environ["MOLECULE_INVENTORY_FILE"],
        str(SCENARIO / "workers.yml"),
    ]
    for name, value in extra_vars.items():
        command += ["-e", f"{name}={value}"]
    result = subprocess.run(
        command, env=env, capture_output=True, text=True, check=False, timeout=300
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    return result.stdout
