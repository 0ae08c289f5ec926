"""Persisted results: features, predictions, backtests and live performance, kept so past work can be studied
and compared without recomputing it.

One interface, :class:`ResultsStore`, over the two time-series databases: :class:`DuckDBResultsStore` (the
embedded default; the workspace's ``alphaloom.duckdb``, next to the bars) and :class:`PostgresResultsStore`
(production; one schema, which may be the bar store's). The base class owns every query and check; a backend
supplies a connection, transactions, bulk inserts and its type names, so the two cannot drift apart.

Every result is a **run** (one row of ``results_runs``) with details in the tables below, all keyed by
``run_id`` and written in the same transaction as the run, so a run is there whole or not at all::

    results_schema_version  version, description, applied_at
    results_runs            run_id (key), kind, name, created_at, config_hash, data_fingerprint,
                            code_version, vector_names (JSON list), summary (JSON), params (JSON)
    results_stats           run_id, symbol, label, stat, value     -- backtest statistics, forecast metrics
    results_equity          run_id, symbol, label, ts, equity, returns, weight
    results_trades          run_id, symbol, label, seq, entry_ts, exit_ts, side, units, entry_price,
                            exit_price, bars_held, pnl, trade_return, is_open
    results_features        run_id, symbol, ts, vector (array of doubles, names in ``vector_names``)
    results_predictions     run_id, symbol, ts, outputs (array of doubles, names in ``vector_names``)

``label`` is the strategy of a backtest (``ppo``, ``buy_and_hold``), the segment of a forecast metric
(``test``) or empty; ``symbol`` is empty for portfolio-wide rows. Vectors are stored as arrays with their
names once per run, because feature sets and model outputs change width between configs and a wide table per
config would multiply tables.

The schema is built by the numbered :data:`RESULTS_MIGRATIONS`, recorded in ``results_schema_version``;
:meth:`ResultsStore.migrate` applies the missing ones in one transaction and refuses a newer schema.
"""

from __future__ import annotations

import json
import math
import re
import secrets
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, Self

import duckdb
import numpy as np
import pandas as pd
import psycopg
import pyarrow as pa

from alphaloom.core.exceptions import (
    ConfigError,
    DataFormatError,
    DataNotFoundError,
    StorageError,
    did_you_mean,
)
from alphaloom.core.timeutil import ensure_utc
from alphaloom.data._frames import TS_DTYPE
from alphaloom.data.storage.postgres_store import (
    _SCHEMA_NAME,
    PostgresTLS,
    _first_line,
    _scrub,
    connect_postgres,
    redact_dsn,
)
from alphaloom.data.storage.relational import Migration, canonical_json

__all__ = [
    "EQUITY_COLUMNS",
    "RESULTS_MIGRATIONS",
    "STATS_COLUMNS",
    "TRADE_COLUMNS",
    "DuckDBResultsStore",
    "PostgresResultsStore",
    "ResultKind",
    "ResultRun",
    "ResultsStore",
    "make_run_id",
    "parse_kind",
]

_MEMORY = ":memory:"
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")


class ResultKind(StrEnum):
    """What a result run holds."""

    FEATURES = "features"
    PREDICTIONS = "predictions"
    BACKTEST = "backtest"
    LIVE = "live"


_ID_PREFIX = {
    ResultKind.FEATURES: "feat",
    ResultKind.PREDICTIONS: "pred",
    ResultKind.BACKTEST: "bt",
    ResultKind.LIVE: "live",
}

#: Columns of the ``stats`` frame :meth:`ResultsStore.write` takes and :meth:`ResultsStore.stats` returns.
STATS_COLUMNS: tuple[str, ...] = ("symbol", "label", "stat", "value")
#: Columns of the ``equity`` frame.
EQUITY_COLUMNS: tuple[str, ...] = ("symbol", "label", "ts", "equity", "returns", "weight")
#: Columns of the ``trades`` frame (``exit_ts`` NaT and ``is_open`` true for a trade still open).
TRADE_COLUMNS: tuple[str, ...] = (
    "symbol",
    "label",
    "entry_ts",
    "exit_ts",
    "side",
    "units",
    "entry_price",
    "exit_price",
    "bars_held",
    "pnl",
    "trade_return",
    "is_open",
)

# Storage kind of every detail column, in table order: the one description bulk inserts and reads use.
_LAYOUT: dict[str, tuple[tuple[str, str], ...]] = {
    "results_stats": (
        ("run_id", "text"),
        ("symbol", "text"),
        ("label", "text"),
        ("stat", "text"),
        ("value", "double"),
    ),
    "results_equity": (
        ("run_id", "text"),
        ("symbol", "text"),
        ("label", "text"),
        ("ts", "ts"),
        ("equity", "double"),
        ("returns", "double"),
        ("weight", "double"),
    ),
    "results_trades": (
        ("run_id", "text"),
        ("symbol", "text"),
        ("label", "text"),
        ("seq", "bigint"),
        ("entry_ts", "ts"),
        ("exit_ts", "ts"),
        ("side", "text"),
        ("units", "double"),
        ("entry_price", "double"),
        ("exit_price", "double"),
        ("bars_held", "bigint"),
        ("pnl", "double"),
        ("trade_return", "double"),
        ("is_open", "bool"),
    ),
    "results_features": (("run_id", "text"), ("symbol", "text"), ("ts", "ts"), ("vector", "doubles")),
    "results_predictions": (("run_id", "text"), ("symbol", "text"), ("ts", "ts"), ("outputs", "doubles")),
}
_VECTOR_TABLE = {ResultKind.FEATURES: "results_features", ResultKind.PREDICTIONS: "results_predictions"}

