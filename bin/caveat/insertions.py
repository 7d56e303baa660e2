"""Tn5 insertion tracks: per-base insertion counts per sample and pseudobulk per cell type.

Counting rule (so totals are checkable)
---------------------------------------
A fragment is counted once, from its **read 1** record, when that record is
paired, mapped with a mapped mate on the same contig, flagged proper pair,
primary, not QC-fail, not flagged duplicate, with MAPQ ≥ ``insertions_min_mapq``
(and the mate's MAPQ too when the BAM carries the ``MQ`` tag). The fragment
spans the outer mapped ends of the pair (from read 1's position and TLEN, as
ATAC fragment files do), and gives **two** insertions: ``frag_start + 4`` (the
forward read's 5′ end + 4) and ``frag_end - 1 - 5`` (the reverse read's 5′
end − 5), 0-based.

Duplicates are removed by fragment, whether or not the BAM flags them (input
BAMs often carry unmarked PCR duplicates): of the counted fragments of a sample
with the same contig, start, end and orientation (strand of the read at each
end, whichever mate is read 1, as Picard MarkDuplicates keys a pair; Cell
Ranger ATAC and ArchR collapse fragments by contig, start and end) one is
kept. For the proper FR pairs counted here orientation is always forward-left,
reverse-right, so the key is the span. Per chromosome, a track's sum is exactly
2 × the fragments counted, which ``insertions.summary.json`` records along
with every record dropped and why, and the duplicates removed.

Default source: ``insertions_source = "raw"``: the input BAMs. The WASP filter
drops every read over a heterozygous indel (and reads whose remapping moves),
which leaves donor-specific holes in the coverage that are not biology; the
study's targets came from all fragments of Cell Ranger's (deduplicated)
fragment files. ``"wasp"`` builds the tracks from the WASP-filtered BAMs
instead (when ``wasp_remap`` ran; else the raw BAM, logged). Allelic counts
always come from the WASP-filtered reads.

Tracks are written as bigWig (every FASTA contig in the header, FASTA order),
per-base integer counts stored as bedGraph runs. Work streams by chromosome;
memory is bounded by one chromosome's fragments, never a genome-sized array.
"""

from __future__ import annotations

import argparse
import contextlib
from collections import Counter
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from .engine import Step, StepContext
from .errors import InputError
from .genome import fasta_lengths
from .io import atomic_path, write_json
from .log import Progress, get_logger
from .parallel import map_jobs
from .samplesheet import cell_types
from .single_cell import read_study, study_input_files
from .step_cli import add_param_options, params_from_args
from .tracks import add_runs, read_runs, runs_to_sites, verify_bigwig

log = get_logger("insertions")

FORWARD_SHIFT = 4    # + strand insertion: 5' end + 4
REVERSE_SHIFT = -5   # - strand insertion: 5' end - 5
MIN_FRAGMENT = 10    # shorter "fragments" cannot come from a Tn5 dimer (9 bp target duplication)

# SAM flag bits
_PAIRED, _PROPER, _UNMAP, _MUNMAP = 0x1, 0x2, 0x4, 0x8
_REVERSE, _MREVERSE = 0x10, 0x20
_READ1, _READ2, _SECONDARY, _QCFAIL, _DUP, _SUPPL = 0x40, 0x80, 0x100, 0x200, 0x400, 0x800

DROP_REASONS = ("unpaired", "unmapped", "not_primary", "qc_fail", "duplicate",
                "not_proper_pair", "low_mapq", "too_short")
SOURCES = ("wasp", "raw")

PARAMS = {"insertions_source": "raw", "insertions_min_mapq": 10}


# ---------------------------------------------------------------- one chromosome
def _read1_records(bam, chrom: str, tag: str | None = None,
                   barcodes: list | None = None) -> tuple[np.ndarray, Counter]:
    """Fields of every read-1 (or unpaired) record on ``chrom``; with ``tag``, each record's value
    of that tag (None when absent) is appended to ``barcodes``, one per row.

    Returns
    -------
    rec : numpy.ndarray of int64, shape (n, 7)
        flag, mapq, mate MAPQ (-1 if no MQ tag), reference_start, reference_end,
        template_length, same-contig mate (0/1).
    n_read : Counter
        ``records`` read on the contig (all records, read 2 included).
    """
    rows = []
    append = rows.append
    n = 0
    for r in bam.fetch(chrom):
        n += 1
        flag = r.flag
        if flag & _PAIRED and not flag & _READ1:
            continue  # a pair is counted from its read 1
        if tag is not None:
            barcodes.append(r.get_tag(tag) if r.has_tag(tag) else None)
        if flag & _UNMAP:
            append((flag, 0, -1, 0, 0, 0, 0))
            continue
        mq = r.get_tag("MQ") if r.has_tag("MQ") else -1  # mate MAPQ, when samtools fixmate added it
        append((flag, r.mapping_quality, mq, r.reference_start, r.reference_end,
                r.template_length, r.next_reference_id == r.reference_id))
    rec = np.array(rows, dtype=np.int64).reshape(-1, 7)
    return rec, Counter(records=n)


