"""The WASP mapping filter: versions, the same-location rule, classification, dedup,
removal of planted mapping bias, errors."""

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
from caveat.count_alleles import count_sample
from caveat.errors import InputError
from caveat.genome import CODE
from caveat.het_sites import read_het_sites
from wasp_data import build_study, revcomp, write_fasta, write_vcf

RNG = np.random.default_rng(3)
GENOME = "".join(RNG.choice(list("ACGT"), 2000))


# ----------------------------------------------------------------------------- hand-built reads

def _read(header, name, pos, cigar, seq, flag=0, mapq=60, mpos=-1, qual=None):
    a = pysam.AlignedSegment(header)
    a.query_name = name
    a.reference_id = 0
    a.reference_start = pos
    a.cigarstring = cigar
    a.query_sequence = seq
    a.query_qualities = pysam.qualitystring_to_array(qual or "I" * len(seq))
    a.flag = flag
    a.mapping_quality = mapq
    if flag & br.PAIRED:
        a.next_reference_id = 0
        a.next_reference_start = mpos
    return a


def chunk_of(tmp: Path, reads: list[dict]) -> br.Chunk:
    """Raw-record chunk of hand-built reads (in the given order)."""
    header = pysam.AlignmentHeader.from_dict({"HD": {"VN": "1.6", "SO": "coordinate"},
                                              "SQ": [{"SN": "chr1", "LN": len(GENOME)}]})
    path = tmp / f"hand{len(list(tmp.glob('hand*.bam')))}.bam"
    with pysam.AlignmentFile(str(path), "wb", header=header) as f:
        for r in reads:
            f.write(_read(header, **r))
    _, chunks = br.stream_file(path)
    return wr.concat_many(list(chunks))


def seq_for(pos: int, cigar: str) -> str:
    """Reference bases of a CIGAR (insertions and soft clips as 'A')."""
    out, r = [], pos
    for n, op in _cigar_ops(cigar):
        if op in "M=X":
            out.append(GENOME[r:r + n])
            r += n
        elif op in "IS":
            out.append("A" * n)
        elif op in "DN":
            r += n
    return "".join(out)


def _cigar_ops(cigar: str):
    import re

    return [(int(n), op) for n, op in re.findall(r"(\d+)([MIDNSHP=X])", cigar)]


def sites(pos: list[int]):
    pos = np.array(sorted(pos), np.int64)
    ref = CODE[np.frombuffer(GENOME.encode(), np.uint8)[pos]]
    alt = (ref + 1) % 4
    return pos, ref, alt


def versions(tmp, ch, snp_pos, ref, alt, max_snps=6, max_versions=64):
    """Run the real version writer; return the units table and the FASTQ records per mate."""
    stats = {"versions_generated": 0}
    units = wr._write_versions(ch, np.arange(len(ch)), 0, snp_pos, ref, alt, max_snps, max_versions, tmp, stats)
    fq = {}
    for m in (1, 2):
        lines = (tmp / f"0.r{m}.fq").read_text().splitlines()
        fq[m] = {lines[i][1:]: lines[i + 1] for i in range(0, len(lines), 4)}
    return units, fq


def test_one_snp_one_version(tmp_path):
    ch = chunk_of(tmp_path, [dict(name="r", pos=100, cigar="50M", seq=GENOME[100:150])])
    sp, ref, alt = sites([120])
    units, fq = versions(tmp_path, ch, sp, ref, alt)
    assert units["status"].tolist() == ["remap"] and units["n_versions"].tolist() == [1]
    (name, s), = fq[1].items()
    assert name == "0_0_0"
    diff = [i for i in range(50) if s[i] != GENOME[100 + i]]
    assert diff == [20] and s[20] == "ACGT"[alt[0]]


def test_six_snps_63_versions_seven_dropped(tmp_path):
    pos6 = [101, 107, 115, 122, 130, 148]
    ch = chunk_of(tmp_path, [dict(name="r", pos=100, cigar="50M", seq=GENOME[100:150])])
    sp, ref, alt = sites(pos6)
    units, fq = versions(tmp_path, ch, sp, ref, alt)
    seqs = list(fq[1].values())
    assert units["n_versions"].tolist() == [63] and len(set(seqs)) == 63
    orig = GENOME[100:150]
    assert orig not in seqs
    for s in seqs:
        diff = {i + 100 for i in range(50) if s[i] != orig[i]}
        assert diff and diff <= set(pos6)
        assert all(s[p - 100] in ("ACGT"[ref[k]], "ACGT"[alt[k]]) for k, p in enumerate(pos6))
    sp, ref, alt = sites(pos6 + [140])
    units, fq = versions(tmp_path, ch, sp, ref, alt)
    assert units["status"].tolist() == ["too_many_snps"] and not fq[1]
    sp, ref, alt = sites(pos6[:4])
    units, _ = versions(tmp_path, ch, sp, ref, alt, max_versions=8)
    assert units["status"].tolist() == ["too_many_versions"]


def test_no_snp_read_is_kept_without_remap(tmp_path):
    ch = chunk_of(tmp_path, [dict(name="r", pos=300, cigar="50M", seq=GENOME[300:350])])
    sp, _, _ = sites([120, 500])
    nsnp = br.count_snps_in_blocks(ch.buf, ch.offs, ch.pos, ch.end, sp)
    dec = wr.classify(ch, np.full(1, wr.PENDING, np.uint8), nsnp, np.zeros(1, bool), 10, True)
    assert nsnp.tolist() == [0] and dec.tolist() == [wr.KEEP]


