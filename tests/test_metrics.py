"""Metrics: DeLong against sklearn and the bootstrap, Pearson and matching on known answers."""

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from caveat import metrics as M


def _labelled(n, seed, ties=False, shift=0.7):
    rng = np.random.default_rng(seed)
    y = rng.random(n) < 0.3
    s = rng.normal(size=n) + shift * y
    if ties:
        s = np.round(s, 1)  # many tied scores: midranks matter
    return y, s


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_delong_auc_equals_sklearn(seed, ties):
    y, s = _labelled(500, seed, ties)
    res = M.delong_auc(y, s)
    assert res.auc == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert res.n_pos == y.sum() and res.n_neg == (~y).sum()


def test_delong_variance_matches_bootstrap():
    y, s = _labelled(600, 3, ties=True)
    res = M.delong_auc(y, s)
    boot = M.bootstrap(lambda yy, ss: M.delong_auc(yy, ss).auc, y, s, n_boot=2000, seed=1, strata=y)
    assert res.var == pytest.approx(boot.var(ddof=1), rel=0.15)
    lo, hi = res.ci()
    assert lo < res.auc < hi
    # the CI half-width is 1.96 sd
    assert (hi - lo) / 2 == pytest.approx(1.959964 * np.sqrt(res.var), rel=1e-6)


def test_delong_degenerate_cases():
    assert np.isnan(M.delong_auc([1, 1, 1], [0.1, 0.2, 0.3]).auc)
    perfect = M.delong_auc([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9])
    assert perfect.auc == 1.0 and perfect.var == 0.0


def test_delong_paired_test():
    rng = np.random.default_rng(5)
    n = 800
    y = rng.random(n) < 0.4
    signal = rng.normal(size=n) + 1.0 * y
    good = signal + rng.normal(scale=0.3, size=n)
    bad = signal + rng.normal(scale=3.0, size=n)
    res = M.delong_paired(y, good, bad)
    assert res["auc_a"] == pytest.approx(roc_auc_score(y, good), abs=1e-12)
    assert res["auc_b"] == pytest.approx(roc_auc_score(y, bad), abs=1e-12)
    assert res["diff"] > 0 and res["p_value"] < 1e-3
    # the paired variance agrees with a paired bootstrap of the difference
    boot = M.bootstrap(lambda yy, a, b: roc_auc_score(yy, a) - roc_auc_score(yy, b), y, good, bad,
                       n_boot=1000, seed=2, strata=y)
    assert res["var_diff"] == pytest.approx(boot.var(ddof=1), rel=0.2)
    # identical scores: no difference, p = 1
    same = M.delong_paired(y, good, good)
    assert same["diff"] == 0 and same["p_value"] == 1.0
    # under the null (two equally noisy scores) p-values are not concentrated near 0
    ps = []
    for seed in range(40):
        r = np.random.default_rng(100 + seed)
        yy = r.random(300) < 0.5
        sig = r.normal(size=300) + yy
        ps.append(M.delong_paired(yy, sig + r.normal(size=300), sig + r.normal(size=300))["p_value"])
    assert np.mean(np.array(ps) < 0.05) <= 0.15


@pytest.mark.parametrize("ties", [False, True])
def test_average_precision_equals_sklearn(ties):
    y, s = _labelled(400, 11, ties)
    assert M.average_precision(y, s) == pytest.approx(average_precision_score(y, s), abs=1e-12)


def test_pearson_known_answers():
    x = np.arange(10.0)
    assert M.pearson(x, 3 * x + 2) == pytest.approx(1.0)
    assert M.pearson(x, -x) == pytest.approx(-1.0)
    # symmetric parabola: exactly zero correlation
    assert M.pearson(x - 4.5, (x - 4.5) ** 2) == pytest.approx(0.0, abs=1e-12)
    # hand-computed: x = [1, 2, 3], y = [1, 3, 2] → R = 0.5
    assert M.pearson([1, 2, 3], [1, 3, 2]) == pytest.approx(0.5)
    # NaN pairs are dropped, constant input is undefined
    assert M.pearson([1, 2, np.nan, 3], [1, 3, 5, 2]) == pytest.approx(0.5)
    assert np.isnan(M.pearson([1, 1, 1, 1], [1, 2, 3, 4]))
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(2, 200))
    assert M.pearson(a, b) == pytest.approx(np.corrcoef(a, b)[0, 1], abs=1e-12)
    lo, hi = M.pearson_ci(0.5, 100)
    assert lo < 0.5 < hi and lo == pytest.approx(0.3366, abs=1e-3) and hi == pytest.approx(0.6341, abs=1e-3)


