"""evaluate: reference accuracy, over-correlation and variant-effect accuracy per regime.

Reads the pipeline's (or a user's) reference predictions and variant scores
and writes one long table, ``metrics.parquet``: regime, metric, cell_type,
stratum, value, ci_low, ci_high, n, p_value, reference.

Metrics (strata: ``all``, ``ubiquitous``, ``specific`` and the matched controls)
- ``pearson_window``: Pearson R of target vs prediction over every test window
  (raw centre-bin counts, as the training's ``valid_pearson``); Fisher-z CI.
- ``pearson_peak``: Pearson R on log2(x+1) of peak values on test chromosomes,
  per peak cluster kind; ``*_height_matched`` strata resample ubiquitous peaks
  without replacement to the specific peaks' histogram of log2 target
  (``evaluate_height_bin`` = 0.5 wide bins; both sides keep min count per bin).
- ``replicate_pearson`` (regime ``replicate``): mean Pearson R between donors'
  log2(CPM+1) peak counts (one donor vs another), and ``replicate_ceiling``:
  sqrt of the Spearman-Brown reliability of the k-donor pool, the highest R
  any model can expect against the pooled target (the upper bound).
- ``overcorrelation`` (cell_type ``A|B``): R(pred_A, pred_B) − R(target_A, target_B)
  over peaks (log2(x+1)), per kind, with ``pred_cross_pearson`` and
  ``target_cross_pearson``; bootstrap CI over peaks.
- ``imbalance_auroc`` / ``imbalance_auprc``: imbalanced (positive) vs matched
  negatives, score |pred_ref_ratio − 0.5|; DeLong CI (bootstrap for AUPRC).
- ``direction_auroc``: within imbalanced variants, score pred_ref_ratio, label
  observed ref_ratio > 0.5 (ref_ratio == 0.5 dropped).
- ``direction_auroc_tested``: the same over every scored variant with a
  ref_ratio ≠ 0.5 (positives and negatives, all read count > the imbalance
  threshold), the study's per-stratum task; ``*_imbalance_matched`` strata
  match |ref_ratio − 0.5| histograms between ubiquitous and specific variants.
- ``direction_auroc_strata``: direction AUROC per kind on match_negatives'
  ``variant_sets_stratum_matched.parquet`` (tested variants in peaks, matched on
  |ref_ratio − 0.5| between kinds), for the variants that have a score.
- ``delong_<metric>``: paired DeLong test between two regimes on the variants
  both scored (value = AUROC(regime) − AUROC(reference), CI of the difference,
  ``p_value``).
"""

from __future__ import annotations

import argparse
import itertools
import zlib
from pathlib import Path

import numpy as np
import pandas as pd

from . import __version__
from . import metrics as M
from .engine import Step, StepContext
from .errors import InputError
from .io import read_parquet, write_json, write_parquet
from .log import Progress, get_logger

log = get_logger("evaluate")

PARAMS = {
    "evaluate_height_bin": 0.5,      # width of log2(target+1) bins for the height-matched comparison
    "evaluate_imbalance_bin": 0.05,  # width of |ref_ratio - 0.5| bins for the imbalance-matched control
    "evaluate_bootstrap": 200,       # bootstrap replicates for AUPRC and over-correlation CIs
    "evaluate_ci_level": 0.95,
}
REGIME_ORDER = ("single_task", "multitask", "multitask_peaks", "multitask_nonubiquitous")
KINDS = ("ubiquitous", "specific")
COLUMNS = ["regime", "metric", "cell_type", "stratum", "value", "ci_low", "ci_high", "n", "p_value", "reference"]
AUROC_METRICS = ("imbalance_auroc", "direction_auroc", "direction_auroc_tested")

PRED_COLS = ("regime", "kind", "chrom", "start", "end", "cell_type", "target", "prediction")
SET_COLS = ("cell_type", "variant_id", "set")


# ---------------------------------------------------------------- reading and checks


def require_columns(df: pd.DataFrame, cols, path, what: str) -> None:
    """Raise InputError naming the missing columns of ``path``."""
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise InputError(path, f"{what} lacks column(s) {', '.join(missing)} (has: {', '.join(map(str, df.columns))})",
                         f"provide a table with columns {', '.join(cols)}")


