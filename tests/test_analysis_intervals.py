"""analysis.rate_interval: coverage computed exactly from the binomial distribution, not estimated.

For a true proportion p and n trials, an interval method's coverage is the sum over every possible count k
of P(K = k) times 1 when the interval computed from k contains p. Summing the binomial pmf over all k gives
the coverage exactly, so the check below has no simulation error and no seed.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from exec_analytics.analysis import RATE_METHODS, rate_interval

# Rare failures (n * p < 1) are the regime of reliable functions, where Wilson undercovers; the grid also
# spans common rates and sample sizes from tiny to large.
GRID_N = (5, 20, 50, 100, 200, 500, 1000, 2000)
GRID_P = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.05, 0.2, 0.5, 0.9, 0.999)


def exact_coverage(method: str, n: int, p: float, confidence: float) -> float:
    k = np.arange(n + 1)
    low, high = rate_interval(k, np.full(n + 1, n), confidence, method=method)  # type: ignore[arg-type]
    return float(stats.binom.pmf(k, n, p)[(low <= p) & (p <= high)].sum())


@pytest.mark.parametrize("confidence", [0.9, 0.95, 0.99])
def test_default_interval_covers_at_least_nominal_on_the_whole_grid(confidence):
    worst = min((exact_coverage("clopper-pearson", n, p, confidence), n, p) for n in GRID_N for p in GRID_P)
    assert worst[0] >= confidence - 1e-9, worst


@pytest.mark.parametrize("confidence", [0.9, 0.95, 0.99])
def test_wilson_fails_the_same_check_with_rare_failures(confidence):
    # The same check has teeth: Wilson is below nominal somewhere on the grid, by a lot where n * p < 1.
    rare = [exact_coverage("wilson", n, p, confidence) for n in GRID_N for p in GRID_P if n * p < 1]
    assert min(rare) < confidence - 0.02
    if confidence == 0.95:  # the figures quoted in the docs: p = 0.1% with 100 to 1000 executions
        assert [round(exact_coverage("wilson", n, 0.001, 0.95), 2) for n in (100, 500, 1000)] == [0.9, 0.91, 0.92]


def test_the_default_is_clopper_pearson_and_matches_scipy():
    for k, n in [(0, 50), (50, 50), (0, 1), (1, 1), (3, 7), (1, 2), (300, 3000), (1, 1000)]:
        low, high = rate_interval(k, n)
        ci = stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact")
        assert (float(low), float(high)) == pytest.approx((ci.low, ci.high), abs=1e-12)
    low, high = rate_interval(np.array([2, 0]), np.array([3, 0]), 0.9, method="wilson")
    ci = stats.binomtest(2, 3).proportion_ci(confidence_level=0.9, method="wilson")
    assert (low[0], high[0]) == pytest.approx((ci.low, ci.high), abs=1e-12)
    assert np.isnan(low[1]) and np.isnan(high[1])  # no trials: no interval
    assert RATE_METHODS == ("clopper-pearson", "wilson")


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="method must be one of clopper-pearson, wilson"):
        rate_interval(1, 10, method="wald")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="0 <= failures <= n"):
        rate_interval(11, 10)
    with pytest.raises(ValueError, match="confidence"):
        rate_interval(1, 10, confidence=95)
