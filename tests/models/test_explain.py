"""Explainability on models fitted to real SPY and QQQ features: integrated gradients (completeness) for the
CNN+LSTM, gain and permutation importance for the LightGBM baseline."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from alphaloom.core.exceptions import ConfigError, EmptyRangeError
from alphaloom.data.sample import load_sample
from alphaloom.features import FeatureEngineer
from alphaloom.features.pipeline import FeatureConfig
from alphaloom.models import CNNLSTMConfig, CNNLSTMForecaster, LightGBMConfig, LightGBMForecaster
from alphaloom.models.explain import integrated_gradients, permutation_importance, tree_feature_importance

TRAIN = 1200  # bars per symbol used for fitting; the rest is held out


@pytest.fixture(scope="module")
def frames() -> dict[str, pd.DataFrame]:
    bars = load_sample("us_equities_daily")
    out = {}
    for sym in ("SPY", "QQQ"):
        b = bars[bars["symbol"] == sym].tail(1600).reset_index(drop=True)
        f = FeatureEngineer(FeatureConfig()).fit_transform(b)
        f["close"] = b["close"].to_numpy()
        out[sym] = f.iloc[60:]  # past the longest warm-up
    return out


@pytest.fixture(scope="module")
def cnn(frames, small_config: CNNLSTMConfig) -> CNNLSTMForecaster:
    return CNNLSTMForecaster(small_config.replace(epochs=2)).fit(
        {s: f.iloc[:TRAIN] for s, f in frames.items()}
    )


@pytest.mark.parametrize("target", ["pred_return", "p_up", "p_down"])
def test_integrated_gradients_are_complete(cnn, frames, target: str) -> None:
    held_out = frames["SPY"].iloc[TRAIN:]
    at = list(held_out.index[-3:])
    result = integrated_gradients(cnn, held_out, at=at, target=target)
    assert [a.ts for a in result] == at
    pred = cnn.predict(held_out).loc[at]
    for a in result:
        assert a.values.shape == (cnn.config.window, cnn.n_features_in_)
        expected_fx = pred.loc[a.ts, target]
        assert math.isclose(
            a.output, expected_fx, rel_tol=1e-4, abs_tol=1e-7
        )  # float64 copy vs float32 model
        # Completeness: the attributions add up to f(x) - f(baseline), to 1e-6 of the change.
        change = a.output - a.baseline_output
        assert abs(a.completeness_gap) <= 1e-6 * max(abs(change), 1e-6), (a.completeness_gap, change)
        assert math.isclose(a.by_feature().sum(), a.values.sum(), rel_tol=1e-9, abs_tol=1e-15)
        assert math.isclose(a.by_lag().sum(), a.values.sum(), rel_tol=1e-9, abs_tol=1e-15)
        assert a.by_lag().index[0] == 0
        assert a.by_lag().iloc[0] == pytest.approx(a.values[-1].sum())


def test_a_feature_at_its_baseline_gets_no_attribution(cnn, frames) -> None:
    held_out = frames["SPY"].iloc[TRAIN:].copy()
    name = cnn.feature_names_[0]
    held_out[name] = cnn.scaler_mean_[0]  # the baseline value of that feature, at every bar
    (a,) = integrated_gradients(cnn, held_out)
    assert np.all(a.values[:, 0] == 0.0)
    assert abs(a.completeness_gap) <= 1e-6 * max(abs(a.output - a.baseline_output), 1e-6)


def test_integrated_gradients_refuses_bad_requests(cnn, frames) -> None:
    with pytest.raises(ConfigError, match="Did you mean 'p_up'"):
        integrated_gradients(cnn, frames["SPY"], target="p_upp")
    with pytest.raises(EmptyRangeError, match="full window"):
        integrated_gradients(cnn, frames["SPY"], at=[frames["SPY"].index[2]])


@pytest.fixture(scope="module")
def lgbm(frames) -> LightGBMForecaster:
    cfg = LightGBMConfig(n_estimators=60, num_leaves=7, min_child_samples=40, seed=1)
    return LightGBMForecaster(cfg).fit({s: f.iloc[:TRAIN] for s, f in frames.items()})


def test_tree_importance_shares_and_permutation_importance_agree(lgbm, frames) -> None:
    gain = tree_feature_importance(lgbm)
    assert list(gain.index) != []
    assert set(gain.index) == set(lgbm.feature_names_)
    assert math.isclose(gain["classifier_share"].sum(), 1.0, rel_tol=1e-12)
    assert math.isclose(gain["regressor_share"].sum(), 1.0, rel_tol=1e-12)
    held_out = {s: f.iloc[TRAIN:] for s, f in frames.items()}
    perm = permutation_importance(lgbm, held_out, n_repeats=3, seed=0)
    print(
        "\nLightGBM gain share (top 5):\n",
        gain["classifier_share"].head(),
        "\npermutation (top 5):\n",
        perm.head(),
    )
    assert set(perm.index) == set(lgbm.feature_names_)
    assert perm.attrs["n_scored"] > 500
    assert perm.attrs["baseline_log_loss"] > 0
    # A feature no classifier tree splits on cannot change the class forecast when shuffled: exactly 0.
    unused = gain.index[gain["classifier"] == 0.0]
    for feature in unused:
        assert perm.loc[feature, "importance"] == 0.0
    used = gain.index[gain["classifier"] > 0.0]
    assert (perm.loc[used, "importance"] != 0.0).any()


def test_permutation_importance_works_for_the_cnn_too(cnn, frames) -> None:
    perm = permutation_importance(cnn, {"SPY": frames["SPY"].iloc[TRAIN:]}, n_repeats=1, seed=0)
    assert set(perm.index) == set(cnn.feature_names_)
    assert np.isfinite(perm["importance"]).all()
