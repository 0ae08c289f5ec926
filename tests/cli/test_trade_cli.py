"""``alphaloom trade``: a paper run from the command line, its resume, and one-line errors for bad use."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from alphaloom.data.storage.relational import DuckDBRelationalStore


def run_cli(
    *args: str, data_dir: Path | None = None, extra_env: dict | None = None
) -> subprocess.CompletedProcess:
    env = {
        k: v
        for k, v in os.environ.items()
        if k != "ALPHALOOM_DATA_DIR" and not k.startswith("ALPHALOOM_OANDA")
    }
    env["COLUMNS"] = "200"
    env.update(extra_env or {})
    cmd = [sys.executable, "-m", "alphaloom.cli.main", *args]
    if data_dir is not None:
        cmd += ["--data-dir", str(data_dir)]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, check=False)


def assert_one_line_error(proc: subprocess.CompletedProcess, *fragments: str) -> None:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error:")
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture(scope="module")
def ingested(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data_dir = tmp_path_factory.mktemp("trade_cli") / "ws"
    proc = run_cli(
        "data", "ingest", "--sample", "us_equities_daily", "--sample", "fx_daily", data_dir=data_dir
    )
    assert proc.returncode == 0, proc.stderr
    return data_dir


def _summary(stdout: str) -> dict[str, str]:
    rows = {}
    for line in stdout.splitlines():
        cells = [c.strip() for c in line.strip("│ ").split("│")]
        if len(cells) == 2 and cells[0]:
            rows[cells[0]] = cells[1]
    return rows


def test_paper_trading_runs_the_loop_and_a_second_call_resumes(ingested: Path, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    shutil.copytree(ingested, ws)
    args = ["trade", "--paper", "--symbols", "SPY,EURUSD", "--bars", "80", "--end", "2018-07-01"]
    first = run_cli(*args, data_dir=ws)
    assert first.returncode == 0, first.stderr
    summary = _summary(first.stdout)
    assert summary["finished"] == "True"
    assert summary["bars_processed"] == "80"
    assert int(summary["orders_sent"]) > 0
    assert summary["fills"] == summary["orders_sent"]
    assert summary["degraded"] == "model:primary_unavailable"  # no trained agents in this workspace
    assert "no RL ensemble" in first.stderr
    manifest = json.loads((ws / "manifest.json").read_text())["trade"]
    with DuckDBRelationalStore(ws / "alphaloom.duckdb") as store:
        assert len(store.fills()) == manifest["fills"]
        held = {}
        for f in store.fills():
            held[f.symbol] = held.get(f.symbol, 0.0) + f.signed_quantity
    assert {s: q for s, q in held.items() if abs(q) > 1e-9} == pytest.approx(manifest["positions"])
    # The run is finished: running it again trades nothing more and sends no order twice.
    again = run_cli(*args, data_dir=ws)
    assert again.returncode == 0, again.stderr
    assert _summary(again.stdout)["orders_sent"] == "0"
    with DuckDBRelationalStore(ws / "alphaloom.duckdb") as store:
        assert len(store.fills()) == manifest["fills"]
    # Other options while that run exists: refused unless --fresh.
    other = run_cli(
        "trade", "--paper", "--symbols", "SPY", "--bars", "80", "--end", "2018-07-01", data_dir=ws
    )
    assert_one_line_error(other, "--fresh")
    fresh = run_cli(
        "trade", "--paper", "--symbols", "SPY", "--bars", "30", "--end", "2018-07-01", "--fresh", data_dir=ws
    )
    assert fresh.returncode == 0, fresh.stderr
    assert _summary(fresh.stdout)["bars_processed"] == "30"


def test_paper_and_venue_are_exclusive(ingested: Path) -> None:
    assert_one_line_error(run_cli("trade", data_dir=ingested), "--paper")
    assert_one_line_error(run_cli("trade", "--paper", "--venue", "oanda", data_dir=ingested), "--paper")


def test_a_real_venue_without_credentials_is_a_clear_error(ingested: Path, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    shutil.copytree(ingested, ws)
    proc = run_cli("trade", "--venue", "oanda", "--symbols", "EURUSD", data_dir=ws)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    last = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()][-1]
    assert last.startswith("error:")
    assert "ALPHALOOM_OANDA_ACCOUNT" in last


def test_unknown_venue_and_symbol(ingested: Path) -> None:
    assert_one_line_error(
        run_cli("trade", "--venue", "krakn", "--symbols", "SPY", data_dir=ingested), "krakn"
    )
    assert_one_line_error(run_cli("trade", "--paper", "--symbols", "NOPE", data_dir=ingested), "NOPE")


def test_trade_needs_ingested_data(tmp_path: Path) -> None:
    assert_one_line_error(run_cli("trade", "--paper", data_dir=tmp_path / "empty"), "data ingest")


def test_too_many_bars_for_the_data(ingested: Path, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    shutil.copytree(ingested, ws)
    proc = run_cli("trade", "--paper", "--symbols", "SPY", "--bars", "100000", data_dir=ws)
    assert_one_line_error(proc, "--bars")
