"""evaluate: metrics recover planted truth on synthetic tables of the contract shapes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from caveat import evaluate as E
from caveat.engine import StepContext
from caveat.errors import InputError
from caveat.io import write_json, write_parquet
from caveat.metrics import match_histograms

CTS = ["ctA", "ctB", "ctC"]
REGIMES = ["single_task", "multitask", "multitask_peaks"]


def synthetic_outdir(out: Path, seed: int = 0, n_peaks: int = 600, n_var: int = 1200) -> Path:
    """An outdir with every table evaluate and report read, of the DESIGN shapes.

    Planted: ``single_task`` predicts each cell type's accessibility, ``multitask`` predicts
    the cell-type mean (over-correlated), ``multitask_peaks`` is noisy; variant
    scores follow the observed imbalance for single_task/multitask and are
    random for multitask_peaks.
    """
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    kind = np.where(np.arange(n_peaks) < n_peaks // 2, "ubiquitous", "specific")
    owner = rng.integers(0, len(CTS), n_peaks)
    base = rng.lognormal(4.0, 1.0, n_peaks)
    acc = np.where(kind[:, None] == "ubiquitous", base[:, None] * rng.lognormal(0, 0.2, (n_peaks, len(CTS))),
                   np.where(np.arange(len(CTS))[None, :] == owner[:, None], base[:, None] * 0.6, 2.0))
    donors = ["D1", "D2", "D3"]
    dcounts = rng.poisson(acc[None, :, :] / len(donors), (len(donors), n_peaks, len(CTS)))
    target = dcounts.sum(axis=0).astype(float)
    peak_id = np.array([f"peak{i:05d}" for i in range(n_peaks)])
    peaks = pd.DataFrame({"peak_id": peak_id, "chrom": "chr4", "start": np.arange(n_peaks) * 1000,
                          "end": np.arange(n_peaks) * 1000 + 500, "cluster": np.where(kind == "ubiquitous", 0, 1 + owner),
                          "kind": kind, "specificity": np.where(kind == "ubiquitous", 0.1, 0.8),
                          "cluster_label": np.where(kind == "ubiquitous", "ubiquitous", np.array(CTS)[owner])})
    for j, ct in enumerate(CTS):
        peaks[f"acc_{ct}"] = np.log2(target[:, j] / target[:, j].sum() * 1e6 + 1)
        peaks[f"count_{ct}"] = target[:, j].astype(np.int64)
    write_parquet(peaks, out / "peaks.parquet")
    d, p, c = np.meshgrid(np.arange(len(donors)), np.arange(n_peaks), np.arange(len(CTS)), indexing="ij")
    write_parquet(pd.DataFrame({"peak_id": peak_id[p.ravel()], "donor": np.array(donors)[d.ravel()],
                                "cell_type": np.array(CTS)[c.ravel()], "count": dcounts.ravel(),
                                "value": dcounts.ravel().astype(float)}),
                  out / "peaks_donor_counts.parquet")
    preds = {"single_task": acc * rng.lognormal(0, 0.3, acc.shape),
             "multitask": np.repeat(acc.mean(axis=1, keepdims=True), len(CTS), axis=1) * rng.lognormal(0, 0.05, acc.shape),
             "multitask_peaks": acc * rng.lognormal(0, 1.0, acc.shape)}
    frames = []
    n_win = 400
    wt = rng.poisson(5.0, (n_win, len(CTS))).astype(float)
    for r in REGIMES:
        for j, ct in enumerate(CTS):
            frames.append(pd.DataFrame({"regime": r, "kind": "peak", "peak_id": peak_id, "chrom": "chr4",
                                        "start": peaks["start"], "end": peaks["end"], "cell_type": ct,
                                        "target": target[:, j], "prediction": preds[r][:, j]}))
            frames.append(pd.DataFrame({"regime": r, "kind": "window", "peak_id": None, "chrom": "chr5",
                                        "start": np.arange(n_win) * 192, "end": np.arange(n_win) * 192 + 1344,
                                        "cell_type": ct, "target": wt[:, j],
                                        "prediction": wt[:, j] + rng.normal(0, 2.0, n_win)}))
    write_parquet(pd.concat(frames, ignore_index=True), out / "predictions.parquet")
    # variants: 1/8 imbalanced; the specific stratum has more strongly imbalanced sites (Fig. S4)
    sets, scores, imb = [], [], []
    for ct in CTS:
        vpos = 1000 + np.arange(n_var) * 250  # three variants per 750 bp peak: they share windows
        vid = np.array([f"chr4:{p}:A:G" for p in vpos])
        vpeak = np.array([f"vpeak{i // 3:05d}" for i in range(n_var)], dtype=object)
        positive = rng.random(n_var) < 0.125
        vstratum = rng.choice(["ubiquitous", "specific", "other_specific"], n_var)
        vkind = np.where(vstratum == "ubiquitous", "ubiquitous", "specific")
        effect = np.where(positive, rng.choice([-1, 1], n_var) * np.where(vkind == "specific", 0.3, 0.15), 0.0)
        total = rng.integers(21, 200, n_var)
        ref_count = rng.binomial(total, 0.5 + effect)
        ref_ratio = ref_count / total
        t = pd.DataFrame({"cell_type": ct, "variant_id": vid, "chrom": "chr4", "pos": vpos, "peak_id": vpeak,
                          "set": np.where(positive, "positive", "negative"),
                          "negative_set": np.where(positive, None, "depth_matched"),
                          "match_bin": rng.integers(0, 20, n_var), "total": total, "ref_ratio": ref_ratio,
                          "peak_kind": vkind, "stratum": vstratum,
                          "split": np.where(np.arange(n_var) % 3 == 0, "test", "train")})
        # region-controlled negatives: the balanced variants of peaks holding a positive (a second row each)
        pos_peaks = set(vpeak[positive])
        region = t[~positive & np.isin(vpeak, list(pos_peaks))].assign(negative_set="region_controlled")
        sets.append(pd.concat([t, region], ignore_index=True))
        imb.append(pd.DataFrame({"cell_type": ct, "variant_id": vid, "ref_count": ref_count,
                                 "alt_count": total - ref_count, "total": total, "ref_ratio": ref_ratio,
                                 "pvalue": rng.random(n_var), "qvalue": rng.random(n_var),
                                 "label": np.where(positive, "imbalanced", "balanced"),
                                 "peak_id": None, "peak_kind": vkind, "stratum": vstratum}))
        for r in REGIMES:
            good = r != "multitask_peaks"
            ratio = 0.5 + (effect * 0.8 + rng.normal(0, 0.03, n_var) if good else rng.normal(0, 0.1, n_var))
            ref_pred = rng.lognormal(2, 0.5, n_var)
            alt_pred = ref_pred * (1 - ratio) / ratio
            scores.append(pd.DataFrame({"regime": r, "cell_type": ct, "variant_id": vid, "ref_pred": ref_pred,
                                        "alt_pred": alt_pred, "pred_ref_ratio": ratio,
                                        "log2_fc": np.log2(alt_pred / ref_pred)}))
    write_parquet(pd.concat(sets, ignore_index=True), out / "variant_sets.parquet")
    # match_negatives' Fig. 4B table: variants in own/ubiquitous peaks, |ref_ratio - 0.5| histograms matched
    matched = []
    for t in sets:
        t = t[t["negative_set"] != "region_controlled"]
        dev = np.abs(t["ref_ratio"].to_numpy() - 0.5)
        u, s = np.flatnonzero(t["stratum"] == "ubiquitous"), np.flatnonzero(t["stratum"] == "specific")
        iu, is_ = match_histograms(dev[u], dev[s], 0.025, seed=seed, lo=0.0)
        matched.append(t.iloc[np.sort(np.r_[u[iu], s[is_]])])
    write_parquet(pd.concat(matched, ignore_index=True), out / "variant_sets_stratum_matched.parquet")
    write_parquet(pd.concat(scores, ignore_index=True), out / "variant_scores.parquet")
    write_parquet(pd.concat(imb, ignore_index=True), out / "imbalance.parquet")
    for r in ["multitask", "multitask_peaks"]:
        write_parquet(pd.DataFrame({"epoch": np.arange(1, 6), "train_loss": 3 - 0.2 * np.arange(5),
                                    "valid_loss": 3.1 - 0.15 * np.arange(5), "valid_pearson": 0.1 * np.arange(1, 6)}),
                      out / "models" / r / "history.parquet")
    for ct in CTS:
        write_parquet(pd.DataFrame({"epoch": [1, 2, 3], "train_loss": [3.0, 2.5, 2.2], "valid_loss": [3.0, 2.7, 2.6],
                                    "valid_pearson": [0.2, 0.3, 0.35]}),
                      out / "models" / "single_task" / ct / "history.parquet")
    for dn in donors:
        for ct in CTS:
            write_json({"reads_in": 10000, "kept_without_remap": 8000, "remapped": 2000, "kept_after_remap": 1800,
                        "dropped": {"mapped_elsewhere": 150, "too_many_snps": 50}, "duplicates": 300},
                       out / "wasp" / f"{dn}_{ct}.stats.json")
    return out


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    return synthetic_outdir(tmp_path_factory.mktemp("eval_synth"))


@pytest.fixture(scope="module")
def metrics_all(synth) -> pd.DataFrame:
    ctx = StepContext(params={**E.STEP.params, "seed": 0}, outdir=synth)
    E.run_step(ctx)
    return pd.read_parquet(synth / "metrics.parquet")


@pytest.fixture(scope="module")
def metrics(metrics_all) -> pd.DataFrame:
    """The ensemble's rows (one replicate here: the same numbers as rep1's, with the run's q-values)."""
    return metrics_all[metrics_all.replicate == "ensemble"].drop(columns="replicate").reset_index(drop=True)


