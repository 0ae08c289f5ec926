"""Every indicator TA-Lib also has, against TA-Lib itself, on real bars: 1e-9 relative on TA-Lib's range.

Covered: SMA, EMA, RSI, MACD (line, signal, histogram), BBANDS (upper, middle, lower), ATR, TRANGE, OBV and
SUM, plus the rolling VWAP against ``SUM(tp * v, n) / SUM(v, n)`` (TA-Lib has no VWAP). Each is checked three
ways: the single-indicator function, :func:`standard_indicators` and :class:`StandardIndicatorStream`.

Series: every symbol of the three shipped daily samples, and real minute bars from the shared data directory
(``/work/shared/data`` or, in CI, ``../shared/data`` beside the clone): EURUSD (186k bars), EuroStoxx 50
futures, INDA and Coinbase BTCUSD. Where that directory is absent the long series is the shipped equity
panel end to end (63k bars) instead, so nothing is skipped.

Tolerances and the documented differences (see :mod:`alphaloom.features.indicators`):

- values: ``rtol=1e-9`` with no absolute slack, except the MACD three, which are differences of two
  price-level EMAs and cross zero: their rounding is relative to the price, so ``atol = 1e-12 * |close|``;
- warm-up: NaN in exactly TA-Lib's places, except the MACD line, which is defined from ``slow - 1``
  (TA-Lib withholds it until ``slow + signal - 2``);
- RSI: 50 where TA-Lib gives 0 because nothing has moved yet (checked on a flat series).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import pytest
import talib

from alphaloom.data.sample import load_sample
from alphaloom.features import indicators as ind

RTOL = 1e-9
MACD_ATOL_PER_PRICE = 1e-12

REPO = Path(__file__).resolve().parents[2]
SHARED = next((p for p in (Path("/work/shared/data"), REPO.parent / "shared" / "data") if p.is_dir()), None)
SAMPLES = ("us_equities_daily", "fx_daily", "crypto_daily")
MINUTE_FILES = {
    "EURUSD_1min": ("forex/eurusd_1min_histdata_2017-01_to_06.csv.gz", None),
    "FESX_1min": ("stocks/eurostoxx50_futures_1min_2006-01-02_to_02-27.csv.gz", None),
    "INDA_1min": ("stocks/inda_etf_1min_sparse_2023-07_to_2025-06.csv.gz", None),
    "BTCUSD_1min": ("crypto/lean_coinbase_1min_trade_bars_2016-2018_sample_days.csv.gz", "BTCUSD"),
}


class Bars(NamedTuple):
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray


def _bars(frame: pd.DataFrame) -> Bars:
    cols = [frame[c].to_numpy(dtype=np.float64) for c in ("open", "high", "low", "close")]
    # forex has no volume: 0.0 is what the fused kernels require and what TA-Lib reads sensibly
    return Bars(*cols, np.nan_to_num(frame["volume"].to_numpy(dtype=np.float64), nan=0.0))


def _cases() -> list[str]:
    daily = [
        f"{name}:{symbol}" for name in SAMPLES for symbol in sorted(load_sample(name)["symbol"].unique())
    ]
    long = [f"minute:{key}" for key in MINUTE_FILES] if SHARED is not None else ["panel:us_equities_daily"]
    return daily + long


@cache
def bars(case: str) -> Bars:
    kind, key = case.split(":")
    if kind == "minute":
        assert SHARED is not None
        path, symbol = MINUTE_FILES[key]
        frame = pd.read_csv(SHARED / path)
        return _bars(frame if symbol is None else frame[frame["symbol"] == symbol])
    panel = load_sample(key if kind == "panel" else kind)
    return _bars(panel if kind == "panel" else panel[panel["symbol"] == key].sort_values("ts"))


CASES = _cases()


def assert_matches(
    name: str, ours: np.ndarray, theirs: np.ndarray, *, atol: float | np.ndarray = 0.0
) -> None:
    """NaN in the same places, and ``rtol=RTOL`` (plus ``atol``) elsewhere."""
    assert ours.dtype == np.float64, name
    assert ours.shape == theirs.shape, name
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(theirs), err_msg=f"{name}: warm-up NaNs differ")
    defined = ~np.isnan(theirs)
    error = np.abs(ours - theirs)
    allowed = RTOL * np.abs(theirs) + atol
    off = np.flatnonzero(defined & (error > allowed))
    if off.size:
        worst = off[np.argmax((error / np.maximum(allowed, 1e-300))[off])]
        raise AssertionError(
            f"{name}: {off.size} of {defined.sum()} values beyond rtol={RTOL:g} (+atol); worst at {worst}: "
            f"ours {ours[worst]!r}, TA-Lib {theirs[worst]!r}"
        )


def assert_macd_matches(
    line: np.ndarray, signal: np.ndarray, hist: np.ndarray, b: Bars, *periods: int
) -> None:
    fast, slow, sig = periods
    t_line, t_signal, t_hist = talib.MACD(b.close, fast, slow, sig)
    atol = MACD_ATOL_PER_PRICE * np.abs(b.close)
    # ours defines the line from slow - 1; TA-Lib withholds it until the signal exists
    assert np.isnan(line[: slow - 1]).all()
    assert not np.isnan(line[slow - 1 :]).any()
    t_start = slow + sig - 2
    assert np.isnan(t_line[:t_start]).all()
    assert_matches("macd line", line[t_start:], t_line[t_start:], atol=atol[t_start:])
    assert_matches("macd signal", signal, t_signal, atol=atol)
    assert_matches("macd hist", hist, t_hist, atol=atol)


def talib_rsi_with_our_neutral(close: np.ndarray, n: int) -> np.ndarray:
    """TA-Lib's RSI with its 0 for "nothing has moved yet" replaced by our 50."""
    expected = talib.RSI(close, n)
    still = np.zeros(len(close), dtype=bool)
    still[1:] = np.cumsum(np.abs(np.diff(close))) == 0.0
    expected[still & (expected == 0.0)] = 50.0
    return expected


