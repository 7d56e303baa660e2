"""Tests of caveat.stats: exact tests against scipy, fits against planted truth, BH."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as ss

from caveat.stats import (betabinom_logpmf, betabinom_shapes, betabinom_test_two_sided, bh_qvalues,
                          binom_test_two_sided, binom_two_sided_lower, fit_betabinom, fit_binomial_mean,
                          randomized_pvalue)


def _grid(rng):
    """(k, n) pairs up to n = 1e5 with both edges, both sides of the mode and random k."""
    ks, ns = [], []
    for n in (1, 2, 3, 4, 7, 20, 21, 22, 51, 100, 333, 1000, 4097, 20000, 99999, 100000):
        k = {0, n, 1, n - 1, n // 2, (n + 1) // 2, int(0.3 * n), int(0.47 * n), int(0.53 * n)}
        k |= set(rng.integers(0, n + 1, 12).tolist())
        k = sorted(x for x in k if 0 <= x <= n)
        ks += k
        ns += [n] * len(k)
    return np.array(ks), np.array(ns)


@pytest.mark.parametrize("p", [0.5, 0.47, 0.3, 0.85])
def test_binomial_equals_scipy_binomtest(p):
    k, n = _grid(np.random.default_rng(1))
    ours = binom_test_two_sided(k, n, p)
    ref = np.array([ss.binomtest(int(a), int(b), p).pvalue for a, b in zip(k, n)])
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, rtol=1e-10, atol=0)
    edge = ((k == 0) | (k == n)) & (n <= 1000)
    if p == 0.5:  # both tails of the edges: 2 * 0.5**n
        np.testing.assert_allclose(ours[edge], np.minimum(1.0, 2 * 0.5 ** n[edge]), rtol=1e-12)


def test_binomial_bad_input():
    with pytest.raises(ValueError):
        binom_test_two_sided([3], [2])
    with pytest.raises(ValueError):
        binom_test_two_sided([1], [2], p=1.0)


def test_table_pvalues_agree_with_scipy_and_lower_bound():
    k, n = _grid(np.random.default_rng(2))
    keep = n <= 4097
    k, n = k[keep], n[keep]
    p, lo = binom_two_sided_lower(k, n, 0.5)
    ref = binom_test_two_sided(k, n, 0.5)
    np.testing.assert_allclose(p, ref, rtol=1e-9, atol=1e-300)
    assert np.all(lo <= p)
    # at p=0.5 the tied outcomes are k and n-k: p - lower is their mass
    tie = np.where(2 * k == n, 1, 2) * ss.binom.pmf(k, n, 0.5)
    np.testing.assert_allclose(p - lo, np.minimum(tie, p), rtol=1e-6, atol=1e-14)


def test_betabinomial_pvalue_is_brute_force_sum_and_tends_to_binomial():
    rng = np.random.default_rng(3)
    n = rng.integers(1, 120, 400)
    k = rng.binomial(n, 0.5)
    mu, rho = 0.45, 0.08
    ours = betabinom_test_two_sided(k, n, mu, rho)
    a, b = betabinom_shapes(mu, rho)
    brute = []
    for ki, ni in zip(k, n):
        pmf = ss.betabinom.pmf(np.arange(ni + 1), ni, a, b)
        brute.append(min(1.0, pmf[pmf <= pmf[ki] * (1 + 1e-7)].sum()))
    np.testing.assert_allclose(ours, brute, rtol=1e-9)
    np.testing.assert_allclose(betabinom_logpmf(k, n, mu, rho), ss.betabinom.logpmf(k, n, a, b), rtol=1e-10)
    # rho -> 0 is the binomial test
    np.testing.assert_allclose(betabinom_test_two_sided(k, n, 0.5, 1e-9), binom_test_two_sided(k, n), rtol=1e-5)


def test_betabinomial_u_shaped_law_is_handled():
    # rho = 0.8: alpha = beta = 0.125, pmf highest at 0 and n; the middle is the extreme
    p = betabinom_test_two_sided([0, 10, 20], [20, 20, 20], 0.5, 0.8)
    assert p[0] == pytest.approx(1.0)
    assert p[1] < 0.1


@pytest.mark.parametrize("rho", [0.02, 0.08])
def test_fit_betabinom_recovers_overdispersion_and_calibrates(rho):
    rng = np.random.default_rng(11)
    m = 8000
    n = rng.integers(21, 300, m)
    a, b = betabinom_shapes(0.5, rho)
    k = rng.binomial(n, rng.beta(a, b, m))
    fit = fit_betabinom(k, n, mu=0.5)
    assert abs(fit["rho"] - rho) / rho < 0.2
    assert fit["loglik"] > fit["loglik_binomial"]
    joint = fit_betabinom(k, n, mu=None)
    assert abs(joint["mu"] - 0.5) < 0.01 and abs(joint["rho"] - rho) / rho < 0.2
    # calibration: randomised p-values uniform under the beta-binomial, not under the binomial
    pbb, lbb = betabinom_test_two_sided(k, n, 0.5, fit["rho"], return_lower=True)
    pb, lb = binom_two_sided_lower(k, n, 0.5)
    ks_bb = ss.kstest(randomized_pvalue(pbb, lbb, np.random.default_rng(0)), "uniform").pvalue
    ks_b = ss.kstest(randomized_pvalue(pb, lb, np.random.default_rng(0)), "uniform").pvalue
    assert ks_bb > 0.01
    assert ks_b < 1e-6
    # and the plain beta-binomial p-values are valid: P(p <= a) <= a
    for alpha in (0.01, 0.05, 0.1):
        assert np.mean(pbb <= alpha) <= alpha * 1.15
    assert np.mean(pb <= 0.01) > 0.03  # the binomial over-calls


@pytest.mark.parametrize("rho0", [0.005, 0.02])
def test_fit_betabinom_null_finds_the_null_component(rho0):
    from caveat.stats import fit_betabinom_null

    rng = np.random.default_rng(3)
    m = 4000
    n = rng.integers(20, 250, m)
    null = rng.random(m) < 0.7
    a0, b0 = betabinom_shapes(0.5, rho0)
    # imbalanced sites: 0.5 +- 0.1-0.35 (either allele), with the same overdispersion
    mid = 0.5 + rng.uniform(0.1, 0.35, m) * rng.choice([-1, 1], m)
    alt = rng.beta(mid * (1 / rho0 - 1), (1 - mid) * (1 / rho0 - 1))
    k = rng.binomial(n, np.where(null, rng.beta(a0, b0, m), alt))
    fit = fit_betabinom_null(k, n)
    assert abs(fit["rho"] - rho0) / rho0 < 0.3
    assert fit["null_share"] == pytest.approx(0.7, abs=0.08)
    assert fit_betabinom(k, n)["rho"] > 2 * fit["rho"]  # the all-sites fit counts signal as noise
    # only null sites: BIC keeps one component, whose rho is the plain fit's
    one = fit_betabinom_null(k[null], n[null])
    assert one["null_share"] == 1.0 and one["rho_alt"] is None
    assert one["rho"] == pytest.approx(fit_betabinom(k[null], n[null])["rho"], rel=1e-3)


def test_fit_binomial_mean_recovers_reference_bias():
    rng = np.random.default_rng(5)
    n = rng.integers(21, 200, 5000)
    k = rng.binomial(n, 0.54)
    assert fit_binomial_mean(k, n) == pytest.approx(0.54, abs=0.003)
    fit = fit_betabinom(k, n, mu=None)
    assert fit["mu"] == pytest.approx(0.54, abs=0.005)
    assert fit["rho"] < 0.005  # no overdispersion planted


def test_bh_matches_statsmodels_and_ignores_nan():
    from statsmodels.stats.multitest import multipletests

    rng = np.random.default_rng(4)
    p = np.concatenate([rng.random(500), rng.random(50) * 1e-4, [1.0, 1.0, 0.0]])
    rng.shuffle(p)
    ref = multipletests(p, method="fdr_bh")[1]
    np.testing.assert_allclose(bh_qvalues(p), ref, rtol=1e-12)
    with_nan = np.concatenate([p, [np.nan, np.nan]])
    q = bh_qvalues(with_nan)
    assert np.isnan(q[-2:]).all()
    np.testing.assert_allclose(q[:-2], ref, rtol=1e-12)
    assert bh_qvalues(np.array([])).size == 0


def test_bh_equals_the_step_up_rule_with_ties_and_rounding_above_one():
    """q_(i) = min over j >= i of p_(j) m / j, capped at 1; ties, and a p a hair above 1, accepted."""
    rng = np.random.default_rng(5)
    p = np.round(rng.random(400) ** 3, 2)  # many ties
    p[:3] = 1.0 + 1e-15
    srt = np.sort(p)
    step_up = np.minimum(np.minimum.accumulate((srt * p.size / np.arange(1, p.size + 1))[::-1])[::-1], 1.0)
    expect = step_up[np.searchsorted(srt, p, side="right") - 1]  # ties share the last rank's value
    np.testing.assert_allclose(bh_qvalues(p), expect, rtol=1e-12)
