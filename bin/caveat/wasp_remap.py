"""WASP_REMAP: remove reference mapping bias at het SNPs, then deduplicate without allele bias.

The algorithm of WASP's ``mapping/`` (van de Geijn et al. 2015):

1. *Classify* (per chromosome, streamed in chunks of raw records): unmapped,
   secondary, supplementary, QC-fail, improper-pair, low-MAPQ records and
   reads over het indels are dropped and counted; pairs are judged together.
   Reads/pairs with no aligned base on a het SNP are kept as they are.
2. *Versions*: for each read/pair over het SNPs, every REF/ALT combination
   at its sites (mates consistent), capped at ``wasp_max_snps_per_read``
   sites and ``wasp_max_versions`` versions (over a cap: dropped, counted).
3. *Remap* all versions once with the same aligner, index and arguments.
4. *Keep* a read/pair only if every version maps back uniquely (MAPQ ≥
   ``min_mapq``) to the same position(s) with the same CIGAR(s) (mates may swap).
5. *Dedup*: among kept reads/pairs with identical (chrom, start, mate start,
   strand) keep one, chosen by a seeded hash of the read name — a lottery
   that cannot favour an allele. A pair's strand is that of the read at each
   end, whichever mate is read 1 (R1/R2-swapped copies are duplicates too).

A single-cell library (``barcode_tag="CB"``, CLI ``--barcode-tag CB [--barcodes TABLE]``):
reads without the tag, or with a barcode outside the table, are dropped and counted in step 1,
the dedup key of step 5 includes the barcode (identical ends in two cells are both kept), and
every kept record keeps its bytes, tags included (docs/CONVENTIONS.md, "Single-cell reads").
The input's ``@PG`` lines are compared with ``aligner``/``aligner_args`` (a warning names both).

Outputs: ``het_snps.parquet``, ``het_indels.parquet``, ``wasp/<sample>.bam``
(+ ``.bai``), ``wasp/<sample>.stats.json``, ``wasp_remap.summary.json``.

The entry script also runs the pieces of a scattered run (Nextflow): the het
sites alone (no ``--bam``), the filter on one contig (``--chrom``), the join of
a sample's contig parts (``--gather``, byte for byte the whole-BAM output), the
run summary (``--summarize``) and the contig groups the filter is scattered over
(``--plan-groups``, :mod:`caveat.contig_groups`).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import struct
import tempfile
import zlib
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from . import __version__
from . import bam_records as br
from . import barcodes as bcs
from .aligner import align, build_index, check_aligner, provenance_warning
from .contig_groups import plan_groups, write_plan
from .engine import Step, StepContext
from .errors import InputError
from .genome import CODE, check_contigs, fasta_lengths, read_contig_map
from .het_sites import check_donors_have_sites, read_het_sites
from .io import atomic_path, read_json, read_parquet, write_json, write_parquet
from .log import Progress, get_logger
from .natural_sort import natural_key
from .parallel import map_jobs, map_ordered
from .read_versions import make_versions
from .single_cell import read_study, study_input_files
from .step_cli import add_param_options, params_from_args

log = get_logger("wasp_remap")

PARAMS = {
    "aligner": "bowtie2",
    "aligner_index": None,
    "aligner_args": "--very-sensitive -X 2000",
    "wasp_max_snps_per_read": 6,
    "wasp_max_versions": 64,
    "min_mapq": 10,
    "vcf_pass_only": True,
    # Nextflow only (WASP_REMAP_PLAN): bases per WASP_REMAP task's contig group (caveat.contig_groups);
    # the local engine filters each sample in one go and does not read it
    "wasp_group_bp": 50_000_000,
}

# record decisions (codes are also the precedence when two mates disagree: lower wins)
KEEP, REMAP = 0, 1
DROP_REASONS = ("unmapped", "secondary", "supplementary", "qc_fail", "improper_pair", "mate_missing",
                "low_mapq", "het_indel", "no_barcode", "barcode_not_in_table")
R = {name: i + 2 for i, name in enumerate(DROP_REASONS)}
PENDING = 255
REMAP_REASONS = ("too_many_snps", "too_many_versions", "remap_unmapped", "remap_low_mapq", "remap_moved")


# ----------------------------------------------------------------------------- classify

def _site_tables(snps: pd.DataFrame, indels: pd.DataFrame, chrom: str):
    s = snps[snps["chrom"] == chrom].sort_values("pos")
    snp_pos = s["pos"].to_numpy(np.int64)
    ref = CODE[np.frombuffer("".join(s["ref"]).encode(), np.uint8)] if len(s) else np.empty(0, np.uint8)
    alt = CODE[np.frombuffer("".join(s["alt"]).encode(), np.uint8)] if len(s) else np.empty(0, np.uint8)
    d = indels[indels["chrom"] == chrom].sort_values("pos")
    ind_start = d["pos"].to_numpy(np.int64)
    # an indel's footprint: the bases after the anchor it deletes, or the junction it inserts at
    ind_end = np.maximum(d["end"].to_numpy(np.int64), ind_start + 2)
    ind_maxend = np.maximum.accumulate(ind_end) if len(d) else ind_end
    return snp_pos, ref, alt, ind_start, ind_maxend


def _over_indel(ch: br.Chunk, ind_start: np.ndarray, ind_maxend: np.ndarray) -> np.ndarray:
    """Reads whose span overlaps a het indel, shape (n_records,)."""
    if len(ind_start) == 0:
        return np.zeros(len(ch), bool)
    k = np.searchsorted(ind_start, ch.end, side="left")
    return (k > 0) & (ind_maxend[np.maximum(k - 1, 0)] > ch.pos + 1)


def _individual_reason(ch: br.Chunk, over_indel: np.ndarray, min_mapq: int) -> np.ndarray:
    f = ch.flag
    paired = (f & br.PAIRED) != 0
    improper = paired & (((f & br.PROPER) == 0) | ((f & br.MUNMAP) != 0) | (ch.next_refid != ch.refid))
    r = np.zeros(len(ch), np.int64)
    for cond, code in ((over_indel, R["het_indel"]), (ch.mapq < min_mapq, R["low_mapq"]),
                       (improper, R["improper_pair"]), ((f & br.QCFAIL) != 0, R["qc_fail"]),
                       ((f & br.UNMAP) != 0, R["unmapped"])):
        r[cond] = code
    return r


def classify(ch: br.Chunk, dec: np.ndarray, nsnp: np.ndarray, over_indel: np.ndarray,
             min_mapq: int, final: bool, barcode_reason: np.ndarray | None = None) -> np.ndarray:
    """Decide every undecided record of a chunk (pairs together).

    Parameters
    ----------
    dec : uint8 array, shape (n_records,)
        Decisions so far (``PENDING`` = undecided); updated and returned.
    nsnp : int array, shape (n_records,)
        Het SNPs under each read's aligned bases.
    final : bool
        No records follow: lone mates are orphans.
    barcode_reason : int array, shape (n_records,), optional
        A single-cell library's barcode drops (``R["no_barcode"]``, ``R["barcode_not_in_table"]``,
        0 = has a barcode to keep); they lose to every other reason (highest codes).
    """
    und = dec == PENDING
    f = ch.flag
    sec = (f & br.SECONDARY) != 0
    sup = (f & br.SUPPLEMENTARY) != 0
    dec[und & sec] = R["secondary"]
    dec[und & sup & ~sec] = R["supplementary"]
    prim = und & ~sec & ~sup
    ind = _individual_reason(ch, over_indel, min_mapq)
    if barcode_reason is not None:
        ind = np.where(ind > 0, ind, barcode_reason)
    ok_dec = np.where(nsnp > 0, REMAP, KEEP)
    paired = (f & br.PAIRED) != 0
    single = prim & ~paired
    dec[single] = np.where(ind[single] > 0, ind[single], ok_dec[single])
    # only proper pairs wait for their mate; the rest are dropped on their own flags
    away = prim & paired & ((ch.next_refid != ch.refid) | ((f & br.PROPER) == 0) | ((f & (br.UNMAP | br.MUNMAP)) != 0))
    dec[away] = np.where(ind[away] > 0, ind[away], R["improper_pair"])
    idx = np.flatnonzero(prim & paired & ~away)
    if len(idx) == 0:
        return dec
    order = idx[np.argsort(ch.name_hash[idx], kind="stable")]
    _, first, counts = np.unique(ch.name_hash[order], return_index=True, return_counts=True)
    two = first[counts == 2]
    a, b = order[two], order[two + 1]
    ia, ib = ind[a], ind[b]
    r = np.where(ia == 0, ib, np.where(ib == 0, ia, np.minimum(ia, ib)))
    both = np.where((nsnp[a] + nsnp[b]) > 0, REMAP, KEEP)
    dec[a] = dec[b] = np.where(r > 0, r, both)
    many = np.concatenate([order[s:s + c] for s, c in zip(first[counts > 2], counts[counts > 2])]) \
        if (counts > 2).any() else np.empty(0, np.int64)
    dec[many] = R["improper_pair"]
    lone = order[first[counts == 1]]
    maxpos = ch.pos.max()
    orphan = np.ones(len(lone), bool) if final else (ch.next_pos[lone] < maxpos) | (ch.next_pos[lone] < ch.pos[lone])
    dec[lone[orphan]] = R["mate_missing"]
    return dec


def take(ch: br.Chunk, idx: np.ndarray) -> br.Chunk:
    """Sub-chunk of records ``idx`` (raw bytes copied)."""
    buf = br.gather(ch.buf, ch.offs, idx)
    lens = _lens(ch, idx)
    offs = np.concatenate([[0], np.cumsum(lens)[:-1]]).astype(np.int64) if len(idx) else np.empty(0, np.int64)
    return br.Chunk(buf, offs, *(getattr(ch, k)[idx] for k in _FIELDS))


def _lens(ch: br.Chunk, idx: np.ndarray) -> np.ndarray:
    o = ch.offs[idx]
    b = ch.buf
    return 4 + (b[o].astype(np.int64) | (b[o + 1].astype(np.int64) << 8) | (b[o + 2].astype(np.int64) << 16)
                | (b[o + 3].astype(np.int64) << 24))


_FIELDS = ("refid", "pos", "end", "mapq", "flag", "next_refid", "next_pos", "name_hash", "priority")


def concat_many(parts: list[br.Chunk]) -> br.Chunk | None:
    """One chunk of the records of ``parts`` in order (one copy)."""
    parts = [p for p in parts if p is not None and len(p)]
    if not parts:
        return None
    if len(parts) == 1:
        return parts[0]
    ends = [int(p.offs[-1] + _lens(p, np.array([len(p) - 1]))[0]) for p in parts]
    base = np.cumsum([0] + ends[:-1])
    buf = np.concatenate([p.buf[:e] for p, e in zip(parts, ends)])
    offs = np.concatenate([p.offs + b0 for p, b0 in zip(parts, base)])
    return br.Chunk(buf, offs, *(np.concatenate([getattr(p, k) for p in parts]) for k in _FIELDS))


def _chrom_pass1(bam: str, chrom: str, chrom_id: int, sites, tmp: Path, min_mapq: int,
                 max_snps: int, max_versions: int, seed: int, barcode: "BarcodeFilter | None" = None) -> dict:
    """Classify a chromosome's records in file order; version reads over het SNPs.

    Versions are made as soon as a read/pair is decided (both mates are then
    in memory), so only small per-unit figures are kept: memory is one chunk
    plus the unit table, never the BAM. Writes ``<id>.direct.npy`` (a packed
    bit per record: kept without remap), ``<id>.r1.fq``/``<id>.r2.fq`` and
    ``<id>.units.parquet`` (one row per read/pair sent to remap). With ``barcode`` (a
    single-cell library) reads without a barcode, or with one outside the barcode table, are
    dropped here (both mates: a pair is judged together).
    """
    snp_pos, ref, alt, ind_start, ind_maxend = sites
    stats: Counter = Counter()
    carry: br.Chunk | None = None
    carry_dec = np.empty(0, np.uint8)
    carry_ser = np.empty(0, np.int64)
    serial = 0
    direct_bits, units = [], []
    n_units = 0
    prog = Progress(log, "reads", label=f"classify {chrom}")
    with open(tmp / f"{chrom_id}.r1.fq", "wb") as fq1, open(tmp / f"{chrom_id}.r2.fq", "wb") as fq2:
        for chunk, final in _with_final(br.stream_chunks(bam, chrom, seed=seed, ref_id=chrom_id)):
            ser = np.arange(serial, serial + len(chunk), dtype=np.int64) if chunk is not None else np.empty(0, np.int64)
            serial += len(ser)
            prog.update(len(ser))
            cur = concat_many([carry, chunk])
            if cur is None:
                continue
            dec = np.concatenate([carry_dec, np.full(len(cur) - len(carry_dec), PENDING, np.uint8)])
            sers = np.concatenate([carry_ser, ser])
            was_pending = dec == PENDING
            nsnp = br.count_snps_in_blocks(cur.buf, cur.offs, cur.pos, cur.end, snp_pos)
            bc_reason = barcode.reasons(cur, bam) if barcode is not None else None
            dec = classify(cur, dec, nsnp, _over_indel(cur, ind_start, ind_maxend), min_mapq, final, bc_reason)
            new = np.flatnonzero(was_pending & (dec == REMAP))
            if len(new):
                u = version_units(cur, new, sers, chrom_id, n_units, snp_pos, ref, alt, max_snps, max_versions,
                                  fq1, fq2, stats)
                units.append(u)
                n_units += len(u)
            pend = np.flatnonzero(dec == PENDING)
            k = int(pend[0]) if len(pend) else len(cur)
            d = dec[:k]
            direct_bits.append(d == KEEP)
            cnt = np.bincount(d, minlength=len(DROP_REASONS) + 2)
            stats["kept_without_remap"] += int(cnt[KEEP])
            stats["sent_to_remap"] += int(cnt[REMAP])
            for name, code in R.items():
                stats["dropped_" + name] += int(cnt[code])
            carry = take(cur, np.arange(k, len(cur)))
            carry_dec, carry_ser = dec[k:].copy(), sers[k:]
    prog.close()
    stats["reads_in"] += serial
    bits = np.concatenate(direct_bits) if direct_bits else np.zeros(0, bool)
    np.save(tmp / f"{chrom_id}.direct.npy", np.packbits(bits))
    table = pd.concat(units, ignore_index=True) if units else _empty_units()
    table.to_parquet(tmp / f"{chrom_id}.units.parquet")
    return dict(stats)


UNIT_STATUS = np.array(["remap", "too_many_snps", "too_many_versions", "no_swappable_site"])


def _empty_units() -> pd.DataFrame:
    cols = {"unit": np.int64, "ser_a": np.int64, "ser_b": np.int64, "refid": np.int64, "pos_a": np.int64,
            "cig_a": np.uint64, "pos_b": np.int64, "cig_b": np.uint64, "n_versions": np.int64}
    df = pd.DataFrame({k: np.empty(0, t) for k, t in cols.items()})
    df["status"] = pd.Series([], dtype=object)
    return df


def version_units(ch: br.Chunk, idx: np.ndarray, sers: np.ndarray, chrom_id: int, unit0: int,
                  snp_pos, ref, alt, max_snps: int, max_versions: int, fq1, fq2, stats) -> pd.DataFrame:
    """Versions of the reads/pairs ``idx`` of a chunk (both mates of each pair in ``idx``).

    Writes their FASTQ to ``fq1``/``fq2`` (names ``<chrom_id>_<unit>_<version>``) and
    returns one row per unit: serials, placement (pos, CIGAR hash) of each mate,
    number of versions and status.
    """
    keep = np.zeros(len(ch), bool)
    keep[idx] = True
    rec, snp, _, _, qpos = br.observe_snps(ch.buf, ch.offs, ch.pos, ch.end, keep, snp_pos)
    bounds = np.searchsorted(rec, np.arange(len(ch) + 1))
    order = idx[np.lexsort((ch.flag[idx] & br.READ2, ch.name_hash[idx]))]
    h = ch.name_hash[order]
    starts = np.flatnonzero(np.r_[True, h[1:] != h[:-1]])
    size = np.diff(np.r_[starts, len(order)])
    a = order[starts]
    b = np.where(size > 1, order[np.minimum(starts + 1, len(order) - 1)], -1)
    status, nver, r1, r2 = make_versions(ch.buf, ch.offs, ch.flag, a, b, bounds, snp, qpos, ref, alt,
                                         np.frombuffer(f"{chrom_id}_".encode(), np.uint8), max_snps, max_versions,
                                         unit0)
    fq1.write(r1.tobytes())
    fq2.write(r2.tobytes())
    stats["versions_generated"] += int(nver.sum())
    cig = br.cigar_hash(ch.buf, ch.offs)
    hb = b >= 0
    bb = np.maximum(b, 0)
    return pd.DataFrame({"unit": unit0 + np.arange(len(a)), "ser_a": sers[a], "ser_b": np.where(hb, sers[bb], -1),
                         "refid": ch.refid[a], "pos_a": ch.pos[a], "cig_a": cig[a],
                         "pos_b": np.where(hb, ch.pos[bb], -1), "cig_b": np.where(hb, cig[bb], np.uint64(0)),
                         "n_versions": nver, "status": UNIT_STATUS[status]})


def _write_versions(ch, sers, chrom_id, snp_pos, ref, alt, max_snps, max_versions, tmp, stats):
    """Version every record of ``ch`` into ``<tmp>/<chrom_id>.r{1,2}.fq``; the unit table."""
    with open(tmp / f"{chrom_id}.r1.fq", "wb") as fq1, open(tmp / f"{chrom_id}.r2.fq", "wb") as fq2:
        return version_units(ch, np.arange(len(ch)), sers, chrom_id, 0, snp_pos, ref, alt, max_snps,
                             max_versions, fq1, fq2, stats)


def _with_final(it):
    """Yield (chunk, is_last); a trailing (None, True) when the stream is empty."""
    prev = None
    for x in it:
        if prev is not None:
            yield prev, False
        prev = x
    yield prev, True


VERSION_FAIL = {1: "remap_unmapped", 2: "remap_low_mapq", 3: "remap_moved"}


def check_remapped(sam: Path, units: dict[int, pd.DataFrame], min_mapq: int,
                   names: list[str]) -> dict[int, np.ndarray]:
    """Fate of every unit's versions after remapping.

    A version passes when all its reads are mapped, have MAPQ >= ``min_mapq``,
    lie on the original contig, are a proper pair (paired-end), and have the
    original mates' (position, CIGAR), mates possibly swapped.

    Returns
    -------
    dict
        chromosome id → int array, shape (n_units,): 0 = every version passed,
        else the first failure (``VERSION_FAIL`` code) of its versions.
    """
    rec = _remapped_records(sam, names)
    out = {}
    for c, u in units.items():
        todo = (u["status"] == "remap").to_numpy()
        m = rec[rec["chrom"] == c]
        uu = m["unit"].to_numpy()
        x = {k: u[k].to_numpy()[uu] for k in ("pos_a", "cig_a", "pos_b", "cig_b", "refid", "ser_b")}
        has_b = x["ser_b"] >= 0
        p, h = m["pos"].to_numpy(), m["cig"].to_numpy()
        is_a = (p == x["pos_a"]) & (h == x["cig_a"])
        is_b = has_b & (p == x["pos_b"]) & (h == x["cig_b"])
        refid_ok = m["refid"].to_numpy() == x["refid"]
        proper = ~has_b | m["proper"].to_numpy()
        fail = np.where(m["unmapped"].to_numpy(), 1, np.where(m["mapq"].to_numpy() < min_mapq, 2,
                        np.where(~refid_ok | ~proper, 3, 0)))
        v = pd.DataFrame({"unit": uu, "ver": m["ver"].to_numpy(), "fail": fail, "a": is_a, "b": is_b,
                          "n": 1, "has_b": has_b})
        g = v.groupby(["unit", "ver"], sort=False).agg(fail=("fail", "max"), a=("a", "sum"), b=("b", "sum"),
                                                      n=("n", "sum"), has_b=("has_b", "first"))
        want = np.where(g["has_b"], 2, 1)
        placed = np.where(g["has_b"], (g["a"] >= 1) & (g["b"] >= 1), g["a"] == 1)
        vf = np.where(g["n"] != want, 1, np.where(g["fail"] > 0, g["fail"], np.where(placed, 0, 3)))
        gu = g.index.get_level_values("unit").to_numpy().astype(np.int64)
        passed = np.bincount(gu[vf == 0], minlength=len(u))
        worst = np.full(len(u), 99)
        np.minimum.at(worst, gu[vf > 0], vf[vf > 0])
        nv = u["n_versions"].to_numpy()
        out[c] = np.where(~todo | (passed == nv), 0, np.where(worst < 99, worst, 1))
    return out


def _remapped_records(sam: Path, names: list[str]) -> pd.DataFrame:
    """Primary records of the remapped versions: chrom id, unit, version and placement."""
    rnames, chunks = br.stream_file(sam)
    to_orig = np.array([names.index(n) if n in names else -2 for n in rnames] + [-1], np.int64)
    cols = {k: [] for k in ("chrom", "unit", "ver", "refid", "pos", "cig", "mapq", "unmapped", "proper")}
    for ch in chunks:
        prim = (ch.flag & (br.SECONDARY | br.SUPPLEMENTARY)) == 0
        idx = np.flatnonzero(prim)
        num = br.name_numbers(ch.buf, ch.offs)[idx]
        cols["chrom"].append(num[:, 0])
        cols["unit"].append(num[:, 1])
        cols["ver"].append(num[:, 2])
        cols["refid"].append(to_orig[ch.refid[idx]])
        cols["pos"].append(ch.pos[idx])
        cols["cig"].append(br.cigar_hash(ch.buf, ch.offs)[idx])
        cols["mapq"].append(ch.mapq[idx])
        cols["unmapped"].append((ch.flag[idx] & br.UNMAP) != 0)
        cols["proper"].append((ch.flag[idx] & br.PROPER) != 0)
    if not cols["chrom"]:
        types = {"cig": np.uint64, "unmapped": bool, "proper": bool}
        return pd.DataFrame({k: np.empty(0, types.get(k, np.int64)) for k in cols})
    return pd.DataFrame({k: np.concatenate(v) for k, v in cols.items()})


class BarcodeFilter:
    """A single-cell library's reads: the tag holding each read's cell barcode and, optionally,
    the barcodes to keep (the library's barcode table)."""

    def __init__(self, tag: str = bcs.CELL_BARCODE_TAG, barcodes=None, where=None):
        self.tag = tag
        self.lookup = None if barcodes is None else bcs.BarcodeLookup({b: 0 for b in barcodes}, where)

    def reasons(self, ch: br.Chunk, bam) -> np.ndarray:
        """Drop code per record (int64, shape (n_records,)): ``R["no_barcode"]``,
        ``R["barcode_not_in_table"]`` or 0 (keep)."""
        if self.lookup is None:
            has = bcs.record_spans(ch.buf, ch.offs, self.tag, bam)[0] >= 0
            return np.where(has, 0, R["no_barcode"])
        code, has = self.lookup.record_codes(ch.buf, ch.offs, self.tag, bam)
        return np.where(~has, R["no_barcode"], np.where(code < 0, R["barcode_not_in_table"], 0))


def _dedup_keep(ch: br.Chunk, cell: np.ndarray | None = None) -> np.ndarray:
    """Keep mask of a position-complete chunk: one read/pair per (start, mate start, strand)
    and, for a single-cell library, per cell barcode.

    A pair's key is its two ends and the strand of the read at each end, not
    which mate is read 1: a duplicate with R1 and R2 swapped is still a
    duplicate (as for Picard MarkDuplicates). The kept one has the highest
    seeded name hash in its group (both mates of a pair share it), so the
    choice is random but reproducible and blind to alleles.

    ``cell`` (uint64, shape (n_records,); :func:`caveat.barcodes.value_hashes`) adds the
    barcode to the key: two cells' fragments with identical ends are different molecules
    (Cell Ranger ATAC marks duplicates within a barcode), a PCR copy stays in its cell.
    """
    f = ch.flag
    cell = np.zeros(len(ch), np.uint64) if cell is None else cell
    paired = (f & br.PAIRED) != 0
    lo = np.where(paired, np.minimum(ch.pos, ch.next_pos), ch.pos)
    hi = np.where(paired, np.maximum(ch.pos, ch.next_pos), -1)
    own, mate = (f & br.REVERSE) != 0, (f & br.MREVERSE) != 0
    # strands of the reads at the lower and upper end (mates starting together: sorted)
    lo_rev = np.where(ch.pos < ch.next_pos, own, np.where(ch.pos > ch.next_pos, mate, own & mate))
    hi_rev = np.where(ch.pos < ch.next_pos, mate, np.where(ch.pos > ch.next_pos, own, own | mate))
    lo_rev = np.where(paired, lo_rev, own)
    hi_rev = np.where(paired, hi_rev, False)
    order = np.lexsort((ch.priority, cell, hi_rev, lo_rev, hi, lo, ch.pos, paired))
    key = np.stack([paired[order], ch.pos[order], lo[order], hi[order], lo_rev[order], hi_rev[order],
                    cell[order].view(np.int64)], axis=1)
    last = np.r_[(key[1:] != key[:-1]).any(axis=1), True]
    grp = np.cumsum(np.r_[True, last[:-1]]) - 1
    best = ch.priority[order][last][grp]
    keep = np.zeros(len(ch), bool)
    keep[order] = ch.priority[order] == best
    return keep


def _chrom_pass2(bam: str, chrom: str, chrom_id: int, tmp: Path, fate: np.ndarray, seed: int,
                 barcode: "BarcodeFilter | None" = None) -> dict:
    """Stream the chromosome again; keep direct + remap-passed records; dedup; write a BGZF part."""
    stats: Counter = Counter()
    direct = np.unpackbits(np.load(tmp / f"{chrom_id}.direct.npy")).astype(bool)
    units = pd.read_parquet(tmp / f"{chrom_id}.units.parquet")
    ok_ser = np.empty(0, np.int64)
    if len(units):
        sa, sb = units["ser_a"].to_numpy(), units["ser_b"].to_numpy()
        status = units["status"].to_numpy()
        nrec = 1 + (sb >= 0)
        reason = np.where(status == "remap", np.array(["", *VERSION_FAIL.values()])[fate], status)
        reason = np.where(reason == "no_swappable_site", "", reason)
        for r in np.unique(reason[reason != ""]):
            stats["dropped_" + r] += int(nrec[reason == r].sum())
        good = reason == ""
        stats["kept_after_remap"] += int(nrec[good].sum())
        ok_ser = np.sort(np.concatenate([sa[good], sb[good & (sb >= 0)]]))
    out = br.BamWriter(tmp / f"{chrom_id}.part.bam", eof=False)
    carry = None
    serial = 0
    for chunk, final in _with_final(br.stream_chunks(bam, chrom, seed=seed, ref_id=chrom_id)):
        if chunk is not None:
            ser = np.arange(serial, serial + len(chunk))
            serial += len(chunk)
            keep = direct[ser]
            if len(ok_ser):
                j = np.searchsorted(ok_ser, ser)
                keep |= (j < len(ok_ser)) & (ok_ser[np.minimum(j, len(ok_ser) - 1)] == ser)
            chunk = take(chunk, np.flatnonzero(keep))
        cur = concat_many([carry, chunk])
        if cur is None:
            continue
        done = np.ones(len(cur), bool) if final else cur.pos < cur.pos[-1]
        k = int(done.sum())  # records are position-sorted: the done ones are a prefix
        sub = br.Chunk(cur.buf, cur.offs[:k], *(getattr(cur, f)[:k] for f in _FIELDS))
        cell = bcs.value_hashes(sub.buf, sub.offs, barcode.tag, bam) if barcode is not None and k else None
        keep = _dedup_keep(sub, cell) if k else np.zeros(0, bool)
        stats["duplicates_removed"] += int((~keep).sum())
        stats["reads_out"] += int(keep.sum())
        kept = np.flatnonzero(keep)
        data = br.gather(sub.buf, sub.offs, kept)
        # our dedup replaces upstream duplicate marking (which may favour an allele): clear 0x400
        flag_hi = (np.cumsum(np.r_[0, _lens(sub, kept)[:-1]]) + 4 + 15).astype(np.int64) if len(kept) else kept
        stats["input_duplicate_flags_cleared"] += int(((data[flag_hi] & 0x04) != 0).sum())
        data[flag_hi] &= 0xFB
        out.write(data)
        carry = take(cur, np.arange(k, len(cur)))
    out.close()
    return dict(stats)


# ----------------------------------------------------------------------------- one sample

def wasp_filter(bam: str | Path, snps: pd.DataFrame, indels: pd.DataFrame, out_bam: str | Path,
                out_stats: str | Path, *, aligner: str = "bowtie2", aligner_index: str | Path,
                aligner_args: str = "", min_mapq: int = 10, max_snps: int = 6, max_versions: int = 64,
                seed: int = 0, threads: int = 1, chroms: list[str] | None = None,
                fasta: str | Path | None = None, sample: str = "", timings: dict | None = None,
                barcode_tag: str | None = None, barcodes=None) -> dict:
    """Run the WASP filter and dedup on one sample's BAM.

    Parameters
    ----------
    bam : path
        Coordinate-sorted, indexed BAM of the sample.
    snps, indels : DataFrame
        The sample's donor's het SNPs / indels (``het_snps.parquet`` rows).
    out_bam, out_stats : path
        Filtered, deduplicated BAM (indexed) and its stats JSON.
    chroms : list of str, optional
        Contigs to process (default: every BAM contig). A Nextflow scatter
        passes one and joins the parts with :func:`gather_parts`; reads without
        a coordinate are counted by the part holding the BAM's first contig.
    timings : dict, optional
        Filled with phase → (wall s, CPU s incl. child processes); not written anywhere.
    barcode_tag : str, optional
        The BAM is a single-cell library whose reads carry their cell barcode in this tag
        (Cell Ranger: ``CB``): reads without it are dropped (``dropped_no_barcode``), the
        dedup key includes the barcode, and the records keep their tags (the filter passes
        each kept record's bytes through; remapped versions are matched back by serial
        number, never rebuilt). None: a bulk BAM.
    barcodes : collection of str, optional
        With ``barcode_tag``: the library's barcodes (the barcode table); reads of other
        barcodes are dropped early (``dropped_barcode_not_in_table``).

    Returns
    -------
    dict
        The stats written to ``out_stats``.
    """
    import pysam

    br.check_bam(bam)
    check_aligner(aligner, aligner_index, aligner_args)
    header, names, lengths = br.read_header(bam)
    made_by = provenance_warning(_header_text(header), aligner, aligner_args, bam)
    if made_by:
        log.warning("%s", made_by)
    barcode = None
    if barcode_tag is not None:
        bcs.check_tag_present(bam, barcode_tag)
        barcode = BarcodeFilter(barcode_tag, barcodes, bam)
    used = set(snps["chrom"]) | set(indels["chrom"])
    check_contigs(used, names, what="het-site", file=bam, reference_file=f"the BAM header of {Path(bam).name}")
    if fasta is not None:
        fl = fasta_lengths(fasta)
        check_contigs(names, fl, what="BAM", file=bam, reference_file=fasta)
    chroms = list(names) if chroms is None else list(chroms)
    bad = [c for c in chroms if c not in names]
    if bad:
        raise InputError(bam, f"contig {bad[0]!r} is not in the BAM header", "pass contigs of the BAM")
    with pysam.AlignmentFile(str(bam)) as f:
        idxstats = {s.contig: s.total for s in f.get_index_statistics()}
        # reads without a coordinate belong to no contig: the part holding the BAM's first
        # contig counts them, so the stats of a per-contig scatter sum to the whole
        unplaced = f.nocoordinate if names and names[0] in chroms else 0
    work = [(c, i) for i, c in enumerate(names) if c in chroms and idxstats.get(c, 0) > 0]
    out_bam = Path(out_bam)
    out_bam.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_tmp(out_bam)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-wasp-{out_bam.stem}.", dir=out_bam.parent))
    try:
        stats = _run_filter(bam, work, snps, indels, tmp, names, aligner, aligner_index, aligner_args,
                            min_mapq, max_snps, max_versions, seed, threads, timings, barcode)
        clock = _Clock(timings)
        stats["reads_in"] += unplaced
        stats["dropped_unmapped"] += unplaced
        stats["sample"] = sample
        pg = (f"@PG\tID:caveat.wasp_remap\tPN:caveat\tCL:wasp_remap aligner={aligner} min_mapq={min_mapq} "
              f"max_snps={max_snps} max_versions={max_versions} seed={seed}"
              + (f" barcode_tag={barcode_tag}" if barcode_tag else ""))
        with atomic_path(out_bam) as t:
            with open(t, "wb") as fo:
                hdr = tmp / "header.bam"
                br.BamWriter(hdr, br.header_with_pg(header, pg), eof=False).close()
                for p in [hdr] + [tmp / f"{i}.part.bam" for _, i in work]:
                    with open(p, "rb") as fi:
                        shutil.copyfileobj(fi, fo)
                fo.write(br.BGZF_EOF)
            pysam.index(str(t), str(t) + ".bai")
            os.replace(str(t) + ".bai", str(out_bam) + ".bai")
        write_json(stats, out_stats)
        clock.lap("concat_index")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return stats


def _header_text(header: bytes) -> str:
    """The SAM text of a raw BAM header (:func:`caveat.bam_records.read_header`)."""
    (l_text,) = struct.unpack_from("<i", header, 4)
    return header[8:8 + l_text].rstrip(b"\0").decode(errors="replace")


def _remove_stale_tmp(out_bam: Path) -> None:
    """Remove the work folders (FASTQ, SAM, parts) that a killed earlier run for ``out_bam``
    left behind: an exception cleans up in wasp_filter's ``finally``, a SIGKILL cannot."""
    prefix = f".tmp-wasp-{out_bam.stem}."
    for d in out_bam.parent.glob(".tmp-wasp-*"):
        # mkdtemp's suffix is 8 characters without a dot: "s1." must not take "s1.chr1."'s folder
        if d.is_dir() and d.name.startswith(prefix) and re.fullmatch(r"[a-z0-9_]{8}", d.name[len(prefix):]):
            log.info("removing %s, left by an interrupted run", d)
            shutil.rmtree(d, ignore_errors=True)


def _run_filter(bam, work, snps, indels, tmp, names, aligner, aligner_index, aligner_args, min_mapq,
                max_snps, max_versions, seed, threads, timings=None, barcode=None) -> dict:
    jobs = [(str(bam), c, i, _site_tables(snps, indels, c), tmp, min_mapq, max_snps, max_versions, seed, barcode)
            for c, i in work]
    stats: Counter = Counter({k: 0 for k in ("reads_in", "kept_without_remap", "sent_to_remap",
                                             "versions_generated", "kept_after_remap", "duplicates_removed",
                                             "input_duplicate_flags_cleared", "reads_out", *("dropped_" + r for r in (*DROP_REASONS, *REMAP_REASONS)))})
    clock = _Clock(timings)
    for r in _map(_pass1_job, jobs, threads):
        stats.update(r)
    clock.lap("classify_and_versions")
    units = {i: pd.read_parquet(tmp / f"{i}.units.parquet") for _, i in work}
    fates = {i: np.zeros(len(u), np.int64) for i, u in units.items()}
    if stats["versions_generated"]:
        # one aligner run for every chromosome's versions (the index is loaded once)
        paired = any((tmp / f"{i}.r2.fq").stat().st_size > 0 for _, i in work)
        fq1, fq2 = tmp / "all.r1.fq", tmp / "all.r2.fq"
        for fq, mate in ((fq1, 1), (fq2, 2)):
            with open(fq, "wb") as fo:
                for _, i in work:
                    with open(tmp / f"{i}.r{mate}.fq", "rb") as fi:
                        shutil.copyfileobj(fi, fo)
        sam = tmp / "remapped.sam"
        log.info("remapping %d versions of %d reads with %s", stats["versions_generated"], stats["sent_to_remap"], aligner)
        clock.lap("filter_io")
        align(aligner, aligner_index, aligner_args, fq1, fq2 if paired else None, sam, threads)
        clock.lap("aligner")
        fates = check_remapped(sam, units, min_mapq, names)
        clock.lap("check_remapped")
    for r in _map(_pass2_job, [(str(bam), c, i, tmp, fates[i], seed, barcode) for c, i in work], threads):
        stats.update(r)
    clock.lap("merge_dedup_write")
    return dict(stats)


def _pass1_job(args):
    return _chrom_pass1(*args)


def _pass2_job(args):
    return _chrom_pass2(*args)


def _map(fn, jobs, threads):
    """Per-chromosome jobs on ``threads`` threads: the numba kernels, BGZF
    decompression and numpy release the GIL, and threads start instantly."""
    return map_ordered(fn, jobs, threads)


class _Clock:
    """Wall and CPU seconds (this process + its children) per phase, for the benchmark."""

    def __init__(self, into: dict | None):
        self.into = into
        self._t = self._now()

    @staticmethod
    def _now():
        import resource
        import time

        c = resource.getrusage(resource.RUSAGE_CHILDREN)
        return time.perf_counter(), time.process_time() + c.ru_utime + c.ru_stime

    def lap(self, name: str) -> None:
        t = self._now()
        if self.into is not None:
            w, c = self.into.get(name, (0.0, 0.0))
            self.into[name] = (w + t[0] - self._t[0], c + t[1] - self._t[1])
        self._t = t


# ----------------------------------------------------------------------------- gather a scatter

def _split_part(path: Path) -> tuple[bytes, int, int, list[str]]:
    """(raw header, byte span start/end of the records' BGZF blocks, contig names) of a
    BAM written by :func:`wasp_filter`.

    wasp_filter writes the header in BGZF blocks of its own, so the records'
    blocks can be moved as they are, without recompression.
    """
    size = path.stat().st_size
    eof = len(br.BGZF_EOF)
    with open(path, "rb") as f:
        f.seek(max(0, size - eof))
        if size < eof or f.read() != br.BGZF_EOF:
            raise InputError(path, "no BGZF end-of-file marker (truncated?)", "rerun the WASP task of this part")
        f.seek(0)
        raw, o = bytearray(), 0
        while o < size - eof:
            head = f.read(18)
            if head[:4] != b"\x1f\x8b\x08\x04":
                raise InputError(path, f"not BGZF at byte {o}", "pass BAMs written by wasp_remap --chrom")
            bsize = struct.unpack_from("<H", head, 16)[0] + 1
            raw += zlib.decompress(f.read(bsize - 18)[:-8], -15)
            o += bsize
            try:
                names, _, end = br._parse_header(bytes(raw))
            except struct.error:
                continue  # the header goes on in the next block
            except ValueError:
                raise InputError(path, "not a BAM", "pass BAMs written by wasp_remap --chrom") from None
            if end != len(raw):
                raise InputError(path, "the header shares a BGZF block with records",
                                 "pass BAMs written by wasp_remap --chrom (not re-written by another tool)")
            return bytes(raw), o, size - eof, names
    raise InputError(path, "truncated BAM header", "rerun the WASP task of this part")


def _first_ref_id(path: Path) -> int | None:
    import pysam

    with pysam.AlignmentFile(str(path), check_sq=False) as f:
        rec = next(f.fetch(until_eof=True), None)
    return None if rec is None else rec.reference_id


def _copy_bytes(fi, fo, n: int, chunk: int = 8 << 20) -> None:
    while n > 0:
        data = fi.read(min(chunk, n))
        if not data:
            raise InputError(fi.name, "shorter than its BGZF blocks (changed while reading?)", "rerun the gather")
        fo.write(data)
        n -= len(data)


def gather_parts(parts: list[str | Path], part_stats: list[str | Path], out_bam: str | Path,
                 out_stats: str | Path, sample: str = "") -> dict:
    """Join the outputs of a per-contig scatter (``wasp_filter(chroms=[c])``) into one sample's.

    The records of each part are moved as they are, in the header's contig
    order, and the stats are summed: the result is byte for byte what
    :func:`wasp_filter` writes for the whole BAM (``wasp/<sample>.bam`` + ``.bai``,
    ``wasp/<sample>.stats.json``).

    Parameters
    ----------
    parts : list of path
        Per-contig BAMs of one sample (any order; parts without reads allowed).
    part_stats : list of path
        Their stats JSONs.
    """
    import pysam

    parts, part_stats = [Path(x) for x in parts], [Path(x) for x in part_stats]
    if not parts or len(parts) != len(part_stats):
        raise InputError(", ".join(map(str, part_stats)) or "--part-stats",
                         f"{len(parts)} part BAM(s) but {len(part_stats)} stats file(s)", "pass one stats JSON per part")
    header, names, bodies = None, None, {}
    for p in parts:
        h, start, end, n = _split_part(p)
        if header is None:
            header, names = h, n
        elif h != header:
            raise InputError(p, f"its header differs from {parts[0].name}'s",
                             "gather parts of one sample written with the same params")
        ref = _first_ref_id(p)
        if ref is None:
            continue
        if ref in bodies:
            raise InputError(p, f"a second part holding contig {names[ref]!r}", "pass each contig's part once")
        bodies[ref] = (p, start, end)
    stats: Counter = Counter()
    for p in part_stats:
        st = read_json(p)
        if sample and st.get("sample", sample) != sample:
            raise InputError(p, f"stats of sample {st.get('sample')!r}, not {sample!r}", "gather one sample's parts")
        stats.update({k: v for k, v in st.items() if k != "sample"})
    stats = {**stats, "sample": sample}
    out_bam = Path(out_bam)
    out_bam.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_bam) as t:
        with open(t, "wb") as fo:
            fo.write(br.bgzf_compress(header))
            for ref in sorted(bodies):
                part, start, end = bodies[ref]
                with open(part, "rb") as fi:
                    fi.seek(start)
                    _copy_bytes(fi, fo, end - start)
            fo.write(br.BGZF_EOF)
        pysam.index(str(t), str(t) + ".bai")
        os.replace(str(t) + ".bai", str(out_bam) + ".bai")
    write_json(stats, out_stats)
    log.info("%s: gathered %d parts (%d with reads) → %s; %d reads out", sample, len(parts), len(bodies),
             out_bam.name, stats.get("reads_out", 0))
    return stats


