"""A :class:`~alphaloom.data.storage.base.BarStore` on PostgreSQL, with TimescaleDB when it is installed.

Everything lives in one schema (``alphaloom`` by default), so several stores share a database without
colliding:

- ``bars``: keyed on (symbol, timeframe, ts). A TimescaleDB hypertable when the ``timescaledb`` extension
  is available; otherwise a table range-partitioned on ``ts`` with one partition per calendar year
  (``bars_y2020``, created on demand before a write needs it), a ``bars_default`` partition as a safety net,
  and a BRIN index on ``ts``. A ``revision`` column counts how many times a bar's values were corrected.
- ``bar_ranges``: per (symbol, timeframe) the bar count and the first and last ``ts``, maintained by every
  write in the same transaction, so range checks and summaries never scan ``bars``.
- ``instruments``, ``quarantine``, ``al_meta`` (schema version, partitioning) and one ``frame_<name>`` table
  per derived frame.

Writes use binary ``COPY ... FROM STDIN``, encoded with numpy rather than row by row. A row whose ``ts`` lies
outside the range the store already holds for its (symbol, timeframe) cannot collide with a stored key, so it
is copied straight into ``bars`` (the append path every live ingest takes). The other rows are copied into a
temporary staging table and merged with one ``INSERT ... ON CONFLICT ... DO UPDATE ... WHERE ... IS DISTINCT
FROM`` whose ``RETURNING`` clause counts inserted and updated rows. Should a concurrent writer make the append
path collide, the transaction is rolled back and the whole batch goes through the merge.

Every psycopg exception is translated to :class:`~alphaloom.core.exceptions.StorageError`; messages show the
DSN without its password.
"""

from __future__ import annotations

import os
import re
import stat
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
import pandas as pd
import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from pydantic import ValidationError, model_validator

from alphaloom.core.config import ComponentConfig
from alphaloom.core.exceptions import ConfigError, DataFormatError, StorageError
from alphaloom.data._frames import TS_DTYPE
from alphaloom.data.instruments import Instrument
from alphaloom.data.storage.base import BarStore, WriteResult

__all__ = [
    "PARTITIONING",
    "SCHEMA_VERSION",
    "Partitioning",
    "PostgresBarStore",
    "PostgresTLS",
    "connect_postgres",
    "redact_dsn",
]

#: Version of the table layout written into ``al_meta``; bumped when a migration is needed.
SCHEMA_VERSION = 1

#: How the bars table is partitioned: ``"auto"`` picks TimescaleDB when the extension is available.
Partitioning = Literal["auto", "timescaledb", "native"]
PARTITIONING: tuple[str, ...] = get_args(Partitioning)

_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_PARTITION_NAME = re.compile(r"^bars_y(\d{4})$")
_FRAME_PREFIX = "frame_"
_SEQ = "__al_seq"
_MAX_IDENTIFIER_BYTES = 63
_PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
_PG_EPOCH_US = 946_684_800_000_000  # 2000-01-01 in microseconds since 1970-01-01
_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)  # signature, flags, header-extension length
_COPY_TRAILER = b"\xff\xff"
_COPY_CHUNK_ROWS = 262_144  # rows encoded per buffer, so memory stays bounded on huge writes
_CONNECT_TIMEOUT_S = 10

_VALUES = ("open", "high", "low", "close", "volume")
_BAR_COLUMNS = ("symbol", "timeframe", "ts", *_VALUES, "source", "revision", "written_at")

# One row of `COPY (SELECT code, ts, open, high, low, close, volume) TO STDOUT (FORMAT BINARY)`.
_READ_ROW = np.dtype(
    [("count", ">i2"), ("len_code", ">i4"), ("code", ">i4"), ("len_ts", ">i4"), ("ts", ">i8")]
    + [item for col in _VALUES for item in ((f"len_{col}", ">i4"), (col, ">f8"))]
)