#: The results schema, one numbered step at a time. Append new steps; never edit a released one.
RESULTS_MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "result runs with their statistics, equity curves, trades, feature vectors and predictions",
        (
            """
            CREATE TABLE results_runs (
                run_id {text} PRIMARY KEY,
                kind {text} NOT NULL,
                name {text} NOT NULL,
                created_at {ts} NOT NULL,
                config_hash {text} NOT NULL,
                data_fingerprint {text} NOT NULL,
                code_version {text} NOT NULL,
                vector_names {json} NOT NULL,
                summary {json} NOT NULL,
                params {json} NOT NULL
            )
            """,
            "CREATE INDEX results_runs_kind_created ON results_runs (kind, created_at)",
            # Detail tables have no key index: a run's rows are written once, with the run, in one
            # transaction, and an index would cost more on bulk writes of feature vectors than it saves.
            """
            CREATE TABLE results_stats (
                run_id {text} NOT NULL, symbol {text} NOT NULL, label {text} NOT NULL, stat {text} NOT NULL,
                value {double}
            )
            """,
            """
            CREATE TABLE results_equity (
                run_id {text} NOT NULL, symbol {text} NOT NULL, label {text} NOT NULL, ts {ts} NOT NULL,
                equity {double} NOT NULL, returns {double}, weight {double}
            )
            """,
            """
            CREATE TABLE results_trades (
                run_id {text} NOT NULL, symbol {text} NOT NULL, label {text} NOT NULL, seq {bigint} NOT NULL,
                entry_ts {ts} NOT NULL, exit_ts {ts}, side {text} NOT NULL, units {double} NOT NULL,
                entry_price {double}, exit_price {double}, bars_held {bigint} NOT NULL, pnl {double},
                trade_return {double}, is_open {bool} NOT NULL
            )
            """,
            """
            CREATE TABLE results_features (
                run_id {text} NOT NULL, symbol {text} NOT NULL, ts {ts} NOT NULL, vector {doubles} NOT NULL
            )
            """,
            """
            CREATE TABLE results_predictions (
                run_id {text} NOT NULL, symbol {text} NOT NULL, ts {ts} NOT NULL, outputs {doubles} NOT NULL
            )
            """,
        ),
        (
            "CREATE INDEX results_stats_run ON results_stats (run_id)",
            "CREATE INDEX results_equity_run ON results_equity (run_id, symbol, label, ts)",
            "CREATE INDEX results_trades_run ON results_trades (run_id)",
            "CREATE INDEX results_features_run ON results_features (run_id, symbol, ts)",
            "CREATE INDEX results_predictions_run ON results_predictions (run_id, symbol, ts)",
        ),
    ),
)

_LATEST = RESULTS_MIGRATIONS[-1].version


def make_run_id(kind: ResultKind | str, created_at: datetime | None = None) -> str:
    """A new run id: ``<prefix>-<UTC time>-<4 random hex digits>``, e.g. ``bt-20240614-153012-3f9a``.

    Ids sort by creation time within a kind and read well in a terminal; the random suffix keeps two runs
    started in the same second apart.
    """
    kind = parse_kind(kind)
    when = datetime.now(UTC) if created_at is None else ensure_utc(created_at, name="created_at")
    return f"{_ID_PREFIX[kind]}-{when:%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


@dataclass(frozen=True, slots=True)
class ResultRun:
    """One recorded result run.

    Attributes
    ----------
    run_id
        Its id (letters, digits, ``.``, ``_``, ``:``, ``-``; see :func:`make_run_id`).
    kind
        A :class:`ResultKind`.
    name
        What produced it: ``"demo"`` for the main job's backtest, the model name for predictions, ...
    created_at
        When it was recorded (UTC).
    config_hash
        Hash of the config that produced it (the feature config for features, the model config for
        predictions, the run config for backtests).
    data_fingerprint
        SHA-256 of the bars it was computed from (:class:`~alphaloom.registry.DataFingerprint`), or ``""``.
    code_version
        alphaloom's version and commit.
    vector_names
        Names of the vector entries (features, model outputs); empty for other kinds.
    summary
        Headline numbers (JSON-able; NaN is stored as ``None``).
    params
        Settings and links (parent runs, model version, symbols), JSON-able.
    """

    run_id: str
    kind: ResultKind
    name: str
    created_at: datetime
    config_hash: str = ""
    data_fingerprint: str = ""
    code_version: str = ""
    vector_names: tuple[str, ...] = ()
    summary: Mapping[str, Any] = field(default_factory=dict)
    params: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_run_id(self.run_id)
        object.__setattr__(self, "kind", parse_kind(self.kind))
        object.__setattr__(self, "created_at", ensure_utc(self.created_at, name="created_at"))
        object.__setattr__(self, "vector_names", tuple(str(c) for c in self.vector_names))
        if not isinstance(self.name, str) or not self.name.strip():
            raise ConfigError(f"a result run needs a name (what produced it), got {self.name!r}.")


def parse_kind(value: Any) -> ResultKind:
    """``value`` as a :class:`ResultKind`; a :class:`ConfigError` naming the valid kinds otherwise."""
    try:
        return ResultKind(value)
    except ValueError:
        valid = [k.value for k in ResultKind]
        raise ConfigError(
            f"result kind {value!r} is not valid.{did_you_mean(str(value), valid)} Valid: {', '.join(valid)}."
        ) from None


def _check_run_id(run_id: Any) -> str:
    if not isinstance(run_id, str) or not _RUN_ID.match(run_id):
        raise ConfigError(
            f"run id {run_id!r} is not valid; use 1-128 letters, digits, '.', '_', ':' or '-', starting "
            f"with a letter or digit (e.g. 'bt-20240614-153012-3f9a')."
        )
    return run_id


def _json_safe(value: Any) -> Any:
    """``value`` with NaN and infinities replaced by None, so it can be stored as JSON."""
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def _load_json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str | bytes) else value


