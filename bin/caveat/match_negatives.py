"""MATCH_NEGATIVES: per cell type, a balanced (negative) variant set matched to the
imbalanced (positive) set on read depth, and a peak-stratum set matched on effect size.

Depth matching (Kathail et al., Appendix B.2): the positives' log(total reads) range
is cut into ``match_bins`` equal-width bins; every bin receives ``multiplier ×`` its
positive count of balanced variants drawn at random (seeded), with the multiplier the
largest that every bin allows (the study reached 7×), optionally capped by
``match_max_ratio``. Balanced variants outside the positives' range cannot be matched
and are left out. Where a depth bin holds fewer balanced variants than positives, the
positives it cannot match even 1:1 are dropped (drawn at random, seeded), counted and
logged (``match_drop_unmatchable``, on by default): otherwise a few deeply covered
positives force the multiplier to 0 and empty the whole negative set. So the negative set has exactly the positives' binned depth
distribution, and depth alone cannot separate the two sets.

Stratum matching (the study's Fig. 4B control, when ``peaks.parquet`` gave the tested
variants a peak kind): cell-type specific peaks carry more imbalanced sites than
ubiquitous ones (Fig. S4), so, per cell type, every tested variant inside a peak is
binned by ``|ref_ratio - 0.5|`` (``stratum_match_bins`` equal-width bins on [0, 0.5])
and each bin keeps ``min(n_ubiquitous, n_specific)`` variants of each kind, drawn at
random: both strata then have the same binned imbalance distribution.

Outputs: ``variant_sets.parquet``, ``variant_sets_stratum_matched.parquet`` (empty
without peak strata), ``match_negatives.summary.json``.
"""

from __future__ import annotations

import argparse
import logging
import zlib
from pathlib import Path

import numpy as np
import pandas as pd

from .engine import Step, StepContext
from .errors import InputError
from .io import write_json, write_parquet
from .log import get_logger

log = get_logger("match_negatives")

PARAMS = {
    "match_bins": 20,          # equal-width bins of log(total reads) over the positives' range
    "match_max_ratio": 0,      # cap on negatives per positive; 0 = as many as every bin allows
    "match_drop_unmatchable": True,  # drop positives a depth bin cannot match 1:1 (fewer balanced than positives)
    "stratum_match_bins": 20,  # equal-width bins of |ref_ratio - 0.5| on [0, 0.5] for the Fig. 4B control
}
KINDS = ("ubiquitous", "specific")
CARRY = ("cell_type", "variant_id", "chrom", "pos", "ref", "alt", "donor", "total", "ref_ratio", "pvalue",
         "qvalue", "label", "peak_id", "peak_kind", "cluster")
SETS_COLUMNS = ("cell_type", "variant_id", "chrom", "pos", "ref", "alt", "donor", "set", "match_bin", "total",
                "ref_ratio", "pvalue", "qvalue", "peak_id", "peak_kind", "cluster")
STRATUM_COLUMNS = ("cell_type", "variant_id", "chrom", "pos", "ref", "alt", "donor", "peak_id", "peak_kind",
                   "cluster", "label", "total", "ref_ratio", "abs_ref_ratio_dev", "match_bin")
_TYPES = {"pos": "int64", "total": "int64", "match_bin": "int64", "cluster": "int64", "ref_ratio": "float64",
          "pvalue": "float64", "qvalue": "float64", "abs_ref_ratio_dev": "float64"}


def cell_type_rng(seed: int, cell_type: str) -> np.random.Generator:
    """A generator per (seed, cell type): a cell type's draw does not depend on the others."""
    return np.random.default_rng([int(seed), zlib.crc32(cell_type.encode())])


