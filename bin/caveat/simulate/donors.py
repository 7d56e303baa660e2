"""Donors: population variant sites, phased genotypes, paralogous sequence
variants in duplications, per-haplotype genomes, and the multi-sample VCF."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .genome import X_CHROM, Genome
from .presets import Preset

BASES = np.array(list("ACGTN"))
TRANSITION = np.array([2, 3, 0, 1])  # A<->G, C<->T
MIN_SPACING = 12


@dataclass
class Variants:
    """Polymorphic sites and the donors' phased alleles.

    Attributes
    ----------
    sites : DataFrame gpos, chrom, pos, ref, alt, is_indel, af, causal, psv, in_duplication, variant_id
    alleles : bool array (n_donors, 2, n_sites), True = ALT on that haplotype
    """

    sites: pd.DataFrame
    alleles: np.ndarray


def _site_positions(rng, g: Genome, p: Preset, lo: int, hi: int) -> np.ndarray:
    """~``site_rate``/bp usable positions in global [lo, hi)."""
    n = hi - lo
    return _usable(g, lo + np.unique(rng.integers(0, n, rng.poisson(p.site_rate * n))))


def _extra_dup_positions(rng, g: Genome, p: Preset, taken: np.ndarray) -> np.ndarray:
    """``dup_site_rate_factor - 1`` times ``site_rate`` more sites in each duplication
    source, at least ``MIN_SPACING`` from the ``taken`` sites and from each other."""
    n = rng.poisson((p.dup_site_rate_factor - 1) * p.site_rate * g.dups.length.to_numpy())
    pos = np.repeat(g.dups.source_gstart.to_numpy(), n) + rng.integers(0, np.repeat(g.dups.length.to_numpy(), n))
    pos = _usable(g, np.unique(pos))
    return pos[_nearest_distance(pos, taken) > MIN_SPACING]


def _nearest_distance(pos: np.ndarray, sorted_pos: np.ndarray) -> np.ndarray:
    """Distance from each of ``pos`` to the nearest of ``sorted_pos`` (inf when empty)."""
    if not len(sorted_pos):
        return np.full(len(pos), np.inf)
    i = np.searchsorted(sorted_pos, pos)
    return np.minimum(np.abs(pos - sorted_pos[np.clip(i - 1, 0, None)]),
                      np.abs(sorted_pos[np.clip(i, None, len(sorted_pos) - 1)] - pos))


def _usable(g: Genome, pos: np.ndarray) -> np.ndarray:
    """Sorted candidate positions minus those in gaps, paralog copies, causal
    elements, chromosome ends or within ``MIN_SPACING`` of a causal or earlier site."""
    total = len(g.seq)
    bad = np.zeros(total + 1, dtype=bool)
    bad[:-1] = g.seq == 4
    for d in g.dups.itertuples():  # no polymorphism inside paralog copies
        bad[d.target_gstart - 20:d.target_gstart + d.length + 20] = True
    # an element with a planted causal site carries no other polymorphism, so its
    # allelic imbalance is the causal site's own (not hitch-hiking linked SNPs)
    causal_el = g.elements[g.elements.element.isin(g.causal.element)]
    for s, e in zip(causal_el.gstart, causal_el.gend):
        bad[s:e] = True
    for off, ln in zip(g.offsets, g.lengths):  # keep away from chromosome ends
        bad[off:off + 20] = True
        bad[off + ln - 20:off + ln] = True
    pos = pos[~bad[pos] & ~bad[np.minimum(pos + 8, total)]]
    pos = pos[_nearest_distance(pos, np.sort(g.causal.gpos.to_numpy())) > MIN_SPACING]
    keep = np.concatenate([[True], np.diff(pos) > MIN_SPACING]) if len(pos) else np.zeros(0, bool)
    return pos[keep]


def _alleles(rng, g: Genome, pos: np.ndarray, p: Preset) -> pd.DataFrame:
    n = len(pos)
    ref_code = g.seq[pos]
    is_indel = rng.random(n) < p.indel_fraction
    ti = rng.random(n) < 2 / 3
    tv = (ref_code + rng.choice([1, 3], n)) % 4
    tv = np.where(tv == TRANSITION[ref_code], (tv + 2) % 4, tv)
    alt_code = np.where(ti, TRANSITION[ref_code], tv)
    refs = BASES[ref_code].astype(object)
    alts = BASES[alt_code].astype(object)
    for i in np.nonzero(is_indel)[0]:
        k = int(rng.integers(1, 7))
        if rng.random() < 0.5:  # deletion of k bases after the anchor
            refs[i] = "".join(BASES[g.seq[pos[i]:pos[i] + k + 1]])
            alts[i] = BASES[ref_code[i]]
        else:
            refs[i] = BASES[ref_code[i]]
            alts[i] = refs[i] + "".join(BASES[rng.integers(0, 4, k)])
    return pd.DataFrame({"gpos": pos, "ref": refs, "alt": alts, "is_indel": is_indel})


def make_variants(rng: np.random.Generator, g: Genome, p: Preset) -> Variants:
    """Random sites (~``site_rate``/bp) plus the planted causal sites, with
    allele frequencies and phased haplotypes for each donor; paralogous copies
    carry the ALT base at ``psv_fraction`` of the SNVs in their source.

    With ``dup_site_rate_factor`` > 1, duplication sources get extra sites drawn
    from a generator of their own after every other draw, so the other sites
    and their genotypes are the same as without them (reads are not: the extra
    sites change haplotype sequences, hence accessibility and the read draws).
    chrX's sites likewise come from a generator of their own, drawn last."""
    c = g.causal
    planted = pd.DataFrame({"gpos": c.gpos, "ref": BASES[c.ref.to_numpy()].astype(object),
                            "alt": BASES[c.alt.to_numpy()].astype(object), "is_indel": False,
                            "af": None, "causal": True})
    auto_end = int(g.offsets[g.chroms.index(X_CHROM)]) if X_CHROM in g.chroms else len(g.seq)
    on_x = planted.gpos.to_numpy() >= auto_end
    v = Variants(*_genotyped(rng, g, p, _site_positions(rng, g, p, 0, auto_end), planted[~on_x]))
    planted_x = planted[on_x] if on_x.any() else None
    if p.dup_site_rate_factor > 1 and len(g.dups):
        extra_rng = np.random.default_rng(rng.integers(2**63))
        extra = _extra_dup_positions(extra_rng, g, p, np.sort(v.sites.gpos.to_numpy()))
        v = _merged(v, *_genotyped(extra_rng, g, p, extra, None))
    if auto_end < len(g.seq):
        x_rng = np.random.default_rng(rng.integers(2**63))
        v = _merged(v, *_genotyped(x_rng, g, p, _site_positions(x_rng, g, p, auto_end, len(g.seq)), planted_x))
    return v


