"""REF/ALT windows checked by hand on a 40 bp contig (seq_len 10, centre 4, shift margin 1)."""

from __future__ import annotations

import numpy as np
import pytest

from caveat.genome import decode, encode
from caveat.variant_windows import build_windows, parse_variant_ids

#            0   4   8   12  16  20  24  28  32  36
CONTIG = "AAAACCCCGGGGTTTTACGTACGTAACCGGTTAGCTAGCT"
GENOME = {"chrA": encode(CONTIG), "chrB": encode("ACGT" * 10)}


def _win(ids):
    return build_windows(GENOME, parse_variant_ids(ids), seq_len=10, centre=4, max_shift=1)


def test_parse_variant_ids():
    v = parse_variant_ids(["chrA:19:G:T", "HLA:A*01:5:A:AT"])
    assert v["pos"].tolist() == [18, 4]
    assert v["chrom"].tolist() == ["chrA", "HLA:A*01"]
    assert v["alt"].tolist() == ["T", "AT"]
    with pytest.raises(ValueError, match="chrA:x:G:T"):
        parse_variant_ids(["chrA:x:G:T"])
    with pytest.raises(ValueError, match="not chrom:pos1:ref:alt"):
        parse_variant_ids(["chrA-19-G-T"])


def test_snv_and_indels_hand_checked():
    w = _win(["chrA:19:G:T", "chrA:19:GTA:G", "chrA:19:G:GAAAA", "chrA:19:G:GCCC"])
    assert w.skipped == {r: 0 for r in w.skipped}
    ref = [decode(r) for r in w.ref]
    alt = [decode(a) for a in w.alt]
    # widened window contig[13:25]; the variant's first base at index centre + margin = 5
    assert ref == ["TTTACGTACGTA"] * 4
    assert alt[0] == "TTTACTTACGTA"                 # SNV: G→T at index 5
    assert alt[1] == "TTTACGCGTAAC"                 # deletion of TA: right flank pulled in from contig[21:27]
    assert alt[2] == "TACGAAAATACG"                 # +4: 2 bases trimmed left, 2 right
    assert alt[3] == "TTACGCCCTACG"                 # +3: 1 base trimmed left, 2 right
    assert w.is_snv.tolist() == [True, False, False, False]
    assert all(len(a) == 12 for a in alt)


def test_contig_ends_are_n_padded_and_bad_variants_skipped():
    ids = ["chrA:6:C:A",        # window starts exactly at 0
           "chrA:5:C:A",        # one base off the left end: N-padded
           "chrA:34:G:C",       # window ends exactly at 40
           "chrA:35:C:A",       # one base off the right end: N-padded
           "chrA:34:GC:G",      # deletion needs one more right-flank base than the contig has: N-padded
           "chrA:6:C:CTT",      # insertion at the left edge, trimmed 1 left
           "chrZ:5:A:C", "chrA:19:A:T", "chrA:19:G:<DEL>", "chrA:19:G:G" + "A" * 12]
    w = _win(ids)
    assert w.variants["variant_id"].tolist() == ids[:6]
    assert w.skipped == {"unknown_contig": 1, "unsupported_allele": 1, "too_long": 1, "ref_mismatch": 1}
    assert w.padded == 3
    assert decode(w.ref[0]) == CONTIG[0:12] and decode(w.alt[0]) == "AAAACACCGGGG"
    assert decode(w.ref[1]) == "N" + CONTIG[0:11] and decode(w.alt[1]) == "NAAAAACCCGGG"
    assert decode(w.ref[2]) == CONTIG[28:40] and decode(w.alt[2]) == "GGTTACCTAGCT"
    assert decode(w.ref[3]) == CONTIG[29:40] + "N" and decode(w.alt[3]) == "GTTAGATAGCTN"
    assert decode(w.ref[4]) == CONTIG[28:40] and decode(w.alt[4]) == "GGTTAGTAGCTN"
    assert decode(w.alt[5]) == "AAACCTTCCGGG"


def test_order_and_groups_of_contigs_preserved():
    ids = ["chrB:11:G:A", "chrA:19:G:T", "chrB:7:G:C"]
    w = _win(ids)
    assert w.variants["variant_id"].tolist() == ids
    assert decode(w.ref[0]) == ("ACGT" * 10)[5:17]
    assert decode(w.alt[2])[5] == "C" and decode(w.ref[2])[5] == "G"
    assert w.ref.dtype == np.uint8 and w.ref.shape == (3, 12)
