"""Puts the scenarios' shared test code on the import path."""

import sys
from pathlib import Path

# Code shared by the scenarios' tests lives once, in molecule/shared/. Molecule
# hands pytest only this directory, so put that one on the import path too.
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared"))
