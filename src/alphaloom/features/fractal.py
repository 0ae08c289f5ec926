"""Fractal dimension and Hurst exponent on trailing windows: batch kernels and incremental streams.

Every function takes a one-dimensional series of shape ``(n,)`` and returns a float64 array of shape ``(n,)``
aligned with it: element ``t`` uses inputs ``t - window + 1 .. t`` only, so nothing looks ahead. Elements
``0 .. window - 2`` are NaN (warm-up), and a window longer than the series gives an all-NaN result. A window
on which an estimator is undefined (a flat price path, returns of zero variance) is NaN as well.

Estimators
----------
:func:`katz_fd`
    Katz (1988): ``log10(m) / (log10(m) + log10(d / L))`` with ``m`` the number of steps, ``L`` the summed
    absolute steps and ``d`` the largest distance from the window's first point. 1 for a straight line.
:func:`higuchi_fd`
    Higuchi (1988): minus the least-squares slope of ``log L(k)`` on ``log k`` for ``k = 1 .. k_max``, with
    ``L(k)`` the normalised curve length averaged over the ``k`` start offsets. 1 for a line, about 1.5 for
    Brownian motion, 2 for white noise.
:func:`hurst_rs`
    Rescaled range on the ``window - 1`` log returns of the window: chunk sizes ``min_chunk * 2**j`` up to
    the number of returns, non-overlapping chunks aligned to the newest return, ``R/S`` averaged over chunks
    and the least-squares slope of ``log(R/S)`` on ``log n``. Biased upward in small samples (about 0.55-0.6
    for i.i.d. returns at ``window=256``; Anis-Lloyd).
:func:`hurst_dfa`
    Detrended fluctuation analysis (order 1) on the cumulative demeaned log returns; the slope of
    ``log F(s)`` on ``log s``. About 0.5 for i.i.d. returns, above for persistent, below for anti-persistent.

Inputs must be finite (the fractal dimensions) and also positive (the Hurst exponents, which take logs);
anything else raises :class:`~alphaloom.core.exceptions.DataFormatError`. Parameters out of range raise
:class:`~alphaloom.core.exceptions.ConfigError`.

Batch functions evaluate the per-window kernel on :func:`numpy.lib.stride_tricks.sliding_window_view` in
chunks (bounded memory); the streams keep a ring buffer and call the same kernels on the newest window, so
they reproduce the batch values to rounding.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import sliding_window_view

from alphaloom.core.exceptions import ConfigError, DataFormatError

__all__ = [
    "FractalStream",
    "HurstStream",
    "higuchi_fd",
    "hurst_dfa",
    "hurst_rs",
    "katz_fd",
]

FloatArray = npt.NDArray[np.float64]

# Elements per chunk of windows in the batch functions (about 32 MiB of float64 per temporary).
_CHUNK_ELEMENTS = 1 << 22


# ---------------------------------------------------------------------------------------------- validation


def _as_series(x: npt.ArrayLike, name: str, *, positive: bool) -> FloatArray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 1:
        raise DataFormatError(f"{name} must be one-dimensional with shape (n,); got shape {arr.shape}.")
    bad = ~np.isfinite(arr)
    if bad.any():
        i = int(np.argmax(bad))
        raise DataFormatError(
            f"{name} must be finite; element {i} is {arr[i]!r}. Clean or drop missing bars before computing."
        )
    if positive and arr.size and arr.min() <= 0.0:
        i = int(np.argmin(arr))
        raise DataFormatError(
            f"{name} must be strictly positive prices (log returns are taken); element {i} is {arr[i]!r}."
        )
    return arr


def _check_int(value: int, name: str, minimum: int, hint: str = "") -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ConfigError(
            f"{name} must be an integer >= {minimum}; got {value!r}.{(' ' + hint) if hint else ''}"
        )
    return int(value)


def _check_katz(window: int) -> int:
    return _check_int(window, "window", 3, "Katz needs at least two steps per window.")


def _check_higuchi(window: int, k_max: int) -> tuple[int, int]:
    k_max = _check_int(k_max, "k_max", 2, "Higuchi regresses over k = 1 .. k_max, so it needs two lags.")
    window = _check_int(
        window, "window", 2 * k_max, f"Higuchi needs window >= 2 * k_max = {2 * k_max} to form every lag."
    )
    return window, k_max


def _rs_sizes(window: int, min_chunk: int) -> tuple[int, ...]:
    min_chunk = _check_int(min_chunk, "min_chunk", 4, "R/S on fewer than 4 returns per chunk is meaningless.")
    window = _check_int(
        window,
        "window",
        2 * min_chunk + 1,
        f"R/S needs at least two chunk sizes: window - 1 >= 2 * min_chunk = {2 * min_chunk} returns.",
    )
    sizes = []
    n = min_chunk
    while n <= window - 1:
        sizes.append(n)
        n *= 2
    return tuple(sizes)


def _dfa_scales(window: int, scales: Sequence[int] | None) -> tuple[int, ...]:
    window = _check_int(window, "window", 17, "DFA needs at least 16 returns (two scales of 4 and 8).")
    n_ret = window - 1
    if scales is None:
        out = []
        s = 8 if n_ret >= 32 else 4
        while s <= n_ret // 4 or len(out) < 2:
            out.append(s)
            s *= 2
        return tuple(out)
    out = tuple(int(s) for s in scales)
    if len(out) < 2 or any(b <= a for a, b in itertools.pairwise(out)):
        raise ConfigError(f"scales must be at least two strictly increasing integers; got {tuple(scales)!r}.")
    if out[0] < 4 or out[-1] > n_ret:
        raise ConfigError(
            f"scales must lie in [4, window - 1 = {n_ret}] (a linear fit per segment needs 4 points and "
            f"every scale needs at least one segment); got {out!r}. Use a longer window or smaller scales."
        )
    return out


# ----------------------------------------------------------------------------------------- slope helpers


def _slope_weights(x: FloatArray) -> FloatArray:
    # Least-squares slope of y on x is y @ w with w = (x - mean x) / sum((x - mean x)^2).
    xc = x - x.mean()
    return xc / (xc @ xc)


def _finite_or_nan(v: FloatArray) -> FloatArray:
    v[~np.isfinite(v)] = np.nan
    return v


# ------------------------------------------------------------------------------- per-window kernels (2-D)


def _katz_kernel(w: FloatArray) -> FloatArray:
    steps = np.abs(np.diff(w, axis=1))
    length = steps.sum(axis=1)
    dist = np.abs(w[:, 1:] - w[:, :1]).max(axis=1)
    log_m = np.log10(w.shape[1] - 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = log_m / (log_m + np.log10(dist / length))
    return _finite_or_nan(out)


def _make_higuchi_kernel(k_max: int) -> Callable[[FloatArray], FloatArray]:
    ks = np.arange(1, k_max + 1, dtype=np.float64)
    weights = _slope_weights(np.log(ks))

    def kernel(w: FloatArray) -> FloatArray:
        n = w.shape[1]
        log_len = np.empty((w.shape[0], k_max))
        for k in range(1, k_max + 1):
            lagged = np.abs(w[:, k:] - w[:, :-k])
            total = np.zeros(w.shape[0])
            for m in range(k):
                count = (n - 1 - m) // k
                total += lagged[:, m::k].sum(axis=1) * ((n - 1) / (count * k * k))
            with np.errstate(divide="ignore"):
                log_len[:, k - 1] = np.log(total / k)
        with np.errstate(invalid="ignore"):
            return _finite_or_nan(-(log_len @ weights))

    return kernel


def _make_rs_kernel(sizes: tuple[int, ...]) -> Callable[[FloatArray], FloatArray]:
    weights = _slope_weights(np.log(np.asarray(sizes, dtype=np.float64)))

    def kernel(r: FloatArray) -> FloatArray:
        rows, n_ret = r.shape
        log_rs = np.empty((rows, len(sizes)))
        for j, size in enumerate(sizes):
            chunks = n_ret // size
            seg = r[:, n_ret - chunks * size :].reshape(rows, chunks, size)
            dev = seg - seg.mean(axis=2, keepdims=True)
            prof = np.cumsum(dev, axis=2)
            rng = prof.max(axis=2) - prof.min(axis=2)
            std = np.sqrt((dev * dev).mean(axis=2))
            ok = std > 0.0
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = np.where(ok, rng / np.where(ok, std, 1.0), 0.0).sum(axis=1) / ok.sum(axis=1)
                log_rs[:, j] = np.log(ratio)
        with np.errstate(invalid="ignore"):
            return _finite_or_nan(log_rs @ weights)

    return kernel


def _make_dfa_kernel(scales: tuple[int, ...]) -> Callable[[FloatArray], FloatArray]:
    weights = _slope_weights(np.log(np.asarray(scales, dtype=np.float64)))
    centred = {s: np.arange(s, dtype=np.float64) - (s - 1) / 2.0 for s in scales}

    def kernel(r: FloatArray) -> FloatArray:
        rows, n_ret = r.shape
        profile = np.cumsum(r - r.mean(axis=1, keepdims=True), axis=1)
        log_f = np.empty((rows, len(scales)))
        for j, s in enumerate(scales):
            segs = n_ret // s
            seg = profile[:, n_ret - segs * s :].reshape(rows, segs, s)
            xc = centred[s]
            yc = seg - seg.mean(axis=2, keepdims=True)
            slope = (yc @ xc) / (xc @ xc)
            resid = yc - slope[..., None] * xc
            f2 = (resid * resid).mean(axis=(1, 2))
            with np.errstate(divide="ignore"):
                log_f[:, j] = 0.5 * np.log(f2)
        with np.errstate(invalid="ignore"):
            return _finite_or_nan(log_f @ weights)

    return kernel


def _rolling(
    series: FloatArray, window: int, kernel: Callable[[FloatArray], FloatArray], offset: int
) -> FloatArray:
    # Apply kernel to every trailing window of `series`; output element t = window - 1 + offset + j.
    out = np.full(series.size + offset, np.nan)
    if series.size < window:
        return out
    view = sliding_window_view(series, window)
    rows = max(1, _CHUNK_ELEMENTS // window)
    start = window - 1 + offset
    for i in range(0, view.shape[0], rows):
        block = view[i : i + rows]
        out[start + i : start + i + block.shape[0]] = kernel(block)
    return out


# ---------------------------------------------------------------------------------------- batch functions


def katz_fd(x: npt.ArrayLike, window: int = 64) -> FloatArray:
    """Rolling Katz fractal dimension of a path.

    Parameters
    ----------
    x : array_like, shape (n,)
        The path, e.g. close prices or log prices; finite.
    window : int, default 64
        Points per window (``window - 1`` steps), at least 3.

    Returns
    -------
    numpy.ndarray, shape (n,), float64
        Unitless dimension, 1 for a straight line; NaN for ``t < window - 1`` and on flat windows.
    """
    window = _check_katz(window)
    return _rolling(_as_series(x, "x", positive=False), window, _katz_kernel, 0)


def higuchi_fd(x: npt.ArrayLike, window: int = 128, k_max: int = 10) -> FloatArray:
    """Rolling Higuchi fractal dimension of a path.

    Parameters
    ----------
    x : array_like, shape (n,)
        The path, e.g. close prices or log prices; finite.
    window : int, default 128
        Points per window, at least ``2 * k_max``.
    k_max : int, default 10
        Largest lag of the curve-length regression, at least 2.

    Returns
    -------
    numpy.ndarray, shape (n,), float64
        Unitless dimension in about [1, 2]; NaN for ``t < window - 1`` and on flat windows.
    """
    window, k_max = _check_higuchi(window, k_max)
    return _rolling(_as_series(x, "x", positive=False), window, _make_higuchi_kernel(k_max), 0)


def _log_returns(close: npt.ArrayLike) -> FloatArray:
    return np.diff(np.log(_as_series(close, "close", positive=True)))


def hurst_rs(close: npt.ArrayLike, window: int = 256, min_chunk: int = 8) -> FloatArray:
    """Rolling Hurst exponent by rescaled range on log returns.

    Parameters
    ----------
    close : array_like, shape (n,)
        Close prices, finite and strictly positive.
    window : int, default 256
        Closes per window (``window - 1`` log returns); ``window - 1 >= 2 * min_chunk``.
    min_chunk : int, default 8
        Smallest chunk size; sizes are ``min_chunk * 2**j`` up to ``window - 1``. At least 4.

    Returns
    -------
    numpy.ndarray, shape (n,), float64
        Unitless exponent; NaN for ``t < window - 1``. Upward-biased in small samples (see module notes).
    """
    sizes = _rs_sizes(window, min_chunk)
    return _rolling(_log_returns(close), window - 1, _make_rs_kernel(sizes), 1)


def hurst_dfa(close: npt.ArrayLike, window: int = 256, scales: Sequence[int] | None = None) -> FloatArray:
    """Rolling Hurst exponent by order-1 detrended fluctuation analysis of log returns.

    Parameters
    ----------
    close : array_like, shape (n,)
        Close prices, finite and strictly positive.
    window : int, default 256
        Closes per window (``window - 1`` log returns), at least 17.
    scales : sequence of int, optional
        Strictly increasing segment lengths in ``[4, window - 1]``. By default powers of two from 8 up to a
        quarter of the returns (``(8, 16, 32, 64)`` for ``window=256``).

    Returns
    -------
    numpy.ndarray, shape (n,), float64
        Unitless DFA exponent; NaN for ``t < window - 1`` and on windows of constant returns.
    """
    sc = _dfa_scales(window, scales)
    return _rolling(_log_returns(close), window - 1, _make_dfa_kernel(sc), 1)


# ------------------------------------------------------------------------------------------------ streams


class _Ring:
    """Fixed-capacity ring buffer written twice so the newest ``w`` values are always one contiguous slice."""

    def __init__(self, capacity: int) -> None:
        self._cap = capacity
        self._buf = np.zeros(2 * capacity)
        self.count = 0

    def push(self, value: float) -> None:
        pos = self.count % self._cap
        self._buf[pos] = value
        self._buf[pos + self._cap] = value
        self.count += 1

    def last(self, w: int) -> FloatArray:
        end = (self.count - 1) % self._cap + self._cap + 1
        return self._buf[end - w : end]


def _check_price(close: float) -> float:
    value = float(close)
    if not np.isfinite(value) or value <= 0.0:
        raise DataFormatError(f"close must be a finite, strictly positive price; got {close!r}.")
    return value


class FractalStream:
    """Incremental Katz and Higuchi fractal dimensions, equal to :func:`katz_fd` and :func:`higuchi_fd`.

    Parameters
    ----------
    katz_window : int, default 64
    higuchi_window : int, default 128
    k_max : int, default 10

    Each :meth:`update` costs O(window * k_max) (the estimators have no O(1) recursion).
    """

    names: tuple[str, ...] = ("katz_fd", "higuchi_fd")

    def __init__(self, katz_window: int = 64, higuchi_window: int = 128, k_max: int = 10) -> None:
        self.katz_window = _check_katz(katz_window)
        self.higuchi_window, self.k_max = _check_higuchi(higuchi_window, k_max)
        self._higuchi = _make_higuchi_kernel(self.k_max)
        self._ring = _Ring(max(self.katz_window, self.higuchi_window))

    @property
    def lookback(self) -> int:
        """Bars before the first fully defined update (``max window - 1``)."""
        return max(self.katz_window, self.higuchi_window) - 1

    def update(self, close: float) -> FloatArray:
        """Add one close; return ``[katz_fd, higuchi_fd]`` at this bar, shape (2,), NaN while warming up."""
        self._ring.push(_check_price(close))
        out = np.full(2, np.nan)
        if self._ring.count >= self.katz_window:
            out[0] = _katz_kernel(self._ring.last(self.katz_window)[None, :])[0]
        if self._ring.count >= self.higuchi_window:
            out[1] = self._higuchi(self._ring.last(self.higuchi_window)[None, :])[0]
        return out


class HurstStream:
    """Incremental R/S and DFA Hurst exponents, equal to :func:`hurst_rs` and :func:`hurst_dfa`.

    Parameters
    ----------
    window : int, default 256
        Closes per window for both estimators.
    min_chunk : int, default 8
    scales : sequence of int, optional

    Each :meth:`update` costs O(window * number of scales).
    """

    names: tuple[str, ...] = ("hurst_rs", "hurst_dfa")

    def __init__(self, window: int = 256, min_chunk: int = 8, scales: Sequence[int] | None = None) -> None:
        sizes = _rs_sizes(window, min_chunk)
        self.scales = _dfa_scales(window, scales)
        self.window = int(window)
        self.min_chunk = int(min_chunk)
        self._rs = _make_rs_kernel(sizes)
        self._dfa = _make_dfa_kernel(self.scales)
        self._ring = _Ring(self.window)

    @property
    def lookback(self) -> int:
        """Bars before the first defined update (``window - 1``)."""
        return self.window - 1

    def update(self, close: float) -> FloatArray:
        """Add one close; return ``[hurst_rs, hurst_dfa]`` at this bar, shape (2,), NaN while warming up."""
        self._ring.push(_check_price(close))
        if self._ring.count < self.window:
            return np.full(2, np.nan)
        r = np.diff(np.log(self._ring.last(self.window)))[None, :]
        return np.array([self._rs(r)[0], self._dfa(r)[0]])