# ----------------------------------------------------------------------------- step + CLI

def het_site_tables(params: dict, donors: list[str], bam: str | Path | None = None):
    """Het SNPs and indels of ``donors`` from ``params['vcf']``, contigs checked against FASTA and BAM."""
    contigs = list(fasta_lengths(params["fasta"])) if params.get("fasta") else None
    snps, indels, vstats = read_het_sites(params["vcf"], donors, pass_only=params.get("vcf_pass_only", True),
                                          contig_map=read_contig_map(params.get("contig_map")), contigs=contigs,
                                          fasta=params.get("fasta"))
    check_donors_have_sites(snps, donors, params["vcf"])
    log.info("%s: %d records; skipped %s; het SNPs per donor %s; het indels per donor %s", params["vcf"],
             vstats["records"], vstats["skipped"] or "none", vstats["het_snps"], vstats["het_indels"])
    return snps, indels, vstats


def _aligner_index(params: dict, outdir: Path, threads: int) -> Path:
    if params.get("aligner_index"):
        return Path(params["aligner_index"])
    if not params.get("fasta"):
        raise InputError("aligner_index", "no aligner index and no fasta to build one", "set aligner_index or fasta")
    prefix = outdir / "aligner_index" / "genome"
    log.info("building a %s index of %s at %s", params["aligner"], params["fasta"], prefix)
    return build_index(params["aligner"], params["fasta"], prefix, threads)


