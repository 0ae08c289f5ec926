"""Bias and fairness checks on the shipped real bars: slices without look-ahead, planted disparities found,
small slices reported and kept out of the tests, reports round-trip through the registry."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alphaloom.core.exceptions import ConfigError, DataFormatError
from alphaloom.data.instruments import SAMPLE_INSTRUMENTS
from alphaloom.data.sample import load_sample
from alphaloom.registry import (
    BiasConfig,
    BiasReport,
    ModelRegistry,
    forecast_bias,
    load_bias_report,
    returns_bias,
    slice_labels,
    store_bias_report,
    write_bias_html,
)
from alphaloom.registry.bias import WARM_UP, _expected_calibration_error, adjust_p_values
from alphaloom.risk import measures

SYMBOLS = ("SPY", "EURUSD", "BTCUSD")
CLASSES = {s: i.asset_class for s, i in SAMPLE_INSTRUMENTS.items()}
FAST = BiasConfig(n_permutations=999)
PPY = {"SPY": 252.0, "EURUSD": 260.0, "BTCUSD": 365.0}


@pytest.fixture(scope="module")
def bars() -> pd.DataFrame:
    frames = [load_sample([name]) for name in ("us_equities_daily", "fx_daily", "crypto_daily")]
    out = pd.concat(frames, ignore_index=True)
    return out[out["symbol"].isin(SYMBOLS)].sort_values(["symbol", "ts"]).reset_index(drop=True)


@pytest.fixture(scope="module")
def labels(bars: pd.DataFrame) -> pd.DataFrame:
    return slice_labels(bars, FAST, CLASSES)


def _last(frame: pd.DataFrame, n: int) -> pd.DataFrame:
    return frame.groupby("symbol", group_keys=False).tail(n).reset_index(drop=True)


def _forecasts(bars: pd.DataFrame, skill: dict[str, float], seed: int = 0) -> pd.DataFrame:
    """Probabilities that know the next bar's direction with probability ``skill[symbol]`` (0.5: a coin)."""
    rng = np.random.default_rng(seed)
    out = []
    for sym, g in bars.groupby("symbol", sort=True):
        close = g["close"].to_numpy()
        realised = np.append(np.log(close[1:] / close[:-1]), np.nan)
        right = rng.random(len(close)) < skill[sym]
        up = np.where(right, realised > 0, realised <= 0)
        p_up = np.where(up, 0.5, 0.2)
        p_down = np.where(up, 0.2, 0.5)
        out.append(
            pd.DataFrame(
                {
                    "symbol": sym,
                    "ts": g["ts"].to_numpy(),
                    "p_down": p_down,
                    "p_flat": 1.0 - p_up - p_down,
                    "p_up": p_up,
                    "realised": realised,
                    "pred_return": np.where(up, 0.002, -0.002),
                }
            )
        )
    return pd.concat(out, ignore_index=True)


def _buy_and_hold(bars: pd.DataFrame) -> pd.DataFrame:
    parts = []
    for sym, g in bars.groupby("symbol", sort=True):
        close = g["close"].to_numpy()
        parts.append(
            pd.DataFrame(
                {"symbol": sym, "ts": g["ts"].to_numpy(), "return": np.r_[0.0, close[1:] / close[:-1] - 1]}
            )
        )
    return pd.concat(parts, ignore_index=True)  # fmt: skip


# ------------------------------------------------------------------------------------------- slices
def test_slice_labels_never_read_a_later_bar(bars: pd.DataFrame, labels: pd.DataFrame) -> None:
    spy = bars[bars["symbol"] == "SPY"].reset_index(drop=True)
    cut = 3000
    peeked = spy.copy()
    rng = np.random.default_rng(1)
    peeked.loc[cut + 1 :, "close"] *= np.exp(np.cumsum(rng.normal(0, 0.05, len(spy) - cut - 1)))
    a = slice_labels(spy, FAST, CLASSES).iloc[: cut + 1]
    b = slice_labels(peeked, FAST, CLASSES).iloc[: cut + 1]
    pd.testing.assert_frame_equal(a, b)
    later = slice_labels(peeked, FAST, CLASSES).iloc[cut + 1 :]["vol_regime"]
    assert not later.equals(slice_labels(spy, FAST, CLASSES).iloc[cut + 1 :]["vol_regime"])


