"""The backtest tearsheet: one self-contained HTML file, and the tables behind it.

:func:`write_html_report` writes a page that opens offline (plotly.js is inlined once in the head, nothing is
fetched): the statistics of every strategy on every symbol, how far to trust each Sharpe ratio (block-
bootstrap interval, probabilistic and deflated Sharpe ratios), any extra tables the caller passes
(validation summary, model metrics), and per symbol

- equity against the benchmark (optionally on a log scale), the underwater (drawdown) curve, the rolling
  Sharpe ratio, exposure and turnover over time, in one chart with a shared time axis;
- a heatmap of monthly returns, year by month, with a selector for the strategy;
- the list of round-trip trades of each strategy (entries, exits, prices and profit).

All text is HTML-escaped. :func:`summary_frame`, :func:`sharpe_inference_frame`, :func:`trade_list` and
:func:`monthly_returns` give the same numbers as frames. Every statistic comes from
:mod:`alphaloom.risk.measures`.
"""

from __future__ import annotations

import functools
import html
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import Field

from alphaloom.backtest.engine import BacktestResult
from alphaloom.core.config import ComponentConfig
from alphaloom.core.exceptions import DataFormatError, EmptyRangeError
from alphaloom.risk import measures

__all__ = [
    "ReportConfig",
    "monthly_returns",
    "sharpe_inference_frame",
    "summary_frame",
    "trade_list",
    "write_html_report",
]

_STAT_LABELS: Mapping[str, str] = {
    "total_return": "Total return",
    "cagr": "CAGR",
    "volatility": "Volatility (ann.)",
    "sharpe": "Sharpe",
    "sortino": "Sortino",
    "max_drawdown": "Max drawdown",
    "max_drawdown_duration": "Max DD duration (bars)",
    "calmar": "Calmar",
    "turnover": "Turnover / bar",
    "exposure": "Exposure",
    "hit_rate": "Hit rate",
    "n_trades": "Trades",
    "total_costs": "Total costs",
    "final_equity": "Final equity",
}
_PERCENT = frozenset(
    {"total_return", "cagr", "volatility", "max_drawdown", "turnover", "exposure", "hit_rate", "return"}
)
_COUNT = frozenset({"n_trades", "max_drawdown_duration", "n_bars", "n_trials", "bars_held"})
_MONEY = frozenset({"total_costs", "final_equity", "pnl"})
_PROBABILITY = frozenset({"psr", "dsr"})

_INFERENCE_LABELS: Mapping[str, str] = {
    "n_bars": "Bars",
    "sharpe": "Sharpe",
    "sharpe_low": "CI low",
    "sharpe_high": "CI high",
    "psr": "PSR (SR > 0)",
    "dsr": "DSR",
    "n_trials": "Trials",
    "skewness": "Skew",
    "kurtosis": "Kurtosis",
}
_TRADE_LABELS: Mapping[str, str] = {
    "entry_ts": "Entry",
    "exit_ts": "Exit",
    "side": "Side",
    "units": "Units",
    "entry_price": "Entry price",
    "exit_price": "Exit price",
    "bars_held": "Bars",
    "pnl": "PnL",
    "return": "Return",
}
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

_PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2", "#bcbd22")
_BENCHMARK_COLOUR = "#7f7f7f"
_MISSING = "–"
_PLOT_CONFIG = {"displaylogo": False, "responsive": True}

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 1200px;
       color: #222; padding: 0 1rem; }
