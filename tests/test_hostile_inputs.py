"""Hostile inputs: every bad input or param a new user may give ``caveat run`` fails cleanly.

Each case edits a copy of the tiny study (cut to three samples) and runs ``caveat run``
on it; for each the test asserts a non-zero exit, no Python traceback, a message that
names the culprit file (or param), and that the failing step left no step marker and no
final output (most cases fail in the checks made before the first step:
:mod:`caveat.validate`, :mod:`caveat.params`). The command lines run through
``tests/cli_forkserver.py`` (one process that imports caveat once and forks per command,
as ``python -m caveat.cli`` would run them); a few also run as plain ``python -m caveat.cli``
to show the two agree.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pandas as pd
import pysam
import pytest
import yaml

from study_copy import study_copy

HERE = Path(__file__).resolve().parent
SAMPLES = ["D1_ctA", "D2_ctA", "D3_ctA"]


@dataclass
class Case:
    """One hostile input: the study copy to edit, what must be blamed, which step fails."""

    id: str
    dir: Path
    culprit: str = ""
    step: str | None = None          # the step that fails; None: the checks before the first step
    outputs: tuple[str, ...] = ()    # outdir-relative outputs of the failing step that must not exist
    argv: list[str] = field(default_factory=list)
    params: dict = field(default_factory=dict)
    sheet: pd.DataFrame | None = None
    params_text: str | None = None   # raw params file text (overrides ``params``)
    fsize_limit: int | None = None   # run under this RLIMIT_FSIZE (bytes): writes fail as on a full disk

    @property
    def out(self) -> Path:
        return self.dir / "out"

    def row(self, sample: str = "D1_ctA") -> int:
        return int(self.sheet.index[self.sheet["sample"] == sample][0])


CASES: dict[str, tuple[Callable[[Case], None], dict]] = {}


def case(id: str, **kw):
    """Register a case builder: ``fn(c)`` edits ``c`` (params, sheet, files) and sets the culprit."""
    def deco(fn):
        CASES[id] = (fn, kw)
        return fn
    return deco


# ------------------------------------------------------------------------------- file makers

def _bam(c: Case, name: str, header=None, records=None, index: bool = True, sample: str = "D1_ctA") -> Path:
    """A copy of ``sample``'s BAM with its header dict and/or records edited; the sheet points at it."""
    src = c.dir / "bams" / f"{sample}.bam"
    dst = c.dir / f"{name}.bam"
    with pysam.AlignmentFile(str(src)) as f:
        h = f.header.to_dict()
        recs = list(f.fetch(until_eof=True))
    if header:
        header(h)
    hdr = pysam.AlignmentHeader.from_dict(h)
    if records is None:  # a header edit keeps the records' contig ids (as `samtools reheader` does)
        sam = c.dir / f"{name}.header.sam"
        sam.write_text(str(hdr))
        with open(dst, "wb") as fh:
            subprocess.run(["samtools", "reheader", str(sam), str(src)], stdout=fh, check=True)
    else:
        with pysam.AlignmentFile(str(dst), "wb", header=hdr) as out:
            for r in records(recs):
                out.write(pysam.AlignedSegment.fromstring(r.to_string(), hdr))
    if index:
        pysam.index(str(dst))
    c.sheet.loc[c.row(sample), "bam"] = str(dst)
    c.culprit = dst.name
    return dst


def _vcf_text(c: Case) -> str:
    with gzip.open(c.dir / "genotypes.vcf.gz", "rt") as fh:
        return fh.read()


def _write_vcf(c: Case, text: str, name: str = "edited.vcf", compress: bool = True, index: bool = True) -> Path:
    plain = c.dir / name
    plain.write_text(text)
    path = plain
    if compress:
        path = c.dir / (name + ".gz")
        pysam.tabix_compress(str(plain), str(path), force=True)
        plain.unlink()
        if index:
            pysam.tabix_index(str(path), preset="vcf", force=True)
    c.params["vcf"] = str(path)
    c.culprit = path.name
    return path


