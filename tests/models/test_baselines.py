"""The baseline forecasters: the CNN+LSTM's interface and labels, determinism, causality, persistence by
hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from alphaloom.core.exceptions import ConfigError, DataFormatError, NotFittedError
from alphaloom.data.sample import load_sample
from alphaloom.features import FeatureEngineer
from alphaloom.models import (
    BaselineForecaster,
    CNNLSTMForecaster,
    LightGBMConfig,
    LightGBMForecaster,
    LogisticConfig,
    LogisticForecaster,
    PersistenceConfig,
    PersistenceForecaster,
)
from alphaloom.models.cnn_lstm.dataset import class_labels, forward_log_return

COLUMNS = ["p_down", "p_flat", "p_up", "pred_return"]
_TRAIN = 600


@pytest.fixture(scope="module")
def frames() -> dict[str, pd.DataFrame]:
    """SPY and AAPL, their last 900 daily bars: default features plus close."""
    bars = load_sample("us_equities_daily")
    bars = bars[bars["symbol"].isin(["SPY", "AAPL"])].groupby("symbol").tail(900)
    table = FeatureEngineer().transform_panel(bars)
    out = {}
    for symbol, group in bars.groupby("symbol"):
        feats = table[table["symbol"] == symbol].drop(columns="symbol").set_index("ts")
        out[str(symbol)] = feats.assign(close=group["close"].to_numpy())
    return out


@pytest.fixture(scope="module")
def train(frames: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    return {s: f.iloc[:_TRAIN] for s, f in frames.items()}


def _models(seed: int = 0) -> list[BaselineForecaster]:
    return [
        PersistenceForecaster(PersistenceConfig(seed=seed)),
        LogisticForecaster(LogisticConfig(lags=2, seed=seed)),
        LightGBMForecaster(LightGBMConfig(n_estimators=30, min_child_samples=20, seed=seed)),
    ]


@pytest.mark.parametrize("index", range(3), ids=["persistence", "logistic", "lightgbm"])
def test_fit_predict_has_the_cnn_lstm_interface(
    index: int,
    frames: dict[str, pd.DataFrame],
    train: dict[str, pd.DataFrame],
    fitted: CNNLSTMForecaster,
    toy_frames: dict[str, pd.DataFrame],
) -> None:
    model = _models()[index]
    assert model.fit(train, feature_columns=None, progress=None) is model
    pred = model.predict(frames["SPY"])
    assert list(pred.columns) == COLUMNS
    assert fitted.predict(next(iter(toy_frames.values()))).columns[:4].tolist() == COLUMNS
    assert isinstance(pred.index, pd.DatetimeIndex)
    assert str(pred.index.tz) == "UTC"
    assert pred.index.isin(frames["SPY"].index).all()
    assert len(pred) > 800  # every bar past the warm-up
    assert np.isfinite(pred.to_numpy()).all()
    np.testing.assert_allclose(pred[COLUMNS[:3]].sum(axis=1), 1.0, atol=1e-12)
    assert (pred[COLUMNS[:3]].to_numpy() >= 0).all()
    assert list(model.predict_proba(frames["SPY"]).columns) == COLUMNS[:3]
    assert model.n_fit_rows_ > 0
    assert model.fit_seconds_ >= 0
    assert model.get_params() == {"config": model.config}


@pytest.mark.parametrize("index", range(3), ids=["persistence", "logistic", "lightgbm"])
def test_same_seed_same_predictions(index: int, frames: dict, train: dict) -> None:
    a = _models(seed=3)[index].fit(train).predict(frames["AAPL"])
    b = _models(seed=3)[index].fit(train).predict(frames["AAPL"])
    pd.testing.assert_frame_equal(a, b, check_exact=True)


def test_lightgbm_seed_changes_the_sampled_trees(frames: dict, train: dict) -> None:
    a = _models(seed=1)[2].fit(train).predict(frames["AAPL"])
    b = _models(seed=2)[2].fit(train).predict(frames["AAPL"])
    assert not np.allclose(a.to_numpy(), b.to_numpy())


@pytest.mark.parametrize("index", range(3), ids=["persistence", "logistic", "lightgbm"])
def test_predictions_never_peek_at_later_rows(index: int, frames: dict, train: dict) -> None:
    model = _models()[index].fit(train)
    full = frames["SPY"]
    cut = 700
    tampered = full.copy()
    tampered.iloc[cut + 1 :] = tampered.iloc[cut + 1 :] * 1.5  # change the future, features and close
    before = model.predict(full).loc[: full.index[cut]]
    after = model.predict(tampered).loc[: full.index[cut]]
    # 1e-12, not bit-equality: BLAS blocks a matrix product by its row count, which changes the rounding.
    pd.testing.assert_frame_equal(before, after, check_exact=False, rtol=0, atol=1e-12)
    truncated = model.predict(full.iloc[: cut + 1])
    pd.testing.assert_frame_equal(before, truncated, check_exact=False, rtol=0, atol=1e-12)


def test_threshold_rule_matches_the_cnn_lstm(train: dict) -> None:
    model = LogisticForecaster().fit(train)
    returns = []
    for frame in train.values():
        forward = forward_log_return(frame["close"].to_numpy(), 1)
        finite = np.isfinite(frame.drop(columns="close").to_numpy()).all(axis=1) & np.isfinite(forward)
        returns.append(forward[finite])
    expected = float(np.quantile(np.abs(np.concatenate(returns)), 1 / 3))
    assert model.flat_threshold_ == pytest.approx(expected, rel=1e-15)
    fixed = LogisticForecaster(LogisticConfig(flat_threshold=0.004)).fit(train)
    assert fixed.flat_threshold_ == 0.004


def test_persistence_by_hand() -> None:
    ts = pd.date_range("2024-01-01", periods=7, freq="D", tz="UTC", name="ts")
    close = np.array([100.0, 110.0, 99.0, 99.0, 108.9, 119.79, 119.79])
    frame = pd.DataFrame({"close": close}, index=ts)
    model = PersistenceForecaster(PersistenceConfig(flat_threshold=0.05)).fit(frame)
    # Rows 1..5 have a last return and a label: last classes up, down, flat, up, up; next classes down,
    # flat, up, up, flat -> 1 hit out of 5; Laplace (1 + 1) / (5 + 3) = 0.25 < 0.34, so the floor.
    assert model.hit_rate_ == 0.34
    assert model.feature_names_ == []
    pred = model.predict(frame)
    assert list(pred.index) == list(ts[1:])
    last = np.log(close[1:] / close[:-1])
    np.testing.assert_array_equal(pred["pred_return"].to_numpy(), last)
    expected = np.full((6, 3), 0.33)
    expected[np.arange(6), class_labels(last, 0.05)] = 0.34
    np.testing.assert_allclose(pred[COLUMNS[:3]].to_numpy(), expected, rtol=0, atol=1e-15)

    # A trend and horizon 2: rows 2..4 have a last and a next 2-bar return, all up; (3 + 1) / (3 + 3).
    trend = pd.DataFrame({"close": 100.0 * 1.1 ** np.arange(7)}, index=ts)
    model = PersistenceForecaster(PersistenceConfig(flat_threshold=0.05, horizon=2)).fit(trend)
    assert model.hit_rate_ == pytest.approx(4 / 6, rel=1e-15)
    horizon_two = model.predict(trend)
    assert list(horizon_two.index) == list(ts[2:])
    np.testing.assert_allclose(horizon_two["pred_return"], 2 * math.log(1.1), rtol=1e-14)
    np.testing.assert_allclose(horizon_two["p_up"], 4 / 6, rtol=1e-15)


def test_contract_errors_teach(frames: dict, train: dict) -> None:
    with pytest.raises(NotFittedError, match="fit"):
        LogisticForecaster().predict(frames["SPY"])
    with pytest.raises(ConfigError, match="LogisticConfig"):
        LogisticForecaster(LightGBMConfig())  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="only 'config'"):
        LogisticForecaster().set_params(C=1.0)
    with pytest.raises(DataFormatError, match="missing feature"):
        LogisticForecaster().fit(train).predict(frames["SPY"].drop(columns=["rsi_14"]))
    odd = {"SPY": train["SPY"], "AAPL": train["AAPL"].drop(columns=["rsi_14"])}
    with pytest.raises(DataFormatError, match="same feature columns"):
        LightGBMForecaster().fit(odd)
    with pytest.raises(DataFormatError, match="close"):
        PersistenceForecaster().fit(train).predict(frames["SPY"].drop(columns=["close"]))
    with pytest.raises(DataFormatError, match="non-empty"):
        PersistenceForecaster().fit({})
