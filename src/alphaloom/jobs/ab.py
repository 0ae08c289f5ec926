"""``alphaloom ab report``: compare a challenger with the champion on the stored out-of-sample backtest.

Both strategies' per-bar returns on every symbol's test segment are paired (same symbol, same bar: what shadow
mode records), judged by :func:`alphaloom.registry.compare_arms` (paired bootstrap, Ledoit-Wolf and
Jobson-Korkie-Memmel tests of the Sharpe difference, the minimum sample size, a decision) and attributed by
asset, by market regime and by agent (every stored strategy against the champion). The report prints as
tables and is written to ``reports/ab_report.html`` (plotly embedded, opens offline).
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from rich.table import Table

from alphaloom.core.exceptions import DataNotFoundError, did_you_mean
from alphaloom.jobs.workspace import Workspace
from alphaloom.registry import ABComparison, ABTestConfig, attribute_returns, compare_arms, regime_labels
from alphaloom.risk import measures

__all__ = ["ABReport", "ABTestConfig", "ab_report", "ab_tables"]


@dataclass(frozen=True)
class ABReport:
    """The comparison, its attribution tables and the HTML file written."""

    champion: str
    challenger: str
    comparison: ABComparison
    by_symbol: pd.DataFrame
    by_regime: pd.DataFrame
    by_agent: pd.DataFrame
    path: Path


def _paired_frame(ws: Workspace, champion: str, challenger: str) -> tuple[pd.DataFrame, dict[str, float]]:
    from alphaloom.jobs.stages import load_results

    results = load_results(ws)
    names = sorted({r.name for r in results})
    for name in (champion, challenger):
        if name not in names:
            raise DataNotFoundError(
                f"no strategy {name!r} in the stored backtest of {ws.root}.{did_you_mean(name, names)} "
                f"Stored: {', '.join(names)}."
            )
    by_key = {(r.symbol, r.name): r for r in results}
    symbols = sorted(
        {r.symbol for r in results if r.name == champion}
        & {r.symbol for r in results if r.name == challenger}
    )
    if not symbols:
        raise DataNotFoundError(
            f"{champion} and {challenger} share no backtested symbol; re-run `alphaloom backtest`."
        )
    with ws.require_store() as store:
        bars = store.read_bars(symbols)
    frames, ppy = [], {}
    for sym in symbols:
        a, b = by_key[(sym, champion)], by_key[(sym, challenger)]
        if not a.ts.equals(b.ts):
            raise DataNotFoundError(
                f"{champion} and {challenger} were backtested on different bars of {sym}; re-run "
                "`alphaloom backtest`."
            )
        sym_bars = bars[bars["symbol"] == sym].set_index("ts")
        labels = pd.Series(regime_labels(sym_bars["close"].to_numpy()), index=sym_bars.index).reindex(a.ts)
        frame = pd.DataFrame(
            {
                "symbol": sym,
                "ts": a.ts,
                "champion": np.asarray(a.returns, dtype=np.float64),
                "challenger": np.asarray(b.returns, dtype=np.float64),
                "regime": labels.fillna("warm-up").to_numpy(),
            }
        )
        for other in names:
            if (sym, other) in by_key and by_key[(sym, other)].ts.equals(a.ts):
                frame[f"strategy:{other}"] = np.asarray(by_key[(sym, other)].returns, dtype=np.float64)
        frames.append(frame)
        ppy[sym] = float(a.periods_per_year)
    return pd.concat(frames, ignore_index=True), ppy


def ab_report(
    ws: Workspace,
    champion: str,
    challenger: str,
    *,
    config: ABTestConfig | None = None,
    path: Path | None = None,
) -> ABReport:
    """Compare ``challenger`` with ``champion`` (backtest strategy names) and write the HTML report."""
    config = config or ABTestConfig()
    frame, ppy = _paired_frame(ws, champion, challenger)
    periods = float(np.median(list(ppy.values())))
    comparison = compare_arms(frame["champion"], frame["challenger"], periods_per_year=periods, config=config)
    by_symbol = attribute_returns(frame, "symbol", periods_per_year=ppy)
    by_regime = attribute_returns(frame, "regime", periods_per_year=periods)
    agent_rows = []
    for col in [c for c in frame.columns if c.startswith("strategy:")]:
        other = frame[col].to_numpy()
        test = measures.sharpe_difference_test(other, frame["champion"].to_numpy())
        agent_rows.append(
            {
                "strategy": col.split(":", 1)[1],
                "sharpe": measures.sharpe_ratio(other, periods),
                "sharpe_vs_champion": test.difference * math.sqrt(periods),
                "ledoit_wolf_p": test.p_value,
                "total_return": measures.total_return(other),
            }
        )
    by_agent = pd.DataFrame(agent_rows)
    out = path or ws.reports_dir / "ab_report.html"
    _write_html(out, champion, challenger, comparison, frame, by_symbol, by_regime, by_agent)
    ws.record(
        "ab_report",
        {"champion": champion, "challenger": challenger, "path": str(out), **comparison.statistics()},
    )
    return ABReport(champion, challenger, comparison, by_symbol, by_regime, by_agent, out)


def _fmt(value: object) -> str:
    if isinstance(value, float | np.floating):
        return "" if math.isnan(value) else f"{value:.4g}"
    return str(value)


def _rich(title: str, frame: pd.DataFrame) -> Table:
    table = Table(title=title)
    for col in frame.columns:
        table.add_column(str(col), justify="right" if pd.api.types.is_numeric_dtype(frame[col]) else "left")
    for row in frame.itertuples(index=False):
        table.add_row(*(_fmt(v) for v in row))
    return table


def ab_tables(report: ABReport) -> list[Table]:
    """The comparison's statistics and the attribution tables, for the terminal."""
    c = report.comparison
    stats = pd.DataFrame(
        {"statistic": list(c.statistics()), "value": [_fmt(v) for v in c.statistics().values()]}
    )
    return [
        _rich(f"A/B: {report.challenger} (challenger) vs {report.champion} (champion)", stats),
        _rich("By asset", report.by_symbol),
        _rich("By market regime (trailing trend x volatility)", report.by_regime),
        _rich("By agent: every stored strategy against the champion", report.by_agent),
    ]


