"""`alphaloom portfolio optimize` and `alphaloom portfolio rebalance` on an ingested sample workspace."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.cli.test_cli import assert_one_line_error, run_cli


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("portfolio_cli")
    proc = run_cli("data", "ingest", "--sample", "us_equities_daily", data_dir=root)
    assert proc.returncode == 0, proc.stderr
    return root


def test_help() -> None:
    for sub in ("optimize", "rebalance"):
        proc = run_cli("portfolio", sub, "--help")
        assert proc.returncode == 0, proc.stderr
        assert "--data-dir" in proc.stdout


def test_optimize_prints_weights(store_dir: Path) -> None:
    proc = run_cli(
        "portfolio", "optimize", "--method", "hrp", "--symbols", "SPY,AAPL,IWM,USO", data_dir=store_dir
    )
    assert proc.returncode == 0, proc.stderr
    assert "hrp weights" in proc.stdout
    for sym in ("SPY", "AAPL", "IWM", "USO"):
        assert sym in proc.stdout


def test_rebalance_prints_the_policy_comparison(store_dir: Path) -> None:
    proc = run_cli(
        "portfolio",
        "rebalance",
        "--policy",
        "drift,band",
        "--symbols",
        "SPY,AAPL,IWM",
        "--start",
        "2015-01-01",
        data_dir=store_dir,
    )
    assert proc.returncode == 0, proc.stderr
    assert "drift" in proc.stdout
    assert "band" in proc.stdout
    assert (store_dir / "reports" / "portfolio_rebalance.html").exists()


def test_unknown_method_is_one_line_error(store_dir: Path) -> None:
    proc = run_cli(
        "portfolio", "optimize", "--method", "max_sharp", "--symbols", "SPY,AAPL", data_dir=store_dir
    )
    assert_one_line_error(proc, "unknown method", "max_sharpe")
