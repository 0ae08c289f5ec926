"""DataValidator on the real shipped samples (documented quirks found) and on hand-made bad frames."""

from __future__ import annotations

import math
import time
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.pandas import column, data_frames, range_indexes

from alphaloom.core.clock import SimulatedClock
from alphaloom.core.exceptions import ConfigError, DataFormatError, DataValidationError
from alphaloom.core.types import BAR_COLUMNS, Bar, Quote, Trade
from alphaloom.data import (
    CHECKS,
    SAMPLE_INSTRUMENTS,
    DataValidator,
    DuckDBBarStore,
    Instrument,
    ValidationResult,
    ValidatorConfig,
)
from alphaloom.data.validator import TRADE_TIMEFRAME, StreamValidator

STOCK = {"AAA": Instrument("AAA", "stock", "XNYS")}
FX = {"EURUSD": Instrument("EURUSD", "forex", "24/5")}
COIN = {"BTCUSD": Instrument("BTCUSD", "crypto", "24/7")}


def assert_partition(bars: pd.DataFrame, result: ValidationResult) -> None:
    """Nothing dropped, clean is canonical."""
    assert len(result.clean) + len(result.quarantined) == len(bars)
    clean = result.clean
    assert list(clean.columns) == list(BAR_COLUMNS)
    assert list(result.quarantined.columns) == [*BAR_COLUMNS, "check", "reason"]
    assert not clean.duplicated(["symbol", "ts"]).any()
    assert clean.equals(clean.sort_values(["symbol", "ts"]).reset_index(drop=True))
    prices = clean[["open", "high", "low", "close"]].to_numpy()
    assert np.isfinite(prices).all()
    assert (prices > 0).all()
    assert (clean["high"] >= clean[["open", "close", "low"]].max(axis=1)).all()
    assert (clean["low"] <= clean[["open", "close", "high"]].min(axis=1)).all()
    assert not (clean["volume"] < 0).any()
    assert set(result.quarantined["check"]) <= set(CHECKS)


def checks(result: ValidationResult, severity: str | None = None) -> set[str]:
    return {i.check for i in result.issues if severity is None or i.severity == severity}


# ---------------------------------------------------------------------- the real samples


@pytest.fixture(scope="module")
def sample_result(sample_bars: pd.DataFrame) -> ValidationResult:
    return DataValidator(ValidatorConfig()).validate(sample_bars, SAMPLE_INSTRUMENTS)


def test_samples_are_clean_and_partitioned(
    sample_bars: pd.DataFrame, sample_result: ValidationResult
) -> None:
    assert_partition(sample_bars, sample_result)
    assert sample_result.quarantined.empty
    assert not sample_result.has_errors
    assert len(sample_result.clean) == len(sample_bars)


def test_qqq_gap_is_reported(sample_result: ValidationResult) -> None:
    (gap,) = [i for i in sample_result.by_check("gap") if i.symbol == "QQQ"]
    assert gap.severity == "warning"
    assert gap.ts == pd.Timestamp("2004-12-01", tz="UTC")
    assert "2011-03-22" in gap.message
    assert gap.count > 1600  # business days missing


def test_gbpusd_and_crypto_gaps_are_reported(sample_result: ValidationResult) -> None:
    gaps = {(i.symbol, i.ts.strftime("%Y-%m-%d")) for i in sample_result.by_check("gap")}
    assert ("GBPUSD", "2017-06-27") in gaps
    assert {("BTCUSD", "2019-03-20"), ("ETHUSD", "2019-03-20"), ("LTCUSD", "2019-03-20")} <= gaps
    # Exchange holidays and forex Christmas closures stay below the thresholds.
    assert {s for s, _ in gaps} == {"QQQ", "GBPUSD", "BTCUSD", "ETHUSD", "LTCUSD"}


