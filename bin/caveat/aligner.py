"""The short-read aligner used to remap allele-swapped reads (bowtie2 or bwa mem).

WASP's guarantee holds only when the swapped reads are remapped with the same
aligner, index and settings as the original reads, so these are params.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path

from .errors import InputError

ALIGNERS = ("bowtie2", "bwa")
_INDEX_FILES = {"bowtie2": (".1.bt2", ".1.bt2l"), "bwa": (".bwt", ".bwt.2bit.64")}


def check_aligner(aligner: str, index: str | Path) -> None:
    """The aligner must be known and installed, and its index must exist."""
    if aligner not in ALIGNERS:
        raise InputError("aligner", f"unknown aligner {aligner!r}", f"set aligner to one of {', '.join(ALIGNERS)}")
    if shutil.which(aligner) is None:
        raise InputError("aligner", f"{aligner} is not on PATH", f"install {aligner} (the aligner the reads were mapped with)")
    if not any(Path(str(index) + ext).exists() for ext in _INDEX_FILES[aligner]):
        raise InputError(index, f"{aligner} index not found (no {index}{_INDEX_FILES[aligner][0]})",
                         f"set aligner_index to the index prefix the reads were aligned with, or leave it null to build a {aligner} index from fasta")


def build_index(aligner: str, fasta: str | Path, prefix: str | Path, threads: int = 1) -> Path:
    """Build an aligner index of ``fasta`` at ``prefix`` (skipped when present)."""
    prefix = Path(prefix)
    if any(Path(str(prefix) + ext).exists() for ext in _INDEX_FILES.get(aligner, ())):
        return prefix
    prefix.parent.mkdir(parents=True, exist_ok=True)
    if aligner == "bowtie2":
        cmd = ["bowtie2-build", "--threads", str(threads), "-q", str(fasta), str(prefix)]
    elif aligner == "bwa":
        cmd = ["bwa", "index", "-p", str(prefix), str(fasta)]
    else:
        raise InputError("aligner", f"unknown aligner {aligner!r}", f"set aligner to one of {', '.join(ALIGNERS)}")
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise InputError(fasta, f"building the {aligner} index failed: {r.stderr.strip()[-500:]}", "check the FASTA")
    return prefix


def align_command(aligner: str, index: str | Path, args: str, fq1: Path, fq2: Path | None,
                  threads: int = 1) -> list[str]:
    """Command that aligns FASTQ(s) and writes SAM to stdout (input order kept)."""
    extra = shlex.split(args or "")
    if aligner == "bowtie2":
        cmd = ["bowtie2", "-p", str(threads), "--reorder", "--no-unal", "-x", str(index), *extra]
        return cmd + (["-1", str(fq1), "-2", str(fq2)] if fq2 else ["-U", str(fq1)])
    if aligner == "bwa":
        return ["bwa", "mem", "-t", str(threads), *extra, str(index), str(fq1)] + ([str(fq2)] if fq2 else [])
    raise InputError("aligner", f"unknown aligner {aligner!r}", f"set aligner to one of {', '.join(ALIGNERS)}")


def align(aligner: str, index: str | Path, args: str, fq1: Path, fq2: Path | None, sam: Path,
          threads: int = 1) -> None:
    """Run the aligner; SAM to ``sam``."""
    cmd = align_command(aligner, index, args, fq1, fq2, threads)
    with open(sam, "wb") as out:
        r = subprocess.run(cmd, stdout=out, stderr=subprocess.PIPE)
    if r.returncode != 0:
        raise InputError(index, f"{aligner} failed (exit {r.returncode}): {r.stderr.decode(errors='replace').strip()[-500:]}",
                         "check aligner_args and the index")
