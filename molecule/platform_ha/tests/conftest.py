"""Figures of the run: printed in pytest's summary, kept in build/platform_ha-figures.json."""

from __future__ import annotations

import json

from helpers import FIGURES, FIGURES_FILE


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not FIGURES:
        return
    terminalreporter.write_sep("=", "platform_ha figures")
    for name in sorted(FIGURES):
        value = FIGURES[name]
        if isinstance(value, dict):
            value = ", ".join(f"{k}={v}" for k, v in value.items())
        terminalreporter.write_line(f"{name:36} {value}")
    FIGURES_FILE.parent.mkdir(parents=True, exist_ok=True)
    previous = {}
    if FIGURES_FILE.exists():
        try:
            previous = json.loads(FIGURES_FILE.read_text())
        except ValueError:
            previous = {}
    # A partial run (one file of tests) updates only its own figures.
    FIGURES_FILE.write_text(json.dumps(previous | FIGURES, indent=2, sort_keys=True) + "\n")
    terminalreporter.write_line(f"(also written to {FIGURES_FILE})")
