"""Every BarStore backend: idempotent upserts, range reads, UTC round trips, quarantine, frames, errors.

The ``store`` fixture is parametrised over the backends (``duckdb``, ``postgres``), so each behavioural test
runs against both. PostgreSQL stores live in a schema of their own per test (``al_test_<session>_<n>``),
dropped after the test, so parallel runs never collide. Tests only DuckDB can have (files, locks, read-only
mode) say so in their name; PostgreSQL-only tests are in ``test_postgres_store.py``.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alphaloom.core.exceptions import (
    ConfigError,
    DataFormatError,
    DataNotFoundError,
    EmptyRangeError,
    StorageError,
    UnknownSymbolError,
)
from alphaloom.core.types import BAR_COLUMNS
from alphaloom.data import SAMPLE_INSTRUMENTS, DuckDBBarStore, Instrument, WriteResult
from alphaloom.data.storage import QUARANTINE_COLUMNS, SUMMARY_COLUMNS, BarStore, PostgresBarStore

PG_DSN = "postgresql://postgres@127.0.0.1:5432/test"
BACKENDS = ("duckdb", "postgres")
_SESSION = f"al_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
_schema_numbers = itertools.count()

OpenStore = Callable[[], BarStore]


def D(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.fixture(scope="module")
def pg_admin() -> Iterator[psycopg.Connection]:
    """A connection for creating and dropping test schemas; drops any this session left behind."""
    with psycopg.connect(PG_DSN, autocommit=True, connect_timeout=10) as con:
        yield con
        leftover = con.execute(
            "SELECT nspname FROM pg_namespace WHERE left(nspname, %s) = %s", [len(_SESSION), _SESSION]
        ).fetchall()
        for (name,) in leftover:
            con.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


@pytest.fixture
def new_store(tmp_path: Path, pg_admin: psycopg.Connection) -> Iterator[Callable[[str], OpenStore]]:
    """``new_store(backend)`` gives an opener of one fresh, empty store; each call opens a new handle."""
    schemas: list[str] = []

    def make(backend: str) -> OpenStore:
        if backend == "duckdb":
            path = tmp_path / "db" / f"store{next(_schema_numbers)}.duckdb"
            return lambda: DuckDBBarStore(path)
        schema = f"{_SESSION}_{next(_schema_numbers)}"
        schemas.append(schema)
        return lambda: PostgresBarStore(PG_DSN, schema=schema)

    yield make
    for schema in schemas:
        pg_admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture(params=BACKENDS)
def open_store(request: pytest.FixtureRequest, new_store: Callable[[str], OpenStore]) -> OpenStore:
    """Opens (another handle on) this test's fresh store of the parametrised backend."""
    return new_store(request.param)


@pytest.fixture
def store(open_store: OpenStore) -> Iterator[BarStore]:
    """A fresh store of each backend, closed after the test."""
    with open_store() as s:
        yield s


# ---------------------------------------------------------------------- bars: idempotent upsert


def test_write_twice_is_unchanged_and_adds_no_rows(store: BarStore, make_bars) -> None:
    bars = pd.concat([make_bars("AAA", n=10), make_bars("BBB", n=7)], ignore_index=True)
    assert store.write_bars(bars) == WriteResult(inserted=17, updated=0, unchanged=0)
    assert store.write_bars(bars) == WriteResult(inserted=0, updated=0, unchanged=17)
    assert len(store.read_bars()) == 17


def test_changed_rows_are_updated_and_counted(store: BarStore, make_bars) -> None:
    bars = make_bars("AAA", n=10)
    store.write_bars(bars, source="first")
    changed = bars.copy()
    changed.loc[[2, 5], "close"] = changed.loc[[2, 5], "high"]  # still a valid bar
    changed.loc[7, "volume"] = np.nan  # NaN vs a number is a change too
    extra = make_bars("AAA", n=12).iloc[10:]
    result = store.write_bars(pd.concat([changed, extra], ignore_index=True), source="second")
    assert result == WriteResult(inserted=2, updated=3, unchanged=7)
    assert result.total == 12
    back = store.read_bars("AAA")
    pd.testing.assert_frame_equal(back, pd.concat([changed, extra], ignore_index=True))