def read_table(path, cols, what: str) -> pd.DataFrame:
    path = Path(path)
    if not path.exists():
        raise InputError(path, f"{what} not found", "run the upstream step or pass an existing file")
    try:
        df = read_parquet(path)
    except Exception as e:  # pyarrow raises many types for a non-Parquet file
        raise InputError(path, f"{what} is not a readable Parquet file ({type(e).__name__}: {e})",
                         "pass the Parquet file written by the upstream step") from None
    require_columns(df, cols, path, what)
    log.info("read %s: %s rows from %s", what, f"{len(df):,}", path.name)
    return df


def check_predictions(pred: pd.DataFrame, path) -> pd.DataFrame:
    """Kinds must be window/peak, targets and predictions finite numbers."""
    bad_kind = ~pred["kind"].isin(["window", "peak"])
    if bad_kind.any():
        raise InputError(path, f"kind must be 'window' or 'peak'; found {pred.loc[bad_kind, 'kind'].iloc[0]!r}",
                         "label each row as a test window or a peak")
    for c in ("target", "prediction"):
        try:
            x = pred[c].to_numpy(np.float64)
        except (TypeError, ValueError):
            raise InputError(path, f"column {c} is not numeric", f"store {c} as float") from None
        bad = ~np.isfinite(x)
        if bad.any():
            r = pred.loc[bad].iloc[0]
            raise InputError(path, f"{bad.sum()} non-finite {c} value(s), e.g. {r['regime']} {r['cell_type']} "
                                   f"{r['chrom']}:{r['start']}-{r['end']}", f"rerun predict; {c} must be finite")
    return pred


def normalise_scores(scores: pd.DataFrame, path) -> pd.DataFrame:
    """Scores with regime, cell_type, variant_id, pred_ref_ratio (a user's table may
    give ref_pred/alt_pred instead of the ratio, and may lack regime/cell_type)."""
    s = scores.copy()
    if "pred_ref_ratio" not in s.columns:
        if {"ref_pred", "alt_pred"} <= set(s.columns):
            ref = s["ref_pred"].to_numpy(np.float64)
            alt = s["alt_pred"].to_numpy(np.float64)
            with np.errstate(invalid="ignore", divide="ignore"):
                s["pred_ref_ratio"] = ref / (ref + alt)
        else:
            raise InputError(path, "variant scores need column pred_ref_ratio (or both ref_pred and alt_pred)",
                             "add pred_ref_ratio = REF/(REF+ALT) of the predicted centre bin per variant")
    require_columns(s, ["variant_id"], path, "variant scores")
    if "regime" not in s.columns:
        s["regime"] = "user"
    s["regime"] = s["regime"].astype(str)
    bad = ~np.isfinite(s["pred_ref_ratio"].to_numpy(np.float64))
    if bad.any():
        row = s.loc[bad].iloc[0]
        raise InputError(path, f"{bad.sum()} non-finite pred_ref_ratio value(s), e.g. variant {row['variant_id']}",
                         "scores must be finite: REF and ALT predictions positive")
    return s


def attach_variant_info(sets: pd.DataFrame, imbalance: pd.DataFrame | None, path) -> pd.DataFrame:
    """Variant sets with ref_ratio and peak_kind (from imbalance.parquet when the sets lack them)."""
    s = sets.copy()
    bad_set = ~s["set"].isin(["positive", "negative"])
    if bad_set.any():
        raise InputError(path, f"set must be 'positive' or 'negative'; found {s.loc[bad_set, 'set'].iloc[0]!r} "
                         f"(variant {s.loc[bad_set, 'variant_id'].iloc[0]})", "relabel the sets")
    if imbalance is not None:
        extra = [c for c in ("ref_ratio", "peak_kind") if c not in s.columns and c in imbalance.columns]
        if extra:
            s = s.merge(imbalance[["cell_type", "variant_id", *extra]].drop_duplicates(["cell_type", "variant_id"]),
                        on=["cell_type", "variant_id"], how="left")
    for c in ("ref_ratio", "peak_kind"):
        if c not in s.columns:
            log.info("variant sets have no %s: %s", c,
                     "direction AUROCs skipped" if c == "ref_ratio" else "no per-stratum variant metrics")
    return s


def regime_order(regimes) -> list[str]:
    regimes = list(dict.fromkeys(map(str, regimes)))
    known = [r for r in REGIME_ORDER if r in regimes]
    return known + sorted(r for r in regimes if r not in REGIME_ORDER)


def _seed(seed: int, *keys: str) -> int:
    """A stable per-(cell type, task) seed so matched subsets are identical across regimes."""
    return (int(seed) * 1_000_003 + zlib.crc32("|".join(keys).encode())) % (2**32)


