"""Figures of the run: printed in pytest's summary, kept in build/platform_ha-figures.json."""

from __future__ import annotations

import sys
from pathlib import Path

# Code shared by the scenarios' tests lives once, in molecule/shared/. Molecule
# hands pytest only this directory, so put that one on the import path too.
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared"))

from figures import report_figures
from helpers import FIGURES, FIGURES_FILE


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    report_figures(terminalreporter, "platform_ha figures", FIGURES, FIGURES_FILE, width=36)