def bin_values(x: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Bin index of ``x`` in equal-width ``edges`` (last bin closed); -1 outside.

    Parameters
    ----------
    x : ndarray, shape (m,)
    edges : ndarray, shape (bins + 1,)
    """
    nb = edges.size - 1
    idx = np.searchsorted(edges, x, side="right") - 1
    idx[x == edges[-1]] = nb - 1
    idx[(x < edges[0]) | (x > edges[-1]) | (idx >= nb)] = -1
    return idx


def take_per_bin(bins: np.ndarray, quota: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random ``quota[b]`` members of every bin ``b``, without replacement (vectorised).

    Parameters
    ----------
    bins : ndarray of int, shape (m,)
        Bin of each candidate; -1 = not eligible.
    quota : ndarray of int, shape (n_bins,)

    Returns
    -------
    ndarray of bool, shape (m,)
        Chosen candidates.
    """
    key = rng.random(bins.size)
    order = np.lexsort((key, bins))
    sb = bins[order]
    first = np.searchsorted(sb, sb, side="left")
    rank = np.arange(sb.size) - first
    keep = np.zeros(bins.size, dtype=bool)
    ok = sb >= 0
    keep[order[ok]] = rank[ok] < quota[sb[ok]]
    return keep


def depth_edges(pos_total: np.ndarray, n_bins: int) -> np.ndarray:
    """Equal-width edges of log(total) over the positives' range (widened by ±0.5 if it is one value)."""
    lt = np.log(pos_total.astype(np.float64))
    lo, hi = float(lt.min()), float(lt.max())
    if hi - lo < 1e-12:
        lo, hi = lo - 0.5, hi + 0.5
    return np.linspace(lo, hi, n_bins + 1)


def match_depth(pos_total: np.ndarray, neg_total: np.ndarray, n_bins: int, max_ratio: int,
                rng: np.random.Generator, drop_unmatchable: bool = False) -> dict:
    """Choose balanced variants matched to the positives on binned log(total).

    Parameters
    ----------
    pos_total : ndarray of int, shape (p,)
    neg_total : ndarray of int, shape (c,)
        Totals of the positives and of the balanced candidates.
    n_bins : int
    max_ratio : int
        Cap on the multiplier (0 = none).
    drop_unmatchable : bool
        In bins with fewer balanced variants than positives, keep only as many positives
        (at random) as there are balanced variants.

    Returns
    -------
    dict
        ``chosen`` (bool, shape (c,)), ``pos_kept`` (bool, shape (p,)), ``pos_bin`` (p,), ``neg_bin`` (c,), ``multiplier``,
        ``max_multiplier`` (uncapped), ``limiting_bin``, ``edges`` (log scale), and per-bin
        ``n_positive``, ``n_balanced``, ``n_negative``.
    """
    if pos_total.size == 0:
        return {"chosen": np.zeros(neg_total.size, bool), "pos_kept": np.zeros(0, bool), "pos_bin": np.zeros(0, np.int64),
                "neg_bin": np.full(neg_total.size, -1), "multiplier": 0, "max_multiplier": 0,
                "limiting_bin": None, "edges": [], "n_positive": [], "n_balanced": [], "n_negative": []}
    edges = depth_edges(pos_total, n_bins)
    pos_bin = bin_values(np.log(pos_total.astype(np.float64)), edges)
    neg_bin = bin_values(np.log(neg_total.astype(np.float64)), edges) if neg_total.size else np.zeros(0, np.int64)
    n_pos = np.bincount(pos_bin, minlength=n_bins)
    n_bal = np.bincount(neg_bin[neg_bin >= 0], minlength=n_bins)
    pos_kept = np.ones(pos_total.size, dtype=bool)
    if drop_unmatchable and (n_bal > 0).any():
        pos_kept = take_per_bin(pos_bin, np.minimum(n_pos, n_bal), rng)
        n_pos = np.minimum(n_pos, n_bal)
    used = n_pos > 0
    ratios = n_bal[used] // n_pos[used]
    max_mult = int(ratios.min())
    limiting = int(np.flatnonzero(used)[np.argmin(ratios)])
    mult = min(max_mult, max_ratio) if max_ratio and max_ratio > 0 else max_mult
    chosen = take_per_bin(neg_bin, mult * n_pos, rng)
    return {"chosen": chosen, "pos_kept": pos_kept, "pos_bin": pos_bin, "neg_bin": neg_bin, "multiplier": int(mult),
            "max_multiplier": max_mult, "limiting_bin": limiting, "edges": edges.tolist(),
            "n_positive": n_pos.tolist(), "n_balanced": n_bal.tolist(),
            "n_negative": np.bincount(neg_bin[chosen], minlength=n_bins).tolist()}


def match_strata(dev: np.ndarray, kind: np.ndarray, n_bins: int, rng: np.random.Generator) -> dict:
    """Equalise the binned ``|ref_ratio - 0.5|`` distributions of ubiquitous and specific peaks.

    Parameters
    ----------
    dev : ndarray, shape (m,)
        ``|ref_ratio - 0.5|`` of the tested variants inside peaks.
    kind : ndarray of str, shape (m,)
        Their peak kind (``ubiquitous`` / ``specific``).

    Returns
    -------
    dict
        ``chosen`` (bool, shape (m,)), ``bin`` (m,), per-bin counts per kind before and after.
    """
    edges = np.linspace(0.0, 0.5, n_bins + 1)
    b = bin_values(dev, edges)
    counts = {k: np.bincount(b[(kind == k) & (b >= 0)], minlength=n_bins) for k in KINDS}
    quota = np.minimum(counts["ubiquitous"], counts["specific"])
    chosen = np.zeros(dev.size, dtype=bool)
    for k in KINDS:
        sel = np.flatnonzero(kind == k)
        chosen[sel] = take_per_bin(b[sel], quota, rng)
    return {"chosen": chosen, "bin": b, "edges": edges.tolist(),
            "before": {k: v.tolist() for k, v in counts.items()}, "per_kind_after": quota.tolist()}


# --------------------------------------------------------------------------- whole table
def match_negatives(imbalance: pd.DataFrame, params: dict, seed: int,
                    logger: logging.Logger = log) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Depth-matched sets and stratum-matched sets for every cell type of ``imbalance``.

    Returns
    -------
    sets : DataFrame (:data:`SETS_COLUMNS`)
    strata : DataFrame (:data:`STRATUM_COLUMNS`)
    summary : dict
    """
    params = {**PARAMS, **params}
    if params["match_bins"] < 1 or params["stratum_match_bins"] < 1:
        raise InputError("match_bins", "bin counts must be >= 1", "use e.g. 20")
    if params["match_max_ratio"] is not None and params["match_max_ratio"] < 0:
        raise InputError("match_max_ratio", "must be >= 0 (0 = no cap)", "use 0 or a positive integer")
    cap = params["match_max_ratio"] or 0
    sets, strata, per_ct = [], [], {}
    has_kinds = imbalance["peak_kind"].notna().any() if len(imbalance) else False
    for ct in dict.fromkeys(imbalance["cell_type"]):
        t = imbalance[imbalance["cell_type"] == ct].reset_index(drop=True)
        pos = t[t["label"] == "imbalanced"]
        bal = t[t["label"] == "balanced"]
        m = match_depth(pos["total"].to_numpy(), bal["total"].to_numpy(), params["match_bins"], cap,
                        cell_type_rng(seed, ct), drop_unmatchable=params["match_drop_unmatchable"])
        n_unmatchable = int((~m["pos_kept"]).sum())
        if n_unmatchable:
            logger.info("%s: %d positive(s) dropped: their depth bin holds fewer balanced variants than positives",
                        ct, n_unmatchable)
        pos, pos_bin = pos[m["pos_kept"]], m["pos_bin"][m["pos_kept"]]
        neg = bal[m["chosen"]]
        sets.append(pd.concat([pos.assign(set="positive", match_bin=pos_bin),
                               neg.assign(set="negative", match_bin=m["neg_bin"][m["chosen"]])],
                              ignore_index=True))
        _log_depth(logger, ct, len(pos), len(bal), len(neg), m, cap)
        per_ct[ct] = {"n_positive": int(len(pos)), "n_positive_unmatchable": n_unmatchable,
                      "n_balanced": int(len(bal)), "n_negative": int(len(neg)),
                      "n_balanced_outside_range": int((m["neg_bin"] < 0).sum()),
                      **{k: m[k] for k in ("multiplier", "max_multiplier", "limiting_bin")},
                      "bins": {k: m[k] for k in ("edges", "n_positive", "n_balanced", "n_negative")}}
        if has_kinds:
            s, info = _strata(t, params["stratum_match_bins"], cell_type_rng(seed + 1, ct))
            strata.append(s)
            per_ct[ct]["stratum_matched"] = info
            logger.info("%s: stratum matching on |ref_ratio - 0.5|: ubiquitous %d → %d, specific %d → %d",
                        ct, info["n_before"]["ubiquitous"], info["n_after"], info["n_before"]["specific"],
                        info["n_after"])
    if not has_kinds:
        logger.info("no peak strata in imbalance.parquet (cluster_peaks not run): stratum-matched table is empty")
    sets_df = _typed(pd.concat(sets, ignore_index=True) if sets else None, SETS_COLUMNS)
    strata_df = _typed(pd.concat(strata, ignore_index=True) if strata else None, STRATUM_COLUMNS)
    summary = {"params": {k: params[k] for k in sorted(PARAMS)}, "seed": int(seed),
               "n_positive": int((sets_df["set"] == "positive").sum()),
               "n_negative": int((sets_df["set"] == "negative").sum()),
               "multiplier": {ct: v["multiplier"] for ct, v in per_ct.items()},
               "has_peak_strata": bool(has_kinds), "cell_types": per_ct,
               "message": None if len(imbalance) else "imbalance.parquet is empty: no sets to match"}
    return sets_df, strata_df, summary


def _log_depth(logger, ct, n_pos, n_bal, n_neg, m, cap):
    if n_pos == 0:
        logger.warning("%s: no imbalanced variants: no positive or negative set", ct)
        return
    b = m["limiting_bin"]
    logger.info("%s: %d positives, %d balanced (%d outside the positives' depth range, dropped) → %d negatives "
                "= %d× (largest every bin allows: %d×, set by bin %d with %d positives and %d balanced%s)",
                ct, n_pos, n_bal, int((m["neg_bin"] < 0).sum()), n_neg, m["multiplier"], m["max_multiplier"], b,
                m["n_positive"][b], m["n_balanced"][b], f"; capped at {cap}×" if cap else "")
    if m["multiplier"] == 0:
        logger.warning("%s: depth bin %d has fewer balanced variants than positives: the negative set is empty; "
                       "use fewer match_bins or more data", ct, b)


def _strata(t: pd.DataFrame, n_bins: int, rng) -> tuple[pd.DataFrame, dict]:
    inside = t[t["peak_kind"].isin(KINDS)].reset_index(drop=True)
    dev = np.abs(inside["ref_ratio"].to_numpy(np.float64) - 0.5)
    r = match_strata(dev, inside["peak_kind"].astype(str).to_numpy(), n_bins, rng)
    out = inside.assign(abs_ref_ratio_dev=dev, match_bin=r["bin"])[r["chosen"]]
    info = {"n_before": {k: int((inside["peak_kind"] == k).sum()) for k in KINDS},
            "n_after": int(sum(r["per_kind_after"])), "edges": r["edges"], "before": r["before"],
            "after_per_kind": r["per_kind_after"]}
    return out, info


def _typed(df: pd.DataFrame | None, columns) -> pd.DataFrame:
    if df is None:
        df = pd.DataFrame({c: pd.Series(dtype=object) for c in columns})
    df = df[list(columns)].copy()
    for c in columns:
        if c == "cluster":
            df[c] = pd.to_numeric(df[c]).astype("Int64")
        elif c in _TYPES:
            df[c] = df[c].astype(_TYPES[c])
        else:
            df[c] = df[c].astype(object).where(df[c].notna(), None)
    return df.reset_index(drop=True)


def _to_arrow(df: pd.DataFrame):
    """Arrow table with an explicit schema, so that empty outputs keep their column types."""
    import pyarrow as pa

    fields = [(c, pa.int64() if _TYPES.get(c) == "int64" else pa.float64() if c in _TYPES else pa.string())
              for c in df.columns]
    return pa.Table.from_pandas(df, schema=pa.schema(fields), preserve_index=False)


def write_outputs(sets, strata, summary, out, stratum_out, summary_path) -> None:
    write_parquet(_to_arrow(sets), out)
    write_parquet(_to_arrow(strata), stratum_out)
    write_json(summary, summary_path)


def read_imbalance(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    if not path.exists():
        raise InputError(path, "imbalance table not found", "run call_imbalance first")
    df = pd.read_parquet(path)
    missing = [c for c in CARRY if c not in df.columns]
    if missing:
        raise InputError(path, f"missing column(s) {', '.join(missing)}", "regenerate it with call_imbalance")
    return df


# --------------------------------------------------------------------------- engine
def run_step(ctx: StepContext) -> dict:
    """Local engine: ``imbalance.parquet`` → ``variant_sets.parquet`` (+ stratum-matched table)."""
    imb = read_imbalance(ctx.outdir / "imbalance.parquet")
    ctx.log.info("read %d tested sites from imbalance.parquet", len(imb))
    sets, strata, summary = match_negatives(imb, ctx.params, ctx.params.get("seed", 0), ctx.log)
    write_outputs(sets, strata, summary, ctx.out("variant_sets.parquet"),
                  ctx.out("variant_sets_stratum_matched.parquet"), ctx.out("match_negatives.summary.json"))
    return {"n_positive": summary["n_positive"], "n_negative": summary["n_negative"],
            **{f"multiplier_{ct}": v for ct, v in summary["multiplier"].items()}}


# the seed is a common param; declaring it here puts it in the resume fingerprint
STEP = Step(name="match_negatives", run=run_step, needs=("call_imbalance",), params={**PARAMS, "seed": 0},
            doc="balanced variants matched to the imbalanced ones on log depth → variant_sets.parquet")


# --------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="match_negatives",
                                 description="Depth-matched negative sets (and peak-stratum matched sets).")
    ap.add_argument("--imbalance", required=True, help="imbalance.parquet from call_imbalance")
    ap.add_argument("--out", default="variant_sets.parquet")
    ap.add_argument("--stratum-out", default="variant_sets_stratum_matched.parquet")
    ap.add_argument("--summary", default="match_negatives.summary.json")
    ap.add_argument("--bins", type=int, default=PARAMS["match_bins"])
    ap.add_argument("--max-ratio", type=int, default=PARAMS["match_max_ratio"], help="0 = no cap")
    ap.add_argument("--stratum-bins", type=int, default=PARAMS["stratum_match_bins"])
    ap.add_argument("--seed", type=int, default=0)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    params = {"match_bins": args.bins, "match_max_ratio": args.max_ratio, "stratum_match_bins": args.stratum_bins}
    sets, strata, summary = match_negatives(read_imbalance(args.imbalance), params, args.seed)
    write_outputs(sets, strata, summary, args.out, args.stratum_out, args.summary)
    return 0