class _Session(ABC):
    """One transaction on a backend: ``run`` takes SQL with ``?`` placeholders."""

    @abstractmethod
    def run(self, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Execute one statement; return its rows (empty for statements without a result)."""

    @abstractmethod
    def insert(self, table: str, frame: pd.DataFrame) -> None:
        """Append ``frame`` (columns of ``_LAYOUT[table]``, in order) to ``table``."""

    @abstractmethod
    def fetch(self, statement: str, params: Sequence[Any] = ()) -> pd.DataFrame:
        """A query's rows as a frame: timestamps UTC, double arrays as per-row float64 numpy arrays."""

    @abstractmethod
    def lock(self, purpose: str) -> None:
        """Serialise writers of ``purpose`` across processes until the transaction ends."""


class ResultsStore(ABC):
    """Result runs and their details. Use it as a context manager, or call :meth:`close`.

    Subclasses supply the connection (:class:`DuckDBResultsStore`, :class:`PostgresResultsStore`); every
    query and check lives here.
    """

    #: ``"duckdb"`` or ``"postgres"``: which statements of a :class:`Migration` run.
    dialect: str = ""
    #: The backend's names for the type placeholders of the migrations.
    types: ClassVar[Mapping[str, str]] = {}

    def __init__(self) -> None:
        self._version: int | None = None

    # ------------------------------------------------------------------ backend hooks

    @property
    @abstractmethod
    def location(self) -> str:
        """Where the results live (a path, or a URL without credentials), for messages."""

    @property
    @abstractmethod
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""

    @abstractmethod
    def close(self) -> None:
        """Release the connection. Safe to call twice; later use raises :class:`StorageError`."""

    @abstractmethod
    def _session(self, action: str) -> AbstractContextManager[_Session]:
        """A transaction; backend errors inside become :class:`StorageError` naming ``action``."""

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.location!r})"

    # ------------------------------------------------------------------ migrations

    def migrate(self) -> list[int]:
        """Apply the :data:`RESULTS_MIGRATIONS` this database lacks, all in one transaction.

        Returns
        -------
        list of int
            The versions applied; empty when the schema was already current.

        Raises
        ------
        StorageError
            The schema is newer than this alphaloom knows, or a statement failed (nothing was applied).
        """
        applied: list[int] = []
        with self._session("migrating the results schema") as s:
            s.lock("results-migrate")
            s.run(
                f"CREATE TABLE IF NOT EXISTS results_schema_version (version INTEGER PRIMARY KEY, "
                f"description {self.types['text']} NOT NULL, applied_at {self.types['ts']} NOT NULL)"
            )
            current = self._read_version(s)
            self._refuse_newer(current)
            for migration in RESULTS_MIGRATIONS:
                if migration.version <= current:
                    continue
                for statement in migration.sql(self.dialect, self.types):
                    s.run(statement)
                s.run(
                    "INSERT INTO results_schema_version (version, description, applied_at) VALUES (?, ?, ?)",
                    [migration.version, migration.description, datetime.now(UTC)],
                )
                applied.append(migration.version)
        self._version = _LATEST
        return applied

    def schema_version(self) -> int:
        """The version of the results schema in the database: 0 when no migration ran yet."""
        with self._session("reading the results schema version") as s:
            return self._read_version(s)

    def _read_version(self, s: _Session) -> int:
        exists = s.run(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = 'results_schema_version' "
            "AND table_schema = current_schema()"
        )
        if not exists[0][0]:
            return 0
        return int(s.run("SELECT coalesce(max(version), 0) FROM results_schema_version")[0][0])

    def _refuse_newer(self, current: int) -> None:
        if current > _LATEST:
            raise StorageError(
                f"the results store at {self.location} has schema version {current}, newer than this "
                f"alphaloom knows ({_LATEST}); upgrade alphaloom rather than migrating, or use another "
                f"database."
            )

    def _ready(self) -> bool:
        """Whether the schema is current; False for a database no migration ran on (nothing recorded)."""
        if self._version == _LATEST:
            return True
        current = self.schema_version()
        self._refuse_newer(current)
        if current == 0:
            return False
        if current < _LATEST:
            raise StorageError(
                f"the results store at {self.location} has schema version {current}, this alphaloom needs "
                f"{_LATEST}; run `alphaloom results migrate` (or open the store with migrate=True)."
            )
        self._version = current
        return True

    def _require_writable(self) -> None:
        if not self._ready():
            raise StorageError(
                f"the results store at {self.location} has no results tables yet; open it with migrate=True "
                f"or run `alphaloom results migrate`."
            )

    # ------------------------------------------------------------------ writing

    def write(
        self,
        run: ResultRun,
        *,
        stats: pd.DataFrame | None = None,
        equity: pd.DataFrame | None = None,
        trades: pd.DataFrame | None = None,
        vectors: pd.DataFrame | None = None,
        replace: bool = False,
    ) -> ResultRun:
        """Record a run and its details in one transaction.

        Parameters
        ----------
        run
            The run's row. For features and predictions, ``run.vector_names`` may be left empty: the names of
            ``vectors``' value columns are used.
        stats
            Columns :data:`STATS_COLUMNS`: one row per (symbol, label, stat); ``value`` float (NaN allowed).
        equity
            Columns :data:`EQUITY_COLUMNS`: one equity curve per (symbol, label), ``ts`` timezone-aware and
            unique within a curve.
        trades
            Columns :data:`TRADE_COLUMNS` (as :func:`alphaloom.backtest.report.trade_list` gives them, with
            ``return`` renamed ``trade_return`` and ``open`` renamed ``is_open``, plus symbol and label).
        vectors
            Features runs: ``symbol``, ``ts`` and one float column per feature. Predictions runs: ``symbol``,
            ``ts`` and one column per model output. Other kinds take none.
        replace
            Replace a run already recorded under ``run.run_id`` (its details too); without it that is an
            error.

        Returns
        -------
        ResultRun
            The run as stored (``vector_names`` filled in).

        Raises
        ------
        ConfigError
            The run id is taken and ``replace`` is false, or ``vectors`` were given for a kind without them.
        DataFormatError
            A frame lacks columns, has naive or duplicate timestamps, or holds non-numeric values.
        """
        if not isinstance(run, ResultRun):
            raise DataFormatError(f"write() takes a ResultRun, got {type(run).__name__}.")
        frames: dict[str, pd.DataFrame] = {}
        if stats is not None:
            frames["results_stats"] = _stats_frame(stats)
        if equity is not None:
            frames["results_equity"] = _equity_frame(equity)
        if trades is not None:
            frames["results_trades"] = _trades_frame(trades)
        if vectors is not None:
            table = _VECTOR_TABLE.get(run.kind)
            if table is None:
                raise ConfigError(
                    f"run {run.run_id!r} is a {run.kind.value} run; only features and predictions runs hold "
                    f"vectors."
                )
            frame, names = _vector_frame(vectors, run.kind)
            if run.vector_names and tuple(run.vector_names) != names:
                raise DataFormatError(
                    f"run.vector_names {list(run.vector_names)} differ from the vectors' columns "
                    f"{list(names)}; leave run.vector_names empty to take them from the frame."
                )
            run = _replace_columns(run, names)
            frames[table] = frame
        run_json = (
            canonical_json(list(run.vector_names), what="vector_names"),
            canonical_json(_json_safe(dict(run.summary)), what="summary"),
            canonical_json(_json_safe(dict(run.params)), what="params"),
        )
        self._require_writable()
        with self._session(f"recording result run {run.run_id!r}") as s:
            s.lock("results-write")
            if s.run("SELECT 1 FROM results_runs WHERE run_id = ?", [run.run_id]):
                if not replace:
                    raise ConfigError(
                        f"result run {run.run_id!r} is already recorded in {self.location}; pass "
                        f"replace=True to overwrite it, or record under a new id (make_run_id())."
                    )
                self._delete(s, run.run_id)
            json_type = self.types["json"]
            s.run(
                f"INSERT INTO results_runs (run_id, kind, name, created_at, config_hash, data_fingerprint, "
                f"code_version, vector_names, summary, params) VALUES (?, ?, ?, ?, ?, ?, ?, "
                f"CAST(? AS {json_type}), CAST(? AS {json_type}), CAST(? AS {json_type}))",
                [
                    run.run_id,
                    run.kind.value,
                    run.name,
                    run.created_at,
                    run.config_hash,
                    run.data_fingerprint,
                    run.code_version,
                    *run_json,
                ],
            )
            for table, frame in frames.items():
                if len(frame):
                    s.insert(table, frame.assign(run_id=run.run_id).loc[:, [c for c, _ in _LAYOUT[table]]])
        return run

    def delete(self, run_id: str) -> None:
        """Delete a run and its details.

        Raises
        ------
        DataNotFoundError
            No such run (the message suggests the closest id).
        """
        run_id = self.resolve(run_id)
        with self._session(f"deleting result run {run_id!r}") as s:
            self._delete(s, run_id)

    @staticmethod
    def _delete(s: _Session, run_id: str) -> None:
        for table in _LAYOUT:
            s.run(f"DELETE FROM {table} WHERE run_id = ?", [run_id])
        s.run("DELETE FROM results_runs WHERE run_id = ?", [run_id])

    # ------------------------------------------------------------------ reading

    def runs(self, kind: ResultKind | str | None = None, *, name: str | None = None) -> list[ResultRun]:
        """Recorded runs (of ``kind``, named ``name``), newest first."""
        chosen = None if kind is None else parse_kind(kind)
        if not self._ready():
            return []
        where, params = [], []
        if chosen is not None:
            where.append("kind = ?")
            params.append(chosen.value)
        if name is not None:
            where.append("name = ?")
            params.append(name)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        with self._session("listing result runs") as s:
            rows = s.run(
                f"SELECT run_id, kind, name, created_at, config_hash, data_fingerprint, code_version, "
                f"CAST(vector_names AS {self.types['text']}), CAST(summary AS {self.types['text']}), "
                f"CAST(params AS {self.types['text']}) FROM results_runs {clause} "
                f"ORDER BY created_at DESC, run_id DESC",
                params,
            )
        return [_run_from_row(r) for r in rows]

    def run_ids(self) -> list[str]:
        """Every recorded run id, newest first."""
        if not self._ready():
            return []
        with self._session("listing result runs") as s:
            return [
                r[0] for r in s.run("SELECT run_id FROM results_runs ORDER BY created_at DESC, run_id DESC")
            ]

    def has_run(self, run_id: str) -> bool:
        """Whether ``run_id`` (exactly) is recorded."""
        _check_run_id(run_id)
        return run_id in set(self.run_ids())

    def resolve(self, run_id: str) -> str:
        """The recorded id ``run_id`` names: itself, or the one id it is a prefix of.

        Raises
        ------
        DataNotFoundError
            No recorded id equals or starts with ``run_id``; the message suggests the closest.
        ConfigError
            ``run_id`` is the prefix of several ids; the message lists them.
        """
        if not isinstance(run_id, str) or not run_id.strip():
            raise ConfigError(
                f"a run id is a non-empty string, got {run_id!r}; see `alphaloom results list`."
            )
        known = self.run_ids()
        if run_id in known:
            return run_id
        matches = [k for k in known if k.startswith(run_id)]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            shown = ", ".join(matches[:8]) + (" ..." if len(matches) > 8 else "")
            raise ConfigError(
                f"run id {run_id!r} is the start of {len(matches)} runs ({shown}); give more of the id."
            )
        held = f"{len(known)} runs are recorded" if known else "no runs are recorded yet"
        raise DataNotFoundError(
            f"no result run {run_id!r} in the results store at {self.location}.{did_you_mean(run_id, known)} "
            f"({held}; see `alphaloom results list`.)"
        )

    def run(self, run_id: str) -> ResultRun:
        """One run by id (or unique id prefix); see :meth:`resolve` for the errors."""
        resolved = self.resolve(run_id)
        with self._session("reading a result run") as s:
            rows = s.run(
                f"SELECT run_id, kind, name, created_at, config_hash, data_fingerprint, code_version, "
                f"CAST(vector_names AS {self.types['text']}), CAST(summary AS {self.types['text']}), "
                f"CAST(params AS {self.types['text']}) FROM results_runs WHERE run_id = ?",
                [resolved],
            )
        return _run_from_row(rows[0])

    def stats(self, run_id: str) -> pd.DataFrame:
        """The run's statistics (columns :data:`STATS_COLUMNS`), sorted by symbol, label, stat."""
        resolved = self.resolve(run_id)
        with self._session("reading result statistics") as s:
            frame = s.fetch(
                "SELECT symbol, label, stat, value FROM results_stats WHERE run_id = ? "
                "ORDER BY symbol, label, stat",
                [resolved],
            )
        return _typed(frame, STATS_COLUMNS, "results_stats")

    def equity(self, run_id: str, *, symbol: str | None = None, label: str | None = None) -> pd.DataFrame:
        """The run's equity curves (columns :data:`EQUITY_COLUMNS`), sorted by symbol, label, ts."""
        resolved = self.resolve(run_id)
        where, params = ["run_id = ?"], [resolved]
        if symbol is not None:
            where.append("symbol = ?")
            params.append(symbol)
        if label is not None:
            where.append("label = ?")
            params.append(label)
        with self._session("reading equity curves") as s:
            frame = s.fetch(
                f"SELECT symbol, label, ts, equity, returns, weight FROM results_equity "
                f"WHERE {' AND '.join(where)} ORDER BY symbol, label, ts",
                params,
            )
        return _typed(frame, EQUITY_COLUMNS, "results_equity")

    def trades(self, run_id: str) -> pd.DataFrame:
        """The run's trades (columns :data:`TRADE_COLUMNS`), in order of entry per symbol and label."""
        resolved = self.resolve(run_id)
        with self._session("reading trades") as s:
            frame = s.fetch(
                "SELECT symbol, label, entry_ts, exit_ts, side, units, entry_price, exit_price, bars_held, "
                "pnl, trade_return, is_open FROM results_trades WHERE run_id = ? ORDER BY symbol, label, seq",
                [resolved],
            )
        return _typed(frame, TRADE_COLUMNS, "results_trades")

    def vectors(self, run_id: str, *, symbols: str | Iterable[str] | None = None) -> pd.DataFrame:
        """A features or predictions run's vectors as a wide frame: ``symbol``, ``ts``, one column per name.

        Raises
        ------
        ConfigError
            The run is of a kind without vectors.
        """
        run = self.run(run_id)
        table = _VECTOR_TABLE.get(run.kind)
        if table is None:
            raise ConfigError(
                f"run {run.run_id!r} is a {run.kind.value} run; vectors are kept for features and "
                f"predictions runs only."
            )
        column = _LAYOUT[table][-1][0]
        where, params = ["run_id = ?"], [run.run_id]
        if symbols is not None:
            wanted = [symbols] if isinstance(symbols, str) else list(symbols)
            where.append(f"symbol IN ({', '.join('?' for _ in wanted)})")
            params.extend(wanted)
        with self._session("reading result vectors") as s:
            frame = s.fetch(
                f"SELECT symbol, ts, {column} FROM {table} WHERE {' AND '.join(where)} ORDER BY symbol, ts",
                params,
            )
        k = len(run.vector_names)
        values = np.vstack(list(frame[column])) if len(frame) else np.empty((0, k))
        out = pd.DataFrame(values, columns=list(run.vector_names))
        out.insert(0, "ts", pd.to_datetime(frame["ts"], utc=True).astype(TS_DTYPE).to_numpy())
        out.insert(0, "symbol", frame["symbol"].astype("str").to_numpy())
        return out

    def compare(self, run_ids: Sequence[str]) -> pd.DataFrame:
        """The statistics of several runs side by side, with each run's difference from the first.

        Parameters
        ----------
        run_ids
            Two or more run ids (or unique prefixes).

        Returns
        -------
        pandas.DataFrame
            Columns ``symbol, label, stat``, one value column per run (named by its id), then ``diff <id>``
            for every run after the first (its value minus the first run's; NaN where either is missing).
            Rows are the union of the runs' statistics, sorted.

        Raises
        ------
        ConfigError
            Fewer than two distinct runs.
        DataNotFoundError
            An unknown run id.
        """
        if isinstance(run_ids, str) or len(run_ids) < 2:
            raise ConfigError(f"compare needs two or more run ids, got {run_ids!r}.")
        resolved = list(dict.fromkeys(self.resolve(r) for r in run_ids))
        if len(resolved) < 2:
            raise ConfigError(f"compare needs two different runs; {list(run_ids)} all name {resolved[0]!r}.")
        keys = ["symbol", "label", "stat"]
        merged: pd.DataFrame | None = None
        for rid in resolved:
            part = self.stats(rid).rename(columns={"value": rid})
            merged = part if merged is None else merged.merge(part, on=keys, how="outer")
        assert merged is not None
        merged = merged.sort_values(keys, kind="stable").reset_index(drop=True)
        first = resolved[0]
        for rid in resolved[1:]:
            merged[f"diff {rid}"] = merged[rid] - merged[first]
        return merged


