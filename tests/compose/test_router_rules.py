"""The compose router routes exactly as the router role does.

The role's template is rendered with Ansible (the role's defaults and vars,
one Auth API and one Transaction API host) and compared, section by section
and line by line, with containers/router/haproxy.cfg. Allowed to differ: the
`global` section, `resolvers` sections, the admin frontend, the metrics
frontend (HAProxy's exporter for the monitoring hosts: Compose runs no
monitoring), `bind` lines,
`server`/`server-template` lines and comments, the plain frontend (only a
308 to HTTPS, whose target port differs), the HSTS header (whose max-age
Compose lets a user shorten for localhost), and the TLS options of the
role's `default-server` lines: behind its router, Compose speaks plain text
to the APIs (docs/compose.md).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE_CFG = REPO / "containers" / "router" / "haproxy.cfg"
IGNORED_SECTIONS = re.compile(
    r"^(global|resolvers \S+|frontend admin|frontend plain|frontend metrics)$"
)
IGNORED_LINES = re.compile(
    r"^(#|bind |server |server-template |http-after-response set-header Strict-Transport-Security )"
)

# The role's TLS to the APIs, at the end of its default-server lines.
BACKEND_TLS = re.compile(r" ssl verify required .*$")

PLAYBOOK = """
- hosts: localhost
  gather_facts: false
  vars_files:
    - "{{ repo }}/roles/router/defaults/main.yml"
    - "{{ repo }}/roles/router/vars/main.yml"
  tasks:
    - name: Render the role's haproxy.cfg
      ansible.builtin.template:
        src: "{{ repo }}/roles/router/templates/haproxy.cfg.j2"
        dest: "{{ out }}"
        mode: "0644"
"""


def sections(text: str) -> dict[str, list[str]]:
    """Section header -> its directives, without what may differ."""
    found: dict[str, list[str]] = {}
    current: list[str] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if not raw[0].isspace():
            current = None if IGNORED_SECTIONS.match(line) else found.setdefault(line, [])
        elif current is not None and not IGNORED_LINES.match(line):
            current.append(BACKEND_TLS.sub("", line))
    return found


@pytest.fixture(scope="module")
def role_cfg(tmp_path_factory: pytest.TempPathFactory) -> str:
    work = tmp_path_factory.mktemp("router")
    inventory = {
        "all": {
            "children": {
                "router": {
                    "hosts": {
                        "localhost": {
                            "ansible_connection": "local",
                            "ansible_python_interpreter": sys.executable,
                            "private_address": "127.0.0.1",
                        }
                    }
                },
                "auth_api": {"hosts": {"auth-api": {"private_address": "auth-api"}}},
                "transaction_api": {
                    "hosts": {"transaction-api": {"private_address": "transaction-api"}}
                },
            }
        }
    }
    (work / "hosts.yml").write_text(yaml.safe_dump(inventory))
    (work / "render.yml").write_text(PLAYBOOK)
    playbook = Path(sys.executable).with_name("ansible-playbook")
    result = subprocess.run(
        [
            str(playbook),
            "-i",
            str(work / "hosts.yml"),
            str(work / "render.yml"),
            "-e",
            f"repo={REPO}",
            "-e",
            f"out={work / 'haproxy.cfg'}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return (work / "haproxy.cfg").read_text()


def test_routing_sections_match_the_role(role_cfg: str) -> None:
    role = sections(role_cfg)
    compose = sections(COMPOSE_CFG.read_text())
    assert list(compose) == list(role)
    for name, lines in role.items():
        assert compose[name] == lines, name


def test_each_backend_reaches_its_compose_service() -> None:
    text = COMPOSE_CFG.read_text()
    for backend, service in (("auth_api", "auth-api"), ("transaction_api", "transaction-api")):
        body = text.split(f"\nbackend {backend}\n", 1)[1].split("\n\n", 1)[0]
        assert re.search(
            rf"^\s+server-template \S+ \S+ {service}:5000 resolvers docker ", body, re.M
        ), backend


def test_public_frontend_serves_https_and_the_plain_one_only_redirects() -> None:
    text = COMPOSE_CFG.read_text()
    public = text.split("\nfrontend public\n", 1)[1]
    assert re.match(r"\s+bind \*:8443 ssl crt /run/secrets/router_pem alpn h2,http/1.1\n", public)
    plain = text.split("\nfrontend plain\n", 1)[1].split("\n\n", 1)[0]
    rules = [line.strip() for line in plain.splitlines() if not line.strip().startswith("#")]
    assert rules[0] == "bind *:8080"
    assert rules[1:] and all(r.startswith("http-request redirect code 308 ") for r in rules[1:])