def test_nan_volume_round_trips_and_stays_unchanged(store: BarStore, make_bars) -> None:
    bars = make_bars("EURUSD", n=4, volume=None)
    store.write_bars(bars)
    assert store.write_bars(bars).unchanged == 4
    assert store.read_bars("EURUSD")["volume"].isna().all()


def test_mixed_missing_volume_round_trips(store: BarStore, make_bars) -> None:
    bars = pd.concat([make_bars("AAA", n=6), make_bars("BBB", n=6)], ignore_index=True)
    bars["volume"] = np.where(np.arange(len(bars)) % 3 == 0, np.nan, bars["volume"])
    assert store.write_bars(bars).inserted == 12
    pd.testing.assert_frame_equal(store.read_bars(), bars)
    assert store.write_bars(bars.assign(volume=bars["volume"].fillna(5.0))).updated == 4


def test_timeframes_are_separate_keys(store: BarStore, make_bars) -> None:
    daily = make_bars("AAA", n=3)
    hourly = make_bars("AAA", n=5, freq="h")
    store.write_bars(daily, timeframe="1d")
    assert store.write_bars(hourly, timeframe="1h").inserted == 5
    assert len(store.read_bars("AAA", timeframe="1d")) == 3
    assert len(store.read_bars("AAA", timeframe="1h")) == 5
    assert store.symbols("1h") == ["AAA"]


@pytest.mark.parametrize(
    ("mutate", "fragment"),
    [
        (lambda f: f.drop(columns="close"), r"missing column\(s\) \['close'\]"),
        (lambda f: f.assign(ts=f["ts"].dt.tz_localize(None)), r"timezone-aware.*tz_localize"),
        (lambda f: f.assign(ts=f["ts"].astype(str)), r"timezone-aware.*pd.to_datetime"),
        (
            lambda f: f.assign(close=np.where(f.index == 1, np.nan, f["close"])),
            r"missing, infinite or non-pos",
        ),
        (lambda f: f.assign(low=-f["low"]), r"non-positive prices"),
        (lambda f: f.assign(volume=-1.0), r"negative or infinite volume"),
        (lambda f: pd.concat([f, f.iloc[[0]]]), r"1 duplicate \(symbol, ts\).*DataValidator"),
        (lambda f: f.assign(open="x"), r"column 'open' has a value that is not a number at position 0"),
    ],
)
def test_malformed_frames_are_refused_before_writing(store: BarStore, make_bars, mutate, fragment) -> None:
    with pytest.raises(DataFormatError, match=fragment):
        store.write_bars(mutate(make_bars("AAA", n=3)))
    assert store.symbols() == []


def test_bad_timeframe(store: BarStore, make_bars) -> None:
    with pytest.raises(ConfigError, match=r"timeframe 'daily' is not valid"):
        store.write_bars(make_bars(), timeframe="daily")


def test_empty_frame_writes_nothing(store: BarStore, make_bars) -> None:
    assert store.write_bars(make_bars(n=0)) == WriteResult(0, 0, 0)


# ---------------------------------------------------------------------- bars: range reads


@pytest.fixture
def filled(store: BarStore, make_bars) -> BarStore:
    store.write_bars(make_bars("AAA", n=10, start="2020-01-01"))
    store.write_bars(make_bars("BBB", n=10, start="2020-01-05"))
    return store


def test_start_inclusive_end_exclusive(filled: BarStore) -> None:
    frame = filled.read_bars("AAA", D("2020-01-03"), D("2020-01-06"))
    assert frame["ts"].dt.day.tolist() == [3, 4, 5]


def test_open_ended_ranges(filled: BarStore) -> None:
    assert filled.read_bars("AAA", start=D("2020-01-09"))["ts"].dt.day.tolist() == [9, 10]
    assert filled.read_bars("AAA", end=D("2020-01-03"))["ts"].dt.day.tolist() == [1, 2]


