#!/usr/bin/env python3
"""count_alleles: COUNT_ALLELES: REF/ALT/other counts per het SNP, each fragment once. Code: bin/caveat/count_alleles.py."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from caveat.cli import run_entry  # noqa: E402  (light: the step is imported after --version)

sys.exit(run_entry("caveat.count_alleles"))
