"""MATCH_NEGATIVES: per cell type, a balanced (negative) variant set matched to the
imbalanced (positive) set on read depth, and a peak-stratum set matched on effect size.

Depth matching (Kathail et al., Appendix B.2; the authors' ``make_allelic_imbalance_sets.py``):
the positives' log(total reads) range is cut into ``match_bins`` equal-width bins
(balanced variants deeper than the deepest positive join the top bin, as the
authors' ``np.digitize`` does); every bin then receives ``multiplier ×`` its
positive count of balanced variants drawn at random (seeded). **No positive is
ever dropped**: every imbalanced variant is in the positive set. The multiplier
is the largest the final bins allow, ``min over bins of ⌊balanced / positives⌋``
(the study reached 7×; the authors' code asserts a fixed 7×), optionally capped by
``match_max_ratio``. A sparse bin (e.g. a few very deep positives with almost no
balanced variant as deep) would pull that minimum to 1× or 0×, so bins are
merged first: while the multiplier is below ``match_target_ratio`` (7×, the
study's), the bin that limits it is merged with its neighbour (the one giving
the higher ratio) if it is sparse (fewer positives than an even share of the
``match_bins``) or while more than ``match_min_bins`` (10) bins hold positives;
the finest stage with the largest multiplier is kept. The step logs the
multiplier, the bin that bounds it and the merges.

Stratum matching (the study's Fig. 4B control; strata from :mod:`caveat.strata`):
per cell type, every tested variant (REF+ALT above the imbalance threshold) in
the cell type's **own** specific cluster(s) or in the ubiquitous cluster is
binned by ``|ref_ratio - 0.5|`` (``stratum_match_bins`` equal-width bins on
[0, 0.5]), and each bin keeps ``min(n_ubiquitous, n_specific)`` variants of each
stratum, drawn at random: both strata then have the same binned imbalance
distribution. Variants in other cell types' specific peaks are left out.

Region-controlled negatives (issue 18 point 2; beyond the study): a second
negative set drawn from the **same peaks** as the positives, so that a score
that only knows "this peak is strong/open" cannot separate the sets. For every
peak holding positives, ``region_match_ratio ×`` its positive count of balanced
sites of the same peak are drawn at random (``region_match = same_peak``).
Where a peak has too few balanced sites, each of its positives' shortfall is
drawn from balanced sites of other peaks in the same cell (``matched_peak``):
``region_match_bins`` equal-count bins of the peak's value in this cell type
(log2(value_<ct> + 1) of ``peaks.parquet``; ``acc_<ct>`` when there is no
value column; quantiles of the positives' peaks; a peak outside the
positives' value range is never drawn) × ``region_match_bins``
equal-width bins of the distance to the peak centre (the summit of a union
peak) relative to the half-width, on [0, 1]. A cell that runs short leaves
the shortfall unfilled (counted). Without ``peaks.parquet`` only same-peak
draws are made; positives outside every peak get none. These rows are
``set = negative`` with ``negative_set = region_controlled``; the
depth-matched ones have ``negative_set = depth_matched``; positives have a
null ``negative_set`` (they enter both comparisons). A balanced site may be
in both negative sets (two rows).

Both tables carry ``split`` (train/valid/test by ``valid_chroms``/``test_chroms``)
so that every variant metric can also be reported on the held-out chromosomes.

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
from .step_cli import add_param_options, params_from_args
from .strata import KINDS

log = get_logger("match_negatives")

PARAMS = {
    "match_bins": 20,          # equal-width bins of log(total reads) over the positives' range
    "match_target_ratio": 7,   # merge limiting depth bins while negatives per positive are below this (the study's 7x)
    "match_min_bins": 10,      # ... sparse bins always, dense ones down to this many bins
    "match_max_ratio": 0,      # cap on negatives per positive; 0 = as many as the bins allow
    "stratum_match_bins": 20,  # equal-width bins of |ref_ratio - 0.5| on [0, 0.5] for the Fig. 4B control
    "region_match_ratio": 1,   # region-controlled negatives per positive, from the positive's own peak (0: none)
    "region_match_bins": 5,    # fallback bins of peak value and of distance to the peak centre
}
SPLIT_PARAMS = {"valid_chroms": ["chr7", "chr14", "chr15"], "test_chroms": ["chr4", "chr5"]}
CARRY = ("cell_type", "variant_id", "chrom", "pos", "ref", "alt", "donor", "total", "ref_ratio", "pvalue",
         "qvalue", "label", "peak_id", "peak_kind", "cluster", "cluster_label", "stratum")
SETS_COLUMNS = ("cell_type", "variant_id", "chrom", "pos", "ref", "alt", "donor", "set", "negative_set",
                "region_match", "match_bin", "total", "ref_ratio", "pvalue", "qvalue", "peak_id", "peak_kind",
                "cluster", "cluster_label", "stratum", "split")
DEPTH, REGION = "depth_matched", "region_controlled"
STRATUM_COLUMNS = ("cell_type", "variant_id", "chrom", "pos", "ref", "alt", "donor", "peak_id", "peak_kind",
                   "cluster", "cluster_label", "stratum", "split", "label", "total", "ref_ratio",
                   "abs_ref_ratio_dev", "match_bin")
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


def depth_bins(pos_total: np.ndarray, neg_total: np.ndarray, n_bins: int
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Edges and the base depth bin of every positive and balanced variant.

    Balanced variants deeper than the deepest positive join the top bin (the
    authors' ``np.digitize``); shallower than the shallowest positive: -1.

    Returns
    -------
    edges : (n_bins + 1,) log scale
    pos_bin : (p,) int
    neg_bin : (c,) int, -1 = below the positives' range
    """
    edges = depth_edges(pos_total, n_bins)
    pos_bin = bin_values(np.log(pos_total.astype(np.float64)), edges)
    if neg_total.size == 0:
        return edges, pos_bin, np.zeros(0, np.int64)
    ln = np.log(neg_total.astype(np.float64))
    neg_bin = bin_values(ln, edges)
    neg_bin[ln > edges[-1]] = n_bins - 1
    return edges, pos_bin, neg_bin


