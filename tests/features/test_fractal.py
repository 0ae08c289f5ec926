"""Fractal dimension and Hurst exponent: warm-up, known processes, no look-ahead, batch/stream parity, errors.

Tolerances on known processes are on the mean over all defined windows of a seeded series of 5,000 bars.
R/S is biased upward in small samples (Anis-Lloyd: about 0.55-0.6 for i.i.d. returns at window 256), so its
band for Brownian motion is 0.45-0.65; DFA and Higuchi are close to unbiased and get tighter bands.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alphaloom.core.exceptions import ConfigError, DataFormatError
from alphaloom.features import fractal as fr

N = 5000


@pytest.fixture(scope="module")
def brownian() -> np.ndarray:
    """Geometric Brownian motion: i.i.d. Gaussian log returns."""
    z = np.random.default_rng(0).normal(size=N)
    return 100.0 * np.exp(np.cumsum(0.01 * z))


@pytest.fixture(scope="module")
def trending() -> np.ndarray:
    """A smooth strong trend: drift plus slowly wandering (integrated) returns, almost no noise."""
    rng = np.random.default_rng(1)
    r = 0.001 + 0.00005 * np.cumsum(rng.normal(size=N)) + 1e-5 * rng.normal(size=N)
    return 100.0 * np.exp(np.cumsum(r))


@pytest.fixture(scope="module")
def anti_persistent() -> np.ndarray:
    """Negatively autocorrelated returns: MA(1) increments e[t] - 0.8 e[t-1]."""
    e = np.random.default_rng(2).normal(size=N + 1)
    return 100.0 * np.exp(np.cumsum(0.01 * (e[1:] - 0.8 * e[:-1])))


# -------------------------------------------------------------------------------------- shapes and warm-up


@pytest.mark.parametrize(
    ("fn", "window"),
    [
        (lambda x: fr.katz_fd(x, 64), 64),
        (lambda x: fr.higuchi_fd(x, 128, 10), 128),
        (lambda x: fr.hurst_rs(x, 256, 8), 256),
        (lambda x: fr.hurst_dfa(x, 256), 256),
    ],
    ids=["katz", "higuchi", "rs", "dfa"],
)
def test_shape_and_warmup(fn, window: int, brownian: np.ndarray) -> None:
    out = fn(brownian[:1000])
    assert out.shape == (1000,)
    assert out.dtype == np.float64
    assert np.isnan(out[: window - 1]).all()
    assert np.isfinite(out[window - 1 :]).all()
    short = fn(brownian[: window - 1])
    assert short.shape == (window - 1,)
    assert np.isnan(short).all()


# ------------------------------------------------------------------------------------------ golden values


def test_katz_golden() -> None:
    # steps 2 and 1: L = 3, m = 2, d = 2 -> log 2 / (log 2 + log(2/3)) = log 2 / log(4/3)
    out = fr.katz_fd([0.0, 2.0, 1.0], window=3)
    assert math.isclose(out[2], math.log(2) / math.log(4 / 3), rel_tol=1e-12)


def test_straight_line_has_dimension_one() -> None:
    line = 100.0 + 0.5 * np.arange(300.0)
    np.testing.assert_allclose(fr.katz_fd(line, 64)[63:], 1.0, atol=1e-12)
    np.testing.assert_allclose(fr.higuchi_fd(line, 128, 10)[127:], 1.0, atol=1e-12)


def test_flat_windows_are_nan() -> None:
    flat = np.full(300, 50.0)
    assert np.isnan(fr.katz_fd(flat, 64)).all()
    assert np.isnan(fr.higuchi_fd(flat, 128)).all()
    assert np.isnan(fr.hurst_rs(flat, 256)).all()
    assert np.isnan(fr.hurst_dfa(flat, 256)).all()


# ---------------------------------------------------------------------------------------- known processes


def test_brownian_motion(brownian: np.ndarray) -> None:
    rs = np.nanmean(fr.hurst_rs(brownian))
    dfa = np.nanmean(fr.hurst_dfa(brownian))
    hig = np.nanmean(fr.higuchi_fd(np.log(brownian)))
    assert 0.45 < rs < 0.65, rs  # R/S upward bias
    assert 0.42 < dfa < 0.58, dfa
    assert 1.42 < hig < 1.58, hig


def test_trending_series(trending: np.ndarray, brownian: np.ndarray) -> None:
    assert np.nanmean(fr.higuchi_fd(trending)) < 1.05
    assert np.nanmean(fr.katz_fd(trending)) < 1.05
    assert np.nanmean(fr.katz_fd(trending)) < np.nanmean(fr.katz_fd(brownian))
    assert np.nanmean(fr.hurst_rs(trending)) > 0.85
    assert np.nanmean(fr.hurst_dfa(trending)) > 1.0


def test_anti_persistent_series(anti_persistent: np.ndarray) -> None:
    assert np.nanmean(fr.hurst_rs(anti_persistent)) < 0.4
    assert np.nanmean(fr.hurst_dfa(anti_persistent)) < 0.3


# ------------------------------------------------------------------------------------------ no look-ahead

_SMALL = {
    "katz": lambda x: fr.katz_fd(x, 8),
    "higuchi": lambda x: fr.higuchi_fd(x, 16, 4),
    "rs": lambda x: fr.hurst_rs(x, 33, 4),
    "dfa": lambda x: fr.hurst_dfa(x, 33, (4, 8, 16)),
}


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    cut=st.integers(0, 79),
    name=st.sampled_from(sorted(_SMALL)),
)
def test_no_look_ahead(seed: int, cut: int, name: str) -> None:
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(0.02 * rng.normal(size=80)))
    changed = close.copy()
    changed[cut + 1 :] = 100.0 * np.exp(np.cumsum(0.05 * rng.normal(size=79 - cut)))
    fn = _SMALL[name]
    np.testing.assert_array_equal(fn(close)[: cut + 1], fn(changed)[: cut + 1])


# ------------------------------------------------------------------------------------ batch/stream parity


@pytest.fixture(scope="module")
def spy_close() -> np.ndarray:
    from alphaloom.data.sample import load_sample

    panel: pd.DataFrame = load_sample("us_equities_daily")
    return panel.loc[panel["symbol"] == "SPY", "close"].to_numpy(dtype=np.float64)[:1500]


def test_fractal_stream_matches_batch(spy_close: np.ndarray) -> None:
    stream = fr.FractalStream(katz_window=64, higuchi_window=128, k_max=10)
    got = np.array([stream.update(c) for c in spy_close])
    assert stream.lookback == 127
    assert stream.names == ("katz_fd", "higuchi_fd")
    np.testing.assert_allclose(got[:, 0], fr.katz_fd(spy_close, 64), rtol=0, atol=1e-12, equal_nan=True)
    np.testing.assert_allclose(
        got[:, 1], fr.higuchi_fd(spy_close, 128, 10), rtol=0, atol=1e-12, equal_nan=True
    )
    assert np.isfinite(got[127:]).all()


def test_hurst_stream_matches_batch(spy_close: np.ndarray) -> None:
    stream = fr.HurstStream(window=256, min_chunk=8)
    got = np.array([stream.update(c) for c in spy_close])
    assert stream.lookback == 255
    np.testing.assert_allclose(got[:, 0], fr.hurst_rs(spy_close, 256, 8), rtol=0, atol=1e-12, equal_nan=True)
    np.testing.assert_allclose(got[:, 1], fr.hurst_dfa(spy_close, 256), rtol=0, atol=1e-12, equal_nan=True)
    assert np.isnan(got[:255]).all()
    assert np.isfinite(got[255:]).all()


def test_batch_chunking_does_not_change_values(brownian: np.ndarray, monkeypatch: pytest.MonkeyPatch) -> None:
    whole = fr.hurst_dfa(brownian[:1200]), fr.higuchi_fd(brownian[:1200])
    monkeypatch.setattr(fr, "_CHUNK_ELEMENTS", 1000)
    chunked = fr.hurst_dfa(brownian[:1200]), fr.higuchi_fd(brownian[:1200])
    for a, b in zip(whole, chunked, strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-12, equal_nan=True)


# --------------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("fn", [fr.hurst_rs, fr.hurst_dfa])
@pytest.mark.parametrize("bad", [0.0, -1.0])
def test_non_positive_prices_rejected(fn, bad: float) -> None:
    close = np.linspace(10.0, 20.0, 300)
    close[100] = bad
    with pytest.raises(DataFormatError, match="strictly positive"):
        fn(close)


@pytest.mark.parametrize("fn", [fr.katz_fd, fr.higuchi_fd, fr.hurst_rs, fr.hurst_dfa])
def test_non_finite_and_shape_rejected(fn) -> None:
    close = np.linspace(10.0, 20.0, 300)
    close[7] = np.nan
    with pytest.raises(DataFormatError, match="element 7"):
        fn(close)
    with pytest.raises(DataFormatError, match="one-dimensional"):
        fn(np.ones((10, 2)))


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: fr.katz_fd(np.ones(10), window=2), "window must be an integer >= 3"),
        (lambda: fr.higuchi_fd(np.ones(10), window=15, k_max=10), "window >= 2 \\* k_max = 20"),
        (lambda: fr.higuchi_fd(np.ones(10), k_max=1), "k_max"),
        (lambda: fr.hurst_rs(np.ones(10), window=16, min_chunk=8), "two chunk sizes"),
        (lambda: fr.hurst_rs(np.ones(10), min_chunk=2), "min_chunk"),
        (lambda: fr.hurst_dfa(np.ones(10), window=10), "window must be an integer >= 17"),
        (lambda: fr.hurst_dfa(np.ones(10), window=64, scales=(8,)), "strictly increasing"),
        (lambda: fr.hurst_dfa(np.ones(10), window=64, scales=(8, 128)), "window - 1 = 63"),
        (lambda: fr.FractalStream(katz_window=2), "window"),
        (lambda: fr.HurstStream(window=8), "window"),
    ],
)
def test_bad_config(call, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        call()


@pytest.mark.parametrize("bad", [0.0, -3.0, math.nan, math.inf])
def test_stream_rejects_bad_price(bad: float) -> None:
    for stream in (fr.FractalStream(), fr.HurstStream()):
        with pytest.raises(DataFormatError, match="strictly positive"):
            stream.update(bad)


# ------------------------------------------------------------------ compiled kernels vs textbook definitions
#
# The batch kernels share work between neighbouring windows and the streams run one-window kernels; both must
# equal a plain per-window transcription of each estimator's definition (numpy, np.polyfit for the slopes).
# Checked on real SPY closes over the whole sample at random window ends; tolerance 1e-10 (the estimates are
# of order 1, the differences are rounding in a different summation order).

REF_TOL = 1e-10


def _ref_katz(w: np.ndarray) -> float:
    steps = np.abs(np.diff(w))
    m = len(w) - 1
    d = np.abs(w - w[0]).max()
    return math.log10(m) / (math.log10(m) + math.log10(d / steps.sum()))


def _ref_higuchi(w: np.ndarray, k_max: int) -> float:
    n = len(w)
    log_l = []
    for k in range(1, k_max + 1):
        curve = []
        for m in range(k):
            sub = w[m::k]
            curve.append(np.abs(np.diff(sub)).sum() * (n - 1) / ((len(sub) - 1) * k) / k)
        log_l.append(math.log(np.mean(curve)))
    return -np.polyfit(np.log(np.arange(1, k_max + 1)), log_l, 1)[0]


def _ref_rs(close_window: np.ndarray, min_chunk: int) -> float:
    r = np.diff(np.log(close_window))
    sizes, log_rs = [], []
    size = min_chunk
    while size <= len(r):
        chunks = r[len(r) - (len(r) // size) * size :].reshape(-1, size)
        ratios = []
        for c in chunks:
            z = np.cumsum(c - c.mean())
            if c.std() > 0:
                ratios.append((z.max() - z.min()) / c.std())
        sizes.append(size)
        log_rs.append(math.log(np.mean(ratios)))
        size *= 2
    return np.polyfit(np.log(sizes), log_rs, 1)[0]


def _ref_dfa(close_window: np.ndarray, scales: tuple[int, ...]) -> float:
    r = np.diff(np.log(close_window))
    profile = np.cumsum(r - r.mean())
    log_f = []
    for s in scales:
        segs = profile[len(r) - (len(r) // s) * s :].reshape(-1, s)
        x = np.arange(s)
        resid = [seg - np.polyval(np.polyfit(x, seg, 1), x) for seg in segs]
        log_f.append(0.5 * math.log(np.mean(np.square(resid))))
    return np.polyfit(np.log(scales), log_f, 1)[0]


@pytest.fixture(scope="module")
def spy_full() -> np.ndarray:
    from alphaloom.data.sample import load_sample

    panel = load_sample("us_equities_daily")
    return panel.loc[panel["symbol"] == "SPY", "close"].to_numpy(dtype=np.float64)


@pytest.mark.parametrize(
    ("name", "window", "batch", "reference"),
    [
        ("katz", 64, lambda c: fr.katz_fd(np.log(c), 64), lambda w: _ref_katz(np.log(w))),
        ("higuchi", 128, lambda c: fr.higuchi_fd(np.log(c), 128, 10), lambda w: _ref_higuchi(np.log(w), 10)),
        ("higuchi_odd", 45, lambda c: fr.higuchi_fd(c, 45, 7), lambda w: _ref_higuchi(w, 7)),
        ("rs", 256, lambda c: fr.hurst_rs(c, 256, 8), lambda w: _ref_rs(w, 8)),
        ("rs_small", 40, lambda c: fr.hurst_rs(c, 40, 4), lambda w: _ref_rs(w, 4)),
        ("dfa", 256, lambda c: fr.hurst_dfa(c, 256), lambda w: _ref_dfa(w, (8, 16, 32))),
        (
            "dfa_scales",
            300,
            lambda c: fr.hurst_dfa(c, 300, (5, 12, 40, 99)),
            lambda w: _ref_dfa(w, (5, 12, 40, 99)),
        ),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_kernels_equal_textbook_definition_on_spy(name, window, batch, reference, spy_full) -> None:
    got = batch(spy_full)
    ends = np.random.default_rng(len(name)).integers(window - 1, len(spy_full), 60)
    for t in (*ends, window - 1, len(spy_full) - 1):
        want = reference(spy_full[t - window + 1 : t + 1])
        assert abs(got[t] - want) <= REF_TOL, (name, t, got[t], want)


def test_streams_equal_batch_bit_for_bit(spy_full: np.ndarray) -> None:
    # Same compiled per-window arithmetic in the same order: not just close, identical.
    close = spy_full[-700:]
    fs, hs = (
        fr.FractalStream(katz_window=20, higuchi_window=30, k_max=6),
        fr.HurstStream(window=65, min_chunk=4),
    )
    got_f = np.array([fs.update(c) for c in close])
    got_h = np.array([hs.update(c) for c in close])
    np.testing.assert_array_equal(got_f[:, 0], fr.katz_fd(close, 20))
    np.testing.assert_array_equal(got_f[:, 1], fr.higuchi_fd(close, 30, 6))
    np.testing.assert_array_equal(got_h[:, 0], fr.hurst_rs(close, 65, 4))
    np.testing.assert_array_equal(got_h[:, 1], fr.hurst_dfa(close, 65))