def _get(m, metric, regime, ct, stratum="all"):
    if "replicate" in m.columns:
        m = m[m.replicate == "ensemble"]
    row = m[(m.metric == metric) & (m.regime == regime) & (m.cell_type == ct) & (m.stratum == stratum)]
    assert len(row) == 1, (metric, regime, ct, stratum, len(row))
    return row.iloc[0]


def test_columns_and_finite(metrics_all, metrics, synth):
    assert list(metrics_all.columns) == E.COLUMNS
    # one replicate: rep1, ensemble and median rows of every metric, the same values; no sd
    by = {r: g.drop(columns=["replicate", "q_value", "replicate_sd"]).reset_index(drop=True)
          for r, g in metrics_all.groupby("replicate")}
    assert set(by) == {"rep1", "ensemble", "median"} and by["rep1"].equals(by["ensemble"])
    np.testing.assert_array_equal(by["median"]["value"], by["rep1"]["value"])
    assert metrics_all["replicate_sd"].isna().all()
    assert np.isfinite(metrics["value"]).all()
    non_test = ~metrics["metric"].str.startswith("delong_")
    assert metrics.loc[non_test, "p_value"].isna().all()
    assert np.isfinite(metrics[["ci_low", "ci_high"]].to_numpy()).all()
    assert (metrics["ci_low"] <= metrics["value"] + 1e-12).all() and (metrics["value"] <= metrics["ci_high"] + 1e-12).all()
    summary = json.loads((synth / "evaluate.summary.json").read_text())
    assert summary["rows"] == len(metrics_all) and summary["nonfinite_values"] == 0 and summary["replicates"] == ["rep1"]


def _peak_table(synth, regime, ct):
    pred = pd.read_parquet(synth / "predictions.parquet")
    peaks = pd.read_parquet(synth / "peaks.parquet")
    return pred[(pred.regime == regime) & (pred.cell_type == ct) & (pred.kind == "peak")].merge(
        peaks[["peak_id", "kind", "cluster_label"]], on="peak_id", suffixes=("", "_peak"))


def test_peak_pearson_equals_independent_computation(metrics, synth):
    g = _peak_table(synth, "single_task", "ctB")
    own = g["cluster_label"] == "ctB"
    for stratum, sub in [("all", g), ("ubiquitous", g[g.kind_peak == "ubiquitous"]), ("specific", g[own]),
                         ("specific_any", g[g.kind_peak == "specific"])]:
        expect = np.corrcoef(np.log2(sub.target + 1), np.log2(sub.prediction + 1))[0, 1]
        row = _get(metrics, "pearson_peak", "single_task", "ctB", stratum)
        assert row.value == pytest.approx(expect, abs=1e-12) and row.n == len(sub)
    pred = pd.read_parquet(synth / "predictions.parquet")
    w = pred[(pred.regime == "multitask") & (pred.cell_type == "ctA") & (pred.kind == "window")]
    assert _get(metrics, "pearson_window", "multitask", "ctA").value == pytest.approx(
        np.corrcoef(w.target, w.prediction)[0, 1], abs=1e-12)


