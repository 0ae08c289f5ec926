"""Batch feature pipeline speed: alphaloom's FeatureEngineer against the same indicators in plain pandas.

The peer computes the classic indicator set with pandas ``rolling``/``ewm`` (what users write by hand). The
TA-Lib comparison arrives with the feature-engineering issue.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from _common import Figures, best_of, parse_args
from alphaloom.features import FeatureConfig, FeatureEngineer


def make_bars(n: int) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 1e-3, n)))
    spread = np.abs(rng.normal(0, 1e-3, n)) * close
    return pd.DataFrame(
        {
            "symbol": "X",
            "ts": pd.date_range("2000-01-01", periods=n, freq="min", tz="UTC"),
            "open": close,
            "high": close + spread,
            "low": close - spread,
            "close": close,
            "volume": rng.integers(1, 1000, n).astype(float),
        }
    )


def pandas_indicators(b: pd.DataFrame) -> pd.DataFrame:
    c, h, lo, v = b["close"], b["high"], b["low"], b["volume"]
    out = pd.DataFrame(index=b.index)
    out["sma20"] = c.rolling(20).mean()
    out["ema20"] = c.ewm(span=20, adjust=False).mean()
    delta = c.diff()
    gain = delta.clip(lower=0).ewm(alpha=1 / 14, adjust=False).mean()
    loss = (-delta.clip(upper=0)).ewm(alpha=1 / 14, adjust=False).mean()
    out["rsi14"] = 100 - 100 / (1 + gain / loss)
    macd = c.ewm(span=12, adjust=False).mean() - c.ewm(span=26, adjust=False).mean()
    out["macd"] = macd
    out["macd_signal"] = macd.ewm(span=9, adjust=False).mean()
    mid, sd = c.rolling(20).mean(), c.rolling(20).std(ddof=0)
    out["bb_up"], out["bb_lo"] = mid + 2 * sd, mid - 2 * sd
    tr = pd.concat([h - lo, (h - c.shift()).abs(), (lo - c.shift()).abs()], axis=1).max(axis=1)
    out["atr14"] = tr.ewm(alpha=1 / 14, adjust=False).mean()
    out["obv"] = (np.sign(delta).fillna(0) * v).cumsum()
    tp = (h + lo + c) / 3
    out["vwap20"] = (tp * v).rolling(20).sum() / v.rolling(20).sum()
    return out


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    n = 200_000 if args.quick else 1_000_000
    bars = make_bars(n)
    fe = FeatureEngineer(FeatureConfig()).fit(bars)
    t_ours = best_of(lambda: fe.transform(bars), repeats=3)
    t_pandas = best_of(lambda: pandas_indicators(bars), repeats=3)
    figs = Figures(f"Feature pipeline on {n:,} bars")
    figs.add("alphaloom", "pipeline_seconds", t_ours, "s", f"{len(fe.feature_names_)} features")
    figs.add("alphaloom", "bars_per_s", n / t_ours, "bars/s")
    figs.add("pandas", "classic_indicators_seconds", t_pandas, "s", "10 indicator columns")
    figs.add("alphaloom", "time_ratio_vs_pandas", t_ours / t_pandas, "x", "lower is better")
    figs.emit(args.json)


if __name__ == "__main__":
    main()
