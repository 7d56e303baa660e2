"""Tests of ``caveat simulate``: determinism, valid BAM/VCF, and the planted
truth observable in the aligned reads (counted here independently of the
simulator's own summary)."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pysam
import pytest

from caveat.errors import InputError
from caveat.samplesheet import read_samplesheet


def _digests(root: Path) -> dict:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and not p.relative_to(root).parts[0] == "results"}


def _ref_alt(bam: pysam.AlignmentFile, chrom: str, pos: int, ref: str, alt: str, min_mapq: int) -> tuple[int, int]:
    """REF/ALT fragments over a SNV, each fragment once (via aligned pairs, not pileup)."""
    seen: dict = {}
    for r in bam.fetch(chrom, pos, pos + 1):
        if r.is_unmapped or r.is_secondary or r.is_supplementary or r.mapping_quality < min_mapq:
            continue
        for q, rp in r.get_aligned_pairs(matches_only=True):
            if rp == pos:
                seen.setdefault(r.query_name, r.query_sequence[q])
                break
    bases = list(seen.values())
    return bases.count(ref), bases.count(alt)


def _pooled(sim: Path, snps: pd.DataFrame, min_mapq: int = 0) -> tuple[int, int]:
    ref_n = alt_n = 0
    for (donor, ct), s in snps.groupby(["donor", "cell_type"]):
        with pysam.AlignmentFile(str(sim / "bams" / f"{donor}_{ct}.bam")) as bam:
            for c, q, r, a in zip(s.chrom, s.pos, s.ref, s.alt):
                x, y = _ref_alt(bam, c, int(q), r, a, min_mapq)
                ref_n, alt_n = ref_n + x, alt_n + y
    return ref_n, alt_n


def test_layout_and_params(tiny_sim):
    for rel in ("genome.fa", "genome.fa.fai", "genome.1.bt2", "genome.rev.2.bt2", "genotypes.vcf.gz",
                "genotypes.vcf.gz.tbi", "samplesheet.csv", "params.yaml", "truth/elements.parquet",
                "truth/snps.parquet", "truth/motifs.json", "simulate.summary.json", "truth/genotype_errors.parquet",
                "truth/haplotype_shares.parquet"):
        assert (tiny_sim / rel).is_file(), rel
    import yaml

    params = yaml.safe_load((tiny_sim / "params.yaml").read_text())
    assert params["input"] == "samplesheet.csv" and params["aligner"] == "bowtie2"
    assert params["aligner_index"] == "genome" and params["seed"] == 7
    assert params["blacklist"] == "blacklist.bed"  # the presets plant artefact regions (test_simulate_faults.py)
    sheet = read_samplesheet(tiny_sim / "samplesheet.csv")
    assert list(sheet["sample"]) == [f"{d}_{c}" for d in ("D1", "D2", "D3") for c in ("ctA", "ctB", "ctC")]
    # no absolute paths or temp names in any text output or BAM header
    for p in [*tiny_sim.glob("*.csv"), *tiny_sim.glob("*.yaml"), *tiny_sim.glob("*.json"), *tiny_sim.glob("peaks/*")]:
        assert str(tiny_sim) not in p.read_text() and "/tmp" not in p.read_text(), p
    with pysam.AlignmentFile(str(tiny_sim / "bams" / "D1_ctA.bam")) as bam:
        text = str(bam.header)
    assert "/" not in "".join(ln for ln in text.splitlines() if ln.startswith("@PG"))
    motifs = __import__("json").loads((tiny_sim / "truth" / "motifs.json").read_text())["motifs"]
    assert len(motifs) >= 12 and all(8 <= m["width"] <= 20 for m in motifs)
    assert all(6 < m["information_bits"] < 2 * m["width"] for m in motifs)
    assert any(len(m["active_in"]) == 3 for m in motifs) and any(len(m["active_in"]) == 1 for m in motifs)


def test_deterministic(tiny_sim, tmp_path):
    from caveat.simulate import simulate

    simulate("tiny", seed=7, out=tmp_path / "again")
    a, b = _digests(tiny_sim), _digests(tmp_path / "again")
    assert a.keys() == b.keys()
    assert [k for k in a if a[k] != b[k]] == []


def test_bams_sorted_indexed_within_contigs(tiny_sim):
    sheet = read_samplesheet(tiny_sim / "samplesheet.csv")
    for bam_path in sheet.bam:
        assert Path(bam_path + ".bai").exists()
        with pysam.AlignmentFile(bam_path) as bam:
            assert bam.header["HD"]["SO"] == "coordinate"
            lengths = dict(zip(bam.references, bam.lengths))
            assert list(lengths) == [f"chr{i}" for i in range(1, 23)] + ["chrX"]  # chrX: the XCI fault
            last = (-1, -1)
            n = 0
            for r in bam.fetch(until_eof=True):
                if r.is_unmapped:
                    continue
                n += 1
                key = (r.reference_id, r.reference_start)
                assert key >= last
                last = key
                assert 0 <= r.reference_start and r.reference_end <= lengths[r.reference_name]
            assert n > 10000
            assert bam.mapped == sum(s.mapped for s in bam.get_index_statistics())


def test_vcf_donors_phased_and_decoys(tiny_sim):
    sheet = read_samplesheet(tiny_sim / "samplesheet.csv")
    with pysam.VariantFile(str(tiny_sim / "genotypes.vcf.gz")) as vcf:
        assert list(vcf.header.samples) == sorted(set(sheet.donor))
        recs = list(vcf.fetch("chr4"))  # tabix index works
        assert recs
        kinds = {"multi": 0, "lowqual": 0, "missing": 0, "het": 0, "indel": 0}
        for rec in vcf.fetch():
            if len(rec.alts) > 1:
                kinds["multi"] += 1
            elif "PASS" not in rec.filter.keys():
                kinds["lowqual"] += 1
            elif any(None in s["GT"] for s in rec.samples.values()):
                kinds["missing"] += 1
            else:
                assert all(s.phased for s in rec.samples.values())
                kinds["het"] += sum(s["GT"][0] != s["GT"][1] for s in rec.samples.values())
                kinds["indel"] += len(rec.ref) != len(rec.alts[0])
    assert kinds["multi"] and kinds["lowqual"] and kinds["missing"] and kinds["indel"]
    # ~1 het per kb per donor
    genome_kb = sum(int(ln.split("\t")[1]) for ln in (tiny_sim / "genome.fa.fai").read_text().splitlines()) / 1000
    assert 0.8 < kinds["het"] / 3 / genome_kb < 2.0


def test_truth_tables_agree_with_vcf(tiny_sim):
    snps = pd.read_parquet(tiny_sim / "truth" / "snps.parquet")
    elements = pd.read_parquet(tiny_sim / "truth" / "elements.parquet")
    assert set(elements["class"]) == {"ubiquitous", "specific", "background"}
    assert {"acc_ctA", "acc_ctB", "acc_ctC"} <= set(elements.columns)
    het = set()
    with pysam.VariantFile(str(tiny_sim / "genotypes.vcf.gz")) as vcf:
        for rec in vcf.fetch():
            if len(rec.alts) == 1 and "PASS" in rec.filter.keys():
                for donor, s in rec.samples.items():
                    if None not in s["GT"] and s["GT"][0] != s["GT"][1]:
                        het.add((donor, f"{rec.chrom}:{rec.pos}:{rec.ref}:{rec.alts[0]}"))
    # the VCF's hets are the true ones less the lost ones plus the false ones (genotype errors)
    err = pd.read_parquet(tiny_sim / "truth" / "genotype_errors.parquet")
    lost = set(zip(err.donor[err.kind == "lost_het"], err.variant_id[err.kind == "lost_het"]))
    false = set(zip(err.donor[err.kind == "false_het"], err.variant_id[err.kind == "false_het"]))
    true_het = set(zip(snps.donor, snps.variant_id))
    assert lost <= true_het and not false & true_het
    assert (true_het - lost) | false == het
    assert set(zip(snps.donor[snps.genotype_error], snps.variant_id[snps.genotype_error])) == lost
    assert len(snps) == 3 * len(true_het)  # long: one row per cell type
    row = snps.iloc[0]
    assert re.fullmatch(r"chr(\d+|X):\d+:[ACGT]+:[ACGT]+", row.variant_id)
    assert int(row.variant_id.split(":")[1]) == row.pos + 1
    auto = snps[~snps.x_inactivation]  # chrX rows carry the X-inactivation label (tests/test_simulate_faults.py)
    assert ((auto.effect == "none") == (auto.expected_ref_fraction == 0.5)).all()
    assert (snps.loc[snps.effect == "ref_favouring", "expected_ref_fraction"] > 0.5).all()
    assert snps.in_duplication.any() and snps.touches_motif.any() and snps.element.notna().any()
    # planted causal sites: motif breaks favour REF somewhere; every one touches a motif
    assert snps.loc[snps.planted_causal, "touches_motif"].all()


def test_expected_half_is_half_outside_duplications(tiny_sim):
    snps = pd.read_parquet(tiny_sim / "truth" / "snps.parquet")
    s = snps[~snps.is_indel & ~snps.in_duplication & ~snps.in_artefact & (snps.effect == "none")
             & snps.element.notna()]
    ref_n, alt_n = _pooled(tiny_sim, s)
    assert ref_n + alt_n > 3000
    assert 0.47 <= ref_n / (ref_n + alt_n) <= 0.53


def test_planted_effects_visible(tiny_sim):
    snps = pd.read_parquet(tiny_sim / "truth" / "snps.parquet")
    s = snps[~snps.is_indel & ~snps.in_duplication & ~snps.in_artefact]
    r, a = _pooled(tiny_sim, s[s.effect == "ref_favouring"])
    assert r + a > 500 and r / (r + a) > 0.53
    r, a = _pooled(tiny_sim, s[s.effect == "alt_favouring"])
    assert r + a > 500 and r / (r + a) < 0.47


def test_duplications_bias_reference(tiny_sim):
    """Paralogous copies carrying ALT pull ALT reads away (MAPQ >= 10): REF fraction > 0.5."""
    snps = pd.read_parquet(tiny_sim / "truth" / "snps.parquet")
    s = snps[~snps.is_indel & snps.in_duplication & (snps.effect == "none")]
    assert not s.in_artefact.any()
    r, a = _pooled(tiny_sim, s, min_mapq=10)
    assert r + a > 300 and r / (r + a) > 0.6
    summary = __import__("json").loads((tiny_sim / "simulate.summary.json").read_text())
    assert summary["observed"]["dup_expected_half_mapq10"]["ref_fraction"] > 0.6


def test_element_classes_ordered_in_read_counts(tiny_sim):
    elements = pd.read_parquet(tiny_sim / "truth" / "elements.parquet")
    sheet = read_samplesheet(tiny_sim / "samplesheet.csv")
    cts = ["ctA", "ctB", "ctC"]
    counts = np.zeros((len(elements), len(cts)))
    for bam_path, ct in zip(sheet.bam, sheet.cell_type):
        with pysam.AlignmentFile(bam_path) as bam:
            for i, (c, s, e) in enumerate(zip(elements.chrom, elements.start, elements.end)):
                counts[i, cts.index(ct)] += bam.count(c, s, e)
    ubq = elements["class"].eq("ubiquitous").to_numpy()
    bg = elements["class"].eq("background").to_numpy()
    for k in range(len(cts)):
        assert np.median(counts[ubq, k]) > 4 * np.median(counts[bg, k])
    spec = elements[elements["class"] == "specific"]
    ok = 0
    for i, targets in zip(spec.index, spec.specific_to):
        inside = [cts.index(t) for t in targets.split(";")]
        outside = [k for k in range(len(cts)) if k not in inside]
        acc = elements.loc[i, [f"acc_{t}" for t in targets.split(";")]].max()
        if acc > 0.3:
            ok += counts[i, inside].min() > 2 * counts[i, outside].max()
    n_active = sum(elements.loc[i, [f"acc_{t}" for t in s.split(";")]].max() > 0.3 for i, s in zip(spec.index, spec.specific_to))
    assert n_active >= 10 and ok >= 0.9 * n_active


def test_peaks_follow_accessibility(tiny_sim):
    elements = pd.read_parquet(tiny_sim / "truth" / "elements.parquet")
    for ct in ("ctA", "ctB", "ctC"):
        peaks = pd.read_csv(tiny_sim / "peaks" / f"{ct}.bed", sep="\t", header=None)
        assert (peaks[2] > peaks[1]).all()
        hit = np.zeros(len(elements), bool)
        for c, s, e in zip(peaks[0], peaks[1], peaks[2]):
            hit |= ((elements.chrom == c) & (elements.start < e) & (elements.end > s)).to_numpy()
        acc = elements[f"acc_{ct}"].to_numpy()
        assert hit[acc > 0.5].mean() > 0.85 and hit[acc < 0.05].mean() < 0.05


def test_bad_preset_and_occupied_dir(tmp_path):
    from caveat.simulate import simulate

    with pytest.raises(InputError, match="preset"):
        simulate("huge", seed=1, out=tmp_path / "x")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(InputError, match="not empty"):
        simulate("tiny", seed=1, out=tmp_path / "mine")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


@pytest.mark.demo
def test_demo_reference_bias_in_duplications(demo_sim):
    summary = __import__("json").loads((demo_sim / "simulate.summary.json").read_text())
    dup = summary["observed"]["dup_expected_half_mapq10"]
    assert dup["reads"] >= 10000
    assert abs(dup["ref_fraction"] - 0.5) > 0.03
    nondup = summary["observed"]["nondup_expected_half_mapq10"]
    assert abs(nondup["ref_fraction"] - 0.5) < 0.02


def test_cli_with_relative_out(tmp_path, monkeypatch, tiny_sim):
    """`caveat simulate --out DIR` with a relative DIR (as `make demo` does) gives the same study."""
    from caveat.simulate import main

    monkeypatch.chdir(tmp_path)
    assert main(["--preset", "tiny", "--seed", "7", "--out", "rel"]) == 0
    for f in ("bams/D1_ctA.bam", "genotypes.vcf.gz", "truth/snps.parquet"):
        assert (tmp_path / "rel" / f).read_bytes() == (tiny_sim / f).read_bytes(), f


def test_cli_donors_keeps_only_those_donors(tmp_path):
    """`--donors D2`: the preset's genome and cell types for one donor (the scaling benchmarks' larger
    preset); a donor the preset lacks is refused before anything is written."""
    import pandas as pd

    from caveat.simulate import main

    with pytest.raises(InputError, match="D7: not donor"):
        main(["--preset", "tiny", "--out", str(tmp_path / "bad"), "--donors", "D1,D7"])
    assert not (tmp_path / "bad").exists()
    assert main(["--preset", "tiny", "--seed", "7", "--out", str(tmp_path / "one"), "--donors", "D2"]) == 0
    sheet = pd.read_csv(tmp_path / "one" / "samplesheet.csv")
    assert set(sheet["donor"]) == {"D2"} and sorted(sheet["cell_type"]) == ["ctA", "ctB", "ctC"]
    assert sorted(p.name for p in (tmp_path / "one" / "bams").glob("*.bam")) == [
        "D2_ctA.bam", "D2_ctB.bam", "D2_ctC.bam"]


def test_dup_site_rate_factor_densifies_duplication_sources():
    """``dup_site_rate_factor`` plants that many times more sites in duplication
    sources (so a study can measure the residual mapping bias there finely);
    the density elsewhere is unchanged."""
    import dataclasses

    from caveat.simulate import donors, motifs
    from caveat.simulate.genome import build_genome
    from caveat.simulate.presets import PRESETS

    p1 = dataclasses.replace(PRESETS["tiny"], genome_bp=600_000, dups_per_chrom=3.0)
    density = {}
    for factor in (1.0, 4.0):
        p = dataclasses.replace(p1, dup_site_rate_factor=factor)
        mot = motifs.make_motifs(np.random.default_rng(1), list(p.cell_types))
        g = build_genome(np.random.default_rng(2), p, mot)
        v = donors.make_variants(np.random.default_rng(3), g, p)
        dup_bp = int(g.dups.length.sum())
        n_dup = int(v.sites.in_duplication.sum())
        n_out = int((~v.sites.in_duplication).sum())
        density[factor] = (n_dup / dup_bp, n_out / (len(g.seq) - dup_bp))
    assert 2.5 < density[4.0][0] / density[1.0][0] < 5.0
    assert 0.85 < density[4.0][1] / density[1.0][1] < 1.15


def test_reads_overlapping_equals_pysam_count(tiny_sim):
    """The artefact-depth diagnostic's one-pass overlap count equals summing pysam's per-interval
    ``count`` (elements, artefact regions, overlapping intervals, a contig without reads)."""
    from caveat.simulate import reads_overlapping

    el = pd.read_parquet(tiny_sim / "truth" / "elements.parquet")[["chrom", "start", "end"]]
    art = pd.read_csv(tiny_sim / "truth" / "artefact_regions.bed", sep="\t", header=None,
                      usecols=[0, 1, 2], names=["chrom", "start", "end"])
    odd = pd.DataFrame({"chrom": ["chr1", "chr1", "chr1", "chrUn"], "start": [0, 100, 150, 0],
                        "end": [5000, 200, 180, 10]})
    bam_path = tiny_sim / "bams" / "D1_ctA.bam"
    with pysam.AlignmentFile(str(bam_path)) as bam:
        expected = [sum(bam.count(c, s, e) for c, s, e in zip(iv.chrom, iv.start, iv.end) if c in bam.references)
                    for iv in (el, art, odd)]
    assert reads_overlapping(bam_path, [el, art, odd]) == expected
    assert min(expected) > 0


@pytest.mark.parametrize("min_mapq", [0, 10])
def test_observed_ref_fraction_equals_a_query_per_site(tiny_sim, min_mapq):
    """The truth diagnostic's one count_coverage per contig gives the counts of one query per
    site (the same read filter), at every SNV of a sample, duplication SNVs included."""
    from caveat.simulate.truth import observed_ref_fraction

    snps = pd.read_parquet(tiny_sim / "truth" / "snps.parquet")
    s = snps[~snps.is_indel & (snps.donor == "D1") & (snps.cell_type == "ctA")]
    bam_path = tiny_sim / "bams" / "D1_ctA.bam"

    def keep(r):
        return r.mapping_quality >= min_mapq and r.is_proper_pair and not r.is_secondary and not r.is_supplementary

    idx = {b: i for i, b in enumerate("ACGT")}
    ref_n = alt_n = 0
    with pysam.AlignmentFile(str(bam_path)) as bam:
        for c, q, r, a in zip(s.chrom, s.pos, s.ref, s.alt):
            cov = bam.count_coverage(c, int(q), int(q) + 1, quality_threshold=0, read_callback=keep)
            ref_n, alt_n = ref_n + cov[idx[r]][0], alt_n + cov[idx[a]][0]
    assert observed_ref_fraction(bam_path, s, min_mapq) == (ref_n, alt_n)
    assert ref_n > 100 and s.in_duplication.any()
