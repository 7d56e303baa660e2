"""ATAC fragments per donor × cell type: drawn from each haplotype in
proportion to element accessibility plus uniform background, with a
nucleosome-free / mono- / di-nucleosome length mix, Illumina-like qualities
and errors, and PCR duplicates; written as paired FASTQ."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .genome import Genome

MID_SD = 50          # sd (bp) of fragment midpoints around the element centre
MAX_LEN = 800
_ACGT = np.frombuffer(b"ACGTN", np.uint8)


def length_pmf(read_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Fragment length distribution: 55 % nucleosome-free (50 + Gamma(2, 25)),
    35 % mono-nucleosome N(200, 25), 10 % di-nucleosome N(390, 35).

    Returns lengths (n,) and probabilities (n,)."""
    from scipy import stats

    x = np.arange(read_len, MAX_LEN + 1)
    nfr = stats.gamma.pdf(x - 50 + 0.5, 2, scale=25)
    mono = stats.norm.pdf(x, 200, 25)
    di = stats.norm.pdf(x, 390, 35)
    pmf = 0.55 * nfr / nfr.sum() + 0.35 * mono / mono.sum() + 0.10 * di / di.sum()
    return x, pmf / pmf.sum()


def midpoint_pmf() -> tuple[np.ndarray, np.ndarray]:
    from scipy import stats

    o = np.arange(-4 * MID_SD, 4 * MID_SD + 1)
    p = stats.norm.pdf(o, 0, MID_SD)
    return o, p / p.sum()


def coverage_kernel(read_len: int, half: int = 1200) -> np.ndarray:
    """P(an element fragment has a read over position centre + x), x ∈ [-half, half].

    Returns float array (2 * half + 1,)."""
    lens, pl = length_pmf(read_len)
    offs, po = midpoint_pmf()
    L = np.repeat(lens, len(offs))
    o = np.tile(offs, len(lens))
    w = np.repeat(pl, len(offs)) * np.tile(po, len(lens))
    s = o - L // 2
    e = s + L
    diff = np.zeros(2 * half + 2)
    two = L > 2 * read_len
    for a, b, ww in ((s, np.where(two, s + read_len, e), w), (np.where(two, e - read_len, e), e, w * two)):
        np.add.at(diff, a + half, ww)
        np.add.at(diff, b + half, -ww)
    return np.cumsum(diff)[:-1]


def background_coverage(read_len: int) -> float:
    """Expected bases covered per background fragment (E[min(L, 2 r)])."""
    lens, pl = length_pmf(read_len)
    return float((np.minimum(lens, 2 * read_len) * pl).sum())


@dataclass
class Fragments:
    """Fragments of one sample in reference global coordinates.

    Attributes
    ----------
    start, end : int64 (n,) ; hap : int8 (n,) (0, 1: the donor's haplotypes; 2: an artefact
    region's absent copy) ; from_element : bool (n,) ; duplicate : bool (n,) ; from_artefact : bool (n,)
    """

    start: np.ndarray
    end: np.ndarray
    hap: np.ndarray
    from_element: np.ndarray
    duplicate: np.ndarray
    from_artefact: np.ndarray


def sample_fragments(rng, g: Genome, acc_hap_dk: np.ndarray, n_total: int, bg_fraction: float,
                     dup_rate: float, read_len: int, extra: tuple | None = None) -> Fragments:
    """Draw one sample's fragments.

    Parameters
    ----------
    acc_hap_dk : float (2, n_elements) accessibility of each element on each haplotype
    extra : (starts (m,), lengths (m,)) or None, fragments from artefact copies (haplotype 2),
        added before PCR duplicates are drawn
    """
    n_bg = int(round(bg_fraction * n_total))
    n_el = n_total - n_bg
    lens, pl = length_pmf(read_len)
    p = acc_hap_dk.ravel() / acc_hap_dk.sum()
    counts = rng.multinomial(n_el, p)
    idx = np.repeat(np.arange(p.size), counts)
    hap_el, e = idx // acc_hap_dk.shape[1], idx % acc_hap_dk.shape[1]
    centre = g.elements.center.to_numpy()[e]
    mid = centre + np.round(rng.normal(0, MID_SD, n_el)).astype(np.int64).clip(-4 * MID_SD, 4 * MID_SD)
    L = rng.choice(lens, size=n_el, p=pl)
    s_el = mid - L // 2
    # uniform background over non-gap sequence (rejection of spans over N or chromosome ends)
    s_bg, L_bg = _background(rng, g, n_bg, lens, pl)
    s_art, L_art = extra if extra is not None else (np.zeros(0, np.int64), np.zeros(0, np.int64))
    start = np.concatenate([s_el, s_bg, s_art])
    end = start + np.concatenate([L, L_bg, L_art])
    hap = np.concatenate([hap_el, rng.integers(0, 2, n_bg), np.full(len(s_art), 2)]).astype(np.int8)
    from_el = np.concatenate([np.ones(n_el, bool), np.zeros(n_bg + len(s_art), bool)])
    dup = rng.random(len(start)) < dup_rate
    di = np.nonzero(dup)[0]
    start, end, hap, from_el = (np.concatenate([a, a[di]]) for a in (start, end, hap, from_el))
    is_dup = np.concatenate([np.zeros(len(dup), bool), np.ones(len(di), bool)])
    order = rng.permutation(len(start))  # sequencer order
    return Fragments(start[order], end[order], hap[order], from_el[order], is_dup[order], hap[order] == 2)


