"""DataValidator on the real shipped samples (documented quirks found) and on hand-made bad frames."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.pandas import column, data_frames, range_indexes

from alphaloom.core.exceptions import ConfigError, DataFormatError, DataValidationError
from alphaloom.core.types import BAR_COLUMNS
from alphaloom.data import (
    CHECKS,
    SAMPLE_INSTRUMENTS,
    DataValidator,
    DuckDBBarStore,
    Instrument,
    ValidationResult,
    ValidatorConfig,
)

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
