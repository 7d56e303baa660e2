"""CALL_IMBALANCE: pool allele counts per cell type, test each heterozygous site for
allelic imbalance, control the FDR, and label sites imbalanced / balanced / untested.

As in Kathail et al. (Appendix B.2): per cell type, REF and ALT reads are summed
over the donors heterozygous at the variant; sites with REF+ALT reads > 20 are
tested with a two-sided exact binomial test against 0.5; Benjamini–Hochberg over
the tested sites of the cell type; ``imbalanced`` at q < 0.01, ``balanced`` at
p > 0.1, ``untested`` (ambiguous) otherwise. Reads with a third allele
(``other_count``) are reported but are not part of the total.

Which sites are tested, per cell type, as the authors' code does (filters applied in
this order, each site counted under the first that drops it; see docs/CONVENTIONS.md):

1. ``genotype_unconfirmed`` — a donor's heterozygous site counts only where that donor's
   reads over all its samples (every cell type) show at least ``imbalance_het_min_reads``
   REF and as many ALT reads; an unconfirmed donor contributes nothing there, the
   other donors still pool. A site with no confirmed donor left is dropped.
2. ``blacklist`` — sites in the ``blacklist`` BED (artefact regions).
3. ``depth_outlier`` — sites whose REF+ALT reads in one of the cell type's samples exceed
   ``imbalance_max_depth_ratio`` × that sample's 99th percentile of depth over its
   covered sites, for samples with at least 100 covered sites (collapsed repeats pile up
   reads from elsewhere in the genome).
4. ``out_of_peak`` — with ``imbalance_in_peaks``, sites outside the cell type's own peaks
   (consensus peaks of ``peaks.parquet`` with ``called_<cell type>``).
5. ``excluded_chrom`` — contigs outside ``imbalance_chroms`` (default: autosomes).
6. ``low_depth`` — pooled REF+ALT not above ``imbalance_min_total``.

The remaining sites are the cell type's testing family: BH runs over exactly them.

Options beyond the study (off by default): keep donors separate; a beta-binomial
test whose overdispersion is estimated by maximum likelihood; a null REF fraction
estimated from the data (global reference-mapping bias) instead of 0.5. The
estimates are always computed and reported, so a user sees whether the binomial
null at 0.5 fits their data.

Outputs: ``imbalance.parquet`` (tested sites only), ``call_imbalance.summary.json``.
"""

from __future__ import annotations

import argparse
import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl

from .count_tables import (COUNT_COLUMNS, REQUIRED, SITE_COLUMNS, Part, add_donor_sums, donor_confirmation,
                           parts_of_frame, pool_cell_type, read_compact, sample_depth, with_flags)
from .engine import Step, StepContext
from .errors import InputError
from .io import write_json, write_parquet
from .log import Progress, get_logger
from .intervals import contains_points
from .regions import points_in_regions, read_regions
from .strata import STRATA, own_stratum
from .step_cli import add_param_options, params_from_args
from .stats import (RHO_BOUNDS, betabinom_test_two_sided, bh_qvalues, binom_test_two_sided, fit_betabinom,
                    fit_betabinom_null, fit_binomial_mean)

log = get_logger("call_imbalance")

PARAMS = {
    "imbalance_min_total": 20,             # test sites with REF+ALT strictly greater than this
    "imbalance_fdr": 0.01,                 # imbalanced: BH q-value below this
    "imbalance_balanced_min_pvalue": 0.1,  # balanced: p-value above this
    "imbalance_pool_donors": True,         # sum heterozygous donors per cell type (study); False: one test per donor
    "imbalance_test": "binomial",          # binomial (study) | betabinomial (overdispersion fitted by ML)
    "imbalance_null": "fixed",             # fixed (imbalance_null_ref_fraction) | estimate (global REF bias, ML)
    "imbalance_null_ref_fraction": 0.5,
    "imbalance_het_min_reads": 2,          # genotype confirmation: >= this many REF and ALT reads per donor (0: off)
    "imbalance_in_peaks": True,            # test only sites in the cell type's own peaks (study); False: all sites
    "imbalance_chroms": None,              # contigs tested; None: autosomes (names matching AUTOSOME)
    "imbalance_max_depth_ratio": 10.0,     # depth outlier: > ratio x sample's 99th percentile depth (0/None: off)
    "blacklist": None,                     # BED of artefact regions: sites in them are not tested
}
TESTS = ("binomial", "betabinomial")
#: why a site is not tested, in the order the filters apply (summary and log keep it)
FILTERS = ("genotype_unconfirmed", "blacklist", "depth_outlier", "out_of_peak", "excluded_chrom", "low_depth")
#: autosome names (chr1…chr22, 1…22, any count): the default of ``imbalance_chroms``
AUTOSOME = re.compile(r"^(chr)?\d+$")
#: a sample's reference depth for the outlier rule: this quantile of its covered sites' depth
DEPTH_QUANTILE = 0.99
#: fewer covered sites than this and a sample has no reference depth (its 99th percentile would be its maximum)
DEPTH_MIN_SITES = 100
NULLS = ("fixed", "estimate")
LABELS = ("imbalanced", "balanced", "untested")

OUT_COLUMNS = ("cell_type", "variant_id", "chrom", "pos", "ref", "alt", "donor", "ref_count", "alt_count",
               "other_count", "conflict_count", "total", "n_donors", "ref_ratio", "pvalue", "qvalue", "label",
               "peak_id", "peak_kind", "cluster", "cluster_label", "stratum")
HIST_BINS = {"ref_ratio": 50, "pvalue": 20}


