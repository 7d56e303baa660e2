"""Bounded-memory table paths (issue 17 point 2): CALL_IMBALANCE's per-sample / per-cell-type
polars passes against an independent pandas computation over the whole counts table, no rows
for sites without reads, and the compact prediction reader against pandas."""

from __future__ import annotations

import numpy as np
import pandas as pd
import polars as pl
import pytest

from caveat.call_imbalance import PARAMS, _pooled_sites, call_imbalance, counts_part, read_counts
from caveat.count_tables import parts_of_frame, sample_depth
from caveat.prediction_tables import read_predictions
from reference_imbalance import confirm_genotypes, pool_counts
from test_call_imbalance import make_study

OFF = {**PARAMS, "imbalance_in_peaks": False, "imbalance_max_depth_ratio": 0, "imbalance_het_min_reads": 2}


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    outdir, _, _ = make_study(tmp_path_factory.mktemp("mem"), n_donors=4, n_variants=1500, depth_mean=6.0, seed=3)
    files = sorted((outdir / "counts").glob("*.parquet"))
    return outdir, files, pd.concat([read_counts(f) for f in files], ignore_index=True)


def test_table_equals_independent_pandas_pooling(study):
    """Every tested site's reads and donor count equal a whole-table pandas groupby
    (:mod:`reference_imbalance`), rows in the same order (cell type, natural contig order, pos);
    the tested set is exactly the confirmed autosomal sites above the depth threshold."""
    _, _, counts = study
    table, summary = call_imbalance(counts, OFF)
    ref = pool_counts(confirm_genotypes(counts, 2))
    ref["autosome"] = ref["chrom"].str.match(r"^(chr)?\d+$")
    want = ref[ref["autosome"] & (ref["total"] > OFF["imbalance_min_total"])].reset_index(drop=True)
    assert len(table) > 100 and ref["chrom"].nunique() >= 2
    cols = ["cell_type", "variant_id", "chrom", "pos", "ref_count", "alt_count", "other_count", "total", "n_donors"]
    pd.testing.assert_frame_equal(table[cols], want[cols], check_dtype=False)
    # the summary's per-cell-type site counts, zero-read sites included
    n_read = counts.groupby("cell_type")["variant_id"].nunique()
    n_conf = ref.groupby("cell_type").size()
    for ct, info in summary["cell_types"].items():
        assert info["n_sites"] == n_read[ct]
        assert info["dropped"]["genotype_unconfirmed"] == n_read[ct] - n_conf[ct]
        assert info["dropped"]["low_depth"] == int((ref[(ref["cell_type"] == ct) & ref["autosome"]]["total"]
                                                     <= OFF["imbalance_min_total"]).sum())
    donors = summary["genotype_confirmation"]["donors"]
    for d, sub in counts.groupby("donor"):
        assert donors[d]["n_sites"] == sub["variant_id"].nunique()


def test_file_parts_equal_in_memory_table(study):
    """The step's path (one sample's file at a time) gives the table and summary of the in-memory path."""
    _, files, counts = study
    parts = []
    for f in files:
        s = read_counts(f)
        parts.append(counts_part(f, s["sample"].iloc[0], s["donor"].iloc[0], s["cell_type"].iloc[0]))
    params = {**OFF, "imbalance_max_depth_ratio": 3.0}
    t1, s1 = call_imbalance(counts, params)
    t2, s2 = call_imbalance(parts, params)
    pd.testing.assert_frame_equal(t1, t2)
    assert s1 == s2