def test_match_histograms_constructed():
    # bins of width 0.5 from 0: a has 10/10/10 in bins 0,1,2; b has 4/0/2 and 3 in bin 3
    a = np.r_[np.full(10, 0.1), np.full(10, 0.6), np.full(10, 1.2)]
    b = np.r_[np.full(4, 0.2), np.full(2, 1.4), np.full(3, 1.7)]
    ia, ib = M.match_histograms(a, b, 0.5, seed=0, lo=0.0)
    assert np.bincount(np.floor(a[ia] / 0.5).astype(int), minlength=4).tolist() == [4, 0, 2, 0]
    assert np.bincount(np.floor(b[ib] / 0.5).astype(int), minlength=4).tolist() == [4, 0, 2, 0]
    assert len(np.unique(ia)) == ia.size  # without replacement
    # deterministic for a seed, different for another
    assert np.array_equal(ia, M.match_histograms(a, b, 0.5, seed=0, lo=0.0)[0])
    assert not np.array_equal(ia, M.match_histograms(a, b, 0.5, seed=1, lo=0.0)[0])


def test_match_histograms_resamples_larger_to_smaller_shape():
    rng = np.random.default_rng(4)
    big = rng.normal(3.0, 1.5, 20000)     # "ubiquitous": wider and higher
    small = rng.normal(2.0, 0.5, 2000)    # "specific"
    ib, is_ = M.match_histograms(big, small, 0.5, seed=0)
    assert is_.size == small.size  # enough big items in every bin: small kept whole
    assert abs(big[ib].mean() - small.mean()) < 0.05
    assert abs(big[ib].std() - small.std()) < 0.05


def test_replicate_ceiling_matches_simulation():
    """Spearman-Brown: the truth correlates with a k-replicate mean at sqrt(reliability)."""
    rng = np.random.default_rng(8)
    truth = rng.normal(size=20000)
    reps = truth[:, None] + rng.normal(0, 1.2, (20000, 3))
    r1 = np.mean([M.pearson(reps[:, i], reps[:, j]) for i, j in [(0, 1), (0, 2), (1, 2)]])
    assert M.replicate_ceiling(r1, 3) == pytest.approx(M.pearson(truth, reps.mean(axis=1)), abs=0.01)
    assert M.replicate_ceiling(1.0, 4) == 1.0 and M.replicate_ceiling(-0.1, 2) == 0.0


def test_weighted_pearson_equals_resampled_pearson():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(2, 300))
    y += x
    w = M.bootstrap_weights(300, 5, seed=1)
    r = M.weighted_pearson(w, x, y)
    for b in range(5):
        idx = np.repeat(np.arange(300), w[b].astype(int))
        assert r[b] == pytest.approx(M.pearson(x[idx], y[idx]), abs=1e-10)
    assert np.allclose(w.sum(axis=1), 300)


@pytest.mark.parametrize("ties", [False, True])
def test_bootstrap_average_precision_equals_resampled(ties):
    y, s = _labelled(200, 4, ties)
    fast = M.bootstrap_average_precision(y, s, n_boot=20, seed=3)
    w = M.bootstrap_weights(y.size, 20, seed=3, strata=y)
    for b in range(20):
        idx = np.repeat(np.arange(y.size), w[b].astype(int))
        assert fast[b] == pytest.approx(average_precision_score(y[idx], s[idx]), abs=1e-12)
    # class sizes are kept in every resample
    assert np.allclose(w[:, y].sum(axis=1), y.sum())


# ---------------------------------------------------------------- ranks, blocks, BH (issue 18 point 4)


def test_spearman_equals_scipy_with_ties_and_nans():
    from scipy.stats import spearmanr

    rng = np.random.default_rng(5)
    x = np.round(rng.normal(size=300), 1)
    y = x + rng.normal(size=300)
    x[[3, 7]] = np.nan
    ok = np.isfinite(x)
    assert M.spearman(x, y) == pytest.approx(spearmanr(x[ok], y[ok]).statistic, abs=1e-12)
    assert np.isnan(M.spearman([1, 1, 1, 1], [1, 2, 3, 4]))


def _tied_pairs(rng, n):
    """Effects with ties (rounded), a non-finite pair and a zero prediction: what evaluate meets."""
    x = np.round(rng.normal(size=n), 1)
    y = np.round(x + rng.normal(size=n), 1)
    x[3], y[7], x[11] = np.nan, np.inf, 0.0
    return x, y


@pytest.mark.parametrize("blocks", [False, True])
def test_vectorised_bootstrap_statistics_equal_per_resample_loop(blocks):
    # the reference: each resample materialised and the scalar statistic recomputed on it
    rng = np.random.default_rng(5)
    x, y = _tied_pairs(rng, 240)
    w = (M.block_bootstrap_weights(np.arange(240) // 7, 40, seed=2) if blocks
         else M.bootstrap_weights(240, 40, seed=2))
    w[0] = 0.0                      # an empty resample
    w[1] = 0.0
    w[1, :4] = 1.0                  # 4 items, one non-finite: 3 pairs left
    w[2] = 0.0
    w[2, 0] = 3.0                   # one item thrice: a constant side -> NaN
    pairs = [(M.weighted_spearman, M.spearman), (M.weighted_pearson, M.pearson)]
    for frac in (0.1, 0.5, 1.0):
        pairs.append((lambda w_, a, b, f=frac: M.weighted_topk_direction_accuracy(w_, a, b, f),
                      lambda a, b, f=frac: M.topk_direction_accuracy(a, b, f)[0]))
    for fast, scalar in pairs:
        got = fast(w, x, y)
        want = M.weighted_statistic(scalar, w, x, y)
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12, equal_nan=True)
    assert np.isnan(M.weighted_spearman(w, x, y)[:1]).all()   # the empty resample


