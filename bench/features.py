"""Full feature pipeline: time per transformer and its share, batch and streaming, on 1,000,000 bars.

Every built-in OHLCV transformer runs (returns, price, volatility, volume with session VWAP, wavelet,
Fourier, fractal, Hurst, and cross-asset against a second seeded series), with default windows. The eight
standard indicators against TA-Lib and pandas are in ``bench/indicators.py``; this script reports where the
whole pipeline's time goes, and the streaming rate of the default feature set.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from _common import Figures, parse_args
from alphaloom.features import TRANSFORMERS, FeatureConfig, FeatureContext, FeatureEngineer


def make_bars(n: int, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 1e-3, n)))
    open_ = close * np.exp(rng.normal(0, 5e-4, n))
    high = np.maximum(open_, close) * (1 + np.abs(rng.normal(0, 1e-3, n)))
    low = np.minimum(open_, close) * (1 - np.abs(rng.normal(0, 1e-3, n)))
    return pd.DataFrame(
        {
            "symbol": "X",
            "ts": pd.date_range("2000-01-01", periods=n, freq="min", tz="UTC"),
            "open": open_,
            "high": high,
            "low": low,
            "close": close,
            "volume": rng.integers(1, 1000, n).astype(float),
        }
    )


OHLCV_KINDS = (
    "returns",
    "price",
    "volatility",
    "volume",
    "wavelet",
    "fourier",
    "fractal",
    "hurst",
    "cross_asset",
)


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    n = 100_000 if args.quick else 1_000_000
    bars = make_bars(n)
    kinds = [k for k in OHLCV_KINDS if k in TRANSFORMERS]
    config = FeatureConfig.from_dict({"groups": kinds, "volume": {"session_vwap": True}})
    context = FeatureContext(reference=make_bars(n, seed=2)) if "cross_asset" in kinds else None
    engineer = FeatureEngineer(config).fit(bars.head(5_000), context and _head(context, 5_000))
    t0 = time.perf_counter()
    matrix = engineer.transform_matrix(bars, context)
    total = time.perf_counter() - t0
    figs = Figures(f"Full feature pipeline on {n:,} bars ({len(matrix.names)} features)")
    figs.add("alphaloom", "pipeline_seconds", total, "s", f"{len(matrix.names)} features, float32")
    for kind, seconds in engineer.timings_.items():
        share = f"{100 * seconds / total:.1f}% of the pipeline"
        figs.add("alphaloom", f"{kind}_seconds", seconds, "s", share)

    other = total - sum(engineer.timings_.values())
    note = f"{100 * other / total:.1f}%: validation, alignment, float32"
    figs.add("alphaloom", "inputs_seconds", other, "s", note)

    default = FeatureEngineer().fit(bars.head(5_000))
    m = 20_000 if args.quick else 100_000
    stream = default.stream()
    rows = bars.head(m).to_dict("records")
    t0 = time.perf_counter()
    for row in rows:
        stream.update(row)
    rate = m / (time.perf_counter() - t0)
    note = f"{len(default.feature_names_)} features"
    figs.add("alphaloom", "default_stream_bars_per_s", rate, "bars/s", note)
    figs.emit(args.json)


def _head(context: FeatureContext, n: int) -> FeatureContext:
    assert context.reference is not None
    return FeatureContext(reference=context.reference.head(n))


if __name__ == "__main__":
    main()
