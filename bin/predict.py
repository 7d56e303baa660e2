#!/usr/bin/env python3
"""predict: reference predictions of trained models on the test chromosomes. Code: bin/caveat/predict.py."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from caveat.cli import run_entry  # noqa: E402  (light: the step is imported after --version)

sys.exit(run_entry("caveat.predict"))
