"""Issue 19's must-holds on the simulated single-cell demo (``-m demo``; ``CAVEAT_DEMO_SC_DIR``
names a ``caveat simulate --preset demo-sc --seed 1`` study to reuse).

The demo-sc study is the bulk demo's (same genome, donors, elements, truth) read out as two
10x-like libraries pooling every donor, with cross-cell twins at strong peaks. Its recoveries
must reach the bulk demo's bars (tests/test_call_imbalance.py, test_cluster_peaks.py,
test_predict.py, test_score_variants.py, test_wasp_remap.py).
"""

from __future__ import annotations

import pandas as pd
import pytest

from test_call_imbalance import _truth_fdp
from test_cluster_peaks import recovery
from test_predict import ubiquitous_peak_pearson
from test_score_variants import multitask_direction_auroc

pytestmark = pytest.mark.demo


@pytest.fixture(scope="module")
def study(demo_sc_run):
    return demo_sc_run.parent


def test_demo_sc_imbalance_fdp(study, demo_sc_run):
    fdp, n_false, ks, n_null = _truth_fdp(study, demo_sc_run)
    assert fdp <= 0.02, (fdp, n_false)


def test_demo_sc_recovers_planted_clusters(study, demo_sc_run):
    r = recovery(study, demo_sc_run)
    print("demo-sc cluster recovery:", r)
    assert r["ari"] >= 0.8 and r["ubi_precision"] >= 0.9 and r["ubi_recall"] >= 0.9, r


def test_demo_sc_multitask_reference_accuracy(demo_sc_run):
    pred = pd.read_parquet(demo_sc_run / "predictions.parquet")
    peaks = pd.read_parquet(demo_sc_run / "peaks.parquet")
    r = ubiquitous_peak_pearson(pred, peaks, "multitask")
    print("demo-sc multitask ubiquitous-peak Pearson R:", r)
    assert {ct for _, ct in r} == set(pred.cell_type) and min(r.values()) >= 0.5, r


def test_demo_sc_multitask_direction_auroc(demo_sc_run):
    by_rep, _ = multitask_direction_auroc(demo_sc_run)
    assert by_rep and all(n >= 20 and auc >= 0.65 for auc, n in by_rep.values()), by_rep


def test_demo_sc_reference_bias_in_duplications_removed(study, demo_sc_run):
    """REF fraction at planted-null het SNPs in duplications, over every donor x cell type
    group's counts after the per-library WASP filter: within 0.01 of 0.5."""
    truth = pd.read_parquet(study / "truth" / "snps.parquet")
    truth = truth[~truth["is_indel"]].drop_duplicates(["donor", "variant_id", "cell_type"])
    counts = pd.concat([pd.read_parquet(f) for f in sorted((demo_sc_run / "counts").glob("*.parquet"))])
    m = counts.merge(truth, on=["donor", "variant_id", "cell_type"])
    m = m[(m["expected_ref_fraction"] == 0.5) & m["in_duplication"]]
    n = int(m["ref_count"].sum() + m["alt_count"].sum())
    frac = m["ref_count"].sum() / n
    print(f"demo-sc REF fraction at planted-null duplication SNPs: {frac:.4f} over {n} reads")
    assert n >= 15_000 and abs(frac - 0.5) < 0.01
