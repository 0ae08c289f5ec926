"""The command line: help for every subcommand, and one-line errors with exit code 2 for bad input."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SUBCOMMANDS = [
    ["demo"],
    ["data", "ingest"],
    ["data", "list"],
    ["data", "validate"],
    ["data", "quarantine"],
    ["features"],
    ["train", "cnn-lstm"],
    ["train", "rl"],
    ["backtest"],
    ["report"],
    ["evaluate", "forecasters"],
    ["evaluate", "agents"],
    ["tune", "cnn-lstm"],
    ["tune", "agent"],
    ["portfolio", "optimize"],
    ["portfolio", "rebalance"],
    ["trade"],
    ["audit", "verify"],
    ["audit", "export"],
    ["models", "list"],
    ["models", "show"],
    ["models", "promote"],
    ["models", "rollback"],
    ["ab", "report"],
    ["secrets", "init"],
    ["secrets", "set"],
    ["secrets", "get"],
    ["secrets", "list"],
    ["secrets", "rotate"],
    ["secrets", "rotate-key"],
    ["results", "list"],
    ["results", "show"],
    ["results", "compare"],
    ["results", "migrate"],
    ["schedule", "list"],
    ["schedule", "run"],
    ["serve"],
    ["serve", "keys", "create"],
    ["serve", "keys", "list"],
    ["serve", "keys", "revoke"],
]


def run_cli(*args: str, data_dir: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "ALPHALOOM_DATA_DIR"}
    env["COLUMNS"] = "200"
    if data_dir is not None:
        env["ALPHALOOM_DATA_DIR"] = str(data_dir)
    return subprocess.run(
        [sys.executable, "-m", "alphaloom.cli.main", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error:")
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_help_lists_every_subcommand() -> None:
    proc = run_cli("--help")
    assert proc.returncode == 0
    for name in (
        "demo",
        "data",
        "features",
        "train",
        "backtest",
        "report",
        "evaluate",
        "tune",
        "portfolio",
        "trade",
        "audit",
        "models",
        "ab",
        "secrets",
        "results",
        "schedule",
        "chaos",
        "serve",
    ):
        assert name in proc.stdout
    data_help = run_cli("data", "--help").stdout
    assert all(name in data_help for name in ("ingest", "list", "validate", "quarantine"))


@pytest.mark.parametrize("args", SUBCOMMANDS, ids=" ".join)
def test_each_subcommand_has_help(args: list[str]) -> None:
    proc = run_cli(*args, "--help")
    assert proc.returncode == 0, proc.stderr
    assert "--data-dir" in proc.stdout


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cli_store")
    proc = run_cli("data", "ingest", "--sample", "crypto_daily", data_dir=root)
    assert proc.returncode == 0, proc.stderr
    return root


def test_ingest_is_idempotent_from_the_cli(store_dir: Path) -> None:
    proc = run_cli("data", "ingest", "--sample", "crypto_daily", data_dir=store_dir)
    assert proc.returncode == 0, proc.stderr
    row = next(ln for ln in proc.stdout.splitlines() if "crypto_daily" in ln)
    cells = [c.strip() for c in row.strip("│┃ ").split("│")]
    rows, inserted, updated, unchanged = (int(cells[i]) for i in (1, 3, 4, 5))
    assert (inserted, updated, unchanged) == (0, 0, rows)
    listing = run_cli("data", "list", data_dir=store_dir).stdout
    assert "BTCUSD" in listing
    assert "ETHUSD" in listing


def test_missing_file(tmp_path: Path) -> None:
    proc = run_cli("data", "ingest", "--file", str(tmp_path / "nope.csv"), "--symbol", "X", data_dir=tmp_path)
    assert_one_line_error(proc, "nope.csv", "does not exist")


def test_malformed_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("timestamp,open,high,low\n2020-01-01,1,2,0.5\n")
    proc = run_cli("data", "ingest", "--file", str(bad), "--symbol", "X", data_dir=tmp_path)
    assert_one_line_error(proc, "close")


def test_unparsable_values(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("timestamp,open,high,low,close,volume\n2020-01-01,1,2,0.5,abc,10\n")
    proc = run_cli("data", "ingest", "--file", str(bad), "--symbol", "X", data_dir=tmp_path)
    assert_one_line_error(proc, "close")


def test_unknown_symbol(store_dir: Path) -> None:
    proc = run_cli("features", "--symbols", "BTCUSDD", data_dir=store_dir)
    assert_one_line_error(proc, "BTCUSDD", "BTCUSD")


def test_empty_date_range(store_dir: Path) -> None:
    proc = run_cli("features", "--symbols", "BTCUSD", "--start", "2030-01-01", data_dir=store_dir)
    assert_one_line_error(proc, "2030")
    proc = run_cli(
        "features", "--symbols", "BTCUSD", "--start", "2019-01-01", "--end", "2018-01-01", data_dir=store_dir
    )
    assert_one_line_error(proc, "empty")


def test_bad_date(store_dir: Path) -> None:
    proc = run_cli("features", "--symbols", "BTCUSD", "--start", "yesterday-ish", data_dir=store_dir)
    assert_one_line_error(proc, "yesterday-ish")


def test_stage_before_its_inputs_exist(tmp_path: Path) -> None:
    proc = run_cli("backtest", data_dir=tmp_path)
    assert_one_line_error(proc, "alphaloom")


def test_bad_rows_are_quarantined_at_ingest_not_dropped(tmp_path: Path) -> None:
    bars = tmp_path / "bars.csv"
    bars.write_text(
        "timestamp,open,high,low,close,volume\n"
        "2020-01-01,10,12,9,11,100\n"
        "2020-01-02,10,9,9.5,11,100\n"  # high below open: inconsistent
        "2020-01-03,-1,12,9,11,100\n"  # negative price
        "2020-01-03,10,12,9,11,100\n"  # the good copy of that day
    )
    proc = run_cli("data", "ingest", "--file", str(bars), "--symbol", "TEST", data_dir=tmp_path)
    assert proc.returncode == 0, proc.stderr
    row = next(ln for ln in proc.stdout.splitlines() if "bars.csv" in ln)
    cells = [c.strip() for c in row.strip("│┃ ").split("│")]
    assert (int(cells[1]), int(cells[3]), int(cells[6])) == (4, 2, 2)  # rows, inserted, quarantined
    shown = run_cli("data", "quarantine", data_dir=tmp_path).stdout
    assert "ohlc_inconsistent" in shown
    assert "non_positive_price" in shown
    listing = run_cli("data", "list", data_dir=tmp_path).stdout
    assert "TEST" in listing
    # the good 2020-01-03 bar survives the quarantined bad copy of the same day
    from alphaloom.jobs.config import RunConfig
    from alphaloom.jobs.stages import load_symbol_bars
    from alphaloom.jobs.workspace import Workspace

    kept = load_symbol_bars(Workspace.resolve(tmp_path), RunConfig(symbols=("TEST",)))
    assert [str(t.date()) for t in kept["ts"]] == ["2020-01-01", "2020-01-03"]


def test_ingest_from_a_venue_fetches_history_through_its_connector(tmp_path: Path) -> None:
    args = ("data", "ingest", "--venue", "paper", "--symbols", "SPY,BTCUSD")
    proc = run_cli(*args, "--start", "2015-01-01", "--end", "2016-01-01", data_dir=tmp_path)
    assert proc.returncode == 0, proc.stderr
    row = next(ln for ln in proc.stdout.splitlines() if "venue:paper" in ln)
    cells = [c.strip() for c in row.strip("│┃ ").split("│")]
    assert (int(cells[1]), int(cells[3])) == (252 + 365, 252 + 365)  # SPY trading days + BTC calendar days
    again = run_cli(*args, "--start", "2015-01-01", "--end", "2016-01-01", data_dir=tmp_path)
    row = next(ln for ln in again.stdout.splitlines() if "venue:paper" in ln)
    assert [c.strip() for c in row.strip("│┃ ").split("│")][5] == str(252 + 365)  # all unchanged
    missing = run_cli("data", "ingest", "--venue", "paper", "--symbols", "SPY", data_dir=tmp_path)
    assert_one_line_error(missing, "--start")


def test_unknown_symbol_on_the_paper_venue(tmp_path: Path) -> None:
    for args in (("data", "stream"), ("data", "ingest", "--start", "2015-01-01")):
        proc = run_cli(*args, "--venue", "paper", "--symbols", "SPYY", data_dir=tmp_path)
        assert_one_line_error(proc, "SPYY", "SPY")


def test_backtest_report_option_writes_the_tearsheet_there(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`backtest --report PATH` writes the tearsheet to PATH; the trained models are stood in for by rules."""
    from typer.testing import CliRunner

    from alphaloom.backtest import CostModel, buy_and_hold, run_backtest
    from alphaloom.cli.main import app
    from alphaloom.data.sample import load_sample
    from alphaloom.jobs import stages

    def fake_run_backtests(ws, config, progress=None):  # the agents' training is covered by the demo test
        panel = load_sample("us_equities_daily")
        results = []
        for symbol in ("SPY", "IWM"):
            bars = panel[(panel["symbol"] == symbol) & (panel["ts"].dt.year == 2015)].reset_index(drop=True)
            momentum = (bars["close"].pct_change(20) > 0).astype(float).to_numpy()
            results.append(buy_and_hold(bars, CostModel()))
            results.append(run_backtest(bars, momentum, costs=CostModel(), name="momentum_20"))
        stages._store_results(ws, results)
        return stages._summary(results)

    monkeypatch.setattr(stages, "run_backtests", fake_run_backtests)
    target = tmp_path / "out" / "tearsheet.html"
    args = ["backtest", "--quick", "--data-dir", str(tmp_path / "ws"), "--report", str(target)]
    result = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert f"report: {target}" in result.output.replace("\n", "")
    page = target.read_text(encoding="utf-8")
    for fragment in ("momentum_20", "SPY", "IWM", "Monthly returns", "Rolling Sharpe", "round trip"):
        assert fragment in page
    assert (
        tmp_path / "ws" / "reports" / "report.html"
    ).is_file()  # the workspace copy `alphaloom report` shows
    without = CliRunner().invoke(app, args[:-2], env={"COLUMNS": "200"})
    assert without.exit_code == 0, without.output
    assert "report:" not in without.output
