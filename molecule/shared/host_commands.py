"""`docker` and `docker exec` for tests that drive a scenario's test hosts from
the control machine: always with a timeout, a failure raised as an assertion
so that pytest shows the command and its error output."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping


def docker(
    *args: str, timeout: float = 60, check: bool = True, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `docker ARGS`; with `check`, a non-zero exit fails the test."""
    result = subprocess.run(
        ["docker", *args], input=stdin, capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"docker {' '.join(args)} -> {result.returncode}: {result.stderr.strip()}"
        )
    return result


def dexec(
    host: str,
    *command: str,
    timeout: float = 60,
    check: bool = True,
    stdin: str | None = None,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command inside a test host; `env` is passed with `-e`, so that a
    password never shows on a command line."""
    options = ["-i"] if stdin is not None else []
    for name, value in (env or {}).items():
        options += ["-e", f"{name}={value}"]
    return docker("exec", *options, host, *command, timeout=timeout, check=check, stdin=stdin)


# What boots systemd in a test host on these machines (see scripts/local-hosts
# and .config/molecule/config.yml, which say the same in their own forms):
# no --privileged, only the two cgroup subtrees, and the stop signal systemd
# shuts down on.
SYSTEMD_HOST_OPTIONS = (
    "--cap-add=SYS_ADMIN",
    "--cap-add=SYS_PTRACE",
    "--cap-add=NET_ADMIN",
    "--cgroupns=host",
    "--volume=/sys/fs/cgroup/systemd:/sys/fs/cgroup/systemd:rw",
    "--volume=/sys/fs/cgroup/unified:/sys/fs/cgroup/unified:rw",
    "--tmpfs=/run",
    "--tmpfs=/run/lock",
    "--tmpfs=/tmp:exec,mode=1777",
    "--stop-signal=SIGRTMIN+3",
)


def start_systemd_host(name: str, image: str, network: str, address: str, *options: str) -> None:
    """`docker run` a test host named `name` at `address` on `network`, with
    `options` (labels, more capabilities) besides those that boot systemd."""
    docker(
        "run",
        "--detach",
        f"--name={name}",
        f"--hostname={name}",
        f"--network={network}",
        f"--ip={address}",
        *SYSTEMD_HOST_OPTIONS,
        *options,
        image,
        "/sbin/init",
        timeout=120,
    )