def test_slice_labels_regimes_warm_up_then_cover_the_terciles(labels: pd.DataFrame) -> None:
    spy = labels[labels["symbol"] == "SPY"].reset_index(drop=True)
    cfg = FAST
    # vol needs vol_window returns (vol_window + 1 closes), then vol_min_history vol values for the terciles
    first_vol = cfg.vol_window + cfg.vol_min_history - 1
    assert (spy["vol_regime"].iloc[:first_vol] == WARM_UP).all()
    assert (spy["vol_regime"].iloc[first_vol:] != WARM_UP).all()
    assert (spy["trend_regime"].iloc[: cfg.trend_slow - 1] == WARM_UP).all()
    assert set(spy["trend_regime"].iloc[cfg.trend_slow - 1 :]) == {"up", "down"}
    shares = spy["vol_regime"].iloc[first_vol:].value_counts(normalize=True)
    assert set(shares.index) == {"low", "mid", "high"}
    assert shares.min() > 0.2  # expanding terciles of its own past: roughly a third each over 20 years
    assert set(labels.loc[labels["symbol"] == "BTCUSD", "day_of_week"]) >= {"Saturday", "Sunday"}
    assert set(labels["asset_class"]) == {"etf", "forex", "crypto"}
    assert set(labels["time_of_day"]) == {"00:00 UTC"}


def test_intraday_bars_are_sliced_by_hour(bars: pd.DataFrame) -> None:
    spy = bars[bars["symbol"] == "SPY"].iloc[:300].reset_index(drop=True)
    hourly = spy.assign(ts=pd.date_range("2024-01-01 09:00", periods=len(spy), freq="h", tz="UTC"))
    got = slice_labels(hourly, FAST)
    assert got["time_of_day"].iloc[:3].tolist() == ["09:00 UTC", "10:00 UTC", "11:00 UTC"]
    assert got["time_of_day"].nunique() == 24
    assert got["asset_class"].eq("unknown").all()


# ------------------------------------------------------------------------------------------- forecasts
def test_forecast_bias_finds_a_planted_symbol_disparity(bars: pd.DataFrame, labels: pd.DataFrame) -> None:
    fc = _last(_forecasts(bars, {"SPY": 0.5, "EURUSD": 0.5, "BTCUSD": 0.75}), 600)
    report = forecast_bias(fc, labels, flat_threshold=0.002, config=FAST, model="planted")
    by_symbol = report.slices[report.slices["dimension"] == "symbol"].set_index("slice")
    assert by_symbol.loc["BTCUSD", "hit_rate"] > 0.7
    assert abs(by_symbol.loc["SPY", "hit_rate"] - 0.5) < 0.08
    # the hit rate is the sign of p_up - p_down against the sign of the realised return
    spy = fc[(fc["symbol"] == "SPY") & fc["realised"].notna() & (fc["realised"] != 0)]
    expected = np.mean(np.sign(spy["p_up"] - spy["p_down"]) == np.sign(spy["realised"]))
    assert by_symbol.loc["SPY", "hit_rate"] == pytest.approx(expected)
    test = report.tests.set_index(["dimension", "metric"]).loc[("symbol", "hit_rate")]
    assert test["p_adjusted"] < 1e-6
    assert test["significant"]
    worst = report.worst_slices()["hit_rate"][0]
    assert worst not in ("symbol=BTCUSD", "asset_class=crypto")
    assert "bias.disparities" in report.tags()
    assert "symbol:hit_rate" in report.tags()["bias.disparities"]


def test_forecast_bias_without_disparity_finds_none(bars: pd.DataFrame, labels: pd.DataFrame) -> None:
    fc = _last(_forecasts(bars, dict.fromkeys(SYMBOLS, 0.6), seed=5), 600)
    report = forecast_bias(fc, labels, flat_threshold=0.002, config=FAST)
    hit = report.tests[report.tests["metric"] == "hit_rate"]
    assert not hit["significant"].any()


def test_forecast_error_sign_and_calibration(bars: pd.DataFrame, labels: pd.DataFrame) -> None:
    fc = _last(_forecasts(bars, dict.fromkeys(SYMBOLS, 0.55)), 400)
    fc["pred_return"] = fc["realised"].fillna(0) + np.where(fc["symbol"] == "SPY", 0.01, -0.01)
    report = forecast_bias(fc, labels, flat_threshold=0.002, config=FAST)
    s = report.slices.set_index(["dimension", "slice"])
    assert s.loc[("symbol", "SPY"), "error_sign"] == "over"
    assert s.loc[("symbol", "SPY"), "mean_error"] == pytest.approx(0.01)
    assert s.loc[("symbol", "BTCUSD"), "error_sign"] == "under"
    err = report.tests.set_index(["dimension", "metric"]).loc[("symbol", "forecast_error")]
    assert err["significant"]
    assert any("without a realised return" in n for n in report.notes)  # the last bar of each symbol
    assert report.n_bars == 3 * 399


def test_ece_matches_the_forecasters_definition() -> None:
    from alphaloom.models.cnn_lstm import expected_calibration_error

    rng = np.random.default_rng(0)
    proba = rng.dirichlet([1, 1, 1], size=500)
    y = rng.integers(0, 3, size=500)
    assert _expected_calibration_error(proba, y, 15) == pytest.approx(
        expected_calibration_error(proba, y, 15)
    )