def test_bno_zero_volume_is_warned(sample_result: ValidationResult) -> None:
    (bno,) = [i for i in sample_result.by_check("zero_volume") if i.symbol == "BNO"]
    assert bno.severity == "warning"
    assert bno.count == 26
    crypto_zero = {i.symbol: i.count for i in sample_result.by_check("zero_volume") if i.symbol != "BNO"}
    assert crypto_zero == {"BTCUSD": 9, "ETHUSD": 1, "LTCUSD": 1}


def test_fx_volume_is_info_not_warning(sample_result: ValidationResult) -> None:
    missing = sample_result.by_check("missing_volume")
    assert {i.symbol for i in missing} == {"EURUSD", "GBPUSD", "NZDUSD", "EURGBP"}
    assert {i.severity for i in missing} == {"info"}


def test_fx_weekend_boundary_bars_are_info(sample_result: ValidationResult) -> None:
    off = sample_result.by_check("off_calendar")
    assert {i.symbol for i in off} == {"EURUSD", "GBPUSD", "NZDUSD", "EURGBP"}
    assert {i.severity for i in off} == {"info"}


def test_real_crash_is_a_kept_outlier(sample_result: ValidationResult) -> None:
    (aapl,) = [i for i in sample_result.by_check("return_outlier") if i.symbol == "AAPL"]
    assert aapl.ts == pd.Timestamp("2000-09-29", tz="UTC")  # -52% on a profit warning: real, so kept
    assert aapl.severity == "warning"


def test_stock_panel_validates_fast(sample_bars: pd.DataFrame) -> None:
    stocks = sample_bars[sample_bars["symbol"].map(lambda s: SAMPLE_INSTRUMENTS[s].calendar == "XNYS")]
    validator = DataValidator()
    validator.validate(stocks.iloc[:1000], SAMPLE_INSTRUMENTS)  # warm-up
    started = time.perf_counter()
    validator.validate(stocks, SAMPLE_INSTRUMENTS)
    elapsed = time.perf_counter() - started
    assert len(stocks) == 63_174
    assert elapsed < 1.0, f"validating the stock panel took {elapsed:.2f}s"  # about 0.1 s on one core


def test_report_formats(sample_result: ValidationResult) -> None:
    summary = sample_result.summary()
    assert list(summary.columns) == ["check", "severity", "symbol", "ts", "count", "message"]
    assert len(summary) == len(sample_result.issues)
    text = sample_result.to_text()
    assert text.startswith("80,491 bars: 80,491 clean, 0 quarantined; 0 error(s)")
    assert "[warning] gap QQQ: no bars from 2004-12-01 to 2011-03-22" in text


# ---------------------------------------------------------------------- hand-made bad frames


@pytest.mark.parametrize(
    ("row", "values", "check"),
    [
        (1, {"close": np.nan}, "missing_price"),
        (1, {"open": np.inf}, "missing_price"),
        (2, {"low": 0.0}, "non_positive_price"),
        (2, {"open": -5.0, "low": -6.0}, "non_positive_price"),
        (3, {"high": 50.0}, "ohlc_inconsistent"),  # high below open and close
        (3, {"low": 500.0}, "ohlc_inconsistent"),  # low above open and close
        (4, {"volume": -1.0}, "negative_volume"),
    ],
)
def test_each_row_check_quarantines(make_bars, row: int, values: dict[str, float], check: str) -> None:
    bars = make_bars("AAA", n=6)
    for col, value in values.items():
        bars.loc[row, col] = value
    result = DataValidator().validate(bars, STOCK)
    assert_partition(bars, result)
    assert result.quarantined["check"].tolist() == [check]
    assert result.quarantined["ts"].tolist() == [bars.loc[row, "ts"]]
    (issue,) = result.by_check(check)
    assert (issue.severity, issue.symbol, issue.count) == ("error", "AAA", 1)


