"""evaluate: reference accuracy, over-correlation and variant-effect accuracy per regime.

Reads the pipeline's (or a user's) reference predictions and variant scores
and writes one long table, ``metrics.parquet``: regime, metric, cell_type,
stratum, value, ci_low, ci_high, n, p_value, reference.

Strata (:mod:`caveat.strata`; per cell type, the study's definition): ``all``,
``ubiquitous`` (the ubiquitous cluster), ``specific`` (**the cell type's own**
specific cluster(s): a cluster whose label names it), ``specific_any`` (every
specific cluster pooled, kept under that explicit name) and, for variant
metrics, ``test_chroms`` (variants on the held-out chromosomes).

Metrics
- ``pearson_window``: Pearson R of target vs prediction over every test window
  (raw centre-bin counts, as the training's ``valid_pearson``); Fisher-z CI.
- ``pearson_peak``: Pearson R on log2(x+1) of peak values (the study's rule:
  a peak-centred window vs insertions over the centred 192 bp site, see
  :mod:`caveat.peak_sites`) on test chromosomes, per stratum, and
  ``ubiquitous_height_matched``: ubiquitous peaks resampled to the own specific
  peaks' histogram of log2 target (``evaluate_height_bin``-wide bins; with
  replacement where a bin runs short), the specific set kept whole (Fig. S1C).
- ``replicate_pearson`` (regime ``replicate``): mean Pearson R of log2(x+1)
  between donors' peak values under the same rule (``value`` of
  ``peaks_donor_counts.parquet``), per stratum; ``replicate_ceiling``: sqrt of
  the Spearman-Brown reliability of the k-donor pool, the highest R any model
  can expect against the pooled target (the upper bound).
- ``overcorrelation`` (cell_type ``A|B``): R(pred_A, pred_B) − R(target_A, target_B)
  over peaks (log2(x+1)); stratum ``specific`` = A's own cluster(s); with
  ``pred_cross_pearson`` and ``target_cross_pearson``; bootstrap CI over peaks.
- ``imbalance_auroc`` / ``imbalance_auprc``: imbalanced (positive) vs
  depth-matched negatives, score |pred_ref_ratio − 0.5|.
- ``direction_auroc`` / ``_auprc``: every imbalanced variant, score
  pred_ref_ratio, label observed ref_ratio > 0.5.
- ``direction_auroc_strata`` (Fig. 4B): match_negatives'
  ``variant_sets_stratum_matched.parquet`` — every tested heterozygous variant
  (REF+ALT > 20) in the own specific or the ubiquitous cluster, imbalance
  distributions matched between the two — direction AUROC per stratum.
- ``delong_<task>_auroc``: paired DeLong test between two regimes on the same
  variants (value = AUROC(regime) − AUROC(reference), CI of the difference,
  ``p_value``; ``q_value``: Benjamini–Hochberg over every such test of the run).

Replicates (issue 18.1; :mod:`caveat.replicates`): every metric is computed for each
replicate model (``replicate`` = ``rep<k>``) and for the ensemble (``ensemble``: the mean of
the replicates' predictions, and of their REF and ALT predictions for variants, scored as
its own model); ``median`` rows hold the median over replicates with ``replicate_sd`` (the
sd over replicates, copied onto the ensemble rows). Regime comparisons: the DeLong test
runs on the ensemble's (replicate-averaged) scores, its row carrying the replicate sd of
the per-replicate AUROC differences; BH q-values are over the ensemble's tests.
``replicate_direction_agreement`` (with ≥ 2 replicates): per replicate, the share of
variants whose predicted direction is the ensemble's; the ensemble row: the share whose
direction every replicate agrees on; per regime × cell type × stratum.

Beyond the paper (issue 18)
- ``imbalance_auroc_region_controlled`` (/ ``_auprc_``): positives vs the
  region-controlled negatives of match_negatives (balanced sites of the
  positives' own peaks), next to the depth-matched ``imbalance_auroc``.
- ``effect_spearman`` / ``effect_pearson``: imbalanced variants, predicted
  log2(ALT/REF) of the cell type's task vs observed log((ALT+½)/(REF+½))
  (−logit of the REF fraction): positive = agreement.
- ``direction_accuracy_top<pct>``: direction accuracy among the top 10/25/50/100 %
  of imbalanced variants by |predicted effect| (``n`` = k).
- ``cross_imbalance_auroc`` / ``cross_direction_auroc`` (cell_type ``X|T``):
  X's labels scored with task T's predictions, T = every task and
  ``mean_of_tasks``; DeLong CIs.
- Variant-metric CIs (AUROC, AUPRC, effect sizes, top-k) are percentile CIs
  of a block bootstrap: whole peaks are resampled (variants of a peak share
  windows), variants outside peaks in ``evaluate_block_bp`` blocks.

A variant row without a score is an error, never silently dropped.
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
from .bundle import BUNDLE_DIR, write_bundle
from .engine import Step, StepContext
from .errors import InputError
from .io import read_parquet, write_json, write_parquet
from .prediction_tables import read_predictions
from .log import Progress, get_logger
from .regimes import ENSEMBLE, MEDIAN, regime_order
from .replicates import (attach_sd, direction_agreement, ensemble_predictions, ensemble_scores, median_rows,
                         of_replicate, replicate_labels)
from .results import METRIC_COLUMNS
from .step_cli import add_param_options, params_from_args
from .strata import (KINDS, SPECIFIC, SPECIFIC_ANY, UBIQUITOUS, attach_peak_strata, own_stratum, stratum_masks,
                     study_cell_types)

log = get_logger("evaluate")

PARAMS = {
    "evaluate_height_bin": 0.5,      # width of log2(target+1) bins for the height-matched comparison
    "evaluate_bootstrap": 200,       # bootstrap replicates for AUPRC and over-correlation CIs
    "evaluate_ci_level": 0.95,
    "evaluate_block_bp": 10_000,     # block bootstrap unit outside peaks (variants of one peak are one unit)
}
#: top-k direction accuracy: the share of imbalanced variants kept, ranked by |predicted effect|
TOPK_FRACTIONS = (0.1, 0.25, 0.5, 1.0)
DEPTH, REGION = "depth_matched", "region_controlled"
MEAN_TASK = "mean_of_tasks"   # the cross-cell-type column scored with the mean over tasks
#: variant task → (metric stem, suffix): metric = f"{stem}_{auroc|auprc}{suffix}"
TASK_METRIC = {"imbalance": ("imbalance", ""), "imbalance_region": ("imbalance", "_region_controlled"),
               "direction": ("direction", "")}
COLUMNS = METRIC_COLUMNS

#: the predict / score_variants settings the benchmark bundle records (caveat.bundle; their steps' defaults)
BUNDLE_SETTINGS = {"window_size": 1344, "target_bin": 192, "predict_average": True, "predict_batch_size": 256,
                   "predict_peak_value": "centre", "score_rc": True, "score_shifts": [-1, 0, 1], "score_batch_size": 32,
                   "score_fast_ism": True}
PRED_COLS = ("regime", "kind", "chrom", "start", "end", "cell_type", "target", "prediction")
SET_COLS = ("cell_type", "variant_id", "set")


# ---------------------------------------------------------------- reading and checks


def require_columns(df: pd.DataFrame, cols, path, what: str) -> None:
    """Raise InputError naming the missing columns of ``path``."""
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise InputError(path, f"{what} lacks column(s) {', '.join(missing)} (has: {', '.join(map(str, df.columns))})",
                         f"provide a table with columns {', '.join(cols)}")


def read_table(path, cols, what: str, reader=read_parquet) -> pd.DataFrame:
    path = Path(path)
    if not path.exists():
        raise InputError(path, f"{what} not found", "run the upstream step or pass an existing file")
    try:
        df = reader(path)
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


def attach_variant_info(sets: pd.DataFrame, imbalance: pd.DataFrame | None, path,
                        test_chroms=None) -> pd.DataFrame:
    """Variant rows with ref_ratio, stratum (from imbalance.parquet when they lack them) and split.

    ``split`` (``test`` on ``test_chroms``) comes from the table when present,
    else from the variant's contig, so every variant metric also has a
    ``test_chroms`` stratum next to all chromosomes.
    """
    s = sets.copy()
    if "set" in s.columns:
        bad_set = ~s["set"].isin(["positive", "negative"])
        if bad_set.any():
            raise InputError(path, f"set must be 'positive' or 'negative'; found {s.loc[bad_set, 'set'].iloc[0]!r} "
                             f"(variant {s.loc[bad_set, 'variant_id'].iloc[0]})", "relabel the sets")
    if imbalance is not None:
        extra = [c for c in ("ref_ratio", "stratum", "split") if c not in s.columns and c in imbalance.columns]
        if extra:
            s = s.merge(imbalance[["cell_type", "variant_id", *extra]].drop_duplicates(["cell_type", "variant_id"]),
                        on=["cell_type", "variant_id"], how="left")
    if "split" not in s.columns and test_chroms:
        chrom = s["chrom"] if "chrom" in s.columns else s["variant_id"].astype(str).str.split(":").str[0]
        s["split"] = np.where(chrom.isin(list(test_chroms)), "test", "other")
    for c in ("ref_ratio", "stratum"):
        if c not in s.columns:
            log.info("variant sets have no %s: %s", c,
                     "direction AUROCs skipped" if c == "ref_ratio" else "no per-stratum variant metrics")
    return s


def _seed(seed: int, *keys: str) -> int:
    """A stable per-(cell type, task) seed so matched subsets are identical across regimes: no key
    names a regime, so every regime (and an outside model, or a copy of one) draws the same
    resamples and its CIs are comparable."""
    return (int(seed) * 1_000_003 + zlib.crc32("|".join(keys).encode())) % (2**32)


def _row(regime, metric, cell_type, stratum, value, ci=(np.nan, np.nan), n=0, p_value=np.nan, reference=None):
    return dict(regime=regime, replicate=None, metric=metric, cell_type=cell_type, stratum=stratum, value=float(value),
                ci_low=float(ci[0]), ci_high=float(ci[1]), n=int(n), p_value=float(p_value), reference=reference,
                q_value=np.nan, replicate_sd=np.nan)


# ---------------------------------------------------------------- reference accuracy


def window_accuracy(pred: pd.DataFrame, level: float) -> list[dict]:
    """``pearson_window`` per regime × cell type on raw centre-bin values."""
    rows = []
    win = pred[pred["kind"] == "window"]
    for (regime, ct), g in win.groupby(["regime", "cell_type"], sort=False):
        r = M.pearson(g["target"], g["prediction"])
        rows.append(_row(regime, "pearson_window", ct, "all", r, M.pearson_ci(r, len(g), level), len(g)))
    return rows


def peak_accuracy(peak_pred: pd.DataFrame, height_bin: float, seed: int, level: float) -> list[dict]:
    """``pearson_peak`` per regime × cell type × stratum (log2(x+1)).

    Strata: ``all``, ``ubiquitous``, ``specific`` (the cell type's own
    cluster(s)), ``specific_any`` (every specific cluster, pooled) and
    ``ubiquitous_height_matched``: ubiquitous peaks resampled to the own
    specific peaks' histogram of log2 target (``height_bin``-wide bins), the
    specific set kept whole (Fig. S1C).
    """
    rows = []
    for (regime, ct), g in peak_pred.groupby(["regime", "cell_type"], sort=False):
        g = g.sort_values("peak_id") if "peak_id" in g.columns else g
        t, p = M.log2p1(g["target"]), M.log2p1(g["prediction"])
        masks = stratum_masks(g["stratum"].to_numpy())
        for name, mask in masks.items():
            if mask.sum() == 0:
                continue
            r = M.pearson(t[mask], p[mask])
            rows.append(_row(regime, "pearson_peak", ct, name, r, M.pearson_ci(r, int(mask.sum()), level),
                             mask.sum()))
        u, s = np.flatnonzero(masks[UBIQUITOUS]), np.flatnonzero(masks[SPECIFIC])
        if u.size and s.size:
            iu = u[M.resample_to_histogram(t[u], t[s], height_bin, seed=_seed(seed, "height", ct), lo=0.0)]
            if iu.size:
                r = M.pearson(t[iu], p[iu])
                rows.append(_row(regime, "pearson_peak", ct, "ubiquitous_height_matched", r,
                                 M.pearson_ci(r, iu.size, level), iu.size))
    return rows


def replicate_accuracy(donor_counts: pd.DataFrame, info: pd.DataFrame, cell_types: list[str],
                       level: float) -> list[dict]:
    """``replicate_pearson``: mean inter-donor Pearson R of log2(value + 1), and ``replicate_ceiling``.

    Each donor's peak value is the same rule as the model's targets (``value``
    of ``peaks_donor_counts.parquet``, :mod:`caveat.peak_sites`), on the
    evaluated (test-chromosome) peaks, per own-cluster stratum of the cell type.

    Parameters
    ----------
    donor_counts : long table peak_id, donor, cell_type, value
    info : DataFrame indexed by the evaluated peak_id with peak_kind, cluster_label
    cell_types : every cell type of the study (to read cluster labels)
    """
    rows = []
    dc = donor_counts[donor_counts["peak_id"].isin(info.index)]
    for ct, g in dc.groupby("cell_type", sort=False):
        mat = g.pivot_table(index="peak_id", columns="donor", values="value", aggfunc="sum", fill_value=0)
        if mat.shape[1] < 2:
            log.info("replicate bound for %s skipped: %d donor(s)", ct, mat.shape[1])
            continue
        x = M.log2p1(mat.to_numpy(np.float64))
        pi = info.reindex(mat.index)
        stratum = own_stratum(pi["peak_kind"], pi["cluster_label"], [ct] * len(mat), cell_types)
        pairs = list(itertools.combinations(range(mat.shape[1]), 2))
        for name, mask in stratum_masks(stratum).items():
            if mask.sum() < 3:
                continue
            r = float(np.nanmean([M.pearson(x[mask, i], x[mask, j]) for i, j in pairs]))
            n = int(mask.sum())
            rows.append(_row("replicate", "replicate_pearson", ct, name, r, M.pearson_ci(r, n, level), n))
            ceiling = [M.replicate_ceiling(v, mat.shape[1]) for v in (r, *M.pearson_ci(r, n, level))]
            rows.append(_row("replicate", "replicate_ceiling", ct, name, ceiling[0], ceiling[1:], n))
    return rows


def _boot_diff(a, b, c, d, n_boot, seed):
    """Bootstrap over rows of R(a, b) − R(c, d) (1-D arrays of length n) → (n_boot,)."""
    w = M.bootstrap_weights(len(a), n_boot, seed)
    return M.weighted_pearson(w, a, b) - M.weighted_pearson(w, c, d)


def overcorrelation(peak_pred: pd.DataFrame, cell_types: list[str], n_boot: int, seed: int,
                    level: float) -> list[dict]:
    """R(pred_A, pred_B) − R(target_A, target_B) over peaks (log2(x+1)), per regime × ordered pair.

    ``cell_type`` is ``A|B``; stratum ``specific`` is **A's own cluster(s)** (the
    authors' ``evaluate_basset_performance.py`` correlates A and B over A's
    cluster), so ``A|B`` and ``B|A`` differ there. The symmetric strata
    (``all``, ``ubiquitous``, ``specific_any``) are written once, for A before B.
    """
    rows = []
    for regime, g in peak_pred.groupby("regime", sort=False):
        cts = list(dict.fromkeys(g["cell_type"]))
        tgt = g.pivot_table(index="peak_id", columns="cell_type", values="target", aggfunc="first")
        prd = g.pivot_table(index="peak_id", columns="cell_type", values="prediction", aggfunc="first")
        pi = g.drop_duplicates("peak_id").set_index("peak_id").reindex(tgt.index)
        tgt, prd = M.log2p1(tgt[cts].to_numpy()), M.log2p1(prd[cts].to_numpy())
        for (i, a), (j, b) in itertools.permutations(enumerate(cts), 2):
            masks = stratum_masks(own_stratum(pi["peak_kind"], pi["cluster_label"], [a] * len(pi), cell_types))
            wanted = [SPECIFIC] if i > j else ["all", UBIQUITOUS, SPECIFIC, SPECIFIC_ANY]
            for name in wanted:
                mask = masks[name] & np.isfinite(tgt[:, i]) & np.isfinite(tgt[:, j])
                if mask.sum() < 3:
                    continue
                rows += _overcorr_rows(regime, f"{a}|{b}", name, prd[mask][:, [i, j]], tgt[mask][:, [i, j]],
                                       n_boot, _seed(seed, "overcorr", f"{a}|{b}", name), level)
    return rows


def _overcorr_rows(regime, pair, stratum, prd, tgt, n_boot, seed, level) -> list[dict]:
    """The three over-correlation rows of one pair × stratum; ``prd``/``tgt`` (n, 2)."""
    rp, rt, n = M.pearson(prd[:, 0], prd[:, 1]), M.pearson(tgt[:, 0], tgt[:, 1]), len(prd)
    boot = _boot_diff(prd[:, 0], prd[:, 1], tgt[:, 0], tgt[:, 1], n_boot, seed)
    return [_row(regime, "overcorrelation", pair, stratum, rp - rt, M.percentile_ci(boot, level), n),
            _row(regime, "pred_cross_pearson", pair, stratum, rp, M.pearson_ci(rp, n, level), n),
            _row(regime, "target_cross_pearson", pair, stratum, rt, M.pearson_ci(rt, n, level), n)]


# ---------------------------------------------------------------- variant-effect accuracy


def variant_table(scores: pd.DataFrame, sets: pd.DataFrame, path="variant scores") -> pd.DataFrame:
    """Scores joined to variant rows: one row per regime × cell type × variant.

    Every row of ``sets`` must have a score in every regime that scored its
    cell type: a metric never drops a variant for lack of a score (that would
    silently change the task). A regime with no score at all for a cell type
    (e.g. an outside model without that task) skips that cell type, logged.
    """
    keys = ["cell_type", "variant_id"] if "cell_type" in scores.columns else ["variant_id"]
    cols = [c for c in ("cell_type", "variant_id", "set", "negative_set", "ref_ratio", "total", "peak_id", "pos",
                        "peak_kind", "stratum", "split", "chrom") if c in sets.columns]
    rows = sets[cols].drop_duplicates([c for c in ("cell_type", "variant_id", "negative_set") if c in cols])
    rows = rows.assign(row_key=rows["variant_id"].astype(str) + "|" + (
        rows["negative_set"].fillna("").astype(str) if "negative_set" in cols else ""))
    score_cols = ["pred_ref_ratio"] + (["log2_fc"] if "log2_fc" in scores.columns else [])
    s = scores[["regime", *keys, *score_cols]].drop_duplicates(["regime", *keys])
    parts = []
    for regime, g in s.groupby("regime", sort=False):
        v = rows.merge(g.drop(columns="regime"), on=keys, how="left").assign(regime=regime)
        if "cell_type" in keys:
            covered = v["cell_type"].isin(set(g["cell_type"]))
            if (~covered).any():
                log.info("%s: no score for cell type(s) %s: its variant metrics skip them", regime,
                         ", ".join(sorted(set(v.loc[~covered, "cell_type"]))))
            v = v[covered]
        missing = v["pred_ref_ratio"].isna()
        if missing.any():
            r = v[missing].iloc[0]
            raise InputError(path, f"{int(missing.sum())} variant row(s) have no score for regime {regime}, e.g. "
                                   f"{r['cell_type']} {r['variant_id']}",
                             "score every variant of variant_sets.parquet and variant_sets_stratum_matched.parquet "
                             "(score_variants does)")
        parts.append(v)
    v = pd.concat(parts, ignore_index=True) if parts else rows.iloc[0:0].assign(regime="", pred_ref_ratio=0.0)
    log.info("variant table: %s scored rows over %d regime(s)", f"{len(v):,}", v["regime"].nunique())
    return v


def variant_masks(g: pd.DataFrame) -> dict[str, np.ndarray]:
    """Strata of a variant task: ``all``, own-cluster strata and ``test_chroms`` (bool arrays over ``g``)."""
    masks = {"all": np.ones(len(g), bool)}
    if "stratum" in g.columns:
        masks.update({k: m for k, m in stratum_masks(g["stratum"].to_numpy()).items() if k != "all"})
    if "split" in g.columns:
        masks["test_chroms"] = (g["split"] == "test").to_numpy()
    return masks


def _auc_rows(regime, metric, ct, stratum, y, score, level, w=None) -> list[dict]:
    """AUROC with a DeLong CI, or with the percentile CI of block-bootstrap weights ``w`` (B, n) when given."""
    res = M.delong_auc(y, score)
    if not np.isfinite(res.auc):
        return []
    ci = res.ci(level) if w is None else M.percentile_ci(M.weighted_auc(w, y, score), level)
    return [_row(regime, metric, ct, stratum, res.auc, ci, res.n_pos + res.n_neg)]


def _auprc_row(regime, metric, ct, stratum, y, score, n_boot, seed, level, w=None) -> list[dict]:
    if y.sum() == 0 or (~y).sum() == 0:
        return []
    ap = M.average_precision(y, score)
    boot = M.bootstrap_average_precision(y, score, n_boot=n_boot, seed=seed, weights=w)
    return [_row(regime, metric, ct, stratum, ap, M.percentile_ci(boot, level), len(y))]


def with_blocks(g: pd.DataFrame, block_bp: int) -> pd.DataFrame:
    """``g`` with ``block``, the block-bootstrap unit of each variant row: its peak, else a ``block_bp``
    genomic block (:func:`M.block_keys`); labelled once per table, not per resampled subset.

    Contig and position come from the table, else from the ``chrom:pos:ref:alt`` variant id.
    """
    parts = g["variant_id"].astype(str).str.split(":")
    chrom = g["chrom"] if "chrom" in g.columns else parts.str[0]
    pos = g["pos"] if "pos" in g.columns else pd.to_numeric(parts.str[1], errors="coerce").fillna(0)
    peak = g["peak_id"] if "peak_id" in g.columns else pd.Series(None, index=g.index, dtype=object)
    return g.assign(block=M.block_keys(peak.to_numpy(), chrom.to_numpy(), np.asarray(pos, dtype=np.int64), block_bp))


def _block_weights(g: pd.DataFrame, mask: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """Block-bootstrap multiplicities (n_boot, mask.sum()) of ``g``'s rows under ``mask`` (``g`` :func:`with_blocks`)."""
    return M.block_bootstrap_weights(g["block"].to_numpy()[mask], n_boot, seed)


