"""Check every input of a run before the first step, naming the file the user gave.

``caveat run`` calls :func:`validate_inputs` once, before the engine starts: a bad
input then fails in seconds, naming the samplesheet, BAM, FASTA, VCF or peaks
file (not a file a step derived from it), and no step is marked done. The checks
reuse the ones the steps make (:mod:`caveat.samplesheet`,
:func:`caveat.genome.check_contigs`, :func:`caveat.bam_records.check_bam`,
:func:`caveat.intervals.read_bed`); what is new here is what only a whole-run view
can judge: index freshness, read pairing, contig names compared across files (and
which file to blame), params that name missing files.
"""

from __future__ import annotations

import glob
from pathlib import Path
from typing import Iterable, Sequence

from . import bam_records as br
from .aligner import parse_aligner_args
from .errors import InputError
from .genome import check_contigs, fasta_lengths, read_contig_map
from .het_sites import vcf_samples
from .intervals import read_bed
from .log import get_logger
from .params import path_params
from .single_cell import read_study

log = get_logger("validate")

#: Records read from the start of each BAM to judge pairing.
PAIRING_SAMPLE = 1000
#: Params a run cannot do without.
REQUIRED = ("input", "fasta", "vcf")
#: Path params that name a prefix of several files rather than one file.
PREFIX_PARAMS = ("aligner_index", "ldsc_bim")
#: Path params that are a glob of files (at least one must match).
GLOB_PARAMS = ("cell_type_peaks",)
BAM_FIX = ("give the FASTA the reads were aligned to, or realign the reads to this FASTA "
           "(a contig_map renames VCF and peaks contigs, not BAM contigs)")


def validate_inputs(params: dict, steps: Sequence | None = None) -> dict:
    """Check the inputs a run reads; raise an :class:`InputError` naming the first bad one.

    Parameters
    ----------
    params : dict
        Validated params (:func:`caveat.params.load_params`).
    steps : sequence of Step, optional
        The run's steps (their path params are checked too).

    Returns
    -------
    dict
        Figures for the log: samples, contigs, VCF contigs.
    """
    check_path_params(params, steps)
    parse_aligner_args(params.get("aligner_args"))  # shell metacharacters: refused before anything runs
    # single-cell libraries: tables, CB tags, barcode suffixes and barcodes with reads (docs/single_cell.md);
    # the VCF's samples first, so that a barcode table's donor missing from the VCF is named by its table line
    study = read_study(params["input"], check_reads=True, vcf_donors=check_vcf_file(params["vcf"]))
    sheet = study.samples
    fasta = params["fasta"]
    lengths = fasta_lengths(fasta)
    check_index_fresh(fasta, [Path(str(fasta) + ".fai")], "samtools faidx")
    cmap = read_contig_map(params.get("contig_map"))
    vcf_contigs = check_vcf(params["vcf"], list(dict.fromkeys(sheet["donor"])), cmap)
    for bam in [*study.bulk()["bam"], *study.libraries["bam"]]:
        check_bam_input(bam, lengths, fasta, vcf_contigs, params["input"])
    check_contigs(vcf_contigs, lengths, what="VCF", file=params["vcf"], reference_file=fasta)
    for peaks in dict.fromkeys(p for p in sheet["peaks"] if p):
        read_bed(peaks, lengths, contig_map=cmap, allow_empty=True)
    log.info("inputs checked: %d samples, %d FASTA contigs, %d VCF contigs", len(sheet), len(lengths),
             len(vcf_contigs))
    return {"samples": len(sheet), "fasta_contigs": len(lengths), "vcf_contigs": len(vcf_contigs)}


def check_path_params(params: dict, steps: Sequence | None = None) -> None:
    """Required params are set, and every param naming a file names one that exists."""
    for k in REQUIRED:
        if not params.get(k):
            raise InputError(k, "not set", f"set {k} in the params file")
    for k in sorted(path_params(steps)):
        v = params.get(k)
        if not v or "://" in str(v):
            continue  # unset, or a remote URL that only Nextflow stages
        p = Path(v)
        if k in PREFIX_PARAMS:
            if not p.exists() and not any(p.parent.glob(p.name + "*")):
                raise InputError(k, f"no file starts with {v}", f"set {k} to an existing file or prefix")
        elif k in GLOB_PARAMS:
            if not glob.glob(str(v)):
                raise InputError(k, f"{v} matches no file", f"set {k} to a glob of existing files, e.g. peaks/*.bed "
                                 "(relative paths are relative to the params file)")
        elif not p.is_file():
            what = "is a folder, not a file" if p.is_dir() else "not found"
            raise InputError(k, f"{v} {what}", f"set {k} to an existing file (relative paths are relative to "
                             "the params file)")


def check_index_fresh(data: str | Path, indexes: Iterable[Path], tool: str) -> None:
    """An index older than its data file describes another file: refuse it (htslib warns,
    then reads wrong offsets). Whole seconds, as htslib compares them."""
    data = Path(data)
    for idx in indexes:
        if idx.exists() and int(idx.stat().st_mtime) < int(data.stat().st_mtime):
            raise InputError(data, f"its index {idx.name} is older than the file (the file changed after indexing)",
                             f"rebuild the index: {tool} {data.name}")


def _bam_indexes(bam: Path) -> list[Path]:
    return [Path(str(bam) + ".bai"), bam.with_suffix(".bai"), Path(str(bam) + ".csi")]


