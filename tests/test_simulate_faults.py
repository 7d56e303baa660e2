"""The faults ``caveat simulate`` plants (issue 15, point 7): each one is in the
VCF and the reads as its truth says (counted here with pysam, independently of
the simulator's summary), and none is there when its rate is 0."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pysam
import pytest
import yaml

from caveat.simulate.presets import FAULTS_ON, PRESETS


#: The tiny preset (every fault on) with the demo's overdispersion, rho 0.02: the tiny
#: preset's milder 0.005 would not stand out of the binomial noise of its few balanced sites
FAULTY = dataclasses.replace(PRESETS["tiny"], allelic_overdispersion=FAULTS_ON["demo"]["allelic_overdispersion"])


@pytest.fixture(scope="module")
def faulty(tiny_sim) -> Path:
    """The tests' tiny study (seed 7): the preset plants every fault."""
    return tiny_sim


@pytest.fixture(scope="module")
def overdispersed(tmp_path_factory) -> Path:
    """The tiny study, seed 7, with the demo's overdispersion (:data:`FAULTY`): a simulation of its own."""
    from caveat.simulate import simulate

    out = tmp_path_factory.mktemp("overdispersed")
    simulate(FAULTY, seed=7, out=out)
    return out


def test_presets_plant_every_fault():
    """The presets carry every fault (the tests of the pipeline see them); ``--no-faults``
    (``without_faults``) gives the clean study."""
    from caveat.simulate.presets import without_faults

    for name, p in PRESETS.items():
        on = {k: getattr(p, k) for k in FAULTS_ON[name]}
        assert on == FAULTS_ON[name] and all(v for k, v in on.items())
        off = without_faults(p)
        assert off.false_het_rate == off.lost_het_rate == off.allelic_overdispersion == 0
        assert off.chrx_bp == off.artefact_regions == 0 and off.donor_accessibility_sd == 0
    from caveat.simulate import build_parser

    assert build_parser().parse_args(["--out", "x", "--no-faults"]).faults is False
    assert build_parser().parse_args(["--out", "x"]).faults is True


def _bases(bam: pysam.AlignmentFile, chrom: str, pos: int, min_mapq: int = 10) -> list:
    """The base each fragment (primary, MAPQ ≥ ``min_mapq``) shows at 0-based ``pos``, once per fragment."""
    seen: dict = {}
    for r in bam.fetch(chrom, pos, pos + 1):
        if r.is_secondary or r.is_supplementary or r.mapping_quality < min_mapq:
            continue
        for q, rp in r.get_aligned_pairs(matches_only=True):
            if rp == pos:
                seen.setdefault(r.query_name, r.query_sequence[q])
                break
    return list(seen.values())


def _donor_bases(sim: Path, donor: str, chrom: str, pos: int) -> list:
    out = []
    for ct in ("ctA", "ctB", "ctC"):
        with pysam.AlignmentFile(str(sim / "bams" / f"{donor}_{ct}.bam")) as bam:
            out += _bases(bam, chrom, pos)
    return out


def _summary(sim: Path) -> dict:
    return json.loads((sim / "simulate.summary.json").read_text())


def _snv(df: pd.DataFrame) -> pd.DataFrame:
    return df[(df.ref.str.len() == 1) & (df.alt.str.len() == 1)]


def test_genotype_errors_in_vcf_and_reads(faulty):
    err = pd.read_parquet(faulty / "truth" / "genotype_errors.parquet")
    snps = pd.read_parquet(faulty / "truth" / "snps.parquet")
    with pysam.VariantFile(str(faulty / "genotypes.vcf.gz")) as vcf:
        for row in err.itertuples():
            rec = [r for r in vcf.fetch(row.chrom, row.pos, row.pos + 1) if r.pos == row.pos + 1][0]
            gt = rec.samples[row.donor]["GT"]
            assert f"{gt[0]}|{gt[1]}" == row.vcf_gt, row
    fh, lost = err[err.kind == "false_het"], err[err.kind == "lost_het"]
    assert set(fh.true_gt) <= {"0|0", "1|1"} and set(fh.vcf_gt) <= {"0|1", "1|0"}
    assert set(lost.true_gt) <= {"0|1", "1|0"} and set(lost.vcf_gt) <= {"0|0", "1|1"}
    for donor, n_het in snps.groupby("donor").variant_id.nunique().items():  # rates of the preset
        assert (fh.donor == donor).sum() == round(0.03 * n_het)
        assert (lost.donor == donor).sum() == round(0.02 * n_het)
    assert fh.in_element.mean() >= 0.5  # where reads are, not only in deserts
    # a false het shows one allele only (the donor's true one; the other by sequencing error)
    covered = true_n = other_n = 0
    for row in _snv(fh).itertuples():
        b = _donor_bases(faulty, row.donor, row.chrom, row.pos)
        true_allele, other = (row.ref, row.alt) if row.true_gt == "0|0" else (row.alt, row.ref)
        t, o = b.count(true_allele), b.count(other)
        assert o <= max(1, 0.05 * (t + o)), row
        covered += t + o >= 10
        true_n, other_n = true_n + t, other_n + o
    assert covered >= 0.4 * len(_snv(fh)) and true_n > 500
    assert other_n / (true_n + other_n) < 0.01
    # a lost het is a true het: its reads show both alleles
    ref_n = alt_n = 0
    for row in _snv(lost).itertuples():
        b = _donor_bases(faulty, row.donor, row.chrom, row.pos)
        ref_n, alt_n = ref_n + b.count(row.ref), alt_n + b.count(row.alt)
    assert ref_n + alt_n > 50 and 0.3 < ref_n / (ref_n + alt_n) < 0.7