def test_own_cluster_differs_from_the_pooled_specific_stratum():
    """Constructed: within A's own cluster the model has no signal and the donors barely agree; over every
    specific cluster (A's open, B's closed in A) both look excellent. The own-cluster value is reported
    as ``specific`` (reference accuracy, over-correlation A|B, inter-donor bound), the pooled as ``specific_any``."""
    rng = np.random.default_rng(3)
    n = 300
    label = np.repeat(["ctA", "ctB", "ubiquitous"], n)
    kind = np.where(label == "ubiquitous", "ubiquitous", "specific")
    ids = np.array([f"p{i:04d}" for i in range(3 * n)])
    open_in = {"ctA": label != "ctB", "ctB": label != "ctA"}
    target = {ct: np.where(o, rng.lognormal(5, 0.5, 3 * n), rng.lognormal(1, 0.5, 3 * n)) for ct, o in open_in.items()}
    # no signal within a cluster: predictions only know open vs closed, and are identical across cell types
    # inside A's cluster (so they over-correlate there)
    pred = {ct: np.where(o, 100.0, 2.0) * rng.lognormal(0, 0.01, 3 * n) for ct, o in open_in.items()}
    pred["ctB"] = np.where(label == "ctA", pred["ctA"] / 50, pred["ctB"])
    peaks = pd.DataFrame({"peak_id": ids, "kind": kind, "cluster_label": label, "acc_ctA": 0.0, "acc_ctB": 0.0})
    p = pd.concat([pd.DataFrame({"regime": "multitask", "kind": "peak", "peak_id": ids, "chrom": "chr4", "start": 0,
                                 "end": 1, "cell_type": ct, "target": target[ct], "prediction": pred[ct]})
                   for ct in ("ctA", "ctB")], ignore_index=True)
    # donors: agree on open vs closed, independent noise within A's cluster
    donors = {d: np.where(open_in["ctA"], rng.lognormal(4, 0.6, 3 * n), rng.lognormal(0.5, 0.6, 3 * n))
              for d in ("D1", "D2")}
    dc = pd.concat([pd.DataFrame({"peak_id": ids, "donor": d, "cell_type": "ctA", "value": v})
                    for d, v in donors.items()], ignore_index=True)
    m = E.evaluate(p, None, None, peaks=peaks, donor_counts=dc)
    own, spec = label == "ctA", kind == "specific"
    lg = lambda x: np.log2(x + 1)  # noqa: E731

    def r(x, y):
        return np.corrcoef(x, y)[0, 1]

    row = _get(m, "pearson_peak", "multitask", "ctA", "specific")
    assert row.n == n and row.value == pytest.approx(r(lg(target["ctA"][own]), lg(pred["ctA"][own])), abs=1e-12)
    assert abs(row.value) < 0.2 and _get(m, "pearson_peak", "multitask", "ctA", "specific_any").value > 0.9
    oc = _get(m, "overcorrelation", "multitask", "ctA|ctB", "specific")
    want = (r(lg(pred["ctA"][own]), lg(pred["ctB"][own])) - r(lg(target["ctA"][own]), lg(target["ctB"][own])))
    assert oc.n == n and oc.value == pytest.approx(want, abs=1e-12) and oc.value > 0.8
    pooled = _get(m, "overcorrelation", "multitask", "ctA|ctB", "specific_any")
    assert pooled.n == 2 * n and abs(pooled.value - oc.value) > 0.5
    bound = _get(m, "replicate_pearson", "replicate", "ctA", "specific")
    assert bound.n == n and bound.value == pytest.approx(r(lg(donors["D1"][own]), lg(donors["D2"][own])), abs=1e-12)
    assert abs(bound.value) < 0.2 and _get(m, "replicate_pearson", "replicate", "ctA", "specific_any").value > 0.8
    assert spec.sum() == 2 * n


def test_height_matching_resamples_ubiquitous_and_keeps_specific_whole(metrics, synth):
    for ct in CTS:
        g = _peak_table(synth, REGIMES[0], ct)
        h = np.floor(np.log2(g.target + 1) / E.PARAMS["evaluate_height_bin"] + 1e-9)
        spec_bins = h[g.cluster_label == ct]
        ubi_bins = set(h[g.kind_peak == "ubiquitous"])
        expect_n = int(spec_bins.isin(ubi_bins).sum())
        n_u = {r: _get(metrics, "pearson_peak", r, ct, "ubiquitous_height_matched").n for r in REGIMES}
        assert set(n_u.values()) == {expect_n} and expect_n > 20
        assert _get(metrics, "pearson_peak", REGIMES[0], ct, "specific").n == int((g.cluster_label == ct).sum())
    assert not (metrics.stratum == "specific_height_matched").any()


def test_overcorrelation_uses_the_first_cell_types_own_cluster(metrics, synth):
    pred = pd.read_parquet(synth / "predictions.parquet")
    pk = pred[(pred.kind == "peak") & (pred.regime == "multitask")]
    peaks = pd.read_parquet(synth / "peaks.parquet").set_index("peak_id")
    t = pk.pivot(index="peak_id", columns="cell_type", values="target")
    p = pk.pivot(index="peak_id", columns="cell_type", values="prediction")
    for pair, ids, stratum in [("ctA|ctB", peaks.index[peaks.cluster_label == "ctA"], "specific"),
                               ("ctB|ctA", peaks.index[peaks.cluster_label == "ctB"], "specific"),
                               ("ctA|ctB", peaks.index[peaks.kind == "ubiquitous"], "ubiquitous"),
                               ("ctA|ctB", peaks.index[peaks.kind == "specific"], "specific_any")]:
        a, b = pair.split("|")
        rt = np.corrcoef(np.log2(t.loc[ids, a] + 1), np.log2(t.loc[ids, b] + 1))[0, 1]
        rp = np.corrcoef(np.log2(p.loc[ids, a] + 1), np.log2(p.loc[ids, b] + 1))[0, 1]
        row = _get(metrics, "overcorrelation", "multitask", pair, stratum)
        assert row.value == pytest.approx(rp - rt, abs=1e-12) and row.n == len(ids)
    assert not ((metrics.metric == "overcorrelation") & (metrics.cell_type == "ctB|ctA")
                & (metrics.stratum == "ubiquitous")).any()
    # multitask predicts the cell-type mean: over-correlated in A's own peaks, single_task is not
    mt = _get(metrics, "overcorrelation", "multitask", "ctA|ctC", "specific").value
    st = _get(metrics, "overcorrelation", "single_task", "ctA|ctC", "specific").value
    assert mt > st + 0.3