_SECRET_KEYS = ("password", "sslpassword")
_URL_PASSWORD = re.compile(r"(://[^:/@\s]*:)[^@\s]*@")
_KV_PASSWORD = re.compile(r"((?:ssl)?password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)

# PostgreSQL type of a derived-frame column by its storage kind, and the COPY type that sends it.
_FRAME_TYPES = {
    "bool": "boolean",
    "int16": "smallint",
    "int32": "integer",
    "int64": "bigint",
    "float32": "real",
    "float64": "double precision",
    "text": 'text COLLATE "C"',
    "timestamptz": "timestamptz",
    "interval": "interval",
    "bytea": "bytea",
    "date": "date",
}
_COPY_TYPES = {
    "bool": "bool",
    "int16": "int2",
    "int32": "int4",
    "int64": "int8",
    "float32": "float4",
    "float64": "float8",
    "text": "text",
    "timestamptz": "timestamptz",
    "interval": "interval",
    "bytea": "bytea",
    "date": "date",
}
_OID_INT = {21: "int16", 23: "int32", 20: "int64"}
_OID_FLOAT = {700: "float32", 701: "float64", 1700: "float64"}
_OID_BOOL, _OID_TEXT, _OID_VARCHAR, _OID_TIMESTAMPTZ, _OID_INTERVAL = 16, 25, 1043, 1184, 1186


def redact_dsn(dsn: str) -> str:
    """A PostgreSQL DSN as a ``postgresql://user@host:port/dbname`` URL without any password.

    Parameters
    ----------
    dsn
        A libpq connection string, as a URL (``postgresql://user:secret@host/db``) or as ``key=value`` pairs.

    Returns
    -------
    str
        The URL with user, host, port and database only, safe for logs and error messages;
        ``"<invalid DSN>"`` when ``dsn`` cannot be parsed.
    """
    try:
        params = conninfo_to_dict(dsn)
    except (psycopg.Error, TypeError):
        return "<invalid DSN>"
    user = params.get("user")
    host = params.get("host") or params.get("hostaddr") or "localhost"
    port = params.get("port") or "5432"
    dbname = params.get("dbname") or user or ""
    return f"postgresql://{f'{user}@' if user else ''}{host}:{port}/{dbname}"


def _scrub(text: str, dsn: str) -> str:
    """Remove the DSN's password (and anything shaped like one) from a message."""
    try:
        params = conninfo_to_dict(dsn)
    except (psycopg.Error, TypeError):
        params = {}
    for key in _SECRET_KEYS:
        secret = params.get(key)
        if secret:
            text = text.replace(str(secret), "***")
    text = _URL_PASSWORD.sub(r"\1***@", text)
    return _KV_PASSWORD.sub(r"\1***", text)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _pg_us(ts: datetime) -> int:
    """Microseconds since 2000-01-01 UTC, PostgreSQL's binary timestamp."""
    return (ts - _PG_EPOCH) // timedelta(microseconds=1)


def _pg_datetime(us: int) -> datetime:
    return _PG_EPOCH + timedelta(microseconds=int(us))


class PostgresTLS(ComponentConfig):
    """TLS settings of PostgreSQL connections (libpq's ``sslmode``, ``sslrootcert``, ``sslcert``, ``sslkey``).

    They override the same keys in the DSN. Files are checked when the settings are built, so a wrong path
    fails here with the path named rather than as a libpq error at connection time.

    Parameters
    ----------
    sslmode
        ``disable``, ``allow``, ``prefer`` (libpq's default: TLS when the server offers it), ``require``
        (TLS, no certificate check), ``verify-ca`` (the server certificate must chain to ``sslrootcert``) or
        ``verify-full`` (and its name must match the host). Use ``verify-full`` across untrusted networks.
    sslrootcert
        PEM file of the certificate authorities trusted for the server; required by ``verify-ca`` and
        ``verify-full``.
    sslcert, sslkey
        Client certificate and its private key (PEM), for servers that authenticate clients by certificate;
        both or neither. The key must not be readable by group or others (libpq refuses it).

    Raises
    ------
    ConfigError
        An unknown mode, a missing or unreadable file, a certificate without its key, a verifying mode
        without ``sslrootcert``, or a key file with loose permissions.
    """

    sslmode: Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"] = "prefer"
    sslrootcert: Path | None = None
    sslcert: Path | None = None
    sslkey: Path | None = None

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:  # built directly (not from a file): still one of our errors
            raise ConfigError(f"invalid PostgresTLS: {_validation_text(exc)}") from exc

    @model_validator(mode="after")
    def _files(self) -> PostgresTLS:
        for name in ("sslrootcert", "sslcert", "sslkey"):
            path = getattr(self, name)
            if path is not None:
                _readable_file(path, name)
        if (self.sslcert is None) != (self.sslkey is None):
            raise ValueError("sslcert and sslkey go together: give both for a client certificate, or neither")
        if self.sslmode in ("verify-ca", "verify-full") and self.sslrootcert is None:
            raise ValueError(
                f"sslmode={self.sslmode} checks the server certificate and needs sslrootcert, the PEM file "
                "of the certificate authority that signed it"
            )
        if self.sslkey is not None:
            st = Path(self.sslkey).stat()
            if st.st_uid == os.getuid() and stat.S_IMODE(st.st_mode) & 0o077:
                raise ValueError(
                    f"sslkey {self.sslkey} is readable by group or others (mode "
                    f"{stat.S_IMODE(st.st_mode):04o}); libpq refuses it: run chmod 600 {self.sslkey}"
                )
        if self.sslmode == "disable" and any(getattr(self, n) for n in ("sslrootcert", "sslcert", "sslkey")):
            raise ValueError(
                "certificate files were given with sslmode=disable; choose a TLS sslmode or drop them"
            )
        return self

    def conninfo(self) -> dict[str, str]:
        """The libpq connection parameters these settings set."""
        out = {"sslmode": self.sslmode}
        for name in ("sslrootcert", "sslcert", "sslkey"):
            value = getattr(self, name)
            if value is not None:
                out[name] = str(value)
        return out


def _validation_text(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg'].removeprefix('Value error, ')}"
        for e in exc.errors()
    )


def _readable_file(path: Path, what: str) -> None:
    if not Path(path).is_file():
        raise ValueError(f"{what} {path} is not a file; give the path of a PEM file")
    try:
        with open(path, "rb") as fh:
            fh.read(1)
    except OSError as exc:
        raise ValueError(f"{what} {path} cannot be read ({exc.strerror})") from exc


def connect_postgres(dsn: str, tls: PostgresTLS | None = None) -> psycopg.Connection[Any]:
    """Open an autocommit psycopg connection with the session time zone pinned to UTC.

    Parameters
    ----------
    dsn
        A libpq connection string.
    tls
        TLS settings; they override ``sslmode``/``sslrootcert``/``sslcert``/``sslkey`` in ``dsn``.

    Raises
    ------
    ConfigError
        ``tls`` is not a :class:`PostgresTLS`.
    StorageError
        The DSN cannot be parsed or the server cannot be reached (or refuses the TLS settings); the message
        never shows the password.
    """
    if tls is not None and not isinstance(tls, PostgresTLS):
        raise ConfigError(
            f"tls must be a PostgresTLS, got {type(tls).__name__}; build it with PostgresTLS(...)."
        )
    try:
        params = conninfo_to_dict(dsn)
    except psycopg.Error as exc:
        raise StorageError(
            f"the PostgreSQL DSN is not valid ({_scrub(_first_line(exc), dsn)}); expected "
            f"'postgresql://user@host:5432/dbname' or 'host=... dbname=...'."
        ) from exc
    extra: dict[str, Any] = {} if "connect_timeout" in params else {"connect_timeout": _CONNECT_TIMEOUT_S}
    if tls is not None:
        extra.update(tls.conninfo())
    try:
        con = psycopg.connect(dsn, autocommit=True, **extra)
    except psycopg.Error as exc:
        raise StorageError(
            f"cannot connect to PostgreSQL at {redact_dsn(dsn)}: {_scrub(_first_line(exc), dsn)}. Check that "
            f"the server is running and the DSN's host, port, user and database are right."
        ) from exc
    try:
        con.execute("SET TimeZone TO 'UTC'")
    except psycopg.Error as exc:
        con.close()
        raise StorageError(
            f"setting up the session on {redact_dsn(dsn)} failed: {_scrub(_first_line(exc), dsn)}"
        ) from exc
    return con


def _copy_rows(n: int, fields: Sequence[bytes | np.ndarray | None]) -> bytes:
    """Encode ``n`` rows for a binary COPY in one vectorised pass.

    Each field is the same bytes in every row (text), a numpy column of fixed-width numbers (sent big-endian),
    or ``None`` for NULL in every row, so every row has the same layout and numpy writes them all at once.
    """
    spec: list[tuple[str, Any]] = [("count", ">i2")]
    for i, field in enumerate(fields):
        spec.append((f"len{i}", ">i4"))
        if isinstance(field, bytes):
            if field:
                spec.append((f"val{i}", f"S{len(field)}"))
        elif field is not None:
            spec.append((f"val{i}", field.dtype.newbyteorder(">")))
    rows = np.empty(n, dtype=spec)
    rows["count"] = len(fields)
    for i, field in enumerate(fields):
        if field is None:
            rows[f"len{i}"] = -1
        elif isinstance(field, bytes):
            rows[f"len{i}"] = len(field)
            if field:
                rows[f"val{i}"] = field
        else:
            rows[f"len{i}"] = field.dtype.itemsize
            rows[f"val{i}"] = field
    return rows.tobytes()


class _Batch:
    """A checked, sorted bars frame as the arrays the COPY encoder needs."""

    def __init__(self, bars: pd.DataFrame) -> None:
        codes, uniques = pd.factorize(bars["symbol"], sort=False)
        self.symbols: list[str] = [str(s) for s in uniques]
        self.codes = codes.astype(np.int64)
        ts_ns = pd.DatetimeIndex(bars["ts"]).as_unit("ns").asi8
        self.ts_us = ts_ns // 1000 - _PG_EPOCH_US  # PostgreSQL counts microseconds from 2000-01-01
        self.values = {col: bars[col].to_numpy(dtype=np.float64) for col in _VALUES}
        self.no_volume = np.isnan(self.values["volume"])
        years = np.unique(pd.DatetimeIndex(bars["ts"]).year.to_numpy())
        self.years = {int(y) for y in years}

    def __len__(self) -> int:
        return len(self.codes)

    def encode(self, mask: np.ndarray, timeframe: bytes, source: bytes, written_us: int) -> Iterator[bytes]:
        """COPY rows of ``_BAR_COLUMNS`` for the rows selected by ``mask``, in chunks."""
        rows = np.flatnonzero(mask)
        if rows.size == 0:
            return
        # Rows sharing a symbol and a NULL-or-not volume have one fixed layout, so encode them together
        # (COPY does not care about row order): at most two groups per symbol.
        group = self.codes[rows] * 2 + self.no_volume[rows]
        order = np.argsort(group, kind="stable")
        rows, group = rows[order], group[order]
        bounds = np.flatnonzero(np.diff(group)) + 1
        for part in np.split(rows, bounds):
            symbol = self.symbols[int(self.codes[part[0]])].encode()
            null_volume = bool(self.no_volume[part[0]])
            for start in range(0, part.size, _COPY_CHUNK_ROWS):
                idx = part[start : start + _COPY_CHUNK_ROWS]
                yield _copy_rows(
                    idx.size,
                    [
                        symbol,
                        timeframe,
                        self.ts_us[idx],
                        self.values["open"][idx],
                        self.values["high"][idx],
                        self.values["low"][idx],
                        self.values["close"][idx],
                        None if null_volume else self.values["volume"][idx],
                        source,
                        np.zeros(idx.size, dtype=np.int32),
                        np.full(idx.size, written_us, dtype=np.int64),
                    ],
                )

    def new_key_mask(self, ranges: dict[str, tuple[int, int]]) -> np.ndarray:
        """True for rows outside the stored [first, last] range of their symbol: they cannot collide."""
        big = np.iinfo(np.int64).max
        first = np.array([ranges.get(s, (big, -big))[0] for s in self.symbols], dtype=np.int64)
        last = np.array([ranges.get(s, (big, -big))[1] for s in self.symbols], dtype=np.int64)
        return (self.ts_us < first[self.codes]) | (self.ts_us > last[self.codes])

    def per_symbol(self, mask: np.ndarray) -> dict[str, tuple[int, int, int]]:
        """Count, first and last ts (PostgreSQL microseconds) of the selected rows, per symbol."""
        out: dict[str, tuple[int, int, int]] = {}
        rows = np.flatnonzero(mask)
        if rows.size == 0:
            return out
        codes = self.codes[rows]
        bounds = np.flatnonzero(np.diff(codes)) + 1
        for part in np.split(rows, bounds):
            ts = self.ts_us[part]
            out[self.symbols[int(self.codes[part[0]])]] = (int(part.size), int(ts.min()), int(ts.max()))
        return out


class _FastPathConflict(Exception):
    """The append path met a stored key (a concurrent writer); redo the batch through the merge."""


class PostgresBarStore(BarStore):
    """Bars, instruments, quarantine and derived frames in a PostgreSQL schema.

    Parameters
    ----------
    dsn
        A libpq connection string (``"postgresql://user@127.0.0.1:5432/db"`` or ``"host=... dbname=..."``).
        Its password never appears in messages; :attr:`location` shows it without one.
    schema
        The schema holding the store's tables, created when missing: lowercase letters, digits and
        underscores. Several stores (tests, environments) can share one database under different schemas.
    partitioning
        ``"auto"`` (default) makes ``bars`` a TimescaleDB hypertable when the extension is available and a
        natively range-partitioned table otherwise; ``"timescaledb"`` or ``"native"`` insist on one. An
        existing schema keeps the layout it was created with.
    tls
        :class:`PostgresTLS` settings (``sslmode``, CA, client certificate); ``None`` keeps the DSN's.

    Raises
    ------
    ConfigError
        An invalid schema name or partitioning, or a partitioning that contradicts the existing schema.
    StorageError
        The server cannot be reached, refuses the login, or holds a newer schema version.

    Examples
    --------
    >>> from alphaloom.data import load_sample
    >>> with PostgresBarStore("postgresql://postgres@127.0.0.1:5432/test", schema="demo") as store:
    ...     store.write_bars(load_sample("us_equities_daily")).inserted  # doctest: +SKIP
    3578
    """

    def __init__(
        self,
        dsn: str,
        *,
        schema: str = "alphaloom",
        partitioning: Partitioning = "auto",
        tls: PostgresTLS | None = None,
    ) -> None:
        if not isinstance(dsn, str) or not dsn.strip():
            raise ConfigError(
                f"dsn must be a PostgreSQL connection string such as "
                f"'postgresql://user@127.0.0.1:5432/dbname', got {type(dsn).__name__}."
            )
        if not isinstance(schema, str) or not _SCHEMA_NAME.match(schema):
            raise ConfigError(
                f"schema {schema!r} is not valid; use 1-63 lowercase letters, digits and underscores, not "
                f"starting with a digit (e.g. 'alphaloom')."
            )
        if partitioning not in PARTITIONING:
            raise ConfigError(f"partitioning must be one of {', '.join(PARTITIONING)}, got {partitioning!r}.")
        self._dsn = dsn
        self._schema = schema
        self._location = f"{redact_dsn(dsn)} (schema {schema})"
        self._con: psycopg.Connection[Any] | None = None
        self._lock = threading.RLock()
        self._partition_years: set[int] = set()
        self._partitioning = ""
        self._con = connect_postgres(dsn, tls)
        try:
            self._partitioning = self._create_schema(partitioning)
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ lifecycle

    @property
    def location(self) -> str:
        return self._location

    @property
    def schema(self) -> str:
        """The schema holding the store's tables."""
        return self._schema

    @property
    def partitioning(self) -> str:
        """How ``bars`` is partitioned: ``"timescaledb"`` (a hypertable) or ``"native"`` (yearly ranges)."""
        return self._partitioning

    @property
    def closed(self) -> bool:
        return self._con is None

    def close(self) -> None:
        with self._lock:
            con, self._con = self._con, None
            if con is not None:
                con.close()

    @contextmanager
    def _translate(self, action: str) -> Iterator[psycopg.Connection[Any]]:
        # One operation at a time per connection, so threads sharing a store never interleave transactions.
        with self._lock:
            if self._con is None:
                raise StorageError(f"the store at {self.location} is closed; open a new PostgresBarStore.")
            try:
                yield self._con
            except psycopg.Error as exc:
                raise StorageError(
                    f"{action} failed on the store at {self.location}: {_scrub(_first_line(exc), self._dsn)}"
                ) from exc

    @contextmanager
    def _transaction(self, action: str) -> Iterator[psycopg.Cursor[Any]]:
        with self._translate(action) as con, con.transaction(), con.cursor() as cur:
            yield cur

    def _table(self, name: str) -> sql.Identifier:
        return sql.Identifier(self._schema, name)

    def _advisory_lock(self, cur: psycopg.Cursor[Any], purpose: str) -> None:
        """Serialise DDL of this schema across sessions until the transaction ends."""
        cur.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", [f"alphaloom:{self._schema}:{purpose}"]
        )

    # ------------------------------------------------------------------ schema

    def _create_schema(self, requested: str) -> str:
        with self._transaction("opening") as cur:
            self._advisory_lock(cur, "schema")
            cur.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self._schema)))
            cur.execute(
                sql.SQL(
                    'CREATE TABLE IF NOT EXISTS {} (key text COLLATE "C" PRIMARY KEY, value text NOT NULL)'
                ).format(self._table("al_meta"))
            )
            cur.execute(sql.SQL("SELECT key, value FROM {}").format(self._table("al_meta")))
            meta = dict(cur.fetchall())
            version = meta.get("schema_version")
            if version is not None and int(version) > SCHEMA_VERSION:
                raise StorageError(
                    f"the store at {self.location} has schema version {version}; this alphaloom reads "
                    f"version {SCHEMA_VERSION}. Upgrade alphaloom or use another schema."
                )
            mode = meta.get("partitioning")
            if mode is None:
                mode = self._create_bars(cur, requested)
            elif requested not in ("auto", mode):
                raise ConfigError(
                    f"the store at {self.location} was created with {mode} partitioning, not {requested}; "
                    f"open it with partitioning='auto' or use another schema."
                )
            self._create_tables(cur)
            cur.execute(
                sql.SQL(
                    "INSERT INTO {} (key, value) VALUES ('schema_version', %s), ('partitioning', %s) "
                    "ON CONFLICT (key) DO NOTHING"
                ).format(self._table("al_meta")),
                [str(SCHEMA_VERSION), mode],
            )
        return mode

    def _timescaledb_available(self, cur: psycopg.Cursor[Any]) -> bool:
        cur.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'")
        if cur.fetchone() is None:
            return False
        # Creating the extension needs it in shared_preload_libraries and the right privileges; try it
        # inside a savepoint so a refusal leaves the transaction usable.
        try:
            with cur.connection.transaction():
                cur.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        except psycopg.Error:
            return False
        return True

    def _create_bars(self, cur: psycopg.Cursor[Any], requested: str) -> str:
        use_timescale = requested != "native" and self._timescaledb_available(cur)
        if requested == "timescaledb" and not use_timescale:
            raise ConfigError(
                f"partitioning='timescaledb' was asked for, but the server at {redact_dsn(self._dsn)} cannot "
                f"create the timescaledb extension; install TimescaleDB or use partitioning='auto'."
            )
        columns = sql.SQL(
            """
            symbol text COLLATE "C" NOT NULL,
            timeframe text COLLATE "C" NOT NULL,
            ts timestamptz NOT NULL,
            open double precision NOT NULL,
            high double precision NOT NULL,
            low double precision NOT NULL,
            close double precision NOT NULL,
            volume double precision,
            source text NOT NULL DEFAULT '',
            revision integer NOT NULL DEFAULT 0,
            written_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (symbol, timeframe, ts)
            """
        )
        bars = self._table("bars")
        if use_timescale:
            cur.execute(sql.SQL("CREATE TABLE {} ({})").format(bars, columns))
            cur.execute(
                "SELECT create_hypertable(%s::regclass, 'ts', chunk_time_interval => INTERVAL '30 days', "
                "if_not_exists => TRUE)",
                [bars.as_string(cur)],
            )
            return "timescaledb"
        cur.execute(sql.SQL("CREATE TABLE {} ({}) PARTITION BY RANGE (ts)").format(bars, columns))
        cur.execute(
            sql.SQL("CREATE TABLE {} PARTITION OF {} DEFAULT").format(self._table("bars_default"), bars)
        )
        cur.execute(sql.SQL("CREATE INDEX bars_ts_brin ON {} USING brin (ts)").format(bars))
        return "native"

    def _create_tables(self, cur: psycopg.Cursor[Any]) -> None:
        statements = (
            """
            CREATE TABLE IF NOT EXISTS {bar_ranges} (
                symbol text COLLATE "C" NOT NULL,
                timeframe text COLLATE "C" NOT NULL,
                n_bars bigint NOT NULL,
                first_ts timestamptz NOT NULL,
                last_ts timestamptz NOT NULL,
                PRIMARY KEY (symbol, timeframe)
            )
            """,
            """
            CREATE TABLE IF NOT EXISTS {instruments} (
                symbol text COLLATE "C" PRIMARY KEY,
                asset_class text NOT NULL,
                calendar text NOT NULL,
                quote_currency text NOT NULL,
                description text NOT NULL
            )
            """,
            """
            CREATE TABLE IF NOT EXISTS {quarantine} (
                symbol text COLLATE "C" NOT NULL,
                timeframe text COLLATE "C" NOT NULL,
                ts timestamptz NOT NULL,
                open double precision,
                high double precision,
                low double precision,
                close double precision,
                volume double precision,
                "check" text COLLATE "C" NOT NULL,
                reason text NOT NULL,
                quarantined_at timestamptz NOT NULL DEFAULT now(),
                PRIMARY KEY (symbol, timeframe, ts, "check")
            )
            """,
        )
        names = {n: self._table(n) for n in ("bar_ranges", "instruments", "quarantine")}
        for statement in statements:
            cur.execute(sql.SQL(statement).format(**names))

    # ------------------------------------------------------------------ partitions

    def _ensure_partitions(self, years: set[int]) -> None:
        """Create the yearly partitions ``years`` need, each in its own short transaction."""
        if self._partitioning != "native" or years <= self._partition_years:
            return
        with self._transaction("creating partitions") as cur:
            self._advisory_lock(cur, "partitions")
            cur.execute(
                "SELECT c.relname FROM pg_inherits AS i JOIN pg_class AS c ON c.oid = i.inhrelid "
                "WHERE i.inhparent = %s::regclass",
                [self._table("bars").as_string(cur)],
            )
            existing = {int(m.group(1)) for (name,) in cur.fetchall() if (m := _PARTITION_NAME.match(name))}
            for year in sorted(years - existing):
                self._create_partition(cur, year)
        self._partition_years |= existing | years

    def _create_partition(self, cur: psycopg.Cursor[Any], year: int) -> None:
        bars, part = self._table("bars"), self._table(f"bars_y{year:04d}")
        low = sql.Literal(datetime(year, 1, 1, tzinfo=UTC))
        high = sql.Literal(datetime(year + 1, 1, 1, tzinfo=UTC)) if year < 9999 else sql.SQL("MAXVALUE")
        cols = sql.SQL(", ").join(map(sql.Identifier, _BAR_COLUMNS))
        cur.execute(sql.SQL("CREATE TABLE {} (LIKE {} INCLUDING DEFAULTS)").format(part, bars))
        # Rows of this year that reached the default partition (written before it existed, or by another
        # client) move into the new partition; attaching would fail while they sit in the default one.
        cur.execute(
            sql.SQL(
                "WITH moved AS (DELETE FROM {default} WHERE ts >= {low} AND ts < {high} RETURNING {cols}) "
                "INSERT INTO {part} ({cols}) SELECT {cols} FROM moved"
            ).format(default=self._table("bars_default"), low=low, high=high, cols=cols, part=part)
        )
        cur.execute(
            sql.SQL("ALTER TABLE {} ATTACH PARTITION {} FOR VALUES FROM ({}) TO ({})").format(
                bars, part, low, high
            )
        )

    # ------------------------------------------------------------------ bars

    def _write_bars(self, bars: pd.DataFrame, timeframe: str, source: str) -> WriteResult:
        batch = _Batch(bars)
        self._ensure_partitions(batch.years)
        try:
            return self._merge(batch, timeframe, source, append_path=True)
        except _FastPathConflict:
            return self._merge(batch, timeframe, source, append_path=False)

    def _merge(self, batch: _Batch, timeframe: str, source: str, *, append_path: bool) -> WriteResult:
        with self._transaction("writing bars") as cur:
            cur.execute("SELECT now()")
            written_us = _pg_us(cur.fetchone()[0])

            def copy_rows(target: sql.Composable, mask: np.ndarray) -> None:
                cols = sql.SQL(", ").join(map(sql.Identifier, _BAR_COLUMNS))
                with cur.copy(
                    sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(target, cols)
                ) as copy:
                    copy.write(_COPY_HEADER)
                    for chunk in batch.encode(mask, timeframe.encode(), source.encode(), written_us):
                        copy.write(chunk)
                    copy.write(_COPY_TRAILER)

            fresh = np.zeros(len(batch), dtype=bool)
            if append_path:
                cur.execute(
                    sql.SQL(
                        "SELECT symbol, first_ts, last_ts FROM {} WHERE timeframe = %s AND symbol = ANY(%s)"
                    ).format(self._table("bar_ranges")),
                    [timeframe, batch.symbols],
                )
                fresh = batch.new_key_mask({s: (_pg_us(f), _pg_us(la)) for s, f, la in cur.fetchall()})
            new_ranges = batch.per_symbol(fresh)
            if fresh.any():
                try:
                    copy_rows(self._table("bars"), fresh)
                except psycopg.errors.UniqueViolation as exc:
                    raise _FastPathConflict from exc
            inserted, updated = int(fresh.sum()), 0
            if not fresh.all():
                cur.execute(
                    sql.SQL("CREATE TEMP TABLE _al_stage (LIKE {} INCLUDING DEFAULTS) ON COMMIT DROP").format(
                        self._table("bars")
                    )
                )
                copy_rows(sql.Identifier("_al_stage"), ~fresh)
                cur.execute(self._merge_sql())
                for symbol, n_new, n_changed, first, last in cur.fetchall():
                    inserted += n_new
                    updated += n_changed
                    if n_new:
                        n0, f0, l0 = new_ranges.get(symbol, (0, _pg_us(first), _pg_us(last)))
                        new_ranges[symbol] = (n0 + n_new, min(f0, _pg_us(first)), max(l0, _pg_us(last)))
            if new_ranges:
                self._extend_ranges(cur, timeframe, new_ranges)
        return WriteResult(inserted, updated, len(batch) - inserted - updated)

    def _merge_sql(self) -> sql.Composed:
        cols = sql.SQL(", ").join(map(sql.Identifier, _BAR_COLUMNS))
        changed = sql.SQL(", ").join(sql.SQL("b.{}").format(sql.Identifier(c)) for c in _VALUES)
        incoming = sql.SQL(", ").join(sql.SQL("EXCLUDED.{}").format(sql.Identifier(c)) for c in _VALUES)
        return sql.SQL(
            """
            WITH merged AS (
                INSERT INTO {bars} AS b ({cols})
                SELECT {cols} FROM _al_stage
                ON CONFLICT (symbol, timeframe, ts) DO UPDATE
                SET open = EXCLUDED.open, high = EXCLUDED.high, low = EXCLUDED.low, close = EXCLUDED.close,
                    volume = EXCLUDED.volume, source = EXCLUDED.source, written_at = EXCLUDED.written_at,
                    revision = b.revision + 1
                WHERE ({changed}) IS DISTINCT FROM ({incoming})
                RETURNING b.symbol, b.ts, b.revision = 0 AS fresh
            )
            SELECT symbol, count(*) FILTER (WHERE fresh), count(*) FILTER (WHERE NOT fresh),
                   min(ts) FILTER (WHERE fresh), max(ts) FILTER (WHERE fresh)
            FROM merged GROUP BY symbol ORDER BY symbol
            """
        ).format(bars=self._table("bars"), cols=cols, changed=changed, incoming=incoming)

    def _extend_ranges(
        self, cur: psycopg.Cursor[Any], timeframe: str, new: dict[str, tuple[int, int, int]]
    ) -> None:
        symbols = sorted(new)  # one lock order for every writer
        cur.execute(
            sql.SQL(
                """
                INSERT INTO {ranges} AS r (symbol, timeframe, n_bars, first_ts, last_ts)
                SELECT u.symbol, %s, u.n, u.first_ts, u.last_ts
                FROM unnest(%s::text[], %s::bigint[], %s::timestamptz[], %s::timestamptz[])
                    AS u(symbol, n, first_ts, last_ts)
                ON CONFLICT (symbol, timeframe) DO UPDATE
                SET n_bars = r.n_bars + EXCLUDED.n_bars,
                    first_ts = least(r.first_ts, EXCLUDED.first_ts),
                    last_ts = greatest(r.last_ts, EXCLUDED.last_ts)
                """
            ).format(ranges=self._table("bar_ranges")),
            [
                timeframe,
                symbols,
                [new[s][0] for s in symbols],
                [_pg_datetime(new[s][1]) for s in symbols],
                [_pg_datetime(new[s][2]) for s in symbols],
            ],
        )

    def _read_bars(
        self, symbols: Sequence[str], start: datetime | None, end: datetime | None, timeframe: str
    ) -> pd.DataFrame:
        where = [sql.SQL("b.timeframe = {}").format(sql.Literal(timeframe))]
        if start is not None:
            where.append(sql.SQL("b.ts >= {}").format(sql.Literal(start)))
        if end is not None:
            where.append(sql.SQL("b.ts < {}").format(sql.Literal(end)))
        query = sql.SQL(
            """
            COPY (
                SELECT s.code::integer, b.ts, b.open, b.high, b.low, b.close,
                       coalesce(b.volume, 'NaN'::double precision)
                FROM {bars} AS b
                JOIN unnest({symbols}::text[]) WITH ORDINALITY AS s(symbol, code) ON b.symbol = s.symbol
                WHERE {where}
            ) TO STDOUT (FORMAT BINARY)
            """
        ).format(
            bars=self._table("bars"), symbols=sql.Literal(list(symbols)), where=sql.SQL(" AND ").join(where)
        )
        data = bytearray()
        with self._translate("reading bars") as con, con.cursor() as cur, cur.copy(query) as copy:
            while chunk := copy.read():
                data += chunk
        return _decode_bars(data, symbols)

    def _bar_ranges(self, timeframe: str | None) -> pd.DataFrame:
        where, params = "n_bars > 0", []
        if timeframe is not None:
            where, params = "n_bars > 0 AND timeframe = %s", [timeframe]
        with self._translate("summarising bars") as con, con.cursor() as cur:
            cur.execute(
                sql.SQL(
                    "SELECT symbol, timeframe, n_bars, first_ts, last_ts FROM {} WHERE {} "
                    "ORDER BY symbol, timeframe"
                ).format(self._table("bar_ranges"), sql.SQL(where)),
                params,
            )
            rows = cur.fetchall()
        cols = list(zip(*rows, strict=True)) if rows else [[] for _ in range(5)]
        return pd.DataFrame(
            {
                "symbol": pd.Series(cols[0], dtype="str"),
                "timeframe": pd.Series(cols[1], dtype="str"),
                "n_bars": pd.Series(cols[2], dtype="int64"),
                "first_ts": pd.to_datetime(pd.Series(cols[3], dtype=object), utc=True).astype(TS_DTYPE),
                "last_ts": pd.to_datetime(pd.Series(cols[4], dtype=object), utc=True).astype(TS_DTYPE),
            }
        )

    # ------------------------------------------------------------------ instruments

    def _write_instruments(self, instruments: Sequence[Instrument]) -> None:
        rows = [
            (i.symbol, i.asset_class.value, i.calendar, i.quote_currency, i.description) for i in instruments
        ]
        with self._transaction("writing instruments") as cur:
            cur.executemany(
                sql.SQL(
                    "INSERT INTO {} (symbol, asset_class, calendar, quote_currency, description) "
                    "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (symbol) DO UPDATE SET "
                    "asset_class = EXCLUDED.asset_class, calendar = EXCLUDED.calendar, "
                    "quote_currency = EXCLUDED.quote_currency, description = EXCLUDED.description"
                ).format(self._table("instruments")),
                rows,
            )

    def _read_instruments(self) -> dict[str, Instrument]:
        with self._translate("reading instruments") as con, con.cursor() as cur:
            cur.execute(
                sql.SQL("SELECT symbol, asset_class, calendar, quote_currency, description FROM {}").format(
                    self._table("instruments")
                )
            )
            rows = cur.fetchall()
        return {r[0]: Instrument(*r) for r in rows}

    # ------------------------------------------------------------------ quarantine

    def _write_quarantine(self, rows: pd.DataFrame) -> int:
        columns = ("symbol", "timeframe", "ts", *_VALUES, "check", "reason")
        values = [rows["symbol"].tolist(), rows["timeframe"].tolist(), list(rows["ts"])]
        for col in _VALUES:
            arr = rows[col].to_numpy(dtype=np.float64)
            values.append(np.where(np.isnan(arr), None, arr).tolist())
        values += [rows["check"].tolist(), rows["reason"].tolist()]
        cols = sql.SQL(", ").join(map(sql.Identifier, columns))
        with self._transaction("quarantining rows") as cur:
            cur.execute(
                sql.SQL(
                    "CREATE TEMP TABLE _al_quarantine ON COMMIT DROP AS SELECT {} FROM {} LIMIT 0"
                ).format(cols, self._table("quarantine"))
            )
            with cur.copy(
                sql.SQL("COPY _al_quarantine ({}) FROM STDIN (FORMAT BINARY)").format(cols)
            ) as copy:
                copy.set_types(["text", "text", "timestamptz", *["float8"] * 5, "text", "text"])
                for row in zip(*values, strict=True):
                    copy.write_row(row)
            cur.execute(
                sql.SQL(
                    "INSERT INTO {} ({cols}) SELECT {cols} FROM _al_quarantine ON CONFLICT DO NOTHING"
                ).format(self._table("quarantine"), cols=cols)
            )
            return max(cur.rowcount, 0)

    def _quarantine_filter(
        self, symbols: Sequence[str] | None, timeframe: str | None
    ) -> tuple[sql.SQL, list]:
        where, params = [], []
        if symbols is not None:
            where.append("symbol = ANY(%s)")
            params.append(list(symbols))
        if timeframe is not None:
            where.append("timeframe = %s")
            params.append(timeframe)
        return sql.SQL(f"WHERE {' AND '.join(where)}" if where else ""), params

    def _read_quarantine(self, symbols: Sequence[str] | None, timeframe: str | None) -> pd.DataFrame:
        where, params = self._quarantine_filter(symbols, timeframe)
        columns = ["symbol", "timeframe", "ts", *_VALUES, "check", "reason"]
        with self._translate("reading the quarantine") as con, con.cursor() as cur:
            cur.execute(
                sql.SQL(
                    'SELECT symbol, timeframe, ts, open, high, low, close, volume, "check", reason '
                    'FROM {} {} ORDER BY symbol, timeframe, ts, "check"'
                ).format(self._table("quarantine"), where),
                params,
            )
            rows = cur.fetchall()
        if not rows:
            return pd.DataFrame(columns=columns)
        frame = pd.DataFrame(rows, columns=columns)
        for col in _VALUES:
            frame[col] = frame[col].astype("float64")
        return frame

    def _clear_quarantine(self, symbols: Sequence[str] | None, timeframe: str | None) -> int:
        where, params = self._quarantine_filter(symbols, timeframe)
        with self._transaction("clearing the quarantine") as cur:
            cur.execute(sql.SQL("DELETE FROM {} {}").format(self._table("quarantine"), where), params)
            return max(cur.rowcount, 0)

    # ------------------------------------------------------------------ derived frames

    def _frame_table(self, name: str) -> sql.Identifier:
        return self._table(_FRAME_PREFIX + name)

    def _table_columns(self, name: str) -> list[tuple[str, str]]:
        """(column, PostgreSQL type) of a derived table, in table order."""
        with self._translate("describing a table") as con, con.cursor() as cur:
            cur.execute(
                "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute AS a "
                "WHERE a.attrelid = to_regclass(%s) AND a.attnum > 0 AND NOT a.attisdropped "
                "ORDER BY a.attnum",
                [self._frame_table(name).as_string(con)],
            )
            return [(str(c), str(t)) for c, t in cur.fetchall()]

    def _write_frame(self, name: str, frame: pd.DataFrame, partial: bool) -> None:
        if len((_FRAME_PREFIX + name).encode()) > _MAX_IDENTIFIER_BYTES:
            raise ConfigError(
                f"frame name {name!r} is too long for PostgreSQL: table names hold 63 bytes and the store "
                f"adds {_FRAME_PREFIX!r}; use at most {_MAX_IDENTIFIER_BYTES - len(_FRAME_PREFIX)} "
                f"characters."
            )
        long = [c for c in frame.columns if len(c.encode()) > _MAX_IDENTIFIER_BYTES or "\x00" in c]
        if long:
            raise DataFormatError(
                f"write_frame({name!r}): column name {long[0]!r} is too long for PostgreSQL (63 bytes at "
                f"most) or holds a NUL character; rename it."
            )
        kinds = {col: _frame_kind(frame[col], name, col) for col in frame.columns}
        table = self._frame_table(name)
        seq = sql.Identifier(_SEQ)
        if partial:
            stored = [(c, t) for c, t in self._table_columns(name) if c != _SEQ]
            existing = [c for c, _ in stored]
            if sorted(c.lower() for c in existing) != sorted(c.lower() for c in frame.columns):
                raise DataFormatError(
                    f"write_frame({name!r}): the frame's columns {list(frame.columns)} differ from the "
                    f"stored table's {existing}; pass replace_symbols=False to replace the whole table."
                )
            by_lower = {c.lower(): c for c in existing}
            frame = frame.rename(columns={c: by_lower[c.lower()] for c in frame.columns})
            kinds = {by_lower[c.lower()]: k for c, k in kinds.items()}
            stored_type = dict(stored)
        with self._transaction(f"writing table {name!r}") as cur:
            if partial:
                cur.execute(sql.SQL("LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE").format(table))
                cur.execute(sql.SQL("SELECT coalesce(max({}) + 1, 0) FROM {}").format(seq, table))
                start = int(cur.fetchone()[0])
                target = sql.Identifier("_al_frame")
                defs = [
                    sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(_FRAME_TYPES[kinds[c]])) for c in frame
                ]
                cur.execute(
                    sql.SQL("CREATE TEMP TABLE _al_frame ({}, {} bigint NOT NULL) ON COMMIT DROP").format(
                        sql.SQL(", ").join(defs), seq
                    )
                )
            else:
                start = 0
                target = table
                defs = [
                    sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(_FRAME_TYPES[kinds[c]])) for c in frame
                ]
                cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(table))
                cur.execute(
                    sql.SQL("CREATE TABLE {} ({}, {} bigint NOT NULL)").format(
                        table, sql.SQL(", ").join(defs), seq
                    )
                )
            cols = sql.SQL(", ").join([*map(sql.Identifier, frame.columns), seq])
            columns = [_frame_values(frame[c], kinds[c]) for c in frame.columns]
            columns.append(range(start, start + len(frame)))
            with cur.copy(sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(target, cols)) as copy:
                copy.set_types([*(_COPY_TYPES[kinds[c]] for c in frame.columns), "int8"])
                for row in zip(*columns, strict=True):
                    copy.write_row(row)
            if partial:
                symbol = sql.Identifier(by_lower["symbol"])
                cur.execute(
                    sql.SQL("DELETE FROM {} WHERE {} IN (SELECT DISTINCT {} FROM _al_frame)").format(
                        table, symbol, symbol
                    )
                )
                casts = sql.SQL(", ").join(
                    [
                        *(
                            sql.SQL("CAST({} AS {})").format(sql.Identifier(c), sql.SQL(stored_type[c]))
                            for c in frame.columns
                        ),
                        seq,
                    ]
                )
                cur.execute(
                    sql.SQL("INSERT INTO {} ({}) SELECT {} FROM _al_frame").format(table, cols, casts)
                )

    def _read_frame(self, name: str, symbols: Sequence[str] | None) -> pd.DataFrame:
        columns = [c for c, _ in self._table_columns(name)]
        data = [c for c in columns if c != _SEQ]
        order = [c for c in ("symbol", "ts") if c in columns] + [_SEQ]
        where, params = sql.SQL(""), []
        if symbols is not None:
            where, params = sql.SQL("WHERE symbol = ANY(%s)"), [list(symbols)]
        query = sql.SQL("SELECT {} FROM {} {} ORDER BY {}").format(
            sql.SQL(", ").join(map(sql.Identifier, data)),
            self._frame_table(name),
            where,
            sql.SQL(", ").join(map(sql.Identifier, order)),
        )
        with self._translate(f"reading table {name!r}") as con, con.cursor(binary=True) as cur:
            cur.execute(query, params)
            rows = cur.fetchall()
            oids = [d.type_code for d in cur.description or ()]
        values = list(zip(*rows, strict=True)) if rows else [() for _ in data]
        return pd.DataFrame(
            {col: _frame_column(vals, oid) for col, vals, oid in zip(data, values, oids, strict=True)},
            columns=data,
        )

    def _has_frame(self, name: str) -> bool:
        return name in self._frame_names()

    def _frame_names(self) -> list[str]:
        with self._translate("listing tables") as con, con.cursor() as cur:
            cur.execute(
                "SELECT c.relname FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace "
                "WHERE n.nspname = %s AND c.relkind IN ('r', 'p') AND left(c.relname, %s) = %s",
                [self._schema, len(_FRAME_PREFIX), _FRAME_PREFIX],
            )
            return [r[0][len(_FRAME_PREFIX) :] for r in cur.fetchall()]

    def _frame_symbols(self, name: str) -> list[str] | None:
        if "symbol" not in [c for c, _ in self._table_columns(name)]:
            return None
        with self._translate(f"reading table {name!r}") as con, con.cursor() as cur:
            cur.execute(sql.SQL("SELECT DISTINCT symbol FROM {}").format(self._frame_table(name)))
            return [str(r[0]) for r in cur.fetchall()]


