"""PostgresBarStore only: partitioning, BRIN, the COPY paths, concurrency, frame types, errors, DSN redaction.

The behaviour every backend shares is tested in ``test_store.py``. Each test here gets a schema of its own
(``al_pgtest_<session>_<n>``), dropped afterwards; the module drops anything its session left behind.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import psycopg
import pytest

from alphaloom.core.exceptions import ConfigError, StorageError
from alphaloom.data.storage import PostgresBarStore, WriteResult, redact_dsn

PG_DSN = "postgresql://postgres@127.0.0.1:5432/test"
_SESSION = f"al_pgtest_{os.getpid()}_{uuid.uuid4().hex[:8]}"
_numbers = itertools.count()


@pytest.fixture(scope="module")
def admin() -> Iterator[psycopg.Connection]:
    with psycopg.connect(PG_DSN, autocommit=True, connect_timeout=10) as con:
        yield con
        for (name,) in con.execute(
            "SELECT nspname FROM pg_namespace WHERE left(nspname, %s) = %s", [len(_SESSION), _SESSION]
        ).fetchall():
            con.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


@pytest.fixture
def schema(admin: psycopg.Connection) -> Iterator[str]:
    name = f"{_SESSION}_{next(_numbers)}"
    yield name
    admin.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


@pytest.fixture
def store(schema: str) -> Iterator[PostgresBarStore]:
    with PostgresBarStore(PG_DSN, schema=schema, partitioning="native") as s:
        yield s


def bars(symbol: str = "AAA", n: int = 5, start: str = "2020-01-06", freq: str = "D", close: float = 100.0):
    closes = close * np.exp(np.linspace(0.0, 0.01 * (n - 1), n))
    return pd.DataFrame(
        {
            "symbol": symbol,
            "ts": pd.date_range(start, periods=n, freq=freq, tz="UTC").astype("datetime64[ns, UTC]"),
            "open": closes * 0.995,
            "high": closes * 1.01,
            "low": closes * 0.98,
            "close": closes,
            "volume": 1000.0,
        }
    )


def partitions(admin: psycopg.Connection, schema: str) -> list[str]:
    rows = admin.execute(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = to_regclass(%s) ORDER BY 1",
        [f'"{schema}".bars'],
    ).fetchall()
    return [r[0] for r in rows]


# ---------------------------------------------------------------------- layout


def test_bars_are_range_partitioned_by_year_with_brin_and_primary_key(
    store: PostgresBarStore, admin: psycopg.Connection, schema: str
) -> None:
    assert store.partitioning == "native"
    assert partitions(admin, schema) == ["bars_default"]
    store.write_bars(bars(n=10, start="2019-12-28"))
    assert partitions(admin, schema) == ["bars_default", "bars_y2019", "bars_y2020"]
    strategy = admin.execute(
        "SELECT partstrat FROM pg_partitioned_table WHERE partrelid = to_regclass(%s)", [f'"{schema}".bars']
    ).fetchone()
    assert strategy == ("r",)
    indexes = dict(
        admin.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = %s AND tablename = 'bars'",
            [schema],
        ).fetchall()
    )
    assert any("USING brin (ts)" in d for d in indexes.values()), indexes
    assert any("UNIQUE" in d and "(symbol, timeframe, ts)" in d for d in indexes.values()), indexes
    # Rows land in their year's partition, none in the default one.
    counts = admin.execute(
        f'SELECT c.relname, count(*) FROM "{schema}".bars AS b JOIN pg_class AS c ON c.oid = b.tableoid '
        "GROUP BY 1 ORDER BY 1"
    ).fetchall()
    assert counts == [("bars_y2019", 4), ("bars_y2020", 6)]


def test_rows_in_the_default_partition_move_into_a_new_partition(
    store: PostgresBarStore, admin: psycopg.Connection, schema: str
) -> None:
    # A row written by another client for a year with no partition yet lands in bars_default.
    admin.execute(
        f'INSERT INTO "{schema}".bars (symbol, timeframe, ts, open, high, low, close, volume) '
        "VALUES ('AAA', '1d', '2031-01-02+00', 1, 1, 1, 1, NULL)"
    )
    assert admin.execute(f'SELECT count(*) FROM "{schema}".bars_default').fetchone() == (1,)
    store.write_bars(bars(n=3, start="2031-01-05"))
    assert "bars_y2031" in partitions(admin, schema)
    assert admin.execute(f'SELECT count(*) FROM "{schema}".bars_default').fetchone() == (0,)
    assert admin.execute(f'SELECT count(*) FROM "{schema}".bars_y2031').fetchone() == (4,)


def test_timescaledb_is_used_when_available_and_refused_clearly_when_not(
    admin: psycopg.Connection, schema: str
) -> None:
    available = admin.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'").fetchone()
    if available:
        with PostgresBarStore(PG_DSN, schema=schema) as s:
            assert s.partitioning == "timescaledb"
    else:
        with pytest.raises(ConfigError, match=r"partitioning='timescaledb'.*install TimescaleDB"):
            PostgresBarStore(PG_DSN, schema=schema, partitioning="timescaledb")
        with PostgresBarStore(PG_DSN, schema=schema) as s:
            assert s.partitioning == "native"


def test_an_existing_schema_keeps_its_partitioning(store: PostgresBarStore, schema: str) -> None:
    with pytest.raises(ConfigError, match=r"created with native partitioning, not timescaledb"):
        PostgresBarStore(PG_DSN, schema=schema, partitioning="timescaledb")
    with PostgresBarStore(PG_DSN, schema=schema) as again:
        assert again.partitioning == "native"


def test_newer_schema_version_is_refused(
    store: PostgresBarStore, admin: psycopg.Connection, schema: str
) -> None:
    admin.execute(f"UPDATE \"{schema}\".al_meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(StorageError, match=r"schema version 99; this alphaloom reads version 1"):
        PostgresBarStore(PG_DSN, schema=schema)


@pytest.mark.parametrize("bad", ["", "Alpha", "1abc", "a-b", "a" * 64, 'x"; drop table y; --'])
def test_invalid_schema_names(bad: str) -> None:
    with pytest.raises(ConfigError, match=r"schema .* is not valid"):
        PostgresBarStore(PG_DSN, schema=bad)


# ---------------------------------------------------------------------- the COPY paths


@pytest.fixture
def copies(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Statements passed to ``Cursor.copy`` during the test."""
    seen: list[str] = []
    original = psycopg.Cursor.copy

    def spy(self, statement, *args, **kwargs):
        seen.append(statement if isinstance(statement, str) else statement.as_string(self))
        return original(self, statement, *args, **kwargs)

    monkeypatch.setattr(psycopg.Cursor, "copy", spy)
    return seen