def test_duplicates_keep_the_first_copy(make_bars) -> None:
    bars = make_bars("AAA", n=4)
    dup = bars.iloc[[1, 1]].assign(close=[bars.loc[1, "close"], bars.loc[1, "close"] * 1.001])
    result = DataValidator().validate(pd.concat([bars, dup], ignore_index=True), STOCK)
    assert len(result.clean) == 4
    assert result.clean.loc[1, "close"] == bars.loc[1, "close"]
    assert result.quarantined["check"].tolist() == ["duplicate", "duplicate"]
    assert "differs" in result.quarantined["reason"].iloc[1]
    assert result.by_check("duplicate")[0].count == 2


def test_duplicate_keeps_the_first_valid_copy(make_bars) -> None:
    bars = make_bars("AAA", n=3)
    broken = bars.iloc[[1]].assign(close=np.nan)
    frame = pd.concat([broken, bars], ignore_index=True)  # the broken copy comes first
    result = DataValidator().validate(frame, STOCK)
    pd.testing.assert_frame_equal(result.clean, bars)
    assert result.quarantined["check"].tolist() == ["missing_price"]


def test_a_row_failing_several_checks_is_quarantined_once(make_bars) -> None:
    bars = make_bars("AAA", n=3)
    bars.loc[1, ["close", "volume"]] = [np.nan, -3.0]
    result = DataValidator().validate(bars, STOCK)
    (row,) = result.quarantined.itertuples()
    assert row.check == "missing_price"
    assert "close missing" in row.reason
    assert "volume -3 is not >= 0" in row.reason
    assert checks(result, "error") == {"missing_price", "negative_volume"}


def test_return_outlier_is_warned_not_quarantined_by_default(make_bars) -> None:
    bars = make_bars("AAA", n=60)
    rng = np.random.default_rng(7)
    bars["close"] = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, 60)))
    bars.loc[30:, "close"] *= 2.0  # a lasting +100% jump at bar 30 (e.g. an unadjusted split)
    bars["open"] = bars["close"]
    bars["high"] = bars["close"] * 1.01
    bars["low"] = bars["close"] * 0.99
    result = DataValidator().validate(bars, STOCK)
    (issue,) = result.by_check("return_outlier")
    assert issue.ts == bars.loc[30, "ts"]
    assert issue.severity == "warning"
    assert result.quarantined.empty


def test_quarantine_outliers_takes_only_the_spike(make_bars) -> None:
    bars = make_bars("AAA", n=60)
    rng = np.random.default_rng(3)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, 60)))
    close[40] *= 3.0  # a one-bar bad tick that reverts on the next bar
    bars = bars.assign(open=close, high=close * 1.01, low=close * 0.99, close=close)
    result = DataValidator(ValidatorConfig(quarantine_outliers=True)).validate(bars, STOCK)
    assert_partition(bars, result)
    assert result.quarantined["ts"].tolist() == [bars.loc[40, "ts"]]
    assert result.quarantined["check"].tolist() == ["return_outlier"]


def test_zero_volume_warns_only_where_volume_is_expected(make_bars) -> None:
    stock = make_bars("AAA", n=5).assign(volume=[0.0, 1, 2, 3, 4])
    fx = make_bars("EURUSD", n=5).assign(volume=0.0)
    result = DataValidator().validate(pd.concat([stock, fx]), {**STOCK, **FX})
    assert [(i.symbol, i.severity, i.count) for i in result.by_check("zero_volume")] == [
        ("AAA", "warning", 1)
    ]


def test_missing_volume_is_warning_for_stocks_and_crypto_info_for_forex(make_bars) -> None:
    frames = [make_bars(s, n=5, volume=None) for s in ("AAA", "BTCUSD", "EURUSD")]
    result = DataValidator().validate(pd.concat(frames), {**STOCK, **FX, **COIN})
    severities = {i.symbol: i.severity for i in result.by_check("missing_volume")}
    assert severities == {"AAA": "warning", "BTCUSD": "warning", "EURUSD": "info"}
    assert result.quarantined.empty


