"""Kill ``alphaloom trade --paper`` mid-run, restart it, and compare with a run that was never interrupted."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from alphaloom.data.storage.relational import DuckDBRelationalStore

ARGS = ["--paper", "--symbols", "SPY,QQQ,BTCUSD", "--bars", "120", "--end", "2020-01-01"]


def _cli(*args: str, data_dir: Path) -> list[str]:
    return [sys.executable, "-m", "alphaloom.cli.main", *args, "--data-dir", str(data_dir)]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "ALPHALOOM_DATA_DIR"}
    env["COLUMNS"] = "200"
    return env


def _trade(data_dir: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        _cli("trade", *ARGS, *extra, data_dir=data_dir),
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _journal(data_dir: Path) -> Path:
    run = json.loads((data_dir / "trade" / "paper_run.json").read_text())
    return data_dir / "trade" / f"paper-{run['run_id']}.sqlite"


def _journal_entries(path: Path) -> list[tuple[str, dict]]:
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = con.execute("SELECT kind, payload FROM journal ORDER BY seq").fetchall()
    finally:
        con.close()
    return [(k, json.loads(p)) for k, p in rows]


def _steps(data_dir: Path) -> int:
    path = data_dir / "trade"
    if not path.exists() or not any(path.glob("paper-*.sqlite")):
        return 0
    try:
        return sum(1 for k, _ in _journal_entries(_journal(data_dir)) if k == "step")
    except (sqlite3.Error, FileNotFoundError, json.JSONDecodeError):
        return 0


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data_dir = tmp_path_factory.mktemp("ingested") / "ws"
    proc = subprocess.run(
        _cli(
            "data", "ingest", "--sample", "us_equities_daily", "--sample", "crypto_daily", data_dir=data_dir
        ),
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return data_dir


def test_killed_and_restarted_run_matches_an_uninterrupted_one(workspace: Path, tmp_path: Path) -> None:
    calm, crashed = tmp_path / "calm", tmp_path / "crashed"
    shutil.copytree(workspace, calm)
    shutil.copytree(workspace, crashed)
    _trade(calm)

    # 40 simulated days per wall-clock second: slow enough to be killed in the middle.
    slow = subprocess.Popen(
        _cli("trade", *ARGS, "--speed", str(86_400 * 40), data_dir=crashed),
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 90
        while _steps(crashed) < 45 and time.monotonic() < deadline and slow.poll() is None:
            time.sleep(0.05)
        assert slow.poll() is None, "the run ended before it could be killed; slow it down"
        slow.send_signal(signal.SIGKILL)  # no clean-up, no final checkpoint
        slow.wait(timeout=30)
    finally:
        if slow.poll() is None:
            slow.kill()
    steps_at_kill = _steps(crashed)
    assert 45 <= steps_at_kill < 120

    restarted = _trade(crashed)
    assert "finished" in restarted.stdout

    calm_summary = json.loads((calm / "manifest.json").read_text())["trade"]
    crashed_summary = json.loads((crashed / "manifest.json").read_text())["trade"]
    assert crashed_summary["finished"]
    assert calm_summary["finished"]
    assert crashed_summary["run_id"] == calm_summary["run_id"]  # same settings, same deterministic ids
    assert crashed_summary["positions"] == calm_summary["positions"]
    assert crashed_summary["cash"] == pytest.approx(calm_summary["cash"], abs=0.01)

    # The venue: every client order id submitted once, and every order of the calm run is there.
    venue_orders = [
        p["order"]["client_order_id"] for k, p in _journal_entries(_journal(crashed)) if k == "submit"
    ]
    assert not [cid for cid, n in Counter(venue_orders).items() if n > 1]
    calm_venue = [p["order"]["client_order_id"] for k, p in _journal_entries(_journal(calm)) if k == "submit"]

    def records(data_dir: Path):
        with DuckDBRelationalStore(data_dir / "alphaloom.duckdb") as store:
            return store.orders(), store.fills(), store.verify_audit_chain()

    _, calm_fills, calm_problems = records(calm)
    orders, fills, problems = records(crashed)
    assert calm_problems == []
    assert problems == []
    lost = {o.client_order_id for o in orders if o.message.startswith("lost")}
    # No lost order: each recorded order reached the venue, or was found missing and re-decided.
    assert {o.client_order_id for o in orders} - lost == set(venue_orders)
    assert set(venue_orders) - set(calm_venue) <= {
        o.client_order_id for o in orders if o.client_order_id not in lost
    }
    # The same fills: same symbols, sides, quantities, prices and times.

    def key(fs):
        return sorted((f.symbol, f.side.value, f.quantity, round(f.price, 9), f.ts) for f in fs)

    assert key(fills) == key(calm_fills)
    assert len(fills) == len({f.fill_id for f in fills})

    verify = subprocess.run(
        _cli("audit", "verify", data_dir=crashed), env=_env(), capture_output=True, text=True
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