def test_soft_clip_insertion_deletion_offsets(tmp_path):
    cigar = "5S20M2I10M3D15M"
    seq = seq_for(200, cigar)
    ch = chunk_of(tmp_path, [dict(name="r", pos=200, cigar=cigar, seq=seq)])
    # 210: first M block; 225: after the insertion; 231: inside the deletion (not covered); 240: last block
    sp, ref, alt = sites([210, 225, 231, 240])
    seg = _read(pysam.AlignmentHeader.from_dict({"SQ": [{"SN": "chr1", "LN": 2000}]}), "r", 200, cigar, seq)
    qpos = {r: q for q, r in seg.get_aligned_pairs(matches_only=True)}
    units, fq = versions(tmp_path, ch, sp, ref, alt)
    assert units["n_versions"].tolist() == [7]  # 3 covered sites
    changed = set()
    for s in fq[1].values():
        changed |= {i for i in range(len(seq)) if s[i] != seq[i]}
    assert changed == {qpos[210], qpos[225], qpos[240]}


def test_reverse_read_fastq_is_sequencing_orientation(tmp_path):
    ch = chunk_of(tmp_path, [dict(name="r", pos=100, cigar="50M", seq=GENOME[100:150], flag=br.REVERSE,
                                  qual="I" * 49 + "#")])
    sp, ref, alt = sites([110])
    _, fq = versions(tmp_path, ch, sp, ref, alt)
    (s,) = fq[1].values()
    swapped = GENOME[100:110] + "ACGT"[alt[0]] + GENOME[111:150]
    assert s == revcomp(swapped)
    q = (tmp_path / "0.r1.fq").read_text().splitlines()[3]
    assert q[0] == "#"  # qualities reversed with the sequence


def _pair(name, p1, p2, s1=None, s2=None, flag_extra=0, mapq=60):
    f1 = br.PAIRED | br.PROPER | br.READ1 | br.MREVERSE | flag_extra
    f2 = br.PAIRED | br.PROPER | br.READ2 | br.REVERSE | flag_extra
    return [dict(name=name, pos=p1, cigar="50M", seq=s1 or GENOME[p1:p1 + 50], flag=f1, mpos=p2, mapq=mapq),
            dict(name=name, pos=p2, cigar="50M", seq=s2 or GENOME[p2:p2 + 50], flag=f2, mpos=p1, mapq=mapq)]


def test_overlapping_mates_consistent(tmp_path):
    ch = chunk_of(tmp_path, _pair("p", 100, 120))
    sp, ref, alt = sites([105, 130])  # 105: mate 1 only; 130: both mates
    units, fq = versions(tmp_path, ch, sp, ref, alt)
    assert units["n_versions"].tolist() == [3]
    assert units["ser_b"].tolist() != [-1]
    for name, s1 in fq[1].items():
        s2 = revcomp(fq[2][name])  # back to reference strand
        assert s1[130 - 100] == s2[130 - 120]  # the shared site carries one allele in both mates


def test_mates_disagreeing_get_both_alleles(tmp_path):
    sp, ref, alt = sites([130])
    s2 = GENOME[120:130] + "ACGT"[alt[0]] + GENOME[131:170]  # mate 2 shows ALT, mate 1 REF
    ch = chunk_of(tmp_path, _pair("p", 100, 120, s2=s2))
    units, fq = versions(tmp_path, ch, sp, ref, alt)
    assert units["n_versions"].tolist() == [2]  # all-REF and all-ALT: neither is what was read
    got = {(s1[30], revcomp(fq[2][n])[10]) for n, s1 in fq[1].items()}
    assert got == {("ACGT"[ref[0]], "ACGT"[ref[0]]), ("ACGT"[alt[0]], "ACGT"[alt[0]])}


def test_numba_versions_equal_numpy_reference(tmp_path):
    """The fast kernel and the plain numpy implementation agree on random pairs."""
    from caveat.read_versions import versions_of

    rng = np.random.default_rng(5)
    for trial in range(15):
        p1 = int(rng.integers(100, 300))
        p2 = p1 + int(rng.integers(0, 80))
        sp, ref, alt = sites(sorted(set(rng.integers(p1, p2 + 50, int(rng.integers(1, 6))).tolist())))
        s1, s2 = list(GENOME[p1:p1 + 50]), list(GENOME[p2:p2 + 50])
        for k, p in enumerate(sp):  # random observed alleles (mates may disagree; some third bases)
            for s, base in ((s1, p1), (s2, p2)):
                if base <= p < base + 50:
                    s[p - base] = "ACGT"[int(rng.choice([ref[k], alt[k], (alt[k] + 1) % 4], p=[.45, .45, .1]))]
        ch = chunk_of(tmp_path, _pair("p", p1, p2, "".join(s1), "".join(s2)))
        units, fq = versions(tmp_path, ch, sp, ref, alt)
        got = {(fq[1][n], revcomp(fq[2][n])) for n in fq[1]}
        seqs, sites_m, qpos_m = [], [], []
        for m in range(2):
            _, _, seq, _ = br.record_parts(ch.buf, int(ch.offs[m]))
            inside = (sp >= ch.pos[m]) & (sp < ch.end[m])
            seqs.append(seq)
            sites_m.append(np.flatnonzero(inside))
            qpos_m.append(sp[inside] - ch.pos[m])
        vers, _ = versions_of(seqs, sites_m, qpos_m, ref, alt)
        acgt = np.array(list("ACGTN"))
        want = {("".join(acgt[a]), "".join(acgt[b])) for a, b in zip(*vers)}
        assert got == want, trial
        assert units["n_versions"].iloc[0] == len(want)