# --------------------------------------------------------------------------- reading
def read_counts(path: str | Path, sample: str | None = None, donor: str | None = None,
                cell_type: str | None = None) -> pd.DataFrame:
    """Read and check one ``counts/<sample>.parquet``.

    ``sample``, ``donor`` and ``cell_type`` (from the samplesheet) fill or check
    those columns. Missing or negative counts, missing columns and duplicated
    variants raise :class:`InputError` naming the sample.
    """
    path = Path(path)
    who = f"sample {sample}" if sample else "counts table"
    if not path.exists():
        raise InputError(path, f"{who}: allele counts file not found",
                         "run count_alleles for this sample first (or fix the path)")
    df = pd.read_parquet(path)
    for col, val in (("sample", sample), ("donor", donor), ("cell_type", cell_type)):
        if val is None:
            continue
        if col not in df.columns:
            df[col] = val
        elif len(df) and (df[col].astype(str) != val).any():
            bad = df.loc[df[col].astype(str) != val, col].iloc[0]
            raise InputError(path, f"{who}: column {col} holds {bad!r}, the samplesheet says {val!r}",
                             "regenerate the counts from the current samplesheet")
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise InputError(path, f"{who}: missing column(s) {', '.join(missing)}",
                         f"a counts table has columns {', '.join(REQUIRED)}")
    if len(df):
        who = f"sample {df['sample'].iloc[0]}"
    for col in (*SITE_COLUMNS, *COUNT_COLUMNS):
        na = df[col].isna().to_numpy()
        if na.any():
            i = int(np.flatnonzero(na)[0])
            raise InputError(path, f"{who}: {col} is missing for {int(na.sum())} row(s), first at variant "
                                   f"{df['variant_id'].iloc[i]!r}", "regenerate the counts with count_alleles")
    for col in COUNT_COLUMNS:
        v = pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=np.float64)
        bad = np.isnan(v) | (v < 0) | (v != np.floor(v))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise InputError(path, f"{who}: {col} = {df[col].iloc[i]!r} at variant {df['variant_id'].iloc[i]!r} "
                                   f"is not a non-negative integer ({int(bad.sum())} such row(s))",
                             "counts must be read counts; regenerate them with count_alleles")
        df[col] = v.astype(np.int64)
    dup = df["variant_id"].duplicated()
    if dup.any():
        raise InputError(path, f"{who}: variant {df.loc[dup, 'variant_id'].iloc[0]!r} appears more than once",
                         "one row per heterozygous site and sample")
    # fragments whose mates disagree at the site: reported, never counted (optional column)
    df["conflict_count"] = (pd.to_numeric(df["conflict_count"]).fillna(0).astype(np.int64)
                            if "conflict_count" in df.columns else np.int64(0))
    return df[[*REQUIRED, "conflict_count"]]


def counts_part(path: str | Path, sample: str, donor: str, cell_type: str) -> Part:
    """One sample's counts file as a :class:`~caveat.count_tables.Part`: read when needed, columns
    pruned, compact dtypes, checked as :func:`read_counts` checks (its InputError on bad input).

    Raises
    ------
    InputError
        The file does not exist (at once; its content is checked when it is read).
    """
    path = Path(path)
    if not path.exists():
        read_counts(path, sample, donor, cell_type)  # raises: file not found
    given = {"sample": sample, "donor": donor, "cell_type": cell_type}
    return Part(sample, donor, cell_type,
                load=lambda: read_compact(path, given, lambda: read_counts(path, sample, donor, cell_type)))


def file_parts(path: str | Path) -> list[Part]:
    """The samples of a counts file named without a samplesheet (its ``sample, donor,
    cell_type`` columns say who): one part per sample, read when needed."""
    path = Path(path)
    who = (pl.scan_parquet(path).select("sample", "donor", "cell_type").unique(maintain_order=True).collect()
           if path.exists() and {"sample", "donor", "cell_type"} <= set(pl.read_parquet_schema(path)) else None)
    if who is None or who.null_count().sum_horizontal().item() or len(who) != 1:
        return parts_of_frame(_polars(read_counts(path)))  # several samples (or bad input: raises)
    return [counts_part(path, *(str(who[c][0]) for c in ("sample", "donor", "cell_type")))]


# --------------------------------------------------------------------------- cleaning
def tested_chroms(chroms: np.ndarray, wanted: list[str] | None) -> np.ndarray:
    """Whether each contig is tested: in ``wanted``, or (None) an autosome (:data:`AUTOSOME`).

    Parameters
    ----------
    chroms : ndarray of str, shape (n,)

    Returns
    -------
    ndarray of bool, shape (n,)
    """
    names = pd.unique(np.asarray(chroms, dtype=object))
    ok = {c: (c in set(wanted)) if wanted is not None else bool(AUTOSOME.match(str(c))) for c in names}
    return np.array([ok[c] for c in chroms], dtype=bool)


def own_peak_sites(sites: pd.DataFrame, peaks: pd.DataFrame) -> np.ndarray:
    """Whether each site lies in a consensus peak called in the site's own cell type.

    Parameters
    ----------
    sites : DataFrame
        ``cell_type, chrom, pos`` (0-based), shape (n, ...).
    peaks : DataFrame
        :func:`read_peaks` output (disjoint, sorted) with ``called_<cell type>`` columns.

    Returns
    -------
    ndarray of bool, shape (n,)
    """
    idx = contains_points(peaks, sites["chrom"].astype(str).to_numpy(), sites["pos"].to_numpy(np.int64))
    out = np.zeros(len(sites), dtype=bool)
    cts = sites["cell_type"].astype(str).to_numpy()
    for ct in pd.unique(cts):
        col = f"called_{ct}"
        if col not in peaks.columns:
            raise InputError(peaks.attrs.get("path", "peaks.parquet"),
                             f"no column {col}: which consensus peaks are {ct}'s own peaks is unknown",
                             "rerun cluster_peaks (it writes called_<cell type>), or set imbalance_in_peaks: false")
        sel = (cts == ct) & (idx >= 0)
        out[sel] = peaks[col].to_numpy(bool)[idx[sel]]
    return out


