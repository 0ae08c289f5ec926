"""The shipped sample data: shape, UTC, adjustment across splits, and that the build script reproduces it."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from alphaloom.core.exceptions import ConfigError
from alphaloom.core.types import BAR_COLUMNS
from alphaloom.data import SAMPLE_INSTRUMENTS, SAMPLE_SETS, load_sample, sample_path

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared" / "data"

# Pinned row counts and symbols of the shipped files (change only together with DATA.md).
EXPECTED = {
    "us_equities_daily": (63_174, 14, "1998-01-02", "2021-03-31"),
    "fx_daily": (13_739, 4, "2007-03-30", "2018-07-17"),
    "crypto_daily": (3_578, 3, "2014-11-28", "2020-01-17"),
}


@pytest.mark.parametrize("name", SAMPLE_SETS)
def test_each_set_has_pinned_rows_symbols_and_range(name: str) -> None:
    frame = load_sample(name)
    rows, n_symbols, first, last = EXPECTED[name]
    assert list(frame.columns) == list(BAR_COLUMNS)
    assert len(frame) == rows
    assert frame["symbol"].nunique() == n_symbols
    assert frame["ts"].min() == pd.Timestamp(first, tz="UTC")
    assert frame["ts"].max() == pd.Timestamp(last, tz="UTC")


def test_all_sets_together_are_utc_sorted_unique_daily(sample_bars: pd.DataFrame) -> None:
    assert len(sample_bars) == sum(v[0] for v in EXPECTED.values())
    assert str(sample_bars["ts"].dtype) == "datetime64[ns, UTC]"
    assert (sample_bars["ts"] == sample_bars["ts"].dt.normalize()).all()  # session date at 00:00 UTC
    assert not sample_bars.duplicated(["symbol", "ts"]).any()
    assert sample_bars.equals(sample_bars.sort_values(["symbol", "ts"]).reset_index(drop=True))
    assert set(sample_bars["symbol"]) == set(SAMPLE_INSTRUMENTS)
    prices = sample_bars[["open", "high", "low", "close"]].to_numpy()
    assert np.isfinite(prices).all()
    assert (prices > 0).all()


def test_only_fx_lacks_volume(sample_bars: pd.DataFrame) -> None:
    no_volume = sample_bars.groupby("symbol")["volume"].apply(lambda v: v.isna().all())
    assert sorted(no_volume[no_volume].index) == ["EURGBP", "EURUSD", "GBPUSD", "NZDUSD"]
    assert sample_bars.loc[~sample_bars["symbol"].isin(no_volume[no_volume].index), "volume"].notna().all()


@pytest.mark.parametrize("split_day", ["2014-06-09", "2020-08-31"], ids=["7-for-1", "4-for-1"])
def test_aapl_is_continuous_across_splits(split_day: str) -> None:
    aapl = load_sample("us_equities_daily").query("symbol == 'AAPL'").set_index("ts")
    day = pd.Timestamp(split_day, tz="UTC")
    before = aapl.loc[aapl.index < day].iloc[-1]
    after = aapl.loc[day]
    # Raw prices fall by the split ratio; adjusted ones move like any other day (tolerance: 20%).
    assert abs(after["close"] / before["close"] - 1) < 0.20
    # Volume is adjusted in the opposite direction, so it is also of the same order across the split.
    assert 0.2 < after["volume"] / before["volume"] < 5


def test_aapl_adjusted_level_pins_the_factors() -> None:
    aapl = load_sample("us_equities_daily").query("symbol == 'AAPL'").set_index("ts")
    # Raw close 2014-06-06 was 645.57; x price_factor 0.901182 x split_factor 0.035714 (1/28 as Lean
    # stores it) = 20.7777 to 6 significant digits.
    assert aapl.loc[pd.Timestamp("2014-06-06", tz="UTC"), "close"] == pytest.approx(20.7777, abs=1e-9)
    # After the last split and dividend adjustments end, prices are raw: 2021-03-31 close 122.15.
    assert aapl.loc[pd.Timestamp("2021-03-31", tz="UTC"), "close"] == pytest.approx(122.15, abs=1e-6)


def test_documented_quirks_are_in_the_data(sample_bars: pd.DataFrame) -> None:
    qqq = sample_bars.query("symbol == 'QQQ'")["ts"]
    in_gap = (qqq >= pd.Timestamp("2004-12-01", tz="UTC")) & (qqq <= pd.Timestamp("2011-03-22", tz="UTC"))
    assert not in_gap.any()
    assert (sample_bars.query("symbol == 'BNO'")["volume"] == 0).sum() == 26
    fx = sample_bars[sample_bars["symbol"].isin(["EURUSD", "GBPUSD", "NZDUSD", "EURGBP"])]
    assert (fx["ts"].dt.day_of_week == 6).sum() > 2000  # Sunday boundary bars
    crypto = sample_bars[sample_bars["symbol"].isin(["BTCUSD", "ETHUSD", "LTCUSD"])]
    assert (crypto["volume"] == 0).sum() == 11


def test_unknown_set_name_suggests_closest() -> None:
    with pytest.raises(ConfigError, match=r"unknown sample set 'fx_dialy'.*Did you mean 'fx_daily'"):
        sample_path("fx_dialy")
    with pytest.raises(ConfigError, match=r"got no set names"):
        load_sample([])


def test_sample_path_points_at_packaged_file() -> None:
    path = sample_path("crypto_daily")
    assert path.name == "crypto_daily.csv.gz"
    assert path.is_file()
    assert path.stat().st_size < 2_000_000


def _load_build_script():
    spec = importlib.util.spec_from_file_location(
        "build_sample_data", REPO / "scripts" / "build_sample_data.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(not SHARED.is_dir(), reason="the shared raw data is not available here")
def test_build_script_reproduces_shipped_files(capsys: pytest.CaptureFixture[str]) -> None:
    script = _load_build_script()
    out_dir = REPO / "src" / "alphaloom" / "data" / "sample"
    assert script.main(["--shared", str(SHARED), "--out", str(out_dir), "--check"]) == 0, (
        capsys.readouterr().err
    )


def test_round_significant_keeps_ohlc_order() -> None:
    script = _load_build_script()
    values = pd.Series([0.104825123, 20.77744, 123456.789, 0.00012345678])
    rounded = script.round_significant(values, 6)
    assert rounded.tolist() == [0.104825, 20.7774, 123457.0, 0.000123457]
