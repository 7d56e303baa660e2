"""Tests of CALL_IMBALANCE on counts simulated here with planted allelic ratios,
and (when the simulator and allele counting exist) on the pipeline's tiny run."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats as ss

from caveat.call_imbalance import PARAMS, STEP, call_imbalance, main, pool_counts, read_counts, run_step
from caveat.engine import StepContext
from caveat.errors import InputError
from caveat.stats import betabinom_shapes, binom_two_sided_lower, randomized_pvalue


# --------------------------------------------------------------------------- synthetic study
def make_study(root, *, n_donors=6, cell_types=("ct_a", "ct_b"), n_variants=3000, frac_imbalanced=0.15,
               depth_mean=18.0, rho=0.0, ref_bias=0.5, seed=0, peaks=False):
    """Write ``samplesheet.csv`` and ``outdir/counts/<sample>.parquet`` with planted truth.

    Each donor is heterozygous at a random 40 % of the variants; per cell type a
    fraction of variants is imbalanced (true REF fraction 0.5 ± 0.12–0.3); reads per
    donor are negative-binomial; REF reads binomial (beta-binomial when ``rho > 0``)
    around the truth shifted by ``ref_bias - 0.5`` (reference-mapping bias).

    Returns
    -------
    outdir, params, truth : Path, dict, DataFrame (cell_type, variant_id, true_ref_fraction, effect)
    """
    rng = np.random.default_rng(seed)
    outdir = root / "results"
    (outdir / "counts").mkdir(parents=True)
    chrom = rng.choice([f"chr{i}" for i in (1, 2, 10)], n_variants)
    pos = np.sort(rng.choice(np.arange(1000, 5_000_000), n_variants, replace=False))
    ref = rng.choice(list("ACGT"), n_variants)
    alt = np.array([{"A": "G", "C": "T", "G": "A", "T": "C"}[r] for r in ref])
    vid = np.array([f"{c}:{p + 1}:{r}:{a}" for c, p, r, a in zip(chrom, pos, ref, alt)])
    het = rng.random((n_donors, n_variants)) < 0.4
    rows, truth = [], []
    for ct in cell_types:
        imb = rng.random(n_variants) < frac_imbalanced
        size = rng.uniform(0.12, 0.3, n_variants) * rng.choice([-1, 1], n_variants)
        true = np.where(imb, 0.5 + size, 0.5)
        truth.append(pd.DataFrame({"cell_type": ct, "variant_id": vid, "true_ref_fraction": true,
                                   "effect": np.where(imb, "imbalanced", "none")}))
        for d in range(n_donors):
            sel = np.flatnonzero(het[d])
            depth = rng.negative_binomial(2, 2 / (2 + depth_mean), sel.size)
            p = np.clip(true[sel] + (ref_bias - 0.5), 0.01, 0.99)
            if rho > 0:
                a, b = betabinom_shapes(p, rho)
                p = rng.beta(a, b)
            refc = rng.binomial(depth, p)
            sample = f"d{d}_{ct}"
            rows.append(sample)
            pd.DataFrame({"sample": sample, "donor": f"d{d}", "cell_type": ct, "variant_id": vid[sel],
                          "chrom": chrom[sel], "pos": pos[sel], "ref": ref[sel], "alt": alt[sel],
                          "ref_count": refc, "alt_count": depth - refc,
                          "other_count": rng.poisson(0.3, sel.size)}).to_parquet(
                outdir / "counts" / f"{sample}.parquet")
    sheet = pd.DataFrame({"sample": rows, "donor": [s.split("_", 1)[0] for s in rows],
                          "cell_type": [s.split("_", 1)[1] for s in rows], "bam": [f"{s}.bam" for s in rows]})
    sheet.to_csv(root / "samplesheet.csv", index=False)
    if peaks:
        starts = np.arange(0, 5_000_000, 20_000)
        pk = []
        for c in ("chr1", "chr2", "chr10"):
            pk.append(pd.DataFrame({"peak_id": [f"{c}_p{i}" for i in range(starts.size)], "chrom": c,
                                    "start": starts, "end": starts + 5_000,
                                    "kind": np.where(np.arange(starts.size) % 3 == 0, "ubiquitous", "specific"),
                                    "cluster": np.arange(starts.size) % 3,
                                    "cluster_label": np.array(["ubiquitous", "ct_a", "ct_b"])[np.arange(starts.size) % 3],
                                    "acc_ct_a": 1.0, "acc_ct_b": 1.0}))
        pd.concat(pk).to_parquet(outdir / "peaks.parquet")
    params = {**PARAMS, "input": str(root / "samplesheet.csv"), "seed": 0}
    return outdir, params, pd.concat(truth, ignore_index=True)


def run(outdir, params):
    run_step(StepContext(params=params, outdir=outdir))
    return (pd.read_parquet(outdir / "imbalance.parquet"),
            json.loads((outdir / "call_imbalance.summary.json").read_text()))


def fdp_recall(table, truth):
    m = table.merge(truth, on=["cell_type", "variant_id"])
    called = m[m["label"] == "imbalanced"]
    fdp = float((called["effect"] == "none").mean()) if len(called) else 0.0
    recall = float((called["effect"] != "none").sum() / max(1, (m["effect"] != "none").sum()))
    return fdp, recall, m


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("imb")
    outdir, params, truth = make_study(root, peaks=True)
    table, summary = run(outdir, params)
    return outdir, params, truth, table, summary


# --------------------------------------------------------------------------- planted truth
def test_recovers_planted_imbalance_with_controlled_fdp(study):
    _, _, truth, table, summary = study
    fdp, recall, m = fdp_recall(table, truth)
    print(f"synthetic: {summary['labels']}, FDP {fdp:.4f}, recall {recall:.3f}")
    assert summary["labels"]["imbalanced"] > 200
    assert fdp <= 0.02
    assert recall > 0.3
    strong = m[(m["effect"] != "none") & (m["total"] >= 80) & ((m["true_ref_fraction"] - 0.5).abs() >= 0.2)]
    assert len(strong) > 30 and (strong["label"] == "imbalanced").mean() > 0.9  # power where it must be
    # planted nulls: randomised p-values uniform; plain p-values valid (P(p <= a) <= a)
    null = m[m["effect"] == "none"]
    p, lo = binom_two_sided_lower(null["ref_count"], null["total"], 0.5)
    np.testing.assert_allclose(p, null["pvalue"], rtol=1e-9)
    assert ss.kstest(randomized_pvalue(p, lo, np.random.default_rng(0)), "uniform").pvalue > 0.01
    for a in (0.01, 0.1):
        assert (null["pvalue"] <= a).mean() <= a * 1.1
    # balanced sites are mostly true nulls
    bal = m[m["label"] == "balanced"]
    assert (bal["effect"] == "none").mean() > 0.9


def test_pooling_equals_independent_count(study):
    outdir, params, _, table, _ = study
    raw = pd.concat([pd.read_parquet(f) for f in sorted((outdir / "counts").glob("*.parquet"))])
    for (ct, vid), t in list(table.groupby(["cell_type", "variant_id"]))[:: max(1, len(table) // 50)]:
        r = raw[(raw["cell_type"] == ct) & (raw["variant_id"] == vid)]
        row = t.iloc[0]
        assert row["ref_count"] == r["ref_count"].sum()
        assert row["alt_count"] == r["alt_count"].sum()
        assert row["other_count"] == r["other_count"].sum()
        assert row["total"] == r["ref_count"].sum() + r["alt_count"].sum()  # other not in total
        assert row["n_donors"] == r["donor"].nunique()
        assert row["ref_ratio"] == pytest.approx(row["ref_count"] / row["total"])
    assert (table["total"] > params["imbalance_min_total"]).all()
    assert table["donor"].isna().all()
    # every pooled site above the threshold is in the table, none below it
    pooled = raw.groupby(["cell_type", "variant_id"])[["ref_count", "alt_count"]].sum().sum(axis=1)
    assert int((pooled > 20).sum()) == len(table)


def test_pvalues_qvalues_labels_follow_definitions(study):
    _, _, _, table, summary = study
    from statsmodels.stats.multitest import multipletests

    sub = table.sample(60, random_state=1)
    ref = [ss.binomtest(int(k), int(n), 0.5).pvalue for k, n in zip(sub["ref_count"], sub["total"])]
    np.testing.assert_allclose(sub["pvalue"], ref, rtol=1e-10)
    for ct, t in table.groupby("cell_type"):  # BH per cell type
        np.testing.assert_allclose(t["qvalue"], multipletests(t["pvalue"], method="fdr_bh")[1], rtol=1e-12)
        assert summary["cell_types"][ct]["labels"]["imbalanced"] == int((t["label"] == "imbalanced").sum())
    assert ((table["label"] == "imbalanced") == (table["qvalue"] < 0.01)).all()
    bal = (table["label"] == "balanced")
    assert (bal == ((table["qvalue"] >= 0.01) & (table["pvalue"] > 0.1))).all()
    hist = summary["cell_types"]["ct_a"]["hist"]
    assert sum(hist["pvalue"]["counts"]) == summary["cell_types"]["ct_a"]["n_tested"]
    assert len(hist["ref_ratio"]["edges"]) == 51


def test_peak_annotation_matches_brute_force(study):
    outdir, _, _, table, summary = study
    peaks = pd.read_parquet(outdir / "peaks.parquet")
    for _, row in table.sample(200, random_state=2).iterrows():
        hit = peaks[(peaks["chrom"] == row["chrom"]) & (peaks["start"] <= row["pos"]) & (row["pos"] < peaks["end"])]
        if len(hit):
            assert row["peak_id"] == hit["peak_id"].iloc[0]
            assert row["peak_kind"] == hit["kind"].iloc[0]
            assert row["cluster"] == hit["cluster"].iloc[0]
            # own-cluster stratum: cluster ct_a is specific for ct_a and other_specific for ct_b
            label = hit["cluster_label"].iloc[0]
            expect = ("ubiquitous" if label == "ubiquitous" else "specific" if label == row["cell_type"]
                      else "other_specific")
            assert row["stratum"] == expect
        else:
            assert pd.isna(row["peak_id"]) and pd.isna(row["peak_kind"]) and pd.isna(row["cluster"])
            assert pd.isna(row["stratum"])
    assert table["peak_id"].notna().any() and table["peak_id"].isna().any()
    assert set(table["stratum"].dropna()) == {"ubiquitous", "specific", "other_specific"}
    strata = summary["cell_types"]["ct_a"]["by_stratum"]
    assert sum(k["n_tested"] for k in strata.values()) == summary["cell_types"]["ct_a"]["n_tested"]


def test_deterministic_and_cli_agrees(study, tmp_path):
    outdir, params, _, table, _ = study
    before = (outdir / "imbalance.parquet").read_bytes()
    run(outdir, params)
    assert (outdir / "imbalance.parquet").read_bytes() == before
    files = sorted(str(f) for f in (outdir / "counts").glob("*.parquet"))
    out = tmp_path / "imb.parquet"
    assert main(["--counts", *files, "--peaks", str(outdir / "peaks.parquet"), "--cell-types", "ct_a", "ct_b",
                 "--out", str(out), "--summary", str(tmp_path / "s.json")]) == 0
    pd.testing.assert_frame_equal(pd.read_parquet(out), table)
    assert STEP.needs == ("count_alleles",) and "cluster_peaks" in STEP.optional_needs


# --------------------------------------------------------------------------- options
def test_estimated_null_corrects_reference_bias(tmp_path):
    outdir, params, truth = make_study(tmp_path, ref_bias=0.58, n_variants=2500, seed=3)
    table, summary = run(outdir, params)
    fdp_fixed, _, _ = fdp_recall(table, truth)
    table, summary = run(outdir, {**params, "imbalance_null": "estimate"})
    fdp_est, recall, _ = fdp_recall(table, truth)
    est = summary["cell_types"]["ct_a"]["estimates"]
    print(f"ref bias 0.58: FDP fixed 0.5 {fdp_fixed:.3f}, estimated null {est['null_ref_fraction']:.4f} "
          f"FDP {fdp_est:.3f} recall {recall:.3f}")
    assert fdp_fixed > 0.1
    assert est["null_ref_fraction"] == pytest.approx(0.58, abs=0.015)
    assert fdp_est <= 0.02


def test_betabinomial_option_recovers_overdispersion(tmp_path):
    rho = 0.06
    outdir, params, truth = make_study(tmp_path, rho=rho, frac_imbalanced=0.0, n_variants=4000, depth_mean=25,
                                       seed=4)
    table_b, summary_b = run(outdir, params)
    est_b = summary_b["cell_types"]["ct_a"]["estimates"]
    table, summary = run(outdir, {**params, "imbalance_test": "betabinomial"})
    est = summary["cell_types"]["ct_a"]["estimates"]
    print(f"rho planted {rho}, estimated {est['overdispersion_rho']:.4f}; false calls binomial "
          f"{summary_b['labels']['imbalanced']}, beta-binomial {summary['labels']['imbalanced']}")
    # donors draw their fractions independently here, so pooling averages part of the
    # overdispersion away (pooled rho ~ rho * sum n_i^2 / n^2); exact recovery is checked
    # with donors kept separate below
    assert 0.2 * rho < est["overdispersion_rho"] < rho
    assert est_b["overdispersion_rho"] == pytest.approx(est["overdispersion_rho"], rel=1e-6)  # always reported
    assert summary["labels"]["imbalanced"] < summary_b["labels"]["imbalanced"]
    table, summary = run(outdir, {**params, "imbalance_test": "betabinomial", "imbalance_pool_donors": False,
                                  "imbalance_min_total": 10})
    est = summary["cell_types"]["ct_a"]["estimates"]
    assert abs(est["overdispersion_rho"] - rho) / rho < 0.2
    p, lo = _bb_lower(table, est)
    assert ss.kstest(randomized_pvalue(p, lo, np.random.default_rng(0)), "uniform").pvalue > 0.01
    pb, lb = binom_two_sided_lower(table["ref_count"], table["total"], 0.5)
    assert ss.kstest(randomized_pvalue(pb, lb, np.random.default_rng(0)), "uniform").pvalue < 1e-4


def _bb_lower(table, est):
    from caveat.stats import betabinom_test_two_sided

    t = table[table["cell_type"] == "ct_a"]
    p, lo = betabinom_test_two_sided(t["ref_count"], t["total"], est["null_ref_fraction"],
                                     est["overdispersion_rho"], return_lower=True)
    np.testing.assert_allclose(p, t["pvalue"], rtol=1e-12)
    return p, lo


def test_donors_kept_separate(study, tmp_path):
    outdir, params, _, _, _ = study
    table, summary = call_imbalance(
        pd.concat([read_counts(f) for f in sorted((outdir / "counts").glob("*.parquet"))]),
        {**params, "imbalance_pool_donors": False}, None)
    assert (table["n_donors"] == 1).all() and table["donor"].notna().all()
    assert not table.duplicated(["cell_type", "variant_id", "donor"]).any()
    assert table["peak_id"].isna().all()


def test_min_total_is_strict():
    counts = pd.DataFrame({"sample": "s", "donor": "d", "cell_type": "c", "variant_id": ["chr1:1:A:G", "chr1:2:A:G"],
                           "chrom": "chr1", "pos": [0, 1], "ref": "A", "alt": "G", "ref_count": [10, 11],
                           "alt_count": [10, 10], "other_count": [50, 0]})
    table, _ = call_imbalance(counts, PARAMS)
    assert table["variant_id"].tolist() == ["chr1:2:A:G"]  # total 20 is not > 20; other reads don't count
    pooled = pool_counts(counts)
    assert pooled["total"].tolist() == [20, 21]


# --------------------------------------------------------------------------- bad input
def test_no_site_passes_depth_gives_empty_valid_outputs(tmp_path):
    outdir, params, _ = make_study(tmp_path, n_variants=200, depth_mean=1.0, n_donors=2)
    table, summary = run(outdir, params)
    assert len(table) == 0 and summary["n_tested"] == 0
    assert "depth filter" in summary["message"]
    assert table.columns.tolist()[:4] == ["cell_type", "variant_id", "chrom", "pos"]
    assert str(table["pvalue"].dtype) == "float64" and str(table["total"].dtype) == "int64"


@pytest.mark.parametrize("bad, word", [(-1, "non-negative"), (np.nan, "missing")])
def test_bad_counts_name_the_sample(tmp_path, bad, word):
    outdir, params, _ = make_study(tmp_path, n_variants=100, n_donors=2)
    f = outdir / "counts" / "d1_ct_b.parquet"
    df = pd.read_parquet(f)
    df["alt_count"] = df["alt_count"].astype(float)
    df.loc[3, "alt_count"] = bad
    df.to_parquet(f)
    with pytest.raises(InputError, match="d1_ct_b") as e:
        run(outdir, params)
    assert word in str(e.value)
    assert not (outdir / "imbalance.parquet").exists()


def test_missing_counts_file_and_bad_params(tmp_path):
    outdir, params, _ = make_study(tmp_path, n_variants=50, n_donors=2)
    (outdir / "counts" / "d0_ct_a.parquet").unlink()
    with pytest.raises(InputError, match="d0_ct_a"):
        run(outdir, params)
    with pytest.raises(InputError, match="imbalance_test"):
        call_imbalance(pd.DataFrame(), {**params, "imbalance_test": "poisson"})


def test_overlapping_peaks_are_refused(tmp_path):
    from caveat.call_imbalance import read_peaks

    f = tmp_path / "peaks.parquet"
    pd.DataFrame({"peak_id": ["p1", "p2"], "chrom": "chr1", "start": [100, 150], "end": [200, 300],
                  "kind": "specific", "cluster": [1, 2]}).to_parquet(f)
    with pytest.raises(InputError, match="p2"):
        read_peaks(f)


# --------------------------------------------------------------------------- pipeline truth
def _truth_fdp(sim, outdir):
    """FDP and recall of the imbalanced calls, and the KS p of randomised p-values at planted
    nulls (effect "none" for every heterozygous donor), against ``truth/snps.parquet``."""
    snps = pd.read_parquet(sim / "truth" / "snps.parquet")
    snps = snps[~snps["is_indel"]] if "is_indel" in snps else snps
    null = (snps.groupby(["cell_type", "variant_id"])["effect"].agg(lambda e: bool((e == "none").all()))
            .rename("planted_null").reset_index())
    table = pd.read_parquet(outdir / "imbalance.parquet").merge(null, on=["cell_type", "variant_id"], how="left")
    is_null = table["planted_null"].fillna(True).astype(bool).to_numpy()  # unknown sites count as false calls
    called = (table["label"] == "imbalanced").to_numpy()
    fdp = float(is_null[called].mean()) if called.any() else 0.0
    recall = float((called & ~is_null).sum() / max(1, (~is_null).sum()))
    nul = table[table["planted_null"].fillna(False).astype(bool)]
    p, lo = binom_two_sided_lower(nul["ref_count"], nul["total"], 0.5)
    ks = ss.kstest(randomized_pvalue(p, lo, np.random.default_rng(0)), "uniform").pvalue if len(nul) else 1.0
    disp = float(((nul["ref_count"] - nul["total"] / 2) ** 2 / (nul["total"] / 4)).mean()) if len(nul) else 1.0
    print(f"pipeline: {len(table)} tested, {int(called.sum())} imbalanced, FDP {fdp:.4f}, recall {recall:.3f}; "
          f"{len(nul)} planted nulls: randomised-p KS p {ks:.3g}, dispersion index {disp:.3f}")
    return fdp, ks, len(nul)


def test_tiny_run_planted_truth(tiny_sim, tiny_run):
    fdp, ks, n_null = _truth_fdp(tiny_sim, tiny_run)
    assert fdp <= 0.02
    if n_null >= 200:  # below that the KS test has too little power to be worth asserting
        assert ks > 0.01


@pytest.mark.demo
def test_demo_run_planted_truth(demo_sim, demo_run):
    fdp, ks, n_null = _truth_fdp(demo_sim, demo_run)
    assert fdp <= 0.02
    assert n_null >= 200 and ks > 0.01
