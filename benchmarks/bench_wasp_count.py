#!/usr/bin/env python3
"""Benchmark: reads/s per core of the WASP filter's own work and of allele counting.

Usage::

    python benchmarks/bench_wasp_count.py [--demo DIR] [--pairs N] [--snp-every BP] [--work DIR]

With ``--demo`` (a ``caveat simulate --preset demo`` directory) it runs on the
demo BAMs; otherwise it writes a synthetic study: a random genome, one
donor's het SNPs every ``--snp-every`` bp, ``--pairs`` perfectly placed 2×50 bp
pairs from both haplotypes, written directly as BAM records.

"Filter's own work" is every phase except the aligner: decoding and
classifying records, making versions, checking the remapped versions,
merging, dedup, BAM compression and indexing (CPU of this process and of its
samtools children). Counting is compared with ``bcftools mpileup -a AD`` on
the same BAM and sites (no BAQ, no depth cap, same MAPQ/BQ filters).

BGZF integrity: the reader verifies every block (CRC32, ISIZE, header). The
figure printed is the cost of that verification over the input BAM's blocks,
times the two passes the filter makes over its input, as a share of the
filter's own CPU time (target: under 10 %).
"""

from __future__ import annotations

import argparse
import logging
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bin"))

from caveat import bam_records as br  # noqa: E402
from caveat.count_alleles import count_sample  # noqa: E402
from caveat.het_sites import read_het_sites  # noqa: E402
from caveat.log import setup_logging  # noqa: E402
from caveat.wasp_remap import wasp_filter  # noqa: E402

NT16 = np.zeros(256, np.uint8)
for _i, _c in enumerate("=ACMGRSVTWYHKDBN"):
    NT16[ord(_c)] = _i


def _cpu() -> float:
    c = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + c.ru_utime + c.ru_stime