def talib_sum(x: np.ndarray, n: int) -> np.ndarray:
    """TA-Lib's SUM, with the rounding dust its running sum leaves in all-zero windows cleaned to 0.

    Ours is exactly 0 there (its sums are recomputed from the window); TA-Lib's add/subtract sum can leave
    something like 1e-12 after large values have passed. Only dust below 1e-9 of the largest value is
    cleaned, so a genuine difference still fails.
    """
    expected = talib.SUM(x, n)
    empty = ind.rolling_sum((x != 0.0).astype(np.float64), n) == 0.0
    dust = np.abs(expected) <= 1e-9 * np.max(np.abs(x), initial=0.0)
    expected[empty & dust] = 0.0
    return expected


def talib_vwap(b: Bars, n: int) -> np.ndarray:
    typical = (b.high + b.low + b.close) / 3.0
    volume = talib.SUM(b.volume, n)
    # NaN where the window traded nothing (TA-Lib's running sum may leave rounding dust instead of 0)
    traded = ind.rolling_sum((b.volume > 0.0).astype(np.float64), n) > 0.0
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(traded, talib.SUM(typical * b.volume, n) / volume, np.nan)


@pytest.mark.parametrize("case", CASES)
def test_single_indicators_match_talib(case: str) -> None:
    b = bars(case)
    h, lo, c, v = b.high, b.low, b.close, b.volume
    for n in (5, 20, 50):
        assert_matches(f"sma {n}", ind.sma(c, n), talib.SMA(c, n))
        assert_matches(f"ema {n}", ind.ema(c, n), talib.EMA(c, n))
        assert_matches(f"sum {n}", ind.rolling_sum(v, n), talib_sum(v, n))
    for n in (2, 14, 30):
        assert_matches(f"rsi {n}", ind.rsi(c, n), talib_rsi_with_our_neutral(c, n))
    for n in (1, 14, 30):
        assert_matches(f"atr {n}", ind.atr(h, lo, c, n), talib.ATR(h, lo, c, n))
    assert_matches("trange", ind.true_range(h, lo, c), talib.TRANGE(h, lo, c))
    for periods in ((12, 26, 9), (5, 35, 5)):
        assert_macd_matches(*ind.macd(c, *periods), b, *periods)
    for n, k in ((20, 2.0), (10, 1.5)):
        bands = ind.bollinger(c, n, k)
        upper, middle, lower = talib.BBANDS(c, n, k, k, 0)
        assert_matches(f"bb upper {n}", bands.upper, upper)
        assert_matches(f"bb mid {n}", bands.mid, middle)
        assert_matches(f"bb lower {n}", bands.lower, lower)
    assert_matches("obv", ind.obv(c, v), talib.OBV(c, v))
    assert_matches("vwap 20", ind.vwap(h, lo, c, v, 20), talib_vwap(b, 20))