def _decode_bars(data: bytes | bytearray, symbols: Sequence[str]) -> pd.DataFrame:
    """Parse a binary COPY of (code, ts, open, high, low, close, volume) rows into a bars frame."""
    if len(data) < len(_COPY_HEADER) + len(_COPY_TRAILER) or not data.startswith(_COPY_HEADER[:11]):
        raise StorageError("reading bars returned a malformed COPY stream; the server or driver misbehaved.")
    extension = int.from_bytes(data[15:19], "big")
    body = memoryview(data)[19 + extension : len(data) - len(_COPY_TRAILER)]
    rows = np.frombuffer(body, dtype=_READ_ROW)
    if rows.size and not (rows["count"] == 7).all():
        raise StorageError(
            "reading bars returned rows of an unexpected shape; the server or driver misbehaved."
        )
    names = np.asarray(list(symbols), dtype=object)
    codes = rows["code"].astype(np.int64) - 1
    ts_ns = (rows["ts"].astype(np.int64) + _PG_EPOCH_US) * 1000
    # Sorting here rather than in SQL saves the server a sort; str order is the "C" collation's byte order.
    rank = np.argsort(np.argsort(names))
    order = np.lexsort((ts_ns, rank[codes]))
    frame = pd.DataFrame(
        {
            "symbol": pd.Series(names[codes[order]], dtype="str"),
            "ts": pd.to_datetime(ts_ns[order], unit="ns", utc=True),
        }
    )
    for col in _VALUES:
        frame[col] = rows[col][order].astype(np.float64)
    return frame


