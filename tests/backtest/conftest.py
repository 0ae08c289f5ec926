"""Bars for the backtest tests: real daily SPY and IWM (the shipped sample) and seeded synthetic walks."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest

from alphaloom.data.sample import load_sample


@pytest.fixture(scope="session")
def stock_panel() -> pd.DataFrame:
    """The shipped Lean US equities panel (real, split- and dividend-adjusted daily bars)."""
    return load_sample("us_equities_daily")


@pytest.fixture(scope="session")
def spy(stock_panel: pd.DataFrame) -> pd.DataFrame:
    """SPY daily bars 2010-2014 (1,258 real bars)."""
    rows = stock_panel[
        (stock_panel["symbol"] == "SPY") & stock_panel["ts"].between("2010-01-01", "2014-12-31")
    ]
    return rows.reset_index(drop=True)


@pytest.fixture(scope="session")
def iwm(stock_panel: pd.DataFrame) -> pd.DataFrame:
    """IWM daily bars 2010-2010 (252 real bars)."""
    rows = stock_panel[
        (stock_panel["symbol"] == "IWM") & stock_panel["ts"].between("2010-01-01", "2010-12-31")
    ]
    return rows.reset_index(drop=True)


def make_bars(seed: int, n: int, *, symbol: str = "SYN", drift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 50.0 * np.exp(np.cumsum(rng.normal(drift, 0.02, n)))
    open_ = close * np.exp(rng.normal(0.0, 0.01, n))
    high = np.maximum(open_, close) * 1.01
    low = np.minimum(open_, close) * 0.99
    ts = pd.date_range("2021-01-04", periods=n, freq="D", tz="UTC", name="ts")
    return pd.DataFrame(
        {"symbol": symbol, "ts": ts, "open": open_, "high": high, "low": low, "close": close, "volume": 1e6}
    )


@pytest.fixture(scope="session")
def synthetic() -> Callable[..., pd.DataFrame]:
    return make_bars
