#!/usr/bin/env python3
"""report: self-contained HTML report of the study's figures, QC and every metric. Code: bin/caveat/report.py."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from caveat.cli import run_entry  # noqa: E402
from caveat.report import main  # noqa: E402

sys.exit(run_entry(main))