def test_gap_on_24_7_calendar(make_bars) -> None:
    bars = make_bars("BTCUSD", n=10).drop(index=[4, 5])
    (gap,) = DataValidator().validate(bars, COIN).by_check("gap")
    assert gap.count == 2
    assert gap.ts == pd.Timestamp("2020-01-10", tz="UTC")
    assert "2020-01-10 to 2020-01-11" in gap.message


def test_gap_on_24_5_calendar_ignores_weekends(make_bars) -> None:
    weekdays = make_bars("EURUSD", n=30, freq="B")  # 2020-01-06 is a Monday
    assert DataValidator().validate(weekdays, FX).by_check("gap") == []
    (gap,) = DataValidator().validate(weekdays.drop(index=[7, 8, 9]), FX).by_check("gap")
    assert gap.count == 3
    assert "2020-01-15 to 2020-01-17" in gap.message


def test_xnys_gap_threshold_skips_holidays(make_bars) -> None:
    days = make_bars("AAA", n=40, freq="B")
    short = days.drop(index=[10, 11, 12, 13])  # four missing business days: at the threshold, not reported
    assert DataValidator().validate(short, STOCK).by_check("gap") == []
    long = days.drop(index=[10, 11, 12, 13, 14])
    (gap,) = DataValidator().validate(long, STOCK).by_check("gap")
    assert gap.count == 5
    strict = DataValidator(ValidatorConfig(max_gap_business_days=0)).validate(short, STOCK)
    assert [i.count for i in strict.by_check("gap")] == [4]


def test_weekend_bar_on_exchange_calendar_warns(make_bars) -> None:
    bars = make_bars("AAA", n=7)  # daily from Monday 2020-01-06: includes Saturday and Sunday
    (issue,) = DataValidator().validate(bars, STOCK).by_check("off_calendar")
    assert (issue.severity, issue.count) == ("warning", 2)


def test_unknown_instruments_are_info_and_skip_calendar_checks(make_bars) -> None:
    bars = make_bars("ZZZ", n=10).drop(index=[3, 4, 5])
    result = DataValidator().validate(bars)
    (info,) = result.by_check("no_instrument")
    assert (info.severity, info.symbol) == ("info", "ZZZ")
    assert result.summary()["symbol"].notna().all()  # every issue names its symbol
    assert result.by_check("gap") == []


def test_unsorted_input_gives_sorted_clean_and_is_not_modified(make_bars) -> None:
    bars = pd.concat([make_bars("BBB", n=3), make_bars("AAA", n=3)]).iloc[::-1]
    before = bars.copy()
    result = DataValidator().validate(bars, None)
    pd.testing.assert_frame_equal(bars, before)
    assert result.clean["symbol"].tolist() == ["AAA"] * 3 + ["BBB"] * 3
    assert result.clean["ts"].is_monotonic_increasing is False  # restarts per symbol
    assert result.clean.groupby("symbol")["ts"].apply(lambda s: s.is_monotonic_increasing).all()


def test_strict_mode_raises_with_the_report(make_bars) -> None:
    bars = make_bars("AAA", n=3)
    bars.loc[0, "close"] = np.nan
    with pytest.raises(DataValidationError, match=r"1 row\(s\) quarantined[\s\S]*missing_price AAA"):
        DataValidator(ValidatorConfig(strict=True)).validate(bars, STOCK)


def test_structural_problems_are_format_errors(make_bars) -> None:
    bars = make_bars("AAA", n=3)
    with pytest.raises(DataFormatError, match=r"timezone-aware"):
        DataValidator().validate(bars.assign(ts=bars["ts"].dt.tz_localize(None)))
    with pytest.raises(DataFormatError, match=r"missing column\(s\) \['high'\]"):
        DataValidator().validate(bars.drop(columns="high"))


