"""Training targets on one scale: per-cell-type depth normalisation, then Basenji's clipping.

A window's raw target for a cell type is the pseudobulk insertions summed over
its centre bin. Pseudobulks differ in depth (donors × cells × fragments per
cell), and under a multitask Poisson loss the deepest cell type dominates the
gradient, so each cell type's targets are first multiplied by a **scale
factor** (``target_norm``):

* ``mean_depth`` (default): ``mean_c(N_c) / N_c``, where ``N_c`` is cell type
  ``c``'s total insertions over the whole genome (every contig of its
  pseudobulk bigWig). Every cell type then has the mean depth: values stay on
  the count scale the Poisson loss expects, and a cell type's profile is
  unchanged (one factor per cell type, so Pearson R per cell type is too).
* ``cpm``: ``1e6 / N_c``, insertions per million of the cell type's insertions.
* ``none``: raw insertion sums (factor 1).

Then, per cell type and in Basenji's order (``basenji_data_read.py``: soft clip,
then hard clip; thresholds here are quantiles of the scaled targets over the
dataset's windows, where Basenji takes fixed values from its targets file):

* ``target_clip_soft_quantile`` q: above ``t = quantile(x, q)`` a value becomes
  ``t + sqrt(x - t)``;
* ``target_clip_quantile`` q: values above ``quantile(x, q)`` are set to it.

Both default to off, as in the study: its targets file
(``ni-lab/kidney-finemapping`` ``resources/model_training/regression_targets.txt``)
has only ``sum_stat = sum`` — no ``clip``, ``clip_soft`` nor ``scale``
column, so ``basenji_data.py`` passed no clip and scale 1.

The factors and thresholds are recorded (:func:`record`) in the dataset's
summary and in ``windows.parquet``'s schema metadata (:data:`METADATA_KEY`),
so any other value of the same kind (a peak's insertions summed over the
centred target bin) is put on the targets' scale by :func:`apply_record`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np

from .errors import InputError

NORMS = ("mean_depth", "cpm", "none")
METADATA_KEY = b"caveat.target_scale"


def track_total(bw_path: str | Path) -> float:
    """Total insertions of a bigWig: the sum of value × span over every contig.

    Returns
    -------
    float
    """
    import pyBigWig

    total = 0.0
    with pyBigWig.open(str(bw_path)) as bw:
        for chrom in bw.chroms():
            iv = bw.intervals(chrom) or ()
            if iv:
                arr = np.asarray(iv, dtype=np.float64)
                total += float((np.nan_to_num(arr[:, 2]) * (arr[:, 1] - arr[:, 0])).sum())
    return total


def scale_factors(totals: np.ndarray, norm: str, names: Sequence[str]) -> np.ndarray:
    """One factor per cell type from its genome-wide insertions.

    Parameters
    ----------
    totals : numpy.ndarray, shape (T,)
        Total insertions of each cell type's pseudobulk.
    norm : {"mean_depth", "cpm", "none"}
    names : sequence of str, length T
        The tracks (for the error message).

    Returns
    -------
    numpy.ndarray of float64, shape (T,)
    """
    if norm not in NORMS:
        raise InputError("target_norm", f"unknown value {norm!r}", f"use one of: {', '.join(NORMS)}")
    totals = np.asarray(totals, dtype=np.float64)
    if norm == "none":
        return np.ones(len(totals))
    empty = [str(n) for n, t in zip(names, totals) if not t > 0]
    if empty:
        raise InputError(empty[0], "pseudobulk track holds no insertion: its targets cannot be scaled to a depth",
                         "check the cell type's samples (insertions.summary.json), or set target_norm: none")
    ref = totals.mean() if norm == "mean_depth" else 1e6
    return ref / totals


def soft_clip(x: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Basenji's ``clip_soft``: above ``t`` a value becomes ``t + sqrt(x - t)``.

    x : (N, T); t : (T,) (NaN: no clipping of that column) → (N, T) float64.
    """
    x = np.asarray(x, dtype=np.float64)
    t = np.broadcast_to(np.asarray(t, dtype=np.float64), x.shape)
    over = ~np.isnan(t) & (x > t)
    out = x.copy()
    out[over] = t[over] + np.sqrt(x[over] - t[over])
    return out


