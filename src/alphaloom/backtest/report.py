"""The backtest report: one self-contained HTML file, and the summary table behind it.

:func:`write_html_report` writes a page that opens offline (plotly.js is inlined once in the head): a
statistics table of every strategy on every symbol, any extra tables the caller passes (validation summary,
model metrics), and per symbol a chart of equity curves against the benchmark, drawdowns and positions. All
text is HTML-escaped. :func:`summary_frame` gives the same statistics as a frame for terminal output.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from alphaloom.backtest.engine import BacktestResult
from alphaloom.core.exceptions import DataFormatError, EmptyRangeError
from alphaloom.risk.measures import drawdown_series

__all__ = ["summary_frame", "write_html_report"]

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
    {"total_return", "cagr", "volatility", "max_drawdown", "turnover", "exposure", "hit_rate"}
)
_COUNT = frozenset({"n_trades", "max_drawdown_duration"})
_MONEY = frozenset({"total_costs", "final_equity"})

_PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2", "#bcbd22")
_BENCHMARK_COLOUR = "#7f7f7f"
_MISSING = "–"

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 1200px;
       color: #222; padding: 0 1rem; }
h1 { margin-bottom: 0.2rem; }
h2 { margin-top: 2.5rem; border-bottom: 1px solid #ddd; padding-bottom: 0.3rem; }
table { border-collapse: collapse; font-size: 0.85rem; margin: 0.5rem 0 1rem; }
th, td { padding: 0.3rem 0.6rem; border-bottom: 1px solid #eee; text-align: right; white-space: nowrap; }
th { background: #f6f6f6; position: sticky; top: 0; }
td.text, th.text { text-align: left; }
tr.benchmark td { color: #666; font-style: italic; }
.table-wrap { overflow-x: auto; }
ul.notes { color: #444; }
p.missing { color: #a33; }
"""


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


def write_html_report(
    path: str | Path,
    results: Sequence[BacktestResult],
    *,
    title: str,
    benchmark_name: str = "buy_and_hold",
    extra_tables: Mapping[str, pd.DataFrame] | None = None,
    notes: Sequence[str] = (),
) -> Path:
    """Write a self-contained HTML report of backtest results.

    Parameters
    ----------
    path
        Output file; parent folders are created.
    results
        Backtest results; charts are grouped by symbol in order of first appearance.
    title
        Page title.
    benchmark_name
        Name of the benchmark result on each symbol, drawn dashed in grey.
    extra_tables
        Further tables to show after the statistics, by heading (e.g. ``{"Validation": frame}``).
    notes
        Lines of text shown under the title (settings, caveats).

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
    from plotly.offline import get_plotlyjs  # imported here so that importing alphaloom.backtest stays light

    by_symbol: dict[str, list[BacktestResult]] = {}
    for r in results:
        by_symbol.setdefault(r.symbol, []).append(r)

    body = [f"<h1>{_esc(title)}</h1>"]
    if notes:
        body.append('<ul class="notes">' + "".join(f"<li>{_esc(note)}</li>" for note in notes) + "</ul>")
    body.append("<h2>Statistics</h2>")
    body.append(_stats_table(results, benchmark_name))
    for heading, table in (extra_tables or {}).items():
        if not isinstance(table, pd.DataFrame):
            raise DataFormatError(
                f"extra_tables[{heading!r}] must be a DataFrame, got {type(table).__name__}."
            )
        body.append(f"<h2>{_esc(heading)}</h2>")
        body.append(_frame_table(table))
    for i, (symbol, group) in enumerate(by_symbol.items()):
        body.append(f'<h2 id="symbol-{i}">{_esc(symbol or "(no symbol)")}</h2>')
        if not any(r.name == benchmark_name for r in group):
            body.append(f'<p class="missing">No {_esc(benchmark_name)} result for this symbol.</p>')
        figure = _symbol_figure(symbol, group, benchmark_name)
        body.append(
            figure.to_html(
                full_html=False, include_plotlyjs=False, div_id=f"chart-{i}", default_height="780px"
            )
        )

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


def _format_stat(key: str, value: float) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return _MISSING
    if key in _PERCENT:
        return f"{value:.2%}"
    if key in _COUNT:
        return f"{value:,.0f}"
    if key in _MONEY:
        return f"{value:,.2f}"
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


def _symbol_figure(symbol: str, results: Sequence[BacktestResult], benchmark_name: str) -> Any:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(
        rows=3,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.05,
        row_heights=[0.5, 0.25, 0.25],
        subplot_titles=("Equity", "Drawdown", "Position (weight at the close)"),
    )
    colours = iter(_PALETTE * (len(results) // len(_PALETTE) + 1))
    for r in results:
        is_benchmark = r.name == benchmark_name
        if is_benchmark:
            line = {"color": _BENCHMARK_COLOUR, "dash": "dash", "width": 1.5}
        else:
            line = {"color": next(colours), "width": 1.5}
        # Naive UTC datetime64 values: plotly copies object arrays of Timestamps slowly.
        x = r.ts.tz_convert("UTC").tz_localize(None).to_numpy()
        common = {"x": x, "name": r.name, "legendgroup": r.name, "mode": "lines"}
        fig.add_trace(go.Scatter(y=r.equity, line=line, **common), row=1, col=1)
        drawdown = -drawdown_series(r.returns)
        fig.add_trace(go.Scatter(y=drawdown, line=line, showlegend=False, **common), row=2, col=1)
        position_line = {**line, "shape": "hv"}
        fig.add_trace(go.Scatter(y=r.weights, line=position_line, showlegend=False, **common), row=3, col=1)
    fig.update_yaxes(title_text="equity", row=1, col=1)
    fig.update_yaxes(tickformat=".0%", row=2, col=1)
    fig.update_yaxes(tickformat=".1f", row=3, col=1)
    fig.update_xaxes(title_text="time (UTC)", row=3, col=1)
    fig.update_layout(
        title={"text": f"{symbol or '(no symbol)'}: strategies vs {benchmark_name}", "y": 0.985},
        template="plotly_white",
        hovermode="x unified",
        # The legend sits between the title and the first panel, so the two never overlap.
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.035, "x": 0.0},
        margin={"l": 60, "r": 20, "t": 110, "b": 40},
    )
    return fig