def test_replicate_bound(metrics, synth):
    dc = pd.read_parquet(synth / "peaks_donor_counts.parquet")
    peaks = pd.read_parquet(synth / "peaks.parquet").set_index("peak_id")
    for ct in CTS:
        for stratum, ids in (("specific", peaks.index[peaks.cluster_label == ct]),
                             ("ubiquitous", peaks.index[peaks.kind == "ubiquitous"])):
            x = np.log2(dc[dc.cell_type == ct].pivot(index="peak_id", columns="donor", values="value").loc[ids] + 1)
            expect = np.mean([np.corrcoef(x[a], x[b])[0, 1] for a, b in [("D1", "D2"), ("D1", "D3"), ("D2", "D3")]])
            row = _get(metrics, "replicate_pearson", "replicate", ct, stratum)
            assert row.value == pytest.approx(expect, abs=1e-12) and row.n == len(ids)
        r = _get(metrics, "replicate_pearson", "replicate", ct)
        assert 0.5 < r.value < 1.0
        ceiling = _get(metrics, "replicate_ceiling", "replicate", ct)
        assert r.value < ceiling.value < 1.0
        # the noisy model stays below the ceiling of the pooled target
        assert _get(metrics, "pearson_peak", "multitask_peaks", ct).value < ceiling.value


def test_variant_aurocs_recover_planted_signal(metrics, synth):
    sc = pd.read_parquet(synth / "variant_scores.parquet")
    sets = pd.read_parquet(synth / "variant_sets.parquet")
    v = sc[(sc.regime == "multitask") & (sc.cell_type == "ctA")].merge(
        sets[sets.negative_set != "region_controlled"], on=["cell_type", "variant_id"])
    expect = roc_auc_score(v.set == "positive", np.abs(v.pred_ref_ratio - 0.5))
    row = _get(metrics, "imbalance_auroc", "multitask", "ctA")
    assert row.value == pytest.approx(expect, abs=1e-12) and row.n == len(v)
    pos = v[(v.set == "positive") & (v.ref_ratio != 0.5)]
    assert _get(metrics, "direction_auroc", "multitask", "ctA").value == pytest.approx(
        roc_auc_score(pos.ref_ratio > 0.5, pos.pred_ref_ratio), abs=1e-12)
    for ct in CTS:
        assert _get(metrics, "imbalance_auroc", "single_task", ct).value > 0.8
        assert _get(metrics, "direction_auroc", "single_task", ct).value > 0.85
        assert abs(_get(metrics, "direction_auroc", "multitask_peaks", ct).value - 0.5) < 0.15
        test = _get(metrics, "delong_direction_auroc", "multitask", ct)
        assert test.reference == "multitask_peaks" and test.value > 0.2 and test.p_value < 1e-3
        # the direction task holds every imbalanced variant; strata by own cluster and test chromosomes
        # (a synthetic positive may sit at ref_ratio 0.5, which no FDR < 0.01 site does: it has no direction)
        s = sets[(sets.cell_type == ct) & (sets.negative_set != "region_controlled")]
        pos = (s.set == "positive") & (s.ref_ratio != 0.5)
        assert _get(metrics, "direction_auroc", "multitask", ct).n == int(pos.sum())
        for stratum, sel in (("specific", s.stratum == "specific"), ("specific_any", s.peak_kind == "specific"),
                             ("test_chroms", s.split == "test")):
            assert _get(metrics, "direction_auroc", "multitask", ct, stratum).n == int((sel & pos).sum())
            assert _get(metrics, "imbalance_auroc", "multitask", ct, stratum).n == int(sel.sum())
    assert "direction_auroc_tested" not in set(metrics.metric)


def test_stratum_matched_direction(metrics, synth):
    sc = pd.read_parquet(synth / "variant_scores.parquet")
    st = pd.read_parquet(synth / "variant_sets_stratum_matched.parquet")
    for k in ["ubiquitous", "specific"]:
        v = sc[(sc.regime == "single_task") & (sc.cell_type == "ctC")].merge(st[st.stratum == k],
                                                                             on=["cell_type", "variant_id"])
        v = v[v.ref_ratio != 0.5]
        row = _get(metrics, "direction_auroc_strata", "single_task", "ctC", k)
        assert row.value == pytest.approx(roc_auc_score(v.ref_ratio > 0.5, v.pred_ref_ratio), abs=1e-12)
        assert row.n == len(v)


def test_deterministic(synth, tmp_path):
    ins = E.load_inputs(synth / "predictions.parquet", synth / "variant_scores.parquet",
                        synth / "variant_sets.parquet", synth / "peaks.parquet")
    E.run(tmp_path / "a.parquet", ins, E.PARAMS, 3)
    E.run(tmp_path / "b.parquet", ins, E.PARAMS, 3)
    assert (tmp_path / "a.parquet").read_bytes() == (tmp_path / "b.parquet").read_bytes()


def test_bring_your_own_scores_cli(synth, tmp_path):
    sets = pd.read_parquet(synth / "variant_sets.parquet")
    ct = sets[sets.cell_type == "ctB"]
    rng = np.random.default_rng(9)
    signal = np.where(ct.set == "positive", 1.0, 0.0) * np.sign(ct.ref_ratio - 0.5) * 0.2
    user = pd.DataFrame({"variant_id": ct.variant_id, "ref_pred": 10 * (1 + signal + rng.normal(0, 0.02, len(ct))),
                         "alt_pred": 10 * (1 - signal)})
    write_parquet(user, tmp_path / "my_model.parquet")
    out = tmp_path / "m" / "metrics.parquet"
    assert E.main(["--scores", str(tmp_path / "my_model.parquet"), "--variant-sets",
                   str(synth / "variant_sets.parquet"), "--out", str(out)]) == 0
    m = pd.read_parquet(out)
    assert set(m.regime) == {"user"} and set(m.cell_type) == set(CTS)
    assert _get(m, "imbalance_auroc", "user", "ctB").value > 0.9
    assert (out.parent / "evaluate.summary.json").exists()
    # missing score column: a clear error naming it, nothing written
    write_parquet(user[["variant_id"]].assign(score=1.0), tmp_path / "bad.parquet")
    bad_out = tmp_path / "bad" / "metrics.parquet"
    with pytest.raises(InputError, match="pred_ref_ratio"):
        E.main(["--scores", str(tmp_path / "bad.parquet"), "--variant-sets", str(synth / "variant_sets.parquet"),
                "--out", str(bad_out)])
    assert not bad_out.exists()
    write_parquet(sets.drop(columns="set"), tmp_path / "sets_noset.parquet")
    with pytest.raises(InputError, match="lacks column.*set"):
        E.main(["--scores", str(tmp_path / "my_model.parquet"), "--variant-sets", str(tmp_path / "sets_noset.parquet")])
    with pytest.raises(InputError, match="together"):
        E.main(["--scores", str(tmp_path / "my_model.parquet")])


