"""Cell barcodes of single-cell ATAC reads: the ``CB:Z`` tag of raw BAM records, hashed and looked up.

Cell Ranger ATAC writes the error-corrected cell barcode of each read in the ``CB:Z`` tag
(``AAACGAACAAGGTCGA-1``: sequence and GEM group); reads whose barcode could not be corrected
carry only ``CR`` and have no ``CB``. The fragments file's barcode column holds the same
string. Every per-barcode figure here starts from the tag's bytes:

* :func:`tag_spans` scans each record's aux data (SAM spec §4.2.4) in a numba kernel and
  returns where the tag's value lies in the chunk's bytes, so no Python object is made per read;
* :func:`value_hashes` gives each record a 64-bit FNV-1a hash of its barcode (0 = no tag):
  the per-barcode key of the WASP dedup (two barcodes share a hash with probability ~2⁻⁶⁴
  per pair, so distinct barcodes keep their identical fragments);
* :class:`BarcodeLookup` maps a barcode to its group code (a donor × cell type) by hash, then
  compares the bytes, so a barcode is in a group exactly when its string is in the table.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numba as nb
import numpy as np

from .errors import InputError

#: the tag Cell Ranger ATAC writes the corrected cell barcode to
CELL_BARCODE_TAG = "CB"
#: records read to decide that a BAM carries the tag at all (:func:`check_tag_present`)
PROBE_RECORDS = 10_000

_FNV_OFFSET = np.uint64(14695981039346656037)
_FNV_PRIME = np.uint64(1099511628211)


@nb.njit(cache=True, nogil=True)
def _aux_size(buf, o, typ):
    """Bytes of an aux value of type ``typ`` starting at ``buf[o]``; -1 if the type is unknown."""
    if typ == 65 or typ == 99 or typ == 67:  # A c C
        return 1
    if typ == 115 or typ == 83:  # s S
        return 2
    if typ == 105 or typ == 73 or typ == 102:  # i I f
        return 4
    if typ == 90 or typ == 72:  # Z H: NUL-terminated
        k = o
        while buf[k] != 0:
            k += 1
        return k - o + 1
    if typ == 66:  # B: subtype, int32 count, values
        sub = buf[o]
        n = np.int64(buf[o + 1]) | (np.int64(buf[o + 2]) << 8) | (np.int64(buf[o + 3]) << 16) \
            | (np.int64(buf[o + 4]) << 24)
        w = 1 if (sub == 99 or sub == 67) else 2 if (sub == 115 or sub == 83) else 4
        return 5 + n * w
    return -1


@nb.njit(cache=True, nogil=True)
def tag_spans(buf, offs, t0, t1):
    """Where each record's ``Z`` tag ``t0 t1`` holds its value.

    Parameters
    ----------
    buf : uint8 array
        Raw records (``block_size`` included), as in :class:`caveat.bam_records.Chunk`.
    offs : int64 array, shape (n_records,)
    t0, t1 : int
        The tag's two characters (``ord('C'), ord('B')``).

    Returns
    -------
    start : int64 array, shape (n_records,)
        Offset of the value's first byte in ``buf``; -1 when the record has no such tag,
        -2 when the tag is there but not of type ``Z``, -3 when the aux data is malformed.
    length : int64 array, shape (n_records,)
        Bytes of the value (NUL excluded); 0 when absent.
    """
    n = offs.shape[0]
    start = np.full(n, -1, np.int64)
    length = np.zeros(n, np.int64)
    for i in range(n):
        o = offs[i]
        bs = np.int64(buf[o]) | (np.int64(buf[o + 1]) << 8) | (np.int64(buf[o + 2]) << 16) \
            | (np.int64(buf[o + 3]) << 24)
        end = o + 4 + bs
        p = o + 4
        lrn = np.int64(buf[p + 8])
        ncig = np.int64(buf[p + 12]) | (np.int64(buf[p + 13]) << 8)
        lseq = np.int64(buf[p + 16]) | (np.int64(buf[p + 17]) << 8) | (np.int64(buf[p + 18]) << 16) \
            | (np.int64(buf[p + 19]) << 24)
        a = p + 32 + lrn + 4 * ncig + (lseq + 1) // 2 + lseq
        while a + 3 <= end:
            typ = buf[a + 2]
            if buf[a] == t0 and buf[a + 1] == t1:
                if typ != 90:
                    start[i] = -2
                    break
                k = a + 3
                while k < end and buf[k] != 0:
                    k += 1
                if k >= end:
                    start[i] = -3
                    break
                start[i] = a + 3
                length[i] = k - (a + 3)
                break
            sz = _aux_size(buf, a + 3, typ)
            if sz < 0 or a + 3 + sz > end:
                start[i] = -3
                break
            a += 3 + sz
    return start, length


@nb.njit(cache=True, nogil=True)
def span_hashes(buf, start, length):
    """FNV-1a hash of each value ``buf[start:start+length]`` (uint64, shape (n,)); 0 where start < 0."""
    n = start.shape[0]
    out = np.zeros(n, np.uint64)
    for i in range(n):
        if start[i] < 0:
            continue
        x = np.uint64(14695981039346656037)
        for j in range(start[i], start[i] + length[i]):
            x = (x ^ np.uint64(buf[j])) * np.uint64(1099511628211)
        out[i] = x | np.uint64(1)  # never 0: 0 means "no barcode"
    return out


def string_hashes(values: Sequence[str]) -> np.ndarray:
    """The :func:`span_hashes` of Python strings (uint64, shape (n,))."""
    out = np.empty(len(values), np.uint64)
    with np.errstate(over="ignore"):
        for i, v in enumerate(values):
            x = _FNV_OFFSET
            for b in v.encode():
                x = (x ^ np.uint64(b)) * _FNV_PRIME
            out[i] = x | np.uint64(1)
    return out


def _tag_bytes(tag: str) -> tuple[int, int]:
    if len(tag) != 2 or not tag.isascii():
        raise InputError("barcode_tag", f"{tag!r} is not a two-character SAM tag", "use CB (Cell Ranger's cell barcode)")
    return ord(tag[0]), ord(tag[1])


def record_spans(buf: np.ndarray, offs: np.ndarray, tag: str = CELL_BARCODE_TAG,
                 where: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """:func:`tag_spans` of a chunk, refusing a tag of the wrong type or broken aux data.

    Raises
    ------
    InputError
        Naming ``where`` (the BAM), the first bad record and the fix.
    """
    start, length = tag_spans(buf, offs, *_tag_bytes(tag))
    bad = np.flatnonzero(start < -1)
    if len(bad):
        i = int(bad[0])
        what = f"its {tag} tag is not of type Z (a string)" if start[i] == -2 else "its aux data is malformed"
        raise InputError(where, f"record {_record_name(buf, offs[i])!r}: {what}",
                         f"give the BAM Cell Ranger wrote (possorted_bam.bam), whose {tag}:Z tags hold the barcodes")
    return start, length


def value_hashes(buf: np.ndarray, offs: np.ndarray, tag: str = CELL_BARCODE_TAG,
                 where: str | Path | None = None) -> np.ndarray:
    """Each record's barcode hash (uint64, shape (n_records,)); 0 for a record without the tag."""
    start, length = record_spans(buf, offs, tag, where)
    return span_hashes(buf, start, length)