def drop_reasons(sites: pd.DataFrame, params: dict, peaks: pd.DataFrame | None,
                 blacklist: pd.DataFrame | None, flagged: np.ndarray) -> np.ndarray:
    """The first filter of :data:`FILTERS` (after genotype confirmation) that drops each pooled site.

    Parameters
    ----------
    sites : DataFrame
        Pooled, genotype-confirmed sites: ``cell_type, chrom, pos, total``, shape (n, ...).
    flagged : ndarray of bool, shape (n,)
        Sites with a depth-outlier row (any donor's, confirmed or not).

    Returns
    -------
    ndarray of object, shape (n,)
        A name from :data:`FILTERS`, or "" for a site that is tested.
    """
    chrom, pos = sites["chrom"].astype(str).to_numpy(), sites["pos"].to_numpy(np.int64)
    masks = [points_in_regions(blacklist, chrom, pos),
             np.asarray(flagged, dtype=bool),
             ~own_peak_sites(sites, peaks) if params["imbalance_in_peaks"] else np.zeros(len(sites), bool),
             ~tested_chroms(chrom, params["imbalance_chroms"]),
             sites["total"].to_numpy() <= params["imbalance_min_total"]]
    return np.select(masks, list(FILTERS[1:]), default="").astype(object) if len(sites) else np.zeros(0, object)


def ref_fractions(s: pd.DataFrame, n_empty: int = 0) -> dict:
    """Depth-weighted (sum REF / sum REF+ALT) and per-site mean REF fraction of sites ``s``
    (and ``n_empty`` further sites without reads, counted in ``n_sites``)."""
    return _ref_fractions(s["ref_count"].to_numpy(np.float64), s["total"].to_numpy(np.float64), n_empty)


def _ref_fractions(ref: np.ndarray, tot: np.ndarray, n_empty: int = 0) -> dict:
    cov = tot > 0
    return {"n_sites": int(len(tot)) + int(n_empty), "reads": int(tot.sum()),
            "depth_weighted": float(ref.sum() / tot.sum()) if tot.sum() > 0 else None,
            "site_mean": float(np.mean(ref[cov] / tot[cov])) if cov.any() else None}


# --------------------------------------------------------------------------- the test
def check_params(params: dict) -> None:
    """Reject impossible imbalance params, naming the key."""
    if params["imbalance_test"] not in TESTS:
        raise InputError("imbalance_test", f"unknown test {params['imbalance_test']!r}", f"use one of {TESTS}")
    if params["imbalance_null"] not in NULLS:
        raise InputError("imbalance_null", f"unknown null {params['imbalance_null']!r}", f"use one of {NULLS}")
    if not 0 < params["imbalance_null_ref_fraction"] < 1:
        raise InputError("imbalance_null_ref_fraction", "must lie strictly between 0 and 1", "use e.g. 0.5")
    if not 0 < params["imbalance_fdr"] < 1:
        raise InputError("imbalance_fdr", "must lie strictly between 0 and 1", "use e.g. 0.01")
    if not 0 <= params["imbalance_balanced_min_pvalue"] < 1:
        raise InputError("imbalance_balanced_min_pvalue", "must lie in [0, 1)", "use e.g. 0.1")
    if params["imbalance_min_total"] < 0:
        raise InputError("imbalance_min_total", "must be >= 0", "use e.g. 20")
    if params["imbalance_het_min_reads"] < 0:
        raise InputError("imbalance_het_min_reads", "must be >= 0", "use 2 (the study's), or 0 to confirm every site")
    if (params["imbalance_max_depth_ratio"] or 0) < 0:
        raise InputError("imbalance_max_depth_ratio", "must be >= 0", "use e.g. 10, or 0 to keep every depth")
    chroms = params["imbalance_chroms"]
    if chroms is not None and (isinstance(chroms, str) or not all(isinstance(c, str) for c in chroms) or not chroms):
        raise InputError("imbalance_chroms", f"expected a list of contig names, got {chroms!r}",
                         "give e.g. [chr1, chr2], or null for the autosomes")


