"""What the VM tests share: Vagrant as scripts/vm-test set it up, SSH into
the machines with the checkout's key, Redis on the edge machine, HTTPS
through the router, and the figures the run prints at its end.

Traffic goes only to the two machines these tests make (192.168.56.10 and
.21 on the libvirt network Vagrant builds), every command with a timeout.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "molecule" / "shared"))

import http_requests  # noqa: E402
import loyalty_redis  # noqa: E402
from tokens import Tokens  # noqa: E402

SECRETS = REPO / ".secrets"
SSH_KEY = SECRETS / "vagrant" / "id_ed25519"
CA_FILE = SECRETS / "tls" / "ca.crt"
INVENTORY = REPO / "inventory" / "vagrant-compact"
FIGURES_FILE = REPO / "build" / "vm-figures.json"
EDGE, WORKER = "loyalty-edge", "loyalty-worker-1"
ADDRESSES = {EDGE: "192.168.56.10", WORKER: "192.168.56.21"}
ROUTER = ADDRESSES[EDGE]
USERS = {"alice": 1, "bob": 2}
VIRSH = ["virsh", "-q", "-c", "qemu:///system"]

# Figures printed at the end of the run and saved to FIGURES_FILE.
FIGURES: dict[str, object] = {}


def log(message: str) -> None:
    sys.__stdout__.write(f"[vms] {message}\n")
    sys.__stdout__.flush()


def run(command: list[str], timeout: float, **kwargs) -> subprocess.CompletedProcess[str]:
    """A command on the control machine; its output is kept for the report."""
    return subprocess.run(
        command, capture_output=True, text=True, timeout=timeout, check=False, **kwargs
    )


def keep_output(name: str, command: list[str], result: subprocess.CompletedProcess[str]) -> None:
    """Append a command and its output to build/vms/<name>."""
    logs = REPO / "build" / "vms"
    logs.mkdir(parents=True, exist_ok=True)
    with (logs / name).open("a") as out:
        out.write(f"$ {' '.join(command)}\n{result.stdout}{result.stderr}\n")


def vagrant(*args: str, timeout: float = 1200) -> subprocess.CompletedProcess[str]:
    """`vagrant ARGS` in the checkout with scripts/vm-test's environment,
    its output also kept in build/vms/vagrant-<command>.log."""
    for name in ("LOYALTY_VAGRANT_INVENTORY", "VAGRANT_DOTFILE_PATH", "LOYALTY_VM_BOX"):
        assert os.environ.get(name), f"{name} is not set: run the VM tests with scripts/vm-test"
    result = run(["vagrant", *args], timeout, cwd=REPO)
    keep_output(f"vagrant-{args[0]}.log", ["vagrant", *args], result)
    return result


def ssh(host: str, command: str, timeout: float = 60, stdin: str | None = None):
    """A shell command on a machine as `vagrant`, over its private address."""
    return run(
        [
            "ssh",
            "-i",
            str(SSH_KEY),
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "LogLevel=ERROR",
            "-o",
            "ConnectTimeout=10",
            f"vagrant@{ADDRESSES[host]}",
            command,
        ],
        timeout,
        input=stdin,
    )


def wait_for_ssh(host: str, timeout: float = 300) -> float:
    """Seconds until the machine answers SSH with `sudo -n true`."""
    started = time.monotonic()
    while True:
        try:
            if ssh(host, "sudo -n true", timeout=20).returncode == 0:
                return time.monotonic() - started
        except subprocess.TimeoutExpired:
            pass
        assert time.monotonic() - started < timeout, f"{host} did not answer SSH in {timeout} s"
        time.sleep(2)


def redis_lines(commands: list[str], timeout: float = 60) -> list[str]:
    """Commands (one a line) to Redis on the edge machine as administrator;
    the password goes over stdin, never on a command line."""
    password = (SECRETS / "redis" / "admin.password").read_text().strip()
    result = ssh(
        EDGE,
        "sudo bash -c 'read -r REDISCLI_AUTH; export REDISCLI_AUTH; "
        "exec redis-cli-tls --no-auth-warning'",
        timeout,
        stdin=password + "\n" + "".join(c + "\n" for c in commands),
    )
    assert result.returncode == 0, f"redis-cli on {EDGE}: {result.stderr}"
    return result.stdout.splitlines()


def redis_cli(*args: str) -> str:
    quoted = " ".join(json.dumps(a) for a in args)
    return "\n".join(redis_lines([quoted])).strip()


def group_info() -> dict[str, str]:
    return loyalty_redis.group_info(redis_cli)


def request(*args, **kwargs) -> http_requests.Answer:
    """Over HTTPS to the router, verified against the platform's CA."""
    kwargs.setdefault("host", ROUTER)
    kwargs.setdefault("port", 443)
    kwargs.setdefault("context", http_requests.tls_context(str(CA_FILE)))
    return http_requests.request(*args, **kwargs)


def demo_password() -> str:
    return (SECRETS / "users" / "demo.password").read_text().strip()


TOKENS = Tokens(request, demo_password)

RECAP = re.compile(
    r"^(\S+)\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.MULTILINE
)


def recap(output: str) -> dict[str, dict[str, int]]:
    """PLAY RECAP of the ansible-playbook run in `output`, per host (the
    control node, where the secrets play runs, is `localhost`)."""
    hosts: dict[str, dict[str, int]] = {}
    for host, ok, changed, unreachable, failed in RECAP.findall(output):
        hosts[host] = {
            "ok": int(ok),
            "changed": int(changed),
            "unreachable": int(unreachable),
            "failed": int(failed),
        }
    return hosts


def ansible_playbook(playbook: str, *options: str, timeout: float = 900):
    """A playbook (its path from the checkout's root) against the machines,
    as a user runs it from the checkout (its ansible.cfg) with the compact
    inventory."""
    result = run(
        [
            str(REPO / ".venv" / "bin" / "ansible-playbook"),
            "-i",
            str(INVENTORY),
            str(REPO / playbook),
            *options,
        ],
        timeout,
        cwd=REPO,
    )
    keep_output(
        f"ansible-{Path(playbook).stem}.log", ["ansible-playbook", playbook, *options], result
    )
    return result


def libvirt_names(kind: str) -> set[str]:
    """Names of every libvirt domain (`list --all`), network (`net-list
    --all`) or volume of the default pool (`vol-list default`)."""
    args = {"list": ["list", "--all", "--name"], "net-list": ["net-list", "--all", "--name"]}
    command = args.get(kind, ["vol-list", "default"])
    result = run([*VIRSH, *command], 30)
    if result.returncode != 0:
        return set()
    return {line.split()[0] for line in result.stdout.splitlines() if line.strip()}


@pytest.fixture(scope="session", autouse=True)
def figures() -> Iterator[dict[str, object]]:
    yield FIGURES
    FIGURES_FILE.parent.mkdir(parents=True, exist_ok=True)
    FIGURES_FILE.write_text(json.dumps(FIGURES, indent=2) + "\n")
    log(f"figures ({FIGURES_FILE}): {json.dumps(FIGURES)}")
