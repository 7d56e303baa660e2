"""``caveat simulate``: a multi-donor, multi-cell-type ATAC-seq study with
planted truth, from a model of regulation.

TF motifs (PWMs) are active in all or some cell types; regulatory elements
carry motif sites, and their accessibility per cell type *and per haplotype*
is a saturating function of motif occupancy in that haplotype's sequence, so a
SNP that breaks or creates a site changes accessibility on one haplotype only.
Fragments are drawn per haplotype in proportion to accessibility plus
background, sequenced with errors, and aligned with bowtie2 (so reference
mapping bias, e.g. at paralogous sequence variants in segmental duplications,
is real). The truth is written beside the data.

Output layout (``DIR``)::

    genome.fa(.fai), genome.*.bt2     reference and its bowtie2 index
    genotypes.vcf.gz(.tbi)            phased donors (+ multi-allelic, LowQual, missing-GT decoys)
    bams/<donor>_<cell_type>.bam(.bai)
    peaks/<cell_type>.bed
    samplesheet.csv, params.yaml      ready for ``caveat run --params DIR/params.yaml``
    truth/elements.parquet, truth/snps.parquet, truth/motifs.json
    truth/donor_swap.json             with --swap-donors A,B: the samples whose donor label is wrong
    simulate.summary.json

``--swap-donors A,B`` writes a samplesheet that labels donor A's samples as B's
and B's as A's (a sample mix-up, for the genotype concordance check); the BAMs
and the VCF are those of the unswapped study.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..log import Progress, get_logger
from .presets import PRESET_PARAMS, PRESETS, get_preset

log = get_logger("simulate")


def _write_fasta(g, path: Path) -> None:
    lut = np.frombuffer(b"ACGTN", np.uint8)
    with open(path, "wb") as fh:
        for i, name in enumerate(g.chroms):
            s = lut[g.chrom_seq(i)].tobytes()
            fh.write(f">{name}\n".encode())
            fh.write(b"\n".join(s[j:j + 60] for j in range(0, len(s), 60)) + b"\n")


def _check_out(out: Path) -> None:
    if out.exists() and any(out.iterdir()) and not (out / "simulate.summary.json").exists():
        raise InputError(out, "output directory exists, is not empty and is not a previous simulation",
                         "choose a new or empty --out directory")


def simulate(preset: str, seed: int, out, threads: int = 2, swap_donors: tuple[str, str] | None = None) -> dict:
    """Write a simulated study to ``out`` (replaced atomically). Returns the summary dict.

    ``swap_donors`` (two donor names) exchanges their labels in the samplesheet
    (see :func:`swap_donor_labels`).
    """
    from ..io import atomic_path, write_json

    p = get_preset(preset)
    out = Path(out).resolve()  # tools below run with their own working directory
    _check_out(out)
    with atomic_path(out, is_dir=True) as tmp:
        summary = _simulate_into(p, int(seed), tmp, max(1, int(threads)))
        if swap_donors:
            summary["donor_swap"] = swap_donor_labels(tmp, *swap_donors)
        write_json(summary, tmp / "simulate.summary.json")
    log.info("wrote %s", out)
    return summary


def _simulate_into(p, seed: int, d: Path, threads: int) -> dict:
    import pysam

    from ..io import write_json, write_parquet
    from . import align, donors, elements, motifs, truth
    from .genome import build_genome

    rngs = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(8)]
    cts, dns = list(p.cell_types), list(p.donors)
    mot = motifs.make_motifs(rngs[0], cts)
    g = build_genome(rngs[1], p, mot)
    v = donors.make_variants(rngs[2], g, p)
    log.info("genome: %d chromosomes, %s bp, %d elements, %d gaps, %d duplications; %d variant sites",
             len(g.chroms), f"{len(g.seq):,}", len(g.elements), len(g.gaps), len(g.dups), len(v.sites))
    _write_fasta(g, d / "genome.fa")
    pysam.faidx(str(d / "genome.fa"))
    align.build_index(d)
    acc_ref, acc_hap, site_eff = elements.element_accessibility(g, v, mot)
    n_vcf = donors.write_vcf(rngs[3], g, v, dns, d / "genotypes.vcf.gz")
    (d / "peaks").mkdir()
    n_peaks = elements.write_peaks(rngs[4], g, acc_ref, cts, p.peak_threshold, d / "peaks")
    samples, frag_stats = _reads_and_bams(rngs[5], p, g, v, acc_hap, d, threads)
    n_bg = int(round(p.background_fraction * p.fragments_per_sample))
    erf = truth.expected_ref_fraction(g, v, acc_hap, p.fragments_per_sample - n_bg, n_bg, p.read_len)
    snps = truth.snps_table(g, v, erf, site_eff, dns, cts)
    (d / "truth").mkdir()
    write_parquet(snps, d / "truth" / "snps.parquet")
    write_parquet(truth.elements_table(g, acc_ref, cts), d / "truth" / "elements.parquet")
    write_json(mot.to_json(cts), d / "truth" / "motifs.json")
    _write_sheet_and_params(p, seed, d, samples)
    summary = {
        "preset": p.name, "seed": seed, "chromosomes": len(g.chroms), "genome_bp": int(len(g.seq)),
        "gap_bp": int((g.seq == 4).sum()), "duplications": len(g.dups), "motifs": len(mot.names),
        "cell_types": cts, "donors": dns, "samples": len(samples),
        "elements": g.elements["class"].value_counts().sort_index().to_dict(),
        "variant_sites": len(v.sites), "vcf_records": n_vcf, "indel_sites": int(v.sites.is_indel.sum()),
        "paralogous_sequence_variants": int(v.sites.psv.sum()), "planted_causal_sites": int(v.sites.causal.sum()),
        "het_sites_per_donor": {dn: int((v.alleles[i, 0] != v.alleles[i, 1]).sum()) for i, dn in enumerate(dns)},
        "peaks": n_peaks, "fragments": frag_stats,
        "snps_rows": len(snps), "snps_by_effect": snps.effect.value_counts().sort_index().to_dict(),
        "aligner_args": align.BOWTIE2_ARGS,
    }
    summary["observed"] = _observed(d, snps, samples)
    log.info("REF fraction at expected-0.5 SNVs in duplications (MAPQ>=10): %s",
             summary["observed"].get("dup_expected_half_mapq10", {}).get("ref_fraction"))
    return summary


def _reads_and_bams(rng, p, g, v, acc_hap, d: Path, threads: int):
    from . import align, donors, fragments

    (d / "bams").mkdir()
    fq = d / "fastq.tmp"
    fq.mkdir()
    samples, stats = [], {}
    prog = Progress(log, "samples", total=len(p.donors) * len(p.cell_types), every_s=5.0)
    for di, donor in enumerate(p.donors):
        haps = [donors.haplotype(g, v, di, h) for h in (0, 1)]
        for k, ct in enumerate(p.cell_types):
            sample = f"{donor}_{ct}"
            f = fragments.sample_fragments(rng, g, acc_hap[di, :, :, k], p.fragments_per_sample,
                                           p.background_fraction, p.duplicate_rate, p.read_len)
            r1, r2, q1, q2 = fragments.reads(rng, [h[0] for h in haps], [h[1] for h in haps], f, p.read_len)
            names = np.array([f"{sample}:{i:09d}".encode() for i in range(len(f.start))])
            fragments.write_fastq(fq / f"{sample}_R1.fq", names, r1, q1, 1)
            fragments.write_fastq(fq / f"{sample}_R2.fq", names, r2, q2, 2)
            res = align.align_sample(d, sample, donor, f"fastq.tmp/{sample}_R1.fq", f"fastq.tmp/{sample}_R2.fq",
                                     f"bams/{sample}.bam", threads)
            rate = [ln for ln in res["bowtie2"] if "overall alignment rate" in ln]
            stats[sample] = {"fragments": int(len(f.start)), "from_elements": int(f.from_element.sum()),
                             "pcr_duplicates": int(f.duplicate.sum()),
                             "overall_alignment_rate": rate[0].split("%")[0] + "%" if rate else None}
            log.info("%s: %s fragments (%s from elements, %s PCR duplicates), bowtie2 %s aligned",
                     sample, f"{len(f.start):,}", f"{int(f.from_element.sum()):,}", f"{int(f.duplicate.sum()):,}",
                     stats[sample]["overall_alignment_rate"])
            (fq / f"{sample}_R1.fq").unlink()
            (fq / f"{sample}_R2.fq").unlink()
            samples.append((sample, donor, ct))
            prog.update()
    prog.close()
    fq.rmdir()
    return samples, stats


def _observed(d: Path, snps, samples) -> dict:
    """Pooled REF fraction of reads at SNVs by truth stratum (the planted truth, seen in BAMs)."""
    from .truth import observed_ref_fraction

    snv = snps[~snps.is_indel]
    strata = {
        "dup_expected_half_mapq0": (snv.in_duplication & (snv.effect == "none"), 0),
        "dup_expected_half_mapq10": (snv.in_duplication & (snv.effect == "none"), 10),
        "dup_psv_expected_half_mapq10": (snv.paralog_carries_alt & (snv.effect == "none"), 10),
        "nondup_expected_half_mapq10": (~snv.in_duplication & (snv.effect == "none") & snv.element.notna(), 10),
        "ref_favouring_mapq10": (~snv.in_duplication & (snv.effect == "ref_favouring"), 10),
        "alt_favouring_mapq10": (~snv.in_duplication & (snv.effect == "alt_favouring"), 10),
    }
    out = {}
    for name, (mask, mapq) in strata.items():
        ref_n = alt_n = 0
        sub = snv[mask]
        for sample, donor, ct in samples:
            s = sub[(sub.donor == donor) & (sub.cell_type == ct)]
            if len(s):
                r, a = observed_ref_fraction(d / "bams" / f"{sample}.bam", s, mapq)
                ref_n, alt_n = ref_n + r, alt_n + a
        n = ref_n + alt_n
        exp = float(sub.expected_ref_fraction.mean()) if len(sub) else None
        out[name] = {"sites": int(len(sub)), "reads": n, "ref_fraction": ref_n / n if n else None,
                     "expected_ref_fraction_mean": exp}
    return out


def _write_sheet_and_params(p, seed: int, d: Path, samples) -> None:
    import yaml

    from ..io import write_text
    from .align import BOWTIE2_ARGS

    lines = ["sample,donor,cell_type,bam,peaks"]
    lines += [f"{s},{dn},{ct},bams/{s}.bam,peaks/{ct}.bed" for s, dn, ct in samples]
    write_text("\n".join(lines) + "\n", d / "samplesheet.csv")
    params = {"input": "samplesheet.csv", "fasta": "genome.fa", "vcf": "genotypes.vcf.gz", "outdir": "results",
              "aligner": "bowtie2", "aligner_index": "genome", "aligner_args": BOWTIE2_ARGS, "seed": seed}
    params.update(PRESET_PARAMS.get(p.name, {}))
    write_text(yaml.safe_dump(params, sort_keys=False), d / "params.yaml")


def swap_donor_labels(study: str | Path, a: str, b: str) -> dict:
    """Exchange donors ``a`` and ``b`` in ``study/samplesheet.csv`` and write the truth.

    Each sample keeps its name and BAM; only its ``donor`` column changes, so
    every swapped sample's reads come from the other donor than the sheet says.
    The truth goes to ``study/truth/donor_swap.json``: the pair and, per swapped
    sample, the donor in the sheet and the donor of its reads.

    Returns
    -------
    dict
        The truth written.
    """
    import pandas as pd

    from ..io import write_json, write_text

    study = Path(study)
    sheet = pd.read_csv(study / "samplesheet.csv", dtype=str, keep_default_na=False)
    for d in (a, b):
        if d not in set(sheet["donor"]) or a == b:
            raise InputError("--swap-donors", f"{a},{b}: need two different donors of the study "
                             f"({', '.join(dict.fromkeys(sheet['donor']))})", "name two of its donors")
    true = sheet["donor"].copy()
    sheet["donor"] = true.map({a: b, b: a}).fillna(true)
    moved = sheet["donor"] != true
    truth = {"swapped": [a, b],
             "samples": {s: {"sheet_donor": sd, "read_donor": td}
                         for s, sd, td in zip(sheet["sample"][moved], sheet["donor"][moved], true[moved])}}
    write_text(sheet.to_csv(index=False), study / "samplesheet.csv")
    (study / "truth").mkdir(exist_ok=True)
    write_json(truth, study / "truth" / "donor_swap.json")
    log.info("samplesheet swaps donors %s and %s (%d samples mislabelled)", a, b, int(moved.sum()))
    return truth


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="caveat simulate", description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", choices=sorted(PRESETS), default="tiny", help="study size")
    ap.add_argument("--seed", type=int, default=1, help="random seed (same seed → byte-identical files)")
    ap.add_argument("--out", required=True, help="output directory (created; replaced if a previous simulation)")
    ap.add_argument("--threads", "-t", type=int, default=2, help="bowtie2 / samtools threads")
    ap.add_argument("--swap-donors", metavar="A,B",
                    help="label donor A's samples as B's and B's as A's in the samplesheet (a sample mix-up; "
                         "truth in truth/donor_swap.json)")
    return ap


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    swap = tuple(args.swap_donors.split(",")) if args.swap_donors else None
    if swap is not None and len(swap) != 2:
        raise InputError("--swap-donors", f"{args.swap_donors!r} is not two donors", "write --swap-donors D1,D2")
    summary = simulate(args.preset, args.seed, args.out, threads=args.threads, swap_donors=swap)
    print(f"simulated {summary['samples']} samples into {args.out}")
    return 0
