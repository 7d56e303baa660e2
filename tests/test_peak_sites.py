"""peak_sites: the peak value rule, checked against brute force and pyBigWig."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyBigWig
import pytest

from caveat.errors import InputError
from caveat.peak_sites import centred_sites, grid_bins, peak_track_values


@pytest.fixture(scope="module")
def track(tmp_path_factory):
    rng = np.random.default_rng(4)
    sig = rng.poisson(0.3, 20_000).astype(float)
    path = tmp_path_factory.mktemp("bw") / "t.bw"
    with pyBigWig.open(str(path), "w") as bw:
        bw.addHeader([("chr1", 20_000), ("chr2", 500)])
        nz = np.flatnonzero(sig)
        bw.addEntries(["chr1"] * nz.size, nz.tolist(), ends=(nz + 1).tolist(), values=sig[nz].tolist())
    starts = rng.integers(0, 19_000, 60)
    peaks = pd.DataFrame({"peak_id": [f"p{i}" for i in range(60)], "chrom": "chr1", "start": starts,
                          "end": starts + rng.integers(1, 900, 60)})
    return path, sig, peaks


def test_centred_site_sum_equals_pybigwig_and_brute_force(track):
    path, sig, peaks = track
    got = peak_track_values(path, peaks, "centre", window_size=1344, window_stride=192, target_bin=192)
    with pyBigWig.open(str(path)) as bw:
        for v, (_, p) in zip(got, peaks.iterrows()):
            c = (p.start + p.end) // 2
            assert v == pytest.approx(sig[c - 96:c + 96].sum())
            assert v == pytest.approx(np.nansum(bw.values("chr1", int(c - 96), int(c + 96))))


def test_grid_rules_equal_brute_force_tiling(track):
    path, sig, peaks = track
    for stride, tb in ((192, 192), (100, 192)):
        first, n = grid_bins(peaks, 1344, stride, tb)
        s = peak_track_values(path, peaks, "sum", window_size=1344, window_stride=stride, target_bin=tb)
        m = peak_track_values(path, peaks, "mean", window_size=1344, window_stride=stride, target_bin=tb)
        for i, (_, p) in enumerate(peaks.iterrows()):
            bins = [b for b in range(576, 20_000, stride) if b < p.end and b + tb > p.start]
            assert first[i] == bins[0] and n[i] == len(bins)
            assert s[i] == pytest.approx(sum(sig[b:b + tb].sum() for b in bins))
            assert m[i] == pytest.approx(s[i] / len(bins))


def test_centred_windows_and_contig_ends():
    peaks = pd.DataFrame({"peak_id": ["a", "b", "c"], "chrom": ["chr1", "chr1", "chr2"], "start": [1000, 10, 0],
                          "end": [1500, 60, 500]})
    s = centred_sites(peaks, 1344, 192, {"chr1": 20_000, "chr2": 500})
    assert s["site_start"].tolist() == [1154, -61, 154] and (s["site_end"] - s["site_start"] == 192).all()
    assert (s["site_start"] - s["window_start"] == 576).all()
    assert s["fits"].tolist() == [True, False, False]
    with pytest.raises(InputError, match="predict_peak_value"):
        peak_track_values("x.bw", peaks, "median", window_size=1344, window_stride=192, target_bin=192)
