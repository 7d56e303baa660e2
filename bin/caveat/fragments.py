"""Cell Ranger ATAC fragment files: Tn5 insertion sites per barcode group.

Format (10x Genomics, "Cell Ranger ATAC count: Fragments File"): bgzipped, tabix-indexed
(``--preset=bed``), one line per unique fragment, ``chrom, start, end, barcode, count``,
0-based; ``#`` header lines. The interval is the read pair's alignment span moved **+4** at the
left end and **−5** at the right end: Cell Ranger has already applied the Tn5 shift, and both
ends are insertion sites. ``end`` is BED-exclusive, so the right insertion is the base
``end − 1``.

Convention followed here (docs/CONVENTIONS.md, "Single-cell fragments"): a fragment gives the
two 0-based insertion sites ``start`` and ``end − 1`` — exactly :mod:`caveat.insertions`'
BAM rule (``frag_start + 4`` and ``frag_end − 1 − 5``) applied to the same read pair, so tracks
from the fragment file equal tracks from the BAM's reads. It is ArchR's reading (1-based
``start + 1`` and ``end``); BPCells instead counts the base ``end`` (one to the right). Each
line counts **once**: column 5 is the number of PCR duplicate read pairs Cell Ranger collapsed
into it, which ArchR and Signac ignore for counts.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd

from .barcodes import BarcodeLookup
from .errors import InputError

_FIX_FORMAT = ("give Cell Ranger's fragments.tsv.gz: tab-separated chrom, start, end, barcode, count, "
               "0-based, start < end, bgzipped and tabix-indexed")


def open_fragments(path: str | Path):
    """The fragment file as a ``pysam.TabixFile``.

    Raises
    ------
    InputError
        The file is missing, has no ``.tbi`` index beside it, or is not bgzipped.
    """
    import pysam

    path = Path(path)
    if not path.exists():
        raise InputError(path, "fragments file not found", "fix the fragments path in the samplesheet")
    if not Path(str(path) + ".tbi").exists() and not Path(str(path) + ".csi").exists():
        raise InputError(path, "the fragments file has no tabix index (.tbi) beside it",
                         f"index it: tabix -p bed {path.name} (Cell Ranger writes {path.name}.tbi next to it)")
    try:
        return pysam.TabixFile(str(path))
    except (OSError, ValueError) as e:
        raise InputError(path, f"cannot open as a tabix-indexed file ({e})",
                         f"compress with bgzip (not gzip) and index: tabix -p bed {path.name}") from None


def contig_fragments(tbx, contig: str, path: str | Path) -> pd.DataFrame:
    """The fragments of one contig: columns start, end (int64) and barcode (str), file order.

    Raises
    ------
    InputError
        A line with fewer than four columns, non-integer or negative coordinates, or
        ``end <= start``, naming the file, the contig and the line.
    """
    if contig not in tbx.contigs:
        return pd.DataFrame({"start": np.empty(0, np.int64), "end": np.empty(0, np.int64),
                             "barcode": pd.Series([], dtype=object)})
    try:
        lines = list(tbx.fetch(contig))
    except (OSError, ValueError) as e:
        raise InputError(path, f"reading {contig} failed ({e})", "check the file with `tabix -l`; re-create "
                         "it with bgzip and tabix -p bed") from None
    text = "\n".join(lines)
    try:
        df = pd.read_csv(io.StringIO(text), sep="\t", header=None, usecols=[0, 1, 2, 3], dtype={3: str},
                         names=range(max(4, _n_cols(lines))), comment="#")
    except (ValueError, pd.errors.ParserError) as e:
        raise InputError(path, f"{contig}: unreadable fragment lines ({e})", _FIX_FORMAT) from None
    start = pd.to_numeric(df[1], errors="coerce")
    end = pd.to_numeric(df[2], errors="coerce")
    bad = start.isna() | end.isna() | df[3].isna() | (start < 0) | (end <= start)
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise InputError(path, f"{contig}: fragment line {lines[i]!r} is not `chrom start end barcode count` "
                         "with 0 <= start < end", _FIX_FORMAT)
    return pd.DataFrame({"start": start.to_numpy(np.int64), "end": end.to_numpy(np.int64),
                         "barcode": df[3].to_numpy(object)})


def _n_cols(lines: list[str]) -> int:
    return max((ln.count("\t") + 1 for ln in lines[:100]), default=4)


def insertion_sites(start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """Both Tn5 insertion sites of each fragment (0-based): ``start`` then ``end - 1``.

    Parameters
    ----------
    start, end : int64 arrays, shape (n,)
        Cell Ranger's (already shifted) BED interval.

    Returns
    -------
    int64 array, shape (2 n,)
    """
    return np.concatenate([start, end - 1]).astype(np.int64)


def group_sites(frags: pd.DataFrame, lookup: BarcodeLookup) -> tuple[dict[int, tuple[np.ndarray, np.ndarray]], dict]:
    """Insertion counts per barcode group of one contig's fragments.

    Parameters
    ----------
    frags : DataFrame
        :func:`contig_fragments`.
    lookup : BarcodeLookup
        barcode → group code; fragments of other barcodes are not counted.

    Returns
    -------
    sites : dict
        group code → (pos, count), int64 arrays of shape (m,), pos sorted and distinct.
    figures : dict
        ``fragments`` (counted), ``outside_table`` (fragments of barcodes not in the table).
    """
    inv, uniq = pd.factorize(frags["barcode"], sort=False) if len(frags) else (None, [])
    code = lookup.string_codes(list(uniq))[inv] if len(frags) else np.empty(0, np.int64)
    keep = code >= 0
    s = insertion_sites(frags["start"].to_numpy()[keep], frags["end"].to_numpy()[keep])
    g = np.concatenate([code[keep], code[keep]])
    out = {}
    if len(s):
        key = np.unique(np.stack([g, s], axis=1), axis=0, return_counts=True)
        (pairs, counts) = key
        bounds = np.flatnonzero(np.r_[True, pairs[1:, 0] != pairs[:-1, 0], True])
        for a, b in zip(bounds[:-1], bounds[1:]):
            out[int(pairs[a, 0])] = (pairs[a:b, 1].astype(np.int64), counts[a:b].astype(np.int64))
    return out, {"fragments": int(keep.sum()), "outside_table": int((~keep).sum())}


def iter_contigs(path: str | Path, contigs) -> Iterator[tuple[str, pd.DataFrame]]:
    """(contig, :func:`contig_fragments`) for each of ``contigs``, the file opened once."""
    tbx = open_fragments(path)
    try:
        unknown = sorted(set(tbx.contigs) - set(contigs))
        if unknown:
            raise InputError(path, f"contig {unknown[0]!r} of the fragments file is not in the genome FASTA",
                             "use the FASTA (reference) Cell Ranger aligned the library to")
        for c in contigs:
            yield c, contig_fragments(tbx, c, path)
    finally:
        tbx.close()