def run_step(ctx: StepContext) -> dict:
    """Local engine: every bulk sample and every single-cell library → ``wasp/<name>.bam``."""
    p = ctx.params
    study = read_study(p["input"])  # the libraries' reads were probed by validate_inputs (caveat run)
    sheet = study.bulk()
    donors = list(dict.fromkeys(study.samples["donor"]))
    snps, indels, vstats = het_site_tables(p, donors)
    jobs = [_bulk_job(row, snps, indels) for row in sheet.itertuples()]
    jobs += [_library_job(lib, study, snps, indels) for lib in study.libraries.itertuples()]
    _check_inputs(jobs, p)  # every input is checked before any output is written
    index = _aligner_index(p, ctx.outdir, ctx.threads)
    check_aligner(p["aligner"], index, p["aligner_args"])

    def one(job: dict, threads: int) -> dict:
        ctx.log.info("%s %s (donor %s): WASP filter of %s on %d thread(s)", job["kind"], job["name"],
                     ", ".join(job["donors"]), job["bam"], threads)
        return wasp_filter(job["bam"], job["snps"], job["indels"], ctx.out("wasp", f"{job['name']}.bam"),
                           ctx.out("wasp", f"{job['name']}.stats.json"),
                           aligner=p["aligner"], aligner_index=index, aligner_args=p["aligner_args"],
                           min_mapq=p["min_mapq"], max_snps=p["wasp_max_snps_per_read"],
                           max_versions=p["wasp_max_versions"], seed=p["seed"], threads=threads,
                           fasta=p.get("fasta"), sample=job["name"], **job["barcode"])

    # samples and libraries run concurrently, ctx.threads split among them; figures logged in sheet order
    stats = map_jobs(one, jobs, ctx.threads, names=[j["name"] for j in jobs])
    per_sample = []
    for job, st in zip(jobs, stats):
        _log_stats(ctx.log, job["name"], st)
        per_sample.append((ctx.out("wasp", f"{job['name']}.stats.json"), st))
    # written once every BAM went through (a damaged record block fails inside the filter)
    write_parquet(snps, ctx.out("het_snps.parquet"))
    write_parquet(indels, ctx.out("het_indels.parquet"))
    summary = run_summary(per_sample, sites_figures(snps, indels, vstats), p["vcf"])
    write_json(summary, ctx.out("wasp_remap.summary.json"))
    return {"samples": len(sheet), "libraries": len(study.libraries), "het_snps": len(snps),
            "reads_out": sum(v["reads_out"] for v in summary["per_sample"].values())}