h1 { margin-bottom: 0.2rem; }
h2 { margin-top: 2.5rem; border-bottom: 1px solid #ddd; padding-bottom: 0.3rem; }
h3 { margin-top: 1.5rem; }
table { border-collapse: collapse; font-size: 0.85rem; margin: 0.5rem 0 1rem; }
th, td { padding: 0.3rem 0.6rem; border-bottom: 1px solid #eee; text-align: right; white-space: nowrap; }
th { background: #f6f6f6; position: sticky; top: 0; }
td.text, th.text { text-align: left; }
td.pos { color: #1a7f37; } td.neg { color: #b42318; }
tr.benchmark td { color: #666; font-style: italic; }
.table-wrap { overflow-x: auto; }
.scroll { max-height: 24rem; overflow-y: auto; }
ul.notes, p.explain { color: #444; }
p.explain { font-size: 0.85rem; max-width: 60rem; }
p.missing { color: #a33; }
nav.toc a { margin-right: 1rem; }
details { margin: 0.4rem 0; }
summary { cursor: pointer; }
"""


class ReportConfig(ComponentConfig):
    """Settings of the tearsheet.

    Parameters
    ----------
    log_scale
        Draw equity on a logarithmic axis (equal distances are equal percentage moves).
    rolling_window
        Bars in the rolling Sharpe ratio and the rolling turnover (63 is about a quarter of daily bars).
    bootstrap_resamples
        Block-bootstrap resamples for the Sharpe ratio's confidence interval; 0 leaves the interval out.
    confidence
        Coverage of that interval.
    max_trades
        Most recent round trips listed per strategy (all are counted in the summary line).
    seed
        Seed of the bootstrap, so a report is reproducible.
    """

    log_scale: bool = False
    rolling_window: int = Field(default=63, ge=2, le=100_000)
    bootstrap_resamples: int = Field(default=1000, ge=0, le=1_000_000)
    confidence: float = Field(default=0.95, gt=0.0, lt=1.0)
    max_trades: int = Field(default=200, ge=0)
    seed: int = 0


def summary_frame(results: Sequence[BacktestResult]) -> pd.DataFrame:
    """One row per result: ``symbol``, ``name`` and every statistic of :meth:`BacktestResult.stats`.

    Parameters
    ----------
    results
        Backtest results, any symbols and strategies.

    Returns
    -------
    pandas.DataFrame
        Shape ``(len(results), 2 + n_stats)``, rows in the order given.
    """
    rows = [{"symbol": r.symbol, "name": r.name, **r.stats()} for r in results]
    return pd.DataFrame(rows, columns=["symbol", "name", *_STAT_LABELS])


def sharpe_inference_frame(
    results: Sequence[BacktestResult],
    *,
    benchmark_name: str = "buy_and_hold",
    config: ReportConfig | None = None,
) -> pd.DataFrame:
    """How far to trust each result's Sharpe ratio: interval, PSR and DSR, one row per result.

    The strategies on a symbol other than the benchmark are taken as the trials of a selection, so each one's
    deflated Sharpe ratio is judged against the best Sharpe ratio that many worthless strategies would show
    by luck (the variance of the trials' per-bar Sharpe ratios estimated from them).

    Parameters
    ----------
    results
        Backtest results, any symbols and strategies.
    benchmark_name
        Name of the benchmark result on each symbol; it gets a PSR but no DSR (it was not selected).
    config
        ``bootstrap_resamples``, ``confidence`` and ``seed`` of the bootstrap interval.

    Returns
    -------
    pandas.DataFrame
        Rows in the order given; columns ``symbol``, ``name``, ``n_bars``, ``sharpe`` (annualised),
        ``sharpe_low`` and ``sharpe_high`` (stationary block-bootstrap interval; NaN when
        ``bootstrap_resamples`` is 0), ``psr`` (probability that the true Sharpe ratio is above 0), ``dsr``,
        ``n_trials``, ``skewness`` and ``kurtosis`` (non-excess) of the returns. Undefined values are NaN.
    """
    config = config or ReportConfig()
    by_symbol: dict[str, list[int]] = {}
    for i, r in enumerate(results):
        by_symbol.setdefault(r.symbol, []).append(i)
    rows: list[dict[str, Any]] = [{} for _ in results]
    for positions in by_symbol.values():
        group = [results[i] for i in positions]
        for i, r, stats in zip(positions, group, _inference_rows(group, benchmark_name, config), strict=True):
            rows[i] = {"symbol": r.symbol, "name": r.name, **stats}
    return pd.DataFrame(rows, columns=["symbol", "name", *_INFERENCE_LABELS])


def trade_list(result: BacktestResult) -> pd.DataFrame:
    """The round-trip trades of a backtest, rebuilt from its units and cash.

    A trade opens when the position leaves zero and closes when it returns to zero or flips sign (a flip
    closes one trade and opens the next at the same price); additions and partial exits in between belong to
    the same trade. Prices are **all-in**, slippage and commission included, derived from each trade's cash
    flow (``-change of cash / units traded``), so ``pnl`` is net of costs.

    Parameters
    ----------
    result
        One backtest.

    Returns
    -------
    pandas.DataFrame
        One row per trade in order of entry: ``entry_ts`` and ``exit_ts`` (the bar whose open filled the
        entry, the exit; NaT while open), ``side`` (``"long"`` or ``"short"``), ``units`` (largest absolute
        position), ``entry_price`` and ``exit_price`` (unit-weighted all-in fill prices; NaN while nothing
        was sold), ``bars_held``, ``pnl`` (account currency; an open trade is marked at the last close),
        ``return`` (``pnl`` over the cost of everything bought into the trade) and ``open`` (bool).
    """
    if not isinstance(result, BacktestResult):
        raise DataFormatError(f"trade_list needs a BacktestResult, got {type(result).__name__}.")
    n = len(result.ts)
    cash_before = np.concatenate(([result.initial_cash], result.cash[:-1]))
    rows: list[dict[str, Any]] = []
    trade: dict[str, Any] | None = None
    position = 0.0

    def close(j: int, is_open: bool) -> None:
        assert trade is not None
        bought = trade["in_units"] * trade["in_price"]
        rows.append(
            {
                "entry_ts": result.ts[trade["entry"]],
                "exit_ts": pd.NaT if is_open else result.ts[j],
                "side": "long" if trade["side"] > 0 else "short",
                "units": trade["max_units"],
                "entry_price": trade["in_price"],
                "exit_price": trade["out_price"] if trade["out_units"] > 0 else math.nan,
                "bars_held": (n if is_open else j) - trade["entry"],
                "pnl": trade["pnl"],
                "return": trade["pnl"] / bought if bought > 0 else math.nan,
                "open": is_open,
            }
        )

    for j in np.flatnonzero(result.traded_units).tolist():
        traded = float(result.traded_units[j])
        price = -(float(result.cash[j]) - float(cash_before[j])) / traded
        remaining = abs(traded)
        tol = 1e-9 * max(abs(position), remaining)
        if trade is not None and np.sign(traded) != trade["side"]:
            closing = min(remaining, abs(position))
            trade["pnl"] += trade["side"] * closing * (price - trade["avg_cost"])
            trade["out_price"] = (trade["out_price"] * trade["out_units"] + price * closing) / (
                trade["out_units"] + closing
            )
            trade["out_units"] += closing
            remaining -= closing
            position += np.sign(traded) * closing
            if abs(position) <= tol:
                close(j, is_open=False)
                trade, position = None, 0.0
        if remaining > tol:
            if trade is None:
                trade = {"entry": j, "side": np.sign(traded), "in_units": 0.0, "in_price": 0.0}
                trade.update(out_units=0.0, out_price=0.0, pnl=0.0, max_units=0.0, avg_cost=0.0)
            # Two averages: of every unit bought into the trade (the entry price shown) and of the units
            # still held (the cost that a later exit's profit is measured against).
            trade["in_price"] = (trade["in_price"] * trade["in_units"] + price * remaining) / (
                trade["in_units"] + remaining
            )
            trade["in_units"] += remaining
            trade["avg_cost"] = (trade["avg_cost"] * abs(position) + price * remaining) / (
                abs(position) + remaining
            )
            position += np.sign(traded) * remaining
            trade["max_units"] = max(trade["max_units"], abs(position))
    if trade is not None:
        # Mark what is still held at the last close: units * close = equity - cash.
        held_value = float(result.equity[-1]) - float(result.cash[-1])
        trade["pnl"] += held_value - position * trade["avg_cost"]
        close(n - 1, is_open=True)
    return pd.DataFrame(rows, columns=[*_TRADE_LABELS, "open"])


def monthly_returns(result: BacktestResult) -> pd.DataFrame:
    """Compounded return of each calendar month (UTC) and year.

    Parameters
    ----------
    result
        One backtest.

    Returns
    -------
    pandas.DataFrame
        Index ``year`` (int), columns ``Jan`` .. ``Dec`` and ``Year``; fractions, NaN for months without
        bars.
    """
    if not isinstance(result, BacktestResult):
        raise DataFormatError(f"monthly_returns needs a BacktestResult, got {type(result).__name__}.")
    ts = result.ts.tz_convert("UTC")
    growth = pd.Series(1.0 + result.returns, index=ts)
    by_month = growth.groupby([ts.year, ts.month]).prod() - 1.0
    table = by_month.unstack().reindex(columns=range(1, 13))
    table.columns = list(_MONTHS)
    table["Year"] = growth.groupby(ts.year).prod() - 1.0
    table.index = table.index.astype(int).rename("year")
    return table


def write_html_report(
    path: str | Path,
    results: Sequence[BacktestResult],
    *,
    title: str,
    benchmark_name: str = "buy_and_hold",
    extra_tables: Mapping[str, pd.DataFrame] | None = None,
    notes: Sequence[str] = (),
    config: ReportConfig | None = None,
) -> Path:
    """Write a self-contained HTML tearsheet of backtest results.

    Parameters
    ----------
    path
        Output file; parent folders are created.
    results
        Backtest results; sections are grouped by symbol in order of first appearance.
    title
        Page title.
    benchmark_name
        Name of the benchmark result on each symbol, drawn dashed in grey.
    extra_tables
        Further tables to show after the statistics, by heading (e.g. ``{"Validation": frame}``).
    notes
        Lines of text shown under the title (settings, caveats).
    config
        Chart and statistics settings; see :class:`ReportConfig`.

    Returns
    -------
    pathlib.Path
        The file written.
    """
    results = list(results)
    if not results:
        raise EmptyRangeError("write_html_report got no backtest results; run at least one backtest first.")
    for r in results:
        if not isinstance(r, BacktestResult):
            raise DataFormatError(f"results must be BacktestResult objects, got {type(r).__name__}.")
    for heading, table in (extra_tables or {}).items():
        if not isinstance(table, pd.DataFrame):
            raise DataFormatError(
                f"extra_tables[{heading!r}] must be a DataFrame, got {type(table).__name__}."
            )
    config = config or ReportConfig()
    from plotly.offline import get_plotlyjs  # imported here so that importing alphaloom.backtest stays light

    by_symbol: dict[str, list[BacktestResult]] = {}
    for r in results:
        by_symbol.setdefault(r.symbol, []).append(r)

    body = [f"<h1>{_esc(title)}</h1>"]
    if notes:
        body.append('<ul class="notes">' + "".join(f"<li>{_esc(note)}</li>" for note in notes) + "</ul>")
    links = "".join(
        f'<a href="#symbol-{i}">{_esc(symbol or "(no symbol)")}</a>' for i, symbol in enumerate(by_symbol)
    )
    body.append(f'<nav class="toc"><a href="#statistics">Statistics</a>{links}</nav>')
    body.append('<h2 id="statistics">Statistics</h2>')
    body.append(_stats_table(results, benchmark_name))
    body.append("<h3>How much to trust the Sharpe ratio</h3>")
    body.append(_inference_explanation(config))
    body.append(_inference_table(results, benchmark_name, config))
    for heading, table in (extra_tables or {}).items():
        body.append(f"<h2>{_esc(heading)}</h2>")
        body.append(_frame_table(table))
    for i, (symbol, group) in enumerate(by_symbol.items()):
        body.append(f'<h2 id="symbol-{i}">{_esc(symbol or "(no symbol)")}</h2>')
        if not any(r.name == benchmark_name for r in group):
            body.append(f'<p class="missing">No {_esc(benchmark_name)} result for this symbol.</p>')
        figure = _symbol_figure(symbol, group, benchmark_name, config)
        body.append(_figure_html(figure, f"chart-{i}", "1150px"))
        body.append("<h3>Monthly returns</h3>")
        heatmap = _monthly_figure(group, benchmark_name)
        body.append(_figure_html(heatmap, f"monthly-{i}", f"{heatmap.layout.height}px"))
        body.append("<h3>Trades</h3>")
        body.append(_trades_section(group, benchmark_name, config))

    page = "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en">',
            "<head>",
            '<meta charset="utf-8">',
            f"<title>{_esc(title)}</title>",
            f"<style>{_CSS}</style>",
            f'<script type="text/javascript">{get_plotlyjs()}</script>',
            "</head>",
            "<body>",
            *body,
            "</body>",
            "</html>",
        ]
    )
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    return out


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _is_missing(value: Any) -> bool:
    return value is None or value is pd.NaT or (isinstance(value, float | np.floating) and math.isnan(value))


def _format_stat(key: str, value: Any) -> str:
    if _is_missing(value):
        return _MISSING
    if key in _PERCENT:
        return f"{value:.2%}"
    if key in _COUNT:
        return f"{value:,.0f}"
    if key in _MONEY:
        return f"{value:,.2f}"
    if key in _PROBABILITY:
        return f"{value:.3f}"
    return f"{value:.2f}"


def _format_cell(value: Any) -> str:
    if isinstance(value, bool | np.bool_):
        return str(bool(value))
    if isinstance(value, int | np.integer):
        return f"{int(value):,}"
    if isinstance(value, float | np.floating):
        return _MISSING if math.isnan(value) else f"{float(value):.4g}"
    if value is None or value is pd.NaT:
        return _MISSING
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return str(value)


def _stats_table(results: Sequence[BacktestResult], benchmark_name: str) -> str:
    head = '<th class="text">Symbol</th><th class="text">Strategy</th>' + "".join(
        f"<th>{_esc(label)}</th>" for label in _STAT_LABELS.values()
    )
    rows = []
    for r in results:
        stats = r.stats()
        cells = "".join(f"<td>{_esc(_format_stat(key, stats[key]))}</td>" for key in _STAT_LABELS)
        css = ' class="benchmark"' if r.name == benchmark_name else ""
        labels = f'<td class="text">{_esc(r.symbol)}</td><td class="text">{_esc(r.name)}</td>'
        rows.append(f"<tr{css}>{labels}{cells}</tr>")
    return _wrap_table(head, rows)


def _inference_explanation(config: ReportConfig) -> str:
    interval = (
        f"CI: {config.confidence:.0%} stationary block-bootstrap interval of the annualised Sharpe ratio "
        f"({config.bootstrap_resamples} resamples). "
        if config.bootstrap_resamples
        else ""
    )
    return (
        f'<p class="explain">{_esc(interval)}PSR: probability that the true Sharpe ratio is above zero, '
        "allowing for sample length, skew and fat tails (Bailey &amp; López de Prado, 2012). DSR: the same "
        "probability against the best Sharpe ratio that luck alone would give among the strategies tried; "
        "the strategies on each symbol (the benchmark excepted) count as the trials (Bailey &amp; López de "
        "Prado, 2014).</p>"
    )


def _inference_rows(
    group: Sequence[BacktestResult], benchmark_name: str, config: ReportConfig
) -> list[dict[str, float]]:
    trials = [r for r in group if r.name != benchmark_name]
    sharpes = np.array([measures.sharpe_ratio(r.returns, periods_per_year=1) for r in trials])
    finite = sharpes[np.isfinite(sharpes)]
    variance = float(np.var(finite, ddof=1)) if finite.size > 1 else 0.0
    rows = []
    for r in group:
        is_trial = r.name != benchmark_name
        stats = measures.summary_statistics(
            r.returns,
            periods_per_year=r.periods_per_year,
            n_trials=max(len(trials), 1) if is_trial else 1,
            trials_sharpe_variance=variance if is_trial else None,
        )
        low = high = math.nan
        if config.bootstrap_resamples:
            ci = measures.bootstrap_confidence_interval(
                r.returns,
                functools.partial(measures.sharpe_ratio, periods_per_year=r.periods_per_year),
                n_resamples=config.bootstrap_resamples,
                confidence=config.confidence,
                seed=config.seed,
            )
            low, high = ci.low, ci.high
        rows.append(
            {
                "n_bars": stats["n_bars"],
                "sharpe": stats["sharpe_annual"],
                "sharpe_low": low,
                "sharpe_high": high,
                "psr": stats["probabilistic_sharpe"],
                "dsr": stats["deflated_sharpe"] if is_trial else math.nan,
                "n_trials": float(len(trials)) if is_trial else math.nan,
                "skewness": stats["skewness"],
                "kurtosis": stats["kurtosis"],
            }
        )
    return rows


def _inference_table(results: Sequence[BacktestResult], benchmark_name: str, config: ReportConfig) -> str:
    head = '<th class="text">Symbol</th><th class="text">Strategy</th>' + "".join(
        f"<th>{_esc(label)}</th>" for label in _INFERENCE_LABELS.values()
    )
    frame = sharpe_inference_frame(results, benchmark_name=benchmark_name, config=config)
    rows = []
    for stats in frame.to_dict(orient="records"):
        cells = "".join(f"<td>{_esc(_format_stat(key, stats[key]))}</td>" for key in _INFERENCE_LABELS)
        css = ' class="benchmark"' if stats["name"] == benchmark_name else ""
        labels = f'<td class="text">{_esc(stats["symbol"])}</td><td class="text">{_esc(stats["name"])}</td>'
        rows.append(f"<tr{css}>{labels}{cells}</tr>")
    return _wrap_table(head, rows)


def _benchmark_last(results: Sequence[BacktestResult], benchmark_name: str) -> list[BacktestResult]:
    return sorted(results, key=lambda r: r.name == benchmark_name)


def _trades_section(group: Sequence[BacktestResult], benchmark_name: str, config: ReportConfig) -> str:
    parts = []
    ordered = _benchmark_last(group, benchmark_name)
    for k, r in enumerate(ordered):
        trades = trade_list(r)
        n = len(trades)
        if n:
            closed = trades[~trades["open"]]
            win = float((closed["pnl"] > 0).mean()) if len(closed) else math.nan
            line = (
                f"{r.name}: {n} round trip{'s' if n != 1 else ''}, win rate {_format_stat('hit_rate', win)}, "
                f"total PnL {_format_stat('pnl', float(trades['pnl'].sum()))}, "
                f"mean holding {trades['bars_held'].mean():.1f} bars"
            )
        else:
            line = f"{r.name}: no trades"
        shown = trades.tail(config.max_trades) if config.max_trades else trades.iloc[:0]
        if n > len(shown):
            line += f" (the last {len(shown)} listed)"
        table = _trade_table(shown) if len(shown) else ""
        opened = " open" if k == 0 and r.name != benchmark_name and table else ""
        parts.append(f"<details{opened}><summary>{_esc(line)}</summary>{table}</details>")
    return "".join(parts)


def _trade_table(trades: pd.DataFrame) -> str:
    text_columns = ("entry_ts", "exit_ts", "side")
    head = "".join(
        f'<th class="text">{_esc(label)}</th>' if key in text_columns else f"<th>{_esc(label)}</th>"
        for key, label in _TRADE_LABELS.items()
    )
    rows = []
    for row in trades.to_dict(orient="records"):
        cells = []
        for key in _TRADE_LABELS:
            value = row[key]
            if key in ("entry_ts", "exit_ts"):
                text = "open" if _is_missing(value) else _time_text(value)
                cells.append(f'<td class="text">{_esc(text)}</td>')
            elif key == "side":
                cells.append(f'<td class="text">{_esc(value)}</td>')
            elif key == "units":
                cells.append(f"<td>{_esc(f'{value:,.4g}')}</td>")
            elif key in ("entry_price", "exit_price"):
                cells.append(f"<td>{_esc(_MISSING if _is_missing(value) else f'{value:,.4f}')}</td>")
            else:
                sign = "" if _is_missing(value) or key == "bars_held" else ("pos" if value > 0 else "neg")
                css = f' class="{sign}"' if sign else ""
                cells.append(f"<td{css}>{_esc(_format_stat(key, value))}</td>")
        rows.append(f"<tr>{''.join(cells)}</tr>")
    return f'<div class="scroll">{_wrap_table(head, rows)}</div>'


def _wrap_table(head: str, rows: Sequence[str]) -> str:
    body = "".join(rows)
    return f'<div class="table-wrap"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def _frame_table(frame: pd.DataFrame) -> str:
    show_index = not (isinstance(frame.index, pd.RangeIndex) and frame.index.name is None)
    columns = [" / ".join(map(str, c)) if isinstance(c, tuple) else str(c) for c in frame.columns]
    head = (f'<th class="text">{_esc(frame.index.name or "")}</th>' if show_index else "") + "".join(
        f"<th>{_esc(c)}</th>" for c in columns
    )
    rows = []
    for idx, row in zip(frame.index, frame.itertuples(index=False, name=None), strict=True):
        cells = [f'<td class="text">{_esc(_format_cell(idx))}</td>'] if show_index else []
        for value in row:
            css = ' class="text"' if isinstance(value, str) else ""
            cells.append(f"<td{css}>{_esc(_format_cell(value))}</td>")
        rows.append(f"<tr>{''.join(cells)}</tr>")
    return _wrap_table(head, rows)


def _figure_html(figure: Any, div_id: str, height: str) -> str:
    return figure.to_html(
        full_html=False, include_plotlyjs=False, div_id=div_id, default_height=height, config=_PLOT_CONFIG
    )


def _time_text(ts: pd.Timestamp) -> str:
    ts = ts.tz_convert("UTC")
    return ts.date().isoformat() if ts == ts.normalize() else ts.strftime("%Y-%m-%d %H:%M UTC")


def _percent_cell(value: float) -> str:
    if math.isnan(value):
        return ""
    return f"{0.0 if abs(value) < 5e-4 else value:.1%}"  # no "-0.0%"


def _rolling_sharpe(returns: np.ndarray, window: int, periods_per_year: float) -> np.ndarray:
    out = np.full(len(returns), np.nan)
    if len(returns) >= window:
        windows = np.lib.stride_tricks.sliding_window_view(returns, window)
        out[window - 1 :] = [measures.sharpe_ratio(w, periods_per_year) for w in windows]
    return out


def _symbol_figure(
    symbol: str, results: Sequence[BacktestResult], benchmark_name: str, config: ReportConfig
) -> Any:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    window = config.rolling_window
    fig = make_subplots(
        rows=5,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.04,
        row_heights=[0.34, 0.17, 0.17, 0.16, 0.16],
        subplot_titles=(
            "Equity vs benchmark" + (" (log scale)" if config.log_scale else ""),
            "Drawdown (underwater)",
            f"Rolling Sharpe ratio ({window} bars, annualised)",
            "Exposure (weight at the close)",
            f"Turnover (share of equity traded, rolling {window}-bar sum)",
        ),
    )
    colours = iter(_PALETTE * (len(results) // len(_PALETTE) + 1))
    # The benchmark first, so strategies are drawn over it.
    ordered = sorted(results, key=lambda r: r.name != benchmark_name)
    for r in ordered:
        is_benchmark = r.name == benchmark_name
        if is_benchmark:
            line = {"color": _BENCHMARK_COLOUR, "dash": "dash", "width": 1.5}
        else:
            line = {"color": next(colours), "width": 1.5}
        # Naive UTC datetime64 values: plotly copies object arrays of Timestamps slowly.
        x = r.ts.tz_convert("UTC").tz_localize(None).to_numpy()
        common = {"x": x, "name": r.name, "legendgroup": r.name, "mode": "lines"}
        fig.add_trace(go.Scatter(y=r.equity, line=line, **common), row=1, col=1)
        drawdown = -measures.drawdown_series(r.returns)
        fig.add_trace(go.Scatter(y=drawdown, line=line, showlegend=False, **common), row=2, col=1)
        rolling = _rolling_sharpe(r.returns, window, r.periods_per_year)
        fig.add_trace(go.Scatter(y=rolling, line=line, showlegend=False, **common), row=3, col=1)
        step = {**line, "shape": "hv"}
        fig.add_trace(go.Scatter(y=r.weights, line=step, showlegend=False, **common), row=4, col=1)
        traded = pd.Series(np.abs(r.trade_weights)).rolling(window, min_periods=1).sum().to_numpy()
        fig.add_trace(go.Scatter(y=traded, line=line, showlegend=False, **common), row=5, col=1)
    fig.update_yaxes(title_text="equity", type="log" if config.log_scale else "linear", row=1, col=1)
    fig.update_yaxes(tickformat=".0%", row=2, col=1)
    fig.update_yaxes(tickformat=".1f", zeroline=True, zerolinecolor="#999", row=3, col=1)
    fig.update_yaxes(tickformat=".1f", row=4, col=1)
    fig.update_yaxes(tickformat=".0%", row=5, col=1)
    fig.update_xaxes(title_text="time (UTC)", row=5, col=1)
    fig.update_layout(
        title={"text": f"{symbol or '(no symbol)'}: strategies vs {benchmark_name}", "y": 0.99},
        template="plotly_white",
        hovermode="x unified",
        # The legend sits between the title and the first panel, so the two never overlap.
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.025, "x": 0.0},
        margin={"l": 60, "r": 20, "t": 110, "b": 40},
    )
    return fig


def _monthly_figure(results: Sequence[BacktestResult], benchmark_name: str) -> Any:
    import plotly.graph_objects as go

    ordered = _benchmark_last(results, benchmark_name)
    columns = [*_MONTHS, "Year"]
    fig = go.Figure()
    n_years = 1
    for k, r in enumerate(ordered):
        table = monthly_returns(r)
        n_years = max(n_years, len(table))
        values = table[columns].to_numpy(dtype=np.float64)
        # Colour months and whole years on separate scales (a year's return would wash out the months'),
        # each symmetric around zero; the cells show the returns themselves.
        colour = np.full_like(values, np.nan)
        for cols in (slice(0, 12), slice(12, 13)):
            block = values[:, cols]
            limit = float(np.nanmax(np.abs(block))) if np.isfinite(block).any() else 0.0
            colour[:, cols] = block / limit if limit > 0 else 0.0 * block
        fig.add_trace(
            go.Heatmap(
                z=colour,
                x=columns,
                y=[str(y) for y in table.index],
                text=[[_percent_cell(v) for v in row] for row in values.tolist()],
                zmin=-1.0,
                zmax=1.0,
                colorscale="RdYlGn",
                showscale=False,
                texttemplate="%{text}",
                hovertemplate=f"{_esc(r.name)} %{{y}} %{{x}}: %{{text}}<extra></extra>",
                xgap=2,
                ygap=2,
                visible=k == 0,
                name=r.name,
            )
        )
    n = len(ordered)
    menu = {
        "buttons": [
            {"label": r.name, "method": "update", "args": [{"visible": [i == k for i in range(n)]}]}
            for k, r in enumerate(ordered)
        ],
        "direction": "down",
        "x": 1.01,
        "xanchor": "left",
        "y": 1.0,
        "yanchor": "top",
        "showactive": True,
    }
    fig.update_layout(
        template="plotly_white",
        height=110 + 32 * n_years,
        margin={"l": 60, "r": 200, "t": 40, "b": 20},
        yaxis={"autorange": "reversed", "type": "category", "title": "year"},
        xaxis={"type": "category", "side": "top"},
        updatemenus=[menu],
    )
    return fig
