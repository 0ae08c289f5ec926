"""The HTML report: self-contained, escaped, one chart per symbol, and the summary frame behind it."""

from __future__ import annotations

import html
import math
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from alphaloom.backtest import (
    BacktestResult,
    CostModel,
    buy_and_hold,
    run_backtest,
    summary_frame,
    write_html_report,
)
from alphaloom.backtest.report import ReportConfig, monthly_returns, sharpe_inference_frame, trade_list
from alphaloom.core.exceptions import ConfigError, DataFormatError, EmptyRangeError
from alphaloom.risk import measures

COSTS = CostModel()
EVIL = "<script>alert('x')</script>"


@pytest.fixture(scope="module")
def results(synthetic: Callable[..., pd.DataFrame]) -> list[BacktestResult]:
    out = []
    for seed, symbol in ((1, "AAA"), (2, "BBB/USD")):
        bars = synthetic(seed, 200, symbol=symbol)
        momentum = (bars["close"].pct_change(10) > 0).astype(float).to_numpy()
        out.append(buy_and_hold(bars, COSTS))
        out.append(run_backtest(bars, momentum, costs=COSTS, name="momentum_10"))
        out.append(run_backtest(bars, -momentum, costs=COSTS, name=EVIL))
    return out


@pytest.fixture(scope="module")
def report(results: list[BacktestResult], tmp_path_factory: pytest.TempPathFactory) -> str:
    extra = {
        "Validation <summary>": pd.DataFrame(
            {"check": ["gaps", "ohlc"], "failures": [0, 3], "rate": [0.0, np.nan]}
        ),
        "Model metrics": pd.DataFrame({"accuracy": [0.53]}, index=pd.Index(["cnn_lstm"], name="model")),
    }
    path = write_html_report(
        tmp_path_factory.mktemp("report") / "nested" / "report.html",
        results,
        title="Demo & <test>",
        extra_tables=extra,
        notes=["costs: 1 bp + 2 bp", "a note with <b>markup</b>"],
    )
    assert isinstance(path, Path)
    assert path.is_file()
    return path.read_text(encoding="utf-8")


def test_report_is_self_contained(report: str) -> None:
    assert report.startswith("<!DOCTYPE html>")
    assert not re.search(r"<script[^>]*\bsrc\s*=", report, flags=re.IGNORECASE)
    assert not re.search(r"<link[^>]*https?://", report, flags=re.IGNORECASE)
    assert report.count("Plotly.newPlot") == 4  # per symbol: the time-series panels and the monthly heatmap
    assert report.count("* plotly.js v") == 1  # the library is inlined exactly once
    # Outside the inlined library nothing points at the network: no CDN, no stylesheet, no image, no link.
    markup = re.sub(r"<script[^>]*>.*?</script>", "", report, flags=re.DOTALL | re.IGNORECASE)
    assert not re.search(r"https?://", markup)
    assert not re.search(r"<script[^>]*\bsrc\s*=\s*[\"']?https?://", report, flags=re.IGNORECASE)


def test_report_names_every_strategy_and_symbol(report: str, results: list[BacktestResult]) -> None:
    for r in results:
        assert html.escape(r.name) in report
        assert html.escape(r.symbol) in report
    for heading in ("Statistics", "Validation &lt;summary&gt;", "Model metrics", "cnn_lstm", "gaps"):
        assert heading in report


def test_report_escapes_all_text(report: str) -> None:
    assert EVIL not in report
    assert "<b>markup</b>" not in report
    assert "a note with &lt;b&gt;markup&lt;/b&gt;" in report
    assert "<title>Demo &amp; &lt;test&gt;</title>" in report


def test_report_without_a_benchmark_says_so(results: list[BacktestResult], tmp_path: Path) -> None:
    path = write_html_report(tmp_path / "r.html", results[1:2], title="t", benchmark_name="missing_bench")
    assert "No missing_bench result for this symbol" in path.read_text(encoding="utf-8")


