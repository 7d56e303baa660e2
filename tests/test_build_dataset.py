"""build_dataset: tiling, N/blacklist drops, bigWig targets, peak flags, splits, errors.

``make_study`` (also used by the train/predict tests) writes a small genome
with planted motifs whose insertion signal differs by cell type.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyBigWig
import pytest

from caveat.build_dataset import (build_windows, has_n, interval_sums, main, merge_intervals, overlaps,
                                  read_windows, tile_starts)
from caveat.errors import InputError
from caveat.io import read_json

UBI_MOTIF = "TGACTCAT"   # accessible in every cell type
SPEC_MOTIF = "CACGTGAC"  # accessible in cell type "B" only
SMALL = dict(window_size=384, stride=64, target_bin=64)


def make_study(tmp: Path, *, chroms=("chr1", "chr2", "chr3", "chr4", "chr5"), length=30_000, seed=0,
               n_gap: bool = True) -> dict:
    """A small study: FASTA, one pseudobulk bigWig per cell type (A, B), peaks.

    Motif sites get an insertion bump (±40 bp) of rate 1.5/bp; UBI_MOTIF sites
    in both cell types (ubiquitous peaks), SPEC_MOTIF sites only in B
    (specific peaks); background rate 0.02/bp. chr1 gets a run of N's.
    """
    rng = np.random.default_rng(seed)
    tmp.mkdir(parents=True, exist_ok=True)
    seqs, peaks = {}, []
    signal = {"A": {}, "B": {}}
    for c in chroms:
        s = rng.choice(list("ACGT"), size=length)
        sites = np.arange(300, length - 300, 500)
        kind = rng.choice(["ubiquitous", "specific", "none"], size=len(sites))
        rate = {ct: np.full(length, 0.02) for ct in "AB"}
        for pos, k in zip(sites, kind):
            if k == "none":
                continue
            s[pos:pos + 8] = list(UBI_MOTIF if k == "ubiquitous" else SPEC_MOTIF)
            for ct in "AB":
                if k == "ubiquitous" or ct == "B":
                    rate[ct][pos - 40:pos + 48] += 1.5
            peaks.append((c, pos - 100, pos + 108, k))
        if n_gap and c == chroms[0]:
            s[1000:1100] = "N"
        seqs[c] = "".join(s)
        for ct in "AB":
            signal[ct][c] = rng.poisson(rate[ct]).astype(float)
    fasta = tmp / "genome.fa"
    fasta.write_text("".join(f">{c}\n" + "\n".join(q[i:i + 60] for i in range(0, len(q), 60)) + "\n"
                             for c, q in seqs.items()))
    bws = []
    for ct in "AB":
        path = tmp / f"{ct}.pseudobulk.bw"
        with pyBigWig.open(str(path), "w") as bw:
            bw.addHeader([(c, length) for c in chroms])
            for c in chroms:
                nz = np.flatnonzero(signal[ct][c]).astype(np.int64)
                bw.addEntries([c] * len(nz), nz.tolist(), ends=(nz + 1).tolist(),
                              values=signal[ct][c][nz].tolist())
        bws.append(path)
    pk = pd.DataFrame(peaks, columns=["chrom", "start", "end", "kind"])
    pk.insert(0, "peak_id", [f"peak{i}" for i in range(len(pk))])
    pk["cluster"] = np.where(pk["kind"] == "ubiquitous", 0, 1)
    pk.to_parquet(tmp / "peaks.parquet")
    return {"fasta": fasta, "bigwigs": bws, "cell_types": ["A", "B"], "peaks": tmp / "peaks.parquet",
            "peaks_df": pk, "signal": signal, "seqs": seqs, "length": length, "chroms": list(chroms)}


def build_small(study: dict, out: Path, extra=()) -> Path:
    """Run the build_dataset CLI on a study with the small window geometry (valid chr2, test chr3)."""
    main(["--fasta", str(study["fasta"]), "--bigwigs", *map(str, study["bigwigs"]), "--cell-types", "A", "B",
          "--peaks", str(study["peaks"]), "--out", str(out), "--window-size", "384", "--window-stride", "64",
          "--target-bin", "64", "--valid-chroms", "chr2", "--test-chroms", "chr3", *extra])
    return out


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    return make_study(tmp_path_factory.mktemp("study"))


def test_helpers_match_brute_force():
    rng = np.random.default_rng(1)
    s = rng.integers(0, 1000, 50)
    e = s + rng.integers(1, 60, 50)
    q = rng.integers(0, 1100, 200)
    cover = np.zeros(1200, bool)
    for a, b in zip(s, e):
        cover[a:b] = True
    expect = np.array([cover[a:a + 7].any() for a in q])
    assert np.array_equal(overlaps(q, q + 7, s, e), expect)
    ms, me = merge_intervals(s, e)
    assert (ms[1:] >= me[:-1]).all() and (me - ms).sum() == cover.sum()
    codes = np.zeros(100, np.uint8)
    codes[[10, 55]] = 4
    st = tile_starts(100, 20, 5)
    assert st[-1] == 80 and np.array_equal(has_n(codes, st, 20), [(a <= 10 < a + 20) or (a <= 55 < a + 20) for a in st])
    iv = [(2, 5, 1.0), (7, 8, 3.0), (10, 20, 0.5)]
    dense = np.zeros(30)
    for a, b, v in iv:
        dense[a:b] = v
    qs = rng.integers(0, 25, 40)
    assert np.allclose(interval_sums(iv, qs, qs + 5), [dense[a:a + 5].sum() for a in qs])


def _bw_total(path) -> float:
    """Insertions of a whole bigWig, base by base (pyBigWig values, not intervals)."""
    with pyBigWig.open(str(path)) as bw:
        return float(sum(np.nansum(bw.values(c, 0, n, numpy=True)) for c, n in bw.chroms().items()))


def test_windows_targets_equal_pybigwig(study, tmp_path):
    """Targets = centre-bin insertions (pyBigWig) × the cell type's mean-depth factor
    mean(N) / N_c, N = insertions of each whole track; with target_norm none, the raw sums."""
    out = build_small(study, tmp_path / "windows.parquet")
    raw_out = build_small(study, tmp_path / "raw" / "windows.parquet", ["--target-norm", "none"])
    w, t = read_windows(out)
    _, t_raw = read_windows(raw_out)
    summary = read_json(tmp_path / "build_dataset.summary.json")
    assert summary["cell_types"] == ["A", "B"]
    assert t.shape == (len(w), 2) and t.dtype == np.float32
    assert list(w.columns) == ["chrom", "start", "end", "split", "in_peak", "in_nonubiquitous_peak"]
    totals = np.array([_bw_total(b) for b in study["bigwigs"]])
    scale = totals.mean() / totals
    assert totals[1] > 1.2 * totals[0]  # B is the deeper track: its targets are scaled down
    np.testing.assert_allclose(summary["target_scale"]["scale"], scale, rtol=1e-12)
    assert summary["target_scale"]["insertions"] == totals.tolist()
    rng = np.random.default_rng(0)
    for i in rng.choice(len(w), 40, replace=False):
        r = w.iloc[i]
        for j, bw_path in enumerate(study["bigwigs"]):
            with pyBigWig.open(str(bw_path)) as bw:
                v = np.nan_to_num(bw.values(r.chrom, int(r.start) + 160, int(r.start) + 224, numpy=True)).sum()
            assert t_raw[i, j] == pytest.approx(v, rel=1e-5, abs=1e-4)
            assert t[i, j] == pytest.approx(v * scale[j], rel=1e-5, abs=1e-4)
            assert v == study["signal"]["AB"[j]][r.chrom][r.start + 160:r.start + 224].sum()
    # equal depth: both cell types' targets now sum to the same share of their common depth
    np.testing.assert_allclose(t.sum(0, dtype=np.float64) / totals.mean(), t_raw.sum(0, dtype=np.float64) / totals,
                               rtol=1e-5)
    # splits by chromosome
    assert set(w.loc[w.chrom == "chr2", "split"]) == {"valid"} and set(w.loc[w.chrom == "chr3", "split"]) == {"test"}
    assert set(w.loc[w.chrom.isin(["chr1", "chr4", "chr5"]), "split"]) == {"train"}
    # windows over the N run (chr1:1000-1100) are gone, the rest of the tiling is there
    c1 = w[w.chrom == "chr1"]
    assert not ((c1.start < 1100) & (c1.end > 1000)).any()
    n_tiles = len(tile_starts(study["length"], 384, 64))
    assert len(c1) == n_tiles - int(sum(1 for a in tile_starts(study["length"], 384, 64) if a < 1100 and a + 384 > 1000))
    assert (w.groupby("chrom").size().drop("chr1") == n_tiles).all()


def test_peak_flags_use_centre_bin(study, tmp_path):
    w, _ = read_windows(build_small(study, tmp_path / "windows.parquet"))
    pk = study["peaks_df"]
    for flag, sel in (("in_peak", pk), ("in_nonubiquitous_peak", pk[pk.kind == "specific"])):
        expect = np.zeros(len(w), bool)
        for _, p in sel.iterrows():
            c = w.chrom == p.chrom
            expect |= (c & (w.start + 160 < p.end) & (w.start + 224 > p.start)).to_numpy()
        assert np.array_equal(w[flag].to_numpy(), expect)
    assert w.in_nonubiquitous_peak.sum() < w.in_peak.sum()
    assert not (w.in_nonubiquitous_peak & ~w.in_peak).any()


def test_blacklist_drops_overlapping_windows(study, tmp_path):
    bed = tmp_path / "bl.bed"
    bed.write_text("chr4\t5000\t5010\nchr5\t0\t2000\n")
    w, _ = read_windows(build_small(study, tmp_path / "windows.parquet", ["--chroms", "chr2", "chr3", "chr4", "chr5"]))
    # the CLI has no --blacklist flag test via params: call build_windows directly
    from caveat.build_dataset import read_bed_intervals

    wb, tb, dropped = build_windows(study["fasta"], study["bigwigs"], None, valid_chroms=["chr2"],
                                    test_chroms=["chr3"], blacklist=read_bed_intervals(bed),
                                    chroms=["chr2", "chr3", "chr4", "chr5"], **SMALL)
    for c, a, b in (("chr4", 5000, 5010), ("chr5", 0, 2000)):
        sub = wb[wb.chrom == c]
        assert not ((sub.start < b) & (sub.end > a)).any()
    lost = len(w) - len(wb)
    assert lost == dropped["blacklist"] > 0


def test_targets_normalised_and_clipped_equal_independent_numpy(study, tmp_path):
    """Every window's targets = Basenji's soft clip then hard clip, at quantiles of the
    depth-scaled targets (cpm here), computed from the planted signal arrays; the factors and
    thresholds are recorded in the summary and in windows.parquet's metadata."""
    from caveat.targets import apply_record, read_record

    out = build_small(study, tmp_path / "windows.parquet", ["--target-norm", "cpm", "--target-clip-soft-quantile",
                                                            "0.99", "--target-clip-quantile", "0.999"])
    w, t = read_windows(out)
    sig = study["signal"]
    raw = np.array([[sig[ct][r.chrom][r.start + 160:r.start + 224].sum() for ct in "AB"] for r in w.itertuples()])
    totals = np.array([sum(a.sum() for a in sig[ct].values()) for ct in "AB"])
    x = raw * (1e6 / totals)
    soft = np.quantile(x, 0.99, axis=0)
    x = np.where(x > soft, soft + np.sqrt(np.maximum(x - soft, 0)), x)
    hard = np.quantile(x, 0.999, axis=0)
    x = np.minimum(x, hard)
    np.testing.assert_allclose(t, x, rtol=1e-5, atol=1e-4)
    assert (t.max(0) == pytest.approx(hard, rel=1e-5)) and (raw.max(0) * 1e6 / totals > hard).all()
    rec = read_json(tmp_path / "build_dataset.summary.json")["target_scale"]
    assert rec == read_record(out)
    np.testing.assert_allclose(rec["clip_soft"], soft, rtol=1e-9)
    np.testing.assert_allclose(rec["clip"], hard, rtol=1e-9)
    # the record puts other raw sums (here the windows' own) on the targets' scale
    np.testing.assert_allclose(apply_record(raw, rec), t, rtol=1e-5, atol=1e-4)