def test_optional_inputs_absent(synth, tmp_path):
    """Without peaks, donor counts and imbalance: whole-genome metrics only, no error."""
    for f in ["predictions.parquet", "variant_scores.parquet"]:
        (tmp_path / f).write_bytes((synth / f).read_bytes())
    sets = pd.read_parquet(synth / "variant_sets.parquet")[["cell_type", "variant_id", "set", "match_bin"]]
    write_parquet(sets, tmp_path / "variant_sets.parquet")
    E.run_step(StepContext(params={**E.PARAMS, "seed": 0}, outdir=tmp_path))
    m = pd.read_parquet(tmp_path / "metrics.parquet")
    assert set(m.stratum) == {"all"}
    assert "imbalance_auroc" in set(m.metric) and "direction_auroc" not in set(m.metric)
    assert "replicate_pearson" not in set(m.metric)


def test_undefined_metrics_are_dropped_not_nan():
    """A constant prediction has no Pearson R: the row is dropped (and logged), never NaN."""
    n = 50
    rng = np.random.default_rng(1)
    t = rng.poisson(5, n).astype(float)
    pred = pd.DataFrame({"regime": np.repeat(["multitask", "flat"], n), "kind": "window", "peak_id": None,
                         "chrom": "chr4", "start": np.tile(np.arange(n), 2), "end": np.tile(np.arange(n), 2) + 1,
                         "cell_type": "ctA", "target": np.tile(t, 2), "prediction": np.r_[t + rng.normal(0, 1, n),
                                                                                           np.full(n, 3.0)]})
    m = E.evaluate(pred, None, None)
    assert set(m["regime"]) == {"multitask"} and np.isfinite(m["value"]).all()


def test_malformed_predictions_rejected(synth, tmp_path):
    pred = pd.read_parquet(synth / "predictions.parquet")
    bad = pred.copy()
    bad.loc[5, "prediction"] = np.nan
    write_parquet(bad, tmp_path / "p.parquet")
    with pytest.raises(InputError, match="non-finite prediction"):
        E.main(["--predictions", str(tmp_path / "p.parquet"), "--out", str(tmp_path / "m.parquet")])
    write_parquet(pred.assign(kind="bin"), tmp_path / "p.parquet")
    with pytest.raises(InputError, match="kind must be"):
        E.main(["--predictions", str(tmp_path / "p.parquet"), "--out", str(tmp_path / "m.parquet")])
    write_parquet(pred.drop(columns="target"), tmp_path / "p.parquet")
    with pytest.raises(InputError, match="lacks column.*target"):
        E.main(["--predictions", str(tmp_path / "p.parquet"), "--out", str(tmp_path / "m.parquet")])
    (tmp_path / "p.parquet").write_text("not parquet")
    with pytest.raises(InputError, match="not a readable Parquet"):
        E.main(["--predictions", str(tmp_path / "p.parquet"), "--out", str(tmp_path / "m.parquet")])
    assert not (tmp_path / "m.parquet").exists()


def test_bad_params_rejected():
    with pytest.raises(InputError, match="evaluate_height_bin"):
        E.evaluate(None, None, None, params={"evaluate_height_bin": 0.0})
    with pytest.raises(InputError, match="evaluate_ci_level"):
        E.evaluate(None, None, None, params={"evaluate_ci_level": 95})


def test_a_missing_score_is_an_error_not_a_dropped_row(synth, tmp_path):
    """No metric may silently lose variants: one unscored set row (or stratum-table row) is an error."""
    sc = pd.read_parquet(synth / "variant_scores.parquet")
    one = sc.index[(sc.regime == "multitask") & (sc.cell_type == "ctA")][:1]
    write_parquet(sc.drop(index=one), tmp_path / "s.parquet")
    out = tmp_path / "m.parquet"
    with pytest.raises(InputError, match="1 variant row.*no score for regime multitask"):
        E.main(["--scores", str(tmp_path / "s.parquet"), "--variant-sets", str(synth / "variant_sets.parquet"),
                "--out", str(out)])
    st = pd.read_parquet(synth / "variant_sets_stratum_matched.parquet")
    extra = st.iloc[:1].assign(variant_id="chr9:1:A:C")
    write_parquet(pd.concat([st, extra]), tmp_path / "st.parquet")
    with pytest.raises(InputError, match="no score"):
        E.main(["--scores", str(synth / "variant_scores.parquet"), "--variant-sets",
                str(synth / "variant_sets.parquet"), "--stratum-sets", str(tmp_path / "st.parquet"), "--out", str(out)])
    assert not out.exists()


# ---------------------------------------------------------------- beyond the paper (issue 18)


def _hand_table(n=120, seed=4):
    """One regime, one cell type: imbalanced variants with known predicted/observed effects, spread out
    (one per block) and a few depth-matched negatives."""
    rng = np.random.default_rng(seed)
    pos = 1000 + np.arange(n) * 50_000
    vid = [f"chr1:{p}:A:G" for p in pos]
    total = rng.integers(21, 300, n)
    ref = rng.binomial(total, rng.uniform(0.1, 0.9, n))
    ref = np.where(ref * 2 == total, ref + 1, ref)  # no site exactly balanced
    positive = np.arange(n) < 90
    sets = pd.DataFrame({"cell_type": "A", "variant_id": vid, "chrom": "chr1", "pos": pos, "peak_id": None,
                         "set": np.where(positive, "positive", "negative"), "total": total, "ref_ratio": ref / total})
    lfc = np.round(np.log2((total - ref + 0.5) / (ref + 0.5)) * 0.5 + rng.normal(0, 0.6, n), 1)  # ties in |lfc|
    lfc[:5] = 0.0
    scores = pd.DataFrame({"regime": "multitask", "cell_type": "A", "variant_id": vid,
                           "pred_ref_ratio": 1 / (1 + 2.0 ** lfc), "log2_fc": lfc})
    return scores, sets, total[positive], ref[positive], lfc[positive]


