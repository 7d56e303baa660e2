"""Faults real data have, planted with their truth (issue 15, point 7).

* genotype errors in the VCF: a donor's hom-REF/hom-ALT sites written as het
  (reads there show one allele only: n:0, which looks like complete imbalance)
  and true hets written as hom (sites lost to the study);
* donor-to-donor variation of element accessibility (log-normal factor per
  donor × element) and X-inactivation on chrX (per donor, a skewed share of
  cells whose active X is the first haplotype): :func:`donor_biology`;
* allelic overdispersion: per sample × element, the haplotype share of its
  fragments is a Beta draw around the planted share (:func:`overdisperse`);
* collapsed-repeat artefact regions: copies of a locus that are absent from the
  reference pile their reads onto it at very high depth, each copy fixed for one
  allele at every site there (:func:`artefact_regions`, :func:`artefact_fragments`).

Every fault is off when its rate (or size) in the :class:`~.presets.Preset` is 0,
and then draws nothing, so the rest of the study is that of a run without it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .donors import BASES, Variants
from .genome import X_CHROM, Genome
from .presets import Preset

ARTEFACT_PAD = 2000       # bp kept clear between artefact regions, and from duplications / causal elements


def _element_of(g: Genome, gpos: np.ndarray) -> np.ndarray:
    """Index of the element holding each global position, -1 outside elements.

    Returns int array (n,)."""
    el = g.elements
    k = np.searchsorted(el.gstart.to_numpy(), gpos, side="right") - 1
    inside = (k >= 0) & (gpos < el.gend.to_numpy()[np.clip(k, 0, None)])
    return np.where(inside, k, -1)


def _gt(a: np.ndarray) -> str:
    """Phased GT string of one donor's alleles at one site (bool (2,))."""
    return f"{int(a[0])}|{int(a[1])}"


# --------------------------------------------------------------------------- genotype errors

def genotype_errors(rng, g: Genome, v: Variants, p: Preset, acc_ref: np.ndarray, donors) -> pd.DataFrame:
    """Per donor, ``false_het_rate`` × its true hets drawn among its hom sites (half
    in accessible elements, where reads are) to be written as het, and
    ``lost_het_rate`` × its true hets to be written as hom.

    Parameters
    ----------
    acc_ref : float (n_elements, n_cell_types) reference accessibility (an element
        above ``p.peak_threshold`` in some cell type counts as accessible)

    Returns
    -------
    DataFrame donor, variant_id, chrom, pos (0-based), ref, alt, true_gt, vcf_gt,
    kind ∈ {false_het, lost_het}, in_element, site (row of ``v.sites``)
    """
    e = _element_of(g, v.sites.gpos.to_numpy())
    accessible = (e >= 0) & (acc_ref.max(axis=1)[np.clip(e, 0, None)] > p.peak_threshold)
    rows = []
    for d, donor in enumerate(donors):
        a = v.alleles[d]
        het = a[0] != a[1]
        for i in _false_het_sites(rng, ~het, accessible, int(round(p.false_het_rate * het.sum()))):
            rows.append((donor, i, "false_het", _gt(a[:, i]), "0|1" if rng.random() < 0.5 else "1|0"))
        lost = np.sort(rng.choice(np.nonzero(het)[0], int(round(p.lost_het_rate * het.sum())), replace=False))
        for i in lost:
            keep = int(a[int(rng.integers(2)), i])
            rows.append((donor, int(i), "lost_het", _gt(a[:, i]), f"{keep}|{keep}"))
    return _errors_table(v, e, rows)


