"""Allele-count tables in bounded memory: per-sample reading with compact dtypes, the
per-donor genotype confirmation, per-sample depth references, and per-cell-type pooling.

A real study's counts are 60–100 M rows (every heterozygous site of a donor × each of its
samples, most without a read). Nothing here holds them all at once: a sample's table is
read alone (columns pruned, ``chrom``/``ref``/``alt`` categorical, positions Int32 and
counts UInt32 where they fit), reduced to what later passes need (a donor's running
REF/ALT sums per site, a sample's depth reference), and read again per cell type for
pooling. Only pooled sites that carry a read leave :func:`pool_cell_type` as rows; the
rest are counted. Used by :mod:`caveat.call_imbalance`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import polars as pl

from .natural_sort import natural_rank

COUNT_COLUMNS = ("ref_count", "alt_count", "other_count")
SITE_COLUMNS = ("variant_id", "chrom", "pos", "ref", "alt")
META = ("sample", "donor", "cell_type")
REQUIRED = (*META, *SITE_COLUMNS, *COUNT_COLUMNS)
#: in-memory dtypes of a counts table's columns (after :func:`compact`)
CATEGORICAL = ("chrom", "ref", "alt")
UINT32_MAX = 2**32 - 1
INT32_MAX = 2**31 - 1


@dataclass(frozen=True)
class Part:
    """One sample's counts: who it is and how to load its rows (:func:`compact` dtypes)."""

    sample: str
    donor: str
    cell_type: str
    load: Callable[[], pl.DataFrame]


def compact(df: pl.DataFrame) -> pl.DataFrame:
    """Site and count columns of a checked counts table in compact dtypes.

    Parameters
    ----------
    df : polars.DataFrame, shape (r, ...)
        Columns :data:`SITE_COLUMNS`, :data:`COUNT_COLUMNS` and ``conflict_count``, without
        nulls, counts non-negative integers.

    Returns
    -------
    polars.DataFrame, shape (r, 9)
        ``variant_id`` String; ``chrom, ref, alt`` Categorical; ``pos`` Int32 (Int64 beyond
        2^31); counts UInt32 (UInt64 beyond 2^32).
    """
    cols = [pl.col("variant_id").cast(pl.String), *(pl.col(c).cast(pl.String).cast(pl.Categorical)
                                                    for c in CATEGORICAL)]
    pos = df["pos"]
    fits = len(pos) == 0 or (pos.min() >= -INT32_MAX and pos.max() <= INT32_MAX)
    cols.append(pl.col("pos").cast(pl.Int32 if fits else pl.Int64))
    for c in (*COUNT_COLUMNS, "conflict_count"):
        big = len(df) and df[c].max() > UINT32_MAX
        cols.append(pl.col(c).cast(pl.UInt64 if big else pl.UInt32))
    return df.select(cols).select(list(SITE_COLUMNS) + [*COUNT_COLUMNS, "conflict_count"])


def problems(df: pl.DataFrame, given: dict) -> bool:
    """Whether a counts table read from Parquet breaks a rule of ``read_counts`` (then the
    caller reads it again with pandas, which names the file, record and fix).

    ``given`` maps ``sample``/``donor``/``cell_type`` to the samplesheet's value (or None).
    """
    if any(c not in df.columns for c in (*SITE_COLUMNS, *COUNT_COLUMNS)):
        return True
    if any(c not in df.columns and given.get(c) is None for c in META):
        return True
    for c, v in given.items():
        if v is not None and c in df.columns and len(df) and (df[c].cast(pl.String) != v).fill_null(True).any():
            return True
    if any(df[c].null_count() for c in (*SITE_COLUMNS, *COUNT_COLUMNS)):
        return True
    for c in COUNT_COLUMNS:
        s = df[c]
        if s.dtype.is_integer():
            if len(s) and s.min() < 0:
                return True
        elif s.dtype.is_float():
            if len(s) and (s.is_nan().any() or s.min() < 0 or (s != s.floor()).any()):
                return True
        else:
            return True
    if "conflict_count" in df.columns and not (df["conflict_count"].dtype.is_integer()
                                                or df["conflict_count"].dtype == pl.Null):
        return True
    return bool(df["variant_id"].is_duplicated().any())


