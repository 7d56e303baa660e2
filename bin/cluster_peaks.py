#!/usr/bin/env python3
"""cluster_peaks: union peaks, accessibility matrix, ubiquitous vs specific clusters, LDSC export. Code: bin/caveat/cluster_peaks.py."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from caveat.cli import run_entry  # noqa: E402  (light: the step is imported after --version)

sys.exit(run_entry("caveat.cluster_peaks"))
