#!/usr/bin/env python3
"""call_imbalance: pool allele counts per cell type, binomial (or beta-binomial) test, BH → imbalance.parquet. Code: bin/caveat/call_imbalance.py."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from caveat.cli import run_entry  # noqa: E402
from caveat.call_imbalance import main  # noqa: E402

sys.exit(run_entry(main))