def test_x_inactivation_skews_chrx_reads(faulty):
    snps = pd.read_parquet(faulty / "truth" / "snps.parquet")
    share = _summary(faulty)["faults"]["x_inactivation"]["first_haplotype_active_share"]
    on_x = snps.chrom == "chrX"
    assert on_x.any() and (snps.x_inactivation == on_x).all()
    assert (snps.effect[on_x] == "x_inactivation").all() and not (snps.effect[~on_x] == "x_inactivation").any()
    x = _snv(snps[on_x])
    for donor, s in share.items():
        assert abs(s - 0.5) >= 0.2  # the preset's skew: 0.5 ± U(0.2, 0.4)
        first = total = expected = 0.0
        for row in x[x.donor == donor].itertuples():
            with pysam.AlignmentFile(str(faulty / "bams" / f"{donor}_{row.cell_type}.bam")) as bam:
                b = _bases(bam, row.chrom, row.pos)
            first_allele = row.alt if row.haplotype_phase == "1|0" else row.ref
            e_first = row.expected_ref_fraction if first_allele == row.ref else 1 - row.expected_ref_fraction
            n = b.count(row.ref) + b.count(row.alt)
            first, total, expected = first + b.count(first_allele), total + n, expected + n * e_first
        assert total >= 100, donor
        obs = first / total
        assert (obs - 0.5) * (s - 0.5) > 0 and abs(obs - 0.5) > 0.08, (donor, obs, s)
        assert abs(obs - expected / total) < 0.07, (donor, obs, expected / total)


def _intervals(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, sep="\t", header=None, usecols=[0, 1, 2], names=["chrom", "start", "end"])


def _distance(iv: pd.DataFrame, start: int, end: int) -> int:
    """bp from [start, end) to the nearest interval of ``iv`` (0 when one overlaps)."""
    d = np.maximum(0, np.maximum(iv.start.to_numpy() - end, start - iv.end.to_numpy()))
    return int(d.min())


def test_artefact_regions_pile_up_and_are_blacklisted(faulty):
    reg = _intervals(faulty / "truth" / "artefact_regions.bed")
    black = _intervals(faulty / "blacklist.bed")
    assert yaml.safe_load((faulty / "params.yaml").read_text())["blacklist"] == "blacklist.bed"
    assert len(reg) == 2 and not reg.chrom.eq("chrX").any()
    assert ((reg.end - reg.start).between(150, 400)).all()
    for r in reg.itertuples():  # the blacklist covers each region with a margin
        assert ((black.chrom == r.chrom) & (black.start <= r.start - 100) & (black.end >= r.end + 100)).any()
    elements = pd.read_parquet(faulty / "truth" / "elements.parquet")
    gap = [_distance(elements[elements.chrom == r.chrom], r.start, r.end) for r in reg.itertuples()]
    assert min(gap) == 0 and max(gap) <= 1500  # in or near elements
    for ct in ("ctA", "ctB", "ctC"):
        peaks = _intervals(faulty / "peaks" / f"{ct}.bed")
        with pysam.AlignmentFile(str(faulty / "bams" / f"D2_{ct}.bam")) as bam:
            def depth(c, s, e):
                return float(np.sum(bam.count_coverage(c, int(s), int(e), quality_threshold=0), axis=0).mean())
            peak_median = np.median([depth(*p) for p in zip(peaks.chrom, peaks.start, peaks.end)])
            for r in reg.itertuples():
                assert depth(r.chrom, r.start, r.end) > 10 * peak_median, (ct, r)
    # their sites are flagged, and a het site there shows one allele far more (the copies' allele)
    snps = pd.read_parquet(faulty / "truth" / "snps.parquet")
    inside = np.zeros(len(snps), bool)
    for r in reg.itertuples():
        inside |= ((snps.chrom == r.chrom) & (snps.pos >= r.start) & (snps.pos < r.end)).to_numpy()
    assert inside.any() and (snps.in_artefact.to_numpy() == inside).all()
    for (donor, chrom, pos, ref, alt), _ in _snv(snps[snps.in_artefact]).groupby(["donor", "chrom", "pos", "ref", "alt"]):
        b = _donor_bases(faulty, donor, chrom, int(pos))
        r, a = b.count(ref), b.count(alt)
        assert r + a > 300 and max(r, a) / (r + a) > 0.85


