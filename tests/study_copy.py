"""A cheap copy of a simulated study: its big files linked, its small text files copied (to edit)."""

from __future__ import annotations

import shutil
from pathlib import Path

COPIED = ("samplesheet.csv", "params.yaml", "truth", "simulate.summary.json")


def study_copy(study: Path, dst: Path) -> Path:
    """``dst`` holding ``study``'s files: BAMs, genome and VCF as symlinks, the rest copied.

    Relative paths in the samplesheet and params keep working, and editing the copy's
    samplesheet or params leaves the session's study untouched.
    """
    dst.mkdir(parents=True, exist_ok=True)
    for f in study.iterdir():
        if f.name in COPIED:
            (shutil.copytree if f.is_dir() else shutil.copy2)(f, dst / f.name)
        elif f.name != "results":
            (dst / f.name).symlink_to(f.resolve())
    return dst
