"""Figures of the run: printed in pytest's summary, kept in build/platform-figures.json."""

from __future__ import annotations

from figures import report_figures
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
    report_figures(terminalreporter, "platform figures", FIGURES, FIGURES_FILE, ORDER, width=32)
