"""The planted truth (elements, per-SNP expected allelic ratios) and the
observed REF fractions that show it survives into the aligned reads."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .donors import Variants
from .fragments import background_coverage, coverage_kernel
from .genome import X_CHROM, Genome

KERNEL_HALF = 1200


def elements_table(g: Genome, acc_ref: np.ndarray, cell_types, donor_factors: dict | None = None) -> pd.DataFrame:
    """element, chrom, start, end, class, specific_to, acc_<cell_type> (reference sequence),
    donor_factor_<donor> (accessibility factor of that donor; from ``donor_factors``,
    donor → float (n_elements,))."""
    el = g.elements
    out = el[["element", "chrom", "start", "end", "class", "specific_to"]].copy()
    out["n_motif_sites"] = el.element.map(g.instances.element.value_counts()).fillna(0).astype(int).to_numpy()
    for k, ct in enumerate(cell_types):
        out[f"acc_{ct}"] = acc_ref[:, k]
    for dn, f in (donor_factors or {}).items():
        out[f"donor_factor_{dn}"] = f
    return out


def expected_ref_fraction(g: Genome, v: Variants, acc_hap: np.ndarray, n_el: int, n_bg: int,
                          read_len: int) -> np.ndarray:
    """Expected REF share of fragments over each site, under the generative model.

    Coverage on haplotype h at x is n_el * Σ_e acc[h, e] K(x - c_e) / Σ acc
    + (n_bg / 2) E[min(L, 2r)] / G (uniform background), K the read-coverage
    kernel of an element fragment.

    Returns
    -------
    float array (n_donors, n_sites, n_cell_types) (NaN where the donor is not het)
    """
    kern = coverage_kernel(read_len, KERNEL_HALF)
    centre = g.elements.center.to_numpy()
    e_chrom = g.elements.chrom.to_numpy()
    x = v.sites.gpos.to_numpy()
    chrom = v.sites.chrom.to_numpy()
    near = np.searchsorted(centre, x)
    g_eff = float((g.seq != 4).sum())
    bg = 0.5 * n_bg * background_coverage(read_len) / g_eff
    n_d, _, n_e, n_k = acc_hap.shape
    out = np.full((n_d, len(x), n_k), np.nan)
    for d in range(n_d):
        cov = np.full((2, len(x), n_k), bg)
        total = acc_hap[d].sum(axis=(0, 1))  # (n_k,)
        for j in range(-4, 4):
            e = near + j
            ok = (e >= 0) & (e < n_e)
            ec = np.clip(e, 0, n_e - 1)
            off = x - centre[ec]
            ok &= (np.abs(off) <= KERNEL_HALF) & (e_chrom[ec] == chrom)
            w = np.where(ok, kern[np.clip(off + KERNEL_HALF, 0, 2 * KERNEL_HALF)], 0.0)
            cov += n_el * w[None, :, None] * acc_hap[d][:, ec, :] / total
        a = v.alleles[d]  # (2, n_sites)
        het = a[0] != a[1]
        ref_hap = np.where(a[0], 1, 0)
        idx = np.arange(len(x))
        ref_cov = cov[ref_hap, idx]
        alt_cov = cov[1 - ref_hap, idx]
        frac = ref_cov / (ref_cov + alt_cov)
        frac[~het] = np.nan
        out[d] = frac
    return out


def snps_table(g: Genome, v: Variants, erf: np.ndarray, site_eff: pd.DataFrame, donors, cell_types,
               faults: dict | None = None) -> pd.DataFrame:
    """Long table: one row per donor × true het site × cell type (see module docs of simulate).

    ``faults`` (optional): ``lost`` set of (donor, site) written as hom in the VCF
    (column ``genotype_error``), ``in_artefact`` bool (n_sites,) (column
    ``in_artefact``), ``xci`` bool: chrX rows get ``x_inactivation`` True, effect
    "x_inactivation" and their expected REF fraction unrounded.
    """
    faults = faults or {}
    lost = faults.get("lost", set())
    in_art = faults.get("in_artefact", np.zeros(len(v.sites), bool))
    on_x = (v.sites.chrom.to_numpy() == X_CHROM) & bool(faults.get("xci", False))
    s = v.sites
    el = g.elements
    gpos = s.gpos.to_numpy()
    k = np.searchsorted(el.gstart.to_numpy(), gpos, side="right") - 1
    inside = (k >= 0) & (gpos < el.gend.to_numpy()[np.clip(k, 0, None)])
    element = np.where(inside, el.element.to_numpy()[np.clip(k, 0, None)], None)
    eclass = np.where(inside, el["class"].to_numpy()[np.clip(k, 0, None)], None)
    touches = np.zeros(len(s), bool)
    touches[site_eff.site.to_numpy()] = site_eff.touches_motif.to_numpy()
    frames = []
    for d, donor in enumerate(donors):
        het = np.nonzero(v.alleles[d, 0] != v.alleles[d, 1])[0]
        for c, ct in enumerate(cell_types):
            f = erf[d, het, c]
            effect = np.where(f > 0.5 + 1e-9, "ref_favouring", np.where(f < 0.5 - 1e-9, "alt_favouring", "none"))
            effect = np.where(on_x[het], "x_inactivation", effect)
            frames.append(pd.DataFrame({
                "donor": donor, "variant_id": s.variant_id.to_numpy()[het], "chrom": s.chrom.to_numpy()[het],
                "pos": s.pos.to_numpy()[het].astype(np.int64), "ref": s.ref.to_numpy()[het],
                "alt": s.alt.to_numpy()[het], "is_indel": s.is_indel.to_numpy()[het], "cell_type": ct,
                "expected_ref_fraction": np.where(effect == "none", 0.5, f), "effect": effect,
                "touches_motif": touches[het], "in_duplication": s.in_duplication.to_numpy()[het],
                "paralog_carries_alt": s.psv.to_numpy()[het], "planted_causal": s.causal.to_numpy()[het],
                "element": element[het], "element_class": eclass[het],
                "haplotype_phase": np.where(v.alleles[d, 0, het], "1|0", "0|1"),
                "genotype_error": np.array([(donor, int(i)) in lost for i in het], bool),
                "x_inactivation": on_x[het], "in_artefact": in_art[het],
            }))
    out = pd.concat(frames, ignore_index=True)
    rank = {c: i for i, c in enumerate(g.chroms)}
    return out.sort_values(["donor", "chrom", "pos", "cell_type"], kind="stable",
                           key=lambda col: col.map(rank) if col.name == "chrom" else col).reset_index(drop=True)


def observed_ref_fraction(bam_path, sites: pd.DataFrame, min_mapq: int) -> tuple[int, int]:
    """Pooled REF and ALT read counts at SNVs (``chrom, pos, ref, alt``) in one BAM,
    primary, properly paired reads with MAPQ ≥ ``min_mapq`` (each read once)."""
    return observed_counts(bam_path, {"sites": (sites, min_mapq)})["sites"]


def observed_counts(bam_path, strata: dict) -> dict:
    """:func:`observed_ref_fraction` of several site sets at once: ``strata`` = {name: (sites,
    min MAPQ)} → {name: (REF reads, ALT reads)}.

    One ``count_coverage`` per contig and MAPQ threshold over the span of the sites, read at each
    set's sites: the counts of one query per site (``tests/test_simulate.py``) from one pass over
    a contig's reads instead of an index query per site and set (the demo's truth diagnostics:
    8 sets of up to ~3,800 SNVs per BAM)."""
    import pysam

    idx = {b: i for i, b in enumerate("ACGT")}
    out = {name: (0, 0) for name in strata}
    with pysam.AlignmentFile(str(bam_path)) as bam:
        for mapq in sorted({m for _, m in strata.values()}):
            def keep(r, mapq=mapq) -> bool:
                return (r.mapping_quality >= mapq and r.is_proper_pair and not r.is_secondary
                        and not r.is_supplementary)

            sets = {name: s for name, (s, m) in strata.items() if m == mapq and len(s)}
            if not sets:
                continue
            spans = pd.concat([s[["chrom", "pos"]] for s in sets.values()]).groupby("chrom", sort=False)["pos"]
            for chrom, lo, hi in zip(spans.min().index, spans.min().to_numpy(), spans.max().to_numpy()):
                cov = np.asarray(bam.count_coverage(chrom, int(lo), int(hi) + 1, quality_threshold=0,
                                                    read_callback=keep))
                for name, s in sets.items():
                    g = s[s["chrom"] == chrom]
                    if g.empty:
                        continue
                    at = g["pos"].to_numpy(np.int64) - int(lo)
                    ref_n = int(cov[g["ref"].map(idx).to_numpy(np.int64), at].sum())
                    alt_n = int(cov[g["alt"].map(idx).to_numpy(np.int64), at].sum())
                    out[name] = (out[name][0] + ref_n, out[name][1] + alt_n)
    return out
