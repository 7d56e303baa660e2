#!/usr/bin/env python3
"""predict: reference predictions of trained models on the test chromosomes. Code: bin/caveat/predict.py."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from caveat.cli import run_entry  # noqa: E402
from caveat.predict import main  # noqa: E402

sys.exit(run_entry(main))