# ---------------------------------------------------------------------- frames


def _replace_columns(run: ResultRun, names: tuple[str, ...]) -> ResultRun:
    return ResultRun(
        run_id=run.run_id,
        kind=run.kind,
        name=run.name,
        created_at=run.created_at,
        config_hash=run.config_hash,
        data_fingerprint=run.data_fingerprint,
        code_version=run.code_version,
        vector_names=names,
        summary=run.summary,
        params=run.params,
    )


def _run_from_row(r: Sequence[Any]) -> ResultRun:
    return ResultRun(
        run_id=r[0],
        kind=ResultKind(r[1]),
        name=r[2],
        created_at=r[3].astimezone(UTC),
        config_hash=r[4],
        data_fingerprint=r[5],
        code_version=r[6],
        vector_names=tuple(_load_json(r[7])),
        summary=_load_json(r[8]),
        params=_load_json(r[9]),
    )


def _require_columns(frame: Any, columns: Sequence[str], what: str) -> pd.DataFrame:
    if not isinstance(frame, pd.DataFrame):
        raise DataFormatError(f"{what} must be a pandas DataFrame, got {type(frame).__name__}.")
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataFormatError(
            f"{what} lacks column(s) {missing}; it needs {list(columns)} (has {list(frame.columns)[:12]})."
        )
    return frame.loc[:, list(columns)].reset_index(drop=True)