def _merged(v: Variants, more: pd.DataFrame, more_alleles: np.ndarray) -> Variants:
    """``v`` plus further sites, in genome order."""
    sites = pd.concat([v.sites, more], ignore_index=True)
    alleles = np.concatenate([v.alleles, more_alleles], axis=2)
    order = np.argsort(sites.gpos.to_numpy(), kind="stable")
    return Variants(sites.iloc[order].reset_index(drop=True), alleles[:, :, order])


def _genotyped(rng, g: Genome, p: Preset, pos: np.ndarray, planted: pd.DataFrame | None):
    """Alleles, frequencies and phased donor genotypes of the sites at ``pos``
    (plus the ``planted`` causal sites); PSVs written into the paralogs.

    Returns
    -------
    sites : DataFrame, sorted by gpos, polymorphic in the donors only
    alleles : bool array (n_donors, 2, n_sites)
    """
    sites = _alleles(rng, g, pos, p)
    sites["af"] = rng.uniform(0.08, 0.5, len(sites))
    sites["causal"] = False
    if planted is not None:
        planted = planted.assign(af=rng.uniform(0.3, 0.5, len(planted)))
        sites = pd.concat([sites, planted], ignore_index=True).sort_values("gpos", kind="stable")
        sites = sites.reset_index(drop=True)
    alleles = rng.random((len(p.donors), 2, len(sites))) < sites.af.to_numpy()
    poly = alleles.any(axis=(0, 1))
    sites, alleles = sites[poly].reset_index(drop=True), alleles[:, :, poly]
    ci, lpos = g.to_local(sites.gpos.to_numpy())
    sites.insert(1, "chrom", np.array(g.chroms)[ci])
    sites.insert(2, "pos", lpos)
    sites["variant_id"] = [f"{c}:{q + 1}:{r}:{a}" for c, q, r, a in zip(sites.chrom, sites.pos, sites.ref, sites.alt)]
    _paralogous_variants(rng, g, sites, p)
    return sites, alleles


def _paralogous_variants(rng, g: Genome, sites: pd.DataFrame, p: Preset) -> None:
    """Mark SNVs in duplication sources; write ALT into the paralog at some (PSVs)."""
    sites["in_duplication"] = False
    sites["psv"] = False
    gpos = sites.gpos.to_numpy()
    for d in g.dups.itertuples():
        lo, hi = np.searchsorted(gpos, [d.source_gstart, d.source_gstart + d.length])
        idx = np.arange(lo, hi)
        sites.loc[idx, "in_duplication"] = True
        snv = idx[~sites.is_indel.to_numpy()[idx]]
        psv = snv[rng.random(len(snv)) < p.psv_fraction]
        tpos = d.target_gstart + (gpos[psv] - d.source_gstart)
        g.seq[tpos] = np.searchsorted(BASES[:4], sites.alt.to_numpy()[psv].astype(str))
        sites.loc[psv, "psv"] = True