def imbalance_pvalues(ref_count: np.ndarray, total: np.ndarray, params: dict) -> tuple[np.ndarray, dict]:
    """Test the sites of one cell type.

    Parameters
    ----------
    ref_count, total : ndarray of int, shape (m,)
        Sites that passed the depth filter.

    Returns
    -------
    pvalue : ndarray, shape (m,)
    estimates : dict
        ``null_ref_fraction`` (the null mean used), ``pooled_ref_fraction`` (binomial ML
        global REF fraction, sum REF / sum total), ``overdispersion_rho`` (beta-binomial ML
        over every tested site, reported), ``loglik_betabinomial`` / ``loglik_binomial`` (to
        compare the two nulls), ``test``, ``null``; with the beta-binomial test also
        ``null_overdispersion_rho`` (the rho it uses), ``null_share``, ``alt_overdispersion_rho``.

    Notes
    -----
    The beta-binomial test uses the overdispersion of the null sites, the narrow component
    of a two-component mixture (:func:`~caveat.stats.fit_betabinom_null`): a fit over every
    tested site counts the truly imbalanced ones as overdispersion, an upper bound that left
    the test almost powerless on the simulated demo (rho 0.02 planted per sample: 0.085-0.10
    over all sites, 0.010-0.029 as the null component; 141 calls at FDP 0.014).
    """
    fixed = float(params["imbalance_null_ref_fraction"])
    pooled = fit_binomial_mean(ref_count, total)
    est = {"test": params["imbalance_test"], "null": params["imbalance_null"],
           "pooled_ref_fraction": pooled, "n_sites": int(ref_count.size)}
    if ref_count.size == 0:
        return np.zeros(0), {**est, "null_ref_fraction": fixed, "overdispersion_rho": None}
    estimate = params["imbalance_null"] == "estimate"
    if params["imbalance_test"] == "binomial":
        mu = float(np.clip(pooled, 1e-6, 1 - 1e-6)) if estimate else fixed
        fit = fit_betabinom(ref_count, total, mu=mu)  # diagnostic only
        pvalue = binom_test_two_sided(ref_count, total, mu)
    else:
        fit = fit_betabinom(ref_count, total, mu=None if estimate else fixed)
        mu = fit["mu"]
        null = fit_betabinom_null(ref_count, total, mu=mu)
        rho = max(null["rho"], RHO_BOUNDS[0])
        pvalue = betabinom_test_two_sided(ref_count, total, mu, rho)
        est.update(null_overdispersion_rho=rho, null_share=null["null_share"], alt_overdispersion_rho=null["rho_alt"])
    est.update(null_ref_fraction=float(mu), overdispersion_rho=fit["rho"],
               loglik_betabinomial=fit["loglik"], loglik_binomial=fit["loglik_binomial"])
    return pvalue, est


def label_sites(pvalue: np.ndarray, qvalue: np.ndarray, fdr: float, balanced_min_p: float) -> np.ndarray:
    """``imbalanced`` (q < fdr), ``balanced`` (p > balanced_min_p), else ``untested``."""
    return np.where(qvalue < fdr, "imbalanced", np.where(pvalue > balanced_min_p, "balanced", "untested"))


def _histogram(x: np.ndarray, bins: int) -> dict:
    counts, edges = np.histogram(x[np.isfinite(x)], bins=bins, range=(0.0, 1.0))
    return {"edges": np.round(edges, 10).tolist(), "counts": counts.tolist()}


def call_imbalance(counts: pd.DataFrame | list[Part], params: dict, peaks: pd.DataFrame | None = None,
                   cell_type_order: list[str] | None = None, blacklist: pd.DataFrame | None = None,
                   logger: logging.Logger = log) -> tuple[pd.DataFrame, dict]:
    """Confirm, pool, filter, test, correct and label; the core of the step and of the CLI.

    Parameters
    ----------
    counts : list of :class:`~caveat.count_tables.Part`, or DataFrame
        One part per sample whose rows are loaded when needed (:func:`counts_part`; twice, one
        sample at a time). A concatenated counts table (columns :data:`REQUIRED`; tests, small
        inputs) is split into such parts first (:func:`~caveat.count_tables.parts_of_frame`), so
        both go through the one per-sample path.
    params : dict
        The step's params (:data:`PARAMS` keys).
    peaks : DataFrame, optional
        ``peaks.parquet`` (:func:`read_peaks`): strata, and with ``imbalance_in_peaks`` each
        cell type's own peaks (``called_<cell type>``); required then.
    blacklist : DataFrame, optional
        Merged artefact regions (:func:`caveat.regions.read_regions`).

    Returns
    -------
    table : DataFrame
        One row per tested site (columns :data:`OUT_COLUMNS`).
    summary : dict

    Notes
    -----
    Memory: one sample's rows at a time with each donor's running per-site sums (first
    pass), then one cell type's rows (pooling); pooled sites without a read are counted
    under their filter, not kept as rows.
    """
    params = {**PARAMS, **params}
    check_params(params)
    if params["imbalance_in_peaks"] and peaks is None:
        raise InputError("peaks.parquet", "imbalance_in_peaks is true but no peaks were given: the testing family "
                         "is each cell type's in-peak sites", "run cluster_peaks first (or give --peaks), or set "
                         "imbalance_in_peaks: false to test every site")
    parts = counts if isinstance(counts, list) else parts_of_frame(_polars(counts))
    live, n_rows, confirmed, per_donor, per_sample = _first_pass(parts, params)
    _log_cleaning(logger, n_rows, len({p.sample for p in live}), per_donor, per_sample, params)
    cts = list(dict.fromkeys([*(cell_type_order or []), *sorted({p.cell_type for p in live})]))
    tables, per_ct, acc = [], {}, {"ref": [], "tot": [], "artefact": [], "empty": 0, "empty_artefact": 0}
    prog = Progress(logger, "cell types", total=len(cts))
    for ct in cts:
        s, n_read, empty = _pooled_sites(ct, [p for p in live if p.cell_type == ct], confirmed, per_sample, params,
                                         peaks, blacklist)
        _accumulate(acc, s, empty)
        t, per_ct[ct] = call_cell_type(s, params, ct, n_read, logger, empty)
        tables.append(t)
        prog.update()
    prog.close()
    table = pd.concat(tables, ignore_index=True) if tables else _empty_sites().drop(columns="_reason").assign(
        ref_ratio=np.float64(0), pvalue=np.float64(0), qvalue=np.float64(0), label="")
    table = annotate_peaks(table, peaks, cts)
    if peaks is not None:
        for ct in cts:
            per_ct[ct]["by_stratum"] = _by_stratum(table[table["cell_type"] == ct])
    summary = _summary(n_rows, acc, table, per_ct, per_donor, per_sample, params, peaks, blacklist)
    if summary["n_tested"] == 0:
        logger.warning("%s", summary["message"])
    return table[list(OUT_COLUMNS)].reset_index(drop=True), summary