def _text(series: pd.Series, what: str, column: str) -> pd.Series:
    if series.isna().any():
        pos = int(np.flatnonzero(series.isna().to_numpy())[0])
        raise DataFormatError(f"{what}: column {column!r} is empty at row {pos}; use '' for none.")
    return series.astype("str")


def _float(series: pd.Series, what: str, column: str) -> pd.Series:
    try:
        return pd.to_numeric(series, errors="raise").astype("float64")
    except (TypeError, ValueError) as exc:
        raise DataFormatError(f"{what}: column {column!r} must be numeric ({exc}).") from exc


def _utc_column(series: pd.Series, what: str, column: str, *, allow_missing: bool = False) -> pd.Series:
    if not isinstance(series.dtype, pd.DatetimeTZDtype):
        if allow_missing and series.isna().all():  # e.g. the exit times of trades that are all still open
            return pd.Series(pd.NaT, index=series.index, dtype=TS_DTYPE)
        if pd.api.types.is_datetime64_dtype(series.dtype):
            raise DataFormatError(
                f"{what}: column {column!r} holds naive timestamps; localise them to UTC first."
            )
        present = series.dropna()
        if series.dtype == object and all(getattr(v, "tzinfo", None) is not None for v in present):
            # Aware timestamps mixed with NaT come as objects (e.g. the exit times of trade_list).
            return _utc_column(
                pd.Series(pd.to_datetime(series, utc=True)), what, column, allow_missing=allow_missing
            )
        raise DataFormatError(
            f"{what}: column {column!r} must hold timezone-aware timestamps, got dtype {series.dtype}."
        )
    out = series.dt.tz_convert("UTC").astype(TS_DTYPE)
    if not allow_missing and out.isna().any():
        raise DataFormatError(f"{what}: column {column!r} has missing timestamps.")
    return out


