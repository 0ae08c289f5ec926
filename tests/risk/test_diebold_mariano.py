"""The Diebold-Mariano test against a hand computation, scipy's t test and t distribution; its edge cases.

Tolerances: 1e-12 relative for the statistic against the hand computation (same arithmetic, other order);
1e-10 relative for p-values against scipy (the t CDF is a continued fraction here, scipy's is Boost's).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from alphaloom.core.exceptions import ConfigError, DataFormatError
from alphaloom.risk import DieboldMariano, diebold_mariano


def _hand_dm(a: np.ndarray, b: np.ndarray, h: int, *, bartlett: bool = False) -> float:
    """The textbook formulas written out with loops."""
    d = [x - y for x, y in zip(a, b, strict=True)]
    n = len(d)
    mean = sum(d) / n
    gammas = []
    for k in range(h):
        gammas.append(sum((d[t] - mean) * (d[t - k] - mean) for t in range(k, n)) / n)
    weights = [1.0 - k / h if bartlett else 1.0 for k in range(h)]
    variance = (gammas[0] + 2 * sum(w * g for w, g in zip(weights[1:], gammas[1:], strict=True))) / n
    dm = mean / math.sqrt(variance)
    return dm * math.sqrt((n + 1 - 2 * h + h * (h - 1) / n) / n)


def _losses(seed: int, n: int, shift: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = rng.normal(size=n) ** 2
    b = (rng.normal(size=n) + shift) ** 2
    return a, b


def test_horizon_one_is_the_one_sample_t_test() -> None:
    a, b = _losses(0, 250)
    result = diebold_mariano(a, b)
    reference = stats.ttest_1samp(a - b, 0.0)
    assert isinstance(result, DieboldMariano)
    assert result.statistic == pytest.approx(float(reference.statistic), rel=1e-12)
    assert result.p_value == pytest.approx(float(reference.pvalue), rel=1e-10)
    assert result.mean_difference == pytest.approx(float(np.mean(a - b)), rel=1e-12)
    assert result.n == 250


@pytest.mark.parametrize("horizon", [1, 2, 3, 5, 10])
def test_matches_a_hand_computation_and_scipy_t(horizon: int) -> None:
    rng = np.random.default_rng(horizon)
    # Overlapping h-step errors: an MA(h - 1) process, as in the test's setting.
    shocks = rng.normal(size=(2, 400 + horizon))
    errors = np.array([np.convolve(s, np.ones(horizon), mode="valid") for s in shocks])
    a, b = errors[0] ** 2, (errors[1] * 1.1) ** 2
    result = diebold_mariano(a, b, horizon=horizon)
    assert result.statistic == pytest.approx(_hand_dm(a, b, horizon), rel=1e-12)
    expected_p = 2.0 * stats.t.sf(abs(result.statistic), df=len(a) - 1)
    assert result.p_value == pytest.approx(expected_p, rel=1e-10)


def test_a_non_positive_uniform_variance_falls_back_to_newey_west() -> None:
    # Strong negative lag-1 autocorrelation: gamma_0 + 2 gamma_1 < 0, the Bartlett estimate stays positive.
    rng = np.random.default_rng(3)
    d = np.tile([1.0, -1.0], 100) + 0.05 + 0.01 * rng.normal(size=200)
    c = d - d.mean()
    assert c[0:] @ c + 2 * (c[1:] @ c[:-1]) < 0
    result = diebold_mariano(d, np.zeros_like(d), horizon=2)
    assert result.statistic == pytest.approx(_hand_dm(d, np.zeros_like(d), 2, bartlett=True), rel=1e-12)
    assert 0.0 <= result.p_value <= 1.0


@pytest.mark.parametrize("n", [3, 30, 5_000, 200_000])
def test_p_values_agree_with_scipy_across_sample_sizes(n: int) -> None:
    for shift in (0.0, 0.05, 0.3, 1.0):
        a, b = _losses(n, n, shift)
        result = diebold_mariano(a, b)
        expected = 2.0 * stats.t.sf(abs(result.statistic), df=n - 1)
        assert result.p_value == pytest.approx(expected, rel=1e-10, abs=1e-300)


def test_sign_convention_and_symmetry() -> None:
    a, b = _losses(5, 300, shift=0.5)  # b has the larger losses
    ab, ba = diebold_mariano(a, b), diebold_mariano(b, a)
    assert ab.statistic < 0 < ba.statistic
    assert ab.statistic == pytest.approx(-ba.statistic, rel=1e-12)
    assert ab.p_value == pytest.approx(ba.p_value, rel=1e-12)


def test_p_value_of_zero_statistic_is_one() -> None:
    d = np.array([1.0, -1.0, 2.0, -2.0])
    result = diebold_mariano(d, np.zeros(4))
    assert result.statistic == 0.0
    assert result.p_value == pytest.approx(1.0, abs=1e-15)


@pytest.mark.parametrize(
    ("a", "b", "horizon"),
    [
        ([1.0, 2.0, 3.0], [1.0, 2.0, 3.0], 1),  # identical forecasts
        ([1.0, 2.0, 3.0], [0.0, 1.0, 2.0], 1),  # always better by the same amount
        ([1.0], [2.0], 1),  # one pair
        ([], [], 1),  # nothing
        ([1.0, np.nan, 3.0], [0.5, 1.0, 1.0], 1),  # a NaN loss
        ([1.0, 2.0, 4.0], [0.5, 1.0, 1.0], 3),  # horizon >= n
    ],
)
def test_undefined_cases_are_nan(a: list[float], b: list[float], horizon: int) -> None:
    result = diebold_mariano(a, b, horizon=horizon)
    assert math.isnan(result.statistic)
    assert math.isnan(result.p_value)
    assert result.n == len(a)


def test_bad_input_raises_teaching_errors() -> None:
    with pytest.raises(DataFormatError, match="same periods"):
        diebold_mariano([1.0, 2.0], [1.0, 2.0, 3.0])
    with pytest.raises(DataFormatError, match="one-dimensional"):
        diebold_mariano(np.ones((2, 2)), np.ones((2, 2)))
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ConfigError, match="horizon"):
            diebold_mariano([1.0, 2.0, 3.0], [1.0, 1.0, 1.0], horizon=bad)  # type: ignore[arg-type]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(0.0, 10.0), min_size=5, max_size=60),
    st.integers(0, 2**31 - 1),
    st.integers(1, 4),
)
def test_p_value_is_a_probability_and_the_sign_follows_the_mean(
    losses: list[float], seed: int, horizon: int
) -> None:
    a = np.asarray(losses)
    b = np.random.default_rng(seed).permutation(a) + 0.01
    result = diebold_mariano(a, b, horizon=horizon)
    if math.isnan(result.statistic):
        return
    assert 0.0 <= result.p_value <= 1.0
    assert np.sign(result.statistic) == np.sign(result.mean_difference)
