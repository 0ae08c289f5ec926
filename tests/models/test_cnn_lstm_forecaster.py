"""CNNLSTMForecaster: fit/predict contract, no look-ahead, determinism, persistence, calibration, errors."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from alphaloom.core import DataFormatError, EmptyRangeError, NotFittedError
from alphaloom.core.exceptions import ModelError, TrainingError
from alphaloom.models import CNNLSTM, CNNLSTMConfig, CNNLSTMForecaster, TrainingHistory
from alphaloom.models.cnn_lstm.forecaster import _fit_temperature

torch.set_num_threads(1)

PROBA = ["p_down", "p_flat", "p_up"]


def _fast(config: CNNLSTMConfig, **changes: object) -> CNNLSTMConfig:
    return config.replace(**{"epochs": 1, **changes})


# ---------------------------------------------------------------- contract and outputs


def test_init_stores_only_the_config(small_config: CNNLSTMConfig) -> None:
    model = CNNLSTMForecaster(small_config)
    assert model.get_params() == {"config": small_config}
    assert not [k for k in vars(model) if k.endswith("_")]
    assert CNNLSTMForecaster().config == CNNLSTMConfig()


def test_set_params_and_repr(small_config: CNNLSTMConfig) -> None:
    model = CNNLSTMForecaster()
    assert model.set_params(config=small_config) is model
    assert model.config == small_config
    assert repr(model).startswith("CNNLSTMForecaster(config=CNNLSTMConfig(window=12")
    with pytest.raises(ValueError, match="only 'config'"):
        model.set_params(window=3)


def test_quick_config_fits_fast(toy_frames: dict[str, pd.DataFrame]) -> None:
    model = CNNLSTMForecaster(CNNLSTMConfig.quick(epochs=1, batch_size=128, device="cpu")).fit(toy_frames)
    assert model.history_.seconds < 10
    assert len(model.predict(toy_frames["TOY0"])) > 0


def test_learned_state(fitted: CNNLSTMForecaster, small_config: CNNLSTMConfig) -> None:
    assert isinstance(fitted.network_, CNNLSTM)
    assert not fitted.network_.training
    assert fitted.feature_names_ == ["f0", "f1", "f2", "f3", "f4"]
    assert fitted.n_features_in_ == 5
    assert fitted.scaler_mean_.shape == fitted.scaler_std_.shape == (5,)
    assert np.all(fitted.scaler_std_ > 0)
    assert fitted.flat_threshold_ > 0
    assert fitted.ret_scale_ > 0
    assert fitted.temperature_ > 0
    assert fitted.class_weight_.shape == (3,)
    assert fitted.loss_weights_ == (1.0, small_config.regression_weight)
    history = fitted.history_
    assert isinstance(history, TrainingHistory)
    assert 1 <= history.best_epoch <= len(history.epochs) <= small_config.epochs
    assert history.n_fit_windows > 0
    assert history.n_val_windows > 0
    assert all(math.isfinite(e.train_loss) and math.isfinite(e.val_loss) for e in history.epochs)
    assert 0 <= history.val_ece_after <= 1
    assert history.device == "cpu"
    assert history.resumed_from_epoch == 0


def test_predict_columns_index_and_probabilities(
    fitted: CNNLSTMForecaster, toy_frames: dict[str, pd.DataFrame]
) -> None:
    frame = toy_frames["TOY0"]
    pred = fitted.predict(frame)
    cfg = fitted.config
    assert list(pred.columns) == [*PROBA, "pred_return", *(f"emb_{i}" for i in range(cfg.embedding_dim))]
    assert pred.index.name == "ts"
    assert str(pred.index.tz) == "UTC"
    # warm-up rows are NaN, so the first forecast is at the first full finite window
    first_finite = int(np.flatnonzero(frame.drop(columns="close").notna().all(axis=1))[0])
    assert pred.index[0] == frame.index[first_finite + cfg.window - 1]
    assert pred.index[-1] == frame.index[-1]  # the last bar needs no future close to be forecast
    assert len(pred) == len(frame) - first_finite - cfg.window + 1
    np.testing.assert_allclose(pred[PROBA].sum(axis=1), 1.0, rtol=1e-12)
    assert np.isfinite(pred.to_numpy()).all()
    assert pred.equals(fitted.predict(frame.reset_index()))  # a 'ts' column works like the index
    assert fitted.predict_proba(frame).columns.tolist() == PROBA


def test_predict_on_a_frame_shorter_than_a_window_is_empty(
    fitted: CNNLSTMForecaster, toy_frames: dict[str, pd.DataFrame]
) -> None:
    pred = fitted.predict(toy_frames["TOY0"].iloc[20 : 20 + fitted.config.window - 1])
    assert pred.empty
    assert "p_up" in pred.columns


# ---------------------------------------------------------------- no look-ahead


@pytest.mark.parametrize("cut", [150, 400])
def test_predictions_at_t_ignore_everything_after_t(
    fitted: CNNLSTMForecaster, toy_frames: dict[str, pd.DataFrame], cut: int
) -> None:
    frame = toy_frames["TOY1"]
    base = fitted.predict(frame)
    altered = frame.copy()
    rng = np.random.default_rng(cut)
    altered.iloc[cut + 1 :] = rng.normal(5.0, 3.0, altered.iloc[cut + 1 :].shape) ** 2  # features and close
    t = frame.index[cut]
    peek = fitted.predict(altered)
    pd.testing.assert_frame_equal(peek.loc[:t], base.loc[:t], check_exact=True)
    assert not np.allclose(peek.loc[t:].iloc[1:], base.loc[t:].iloc[1:])  # the change did reach later rows
    truncated = fitted.predict(frame.loc[:t])
    pd.testing.assert_frame_equal(truncated, base.loc[:t], rtol=1e-5, atol=1e-6)


def test_close_is_never_a_model_input(fitted: CNNLSTMForecaster, toy_frames: dict[str, pd.DataFrame]) -> None:
    frame = toy_frames["TOY0"]
    shuffled = frame.assign(close=frame["close"].to_numpy()[::-1].copy())
    pd.testing.assert_frame_equal(fitted.predict(shuffled), fitted.predict(frame), check_exact=True)
    pd.testing.assert_frame_equal(
        fitted.predict(frame.drop(columns="close")), fitted.predict(frame), check_exact=True
    )


def test_training_uses_only_the_segment_and_scales_on_the_fit_part(
    small_config: CNNLSTMConfig, toy_frames: dict[str, pd.DataFrame]
) -> None:
    cfg = _fast(small_config)
    segment = {s: f.iloc[:600] for s, f in toy_frames.items()}
    base = CNNLSTMForecaster(cfg).fit(segment)
    # Validation rows (the last ~15% of windows) and bars after the segment end may change freely: the scaler
    # and label threshold are fitted on the fit part only, and no label reads a close after the segment.
    altered = {}
    for symbol, frame in segment.items():
        frame = frame.copy()
        frame.iloc[-60:, :-1] *= 25.0
        altered[symbol] = frame
    other = CNNLSTMForecaster(cfg).fit(altered)
    np.testing.assert_array_equal(other.scaler_mean_, base.scaler_mean_)
    np.testing.assert_array_equal(other.scaler_std_, base.scaler_std_)
    assert other.flat_threshold_ == base.flat_threshold_
    assert other.ret_scale_ == base.ret_scale_
    # the windows of a 600-bar segment never need bar 600: the same fit follows whatever comes later
    longer = {s: f.iloc[:700] for s, f in toy_frames.items()}
    assert base.history_.n_fit_windows < CNNLSTMForecaster(cfg).fit(longer).history_.n_fit_windows
    window, horizon = cfg.window, cfg.horizon
    n_windows = 600 - 5 - window + 1 - horizon  # 5 NaN warm-up rows; the last `horizon` bars have no label
    per_symbol_val = int(n_windows * cfg.val_fraction)
    # the window + horizon - 1 windows before the first validation window are purged: their labels would read
    # closes inside that window's feature rows
    per_symbol_fit = n_windows - per_symbol_val - (window + horizon - 1)
    assert base.history_.n_fit_windows == 2 * per_symbol_fit
    assert base.history_.n_val_windows == 2 * per_symbol_val


# ---------------------------------------------------------------- determinism and persistence


def test_same_seed_gives_bit_identical_predictions(
    small_config: CNNLSTMConfig, train_frames: dict[str, pd.DataFrame], toy_frames: dict[str, pd.DataFrame]
) -> None:
    cfg = _fast(small_config, epochs=2)
    a = CNNLSTMForecaster(cfg).fit(train_frames).predict(toy_frames["TOY0"])
    b = CNNLSTMForecaster(cfg).fit(train_frames).predict(toy_frames["TOY0"])
    c = CNNLSTMForecaster(cfg.replace(seed=cfg.seed + 1)).fit(train_frames).predict(toy_frames["TOY0"])
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    assert not np.allclose(a.to_numpy(), c.to_numpy())


def test_fit_restores_torch_global_state(
    small_config: CNNLSTMConfig, train_frames: dict[str, pd.DataFrame]
) -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    torch.set_num_threads(2)
    try:
        CNNLSTMForecaster(_fast(small_config)).fit(train_frames)  # runs on config.num_threads == 1
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(1)
    assert not torch.are_deterministic_algorithms_enabled()
    torch.testing.assert_close(torch.rand(3), expected)  # the caller's RNG stream is untouched


@pytest.mark.parametrize("as_directory", [False, True])
def test_save_load_round_trip(
    fitted: CNNLSTMForecaster, toy_frames: dict[str, pd.DataFrame], tmp_path: Path, as_directory: bool
) -> None:
    target = tmp_path if as_directory else tmp_path / "model.pt"
    written = fitted.save(target)
    assert written.is_file()
    loaded = CNNLSTMForecaster.load(target)
    assert loaded.config == fitted.config
    assert loaded.feature_names_ == fitted.feature_names_
    assert loaded.history_ == fitted.history_
    np.testing.assert_array_equal(loaded.class_weight_, fitted.class_weight_)
    assert loaded.loss_weights_ == fitted.loss_weights_
    frame = toy_frames["TOY1"]
    pd.testing.assert_frame_equal(loaded.predict(frame), fitted.predict(frame), check_exact=True)


def test_load_errors(tmp_path: Path) -> None:
    with pytest.raises(NotFittedError, match="no saved CNN\\+LSTM model"):
        CNNLSTMForecaster.load(tmp_path / "missing.pt")
    torch.save({"format": "something-else"}, tmp_path / "other.pt")
    with pytest.raises(ModelError, match="not an alphaloom CNN\\+LSTM model"):
        CNNLSTMForecaster.load(tmp_path / "other.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(ModelError, match="not a readable"):
        CNNLSTMForecaster.load(tmp_path / "junk.pt")


def test_load_refuses_inconsistent_files(fitted: CNNLSTMForecaster, tmp_path: Path) -> None:
    payload = torch.load(fitted.save(tmp_path / "m.pt"), weights_only=True)
    torch.save({**payload, "version": 99}, tmp_path / "future.pt")
    with pytest.raises(ModelError, match="format version 99"):
        CNNLSTMForecaster.load(tmp_path / "future.pt")
    torch.save({**payload, "feature_names": ["only_one"]}, tmp_path / "shapes.pt")
    with pytest.raises(ModelError, match="inconsistent"):
        CNNLSTMForecaster.load(tmp_path / "shapes.pt")
    loaded = CNNLSTMForecaster.load(tmp_path / "m.pt", device="cpu")
    assert next(loaded.network_.parameters()).device.type == "cpu"


# ---------------------------------------------------------------- training behaviour


def test_progress_callback_gets_every_epoch(
    small_config: CNNLSTMConfig, train_frames: dict[str, pd.DataFrame]
) -> None:
    calls: list[tuple[int, int, dict[str, float]]] = []
    cfg = _fast(small_config, epochs=2, early_stopping_patience=5)
    CNNLSTMForecaster(cfg).fit(train_frames, progress=lambda e, n, m: calls.append((e, n, m)))
    assert [(e, n) for e, n, _ in calls] == [(1, 2), (2, 2)]
    assert set(calls[0][2]) == {"train_loss", "val_loss", "val_accuracy", "learning_rate", "samples_per_s"}


def test_early_stopping_keeps_the_best_epoch(
    small_config: CNNLSTMConfig, train_frames: dict[str, pd.DataFrame]
) -> None:
    # Pure noise features: validation loss stops improving quickly, training stops, the best weights stay.
    rng = np.random.default_rng(0)
    noise = {
        s: f.assign(**{c: rng.standard_normal(len(f)) for c in f.columns[:-1]})
        for s, f in train_frames.items()
    }
    cfg = small_config.replace(epochs=12, early_stopping_patience=1, learning_rate=2e-2, dropout=0.0)
    history = CNNLSTMForecaster(cfg).fit(noise).history_
    assert history.stopped_early
    losses = [e.val_loss for e in history.epochs]
    assert history.best_epoch == int(np.argmin(losses)) + 1
    assert len(losses) == history.best_epoch + 1


def test_temperature_scaling_calibrates(fitted: CNNLSTMForecaster) -> None:
    history = fitted.history_
    assert fitted.temperature_ > 0
    assert history.val_nll_after <= history.val_nll_before


def test_temperature_recovers_a_known_overconfidence() -> None:
    gen = torch.Generator().manual_seed(0)
    true_logits = torch.randn(4000, 3, generator=gen, dtype=torch.float64) * 1.5
    labels = torch.multinomial(torch.softmax(true_logits, dim=1), 1, generator=gen).squeeze(1)
    temperature, before, after = _fit_temperature(true_logits * 3.0, labels)
    assert temperature == pytest.approx(3.0, rel=0.15)
    assert after < before


def test_without_validation_there_is_no_calibration(
    small_config: CNNLSTMConfig, train_frames: dict[str, pd.DataFrame]
) -> None:
    model = CNNLSTMForecaster(_fast(small_config, val_fraction=0.0)).fit(train_frames)
    assert model.temperature_ == 1.0
    assert model.history_.n_val_windows == 0
    assert math.isnan(model.history_.val_nll_before)


def test_fixed_flat_threshold_is_used(
    small_config: CNNLSTMConfig, train_frames: dict[str, pd.DataFrame]
) -> None:
    model = CNNLSTMForecaster(_fast(small_config, flat_threshold=0.004)).fit(train_frames)
    assert model.flat_threshold_ == 0.004


def test_a_single_frame_and_explicit_feature_columns(
    small_config: CNNLSTMConfig, train_frames: dict[str, pd.DataFrame]
) -> None:
    frame = train_frames["TOY0"].assign(symbol="TOY0")
    model = CNNLSTMForecaster(_fast(small_config)).fit(frame, feature_columns=["f0", "f1"])
    assert model.feature_names_ == ["f0", "f1"]
    assert list(model.predict(frame.drop(columns=["f2", "f3"])).columns[:3]) == PROBA


def test_non_finite_loss_raises_training_error(
    small_config: CNNLSTMConfig, train_frames: dict[str, pd.DataFrame], monkeypatch: pytest.MonkeyPatch
) -> None:
    original = CNNLSTM.forward

    def broken(self: CNNLSTM, x: torch.Tensor):  # type: ignore[no-untyped-def]
        out = original(self, x)
        return out._replace(regression=out.regression * float("nan"))

    monkeypatch.setattr(CNNLSTM, "forward", broken)
    with pytest.raises(TrainingError, match="non-finite training loss"):
        CNNLSTMForecaster(_fast(small_config)).fit(train_frames)


# ---------------------------------------------------------------- bad inputs


def test_predict_and_evaluate_before_fit(
    small_config: CNNLSTMConfig, toy_frames: dict[str, pd.DataFrame]
) -> None:
    model = CNNLSTMForecaster(small_config)
    with pytest.raises(NotFittedError, match="call fit"):
        model.predict(toy_frames["TOY0"])
    with pytest.raises(NotFittedError):
        model.evaluate(toy_frames["TOY0"])
    with pytest.raises(NotFittedError):
        model.save("unused.pt")


def test_missing_feature_columns_are_named(
    fitted: CNNLSTMForecaster, toy_frames: dict[str, pd.DataFrame]
) -> None:
    with pytest.raises(DataFormatError, match=r"\['f1', 'f3'\]"):
        fitted.predict(toy_frames["TOY0"].drop(columns=["f1", "f3"]))


def test_fit_input_errors(small_config: CNNLSTMConfig, train_frames: dict[str, pd.DataFrame]) -> None:
    model = CNNLSTMForecaster(small_config)
    with pytest.raises(EmptyRangeError, match="no training windows"):
        model.fit({"A": train_frames["TOY0"].iloc[:15]})
    with pytest.raises(TrainingError, match="lower batch_size"):
        model.fit({"A": train_frames["TOY0"].iloc[:100]})
    with pytest.raises(DataFormatError, match="same feature columns"):
        model.fit({"A": train_frames["TOY0"], "B": train_frames["TOY1"].drop(columns="f4")})
    with pytest.raises(DataFormatError, match="non-empty"):
        model.fit({})
    with pytest.raises(DataFormatError, match="should be a DataFrame"):
        model.fit({"A": train_frames["TOY0"].to_numpy()})  # type: ignore[dict-item]
    with pytest.raises(DataFormatError, match="'close'"):
        model.fit({"A": train_frames["TOY0"].drop(columns="close")})
    assert not hasattr(model, "network_")


# ---------------------------------------------------------------- can it learn


def test_learns_a_predictable_toy_market_out_of_sample(
    fitted: CNNLSTMForecaster, toy_frames: dict[str, pd.DataFrame], train_frames: dict[str, pd.DataFrame]
) -> None:
    # Returns depend on f0[t] and f1[t-2]; the first forecast scored is at the first bar after the training
    # segment, so nothing scored was trained on.
    train_bars = len(train_frames["TOY0"])
    start = train_bars - fitted.config.window + 1
    test = {s: f.iloc[start:] for s, f in toy_frames.items()}
    metrics = fitted.evaluate(test)
    assert metrics["n"] == 2 * (len(toy_frames["TOY0"]) - train_bars - fitted.config.horizon)
    assert metrics["accuracy"] > 0.5  # three roughly balanced classes: chance is about 1/3
    assert metrics["balanced_accuracy"] > 0.5
    assert metrics["ic"] > 0.4
    assert metrics["rank_ic"] > 0.4
    assert metrics["log_loss"] < math.log(3)
    assert metrics["ece"] < 0.1


def test_evaluate_needs_realised_returns(
    fitted: CNNLSTMForecaster, toy_frames: dict[str, pd.DataFrame]
) -> None:
    with pytest.raises(EmptyRangeError, match="nothing to evaluate"):
        fitted.evaluate(toy_frames["TOY0"].iloc[100 : 100 + fitted.config.window])
