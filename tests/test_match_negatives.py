"""Tests of MATCH_NEGATIVES: exact per-bin matching, maximal multiplier, seeding, strata."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from caveat.engine import StepContext
from caveat.errors import InputError
from caveat.match_negatives import (PARAMS, bin_values, depth_edges, main, match_depth, match_negatives,
                                    match_strata, run_step)
from test_call_imbalance import make_study, run as run_imbalance


def _multiplier_is_maximal(pos_total, neg_total, res, n_bins):
    """Independent check: per bin negatives = m × positives, and m + 1 fails some bin."""
    edges = np.linspace(np.log(pos_total).min(), np.log(pos_total).max(), n_bins + 1)
    for x, b in ((pos_total, res["pos_bin"]), (neg_total, res["neg_bin"])):
        lx = np.log(x)
        inside = (lx >= edges[0]) & (lx <= edges[-1])
        assert ((b >= 0) == inside).all()
        assert (edges[b[inside]] <= lx[inside] + 1e-12).all() and (lx[inside] <= edges[b[inside] + 1] + 1e-12).all()
    n_pos = np.bincount(res["pos_bin"], minlength=n_bins)
    n_neg = np.bincount(res["neg_bin"][res["chosen"]], minlength=n_bins)
    n_avail = np.bincount(res["neg_bin"][res["neg_bin"] >= 0], minlength=n_bins)
    m = res["multiplier"]
    np.testing.assert_array_equal(n_neg, m * n_pos)
    assert ((m + 1) * n_pos > n_avail).any()
    assert (m * n_pos <= n_avail).all()


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
    assert res["multiplier"] == 3 and res["chosen"].sum() == 15
    # a bin with fewer balanced than positives: multiplier 0, no negatives
    res = match_depth(np.array([25, 25, 1000, 1000]), np.array([25] * 50 + [1000]), 20, 0, np.random.default_rng(0))
    assert res["multiplier"] == 0 and res["chosen"].sum() == 0
    res = match_depth(np.zeros(0, int), np.array([30, 40]), 20, 0, np.random.default_rng(0))
    assert res["multiplier"] == 0 and not res["chosen"].any()
    e = depth_edges(np.array([21, 210]), 20)
    assert bin_values(np.log(np.array([21.0, 210.0, 20.0, 211.0])), e).tolist() == [0, 19, -1, -1]


def test_unmatchable_positive_is_dropped_not_zeroing_the_set():
    # one deeply covered positive sits alone in the top bin with no balanced variant
    rng = np.random.default_rng(5)
    pos = np.concatenate([rng.integers(21, 60, 40), [400]])
    neg = rng.integers(21, 60, 400)
    off = match_depth(pos, neg, 20, 0, np.random.default_rng(0))
    assert off["multiplier"] == 0 and off["pos_kept"].all()
    on = match_depth(pos, neg, 20, 0, np.random.default_rng(0), drop_unmatchable=True)
    assert on["pos_kept"].tolist() == [True] * 40 + [False]
    assert on["multiplier"] >= 1
    # bins come from all positives; the kept ones are matched exactly and maximally
    n_pos = np.bincount(on["pos_bin"][on["pos_kept"]], minlength=20)
    n_neg = np.bincount(on["neg_bin"][on["chosen"]], minlength=20)
    n_avail = np.bincount(on["neg_bin"][on["neg_bin"] >= 0], minlength=20)
    np.testing.assert_array_equal(n_neg, on["multiplier"] * n_pos)
    assert ((on["multiplier"] + 1) * n_pos > n_avail).any()


def test_deficient_bin_keeps_only_what_it_can_match():
    # the top bin: 3 positives, 1 balanced → 1 positive kept (seeded), multiplier ≥ 1 overall
    rng = np.random.default_rng(6)
    pos = np.concatenate([rng.integers(21, 60, 40), [400, 401, 402]])
    neg = np.concatenate([rng.integers(21, 60, 400), [399]])
    on = match_depth(pos, neg, 20, 0, np.random.default_rng(0), drop_unmatchable=True)
    assert on["pos_kept"][:40].all() and on["pos_kept"][40:].sum() == 1
    assert on["multiplier"] >= 1
    again = match_depth(pos, neg, 20, 0, np.random.default_rng(0), drop_unmatchable=True)
    np.testing.assert_array_equal(again["pos_kept"], on["pos_kept"])


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
    params = {**params, **PARAMS}
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
        pos, neg = s[s["set"] == "positive"], s[s["set"] == "negative"]
        # positives are all imbalanced sites, negatives are balanced ones, no overlap, no repeats
        assert set(pos["variant_id"]) == set(t.loc[t["label"] == "imbalanced", "variant_id"])
        assert set(neg["variant_id"]) <= set(t.loc[t["label"] == "balanced", "variant_id"])
        assert not neg["variant_id"].duplicated().any()
        bal = t[t["label"] == "balanced"]
        m = summary["multiplier"][ct]
        print(f"{ct}: {len(pos)} positives, {len(bal)} balanced → {len(neg)} negatives ({m}×)")
        assert m >= 2 and len(neg) == m * len(pos)
        res = {"pos_bin": pos["match_bin"].to_numpy(), "chosen": np.ones(len(neg), bool),
               "neg_bin": neg["match_bin"].to_numpy(), "multiplier": m}
        np.testing.assert_array_equal(np.bincount(res["neg_bin"], minlength=20),
                                      m * np.bincount(res["pos_bin"], minlength=20))
        # maximal against every balanced site, binned independently
        edges = np.linspace(np.log(pos["total"]).min(), np.log(pos["total"]).max(), 21)
        lb = np.log(bal["total"].to_numpy(float))
        avail = np.histogram(lb[(lb >= edges[0]) & (lb <= edges[-1])], bins=edges)[0]
        n_pos = np.bincount(res["pos_bin"], minlength=20)
        assert ((m + 1) * n_pos > avail).any()
        assert summary["cell_types"][ct]["bins"]["n_negative"] == (m * n_pos).tolist()
    assert {"peak_kind", "total", "ref_ratio", "match_bin"} <= set(sets.columns)


def test_stratum_matched_table(sets_run):
    outdir, _ = sets_run
    st = pd.read_parquet(outdir / "variant_sets_stratum_matched.parquet")
    imb = pd.read_parquet(outdir / "imbalance.parquet")
    assert len(st) > 100
    for ct, s in st.groupby("cell_type"):
        c = s.groupby(["match_bin", "peak_kind"]).size().unstack(fill_value=0)
        assert (c["ubiquitous"] == c["specific"]).all()
        np.testing.assert_allclose(s["abs_ref_ratio_dev"], (s["ref_ratio"] - 0.5).abs())
        t = imb[(imb["cell_type"] == ct) & imb["peak_kind"].notna()]
        assert set(s["variant_id"]) <= set(t["variant_id"])


def test_same_seed_same_bytes_other_seed_differs(sets_run, tmp_path):
    outdir, params = sets_run
    before = (outdir / "variant_sets.parquet").read_bytes()
    run_step(StepContext(params=params, outdir=outdir))
    assert (outdir / "variant_sets.parquet").read_bytes() == before
    out = tmp_path / "vs.parquet"
    main(["--imbalance", str(outdir / "imbalance.parquet"), "--out", str(out), "--stratum-out",
          str(tmp_path / "st.parquet"), "--summary", str(tmp_path / "s.json"), "--seed", "0"])
    assert out.read_bytes() == before  # the CLI is the same computation
    main(["--imbalance", str(outdir / "imbalance.parquet"), "--out", str(out), "--stratum-out",
          str(tmp_path / "st.parquet"), "--summary", str(tmp_path / "s.json"), "--seed", "5"])
    a, b = pd.read_parquet(outdir / "variant_sets.parquet"), pd.read_parquet(out)
    assert len(a) == len(b) and set(a["variant_id"]) != set(b["variant_id"])


def test_empty_imbalance_gives_empty_valid_outputs(tmp_path):
    outdir, params, _ = make_study(tmp_path, n_variants=100, depth_mean=1.0, n_donors=2)
    run_imbalance(outdir, params)
    run_step(StepContext(params={**params, **PARAMS}, outdir=outdir))
    sets = pd.read_parquet(outdir / "variant_sets.parquet")
    st = pd.read_parquet(outdir / "variant_sets_stratum_matched.parquet")
    assert len(sets) == 0 and len(st) == 0 and "set" in sets.columns and "match_bin" in st.columns
    summary = json.loads((outdir / "match_negatives.summary.json").read_text())
    assert summary["n_positive"] == 0 and summary["message"]


def test_bad_params_and_missing_input(tmp_path):
    with pytest.raises(InputError, match="match_max_ratio"):
        match_negatives(pd.DataFrame(columns=["cell_type", "label", "peak_kind"]), {"match_max_ratio": -1}, 0)
    with pytest.raises(InputError, match="call_imbalance"):
        run_step(StepContext(params={**PARAMS, "seed": 0}, outdir=tmp_path))
