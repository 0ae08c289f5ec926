"""Fixtures for the data package: the shipped samples (loaded once), small hand-made frames, a fresh store."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from alphaloom.data import DuckDBBarStore, load_sample

MakeBars = Callable[..., pd.DataFrame]


@pytest.fixture(scope="session")
def sample_bars() -> pd.DataFrame:
    """All three shipped sample sets as one bars frame. Tests must not modify it (copy first)."""
    return load_sample()


@pytest.fixture
def make_bars() -> MakeBars:
    """Build a clean daily bars frame: ``make_bars("AAPL", n=5, start="2020-01-01", close=100.0)``."""

    def build(
        symbol: str = "AAA",
        n: int = 5,
        start: str = "2020-01-06",
        close: float = 100.0,
        freq: str = "D",
        volume: float | None = 1000.0,
    ) -> pd.DataFrame:
        closes = close * np.exp(np.linspace(0.0, 0.01 * (n - 1), n))
        opens = closes * 0.995
        return pd.DataFrame(
            {
                "symbol": symbol,
                "ts": pd.date_range(start, periods=n, freq=freq, tz="UTC").astype("datetime64[ns, UTC]"),
                "open": opens,
                "high": closes * 1.01,
                "low": opens * 0.99,
                "close": closes,
                "volume": np.nan if volume is None else volume,
            }
        )

    return build


@pytest.fixture
def store(tmp_path: Path) -> Iterator[DuckDBBarStore]:
    """A fresh file-backed store, closed after the test."""
    with DuckDBBarStore(tmp_path / "db" / "store.duckdb") as s:
        yield s