def test_overdispersion_draws_beta_shares_and_fragments_follow():
    """Per sample × element the first-haplotype share is Beta(m κ, (1 - m) κ): mean m,
    variance ρ m (1 - m), element totals kept; the fragments drawn follow the drawn share,
    so counts at a balanced element are overdispersed (index ≈ 1 + (n - 1) ρ, binomial: 1)."""
    from caveat.simulate import faults, fragments, motifs
    from caveat.simulate.genome import build_genome

    rho, rng = 0.02, np.random.default_rng(5)
    acc = np.stack([np.r_[np.full(3000, 0.4), np.full(3000, 0.7), [0.0, 0.5]],
                    np.r_[np.full(3000, 0.4), np.full(3000, 0.3), [0.0, 0.0]]])
    new, m, q = faults.overdisperse(rng, acc, rho)
    assert np.allclose(new.sum(0), acc.sum(0)) and np.allclose(new[0], acc.sum(0) * q)
    for sl, mean in ((slice(0, 3000), 0.5), (slice(3000, 6000), 0.7)):
        assert abs(q[sl].mean() - mean) < 0.005
        assert 0.85 < q[sl].var() / (rho * mean * (1 - mean)) < 1.15
    assert q[-1] == 1.0 and m[-2] == 0.5  # all on one haplotype stays so; a closed element keeps its 0
    same, _, q0 = faults.overdisperse(rng, acc, 0.0)
    assert same is acc and (q0 == m).all()
    # fragments: 400 draws of one balanced element's 200 fragments
    p = dataclasses.replace(PRESETS["tiny"], genome_bp=60_000, chrx_bp=0)
    g = build_genome(np.random.default_rng(1), p, motifs.make_motifs(np.random.default_rng(0), list(p.cell_types)))
    one = np.zeros((2, len(g.elements)))
    one[:, 0] = 1.0
    first = []
    for _ in range(400):
        a, _, _ = faults.overdisperse(rng, one, rho)
        f = fragments.sample_fragments(rng, g, a, 200, 0.0, 0.0, 50)
        first.append(int((f.hap == 0).sum()))
    disp = np.var(first) / (200 * 0.25)
    assert abs(np.mean(first) / 200 - 0.5) < 0.01 and 3.0 < disp < 7.0  # 1 + 199 ρ = 4.98


