"""The stages register their models with lineage; promotion and the A/B report read the stored backtest."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from alphaloom.backtest.engine import buy_and_hold, run_backtest
from alphaloom.jobs import ab, registry, stages
from alphaloom.jobs.config import RunConfig
from alphaloom.jobs.workspace import Workspace
from alphaloom.registry import Approver, DataFingerprint, Lineage, PromotionGateConfig, Stage

torch.set_num_threads(1)
ADMIN, TRADER = Approver("alice", "admin"), Approver("bob", "trader")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Workspace, RunConfig, dict]:
    ws = Workspace.resolve(tmp_path_factory.mktemp("ws"))
    config = RunConfig.quick(seed=3).replace(symbols=("SPY", "EURUSD"), cnn_epochs=1)
    stages.ingest(ws, samples=["us_equities_daily", "fx_daily"])
    stages.compute_features(ws, config)
    info = stages.train_forecaster(ws, config)
    return ws, config, info


def test_train_forecaster_registers_a_candidate_with_its_lineage(trained) -> None:
    ws, config, info = trained
    assert info["registered"] == "cnn_lstm/1"
    assert ws.manifest()["train_cnn_lstm"]["registered"] == "cnn_lstm/1"
    with registry.open_registry(ws) as reg:
        model = reg.show("cnn_lstm", 1)
        artefacts = reg.artefact_path("cnn_lstm", 1)
        log = reg.audit.audit_log(action="model.registered")
    assert model.stage == Stage.CANDIDATE
    assert model.kind == "cnn_lstm"
    data = stages.symbol_data(ws, config)
    bars = pd.concat([d.bars.iloc[d.segments.forecaster] for d in data], ignore_index=True)
    assert model.lineage.data == DataFingerprint.from_bars(bars)
    assert model.lineage.data.symbols == ("EURUSD", "SPY")
    assert model.lineage.feature_config_hash == config.features.config_hash()
    assert (
        model.lineage.training_config_hash
        == Lineage(model.lineage.data, "x", stages._forecaster_config(config)).training_config_hash
    )
    assert model.metrics["epochs_run"] == 1.0
    assert "test_accuracy" in model.metrics
    assert (artefacts / "cnn_lstm").read_bytes() == (ws.models_dir / "cnn_lstm").read_bytes()
    assert [r.payload["model"] for r in log] == ["cnn_lstm/1"]


def _store_rule_backtests(ws: Workspace) -> None:
    """A real backtest of two rules and buy-and-hold on each symbol's last 750 bars, stored like the job's."""
    results = []
    with ws.require_store() as store:
        bars = store.read_bars(["SPY", "EURUSD"])
    for _sym, g in bars.groupby("symbol"):
        g = g.tail(750).reset_index(drop=True)
        close = g["close"]
        results.append(buy_and_hold(g, costs=RunConfig().costs))
        for window in (50, 200):
            weights = (close > close.rolling(window).mean()).astype(float).to_numpy()
            results.append(run_backtest(g, weights, costs=RunConfig().costs, name=f"trend_{window}"))
    stages._store_results(ws, results)


def test_promotion_and_ab_report_use_the_stored_backtest(trained) -> None:
    ws, _config, _info = trained
    _store_rule_backtests(ws)
    with registry.open_registry(ws) as reg:
        lineage = reg.show("cnn_lstm", 1).lineage
        for strategy in ("trend_200", "trend_50"):
            reg.register(
                "baseline",
                "trend",
                ws.models_dir / "cnn_lstm",
                lineage,
                {},
                ["cnn_lstm/1"],
                tags={"strategy": strategy},
            )
    assert registry.promote(ws, "trend", 1, TRADER).accepted
    # A 750-bar backtest of rules is weak evidence (deflated Sharpe well below 0.95); this test is about the
    # job's plumbing, so the gate asks only for a positive probability here.
    lenient = PromotionGateConfig(min_deflated_sharpe=0.0)
    first = registry.promote(ws, "trend", 1, ADMIN, gate_config=lenient)
    assert first.accepted
    print("\n" + first.decision.summary())
    evidence = registry.backtest_evidence(ws, "trend_200", None)
    assert evidence.n_bars == 2 * 749
    assert evidence.n_trials == 3
    assert math.isclose(first.decision.statistics["deflated_sharpe"], _dsr(ws, "trend_200"), rel_tol=1e-12)
    assert registry.promote(ws, "trend", 2, TRADER).accepted
    second = registry.promote(ws, "trend", 2, ADMIN, gate_config=lenient)
    print(second.decision.summary())
    assert "p_loss" in second.decision.statistics  # compared with the champion's stored returns
    report = ab.ab_report(ws, "trend_200", "trend_50")
    print(f"A/B: {report.comparison.decision}: {report.comparison.reason}")
    assert report.comparison.n_bars == 2 * 749
    assert set(report.by_symbol["symbol"]) == {"SPY", "EURUSD"}
    assert set(report.by_agent["strategy"]) == {"buy_and_hold", "trend_50", "trend_200"}
    html = report.path.read_text(encoding="utf-8")
    assert report.comparison.decision in html
    assert '<script src="http' not in html
    assert len(html) > 100_000
    assert ws.manifest()["ab_report"]["decision"] == report.comparison.decision


def _dsr(ws: Workspace, chosen: str) -> float:
    from alphaloom.risk import measures

    results = stages.load_results(ws)
    names = sorted({r.name for r in results})
    cols = {
        n: np.concatenate([r.returns for r in sorted(results, key=lambda r: r.symbol) if r.name == n])
        for n in names
    }
    trials = np.column_stack(list(cols.values()))
    return measures.deflated_sharpe_ratio_from_trials(trials, chosen=list(cols).index(chosen)).dsr