def test_multi_symbol_read_is_sorted_by_symbol_then_ts(filled: BarStore) -> None:
    frame = filled.read_bars(["BBB", "AAA"], D("2020-01-06"), D("2020-01-08"))
    assert list(zip(frame["symbol"], frame["ts"].dt.day, strict=True)) == [
        ("AAA", 6),
        ("AAA", 7),
        ("BBB", 6),
        ("BBB", 7),
    ]
    assert list(frame.columns) == list(BAR_COLUMNS)


def test_all_symbols_when_none_given(filled: BarStore) -> None:
    assert filled.read_bars()["symbol"].unique().tolist() == ["AAA", "BBB"]


def test_aware_non_utc_bounds_are_converted(filled: BarStore) -> None:
    tokyo = timezone(timedelta(hours=9))
    # 2020-01-04 09:00 in Tokyo is 2020-01-04 00:00 UTC.
    frame = filled.read_bars("AAA", datetime(2020, 1, 4, 9, tzinfo=tokyo), D("2020-01-05"))
    assert frame["ts"].dt.day.tolist() == [4]


def test_unknown_symbol_suggests_closest(filled: BarStore) -> None:
    with pytest.raises(UnknownSymbolError, match=r"'AAB' is not in the store.*Did you mean 'AAA'"):
        filled.read_bars(["AAA", "AAB"])


def test_unknown_symbol_mentions_other_timeframes(filled: BarStore) -> None:
    filled.write_bars(filled.read_bars("AAA").assign(symbol="HHH"), timeframe="1h")
    with pytest.raises(UnknownSymbolError, match=r"'HHH'.*It has bars of timeframe 1h"):
        filled.read_bars("HHH")


def test_empty_range_says_what_the_store_holds(filled: BarStore) -> None:
    with pytest.raises(EmptyRangeError) as info:
        filled.read_bars(["AAA", "BBB"], D("2021-01-01"), D("2021-02-01"))
    message = str(info.value)
    assert "[2021-01-01, 2021-02-01)" in message
    assert "AAA 2020-01-01..2020-01-10" in message
    assert "BBB 2020-01-05..2020-01-14" in message


@pytest.mark.parametrize(("start", "end"), [("2020-01-05", "2020-01-05"), ("2020-01-06", "2020-01-02")])
def test_start_not_before_end_is_empty(filled: BarStore, start: str, end: str) -> None:
    with pytest.raises(EmptyRangeError, match=r"is not before end"):
        filled.read_bars("AAA", D(start), D(end))


def test_naive_bounds_refused(filled: BarStore) -> None:
    with pytest.raises(DataFormatError, match=r"start .* has no timezone"):
        filled.read_bars("AAA", datetime(2020, 1, 1))  # noqa: DTZ001 - the point of the test


def test_empty_store(store: BarStore) -> None:
    with pytest.raises(EmptyRangeError, match=r"holds no 1d bars"):
        store.read_bars()
    assert store.symbols() == []
    summary = store.summary()
    assert list(summary.columns) == list(SUMMARY_COLUMNS)
    assert summary.empty


# ---------------------------------------------------------------------- UTC round trip


def test_utc_round_trip_of_intraday_and_converted_zones(store: BarStore, make_bars) -> None:
    bars = make_bars("SPY", n=6, start="2021-03-12 14:30", freq="37min")
    # Write with a New York zone; the same instants must come back in UTC, at ns resolution.
    store.write_bars(bars.assign(ts=bars["ts"].dt.tz_convert("America/New_York")))
    back = store.read_bars("SPY")
    assert str(back["ts"].dtype) == "datetime64[ns, UTC]"
    pd.testing.assert_series_equal(back["ts"], bars["ts"])


def test_store_survives_reopen(open_store: OpenStore, make_bars) -> None:
    with open_store() as first:
        first.write_bars(make_bars("AAA"))
        first.write_instruments(SAMPLE_INSTRUMENTS)
    with open_store() as again:
        pd.testing.assert_frame_equal(again.read_bars("AAA"), make_bars("AAA"))
        assert again.instruments()["EURGBP"] == SAMPLE_INSTRUMENTS["EURGBP"]
        assert again.write_bars(make_bars("AAA")).unchanged == len(make_bars("AAA"))


