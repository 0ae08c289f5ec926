"""Drift (PSI, KS) against scipy and hand computation, on real SPY features; decay; alerts; retraining."""

from __future__ import annotations

import json
import logging
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from alphaloom.core.exceptions import DataFormatError, NotFittedError
from alphaloom.data.sample import load_sample
from alphaloom.monitoring import (
    AlertLog,
    DriftConfig,
    DriftMonitor,
    RetrainConfig,
    RetrainTrigger,
    performance_decay,
)
from alphaloom.risk import measures


@pytest.fixture(scope="module")
def spy() -> pd.DataFrame:
    bars = load_sample("us_equities_daily")
    b = bars[bars["symbol"] == "SPY"].set_index("ts")
    logret = np.log(b["close"]).diff()
    return pd.DataFrame(
        {
            "ret_1": logret,
            "vol_20": logret.rolling(20).std(),
            "range": (b["high"] - b["low"]) / b["close"],
            "ret": b["close"].pct_change(),
        }
    )


def test_psi_matches_a_hand_computation(spy) -> None:
    ref = spy.loc["2004":"2006", "vol_20"].dropna().to_numpy()
    live = spy.loc["2008", "vol_20"].dropna().to_numpy()
    inner = np.unique(np.quantile(ref, np.linspace(0, 1, 11)[1:-1]))
    r = np.array([np.mean(np.searchsorted(inner, ref, side="right") == k) for k in range(len(inner) + 1)])
    c = np.array([np.mean(np.searchsorted(inner, live, side="right") == k) for k in range(len(inner) + 1)])
    r, c = np.maximum(r, 1e-4), np.maximum(c, 1e-4)
    expected = float(np.sum((c - r) * np.log(c / r)))
    assert math.isclose(measures.population_stability_index(ref, live), expected, rel_tol=1e-12)
    assert measures.population_stability_index(ref, ref) < 1e-12
    assert math.isnan(measures.population_stability_index(ref, np.append(live, np.nan)))


def test_ks_matches_scipy(spy) -> None:
    a = spy.loc["2004":"2006", "ret_1"].dropna().to_numpy()
    for period in ("2007", "2008", "2013"):
        b = spy.loc[period, "ret_1"].dropna().to_numpy()
        ours = measures.ks_two_sample(a, b)
        theirs = stats.ks_2samp(a, b)
        assert math.isclose(ours.statistic, theirs.statistic, rel_tol=1e-12)
        en = math.sqrt(a.size * b.size / (a.size + b.size))
        assert math.isclose(
            ours.p_value, stats.kstwobign.sf(en * ours.statistic), rel_tol=1e-9, abs_tol=1e-15
        )
        assert abs(ours.p_value - theirs.pvalue) < 0.02  # scipy's finite-sample p-value


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.floats(-1e3, 1e3, allow_nan=False), min_size=1, max_size=80),
    st.lists(st.floats(-1e3, 1e3, allow_nan=False), min_size=1, max_size=80),
)
def test_ks_statistic_equals_scipy_on_any_sample(a: list[float], b: list[float]) -> None:
    ours = measures.ks_two_sample(a, b)
    assert math.isclose(ours.statistic, stats.ks_2samp(a, b).statistic, rel_tol=1e-12, abs_tol=1e-15)
    assert 0.0 <= ours.p_value <= 1.0


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(-1e3, 1e3, allow_nan=False), min_size=2, max_size=80), st.integers(2, 12))
def test_psi_is_non_negative_and_zero_on_itself(a: list[float], bins: int) -> None:
    x = np.asarray(a)
    assert measures.population_stability_index(x, x, bins=bins) == pytest.approx(0.0, abs=1e-12)
    assert measures.population_stability_index(x, x[::-1] * 2 + 1, bins=bins) >= 0.0


