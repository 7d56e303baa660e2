"""Tests of MATCH_NEGATIVES: exact per-bin matching, maximal multiplier, seeding, strata."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from caveat.engine import StepContext
from caveat.errors import InputError
from caveat.match_negatives import (CARRY, PARAMS, SPLIT_PARAMS, bin_values, depth_edges, main, match_depth,
                                    match_negatives, match_strata, run_step)
from test_call_imbalance import make_study, run as run_imbalance


def _multiplier_is_maximal(pos_total, neg_total, res, n_bins):
    """Independent check on the final (merged) bins: negatives = m × positives per bin, m + 1 fails one."""
    edges = np.linspace(np.log(pos_total).min(), np.log(pos_total).max(), n_bins + 1)
    base_pos = np.clip(np.searchsorted(edges, np.log(pos_total), side="right") - 1, 0, n_bins - 1)
    ln = np.log(neg_total)
    base_neg = np.where(ln < edges[0], -1, np.clip(np.searchsorted(edges, ln, side="right") - 1, 0, n_bins - 1))
    group = np.zeros(n_bins, int)
    for g, (lo, hi) in enumerate(res["bin_ranges"]):
        group[lo:hi + 1] = g
    np.testing.assert_array_equal(res["pos_bin"], group[base_pos])
    np.testing.assert_array_equal(res["neg_bin"], np.where(base_neg >= 0, group[np.maximum(base_neg, 0)], -1))
    k = len(res["bin_ranges"])
    n_pos = np.bincount(res["pos_bin"], minlength=k)
    n_neg = np.bincount(res["neg_bin"][res["chosen"]], minlength=k)
    n_avail = np.bincount(res["neg_bin"][res["neg_bin"] >= 0], minlength=k)
    m = res["multiplier"]
    np.testing.assert_array_equal(n_neg, m * n_pos)
    assert ((m + 1) * n_pos > n_avail).any()
    assert m == min(n_avail[n_pos > 0] // n_pos[n_pos > 0])


def test_match_depth_exact_and_maximal():
    rng = np.random.default_rng(0)
    pos = rng.negative_binomial(3, 0.05, 300) + 21
    neg = rng.negative_binomial(2, 0.04, 6000) + 21
    res = match_depth(pos, neg, 20, 0, np.random.default_rng(1))
    assert res["multiplier"] >= 1
    _multiplier_is_maximal(pos, neg, res, 20)
    # cap
    capped = match_depth(pos, neg, 20, 1, np.random.default_rng(1))
    assert capped["multiplier"] == 1 and capped["max_multiplier"] == res["multiplier"]
    assert capped["chosen"].sum() == len(pos)
    # same seed, same set; another seed, another set of the same size
    again = match_depth(pos, neg, 20, 0, np.random.default_rng(1))
    np.testing.assert_array_equal(again["chosen"], res["chosen"])
    other = match_depth(pos, neg, 20, 0, np.random.default_rng(2))
    assert other["chosen"].sum() == res["chosen"].sum() and (other["chosen"] != res["chosen"]).any()


def test_match_depth_edge_cases():
    # one distinct depth among positives: one usable bin
    res = match_depth(np.full(5, 30), np.array([30] * 17 + [500] * 3), 20, 0, np.random.default_rng(0))
    assert res["multiplier"] == 3 and res["chosen"].sum() == 15  # the deeper 3 join the (empty) top bin
    # a bin with fewer balanced than positives: 0× without merging, every positive kept either way
    pos, neg = np.array([25, 25, 1000, 1000]), np.array([25] * 50 + [1000])
    res = match_depth(pos, neg, 20, 0, np.random.default_rng(0))
    assert res["multiplier"] == 0 and res["chosen"].sum() == 0 and res["pos_bin"].size == 4
    res = match_depth(pos, neg, 20, 0, np.random.default_rng(0), target=7, min_bins=1)
    assert res["multiplier"] == 12 and res["chosen"].sum() == 48 and len(res["bin_ranges"]) == 1
    res = match_depth(np.zeros(0, int), np.array([30, 40]), 20, 0, np.random.default_rng(0))
    assert res["multiplier"] == 0 and not res["chosen"].any()
    e = depth_edges(np.array([21, 210]), 20)
    assert bin_values(np.log(np.array([21.0, 210.0, 20.0, 211.0])), e).tolist() == [0, 19, -1, -1]


def test_a_sparse_deep_bin_is_merged_not_dropped_nor_collapsing_the_multiplier():
    """The review's case: one deep positive alone in the top bin turned a possible 55× into 1× (and the old
    fix dropped it). Now the sparse bin is merged with its neighbour: every positive stays, the multiplier
    is the largest the final bins allow."""
    rng = np.random.default_rng(5)
    pos = np.concatenate([rng.integers(21, 60, 40), [150, 400]])
    neg = np.concatenate([rng.integers(21, 60, 2400), [140]])
    unmerged = match_depth(pos, neg, 20, 0, np.random.default_rng(0))
    assert unmerged["multiplier"] == 0
    res = match_depth(pos, neg, 20, 0, np.random.default_rng(0), target=1000, min_bins=10)
    assert res["pos_bin"].size == pos.size and (res["pos_bin"] >= 0).all()
    assert res["multiplier"] >= 10 and res["merges"] >= 1
    _multiplier_is_maximal(pos, neg, res, 20)
    # the deep positives now share a bin with shallower ones: the multiplier they bound is explicit
    assert res["n_negative"] == [res["multiplier"] * n for n in res["n_positive"]]


def test_merging_stops_at_the_target_or_at_match_min_bins_of_dense_bins():
    rng = np.random.default_rng(7)
    pos = rng.negative_binomial(3, 0.05, 500) + 21
    neg = rng.negative_binomial(2, 0.04, 20000) + 21
    fine = match_depth(pos, neg, 20, 0, np.random.default_rng(1), target=0)
    merged = match_depth(pos, neg, 20, 0, np.random.default_rng(1), target=1000, min_bins=10)
    for r in (fine, merged):
        _multiplier_is_maximal(pos, neg, r, 20)
    assert fine["merges"] == 0 and merged["multiplier"] > fine["multiplier"]
    # dense bins are merged down to min_bins only; a bin bounding the result is dense, or min_bins is reached
    held = sum(n > 0 for n in merged["n_positive"])
    assert held >= 10
    lim = merged["limiting_bin"]
    assert merged["n_positive"][lim] * 20 >= len(pos) or held == 10
    # a target met without merging keeps the finest bins; so does a cap
    low = match_depth(pos, neg, 20, 0, np.random.default_rng(1), target=fine["multiplier"], min_bins=10)
    assert low["merges"] == 0 and low["multiplier"] == fine["multiplier"]
    capped = match_depth(pos, neg, 20, 1, np.random.default_rng(1), target=1000, min_bins=10)
    assert capped["multiplier"] == 1 and capped["merges"] == 0


def test_match_strata_equalises_binned_distributions():
    rng = np.random.default_rng(3)
    dev = np.concatenate([np.abs(rng.normal(0, 0.08, 800)), np.abs(rng.normal(0, 0.15, 1500))]).clip(0, 0.5)
    kind = np.array(["ubiquitous"] * 800 + ["specific"] * 1500)
    r = match_strata(dev, kind, 20, np.random.default_rng(0))
    after = {k: np.bincount(r["bin"][r["chosen"] & (kind == k)], minlength=20) for k in ("ubiquitous", "specific")}
    np.testing.assert_array_equal(after["ubiquitous"], after["specific"])
    before = {k: np.bincount(r["bin"][kind == k], minlength=20) for k in ("ubiquitous", "specific")}
    np.testing.assert_array_equal(after["ubiquitous"], np.minimum(before["ubiquitous"], before["specific"]))
    assert (r["bin"] >= 0).all()


@pytest.fixture(scope="module")
def sets_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("neg")
    outdir, params, truth = make_study(root, peaks=True, n_variants=4000, frac_imbalanced=0.1, seed=8)
    run_imbalance(outdir, params)
    params = {**params, **PARAMS, **SPLIT_PARAMS}
    run_step(StepContext(params=params, outdir=outdir))
    return outdir, params


def test_step_outputs_match_bins_per_cell_type(sets_run):
    outdir, params = sets_run
    imb = pd.read_parquet(outdir / "imbalance.parquet")
    sets = pd.read_parquet(outdir / "variant_sets.parquet")
    summary = json.loads((outdir / "match_negatives.summary.json").read_text())
    for ct in ("ct_a", "ct_b"):
        s = sets[sets["cell_type"] == ct]
        t = imb[imb["cell_type"] == ct]
        pos, neg = s[s["set"] == "positive"], s[s["negative_set"] == "depth_matched"]
        assert set(s.loc[s["set"] == "negative", "negative_set"]) <= {"depth_matched", "region_controlled"}
        assert s.loc[s["set"] == "positive", "negative_set"].isna().all()
        # positives are all imbalanced sites, negatives are balanced ones, no overlap, no repeats
        assert set(pos["variant_id"]) == set(t.loc[t["label"] == "imbalanced", "variant_id"])
        assert set(neg["variant_id"]) <= set(t.loc[t["label"] == "balanced", "variant_id"])
        assert not neg["variant_id"].duplicated().any()
        bal = t[t["label"] == "balanced"]
        m = summary["multiplier"][ct]
        print(f"{ct}: {len(pos)} positives, {len(bal)} balanced → {len(neg)} negatives ({m}×)")
        assert m >= 2 and len(neg) == m * len(pos)
        # the multiplier is the largest the final bins allow, counted from every balanced site
        k = int(max(pos["match_bin"].max(), neg["match_bin"].max())) + 1
        n_pos = np.bincount(pos["match_bin"], minlength=k)
        np.testing.assert_array_equal(np.bincount(neg["match_bin"], minlength=k), m * n_pos)
        ranges = summary["cell_types"][ct]["bins"]["bin_ranges"]
        edges = np.linspace(np.log(pos["total"]).min(), np.log(pos["total"]).max(), 21)
        lb = np.log(bal["total"].to_numpy(float))
        base = np.clip(np.searchsorted(edges, lb[lb >= edges[0]], side="right") - 1, 0, 19)
        avail = np.array([((base >= lo) & (base <= hi)).sum() for lo, hi in ranges])
        assert m == min(avail[n_pos > 0] // n_pos[n_pos > 0])
        assert summary["cell_types"][ct]["bins"]["n_negative"] == (m * n_pos).tolist()
    assert {"peak_kind", "stratum", "split", "total", "ref_ratio", "match_bin"} <= set(sets.columns)
    np.testing.assert_array_equal(sets["split"] == "test", sets["chrom"].isin(SPLIT_PARAMS["test_chroms"]))


def test_stratum_matched_table(sets_run):
    outdir, _ = sets_run
    st = pd.read_parquet(outdir / "variant_sets_stratum_matched.parquet")
    imb = pd.read_parquet(outdir / "imbalance.parquet")
    assert len(st) > 100
    assert set(st["stratum"]) == {"ubiquitous", "specific"}  # other cell types' specific peaks are left out
    for ct, s in st.groupby("cell_type"):
        c = s.groupby(["match_bin", "stratum"]).size().unstack(fill_value=0)
        assert (c["ubiquitous"] == c["specific"]).all()
        np.testing.assert_allclose(s["abs_ref_ratio_dev"], (s["ref_ratio"] - 0.5).abs())
        t = imb[(imb["cell_type"] == ct) & imb["stratum"].isin(["ubiquitous", "specific"])]
        assert set(s["variant_id"]) <= set(t["variant_id"])
        assert (s.merge(t, on="variant_id", suffixes=("", "_imb"))["stratum_imb"] == s["stratum"].to_numpy()).all()


def test_same_seed_same_bytes_other_seed_differs(sets_run, tmp_path):
    outdir, params = sets_run
    before = (outdir / "variant_sets.parquet").read_bytes()
    run_step(StepContext(params=params, outdir=outdir))
    assert (outdir / "variant_sets.parquet").read_bytes() == before
    out = tmp_path / "vs.parquet"
    peaks = ["--peaks", str(outdir / "peaks.parquet")] if (outdir / "peaks.parquet").exists() else []
    main(["--imbalance", str(outdir / "imbalance.parquet"), "--out", str(out), "--stratum-out",
          str(tmp_path / "st.parquet"), "--summary", str(tmp_path / "s.json"), "--seed", "0", *peaks])
    assert out.read_bytes() == before  # the CLI is the same computation
    main(["--imbalance", str(outdir / "imbalance.parquet"), "--out", str(out), "--stratum-out",
          str(tmp_path / "st.parquet"), "--summary", str(tmp_path / "s.json"), "--seed", "5", *peaks])
    a, b = pd.read_parquet(outdir / "variant_sets.parquet"), pd.read_parquet(out)
    assert len(a) == len(b) and set(a["variant_id"]) != set(b["variant_id"])


def test_empty_imbalance_gives_empty_valid_outputs(tmp_path):
    outdir, params, _ = make_study(tmp_path, n_variants=100, depth_mean=1.0, n_donors=2)
    run_imbalance(outdir, params)
    run_step(StepContext(params={**params, **PARAMS, **SPLIT_PARAMS}, outdir=outdir))
    sets = pd.read_parquet(outdir / "variant_sets.parquet")
    st = pd.read_parquet(outdir / "variant_sets_stratum_matched.parquet")
    assert len(sets) == 0 and len(st) == 0 and "set" in sets.columns and "match_bin" in st.columns
    summary = json.loads((outdir / "match_negatives.summary.json").read_text())
    assert summary["n_positive"] == 0 and summary["message"]


def test_bad_params_and_missing_input(tmp_path):
    with pytest.raises(InputError, match="match_max_ratio"):
        match_negatives(pd.DataFrame(columns=["cell_type", "label", "stratum", "chrom"]), {"match_max_ratio": -1}, 0)
    with pytest.raises(InputError, match="match_target_ratio"):
        match_negatives(pd.DataFrame(columns=["cell_type", "label", "stratum", "chrom"]),
                        {"match_target_ratio": -1}, 0)
    with pytest.raises(InputError, match="call_imbalance"):
        run_step(StepContext(params={**PARAMS, "seed": 0}, outdir=tmp_path))


# ---------------------------------------------------------------- region-controlled negatives (issue 18 point 2)


def test_region_controlled_negatives_come_from_the_positives_peaks(sets_run):
    outdir, params = sets_run
    imb = pd.read_parquet(outdir / "imbalance.parquet")
    sets = pd.read_parquet(outdir / "variant_sets.parquet")
    summary = json.loads((outdir / "match_negatives.summary.json").read_text())
    assert summary["n_negative_region_controlled"] > 20
    for ct in ("ct_a", "ct_b"):
        s = sets[sets["cell_type"] == ct]
        t = imb[imb["cell_type"] == ct]
        reg = s[s["negative_set"] == "region_controlled"]
        pos_peaks = set(s.loc[s["set"] == "positive", "peak_id"].dropna())
        assert set(reg["variant_id"]) <= set(t.loc[t["label"] == "balanced", "variant_id"])
        assert not reg["variant_id"].duplicated().any()
        same = reg[reg["region_match"] == "same_peak"]
        assert len(same) and set(same["peak_id"]) <= pos_peaks
        # per peak never more than ratio × its positives; a peak short of balanced sites gave all it had
        n_pos = s[s["set"] == "positive"].groupby("peak_id").size()
        n_same = same.groupby("peak_id").size().reindex(n_pos.index, fill_value=0)
        n_bal = t[t["label"] == "balanced"].groupby("peak_id").size().reindex(n_pos.index, fill_value=0)
        np.testing.assert_array_equal(n_same, np.minimum(params["region_match_ratio"] * n_pos, n_bal))
        info = summary["cell_types"][ct]["region_controlled"]
        assert info["n_same_peak"] + info["n_matched_peak"] + info["n_unfilled"] == info["n_wanted"]
        assert info["n_wanted"] == params["region_match_ratio"] * n_pos.sum()


def _strong_peak_study(seed=0):
    """Positives only in strong peaks; balanced sites in every peak, mostly weak ones; some strong peaks hold
    positives but no balanced site (the fallback fills them from other strong peaks)."""
    rng = np.random.default_rng(seed)
    n_peaks = 400
    strong = np.arange(n_peaks) < 100
    peaks = pd.DataFrame({"peak_id": [f"pk{i:04d}" for i in range(n_peaks)], "start": np.arange(n_peaks) * 5000,
                          "end": np.arange(n_peaks) * 5000 + 500,
                          "value_A": np.where(strong, rng.lognormal(7, 0.2, n_peaks), rng.lognormal(2, 0.2, n_peaks))})
    rows = []
    for i in range(n_peaks):
        n_pos = rng.integers(1, 4) if strong[i] else 0
        n_bal = 0 if (strong[i] and i % 10 == 0) else (rng.integers(1, 6) if strong[i] else rng.integers(2, 9))
        for j in range(n_pos + n_bal):
            label = "imbalanced" if j < n_pos else "balanced"
            pos = int(peaks.start[i] + rng.integers(0, 500))
            rows.append({"cell_type": "A", "variant_id": f"chr1:{pos}:A:G", "chrom": "chr1", "pos": pos, "ref": "A",
                         "alt": "G", "donor": "D1", "total": int(rng.integers(21, 200)),
                         "ref_ratio": rng.choice([0.2, 0.8]) if label == "imbalanced" else 0.5,
                         "pvalue": 0.5, "qvalue": 0.5, "label": label, "peak_id": peaks.peak_id[i],
                         "peak_kind": "ubiquitous", "cluster": 0, "cluster_label": "ubiquitous",
                         "stratum": "ubiquitous"})
    return pd.DataFrame(rows)[list(CARRY)], peaks


def test_region_controlled_auroc_is_chance_for_a_score_that_only_knows_strong_peaks():
    from sklearn.metrics import roc_auc_score

    imb, peaks = _strong_peak_study()
    sets, _, summary = match_negatives(imb, {"match_bins": 5, "match_min_bins": 2}, 0, peaks=peaks)
    strength = sets["peak_id"].map(peaks.set_index("peak_id")["value_A"])  # the score: peak strength only
    pos = sets["set"] == "positive"
    auc = {}
    for name in ("depth_matched", "region_controlled"):
        m = pos | (sets["negative_set"] == name)
        auc[name] = roc_auc_score(pos[m], strength[m])
    assert auc["depth_matched"] > 0.9
    assert abs(auc["region_controlled"] - 0.5) < 0.1
    reg = sets[sets["negative_set"] == "region_controlled"]
    info = summary["cell_types"]["A"]["region_controlled"]
    assert info["n_matched_peak"] > 0 and info["n_unfilled"] < 0.1 * info["n_wanted"]
    assert info["n_same_peak"] + info["n_matched_peak"] + info["n_unfilled"] == info["n_wanted"] == pos.sum()
    # the fallback stays in the positives' value range: matched-peak negatives come from strong peaks
    strong = set(peaks.peak_id[:100])
    assert set(reg.loc[reg["region_match"] == "matched_peak", "peak_id"]) <= strong
    # without peaks.parquet the short peaks stay short
    sets2, _, s2 = match_negatives(imb, {"match_bins": 5, "match_min_bins": 2}, 0)
    i2 = s2["cell_types"]["A"]["region_controlled"]
    assert i2["n_matched_peak"] == 0 and i2["n_unfilled"] == info["n_matched_peak"] + info["n_unfilled"]


def test_region_match_ratio_zero_and_negative():
    imb, peaks = _strong_peak_study(1)
    sets, _, summary = match_negatives(imb, {"region_match_ratio": 0}, 0, peaks=peaks)
    assert (sets["negative_set"] != "region_controlled").all() and summary["n_negative_region_controlled"] == 0
    with pytest.raises(InputError, match="region_match_ratio"):
        match_negatives(imb, {"region_match_ratio": -1}, 0)
