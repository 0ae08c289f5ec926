"""CNN+LSTM training: leakage, purged folds, determinism, checkpoints, losses, devices, calibration, capacity.

Tolerances: determinism, leakage and resume are checked bit for bit (CPU, one thread); calibration and
learning checks compare held-out figures with and without the fitted temperature.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from alphaloom.backtest.walkforward import WalkForwardConfig, walk_forward_splits
from alphaloom.core import ConfigError, DataFormatError
from alphaloom.core.exceptions import TrainingError
from alphaloom.models import CNNLSTMConfig, CNNLSTMForecaster
from alphaloom.models.cnn_lstm import (
    TrainingSet,
    as_frames,
    build_training_set,
    expected_calibration_error,
    make_toy_frames,
)
from alphaloom.models.cnn_lstm.forecaster import _resolve_device, _uses_amp

torch.set_num_threads(1)


def _fast(config: CNNLSTMConfig, **changes: object) -> CNNLSTMConfig:
    return config.replace(**{"epochs": 1, **changes})


def _assert_same_weights(a: CNNLSTMForecaster, b: CNNLSTMForecaster) -> None:
    sa, sb = a.network_.state_dict(), b.network_.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


def _assert_same_training_inputs(a: TrainingSet, b: TrainingSet) -> None:
    # What training reads: every fit and validation window's inputs, labels and targets, and the scaler.
    for ends_a, ends_b in ((a.fit_ends, b.fit_ends), (a.val_ends, b.val_ends)):
        assert len(ends_a) == len(ends_b)
        np.testing.assert_array_equal(a.windows(ends_a), b.windows(ends_b))
    for name in ("fit_labels", "val_labels", "fit_targets", "val_targets", "scaler_mean", "scaler_std"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert a.flat_threshold == b.flat_threshold
    assert a.ret_scale == b.ret_scale
    np.testing.assert_array_equal(a.class_counts, b.class_counts)


def _scramble_after(frame: pd.DataFrame, start: int, seed: int) -> pd.DataFrame:
    # Shuffle the feature rows after `start` and replace the closes with another random walk.
    out = frame.copy()
    rng = np.random.default_rng(seed)
    tail = out.iloc[start:, :-1].to_numpy()
    out.iloc[start:, :-1] = tail[rng.permutation(len(tail))] * 3.0
    out.iloc[start:, -1] = 50.0 * np.exp(np.cumsum(rng.normal(0.0, 0.05, len(out) - start)))
    return out


# ---------------------------------------------------------------- leakage


@pytest.mark.parametrize("end", [500, 777])
def test_bars_after_the_training_rows_never_reach_training(
    small_config: CNNLSTMConfig, toy_frames: dict[str, pd.DataFrame], end: int
) -> None:
    cfg = _fast(small_config, horizon=3)
    segment = {s: f.iloc[:end] for s, f in toy_frames.items()}
    rows = {s: np.arange(end) for s in toy_frames}
    scrambled = {s: _scramble_after(f, end, seed=i) for i, (s, f) in enumerate(toy_frames.items())}
    base = build_training_set(segment, cfg)
    for frames in (toy_frames, scrambled):
        _assert_same_training_inputs(build_training_set(frames, cfg, rows=rows), base)
    # ... so the whole fit is the same, bit for bit
    fitted_base = CNNLSTMForecaster(cfg).fit(segment)
    fitted_scrambled = CNNLSTMForecaster(cfg).fit(scrambled, rows=rows)
    _assert_same_weights(fitted_base, fitted_scrambled)
    assert fitted_scrambled.temperature_ == fitted_base.temperature_
    # no window's label reads a close at or after `end`; the last one reads end - 1
    local_ends = base.fit_ends[base.fit_ends < end]  # the first symbol's rows come first
    assert local_ends.max() + cfg.horizon < end
    assert base.val_ends[base.val_ends < end].max() + cfg.horizon == end - 1


def test_walk_forward_folds_train_only_inside_their_training_rows(small_config: CNNLSTMConfig) -> None:
    cfg = _fast(small_config, horizon=2, batch_size=32)
    frame = make_toy_frames(n_symbols=1, n_bars=900, n_features=4, seed=5)["TOY0"]
    splits = walk_forward_splits(
        len(frame),
        WalkForwardConfig(n_folds=3, test_size=100, label_horizon=cfg.horizon, purge=3, embargo=10),
    )
    assert len(splits[-1].embargoed_idx) > 0  # the last fold's training rows have a hole
    for fold in splits:
        data = build_training_set(frame, cfg, rows=fold.train_idx)
        train = set(fold.train_idx.tolist())
        for t in np.concatenate([data.fit_ends, data.val_ends]).tolist():
            span = range(t - cfg.window + 1, t + cfg.horizon + 1)  # the window's inputs and its label
            assert train.issuperset(span), f"window ending at {t} reads rows outside the fold's training rows"
        # everything outside the training rows (test, purged, embargoed, later) may change freely
        altered = frame.copy()
        outside = np.setdiff1d(np.arange(len(frame)), fold.train_idx)
        altered.iloc[outside, :-1] = -altered.iloc[outside, :-1].to_numpy() * 7.0
        altered.iloc[outside, -1] = altered.iloc[outside, -1].to_numpy()[::-1] * 1.5
        _assert_same_training_inputs(build_training_set(altered, cfg, rows=fold.train_idx), data)
    # the harness then forecasts the test rows, reading the lookback rows before them
    fold = splits[0]
    model = CNNLSTMForecaster(cfg).fit(frame, rows=fold.train_idx)
    assert model.lookback == cfg.window - 1
    assert model.label_horizon == cfg.horizon
    pred = model.predict(frame, rows=fold.test_idx)
    assert pred.index.equals(frame.index[fold.test_idx])
    full = model.predict(frame)
    pd.testing.assert_frame_equal(pred, full.loc[pred.index], rtol=1e-5, atol=1e-6)
    metrics = model.evaluate(frame, rows=fold.test_idx)
    assert metrics["n"] == len(fold.test_idx)


def test_rows_are_checked(small_config: CNNLSTMConfig, train_frames: dict[str, pd.DataFrame]) -> None:
    cfg = _fast(small_config)
    with pytest.raises(DataFormatError, match=r"must lie in \[0, 900\)"):
        build_training_set(train_frames, cfg, rows={s: np.arange(901) for s in train_frames})
    with pytest.raises(DataFormatError, match="one entry per row"):
        build_training_set(train_frames, cfg, rows={s: np.ones(5, dtype=bool) for s in train_frames})
    with pytest.raises(DataFormatError, match=r"missing \['TOY1'\]"):
        build_training_set(train_frames, cfg, rows={"TOY0": np.arange(900)})
    with pytest.raises(DataFormatError, match="mapping"):
        build_training_set(train_frames, cfg, rows=np.arange(900))
    with pytest.raises(DataFormatError, match="integer row positions"):
        build_training_set(train_frames["TOY0"], cfg, rows=np.linspace(0, 1, 10))
    mask = np.zeros(900, dtype=bool)
    mask[:400] = True
    by_mask = build_training_set(train_frames["TOY0"], cfg, rows=mask)
    _assert_same_training_inputs(by_mask, build_training_set(train_frames["TOY0"], cfg, rows=np.arange(400)))


def test_rows_no_window_reads_are_blank(
    small_config: CNNLSTMConfig, train_frames: dict[str, pd.DataFrame]
) -> None:
    data = build_training_set(train_frames, small_config)
    read = np.zeros(len(data.values), dtype=bool)
    for t in np.concatenate([data.fit_ends, data.val_ends]):
        read[t - data.window + 1 : t + 1] = True
    assert np.isnan(data.values[~read]).all()  # warm-up rows and the purge gap before validation
    assert np.isfinite(data.values[read]).all()
    assert (~read).sum() > 0


def test_a_long_panel_frame_trains_like_a_mapping(
    small_config: CNNLSTMConfig, train_frames: dict[str, pd.DataFrame]
) -> None:
    cfg = _fast(small_config)
    panel = pd.concat([f.reset_index().assign(symbol=s) for s, f in train_frames.items()], ignore_index=True)
    assert list(as_frames(panel)) == ["TOY0", "TOY1"]
    from_panel = CNNLSTMForecaster(cfg).fit(panel)
    from_mapping = CNNLSTMForecaster(cfg).fit(train_frames)
    _assert_same_weights(from_panel, from_mapping)
    assert from_panel.feature_names_ == from_mapping.feature_names_
    with pytest.raises(DataFormatError, match="one symbol's frame"):
        from_panel.predict(panel)
    assert from_panel.evaluate(panel) == from_mapping.evaluate(train_frames)


# ---------------------------------------------------------------- determinism and checkpoints


@pytest.mark.parametrize("weighting", ["fixed", "uncertainty"])
def test_same_seed_gives_bit_identical_weights(
    small_config: CNNLSTMConfig, train_frames: dict[str, pd.DataFrame], weighting: str
) -> None:
    cfg = _fast(small_config, epochs=2, loss_weighting=weighting)
    a = CNNLSTMForecaster(cfg).fit(train_frames)
    b = CNNLSTMForecaster(cfg).fit(train_frames)
    _assert_same_weights(a, b)
    assert a.loss_weights_ == b.loss_weights_
    assert a.temperature_ == b.temperature_
    pd.testing.assert_frame_equal(
        a.predict(train_frames["TOY1"]), b.predict(train_frames["TOY1"]), check_exact=True
    )


class _Interrupt(Exception):
    pass


@pytest.mark.parametrize("weighting", ["fixed", "uncertainty"])
def test_resuming_a_checkpoint_ends_with_the_uninterrupted_weights(
    small_config: CNNLSTMConfig, train_frames: dict[str, pd.DataFrame], tmp_path: Path, weighting: str
) -> None:
    cfg = small_config.replace(epochs=4, early_stopping_patience=4, loss_weighting=weighting)
    reference = CNNLSTMForecaster(cfg).fit(train_frames)

    def crash_after_two(epoch: int, n_epochs: int, metrics: dict[str, float]) -> None:
        if epoch == 2:
            raise _Interrupt

    with pytest.raises(_Interrupt):
        CNNLSTMForecaster(cfg).fit(train_frames, progress=crash_after_two, checkpoint_dir=tmp_path)
    assert (tmp_path / "checkpoint.pt").is_file()
    seen: list[int] = []
    resumed = CNNLSTMForecaster(cfg).fit(
        train_frames, progress=lambda e, n, m: seen.append(e), checkpoint_dir=tmp_path
    )
    assert seen == [3, 4]  # only the epochs after the checkpoint ran
    assert resumed.history_.resumed_from_epoch == 2
    _assert_same_weights(resumed, reference)
    assert resumed.temperature_ == reference.temperature_
    assert resumed.loss_weights_ == reference.loss_weights_
    strip = [
        (e.epoch, e.train_loss, e.val_loss, e.val_accuracy, e.learning_rate)
        for e in reference.history_.epochs
    ]
    assert [
        (e.epoch, e.train_loss, e.val_loss, e.val_accuracy, e.learning_rate) for e in resumed.history_.epochs
    ] == strip

    # a finished checkpoint is not trained again
    seen.clear()
    again = CNNLSTMForecaster(cfg).fit(
        train_frames, progress=lambda e, n, m: seen.append(e), checkpoint_dir=tmp_path
    )
    assert seen == []
    _assert_same_weights(again, reference)


def test_a_checkpoint_of_another_run_is_refused(
    small_config: CNNLSTMConfig, train_frames: dict[str, pd.DataFrame], tmp_path: Path
) -> None:
    cfg = _fast(small_config)
    CNNLSTMForecaster(cfg).fit(train_frames, checkpoint_dir=tmp_path)
    with pytest.raises(TrainingError, match="another config or other training data"):
        CNNLSTMForecaster(cfg.replace(seed=cfg.seed + 1)).fit(train_frames, checkpoint_dir=tmp_path)
    shorter = {s: f.iloc[:-50] for s, f in train_frames.items()}
    with pytest.raises(TrainingError, match="delete it"):
        CNNLSTMForecaster(cfg).fit(shorter, checkpoint_dir=tmp_path)
    (tmp_path / "checkpoint.pt").write_bytes(b"garbage")
    with pytest.raises(TrainingError, match="cannot read the checkpoint"):
        CNNLSTMForecaster(cfg).fit(train_frames, checkpoint_dir=tmp_path)


# ---------------------------------------------------------------- losses, weights and devices


def test_class_weights_follow_the_config(
    small_config: CNNLSTMConfig, train_frames: dict[str, pd.DataFrame]
) -> None:
    # A wide fixed flat band makes flat the majority class.
    cfg = _fast(small_config, flat_threshold=0.01)
    counts = build_training_set(train_frames, cfg).class_counts
    assert counts[1] > counts[0]
    assert counts[1] > counts[2]
    balanced = counts.sum() / (3 * counts)
    fitted = {
        w: CNNLSTMForecaster(cfg.replace(class_weight=w)).fit(train_frames)
        for w in ("balanced", "sqrt", "none")
    }
    np.testing.assert_allclose(fitted["balanced"].class_weight_, balanced, rtol=1e-12)
    np.testing.assert_allclose(fitted["sqrt"].class_weight_, np.sqrt(balanced), rtol=1e-12)
    np.testing.assert_array_equal(fitted["none"].class_weight_, np.ones(3))
    # (counts * weights) is the same for every class under "balanced": each class carries a third of the loss
    np.testing.assert_allclose(counts * fitted["balanced"].class_weight_, counts.sum() / 3, rtol=1e-12)


def test_uncertainty_weighting_learns_the_task_weights(
    small_config: CNNLSTMConfig, train_frames: dict[str, pd.DataFrame]
) -> None:
    fixed = CNNLSTMForecaster(_fast(small_config, regression_weight=0.25)).fit(train_frames)
    assert fixed.loss_weights_ == (1.0, 0.25)
    learned = CNNLSTMForecaster(_fast(small_config, epochs=2, loss_weighting="uncertainty")).fit(train_frames)
    w_cls, w_reg = learned.loss_weights_
    assert all(math.isfinite(w) and w > 0 for w in (w_cls, w_reg))
    assert (w_cls, w_reg) != (1.0, 0.5)  # moved away from the initial exp(0), exp(0) / 2
    assert "log_vars" not in "".join(learned.network_.state_dict())  # training state only, not the model


def test_training_runs_on_the_cpu_here(
    small_config: CNNLSTMConfig, train_frames: dict[str, pd.DataFrame]
) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA; device='auto' picks it")
    model = CNNLSTMForecaster(_fast(small_config, device="auto")).fit(train_frames)
    assert model.history_.device == "cpu"
    assert model.history_.mixed_precision is False
    assert next(model.network_.parameters()).device.type == "cpu"


def test_naming_cuda_without_a_gpu_is_a_clear_error(
    small_config: CNNLSTMConfig, train_frames: dict[str, pd.DataFrame], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for device in ("cuda", "cuda:1"):
        with pytest.raises(ConfigError, match=r"CUDA is not available.*device='auto'.*'cpu'"):
            CNNLSTMForecaster(_fast(small_config, device=device)).fit(train_frames)
    assert _resolve_device("auto").type == "cpu"


def test_mixed_precision_is_chosen_for_cuda_only(small_config: CNNLSTMConfig) -> None:
    assert _uses_amp(small_config, torch.device("cuda"))
    assert _uses_amp(small_config, torch.device("cuda:0"))
    assert not _uses_amp(small_config, torch.device("cpu"))
    assert not _uses_amp(small_config.replace(mixed_precision=False), torch.device("cuda"))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_mixed_precision_training(
    small_config: CNNLSTMConfig, train_frames: dict[str, pd.DataFrame], tmp_path: Path
) -> None:
    model = CNNLSTMForecaster(small_config.replace(device="cuda")).fit(train_frames, checkpoint_dir=tmp_path)
    assert model.history_.device.startswith("cuda")
    assert model.history_.mixed_precision is True
    assert all(math.isfinite(e.val_loss) for e in model.history_.epochs)
    assert model.evaluate(train_frames)["accuracy"] > 0.45
    on_cpu = CNNLSTMForecaster.load(model.save(tmp_path / "m.pt"), device="cpu")
    pd.testing.assert_frame_equal(
        on_cpu.predict(train_frames["TOY0"]), model.predict(train_frames["TOY0"]), rtol=1e-3, atol=1e-4
    )


# ---------------------------------------------------------------- can it learn


def test_overfits_a_tiny_batch_of_noise(small_config: CNNLSTMConfig) -> None:
    # Labels of pure noise can only be learned by memorising: 67 windows, 40 epochs of four steps.
    frames = make_toy_frames(n_symbols=1, n_bars=80, n_features=4, seed=0, signal=0.0)
    cfg = CNNLSTMConfig(
        window=8,
        kernel_sizes=(2, 3),
        conv_channels=8,
        attention_heads=2,
        lstm_hidden=16,
        lstm_layers=1,
        embedding_dim=8,
        epochs=40,
        batch_size=16,
        learning_rate=1e-2,
        dropout=0.0,
        weight_decay=0.0,
        val_fraction=0.0,
        device="cpu",
    )
    model = CNNLSTMForecaster(cfg).fit(frames)
    losses = [e.train_loss for e in model.history_.epochs]
    assert losses[-1] < 0.05 * losses[0]
    metrics = model.evaluate(frames)
    assert metrics["n"] == model.history_.n_fit_windows
    assert metrics["accuracy"] == 1.0
    assert metrics["ic"] > 0.9


# ---------------------------------------------------------------- calibration


def test_expected_calibration_error() -> None:
    proba = np.array([[0.9, 0.05, 0.05], [0.9, 0.05, 0.05], [0.2, 0.5, 0.3], [0.2, 0.5, 0.3]])
    # bin of 0.9: accuracy 1/2, confidence 0.9; bin of 0.5: accuracy 1/2, confidence 0.5
    assert expected_calibration_error(proba, np.array([0, 1, 1, 2])) == pytest.approx(0.5 * 0.4 + 0.5 * 0.0)
    assert expected_calibration_error(np.eye(3), np.arange(3)) == 0.0
    assert math.isnan(expected_calibration_error(np.empty((0, 3)), np.empty(0, dtype=int)))


def _held_out_calibration(model: CNNLSTMForecaster, frames: object, rows: object = None) -> tuple[dict, dict]:
    calibrated = model.evaluate(frames, rows=rows)
    temperature = model.temperature_
    model.temperature_ = 1.0
    try:
        raw = model.evaluate(frames, rows=rows)
    finally:
        model.temperature_ = temperature
    return raw, calibrated


def test_temperature_scaling_calibrates_held_out_toy_forecasts() -> None:
    # A small noisy market and a wide network without dropout: the kept epoch is overconfident. The
    # temperature fitted on the validation windows must improve forecasts on later bars it never saw.
    frames = make_toy_frames(n_symbols=2, n_bars=1600, n_features=5, seed=1)
    train = {s: f.iloc[:400] for s, f in frames.items()}
    test = {s: f.iloc[400 - 11 :] for s, f in frames.items()}
    cfg = CNNLSTMConfig(
        window=12,
        kernel_sizes=(2, 3, 5),
        conv_channels=16,
        attention_heads=2,
        lstm_hidden=32,
        embedding_dim=16,
        epochs=20,
        batch_size=32,
        learning_rate=1e-2,
        dropout=0.0,
        weight_decay=0.0,
        early_stopping_patience=20,
        val_fraction=0.3,
        seed=1,
        device="cpu",
    )
    model = CNNLSTMForecaster(cfg).fit(train)
    history = model.history_
    assert model.temperature_ > 1.1  # overconfident: the logits are softened
    assert history.val_nll_after < history.val_nll_before
    raw, calibrated = _held_out_calibration(model, test)
    assert calibrated["n"] == 2 * (1200 - cfg.horizon)  # every later bar with a realised return
    assert calibrated["log_loss"] < raw["log_loss"]
    assert calibrated["ece"] < raw["ece"]
    assert calibrated["accuracy"] == raw["accuracy"]  # a temperature never changes the predicted class


def test_temperature_scaling_calibrates_held_out_forecasts_on_real_data() -> None:
    # Shipped daily US equities through the feature pipeline: train on each symbol's first 60 %, score the
    # rest. On these the network is underconfident (T < 1); either way the held-out forecasts improve.
    from alphaloom.data.sample import load_sample
    from alphaloom.features import FeatureEngineer

    bars = load_sample("us_equities_daily")
    bars = bars[bars["symbol"].isin(["AAPL", "IBM", "QQQ", "SPY"])]
    panel = (
        FeatureEngineer().transform_panel(bars).merge(bars[["symbol", "ts", "close"]], on=["symbol", "ts"])
    )
    frames = as_frames(panel)
    cut = {s: int(len(f) * 0.6) for s, f in frames.items()}
    model = CNNLSTMForecaster(
        CNNLSTMConfig.quick(epochs=6, batch_size=128, early_stopping_patience=2, seed=2, device="cpu")
    ).fit(panel, rows={s: np.arange(cut[s]) for s in frames})
    assert model.temperature_ != 1.0
    assert model.history_.val_nll_after < model.history_.val_nll_before
    test_rows = {s: np.arange(cut[s], len(f)) for s, f in frames.items()}
    raw, calibrated = _held_out_calibration(model, panel, test_rows)
    assert calibrated["n"] > 8000
    assert calibrated["log_loss"] < raw["log_loss"]
    assert calibrated["ece"] < raw["ece"]


@pytest.mark.parametrize("total_steps", list(range(1, 14)))
def test_learning_rate_schedule_works_for_any_number_of_steps(total_steps: int) -> None:
    # A short walk-forward fold can leave only a few optimiser steps; OneCycleLR divides by zero at 4.
    from alphaloom.models.cnn_lstm.forecaster import _lr_schedule

    param = torch.nn.Parameter(torch.zeros(1))
    optimiser = torch.optim.AdamW([param], lr=1e-3)
    schedule = _lr_schedule(optimiser, 1e-3, total_steps)
    rates = []
    for _ in range(total_steps):
        optimiser.step()
        schedule.step()
        rates.append(optimiser.param_groups[0]["lr"])
    assert all(0.0 < r <= 1e-3 for r in rates[:-1])