def test_monitor_alerts_on_the_2008_crisis_not_on_a_calm_year(spy) -> None:
    cols = ["ret_1", "vol_20", "range"]
    monitor = DriftMonitor(DriftConfig()).fit(spy.loc["2004":"2006", cols])
    calm = monitor.check(spy.loc["2005-06":"2006-06", cols])
    crisis = monitor.check(spy.loc["2008-09":"2009-03", cols])
    print("\n", calm.table.to_string(), "\n", crisis.table.to_string())
    # Daily returns and ranges look like the training years; 20-day volatility is persistent, so a calm year
    # already sits in part of its range (a real, small shift), while the crisis moves every feature far out.
    status = calm.table.set_index("column")["status"]
    assert (status["ret_1"], status["range"]) == ("ok", "ok")
    assert calm.worst_psi < 0.3
    assert set(crisis.drifted) == {"ret_1", "vol_20", "range"}
    assert crisis.worst_psi > 10 * calm.worst_psi
    assert {a.subject for a in crisis.alerts} >= {"vol_20", "range"}
    row = crisis.table.set_index("column").loc["vol_20"]
    assert math.isclose(
        row["psi"],
        measures.population_stability_index(
            spy.loc["2004":"2006", "vol_20"].dropna(), spy.loc["2008-09":"2009-03", "vol_20"].dropna()
        ),
        rel_tol=1e-12,
    )


def test_non_finite_live_values_are_counted_not_dropped_silently(spy) -> None:
    monitor = DriftMonitor().fit(spy.loc["2004":"2006", ["vol_20"]])
    live = spy.loc["1998-01":"1998-06", ["vol_20"]]  # the first 20 bars of the sample have no volatility yet
    report = monitor.check(live)
    assert report.table.loc[0, "n_nonfinite_live"] == int(live["vol_20"].isna().sum()) > 0
    assert report.table.loc[0, "n_live"] == int(live["vol_20"].notna().sum())
    with pytest.raises(NotFittedError):
        DriftMonitor().check(live)
    with pytest.raises(DataFormatError, match="lacks monitored"):
        monitor.check(spy.loc["2008", ["ret_1"]])


def test_performance_decay_against_the_backtest_expectation(spy) -> None:
    crash = spy.loc["2008-06":"2009-02", "ret"].to_numpy()
    steady = spy.loc["2013", "ret"].to_numpy()
    decayed = performance_decay(crash, expected_sharpe_annual=1.0, expected_max_drawdown=0.15)
    fine = performance_decay(steady, expected_sharpe_annual=1.0, expected_max_drawdown=0.15)
    assert decayed.decayed
    assert decayed.probability_on_track < 0.05
    assert decayed.live_max_drawdown > 0.3
    assert not fine.decayed
    assert fine.probability_on_track > 0.5
    prob = measures.probabilistic_sharpe_ratio(steady, measures.per_period_sharpe(1.0, 252))
    assert math.isclose(fine.probability_on_track, prob, rel_tol=1e-12)
    assert not performance_decay(crash[:10], expected_sharpe_annual=1.0).decayed  # too early to tell


def test_alerts_are_logged_kept_and_written(spy, tmp_path, caplog) -> None:
    alerts = AlertLog(capacity=5, path=tmp_path / "alerts.jsonl")
    monitor = DriftMonitor(kind="feature_drift").fit(spy.loc["2004":"2006", ["vol_20", "range"]])
    with caplog.at_level(logging.WARNING, logger="alphaloom.monitoring"):
        alerts.extend(monitor.check(spy.loc["2008-09":"2009-03", ["vol_20", "range"]]).alerts)
    assert len(alerts) == 2
    assert "feature_drift on vol_20" in caplog.text
    lines = (tmp_path / "alerts.jsonl").read_text().splitlines()
    assert [json.loads(ln)["subject"] for ln in lines] == ["vol_20", "range"]
    assert alerts.recent(1, kind="feature_drift")[0].subject == "range"


def test_retrain_trigger_fires_once_per_cooldown(spy) -> None:
    monitor = DriftMonitor().fit(spy.loc["2004":"2006", ["ret_1", "vol_20", "range"]])
    crisis = monitor.check(spy.loc["2008-09":"2009-03", ["ret_1", "vol_20", "range"]])
    calm = monitor.check(spy.loc["2005-06":"2006-06", ["ret_1", "vol_20", "range"]])
    queued = []
    log = AlertLog()
    trigger = RetrainTrigger(RetrainConfig(max_drifted_features=1, cooldown_bars=10), queued.append, log)
    assert not trigger.update(features=calm).retrain
    first = trigger.update(features=crisis)
    assert first.retrain
    assert "features drifted" in first.reasons[0]
    again = trigger.update(features=crisis, bars_elapsed=5)
    assert not again.retrain
    assert again.suppressed
    assert trigger.update(features=crisis, bars_elapsed=5).retrain  # cool-down over
    assert len(queued) == 2
    assert [a.kind for a in log.recent()] == ["retrain", "retrain"]