def test_empty_frame(make_bars) -> None:
    result = DataValidator().validate(make_bars(n=0))
    assert result.clean.empty
    assert result.quarantined.empty
    assert result.issues == ()


def test_config_rejects_unknown_and_invalid_keys() -> None:
    with pytest.raises(
        ConfigError, match=r"unknown key\(s\) 'outlier_z'.*Did you mean 'outlier_z_threshold'"
    ):
        ValidatorConfig.from_dict({"outlier_z": 5})
    with pytest.raises(ConfigError, match=r"outlier_z_threshold"):
        ValidatorConfig.from_dict({"outlier_z_threshold": 0})


def test_result_goes_straight_into_the_store(make_bars) -> None:
    bars = make_bars("AAA", n=5)
    bars.loc[2, "high"] = 1.0
    result = DataValidator().validate(bars, STOCK)
    with DuckDBBarStore(":memory:") as store:
        assert store.write_bars(result.clean).inserted == 4
        assert store.quarantine(result.quarantined) == 1
        assert store.quarantine(result.quarantined) == 0
        assert store.read_quarantine()["check"].tolist() == ["ohlc_inconsistent"]


# ---------------------------------------------------------------------- property: nothing is dropped

prices = st.one_of(
    st.floats(min_value=0.5, max_value=2.0),
    st.sampled_from([np.nan, 0.0, -1.0, np.inf]),
)


@settings(max_examples=40, deadline=None)
@given(
    data_frames(
        [
            column("symbol", elements=st.sampled_from(["AAA", "BBB", "EURUSD"])),
            column("day", elements=st.integers(0, 12)),
            column("open", elements=prices),
            column("high", elements=prices),
            column("low", elements=prices),
            column("close", elements=prices),
            column("volume", elements=st.one_of(st.floats(-1, 100), st.just(np.nan))),
        ],
        index=range_indexes(max_size=40),
    ),
    st.booleans(),
)
def test_clean_and_quarantined_partition_any_frame(raw: pd.DataFrame, quarantine_outliers: bool) -> None:
    bars = raw.assign(ts=pd.Timestamp("2020-01-01", tz="UTC") + pd.to_timedelta(raw["day"], unit="D"))
    bars = bars.drop(columns="day")
    validator = DataValidator(
        ValidatorConfig(quarantine_outliers=quarantine_outliers, min_returns_for_outliers=3)
    )
    result = validator.validate(bars, {**STOCK, **FX})
    assert_partition(bars, result)
    # Every input row is accounted for exactly once, values and all.
    combined = pd.concat([result.clean, result.quarantined[list(BAR_COLUMNS)]], ignore_index=True)
    key = ["symbol", "ts", "open", "high", "low", "close", "volume"]
    left = bars[key].astype({"symbol": "str"}).sort_values(key, na_position="first").reset_index(drop=True)
    right = combined[key].sort_values(key, na_position="first").reset_index(drop=True)
    left["ts"] = left["ts"].astype("datetime64[ns, UTC]")
    pd.testing.assert_frame_equal(left, right, check_dtype=False)


# ---------------------------------------------------------------------- stale and degenerate bars


def flat_run(bars: pd.DataFrame, rows: range, price: float, volume: float | None = 0.0) -> pd.DataFrame:
    out = bars.copy()
    out.loc[list(rows), ["open", "high", "low", "close"]] = price
    out.loc[list(rows), "volume"] = np.nan if volume is None else volume
    return out


def test_stale_price_is_a_run_of_repeats_without_volume(make_bars) -> None:
    bars = make_bars("AAA", n=30)
    bars = flat_run(bars, range(5, 13), bars.loc[4, "close"])  # 8 bars repeat bar 4's close
    bars.loc[4, ["open", "high", "low"]] = bars.loc[4, "close"]
    bars = flat_run(bars, range(20, 25), bars.loc[19, "close"])  # only 5 repeats: not more than N
    result = DataValidator().validate(bars, STOCK)
    (stale,) = result.by_check("stale_price")
    assert (stale.severity, stale.count, stale.ts) == ("warning", 8, bars.loc[5, "ts"])
    assert "longest 8" in stale.message
    assert result.quarantined.empty  # stale prices are reported, not refused
    strict = DataValidator(ValidatorConfig(stale_max_repeats=4)).validate(bars, STOCK)
    assert strict.by_check("stale_price")[0].count == 13