def test_unmappable_windows_dropped_and_counted(study, tmp_path):
    """Windows whose target bin is more than unmappable_max_fraction covered by the unmappable
    BED are dropped (brute-force coverage), counted in the summary; the rest are kept."""
    bed = tmp_path / "umap.bed"
    bed.write_text("chr4\t5000\t5040\nchr4\t5020\t5100\nchr5\t100\t7000\nchr2\t300\t310\n")
    chroms = ["--chroms", "chr2", "chr3", "chr4", "chr5"]
    w0, _ = read_windows(build_small(study, tmp_path / "all" / "windows.parquet", chroms))
    w, _ = read_windows(build_small(study, tmp_path / "windows.parquet",
                                    [*chroms, "--unmappable-bed", str(bed), "--unmappable-max-fraction", "0.25"]))
    cover = {c: np.zeros(study["length"], bool) for c in study["chroms"]}
    for line in bed.read_text().splitlines():
        c, a, b = line.split("\t")
        cover[c][int(a):int(b)] = True
    frac = np.array([cover[r.chrom][r.start + 160:r.start + 224].mean() for r in w0.itertuples()])
    keep = frac <= 0.25
    assert (~keep).sum() > 20 and (frac[keep] > 0).any()  # partly covered bins stay
    pd.testing.assert_frame_equal(w, w0[keep].reset_index(drop=True))
    summary = read_json(tmp_path / "build_dataset.summary.json")
    assert summary["dropped"]["unmappable"] == int((~keep).sum())
    with pytest.raises(InputError, match="nope.bed"):
        build_small(study, tmp_path / "x.parquet", ["--unmappable-bed", str(tmp_path / "nope.bed")])


