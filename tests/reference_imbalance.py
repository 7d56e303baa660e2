"""An independent pandas reference for CALL_IMBALANCE's pooling: the whole counts table in
memory, grouped at once (the step reads one sample, then one cell type, at a time in polars,
:mod:`caveat.count_tables`). Tests compare the step's tables with these."""

from __future__ import annotations

import numpy as np
import pandas as pd

from caveat.count_tables import COUNT_COLUMNS, SITE_COLUMNS
from caveat.natural_sort import natural_rank


def confirm_genotypes(counts: pd.DataFrame, min_reads: int) -> pd.DataFrame:
    """The rows whose donor confirms the site: at least ``min_reads`` REF and as many ALT reads
    summed over all of the donor's samples (zero-read rows kept, as the study's tables hold them).

    Parameters
    ----------
    counts : DataFrame, shape (r, ...)
        Every sample's counts rows (``donor, variant_id, ref_count, alt_count``, ...).

    Returns
    -------
    DataFrame, shape (r', ...)
        The confirmed rows, in input order.
    """
    g = counts.groupby(["donor", "variant_id"])
    ok = (g["ref_count"].transform("sum") >= min_reads) & (g["alt_count"].transform("sum") >= min_reads)
    return counts[ok.to_numpy()]


def pool_counts(counts: pd.DataFrame, pool_donors: bool = True,
                cell_type_order: list[str] | None = None) -> pd.DataFrame:
    """Sum REF/ALT/other reads per (cell type, variant) over donors.

    Parameters
    ----------
    counts : DataFrame, shape (r, ...)
        Rows of every sample's counts table (columns ``caveat.count_tables.REQUIRED``;
        ``conflict_count`` optional).
    pool_donors : bool
        False keeps one row per (cell type, donor, variant).
    cell_type_order : list of str, optional
        Cell types first in this order, the others after it sorted.

    Returns
    -------
    DataFrame, shape (m, 14)
        ``cell_type, variant_id, chrom, pos, ref, alt, donor, ref_count, alt_count,
        other_count, conflict_count, total, n_donors``; ``donor`` is null when pooled; sorted by
        cell type, chrom (natural order), pos, variant, donor.
    """
    keys = ["cell_type", "variant_id"] + ([] if pool_donors else ["donor"])
    if "conflict_count" not in counts.columns:
        counts = counts.assign(conflict_count=np.int64(0))
    g = counts.groupby(keys, sort=False, observed=True)
    out = g.agg(chrom=("chrom", "first"), pos=("pos", "first"), ref=("ref", "first"), alt=("alt", "first"),
                ref_count=("ref_count", "sum"), alt_count=("alt_count", "sum"),
                other_count=("other_count", "sum"), conflict_count=("conflict_count", "sum"),
                n_donors=("donor", "nunique")).reset_index()
    if pool_donors:
        out["donor"] = pd.Series([None] * len(out), dtype=object)
    out["total"] = out["ref_count"] + out["alt_count"]
    ct_order = {c: i for i, c in enumerate(dict.fromkeys([*(cell_type_order or []),
                                                           *sorted(out["cell_type"].unique())]))}
    chrom = out["chrom"].astype(str)
    out = out.assign(_ct=out["cell_type"].map(ct_order), _chrom=chrom.map(natural_rank(chrom)))
    out = out.sort_values(["_ct", "_chrom", "pos", "variant_id"] + ([] if pool_donors else ["donor"]),
                          kind="stable").drop(columns=["_ct", "_chrom"]).reset_index(drop=True)
    out["pos"] = out["pos"].astype(np.int64)
    return out[["cell_type", *SITE_COLUMNS, "donor", *COUNT_COLUMNS, "conflict_count", "total", "n_donors"]]