def test_repeats_with_volume_are_not_stale(make_bars) -> None:
    bars = make_bars("AAA", n=20)
    bars = flat_run(bars, range(5, 15), bars.loc[4, "close"], volume=100.0)  # traded, just at one price
    assert DataValidator().validate(bars, STOCK).by_check("stale_price") == []
    quote_only = flat_run(make_bars("EURUSD", n=20), range(5, 15), 1.0, volume=None)
    quote_only.loc[4, ["open", "high", "low", "close"]] = 1.0
    assert DataValidator().validate(quote_only, FX).by_check("stale_price")[0].count == 10


def test_degenerate_bars_are_flagged_when_nearly_all_are_one_price(make_bars) -> None:
    bars = make_bars("AAA", n=20)
    one_price = bars.assign(open=bars["close"], high=bars["close"], low=bars["close"])
    (issue,) = DataValidator().validate(one_price, STOCK).by_check("degenerate_bars")
    assert (issue.severity, issue.count) == ("warning", 20)
    assert "open = high = low = close" in issue.message
    half = pd.concat([one_price.iloc[:10], bars.iloc[10:]])
    assert DataValidator().validate(half, STOCK).by_check("degenerate_bars") == []


# ---------------------------------------------------------------------- quotes


def test_quote_bars_crossed_and_locked_on_the_closing_quote(make_bars) -> None:
    bars = make_bars("EURUSD", n=6).assign(bid_close=1.0, ask_close=1.1)
    bars.loc[[1, 2], "bid_close"] = 1.2  # crossed
    bars.loc[3, "bid_close"] = 1.1  # locked
    bars.loc[4, ["bid_close", "ask_close"]] = np.nan
    result = DataValidator().validate(bars, FX)
    assert_partition(bars, result)
    assert [(i.check, i.severity, i.count) for i in result.issues if "quote" in i.check] == [
        ("crossed_quote", "warning", 2),
        ("locked_quote", "warning", 1),
        ("missing_quote", "info", 1),
    ]
    assert result.quarantined.empty
    strict = DataValidator(ValidatorConfig(quarantine_crossed=True)).validate(bars, FX)
    assert strict.quarantined["check"].tolist() == ["crossed_quote", "crossed_quote", "locked_quote"]
    assert "bid=1.2 ask=1.1" in strict.quarantined["reason"].iloc[0]


def quotes_frame(rows: list[tuple[float, float]], **extra: list) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "symbol": "IBM",
            "ts": pd.date_range("2013-10-07 14:00", periods=len(rows), freq="s", tz="UTC"),
            "bid": [r[0] for r in rows],
            "ask": [r[1] for r in rows],
            **extra,
        }
    )