def test_report_refuses_empty_or_foreign_input(tmp_path: Path, results: list[BacktestResult]) -> None:
    with pytest.raises(EmptyRangeError, match="no backtest results"):
        write_html_report(tmp_path / "r.html", [], title="t")
    with pytest.raises(DataFormatError, match="BacktestResult"):
        write_html_report(tmp_path / "r.html", ["not a result"], title="t")  # type: ignore[list-item]
    with pytest.raises(DataFormatError, match="DataFrame"):
        write_html_report(tmp_path / "r.html", results, title="t", extra_tables={"x": [1, 2]})  # type: ignore[dict-item]


def test_summary_frame_has_one_row_per_result(results: list[BacktestResult]) -> None:
    frame = summary_frame(results)
    assert list(frame.columns[:2]) == ["symbol", "name"]
    assert list(frame.columns[2:]) == list(results[0].stats())
    assert len(frame) == len(results)
    assert frame["name"].tolist() == [r.name for r in results]
    assert frame.loc[0, "n_trades"] == 1.0
    assert summary_frame([]).empty


# ------------------------------------------------------------------------------------------------ tearsheet
def test_tearsheet_has_every_panel_and_table(report: str) -> None:
    for heading in (
        "Equity vs benchmark",
        "Drawdown (underwater)",
        "Rolling Sharpe ratio (63 bars, annualised)",
        "Exposure (weight at the close)",
        "Turnover (share of equity traded, rolling 63-bar sum)",
        "Monthly returns",
        "How much to trust the Sharpe ratio",
        "PSR (SR &gt; 0)",
        "DSR",
        "CI low",
        "Trades",
        "round trips",
    ):
        assert heading in report, heading
    assert '"type":"log"' not in report.replace(" ", "")
    assert 'href="#symbol-1"' in report  # the table of contents links every symbol
    assert "<details open>" in report  # the first strategy's trades are unfolded


def test_tearsheet_settings_change_the_page(results: list[BacktestResult], tmp_path: Path) -> None:
    config = ReportConfig(log_scale=True, rolling_window=21, bootstrap_resamples=0, max_trades=3)
    text = write_html_report(tmp_path / "r.html", results, title="t", config=config).read_text(
        encoding="utf-8"
    )
    assert "Equity vs benchmark (log scale)" in text
    assert '"type":"log"' in text.replace(" ", "")
    assert "Rolling Sharpe ratio (21 bars" in text
    assert "bootstrap interval" not in text
    assert "(the last 3 listed)" in text
    assert text.count('<tr><td class="text">20') <= 3 * len(results)  # at most 3 trade rows per strategy
    with pytest.raises(ConfigError, match="Did you mean 'rolling_window'"):
        ReportConfig.from_dict({"rolling_windows": 21})


def test_sharpe_inference_uses_the_shared_measures(results: list[BacktestResult]) -> None:
    config = ReportConfig(bootstrap_resamples=200, seed=3)
    frame = sharpe_inference_frame(results, config=config)
    assert frame["name"].tolist() == [r.name for r in results]
    for row, r in zip(frame.itertuples(), results, strict=True):
        assert row.sharpe == pytest.approx(measures.sharpe_ratio(r.returns, 252), rel=1e-12)
        assert row.psr == pytest.approx(measures.probabilistic_sharpe_ratio(r.returns), rel=1e-12)
        assert row.sharpe_low < row.sharpe < row.sharpe_high
        if r.name == "buy_and_hold":
            assert math.isnan(row.dsr)
            assert math.isnan(row.n_trials)
    # Two strategies per symbol are the trials: the DSR is the PSR against the expected best of two by luck.
    aaa = [r for r in results if r.symbol == "AAA" and r.name != "buy_and_hold"]
    sharpes = [measures.sharpe_ratio(r.returns, periods_per_year=1) for r in aaa]
    expected = measures.deflated_sharpe_ratio(aaa[0].returns, 2, float(np.var(sharpes, ddof=1)))
    got = frame[(frame["symbol"] == "AAA") & (frame["name"] == aaa[0].name)]
    assert float(got["dsr"].iloc[0]) == pytest.approx(expected, rel=1e-12)
    assert float(got["dsr"].iloc[0]) <= float(got["psr"].iloc[0])
    again = sharpe_inference_frame(results, config=config)
    pd.testing.assert_frame_equal(frame, again)  # the bootstrap is seeded