def _fasta(c: Case, edit: Callable[[str], str], name: str = "other.fa", index: bool = True) -> Path:
    path = c.dir / name
    path.write_text(edit((c.dir / "genome.fa").read_text()))
    if index:
        pysam.faidx(str(path))
    c.params["fasta"] = str(path)
    c.culprit = path.name
    return path


def _older(path: Path, seconds: int = 100) -> None:
    """Give ``path`` an mtime ``seconds`` before now (what a stale index has)."""
    t = path.stat().st_mtime - seconds
    os.utime(path, (t, t))


def _peaks(c: Case, text: str) -> None:
    p = c.dir / "bad_peaks.bed"
    p.write_text(text)
    c.sheet.loc[c.row(), "peaks"] = str(p)
    c.culprit = p.name


def _param(key, value):
    def fn(c: Case):
        c.params[key] = value
        c.culprit = key
    return fn


# ------------------------------------------------------------------------------- params

@case("params_file_missing")
def _(c):
    c.argv = ["-p", str(c.dir / "nowhere.yaml")]
    c.culprit = "nowhere.yaml"


@case("params_not_yaml")
def _(c):
    c.params_text = "input: [samplesheet.csv\nfasta: genome.fa\n"
    c.culprit = "params.yaml"


@case("params_not_a_mapping")
def _(c):
    c.params_text = "- input\n- fasta\n"
    c.culprit = "params.yaml"


@case("param_unknown_key")
def _(c):
    c.params["trian_lr"] = 0.1
    c.culprit = "trian_lr"


for _id, _key, _value in [
    ("param_wrong_type", "train_batch_size", "big"),
    ("param_zero_batch_size", "train_batch_size", 0),
    ("param_negative_epochs", "train_max_epochs", -2),
    ("param_zero_window_size", "window_size", 0),
    ("param_zero_stride", "window_stride", 0),
    ("param_negative_lr_exponent", "train_lr", "-1e-3"),
    ("param_fdr_above_one", "imbalance_fdr", 2.0),
    ("param_unknown_aligner", "aligner", "hisat2"),
    ("param_zero_predict_batch", "predict_batch_size", 0),
    ("param_negative_min_mapq", "min_mapq", -1),
    ("param_concordance_above_one", "concordance_min_both_alleles", 1.5),
    ("param_input_unset", "input", None),
    ("param_vcf_unset", "vcf", None),
    ("param_fasta_file_missing", "fasta", "missing.fa"),
    ("param_contig_map_missing", "contig_map", "no_map.tsv"),
    ("param_blacklist_missing", "blacklist", "no_blacklist.bed"),
    ("param_aligner_index_missing", "aligner_index", "nowhere/genome"),
    ("param_score_vcf_is_a_folder", "score_vcf", "bams"),
    ("param_aligner_args_shell_metacharacters", "aligner_args", "--end-to-end; touch PWNED"),
]:
    case(_id)(_param(_key, _value))


@case("outdir_is_a_file")
def _(c):
    c.out.write_text("not a folder\n")
    c.culprit = str(c.out)


# ------------------------------------------------------------------------------- samplesheet

#: open lock-file descriptors held by this test process for the module's duration (a run in progress)
_HELD_LOCKS: list[int] = []


