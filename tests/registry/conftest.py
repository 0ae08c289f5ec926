"""Real return series for the registry tests: backtests of rules on the shipped SPY sample, 2010-2021."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from alphaloom.backtest.costs import CostModel
from alphaloom.backtest.engine import buy_and_hold, run_backtest
from alphaloom.data.sample import load_sample
from alphaloom.data.storage.relational import DuckDBRelationalStore
from alphaloom.features.pipeline import FeatureConfig
from alphaloom.registry import DataFingerprint, Lineage, ModelRegistry

COSTS = CostModel(commission_bps=1.0, slippage_bps=2.0)
TEST_START = "2010-01-01"  # rules are "trained" (chosen) on bars before, judged on bars from here


@pytest.fixture(scope="session")
def spy_bars() -> pd.DataFrame:
    bars = load_sample("us_equities_daily")
    return bars[bars["symbol"] == "SPY"].reset_index(drop=True)


@pytest.fixture(scope="session")
def strategy_returns(spy_bars: pd.DataFrame) -> dict[str, np.ndarray]:
    """Out-of-sample per-bar returns (after costs) of buy-and-hold and trend / reversal rules on SPY."""
    close = spy_bars["close"]
    test = spy_bars["ts"] >= pd.Timestamp(TEST_START, tz="UTC")
    bars = spy_bars[test].reset_index(drop=True)
    out = {"buy_and_hold": buy_and_hold(bars, costs=COSTS).returns}
    for window in (50, 100, 200):
        weights = (close > close.rolling(window).mean()).astype(float)[test].to_numpy()
        out[f"trend_{window}"] = run_backtest(bars, weights, costs=COSTS).returns
    reversal = (close.pct_change(5) < 0).astype(float)[test].to_numpy()
    out["reversal_5"] = run_backtest(bars, reversal, costs=COSTS).returns
    # Short when above the 20-day mean: a rule that loses in a rising market.
    contrarian = -(close > close.rolling(20).mean()).astype(float)[test].to_numpy()
    out["contrarian_20"] = run_backtest(bars, contrarian, costs=COSTS).returns
    return out


@pytest.fixture
def registry(tmp_path: Path):
    audit = DuckDBRelationalStore(tmp_path / "audit.duckdb")
    yield ModelRegistry(tmp_path / "registry", audit)
    audit.close()


@pytest.fixture
def register_rule(registry: ModelRegistry, tmp_path: Path, spy_bars: pd.DataFrame):
    """Register a rule strategy: its artefact is its parameters (as the engine loads them), its lineage the
    SPY bars before the test period."""
    train = spy_bars[spy_bars["ts"] < pd.Timestamp(TEST_START, tz="UTC")]
    fingerprint = DataFingerprint.from_bars(train)
    counter = itertools.count()

    def register(name: str, params: dict, *, metrics=None, parents=(), kind="baseline"):
        path = tmp_path / "artefacts" / f"{name}-{next(counter)}"
        path.mkdir(parents=True, exist_ok=True)
        (path / "rule.json").write_text(json.dumps(params, sort_keys=True))
        lineage = Lineage(fingerprint, FeatureConfig().config_hash(), params)
        return registry.register(
            kind, name, path, lineage, metrics or {}, parents, tags={"strategy": params["rule"]}
        )

    return register
