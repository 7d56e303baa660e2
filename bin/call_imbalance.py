#!/usr/bin/env python3
"""call_imbalance: pool allele counts per cell type, binomial (or beta-binomial) test, BH → imbalance.parquet. Code: bin/caveat/call_imbalance.py."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from caveat.cli import run_entry  # noqa: E402  (light: the step is imported after --version)

sys.exit(run_entry("caveat.call_imbalance"))