def test_duckdb_file_survives_reopen_read_only(tmp_path: Path, make_bars) -> None:
    path = tmp_path / "a" / "b" / "s.duckdb"
    with DuckDBBarStore(path) as first:
        first.write_bars(make_bars("AAA"))
        first.write_instruments(SAMPLE_INSTRUMENTS)
    assert path.is_file()  # parent directories were created
    with DuckDBBarStore(path, read_only=True) as again:
        pd.testing.assert_frame_equal(again.read_bars("AAA"), make_bars("AAA"))
        assert again.instruments()["EURGBP"] == SAMPLE_INSTRUMENTS["EURGBP"]


def test_summary_joins_instruments(store: BarStore, make_bars) -> None:
    store.write_bars(pd.concat([make_bars("AAPL", n=4), make_bars("ZZZ", n=2)], ignore_index=True))
    store.write_instruments([SAMPLE_INSTRUMENTS["AAPL"]])
    summary = store.summary().set_index("symbol")
    assert summary.loc["AAPL", "n_bars"] == 4
    assert summary.loc["AAPL", "asset_class"] == "stock"
    assert pd.isna(summary.loc["ZZZ", "asset_class"])
    assert summary.loc["ZZZ", "first_ts"] == pd.Timestamp("2020-01-06", tz="UTC")


def test_instruments_replace_by_symbol(store: BarStore) -> None:
    assert store.write_instruments(SAMPLE_INSTRUMENTS) == len(SAMPLE_INSTRUMENTS)
    renamed = Instrument("AAPL", "stock", "XNYS", "USD", "Apple (renamed)")
    store.write_instruments([renamed])
    assert store.instruments()["AAPL"].description == "Apple (renamed)"
    assert len(store.instruments()) == len(SAMPLE_INSTRUMENTS)
    with pytest.raises(DataFormatError, match=r"takes Instrument objects"):
        store.write_instruments(["AAPL"])  # type: ignore[list-item]


# ---------------------------------------------------------------------- quarantine


def _quarantine_rows(make_bars) -> pd.DataFrame:
    rows = make_bars("AAA", n=3)
    rows.loc[0, "close"] = np.nan
    rows.loc[1, "low"] = -1.0
    return rows.assign(check=["missing_price", "non_positive_price", "duplicate"], reason=["a", "b", "c"])


def test_quarantine_is_idempotent(store: BarStore, make_bars) -> None:
    rows = _quarantine_rows(make_bars)
    assert store.quarantine(rows) == 3
    assert store.quarantine(rows) == 0
    stored = store.read_quarantine()
    assert list(stored.columns) == list(QUARANTINE_COLUMNS)
    assert len(stored) == 3
    assert np.isnan(stored.loc[0, "close"])  # bad values are kept as they were
    assert str(stored["ts"].dtype) == "datetime64[ns, UTC]"
    # The same bar failing another check is a new row.
    assert store.quarantine(rows.iloc[[0]].assign(check="ohlc_inconsistent")) == 1


def test_quarantine_filters_and_clears(store: BarStore, make_bars) -> None:
    rows = _quarantine_rows(make_bars)
    store.quarantine(pd.concat([rows, rows.assign(symbol="BBB")], ignore_index=True))
    assert store.read_quarantine("BBB")["symbol"].unique().tolist() == ["BBB"]
    assert store.clear_quarantine("AAA") == 3
    assert store.read_quarantine()["symbol"].unique().tolist() == ["BBB"]
    assert store.clear_quarantine() == 3
    assert store.read_quarantine().empty


def test_quarantine_needs_check_and_reason(store: BarStore, make_bars) -> None:
    with pytest.raises(DataFormatError, match=r"missing column\(s\) \['check', 'reason'\]"):
        store.quarantine(make_bars())


# ---------------------------------------------------------------------- derived frames