def _multiplier(n_pos: np.ndarray, n_bal: np.ndarray) -> tuple[int, int]:
    """Largest multiplier every group with positives allows, and the group that sets it."""
    used = np.flatnonzero(n_pos > 0)
    ratios = n_bal[used] // n_pos[used]
    k = int(np.argmin(ratios))
    return int(ratios[k]), int(used[k])


def merge_sparse_bins(n_pos: np.ndarray, n_bal: np.ndarray, *, target: int = 7, min_bins: int = 10,
                      cap: int = 0) -> tuple[np.ndarray, list[dict]]:
    """Merge adjacent depth bins while the multiplier is below ``target``.

    The group that limits the multiplier is merged with the neighbour giving the
    higher balanced/positive ratio when it is *sparse* (fewer positives than an
    even share, ``1 / n_bins`` of them) or while more than ``min_bins`` groups
    hold positives. A merged ratio is a weighted mean of the limiting (lowest)
    ratio and a higher one, so the multiplier never falls. The finest stage with
    the largest (capped) multiplier is kept.

    Parameters
    ----------
    n_pos, n_bal : (n_bins,) int
        Positives and balanced candidates per base bin.
    target : int
        ``match_target_ratio``: no merging once the multiplier reaches it (0: never merge).
    min_bins : int
        ``match_min_bins``: merging dense bins stops at this many bins holding positives.
    cap : int
        ``match_max_ratio`` (0 = none).

    Returns
    -------
    group : (n_bins,) int
        Merged group of each base bin (0, 1, … in depth order).
    stages : list of dict
        ``multiplier`` and ``groups`` (number holding positives) at every stage.
    """
    bounds = [[b, b + 1] for b in range(n_pos.size)]  # base-bin ranges of the current groups
    best, stages, share = None, [], n_pos.sum() / n_pos.size
    while True:
        gp = np.array([n_pos[a:b].sum() for a, b in bounds])
        gb = np.array([n_bal[a:b].sum() for a, b in bounds])
        mult, lim = _multiplier(gp, gb)
        eff = min(mult, cap) if cap else mult
        stages.append({"multiplier": mult, "groups": int((gp > 0).sum())})
        if best is None or eff > best[0]:
            best = (eff, [list(x) for x in bounds])
        sparse = gp[lim] < share
        if mult >= target or len(bounds) == 1 or (cap and mult >= cap) or not (sparse or (gp > 0).sum() > min_bins):
            break
        nb = [j for j in (lim - 1, lim + 1) if 0 <= j < len(bounds)]
        ratio = [(gb[lim] + gb[j]) / (gp[lim] + gp[j]) for j in nb]
        j = nb[int(np.argmax(ratio))]
        lo, hi = min(lim, j), max(lim, j)
        bounds[lo:hi + 1] = [[bounds[lo][0], bounds[hi][1]]]
    group = np.zeros(n_pos.size, np.int64)
    for g, (a, b) in enumerate(best[1]):
        group[a:b] = g
    return group, stages


