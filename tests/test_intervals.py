"""Tests for caveat.intervals: BED validation and vectorised overlap."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from caveat.errors import InputError
from caveat.intervals import contains_points, merge_intervals, overlap_pairs, overlaps, read_bed

GENOME = {"chr1": 10_000, "chr2": 5_000}


def _write(tmp_path, text, name="p.bed"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_read_bed_narrowpeak_summit_and_score(tmp_path):
    p = _write(tmp_path, "track name=x\n# c\nchr1\t100\t300\tp1\t50\t.\t3.1\t12.5\t4.2\t80\n"
                         "chr2\t10\t20\tp2\t7\t.\t1\t2\t1\t-1\n")
    df = read_bed(p, GENOME)
    assert df["chrom"].tolist() == ["chr1", "chr2"]
    assert df["start"].tolist() == [100, 10] and df["end"].tolist() == [300, 20]
    assert df["summit"].tolist() == [180, -1]
    assert df["score"].tolist() == [12.5, 2.0]


@pytest.mark.parametrize("text,needle", [
    ("chr1\t100\t100\n", "zero-length"),
    ("chr1\t300\t100\n", "reversed"),
    ("chrX\t1\t10\n", "'chrX'"),
    ("1\t1\t10\n", "with 'chr'"),
    ("chr2\t10\t6000\n", "past the contig"),
    ("chr1\tten\t20\n", "not an integer"),
    ("chr1\t10\n", "at least 3"),
    ("# only a comment\n", "no peak records"),
])
def test_read_bed_bad_input_names_line_and_problem(tmp_path, text, needle):
    p = _write(tmp_path, "chr1\t1\t5\n" + text if "records" not in needle else text)
    with pytest.raises(InputError) as e:
        read_bed(p, GENOME)
    assert needle in str(e.value) and str(p) in str(e.value)
    if "line" in str(e.value):
        assert "line 2" in str(e.value)


def test_read_bed_empty_allowed_and_contig_map(tmp_path):
    assert read_bed(_write(tmp_path, ""), GENOME, allow_empty=True).empty
    df = read_bed(_write(tmp_path, "1\t1\t10\n", "m.bed"), GENOME, contig_map={"1": "chr1"})
    assert df["chrom"].tolist() == ["chr1"]


def _brute_pairs(a, b):
    out = []
    for i, r in a.iterrows():
        for j, q in b.iterrows():
            if r.chrom == q.chrom and r.start < q.end and q.start < r.end:
                out.append((i, j))
    return set(out)


def _random_intervals(rng, n):
    chrom = rng.choice(["chr1", "chr2"], n)
    start = rng.integers(0, 1000, n)
    return pd.DataFrame({"chrom": chrom, "start": start, "end": start + rng.integers(1, 120, n)})


def test_overlap_pairs_and_overlaps_equal_brute_force():
    rng = np.random.default_rng(3)
    for _ in range(5):
        a, b = _random_intervals(rng, 60), _random_intervals(rng, 45)
        ia, ib = overlap_pairs(a, b)
        assert set(zip(ia.tolist(), ib.tolist())) == _brute_pairs(a, b)
        expect = np.zeros(len(a), bool)
        expect[list({i for i, _ in _brute_pairs(a, b)})] = True
        np.testing.assert_array_equal(overlaps(a, b), expect)


def test_half_open_bookends_do_not_overlap():
    a = pd.DataFrame({"chrom": ["chr1"], "start": [10], "end": [20]})
    b = pd.DataFrame({"chrom": ["chr1", "chr1"], "start": [20, 0], "end": [30, 10]})
    assert not overlaps(a, b)[0]
    assert overlap_pairs(a, b)[0].size == 0


def test_merge_intervals_and_contains_points():
    df = pd.DataFrame({"chrom": ["chr1", "chr1", "chr1", "chr2", "chr1"],
                       "start": [10, 15, 40, 0, 30], "end": [20, 25, 50, 5, 40]})
    m = merge_intervals(df, ["chr1", "chr2"])
    assert m.values.tolist() == [["chr1", 10, 25], ["chr1", 30, 50], ["chr2", 0, 5]]
    pts_c = np.array(["chr1", "chr1", "chr1", "chr2", "chr2"])
    pts = np.array([9, 10, 49, 4, 5])
    assert contains_points(m, pts_c, pts).tolist() == [-1, 0, 1, 2, -1]