def _features(symbols: list[str], n: int = 3) -> pd.DataFrame:
    parts = [
        pd.DataFrame(
            {
                "symbol": s,
                "ts": pd.date_range("2020-01-01", periods=n, tz="UTC").astype("datetime64[ns, UTC]"),
                "rsi": np.arange(n, dtype="float64") + k,
                "n_obs": np.arange(n, dtype="int64"),
                "regime": "calm",
            }
        )
        for k, s in enumerate(symbols)
    ]
    return pd.concat(parts, ignore_index=True)


def test_frame_round_trip(store: BarStore) -> None:
    frame = _features(["AAA", "BBB"])
    assert store.write_frame("features_daily", frame) == 6
    assert store.has_frame("features_daily")
    pd.testing.assert_frame_equal(store.read_frame("features_daily"), frame)
    pd.testing.assert_frame_equal(
        store.read_frame("features_daily", "BBB"), frame[frame["symbol"] == "BBB"].reset_index(drop=True)
    )
    assert store.frame_names() == ["features_daily"]


def test_frame_replaces_only_the_symbols_present(store: BarStore) -> None:
    store.write_frame("features", _features(["AAA", "BBB"]))
    store.write_frame("features", _features(["BBB"], n=2).assign(rsi=99.0))
    back = store.read_frame("features")
    assert back.groupby("symbol").size().to_dict() == {"AAA": 3, "BBB": 2}
    assert (back.loc[back["symbol"] == "BBB", "rsi"] == 99.0).all()
    store.write_frame("features", _features(["CCC"]), replace_symbols=False)
    assert store.read_frame("features")["symbol"].unique().tolist() == ["CCC"]


def test_frame_without_symbol_is_replaced_whole_and_keeps_order(store: BarStore) -> None:
    results = pd.DataFrame({"metric": ["sharpe", "max_drawdown", "cagr"], "value": [1.1, -0.2, 0.07]})
    store.write_frame("results", results)
    store.write_frame("results", results.iloc[::-1])
    pd.testing.assert_frame_equal(store.read_frame("results"), results.iloc[::-1].reset_index(drop=True))


def test_frame_named_index_is_kept(store: BarStore) -> None:
    preds = pd.DataFrame({"p_up": [0.4, 0.6]}, index=pd.Index(["AAA", "BBB"], name="symbol"))
    store.write_frame("predictions", preds)
    assert store.read_frame("predictions")["symbol"].tolist() == ["AAA", "BBB"]


def test_frame_errors(store: BarStore) -> None:
    with pytest.raises(
        DataNotFoundError, match=r"no table 'featurs' in the store at .*run the stage that writes"
    ):
        store.read_frame("featurs")
    store.write_frame("features", _features(["AAA"]))
    with pytest.raises(DataNotFoundError, match=r"Did you mean 'features'"):
        store.read_frame("featurs")
    with pytest.raises(UnknownSymbolError, match=r"'AAB'.*table 'features'.*Did you mean 'AAA'"):
        store.read_frame("features", ["AAB"])
    with pytest.raises(DataFormatError, match=r"columns .* differ .* replace_symbols=False"):
        store.write_frame("features", _features(["BBB"]).assign(extra=1.0))
    with pytest.raises(ConfigError, match=r"frame name 'Features-1' is not valid"):
        store.write_frame("Features-1", _features(["AAA"]))
    with pytest.raises(DataFormatError, match=r"naive timestamps"):
        store.write_frame("naive", pd.DataFrame({"ts": pd.date_range("2020-01-01", periods=2)}))
    store.write_frame("results", pd.DataFrame({"metric": ["x"], "value": [1.0]}))
    with pytest.raises(DataFormatError, match=r"no 'symbol' column"):
        store.read_frame("results", "AAA")


# ---------------------------------------------------------------------- failures become StorageError


def test_closed_store(open_store: OpenStore, make_bars) -> None:
    store = open_store()
    store.close()
    store.close()  # twice is fine
    assert store.closed
    with pytest.raises(StorageError, match=r"is closed"):
        store.write_bars(make_bars())
    with pytest.raises(StorageError, match=r"is closed"):
        store.read_bars()


def test_duckdb_corrupt_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.duckdb"
    path.write_bytes(b"this is not a database" * 500)
    with pytest.raises(StorageError, match=rf"{path.name} is not a readable DuckDB database"):
        DuckDBBarStore(path)


