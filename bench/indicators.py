"""The eight standard indicators on 1,000,000 bars: alphaloom against TA-Lib and plain pandas, same run.

The eight: SMA 20, EMA 20, RSI 14, MACD 12/26/9, Bollinger 20/2, ATR 14, OBV and rolling VWAP 20 (TA-Lib has
no VWAP, so its side computes ``SUM(tp * v, 20) / SUM(v, 20)``). Measured, median of repeats after a warm-up:

- TA-Lib, eight calls (each allocates its outputs);
- ``standard_indicators`` with preallocated outputs (``out=``, reused), the way a loop over symbols runs it;
- ``standard_indicators`` allocating its twelve outputs on every call;
- alphaloom's eight single-indicator functions called one by one;
- plain pandas ``rolling``/``ewm`` versions of the eight (what users write by hand);
- ``StandardIndicatorStream.update`` one bar at a time, all eight per bar, in bars per second.

Targets (issue): fused at most 1.2x TA-Lib's time, at least 8x faster than pandas, at least 250,000 stream
updates per second. ``--quick`` uses 100,000 bars.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import talib

sys.path.insert(0, str(Path(__file__).parent))
from _common import Figures, best_of, parse_args
from alphaloom.features import indicators as ind


def make_bars(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Seeded random walk: high, low, close, volume of shape ``(n,)``."""
    rng = np.random.default_rng(1)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 1e-3, n)))
    spread = np.abs(rng.normal(0.0, 1e-3, n)) * close
    volume = rng.integers(1, 1000, n).astype(np.float64)
    return close + spread, close - spread, close, volume


def talib_eight(h: np.ndarray, lo: np.ndarray, c: np.ndarray, v: np.ndarray) -> list[np.ndarray]:
    typical = (h + lo + c) / 3.0
    return [
        talib.SMA(c, 20),
        talib.EMA(c, 20),
        talib.RSI(c, 14),
        *talib.MACD(c, 12, 26, 9),
        *talib.BBANDS(c, 20, 2.0, 2.0, 0),
        talib.ATR(h, lo, c, 14),
        talib.OBV(c, v),
        talib.SUM(typical * v, 20) / talib.SUM(v, 20),
    ]


def separate_eight(h: np.ndarray, lo: np.ndarray, c: np.ndarray, v: np.ndarray) -> list[object]:
    return [
        ind.sma(c, 20),
        ind.ema(c, 20),
        ind.rsi(c, 14),
        ind.macd(c, 12, 26, 9),
        ind.bollinger(c, 20, 2.0),
        ind.atr(h, lo, c, 14),
        ind.obv(c, v),
        ind.vwap(h, lo, c, v, 20),
    ]


def pandas_eight(b: pd.DataFrame) -> pd.DataFrame:
    c, h, lo, v = b["close"], b["high"], b["low"], b["volume"]
    out = pd.DataFrame(index=b.index)
    out["sma"] = c.rolling(20).mean()
    out["ema"] = c.ewm(span=20, adjust=False).mean()
    delta = c.diff()
    gain = delta.clip(lower=0).ewm(alpha=1 / 14, adjust=False).mean()
    loss = (-delta.clip(upper=0)).ewm(alpha=1 / 14, adjust=False).mean()
    out["rsi"] = 100 - 100 / (1 + gain / loss)
    line = c.ewm(span=12, adjust=False).mean() - c.ewm(span=26, adjust=False).mean()
    signal = line.ewm(span=9, adjust=False).mean()
    out["macd_line"], out["macd_signal"], out["macd_hist"] = line, signal, line - signal
    mid, sd = c.rolling(20).mean(), c.rolling(20).std(ddof=0)
    out["bb_upper"], out["bb_mid"], out["bb_lower"] = mid + 2 * sd, mid, mid - 2 * sd
    prev = c.shift()
    tr = pd.concat([h - lo, (h - prev).abs(), (lo - prev).abs()], axis=1).max(axis=1)
    out["atr"] = tr.ewm(alpha=1 / 14, adjust=False).mean()
    out["obv"] = (np.sign(delta).fillna(0) * v).cumsum()
    typical = (h + lo + c) / 3
    out["vwap"] = (typical * v).rolling(20).sum() / v.rolling(20).sum()
    return out


def stream_seconds_per_bar(h: np.ndarray, lo: np.ndarray, c: np.ndarray, v: np.ndarray) -> float:
    bars = list(zip(h.tolist(), lo.tolist(), c.tolist(), v.tolist(), strict=True))
    best = float("inf")
    for _ in range(3):
        stream = ind.StandardIndicatorStream()
        update = stream.update
        t0 = time.perf_counter()
        for bar in bars:
            update(*bar)
        best = min(best, time.perf_counter() - t0)
    return best / len(bars)


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    n = 100_000 if args.quick else 1_000_000
    n_stream = 50_000 if args.quick else 200_000
    h, lo, c, v = make_bars(n)
    frame = pd.DataFrame({"high": h, "low": lo, "close": c, "volume": v})
    out = ind.StandardIndicators.empty(n)

    # The same bars through both: the fused result must be TA-Lib's before its time means anything.
    ours = ind.standard_indicators(h, lo, c, v, out=out)
    for name, theirs in zip(ind.StandardIndicators._fields, talib_eight(h, lo, c, v), strict=True):
        defined = ~np.isnan(theirs)
        np.testing.assert_allclose(getattr(ours, name)[defined], theirs[defined], rtol=1e-9, atol=1e-9)

    repeats = 7
    t_talib = best_of(lambda: talib_eight(h, lo, c, v), repeats)
    t_fused = best_of(lambda: ind.standard_indicators(h, lo, c, v, out=out), repeats)
    t_alloc = best_of(lambda: ind.standard_indicators(h, lo, c, v), repeats)
    t_separate = best_of(lambda: separate_eight(h, lo, c, v), repeats)
    t_pandas = best_of(lambda: pandas_eight(frame), 3)
    per_update = stream_seconds_per_bar(h[:n_stream], lo[:n_stream], c[:n_stream], v[:n_stream])

    figs = Figures(f"Eight standard indicators on {n:,} bars")
    figs.add("talib", "eight_ms", t_talib * 1e3, "ms", "SMA EMA RSI MACD BBANDS ATR OBV, SUM-based VWAP")
    figs.add("alphaloom", "fused_preallocated_ms", t_fused * 1e3, "ms", "standard_indicators(out=...)")
    figs.add("alphaloom", "fused_allocating_ms", t_alloc * 1e3, "ms", "standard_indicators()")
    figs.add("alphaloom", "separate_calls_ms", t_separate * 1e3, "ms", "eight single-indicator calls")
    figs.add("pandas", "eight_ms", t_pandas * 1e3, "ms", "rolling / ewm")
    figs.add("alphaloom", "fused_vs_talib", t_fused / t_talib, "x", "target <= 1.2, lower is better")
    figs.add("alphaloom", "fused_allocating_vs_talib", t_alloc / t_talib, "x", "lower is better")
    figs.add("alphaloom", "separate_vs_talib", t_separate / t_talib, "x", "lower is better")
    figs.add("alphaloom", "pandas_vs_fused", t_pandas / t_fused, "x", "target >= 8, higher is better")
    figs.add("alphaloom", "stream_updates_per_s", 1.0 / per_update, "bars/s", f"target >= 250k; {n_stream:,}")
    figs.add("alphaloom", "stream_update_us", per_update * 1e6, "us", "all eight per bar")
    figs.emit(args.json)


if __name__ == "__main__":
    main()
