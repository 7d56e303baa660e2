"""Tests for caveat.intervals: BED validation and vectorised overlap."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from caveat.errors import InputError
from caveat.intervals import contains_points, merge_intervals, overlap_pairs, overlaps, read_bed, sort_intervals

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
        b.loc[b.index[:3], "chrom"] = "chr3"  # contigs of one side only
        ia, ib = overlap_pairs(a, b)
        assert list(zip(ia.tolist(), ib.tolist())) == sorted(_brute_pairs(a, b),
                                                               key=lambda p: (p[0], b.start[p[1]], p[1]))
        expect = np.zeros(len(a), bool)
        expect[list({i for i, _ in _brute_pairs(a, b)})] = True
        np.testing.assert_array_equal(overlaps(a, b), expect)


def test_half_open_bookends_do_not_overlap():
    a = pd.DataFrame({"chrom": ["chr1"], "start": [10], "end": [20]})
    b = pd.DataFrame({"chrom": ["chr1", "chr1"], "start": [20, 0], "end": [30, 10]})
    assert not overlaps(a, b)[0]
    assert overlap_pairs(a, b)[0].size == 0


def _brute_merge(df, order, gap):
    out = []
    for c in order:
        for s, e in sorted(df.loc[df.chrom == c, ["start", "end"]].itertuples(index=False)):
            if out and out[-1][0] == c and s <= out[-1][2] + gap:
                out[-1][2] = max(out[-1][2], e)
            else:
                out.append([c, s, e])
    return out


@pytest.mark.parametrize("gap", [0, 7])
def test_merge_and_sort_equal_brute_force(gap):
    rng = np.random.default_rng(gap)
    for _ in range(5):
        df = _random_intervals(rng, 80)
        order = ["chr2", "chr1"]
        assert merge_intervals(df, order, gap=gap).values.tolist() == _brute_merge(df, order, gap)
        rank = df.chrom.map({"chr2": 0, "chr1": 1})
        expect = df.assign(r=rank).sort_values(["r", "start", "end"], kind="stable").drop(columns="r")
        pd.testing.assert_frame_equal(sort_intervals(df, order), expect.reset_index(drop=True))
    assert merge_intervals(df).chrom.iloc[0] == "chr1"  # default order: lexicographic
    with pytest.raises(ValueError, match="chr2"):
        merge_intervals(df, ["chr1"])


def test_contains_points_equal_brute_force():
    rng = np.random.default_rng(5)
    m = merge_intervals(_random_intervals(rng, 40), ["chr1", "chr2"])
    chrom = rng.choice(["chr1", "chr2", "chr9"], 500)
    pos = rng.integers(0, 1200, 500)
    expect = [next((j for j, r in enumerate(m.itertuples()) if r.chrom == c and r.start <= p < r.end), -1)
              for c, p in zip(chrom, pos)]
    assert contains_points(m, chrom, pos).tolist() == expect


def test_merge_intervals_and_contains_points():
    df = pd.DataFrame({"chrom": ["chr1", "chr1", "chr1", "chr2", "chr1"],
                       "start": [10, 15, 40, 0, 30], "end": [20, 25, 50, 5, 40]})
    m = merge_intervals(df, ["chr1", "chr2"])
    assert m.values.tolist() == [["chr1", 10, 25], ["chr1", 30, 50], ["chr2", 0, 5]]
    pts_c = np.array(["chr1", "chr1", "chr1", "chr2", "chr2"])
    pts = np.array([9, 10, 49, 4, 5])
    assert contains_points(m, pts_c, pts).tolist() == [-1, 0, 1, 2, -1]
