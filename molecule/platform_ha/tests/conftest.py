"""Figures of the run: printed in pytest's summary, kept in build/platform_ha-figures.json."""

from __future__ import annotations

from figures import report_figures
from helpers import FIGURES, FIGURES_FILE


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    report_figures(terminalreporter, "platform_ha figures", FIGURES, FIGURES_FILE, width=36)
