"""Technical indicator kernels: pure numpy functions on float64 arrays.

Every kernel takes one-dimensional arrays of shape ``(n,)`` (anything :func:`numpy.asarray` accepts) and
returns float64 arrays of the same shape, aligned with the input: element ``t`` of the output uses inputs at
``t`` and before only, never after, so no kernel can look ahead.

Conventions
-----------
Warm-up
    Elements that do not yet have a full window are NaN. Each docstring states the index of the first
    defined element (for the usual window ``n``).
Exponential smoothing
    :func:`ema` is seeded with the simple mean of its first ``n`` values, as TA-Lib does, and then follows
    ``y[t] = y[t-1] + alpha * (x[t] - y[t-1])`` with ``alpha = 2 / (n + 1)``. Wilder's smoothing (RSI, ATR) is
    the same recursion with ``alpha = 1 / n``.
NaN inputs
    Leading NaNs (the warm-up of an upstream indicator, e.g. the MACD line fed to its signal EMA) are
    skipped: a recursion starts at the first non-NaN input. Any other NaN poisons what depends on it: a
    window containing a NaN is NaN, and a recursion that meets a NaN stays NaN. Callers clean their data
    first (the feature pipeline refuses non-finite prices and reads missing volume as zero).
Units
    Volatilities are per bar (not annualised) and in log-return units; multiply by ``sqrt(bars per year)``
    to annualise.

Windows must be positive integers; a window longer than the series gives an all-NaN result.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import numpy.typing as npt
import pandas as pd

from alphaloom.core.exceptions import ConfigError, DataFormatError

__all__ = [
    "MACD",
    "Bollinger",
    "atr",
    "bollinger",
    "ema",
    "garman_klass_volatility",
    "log_return",
    "macd",
    "obv",
    "parkinson_volatility",
    "realised_volatility",
    "rolling_sum",
    "rsi",
    "sma",
    "true_range",
    "volatility_ratio",
    "volume_roc",
    "vwap",
    "wilder_smooth",
]

FloatArray = npt.NDArray[np.float64]

_GK_CLOSE_COEF = 2.0 * math.log(2.0) - 1.0
_PARKINSON_DENOM = 4.0 * math.log(2.0)


class MACD(NamedTuple):
    """Moving-average convergence/divergence, each of shape ``(n,)``, in price units."""

    line: FloatArray
    signal: FloatArray
    hist: FloatArray


class Bollinger(NamedTuple):
    """Bollinger bands, each of shape ``(n,)``.

    ``mid``, ``upper`` and ``lower`` are in price units; ``percent_b`` is where the price sits in the band
    (0 at the lower band, 1 at the upper) and ``bandwidth`` is the band width over the mid, both unitless.
    """

    mid: FloatArray
    upper: FloatArray
    lower: FloatArray
    percent_b: FloatArray
    bandwidth: FloatArray


def _series(x: npt.ArrayLike, name: str) -> FloatArray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 1:
        raise DataFormatError(f"{name} must be one-dimensional with shape (n,), got shape {arr.shape}.")
    return arr


def _same_length(*arrays: tuple[str, FloatArray]) -> None:
    lengths = {name: len(a) for name, a in arrays}
    if len(set(lengths.values())) > 1:
        raise DataFormatError(f"inputs must have the same length, got {lengths}.")


def _window(n: int, name: str = "window") -> int:
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise ConfigError(f"{name} must be a positive integer number of bars, got {n!r}.")
    return int(n)


def _nan_like(x: FloatArray) -> FloatArray:
    return np.full(x.shape, np.nan, dtype=np.float64)


def _lag(x: FloatArray, k: int) -> FloatArray:
    """``x`` shifted forward by ``k`` bars (``out[t] = x[t - k]``), NaN-filled at the start."""
    out = _nan_like(x)
    if k < len(x):
        out[k:] = x[: len(x) - k]
    return out


def rolling_sum(x: npt.ArrayLike, n: int) -> FloatArray:
    """Sum over the last ``n`` values.

    Parameters
    ----------
    x
        Values, shape ``(n_bars,)``.
    n
        Window length in bars.

    Returns
    -------
    numpy.ndarray
        Shape ``(n_bars,)``; defined from index ``n - 1``.
    """
    x = _series(x, "x")
    n = _window(n)
    out = _nan_like(x)
    if n <= len(x):
        # pandas' rolling sum is compensated (Kahan) add/remove in compiled code: no drift, O(1) per bar.
        out[n - 1 :] = pd.Series(x).rolling(n).sum().to_numpy()[n - 1 :]
    return out


def sma(x: npt.ArrayLike, n: int) -> FloatArray:
    """Simple moving average over the last ``n`` values.

    Parameters
    ----------
    x
        Values, shape ``(n_bars,)``.
    n
        Window length in bars.

    Returns
    -------
    numpy.ndarray
        Shape ``(n_bars,)``, same units as ``x``; defined from index ``n - 1``.
    """
    x = _series(x, "x")
    n = _window(n)
    out = _nan_like(x)
    if n <= len(x):
        out[n - 1 :] = pd.Series(x).rolling(n).mean().to_numpy()[n - 1 :]
    return out


def _seeded_smoothing(x: FloatArray, n: int, alpha: float) -> FloatArray:
    out = _nan_like(x)
    valid = np.flatnonzero(~np.isnan(x))
    if valid.size == 0:
        return out
    start = int(valid[0])
    seed_at = start + n - 1
    if seed_at >= len(x):
        return out
    level = float(x[start : seed_at + 1].mean())
    out[seed_at] = level
    tail = x[seed_at + 1 :]
    if np.isnan(tail).any():
        # A gap poisons the recursion from there on, as TA-Lib's does; keep that exact with a plain loop.
        smoothed = np.empty(len(tail), dtype=np.float64)
        for i, value in enumerate(tail.tolist()):
            level += alpha * (value - level)
            smoothed[i] = level
    else:
        # pandas' ewm(adjust=False) is the same recursion, y[t] = (1 - alpha) y[t-1] + alpha x[t], in
        # compiled code (about 50x faster than a Python loop on 1M bars); seeding it with ``level`` as
        # its first value makes it start where the simple-mean seed does.
        seeded = np.concatenate(([level], tail))
        smoothed = pd.Series(seeded).ewm(alpha=alpha, adjust=False).mean().to_numpy()[1:]
    out[seed_at + 1 :] = smoothed
    return out


def ema(x: npt.ArrayLike, n: int) -> FloatArray:
    """Exponential moving average with ``alpha = 2 / (n + 1)``, seeded by a simple mean (as TA-Lib).

    Parameters
    ----------
    x
        Values, shape ``(n_bars,)``. Leading NaNs are skipped.
    n
        Span in bars.

    Returns
    -------
    numpy.ndarray
        Shape ``(n_bars,)``; defined from index ``s + n - 1`` where ``s`` is the first non-NaN input.
    """
    x = _series(x, "x")
    n = _window(n)
    return _seeded_smoothing(x, n, 2.0 / (n + 1.0))


def wilder_smooth(x: npt.ArrayLike, n: int) -> FloatArray:
    """Wilder's smoothing (``alpha = 1 / n``), seeded by the simple mean of the first ``n`` values.

    Parameters
    ----------
    x
        Values, shape ``(n_bars,)``. Leading NaNs are skipped.
    n
        Period in bars.

    Returns
    -------
    numpy.ndarray
        Shape ``(n_bars,)``; defined from index ``s + n - 1`` where ``s`` is the first non-NaN input.
    """
    x = _series(x, "x")
    n = _window(n)
    return _seeded_smoothing(x, n, 1.0 / n)


def log_return(close: npt.ArrayLike, n: int = 1) -> FloatArray:
    """Log return over ``n`` bars, ``log(close[t] / close[t - n])``.

    Parameters
    ----------
    close
        Positive prices, shape ``(n_bars,)``.
    n
        Horizon in bars.

    Returns
    -------
    numpy.ndarray
        Shape ``(n_bars,)``, unitless; defined from index ``n``.
    """
    close = _series(close, "close")
    n = _window(n)
    log_close = np.log(close)
    return log_close - _lag(log_close, n)


def rsi(close: npt.ArrayLike, n: int = 14) -> FloatArray:
    """Relative strength index with Wilder's smoothing.

    Average gains and losses are Wilder-smoothed close-to-close changes; ``RSI = 100 * gain / (gain +
    loss)``, which is ``100 - 100 / (1 + RS)``. A window without any change gives 50 (neutral).

    Parameters
    ----------
    close
        Prices, shape ``(n_bars,)``.
    n
        Period in bars (14 by convention).

    Returns
    -------
    numpy.ndarray
        Shape ``(n_bars,)``, in [0, 100]; defined from index ``n``.
    """
    close = _series(close, "close")
    n = _window(n)
    change = close - _lag(close, 1)
    gain = np.where(change > 0.0, change, 0.0)
    loss = np.where(change < 0.0, -change, 0.0)
    gain[np.isnan(change)] = np.nan
    loss[np.isnan(change)] = np.nan
    avg_gain = wilder_smooth(gain, n)
    avg_loss = wilder_smooth(loss, n)
    total = avg_gain + avg_loss
    out = np.full_like(close, np.nan)
    np.divide(100.0 * avg_gain, total, out=out, where=total > 0.0)
    out[total == 0.0] = 50.0
    return out


def macd(close: npt.ArrayLike, fast: int = 12, slow: int = 26, signal: int = 9) -> MACD:
    """MACD line (fast EMA minus slow EMA), its signal EMA and the histogram (line minus signal).

    Parameters
    ----------
    close
        Prices, shape ``(n_bars,)``.
    fast, slow
        EMA spans in bars, ``fast < slow``.
    signal
        Span of the signal EMA of the line.

    Returns
    -------
    MACD
        Three arrays of shape ``(n_bars,)`` in price units. The line is defined from index ``slow - 1``, the
        signal and histogram from ``slow + signal - 2``.
    """
    close = _series(close, "close")
    fast, slow, signal = _window(fast, "fast"), _window(slow, "slow"), _window(signal, "signal")
    if fast >= slow:
        raise ConfigError(f"MACD needs fast < slow, got fast={fast} and slow={slow}.")
    line = ema(close, fast) - ema(close, slow)
    sig = ema(line, signal)
    return MACD(line=line, signal=sig, hist=line - sig)


def bollinger(close: npt.ArrayLike, n: int = 20, k: float = 2.0) -> Bollinger:
    """Bollinger bands: the ``n``-bar SMA plus and minus ``k`` population standard deviations.

    ``percent_b = (close - lower) / (upper - lower)`` and ``bandwidth = (upper - lower) / mid``. Where the
    band has no width (a flat window, judged as width below ``1e-12`` of the mid), ``percent_b`` is 0.5.

    Parameters
    ----------
    close
        Prices, shape ``(n_bars,)``.
    n
        Window in bars.
    k
        Band half-width in standard deviations (``ddof=0``, as TA-Lib).

    Returns
    -------
    Bollinger
        Five arrays of shape ``(n_bars,)``, defined from index ``n - 1``.
    """
    close = _series(close, "close")
    n = _window(n)
    if not (math.isfinite(k) and k > 0):
        raise ConfigError(f"Bollinger k must be a positive number of standard deviations, got {k!r}.")
    mid = _nan_like(close)
    std = _nan_like(close)
    if n <= len(close):
        roll = pd.Series(close).rolling(n)
        mid[n - 1 :] = roll.mean().to_numpy()[n - 1 :]
        # Welford-style rolling variance in compiled code; clip the tiny negatives rounding can leave.
        std[n - 1 :] = np.sqrt(np.maximum(roll.var(ddof=0).to_numpy()[n - 1 :], 0.0))
    upper = mid + k * std
    lower = mid - k * std
    width = upper - lower
    flat = width <= 1e-12 * np.abs(mid)
    percent_b = np.full_like(close, np.nan)
    np.divide(close - lower, width, out=percent_b, where=~flat & ~np.isnan(width))
    percent_b[flat] = 0.5
    bandwidth = width / mid
    return Bollinger(mid=mid, upper=upper, lower=lower, percent_b=percent_b, bandwidth=bandwidth)


def true_range(high: npt.ArrayLike, low: npt.ArrayLike, close: npt.ArrayLike) -> FloatArray:
    """True range: ``max(high - low, |high - prev close|, |low - prev close|)``.

    Parameters
    ----------
    high, low, close
        Prices, shape ``(n_bars,)``.

    Returns
    -------
    numpy.ndarray
        Shape ``(n_bars,)`` in price units; defined from index 1 (the first bar has no previous close).
    """
    high, low, close = _series(high, "high"), _series(low, "low"), _series(close, "close")
    _same_length(("high", high), ("low", low), ("close", close))
    prev = _lag(close, 1)
    return np.maximum(high - low, np.maximum(np.abs(high - prev), np.abs(low - prev)))


def atr(high: npt.ArrayLike, low: npt.ArrayLike, close: npt.ArrayLike, n: int = 14) -> FloatArray:
    """Average true range with Wilder's smoothing.

    Parameters
    ----------
    high, low, close
        Prices, shape ``(n_bars,)``.
    n
        Period in bars.

    Returns
    -------
    numpy.ndarray
        Shape ``(n_bars,)`` in price units; defined from index ``n``.
    """
    return wilder_smooth(true_range(high, low, close), _window(n))


def obv(close: npt.ArrayLike, volume: npt.ArrayLike) -> FloatArray:
    """On-balance volume: the running sum of volume signed by the direction of the close.

    ``obv[0] = 0`` and ``obv[t] = obv[t-1] + sign(close[t] - close[t-1]) * volume[t]``; only its changes
    carry information.

    Parameters
    ----------
    close
        Prices, shape ``(n_bars,)``.
    volume
        Non-negative volumes, shape ``(n_bars,)``.

    Returns
    -------
    numpy.ndarray
        Shape ``(n_bars,)`` in volume units; defined everywhere.
    """
    close, volume = _series(close, "close"), _series(volume, "volume")
    _same_length(("close", close), ("volume", volume))
    if len(close) == 0:
        return np.zeros(0)
    signed = np.zeros_like(volume)
    signed[1:] = np.sign(np.diff(close)) * volume[1:]
    return np.cumsum(signed)


def vwap(
    high: npt.ArrayLike, low: npt.ArrayLike, close: npt.ArrayLike, volume: npt.ArrayLike, n: int = 20
) -> FloatArray:
    """Rolling volume-weighted average of the typical price ``(high + low + close) / 3`` over ``n`` bars.

    ``vwap[t] = sum(tp * volume, n) / sum(volume, n)``; NaN where the window traded no volume.

    Parameters
    ----------
    high, low, close
        Prices, shape ``(n_bars,)``.
    volume
        Non-negative volumes, shape ``(n_bars,)``.
    n
        Window in bars.

    Returns
    -------
    numpy.ndarray
        Shape ``(n_bars,)`` in price units; defined from index ``n - 1``.
    """
    high, low, close = _series(high, "high"), _series(low, "low"), _series(close, "close")
    volume = _series(volume, "volume")
    _same_length(("high", high), ("low", low), ("close", close), ("volume", volume))
    typical = (high + low + close) / 3.0
    numerator = rolling_sum(typical * volume, n)
    denominator = rolling_sum(volume, n)
    out = np.full_like(typical, np.nan)
    np.divide(numerator, denominator, out=out, where=denominator > 0.0)
    return out


def volume_roc(volume: npt.ArrayLike, n: int = 5) -> FloatArray:
    """Volume rate of change over ``n`` bars, ``volume[t] / volume[t - n] - 1``.

    Parameters
    ----------
    volume
        Non-negative volumes, shape ``(n_bars,)``.
    n
        Horizon in bars.

    Returns
    -------
    numpy.ndarray
        Shape ``(n_bars,)``, unitless; defined from index ``n`` where ``volume[t - n] > 0`` (NaN otherwise).
    """
    volume = _series(volume, "volume")
    n = _window(n)
    past = _lag(volume, n)
    out = np.full_like(volume, np.nan)
    np.divide(volume, past, out=out, where=past > 0.0)
    return out - 1.0


def garman_klass_volatility(
    open_: npt.ArrayLike, high: npt.ArrayLike, low: npt.ArrayLike, close: npt.ArrayLike, n: int = 20
) -> FloatArray:
    """Garman-Klass volatility estimate from OHLC over ``n`` bars.

    ``sqrt(mean(0.5 * log(high/low)**2 - (2 log 2 - 1) * log(close/open)**2))``; the mean is floored at 0
    (it can only go negative on inconsistent bars where the open or close lies outside the high-low range).

    Parameters
    ----------
    open_, high, low, close
        Positive prices, shape ``(n_bars,)``.
    n
        Window in bars.

    Returns
    -------
    numpy.ndarray
        Shape ``(n_bars,)``, per-bar volatility in log units; defined from index ``n - 1``.
    """
    open_, high = _series(open_, "open"), _series(high, "high")
    low, close = _series(low, "low"), _series(close, "close")
    _same_length(("open", open_), ("high", high), ("low", low), ("close", close))
    term = 0.5 * np.log(high / low) ** 2 - _GK_CLOSE_COEF * np.log(close / open_) ** 2
    return np.sqrt(np.maximum(sma(term, n), 0.0))


def parkinson_volatility(high: npt.ArrayLike, low: npt.ArrayLike, n: int = 20) -> FloatArray:
    """Parkinson high-low volatility estimate over ``n`` bars, ``sqrt(mean(log(high/low)**2) / (4 log 2))``.

    Parameters
    ----------
    high, low
        Positive prices, shape ``(n_bars,)``.
    n
        Window in bars.

    Returns
    -------
    numpy.ndarray
        Shape ``(n_bars,)``, per-bar volatility in log units; defined from index ``n - 1``.
    """
    high, low = _series(high, "high"), _series(low, "low")
    _same_length(("high", high), ("low", low))
    return np.sqrt(sma(np.log(high / low) ** 2, n) / _PARKINSON_DENOM)


def realised_volatility(close: npt.ArrayLike, n: int = 20) -> FloatArray:
    """Realised volatility: root mean square of the last ``n`` one-bar log returns (not de-meaned).

    Parameters
    ----------
    close
        Positive prices, shape ``(n_bars,)``.
    n
        Window in bars.

    Returns
    -------
    numpy.ndarray
        Shape ``(n_bars,)``, per-bar volatility in log units; defined from index ``n``.
    """
    return np.sqrt(sma(log_return(close, 1) ** 2, _window(n)))


def volatility_ratio(close: npt.ArrayLike, short: int = 5, long: int = 20) -> FloatArray:
    """Short-window over long-window realised volatility; above 1 when volatility is rising.

    Where the long window has zero volatility (a flat price), the short one is zero too and the ratio is 1.

    Parameters
    ----------
    close
        Positive prices, shape ``(n_bars,)``.
    short, long
        Windows in bars, ``short < long``.

    Returns
    -------
    numpy.ndarray
        Shape ``(n_bars,)``, unitless; defined from index ``long``.
    """
    short, long = _window(short, "short"), _window(long, "long")
    if short >= long:
        raise ConfigError(f"volatility_ratio needs short < long, got short={short} and long={long}.")
    vol_short = realised_volatility(close, short)
    vol_long = realised_volatility(close, long)
    out = np.full_like(vol_long, np.nan)
    np.divide(vol_short, vol_long, out=out, where=vol_long > 0.0)
    out[vol_long == 0.0] = 1.0
    return out
