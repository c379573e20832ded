"""The figures a scenario measures: printed at the end of pytest's summary and
merged into a JSON file under build/, where the documentation's numbers and
later runs read them."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def save_figures(path: Path, figures: Mapping[str, object]) -> None:
    """Merge into the file: a partial run (one file of tests) updates only
    its own figures and keeps the others."""
    path.parent.mkdir(parents=True, exist_ok=True)
    previous = {}
    if path.exists():
        try:
            previous = json.loads(path.read_text())
        except ValueError:
            previous = {}
    path.write_text(json.dumps(previous | dict(figures), indent=2, sort_keys=True) + "\n")


def report_figures(
    terminalreporter: Any,
    title: str,
    figures: Mapping[str, object],
    path: Path,
    order: Sequence[str] = (),
    width: int = 32,
) -> None:
    """Print the figures (those in `order` first, then the rest by name),
    one a line, then save them to `path`. Nothing when none were measured."""
    if not figures:
        return
    terminalreporter.write_sep("=", title)
    for name in [*order, *sorted(set(figures) - set(order))]:
        if name in figures:
            value = figures[name]
            if isinstance(value, dict):
                value = ", ".join(f"{k}={v}" for k, v in value.items())
            terminalreporter.write_line(f"{name:{width}} {value}")
    save_figures(path, figures)
    terminalreporter.write_line(f"(also written to {path})")