@case("outdir_locked_by_another_run")
def _(c):
    import fcntl

    lock = c.out / "pipeline_info" / ".lock"
    lock.parent.mkdir(parents=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # what a running `caveat run` holds
    _HELD_LOCKS.append(fd)
    c.culprit = str(c.out)


@case("outdir_disk_full_during_a_step", step="wasp_remap",
      outputs=("wasp/D1_ctA.bam", "het_snps.parquet", "wasp_remap.summary.json"))
def _(c):
    # 1 MB per file: the inputs are read, the WASP BAMs cannot be written (a full disk's EFBIG/ENOSPC)
    c.fsize_limit = 1_000_000
    c.culprit = str(c.out)


@case("sheet_missing_column")
def _(c):
    c.sheet = c.sheet.drop(columns="bam")
    c.culprit = "samplesheet.csv"


@case("sheet_no_samples")
def _(c):
    c.sheet = c.sheet.iloc[:0]
    c.culprit = "samplesheet.csv"


@case("sheet_duplicate_sample")
def _(c):
    c.sheet.loc[c.row("D2_ctA"), "sample"] = "D1_ctA"
    c.culprit = "samplesheet.csv"


@case("sheet_one_bam_for_two_samples")
def _(c):
    c.sheet.loc[c.row("D2_ctA"), "bam"] = c.sheet.loc[c.row("D1_ctA"), "bam"]
    c.culprit = "samplesheet.csv"


@case("sheet_bam_file_missing")
def _(c):
    c.sheet.loc[c.row(), "bam"] = "bams/D1_ctZ.bam"
    c.culprit = "samplesheet.csv"


@case("sheet_peaks_file_missing")
def _(c):
    c.sheet.loc[c.row(), "peaks"] = "peaks/ctZ.bed"
    c.culprit = "samplesheet.csv"


@case("sheet_bad_sample_name")
def _(c):
    c.sheet.loc[c.row(), "sample"] = "D1 ctA"
    c.culprit = "samplesheet.csv"


@case("sheet_donor_cell_type_twice")
def _(c):
    c.sheet.loc[c.row("D2_ctA"), "donor"] = "D1"
    c.culprit = "samplesheet.csv"


# ------------------------------------------------------------------------------- BAMs

@case("bam_not_coordinate_sorted")
def _(c):
    _bam(c, "unsorted", header=lambda h: h["HD"].update(SO="unsorted"))


@case("bam_without_index")
def _(c):
    _bam(c, "noindex", index=False)


@case("bam_index_older_than_bam")
def _(c):
    bam = _bam(c, "stale")
    _older(Path(str(bam) + ".bai"))


@case("bam_truncated")
def _(c):
    bam = _bam(c, "cut")
    data = bam.read_bytes()
    bam.write_bytes(data[: len(data) - 5000])


@case("bam_flipped_bit_in_a_record_block", step="wasp_remap",
      outputs=("het_snps.parquet", "het_indels.parquet", "wasp/D1_ctA.bam", "wasp_remap.summary.json"))
def _(c):
    # the header blocks and the EOF marker are intact (the checks before the first step pass); a read
    # block in the middle fails its CRC32 while the WASP filter streams it
    bam = _bam(c, "flipped")
    data = bytearray(bam.read_bytes())
    data[len(data) // 2] ^= 0x10
    bam.write_bytes(bytes(data))
    c.culprit = bam.name


@case("bam_not_a_bam")
def _(c):
    bam = c.dir / "text.bam"
    bam.write_text("sample,reads\nD1,100\n")
    c.sheet.loc[c.row(), "bam"] = str(bam)
    c.culprit = bam.name


@case("bam_without_reads")
def _(c):
    _bam(c, "empty", records=lambda recs: [])


@case("bam_single_end")
def _(c):
    def single(recs):
        out = []
        for r in recs:
            if r.is_read1 or not r.is_paired:
                r.flag &= ~(0x1 | 0x2 | 0x8 | 0x20 | 0x40 | 0x80)
                r.next_reference_id, r.next_reference_start, r.template_length = -1, -1, 0
                out.append(r)
        return out
    _bam(c, "single", records=single)


@case("bam_contigs_without_chr")
def _(c):
    _bam(c, "nochr", header=lambda h: [sq.update(SN=sq["SN"][3:]) for sq in h["SQ"]])
    c.culprit = "nochr.bam"  # the BAM differs from the FASTA and the VCF: it is the one blamed


@case("bam_other_genome_build")
def _(c):
    _bam(c, "build", header=lambda h: h["SQ"][0].update(LN=h["SQ"][0]["LN"] + 1000))


# ------------------------------------------------------------------------------- FASTA

@case("fasta_contigs_without_chr")
def _(c):
    _fasta(c, lambda t: t.replace(">chr", ">"))  # BAMs and VCF say chr1: the FASTA is blamed


@case("fasta_gzip_not_bgzip")
def _(c):
    path = c.dir / "genome_gz.fa.gz"
    path.write_bytes(gzip.compress((c.dir / "genome.fa").read_bytes()))
    c.params["fasta"] = str(path)
    c.culprit = path.name


@case("fasta_index_older_than_fasta")
def _(c):
    path = _fasta(c, lambda t: t, name="copy.fa")
    _older(Path(str(path) + ".fai"))


@case("fasta_not_a_fasta")
def _(c):
    _fasta(c, lambda t: "this is not a genome\n", name="notes.fa", index=False)


# ------------------------------------------------------------------------------- VCF

@case("vcf_gzip_not_bgzip")
def _(c):
    path = c.dir / "plain_gzip.vcf.gz"
    path.write_bytes(gzip.compress(_vcf_text(c).encode()))
    c.params["vcf"] = str(path)
    c.culprit = path.name


@case("vcf_bgzip_without_index")
def _(c):
    _write_vcf(c, _vcf_text(c), index=False)


@case("vcf_index_older_than_vcf")
def _(c):
    path = _write_vcf(c, _vcf_text(c))
    _older(Path(str(path) + ".tbi"))


@case("vcf_not_a_vcf")
def _(c):
    _write_vcf(c, "chrom,pos,ref,alt\nchr1,10,A,G\n", name="table.vcf", compress=False)


@case("vcf_missing_donor")
def _(c):
    c.sheet.loc[c.row(), "donor"] = "D9"
    c.culprit = "genotypes.vcf.gz"


@case("vcf_contigs_without_chr")
def _(c):
    text = _vcf_text(c).replace("ID=chr", "ID=").replace("\nchr", "\n")
    _write_vcf(c, text)  # the FASTA and BAMs agree on chr1: the VCF is blamed (a contig_map fixes it)


@case("vcf_no_records")
def _(c):
    _write_vcf(c, "".join(ln + "\n" for ln in _vcf_text(c).splitlines() if ln.startswith("#")))


@case("vcf_ref_differs_from_fasta", step="wasp_remap", outputs=("het_snps.parquet", "wasp"))
def _(c):
    lines = _vcf_text(c).splitlines()
    swap = {"A": "C", "C": "G", "G": "T", "T": "A"}
    n = 0
    for i, ln in enumerate(lines):
        f = ln.split("\t")
        if not ln.startswith("#") and len(f[3]) == 1 and len(f[4]) == 1 and n < 30:
            ref = swap[f[3]] if swap[f[3]] != f[4] else swap[swap[f[3]]]
            lines[i] = "\t".join([*f[:3], ref, *f[4:]])
            n += 1
    _write_vcf(c, "\n".join(lines) + "\n")


@case("contig_map_malformed")
def _(c):
    path = c.dir / "map.tsv"
    path.write_text("chr1\t1\textra\n")
    c.params["contig_map"] = str(path)
    c.culprit = path.name


# ------------------------------------------------------------------------------- peaks

@case("peaks_unknown_contig")
def _(c):
    _peaks(c, "chrZ\t100\t600\n")


@case("peaks_reversed_interval")
def _(c):
    _peaks(c, "chr1\t600\t100\n")


@case("peaks_one_column")
def _(c):
    _peaks(c, "chr1\n")


# ------------------------------------------------------------------------------- sample mix-up

@case("donor_labels_swapped", step="count_alleles", outputs=("counts", "count_alleles.summary.json"))
def _(c):
    from caveat.simulate import swap_donor_labels

    swap_donor_labels(c.dir, "D1", "D2")
    sheet = pd.read_csv(c.dir / "samplesheet.csv", dtype=str, keep_default_na=False)
    c.sheet = sheet[sheet["sample"].isin(SAMPLES)].reset_index(drop=True)
    c.culprit = "samplesheet.csv"


# ------------------------------------------------------------------------------- running

def _build(tiny_sim: Path, root: Path, id: str) -> Case:
    fn, kw = CASES[id]
    c = Case(id=id, dir=study_copy(tiny_sim, root / id), **kw)
    c.params = yaml.safe_load((c.dir / "params.yaml").read_text())
    sheet = pd.read_csv(c.dir / "samplesheet.csv", dtype=str, keep_default_na=False)
    c.sheet = sheet[sheet["sample"].isin(SAMPLES)].reset_index(drop=True)
    fn(c)
    c.sheet.to_csv(c.dir / "samplesheet.csv", index=False)
    if c.params_text is not None:
        (c.dir / "params.yaml").write_text(c.params_text)
    else:
        (c.dir / "params.yaml").write_text(yaml.safe_dump({k: v for k, v in c.params.items() if v is not None}))
    c.argv = ["run", *(c.argv or ["-p", str(c.dir / "params.yaml")]), "-o", str(c.out), "-t", "1"]
    return c


@pytest.fixture(scope="module")
def ran(tiny_sim, tmp_path_factory):
    """Every case built and run once: id → (case, exit code, stderr)."""
    root = tmp_path_factory.mktemp("hostile")
    cases = {id: _build(tiny_sim, root, id) for id in CASES}
    spec = [{"id": c.id, "argv": c.argv, "cwd": str(c.dir), "stdout": str(c.dir / "stdout.txt"),
             "stderr": str(c.dir / "stderr.txt"), "fsize_limit": c.fsize_limit} for c in cases.values()]
    (root / "cases.json").write_text(json.dumps(spec))
    subprocess.run([sys.executable, str(HERE / "cli_forkserver.py"), str(root / "cases.json"),
                    str(root / "results.json")], check=True, timeout=600, cwd=root)
    codes = json.loads((root / "results.json").read_text())
    while _HELD_LOCKS:
        os.close(_HELD_LOCKS.pop())
    return {id: (c, codes[id], (c.dir / "stderr.txt").read_text()) for id, c in cases.items()}


def test_there_are_at_least_40_cases():
    assert len(CASES) >= 40


@pytest.mark.parametrize("id", list(CASES))
def test_hostile_input_fails_cleanly(ran, id):
    c, code, err = ran[id]
    assert code != 0, f"{id}: exit 0\n{err[-2000:]}"
    assert "Traceback" not in err, err[-3000:]
    message = err[err.rfind("error:"):] if "error:" in err else err[-1500:]
    assert c.culprit in message, f"{id}: the message does not name {c.culprit!r}:\n{message}"
    assert "fix:" in message or "usage:" in message, message
    steps = c.out / "pipeline_info" / "steps"
    if c.step is None:  # refused before the first step: nothing ran, nothing was written
        assert not steps.exists() or not any(steps.iterdir()), sorted(p.name for p in steps.iterdir())
        if c.out.is_dir():
            written = [p for p in c.out.rglob("*") if p.is_file() and p.name != ".lock"]
            assert not written, written
    else:
        assert not (steps / f"{c.step}.json").exists()
        for rel in c.outputs:
            assert not (c.out / rel).exists(), f"{id}: {rel} was written by the failing step {c.step}"


@pytest.mark.parametrize("id", ["param_zero_batch_size", "bam_single_end", "vcf_contigs_without_chr"])
def test_forked_runs_match_plain_cli_runs(ran, id, tmp_path):
    """The fork server runs a command as ``python -m caveat.cli`` does: same exit code and message."""
    c, code, err = ran[id]
    argv = [a.replace(str(c.out), str(tmp_path / "out")) for a in c.argv]
    res = subprocess.run([sys.executable, "-m", "caveat.cli", *argv], cwd=c.dir, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == code
    assert res.stderr[res.stderr.rfind("error:"):] == err[err.rfind("error:"):]


def test_contig_hints_blame_the_file_that_differs(ran):
    """A contig_map renames VCF and peaks contigs, not BAM contigs: the hints say so."""
    assert "a contig_map renames VCF and peaks contigs, not BAM contigs" in ran["bam_contigs_without_chr"][2]
    assert "give the FASTA the reads were aligned to" in ran["fasta_contigs_without_chr"][2]
    assert "contig_map" in ran["vcf_contigs_without_chr"][2]
    assert "likely swapped (D2 ↔ D1)" in ran["donor_labels_swapped"][2]