def test_effect_size_and_topk_equal_independent_computations():
    from scipy.stats import spearmanr

    scores, sets, total, ref, lfc = _hand_table()
    m = E.evaluate(None, scores, sets, params={"evaluate_bootstrap": 50})
    obs = np.log((total - ref + 0.5) / (ref + 0.5))  # ALT preference: the sign of a positive log2(ALT/REF)
    row = _get(m, "effect_spearman", "multitask", "A")
    assert row.value == pytest.approx(spearmanr(lfc, obs).statistic, abs=1e-12) and row.n == 90
    assert row.value > 0.3 and row.ci_low < row.value < row.ci_high
    assert _get(m, "effect_pearson", "multitask", "A").value == pytest.approx(np.corrcoef(lfc, obs)[0, 1], abs=1e-12)
    # top-k: rank by |pred| (ties in table order: variant_id order here), accuracy of the sign
    order = np.argsort(np.array(sets["variant_id"][:90]), kind="mergesort")
    lfc_o, obs_o = lfc[order], obs[order]
    for pct in (10, 25, 50, 100):
        k = int(np.ceil(pct / 100 * 90))
        ranked = sorted(range(90), key=lambda i: (-abs(lfc_o[i]), i))[:k]
        hits = sum(1 for i in ranked if lfc_o[i] != 0 and np.sign(lfc_o[i]) == np.sign(obs_o[i]))
        r = _get(m, f"direction_accuracy_top{pct}", "multitask", "A")
        assert r.n == k and r.value == pytest.approx(hits / k, abs=1e-12)
    # the sign convention: flipping the prediction flips the correlation
    flipped = E.evaluate(None, scores.assign(log2_fc=-scores.log2_fc, pred_ref_ratio=1 - scores.pred_ref_ratio),
                         sets, params={"evaluate_bootstrap": 20})
    assert _get(flipped, "effect_spearman", "multitask", "A").value == pytest.approx(-row.value, abs=1e-12)


def test_effect_size_without_log2_fc_uses_the_ratio(synth, metrics):
    sc = pd.read_parquet(synth / "variant_scores.parquet").drop(columns=["log2_fc"])
    sets = pd.read_parquet(synth / "variant_sets.parquet")
    m = E.evaluate(None, sc[sc.regime == "single_task"], sets, params={"evaluate_bootstrap": 20})
    for ct in CTS:
        assert _get(m, "effect_spearman", "single_task", ct).value == pytest.approx(
            _get(metrics, "effect_spearman", "single_task", ct).value, abs=1e-9)
        assert _get(metrics, "effect_spearman", "single_task", ct).value > 0.5
        assert abs(_get(metrics, "effect_spearman", "multitask_peaks", ct).value) < 0.2


def test_region_controlled_auroc_side_by_side(metrics, synth):
    sc = pd.read_parquet(synth / "variant_scores.parquet")
    sets = pd.read_parquet(synth / "variant_sets.parquet")
    for ct in CTS:
        s = sets[(sets.cell_type == ct) & ((sets.set == "positive") | (sets.negative_set == "region_controlled"))]
        v = s.merge(sc[(sc.regime == "single_task") & (sc.cell_type == ct)], on=["cell_type", "variant_id"])
        row = _get(metrics, "imbalance_auroc_region_controlled", "single_task", ct)
        assert row.value == pytest.approx(roc_auc_score(v.set == "positive", np.abs(v.pred_ref_ratio - 0.5)),
                                          abs=1e-12)
        assert row.n == len(v)
        assert _get(metrics, "imbalance_auroc", "single_task", ct).n < len(sets[sets.cell_type == ct])


def test_cross_cell_type_matrix_diagonal_is_the_per_cell_type_auroc(metrics, synth):
    sc = pd.read_parquet(synth / "variant_scores.parquet")
    sets = pd.read_parquet(synth / "variant_sets.parquet")
    for regime in REGIMES:
        for ct in CTS:
            for cross, own in (("cross_imbalance_auroc", "imbalance_auroc"),
                               ("cross_direction_auroc", "direction_auroc")):
                d, o = _get(metrics, cross, regime, f"{ct}|{ct}"), _get(metrics, own, regime, ct)
                assert d.value == o.value and d.n == o.n
            for task in CTS + ["mean_of_tasks"]:
                _get(metrics, "cross_imbalance_auroc", regime, f"{ct}|{task}")
    # an off-diagonal cell: ctA's labels scored with ctC's task
    s = sets[(sets.cell_type == "ctA") & (sets.negative_set != "region_controlled")]
    t = sc[(sc.regime == "multitask") & (sc.cell_type == "ctC")][["variant_id", "pred_ref_ratio", "log2_fc"]]
    v = s.merge(t, on="variant_id")
    assert _get(metrics, "cross_imbalance_auroc", "multitask", "ctA|ctC").value == pytest.approx(
        roc_auc_score(v.set == "positive", np.abs(v.pred_ref_ratio - 0.5)), abs=1e-12)
    # the mean over tasks: mean log2(ALT/REF) back to a REF fraction
    lfc = sc[sc.regime == "multitask"].pivot_table(index="variant_id", columns="cell_type", values="log2_fc")
    mean = 1 / (1 + 2.0 ** lfc.mean(axis=1))
    pos = s[(s.set == "positive") & (s.ref_ratio != 0.5)]
    assert _get(metrics, "cross_direction_auroc", "multitask", "ctA|mean_of_tasks").value == pytest.approx(
        roc_auc_score(pos.ref_ratio > 0.5, mean.reindex(pos.variant_id)), abs=1e-12)


def test_cross_cell_type_skips_a_task_that_did_not_score_every_variant(synth):
    sc = pd.read_parquet(synth / "variant_scores.parquet")
    sets = pd.read_parquet(synth / "variant_sets.parquet")
    sc = sc[(sc.regime == "multitask") & ~((sc.cell_type == "ctC") & (sc.variant_id == sc.variant_id.iloc[0]))]
    sets = sets[sets.cell_type != "ctC"]
    m = E.evaluate(None, sc, sets, params={"evaluate_bootstrap": 10})
    cross = set(m.loc[m.metric == "cross_imbalance_auroc", "cell_type"])
    assert {"ctA|ctA", "ctA|ctB", "ctB|ctA"} <= cross
    assert not any(c.endswith("|ctC") or c.endswith("|mean_of_tasks") for c in cross)


