"""Rebalancing policies on real prices: when each trades, and how far."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alphaloom.core.exceptions import ConfigError, DataFormatError
from alphaloom.data.sample import load_sample
from alphaloom.portfolio import (
    CalendarConfig,
    CalendarPolicy,
    DriftConfig,
    DriftPolicy,
    NoTradeBandConfig,
    NoTradeBandPolicy,
    RebalanceContext,
    VolatilityTargetConfig,
    VolatilityTargetPolicy,
)


@pytest.fixture(scope="module")
def prices() -> pd.DataFrame:
    bars = load_sample("us_equities_daily")
    close = bars.pivot(index="ts", columns="symbol", values="close")[["SPY", "AAPL", "IWM", "USO"]]
    return close[close.index >= pd.Timestamp("2012-01-01", tz="UTC")].dropna().iloc[:750]


TARGET = pd.Series({"SPY": 0.4, "AAPL": 0.2, "IWM": 0.2, "USO": 0.2})


def test_calendar_trades_every_n_bars(prices: pd.DataFrame) -> None:
    path = CalendarPolicy(CalendarConfig(every=21)).simulate(prices, TARGET)
    traded = np.flatnonzero(path.turnover.to_numpy() > 0)
    assert traded[0] == 0
    assert set(traded) <= set(range(0, len(prices), 21))
    np.testing.assert_allclose(path.orders.iloc[21].to_numpy(), TARGET.to_numpy())


def test_drift_policy_keeps_every_weight_within_threshold_after_deciding(prices: pd.DataFrame) -> None:
    path = DriftPolicy(DriftConfig(threshold=0.03)).simulate(prices, TARGET)
    dev = (path.weights - TARGET).abs().max(axis=1)
    assert (dev <= 0.03 + 1e-12).all()
    assert 1 < path.n_rebalances < len(prices) / 2


def test_no_trade_band_trades_less_and_only_to_the_edge(prices: pd.DataFrame) -> None:
    band = NoTradeBandPolicy(NoTradeBandConfig(band=0.03)).simulate(prices, TARGET)
    drift = DriftPolicy(DriftConfig(threshold=0.03)).simulate(prices, TARGET)
    assert band.turnover.iloc[1:].sum() < drift.turnover.iloc[1:].sum()
    held = band.weights.iloc[1:]
    assert ((held - TARGET).abs() <= 0.03 + 1e-12).all().all()
    # a traded asset lands on the band's edge, untouched assets are not traded
    for t in np.flatnonzero(band.turnover.to_numpy() > 0)[1:6]:
        row = band.orders.iloc[t]
        prev = band.weights.iloc[t - 1]
        moved = (row - TARGET).abs()
        assert (np.isclose(moved, 0.03) | np.isclose(row, prev * 0 + row)).all()
        assert np.isclose(moved.max(), 0.03)


def test_volatility_target_scales_exposure(prices: pd.DataFrame) -> None:
    policy = VolatilityTargetPolicy(
        VolatilityTargetConfig(target_volatility=0.05, max_leverage=1.0, threshold=0.0)
    )
    path = policy.simulate(prices, TARGET)
    later = path.orders.iloc[25:].dropna()  # the EWMA covariance is used from bar 20 on
    gross = later.abs().sum(axis=1)
    assert (gross < 1.0).all()  # a 5 % volatility goal keeps this equity book below full exposure
    cov = np.cov((prices.pct_change().iloc[1:]).to_numpy(), rowvar=False)
    w = later.iloc[-1].to_numpy()
    realised = np.sqrt(w @ cov @ w * 252)
    assert 0.02 < realised < 0.10


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    band=st.floats(0.005, 0.2),
    noise=st.lists(st.floats(-0.15, 0.15), min_size=4, max_size=4),
)
def test_band_property_never_moves_inside_band_assets(band: float, noise: list[float]) -> None:
    current = TARGET + np.array(noise)
    trades = NoTradeBandPolicy(NoTradeBandConfig(band=band)).rebalance(current, TARGET, RebalanceContext(1))
    inside = (current - TARGET).abs() <= band
    assert (trades[inside] == 0).all()
    new = current + trades
    assert ((new - TARGET).abs() <= band + 1e-12).all()
    # the trade is the smallest that restores the band
    assert np.allclose(trades.abs(), ((current - TARGET).abs() - band).clip(lower=0))


def test_bad_inputs(prices: pd.DataFrame) -> None:
    with pytest.raises(DataFormatError, match="same assets"):
        DriftPolicy().rebalance(TARGET.drop("USO"), TARGET, RebalanceContext(0))
    bad = prices.copy()
    bad.iloc[3, 0] = np.nan
    with pytest.raises(DataFormatError, match="positive and finite"):
        DriftPolicy().simulate(bad, TARGET)
    with pytest.raises(ConfigError, match="takes a DriftConfig"):
        DriftPolicy(CalendarConfig())  # type: ignore[arg-type]