def test_sites_without_reads_make_no_rows(study):
    """Zero-read sites are counted (n_sites, low_depth) but never become pooled rows; adding
    a batch of zero-read sites to every sample changes no tested row, only those counts."""
    _, _, counts = study
    params = {**OFF, "imbalance_het_min_reads": 0}  # confirm every site, so empty sites reach the filters
    table, summary = call_imbalance(counts, params)
    zero = counts.groupby(["cell_type", "variant_id"])[["ref_count", "alt_count", "other_count"]].sum().sum(axis=1)
    assert (zero == 0).sum() >= 20  # the study has pooled sites without a read
    blank = counts.drop_duplicates("sample").loc[:, ["sample", "donor", "cell_type"]]
    extra = pd.concat([blank.assign(variant_id=f"chr3:{9_000_000 + i}:A:G", chrom="chr3", pos=9_000_000 + i - 1,
                                    ref="A", alt="G", ref_count=0, alt_count=0, other_count=0, conflict_count=0)
                       for i in range(40)], ignore_index=True)
    more = pd.concat([counts, extra], ignore_index=True)
    table2, summary2 = call_imbalance(more, params)
    pd.testing.assert_frame_equal(table, table2)
    n_ct = counts["cell_type"].nunique()
    assert summary2["n_sites"] == summary["n_sites"] + 40 * n_ct
    assert summary2["dropped"]["low_depth"] == summary["dropped"]["low_depth"] + 40 * n_ct
    assert summary2["n_count_rows"] == summary["n_count_rows"] + len(extra)
    # the pooled rows of one cell type: only sites with a read
    parts = parts_of_frame(pl.from_pandas(more))
    ct = parts[0].cell_type
    sites, n_read, empty = _pooled_sites(ct, [p for p in parts if p.cell_type == ct], {}, {}, params, None, None)
    assert (sites["total"] + sites["other_count"] + sites["conflict_count"] > 0).all()
    assert not sites["variant_id"].str.startswith("chr3:9000").any()
    assert len(sites) + sum(empty.values()) == n_read and empty["low_depth"] >= 40


@pytest.mark.parametrize("n", [1, 99, 100, 101, 1000, 4567])
def test_sample_depth_quantile_equals_pandas(n):
    """The depth reference equals pandas' groupby quantile (interpolation lower) over covered sites."""
    rng = np.random.default_rng(n)
    depth = np.concatenate([rng.negative_binomial(1, 0.05, n), np.zeros(n // 3, dtype=np.int64)])
    got = sample_depth(depth, 10.0, 0.99, 100)
    cov = pd.Series(np.where(depth > 0, depth, np.nan))
    g = cov.groupby(np.zeros(depth.size, dtype=int))
    want = g.quantile(0.99, interpolation="lower").where(g.count() >= 100).iloc[0]
    assert (got["reference_depth"] is None) == bool(pd.isna(want))
    if not pd.isna(want):
        assert got["reference_depth"] == int(want) and got["n_outliers"] == int((depth > want * 10.0).sum())


def test_read_predictions_equals_pandas(tmp_path):
    """Compact prediction reading: the same values as pandas, label columns categorical, rows filtered."""
    rng = np.random.default_rng(0)
    n = 2000
    df = pd.DataFrame({"regime": rng.choice(["single_task", "multitask"], n), "replicate": "rep1",
                       "kind": rng.choice(["window", "peak"], n), "peak_id": rng.choice(["p1", "p2", None], n),
                       "chrom": rng.choice(["chr4", "chr5"], n), "start": rng.integers(0, 10**8, n),
                       "end": rng.integers(0, 10**8, n), "cell_type": rng.choice(["b", "a"], n),
                       "target": rng.random(n).astype(np.float32), "prediction": rng.random(n).astype(np.float32)})
    df.to_parquet(tmp_path / "p.parquet")
    got = read_predictions(tmp_path / "p.parquet")
    want = pd.read_parquet(tmp_path / "p.parquet")
    assert got["regime"].dtype == "category" and got["start"].dtype == np.int32
    assert list(got["cell_type"].cat.categories) == ["a", "b"]
    for c in want.columns:
        assert got[c].astype(object).where(got[c].notna(), None).tolist() == \
            want[c].astype(object).where(want[c].notna(), None).tolist(), c
    peaks = read_predictions(tmp_path / "p.parquet", ["regime", "kind", "target"], kind="peak")
    assert list(peaks.columns) == ["regime", "kind", "target"]
    np.testing.assert_array_equal(peaks["target"], want.loc[want["kind"] == "peak", "target"])
