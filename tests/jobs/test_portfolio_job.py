"""Portfolio jobs on a workspace holding the shipped US equities sample."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from alphaloom.core.exceptions import ConfigError
from alphaloom.jobs import stages
from alphaloom.jobs.config import RunConfig
from alphaloom.jobs.portfolio import load_panel, optimize, rebalance
from alphaloom.jobs.workspace import Workspace

SYMBOLS = ("SPY", "AAPL", "IWM", "USO", "IBM")


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    ws = Workspace.resolve(tmp_path_factory.mktemp("portfolio_ws"))
    stages.ingest(ws, samples=["us_equities_daily"])
    return ws


@pytest.fixture(scope="module")
def cfg() -> RunConfig:
    return RunConfig(symbols=SYMBOLS, start="2012-01-01")


@pytest.mark.parametrize("method", ["min_variance", "hrp", "risk_parity", "factor"])
def test_optimize_stores_weights(ws: Workspace, cfg: RunConfig, method: str) -> None:
    result = optimize(ws, cfg, method=method, lookback=252)
    w = result["weights"]
    assert list(w["symbol"]) == list(SYMBOLS)
    assert w["weight"].sum() == pytest.approx(1.0)
    assert result["rows"] == 252
    with ws.require_store() as store:
        stored = store.read_frame("portfolio_weights")
    assert (stored["method"] == method).sum() >= len(SYMBOLS)
    assert ws.manifest()["portfolio_optimize"]["method"] == method


def test_black_litterman_uses_stored_forecasts(ws: Workspace, cfg: RunConfig) -> None:
    _, close, _ = load_panel(ws, cfg)
    ts = close.index[-1]
    fc = pd.DataFrame(
        {
            "symbol": list(SYMBOLS),
            "ts": ts,
            "p_down": [0.1, 0.3, 0.3, 0.6, 0.3],
            "p_flat": [0.1, 0.4, 0.4, 0.2, 0.4],
            "p_up": [0.8, 0.3, 0.3, 0.2, 0.3],
            "pred_return": [0.0008, 0.0, 0.0, -0.0008, 0.0],
        }
    )
    with ws.open_store() as store:
        store.write_frame("forecasts", fc)
    with_views = optimize(ws, cfg, method="black_litterman", lookback=252)
    assert with_views["views"] == len(SYMBOLS)
    with ws.open_store() as store:
        store.write_frame("forecasts", fc.assign(ts=ts + pd.Timedelta(days=1)))  # only future forecasts
    no_views = optimize(ws, cfg, method="black_litterman", lookback=252)
    assert no_views["views"] == 0  # forecasts after the optimisation date are never used
    w1 = with_views["weights"].set_index("symbol")["weight"]
    w0 = no_views["weights"].set_index("symbol")["weight"]
    assert w1["SPY"] > w0["SPY"]
    assert w1["USO"] < w0["USO"]


def test_rebalance_compares_policies_and_writes_a_report(ws: Workspace, cfg: RunConfig) -> None:
    summary = rebalance(ws, cfg, method="risk_parity", lookback=252, reoptimize_every=21)
    assert list(summary["policy"]) == ["calendar", "drift", "vol_target", "band"]
    assert np.isfinite(summary[["total_return", "sharpe", "max_drawdown", "costs"]].to_numpy()).all()
    by = summary.set_index("policy")
    assert by.loc["band", "turnover"] < by.loc["calendar", "turnover"]  # the band skips small drifts
    assert (by["costs"] > 0).all()
    report = Path(summary.attrs["report"])
    text = report.read_text(encoding="utf-8")
    assert "Rebalancing policies compared" in text
    assert "<script src=" not in text
    with ws.require_store() as store:
        assert len(store.read_frame("portfolio_rebalance")) == 4
        eq = store.read_frame("portfolio_equity")
    assert set(eq["policy"]) == set(summary["policy"])


def test_bad_method_and_policy(ws: Workspace, cfg: RunConfig) -> None:
    with pytest.raises(ConfigError, match="Did you mean 'hrp'"):
        optimize(ws, cfg, method="hpr")
    with pytest.raises(ConfigError, match="unknown policy"):
        rebalance(ws, cfg, policies=["monthly"])
    with pytest.raises(ConfigError, match="at least two symbols"):
        optimize(ws, cfg.replace(symbols=("SPY",)))
