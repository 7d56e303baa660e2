"""Reading insertion bigWigs as run-length arrays: shared by insertions (pseudobulk sums) and
cluster_peaks (peak counts and values). Neutral, so no step imports another."""

from __future__ import annotations

import numpy as np


def runs_to_sites(starts: np.ndarray, ends: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """bedGraph runs → per-base (pos, count); inverse of :func:`caveat.insertions.sites_to_runs`."""
    n = (ends - starts).astype(np.int64)
    pos = np.repeat(starts - np.r_[0, np.cumsum(n)[:-1]], n) + np.arange(n.sum())
    return pos.astype(np.int64), np.repeat(np.rint(values).astype(np.int64), n)


def read_runs(bw, chrom: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All runs of ``chrom`` in an open bigWig as (starts, ends, values) arrays."""
    iv = bw.intervals(chrom) if chrom in bw.chroms() else None
    if not iv:
        z = np.zeros(0, np.int64)
        return z, z, np.zeros(0, np.float64)
    a = np.array(iv, dtype=np.float64)
    return a[:, 0].astype(np.int64), a[:, 1].astype(np.int64), a[:, 2]


__all__ = ["read_runs", "runs_to_sites"]
