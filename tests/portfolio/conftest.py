"""Real daily returns for the optimiser tests: the shipped US equities sample and the StockNet panel."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from alphaloom.data.sample import load_sample

STOCKNET = Path("/work/shared/data/stocks/stocknet_88_daily_2012-2017.csv.gz")


@pytest.fixture(scope="session")
def equity_returns() -> pd.DataFrame:
    """Daily simple returns of the 14 shipped US stocks/ETFs on their common dates since 2013 (1.7k rows)."""
    bars = load_sample("us_equities_daily")
    close = bars.pivot(index="ts", columns="symbol", values="close")
    close = close[close.index >= pd.Timestamp("2013-01-01", tz="UTC")].dropna()
    return close.pct_change().iloc[1:]


@pytest.fixture(scope="session")
def stock_returns() -> pd.DataFrame:
    """Daily returns of the 81 StockNet stocks with a complete 2012-2017 history (1,257 rows)."""
    if STOCKNET.exists():
        raw = pd.read_csv(STOCKNET)
        px = raw.pivot(index="timestamp", columns="symbol", values="adj_close").dropna(axis=1)
        return px.pct_change().iloc[1:]
    # the shipped sample is the fallback on machines without the shared data
    bars = load_sample("us_equities_daily")
    close = bars.pivot(index="ts", columns="symbol", values="close").dropna()
    return close.pct_change().iloc[1:]


def build_panel(real: pd.DataFrame, n_assets: int, days: int = 2520, seed: int = 0) -> pd.DataFrame:
    """The benchmark's panel (bench/portfolio_opt.py): real rows block-bootstrapped to ``days``, extra columns
    mixing two real stocks (one time-shifted); identical output for the same real returns and seed."""
    base_real = real.to_numpy()
    rng = np.random.default_rng(seed)
    t_real, n_real = base_real.shape
    rows = list(range(t_real))
    while len(rows) < days:
        start = int(rng.integers(t_real))
        length = int(rng.geometric(1 / 21))
        rows += [(start + i) % t_real for i in range(length)]
    base = base_real[rows[:days]]
    cols = [base[:, i] for i in range(min(n_real, n_assets))]
    while len(cols) < n_assets:
        i, j = rng.choice(n_real, size=2, replace=False)
        shift = int(rng.integers(1, days))
        cols.append(0.5 * base[:, i] + 0.5 * np.roll(base[:, j], shift))
    return pd.DataFrame(np.column_stack(cols), columns=[f"A{k:03d}" for k in range(n_assets)])


@pytest.fixture(scope="session")
def panel_500(stock_returns: pd.DataFrame) -> pd.DataFrame:
    """500 assets x 2,520 days built from the real StockNet returns exactly as the benchmark builds it."""
    return build_panel(stock_returns, 500)