def test_new_keys_are_copied_straight_into_bars(
    store: PostgresBarStore, copies: list[str], schema: str
) -> None:
    assert store.write_bars(bars(n=10)) == WriteResult(10, 0, 0)
    assert len(copies) == 1
    assert copies[0].startswith(f'COPY "{schema}"."bars" (')
    assert copies[0].endswith("FROM STDIN (FORMAT BINARY)")
    # Appending after the stored range takes the same path.
    copies.clear()
    assert store.write_bars(bars(n=15).iloc[10:]) == WriteResult(5, 0, 0)
    assert [c.split(" (")[0] for c in copies] == [f'COPY "{schema}"."bars"']


def test_overlapping_keys_go_through_staging_and_merge(store: PostgresBarStore, copies: list[str]) -> None:
    store.write_bars(bars(n=10))
    copies.clear()
    changed = bars(n=12)
    changed.loc[3, "close"] = changed.loc[3, "high"]
    assert store.write_bars(changed) == WriteResult(inserted=2, updated=1, unchanged=9)
    # Rows inside the stored range are staged and merged; the two beyond it are appended.
    targets = sorted(c.split(" (")[0] for c in copies)
    assert len(targets) == 2, copies
    assert targets[0] == 'COPY "_al_stage"', copies
    assert targets[1].endswith('"bars"'), copies


def test_reads_use_binary_copy(store: PostgresBarStore, copies: list[str]) -> None:
    store.write_bars(bars(n=3))
    copies.clear()
    store.read_bars("AAA")
    assert len(copies) == 1
    assert copies[0].lstrip().startswith("COPY (")
    assert copies[0].rstrip().endswith("TO STDOUT (FORMAT BINARY)")


def test_revision_counts_corrections(store: PostgresBarStore, admin: psycopg.Connection, schema: str) -> None:
    frame = bars(n=3)
    store.write_bars(frame, source="first")
    store.write_bars(frame, source="again")  # unchanged: no new revision, source kept
    frame.loc[1, "close"] = frame.loc[1, "high"]
    store.write_bars(frame, source="fix")
    rows = admin.execute(f'SELECT revision, source FROM "{schema}".bars ORDER BY ts').fetchall()
    assert rows == [(0, "first"), (1, "fix"), (0, "first")]