def test_an_empty_track_cannot_be_scaled_and_is_named(study, tmp_path):
    empty = tmp_path / "E.pseudobulk.bw"
    with pyBigWig.open(str(empty), "w") as bw:
        bw.addHeader([(c, study["length"]) for c in study["chroms"]])
    with pytest.raises(InputError, match="E.pseudobulk.bw: pseudobulk track holds no insertion"):
        main(["--fasta", str(study["fasta"]), "--bigwigs", str(study["bigwigs"][0]), str(empty), "--cell-types",
              "A", "E", "--out", str(tmp_path / "w.parquet"), "--valid-chroms", "chr2", "--test-chroms", "chr3",
              "--window-size", "384", "--window-stride", "64", "--target-bin", "64"])
    assert not (tmp_path / "w.parquet").exists()


def test_deterministic_bytes(study, tmp_path):
    a = build_small(study, tmp_path / "a" / "windows.parquet")
    b = build_small(study, tmp_path / "b" / "windows.parquet")
    assert a.read_bytes() == b.read_bytes()


def test_missing_split_chromosome_names_param(study, tmp_path):
    with pytest.raises(InputError, match="test_chroms"):
        build_windows(study["fasta"], study["bigwigs"], None, valid_chroms=["chr2"], test_chroms=["chr4", "chr9"], **SMALL)
    with pytest.raises(InputError, match="valid_chroms"):
        build_windows(study["fasta"], study["bigwigs"], None, valid_chroms=["chr7"], test_chroms=["chr4"], **SMALL)
    assert not list(tmp_path.iterdir())


