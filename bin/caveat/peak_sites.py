"""A peak's value: the study's rule, one definition for targets, predictions and donors.

Kathail et al. evaluate reference accuracy on **one 1344 bp input window centred
on each peak**: the model's prediction for the centre 192 bp output bin is
compared with the Tn5 insertions **summed over that centred 192 bp site**
(``predict_peak_value: centre``, the default; the authors'
``basenji_predict_cluster_beds.sh`` and ``basenji_reference_accuracy_by_cluster.py``,
see docs/CONVENTIONS.md). The same site gives the
per-donor values of the inter-donor bound, so every number of a peak is on one
scale.

Two other rules are kept as options (``mean`` / ``sum``): the centre-bin values
of the stride-tiled windows whose centre bin overlaps the peak, averaged or
summed. On tracks they are computed over those grid bins
(``window_size - target_bin) / 2 + k * window_stride``).

The bigWig sums are hand-written (cumulative sums over the track's runs): one
``intervals()`` call per contig and vectorised look-ups. pyBigWig has no
vectorised interval sum; one exact ``stats(type="sum")`` call per site was
measured 8.6× slower (10,000 sites of a 5 Mb track, same numbers).
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd

from .errors import InputError

RULES = ("centre", "mean", "sum")


def check_rule(rule: str) -> str:
    """``rule`` if known, else an InputError naming the param."""
    if rule not in RULES:
        raise InputError("predict_peak_value", f"peak value rule {rule!r} is not known",
                         f"use one of {', '.join(RULES)} (centre: the study's rule)")
    return rule


def peak_centres(peaks: pd.DataFrame) -> np.ndarray:
    """Centre of each peak, ``(start + end) // 2`` (a summit-centred union peak's summit), shape (n,)."""
    return ((peaks["start"].to_numpy(np.int64) + peaks["end"].to_numpy(np.int64)) // 2).astype(np.int64)


def centred_sites(peaks: pd.DataFrame, window_size: int, target_bin: int,
                  lengths: Mapping[str, int] | None = None) -> pd.DataFrame:
    """The centred site and window of each peak.

    Parameters
    ----------
    peaks : DataFrame
        ``peak_id, chrom, start, end``.
    window_size, target_bin : int
        Input length (1344) and output bin (192); their difference must be even.
    lengths : mapping, optional
        Contig lengths; peaks whose window falls off a contig get ``fits = False``.

    Returns
    -------
    DataFrame
        ``peak_id, chrom, start, end, site_start, site_end, window_start, fits`` (n rows, peaks' order).
    """
    if target_bin > window_size or (window_size - target_bin) % 2:
        raise InputError("params", f"target_bin {target_bin} must be ≤ window_size {window_size} with an even "
                                   "difference", "use e.g. window_size 1344 and target_bin 192")
    c = peak_centres(peaks)
    site_start = c - target_bin // 2
    win = site_start - (window_size - target_bin) // 2
    fits = win >= 0
    if lengths is not None:
        ln = peaks["chrom"].map(lambda ch: lengths.get(ch, -1)).to_numpy(np.int64)
        fits &= win + window_size <= ln
    return pd.DataFrame({"peak_id": peaks["peak_id"].to_numpy(), "chrom": peaks["chrom"].to_numpy(),
                         "start": peaks["start"].to_numpy(np.int64), "end": peaks["end"].to_numpy(np.int64),
                         "site_start": site_start, "site_end": site_start + target_bin,
                         "window_start": win, "fits": fits})


def grid_bins(peaks: pd.DataFrame, window_size: int, stride: int, target_bin: int) -> tuple[np.ndarray, np.ndarray]:
    """First bin start and number of tiled centre bins overlapping each peak (``mean``/``sum`` rules).

    Returns
    -------
    first, n : (n,) int64
        Centre bins ``[first + k*stride, first + k*stride + target_bin)`` for ``k < n``.
    """
    offset = (window_size - target_bin) // 2
    s, e = peaks["start"].to_numpy(np.int64), peaks["end"].to_numpy(np.int64)
    # bin k covers [offset + k*stride, offset + k*stride + target_bin); overlap needs bin end > s, bin start < e
    k0 = np.maximum(np.ceil((s - offset - target_bin + 1) / stride), 0).astype(np.int64)
    k1 = np.floor((e - 1 - offset) / stride).astype(np.int64)
    return offset + k0 * stride, np.maximum(k1 - k0 + 1, 0)


def track_runs(bw, chrom: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Runs (start, end, value) of an open pyBigWig track on ``chrom`` (empty when absent), float64 arrays."""
    if chrom not in bw.chroms():
        return np.zeros(0), np.zeros(0), np.zeros(0)
    iv = bw.intervals(chrom) or ()
    if not iv:
        return np.zeros(0), np.zeros(0), np.zeros(0)
    a = np.asarray(iv, dtype=np.float64)
    return a[:, 0], a[:, 1], np.nan_to_num(a[:, 2])


def run_sums(s: np.ndarray, e: np.ndarray, v: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Signal summed over each ``[starts, ends)`` for sorted disjoint runs, shape (q,) float64."""
    if s.size == 0:
        return np.zeros(len(starts))
    before = np.r_[0.0, np.cumsum(v * (e - s))]

    def integral(x: np.ndarray) -> np.ndarray:
        k = np.searchsorted(s, x, side="right") - 1
        kk = np.maximum(k, 0)
        inside = np.clip(x - s[kk], 0, e[kk] - s[kk]) * v[kk]
        return np.where(k >= 0, before[kk] + inside, 0.0)

    return integral(np.asarray(ends, np.float64)) - integral(np.asarray(starts, np.float64))


def track_sums(bw_path: str | Path, chroms: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """A bigWig summed over intervals on several contigs, shape (q,) float64."""
    import pyBigWig

    out = np.zeros(len(starts))
    chroms = np.asarray(chroms, dtype=object)
    try:
        bw = pyBigWig.open(str(bw_path))
    except RuntimeError:
        raise InputError(bw_path, "cannot open the bigWig", "rerun the insertions step") from None
    with bw:
        for chrom in pd.unique(chroms):
            idx = np.flatnonzero(chroms == chrom)
            out[idx] = run_sums(*track_runs(bw, str(chrom)), starts[idx], ends[idx])
    return out


def peak_track_values(bw_path: str | Path, peaks: pd.DataFrame, rule: str, *, window_size: int,
                      window_stride: int, target_bin: int) -> np.ndarray:
    """Each peak's value on one insertion track under ``rule``, shape (n,) float64.

    ``centre``: sum over the centred ``target_bin`` site; ``sum``/``mean``: sum
    (or mean) of the tiled centre bins overlapping the peak.
    """
    check_rule(rule)
    chroms = peaks["chrom"].to_numpy(object)
    if rule == "centre":
        sites = centred_sites(peaks, window_size, target_bin)
        return track_sums(bw_path, chroms, sites["site_start"].to_numpy(), sites["site_end"].to_numpy())
    first, n = grid_bins(peaks, window_size, window_stride, target_bin)
    total = track_sums(bw_path, chroms, first, first + (n - 1) * window_stride + target_bin)
    if window_stride != target_bin:  # bins overlap or leave gaps: sum bin by bin
        k = np.repeat(np.arange(len(n)), n)
        off = np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n)
        bs = np.repeat(first, n) + off * window_stride
        total = np.bincount(k, weights=track_sums(bw_path, chroms[k], bs, bs + target_bin), minlength=len(n))
    return total / np.maximum(n, 1) if rule == "mean" else total