def _polars(counts) -> pl.DataFrame:
    """An in-memory counts table as polars (empty when it has no rows)."""
    if isinstance(counts, pl.DataFrame):
        return counts
    if counts is None or len(counts) == 0:
        return pl.DataFrame()
    return pl.from_pandas(counts.reset_index(drop=True))


def _first_pass(parts: list[Part], params: dict) -> tuple:
    """Read every sample once: its donor's per-site REF/ALT sums and its depth reference.

    Returns
    -------
    live : list of Part
        The samples with at least one row.
    n_rows : int
    confirmed : dict
        donor → Series of its confirmed ``variant_id`` (None: every site, ``imbalance_het_min_reads`` 0).
    per_donor, per_sample : dict
        Summaries (genotype confirmation; depth references, with ``imbalance_max_depth_ratio``).
    """
    ratio = params["imbalance_max_depth_ratio"]
    min_reads = int(params["imbalance_het_min_reads"])
    live, n_rows, sums, per_sample = [], 0, {}, {}
    for part in parts:
        df = part.load()
        if df.is_empty():
            continue
        live.append(part)
        n_rows += len(df)
        sums[part.donor] = add_donor_sums(sums.get(part.donor), df)
        if ratio:
            depth = (df["ref_count"].cast(pl.Int64) + df["alt_count"].cast(pl.Int64)).to_numpy()
            per_sample[part.sample] = sample_depth(depth, float(ratio), DEPTH_QUANTILE, DEPTH_MIN_SITES)
    confirmed, per_donor = {}, {}
    for donor in sorted(sums):
        ids, per_donor[donor] = donor_confirmation(sums.pop(donor), min_reads)
        confirmed[donor] = ids if min_reads > 0 else None
    return live, n_rows, confirmed, per_donor, dict(sorted(per_sample.items()))


def _pooled_sites(ct: str, parts: list[Part], confirmed: dict, per_sample: dict, params: dict, peaks, blacklist
                  ) -> tuple[pd.DataFrame, int, dict]:
    """One cell type's pooled, genotype-confirmed sites that carry a read, with ``_reason``.

    Returns
    -------
    sites : DataFrame
        ``cell_type, variant_id, chrom, pos, ref, alt, donor`` (null when pooled), ``ref_count,
        alt_count, other_count, conflict_count, total, n_donors`` and ``_reason``
        (:func:`drop_reasons`); sites with a read only, sorted by contig (natural order), pos,
        variant, donor.
    n_read : int
        The cell type's sites before genotype confirmation.
    empty : dict
        filter → confirmed pooled sites without any read (REF, ALT, other or conflicting) that it drops.
    """
    rows = [with_flags(p, p.load(), confirmed.get(p.donor), per_sample.get(p.sample, {}).get("threshold"))
            for p in parts]
    if not rows:
        return _empty_sites(), 0, {}
    g, n_read = pool_cell_type(rows, params["imbalance_pool_donors"])
    del rows
    # the filters see every pooled site (a slim frame, chrom categorical); only sites with a read become rows
    where = g.select(pl.lit(ct).cast(pl.Categorical).alias("cell_type"), "chrom", "pos", "total").to_pandas()
    reason = drop_reasons(where, params, peaks, blacklist, g["flagged"].to_numpy())
    del where
    has_reads = (g["total"] + g["other_count"] + g["conflict_count"] > 0).to_numpy()
    empty = {str(k): int(n) for k, n in zip(*np.unique(reason[~has_reads].astype(str), return_counts=True))}
    sites = g.filter(pl.Series(has_reads)).select(
        pl.lit(ct, pl.String).alias("cell_type"), "variant_id", pl.col("chrom").cast(pl.String),
        pl.col("pos").cast(pl.Int64), pl.col("ref").cast(pl.String), pl.col("alt").cast(pl.String),
        "donor", *COUNT_COLUMNS, "conflict_count", "total", "n_donors").to_pandas()
    sites["_reason"] = reason[has_reads]
    if params["imbalance_pool_donors"]:
        sites["donor"] = pd.Series([None] * len(sites), dtype=object)
    return sites, n_read, empty


def _empty_sites() -> pd.DataFrame:
    """Typed, empty pooled sites: the columns of :func:`_pooled_sites` (with ``_reason``), none
    with a row."""
    ints = ("pos", *COUNT_COLUMNS, "conflict_count", "total", "n_donors")
    cols = ("cell_type", *SITE_COLUMNS, "donor", *COUNT_COLUMNS, "conflict_count", "total", "n_donors", "_reason")
    return pd.DataFrame({c: pd.Series(dtype=np.int64 if c in ints else object) for c in cols})


def _accumulate(acc: dict, s: pd.DataFrame, empty: dict) -> None:
    """Keep a cell type's REF/total per site (sites with reads) for the study-wide REF fractions."""
    acc["ref"].append(s["ref_count"].to_numpy(np.int64))
    acc["tot"].append(s["total"].to_numpy(np.int64))
    acc["artefact"].append(s["_reason"].isin(["blacklist", "depth_outlier"]).to_numpy())
    acc["empty"] += sum(empty.values())
    acc["empty_artefact"] += empty.get("blacklist", 0) + empty.get("depth_outlier", 0)


