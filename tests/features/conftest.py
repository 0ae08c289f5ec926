"""Bars for the feature tests: real daily stocks and forex (the shipped sample) and seeded synthetic walks."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest

from alphaloom.data.sample import load_sample


@pytest.fixture(scope="session")
def stock_panel() -> pd.DataFrame:
    return load_sample("us_equities_daily")


@pytest.fixture(scope="session")
def fx_panel() -> pd.DataFrame:
    return load_sample("fx_daily")


@pytest.fixture(scope="session")
def spy(stock_panel: pd.DataFrame) -> pd.DataFrame:
    """1,500 daily SPY bars from 1998 (real OHLCV)."""
    return stock_panel[stock_panel["symbol"] == "SPY"].head(1500).reset_index(drop=True)


@pytest.fixture(scope="session")
def eurusd(fx_panel: pd.DataFrame) -> pd.DataFrame:
    """800 daily EURUSD bars (real mid prices, no volume)."""
    return fx_panel[fx_panel["symbol"] == "EURUSD"].head(800).reset_index(drop=True)


def make_bars(seed: int, n: int, *, symbol: str = "SYN", start_price: float = 100.0) -> pd.DataFrame:
    """A seeded random walk with consistent OHLC and positive volume."""
    rng = np.random.default_rng(seed)
    log_close = np.log(start_price) + np.cumsum(rng.normal(0.0, 0.015, n))
    close = np.exp(log_close)
    open_ = close * np.exp(rng.normal(0.0, 0.005, n))
    high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0.0, 0.006, n)))
    low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0.0, 0.006, n)))
    volume = rng.lognormal(12.0, 0.5, n)
    ts = pd.date_range("2020-01-01", periods=n, freq="D", tz="UTC", name="ts")
    return pd.DataFrame(
        {
            "symbol": symbol,
            "ts": ts,
            "open": open_,
            "high": high,
            "low": low,
            "close": close,
            "volume": volume,
        }
    )


@pytest.fixture(scope="session")
def synthetic() -> Callable[..., pd.DataFrame]:
    return make_bars
