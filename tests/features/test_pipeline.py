"""The feature pipeline: names and warm-up, scale-freedom, no look-ahead, the volume policy and bad input."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alphaloom.core.exceptions import ConfigError, DataFormatError, EmptyRangeError, NotFittedError
from alphaloom.features import VOLUME_ROC_CLIP, FeatureConfig, FeatureEngineer

#: Index of the first defined row of each default feature (its warm-up), pinned.
DEFAULT_WARMUP = {
    "log_ret_1": 1,
    "log_ret_5": 5,
    "log_ret_20": 20,
    "close_sma_10": 9,
    "close_sma_50": 49,
    "close_ema_20": 19,
    "bb_pctb_20": 19,
    "bb_width_20": 19,
    "rsi_14": 14,
    "macd_line": 25,
    "macd_signal": 33,
    "macd_hist": 33,
    "atr_14": 14,
    "gk_vol_20": 19,
    "parkinson_vol_20": 19,
    "rs_vol_20": 19,
    "realised_vol_20": 20,
    "vol_ratio_5_20": 20,
    "vwap_dist_20": 19,
    "obv_slope_20": 20,
    "volume_roc_5": 9,
}
VOLUME_FEATURES = ["vwap_dist_20", "obv_slope_20", "volume_roc_5"]

MakeBars = Callable[..., pd.DataFrame]


def first_valid(column: pd.Series) -> int:
    return int(np.flatnonzero(column.notna().to_numpy())[0])


def test_default_features_names_and_lookback() -> None:
    engineer = FeatureEngineer()
    assert engineer.get_feature_names_out() == list(DEFAULT_WARMUP)
    assert engineer.lookback == 49 == max(DEFAULT_WARMUP.values())


def test_transform_output_shape_index_and_warm_up(spy: pd.DataFrame) -> None:
    engineer = FeatureEngineer()
    assert engineer.fit(spy) is engineer
    features = engineer.transform(spy)
    assert engineer.feature_names_ == list(DEFAULT_WARMUP)
    assert engineer.has_volume_ is True
    assert list(features.columns) == list(DEFAULT_WARMUP)
    assert (features.dtypes == np.float64).all()
    assert isinstance(features.index, pd.DatetimeIndex)
    assert features.index.name == "ts"
    assert str(features.index.tz) == "UTC"
    assert features.index.equals(pd.DatetimeIndex(spy["ts"]))
    for name, warmup in DEFAULT_WARMUP.items():
        assert first_valid(features[name]) == warmup, name
    complete = features.iloc[engineer.lookback :]
    assert np.isfinite(complete.to_numpy()).all()
    assert features.iloc[engineer.lookback - 1].isna().any()


def test_features_are_scale_free(spy: pd.DataFrame) -> None:
    scaled = spy.copy()
    scaled[["open", "high", "low", "close"]] *= 37.25
    scaled["volume"] *= 1e-3
    a = FeatureEngineer().fit_transform(spy)
    b = FeatureEngineer().fit_transform(scaled)
    np.testing.assert_allclose(b.to_numpy(), a.to_numpy(), rtol=1e-9, atol=1e-12, equal_nan=True)


def test_pooled_features_have_comparable_scales(spy: pd.DataFrame, eurusd: pd.DataFrame) -> None:
    """A stock near 100 and a currency near 1.3 give features of the same order of magnitude."""
    engineer = FeatureEngineer()
    stock = engineer.fit_transform(spy).iloc[engineer.lookback :]
    fx = engineer.fit_transform(eurusd).iloc[engineer.lookback :]
    for name in ("close_sma_10", "macd_line", "atr_14", "realised_vol_20"):
        ratio = stock[name].abs().median() / fx[name].abs().median()
        assert 0.2 < ratio < 10.0, (name, ratio)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    t=st.integers(0, 148),
    factor=st.floats(0.2, 5.0),
    volume_factor=st.floats(0.0, 10.0),
)
def test_changing_bars_after_t_never_changes_features_up_to_t(
    synthetic: MakeBars, seed: int, t: int, factor: float, volume_factor: float
) -> None:
    bars = synthetic(seed, 150)
    altered = bars.copy()
    later = altered.index > t
    altered.loc[later, ["open", "high", "low", "close"]] *= factor
    altered.loc[later, "high"] *= 1.05
    altered.loc[later, "volume"] *= volume_factor
    before = FeatureEngineer().fit_transform(bars)
    after = FeatureEngineer().fit_transform(altered)
    np.testing.assert_array_equal(before.iloc[: t + 1].to_numpy(), after.iloc[: t + 1].to_numpy())


def test_a_later_slice_gives_the_same_rows(synthetic: MakeBars) -> None:
    """Window features match from the slice's lookback on; smoothed ones once their seed has decayed."""
    bars = synthetic(3, 700)
    engineer = FeatureEngineer()
    whole = engineer.fit_transform(bars).iloc[200:]
    part = engineer.transform(bars.iloc[200:])
    smoothed = ["close_ema_20", "rsi_14", "macd_line", "macd_signal", "macd_hist", "atr_14"]
    windowed = [c for c in whole.columns if c not in smoothed]
    lb = engineer.lookback
    # Rolling sums run online (compensated add/remove), so their rounding carries ~1e-12 of history.
    np.testing.assert_allclose(part[windowed].iloc[lb:], whole[windowed].iloc[lb:], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(part[smoothed].iloc[400:], whole[smoothed].iloc[400:], rtol=0, atol=1e-10)
    assert not np.allclose(part[smoothed].iloc[lb], whole[smoothed].iloc[lb], rtol=0, atol=1e-10)


def test_forex_without_volume_gets_zero_volume_features(eurusd: pd.DataFrame) -> None:
    assert eurusd["volume"].isna().all()
    engineer = FeatureEngineer().fit(eurusd)
    assert engineer.has_volume_ is False
    features = engineer.transform(eurusd)
    for name in VOLUME_FEATURES:
        warmup = DEFAULT_WARMUP[name]
        assert features[name].iloc[:warmup].isna().all()
        assert (features[name].iloc[warmup:] == 0.0).all()
    assert np.isfinite(features.iloc[engineer.lookback :].to_numpy()).all()


def test_all_zero_volume_counts_as_no_volume(synthetic: MakeBars) -> None:
    bars = synthetic(5, 120).assign(volume=0.0)
    engineer = FeatureEngineer().fit(bars)
    assert engineer.has_volume_ is False
    assert (engineer.transform(bars)[VOLUME_FEATURES].iloc[engineer.lookback :] == 0.0).all().all()


def test_isolated_missing_volume_counts_as_zero(synthetic: MakeBars) -> None:
    bars = synthetic(6, 200)
    with_nan, with_zero = bars.copy(), bars.copy()
    with_nan.loc[[60, 61, 130], "volume"] = np.nan
    with_zero.loc[[60, 61, 130], "volume"] = 0.0
    a = FeatureEngineer().fit_transform(with_nan)
    b = FeatureEngineer().fit_transform(with_zero)
    pd.testing.assert_frame_equal(a, b)
    assert np.isfinite(a.iloc[49:].to_numpy()).all()


def test_windows_without_volume_give_neutral_values(synthetic: MakeBars) -> None:
    bars = synthetic(7, 160)
    bars.loc[60:100, "volume"] = 0.0
    features = FeatureEngineer().fit_transform(bars)
    dead = features.loc[features.index[90:100]]
    assert (dead[["vwap_dist_20", "obv_slope_20", "volume_roc_5"]] == 0.0).all().all()
    assert features["volume_roc_5"].iloc[105] == VOLUME_ROC_CLIP  # volume came back after 5 empty bars
    assert features["obv_slope_20"].abs().max() <= 1.0


def test_transform_does_not_refit(eurusd: pd.DataFrame, spy: pd.DataFrame) -> None:
    engineer = FeatureEngineer().fit(eurusd)
    features = engineer.transform(spy)
    assert engineer.has_volume_ is False
    assert (features[VOLUME_FEATURES].iloc[engineer.lookback :] == 0.0).all().all()


def test_transform_panel_fits_each_symbol(spy: pd.DataFrame, eurusd: pd.DataFrame) -> None:
    panel = pd.concat([spy.head(300), eurusd.head(200)], ignore_index=True)
    engineer = FeatureEngineer()
    out = engineer.transform_panel(panel)
    assert list(out.columns) == ["symbol", "ts", *DEFAULT_WARMUP]
    assert list(pd.unique(out["symbol"])) == ["SPY", "EURUSD"]
    assert len(out) == 500
    spy_rows = out[out["symbol"] == "SPY"].set_index("ts").drop(columns="symbol")
    pd.testing.assert_frame_equal(spy_rows, FeatureEngineer().fit_transform(spy.head(300)), check_freq=False)
    fx_rows = out[out["symbol"] == "EURUSD"]
    assert (fx_rows[VOLUME_FEATURES].iloc[49:] == 0.0).all().all()
    assert (spy_rows[VOLUME_FEATURES].iloc[49:] != 0.0).any().all()
    assert not hasattr(engineer, "feature_names_")


def test_groups_select_columns_in_a_stable_order(spy: pd.DataFrame) -> None:
    config = FeatureConfig.from_dict({"groups": ["volume", "returns"], "returns": {"windows": [1, 3]}})
    engineer = FeatureEngineer(config)
    assert engineer.get_feature_names_out() == ["log_ret_1", "log_ret_3", *VOLUME_FEATURES]
    assert engineer.lookback == 20
    assert list(engineer.fit_transform(spy).columns) == engineer.get_feature_names_out()


def test_config_rejects_bad_settings() -> None:
    with pytest.raises(ConfigError, match="Did you mean 'rsi_window'"):
        FeatureConfig.from_dict({"price": {"rsi_windw": 10}})
    with pytest.raises(ConfigError, match="Did you mean 'price'"):
        FeatureConfig.from_dict({"prices": {"rsi_window": 10}})
    with pytest.raises(ConfigError, match="macd_fast"):
        FeatureConfig.from_dict({"price": {"macd_fast": 30}})
    with pytest.raises(ConfigError, match="vol_ratio_short"):
        FeatureConfig.from_dict({"volatility": {"vol_ratio_short": 20, "vol_ratio_long": 10}})
    with pytest.raises(ConfigError, match="groups"):
        FeatureConfig.from_dict({"groups": []})
    with pytest.raises(ConfigError, match="Did you mean 'wavelet'"):
        FeatureConfig.from_dict({"groups": ["returns", "wavelets"]})
    with pytest.raises(ConfigError, match="at least one horizon"):
        FeatureConfig.from_dict({"groups": ["returns"], "returns": {"windows": []}})
    with pytest.raises(ConfigError, match=r"rank_features.*Did you mean 'log_ret_20'"):
        FeatureConfig.from_dict({"rank_features": ["log_ret20"]})
    tuned = FeatureConfig.from_dict({"price": {"rsi_window": 10}})
    assert FeatureConfig().config_hash() != tuned.config_hash()


def test_transform_before_fit_raises(spy: pd.DataFrame) -> None:
    with pytest.raises(NotFittedError, match="fit"):
        FeatureEngineer().transform(spy)


def _with(bars: pd.DataFrame, **changes: object) -> pd.DataFrame:
    out = bars.copy()
    for column, value in changes.items():
        out[column] = value
    return out


@pytest.mark.parametrize(
    ("mutate", "error", "fragment"),
    [
        (lambda b: b.drop(columns="close"), DataFormatError, "missing column.*'close'"),
        (lambda b: b.rename(columns={"close": "Close"}), DataFormatError, "Did you mean 'Close'"),
        (lambda b: b.iloc[::-1], DataFormatError, "strictly increasing.*sort_values"),
        (lambda b: pd.concat([b.iloc[:80], b.iloc[79:]]), DataFormatError, "duplicate timestamp"),
        (lambda b: b.head(49), EmptyRangeError, "49 rows.*at least 50"),
        (lambda b: _with(b, ts=b["ts"].dt.tz_localize(None)), DataFormatError, "no timezone"),
        (lambda b: _with(b, ts=b["ts"].astype(str)), DataFormatError, "timezone-aware"),
        (lambda b: b.assign(low=np.where(b.index == 70, 0.0, b["low"])), DataFormatError, "'low' must be"),
        (lambda b: b.assign(close=np.where(b.index == 3, np.nan, b["close"])), DataFormatError, "finite"),
        (lambda b: b.assign(volume=-b["volume"]), DataFormatError, "'volume' must be >= 0"),
        (lambda b: b.assign(symbol=np.where(b.index < 50, "A", "B")), DataFormatError, "transform_panel"),
        (lambda b: b.assign(open="x"), DataFormatError, "numeric"),
    ],
)
def test_bad_input_is_refused_with_a_fix(
    synthetic: MakeBars, mutate: Callable[[pd.DataFrame], pd.DataFrame], error: type, fragment: str
) -> None:
    bars = mutate(synthetic(8, 150))
    with pytest.raises(error, match=fragment):
        FeatureEngineer().fit(bars)


def test_panel_input_errors(synthetic: MakeBars) -> None:
    engineer = FeatureEngineer()
    with pytest.raises(DataFormatError, match="no 'symbol' column"):
        engineer.transform_panel(synthetic(1, 100).drop(columns="symbol"))
    with pytest.raises(EmptyRangeError, match="no rows"):
        engineer.transform_panel(synthetic(1, 100).iloc[:0])
    short = pd.concat([synthetic(1, 100, symbol="LONG"), synthetic(2, 20, symbol="SHORT")])
    with pytest.raises(EmptyRangeError, match="'SHORT'"):
        engineer.transform_panel(short)


def test_ts_may_be_the_index(synthetic: MakeBars) -> None:
    bars = synthetic(9, 100)
    a = FeatureEngineer().fit_transform(bars)
    b = FeatureEngineer().fit_transform(bars.set_index("ts"))
    pd.testing.assert_frame_equal(a, b)


# ------------------------------------------------------------------------------------------ streaming
def test_stream_gives_the_batch_rows_for_core_bars(spy: pd.DataFrame) -> None:
    from alphaloom.core.types import Bar

    bars = spy.head(400)
    engineer = FeatureEngineer().fit(bars)
    batch = engineer.transform(bars).to_numpy()
    stream = engineer.stream()
    assert stream.names == engineer.feature_names_
    rows = []
    for record in bars.to_dict("records"):
        bar = Bar(
            symbol="SPY",
            ts=record["ts"].to_pydatetime(),
            open=record["open"],
            high=record["high"],
            low=record["low"],
            close=record["close"],
            volume=record["volume"],
        )
        rows.append(stream.update(bar))
    np.testing.assert_allclose(np.vstack(rows), batch, rtol=1e-9, atol=1e-12)


def test_stream_takes_mappings_and_reads_missing_volume_as_zero(eurusd: pd.DataFrame) -> None:
    bars = eurusd.head(200)
    engineer = FeatureEngineer().fit(bars)
    batch = engineer.transform(bars).to_numpy()
    stream = engineer.stream()
    streamed = np.vstack([stream.update(r) for r in bars.assign(volume=np.nan).to_dict("records")])
    np.testing.assert_allclose(streamed, batch, rtol=1e-9, atol=1e-12)


def test_stream_refuses_bad_bars_with_a_fix(spy: pd.DataFrame) -> None:
    bars = spy.head(100)
    stream = FeatureEngineer().fit(bars).stream()
    first, second = bars.to_dict("records")[:2]
    stream.update(first)
    with pytest.raises(DataFormatError, match="strictly increasing"):
        stream.update(first)
    with pytest.raises(DataFormatError, match="'close' must be finite"):
        stream.update({**second, "close": float("nan")})
    with pytest.raises(DataFormatError, match="no timezone"):
        stream.update({**second, "ts": second["ts"].tz_localize(None)})
    with pytest.raises(DataFormatError, match="volume"):
        stream.update({**second, "volume": -1.0})
    with pytest.raises(NotFittedError):
        FeatureEngineer().stream()


def test_matrix_is_float32_with_names(spy: pd.DataFrame) -> None:
    engineer = FeatureEngineer().fit(spy)
    matrix = engineer.transform_matrix(spy)
    frame = engineer.transform(spy)
    assert matrix.values.dtype == np.float32
    assert matrix.values.shape == frame.shape
    assert matrix.names == list(frame.columns)
    assert matrix.lookback == engineer.lookback
    np.testing.assert_allclose(matrix.values, frame.to_numpy(np.float32), rtol=1e-6, equal_nan=True)
    assert set(engineer.timings_) == set(FeatureConfig().groups)


def test_config_loads_from_toml(tmp_path, spy: pd.DataFrame) -> None:
    from alphaloom.core.config import load_config

    path = tmp_path / "features.toml"
    path.write_text(
        'groups = ["returns", "price", "wavelet"]\n'
        'rank_features = ["log_ret_5"]\n'
        "[returns]\nwindows = [1, 5]\n"
        "[wavelet]\nwindow = 32\nlevel = 2\n"
    )
    config = load_config(FeatureConfig, path)
    engineer = FeatureEngineer(config)
    names = engineer.get_feature_names_out()
    assert names[:2] == ["log_ret_1", "log_ret_5"]
    assert "wav_energy_a2" in names
    assert "wav_trend_dist" in names
    assert config.config_hash() == load_config(FeatureConfig, path).config_hash()


def test_panel_adds_cross_sectional_ranks(stock_panel: pd.DataFrame) -> None:
    panel = stock_panel[stock_panel["symbol"].isin(["SPY", "AAPL", "MSFT"])].groupby("symbol").head(300)
    config = FeatureConfig.from_dict({"groups": ["returns"], "rank_features": ["log_ret_20"]})
    out = FeatureEngineer(config).transform_panel(panel)
    ranks = out["rank_log_ret_20"]
    assert ranks.dropna().between(0.0, 1.0).all()
    # At each timestamp where all three have a value, the ranks are 0, 0.5 and 1 in return order.
    full = out.dropna(subset=["log_ret_20"]).groupby("ts").filter(lambda g: len(g) == 3)
    for _, g in list(full.groupby("ts"))[:20]:
        order = g.sort_values("log_ret_20")["rank_log_ret_20"].to_numpy()
        np.testing.assert_allclose(order, [0.0, 0.5, 1.0])


def test_cross_asset_reference_comes_from_the_panel(stock_panel: pd.DataFrame) -> None:
    panel = stock_panel[stock_panel["symbol"].isin(["SPY", "QQQ"])].groupby("symbol").tail(400)
    config = FeatureConfig.from_dict({"groups": ["returns", "cross_asset"], "cross_asset": {"window": 60}})
    out = FeatureEngineer(config).transform_panel(panel)
    spy = out[out["symbol"] == "SPY"].dropna()
    np.testing.assert_allclose(spy[["corr_ref_60", "beta_ref_60"]].to_numpy(), 1.0, rtol=1e-9)
    qqq = out[out["symbol"] == "QQQ"].dropna()
    assert qqq["corr_ref_60"].median() > 0.7
    assert 0.5 < qqq["beta_ref_60"].median() < 2.0


def test_cross_asset_without_a_reference_says_how_to_pass_one(spy: pd.DataFrame) -> None:
    config = FeatureConfig.from_dict({"groups": ["cross_asset"]})
    with pytest.raises(DataFormatError, match=r"FeatureContext\(reference=bars\)"):
        FeatureEngineer(config).fit(spy.drop(columns="symbol"))


def test_a_headline_never_reaches_the_bar_of_its_own_date() -> None:
    from alphaloom.features import FeatureContext
    from alphaloom.features.sentiment import prepare_items

    ts = pd.date_range("2020-03-02", periods=60, freq="D", tz="UTC")
    bars = pd.DataFrame({"ts": ts, "open": 100.0, "high": 101.0, "low": 99.0, "close": 100.5, "volume": 1e6})
    headline = "Shares plunge as the company files for bankruptcy"
    news = prepare_items(pd.DataFrame({"timestamp": ["2020-03-10"], "text": [headline]}), symbol_col=None)
    config = FeatureConfig.from_dict({"groups": ["sentiment"], "sentiment": {"news_symbol": "*"}})
    features = FeatureEngineer(config).fit_transform(bars, FeatureContext(news=news))
    count = np.expm1(features["sent_count_log1p"])
    assert count.loc["2020-03-10"] == 0.0
    assert count.loc["2020-03-11"] == 1.0
    assert features.loc["2020-03-11", "sent_mean"] < -0.3
    assert (features.loc[:"2020-03-10"].to_numpy() == 0.0).all()