def _row(regime, metric, cell_type, stratum, value, ci=(np.nan, np.nan), n=0, p_value=np.nan, reference=None):
    return dict(regime=regime, metric=metric, cell_type=cell_type, stratum=stratum, value=float(value),
                ci_low=float(ci[0]), ci_high=float(ci[1]), n=int(n), p_value=float(p_value), reference=reference)


# ---------------------------------------------------------------- reference accuracy


def attach_peak_kind(pred: pd.DataFrame, peaks: pd.DataFrame | None) -> pd.DataFrame:
    """Peak-level predictions with a ``peak_kind`` column (from peaks.parquet's ``kind``)."""
    pk = pred[pred["kind"] == "peak"].copy()
    if "peak_kind" in pk.columns:
        return pk
    if peaks is not None and "peak_id" in pk.columns:
        kinds = peaks[["peak_id", "kind"]].drop_duplicates("peak_id").rename(columns={"kind": "peak_kind"})
        pk = pk.merge(kinds, on="peak_id", how="left")
        unknown = pk.loc[pk["peak_kind"].isna(), "peak_id"].nunique()
        if unknown:
            log.warning("%d predicted peak(s) are not in peaks.parquet: counted in stratum 'all' only", unknown)
    else:
        log.info("no peak cluster kinds (peaks.parquet absent): reference accuracy for all peaks only")
        pk["peak_kind"] = None
    return pk


def window_accuracy(pred: pd.DataFrame, level: float) -> list[dict]:
    """``pearson_window`` per regime × cell type on raw centre-bin values."""
    rows = []
    win = pred[pred["kind"] == "window"]
    for (regime, ct), g in win.groupby(["regime", "cell_type"], sort=False):
        r = M.pearson(g["target"], g["prediction"])
        rows.append(_row(regime, "pearson_window", ct, "all", r, M.pearson_ci(r, len(g), level), len(g)))
    return rows


def peak_accuracy(peak_pred: pd.DataFrame, height_bin: float, seed: int, level: float) -> list[dict]:
    """``pearson_peak`` per regime × cell type × stratum (log2(x+1)), with height matching."""
    rows = []
    for (regime, ct), g in peak_pred.groupby(["regime", "cell_type"], sort=False):
        g = g.sort_values("peak_id") if "peak_id" in g.columns else g
        t, p = M.log2p1(g["target"]), M.log2p1(g["prediction"])
        kind = g["peak_kind"].to_numpy()
        strata = {"all": np.ones(len(g), bool), **{k: kind == k for k in KINDS}}
        u, s = np.flatnonzero(kind == "ubiquitous"), np.flatnonzero(kind == "specific")
        if u.size and s.size:
            iu, is_ = M.match_histograms(t[u], t[s], height_bin, seed=_seed(seed, "height", ct), lo=0.0)
            strata["ubiquitous_height_matched"] = np.isin(np.arange(len(g)), u[iu])
            strata["specific_height_matched"] = np.isin(np.arange(len(g)), s[is_])
        for name, mask in strata.items():
            if mask.sum() == 0:
                continue
            r = M.pearson(t[mask], p[mask])
            rows.append(_row(regime, "pearson_peak", ct, name, r, M.pearson_ci(r, int(mask.sum()), level),
                             mask.sum()))
    return rows


def replicate_accuracy(donor_counts: pd.DataFrame, peak_kind: pd.Series, level: float) -> list[dict]:
    """``replicate_pearson``: mean inter-donor Pearson R of log2(CPM+1) peak counts.

    Parameters
    ----------
    donor_counts : long table peak_id, donor, cell_type, count
    peak_kind : Series peak_id → kind, the evaluated (test-chromosome) peaks
    """
    rows = []
    dc = donor_counts[donor_counts["peak_id"].isin(peak_kind.index)]
    for ct, g in dc.groupby("cell_type", sort=False):
        mat = g.pivot_table(index="peak_id", columns="donor", values="count", aggfunc="sum", fill_value=0)
        if mat.shape[1] < 2:
            log.info("replicate bound for %s skipped: %d donor(s)", ct, mat.shape[1])
            continue
        lib = mat.sum(axis=0).to_numpy(np.float64)
        logcpm = M.log2p1(mat.to_numpy(np.float64) / np.where(lib > 0, lib, 1) * 1e6)
        kinds = peak_kind.reindex(mat.index).to_numpy()
        pairs = list(itertools.combinations(range(mat.shape[1]), 2))
        for name in ("all", *KINDS):
            mask = np.ones(len(mat), bool) if name == "all" else kinds == name
            if mask.sum() < 3:
                continue
            r = float(np.nanmean([M.pearson(logcpm[mask, i], logcpm[mask, j]) for i, j in pairs]))
            n = int(mask.sum())
            rows.append(_row("replicate", "replicate_pearson", ct, name, r, M.pearson_ci(r, n, level), n))
            ceiling = [M.replicate_ceiling(x, mat.shape[1]) for x in (r, *M.pearson_ci(r, n, level))]
            rows.append(_row("replicate", "replicate_ceiling", ct, name, ceiling[0], ceiling[1:], n))
    return rows


