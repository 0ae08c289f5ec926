"""The trading job: paper runs on a workspace, resume after a stop, and the RL ensemble as a signal source."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from alphaloom.core.exceptions import ConfigError, DataFormatError, DataNotFoundError
from alphaloom.data.sample import load_sample
from alphaloom.data.storage.relational import DuckDBRelationalStore
from alphaloom.jobs import stages
from alphaloom.jobs.config import RunConfig
from alphaloom.jobs.trade import RLEnsembleSource, paper_run_path, trade
from alphaloom.jobs.workspace import Workspace
from alphaloom.rl import EnsembleConfig


@pytest.fixture(scope="module")
def ingested(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    ws = Workspace(tmp_path_factory.mktemp("trade_job") / "ws")
    stages.ingest(ws, samples=["us_equities_daily"])
    return ws


def _config(**changes) -> RunConfig:
    return RunConfig(symbols=("SPY", "QQQ"), end="2021-01-01").replace(**changes)


def test_a_paper_run_trades_records_and_resumes_as_finished(ingested: Workspace, tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "ws")
    import shutil

    shutil.copytree(ingested.root, ws.root)
    cfg = _config()
    summary = trade(ws, cfg, bars=60)
    assert summary["finished"] is True
    assert summary["bars_processed"] == 60
    assert summary["primary"] == "trend_rule"
    assert "model:primary_unavailable" in summary["degraded"]
    run = json.loads(paper_run_path(ws).read_text())
    assert run["run_id"] == summary["run_id"]
    with DuckDBRelationalStore(ws.store_path) as store:
        assert len(store.fills()) == summary["fills"]
        assert store.verify_audit_chain() == []
        model_notes = store.audit_log(action="execution.degraded")
    assert model_notes[0].payload["component"] == "model"
    again = trade(ws, cfg, bars=60)
    assert again["orders_sent"] == 0
    assert again["bars_processed"] == 60
    with pytest.raises(ConfigError, match="--fresh"):
        trade(ws, cfg, bars=61)
    fresh = trade(ws, cfg, bars=20, fresh=True)
    assert fresh["run_id"] != summary["run_id"]
    assert fresh["bars_processed"] == 20


def test_bad_options_are_refused(ingested: Workspace) -> None:
    with pytest.raises(ConfigError, match="choose one venue"):
        trade(ingested, _config(), paper=True, venue="oanda")
    with pytest.raises(ConfigError, match="--speed"):
        trade(ingested, _config(), speed=-1.0)


# ------------------------------------------------------------------ the RL ensemble source


class TrendProposer:
    """A stand-in for a trained agent: long when the first observation feature is positive."""

    def __init__(self, name: str, scale: float) -> None:
        self.name, self.scale = name, scale

    def predict(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        return np.array([np.tanh(self.scale * obs[0]), 0.5])


@pytest.fixture(scope="module")
def spy_observations() -> SimpleNamespace:
    bars = load_sample("us_equities_daily")
    bars = bars[bars["symbol"] == "SPY"].tail(400).reset_index(drop=True)
    close = bars["close"].to_numpy()
    ret20 = np.full(len(close), np.nan)
    ret20[20:] = np.log(close[20:] / close[:-20])
    values = np.stack([ret20 / 0.05, np.r_[np.nan, np.diff(np.log(close))] / 0.01], axis=1).astype(np.float32)
    data = SimpleNamespace(symbol="SPY", ts=pd.DatetimeIndex(bars["ts"]), bars=bars)
    return SimpleNamespace(data=data, values=values)


def _source(obs, start) -> RLEnsembleSource:
    agents = [TrendProposer("fast", 3.0), TrendProposer("slow", 0.5), TrendProposer("contrarian", -1.0)]
    return RLEnsembleSource([obs], agents, EnsembleConfig(method="meta", window=10, seed=3), start)


def test_a_restarted_source_decides_exactly_like_an_uninterrupted_one(spy_observations) -> None:
    bars = spy_observations.data.bars
    ts = spy_observations.data.ts
    start = ts[100].to_pydatetime()
    calm = _source(spy_observations, start)
    decisions = {}
    for i in range(100, 220):
        d = calm.decide("SPY", ts[i].to_pydatetime(), bars.iloc[: i + 1])
        decisions[i] = (d.signal.position_size, d.signal.confidence, d.input_hash)
    assert len({v[0] for v in decisions.values()}) > 5  # it does adapt
    restarted = _source(spy_observations, start)  # a new process, resuming at bar 170
    for i in range(170, 220):
        d = restarted.decide("SPY", ts[i].to_pydatetime(), bars.iloc[: i + 1])
        assert (d.signal.position_size, d.signal.confidence, d.input_hash) == decisions[i]
    assert d.signal.model_version.startswith("ensemble-")


def test_missing_or_incomplete_observations_raise_so_the_engine_falls_back(spy_observations) -> None:
    bars = spy_observations.data.bars
    ts = spy_observations.data.ts
    source = _source(spy_observations, ts[0].to_pydatetime())
    with pytest.raises(DataFormatError, match="NaN"):
        source.decide("SPY", ts[5].to_pydatetime(), bars.iloc[:6])  # before the 20-bar warm-up
    with pytest.raises(DataNotFoundError, match="QQQ"):
        source.decide("QQQ", ts[50].to_pydatetime(), bars.iloc[:51].assign(symbol="QQQ"))
    late = bars.iloc[:51].copy()
    late.loc[late.index[-1], "ts"] = late["ts"].iloc[-1] + pd.Timedelta(hours=1)
    with pytest.raises(DataNotFoundError, match="no observation"):
        source.decide("SPY", late["ts"].iloc[-1].to_pydatetime(), late)