def _table_html(frame: pd.DataFrame) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in row) + "</tr>"
        for row in frame.itertuples(index=False)
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _write_html(
    path: Path,
    champion: str,
    challenger: str,
    c: ABComparison,
    frame: pd.DataFrame,
    by_symbol: pd.DataFrame,
    by_regime: pd.DataFrame,
    by_agent: pd.DataFrame,
) -> None:
    import plotly.graph_objects as go
    from plotly.offline import get_plotlyjs
    from plotly.subplots import make_subplots

    fig = make_subplots(
        rows=1,
        cols=2,
        subplot_titles=("Growth of 1 per symbol (test segment)", "Bootstrap: Sharpe difference a year"),
    )
    for sym, g in frame.groupby("symbol", sort=True):
        for arm, dash in (("champion", "dot"), ("challenger", "solid")):
            fig.add_trace(
                go.Scatter(
                    x=g["ts"],
                    y=np.cumprod(1.0 + g[arm].to_numpy()),
                    name=f"{sym} {arm}",
                    line={"dash": dash},
                ),
                row=1,
                col=1,
            )
    samples = c.bootstrap.samples[np.isfinite(c.bootstrap.samples)] * math.sqrt(c.periods_per_year)
    fig.add_trace(go.Histogram(x=samples, nbinsx=60, name="bootstrap", showlegend=False), row=1, col=2)
    fig.add_vline(x=0.0, line_dash="dash", row=1, col=2)
    fig.update_layout(height=520, template="plotly_white")
    stats = pd.DataFrame({"statistic": list(c.statistics()), "value": list(c.statistics().values())})
    body = [
        f"<h1>A/B: {html.escape(challenger)} (challenger) vs {html.escape(champion)} (champion)</h1>",
        f'<p class="decision">Decision: <b>{html.escape(c.decision)}</b>: {html.escape(c.reason)}</p>',
        fig.to_html(full_html=False, include_plotlyjs=False, div_id="ab-chart"),
        "<h2>Paired tests</h2>",
        _table_html(stats),
        "<h2>By asset</h2>",
        _table_html(by_symbol),
        "<h2>By market regime</h2>",
        _table_html(by_regime),
        "<h2>By agent (every stored strategy against the champion)</h2>",
        _table_html(by_agent),
        "<p>Returns are per bar after commissions and slippage on each symbol's untouched test segment; "
        "pairs are the same symbol on the same bar. p_gain and p_loss are one-sided p-values of the deciding "
        "test; "
        "min_sample_bars is the number of paired bars needed to detect the observed difference with the "
        "configured power.</p>",
    ]
    page = (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>A/B {html.escape(challenger)} vs {html.escape(champion)}</title>"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin:1em 0}"
        "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}.decision{font-size:1.2em}</style>"
        f'<script type="text/javascript">{get_plotlyjs()}</script></head><body>'
        + "\n".join(body)
        + "</body></html>"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
