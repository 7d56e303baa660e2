"""Element accessibility from motif occupancy, on the reference and on every
donor haplotype, and the per-cell-type peak BED files."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .donors import Variants
from .genome import Genome
from .motifs import Motifs, accessibility, occupancy

_LUT = np.full(256, 4, np.uint8)
_LUT[np.frombuffer(b"ACGT", np.uint8)] = np.arange(4, dtype=np.uint8)


def _pad(seqs: list) -> tuple[np.ndarray, np.ndarray]:
    lengths = np.array([len(s) for s in seqs])
    out = np.full((len(seqs), int(lengths.max()) if len(seqs) else 1), 4, np.uint8)
    for i, s in enumerate(seqs):
        out[i, :len(s)] = s
    return out, lengths


def _score(seqs: list, motifs: Motifs, batch: int = 2048) -> tuple[np.ndarray, list]:
    """Occupancy (n, M) and covered masks for a list of code arrays, in batches."""
    occ, cov = [], []
    for i in range(0, len(seqs), batch):
        codes, lengths = _pad(seqs[i:i + batch])
        o, c = occupancy(codes, lengths, motifs)
        occ.append(o)
        cov += [c[j, :lengths[j]] for j in range(len(lengths))]
    return (np.concatenate(occ) if occ else np.zeros((0, len(motifs.pwms)))), cov


def _apply(g: Genome, e_start: int, e_end: int, sites: pd.DataFrame, idx) -> np.ndarray:
    """Element sequence with the ALT alleles of sites ``idx`` applied."""
    pieces, prev = [], e_start
    for i in idx:
        q = int(sites.gpos.iat[i])
        rl = len(sites.ref.iat[i])
        pieces.append(g.seq[prev:q])
        pieces.append(_LUT[np.frombuffer(sites.alt.iat[i].encode(), np.uint8)])
        prev = min(q + rl, e_end)
    pieces.append(g.seq[prev:e_end])
    return np.concatenate(pieces)


def element_accessibility(g: Genome, v: Variants, motifs: Motifs):
    """Accessibility of every element on the reference and on each haplotype.

    Returns
    -------
    acc_ref : float (n_elements, n_cell_types)
    acc_hap : float (n_donors, 2, n_elements, n_cell_types)
    site_effect : DataFrame site index → element, touches_motif, single-variant
        accessibility change per cell type (``dacc_<k>`` columns; ALT minus REF)
    """
    el = g.elements
    ref_seqs = [g.seq[s:e] for s, e in zip(el.gstart, el.gend)]
    occ_ref, cov_ref = _score(ref_seqs, motifs)
    acc_ref = accessibility(occ_ref, motifs)
    gpos = v.sites.gpos.to_numpy()
    lo = np.searchsorted(gpos, el.gstart.to_numpy())
    hi = np.searchsorted(gpos, el.gend.to_numpy())
    n_d = v.alleles.shape[0]
    acc_hap = np.broadcast_to(acc_ref, (n_d, 2) + acc_ref.shape).copy()
    keys: dict = {}
    for e in np.nonzero(hi > lo)[0]:
        for d in range(n_d):
            for h in range(2):
                on = tuple(int(i) for i in range(lo[e], hi[e]) if v.alleles[d, h, i])
                if on:
                    keys.setdefault((int(e), on), []).append((d, h))
    key_list = list(keys)
    hap_seqs = [_apply(g, int(el.gstart.iat[e]), int(el.gend.iat[e]), v.sites, on) for e, on in key_list]
    occ_hap, _ = _score(hap_seqs, motifs)
    acc_keys = accessibility(occ_hap, motifs)
    for k, (e, on) in enumerate(key_list):
        for d, h in keys[(e, on)]:
            acc_hap[d, h, e] = acc_keys[k]
    # each site alone on the reference: does it touch a motif, which way does it push?
    single = [(int(e), i) for e in np.nonzero(hi > lo)[0] for i in range(lo[e], hi[e])]
    one_seqs = [_apply(g, int(el.gstart.iat[e]), int(el.gend.iat[e]), v.sites, (i,)) for e, i in single]
    occ_one, _ = _score(one_seqs, motifs)
    dacc = accessibility(occ_one, motifs) - acc_ref[[e for e, _ in single]] if single else np.zeros((0, acc_ref.shape[1]))
    rows = pd.DataFrame({"site": [i for _, i in single], "element_idx": [e for e, _ in single]})
    rows["touches_motif"] = [bool(cov_ref[e][int(gpos[i]) - int(el.gstart.iat[e])]) or bool(np.any(occ_one[k] != occ_ref[e]))
                             for k, (e, i) in enumerate(single)]
    for k in range(acc_ref.shape[1]):
        rows[f"dacc_{k}"] = dacc[:, k] if len(single) else []
    return acc_ref, acc_hap, rows


def write_peaks(rng, g: Genome, acc_ref: np.ndarray, cell_types, threshold: float, outdir) -> dict:
    """Per cell type BED6: accessible elements with jittered bounds, ~5 % missed,
    ~3 % false peaks at random non-gap positions. Returns peak counts."""
    from ..io import write_text

    el = g.elements
    counts = {}
    for k, ct in enumerate(cell_types):
        acc = acc_ref[:, k]
        keep = (acc > threshold) & (rng.random(len(el)) > 0.05)
        sub = el[keep]
        jit = rng.normal(0, 25, (len(sub), 2)).round().astype(int)
        ci = sub.chrom.map({c: i for i, c in enumerate(g.chroms)}).to_numpy()
        start = np.clip(sub.start.to_numpy() + jit[:, 0], 0, None)
        end = np.minimum(np.maximum(sub.end.to_numpy() + jit[:, 1], start + 50), g.lengths[ci])
        score = np.clip((acc[keep] * 1000).round(), 0, 1000).astype(int)
        peaks = pd.DataFrame({"chrom": sub.chrom.to_numpy(), "start": start, "end": end, "score": score,
                              "ci": ci + 1})
        peaks = pd.concat([peaks, _false_peaks(rng, g, max(1, int(0.03 * len(sub))))], ignore_index=True)
        peaks = peaks.sort_values(["ci", "start", "end"], kind="stable").reset_index(drop=True)
        lines = [f"{c}\t{s}\t{e}\t{ct}_peak{i + 1:05d}\t{sc}\t." for i, (c, s, e, sc)
                 in enumerate(zip(peaks.chrom, peaks.start, peaks.end, peaks.score))]
        write_text("\n".join(lines) + "\n", outdir / f"{ct}.bed")
        counts[ct] = len(peaks)
    return counts


def _false_peaks(rng, g: Genome, n: int) -> pd.DataFrame:
    rows = []
    el = g.elements
    while len(rows) < n:
        q = int(rng.integers(0, len(g.seq) - 400))
        ln = int(rng.integers(150, 400))
        ci, pos = g.to_local(np.array([q]))
        ci, pos = int(ci[0]), int(pos[0])
        if pos + ln > g.lengths[ci] or (g.seq[q:q + ln] == 4).any():
            continue
        if ((el.gstart < q + ln + 200) & (el.gend > q - 200)).any():
            continue
        rows.append((g.chroms[ci], pos, pos + ln, int(rng.integers(20, 150)), ci + 1))
    return pd.DataFrame(rows, columns=["chrom", "start", "end", "score", "ci"])
