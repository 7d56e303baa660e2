#!/usr/bin/env python3
"""wasp_remap: WASP_REMAP: allele-swap remapping filter + unbiased dedup of one sample's BAM. Code: bin/caveat/wasp_remap.py."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from caveat.cli import run_entry  # noqa: E402  (light: the step is imported after --version)

sys.exit(run_entry("caveat.wasp_remap"))