def _false_het_sites(rng, hom: np.ndarray, accessible: np.ndarray, n: int) -> np.ndarray:
    """``n`` of the ``hom`` sites (bool (n_sites,)): half (rounded up) among the accessible ones."""
    inside = np.nonzero(hom & accessible)[0]
    pick_in = rng.choice(inside, min(len(inside), (n + 1) // 2), replace=False)
    rest = np.setdiff1d(np.nonzero(hom)[0], pick_in)
    pick_out = rng.choice(rest, min(len(rest), n - len(pick_in)), replace=False)
    return np.sort(np.concatenate([pick_in, pick_out]).astype(np.int64))


def _errors_table(v: Variants, e: np.ndarray, rows: list) -> pd.DataFrame:
    cols = ["donor", "site", "kind", "true_gt", "vcf_gt"]
    t = pd.DataFrame(rows, columns=cols).astype({"site": np.int64})
    s = v.sites.iloc[t.site.to_numpy()]
    for c in ("variant_id", "chrom", "pos", "ref", "alt"):
        t[c] = s[c].to_numpy()
    t["pos"] = t["pos"].astype(np.int64)
    t["in_element"] = e[t.site.to_numpy()] >= 0
    return t[["donor", "variant_id", "chrom", "pos", "ref", "alt", "true_gt", "vcf_gt", "kind", "in_element", "site"]]


def vcf_alleles(v: Variants, errors: pd.DataFrame, donors) -> np.ndarray:
    """The donors' alleles as the VCF states them (``errors`` applied).

    Returns bool (n_donors, 2, n_sites), True = ALT."""
    out = v.alleles.copy()
    di = {dn: k for k, dn in enumerate(donors)}
    for dn, i, gt in zip(errors.donor, errors.site, errors.vcf_gt):
        out[di[dn], :, i] = [gt[0] == "1", gt[2] == "1"]
    return out


# --------------------------------------------------------------------------- biology

@dataclass
class DonorBiology:
    """Donor-level variation of accessibility.

    Attributes
    ----------
    factors : float (n_donors, n_elements) multiplicative accessibility factor (mean 1)
    x_first_hap_share : float (n_donors,) share of cells whose active X is the first
        haplotype (GT's left allele); NaN without X-inactivation
    """

    factors: np.ndarray
    x_first_hap_share: np.ndarray

    @property
    def xci(self) -> bool:
        return bool(np.isfinite(self.x_first_hap_share).any())


def donor_biology(rng, g: Genome, p: Preset, n_donors: int) -> DonorBiology:
    """Draw the log-normal factors and the X-inactivation skews."""
    n_e = len(g.elements)
    sd = float(p.donor_accessibility_sd)
    f = np.exp(rng.normal(-sd * sd / 2, sd, (n_donors, n_e))) if sd > 0 else np.ones((n_donors, n_e))
    share = np.full(n_donors, np.nan)
    if p.xci_skew > 0 and X_CHROM in g.chroms:
        mag = rng.uniform(p.xci_skew / 2, p.xci_skew, n_donors)
        share = np.clip(0.5 + np.where(rng.random(n_donors) < 0.5, mag, -mag), 0.0, 1.0)
    return DonorBiology(f, share)


def apply_biology(acc_hap: np.ndarray, g: Genome, bio: DonorBiology) -> np.ndarray:
    """Accessibility with the donor factors and, on chrX, each haplotype scaled by
    twice the share of cells in which it is the active X.

    acc_hap : float (n_donors, 2, n_elements, n_cell_types). Returns the same shape."""
    out = acc_hap * bio.factors[:, None, :, None]
    if bio.xci:
        onx = (g.elements.chrom == X_CHROM).to_numpy()
        s = bio.x_first_hap_share[:, None, None]
        out[:, 0, onx, :] *= 2 * s
        out[:, 1, onx, :] *= 2 * (1 - s)
    return out


def overdisperse(rng, acc_dk: np.ndarray, rho: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One sample's element accessibility with each element's first-haplotype share
    drawn from Beta(m κ, (1 - m) κ), κ = 1/ρ - 1 (mean m, variance ρ m (1 - m));
    the element's total is kept.

    Parameters
    ----------
    acc_dk : float (2, n_elements)

    Returns
    -------
    acc : float (2, n_elements) ; planted m : (n_elements,) ; drawn share : (n_elements,)
    """
    t = acc_dk.sum(axis=0)
    m = np.divide(acc_dk[0], t, out=np.full(t.shape, 0.5), where=t > 0)
    if rho <= 0:
        return acc_dk, m, m.copy()
    kappa = 1.0 / rho - 1.0
    mm = np.clip(m, 1e-6, 1 - 1e-6)
    q = rng.beta(mm * kappa, (1 - mm) * kappa)
    q = np.where((m <= 0) | (m >= 1), m, q)
    return np.stack([t * q, t * (1 - q)]), m, q


# --------------------------------------------------------------------------- artefact regions

@dataclass
class Artefacts:
    """Collapsed-repeat regions and the sequence their absent copies carry.

    Attributes
    ----------
    regions : DataFrame region, chrom, start, end, gstart, gend, anchor (variant_id), anchor_in_element
    copy_seq : uint8 (genome total,) the reference with each copy's alleles at sites in its region
    copy_alt : bool (n_sites,) True where a region's copy carries the ALT base
    """

    regions: pd.DataFrame
    copy_seq: np.ndarray
    copy_alt: np.ndarray

    def site_mask(self, gpos: np.ndarray) -> np.ndarray:
        """bool (n,): positions inside a region."""
        out = np.zeros(len(gpos), bool)
        for s, e in zip(self.regions.gstart, self.regions.gend):
            out |= (gpos >= s) & (gpos < e)
        return out


def artefact_regions(rng, g: Genome, v: Variants, p: Preset) -> Artefacts:
    """``p.artefact_regions`` autosomal regions of ``p.artefact_len`` bp, each around a
    het SNV: even-numbered ones inside an element, odd ones in an element's flank;
    clear of gaps, duplications, causal elements and each other."""
    s = v.sites
    gpos = s.gpos.to_numpy()
    e = _element_of(g, gpos)
    ok = (~s.is_indel & ~s.in_duplication & ~s.causal & (s.chrom != X_CHROM)).to_numpy()
    ok = ok & (v.alleles[:, 0] != v.alleles[:, 1]).any(axis=0)
    near = _near_element(g, gpos)
    pools = [rng.permutation(np.nonzero(ok & (e >= 0))[0]), rng.permutation(np.nonzero(ok & (e < 0) & near)[0])]
    blocked = _blocked(g)
    rows: list = []
    for r in range(int(p.artefact_regions)):
        for i in pools[r % 2]:
            ln = int(rng.integers(*p.artefact_len))
            start = int(gpos[i]) - int(rng.uniform(0.2, 0.8) * ln)
            if _free(g, start, start + ln, blocked):
                blocked.append((start - ARTEFACT_PAD, start + ln + ARTEFACT_PAD))
                rows.append((start, start + ln, s.variant_id.iat[i], bool(e[i] >= 0)))
                break
    return _artefacts(rng, g, v, rows)


def _near_element(g: Genome, gpos: np.ndarray, lo: int = 100, hi: int = 1200) -> np.ndarray:
    """bool (n,): within ``lo``..``hi`` bp of the nearest element's edge (on its chromosome)."""
    el = g.elements.sort_values("gstart")
    gs, ge = el.gstart.to_numpy(), el.gend.to_numpy()
    k = np.clip(np.searchsorted(gs, gpos), 1, len(gs) - 1)
    dist = np.minimum(np.abs(gpos - ge[k - 1]), np.abs(gs[k] - gpos))
    return (dist >= lo) & (dist <= hi)


def _blocked(g: Genome) -> list:
    """Global intervals an artefact region must stay clear of."""
    out = [(d.source_gstart - ARTEFACT_PAD, d.source_gstart + d.length + ARTEFACT_PAD) for d in g.dups.itertuples()]
    out += [(d.target_gstart - ARTEFACT_PAD, d.target_gstart + d.length + ARTEFACT_PAD) for d in g.dups.itertuples()]
    causal = g.elements[g.elements.element.isin(g.causal.element)]
    out += [(s - ARTEFACT_PAD, e + ARTEFACT_PAD) for s, e in zip(causal.gstart, causal.gend)]
    return out


def _free(g: Genome, s: int, e: int, blocked: list) -> bool:
    ci, pos = g.to_local(np.array([s]))
    ci, pos = int(ci[0]), int(pos[0])
    if pos < 500 or pos + (e - s) > g.lengths[ci] - 500 or (g.seq[s:e] == 4).any():
        return False
    return not any(s < be and bs < e for bs, be in blocked)


def _artefacts(rng, g: Genome, v: Variants, rows: list) -> Artefacts:
    reg = pd.DataFrame(rows, columns=["gstart", "gend", "anchor", "anchor_in_element"]).astype(
        {"gstart": np.int64, "gend": np.int64})
    reg = reg.sort_values("gstart").reset_index(drop=True)
    ci, pos = g.to_local(reg.gstart.to_numpy())
    reg.insert(0, "region", [f"artefact{k + 1}" for k in range(len(reg))])
    reg.insert(1, "chrom", np.array(g.chroms, dtype=object)[ci])
    reg.insert(2, "start", pos.astype(np.int64))
    reg.insert(3, "end", (pos + reg.gend - reg.gstart).astype(np.int64))
    art = Artefacts(reg, g.seq, np.zeros(len(v.sites), bool))
    gpos = v.sites.gpos.to_numpy()
    snv = art.site_mask(gpos) & ~v.sites.is_indel.to_numpy()
    art.copy_alt = snv & (rng.random(len(gpos)) < 0.5)  # each copy is fixed for one allele (indels: REF)
    if art.copy_alt.any():
        art.copy_seq = g.seq.copy()
        alt = v.sites.alt.to_numpy()[art.copy_alt].astype(str)
        art.copy_seq[gpos[art.copy_alt]] = np.searchsorted(BASES[:4], alt)
    return art


def artefact_fragments(rng, art: Artefacts, depth: float, read_len: int,
                       lens: np.ndarray, pl: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One sample's fragments from the copies, each lying wholly inside its region:
    Poisson(``depth`` × region length / E[bases read per fragment]) per region, so
    the mean read depth over a region is about ``depth``.

    Returns global starts (n,) and lengths (n,), int64."""
    starts, lengths = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    for s, e in zip(art.regions.gstart, art.regions.gend):
        fit = lens <= e - s
        p = pl[fit] / pl[fit].sum()
        per_fragment = float((np.minimum(lens[fit], 2 * read_len) * p).sum())
        n = int(rng.poisson(depth * (e - s) / per_fragment))
        L = rng.choice(lens[fit], size=n, p=p).astype(np.int64)
        starts.append(s + np.floor(rng.random(n) * (e - s - L + 1)).astype(np.int64))
        lengths.append(L)
    return np.concatenate(starts), np.concatenate(lengths)


def write_region_beds(art: Artefacts, g: Genome, margin: int, truth_bed, blacklist_bed) -> None:
    """``truth_bed``: the regions (BED4); ``blacklist_bed``: each widened by ``margin``
    bp (clipped to its chromosome), in genome order."""
    from ..io import write_text

    reg = art.regions
    order = reg.assign(ci=reg.chrom.map({c: i for i, c in enumerate(g.chroms)})).sort_values(["ci", "start"])
    clen = dict(zip(g.chroms, g.lengths))
    truth = [f"{c}\t{s}\t{e}\t{n}" for c, s, e, n in zip(order.chrom, order.start, order.end, order.region)]
    black = [f"{c}\t{max(0, s - margin)}\t{min(int(clen[c]), e + margin)}\t{n}"
             for c, s, e, n in zip(order.chrom, order.start, order.end, order.region)]
    write_text("".join(t + "\n" for t in truth), truth_bed)
    write_text("".join(b + "\n" for b in black), blacklist_bed)
