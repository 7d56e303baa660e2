"""Genomic intervals as (chrom, start, end) DataFrames: BED reading and overlap.

The common currency of the peak-level steps. Coordinates are 0-based,
half-open, as in BED. Merge and overlap queries put every contig on one int64
axis (``code * 2**40 + position``) and answer with one ``np.searchsorted`` (no
interval trees, no loop over contigs or intervals).

Measured against ``bioframe`` (``benchmarks/bench_libraries.py``, table in
``docs/benchmarks.md``): ``merge_intervals``, ``overlaps`` and
``contains_points`` are 1.8×, 4.0× and 3.1× faster on 1 M intervals, and
importing bioframe adds ~1.6 s to a task's start, so they stay.
``bioframe.overlap`` runs the all-pairs ``overlap_pairs`` 1.25× faster at
1 M × 100 k (caveat is 1.3–1.6× faster at 0.2 M × 20 k); only tests call that
one (see its docstring).
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


#: offset between contigs in a combined key ``code * _SPAN + position``: larger than any contig
#: (positions < 2**31), so one sorted int64 array orders by contig, then position, and one
#: ``np.searchsorted`` answers a query for every contig at once
_SPAN = np.int64(1) << 40


def _codes(chrom, vocabulary) -> np.ndarray:
    """Position of each name of ``chrom`` in ``vocabulary`` (int64, shape (n,)); -1 if absent.

    Factorizes first (pandas hashes Arrow strings without making Python objects), then looks up
    the few distinct names: ~10× faster than a lookup of every name on 1 M rows.
    """
    local, names = pd.factorize(pd.Series(chrom) if not isinstance(chrom, pd.Series) else chrom)
    remap = np.append(pd.Index(vocabulary).get_indexer(pd.Index(names)).astype(np.int64), -1)
    return remap[local]  # a missing name (code -1) picks the appended -1


def _keys(df: pd.DataFrame, vocabulary) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(codes, start keys, end keys) of ``df`` against ``vocabulary``, each int64 of shape (n,)."""
    code = _codes(df["chrom"], vocabulary)
    base = code * _SPAN
    return code, base + df["start"].to_numpy(np.int64), base + df["end"].to_numpy(np.int64)


def _search(ref: np.ndarray, query: np.ndarray, side: str, order: np.ndarray | None = None) -> np.ndarray:
    """``np.searchsorted(ref, query, side)`` for queries in any order, int64 of shape (n,).

    The queries are visited in ``order`` (default: their sorted order): numpy's search then
    walks ``ref`` forward, 2–3× faster than random probes for 1 M queries into 100 k.
    """
    o = np.argsort(query) if order is None else order
    out = np.empty(query.size, np.int64)
    out[o] = np.searchsorted(ref, query[o], side=side)
    return out


def _order(df: pd.DataFrame, contig_order: list[str] | None) -> tuple[np.ndarray, np.ndarray]:
    """Rows of ``df`` sorted by contig (``contig_order``, default lexicographic), start, end, and their codes."""
    order = contig_order if contig_order is not None else sorted(pd.unique(df["chrom"]))
    code, sk, ek = _keys(df, order)
    if (code < 0).any():
        raise ValueError(f"contig {df['chrom'].to_numpy()[np.flatnonzero(code < 0)[0]]!r} not in contig_order")
    idx = np.lexsort((ek, sk))
    return idx, code[idx]


def sort_intervals(df: pd.DataFrame, contig_order: list[str] | None = None) -> pd.DataFrame:
    """Sort by contig (``contig_order``, default lexicographic), start, end; index reset."""
    idx, _ = _order(df, contig_order)
    return df.iloc[idx].reset_index(drop=True)


def merge_intervals(df: pd.DataFrame, contig_order: list[str] | None = None, gap: int = 0) -> pd.DataFrame:
    """Merge overlapping (or book-ended, and within ``gap`` bp) intervals, like ``bedtools merge``.

    Equal to ``bioframe.merge(df, min_dist=gap)`` (sorted by ``contig_order``) and 1.8× faster
    on 1 M intervals (``benchmarks/bench_libraries.py``), without bioframe's ~1.6 s import.

    Returns
    -------
    pandas.DataFrame
        ``chrom, start, end`` of the disjoint merged intervals, sorted.
    """
    if df.empty:
        return pd.DataFrame({"chrom": pd.Series(dtype=str), "start": pd.Series(dtype=np.int64),
                             "end": pd.Series(dtype=np.int64)})
    order = contig_order if contig_order is not None else sorted(pd.unique(df["chrom"]))
    code, sk, ek = _keys(df, order)
    if (code < 0).any():
        _order(df, order)  # raises: a contig not in contig_order
    idx = np.argsort(sk)  # the order of equal starts does not change the merge
    sk, ek = sk[idx], ek[idx]
    # running max of the end keys never crosses a contig (keys of the next contig are larger),
    # so a new block starts where start key > max end key so far + gap
    run_end = np.maximum.accumulate(ek)
    first = np.flatnonzero(np.r_[True, sk[1:] > run_end[:-1] + gap])
    c = code[idx[first]]
    return pd.DataFrame({"chrom": pd.array(np.asarray(order, dtype=object)[c], dtype=df["chrom"].dtype),
                         "start": sk[first] - c * _SPAN, "end": np.maximum.reduceat(ek, first) - c * _SPAN})