def test_regime_tests_get_bh_q_values(metrics):
    t = metrics[metrics.metric.str.startswith("delong_")]
    assert len(t) > 10 and metrics.loc[~metrics.metric.str.startswith("delong_"), "q_value"].isna().all()
    p = t["p_value"].to_numpy()
    m = len(p)
    expect = np.empty(m)
    for i in range(m):  # q_i = min over p_j >= p_i of p_j * m / rank_j
        expect[i] = min(1.0, min(p[j] * m / (p <= p[j]).sum() for j in range(m) if p[j] >= p[i]))
    np.testing.assert_allclose(t["q_value"].to_numpy(), expect, rtol=1e-12)
    assert "delong_imbalance_auroc_region_controlled" in set(metrics.metric)


def test_block_bootstrap_widens_cis_when_variants_share_peaks():
    """Variants of one peak share their window, so their scores and labels: resampling peaks gives CIs at least
    as wide as treating variants as independent (each variant its own block)."""
    rng = np.random.default_rng(2)
    n_peaks, per = 60, 6
    sig = rng.normal(size=n_peaks)
    lab = rng.random(n_peaks) < 1 / (1 + np.exp(-2 * sig))
    peak = np.repeat([f"p{i:03d}" for i in range(n_peaks)], per)
    pos = 1000 + np.arange(n_peaks * per) * 100_000
    vid = [f"chr2:{p}:C:T" for p in pos]
    y = np.repeat(lab, per)
    sets = pd.DataFrame({"cell_type": "A", "variant_id": vid, "chrom": "chr2", "pos": pos, "peak_id": peak,
                         "set": np.where(y, "positive", "negative")})
    ratio = 0.5 + 0.1 * np.repeat(np.abs(sig), per) + rng.normal(0, 0.005, len(vid))
    scores = pd.DataFrame({"regime": "multitask", "cell_type": "A", "variant_id": vid, "pred_ref_ratio": ratio})
    width = {}
    for name, s in (("peaks", sets), ("variants", sets.assign(peak_id=None))):
        r = _get(E.evaluate(None, scores, s, params={"evaluate_bootstrap": 300}), "imbalance_auroc", "multitask", "A")
        width[name] = r.ci_high - r.ci_low
    assert width["peaks"] >= width["variants"] and width["peaks"] > 1.5 * width["variants"]


# ---------------------------------------------------------------- demo must-holds of the study's definitions