def _boot_diff(a, b, c, d, n_boot, seed):
    """Bootstrap over rows of R(a, b) − R(c, d) (1-D arrays of length n) → (n_boot,)."""
    w = M.bootstrap_weights(len(a), n_boot, seed)
    return M.weighted_pearson(w, a, b) - M.weighted_pearson(w, c, d)


def overcorrelation(peak_pred: pd.DataFrame, n_boot: int, seed: int, level: float) -> list[dict]:
    """Cross-cell-type correlation of predictions minus that of targets, per regime × pair × kind."""
    rows = []
    for regime, g in peak_pred.groupby("regime", sort=False):
        cts = list(dict.fromkeys(g["cell_type"]))
        tgt = g.pivot_table(index="peak_id", columns="cell_type", values="target", aggfunc="first")
        prd = g.pivot_table(index="peak_id", columns="cell_type", values="prediction", aggfunc="first")
        kind = g.drop_duplicates("peak_id").set_index("peak_id")["peak_kind"].reindex(tgt.index).to_numpy()
        tgt, prd = M.log2p1(tgt[cts].to_numpy()), M.log2p1(prd[cts].to_numpy())
        for (i, a), (j, b) in itertools.combinations(enumerate(cts), 2):
            pair = f"{a}|{b}"
            for name in ("all", *KINDS):
                mask = np.ones(len(kind), bool) if name == "all" else kind == name
                mask &= np.isfinite(tgt[:, i]) & np.isfinite(tgt[:, j])
                if mask.sum() < 3:
                    continue
                rp = M.pearson(prd[mask, i], prd[mask, j])
                rt = M.pearson(tgt[mask, i], tgt[mask, j])
                n = int(mask.sum())
                boot = _boot_diff(prd[mask, i], prd[mask, j], tgt[mask, i], tgt[mask, j], n_boot,
                                  _seed(seed, "overcorr", regime, pair, name))
                rows += [_row(regime, "overcorrelation", pair, name, rp - rt, M.percentile_ci(boot, level), n),
                         _row(regime, "pred_cross_pearson", pair, name, rp, M.pearson_ci(rp, n, level), n),
                         _row(regime, "target_cross_pearson", pair, name, rt, M.pearson_ci(rt, n, level), n)]
    return rows


# ---------------------------------------------------------------- variant-effect accuracy


def variant_table(scores: pd.DataFrame, sets: pd.DataFrame) -> pd.DataFrame:
    """Scores joined to their variant sets: one row per regime × cell type × variant."""
    keys = ["cell_type", "variant_id"] if "cell_type" in scores.columns else ["variant_id"]
    cols = [c for c in ("cell_type", "variant_id", "set", "ref_ratio", "peak_kind") if c in sets.columns]
    v = scores[["regime", *keys, "pred_ref_ratio"]].merge(sets[cols], on=keys, how="inner")
    n_sets = len(sets)
    scored = v.drop_duplicates(["cell_type", "variant_id"]).shape[0]
    if scored < n_sets:
        log.info("variant sets: %d of %d (cell type, variant) pairs have no score in any regime (dropped)",
                 n_sets - scored, n_sets)
    if v.empty:
        log.warning("no scored variant is in the variant sets: check that variant_id (chrom:pos1:ref:alt) and "
                    "cell_type spell the same in both tables; variant metrics skipped")
    log.info("variant table: %s scored rows over %d regime(s)", f"{len(v):,}", v["regime"].nunique())
    return v