def task_rows(task: str, g: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """Labels, scores and rows of one variant task on one regime × cell type's table.

    ``imbalance``: positives vs depth-matched negatives, score |pred_ref_ratio − 0.5|.
    ``imbalance_region``: positives vs region-controlled negatives (same peaks), same score.
    ``direction``: **every** imbalanced variant, label observed ref_ratio > 0.5,
    score pred_ref_ratio (an imbalanced site never has ref_ratio exactly 0.5).
    """
    if task in ("imbalance", "imbalance_region"):
        g = g[negative_set_mask(g, REGION if task == "imbalance_region" else DEPTH)]
        y = (g["set"] == "positive").to_numpy()
        return y, np.abs(g["pred_ref_ratio"].to_numpy(np.float64) - 0.5), g
    rr = g["ref_ratio"].to_numpy(np.float64)
    sub = g[(g["set"] == "positive").to_numpy() & np.isfinite(rr) & (rr != 0.5)]
    return (sub["ref_ratio"].to_numpy(np.float64) > 0.5), sub["pred_ref_ratio"].to_numpy(np.float64), sub


def negative_set_mask(g: pd.DataFrame, which: str) -> np.ndarray:
    """Positives plus the ``which`` negatives (a table without ``negative_set``: every negative is depth-matched)."""
    pos = (g["set"] == "positive").to_numpy()
    if "negative_set" not in g.columns:
        return pos | (which == DEPTH)
    return pos | (g["negative_set"] == which).to_numpy()


def variant_tasks(v: pd.DataFrame) -> list[str]:
    region = "negative_set" in v.columns and (v["negative_set"] == REGION).any()
    return ["imbalance"] + (["imbalance_region"] if region else []) + (["direction"] if "ref_ratio" in v.columns else [])


def task_metric(task: str, kind: str) -> str:
    """Metric name of a variant task: ``imbalance_auroc``, ``imbalance_auroc_region_controlled``, …"""
    stem, suffix = TASK_METRIC[task]
    return f"{stem}_{kind}{suffix}"


def variant_accuracy(v: pd.DataFrame, n_boot: int, seed: int, level: float) -> list[dict]:
    """AUROC/AUPRC of every variant task per regime × cell type × stratum.

    CIs: percentile of a block bootstrap over ``v``'s ``block`` (:func:`with_blocks`: whole peaks,
    or ``evaluate_block_bp`` blocks outside peaks; the same resamples for AUROC and AUPRC).
    """
    rows = []
    groups = list(v.groupby(["regime", "cell_type"], sort=False))
    prog = Progress(log, "regime×cell type", total=len(groups), label="variant metrics")
    for (regime, ct), g in groups:
        g = g.sort_values(["variant_id", "row_key"])
        for task in variant_tasks(v):
            y, score, sub = task_rows(task, g)
            for name, m in variant_masks(sub).items():
                if not m.any():
                    continue
                w = _block_weights(sub, m, n_boot, _seed(seed, "block", ct, task, name))
                rows += _auc_rows(regime, task_metric(task, "auroc"), ct, name, y[m], score[m], level, w)
                rows += _auprc_row(regime, task_metric(task, "auprc"), ct, name, y[m], score[m], n_boot, 0, level, w)
        prog.update()
    prog.close()
    return rows


def stratum_matched_accuracy(scores: pd.DataFrame, strata_sets: pd.DataFrame, path, level: float,
                             n_boot: int = 200, seed: int = 0, block_bp: int = 10_000) -> list[dict]:
    """``direction_auroc_strata`` (Fig. 4B) on match_negatives' stratum-matched table.

    That table holds every tested heterozygous variant (REF+ALT > 20) in the
    cell type's own specific cluster(s) or the ubiquitous cluster, subsampled
    so both strata have the same binned |ref_ratio − 0.5| distribution; label
    observed ref_ratio > 0.5, score pred_ref_ratio. Every row must have a score.
    Strata: ``ubiquitous``, ``specific`` and both on test chromosomes only.
    CIs: block bootstrap (peaks resampled whole).
    """
    t = strata_sets.assign(set="positive")  # every row enters the direction task
    v = with_blocks(variant_table(scores, t, path), block_bp)
    rows = []
    for (regime, ct), g in v.groupby(["regime", "cell_type"], sort=False):
        g = g.sort_values("variant_id")
        rr = g["ref_ratio"].to_numpy(np.float64)
        keep = np.isfinite(rr) & (rr != 0.5)
        test = (g["split"] == "test").to_numpy() if "split" in g.columns else None
        for k in KINDS:
            m = keep & (g["stratum"] == k).to_numpy()
            for name, mm in ((k, m), (f"{k}_test_chroms", None if test is None else m & test)):
                if mm is not None and mm.any():
                    w = _block_weights(g, mm, n_boot, _seed(seed, "block_strata", ct, name))
                    rows += _auc_rows(regime, "direction_auroc_strata", ct, name, rr[mm] > 0.5,
                                      g["pred_ref_ratio"].to_numpy(np.float64)[mm], level, w)
    return rows


def regime_tests(v: pd.DataFrame, level: float) -> list[dict]:
    """Paired DeLong tests between every two regimes, per cell type, task and stratum."""
    rows = []
    regimes = regime_order(v["regime"].unique())
    for ct, gct in v.groupby("cell_type", sort=False):
        wide = gct.pivot_table(index="row_key", columns="regime", values="pred_ref_ratio", aggfunc="first")
        info = gct.drop_duplicates("row_key").set_index("row_key").reindex(wide.index).reset_index()
        for a, b in itertools.combinations([r for r in regimes if r in wide.columns], 2):
            both = wide[[a, b]].notna().all(axis=1).to_numpy()
            for task in variant_tasks(v):
                g = info[both].assign(pred_ref_ratio=wide[a].to_numpy()[both])
                y, sa, sub = task_rows(task, g)
                _, sb, _ = task_rows(task, g.assign(pred_ref_ratio=wide[b].to_numpy()[both]))
                for name, m in variant_masks(sub).items():
                    if y[m].all() or not y[m].any():
                        continue
                    t = M.delong_paired(y[m], sa[m], sb[m])
                    rows.append(_row(a, f"delong_{task_metric(task, 'auroc')}", ct, name, t["diff"],
                                     (t["ci_low"], t["ci_high"]), m.sum(), t["p_value"], reference=b))
    return rows


# ---------------------------------------------------------------- beyond the paper (issue 18): effect size, cross-task


def predicted_effect(g: pd.DataFrame) -> np.ndarray:
    """Predicted log2(ALT/REF) of the cell type's task: ``log2_fc`` when scored, else from pred_ref_ratio."""
    if "log2_fc" in g.columns and g["log2_fc"].notna().all():
        return g["log2_fc"].to_numpy(np.float64)
    r = np.clip(g["pred_ref_ratio"].to_numpy(np.float64), 1e-300, 1 - 1e-16)
    return np.log2(1 - r) - np.log2(r)


def observed_effect(g: pd.DataFrame) -> np.ndarray:
    """Observed ALT preference: −logit(REF fraction) = log((ALT + ½)/(REF + ½)) (natural log).

    Counts are ``ref_ratio × total`` when ``total`` is known (the ½ keeps
    all-REF/all-ALT sites finite), else the logit of ref_ratio clipped to
    [0.001, 0.999]. Positive = ALT more accessible, the sign of a positive
    predicted log2(ALT/REF): agreement is a positive correlation.
    """
    rr = g["ref_ratio"].to_numpy(np.float64)
    if "total" in g.columns and g["total"].notna().all():
        tot = g["total"].to_numpy(np.float64)
        ref = np.round(rr * tot)
        return np.log((tot - ref + 0.5) / (ref + 0.5))
    rr = np.clip(rr, 1e-3, 1 - 1e-3)
    return np.log((1 - rr) / rr)


def effect_size_accuracy(v: pd.DataFrame, n_boot: int, seed: int, level: float) -> list[dict]:
    """Effect-size agreement and top-k direction accuracy among imbalanced variants.

    Per regime × cell type × stratum (:func:`variant_masks`): ``effect_spearman``
    and ``effect_pearson`` of predicted log2(ALT/REF) vs observed −logit(REF
    fraction), and ``direction_accuracy_top<pct>`` for each fraction of
    :data:`TOPK_FRACTIONS` (variants ranked by |predicted effect|). CIs:
    percentile block bootstrap over ``v``'s ``block`` (:func:`with_blocks`).
    """
    if "ref_ratio" not in v.columns:
        return []
    rows = []
    for (regime, ct), g in v.groupby(["regime", "cell_type"], sort=False):
        g = g.sort_values(["variant_id", "row_key"])
        rr = g["ref_ratio"].to_numpy(np.float64)
        sub = g[(g["set"] == "positive").to_numpy() & np.isfinite(rr) & (rr != 0.5)]
        pe, oe = predicted_effect(sub), observed_effect(sub)
        for name, m in variant_masks(sub).items():
            if m.sum() < 3:
                continue
            w = _block_weights(sub, m, n_boot, _seed(seed, "effect", ct, name))
            rows += _effect_rows(regime, ct, name, pe[m], oe[m], w, level)
    return rows


def _effect_rows(regime, ct, stratum, pe, oe, w, level) -> list[dict]:
    """The Spearman, Pearson and top-k rows of one regime × cell type × stratum."""
    n = len(pe)
    out = []
    for metric, f, boot in (("effect_spearman", M.spearman, M.weighted_spearman),
                            ("effect_pearson", M.pearson, M.weighted_pearson)):
        out.append(_row(regime, metric, ct, stratum, f(pe, oe), M.percentile_ci(boot(w, pe, oe), level), n))
    for frac in TOPK_FRACTIONS:
        value, k = M.topk_direction_accuracy(pe, oe, frac)
        out.append(_row(regime, f"direction_accuracy_top{round(frac * 100)}", ct, stratum, value,
                        M.percentile_ci(M.weighted_topk_direction_accuracy(w, pe, oe, frac), level), k))
    return out


def cross_cell_type(scores: pd.DataFrame, v: pd.DataFrame, level: float) -> list[dict]:
    """Each cell type's labels scored with every task's predictions and with their mean.

    The matrix of the authors' ``plot_allelic_imbalance_tasks.py``: for the
    sets of cell type X (rows) and each task T (columns), ``cross_imbalance_auroc``
    (positives vs depth-matched negatives, score |r_T − 0.5|) and
    ``cross_direction_auroc`` (imbalanced variants, score r_T), with r_T the
    task's pred_ref_ratio; ``cell_type`` is ``X|T``. ``X|mean_of_tasks`` scores with the
    mean over tasks of log2(ALT/REF) (the geometric mean of ALT/REF ratios),
    turned back into a REF fraction. DeLong CIs. A task that did not score
    every variant of X's sets is left out for X (logged): never a subset.
    The diagonal ``X|X`` equals ``imbalance_auroc`` / ``direction_auroc`` of X.
    """
    if "cell_type" not in scores.columns:
        return []
    rows = []
    for regime, sr in scores.groupby("regime", sort=False):
        sr = sr.assign(_e=predicted_effect(sr))
        lfc, ratio = (sr.pivot_table(index="variant_id", columns="cell_type", values=c, aggfunc="first")
                      for c in ("_e", "pred_ref_ratio"))
        tasks = list(dict.fromkeys(sr["cell_type"]))
        for ct, g in v[v["regime"] == regime].groupby("cell_type", sort=False):
            g = g.sort_values(["variant_id", "row_key"])
            ids = g["variant_id"].to_numpy()
            eff, rat = lfc.reindex(ids), ratio.reindex(ids)
            usable = [t for t in tasks if eff[t].notna().all()]
            if len(usable) < len(tasks):
                log.info("%s, %s sets: task(s) %s did not score every variant: cross-cell-type row leaves them out"
                         " (score_variants must score every task for every variant)", regime, ct,
                         ", ".join(t for t in tasks if t not in usable))
            cols = {t: rat[t].to_numpy() for t in usable}
            if len(usable) == len(tasks) and len(tasks) > 1:
                cols[MEAN_TASK] = 1.0 / (1.0 + np.exp2(eff[tasks].to_numpy().mean(axis=1)))
            for t, r in cols.items():
                rows += _cross_rows(regime, f"{ct}|{t}", g.assign(pred_ref_ratio=r), level)
    return rows


def _cross_rows(regime, label, g, level) -> list[dict]:
    rows = []
    for task, metric in (("imbalance", "cross_imbalance_auroc"), ("direction", "cross_direction_auroc")):
        if task == "direction" and "ref_ratio" not in g.columns:
            continue
        y, score, _ = task_rows(task, g)
        rows += _auc_rows(regime, metric, label, "all", y, score, level)
    return rows


def add_q_values(df: pd.DataFrame) -> pd.DataFrame:
    """``q_value``: Benjamini–Hochberg over every paired regime test of the ensemble (``delong_*``
    rows) of the run; the single replicates' tests get none."""
    tests = (df["metric"].str.startswith("delong_") & (df["replicate"] == ENSEMBLE)).to_numpy()
    q = np.full(len(df), np.nan)
    q[tests] = M.bh_qvalues(df["p_value"].to_numpy(np.float64)[tests])
    return df.assign(q_value=q)


# ---------------------------------------------------------------- the whole evaluation


def check_params(p: dict) -> None:
    """Bin widths and bootstrap size positive, CI level in (0, 1)."""
    for k in ("evaluate_height_bin", "evaluate_bootstrap", "evaluate_block_bp"):
        if not p[k] > 0:
            raise InputError(k, f"{k} = {p[k]!r} must be > 0", f"set {k} to a positive number (default {PARAMS[k]})")
    if not 0 < p["evaluate_ci_level"] < 1:
        raise InputError("evaluate_ci_level", f"evaluate_ci_level = {p['evaluate_ci_level']!r} must be in (0, 1)",
                         "use e.g. 0.95")


def evaluate(predictions: pd.DataFrame | None, scores: pd.DataFrame | None, sets: pd.DataFrame | None, *,
             peaks: pd.DataFrame | None = None, donor_counts: pd.DataFrame | None = None,
             strata_sets: pd.DataFrame | None = None, params: dict | None = None, seed: int = 0,
             scores_path="variant scores") -> pd.DataFrame:
    """All metrics as one long, deterministically ordered table (columns ``COLUMNS``): each
    replicate's, the ensemble's and the median over replicates (module docstring)."""
    p = {**PARAMS, **(params or {})}
    check_params(p)
    kw = dict(sets=sets, peaks=peaks, donor_counts=donor_counts, strata_sets=strata_sets, params=p, seed=seed,
              scores_path=scores_path)
    reps = replicate_labels(predictions, scores)
    per_rep = [evaluate_model(of_replicate(predictions, r), of_replicate(scores, r), **kw).assign(replicate=r)
               for r in reps]
    if len(reps) > 1:
        ens = evaluate_model(None if predictions is None else ensemble_predictions(predictions),
                             None if scores is None else ensemble_scores(scores), **kw)
        agree = agreement_rows(scores, sets, reps, scores_path)
        per_rep += [agree[r] for r in reps if r in agree]
        ens = pd.concat([ens, agree.get(ENSEMBLE)], ignore_index=True)
    else:
        ens = per_rep[0]
    per_rep = pd.concat(per_rep, ignore_index=True)
    med = median_rows(per_rep)
    df = pd.concat([per_rep, attach_sd(ens.assign(replicate=ENSEMBLE), med), med], ignore_index=True)
    return order_metrics(add_q_values(df[COLUMNS]))


def evaluate_model(predictions: pd.DataFrame | None, scores: pd.DataFrame | None, sets: pd.DataFrame | None, *,
                   peaks=None, donor_counts=None, strata_sets=None, params: dict, seed: int = 0,
                   scores_path="variant scores") -> pd.DataFrame:
    """Every metric of one model per regime (one replicate, or the ensemble); undefined ones dropped, logged."""
    p = params
    level, n_boot = float(p["evaluate_ci_level"]), int(p["evaluate_bootstrap"])
    rows: list[dict] = []
    if predictions is not None:
        rows += window_accuracy(predictions, level)
        peak_pred = attach_peak_strata(predictions, peaks)
        if len(peak_pred):
            cts = study_cell_types(peaks, peak_pred["cell_type"])
            rows += peak_accuracy(peak_pred, float(p["evaluate_height_bin"]), seed, level)
            rows += overcorrelation(peak_pred, cts, n_boot, seed, level)
            if donor_counts is not None:
                info = peak_pred.drop_duplicates("peak_id").set_index("peak_id")[["peak_kind", "cluster_label"]]
                rows += replicate_accuracy(donor_counts, info, cts, level)
    if scores is not None and strata_sets is not None and len(strata_sets):
        rows += stratum_matched_accuracy(scores, strata_sets, scores_path, level, n_boot, seed,
                                         int(p["evaluate_block_bp"]))
    if scores is not None and sets is not None:
        v = with_blocks(variant_table(scores, sets, scores_path), int(p["evaluate_block_bp"]))
        if len(v):
            rows += variant_accuracy(v, n_boot, seed, level)
            rows += effect_size_accuracy(v, n_boot, seed, level)
            rows += cross_cell_type(scores, v, level)
            rows += regime_tests(v, level)
    return drop_undefined(pd.DataFrame(rows, columns=COLUMNS))


def drop_undefined(df: pd.DataFrame) -> pd.DataFrame:
    """Rows whose value is not finite (too few items, a constant input) dropped, logged."""
    undefined = ~np.isfinite(df["value"].to_numpy(np.float64))
    if undefined.any():
        for r in df[undefined].head(10).itertuples(index=False):
            log.warning("undefined (dropped): %s %s %s %s (n=%d: too few items or a constant input)",
                        r.metric, r.regime, r.cell_type, r.stratum, r.n)
        log.warning("%d undefined metric(s) dropped", int(undefined.sum()))
    return df[~undefined].reset_index(drop=True)


def agreement_rows(scores: pd.DataFrame | None, sets: pd.DataFrame | None, reps: list[str], path
                   ) -> dict[str, pd.DataFrame]:
    """``replicate_direction_agreement`` per regime × cell type × stratum over the variant table's
    distinct variants: one frame per replicate (agreement with the ensemble's direction) and
    one ``ensemble`` frame (the share on which every replicate agrees), by replicate label."""
    if scores is None or sets is None:
        return {}
    ens = variant_table(ensemble_scores(scores), sets, path).drop_duplicates(["regime", "cell_type", "variant_id"])
    keys = ["regime", "cell_type", "variant_id"]
    by = [variant_table(of_replicate(scores, r), sets, path).drop_duplicates(keys).set_index(keys)["pred_ref_ratio"]
          for r in reps]
    rows = {r: [] for r in [*reps, ENSEMBLE]}
    for (regime, ct), g in ens.groupby(["regime", "cell_type"], sort=False):
        idx = pd.MultiIndex.from_frame(g[keys])
        ratio = np.stack([b.reindex(idx).to_numpy(np.float64) for b in by])
        scored = ~np.isnan(ratio).all(axis=1)      # an outside model is one model: rep1 only
        if scored.sum() < 2:
            continue
        labels, ratio = [r for r, ok in zip(reps, scored) if ok], ratio[scored]
        ens_ratio = g["pred_ref_ratio"].to_numpy(np.float64)
        complete = np.isfinite(ratio).all(axis=0) & np.isfinite(ens_ratio)
        for name, m in variant_masks(g).items():
            m = m & complete
            if not m.any():
                continue
            per, every = direction_agreement(ratio[:, m], ens_ratio[m])
            for r, val in zip([*labels, ENSEMBLE], [*per, every]):
                rows[r].append(_row(regime, "replicate_direction_agreement", ct, name, val, n=int(m.sum())))
    return {r: pd.DataFrame(v, columns=COLUMNS).assign(replicate=r) for r, v in rows.items()}


def order_metrics(df: pd.DataFrame) -> pd.DataFrame:
    """Sort rows by metric, regime (study order), replicate (rep1 …, ensemble, median), cell type and stratum."""
    regimes = regime_order(["replicate", *df["regime"].unique()]) if len(df) else []
    rank = {r: i for i, r in enumerate(regimes)}
    reps = replicate_labels(df[df["replicate"].str.startswith("rep")]) if len(df) else []
    rep_rank = {r: i for i, r in enumerate([*reps, ENSEMBLE, MEDIAN])}
    df = df.assign(_r=df["regime"].map(rank), _k=df["replicate"].map(rep_rank))
    df = df.sort_values(["metric", "_r", "_k", "cell_type", "stratum", "reference"], na_position="first",
                        kind="mergesort")
    df = df.drop(columns=["_r", "_k"]).reset_index(drop=True)
    df["n"] = df["n"].astype("int64")
    return df


def summarise(df: pd.DataFrame, inputs: dict) -> dict:
    """Headline figures per regime (means over cell types of the median over replicates) for the summary JSON."""
    head = {}
    reps = replicate_labels(df[~df["replicate"].isin([ENSEMBLE, MEDIAN])]) if len(df) else []
    med = df[df["replicate"] == MEDIAN]
    pick = {("pearson_peak", "all"), ("pearson_window", "all"), ("imbalance_auroc", "all"),
            ("direction_auroc", "all"), ("pearson_peak", "ubiquitous"), ("pearson_peak", "specific")}
    for (regime, metric, stratum), g in med.groupby(["regime", "metric", "stratum"]):
        if (metric, stratum) in pick:
            head.setdefault(regime, {})[f"{metric}_{stratum}"] = round(float(g["value"].mean()), 6)
    return {"rows": int(len(df)), "replicates": reps, "metrics": sorted(df["metric"].unique().tolist()),
            "regimes": regime_order(df["regime"].unique()) if len(df) else [],
            "headline": head, "inputs": inputs,
            "nonfinite_values": int((~np.isfinite(df["value"].to_numpy(np.float64))).sum())}


# ---------------------------------------------------------------- the step and the CLI


def load_inputs(predictions=None, scores=None, sets=None, peaks=None, donor_counts=None, imbalance=None,
                strata_sets=None, test_chroms=None) -> dict:
    """Read and check whichever inputs are given (paths or None)."""
    out: dict = {}
    if scores is not None:
        out["scores"] = normalise_scores(read_table(scores, (), "variant scores"), scores)
        out["scores_path"] = str(scores)
    if strata_sets is not None:
        st = read_table(strata_sets, ("cell_type", "variant_id", "ref_ratio", "stratum"), "stratum-matched variants")
        out["strata_sets"] = attach_variant_info(st, None, strata_sets, test_chroms)
    if predictions is not None:
        # label columns categorical, positions int32 (caveat.prediction_tables): ~4x less memory, same metrics
        out["predictions"] = check_predictions(read_table(predictions, PRED_COLS, "predictions", read_predictions),
                                               predictions)
    if sets is not None:
        imb = read_table(imbalance, ("cell_type", "variant_id"), "imbalance table") if imbalance else None
        out["sets"] = attach_variant_info(read_table(sets, SET_COLS, "variant sets"), imb, sets, test_chroms)
    if peaks is not None:
        out["peaks"] = read_table(peaks, ("peak_id", "kind"), "peaks")
    if donor_counts is not None:
        dc = read_table(donor_counts, ("peak_id", "donor", "cell_type"), "donor peak counts")
        if "value" not in dc.columns:
            raise InputError(donor_counts, "donor peak table lacks the column value (each donor's peak value under "
                                           "the peak rule)", "rerun cluster_peaks with this version of caveat")
        out["donor_counts"] = dc
    if "scores" in out and "sets" in out and "cell_type" not in out["scores"].columns:
        log.info("scores have no cell_type: each score applies to the variant in every cell type's sets")
    return out


def run(outdir_or_out: Path, inputs: dict, params: dict, seed: int) -> dict:
    """Evaluate and write ``metrics.parquet`` + ``evaluate.summary.json`` beside it."""
    df = evaluate(inputs.get("predictions"), inputs.get("scores"), inputs.get("sets"), peaks=inputs.get("peaks"),
                  donor_counts=inputs.get("donor_counts"), strata_sets=inputs.get("strata_sets"), params=params,
                  seed=seed, scores_path=inputs.get("scores_path", "variant scores"))
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
    inputs = load_inputs(o / "predictions.parquet", o / "variant_scores.parquet", o / "variant_sets.parquet", **opt,
                         test_chroms=ctx.params.get("test_chroms"))
    summary = run(ctx.out("metrics.parquet"), inputs, ctx.params, int(ctx.params.get("seed", 0)))
    write_run_bundle(o / BUNDLE_DIR, inputs, ctx.params, ctx.params.get("fasta"), o / "windows.parquet",
                     o / "build_dataset.summary.json")
    return {"rows": summary["rows"], "nonfinite_values": summary["nonfinite_values"]}


def write_run_bundle(dest: Path, inputs: dict, params: dict, fasta, windows: Path, dataset_summary: Path):
    """The benchmark bundle ``dest`` (:mod:`caveat.bundle`) from the run's windows, genome and evaluate's
    labelled variant tables; None (logged) when the run has no windows, no genome or no variant sets."""
    if not (fasta and Path(windows).exists() and Path(dataset_summary).exists() and "sets" in inputs):
        log.info("no benchmark bundle: windows.parquet, the genome or the variant sets are missing")
        return None
    return write_bundle(dest, windows_path=windows, summary_path=dataset_summary, fasta=fasta,
                        peaks=inputs.get("peaks"), sets=inputs["sets"], strata_sets=inputs.get("strata_sets"),
                        params=params)


STEP = Step(name="evaluate", run=run_step, needs=("predict", "score_variants"),
            optional_needs=("cluster_peaks", "call_imbalance", "match_negatives"),
            params={**PARAMS, "test_chroms": ["chr4", "chr5"], **BUNDLE_SETTINGS},
            doc="reference accuracy, over-correlation, variant-effect AUROCs by stratum with CIs")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="caveat evaluate", description=__doc__.splitlines()[0])
    ap.add_argument("--predictions", help="predictions.parquet (regime, kind, peak_id, chrom, start, end, "
                                          "cell_type, target, prediction)")
    ap.add_argument("--scores", help="variant scores (variant_id, pred_ref_ratio or ref_pred+alt_pred"
                                     "[, regime, cell_type]); any model's")
    ap.add_argument("--variant-sets", help="variant_sets.parquet (cell_type, variant_id, set[, ref_ratio, stratum, "
                                           "split])")
    ap.add_argument("--peaks", help="peaks.parquet (peak_id, kind, cluster_label) for own-cluster strata")
    ap.add_argument("--donor-counts", help="peaks_donor_counts.parquet (value per donor) for the inter-donor bound")
    ap.add_argument("--imbalance", help="imbalance.parquet (ref_ratio, stratum when the sets lack them)")
    ap.add_argument("--stratum-sets", help="variant_sets_stratum_matched.parquet (match_negatives' Fig. 4B set)")
    ap.add_argument("--out", default="metrics.parquet", help="output metrics.parquet (summary written beside it)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--bundle", help="also write the benchmark bundle (caveat.bundle) into this folder; needs --windows, "
                                     "--dataset-summary, --fasta and --variant-sets")
    ap.add_argument("--windows", help="with --bundle: windows.parquet")
    ap.add_argument("--dataset-summary", help="with --bundle: build_dataset.summary.json")
    ap.add_argument("--fasta", help="with --bundle: the genome FASTA")
    add_param_options(ap, STEP.params,
                      aliases={"evaluate_height_bin": ["--height-bin"], "evaluate_bootstrap": ["--bootstrap"],
                               "evaluate_ci_level": ["--ci-level"]},
                      helps={"test_chroms": "held-out chromosomes: variant metrics get a test_chroms stratum "
                                            "(sets without split)"})
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
                         a.stratum_sets, a.test_chroms)
    params = params_from_args(a, PARAMS)
    run(Path(a.out), inputs, params, a.seed)
    if a.bundle:
        if not (a.windows and a.dataset_summary and a.fasta and "sets" in inputs):
            raise InputError("--bundle", "the bundle needs the windows, the dataset summary, the genome and the variant "
                                         "sets", "pass --windows, --dataset-summary, --fasta and --variant-sets")
        write_run_bundle(Path(a.bundle), inputs, {**params_from_args(a, STEP.params), "seed": a.seed}, a.fasta,
                         Path(a.windows), Path(a.dataset_summary))
    print(f"metrics: {a.out}")
    return 0
