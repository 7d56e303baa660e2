"""Tests of CALL_IMBALANCE on counts simulated here with planted allelic ratios,
and (when the simulator and allele counting exist) on the pipeline's tiny run."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats as ss

from caveat.call_imbalance import PARAMS, STEP, call_imbalance, main, read_counts, run_step
from caveat.engine import StepContext
from caveat.errors import InputError
from caveat.stats import betabinom_shapes, binom_two_sided_lower, randomized_pvalue
from reference_imbalance import pool_counts


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
                                    "acc_ct_a": 1.0, "acc_ct_b": 1.0,
                                    "called_ct_a": np.arange(starts.size) % 3 != 2,
                                    "called_ct_b": np.arange(starts.size) % 3 != 1}))
        pd.concat(pk).to_parquet(outdir / "peaks.parquet")
    # every donor here is a true het and every site is in the whole-genome family: the
    # cleaning filters (genotype confirmation, in-peak family) are tested on their own tables
    params = {**PARAMS, "input": str(root / "samplesheet.csv"), "seed": 0, "imbalance_het_min_reads": 0,
              "imbalance_in_peaks": False}
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
                 "--out", str(out), "--summary", str(tmp_path / "s.json"), "--imbalance-het-min-reads", "0",
                 "--no-imbalance-in-peaks"]) == 0
    pd.testing.assert_frame_equal(pd.read_parquet(out), table)
    assert STEP.needs == ("count_alleles", "cluster_peaks")  # the in-peak family needs peaks.parquet


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


def test_betabinomial_uses_the_null_sites_overdispersion(tmp_path):
    """With a third of the sites imbalanced (as in peaks on the simulated studies), the test's
    rho comes from the null component: FDP stays controlled where the binomial over-calls,
    and recall stays far above what the all-sites rho (an upper bound) allows."""
    from caveat.stats import bh_qvalues, betabinom_test_two_sided

    outdir, params, truth = make_study(tmp_path, rho=0.03, frac_imbalanced=0.3, n_variants=4000, depth_mean=60,
                                       seed=9, cell_types=("ct_a",))
    params = {**params, "imbalance_pool_donors": False, "imbalance_min_total": 20}
    table_b, _ = run(outdir, params)
    table, summary = run(outdir, {**params, "imbalance_test": "betabinomial"})
    est = summary["cell_types"]["ct_a"]["estimates"]
    fdp_b, recall_b, _ = fdp_recall(table_b, truth)
    fdp, recall, m = fdp_recall(table, truth)
    # the all-sites fit, as the test used before: an upper bound on the null's rho
    p_all = betabinom_test_two_sided(m["ref_count"], m["total"], 0.5, est["overdispersion_rho"])
    called_all = bh_qvalues(p_all) < params.get("imbalance_fdr", 0.01)
    recall_all = float((called_all & (m["effect"] != "none")).sum() / (m["effect"] != "none").sum())
    print(f"rho all sites {est['overdispersion_rho']:.4f}, null component {est['null_overdispersion_rho']:.4f} "
          f"(share {est['null_share']:.2f}); binomial FDP {fdp_b:.3f} recall {recall_b:.3f}; beta-binomial "
          f"FDP {fdp:.3f} recall {recall:.3f}; with the all-sites rho recall {recall_all:.3f}")
    assert est["null_overdispersion_rho"] == pytest.approx(0.03, rel=0.3)
    assert est["overdispersion_rho"] > 1.5 * est["null_overdispersion_rho"]
    assert fdp_b > 0.05 and fdp <= 0.02
    assert recall >= recall_all + 0.03  # ~0.06 vs 0: weak at rho 0.03 and ~60 reads, but not powerless


def _bb_lower(table, est):
    from caveat.stats import betabinom_test_two_sided

    t = table[table["cell_type"] == "ct_a"]
    p, lo = betabinom_test_two_sided(t["ref_count"], t["total"], est["null_ref_fraction"],
                                     est["null_overdispersion_rho"], return_lower=True)
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
    table, _ = call_imbalance(counts, {**PARAMS, "imbalance_in_peaks": False})
    assert table["variant_id"].tolist() == ["chr1:2:A:G"]  # total 20 is not > 20; other reads don't count
    pooled = pool_counts(counts)
    assert pooled["total"].tolist() == [20, 21]


# --------------------------------------------------------------------------- bad input
def test_no_site_passes_depth_gives_empty_valid_outputs(tmp_path):
    outdir, params, _ = make_study(tmp_path, n_variants=200, depth_mean=1.0, n_donors=2)
    table, summary = run(outdir, params)
    assert len(table) == 0 and summary["n_tested"] == 0
    assert "low_depth" in summary["message"] and summary["dropped"]["low_depth"] == summary["n_sites"]
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
    """FDP, the number of false calls and the KS p of randomised p-values at planted nulls
    (effect "none" for every heterozygous donor), against ``truth/snps.parquet``."""
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
    return fdp, int((called & is_null).sum()), ks, len(nul)


def _false_het_reads_in_calls(sim, outdir) -> list:
    """Imbalanced calls whose pooled counts include reads of a donor the VCF wrongly calls het
    there (truth/genotype_errors.parquet, kind false_het): the genotype check must keep such a
    donor's n:0 reads out, so every call at such a site is made of the other (true het) donors'
    reads. Returns the offending (cell_type, variant_id) pairs."""
    err = pd.read_parquet(sim / "truth" / "genotype_errors.parquet")
    false_het = err.loc[err["kind"] == "false_het", ["donor", "variant_id"]]
    table = pd.read_parquet(outdir / "imbalance.parquet")
    calls = table[(table["label"] == "imbalanced") & table["variant_id"].isin(false_het["variant_id"])]
    counts = pd.concat([read_counts(f) for f in sorted((outdir / "counts").glob("*.parquet"))])
    counts = counts[counts["variant_id"].isin(calls["variant_id"])]
    wrong = counts.merge(false_het, on=["donor", "variant_id"], how="left", indicator=True)["_merge"] == "both"
    true_hets = counts[~wrong.to_numpy()].groupby(["cell_type", "variant_id"])[["ref_count", "alt_count"]].sum()
    bad = []
    for row in calls.itertuples():
        own = true_hets.loc[(row.cell_type, row.variant_id)] if (row.cell_type, row.variant_id) in true_hets.index \
            else pd.Series({"ref_count": 0, "alt_count": 0})
        if (row.ref_count, row.alt_count) != (own["ref_count"], own["alt_count"]):
            bad.append((row.cell_type, row.variant_id))
    return bad


def _faults_never_tested(sim, outdir):
    """The faults the simulator plants (truth files) never reach the imbalanced set or the tests:
    no genotype-error site is labelled imbalanced, no site in an artefact region and no chrX
    site is tested (the default ``imbalance_chroms`` are the autosomes)."""
    snps = pd.read_parquet(sim / "truth" / "snps.parquet")
    table = pd.read_parquet(outdir / "imbalance.parquet")
    tested = table[table["label"] != "untested"]
    assert _false_het_reads_in_calls(sim, outdir) == []
    artefact = set(snps.loc[snps["in_artefact"], "variant_id"])
    assert artefact and not artefact & set(tested["variant_id"])
    assert (snps["chrom"] == "chrX").any() and not (tested["chrom"] == "chrX").any()


def test_tiny_run_planted_truth(tiny_sim, tiny_run):
    """The tiny study makes ~10-15 calls, so an FDP bound would mean "no false call at all",
    which BH at q = 0.01 does not promise (one chance call in ~10 % of studies); at most one
    false call is what it does promise there. FDP <= 0.02 is asserted on the demo (~150-400 calls)."""
    fdp, n_false, ks, n_null = _truth_fdp(tiny_sim, tiny_run)
    assert n_false <= 1
    if n_null >= 200:  # below that the KS test has too little power to be worth asserting
        assert ks > 0.01
    _faults_never_tested(tiny_sim, tiny_run)


def test_tiny_genotype_filter_keeps_false_hets_out(tiny_sim, tiny_run, tmp_path):
    """Without the genotype confirmation (``imbalance_het_min_reads: 0``) the simulator's false
    hets in accessible elements (reads n:0 for that donor) enter the imbalanced set; with it, none."""
    from caveat.params import load_params
    from caveat.pipeline import pipeline_steps

    params = load_params(tiny_sim / "params.yaml", {"outdir": str(tiny_run)}, pipeline_steps())
    counts = pd.concat([read_counts(f) for f in sorted((tiny_run / "counts").glob("*.parquet"))])
    from caveat.call_imbalance import read_blacklist, read_peaks

    peaks = read_peaks(tiny_run / "peaks.parquet")
    blacklist = read_blacklist(tiny_sim / "blacklist.bed")
    called = {}
    for min_reads in (0, params["imbalance_het_min_reads"]):
        table, _ = call_imbalance(counts, {**params, "imbalance_het_min_reads": min_reads}, peaks,
                                  blacklist=blacklist)
        out = tmp_path / f"min{min_reads}"
        (out / "counts").mkdir(parents=True)
        table.to_parquet(out / "imbalance.parquet")
        for f in (tiny_run / "counts").glob("*.parquet"):
            (out / "counts" / f.name).symlink_to(f)
        called[min_reads] = set(map("/".join, _false_het_reads_in_calls(tiny_sim, out)))
    print(f"false hets called imbalanced: filter off {sorted(called[0])}, on {sorted(called[2])}")
    assert len(called[0]) >= 1 and not called[params["imbalance_het_min_reads"]]


@pytest.mark.demo
def test_demo_run_planted_truth(demo_sim, demo_run):
    fdp, _, ks, n_null = _truth_fdp(demo_sim, demo_run)
    assert fdp <= 0.02
    _faults_never_tested(demo_sim, demo_run)


@pytest.mark.demo
def test_demo_binomial_over_calls_overdispersed_sites(demo_sim, demo_run):
    """The demo plants allelic overdispersion (rho 0.02): the study's binomial test calls
    balanced sites imbalanced (FDP > 0.02); the preset's beta-binomial with the null sites'
    rho does not (the test above)."""
    from caveat.call_imbalance import read_blacklist, read_peaks
    from caveat.params import load_params
    from caveat.pipeline import pipeline_steps

    params = load_params(demo_sim / "params.yaml", {"outdir": str(demo_run)}, pipeline_steps())
    assert params["imbalance_test"] == "betabinomial"
    counts = pd.concat([read_counts(f) for f in sorted((demo_run / "counts").glob("*.parquet"))])
    table, _ = call_imbalance(counts, {**params, "imbalance_test": "binomial"},
                              read_peaks(demo_run / "peaks.parquet"),
                              blacklist=read_blacklist(demo_sim / "blacklist.bed"))
    out = demo_run.parent / "binomial_check"
    out.mkdir(exist_ok=True)
    table.to_parquet(out / "imbalance.parquet")
    fdp, *_ = _truth_fdp(demo_sim, out)
    assert fdp > 0.02


# --------------------------------------------------------------------------- cleaning the tested sites
def _rows(*rows):
    """Counts rows (donor, cell_type, chrom, pos, ref_count, alt_count) → a counts table."""
    df = pd.DataFrame(rows, columns=["donor", "cell_type", "chrom", "pos", "ref_count", "alt_count"])
    df["sample"] = df["donor"] + "_" + df["cell_type"]
    df["ref"], df["alt"], df["other_count"] = "A", "G", 0
    df["variant_id"] = df["chrom"] + ":" + (df["pos"] + 1).astype(str) + ":A:G"
    return df


OFF = {"imbalance_in_peaks": False}


def test_genotype_confirmation_pools_each_donor_over_its_cell_types():
    counts = _rows(
        # s1: D1 is a false het (REF only, strong); D2 a true het
        ("D1", "ctA", "chr1", 1000, 40, 0), ("D1", "ctB", "chr1", 1000, 30, 1),
        ("D2", "ctA", "chr1", 1000, 12, 11), ("D2", "ctB", "chr1", 1000, 10, 12),
        # s2: D2 shows one ALT read per cell type: confirmed only over both (2 >= 2)
        ("D2", "ctA", "chr1", 2000, 30, 1), ("D2", "ctB", "chr1", 2000, 0, 1),
        # s3: D1 alone, REF only
        ("D1", "ctA", "chr1", 3000, 50, 0))
    table, summary = call_imbalance(counts, OFF)
    t = table.set_index(["cell_type", "variant_id"])
    s1, s2, s3 = "chr1:1001:A:G", "chr1:2001:A:G", "chr1:3001:A:G"
    assert t.loc[("ctA", s1), ["ref_count", "alt_count", "n_donors"]].tolist() == [12, 11, 1]  # D2 alone
    assert t.loc[("ctA", s1), "label"] == "balanced" and t.loc[("ctB", s1), "ref_count"] == 10
    assert t.loc[("ctA", s2), "label"] == "imbalanced"  # confirmed by the reads of both cell types
    assert ("ctA", s3) not in t.index
    assert summary["genotype_confirmation"]["donors"] == {
        "D1": {"n_sites": 2, "n_unconfirmed": 2, "reads_removed": 121},
        "D2": {"n_sites": 2, "n_unconfirmed": 0, "reads_removed": 0}}
    assert summary["cell_types"]["ctA"]["dropped"]["genotype_unconfirmed"] == 1  # s3: no donor left
    assert summary["cell_types"]["ctB"]["dropped"]["low_depth"] == 1  # s2 in ctB: 1 read
    # the filter off: D1's false het makes s1 and s3 imbalanced
    table0, summary0 = call_imbalance(counts, {**OFF, "imbalance_het_min_reads": 0})
    t0 = table0.set_index(["cell_type", "variant_id"])
    assert t0.loc[("ctA", s1), ["ref_count", "alt_count", "n_donors"]].tolist() == [52, 11, 2]
    assert t0.loc[("ctA", s1), "label"] == "imbalanced" and t0.loc[("ctA", s3), "label"] == "imbalanced"
    assert summary0["cell_types"]["ctA"]["dropped"]["genotype_unconfirmed"] == 0
    # at least 3 of each allele: D2's two ALT reads at s2 no longer confirm it
    table3, _ = call_imbalance(counts, {**OFF, "imbalance_het_min_reads": 3})
    assert s2 not in set(table3["variant_id"]) and s1 in set(table3["variant_id"])


def _artefact_study(tmp_path):
    """One sample: 300 background sites (1-3 reads), 100 peak sites (40-150 reads), and three
    artefacts: A (blacklisted, 300,000 reads), B (not blacklisted, 100,000 reads), C (blacklisted,
    40 reads). Returns counts, blacklist BED path, and the variant ids of A, B, C."""
    rng = np.random.default_rng(11)
    depth = np.r_[rng.integers(1, 4, 300), rng.integers(40, 151, 100), 300_000, 100_000, 40]
    ref = rng.binomial(depth, 0.5)
    ref[-3:] = [250_000, 80_000, 30]
    pos = np.arange(depth.size) * 1000 + 500
    counts = _rows(*[("D1", "ctA", "chr1", int(p), int(r), int(d - r)) for p, d, r in zip(pos, depth, ref)])
    bed = tmp_path / "blacklist.bed"
    bed.write_text(f"# artefact regions\nchr1\t{pos[-3] - 10}\t{pos[-3] + 10}\nchr1\t{pos[-1]}\t{pos[-1] + 1}\n"
                   "chrM\t0\t16000\n")
    return counts, bed, counts["variant_id"].iloc[-3:].tolist()


def test_blacklist_and_depth_outliers_are_dropped_and_counted(tmp_path):
    from caveat.call_imbalance import read_blacklist

    counts, bed, (a, b, c) = _artefact_study(tmp_path)
    params = {**OFF, "imbalance_het_min_reads": 0}
    table, summary = call_imbalance(counts, params, blacklist=read_blacklist(bed))
    assert not {a, b, c} & set(table["variant_id"])
    dropped = summary["cell_types"]["ctA"]["dropped"]
    assert list(dropped) == ["genotype_unconfirmed", "blacklist", "depth_outlier", "out_of_peak", "excluded_chrom",
                             "low_depth"]
    assert dropped["blacklist"] == 2 and dropped["depth_outlier"] == 1  # A counts under the blacklist, first
    assert dropped["low_depth"] == 300 and summary["n_tested"] == 100  # no ordinary peak site is an outlier
    depth = counts["ref_count"] + counts["alt_count"]
    ref_depth = int(np.quantile(depth[depth > 0], 0.99, method="lower"))
    assert summary["depth_outliers"]["samples"]["D1_ctA"]["reference_depth"] == ref_depth
    assert depth.iloc[300:400].max() > 10 * depth.median()  # a 10 x median rule would drop real peaks

    def fractions(df):  # independent: straight from the rows
        tot = df["ref_count"] + df["alt_count"]
        return {"depth_weighted": df["ref_count"].sum() / tot.sum(), "site_mean": (df["ref_count"] / tot).mean()}

    clean = counts[~counts["variant_id"].isin([a, b, c])]
    for key, df in (("before_artefact_filters", counts), ("after_artefact_filters", clean),
                    ("tested", clean.iloc[300:])):
        got = summary["ref_fraction"][key]
        want = fractions(df)
        assert got["n_sites"] == len(df)
        assert got["depth_weighted"] == pytest.approx(want["depth_weighted"], rel=1e-12)
        assert got["site_mean"] == pytest.approx(want["site_mean"], rel=1e-12)
    assert summary["ref_fraction"]["before_artefact_filters"]["depth_weighted"] > 0.8  # what the artefacts did
    assert abs(summary["ref_fraction"]["after_artefact_filters"]["depth_weighted"] - 0.5) < 0.02
    assert summary["cell_types"]["ctA"]["ref_fraction"] == summary["ref_fraction"]
    # without the rules both giant sites are tested, and called imbalanced
    table0, summary0 = call_imbalance(counts, {**params, "imbalance_max_depth_ratio": 0})
    assert set(table0.loc[table0["label"] == "imbalanced", "variant_id"]) >= {a, b}
    assert summary0["dropped"]["blacklist"] == summary0["dropped"]["depth_outlier"] == 0
    # the CLI reads the BED (comments and contigs the data lack are fine)
    f = tmp_path / "counts.parquet"
    counts.to_parquet(f)
    assert main(["--counts", str(f), "--no-imbalance-in-peaks", "--imbalance-het-min-reads", "0", "--blacklist",
                 str(bed), "--out", str(tmp_path / "o.parquet"), "--summary", str(tmp_path / "o.json")]) == 0
    cli = pd.read_parquet(tmp_path / "o.parquet")
    assert cli["variant_id"].tolist() == table["variant_id"].tolist()
    np.testing.assert_array_equal(cli["qvalue"], table["qvalue"])
    cli_summary = json.loads((tmp_path / "o.json").read_text())
    assert cli_summary["blacklist"] == {"regions": 3, "bp": 20 + 1 + 16000}
    assert cli_summary["params"]["blacklist"] == "blacklist.bed"  # no absolute path in an output


def test_bad_blacklist_names_the_file_and_line(tmp_path):
    from caveat.call_imbalance import read_blacklist

    bed = tmp_path / "bl.bed"
    bed.write_text("chr1\t10\t20\nchr1\t50\t40\n")
    with pytest.raises(InputError, match=r"bl\.bed.*line 2") as e:
        read_blacklist(bed)
    assert "reversed" in str(e.value)
    with pytest.raises(InputError, match="not found"):
        read_blacklist(tmp_path / "missing.bed")


def _family_study():
    """Two cell types, sites on chr1, chr2 and chrX, in and out of peaks; each consensus peak
    is called in one or both cell types. Returns counts and peaks (read_peaks layout)."""
    rng = np.random.default_rng(5)
    peaks = pd.DataFrame({"peak_id": [f"p{i}" for i in range(6)],
                          "chrom": ["chr1", "chr1", "chr2", "chr2", "chrX", "chrX"],
                          "start": [0, 20_000, 0, 20_000, 0, 20_000], "end": [10_000, 30_000] * 3,
                          "kind": ["ubiquitous", "specific"] * 3, "cluster": [0, 1] * 3,
                          "cluster_label": ["ubiquitous", "ctA"] * 3,
                          "called_ctA": [True, True, True, True, True, True],
                          "called_ctB": [True, False, True, False, True, False]})
    rows = []
    for chrom in ("chr1", "chr2", "chrX"):
        for pos in rng.choice(40_000, 120, replace=False):
            for ct in ("ctA", "ctB"):
                d = int(rng.integers(15, 120))
                r = int(rng.binomial(d, rng.choice([0.5, 0.5, 0.8])))
                rows.append(("D1", ct, chrom, int(pos), r, d - r))
    return _rows(*rows), peaks


def test_in_peak_autosomal_family_and_bh_within_it(tmp_path):
    from caveat.stats import bh_qvalues

    counts, peaks = _family_study()
    params = {"imbalance_het_min_reads": 0}
    table, summary = call_imbalance(counts, params, peaks)
    assert not (table["chrom"] == "chrX").any()
    for ct in ("ctA", "ctB"):
        c = counts[counts["cell_type"] == ct]
        ok = np.zeros(len(c), bool)
        for p in peaks[peaks[f"called_{ct}"]].itertuples():  # brute force: own peaks, half-open
            ok |= ((c["chrom"] == p.chrom) & (c["pos"] >= p.start) & (c["pos"] < p.end)).to_numpy()
        auto = c["chrom"].isin(["chr1", "chr2"]).to_numpy()
        deep = (c["ref_count"] + c["alt_count"] > 20).to_numpy()
        fam = c[ok & auto & deep]
        t = table[table["cell_type"] == ct].set_index("variant_id").loc[fam["variant_id"]]
        assert len(table[table["cell_type"] == ct]) == len(fam)
        pv = np.array([ss.binomtest(int(k), int(n)).pvalue for k, n in
                       zip(fam["ref_count"], fam["ref_count"] + fam["alt_count"])])
        np.testing.assert_allclose(t["pvalue"], pv, rtol=1e-10)
        np.testing.assert_allclose(t["qvalue"], bh_qvalues(pv), rtol=1e-12)
        d = summary["cell_types"][ct]["dropped"]
        assert d["out_of_peak"] == int((~ok).sum())
        assert d["excluded_chrom"] == int((ok & ~auto).sum())
        assert d["low_depth"] == int((ok & auto & ~deep).sum())
    # ctB's own peaks are half of the consensus set: fewer sites than ctA
    assert summary["cell_types"]["ctB"]["n_tested"] < summary["cell_types"]["ctA"]["n_tested"]
    # every site, still autosomes only; then every contig asked for
    allt, s_all = call_imbalance(counts, {**params, "imbalance_in_peaks": False}, peaks)
    assert s_all["dropped"]["out_of_peak"] == 0 and not (allt["chrom"] == "chrX").any()
    assert allt["peak_id"].isna().any() and len(allt) > len(table)
    withx, _ = call_imbalance(counts, {**params, "imbalance_in_peaks": False,
                                       "imbalance_chroms": ["chr1", "chr2", "chrX"]}, peaks)
    assert (withx["chrom"] == "chrX").any()
    for ct, t in withx.groupby("cell_type"):  # one family per cell type, all of its sites
        np.testing.assert_allclose(t["qvalue"], bh_qvalues(t["pvalue"].to_numpy()), rtol=1e-12)


def test_in_peak_family_needs_own_peak_columns(tmp_path):
    from caveat.call_imbalance import read_peaks

    counts, peaks = _family_study()
    f = tmp_path / "peaks.parquet"
    peaks.drop(columns=["called_ctB"]).to_parquet(f)
    with pytest.raises(InputError, match="called_ctB") as e:
        call_imbalance(counts, {}, read_peaks(f))
    assert "peaks.parquet" in str(e.value) and "cluster_peaks" in str(e.value)
    with pytest.raises(InputError, match="imbalance_in_peaks"):
        call_imbalance(counts, {})


def test_step_without_peaks_parquet_is_an_error(tmp_path):
    outdir, params, _ = make_study(tmp_path, n_variants=50, n_donors=2)
    with pytest.raises(InputError, match="peaks.parquet") as e:
        run(outdir, {**params, "imbalance_in_peaks": True})
    assert "imbalance_in_peaks" in str(e.value)
    assert not (outdir / "imbalance.parquet").exists()


def test_autosome_rule():
    from caveat.call_imbalance import tested_chroms

    names = np.array(["chr1", "chr22", "1", "X", "chrX", "chrY", "chrM", "chr1_KI270706v1_random", "chr10"])
    assert tested_chroms(names, None).tolist() == [True, True, True, False, False, False, False, False, True]
    assert tested_chroms(names, ["chrX"]).tolist() == [n == "chrX" for n in names]
