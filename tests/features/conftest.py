"""Bars for the feature tests: real daily stocks and forex, and seeded synthetic walks."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

DATA = Path("/work/shared/data")
STOCKS = DATA / "stocks" / "lean_us_equities_daily_raw_1998-2021.csv.gz"
FOREX = DATA / "forex" / "lean_fxcm_daily_bidask_2007-2018.csv.gz"
COLUMNS = ["symbol", "ts", "open", "high", "low", "close", "volume"]


def _canonical(path: Path) -> pd.DataFrame:
    if not path.exists():
        pytest.skip(f"real market data not available at {path}")
    raw = pd.read_csv(path)
    raw["ts"] = pd.to_datetime(raw["timestamp"], utc=True)
    frame = raw[COLUMNS].astype({c: "float64" for c in COLUMNS[2:]})
    return frame.sort_values(["symbol", "ts"], kind="stable").reset_index(drop=True)


@pytest.fixture(scope="session")
def stock_panel() -> pd.DataFrame:
    return _canonical(STOCKS)


@pytest.fixture(scope="session")
def fx_panel() -> pd.DataFrame:
    return _canonical(FOREX)


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