def test_weighted_auc_equals_sklearn_on_each_resample():
    y, s = _labelled(200, 4, ties=True)
    blocks = np.arange(200) // 5
    w = M.block_bootstrap_weights(blocks, 20, seed=1)
    got = M.weighted_auc(w, y, s)
    for b in range(20):
        idx = np.repeat(np.arange(200), w[b].astype(int))
        assert got[b] == pytest.approx(roc_auc_score(y[idx], s[idx]), abs=1e-12)
    assert np.all(np.isnan(M.weighted_auc(np.ones((1, 3)), [True, True, True], [1.0, 2.0, 3.0])))


def test_weighted_ap_equals_sklearn_on_block_resamples():
    y, s = _labelled(150, 6)
    w = M.block_bootstrap_weights(np.arange(150) // 3, 10, seed=2)
    got = M.bootstrap_average_precision(y, s, weights=w)
    for b in range(10):
        idx = np.repeat(np.arange(150), w[b].astype(int))
        assert got[b] == pytest.approx(average_precision_score(y[idx], s[idx]), abs=1e-12)


def test_block_bootstrap_resamples_whole_blocks():
    blocks = np.repeat([10, 3, 7, 3], [4, 2, 3, 2])  # block 3 split in two runs
    w = M.block_bootstrap_weights(blocks, 50, seed=0)
    assert w.shape == (50, blocks.size)
    for row in w:
        for b in np.unique(blocks):
            assert len(set(row[blocks == b])) == 1  # every member of a block drawn equally often
        assert sum(row[np.flatnonzero(blocks == b)[0]] for b in np.unique(blocks)) == 3  # 3 blocks drawn
    labels = M.block_labels(["p1", None, None, "p1", None], ["chr1", "chr1", "chr1", "chr2", "chr2"],
                            [5, 100, 9_999, 5, 150], 10_000)
    assert labels[0] == labels[3] and labels[1] == labels[2] and len(set(labels)) == 3


def test_block_bootstrap_ci_at_least_as_wide_as_variant_bootstrap_with_shared_windows():
    """Variants of one peak share their window, hence their score and (mostly) their label: the
    variant-level bootstrap treats them as independent and is too narrow."""
    rng = np.random.default_rng(0)
    n_peaks, per = 80, 8
    peak_signal = rng.normal(size=n_peaks)
    peak_label = rng.random(n_peaks) < 1 / (1 + np.exp(-1.5 * peak_signal))
    blocks = np.repeat(np.arange(n_peaks), per)
    y = np.where(rng.random(blocks.size) < 0.9, peak_label[blocks], ~peak_label[blocks])
    s = peak_signal[blocks] + 0.05 * rng.normal(size=blocks.size)
    widths = {}
    for name, units in (("variant", np.arange(blocks.size)), ("block", blocks)):
        boot = M.weighted_auc(M.block_bootstrap_weights(units, 400, seed=3), y, s)
        lo, hi = M.percentile_ci(boot)
        widths[name] = hi - lo
    assert widths["block"] >= widths["variant"]
    assert widths["block"] > 1.8 * widths["variant"]  # ~sqrt(8) with 8 variants per peak


def test_bh_qvalues_equal_a_hand_computation():
    p = np.array([0.01, 0.04, np.nan, 0.03, 0.20, 0.005])
    # sorted finite: 0.005 0.01 0.03 0.04 0.20 (m = 5): raw p*m/rank = .025 .025 .05 .05 .20
    expect = np.array([0.025, 0.05, np.nan, 0.05, 0.20, 0.025])
    np.testing.assert_allclose(M.bh_qvalues(p), expect, rtol=1e-12)
    np.testing.assert_allclose(M.bh_qvalues([0.9, 0.8]), [0.9, 0.9])  # monotone, capped


def test_topk_accuracy_equals_an_independent_loop():
    rng = np.random.default_rng(8)
    pred = np.round(rng.normal(size=97), 1)
    obs = pred + rng.normal(size=97)
    for f in (0.1, 0.25, 0.5, 1.0):
        k = int(np.ceil(f * 97))
        ranked = sorted(range(97), key=lambda i: (-abs(pred[i]), i))[:k]
        hits = sum(1 for i in ranked if (pred[i] > 0 and obs[i] > 0) or (pred[i] < 0 and obs[i] < 0))
        acc, kk = M.topk_direction_accuracy(pred, obs, f)
        assert kk == k and acc == pytest.approx(hits / k, abs=1e-12)