# ----------------------------------------------------------------------------- same-location rule

def _remapped_sam(tmp, recs):
    header = pysam.AlignmentHeader.from_dict({"HD": {"VN": "1.6"}, "SQ": [{"SN": "chr1", "LN": len(GENOME)}]})
    sam = tmp / "remapped.sam"
    with pysam.AlignmentFile(str(sam), "w", header=header) as f:
        for r in recs:
            f.write(_read(header, **r))
    return sam


@pytest.mark.parametrize("case,fate", [("same", 0), ("swapped", 0), ("moved", 3), ("cigar", 3),
                                       ("low_mapq", 2), ("missing", 1)])
def test_same_location_rule(tmp_path, case, fate):
    ch = chunk_of(tmp_path, _pair("p", 100, 160))
    sp, ref, alt = sites([110])
    units, fq = versions(tmp_path, ch, sp, ref, alt)
    assert units["n_versions"].tolist() == [1]
    a, b = _pair("0_0_0", 100, 160)
    if case == "swapped":  # mates may come back swapped
        a, b = dict(b, flag=a["flag"]), dict(a, flag=b["flag"])
    elif case == "moved":  # the swapped version maps elsewhere
        a, b = dict(a, pos=700, mpos=760), dict(b, pos=760, mpos=700)
    elif case == "cigar":
        a = dict(a, cigar="20M1D30M", seq=GENOME[100:120] + GENOME[121:151])
    elif case == "low_mapq":
        a = dict(a, mapq=3)
    recs = [] if case == "missing" else [a, b]
    sam = _remapped_sam(tmp_path, recs)
    out = wr.check_remapped(sam, {0: units}, 10, ["chr1"])
    assert out[0].tolist() == [fate]


# ----------------------------------------------------------------------------- classification, dedup

def test_classify_drops_with_reasons(tmp_path):
    reads = (_pair("ok", 100, 300) + _pair("sec", 100, 300, flag_extra=br.SECONDARY)
             + _pair("qc", 110, 300, flag_extra=br.QCFAIL) + _pair("lowq", 120, 300, mapq=3)
             + [dict(name="lone", pos=130, cigar="50M", seq=GENOME[130:180],
                     flag=br.PAIRED | br.PROPER | br.READ1 | br.MREVERSE, mpos=1500)]
             + [dict(name="improper", pos=140, cigar="50M", seq=GENOME[140:190], flag=br.PAIRED | br.READ1, mpos=900),
                dict(name="single", pos=150, cigar="50M", seq=GENOME[150:200])])
    ch = chunk_of(tmp_path, reads)
    order = np.argsort(ch.pos, kind="stable")
    ch = wr.take(ch, order)
    sp, _, _ = sites([305])
    nsnp = br.count_snps_in_blocks(ch.buf, ch.offs, ch.pos, ch.end, sp)
    dec = np.full(len(ch), wr.PENDING, np.uint8)
    names = [br.record_parts(ch.buf, int(o))[0] for o in ch.offs]
    pend = wr.classify(ch, dec.copy(), nsnp, np.zeros(len(ch), bool), 10, final=False)
    assert pend[names.index("lone")] == wr.PENDING  # its mate may still come
    got = wr.classify(ch, dec.copy(), nsnp, np.zeros(len(ch), bool), 10, final=True)
    by = {}
    for n, d in zip(names, got):
        by.setdefault(n, set()).add(int(d))
    assert by["ok"] == {wr.REMAP}  # mate 2 covers the SNP: the pair goes to remap together
    assert by["sec"] == {wr.R["secondary"]} and by["qc"] == {wr.R["qc_fail"]}
    assert by["lowq"] == {wr.R["low_mapq"]} and by["lone"] == {wr.R["mate_missing"]}
    assert by["improper"] == {wr.R["improper_pair"]} and by["single"] == {wr.KEEP}


def _pair_swapped(name, p1, p2):
    """A pair over the same ends as ``_pair(name, p1, p2)`` with read 1 and read 2 swapped
    (read 2 forward at p1, read 1 reverse at p2)."""
    f_lo = br.PAIRED | br.PROPER | br.READ2 | br.MREVERSE
    f_hi = br.PAIRED | br.PROPER | br.READ1 | br.REVERSE
    return [dict(name=name, pos=p1, cigar="50M", seq=GENOME[p1:p1 + 50], flag=f_lo, mpos=p2),
            dict(name=name, pos=p2, cigar="50M", seq=GENOME[p2:p2 + 50], flag=f_hi, mpos=p1)]


