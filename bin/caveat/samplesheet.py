"""The samplesheet: one row per sample (donor × cell type), or per single-cell library.

Bulk rows: ``sample, donor, cell_type, bam`` and optionally ``peaks`` (BED of
that cell type's peaks; rows of a cell type without peaks get them called).
Single-cell rows (``docs/single_cell.md``) fill ``fragments`` and ``barcodes``
instead of ``donor``/``cell_type``; :func:`caveat.single_cell.read_libraries`
reads them. One sheet may hold both kinds (the header is the union of columns).
Relative paths are resolved against the samplesheet's directory.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import InputError

REQUIRED = ("sample", "donor", "cell_type", "bam")
OPTIONAL = ("peaks",)
#: columns of single-cell library rows (a row filling either is a library)
LIBRARY_COLUMNS = ("fragments", "barcodes")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def read_samplesheet(path: str | Path, *, check_files: bool = True, libraries: str = "error") -> pd.DataFrame:
    """Read and check a samplesheet's bulk rows.

    Parameters
    ----------
    libraries : {"error", "skip"}
        What to do with single-cell library rows: refuse them (a step that reads bulk
        BAMs only), or leave them out (the caller reads them with
        :func:`caveat.single_cell.read_libraries`).

    Returns
    -------
    pandas.DataFrame
        Columns ``sample, donor, cell_type, bam, peaks`` (``peaks`` may be
        empty strings); paths absolute; sorted as in the file.
    """
    path = Path(path)
    df = read_table(path)
    lib = is_library_row(df)
    if lib.any() and libraries != "skip":
        line = int(lib.to_numpy().argmax()) + 2
        raise InputError(path, f"line {line}: {df['sample'].iloc[line - 2]!r} is a single-cell library "
                         "(fragments/barcodes), which this step does not read",
                         "run single-cell libraries through the pipeline's single-cell input "
                         "(docs/single_cell.md), or give bulk rows sample,donor,cell_type,bam[,peaks]")
    df = df.loc[~lib, list(REQUIRED + OPTIONAL)].reset_index(drop=True)
    if df.empty and not lib.any():
        raise InputError(path, "no samples", "add one row per sample (donor × cell type)")
    lines = [int(i) + 2 for i in np.flatnonzero(~lib.to_numpy())]  # file line of each bulk row
    _check_bulk_rows(df, path, lines)
    base = path.resolve().parent
    for col in ("bam", "peaks"):
        df[col] = [resolve(base, v) for v in df[col]]
    _check_distinct_bams(df, path, lines)
    if check_files:
        for line, (_, row) in zip(lines, df.iterrows()):
            for col in ("bam", "peaks"):
                if row[col] and not Path(row[col]).exists():
                    raise InputError(path, f"line {line}: {col} file {row[col]} of sample {row['sample']} not found",
                                     "fix the path (relative paths are relative to the samplesheet)")
    return df


def read_table(path: Path) -> pd.DataFrame:
    """The sheet's rows as strings (stripped), every allowed column present (empty when absent).

    Raises :class:`InputError` for a missing file, missing bulk columns in a bulk-only
    header, or an unknown column."""
    if not path.exists():
        raise InputError(path, "samplesheet not found", "set `input` to your samplesheet CSV")
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    df.columns = [c.strip() for c in df.columns]
    allowed = REQUIRED + OPTIONAL + LIBRARY_COLUMNS
    extra = [c for c in df.columns if c not in allowed]
    if extra:
        raise InputError(path, f"unknown column(s) {', '.join(extra)}",
                         f"allowed columns: {','.join(allowed)} (docs/single_cell.md for single-cell rows)")
    has_lib_cols = any(c in df.columns for c in LIBRARY_COLUMNS)
    need = ("sample", "bam") if has_lib_cols else REQUIRED
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise InputError(path, f"missing column(s) {', '.join(missing)}",
                         "the header must be: sample,donor,cell_type,bam[,peaks] (bulk), with "
                         "fragments,barcodes added for single-cell libraries (docs/single_cell.md)")
    for col in allowed:
        df[col] = df[col].str.strip() if col in df.columns else ""
    return df[list(allowed)]


def is_library_row(df: pd.DataFrame) -> pd.Series:
    """Rows that are single-cell libraries (``fragments`` or ``barcodes`` filled). Returns bool (n,)."""
    return (df["fragments"] != "") | (df["barcodes"] != "")


def resolve(base: Path, v: str) -> str:
    """``v`` as an absolute path (relative to ``base``); empty stays empty."""
    return str((base / v).resolve()) if v and not Path(v).is_absolute() else v


def check_name(path: Path, line: int, col: str, value: str) -> None:
    """Names are used in file names: letters, digits, ``. _ -``, not starting with a symbol."""
    if not _NAME.match(value):
        raise InputError(path, f"line {line}: {col} {value!r} is empty or has characters other than letters, digits, . _ -",
                         f"rename the {col} (it is used in file names)")


def _check_bulk_rows(df: pd.DataFrame, path: Path, lines: list[int]) -> None:
    for line, (_, row) in zip(lines, df.iterrows()):
        for col in ("sample", "donor", "cell_type"):
            check_name(path, line, col, row[col])
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


def _check_distinct_bams(df: pd.DataFrame, path: Path, lines: list[int]) -> None:
    """One BAM listed for two samples would count the same reads twice (as two donors or cell types)."""
    real = [str(Path(b).resolve()) for b in df["bam"]]
    seen: dict[str, int] = {}
    for i, b in enumerate(real):
        if b in seen:
            j = seen[b]
            raise InputError(path, f"line {lines[i]}: sample {df['sample'][i]} lists the same BAM as sample "
                             f"{df['sample'][j]} (line {lines[j]}): {df['bam'][i]}",
                             "give each sample (donor × cell type) its own BAM")
        seen[b] = i


def cell_types(sheet: pd.DataFrame) -> list[str]:
    """Cell types in order of first appearance (the order of target columns)."""
    return list(dict.fromkeys(sheet["cell_type"]))