def test_duckdb_file_locked_by_another_process(tmp_path: Path) -> None:
    path = tmp_path / "locked.duckdb"
    holder = textwrap.dedent(
        f"""
        import sys, duckdb
        con = duckdb.connect({str(path)!r})
        print("ready", flush=True)
        sys.stdin.readline()
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", holder], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        with pytest.raises(StorageError, match=r"locked by another process.*read_only=True"):
            DuckDBBarStore(path)
    finally:
        proc.communicate("\n", timeout=30)


def test_duckdb_read_only_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError, match=r"no store at"):
        DuckDBBarStore(tmp_path / "none.duckdb", read_only=True)


def test_duckdb_write_to_read_only_store_is_storage_error(tmp_path: Path, make_bars) -> None:
    path = tmp_path / "ro.duckdb"
    DuckDBBarStore(path).close()
    with (
        DuckDBBarStore(path, read_only=True) as store,
        pytest.raises(StorageError, match=r"writing bars failed"),
    ):
        store.write_bars(make_bars())


def test_every_backend_is_a_bar_store(store: BarStore) -> None:
    assert isinstance(store, BarStore)
    assert store.location in repr(store)


def test_duckdb_million_row_write_is_fast(tmp_path: Path) -> None:
    n_symbols, n_days = 50, 20_000
    ts = pd.date_range("1960-01-01", periods=n_days, tz="UTC").astype("datetime64[ns, UTC]")
    bars = pd.DataFrame(
        {
            "symbol": np.repeat([f"S{i:02d}" for i in range(n_symbols)], n_days),
            "ts": np.tile(ts, n_symbols),
            "open": 1.0,
            "high": 2.0,
            "low": 0.5,
            "close": 1.5,
            "volume": 10.0,
        }
    )
    with DuckDBBarStore(tmp_path / "big.duckdb") as store:
        started = time.perf_counter()
        assert store.write_bars(bars).inserted == 1_000_000
        assert store.write_bars(bars).unchanged == 1_000_000
        elapsed = time.perf_counter() - started
    assert elapsed < 30, f"1M-row insert + re-upsert took {elapsed:.1f}s"  # about 3 s on a laptop core


# ---------------------------------------------------------------------- property: upsert semantics

bar_values = st.floats(min_value=0.01, max_value=1e6, allow_nan=False, allow_infinity=False)


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    first=st.lists(st.tuples(st.sampled_from(["A", "B", "C"]), st.integers(0, 15), bar_values), max_size=20),
    second=st.lists(st.tuples(st.sampled_from(["A", "B", "C"]), st.integers(0, 15), bar_values), max_size=20),
)
def test_upsert_counts_match_a_dict_model(new_store, backend: str, first, second) -> None:
    def frame(rows: list[tuple[str, int, float]]) -> pd.DataFrame:
        model = {(s, d): p for s, d, p in rows}  # last write of a key wins within one batch
        return pd.DataFrame(
            {
                "symbol": [k[0] for k in model],
                "ts": pd.to_datetime([D("2020-01-01") + timedelta(days=k[1]) for k in model], utc=True),
                "open": list(model.values()),
                "high": list(model.values()),
                "low": list(model.values()),
                "close": list(model.values()),
                "volume": 1.0,
            }
        ), model

    bars1, model1 = frame(first)
    bars2, model2 = frame(second)
    with new_store(backend)() as store:  # a fresh store per example
        store.write_bars(bars1)
        result = store.write_bars(bars2)
        assert result.inserted == sum(k not in model1 for k in model2)
        assert result.updated == sum(k in model1 and model1[k] != v for k, v in model2.items())
        assert result.unchanged == sum(k in model1 and model1[k] == v for k, v in model2.items())
        merged = {**model1, **model2}
        if merged:
            back = store.read_bars()
            assert len(back) == len(merged)
            got = {
                (s, int((t - pd.Timestamp("2020-01-01", tz="UTC")).days)): c
                for s, t, c in zip(back["symbol"], back["ts"], back["close"], strict=True)
            }
            assert got == merged