def _bulk_job(row, snps: pd.DataFrame, indels: pd.DataFrame) -> dict:
    """A bulk sample: its donor's het sites, no barcodes."""
    return {"kind": "sample", "name": row.sample, "bam": row.bam, "donors": [row.donor],
            "snps": snps[snps["donor"] == row.donor], "indels": indels[indels["donor"] == row.donor],
            "barcode": {}}


def _library_job(lib, study, snps: pd.DataFrame, indels: pd.DataFrame) -> dict:
    """A single-cell library: the het sites of every donor pooled in it (:func:`library_sites`),
    reads kept when their barcode is a kept row of its table."""
    mine = study.library_donors(lib.library)
    pick, pick_ind = library_sites(snps, indels, mine)
    table = study.barcodes[study.barcodes["library"] == lib.library]
    return {"kind": "library", "name": lib.library, "bam": lib.bam, "donors": mine, "snps": pick,
            "indels": pick_ind,
            "barcode": {"barcode_tag": bcs.CELL_BARCODE_TAG, "barcodes": set(table["barcode"])}}


def library_sites(snps: pd.DataFrame, indels: pd.DataFrame, donors: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The het SNPs and indels a single-cell library's WASP filter uses: those of every donor
    pooled in it.

    WASP is run at the union of the pooled donors' sites. That stays unbiased for each donor: the
    versions of a read are every REF/ALT combination at the sites it covers, so the set of
    sequences remapped is the same whichever allele the read carries at its own donor's het site;
    a site homozygous in the read's donor only adds versions (more reads sent to remap, some
    dropped for both alleles alike). A position with two different ALT alleles among the donors
    keeps one record (the first in the VCF's donor order), as the versions of a read are built
    per position.

    Returns
    -------
    snps, indels : DataFrame
        Rows of ``snps``/``indels`` (het_snps/het_indels tables) of ``donors``, one per position.
    """
    pick = snps[snps["donor"].isin(donors)].drop_duplicates(["chrom", "pos"])
    pick_ind = indels[indels["donor"].isin(donors)].drop_duplicates(["chrom", "pos", "end"])
    return pick, pick_ind


def _check_inputs(jobs: list[dict], p: dict) -> None:
    """Each BAM readable, on the VCF's contigs (for its donors' sites) and the FASTA's."""
    fasta_contigs = fasta_lengths(p["fasta"]) if p.get("fasta") else None
    for job in jobs:
        br.check_bam(job["bam"])
        _, names, _ = br.read_header(job["bam"])
        check_contigs(set(job["snps"]["chrom"]), names, what="VCF", file=p["vcf"], reference_file=job["bam"])
        if fasta_contigs is not None:
            check_contigs(names, fasta_contigs, what="BAM", file=job["bam"], reference_file=p["fasta"])