def overlap_pairs(a: pd.DataFrame, b: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """All overlapping pairs between interval sets ``a`` and ``b`` (≥ 1 bp shared).

    The same pairs as ``bioframe.overlap(a, b, how="inner")``, which runs 1.25× faster on
    1 M sites × 100 k peaks but 1.3–1.6× slower on 0.2 M × 20 k (``benchmarks/bench_libraries.py``).
    Kept hand-written because only tests call it (``tests/test_cluster_peaks.py``): bioframe
    would be a new dependency that adds ~1.6 s to a task's start. A step that needs all pairs
    on millions of intervals should use bioframe.

    Parameters
    ----------
    a, b : pandas.DataFrame
        Columns ``chrom, start, end``; any order, overlaps within a set allowed.

    Returns
    -------
    ia, ib : numpy.ndarray of int64, shape (n_pairs,)
        Positional row indices into ``a`` and ``b``; sorted by ``ia`` then ``b`` start.
    """
    if len(a) == 0 or len(b) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    vocab = pd.unique(b["chrom"])
    _, bs, be = _keys(b, vocab)
    bi = np.argsort(bs, kind="stable")
    bs, be = bs[bi], be[bi]
    max_len = int((be - bs).max())
    code, as_, ae = _keys(a, vocab)
    on = np.flatnonzero(code >= 0)
    ao = np.argsort(as_[on])  # one sort for both searches (ends follow starts closely)
    # candidates: b with start key in (a.start - max_len, a.end) (same contig: keys are _SPAN apart),
    # then keep those with b.end > a.start
    lo = _search(bs, as_[on] - max_len, "right", ao)
    n = np.maximum(_search(bs, ae[on], "left", ao) - lo, 0)
    rep = np.repeat(on, n)
    cand = np.repeat(lo, n) + (np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n))
    keep = be[cand] > as_[rep]
    ia, ib = rep[keep], bi[cand[keep]]
    order = np.lexsort((bs[cand[keep]], ia))  # b start within a contig = start key order
    return ia[order].astype(np.int64), ib[order].astype(np.int64)


def overlaps(a: pd.DataFrame, b: pd.DataFrame) -> np.ndarray:
    """Whether each interval of ``a`` overlaps any interval of ``b``.

    Equal to ``bioframe.count_overlaps(a, b)["count"] > 0``, 4× faster on 1 M × 100 k
    (``benchmarks/bench_libraries.py``).

    Returns
    -------
    numpy.ndarray of bool, shape (len(a),)
    """
    if len(a) == 0 or len(b) == 0:
        return np.zeros(len(a), dtype=bool)
    vocab = pd.unique(b["chrom"])
    m = merge_intervals(b, list(vocab))  # disjoint and sorted by key: one searchsorted answers it
    _, ms, me = _keys(m, vocab)
    code, as_, ae = _keys(a, vocab)
    j = _search(me, as_, "right")  # first block ending after a.start
    jj = np.minimum(j, me.size - 1)
    return (code >= 0) & (j < me.size) & (ms[jj] < ae)


def contains_points(a: pd.DataFrame, chrom: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """For each point (chrom, 0-based pos), the row of ``a`` (disjoint) containing it, or -1.

    The rows ``bioframe.overlap`` (how="left") finds for 1-bp intervals, 3× faster on
    1 M points × 93 k intervals (``benchmarks/bench_libraries.py``).

    Returns
    -------
    numpy.ndarray of int64, shape (n_points,)
    """
    out = np.full(len(pos), -1, dtype=np.int64)
    if len(a) == 0 or len(pos) == 0:
        return out
    vocab = pd.unique(a["chrom"])
    _, s, e = _keys(a, vocab)
    ai = np.argsort(s, kind="stable")
    s, e = s[ai], e[ai]
    code = _codes(np.asarray(chrom), vocab)
    key = code * _SPAN + np.asarray(pos, dtype=np.int64)
    j = _search(s, key, "right") - 1
    jj = np.maximum(j, 0)
    ok = (code >= 0) & (j >= 0) & (key < e[jj])
    out[ok] = ai[jj[ok]]
    return out