def synthetic(work: Path, n_pairs: int, snp_every: int, seed: int = 0, read_len: int = 50,
              genome_len: int = 2_000_000) -> dict:
    """Random genome + het SNPs + a coordinate-sorted BAM of perfectly placed pairs."""
    import pysam

    work.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    g = rng.integers(0, 4, genome_len).astype(np.uint8)
    acgt = np.frombuffer(b"ACGT", np.uint8)
    fasta = work / "genome.fa"
    seq = acgt[g].tobytes().decode()
    fasta.write_text(">chr1\n" + "\n".join(seq[i:i + 60] for i in range(0, len(seq), 60)) + "\n")
    pysam.faidx(str(fasta))
    index = work / "genome"
    if not Path(str(index) + ".1.bt2").exists():
        subprocess.run(["bowtie2-build", "-q", "--threads", "2", str(fasta), str(index)], check=True)
    snp_pos = np.unique(rng.integers(100, genome_len - 100, genome_len // snp_every))
    alt = (g[snp_pos] + rng.integers(1, 4, len(snp_pos))) % 4
    hap = np.stack([g.copy(), g.copy()])
    which = rng.integers(0, 2, len(snp_pos))
    hap[which, snp_pos] = alt
    vcf = work / "genotypes.vcf"
    with open(vcf, "w") as f:
        f.write("##fileformat=VCFv4.2\n##FORMAT=<ID=GT,Number=1,Type=String,Description=\"GT\">\n")
        f.write(f"##contig=<ID=chr1,length={genome_len}>\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\tD1\n")
        for p, a, w in zip(snp_pos, alt, which):
            f.write(f"chr1\t{p + 1}\t.\t{'ACGT'[g[p]]}\t{'ACGT'[a]}\t50\tPASS\t.\tGT\t{'0|1' if w else '1|0'}\n")
    # pairs: fragment start, length 150–350; mate 1 forward at start, mate 2 reverse at end - L
    start = np.sort(rng.integers(0, genome_len - 400, n_pairs))
    flen = rng.integers(150, 350, n_pairs)
    h = rng.integers(0, 2, n_pairs)
    p1, p2 = start, start + flen - read_len
    recs = []
    for mate, pos, mpos, flag in ((1, p1, p2, 0x1 | 0x2 | 0x20 | 0x40), (2, p2, p1, 0x1 | 0x2 | 0x10 | 0x80)):
        idx = pos[:, None] + np.arange(read_len)[None, :]
        bases = hap[h[:, None], idx]                      # (n, L) codes
        recs.append((pos, mpos, flag, bases, np.where(mate == 1, flen, -flen)))
    name_len = 12  # "p" + 10 digits + NUL
    lrec = 32 + name_len + 4 + read_len // 2 + read_len
    dt = np.dtype([("bs", "<i4"), ("ref", "<i4"), ("pos", "<i4"), ("lrn", "u1"), ("mapq", "u1"), ("bin", "<u2"),
                   ("ncig", "<u2"), ("flag", "<u2"), ("lseq", "<i4"), ("nref", "<i4"), ("npos", "<i4"),
                   ("tlen", "<i4"), ("name", f"S{name_len}"), ("cig", "<u4"), ("seq", "u1", read_len // 2),
                   ("qual", "u1", read_len)])
    all_recs = []
    for k, (pos, mpos, flag, bases, tlen) in enumerate(recs):
        a = np.zeros(n_pairs, dt)
        a["bs"] = lrec
        a["pos"] = pos
        a["lrn"] = name_len
        a["mapq"] = 42
        a["bin"] = 4680
        a["ncig"] = 1
        a["flag"] = flag
        a["lseq"] = read_len
        a["npos"] = mpos
        a["tlen"] = tlen
        a["name"] = np.char.add(b"p", np.char.zfill(np.arange(n_pairs).astype("S10"), 10))
        a["cig"] = read_len << 4
        nt = NT16[acgt[bases]]
        a["seq"] = (nt[:, 0::2] << 4) | nt[:, 1::2]
        a["qual"] = 35
        all_recs.append(a)
    a = np.concatenate(all_recs)
    a = a[np.argsort(a["pos"], kind="stable")]
    bam = work / "sample.bam"
    text = f"@HD\tVN:1.6\tSO:coordinate\n@SQ\tSN:chr1\tLN:{genome_len}\n".encode()
    header = (b"BAM\x01" + np.int32(len(text)).tobytes() + text + np.int32(1).tobytes()
              + np.int32(5).tobytes() + b"chr1\0" + np.int32(genome_len).tobytes())
    w = br.BamWriter(bam, header)
    w.write(a.tobytes())
    w.close()
    pysam.index(str(bam))
    return {"bam": bam, "vcf": vcf, "fasta": fasta, "index": index, "args": "--very-sensitive -X 2000",
            "donor": "D1"}


def bench_filter(study: dict, out: Path) -> dict:
    snps, indels, _ = read_het_sites(study["vcf"], [study["donor"]])
    # warm-up on one contig: loads the numba kernels from their cache (once per process)
    first = str(snps["chrom"].iloc[0])
    wasp_filter(study["bam"], snps, indels, out / "warm.bam", out / "warm.json", aligner_index=study["index"],
                aligner_args=study["args"], seed=0, chroms=[first])
    timings: dict = {}
    stats = wasp_filter(study["bam"], snps, indels, out / "wasp.bam", out / "wasp.stats.json",
                        aligner_index=study["index"], aligner_args=study["args"], seed=0, threads=1,
                        timings=timings)
    own_cpu = sum(c for k, (w, c) in timings.items() if k != "aligner")
    own_wall = sum(w for k, (w, c) in timings.items() if k != "aligner")
    return {"reads_in": stats["reads_in"], "sent_to_remap": stats["sent_to_remap"],
            "versions": stats["versions_generated"], "own_cpu_s": own_cpu, "own_wall_s": own_wall,
            "aligner_wall_s": timings.get("aligner", (0, 0))[0],
            "phases": {k: (round(w, 2), round(c, 2)) for k, (w, c) in timings.items()},
            "reads_per_s_per_core": stats["reads_in"] / own_cpu, "snps": snps}


def _block_spans(data: bytes) -> list[tuple[int, int]]:
    spans, o = [], 0
    while o + 18 <= len(data):
        size = data[o + 16] + (data[o + 17] << 8) + 1
        spans.append((o, size))
        o += size
    return spans


def bench_crc(bam: Path, repeats: int = 15) -> dict:
    """CPU seconds for one pass over ``bam``'s BGZF blocks: inflate alone, inflate with every
    check (:func:`caveat.bam_records.inflate_block`), and the CRC32 alone (best of ``repeats``)."""
    data = Path(bam).read_bytes()
    spans = _block_spans(data)
    blocks = [br._inflate(data[o + 18:o + n - 8], wbits=-15) for o, n in spans]

    def best(fn) -> float:
        times = []
        for _ in range(repeats):
            t0 = time.process_time()
            fn()
            times.append(time.process_time() - t0)
        return min(times)

    inflate = best(lambda: [br._inflate(data[o + 18:o + n - 8], wbits=-15) for o, n in spans])
    checked = best(lambda: [br.inflate_block(data, o, n, bam, o) for o, n in spans])
    crc = best(lambda: [br._crc32(b) for b in blocks])
    return {"blocks": len(spans), "mbytes": sum(map(len, blocks)) / 1e6, "inflate_s": inflate,
            "checked_s": checked, "crc_s": crc}


def _verify_s(k: dict) -> float:
    """Seconds the checks add to one pass (at least the CRC32 alone: timing noise aside)."""
    return max(k["checked_s"] - k["inflate_s"], k["crc_s"])


def bench_count(bam: Path, snps: pd.DataFrame, fasta: Path, work: Path) -> dict:
    n = int(subprocess.run(["samtools", "view", "-c", str(bam)], capture_output=True, text=True).stdout)
    c0, t0 = _cpu(), time.perf_counter()
    counts = count_sample(bam, snps, min_mapq=10, min_bq=20)
    ours_cpu, ours_wall = _cpu() - c0, time.perf_counter() - t0
    targets = work / "targets.tsv"
    snps.assign(p1=snps["pos"] + 1)[["chrom", "p1"]].to_csv(targets, sep="\t", header=False, index=False)
    c0, t0 = _cpu(), time.perf_counter()
    subprocess.run(f"bcftools mpileup -f {fasta} -T {targets} -a AD -B -d 100000000 -q 10 -Q 20 -Ou {bam} "
                   f"> {work / 'mpileup.bcf'}", shell=True, check=True, stderr=subprocess.DEVNULL)
    bcf_cpu, bcf_wall = _cpu() - c0, time.perf_counter() - t0
    return {"reads": n, "sites": len(counts), "ours_cpu_s": ours_cpu, "ours_wall_s": ours_wall,
            "bcftools_cpu_s": bcf_cpu, "bcftools_wall_s": bcf_wall, "reads_per_s_per_core": n / ours_cpu,
            "bcftools_reads_per_s_per_core": n / bcf_cpu}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--demo", type=Path, help="a simulated demo study directory")
    ap.add_argument("--pairs", type=int, default=500_000)
    ap.add_argument("--snp-every", type=int, default=1000, help="mean bp between het SNPs (synthetic)")
    ap.add_argument("--work", type=Path, help="keep the intermediate files here (default: a temporary directory)")
    a = ap.parse_args()
    setup_logging(logging.WARNING)
    if a.work is None:
        with tempfile.TemporaryDirectory(prefix="bench_wasp_") as tmp:
            a.work = Path(tmp)
            run(a)
    else:
        a.work.mkdir(parents=True, exist_ok=True)
        run(a)


def run(a: argparse.Namespace) -> None:
    if a.demo:
        import yaml

        params = yaml.safe_load((a.demo / "params.yaml").read_text())
        sheet = pd.read_csv(a.demo / params.get("input", "samplesheet.csv"))
        row = sheet.iloc[0]
        study = {"bam": a.demo / row["bam"], "vcf": a.demo / params.get("vcf", "genotypes.vcf.gz"),
                 "fasta": a.demo / params.get("fasta", "genome.fa"),
                 "index": a.demo / (params.get("aligner_index") or "genome"),
                 "args": params.get("aligner_args", "--very-sensitive -X 2000"), "donor": row["donor"]}
    else:
        study = synthetic(a.work / "synthetic", a.pairs, a.snp_every)
    f = bench_filter(study, a.work)
    print(f"WASP filter on {study['bam']}: {f['reads_in']:,} reads, {f['sent_to_remap']:,} sent to remap, "
          f"{f['versions']:,} versions")
    print(f"  filter's own work (everything but the aligner): {f['own_cpu_s']:.2f} CPU s, {f['own_wall_s']:.2f} wall s"
          f" -> {f['reads_per_s_per_core']:,.0f} reads/s per core   (aligner: {f['aligner_wall_s']:.1f} wall s)")
    print(f"  phases (wall s, CPU s): {f['phases']}")
    k = bench_crc(study["bam"])
    passes = 2  # the filter streams its input twice (classify, then write)
    verify_s = _verify_s(k)
    print(f"BGZF verification on {k['blocks']:,} blocks ({k['mbytes']:.0f} MB decompressed), per pass: inflate "
          f"{k['inflate_s'] * 1e3:.0f} ms, inflate + checks {k['checked_s'] * 1e3:.0f} ms, CRC32 alone "
          f"{k['crc_s'] * 1e3:.1f} ms")
    print(f"  CRC/ISIZE verification cost: {100 * passes * verify_s / f['own_cpu_s']:.2f} % of the WASP filter's own "
          f"CPU time ({passes} passes; target < 10 %)")
    c = bench_count(a.work / "wasp.bam", f["snps"], study["fasta"], a.work)
    print(f"count_alleles on {c['reads']:,} reads at {c['sites']:,} sites: {c['ours_cpu_s']:.2f} CPU s "
          f"({c['reads_per_s_per_core']:,.0f} reads/s per core); bcftools mpileup -a AD: {c['bcftools_cpu_s']:.2f} CPU s "
          f"({c['bcftools_reads_per_s_per_core']:,.0f} reads/s per core) -> {c['bcftools_cpu_s'] / c['ours_cpu_s']:.1f}x faster")
    k = bench_crc(a.work / "wasp.bam")
    print(f"  CRC/ISIZE verification cost: {100 * _verify_s(k) / c['ours_cpu_s']:.2f} % of count_alleles' CPU time (1 pass)")


if __name__ == "__main__":
    main()