#: the figures of each sample's stats that ``wasp_remap.summary.json`` keeps
SUMMARY_FIGURES = ("reads_in", "reads_out", "sent_to_remap", "kept_after_remap", "duplicates_removed")


def sites_figures(snps: pd.DataFrame, indels: pd.DataFrame, vstats: dict) -> dict:
    """The het-sites figures of the summary (what the het-sites mode writes to ``--out-summary``)."""
    return {"het_snps": len(snps), "het_indels": len(indels), "vcf_skipped": vstats["skipped"]}


def run_summary(sample_stats, sites: dict, sites_file: str | Path) -> dict:
    """``wasp_remap.summary.json``, for both engines: the local step (each sample's stats in memory)
    and ``wasp_remap.py --summarize`` (Nextflow's WASP_REMAP_SUMMARY, the stats read back).

    Parameters
    ----------
    sample_stats : iterable of (path, dict)
        Each sample's :func:`wasp_filter` figures with the ``wasp/<sample>.stats.json`` they are (or
        were read from; named in errors), any order; each dict has ``sample``.
    sites : dict
        :func:`sites_figures`: ``het_snps``, ``het_indels``, ``vcf_skipped``.
    sites_file : str or Path
        Where ``sites`` came from (named in errors).

    Returns
    -------
    dict
        ``samples``, ``het_snps``, ``het_indels``, ``vcf_skipped`` and ``per_sample`` (sample →
        :data:`SUMMARY_FIGURES`), samples in natural order (:func:`natural_key`), so the file does not
        depend on the order the stats came in.
    """
    per_sample = {}
    for where, st in sample_stats:
        if not st.get("sample"):
            raise InputError(where, "stats without a sample name", "pass the stats written by wasp_remap --gather")
        if st["sample"] in per_sample:
            raise InputError(where, f"sample {st['sample']!r} given twice", "pass each sample's stats once")
        missing = [k for k in SUMMARY_FIGURES if k not in st]
        if missing:
            raise InputError(where, f"stats lack {', '.join(missing)}", "pass the stats written by wasp_remap --gather")
        per_sample[st["sample"]] = {k: st[k] for k in SUMMARY_FIGURES}
    missing = [k for k in ("het_snps", "het_indels", "vcf_skipped") if k not in sites]
    if missing:
        raise InputError(sites_file, f"lacks {', '.join(missing)}",
                         "pass the --out-summary of wasp_remap's het-sites mode")
    return {"samples": len(per_sample), "het_snps": sites["het_snps"], "het_indels": sites["het_indels"],
            "vcf_skipped": sites["vcf_skipped"],
            "per_sample": {k: per_sample[k] for k in sorted(per_sample, key=natural_key)}}


