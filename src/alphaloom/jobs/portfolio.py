"""Portfolio jobs on the stored panel: optimise weights, and backtest rebalancing policies against each other.

``optimize``: the run's symbols' closes from the store, aligned on the dates every symbol traded (the
number of dates dropped is reported, nothing silently), the last ``lookback`` daily returns, one optimiser
(Black-Litterman takes the latest stored CNN+LSTM forecast per symbol as views). Weights, risk
contributions and any fallback go to the ``portfolio_weights`` table and the manifest.

``rebalance``: walk-forward targets (every ``reoptimize_every`` bars, the optimiser fitted on the previous
``lookback`` returns only, in live mode: a failure falls back to the previous targets and is counted), then
each rebalancing policy turns the targets into orders, which :func:`alphaloom.backtest.vectorized.
from_target_weights` fills at the next open with the run's cost model. Statistics per policy go to
``portfolio_rebalance``, equity curves to ``portfolio_equity``, and an offline HTML report to
``reports/portfolio_rebalance.html``.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.table import Table

from alphaloom.core.exceptions import ConfigError, DataFormatError, EmptyRangeError, did_you_mean
from alphaloom.jobs.config import RunConfig
from alphaloom.jobs.workspace import Workspace
from alphaloom.portfolio import (
    BlackLitterman,
    BlackLittermanConfig,
    CalendarConfig,
    CalendarPolicy,
    DriftConfig,
    DriftPolicy,
    EqualWeight,
    FactorModelConfig,
    FactorOptimizer,
    HierarchicalRiskParity,
    HRPConfig,
    MeanVariance,
    MeanVarianceConfig,
    NoTradeBandConfig,
    NoTradeBandPolicy,
    PortfolioOptimizer,
    RebalancePolicy,
    RiskParity,
    RiskParityConfig,
    VolatilityTargetConfig,
    VolatilityTargetPolicy,
)
from alphaloom.risk import measures

__all__ = [
    "METHODS",
    "POLICIES",
    "load_panel",
    "make_optimizer",
    "make_policy",
    "optimize",
    "rebalance",
    "rebalance_table",
    "weights_table",
]

METHODS: tuple[str, ...] = (
    "min_variance",
    "max_sharpe",
    "risk_parity",
    "hrp",
    "black_litterman",
    "factor",
    "equal_weight",
)
POLICIES: tuple[str, ...] = ("calendar", "drift", "vol_target", "band")
WEIGHTS_TABLE = "portfolio_weights"
REBALANCE_TABLE = "portfolio_rebalance"
EQUITY_TABLE = "portfolio_equity"


def _pick(value: str, choices: Sequence[str], what: str) -> str:
    if value not in choices:
        raise ConfigError(
            f"unknown {what} {value!r}.{did_you_mean(value, choices)} Choose from {', '.join(choices)}."
        )
    return value


def make_optimizer(
    method: str, *, on_failure: str = "raise", forecasts: pd.DataFrame | None = None
) -> PortfolioOptimizer:
    """The optimiser for ``method`` (one of :data:`METHODS`), long-only and fully invested."""
    _pick(method, METHODS, "method")
    common: dict[str, Any] = {"on_failure": on_failure}
    if method in ("min_variance", "max_sharpe"):
        return MeanVariance(MeanVarianceConfig(objective=method, **common))
    if method == "risk_parity":
        return RiskParity(RiskParityConfig(**common))
    if method == "hrp":
        return HierarchicalRiskParity(HRPConfig(**common))
    if method == "black_litterman":
        return BlackLitterman(BlackLittermanConfig(**common), forecasts=forecasts)
    if method == "factor":
        return FactorOptimizer(FactorModelConfig(objective="min_variance", n_factors=1, **common))
    from alphaloom.portfolio import EqualWeightConfig

    return EqualWeight(EqualWeightConfig(**common))


def make_policy(name: str) -> RebalancePolicy:
    """The rebalancing policy ``name`` (one of :data:`POLICIES`) with its default settings."""
    _pick(name, POLICIES, "policy")
    if name == "calendar":
        return CalendarPolicy(CalendarConfig(every=21))
    if name == "drift":
        return DriftPolicy(DriftConfig(threshold=0.05))
    if name == "vol_target":
        return VolatilityTargetPolicy(VolatilityTargetConfig(target_volatility=0.10, threshold=0.05))
    return NoTradeBandPolicy(NoTradeBandConfig(band=0.05))


def load_panel(ws: Workspace, config: RunConfig) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, int]]:
    """Open and close panels ``(T, N)`` of the run's symbols on the dates all of them have a bar.

    Returns the panels and ``{"dates": T, "dates_dropped": ...}``; dates where some symbol had no bar are
    dropped (mixed calendars: equities do not trade on weekends, crypto does) and counted.
    """
    from alphaloom.jobs.stages import load_symbol_bars

    if len(config.symbols) < 2:
        raise ConfigError(
            f"a portfolio needs at least two symbols, got {list(config.symbols)}; pass --symbols."
        )
    bars = load_symbol_bars(ws, config)
    close = bars.pivot(index="ts", columns="symbol", values="close")
    opens = bars.pivot(index="ts", columns="symbol", values="open")
    missing = [s for s in config.symbols if s not in close.columns]
    if missing:
        raise EmptyRangeError(f"no stored bars for {missing} in the selected range; ingest them first.")
    close, opens = close[list(config.symbols)], opens[list(config.symbols)]
    keep = close.notna().all(axis=1) & opens.notna().all(axis=1)
    info = {"dates": int(keep.sum()), "dates_dropped": int((~keep).sum())}
    if info["dates"] < 60:
        raise EmptyRangeError(
            f"only {info['dates']} dates have a bar for every one of {list(config.symbols)}; choose symbols "
            "that trade on the same calendar or widen the date range."
        )
    return opens[keep], close[keep], info


def _latest_forecasts(ws: Workspace, symbols: Sequence[str], asof: pd.Timestamp) -> pd.DataFrame | None:
    with ws.require_store() as store:
        if not store.has_frame("forecasts"):
            return None
        fc = store.read_frame("forecasts")
    fc = fc[fc["symbol"].isin(list(symbols)) & (fc["ts"] <= asof)]
    fc = fc.dropna(subset=["p_up", "p_down", "pred_return"])
    if fc.empty:
        return None
    return (
        fc.sort_values("ts").groupby("symbol").tail(1).set_index("symbol")[["p_up", "p_down", "pred_return"]]
    )


def optimize(ws: Workspace, config: RunConfig, *, method: str = "min_variance", lookback: int = 504) -> dict:
    """Fit ``method`` on the last ``lookback`` daily returns of the stored panel; store, return weights."""
    _pick(method, METHODS, "method")
    if lookback < 60:
        raise ConfigError(f"--lookback must be at least 60 bars, got {lookback}.")
    _, close, info = load_panel(ws, config)
    returns = close.pct_change().iloc[1:].iloc[-lookback:]
    asof = returns.index[-1]
    forecasts = _latest_forecasts(ws, config.symbols, asof) if method == "black_litterman" else None
    opt = make_optimizer(method, forecasts=forecasts).fit(returns)
    rc = opt.risk_contributions()
    frame = pd.DataFrame(
        {
            "method": method,
            "symbol": opt.weights_.index,
            "weight": opt.weights_.to_numpy(),
            "risk_contribution": rc.to_numpy(),
            "asof": asof,
        }
    )
    with ws.open_store() as store:
        store.write_frame(WEIGHTS_TABLE, frame, replace_symbols=False)
    vol = float(np.sqrt(opt.weights_ @ opt.covariance_ @ opt.weights_ * 252))
    result = {
        "method": method,
        "asof": str(asof),
        "rows": len(returns),
        **info,
        "views": 0 if forecasts is None else len(forecasts),
        "volatility_annual": vol,
        "weights": frame,
    }
    ws.record("portfolio_optimize", {k: v for k, v in result.items() if k != "weights"})
    return result


def _targets(close: pd.DataFrame, method: str, lookback: int, every: int) -> tuple[pd.DataFrame, int]:
    returns = close.pct_change()
    targets = pd.DataFrame(np.nan, index=close.index, columns=close.columns)
    previous = None
    fallbacks = 0
    for t in range(lookback, len(close), every):
        window = returns.iloc[t - lookback + 1 : t + 1]  # returns up to and including bar t's close
        opt = make_optimizer(method, on_failure="fallback").fit(window, previous_weights=previous)
        fallbacks += opt.fallback_ is not None
        targets.iloc[t] = opt.weights_.to_numpy()
        previous = opt.weights_
    return targets, fallbacks


def rebalance(
    ws: Workspace,
    config: RunConfig,
    *,
    policies: Sequence[str] = POLICIES,
    method: str = "risk_parity",
    lookback: int = 252,
    reoptimize_every: int = 21,
) -> pd.DataFrame:
    """Backtest each rebalancing policy on the same walk-forward targets; store results, write a report."""
    from alphaloom.backtest.vectorized import from_target_weights

    for p in policies:
        _pick(p, POLICIES, "policy")
    _pick(method, METHODS, "method")
    if lookback < 60 or reoptimize_every < 1:
        raise ConfigError("--lookback must be at least 60 bars and the re-optimisation period at least 1.")
    opens, close, info = load_panel(ws, config)
    if len(close) <= lookback + 20:
        raise EmptyRangeError(
            f"{len(close)} common dates leave nothing to backtest after a {lookback}-bar look-back; lower "
            "--lookback or widen the date range."
        )
    targets, fallbacks = _targets(close, method, lookback, reoptimize_every)
    start = lookback
    close_t, opens_t, targets_t = close.iloc[start:], opens.iloc[start:], targets.iloc[start:]
    rows, curves = [], []
    for name in policies:
        path = make_policy(name).simulate(close_t, targets_t)
        sim = from_target_weights(
            opens_t.to_numpy(),
            close_t.to_numpy(),
            path.orders.to_numpy(),
            costs=config.costs,
            initial_cash=config.initial_cash,
        )
        rets = sim.returns[1:, 0]
        costs = float(np.sum(sim.fills.cost))
        rows.append(
            {
                "policy": name,
                "total_return": measures.total_return(rets),
                "cagr": measures.cagr(rets),
                "volatility": measures.annualised_volatility(rets),
                "sharpe": measures.sharpe_ratio(rets),
                "max_drawdown": measures.max_drawdown(rets),
                "rebalances": path.n_rebalances,
                "turnover": float(path.turnover.sum()),
                "fills": sim.n_fills,
                "costs": costs,
                "final_equity": sim.final_equity,
            }
        )
        curves.append(pd.DataFrame({"policy": name, "ts": close_t.index, "equity": sim.equity[:, 0]}))
    summary = pd.DataFrame(rows)
    with ws.open_store() as store:
        store.write_frame(REBALANCE_TABLE, summary)
        store.write_frame(EQUITY_TABLE, pd.concat(curves, ignore_index=True))
    report = _write_report(
        ws.reports_dir / "portfolio_rebalance.html",
        summary,
        pd.concat(curves, ignore_index=True),
        notes=[
            f"Targets: {method}, re-fitted every {reoptimize_every} bars on the previous {lookback} returns "
            f"({fallbacks} optimisation(s) fell back to the previous targets).",
            f"Symbols: {', '.join(config.symbols)}; {info['dates']} common dates "
            f"({info['dates_dropped']} dropped where some symbol had no bar).",
            f"Orders decided at the close, filled at the next open; costs {config.costs.commission_bps} bps "
            f"commission + {config.costs.slippage_bps} bps slippage.",
        ],
    )
    ws.record(
        "portfolio_rebalance",
        {
            "method": method,
            "fallbacks": fallbacks,
            "report": str(report),
            **info,
            "rows": summary.to_dict("records"),
        },
    )
    summary.attrs["report"] = str(report)
    summary.attrs["fallbacks"] = fallbacks
    return summary


def _write_report(path: Path, summary: pd.DataFrame, curves: pd.DataFrame, *, notes: Sequence[str]) -> Path:
    import plotly.graph_objects as go
    from plotly.offline import get_plotlyjs

    if summary.empty:
        raise DataFormatError("no policy results to report.")
    fig = go.Figure()
    for name, g in curves.groupby("policy", sort=False):
        fig.add_trace(
            go.Scatter(
                x=pd.DatetimeIndex(g["ts"]).tz_localize(None), y=g["equity"], mode="lines", name=str(name)
            )
        )
    fig.update_layout(
        title="Equity by rebalancing policy", xaxis_title="date (UTC)", yaxis_title="equity", height=520
    )
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in summary.columns)
    body = "".join(
        "<tr>"
        + "".join(
            f"<td>{html.escape(f'{v:.4g}' if isinstance(v, float | np.floating) else str(v))}</td>"
            for v in row
        )
        + "</tr>"
        for row in summary.itertuples(index=False)
    )
    page = (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Rebalancing policies</title>'
        "<style>body{font-family:system-ui,sans-serif;max-width:1200px;margin:2rem auto}"
        "td,th{padding:.3rem .6rem;border-bottom:1px solid #eee;text-align:right}</style>"
        f'<script type="text/javascript">{get_plotlyjs()}</script></head><body>'
        "<h1>Rebalancing policies compared</h1>"
        + "<ul>"
        + "".join(f"<li>{html.escape(n)}</li>" for n in notes)
        + "</ul>"
        + f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
        + fig.to_html(full_html=False, include_plotlyjs=False, div_id="equity")
        + "</body></html>"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path


def _table(title: str, frame: pd.DataFrame) -> Table:
    table = Table(title=title)
    for col in frame.columns:
        table.add_column(str(col), justify="right" if pd.api.types.is_numeric_dtype(frame[col]) else "left")
    for row in frame.itertuples(index=False):
        table.add_row(*(f"{v:.4g}" if isinstance(v, float | np.floating) else str(v) for v in row))
    return table


def weights_table(result: dict) -> Table:
    """The optimised weights and risk contributions as a rich table."""
    frame = result["weights"][["symbol", "weight", "risk_contribution"]]
    title = (
        f"{result['method']} weights as of {result['asof'][:10]} ({result['rows']} returns, "
        f"volatility {result['volatility_annual']:.1%} a year"
        + (f", {result['views']} views" if result["method"] == "black_litterman" else "")
        + ")"
    )
    return _table(title, frame)


def rebalance_table(summary: pd.DataFrame) -> Table:
    """The policy comparison as a rich table."""
    return _table("Rebalancing policies (after commissions and slippage)", summary)