def match_depth(pos_total: np.ndarray, neg_total: np.ndarray, n_bins: int, max_ratio: int,
                rng: np.random.Generator, target: int = 0, min_bins: int = 10) -> dict:
    """Choose balanced variants matched to the positives on binned log(total); keep every positive.

    Parameters
    ----------
    pos_total : ndarray of int, shape (p,)
    neg_total : ndarray of int, shape (c,)
        Totals of the positives and of the balanced candidates.
    n_bins : int
        Base equal-width bins.
    max_ratio : int
        Cap on the multiplier (0 = none).
    target, min_bins : int
        Merging rule of :func:`merge_sparse_bins` (``target`` 0: never merge).

    Returns
    -------
    dict
        ``chosen`` (bool, shape (c,)), ``pos_bin`` (p,) and ``neg_bin`` (c,) merged bins
        (-1 = not eligible), ``multiplier``, ``max_multiplier`` (uncapped), ``limiting_bin``,
        ``edges`` (base, log scale), ``bin_ranges`` (base bins of each merged bin), ``merges``,
        and per merged bin ``n_positive``, ``n_balanced``, ``n_negative``.
    """
    if pos_total.size == 0:
        return {"chosen": np.zeros(neg_total.size, bool), "pos_bin": np.zeros(0, np.int64),
                "neg_bin": np.full(neg_total.size, -1), "multiplier": 0, "max_multiplier": 0,
                "limiting_bin": None, "edges": [], "bin_ranges": [], "merges": 0,
                "n_positive": [], "n_balanced": [], "n_negative": []}
    edges, pos_base, neg_base = depth_bins(pos_total, neg_total, n_bins)
    n_pos = np.bincount(pos_base, minlength=n_bins)
    n_bal = np.bincount(neg_base[neg_base >= 0], minlength=n_bins)
    group, stages = merge_sparse_bins(n_pos, n_bal, target=target, min_bins=min_bins, cap=max_ratio or 0)
    n_groups = int(group.max()) + 1
    pos_bin = group[pos_base]
    neg_bin = np.where(neg_base >= 0, group[np.maximum(neg_base, 0)], -1)
    g_pos = np.bincount(pos_bin, minlength=n_groups)
    g_bal = np.bincount(neg_bin[neg_bin >= 0], minlength=n_groups)
    max_mult, limiting = _multiplier(g_pos, g_bal)
    mult = min(max_mult, max_ratio) if max_ratio and max_ratio > 0 else max_mult
    chosen = take_per_bin(neg_bin, mult * g_pos, rng)
    ranges = [[int(np.flatnonzero(group == g)[0]), int(np.flatnonzero(group == g)[-1])] for g in range(n_groups)]
    return {"chosen": chosen, "pos_bin": pos_bin, "neg_bin": neg_bin, "multiplier": int(mult),
            "max_multiplier": max_mult, "limiting_bin": limiting, "edges": edges.tolist(), "bin_ranges": ranges,
            "merges": n_bins - n_groups, "unmerged_multiplier": stages[0]["multiplier"],
            "n_positive": g_pos.tolist(), "n_balanced": g_bal.tolist(),
            "n_negative": np.bincount(neg_bin[chosen], minlength=n_groups).tolist()}


