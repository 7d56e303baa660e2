"""Small hand-built study for the WASP / counting tests: a random genome with a
segmental duplication, one donor's phased het SNPs (and an indel), paired-end
reads drawn 50:50 from the two haplotypes, aligned with bowtie2."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pysam

ACGT = np.array(list("ACGT"))


def write_fasta(path: Path, contigs: dict[str, str]) -> None:
    with open(path, "w") as f:
        for name, seq in contigs.items():
            f.write(f">{name}\n")
            for i in range(0, len(seq), 60):
                f.write(seq[i:i + 60] + "\n")
    pysam.faidx(str(path))


def write_vcf(path: Path, donors: list[str], records: list[tuple], contigs: dict[str, int]) -> Path:
    """records: (chrom, pos1, ref, alt, filter, [gt per donor])."""
    lines = ["##fileformat=VCFv4.2", '##FILTER=<ID=PASS,Description="All filters passed">',
             '##FILTER=<ID=LowQual,Description="low">', '##FORMAT=<ID=GT,Number=1,Type=String,Description="GT">']
    lines += [f"##contig=<ID={c},length={n}>" for c, n in contigs.items()]
    lines.append("#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\t" + "\t".join(donors))
    for chrom, pos1, ref, alt, filt, gts in sorted(records, key=lambda r: (list(contigs).index(r[0]), r[1])):
        lines.append(f"{chrom}\t{pos1}\t.\t{ref}\t{alt}\t50\t{filt}\t.\tGT\t" + "\t".join(gts))
    plain = path.with_suffix("")
    plain.write_text("\n".join(lines) + "\n")
    pysam.tabix_compress(str(plain), str(path), force=True)
    pysam.tabix_index(str(path), preset="vcf", force=True)
    plain.unlink()
    return path


def align_pairs(tmp: Path, fasta: Path, index: str, r1: list[tuple], r2: list[tuple], out: Path,
                args: str = "-X 1000") -> Path:
    """Align (name, seq, qual) pairs with bowtie2 → sorted, indexed BAM."""
    fq1, fq2 = tmp / "r1.fq", tmp / "r2.fq"
    for fq, reads in ((fq1, r1), (fq2, r2)):
        with open(fq, "w") as f:
            for n, s, q in reads:
                f.write(f"@{n}\n{s}\n+\n{q}\n")
    sam = tmp / "aln.sam"
    subprocess.run(["bowtie2", "-p", "1", "--reorder", "-x", index, *args.split(), "-1", str(fq1), "-2", str(fq2),
                    "-S", str(sam)], check=True, capture_output=True)
    pysam.sort("-o", str(out), str(sam))
    pysam.index(str(out))
    return out


def revcomp(s: str) -> str:
    return s.translate(str.maketrans("ACGTN", "TGCAN"))[::-1]


def build_study(tmp: Path, seed: int = 1, n_frags: int = 6000, read_len: int = 50) -> dict:
    """Genome chrA (with a duplicated segment on chrB), het SNPs, reads, BAM.

    The duplicate copy on chrB carries the ALT allele of the SNPs inside the
    duplicated segment on chrA, so ALT reads there map ambiguously: real
    reference mapping bias that the WASP filter must remove.
    """
    tmp.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    a = "".join(rng.choice(ACGT, 12000))
    b = "".join(rng.choice(ACGT, 6000))
    dup_lo, dup_hi = 4000, 5500
    snp_pos = np.arange(300, 11700, 97) + rng.integers(-20, 20, len(np.arange(300, 11700, 97)))
    alts = {}
    for p in snp_pos:
        ref = a[p]
        alts[int(p)] = str(rng.choice([c for c in "ACGT" if c != ref]))
    # duplicate on chrB: the chrA segment with its SNPs' ALT alleles, plus a few fixed differences
    seg = list(a[dup_lo:dup_hi])
    for p, al in alts.items():
        if dup_lo <= p < dup_hi:
            seg[p - dup_lo] = al
    for p in range(37, len(seg), 301):
        seg[p] = "ACGT"[("ACGT".index(seg[p]) + 1) % 4]
    b = b[:2000] + "".join(seg) + b[2000 + len(seg):]
    contigs = {"chrA": a, "chrB": b}
    fasta = tmp / "genome.fa"
    write_fasta(fasta, contigs)
    index = str(tmp / "genome")
    subprocess.run(["bowtie2-build", "-q", str(fasta), index], check=True, capture_output=True)
    hap1 = list(a)
    hap2 = list(a)
    phase = rng.integers(0, 2, len(snp_pos))
    for p, ph in zip(snp_pos, phase):
        (hap2 if ph == 0 else hap1)[p] = alts[int(p)]
    haps = ["".join(hap1), "".join(hap2)]
    r1, r2 = [], []
    for i in range(n_frags):
        h = int(rng.integers(0, 2))
        flen = int(rng.integers(120, 400))
        start = int(rng.integers(0, len(a) - flen))
        frag = haps[h][start:start + flen]
        s1, s2 = frag[:read_len], revcomp(frag[-read_len:])
        s1, s2 = _errors(s1, rng), _errors(s2, rng)
        q = "I" * read_len
        if rng.random() < 0.5:
            s1, s2 = s2, s1
        r1.append((f"f{i}_h{h}", s1, q))
        r2.append((f"f{i}_h{h}", s2, q))
    # PCR duplicates: copies of some fragments (same positions, maybe other haplotype names)
    for j in range(300):
        k = int(rng.integers(0, n_frags))
        r1.append((f"d{j}_{r1[k][0]}", r1[k][1], r1[k][2]))
        r2.append((f"d{j}_{r2[k][0]}", r2[k][1], r2[k][2]))
    bam = align_pairs(tmp, fasta, index, r1, r2, tmp / "sample.bam")
    records = []
    gts = {0: "1|0", 1: "0|1"}
    for p, ph in zip(snp_pos, phase):
        records.append(("chrA", int(p) + 1, a[p], alts[int(p)], "PASS", [gts[int(ph)], "0/0"]))
    # a het indel, a multi-allelic, a filtered and a missing-genotype record
    records.append(("chrA", 9001, a[9000:9003], a[9000], "PASS", ["0/1", "0/0"]))
    records.append(("chrB", 101, b[100], ",".join(c for c in "ACGT" if c != b[100])[:3], "PASS", ["1/2", "0/1"]))
    records.append(("chrB", 201, b[200], "A" if b[200] != "A" else "C", "LowQual", ["0/1", "0/1"]))
    records.append(("chrB", 301, b[300], "A" if b[300] != "A" else "C", "PASS", ["./.", "0/1"]))
    vcf = write_vcf(tmp / "genotypes.vcf.gz", ["D1", "D2"], records, {c: len(s) for c, s in contigs.items()})
    return {"fasta": fasta, "index": index, "bam": bam, "vcf": vcf, "snp_pos": snp_pos, "alts": alts,
            "dup": (dup_lo, dup_hi), "genome": contigs}


def _errors(s: str, rng, rate: float = 0.002) -> str:
    s = list(s)
    for i in np.flatnonzero(rng.random(len(s)) < rate):
        s[i] = "ACGT"[("ACGT".index(s[i]) + 1) % 4]
    return "".join(s)
