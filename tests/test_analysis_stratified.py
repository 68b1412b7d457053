"""analysis._stratified: the comparison statistics against scipy and against plain per-stratum references."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from exec_analytics.analysis._stratified import (
    cmh_test,
    mh_risk_difference,
    mh_risk_ratio,
    quantile_bootstrap,
    rank_comparison,
    weighted_quantiles,
)


def _tables(seed: int, k: int = 6) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    n1 = rng.integers(20, 400, k)
    n0 = rng.integers(20, 400, k)
    p = rng.uniform(0.01, 0.2, k)
    return rng.binomial(n1, p * 1.3), n1, rng.binomial(n0, p), n0


# --- failure rates ---------------------------------------------------------------------------------------


def test_cmh_matches_a_hypergeometric_reference():
    x1, n1, x0, n0 = _tables(1)
    num = var = 0.0
    for a, m, b, o in zip(x1, n1, x0, n0, strict=True):  # reference: loop over strata with scipy's hypergeom
        h = stats.hypergeom(M=m + o, n=a + b, N=m)
        num += a - h.mean()
        var += h.var()
    z, p = cmh_test(x1, n1, x0, n0)
    assert z == pytest.approx(num / np.sqrt(var), rel=1e-10)
    assert p == pytest.approx(stats.chi2.sf(num**2 / var, 1), rel=1e-10)


def test_cmh_with_one_stratum_is_pearson_chi_square_times_n_minus_1_over_n():
    x1, n1, x0, n0 = 30, 400, 18, 380
    table = np.array([[x1, n1 - x1], [x0, n0 - x0]])
    res = stats.chi2_contingency(table, correction=False)
    z, _ = cmh_test(np.array([x1]), np.array([n1]), np.array([x0]), np.array([n0]))
    n = n1 + n0
    assert z**2 == pytest.approx(res.statistic * (n - 1) / n, rel=1e-10)


@pytest.mark.parametrize(("x1", "n1", "x0", "n0"), [(200, 400, 180, 380), (30, 400, 18, 380), (3, 90, 1, 120)])
def test_mh_estimates_reduce_to_the_crude_ones_with_one_stratum(x1, n1, x0, n0):
    arr = (np.array([x1]), np.array([n1]), np.array([x0]), np.array([n0]))
    rd, lo, hi = mh_risk_difference(*arr, 0.95)
    p1, p0 = x1 / n1, x0 / n0
    wald = p1 * (1 - p1) / n1 + p0 * (1 - p0) / n0  # Sato's variance with one stratum
    a1, a0 = (x1 + 1) / (n1 + 2), (x0 + 1) / (n0 + 2)
    agresti_caffo = a1 * (1 - a1) / (n1 + 2) + a0 * (1 - a0) / (n0 + 2)  # the floor
    assert rd == pytest.approx(p1 - p0)
    assert (hi - lo) / 2 == pytest.approx(stats.norm.isf(0.025) * np.sqrt(max(wald, agresti_caffo)), rel=1e-12)
    rr, lo, hi = mh_risk_ratio(*arr, 0.95)
    se_log = np.sqrt(1 / x1 - 1 / n1 + 1 / x0 - 1 / n0)  # Katz
    assert rr == pytest.approx(p1 / p0)
    assert np.log(hi) - np.log(rr) == pytest.approx(stats.norm.isf(0.025) * se_log, rel=1e-12)


def test_mh_difference_is_a_weighted_mean_of_stratum_differences():
    x1, n1, x0, n0 = _tables(2)
    w = n1 * n0 / (n1 + n0)
    expected = np.sum(w * (x1 / n1 - x0 / n0)) / w.sum()
    assert mh_risk_difference(x1, n1, x0, n0, 0.95)[0] == pytest.approx(expected)
    # strata served by one arm only carry no information about the difference
    more = [np.append(a, extra) for a, extra in zip((x1, n1, x0, n0), (5, 50, 0, 0), strict=True)]
    assert mh_risk_difference(*more, 0.95)[0] == pytest.approx(expected)


def test_mh_difference_interval_covers_at_about_the_stated_level():
    rng = np.random.default_rng(7)
    k, reps = 8, 2000
    n1 = rng.integers(30, 300, k)
    n0 = rng.integers(30, 300, k)
    p0 = rng.uniform(0.01, 0.15, k)
    delta = 0.02
    hits = 0
    for _ in range(reps):
        x1 = rng.binomial(n1, p0 + delta)
        x0 = rng.binomial(n0, p0)
        _, lo, hi = mh_risk_difference(x1, n1, x0, n0, 0.95)
        hits += lo <= delta <= hi
    assert 0.93 <= hits / reps <= 0.975


def test_no_failures_in_either_arm_is_not_certainty():
    zeros = np.array([0])
    rd, lo, hi = mh_risk_difference(zeros, np.array([200]), zeros, np.array([200]), 0.95)
    assert rd == 0 and lo < -0.005 and hi > 0.005
    assert np.isnan(mh_risk_ratio(zeros, np.array([200]), zeros, np.array([200]), 0.95)[0])
    assert cmh_test(zeros, np.array([200]), zeros, np.array([200])) == (0.0, 1.0)


# --- whole distribution ----------------------------------------------------------------------------------


def test_rank_comparison_with_one_stratum_is_mann_whitney():
    rng = np.random.default_rng(3)
    base = np.rint(rng.lognormal(0, 1, 300) * 10) / 10  # ties
    cand = np.rint(rng.lognormal(0.2, 1, 250) * 10) / 10
    values = np.concatenate([base, cand])
    is_cand = np.r_[np.zeros(300, bool), np.ones(250, bool)]
    effect, _ = rank_comparison(values, is_cand, np.zeros(550, dtype=np.intp), 1, 0.95)
    ref = stats.mannwhitneyu(cand, base, use_continuity=False, method="asymptotic")
    assert effect.difference + 0.5 == pytest.approx(ref.statistic / (300 * 250))
    assert effect.p_value == pytest.approx(ref.pvalue, rel=1e-9)


def test_van_elteren_against_a_per_stratum_reference():
    rng = np.random.default_rng(4)
    k = 5
    strata = rng.integers(0, k, 2000)
    is_cand = rng.random(2000) < np.array([0.2, 0.5, 0.8, 0.5, 0.1])[strata]
    values = np.rint(rng.lognormal(strata * 0.5 + 0.1 * is_cand, 0.7) * 100) / 100
    effect, weights = rank_comparison(values, is_cand, strata, k, 0.95)
    num = var = wsum = wtheta = 0.0
    for s in range(k):  # reference: scipy's rankdata and mannwhitneyu one stratum at a time
        v, c = values[strata == s], is_cand[strata == s]
        n, n1, n0 = len(v), c.sum(), (~c).sum()
        ranks = stats.rankdata(v)
        _, t = np.unique(v, return_counts=True)
        u = ranks[c].sum() - n1 * (n1 + 1) / 2
        num += (u - n1 * n0 / 2) / (n + 1)
        var += n1 * n0 / 12 * ((n + 1) - (t**3 - t).sum() / (n * (n - 1))) / (n + 1) ** 2
        u_ref = stats.mannwhitneyu(v[c], v[~c]).statistic
        assert u == pytest.approx(u_ref)
        w = n1 * n0 / (n + 1)
        wsum += w
        wtheta += w * u / (n1 * n0)
    assert effect.statistic == pytest.approx(num / np.sqrt(var), rel=1e-9)
    assert effect.difference + 0.5 == pytest.approx(wtheta / wsum, rel=1e-12)
    np.testing.assert_allclose(weights.sum(), wsum)


# --- percentiles -----------------------------------------------------------------------------------------


def test_standardised_quantiles_are_numpy_weighted_quantiles():
    rng = np.random.default_rng(5)
    strata = rng.integers(0, 4, 3000)
    values = np.rint(rng.lognormal(strata * 0.4, 0.6) * 1000) / 1000
    mix = np.array([0.1, 0.2, 0.3, 0.4])
    qs = np.array([0.1, 0.5, 0.9, 0.95, 0.99])
    counts = np.bincount(strata, minlength=4)
    expected = np.quantile(values, qs, method="inverted_cdf", weights=mix[strata] / counts[strata])
    np.testing.assert_array_equal(weighted_quantiles(values, strata, mix, qs), expected)


def test_bootstrap_interval_agrees_with_scipy_bootstrap_for_one_stratum():
    rng = np.random.default_rng(6)
    base = rng.lognormal(0.0, 0.7, 1500)
    cand = rng.lognormal(0.15, 0.7, 1500)
    zeros = np.zeros(1500, dtype=np.intp)
    qs = np.array([0.5, 0.9])
    b, c, b_rep, c_rep = quantile_bootstrap((base, zeros), (cand, zeros), np.array([1.0]), qs, 3000,
                                            np.random.default_rng(0))  # fmt: skip
    for j, q in enumerate(qs):
        log_rep = np.log(c_rep[:, j] / b_rep[:, j])
        ours = np.quantile(log_rep, [0.025, 0.975])
        ref = stats.bootstrap(
            (cand, base),
            lambda x, y, axis=-1, q=q: np.log(np.quantile(x, q, axis=axis, method="inverted_cdf")
                                              / np.quantile(y, q, axis=axis, method="inverted_cdf")),
            n_resamples=3000, method="percentile", rng=np.random.default_rng(1), vectorized=True,
        ).confidence_interval  # fmt: skip
        width = ref.high - ref.low
        assert abs(ours[0] - ref.low) < 0.15 * width and abs(ours[1] - ref.high) < 0.15 * width
        assert b[j] == np.quantile(base, q, method="inverted_cdf")
        assert c[j] == np.quantile(cand, q, method="inverted_cdf")


def test_bootstrap_is_deterministic_for_a_seed():
    rng = np.random.default_rng(8)
    arm = (rng.lognormal(0, 1, 500), rng.integers(0, 3, 500))
    mix = np.array([0.2, 0.3, 0.5])
    one = quantile_bootstrap(arm, arm, mix, np.array([0.5]), 200, np.random.default_rng(42))
    two = quantile_bootstrap(arm, arm, mix, np.array([0.5]), 200, np.random.default_rng(42))
    for a, b in zip(one, two, strict=True):
        np.testing.assert_array_equal(a, b)