def haplotype(g: Genome, v: Variants, donor: int, hap: int) -> tuple[np.ndarray, np.ndarray]:
    """One haplotype's genome and its map from reference coordinates.

    Returns
    -------
    seq : uint8 array (hap_total,)
    shift : callable(global ref positions) -> int array, hap position = ref + shift
    """
    on = np.nonzero(v.alleles[donor, hap])[0]
    s = v.sites.iloc[on]
    gpos = s.gpos.to_numpy()
    ref_len = s.ref.str.len().to_numpy()
    alt_codes = [np.frombuffer(a.encode(), np.uint8) for a in s.alt]
    lut = np.full(256, 4, np.uint8)
    lut[np.frombuffer(b"ACGT", np.uint8)] = np.arange(4, dtype=np.uint8)
    pieces, prev = [], 0
    for q, rl, a in zip(gpos, ref_len, alt_codes):
        pieces.append(g.seq[prev:q])
        pieces.append(lut[a])
        prev = q + rl
    pieces.append(g.seq[prev:])
    seq = np.concatenate(pieces)
    ends = gpos + ref_len
    cum = np.cumsum(np.array([len(a) for a in alt_codes], dtype=np.int64) - ref_len)

    def shift(x: np.ndarray) -> np.ndarray:
        k = np.searchsorted(ends, x, side="right") - 1
        return np.where(k >= 0, cum[np.clip(k, 0, None)] if len(cum) else 0, 0)

    return seq, shift


def write_vcf(rng, g: Genome, v: Variants, donors, path) -> int:
    """Multi-sample phased VCF (bgzipped + tabix) with a few records that a
    careful reader must skip: multi-allelic, non-PASS, missing genotype."""
    import pysam

    s = v.sites
    gt = np.where(v.alleles, "1", "0")
    rows = [(int(q), f"{c}\t{pos + 1}\t.\t{r}\t{a}\t50\tPASS\tAF={af:.3f}\tGT\t"
             + "\t".join(f"{gt[d, 0, i]}|{gt[d, 1, i]}" for d in range(len(donors))))
            for i, (q, c, pos, r, a, af) in enumerate(zip(s.gpos, s.chrom, s.pos, s.ref, s.alt, s.af))]
    rows += _decoys(rng, g, s.gpos.to_numpy(), len(donors))
    rows.sort(key=lambda t: t[0])
    head = ["##fileformat=VCFv4.2", "##source=caveat-simulate",
            '##FILTER=<ID=PASS,Description="All filters passed">',
            '##FILTER=<ID=LowQual,Description="Low genotype quality">']
    head += [f"##contig=<ID={c},length={ln}>" for c, ln in zip(g.chroms, g.lengths)]
    head += ['##INFO=<ID=AF,Number=A,Type=Float,Description="Population ALT allele frequency">',
             '##FORMAT=<ID=GT,Number=1,Type=String,Description="Phased genotype">',
             "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\t" + "\t".join(donors)]
    txt = str(path)[:-3]
    with open(txt, "w") as fh:
        fh.write("\n".join(head + [r for _, r in rows]) + "\n")
    pysam.tabix_compress(txt, str(path), force=True)
    pysam.tabix_index(str(path), preset="vcf", force=True)
    import os

    os.remove(txt)
    return len(rows)


def _decoys(rng, g: Genome, taken: np.ndarray, n_donors: int) -> list:
    """Two each of: multi-allelic SNV, LowQual het SNV, missing-genotype SNV."""
    out = []
    kinds = ["multi", "multi", "lowqual", "lowqual", "missing", "missing"]
    while kinds:
        q = int(rng.integers(0, len(g.seq)))
        ci, pos = g.to_local(np.array([q]))
        ci, pos = int(ci[0]), int(pos[0])
        if g.seq[q] == 4 or pos < 50 or pos > g.lengths[ci] - 50:
            continue
        k = np.searchsorted(taken, q)
        if any(abs(int(taken[j]) - q) < 30 for j in (k - 1, k) if 0 <= j < len(taken)):
            continue
        kind = kinds.pop()
        ref = BASES[g.seq[q]]
        alts = [b for b in "ACGT" if b != ref]
        c = g.chroms[ci]
        if kind == "multi":
            gts, alt, flt = ["1|2"] + ["0|1"] * (n_donors - 1), f"{alts[0]},{alts[1]}", "PASS"
        elif kind == "lowqual":
            gts, alt, flt = ["0|1"] * n_donors, alts[0], "LowQual"
        else:
            gts, alt, flt = [".|."] + ["0|0"] * (n_donors - 1), alts[0], "PASS"
        out.append((q, f"{c}\t{pos + 1}\t.\t{ref}\t{alt}\t50\t{flt}\t.\tGT\t" + "\t".join(gts)))
        taken = np.sort(np.append(taken, q))
    return out
