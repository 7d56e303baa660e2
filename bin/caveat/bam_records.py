"""BAM records as raw bytes + numpy field arrays (the fast path of WASP and counting).

A chromosome's records are streamed as uncompressed BAM (``samtools view -u``,
decompressed by htslib), cut into chunks of whole records and decoded into
numpy arrays by numba kernels. Reads that need no per-read work (most of
them) are passed through as their original bytes, so the per-read cost is a
few array operations, not a Python object.

Record layout (SAM spec §4.2), offsets after ``block_size``: refID 0, pos 4,
l_read_name 8, mapq 9, bin 10, n_cigar_op 12, flag 14, l_seq 16,
next_refID 20, next_pos 24, tlen 28, read_name 32, cigar, seq, qual, tags.

Why hand-written (``benchmarks/bench_libraries.py``, ``docs/benchmarks.md``; 1.5 M reads):
decoding the fixed fields of every record into arrays is 4.4× faster than
``pysam`` iteration (2.3× through ``samtools view -u``) and 1.3× faster than
``oxbow`` (Arrow), with the same values; and no library hands back each
record's raw bytes next to its fields, which the WASP filter passes through
unchanged. BGZF inflate with per-block CRC32/ISIZE checks (ISA-L) runs 1.7×
faster than htslib's reader and names the damaged block's offset.
"""

from __future__ import annotations

import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numba as nb
import numpy as np

from .errors import InputError

# SAM flags
PAIRED, PROPER, UNMAP, MUNMAP, REVERSE, MREVERSE, READ1, READ2 = 0x1, 0x2, 0x4, 0x8, 0x10, 0x20, 0x40, 0x80
SECONDARY, QCFAIL, DUP, SUPPLEMENTARY = 0x100, 0x200, 0x400, 0x800
#: 4-bit BAM base code → A0 C1 G2 T3 N4 (ambiguity codes are N)
NT16_TO_CODE = np.full(16, 4, dtype=np.uint8)
NT16_TO_CODE[[1, 2, 4, 8]] = [0, 1, 2, 3]
NT16 = "=ACMGRSVTWYHKDBN"
#: cigar ops that consume the reference / the query
_REF_OPS = np.array([1, 0, 1, 1, 0, 0, 0, 1, 1], dtype=np.uint8)   # M I D N S H P = X
_QRY_OPS = np.array([1, 1, 0, 0, 1, 0, 0, 1, 1], dtype=np.uint8)
CIGAR_CHARS = "MIDNSHP=X"