def _log_stats(lg, sample, st):
    drops = {k[8:]: v for k, v in st.items() if k.startswith("dropped_") and v}
    lg.info("%s: %d reads in, %d kept without remap, %d sent to remap (%d versions), %d kept after remap, "
            "%d duplicates removed, %d out; dropped %s", sample, st["reads_in"], st["kept_without_remap"],
            st["sent_to_remap"], st["versions_generated"], st["kept_after_remap"], st["duplicates_removed"],
            st["reads_out"], drops or "none")


def _input_files(params: dict) -> list[str]:
    files = [params[k] for k in ("vcf", "fasta", "input", "contig_map") if params.get(k)]
    if params.get("input") and Path(params["input"]).exists():
        files += study_input_files(params["input"])
    return files


STEP = Step(name="wasp_remap", run=run_step, params=PARAMS, input_files=_input_files,
            path_params=("aligner_index",), doc=__doc__.splitlines()[0])


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="wasp_remap", description=__doc__.splitlines()[0],
        epilog="Five modes. Filter (default): one sample's BAM (--bam --sample --donor --aligner-index "
               "--out-bam --out-stats), optionally one contig at a time (--chrom). Het sites only (no --bam): "
               "--vcf --donor D [D ...] --out-het-snps [--out-het-indels] write the tables the local engine "
               "writes. Gather (--gather): join a sample's per-contig parts into --out-bam/--out-stats. Summarize "
               "(--summarize): the run's wasp_remap.summary.json from the samples' stats. Plan (--plan-groups BAM ...): "
               "the contig groups of a scattered run (--fai, --wasp-group-bp) → --out-groups TSV. Samples table "
               "(--study SHEET --out-samples CSV): the run's samples (bulk rows and the libraries' donor x cell type "
               "groups, caveat.single_cell.write_samples_table), read from the samplesheet and its barcode tables.")
    ap.add_argument("--version", action="version", version=f"caveat {__version__}")
    ap.add_argument("--bam", help="the sample's coordinate-sorted, indexed BAM")
    ap.add_argument("--sample", help="sample name (recorded in the stats)")
    ap.add_argument("--donor", nargs="+", help="the sample's donor (a VCF sample); a library (--barcode-tag): every "
                                               "donor pooled in it; het-sites mode: every donor")
    ap.add_argument("--vcf", help="genotypes VCF (or give --het-snps and --het-indels)")
    ap.add_argument("--het-snps", help="het_snps.parquet (rows of every donor)")
    ap.add_argument("--het-indels", help="het_indels.parquet")
    ap.add_argument("--fasta", help="reference FASTA (contig check)")
    ap.add_argument("--contig-map")
    add_param_options(ap, PARAMS, aliases={"wasp_max_snps_per_read": ["--max-snps-per-read"],
                                           "wasp_max_versions": ["--max-versions"]},
                      helps={"aligner_index": "index prefix the reads were aligned with",
                             "vcf_pass_only": "het sites from PASS (or '.') VCF records only",
                             "wasp_group_bp": "with --plan-groups: most bases per contig group (a longer contig is "
                                              "a group alone)"})
    ap.add_argument("--seed", type=int, default=0, help="the dedup lottery's seed (params.seed)")
    ap.add_argument("--chrom", action="append", help="contig(s) to process (default all)")
    ap.add_argument("--barcode-tag", help="the BAM is a single-cell library whose reads carry their cell barcode in "
                                          "this tag (Cell Ranger: CB): untagged reads are dropped, dedup is per barcode")
    ap.add_argument("--barcodes", help="with --barcode-tag: the library's barcode table (barcode,cell_type[,donor]); "
                                       "reads of barcodes other than its kept rows (doublet, unassigned, unlabelled "
                                       "rows dropped, as caveat.single_cell.read_barcode_table) are dropped")
    ap.add_argument("--table-donor", default="", help="with --barcodes: the samplesheet row's donor of a one-donor "
                                                      "library whose table has no donor column")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out-bam", help="filtered BAM (indexed)")
    ap.add_argument("--out-stats", help="the filter's figures (JSON)")
    ap.add_argument("--out-het-snps", help="also write the donor's het SNPs here (when read from --vcf; "
                                           "only the --chrom contigs when given)")
    ap.add_argument("--out-het-indels", help="het-sites mode: write the het indels here")
    ap.add_argument("--gather", nargs="+", metavar="PART_BAM",
                    help="instead of filtering: join one sample's per-contig BAMs (from --chrom runs)")
    ap.add_argument("--part-stats", nargs="+", metavar="PART_JSON",
                    help="with --gather: the parts' stats JSONs; with --summarize: every sample's stats JSON")
    ap.add_argument("--summarize", action="store_true",
                    help="instead of filtering: write the run's wasp_remap.summary.json (--out-summary) from every "
                         "sample's stats (--part-stats) and the het-sites mode's --out-summary (--sites-summary)")
    ap.add_argument("--sites-summary", help="with --summarize: the het-sites mode's summary JSON")
    ap.add_argument("--out-summary", help="het-sites mode: its figures (JSON); --summarize: wasp_remap.summary.json")
    ap.add_argument("--plan-groups", nargs="+", metavar="BAM",
                    help="instead of filtering: group the contigs with reads in these BAMs (indexes beside them) for "
                         "a scattered run; the filter then runs once per group with one --chrom per contig")
    ap.add_argument("--fai", help="with --plan-groups: the reference's .fai (contig lengths)")
    ap.add_argument("--out-groups", help="with --plan-groups: the TSV written (group_id<TAB>contig,contig,...)")
    ap.add_argument("--study", metavar="SAMPLESHEET",
                    help="instead of filtering: read the samplesheet (bulk rows; library rows' barcode tables, their "
                         "reads not opened) and write the run's samples table (--out-samples)")
    ap.add_argument("--out-samples", help="with --study: the samples table (CSV) written")
    ap.add_argument("--check-reads", action="store_true",
                    help="with --study: also probe each library's BAM and fragments file (CB tags, barcode suffixes, "
                         "table barcodes with reads), as `caveat run` checks them before any step")
    return ap


