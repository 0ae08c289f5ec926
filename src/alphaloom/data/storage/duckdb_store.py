"""A :class:`~alphaloom.data.storage.base.BarStore` in one DuckDB file.

Frames move in and out through Arrow, so writes are bulk set operations and timestamps keep their UTC zone
without pytz. Times are stored as ``TIMESTAMPTZ`` (microsecond precision; finer times are floored) in a
session pinned to UTC. Every duckdb exception is translated to
:class:`~alphaloom.core.exceptions.StorageError` naming the file.

``bars`` has no primary-key index: maintaining its ART index cost more than the rest of a bulk write. The
uniqueness of (symbol, timeframe, ts) is kept by :meth:`DuckDBBarStore.write_bars`, the only writer of the
table. Rows outside the [first, last] range their symbol already holds cannot collide with a stored key and
are appended directly; only rows inside it go through the merge that counts inserts, updates and unchanged
rows. Every bars write also updates one counter row in ``al_meta``, so two writers whose transactions
overlap conflict and one fails instead of both appending. Files created with the earlier layout keep their
key, which is then redundant but harmless. A 1M-row fresh ingest runs at over 1M rows/s on two cores.

Tables: ``bars``, ``instruments``, ``quarantine``, ``al_meta`` (schema version) and one ``frame_<name>``
table per derived frame.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from alphaloom.core.exceptions import DataFormatError, DataNotFoundError, StorageError
from alphaloom.data._frames import TS_DTYPE
from alphaloom.data.instruments import Instrument
from alphaloom.data.storage.base import BarStore, WriteResult

__all__ = ["SCHEMA_VERSION", "DuckDBBarStore"]

#: Version of the table layout written into ``al_meta``; bumped when a migration is needed.
SCHEMA_VERSION = 1

_MEMORY = ":memory:"
_FRAME_PREFIX = "frame_"
_SEQ = "__al_seq"
_WRITE_SEQ = "bars_write_seq"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS al_meta (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL);
CREATE TABLE IF NOT EXISTS bars (
    symbol VARCHAR NOT NULL,
    timeframe VARCHAR NOT NULL,
    ts TIMESTAMPTZ NOT NULL,
    open DOUBLE NOT NULL,
    high DOUBLE NOT NULL,
    low DOUBLE NOT NULL,
    close DOUBLE NOT NULL,
    volume DOUBLE,
    source VARCHAR NOT NULL DEFAULT '',
    written_at TIMESTAMPTZ NOT NULL
);
CREATE TABLE IF NOT EXISTS instruments (
    symbol VARCHAR PRIMARY KEY,
    asset_class VARCHAR NOT NULL,
    calendar VARCHAR NOT NULL,
    quote_currency VARCHAR NOT NULL,
    description VARCHAR NOT NULL
);
CREATE TABLE IF NOT EXISTS quarantine (
    symbol VARCHAR NOT NULL,
    timeframe VARCHAR NOT NULL,
    ts TIMESTAMPTZ NOT NULL,
    open DOUBLE,
    high DOUBLE,
    low DOUBLE,
    close DOUBLE,
    volume DOUBLE,
    "check" VARCHAR NOT NULL,
    reason VARCHAR NOT NULL,
    quarantined_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (symbol, timeframe, ts, "check")
);
"""

_VALUES = ("open", "high", "low", "close", "volume")


def _q(identifier: str) -> str:
    """Quote an SQL identifier."""
    return '"' + identifier.replace('"', '""') + '"'


def _run(
    con: duckdb.DuckDBPyConnection, sql: str, params: Sequence[Any] | None = None
) -> list[tuple[Any, ...]]:
    """Execute one statement and fetch its whole result, so the connection is free for the next call."""
    return con.execute(sql, params).fetchall()


def _to_stored_us(ts_ns: np.ndarray) -> np.ndarray:
    """Epoch microseconds the store keeps for nanosecond times: floored, and handed to DuckDB as such."""
    return ts_ns // 1000


