#!/usr/bin/env python3
"""report: self-contained HTML report of the study's figures, QC and every metric. Code: bin/caveat/report.py."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from caveat.cli import run_entry  # noqa: E402  (light: the step is imported after --version)

sys.exit(run_entry("caveat.report"))
