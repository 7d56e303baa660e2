"""The simulated reference: chr1..chr22 (plus a modest chrX when
``Preset.chrx_bp`` > 0) at GC 40 %, assembly gaps, regulatory elements carrying
motif sites, and segmental duplications (on autosomes).

Everything is held in one concatenated uint8 array (A0 C1 G2 T3 N4) with
per-chromosome offsets ("global" coordinates), so sequence work is vectorised.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .motifs import Motifs, sample_instance
from .presets import HUMAN_MB, Preset

CLASS_PROBS = {"ubiquitous": 0.32, "specific": 0.43, "background": 0.25}
PAIR_FRACTION = 0.3        # specific elements active in two cell types
MIN_CHROM_BP = 6000
X_CHROM = "chrX"


@dataclass
class Genome:
    """The reference and its planted features.

    Attributes
    ----------
    chroms : list of str
    lengths, offsets : int arrays (n_chroms,)
    seq : uint8 array (total,) reference codes
    gaps : DataFrame chrom, start, end (global gstart/gend too)
    elements : DataFrame element, chrom, start, end, class, specific_to, gstart, gend, center
    instances : DataFrame element, motif, gstart, strand
    causal : DataFrame gpos, ref, alt (codes), kind ∈ {break, create}, motif
    dups : DataFrame source_gstart, target_gstart, length, source_element
    """

    chroms: list
    lengths: np.ndarray
    offsets: np.ndarray
    seq: np.ndarray
    gaps: pd.DataFrame
    elements: pd.DataFrame
    instances: pd.DataFrame
    causal: pd.DataFrame
    dups: pd.DataFrame

    def to_local(self, gpos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Global positions → (chrom index, 0-based position)."""
        ci = np.searchsorted(self.offsets, gpos, side="right") - 1
        return ci, gpos - self.offsets[ci]

    def chrom_seq(self, i: int) -> np.ndarray:
        return self.seq[self.offsets[i]:self.offsets[i] + self.lengths[i]]


def chrom_lengths(total: int) -> np.ndarray:
    """chr1..chr22 lengths: half flat, half proportional to human lengths (so
    small chromosomes still hold elements)."""
    frac = np.array(HUMAN_MB, float) / sum(HUMAN_MB)
    lengths = total * (0.5 / 22 + 0.5 * frac)
    return np.maximum(lengths.round(-1).astype(np.int64), MIN_CHROM_BP)


def _overlaps(s: int, e: int, taken: list, pad: int = 0) -> bool:
    return any(s < te + pad and ts < e + pad for ts, te in taken)


