"""The HTML report: self-contained, escaped, one chart per symbol, and the summary frame behind it."""

from __future__ import annotations

import html
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
from alphaloom.core.exceptions import DataFormatError, EmptyRangeError

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
    assert report.count("Plotly.newPlot") == 2  # one chart per symbol
    assert report.count("* plotly.js v") == 1  # the library is inlined exactly once


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
