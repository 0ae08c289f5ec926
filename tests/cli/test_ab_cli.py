"""``alphaloom ab report``: paired tests, attribution and a decision on the stored real backtest."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from alphaloom.jobs import stages
from alphaloom.jobs.config import RunConfig
from alphaloom.jobs.workspace import Workspace


def _workspace(root: Path) -> Workspace:
    from alphaloom.backtest.engine import buy_and_hold, run_backtest

    ws = Workspace.resolve(root)
    stages.ingest(ws, samples=["us_equities_daily"])
    with ws.require_store() as store:
        bars = store.read_bars(["SPY", "QQQ"])
    results = []
    for _, g in bars.groupby("symbol"):
        g = g[g["ts"] >= "2012-01-01"].reset_index(drop=True)
        results.append(buy_and_hold(g, costs=RunConfig().costs))
        close = g["close"]
        momentum = (close > close.shift(20)).astype(float).to_numpy()
        results.append(run_backtest(g, momentum, costs=RunConfig().costs, name="momentum_20"))
    stages._store_results(ws, results)
    return ws


def test_ab_report_prints_decides_and_writes_an_offline_plot(tmp_path: Path) -> None:
    ws = _workspace(tmp_path)
    out = tmp_path / "ab.html"
    env = {**os.environ, "COLUMNS": "200", "ALPHALOOM_DATA_DIR": str(ws.root)}
    args = ["ab", "report", "--champion", "buy_and_hold", "--challenger", "momentum_20", "--out", str(out)]
    proc = subprocess.run(
        [sys.executable, "-m", "alphaloom.cli.main", *args, "--resamples", "500"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    print(proc.stdout)
    assert proc.returncode == 0, proc.stderr
    for fragment in (
        "bootstrap_p_two_sided",
        "ledoit_wolf_z",
        "min_sample_bars",
        "By asset",
        "QQQ",
        "decision:",
    ):
        assert fragment in proc.stdout
    decision = ws.manifest()["ab_report"]["decision"]
    assert decision in ("promote", "keep", "need_more_data")
    assert f"decision: {decision}" in proc.stdout
    html = out.read_text(encoding="utf-8")
    assert "ab-chart" in html
    assert '<script src="http' not in html
    assert len(html) > 100_000
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "alphaloom.cli.main",
            "ab",
            "report",
            "--champion",
            "buy_and_hold",
            "--challenger",
            "momentum",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert bad.returncode == 2
    assert "Did you mean 'momentum_20'" in bad.stderr
