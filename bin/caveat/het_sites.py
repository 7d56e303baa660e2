"""Heterozygous sites per donor from the genotypes VCF.

Biallelic SNVs with a heterozygous genotype (``0/1``, ``0|1``, ``1|0``) become
``het_snps``; biallelic heterozygous indels become ``het_indels`` (the WASP
filter drops reads over them, because an indel cannot be swapped in place).
Multi-allelic, filtered (non-PASS, when ``pass_only``) and missing-genotype
records are skipped and counted; so are multi-allelic sites split into biallelic
records (``bcftools norm -m-``: two records at one position), which would
otherwise be tested as two het SNPs each missing the other ALT. REF alleles are
checked against the FASTA: a mismatch means another genome build. Contigs are translated with the optional
contig map and checked against the FASTA (and BAMs) before any work.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from .errors import InputError
from .genome import check_contigs

SNP_COLUMNS = ["variant_id", "chrom", "pos", "ref", "alt", "donor"]
INDEL_COLUMNS = ["variant_id", "chrom", "pos", "end", "ref", "alt", "donor"]


def _open_vcf(vcf: str | Path):
    import pysam

    vcf = Path(vcf)
    if not vcf.exists():
        raise InputError(vcf, "genotypes VCF not found", "set `vcf` to the donors' genotypes VCF (bgzipped + tabix)")
    try:
        return pysam.VariantFile(str(vcf))
    except (OSError, ValueError) as e:
        raise InputError(vcf, f"cannot read as VCF/BCF: {e}", "give a valid VCF (bgzip + tabix it)") from None


def vcf_samples(vcf: str | Path) -> list[str]:
    """Sample (donor) names in the VCF header."""
    with _open_vcf(vcf) as f:
        return list(f.header.samples)


def read_het_sites(vcf: str | Path, donors: Iterable[str], *, pass_only: bool = True,
                   contig_map: dict[str, str] | None = None,
                   contigs: Iterable[str] | None = None,
                   fasta: str | Path | None = None) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Heterozygous SNPs and indels of ``donors``.

    Parameters
    ----------
    vcf : path
        Multi-sample VCF/BCF; sample names are donor names.
    donors : iterable of str
        Donors to extract (each must be a VCF sample).
    pass_only : bool
        Skip records whose FILTER is set and not PASS.
    contig_map : dict, optional
        VCF contig name → FASTA/BAM contig name.
    contigs : iterable of str, optional
        Reference contigs (FASTA); VCF contigs used by het sites must be among them
        after mapping, else a clear error (``chr1`` vs ``1``).
    fasta : path, optional
        Reference FASTA: every het site's REF must match it, else an error listing
        the first mismatches.

    Returns
    -------
    snps : DataFrame
        ``variant_id, chrom, pos (0-based), ref, alt, donor``, sorted by donor, chrom order, pos.
    indels : DataFrame
        ``variant_id, chrom, pos, end (0-based half-open span of REF), ref, alt, donor``.
    stats : dict
        Records read and skipped by reason, het SNPs and indels per donor.
    """
    donors = list(dict.fromkeys(donors))
    cmap = contig_map or {}
    rows_snp: list[tuple] = []
    rows_indel: list[tuple] = []
    skipped: Counter = Counter()
    n_records = 0
    at_pos: Counter = Counter()  # biallelic records per (chrom, pos): > 1 is a split multi-allelic site
    with _open_vcf(vcf) as f:
        samples = list(f.header.samples)
        missing = [d for d in donors if d not in samples]
        if missing:
            raise InputError(vcf, f"donor {missing[0]!r} is not a sample of the VCF (samples: {', '.join(samples[:10])})",
                             "name the donor in the samplesheet exactly as its VCF sample, or add its genotypes")
        if donors:
            f.subset_samples(donors)
        for rec in f:
            n_records += 1
            if pass_only:
                filt = list(rec.filter.keys())
                if filt and filt != ["PASS"]:
                    skipped["filtered"] += 1
                    continue
            alts = rec.alts or ()
            if len(alts) != 1:
                skipped["multiallelic" if len(alts) > 1 else "no_alt"] += 1
                continue
            ref, alt = rec.ref.upper(), alts[0].upper()
            if not (set(ref) <= set("ACGTN") and set(alt) <= set("ACGT")) or ref == alt:
                skipped["symbolic_or_bad_allele"] += 1
                continue
            is_snv = len(ref) == 1 and len(alt) == 1
            chrom = cmap.get(rec.chrom, rec.chrom)
            at_pos[chrom, rec.start] += 1
            for d in donors:
                gt = rec.samples[d].get("GT")
                if gt is None or len(gt) != 2 or None in gt:
                    skipped["missing_genotype"] += 1
                    continue
                if sorted(gt) != [0, 1]:
                    continue  # homozygous or other allele: not a het site of this donor
                vid = f"{chrom}:{rec.pos}:{ref}:{alt}"
                if is_snv:
                    rows_snp.append((vid, chrom, rec.start, ref, alt, d))
                else:
                    rows_indel.append((vid, chrom, rec.start, rec.stop, ref, alt, d))
    split = {k for k, n in at_pos.items() if n > 1}
    if split:
        skipped["split_multiallelic"] = sum(at_pos[k] for k in split)
        rows_snp = [r for r in rows_snp if (r[1], r[2]) not in split]
        rows_indel = [r for r in rows_indel if (r[1], r[2]) not in split]
    snps = pd.DataFrame(rows_snp, columns=SNP_COLUMNS)
    indels = pd.DataFrame(rows_indel, columns=INDEL_COLUMNS)
    if contigs is not None:
        contigs = list(contigs)
        used = set(snps["chrom"]) | set(indels["chrom"])
        check_contigs(used, contigs, what="VCF", file=vcf, reference_file="the FASTA")
        order = {c: i for i, c in enumerate(contigs)}
    else:
        order = {c: i for i, c in enumerate(dict.fromkeys(list(snps["chrom"]) + list(indels["chrom"])))}
    if fasta is not None:
        check_ref_alleles(pd.concat([snps, indels])[["chrom", "pos", "ref", "variant_id"]], fasta, vcf)
    snps = _sort(snps, order).astype({"pos": np.int64})
    indels = _sort(indels, order).astype({"pos": np.int64, "end": np.int64})
    stats = {
        "records": n_records,
        "skipped": dict(sorted(skipped.items())),
        "het_snps": {d: int((snps["donor"] == d).sum()) for d in donors},
        "het_indels": {d: int((indels["donor"] == d).sum()) for d in donors},
    }
    return snps, indels, stats


