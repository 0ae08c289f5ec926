"""``alphaloom results list|show|compare|migrate`` and the stages that record results.

The fast tests use a workspace with real SPY and IWM bars, the real features stage, and rule strategies
backtested under two cost settings and recorded as the backtest stage records them. The slow test runs the
main job (``alphaloom demo --quick``) and a second ``alphaloom backtest`` with higher costs, and compares the
two demo backtests.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import psycopg
import pytest
from typer.testing import CliRunner

from alphaloom.backtest import CostModel, buy_and_hold, run_backtest
from alphaloom.cli.main import app, main
from alphaloom.jobs import results, stages
from alphaloom.jobs.config import RunConfig
from alphaloom.jobs.workspace import Workspace

PG_DSN = "postgresql://postgres@127.0.0.1:5432/test"
LOW = RunConfig(symbols=("SPY", "IWM"), costs=CostModel(commission_bps=1.0, slippage_bps=2.0))
HIGH = LOW.replace(costs=CostModel(commission_bps=10.0, slippage_bps=20.0))


def cli(*args: str, ws: Workspace) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALPHALOOM_RESULTS")}
    env |= {"COLUMNS": "200", "ALPHALOOM_DATA_DIR": str(ws.root)}
    return subprocess.run(
        [sys.executable, "-m", "alphaloom.cli.main", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )


def invoke(*args: str, ws: Workspace, env: dict[str, str] | None = None):
    result = CliRunner().invoke(
        app,
        [*args, "--data-dir", str(ws.root)],
        env={"COLUMNS": "220", **(env or {})},
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    return result.output


def one_line_error(proc: subprocess.CompletedProcess[str], *fragments: str) -> str:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error:")
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def main_cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch):
    """Run the console entry point in this process (what `alphaloom ...` runs, without a new interpreter)."""

    def run(*args: str, ws: Workspace) -> subprocess.CompletedProcess[str]:
        monkeypatch.setenv("COLUMNS", "200")
        monkeypatch.setattr(sys, "argv", ["alphaloom", *args, "--data-dir", str(ws.root)])
        with pytest.raises(SystemExit) as exit_info:
            main()
        captured = capsys.readouterr()
        return subprocess.CompletedProcess(args, exit_info.value.code, captured.out, captured.err)

    return run


def rule_backtests(ws: Workspace, config: RunConfig):
    """Buy-and-hold and a 50-day trend rule on the last 300 bars of each symbol, under ``config.costs``."""
    bars = stages.load_symbol_bars(ws, config)
    out = []
    for symbol in config.symbols:
        sym = bars[bars["symbol"] == symbol].reset_index(drop=True)
        trend = (sym["close"] > sym["close"].rolling(50).mean()).astype(float).to_numpy()
        test = sym.iloc[-300:].reset_index(drop=True)
        common = {"costs": config.costs, "initial_cash": config.initial_cash}
        out.append(buy_and_hold(test, **common))
        out.append(run_backtest(test, trend[-300:], name="trend_50", **common))
    return out


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    ws = Workspace.resolve(tmp_path_factory.mktemp("results_cli"))
    stages.ingest(ws, samples=["us_equities_daily"])
    ws.save_config(LOW)
    stages.compute_features(ws, LOW)
    for config in (LOW, HIGH):
        results.record_backtest(ws, config, rule_backtests(ws, config), name="rules")
    return ws


def backtest_ids(ws: Workspace) -> list[str]:
    """The two rule backtests, oldest (low costs) first."""
    return [r.run_id for r in reversed(results.list_runs(ws, kind="backtest"))]


def test_features_stage_records_its_vectors_once(ws: Workspace) -> None:
    run_id = ws.manifest()["features"]["results_run"]
    with ws.require_store() as store:
        table = store.read_frame("features")
    with results.open_results(ws, read_only=True) as store:
        run = store.run(run_id)
        vectors = store.vectors(run_id)
    assert run.config_hash == LOW.features.config_hash()
    assert run_id.startswith(f"feat-{run.config_hash[:8]}-{run.data_fingerprint[:8]}-")
    assert list(run.vector_names) == [c for c in table.columns if c not in ("symbol", "ts")]
    pd.testing.assert_frame_equal(vectors, table, check_exact=True)
    stages.compute_features(ws, LOW)  # same features of the same bars: no second copy
    assert [r.run_id for r in results.list_runs(ws, kind="features")] == [run_id]


def test_list_shows_every_run_and_filters_by_kind(ws: Workspace, main_cli) -> None:
    low, high = backtest_ids(ws)
    everything = invoke("results", "list", ws=ws)
    assert "Result runs: 3" in everything
    for run_id in (low, high, ws.manifest()["features"]["results_run"]):
        assert run_id in everything
    only = invoke("results", "list", "--kind", "backtest", ws=ws)
    assert "backtest runs: 2" in only
    assert "feat-" not in only
    assert only.index(high) < only.index(low)  # newest first
    one_line_error(
        main_cli("results", "list", "--kind", "backtests", ws=ws), "backtests", "Did you mean 'backtest'"
    )


def test_show_prints_statistics_and_the_equity_curves(ws: Workspace) -> None:
    low, _ = backtest_ids(ws)
    text = invoke("results", "show", low, ws=ws)
    with results.open_results(ws, read_only=True) as store:
        stats = store.stats(low)
        n_trades = len(store.trades(low))
    for fragment in ("backtest", "rules", LOW.config_hash(), "trend_50", "buy_and_hold", "sharpe"):
        assert fragment in text
    assert f"Equity curves ({n_trades} trades recorded)" in text
    details = results.show(ws, low[:-2])  # a unique prefix names the run
    assert details.run.run_id == low
    np.testing.assert_allclose(details.equity_summary["start_equity"], LOW.initial_cash, rtol=1e-12)
    final = stats[stats["stat"] == "final_equity"].set_index(["symbol", "label"])["value"]
    shown = details.equity_summary.set_index(["symbol", "label"])["final_equity"]
    np.testing.assert_allclose(shown.sort_index(), final.sort_index(), rtol=1e-12)
    every = invoke("results", "show", low, "--stat", "all", ws=ws)
    assert "sortino" in every
    assert "sortino" not in text


def test_compare_shows_the_cost_of_higher_costs_and_plots_the_curves(ws: Workspace, tmp_path: Path) -> None:
    low, high = backtest_ids(ws)
    page = tmp_path / "cmp" / "compare.html"
    text = invoke("results", "compare", low, high, "--report", str(page), ws=ws)
    assert f"diff {high}" in text
    assert "config hash (differs)" in text
    assert f"report: {page}" in text.replace("\n", "")
    table = results.compare(ws, [low, high], stats=["final_equity"]).table
    assert len(table) == 4  # 2 symbols x 2 strategies
    assert (table[f"diff {high}"] < 0).all()  # the same trades, dearer
    np.testing.assert_allclose(table[f"diff {high}"], table[high] - table[low], rtol=0, atol=1e-9)
    html = page.read_text(encoding="utf-8")
    for fragment in (low, high, "SPY: equity", "IWM: equity", "trend_50", "Plotly"):
        assert fragment in html
    spy_only = results.compare(ws, [low, high], symbols=["SPY"], stats=["all"]).table
    assert set(spy_only["symbol"]) == {"SPY"}
    assert "sortino" in set(spy_only["stat"])


def test_unknown_run_ids_and_statistics_give_one_line_errors(ws: Workspace, main_cli, tmp_path: Path) -> None:
    low, high = backtest_ids(ws)
    typo = low[:-1] + ("0" if low[-1] != "0" else "1")
    one_line_error(cli("results", "show", typo, ws=ws), typo, f"Did you mean '{low}'")  # the real console
    one_line_error(main_cli("results", "compare", low, "bt-nope", ws=ws), "bt-nope", "alphaloom results list")
    one_line_error(main_cli("results", "compare", low, ws=ws), "two or more")
    one_line_error(
        main_cli("results", "compare", low, high, "--stat", "sharp", ws=ws), "sharp", "Did you mean 'sharpe'"
    )
    one_line_error(main_cli("results", "show", "bt-x", ws=Workspace.resolve(tmp_path)), "no results")


def test_trading_runs_are_recorded_once_per_run_and_updated_on_resume(ws: Workspace) -> None:
    summary = {
        "run_id": "abc123",
        "venue": "paper",
        "finished": False,
        "bars_processed": 10,
        "orders_sent": 4,
        "fills": 3,
        "degraded": [],
        "positions": {"SPY": 12.0},
        "cash": 95_000.0,
        "equity": 100_250.5,
        "risk_state": "NORMAL",
    }
    ts = pd.date_range("2024-01-02", periods=3, tz="UTC")
    curve = pd.DataFrame({"ts": ts, "equity": [100_000.0, 100_100.0, 100_250.5]})
    run_id = results.record_trading_run(ws, LOW, summary, equity=curve)
    again = results.record_trading_run(ws, LOW, summary | {"bars_processed": 20, "finished": True})
    assert run_id == again == "live-abc123"
    assert [r.run_id for r in results.list_runs(ws, kind="live")] == [run_id]
    details = results.show(ws, run_id)
    stats = details.stats.set_index(["symbol", "label", "stat"])["value"]
    assert stats[("", "paper", "bars_processed")] == 20
    assert stats[("SPY", "position", "quantity")] == 12.0
    assert details.run.summary["finished"] is True
    assert details.equity_summary.empty  # the resumed record replaced the first, curve and all


def test_results_go_to_postgresql_when_a_dsn_file_is_configured(
    ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    schema = f"al_rescli_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    dsn_file = tmp_path / "results_dsn"
    dsn_file.write_text(PG_DSN + "\n")
    monkeypatch.setenv(results.RESULTS_DSN_FILE_ENV, str(dsn_file))
    monkeypatch.setenv(results.RESULTS_SCHEMA_ENV, schema)
    try:
        run_id = results.record_backtest(ws, LOW, rule_backtests(ws, LOW), name="on_pg")
        text = invoke("results", "list", ws=ws)
        assert run_id in text
        assert "Result runs: 1" in text  # not the workspace's DuckDB runs
        assert "on_pg" in invoke("results", "show", run_id, ws=ws)
        migrated = invoke("results", "migrate", ws=ws)
        assert f"schema {schema}" in migrated
        assert "already current" in migrated
    finally:
        with psycopg.connect(PG_DSN, autocommit=True) as con:
            con.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    monkeypatch.setenv(results.RESULTS_DSN_FILE_ENV, str(tmp_path / "missing"))
    with pytest.raises(Exception, match="cannot be read"):
        results.list_runs(ws)


@pytest.mark.slow
def test_two_demo_backtests_compare_without_recomputing(tmp_path: Path) -> None:
    """`alphaloom demo --quick`, then `alphaloom backtest` with ten times the costs: the results store holds
    the demo's features, predictions and both backtests, linked, and compare shows what the costs took."""
    ws = Workspace.resolve(tmp_path / "demo")
    quick = RunConfig.quick(seed=3).replace(symbols=("SPY", "EURUSD"))
    quick_file = tmp_path / "quick.yaml"
    quick_file.write_text(json.dumps(quick.model_dump(mode="json")))  # JSON is YAML
    dear = quick.replace(costs=CostModel(commission_bps=10.0, slippage_bps=20.0))
    dear_file = tmp_path / "dear.yaml"
    dear_file.write_text(json.dumps(dear.model_dump(mode="json")))
    assert cli("demo", "--config", str(quick_file), ws=ws).returncode == 0
    first = ws.manifest()["backtest"]["results_run"]
    assert cli("backtest", "--config", str(dear_file), ws=ws).returncode == 0
    second = ws.manifest()["backtest"]["results_run"]
    kinds = {r.kind.value: r for r in results.list_runs(ws)}
    assert set(kinds) == {"features", "predictions", "backtest"}
    run = results.show(ws, first).run
    assert run.params["features_run"] == kinds["features"].run_id
    assert run.params["predictions_run"] == kinds["predictions"].run_id
    assert kinds["predictions"].params["registered"] == "cnn_lstm/1"
    assert len(run.params["models"]) == 6  # cnn_lstm, four agents, their ensemble
    with results.open_results(ws, read_only=True) as store:
        predictions = store.vectors(kinds["predictions"].run_id)
    with ws.require_store() as bar_store:
        forecasts = bar_store.read_frame("forecasts")
    pd.testing.assert_frame_equal(predictions, forecasts[list(predictions.columns)], check_exact=True)
    proc = cli("results", "compare", first, second, "--stat", "final_equity", ws=ws)
    assert proc.returncode == 0, proc.stderr
    assert f"diff {second}" in proc.stdout
    table = results.compare(ws, [first, second], stats=["final_equity", "n_trades"]).table
    bh = table[(table["label"] == "buy_and_hold") & (table["stat"] == "final_equity")]
    assert (bh[f"diff {second}"] < 0).all()  # buy-and-hold trades once either way, and pays more
    assert set(table["symbol"]) == {"SPY", "EURUSD"}