# ------------------------------------------------------------------------------------------- min size
def test_small_slices_are_reported_and_kept_out_of_tests_and_floors(
    bars: pd.DataFrame, labels: pd.DataFrame
) -> None:
    fc = _forecasts(bars, {"SPY": 0.6, "EURUSD": 0.6, "BTCUSD": 0.0})
    fc = pd.concat([_last(fc[fc["symbol"] != "BTCUSD"], 500), _last(fc[fc["symbol"] == "BTCUSD"], 21)])
    cfg = BiasConfig(min_slice_size=40, n_permutations=999)
    report = forecast_bias(fc, labels, flat_threshold=0.002, config=cfg)
    btc = report.slices[(report.slices["dimension"] == "symbol") & (report.slices["slice"] == "BTCUSD")]
    assert len(btc) == 1
    assert btc["status"].iloc[0] == "too small"
    assert btc["n"].iloc[0] == 20
    assert btc["hit_rate"].iloc[0] < 0.1  # the worst by far, but too small to count
    assert report.worst_slices()["hit_rate"][0] != "symbol=BTCUSD"
    assert report.tests.set_index(["dimension", "metric"]).loc[("symbol", "hit_rate"), "n_slices"] == 2
    assert any("symbol=BTCUSD (20)" in n for n in report.notes)
    # Saturday and Sunday are BTCUSD-only: too small as well, and listed
    days = report.slices[report.slices["dimension"] == "day_of_week"].set_index("slice")
    assert days.loc["Saturday", "status"] == "too small"
    assert report.summary()["bias.n_slices_too_small"] >= 3


def test_a_dimension_with_one_slice_says_so(bars: pd.DataFrame, labels: pd.DataFrame) -> None:
    fc = _last(_forecasts(bars, dict.fromkeys(SYMBOLS, 0.6)), 300)
    report = forecast_bias(fc, labels, flat_threshold=0.002, config=FAST)
    tod = report.tests[report.tests["dimension"] == "time_of_day"]
    assert len(tod) == 3
    assert tod["p_value"].isna().all()
    assert tod["note"].str.contains("fewer than 2 slices").all()
    assert any(n.startswith("time_of_day: every bar is in one slice") for n in report.notes)


# --------------------------------------------------------------------------------------------- returns
def test_returns_are_sliced_where_the_position_was_decided(bars: pd.DataFrame, labels: pd.DataFrame) -> None:
    ret = _last(_buy_and_hold(bars), 700)
    report = returns_bias(ret, labels, periods_per_year=PPY, config=FAST)
    lab = labels.copy()
    lab["decided"] = lab.groupby("symbol")["vol_regime"].shift(1)
    merged = ret.merge(lab[["symbol", "ts", "decided"]], on=["symbol", "ts"])
    got = report.slices[report.slices["dimension"] == "vol_regime"].set_index("slice")["n"]
    assert got.to_dict() == merged["decided"].value_counts().to_dict()
    high = merged[merged["decided"] == "high"]
    ppy = float(high["symbol"].map(PPY).mean())
    assert got.index.tolist() == ["low", "mid", "high"]
    sharpe = report.slices.set_index(["dimension", "slice"]).loc[("vol_regime", "high"), "sharpe"]
    assert sharpe == pytest.approx(measures.sharpe_ratio(high["return"].to_numpy(), ppy))


def test_returns_bias_finds_a_strategy_that_fails_in_high_volatility(
    bars: pd.DataFrame, labels: pd.DataFrame
) -> None:
    ret = _last(_buy_and_hold(bars), 900)
    decided = ret.merge(
        labels.assign(decided=labels.groupby("symbol")["vol_regime"].shift(1))[["symbol", "ts", "decided"]],
        on=["symbol", "ts"],
    )["decided"]
    # A strategy that is long the market except when volatility was high at the decision, where it is short
    # with an extra 20 bps a bar lost: planted failure in one regime.
    ret["return"] = np.where(decided == "high", -ret["return"].abs() - 0.002, ret["return"].abs())
    report = returns_bias(ret, labels, periods_per_year=PPY, config=FAST)
    worst_label, worst_sharpe = report.worst_slices()["sharpe"]
    assert worst_label == "vol_regime=high"
    assert worst_sharpe < -5
    test = report.tests.set_index(["dimension", "metric"]).loc[("vol_regime", "sharpe")]
    assert test["p_value"] == pytest.approx(1 / 1000)  # no permutation reaches the planted spread
    assert test["significant"]
    assert report.worst_slices()["hit_rate"] == ("vol_regime=high", 0.0)


