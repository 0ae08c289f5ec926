"""Cross-asset features: as-of alignment, rolling correlation and beta, cross-sectional ranks, streams.

Tolerances: correlation and beta against a direct numpy computation of each window to 1e-9 (absolute; both are
of order 1), stream against batch to 1e-9, no-look-ahead checks exact. Real data: the shipped daily panel of
14 US symbols, reference SPY.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alphaloom.core.exceptions import ConfigError, DataFormatError
from alphaloom.features import cross_asset as ca

TOL = 1e-9
WINDOW = 60


def _direct(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Correlation and beta of one window, straight from the definitions (two-pass, numpy)."""
    xc, yc = x - x.mean(), y - y.mean()
    return float(xc @ yc / np.sqrt((xc @ xc) * (yc @ yc))), float(xc @ yc / (yc @ yc))


def _utc_days(days) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(pd.Timestamp("2024-01-01", tz="UTC") + pd.to_timedelta(np.asarray(days), "D"))


# ----------------------------------------------------------------------------------------------- real data


@pytest.fixture(scope="module")
def aligned(stock_panel: pd.DataFrame) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Each symbol's closes with SPY's close aligned as of its bars."""
    spy = stock_panel[stock_panel["symbol"] == "SPY"]
    out = {}
    for sym, bars in stock_panel.groupby("symbol"):
        ref = ca.align_reference(
            pd.DatetimeIndex(bars["ts"]), pd.DatetimeIndex(spy["ts"]), spy["close"].to_numpy()
        )
        out[str(sym)] = (bars["close"].to_numpy(dtype=np.float64), ref)
    return out


def test_spy_to_itself_has_beta_and_correlation_one(aligned) -> None:
    close, ref = aligned["SPY"]
    np.testing.assert_array_equal(close, ref)
    out = ca.cross_asset_features(close, ref, WINDOW)
    assert np.isnan(out[:WINDOW]).all()
    np.testing.assert_allclose(out[WINDOW:], 1.0, rtol=0, atol=1e-12)


def test_stock_betas_to_spy_are_plausible(aligned) -> None:
    # Golden medians of the 252-day beta (shipped sample, 1998-2021): a drift here means the data or the
    # estimator changed.
    golden = {"AAPL": 1.161, "IBM": 0.876, "WM": 0.705, "QQQ": 1.214}
    for sym, (close, ref) in aligned.items():
        out = ca.cross_asset_features(close, ref, 252)
        corr, beta = out[:, 0], out[:, 1]
        defined = ~np.isnan(beta)
        assert defined.sum() == len(close) - 252, sym
        assert np.isfinite(corr[defined]).all()
        assert (np.abs(corr[defined]) <= 1.0).all(), sym
        assert 0.3 < np.median(beta[defined]) < 2.0, sym
        assert np.median(corr[defined]) > 0.3, sym
        if sym in golden:
            assert np.median(beta[defined]) == pytest.approx(golden[sym], abs=5e-4), sym


def test_stream_equals_batch_on_real_data_with_unknown_reference(aligned) -> None:
    close, ref = aligned["AAPL"]
    close, ref = close[:1500], ref[:1500].copy()
    ref[[100, 101, 700, 1200]] = np.nan  # reference bars not known yet
    batch = ca.cross_asset_features(close, ref, WINDOW)
    stream = ca.CrossAssetStream(WINDOW)
    streamed = np.array([stream.update(c, r) for c, r in zip(close, ref, strict=True)])
    assert stream.lookback == WINDOW
    assert stream.names == ("correlation", "beta")
    np.testing.assert_array_equal(np.isnan(streamed), np.isnan(batch))
    np.testing.assert_allclose(streamed, batch, rtol=0, atol=TOL, equal_nan=True)
    # An unknown reference close voids the two returns touching it, hence every window holding them.
    assert np.isnan(batch[100 : 102 + WINDOW]).all()
    assert np.isfinite(batch[102 + WINDOW]).all()


def test_batch_matches_its_parts(aligned) -> None:
    close, ref = aligned["IBM"]
    out = ca.cross_asset_features(close, ref, WINDOW)
    a, r = ca.log_returns(close), ca.log_returns(ref)
    np.testing.assert_array_equal(out[:, 0], ca.rolling_correlation(a, r, WINDOW))
    np.testing.assert_array_equal(out[:, 1], ca.rolling_beta(a, r, WINDOW))


# ------------------------------------------------------------------------------- accuracy on long series


def test_matches_direct_computation_on_a_million_bars() -> None:
    # Regimes five orders of magnitude apart and NaN gaps: a running sum would carry the big regime's rounding
    # into the quiet one; the block recurrence computes each window from its own values only.
    n = 1_000_000
    rng = np.random.default_rng(7)
    scale = np.where((np.arange(n) // 50_000) % 2 == 0, 1e-2, 1e-7)
    ref = rng.normal(0.0, 1.0, n) * scale
    asset = 1e-4 + 0.9 * ref + rng.normal(0.0, 1.0, n) * scale * 0.5
    asset[[1000, 333_333, 777_777]] = np.nan
    ref[500_000] = np.nan
    for window in (2, 7, 60, 500):
        corr = ca.rolling_correlation(asset, ref, window)
        beta = ca.rolling_beta(asset, ref, window)
        ends = np.concatenate(
            [rng.integers(window - 1, n, 400), [n - 1, window - 1, 50_000 + window, 100_000 + window - 1]]
        )
        for t in ends:
            x, y = asset[t - window + 1 : t + 1], ref[t - window + 1 : t + 1]
            if np.isnan(x).any() or np.isnan(y).any():
                assert np.isnan(corr[t])
                assert np.isnan(beta[t])
                continue
            want_corr, want_beta = _direct(x, y)
            assert abs(corr[t] - want_corr) <= TOL, (window, t)
            assert abs(beta[t] - want_beta) <= TOL * max(1.0, abs(want_beta)), (window, t)


def test_warm_up_nan_and_constant_windows() -> None:
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=200), rng.normal(size=200)
    y[100:140] = 0.25  # reference flat for 40 bars
    x[150:190] = -1.0  # asset flat for 40 bars
    y[60] = np.nan
    corr, beta = ca.rolling_correlation(x, y, 20), ca.rolling_beta(x, y, 20)
    assert np.isnan(corr[:19]).all()
    assert np.isnan(beta[:19]).all()
    assert np.isfinite(corr[19:60]).all()
    assert np.isnan(corr[60:80]).all()
    assert np.isnan(beta[60:80]).all()
    assert np.isnan(beta[119:140]).all()  # reference var == 0: beta and correlation undefined
    assert np.isnan(corr[119:140]).all()
    assert np.isnan(corr[169:190]).all()  # asset var == 0: correlation undefined ...
    np.testing.assert_array_equal(beta[169:190], 0.0)  # ... but the beta is exactly zero
    assert np.isfinite(beta[190:]).all()


def test_known_beta() -> None:
    rng = np.random.default_rng(11)
    ref = rng.normal(0.0, 0.01, 5000)
    asset = 1.7 * ref + 0.002
    np.testing.assert_allclose(ca.rolling_beta(asset, ref, 50)[49:], 1.7, rtol=1e-12)
    np.testing.assert_allclose(ca.rolling_correlation(asset, ref, 50)[49:], 1.0, atol=1e-12)
    np.testing.assert_allclose(ca.rolling_correlation(-asset, ref, 50)[49:], -1.0, atol=1e-12)


# ----------------------------------------------------------------------------------------- no look-ahead


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    cut=st.integers(0, 119),
    window=st.integers(2, 30),
    which=st.sampled_from(["asset", "reference", "both"]),
)
def test_later_closes_never_change_earlier_features(seed: int, cut: int, window: int, which: str) -> None:
    rng = np.random.default_rng(seed)
    close = 50.0 * np.exp(np.cumsum(rng.normal(0.0, 0.02, 120)))
    ref = 300.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, 120)))
    close2, ref2 = close.copy(), ref.copy()
    if which in ("asset", "both"):
        close2[cut + 1 :] *= np.exp(rng.normal(0.0, 0.3, 119 - cut))
    if which in ("reference", "both"):
        ref2[cut + 1 :] = np.where(rng.random(119 - cut) < 0.2, np.nan, ref2[cut + 1 :] * 1.5)
    before = ca.cross_asset_features(close, ref, window)[: cut + 1]
    after = ca.cross_asset_features(close2, ref2, window)[: cut + 1]
    np.testing.assert_array_equal(before, after)


@settings(max_examples=60, deadline=None)
@given(
    asset_days=st.lists(st.integers(0, 60), min_size=1, max_size=30, unique=True),
    ref_days=st.lists(st.integers(0, 60), min_size=1, max_size=30, unique=True),
    data=st.data(),
)
def test_as_of_alignment_never_uses_a_later_reference_bar(asset_days, ref_days, data) -> None:
    ts, ref_ts = _utc_days(sorted(asset_days)), _utc_days(sorted(ref_days))
    ref_close = np.arange(1.0, len(ref_ts) + 1.0)
    got = ca.align_reference(ts, ref_ts, ref_close)
    for t, stamp in enumerate(ts):
        earlier = np.flatnonzero(ref_ts <= stamp)
        assert (np.isnan(got[t]) and earlier.size == 0) or got[t] == ref_close[earlier[-1]]
    # Rewriting every reference bar after some instant never changes bars at or before it.
    cut = _utc_days([data.draw(st.integers(0, 60))])[0]
    changed = np.where(ref_ts > cut, -99.0, ref_close)
    again = ca.align_reference(ts, ref_ts, changed)
    keep = ts <= cut
    np.testing.assert_array_equal(got[keep], again[keep])


def test_align_reference_golden_and_time_zones() -> None:
    ts = _utc_days([0, 1, 2, 3, 6]).as_unit("ns")
    ref_ts = (
        _utc_days([1, 3, 5]).tz_convert("America/New_York").as_unit("s")
    )  # same instants, other zone/unit
    got = ca.align_reference(ts, ref_ts, [10.0, 30.0, 50.0])
    np.testing.assert_array_equal(got, [np.nan, 10.0, 10.0, 30.0, 50.0])
    # One nanosecond before the reference bar is still before it.
    early = ca.align_reference(ts[1:2] - pd.Timedelta(1, "ns"), ref_ts, [10.0, 30.0, 50.0])
    assert np.isnan(early[0])


def test_reference_alignment_on_real_data(stock_panel: pd.DataFrame) -> None:
    # FB starts in 2012: every FB bar has a SPY close at or before it, and SPY on the same day is used.
    spy = stock_panel[stock_panel["symbol"] == "SPY"]
    fb = stock_panel[stock_panel["symbol"] == "FB"]
    got = ca.align_reference(pd.DatetimeIndex(fb["ts"]), pd.DatetimeIndex(spy["ts"]), spy["close"].to_numpy())
    same_day = spy.set_index("ts")["close"].reindex(fb["ts"]).to_numpy()
    np.testing.assert_array_equal(got, same_day)


# --------------------------------------------------------------------------------------- cross-sectional


def _brute_rank(values: np.ndarray) -> np.ndarray:
    out = np.full(values.shape, np.nan)
    ok = np.isfinite(values)
    v = values[ok]
    m = v.size
    if m == 1:
        out[ok] = 0.5
    elif m > 1:
        less = (v[None, :] < v[:, None]).sum(axis=1)
        ties = (v[None, :] == v[:, None]).sum(axis=1) - 1
        out[ok] = (less + ties / 2.0) / (m - 1)
    return out


def test_cross_sectional_rank_golden() -> None:
    ts = _utc_days([0, 0, 0, 1, 1, 1, 2])
    panel = pd.DataFrame(
        {
            "symbol": ["A", "B", "C", "A", "B", "C", "A"],
            "ts": ts,
            "x": [1.0, 2.0, 2.0, 5.0, np.nan, -np.inf, 3.0],
            "y": [3.0, 2.0, 1.0, 0.0, 0.0, 0.0, np.nan],
        },
        index=[10, 11, 12, 13, 14, 15, 16],
    )
    out = ca.cross_sectional_rank(panel, ["x", "y"])
    assert list(out.columns) == ["symbol", "ts", "x_rank", "y_rank"]
    assert list(out.index) == list(panel.index)
    np.testing.assert_array_equal(out["x_rank"], [0.0, 0.75, 0.75, 0.5, np.nan, np.nan, 0.5])
    np.testing.assert_array_equal(out["y_rank"], [1.0, 0.5, 0.0, 0.5, 0.5, 0.5, np.nan])
    ranker = ca.CrossSectionalRanker(["x", "y"])
    got = ranker.update({"A": [1.0, 3.0], "B": [2.0, 2.0], "C": [2.0, 1.0]})
    np.testing.assert_array_equal(got["B"], [0.75, 0.5])


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.one_of(st.integers(-3, 3).map(float), st.just(np.nan), st.just(np.inf)), min_size=1, max_size=12
    )
)
def test_rank_matches_brute_force(values: list[float]) -> None:
    v = np.array(values)
    panel = pd.DataFrame(
        {"symbol": [f"S{i}" for i in range(v.size)], "ts": _utc_days(np.zeros(v.size, int)), "f": v}
    )
    want = _brute_rank(v)
    np.testing.assert_allclose(ca.cross_sectional_rank(panel)["f_rank"], want, rtol=0, atol=1e-15)
    ranked = ca.CrossSectionalRanker(["f"]).update(dict(zip(panel["symbol"], v, strict=True)))
    np.testing.assert_allclose([ranked[s][0] for s in panel["symbol"]], want, rtol=0, atol=1e-15)


def test_ranks_on_real_panel_and_ranker_agrees(stock_panel: pd.DataFrame) -> None:
    panel = stock_panel[["symbol", "ts"]].copy()
    panel["mom20"] = stock_panel.groupby("symbol")["close"].transform(lambda c: np.log(c).diff(20))
    panel["vol"] = stock_panel["volume"]
    out = ca.cross_sectional_rank(panel, ["mom20", "vol"])
    ranks = out[["mom20_rank", "vol_rank"]].to_numpy()
    finite = ~np.isnan(ranks)
    assert ((ranks[finite] >= 0.0) & (ranks[finite] <= 1.0)).all()
    np.testing.assert_array_equal(np.isnan(ranks[:, 0]), panel["mom20"].isna().to_numpy())
    # With average ranks, the percentile ranks of m >= 2 symbols always average exactly 0.5.
    by_ts = out.assign(n=panel.groupby("ts")["mom20"].transform("count")).query("n >= 2")
    np.testing.assert_allclose(by_ts.groupby("ts")["mom20_rank"].mean(), 0.5, atol=1e-12)
    # The live ranker, fed one timestamp at a time, gives the same numbers.
    ranker = ca.CrossSectionalRanker(["mom20", "vol"])
    stamps = panel["ts"].drop_duplicates().sort_values().iloc[::97]
    for stamp in stamps:
        rows = panel[panel["ts"] == stamp]
        got = ranker.update(
            {s: v for s, v in zip(rows["symbol"], rows[["mom20", "vol"]].to_numpy(), strict=True)}
        )
        want = out.loc[rows.index, ["mom20_rank", "vol_rank"]].to_numpy()
        np.testing.assert_array_equal(np.array([got[s] for s in rows["symbol"]]), want)


def test_rank_uses_only_its_own_timestamp(stock_panel: pd.DataFrame) -> None:
    panel = stock_panel[["symbol", "ts", "close"]].copy()
    out = ca.cross_sectional_rank(panel, ["close"])
    cut = panel["ts"].iloc[len(panel) // 2]
    changed = panel.copy()
    later = changed["ts"] > cut
    changed.loc[later, "close"] = -changed.loc[later, "close"]
    again = ca.cross_sectional_rank(changed, ["close"])
    np.testing.assert_array_equal(out.loc[~later, "close_rank"], again.loc[~later, "close_rank"])


# --------------------------------------------------------------------------------------------- bad input


def test_length_mismatch_and_shapes_are_refused() -> None:
    with pytest.raises(DataFormatError, match="lengths 10 and 9"):
        ca.rolling_correlation(np.ones(10), np.ones(9), 5)
    with pytest.raises(DataFormatError, match="lengths 10 and 9"):
        ca.rolling_beta(np.ones(10), np.ones(9), 5)
    with pytest.raises(DataFormatError, match="align_reference"):
        ca.cross_asset_features(np.ones(10), np.ones(9), 5)
    with pytest.raises(DataFormatError, match="one-dimensional"):
        ca.rolling_beta(np.ones((10, 2)), np.ones((10, 2)), 5)
    with pytest.raises(DataFormatError, match="3 closes for 2 timestamps"):
        ca.align_reference(_utc_days([0, 1]), _utc_days([0, 1]), [1.0, 2.0, 3.0])


@pytest.mark.parametrize("window", [0, 1, -5, 2.5, True, "60"])
def test_bad_window(window) -> None:
    with pytest.raises(ConfigError, match="window must be an integer >= 2"):
        ca.rolling_correlation(np.ones(10), np.ones(10), window)
    with pytest.raises(ConfigError, match="window must be an integer >= 2"):
        ca.CrossAssetStream(window)


def test_bad_timestamps() -> None:
    good = _utc_days([0, 1, 2])
    with pytest.raises(DataFormatError, match=r"strictly increasing.*element 2 is an out-of-order"):
        ca.align_reference(_utc_days([0, 2, 1]), good, [1.0, 2.0, 3.0])
    with pytest.raises(DataFormatError, match=r"ref_ts must be strictly increasing.*duplicate"):
        ca.align_reference(good, _utc_days([0, 1, 1]), [1.0, 2.0, 3.0])
    with pytest.raises(DataFormatError, match=r"no timezone.*tz_localize"):
        ca.align_reference(good.tz_localize(None), good, [1.0, 2.0, 3.0])


@pytest.mark.parametrize("bad", [0.0, -1.0, np.inf])
def test_bad_prices(bad: float) -> None:
    close = np.linspace(10.0, 20.0, 50)
    close[7] = bad
    with pytest.raises(DataFormatError, match="element 7"):
        ca.cross_asset_features(close, np.linspace(10.0, 20.0, 50), 10)
    with pytest.raises(DataFormatError, match="positive price or NaN"):
        ca.CrossAssetStream(10).update(10.0, bad)


def test_bad_panels() -> None:
    panel = pd.DataFrame({"symbol": ["A", "A"], "ts": _utc_days([0, 0]), "mom": [1.0, 2.0]})
    with pytest.raises(DataFormatError, match=r"duplicate \(symbol, ts\).*drop_duplicates"):
        ca.cross_sectional_rank(panel)
    with pytest.raises(DataFormatError, match="Did you mean 'mom'"):
        ca.cross_sectional_rank(panel.iloc[:1], ["mon"])
    with pytest.raises(DataFormatError, match="missing column"):
        ca.cross_sectional_rank(panel.drop(columns="ts"))
    with pytest.raises(ConfigError, match="at least one"):
        ca.cross_sectional_rank(panel.iloc[:1], [])
    with pytest.raises(ConfigError, match="key"):
        ca.cross_sectional_rank(panel.iloc[:1], ["ts"])
    with pytest.raises(DataFormatError, match="2 column"):
        ca.CrossSectionalRanker(["a", "b"]).update({"A": [1.0]})
