"""Indicator kernels against straightforward pandas references on real SPY bars (tolerance 1e-9 relative).

The references use the same conventions as the kernels, all TA-Lib's: SMA-seeded EMAs, Wilder smoothing
seeded by a simple mean, MACD's fast EMA seeded at ``slow - 1``, ``obv[0] = volume[0]``, population standard
deviation in the Bollinger bands. TA-Lib itself is the reference in ``test_talib_parity.py``.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alphaloom.core.exceptions import ConfigError, DataFormatError
from alphaloom.features import indicators as ind

RTOL = 1e-9


def assert_same(actual: np.ndarray, expected: pd.Series | np.ndarray, *, atol: float = 1e-12) -> None:
    """Equal to ``RTOL`` relative (``atol`` absolute near zero), with NaN in exactly the same places."""
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.dtype == np.float64
    assert actual.shape == expected.shape
    np.testing.assert_array_equal(np.isnan(actual), np.isnan(expected))
    np.testing.assert_allclose(actual, expected, rtol=RTOL, atol=atol, equal_nan=True)


def ref_seeded_ewm(x: pd.Series, n: int, alpha: float) -> pd.Series:
    """pandas ewm (adjust=False) started from the mean of the first ``n`` non-NaN values."""
    start = int(np.flatnonzero(x.notna().to_numpy())[0])
    seeded = x.copy()
    seeded.iloc[: start + n - 1] = np.nan
    seeded.iloc[start + n - 1] = x.iloc[start : start + n].mean()
    return seeded.ewm(alpha=alpha, adjust=False).mean()


def ref_ema(x: pd.Series, n: int) -> pd.Series:
    return ref_seeded_ewm(x, n, 2.0 / (n + 1.0))


@pytest.fixture(scope="module")
def px(spy: pd.DataFrame) -> pd.DataFrame:
    return spy[["open", "high", "low", "close", "volume"]]


@pytest.mark.parametrize("n", [1, 5, 20, 200])
def test_sma_and_rolling_sum_match_pandas_rolling(px: pd.DataFrame, n: int) -> None:
    assert_same(ind.sma(px["close"], n), px["close"].rolling(n).mean())
    assert_same(ind.rolling_sum(px["volume"], n), px["volume"].rolling(n).sum(), atol=1e-3)


@pytest.mark.parametrize("n", [2, 12, 26, 50])
def test_ema_matches_seeded_pandas_ewm(px: pd.DataFrame, n: int) -> None:
    out = ind.ema(px["close"], n)
    assert_same(out, ref_ema(px["close"], n))
    assert out[n - 1] == pytest.approx(px["close"].iloc[:n].mean(), rel=1e-15)  # TA-Lib seed


def test_ema_skips_leading_nans() -> None:
    x = pd.Series([np.nan, np.nan, 1.0, 2.0, 3.0, 4.0, 5.0])
    out = ind.ema(x, 3)
    assert np.isnan(out[:4]).all()
    assert out[4] == pytest.approx(2.0)
    assert_same(out, ref_ema(x, 3))


@pytest.mark.parametrize("n", [2, 14, 30])
def test_rsi_matches_wilder_reference(px: pd.DataFrame, n: int) -> None:
    change = px["close"].diff()
    gain = change.clip(lower=0.0)
    loss = (-change).clip(lower=0.0)
    avg_gain = ref_seeded_ewm(gain, n, 1.0 / n)
    avg_loss = ref_seeded_ewm(loss, n, 1.0 / n)
    expected = 100.0 - 100.0 / (1.0 + avg_gain / avg_loss)
    out = ind.rsi(px["close"], n)
    assert_same(out, expected, atol=1e-9)
    assert np.nanmin(out) >= 0.0
    assert np.nanmax(out) <= 100.0
    assert np.isnan(out[:n]).all()
    assert not np.isnan(out[n:]).any()


def ref_ema_seeded_at(x: pd.Series, n: int, seed_at: int) -> pd.Series:
    """pandas ewm started at ``seed_at`` from the mean of the ``n`` values ending there."""
    seeded = x.copy()
    seeded.iloc[:seed_at] = np.nan
    seeded.iloc[seed_at] = x.iloc[seed_at - n + 1 : seed_at + 1].mean()
    return seeded.ewm(alpha=2.0 / (n + 1.0), adjust=False).mean()


def test_macd_matches_talib_seeded_ema_composition(px: pd.DataFrame) -> None:
    # TA-Lib's seeding (adopted on purpose): both EMAs start at slow - 1, the fast one from the mean of the
    # fast closes ending there, not at fast - 1; the signal starts from the mean of the first 9 line values.
    close = px["close"]
    line = ref_ema_seeded_at(close, 12, 25) - ref_ema_seeded_at(close, 26, 25)
    signal = ref_ema_seeded_at(line, 9, 33)
    out = ind.macd(close, 12, 26, 9)
    assert_same(out.line, line, atol=1e-10)
    assert_same(out.signal, signal, atol=1e-10)
    assert_same(out.hist, line - signal, atol=1e-10)
    assert np.flatnonzero(~np.isnan(out.line))[0] == 26 - 1
    assert np.flatnonzero(~np.isnan(out.signal))[0] == 26 + 9 - 2
    # the seeding is forgotten geometrically: far from the start the line is ema(12) - ema(26)
    far = slice(400, None)
    assert_same(out.line[far], (ind.ema(close, 12) - ind.ema(close, 26))[far], atol=1e-10)


def test_bollinger_matches_pandas_population_std(px: pd.DataFrame) -> None:
    close = px["close"]
    mid = close.rolling(20).mean()
    std = close.rolling(20).std(ddof=0)
    upper, lower = mid + 2.5 * std, mid - 2.5 * std
    out = ind.bollinger(close, 20, 2.5)
    assert_same(out.mid, mid)
    assert_same(out.upper, upper)
    assert_same(out.lower, lower)
    assert_same(out.percent_b, (close - lower) / (upper - lower), atol=1e-9)
    assert_same(out.bandwidth, (upper - lower) / mid, atol=1e-9)


@pytest.mark.parametrize("n", [1, 14])
def test_atr_matches_wilder_true_range(px: pd.DataFrame, n: int) -> None:
    prev = px["close"].shift(1)
    tr = pd.concat([px["high"] - px["low"], (px["high"] - prev).abs(), (px["low"] - prev).abs()], axis=1)
    tr = tr.max(axis=1, skipna=False)
    assert_same(ind.true_range(px["high"], px["low"], px["close"]), tr)
    assert_same(ind.atr(px["high"], px["low"], px["close"], n), ref_seeded_ewm(tr, n, 1.0 / n))


def test_obv_matches_a_plain_loop(px: pd.DataFrame) -> None:
    close, volume = px["close"].to_numpy(), px["volume"].to_numpy()
    expected = [volume[0]]  # TA-Lib's convention (adopted on purpose); only the changes matter
    for t in range(1, len(close)):
        step = volume[t] if close[t] > close[t - 1] else -volume[t] if close[t] < close[t - 1] else 0.0
        expected.append(expected[-1] + step)
    assert_same(ind.obv(close, volume), np.array(expected), atol=1e-3)


def test_vwap_matches_rolling_sums(px: pd.DataFrame) -> None:
    typical = (px["high"] + px["low"] + px["close"]) / 3.0
    expected = (typical * px["volume"]).rolling(20).sum() / px["volume"].rolling(20).sum()
    assert_same(ind.vwap(px["high"], px["low"], px["close"], px["volume"], 20), expected)


def test_vwap_is_nan_where_nothing_traded() -> None:
    price = np.full(6, 10.0)
    out = ind.vwap(price, price, price, np.array([1.0, 0.0, 0.0, 0.0, 2.0, 0.0]), 3)
    np.testing.assert_array_equal(np.isnan(out), [True, True, False, True, False, False])


def test_volume_roc_matches_pct_change(px: pd.DataFrame) -> None:
    assert_same(ind.volume_roc(px["volume"], 5), px["volume"].pct_change(5))
    out = ind.volume_roc([0.0, 1.0, 2.0, 4.0], 1)
    np.testing.assert_array_equal(np.isnan(out), [True, True, False, False])
    assert out[3] == pytest.approx(1.0)


def test_range_volatilities_match_their_formulas(px: pd.DataFrame) -> None:
    hl = np.log(px["high"] / px["low"])
    co = np.log(px["close"] / px["open"])
    gk = np.sqrt((0.5 * hl**2 - (2.0 * math.log(2.0) - 1.0) * co**2).rolling(20).mean())
    parkinson = np.sqrt((hl**2).rolling(20).mean() / (4.0 * math.log(2.0)))
    assert_same(ind.garman_klass_volatility(px["open"], px["high"], px["low"], px["close"], 20), gk)
    assert_same(ind.parkinson_volatility(px["high"], px["low"], 20), parkinson)


def test_realised_volatility_and_ratio_match_rolling_rms(px: pd.DataFrame) -> None:
    r = np.log(px["close"]).diff()
    rv5 = np.sqrt((r**2).rolling(5).mean())
    rv20 = np.sqrt((r**2).rolling(20).mean())
    assert_same(ind.log_return(px["close"], 1), r)
    assert_same(ind.log_return(px["close"], 20), np.log(px["close"] / px["close"].shift(20)))
    assert_same(ind.realised_volatility(px["close"], 20), rv20)
    assert_same(ind.volatility_ratio(px["close"], 5, 20), rv5 / rv20)


def test_flat_prices_give_neutral_values_not_nan() -> None:
    flat = np.full(40, 1.2345)
    assert np.all(ind.rsi(flat, 14)[14:] == 50.0)
    assert np.all(ind.bollinger(flat, 20).percent_b[19:] == 0.5)
    assert np.all(ind.volatility_ratio(flat, 5, 20)[20:] == 1.0)
    assert np.all(ind.realised_volatility(flat, 5)[5:] == 0.0)


def test_short_series_are_all_warm_up() -> None:
    x = np.arange(1.0, 6.0)
    for out in (ind.sma(x, 10), ind.ema(x, 10), ind.rsi(x, 10), ind.bollinger(x, 10).mid):
        assert np.isnan(out).all()
    assert ind.ema(np.array([]), 3).shape == (0,)


@pytest.mark.parametrize("bad", [0, -3, 2.5, True])
def test_windows_must_be_positive_integers(bad: object) -> None:
    with pytest.raises(ConfigError, match="positive integer"):
        ind.sma(np.ones(5), bad)  # type: ignore[arg-type]


def test_inputs_must_be_one_dimensional_and_aligned() -> None:
    with pytest.raises(DataFormatError, match="one-dimensional"):
        ind.ema(np.ones((3, 2)), 2)
    with pytest.raises(DataFormatError, match="same length"):
        ind.atr(np.ones(5), np.ones(5), np.ones(4), 2)
    with pytest.raises(ConfigError, match="fast < slow"):
        ind.macd(np.ones(50), 26, 12)
    with pytest.raises(ConfigError, match="short < long"):
        ind.volatility_ratio(np.ones(50), 20, 5)


KERNELS = {
    "sma": lambda o, h, low, c, v: ind.sma(c, 7),
    "ema": lambda o, h, low, c, v: ind.ema(c, 7),
    "rsi": lambda o, h, low, c, v: ind.rsi(c, 7),
    "macd": lambda o, h, low, c, v: ind.macd(c, 3, 8, 4).hist,
    "bollinger": lambda o, h, low, c, v: ind.bollinger(c, 7).percent_b,
    "atr": lambda o, h, low, c, v: ind.atr(h, low, c, 7),
    "obv": lambda o, h, low, c, v: ind.obv(c, v),
    "vwap": lambda o, h, low, c, v: ind.vwap(h, low, c, v, 7),
    "volume_roc": lambda o, h, low, c, v: ind.volume_roc(v, 3),
    "garman_klass": lambda o, h, low, c, v: ind.garman_klass_volatility(o, h, low, c, 7),
    "parkinson": lambda o, h, low, c, v: ind.parkinson_volatility(h, low, 7),
    "volatility_ratio": lambda o, h, low, c, v: ind.volatility_ratio(c, 3, 9),
}


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), t=st.integers(0, 59), name=st.sampled_from(sorted(KERNELS)))
def test_kernels_never_look_ahead(seed: int, t: int, name: str) -> None:
    rng = np.random.default_rng(seed)
    c = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.02, 60)))
    arrays = [c * 1.001, c * 1.01, c * 0.99, c, rng.lognormal(10.0, 1.0, 60)]
    altered = [a.copy() for a in arrays]
    for a in altered:
        a[t + 1 :] *= rng.uniform(0.5, 2.0, len(a) - t - 1)
    before = KERNELS[name](*arrays)
    after = KERNELS[name](*altered)
    np.testing.assert_array_equal(before[: t + 1], after[: t + 1])


def test_rogers_satchell_matches_its_formula(px: pd.DataFrame) -> None:
    o, h, lo, c = (px[k] for k in ("open", "high", "low", "close"))
    term = np.log(h / c) * np.log(h / o) + np.log(lo / c) * np.log(lo / o)
    expected = np.sqrt(term.rolling(20).mean())
    assert_same(ind.rogers_satchell_volatility(o, h, lo, c, 20), expected)
    assert np.flatnonzero(~np.isnan(expected.to_numpy()))[0] == 19


def test_session_ids_start_at_local_time_across_daylight_saving() -> None:
    # 09:30 New York is 14:30 UTC in winter and 13:30 UTC in summer (DST began 2024-03-10)
    ts = pd.DatetimeIndex(
        [
            "2024-03-08 14:29",  # Friday 09:29 EST: still Thursday's session
            "2024-03-08 14:30",  # 09:30 EST: Friday's session begins
            "2024-03-08 20:59",
            "2024-03-11 13:29",  # Monday 09:29 EDT: the session that began on Sunday 09:30 (no bars then)
            "2024-03-11 13:30",  # 09:30 EDT: Monday's session
        ],
        tz="UTC",
    )
    ids = ind.session_ids(ts, timezone="America/New_York", session_start="09:30")
    assert ids.dtype == np.int64
    thursday = (pd.Timestamp("2024-03-07") - pd.Timestamp("1970-01-01")).days
    np.testing.assert_array_equal(ids, [thursday, thursday + 1, thursday + 1, thursday + 3, thursday + 4])
    utc_days = ind.session_ids(ts)  # default: UTC midnight
    np.testing.assert_array_equal(np.diff(utc_days) != 0, [False, False, True, False])


def test_session_ids_refuse_naive_times_and_bad_settings() -> None:
    naive = pd.date_range("2024-01-02", periods=3, freq="h")
    with pytest.raises(DataFormatError, match=r"timezone-aware.*tz_localize\('UTC'\)"):
        ind.session_ids(naive)
    aware = naive.tz_localize("UTC")
    with pytest.raises(ConfigError, match=r"unknown timezone 'Mars/Olympus'.*America/New_York"):
        ind.session_ids(aware, timezone="Mars/Olympus")
    for bad in ("9.30", "25:00", "09:60", ""):
        with pytest.raises(ConfigError, match="HH:MM"):
            ind.session_ids(aware, session_start=bad)


def test_session_vwap_matches_grouped_cumulative_sums(px: pd.DataFrame, spy: pd.DataFrame) -> None:
    sessions = spy["ts"].dt.year.to_numpy().astype(np.int64)  # a "session" per calendar year
    typical = (px["high"] + px["low"] + px["close"]) / 3.0
    frame = pd.DataFrame({"pv": typical * px["volume"], "v": px["volume"], "s": sessions})
    grouped = frame.groupby("s")
    expected = grouped["pv"].cumsum() / grouped["v"].cumsum()
    out = ind.session_vwap(px["high"], px["low"], px["close"], px["volume"], sessions)
    assert_same(out, expected)
    starts = np.flatnonzero(np.diff(sessions)) + 1
    np.testing.assert_allclose(out[starts], typical.to_numpy()[starts], rtol=1e-15)  # a session restarts


def test_session_vwap_is_nan_until_the_session_trades() -> None:
    price = np.array([10.0, 11.0, 12.0, 13.0, 14.0, 15.0])
    volume = np.array([0.0, 2.0, 0.0, 0.0, 0.0, 1.0])
    out = ind.session_vwap(price, price, price, volume, np.array([1, 1, 1, 2, 2, 2]))
    np.testing.assert_array_equal(np.isnan(out), [True, False, False, True, True, False])
    assert out[2] == 11.0
    assert out[5] == 15.0


def test_session_vwap_checks_its_labels() -> None:
    x = np.ones(4)
    with pytest.raises(DataFormatError, match=r"integer session labels.*session_ids\(ts"):
        ind.session_vwap(x, x, x, x, np.array([0.0, 0.0, 1.0, 1.0]))
    with pytest.raises(DataFormatError, match="same length"):
        ind.session_vwap(x, x, x, x, np.array([0, 0, 1]))


def test_nan_policy_recursions_stay_poisoned_windows_recover(px: pd.DataFrame) -> None:
    h, lo, c, v = (px[k].to_numpy(dtype=np.float64)[:200].copy() for k in ("high", "low", "close", "volume"))
    c[100] = np.nan
    for name, out in {
        "ema": ind.ema(c, 10),
        "wilder_smooth": ind.wilder_smooth(c, 10),
        "rsi": ind.rsi(c, 10),
        "macd": ind.macd(c, 5, 12, 4).line,
        "atr": ind.atr(h, lo, c, 10),
        "obv": ind.obv(c, v),
    }.items():
        # bar 100's true range uses the close before it, so the ATR meets the NaN one bar later
        first = 101 if name == "atr" else 100
        assert not np.isnan(out[first - 1]), name
        assert np.isnan(out[first:]).all(), f"{name}: a recursion that meets a NaN stays NaN"
    for name, out in {
        "sma": ind.sma(c, 10),
        "rolling_sum": ind.rolling_sum(c, 10),
        "bollinger": ind.bollinger(c, 10).upper,
        "vwap": ind.vwap(h, lo, c, v, 10),
    }.items():
        assert np.isnan(out[100:110]).all(), f"{name}: NaN while the window holds the NaN"
        assert not np.isnan(out[110:]).any(), f"{name}: recovers once the NaN has left the window"
        clean = c.copy()
        clean[100] = c[99]
        reference = {
            "sma": ind.sma(clean, 10),
            "rolling_sum": ind.rolling_sum(clean, 10),
            "bollinger": ind.bollinger(clean, 10).upper,
            "vwap": ind.vwap(h, lo, clean, v, 10),
        }[name]
        np.testing.assert_allclose(out[110:], reference[110:], rtol=1e-12, err_msg=name)
    inf_close = c.copy()
    inf_close[100] = np.inf
    assert np.isnan(ind.sma(inf_close, 10)[100:110]).all()  # infinities count as missing in a window
    assert not np.isnan(ind.sma(inf_close, 10)[110:]).any()


@pytest.mark.parametrize(("sample", "symbol"), [("us_equities_daily", "BNO"), ("crypto_daily", "BTCUSD")])
def test_rolling_volatilities_never_turn_nan_from_rounding(sample: str, symbol: str) -> None:
    # On these real series the rolling sum of squared returns ends a hair below zero (about -1e-19) after a
    # large return leaves a 5-bar window; the square root of that must be 0, not NaN, in batch and stream.
    from alphaloom.data.sample import load_sample
    from alphaloom.features import FeatureConfig, FeatureEngineer

    bars = load_sample(sample)
    bars = bars[bars["symbol"] == symbol].reset_index(drop=True)
    with np.errstate(invalid="raise"):
        rv = ind.realised_volatility(bars["close"], 5)
        pk = ind.parkinson_volatility(bars["high"], bars["low"], 5)
    assert np.isfinite(rv[5:]).all()
    assert np.isfinite(pk[4:]).all()
    assert (rv[5:] >= 0).all()
    config = FeatureConfig.from_dict(
        {"groups": ["volatility"], "volatility": {"range_vol_window": 5, "realised_vol_window": 5}}
    )
    engineer = FeatureEngineer(config).fit(bars)
    batch = engineer.transform(bars).to_numpy()
    stream = engineer.stream()
    streamed = np.vstack([stream.update(r) for r in bars.to_dict("records")])
    np.testing.assert_allclose(streamed, batch, rtol=1e-7, atol=1e-9)
    assert np.isfinite(batch[21:]).all()  # the longest warm-up here is the 20-bar volatility ratio