def test_dedup_keeps_one_pair_per_position_and_is_seeded(tmp_path):
    reads = []
    for i in range(5):  # five duplicates of one fragment, two of them with R1/R2 swapped
        reads += _pair_swapped(f"dup{i}", 100, 200) if i in (1, 3) else _pair(f"dup{i}", 100, 200)
    reads += _pair("other", 100, 210)  # same start, other mate start: not a duplicate
    ch = chunk_of(tmp_path, reads)
    ch = wr.take(ch, np.argsort(ch.pos, kind="stable"))
    chosen = set()
    for seed in range(12):
        c = br.make_chunk(ch.buf, ch.offs, seed)
        keep = wr._dedup_keep(c)
        names = [br.record_parts(c.buf, int(o))[0] for o in c.offs[keep]]
        assert sorted(names).count("other") == 2
        dups = [n for n in names if n.startswith("dup")]
        assert len(dups) == 2 and dups[0] == dups[1]  # both mates of one pair
        chosen.add(dups[0])
    assert len(chosen) > 1  # the choice is a lottery, not always the first
    assert chosen & {"dup1", "dup3"} and chosen - {"dup1", "dup3"}  # swapped ones take part in it


# ----------------------------------------------------------------------------- end to end

@pytest.fixture(scope="module")
def study(tmp_path_factory):
    return build_study(tmp_path_factory.mktemp("wasp_study"))


@pytest.fixture(scope="module")
def filtered(study, tmp_path_factory):
    out = tmp_path_factory.mktemp("wasp_out")
    snps, indels, _ = read_het_sites(study["vcf"], ["D1"])
    stats = wr.wasp_filter(study["bam"], snps, indels, out / "s.bam", out / "s.stats.json",
                           aligner_index=study["index"], aligner_args="-X 1000", seed=1, threads=2)
    return out, snps, stats


def _ref_fraction(counts: pd.DataFrame, mask) -> float:
    c = counts[mask]
    return c["ref_count"].sum() / (c["ref_count"].sum() + c["alt_count"].sum())


def test_filter_removes_planted_mapping_bias(study, filtered):
    out, snps, _ = filtered
    lo, hi = study["dup"]
    before = count_sample(study["bam"], snps)
    after = count_sample(out / "s.bam", snps)
    dup = (before["chrom"] == "chrA") & (before["pos"] >= lo) & (before["pos"] < hi)
    assert _ref_fraction(before, dup) > 0.65  # real reference bias from the paralog carrying ALT
    assert abs(_ref_fraction(after, dup) - 0.5) < 0.06
    assert abs(_ref_fraction(after, ~dup) - 0.5) < 0.03


def test_stats_add_up_and_outputs_valid(filtered):
    out, _, st = filtered
    assert json.loads((out / "s.stats.json").read_text()) == {**st}
    drops1 = sum(st["dropped_" + r] for r in wr.DROP_REASONS)
    drops2 = sum(st["dropped_" + r] for r in wr.REMAP_REASONS)
    assert st["reads_in"] == st["kept_without_remap"] + st["sent_to_remap"] + drops1
    assert st["sent_to_remap"] == st["kept_after_remap"] + drops2
    assert st["reads_out"] == st["kept_without_remap"] + st["kept_after_remap"] - st["duplicates_removed"]
    assert st["dropped_het_indel"] > 0 and st["versions_generated"] > 0 and st["duplicates_removed"] >= 500
    with pysam.AlignmentFile(str(out / "s.bam")) as f:
        assert f.check_index()
        reads = list(f.fetch(until_eof=True))
    assert len(reads) == st["reads_out"]
    pos = [r.reference_start for r in reads if r.reference_id == 0]
    assert pos == sorted(pos)
    by_name = pd.Series([r.query_name for r in reads]).value_counts()
    assert (by_name == 2).all()  # pairs stay whole
    key = {(r.reference_start, r.next_reference_start, r.is_reverse, r.is_read1) for r in reads}
    assert len(key) == len(reads)  # no duplicate left


def test_deterministic_and_cli_matches(study, filtered, tmp_path):
    out, _, st = filtered
    rc = wr.main(["--bam", str(study["bam"]), "--sample", "s", "--donor", "D1", "--vcf", str(study["vcf"]),
                  "--fasta", str(study["fasta"]), "--aligner-index", study["index"], "--aligner-args", "-X 1000",
                  "--seed", "1", "--out-bam", str(tmp_path / "c.bam"), "--out-stats", str(tmp_path / "c.json"),
                  "--out-het-snps", str(tmp_path / "h.parquet")])
    assert rc == 0
    assert (tmp_path / "c.bam").read_bytes() == (out / "s.bam").read_bytes()
    assert json.loads((tmp_path / "c.json").read_text())["reads_out"] == st["reads_out"]


def test_bwa_mem_remapping(study, tmp_path):
    if shutil.which("bwa") is None:
        pytest.skip("bwa not installed")
    idx = tmp_path / "bwa_genome"
    subprocess.run(["bwa", "index", "-p", str(idx), str(study["fasta"])], check=True, capture_output=True)
    fq1, fq2 = study["bam"].parent / "r1.fq", study["bam"].parent / "r2.fq"
    sam = tmp_path / "bwa.sam"
    with open(sam, "w") as f:
        subprocess.run(["bwa", "mem", "-t", "1", str(idx), str(fq1), str(fq2)], stdout=f, check=True,
                       stderr=subprocess.DEVNULL)
    bam = tmp_path / "bwa.bam"
    pysam.sort("-o", str(bam), str(sam))
    pysam.index(str(bam))
    snps, indels, _ = read_het_sites(study["vcf"], ["D1"])
    st = wr.wasp_filter(bam, snps, indels, tmp_path / "o.bam", tmp_path / "o.json", aligner="bwa",
                        aligner_index=idx, aligner_args="", seed=1)
    assert st["versions_generated"] > 0
    assert st["kept_after_remap"] > 0.8 * st["sent_to_remap"]
    lo, hi = study["dup"]
    after = count_sample(tmp_path / "o.bam", snps)
    dup = (after["chrom"] == "chrA") & (after["pos"] >= lo) & (after["pos"] < hi)
    assert abs(_ref_fraction(after, dup) - 0.5) < 0.08