def _log_cleaning(logger: logging.Logger, n_rows: int, n_samples: int, per_donor: dict, per_sample: dict,
                  params: dict) -> None:
    """Log what was read, and what genotype confirmation and the depth-outlier rule remove."""
    logger.info("read %s count rows over %s samples (%s)", f"{n_rows:,}", n_samples,
                "donors summed" if params["imbalance_pool_donors"] else "donors separate")
    n = params["imbalance_het_min_reads"]
    for donor, d in per_donor.items():
        logger.info("genotype confirmation: donor %s loses %s of its %s het sites (fewer than %d REF or %d ALT "
                    "reads over its samples; %s reads)", donor, f"{d['n_unconfirmed']:,}", f"{d['n_sites']:,}", n, n,
                    f"{d['reads_removed']:,}")
    for sample, d in per_sample.items():
        if d["reference_depth"] is None:
            logger.info("depth outliers: sample %s has %d covered sites (< %d): not checked", sample,
                        d["n_covered"], DEPTH_MIN_SITES)
        elif d["n_outliers"]:
            logger.info("depth outliers: sample %s has %d site(s) above %g reads (%g x its %g%% depth %s; max %s)",
                        sample, d["n_outliers"], d["threshold"], params["imbalance_max_depth_ratio"],
                        100 * DEPTH_QUANTILE, d["reference_depth"], f"{d['max_depth']:,}")


def _summary(n_rows, acc, table, per_ct, per_donor, per_sample, params, peaks, blacklist) -> dict:
    """The step summary: counts per filter (in :data:`FILTERS` order), REF fractions, labels."""
    ref, tot, artefact = (np.concatenate(acc[k]) if acc[k] else np.zeros(0, dt)
                          for k, dt in (("ref", np.int64), ("tot", np.int64), ("artefact", bool)))
    ref, tot = ref.astype(np.float64), tot.astype(np.float64)
    n_tested = int(len(table))
    dropped = {k: sum(c["dropped"][k] for c in per_ct.values()) for k in FILTERS}
    return {
        # a path param by file name: the same study in another folder writes the same summary
        "params": {k: Path(params[k]).name if k == "blacklist" and params[k] else params[k] for k in sorted(PARAMS)},
        "n_count_rows": int(n_rows),
        "n_sites": int(sum(c["n_sites"] for c in per_ct.values())),
        "n_tested": n_tested,
        "dropped": dropped,
        "ref_fraction": {"before_artefact_filters": _ref_fractions(ref, tot, acc["empty"]),
                         "after_artefact_filters": _ref_fractions(ref[~artefact], tot[~artefact],
                                                                  acc["empty"] - acc["empty_artefact"]),
                         "tested": ref_fractions(table)},
        "labels": {lab: int((table["label"] == lab).sum()) for lab in LABELS},
        "genotype_confirmation": {"min_reads": int(params["imbalance_het_min_reads"]), "donors": per_donor},
        "depth_outliers": {"max_ratio": params["imbalance_max_depth_ratio"], "quantile": DEPTH_QUANTILE,
                           "samples": per_sample},
        "blacklist": None if blacklist is None else {"regions": int(len(blacklist)),
                                                     "bp": int((blacklist["end"] - blacklist["start"]).sum())},
        "cell_types": per_ct,
        "has_peaks": peaks is not None,
        "message": None if n_tested else ("no site passed the filters (dropped: " + ", ".join(
            f"{v} {k}" for k, v in dropped.items()) + "); outputs are empty"),
    }


def call_cell_type(s: pd.DataFrame, params: dict, ct: str = "", n_read: int | None = None,
                   logger: logging.Logger = log, empty: dict | None = None) -> tuple[pd.DataFrame, dict]:
    """Test, BH and labels over the testing family of one cell type.

    Parameters
    ----------
    s : DataFrame
        The cell type's genotype-confirmed pooled sites with ``_reason`` (:func:`drop_reasons`;
        "" = in the family), shape (n, ...).
    n_read : int, optional
        The cell type's sites before genotype confirmation (default ``n`` + the empty sites).
    empty : dict, optional
        filter → the cell type's confirmed sites without reads that it drops (not rows of ``s``).

    Returns
    -------
    table : DataFrame
        The tested sites with ``ref_ratio, pvalue, qvalue, label`` added.
    info : dict
        The cell type's summary: counts dropped per filter, REF fractions, labels,
        estimates, histograms.
    """
    empty = empty or {}
    n_empty = sum(empty.values())
    n_read = len(s) + n_empty if n_read is None else n_read
    reason = s["_reason"].to_numpy()
    dropped = {"genotype_unconfirmed": int(n_read - len(s) - n_empty),
               **{k: int((reason == k).sum()) + empty.get(k, 0) for k in FILTERS[1:]}}
    t = s[reason == ""].drop(columns="_reason").reset_index(drop=True)
    pvalue, est = imbalance_pvalues(t["ref_count"].to_numpy(), t["total"].to_numpy(), params)
    qvalue = bh_qvalues(pvalue)
    t["ref_ratio"] = t["ref_count"] / t["total"].where(t["total"] > 0)
    t["pvalue"], t["qvalue"] = pvalue, qvalue
    t["label"] = label_sites(pvalue, qvalue, params["imbalance_fdr"], params["imbalance_balanced_min_pvalue"])
    n_label = {lab: int((t["label"] == lab).sum()) for lab in LABELS}
    artefact = np.isin(reason, ["blacklist", "depth_outlier"])
    logger.info("%s: %s sites; dropped %s; %s tested (null REF fraction %.4f, overdispersion rho %.3g): %s", ct,
                f"{n_read:,}", ", ".join(f"{v:,} {k}" for k, v in dropped.items()), f"{len(t):,}",
                est["null_ref_fraction"], est["overdispersion_rho"] or 0.0,
                ", ".join(f"{v:,} {k}" for k, v in n_label.items()))
    reads = s["other_count"].sum() + s["total"].sum()
    info = {"n_sites": int(n_read), "dropped": dropped, "n_dropped_low_depth": dropped["low_depth"],
            "n_tested": int(len(t)), "labels": n_label, "estimates": est,
            "ref_fraction": {"before_artefact_filters": ref_fractions(s, n_empty), "after_artefact_filters":
                             ref_fractions(s[~artefact], n_empty - empty.get("blacklist", 0)
                                           - empty.get("depth_outlier", 0)),
                             "tested": ref_fractions(t)},
            "other_count_fraction": float(s["other_count"].sum() / max(1, reads)),
            "conflict_count": int(s["conflict_count"].sum()),
            "hist": {"ref_ratio": _histogram(t["ref_ratio"].to_numpy(float), HIST_BINS["ref_ratio"]),
                     "pvalue": _histogram(pvalue, HIST_BINS["pvalue"])}}
    return t, info