def _read_or_blame(bam, chrom: str, bam_path) -> tuple[np.ndarray, Counter]:
    """:func:`_read1_records`, with htslib's read errors (a block failing its CRC, a cut
    file) as an error naming the BAM instead of a bare ``OSError``."""
    try:
        return _read1_records(bam, chrom)
    except OSError as e:
        with contextlib.suppress(OSError):
            bam.close()
        raise InputError(bam_path, f"reading {chrom} failed ({e.strerror or e}): the BAM is corrupt or cut short",
                         "check it with `samtools quickcheck -v` and `samtools view -c`; re-create it "
                         "from the aligner's output") from None


def _classify(rec: np.ndarray, min_mapq: int) -> tuple[np.ndarray, dict[str, int]]:
    """Which read-1 records make a counted fragment, and why the others are dropped.

    Returns
    -------
    keep : numpy.ndarray of bool, shape (n,)
    dropped : dict
        reason → records (each record is dropped for its first failing reason).
    """
    flag, mapq, mq, start, end, tlen, same = rec.T
    frag_len = np.abs(tlen)
    tests = [
        ("unpaired", flag & _PAIRED == 0),
        ("unmapped", (flag & (_UNMAP | _MUNMAP)) != 0),
        ("not_primary", (flag & (_SECONDARY | _SUPPL)) != 0),
        ("qc_fail", (flag & _QCFAIL) != 0),
        ("duplicate", (flag & _DUP) != 0),
        ("not_proper_pair", ((flag & _PROPER) == 0) | (same == 0) | (tlen == 0)),
        ("low_mapq", (mapq < min_mapq) | ((mq >= 0) & (mq < min_mapq))),
        ("too_short", frag_len < MIN_FRAGMENT),
    ]
    alive = np.ones(len(rec), dtype=bool)
    dropped = {}
    for reason, bad in tests:
        hit = alive & bad
        dropped[reason] = int(hit.sum())
        alive &= ~hit
    return alive, dropped