def match_strata(dev: np.ndarray, kind: np.ndarray, n_bins: int, rng: np.random.Generator) -> dict:
    """Equalise the binned ``|ref_ratio - 0.5|`` distributions of ubiquitous and specific peaks.

    Parameters
    ----------
    dev : ndarray, shape (m,)
        ``|ref_ratio - 0.5|`` of the tested variants inside peaks.
    kind : ndarray of str, shape (m,)
        Their own-cluster stratum (``ubiquitous`` / ``specific``).

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


def peak_features(peaks: pd.DataFrame | None, cell_type: str) -> pd.DataFrame | None:
    """peak_id → ``value`` (log2(peak value + 1) in this cell type), ``centre`` and ``half`` (bp), or None.

    The value is ``value_<cell type>`` of ``peaks.parquet`` (else ``acc_<cell type>``);
    the centre is the interval's midpoint (a union peak is centred on its summit).
    """
    if peaks is None:
        return None
    col = next((c for c in (f"value_{cell_type}", f"acc_{cell_type}") if c in peaks.columns), None)
    if col is None or not {"peak_id", "start", "end"} <= set(peaks.columns):
        return None
    p = peaks.drop_duplicates("peak_id").set_index("peak_id")
    v = p[col].to_numpy(np.float64)
    value = np.log2(np.maximum(v, 0) + 1.0) if col.startswith("value_") else v
    start, end = p["start"].to_numpy(np.float64), p["end"].to_numpy(np.float64)
    return pd.DataFrame({"value": value, "centre": (start + end) / 2, "half": np.maximum((end - start) / 2, 1.0)},
                        index=p.index)


def _split_shortfall(peak_codes: np.ndarray, short: np.ndarray) -> np.ndarray:
    """Each positive's share of its peak's shortfall (``short`` per peak code), summing to it exactly."""
    order = np.argsort(peak_codes, kind="mergesort")
    sc = peak_codes[order]
    rank = np.arange(sc.size) - np.searchsorted(sc, sc, side="left")
    n = np.bincount(peak_codes, minlength=short.size)[sc]
    s = short[sc]
    out = np.empty(peak_codes.size, np.int64)
    out[order] = s // n + (rank < s % n)
    return out


def feature_cells(value: np.ndarray, rel_dist: np.ndarray, value_edges: np.ndarray, n_bins: int) -> np.ndarray:
    """Cell (value bin × distance bin) of each site; -1 for a value outside the positives' range.

    Parameters
    ----------
    value, rel_dist : (m,) arrays; rel_dist in [0, 1] (clipped)
    value_edges : (k + 1,) increasing edges (quantiles of the positives' peak values; last bin closed)
    """
    vb = bin_values(np.asarray(value, dtype=np.float64), value_edges)
    db = np.clip((np.clip(rel_dist, 0.0, 1.0) * n_bins).astype(np.int64), 0, n_bins - 1)
    return np.where(vb >= 0, vb * n_bins + db, -1)


def match_region(t: pd.DataFrame, feats: pd.DataFrame | None, ratio: int, n_bins: int,
                 rng: np.random.Generator) -> dict:
    """Region-controlled negatives of one cell type (rule in the module docstring).

    Parameters
    ----------
    t : the cell type's rows of imbalance.parquet (m rows: label, peak_id, pos)
    feats : :func:`peak_features` or None

    Returns
    -------
    dict
        ``same_peak``, ``matched_peak`` (bool, shape (m,): chosen balanced rows),
        counts ``n_wanted``, ``n_same_peak``, ``n_matched_peak``, ``n_unfilled``,
        ``n_positive_outside_peaks``.
    """
    pid = t["peak_id"].astype(object).where(t["peak_id"].notna(), None).to_numpy()
    in_peak = pd.notna(pid)
    is_pos = (t["label"] == "imbalanced").to_numpy() & in_peak
    is_bal = (t["label"] == "balanced").to_numpy() & in_peak
    codes, uniq = pd.factorize(pd.Series(pid[in_peak]), sort=True)
    code = np.full(len(t), -1, np.int64)
    code[in_peak] = codes
    n_pos = np.bincount(code[is_pos], minlength=uniq.size)
    quota = ratio * n_pos
    same = np.zeros(len(t), bool)
    same[is_bal] = take_per_bin(code[is_bal], quota, rng)
    short = quota - np.bincount(code[same], minlength=uniq.size)
    need = _split_shortfall(code[is_pos], short)
    matched, unfilled = np.zeros(len(t), bool), int(need.sum())
    if feats is not None and need.sum() > 0:
        matched, unfilled = _fill_from_matched_peaks(t, feats, pid, is_pos, is_bal & ~same, need, n_bins, rng)
    return {"same_peak": same, "matched_peak": matched, "n_wanted": int(quota.sum()),
            "n_same_peak": int(same.sum()), "n_matched_peak": int(matched.sum()), "n_unfilled": unfilled,
            "n_positive_outside_peaks": int(((t["label"] == "imbalanced").to_numpy() & ~in_peak).sum())}


def _fill_from_matched_peaks(t, feats, pid, is_pos, cand, need, n_bins, rng) -> tuple[np.ndarray, int]:
    """Draw each positive's shortfall from balanced sites of other peaks in its (value × distance) cell."""
    known = np.array([p in feats.index for p in pid]) if len(pid) else np.zeros(0, bool)
    f = feats.reindex(pd.Series(pid).where(known, None))
    rel = np.abs(t["pos"].to_numpy(np.float64) - f["centre"].to_numpy()) / f["half"].to_numpy()
    value = f["value"].to_numpy()
    pos_idx = np.flatnonzero(is_pos)
    ok_pos = known[pos_idx]
    chosen = np.zeros(len(t), bool)
    if not ok_pos.any():
        return chosen, int(need.sum())
    edges = np.unique(np.quantile(value[pos_idx[ok_pos]], np.linspace(0, 1, n_bins + 1)))
    edges = edges if edges.size >= 2 else np.array([-np.inf, np.inf])  # one value: a single value bin
    cells = np.full(len(t), -1, np.int64)
    kn = np.flatnonzero(known)
    cells[kn] = feature_cells(value[kn], rel[kn], edges, n_bins)
    n_cells = (edges.size - 1) * n_bins
    want = np.bincount(cells[pos_idx[ok_pos]], weights=need[ok_pos], minlength=n_cells).astype(np.int64)
    c = np.flatnonzero(cand & known)
    chosen[c] = take_per_bin(cells[c], want, rng)
    return chosen, int(need.sum() - chosen.sum())


# --------------------------------------------------------------------------- whole table
def match_negatives(imbalance: pd.DataFrame, params: dict, seed: int,
                    logger: logging.Logger = log, peaks: pd.DataFrame | None = None
                    ) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Depth-matched (and region-controlled) sets and stratum-matched sets for every cell type of ``imbalance``.

    ``peaks`` (``peaks.parquet``, optional) gives the peak values and centres
    of the region-controlled fallback draw.

    Returns
    -------
    sets : DataFrame (:data:`SETS_COLUMNS`)
    strata : DataFrame (:data:`STRATUM_COLUMNS`)
    summary : dict
    """
    params = {**PARAMS, **SPLIT_PARAMS, **params}
    check_params(params)
    cap = params["match_max_ratio"] or 0
    imbalance = imbalance.assign(split=split_of(imbalance["chrom"], params))
    sets, strata, per_ct = [], [], {}
    has_strata = imbalance["stratum"].isin(KINDS).any() if len(imbalance) else False
    for ct in dict.fromkeys(imbalance["cell_type"]):
        t = imbalance[imbalance["cell_type"] == ct].reset_index(drop=True)
        pos = t[t["label"] == "imbalanced"]
        bal = t[t["label"] == "balanced"]
        m = match_depth(pos["total"].to_numpy(), bal["total"].to_numpy(), params["match_bins"], cap,
                        cell_type_rng(seed, ct), target=params["match_target_ratio"],
                        min_bins=params["match_min_bins"])
        neg = bal[m["chosen"]]
        parts = [pos.assign(set="positive", negative_set=None, region_match=None, match_bin=m["pos_bin"]),
                 neg.assign(set="negative", negative_set=DEPTH, region_match=None, match_bin=m["neg_bin"][m["chosen"]])]
        _log_depth(logger, ct, len(pos), len(bal), len(neg), m, cap)
        region = _region_set(t, peaks, ct, params, seed, logger)
        if region is not None:
            parts.append(region[0])
        sets.append(pd.concat(parts, ignore_index=True))
        per_ct[ct] = {"n_positive": int(len(pos)), "n_balanced": int(len(bal)), "n_negative": int(len(neg)),
                      "n_balanced_below_range": int((m["neg_bin"] < 0).sum()),
                      **{k: m[k] for k in ("multiplier", "max_multiplier", "limiting_bin")},
                      "bins": {k: m.get(k) for k in ("edges", "bin_ranges", "merges", "unmerged_multiplier",
                                                      "n_positive", "n_balanced", "n_negative")},
                      "region_controlled": None if region is None else region[1]}
        if has_strata:
            s, info = _strata(t, params["stratum_match_bins"], cell_type_rng(seed + 1, ct))
            strata.append(s)
            per_ct[ct]["stratum_matched"] = info
            logger.info("%s: stratum matching on |ref_ratio - 0.5| (own specific vs ubiquitous cluster; %d in "
                        "other cell types' specific peaks left out): ubiquitous %d → %d, specific %d → %d", ct,
                        info["n_other_specific"], info["n_before"]["ubiquitous"], info["n_after"],
                        info["n_before"]["specific"], info["n_after"])
    if not has_strata:
        logger.info("no peak strata in imbalance.parquet (cluster_peaks not run): stratum-matched table is empty")
    sets_df = _typed(pd.concat(sets, ignore_index=True) if sets else None, SETS_COLUMNS)
    strata_df = _typed(pd.concat(strata, ignore_index=True) if strata else None, STRATUM_COLUMNS)
    summary = {"params": {k: params[k] for k in sorted({**PARAMS, **SPLIT_PARAMS})}, "seed": int(seed),
               "n_positive": int((sets_df["set"] == "positive").sum()),
               "n_negative": int((sets_df["negative_set"] == DEPTH).sum()),
               "n_negative_region_controlled": int((sets_df["negative_set"] == REGION).sum()),
               "multiplier": {ct: v["multiplier"] for ct, v in per_ct.items()},
               "has_peak_strata": bool(has_strata), "cell_types": per_ct,
               "message": None if len(imbalance) else "imbalance.parquet is empty: no sets to match"}
    return sets_df, strata_df, summary


def _region_set(t: pd.DataFrame, peaks, ct: str, params: dict, seed: int, logger) -> tuple | None:
    """Region-controlled negative rows of one cell type and their counts (None when switched off / no peaks)."""
    if not params["region_match_ratio"]:
        return None
    if "peak_id" not in t.columns or t["peak_id"].isna().all():
        logger.info("%s: no peak_id in imbalance.parquet: no region-controlled negatives", ct)
        return None
    feats = peak_features(peaks, ct)
    r = match_region(t, feats, int(params["region_match_ratio"]), int(params["region_match_bins"]),
                     cell_type_rng(seed + 2, ct))
    rows = pd.concat([t[r["same_peak"]].assign(region_match="same_peak"),
                      t[r["matched_peak"]].assign(region_match="matched_peak")], ignore_index=True)
    rows = rows.assign(set="negative", negative_set=REGION, match_bin=-1)
    info = {k: v for k, v in r.items() if k.startswith("n_")}
    info["fallback"] = "peak value and distance to centre" if feats is not None else "none (no peaks.parquet)"
    logger.info("%s: region-controlled negatives: %d wanted (%d× the positives in peaks), %d from the positives' "
                "own peaks, %d from other peaks matched on peak value × distance to centre (%s), %d unfilled; "
                "%d positive(s) outside every peak get none", ct, r["n_wanted"], params["region_match_ratio"],
                r["n_same_peak"], r["n_matched_peak"], info["fallback"], r["n_unfilled"],
                r["n_positive_outside_peaks"])
    return rows, info


def check_params(params: dict) -> None:
    """Bin counts >= 1, a non-negative target, cap and region ratio."""
    for k in ("match_bins", "match_min_bins", "stratum_match_bins", "region_match_bins"):
        if params[k] < 1:
            raise InputError(k, f"{k} = {params[k]!r} must be >= 1", f"use e.g. {PARAMS[k]}")
    if params["match_target_ratio"] < 0:
        raise InputError("match_target_ratio", f"match_target_ratio = {params['match_target_ratio']!r} must be >= 0",
                         "use e.g. 7 (0: never merge depth bins)")
    if params["region_match_ratio"] < 0:
        raise InputError("region_match_ratio", f"region_match_ratio = {params['region_match_ratio']!r} must be >= 0",
                         "use e.g. 1 (0: no region-controlled negatives)")
    if params["match_max_ratio"] is not None and params["match_max_ratio"] < 0:
        raise InputError("match_max_ratio", "must be >= 0 (0 = no cap)", "use 0 or a positive integer")


def split_of(chrom: pd.Series, params: dict) -> np.ndarray:
    """train / valid / test of each variant's contig (the dataset's chromosome split)."""
    c = chrom.astype(str)
    return np.where(c.isin(list(params["test_chroms"])), "test",
                    np.where(c.isin(list(params["valid_chroms"])), "valid", "train")).astype(object)


def _log_depth(logger, ct, n_pos, n_bal, n_neg, m, cap):
    if n_pos == 0:
        logger.warning("%s: no imbalanced variants: no positive or negative set", ct)
        return
    b = m["limiting_bin"]
    lo, hi = m["bin_ranges"][b]
    logger.info("%s: %d positives (all kept), %d balanced (%d shallower than every positive, unused) → %d negatives "
                "= %d× (largest the bins allow: %d×, bounded by depth bin %d (base bins %d–%d) with %d positives "
                "and %d balanced; %d bin merge(s), %d× without merging%s)",
                ct, n_pos, n_bal, int((m["neg_bin"] < 0).sum()), n_neg, m["multiplier"], m["max_multiplier"], b,
                lo, hi, m["n_positive"][b], m["n_balanced"][b], m["merges"], m["unmerged_multiplier"],
                f"; capped at {cap}×" if cap else "")
    if m["multiplier"] == 0:
        logger.warning("%s: even after merging sparse bins, depth bin %d has fewer balanced variants than "
                       "positives: the negative set is empty; use fewer match_bins or add data", ct, b)


def _strata(t: pd.DataFrame, n_bins: int, rng) -> tuple[pd.DataFrame, dict]:
    inside = t[t["stratum"].isin(KINDS)].reset_index(drop=True)
    dev = np.abs(inside["ref_ratio"].to_numpy(np.float64) - 0.5)
    r = match_strata(dev, inside["stratum"].astype(str).to_numpy(), n_bins, rng)
    out = inside.assign(abs_ref_ratio_dev=dev, match_bin=r["bin"])[r["chosen"]]
    info = {"n_before": {k: int((inside["stratum"] == k).sum()) for k in KINDS},
            "n_other_specific": int((t["stratum"] == "other_specific").sum()),
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


def _columns(path: Path) -> list[str]:
    """A Parquet file's column names, from its footer."""
    import pyarrow.parquet as pq

    return list(pq.read_schema(path).names)