def _by_stratum(t: pd.DataFrame) -> dict:
    """Per own-cluster stratum (:mod:`caveat.strata`): label counts and the |ref_ratio - 0.5| histogram (Fig. S4)."""
    out = {}
    for name in (*STRATA, "outside_peaks"):
        sel = t["stratum"].isna() if name == "outside_peaks" else (t["stratum"] == name)
        tk = t[sel.to_numpy()]
        dev = np.abs(tk["ref_ratio"].to_numpy(float) - 0.5)
        c, e = np.histogram(dev, bins=20, range=(0.0, 0.5))
        out[name] = {"n_tested": int(len(tk)), "labels": {lab: int((tk["label"] == lab).sum()) for lab in LABELS},
                     "abs_ref_ratio_dev": {"edges": np.round(e, 10).tolist(), "counts": c.tolist()}}
    return out


# --------------------------------------------------------------------------- peaks
def read_peaks(path: str | Path) -> pd.DataFrame:
    """Read ``peaks.parquet`` and check that the peaks are disjoint per contig."""
    path = Path(path)
    need = ("peak_id", "chrom", "start", "end", "kind", "cluster")
    names = list(pl.read_parquet_schema(path)) if path.exists() else []
    # columns pruned: the per-cell-type accessibility/count/value columns are not read (only their names)
    peaks = pd.read_parquet(path, columns=[c for c in names if c in need or c == "cluster_label"
                                           or c.startswith("called_")] if names else None)
    missing = [c for c in need if c not in peaks.columns]
    if missing:
        raise InputError(path, f"missing column(s) {', '.join(missing)}", f"peaks need {', '.join(need)}")
    if "cluster_label" not in peaks.columns:
        log.warning("%s has no cluster_label: no variant is in its cell type's own specific cluster", path)
        peaks = peaks.assign(cluster_label=None)
    cell_types = [c[4:] for c in names if c.startswith("acc_")]
    called = [c for c in peaks.columns if c.startswith("called_")]
    peaks = peaks[[*need, "cluster_label", *called]].sort_values(["chrom", "start"], kind="stable").reset_index(drop=True)
    same = peaks["chrom"].to_numpy()[1:] == peaks["chrom"].to_numpy()[:-1]
    overlap = same & (peaks["start"].to_numpy()[1:] < peaks["end"].to_numpy()[:-1])
    if overlap.any():
        i = int(np.flatnonzero(overlap)[0]) + 1
        raise InputError(path, f"peak {peaks['peak_id'].iloc[i]!r} overlaps the previous peak on "
                               f"{peaks['chrom'].iloc[i]}", "peak clusters must be disjoint (merged union peaks)")
    peaks.attrs["cell_types"] = cell_types  # every cell type of the study, to read cluster labels
    peaks.attrs["path"] = str(path)
    return peaks


def annotate_peaks(table: pd.DataFrame, peaks: pd.DataFrame | None, cell_types: list[str] | None = None
                   ) -> pd.DataFrame:
    """Add ``peak_id``, ``peak_kind``, ``cluster``, ``cluster_label`` of the peak holding each variant
    (null outside peaks) and its own-cluster ``stratum`` for the row's cell type
    (:func:`caveat.strata.own_stratum`).

    Peaks are disjoint and half-open ``[start, end)``; a variant at 0-based ``pos``
    is inside when ``start <= pos < end``.
    """
    n = len(table)
    cols = {"peak_id": np.full(n, None, dtype=object), "peak_kind": np.full(n, None, dtype=object),
            "cluster_label": np.full(n, None, dtype=object)}
    cluster = np.full(n, np.nan)
    if peaks is not None and n:
        j = contains_points(peaks, table["chrom"].astype(str).to_numpy(), table["pos"].to_numpy(np.int64))
        r = np.flatnonzero(j >= 0)
        for c, src in (("peak_id", "peak_id"), ("peak_kind", "kind"), ("cluster_label", "cluster_label")):
            cols[c][r] = peaks[src].astype(object).to_numpy()[j[r]]
        cluster[r] = peaks["cluster"].to_numpy(np.float64)[j[r]]
    table = table.copy()
    for c, v in cols.items():
        table[c] = pd.Series(v, index=table.index, dtype=object)
    table["cluster"] = pd.Series(cluster, index=table.index).astype("Int64")
    cts = list(dict.fromkeys([*(peaks.attrs.get("cell_types", []) if peaks is not None else []),
                              *(cell_types or []), *table["cell_type"].astype(str).unique()]))
    table["stratum"] = pd.Series(own_stratum(table["peak_kind"], table["cluster_label"], table["cell_type"], cts),
                                 index=table.index, dtype=object)
    return table


