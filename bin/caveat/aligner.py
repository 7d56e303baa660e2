"""The short-read aligner used to remap allele-swapped reads (bowtie2 or bwa mem).

WASP's guarantee holds only when the swapped reads are remapped with the same
aligner, index and settings as the original reads, so these are params.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path

from .errors import InputError, killed_writing

ALIGNERS = ("bowtie2", "bwa")
_INDEX_FILES = {"bowtie2": (".1.bt2", ".1.bt2l"), "bwa": (".bwt", ".bwt.2bit.64")}
#: each aligner's default ``aligner_args``: the param's default is bowtie2's; with ``aligner: bwa``
#: and that default left unchanged, bwa mem runs with its own defaults (Cell Ranger ATAC aligns
#: with bwa mem; the bowtie2 options are not bwa options) — see :func:`args_for`
DEFAULT_ARGS = {"bowtie2": "--very-sensitive -X 2000", "bwa": ""}
#: ``bwa mem``'s getopt string (bwa 0.7.17 fastmap.c, main_mem): a letter followed by ':' takes a value
BWA_MEM_OPTS = "51qpaMCSPVYjuk:c:v:s:r:t:R:A:B:O:E:U:w:L:d:T:Q:D:m:I:N:o:f:W:x:G:h:y:K:X:H:F:z:"


def check_aligner(aligner: str, index: str | Path, args: str | None = None) -> None:
    """The aligner must be known and installed, its index must exist and its
    options (``aligner_args``, when given) must be plain options: checked
    before the filter's first pass, not when the aligner is finally run."""
    if args is not None:
        tokens = parse_aligner_args(args_for(aligner, args))
        if aligner == "bwa":
            check_bwa_mem_args(tokens)
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


#: characters a shell gives a meaning to; none is ever needed in an aligner option
SHELL_META = frozenset(";|&$`<>()\n\r'\"")
_ARGS_FIX = ("write aligner_args as plain options separated by spaces, e.g. \"--very-sensitive -X 2000\" "
             "(no ; | & $ ` < > ( ) quotes or newlines: the arguments go to the aligner, never to a shell)")


def parse_aligner_args(args: str | None) -> list[str]:
    """Tokens of ``aligner_args`` (shell-like splitting), refusing shell metacharacters.

    The aligner is run without a shell, so a metacharacter could only be a
    mistake or an attempt to run a command; either way it is an error.

    Raises
    ------
    InputError
        Naming the param, the offending token and the fix.
    """
    if "\n" in (args or "") or "\r" in (args or ""):  # shlex would take a newline for a space; a shell would not
        raise InputError("aligner_args", f"{args!r} spans several lines", _ARGS_FIX)
    try:
        tokens = shlex.split(args or "")
    except ValueError as e:  # unbalanced quotes
        raise InputError("aligner_args", f"cannot split {args!r} into options ({e})", _ARGS_FIX) from None
    for t in tokens:
        bad = sorted(set(t) & SHELL_META)
        if bad:
            raise InputError("aligner_args", f"option {t!r} contains the shell metacharacter(s) {''.join(bad)!r}",
                             _ARGS_FIX)
    return tokens


def _bowtie2_program(index: str | Path, extra: list[str]) -> tuple[list[str], list[str]]:
    """(program, remaining options) for bowtie2: its aligner binary, not the ``bowtie2`` Perl
    wrapper, which joins its arguments into a shell command line (paths with ``$(...)`` would run)."""
    large = "--large-index" in extra or (not Path(str(index) + ".1.bt2").exists()
                                         and Path(str(index) + ".1.bt2l").exists())
    extra = [t for t in extra if t != "--large-index"]  # a wrapper option; the binary choice does it
    binary = shutil.which("bowtie2-align-l" if large else "bowtie2-align-s")
    if binary is not None:
        return [binary, "--wrapper", "basic-0"], extra  # "basic-0": no "run the wrapper" warning
    return ["bowtie2"], extra + (["--large-index"] if large else [])


def _refuse_meta_paths(paths: dict[str, str | Path | None]) -> None:
    """Only for the ``bowtie2`` wrapper (no aligner binary found): it puts paths in "..." on a
    shell command line, so refuse what a shell expands there."""
    for what, value in paths.items():
        bad = sorted(set(str(value or "")) & SHELL_META)
        if bad:
            raise InputError(value, f"the {what} path contains the shell metacharacter(s) {''.join(bad)!r} and "
                             "bowtie2-align-s is not installed (the bowtie2 wrapper would pass it to a shell)",
                             "install bowtie2 completely (with bowtie2-align-s) or use an outdir/index path without them")


def align_command(aligner: str, index: str | Path, args: str, fq1: Path, fq2: Path | None,
                  threads: int = 1) -> list[str]:
    """Command that aligns FASTQ(s) and writes SAM to stdout (input order kept).

    It is run without a shell; ``args`` (``aligner_args``) is split with
    :func:`parse_aligner_args`.
    """
    extra = parse_aligner_args(args_for(aligner, args))
    if aligner == "bowtie2":
        prog, extra = _bowtie2_program(index, extra)
        if prog == ["bowtie2"]:
            _refuse_meta_paths({"aligner_index": index, "FASTQ": fq1, "mate-2 FASTQ": fq2})
        cmd = [*prog, "-p", str(threads), "--reorder", "--no-unal", "-x", str(index), *extra]
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
        err = r.stderr.decode(errors="replace").strip()
        storage = killed_writing(r.returncode, err)
        if storage:  # the disk, not the index or the arguments
            raise InputError(sam.parent, f"{aligner} could not write its alignments ({storage})",
                             "free space or raise the file size limit where the outdir is, then rerun")
        raise InputError(index, f"{aligner} failed (exit {r.returncode}): {err[-500:]}",
                         "check aligner_args and the index")


