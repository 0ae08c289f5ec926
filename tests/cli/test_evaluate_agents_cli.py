"""``alphaloom evaluate agents``: a quick run on a prepared workspace prints the comparison table."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from alphaloom.cli.main import app
from alphaloom.jobs import stages
from alphaloom.jobs.config import RunConfig
from alphaloom.jobs.workspace import Workspace

runner = CliRunner()


def test_help_lists_the_options() -> None:
    result = runner.invoke(app, ["evaluate", "agents", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for option in ("--data-dir", "--quick", "--config", "--folds", "--seeds", "--symbols", "--tag"):
        assert option in result.output


def test_quick_run_prints_the_table(tmp_path: Path) -> None:
    ws = Workspace.resolve(tmp_path)
    config = RunConfig.quick()
    stages.ingest(ws)
    stages.compute_features(ws, config)
    stages.train_forecaster(ws, config)
    result = runner.invoke(
        app,
        ["evaluate", "agents", "--quick", "--seeds", "2", "--data-dir", str(tmp_path)],
        env={"COLUMNS": "220"},
    )
    assert result.exit_code == 0, result.output
    for name in ("buy_and_hold", "cnn_lstm_rule", "ppo", "rainbow", "ensemble_meta", "sortino", "collapsed"):
        assert name in result.output
    assert "1 fold(s) x 2 seed(s)" in result.output

    tagged = runner.invoke(
        app,
        [
            "evaluate",
            "agents",
            "--quick",
            "--symbols",
            "BTCUSD",
            "--tag",
            "crypto",
            "--data-dir",
            str(tmp_path),
        ],
        env={"COLUMNS": "220"},
    )
    assert tagged.exit_code == 0, tagged.output
    assert "agent_comparison_crypto" in tagged.output
    with ws.open_store() as store:
        runs = store.read_frame("agent_comparison_runs_crypto")
    assert set(runs["symbol"]) == {"BTCUSD"}
    assert "evaluate_agents_crypto" in ws.manifest()


def test_missing_forecasts_is_an_error_naming_the_stage(tmp_path: Path) -> None:
    result = runner.invoke(app, ["evaluate", "agents", "--quick", "--data-dir", str(tmp_path)])
    assert result.exit_code != 0
    assert "alphaloom" in str(result.exception)
