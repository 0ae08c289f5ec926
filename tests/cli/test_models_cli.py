"""``alphaloom models list|show|promote|rollback`` on a workspace with a stored real backtest."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from alphaloom.backtest.engine import buy_and_hold, run_backtest
from alphaloom.data.storage.relational import DuckDBRelationalStore
from alphaloom.jobs import registry, stages
from alphaloom.jobs.config import RunConfig
from alphaloom.jobs.workspace import Workspace
from alphaloom.registry import DataFingerprint, Lineage


def cli(*args: str, ws: Workspace) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200", "ALPHALOOM_DATA_DIR": str(ws.root)}
    return subprocess.run(
        [sys.executable, "-m", "alphaloom.cli.main", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def build_workspace(root: Path) -> Workspace:
    """SPY ingested; buy-and-hold and two trend rules backtested on 2010-2021 and stored; both rules
    registered as candidates of model ``spy_rule``."""
    ws = Workspace.resolve(root)
    stages.ingest(ws, samples=["us_equities_daily"])
    with ws.require_store() as store:
        bars = store.read_bars(["SPY"])
    test = bars[bars["ts"] >= "2010-01-01"].reset_index(drop=True)
    close = bars["close"]
    costs = RunConfig().costs
    results = [buy_and_hold(test, costs=costs)]
    for window in (100, 200):
        weights = (close > close.rolling(window).mean()).astype(float)[bars["ts"] >= "2010-01-01"].to_numpy()
        results.append(run_backtest(test, weights, costs=costs, name=f"trend_{window}"))
    stages._store_results(ws, results)
    lineage = Lineage(DataFingerprint.from_bars(bars[bars["ts"] < "2010-01-01"]), "none", {"rule": "trend"})
    artefact = ws.root / "rule"
    artefact.mkdir()
    (artefact / "rule.json").write_text('{"rule": "trend"}')
    with registry.open_registry(ws) as reg:
        for strategy in ("trend_200", "buy_and_hold"):
            reg.register("baseline", "spy_rule", artefact, lineage, {"x": 1.0}, tags={"strategy": strategy})
    return ws


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    return build_workspace(tmp_path_factory.mktemp("models_cli"))


def test_models_workflow_from_the_command_line(ws: Workspace) -> None:
    listed = cli("models", "list", ws=ws)
    assert listed.returncode == 0, listed.stderr
    assert "spy_rule" in listed.stdout
    assert "candidate" in listed.stdout
    shown = cli("models", "show", "spy_rule", "1", ws=ws)
    assert shown.returncode == 0
    assert "data sha256" in shown.stdout
    assert "tag strategy" in shown.stdout

    for version in ("1", "2"):
        up = cli("models", "promote", "spy_rule", version, "--approver", "bob", "--role", "trader", ws=ws)
        assert up.returncode == 0, up.stdout + up.stderr
        if version == "2":
            # A trader may not crown a champion: the gate says no, exit code 1, nothing moves.
            refused = cli(
                "models", "promote", "spy_rule", "2", "--approver", "bob", "--role", "trader", ws=ws
            )
            assert refused.returncode == 1
            assert "REJECTED" in refused.stdout
            assert "needs one of admin" in refused.stdout
        crown = cli("models", "promote", "spy_rule", version, "--approver", "alice", "--role", "admin", ws=ws)
        print(crown.stdout)
        assert crown.returncode == 0, crown.stdout + crown.stderr
        assert "ACCEPTED" in crown.stdout
        assert "deflated_sharpe" in crown.stdout
    assert "p_loss" in crown.stdout  # the second champion was compared with the first

    back = cli(
        "models", "rollback", "spy_rule", "--approver", "alice", "--role", "admin", "--reason", "test", ws=ws
    )
    assert back.returncode == 0
    assert "spy_rule/1 is champion again" in back.stdout
    with DuckDBRelationalStore(ws.store_path) as store:
        actions = [r.action for r in store.audit_log() if r.action.startswith("model.")]
        assert store.verify_audit_chain() == []
    assert actions.count("model.promoted") == 4
    assert actions.count("model.promotion_rejected") == 1
    assert actions[-1] == "model.rolled_back"


def test_models_errors_are_one_line(ws: Workspace) -> None:
    for args, fragment in (
        (("models", "show", "spy_rul", "1"), "Did you mean 'spy_rule'"),
        (("models", "promote", "spy_rule", "1", "--approver", "x", "--role", "root"), "unknown role"),
        (("models", "list", "--stage", "champoin"), "Did you mean 'champion'"),
    ):
        proc = cli(*args, ws=ws)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
        assert len(lines) == 1, proc.stderr
        assert lines[0].startswith("error:"), proc.stderr
        assert fragment in lines[0], proc.stderr