def _direction_masks(g: pd.DataFrame, imb_bin: float, seed: int, ct: str, task: str) -> dict[str, np.ndarray]:
    """Strata (with the imbalance-matched controls) for a direction task on rows ``g``."""
    n = len(g)
    masks = {"all": np.ones(n, bool)}
    if "peak_kind" not in g.columns:
        return masks
    kind = g["peak_kind"].to_numpy()
    for k in KINDS:
        masks[k] = kind == k
    u, s = np.flatnonzero(kind == "ubiquitous"), np.flatnonzero(kind == "specific")
    if u.size and s.size:
        imb = np.abs(g["ref_ratio"].to_numpy(np.float64) - 0.5)
        iu, is_ = M.match_histograms(imb[u], imb[s], imb_bin, seed=_seed(seed, "imbalance", ct, task), lo=0.0)
        masks["ubiquitous_imbalance_matched"] = np.isin(np.arange(n), u[iu])
        masks["specific_imbalance_matched"] = np.isin(np.arange(n), s[is_])
    return masks


def _auc_rows(regime, metric, ct, stratum, y, score, level) -> list[dict]:
    res = M.delong_auc(y, score)
    if not np.isfinite(res.auc):
        return []
    return [_row(regime, metric, ct, stratum, res.auc, res.ci(level), res.n_pos + res.n_neg)]


def _auprc_row(regime, metric, ct, stratum, y, score, n_boot, seed, level) -> list[dict]:
    if y.sum() == 0 or (~y).sum() == 0:
        return []
    ap = M.average_precision(y, score)
    boot = M.bootstrap_average_precision(y, score, n_boot=n_boot, seed=seed)
    return [_row(regime, metric, ct, stratum, ap, M.percentile_ci(boot, level), len(y))]


