"""A packet capture of a scenario's own Docker network, searched afterwards
for secrets that must never cross it in clear text.

tcpdump runs on the control machine on the network's bridge, which carries
every packet between the scenario's hosts and between them and the control
machine. It stops by itself after `max_seconds` or `max_packets`, whichever
comes first. A marker sent in clear text at the start proves that the
capture holds payloads and that the search finds what is there.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Mapping
from pathlib import Path

from host_commands import docker

# Three base64url parts, the first two JSON objects ('{"' is "eyJ"): a JWT.
JWT_PATTERN = re.compile(rb"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]+")


def bridge_of(network: str) -> str:
    """The Linux bridge of a Docker network (br- and the first 12 of its id)."""
    options = docker(
        "network", "inspect", "-f", '{{index .Options "com.docker.network.bridge.name"}}', network
    ).stdout.strip()
    if options and options != "<no value>":
        return options
    return "br-" + docker("network", "inspect", "-f", "{{.Id}}", network).stdout.strip()[:12]


class TrafficCapture:
    """tcpdump on a network's bridge, writing every packet whole to `path`."""

    def __init__(
        self, network: str, path: Path, max_seconds: int = 1800, max_packets: int = 5_000_000
    ) -> None:
        self.network = network
        self.path = path
        self.max_seconds = max_seconds
        self.max_packets = max_packets
        self.process: subprocess.Popen[bytes] | None = None
        self.marker = f"capture-marker-{uuid.uuid4().hex}"

    def start(self) -> None:
        tcpdump = shutil.which("tcpdump")
        assert tcpdump, "tcpdump is missing on the control machine (scripts/bootstrap installs it)"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.unlink(missing_ok=True)
        # -U: each packet written as it comes, so that a stop loses nothing.
        self.process = subprocess.Popen(
            [
                "timeout",
                str(self.max_seconds),
                tcpdump,
                "-i",
                bridge_of(self.network),
                "-s",
                "0",
                "-U",
                "-n",
                "-c",
                str(self.max_packets),
                "-w",
                str(self.path),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 10
        while not (self.path.exists() and self.path.stat().st_size > 0):
            assert self.process.poll() is None, self.process.stderr.read().decode()  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "tcpdump wrote nothing within 10 s"
            time.sleep(0.1)

    def marker_request(self) -> bytes:
        """A clear-text request naming the marker and a token-shaped string:
        what the search must find, to show that it can."""
        return (
            f"GET /{self.marker} HTTP/1.1\r\nHost: capture\r\n"
            f"Authorization: Bearer eyJ{self.marker}.eyJ{self.marker}.signature\r\n"
            "Connection: close\r\n\r\n"
        ).encode()

    def stop(self) -> bytes:
        """Stop tcpdump (if still running) and return what it captured."""
        assert self.process is not None, "the capture was never started"
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.path.read_bytes()

    def packets(self, expression: str) -> int:
        """How many captured packets match a tcpdump filter expression."""
        result = subprocess.run(
            ["tcpdump", "-r", str(self.path), "-n", "-q", expression],
            capture_output=True,
            text=True,
            timeout=300,
            check=True,
        )
        return len(result.stdout.splitlines())


def secrets_in(data: bytes, secrets: Mapping[str, str]) -> list[str]:
    """The names of the secrets whose value appears in the captured bytes."""
    return [name for name, value in secrets.items() if value and value.encode() in data]


def tokens_in(data: bytes) -> list[bytes]:
    """Every JWT-shaped string in the captured bytes."""
    return JWT_PATTERN.findall(data)