def _frame_kind(series: pd.Series, name: str, column: str) -> str:
    """The storage kind (a key of ``_FRAME_TYPES``) of a derived-frame column."""
    dtype = series.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        return _frame_kind(series.astype(dtype.categories.dtype), name, column)
    if isinstance(dtype, pd.DatetimeTZDtype):
        return "timestamptz"
    if pd.api.types.is_bool_dtype(dtype):
        return "bool"
    if pd.api.types.is_integer_dtype(dtype):
        size = np.dtype(dtype.numpy_dtype if hasattr(dtype, "numpy_dtype") else dtype)
        if size.kind == "u":
            return {1: "int16", 2: "int32", 4: "int64"}.get(size.itemsize, "int64")
        return {1: "int16", 2: "int16", 4: "int32"}.get(size.itemsize, "int64")
    if pd.api.types.is_float_dtype(dtype):
        size = np.dtype(dtype.numpy_dtype if hasattr(dtype, "numpy_dtype") else dtype).itemsize
        return "float64" if size > 4 else "float32"
    if pd.api.types.is_timedelta64_dtype(dtype):
        return "interval"
    if pd.api.types.is_string_dtype(dtype) or pd.api.types.is_object_dtype(dtype):
        inferred = pd.api.types.infer_dtype(series, skipna=True)
        kind = {
            "string": "text",
            "empty": "text",
            "boolean": "bool",
            "integer": "int64",
            "floating": "float64",
            "mixed-integer-float": "float64",
            "bytes": "bytea",
            "date": "date",
            "datetime": "timestamptz",
        }.get(inferred)
        if kind == "timestamptz" and any(
            getattr(v, "tzinfo", None) is None for v in series.dropna().iloc[:1000]
        ):
            kind = None
        if kind is not None:
            return kind
        raise DataFormatError(
            f"write_frame({name!r}): column {column!r} holds Python objects of mixed or unsupported types "
            f"(pandas infers {inferred!r}); convert it to one type (numbers, strings, booleans or "
            f"timezone-aware timestamps) first."
        )
    raise DataFormatError(
        f"write_frame({name!r}): column {column!r} has dtype {dtype}, which the PostgreSQL store cannot "
        f"hold; convert it to numbers, strings, booleans or timezone-aware timestamps."
    )