def check_ref_alleles(sites: pd.DataFrame, fasta: str | Path, vcf: str | Path, show: int = 5) -> None:
    """Raise an :class:`InputError` listing the first sites whose REF differs from the FASTA.

    An N (or other non-ACGT code) in the FASTA matches anything: it says nothing
    about the build.
    """
    import pysam

    sites = sites.drop_duplicates("variant_id")
    bad: list[str] = []
    with pysam.FastaFile(str(fasta)) as fa:
        for chrom, grp in sites.groupby("chrom", sort=False):
            seq = fa.fetch(chrom).upper()
            for pos, ref, vid in zip(grp["pos"], grp["ref"], grp["variant_id"]):
                got = seq[pos:pos + len(ref)]
                if any(g != r and g in "ACGT" and r != "N" for g, r in zip(got, ref)) or len(got) < len(ref):
                    bad.append(f"{vid} (FASTA has {got or 'nothing'})")
    if bad:
        raise InputError(vcf, f"REF of {len(bad)} of {len(sites)} het sites differs from {Path(fasta).name}: "
                         f"{', '.join(bad[:show])}",
                         "use the VCF called on the FASTA's genome build (or lift it over / bcftools norm -c x -f FASTA)")


def _sort(df: pd.DataFrame, order: dict[str, int]) -> pd.DataFrame:
    key = df["chrom"].map(order).fillna(len(order)).astype(int)
    return (df.assign(_k=key).sort_values(["donor", "_k", "pos", "alt"], kind="stable")
            .drop(columns="_k").drop_duplicates(["donor", "variant_id"]).reset_index(drop=True))


def check_donors_have_sites(snps: pd.DataFrame, donors: Iterable[str], vcf: str | Path) -> None:
    """Every donor must have at least one het SNP, else the counts would be silently empty."""
    have = set(snps["donor"])
    for d in donors:
        if d not in have:
            raise InputError(vcf, f"donor {d!r} has no heterozygous biallelic SNV (after FILTER/genotype checks)",
                             "check the donor's genotypes (GT 0/1 or 0|1), or set vcf_pass_only: false if its sites are filtered")


def bam_contigs(bam: str | Path) -> dict[str, int]:
    """Contig → length from a BAM header."""
    import pysam

    with pysam.AlignmentFile(str(bam), "rb") as f:
        return dict(zip(f.references, f.lengths))
