"""The local engine on single-cell libraries (issue 19): the tiny-sc study through ``call_imbalance``.

The libraries pool every donor; the samples downstream are the barcode table's donor × cell
type groups. The recoveries are the bulk tiny study's bars (tests/test_call_imbalance.py,
tests/test_cluster_peaks.py); the study-size bars are held on the demo-sc study (``-m demo``).
"""

from __future__ import annotations

import json

import pandas as pd
import pysam
import pytest

from caveat.count_alleles import COUNT_COLUMNS, count_sample
from caveat.single_cell import read_study
from test_call_imbalance import _truth_fdp
from test_cluster_peaks import recovery


@pytest.fixture(scope="module")
def study(tiny_sc_sim):
    return read_study(tiny_sc_sim / "samplesheet.csv")


def test_samples_are_the_barcode_tables_donor_cell_type_groups(tiny_sc_sim, tiny_sc_run, study):
    truth = sorted(pd.read_parquet(tiny_sc_sim / "truth" / "snps.parquet")[["donor", "cell_type"]]
                   .drop_duplicates().itertuples(index=False, name=None))
    groups = sorted(zip(study.samples["donor"], study.samples["cell_type"]))
    assert groups == truth and (study.samples["source"] == "library").all()
    names = sorted(f"{d}_{c}" for d, c in truth)
    assert sorted(p.stem for p in (tiny_sc_run / "counts").glob("*.parquet")) == names
    assert sorted(p.stem for p in (tiny_sc_run / "insertions").glob("*_*.bw")) == names
    wasp = json.loads((tiny_sc_run / "wasp_remap.summary.json").read_text())
    assert sorted(wasp["per_sample"]) == ["lib1", "lib2"]  # WASP runs once per library, not per group
    for lib in ("lib1", "lib2"):
        st = json.loads((tiny_sc_run / "wasp" / f"{lib}.stats.json").read_text())
        # ambient barcodes and the table's dropped rows (doublets, unassigned) are not cells
        assert st["dropped_barcode_not_in_table"] > 0
    ins = json.loads((tiny_sc_run / "insertions.summary.json").read_text())
    assert {s["source"] for s in ins["samples"].values()} == {"fragments"}


def test_group_counts_equal_an_independent_count_of_the_barcode_split_reads(tiny_sc_run, study, tmp_path):
    """One group's counts are its cells' reads in both libraries' WASP-filtered BAMs, counted as a
    bulk sample would be: split the reads by barcode with pysam, merge, count."""
    row = study.samples.iloc[0]
    assert len(row["libraries"]) == 2  # the group's cells are in both libraries: counts are summed
    cells = set(study.barcodes.loc[(study.barcodes["donor"] == row["donor"])
                                   & (study.barcodes["cell_type"] == row["cell_type"]), "barcode"])
    out = tmp_path / "group.bam"
    with pysam.AlignmentFile(str(tiny_sc_run / "wasp" / "lib1.bam")) as first:
        with pysam.AlignmentFile(str(out), "wb", template=first) as o:
            for lib in row["libraries"]:
                with pysam.AlignmentFile(str(tiny_sc_run / "wasp" / f"{lib}.bam")) as f:
                    for r in f.fetch(until_eof=True):
                        if r.has_tag("CB") and r.get_tag("CB") in cells:
                            o.write(r)
    pysam.sort("-o", str(tmp_path / "sorted.bam"), str(out))
    pysam.index(str(tmp_path / "sorted.bam"))
    snps = pd.read_parquet(tiny_sc_run / "het_snps.parquet")
    want = count_sample(tmp_path / "sorted.bam", snps[snps["donor"] == row["donor"]])
    got = pd.read_parquet(tiny_sc_run / "counts" / f"{row['sample']}.parquet")
    pd.testing.assert_frame_equal(got[["variant_id", *COUNT_COLUMNS]].reset_index(drop=True),
                                  want[["variant_id", *COUNT_COLUMNS]].reset_index(drop=True))
    assert got[["ref_count", "alt_count"]].to_numpy().sum() > 500


def test_planted_truth_recovered_as_in_bulk(tiny_sc_sim, tiny_sc_run):
    """The bulk tiny bars: at most one false imbalance call, and the planted clusters."""
    fdp, n_false, ks, n_null = _truth_fdp(tiny_sc_sim, tiny_sc_run)
    assert n_false <= 1
    r = recovery(tiny_sc_sim, tiny_sc_run)
    assert r["n_labelled"] >= 30
    assert r["ari"] >= 0.7 and r["ubi_precision"] >= 0.9 and r["ubi_recall"] >= 0.75, r


def test_pseudobulk_track_sums_the_cell_types_groups(tiny_sc_run, study):
    import pyBigWig

    ins = json.loads((tiny_sc_run / "insertions.summary.json").read_text())
    for ct, pb in ins["pseudobulk"].items():
        members = study.samples.loc[study.samples["cell_type"] == ct, "sample"].tolist()
        assert pb["samples"] == members
        assert pb["insertions"] == sum(ins["samples"][s]["insertions"] for s in members) > 0
        with pyBigWig.open(str(tiny_sc_run / "insertions" / f"{ct}.pseudobulk.bw")) as bw:
            total = sum(bw.stats(c, 0, n, type="sum", exact=True)[0] or 0 for c, n in bw.chroms().items())
        assert round(total) == pb["insertions"]


def test_position_only_dedup_would_collapse_cells_with_identical_ends(tiny_sc_sim, tiny_sc_run, study, tmp_path,
                                                                       monkeypatch):
    """The fault the per-barcode dedup key fixes, shown on the run's own library: refiltered with the
    barcode left out of the key (bulk's position-only dedup), lib1 loses at least the pairs the
    simulator's truth says such a dedup removes (cross-cell twins and chance coincidences of
    different cells, ``position_collapse_nonduplicate_pairs``) on top of the true PCR duplicates."""
    import yaml

    from caveat import wasp_remap as wr

    lib = study.libraries[study.libraries["library"] == "lib1"].iloc[0]
    snps, indels = (pd.read_parquet(tiny_sc_run / f) for f in ("het_snps.parquet", "het_indels.parquet"))
    sites, ind = wr.library_sites(snps, indels, study.library_donors("lib1"))
    params = yaml.safe_load((tiny_sc_sim / "params.yaml").read_text())
    keyed = wr._dedup_keep
    monkeypatch.setattr(wr, "_dedup_keep", lambda ch, cell=None: keyed(ch, None))  # the barcode ignored
    cells = set(study.barcodes.loc[study.barcodes["library"] == "lib1", "barcode"])
    st = wr.wasp_filter(lib["bam"], sites, ind, tmp_path / "lib1.bam", tmp_path / "lib1.json", aligner="bowtie2",
                        aligner_index=tiny_sc_sim / "genome", aligner_args=params["aligner_args"], seed=params["seed"],
                        barcode_tag="CB", barcodes=cells, threads=2)
    fixed = json.loads((tiny_sc_run / "wasp" / "lib1.stats.json").read_text())
    truth = json.loads((tiny_sc_sim / "simulate.summary.json").read_text())["single_cell"]
    collapsed = sum(v for k, v in truth["position_collapse_nonduplicate_pairs"].items() if k.startswith("lib1/"))
    extra = st["duplicates_removed"] - fixed["duplicates_removed"]  # records: two per pair
    print(f"lib1: position-only dedup removes {extra} more records; truth: {collapsed} pairs of one group")
    assert collapsed > 1000 and extra >= 2 * 0.8 * collapsed
    assert st["reads_out"] == fixed["reads_out"] - extra
