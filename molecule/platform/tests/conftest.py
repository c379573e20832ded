"""Figures of the run: printed in pytest's summary, kept in build/platform-figures.json."""

from __future__ import annotations

import json

from helpers import FIGURES, FIGURES_FILE

ORDER = [
    "exposure",
    "sent",
    "accepted",
    "accepted_in_all",
    "awarded",
    "lost",
    "duplicated",
    "rejected_503",
    "redis_restart_503",
    "api_stop_failures",
    "api_stop_requests",
    "api_2_state_while_stopped",
    "killed_instance_restarts",
    "stale_connection_retries",
    "settled_after_error",
    "dead_letters",
    "pending_after",
    "burst_seconds",
    "upgrade_sent",
    "upgrade_failures",
    "upgrade_token_refresh_failures",
    "upgrade_longest_pause",
    "upgrade_stale_connection_retries",
    "upgrade_seconds",
    "restart_seconds",
]


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not FIGURES:
        return
    terminalreporter.write_sep("=", "platform figures")
    for name in ORDER + sorted(set(FIGURES) - set(ORDER)):
        if name in FIGURES:
            value = FIGURES[name]
            if isinstance(value, dict):
                value = ", ".join(f"{k}={v}" for k, v in value.items())
            terminalreporter.write_line(f"{name:32} {value}")
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