def _background(rng, g: Genome, n: int, lens, pl) -> tuple[np.ndarray, np.ndarray]:
    nmask = np.concatenate([[0], np.cumsum(g.seq == 4)])
    chrom_end = np.repeat(g.offsets + g.lengths, g.lengths)
    out_s, out_l, need = [np.zeros(0, np.int64)], [np.zeros(0, lens.dtype)], n
    while need > 0:
        s = rng.integers(0, len(g.seq), int(need * 1.2) + 10)
        L = rng.choice(lens, size=len(s), p=pl)
        ok = (s + L <= chrom_end[s]) & (nmask[np.minimum(s + L, len(g.seq))] - nmask[s] == 0)
        out_s.append(s[ok][:need])
        out_l.append(L[ok][:need])
        need -= len(out_s[-1])
    return np.concatenate(out_s), np.concatenate(out_l)


def reads(rng, hap_seqs: list, shifts: list, f: Fragments, read_len: int) -> tuple[np.ndarray, ...]:
    """Read sequences and qualities (ASCII) of both mates; fragment ``f.hap == h`` is read
    from ``hap_seqs[h]`` (at reference position + ``shifts[h]``).

    Returns
    -------
    r1, r2, q1, q2 : uint8 arrays (n, read_len)
    """
    n = len(f.start)
    r1 = np.empty((n, read_len), np.uint8)
    r2 = np.empty((n, read_len), np.uint8)
    ar = np.arange(read_len)
    for h in range(len(hap_seqs)):
        m = f.hap == h
        hs = f.start[m] + shifts[h](f.start[m])
        he = f.end[m] + shifts[h](f.end[m])
        he = np.maximum(he, hs + read_len)
        r1[m] = hap_seqs[h][hs[:, None] + ar]
        r2[m] = 3 - hap_seqs[h][(he - read_len)[:, None] + ar][:, ::-1]
    r2[r2 > 3] = 4
    swap = rng.random(n) < 0.5  # Tn5 fragments are unstranded
    r1[swap], r2[swap] = r2[swap].copy(), r1[swap].copy()
    q1, r1 = _sequence(rng, r1)
    q2, r2 = _sequence(rng, r2, drop=2.0)
    return _ACGT[r1], _ACGT[r2], q1, q2


def _sequence(rng, codes: np.ndarray, drop: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Phred qualities (declining along the read, per-read offset) and the
    substitution errors they imply."""
    n, L = codes.shape
    x = np.arange(L) / L
    mean = 37.0 - drop - 9.0 * x ** 2
    q = mean + rng.normal(0, 2.0, (n, 1)) + rng.normal(0, 2.5, (n, L))
    q = np.clip(np.round(q), 2, 41).astype(np.uint8)
    err = rng.random((n, L)) < 10.0 ** (-q.astype(np.float64) / 10.0)
    codes = codes.copy()
    codes[err] = (codes[err] + rng.integers(1, 4, int(err.sum()))) % 4
    return q + 33, codes


def write_fastq(path, names: np.ndarray, seqs: np.ndarray, quals: np.ndarray, mate: int) -> None:
    """Write FASTQ from fixed-width arrays in one buffer.

    names : bytes array (n,) of equal width ; seqs, quals : uint8 (n, L)
    """
    n, L = seqs.shape
    nm = np.frombuffer(b"".join(names), np.uint8).reshape(n, -1)
    w = nm.shape[1]
    suffix = np.frombuffer(f"/{mate}\n".encode(), np.uint8)
    rec = np.empty((n, 1 + w + 3 + L + 3 + L + 1), np.uint8)
    rec[:, 0] = ord("@")
    rec[:, 1:1 + w] = nm
    rec[:, 1 + w:4 + w] = suffix
    o = 4 + w
    rec[:, o:o + L] = seqs
    rec[:, o + L:o + L + 3] = np.frombuffer(b"\n+\n", np.uint8)
    rec[:, o + L + 3:o + 2 * L + 3] = quals
    rec[:, -1] = ord("\n")
    with open(path, "wb") as fh:
        fh.write(rec.tobytes())