def assert_standard_eight_match(out: ind.StandardIndicators, b: Bars) -> None:
    h, lo, c, v = b.high, b.low, b.close, b.volume
    assert_matches("sma", out.sma, talib.SMA(c, 20))
    assert_matches("ema", out.ema, talib.EMA(c, 20))
    assert_matches("rsi", out.rsi, talib_rsi_with_our_neutral(c, 14))
    assert_macd_matches(out.macd_line, out.macd_signal, out.macd_hist, b, 12, 26, 9)
    upper, middle, lower = talib.BBANDS(c, 20, 2.0, 2.0, 0)
    assert_matches("bb upper", out.bb_upper, upper)
    assert_matches("bb mid", out.bb_mid, middle)
    assert_matches("bb lower", out.bb_lower, lower)
    assert_matches("atr", out.atr, talib.ATR(h, lo, c, 14))
    assert_matches("obv", out.obv, talib.OBV(c, v))
    assert_matches("vwap", out.vwap, talib_vwap(b, 20))


@pytest.mark.parametrize("case", CASES)
def test_standard_indicators_match_talib(case: str) -> None:
    b = bars(case)
    assert_standard_eight_match(ind.standard_indicators(b.high, b.low, b.close, b.volume), b)


@pytest.mark.parametrize("case", CASES)
def test_stream_matches_talib(case: str) -> None:
    b = bars(case)
    stream = ind.StandardIndicatorStream()
    rows = np.array([stream.update(*bar) for bar in zip(b.high, b.low, b.close, b.volume, strict=True)])
    assert rows.shape == (len(b.close), 12)
    assert_standard_eight_match(ind.StandardIndicators(*rows.T.copy()), b)


def test_rsi_is_neutral_where_talib_gives_zero() -> None:
    flat = np.full(30, 1.2345)
    assert (talib.RSI(flat, 14)[14:] == 0.0).all()  # TA-Lib's choice
    assert (ind.rsi(flat, 14)[14:] == 50.0).all()  # ours: nothing moved is neutral
    assert (ind.standard_indicators(flat, flat, flat, np.ones(30)).rsi[14:] == 50.0).all()


def test_leading_nans_are_skipped_like_talib(spy: pd.DataFrame) -> None:
    close = spy["close"].to_numpy(dtype=np.float64).copy()
    close[:7] = np.nan
    assert_matches("ema", ind.ema(close, 20), talib.EMA(close, 20))
    assert_matches("rsi", ind.rsi(close, 14), talib.RSI(close, 14))
    line, signal, hist = ind.macd(close)
    t_line, t_signal, t_hist = talib.MACD(close, 12, 26, 9)
    assert np.flatnonzero(~np.isnan(line))[0] == 7 + 25
    atol = MACD_ATOL_PER_PRICE * np.nan_to_num(np.abs(close))
    t_start = 7 + 33
    assert np.isnan(t_line[:t_start]).all()
    assert_matches("macd line", line[t_start:], t_line[t_start:], atol=atol[t_start:])
    assert_matches("macd signal", signal, t_signal, atol=atol)
    assert_matches("macd hist", hist, t_hist, atol=atol)
