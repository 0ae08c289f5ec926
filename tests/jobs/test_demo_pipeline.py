"""The main job end to end in ``--quick`` mode: report, finite and consistent numbers, determinism."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from alphaloom.jobs import stages
from alphaloom.jobs.config import RunConfig
from alphaloom.jobs.demo import DemoResult, run_demo
from alphaloom.jobs.workspace import Workspace

pytestmark = pytest.mark.slow

STRATEGIES = {"buy_and_hold", "ppo", "sac", "td3", "rainbow", "ensemble_meta"}


@pytest.fixture(scope="module")
def quick_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Workspace, DemoResult, DemoResult]:
    config = RunConfig.quick(seed=11)
    ws_a = Workspace.resolve(tmp_path_factory.mktemp("run_a"))
    ws_b = Workspace.resolve(tmp_path_factory.mktemp("run_b"))
    return ws_a, run_demo(ws_a, config), run_demo(ws_b, config)


def test_report_is_written_and_self_contained(quick_runs) -> None:
    ws, result, _ = quick_runs
    assert result.report_path == ws.reports_dir / "report.html"
    html = Path(result.report_path).read_text(encoding="utf-8")
    assert len(html) > 100_000  # plotly.js is embedded, so the file opens offline
    assert '<script src="http' not in html
    for name in STRATEGIES:
        assert name in html
    for sym in RunConfig.quick().symbols:
        assert sym in html


def test_summary_covers_every_symbol_and_strategy_with_finite_numbers(quick_runs) -> None:
    _, result, _ = quick_runs
    summary = result.summary
    assert set(summary["symbol"]) == set(RunConfig.quick().symbols)
    for _, group in summary.groupby("symbol"):
        assert set(group["strategy"]) == STRATEGIES
    numeric = summary[["total_return", "sharpe", "max_drawdown", "final_equity"]].to_numpy(dtype=float)
    assert np.isfinite(numeric).all()
    assert ((summary["max_drawdown"] >= 0) & (summary["max_drawdown"] <= 1)).all()


def test_equity_is_initial_cash_times_compounded_returns(quick_runs) -> None:
    ws, result, _ = quick_runs
    results = stages.load_results(ws)
    assert len(results) == len(result.summary)
    for r in results:
        expected = r.initial_cash * float(np.prod(1.0 + r.returns))
        assert math.isclose(r.final_equity, expected, rel_tol=1e-9), (r.symbol, r.name)
        assert np.allclose(r.equity, r.cash + r.units * _closes(ws, r.symbol, r.ts), rtol=1e-9)
        row = result.summary[(result.summary["symbol"] == r.symbol) & (result.summary["strategy"] == r.name)]
        assert math.isclose(float(row["final_equity"].iloc[0]), r.final_equity, rel_tol=1e-12)


def test_backtest_covers_only_the_untouched_test_segment(quick_runs) -> None:
    ws, _, _ = quick_runs
    segments = ws.manifest()["train_cnn_lstm"]["segments"]
    for r in stages.load_results(ws):
        test_start = pd.Timestamp(segments[r.symbol]["test"][0])
        assert r.ts[0] >= test_start


def test_same_seed_gives_identical_backtest_numbers(quick_runs) -> None:
    _, a, b = quick_runs
    pd.testing.assert_frame_equal(a.summary, b.summary, check_exact=True)


def _closes(ws: Workspace, symbol: str, ts: pd.DatetimeIndex) -> np.ndarray:
    with ws.require_store() as store:
        bars = store.read_bars([symbol])
    return bars.set_index("ts")["close"].reindex(ts).to_numpy()


def test_training_logs_collapse_diagnostics_per_agent(quick_runs) -> None:
    ws, _, _ = quick_runs
    rows = ws.manifest()["train_rl"]["agents"]
    assert [r["agent"] for r in rows] == ["ppo", "sac", "td3", "rainbow"]
    for row in rows:
        assert 0.0 <= row["action_entropy"] <= 1.0
        assert 0.0 <= row["time_in_market"] <= 1.0
        assert row["turnover"] >= 0.0
        flags = row["collapse_flags"]
        assert flags == "-" or set(flags.split(", ")) <= {
            "never_trades",
            "always_flat",
            "buy_and_hold",
            "constant_action",
        }