def task_rows(task: str, g: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """Labels, scores and rows of one variant task on one regime × cell type's table."""
    if task == "imbalance":
        y = (g["set"] == "positive").to_numpy()
        return y, np.abs(g["pred_ref_ratio"].to_numpy(np.float64) - 0.5), g
    rr = g["ref_ratio"].to_numpy(np.float64)
    keep = np.isfinite(rr) & (rr != 0.5)
    if task == "direction":
        keep &= (g["set"] == "positive").to_numpy()
    sub = g[keep]
    return (sub["ref_ratio"].to_numpy(np.float64) > 0.5), sub["pred_ref_ratio"].to_numpy(np.float64), sub


def _task_strata(task: str, sub: pd.DataFrame, imb_bin: float, seed: int, ct: str) -> tuple[str, dict]:
    """The AUROC metric name of ``task`` and its strata masks (bool arrays over ``sub``'s rows)."""
    metric = "direction_auroc_tested" if task == "direction_tested" else f"{task}_auroc"
    if task != "imbalance":
        return metric, _direction_masks(sub, imb_bin, seed, ct, task)
    masks = {"all": np.ones(len(sub), bool)}
    if "peak_kind" in sub.columns:
        masks.update({k: (sub["peak_kind"] == k).to_numpy() for k in KINDS})
    return metric, masks


def variant_accuracy(v: pd.DataFrame, imb_bin: float, n_boot: int, seed: int, level: float) -> list[dict]:
    """AUROC/AUPRC of both variant tasks per regime × cell type × stratum."""
    rows = []
    tasks = ["imbalance"] + (["direction", "direction_tested"] if "ref_ratio" in v.columns else [])
    groups = list(v.groupby(["regime", "cell_type"], sort=False))
    prog = Progress(log, "regime×cell type", total=len(groups), label="variant metrics")
    for (regime, ct), g in groups:
        g = g.sort_values("variant_id")
        for task in tasks:
            y, score, sub = task_rows(task, g)
            metric, masks = _task_strata(task, sub, imb_bin, seed, ct)
            for name, m in masks.items():
                rows += _auc_rows(regime, metric, ct, name, y[m], score[m], level)
                if task != "direction_tested":
                    rows += _auprc_row(regime, metric.replace("auroc", "auprc"), ct, name, y[m], score[m], n_boot,
                                       _seed(seed, "auprc", regime, ct, task, name), level)
        prog.update()
    prog.close()
    return rows


def stratum_matched_accuracy(scores: pd.DataFrame, strata_sets: pd.DataFrame, level: float) -> list[dict]:
    """``direction_auroc_strata``: direction AUROC on match_negatives' stratum-matched table.

    That table holds every tested variant inside a peak, subsampled so that
    ubiquitous and specific variants have the same |ref_ratio − 0.5| histogram
    (the study's Fig. 4B set); only variants with a score count.
    """
    keys = ["cell_type", "variant_id"] if "cell_type" in scores.columns else ["variant_id"]
    t = strata_sets[["cell_type", "variant_id", "ref_ratio", "peak_kind"]]
    v = scores[["regime", *keys, "pred_ref_ratio"]].merge(t, on=keys, how="inner")
    n_scored = v.drop_duplicates(["cell_type", "variant_id"]).shape[0]
    if n_scored < len(t):
        log.info("stratum-matched table: %d of %d variants have no score (dropped); score_variants scores "
                 "the variant sets' variants", len(t) - n_scored, len(t))
    rows = []
    for (regime, ct), g in v.groupby(["regime", "cell_type"], sort=False):
        g = g.sort_values("variant_id")
        rr = g["ref_ratio"].to_numpy(np.float64)
        keep = np.isfinite(rr) & (rr != 0.5)
        for k in KINDS:
            m = keep & (g["peak_kind"] == k).to_numpy()
            rows += _auc_rows(regime, "direction_auroc_strata", ct, k, rr[m] > 0.5,
                              g["pred_ref_ratio"].to_numpy(np.float64)[m], level)
    return rows


def regime_tests(v: pd.DataFrame, imb_bin: float, seed: int, level: float) -> list[dict]:
    """Paired DeLong tests between every two regimes, per cell type, task and stratum."""
    rows = []
    regimes = regime_order(v["regime"].unique())
    tasks = ["imbalance"] + (["direction", "direction_tested"] if "ref_ratio" in v.columns else [])
    for ct, gct in v.groupby("cell_type", sort=False):
        wide = gct.pivot_table(index="variant_id", columns="regime", values="pred_ref_ratio", aggfunc="first")
        info = gct.drop_duplicates("variant_id").set_index("variant_id").reindex(wide.index).reset_index()
        for a, b in itertools.combinations([r for r in regimes if r in wide.columns], 2):
            both = wide[[a, b]].notna().all(axis=1).to_numpy()
            for task in tasks:
                g = info[both].assign(pred_ref_ratio=wide[a].to_numpy()[both])
                y, sa, sub = task_rows(task, g)
                _, sb, _ = task_rows(task, g.assign(pred_ref_ratio=wide[b].to_numpy()[both]))
                metric, masks = _task_strata(task, sub, imb_bin, seed, ct)
                for name, m in masks.items():
                    if y[m].all() or not y[m].any():
                        continue
                    t = M.delong_paired(y[m], sa[m], sb[m])
                    rows.append(_row(a, f"delong_{metric}", ct, name, t["diff"], (t["ci_low"], t["ci_high"]),
                                     m.sum(), t["p_value"], reference=b))
    return rows


# ---------------------------------------------------------------- the whole evaluation


def check_params(p: dict) -> None:
    """Bin widths and bootstrap size positive, CI level in (0, 1)."""
    for k in ("evaluate_height_bin", "evaluate_imbalance_bin", "evaluate_bootstrap"):
        if not p[k] > 0:
            raise InputError(k, f"{k} = {p[k]!r} must be > 0", f"set {k} to a positive number (default {PARAMS[k]})")
    if not 0 < p["evaluate_ci_level"] < 1:
        raise InputError("evaluate_ci_level", f"evaluate_ci_level = {p['evaluate_ci_level']!r} must be in (0, 1)",
                         "use e.g. 0.95")


def evaluate(predictions: pd.DataFrame | None, scores: pd.DataFrame | None, sets: pd.DataFrame | None, *,
             peaks: pd.DataFrame | None = None, donor_counts: pd.DataFrame | None = None,
             strata_sets: pd.DataFrame | None = None, params: dict | None = None, seed: int = 0) -> pd.DataFrame:
    """All metrics as one long, deterministically ordered table (columns ``COLUMNS``)."""
    p = {**PARAMS, **(params or {})}
    check_params(p)
    level, n_boot = float(p["evaluate_ci_level"]), int(p["evaluate_bootstrap"])
    rows: list[dict] = []
    if predictions is not None:
        rows += window_accuracy(predictions, level)
        peak_pred = attach_peak_kind(predictions, peaks)
        if len(peak_pred):
            rows += peak_accuracy(peak_pred, float(p["evaluate_height_bin"]), seed, level)
            rows += overcorrelation(peak_pred, n_boot, seed, level)
            if donor_counts is not None:
                kinds = peak_pred.drop_duplicates("peak_id").set_index("peak_id")["peak_kind"]
                rows += replicate_accuracy(donor_counts, kinds, level)
    if scores is not None and strata_sets is not None and len(strata_sets):
        rows += stratum_matched_accuracy(scores, strata_sets, level)
    if scores is not None and sets is not None:
        v = variant_table(scores, sets)
        if len(v):
            rows += variant_accuracy(v, float(p["evaluate_imbalance_bin"]), n_boot, seed, level)
            rows += regime_tests(v, float(p["evaluate_imbalance_bin"]), seed, level)
    df = pd.DataFrame(rows, columns=COLUMNS)
    undefined = ~np.isfinite(df["value"].to_numpy(np.float64))
    if undefined.any():
        for r in df[undefined].head(10).itertuples(index=False):
            log.warning("undefined (dropped): %s %s %s %s (n=%d: too few items or a constant input)",
                        r.metric, r.regime, r.cell_type, r.stratum, r.n)
        log.warning("%d undefined metric(s) dropped", int(undefined.sum()))
    return order_metrics(df[~undefined])


def order_metrics(df: pd.DataFrame) -> pd.DataFrame:
    """Sort rows by metric, regime (study order), cell type and stratum."""
    regimes = regime_order(["replicate", *df["regime"].unique()]) if len(df) else []
    rank = {r: i for i, r in enumerate(regimes)}
    df = df.assign(_r=df["regime"].map(rank))
    df = df.sort_values(["metric", "_r", "cell_type", "stratum", "reference"], na_position="first", kind="mergesort")
    df = df.drop(columns="_r").reset_index(drop=True)
    df["n"] = df["n"].astype("int64")
    return df


def summarise(df: pd.DataFrame, inputs: dict) -> dict:
    """Headline figures per regime (means over cell types) for the summary JSON."""
    head = {}
    pick = {("pearson_peak", "all"), ("pearson_window", "all"), ("imbalance_auroc", "all"),
            ("direction_auroc", "all"), ("pearson_peak", "ubiquitous"), ("pearson_peak", "specific")}
    for (regime, metric, stratum), g in df.groupby(["regime", "metric", "stratum"]):
        if (metric, stratum) in pick:
            head.setdefault(regime, {})[f"{metric}_{stratum}"] = round(float(g["value"].mean()), 6)
    return {"rows": int(len(df)), "metrics": sorted(df["metric"].unique().tolist()),
            "regimes": regime_order(df["regime"].unique()) if len(df) else [],
            "headline": head, "inputs": inputs,
            "nonfinite_values": int((~np.isfinite(df["value"].to_numpy(np.float64))).sum())}


# ---------------------------------------------------------------- the step and the CLI


def load_inputs(predictions=None, scores=None, sets=None, peaks=None, donor_counts=None, imbalance=None,
                strata_sets=None) -> dict:
    """Read and check whichever inputs are given (paths or None)."""
    out: dict = {}
    if strata_sets is not None:
        out["strata_sets"] = read_table(strata_sets, ("cell_type", "variant_id", "ref_ratio", "peak_kind"),
                                        "stratum-matched variants")
    if predictions is not None:
        out["predictions"] = check_predictions(read_table(predictions, PRED_COLS, "predictions"), predictions)
    if scores is not None:
        out["scores"] = normalise_scores(read_table(scores, (), "variant scores"), scores)
    if sets is not None:
        imb = read_table(imbalance, ("cell_type", "variant_id"), "imbalance table") if imbalance else None
        out["sets"] = attach_variant_info(read_table(sets, SET_COLS, "variant sets"), imb, sets)
    if peaks is not None:
        out["peaks"] = read_table(peaks, ("peak_id", "kind"), "peaks")
    if donor_counts is not None:
        dc = read_table(donor_counts, ("peak_id", "donor", "cell_type"), "donor peak counts")
        cnt = next((c for c in ("count", "counts", "insertions") if c in dc.columns), None)
        if cnt is None:
            raise InputError(donor_counts, "donor peak counts lack a count column (count)",
                             "write one row per peak × donor × cell type with its insertion count")
        out["donor_counts"] = dc.rename(columns={cnt: "count"})
    if "scores" in out and "sets" in out and "cell_type" not in out["scores"].columns:
        log.info("scores have no cell_type: each score applies to the variant in every cell type's sets")
    return out


def run(outdir_or_out: Path, inputs: dict, params: dict, seed: int) -> dict:
    """Evaluate and write ``metrics.parquet`` + ``evaluate.summary.json`` beside it."""
    df = evaluate(inputs.get("predictions"), inputs.get("scores"), inputs.get("sets"), peaks=inputs.get("peaks"),
                  donor_counts=inputs.get("donor_counts"), strata_sets=inputs.get("strata_sets"), params=params,
                  seed=seed)
    out = Path(outdir_or_out)
    write_parquet(df, out)
    present = {k: k in inputs for k in ("predictions", "scores", "sets", "peaks", "donor_counts", "strata_sets")}
    summary = summarise(df, present)
    write_json(summary, out.parent / "evaluate.summary.json")
    log.info("wrote %s: %d metric rows (%d non-finite values)", out.name, len(df), summary["nonfinite_values"])
    return summary


def run_step(ctx: StepContext) -> dict:
    o = ctx.outdir
    opt = {name: (o / f if (o / f).exists() else None) for name, f in (
        ("peaks", "peaks.parquet"), ("donor_counts", "peaks_donor_counts.parquet"),
        ("imbalance", "imbalance.parquet"), ("strata_sets", "variant_sets_stratum_matched.parquet"))}
    for name, path in opt.items():
        if path is None:
            log.info("optional input %s not present: metrics that need it are skipped", name)
    inputs = load_inputs(o / "predictions.parquet", o / "variant_scores.parquet", o / "variant_sets.parquet", **opt)
    summary = run(ctx.out("metrics.parquet"), inputs, ctx.params, int(ctx.params.get("seed", 0)))
    return {"rows": summary["rows"], "nonfinite_values": summary["nonfinite_values"]}


STEP = Step(name="evaluate", run=run_step, needs=("predict", "score_variants"),
            optional_needs=("cluster_peaks", "call_imbalance", "match_negatives"), params=PARAMS,
            doc="reference accuracy, over-correlation, variant-effect AUROCs by stratum with CIs")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="caveat evaluate", description=__doc__.splitlines()[0])
    ap.add_argument("--predictions", help="predictions.parquet (regime, kind, peak_id, chrom, start, end, "
                                          "cell_type, target, prediction)")
    ap.add_argument("--scores", help="variant scores (variant_id, pred_ref_ratio or ref_pred+alt_pred"
                                     "[, regime, cell_type]); any model's")
    ap.add_argument("--variant-sets", help="variant_sets.parquet (cell_type, variant_id, set[, ref_ratio, peak_kind])")
    ap.add_argument("--peaks", help="peaks.parquet (peak_id, kind) for per-kind reference accuracy")
    ap.add_argument("--donor-counts", help="peaks_donor_counts.parquet for the inter-donor upper bound")
    ap.add_argument("--imbalance", help="imbalance.parquet (ref_ratio, peak_kind when the sets lack them)")
    ap.add_argument("--stratum-sets", help="variant_sets_stratum_matched.parquet (match_negatives' Fig. 4B set)")
    ap.add_argument("--out", default="metrics.parquet", help="output metrics.parquet (summary written beside it)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--height-bin", type=float, default=PARAMS["evaluate_height_bin"])
    ap.add_argument("--imbalance-bin", type=float, default=PARAMS["evaluate_imbalance_bin"])
    ap.add_argument("--bootstrap", type=int, default=PARAMS["evaluate_bootstrap"])
    ap.add_argument("--ci-level", type=float, default=PARAMS["evaluate_ci_level"])
    ap.add_argument("--version", action="version", version=f"caveat {__version__}")
    return ap


def main(argv=None) -> int:
    a = build_parser().parse_args(argv)
    if (a.scores is None) != (a.variant_sets is None):
        raise InputError("--scores" if a.scores is None else "--variant-sets", "variant metrics need both tables",
                         "pass --scores and --variant-sets together")
    if a.predictions is None and a.scores is None:
        raise InputError("caveat evaluate", "nothing to evaluate",
                         "pass --predictions and/or both --scores and --variant-sets")
    inputs = load_inputs(a.predictions, a.scores, a.variant_sets, a.peaks, a.donor_counts, a.imbalance,
                         a.stratum_sets)
    params = {"evaluate_height_bin": a.height_bin, "evaluate_imbalance_bin": a.imbalance_bin,
              "evaluate_bootstrap": a.bootstrap, "evaluate_ci_level": a.ci_level}
    run(Path(a.out), inputs, params, a.seed)
    print(f"metrics: {a.out}")
    return 0
