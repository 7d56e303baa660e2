"""Tests for caveat.cluster_peaks: union rules, counts per peak, tau, clustering recovery, bad input."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyBigWig
import pysam
import pytest
from sklearn.metrics import adjusted_rand_score

from caveat.cluster_peaks import (cluster_peaks, label_clusters, main, peak_insertions, tau, union_peaks,
                                  user_clusters)
from caveat.errors import InputError
from caveat.insertions import pseudobulk_track, site_counts, sites_to_runs
from caveat.intervals import overlap_pairs, read_bed

CTS = ("ctA", "ctB", "ctC")
DONORS = ("D1", "D2")
LENGTHS = {"chr1": 400_000, "chr2": 300_000}


def _write_bw(path, lengths, sites):
    """sites: chrom → int positions (one per insertion)."""
    bw = pyBigWig.open(str(path), "w")
    bw.addHeader(list(lengths.items()))
    for c in lengths:
        p = np.asarray(sites.get(c, []), dtype=np.int64)
        s, e, v = sites_to_runs(*site_counts(p)) if p.size else (np.zeros(0, int),) * 3
        if s.size:
            bw.addEntries([c] * s.size, s, ends=e, values=v.astype(float))
    bw.close()


def plant_study(tmp_path, seed=0, n_ubi=60, n_spec=40, narrowpeak=False, empty_ct=None):
    """Elements of known class; per-donor insertion tracks drawn around them; per cell type peak BEDs.

    Returns the samplesheet path, the insertions dir, the truth table and the planted sites.
    """
    rng = np.random.default_rng(seed)
    classes = ["ubiquitous"] * n_ubi + [f"specific:{ct}" for ct in CTS for _ in range(n_spec)]
    n = len(classes)
    chrom = np.where(np.arange(n) % 2 == 0, "chr1", "chr2")
    centre = np.zeros(n, np.int64)
    for c in LENGTHS:
        idx = np.flatnonzero(chrom == c)
        centre[idx] = rng.permutation(np.arange(2000, LENGTHS[c] - 2000, 2500))[: idx.size]
    truth = pd.DataFrame({"chrom": chrom, "start": centre - 150, "end": centre + 150, "cls": classes})
    ins = tmp_path / "insertions"
    ins.mkdir()
    rows, sites_all = [], {}
    for ct in CTS:
        acc = np.where(truth["cls"] == "ubiquitous", 1.0, np.where(truth["cls"] == f"specific:{ct}", 1.0, 0.04))
        acc = acc * rng.uniform(0.6, 1.4, n)
        for d in DONORS:
            sample = f"{d}_{ct}"
            lam = rng.poisson(acc * 60)
            sites = {c: [] for c in LENGTHS}
            for i in np.flatnonzero(lam):
                sites[chrom[i]].extend(rng.normal(centre[i], 60, lam[i]).astype(np.int64).clip(0).tolist())
            for c in LENGTHS:  # background insertions
                sites[c].extend(rng.integers(0, LENGTHS[c], 400).tolist())
            _write_bw(ins / f"{sample}.bw", LENGTHS, sites)
            sites_all[sample] = sites
            rows.append((sample, d, ct))
        pseudobulk_track([ins / f"{d}_{ct}.bw" for d in DONORS], LENGTHS, ins / f"{ct}.pseudobulk.bw")
        # peaks: the elements accessible in this cell type, jittered
        open_ = np.flatnonzero(acc > 0.3)
        pk = tmp_path / f"{ct}.bed"
        with open(pk, "w") as fh:
            if ct != empty_ct:
                for i in open_:
                    s = centre[i] - 200 + int(rng.integers(-30, 30))
                    line = f"{chrom[i]}\t{s}\t{s + 400}"
                    if narrowpeak:
                        line += f"\tp{i}\t100\t.\t5\t{float(rng.uniform(5, 50)):.2f}\t3\t{centre[i] - s}"
                    fh.write(line + "\n")
    fasta = tmp_path / "g.fa"
    with open(fasta, "w") as fh:
        for c, ln in LENGTHS.items():
            fh.write(f">{c}\n{'A' * ln}\n")
    pysam.faidx(str(fasta))
    sheet = pd.DataFrame(rows, columns=["sample", "donor", "cell_type"])
    sheet["bam"] = [f"{s}.unused.bam" for s in sheet["sample"]]  # never read here; one per sample
    sheet["peaks"] = [str(tmp_path / f"{ct}.bed") for ct in sheet["cell_type"]]
    sheet_path = tmp_path / "samples.csv"
    sheet.to_csv(sheet_path, index=False)
    return sheet, ins, truth, sites_all, fasta


PARAMS = {"peak_merge": "auto", "peak_width": 500, "peak_macs3_qvalue": 0.01, "peak_macs3_gsize": None,
          "cluster_k": None, "cluster_k_max": 8, "cluster_assignments": None, "ldsc_bim": None,
          "contig_map": None, "seed": 0, "input": "samples.csv"}


def _truth_labels(peaks, truth):
    ia, ib = overlap_pairs(peaks, truth)
    lab = pd.Series("none", index=range(len(peaks)))
    lab.iloc[ia] = truth["cls"].to_numpy()[ib]
    return lab.to_numpy()


@pytest.mark.parametrize("narrowpeak", [False, True])
def test_recovers_planted_classes(tmp_path, narrowpeak):
    sheet, ins, truth, _, _ = plant_study(tmp_path, narrowpeak=narrowpeak)
    s = cluster_peaks(sheet, LENGTHS, ins, tmp_path / "out", PARAMS)
    t = pd.read_parquet(tmp_path / "out" / "peaks.parquet")
    assert s["union_rule"] == ("summit" if narrowpeak else "merge")
    if narrowpeak:
        assert ((t["end"] - t["start"]) == 500).all()
    lab = _truth_labels(t, truth)
    assert (lab != "none").all()
    assert adjusted_rand_score(lab, t["cluster"]) >= 0.9
    ubi = t["kind"] == "ubiquitous"
    assert (lab[ubi] == "ubiquitous").mean() >= 0.95
    assert (ubi[lab == "ubiquitous"]).mean() >= 0.9
    assert set(t.loc[~ubi, "cluster_label"]) == set(CTS)
    assert (t.loc[t["cluster"] == 0, "cluster_label"] == "ubiquitous").all()
    assert t.loc[ubi, "specificity"].mean() < t.loc[~ubi, "specificity"].mean()
    assert s["k"] == 4 and s["clusters"]["ubiquitous"]["n_peaks"] == int(ubi.sum())
    assert sorted(p.name for p in (tmp_path / "out" / "ldsc").glob("*.bed")) == sorted(
        [f"{x}.bed" for x in ("ubiquitous", *CTS)])


def test_counts_equal_independent_count_and_donor_sums(tmp_path):
    sheet, ins, truth, sites, _ = plant_study(tmp_path, seed=3)
    cluster_peaks(sheet, LENGTHS, ins, tmp_path / "out", {**PARAMS, "cluster_k": 4})
    t = pd.read_parquet(tmp_path / "out" / "peaks.parquet")
    dc = pd.read_parquet(tmp_path / "out" / "peaks_donor_counts.parquet")
    for ct in CTS:
        expect = np.zeros(len(t), np.int64)
        for d in DONORS:
            for c in LENGTHS:
                p = np.asarray(sites[f"{d}_{ct}"][c])
                m = (t["chrom"] == c).to_numpy()
                st, en = t["start"].to_numpy()[m], t["end"].to_numpy()[m]
                expect[m] += ((p[None, :] >= st[:, None]) & (p[None, :] < en[:, None])).sum(axis=1)
        np.testing.assert_array_equal(t[f"count_{ct}"], expect)
        cpm = expect / expect.sum() * 1e6
        np.testing.assert_allclose(t[f"acc_{ct}"], np.log2(cpm + 1), rtol=1e-5)
        per = dc[dc["cell_type"] == ct].groupby("peak_id", sort=False)["count"].sum()
        np.testing.assert_array_equal(per.loc[t["peak_id"]].to_numpy(), expect)
    assert len(dc) == len(t) * len(sheet)


def test_peak_insertions_partial_runs(tmp_path):
    _write_bw(tmp_path / "x.bw", LENGTHS, {"chr1": [10, 10, 11, 12, 50, 99, 100]})
    peaks = pd.DataFrame({"chrom": ["chr1", "chr1", "chr1", "chr2"], "start": [0, 11, 99, 0], "end": [11, 13, 100, 9]})
    assert peak_insertions(tmp_path / "x.bw", peaks).tolist() == [2, 2, 1, 0]


def test_tau_known_values():
    x = np.array([[1.0, 1, 1], [4, 0, 0], [2, 1, 0], [0, 0, 0]])
    np.testing.assert_allclose(tau(x), [0, 1, 0.75, 0])


def test_union_summit_iterative_overlap_keeps_most_significant():
    a = pd.DataFrame({"chrom": ["chr1"] * 3, "start": [900, 1000, 3000], "end": [1300, 1400, 3400],
                      "name": "", "score": [5.0, 9.0, 1.0], "summit": [1100, 1250, 3200]})
    u, rule = union_peaks({"ctA": a, "ctB": a.iloc[:0]}, LENGTHS, width=500)
    assert rule == "summit"
    assert u[["start", "end"]].values.tolist() == [[1000, 1500], [2950, 3450]]
    u2, rule2 = union_peaks({"ctA": a}, LENGTHS, mode="merge")
    assert rule2 == "merge" and u2[["start", "end"]].values.tolist() == [[900, 1400], [3000, 3400]]


def test_empty_peak_file_is_a_logged_skip_and_all_empty_an_error(tmp_path, caplog):
    sheet, ins, truth, _, _ = plant_study(tmp_path, empty_ct="ctB")
    s = cluster_peaks(sheet, LENGTHS, ins, tmp_path / "out", PARAMS)
    assert s["peak_source"]["ctB"] == "empty" and "empty peak set" in caplog.text
    t = pd.read_parquet(tmp_path / "out" / "peaks.parquet")
    assert "acc_ctB" in t.columns
    for ct in CTS:
        (tmp_path / f"{ct}.bed").write_text("")
    with pytest.raises(InputError, match="every cell type's peak set is empty"):
        cluster_peaks(sheet, LENGTHS, ins, tmp_path / "out2", PARAMS)
    assert not (tmp_path / "out2" / "peaks.parquet").exists()


def test_bad_peaks_named_clearly(tmp_path):
    sheet, ins, _, _, _ = plant_study(tmp_path)
    (tmp_path / "ctA.bed").write_text("chr1\t10\t100\nchrUn\t5\t50\n")
    with pytest.raises(InputError, match="chrUn"):
        cluster_peaks(sheet, LENGTHS, ins, tmp_path / "out", PARAMS)
    (tmp_path / "ctA.bed").write_text("chr1\t100\t50\n")
    with pytest.raises(InputError, match="line 1.*reversed"):
        cluster_peaks(sheet, LENGTHS, ins, tmp_path / "out", PARAMS)


def test_user_cluster_assignments(tmp_path):
    sheet, ins, truth, _, fasta = plant_study(tmp_path)
    ua = tmp_path / "clusters.bed"
    tt = truth.sort_values(["chrom", "start"])
    tt.assign(lab=tt["cls"].str.replace("specific:", "").str.replace("ubiquitous", "Ubiquitous"))[
        ["chrom", "start", "end", "lab"]].to_csv(ua, sep="\t", header=False, index=False)
    out = tmp_path / "out"
    assert main(["--input", str(tmp_path / "samples.csv"), "--fasta", str(fasta), "--insertions", str(ins),
                 "--outdir", str(out), "--cluster-assignments", str(ua)]) == 0
    t = pd.read_parquet(out / "peaks.parquet")
    assert len(t) == len(truth)
    lab = _truth_labels(t, truth)
    assert ((t["kind"] == "ubiquitous") == (lab == "ubiquitous")).all()
    assert (t.loc[t["cluster"] == 0, "cluster_label"] == "ubiquitous").all()
    s = json.loads((out / "cluster_peaks.summary.json").read_text())
    assert s["peak_source"] == "cluster_assignments"
    bad = tmp_path / "bad.bed"
    bad.write_text("chr1\t10\t100\tctA\n")
    with pytest.raises(InputError, match="no cluster is labelled 'ubiquitous'"):
        user_clusters(bad, LENGTHS, {})


def test_outputs_deterministic(tmp_path):
    sheet, ins, _, _, _ = plant_study(tmp_path)
    for o in ("o1", "o2"):
        cluster_peaks(sheet, LENGTHS, ins, tmp_path / o, PARAMS)
    for f in ("peaks.parquet", "peaks_donor_counts.parquet", "cluster_peaks.summary.json"):
        assert (tmp_path / "o1" / f).read_bytes() == (tmp_path / "o2" / f).read_bytes()


def test_macs3_called_when_a_cell_type_has_no_peaks(tmp_path):
    sheet, ins, truth, _, _ = plant_study(tmp_path, seed=5)
    sheet.loc[sheet["cell_type"] == "ctA", "peaks"] = ""
    s = cluster_peaks(sheet, LENGTHS, ins, tmp_path / "out", {**PARAMS, "peak_macs3_gsize": 700_000})
    assert s["peak_source"]["ctA"] == "macs3"
    called = read_bed(tmp_path / "out" / "peaks" / "ctA.macs3.narrowPeak", LENGTHS)
    assert (called["summit"] >= 0).all()
    # MACS3 finds the elements open in ctA (ubiquitous + ctA-specific), few others
    open_a = truth[truth["cls"].isin(["ubiquitous", "specific:ctA"])]
    ia, ib = overlap_pairs(called, truth)
    found = set(truth.index[ib]) & set(open_a.index)
    assert len(found) >= 0.9 * len(open_a)
    hit_cls = truth["cls"].to_numpy()[ib]
    assert np.isin(hit_cls, ["ubiquitous", "specific:ctA"]).mean() >= 0.9


# ---------------------------------------------------------------- recovery on the simulated study
def recovery(sim, run) -> dict:
    """ARI of clusters vs planted classes (class + the cell types a specific element is open in),
    over peaks overlapping a planted ubiquitous/specific element; ubiquitous precision and recall."""
    el = pd.read_parquet(sim / "truth" / "elements.parquet")
    el = el[el["class"].isin(["ubiquitous", "specific"])].reset_index(drop=True)
    cls = (el["class"] + ":" + el["specific_to"].astype(str).map(lambda s: ";".join(sorted(s.split(";"))))).to_numpy()
    t = pd.read_parquet(run / "peaks.parquet")
    ia, ib = overlap_pairs(t, el)
    first = np.unique(ia, return_index=True)[1]
    lab = np.full(len(t), "", dtype=object)
    lab[ia[first]] = cls[ib[first]]
    m = lab != ""
    ubi = (t["kind"] == "ubiquitous").to_numpy()
    is_ubi_el = el["class"].to_numpy() == "ubiquitous"
    in_peak = np.zeros(len(el), bool)
    in_peak[ib] = True
    in_ubi_peak = np.zeros(len(el), bool)
    in_ubi_peak[ib[ubi[ia]]] = True
    return {"ari": adjusted_rand_score(lab[m].astype(str), t["cluster"].to_numpy()[m]),
            "ubi_precision": float(np.mean(np.char.startswith(lab[m & ubi].astype(str), "ubiquitous"))),
            "ubi_recall": float(in_ubi_peak[is_ubi_el & in_peak].mean()),
            "n_labelled": int(m.sum())}


def test_tiny_run_recovers_planted_clusters(tiny_sim, tiny_run):
    """The tiny study labels ~80 peaks from 14k fragments per sample, and its planted ubiquitous
    elements differ up to ~1.7x between cell types; with every fault on (seed 7) 9 of its 41
    ubiquitous elements fall into two-cell-type clusters (ARI 0.72; faults off 0.90, each fault
    alone 0.87-0.98). The demo holds the study-size bar (ARI >= 0.8, recall >= 0.9)."""
    r = recovery(tiny_sim, tiny_run)
    assert r["n_labelled"] >= 30
    assert r["ari"] >= 0.7 and r["ubi_precision"] >= 0.9 and r["ubi_recall"] >= 0.75, r


@pytest.mark.demo
def test_demo_run_recovers_planted_clusters(demo_sim, demo_run):
    r = recovery(demo_sim, demo_run)
    assert r["ari"] >= 0.8 and r["ubi_precision"] >= 0.9 and r["ubi_recall"] >= 0.9, r


def test_label_clusters_joins_every_cluster_open_everywhere_to_ubiquitous():
    # 5 = flat and high, 8 = flat at a lower level (k-means split by level), 2 = ctA only
    prof = {5: [8, 8, 8], 8: [5, 5.4, 5.2], 2: [8, 1, 1]}
    raw = np.repeat(list(prof), 3)
    acc = np.array([prof[c] for c in raw], dtype=float)
    cluster, labels = label_clusters(acc, tau(acc), raw, list(CTS))
    assert labels == ["ubiquitous", "ctA"]
    assert cluster[raw == 5].tolist() == cluster[raw == 8].tolist() == [0, 0, 0]
    assert cluster[raw == 2].tolist() == [1, 1, 1]


def test_label_clusters_names_dominant_cell_types():
    # clusters: 5 = flat (ubiquitous), 2 = ctA only, 7 = ctA+ctB, 9 = ctA only again (suffix)
    prof = {5: [8, 8, 8], 2: [8, 1, 1], 7: [8, 7.5, 1], 9: [7, 0.5, 0.5]}
    raw = np.repeat(list(prof), 3)
    acc = np.array([prof[c] for c in raw], dtype=float)
    spec = tau(acc)
    cluster, labels = label_clusters(acc, spec, raw, list(CTS))
    assert labels == ["ubiquitous", "ctA", "ctA_2", "ctA+ctB"]
    assert cluster[raw == 5].tolist() == [0, 0, 0]
    assert set(cluster[raw == 7]) == {3}


# ---------------------------------------------------------------- own peaks and artefact regions
def _brute_overlap(peaks, bed):
    """Whether each union peak shares >= 1 bp with a record of ``bed`` (pairwise, no sorting)."""
    b = pd.read_csv(bed, sep="\t", header=None, comment="#").iloc[:, :3].set_axis(["chrom", "s", "e"], axis=1)
    return np.array([bool(((b["chrom"] == r.chrom) & (b["s"] < r.end) & (b["e"] > r.start)).any())
                     for r in peaks.itertuples()])


@pytest.mark.parametrize("user", [False, True])
def test_called_columns_mark_each_cell_types_own_peaks(tmp_path, user):
    sheet, ins, truth, _, fasta = plant_study(tmp_path, seed=2)
    params = dict(PARAMS)
    if user:  # user clusters: own peaks still come from the cell types' peak files
        ua = tmp_path / "clusters.bed"
        tt = truth.sort_values(["chrom", "start"])
        tt.assign(lab=tt["cls"].str.replace("specific:", ""))[["chrom", "start", "end", "lab"]].to_csv(
            ua, sep="\t", header=False, index=False)
        params["cluster_assignments"] = str(ua)
    s = cluster_peaks(sheet, LENGTHS, ins, tmp_path / "out", params)
    t = pd.read_parquet(tmp_path / "out" / "peaks.parquet")
    lab = _truth_labels(t, truth)
    for ct in CTS:
        own = _brute_overlap(t, tmp_path / f"{ct}.bed")
        np.testing.assert_array_equal(t[f"called_{ct}"].to_numpy(), own)
        # the planted elements open in ct are its own peaks, the others' specific ones are not
        assert own[np.isin(lab, ["ubiquitous", f"specific:{ct}"])].all()
        assert not own[np.char.startswith(lab.astype(str), "specific:") & (lab != f"specific:{ct}")].any()
        assert s["own_peaks_per_cell_type"][ct] == int(own.sum())


def test_blacklisted_peaks_are_dropped_and_counted(tmp_path):
    sheet, ins, truth, _, fasta = plant_study(tmp_path, seed=4)
    cluster_peaks(sheet, LENGTHS, ins, tmp_path / "o1", {**PARAMS, "cluster_k": 4})
    full = pd.read_parquet(tmp_path / "o1" / "peaks.parquet")
    bed = tmp_path / "blacklist.bed"
    hit = full.iloc[[0, 5, 9]]  # 1 bp inside the first, the last base of the second, the whole third
    bed.write_text("\n".join([f"{hit.chrom.iloc[0]}\t{hit.start.iloc[0] + 20}\t{hit.start.iloc[0] + 21}",
                              f"{hit.chrom.iloc[1]}\t{hit.end.iloc[1] - 1}\t{hit.end.iloc[1] + 300}",
                              f"{hit.chrom.iloc[2]}\t{hit.start.iloc[2] - 5}\t{hit.end.iloc[2] + 5}",
                              "chrM\t0\t100"]) + "\n")
    out = tmp_path / "o2"
    assert main(["--input", str(tmp_path / "samples.csv"), "--fasta", str(fasta), "--insertions", str(ins),
                 "--outdir", str(out), "--cluster-k", "4", "--blacklist", str(bed)]) == 0
    t = pd.read_parquet(out / "peaks.parquet")
    black = _brute_overlap(full, bed)
    assert black.sum() == 3
    assert t["peak_id"].tolist() == full.loc[~black, "peak_id"].tolist()
    s = json.loads((out / "cluster_peaks.summary.json").read_text())
    assert s["peaks_dropped_blacklist"] == 3 and s["n_peaks"] == len(full) - 3
    dc = pd.read_parquet(out / "peaks_donor_counts.parquet")
    assert not set(dc["peak_id"]) & set(full.loc[black, "peak_id"])