def test_monthly_returns_compound_to_the_year_and_the_total(results: list[BacktestResult]) -> None:
    for r in results:
        table = monthly_returns(r)
        assert list(table.columns) == [
            "Jan",
            "Feb",
            "Mar",
            "Apr",
            "May",
            "Jun",
            "Jul",
            "Aug",
            "Sep",
            "Oct",
            "Nov",
            "Dec",
            "Year",
        ]
        months = table.drop(columns="Year")
        by_year = (1.0 + months.fillna(0.0)).prod(axis=1) - 1.0
        np.testing.assert_allclose(by_year, table["Year"], rtol=0, atol=1e-12)
        assert float((1.0 + table["Year"]).prod() - 1.0) == pytest.approx(measures.total_return(r.returns))
        assert table.index.name == "year"


def _bars(opens: list[float], closes: list[float]) -> pd.DataFrame:
    ts = pd.date_range("2024-01-01", periods=len(opens), freq="D", tz="UTC")
    return pd.DataFrame({"symbol": "T", "ts": ts, "open": opens, "close": closes})


def test_trade_list_of_a_hand_worked_example() -> None:
    opens = [10.0, 10.0, 11.0, 12.0, 12.0, 10.0, 9.0, 9.5]
    bars = _bars(opens, [o * 1.01 for o in opens])
    # Decided at each close, filled at the next open: long, hold, flat, short, flip to long and keep it.
    targets = [1.0, 1.0, 0.0, -1.0, 1.0, 1.0, 1.0, 0.0]
    free = CostModel(commission_bps=0.0, slippage_bps=0.0)
    result = run_backtest(bars, targets, costs=free, initial_cash=1000.0, min_trade_weight=0.0)
    trades = trade_list(result)
    assert trades["side"].tolist() == ["long", "short", "long"]
    assert trades["open"].tolist() == [False, False, True]
    ts = result.ts  # bar j of the result is bars row j + 1
    assert trades["entry_ts"].tolist() == [ts[0], ts[3], ts[4]]
    assert trades["exit_ts"].iloc[:2].tolist() == [ts[2], ts[4]]
    assert pd.isna(trades["exit_ts"].iloc[2])
    np.testing.assert_allclose(trades["entry_price"], [10.0, 12.0, 10.0], rtol=1e-12)
    np.testing.assert_allclose(trades["exit_price"].iloc[:2], [12.0, 10.0], rtol=1e-12)
    assert math.isnan(trades["exit_price"].iloc[2])
    units = trades["units"].to_numpy()
    np.testing.assert_allclose(trades["pnl"].iloc[:2], [units[0] * 2.0, units[1] * 2.0], rtol=1e-9)
    assert trades["bars_held"].tolist() == [2, 1, 3]
    # Profit adds up to the change of equity, the open trade marked at the last close.
    assert trades["pnl"].sum() == pytest.approx(result.final_equity - result.initial_cash, rel=1e-12)


def test_trade_list_prices_include_costs_and_add_up(results: list[BacktestResult]) -> None:
    for r in results:
        trades = trade_list(r)
        assert len(trades) >= 1
        assert trades["pnl"].sum() == pytest.approx(r.final_equity - r.initial_cash, rel=1e-9, abs=1e-6)
        assert trades["entry_ts"].is_monotonic_increasing
        assert (trades["bars_held"] >= 1).all()
        assert trades["open"].sum() <= 1
    hold = trade_list(results[0])
    assert hold["side"].tolist() == ["long"]
    assert hold["open"].tolist() == [True]
    # An all-in buy price is above the open it filled at (slippage and commission).
    opens = _bars([10.0, 10.0, 10.0], [10.0, 10.0, 10.0])
    bought = run_backtest(opens, [1.0, 1.0, 1.0], costs=CostModel(commission_bps=10.0, slippage_bps=5.0))
    assert trade_list(bought)["entry_price"].iloc[0] == pytest.approx(10.0 * (1 + 5e-4) * (1 + 1e-3))
    with pytest.raises(DataFormatError, match="BacktestResult"):
        trade_list("nope")  # type: ignore[arg-type]
