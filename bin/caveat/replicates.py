"""Replicate models (issue 18.1): the ensemble of a regime's replicates and the aggregation of
per-replicate metrics (shared by evaluate and report; no step imports another).

Vocabulary (:mod:`caveat.regimes`): predictions and variant scores carry ``replicate`` =
``rep<k>``; metrics.parquet adds ``ensemble`` (the mean-over-replicates model scored as its
own row) and ``median`` (the median over replicates, with ``replicate_sd``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .regimes import ENSEMBLE, MEDIAN, replicate_number

#: the keys of one metric across replicates
METRIC_KEYS = ["regime", "metric", "cell_type", "stratum", "reference"]
#: a prediction row's identity (every column of predictions.parquet but replicate and prediction)
PREDICTION_KEYS = ["regime", "kind", "peak_id", "chrom", "start", "end", "cell_type", "target"]
SCORE_KEYS = ["regime", "cell_type", "variant_id"]


def ratios(ref_pred: np.ndarray, alt_pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``pred_ref_ratio`` = REF/(REF+ALT) and ``log2_fc`` = log2(ALT/REF); same shapes as the inputs
    (predictions floored at the smallest positive float)."""
    tiny = np.finfo(np.float64).tiny
    ref_pred = np.maximum(ref_pred, tiny)
    alt_pred = np.maximum(alt_pred, tiny)
    return ref_pred / (ref_pred + alt_pred), np.log2(alt_pred) - np.log2(ref_pred)


def replicate_labels(*tables: pd.DataFrame | None) -> list[str]:
    """The ``rep<k>`` labels of the tables in replicate order; ``["rep1"]`` for tables without the column."""
    labels = set()
    for t in tables:
        if t is not None:
            labels |= set(t["replicate"].astype(str)) if "replicate" in t.columns else {"rep1"}
    return sorted(labels or {"rep1"}, key=replicate_number)


def of_replicate(table: pd.DataFrame | None, label: str) -> pd.DataFrame | None:
    """The rows of one replicate (all rows of a table without a ``replicate`` column)."""
    if table is None or "replicate" not in table.columns:
        return table
    return table[table["replicate"].astype(str) == label].reset_index(drop=True)


def ensemble_predictions(pred: pd.DataFrame) -> pd.DataFrame:
    """Mean prediction over replicates of every prediction row (rows × replicates → rows), replicate ``ensemble``.

    Parameters
    ----------
    pred : DataFrame
        predictions.parquet rows of several replicates (each replicate the same rows).
    """
    keys = [k for k in PREDICTION_KEYS if k in pred.columns]
    out = pred.groupby(keys, sort=False, dropna=False, as_index=False)["prediction"].mean()
    return out.assign(replicate=ENSEMBLE)


def ensemble_scores(scores: pd.DataFrame) -> pd.DataFrame:
    """The ensemble's variant scores: REF and ALT predictions averaged over replicates, the ratio
    and log2 fold change recomputed from them (a table without REF/ALT predictions: the mean
    ``pred_ref_ratio``). One row per (regime, cell type, variant)."""
    keys = [k for k in SCORE_KEYS if k in scores.columns]
    if {"ref_pred", "alt_pred"} <= set(scores.columns):
        out = scores.groupby(keys, sort=False, as_index=False)[["ref_pred", "alt_pred"]].mean()
        ratio, lfc = ratios(out["ref_pred"].to_numpy(np.float64), out["alt_pred"].to_numpy(np.float64))
        out = out.assign(pred_ref_ratio=ratio, log2_fc=lfc)
    else:
        cols = [c for c in ("pred_ref_ratio", "log2_fc") if c in scores.columns]
        out = scores.groupby(keys, sort=False, as_index=False)[cols].mean()
    return out.assign(replicate=ENSEMBLE)


def median_rows(per_rep: pd.DataFrame) -> pd.DataFrame:
    """The ``median`` rows of per-replicate metric rows: per (regime, metric, cell type, stratum,
    reference), the median value and n over replicates and ``replicate_sd`` (sample sd, NaN with
    one replicate); no CI, p- or q-value (those belong to the single models and the ensemble)."""
    keyed = per_rep.assign(reference=per_rep["reference"].fillna(""))
    g = keyed.groupby(METRIC_KEYS, sort=False)
    out = g.agg(value=("value", "median"), n=("n", "median"), replicate_sd=("value", lambda v: v.std(ddof=1)))
    out = out.reset_index()
    out["reference"] = out["reference"].replace("", None)
    return out.assign(replicate=MEDIAN, ci_low=np.nan, ci_high=np.nan, p_value=np.nan, q_value=np.nan,
                      n=out["n"].round().astype(np.int64))


def attach_sd(rows: pd.DataFrame, median: pd.DataFrame) -> pd.DataFrame:
    """``replicate_sd`` of the median rows copied onto ``rows`` (e.g. the ensemble's) by metric key."""
    sd = median.assign(reference=median["reference"].fillna(""))[[*METRIC_KEYS, "replicate_sd"]]
    keyed = rows.drop(columns=["replicate_sd"], errors="ignore").assign(reference=rows["reference"].fillna(""))
    out = keyed.merge(sd, on=METRIC_KEYS, how="left")
    out["reference"] = out["reference"].replace("", None)
    return out


def directions(ratio: np.ndarray) -> np.ndarray:
    """Predicted direction of a variant: +1 REF more accessible (ratio > 0.5), −1 ALT, 0 a tie; (n,) → (n,) int8.

    A missing ratio (NaN) has no direction: a ValueError, not a cast that would invent one."""
    ratio = np.asarray(ratio, np.float64)
    if not np.isfinite(ratio).all():
        raise ValueError("predicted REF ratios must be finite to have a direction")
    return np.sign(ratio - 0.5).astype(np.int8)


def direction_agreement(by_rep: np.ndarray, ensemble: np.ndarray) -> tuple[np.ndarray, float]:
    """Replicate consistency of predicted directions.

    Parameters
    ----------
    by_rep : numpy.ndarray
        (K, n) ``pred_ref_ratio`` of n variants under each of K replicates.
    ensemble : numpy.ndarray
        (n,) the ensemble's ``pred_ref_ratio``.

    Returns
    -------
    per_replicate : numpy.ndarray
        (K,) share of variants whose direction under replicate k is the ensemble's.
    all_agree : float
        Share of variants with the same direction under every replicate.
    """
    d = directions(by_rep.reshape(len(by_rep), -1))
    return (d == directions(ensemble)[None, :]).mean(1), float((d == d[:1]).all(0).mean())
