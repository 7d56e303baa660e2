"""Insertion bigWigs as run-length arrays: reading (shared by insertions' pseudobulk sums and
cluster_peaks' peak counts and values) and checked writing. Neutral, so no step imports another."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Mapping

import numpy as np

from .errors import InputError

BIGWIG_MAGIC = 0x888FFC26
_WRITE_FIX = "free disk space (or raise the file size limit; check the output filesystem) and rerun the step"


def runs_to_sites(starts: np.ndarray, ends: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """bedGraph runs → per-base (pos, count); inverse of :func:`caveat.insertions.sites_to_runs`."""
    n = (ends - starts).astype(np.int64)
    pos = np.repeat(starts - np.r_[0, np.cumsum(n)[:-1]], n) + np.arange(n.sum())
    return pos.astype(np.int64), np.repeat(np.rint(values).astype(np.int64), n)


def read_runs(bw, chrom: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All runs of ``chrom`` in an open bigWig as (starts, ends, values) arrays."""
    iv = bw.intervals(chrom) if chrom in bw.chroms() else None
    if not iv:
        z = np.zeros(0, np.int64)
        return z, z, np.zeros(0, np.float64)
    a = np.array(iv, dtype=np.float64)
    return a[:, 0].astype(np.int64), a[:, 1].astype(np.int64), a[:, 2]


def add_runs(bw, chrom: str, starts: np.ndarray, ends: np.ndarray, values: np.ndarray, final) -> None:
    """Append runs of ``chrom`` to a bigWig open for writing.

    pyBigWig reports a failed write (full disk, file size limit) from ``addEntries`` as a
    bare ``SystemError`` ("returned NULL without setting an exception"); this names the file.

    Parameters
    ----------
    starts, ends : int arrays, shape (n_runs,)
    values : float array, shape (n_runs,)
    final : path
        The name the track is being written to, for the message.
    """
    if not starts.size:
        return
    try:
        bw.addEntries([chrom] * starts.size, starts, ends=ends, values=values)
    except (SystemError, RuntimeError) as e:
        raise InputError(final, f"writing the bigWig failed on {chrom} ({e.__class__.__name__}: a full disk "
                         "or file size limit?)", _WRITE_FIX) from None


def bigwig_layout_problem(path: str | Path) -> str | None:
    """What is wrong with a bigWig's layout, or ``None``.

    Read by hand (UCSC bbi format: 64-byte header, 24 bytes per zoom level, and for the
    data and each zoom level an R-tree index whose leaves point at data blocks):
    every index node and every block it points at must lie inside the file. pyBigWig
    opens a file cut short at ``close()`` by a failed write (it only prints a warning)
    and reads its data as if it were whole; the indexes are written last, so a cut shows
    in them.
    """
    data = Path(path).read_bytes()
    if len(data) < 64 or struct.unpack_from("<I", data)[0] != BIGWIG_MAGIC:
        return "no bigWig header"
    if struct.unpack_from("<I", data, len(data) - 4)[0] != BIGWIG_MAGIC:  # v4 files end with it too
        return "its closing signature is missing (cut short)"
    n_zoom = struct.unpack_from("<H", data, 6)[0]
    if len(data) < 64 + 24 * n_zoom:
        return "its zoom-level table is cut short"
    index_offsets = [struct.unpack_from("<Q", data, 24)[0]]
    index_offsets += [struct.unpack_from("<Q", data, 64 + 24 * i + 16)[0] for i in range(n_zoom)]
    for offset in index_offsets:
        problem = _rtree_problem(data, offset)
        if problem:
            return problem
    return None


def _rtree_problem(data: bytes, offset: int) -> str | None:
    """Walk the R-tree index at ``offset``: 48-byte header, then nodes of 4 + 32 (leaf) or
    24 (inner) bytes per item; leaves point at data blocks, inner items at child nodes."""
    if offset + 48 > len(data):
        return f"its index at byte {offset:,} lies past its end ({len(data):,} bytes)"
    stack = [offset + 48]
    while stack:
        node = stack.pop()
        if node + 4 > len(data):
            return f"an index node at byte {node:,} lies past its end ({len(data):,} bytes)"
        is_leaf, _, count = struct.unpack_from("<BBH", data, node)
        item = 32 if is_leaf else 24
        if node + 4 + count * item > len(data):
            return f"an index node at byte {node:,} is cut short ({len(data):,} bytes)"
        for i in range(count):
            at = node + 4 + i * item + 16
            if is_leaf:
                block, size = struct.unpack_from("<QQ", data, at)
                if block + size > len(data):
                    return f"a data block at byte {block:,} runs past its end ({len(data):,} bytes)"
            else:
                stack.append(struct.unpack_from("<Q", data, at)[0])
    return None


def verify_bigwig(path: str | Path, lengths: Mapping[str, int], expected: Mapping[str, int],
                  final: str | Path) -> None:
    """Reopen a just-written bigWig and check its layout, header and per-contig totals.

    ``pyBigWig``'s ``close()`` does not report a failed write (it prints a warning and
    leaves a truncated file), so the file is read back before it is renamed into place.

    Parameters
    ----------
    path : path
        The written (temporary) file.
    lengths : dict
        contig → length the header must hold, in order.
    expected : dict
        contig → insertions (sum of values × span) the track must hold.
    final : path
        The name the file is meant to get, for the message.
    """
    import pyBigWig

    problem = bigwig_layout_problem(path) if Path(path).stat().st_size else "it is empty"
    try:
        bw = None if problem else pyBigWig.open(str(path))
    except RuntimeError:  # pyBigWig's only error for an unreadable file
        bw, problem = None, "pyBigWig cannot open it"
    if bw is None:
        raise InputError(final, f"the bigWig just written cannot be read back ({problem}: disk full?)", _WRITE_FIX)
    try:
        if list(bw.chroms().items()) != list(lengths.items()):
            raise InputError(final, "the bigWig just written has the wrong contigs in its header", _WRITE_FIX)
        if any(expected.values()) and bw.header()["nLevels"] == 0:  # libBigWig writes zooms last
            raise InputError(final, "the bigWig just written lost its zoom levels (truncated write)", _WRITE_FIX)
        for chrom, want in expected.items():
            got = bw.stats(chrom, 0, lengths[chrom], type="sum", exact=True)[0] if want else None
            if want and (got is None or round(got) != want):
                raise InputError(final, f"the bigWig just written holds {got or 0:.0f} insertions on {chrom}, "
                                 f"not {want} (truncated write)", _WRITE_FIX)
    except RuntimeError as e:  # pyBigWig's error for unreadable data blocks
        raise InputError(final, f"the bigWig just written cannot be read back ({e})", _WRITE_FIX) from None
    finally:
        bw.close()


__all__ = ["add_runs", "bigwig_layout_problem", "read_runs", "runs_to_sites", "verify_bigwig"]
