"""REF and ALT sequence windows around variants, for SNVs, MNVs and indels.

A variant ``chrom:pos1:ref:alt`` (1-based ``pos1``, VCF alleles with their
anchor base) is scored in the window ``[p - centre, p - centre + seq_len)``
(0-based, ``p = pos1 - 1``), so the variant's first base sits at index
``centre`` (671 of 1344 by default). Windows are cut ``max_shift`` bases wider
on each side so that shifted copies (−1, 0, +1) can be cropped later
(:func:`caveat.onehot.shift_crop`).

The ALT rule (stated once, used everywhere)
-------------------------------------------
* The REF window is always the reference genome over the window.
* SNVs and equal-length MNVs: the REF window with the allele substituted.
* Deletions (``len(alt) < len(ref)``): the left flank is kept, the REF
  allele is replaced by the ALT allele, and the window is filled **from the
  right flank** (further genome to the right), so the variant stays at
  ``centre`` and the ALT window is as long as the REF one (Basenji's
  ``hot1_delete`` pads the right end instead; taking real sequence avoids an
  artificial N run at the edge).
* Insertions (``len(alt) > len(ref)``, ``d`` extra bases): the ALT allele is
  spliced in and the longer sequence is **trimmed symmetrically**,
  ``d // 2`` bases from the left end and ``d - d // 2`` from the right end,
  so the inserted sequence stays centred where the REF allele was.
* A window (with its shift margin and, for deletions, the extra right flank)
  that runs off a contig end is **padded with N** there (counted as
  ``padded``), as Basenji's ``snp_seq1`` does: every tested variant gets a
  score, so no metric loses it. A variant on a contig missing from the genome
  (``unknown_contig``), one whose REF allele disagrees with the genome
  (``ref_mismatch``), a symbolic or non-ACGTN allele (``unsupported_allele``)
  and an insertion too long to keep centred in the window (``too_long``) are
  skipped and counted.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .genome import CODE

SKIP_REASONS = ("unknown_contig", "unsupported_allele", "too_long", "ref_mismatch")
_ALLELE_OK = set("ACGTNacgtn")


def parse_variant_ids(variant_ids) -> pd.DataFrame:
    """Split ``chrom:pos1:ref:alt`` ids into columns.

    Parameters
    ----------
    variant_ids : sequence of str, length N

    Returns
    -------
    pandas.DataFrame
        Columns variant_id, chrom, pos (0-based, int64), ref, alt; N rows.

    Raises
    ------
    ValueError
        Naming the first id that is not ``chrom:pos1:ref:alt``.
    """
    ids = pd.Series(list(variant_ids), dtype=object).astype(str)
    # rsplit so that contig names containing ':' (HLA-style) still parse
    parts = ids.str.rsplit(":", n=3, expand=True)
    if parts.shape[1] != 4 or parts.isna().any(axis=None):
        bad = ids[parts.isna().any(axis=1)].iloc[0] if parts.shape[1] == 4 else ids.iloc[0]
        raise ValueError(f"variant_id {bad!r} is not chrom:pos1:ref:alt")
    pos1 = pd.to_numeric(parts[1], errors="coerce")
    if pos1.isna().any() or (pos1 < 1).any():
        raise ValueError(f"variant_id {ids[pos1.isna() | (pos1 < 1)].iloc[0]!r} has no valid 1-based position")
    return pd.DataFrame({"variant_id": ids.to_numpy(), "chrom": parts[0].to_numpy(),
                         "pos": pos1.astype(np.int64).to_numpy() - 1,
                         "ref": parts[2].to_numpy(), "alt": parts[3].to_numpy()})


@dataclass
class VariantWindows:
    """REF/ALT windows of the variants that could be scored.

    Attributes
    ----------
    variants : pandas.DataFrame
        The kept variants (variant_id, chrom, pos, ref, alt), K rows, in input order.
    ref : numpy.ndarray
        uint8 codes, shape (K, seq_len + 2 * max_shift).
    alt : numpy.ndarray
        uint8 codes, shape (K, seq_len + 2 * max_shift).
    is_snv : numpy.ndarray
        bool, shape (K,): single-base substitutions (the fast ISM path applies).
    skipped : dict
        reason → number of variants skipped (every reason in ``SKIP_REASONS``).
    skipped_ids : dict
        reason → up to 5 example variant ids, for the log.
    """

    variants: pd.DataFrame
    ref: np.ndarray
    alt: np.ndarray
    is_snv: np.ndarray
    seq_len: int
    centre: int
    max_shift: int
    skipped: dict = field(default_factory=dict)
    skipped_ids: dict = field(default_factory=dict)
    padded: int = 0


def _codes(allele: str) -> np.ndarray:
    return CODE[np.frombuffer(allele.encode("ascii"), dtype=np.uint8)]


def padded_slice(contig: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """``contig[lo:hi]`` with N (code 4) wherever the range runs off the contig, shape (hi - lo,)."""
    out = np.full(hi - lo, 4, dtype=np.uint8)
    a, b = max(lo, 0), min(hi, len(contig))
    if b > a:
        out[a - lo:b - lo] = contig[a:b]
    return out


def alt_window(contig: np.ndarray, pos: int, ref: str, alt: str, start: int, width: int,
               centre: int) -> np.ndarray | None:
    """The ALT codes of one window by the module's rule, or None if off the contig.

    Parameters
    ----------
    contig : numpy.ndarray
        uint8 codes of the whole contig, shape (contig_len,).
    pos : int
        0-based position of the variant's first base.
    ref, alt : str
        VCF alleles.
    start : int
        0-based start of the (margin-widened) REF window; ``pos - start == centre``.
    width : int
        Window width (seq_len + 2 * max_shift).
    centre : int
        Index of the variant's first base in the widened window.

    Returns
    -------
    numpy.ndarray or None
        uint8 codes, shape (width,).
    """
    d = len(alt) - len(ref)
    trim_left = d // 2 if d > 0 else 0          # insertions: half the extra bases off the left end
    left = contig[start + trim_left:pos]
    right_len = width - len(left) - len(alt)
    right_start = pos + len(ref)
    if start + trim_left < 0 or right_len < 0 or right_start + right_len > len(contig):
        return None
    return np.concatenate([left, _codes(alt), contig[right_start:right_start + right_len]])


def build_windows(genome: dict[str, np.ndarray], variants: pd.DataFrame, *, seq_len: int = 1344,
                  centre: int | None = None, max_shift: int = 1) -> VariantWindows:
    """Cut REF and ALT windows for every variant.

    Parameters
    ----------
    genome : dict
        contig → uint8 codes (:func:`caveat.genome.read_genome`).
    variants : pandas.DataFrame
        Columns variant_id, chrom, pos (0-based), ref, alt (:func:`parse_variant_ids`).
    seq_len : int
        Model input length.
    centre : int, optional
        Index of the variant's first base in the window (default ``seq_len // 2 - 1``,
        671 for 1344).
    max_shift : int
        Extra bases on each side for shift averaging.

    Returns
    -------
    VariantWindows
    """
    centre = seq_len // 2 - 1 if centre is None else int(centre)
    width = seq_len + 2 * max_shift
    c = centre + max_shift                      # variant index in the widened window
    v = variants.reset_index(drop=True)
    n = len(v)
    reason = np.full(n, "", dtype=object)
    ref_len = v["ref"].str.len().to_numpy()
    alt_len = v["alt"].str.len().to_numpy()
    ok_allele = np.array([set(r) <= _ALLELE_OK and set(a) <= _ALLELE_OK and len(r) > 0 and len(a) > 0
                          for r, a in zip(v["ref"], v["alt"])], dtype=bool)
    reason[~ok_allele] = "unsupported_allele"
    known = v["chrom"].isin(list(genome)).to_numpy()
    reason[(reason == "") & ~known] = "unknown_contig"
    # an insertion must leave its left half inside the left flank once trimmed
    too_long = (alt_len - ref_len) // 2 > c
    reason[(reason == "") & too_long] = "too_long"
    starts = v["pos"].to_numpy(np.int64) - c
    contig_len = np.array([len(genome[ch]) if ch in genome else 0 for ch in v["chrom"]], dtype=np.int64)
    extra_right = np.maximum(ref_len - alt_len, 0)          # deletions need more right flank
    off = (starts < 0) | (starts + width + extra_right > contig_len)

    ref = np.zeros((n, width), dtype=np.uint8)
    cand = np.flatnonzero(reason == "")
    for chrom, idx in v.iloc[cand].groupby("chrom", sort=False).indices.items():
        rows = cand[idx]
        gather = starts[rows][:, None] + np.arange(width)[None, :]
        inside = (gather >= 0) & (gather < len(genome[chrom]))
        ref[rows] = np.where(inside, genome[chrom][np.clip(gather, 0, len(genome[chrom]) - 1)], 4)
    # the REF allele must match the genome (else: wrong build or contig map); an N allele matches anything
    is_snv = (ref_len == 1) & (alt_len == 1)
    single = cand[ref_len[cand] == 1]
    ref_code = CODE[np.frombuffer("".join(v["ref"].to_numpy()[single]).encode("ascii"), dtype=np.uint8)]
    reason[single[(ref[single, c] != ref_code) & (ref_code != 4)]] = "ref_mismatch"
    for i in cand[ref_len[cand] > 1]:
        r = _codes(v.at[i, "ref"])
        if not np.all((ref[i, c:c + len(r)] == r) | (r == 4)):
            reason[i] = "ref_mismatch"
    keep = reason == ""
    alt = ref.copy()
    snv = np.flatnonzero(keep & is_snv)
    alt[snv, c] = CODE[np.frombuffer("".join(v["alt"].to_numpy()[snv]).encode("ascii"), dtype=np.uint8)]
    for i in np.flatnonzero(keep & ~is_snv):
        row = v.iloc[i]
        s0 = int(starts[i])
        # the window's own stretch of genome, N-padded off the contig ends
        seg = padded_slice(genome[row.chrom], s0, s0 + width + int(extra_right[i]))
        alt[i] = alt_window(seg, int(row.pos) - s0, row.ref, row.alt, 0, width, c)
    skipped = {r: int((reason == r).sum()) for r in SKIP_REASONS}
    examples = {r: v.loc[reason == r, "variant_id"].head(5).tolist() for r in SKIP_REASONS if skipped[r]}
    kept = np.flatnonzero(keep)
    return VariantWindows(variants=v.iloc[kept].reset_index(drop=True), ref=ref[kept], alt=alt[kept],
                          is_snv=is_snv[kept], seq_len=seq_len, centre=centre, max_shift=max_shift,
                          skipped=skipped, skipped_ids=examples, padded=int((keep & off).sum()))


__all__ = ["SKIP_REASONS", "VariantWindows", "alt_window", "build_windows", "padded_slice", "parse_variant_ids"]
