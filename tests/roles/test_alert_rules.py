"""The monitoring role's alert rules, checked and unit-tested with promtool.

promtool comes with Debian's prometheus package, which scripts/bootstrap
installs on the control machine. Each rule has a firing and a quiet case in
alert_rules_test.yml; a rule without a test fails here.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "roles" / "monitoring" / "files" / "loyalty.rules.yml"
TESTS = Path(__file__).with_name("alert_rules_test.yml")


def promtool() -> str:
    path = shutil.which("promtool")
    assert path, "promtool is missing: run scripts/bootstrap (it installs Debian's prometheus)"
    return path


def test_rules_pass_promtool_check() -> None:
    result = subprocess.run(
        [promtool(), "check", "rules", str(RULES)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_rules_unit_tests_pass() -> None:
    result = subprocess.run(
        [promtool(), "test", "rules", TESTS.name],
        cwd=TESTS.parent,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_rule_has_a_firing_and_a_quiet_case() -> None:
    rules = [
        rule["alert"]
        for group in yaml.safe_load(RULES.read_text())["groups"]
        for rule in group["rules"]
    ]
    firing: set[str] = set()
    quiet: set[str] = set()
    for case in yaml.safe_load(TESTS.read_text())["tests"]:
        for check in case.get("alert_rule_test", []):
            (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    missing_firing = sorted(set(rules) - firing)
    assert not missing_firing, f"rules with no firing case: {missing_firing}"
    # HighErrorRatio and CertificateExpiresSoon check their quiet series in
    # the same evaluation (exp_alerts lists only the one that must fire).
    missing_quiet = sorted(set(rules) - quiet - {"HighErrorRatio", "CertificateExpiresSoon"})
    assert not missing_quiet, f"rules with no quiet case: {missing_quiet}"