def args_for(aligner: str, args: str | None) -> str | None:
    """The arguments the remap runs with: ``args``, or the aligner's :data:`DEFAULT_ARGS` when
    ``args`` is another aligner's default (``aligner: bwa`` with ``aligner_args`` left at
    bowtie2's default runs bwa mem's defaults, not bowtie2 options bwa would refuse)."""
    if aligner in DEFAULT_ARGS and args is not None and args != DEFAULT_ARGS[aligner] \
            and args in DEFAULT_ARGS.values():
        return DEFAULT_ARGS[aligner]
    return args


def check_bwa_mem_args(tokens: list[str]) -> None:
    """``bwa mem`` options must be its own (:data:`BWA_MEM_OPTS`, POSIX getopt: single letters,
    possibly bundled, a value after those that take one); refused before the first pass, where
    bwa itself would stop only at the remap with ``mem: invalid option``.

    Raises
    ------
    InputError
        Naming the option and the fix.
    """
    takes = {c: BWA_MEM_OPTS[i + 1:i + 2] == ":" for i, c in enumerate(BWA_MEM_OPTS) if c != ":"}
    i = 0
    while i < len(tokens):
        t = tokens[i]
        if not t.startswith("-") or t == "-" or t.startswith("--"):
            raise InputError("aligner_args", f"{t!r} is not a bwa mem option (bwa mem takes single-letter options "
                             "such as -M -k 19; bowtie2 options like --very-sensitive are not bwa's)",
                             "set aligner_args to the bwa mem options the BAM was aligned with (Cell Ranger ATAC: "
                             "leave them empty), or set aligner: bowtie2")
        for j, c in enumerate(t[1:]):
            if c not in takes:
                raise InputError("aligner_args", f"-{c} (in {t!r}) is not a bwa mem option",
                                 "see `bwa mem` for its options; set aligner_args to those the BAM was aligned with")
            if takes[c]:
                if j + 2 == len(t):  # value in the next token
                    if i + 1 >= len(tokens):
                        raise InputError("aligner_args", f"bwa mem option -{c} needs a value", "give -" + c + " VALUE")
                    i += 1
                break
        i += 1


#: @PG program names of the aligners this step runs, and of pipelines that align with one of them
_PG_ALIGNERS = {"bowtie2": "bowtie2", "bwa": "bwa", "cellranger-atac": "bwa", "cellranger-arc": "bwa",
                "cellranger": "bwa"}
#: options that name files, threads or read groups: not alignment settings
_IO_OPTS = {"-x", "-1", "-2", "-U", "-S", "-p", "--threads", "-t", "-o", "--rg-id", "--rg", "-R", "-b",
            "--un", "--al", "--met-file", "--wrapper"}
#: flags that change the output's order or verbosity, not where reads align
_NEUTRAL_FLAGS = {"--reorder", "--no-unal", "--quiet", "--no-hd", "--no-sq", "-v"}


def pg_programs(header_text: str) -> list[dict[str, str]]:
    """The ``@PG`` lines of a SAM header as dicts of their fields (``ID``, ``PN``, ``VN``, ``CL`` …), in order."""
    out = []
    for line in header_text.splitlines():
        if line.startswith("@PG\t"):
            out.append(dict(f.split(":", 1) for f in line.split("\t")[1:] if ":" in f))
    return out


def _option_set(cl: str) -> set[str]:
    """The alignment options of a command line (program and file/thread options left out)."""
    try:
        toks = shlex.split(cl)
    except ValueError:
        toks = cl.split()
    opts, skip = set(), False
    for t in toks:
        if skip:
            skip = False
            continue
        if t in _IO_OPTS:
            skip = True
            continue
        if t.startswith("-") and len(t) > 1 and t not in _NEUTRAL_FLAGS:
            opts.add(t)
    return opts


def provenance_warning(header_text: str, aligner: str, args: str | None, bam) -> str | None:
    """A warning when the BAM's ``@PG`` lines say it was aligned with another aligner, or with
    other options, than the remap will use; None when they agree or the header does not say.

    WASP's guarantee needs the remap to use the original aligner and settings; Cell Ranger ATAC
    aligns with bwa mem (its ``@PG`` may name ``cellranger-atac`` or ``bwa``).
    """
    made = []
    for pg in pg_programs(header_text):
        name = (pg.get("PN") or pg.get("ID") or "").split(".")[0].lower()
        if name in _PG_ALIGNERS:
            made.append((_PG_ALIGNERS[name], pg))
    if not made:
        return None
    used, pg = made[0]  # the first aligner line: later @PG lines are post-processing
    what = f"{pg.get('PN') or pg.get('ID')}" + (f" {pg['VN']}" if pg.get("VN") else "")
    if used != aligner:
        return (f"{bam}: its @PG header says it was aligned with {what} ({used}), but the WASP remap is configured "
                f"with {aligner} {args_for(aligner, args) or ''}".rstrip() + f"; set aligner: {used} and its arguments, or WASP's "
                "same-mapping test compares two different aligners")
    cl = pg.get("CL", "")
    name = (pg.get("PN") or pg.get("ID") or "").lower()
    if not cl or not name.startswith(aligner):
        return None  # a pipeline (cellranger-atac) line: its command is not the aligner's
    mine, theirs = _option_set(" ".join(parse_aligner_args(args_for(aligner, args)))), _option_set(cl)
    if mine != theirs:
        return (f"{bam}: aligned with {what} options {' '.join(sorted(theirs)) or '(none)'} (its @PG CL: {cl}), but "
                f"the WASP remap uses {' '.join(sorted(mine)) or '(none)'}; set aligner_args to the BAM's options")
    return None
