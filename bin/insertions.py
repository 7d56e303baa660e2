#!/usr/bin/env python3
"""insertions: Tn5 insertion bigWig of one sample, or a cell type's pseudobulk. Code: bin/caveat/insertions.py."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from caveat.cli import run_entry  # noqa: E402  (light: the step is imported after --version)

sys.exit(run_entry("caveat.insertions"))