def test_append_path_falls_back_to_merge_when_a_key_exists_unexpectedly(
    store: PostgresBarStore, admin: psycopg.Connection, schema: str
) -> None:
    store.write_bars(bars(n=10))
    # Another client wrote a later bar without going through the store, so bar_ranges does not know it.
    admin.execute(
        f'INSERT INTO "{schema}".bars (symbol, timeframe, ts, open, high, low, close, volume) '
        "SELECT symbol, timeframe, ts + interval '5 days', open, high, low, close, volume "
        f"FROM \"{schema}\".bars WHERE ts = '2020-01-15+00'"
    )
    result = store.write_bars(bars(n=20).iloc[10:])
    assert result.inserted == 9
    assert result.total == 10
    assert len(store.read_bars("AAA")) == 20


def test_concurrent_writers_keep_counts_and_ranges_right(schema: str) -> None:
    with PostgresBarStore(PG_DSN, schema=schema, partitioning="native") as first:
        first.write_bars(bars("AAA", n=1))  # create the schema once, before the race
    frames = [bars("AAA", n=300, start="2020-01-01").iloc[a:b] for a, b in ((0, 200), (100, 300), (50, 250))]
    results: list[WriteResult] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(frames))

    def write(frame: pd.DataFrame) -> None:
        try:
            with PostgresBarStore(PG_DSN, schema=schema) as s:
                barrier.wait()
                results.append(s.write_bars(frame))
        except BaseException as exc:  # collected and re-raised by the test thread
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(f,)) for f in frames]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert sum(r.inserted for r in results) == 299  # 300 keys, one written before the race
    with PostgresBarStore(PG_DSN, schema=schema) as s:
        summary = s.summary()
        assert summary["n_bars"].tolist() == [300]
        assert summary["first_ts"].iloc[0] == pd.Timestamp("2020-01-01", tz="UTC")
        assert summary["last_ts"].iloc[0] == pd.Timestamp("2020-01-01", tz="UTC") + pd.Timedelta(days=299)
        assert len(s.read_bars("AAA")) == 300


def test_two_handles_share_partitions(schema: str) -> None:
    with (
        PostgresBarStore(PG_DSN, schema=schema, partitioning="native") as a,
        PostgresBarStore(PG_DSN, schema=schema) as b,
    ):
        a.write_bars(bars("AAA", n=3, start="2015-06-01"))
        assert b.write_bars(bars("BBB", n=3, start="2015-06-01")).inserted == 3
        assert b.symbols() == ["AAA", "BBB"]


def test_bulk_ingest_is_fast(store: PostgresBarStore) -> None:
    n_symbols, n_minutes = 20, 10_000
    ts = pd.date_range("2021-01-01", periods=n_minutes, freq="min", tz="UTC").astype("datetime64[ns, UTC]")
    frame = pd.DataFrame(
        {
            "symbol": np.repeat([f"S{i:02d}" for i in range(n_symbols)], n_minutes),
            "ts": np.tile(ts, n_symbols),
            "open": 1.0,
            "high": 2.0,
            "low": 0.5,
            "close": 1.5,
            "volume": np.nan,
        }
    )
    started = time.perf_counter()
    assert store.write_bars(frame, timeframe="1m").inserted == 200_000
    assert store.write_bars(frame, timeframe="1m").unchanged == 200_000
    elapsed = time.perf_counter() - started
    back = store.read_bars(["S07"], timeframe="1m")
    assert len(back) == n_minutes
    assert back["volume"].isna().all()
    # About 1.5 s on the 2-core development machine (see bench/store.py for rows/s); generous for CI.
    assert elapsed < 30, f"200k-row insert + re-upsert took {elapsed:.1f}s"


# ---------------------------------------------------------------------- derived frames: PostgreSQL types


def test_frame_dtypes_round_trip(store: PostgresBarStore) -> None:
    frame = pd.DataFrame(
        {
            "symbol": ["AAA", "AAA", "BBB"],
            "ts": pd.to_datetime(["2020-01-01", None, "2020-01-03"], utc=True).astype("datetime64[ns, UTC]"),
            "flag": [True, False, True],
            "n32": np.array([1, 2, 3], dtype="int32"),
            "n64": np.array([2**40, -1, 0], dtype="int64"),
            "x32": np.array([0.5, 1.5, np.nan], dtype="float32"),
            "x64": [0.1, np.nan, np.inf],
            "label": pd.Series(["a", None, "é ü ' \" ,"], dtype="str"),
            "held": pd.to_timedelta(["1h", "2D", None]),
            "regime": pd.Categorical(["calm", "wild", "calm"]),
        }
    )
    store.write_frame("typed", frame)
    back = store.read_frame("typed")
    expected = frame.assign(regime=frame["regime"].astype("str"))
    expected = expected.sort_values(["symbol", "ts"], na_position="last", kind="stable").reset_index(
        drop=True
    )
    pd.testing.assert_frame_equal(back, expected, check_dtype=True)


