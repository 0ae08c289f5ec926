"""Risk measures: pinned values on a hand-checked series, edge cases, NaN policy and hypothesis properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from alphaloom.core.exceptions import ConfigError, DataFormatError
from alphaloom.risk import (
    annualised_volatility,
    cagr,
    calmar_ratio,
    drawdown_series,
    equity_curve,
    exposure,
    hit_rate,
    max_drawdown,
    max_drawdown_duration,
    sharpe_ratio,
    sortino_ratio,
    total_return,
    turnover,
)

# Equity 1.1, 0.88, 0.924, 0.924, 1.0164: peak 1.1 from bar 0, under water on bars 1-4.
R = np.array([0.1, -0.2, 0.05, 0.0, 0.1])

returns_st = arrays(
    np.float64,
    st.integers(2, 200),
    elements=st.floats(-0.99, 1.0, allow_nan=False, allow_infinity=False),
)


def test_pinned_values_on_a_hand_checked_series() -> None:
    np.testing.assert_allclose(equity_curve(R, 100.0), [110.0, 88.0, 92.4, 92.4, 101.64], rtol=1e-12)
    assert total_return(R) == pytest.approx(0.0164, rel=1e-12)
    np.testing.assert_allclose(drawdown_series(R), [0.0, 0.2, 0.16, 0.16, 0.076], rtol=1e-12, atol=1e-15)
    assert max_drawdown(R) == pytest.approx(0.2, rel=1e-12)
    assert max_drawdown_duration(R) == 4
    assert hit_rate(R) == pytest.approx(0.75)
    assert cagr(R, periods_per_year=5) == pytest.approx(0.0164, rel=1e-12)
    assert cagr(R, periods_per_year=10) == pytest.approx(1.0164**2 - 1.0, rel=1e-12)
    assert calmar_ratio(R, periods_per_year=5) == pytest.approx(0.0164 / 0.2, rel=1e-12)
    mean, std = R.mean(), R.std(ddof=1)
    assert annualised_volatility(R, 252) == pytest.approx(std * math.sqrt(252), rel=1e-12)
    assert sharpe_ratio(R, 252) == pytest.approx(mean / std * math.sqrt(252), rel=1e-12)
    assert sharpe_ratio(R, 252, risk_free_rate=0.0252) == pytest.approx(
        (mean - 0.0001) / std * math.sqrt(252), rel=1e-12
    )
    downside = math.sqrt((0.2**2) / 5)
    assert sortino_ratio(R, 252) == pytest.approx(mean / downside * math.sqrt(252), rel=1e-12)


def test_a_first_bar_loss_is_a_drawdown() -> None:
    assert max_drawdown([-0.1, 0.05]) == pytest.approx(0.1)
    assert max_drawdown_duration([-0.1, 0.05, 0.1]) == 2


def test_undefined_measures_are_nan_without_warnings() -> None:
    flat = np.zeros(10)
    for value in (
        sharpe_ratio(flat),
        sortino_ratio(flat),
        calmar_ratio(flat),
        hit_rate(flat),
        sharpe_ratio([0.01]),
        annualised_volatility([0.01]),
        cagr([]),
        turnover([]),
        exposure([]),
        sortino_ratio([0.01, 0.02]),
    ):
        assert math.isnan(value)
    assert total_return([]) == 0.0
    assert max_drawdown([]) == 0.0
    assert max_drawdown_duration([]) == 0
    assert equity_curve([], 5.0).shape == (0,)


def test_nan_propagates_and_is_never_read_as_flat() -> None:
    r = np.array([0.01, np.nan, 0.02])
    for fn in (
        total_return,
        cagr,
        annualised_volatility,
        sharpe_ratio,
        sortino_ratio,
        max_drawdown,
        hit_rate,
    ):
        assert math.isnan(fn(r)), fn.__name__
    assert math.isnan(exposure([0.0, np.nan]))
    with pytest.raises(DataFormatError, match="NaN"):
        max_drawdown_duration(r)


def test_wipe_out_gives_minus_one_cagr_and_full_drawdown() -> None:
    r = [0.1, -1.0, 0.0]
    assert cagr(r) == -1.0
    assert max_drawdown(r) == 1.0
    assert total_return(r) == -1.0


def test_turnover_and_exposure() -> None:
    assert turnover([1.0, 1.0, 0.0, -1.0]) == pytest.approx((1 + 0 + 1 + 1) / 4)
    assert turnover([1.0, 1.0], initial_weight=1.0) == 0.0
    # With drift: weights before each rebalance differ from the last weights after it.
    assert turnover([1.0, 1.0], before=[0.0, 1.1]) == pytest.approx((1.0 + 0.1) / 2)
    with pytest.raises(DataFormatError, match="shape"):
        turnover([1.0, 1.0], before=[0.0])
    assert exposure([0.0, 0.5, -0.2, 0.0]) == 0.5
    assert exposure([0.0, 1e-9, 1.0], tolerance=1e-6) == pytest.approx(1 / 3)


@pytest.mark.parametrize("bad", [0, -252, math.nan, math.inf, "252"])
def test_periods_per_year_must_be_positive(bad: object) -> None:
    with pytest.raises(ConfigError, match="periods_per_year"):
        sharpe_ratio(R, bad)  # type: ignore[arg-type]


def test_inputs_must_be_vectors() -> None:
    with pytest.raises(DataFormatError, match="one-dimensional"):
        total_return(np.zeros((2, 2)))


@settings(max_examples=60, deadline=None)
@given(r=returns_st)
def test_drawdown_is_a_fraction_and_max_drawdown_its_maximum(r: np.ndarray) -> None:
    dd = drawdown_series(r)
    assert dd.shape == r.shape
    assert ((dd >= 0.0) & (dd <= 1.0)).all()
    assert max_drawdown(r) == dd.max()
    assert 0 <= max_drawdown_duration(r) <= len(r)
    assert (max_drawdown_duration(r) == 0) == (max_drawdown(r) == 0.0)


@settings(max_examples=60, deadline=None)
@given(r=returns_st, scale=st.floats(1e-3, 1e3))
def test_sharpe_is_invariant_to_positive_scaling(r: np.ndarray, scale: float) -> None:
    assume(np.std(r, ddof=1) > 1e-6)
    base = sharpe_ratio(r, 252)
    assert sharpe_ratio(r * scale, 252) == pytest.approx(base, rel=1e-9, abs=1e-9)
    assert sharpe_ratio(-r, 252) == pytest.approx(-base, rel=1e-9, abs=1e-9)
    assume(np.any(r < -1e-6))
    assert sortino_ratio(r * scale, 252) == pytest.approx(sortino_ratio(r, 252), rel=1e-9, abs=1e-9)


@settings(max_examples=60, deadline=None)
@given(r=returns_st, split=st.integers(0, 200), initial=st.floats(1.0, 1e7))
def test_equity_curve_compounds_and_chains(r: np.ndarray, split: int, initial: float) -> None:
    equity = equity_curve(r, initial)
    assert equity[-1] == pytest.approx(initial * np.prod(1.0 + r), rel=1e-9)
    assert equity[-1] / initial - 1.0 == pytest.approx(total_return(r), rel=1e-9, abs=1e-12)
    np.testing.assert_allclose(equity[1:] / equity[:-1] - 1.0, r[1:], rtol=1e-9, atol=1e-12)
    k = min(split, len(r))
    head = equity_curve(r[:k], initial)
    start = head[-1] if k else initial
    np.testing.assert_allclose(np.concatenate([head, equity_curve(r[k:], start)]), equity, rtol=1e-9)


@settings(max_examples=40, deadline=None)
@given(r=returns_st)
def test_cagr_matches_total_return_over_one_year(r: np.ndarray) -> None:
    assume(total_return(r) > -1.0)
    assert cagr(r, periods_per_year=len(r)) == pytest.approx(total_return(r), rel=1e-9, abs=1e-12)


@settings(max_examples=40, deadline=None)
@given(
    w=arrays(np.float64, st.integers(1, 100), elements=st.floats(-2.0, 2.0, allow_nan=False)),
)
def test_turnover_and_exposure_bounds(w: np.ndarray) -> None:
    assert 0.0 <= exposure(w) <= 1.0
    assert 0.0 <= turnover(w) <= 4.0
    assert turnover(w, before=w) == 0.0