def hard_clip(x: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Values above ``t`` set to ``t``; x : (N, T); t : (T,) (NaN: none) → (N, T) float64."""
    x = np.asarray(x, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)
    return np.minimum(x, np.where(np.isnan(t), np.inf, t))


def _quantiles(x: np.ndarray, q: float | None) -> np.ndarray:
    """Per-column quantile q of x (N, T) → (T,); all NaN when q is None or x has no rows."""
    if q is None or len(x) == 0:
        return np.full(x.shape[1], np.nan)
    return np.quantile(x, float(q), axis=0)


def normalise_and_clip(raw: np.ndarray, totals: np.ndarray, names: Sequence[str], *, norm: str = "mean_depth",
                       clip_soft_quantile: float | None = None, clip_quantile: float | None = None,
                       files: Sequence[str] | None = None) -> tuple[np.ndarray, dict]:
    """Scale each cell type's targets to a common depth, then soft- and hard-clip at quantiles.

    Parameters
    ----------
    raw : numpy.ndarray, shape (W, T)
        Insertions summed over each window's target bin.
    totals : numpy.ndarray, shape (T,)
        Genome-wide insertions of each cell type.
    names : sequence of str, length T
        Cell types (recorded).
    files : sequence of str, optional
        The cell types' tracks, named in errors (default ``names``).

    Returns
    -------
    targets : numpy.ndarray of float32, shape (W, T)
    record : dict
        What :func:`apply_record` needs to put other values on the same scale.
    """
    scale = scale_factors(totals, norm, names if files is None else files)
    x = np.asarray(raw, dtype=np.float64) * scale
    soft = _quantiles(x, clip_soft_quantile)
    x = soft_clip(x, soft)
    hard = _quantiles(x, clip_quantile)
    x = hard_clip(x, hard)
    rec = {"cell_types": list(map(str, names)), "norm": norm, "insertions": [float(t) for t in totals],
           "scale": [float(s) for s in scale], "clip_soft_quantile": clip_soft_quantile,
           "clip_soft": _nullable(soft), "clip_quantile": clip_quantile, "clip": _nullable(hard)}
    return x.astype(np.float32), rec


def _nullable(t: np.ndarray) -> list | None:
    return None if np.isnan(t).all() else [float(v) for v in t]


def apply_record(values: np.ndarray, rec: dict) -> np.ndarray:
    """Put raw centre-bin insertion sums (N, T) on the targets' scale: × scale, soft clip, clip.

    Returns
    -------
    numpy.ndarray of float64, shape (N, T)
    """
    n = len(rec["scale"])
    nan = np.full(n, np.nan)
    x = np.asarray(values, dtype=np.float64) * np.asarray(rec["scale"], dtype=np.float64)
    x = soft_clip(x, np.asarray(rec["clip_soft"], dtype=np.float64) if rec.get("clip_soft") else nan)
    return hard_clip(x, np.asarray(rec["clip"], dtype=np.float64) if rec.get("clip") else nan)


def metadata(rec: dict) -> dict[bytes, bytes]:
    """The record as Arrow schema metadata for windows.parquet."""
    return {METADATA_KEY: json.dumps(rec, sort_keys=True).encode()}


def read_record(windows_path: str | Path) -> dict | None:
    """The target scale recorded in a windows.parquet (None for a dataset written without one)."""
    import pyarrow.parquet as pq

    meta = pq.read_schema(windows_path).metadata or {}
    return json.loads(meta[METADATA_KEY]) if METADATA_KEY in meta else None


def peaks_on_target_scale(peaks, windows_path: str | Path, cell_types: Sequence[str]):
    """Peaks with their ``value_<cell type>`` columns (raw insertions over the centred target bin)
    put on the targets' scale recorded in ``windows_path`` (:func:`apply_record`).

    Parameters
    ----------
    peaks : pandas.DataFrame or None
        Peaks with ``value_<cell type>`` columns (P rows).
    windows_path : path
        The windows.parquet the model was trained on.
    cell_types : sequence of str
        The dataset's cell types (target order).

    Returns
    -------
    pandas.DataFrame or None
        A copy with the value columns transformed; unchanged when the dataset records no
        scale (written by an older caveat) or a value column is missing (the caller reports it).
    """
    rec = read_record(windows_path)
    if peaks is None or rec is None:
        return peaks
    if list(rec["cell_types"]) != list(cell_types):
        raise InputError(windows_path, f"target scale recorded for {rec['cell_types']}, dataset cell types "
                         f"{list(cell_types)}", "rebuild the dataset (build_dataset step)")
    cols = [f"value_{ct}" for ct in cell_types]
    if not set(cols) <= set(peaks.columns):
        return peaks
    out = peaks.copy()
    out[cols] = apply_record(peaks[cols].to_numpy(np.float64), rec)
    return out


__all__ = ["NORMS", "METADATA_KEY", "track_total", "scale_factors", "soft_clip", "hard_clip", "normalise_and_clip",
           "apply_record", "metadata", "read_record", "peaks_on_target_scale"]
