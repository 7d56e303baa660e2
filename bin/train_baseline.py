#!/usr/bin/env python3
"""train_baseline: fit the model-free k-mer ridge baseline. Code: bin/caveat/train_baseline.py."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from caveat.cli import run_entry  # noqa: E402  (light: the step is imported after --version)

sys.exit(run_entry("caveat.train_baseline"))