@pytest.mark.demo
def test_demo_strata_sets_and_tasks_are_the_studys(demo_run):
    """Own-cluster strata, every Fig. 4B row scored, every imbalanced variant in the direction task, the
    largest multiplier the final bins allow."""
    from caveat.strata import cluster_members

    m = pd.read_parquet(demo_run / "metrics.parquet")
    pred = pd.read_parquet(demo_run / "predictions.parquet")
    peaks = pd.read_parquet(demo_run / "peaks.parquet").set_index("peak_id")
    cts = [c[4:] for c in peaks.columns if c.startswith("acc_")]
    test_peaks = peaks.loc[pred.loc[pred.kind == "peak", "peak_id"].unique()]
    assert set(test_peaks.chrom) <= {"chr4", "chr5"}
    for regime in set(pred.regime):
        for ct in cts:
            own = sum(ct in cluster_members(lab, cts) for lab in test_peaks.cluster_label)
            assert _get(m, "pearson_peak", regime, ct, "specific").n == own, (regime, ct)
    scores = pd.read_parquet(demo_run / "variant_scores.parquet")
    strata = pd.read_parquet(demo_run / "variant_sets_stratum_matched.parquet")
    want = set(map(tuple, strata[["cell_type", "variant_id"]].to_numpy()))
    for regime, g in scores.groupby("regime"):
        assert want <= set(map(tuple, g[["cell_type", "variant_id"]].to_numpy())), regime
    imb = pd.read_parquet(demo_run / "imbalance.parquet")
    summary = json.loads((demo_run / "match_negatives.summary.json").read_text())
    for ct in cts:
        n_imb = int(((imb.cell_type == ct) & (imb.label == "imbalanced")).sum())
        for regime in set(scores.regime):
            assert _get(m, "direction_auroc", regime, ct).n == n_imb, (regime, ct)
        b = summary["cell_types"][ct]["bins"]
        n_pos, n_bal = np.array(b["n_positive"]), np.array(b["n_balanced"])
        mult = summary["cell_types"][ct]["multiplier"]
        assert mult == min(n_bal[n_pos > 0] // n_pos[n_pos > 0]) and mult >= 2, (ct, mult)
        print(f"{ct}: {n_imb} imbalanced, negatives {mult}x ({b['merges']} merges; {b['unmerged_multiplier']}x "
              "unmerged)")


# ---------------------------------------------------------------- replicates (issue 18.1)


def add_second_replicate(out: Path, seed: int = 11) -> tuple[pd.DataFrame, ...]:
    """Rewrite ``out``'s predictions and variant scores with two replicates: rep2 is rep1 times
    independent lognormal noise (predictions; REF and ALT predictions). Returns the four parts."""
    rng = np.random.default_rng(seed)
    pred = pd.read_parquet(out / "predictions.parquet").assign(replicate="rep1")
    pred2 = pred.assign(replicate="rep2", prediction=pred.prediction * rng.lognormal(0, 0.3, len(pred)))
    write_parquet(pd.concat([pred, pred2], ignore_index=True), out / "predictions.parquet")
    sc = pd.read_parquet(out / "variant_scores.parquet").assign(replicate="rep1")
    sc2 = sc.assign(replicate="rep2", ref_pred=sc.ref_pred * rng.lognormal(0, 0.4, len(sc)),
                    alt_pred=sc.alt_pred * rng.lognormal(0, 0.4, len(sc)))
    sc2 = sc2.assign(pred_ref_ratio=sc2.ref_pred / (sc2.ref_pred + sc2.alt_pred),
                     log2_fc=np.log2(sc2.alt_pred / sc2.ref_pred))
    write_parquet(pd.concat([sc, sc2], ignore_index=True), out / "variant_scores.parquet")
    return pred, pred2, sc, sc2


@pytest.fixture(scope="module")
def two_reps(tmp_path_factory):
    """The synthetic outdir with a second replicate (:func:`add_second_replicate`), evaluated."""
    out = synthetic_outdir(tmp_path_factory.mktemp("eval_reps"))
    pred, pred2, sc, sc2 = add_second_replicate(out)
    E.run_step(StepContext(params={**E.STEP.params, "seed": 0, "evaluate_bootstrap": 20}, outdir=out))
    return out, pred, pred2, sc, sc2, pd.read_parquet(out / "metrics.parquet")


def test_replicate_rows_median_sd_and_ensemble(two_reps):
    """Every metric has rep1, rep2, ensemble and median rows; median and sd are those of the
    replicates' values; the ensemble is scored from the mean of the replicates' predictions."""
    from caveat.metrics import log2p1, pearson

    out, pred, pred2, sc, sc2, m = two_reps
    for metric, g in m.groupby("metric"):
        assert {"rep1", "rep2", "ensemble", "median"} <= set(g.replicate), metric
    key = ["regime", "metric", "cell_type", "stratum", "reference"]
    wide = m.assign(reference=m.reference.fillna("")).pivot_table(index=key, columns="replicate", values="value")
    np.testing.assert_allclose(wide["median"], (wide["rep1"] + wide["rep2"]) / 2, rtol=1e-12)
    sd = m[m.replicate == "median"].assign(reference=lambda d: d.reference.fillna("")).set_index(key)["replicate_sd"]
    np.testing.assert_allclose(sd.reindex(wide.index), np.abs(wide["rep1"] - wide["rep2"]) / np.sqrt(2), rtol=1e-9,
                               atol=1e-12)
    assert (wide["rep1"] != wide["rep2"]).any()
    # the ensemble's window Pearson: mean of the two replicates' predictions
    w1 = pred[(pred.kind == "window") & (pred.regime == "multitask") & (pred.cell_type == "ctA")]
    w2 = pred2.loc[w1.index]
    if len(w1):
        r = pearson(w1.target, (w1.prediction + w2.prediction) / 2)
        row = m[(m.metric == "pearson_window") & (m.regime == "multitask") & (m.cell_type == "ctA")
                & (m.replicate == "ensemble")]
        np.testing.assert_allclose(row.value, r, rtol=1e-9)
    # the ensemble's variant scores: REF and ALT averaged, then the ratio
    p1 = pred[(pred.kind == "peak") & (pred.regime == "multitask") & (pred.cell_type == "ctA")]
    assert len(p1) and np.isfinite(log2p1(p1.prediction)).all()
    mean_ref = (sc.ref_pred + sc2.ref_pred) / 2
    mean_alt = (sc.alt_pred + sc2.alt_pred) / 2
    assert not np.allclose(mean_ref / (mean_ref + mean_alt), (sc.pred_ref_ratio + sc2.pred_ref_ratio) / 2)


def test_regime_tests_on_the_ensemble_with_replicate_sd(two_reps):
    """DeLong rows of every replicate and of the ensemble; q-values over the ensemble's tests only;
    the ensemble's test carries the sd over replicates of the per-replicate AUROC differences."""
    *_, m = two_reps
    t = m[m.metric.str.startswith("delong_")]
    assert {"rep1", "rep2", "ensemble", "median"} == set(t.replicate)
    assert t.loc[t.replicate != "ensemble", "q_value"].isna().all()
    ens = t[t.replicate == "ensemble"]
    assert ens.q_value.notna().all() and ens.p_value.notna().all() and ens.replicate_sd.notna().all()
    a = t[t.replicate == "rep1"].set_index(["regime", "metric", "cell_type", "stratum", "reference"]).value
    b = t[t.replicate == "rep2"].set_index(["regime", "metric", "cell_type", "stratum", "reference"]).value
    e = ens.set_index(["regime", "metric", "cell_type", "stratum", "reference"]).replicate_sd
    np.testing.assert_allclose(e.reindex(a.index), np.abs(a - b.reindex(a.index)) / np.sqrt(2), rtol=1e-9)


def test_replicate_direction_agreement(two_reps):
    """Per replicate: the share of distinct variants whose predicted direction is the ensemble's; the
    ensemble row: the share on which both replicates agree (direct computation)."""
    out, pred, pred2, sc, sc2, m = two_reps
    sets = pd.read_parquet(out / "variant_sets.parquet")
    ids = sets[sets.cell_type == "ctA"].variant_id.unique()
    k = ["regime", "cell_type", "variant_id"]
    a = sc.set_index(k).pred_ref_ratio.loc[[("multitask", "ctA", v) for v in ids]].to_numpy()
    b = sc2.set_index(k).pred_ref_ratio.loc[[("multitask", "ctA", v) for v in ids]].to_numpy()
    ref = (sc.set_index(k).ref_pred + sc2.set_index(k).ref_pred).loc[[("multitask", "ctA", v) for v in ids]]
    alt = (sc.set_index(k).alt_pred + sc2.set_index(k).alt_pred).loc[[("multitask", "ctA", v) for v in ids]]
    ens = (ref / (ref + alt)).to_numpy()
    got = m[(m.metric == "replicate_direction_agreement") & (m.regime == "multitask") & (m.cell_type == "ctA")
            & (m.stratum == "all")].set_index("replicate").value
    np.testing.assert_allclose(got["ensemble"], np.mean(np.sign(a - 0.5) == np.sign(b - 0.5)))
    np.testing.assert_allclose(got["rep2"], np.mean(np.sign(b - 0.5) == np.sign(ens - 0.5)))
    assert 0.5 < got["ensemble"] < 1


def test_replicate_agreement_leaves_out_a_one_model_regime(tmp_path):
    """An outside model (one replicate, rep1 only) next to a two-replicate regime has no
    replicate_direction_agreement rows: a missing replicate has no direction to agree with (its
    NaN ratio, cast to int8, once gave the baseline made-up agreement values)."""
    out = synthetic_outdir(tmp_path)
    add_second_replicate(out)
    sc = pd.read_parquet(out / "variant_scores.parquet")
    pred = pd.read_parquet(out / "predictions.parquet")
    one = sc[(sc.regime == "multitask") & (sc.replicate == "rep1")].assign(regime="outside_model")
    write_parquet(pd.concat([sc, one], ignore_index=True), out / "variant_scores.parquet")
    onep = pred[(pred.regime == "multitask") & (pred.replicate == "rep1")].assign(regime="outside_model")
    write_parquet(pd.concat([pred, onep], ignore_index=True), out / "predictions.parquet")
    E.run_step(StepContext(params={**E.STEP.params, "seed": 0, "evaluate_bootstrap": 10}, outdir=out))
    m = pd.read_parquet(out / "metrics.parquet")
    agree = m[m.metric == "replicate_direction_agreement"]
    assert set(agree.regime) >= {"multitask"} and "outside_model" not in set(agree.regime)
    assert agree.value.between(0, 1).all()