def read_compact(path: Path, given: dict, fallback: Callable[[], "object"]) -> pl.DataFrame:
    """Read one sample's counts file: columns pruned, checked, compact (:func:`compact`).

    ``fallback`` reads the file with pandas and raises the step's InputError on bad input;
    if it does not raise, its (checked) table is used.
    """
    names = pl.read_parquet_schema(path).keys() if path.exists() else ()
    cols = [c for c in (*META, *SITE_COLUMNS, *COUNT_COLUMNS, "conflict_count") if c in names]
    df = pl.read_parquet(path, columns=cols) if path.exists() else None
    if df is None or problems(df, given):
        df = pl.from_pandas(fallback())
    if "conflict_count" not in df.columns:
        df = df.with_columns(conflict_count=pl.lit(0, pl.UInt32))
    return compact(df.with_columns(pl.col("conflict_count").fill_null(0)))


def parts_of_frame(df: pl.DataFrame) -> list[Part]:
    """Split an in-memory counts table (every sample's rows) into :class:`Part` per sample,
    in order of first appearance."""
    if df.is_empty():
        return []
    if "conflict_count" not in df.columns:
        df = df.with_columns(conflict_count=pl.lit(0, pl.UInt32))
    out = []
    for sub in df.with_columns(pl.col("conflict_count").fill_null(0)).partition_by("sample", maintain_order=True):
        who = sub.select(META).unique(maintain_order=True)
        if len(who) > 1:
            from .errors import InputError
            raise InputError("counts table", f"sample {who['sample'][0]!r} has rows of several donors or cell "
                             "types", "one sample is one donor's library of one cell type")
        table = compact(sub)
        out.append(Part(*(str(who[c][0]) for c in META), load=lambda t=table: t))
    return out


# --------------------------------------------------------------------------- per donor, per sample
def add_donor_sums(running: pl.DataFrame | None, part: pl.DataFrame) -> pl.DataFrame:
    """Fold one sample's REF/ALT reads into its donor's running per-site sums.

    Returns
    -------
    polars.DataFrame
        ``variant_id, ref, alt`` (Int64 sums), one row per site seen in any of the donor's samples so far.
    """
    new = part.select("variant_id", ref=pl.col("ref_count").cast(pl.Int64), alt=pl.col("alt_count").cast(pl.Int64))
    if running is None:
        return new.group_by("variant_id").agg(pl.col("ref").sum(), pl.col("alt").sum())
    return pl.concat([running, new]).group_by("variant_id").agg(pl.col("ref").sum(), pl.col("alt").sum())


def donor_confirmation(sums: pl.DataFrame, min_reads: int) -> tuple[pl.Series, dict]:
    """The donor's confirmed het sites (>= ``min_reads`` REF and ALT over its samples) and its summary.

    Returns
    -------
    confirmed : polars.Series of str
        ``variant_id`` of the confirmed sites.
    info : dict
        ``n_sites``, ``n_unconfirmed``, ``reads_removed`` (REF+ALT reads of unconfirmed sites).
    """
    ok = (sums["ref"] >= min_reads) & (sums["alt"] >= min_reads)
    bad = sums.filter(~ok)
    return sums["variant_id"].filter(ok), {"n_sites": len(sums), "n_unconfirmed": len(bad),
                                           "reads_removed": int((bad["ref"] + bad["alt"]).sum() or 0)}