def _require(ap: argparse.ArgumentParser, a: argparse.Namespace, mode: str, names: tuple[str, ...]) -> None:
    missing = [n for n in names if getattr(a, n.lstrip("-").replace("-", "_")) in (None, [])]
    if missing:
        ap.error(f"{mode} needs {', '.join(missing)}")


def _het_sites_only(a: argparse.Namespace) -> int:
    """Every donor's het SNPs/indels from the VCF: het_snps.parquet as the local engine writes it."""
    snps, indels, vstats = het_site_tables({"vcf": a.vcf, "fasta": a.fasta, "contig_map": a.contig_map,
                                            "vcf_pass_only": a.vcf_pass_only}, a.donor)
    if a.out_het_indels:
        write_parquet(indels, a.out_het_indels)
    write_parquet(snps, a.out_het_snps)
    if a.out_summary:
        write_json(sites_figures(snps, indels, vstats), a.out_summary)
    return 0


def summarize(sample_stats: list[str | Path], sites_summary: str | Path, out: str | Path) -> dict:
    """``wasp_remap.summary.json`` as the local engine writes it (:func:`run_summary`), from every
    sample's ``wasp/<sample>.stats.json`` and the het-sites figures (what a scattered run has)."""
    summary = run_summary(((p, read_json(p)) for p in sample_stats), read_json(sites_summary), sites_summary)
    write_json(summary, out)
    return summary


