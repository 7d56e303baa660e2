#!/usr/bin/env python3
"""build_dataset: 1344 bp windows with centre-bin targets per cell type and chromosome splits. Code: bin/caveat/build_dataset.py."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from caveat.cli import run_entry  # noqa: E402  (light: the step is imported after --version)

sys.exit(run_entry("caveat.build_dataset"))