def sample_depth(depth: np.ndarray, ratio: float, quantile: float, min_sites: int) -> dict:
    """A sample's depth reference: the ``quantile`` (``lower``) of its covered sites' REF+ALT.

    Parameters
    ----------
    depth : ndarray of int, shape (r,)
        REF+ALT per row of the sample.

    Returns
    -------
    dict
        ``reference_depth`` (None below ``min_sites`` covered sites), ``threshold``
        (``ratio`` × reference), ``n_covered``, ``n_outliers``, ``max_depth``.
    """
    covered = depth[depth > 0]
    ref = thr = None
    n_out = 0
    if covered.size >= min_sites:
        # pandas' groupby quantile, interpolation "lower": the value at int(q * (n - 1)) in sorted order
        k = int(quantile * float(covered.size - 1))
        ref = int(np.partition(covered, k)[k])
        thr = float(ref * ratio)
        n_out = int((depth > thr).sum())
    return {"reference_depth": ref, "threshold": thr, "n_covered": int(covered.size), "n_outliers": n_out,
            "max_depth": int(depth.max())}


# --------------------------------------------------------------------------- per cell type
def pool_cell_type(rows: list[pl.DataFrame], pool_donors: bool) -> tuple[pl.DataFrame, int]:
    """Pool one cell type's sample rows per site (per site and donor without ``pool_donors``).

    Parameters
    ----------
    rows : list of polars.DataFrame
        Each sample's :func:`compact` rows with ``donor`` (categorical), ``confirmed`` and
        ``outlier`` (bool) added, in sample order.

    Returns
    -------
    sites : polars.DataFrame
        One row per site with a confirmed donor: ``variant_id, chrom, pos, ref, alt`` (of its
        first confirmed row), ``donor`` (null when pooled), ``ref_count, alt_count,
        other_count, conflict_count, total, n_donors`` (Int64 sums over confirmed rows),
        ``flagged`` (any row of the site, confirmed or not, is a depth outlier); sorted by
        contig (natural order), pos, variant, donor.
    n_read : int
        Sites (site × donor) before genotype confirmation.
    """
    keys = ["variant_id"] + ([] if pool_donors else ["donor"])
    conf = pl.col("confirmed")
    g = pl.concat(rows).group_by(keys, maintain_order=True).agg(
        *(pl.col(c).filter(conf).first() for c in ("chrom", "pos", "ref", "alt")),
        *(pl.col(c).filter(conf).cast(pl.Int64).sum() for c in (*COUNT_COLUMNS, "conflict_count")),
        n_donors=pl.col("donor").filter(conf).n_unique().cast(pl.Int64), any_confirmed=conf.any(),
        flagged=pl.col("outlier").any())
    n_read = len(g)
    g = g.filter("any_confirmed").drop("any_confirmed")
    rank = natural_rank(g["chrom"].cast(pl.String).unique().to_list())
    if not pool_donors:
        g = g.with_columns(pl.col("donor").cast(pl.String))
    g = g.with_columns(total=pl.col("ref_count") + pl.col("alt_count"),
                       _chrom=pl.col("chrom").cast(pl.String).replace_strict(rank, return_dtype=pl.Int64))
    if pool_donors:
        g = g.with_columns(donor=pl.lit(None, pl.String))
    g = g.sort(["_chrom", "pos", "variant_id"] + ([] if pool_donors else ["donor"]), maintain_order=True)
    return g.drop("_chrom"), n_read


def with_flags(part: Part, df: pl.DataFrame, confirmed: pl.Series | None, threshold: float | None
               ) -> pl.DataFrame:
    """A sample's rows with ``donor``, ``confirmed`` (its donor confirms the site; None: every
    site) and ``outlier`` (REF+ALT above the sample's depth threshold; None: none)."""
    depth = pl.col("ref_count").cast(pl.Int64) + pl.col("alt_count").cast(pl.Int64)
    return df.with_columns(
        donor=pl.lit(part.donor).cast(pl.Categorical),
        confirmed=pl.lit(True) if confirmed is None else pl.col("variant_id").is_in(confirmed.implode()),
        outlier=pl.lit(False) if threshold is None else depth > threshold)