def write_study_table(samplesheet: str | Path, out: str | Path, *, check_reads: bool = False) -> pd.DataFrame:
    """The samples table of a samplesheet (:func:`caveat.single_cell.write_samples_table`), its
    ``bam`` and ``peaks`` paths written relative to the samplesheet's folder.

    read_study makes them absolute; a Nextflow task that reads the table (CLUSTER_PEAKS) stages
    the peaks files below its own folder as the staged samplesheet names them
    (``input_peaks/<i>/<name>``), and read_samples_table resolves them against the table's folder.
    ``check_reads``: probe the libraries' reads (:func:`caveat.single_cell.read_libraries`).

    Returns
    -------
    DataFrame
        The table's rows (``SAMPLES_TABLE_COLUMNS``; ``libraries`` as lists).
    """
    from dataclasses import replace

    from .single_cell import write_samples_table

    study = read_study(samplesheet, check_files=False, check_reads=check_reads)  # bulk BAMs are not opened
    base = Path(samplesheet).resolve().parent
    rel = {c: [os.path.relpath(v, base) if v else "" for v in study.samples[c]] for c in ("bam", "peaks")}
    study = replace(study, samples=study.samples.assign(**rel))
    write_samples_table(study, out)
    return study.samples


def _filter_sites(a: argparse.Namespace) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The filter's het SNPs and indels: the sample's donor's, or a library's pooled donors'
    (:func:`library_sites`, as the local engine's ``_library_job``)."""
    if a.het_snps:
        snps = read_parquet(a.het_snps)
        indels = read_parquet(a.het_indels) if a.het_indels else pd.DataFrame(columns=["donor", "chrom", "pos", "end"])
    elif a.vcf:
        snps, indels, _ = het_site_tables({"vcf": a.vcf, "fasta": a.fasta, "contig_map": a.contig_map,
                                           "vcf_pass_only": a.vcf_pass_only}, list(a.donor))
    else:
        raise InputError(None, "no het sites given", "pass --vcf or --het-snps")
    for donor in a.donor:
        if not (snps["donor"] == donor).any():
            raise InputError(a.het_snps or a.vcf, f"donor {donor!r} has no het SNPs", "check the donor name")
    if "donor" not in indels:
        indels = indels.assign(donor=pd.Series(dtype=str))
    if a.barcode_tag:
        return library_sites(snps, indels, list(a.donor))
    return snps[snps["donor"] == a.donor[0]], indels[indels["donor"] == a.donor[0]]


def _kept_barcodes(a: argparse.Namespace) -> set[str]:
    """The kept rows' barcodes of a library's table: doublet, unassigned and unlabelled rows
    dropped (:func:`caveat.single_cell.read_barcode_table`), the set the local engine passes."""
    from .single_cell import read_barcode_table

    table, _ = read_barcode_table(a.barcodes, a.sample, row_donor=a.table_donor)
    return set(table["barcode"])


def main(argv=None) -> int:
    ap = build_parser()
    a = ap.parse_args(argv)
    if a.plan_groups:
        _require(ap, a, "--plan-groups", ("--fai", "--out-groups"))
        write_plan(plan_groups(a.fai, a.plan_groups, a.wasp_group_bp), a.out_groups)
        return 0
    if a.summarize:
        _require(ap, a, "--summarize", ("--part-stats", "--sites-summary", "--out-summary"))
        summarize(a.part_stats, a.sites_summary, a.out_summary)
        return 0
    if a.gather:
        _require(ap, a, "--gather", ("--part-stats", "--sample", "--out-bam", "--out-stats"))
        gather_parts(a.gather, a.part_stats, a.out_bam, a.out_stats, sample=a.sample)
        return 0
    if a.study:
        _require(ap, a, "--study", ("--out-samples",))
        write_study_table(a.study, a.out_samples, check_reads=a.check_reads)
        return 0
    if a.bam is None:
        _require(ap, a, "the het-sites mode (no --bam)", ("--vcf", "--donor", "--out-het-snps"))
        return _het_sites_only(a)
    _require(ap, a, "the filter", ("--sample", "--donor", "--aligner-index", "--out-bam", "--out-stats"))
    if len(a.donor) != 1 and not a.barcode_tag:
        ap.error("the filter takes one --donor (the sample's); several only for a library (--barcode-tag)")
    if a.barcodes and not a.barcode_tag:
        ap.error("--barcodes needs --barcode-tag (the tag holding each read's barcode, CB for Cell Ranger)")
    snps, indels = _filter_sites(a)
    p = params_from_args(a, PARAMS)
    wasp_filter(a.bam, snps, indels, a.out_bam, a.out_stats, aligner=p["aligner"], aligner_index=p["aligner_index"],
                aligner_args=p["aligner_args"], min_mapq=p["min_mapq"], max_snps=p["wasp_max_snps_per_read"],
                max_versions=p["wasp_max_versions"], seed=a.seed, threads=a.threads, chroms=a.chrom, fasta=a.fasta,
                sample=a.sample, barcode_tag=a.barcode_tag, barcodes=_kept_barcodes(a) if a.barcodes else None)
    if a.out_het_snps and a.vcf:  # written last: a failed run leaves nothing behind
        part = snps[snps["chrom"].isin(a.chrom)].reset_index(drop=True) if a.chrom else snps
        write_parquet(part, a.out_het_snps)
    return 0
