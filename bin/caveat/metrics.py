"""Accuracy metrics: Pearson R, DeLong AUROC (value, variance, paired test), AUPRC,
bootstrap helpers and histogram matching (peak heights, imbalance).

Everything is vectorised numpy; the DeLong variance uses the O(n log n)
midrank algorithm of Sun & Xu (2014), "Fast implementation of DeLong's
algorithm for comparing the areas under correlated receiver operating
characteristic curves", IEEE Signal Processing Letters 21(11).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from .stats import bh_qvalues  # noqa: F401  (one BH for the package; listed in __all__)

__all__ = [
    "pearson", "pearson_ci", "pearson_per_task", "log2p1", "midrank", "delong_auc", "delong_paired", "auc_ci",
    "average_precision", "bootstrap", "bootstrap_weights", "bootstrap_average_precision", "weighted_pearson",
    "percentile_ci", "match_histograms", "resample_to_histogram", "replicate_ceiling", "AUCResult",
    "spearman", "block_keys", "block_labels", "block_bootstrap_weights", "weighted_auc", "weighted_statistic",
    "weighted_spearman", "weighted_topk_direction_accuracy", "bh_qvalues", "topk_direction_accuracy",
]


def log2p1(x) -> np.ndarray:
    """``log2(x + 1)`` as float64 (peak heights, targets and predictions)."""
    return np.log2(np.asarray(x, dtype=np.float64) + 1.0)


def pearson(x, y) -> float:
    """Pearson correlation of two 1-D arrays of length ``n``.

    Pairs where either value is non-finite are dropped. Returns NaN when fewer
    than 3 pairs remain or either side is constant (R is undefined there).
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.shape != y.shape:
        raise ValueError(f"pearson: shapes differ {x.shape} vs {y.shape}")
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if x.size < 3:
        return float("nan")
    xc = x - x.mean()
    yc = y - y.mean()
    den = np.sqrt((xc @ xc) * (yc @ yc))
    if den == 0 or not np.isfinite(den):
        return float("nan")
    return float(np.clip((xc @ yc) / den, -1.0, 1.0))


