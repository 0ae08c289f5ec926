"""Risk measures: pinned values on a hand-checked series, edge cases, NaN policy and hypothesis properties.

The Sharpe-inference tools (PSR, DSR, PBO, bootstrap) are checked against independent computations written
here with scipy (a test-only dependency), against published values and properties, and on seeded panels
whose answer is known by construction.
"""

from __future__ import annotations

import itertools
import math
from functools import partial

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import integrate, stats

from alphaloom.core.exceptions import ConfigError, DataFormatError
from alphaloom.risk import (
    SUMMARY_UNITS,
    annualised_volatility,
    bootstrap_confidence_interval,
    cagr,
    calmar_ratio,
    deflated_sharpe_ratio,
    deflated_sharpe_ratio_from_trials,
    drawdown_series,
    equity_curve,
    expected_max_sharpe,
    exposure,
    hit_rate,
    max_drawdown,
    max_drawdown_duration,
    per_period_sharpe,
    probabilistic_sharpe_ratio,
    probability_of_backtest_overfitting,
    sharpe_ratio,
    sortino_ratio,
    summary_statistics,
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


# --- Probabilistic and deflated Sharpe ratios ---------------------------------------------------------------


def _psr_reference(r: np.ndarray, benchmark: float) -> float:
    # Bailey & López de Prado (2012), eq. (3), written independently with scipy's moment estimators.
    sr = np.mean(r) / np.std(r, ddof=1)
    skew = stats.skew(r)
    kurt = stats.kurtosis(r, fisher=False)
    z = (sr - benchmark) * math.sqrt(len(r) - 1) / math.sqrt(1 - skew * sr + (kurt - 1) / 4 * sr**2)
    return float(stats.norm.cdf(z))


def _expected_max_reference(n: int, variance: float) -> float:
    g = np.euler_gamma
    return math.sqrt(variance) * (
        (1 - g) * stats.norm.ppf(1 - 1 / n) + g * stats.norm.ppf(1 - 1 / (n * math.e))
    )


@pytest.fixture
def fat_tailed() -> np.ndarray:
    # 3 years of daily returns, Student-t(4) plus six crashes: skewness -0.74, kurtosis 8.4, annual Sharpe
    # 0.17, so the PSR's corrections for fat tails and skew matter.
    rng = np.random.default_rng(7)
    r = 0.01 * rng.standard_t(4, 756) + 0.0012
    r[rng.choice(756, 6, replace=False)] -= 0.07
    return r


def test_psr_matches_an_independent_scipy_computation(fat_tailed: np.ndarray) -> None:
    assert stats.skew(fat_tailed) < -0.5
    assert stats.kurtosis(fat_tailed) > 3.0
    for benchmark in (0.0, 0.02, per_period_sharpe(0.5, 252), -0.03):
        assert probabilistic_sharpe_ratio(fat_tailed, benchmark) == pytest.approx(
            _psr_reference(fat_tailed, benchmark), rel=1e-10, abs=1e-14
        )


def test_psr_is_one_half_when_the_sharpe_equals_the_benchmark(fat_tailed: np.ndarray) -> None:
    sr = sharpe_ratio(fat_tailed, periods_per_year=1)
    assert probabilistic_sharpe_ratio(fat_tailed, sr) == pytest.approx(0.5, abs=1e-12)


def test_per_period_sharpe_deannualises() -> None:
    assert per_period_sharpe(2.0, 4) == pytest.approx(1.0)
    assert per_period_sharpe(1.0) == pytest.approx(1 / math.sqrt(252))
    with pytest.raises(ConfigError, match="periods_per_year"):
        per_period_sharpe(1.0, 0)


def test_expected_max_sharpe_reproduces_the_published_example() -> None:
    # Bailey & López de Prado (2014), section 5: 100 trials, annualised Sharpe variance 1/2, daily bars,
    # give an expected maximum per-bar Sharpe ratio of about 0.1132.
    assert expected_max_sharpe(100, 0.5 / 250) == pytest.approx(0.1132, abs=5e-5)
    for n in (2, 7, 100, 10_000):
        assert expected_max_sharpe(n, 0.3) == pytest.approx(_expected_max_reference(n, 0.3), rel=1e-12)


@pytest.mark.parametrize("n", [10, 100, 1000])
def test_expected_max_sharpe_approximates_the_exact_expected_maximum(n: int) -> None:
    # E[max of n standard normals] = integral of x * n * pdf(x) * cdf(x) ** (n - 1); the closed form of the
    # paper is an approximation, within 3 % from 10 trials on.
    exact, _ = integrate.quad(lambda x: x * n * stats.norm.pdf(x) * stats.norm.cdf(x) ** (n - 1), -10, 10)
    assert expected_max_sharpe(n, 1.0) == pytest.approx(exact, rel=0.03)


def test_expected_max_sharpe_grows_with_the_number_of_trials() -> None:
    values = [expected_max_sharpe(n, 1.0) for n in range(1, 2001)]
    assert values[0] == 0.0
    assert np.all(np.diff(values) > 0.0)
    assert expected_max_sharpe(50, 0.0) == 0.0
    # Far beyond where 1 - 1/n rounds to 1.0 in floating point, the value stays finite and growing.
    assert expected_max_sharpe(10**12, 1.0) < expected_max_sharpe(10**18, 1.0) < math.inf
    assert math.isnan(expected_max_sharpe(5, math.nan))


def test_dsr_deflates_the_psr_by_the_number_of_trials(fat_tailed: np.ndarray) -> None:
    psr = probabilistic_sharpe_ratio(fat_tailed)
    assert deflated_sharpe_ratio(fat_tailed, 1, 0.01) == psr
    previous = psr
    for n in (2, 10, 100, 1000):
        dsr = deflated_sharpe_ratio(fat_tailed, n, 1e-4)
        assert dsr == pytest.approx(_psr_reference(fat_tailed, _expected_max_reference(n, 1e-4)), rel=1e-10)
        assert dsr < previous
        previous = dsr


def test_dsr_from_trials_estimates_the_trial_variance_and_picks_the_best() -> None:
    rng = np.random.default_rng(3)
    trials = rng.normal(0.0, 0.01, size=(1000, 40))
    trials[:, 17] += 0.002
    result = deflated_sharpe_ratio_from_trials(trials)
    sharpes = trials.mean(axis=0) / trials.std(axis=0, ddof=1)
    assert result.chosen == 17
    assert result.n_trials == 40
    assert result.sharpe_per_bar == pytest.approx(sharpes[17], rel=1e-12)
    assert result.sharpe_variance == pytest.approx(np.var(sharpes, ddof=1), rel=1e-10)
    assert result.expected_max_sharpe == pytest.approx(_expected_max_reference(40, result.sharpe_variance))
    assert result.dsr == pytest.approx(deflated_sharpe_ratio(trials[:, 17], 40, result.sharpe_variance))
    assert result.dsr < probabilistic_sharpe_ratio(trials[:, 17])
    # Judging another trial, by index (negative indices count from the end).
    assert deflated_sharpe_ratio_from_trials(trials, chosen=-1).chosen == 39
    single = deflated_sharpe_ratio_from_trials(trials[:, :1])
    assert single.sharpe_variance == 0.0
    assert single.dsr == pytest.approx(probabilistic_sharpe_ratio(trials[:, 0]))


def test_dsr_from_trials_rejects_bad_input_and_propagates_nan() -> None:
    trials = np.random.default_rng(0).normal(size=(50, 3))
    with pytest.raises(DataFormatError, match="n_trials"):
        deflated_sharpe_ratio_from_trials(trials[:, 0])
    with pytest.raises(ConfigError, match="chosen"):
        deflated_sharpe_ratio_from_trials(trials, chosen=3)
    trials[4, 1] = np.nan
    assert math.isnan(deflated_sharpe_ratio_from_trials(trials).dsr)


def test_psr_and_dsr_nan_policy() -> None:
    for r in ([], [0.01], np.zeros(20), [0.01, np.nan, 0.02]):
        assert math.isnan(probabilistic_sharpe_ratio(r))
        assert math.isnan(deflated_sharpe_ratio(r, 10, 1e-4))
    assert math.isnan(deflated_sharpe_ratio([0.01, 0.02, -0.01], 10, math.nan))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_trials": 0, "sharpe_variance": 1.0}, "n_trials"),
        ({"n_trials": 2.5, "sharpe_variance": 1.0}, "n_trials"),
        ({"n_trials": True, "sharpe_variance": 1.0}, "n_trials"),
        ({"n_trials": 5, "sharpe_variance": -0.1}, "sharpe_variance"),
        ({"n_trials": 5, "sharpe_variance": math.inf}, "sharpe_variance"),
        ({"n_trials": 5, "sharpe_variance": "0.1"}, "sharpe_variance"),
    ],
)
def test_expected_max_sharpe_rejects_bad_arguments(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        expected_max_sharpe(**kwargs)  # type: ignore[arg-type]


def test_psr_rejects_a_non_numeric_benchmark() -> None:
    with pytest.raises(ConfigError, match="benchmark_sharpe"):
        probabilistic_sharpe_ratio([0.01, 0.02], "0.0")  # type: ignore[arg-type]


@settings(max_examples=80, deadline=None)
@given(r=returns_st, benchmark=st.floats(-0.5, 0.5), step=st.floats(1e-4, 0.5))
def test_psr_is_a_probability_decreasing_in_the_benchmark_and_odd_in_the_returns(
    r: np.ndarray, benchmark: float, step: float
) -> None:
    assume(np.std(r) > 1e-6)
    psr = probabilistic_sharpe_ratio(r, benchmark)
    assert 0.0 <= psr <= 1.0
    assert probabilistic_sharpe_ratio(r, benchmark + step) <= psr
    # Negating the returns negates the Sharpe ratio and the skewness: the PSR against 0 mirrors.
    assert probabilistic_sharpe_ratio(-r) == pytest.approx(1.0 - probabilistic_sharpe_ratio(r), abs=1e-9)


@settings(max_examples=80, deadline=None)
@given(r=returns_st, shift=st.floats(1e-5, 0.05))
def test_psr_rises_with_the_sharpe_ratio(r: np.ndarray, shift: float) -> None:
    # Shifting the returns up raises the Sharpe ratio and leaves the higher moments alone. The PSR's z-score
    # rises with the Sharpe ratio while skew * SR < 2 (its derivative is proportional to 1 - skew * SR / 2),
    # which holds for any realistic return series.
    assume(np.std(r) > 1e-6)
    skew = stats.skew(r)
    sr0 = sharpe_ratio(r, periods_per_year=1)
    sr1 = sharpe_ratio(r + shift, periods_per_year=1)
    assume(max(skew * sr0, skew * sr1) < 1.9)
    assert probabilistic_sharpe_ratio(r + shift) >= probabilistic_sharpe_ratio(r) - 1e-12


# --- Probability of backtest overfitting --------------------------------------------------------------------


def _pbo_reference(x: np.ndarray, n_splits: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    # CSCV written from the paper's steps, one combination at a time, ranks by scipy.
    blocks = np.array_split(x, n_splits)
    logits, is_perf, oos_perf = [], [], []
    for combo in itertools.combinations(range(n_splits), n_splits // 2):
        train = np.vstack([blocks[i] for i in combo])
        test = np.vstack([blocks[i] for i in range(n_splits) if i not in combo])
        r_is = train.mean(axis=0) / train.std(axis=0, ddof=1)
        r_oos = test.mean(axis=0) / test.std(axis=0, ddof=1)
        best = int(np.argmax(r_is))
        omega = stats.rankdata(r_oos)[best] / (x.shape[1] + 1)
        logits.append(math.log(omega / (1 - omega)))
        is_perf.append(r_is[best])
        oos_perf.append(r_oos[best])
    return np.array(logits), np.array(is_perf), np.array(oos_perf)


def test_pbo_matches_a_step_by_step_reference() -> None:
    x = np.random.default_rng(11).normal(0.0, 0.01, size=(120, 7))
    result = probability_of_backtest_overfitting(x, n_splits=6)
    logits, is_perf, oos_perf = _pbo_reference(x, 6)
    assert result.n_combinations_total == 20
    np.testing.assert_allclose(result.logits, logits, rtol=1e-12)
    np.testing.assert_allclose(result.is_performance, is_perf, rtol=1e-9)
    np.testing.assert_allclose(result.oos_performance, oos_perf, rtol=1e-9)
    assert result.pbo == np.mean(logits <= 0.0)
    # A custom metric sees the same rows; with the Sharpe ratio it agrees with the vectorised default.
    custom = probability_of_backtest_overfitting(
        x, n_splits=6, metric=lambda block: block.mean(axis=0) / block.std(axis=0, ddof=1)
    )
    np.testing.assert_allclose(custom.logits, result.logits, rtol=1e-12)
    np.testing.assert_array_equal(custom.selected, result.selected)


def test_pbo_is_zero_when_one_strategy_truly_dominates() -> None:
    rng = np.random.default_rng(5)
    x = rng.normal(0.0, 0.01, size=(1000, 10))
    x[:, 3] += 0.004
    result = probability_of_backtest_overfitting(x)
    assert result.pbo == 0.0
    assert (result.selected == 3).all()
    np.testing.assert_allclose(result.logits, math.log(10))  # always ranked first of 10 out of sample


def test_pbo_is_near_one_when_in_sample_success_means_out_of_sample_failure() -> None:
    # Noise demeaned over the whole sample: whatever a strategy earns in one half it gives back in the other,
    # so the in-sample winner is an out-of-sample loser by construction.
    x = np.random.default_rng(8).normal(0.0, 0.01, size=(800, 20))
    result = probability_of_backtest_overfitting(x - x.mean(axis=0))
    assert result.pbo > 0.95
    assert np.corrcoef(result.is_performance, result.oos_performance)[0, 1] < 0.0


def test_pbo_of_pure_noise_is_a_coin_flip_on_average() -> None:
    # With no skill the winner's out-of-sample rank is uniform: PBO about 0.5, noisy for any one panel
    # because the combinations share their data.
    pbos = [
        probability_of_backtest_overfitting(
            np.random.default_rng(seed).normal(size=(480, 20)), n_splits=10
        ).pbo
        for seed in range(12)
    ]
    assert 0.35 < float(np.mean(pbos)) < 0.65


def test_pbo_undefined_scores_rank_last_and_leading_rows_are_trimmed() -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(0.0, 0.01, size=(203, 5))
    x[:, 0] = 0.0  # never traded: no volatility, NaN Sharpe ratio
    result = probability_of_backtest_overfitting(x, n_splits=8)
    assert (result.selected != 0).all()
    trimmed = probability_of_backtest_overfitting(x[3:], n_splits=8)
    np.testing.assert_array_equal(result.logits, trimmed.logits)


def test_pbo_samples_combinations_beyond_the_cap_reproducibly() -> None:
    x = np.random.default_rng(4).normal(size=(360, 6))
    a = probability_of_backtest_overfitting(x, n_splits=18, max_combinations=300, seed=1)
    b = probability_of_backtest_overfitting(x, n_splits=18, max_combinations=300, seed=1)
    c = probability_of_backtest_overfitting(x, n_splits=18, max_combinations=300, seed=2)
    assert a.n_combinations_total == math.comb(18, 9)
    assert a.logits.shape == (300,)
    np.testing.assert_array_equal(a.logits, b.logits)
    assert not np.array_equal(a.logits, c.logits)
    full = probability_of_backtest_overfitting(x, n_splits=6)
    assert full.logits.shape == (20,)
    np.testing.assert_array_equal(full.logits, probability_of_backtest_overfitting(x, n_splits=6).logits)


@pytest.mark.parametrize(
    ("x", "kwargs", "error", "match"),
    [
        (np.zeros((100, 1)), {}, DataFormatError, "at least two strategies"),
        (np.zeros(100), {}, DataFormatError, "n_bars, n_strategies"),
        (np.full((100, 3), np.nan), {}, DataFormatError, "NaN"),
        (np.zeros((100, 3)), {"n_splits": 7}, ConfigError, "even"),
        (np.zeros((10, 3)), {"n_splits": 12}, ConfigError, "at most the 10 rows"),
        (np.zeros((100, 3)), {"n_splits": 0}, ConfigError, "n_splits"),
        (np.zeros((100, 3)), {"max_combinations": 0}, ConfigError, "max_combinations"),
        (np.zeros((100, 3)), {"metric": lambda b: b.mean()}, ConfigError, "one score per strategy"),
        (np.zeros((100, 3)), {"metric": "sharpe"}, ConfigError, "callable"),
    ],
)
def test_pbo_rejects_bad_input(x: np.ndarray, kwargs: dict[str, object], error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        probability_of_backtest_overfitting(x, **kwargs)  # type: ignore[arg-type]


# --- Bootstrap confidence intervals ------------------------------------------------------------------------


def _ar1(seed: int, n: int, phi: float) -> np.ndarray:
    e = np.random.default_rng(seed).normal(0.0, 0.01, n)
    y = np.empty(n)
    y[0] = e[0]
    for i in range(1, n):
        y[i] = phi * y[i - 1] + e[i]
    return y + 0.0005


def test_bootstrap_interval_covers_the_true_sharpe_near_the_nominal_rate() -> None:
    mu, sigma, n, runs = 0.0005, 0.01, 500, 150
    true_sharpe = mu / sigma * math.sqrt(252)
    hits = 0
    for seed in range(runs):
        r = np.random.default_rng(1000 + seed).normal(mu, sigma, n)
        ci = bootstrap_confidence_interval(r, n_resamples=300, seed=seed)
        assert ci.low < ci.estimate < ci.high
        hits += ci.low <= true_sharpe <= ci.high
    # 95 % nominal; the binomial standard error over 150 runs is 1.8 %.
    assert 0.89 <= hits / runs <= 0.99


def test_block_bootstrap_widens_the_interval_of_an_autocorrelated_series() -> None:
    y = _ar1(0, 2000, 0.6)
    iid = bootstrap_confidence_interval(y, block_length=1, n_resamples=500)
    for method in ("stationary", "moving_block"):
        block = bootstrap_confidence_interval(y, n_resamples=500, method=method)  # type: ignore[arg-type]
        # The variance of a mean of AR(1) returns is (1 + phi) / (1 - phi) = 4 times the iid one: width x2.
        assert block.high - block.low > 1.4 * (iid.high - iid.low)


def test_bootstrap_is_reproducible_and_takes_any_statistic() -> None:
    r = np.random.default_rng(9).normal(0.0005, 0.01, 300)
    a = bootstrap_confidence_interval(r, n_resamples=200, seed=4)
    b = bootstrap_confidence_interval(r, n_resamples=200, seed=4)
    c = bootstrap_confidence_interval(r, n_resamples=200, seed=5)
    np.testing.assert_array_equal(a.samples, b.samples)
    assert not np.array_equal(a.samples, c.samples)
    assert a.samples.shape == (200,)
    assert a.estimate == sharpe_ratio(r)
    assert a.confidence == 0.95
    crypto = bootstrap_confidence_interval(r, partial(sharpe_ratio, periods_per_year=365), n_resamples=200)
    assert crypto.estimate == pytest.approx(a.estimate * math.sqrt(365 / 252))
    dd = bootstrap_confidence_interval(r, max_drawdown, n_resamples=200, confidence=0.5, block_length=10)
    assert 0.0 <= dd.low <= dd.high <= 1.0
    # Wider confidence, wider interval, on the same resamples.
    narrow = bootstrap_confidence_interval(r, n_resamples=200, seed=4, confidence=0.5)
    assert a.low < narrow.low < narrow.high < a.high


def test_bootstrap_nan_policy() -> None:
    for r in ([], [0.01], [0.01, np.nan, 0.02]):
        ci = bootstrap_confidence_interval(r)
        assert math.isnan(ci.low)
        assert math.isnan(ci.high)
        assert math.isnan(ci.estimate)
        assert ci.samples.shape == (0,)
    flat = bootstrap_confidence_interval(np.zeros(50), n_resamples=50)
    assert math.isnan(flat.low)
    assert math.isnan(flat.estimate)
    assert np.isnan(flat.samples).all()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"confidence": 1.0}, "confidence"),
        ({"confidence": 95}, "confidence"),
        ({"n_resamples": 0}, "n_resamples"),
        ({"block_length": 0}, "block_length"),
        ({"method": "stationnary"}, "Did you mean 'stationary'"),
        ({"statistic": 2.0}, "statistic"),
    ],
)
def test_bootstrap_rejects_bad_arguments(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        bootstrap_confidence_interval(np.zeros(10), **kwargs)  # type: ignore[arg-type]


# --- Summary statistics ------------------------------------------------------------------------------------


def test_summary_statistics_gathers_every_measure_with_its_unit(fat_tailed: np.ndarray) -> None:
    w = np.where(np.arange(fat_tailed.size) % 3 == 0, 0.0, 1.0)
    summary = summary_statistics(fat_tailed, w, periods_per_year=252)
    assert list(summary) == list(SUMMARY_UNITS)
    assert all(isinstance(v, float) for v in summary.values())
    assert summary["n_bars"] == fat_tailed.size
    assert summary["sharpe_annual"] == sharpe_ratio(fat_tailed, 252)
    assert summary["sharpe_per_bar"] == pytest.approx(summary["sharpe_annual"] / math.sqrt(252))
    assert summary["cagr"] == cagr(fat_tailed, 252)
    assert summary["calmar"] == calmar_ratio(fat_tailed, 252)
    assert summary["max_drawdown_duration_bars"] == max_drawdown_duration(fat_tailed)
    assert summary["turnover_per_bar"] == turnover(w)
    assert summary["exposure"] == pytest.approx(2 / 3, abs=1e-3)
    assert summary["skewness"] == pytest.approx(stats.skew(fat_tailed), rel=1e-10)
    assert summary["kurtosis"] == pytest.approx(stats.kurtosis(fat_tailed, fisher=False), rel=1e-10)
    assert summary["probabilistic_sharpe"] == probabilistic_sharpe_ratio(fat_tailed)
    assert summary["deflated_sharpe"] == summary["probabilistic_sharpe"]
    deflated = summary_statistics(fat_tailed, n_trials=50, trials_sharpe_variance=1e-4)
    assert deflated["deflated_sharpe"] == deflated_sharpe_ratio(fat_tailed, 50, 1e-4)
    assert deflated["deflated_sharpe"] < deflated["probabilistic_sharpe"]
    assert math.isnan(deflated["turnover_per_bar"])
    assert math.isnan(deflated["exposure"])


def test_summary_statistics_nan_policy_and_errors() -> None:
    summary = summary_statistics([0.01, np.nan, 0.02])
    assert summary["n_bars"] == 3.0
    assert all(math.isnan(v) for key, v in summary.items() if key != "n_bars")
    empty = summary_statistics([])
    assert empty["total_return"] == 0.0
    assert math.isnan(empty["sharpe_annual"])
    with pytest.raises(ConfigError, match="trials_sharpe_variance"):
        summary_statistics([0.01, 0.02], n_trials=3)
    with pytest.raises(DataFormatError, match="one weight per bar"):
        summary_statistics([0.01, 0.02], [1.0])