def test_validate_quotes() -> None:
    rows = [(10.0, 10.1), (0.0, 10.1), (10.0, 0.0), (0.0, 0.0), (-1.0, 10.1), (np.nan, 10.1), (10.2, 10.1),
            (10.1, 10.1)]  # fmt: skip
    quotes = quotes_frame(rows, bid_size=[1, 1, 1, 1, 1, 1, 1, -5], suspicious=[0, 0, 0, 0, 0, 0, 1, 0])
    quotes.loc[7, "ts"] = quotes.loc[0, "ts"]  # arrives out of order
    result = DataValidator().validate_quotes(quotes)
    assert len(result.clean) + len(result.quarantined) == len(quotes)
    assert dict(zip(result.quarantined["bid"].fillna(-99), result.quarantined["check"], strict=True)) == {
        0.0: "non_positive_price",
        -1.0: "non_positive_price",
        -99: "missing_price",
        10.1: "non_positive_size",
    }
    found = {i.check: (i.severity, i.count) for i in result.issues}
    assert found["one_sided_quote"] == ("info", 2)  # one side 0: an update of the other side only
    assert found["crossed_quote"] == ("warning", 1)
    assert found["suspicious_flag"] == ("warning", 1)
    assert found["out_of_order"] == ("warning", 1)
    assert "locked_quote" not in found  # the locked row failed on its size first
    assert list(result.clean.columns) == ["symbol", "ts", "bid", "ask", "bid_size", "suspicious"]
    assert result.clean["ts"].is_monotonic_increasing


def test_validate_trades() -> None:
    trades = pd.DataFrame(
        {
            "symbol": "BTCUSDT",
            "ts": pd.date_range("2024-08-08 23:54", periods=5, freq="ms", tz="UTC"),
            "price": [1.0, 1.0, np.nan, 1.0, -2.0],
            "size": [1.0, 0.0, 1.0, 1.0, 1.0],
            "trade_id": [1, 2, 3, 1, 5],
        }
    )
    result = DataValidator().validate_trades(trades)
    assert result.quarantined["check"].tolist() == [
        "non_positive_size",
        "missing_price",
        "duplicate_trade_id",
        "non_positive_price",
    ]
    assert "trade_id 1 repeats" in result.quarantined["reason"].iloc[2]
    assert len(result.clean) == 1
    with pytest.raises(DataFormatError, match="timezone-aware"):
        DataValidator().validate_trades(trades.assign(ts=trades["ts"].dt.tz_localize(None)))


# ---------------------------------------------------------------------- the stream validator

T0 = pd.Timestamp("2024-01-01", tz="UTC").to_pydatetime()


def sbar(k: int, close: float, *, volume: float | None = 1.0, symbol: str = "BTCUSD", **prices: float) -> Bar:
    values = {"open": close, "high": close, "low": close, "close": close, **prices}
    return Bar(symbol=symbol, ts=T0 + timedelta(days=k), volume=volume, timeframe="1d", **values)


def test_stream_validator_checks_time_and_band() -> None:
    v = StreamValidator()
    assert v.check(sbar(0, 100.0)).ok
    assert v.check(sbar(1, 120.0)).ok
    assert v.check(sbar(1, 121.0)).check == "duplicate"
    assert v.check(sbar(0, 119.0)).check == "out_of_order"
    verdict = v.check(sbar(2, 500.0))
    assert (verdict.ok, verdict.check) == (False, "price_band")
    assert "outside the band 0.5 around the last good price 120" in verdict.reason
    assert v.check(sbar(3, 121.0)).ok  # the reference stayed at the last good price
    assert v.check(sbar(4, 100.0, symbol="ETHUSD")).ok  # states are per symbol
    assert v.last_good("BTCUSD") == (T0 + timedelta(days=3), 121.0)
    rows = v.take_quarantine()
    assert rows["check"].tolist() == ["duplicate", "out_of_order", "price_band"]
    assert v.take_quarantine().empty
    with DuckDBBarStore(":memory:") as store:
        assert store.quarantine(rows) == 3  # straight into the store's quarantine


def test_stream_validator_reanchors_after_a_real_level_change() -> None:
    v = StreamValidator(ValidatorConfig(price_band_reanchor=2))
    v.check(sbar(0, 100.0))
    verdicts = [v.check(sbar(k, 300.0 + k)) for k in range(1, 5)]
    assert [x.ok for x in verdicts] == [False, False, True, True]  # the third agreeing jump is accepted
    kinds = {(i.check, i.severity): i.count for i in v.issues()}
    assert kinds == {("price_band", "error"): 2, ("price_band", "warning"): 1}


