#!/usr/bin/env python3
"""match_negatives: balanced variants matched to the imbalanced ones on log depth → variant_sets.parquet. Code: bin/caveat/match_negatives.py."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from caveat.cli import run_entry  # noqa: E402
from caveat.match_negatives import main  # noqa: E402

sys.exit(run_entry(main))
