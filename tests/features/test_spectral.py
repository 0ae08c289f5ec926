"""Spectral features: shapes and warm-up, known signals, no look-ahead, batch/stream parity, bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import pywt
from hypothesis import given, settings
from hypothesis import strategies as st

from alphaloom.core.exceptions import ConfigError, DataFormatError
from alphaloom.features import spectral
from alphaloom.features.spectral import (
    FourierStream,
    WaveletStream,
    fourier_features,
    wavelet_denoised_trend,
    wavelet_energies,
)

PARITY_TOL = 1e-12


def _walk(seed: int, n: int, vol: float = 0.01) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return 100.0 * np.exp(np.cumsum(rng.normal(0.0, vol, n)))


# ------------------------------------------------------------------------------------- shapes and warm-up


def test_shapes_and_warm_up() -> None:
    close = _walk(1, 300)
    energies = wavelet_energies(close, window=64, level=3)
    trend = wavelet_denoised_trend(close, window=64, level=3)
    fourier = fourier_features(close, window=128)
    assert energies.shape == (300, 4)
    assert energies.dtype == np.float64
    assert trend.shape == (300,)
    assert trend.dtype == np.float64
    assert fourier.shape == (300, 4)
    assert fourier.dtype == np.float64
    assert np.isnan(energies[:63]).all()
    assert np.isfinite(energies[63:]).all()
    assert np.isnan(trend[:63]).all()
    assert np.isfinite(trend[63:]).all()
    assert np.isnan(fourier[:127]).all()
    assert np.isfinite(fourier[127:]).all()
    np.testing.assert_allclose(energies[63:].sum(axis=1), 1.0, rtol=0, atol=1e-12)
    assert ((fourier[127:, 1:] >= 0.0) & (fourier[127:, 1:] <= 1.0)).all()


def test_series_shorter_than_window_is_all_nan() -> None:
    close = _walk(2, 50)
    assert np.isnan(wavelet_energies(close)).all()
    assert np.isnan(wavelet_denoised_trend(close)).all()
    assert np.isnan(fourier_features(close)).all()


# ------------------------------------------------------------------------------------------ known signals


def test_sine_of_period_16_dominates_its_band() -> None:
    t = np.arange(600)
    close = 100.0 * np.exp(0.02 * np.sin(2.0 * np.pi * t / 16.0) + 0.0005 * t)
    out = fourier_features(close, window=128, bands=((2, 5), (5, 20), (20, 64)))[127:]
    assert np.all(np.abs(out[:, 0] - 16.0) <= 1.0)
    assert np.all(out[:, 2] > 0.95)  # the (5, 20) band holds period 16


def test_white_noise_energy_per_coefficient_is_flat() -> None:
    # Orthogonal transform (periodization): white noise puts equal energy on every coefficient in
    # expectation, so level shares follow the coefficient counts 32, 16, 8, 8 of a 64-return window.
    close = _walk(3, 20_065)
    shares = np.nanmean(wavelet_energies(close, window=65, level=3), axis=0)
    counts = np.array([32.0, 16.0, 8.0, 8.0])
    per_coefficient = shares / counts * counts.sum()
    np.testing.assert_allclose(per_coefficient, 1.0, rtol=0.05)


def test_trend_of_a_noiseless_exponential_is_the_price_itself() -> None:
    close = 50.0 * np.exp(0.001 * np.arange(200))
    trend = wavelet_denoised_trend(close, window=64)[63:]
    np.testing.assert_allclose(trend, 0.0, atol=1e-9)


# ---------------------------------------------------------------------------------------- no look-ahead


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    t=st.integers(0, 159),
    scale=st.floats(0.5, 2.0),
)
def test_changing_later_closes_never_changes_earlier_features(seed: int, t: int, scale: float) -> None:
    close = _walk(seed, 160, vol=0.02)
    changed = close.copy()
    changed[t + 1 :] *= scale * np.exp(np.random.default_rng(seed + 1).normal(0.0, 0.05, 159 - t))
    for fn in (
        lambda c: wavelet_energies(c, window=32, level=2),
        lambda c: wavelet_denoised_trend(c, window=32, level=2),
        lambda c: fourier_features(c, window=32, bands=((2, 8), (8, 16))),
    ):
        np.testing.assert_array_equal(fn(close)[: t + 1], fn(changed)[: t + 1])


# ---------------------------------------------------------------------------------- batch/stream parity


def test_wavelet_stream_equals_batch_on_spy(spy: pd.DataFrame) -> None:
    close = spy["close"].to_numpy()
    stream = WaveletStream(window=64, wavelet="db4", level=3)
    streamed = np.array([stream.update(c) for c in close])
    batch = np.column_stack([wavelet_energies(close), wavelet_denoised_trend(close)])
    assert streamed.shape == batch.shape == (len(close), stream.n_features)
    np.testing.assert_array_equal(np.isnan(streamed), np.isnan(batch))
    np.testing.assert_allclose(streamed, batch, rtol=0, atol=PARITY_TOL)


def test_fourier_stream_equals_batch_on_spy(spy: pd.DataFrame) -> None:
    close = spy["close"].to_numpy()
    bands = ((2, 5), (5, 20), (20, 64))
    stream = FourierStream(window=128, bands=bands)
    streamed = np.array([stream.update(c) for c in close])
    batch = fourier_features(close, window=128, bands=bands)
    assert streamed.shape == batch.shape == (len(close), stream.n_features)
    np.testing.assert_array_equal(np.isnan(streamed), np.isnan(batch))
    np.testing.assert_allclose(streamed, batch, rtol=0, atol=PARITY_TOL)


# ------------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "fn", [wavelet_energies, wavelet_denoised_trend, fourier_features], ids=["energies", "trend", "fourier"]
)
@pytest.mark.parametrize("bad", [0.0, -1.0, np.nan, np.inf])
def test_non_positive_or_non_finite_closes_are_refused(fn, bad: float) -> None:
    close = _walk(5, 300)
    close[100] = bad
    with pytest.raises(DataFormatError, match=r"finite and positive.*index 100"):
        fn(close)


def test_two_dimensional_input_is_refused() -> None:
    with pytest.raises(DataFormatError, match="one-dimensional"):
        fourier_features(np.ones((10, 2)))


def test_window_too_small_for_level_says_how_to_fix() -> None:
    with pytest.raises(ConfigError, match=r"window=32 is too small.*use window >= \d+ or a lower level"):
        wavelet_energies(_walk(6, 100), window=32, level=3)
    with pytest.raises(ConfigError, match="too small"):
        WaveletStream(window=16, level=3)


@pytest.mark.parametrize("window", [0, 4, 2.5, True])
def test_bad_fourier_window(window) -> None:
    with pytest.raises(ConfigError, match="window must be an integer >= 8"):
        fourier_features(_walk(7, 100), window=window)


def test_unknown_wavelet_and_mode_suggest_a_name() -> None:
    with pytest.raises(ConfigError, match="Did you mean 'db4'"):
        wavelet_energies(_walk(8, 100), wavelet="bd4")
    with pytest.raises(ConfigError, match="Did you mean 'symmetric'"):
        wavelet_denoised_trend(_walk(8, 100), mode="symetric")


@pytest.mark.parametrize("bands", [(), ((1, 5),), ((5, 5),), ((10, 2),), ((3,),)])
def test_bad_bands(bands) -> None:
    with pytest.raises(ConfigError, match="band"):
        fourier_features(_walk(9, 200), bands=bands)


def test_stream_refuses_a_bad_close() -> None:
    stream = FourierStream(window=16)
    with pytest.raises(DataFormatError, match="finite and positive"):
        stream.update(-3.0)


# ------------------------------------------------------------- compiled trend kernel vs the textbook recipe
#
# The denoised trend runs as a compiled kernel of precomputed linear maps and a median sorting network; it
# must equal the plain recipe per window (pywt.wavedec, MAD threshold, pywt.threshold, pywt.waverec) to 1e-12.


def _reference_trend(close_window: np.ndarray, wavelet: str, level: int, mode: str) -> float:
    logp = np.log(close_window)
    coeffs = pywt.wavedec(logp, wavelet, mode=mode, level=level)
    sigma = np.median(np.abs(coeffs[-1])) / 0.6744897501960817
    thr = sigma * np.sqrt(2.0 * np.log(len(logp)))
    shrunk = [coeffs[0], *(pywt.threshold(c, thr, mode="soft") for c in coeffs[1:])]
    return float(np.expm1(logp[-1] - pywt.waverec(shrunk, wavelet, mode=mode)[len(logp) - 1]))


@pytest.mark.parametrize(
    ("window", "wavelet", "level", "mode"),
    [
        (64, "db4", 3, "symmetric"),
        (128, "sym8", 3, "symmetric"),
        (33, "db2", 2, "reflect"),
        (50, "coif1", 2, "periodization"),
        (64, "haar", 4, "zero"),
    ],
)
def test_trend_equals_the_textbook_recipe_on_real_data(
    stock_panel: pd.DataFrame, window: int, wavelet: str, level: int, mode: str
) -> None:
    close = stock_panel.loc[stock_panel["symbol"] == "AAPL", "close"].to_numpy()
    got = wavelet_denoised_trend(close, window, wavelet, level, mode=mode)
    ends = np.random.default_rng(window).integers(window - 1, len(close), 80)
    for t in (*ends, window - 1, len(close) - 1):
        want = _reference_trend(close[t - window + 1 : t + 1], wavelet, level, mode)
        assert abs(got[t] - want) <= PARITY_TOL, (t, got[t], want)


@settings(max_examples=60, deadline=None)
@given(values=st.lists(st.integers(0, 6).map(float) | st.floats(0, 1e3), min_size=1, max_size=80))
def test_median_network_gives_the_median(values: list[float]) -> None:
    a = np.array(values)
    for lo, hi in spectral._median_network(a.size):
        if a[hi] < a[lo]:
            a[lo], a[hi] = a[hi], a[lo]
    k = (a.size - 1) // 2
    got = a[k] if a.size % 2 else (a[k] + a[k + 1]) / 2.0
    assert got == np.median(values)


def test_trend_stream_is_bit_identical_to_batch(spy: pd.DataFrame) -> None:
    close = spy["close"].to_numpy()[:400]
    stream = WaveletStream(window=40, wavelet="db3", level=2)
    streamed = np.array([stream.update(c) for c in close])[:, -1]
    np.testing.assert_array_equal(streamed, wavelet_denoised_trend(close, 40, "db3", 2))


def test_fourier_equals_the_textbook_recipe_on_real_data(stock_panel: pd.DataFrame) -> None:
    close = stock_panel.loc[stock_panel["symbol"] == "IBM", "close"].to_numpy()
    window, bands = 128, ((2, 5), (5, 20), (20, 64))
    got = fourier_features(close, window, bands)
    periods = window / np.arange(1, window // 2 + 1)
    for t in (*np.random.default_rng(5).integers(window - 1, len(close), 80), window - 1, len(close) - 1):
        logp = np.log(close[t - window + 1 : t + 1])
        x = np.arange(window)
        resid = (logp - np.polyval(np.polyfit(x, logp, 1), x)) * np.hanning(window)
        power = np.abs(np.fft.rfft(resid)[1:]) ** 2
        want = [periods[np.argmax(power)]] + [
            power[(periods >= lo) & (periods <= hi)].sum() / power.sum() for lo, hi in bands
        ]
        np.testing.assert_allclose(got[t], want, rtol=0, atol=PARITY_TOL)