def test_stream_validator_refuses_broken_bars_built_without_validation() -> None:
    v = StreamValidator()
    broken = Bar.model_construct(symbol="X", ts=T0, open=10.0, high=9.0, low=8.0, close=8.5, timeframe="1d")
    assert v.check(broken).check == "ohlc_inconsistent"
    nan = Bar.model_construct(symbol="X", ts=T0, open=math.nan, high=9.0, low=8.0, close=8.5, timeframe="1d")
    assert v.check(nan).check == "missing_price"
    with pytest.raises(DataFormatError, match="checks Bar, Quote or Trade"):
        v.check({"symbol": "X"})  # type: ignore[arg-type]


def test_stream_validator_stale_repeats_and_feed_timeout() -> None:
    clock = SimulatedClock(T0)
    v = StreamValidator(ValidatorConfig(stale_max_repeats=3, stale_timeout_s=60), clock=clock)
    for k in range(6):
        assert v.check(sbar(k, 100.0, volume=0.0)).ok  # repeats are kept, but counted
    (stale,) = [i for i in v.issues() if i.check == "stale_price"]
    assert stale.count == 2  # repeats 4 and 5 exceed 3
    assert v.stale_feeds() == []
    clock.advance_to(T0 + timedelta(seconds=61))
    (feed,) = v.stale_feeds()
    assert (feed.check, feed.symbol) == ("stale_feed", "BTCUSD")
    assert "no bar for 61.0 s" in feed.message
    with pytest.raises(ConfigError, match="stale_timeout_s"):
        StreamValidator().stale_feeds()


def test_stream_validator_quotes_and_trades() -> None:
    v = StreamValidator()
    q = lambda ms, bid, ask: Quote(symbol="EURUSD", ts=T0 + timedelta(milliseconds=ms), bid=bid, ask=ask)  # noqa: E731
    assert v.check(q(0, 1.1000, 1.1002)).ok
    assert v.check(q(1, 1.1003, 1.1002)).ok  # crossed: warned, passed on
    assert v.check(q(1, 1.1002, 1.1002)).ok  # locked; equal times are fine for ticks
    assert v.check(q(0, 1.1, 1.1001)).check == "out_of_order"
    assert {(i.check, i.count) for i in v.issues() if i.severity == "warning"} == {
        ("crossed_quote", 1),
        ("locked_quote", 1),
    }
    strict = StreamValidator(ValidatorConfig(quarantine_crossed=True))
    assert strict.check(q(0, 1.2, 1.1)).check == "crossed_quote"
    assert "bid=1.2 ask=1.1" in strict.take_quarantine()["reason"].iloc[0]
    t = lambda ms, price: Trade(symbol="BTCUSDT", ts=T0 + timedelta(milliseconds=ms), price=price, size=0.1)  # noqa: E731
    assert v.check(t(0, 61_000.0)).ok
    assert v.check(t(0, 61_001.0)).ok
    assert v.check(t(5, 610_000.0)).check == "price_band"
    row = v.take_quarantine().iloc[-1]
    assert (row["timeframe"], row["close"], row["volume"]) == (TRADE_TIMEFRAME, 610_000.0, 0.1)


def test_stream_validator_seed_and_speed() -> None:
    v = StreamValidator()
    v.seed("BTCUSD", T0 + timedelta(days=10), 100.0)
    assert v.check(sbar(10, 100.0)).check == "duplicate"
    assert v.check(sbar(11, 1000.0)).check == "price_band"
    bars = [sbar(k, 100.0 + (k % 7), volume=5.0, high=110.0, low=90.0) for k in range(20, 20_020)]
    started = time.perf_counter()
    for bar in bars:
        v.check(bar)
    per_event_us = (time.perf_counter() - started) / len(bars) * 1e6
    assert per_event_us < 10, f"{per_event_us:.1f} us per bar"  # about 1 us on one core
    assert v.n_checked == 20_002
