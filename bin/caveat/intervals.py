"""Genomic intervals as (chrom, start, end) DataFrames: BED reading and overlap.

The common currency of the peak-level steps. Coordinates are 0-based,
half-open, as in BED. Overlap queries are vectorised per chromosome with
``np.searchsorted`` (no interval trees, no Python loop over intervals).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd

from .errors import InputError
from .genome import check_contigs

BED_COLUMNS = ("chrom", "start", "end")


def read_bed(path: str | Path, genome_lengths: Mapping[str, int] | None = None, *,
             contig_map: Mapping[str, str] | None = None, what: str = "peak",
             allow_empty: bool = False) -> pd.DataFrame:
    """Read and validate a BED (BED3+, narrowPeak included).

    Parameters
    ----------
    path : path
        BED file (plain or gzipped); ``#``, ``track`` and ``browser`` lines are skipped.
    genome_lengths : dict, optional
        contig → length (FASTA order). When given, every interval must lie on a
        known contig and end within it.
    contig_map : dict, optional
        name in the BED → name in the FASTA (applied before the checks).
    what : str
        What the records are, for error messages ("peak", "cluster assignment").
    allow_empty : bool
        Return an empty frame instead of raising when the file has no records.

    Returns
    -------
    pandas.DataFrame
        ``chrom, start, end`` (int64) plus ``name`` (str, BED column 4 or ""),
        ``score`` (float: narrowPeak column 8 -log10 p, else BED column 5, else NaN)
        and ``summit`` (int64 absolute 0-based summit, -1 if none; narrowPeak column 10).
        One row per record, in file order.

    Raises
    ------
    InputError
        Unreadable columns, zero-length or reversed intervals, unknown contigs,
        intervals past a contig's end, or an empty file (unless ``allow_empty``).
    """
    path = Path(path)
    if not path.exists():
        raise InputError(path, f"{what} BED file not found", "fix the path")
    lines, lineno = _bed_lines(path)
    if not lines:
        if allow_empty:
            return _empty()
        raise InputError(path, f"no {what} records", f"give a BED file with at least one {what}")
    short = np.flatnonzero(np.fromiter((ln.count("\t") for ln in lines), np.int64, len(lines)) < 2)
    if short.size:
        raise InputError(path, f"line {lineno[short[0]]}: expected at least 3 tab-separated columns (chrom, start, end)",
                         "write BED: chrom<TAB>start<TAB>end, 0-based half-open")
    try:
        df = pd.read_csv(io.StringIO("\n".join(lines)), sep="\t", header=None, dtype=str,
                         keep_default_na=False, engine="c")
    except pd.errors.ParserError as e:
        raise InputError(path, f"rows have different numbers of columns ({str(e).strip()})",
                         "give every record the same columns (BED3, BED6 or narrowPeak)") from None
    out = pd.DataFrame({"chrom": df[0].str.strip()})
    for j, col in ((1, "start"), (2, "end")):
        vals = pd.to_numeric(df[j], errors="coerce")
        bad = np.flatnonzero(vals.isna().to_numpy() | (vals.to_numpy() % 1 != 0))
        if bad.size:
            i = bad[0]
            raise InputError(path, f"line {lineno[i]}: {col} {df[j].iloc[i]!r} is not an integer",
                             "columns 2 and 3 must be integer 0-based coordinates")
        out[col] = vals.to_numpy(dtype=np.int64)
    if contig_map:
        out["chrom"] = out["chrom"].map(lambda c: contig_map.get(c, c))
    out["name"] = df[3].to_numpy() if df.shape[1] > 3 else ""
    score_col = 7 if df.shape[1] >= 10 else (4 if df.shape[1] > 4 else None)
    out["score"] = (pd.to_numeric(df[score_col], errors="coerce").to_numpy(dtype=float)
                    if score_col is not None else np.nan)
    summit = np.full(len(df), -1, dtype=np.int64)
    if df.shape[1] >= 10:
        off = pd.to_numeric(df[9], errors="coerce").fillna(-1).to_numpy(dtype=np.int64)
        summit = np.where(off >= 0, out["start"].to_numpy() + off, -1)
    out["summit"] = summit
    _validate(out, path, lineno, genome_lengths, what)
    return out


def _bed_lines(path: Path) -> tuple[list[str], list[int]]:
    import gzip

    opener = gzip.open if path.suffix == ".gz" else open
    lines, lineno = [], []
    with opener(path, "rt") as fh:
        for i, line in enumerate(fh, 1):
            s = line.rstrip("\r\n")
            if not s.strip() or s.startswith(("#", "track", "browser")):
                continue
            lines.append(s)
            lineno.append(i)
    return lines, lineno


def _empty() -> pd.DataFrame:
    return pd.DataFrame({"chrom": pd.Series(dtype=str), "start": pd.Series(dtype=np.int64),
                         "end": pd.Series(dtype=np.int64), "name": pd.Series(dtype=str),
                         "score": pd.Series(dtype=float), "summit": pd.Series(dtype=np.int64)})


def _validate(df: pd.DataFrame, path: Path, lineno: list[int],
              genome_lengths: Mapping[str, int] | None, what: str) -> None:
    start, end = df["start"].to_numpy(), df["end"].to_numpy()
    bad = np.flatnonzero(start < 0)
    if bad.size:
        i = bad[0]
        raise InputError(path, f"line {lineno[i]}: negative start {start[i]}", "BED starts are 0-based and ≥ 0")
    bad = np.flatnonzero(end <= start)
    if bad.size:
        i = bad[0]
        kind = "zero-length" if end[i] == start[i] else "reversed (end < start)"
        raise InputError(path, f"line {lineno[i]}: {what} {df['chrom'].iloc[i]}:{start[i]}-{end[i]} is {kind}",
                         f"fix or remove it; BED intervals are 0-based half-open with end > start "
                         f"({int((end <= start).sum())} such record(s) in the file)")
    if genome_lengths is None:
        return
    check_contigs(df["chrom"].unique(), genome_lengths, what=what, file=path, reference_file="the genome FASTA")
    lengths = df["chrom"].map(genome_lengths).to_numpy(dtype=np.int64)
    bad = np.flatnonzero(end > lengths)
    if bad.size:
        i = bad[0]
        raise InputError(path, f"line {lineno[i]}: {what} {df['chrom'].iloc[i]}:{start[i]}-{end[i]} ends past the "
                         f"contig's length {lengths[i]}", "use the genome build the peaks were called on")


def sort_intervals(df: pd.DataFrame, contig_order: list[str] | None = None) -> pd.DataFrame:
    """Sort by contig (``contig_order``, default lexicographic), start, end; index reset."""
    order = contig_order if contig_order is not None else sorted(df["chrom"].unique())
    rank = {c: i for i, c in enumerate(order)}
    key = df["chrom"].map(rank)
    if key.isna().any():
        raise ValueError(f"contig {df['chrom'][key.isna()].iloc[0]!r} not in contig_order")
    out = df.assign(_rank=key.to_numpy(dtype=np.int64))
    return out.sort_values(["_rank", "start", "end"], kind="stable").drop(columns="_rank").reset_index(drop=True)


def merge_intervals(df: pd.DataFrame, contig_order: list[str] | None = None, gap: int = 0) -> pd.DataFrame:
    """Merge overlapping (or book-ended, and within ``gap`` bp) intervals, like ``bedtools merge``.

    Returns
    -------
    pandas.DataFrame
        ``chrom, start, end`` of the disjoint merged intervals, sorted.
    """
    if df.empty:
        return pd.DataFrame({"chrom": pd.Series(dtype=str), "start": pd.Series(dtype=np.int64),
                             "end": pd.Series(dtype=np.int64)})
    s = sort_intervals(df[["chrom", "start", "end"]], contig_order)
    chrom = s["chrom"].to_numpy()
    start, end = s["start"].to_numpy(), s["end"].to_numpy()
    # running max of ends within a contig: a new block starts where start > max end so far + gap
    new_chrom = np.r_[True, chrom[1:] != chrom[:-1]]
    block_id = np.cumsum(new_chrom)
    run_end = pd.Series(end).groupby(block_id).cummax().to_numpy()
    new_block = new_chrom.copy()
    new_block[1:] |= start[1:] > run_end[:-1] + gap
    first = np.flatnonzero(new_block)
    ends = np.maximum.reduceat(end, first)
    return pd.DataFrame({"chrom": chrom[first], "start": start[first], "end": ends}).reset_index(drop=True)


def overlap_pairs(a: pd.DataFrame, b: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """All overlapping pairs between interval sets ``a`` and ``b`` (≥ 1 bp shared).

    Parameters
    ----------
    a, b : pandas.DataFrame
        Columns ``chrom, start, end``; any order, overlaps within a set allowed.

    Returns
    -------
    ia, ib : numpy.ndarray of int64, shape (n_pairs,)
        Positional row indices into ``a`` and ``b``; sorted by ``ia`` then ``b`` start.
    """
    ia_all, ib_all = [], []
    a_chrom, b_chrom = a["chrom"].to_numpy(), b["chrom"].to_numpy()
    for chrom in np.intersect1d(pd.unique(a_chrom), pd.unique(b_chrom)):
        ai = np.flatnonzero(a_chrom == chrom)
        bi = np.flatnonzero(b_chrom == chrom)
        bs, be = b["start"].to_numpy()[bi], b["end"].to_numpy()[bi]
        order = np.argsort(bs, kind="stable")
        bi, bs, be = bi[order], bs[order], be[order]
        max_len = int((be - bs).max())
        as_, ae = a["start"].to_numpy()[ai], a["end"].to_numpy()[ai]
        # candidates: b with start in (a.start - max_len, a.end); then keep those with b.end > a.start
        lo = np.searchsorted(bs, as_ - max_len, side="right")
        hi = np.searchsorted(bs, ae, side="left")
        n = np.maximum(hi - lo, 0)
        rep_a = np.repeat(np.arange(ai.size), n)
        offs = np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n)
        cand = np.repeat(lo, n) + offs
        keep = be[cand] > as_[rep_a]
        ia_all.append(ai[rep_a[keep]])
        ib_all.append(bi[cand[keep]])
    if not ia_all:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    ia, ib = np.concatenate(ia_all), np.concatenate(ib_all)
    order = np.lexsort((b["start"].to_numpy()[ib], ia))
    return ia[order].astype(np.int64), ib[order].astype(np.int64)


def overlaps(a: pd.DataFrame, b: pd.DataFrame) -> np.ndarray:
    """Whether each interval of ``a`` overlaps any interval of ``b``.

    Returns
    -------
    numpy.ndarray of bool, shape (len(a),)
    """
    hit = np.zeros(len(a), dtype=bool)
    if len(a) == 0 or len(b) == 0:
        return hit
    m = merge_intervals(b)  # disjoint and sorted: one searchsorted per contig answers it
    a_chrom = a["chrom"].to_numpy()
    for chrom, mc in m.groupby("chrom", sort=False):
        ai = np.flatnonzero(a_chrom == chrom)
        if ai.size == 0:
            continue
        ms, me = mc["start"].to_numpy(), mc["end"].to_numpy()
        j = np.searchsorted(me, a["start"].to_numpy()[ai], side="right")  # first block ending after a.start
        ok = j < ms.size
        hit[ai[ok]] = ms[j[ok]] < a["end"].to_numpy()[ai[ok]]
    return hit


def contains_points(a: pd.DataFrame, chrom: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """For each point (chrom, 0-based pos), the row of ``a`` (disjoint, sorted) containing it, or -1.

    Returns
    -------
    numpy.ndarray of int64, shape (n_points,)
    """
    out = np.full(len(pos), -1, dtype=np.int64)
    a_chrom = a["chrom"].to_numpy()
    for c in pd.unique(a_chrom):
        ai = np.flatnonzero(a_chrom == c)
        pi = np.flatnonzero(chrom == c)
        if pi.size == 0:
            continue
        s, e = a["start"].to_numpy()[ai], a["end"].to_numpy()[ai]
        j = np.searchsorted(s, pos[pi], side="right") - 1
        ok = (j >= 0)
        ok[ok] = pos[pi][ok] < e[j[ok]]
        out[pi[ok]] = ai[j[ok]]
    return out