# ----------------------------------------------------------------------------- bad input

def _no_outputs(d: Path):
    return not [p for p in d.rglob("*") if p.suffix in (".bam", ".json", ".bai") or p.name.startswith(".tmp")]


def _run(study, out, **kw):
    snps, indels, _ = read_het_sites(study["vcf"], ["D1"])
    args = dict(aligner_index=study["index"], aligner_args="-X 1000")
    args.update(kw)
    bam = args.pop("bam", study["bam"])
    snps = args.pop("snps", snps)
    return wr.wasp_filter(bam, snps, indels, out / "x.bam", out / "x.json", **args)


def test_error_bam_without_index(study, tmp_path):
    bam = tmp_path / "noidx.bam"
    shutil.copy(study["bam"], bam)
    out = tmp_path / "out"
    with pytest.raises(InputError, match="no index") as e:
        _run(study, out, bam=bam)
    assert "noidx.bam" in str(e.value) and "samtools index" in str(e.value)
    assert _no_outputs(out) if out.exists() else True


def test_error_unsorted_bam(study, tmp_path):
    bam = tmp_path / "byname.bam"
    pysam.sort("-n", "-o", str(bam), str(study["bam"]))
    with pytest.raises(InputError, match="not coordinate-sorted") as e:
        _run(study, tmp_path / "out", bam=bam)
    assert "samtools sort" in str(e.value)


def test_error_contig_mismatch(study, tmp_path):
    snps, _, _ = read_het_sites(study["vcf"], ["D1"])
    snps = snps.assign(chrom=snps["chrom"].str.replace("chr", ""))
    with pytest.raises(InputError, match="contig") as e:
        _run(study, tmp_path / "out", snps=snps)
    assert "sample.bam" in str(e.value) and "contig_map" in str(e.value)


def test_error_fasta_missing_contig(study, tmp_path):
    fa = tmp_path / "short.fa"
    write_fasta(fa, {"chrA": study["genome"]["chrA"]})
    with pytest.raises(InputError, match="not in") as e:
        _run(study, tmp_path / "out", fasta=fa)
    assert "chrB" in str(e.value)
    assert _no_outputs(tmp_path / "out") if (tmp_path / "out").exists() else True


def test_error_aligner_index_missing(study, tmp_path):
    with pytest.raises(InputError, match="index not found") as e:
        _run(study, tmp_path / "out", aligner_index=tmp_path / "nope")
    assert "aligner_index" in str(e.value)


def test_error_donor_missing_or_without_sites(study, tmp_path):
    base = ["--bam", str(study["bam"]), "--sample", "s", "--aligner-index", study["index"],
            "--out-bam", str(tmp_path / "o.bam"), "--out-stats", str(tmp_path / "o.json")]
    with pytest.raises(InputError, match="'D9' is not a sample"):
        wr.main(base + ["--donor", "D9", "--vcf", str(study["vcf"])])
    vcf = write_vcf(tmp_path / "hom.vcf.gz", ["D5"], [("chrA", 11, study["genome"]["chrA"][10], "A"
                                                        if study["genome"]["chrA"][10] != "A" else "C", "PASS", ["0/0"])],
                    {"chrA": 12000, "chrB": 6000})
    with pytest.raises(InputError, match="no heterozygous"):
        wr.main(base + ["--donor", "D5", "--vcf", str(vcf)])
    assert _no_outputs(tmp_path)