@nb.njit(cache=True, nogil=True)
def scan_offsets(buf, n):
    """Start offsets of the complete records in ``buf[:n]``.

    Returns
    -------
    offs : int64 array, shape (n_records,)
        Offset of each record's ``block_size`` field.
    used : int
        Bytes covered by complete records (the rest carries over).
    """
    out = np.empty(n // 36 + 1, dtype=np.int64)
    k = 0
    o = 0
    while o + 4 <= n:
        bs = buf[o] | (buf[o + 1] << 8) | (buf[o + 2] << 16) | (np.int64(buf[o + 3]) << 24)
        if o + 4 + bs > n:
            break
        out[k] = o
        k += 1
        o += 4 + bs
    return out[:k], o


@nb.njit(cache=True, nogil=True, inline="always")
def _i32(buf, o):
    v = np.int64(buf[o]) | (np.int64(buf[o + 1]) << 8) | (np.int64(buf[o + 2]) << 16) | (np.int64(buf[o + 3]) << 24)
    return v - (np.int64(1) << 32) if v >= (np.int64(1) << 31) else v


@nb.njit(cache=True, nogil=True)
def parse_fields(buf, offs, seed):
    """Decode the fixed fields of each record.

    Returns
    -------
    tuple of arrays, each shape (n_records,)
        refid, pos, end (reference end from the CIGAR), mapq, flag,
        next_refid, next_pos, name_hash (FNV-1a of the read name, uint64) and
        priority (the same hash mixed with ``seed``: the dedup lottery).
    """
    n = offs.shape[0]
    refid = np.empty(n, np.int64)
    pos = np.empty(n, np.int64)
    end = np.empty(n, np.int64)
    mapq = np.empty(n, np.int64)
    flag = np.empty(n, np.int64)
    nref = np.empty(n, np.int64)
    npos = np.empty(n, np.int64)
    h = np.empty(n, np.uint64)
    prio = np.empty(n, np.uint64)
    for i in range(n):
        o = offs[i] + 4
        refid[i] = _i32(buf, o)
        pos[i] = _i32(buf, o + 4)
        lrn = buf[o + 8]
        mapq[i] = buf[o + 9]
        ncig = buf[o + 12] | (np.int64(buf[o + 13]) << 8)
        flag[i] = buf[o + 14] | (np.int64(buf[o + 15]) << 8)
        nref[i] = _i32(buf, o + 20)
        npos[i] = _i32(buf, o + 24)
        x = np.uint64(14695981039346656037)
        for j in range(lrn - 1):
            x = (x ^ np.uint64(buf[o + 32 + j])) * np.uint64(1099511628211)
        h[i] = x
        y = x ^ (np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15))
        y = (y ^ (y >> np.uint64(31))) * np.uint64(0xBF58476D1CE4E5B9)
        y = (y ^ (y >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        prio[i] = y ^ (y >> np.uint64(31))
        c = o + 32 + lrn
        e = pos[i]
        for j in range(ncig):
            v = _i32(buf, c + 4 * j) & 0xFFFFFFFF
            op = v & 0xF
            if op == 0 or op == 2 or op == 3 or op == 7 or op == 8:
                e += v >> 4
        end[i] = e
    return refid, pos, end, mapq, flag, nref, npos, h, prio


@nb.njit(cache=True, nogil=True)
def count_snps_in_blocks(buf, offs, pos, end, snp_pos):
    """Het SNPs covered by an aligned base (M/=/X) of each read.

    Parameters
    ----------
    snp_pos : int64 array, shape (n_snps,), sorted
        0-based SNP positions of the chromosome.

    Returns
    -------
    int64 array, shape (n_records,)
    """
    n = offs.shape[0]
    out = np.zeros(n, np.int64)
    ns = snp_pos.shape[0]
    k0 = 0
    for i in range(n):
        r = pos[i]
        if i > 0 and r < pos[i - 1]:
            k0 = np.searchsorted(snp_pos, r)  # unsorted input: restart the sweep
        while k0 < ns and snp_pos[k0] < r:
            k0 += 1
        k = k0
        if k >= ns or snp_pos[k] >= end[i]:
            continue
        o = offs[i] + 4
        lrn = buf[o + 8]
        ncig = buf[o + 12] | (np.int64(buf[o + 13]) << 8)
        c = o + 32 + lrn
        cnt = 0
        for j in range(ncig):
            v = _i32(buf, c + 4 * j) & 0xFFFFFFFF
            op = v & 0xF
            ln = v >> 4
            if op == 0 or op == 7 or op == 8:
                while k < ns and snp_pos[k] < r + ln:
                    if snp_pos[k] >= r:
                        cnt += 1
                    k += 1
                r += ln
            elif op == 2 or op == 3:
                r += ln
                while k < ns and snp_pos[k] < r:
                    k += 1
            if k >= ns:
                break
        out[i] = cnt
    return out


@nb.njit(cache=True, nogil=True)
def observe_snps(buf, offs, pos, end, keep, snp_pos):
    """Every (read, SNP) observation over an aligned base.

    Parameters
    ----------
    keep : bool array, shape (n_records,)
        Records to look at.
    pos, end : int64 arrays, shape (n_records,)
        Reference span of each read (file order: the SNP pointer sweeps forward).

    Returns
    -------
    rec, snp, base, qual, qpos : int64 arrays, shape (n_obs,)
        Record index, SNP index, 4-bit BAM base code (``NT16``), base quality
        and the base's offset in the stored read sequence.
    """
    cap = 1024
    rec = np.empty(cap, np.int64)
    snp = np.empty(cap, np.int64)
    base = np.empty(cap, np.int64)
    qual = np.empty(cap, np.int64)
    qpo = np.empty(cap, np.int64)
    m = 0
    ns = snp_pos.shape[0]
    k0 = 0
    for i in range(offs.shape[0]):
        r = pos[i]
        if i > 0 and r < pos[i - 1]:
            k0 = np.searchsorted(snp_pos, r)
        while k0 < ns and snp_pos[k0] < r:
            k0 += 1
        if not keep[i] or k0 >= ns or snp_pos[k0] >= end[i]:
            continue
        o = offs[i] + 4
        lrn = buf[o + 8]
        ncig = buf[o + 12] | (np.int64(buf[o + 13]) << 8)
        lseq = _i32(buf, o + 16)
        c = o + 32 + lrn
        s = c + 4 * ncig
        q = s + (lseq + 1) // 2
        qp = 0
        k = k0
        for j in range(ncig):
            if k >= ns:
                break
            v = _i32(buf, c + 4 * j) & 0xFFFFFFFF
            op = v & 0xF
            ln = v >> 4
            if op == 0 or op == 7 or op == 8:
                while k < ns and snp_pos[k] < r + ln:
                    if snp_pos[k] >= r:
                        x = qp + (snp_pos[k] - r)
                        b = np.int64(buf[s + x // 2])
                        nt = (b >> 4) if x % 2 == 0 else (b & 0xF)
                        if m == cap:
                            cap *= 2
                            rec = _grow(rec, cap)
                            snp = _grow(snp, cap)
                            base = _grow(base, cap)
                            qual = _grow(qual, cap)
                            qpo = _grow(qpo, cap)
                        rec[m] = i
                        snp[m] = k
                        base[m] = nt
                        qual[m] = buf[q + x]
                        qpo[m] = x
                        m += 1
                    k += 1
                r += ln
                qp += ln
            elif op == 2 or op == 3:
                r += ln
                while k < ns and snp_pos[k] < r:
                    k += 1
            elif op == 1 or op == 4:
                qp += ln
    return rec[:m], snp[:m], base[:m], qual[:m], qpo[:m]


@nb.njit(cache=True, nogil=True)
def _grow(a, cap):
    b = np.empty(cap, a.dtype)
    b[:a.shape[0]] = a
    return b


@nb.njit(cache=True, nogil=True)
def gather(buf, offs, idx):
    """Concatenate the records ``idx`` (their raw bytes, block_size included)."""
    tot = 0
    for i in idx:
        tot += 4 + (buf[offs[i]] | (buf[offs[i] + 1] << 8) | (buf[offs[i] + 2] << 16) | (np.int64(buf[offs[i] + 3]) << 24))
    out = np.empty(tot, np.uint8)
    o = 0
    for i in idx:
        a = offs[i]
        ln = 4 + (buf[a] | (buf[a + 1] << 8) | (buf[a + 2] << 16) | (np.int64(buf[a + 3]) << 24))
        out[o:o + ln] = buf[a:a + ln]
        o += ln
    return out


@dataclass
class Chunk:
    """Whole records of one chunk: raw bytes and their decoded fixed fields."""

    buf: np.ndarray
    offs: np.ndarray
    refid: np.ndarray
    pos: np.ndarray
    end: np.ndarray
    mapq: np.ndarray
    flag: np.ndarray
    next_refid: np.ndarray
    next_pos: np.ndarray
    name_hash: np.ndarray
    priority: np.ndarray

    def __len__(self) -> int:
        return int(self.offs.shape[0])


def make_chunk(buf: np.ndarray, offs: np.ndarray, seed: int = 0) -> Chunk:
    return Chunk(buf, offs, *parse_fields(buf, offs, np.uint64(seed)))


def check_bam(bam: str | Path) -> None:
    """A BAM must exist, be coordinate-sorted and indexed: say so and how to fix it."""
    import pysam

    bam = Path(bam)
    if not bam.exists():
        raise InputError(bam, "BAM not found", "fix the bam path in the samplesheet")
    if _is_bgzf(bam):
        check_eof(bam)
        check_header_blocks(bam)  # htslib would refuse a damaged header too, but without the offset
    try:
        f = pysam.AlignmentFile(str(bam), "rb")
    except (OSError, ValueError) as e:
        raise InputError(bam, f"cannot read as BAM: {e}", "give a BAM file") from None
    with f:
        so = f.header.to_dict().get("HD", {}).get("SO")
        if so != "coordinate":
            raise InputError(bam, f"BAM is not coordinate-sorted (@HD SO:{so})",
                             f"sort and index it: samtools sort -o sorted.bam {bam.name} && samtools index sorted.bam")
        if not f.has_index():
            raise InputError(bam, "BAM has no index (.bai/.csi)", f"index it: samtools index {bam.name}")


def read_header(bam: str | Path) -> tuple[bytes, list[str], list[int]]:
    """Raw BAM header bytes (magic … references) and the contig names/lengths."""
    import pysam

    p = subprocess.Popen(["samtools", "view", "--no-PG", "-u", "-H", str(bam)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    f = pysam.libcbgzf.BGZFile(f"/dev/fd/{p.stdout.fileno()}", "rb")
    data = f.read(1 << 31)
    f.close()
    p.stdout.close()
    err = p.stderr.read().decode(errors="replace").strip()
    p.stderr.close()
    if p.wait() != 0 or not data.startswith(b"BAM\x01"):
        raise InputError(bam, f"cannot read the BAM header: {err or 'not a BAM'}", _samtools_fix(err))
    names, lengths, end = _parse_header(data)
    return data[:end], names, lengths


def _parse_header(data: bytes) -> tuple[list[str], list[int], int]:
    if data[:4] != b"BAM\x01":
        raise ValueError("not a BAM stream")
    (l_text,) = struct.unpack_from("<i", data, 4)
    o = 8 + l_text
    (n_ref,) = struct.unpack_from("<i", data, o)
    o += 4
    names, lengths = [], []
    for _ in range(n_ref):
        (ln,) = struct.unpack_from("<i", data, o)
        names.append(data[o + 4:o + 4 + ln - 1].decode())
        (lr,) = struct.unpack_from("<i", data, o + 4 + ln)
        lengths.append(lr)
        o += 8 + ln
    return names, lengths, o


def header_with_pg(header: bytes, pg_line: str) -> bytes:
    """Append an @PG line to a raw BAM header."""
    (l_text,) = struct.unpack_from("<i", header, 4)
    text = header[8:8 + l_text].rstrip(b"\0")
    if text and not text.endswith(b"\n"):
        text += b"\n"
    text += pg_line.encode() + b"\n"
    return b"BAM\x01" + struct.pack("<i", len(text)) + text + header[8 + l_text:]


def bai_ref_span(bam: str | Path, ref_id: int) -> tuple[int, int] | None:
    """Virtual file offsets (begin, end) of a reference's records from the BAI's
    pseudo-bin 37450; None when there is no ``.bai`` or the reference has no reads."""
    bam = Path(bam)
    for bai in (Path(str(bam) + ".bai"), bam.with_suffix(".bai")):
        if bai.exists():
            break
    else:
        return None
    data = bai.read_bytes()
    if data[:4] != b"BAI\x01":
        return None
    (n_ref,) = struct.unpack_from("<i", data, 4)
    o = 8
    for r in range(n_ref):
        (n_bin,) = struct.unpack_from("<i", data, o)
        o += 4
        span = None
        for _ in range(n_bin):
            b, n_chunk = struct.unpack_from("<Ii", data, o)
            o += 8
            if b == 37450 and r == ref_id:
                span = struct.unpack_from("<QQ", data, o)
            o += 16 * n_chunk
        (n_intv,) = struct.unpack_from("<i", data, o)
        o += 4 + 8 * n_intv
        if r == ref_id:
            return span
    return None


def stream_chunks(bam: str | Path, region: str, *, chunk_bytes: int = 8 << 20, seed: int = 0,
                  ref_id: int | None = None) -> Iterator[Chunk]:
    """Chunks of whole records of ``region`` (a contig name), in file order.

    With a ``.bai`` and ``ref_id`` the BAM is decompressed in-process from the
    contig's first block (htslib's BGZF reader); otherwise through ``samtools view -u``.
    """
    span = bai_ref_span(bam, ref_id) if ref_id is not None else None
    if span is not None:
        yield from _stream_direct(bam, ref_id, span[0], chunk_bytes, seed, span[1])
        return
    if ref_id is not None and _has_bai(bam):
        return  # indexed, but no records on this contig
    yield from _stream_samtools(bam, region, chunk_bytes, seed)


def _has_bai(bam) -> bool:
    return Path(str(bam) + ".bai").exists() or Path(bam).with_suffix(".bai").exists()


try:  # ISA-L inflate is several times faster than zlib; zlib is the fallback
    from isal.isal_zlib import crc32 as _crc32, decompress as _inflate, error as _InflateError
except ImportError:  # pragma: no cover
    from zlib import crc32 as _crc32, decompress as _inflate, error as _InflateError

BGZF_EOF = bytes.fromhex("1f8b08040000000000ff0600424302001b0003000000000000000000")
#: gzip ID1 ID2 CM (deflate); FLG must have FEXTRA; then XLEN 6 and the one BC subfield (SLEN 2)
_GZIP_ID = b"\x1f\x8b\x08"
_BC_FIELD = b"\x06\x00BC\x02\x00"
CORRUPT_FIX = ("the file is damaged (disk, transfer or copy): re-download or regenerate the BAM "
               "(`samtools quickcheck -v FILE` lists damaged BAMs; htslib refuses this one too)")


def corrupt_block(path, offset: int, problem: str) -> InputError:
    """The error for a damaged BGZF block at compressed file offset ``offset``."""
    return InputError(path, f"corrupt BGZF block at compressed offset {offset}: {problem}", CORRUPT_FIX)


def check_eof(path: str | Path) -> None:
    """A BGZF file must end with the empty end-of-file block; without it the file
    was cut short (htslib's "EOF marker is absent")."""
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as fh:
        fh.seek(max(0, size - len(BGZF_EOF)))
        tail = fh.read()
    if tail != BGZF_EOF:
        raise InputError(path, f"no BGZF end-of-file marker in its last {len(BGZF_EOF)} bytes: the file is "
                         "truncated (an interrupted copy or write)", CORRUPT_FIX)


def _block_size(raw: bytes, o: int, path, offset: int) -> int:
    """Total size of the BGZF block whose header starts at ``raw[o]`` (the header checked as htslib does)."""
    if raw[o:o + 3] != _GZIP_ID or not raw[o + 3] & 4 or raw[o + 10:o + 16] != _BC_FIELD:
        raise corrupt_block(path, offset, "not a BGZF block header")
    return raw[o + 16] + (raw[o + 17] << 8) + 1


def inflate_block(raw: bytes, o: int, size: int, path, offset: int) -> bytes:
    """Decompressed data of the BGZF block ``raw[o:o + size]``, verified.

    The deflate stream must decompress, and the result must have the length
    (ISIZE) and CRC32 that the block's trailer records: a flipped bit anywhere
    in the data or the trailer fails one of these. ``offset`` is the block's
    compressed file offset, for the error message.
    """
    if size < 26:
        raise corrupt_block(path, offset, f"block size {size} is smaller than a BGZF block")
    try:
        data = _inflate(raw[o + 18:o + size - 8], wbits=-15)
    except _InflateError as e:
        raise corrupt_block(path, offset, f"its deflate data does not decompress ({e})") from None
    crc, isize = struct.unpack_from("<II", raw, o + size - 8)
    if len(data) != isize:
        raise corrupt_block(path, offset, f"decompresses to {len(data)} bytes, its trailer says {isize}")
    if _crc32(data) & 0xFFFFFFFF != crc:
        raise corrupt_block(path, offset, "CRC32 mismatch")
    return data


def bgzf_blocks(fh, coffset: int, chunk_bytes: int, last_coffset: int | None = None) -> Iterator[bytes]:
    """Decompressed data of consecutive BGZF blocks from file offset ``coffset``
    up to the block starting at ``last_coffset`` (default: end of file), about
    ``chunk_bytes`` of compressed input at a time.

    Every block is verified (header, deflate stream, ISIZE, CRC32) and a block
    cut short by the end of the file is an error: :class:`InputError` naming the
    file and the block's compressed offset.
    """
    path = getattr(fh, "name", "BGZF stream")
    fh.seek(coffset)
    pending = b""
    base = coffset  # file offset of pending[0]
    left = None if last_coffset is None else last_coffset - coffset + (1 << 16)
    while True:
        want = chunk_bytes if left is None else max(0, min(chunk_bytes, left))
        data = fh.read(want) if want else b""
        if left is not None:
            left -= len(data)
        raw = pending + data if pending else data
        if not raw:
            return
        out = []
        o = 0
        n = len(raw)
        done = False
        while o + 18 <= n:
            if last_coffset is not None and base + o > last_coffset:
                done = True
                break
            size = _block_size(raw, o, path, base + o)
            if o + size > n:
                break
            out.append(inflate_block(raw, o, size, path, base + o))
            o += size
        pending = raw[o:]
        base += o
        if out:
            yield b"".join(out)
        if done or not data:
            # a block (wanted) left incomplete when the input ran out: the file was cut short
            if not done and pending and (last_coffset is None or base <= last_coffset):
                raise corrupt_block(path, base, f"the file ends {len(pending)} bytes into this block (truncated)")
            return


def check_header_blocks(bam: str | Path) -> None:
    """Verify the BGZF blocks that hold the BAM header (see :func:`bgzf_blocks`)."""
    data = b""
    with open(bam, "rb") as fh:
        for part in bgzf_blocks(fh, 0, 1 << 16):
            data += part
            try:
                _parse_header(data)
                return
            except struct.error:
                continue  # the header goes on in the next block
            except ValueError:
                raise InputError(bam, "BGZF-compressed but not a BAM (no BAM magic)", "give a BAM file") from None
    raise InputError(bam, "the file ends inside the BAM header", CORRUPT_FIX)


def _stream_direct(bam, ref_id: int, voffset: int, chunk_bytes: int, seed: int,
                   end_voffset: int | None = None) -> Iterator[Chunk]:
    """Records of reference ``ref_id`` from virtual offset ``voffset`` until the next reference."""
    check_eof(bam)
    with open(bam, "rb") as fh:
        rest = np.empty(0, np.uint8)
        skip = voffset & 0xFFFF
        last = None if end_voffset is None else end_voffset >> 16
        for data in bgzf_blocks(fh, voffset >> 16, max(chunk_bytes // 4, 1 << 16), last):
            new = np.frombuffer(data, np.uint8)[skip:]
            skip = 0
            buf = np.concatenate([rest, new]) if len(rest) else new
            offs, used = scan_offsets(buf, len(buf))
            if len(offs) == 0:
                rest = buf
                continue
            ch = make_chunk(buf, offs, seed)
            other = np.flatnonzero(ch.refid != ref_id)
            if len(other):
                k = int(other[0])
                if k:
                    yield _head(ch, k)
                return
            yield ch
            rest = buf[used:].copy()


def _head(ch: Chunk, k: int) -> Chunk:
    return Chunk(ch.buf, ch.offs[:k], *(getattr(ch, n)[:k] for n in
                 ("refid", "pos", "end", "mapq", "flag", "next_refid", "next_pos", "name_hash", "priority")))


def _samtools_fix(err: str) -> str:
    """The fix for a samtools failure: a damaged file, or a wrong/missing index."""
    low = err.lower()
    if any(w in low for w in ("checksum", "bgzf", "truncated", "inflate", "eof marker")):
        return CORRUPT_FIX
    return "check the BAM and its index"


def _is_bgzf(path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(4) == _GZIP_ID + b"\x04"


def _stream_samtools(bam, region: str, chunk_bytes: int, seed: int) -> Iterator[Chunk]:
    import pysam

    if _is_bgzf(bam):
        check_eof(bam)  # htslib only warns about a missing EOF marker
    p = subprocess.Popen(["samtools", "view", "--no-PG", "-u", str(bam)] + ([region] if region else []),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    cut_short = None  # what went wrong on our side of the pipe; samtools' own failure takes precedence
    try:
        f = pysam.libcbgzf.BGZFile(f"/dev/fd/{p.stdout.fileno()}", "rb")
        try:
            yield from _records_of_stream(f, chunk_bytes, seed)
        except (_CutShort, OSError, ValueError, struct.error) as e:  # ValueError: no BAM magic (empty stream)
            cut_short = str(e) or type(e).__name__
        f.close()
    finally:
        p.stdout.close()
        err = p.stderr.read().decode(errors="replace")
        p.stderr.close()
        rc = p.wait()
    if rc != 0:
        raise InputError(bam, f"samtools view failed on {region or 'the file'}: {err.strip()}", _samtools_fix(err))
    if cut_short is not None:
        raise InputError(bam, f"the record stream of {region or 'the file'} ends inside a record ({cut_short})",
                         CORRUPT_FIX)


class _CutShort(Exception):
    """An uncompressed BAM stream that ends inside the header or a record."""


def _records_of_stream(f, chunk_bytes: int, seed: int) -> Iterator[Chunk]:
    """Chunks of the records of an uncompressed BAM stream (header skipped)."""
    head = f.read(1 << 16)
    while True:
        try:
            _, _, hend = _parse_header(head)
            break
        except struct.error:
            more = f.read(1 << 16)
            if not more:
                raise _CutShort("in the header") from None
            head += more
    rest = np.frombuffer(head[hend:], dtype=np.uint8)
    while True:
        data = f.read(chunk_bytes)
        new = np.frombuffer(data, dtype=np.uint8)
        buf = np.concatenate([rest, new]) if len(rest) else new
        if len(buf) == 0:
            return
        offs, used = scan_offsets(buf, len(buf))
        if len(offs):
            yield make_chunk(buf, offs, seed)
        rest = buf[used:].copy()
        if not data:
            if len(rest):
                raise _CutShort(f"{len(rest)} bytes of an incomplete record")
            return


def cigar_string(buf: np.ndarray, off: int) -> str:
    """CIGAR of the record at ``off`` as text."""
    o = off + 4
    lrn = int(buf[o + 8])
    ncig = int(buf[o + 12]) | (int(buf[o + 13]) << 8)
    c = np.frombuffer(buf[o + 32 + lrn:o + 32 + lrn + 4 * ncig].tobytes(), dtype="<u4")
    return "".join(f"{v >> 4}{CIGAR_CHARS[v & 0xF]}" for v in c.tolist())


def record_parts(buf: np.ndarray, off: int) -> tuple[str, np.ndarray, np.ndarray, np.ndarray]:
    """Name, cigar (uint32, shape (n_ops,)), sequence codes (0–4) and qualities of a record."""
    o = off + 4
    lrn = int(buf[o + 8])
    ncig = int(buf[o + 12]) | (int(buf[o + 13]) << 8)
    lseq = int(np.frombuffer(buf[o + 16:o + 20].tobytes(), "<i4")[0])
    name = buf[o + 32:o + 32 + lrn - 1].tobytes().decode()
    c0 = o + 32 + lrn
    cig = np.frombuffer(buf[c0:c0 + 4 * ncig].tobytes(), dtype="<u4")
    s0 = c0 + 4 * ncig
    packed = buf[s0:s0 + (lseq + 1) // 2]
    nt = np.empty(2 * len(packed), np.uint8)
    nt[0::2] = packed >> 4
    nt[1::2] = packed & 0xF
    seq = NT16_TO_CODE[nt[:lseq]]
    q0 = s0 + (lseq + 1) // 2
    qual = np.asarray(buf[q0:q0 + lseq], dtype=np.uint8)
    return name, cig, seq, qual


# Compression: the stdlib zlib, never ISA-L. An output BAM must be a function of its records
# alone (same reads, same bytes, whatever the thread count, run or machine). zlib's deflate at a
# given version is deterministic: it zeroes its window past the input's high-water mark, so no
# leftover memory reaches a match decision. ISA-L (used here before) promises no such thing
# (intel/isa-l#140, open) and runs a different assembly kernel per CPU family; with it, the WASP
# BAM of one run in ten differed from the others' in one compressed block with identical reads.
# ISA-L is still used to *read*: inflate is deterministic by definition.
from zlib import compressobj as _compressobj  # noqa: E402

_LEVEL = 1     # zlib level 1: fast (about 0.7 GB/s per thread); htslib's default is 6
_STRATEGY = 0  # Z_DEFAULT_STRATEGY, stated so the bytes never depend on a library default

_BLOCK = 0xFF00  # uncompressed bytes per BGZF block (as htslib)


def bgzf_compress(data: bytes) -> bytes:
    """BGZF blocks of ``data`` (no EOF marker): one block per ``_BLOCK`` bytes of ``data``, each
    a raw deflate stream of zlib level ``_LEVEL``, so the bytes depend on ``data`` only.

    Measured against htslib (``pysam.libcbgzf.BGZFile``, mode ``wb1``) on 204 MB of records:
    with pip's pysam (htslib on the same system zlib) the blocks are byte-identical and htslib
    is 1.3× faster. Kept for now because htslib's bytes depend on how pysam was built
    (bioconda's htslib deflates with libdeflate: other bytes) and it always appends the EOF
    block, which the headerless parts of :class:`BamWriter` must not have.
    """
    out = []
    for i in range(0, len(data), _BLOCK):
        part = data[i:i + _BLOCK]
        c = _compressobj(_LEVEL, 8, -15, 8, _STRATEGY)
        cdata = c.compress(part) + c.flush()
        bsize = len(cdata) + 25
        out.append(b"\x1f\x8b\x08\x04\x00\x00\x00\x00\x00\xff\x06\x00BC\x02\x00" + struct.pack("<H", bsize)
                   + cdata + struct.pack("<II", _crc32(part) & 0xFFFFFFFF, len(part)))
    return b"".join(out)


class BamWriter:
    """Write raw records (uncompressed bytes) as BGZF-compressed BAM.

    ``header`` may be empty to write a headerless part that is concatenated
    after a header part (BGZF blocks are independent); ``eof`` adds the BGZF
    end-of-file marker (only the last part needs it).
    """

    def __init__(self, path: str | Path, header: bytes = b"", eof: bool = True):
        self._f = open(path, "wb")
        self._eof = eof
        self._pending = bytearray()
        if header:
            self.write(header)

    def write(self, data) -> None:
        self._pending += data if isinstance(data, (bytes, bytearray)) else memoryview(np.ascontiguousarray(data))
        if len(self._pending) >= 16 * _BLOCK:
            k = len(self._pending) // _BLOCK * _BLOCK
            self._f.write(bgzf_compress(bytes(self._pending[:k])))
            del self._pending[:k]

    def close(self) -> None:
        if self._pending:
            self._f.write(bgzf_compress(bytes(self._pending)))
            self._pending = bytearray()
        if self._eof:
            self._f.write(BGZF_EOF)
        self._f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


@nb.njit(cache=True, nogil=True)
def cigar_hash(buf, offs):
    """FNV-1a hash of each record's CIGAR (uint64, shape (n_records,)): equal CIGARs, equal hashes."""
    n = offs.shape[0]
    out = np.empty(n, np.uint64)
    for i in range(n):
        o = offs[i] + 4
        lrn = buf[o + 8]
        ncig = buf[o + 12] | (np.int64(buf[o + 13]) << 8)
        c = o + 32 + lrn
        x = np.uint64(14695981039346656037)
        for j in range(4 * ncig):
            x = (x ^ np.uint64(buf[c + j])) * np.uint64(1099511628211)
        out[i] = x
    return out


@nb.njit(cache=True, nogil=True)
def name_numbers(buf, offs):
    """Parse read names ``<a>_<b>_<c>`` (digits) into three int64 arrays; -1 when malformed."""
    n = offs.shape[0]
    out = np.full((n, 3), -1, np.int64)
    for i in range(n):
        o = offs[i] + 4
        lrn = buf[o + 8]
        k = 0
        v = 0
        ok = True
        for j in range(lrn - 1):
            ch = buf[o + 32 + j]
            if ch == 95:  # '_'
                if k < 3:
                    out[i, k] = v
                k += 1
                v = 0
            elif 48 <= ch <= 57:
                v = v * 10 + (ch - 48)
            else:
                ok = False
        if ok and k == 2:
            out[i, 2] = v
        else:
            out[i, 0] = -1
    return out


def stream_file(path: str | Path, chunk_bytes: int = 8 << 20) -> tuple[list[str], Iterator[Chunk]]:
    """All records of a SAM/BAM (any order) through ``samtools view -u``: (contig names, chunks)."""
    hdr = subprocess.run(["samtools", "view", "--no-PG", "-H", str(path)], capture_output=True, text=True)
    names = [ln.split("\tSN:")[1].split("\t")[0] for ln in hdr.stdout.splitlines() if ln.startswith("@SQ")]
    return names, _stream_samtools(path, None, chunk_bytes, 0)
