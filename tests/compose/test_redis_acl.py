"""The compose Redis grants the services' user what the redis role grants it.

containers/redis/entrypoint.sh writes the ACL at start-up; roles/redis keeps
the same rules in vars/main.yml. One list must not drift from the other.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
ENTRYPOINT = REPO / "containers" / "redis" / "entrypoint.sh"
ROLE_VARS = REPO / "roles" / "redis" / "vars" / "main.yml"


def entrypoint_service_rules() -> tuple[list[str], list[str]]:
    """(key patterns, command rules) of the service user's line in the entrypoint."""
    lines = [
        line
        for line in ENTRYPOINT.read_text().splitlines()
        if line.startswith("user $REDIS_SERVICE_USER ")
    ]
    assert len(lines) == 1, f"one service user line expected in {ENTRYPOINT}, got {lines}"
    words = lines[0].split()[2:]
    assert words[0] == "on" and words[1].startswith("#"), lines[0]
    patterns = [w[1:] for w in words[2:] if w.startswith("~")]
    rules = [w for w in words[2:] if re.match(r"^[+-]", w)]
    return patterns, rules


def test_service_user_commands_match_the_role() -> None:
    role = yaml.safe_load(ROLE_VARS.read_text())["__redis_service_acl_commands"]
    _, rules = entrypoint_service_rules()
    assert rules == list(role)


def test_service_user_keys_match_the_role() -> None:
    defaults = yaml.safe_load((REPO / "roles" / "redis" / "defaults" / "main.yml").read_text())
    patterns, _ = entrypoint_service_rules()
    assert patterns == list(defaults["redis_service_key_patterns"])
