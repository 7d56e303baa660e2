"""Region sets that exclude sites or peaks (a blacklist BED): reading and membership.

Shared by the steps that drop what lies in artefact regions (``call_imbalance``
drops heterozygous sites, ``cluster_peaks`` drops consensus peaks). The BED is
read with :func:`caveat.intervals.read_bed` (0-based, half-open; ``#``,
``track`` and ``browser`` lines skipped; plain or gzipped) and merged, so
membership is one ``searchsorted`` per contig. Contigs the genome lacks are
allowed: published blacklists list contigs (``chrM``, unplaced scaffolds) a
study's genome may not have.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .intervals import contains_points, merge_intervals, overlaps, read_bed


def read_regions(path: str | Path, what: str = "blacklist") -> pd.DataFrame:
    """Read a region BED and merge it.

    Parameters
    ----------
    path : path
        BED3+ file; an empty file is an empty region set.
    what : str
        What the regions are, for error messages.

    Returns
    -------
    pandas.DataFrame
        ``chrom, start, end`` of the disjoint merged regions, sorted (R rows).

    Raises
    ------
    InputError
        Missing file, unreadable columns, zero-length or reversed intervals (naming
        the file and line).
    """
    return merge_intervals(read_bed(path, what=what, allow_empty=True))


def points_in_regions(regions: pd.DataFrame | None, chrom: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """Whether each 0-based position lies in a region (``start <= pos < end``).

    Parameters
    ----------
    regions : DataFrame or None
        From :func:`read_regions` (disjoint, sorted); None is the empty set.
    chrom : ndarray of str, shape (n,)
    pos : ndarray of int, shape (n,)

    Returns
    -------
    ndarray of bool, shape (n,)
    """
    if regions is None or len(regions) == 0 or len(pos) == 0:
        return np.zeros(len(pos), dtype=bool)
    return contains_points(regions, np.asarray(chrom).astype(str), np.asarray(pos, dtype=np.int64)) >= 0


def intervals_in_regions(regions: pd.DataFrame | None, intervals: pd.DataFrame) -> np.ndarray:
    """Whether each interval (``chrom, start, end``) shares at least 1 bp with a region.

    Returns
    -------
    ndarray of bool, shape (len(intervals),)
    """
    if regions is None or len(regions) == 0:
        return np.zeros(len(intervals), dtype=bool)
    return overlaps(intervals, regions)


__all__ = ["intervals_in_regions", "points_in_regions", "read_regions"]