def _layout_chrom(rng, length: int, p: Preset, dups: bool = True) -> tuple[list, list, list]:
    """Place one gap, the duplication target deserts (if ``dups``) and the elements of one chromosome."""
    taken: list = []
    glen = int(rng.integers(*p.gap_len))
    gs = int(rng.integers(int(0.15 * length), int(0.85 * length) - glen))
    gaps = [(gs, gs + glen)]
    taken.append((gs, gs + glen))
    deserts = []
    for _ in range(int(rng.poisson(p.dups_per_chrom)) if dups else 0):
        dlen = int(rng.integers(*p.dup_len))
        for _try in range(20):
            ds = int(rng.integers(200, max(201, length - dlen - 200)))
            if ds + dlen < length - 200 and not _overlaps(ds, ds + dlen, taken, 300):
                deserts.append((ds, ds + dlen))
                taken.append((ds, ds + dlen))
                break
    elements = []
    n_slots = max(1, length // p.element_spacing)
    slot = length / n_slots
    for k in range(n_slots):
        elen = int(rng.integers(200, 501))
        centre = int((k + 0.5) * slot + rng.uniform(-0.25, 0.25) * slot)
        s, e = centre - elen // 2, centre - elen // 2 + elen
        if s < 300 or e > length - 300 or _overlaps(s, e, taken, 250):
            continue
        elements.append((s, e))
        taken.append((s, e))
    return gaps, deserts, elements


def _assign_classes(rng, n: int, cell_types) -> tuple[list, list]:
    classes = rng.choice(list(CLASS_PROBS), size=n, p=list(CLASS_PROBS.values()))
    specific_to = []
    k = len(cell_types)
    for c in classes:
        if c != "specific":
            specific_to.append(())
            continue
        j = int(rng.integers(k))
        if rng.random() < PAIR_FRACTION:
            pair = sorted({j, (j + 1) % k})
            specific_to.append(tuple(cell_types[i] for i in pair))
        else:
            specific_to.append((cell_types[j],))
    return list(classes), specific_to


def _element_motifs(motifs: Motifs, cls: str, spec: tuple, cell_types) -> list:
    """Indices of TFs whose sites an element of this class carries."""
    if cls == "ubiquitous":
        return [m for m, a in enumerate(motifs.active_in) if len(a) == len(cell_types)]
    if cls == "specific":
        return [m for m, a in enumerate(motifs.active_in) if tuple(a) == tuple(spec)
                or (len(spec) == 2 and set(a) == set(spec))]
    return []


def _plant_sites(rng, seq, elements: pd.DataFrame, motifs: Motifs, cell_types, causal_fraction: float):
    """Write motif sites into element sequences; plant one causal site in some."""
    los = motifs.log_odds
    inst_rows, causal_rows = [], []
    for row in elements.itertuples(index=False):
        choices = _element_motifs(motifs, row._4, row.specific_to_t, cell_types)
        if not choices:
            continue
        n_sites = int(rng.choice([1, 2, 3], p=[0.3, 0.4, 0.3]))
        centre, half = (row.gstart + row.gend) // 2, min(110, (row.gend - row.gstart) // 2 - 10)
        placed: list = []
        for _ in range(n_sites):
            m = int(rng.choice(choices))
            pwm, lo = motifs.pwms[m], los[m]
            w = len(pwm)
            for _try in range(10):
                s = int(rng.integers(centre - half, centre + half - w))
                if not _overlaps(s, s + w, placed, 2):
                    break
            else:
                continue
            site = sample_instance(rng, pwm, lo)
            strand = "+" if rng.random() < 0.5 else "-"
            placed.append((s, s + w))
            inst_rows.append((row.element, m, s, strand, w))
            if strand == "-":
                site = (3 - site)[::-1]
            seq[s:s + w] = site
            if rng.random() < causal_fraction / n_sites:
                top = np.argsort(-pwm.max(1))[:3]
                j = int(rng.choice(top))
                best, worst = int(pwm[j].argmax()), int(pwm[j].argmin())
                fwd_pos = s + j if strand == "+" else s + w - 1 - j
                comp = (lambda b: b) if strand == "+" else (lambda b: 3 - b)
                # a created site needs another site beside it, or the element is shut on REF
                kind = "break" if (rng.random() < 0.5 or n_sites == 1) else "create"
                if kind == "break":
                    ref, alt = comp(best), comp(worst)
                else:
                    ref, alt = comp(worst), comp(best)
                seq[fwd_pos] = ref
                causal_rows.append((fwd_pos, ref, alt, kind, motifs.names[m], row.element))
    instances = pd.DataFrame(inst_rows, columns=["element", "motif", "gstart", "strand", "width"])
    causal = pd.DataFrame(causal_rows, columns=["gpos", "ref", "alt", "kind", "motif", "element"])
    return instances, causal.drop_duplicates("gpos").reset_index(drop=True)


def build_genome(rng: np.random.Generator, p: Preset, motifs: Motifs) -> Genome:
    """Lay out and write the reference (elements, sites, gaps, duplications).

    chrX (``p.chrx_bp`` > 0) comes after chr22 and is drawn with a generator of
    its own taken after every autosomal draw, so the autosomes are those of the
    same study without it."""
    auto = _build_part(rng, p, motifs, [f"chr{i}" for i in range(1, 23)], chrom_lengths(p.genome_bp), 0, True)
    if p.chrx_bp <= 0:
        return auto
    x_rng = np.random.default_rng(rng.integers(2**63))
    x = _build_part(x_rng, p, motifs, [X_CHROM], np.array([max(int(p.chrx_bp), MIN_CHROM_BP)]),
                    len(auto.elements), False)
    return _join(auto, x)


def _build_part(rng, p: Preset, motifs: Motifs, chroms: list, lengths: np.ndarray, first_element: int,
                dups: bool) -> Genome:
    """The genome of ``chroms`` alone (global coordinates from 0), elements numbered
    from ``first_element``; segmental duplications only if ``dups``."""
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    total = int(lengths.sum())
    bg = np.array([(1 - p.gc) / 2, p.gc / 2, p.gc / 2, (1 - p.gc) / 2])
    seq = rng.choice(4, size=total, p=bg).astype(np.uint8)
    gap_rows, desert_rows, el_rows = [], [], []
    for ci, (name, length, off) in enumerate(zip(chroms, lengths, offsets)):
        gaps, deserts, els = _layout_chrom(rng, int(length), p, dups=dups)
        gap_rows += [(name, s, e, off + s, off + e) for s, e in gaps]
        desert_rows += [(ci, off + s, e - s) for s, e in deserts]
        el_rows += [(name, s, e, off + s, off + e) for s, e in sorted(els)]
    elements = pd.DataFrame(el_rows, columns=["chrom", "start", "end", "gstart", "gend"])
    elements.insert(0, "element", [f"el{i:05d}" for i in range(first_element, first_element + len(elements))])
    classes, spec = _assign_classes(rng, len(elements), list(p.cell_types))
    elements.insert(4, "class", classes)
    elements["specific_to_t"] = spec
    elements["specific_to"] = [";".join(s) for s in spec]
    elements["center"] = (elements.gstart + elements.gend) // 2
    instances, causal = _plant_sites(rng, seq, elements, motifs, list(p.cell_types), p.causal_fraction)
    gaps = pd.DataFrame(gap_rows, columns=["chrom", "start", "end", "gstart", "gend"])
    for g in gaps.itertuples():
        seq[g.gstart:g.gend] = 4
    dup = _duplicate(rng, seq, elements, desert_rows, p, dict(zip(chroms, lengths)))
    return Genome(list(chroms), lengths, offsets, seq, gaps, elements.drop(columns="specific_to_t"),
                  instances, causal, dup)


def _join(a: Genome, b: Genome) -> Genome:
    """``b``'s chromosomes after ``a``'s (its global coordinates shifted)."""
    shift = len(a.seq)

    def cat(x: pd.DataFrame, y: pd.DataFrame, cols) -> pd.DataFrame:
        if not len(y):  # an empty frame's object columns would spoil x's dtypes
            return x
        y = y.assign(**{c: y[c].astype(np.int64) + shift for c in cols})
        return y if not len(x) else pd.concat([x, y], ignore_index=True)

    return Genome(a.chroms + b.chroms, np.concatenate([a.lengths, b.lengths]),
                  np.concatenate([a.offsets, b.offsets + shift]), np.concatenate([a.seq, b.seq]),
                  cat(a.gaps, b.gaps, ["gstart", "gend"]),
                  cat(a.elements, b.elements, ["gstart", "gend", "center"]),
                  cat(a.instances, b.instances, ["gstart"]), cat(a.causal, b.causal, ["gpos"]),
                  cat(a.dups, b.dups, ["source_gstart", "target_gstart"]))


def _duplicate(rng, seq, elements: pd.DataFrame, deserts: list, p: Preset, lengths: dict) -> pd.DataFrame:
    """Copy a region around an accessible element into each desert, at ~1 % divergence.

    Sources are centred on ubiquitous autosomal elements first (most reads, so the
    mapping bias they cause is visible in every cell type); ``lengths`` maps
    chromosome name → length."""
    order = elements.index[elements["class"] == "ubiquitous"].to_numpy()
    order = np.concatenate([rng.permutation(order),
                            rng.permutation(elements.index[elements["class"] == "specific"].to_numpy())])
    rows, used = [], 0
    blocked = [(t, t + ln) for _, t, ln in deserts]
    gap_mask = seq == 4
    for _chrom, tgt, ln in deserts:
        while used < len(order):
            e = elements.loc[order[used]]
            used += 1
            src = int(e.center) - ln // 2
            chrom_start = int(e.gstart - e.start)
            chrom_end = chrom_start + int(lengths[e.chrom])
            if src < chrom_start + 50 or src + ln > chrom_end or gap_mask[src:src + ln].any():
                continue
            if _overlaps(src, src + ln, blocked):
                continue
            copy = seq[src:src + ln].copy()
            n_sub = rng.binomial(ln, p.dup_divergence)
            pos = rng.choice(ln, size=n_sub, replace=False)
            copy[pos] = (copy[pos] + rng.integers(1, 4, n_sub)) % 4
            seq[tgt:tgt + ln] = copy
            rows.append((src, tgt, ln, e.element))
            break
    return pd.DataFrame(rows, columns=["source_gstart", "target_gstart", "length", "source_element"])