def test_partial_frame_write_casts_to_the_stored_types(store: PostgresBarStore) -> None:
    store.write_frame("f", pd.DataFrame({"symbol": ["A", "B"], "n": np.array([1, 2], dtype="int64")}))
    store.write_frame("f", pd.DataFrame({"symbol": ["B"], "N": [7.0]}))  # a float into the int column "n"
    back = store.read_frame("f")
    assert back["n"].tolist() == [1, 7]
    assert str(back["n"].dtype) == "int64"
    with pytest.raises(StorageError, match=r"writing table 'f' failed"):
        store.write_frame("f", pd.DataFrame({"symbol": ["C"], "n": ["not a number"]}))


def test_frame_names_too_long_for_postgres(store: PostgresBarStore) -> None:
    with pytest.raises(ConfigError, match=r"too long for PostgreSQL.*at most 57"):
        store.write_frame("f" * 60, pd.DataFrame({"x": [1.0]}))
    with pytest.raises(Exception, match=r"column name .* too long"):
        store.write_frame("ok", pd.DataFrame({"c" * 64: [1.0]}))


def test_mixed_object_column_is_refused(store: PostgresBarStore) -> None:
    with pytest.raises(Exception, match=r"column 'mixed' holds Python objects of mixed"):
        store.write_frame("bad", pd.DataFrame({"mixed": [1, "a", 2.5]}, dtype=object))


# ---------------------------------------------------------------------- errors and the DSN


@pytest.mark.parametrize(
    ("dsn", "shown"),
    [
        ("postgresql://alice:s3cr%40t@127.0.0.1:5433/prod", "postgresql://alice@127.0.0.1:5433/prod"),
        (
            "host=127.0.0.1 port=5432 user=bob password=hunter2 dbname=db",
            "postgresql://bob@127.0.0.1:5432/db",
        ),
        ("postgresql:///test?host=127.0.0.1&password=pw", "postgresql://127.0.0.1:5432/test"),
        ("not a dsn", "<invalid DSN>"),
    ],
)
def test_redact_dsn(dsn: str, shown: str) -> None:
    assert redact_dsn(dsn) == shown


def test_connection_errors_never_show_the_password() -> None:
    dsn = "postgresql://postgres:hunter2@127.0.0.1:1/test?connect_timeout=2"
    with pytest.raises(StorageError) as info:
        PostgresBarStore(dsn, schema="unused")
    message = str(info.value)
    assert "hunter2" not in message
    assert "cannot connect to PostgreSQL at postgresql://postgres@127.0.0.1:1/test" in message
    assert isinstance(info.value.__cause__, psycopg.OperationalError)
    with pytest.raises(StorageError, match=r"DSN is not valid") as info:
        PostgresBarStore("host=127.0.0.1 password=hunter2 bogus", schema="unused")
    assert "hunter2" not in str(info.value)


def test_password_is_kept_out_of_location_and_errors(schema: str, admin: psycopg.Connection) -> None:
    # The server trusts local logins, so the password is accepted and ignored; it must never be echoed.
    dsn = "postgresql://postgres:hunter2@127.0.0.1:5432/test"
    with PostgresBarStore(dsn, schema=schema) as s:
        assert "hunter2" not in s.location
        assert "hunter2" not in repr(s)
        s.write_bars(bars(n=2))
        admin.execute(f'DROP SCHEMA "{schema}" CASCADE')  # pull the tables out from under the store
        with pytest.raises(StorageError, match=r"failed on the store at postgresql://postgres@") as info:
            s.write_bars(bars(n=3))
        assert "hunter2" not in str(info.value)
        assert isinstance(info.value.__cause__, psycopg.Error)


def test_closed_store_is_storage_error(schema: str) -> None:
    s = PostgresBarStore(PG_DSN, schema=schema)
    s.close()
    s.close()
    assert s.closed
    with pytest.raises(StorageError, match=r"is closed; open a new PostgresBarStore"):
        s.symbols()


def test_timestamps_far_from_now_round_trip(store: PostgresBarStore) -> None:
    frame = pd.concat([bars(n=2, start="1970-01-01"), bars(n=2, start="1969-12-31 23:59:59.999999")])
    frame = frame.assign(symbol=["A", "A", "B", "B"])
    store.write_bars(frame, timeframe="1s")
    back = store.read_bars(timeframe="1s")
    pd.testing.assert_series_equal(back["ts"], frame["ts"].reset_index(drop=True))
    start = datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
    assert store.read_bars("B", start, start + timedelta(microseconds=1), timeframe="1s")["ts"].size == 1