def check_bam_input(bam: str | Path, lengths: dict[str, int], fasta: str | Path,
                    vcf_contigs: set[str], sheet: str | Path) -> None:
    """One samplesheet BAM: readable, sorted, indexed (freshly), paired-end, on the FASTA's contigs."""
    bam = Path(bam)
    br.check_bam(bam)
    check_index_fresh(bam, _bam_indexes(bam), "samtools index")
    names, blens = check_pairing(bam)
    missing = [c for c in names if c not in lengths]
    if missing:
        m = missing[0]
        other = _other_name(m, lengths)
        also = f" (the FASTA names it {other!r})" if other else ""
        if m in vcf_contigs:
            # the VCF agrees with the BAM: the FASTA is the odd one out
            raise InputError(fasta, f"has no contig {m!r}{also}, which {bam.name} and the VCF use "
                             f"({len(missing)} BAM contig(s) missing)",
                             "give the FASTA the reads were aligned to")
        raise InputError(bam, f"{len(missing)} contig(s) of the BAM header are not in {Path(fasta).name}, "
                         f"e.g. {m!r}{also}", BAM_FIX)
    for c, n in zip(names, blens):
        if lengths[c] != n:
            raise InputError(bam, f"contig {c!r} is {n} bp in the BAM header but {lengths[c]} bp in "
                             f"{Path(fasta).name}: another genome build", BAM_FIX)


def _other_name(name: str, reference: Iterable[str]) -> str | None:
    """The reference's spelling of ``name`` with or without 'chr', if it has one."""
    ref = set(reference)
    for alt in (name[3:] if name.startswith("chr") else None, "chr" + name):
        if alt and alt in ref:
            return alt
    return None


def check_pairing(bam: Path) -> tuple[list[str], list[int]]:
    """The BAM has mapped reads and its first reads are paired-end; returns its contigs and lengths."""
    import pysam

    with pysam.AlignmentFile(str(bam), "rb") as f:
        names, blens = list(f.references), list(f.lengths)
        if not names:
            raise InputError(bam, "the BAM header lists no contigs (@SQ lines)", "give a BAM aligned to the genome")
        mapped = sum(s.mapped for s in f.get_index_statistics())
        n = paired = 0
        for rec in f.fetch(until_eof=True):
            n += 1
            paired += rec.is_paired
            if n >= PAIRING_SAMPLE:
                break
    if n == 0 or mapped == 0:
        raise InputError(bam, "the BAM has no mapped reads" if n else "the BAM has no reads",
                         "check the samplesheet row points at the sample's aligned BAM")
    if paired * 2 < n:
        raise InputError(bam, f"{n - paired} of its first {n} reads are single-end: caveat needs paired-end "
                         "ATAC-seq (Tn5 insertions come from both fragment ends)",
                         "give the paired-end BAM (both mates aligned as pairs)")
    return names, blens


def check_vcf(vcf: str | Path, donors: list[str], contig_map: dict[str, str]) -> set[str]:
    """The VCF is plain or BGZF-compressed with a fresh index, readable, and has every donor.

    Returns
    -------
    set of str
        Contigs that hold records, after ``contig_map``.
    """
    import pysam

    vcf = Path(vcf)
    samples = check_vcf_file(vcf)
    missing = [d for d in donors if d not in samples]
    if missing:
        raise InputError(vcf, f"donor {missing[0]!r} of the samplesheet is not a sample of the VCF "
                         f"(samples: {', '.join(samples[:10])})",
                         "name the donor in the samplesheet exactly as its VCF sample, or add its genotypes")
    try:
        with pysam.VariantFile(str(vcf)) as f:
            if f.index is not None:
                contigs = [c for c in f.index if _has_records(f, c)]
            else:
                contigs = list(dict.fromkeys(rec.chrom for rec in f))
    except (OSError, ValueError) as e:
        raise InputError(vcf, f"cannot read as VCF/BCF: {e}", "give a valid VCF (bgzip + tabix it)") from None
    if not contigs:
        raise InputError(vcf, "the VCF has no records", "give the donors' genotypes")
    return {contig_map.get(c, c) for c in contigs}


def check_vcf_file(vcf: str | Path) -> list[str]:
    """The VCF is plain or BGZF-compressed with a fresh index; its sample (donor) names."""
    vcf = Path(vcf)
    with open(vcf, "rb") as fh:
        head = fh.read(18)
    indexes = [Path(str(vcf) + ".tbi"), Path(str(vcf) + ".csi")]
    if head[:2] == b"\x1f\x8b":
        if head[12:16] != b"BC\x02\x00":
            raise InputError(vcf, "gzip-compressed but not with bgzip (BGZF)",
                             f"recompress and index it: zcat {vcf.name} | bgzip > x.vcf.gz && tabix -p vcf x.vcf.gz")
        if not any(i.exists() for i in indexes):
            raise InputError(vcf, "bgzipped but not indexed (no .tbi or .csi)", f"index it: tabix -p vcf {vcf.name}")
        check_index_fresh(vcf, indexes, "tabix -f -p vcf")
    return vcf_samples(vcf)


def _has_records(f, contig: str) -> bool:
    """Whether the indexed VCF has a record on ``contig`` (an index may list empty contigs)."""
    try:
        return next(iter(f.fetch(contig)), None) is not None
    except ValueError:
        return False