def _check_unique_after_rounding(bars: pd.DataFrame, codes: np.ndarray, ts_us: np.ndarray) -> None:
    # ``bars`` is sorted with unique (symbol, ts); two times less than a microsecond apart would still
    # collapse onto one stored key.
    same = (codes[1:] == codes[:-1]) & (ts_us[1:] == ts_us[:-1])
    if same.any():
        pos = int(np.flatnonzero(same)[0])
        raise DataFormatError(
            f"write_bars(): {int(same.sum())} row(s) fall on the same microsecond as the row before them, "
            f"first {bars['symbol'].iat[pos]} {bars['ts'].iat[pos + 1].isoformat()}; the store keeps times "
            f"to the microsecond, so round or de-duplicate them first."
        )


def _fresh_mask(
    codes: np.ndarray, symbols: pd.Index, ts_us: np.ndarray, held: Sequence[tuple[str, int, int]]
) -> np.ndarray:
    """True for rows outside the stored [first, last] range of their symbol: they cannot collide."""
    big = np.iinfo(np.int64).max
    first = np.full(len(symbols), big, dtype=np.int64)
    last = np.full(len(symbols), -big, dtype=np.int64)
    if held:
        where = symbols.get_indexer([h[0] for h in held])
        first[where] = [h[1] for h in held]
        last[where] = [h[2] for h in held]
    return (ts_us < first[codes]) | (ts_us > last[codes])


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class DuckDBBarStore(BarStore):
    """Bars, instruments, quarantine and derived frames in one DuckDB database file.

    Parameters
    ----------
    path
        The database file; parent directories are created. ``":memory:"`` gives a throw-away store.
    read_only
        Open an existing file without write access, so several processes can read it at once. DuckDB lets
        one process write a file at a time; a second writer gets a :class:`StorageError`.

    Examples
    --------
    >>> from alphaloom.data import DuckDBBarStore, load_sample
    >>> with DuckDBBarStore(":memory:") as store:
    ...     store.write_bars(load_sample("crypto_daily")).inserted
    3578
    """

    def __init__(self, path: str | Path, *, read_only: bool = False) -> None:
        self._memory = str(path) == _MEMORY
        self._path = Path(path) if self._memory else Path(path).expanduser()
        self._con: duckdb.DuckDBPyConnection | None = None
        if not self._memory:
            if read_only and not self._path.is_file():
                raise DataNotFoundError(f"no store at {self._path}; create it by writing bars first.")
            try:
                self._path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StorageError(
                    f"cannot create the directory {self._path.parent} for the store: {exc.strerror}."
                ) from exc
        try:
            self._con = duckdb.connect(_MEMORY if self._memory else str(self._path), read_only=read_only)
        except duckdb.Error as exc:
            raise StorageError(self._open_error(exc)) from exc
        with self._translate("opening"):
            _run(self._con, "SET TimeZone = 'UTC'")
            if not read_only:
                _run(self._con, _SCHEMA)
                _run(
                    self._con,
                    "INSERT INTO al_meta VALUES ('schema_version', $1), ($2, '0') ON CONFLICT DO NOTHING",
                    [str(SCHEMA_VERSION), _WRITE_SEQ],
                )
            rows = _run(self._con, "SELECT value FROM al_meta WHERE key = 'schema_version'")
        version = rows[0][0] if rows else None
        if version is None or int(version) > SCHEMA_VERSION:
            found = "no version" if version is None else f"version {version}"
            self.close()
            raise StorageError(
                f"the store at {self.location} has schema {found}; this alphaloom reads version "
                f"{SCHEMA_VERSION}. Upgrade alphaloom or use another data directory."
            )

    # ------------------------------------------------------------------ lifecycle

    @property
    def location(self) -> str:
        return _MEMORY if self._memory else str(self._path)

    @property
    def path(self) -> Path:
        """The database file (``Path(':memory:')`` for an in-memory store)."""
        return self._path

    @property
    def closed(self) -> bool:
        return self._con is None

    def close(self) -> None:
        con, self._con = self._con, None
        if con is not None:
            try:
                con.close()
            except duckdb.Error as exc:
                raise StorageError(
                    f"closing the store at {self.location} failed: {_first_line(exc)}"
                ) from exc

    def _open_error(self, exc: duckdb.Error) -> str:
        text = _first_line(exc)
        if "lock" in text.lower():
            return (
                f"the store at {self.location} is locked by another process ({text}); close the other "
                f"program using it, or open it with read_only=True if you only need to read."
            )
        if "not a valid duckdb database" in text.lower() or isinstance(exc, duckdb.SerializationException):
            return (
                f"{self.location} is not a readable DuckDB database ({text}); it may be corrupt or another "
                f"kind of file. Move it away and ingest again."
            )
        return f"cannot open the store at {self.location}: {text}"

    @contextmanager
    def _translate(self, action: str) -> Iterator[duckdb.DuckDBPyConnection]:
        if self._con is None:
            raise StorageError(f"the store at {self.location} is closed; open a new DuckDBBarStore.")
        try:
            yield self._con
        except duckdb.Error as exc:
            raise StorageError(
                f"{action} failed on the store at {self.location}: {_first_line(exc)}"
            ) from exc

    @contextmanager
    def _transaction(self, action: str) -> Iterator[duckdb.DuckDBPyConnection]:
        with self._translate(action) as con:
            _run(con, "BEGIN TRANSACTION")
            try:
                yield con
            except BaseException:
                # The failure may already have aborted the transaction.
                with suppress(duckdb.Error):
                    _run(con, "ROLLBACK")
                raise
            _run(con, "COMMIT")

    @contextmanager
    def _registered(self, con: duckdb.DuckDBPyConnection, view: str, frame: pd.DataFrame) -> Iterator[None]:
        try:
            table = _arrow_table(frame)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
            raise DataFormatError(f"cannot store the frame: {_first_line(exc)}") from exc
        con.register(view, table)
        try:
            yield
        finally:
            con.unregister(view)

    def _fetch(self, action: str, sql: str, params: Sequence[Any] | None = None) -> pd.DataFrame:
        with self._translate(action) as con:
            table = con.sql(sql, params=list(params) if params is not None else None).to_arrow_table()
        frame = table.to_pandas()
        for col in frame.columns:
            if isinstance(frame[col].dtype, pd.DatetimeTZDtype):
                frame[col] = frame[col].dt.tz_convert("UTC").astype(TS_DTYPE)
        return frame

    # ------------------------------------------------------------------ bars

    def _write_bars(self, bars: pd.DataFrame, timeframe: str, source: str) -> WriteResult:
        codes, symbols = pd.factorize(bars["symbol"], sort=False)
        ts_us = _to_stored_us(bars["ts"].array.asi8)
        _check_unique_after_rounding(bars, codes, ts_us)
        try:
            # Hand DuckDB the very microseconds the fresh-row test below compared, not nanoseconds to round.
            stored_ts = pa.array(ts_us, type=pa.int64()).view(pa.timestamp("us", tz="UTC"))
            position = list(bars.columns).index("ts")
            incoming = _arrow_table(bars.drop(columns="ts")).add_column(position, "ts", stored_ts)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
            raise DataFormatError(f"cannot store the frame: {_first_line(exc)}") from exc
        with self._transaction("writing bars") as con:
            # Every bars write updates this one row, so two overlapping writers conflict and one fails:
            # that, and this method being the only writer, keeps (symbol, timeframe, ts) unique without an
            # index on it.
            _run(
                con,
                "UPDATE al_meta SET value = CAST(CAST(value AS BIGINT) + 1 AS VARCHAR) WHERE key = $1",
                [_WRITE_SEQ],
            )
            held = _run(
                con,
                "SELECT symbol, epoch_us(min(ts)), epoch_us(max(ts)) FROM bars "
                "WHERE timeframe = $1 AND symbol IN (SELECT unnest($2)) GROUP BY symbol",
                [timeframe, list(symbols)],
            )
            fresh = _fresh_mask(codes, symbols, ts_us, held)
            n_fresh = int(fresh.sum())
            counts = {"insert": 0, "update": 0, "same": 0}
            if n_fresh:
                part = incoming if n_fresh == len(bars) else incoming.filter(pa.array(fresh))
                counts["insert"] += self._append_bars(con, part, timeframe, source)
            if n_fresh < len(bars):
                part = incoming.filter(pa.array(~fresh)) if n_fresh else incoming
                for action, n in self._merge_bars(con, part, timeframe, source).items():
                    counts[action] += n
        return WriteResult(counts["insert"], counts["update"], counts["same"])

    @staticmethod
    def _append_bars(con: duckdb.DuckDBPyConnection, part: pa.Table, timeframe: str, source: str) -> int:
        # Rows outside the stored range of their symbol cannot collide with a stored key: append them.
        con.register("_al_fresh", part)
        try:
            inserted = _run(
                con,
                """
                INSERT INTO bars
                SELECT symbol, $1, CAST(ts AS TIMESTAMPTZ), open, high, low, close, volume, $2, now()
                FROM _al_fresh
                """,
                [timeframe, source],
            )
        finally:
            con.unregister("_al_fresh")
        return int(inserted[0][0])

    @staticmethod
    def _merge_bars(
        con: duckdb.DuckDBPyConnection, part: pa.Table, timeframe: str, source: str
    ) -> dict[str, int]:
        changed = " OR ".join(f"i.{c} IS DISTINCT FROM b.{c}" for c in _VALUES)
        con.register("_al_incoming", part)
        try:
            _run(
                con,
                f"""
                CREATE OR REPLACE TEMP TABLE _al_diff AS
                SELECT i.symbol, CAST(i.ts AS TIMESTAMPTZ) AS ts, i.open, i.high, i.low, i.close, i.volume,
                       CASE WHEN b.ts IS NULL THEN 'insert' WHEN {changed} THEN 'update' ELSE 'same' END
                           AS action
                FROM _al_incoming AS i
                LEFT JOIN (SELECT * FROM bars WHERE timeframe = $1) AS b
                    ON b.symbol = i.symbol AND b.ts = CAST(i.ts AS TIMESTAMPTZ)
                """,
                [timeframe],
            )
        finally:
            con.unregister("_al_incoming")
        _run(
            con,
            """
            INSERT INTO bars
            SELECT symbol, $1, ts, open, high, low, close, volume, $2, now()
            FROM _al_diff WHERE action = 'insert'
            """,
            [timeframe, source],
        )
        _run(
            con,
            """
            UPDATE bars SET open = d.open, high = d.high, low = d.low, close = d.close,
                            volume = d.volume, source = $2, written_at = now()
            FROM _al_diff AS d
            WHERE d.action = 'update' AND bars.timeframe = $1
              AND bars.symbol = d.symbol AND bars.ts = d.ts
            """,
            [timeframe, source],
        )
        counts = dict(_run(con, "SELECT action, count(*) FROM _al_diff GROUP BY action"))
        _run(con, "DROP TABLE _al_diff")
        return {str(k): int(v) for k, v in counts.items()}

    def _read_bars(
        self, symbols: Sequence[str], start: datetime | None, end: datetime | None, timeframe: str
    ) -> pd.DataFrame:
        where = ["timeframe = $1", "symbol IN (SELECT unnest($2))"]
        params: list[Any] = [timeframe, list(symbols)]
        if start is not None:
            params.append(start)
            where.append(f"ts >= ${len(params)}")
        if end is not None:
            params.append(end)
            where.append(f"ts < ${len(params)}")
        return self._fetch(
            "reading bars",
            f"SELECT symbol, ts, open, high, low, close, volume FROM bars WHERE {' AND '.join(where)} "
            f"ORDER BY symbol, ts",
            params,
        )

    def _bar_ranges(self, timeframe: str | None) -> pd.DataFrame:
        where, params = ("WHERE timeframe = $1", [timeframe]) if timeframe is not None else ("", None)
        frame = self._fetch(
            "summarising bars",
            f"SELECT symbol, timeframe, count(*) AS n_bars, min(ts) AS first_ts, max(ts) AS last_ts "
            f"FROM bars {where} GROUP BY symbol, timeframe ORDER BY symbol, timeframe",
            params,
        )
        frame["n_bars"] = frame["n_bars"].astype("int64")
        for col in ("first_ts", "last_ts"):
            frame[col] = pd.to_datetime(frame[col], utc=True).astype(TS_DTYPE)
        for col in ("symbol", "timeframe"):
            frame[col] = frame[col].astype("str")
        return frame

    # ------------------------------------------------------------------ instruments

    def _write_instruments(self, instruments: Sequence[Instrument]) -> None:
        rows = [
            (i.symbol, i.asset_class.value, i.calendar, i.quote_currency, i.description) for i in instruments
        ]
        with self._transaction("writing instruments") as con:
            con.executemany("INSERT OR REPLACE INTO instruments VALUES ($1, $2, $3, $4, $5)", rows)

    def _read_instruments(self) -> dict[str, Instrument]:
        with self._translate("reading instruments") as con:
            rows = _run(
                con, "SELECT symbol, asset_class, calendar, quote_currency, description FROM instruments"
            )
        return {r[0]: Instrument(*r) for r in rows}

    # ------------------------------------------------------------------ quarantine

    def _write_quarantine(self, rows: pd.DataFrame) -> int:
        with self._transaction("quarantining rows") as con, self._registered(con, "_al_quarantine", rows):
            inserted = _run(
                con,
                """
                INSERT INTO quarantine
                SELECT r.symbol, r.timeframe, CAST(r.ts AS TIMESTAMPTZ), r.open, r.high, r.low, r.close,
                       r.volume, r."check", r.reason, now()
                FROM _al_quarantine AS r
                WHERE NOT EXISTS (
                    SELECT 1 FROM quarantine AS q
                    WHERE q.symbol = r.symbol AND q.timeframe = r.timeframe
                      AND q.ts = CAST(r.ts AS TIMESTAMPTZ) AND q."check" = r."check"
                )
                """,
            )
        return int(inserted[0][0]) if inserted else 0

    @staticmethod
    def _quarantine_filter(symbols: Sequence[str] | None, timeframe: str | None) -> tuple[str, list[Any]]:
        where, params = [], []
        if symbols is not None:
            params.append(list(symbols))
            where.append(f"symbol IN (SELECT unnest(${len(params)}))")
        if timeframe is not None:
            params.append(timeframe)
            where.append(f"timeframe = ${len(params)}")
        return (f"WHERE {' AND '.join(where)}" if where else ""), params

    def _read_quarantine(self, symbols: Sequence[str] | None, timeframe: str | None) -> pd.DataFrame:
        where, params = self._quarantine_filter(symbols, timeframe)
        return self._fetch(
            "reading the quarantine",
            f'SELECT symbol, timeframe, ts, open, high, low, close, volume, "check", reason FROM quarantine '
            f'{where} ORDER BY symbol, timeframe, ts, "check"',
            params or None,
        )

    def _clear_quarantine(self, symbols: Sequence[str] | None, timeframe: str | None) -> int:
        where, params = self._quarantine_filter(symbols, timeframe)
        with self._transaction("clearing the quarantine") as con:
            deleted = _run(con, f"DELETE FROM quarantine {where}", params or None)
        return int(deleted[0][0]) if deleted else 0

    # ------------------------------------------------------------------ derived frames

    def _table_columns(self, name: str) -> list[str]:
        with self._translate("describing a table") as con:
            rows = _run(
                con,
                "SELECT column_name FROM duckdb_columns() WHERE schema_name = 'main' AND table_name = $1 "
                "ORDER BY column_index",
                [_FRAME_PREFIX + name],
            )
        return [r[0] for r in rows]

    def _write_frame(self, name: str, frame: pd.DataFrame, partial: bool) -> None:
        table = _q(_FRAME_PREFIX + name)
        if partial:
            existing = [c for c in self._table_columns(name) if c != _SEQ]
            if sorted(c.lower() for c in existing) != sorted(c.lower() for c in frame.columns):
                raise DataFormatError(
                    f"write_frame({name!r}): the frame's columns {list(frame.columns)} differ from the "
                    f"stored table's {existing}; pass replace_symbols=False to replace the whole table."
                )
        with self._transaction(f"writing table {name!r}") as con:
            start = 0
            if partial:
                start = int(_run(con, f"SELECT coalesce(max({_q(_SEQ)}) + 1, 0) FROM {table}")[0][0])
            staged = frame.assign(**{_SEQ: pd.RangeIndex(start, start + len(frame))})
            with self._registered(con, "_al_frame", staged):
                if partial:
                    _run(con, f"DELETE FROM {table} WHERE symbol IN (SELECT DISTINCT symbol FROM _al_frame)")
                    _run(con, f"INSERT INTO {table} BY NAME SELECT * FROM _al_frame")
                else:
                    _run(con, f"CREATE OR REPLACE TABLE {table} AS SELECT * FROM _al_frame")

    def _read_frame(self, name: str, symbols: Sequence[str] | None) -> pd.DataFrame:
        columns = self._table_columns(name)
        order = [c for c in ("symbol", "ts") if c in columns] + [_SEQ]
        where, params = "", None
        if symbols is not None:
            where, params = "WHERE symbol IN (SELECT unnest($1))", [list(symbols)]
        return self._fetch(
            f"reading table {name!r}",
            f"SELECT * EXCLUDE ({_q(_SEQ)}) FROM {_q(_FRAME_PREFIX + name)} {where} "
            f"ORDER BY {', '.join(map(_q, order))}",
            params,
        )

    def _has_frame(self, name: str) -> bool:
        return name in self._frame_names()

    def _frame_names(self) -> list[str]:
        with self._translate("listing tables") as con:
            rows = _run(
                con,
                "SELECT table_name FROM duckdb_tables() WHERE schema_name = 'main' AND NOT temporary "
                "AND starts_with(table_name, $1)",
                [_FRAME_PREFIX],
            )
        return [r[0][len(_FRAME_PREFIX) :] for r in rows]

    def _frame_symbols(self, name: str) -> list[str] | None:
        if "symbol" not in self._table_columns(name):
            return None
        with self._translate(f"reading table {name!r}") as con:
            rows = _run(con, f"SELECT DISTINCT symbol FROM {_q(_FRAME_PREFIX + name)}")
        return [str(r[0]) for r in rows]


def _arrow_table(frame: pd.DataFrame) -> pa.Table:
    # pyarrow reads a tz-aware column through Series.values, which pandas deprecates (it drops the zone):
    # hand it those columns as UTC instants with the zone in the arrow type instead.
    aware = [c for c in frame.columns if isinstance(frame[c].dtype, pd.DatetimeTZDtype)]
    if not aware:
        return pa.Table.from_pandas(frame, preserve_index=False)
    table = pa.Table.from_pandas(frame.drop(columns=aware), preserve_index=False)
    for name in aware:
        col = frame[name]
        unit = col.dtype.unit
        naive = col.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy()
        arr = pa.array(naive, type=pa.timestamp(unit)).cast(pa.timestamp(unit, tz="UTC"))
        table = table.add_column(list(frame.columns).index(name), str(name), arr)
    return table
