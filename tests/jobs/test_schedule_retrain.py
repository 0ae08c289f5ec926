"""A scheduled retrain on the shipped SPY bars: trained and judged in staging, registered, staged as
challenger at most; the champion and the main workspace's models stay in place, also when the run fails."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from alphaloom.jobs import registry as jobs_registry
from alphaloom.jobs import stages
from alphaloom.jobs.config import RunConfig
from alphaloom.jobs.schedule import ScheduleConfig, Scheduler
from alphaloom.jobs.workspace import Workspace
from alphaloom.registry import (
    Approver,
    DataFingerprint,
    Lineage,
    PromotionEvidence,
    PromotionGate,
    PromotionGateConfig,
    Stage,
    load_bias_report,
)

torch.set_num_threads(1)

TINY = {
    "window_bars": 900,
    "gate": {"min_deflated_sharpe": 0.0},
    "bias": {"n_permutations": 199},
    "run": {
        "cnn_epochs": 1,
        "cnn_window": 12,
        "cnn_hidden": 4,
        "rl_budget": {"ppo": 64, "sac": 64, "td3": 64, "rainbow": 64},
        "rl_episode_len": 16,
    },
}
SCHEDULE = ScheduleConfig.from_dict(
    {"jobs": [{"name": "weekly-retrain", "cron": "0 3 * * 6", "action": "retrain", "options": TINY}]}
)


def _tree_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _main_workspace(root: Path) -> Workspace:
    """SPY ingested, run settings saved, and a champion ``cnn_lstm`` (the deployed model) in the registry
    and in models/: what a scheduled retrain must leave alone."""
    ws = Workspace.resolve(root)
    stages.ingest(ws, samples=["us_equities_daily"])
    ws.save_config(RunConfig(symbols=("SPY",)))
    deployed = ws.models_dir / "cnn_lstm"
    deployed.mkdir(parents=True)
    (deployed / "cnn_lstm.pt").write_bytes(b"the champion's weights")
    with ws.require_store() as store:
        bars = store.read_bars(["SPY"])
    close = bars["close"].to_numpy()
    returns = close[-700:] / close[-701:-1] - 1.0  # buy and hold on the last 700 real bars
    lineage = Lineage(DataFingerprint.from_bars(bars), "none", {"deployed": True})
    gate = PromotionGate(PromotionGateConfig(min_deflated_sharpe=0.0))
    with jobs_registry.open_registry(ws) as reg:
        info = reg.register("cnn_lstm", "cnn_lstm", deployed, lineage, {})
        reg.promote("cnn_lstm", info.version, Approver("bob", "trader"))
        reg.promote(
            "cnn_lstm",
            info.version,
            Approver("alice", "admin"),
            evidence=PromotionEvidence(returns),
            gate=gate,
        )
    return ws


@pytest.fixture(scope="module")
def retrained(tmp_path_factory: pytest.TempPathFactory):
    ws = _main_workspace(tmp_path_factory.mktemp("main"))
    before = _tree_digest(ws.models_dir)
    records = Scheduler(ws, SCHEDULE).run_once()
    return ws, before, records


def test_a_scheduled_retrain_stages_challengers_and_never_a_champion(retrained) -> None:
    ws, before, records = retrained
    assert len(records) == 1
    run = records[0]
    assert run.outcome == "succeeded", run.error
    assert run.details["registered"] == ["cnn_lstm/2", "ppo/1", "sac/1", "td3/1", "rainbow/1", "ensemble/1"]
    assert run.details["window_bars"] == 900
    with jobs_registry.open_registry(ws) as reg:
        assert reg.champion("cnn_lstm").version == 1  # the champion is in place
        assert reg.champion_history("cnn_lstm") == [1]
        for decision in run.details["decisions"]:
            name, version = decision["model"].split("/")
            model = reg.show(name, int(version))
            assert model.stage in (Stage.CANDIDATE, Stage.CHALLENGER)
            assert model.stage.value == decision["stage"]
            assert decision["accepted"] == (model.stage == Stage.CHALLENGER)
            assert reg.champion(name) is None or name == "cnn_lstm"
        new = reg.show("cnn_lstm", 2)
        assert new.stage == Stage.CHALLENGER  # the lenient gate of this schedule accepted it
        report = load_bias_report(reg, "cnn_lstm", 2)  # judged and stored with the new version
        assert report is not None
        assert report.kind == "forecast"
        assert load_bias_report(reg, "ensemble", 1).kind == "returns"
        audit = reg.audit.audit_log(action="model.promoted")
    staged = [r.payload for r in audit if "scheduled retrain" in r.payload["note"]]
    assert {p["to_stage"] for p in staged} == {"challenger"}
    assert _tree_digest(ws.models_dir) == before  # the deployed model files were not touched
    # the rolling window: 900 bars of SPY, trained and backtested in staging
    staging = Workspace(ws.root / "schedule" / "staging")
    with staging.require_store() as store:
        assert len(store.read_bars(["SPY"])) == 900
    assert set(run.details["test_sharpe"]) >= {"buy_and_hold", "ppo", "ensemble_meta"}
    logged = [json.loads(line) for line in (ws.root / "schedule" / "runs.jsonl").read_text().splitlines()]
    assert logged[-1]["run_id"] == run.run_id
    assert logged[-1]["outcome"] == "succeeded"


def test_a_failed_retrain_alerts_and_leaves_the_registry_as_it_was(
    retrained, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws, before, _ = retrained

    def evaluation_breaks(*args, **kwargs) -> pd.DataFrame:
        raise RuntimeError("backtest worker lost")

    monkeypatch.setattr(stages, "run_backtests", evaluation_breaks)
    with jobs_registry.open_registry(ws) as reg:
        versions_before = [(v.ref, v.stage) for v in reg.list()]
    run = Scheduler(ws, SCHEDULE).run_once("weekly-retrain")[0]
    assert run.outcome == "failed"
    assert run.error == "RuntimeError: backtest worker lost"
    with jobs_registry.open_registry(ws) as reg:
        assert [(v.ref, v.stage) for v in reg.list()] == versions_before  # nothing registered or moved
        assert reg.champion("cnn_lstm").version == 1
    assert _tree_digest(ws.models_dir) == before
    alerts = [json.loads(line) for line in (ws.root / "schedule" / "alerts.jsonl").read_text().splitlines()]
    assert alerts[-1]["subject"] == "weekly-retrain"
    assert "backtest worker lost" in alerts[-1]["message"]
    assert np.isfinite(run.seconds)
