"""CNN+LSTM compression: accuracy and latency of pruning next to int8 dynamic quantisation.

Model: the default architecture (``CNNLSTMConfig()``: window 32, kernels 3/5/7/11 x 16 channels, one residual
block with time stride 2, 4-head attention, 2-layer bidirectional LSTM of 32 units, embedding 16), trained on
the shipped real daily bars of SPY, EURUSD and BTCUSD with the default feature set: each symbol's first 70%
of bars fit the model, its last 30% are the holdout (forecasts there read earlier bars only as inputs).

Variants, each scored on the holdout (log loss in nats, accuracy, macro F1 over down/flat/up) and timed:

- ``dense``: the trained model;
- ``int8``: dynamic int8 quantisation of its Linear and LSTM layers (``Predictor(backend="quantized")``);
- ``layer50`` / ``layer80``: 50% / 80% of every weight matrix zeroed by magnitude (layer scope), then
  fine-tuned for ``FT_EPOCHS`` epochs on the fit bars with the zeros held;
- ``global50`` / ``global80``: the same with one magnitude ranking across all layers;
- ``chan25`` / ``chan50``: 25% / 50% of the convolution channels removed (the layers shrink), fine-tuned.

Pruned variants are also scored before fine-tuning (``*_prune_only``), so the table shows what fine-tuning
recovers. Latency: median of ``Predictor.predict_windows`` (raw features in, calibrated probabilities out)
at batch 1 (``--quick``: 400 calls, else 2,000) and batch 64 (40 or 200 calls), eager PyTorch, one thread,
all variants in this one process, measured round-robin in 4 (10) rounds so that load from other processes
falls on every variant alike. Ratios are against the dense model: accuracy and F1
as differences, log loss and latency as ratios.

FLOPs per sample: the dense model's analytic count (``bench/models.py``, LSTM and attention included) less
the convolutions and projections torch's FlopCounterMode sees in the dense network plus those it sees in the
variant: exact for structured pruning, which changes only convolutions. Unstructured pruning keeps dense
tensor shapes and dense kernels, so its FLOPs and latency are the dense model's (no sparse kernels here);
structured pruning removes work from the convolutions only, a minority of the FLOPs at this size (the
attention and the LSTM are the rest), which bounds its speed-up. On a shared machine, latency differences
within the spread between repeated runs are noise: ``machine/load_1min`` says how busy it was.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from _common import Figures, parse_args

SYMBOLS = ("SPY", "EURUSD", "BTCUSD")
FIT_SHARE = 0.7
FT_EPOCHS = 3
FT_LR = 1e-3


def _frames() -> dict[str, pd.DataFrame]:
    from alphaloom.data.sample import load_sample
    from alphaloom.features import FeatureEngineer
    from alphaloom.features.pipeline import FeatureConfig

    bars = pd.concat([load_sample([s]) for s in ("us_equities_daily", "fx_daily", "crypto_daily")])
    bars = bars[bars["symbol"].isin(SYMBOLS)].sort_values(["symbol", "ts"]).reset_index(drop=True)
    features = FeatureEngineer(FeatureConfig()).transform_panel(bars)
    out = {}
    for sym in SYMBOLS:
        f = features[features["symbol"] == sym].drop(columns="symbol").set_index("ts")
        close = bars[bars["symbol"] == sym].set_index("ts")["close"]
        out[sym] = f.assign(close=close.reindex(f.index).to_numpy())
    return out


def _scores(model: Any, predictor: Any, frames: dict[str, pd.DataFrame]) -> dict[str, float]:
    from sklearn.metrics import f1_score

    from alphaloom.models.cnn_lstm.dataset import class_labels, forward_log_return

    probas, labels = [], []
    for frame in frames.values():
        cut = int(len(frame) * FIT_SHARE)
        realised = pd.Series(
            forward_log_return(frame["close"].to_numpy(), model.config.horizon), index=frame.index
        )
        pred = predictor.predict(frame)
        pred = pred[pred.index >= frame.index[cut + model.config.horizon]]  # labels after the fit's last
        r = realised.reindex(pred.index)
        keep = r.notna().to_numpy()
        probas.append(pred[["p_down", "p_flat", "p_up"]].to_numpy()[keep])
        labels.append(class_labels(r.to_numpy()[keep], model.flat_threshold_))
    p, y = np.concatenate(probas), np.concatenate(labels)
    guess = p.argmax(axis=1)
    return {
        "log_loss": float(-np.mean(np.log(np.clip(p[np.arange(len(y)), y], 1e-12, 1.0)))),
        "accuracy": float(np.mean(guess == y)),
        "f1_macro": float(f1_score(y, guess, average="macro", labels=[0, 1, 2], zero_division=0)),
        "n": float(len(y)),
    }


def _latencies(
    predictors: dict[str, Any], window: int, n_features: int, calls: int, repeats: int, rounds: int
) -> dict[str, tuple[float, float]]:
    """Median batch-1 and batch-64 latency (ms) of each predictor, measured round-robin in ``rounds`` rounds
    so that load from other processes on a shared machine falls on every variant alike."""
    rng = np.random.default_rng(0)
    one = rng.normal(size=(1, window, n_features))
    many = rng.normal(size=(64, window, n_features))
    b1: dict[str, list[float]] = {name: [] for name in predictors}
    b64: dict[str, list[float]] = {name: [] for name in predictors}
    for _ in range(rounds):
        for name, predictor in predictors.items():
            for _ in range(20):
                predictor.predict_windows(one)
            for _ in range(max(1, calls // rounds)):
                t0 = time.perf_counter_ns()
                predictor.predict_windows(one)
                b1[name].append((time.perf_counter_ns() - t0) / 1e6)
            predictor.predict_windows(many)
            for _ in range(max(1, repeats // rounds)):
                t0 = time.perf_counter_ns()
                predictor.predict_windows(many)
                b64[name].append((time.perf_counter_ns() - t0) / 1e6)
    return {name: (float(np.median(b1[name])), float(np.median(b64[name]))) for name in predictors}


def _counted_mflop(model: Any, n_features: int) -> float:
    """Forward MFLOP per sample that torch's FlopCounterMode sees: the convolutions and the linear layers
    (it misses the LSTM and the fused attention product, which pruning does not touch)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    network = model.network_
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        network(torch.zeros(1, model.config.window, n_features))
    return counter.get_total_flops() / 1e6


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    import torch

    from alphaloom.models import CNNLSTMConfig, CNNLSTMForecaster
    from alphaloom.models.cnn_lstm.export import Predictor
    from alphaloom.models.cnn_lstm.prune import (
        fine_tune,
        parameter_count,
        prune_channels,
        prune_magnitude,
        sparsity,
    )

    torch.set_num_threads(1)
    calls, repeats, rounds = (400, 40, 4) if args.quick else (2000, 200, 10)
    started = time.perf_counter()
    frames = _frames()
    fit = {s: f.iloc[: int(len(f) * FIT_SHARE)] for s, f in frames.items()}
    config = CNNLSTMConfig(device="cpu", seed=0, epochs=3 if args.quick else 8)
    dense = CNNLSTMForecaster(config).fit(fit)
    n_features = dense.n_features_in_

    variants: dict[str, tuple[Any, str]] = {}
    notes: dict[str, str] = {}
    fine_s: dict[str, float] = {}
    pruners = {
        "layer50": lambda m: prune_magnitude(m, 0.5),
        "layer80": lambda m: prune_magnitude(m, 0.8),
        "global50": lambda m: prune_magnitude(m, 0.5, scope="global"),
        "global80": lambda m: prune_magnitude(m, 0.8, scope="global"),
        "chan25": lambda m: prune_channels(m, 0.25),
        "chan50": lambda m: prune_channels(m, 0.5),
    }
    figs = Figures(
        f"CNN+LSTM compression on real daily bars ({', '.join(SYMBOLS)}; {n_features} features, window "
        f"{config.window}; holdout = last {1 - FIT_SHARE:.0%} of each symbol)"
    )
    variants["dense"] = (dense, "eager")
    variants["int8"] = (dense, "quantized")
    for name, prune in pruners.items():
        pruned = prune(dense)
        only = _scores(pruned, Predictor(pruned), frames)
        for key in ("log_loss", "accuracy", "f1_macro"):
            figs.add(name, f"{key}_prune_only", only[key], "", "before fine-tuning")
        tuned, history = fine_tune(pruned, fit, epochs=FT_EPOCHS, learning_rate=FT_LR)
        fine_s[name] = history.seconds
        variants[name] = (tuned, "eager")
        notes[name] = (
            f"sparsity {sparsity(tuned):.2f}, {parameter_count(tuned):,} params; fit objective "
            f"{history.loss_before:.3f} -> {history.epoch_losses[-1]:.3f} in {FT_EPOCHS} epochs"
        )

    from models import model_flops  # bench/models.py: the dense model's analytic FLOPs, LSTM included

    dense_mflop = sum(model_flops(config, n_features).values()) / 1e6
    dense_counted = _counted_mflop(dense, n_features)
    predictors = {
        name: Predictor(model, backend=backend, num_threads=1, batch_size=64)
        for name, (model, backend) in variants.items()
    }
    latency = _latencies(predictors, config.window, n_features, calls, repeats, rounds)
    base: dict[str, float] = {}
    for name, (model, _) in variants.items():
        s = _scores(model, predictors[name], frames)
        b1, b64 = latency[name]
        s |= {"b1_p50_ms": b1, "b64_ms": b64}
        if name == "dense":
            base = s
        note = notes.get(
            name, f"{parameter_count(model):,} params" if name == "dense" else "Linear+LSTM int8"
        )
        figs.add(name, "log_loss", s["log_loss"], "nats", f"{int(s['n'])} holdout windows; {note}")
        figs.add(name, "accuracy", s["accuracy"], "")
        figs.add(name, "f1_macro", s["f1_macro"], "")
        # Structured pruning changes only what the counter sees; the rest of the model's FLOPs stay.
        mflop = dense_mflop - dense_counted + _counted_mflop(model, n_features)
        figs.add(name, "mflop", mflop, "MFLOP", "per sample, forward; dense kernels for zeros")
        figs.add(name, "b1_p50_ms", b1, "ms", "batch 1, eager, 1 thread")
        figs.add(name, "b64_ms", b64, "ms", "batch 64")
        if name != "dense":
            figs.add(name, "log_loss_vs_dense", s["log_loss"] / base["log_loss"], "x")
            figs.add(name, "accuracy_vs_dense", s["accuracy"] - base["accuracy"], "", "difference")
            figs.add(name, "f1_vs_dense", s["f1_macro"] - base["f1_macro"], "", "difference")
            figs.add(name, "flops_vs_dense", mflop / dense_mflop, "x")
            figs.add(name, "b1_speedup", base["b1_p50_ms"] / b1, "x", "dense latency / this latency")
            figs.add(name, "b64_speedup", base["b64_ms"] / b64, "x")
        if name in fine_s:
            figs.add(name, "fine_tune_s", fine_s[name], "s")
    figs.add(
        "machine",
        "load_1min",
        os.getloadavg()[0],
        "",
        f"{os.cpu_count()} cores; {time.perf_counter() - started:.0f} s run; dense fit "
        f"{dense.history_.seconds:.0f} s, {dense.history_.n_fit_windows} windows",
    )
    figs.emit(args.json)


if __name__ == "__main__":
    main()
