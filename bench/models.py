"""CNN+LSTM inference and training speed: eager, TorchScript, int8 and ONNX Runtime, on 1 and 2 threads.

Model: the default architecture, ``CNNLSTMConfig(window=64)`` with 32 input features, every other value the
config's default (kernels 3/5/7/11 x 16 channels = width 64, one residual block with time stride 2, so 33
steps for the 4-head attention and the 2-layer bidirectional LSTM of 32 units per direction, embedding 16,
training batch 256). Weights are random (seeded): speed does not depend on them.

Measured, each backend in its own fresh subprocess (ONNX Runtime and PyTorch thread pools never share a
process: on 2 cores they were measured slowing each other down by up to 100x), at 1 and 2 threads:

- batch-1 latency p50 and p99 of ``Predictor.predict_windows`` over 2,000 calls after 300 warm-up calls
  (raw features in, calibrated probabilities out; the raw engine call's p50 is in the note);
- batch-256 throughput in samples/s (median of 15 calls after a warm-up) and the FLOP rate it implies;
- training samples/s of ``CNNLSTMForecaster.fit`` (forward, backward, gradient clipping, fused AdamW step;
  best epoch, on toy frames of 32 features) and its FLOP rate, counting a training step as 3x forward;
- the machine's fp32 matmul rate in the same run (512 x 512 x 512 and the model's LSTM input projection
  shape, 8,448 x 64 x 256). The FLOP-rate ratios divide by the 512 x 512 rate measured again in each worker
  right after its model measurement (once the ONNX Runtime work is over), so both see the same load from
  other processes: on a shared 2-core machine it moves from minute to minute;
- dynamic int8 quantisation's effect on the trained model's held-out forecasts (top-class agreement,
  largest probability change, accuracy before and after).

FLOPs per sample are counted analytically (2 per multiply-add; convolutions, projections, attention
``QK^T`` and ``AV``, LSTM gates per step per direction per layer, pooling and heads; elementwise work left
out), because PyTorch's FLOP counter misses the LSTM and fused-attention matmuls; the counter's figure for
the rest is printed next to ours as a check.

Targets (issue), one thread: batch-1 p99 <= 1.0 ms; batch-256 inference and training >= 0.5x the measured
matmul rate. ``--quick`` uses 300 latency calls and 3 repeats (a smoke run, not figures to quote).

Pruning (magnitude and structured channel pruning with fine-tuning) is measured next to int8 in
``bench/pruning.py``, on a model trained on the shipped real bars, with holdout accuracy.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import Figures, parse_args

N_FEATURES = 32
WINDOW = 64
BATCH = 256
THREADS = (1, 2)
BACKENDS = ("eager", "torchscript", "quantized", "onnx")
P99_TARGET_MS = 1.0
RATE_TARGET = 0.5
REPO = Path(__file__).resolve().parent.parent


def model_flops(config: Any, n_features: int) -> dict[str, int]:
    """Forward FLOPs per sample of ``CNNLSTM(config, n_features)`` by component (2 per multiply-add)."""
    w, t = config.conv_width, config.sequence_length
    h, e = config.lstm_hidden, config.embedding_dim
    flops = {
        "conv_branches": sum(
            2 * n_features * config.conv_channels * k * config.window for k in config.kernel_sizes
        )
    }
    blocks, length = 0, config.window
    for i in range(config.conv_blocks):
        stride = config.block_stride if i == 0 else 1
        out = length if stride == 1 else -(-(length - 1) // stride) + 1  # end-aligned downsampling
        k = min(3, config.window)
        blocks += 2 * (2 * w * w * k * out) + 2 * w * w * out  # two k-convs and the 1x1 skip
        length = out
    flops["residual_blocks"] = blocks
    flops["attention"] = 2 * t * w * 3 * w + 2 * (2 * t * t * w) + 2 * t * w * w
    flops["lstm"] = sum(
        2 * t * 2 * (4 * h) * ((w if layer == 0 else 2 * h) + h) for layer in range(config.lstm_layers)
    )
    flops["pool_and_heads"] = 2 * (2 * t * 2 * h) + 2 * 4 * h * e + 2 * e * 3 + 2 * e
    return flops


# ---------------------------------------------------------------------------------------------- workers


def _network() -> Any:
    import torch

    from alphaloom.models import CNNLSTM, CNNLSTMConfig

    torch.manual_seed(0)
    return CNNLSTM(CNNLSTMConfig(window=WINDOW, device="cpu"), N_FEATURES).eval()


def _percentiles_ms(fn: Any, calls: int, warmup: int) -> tuple[float, float]:
    for _ in range(warmup):
        fn()
    times = np.empty(calls)
    clock = time.perf_counter_ns
    for i in range(calls):
        t0 = clock()
        fn()
        times[i] = clock() - t0
    return float(np.percentile(times, 50) / 1e6), float(np.percentile(times, 99) / 1e6)


def _median_s(fn: Any, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def _matmul_gflops(m: int, k: int, n: int, repeats: int) -> float:
    import torch

    a, b, c = torch.randn(m, k), torch.randn(k, n), torch.empty(m, n)
    inner = max(5, int(1e9 / (2 * m * k * n)))  # about 1 GFLOP a sample

    def run() -> None:
        for _ in range(inner):
            torch.mm(a, b, out=c)

    return 2 * m * k * n * inner / _median_s(run, repeats) / 1e9


def work_export(spec: dict[str, Any]) -> dict[str, Any]:
    import torch

    from alphaloom.models.cnn_lstm.export import export_onnx

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    export_onnx(_network(), spec["path"])
    return {"seconds": time.perf_counter() - t0}


def _serve(spec: dict[str, Any]) -> dict[str, Any]:
    import torch

    from alphaloom.models.cnn_lstm.export import INPUT_NAME, Predictor

    backend, threads = spec["backend"], spec["threads"]
    if backend == "onnx":  # torch runs nothing in this process until the ONNX Runtime work is over
        predictor = Predictor.load(spec["path"], num_threads=threads, batch_size=BATCH)
        session = predictor._session
        assert session is not None

        def raw(x: np.ndarray) -> object:
            return session.run(None, {INPUT_NAME: x})
    else:
        predictor = Predictor(_network(), backend=backend, num_threads=threads, batch_size=BATCH)
        module = predictor._torch

        def raw(x: np.ndarray) -> object:
            with torch.inference_mode():
                return module(torch.from_numpy(x))

    rng = np.random.default_rng(0)
    one = rng.normal(size=(1, WINDOW, N_FEATURES))
    many = rng.normal(size=(BATCH, WINDOW, N_FEATURES))
    p50, p99 = _percentiles_ms(lambda: predictor.predict_windows(one), spec["calls"], spec["warmup"])
    raw_p50, _ = _percentiles_ms(lambda: raw(one), spec["calls"] // 2, spec["warmup"])
    seconds = _median_s(lambda: predictor.predict_windows(many), spec["repeats"])
    return {
        "p50_ms": p50,
        "p99_ms": p99,
        "raw_p50_ms": raw_p50,
        "samples_per_s": BATCH / seconds,
        "load": os.getloadavg()[0],
    }


def work_latency(spec: dict[str, Any]) -> dict[str, Any]:
    import torch

    torch.set_num_threads(spec["threads"])
    out = _serve(spec)  # the predictor, and with it any ONNX Runtime session, is gone on return
    out["matmul_gflops"] = _matmul_gflops(512, 512, 512, spec["repeats"])
    return out


def work_matmul(spec: dict[str, Any]) -> dict[str, Any]:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    torch.set_num_threads(spec["threads"])
    out: dict[str, Any] = {
        "square_512": _matmul_gflops(512, 512, 512, spec["repeats"]),
        "lstm_input": _matmul_gflops(BATCH * 33, 64, 256, spec["repeats"]),
    }
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        _network()(torch.zeros(1, WINDOW, N_FEATURES))
    out["counter_flops"] = counter.get_total_flops()
    return out


def work_train(spec: dict[str, Any]) -> dict[str, Any]:
    from alphaloom.models import CNNLSTMConfig, CNNLSTMForecaster
    from alphaloom.models.cnn_lstm import make_toy_frames
    from alphaloom.models.cnn_lstm.dataset import class_labels, forward_log_return, window_end_mask
    from alphaloom.models.cnn_lstm.export import quantization_report

    n_train, n_test = spec["bars"], 600
    frames = make_toy_frames(n_symbols=2, n_bars=n_train + n_test, n_features=N_FEATURES, seed=1)
    epochs = 6 if spec["quantization"] else 2  # a model that has learnt something, for the int8 comparison
    config = CNNLSTMConfig(
        window=WINDOW, device="cpu", num_threads=spec["threads"], epochs=epochs, val_fraction=0.0
    )
    model = CNNLSTMForecaster(config).fit({s: f.iloc[:n_train] for s, f in frames.items()})
    out: dict[str, Any] = {
        "samples_per_s": max(e.samples_per_s for e in model.history_.epochs),
        "load": os.getloadavg()[0],
    }
    import torch

    torch.set_num_threads(spec["threads"])
    out["matmul_gflops"] = _matmul_gflops(512, 512, 512, 5)
    if spec["quantization"]:
        windows, labels = [], []
        for frame in frames.values():
            test = frame.iloc[n_train - WINDOW + 1 :]
            values = test[model.feature_names_].to_numpy()
            realised = forward_log_return(test["close"].to_numpy(), config.horizon)
            ends = np.flatnonzero(window_end_mask(values, WINDOW) & np.isfinite(realised))
            windows.append(values[ends[:, None] + np.arange(1 - WINDOW, 1)])
            labels.append(class_labels(realised, model.flat_threshold_)[ends])
        report = quantization_report(model, np.concatenate(windows), np.concatenate(labels))
        out["quantization"] = report._asdict()
    return out


WORKERS = {"export": work_export, "latency": work_latency, "matmul": work_matmul, "train": work_train}


def run_worker(spec: dict[str, Any]) -> dict[str, Any]:
    threads = str(spec.get("threads", 1))
    env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    proc = subprocess.run(
        [sys.executable, __file__, "--worker", json.dumps(spec)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"worker {spec} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------------------- main


def _ratio_note(result: dict[str, Any], threads: int) -> str:
    target = f"target >= {RATE_TARGET}; " if threads == 1 else ""
    return f"{target}matmul {result['matmul_gflops']:.0f} GFLOP/s in the same worker"


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        spec = json.loads(sys.argv[2])
        print(json.dumps(WORKERS[spec["task"]](spec)))
        return
    args = parse_args(__doc__.splitlines()[0])
    from alphaloom.models import CNNLSTMConfig

    config = CNNLSTMConfig(window=WINDOW)
    parts = model_flops(config, N_FEATURES)
    flops = sum(parts.values())
    calls, warmup, repeats = (300, 100, 3) if args.quick else (2000, 300, 15)
    load_before = os.getloadavg()
    started = time.perf_counter()

    figs = Figures(
        f"CNN+LSTM, default size (window {WINDOW}, {N_FEATURES} features, {flops / 1e6:.2f} MFLOP/sample)"
    )
    counter_flops = 0
    for threads in THREADS:
        mm = run_worker({"task": "matmul", "threads": threads, "repeats": repeats})
        counter_flops = mm["counter_flops"]
        figs.add("machine", f"matmul_512_gflops_{threads}t", mm["square_512"], "GFLOP/s", "fp32")
        figs.add(
            "machine", f"matmul_lstm_shape_gflops_{threads}t", mm["lstm_input"], "GFLOP/s", "8448x64x256"
        )
    for name, value in parts.items():
        figs.add("model", f"{name}_mflop", value / 1e6, "MFLOP", "per sample, forward")
    qk_av = 4 * config.sequence_length**2 * config.conv_width
    figs.add(
        "model",
        "torch_counter_mflop",
        counter_flops / 1e6,
        "MFLOP",
        f"FlopCounterMode; ours without LSTM, QK^T and AV: {(flops - parts['lstm'] - qk_av) / 1e6:.3f}",
    )

    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = str(Path(tmp) / "cnn_lstm.onnx")
        exported = run_worker({"task": "export", "path": onnx_path})
        figs.add("onnx", "export_s", exported["seconds"], "s", "torch.export-based exporter, opset 20")
        for threads in THREADS:
            for backend in BACKENDS:
                spec = {
                    "task": "latency",
                    "backend": backend,
                    "threads": threads,
                    "calls": calls,
                    "warmup": warmup,
                    "repeats": repeats,
                    "path": onnx_path,
                }
                r = run_worker(spec)
                gflops = r["samples_per_s"] * flops / 1e9
                tag = f"{threads}t"
                target = f"target <= {P99_TARGET_MS}; " if threads == 1 else ""
                raw = f"raw engine call p50 {r['raw_p50_ms']:.3f} ms"
                figs.add(backend, f"b1_p50_ms_{tag}", r["p50_ms"], "ms", raw)
                figs.add(backend, f"b1_p99_ms_{tag}", r["p99_ms"], "ms", f"{target}load {r['load']:.2f}")
                figs.add(backend, f"b256_samples_per_s_{tag}", r["samples_per_s"], "samples/s")
                figs.add(backend, f"b256_gflops_{tag}", gflops, "GFLOP/s")
                ratio = gflops / r["matmul_gflops"]
                figs.add(backend, f"b256_vs_matmul_{tag}", ratio, "x", _ratio_note(r, threads))

    bars = 1400 if args.quick else 3000
    for threads in THREADS:
        r = run_worker({"task": "train", "threads": threads, "bars": bars, "quantization": threads == 1})
        gflops = 3 * flops * r["samples_per_s"] / 1e9
        tag = f"{threads}t"
        note = f"fwd+bwd+AdamW, batch 256; load {r['load']:.2f}"
        figs.add("training", f"samples_per_s_{tag}", r["samples_per_s"], "samples/s", note)
        figs.add("training", f"gflops_{tag}", gflops, "GFLOP/s", "3x forward FLOPs")
        figs.add("training", f"vs_matmul_{tag}", gflops / r["matmul_gflops"], "x", _ratio_note(r, threads))
        if "quantization" in r:
            q = r["quantization"]
            note = f"{q['n']} held-out toy windows, trained model"
            figs.add("quantized", "top_class_agreement", q["agreement"], "", note)
            figs.add("quantized", "max_abs_proba_diff", q["max_abs_proba_diff"], "", note)
            figs.add("quantized", "accuracy_fp32", q["accuracy_fp32"], "", note)
            figs.add("quantized", "accuracy_change", q["accuracy_int8"] - q["accuracy_fp32"], "", note)

    load_after = os.getloadavg()
    figs.add(
        "machine",
        "load_1min",
        max(load_before[0], load_after[0]),
        "",
        f"{os.cpu_count()} cores; before {load_before[0]:.2f}, after {load_after[0]:.2f}; "
        f"{time.perf_counter() - started:.0f} s run",
    )
    figs.emit(args.json)


if __name__ == "__main__":
    main()