def test_bad_target_bin_and_cell_type_count(study, tmp_path):
    with pytest.raises(InputError, match="target_bin"):
        build_windows(study["fasta"], study["bigwigs"], None, window_size=384, stride=64, target_bin=65,
                      valid_chroms=["chr2"], test_chroms=["chr3"])
    with pytest.raises(InputError, match="cell types"):
        main(["--fasta", str(study["fasta"]), "--bigwigs", *map(str, study["bigwigs"]), "--cell-types", "A",
              "--out", str(tmp_path / "w.parquet")])
    assert not (tmp_path / "w.parquet").exists()


# ---------------------------------------------------------------- on the simulated study
def _centre_sums(bw_path, windows: pd.DataFrame, offset: int, width: int) -> np.ndarray:
    """Insertions over each window's centre bin, from pyBigWig's per-base values, (W,)."""
    out = np.zeros(len(windows))
    with pyBigWig.open(str(bw_path)) as bw:
        for chrom, idx in windows.groupby("chrom").indices.items():
            v = np.concatenate([[0.0], np.cumsum(np.nan_to_num(bw.values(chrom, 0, bw.chroms(chrom), numpy=True)))])
            s = windows["start"].to_numpy()[idx] + offset
            out[idx] = v[s + width] - v[s]
    return out


def test_tiny_run_targets_are_depth_scaled_and_clipped_insertions(tiny_sim, tiny_run, tmp_path):
    """The tiny run's targets = pseudobulk insertions over the centre bin (pyBigWig) × mean depth /
    the cell type's depth; rebuilt with clipping, = numpy's soft clip then clip at the quantiles."""
    from caveat.build_dataset import run
    from caveat.params import load_params
    from caveat.pipeline import pipeline_steps

    w, t = read_windows(tiny_run / "windows.parquet")
    summary = read_json(tiny_run / "build_dataset.summary.json")
    cts = summary["cell_types"]
    bws = [tiny_run / "insertions" / f"{ct}.pseudobulk.bw" for ct in cts]
    p = load_params(tiny_sim / "params.yaml", {"outdir": str(tiny_run)}, pipeline_steps())
    off, width = (p["window_size"] - p["target_bin"]) // 2, p["target_bin"]
    raw = np.stack([_centre_sums(b, w, off, width) for b in bws], axis=1)
    totals = np.array([_bw_total(b) for b in bws])
    assert summary["target_scale"]["norm"] == "mean_depth" and summary["target_scale"]["clip"] is None
    np.testing.assert_allclose(t, raw * (totals.mean() / totals), rtol=1e-5, atol=1e-4)
    assert len(set(np.round(totals))) > 1  # the pseudobulks differ in depth
    p2 = {**p, "target_clip_soft_quantile": 0.995, "target_clip_quantile": 0.9999}
    run(p["fasta"], bws, cts, tiny_run / "peaks.parquet", tmp_path / "windows.parquet", p2)
    w2, t2 = read_windows(tmp_path / "windows.parquet")
    pd.testing.assert_frame_equal(w2, w)
    x = raw * (totals.mean() / totals)
    soft = np.quantile(x, 0.995, axis=0)
    x = np.where(x > soft, soft + np.sqrt(np.maximum(x - soft, 0)), x)
    x = np.minimum(x, np.quantile(x, 0.9999, axis=0))
    np.testing.assert_allclose(t2, x, rtol=1e-5, atol=1e-4)
    assert (t2 < t - 1e-3).any()  # the clip bites
