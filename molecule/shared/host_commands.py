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