def _record_name(buf: np.ndarray, off: int) -> str:
    lrn = int(buf[off + 4 + 8])
    return bytes(buf[off + 4 + 32:off + 4 + 32 + lrn - 1]).decode(errors="replace")


@nb.njit(cache=True, nogil=True)
def _lookup(buf, start, length, hashes, keys_sorted, key_index, table, table_offs, codes):
    n = start.shape[0]
    out = np.full(n, -1, np.int64)
    m = keys_sorted.shape[0]
    for i in range(n):
        if start[i] < 0:
            continue
        j = np.searchsorted(keys_sorted, hashes[i])
        if j >= m or keys_sorted[j] != hashes[i]:
            continue
        t = key_index[j]
        a, b = table_offs[t], table_offs[t + 1]
        if b - a != length[i]:
            continue
        same = True
        for k in range(b - a):
            if table[a + k] != buf[start[i] + k]:
                same = False
                break
        if same:
            out[i] = codes[t]
    return out


class BarcodeLookup:
    """Barcode string → group code, applied to raw records.

    Parameters
    ----------
    codes : mapping
        barcode → group code (int ≥ 0), e.g. ``single_cell.barcode_group_codes(...)[0]``.
    where : str or Path, optional
        The barcode table (named in errors).

    Raises
    ------
    InputError
        A negative code, or two barcodes of the table with one 64-bit hash (never seen in
        practice; refused rather than silently merged).
    """

    def __init__(self, codes: Mapping[str, int], where: str | Path | None = None):
        names = list(codes)
        self.codes = np.array([int(codes[b]) for b in names], np.int64)
        if len(self.codes) and self.codes.min() < 0:
            raise InputError(where, "a barcode group code below 0", "number the groups 0, 1, 2 …")
        h = string_hashes(names)
        order = np.argsort(h, kind="stable")
        self.keys = h[order]
        if len(self.keys) > 1 and (self.keys[1:] == self.keys[:-1]).any():
            k = int(np.flatnonzero(self.keys[1:] == self.keys[:-1])[0])
            raise InputError(where, f"barcodes {names[order[k]]!r} and {names[order[k + 1]]!r} share a 64-bit hash",
                             "report this (a hash collision between two barcodes)")
        self.key_index = order.astype(np.int64)
        enc = [b.encode() for b in names]
        self.table = np.frombuffer(b"".join(enc), np.uint8) if enc else np.empty(0, np.uint8)
        self.table_offs = np.concatenate([[0], np.cumsum([len(e) for e in enc])]).astype(np.int64)
        self.n = len(names)
        #: groups the codes index (codes 0 … n_groups-1)
        self.n_groups = int(self.codes.max()) + 1 if len(self.codes) else 0

    def record_codes(self, buf: np.ndarray, offs: np.ndarray, tag: str = CELL_BARCODE_TAG,
                     where: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(group code, has tag) per record, each shape (n_records,); code -1 when the record has
        no tag or its barcode is not in the table."""
        start, length = record_spans(buf, offs, tag, where)
        hashes = span_hashes(buf, start, length)
        return (_lookup(buf, start, length, hashes, self.keys, self.key_index, self.table, self.table_offs,
                        self.codes), start >= 0)

    def string_codes(self, barcodes: Sequence[str]) -> np.ndarray:
        """Group code of each barcode string (-1 when not in the table), shape (n,)."""
        enc = [b.encode() for b in barcodes]
        buf = np.frombuffer(b"".join(enc), np.uint8) if enc else np.empty(0, np.uint8)
        length = np.array([len(e) for e in enc], np.int64)
        start = np.concatenate([[0], np.cumsum(length)[:-1]]).astype(np.int64) if len(enc) else length
        return _lookup(buf, start, length, string_hashes(list(barcodes)), self.keys, self.key_index, self.table,
                       self.table_offs, self.codes)


def check_tag_present(bam: str | Path, tag: str = CELL_BARCODE_TAG, probe: int = PROBE_RECORDS) -> None:
    """A single-cell library's BAM must carry ``tag``: refuse one whose first ``probe``
    records (of any contig) all lack it, before any output is written.

    Raises
    ------
    InputError
        Naming the BAM, the first record read and the fix.
    """
    import pysam

    _tag_bytes(tag)
    first = None
    with pysam.AlignmentFile(str(bam), "rb") as f:
        for i, rec in enumerate(f.fetch(until_eof=True)):
            if rec.has_tag(tag):
                return
            first = first or rec.query_name
            if i + 1 >= probe:
                break
    if first is None:
        return  # no records: nothing to check (the steps report an empty BAM themselves)
    raise InputError(bam, f"none of its first {min(probe, i + 1)} records carries a {tag} tag (first record: "
                     f"{first!r}): it is not a barcode-tagged single-cell BAM",
                     f"give the library's Cell Ranger possorted_bam.bam (reads tagged {tag}:Z:<barcode>), or list "
                     "the sample as a bulk BAM in the samplesheet")


def read_barcode_list(path: str | Path) -> list[str]:
    """Barcodes of a table: a TSV/CSV with a ``barcode`` column, or one barcode per line.

    Raises
    ------
    InputError
        No barcodes in the file.
    """
    import pandas as pd

    path = Path(path)
    if not path.exists():
        raise InputError(path, "barcode table not found", "give the library's barcode table")
    first = path.read_text().splitlines()[:1]
    sep = "," if first and "," in first[0] and "\t" not in first[0] else "\t"
    if first and "barcode" in first[0].split(sep):
        values = pd.read_csv(path, sep=sep, dtype=str)["barcode"].dropna().tolist()
    else:
        values = [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
    if not values:
        raise InputError(path, "no barcodes in the table", "list one barcode per line or give a `barcode` column")
    return values
