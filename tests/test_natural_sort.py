"""caveat.natural_sort: digit runs by value, deterministic ties, the same order as before for
contigs (pooled sites) and samples (the WASP summary)."""

from __future__ import annotations

import random

from caveat.natural_sort import natural_key, natural_rank


def test_digit_runs_compare_by_value():
    names = ["chr10", "chr2", "chrX", "chr1", "chr22", "chrM", "chr1_KI270706v1_random"]
    assert sorted(names, key=natural_key) == ["chr1", "chr1_KI270706v1_random", "chr2", "chr10", "chr22",
                                              "chrM", "chrX"]
    assert sorted(["S10", "S2", "S1", "S100"], key=natural_key) == ["S1", "S2", "S10", "S100"]
    # a name starting with digits sorts before one starting with text (empty leading text)
    assert sorted(["X", "10", "2"], key=natural_key) == ["2", "10", "X"]


def test_ties_are_broken_by_the_name_whatever_the_input_order():
    names = ["S1", "S01", "S001", "s1", "S1a", "S1_b"]
    want = sorted(names, key=natural_key)
    assert want[:3] == ["S001", "S01", "S1"]
    rng = random.Random(0)
    for _ in range(20):
        rng.shuffle(names)
        assert sorted(names, key=natural_key) == want
        assert natural_rank(names) == {n: i for i, n in enumerate(want)}


def test_rank_counts_each_name_once():
    assert natural_rank(["chr10", "chr2", "chr10", "chr2", "chr1"]) == {"chr1": 0, "chr2": 1, "chr10": 2}
    assert natural_rank([]) == {}


def test_keys_never_compare_text_with_numbers():
    """Mixed shapes (leading digits, trailing text, several digit runs) sort without a TypeError."""
    names = ["1", "a", "1a", "a1", "1a1", "a1a", "", "10b2", "10b10", "b"]
    assert sorted(names, key=natural_key) == ["", "1", "1a", "1a1", "10b2", "10b10", "a", "a1", "a1a", "b"]