# ------------------------------------------------------------------------------------- multiple tests
def test_holm_and_bonferroni_by_hand() -> None:
    p = [0.01, 0.04, 0.03, np.nan, 0.5]
    np.testing.assert_allclose(adjust_p_values(p, "bonferroni"), [0.04, 0.16, 0.12, np.nan, 1.0])
    # Holm: sorted 0.01, 0.03, 0.04, 0.5 times 4, 3, 2, 1, made monotone
    np.testing.assert_allclose(adjust_p_values(p, "holm"), [0.04, 0.09, 0.09, np.nan, 0.5])
    with pytest.raises(ConfigError, match="unknown correction"):
        adjust_p_values(p, "holmes")


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(min_value=0.0, max_value=1.0), min_size=1, max_size=30))
def test_corrections_only_raise_p_values(p: list[float]) -> None:
    raw = np.array(p)
    holm, bonf, bh = (adjust_p_values(raw, m) for m in ("holm", "bonferroni", "benjamini_hochberg"))
    for adjusted in (holm, bonf, bh):
        assert (adjusted >= raw - 1e-12).all()
        assert (adjusted <= 1.0 + 1e-12).all()
    assert (holm <= bonf + 1e-12).all()
    assert (bh <= holm + 1e-12).all()


# ------------------------------------------------------------------------------------------- storage
def test_report_round_trips_through_the_registry_and_json(
    bars: pd.DataFrame, labels: pd.DataFrame, registry: ModelRegistry, register_rule, tmp_path: Path
) -> None:
    ret = _last(_buy_and_hold(bars), 500)
    report = returns_bias(ret, labels, periods_per_year=PPY, config=FAST, model="spy_rule/1")
    again = BiasReport.from_dict(json.loads(report.to_json()))
    pd.testing.assert_frame_equal(again.slices, report.slices)
    pd.testing.assert_frame_equal(again.tests, report.tests)
    assert again.worst_slices() == report.worst_slices()

    info = register_rule("spy_rule", {"rule": "buy_and_hold"})
    assert load_bias_report(registry, "spy_rule", info.version) is None
    stored = store_bias_report(registry, "spy_rule", info.version, report)
    assert stored.stage == info.stage  # storing a report moves nothing
    assert stored.tags["bias.kind"] == "returns"
    assert stored.tags["bias.worst_sharpe_slice"].startswith(report.worst_slices()["sharpe"][0])
    assert stored.metrics["bias.worst_sharpe"] == pytest.approx(report.worst_slices()["sharpe"][1])
    assert stored.metrics["bias.n_bars"] == 1500
    loaded = load_bias_report(registry, "spy_rule", info.version)
    assert loaded is not None
    pd.testing.assert_frame_equal(loaded.slices, report.slices)
    audit = registry.audit.audit_log(action="model.bias_report")
    assert [r.payload["model"] for r in audit] == [info.ref]
    assert audit[0].payload["artefact"] == "alphaloom/bias.json"
    with pytest.raises(ConfigError, match="reserved"):
        registry.attach_text("spy_rule", info.version, "model/x.json", "{}")

    page = write_bias_html(tmp_path / "bias.html", [report], floors={"sharpe": 0.0})
    text = page.read_text()
    assert "spy_rule/1 (returns)" in text
    assert "Plotly" in text
    assert "Disparity tests" in text


# -------------------------------------------------------------------------------------------- errors
def test_bad_inputs_are_refused_with_a_reason(bars: pd.DataFrame, labels: pd.DataFrame) -> None:
    fc = _last(_forecasts(bars, dict.fromkeys(SYMBOLS, 0.6)), 100)
    with pytest.raises(DataFormatError, match="must be 1"):
        forecast_bias(fc.assign(p_up=fc["p_up"] + 0.1), labels, flat_threshold=0.0)
    with pytest.raises(DataFormatError, match="lacks column"):
        forecast_bias(fc.drop(columns="realised"), labels, flat_threshold=0.0)
    with pytest.raises(DataFormatError, match="timezone-aware"):
        forecast_bias(fc.assign(ts=fc["ts"].dt.tz_localize(None)), labels, flat_threshold=0.0)
    with pytest.raises(ConfigError, match="flat_threshold"):
        forecast_bias(fc, labels, flat_threshold=math.nan)
    with pytest.raises(DataFormatError, match="non-finite"):
        returns_bias(pd.DataFrame({"symbol": ["SPY"], "ts": fc["ts"].iloc[:1], "return": [np.nan]}), labels)
    with pytest.raises(ConfigError, match="Did you mean 'vol_regime'"):
        BiasConfig.from_dict({"dimensions": ["vol_regim"]})
    with pytest.raises(ConfigError, match="trend_fast"):
        BiasConfig.from_dict({"trend_fast": 200, "trend_slow": 50})
    with pytest.raises(DataFormatError, match="not an alphaloom bias report"):
        BiasReport.from_dict({"slices": []})
