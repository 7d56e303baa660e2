#!/usr/bin/env python3
"""match_negatives: balanced variants matched to the imbalanced ones on log depth → variant_sets.parquet. Code: bin/caveat/match_negatives.py."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from caveat.cli import run_entry  # noqa: E402  (light: the step is imported after --version)

sys.exit(run_entry("caveat.match_negatives"))
