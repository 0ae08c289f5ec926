"""The standard eight three ways (fused batch, stream, single functions) agree bit for bit, and never peek.

- :class:`StandardIndicatorStream` fed bar by bar equals :func:`standard_indicators` exactly (same NaNs, same
  bits) on real daily stocks, forex without volume and crypto; ``update_many`` in arbitrary chunks too.
- On finite input, each single-indicator function equals the fused kernel's column exactly.
- hypothesis: changing bars after ``t`` never changes any output at or before ``t``, for the fused kernel,
  the stream and every single-indicator function.
- Bad input (NaN or infinite prices, negative volume, mismatched lengths, 2-D arrays, bad windows, bad
  ``out`` arrays) is refused with an error that says how to fix it, and a refused bar leaves a stream as it
  was.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alphaloom.core.exceptions import ConfigError, DataFormatError
from alphaloom.data.sample import load_sample
from alphaloom.features import indicators as ind

FIELDS = ind.StandardIndicators._fields


def ohlcv(frame: pd.DataFrame) -> tuple[np.ndarray, ...]:
    cols = [frame[c].to_numpy(dtype=np.float64) for c in ("high", "low", "close")]
    return (*cols, np.nan_to_num(frame["volume"].to_numpy(dtype=np.float64), nan=0.0))


def real_series() -> dict[str, tuple[np.ndarray, ...]]:
    stocks = load_sample("us_equities_daily")
    fx = load_sample("fx_daily")
    crypto = load_sample("crypto_daily")
    return {
        "SPY": ohlcv(stocks[stocks["symbol"] == "SPY"]),
        "BNO (zero-volume days)": ohlcv(stocks[stocks["symbol"] == "BNO"]),
        "EURUSD (no volume)": ohlcv(fx[fx["symbol"] == "EURUSD"]),
        "BTCUSD": ohlcv(crypto[crypto["symbol"] == "BTCUSD"]),
    }


SERIES = real_series()


def assert_identical(actual: np.ndarray, expected: np.ndarray, name: str = "") -> None:
    """Same bits: NaN in the same places, equal elsewhere (no tolerance)."""
    np.testing.assert_array_equal(actual, expected, err_msg=name)


@pytest.mark.parametrize("key", list(SERIES))
def test_stream_reproduces_the_batch_bit_for_bit(key: str) -> None:
    h, lo, c, v = SERIES[key]
    batch = ind.standard_indicators(h, lo, c, v)
    stream = ind.StandardIndicatorStream()
    rows = np.array([stream.update(*bar) for bar in zip(h, lo, c, v, strict=True)])
    assert rows.shape == (len(c), len(FIELDS))
    for k, name in enumerate(FIELDS):
        assert_identical(rows[:, k], getattr(batch, name), f"{key} {name}")
    assert stream.bars_seen == len(c)


@pytest.mark.parametrize("key", list(SERIES))
def test_update_many_in_chunks_equals_updates_and_batch(key: str) -> None:
    h, lo, c, v = SERIES[key]
    params = {"sma_n": 7, "ema_n": 30, "rsi_n": 3, "macd": (5, 35, 5), "bb_n": 11, "bb_k": 1.5, "atr_n": 9}
    batch = np.column_stack(ind.standard_indicators(h, lo, c, v, vwap_n=4, **params))
    stream = ind.StandardIndicatorStream(vwap_n=4, **params)
    cuts = np.sort(np.random.default_rng(7).choice(np.arange(1, len(c)), size=12, replace=False))
    parts = [
        stream.update_many(h[a:b], lo[a:b], c[a:b], v[a:b])
        for a, b in zip(np.r_[0, cuts], np.r_[cuts, len(c)], strict=True)
    ]
    chunked = np.vstack(parts)
    assert chunked.shape == batch.shape
    assert_identical(chunked, batch)
    one_by_one = ind.StandardIndicatorStream(vwap_n=4, **params)
    assert_identical(np.array([one_by_one.update(*bar) for bar in zip(h, lo, c, v, strict=True)]), batch)


@pytest.mark.parametrize("key", list(SERIES))
def test_single_functions_equal_the_fused_columns(key: str) -> None:
    h, lo, c, v = SERIES[key]
    fused = ind.standard_indicators(h, lo, c, v)
    line, signal, hist = ind.macd(c, 12, 26, 9)
    bands = ind.bollinger(c, 20, 2.0)
    single = {
        "sma": ind.sma(c, 20),
        "ema": ind.ema(c, 20),
        "rsi": ind.rsi(c, 14),
        "macd_line": line,
        "macd_signal": signal,
        "macd_hist": hist,
        "bb_upper": bands.upper,
        "bb_mid": bands.mid,
        "bb_lower": bands.lower,
        "atr": ind.atr(h, lo, c, 14),
        "obv": ind.obv(c, v),
        "vwap": ind.vwap(h, lo, c, v, 20),
    }
    for name in FIELDS:
        assert_identical(single[name], getattr(fused, name), f"{key} {name}")


def test_preallocated_outputs_are_filled_and_reused() -> None:
    h, lo, c, v = SERIES["SPY"]
    out = ind.StandardIndicators.empty(len(c))
    first = ind.standard_indicators(h, lo, c, v, out=out)
    assert first is out
    snapshot = np.column_stack(out).copy()
    ind.standard_indicators(h, lo, c, v, out=out)
    assert_identical(np.column_stack(out), snapshot)
    assert_identical(snapshot, np.column_stack(ind.standard_indicators(h, lo, c, v)))


def test_warm_up_positions_and_short_series() -> None:
    h, lo, c, v = SERIES["SPY"]
    out = ind.standard_indicators(h, lo, c, v)
    first = {name: int(np.flatnonzero(~np.isnan(getattr(out, name)))[0]) for name in FIELDS}
    assert first == {
        "sma": 19,
        "ema": 19,
        "rsi": 14,
        "macd_line": 25,
        "macd_signal": 33,
        "macd_hist": 33,
        "bb_upper": 19,
        "bb_mid": 19,
        "bb_lower": 19,
        "atr": 14,
        "obv": 0,
        "vwap": 19,
    }
    short = ind.standard_indicators(h[:5], lo[:5], c[:5], v[:5])
    assert all(np.isnan(getattr(short, name)).all() for name in FIELDS if name != "obv")
    empty = ind.standard_indicators([], [], [], [])
    assert all(a.shape == (0,) for a in empty)
    assert ind.StandardIndicatorStream().update_many([], [], [], []).shape == (0, 12)


# ------------------------------------------------------------------------------------------ no look-ahead

SINGLE: dict[str, Callable[..., np.ndarray]] = {
    "sma": lambda o, h, lo, c, v: ind.sma(c, 7),
    "rolling_sum": lambda o, h, lo, c, v: ind.rolling_sum(v, 5),
    "ema": lambda o, h, lo, c, v: ind.ema(c, 7),
    "wilder_smooth": lambda o, h, lo, c, v: ind.wilder_smooth(c, 7),
    "rsi": lambda o, h, lo, c, v: ind.rsi(c, 7),
    "macd_line": lambda o, h, lo, c, v: ind.macd(c, 3, 8, 4).line,
    "macd_signal": lambda o, h, lo, c, v: ind.macd(c, 3, 8, 4).signal,
    "bollinger_upper": lambda o, h, lo, c, v: ind.bollinger(c, 7, 2.0).upper,
    "bollinger_percent_b": lambda o, h, lo, c, v: ind.bollinger(c, 7, 2.0).percent_b,
    "true_range": lambda o, h, lo, c, v: ind.true_range(h, lo, c),
    "atr": lambda o, h, lo, c, v: ind.atr(h, lo, c, 7),
    "obv": lambda o, h, lo, c, v: ind.obv(c, v),
    "vwap": lambda o, h, lo, c, v: ind.vwap(h, lo, c, v, 7),
    "session_vwap": lambda o, h, lo, c, v: ind.session_vwap(h, lo, c, v, np.arange(len(c)) // 9),
    "rogers_satchell": lambda o, h, lo, c, v: ind.rogers_satchell_volatility(o, h, lo, c, 7),
    "garman_klass": lambda o, h, lo, c, v: ind.garman_klass_volatility(o, h, lo, c, 7),
}


def random_bars(seed: int, n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    c = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.02, n)))
    o = c * np.exp(rng.normal(0.0, 0.005, n))
    h = np.maximum(o, c) * 1.01
    lo = np.minimum(o, c) * 0.99
    v = rng.lognormal(10.0, 1.0, n) * (rng.random(n) > 0.2)  # some bars without volume
    return [o, h, lo, c, v]


def perturbed_after(arrays: list[np.ndarray], t: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed + 1)
    altered = [a.copy() for a in arrays]
    scale = rng.uniform(0.5, 2.0, len(arrays[0]) - t - 1)
    for a in altered:
        a[t + 1 :] *= scale  # the same factor for every price keeps the bars consistent
    altered[-1][t + 1 :] *= rng.uniform(0.0, 3.0, len(scale))
    return altered


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), t=st.integers(0, 79), name=st.sampled_from(sorted(SINGLE)))
def test_single_functions_never_look_ahead(seed: int, t: int, name: str) -> None:
    bars = random_bars(seed, 80)
    before = SINGLE[name](*bars)
    after = SINGLE[name](*perturbed_after(bars, t, seed))
    assert_identical(before[: t + 1], after[: t + 1], name)


windows = st.integers(1, 12)


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    t=st.integers(0, 79),
    n=st.tuples(windows, windows, windows, windows, windows, windows),
    macd=st.tuples(st.integers(1, 6), st.integers(7, 14), st.integers(1, 6)),
)
def test_fused_kernel_and_stream_never_look_ahead(
    seed: int, t: int, n: tuple[int, ...], macd: tuple[int, int, int]
) -> None:
    sma_n, ema_n, rsi_n, bb_n, atr_n, vwap_n = n
    params = {"sma_n": sma_n, "ema_n": ema_n, "rsi_n": rsi_n, "macd": macd, "bb_n": bb_n}
    params |= {"atr_n": atr_n, "vwap_n": vwap_n}
    _, h, lo, c, v = random_bars(seed, 80)
    _, h2, lo2, c2, v2 = perturbed_after([h, h, lo, c, v], t, seed)
    before = np.column_stack(ind.standard_indicators(h, lo, c, v, **params))
    after = np.column_stack(ind.standard_indicators(h2, lo2, c2, v2, **params))
    assert_identical(before[: t + 1], after[: t + 1])
    # and the stream, stopped at t, already knows everything the batch says about bars up to t
    stream = ind.StandardIndicatorStream(**params)
    assert_identical(stream.update_many(h2[: t + 1], lo2[: t + 1], c2[: t + 1], v2[: t + 1]), before[: t + 1])


# ------------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("bar", "what"),
    [
        ((101.0, 99.0, np.nan, 10.0), "close=nan"),
        ((np.inf, 99.0, 100.0, 10.0), "high=inf"),
        ((101.0, 99.0, 100.0, -1.0), "volume=-1.0"),
        ((101.0, 99.0, 100.0, np.nan), "volume=nan"),
        ((101.0, None, 100.0, 1.0), "low=None"),
        ((101.0, 99.0, "n/a", 1.0), "close='n/a'"),
    ],
)
def test_stream_refuses_a_bad_bar_and_keeps_its_state(bar: tuple[object, ...], what: str) -> None:
    h, lo, c, v = SERIES["SPY"]
    stream = ind.StandardIndicatorStream()
    reference = ind.StandardIndicatorStream()
    stream.update_many(h[:50], lo[:50], c[:50], v[:50])
    reference.update_many(h[:50], lo[:50], c[:50], v[:50])
    with pytest.raises(DataFormatError, match="finite") as info:
        stream.update(*bar)
    message = str(info.value)
    assert what in message
    assert "bar 50" in message
    assert "forward-fill" in message
    assert "0.0 for missing volume" in message
    assert stream.bars_seen == 50
    assert_identical(
        stream.update(h[50], lo[50], c[50], v[50]), reference.update(h[50], lo[50], c[50], v[50])
    )


def test_update_many_refuses_bad_rows_before_touching_the_state() -> None:
    h, lo, c, v = (a[:60].copy() for a in SERIES["SPY"])
    stream = ind.StandardIndicatorStream()
    c[41] = np.nan
    with pytest.raises(DataFormatError, match=r"row 41 has .*close=nan"):
        stream.update_many(h, lo, c, v)
    assert stream.bars_seen == 0


def test_batch_names_the_first_bad_bar() -> None:
    h, lo, c, v = (a[:60].copy() for a in SERIES["SPY"])
    v[17] = -5.0
    c[30] = np.nan
    with pytest.raises(DataFormatError, match=r"bar 17 has .*volume=-5\.0.*single-indicator functions"):
        ind.standard_indicators(h, lo, c, v)


def test_shapes_lengths_and_windows_are_checked() -> None:
    h, lo, c, v = (a[:60] for a in SERIES["SPY"])
    with pytest.raises(DataFormatError, match=r"same length.*'close': 59"):
        ind.standard_indicators(h, lo, c[:59], v)
    with pytest.raises(DataFormatError, match=r"one-dimensional.*shape \(60, 1\).*flatten"):
        ind.standard_indicators(h, lo, c.reshape(-1, 1), v)
    with pytest.raises(DataFormatError, match="same length"):
        ind.StandardIndicatorStream().update_many(h, lo, c, v[:10])
    for bad in ({"sma_n": 0}, {"rsi_n": -3}, {"atr_n": 2.5}, {"vwap_n": True}):
        with pytest.raises(ConfigError, match="positive integer"):
            ind.standard_indicators(h, lo, c, v, **bad)
        with pytest.raises(ConfigError, match="positive integer"):
            ind.StandardIndicatorStream(**bad)
    with pytest.raises(ConfigError, match=r"fast < slow.*12, 26, 9"):
        ind.StandardIndicatorStream(macd=(26, 12, 9))
    with pytest.raises(ConfigError, match=r"\(fast, slow, signal\)"):
        ind.standard_indicators(h, lo, c, v, macd=(12, 26))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="positive number of standard deviations"):
        ind.standard_indicators(h, lo, c, v, bb_k=0.0)


def test_out_arrays_are_checked() -> None:
    h, lo, c, v = (a[:60] for a in SERIES["SPY"])
    with pytest.raises(DataFormatError, match=r"StandardIndicators\.empty\(60\)"):
        ind.standard_indicators(h, lo, c, v, out=ind.StandardIndicators.empty(59))
    with pytest.raises(DataFormatError, match="must be a StandardIndicators"):
        ind.standard_indicators(h, lo, c, v, out=tuple(np.empty((12, 60))))  # type: ignore[arg-type]
    wrong_dtype = ind.StandardIndicators.empty(60)._replace(rsi=np.empty(60, dtype=np.float32))
    with pytest.raises(DataFormatError, match=r"out\.rsi must be .*float64"):
        ind.standard_indicators(h, lo, c, v, out=wrong_dtype)
    with pytest.raises(ConfigError, match="non-negative integer"):
        ind.StandardIndicators.empty(-1)


def test_stream_describes_itself() -> None:
    stream = ind.StandardIndicatorStream(macd=(5, 35, 5))
    assert stream.names == FIELDS
    stream.update(101.0, 99.0, 100.0, 1e4)
    assert "macd=(5, 35, 5)" in repr(stream)
    assert "1 bars seen" in repr(stream)
    assert stream.update(1, 1, 1, 0).dtype == np.float64  # Python ints are read as floats
