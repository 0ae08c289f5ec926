"""Backtesting: cost models, the execution rule, vectorised and event-driven engines, walk-forward, reports.

``run_backtest(bars, target_weights, costs=CostModel())`` trades target weights decided at each close at the
next open (the :func:`execute_bar` rule the RL environments share) on the vectorised numba engine
(:mod:`~alphaloom.backtest.vectorized`, which also takes positions and signals, for one asset or a panel);
:mod:`~alphaloom.backtest.event` runs strategies bar by bar through the paper exchange's matching rules;
:mod:`~alphaloom.backtest.walkforward` refits models per fold; ``write_html_report`` renders an offline
tearsheet. The report module imports plotly only when a report is written.
"""

from alphaloom.backtest import vectorized, walkforward
from alphaloom.backtest.costs import CostModel
from alphaloom.backtest.engine import BacktestResult, buy_and_hold, periods_per_year_for, run_backtest
from alphaloom.backtest.event import (
    CompiledStrategy,
    EventConfig,
    EventEngine,
    EventResult,
    LookAheadError,
    Strategy,
    run_event_backtest,
)
from alphaloom.backtest.execution import AccountState, BarOutcome, execute_bar
from alphaloom.backtest.report import summary_frame, write_html_report

__all__ = [
    "AccountState",
    "BacktestResult",
    "BarOutcome",
    "CompiledStrategy",
    "CostModel",
    "EventConfig",
    "EventEngine",
    "EventResult",
    "LookAheadError",
    "Strategy",
    "buy_and_hold",
    "execute_bar",
    "periods_per_year_for",
    "run_backtest",
    "run_event_backtest",
    "summary_frame",
    "vectorized",
    "walkforward",
    "write_html_report",
]