def pearson_per_task(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Pearson R per column of (N, T) arrays → (T,); NaN for a constant column."""
    p = pred - pred.mean(0)
    t = target - target.mean(0)
    den = np.sqrt((p * p).sum(0) * (t * t).sum(0))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (p * t).sum(0) / np.where(den > 0, den, 1), np.nan)


def pearson_ci(r: float, n: int, level: float = 0.95) -> tuple[float, float]:
    """Confidence interval of a Pearson R by Fisher's z transform (needs n > 3)."""
    if not np.isfinite(r) or n <= 3:
        return float("nan"), float("nan")
    z = np.arctanh(np.clip(r, -0.9999999, 0.9999999))
    half = stats.norm.ppf(0.5 + level / 2) / np.sqrt(n - 3)
    return float(np.tanh(z - half)), float(np.tanh(z + half))


def midrank(x: np.ndarray) -> np.ndarray:
    """Midranks (1-based, ties get their average rank) of a 1-D array, O(n log n)."""
    return stats.rankdata(x, method="average")


@dataclass(frozen=True)
class AUCResult:
    """AUROC with its DeLong variance."""

    auc: float
    var: float
    n_pos: int
    n_neg: int

    def ci(self, level: float = 0.95) -> tuple[float, float]:
        return auc_ci(self.auc, self.var, level)


def _split(y_true, scores) -> tuple[np.ndarray, np.ndarray]:
    """Scores of positives ``(k, m)`` and negatives ``(k, n)`` for k score vectors."""
    y = np.asarray(y_true).astype(bool)
    s = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    if s.shape[1] != y.shape[0]:
        raise ValueError(f"scores have {s.shape[1]} values for {y.shape[0]} labels")
    return s[:, y], s[:, ~y]


def _delong_components(pos: np.ndarray, neg: np.ndarray):
    """Sun & Xu structural components.

    Parameters
    ----------
    pos : (k, m) array, scores of the m positives under k classifiers
    neg : (k, n) array, scores of the n negatives

    Returns
    -------
    aucs : (k,) array
    v10 : (k, m) array, placement values of positives
    v01 : (k, n) array, placement values of negatives
    """
    m, n = pos.shape[1], neg.shape[1]
    both = np.concatenate([pos, neg], axis=1)
    # midranks among all, among positives and among negatives from one sort per classifier
    # (:func:`_resample_midranks` with 0/1 weights): 3x fewer sorts than a rankdata call each
    is_pos = np.arange(m + n) < m
    weights = np.vstack([np.ones(m + n), is_pos, ~is_pos]).astype(np.float64)
    ranks = np.stack([_resample_midranks(weights, row) for row in both])   # (k, 3, m + n)
    tz, tx, ty = ranks[:, 0], ranks[:, 1, :m], ranks[:, 2, m:]
    nan_row = np.isnan(both).any(axis=1)       # as rankdata's nan_policy="propagate": NaN AUROC
    tz[nan_row], tx[nan_row], ty[nan_row] = np.nan, np.nan, np.nan
    aucs = (tz[:, :m].sum(axis=1) - m * (m + 1) / 2.0) / (m * n)
    v10 = (tz[:, :m] - tx) / n
    v01 = 1.0 - (tz[:, m:] - ty) / m
    return aucs, v10, v01


def _delong_cov(pos: np.ndarray, neg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    m, n = pos.shape[1], neg.shape[1]
    aucs, v10, v01 = _delong_components(pos, neg)
    s10 = np.atleast_2d(np.cov(v10)) if m > 1 else np.zeros((len(aucs), len(aucs)))
    s01 = np.atleast_2d(np.cov(v01)) if n > 1 else np.zeros((len(aucs), len(aucs)))
    return aucs, s10 / m + s01 / n


def delong_auc(y_true, score) -> AUCResult:
    """AUROC and its DeLong variance.

    Parameters
    ----------
    y_true : (n,) array of bool or 0/1
    score : (n,) array; higher means more likely positive

    Returns
    -------
    AUCResult
        ``auc`` equals ``sklearn.metrics.roc_auc_score``; NaN when one class is empty.

    Notes
    -----
    Hand-written because no maintained library gives the DeLong variance (sklearn, scipy and
    statsmodels give the AUROC only). With the variance it takes 1.1× the time of
    ``roc_auc_score`` alone on 1 M scores (``benchmarks/bench_libraries.py``).
    """
    pos, neg = _split(y_true, score)
    m, n = pos.shape[1], neg.shape[1]
    if m == 0 or n == 0:
        return AUCResult(float("nan"), float("nan"), m, n)
    aucs, cov = _delong_cov(pos, neg)
    return AUCResult(float(aucs[0]), float(cov[0, 0]), m, n)


def delong_paired(y_true, score_a, score_b) -> dict:
    """DeLong test between two correlated AUROCs on the same labelled items.

    Parameters
    ----------
    y_true : (n,) array
    score_a, score_b : (n,) arrays, two classifiers' scores of the same items

    Returns
    -------
    dict
        ``auc_a``, ``auc_b``, ``diff`` (a − b), ``var_diff``, ``z``, ``p_value``
        (two-sided, normal), ``ci_low``/``ci_high`` of the difference (95 %).
    """
    pos, neg = _split(y_true, np.vstack([score_a, score_b]))
    m, n = pos.shape[1], neg.shape[1]
    nan = float("nan")
    if m == 0 or n == 0:
        return dict(auc_a=nan, auc_b=nan, diff=nan, var_diff=nan, z=nan, p_value=nan,
                    ci_low=nan, ci_high=nan, n_pos=m, n_neg=n)
    aucs, cov = _delong_cov(pos, neg)
    diff = float(aucs[0] - aucs[1])
    var = float(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    if var <= 0:
        z = 0.0 if diff == 0 else float(np.sign(diff) * np.inf)
        p = 1.0 if diff == 0 else 0.0
        half = 0.0
    else:
        z = diff / np.sqrt(var)
        p = float(2 * stats.norm.sf(abs(z)))
        half = float(stats.norm.ppf(0.975) * np.sqrt(var))
    return dict(auc_a=float(aucs[0]), auc_b=float(aucs[1]), diff=diff, var_diff=var, z=float(z),
                p_value=p, ci_low=diff - half, ci_high=diff + half, n_pos=m, n_neg=n)


def auc_ci(auc: float, var: float, level: float = 0.95) -> tuple[float, float]:
    """Normal-approximation CI of an AUROC from its DeLong variance, clipped to [0, 1]."""
    if not (np.isfinite(auc) and np.isfinite(var)):
        return float("nan"), float("nan")
    half = stats.norm.ppf(0.5 + level / 2) * np.sqrt(max(var, 0.0))
    return float(max(0.0, auc - half)), float(min(1.0, auc + half))


def average_precision(y_true, score) -> float:
    """Area under the precision-recall curve as average precision (step rule).

    Equal to ``sklearn.metrics.average_precision_score``: AP = Σ (R_k − R_{k−1}) P_k
    over distinct score thresholds, ties handled as one threshold.

    Parameters
    ----------
    y_true : (n,) array of bool or 0/1
    score : (n,) array
    """
    y = np.asarray(y_true).astype(bool)
    s = np.asarray(score, dtype=np.float64)
    if y.sum() == 0:
        return float("nan")
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s)), s.size - 1]  # last index of each distinct threshold
    tps = np.cumsum(y)[last]
    fps = (last + 1) - tps
    precision = tps / (tps + fps)
    recall = tps / tps[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def bootstrap(stat, *arrays, n_boot: int = 200, seed: int = 0, strata=None) -> np.ndarray:
    """Bootstrap distribution of ``stat(*resampled_arrays)``.

    Parameters
    ----------
    stat : callable taking the arrays (each resampled with the same indices)
    *arrays : (n,) arrays
    n_boot : int
    seed : int
    strata : (n,) array, optional
        Resample within each stratum (e.g. the class label, so both classes stay
        represented as for a DeLong comparison).

    Returns
    -------
    (n_boot,) array of the statistic.
    """
    rng = np.random.default_rng(seed)
    n = len(arrays[0])
    groups = [np.arange(n)] if strata is None else [np.flatnonzero(strata == g) for g in np.unique(strata)]
    out = np.empty(n_boot)
    for b in range(n_boot):
        idx = np.concatenate([g[rng.integers(0, g.size, g.size)] for g in groups])
        out[b] = stat(*(np.asarray(a)[idx] for a in arrays))
    return out


def bootstrap_weights(n: int, n_boot: int, seed: int = 0, strata=None) -> np.ndarray:
    """Multiplicities of each item in ``n_boot`` bootstrap resamples, shape (n_boot, n), float64.

    With ``strata`` ((n,) labels) each stratum is resampled to its own size.
    """
    rng = np.random.default_rng(seed)
    groups = [np.arange(n)] if strata is None else [np.flatnonzero(strata == g) for g in np.unique(strata)]
    w = np.zeros((n_boot, n), dtype=np.float64)
    for b in range(n_boot):
        for g in groups:
            w[b, g] = np.bincount(rng.integers(0, g.size, g.size), minlength=g.size)
    return w


def bootstrap_average_precision(y_true, score, n_boot: int = 200, seed: int = 0, chunk: int = 64,
                                weights: np.ndarray | None = None) -> np.ndarray:
    """Bootstrap distribution of :func:`average_precision`, shape (n_boot,).

    Sorts once and evaluates every resample as multiplicity weights on the
    sorted items (a cumulative sum per resample), instead of re-sorting each.
    ``weights`` ((n_boot, n) multiplicities, e.g. :func:`block_bootstrap_weights`)
    replaces the default class-stratified item resampling; a resample without
    positives gives NaN.
    """
    y = np.asarray(y_true).astype(bool)
    s = np.asarray(score, dtype=np.float64)
    order = np.argsort(-s, kind="mergesort")
    ys, ss = y[order], s[order]
    last = np.r_[np.flatnonzero(np.diff(ss)), ss.size - 1]
    w_all = (bootstrap_weights(y.size, n_boot, seed, strata=y) if weights is None else weights)[:, order]
    n_boot = len(w_all)
    out = np.empty(n_boot)
    for i in range(0, n_boot, chunk):
        w = w_all[i:i + chunk]
        tps = np.cumsum(w * ys, axis=1)[:, last]
        seen = np.cumsum(w, axis=1)[:, last]
        with np.errstate(invalid="ignore", divide="ignore"):
            precision = np.where(seen > 0, tps / seen, 0.0)
            recall = tps / tps[:, -1:]
        dr = np.diff(np.concatenate([np.zeros((len(w), 1)), recall], axis=1), axis=1)
        out[i:i + chunk] = np.sum(dr * precision, axis=1)
    return out


def percentile_ci(samples: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of bootstrap samples (NaNs ignored)."""
    s = np.asarray(samples, dtype=np.float64)
    s = s[np.isfinite(s)]
    if s.size == 0:
        return float("nan"), float("nan")
    lo, hi = np.quantile(s, [0.5 - level / 2, 0.5 + level / 2])
    return float(lo), float(hi)


def match_histograms(a, b, bin_width: float, seed: int = 0, lo: float | None = None
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Subsample two sets so their histograms are identical, without replacement.

    Values are binned in ``bin_width``-wide bins starting at ``lo`` (default: the
    smallest value). In every bin both sets keep ``min(count_a, count_b)``
    items drawn at random, so when ``a`` is the larger set (ubiquitous peaks
    matched to cell-type-specific peak heights) ``b`` is kept whole wherever
    ``a`` has enough items, and ``a`` is resampled to ``b``'s histogram.

    Parameters
    ----------
    a, b : (n_a,), (n_b,) arrays of finite values
    bin_width : float
    seed : int
    lo : float, optional

    Returns
    -------
    idx_a, idx_b : sorted int arrays of the kept positions in ``a`` and ``b``.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if bin_width <= 0:
        raise ValueError("bin_width must be > 0")
    if a.size == 0 or b.size == 0:
        return np.array([], dtype=np.int64), np.array([], dtype=np.int64)
    lo = min(a.min(), b.min()) if lo is None else lo
    bins_a = np.floor((a - lo) / bin_width + 1e-9).astype(np.int64)
    bins_b = np.floor((b - lo) / bin_width + 1e-9).astype(np.int64)
    nbins = int(max(bins_a.max(), bins_b.max())) + 1
    ca = np.bincount(bins_a, minlength=nbins)
    cb = np.bincount(bins_b, minlength=nbins)
    keep = np.minimum(ca, cb)
    rng = np.random.default_rng(seed)
    return _draw(bins_a, keep, rng), _draw(bins_b, keep, rng)


def _draw(bins: np.ndarray, keep: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Positions with ``keep[bin]`` items drawn per bin: a random key, sorted within bin."""
    key = rng.random(bins.size)
    order = np.lexsort((key, bins))  # by bin, random within bin
    sorted_bins = bins[order]
    starts = np.searchsorted(sorted_bins, np.arange(keep.size))
    rank = np.arange(bins.size) - starts[sorted_bins]
    return np.sort(order[rank < keep[sorted_bins]])


def resample_to_histogram(a, b, bin_width: float, seed: int = 0, lo: float = 0.0) -> np.ndarray:
    """Resample ``a`` to the binned histogram of ``b``; ``b`` stays whole.

    The study's height control (Fig. S1C; the authors'
    ``Peak_height_matched_performance.ipynb``): in every ``bin_width``-wide bin
    from ``lo``, draw as many items of ``a`` as ``b`` has there — without
    replacement when ``a`` has enough, with replacement when it runs short,
    none when it has none.

    Parameters
    ----------
    a, b : (n_a,), (n_b,) arrays of finite values
    bin_width : float
    seed : int
    lo : float

    Returns
    -------
    idx_a : numpy.ndarray of int64, shape (m,)
        Positions in ``a`` (sorted; repeats where drawn with replacement);
        ``m = n_b`` minus the items of ``b`` in bins where ``a`` is empty.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if bin_width <= 0:
        raise ValueError("bin_width must be > 0")
    if a.size == 0 or b.size == 0:
        return np.array([], dtype=np.int64)
    bins_a = np.floor((a - lo) / bin_width + 1e-9).astype(np.int64)
    bins_b = np.floor((b - lo) / bin_width + 1e-9).astype(np.int64)
    rng = np.random.default_rng(seed)
    out = []
    for k, want in zip(*np.unique(bins_b, return_counts=True)):
        have = np.flatnonzero(bins_a == k)
        if have.size:
            out.append(rng.choice(have, size=want, replace=have.size < want))
    return np.sort(np.concatenate(out)) if out else np.array([], dtype=np.int64)


def replicate_ceiling(r: float, k: int) -> float:
    """Expected ceiling of a model's R against a pool of ``k`` replicates.

    ``r`` is the mean correlation between two single replicates; the pool's
    reliability is Spearman-Brown's k r / (1 + (k − 1) r), and no predictor
    can correlate with the pool better than the square root of it.
    """
    if not np.isfinite(r) or r <= 0:
        return float("nan") if not np.isfinite(r) else 0.0
    return float(np.sqrt(k * r / (1 + (k - 1) * r)))


# ---------------------------------------------------------------- structure-aware uncertainty, ranks, BH


def spearman(x, y) -> float:
    """Spearman rank correlation of two (n,) arrays: Pearson R of their midranks.

    Equal to ``scipy.stats.spearmanr`` (ties get average ranks); pairs with a
    non-finite value are dropped first; NaN below 3 pairs or for a constant side.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 3:
        return float("nan")
    return pearson(midrank(x[ok]), midrank(y[ok]))


def block_keys(peak_id, chrom, pos, block_bp: int) -> np.ndarray:
    """The resampling unit of each variant: its peak, else a fixed genomic block.

    Variants of one peak share input windows (and so predictions); a variant
    outside every peak falls in the ``block_bp``-wide block ``⌊pos / block_bp⌋``
    of its contig.

    Parameters
    ----------
    peak_id : (n,) array-like of str or None
    chrom : (n,) array-like of str
    pos : (n,) array-like of int (1-based positions)
    block_bp : int, > 0

    Returns
    -------
    (n,) object array of labels ``peak:<peak_id>`` or ``block:<chrom>:<block>``: computed once per
    table, any subset's sorted codes (:func:`block_bootstrap_weights`) equal :func:`block_labels`
    of that subset.
    """
    if block_bp <= 0:
        raise ValueError("block_bp must be > 0")
    pk = pd.Series(list(peak_id), dtype=object)
    locus = (pd.Series(list(chrom), dtype=object).astype(str) + ":"
             + (np.asarray(pos, dtype=np.int64) // int(block_bp)).astype(str))
    return np.where(pk.notna().to_numpy(), "peak:" + pk.astype(str), "block:" + locus).astype(object)


def block_labels(peak_id, chrom, pos, block_bp: int) -> np.ndarray:
    """:func:`block_keys` as (n,) int64 codes 0 … K−1 (sorted label order: deterministic)."""
    return pd.factorize(pd.Series(block_keys(peak_id, chrom, pos, block_bp)), sort=True)[0].astype(np.int64)


def block_bootstrap_weights(blocks, n_boot: int, seed: int = 0) -> np.ndarray:
    """Multiplicities of each item when whole blocks are resampled, shape (n_boot, n), float64.

    Each resample draws K blocks with replacement out of the K present; every
    item of a drawn block enters once per draw. With one item per block this
    is the ordinary bootstrap.

    Parameters
    ----------
    blocks : (n,) array of block codes or labels (e.g. :func:`block_labels`, :func:`block_keys`)
    """
    codes = pd.factorize(pd.Series(np.asarray(blocks)), sort=True)[0]
    k = int(codes.max()) + 1 if codes.size else 0
    if k == 0:
        return np.zeros((n_boot, 0))
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, k, (n_boot, k)) + (np.arange(n_boot) * k)[:, None]
    counts = np.bincount(draws.ravel(), minlength=n_boot * k).reshape(n_boot, k)
    return counts[:, codes].astype(np.float64)


def weighted_auc(w: np.ndarray, y_true, score) -> np.ndarray:
    """AUROC under each row of multiplicity weights ``w`` (B, n) → (B,), ties counted ½.

    Equal to the AUROC of the resample each row describes; NaN where a row
    leaves one class empty. Sorts once: O(B·n); 5.6× faster than a loop of
    ``sklearn.metrics.roc_auc_score(..., sample_weight=row)`` for 200 × 100 k
    (``benchmarks/bench_libraries.py``).
    """
    y = np.asarray(y_true).astype(bool)
    s = np.asarray(score, dtype=np.float64)
    order = np.argsort(s, kind="mergesort")
    ss, ys, ws = s[order], y[order], w[:, order]
    starts = np.r_[0, np.flatnonzero(np.diff(ss)) + 1]  # first item of each distinct score
    pos = np.add.reduceat(ws * ys, starts, axis=1) if ss.size else np.zeros((len(w), 0))
    neg = np.add.reduceat(ws * ~ys, starts, axis=1) if ss.size else np.zeros((len(w), 0))
    below = np.cumsum(neg, axis=1) - neg
    num = np.sum(pos * (below + 0.5 * neg), axis=1)
    den = pos.sum(axis=1) * neg.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def _weighted_r(w: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson R of paired rows ``x``, ``y`` (B, n) under weights ``w`` (B, n) → (B,), centred per
    row (no cancellation for near-constant rows); NaN below 3 weighted items or for a constant side."""
    tot = w.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        xc = x - ((w * x).sum(axis=1) / tot)[:, None]
        yc = y - ((w * y).sum(axis=1) / tot)[:, None]
        sxy, sxx, syy = (w * xc * yc).sum(axis=1), (w * xc * xc).sum(axis=1), (w * yc * yc).sum(axis=1)
        den = np.sqrt(sxx * syy)
        r = np.where((tot >= 3) & (den > 0), sxy / den, np.nan)
    return np.clip(r, -1.0, 1.0)


def _finite_pairs(w: np.ndarray, x, y) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``w`` with the pairs where x or y is non-finite weighted 0 (and their values set to 0)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    ok = np.isfinite(x) & np.isfinite(y)
    return np.where(ok, w, 0.0), np.where(ok, x, 0.0), np.where(ok, y, 0.0)


def _resample_midranks(w: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Midrank of each item within each resample ``w`` (B, n) → (B, n) (1-based; all copies of
    an item, and items tied with it, share the average rank of their block)."""
    order = np.argsort(x, kind="mergesort")
    starts = np.r_[0, np.flatnonzero(np.diff(x[order])) + 1]
    group = np.empty(x.size, dtype=np.int64)
    group[order] = np.repeat(np.arange(starts.size), np.diff(np.r_[starts, x.size]))
    wg = np.add.reduceat(w[:, order], starts, axis=1)
    rank = np.cumsum(wg, axis=1) - wg + (wg + 1.0) / 2.0
    return rank[:, group]


def _by_row_chunks(f, w: np.ndarray, chunk: int = 32) -> np.ndarray:
    """``f(w[i:i + chunk])`` concatenated: (chunk, n) temporaries instead of (B, n) ones."""
    if len(w) == 0:
        return np.empty(0)
    return np.concatenate([f(w[i:i + chunk]) for i in range(0, len(w), chunk)])


def weighted_pearson(w: np.ndarray, x, y) -> np.ndarray:
    """:func:`pearson` of each resample described by multiplicities ``w`` (B, n) → (B,).

    Same rules as :func:`pearson` (non-finite pairs dropped; NaN below 3 items or
    for a constant side), equal to ``weighted_statistic(pearson, w, x, y)`` without
    materialising the resampled arrays (tests/test_metrics.py).
    """
    w, x, y = _finite_pairs(np.asarray(w, dtype=np.float64), x, y)
    return _by_row_chunks(lambda c: _weighted_r(c, np.broadcast_to(x, c.shape), np.broadcast_to(y, c.shape)), w)


def weighted_spearman(w: np.ndarray, x, y) -> np.ndarray:
    """:func:`spearman` of each resample described by multiplicities ``w`` (B, n) → (B,).

    Sorts each side once; per resample the midranks follow from cumulative
    weights over the distinct values, then a weighted Pearson R of the ranks:
    O(B·n) instead of B rank sorts of the resampled arrays (equal to
    ``weighted_statistic(spearman, w, x, y)``, tests/test_metrics.py).
    """
    w, x, y = _finite_pairs(np.asarray(w, dtype=np.float64), x, y)
    return _by_row_chunks(lambda c: _weighted_r(c, _resample_midranks(c, x), _resample_midranks(c, y)), w)


def weighted_topk_direction_accuracy(w: np.ndarray, pred_effect, obs_effect, fraction: float) -> np.ndarray:
    """:func:`topk_direction_accuracy` of each resample described by ``w`` (B, n) → (B,).

    The resample's items ranked by |predicted effect| are the items' stable order
    with each repeated ``w`` times, so the top ⌈fraction · Σw⌉ are a prefix of
    cumulative weights (the last item partly). NaN for an empty resample.
    """
    w = np.asarray(w, dtype=np.float64)
    pe = np.asarray(pred_effect, dtype=np.float64)
    oe = np.asarray(obs_effect, dtype=np.float64)
    order = np.argsort(-np.abs(pe), kind="mergesort")
    right = (np.sign(pe) == np.sign(oe))[order]

    def acc(c):
        c = c[:, order]
        k = np.ceil(fraction * c.sum(axis=1) - 1e-9)
        before = np.cumsum(c, axis=1) - c
        take = np.clip(k[:, None] - before, 0.0, c)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(k > 0, (take * right).sum(axis=1) / k, np.nan)
    return _by_row_chunks(acc, w)


def weighted_statistic(stat, w: np.ndarray, *arrays) -> np.ndarray:
    """``stat(*resampled arrays)`` for each row of multiplicities ``w`` (B, n) → (B,).

    The resample repeats item i ``w[b, i]`` times (in item order), so any
    statistic can be bootstrapped over blocks: one call of ``stat`` per resample
    (the reference the vectorised ``weighted_*`` functions are tested against).
    """
    arrays = [np.asarray(a) for a in arrays]
    out = np.empty(len(w))
    for b, row in enumerate(w):
        idx = np.repeat(np.arange(row.size), row.astype(np.int64))
        out[b] = stat(*(a[idx] for a in arrays)) if idx.size else np.nan
    return out


def topk_direction_accuracy(pred_effect, obs_effect, fraction: float) -> tuple[float, int]:
    """Direction accuracy among the top ``fraction`` of items by |predicted effect|.

    Items are ranked by |pred_effect| (descending; ties keep input order), the
    first ⌈fraction · n⌉ kept, and accuracy is the share whose predicted sign
    equals the observed sign (a predicted effect of exactly 0 is never right).

    Parameters
    ----------
    pred_effect, obs_effect : (n,) arrays (e.g. predicted and observed log ALT/REF)
    fraction : float in (0, 1]

    Returns
    -------
    (accuracy, k)
    """
    pe = np.asarray(pred_effect, dtype=np.float64)
    oe = np.asarray(obs_effect, dtype=np.float64)
    if pe.size == 0:
        return float("nan"), 0
    k = int(np.ceil(fraction * pe.size - 1e-9))
    top = np.argsort(-np.abs(pe), kind="mergesort")[:k]
    return float(np.mean(np.sign(pe[top]) == np.sign(oe[top]))), k