def _stats_frame(stats: pd.DataFrame) -> pd.DataFrame:
    what = "stats"
    frame = _require_columns(stats, STATS_COLUMNS, what)
    for col in ("symbol", "label", "stat"):
        frame[col] = _text(frame[col], what, col)
    frame["value"] = _float(frame["value"], what, "value")
    dup = frame.duplicated(["symbol", "label", "stat"])
    if dup.any():
        row = frame[dup].iloc[0]
        raise DataFormatError(
            f"stats: ({row['symbol']!r}, {row['label']!r}, {row['stat']!r}) appears more than once; one "
            f"value per symbol, label and statistic."
        )
    return frame


def _equity_frame(equity: pd.DataFrame) -> pd.DataFrame:
    what = "equity"
    frame = _require_columns(equity, EQUITY_COLUMNS, what)
    for col in ("symbol", "label"):
        frame[col] = _text(frame[col], what, col)
    frame["ts"] = _utc_column(frame["ts"], what, "ts")
    for col in ("equity", "returns", "weight"):
        frame[col] = _float(frame[col], what, col)
    if frame["equity"].isna().any():
        raise DataFormatError("equity: column 'equity' has missing values; an equity curve is complete.")
    dup = frame.duplicated(["symbol", "label", "ts"])
    if dup.any():
        row = frame[dup].iloc[0]
        raise DataFormatError(
            f"equity: the curve ({row['symbol']!r}, {row['label']!r}) has two rows at "
            f"{row['ts'].isoformat()}."
        )
    return frame


def _trades_frame(trades: pd.DataFrame) -> pd.DataFrame:
    what = "trades"
    frame = _require_columns(trades, TRADE_COLUMNS, what)
    for col in ("symbol", "label", "side"):
        frame[col] = _text(frame[col], what, col)
    frame["entry_ts"] = _utc_column(frame["entry_ts"], what, "entry_ts")
    frame["exit_ts"] = _utc_column(frame["exit_ts"], what, "exit_ts", allow_missing=True)
    for col in ("units", "entry_price", "exit_price", "pnl", "trade_return"):
        frame[col] = _float(frame[col], what, col)
    frame["bars_held"] = _float(frame["bars_held"], what, "bars_held").astype("int64")
    frame["is_open"] = frame["is_open"].astype(bool)
    frame.insert(2, "seq", frame.groupby(["symbol", "label"], sort=False).cumcount().astype("int64"))
    return frame


def _vector_frame(vectors: pd.DataFrame, kind: ResultKind) -> tuple[pd.DataFrame, tuple[str, ...]]:
    what = f"{kind.value} vectors"
    if not isinstance(vectors, pd.DataFrame):
        raise DataFormatError(f"{what} must be a pandas DataFrame, got {type(vectors).__name__}.")
    frame = _require_columns(vectors, ("symbol", "ts"), what)
    names = tuple(str(c) for c in vectors.columns if c not in ("symbol", "ts"))
    if not names:
        raise DataFormatError(f"{what} have no value columns besides 'symbol' and 'ts'.")
    bad = [c for c in names if not pd.api.types.is_numeric_dtype(vectors[c].dtype)]
    if bad:
        raise DataFormatError(f"{what}: column(s) {bad[:5]} are not numeric; vectors hold numbers only.")
    frame["symbol"] = _text(frame["symbol"], what, "symbol")
    frame["ts"] = _utc_column(frame["ts"], what, "ts")
    dup = frame.duplicated(["symbol", "ts"])
    if dup.any():
        row = frame[dup].iloc[0]
        raise DataFormatError(f"{what}: ({row['symbol']!r}, {row['ts'].isoformat()}) appears twice.")
    values = vectors.loc[:, list(names)].to_numpy(dtype=np.float64)
    column = "vector" if kind is ResultKind.FEATURES else "outputs"
    frame[column] = list(values)
    return frame, names


