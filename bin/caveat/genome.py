"""The reference genome as compact integer codes (A=0, C=1, G=2, T=3, N=4).

One-hot encoding happens per batch on the device (see ``caveat.onehot``),
never on disk. Contig checks shared by the steps live here too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np

from .errors import InputError

BASES = "ACGTN"
#: byte → code lookup; anything not ACGT (upper or lower) is N (4)
CODE = np.full(256, 4, dtype=np.uint8)
for _i, _b in enumerate("ACGT"):
    CODE[ord(_b)] = _i
    CODE[ord(_b.lower())] = _i
#: code → complement code
COMPLEMENT = np.array([3, 2, 1, 0, 4], dtype=np.uint8)


def encode(seq: str | bytes) -> np.ndarray:
    """DNA string → uint8 codes, shape (L,)."""
    if isinstance(seq, str):
        seq = seq.encode("ascii")
    return CODE[np.frombuffer(seq, dtype=np.uint8)]


def decode(codes: np.ndarray) -> str:
    """uint8 codes → DNA string."""
    return np.frombuffer(np.frombuffer(b"ACGTN", dtype=np.uint8)[np.asarray(codes)].tobytes(), dtype="S1").tobytes().decode()


def reverse_complement_codes(codes: np.ndarray) -> np.ndarray:
    """Reverse complement of codes along the last axis."""
    return COMPLEMENT[codes[..., ::-1]]


def fasta_lengths(path: str | Path) -> dict[str, int]:
    """Contig name → length, from the ``.fai`` index (built if missing and writable)."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, "FASTA not found", "set `fasta` to the reference genome FASTA")
    fai = Path(str(path) + ".fai")
    if not fai.exists():
        import pysam

        try:
            pysam.faidx(str(path))
        except Exception as e:  # pysam raises SamtoolsError
            raise InputError(path, f"cannot index FASTA: {e}", "run `samtools faidx` on it or check it is plain/bgzipped FASTA") from None
    out: dict[str, int] = {}
    for line in fai.read_text().splitlines():
        f = line.split("\t")
        out[f[0]] = int(f[1])
    return out


def read_genome(path: str | Path, contigs: Iterable[str] | None = None) -> dict[str, np.ndarray]:
    """Read contigs of a FASTA as uint8 codes.

    Parameters
    ----------
    path : path
        FASTA (plain or bgzipped, indexed with ``.fai``).
    contigs : iterable of str, optional
        Contigs to read (default all, in file order).

    Returns
    -------
    dict
        contig → uint8 array of shape (length,).
    """
    import pysam

    lengths = fasta_lengths(path)
    names = list(lengths) if contigs is None else list(contigs)
    missing = [c for c in names if c not in lengths]
    if missing:
        raise InputError(path, f"contig {missing[0]!r} is not in the FASTA",
                         "use the FASTA the reads were aligned to, or give a contig_map")
    with pysam.FastaFile(str(path)) as fa:
        return {c: encode(fa.fetch(c)) for c in names}


def check_contigs(names: Iterable[str], reference: dict[str, int] | Iterable[str], *,
                  what: str, file: str | Path, reference_file: str | Path) -> None:
    """Raise a clear error when ``names`` (contigs used in ``file``) are not in the reference.

    Spots the common ``chr1`` vs ``1`` mismatch and says so.
    """
    ref = set(reference)
    missing = sorted(set(names) - ref)
    if not missing:
        return
    m = missing[0]
    hint = "give a contig_map (two columns: name in this file, name in the FASTA)"
    if m.startswith("chr") and m[3:] in ref:
        hint = f"the genome names contigs without 'chr' ({m[3:]!r}); " + hint
    elif ("chr" + m) in ref:
        hint = f"the genome names contigs with 'chr' ({'chr' + m!r}); " + hint
    raise InputError(file, f"{len(missing)} {what} contig(s) not in {reference_file}, e.g. {m!r}", hint)


def read_contig_map(path: str | Path | None) -> dict[str, str]:
    """Two-column TSV (name in VCF/peaks → name in FASTA/BAM) → dict; empty if None."""
    if not path:
        return {}
    out = {}
    for i, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        f = line.split()
        if len(f) != 2:
            raise InputError(path, f"line {i}: expected two columns, got {len(f)}", "write `name_in_vcf<TAB>name_in_fasta`")
        out[f[0]] = f[1]
    return out
