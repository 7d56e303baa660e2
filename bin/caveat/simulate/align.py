"""Alignment with bowtie2 (so reference mapping bias is real), piped into a
coordinate sort; headers rewritten so BAMs carry no absolute paths."""

from __future__ import annotations

import subprocess
from pathlib import Path

from ..errors import InputError

#: bowtie2 alignment arguments (params.yaml ``aligner_args``; WASP remaps with the same)
BOWTIE2_ARGS = "--end-to-end --sensitive -X 1000 --no-mixed --no-discordant --seed 0"


def _run(cmd: list, cwd: Path, **kw) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(cmd, cwd=cwd, check=True, capture_output=True, **kw)
    except FileNotFoundError:
        raise InputError(cmd[0], "tool not found on PATH", "install bowtie2 and samtools (`make setup`)") from None
    except subprocess.CalledProcessError as e:
        raise RuntimeError(f"{' '.join(cmd)} failed: {e.stderr.decode(errors='replace')[-2000:]}") from None


def build_index(workdir: Path, fasta: str = "genome.fa", prefix: str = "genome") -> None:
    """bowtie2-build with one thread and a fixed seed (byte-identical index)."""
    _run(["bowtie2-build", "--threads", "1", "--seed", "0", "-q", fasta, prefix], workdir)


def bowtie2_version() -> str:
    out = subprocess.run(["bowtie2", "--version"], capture_output=True, text=True).stdout
    return out.split("version")[1].split()[0] if "version" in out else "unknown"


def align_sample(workdir: Path, sample: str, donor: str, r1: str, r2: str, bam: str, threads: int) -> dict:
    """Align one sample's pairs; write a sorted, indexed BAM (paths relative to ``workdir``).

    Returns bowtie2's alignment summary lines."""
    rg = ["--rg-id", sample, "--rg", f"SM:{donor}", "--rg", "PL:ILLUMINA", "--rg", f"LB:{sample}"]
    bt = ["bowtie2", *BOWTIE2_ARGS.split(), "-p", str(threads), "--reorder", *rg, "-x", "genome", "-1", r1, "-2", r2]
    tmp = bam + ".unheadered.bam"
    sort = ["samtools", "sort", "--no-PG", "-@", str(max(0, threads - 1)), "-m", "512M", "-l", "6",
            "-T", bam + ".sorttmp", "-o", tmp, "-"]
    p1 = subprocess.Popen(bt, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p2 = subprocess.Popen(sort, cwd=workdir, stdin=p1.stdout, stderr=subprocess.PIPE)
    p1.stdout.close()
    err2 = p2.communicate()[1]
    err1 = p1.stderr.read()
    p1.wait()
    if p1.returncode or p2.returncode:
        raise RuntimeError(f"bowtie2 | samtools sort failed for {sample}: {err1.decode()[-1500:]} {err2.decode()[-500:]}")
    header = _run(["samtools", "view", "-H", tmp], workdir, text=True).stdout.splitlines()
    clean = [h for h in header if not h.startswith("@PG")]
    clean.append(f"@PG\tID:bowtie2\tPN:bowtie2\tVN:{bowtie2_version()}\t"
                 f"CL:bowtie2 {BOWTIE2_ARGS} --reorder -x genome -1 {Path(r1).name} -2 {Path(r2).name}")
    hdr = workdir / (bam + ".header.sam")
    hdr.write_text("\n".join(clean) + "\n")
    with open(workdir / bam, "wb") as fh:
        subprocess.run(["samtools", "reheader", "-P", bam + ".header.sam", tmp],
                       cwd=workdir, stdout=fh, check=True)
    (workdir / tmp).unlink()
    hdr.unlink()
    _run(["samtools", "index", bam], workdir)
    return {"bowtie2": [ln.strip() for ln in err1.decode().splitlines() if ln.strip()]}