def _frame_values(series: pd.Series, kind: str) -> list[Any]:
    """A column as Python values for ``write_row``, missing values as None."""
    if isinstance(series.dtype, pd.CategoricalDtype):
        series = series.astype(series.dtype.categories.dtype)
    missing = series.isna().to_numpy()
    if kind in ("float64", "float32"):
        values = series.to_numpy(dtype=np.float64, na_value=np.nan)
        return np.where(np.isnan(values), None, values).tolist()
    if kind in ("int16", "int32", "int64", "bool"):
        values = series.to_numpy(dtype=object, na_value=None)
        py = bool if kind == "bool" else int
        return [None if m else py(v) for v, m in zip(values, missing, strict=True)]
    if kind == "timestamptz":
        stamps = pd.to_datetime(series, utc=True)
        return [None if m else ts.to_pydatetime() for ts, m in zip(stamps, missing, strict=True)]
    if kind == "interval":
        deltas = pd.to_timedelta(series)
        return [None if m else td.to_pytimedelta() for td, m in zip(deltas, missing, strict=True)]
    values = series.to_numpy(dtype=object)
    return [None if m else v for v, m in zip(values, missing, strict=True)]


def _frame_column(values: Sequence[Any], oid: int) -> pd.Series | np.ndarray:
    """A fetched column as the pandas dtype its PostgreSQL type reads back as (what DuckDB gives too)."""
    has_null = any(v is None for v in values)
    if oid in _OID_FLOAT:
        return np.array(values, dtype=_OID_FLOAT[oid]) if values else np.array([], dtype=_OID_FLOAT[oid])
    if oid in _OID_INT:
        return np.array(values, dtype=np.float64 if has_null else _OID_INT[oid])
    if oid == _OID_BOOL:
        return np.array(values, dtype=object if has_null else bool)
    if oid in (_OID_TEXT, _OID_VARCHAR):
        return pd.Series(list(values), dtype="str")
    if oid == _OID_TIMESTAMPTZ:
        return pd.Series(pd.to_datetime(pd.Series(list(values), dtype=object), utc=True)).astype(TS_DTYPE)
    if oid == _OID_INTERVAL:
        return pd.Series(pd.to_timedelta(pd.Series(list(values), dtype=object)))
    return pd.Series(list(values), dtype=object)