def _typed(frame: pd.DataFrame, columns: Sequence[str], table: str) -> pd.DataFrame:
    """A detail frame with the same dtypes from either backend, empty or not."""
    kinds = dict(_LAYOUT[table])
    out = pd.DataFrame(index=range(len(frame)))
    for col in columns:
        kind = kinds[col]
        values = frame[col] if col in frame.columns else pd.Series([], dtype=object)
        if kind == "text":
            out[col] = pd.Series(values.to_numpy(), dtype="str") if len(frame) else pd.Series([], dtype="str")
        elif kind == "ts":
            out[col] = pd.to_datetime(pd.Series(values.to_numpy()), utc=True).astype(TS_DTYPE)
        elif kind == "double":
            out[col] = pd.to_numeric(pd.Series(values.to_numpy()), errors="coerce").astype("float64")
        elif kind == "bigint":
            out[col] = pd.Series(values.to_numpy()).astype("int64")
        elif kind == "bool":
            out[col] = pd.Series(values.to_numpy()).astype(bool)
    return out


# ---------------------------------------------------------------------- DuckDB


def _arrow_column(series: pd.Series, kind: str) -> pa.Array:
    if kind == "doubles":
        values = list(series)
        if not values:
            return pa.array([], type=pa.list_(pa.float64()))
        lengths = np.fromiter((len(v) for v in values), dtype=np.int32, count=len(values))
        offsets = np.concatenate(([0], np.cumsum(lengths))).astype(np.int32)
        flat = np.concatenate(values).astype(np.float64)
        return pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat, type=pa.float64()))
    if kind == "ts":
        naive = series.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy(dtype="datetime64[us]")
        return pa.array(naive, type=pa.timestamp("us"), mask=series.isna().to_numpy()).cast(
            pa.timestamp("us", tz="UTC")
        )
    if kind == "text":
        return pa.array(series.astype(str).tolist(), type=pa.string())
    if kind == "double":
        return pa.array(series.to_numpy(dtype=np.float64), type=pa.float64())
    if kind == "bigint":
        return pa.array(series.to_numpy(dtype=np.int64), type=pa.int64())
    return pa.array(series.to_numpy(dtype=bool), type=pa.bool_())


