"""Genotype concordance per sample: do its reads show both alleles at its donor's het sites?

At a true het site covered by enough reads both alleles show (all but a few
percent of sites, even under strong imbalance). When a sample's reads come from
another individual (swapped donor labels, a wrong BAM path) about half of the
labelled donor's het sites are homozygous in the reads and show one allele only.
The check runs on the counts of each sample before any counts table is written,
so a mix-up stops the run at ``count_alleles``, naming the sample and, when the
reads fit another donor's genotypes, that donor.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pandas as pd

from .errors import InputError
from .log import get_logger

log = get_logger("concordance")

PARAMS = {
    "concordance_min_reads": 8,            # REF+ALT reads for a het site to count as covered
    "concordance_min_both_alleles": 0.7,   # least share of covered het sites showing both alleles
    "concordance_min_sites": 10,           # fewer covered sites: too few to judge (warned, not failed)
}


def both_allele_share(counts: pd.DataFrame, min_reads: int) -> tuple[float | None, int]:
    """Share of covered het sites (REF+ALT ≥ ``min_reads``) with ≥ 1 REF and ≥ 1 ALT read.

    Returns
    -------
    share : float or None
        None when no site is covered.
    n : int
        Covered sites.
    """
    covered = (counts["ref_count"] + counts["alt_count"]) >= min_reads
    n = int(covered.sum())
    if n == 0:
        return None, 0
    both = (counts["ref_count"] > 0) & (counts["alt_count"] > 0)
    return round(float(both[covered].mean()), 4), n


def check_sample(counts: pd.DataFrame, sample: str, donor: str, params: dict, file: str | Path,
                 recount: Callable[[str], pd.DataFrame] | None = None,
                 other_donors: list[str] = ()) -> dict:
    """Check one sample's concordance with its donor; raise an :class:`InputError` when it fails.

    Parameters
    ----------
    counts : DataFrame
        The sample's counts at its donor's het sites (``ref_count``, ``alt_count``).
    sample, donor : str
    params : dict
        ``concordance_*`` params (defaults from :data:`PARAMS` where absent).
    file : path
        The file that labels the sample (samplesheet, or the BAM in a per-sample task).
    recount : callable, optional
        ``recount(other_donor) -> counts`` of this sample's reads at another donor's het
        sites; used only on failure, to name the donor the reads fit.
    other_donors : list of str
        Donors to try with ``recount``.

    Returns
    -------
    dict
        ``both_alleles_share`` (None when too few sites) and ``concordance_sites``.
    """
    p = {**PARAMS, **{k: v for k, v in params.items() if k in PARAMS}}
    share, n = both_allele_share(counts, p["concordance_min_reads"])
    out = {"both_alleles_share": share, "concordance_sites": n}
    if n < p["concordance_min_sites"]:
        log.warning("%s: only %d het sites of donor %s have >= %d reads: too few to check the genotypes",
                    sample, n, donor, p["concordance_min_reads"])
        return out
    if share >= p["concordance_min_both_alleles"]:
        return out
    fit = _best_other(recount, other_donors, p) if recount else None
    likely = (f"its reads fit donor {fit[0]}'s genotypes ({fit[1]:.0%} show both alleles): the donor label "
              f"is likely swapped ({donor} ↔ {fit[0]})" if fit else
              "its reads fit no other donor either: the BAM is likely another individual's")
    raise InputError(file, f"sample {sample} (donor {donor}): only {share:.0%} of {n} het sites of {donor} with "
                     f">= {p['concordance_min_reads']} reads show both alleles (expected >= "
                     f"{p['concordance_min_both_alleles']:.0%}); {likely}",
                     "fix the sample's donor (or bam) in the samplesheet; set concordance_min_both_alleles: 0 "
                     "to run anyway")


def _best_other(recount, donors, p) -> tuple[str, float] | None:
    """The other donor whose het sites the reads fit best, if any passes the threshold."""
    best = None
    for d in donors:
        share, n = both_allele_share(recount(d), p["concordance_min_reads"])
        if share is not None and n >= p["concordance_min_sites"] and share >= p["concordance_min_both_alleles"]:
            if best is None or share > best[1]:
                best = (d, share)
    return best
