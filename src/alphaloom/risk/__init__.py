"""Risk: pure performance and risk measures (one definition each), used by backtests, rewards and gates."""

from alphaloom.risk.measures import (
    annualised_volatility,
    cagr,
    calmar_ratio,
    drawdown_series,
    equity_curve,
    exposure,
    hit_rate,
    max_drawdown,
    max_drawdown_duration,
    sharpe_ratio,
    sortino_ratio,
    total_return,
    turnover,
)

__all__ = [
    "annualised_volatility",
    "cagr",
    "calmar_ratio",
    "drawdown_series",
    "equity_curve",
    "exposure",
    "hit_rate",
    "max_drawdown",
    "max_drawdown_duration",
    "sharpe_ratio",
    "sortino_ratio",
    "total_return",
    "turnover",
]
