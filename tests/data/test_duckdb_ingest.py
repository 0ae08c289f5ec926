"""DuckDB bulk ingest: fresh rows are appended without a merge, yet keys stay unique and counts exact."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from alphaloom.core.exceptions import DataFormatError, StorageError
from alphaloom.data import DuckDBBarStore, WriteResult


def _bars(symbols: list[str], start: str, periods: int, price: float = 100.0) -> pd.DataFrame:
    ts = pd.date_range(start, periods=periods, freq="min", tz="UTC").astype("datetime64[ns, UTC]")
    return pd.DataFrame(
        {
            "symbol": np.repeat(symbols, periods),
            "ts": np.tile(ts, len(symbols)),
            "open": price,
            "high": price + 1,
            "low": price - 1,
            "close": price,
            "volume": 5.0,
        }
    )


def test_large_fresh_write_then_overlapping_write_counts_exactly(tmp_path: Path) -> None:
    symbols = ["AAA", "BBB", "CCC", "DDD"]
    first = _bars(symbols, "2020-01-01", 50_000)
    with DuckDBBarStore(tmp_path / "s.duckdb") as store:
        assert store.write_bars(first, timeframe="1m") == WriteResult(200_000, 0, 0)
        # Per symbol: 1,000 rows before the stored range, the last 2,000 stored rows (half of them
        # changed) and 3,000 rows after it; plus a symbol the store does not hold yet.
        before = _bars(symbols, "2019-12-31 07:20", 1_000)
        overlap = _bars(symbols, "2020-02-03 08:00", 2_000)
        overlap.loc[overlap.groupby("symbol").cumcount() % 2 == 0, "close"] = 100.5
        after = _bars(symbols, "2020-02-04 17:20", 3_000)
        newcomer = _bars(["EEE"], "2020-01-15", 500)
        second = pd.concat([after, overlap, newcomer, before], ignore_index=True)
        assert first["ts"].max() == pd.Timestamp("2020-02-04 17:19", tz="UTC")
        result = store.write_bars(second, timeframe="1m")
        assert result == WriteResult(4 * (1_000 + 3_000) + 500, 4 * 1_000, 4 * 1_000)
        back = store.read_bars(timeframe="1m")
        assert len(back) == 200_000 + 4 * 4_000 + 500
        assert not back.duplicated(["symbol", "ts"]).any()
        changed = back.set_index(["symbol", "ts"]).loc[
            pd.MultiIndex.from_frame(overlap[["symbol", "ts"]]), "close"
        ]
        np.testing.assert_array_equal(changed.to_numpy(), overlap["close"].to_numpy())
        # Idempotent: the same frame again changes nothing.
        assert store.write_bars(second, timeframe="1m") == WriteResult(0, 0, len(second))
        assert len(store.read_bars(timeframe="1m")) == len(back)


def test_rows_inside_a_gap_of_the_stored_range_are_merged(tmp_path: Path) -> None:
    full = _bars(["AAA"], "2021-01-01", 100)
    with DuckDBBarStore(tmp_path / "s.duckdb") as store:
        store.write_bars(full.iloc[::2], timeframe="1m")
        # Odd minutes lie inside [first, last] but are not stored: merged, then inserted once.
        assert store.write_bars(full, timeframe="1m") == WriteResult(50, 0, 50)
        assert len(store.read_bars(timeframe="1m")) == 100


def test_times_within_one_microsecond_are_refused(tmp_path: Path) -> None:
    bars = _bars(["AAA"], "2021-01-01", 3)
    bars.loc[1, "ts"] = bars.loc[0, "ts"] + pd.Timedelta(nanoseconds=400)
    with DuckDBBarStore(tmp_path / "s.duckdb") as store:
        with pytest.raises(DataFormatError, match="same microsecond"):
            store.write_bars(bars, timeframe="1m")
        assert store.symbols() == []


def test_sub_microsecond_time_matches_the_stored_key(tmp_path: Path) -> None:
    bars = _bars(["AAA"], "1969-12-31 23:59", 2)
    with DuckDBBarStore(tmp_path / "s.duckdb") as store:
        store.write_bars(bars, timeframe="1m")
        # Times are floored to the microsecond, also before 1970.
        nudged = bars.assign(ts=bars["ts"] + pd.to_timedelta([600, 999], unit="ns"))
        assert store.write_bars(nudged, timeframe="1m") == WriteResult(0, 0, 2)
        assert len(store.read_bars(timeframe="1m")) == 2


def test_overlapping_writers_conflict_instead_of_duplicating(tmp_path: Path) -> None:
    path = tmp_path / "s.duckdb"
    with DuckDBBarStore(path) as store:
        store.write_bars(_bars(["AAA"], "2021-01-01", 10), timeframe="1m")
        other = store._con.cursor()  # a second connection to the same database
        other.execute("BEGIN TRANSACTION")
        other.execute("UPDATE al_meta SET value = value WHERE key = 'bars_write_seq'")
        with pytest.raises(StorageError, match=r"(?i)conflict"):
            store.write_bars(_bars(["AAA"], "2022-01-01", 10), timeframe="1m")
        other.execute("ROLLBACK")
        assert store.write_bars(_bars(["AAA"], "2022-01-01", 10), timeframe="1m").inserted == 10


def test_file_with_the_earlier_keyed_layout_still_upserts(tmp_path: Path) -> None:
    import duckdb

    path = tmp_path / "old.duckdb"
    con = duckdb.connect(str(path))
    con.execute(
        "CREATE TABLE al_meta (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL);"
        "INSERT INTO al_meta VALUES ('schema_version', '1');"
        "CREATE TABLE bars (symbol VARCHAR NOT NULL, timeframe VARCHAR NOT NULL, ts TIMESTAMPTZ NOT NULL, "
        "open DOUBLE NOT NULL, high DOUBLE NOT NULL, low DOUBLE NOT NULL, close DOUBLE NOT NULL, "
        "volume DOUBLE, source VARCHAR NOT NULL DEFAULT '', written_at TIMESTAMPTZ NOT NULL, "
        "PRIMARY KEY (symbol, timeframe, ts))"
    )
    con.close()
    bars = _bars(["AAA", "BBB"], "2021-01-01", 100)
    with DuckDBBarStore(path) as store:
        assert store.write_bars(bars.iloc[:150], timeframe="1m") == WriteResult(150, 0, 0)
        assert store.write_bars(bars, timeframe="1m") == WriteResult(50, 0, 150)
        assert len(store.read_bars(timeframe="1m")) == 200
