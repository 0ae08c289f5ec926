"""read_bars_file on good files and on every kind of bad one: each failure is one clear alphaloom error."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from alphaloom.core.exceptions import (
    ConfigError,
    DataFormatError,
    DataNotFoundError,
    EmptyRangeError,
    UnknownSymbolError,
)
from alphaloom.core.types import BAR_COLUMNS
from alphaloom.data import read_bars_file

HEADER = "timestamp,open,high,low,close,volume,symbol\n"
ROWS = "2020-01-02,10,11,9,10.5,100,AAA\n2020-01-03,10.5,12,10,11,200,AAA\n2020-01-02,5,6,4,5.5,,BBB\n"


def write(path: Path, text: str) -> Path:
    if path.name.endswith(".gz"):
        with gzip.open(path, "wt", encoding="utf-8") as fh:
            fh.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("name", ["bars.csv", "bars.csv.gz"])
def test_reads_csv_and_gzip_into_canonical_frame(tmp_path: Path, name: str) -> None:
    frame = read_bars_file(write(tmp_path / name, HEADER + ROWS))
    assert list(frame.columns) == list(BAR_COLUMNS)
    assert str(frame["ts"].dtype) == "datetime64[ns, UTC]"
    assert frame["symbol"].tolist() == ["AAA", "AAA", "BBB"]  # sorted by (symbol, ts)
    assert frame["ts"].iloc[0] == pd.Timestamp("2020-01-02", tz="UTC")
    assert frame["close"].tolist() == [10.5, 11.0, 5.5]
    assert np.isnan(frame["volume"].iloc[2])  # an empty volume cell means "no volume", not zero


def test_reads_parquet_with_ts_column_and_symbol_argument(tmp_path: Path) -> None:
    src = pd.DataFrame(
        {
            "ts": pd.date_range("2021-03-01 14:30", periods=3, freq="h", tz="America/New_York"),
            "Open": [1.0, 2.0, 3.0],
            "High": [1.5, 2.5, 3.5],
            "Low": [0.5, 1.5, 2.5],
            "Close": [1.2, 2.2, 3.2],
        }
    )
    path = tmp_path / "x.parquet"
    src.to_parquet(path)
    frame = read_bars_file(path, symbol="SPY")
    assert frame["symbol"].unique().tolist() == ["SPY"]
    assert frame["ts"].iloc[0] == pd.Timestamp("2021-03-01 19:30", tz="UTC")
    assert frame["volume"].isna().all()  # no volume column: all NaN


def test_date_alias_and_assume_tz(tmp_path: Path) -> None:
    path = write(tmp_path / "ny.csv", "Date,open,high,low,close\n2020-07-01 09:30:00,1,2,0.5,1.5\n")
    frame = read_bars_file(path, symbol="X", assume_tz="America/New_York")
    assert frame["ts"].iloc[0] == pd.Timestamp("2020-07-01 13:30", tz="UTC")  # EDT is UTC-4


def test_offsets_in_the_file_win_over_assume_tz(tmp_path: Path) -> None:
    text = "ts,open,high,low,close\n2020-01-02T09:30:00-05:00,1,2,0.5,1.5\n2020-01-02 15:00:00,1,2,0.5,1.5\n"
    frame = read_bars_file(write(tmp_path / "mixed.csv", text), symbol="X", assume_tz="UTC")
    assert frame["ts"].tolist() == [
        pd.Timestamp("2020-01-02 14:30", tz="UTC"),
        pd.Timestamp("2020-01-02 15:00", tz="UTC"),
    ]


def test_symbol_argument_filters_multi_symbol_file(tmp_path: Path) -> None:
    frame = read_bars_file(write(tmp_path / "b.csv", HEADER + ROWS), symbol="BBB")
    assert frame["symbol"].tolist() == ["BBB"]


def test_symbols_stay_text(tmp_path: Path) -> None:
    frame = read_bars_file(write(tmp_path / "hk.csv", HEADER + "2020-01-02,1,2,0.5,1.5,10,0700\n"))
    assert frame["symbol"].tolist() == ["0700"]


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError, match=r"does not exist; check the path"):
        read_bars_file(tmp_path / "nope.csv")


def test_unsupported_suffix(tmp_path: Path) -> None:
    with pytest.raises(DataFormatError, match=r"unsupported type.*\.csv, \.csv\.gz, \.parquet"):
        read_bars_file(write(tmp_path / "bars.txt", HEADER + ROWS))


def test_missing_columns_are_named_with_the_found_ones(tmp_path: Path) -> None:
    path = write(tmp_path / "b.csv", "timestamp,open,close,symbol\n2020-01-02,1,1,A\n")
    with pytest.raises(DataFormatError) as info:
        read_bars_file(path)
    message = str(info.value)
    assert "missing column(s) high, low" in message
    assert "found ['timestamp', 'open', 'close', 'symbol']" in message


def test_missing_timestamp_column(tmp_path: Path) -> None:
    path = write(tmp_path / "b.csv", "when,open,high,low,close,symbol\n2020-01-02,1,2,0.5,1,A\n")
    with pytest.raises(DataFormatError, match=r"missing column\(s\) timestamp \(or ts/date/datetime\)"):
        read_bars_file(path)


def test_missing_symbol_column_asks_for_symbol(tmp_path: Path) -> None:
    path = write(tmp_path / "b.csv", "timestamp,open,high,low,close\n2020-01-02,1,2,0.5,1\n")
    with pytest.raises(DataFormatError, match=r"no 'symbol' column; pass symbol="):
        read_bars_file(path)


def test_bad_number_names_column_line_and_value(tmp_path: Path) -> None:
    text = HEADER + "2020-01-02,1,2,0.5,1,10,A\n2020-01-03,1,2,0.5,oops,10,A\n"
    with pytest.raises(DataFormatError) as info:
        read_bars_file(write(tmp_path / "b.csv.gz", text))
    message = str(info.value)
    assert "column 'close'" in message
    assert "line 3" in message  # header is line 1
    assert "'oops'" in message
    assert "\n" not in message  # one line, no traceback text


def test_bad_timestamp_names_column_line_and_value(tmp_path: Path) -> None:
    text = HEADER + "2020-01-02,1,2,0.5,1,10,A\n2020-01-03,1,2,0.5,1,10,A\n31/01/2020,1,2,0.5,1,10,A\n"
    with pytest.raises(DataFormatError, match=r"column 'timestamp'.*line 4: '31/01/2020'"):
        read_bars_file(write(tmp_path / "b.csv", text))


def test_empty_timestamp_cell(tmp_path: Path) -> None:
    with pytest.raises(DataFormatError, match=r"column 'timestamp' is empty at line 2"):
        read_bars_file(write(tmp_path / "b.csv", HEADER + ",1,2,0.5,1,10,A\n"))


def test_naive_timestamps_refused_when_no_zone_given(tmp_path: Path) -> None:
    with pytest.raises(DataFormatError, match=r"without a UTC offset.*assume_tz=None"):
        read_bars_file(write(tmp_path / "b.csv", HEADER + ROWS), assume_tz=None)


def test_nonexistent_local_time(tmp_path: Path) -> None:
    path = write(tmp_path / "dst.csv", "ts,open,high,low,close\n2020-03-08 02:30:00,1,2,0.5,1\n")
    with pytest.raises(DataFormatError, match=r"does not exist or is ambiguous in America/New_York"):
        read_bars_file(path, symbol="X", assume_tz="America/New_York")


def test_unknown_zone(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"'Mars/Olympus' is not a time zone"):
        read_bars_file(write(tmp_path / "b.csv", HEADER + ROWS), assume_tz="Mars/Olympus")


def test_empty_file(tmp_path: Path) -> None:
    with pytest.raises(DataFormatError, match=r"is empty"):
        read_bars_file(write(tmp_path / "b.csv", ""))


def test_header_only_file(tmp_path: Path) -> None:
    with pytest.raises(EmptyRangeError, match=r"has a header but no rows"):
        read_bars_file(write(tmp_path / "b.csv", HEADER))


def test_unknown_symbol_suggests_closest(tmp_path: Path) -> None:
    with pytest.raises(UnknownSymbolError, match=r"no rows for symbol 'AAB'.*Did you mean 'AAA'"):
        read_bars_file(write(tmp_path / "b.csv", HEADER + ROWS), symbol="AAB")


def test_corrupt_gzip(tmp_path: Path) -> None:
    path = tmp_path / "b.csv.gz"
    path.write_bytes(b"\x1f\x8b\x08\x00garbage-not-deflate")
    with pytest.raises(DataFormatError, match=r"could not be read|not a well-formed"):
        read_bars_file(path)


def test_corrupt_parquet(tmp_path: Path) -> None:
    path = tmp_path / "b.parquet"
    path.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(DataFormatError, match=r"not a readable Parquet file"):
        read_bars_file(path)


def test_duplicate_columns_ignoring_case(tmp_path: Path) -> None:
    path = write(tmp_path / "b.csv", "timestamp,open,high,low,close,Close,symbol\n2020-01-02,1,2,0.5,1,1,A\n")
    with pytest.raises(DataFormatError, match=r"column 'close' twice"):
        read_bars_file(path)


def test_bad_values_pass_through_for_the_validator(tmp_path: Path) -> None:
    text = HEADER + "2020-01-02,-1,2,0.5,,10,A\n2020-01-02,1,2,0.5,1,-5,A\n"
    frame = read_bars_file(write(tmp_path / "b.csv", text))
    assert len(frame) == 2  # duplicates, negatives and NaN are judged by DataValidator, not dropped here
    assert frame["close"].isna().sum() == 1