def read_imbalance(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    if not path.exists():
        raise InputError(path, "imbalance table not found", "run call_imbalance first")
    # columns pruned: the step reads only what it carries (not the counts it does not use)
    df = pd.read_parquet(path, columns=[c for c in _columns(path) if c in CARRY])
    missing = [c for c in CARRY if c not in df.columns]
    if missing:
        raise InputError(path, f"missing column(s) {', '.join(missing)}", "regenerate it with call_imbalance")
    return df


def read_peaks(path: str | Path) -> pd.DataFrame:
    """peaks.parquet (peak_id, start, end, value_<ct>/acc_<ct>) for the region-controlled fallback."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, "peaks table not found", "run cluster_peaks first or leave --peaks out")
    # columns pruned: ids, bounds and each cell type's value (acc_ when there is no value_), not counts or calls
    df = pd.read_parquet(path, columns=[c for c in _columns(path) if c in ("peak_id", "start", "end")
                                        or c.startswith(("value_", "acc_"))])
    missing = [c for c in ("peak_id", "start", "end") if c not in df.columns]
    if missing:
        raise InputError(path, f"missing column(s) {', '.join(missing)}", "regenerate it with cluster_peaks")
    log.info("read %d peaks from %s", len(df), path.name)
    return df


# --------------------------------------------------------------------------- engine
def run_step(ctx: StepContext) -> dict:
    """Local engine: ``imbalance.parquet`` → ``variant_sets.parquet`` (+ stratum-matched table)."""
    imb = read_imbalance(ctx.outdir / "imbalance.parquet")
    ctx.log.info("read %d tested sites from imbalance.parquet", len(imb))
    peaks = read_peaks(ctx.outdir / "peaks.parquet") if (ctx.outdir / "peaks.parquet").exists() else None
    if peaks is None:
        ctx.log.info("peaks.parquet not present: region-controlled negatives from the positives' own peaks only")
    sets, strata, summary = match_negatives(imb, ctx.params, ctx.params.get("seed", 0), ctx.log, peaks=peaks)
    write_outputs(sets, strata, summary, ctx.out("variant_sets.parquet"),
                  ctx.out("variant_sets_stratum_matched.parquet"), ctx.out("match_negatives.summary.json"))
    return {"n_positive": summary["n_positive"], "n_negative": summary["n_negative"],
            **{f"multiplier_{ct}": v for ct, v in summary["multiplier"].items()}}


# the seed is a common param; declaring it here puts it in the resume fingerprint
STEP = Step(name="match_negatives", run=run_step, needs=("call_imbalance",), optional_needs=("cluster_peaks",),
            params={**PARAMS, **SPLIT_PARAMS, "seed": 0},
            doc="balanced variants matched to the imbalanced ones on log depth → variant_sets.parquet")


# --------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="match_negatives",
                                 description="Depth-matched negative sets (and peak-stratum matched sets).")
    ap.add_argument("--imbalance", required=True, help="imbalance.parquet from call_imbalance")
    ap.add_argument("--out", default="variant_sets.parquet")
    ap.add_argument("--stratum-out", default="variant_sets_stratum_matched.parquet")
    ap.add_argument("--summary", default="match_negatives.summary.json")
    ap.add_argument("--peaks", help="peaks.parquet (peak values and centres for the region-controlled fallback)")
    add_param_options(ap, STEP.params,
                      aliases={"match_bins": ["--bins"],
                               "match_max_ratio": ["--max-ratio"], "stratum_match_bins": ["--stratum-bins"]},
                      helps={"match_target_ratio": "merge depth bins that limit the multiplier while it is below "
                                                   "this (0: never merge)",
                             "match_min_bins": "dense depth bins are merged down to this many (sparse ones always)",
                             "match_max_ratio": "0 = no cap",
                             "region_match_ratio": "region-controlled negatives per positive from its own peak "
                                                   "(0: none)",
                             "region_match_bins": "fallback bins of peak value and of distance to the peak centre"})
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    params = params_from_args(args, STEP.params)
    peaks = read_peaks(args.peaks) if args.peaks else None
    sets, strata, summary = match_negatives(read_imbalance(args.imbalance), params, params["seed"], peaks=peaks)
    write_outputs(sets, strata, summary, args.out, args.stratum_out, args.summary)
    return 0
