"""Reading the dataset build_dataset writes (windows.parquet with its targets, the cell-type
order of build_dataset.summary.json) and the inputs every model step loads from it: shared by
build_dataset, train and predict, so no step imports another."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .errors import InputError
from .io import read_json
from .loader import GenomeCodes
from .log import get_logger

log = get_logger("dataset_io")

GENOME_PAD = 16  # N's around each contig: room for shifts


def read_windows(path: str | Path) -> tuple[pd.DataFrame, np.ndarray]:
    """Read windows.parquet → (windows without targets, targets (W, T) float32)."""
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.exists():
        raise InputError(path, "windows.parquet not found", "run the build_dataset step first")
    table = pq.read_table(path)
    col = table.column("targets").combine_chunks()
    flat = col.flatten().to_numpy(zero_copy_only=False).astype(np.float32)
    size = getattr(col.type, "list_size", len(flat) // max(len(table), 1))
    if len(flat) != size * len(table):
        raise InputError(path, "targets lists differ in length between windows", "rebuild the dataset")
    targets = flat.reshape(len(table), size)
    windows = table.drop_columns(["targets"]).to_pandas()
    return windows, targets


def cell_types_of(summary_path: str | Path) -> list[str]:
    """Cell-type names (target order) from build_dataset.summary.json."""
    return list(read_json(summary_path)["cell_types"])


def load_inputs(windows_path: Path, summary_path: Path, fasta: Path) -> tuple[pd.DataFrame, np.ndarray, list, GenomeCodes]:
    """windows.parquet, its cell types and the integer-coded genome of its contigs."""
    windows, targets = read_windows(windows_path)
    cell_types = cell_types_of(summary_path)
    if targets.shape[1] != len(cell_types):
        raise InputError(windows_path, f"{targets.shape[1]} targets per window but {len(cell_types)} cell types in {summary_path.name}",
                         "rebuild the dataset (build_dataset step)")
    contigs = list(dict.fromkeys(windows["chrom"]))
    genome = GenomeCodes.from_fasta(fasta, contigs, pad=GENOME_PAD)
    log.info("read %d windows × %d cell types from %s and %d contigs from %s", len(windows), len(cell_types),
             windows_path.name, len(contigs), Path(fasta).name)
    return windows, targets, cell_types, genome


__all__ = ["GENOME_PAD", "cell_types_of", "load_inputs", "read_windows"]
