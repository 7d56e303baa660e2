"""Contig groups for a scattered WASP filter: a few tasks per sample, not one per contig.

A human reference has ~195 (GRCh38 analysis set) to ~3,000 (with alts and decoys) contigs,
most of them scaffolds of a few kb with few or no reads. One task per sample × contig would
be 6,000-100,000 tasks, nearly all of them paying the task's fixed cost (staging the BAM and
the aligner index, starting the aligner) for no work. The Nextflow scatter therefore runs one
``WASP_REMAP`` task per sample × *group*:

- contigs with no read in any BAM (mapped or placed-unmapped, ``samtools idxstats`` columns 3
  + 4, what the filter itself skips) are in no group; the BAM's first contig is kept when the
  BAM has reads without a coordinate, since the part holding it counts them
  (:func:`caveat.wasp_remap.wasp_filter`), and when no contig has a read at all (one group,
  so every sample still gets its header-only BAM);
- the rest, in BAM header order, are filled greedily up to ``target_bp`` bases per group; a
  contig longer than ``target_bp`` is a group of its own.

Why header order and not largest first: every group is then a contiguous run of the header's
contigs, so the gather (``wasp_remap --gather``, which joins parts in the order of their first
contig) rebuilds the whole-BAM output byte for byte without splitting a part. In header order
the greedy fill is also the *fewest* groups of any split into contiguous runs of at most
``target_bp`` (cutting later never helps), and since references list their chromosomes first
and scaffolds after, it packs much as largest-first would: big chromosomes alone, the small
contigs together at the end. Bound: two consecutive groups hold more than ``target_bp``
(else the fill would have merged them), so ``n_groups <= 2 * ceil(total_bp / target_bp) - 1``.

The plan is deterministic: the same .fai and BAM indexes give the same groups and ids.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np

from .errors import InputError
from .genome import check_contigs
from .io import atomic_path
from .log import get_logger

log = get_logger("contig_groups")

#: The plan's column names (``wasp_remap --plan-groups`` writes them as a header line).
PLAN_COLUMNS = ("group_id", "contigs")


def read_fai(path: str | Path) -> dict[str, int]:
    """Contig → length, in file order, from a ``samtools faidx`` index.

    Raises
    ------
    InputError
        A line without a name and an integer length, or a contig listed twice.
    """
    out: dict[str, int] = {}
    for i, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip():
            continue
        f = line.split("\t")
        if len(f) < 2 or not f[0] or not f[1].isdigit():
            raise InputError(path, f"line {i}: expected `name<TAB>length<TAB>…`, got {line[:60]!r}",
                             "rebuild it with `samtools faidx` on the FASTA")
        if f[0] in out:
            raise InputError(path, f"line {i}: contig {f[0]!r} listed twice", "rebuild it with `samtools faidx`")
        out[f[0]] = int(f[1])
    if not out:
        raise InputError(path, "no contigs", "pass the FASTA's .fai (samtools faidx)")
    return out


def bam_contig_reads(bam: str | Path) -> tuple[list[str], np.ndarray, int]:
    """A BAM's contigs (header order) and its reads per contig, read from its index only.

    Returns
    -------
    names : list of str, length n
    reads : ndarray of int64, shape (n,)
        Records placed on each contig (mapped + unmapped with a position), ``idxstats`` 3 + 4.
    no_coordinate : int
        Records without a position (``idxstats``' ``*`` line).
    """
    import pysam

    try:
        with pysam.AlignmentFile(str(bam)) as f:
            names = list(f.references)
            stats = {s.contig: s.total for s in f.get_index_statistics()}
            return names, np.array([stats.get(n, 0) for n in names], np.int64), int(f.nocoordinate)
    except (OSError, ValueError) as e:
        raise InputError(bam, f"cannot read its header and index statistics: {e}",
                         "pass a coordinate-sorted BAM with its .bai beside it (samtools index)") from None


def group_contigs(names: Sequence[str], lengths: Sequence[int] | np.ndarray, target_bp: int,
                  reads: np.ndarray | None = None, keep: np.ndarray | None = None) -> list[list[str]]:
    """Contiguous groups of ``names`` of at most ``target_bp`` bases each, empty contigs left out.

    Parameters
    ----------
    names : sequence of str, length n
        Contigs in the order the groups follow (a BAM header's).
    lengths : array of int, shape (n,)
    target_bp : int
        Most bases per group; a longer contig is a group alone.
    reads : ndarray of int, shape (n_bams, n) or (n,), optional
        Reads per contig in each BAM; a contig with none in every BAM is in no group.
        Default: every contig is kept.
    keep : ndarray of bool, shape (n,), optional
        Contigs kept whatever their reads.

    Returns
    -------
    list of list of str
        The groups, in order; every kept contig is in exactly one.
    """
    n = len(names)
    lengths = np.asarray(lengths, np.int64)
    if lengths.shape != (n,):
        raise ValueError(f"{n} names but lengths of shape {lengths.shape}")
    if target_bp < 1:
        raise ValueError(f"target_bp must be >= 1, got {target_bp}")
    kept = np.ones(n, bool)
    if reads is not None:
        reads = np.atleast_2d(np.asarray(reads))
        if reads.shape[1] != n:
            raise ValueError(f"{n} names but reads of shape {reads.shape}")
        kept = (reads > 0).any(axis=0)
    if keep is not None:
        kept |= np.asarray(keep, bool)
    groups: list[list[str]] = []
    size = 0
    for i in np.flatnonzero(kept):
        if not groups or size + lengths[i] > target_bp:
            groups.append([])
            size = 0
        groups[-1].append(names[i])
        size += int(lengths[i])
    return groups


def max_groups(total_bp: int, target_bp: int) -> int:
    """Most groups :func:`group_contigs` can make of ``total_bp`` bases (module docstring)."""
    return max(1, 2 * math.ceil(total_bp / target_bp) - 1)


def plan_groups(fai: str | Path, bams: Sequence[str | Path], target_bp: int) -> list[list[str]]:
    """The groups of one run: contig lengths from ``fai``, reads from every BAM's index.

    Every BAM must list the same contigs in the same order (one plan serves every sample, and
    a group must be a contiguous run of each sample's header), and only contigs of ``fai``.

    Raises
    ------
    InputError
        No BAM, a BAM whose contigs differ from the first BAM's, or a contig not in ``fai``.
    """
    if not bams:
        raise InputError("--plan-groups", "no BAM given", "pass every sample's BAM (with its .bai beside it)")
    lengths = read_fai(fai)
    names, first, no_coord = bam_contig_reads(bams[0])
    check_contigs(names, lengths, what="BAM", file=bams[0], reference_file=fai)
    reads, keep = [first], np.zeros(len(names), bool)
    keep[:1] = no_coord > 0
    for bam in bams[1:]:
        other, r, nc = bam_contig_reads(bam)
        if other != names:
            diff = next((i for i, (a, b) in enumerate(zip(other, names)) if a != b), min(len(other), len(names)))
            got = other[diff] if diff < len(other) else "(end of header)"
            raise InputError(bam, f"its header's contig #{diff + 1} is {got!r}, where {Path(bams[0]).name} has "
                                  f"{names[diff] if diff < len(names) else '(end of header)'!r}",
                             "align every sample to the same reference (same contigs, same order): one contig "
                             "plan serves every sample of a Nextflow run")
        reads.append(r)
        keep[:1] |= nc > 0
    reads = np.vstack(reads)
    # no read anywhere: the first contig alone, so every sample still gets its (empty) part
    # and the gather its header-only BAM, as the local engine writes it
    keep[:1] |= not reads.any()
    groups = group_contigs(names, [lengths[c] for c in names], target_bp, reads, keep)
    grouped = {c for g in groups for c in g}
    empty = [c for c in names if c not in grouped]
    log.info("%s: %d contigs; %d BAM(s): %d contigs with reads, %d without a read in any BAM left out%s; "
             "%d groups of at most %d bp (or one longer contig)", fai, len(lengths), len(bams), len(grouped),
             len(empty), f" (e.g. {empty[0]})" if empty else "", len(groups), target_bp)
    return groups


def group_ids(n: int) -> list[str]:
    """``g001`` … : zero-padded, so file names sort in group order."""
    width = max(3, len(str(n)))
    return [f"g{i:0{width}d}" for i in range(1, n + 1)]


def write_plan(groups: Sequence[Sequence[str]], out: str | Path) -> None:
    """The plan as TSV: a header line, then ``group_id<TAB>contig,contig,…`` per group (atomic).

    Raises
    ------
    ValueError
        A contig name with a comma, tab or newline (SAM names cannot have them).
    """
    bad = [c for g in groups for c in g if any(ch in c for ch in ",\t\n")]
    if bad:
        raise ValueError(f"contig name {bad[0]!r} has a comma, tab or newline")
    lines = ["\t".join(PLAN_COLUMNS)]
    lines += [f"{gid}\t{','.join(g)}" for gid, g in zip(group_ids(len(groups)), groups)]
    with atomic_path(out) as t:
        Path(t).write_text("\n".join(lines) + "\n")


def read_plan(path: str | Path) -> dict[str, list[str]]:
    """group_id → contigs, from :func:`write_plan`'s TSV."""
    rows = Path(path).read_text().splitlines()
    if not rows or tuple(rows[0].split("\t")) != PLAN_COLUMNS:
        raise InputError(path, "not a contig plan (no `group_id<TAB>contigs` header)",
                         "pass the TSV of wasp_remap --plan-groups")
    out = {}
    for i, row in enumerate(rows[1:], 2):
        f = row.split("\t")
        if len(f) != 2 or not f[1]:
            raise InputError(path, f"line {i}: expected `group_id<TAB>contig,…`", "rerun wasp_remap --plan-groups")
        out[f[0]] = f[1].split(",")
    return out


__all__ = ["PLAN_COLUMNS", "bam_contig_reads", "group_contigs", "group_ids", "max_groups", "plan_groups",
           "read_fai", "read_plan", "write_plan"]