@pytest.mark.slow  # its own simulation and a pysam scan of every balanced site: minutes on 2 cores
def test_donor_variation_and_overdispersion_in_study(overdispersed):
    """Log-normal accessibility factors per donor × element (mean 1), followed by the reads;
    the overdispersed shares of the study's truth have variance ρ m (1 - m), and the reads at
    balanced sites are overdispersed (chi-square per site well above binomial's 1)."""
    s = _summary(overdispersed)["faults"]
    rho = s["allelic_overdispersion"]
    assert rho == FAULTY.allelic_overdispersion and s["donor_accessibility_sd"] == 0.3
    sh = pd.read_parquet(overdispersed / "truth" / "haplotype_shares.parquet")
    m, q = sh.planted_first_hap_share, sh.drawn_first_hap_share
    z = ((q - m) / np.sqrt(m * (1 - m)))[(m > 0) & (m < 1)]
    assert len(z) > 500 and abs(z.mean()) < 0.02 and 0.7 < (z ** 2).mean() / rho < 1.4
    snps = pd.read_parquet(overdispersed / "truth" / "snps.parquet")
    bal = _snv(snps[~snps.in_duplication & ~snps.in_artefact & (snps.effect == "none") & snps.element.notna()])
    stat = []
    for (donor, ct), g in bal.groupby(["donor", "cell_type"]):
        with pysam.AlignmentFile(str(overdispersed / "bams" / f"{donor}_{ct}.bam")) as bam:
            for c, pos, ref, alt in zip(g.chrom, g.pos, g.ref, g.alt):
                b = _bases(bam, c, int(pos))
                n = b.count(ref) + b.count(alt)
                if n >= 20:
                    stat.append((b.count(ref) - n / 2) ** 2 / (n / 4))
    assert len(stat) >= 40 and np.mean(stat) > 1.5
    el = pd.read_parquet(overdispersed / "truth" / "elements.parquet")
    f = el[["donor_factor_D1", "donor_factor_D2", "donor_factor_D3"]].to_numpy()
    assert 0.2 < np.log(f).std() < 0.4 and abs(f.mean() - 1) < 0.08
    counts = {}
    for donor in ("D1", "D2"):
        with pysam.AlignmentFile(str(overdispersed / "bams" / f"{donor}_ctA.bam")) as bam:
            counts[donor] = np.array([bam.count(c, s, e) for c, s, e in zip(el.chrom, el.start, el.end)])
    ok = (counts["D1"] > 30) & (counts["D2"] > 30)
    r = np.corrcoef(np.log(counts["D1"][ok] / counts["D2"][ok]), np.log(f[ok, 0] / f[ok, 1]))[0, 1]
    assert ok.sum() >= 30 and r > 0.5


@pytest.fixture(scope="module")
def faultless(tmp_path_factory) -> Path:
    """A small study with every fault's rate (or size) 0."""
    from caveat.simulate import simulate

    p = dataclasses.replace(PRESETS["tiny"], genome_bp=150_000, fragments_per_sample=5000, false_het_rate=0,
                            lost_het_rate=0, donor_accessibility_sd=0, allelic_overdispersion=0, chrx_bp=0,
                            xci_skew=0, artefact_regions=0)
    out = tmp_path_factory.mktemp("faultless")
    simulate(p, seed=3, out=out)
    return out


def test_faults_deterministic(tiny_sim, tmp_path):
    """Same seed → byte-identical study, faults included (the CLI against the tests' tiny study)."""
    import hashlib

    from caveat.simulate import main

    faulty = tiny_sim
    assert main(["--preset", "tiny", "--seed", "7", "--out", str(tmp_path / "again")]) == 0
    files = sorted(p.relative_to(faulty) for p in faulty.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(tmp_path / "again") for p in (tmp_path / "again").rglob("*") if p.is_file())
    differ = [str(f) for f in files if hashlib.sha256((faulty / f).read_bytes()).digest()
              != hashlib.sha256((tmp_path / "again" / f).read_bytes()).digest()]
    assert differ == []


def test_rates_zero_no_fault(faultless):
    assert not (faultless / "blacklist.bed").exists() and not (faultless / "truth" / "artefact_regions.bed").exists()
    assert "blacklist" not in yaml.safe_load((faultless / "params.yaml").read_text())
    assert "chrX" not in (faultless / "genome.fa.fai").read_text()
    assert len(pd.read_parquet(faultless / "truth" / "genotype_errors.parquet")) == 0
    snps = pd.read_parquet(faultless / "truth" / "snps.parquet")
    assert not (snps.genotype_error | snps.x_inactivation | snps.in_artefact).any()
    assert "x_inactivation" not in set(snps.effect)
    het = set()
    with pysam.VariantFile(str(faultless / "genotypes.vcf.gz")) as vcf:
        for rec in vcf.fetch():
            if len(rec.alts) == 1 and "PASS" in rec.filter.keys():
                het |= {(d, f"{rec.chrom}:{rec.pos}:{rec.ref}:{rec.alts[0]}") for d, s in rec.samples.items()
                        if None not in s["GT"] and s["GT"][0] != s["GT"][1]}
    assert het == set(zip(snps.donor, snps.variant_id))
    sh = pd.read_parquet(faultless / "truth" / "haplotype_shares.parquet")
    assert (sh.drawn_first_hap_share == sh.planted_first_hap_share).all()
    el = pd.read_parquet(faultless / "truth" / "elements.parquet")
    assert (el.filter(like="donor_factor_") == 1.0).all().all()
    s = _summary(faultless)
    gt = s["faults"]["genotype_errors"]
    assert gt["false_het"] == gt["lost_het"] == 0 and s["faults"]["artefact_regions"]["regions"] == 0
    assert s["faults"]["x_inactivation"]["chrom"] is None
    assert all(v["from_artefacts"] == 0 for v in s["fragments"].values())
