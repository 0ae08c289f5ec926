"""Backtesting: the shared cost model and execution rule, the single-asset engine and the HTML report.

``run_backtest(bars, target_weights, costs=CostModel())`` trades target weights decided at each close at the
next open through :func:`execute_bar`, the rule the RL environments share; ``write_html_report`` renders the
results as one self-contained HTML file. The report module imports plotly only when a report is written.
"""

from alphaloom.backtest.costs import CostModel
from alphaloom.backtest.engine import BacktestResult, buy_and_hold, periods_per_year_for, run_backtest
from alphaloom.backtest.execution import AccountState, BarOutcome, execute_bar
from alphaloom.backtest.report import summary_frame, write_html_report

__all__ = [
    "AccountState",
    "BacktestResult",
    "BarOutcome",
    "CostModel",
    "buy_and_hold",
    "execute_bar",
    "periods_per_year_for",
    "run_backtest",
    "summary_frame",
    "write_html_report",
]