# --------------------------------------------------------------------------- outputs
def write_outputs(table: pd.DataFrame, summary: dict, out: str | Path, summary_path: str | Path) -> None:
    """Write ``imbalance.parquet`` and its summary atomically (typed even when empty)."""
    table = table.copy()
    strings = ("cell_type", "variant_id", "chrom", "ref", "alt", "donor", "label", "peak_id", "peak_kind",
               "cluster_label", "stratum")
    for c in strings:
        table[c] = table[c].astype(object).where(table[c].notna(), None)
    for c in ("pos", *COUNT_COLUMNS, "conflict_count", "total", "n_donors"):
        table[c] = table[c].astype(np.int64)
    for c in ("ref_ratio", "pvalue", "qvalue"):
        table[c] = table[c].astype(np.float64)
    import pyarrow as pa

    schema = pa.schema([(c, pa.string()) if c in strings
                        else (c, pa.int64()) if c in ("pos", *COUNT_COLUMNS, "conflict_count", "total", "n_donors",
                                                      "cluster")
                        else (c, pa.float64()) for c in OUT_COLUMNS])
    # an explicit schema, so that empty outputs keep their column types
    write_parquet(pa.Table.from_pandas(table[list(OUT_COLUMNS)], schema=schema, preserve_index=False), out)
    write_json(summary, summary_path)


# --------------------------------------------------------------------------- engine
def read_blacklist(path: str | Path | None, logger: logging.Logger = log) -> pd.DataFrame | None:
    """The ``blacklist`` param's merged regions (:func:`caveat.regions.read_regions`), or None."""
    if not path:
        return None
    regions = read_regions(path)
    logger.info("blacklist %s: %s merged regions, %s bp", Path(path).name, f"{len(regions):,}",
                f"{int((regions['end'] - regions['start']).sum()):,}")
    return regions


def _input_files(params: dict) -> list:
    return [params[k] for k in ("input", "blacklist") if params.get(k)]


def run_step(ctx: StepContext) -> dict:
    """Local engine: every sample of the samplesheet → ``imbalance.parquet``."""
    from .samplesheet import cell_types
    from .single_cell import read_study

    sheet = read_study(ctx.params["input"], check_files=False).samples
    counts = [counts_part(ctx.outdir / "counts" / f"{r.sample}.parquet", r.sample, r.donor, r.cell_type)
              for r in sheet.itertuples()]
    peaks_path = ctx.outdir / "peaks.parquet"
    if ctx.params.get("imbalance_in_peaks", True) and not peaks_path.exists():
        raise InputError(peaks_path, "not found, and imbalance_in_peaks is true: each cell type's testing family "
                         "is its in-peak sites", "run cluster_peaks first, or set imbalance_in_peaks: false")
    peaks = read_peaks(peaks_path) if peaks_path.exists() else None
    ctx.log.info("peaks: %s", f"{len(peaks):,} consensus peaks from peaks.parquet" if peaks is not None
                 else "none (no peaks.parquet)")
    blacklist = read_blacklist(ctx.params.get("blacklist"), ctx.log)
    table, summary = call_imbalance(counts, ctx.params, peaks, cell_types(sheet), blacklist, ctx.log)
    write_outputs(table, summary, ctx.out("imbalance.parquet"), ctx.out("call_imbalance.summary.json"))
    return {"n_tested": summary["n_tested"], **summary["labels"]}


STEP = Step(name="call_imbalance", run=run_step, needs=("count_alleles", "cluster_peaks"),
            params=dict(PARAMS), input_files=_input_files, path_params=("blacklist",),
            doc="confirm genotypes, drop artefact sites, pool donors, test in-peak autosomal sites, BH per "
                "cell type → imbalance.parquet")


# --------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="call_imbalance",
                                 description="Allelic imbalance per cell type from allele counts tables.")
    ap.add_argument("--counts", nargs="+", required=True, metavar="PARQUET",
                    help="counts/<sample>.parquet files (columns sample, donor, cell_type, …)")
    ap.add_argument("--peaks", help="peaks.parquet (kind, cluster, called_<cell type>): strata, and each cell "
                                    "type's own peaks; required unless --no-imbalance-in-peaks")
    ap.add_argument("--cell-types", nargs="+", metavar="NAME", help="cell-type order (default: sorted)")
    ap.add_argument("--out", default="imbalance.parquet")
    ap.add_argument("--summary", default="call_imbalance.summary.json")
    add_param_options(ap, PARAMS,
                      aliases={"imbalance_min_total": ["--min-total"], "imbalance_fdr": ["--fdr"],
                               "imbalance_balanced_min_pvalue": ["--balanced-min-pvalue"],
                               "imbalance_pool_donors": ["--pool-donors"], "imbalance_test": ["--test"],
                               "imbalance_null": ["--null"], "imbalance_null_ref_fraction": ["--null-ref-fraction"]},
                      choices={"imbalance_test": TESTS, "imbalance_null": NULLS},
                      types={"imbalance_chroms": list},
                      helps={"imbalance_min_total": "test sites with REF+ALT strictly greater than this",
                             "imbalance_het_min_reads": "a donor's het site counts where its reads over all its "
                                                        "samples show at least this many REF and ALT reads",
                             "imbalance_chroms": "contigs tested (default: autosomes)",
                             "imbalance_max_depth_ratio": "drop sites above this x the sample's 99th percentile "
                                                          "depth (0: off)",
                             "blacklist": "BED of artefact regions: sites in them are not tested"})
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    params = params_from_args(args, PARAMS)
    counts = [q for p in args.counts for q in file_parts(p)]
    peaks = read_peaks(args.peaks) if args.peaks else None
    table, summary = call_imbalance(counts, params, peaks, args.cell_types, read_blacklist(params["blacklist"]))
    write_outputs(table, summary, args.out, args.summary)
    return 0
