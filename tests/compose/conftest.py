"""One composed platform for the whole session, started as a user would: a
fresh copy of the repository's tracked files (what `git clone` gives, with
this working tree's changes) and `docker-compose up -d` in it, nothing run
before. Only the variables compose.yaml documents are set: the base images
(the project's own Debian image: nothing can be pulled), the CA of a
TLS-intercepting proxy for the build's PyPI downloads (BUILD_EXTRA_CA, from
/usr/local/share/ca-certificates/ when the machine has one), the ports and
the subnet. Then three workers (`up -d --scale`). Requests go to the
router's HTTPS port and verify its certificate against the CA that the
`secrets` service made (`run --rm -T secrets ca`); the demo password is read
from `logs secrets`, as docs/compose.md tells a user.

Environment:
  LOYALTY_DEBIAN_RELEASE    trixie (Debian 13, the default) or bookworm
                            (Debian 12): the base image's release
  COMPOSE_TEST_BASE_IMAGE   base of every image (default
                            loyalty-host:<release>, from scripts/host-image)
  COMPOSE_COMMAND           "docker-compose" or "docker compose" (default:
                            whichever is installed, v1 first)
  COMPOSE_TEST_PROJECT      the compose project's name (loyalty-compose-test)
  COMPOSE_TEST_SUBNET       its network (172.30.40.0/24)
  LOYALTY_COMPOSE_TAG       the images' tag (test)
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
PROJECT = os.environ.get("COMPOSE_TEST_PROJECT") or "loyalty-compose-test"
SUBNET = os.environ.get("COMPOSE_TEST_SUBNET") or "172.30.40.0/24"
EXTRA_CA_DIR = Path("/usr/local/share/ca-certificates")
WORKERS = 3
FIGURES = REPO / "build" / "compose-figures.json"


def compose_command() -> list[str]:
    configured = os.environ.get("COMPOSE_COMMAND", "").strip()
    if configured:
        return shlex.split(configured)
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return ["docker", "compose"]


def default_base_image() -> str:
    """The host image of the release setting, named by the same shell
    functions as every other script's (an unknown release fails there)."""
    result = subprocess.run(
        [
            "bash",
            "-c",
            'source "$1/scripts/lib/debian-release.sh" && host_image "$(debian_release)"',
            "bash",
            str(REPO),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode:
        pytest.fail(result.stderr.strip())
    return result.stdout.strip()


def project_resources() -> dict[str, list[str]]:
    """Containers, networks and volumes labelled with the test project."""
    label = f"label=com.docker.compose.project={PROJECT}"
    found = {}
    for kind, command in (
        ("containers", ["docker", "ps", "-a", "-q", "--filter", label]),
        ("networks", ["docker", "network", "ls", "-q", "--filter", label]),
        ("volumes", ["docker", "volume", "ls", "-q", "--filter", label]),
    ):
        out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
        found[kind] = out.split()
    return found


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (the HTTPS port must be known before
    `up`: the router's redirect from the plain port names it)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: Any
    raw: bytes

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")


def fresh_copy(target: Path) -> None:
    """The repository's tracked files as they are in this working tree, into
    target: what a clone holds (no .venv, no build output, no secrets)."""
    listed = subprocess.run(
        ["git", "-C", str(REPO), "ls-files", "-z", "--cached"],
        capture_output=True,
        check=True,
    ).stdout
    for name in filter(None, listed.decode().split("\0")):
        source = REPO / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)


def extra_build_ca() -> str:
    """The machine's own added CAs (a TLS proxy's on the way to PyPI), for the
    image build; empty where there are none."""
    if os.environ.get("BUILD_EXTRA_CA"):
        return os.environ["BUILD_EXTRA_CA"]
    files = sorted(EXTRA_CA_DIR.glob("*.crt")) if EXTRA_CA_DIR.is_dir() else []
    return "".join(f.read_text(encoding="ascii") for f in files)


def demo_password_from_logs(logs: str) -> str:
    """The password the `secrets` service prints on each start (the last one)."""
    found = [
        line.rsplit("password: ", 1)[1].strip()
        for line in logs.splitlines()
        if "demo users" in line and "password: " in line
    ]
    assert found, f"no demo password in the secrets service's logs:\n{logs[-2000:]}"
    return found[-1]


@dataclass
class Platform:
    env: dict[str, str]
    secrets: Path
    # The fresh copy of the repository that compose runs in.
    checkout: Path = field(default_factory=Path)
    # https://127.0.0.1:<published 8443>; plain_address: 127.0.0.1:<published 8080>.
    base_url: str = ""
    plain_address: str = ""
    password: str = ""
    figures: dict[str, Any] = field(default_factory=dict)
    # time.monotonic() of the last request to the router's rate-limited
    # /authentication/token, so that a test can wait for its budget.
    last_token_request: float = 0.0

    def compose(self, *args: str, check: bool = True, timeout: float = 300) -> str:
        result = subprocess.run(
            [*compose_command(), *args],
            cwd=self.checkout,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"compose {' '.join(args)} failed ({result.returncode}):\n"
                f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
            )
        return result.stdout

    @property
    def ca_file(self) -> Path:
        """The compose CA's certificate (`run --rm -T secrets ca`)."""
        return self.secrets / "ca.crt"

    def tls_context(self) -> ssl.SSLContext:
        """Verifies the router's certificate and name against the compose CA only."""
        return ssl.create_default_context(cafile=str(self.ca_file))

    def container_ids(self, service: str) -> list[str]:
        return self.compose("ps", "-q", service).split()

    def read_secrets(self) -> None:
        """The demo password from `logs secrets` and the CA from `run --rm -T
        secrets ca`, into self.secrets (demo.password, ca.crt) as a user
        would save them."""
        self.password = demo_password_from_logs(self.compose("logs", "--no-color", "secrets"))
        (self.secrets / "demo.password").write_text(self.password + "\n")
        ca = self.compose("run", "--rm", "-T", "secrets", "ca")
        assert ca.startswith("-----BEGIN CERTIFICATE-----"), ca[:200]
        self.ca_file.write_text(ca)

    def first_accepted(self) -> bool:
        """A token and a 202 through the router (False until then)."""
        # Until the router's health checks pass: no answer, or 503. The
        # token endpoint is rate limited, so it is asked only once both
        # backends answer through the router.
        try:
            for path in ("/authentication/health", "/transactions/ready"):
                if self.request("GET", path).status != 200:
                    return False
            answer = self.request(
                "POST",
                "/authentication/token",
                form={"username": "alice", "password": self.password},
            )
            if answer.status != 200:
                return False
            answer = self.request(
                "POST",
                "/transactions/transactions",
                form={"token": answer.body["token"], "amount": "1", "currency": "GBP"},
            )
        except (OSError, ssl.SSLError):
            return False
        return answer.status == 202

    def request(
        self,
        method: str,
        path: str,
        *,
        form: dict[str, str] | None = None,
        json_body: Any = None,
        data: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Response:
        headers = dict(headers or {})
        if form is not None:
            data = urllib.parse.urlencode(form).encode()
            headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
        elif json_body is not None:
            data = json.dumps(json_body).encode()
            headers.setdefault("Content-Type", "application/json")
        request = urllib.request.Request(
            self.base_url + path, data=data, headers=headers, method=method
        )
        if path.startswith("/authentication/token"):
            self.last_token_request = time.monotonic()
        try:
            with urllib.request.urlopen(request, timeout=10, context=self.tls_context()) as answer:
                status, raw, got = answer.status, answer.read(), answer.headers
        except urllib.error.HTTPError as error:
            status, raw, got = error.code, error.read(), error.headers
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        return Response(status, {k.lower(): v for k, v in got.items()}, body, raw)

    def token(self, username: str) -> str:
        """A token through the router, as the originals' form fields ask;
        waits out the router's per-client rate limit (429) if it is hit."""
        for _ in range(30):
            answer = self.request(
                "POST",
                "/authentication/token",
                form={"username": username, "password": self.password},
            )
            if answer.status == 429:
                time.sleep(float(answer.headers.get("retry-after", "1")))
                continue
            assert answer.status == 200, (answer.status, answer.raw)
            return answer.body["token"]
        raise AssertionError("the token endpoint kept answering 429")

    def redis(self, *commands: list[str], user: str | None = "default") -> list[str]:
        """Run commands with redis-cli in the Redis container as `default`,
        as `loyalty`, or (user=None) without a password; one output line per
        reply element."""
        script = "".join(" ".join(shlex.quote(part) for part in c) + "\n" for c in commands)
        (container,) = self.container_ids("redis")
        login = {
            "default": 'REDISCLI_AUTH="$(head -n 1 /run/secrets/redis_admin_password)" ',
            "loyalty": 'REDISCLI_AUTH="$(head -n 1 /run/secrets/redis_loyalty_password)" ',
            None: "",
        }[user]
        options = "--user loyalty " if user == "loyalty" else ""
        result = subprocess.run(
            [
                "docker",
                "exec",
                "-i",
                container,
                "sh",
                "-c",
                f"{login}exec redis-cli --no-auth-warning {options}",
            ],
            input=script,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return result.stdout.splitlines()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The fuzz after every other test of the platform (it spends the
    router's token budget, which they ask for directly), then the restart,
    then the test that takes the platform down; otherwise file order."""

    def rank(item: pytest.Item) -> int:
        if item.get_closest_marker("takes_platform_down"):
            return 3
        if item.get_closest_marker("restarts_platform"):
            return 2
        return 1 if item.get_closest_marker("api_fuzz") else 0

    items.sort(key=rank)


def wait_for(what: str, predicate: Callable[[], Any], timeout: float, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


@pytest.fixture(scope="session")
def platform() -> Iterator[Platform]:
    base = os.environ.get("COMPOSE_TEST_BASE_IMAGE") or default_base_image()
    if subprocess.run(["docker", "image", "inspect", base], capture_output=True).returncode:
        pytest.fail(f"the base image {base} is missing; scripts/host-image builds it")
    secrets = Path(tempfile.mkdtemp(prefix="loyalty-compose-client-"))
    checkout = Path(tempfile.mkdtemp(prefix="loyalty-compose-clone-"))
    fresh_copy(checkout)
    env = dict(
        os.environ,
        COMPOSE_PROJECT_NAME=PROJECT,
        BASE_IMAGE=base,
        REDIS_BASE_IMAGE=base,
        HAPROXY_BASE_IMAGE=base,
        BUILD_EXTRA_CA=extra_build_ca(),
        LOYALTY_COMPOSE_TAG=os.environ.get("LOYALTY_COMPOSE_TAG") or "test",
        LOYALTY_COMPOSE_SUBNET=SUBNET,
        LOYALTY_COMPOSE_ADDRESS="127.0.0.1",
        # Empty: Docker picks a free port on 127.0.0.1. The HTTPS port is
        # chosen here, since the plain port's redirect must name it.
        LOYALTY_COMPOSE_PORT="",
        LOYALTY_COMPOSE_TLS_PORT=str(free_port()),
        # A killed worker's entries are taken over after 2 s instead of 30 s.
        WORKER_CLAIM_IDLE_MS="2000",
    )
    env.pop("COMPOSE_FILE", None)
    platform = Platform(env=env, secrets=secrets, checkout=checkout)
    platform.compose("down", "-v", "--remove-orphans", "--timeout", "5")
    try:
        started = time.monotonic()
        platform.compose("up", "-d", timeout=900)
        up_done = time.monotonic()
        address = platform.compose("port", "router", "8443").strip()
        assert address == f"127.0.0.1:{env['LOYALTY_COMPOSE_TLS_PORT']}", address
        platform.base_url = f"https://{address}"
        platform.plain_address = platform.compose("port", "router", "8080").strip()
        assert platform.plain_address.startswith("127.0.0.1:"), platform.plain_address
        platform.read_secrets()

        wait_for("the first 202 through the router", platform.first_accepted, timeout=120)
        platform.figures = {
            "command": " ".join([*compose_command(), "up", "-d"]),
            "base_image": base,
            "up_seconds": round(up_done - started, 1),
            "up_to_first_202_seconds": round(time.monotonic() - started, 1),
            "load_average_1min": round(os.getloadavg()[0], 1),
            "cpus": os.cpu_count(),
        }
        FIGURES.parent.mkdir(parents=True, exist_ok=True)
        FIGURES.write_text(json.dumps(platform.figures, indent=2) + "\n")
        print(f"\ncompose figures: {platform.figures}")
        platform.compose("up", "-d", "--no-recreate", "--scale", f"loyalty-worker={WORKERS}")
        yield platform
    finally:
        platform.compose("down", "-v", "--remove-orphans", "--timeout", "5", check=False)
        shutil.rmtree(secrets, ignore_errors=True)
        shutil.rmtree(checkout, ignore_errors=True)
