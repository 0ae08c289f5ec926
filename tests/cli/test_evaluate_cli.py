"""``alphaloom evaluate forecasters``: a quick run prints the comparison table; ``train cnn-lstm`` shows it
too."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

MODELS = ("cnn_lstm", "persistence", "logistic", "lightgbm", "buy_and_hold")


def run_cli(*args: str, data_dir: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "ALPHALOOM_DATA_DIR"}
    env["COLUMNS"] = "220"
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


def test_help_lists_the_evaluate_group() -> None:
    assert "evaluate" in run_cli("--help").stdout
    assert "forecasters" in run_cli("evaluate", "--help").stdout
    proc = run_cli("evaluate", "forecasters", "--help")
    assert proc.returncode == 0
    for option in ("--data-dir", "--quick", "--config", "--dataset", "--input", "--folds", "--seeds"):
        assert option in proc.stdout


def test_quick_run_prints_the_comparison_table(tmp_path: Path) -> None:
    proc = run_cli("evaluate", "forecasters", "--quick", "--dataset", "stocks", "--data-dir", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    for name in (*MODELS, "dm_logloss", "ls_sharpe", "balanced_accuracy"):
        assert name in proc.stdout
    assert "2 symbols from sample:us_equities_daily, 2 folds x 1 seed(s)" in proc.stdout
    assert (tmp_path / "reports" / "forecasters.html").is_file()


def test_bad_options_are_one_line_errors(tmp_path: Path) -> None:
    proc = run_cli("evaluate", "forecasters", "--dataset", "stoks", "--data-dir", str(tmp_path))
    assert_one_line_error(proc, "unknown dataset 'stoks'", "Did you mean 'stocks'?")
    proc = run_cli(
        "evaluate", "forecasters", "--dataset", "forex", "--input", "x.csv", "--data-dir", str(tmp_path)
    )
    assert_one_line_error(proc, "either --dataset or --input")
    proc = run_cli("evaluate", "forecasters", "--quick", "--seeds", "0", "--data-dir", str(tmp_path))
    assert_one_line_error(proc, "--seeds")
    proc = run_cli("evaluate", "forecasters", "--quick", "--data-dir", str(tmp_path / "empty"))
    assert_one_line_error(proc, "alphaloom data ingest")


@pytest.mark.slow
def test_train_cnn_lstm_prints_the_stored_comparison(tmp_path: Path) -> None:
    for args in (("data", "ingest"), ("features", "--quick"), ("evaluate", "forecasters", "--quick")):
        proc = run_cli(*args, data_dir=tmp_path)
        assert proc.returncode == 0, proc.stderr
    proc = run_cli("train", "cnn-lstm", "--quick", data_dir=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Stored comparison with the baselines" in proc.stdout
    for name in MODELS:
        assert name in proc.stdout