def test_contig_scatter_gathers_to_the_whole_byte_for_byte(study, filtered, tmp_path):
    """The Nextflow path: het sites once, the filter per contig, --gather → the whole run's outputs."""
    out, _, st = filtered
    base = ["--aligner-index", study["index"], "--aligner-args", "-X 1000", "--seed", "1", "--sample", "s"]
    snps, ind = tmp_path / "het_snps.parquet", tmp_path / "het_indels.parquet"
    assert wr.main(["--vcf", str(study["vcf"]), "--fasta", str(study["fasta"]), "--donor", "D1",
                    "--out-het-snps", str(snps), "--out-het-indels", str(ind)]) == 0
    want, want_ind, _ = read_het_sites(study["vcf"], ["D1"], contigs=["chrA", "chrB"])
    pd.testing.assert_frame_equal(pd.read_parquet(snps), want)
    assert len(pd.read_parquet(ind)) == len(want_ind) > 0
    _, names, _ = br.read_header(study["bam"])
    parts, stats = [], []
    for c in names:
        parts.append(tmp_path / f"s.{c}.bam")
        stats.append(tmp_path / f"s.{c}.stats.json")
        assert wr.main(["--bam", str(study["bam"]), "--donor", "D1", "--het-snps", str(snps), "--het-indels", str(ind),
                        "--chrom", c, "--out-bam", str(parts[-1]), "--out-stats", str(stats[-1]), *base]) == 0
    # read from the VCF, a one-contig run writes that contig's het SNPs only
    assert wr.main(["--bam", str(study["bam"]), "--donor", "D1", "--vcf", str(study["vcf"]), "--chrom", "chrA",
                    "--out-bam", str(tmp_path / "v.bam"), "--out-stats", str(tmp_path / "v.json"),
                    "--out-het-snps", str(tmp_path / "v.parquet"), *base]) == 0
    assert (tmp_path / "v.bam").read_bytes() == parts[names.index("chrA")].read_bytes()
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "v.parquet"),
                                  want[want["chrom"] == "chrA"].reset_index(drop=True))
    part_out = [json.loads(x.read_text())["reads_out"] for x in stats]
    assert all(n > 0 for n in part_out)  # both contigs hold kept reads: a real join
    rc = wr.main(["--gather", *map(str, parts[::-1]), "--part-stats", *map(str, stats), "--sample", "s",
                  "--out-bam", str(tmp_path / "g.bam"), "--out-stats", str(tmp_path / "g.json")])
    assert rc == 0
    assert (tmp_path / "g.bam").read_bytes() == (out / "s.bam").read_bytes()
    assert json.loads((tmp_path / "g.json").read_text()) == {**st, "sample": "s"}  # the fixture ran unnamed
    with pysam.AlignmentFile(str(tmp_path / "g.bam")) as f:
        assert f.check_index()
    with pytest.raises(InputError, match="second part"):
        wr.gather_parts([parts[0], parts[0]], stats[:1] * 2, tmp_path / "x.bam", tmp_path / "x.json", "s")
    with pytest.raises(InputError, match="stats file"):
        wr.gather_parts(parts, stats[:1], tmp_path / "x.bam", tmp_path / "x.json", "s")
    assert not (tmp_path / "x.bam").exists() and not (tmp_path / "x.json").exists()
    with pytest.raises(SystemExit):
        wr.main(["--gather", str(parts[0]), "--sample", "s", "--out-bam", str(tmp_path / "x.bam")])


def test_summary_is_one_function_in_natural_sample_order(tmp_path):
    """``--summarize`` and the local step share :func:`wr.run_summary`: samples in natural order
    (S2 before S10) whatever order the stats came in; a repeated or unnamed sample is refused."""
    figs = dict.fromkeys(wr.SUMMARY_FIGURES, 1)
    stats = []
    for i, name in enumerate(["S10", "S2", "S1"]):
        stats.append(tmp_path / f"{name}.stats.json")
        stats[-1].write_text(json.dumps({"sample": name, **figs, "reads_out": i, "dropped_low_mapq": 3}))
    sites = tmp_path / "sites.json"
    sites.write_text(json.dumps({"het_snps": 5, "het_indels": 1, "vcf_skipped": {"multiallelic": 2}}))
    outs = []
    for order in (stats, stats[::-1]):
        outs.append(tmp_path / f"summary{len(outs)}.json")
        assert wr.main(["--summarize", "--part-stats", *map(str, order), "--sites-summary", str(sites),
                        "--out-summary", str(outs[-1])]) == 0
    assert outs[0].read_bytes() == outs[1].read_bytes()
    got = json.loads(outs[0].read_text())   # write_json sorts keys: the file does not depend on the order either
    assert got == {"samples": 3, "het_snps": 5, "het_indels": 1, "vcf_skipped": {"multiallelic": 2},
                   "per_sample": {"S1": {**figs, "reads_out": 2}, "S2": {**figs, "reads_out": 1},
                                  "S10": {**figs, "reads_out": 0}}}
    in_memory = wr.run_summary([(p, json.loads(p.read_text())) for p in stats], json.loads(sites.read_text()), sites)
    assert in_memory == got and list(in_memory["per_sample"]) == ["S1", "S2", "S10"]
    with pytest.raises(InputError, match="given twice") as e:
        wr.summarize([stats[0], stats[0]], sites, tmp_path / "x.json")
    assert str(stats[0]) in str(e.value)
    (tmp_path / "anon.json").write_text(json.dumps(figs))
    with pytest.raises(InputError, match="without a sample name"):
        wr.summarize([tmp_path / "anon.json"], sites, tmp_path / "x.json")
    assert not (tmp_path / "x.json").exists()


def test_parser_follows_the_step_cli_rule():
    """Every param is ``--`` + its name (old spellings still accepted) with the declared default."""
    from caveat.step_cli import params_from_args

    ap = wr.build_parser()
    assert params_from_args(ap.parse_args([]), wr.PARAMS) == wr.PARAMS
    a = ap.parse_args(["--max-snps-per-read", "3", "--wasp-max-versions", "9", "--no-vcf-pass-only",
                       "--aligner", "bwa", "--aligner-args=-X 500"])
    assert params_from_args(a, wr.PARAMS) == {**wr.PARAMS, "wasp_max_snps_per_read": 3, "wasp_max_versions": 9,
                                              "vcf_pass_only": False, "aligner": "bwa", "aligner_args": "-X 500"}
    with pytest.raises(SystemExit):
        ap.parse_args(["--aligner", "star"])


