"""The samplesheet: one row per sample (donor × cell type).

Columns: ``sample, donor, cell_type, bam`` and optionally ``peaks`` (BED of
that cell type's peaks; rows of a cell type without peaks get them called).
Relative paths are resolved against the samplesheet's directory.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from .errors import InputError

REQUIRED = ("sample", "donor", "cell_type", "bam")
OPTIONAL = ("peaks",)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def read_samplesheet(path: str | Path, *, check_files: bool = True) -> pd.DataFrame:
    """Read and check a samplesheet.

    Returns
    -------
    pandas.DataFrame
        Columns ``sample, donor, cell_type, bam, peaks`` (``peaks`` may be
        empty strings); paths absolute; sorted as in the file.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(path, "samplesheet not found", "set `input` to your samplesheet CSV")
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    df.columns = [c.strip() for c in df.columns]
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise InputError(path, f"missing column(s) {', '.join(missing)}",
                         "the header must be: sample,donor,cell_type,bam[,peaks]")
    extra = [c for c in df.columns if c not in REQUIRED + OPTIONAL]
    if extra:
        raise InputError(path, f"unknown column(s) {', '.join(extra)}",
                         "allowed columns: sample,donor,cell_type,bam,peaks")
    if "peaks" not in df.columns:
        df["peaks"] = ""
    if df.empty:
        raise InputError(path, "no samples", "add one row per sample (donor × cell type)")
    for col in df.columns:
        df[col] = df[col].str.strip()
    for i, row in df.iterrows():
        line = i + 2
        for col in ("sample", "donor", "cell_type"):
            if not _NAME.match(row[col]):
                raise InputError(path, f"line {line}: {col} {row[col]!r} is empty or has characters other than letters, digits, . _ -",
                                 f"rename the {col} (it is used in file names)")
        if not row["bam"]:
            raise InputError(path, f"line {line}: sample {row['sample']} has no bam", "give the BAM path")
    dup = df["sample"][df["sample"].duplicated()].tolist()
    if dup:
        raise InputError(path, f"sample {dup[0]!r} appears more than once", "sample names must be unique")
    pairs = df[["donor", "cell_type"]].astype(str).agg(":".join, axis=1)
    if pairs.duplicated().any():
        d, c = pairs[pairs.duplicated()].iloc[0].split(":")
        raise InputError(path, f"donor {d} × cell type {c} appears twice",
                         "merge the BAMs of one donor × cell type into one sample")
    base = path.resolve().parent
    for col in ("bam", "peaks"):
        df[col] = [str((base / v).resolve()) if v and not Path(v).is_absolute() else v for v in df[col]]
    _check_distinct_bams(df, path)
    if check_files:
        for i, row in df.iterrows():
            for col in ("bam", "peaks"):
                if row[col] and not Path(row[col]).exists():
                    raise InputError(path, f"line {i + 2}: {col} file {row[col]} of sample {row['sample']} not found",
                                     "fix the path (relative paths are relative to the samplesheet)")
    return df.reset_index(drop=True)


def _check_distinct_bams(df: pd.DataFrame, path: Path) -> None:
    """One BAM listed for two samples would count the same reads twice (as two donors or cell types)."""
    real = [str(Path(b).resolve()) for b in df["bam"]]
    seen: dict[str, int] = {}
    for i, b in enumerate(real):
        if b in seen:
            j = seen[b]
            raise InputError(path, f"line {i + 2}: sample {df['sample'][i]} lists the same BAM as sample "
                             f"{df['sample'][j]} (line {j + 2}): {df['bam'][i]}",
                             "give each sample (donor × cell type) its own BAM")
        seen[b] = i


def cell_types(sheet: pd.DataFrame) -> list[str]:
    """Cell types in order of first appearance (the order of target columns)."""
    return list(dict.fromkeys(sheet["cell_type"]))
