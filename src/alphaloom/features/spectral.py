"""Spectral features: wavelet energies, wavelet-denoised trend and Fourier bands on trailing windows.

Every function takes closes of shape ``(n,)`` and returns float64 values aligned with them: row ``t`` uses
the closes ``t - window + 1 .. t`` only, never later ones, so no feature can look ahead. Rows before
``window - 1`` (the warm-up) are NaN; a series shorter than the window is all NaN.
Closes must be finite and positive.

The batch functions slide a window over the whole series (:func:`numpy.lib.stride_tricks.sliding_window_view`,
processed in chunks to bound memory) and transform all windows at once; :class:`WaveletStream` and
:class:`FourierStream` keep a ring buffer of the last ``window`` log closes and run the same kernels on one
window per bar (O(window log window) per update), so streaming equals batch to rounding.

Boundary modes
--------------
Energies use ``mode="periodization"``: the transform is then orthogonal, so the shares split the window's
return energy (Parseval) with ``window / 2``, ``window / 4`` ... coefficients per level. The denoised trend
uses ``mode="symmetric"``: periodization would wrap the window's last price onto its first, and the trend is
read at exactly that last point.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt
import pywt
from numpy.lib.stride_tricks import sliding_window_view

from alphaloom.core.exceptions import ConfigError, DataFormatError, did_you_mean

__all__ = [
    "FourierStream",
    "WaveletStream",
    "fourier_features",
    "wavelet_denoised_trend",
    "wavelet_energies",
]

FloatArray = npt.NDArray[np.float64]
Bands = Sequence[tuple[float, float]]

DEFAULT_BANDS: tuple[tuple[float, float], ...] = ((2.0, 5.0), (5.0, 20.0), (20.0, 64.0))

# Rows of windows transformed at once: bounds the temporary (rows x window) arrays to tens of MB.
_CHUNK_ROWS = 16_384
# MAD of a standard normal: sigma = median(|d1|) / 0.6745 (Donoho and Johnstone).
_MAD_TO_SIGMA = 0.6744897501960817


# ---------------------------------------------------------------------------------------------- validation


def _closes(close: npt.ArrayLike) -> FloatArray:
    arr = np.asarray(close, dtype=np.float64)
    if arr.ndim != 1:
        raise DataFormatError(f"close must be one-dimensional with shape (n,), got shape {arr.shape}.")
    bad = ~(np.isfinite(arr) & (arr > 0.0))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataFormatError(
            f"close must be finite and positive (spectral features use log prices), got {arr[i]!r} at "
            f"index {i}; drop or repair such bars before computing features."
        )
    return arr


def _positive_int(value: int, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}.")
    return int(value)


def _wavelet(name: str) -> pywt.Wavelet:
    families = pywt.wavelist(kind="discrete")
    if name not in families:
        raise ConfigError(
            f"wavelet must be a discrete PyWavelets wavelet such as 'db4' or 'sym8', got {name!r}."
            + did_you_mean(str(name), families)
        )
    return pywt.Wavelet(name)


def _mode(mode: str) -> str:
    if mode not in pywt.Modes.modes:
        raise ConfigError(
            f"mode must be a PyWavelets extension mode ({', '.join(pywt.Modes.modes)}), got {mode!r}."
            + did_you_mean(str(mode), pywt.Modes.modes)
        )
    return mode


def _check_level(wavelet: pywt.Wavelet, level: int, n_samples: int, window: int, what: str) -> int:
    level = _positive_int(level, "level", 1)
    max_level = pywt.dwt_max_level(n_samples, wavelet.dec_len)
    if level > max_level:
        # Smallest window whose samples support this level: n >= (dec_len - 1) * 2**level.
        need = (wavelet.dec_len - 1) * 2**level + (window - n_samples)
        raise ConfigError(
            f"window={window} is too small for a level-{level} {wavelet.name} decomposition of the {what} "
            f"({n_samples} samples allow level <= {max_level}); use window >= {need} or a lower level."
        )
    return level


def _check_bands(bands: Bands) -> tuple[tuple[float, float], ...]:
    out = []
    for band in bands:
        try:
            lo, hi = (float(v) for v in band)
        except (TypeError, ValueError) as exc:
            raise ConfigError(
                f"each band must be a (low, high) pair of periods in bars, got {band!r}."
            ) from exc
        if not (2.0 <= lo < hi):
            raise ConfigError(
                f"band periods must satisfy 2 <= low < high (2 bars is the shortest period a bar series "
                f"resolves), got {band!r}."
            )
        out.append((lo, hi))
    if not out:
        raise ConfigError("bands must hold at least one (low, high) period pair, got none.")
    return tuple(out)


# ------------------------------------------------------------------------------------------------- kernels


def _energy_kernel(returns: FloatArray, wavelet: pywt.Wavelet, level: int, mode: str) -> FloatArray:
    """Relative energies of (rows, m) return windows, columns d1..d_level then a_level."""
    coeffs = pywt.wavedec(returns, wavelet, mode=mode, level=level, axis=-1)
    # wavedec returns [a_L, d_L, ..., d_1]; reverse to fine-to-coarse details followed by the approximation.
    energy = np.stack([np.einsum("ij,ij->i", c, c) for c in (*coeffs[:0:-1], coeffs[0])], axis=1)
    total = energy.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0.0, energy / total, np.nan)


def _trend_kernel(logp: FloatArray, wavelet: pywt.Wavelet, level: int, mode: str) -> FloatArray:
    """close / trend - 1 at the last point of (rows, window) log-price windows."""
    n = logp.shape[1]
    coeffs = pywt.wavedec(logp, wavelet, mode=mode, level=level, axis=-1)
    sigma = np.median(np.abs(coeffs[-1]), axis=1, keepdims=True) / _MAD_TO_SIGMA
    thr = sigma * math.sqrt(2.0 * math.log(n))
    shrunk = [coeffs[0]] + [np.sign(c) * np.maximum(np.abs(c) - thr, 0.0) for c in coeffs[1:]]
    trend = pywt.waverec(shrunk, wavelet, mode=mode, axis=-1)[:, n - 1]
    return np.expm1(logp[:, -1] - trend)


def _fourier_kernel(logp: FloatArray, band_masks: FloatArray, periods: FloatArray) -> FloatArray:
    """Dominant period and band shares of (rows, window) log-price windows."""
    n = logp.shape[1]
    x = np.arange(n, dtype=np.float64) - (n - 1) / 2.0
    centred = logp - logp.mean(axis=1, keepdims=True)
    slope = (centred @ x) / (x @ x)
    resid = (centred - slope[:, None] * x) * np.hanning(n)
    power = np.abs(np.fft.rfft(resid, axis=1)[:, 1:]) ** 2  # drop the DC bin
    total = power.sum(axis=1)
    out = np.empty((logp.shape[0], 1 + band_masks.shape[0]), dtype=np.float64)
    out[:, 0] = periods[np.argmax(power, axis=1)]
    with np.errstate(invalid="ignore", divide="ignore"):
        out[:, 1:] = (power @ band_masks.T) / total[:, None]
    out[total <= 0.0] = np.nan
    return out


def _fourier_setup(window: int, bands: Bands) -> tuple[FloatArray, FloatArray]:
    periods = window / np.arange(1, window // 2 + 1, dtype=np.float64)
    masks = np.array([(periods >= lo) & (periods <= hi) for lo, hi in _check_bands(bands)], dtype=np.float64)
    return masks, periods


def _rolling(
    series: FloatArray, window: int, width: int, kernel: Callable[[FloatArray], FloatArray], n_out: int
) -> FloatArray:
    """Apply ``kernel`` to every trailing ``width``-sample view of ``series``; row t ends at ``series[t]``.

    ``series`` is aligned with the closes minus ``window - width`` leading samples (the returns lack one).
    """
    n = len(series) + (window - width)
    out = np.full((n, n_out), np.nan, dtype=np.float64)
    if len(series) < width:
        return out
    views = sliding_window_view(series, width)
    for start in range(0, len(views), _CHUNK_ROWS):
        block = np.ascontiguousarray(views[start : start + _CHUNK_ROWS])
        res = kernel(block)
        out[window - 1 + start : window - 1 + start + len(block)] = res.reshape(len(block), n_out)
    return out


# --------------------------------------------------------------------------------------------------- batch


def wavelet_energies(
    close: npt.ArrayLike,
    window: int = 64,
    wavelet: str = "db4",
    level: int = 3,
    *,
    mode: str = "periodization",
) -> FloatArray:
    """Relative wavelet energy of each detail level and the approximation of trailing log returns.

    Parameters
    ----------
    close
        Closes, shape ``(n,)``, finite and positive.
    window
        Closes per window; the ``window - 1`` log returns inside it are decomposed.
    wavelet
        A discrete PyWavelets wavelet name.
    level
        Decomposition depth; at most ``pywt.dwt_max_level(window - 1, filter length)``.
    mode
        PyWavelets signal-extension mode (see the module notes).

    Returns
    -------
    numpy.ndarray
        Shape ``(n, level + 1)``: columns ``d1, d2, ..., d_level, a_level`` (finest detail first), each the
        share of the window's wavelet energy, summing to 1. Defined from row ``window - 1``; NaN where the
        window's returns are all zero.

    Notes
    -----
    For white-noise returns each coefficient carries the same energy in expectation, so the shares are
    proportional to the coefficient counts (about 1/2, 1/4, 1/8, 1/8 for three levels), not equal.
    """
    close = _closes(close)
    window = _positive_int(window, "window", 3)
    wav = _wavelet(wavelet)
    level = _check_level(wav, level, window - 1, window, "log returns")
    mode = _mode(mode)
    returns = np.diff(np.log(close))
    return _rolling(returns, window, window - 1, lambda b: _energy_kernel(b, wav, level, mode), level + 1)


def wavelet_denoised_trend(
    close: npt.ArrayLike,
    window: int = 64,
    wavelet: str = "db4",
    level: int = 3,
    *,
    mode: str = "symmetric",
) -> FloatArray:
    """Close over its wavelet-denoised trend, minus one, at the end of each trailing window.

    Each window of log closes is decomposed, every detail coefficient is soft-thresholded at the universal
    threshold ``sigma * sqrt(2 ln window)`` (``sigma`` the MAD noise estimate from the finest details), and
    the series is rebuilt; its last value is the trend.

    Parameters
    ----------
    close
        Closes, shape ``(n,)``, finite and positive.
    window
        Closes per window.
    wavelet
        A discrete PyWavelets wavelet name.
    level
        Decomposition depth; at most ``pywt.dwt_max_level(window, filter length)``.
    mode
        PyWavelets signal-extension mode (see the module notes).

    Returns
    -------
    numpy.ndarray
        Shape ``(n,)``, unitless (``close / trend - 1``); defined from row ``window - 1``.
    """
    close = _closes(close)
    window = _positive_int(window, "window", 2)
    wav = _wavelet(wavelet)
    level = _check_level(wav, level, window, window, "log prices")
    mode = _mode(mode)
    logp = np.log(close)
    return _rolling(logp, window, window, lambda b: _trend_kernel(b, wav, level, mode), 1)[:, 0]


def fourier_features(
    close: npt.ArrayLike,
    window: int = 128,
    bands: Bands = DEFAULT_BANDS,
) -> FloatArray:
    """Dominant period and spectral-energy shares of trailing, linearly detrended, Hann-tapered log prices.

    Parameters
    ----------
    close
        Closes, shape ``(n,)``, finite and positive.
    window
        Closes per window (at least 8).
    bands
        ``(low, high)`` period ranges in bars, ``2 <= low < high``; a frequency bin belongs to a band when
        its period ``window / k`` lies in ``[low, high]``.

    Returns
    -------
    numpy.ndarray
        Shape ``(n, 1 + len(bands))``: column 0 is the dominant period in bars (``window / k`` of the
        strongest bin ``k >= 1``), then each band's share of the non-DC spectral energy (shares need not sum
        to 1: bins outside every band count only in the total). Defined from row ``window - 1``; NaN for a
        window that is exactly linear.
    """
    close = _closes(close)
    window = _positive_int(window, "window", 8)
    masks, periods = _fourier_setup(window, bands)
    logp = np.log(close)
    return _rolling(logp, window, window, lambda b: _fourier_kernel(b, masks, periods), 1 + len(masks))


# ----------------------------------------------------------------------------------------------- streaming


class _LogRing:
    """The last ``size`` log closes, readable as one contiguous array without copying."""

    def __init__(self, size: int) -> None:
        self._size = size
        # Each value is written twice, at i and i + size, so buf[pos : pos + size] is always in time order.
        self._buf = np.zeros(2 * size, dtype=np.float64)
        self._pos = 0
        self.count = 0

    def push(self, close: float) -> None:
        value = float(close)
        if not (math.isfinite(value) and value > 0.0):
            raise DataFormatError(
                f"close must be finite and positive (spectral features use log prices), got {close!r}."
            )
        logv = float(np.log(np.float64(value)))
        self._buf[self._pos] = logv
        self._buf[self._pos + self._size] = logv
        self._pos = (self._pos + 1) % self._size
        self.count += 1

    @property
    def full(self) -> bool:
        return self.count >= self._size

    def window(self) -> FloatArray:
        return self._buf[self._pos : self._pos + self._size]


class WaveletStream:
    """Incremental :func:`wavelet_energies` and :func:`wavelet_denoised_trend` on a shared window.

    Parameters
    ----------
    window, wavelet, level
        As for the batch functions; both features use the same window.
    energy_mode, trend_mode
        The batch functions' ``mode`` arguments.

    Notes
    -----
    :meth:`update` returns shape ``(level + 2,)``: the ``level + 1`` energy shares, then the trend ratio;
    equal to ``np.column_stack([wavelet_energies(...), wavelet_denoised_trend(...)])[t]`` to rounding.
    """

    def __init__(
        self,
        window: int = 64,
        wavelet: str = "db4",
        level: int = 3,
        *,
        energy_mode: str = "periodization",
        trend_mode: str = "symmetric",
    ) -> None:
        self.window = _positive_int(window, "window", 3)
        self._wavelet = _wavelet(wavelet)
        self.level = _check_level(self._wavelet, level, self.window - 1, self.window, "log returns")
        self.energy_mode = _mode(energy_mode)
        self.trend_mode = _mode(trend_mode)
        self._ring = _LogRing(self.window)
        self._nan = np.full(self.level + 2, np.nan, dtype=np.float64)

    @property
    def n_features(self) -> int:
        """Length of each :meth:`update` result."""
        return self.level + 2

    def update(self, close: float) -> FloatArray:
        """Add one close and return the features of the window ending at it (NaN during warm-up)."""
        self._ring.push(close)
        if not self._ring.full:
            return self._nan.copy()
        logp = self._ring.window()[None, :]
        energies = _energy_kernel(np.diff(logp, axis=1), self._wavelet, self.level, self.energy_mode)[0]
        trend = _trend_kernel(logp, self._wavelet, self.level, self.trend_mode)
        return np.concatenate((energies, trend))


class FourierStream:
    """Incremental :func:`fourier_features`.

    Parameters
    ----------
    window, bands
        As for :func:`fourier_features`.

    Notes
    -----
    :meth:`update` returns shape ``(1 + len(bands),)``, equal to ``fourier_features(...)[t]`` to rounding.
    """

    def __init__(self, window: int = 128, bands: Bands = DEFAULT_BANDS) -> None:
        self.window = _positive_int(window, "window", 8)
        self._masks, self._periods = _fourier_setup(self.window, bands)
        self._ring = _LogRing(self.window)
        self._nan = np.full(1 + len(self._masks), np.nan, dtype=np.float64)

    @property
    def n_features(self) -> int:
        """Length of each :meth:`update` result."""
        return 1 + len(self._masks)

    def update(self, close: float) -> FloatArray:
        """Add one close and return the features of the window ending at it (NaN during warm-up)."""
        self._ring.push(close)
        if not self._ring.full:
            return self._nan.copy()
        return _fourier_kernel(self._ring.window()[None, :], self._masks, self._periods)[0]