def test_nextflow_modes_rebuild_the_local_engine_outputs(tiny_sim, tiny_wasp, tmp_path):
    """het-sites mode + --summarize on the tiny study (and count_alleles --summarize) give the
    local engine's het_snps.parquet, het_indels.parquet, wasp_remap.summary.json and
    count_alleles.summary.json byte for byte."""
    sheet = pd.read_csv(tiny_sim / "samplesheet.csv")
    donors = list(dict.fromkeys(sheet["donor"]))[::-1]  # the order does not matter
    assert wr.main(["--vcf", str(tiny_sim / "genotypes.vcf.gz"), "--fasta", str(tiny_sim / "genome.fa"),
                    "--donor", *donors, "--out-het-snps", str(tmp_path / "het_snps.parquet"),
                    "--out-het-indels", str(tmp_path / "het_indels.parquet"),
                    "--out-summary", str(tmp_path / "sites.json")]) == 0
    for name in ("het_snps.parquet", "het_indels.parquet"):
        assert (tmp_path / name).read_bytes() == (tiny_wasp / name).read_bytes(), name
    stats = sorted((tiny_wasp / "wasp").glob("*.stats.json"))[::-1]  # the order does not matter
    assert len(stats) == len(sheet)
    assert wr.main(["--summarize", "--part-stats", *map(str, stats), "--sites-summary", str(tmp_path / "sites.json"),
                    "--out-summary", str(tmp_path / "wasp_remap.summary.json")]) == 0
    assert (tmp_path / "wasp_remap.summary.json").read_bytes() == (tiny_wasp / "wasp_remap.summary.json").read_bytes()
    from caveat import count_alleles

    counts = sorted((tiny_wasp / "counts").glob("*.parquet"))
    assert count_alleles.main(["--summarize", *map(str, counts), "--out", str(tmp_path / "count_alleles.summary.json")]) == 0
    assert (tmp_path / "count_alleles.summary.json").read_bytes() == \
        (tiny_wasp / "count_alleles.summary.json").read_bytes()


# ----------------------------------------------------------------------------- simulated study

@pytest.fixture(scope="module")
def tiny_wasp(tiny_sim, tmp_path_factory):
    """wasp_remap + count_alleles (only) on the tiny simulated study, by the local engine."""
    from caveat import count_alleles
    from caveat.engine import run_pipeline
    from caveat.params import load_params
    from caveat.pipeline import pipeline_steps

    out = tmp_path_factory.mktemp("tiny_wasp")
    steps = [wr.STEP, count_alleles.STEP]
    # validated against every step: the preset also sets later steps' params (model size …)
    params = load_params(tiny_sim / "params.yaml", {"outdir": str(out)}, pipeline_steps())
    run_pipeline(steps, params, out, threads=2)
    return out


def test_tiny_sim_bias_removed_and_stats(tiny_sim, tiny_wasp):
    tiny_run = tiny_wasp
    truth = pd.read_parquet(tiny_sim / "truth" / "snps.parquet")
    truth = truth[~truth["is_indel"]].drop_duplicates(["donor", "variant_id", "cell_type"])
    sheet = pd.read_csv(tiny_sim / "samplesheet.csv")
    snps = pd.read_parquet(tiny_run / "het_snps.parquet")
    before, after = [], []
    for row in sheet.itertuples():
        s = snps[snps["donor"] == row.donor]
        b = count_sample(tiny_sim / row.bam, s).assign(donor=row.donor, cell_type=row.cell_type)
        before.append(b)
        after.append(pd.read_parquet(tiny_run / "counts" / f"{row.sample}.parquet"))
        st = json.loads((tiny_run / "wasp" / f"{row.sample}.stats.json").read_text())
        assert st["reads_out"] > 0.5 * st["reads_in"]
    frac = {}
    for name, d in (("before", before), ("after", after)):
        m = pd.concat(d).merge(truth, on=["donor", "variant_id", "cell_type"])
        m = m[(m["expected_ref_fraction"] == 0.5) & m["in_duplication"]]
        frac[name] = m["ref_count"].sum() / (m["ref_count"].sum() + m["alt_count"].sum())
    assert frac["before"] > 0.6
    assert abs(frac["after"] - 0.5) < 0.06


@pytest.mark.demo
def test_demo_bias_within_001(demo_sim, demo_run):
    truth = pd.read_parquet(demo_sim / "truth" / "snps.parquet")
    truth = truth[~truth["is_indel"]].drop_duplicates(["donor", "variant_id", "cell_type"])
    sheet = pd.read_csv(demo_sim / "samplesheet.csv")
    snps = pd.read_parquet(demo_run / "het_snps.parquet")
    before = pd.concat([count_sample(demo_sim / r.bam, snps[snps["donor"] == r.donor], threads=2)
                        .assign(donor=r.donor, cell_type=r.cell_type) for r in sheet.itertuples()])
    after = pd.concat([pd.read_parquet(demo_run / "counts" / f"{r.sample}.parquet") for r in sheet.itertuples()])
    frac, n = {}, {}
    for name, d in (("before", before), ("after", after)):
        m = d.merge(truth, on=["donor", "variant_id", "cell_type"])
        m = m[(m["expected_ref_fraction"] == 0.5) & m["in_duplication"]]
        n[name] = m["ref_count"].sum() + m["alt_count"].sum()
        frac[name] = m["ref_count"].sum() / n[name]
    assert frac["before"] > 0.6  # the bias is there: bypassing the filter fails below
    # enough reads that ±0.01 is a measurement, not a coin toss: binomial SE ≤ 0.004
    # (the demo plants denser het sites in duplication sources for this)
    assert n["after"] >= 15_000
    assert abs(frac["after"] - 0.5) < 0.01


