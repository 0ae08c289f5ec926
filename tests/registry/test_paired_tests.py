"""Size and power of the paired Sharpe-difference tests, on resampled real return pairs (SPY, IWM).

The population is the real daily return pairs of SPY and IWM, 2001-2021 (fat tails, volatility clustering and
their correlation intact), each series shifted and scaled so that its Sharpe ratio on the population is a
chosen value. Samples are drawn from it with the stationary block bootstrap, so the null is exactly true (or
false by a known gap) while the returns keep their real shape.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alphaloom.core.exceptions import ConfigError, DataFormatError
from alphaloom.data.sample import load_sample
from alphaloom.risk import measures

N_SIMS = 400
N_BARS = 500
LEVEL = 0.05


@pytest.fixture(scope="module")
def real_pairs() -> np.ndarray:
    bars = load_sample("us_equities_daily")
    wide = (
        bars[bars["symbol"].isin(["SPY", "IWM"])].pivot(index="ts", columns="symbol", values="close").dropna()
    )
    returns = wide.pct_change().dropna()
    return returns[["SPY", "IWM"]].to_numpy()


def _with_sharpe(r: np.ndarray, sharpe_per_bar: float) -> np.ndarray:
    z = (r - r.mean()) / r.std(ddof=1)
    return 0.01 * (z + sharpe_per_bar)  # 1 % daily volatility, population Sharpe exactly `sharpe_per_bar`


def _rejection_rates(pairs: np.ndarray, sharpe_a: float, sharpe_b: float, seed: int) -> dict[str, float]:
    a_pop, b_pop = _with_sharpe(pairs[:, 0], sharpe_a), _with_sharpe(pairs[:, 1], sharpe_b)
    rng = np.random.default_rng(seed)
    hits = {"jkm": 0, "ledoit_wolf": 0, "bootstrap": 0}
    for i in range(N_SIMS):
        # A stationary-bootstrap draw of N_BARS consecutive-ish real days (mean block 10 days).
        idx = measures._stationary_indices(rng, 1, len(a_pop), 10)[0][:N_BARS]
        a, b = a_pop[idx], b_pop[idx]
        hits["jkm"] += measures.sharpe_difference_test(a, b, method="jkm").p_value < LEVEL
        hits["ledoit_wolf"] += measures.sharpe_difference_test(a, b).p_value < LEVEL
        boot = measures.paired_bootstrap_sharpe_difference(a, b, n_resamples=299, seed=i)
        hits["bootstrap"] += boot.p_value < LEVEL
    return {k: v / N_SIMS for k, v in hits.items()}


def test_tests_have_their_nominal_size_under_the_null(real_pairs) -> None:
    rates = _rejection_rates(real_pairs, 0.04, 0.04, seed=20240601)
    print(f"\nrejection rate at 5% under H0 (equal Sharpe), {N_SIMS} samples of {N_BARS} bars: {rates}")
    # Binomial standard error at 400 draws is 1.1 points; allow about 3 of them either side.
    for name, rate in rates.items():
        assert 0.015 <= rate <= 0.085, (name, rate)


def test_tests_have_power_against_a_real_gap(real_pairs) -> None:
    # A per-bar Sharpe gap of 0.05 (0.8 a year at 252 bars) over 500 bars.
    rates = _rejection_rates(real_pairs, 0.04 + 0.05, 0.04, seed=7)
    print(f"\nrejection rate at 5% with a Sharpe gap of 0.05 per bar: {rates}")
    for name, rate in rates.items():
        assert rate >= 0.7, (name, rate)


def test_one_sided_p_values_point_the_right_way(real_pairs) -> None:
    a = _with_sharpe(real_pairs[:N_BARS, 0], 0.15)
    b = _with_sharpe(real_pairs[:N_BARS, 1], 0.0)
    for method in ("jkm", "ledoit_wolf"):
        greater = measures.sharpe_difference_test(a, b, method=method, alternative="greater")
        less = measures.sharpe_difference_test(a, b, method=method, alternative="less")
        assert greater.p_value < 0.05 < less.p_value
        assert math.isclose(greater.p_value + less.p_value, 1.0, rel_tol=1e-12)
    boot_g = measures.paired_bootstrap_sharpe_difference(a, b, alternative="greater")
    boot_l = measures.paired_bootstrap_sharpe_difference(a, b, alternative="less")
    assert boot_g.p_value < 0.05 < boot_l.p_value
    assert boot_g.low < boot_g.difference < boot_g.high


def test_jkm_matches_the_memmel_formula_by_hand(real_pairs) -> None:
    a, b = real_pairs[:750, 0], real_pairs[:750, 1]
    sa, sb = a.mean() / a.std(ddof=1), b.mean() / b.std(ddof=1)
    rho = np.corrcoef(a, b)[0, 1]
    var = (2 * (1 - rho) + 0.5 * (sa**2 + sb**2 - 2 * sa * sb * rho**2)) / 750
    res = measures.sharpe_difference_test(a, b, method="jkm")
    assert math.isclose(res.statistic, (sa - sb) / math.sqrt(var), rel_tol=1e-12)
    assert math.isclose(
        res.p_value, 2 * (1 - 0.5 * (1 + math.erf(abs(res.statistic) / math.sqrt(2)))), rel_tol=1e-9
    )


def test_minimum_sample_size_grows_as_the_gap_shrinks(real_pairs) -> None:
    a, b = real_pairs[:1000, 0], real_pairs[:1000, 1]
    sizes = [measures.sharpe_difference_sample_size(a, b, difference=d) for d in (0.2, 0.1, 0.05)]
    assert sizes[0] < sizes[1] < sizes[2]
    # Halving the gap quadruples the sample (to within the rounding up).
    assert abs(sizes[2] / sizes[1] - 4.0) < 0.01
    assert measures.sharpe_difference_sample_size(a, a) == math.inf or math.isnan(
        measures.sharpe_difference_sample_size(a, a)
    )


def test_paired_tests_refuse_unpaired_input() -> None:
    with pytest.raises(DataFormatError, match="same bars"):
        measures.sharpe_difference_test(np.zeros(10), np.zeros(11))
    with pytest.raises(ConfigError, match="Did you mean 'jkm'"):
        measures.sharpe_difference_test(np.ones(10), np.ones(10), method="jk")
    with pytest.raises(ConfigError, match="alternative"):
        measures.paired_bootstrap_sharpe_difference(np.ones(10), np.ones(10), alternative="bigger")


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.floats(-0.2, 0.2, allow_nan=False), min_size=6, max_size=60),
    st.floats(-0.05, 0.05, allow_nan=False),
)
def test_swapping_the_arms_flips_the_statistic(values: list[float], shift: float) -> None:
    a = np.asarray(values)
    b = np.roll(a, 1) + shift
    for method in ("jkm", "ledoit_wolf"):
        ab = measures.sharpe_difference_test(a, b, method=method)
        ba = measures.sharpe_difference_test(b, a, method=method)
        if math.isnan(ab.statistic):
            assert math.isnan(ba.statistic)
            continue
        assert math.isclose(ab.statistic, -ba.statistic, rel_tol=1e-9, abs_tol=1e-12)
        assert math.isclose(ab.p_value, ba.p_value, rel_tol=1e-9)
        assert 0.0 <= ab.p_value <= 1.0
