"""Technical indicators: numba kernels on float64 arrays, one at a time, all eight at once, or streamed.

Every function takes one-dimensional arrays of shape ``(n,)`` (anything :func:`numpy.asarray` accepts) and
returns float64 arrays of the same shape, aligned with the input: element ``t`` of the output uses inputs at
``t`` and before only, never after, so no indicator can look ahead.

Three ways in
-------------
One indicator
    :func:`sma`, :func:`ema`, :func:`rsi`, :func:`macd`, :func:`bollinger`, :func:`atr`, :func:`obv`,
    :func:`vwap` and the rest, each one call, following the NaN policy below.
The standard eight at once
    :func:`standard_indicators` computes SMA, EMA, RSI, MACD, Bollinger bands, ATR, OBV and rolling VWAP in
    one call into arrays you may preallocate with :meth:`StandardIndicators.empty` and reuse (about 0.6x
    TA-Lib's time for the same eight on a million bars; ``bench/indicators.py`` measures it).
Streaming
    :class:`StandardIndicatorStream` updates the same eight one bar at a time. It runs the very same
    compiled step code as :func:`standard_indicators`, so feeding bars one by one reproduces the batch
    result bit for bit.

On finite input the three agree exactly: each of the eight single functions returns what
:func:`standard_indicators` returns for it.

Conventions
-----------
Warm-up
    Elements that do not yet have a full window are NaN. Each docstring states the index of the first
    defined element (for the usual window ``n``). A series shorter than the warm-up is all NaN, not an error.
Exponential smoothing
    :func:`ema` is seeded with the simple mean of its first ``n`` values, as TA-Lib does, and then follows
    ``y[t] = (x[t] - y[t-1]) * k + y[t-1]`` with ``k = 2 / (n + 1)``. Wilder's smoothing (RSI, ATR) is
    ``y[t] = (y[t-1] * (n - 1) + x[t]) / n``, seeded the same way.
NaN inputs (single-indicator functions)
    Leading NaNs (the warm-up of an upstream indicator, e.g. the MACD line fed to its signal EMA) are
    skipped: a recursion starts at the first non-NaN input. Any other NaN poisons what depends on it: a
    recursion that meets a NaN stays NaN, and a rolling window holding a NaN or infinity is NaN until that
    value has left the window. Callers clean their data first (the feature pipeline refuses non-finite
    prices and reads missing volume as zero).
NaN inputs (:func:`standard_indicators`, :class:`StandardIndicatorStream`)
    Refused: every price must be finite and every volume finite and non-negative, else
    :class:`~alphaloom.core.exceptions.DataFormatError` names the first bad bar. Pass ``0.0`` for a bar
    without volume (forex quotes): OBV then stays flat and VWAP is NaN while its window traded nothing.
Units
    Volatilities are per bar (not annualised) and in log-return units; multiply by ``sqrt(bars per year)``
    to annualise.

Windows must be positive integers.

Against TA-Lib
--------------
``tests/features/test_talib_parity.py`` checks SMA, EMA, RSI, MACD, BBANDS, ATR, TRANGE, OBV and SUM
against TA-Lib to 1e-9 relative on real daily and minute bars (in practice they agree to about 1e-13;
RSI bit for bit). Where we differ on purpose:

- RSI is 50 (neutral) where the smoothed gains and losses are both zero (a window without any change);
  TA-Lib returns 0 there.
- The MACD line is defined from index ``slow - 1``, where both of its EMAs exist; TA-Lib withholds it until
  the signal exists, at ``slow + signal - 2``. The seeding is TA-Lib's: the fast EMA starts at ``slow - 1``
  from the mean of the ``fast`` closes ending there, so the line is not ``ema(fast) - ema(slow)`` in its
  first few hundred bars.
- Rolling windows (SMA, Bollinger, sums, VWAP) recover once a NaN has left the window; TA-Lib's running
  sums stay NaN to the end of the series. Their sums are recomputed exactly every ``n`` bars, so no
  rounding drift builds up over long series.
- OBV follows TA-Lib's ``obv[0] = volume[0]``; a NaN close poisons it here (TA-Lib freezes it).
"""

from __future__ import annotations

