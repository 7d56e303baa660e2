#!/usr/bin/env python3
"""score_variants: REF vs ALT centre-bin predictions (ISM) for every tested variant. Code: bin/caveat/score_variants.py."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from caveat.cli import run_entry  # noqa: E402  (light: the step is imported after --version)

sys.exit(run_entry("caveat.score_variants"))
