"""Allele-swapped versions of reads over het SNPs (WASP ``find_intersecting_snps``).

For a read (or pair) covering ``n`` het SNPs, every combination of REF/ALT
alleles at those sites is a version; the observed combination is not remapped.
Mates covering the same site carry the same allele in every version. Sites
where no mate shows REF or ALT (a third base, an N) are left as read.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from .bam_records import REVERSE, READ2, NT16_TO_CODE, record_parts
from .genome import COMPLEMENT

_ACGTN = np.frombuffer(b"ACGTN", dtype=np.uint8)


def versions_of(seqs: list[np.ndarray], sites: list[np.ndarray], qpos: list[np.ndarray],
                ref: np.ndarray, alt: np.ndarray) -> tuple[list[np.ndarray], int]:
    """Allele-swapped sequences of one read or pair.

    Parameters
    ----------
    seqs : list of uint8 arrays, shape (L_m,) per mate
        Stored (reference-strand) sequence codes, A0 C1 G2 T3 N4.
    sites : list of int64 arrays, shape (k_m,)
        SNP indices each mate covers with an aligned base.
    qpos : list of int64 arrays, shape (k_m,)
        The offsets of those bases in the mate's sequence.
    ref, alt : uint8 arrays, shape (n_snps,)
        Allele codes of the chromosome's SNPs.

    Returns
    -------
    versions : list of uint8 arrays, shape (n_versions, L_m) per mate
        Every allele combination at the varied sites except the observed one.
    n_sites : int
        Sites varied (the WASP cap applies to it).
    """
    allsites = np.unique(np.concatenate(sites)) if sites else np.empty(0, np.int64)
    varied = []
    for s in allsites:
        obs = [seqs[m][qpos[m][sites[m] == s]] for m in range(len(seqs))]
        obs = np.concatenate(obs)
        if np.any((obs == ref[s]) | (obs == alt[s])):
            varied.append(s)
    n = len(varied)
    if n == 0:
        return [np.empty((0, len(s)), np.uint8) for s in seqs], 0
    combos = ((np.arange(1 << n)[:, None] >> np.arange(n)[None, :]) & 1).astype(bool)  # (2^n, n): True = ALT
    varied = np.asarray(varied, dtype=np.int64)
    allele = np.where(combos, alt[varied][None, :], ref[varied][None, :])  # (2^n, n)
    out = []
    same = np.ones(1 << n, dtype=bool)
    for m in range(len(seqs)):
        v = np.repeat(seqs[m][None, :], 1 << n, axis=0)
        j = np.searchsorted(varied, sites[m])
        ok = (j < n) & (varied[np.minimum(j, n - 1)] == sites[m])
        v[:, qpos[m][ok]] = allele[:, j[ok]]
        same &= (v == seqs[m][None, :]).all(axis=1)
        out.append(v)
    return [v[~same] for v in out], n


def fastq_records(name: str, versions: np.ndarray, qual: np.ndarray, reverse: bool) -> list[bytes]:
    """FASTQ text of versions of one mate in sequencing orientation.

    Parameters
    ----------
    versions : uint8 array, shape (n_versions, L)
    qual : uint8 array, shape (L,)
    """
    if reverse:
        versions = COMPLEMENT[versions[:, ::-1]]
        qual = qual[::-1]
    q = (qual + 33).astype(np.uint8).tobytes()
    seqs = _ACGTN[versions]
    return [b"@%s_%d\n%s\n+\n%s\n" % (name.encode(), v, seqs[v].tobytes(), q) for v in range(len(versions))]


__all__ = ["versions_of", "fastq_records", "record_parts", "REVERSE", "READ2", "NT16_TO_CODE"]


# ----------------------------------------------------------------------------- numba fast path

OK, TOO_MANY_SNPS, TOO_MANY_VERSIONS, NO_SWAPPABLE = 0, 1, 2, 3
_NT16_CODE = np.array([4, 0, 1, 4, 2, 4, 4, 4, 3, 4, 4, 4, 4, 4, 4, 4], np.uint8)
_COMP_CHAR = np.frombuffer(b"TGCAN", np.uint8)


@nb.njit(cache=True, nogil=True)
def _put_int(out, o, x):
    if x == 0:
        out[o] = 48
        return o + 1
    d = 0
    y = x
    while y > 0:
        d += 1
        y //= 10
    for i in range(d):
        out[o + d - 1 - i] = 48 + x % 10
        x //= 10
    return o + d


@nb.njit(cache=True, nogil=True)
def _mate_fields(buf, off):
    o = off + 4
    lrn = buf[o + 8]
    ncig = buf[o + 12] | (np.int64(buf[o + 13]) << 8)
    lseq = buf[o + 16] | (np.int64(buf[o + 17]) << 8) | (np.int64(buf[o + 18]) << 16) | (np.int64(buf[o + 19]) << 24)
    s = o + 32 + lrn + 4 * ncig
    return s, s + (lseq + 1) // 2, lseq


@nb.njit(cache=True, nogil=True)
def make_versions(buf, offs, flag, unit_a, unit_b, bounds, obs_snp, obs_qpos, ref, alt, prefix,
                  max_snps, max_versions, unit0=0):
    """Allele-swapped versions of every read/pair as FASTQ bytes (mate 1, mate 2).

    Parameters
    ----------
    unit_a, unit_b : int64 arrays, shape (n_units,)
        Record index of mate 1 (or the single read) and mate 2 (-1 if single-end).
    bounds : int64 array, shape (n_records + 1,)
        ``obs_snp[bounds[i]:bounds[i+1]]`` are the SNPs record ``i`` covers,
        ``obs_qpos[...]`` their offsets in the stored sequence.
    prefix : uint8 array
        Read-name prefix (``<chrom_id>_``); names are ``<prefix><unit0 + u>_<version>``.

    Returns
    -------
    status : int64 array, shape (n_units,)
        OK, TOO_MANY_SNPS, TOO_MANY_VERSIONS or NO_SWAPPABLE.
    n_versions : int64 array, shape (n_units,)
    fq1, fq2 : uint8 arrays
        FASTQ text in sequencing orientation.
    """
    nu = unit_a.shape[0]
    status = np.zeros(nu, np.int64)
    nver = np.zeros(nu, np.int64)
    sites = np.empty(64, np.int64)
    varied = np.empty(64, np.int64)
    # pass 1: decide and size
    size1 = 0
    size2 = 0
    for u in range(nu):
        mates = (unit_a[u], unit_b[u])
        ns = 0
        for mi in range(2):
            m = mates[mi]
            if m < 0:
                continue
            for k in range(bounds[m], bounds[m + 1]):
                s = obs_snp[k]
                seen = False
                for t in range(ns):
                    if sites[t] == s:
                        seen = True
                if not seen and ns < 64:
                    sites[ns] = s
                    ns += 1
        if ns > max_snps:
            status[u] = TOO_MANY_SNPS
            continue
        nv = 0
        observed = True
        for t in range(ns):
            s = sites[t]
            any_allele = False
            first = -1
            consistent = True
            for mi in range(2):
                m = mates[mi]
                if m < 0:
                    continue
                sq, _, _ = _mate_fields(buf, offs[m])
                for k in range(bounds[m], bounds[m + 1]):
                    if obs_snp[k] == s:
                        x = obs_qpos[k]
                        b = np.int64(buf[sq + x // 2])
                        c = _NT16_CODE[(b >> 4) if x % 2 == 0 else (b & 0xF)]
                        if c == ref[s] or c == alt[s]:
                            any_allele = True
                        if first < 0:
                            first = c
                        elif c != first:
                            consistent = False
            if any_allele:
                nv += 1
                if not consistent or (first != ref[s] and first != alt[s]):
                    observed = False
        if nv == 0:
            status[u] = NO_SWAPPABLE
            continue
        n = (1 << nv) - (1 if observed else 0)
        if n > max_versions:
            status[u] = TOO_MANY_VERSIONS
            continue
        nver[u] = n
        for mi in range(2):
            m = mates[mi]
            if m < 0:
                continue
            _, _, lseq = _mate_fields(buf, offs[m])
            rec = prefix.shape[0] + 44 + 2 * lseq
            if mi == 0:
                size1 += n * rec
            else:
                size2 += n * rec
    fq1 = np.empty(size1, np.uint8)
    fq2 = np.empty(size2, np.uint8)
    o1 = 0
    o2 = 0
    seq = np.empty(1024, np.uint8)
    for u in range(nu):
        if nver[u] == 0:
            continue
        mates = (unit_a[u], unit_b[u])
        # varied sites, in order
        ns = 0
        for mi in range(2):
            m = mates[mi]
            if m < 0:
                continue
            sq, _, _ = _mate_fields(buf, offs[m])
            for k in range(bounds[m], bounds[m + 1]):
                s = obs_snp[k]
                x = obs_qpos[k]
                b = np.int64(buf[sq + x // 2])
                c = _NT16_CODE[(b >> 4) if x % 2 == 0 else (b & 0xF)]
                if c != ref[s] and c != alt[s]:
                    continue
                seen = False
                for t in range(ns):
                    if varied[t] == s:
                        seen = True
                if not seen:
                    varied[ns] = s
                    ns += 1
        v = 0
        for combo in range(1 << ns):
            # skip the observed combination
            same = True
            for mi in range(2):
                m = mates[mi]
                if m < 0:
                    continue
                sq, _, _ = _mate_fields(buf, offs[m])
                for k in range(bounds[m], bounds[m + 1]):
                    s = obs_snp[k]
                    for t in range(ns):
                        if varied[t] == s:
                            a = alt[s] if (combo >> t) & 1 else ref[s]
                            x = obs_qpos[k]
                            b = np.int64(buf[sq + x // 2])
                            if _NT16_CODE[(b >> 4) if x % 2 == 0 else (b & 0xF)] != a:
                                same = False
            if same:
                continue
            for mi in range(2):
                m = mates[mi]
                if m < 0:
                    continue
                sq, qq, lseq = _mate_fields(buf, offs[m])
                if lseq > seq.shape[0]:
                    seq = np.empty(lseq, np.uint8)
                for x in range(lseq):
                    b = np.int64(buf[sq + x // 2])
                    seq[x] = _NT16_CODE[(b >> 4) if x % 2 == 0 else (b & 0xF)]
                for k in range(bounds[m], bounds[m + 1]):
                    s = obs_snp[k]
                    for t in range(ns):
                        if varied[t] == s:
                            seq[obs_qpos[k]] = alt[s] if (combo >> t) & 1 else ref[s]
                out = fq1 if mi == 0 else fq2
                o = o1 if mi == 0 else o2
                out[o] = 64
                o += 1
                for j in range(prefix.shape[0]):
                    out[o] = prefix[j]
                    o += 1
                o = _put_int(out, o, unit0 + u)
                out[o] = 95
                o = _put_int(out, o + 1, v)
                out[o] = 10
                o += 1
                rev = (flag[m] & 0x10) != 0
                for x in range(lseq):
                    c = seq[lseq - 1 - x] if rev else seq[x]
                    out[o] = _COMP_CHAR[c] if rev else _ACGT_CHAR[c]
                    o += 1
                out[o] = 10
                out[o + 1] = 43
                out[o + 2] = 10
                o += 3
                for x in range(lseq):
                    out[o] = buf[qq + (lseq - 1 - x if rev else x)] + 33
                    o += 1
                out[o] = 10
                o += 1
                if mi == 0:
                    o1 = o
                else:
                    o2 = o
            v += 1
    return status, nver, fq1[:o1], fq2[:o2]


_ACGT_CHAR = np.frombuffer(b"ACGTN", np.uint8)