def fragment_spans(rec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Outer mapped ends of each pair, from read 1's alignment and TLEN.

    Parameters
    ----------
    rec : numpy.ndarray of int64, shape (n, 7)
        Read-1 records (see :func:`_read1_records`).

    Returns
    -------
    frag_start, frag_end : numpy.ndarray of int64, shape (n,)
        0-based half-open fragment spans.
    """
    start, end, tlen = rec[:, 3], rec[:, 4], rec[:, 5]
    # TLEN > 0: read 1 is leftmost, fragment = [start, start + TLEN);
    # TLEN < 0: read 1 is rightmost, fragment = [end + TLEN, end)
    return np.where(tlen > 0, start, end + tlen), np.where(tlen > 0, start + tlen, end)


def fragment_insertions(rec: np.ndarray) -> np.ndarray:
    """Both Tn5 insertion sites of each counted fragment.

    Parameters
    ----------
    rec : numpy.ndarray of int64, shape (n, 7)
        Kept read-1 records (see :func:`_read1_records`).

    Returns
    -------
    numpy.ndarray of int64, shape (2 n,)
        0-based insertion positions: ``frag_start + 4`` then ``frag_end - 1 - 5``.
    """
    frag_start, frag_end = fragment_spans(rec)
    return np.concatenate([frag_start + FORWARD_SHIFT, frag_end - 1 + REVERSE_SHIFT])


def unique_fragments(rec: np.ndarray, cell: np.ndarray | None = None) -> np.ndarray:
    """Keep mask removing duplicate fragments: one per (start, end, orientation) and, with
    ``cell`` (int array, shape (n,): a barcode id per record), per cell barcode.

    Orientation is the strand of the read at the left end and of the read at
    the right end, whichever mate is read 1 (so an R1/R2-swapped copy is a
    duplicate, as in Picard MarkDuplicates). Which copy is kept does not matter:
    duplicates give the same two insertions.

    Parameters
    ----------
    rec : numpy.ndarray of int64, shape (n, 7)
        Counted read-1 records of one contig.

    Returns
    -------
    numpy.ndarray of bool, shape (n,)
        True for the first record (in BAM order) of each distinct fragment.
    """
    if len(rec) == 0:
        return np.zeros(0, dtype=bool)
    flag, tlen = rec[:, 0], rec[:, 5]
    own_rev, mate_rev = (flag & _REVERSE) != 0, (flag & _MREVERSE) != 0
    left_rev = np.where(tlen > 0, own_rev, mate_rev)
    right_rev = np.where(tlen > 0, mate_rev, own_rev)
    frag_start, frag_end = fragment_spans(rec)
    key = np.stack([frag_start, frag_end, left_rev, right_rev] + ([] if cell is None else [cell]), axis=1)
    _, first = np.unique(key, axis=0, return_index=True)
    keep = np.zeros(len(rec), dtype=bool)
    keep[first] = True
    return keep


def site_counts(positions: np.ndarray, weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Distinct positions and their (summed) counts, sorted.

    Returns
    -------
    pos : numpy.ndarray of int64, shape (m,)
    count : numpy.ndarray of int64, shape (m,)
    """
    if weights is None:
        pos, count = np.unique(positions, return_counts=True)
        return pos.astype(np.int64), count.astype(np.int64)
    pos, inv = np.unique(positions, return_inverse=True)
    return pos.astype(np.int64), np.bincount(inv, weights=weights, minlength=pos.size).astype(np.int64)


def sites_to_runs(pos: np.ndarray, count: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-base counts at sorted distinct ``pos`` → bedGraph runs of equal value.

    Returns
    -------
    starts, ends : numpy.ndarray of int64, shape (r,)
    values : numpy.ndarray of float64, shape (r,)
    """
    if pos.size == 0:
        z = np.zeros(0, np.int64)
        return z, z, np.zeros(0, np.float64)
    new = np.r_[True, (pos[1:] != pos[:-1] + 1) | (count[1:] != count[:-1])]
    first = np.flatnonzero(new)
    last = np.r_[first[1:], pos.size] - 1
    return pos[first], pos[last] + 1, count[first].astype(np.float64)


# ---------------------------------------------------------------- whole tracks
def _open_bam(bam_path: str | Path, lengths: Mapping[str, int]):
    import pysam

    from .bam_records import check_bam

    bam_path = Path(bam_path)
    check_bam(bam_path)  # exists, readable, coordinate-sorted, indexed
    bam = pysam.AlignmentFile(str(bam_path), "rb")
    for name, ln in zip(bam.references, bam.lengths):
        if name not in lengths:
            bam.close()
            raise InputError(bam_path, f"contig {name!r} of the BAM header is not in the genome FASTA",
                             "use the FASTA the reads were aligned to")
        if lengths[name] != ln:
            bam.close()
            raise InputError(bam_path, f"contig {name!r} has length {ln} in the BAM but {lengths[name]} in the FASTA",
                             "use the FASTA the reads were aligned to")
    return bam


def sample_track(bam_path: str | Path, lengths: Mapping[str, int], out_bw: str | Path, *,
                 min_mapq: int = 10, sample: str = "") -> dict:
    """Write one sample's insertion bigWig; return its counting figures.

    Parameters
    ----------
    bam_path : path
        Coordinate-sorted, indexed paired-end BAM.
    lengths : dict
        contig → length, FASTA order (the bigWig header).
    out_bw : path
    min_mapq : int

    Returns
    -------
    dict
        ``records``, ``fragments`` (total, after duplicate removal), ``fragments_by_chrom``,
        ``insertions``, ``dropped`` (reason → read-1/unpaired records), ``duplicates_removed``
        (counted fragments removed as copies of another, see :func:`unique_fragments`).

    Raises
    ------
    InputError
        Missing index, contigs not in the FASTA, or no properly paired fragment at all.
    """
    import pyBigWig

    bam = _open_bam(bam_path, lengths)
    label = sample or Path(bam_path).stem
    in_bam = set(bam.references)
    mapped = {s.contig: s.mapped for s in bam.get_index_statistics()}
    prog = Progress(log, "reads", total=sum(mapped.values()) or None, label=label)
    frags: dict[str, int] = {}
    dropped = Counter({r: 0 for r in DROP_REASONS})
    n_records = n_dups = 0
    with atomic_path(out_bw) as tmp:
        bw = pyBigWig.open(str(tmp), "w")
        bw.addHeader(list(lengths.items()))
        for chrom in lengths:
            if chrom not in in_bam:
                frags[chrom] = 0
                continue
            rec, n = _read_or_blame(bam, chrom, bam_path)
            keep, drop = _classify(rec, min_mapq)
            dropped.update(drop)
            n_records += n["records"]
            prog.update(n["records"])
            counted = rec[keep]
            unique = unique_fragments(counted)
            n_dups += int((~unique).sum())
            frags[chrom] = int(unique.sum())
            pos, cnt = site_counts(fragment_insertions(counted[unique]))
            add_runs(bw, chrom, *sites_to_runs(pos, cnt), out_bw)
        bw.close()
        bam.close()
        verify_bigwig(tmp, lengths, {c: 2 * n for c, n in frags.items()}, out_bw)
        total = sum(frags.values())
        if total == 0:
            raise InputError(bam_path, f"no properly paired fragment counted out of {n_records} records "
                             f"(dropped: {', '.join(f'{k}={v}' for k, v in dropped.items() if v) or 'none'})",
                             "caveat needs paired-end ATAC-seq aligned in paired mode (proper-pair flags set); "
                             "check with `samtools flagstat`, or lower insertions_min_mapq")
    prog.close()
    log.info("%s: %d records read, %d fragments counted (%d insertions), %d duplicate fragments removed; "
             "dropped: %s", label, n_records, total, 2 * total, n_dups,
             ", ".join(f"{k}={v}" for k, v in dropped.items() if v) or "none")
    return {"records": n_records, "fragments": total, "fragments_by_chrom": frags,
            "insertions": 2 * total, "dropped": dict(dropped), "duplicates_removed": n_dups, "min_mapq": min_mapq}


def library_bam_sites(bam_path: str | Path, lengths: Mapping[str, int], lookup, *, tag: str = "CB",
                      min_mapq: int = 10) -> dict[str, dict[int, tuple[np.ndarray, np.ndarray]]]:
    """Insertion counts per barcode group of a single-cell library's BAM (the BAM side of the
    fragments-file equivalence, :mod:`caveat.fragments`).

    Fragments are counted as by :func:`sample_track` (read 1 of each proper pair, TLEN span,
    +4/−5) except that duplicates are removed within each barcode, as Cell Ranger collapses
    them into a fragment-file line; reads without the tag or of barcodes outside ``lookup``
    are not counted. Upstream duplicate flags (0x400) are ignored: Cell Ranger marks one copy
    per barcode, and when that copy fails a filter (MAPQ) a flagged copy that passes still makes
    the fragment-file line (its count column then says how many copies passed).

    Parameters
    ----------
    lookup : caveat.barcodes.BarcodeLookup
        barcode → group code.

    Returns
    -------
    dict
        contig → {group code → (pos, count)}, int64 arrays of shape (m,), pos sorted.
    """
    bam = _open_bam(bam_path, lengths)
    out: dict[str, dict[int, tuple[np.ndarray, np.ndarray]]] = {}
    try:
        for chrom in lengths:
            out[chrom] = {}
            if chrom not in bam.references:
                continue
            cells: list = []
            rec, _ = _read1_records(bam, chrom, tag, cells)
            rec[:, 0] &= ~_DUP  # the per-barcode dedup below replaces upstream marking (see docstring)
            keep, _ = _classify(rec, min_mapq)
            code = lookup.string_codes([c or "" for c in cells]) if cells else np.empty(0, np.int64)
            keep &= code >= 0
            cell_id = pd.factorize(pd.Series(cells, dtype=object))[0] if cells else np.empty(0, np.int64)
            counted, code, cell_id = rec[keep], code[keep], cell_id[keep]
            uniq = unique_fragments(counted, cell_id)
            ins = fragment_insertions(counted[uniq])
            g = np.concatenate([code[uniq], code[uniq]])
            for k in np.unique(g):
                out[chrom][int(k)] = site_counts(ins[g == k])
    finally:
        bam.close()
    return out


def fragment_tracks(libraries: Sequence[tuple[str | Path, "object"]], groups: Sequence[tuple[str, str]],
                    lengths: Mapping[str, int], out_dir: str | Path, *, pseudobulk: bool = True) -> dict:
    """Insertion bigWigs from Cell Ranger fragment files: one per (donor, cell type) group,
    ``<donor>_<cell_type>.bw``, and one per cell type, ``<cell_type>.pseudobulk.bw``.

    Each fragment gives its two insertion sites once (:func:`caveat.fragments.insertion_sites`:
    ``start`` and ``end - 1``; Cell Ranger's coordinates are already Tn5-shifted), whatever its
    duplicate count. A group may take barcodes from several libraries.

    Parameters
    ----------
    libraries : sequence of (fragments path, BarcodeLookup)
        Each library's fragments file and its barcode → group code lookup (codes index ``groups``).
    groups : sequence of (donor, cell_type)
    lengths : dict
        contig → length, FASTA order (bigWig header).
    out_dir : path
    pseudobulk : bool
        Also write the per-cell-type tracks (False: a caller that sums them with bulk samples'
        tracks, :func:`pseudobulk_track`).

    Returns
    -------
    dict
        ``groups`` (name → insertions), ``cell_types`` (name → insertions), ``fragments`` and
        ``outside_table`` (fragments of barcodes outside the tables), per library path.

    Raises
    ------
    InputError
        A fragments file without index, with malformed lines or contigs outside the FASTA;
        nothing is written then.
    """
    import pyBigWig

    from . import fragments as fr

    out_dir = Path(out_dir)
    cts = list(dict.fromkeys(ct for _, ct in groups))
    ct_of = np.array([cts.index(ct) for _, ct in groups], np.int64)
    names = [f"{d}_{ct}" for d, ct in groups] + ([f"{ct}.pseudobulk" for ct in cts] if pseudobulk else [])
    totals = {n: {} for n in names}
    figures = {str(path): {"fragments": 0, "outside_table": 0} for path, _ in libraries}
    readers = [(str(path), lookup, fr.iter_contigs(path, lengths)) for path, lookup in libraries]
    with contextlib.ExitStack() as stack:
        tmps = [stack.enter_context(atomic_path(out_dir / f"{n}.bw")) for n in names]
        bws = [pyBigWig.open(str(t), "w") for t in tmps]
        for bw in bws:
            bw.addHeader(list(lengths.items()))
        for chrom in lengths:
            parts: dict[int, list] = {}
            for path, lookup, it in readers:
                c, frags = next(it)
                sites, fig = fr.group_sites(frags, lookup)
                for k, v in fig.items():
                    figures[path][k] += v
                for g, pc in sites.items():
                    parts.setdefault(g, []).append(pc)
                    if pseudobulk:
                        parts.setdefault(len(groups) + int(ct_of[g]), []).append(pc)
            for i, (name, bw) in enumerate(zip(names, bws)):
                got = parts.get(i, [])
                pos, cnt = site_counts(np.concatenate([p for p, _ in got]) if got else np.empty(0, np.int64),
                                       np.concatenate([c for _, c in got]) if got else np.empty(0, np.int64))
                totals[name][chrom] = int(cnt.sum())
                add_runs(bw, chrom, *sites_to_runs(pos, cnt), out_dir / f"{name}.bw")
        for name, bw, tmp in zip(names, bws, tmps):
            bw.close()
            verify_bigwig(tmp, lengths, totals[name], out_dir / f"{name}.bw")
    ins = {n: sum(t.values()) for n, t in totals.items()}
    log.info("fragment tracks: %d groups, %d cell types from %d fragments files; %s", len(groups), len(cts),
             len(libraries), ", ".join(f"{p}: {f['fragments']} fragments counted, {f['outside_table']} of barcodes "
                                       "outside the table" for p, f in figures.items()))
    return {"groups": {n: ins[n] for n in names[:len(groups)]},
            "cell_types": {ct: ins[f"{ct}.pseudobulk"] for ct in cts} if pseudobulk else {}, "libraries": figures,
            "convention": FRAGMENT_CONVENTION}


#: how a fragment-file line becomes insertions (recorded in the figures)
FRAGMENT_CONVENTION = "Cell Ranger start/end are Tn5-shifted (+4/-5): insertions at start and end-1, once per line"


def pseudobulk_track(sample_bws: Sequence[str | Path], lengths: Mapping[str, int], out_bw: str | Path) -> dict:
    """Sum sample insertion bigWigs base by base into one pseudobulk bigWig.

    Returns
    -------
    dict
        ``insertions_by_chrom`` and ``insertions`` (totals of the pseudobulk).
    """
    import pyBigWig

    if not sample_bws:
        raise InputError(None, "no sample bigWigs to pool", "give at least one sample track")
    ins: dict[str, int] = {}
    handles = [pyBigWig.open(str(p)) for p in sample_bws]
    try:
        with atomic_path(out_bw) as tmp:
            out = pyBigWig.open(str(tmp), "w")
            out.addHeader(list(lengths.items()))
            for chrom in lengths:
                parts = [runs_to_sites(*read_runs(h, chrom)) for h in handles]
                pos = np.concatenate([p for p, _ in parts])
                cnt = np.concatenate([c for _, c in parts])
                pos, cnt = site_counts(pos, cnt)
                ins[chrom] = int(cnt.sum())
                add_runs(out, chrom, *sites_to_runs(pos, cnt), out_bw)
            out.close()
            verify_bigwig(tmp, lengths, ins, out_bw)
    finally:
        for h in handles:
            h.close()
    return {"insertions_by_chrom": ins, "insertions": sum(ins.values())}


# ---------------------------------------------------------------- the step
def source_bam(sample: str, raw_bam: str, outdir: Path, source: str) -> tuple[str, str]:
    """The BAM a sample's track is built from: (path, "wasp" | "raw")."""
    if source not in SOURCES:
        raise InputError("insertions_source", f"unknown value {source!r}", "use 'wasp' or 'raw'")
    wasp = outdir / "wasp" / f"{sample}.bam"
    if source == "wasp" and wasp.exists():
        return str(wasp), "wasp"
    if source == "wasp":
        log.warning("%s: no WASP-filtered BAM (%s); using the raw BAM", sample, wasp.relative_to(outdir))
    return raw_bam, "raw"


def _sample_job(args: tuple, threads: int = 1) -> dict:
    """One sample's track in a worker process (pysam iteration holds the GIL: processes, not threads)."""
    bam, lengths, out_bw, min_mapq, sample = args
    return sample_track(bam, lengths, out_bw, min_mapq=min_mapq, sample=sample)


def _pseudobulk_job(args: tuple, threads: int = 1) -> dict:
    """One cell type's pseudobulk track in a worker process."""
    return pseudobulk_track(*args)


COUNTING_RULE = "read 1 of each proper pair; TLEN span; one per (start, end, orientation); +4/-5"


def run_step(ctx: StepContext) -> dict:
    """Local engine: a track per sample (bulk BAMs; the libraries' groups from their fragments
    files), then a pseudobulk per cell type over its samples."""
    p = ctx.params
    study = read_study(p["input"])
    sheet = study.bulk()
    lengths = fasta_lengths(p["fasta"])
    min_mapq = int(p["insertions_min_mapq"])
    jobs, sources = [], {}
    for row in sheet.itertuples():
        bam, src = source_bam(row.sample, row.bam, ctx.outdir, p["insertions_source"])
        sources[row.sample] = src
        jobs.append((bam, lengths, ctx.out("insertions", f"{row.sample}.bw"), min_mapq, row.sample))
    # samples, then cell types, up to ctx.threads at once in worker processes; results in sheet order
    stats = dict(zip(sources, map_jobs(_sample_job, jobs, ctx.threads, names=list(sources), processes=True)))
    (ctx.outdir / "insertions").mkdir(parents=True, exist_ok=True)
    stats.update(library_tracks(study, lengths, ctx.outdir / "insertions"))
    samples = {}
    for row in study.samples.itertuples():
        src = sources.get(row.sample, "fragments")
        samples[row.sample] = {**stats[row.sample], "source": src, "donor": row.donor, "cell_type": row.cell_type}
    cts = cell_types(study.samples)
    members = {ct: study.samples.loc[study.samples["cell_type"] == ct, "sample"].tolist() for ct in cts}
    pjobs = [([ctx.outdir / "insertions" / f"{s}.bw" for s in members[ct]], lengths,
              ctx.out("insertions", f"{ct}.pseudobulk.bw")) for ct in cts]
    pseudo = {}
    for ct, res in zip(cts, map_jobs(_pseudobulk_job, pjobs, ctx.threads, names=cts, processes=True,
                                     what="cell type")):
        pseudo[ct] = {"samples": members[ct], **res}
        log.info("pseudobulk %s: %d samples, %d insertions", ct, len(members[ct]), res["insertions"])
    summary = run_summary(samples, pseudo, p["insertions_source"], min_mapq)
    write_json(summary, ctx.out("insertions.summary.json"))
    return {"samples": len(samples), "cell_types": len(pseudo),
            "fragments": summary["fragments"], "duplicates_removed": summary["duplicates_removed"]}


def library_tracks(study, lengths: Mapping[str, int], out_dir: Path) -> dict[str, dict]:
    """``<donor>_<cell_type>.bw`` of every library group, from the libraries' fragments files.

    Cell Ranger's fragments file is the study's source of targets (Appendix B.1: fragments of
    the pseudobulk), already deduplicated per barcode and Tn5-shifted (:data:`FRAGMENT_CONVENTION`);
    ``insertions_source`` and ``insertions_min_mapq`` apply to bulk BAMs only (Cell Ranger
    keeps pairs with MAPQ > 30).

    Returns
    -------
    dict
        sample → ``fragments``, ``insertions`` (its track's sum), ``libraries``.
    """
    from .barcodes import BarcodeLookup
    from .single_cell import barcode_group_codes

    libs = study.libraries
    if libs.empty:
        return {}
    groups = barcode_group_codes(study.barcodes, libs["library"].iloc[0])[1]
    readers = [(lib.fragments, BarcodeLookup(barcode_group_codes(study.barcodes, lib.library)[0], lib.barcodes_path))
               for lib in libs.itertuples()]
    st = fragment_tracks(readers, groups, lengths, out_dir, pseudobulk=False)
    pb = study.samples[study.samples["source"] == "library"]
    return {row.sample: group_stats(st["groups"][row.sample], row.libraries) for row in pb.itertuples()}


def group_stats(insertions: int, libraries) -> dict:
    """One pseudobulk group's figures, as both engines report them: a fragment gives two
    insertions (its two Tn5 cut sites), so ``fragments`` = insertions / 2."""
    return {"fragments": int(insertions) // 2, "insertions": int(insertions), "libraries": list(libraries)}


def run_summary(samples: dict, pseudo: dict, source: str, min_mapq: int) -> dict:
    """``insertions.summary.json``: per-sample and per-cell-type figures and the run's totals."""
    return {"samples": samples, "pseudobulk": pseudo, "min_mapq": min_mapq, "source": source,
            "counting_rule": COUNTING_RULE, "fragments": sum(s["fragments"] for s in samples.values()),
            "duplicates_removed": sum(s.get("duplicates_removed", 0) for s in samples.values())}


def _input_files(params: dict) -> list[str]:
    files = [params["fasta"]] if params.get("fasta") else []
    if params.get("input") and Path(params["input"]).exists():
        files += study_input_files(params["input"], fragments=True)
    return files


def _reads_wasp(params: dict) -> tuple[str, ...]:
    """WASP-filtered BAMs are read only with ``insertions_source: wasp``: with ``raw`` the
    tracks neither wait for nor depend on ``wasp_remap``."""
    return ("wasp_remap",) if params.get("insertions_source") == "wasp" else ()


STEP = Step(
    name="insertions",
    run=run_step,
    needs=(),
    optional_needs=("wasp_remap",),
    optional_reads=_reads_wasp,
    params=PARAMS,
    input_files=_input_files,
    doc="Tn5 insertion bigWigs per sample and pseudobulk per cell type",
)


# ---------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="caveat insertions", description=__doc__.splitlines()[0],
        epilog="One sample (--fasta --bam --out-bw), a pseudobulk (--fasta --pseudobulk --out-bw), or the run's "
               "insertions.summary.json (--summarize STATS... --input --out-summary) from the tracks' --stats "
               "files named <sample>.insertions.json and <cell_type>.pseudobulk.json.")
    ap.add_argument("--fasta", help="genome FASTA (contig order and lengths of the bigWig header)")
    ap.add_argument("--out-bw", help="output bigWig")
    ap.add_argument("--bam", help="one sample's indexed BAM → its insertion track")
    ap.add_argument("--sample", default="", help="sample name (for logs)")
    ap.add_argument("--stats", help="write the sample's counting figures here (JSON)")
    ap.add_argument("--pseudobulk", nargs="+", metavar="BW", help="sample bigWigs to sum into a pseudobulk track")
    ap.add_argument("--summarize", nargs="+", metavar="STATS",
                    help="instead of a track: the run's summary from every sample's and cell type's --stats JSON")
    ap.add_argument("--input", help="with --summarize: the samplesheet or samples table (donor, cell type, "
                                    "pseudobulk members; a library group's source is `fragments`)")
    add_param_options(ap, PARAMS, aliases={"insertions_min_mapq": ["--min-mapq"], "insertions_source": ["--source"]},
                      helps={"insertions_min_mapq": "least MAPQ of a counted fragment's reads (also recorded by "
                                                    "--summarize)",
                             "insertions_source": "with --summarize: the BAMs the tracks were built from"})
    ap.add_argument("--out-summary", help="with --summarize: insertions.summary.json")
    ap.add_argument("--fragments", nargs="+", metavar="TSV_GZ",
                    help="single-cell libraries' Cell Ranger fragments files (with .tbi) → --out-dir/<donor>_"
                         "<cell_type>.bw and <cell_type>.pseudobulk.bw (give --barcodes, one table per file)")
    ap.add_argument("--barcodes", nargs="+", metavar="TABLE", help="with --fragments: each library's barcode table")
    ap.add_argument("--out-dir", help="with --fragments: where the tracks are written")
    ap.add_argument("--libraries", nargs="+", metavar="LIBRARY",
                    help="with --fragments: the libraries' ids, one per file (default: the fragments files' names)")
    ap.add_argument("--table-donor", action="append", default=[], metavar="LIBRARY=DONOR",
                    help="with --fragments: a one-donor library whose table has no donor column, and its donor")
    ap.add_argument("--no-pseudobulk", action="store_true",
                    help="with --fragments: write the groups' tracks only (the pseudobulk is made per cell type over "
                         "every sample's track, --pseudobulk)")
    ap.add_argument("--group-stats", action="store_true",
                    help="with --fragments: also write each group's figures to --out-dir/<donor>_<cell_type>"
                         ".insertions.json (a sample's --stats format, for --summarize)")
    return ap


def summarize(stats: Sequence[str | Path], sheet, source: str, min_mapq: int, out: str | Path) -> dict:
    """``insertions.summary.json`` as the local engine writes it, from the per-track stats."""
    from .io import read_json

    by_name = {Path(f).name: Path(f) for f in stats}

    def figures(name: str) -> dict:
        if name not in by_name:
            raise InputError(name, "stats file missing from --summarize", "pass every sample's and cell type's stats")
        return read_json(by_name[name])

    # a library group's track comes from the fragments files whatever the bulk source (the local run_step's rule)
    src = (sheet["source"] if "source" in sheet else pd.Series("bulk", index=sheet.index)).tolist()
    samples = {row.sample: {**figures(f"{row.sample}.insertions.json"),
                            "source": "fragments" if s == "library" else source, "donor": row.donor,
                            "cell_type": row.cell_type} for row, s in zip(sheet.itertuples(), src)}
    pseudo = {ct: {"samples": sheet.loc[sheet["cell_type"] == ct, "sample"].tolist(),
                   **figures(f"{ct}.pseudobulk.json")} for ct in cell_types(sheet)}
    summary = run_summary(samples, pseudo, source, min_mapq)
    write_json(summary, out)
    return summary


def _fragment_tracks_cli(ap: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """CLI: tracks per donor x cell type and per cell type from fragments files (:func:`fragment_tracks`);
    a library is named by its fragments file's name."""
    from .barcodes import BarcodeLookup
    from .single_cell import barcode_group_codes, read_barcode_table

    if not (args.fasta and args.out_dir and args.barcodes) or len(args.barcodes) != len(args.fragments):
        ap.error("--fragments needs --fasta, --out-dir and one --barcodes table per fragments file")
    libs = args.libraries or [Path(f).name for f in args.fragments]
    if len(libs) != len(args.fragments):
        ap.error("--libraries needs one id per fragments file")
    donors = _table_donors(ap, args.table_donor, libs)
    table = pd.concat([read_barcode_table(t, lib, row_donor=donors.get(lib, ""))[0]
                       for t, lib in zip(args.barcodes, libs)], ignore_index=True)
    groups = barcode_group_codes(table, libs[0])[1]
    libraries = [(f, BarcodeLookup(barcode_group_codes(table, lib)[0], t))
                 for f, t, lib in zip(args.fragments, args.barcodes, libs)]
    st = fragment_tracks(libraries, groups, fasta_lengths(args.fasta), args.out_dir,
                         pseudobulk=not args.no_pseudobulk)
    if args.stats:
        write_json(st, args.stats)
    if args.group_stats:
        _write_group_stats(st, table, Path(args.out_dir))
    return 0


def _table_donors(ap: argparse.ArgumentParser, pairs: Sequence[str], libs: Sequence[str]) -> dict[str, str]:
    """``--table-donor LIBRARY=DONOR`` values as library → donor."""
    out = dict(v.split("=", 1) for v in pairs if "=" in v)
    if len(out) != len(pairs) or set(out) - set(libs):
        ap.error(f"--table-donor takes LIBRARY=DONOR with LIBRARY one of {', '.join(libs)}")
    return out


def _write_group_stats(st: dict, table: pd.DataFrame, out_dir: Path) -> None:
    """``<sample>.insertions.json`` of each group: the figures the local engine's
    :func:`library_tracks` gives it (:func:`group_stats`)."""
    from .single_cell import pseudobulk_samples

    for row in pseudobulk_samples(table).itertuples():
        write_json(group_stats(st["groups"][row.sample], row.library), out_dir / f"{row.sample}.insertions.json")


def main(argv=None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)
    if args.summarize:
        if not (args.input and args.out_summary):
            ap.error("--summarize needs --input and --out-summary")
        sheet = read_study(args.input, check_files=False).samples
        p = params_from_args(args, PARAMS)
        summarize(args.summarize, sheet, p["insertions_source"], p["insertions_min_mapq"], args.out_summary)
        return 0
    if args.fragments:
        return _fragment_tracks_cli(ap, args)
    if not (args.fasta and args.out_bw):
        ap.error("a track needs --fasta and --out-bw")
    if bool(args.bam) == bool(args.pseudobulk):
        raise InputError(None, "give exactly one of --bam and --pseudobulk", "see `caveat insertions --help`")
    lengths = fasta_lengths(args.fasta)
    if args.bam:
        st = sample_track(args.bam, lengths, args.out_bw, min_mapq=args.insertions_min_mapq, sample=args.sample)
    else:
        st = pseudobulk_track(args.pseudobulk, lengths, args.out_bw)
    if args.stats:
        write_json(st, args.stats)
    return 0
