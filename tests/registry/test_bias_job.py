"""``alphaloom models bias``: a registered forecaster and a registered strategy judged on what the
workspace stores for them (real SPY and BTCUSD bars), stored with the version, used by the promotion floor."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from alphaloom.backtest.engine import buy_and_hold, run_backtest
from alphaloom.core.exceptions import ConfigError, DataNotFoundError
from alphaloom.jobs import registry as jobs_registry
from alphaloom.jobs import stages
from alphaloom.jobs.bias import SUMMARY_TABLE, bias_tables, model_bias, stored_models
from alphaloom.jobs.config import RunConfig
from alphaloom.jobs.workspace import Workspace
from alphaloom.models.cnn_lstm.dataset import class_labels
from alphaloom.registry import Approver, BiasConfig, DataFingerprint, Lineage, PromotionGateConfig, Stage

torch.set_num_threads(1)
FAST = BiasConfig(n_permutations=999)
CONFIG = RunConfig(
    symbols=("SPY", "BTCUSD"), max_bars_per_symbol=900, cnn_epochs=1, cnn_window=12, cnn_hidden=4, seed=3
)


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    """SPY and BTCUSD ingested; a CNN+LSTM trained and registered; a trend rule backtested on both symbols'
    last 700 bars and registered as ``trend_rule`` (strategy tag ``trend_100``)."""
    ws = Workspace.resolve(tmp_path_factory.mktemp("bias_job"))
    stages.ingest(ws, samples=["us_equities_daily", "crypto_daily"])
    stages.compute_features(ws, CONFIG)
    stages.train_forecaster(ws, CONFIG)
    with ws.require_store() as store:
        bars = store.read_bars(["SPY", "BTCUSD"])
    results = []
    for sym in ("SPY", "BTCUSD"):
        b = bars[bars["symbol"] == sym].reset_index(drop=True)
        test = b.iloc[-700:].reset_index(drop=True)
        weights = (b["close"] > b["close"].rolling(100).mean()).astype(float).to_numpy()[-700:]
        results.append(buy_and_hold(test, costs=CONFIG.costs))
        results.append(run_backtest(test, weights, costs=CONFIG.costs, name="trend_100"))
    stages._store_results(ws, results)
    artefact = ws.root / "rule"
    artefact.mkdir()
    (artefact / "rule.json").write_text('{"rule": "trend", "window": 100}')
    lineage = Lineage(DataFingerprint.from_bars(bars), "none", {"rule": "trend_100"})
    with jobs_registry.open_registry(ws) as reg:
        reg.register("baseline", "trend_rule", artefact, lineage, {}, tags={"strategy": "trend_100"})
    return ws


def test_the_forecaster_is_judged_on_its_out_of_sample_forecasts(ws: Workspace) -> None:
    assert stored_models(ws) == {"cnn_lstm": "cnn_lstm/1"}
    result = model_bias(ws, "cnn_lstm", config=FAST)
    report = result.report
    assert report.kind == "forecast"
    assert result.model.ref == "cnn_lstm/1"
    # by hand: the stored forecasts from the agent segment on, against the next bar's log return
    segments = ws.manifest()["train_cnn_lstm"]["segments"]
    bars = stages.load_symbol_bars(ws, CONFIG)
    with ws.require_store() as store:
        forecasts = store.read_frame("forecasts", ["SPY"])
    spy = bars[bars["symbol"] == "SPY"].set_index("ts")["close"]
    realised = np.log(spy.shift(-1) / spy)
    f = forecasts[forecasts["ts"] >= pd.Timestamp(segments["SPY"]["agent"][0])].set_index("ts")
    r = realised.reindex(f.index).dropna()
    f = f.loc[r.index]
    hit = np.mean(np.sign(f["p_up"] - f["p_down"])[r != 0] == np.sign(r[r != 0]))
    slices = report.slices.set_index(["dimension", "slice"])
    assert slices.loc[("symbol", "SPY"), "n"] == len(r)
    assert slices.loc[("symbol", "SPY"), "hit_rate"] == pytest.approx(hit)
    from alphaloom.models import CNNLSTMForecaster

    threshold = CNNLSTMForecaster.load(ws.models_dir / "cnn_lstm").flat_threshold_
    y = class_labels(r.to_numpy(), threshold)
    accuracy = np.mean(f[["p_down", "p_flat", "p_up"]].to_numpy().argmax(axis=1) == y)
    assert slices.loc[("symbol", "SPY"), "accuracy"] == pytest.approx(accuracy)
    assert set(report.slices["dimension"]) == {
        "asset_class", "symbol", "vol_regime", "trend_regime", "time_of_day", "day_of_week"
    }  # fmt: skip
    assert result.path.exists()
    assert result.model.metrics["bias.n_bars"] == report.n_bars
    assert len(bias_tables(result)) == 2


def test_a_strategy_is_judged_on_its_backtest_and_the_summary_is_kept(ws: Workspace) -> None:
    result = model_bias(ws, "trend_rule", config=FAST)
    assert result.report.kind == "returns"
    assert result.report.n_bars == 2 * 699  # returns start at each test segment's second bar
    symbols = result.report.slices[result.report.slices["dimension"] == "symbol"]
    assert symbols["slice"].tolist() == ["BTCUSD", "SPY"]
    with ws.require_store() as store:
        summary = store.read_frame(SUMMARY_TABLE)
    assert set(summary["model"]) >= {"cnn_lstm/1", "trend_rule/1"}
    again = model_bias(ws, "trend_rule", config=FAST)  # a re-run replaces its row, never duplicates it
    with ws.require_store() as store:
        assert (store.read_frame(SUMMARY_TABLE)["model"] == "trend_rule/1").sum() == 1
    assert again.model.tags["bias.worst_sharpe_slice"] == result.model.tags["bias.worst_sharpe_slice"]


def test_another_version_without_its_own_predictions_is_refused(ws: Workspace) -> None:
    with jobs_registry.open_registry(ws) as reg:
        info = reg.show("cnn_lstm", 1)
        artefact = reg.artefact_path("cnn_lstm", 1)
        reg.register("cnn_lstm", "cnn_lstm", artefact, info.lineage, {})
    with pytest.raises(DataNotFoundError, match="those of cnn_lstm/1, not cnn_lstm/2"):
        model_bias(ws, "cnn_lstm", 2, config=FAST)
    with pytest.raises(DataNotFoundError, match="Did you mean 'trend_rule'"):
        model_bias(ws, "trend_rul", config=FAST)


def test_the_slice_floor_reads_the_stored_report_when_promoting(ws: Workspace) -> None:
    model_bias(ws, "trend_rule", config=FAST)
    with jobs_registry.open_registry(ws) as reg:
        worst = reg.show("trend_rule", 1).metrics["bias.worst_sharpe"]
    jobs_registry.promote(ws, "trend_rule", 1, Approver("bob", "trader"))
    admin = Approver("alice", "admin")
    strict = PromotionGateConfig(min_deflated_sharpe=0.0, min_slice_sharpe=worst + 0.5)
    refused = jobs_registry.promote(ws, "trend_rule", 1, admin, gate_config=strict)
    assert not refused.accepted
    assert any("worst slice" in reason for reason in refused.decision.reasons)
    loose = PromotionGateConfig(min_deflated_sharpe=0.0, min_slice_sharpe=worst - 0.5)
    accepted = jobs_registry.promote(ws, "trend_rule", 1, admin, gate_config=loose)
    assert accepted.accepted, accepted.decision.summary()
    assert accepted.model.stage == Stage.CHAMPION


def test_the_command_prints_the_tables_and_stores_the_report(ws: Workspace) -> None:
    env = {**os.environ, "COLUMNS": "220", "ALPHALOOM_DATA_DIR": str(ws.root)}
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "alphaloom.cli.main",
            "models",
            "bias",
            "trend_rule",
            "--min-slice-size",
            "400",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    assert "Bias by slice: trend_rule/1 (returns" in run.stdout
    assert "too small" in run.stdout  # with 400 bars a slice, the weekdays are too small
    assert "stored with trend_rule/1 in the registry" in run.stdout
    with jobs_registry.open_registry(ws) as reg:
        reg.register("baseline", "untagged", ws.root / "rule", reg.show("trend_rule", 1).lineage, {})
    with pytest.raises(ConfigError, match="no strategy tag"):
        model_bias(ws, "untagged", config=FAST)
