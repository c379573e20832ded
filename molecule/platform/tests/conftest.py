"""Figures of the run: printed in pytest's summary, kept in build/platform-figures.json.
The capture of the scenario's network starts before the first test and is
searched by the last one (test_8_capture.py)."""

from __future__ import annotations

import socket

import pytest
from capture import TrafficCapture
from figures import report_figures
from helpers import FIGURES, FIGURES_FILE, REPO, ROUTER, STATE

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
    "capture_packets",
    "capture_megabytes",
    "monitoring_exposure",
    "monitoring_counted",
    "alert_seconds",
]


@pytest.fixture(scope="session", autouse=True)
def network_capture():
    """tcpdump on the scenario's network for the whole run (at most 30
    minutes), opened by a clear-text marker request to the router's port 80."""
    capture = TrafficCapture("platform", REPO / "build" / "platform-capture.pcap")
    capture.start()
    with socket.create_connection((ROUTER, 80), timeout=10) as connection:
        connection.sendall(capture.marker_request())
        connection.recv(4096)
    STATE["capture"] = capture
    yield capture
    capture.stop()


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    report_figures(terminalreporter, "platform figures", FIGURES, FIGURES_FILE, ORDER, width=32)
