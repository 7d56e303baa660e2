"""Allele counting: equal to a brute-force pysam count and to `bcftools mpileup -a AD`."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pysam
import pytest

from caveat import bam_records as br
from caveat import wasp_remap as wr
from caveat.count_alleles import count_sample, fragment_calls, main
from caveat.errors import InputError
from caveat.het_sites import read_het_sites
from bam_helpers import sorted_header, write_sorted_bam
from wasp_data import build_study, write_fasta, write_vcf

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real" / "na12878_chr22_tiny"


# ----------------------------------------------------------------------------- independent counts

def brute_force(bam: Path, snps: pd.DataFrame, min_mapq: int, min_bq: int) -> pd.DataFrame:
    """Pure-Python count with pysam objects: per (site, fragment) collect the mates'
    (base, qual); one mate: counted if qual >= min_bq; two agreeing: if the summed
    qualities (cap 200) >= min_bq; two disagreeing: a conflict."""
    obs: dict[tuple[int, str], list] = {}
    key = {(c, p): i for i, (c, p) in enumerate(zip(snps["chrom"], snps["pos"]))}
    with pysam.AlignmentFile(str(bam)) as f:
        for r in f.fetch(until_eof=True):
            if r.is_unmapped or r.is_secondary or r.is_supplementary or r.is_qcfail or r.is_duplicate:
                continue
            if r.is_paired and not r.is_proper_pair or r.mapping_quality < min_mapq:
                continue
            seq, qual = r.query_sequence, r.query_qualities
            for q, p in r.get_aligned_pairs(matches_only=True):
                i = key.get((r.reference_name, p))
                if i is not None:
                    obs.setdefault((i, r.query_name), []).append((seq[q], qual[q]))
    out = np.zeros((len(snps), 4), int)
    ref, alt = snps["ref"].to_numpy(), snps["alt"].to_numpy()
    for (i, _), o in obs.items():
        if len(o) == 1:
            (b, q), = o
            if q < min_bq:
                continue
        elif o[0][0] == o[1][0]:
            b, q = o[0][0], min(o[0][1] + o[1][1], 200)
            if q < min_bq:
                continue
        else:
            out[i, 3] += 1
            continue
        if b == "N":
            continue
        out[i, 0 if b == ref[i] else 1 if b == alt[i] else 2] += 1
    return pd.DataFrame(out, columns=["ref_count", "alt_count", "other_count", "conflict_count"])


def bcftools_ad(bam: Path, fasta: Path, snps: pd.DataFrame, min_mapq: int, min_bq: int, tmp: Path) -> pd.DataFrame:
    """REF/ALT depth from `bcftools mpileup -a AD`: no BAQ, no depth cap, overlap detection on."""
    targets = tmp / "targets.tsv"
    snps.assign(p1=snps["pos"] + 1)[["chrom", "p1"]].to_csv(targets, sep="\t", header=False, index=False)
    cmd = (f"bcftools mpileup -f {fasta} -T {targets} -a AD -B -d 100000000 -q {min_mapq} -Q {min_bq} -Ou {bam}"
           f" | bcftools query -f '%CHROM\\t%POS\\t%ALT\\t[%AD]\\n'")
    out = subprocess.run(cmd, shell=True, check=True, capture_output=True, text=True).stdout
    ad = {}
    for line in out.splitlines():
        chrom, p, alts, depth = line.split("\t")
        d = [int(x) for x in depth.split(",")]
        ad[(chrom, int(p) - 1)] = (d[0], dict(zip(alts.split(","), d[1:])))
    rows = [ad.get((c, p), (0, {})) for c, p in zip(snps["chrom"], snps["pos"])]
    return pd.DataFrame({"ref_count": [r[0] for r in rows],
                         "alt_count": [r[1].get(a, 0) for r, a in zip(rows, snps["alt"])]})


def assert_equal_to_bcftools(ours: pd.DataFrame, bcf: pd.DataFrame) -> None:
    """Equal at every site without mate conflicts; at the rest bcftools resolves each conflict
    to one of the mates, so it counts at most ``conflict_count`` more."""
    clean = ours["conflict_count"].to_numpy() == 0
    np.testing.assert_array_equal(ours.loc[clean, "ref_count"], bcf.loc[clean, "ref_count"])
    np.testing.assert_array_equal(ours.loc[clean, "alt_count"], bcf.loc[clean, "alt_count"])
    extra = (bcf["ref_count"] + bcf["alt_count"]) - (ours["ref_count"] + ours["alt_count"])
    assert (extra[~clean] <= ours.loc[~clean, "conflict_count"]).all()


# ----------------------------------------------------------------------------- hand-built reads

@pytest.fixture(scope="module")
def hand(tmp_path_factory):
    """Random reads over three SNPs: overlapping/disagreeing mates, low BQ/MAPQ, flags,
    deletions over a SNP, soft clips, N bases."""
    tmp = tmp_path_factory.mktemp("hand_count")
    rng = np.random.default_rng(11)
    genome = "".join(rng.choice(list("ACGT"), 3000))
    fasta = tmp / "g.fa"
    write_fasta(fasta, {"chr1": genome})
    snp_pos = [1000, 1010, 1200]
    alts = {p: "ACGT"[("ACGT".index(genome[p]) + 2) % 4] for p in snp_pos}
    header = sorted_header({"chr1": 3000})
    reads = []
    for i in range(400):
        p1 = int(rng.integers(920, 1190))
        p2 = int(p1 + rng.integers(0, 60))
        flag_extra = int(rng.choice([0, 0, 0, 0, br.DUP, br.SECONDARY, br.QCFAIL]))
        proper = br.PROPER if rng.random() > 0.05 else 0
        mapq = int(rng.choice([60, 60, 60, 5]))
        for mate, pos, mpos in ((1, p1, p2), (2, p2, p1)):
            cig = str(rng.choice(["50M", "3S47M", "20M2D30M", "10M1I39M"]))
            a = pysam.AlignedSegment(header)
            a.query_name = f"p{i}"
            a.reference_id = a.next_reference_id = 0
            a.reference_start, a.next_reference_start = pos, mpos
            a.cigarstring = cig
            seq = list(genome[pos:pos + 60])
            a.query_sequence = "".join(seq[:a.infer_query_length()])
            for s in snp_pos:  # the allele this mate shows (mates may disagree)
                for q, r in a.get_aligned_pairs(matches_only=True):
                    if r == s:
                        seq[q] = str(rng.choice([genome[s], alts[s], alts[s], "T", "N"], p=[.4, .4, 0, .15, .05]))
            qs = a.infer_query_length()
            a.query_sequence = "".join(seq[:qs])
            a.query_qualities = pysam.qualitystring_to_array("".join(rng.choice(list("5?I#+"), qs)))
            a.flag = br.PAIRED | proper | (br.READ1 if mate == 1 else br.READ2 | br.REVERSE) | flag_extra
            a.mapping_quality = mapq
            reads.append(a)
    bam = write_sorted_bam(tmp / "hand.bam", header, reads)
    snps = pd.DataFrame({"variant_id": [f"chr1:{p + 1}:{genome[p]}:{alts[p]}" for p in snp_pos], "chrom": "chr1",
                         "pos": snp_pos, "ref": [genome[p] for p in snp_pos], "alt": [alts[p] for p in snp_pos],
                         "donor": "D1"})
    return bam, snps, fasta, tmp


@pytest.mark.parametrize("min_mapq,min_bq", [(10, 20), (0, 0), (30, 13)])
def test_equals_brute_force_on_hand_built_reads(hand, min_mapq, min_bq):
    bam, snps, _, _ = hand
    ours = count_sample(bam, snps, min_mapq=min_mapq, min_bq=min_bq)
    expect = brute_force(bam, snps, min_mapq, min_bq)
    pd.testing.assert_frame_equal(ours[expect.columns].reset_index(drop=True), expect, check_dtype=False)
    assert ours["conflict_count"].sum() > 0 and ours["other_count"].sum() > 0


def test_equals_bcftools_on_hand_built_reads(hand):
    bam, snps, fasta, tmp = hand
    ours = count_sample(bam, snps, min_mapq=10, min_bq=20)
    assert_equal_to_bcftools(ours, bcftools_ad(bam, fasta, snps, 10, 20, tmp))


def test_fragment_calls_rules():
    # site 0: one mate q30 A; site 1: two mates agree C at q12+q12 (sum 24 passes 20);
    # site 2: mates disagree; site 3: single low-quality read
    snp = np.array([0, 1, 1, 2, 2, 3])
    frag = np.array([7, 8, 8, 9, 9, 10])
    base = np.array([0, 1, 1, 2, 3, 0])
    qual = np.array([30, 12, 12, 30, 30, 5])
    site, call, ok = fragment_calls(snp, frag, base, qual, 20)
    assert site.tolist() == [0, 1, 2, 3]
    assert call.tolist() == [0, 1, -1, 0]
    assert ok.tolist() == [True, True, True, False]


# ----------------------------------------------------------------------------- filtered BAMs

@pytest.fixture(scope="module")
def study_filtered(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("count_study")
    st = build_study(tmp / "s", seed=5, n_frags=3000)
    snps, indels, _ = read_het_sites(st["vcf"], ["D1"])
    wr.wasp_filter(st["bam"], snps, indels, tmp / "f.bam", tmp / "f.json", aligner_index=st["index"],
                   aligner_args="-X 1000", seed=2)
    return tmp / "f.bam", snps, st["fasta"], tmp


def test_equals_bcftools_on_filtered_bam(study_filtered):
    bam, snps, fasta, tmp = study_filtered
    ours = count_sample(bam, snps, min_mapq=10, min_bq=20, threads=2)
    assert (ours["ref_count"] + ours["alt_count"]).sum() > 1000
    assert_equal_to_bcftools(ours, bcftools_ad(bam, fasta, snps, 10, 20, tmp))
    pd.testing.assert_frame_equal(ours[["ref_count", "alt_count", "other_count", "conflict_count"]],
                                  brute_force(bam, snps, 10, 20), check_dtype=False)


def test_cli_writes_contract_columns(study_filtered, tmp_path):
    bam, snps, _, _ = study_filtered
    hs = tmp_path / "het.parquet"
    snps.to_parquet(hs)
    assert main(["--bam", str(bam), "--het-snps", str(hs), "--sample", "s1", "--donor", "D1",
                 "--cell-type", "ctA", "--out", str(tmp_path / "s1.parquet")]) == 0
    df = pd.read_parquet(tmp_path / "s1.parquet")
    assert list(df.columns) == ["sample", "donor", "cell_type", "variant_id", "chrom", "pos", "ref", "alt",
                                "ref_count", "alt_count", "other_count", "conflict_count"]
    assert len(df) == len(snps) and (df["sample"] == "s1").all()
    with pytest.raises(InputError, match="no het SNPs"):
        main(["--bam", str(bam), "--het-snps", str(hs), "--sample", "s1", "--donor", "DX",
              "--cell-type", "ctA", "--out", str(tmp_path / "x.parquet")])
    assert not (tmp_path / "x.parquet").exists()
    with pytest.raises(SystemExit):  # counting needs every option
        main(["--bam", str(bam), "--het-snps", str(hs), "--sample", "s1", "--out", str(tmp_path / "x.parquet")])
    assert main(["--summarize", str(tmp_path / "s1.parquet"), "--out", str(tmp_path / "sum.json")]) == 0
    per = json.loads((tmp_path / "sum.json").read_text())["per_sample"]["s1"]
    assert per["sites"] == len(df) and per["ref"] == df["ref_count"].sum() and per["alt"] == df["alt_count"].sum()
    assert per["covered"] == int(((df["ref_count"] + df["alt_count"]) > 0).sum()) > 0


def test_bam_without_index_is_an_error(study_filtered, tmp_path):
    bam, snps, _, _ = study_filtered
    shutil.copy(bam, tmp_path / "noidx.bam")
    with pytest.raises(InputError, match="no index"):
        count_sample(tmp_path / "noidx.bam", snps)


def test_equals_bcftools_on_tiny_sim(tiny_sim, tmp_path):
    import yaml

    params = yaml.safe_load((tiny_sim / "params.yaml").read_text())
    sheet = pd.read_csv(tiny_sim / "samplesheet.csv")
    row = sheet.iloc[0]
    snps, indels, _ = read_het_sites(tiny_sim / "genotypes.vcf.gz", [row["donor"]])
    bam = tmp_path / "w.bam"
    wr.wasp_filter(tiny_sim / row["bam"], snps, indels, bam, tmp_path / "w.json",
                   aligner_index=tiny_sim / "genome", aligner_args=params["aligner_args"], seed=7)
    ours = count_sample(bam, snps, min_mapq=10, min_bq=20)
    assert (ours["ref_count"] + ours["alt_count"]).sum() > 500
    assert_equal_to_bcftools(ours, bcftools_ad(bam, tiny_sim / "genome.fa", snps, 10, 20, tmp_path))


def test_real_na12878_equals_bcftools_and_moves_to_half(tmp_path, real_data):
    """Real reads (GIAB NA12878 het SNPs): realigned with bowtie2, WASP-filtered, counted.
    Skipped when ../shared is absent (the ``real_data`` fixture)."""
    assert REAL.parent == real_data
    fa = tmp_path / "q.fa"
    shutil.copy(REAL / "q.fa", fa)
    pysam.faidx(str(fa))
    idx = tmp_path / "q"
    subprocess.run(["bowtie2-build", "-q", str(fa), str(idx)], check=True)
    fq1, fq2 = tmp_path / "r1.fq", tmp_path / "r2.fq"
    # primary records only, paired by name; -s keeps singletons out
    pysam.collate("-o", str(tmp_path / "c.bam"), str(REAL / "NA12878.chr22.tiny.bam"))
    pysam.fastq("-F", "0x900", "-1", str(fq1), "-2", str(fq2), "-s", "/dev/null", "-0", "/dev/null",
                str(tmp_path / "c.bam"), catch_stdout=False)
    sam = tmp_path / "a.sam"
    args = "--very-sensitive -X 1000"
    subprocess.run(["bowtie2", "-p", "1", "-x", str(idx), *args.split(), "-1", str(fq1), "-2", str(fq2),
                    "-S", str(sam)], check=True, capture_output=True)
    bam = tmp_path / "real.bam"
    pysam.sort("-o", str(bam), str(sam))
    pysam.index(str(bam))
    vcf = REAL / "NA12878.chr22.tiny.giab.vcf"
    donor = pysam.VariantFile(str(vcf)).header.samples[0]  # the donor is the VCF sample
    snps, indels, _ = read_het_sites(vcf, [donor], contigs=["q"])
    assert len(snps) >= 10
    st = wr.wasp_filter(bam, snps, indels, tmp_path / "w.bam", tmp_path / "w.json", aligner_index=idx,
                        aligner_args=args, fasta=fa, seed=0)
    assert st["reads_in"] > 3000 and st["versions_generated"] > 0
    before = count_sample(bam, snps)
    after = count_sample(tmp_path / "w.bam", snps)
    assert_equal_to_bcftools(after, bcftools_ad(tmp_path / "w.bam", fa, snps, 10, 20, tmp_path))
    assert_equal_to_bcftools(before, bcftools_ad(bam, fa, snps, 10, 20, tmp_path))

    def dev(c):
        return abs(c["ref_count"].sum() / (c["ref_count"].sum() + c["alt_count"].sum()) - 0.5)

    assert after["ref_count"].sum() + after["alt_count"].sum() > 200
    assert dev(after) <= dev(before) + 0.01


def _count_run(study, sheet_rows, outdir):
    """wasp_remap + count_alleles on ``study`` with the samplesheet cut to ``sheet_rows``."""
    from caveat.engine import run_pipeline
    from caveat.params import load_params
    from caveat.pipeline import pipeline_steps

    sheet = pd.read_csv(study / "samplesheet.csv")
    sheet[sheet["sample"].isin(sheet_rows)].to_csv(study / "samplesheet.csv", index=False)
    steps = pipeline_steps()
    params = load_params(study / "params.yaml", {"outdir": str(outdir)}, steps)
    return run_pipeline(steps, params, outdir, until="count_alleles", threads=2)


def test_genotype_concordance_flags_the_swapped_study_and_passes_the_true_one(tiny_sim, tmp_path):
    """The simulator's --swap-donors study (D1 and D2 labels exchanged) fails count_alleles,
    naming a mislabelled sample and the donor its reads fit, before any counts table is written;
    the same samples with their true labels pass, and the summary records each share."""
    import json

    from caveat.simulate import swap_donor_labels
    from study_copy import study_copy

    cut = ["D1_ctA", "D2_ctA", "D3_ctA"]
    swapped = study_copy(tiny_sim, tmp_path / "swapped")
    truth = swap_donor_labels(swapped, "D1", "D2")
    assert truth["samples"]["D1_ctA"] == {"sheet_donor": "D2", "read_donor": "D1"}
    assert json.loads((swapped / "truth" / "donor_swap.json").read_text()) == truth
    out = tmp_path / "out_swapped"
    with pytest.raises(InputError, match=r"samplesheet.csv: sample D1_ctA \(donor D2\): only \d+% .* its reads fit "
                                         r"donor D1's genotypes .* swapped \(D2 ↔ D1\)"):
        _count_run(swapped, cut, out)
    assert (out / "pipeline_info/steps/wasp_remap.json").exists()
    assert not (out / "pipeline_info/steps/count_alleles.json").exists()
    assert not (out / "counts").exists() and not (out / "count_alleles.summary.json").exists()

    true = study_copy(tiny_sim, tmp_path / "true")
    out = tmp_path / "out_true"
    assert _count_run(true, cut, out)["count_alleles"] == "ran"
    per = json.loads((out / "count_alleles.summary.json").read_text())["per_sample"]
    assert sorted(per) == cut
    assert all(v["both_alleles_share"] >= 0.85 and v["concordance_sites"] >= 10 for v in per.values()), per


def test_concordance_check_rules():
    from caveat.concordance import check_sample

    ok = pd.DataFrame({"ref_count": [5, 4, 9, 0], "alt_count": [5, 6, 1, 3]})
    assert check_sample(ok, "s", "D1", {"concordance_min_sites": 3}, "sheet.csv") == {
        "both_alleles_share": 1.0, "concordance_sites": 3}
    one = pd.DataFrame({"ref_count": [10, 0, 9, 8], "alt_count": [0, 10, 0, 2]})
    with pytest.raises(InputError, match="sheet.csv: sample s \\(donor D1\\): only 25% of 4 .* no other donor"):
        check_sample(one, "s", "D1", {"concordance_min_sites": 3}, "sheet.csv", lambda d: one, ["D2"])
    # too few covered sites to judge: recorded, not failed
    assert check_sample(one, "s", "D1", {}, "sheet.csv")["concordance_sites"] == 4
    assert check_sample(one, "s", "D1", {"concordance_min_both_alleles": 0.0, "concordance_min_sites": 1},
                        "x")["both_alleles_share"] == 0.25