def test_upstream_duplicate_flags_are_replaced_by_our_dedup(study, filtered, tmp_path):
    """Picard-style flags (which may favour an allele) are ignored and cleared; our dedup decides."""
    _, snps, st = filtered
    bam = tmp_path / "marked.bam"
    with pysam.AlignmentFile(str(study["bam"])) as fi, pysam.AlignmentFile(str(bam), "wb", template=fi) as fo:
        for r in fi.fetch(until_eof=True):
            r.flag |= br.DUP
            fo.write(r)
    pysam.index(str(bam))
    indels = read_het_sites(study["vcf"], ["D1"])[1]
    st2 = wr.wasp_filter(bam, snps, indels, tmp_path / "o.bam", tmp_path / "o.json",
                         aligner_index=study["index"], aligner_args="-X 1000", seed=1)
    assert st2["reads_out"] == st["reads_out"] == st2["input_duplicate_flags_cleared"]
    with pysam.AlignmentFile(str(tmp_path / "o.bam")) as f:
        assert not any(r.is_duplicate for r in f.fetch(until_eof=True))


def test_single_end_reads(study, tmp_path):
    """Single-end data: versions remapped with -U, one record per unit."""
    sam = tmp_path / "se.sam"
    subprocess.run(["bowtie2", "-p", "1", "-x", study["index"], "-U", str(study["bam"].parent / "r1.fq"),
                    "-S", str(sam)], check=True, capture_output=True)
    bam = tmp_path / "se.bam"
    pysam.sort("-o", str(bam), str(sam))
    pysam.index(str(bam))
    snps, indels, _ = read_het_sites(study["vcf"], ["D1"])
    st = wr.wasp_filter(bam, snps, indels, tmp_path / "o.bam", tmp_path / "o.json", aligner_index=study["index"],
                        aligner_args="", seed=1)
    drops = sum(st["dropped_" + r] for r in (*wr.DROP_REASONS, *wr.REMAP_REASONS))
    assert st["reads_in"] == st["kept_without_remap"] + st["kept_after_remap"] + drops
    assert st["versions_generated"] > 0 and st["kept_after_remap"] > 0.8 * st["sent_to_remap"]
    lo, hi = study["dup"]
    before, after = count_sample(bam, snps), count_sample(tmp_path / "o.bam", snps)
    dup = (before["chrom"] == "chrA") & (before["pos"] >= lo) & (before["pos"] < hi)
    assert _ref_fraction(before, dup) > 0.6 and abs(_ref_fraction(after, dup) - 0.5) < 0.08


# ----------------------------------------------------------------------------- hostile input, faults

def test_shell_metacharacters_in_paths_and_aligner_args_run_nothing(study, filtered, tmp_path, monkeypatch):
    """Outdir and index paths named like shell commands are plain paths (the same result as
    from plain paths); aligner_args with a command in it is refused before any work."""
    monkeypatch.chdir(tmp_path)  # where a shell would have run `touch INJ*`
    weird = tmp_path / "$(touch INJ1)" / "o;touch INJ2;`touch INJ3`"
    (weird / "index").mkdir(parents=True)
    for f in Path(study["index"]).parent.glob("genome.*bt2"):
        shutil.copy(f, weird / "index" / f.name)
    snps, indels, _ = read_het_sites(study["vcf"], ["D1"])
    st = wr.wasp_filter(study["bam"], snps, indels, weird / "out" / "s.bam", weird / "out" / "s.stats.json",
                        aligner_index=weird / "index" / "genome", aligner_args="-X 1000", seed=1, threads=2)
    assert st == filtered[2]
    with pytest.raises(InputError, match="aligner_args"):
        _run(study, tmp_path / "o2", aligner_args="-X 1000 --very-sensitive; touch INJ4;")
    assert _no_outputs(tmp_path / "o2")
    assert [p for p in tmp_path.rglob("*") if p.name.startswith("INJ")] == []


def test_work_folders_are_removed_after_a_failure_and_after_a_kill(study, tmp_path):
    """A failing run removes its work folder; one left by a SIGKILLed run (which no
    `finally` survives) is removed when the same output is made next time."""
    out = tmp_path / "out"
    with pytest.raises(InputError, match="bowtie2 failed"):
        _run(study, out, aligner_args="--no-such-option")
    assert not list(out.glob(".tmp-wasp-*"))
    stale = out / ".tmp-wasp-x.k1ll3d_x"
    stale.mkdir()
    (stale / "all.r1.fq").write_text("@left\nACGT\n+\nIIII\n")
    other = out / ".tmp-wasp-x.chr1.k1ll3d_x"  # the work folder of another output (x.chr1.bam): not ours
    other.mkdir()
    _run(study, out)
    assert (out / "x.bam").exists() and not stale.exists() and other.exists()
    assert sorted(p.name for p in out.glob(".tmp-wasp-*")) == [other.name]
