"""Golden statistics: a reference backtest on shipped real data, pinned so any change to fills, costs or
statistics shows up as a failing number (update the pins only for an intended, explained change).

Reference: SPY daily 1998-2021 (shipped Lean sample, 5,849 bars), 20/100-day SMA crossover, long 100% above
and short 50% below, target weights executed at the next open with 1 bp commission (minimum $1) and 2 bps
slippage, $100,000 start.
"""

from __future__ import annotations

import numpy as np
import pytest

from alphaloom.backtest import engine
from alphaloom.backtest.costs import CostModel
from alphaloom.data.sample import load_sample
from alphaloom.features import indicators as ind

GOLDEN = {
    "total_return": 0.19889939444754146,
    "cagr": 0.007847629596243078,
    "volatility": 0.14344451795325924,
    "sharpe": 0.12641698879092916,
    "sortino": 0.17279870619361384,
    "max_drawdown": 0.4543509969235814,
    "max_drawdown_duration": 3565.0,
    "calmar": 0.01727217426478541,
    "turnover": 0.020897255209133332,
    "exposure": 0.9830711354309165,
    "hit_rate": 0.5159713737126899,
    "n_trades": 1746.0,
    "total_costs": 4911.509396879741,
    "final_equity": 119889.939444755,
}


def reference_backtest() -> engine.BacktestResult:
    panel = load_sample("us_equities_daily")
    spy = panel[panel["symbol"] == "SPY"].reset_index(drop=True)
    assert len(spy) == 5_849
    close = spy["close"].to_numpy()
    fast, slow = ind.sma(close, 20), ind.sma(close, 100)
    weights = np.where(fast > slow, 1.0, np.where(fast < slow, -0.5, 0.0))
    weights[np.isnan(slow)] = 0.0
    costs = CostModel(commission_bps=1.0, slippage_bps=2.0, min_commission=1.0)
    return engine.run_backtest(spy, weights, costs=costs, initial_cash=100_000.0, name="ma_20_100")


@pytest.mark.parametrize("key", sorted(GOLDEN))
def test_reference_backtest_statistics_are_pinned(key: str) -> None:
    stats = reference_backtest().stats()
    assert stats[key] == pytest.approx(GOLDEN[key], rel=1e-9, abs=1e-12)
