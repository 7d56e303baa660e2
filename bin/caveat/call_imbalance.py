"""CALL_IMBALANCE: pool allele counts per cell type, test each heterozygous site for
allelic imbalance, control the FDR, and label sites imbalanced / balanced / untested.

As in Kathail et al. (Appendix B.2): per cell type, REF and ALT reads are summed
over the donors heterozygous at the variant; sites with REF+ALT reads > 20 are
tested with a two-sided exact binomial test against 0.5; Benjamini–Hochberg over
the tested sites of the cell type; ``imbalanced`` at q < 0.01, ``balanced`` at
p > 0.1, ``untested`` (ambiguous) otherwise. Reads with a third allele
(``other_count``) are reported but are not part of the total.

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

from .engine import Step, StepContext
from .errors import InputError
from .io import write_json, write_parquet
from .log import Progress, get_logger
from .strata import STRATA, own_stratum
from .step_cli import add_param_options, params_from_args
from .stats import (betabinom_test_two_sided, bh_qvalues, binom_test_two_sided, fit_betabinom,
                    fit_binomial_mean)

log = get_logger("call_imbalance")

PARAMS = {
    "imbalance_min_total": 20,             # test sites with REF+ALT strictly greater than this
    "imbalance_fdr": 0.01,                 # imbalanced: BH q-value below this
    "imbalance_balanced_min_pvalue": 0.1,  # balanced: p-value above this
    "imbalance_pool_donors": True,         # sum heterozygous donors per cell type (study); False: one test per donor
    "imbalance_test": "binomial",          # binomial (study) | betabinomial (overdispersion fitted by ML)
    "imbalance_null": "fixed",             # fixed (imbalance_null_ref_fraction) | estimate (global REF bias, ML)
    "imbalance_null_ref_fraction": 0.5,
}
TESTS = ("binomial", "betabinomial")
NULLS = ("fixed", "estimate")
LABELS = ("imbalanced", "balanced", "untested")

COUNT_COLUMNS = ("ref_count", "alt_count", "other_count")
SITE_COLUMNS = ("variant_id", "chrom", "pos", "ref", "alt")
REQUIRED = ("sample", "donor", "cell_type", *SITE_COLUMNS, *COUNT_COLUMNS)
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


def _natural_key(s: pd.Series) -> pd.Series:
    """chr2 before chr10: sort key for contig names."""
    def key(name: str):
        return tuple((0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", name) if t)
    order = {c: i for i, c in enumerate(sorted(s.unique(), key=key))}
    return s.map(order)


# --------------------------------------------------------------------------- pooling
def pool_counts(counts: pd.DataFrame, pool_donors: bool = True,
                cell_type_order: list[str] | None = None) -> pd.DataFrame:
    """Sum REF/ALT/other reads per (cell type, variant) over heterozygous donors.

    Parameters
    ----------
    counts : DataFrame
        Rows of every sample's counts table (columns :data:`REQUIRED`).
    pool_donors : bool
        False keeps one row per (cell type, donor, variant).

    Returns
    -------
    DataFrame
        ``cell_type, variant_id, chrom, pos, ref, alt, donor, ref_count, alt_count,
        other_count, total, n_donors``; ``donor`` is null when pooled; sorted by cell
        type, chrom (natural order), pos, variant, donor.
    """
    keys = ["cell_type", "variant_id"] + ([] if pool_donors else ["donor"])
    if "conflict_count" not in counts.columns:
        counts = counts.assign(conflict_count=np.int64(0))
    if counts.empty:
        out = pd.DataFrame({c: pd.Series(dtype=object) for c in ("cell_type", *SITE_COLUMNS, "donor")})
        for c in (*COUNT_COLUMNS, "conflict_count", "total", "n_donors"):
            out[c] = pd.Series(dtype=np.int64)
        out["pos"] = out["pos"].astype(np.int64)
        return out
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
    out["_ct"] = out["cell_type"].map(ct_order)
    out["_chrom"] = _natural_key(out["chrom"].astype(str))
    out = out.sort_values(["_ct", "_chrom", "pos", "variant_id"] + ([] if pool_donors else ["donor"]),
                          kind="stable").drop(columns=["_ct", "_chrom"]).reset_index(drop=True)
    out["pos"] = out["pos"].astype(np.int64)
    return out[["cell_type", *SITE_COLUMNS, "donor", *COUNT_COLUMNS, "conflict_count", "total", "n_donors"]]


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
        over the same sites; the beta-binomial test uses it, the binomial only reports it),
        ``loglik_betabinomial`` / ``loglik_binomial`` (to compare the two nulls), ``test``, ``null``.

    Notes
    -----
    ``rho`` is fitted on every tested site, truly imbalanced ones included, so where many
    sites are imbalanced it is an upper bound and the beta-binomial test is conservative.
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
        pvalue = betabinom_test_two_sided(ref_count, total, mu, fit["rho"])
    est.update(null_ref_fraction=float(mu), overdispersion_rho=fit["rho"],
               loglik_betabinomial=fit["loglik"], loglik_binomial=fit["loglik_binomial"])
    return pvalue, est


def label_sites(pvalue: np.ndarray, qvalue: np.ndarray, fdr: float, balanced_min_p: float) -> np.ndarray:
    """``imbalanced`` (q < fdr), ``balanced`` (p > balanced_min_p), else ``untested``."""
    return np.where(qvalue < fdr, "imbalanced", np.where(pvalue > balanced_min_p, "balanced", "untested"))


def _histogram(x: np.ndarray, bins: int) -> dict:
    counts, edges = np.histogram(x[np.isfinite(x)], bins=bins, range=(0.0, 1.0))
    return {"edges": np.round(edges, 10).tolist(), "counts": counts.tolist()}


def call_imbalance(counts: pd.DataFrame, params: dict, peaks: pd.DataFrame | None = None,
                   cell_type_order: list[str] | None = None,
                   logger: logging.Logger = log) -> tuple[pd.DataFrame, dict]:
    """Pool, filter, test, correct and label; the core of the step and of the CLI.

    Parameters
    ----------
    counts : DataFrame
        Concatenated counts tables (columns :data:`REQUIRED`).
    params : dict
        The step's params (:data:`PARAMS` keys).
    peaks : DataFrame, optional
        ``peaks.parquet`` (peak_id, chrom, start, end, kind, cluster) for the strata.

    Returns
    -------
    table : DataFrame
        One row per tested site (columns :data:`OUT_COLUMNS`).
    summary : dict
    """
    params = {**PARAMS, **params}
    check_params(params)
    sites = pool_counts(counts, params["imbalance_pool_donors"], cell_type_order)
    cts = list(dict.fromkeys([*(cell_type_order or []), *sorted(sites["cell_type"].unique())]))
    min_total = params["imbalance_min_total"]
    logger.info("read %s count rows over %s samples; pooled to %s sites (%s) in %d cell type(s)",
                f"{len(counts):,}", counts["sample"].nunique() if len(counts) else 0, f"{len(sites):,}",
                "donors summed" if params["imbalance_pool_donors"] else "donors separate", len(cts))
    parts, per_ct = [], {}
    prog = Progress(logger, "cell types", total=len(cts))
    for ct in cts:
        t, per_ct[ct] = call_cell_type(sites[sites["cell_type"] == ct], params, ct, logger)
        parts.append(t)
        prog.update()
    prog.close()
    table = pd.concat(parts, ignore_index=True) if parts else sites.iloc[0:0].assign(
        ref_ratio=np.float64(0), pvalue=np.float64(0), qvalue=np.float64(0), label="")
    table = annotate_peaks(table, peaks, cts)
    if peaks is not None:
        for ct in cts:
            t = table[table["cell_type"] == ct]
            per_ct[ct]["by_stratum"] = _by_stratum(t)
    n_tested = int(len(table))
    if n_tested == 0:
        logger.warning("no site has REF+ALT reads > %d in any cell type: imbalance.parquet is empty; lower "
                       "imbalance_min_total or add reads/donors", min_total)
    summary = {
        "params": {k: params[k] for k in sorted(PARAMS)},
        "n_count_rows": int(len(counts)),
        "n_sites": int(len(sites)),
        "n_tested": n_tested,
        "labels": {lab: int((table["label"] == lab).sum()) for lab in LABELS},
        "cell_types": per_ct,
        "has_peaks": peaks is not None,
        "message": None if n_tested else (f"no site passed the depth filter (REF+ALT > {min_total}); "
                                          "outputs are empty"),
    }
    return table[list(OUT_COLUMNS)].reset_index(drop=True), summary


def call_cell_type(s: pd.DataFrame, params: dict, ct: str = "",
                   logger: logging.Logger = log) -> tuple[pd.DataFrame, dict]:
    """Depth filter, test, BH and labels for the pooled sites ``s`` of one cell type.

    Returns
    -------
    table : DataFrame
        The tested sites with ``ref_ratio, pvalue, qvalue, label`` added.
    info : dict
        The cell type's summary: counts, labels, estimates, histograms.
    """
    min_total = params["imbalance_min_total"]
    keep = s["total"].to_numpy() > min_total
    t = s[keep].reset_index(drop=True)
    pvalue, est = imbalance_pvalues(t["ref_count"].to_numpy(), t["total"].to_numpy(), params)
    qvalue = bh_qvalues(pvalue)
    t["ref_ratio"] = t["ref_count"] / t["total"].where(t["total"] > 0)
    t["pvalue"], t["qvalue"] = pvalue, qvalue
    t["label"] = label_sites(pvalue, qvalue, params["imbalance_fdr"], params["imbalance_balanced_min_pvalue"])
    n_label = {lab: int((t["label"] == lab).sum()) for lab in LABELS}
    logger.info("%s: %s sites, %s dropped with REF+ALT <= %d, %s tested (null REF fraction %.4f, "
                "overdispersion rho %.3g): %s", ct, f"{len(s):,}", f"{int((~keep).sum()):,}", min_total,
                f"{len(t):,}", est["null_ref_fraction"], est["overdispersion_rho"] or 0.0,
                ", ".join(f"{v:,} {k}" for k, v in n_label.items()))
    reads = s["other_count"].sum() + s["total"].sum()
    info = {"n_sites": int(len(s)), "n_dropped_low_depth": int((~keep).sum()), "n_tested": int(len(t)),
            "labels": n_label, "estimates": est,
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
    peaks = pd.read_parquet(path)
    need = ("peak_id", "chrom", "start", "end", "kind", "cluster")
    missing = [c for c in need if c not in peaks.columns]
    if missing:
        raise InputError(path, f"missing column(s) {', '.join(missing)}", f"peaks need {', '.join(need)}")
    if "cluster_label" not in peaks.columns:
        log.warning("%s has no cluster_label: no variant is in its cell type's own specific cluster", path)
        peaks = peaks.assign(cluster_label=None)
    cell_types = [c[4:] for c in peaks.columns if c.startswith("acc_")]
    peaks = peaks[[*need, "cluster_label"]].sort_values(["chrom", "start"], kind="stable").reset_index(drop=True)
    same = peaks["chrom"].to_numpy()[1:] == peaks["chrom"].to_numpy()[:-1]
    overlap = same & (peaks["start"].to_numpy()[1:] < peaks["end"].to_numpy()[:-1])
    if overlap.any():
        i = int(np.flatnonzero(overlap)[0]) + 1
        raise InputError(path, f"peak {peaks['peak_id'].iloc[i]!r} overlaps the previous peak on "
                               f"{peaks['chrom'].iloc[i]}", "peak clusters must be disjoint (merged union peaks)")
    peaks.attrs["cell_types"] = cell_types  # every cell type of the study, to read cluster labels
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
        pos_all = table["pos"].to_numpy(np.int64)
        chrom_all = table["chrom"].astype(str).to_numpy()
        for chrom, pk in peaks.groupby("chrom", sort=True):
            rows = np.flatnonzero(chrom_all == str(chrom))
            if rows.size == 0:
                continue
            starts, ends = pk["start"].to_numpy(np.int64), pk["end"].to_numpy(np.int64)
            j = np.searchsorted(starts, pos_all[rows], side="right") - 1
            inside = (j >= 0) & (pos_all[rows] < ends[np.maximum(j, 0)])
            r, jj = rows[inside], j[inside]
            for c, src in (("peak_id", "peak_id"), ("peak_kind", "kind"), ("cluster_label", "cluster_label")):
                cols[c][r] = pk[src].astype(object).to_numpy()[jj]
            cluster[r] = pk["cluster"].to_numpy(np.float64)[jj]
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
def _input_files(params: dict) -> list:
    return [params["input"]] if params.get("input") else []


def run_step(ctx: StepContext) -> dict:
    """Local engine: every sample of the samplesheet → ``imbalance.parquet``."""
    from .samplesheet import cell_types, read_samplesheet

    sheet = read_samplesheet(ctx.params["input"], check_files=False)
    frames = [read_counts(ctx.outdir / "counts" / f"{r.sample}.parquet", r.sample, r.donor, r.cell_type)
              for r in sheet.itertuples()]
    counts = pd.concat(frames, ignore_index=True)
    peaks_path = ctx.outdir / "peaks.parquet"
    peaks = read_peaks(peaks_path) if peaks_path.exists() else None
    ctx.log.info("peak strata: %s", f"{len(peaks):,} peaks from peaks.parquet" if peaks is not None
                 else "none (no peaks.parquet)")
    table, summary = call_imbalance(counts, ctx.params, peaks, cell_types(sheet), ctx.log)
    write_outputs(table, summary, ctx.out("imbalance.parquet"), ctx.out("call_imbalance.summary.json"))
    return {"n_tested": summary["n_tested"], **summary["labels"]}


STEP = Step(name="call_imbalance", run=run_step, needs=("count_alleles",), optional_needs=("cluster_peaks",),
            params=dict(PARAMS), input_files=_input_files,
            doc="pool donors, exact binomial (or beta-binomial) test, BH → imbalance.parquet")


# --------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="call_imbalance",
                                 description="Allelic imbalance per cell type from allele counts tables.")
    ap.add_argument("--counts", nargs="+", required=True, metavar="PARQUET",
                    help="counts/<sample>.parquet files (columns sample, donor, cell_type, …)")
    ap.add_argument("--peaks", help="peaks.parquet with kind/cluster, to annotate strata (optional)")
    ap.add_argument("--cell-types", nargs="+", metavar="NAME", help="cell-type order (default: sorted)")
    ap.add_argument("--out", default="imbalance.parquet")
    ap.add_argument("--summary", default="call_imbalance.summary.json")
    add_param_options(ap, PARAMS,
                      aliases={"imbalance_min_total": ["--min-total"], "imbalance_fdr": ["--fdr"],
                               "imbalance_balanced_min_pvalue": ["--balanced-min-pvalue"],
                               "imbalance_pool_donors": ["--pool-donors"], "imbalance_test": ["--test"],
                               "imbalance_null": ["--null"], "imbalance_null_ref_fraction": ["--null-ref-fraction"]},
                      choices={"imbalance_test": TESTS, "imbalance_null": NULLS},
                      helps={"imbalance_min_total": "test sites with REF+ALT strictly greater than this"})
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    params = params_from_args(args, PARAMS)
    counts = pd.concat([read_counts(p) for p in args.counts], ignore_index=True)
    peaks = read_peaks(args.peaks) if args.peaks else None
    table, summary = call_imbalance(counts, params, peaks, args.cell_types)
    write_outputs(table, summary, args.out, args.summary)
    return 0