class _DuckDBSession(_Session):
    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self._con = con

    def run(self, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        # Rows come through Arrow: DuckDB's own conversion of TIMESTAMPTZ to Python needs pytz.
        relation = self._con.sql(statement, params=list(params) if params else None)
        if relation is None:
            return []
        return [tuple(row.values()) for row in relation.to_arrow_table().to_pylist()]

    def insert(self, table: str, frame: pd.DataFrame) -> None:
        layout = _LAYOUT[table]
        arrow = pa.table({c: _arrow_column(frame[c], kind) for c, kind in layout})
        self._con.register("_al_results", arrow)
        try:
            self._con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM _al_results")
        finally:
            self._con.unregister("_al_results")

    def fetch(self, statement: str, params: Sequence[Any] = ()) -> pd.DataFrame:
        table = self._con.sql(statement, params=list(params) if params else None).to_arrow_table()
        columns: dict[str, Any] = {}
        for name, col in zip(table.column_names, table.columns, strict=True):
            if pa.types.is_list(col.type):
                columns[name] = [np.asarray(v, dtype=np.float64) for v in col.to_pylist()]
            else:
                columns[name] = col.to_pandas()
        return pd.DataFrame(columns, index=range(table.num_rows))

    def lock(self, purpose: str) -> None:
        # One process writes a DuckDB file at a time, and the store's own lock serialises its threads.
        return None


class DuckDBResultsStore(ResultsStore):
    """Result runs in a DuckDB file (the embedded default).

    Parameters
    ----------
    path
        The database file, created with its parent directories; normally the workspace's bar store
        ``alphaloom.duckdb`` (the ``results_*`` tables do not collide with the bars, frames or relational
        tables). ``":memory:"`` gives a throw-away store.
    migrate
        Bring the schema up to date on opening (default). With ``False`` nothing is created: reading a
        database no migration ran on lists no runs, and writing needs :meth:`migrate` first.
    read_only
        Open an existing file without write access, so readers do not block one another (implies
        ``migrate=False``).

    Raises
    ------
    DataNotFoundError
        ``read_only`` and the file does not exist.
    StorageError
        The file cannot be opened (locked by a writer in another process, not a DuckDB file), or holds a
        newer results schema than this alphaloom knows.
    """

    dialect = "duckdb"
    types: ClassVar[Mapping[str, str]] = {
        "text": "VARCHAR",
        "double": "DOUBLE",
        "bigint": "BIGINT",
        "bool": "BOOLEAN",
        "ts": "TIMESTAMPTZ",
        "json": "VARCHAR",
        "doubles": "DOUBLE[]",
    }

    def __init__(self, path: str | Path, *, migrate: bool = True, read_only: bool = False) -> None:
        super().__init__()
        self._memory = str(path) == _MEMORY
        self._path = Path(path) if self._memory else Path(path).expanduser()
        self._lock = threading.RLock()
        self._con: duckdb.DuckDBPyConnection | None = None
        if read_only and not self._memory and not self._path.is_file():
            raise DataNotFoundError(
                f"no results store at {self._path}; results are recorded by the pipeline stages "
                f"(`alphaloom demo`, `alphaloom backtest`)."
            )
        try:
            if not self._memory:
                self._path.parent.mkdir(parents=True, exist_ok=True)
            self._con = duckdb.connect(_MEMORY if self._memory else str(self._path), read_only=read_only)
            self._con.execute("SET TimeZone = 'UTC'")
        except OSError as exc:
            raise StorageError(f"cannot create the directory for {self._path}: {exc.strerror}.") from exc
        except duckdb.Error as exc:
            text = _first_line(exc)
            hint = (
                " Another process holds it open for writing (DuckDB allows one writer); stop it or wait."
                if "lock" in text.lower()
                else ""
            )
            raise StorageError(f"cannot open the results store at {self.location}: {text}.{hint}") from exc
        try:
            if migrate and not read_only:
                self.migrate()
            else:
                self._refuse_newer(self.schema_version())
        except BaseException:
            self.close()
            raise

    @property
    def location(self) -> str:
        return _MEMORY if self._memory else str(self._path)

    @property
    def closed(self) -> bool:
        return self._con is None

    def close(self) -> None:
        with self._lock:
            con, self._con = self._con, None
            if con is not None:
                with suppress(duckdb.Error):
                    con.close()

    @contextmanager
    def _session(self, action: str) -> Iterator[_Session]:
        with self._lock:
            if self._con is None:
                raise StorageError(f"the results store at {self.location} is closed; open a new one.")
            con = self._con
            try:
                con.execute("BEGIN TRANSACTION")
                try:
                    yield _DuckDBSession(con)
                except BaseException:
                    with suppress(duckdb.Error):
                        con.execute("ROLLBACK")
                    raise
                con.execute("COMMIT")
            except duckdb.Error as exc:
                raise StorageError(
                    f"{action} failed on the results store at {self.location}: {_first_line(exc)}"
                ) from exc


# ---------------------------------------------------------------------- PostgreSQL

_COPY_TYPES = {
    "text": "text",
    "double": "float8",
    "bigint": "int8",
    "bool": "bool",
    "ts": "timestamptz",
    "doubles": "float8[]",
}


def _copy_values(series: pd.Series, kind: str) -> list[Any]:
    if kind == "doubles":
        return [np.asarray(v, dtype=np.float64).tolist() for v in series]
    if kind == "ts":
        return [None if pd.isna(t) else t.to_pydatetime() for t in series]
    if kind == "double":
        return series.to_numpy(dtype=np.float64).tolist()
    if kind == "bigint":
        return series.to_numpy(dtype=np.int64).tolist()
    if kind == "bool":
        return series.to_numpy(dtype=bool).tolist()
    return series.astype(str).tolist()


class _PostgresSession(_Session):
    def __init__(self, cur: psycopg.Cursor[Any], schema: str) -> None:
        self._cur = cur
        self._schema = schema

    def run(self, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        if params:
            self._cur.execute(statement.replace("%", "%%").replace("?", "%s"), list(params))
        else:
            self._cur.execute(statement)
        return self._cur.fetchall() if self._cur.description is not None else []

    def insert(self, table: str, frame: pd.DataFrame) -> None:
        layout = _LAYOUT[table]
        columns = [_copy_values(frame[c], kind) for c, kind in layout]
        names = ", ".join(c for c, _ in layout)
        with self._cur.copy(f"COPY {table} ({names}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types([_COPY_TYPES[kind] for _, kind in layout])
            for row in zip(*columns, strict=True):
                copy.write_row(row)

    def fetch(self, statement: str, params: Sequence[Any] = ()) -> pd.DataFrame:
        rows = self.run(statement, params)
        names = [d.name for d in self._cur.description or ()]
        columns: dict[str, Any] = {}
        for i, name in enumerate(names):
            values = [r[i] for r in rows]
            if values and isinstance(values[0], list):
                columns[name] = [np.asarray(v, dtype=np.float64) for v in values]
            else:
                columns[name] = pd.Series(values, dtype=object)
        return pd.DataFrame(columns, index=range(len(rows)))

    def lock(self, purpose: str) -> None:
        self._cur.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", [f"alphaloom:{self._schema}:{purpose}"]
        )


class PostgresResultsStore(ResultsStore):
    """Result runs in a PostgreSQL schema (production).

    Parameters
    ----------
    dsn
        A libpq connection string; its password never appears in messages. Keep the password out of it:
        use ``passfile=`` or ``$PGPASSFILE`` (see docs/DEPLOYMENT.md).
    schema
        The schema holding the tables, created when missing; it may be the bar store's.
    migrate
        Bring the schema up to date on opening (default); an advisory lock makes several processes starting
        at once apply each migration once.
    tls
        :class:`~alphaloom.data.storage.postgres_store.PostgresTLS` settings; ``None`` keeps the DSN's.

    Raises
    ------
    ConfigError
        An invalid schema name.
    StorageError
        The server cannot be reached, or the schema is newer than this alphaloom knows.
    """

    dialect = "postgres"
    types: ClassVar[Mapping[str, str]] = {
        "text": "text",
        "double": "double precision",
        "bigint": "bigint",
        "bool": "boolean",
        "ts": "timestamptz",
        "json": "jsonb",
        "doubles": "double precision[]",
    }

    def __init__(
        self,
        dsn: str,
        *,
        schema: str = "alphaloom",
        migrate: bool = True,
        tls: PostgresTLS | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(schema, str) or not _SCHEMA_NAME.match(schema):
            raise ConfigError(
                f"schema {schema!r} is not valid; use 1-63 lowercase letters, digits and underscores, not "
                f"starting with a digit (e.g. 'alphaloom')."
            )
        self._dsn = dsn
        self._schema = schema
        self._location = f"{redact_dsn(dsn)} (schema {schema})"
        self._lock = threading.RLock()
        self._con: psycopg.Connection[Any] | None = connect_postgres(dsn, tls)
        try:
            with self._session("opening") as s:
                s.lock("schema")
                s.run(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
            self._con.execute(f'SET search_path TO "{schema}"')
            if migrate:
                self.migrate()
            else:
                self._refuse_newer(self.schema_version())
        except psycopg.Error as exc:
            self.close()
            raise StorageError(
                f"opening the results store at {self.location} failed: {self._clean(exc)}"
            ) from exc
        except BaseException:
            self.close()
            raise

    @property
    def location(self) -> str:
        return self._location

    @property
    def schema(self) -> str:
        """The schema holding the tables."""
        return self._schema

    @property
    def closed(self) -> bool:
        return self._con is None

    def close(self) -> None:
        with self._lock:
            con, self._con = self._con, None
            if con is not None:
                con.close()

    def _clean(self, exc: BaseException) -> str:
        return _scrub(_first_line(exc), self._dsn)

    @contextmanager
    def _session(self, action: str) -> Iterator[_Session]:
        with self._lock:
            if self._con is None:
                raise StorageError(f"the results store at {self.location} is closed; open a new one.")
            try:
                with self._con.transaction(), self._con.cursor(binary=True) as cur:
                    yield _PostgresSession(cur, self._schema)
            except psycopg.Error as exc:
                raise StorageError(
                    f"{action} failed on the results store at {self.location}: {self._clean(exc)}"
                ) from exc