import math
import re
from typing import NamedTuple

import numpy as np
import numpy.typing as npt
import pandas as pd

from alphaloom.core.exceptions import ConfigError, DataFormatError
from alphaloom.features import _kernels as _k

__all__ = [
    "MACD",
    "Bollinger",
    "StandardIndicatorStream",
    "StandardIndicators",
    "atr",
    "bollinger",
    "ema",
    "garman_klass_volatility",
    "log_return",
    "macd",
    "obv",
    "parkinson_volatility",
    "realised_volatility",
    "rogers_satchell_volatility",
    "rolling_sum",
    "rsi",
    "session_ids",
    "session_vwap",
    "sma",
    "standard_indicators",
    "true_range",
    "volatility_ratio",
    "volume_roc",
    "vwap",
    "wilder_smooth",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

_GK_CLOSE_COEF = 2.0 * math.log(2.0) - 1.0
_PARKINSON_DENOM = 4.0 * math.log(2.0)
_HHMM = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


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


class StandardIndicators(NamedTuple):
    """The eight standard indicators, twelve float64 arrays of shape ``(n_bars,)``.

    Prices are in price units (``sma``, ``ema``, the MACD three, the Bollinger three, ``atr``, ``vwap``),
    ``rsi`` is in [0, 100] and ``obv`` in volume units. The field order is the column order of
    :meth:`StandardIndicatorStream.update`. First defined elements, for the default windows: ``sma``,
    ``ema``, ``bb_*`` and ``vwap`` at 19, ``rsi`` and ``atr`` at 14, ``macd_line`` at 25, ``macd_signal`` and
    ``macd_hist`` at 33, ``obv`` at 0.
    """

    sma: FloatArray
    ema: FloatArray
    rsi: FloatArray
    macd_line: FloatArray
    macd_signal: FloatArray
    macd_hist: FloatArray
    bb_upper: FloatArray
    bb_mid: FloatArray
    bb_lower: FloatArray
    atr: FloatArray
    obv: FloatArray
    vwap: FloatArray

    @classmethod
    def empty(cls, n_bars: int) -> StandardIndicators:
        """Uninitialised output arrays for ``n_bars`` bars, to pass as ``out=`` and reuse across calls.

        The twelve arrays are rows of one ``(12, n_bars)`` block (one allocation).
        """
        if isinstance(n_bars, bool) or not isinstance(n_bars, int | np.integer) or n_bars < 0:
            raise ConfigError(f"n_bars must be a non-negative integer, got {n_bars!r}.")
        block = np.empty((len(cls._fields), int(n_bars)), dtype=np.float64)
        return cls(*block)


# ------------------------------------------------------------------------------------------ validation


def _series(x: npt.ArrayLike, name: str) -> FloatArray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 1:
        raise DataFormatError(
            f"{name} must be one-dimensional with shape (n,), got shape {arr.shape}; pass one column "
            "(e.g. frame['close']) or flatten it."
        )
    arr = np.ascontiguousarray(arr)
    if arr.flags.writeable:
        # Kernels read inputs through read-only views: one compiled signature whether the caller passed a
        # numpy array or a (read-only, copy-on-write) pandas column.
        arr = arr.view()
        arr.flags.writeable = False
    return arr


def _same_length(*arrays: tuple[str, FloatArray]) -> None:
    lengths = {name: len(a) for name, a in arrays}
    if len(set(lengths.values())) > 1:
        raise DataFormatError(f"inputs must have the same length (one value per bar), got {lengths}.")


def _window(n: int, name: str = "window") -> int:
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise ConfigError(f"{name} must be a positive integer number of bars, got {n!r}.")
    return int(n)


def _macd_periods(fast: int, slow: int, signal: int) -> tuple[int, int, int]:
    fast, slow, signal = _window(fast, "fast"), _window(slow, "slow"), _window(signal, "signal")
    if fast >= slow:
        raise ConfigError(
            f"MACD needs fast < slow, got fast={fast} and slow={slow}; the usual periods are 12, 26, 9."
        )
    return fast, slow, signal


def _band_width(k: float) -> float:
    if isinstance(k, bool) or not isinstance(k, int | float | np.integer | np.floating):
        raise ConfigError(f"Bollinger k must be a number of standard deviations, got {k!r}.")
    if not (math.isfinite(k) and k > 0):
        raise ConfigError(f"Bollinger k must be a positive number of standard deviations, got {k!r}.")
    return float(k)


def _nan_like(x: FloatArray) -> FloatArray:
    return np.full(x.shape, np.nan, dtype=np.float64)


def _lag(x: FloatArray, k: int) -> FloatArray:
    """``x`` shifted forward by ``k`` bars (``out[t] = x[t - k]``), NaN-filled at the start."""
    out = _nan_like(x)
    if k < len(x):
        out[k:] = x[: len(x) - k]
    return out


# ------------------------------------------------------------------------------------- single indicators


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
        Shape ``(n_bars,)``; defined from index ``n - 1`` (NaN while the window holds a non-finite value).
    """
    x = _series(x, "x")
    n = _window(n)
    out = np.empty(len(x), dtype=np.float64)
    _k.rolling_sum(x, n, out)
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
        Shape ``(n_bars,)``, same units as ``x``; defined from index ``n - 1`` (NaN while the window holds
        a non-finite value).
    """
    x = _series(x, "x")
    n = _window(n)
    out = np.empty(len(x), dtype=np.float64)
    _k.rolling_moments(x, n, False, out, out[:0])
    return out


def ema(x: npt.ArrayLike, n: int) -> FloatArray:
    """Exponential moving average with ``k = 2 / (n + 1)``, seeded by a simple mean (as TA-Lib).

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
    out = np.empty(len(x), dtype=np.float64)
    _k.seeded_smoothing(x, n, False, out)
    return out


def wilder_smooth(x: npt.ArrayLike, n: int) -> FloatArray:
    """Wilder's smoothing, ``y[t] = (y[t-1] * (n - 1) + x[t]) / n``, seeded by the mean of the first ``n``.

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
    out = np.empty(len(x), dtype=np.float64)
    _k.seeded_smoothing(x, n, True, out)
    return out


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
    """Relative strength index with Wilder's smoothing (TA-Lib's recursion).

    Average gains and losses are Wilder-smoothed close-to-close changes, seeded by the mean of the first
    ``n`` changes; ``RSI = 100 * gain / (gain + loss)``, which is ``100 - 100 / (1 + RS)``. A window without
    any change gives 50 (neutral; TA-Lib gives 0).

    Parameters
    ----------
    close
        Prices, shape ``(n_bars,)``. Leading NaNs are skipped.
    n
        Period in bars (14 by convention).

    Returns
    -------
    numpy.ndarray
        Shape ``(n_bars,)``, in [0, 100]; defined from index ``s + n`` where ``s`` is the first non-NaN
        input.
    """
    close = _series(close, "close")
    n = _window(n)
    out = np.empty(len(close), dtype=np.float64)
    _k.rsi(close, n, out)
    return out


def macd(close: npt.ArrayLike, fast: int = 12, slow: int = 26, signal: int = 9) -> MACD:
    """MACD line (fast EMA minus slow EMA), its signal EMA and the histogram (line minus signal).

    Seeded as TA-Lib seeds it: both EMAs start at index ``slow - 1``, the slow one from the mean of the
    first ``slow`` closes and the fast one from the mean of the ``fast`` closes ending there; the signal EMA
    starts from the mean of the first ``signal`` line values.

    Parameters
    ----------
    close
        Prices, shape ``(n_bars,)``. Leading NaNs are skipped.
    fast, slow
        EMA spans in bars, ``fast < slow``.
    signal
        Span of the signal EMA of the line.

    Returns
    -------
    MACD
        Three arrays of shape ``(n_bars,)`` in price units. The line is defined from index ``slow - 1``, the
        signal and histogram from ``slow + signal - 2`` (TA-Lib starts all three there); add the index of
        the first non-NaN close.
    """
    close = _series(close, "close")
    fast, slow, signal = _macd_periods(fast, slow, signal)
    line, sig, hist = np.empty((3, len(close)), dtype=np.float64)
    _k.macd(close, fast, slow, signal, line, sig, hist)
    return MACD(line=line, signal=sig, hist=hist)


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
    k = _band_width(k)
    mid, upper, lower, percent_b, bandwidth = np.empty((5, len(close)), dtype=np.float64)
    _k.bollinger(close, n, k, mid, upper, lower, percent_b, bandwidth)
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
    """Average true range: Wilder's smoothing of :func:`true_range`, first value the mean of ``TR[1..n]``.

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
    high, low, close = _series(high, "high"), _series(low, "low"), _series(close, "close")
    _same_length(("high", high), ("low", low), ("close", close))
    n = _window(n)
    out = np.empty(len(close), dtype=np.float64)
    _k.atr(high, low, close, n, out)
    return out


def obv(close: npt.ArrayLike, volume: npt.ArrayLike) -> FloatArray:
    """On-balance volume: the running sum of volume signed by the direction of the close.

    ``obv[0] = volume[0]`` (TA-Lib's convention) and ``obv[t] = obv[t-1] + sign(close[t] - close[t-1]) *
    volume[t]``; only its changes carry information.

    Parameters
    ----------
    close
        Prices, shape ``(n_bars,)``. Leading NaNs are skipped.
    volume
        Non-negative volumes, shape ``(n_bars,)``.

    Returns
    -------
    numpy.ndarray
        Shape ``(n_bars,)`` in volume units; defined from the first non-NaN close.
    """
    close, volume = _series(close, "close"), _series(volume, "volume")
    _same_length(("close", close), ("volume", volume))
    out = np.empty(len(close), dtype=np.float64)
    _k.obv(close, volume, out)
    return out


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
    n = _window(n)
    out = np.empty(len(close), dtype=np.float64)
    _k.vwap(high, low, close, volume, n, out)
    return out


def session_ids(
    ts: pd.DatetimeIndex | pd.Series | npt.ArrayLike, *, timezone: str = "UTC", session_start: str = "00:00"
) -> IntArray:
    """Session number of each bar: a session starts at ``session_start`` local time in ``timezone``.

    A bar belongs to the session that began at the latest ``session_start`` at or before it, in local wall
    time (so daylight saving is handled: "09:30" in "America/New_York" is 13:30 UTC in summer and 14:30 in
    winter). Bars before the day's start (pre-market) belong to the previous day's session.

    Parameters
    ----------
    ts
        Timezone-aware bar timestamps (UTC by convention), shape ``(n_bars,)``.
    timezone
        IANA zone in which sessions start, e.g. ``"America/New_York"``.
    session_start
        Local start time, ``"HH:MM"`` (24-hour).

    Returns
    -------
    numpy.ndarray
        Shape ``(n_bars,)``, int64: the local calendar date the session started on, as days since
        1970-01-01. It changes exactly when a new session begins; pass it to :func:`session_vwap`.
    """
    match = _HHMM.match(session_start) if isinstance(session_start, str) else None
    if match is None:
        raise ConfigError(
            f"session_start must be local time as 'HH:MM' (e.g. '09:30'), got {session_start!r}."
        )
    try:
        index = pd.DatetimeIndex(ts)
    except (TypeError, ValueError) as exc:
        raise DataFormatError(f"ts must be timestamps, shape (n,); could not read them: {exc}") from exc
    if index.tz is None:
        raise DataFormatError(
            "ts must be timezone-aware UTC timestamps, got naive ones; localize them first, e.g. "
            "ts.tz_localize('UTC')."
        )
    try:
        local = index.tz_convert(timezone)
    except (KeyError, ValueError, TypeError) as exc:
        raise ConfigError(
            f"unknown timezone {timezone!r}; use an IANA name such as 'UTC', 'America/New_York' or "
            "'Europe/London'."
        ) from exc
    offset = pd.Timedelta(hours=int(match.group(1)), minutes=int(match.group(2)))
    # Local wall time minus the start time: the date of the result is the session's date.
    wall = local.tz_localize(None) - offset
    return wall.normalize().to_numpy().astype("datetime64[D]").astype(np.int64)


def session_vwap(
    high: npt.ArrayLike,
    low: npt.ArrayLike,
    close: npt.ArrayLike,
    volume: npt.ArrayLike,
    session_id: npt.ArrayLike,
) -> FloatArray:
    """VWAP of the typical price cumulated since the start of the bar's session.

    ``session_vwap[t] = sum(tp * volume) / sum(volume)`` over the bars of the current session up to ``t``,
    with ``tp = (high + low + close) / 3``; NaN while the session has traded no volume. A NaN poisons the
    rest of its session only.

    Parameters
    ----------
    high, low, close
        Prices, shape ``(n_bars,)``.
    volume
        Non-negative volumes, shape ``(n_bars,)``.
    session_id
        Integer session labels, shape ``(n_bars,)``, constant within a session and different from one
        session to the next (e.g. from :func:`session_ids`).

    Returns
    -------
    numpy.ndarray
        Shape ``(n_bars,)`` in price units; defined from the first bar of each session that traded.
    """
    high, low, close = _series(high, "high"), _series(low, "low"), _series(close, "close")
    volume = _series(volume, "volume")
    ids = np.asarray(session_id)
    if ids.ndim != 1:
        raise DataFormatError(f"session_id must be one-dimensional with shape (n,), got shape {ids.shape}.")
    if not np.issubdtype(ids.dtype, np.integer):
        raise DataFormatError(
            f"session_id must hold integer session labels, got dtype {ids.dtype}; compute them with "
            "session_ids(ts, timezone=..., session_start=...)."
        )
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    _same_length(("high", high), ("low", low), ("close", close), ("volume", volume), ("session_id", ids))
    out = np.empty(len(close), dtype=np.float64)
    _k.session_vwap(high, low, close, volume, ids, out)
    return out


# ---------------------------------------------------------------------------- the standard eight at once


def _standard_params(
    sma_n: int,
    ema_n: int,
    rsi_n: int,
    macd: tuple[int, int, int],
    bb_n: int,
    bb_k: float,
    atr_n: int,
    vwap_n: int,
) -> tuple[int, int, int, int, int, int, int, float, int, int]:
    try:
        fast, slow, signal = macd
    except (TypeError, ValueError):
        raise ConfigError(
            f"macd must be (fast, slow, signal) periods, e.g. (12, 26, 9); got {macd!r}."
        ) from None
    fast, slow, signal = _macd_periods(fast, slow, signal)
    return (
        _window(sma_n, "sma_n"),
        _window(ema_n, "ema_n"),
        _window(rsi_n, "rsi_n"),
        fast,
        slow,
        signal,
        _window(bb_n, "bb_n"),
        _band_width(bb_k),
        _window(atr_n, "atr_n"),
        _window(vwap_n, "vwap_n"),
    )


def _bad_bar_error(
    where: str, i: int, high: object, low: object, close: object, volume: object, *, label: str = "bar"
) -> DataFormatError:
    high, low, close, volume = (
        x.item() if isinstance(x, np.generic) else x for x in (high, low, close, volume)
    )
    return DataFormatError(
        f"{where} needs finite prices and a finite, non-negative volume; {label} {i} has high={high!r}, "
        f"low={low!r}, close={close!r}, volume={volume!r}. Drop or forward-fill missing bars and pass 0.0 "
        "for missing volume (or use the single-indicator functions, which propagate NaN)."
    )


def _bars(
    high: npt.ArrayLike, low: npt.ArrayLike, close: npt.ArrayLike, volume: npt.ArrayLike
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    arrays = (_series(high, "high"), _series(low, "low"), _series(close, "close"), _series(volume, "volume"))
    _same_length(*zip(("high", "low", "close", "volume"), arrays, strict=True))
    return arrays


def _check_out(out: StandardIndicators, n_bars: int) -> None:
    if not isinstance(out, StandardIndicators):
        raise DataFormatError(
            f"out must be a StandardIndicators, got {type(out).__name__}; allocate it once with "
            f"StandardIndicators.empty({n_bars})."
        )
    for name, arr in zip(out._fields, out, strict=True):
        if not (
            isinstance(arr, np.ndarray)
            and arr.dtype == np.float64
            and arr.shape == (n_bars,)
            and arr.flags.c_contiguous
            and arr.flags.writeable
        ):
            got = f"{type(arr).__name__} {getattr(arr, 'dtype', '')} {getattr(arr, 'shape', '')}".strip()
            raise DataFormatError(
                f"out.{name} must be a writeable, contiguous float64 array of shape ({n_bars},), got {got}; "
                f"allocate the outputs with StandardIndicators.empty({n_bars})."
            )


def standard_indicators(
    high: npt.ArrayLike,
    low: npt.ArrayLike,
    close: npt.ArrayLike,
    volume: npt.ArrayLike,
    *,
    out: StandardIndicators | None = None,
    sma_n: int = 20,
    ema_n: int = 20,
    rsi_n: int = 14,
    macd: tuple[int, int, int] = (12, 26, 9),
    bb_n: int = 20,
    bb_k: float = 2.0,
    atr_n: int = 14,
    vwap_n: int = 20,
) -> StandardIndicators:
    """SMA, EMA, RSI, MACD, Bollinger bands, ATR, OBV and rolling VWAP in one compiled pass.

    Each output equals what the single-indicator function returns (:func:`sma`, :func:`ema`, :func:`rsi`,
    :func:`macd`, :func:`bollinger`, :func:`atr`, :func:`obv`, :func:`vwap`), bit for bit, and what
    :class:`StandardIndicatorStream` returns bar by bar. Passing ``out`` skips allocating twelve arrays per
    call, which matters on long series.

    Parameters
    ----------
    high, low, close
        Finite prices, shape ``(n_bars,)``.
    volume
        Finite, non-negative volumes, shape ``(n_bars,)``; 0.0 where there is none.
    out
        Arrays to write into, from :meth:`StandardIndicators.empty` (``n_bars``); new ones when omitted.
    sma_n, ema_n, rsi_n, bb_n, atr_n, vwap_n
        Windows in bars.
    macd
        ``(fast, slow, signal)`` spans in bars, ``fast < slow``.
    bb_k
        Bollinger half-width in population standard deviations.

    Returns
    -------
    StandardIndicators
        ``out`` when given (filled), else new arrays; warm-up elements are NaN.

    Raises
    ------
    DataFormatError
        Inputs not one-dimensional or of different lengths, a non-finite price or a negative or
        non-finite volume (naming the first such bar; ``out`` may then be partly written), or an ``out``
        of the wrong shape.
    ConfigError
        A window that is not a positive integer, ``fast >= slow`` or a non-positive ``bb_k``.
    """
    params = _standard_params(sma_n, ema_n, rsi_n, macd, bb_n, bb_k, atr_n, vwap_n)
    h, lo, c, v = _bars(high, low, close, volume)
    n_bars = len(c)
    if out is None:
        out = StandardIndicators.empty(n_bars)
    else:
        _check_out(out, n_bars)
    state, ring = _k.new_fused_state(*params)
    bad = _k.fused_batch(state, ring, h, lo, c, v, *out)
    if bad >= 0:
        raise _bad_bar_error("standard_indicators", bad, h[bad], lo[bad], c[bad], v[bad])
    return out


class StandardIndicatorStream:
    """The eight standard indicators updated one bar at a time, bit-identical to :func:`standard_indicators`.

    Each :meth:`update` costs one compiled call (well over 250,000 bars per second); the state is two small
    float64 arrays, so a stream is cheap to keep per instrument. Bars must be finite (volume 0.0 where there
    is none); a refused bar leaves the state untouched.

    Parameters
    ----------
    sma_n, ema_n, rsi_n, bb_n, atr_n, vwap_n
        Windows in bars.
    macd
        ``(fast, slow, signal)`` spans in bars, ``fast < slow``.
    bb_k
        Bollinger half-width in population standard deviations.

    Attributes
    ----------
    names : tuple of str
        The twelve output names, in column order (the fields of :class:`StandardIndicators`).
    bars_seen : int
        Bars consumed so far.

    Examples
    --------
    >>> stream = StandardIndicatorStream()
    >>> row = stream.update(high=101.0, low=99.0, close=100.0, volume=1e4)
    >>> float(row[stream.names.index("obv")])
    10000.0
    """

    names: tuple[str, ...] = StandardIndicators._fields

    def __init__(
        self,
        *,
        sma_n: int = 20,
        ema_n: int = 20,
        rsi_n: int = 14,
        macd: tuple[int, int, int] = (12, 26, 9),
        bb_n: int = 20,
        bb_k: float = 2.0,
        atr_n: int = 14,
        vwap_n: int = 20,
    ) -> None:
        self._params = _standard_params(sma_n, ema_n, rsi_n, macd, bb_n, bb_k, atr_n, vwap_n)
        self._state, self._ring = _k.new_fused_state(*self._params)

    @property
    def bars_seen(self) -> int:
        """Bars consumed so far."""
        return int(self._state[_k.S_T])

    def update(self, high: float, low: float, close: float, volume: float) -> FloatArray:
        """Consume one bar and return the twelve indicator values at it.

        Parameters
        ----------
        high, low, close
            The bar's finite prices.
        volume
            Its finite, non-negative volume (0.0 where there is none).

        Returns
        -------
        numpy.ndarray
            Shape ``(12,)``, float64, in the order of :attr:`names`; NaN where an indicator is still
            warming up.

        Raises
        ------
        DataFormatError
            A non-finite price, or a negative or non-finite volume; the state is left as it was.
        """
        try:
            return _k.fused_update(
                self._state, self._ring, float(high), float(low), float(close), float(volume)
            )
        except (TypeError, ValueError) as exc:
            raise _bad_bar_error(
                "StandardIndicatorStream.update", self.bars_seen, high, low, close, volume
            ) from exc

    def update_many(
        self, high: npt.ArrayLike, low: npt.ArrayLike, close: npt.ArrayLike, volume: npt.ArrayLike
    ) -> FloatArray:
        """Consume ``m`` bars at once; the same values as ``m`` calls of :meth:`update`.

        Parameters
        ----------
        high, low, close
            Finite prices, shape ``(m,)``.
        volume
            Finite, non-negative volumes, shape ``(m,)``.

        Returns
        -------
        numpy.ndarray
            Shape ``(m, 12)``, float64, columns in the order of :attr:`names`.

        Raises
        ------
        DataFormatError
            Inputs of the wrong shape, or a bad bar (named; the state is then left as it was).
        """
        h, lo, c, v = _bars(high, low, close, volume)
        bad = _k.first_invalid_bar(h, lo, c, v)
        if bad >= 0:
            raise _bad_bar_error(
                "StandardIndicatorStream.update_many", bad, h[bad], lo[bad], c[bad], v[bad], label="row"
            )
        out = np.empty((len(self.names), len(c)), dtype=np.float64)
        _k.fused_batch(self._state, self._ring, h, lo, c, v, *out)
        return out.T

    def __repr__(self) -> str:
        sma_n, ema_n, rsi_n, fast, slow, signal, bb_n, bb_k, atr_n, vwap_n = self._params
        return (
            f"StandardIndicatorStream(sma_n={sma_n}, ema_n={ema_n}, rsi_n={rsi_n}, "
            f"macd=({fast}, {slow}, {signal}), bb_n={bb_n}, bb_k={bb_k}, atr_n={atr_n}, vwap_n={vwap_n}; "
            f"{self.bars_seen} bars seen)"
        )


# ------------------------------------------------------------------------------ volume and volatility


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


def rogers_satchell_volatility(
    open_: npt.ArrayLike, high: npt.ArrayLike, low: npt.ArrayLike, close: npt.ArrayLike, n: int = 20
) -> FloatArray:
    """Rogers-Satchell volatility estimate from OHLC over ``n`` bars (unbiased under a drift).

    ``sqrt(mean(log(high/close) * log(high/open) + log(low/close) * log(low/open)))``; each term is
    non-negative on consistent bars, and the mean is floored at 0 for inconsistent ones.

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
    term = np.log(high / close) * np.log(high / open_) + np.log(low / close) * np.log(low / open_)
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
    return np.sqrt(np.maximum(sma(np.log(high / low) ** 2, n), 0.0) / _PARKINSON_DENOM)


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
    # a rolling sum of squares can end a hair below zero after a large value leaves the window
    return np.sqrt(np.maximum(sma(log_return(close, 1) ** 2, _window(n)), 0.0))


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
