"""Spectral, fractal and cross-asset kernels: batch seconds per 1M bars and stream microseconds per update.

Each batch kernel runs at its default window on a seeded random walk (1,000,000 bars; 100,000 with
``--quick``, scaled to per-1M). Peers are timed only when installed in this environment (``nolds``,
``hurst``; none is a dependency, so usually the table shows alphaloom alone, and the module docstrings of
``alphaloom.features.fractal`` and ``spectral`` record the timings before the compiled kernels).
"""

from __future__ import annotations

import importlib.util
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import Figures, best_of, parse_args
from alphaloom.features import cross_asset, fractal, spectral

PER = 1_000_000
STREAM_UPDATES = 3_000


def walk(n: int, seed: int = 1) -> np.ndarray:
    return 100.0 * np.exp(np.cumsum(np.random.default_rng(seed).normal(0.0, 0.01, n)))


def batch_kernels(close: np.ndarray, reference: np.ndarray) -> dict[str, Callable[[], object]]:
    logp = np.log(close)
    return {
        "katz_fd_64": lambda: fractal.katz_fd(logp, 64),
        "higuchi_fd_128": lambda: fractal.higuchi_fd(logp, 128, 10),
        "hurst_rs_256": lambda: fractal.hurst_rs(close, 256, 8),
        "hurst_dfa_256": lambda: fractal.hurst_dfa(close, 256),
        "wavelet_energies_64": lambda: spectral.wavelet_energies(close, 64),
        "wavelet_denoised_trend_64": lambda: spectral.wavelet_denoised_trend(close, 64),
        "fourier_features_128": lambda: spectral.fourier_features(close, 128),
        "cross_asset_features_60": lambda: cross_asset.cross_asset_features(close, reference, 60),
    }


def stream_seconds(make: Callable[[], object], close: np.ndarray, reference: np.ndarray) -> float:
    stream = make()
    pairs = isinstance(stream, cross_asset.CrossAssetStream)
    for c, r in zip(close[:300], reference[:300], strict=True):  # warm up past the longest look-back
        stream.update(c, r) if pairs else stream.update(c)
    t0 = time.perf_counter()
    for c, r in zip(close[300:], reference[300:], strict=True):
        stream.update(c, r) if pairs else stream.update(c)
    return (time.perf_counter() - t0) / (len(close) - 300)


def peers(close: np.ndarray, figs: Figures, ours: dict[str, float]) -> list[str]:
    """Time installed peers on a sample of windows, scaled to per-1M; return the names not installed."""
    missing = []
    windows = np.lib.stride_tricks.sliding_window_view(np.diff(np.log(close)), 255)[
        :: max(1, len(close) // 200)
    ]
    scale = PER / len(windows)
    if importlib.util.find_spec("nolds") is not None:
        import nolds

        for name, fn, key in (
            ("hurst_rs", lambda w: nolds.hurst_rs(w), "hurst_rs_256"),
            ("dfa", lambda w: nolds.dfa(w), "hurst_dfa_256"),
        ):
            t = best_of(lambda fn=fn: [fn(w) for w in windows], repeats=1) * scale
            figs.add("nolds", f"{name}_s_per_1M", t, "s", "extrapolated from 200 windows")
            figs.add("alphaloom", f"{key}_speedup_vs_nolds", t / ours[key], "x", "higher is better")
    else:
        missing.append("nolds")
    if importlib.util.find_spec("hurst") is not None:
        from hurst import compute_Hc

        t = (
            best_of(lambda: [compute_Hc(np.cumsum(w), kind="random_walk") for w in windows], repeats=1)
            * scale
        )
        figs.add("hurst", "compute_Hc_s_per_1M", t, "s", "extrapolated from 200 windows")
        figs.add(
            "alphaloom", "hurst_rs_256_speedup_vs_hurst", t / ours["hurst_rs_256"], "x", "higher is better"
        )
    else:
        missing.append("hurst")
    return missing


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    n = 100_000 if args.quick else PER
    close, reference = walk(n, 1), walk(n, 2)
    figs = Figures(f"Spectral, fractal and cross-asset kernels on {n:,} bars (seconds scaled to 1M bars)")
    ours = {}
    for name, fn in batch_kernels(close, reference).items():
        ours[name] = best_of(fn, repeats=1 if n == PER else 3) * PER / n
        figs.add("alphaloom", f"{name}_s_per_1M", ours[name], "s")
    sample_c, sample_r = walk(300 + STREAM_UPDATES, 3), walk(300 + STREAM_UPDATES, 4)
    for name, make in (
        ("FractalStream", fractal.FractalStream),
        ("HurstStream", fractal.HurstStream),
        ("WaveletStream", spectral.WaveletStream),
        ("FourierStream", spectral.FourierStream),
        ("CrossAssetStream", cross_asset.CrossAssetStream),
    ):
        figs.add("alphaloom", f"{name}_us_per_update", stream_seconds(make, sample_c, sample_r) * 1e6, "us")
    missing = peers(close, figs, ours)
    figs.emit(args.json)
    if missing and not args.json:
        print(f"peers not installed, not compared: {', '.join(missing)}")


if __name__ == "__main__":
    main()
