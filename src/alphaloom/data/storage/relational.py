"""Relational records: accounts, model configs and versions, orders and fills, and a hash-chained audit log.

One interface, :class:`RelationalStore`, over two databases: :class:`DuckDBRelationalStore` (embedded, the
default; one file, which may be the bar store's) and :class:`PostgresRelationalStore` (production; one
schema).
The base class owns every query and check; a backend only supplies a connection, transactions and its SQL type
names (the small dialect layer), so the two cannot drift apart.

The schema is built by the numbered :data:`MIGRATIONS`, recorded in a ``schema_version`` table.
:meth:`RelationalStore.migrate` applies the missing ones in one transaction, is idempotent, and refuses a
database whose schema is newer than this alphaloom knows.

Tables::

    schema_version  version, description, applied_at
    accounts        account_id (key), venue, currency, cash, equity, buying_power, updated_at
    model_configs   config_hash (key), kind, config (JSON), created_at
    model_versions  (name, version) (key), config_hash -> model_configs, metrics (JSON), stage, created_at
    orders          client_order_id (key), account_id -> accounts, the order's fields, its latest state
    fills           fill_id (key), client_order_id -> orders, symbol, side, quantity, price, fee, ts
    audit_log       id (key), ts, actor, action, payload (JSON, kept verbatim), prev_hash, hash

The audit log is append-only (on PostgreSQL a trigger refuses UPDATE, DELETE and TRUNCATE) and each record's
``hash`` is ``sha256(prev_hash + canonical JSON of the record)``, the first record's ``prev_hash`` being 64
zeros, so :meth:`RelationalStore.verify_audit_chain` finds any record edited, deleted or reordered later.
"""

from __future__ import annotations

import hashlib
import json
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, date, datetime
from enum import Enum, StrEnum
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, NamedTuple, Self

import duckdb
import psycopg
from pydantic import BaseModel

from alphaloom.core.clock import Clock, LiveClock
from alphaloom.core.config import ComponentConfig
from alphaloom.core.exceptions import (
    ConfigError,
    DataFormatError,
    DataNotFoundError,
    StorageError,
    did_you_mean,
)
from alphaloom.core.timeutil import ensure_utc
from alphaloom.core.types import Account, Fill, Order, OrderResult, OrderStatus, OrderType, Side, TimeInForce
from alphaloom.data.storage.postgres_store import (
    _SCHEMA_NAME,
    PostgresTLS,
    _first_line,
    _scrub,
    connect_postgres,
    redact_dsn,
)

__all__ = [
    "GENESIS_HASH",
    "MIGRATIONS",
    "AuditProblem",
    "AuditRecord",
    "DuckDBRelationalStore",
    "Migration",
    "ModelStage",
    "ModelVersion",
    "OrderRecord",
    "PostgresRelationalStore",
    "RelationalStore",
    "canonical_json",
]

#: ``prev_hash`` of the first audit record.
GENESIS_HASH = "0" * 64

_MEMORY = ":memory:"


class ModelStage(StrEnum):
    """Where a model version is in its life: trained, being evaluated live, trading, or retired."""

    CANDIDATE = "candidate"
    STAGING = "staging"
    PRODUCTION = "production"
    ARCHIVED = "archived"


@dataclass(frozen=True, slots=True)
class Migration:
    """One numbered step of the relational schema.

    Parameters
    ----------
    version
        Its number; :data:`MIGRATIONS` holds 1, 2, ... in order.
    description
        What it does, recorded in ``schema_version``.
    statements
        DDL run on every backend, with ``{text}``, ``{double}``, ``{bigint}``, ``{ts}``, ``{json}`` (a
        queryable JSON value) and ``{json_exact}`` (JSON kept byte for byte) standing for the backend's types.
    postgres_only
        DDL only PostgreSQL runs (triggers, functions).
    """

    version: int
    description: str
    statements: tuple[str, ...]
    postgres_only: tuple[str, ...] = ()

    def sql(self, dialect: str, types: Mapping[str, str]) -> list[str]:
        """The statements to run on ``dialect`` (``"duckdb"`` or ``"postgres"``), with its type names."""
        extra = self.postgres_only if dialect == "postgres" else ()
        return [s.format_map(types) for s in self.statements] + list(extra)


#: The relational schema, one numbered step at a time. Append new steps; never edit a released one.
MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "accounts, model configs and versions, orders, fills, audit log",
        (
            """
            CREATE TABLE accounts (
                account_id {text} PRIMARY KEY,
                venue {text} NOT NULL,
                currency {text} NOT NULL,
                cash {double} NOT NULL,
                equity {double} NOT NULL,
                buying_power {double},
                updated_at {ts} NOT NULL
            )
            """,
            """
            CREATE TABLE model_configs (
                config_hash {text} PRIMARY KEY,
                kind {text} NOT NULL,
                config {json} NOT NULL,
                created_at {ts} NOT NULL
            )
            """,
            """
            CREATE TABLE model_versions (
                name {text} NOT NULL,
                version {text} NOT NULL,
                config_hash {text} NOT NULL REFERENCES model_configs (config_hash),
                metrics {json} NOT NULL,
                stage {text} NOT NULL,
                created_at {ts} NOT NULL,
                PRIMARY KEY (name, version)
            )
            """,
            """
            CREATE TABLE orders (
                client_order_id {text} PRIMARY KEY,
                account_id {text} REFERENCES accounts (account_id),
                symbol {text} NOT NULL,
                side {text} NOT NULL,
                quantity {double} NOT NULL CHECK (quantity > 0),
                order_type {text} NOT NULL,
                limit_price {double},
                stop_price {double},
                time_in_force {text} NOT NULL,
                ts {ts} NOT NULL,
                status {text} NOT NULL,
                venue_order_id {text} NOT NULL,
                filled_quantity {double} NOT NULL,
                avg_fill_price {double},
                message {text} NOT NULL,
                updated_at {ts} NOT NULL
            )
            """,
            """
            CREATE TABLE fills (
                fill_id {text} PRIMARY KEY,
                client_order_id {text} NOT NULL REFERENCES orders (client_order_id),
                symbol {text} NOT NULL,
                side {text} NOT NULL,
                quantity {double} NOT NULL CHECK (quantity > 0),
                price {double} NOT NULL CHECK (price > 0),
                fee {double} NOT NULL,
                ts {ts} NOT NULL
            )
            """,
            """
            CREATE TABLE audit_log (
                id {bigint} PRIMARY KEY,
                ts {ts} NOT NULL,
                actor {text} NOT NULL,
                action {text} NOT NULL,
                payload {json_exact} NOT NULL,
                prev_hash {text} NOT NULL,
                hash {text} NOT NULL UNIQUE
            )
            """,
        ),
    ),
    Migration(
        2,
        "indexes for order, fill and audit queries; audit log append-only on PostgreSQL",
        (
            # DuckDB cannot update an indexed column of a row another table references, so these indexes
            # cover only columns that never change after the insert.
            "CREATE INDEX orders_symbol_ts ON orders (symbol, ts)",
            "CREATE INDEX fills_client_order_id ON fills (client_order_id)",
            "CREATE INDEX audit_log_ts ON audit_log (ts)",
        ),
        (
            """
            CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION 'audit_log is append-only: % is not allowed', TG_OP
                    USING HINT = 'append a new record that corrects the old one instead';
            END
            $$
            """,
            """
            CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
            FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()
            """,
            """
            CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
            FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only()
            """,
        ),
    ),
)

_LATEST = MIGRATIONS[-1].version


@dataclass(frozen=True, slots=True)
class ModelVersion:
    """One recorded model version.

    ``config_hash`` identifies ``config`` (16 hex digits; :meth:`ComponentConfig.config_hash
    <alphaloom.core.config.ComponentConfig.config_hash>` for config objects); ``metrics`` is free-form JSON
    (e.g. ``{"sharpe": 1.2, "accuracy": 0.54}``); ``created_at`` is UTC.
    """

    name: str
    version: str
    config_hash: str
    config: dict[str, Any]
    metrics: dict[str, Any]
    stage: ModelStage
    created_at: datetime


@dataclass(frozen=True, slots=True)
class OrderRecord:
    """An order as recorded, with the latest state its venue reported.

    ``filled_quantity`` is in units of the instrument; ``avg_fill_price`` in the quote currency, ``None``
    until something filled; ``updated_at`` is the time of the latest :class:`OrderResult` applied (UTC).
    """

    order: Order
    account_id: str | None
    status: OrderStatus
    venue_order_id: str
    filled_quantity: float
    avg_fill_price: float | None
    message: str
    updated_at: datetime

    @property
    def client_order_id(self) -> str:
        return self.order.client_order_id


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One audit-log entry. ``hash`` is ``sha256(prev_hash + canonical JSON of the record)`` in hex."""

    id: int
    ts: datetime
    actor: str
    action: str
    payload: dict[str, Any]
    prev_hash: str
    hash: str


class AuditProblem(NamedTuple):
    """Something :meth:`RelationalStore.verify_audit_chain` found wrong; ``record_id`` 0 means the log."""

    record_id: int
    message: str

    def __str__(self) -> str:
        where = "audit log" if self.record_id == 0 else f"audit record {self.record_id}"
        return f"{where}: {self.message}"


def _json_default(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, datetime):
        return ensure_utc(value, name="a datetime in the JSON payload").isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def canonical_json(value: Any, *, what: str = "value") -> str:
    """``value`` as canonical JSON: sorted keys, no spaces, UTF-8 text, no NaN or infinity.

    Datetimes (timezone-aware) become ISO strings, enums their values, pydantic models their JSON dump,
    tuples and sets lists, numpy scalars numbers.

    Raises
    ------
    DataFormatError
        ``value`` holds something JSON cannot represent (NaN, an arbitrary object, a naive datetime).
    """
    try:
        return json.dumps(
            value,
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
            allow_nan=False,
            default=_json_default,
        )
    except (TypeError, ValueError) as exc:
        raise DataFormatError(
            f"{what} cannot be stored as JSON: {exc}. Use numbers, strings, booleans, None, lists and dicts "
            f"with string keys (NaN and infinity are not JSON; store None instead)."
        ) from exc


def _audit_hash(
    prev_hash: str, record_id: int, ts: datetime, actor: str, action: str, payload_json: str
) -> str:
    # The canonical JSON of the record, written out so the payload is hashed exactly as it is stored.
    body = (
        f'{{"action":{json.dumps(action, ensure_ascii=False)},'
        f'"actor":{json.dumps(actor, ensure_ascii=False)},'
        f'"id":{record_id},"payload":{payload_json},'
        f'"ts":"{ts.astimezone(UTC).isoformat(timespec="microseconds")}"}}'
    )
    return hashlib.sha256((prev_hash + body).encode()).hexdigest()


def _enum(kind: type[StrEnum], value: Any, what: str) -> Any:
    try:
        return kind(value)
    except ValueError:
        valid = [v.value for v in kind]
        raise ConfigError(
            f"{what} {value!r} is not valid.{did_you_mean(str(value), valid)} Valid: {', '.join(valid)}."
        ) from None


def _name(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{what} must be a non-empty string, got {value!r}.")
    return value


def _utc(value: Any) -> datetime:
    """A timestamp read back from either database, as an aware UTC datetime."""
    return value.astimezone(UTC)


class _Session(ABC):
    """One transaction on a backend: ``run`` takes SQL with ``?`` placeholders."""

    @abstractmethod
    def run(self, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Execute one statement; return its rows (empty for statements without a result)."""

    @abstractmethod
    def lock(self, purpose: str) -> None:
        """Serialise writers of ``purpose`` across processes until the transaction ends."""


class RelationalStore(ABC):
    """Accounts, model configs and versions, orders and fills, and the audit log.

    Use it as a context manager, or call :meth:`close`. Timestamps go in as timezone-aware datetimes and come
    out in UTC. Subclasses supply the connection (see :class:`DuckDBRelationalStore`,
    :class:`PostgresRelationalStore`); everything else lives here.

    Parameters
    ----------
    clock
        Where default timestamps (``created_at``, the audit ``ts``) come from; the wall clock by default.
    """

    #: ``"duckdb"`` or ``"postgres"``: which statements of a :class:`Migration` run.
    dialect: str = ""
    #: The backend's names for the type placeholders of :attr:`Migration.statements`.
    types: ClassVar[Mapping[str, str]] = {}

    def __init__(self, *, clock: Clock | None = None) -> None:
        self._clock: Clock = clock if clock is not None else LiveClock()
        self._version: int | None = None

    # ------------------------------------------------------------------ backend hooks

    @property
    @abstractmethod
    def location(self) -> str:
        """Where the records live (a path, or a URL without credentials), for messages."""

    @property
    @abstractmethod
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""

    @abstractmethod
    def close(self) -> None:
        """Release the connection. Safe to call twice; later use raises :class:`StorageError`."""

    @abstractmethod
    def _session(self, action: str) -> AbstractContextManager[_Session]:
        """A transaction; errors inside become :class:`StorageError` naming ``action``."""

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
        """Apply the :data:`MIGRATIONS` this database lacks, all in one transaction.

        Returns
        -------
        list of int
            The versions applied; empty when the schema was already current (so calling it again is a no-op).

        Raises
        ------
        StorageError
            The database's schema is newer than this alphaloom knows, or a statement failed (then nothing
            was applied).
        """
        applied: list[int] = []
        with self._session("migrating the schema") as s:
            s.lock("migrate")
            s.run(
                f"CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, "
                f"description {self.types['text']} NOT NULL, applied_at {self.types['ts']} NOT NULL)"
            )
            current = self._read_version(s)
            self._refuse_newer(current)
            for migration in MIGRATIONS:
                if migration.version <= current:
                    continue
                for statement in migration.sql(self.dialect, self.types):
                    s.run(statement)
                s.run(
                    "INSERT INTO schema_version (version, description, applied_at) VALUES (?, ?, ?)",
                    [migration.version, migration.description, self._now()],
                )
                applied.append(migration.version)
        self._version = _LATEST
        return applied

    def schema_version(self) -> int:
        """The version of the schema in the database: 0 when no migration ran yet."""
        with self._session("reading the schema version") as s:
            return self._read_version(s)

    def _read_version(self, s: _Session) -> int:
        exists = s.run(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = 'schema_version' "
            "AND table_schema = current_schema()"
        )
        if not exists[0][0]:
            return 0
        return int(s.run("SELECT coalesce(max(version), 0) FROM schema_version")[0][0])

    def _refuse_newer(self, current: int) -> None:
        if current > _LATEST:
            raise StorageError(
                f"the relational store at {self.location} has schema version {current}, newer than this "
                f"alphaloom knows ({_LATEST}); upgrade alphaloom rather than migrating, or use another "
                f"database."
            )

    def _check_version(self) -> None:
        if self._version == _LATEST:
            return
        current = self.schema_version()
        self._refuse_newer(current)
        if current < _LATEST:
            raise StorageError(
                f"the relational store at {self.location} has schema version {current}, this alphaloom needs "
                f"{_LATEST}; call migrate() first (or open the store with migrate=True)."
            )
        self._version = current

    def _now(self) -> datetime:
        return ensure_utc(self._clock.now(), name="clock time")

    # ------------------------------------------------------------------ accounts

    def upsert_account(self, account: Account) -> None:
        """Insert an account or replace the stored one with the same ``account_id``."""
        if not isinstance(account, Account):
            raise DataFormatError(f"upsert_account() takes an Account, got {type(account).__name__}.")
        self._check_version()
        with self._session("writing an account") as s:
            s.run(
                """
                INSERT INTO accounts (account_id, venue, currency, cash, equity, buying_power, updated_at)
                VALUES (?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT (account_id) DO UPDATE SET venue = EXCLUDED.venue, currency = EXCLUDED.currency,
                    cash = EXCLUDED.cash, equity = EXCLUDED.equity, buying_power = EXCLUDED.buying_power,
                    updated_at = EXCLUDED.updated_at
                """,
                [
                    account.account_id,
                    account.venue,
                    account.currency,
                    account.cash,
                    account.equity,
                    account.buying_power,
                    account.ts,
                ],
            )

    def accounts(self) -> list[Account]:
        """Every stored account, sorted by ``account_id``."""
        self._check_version()
        with self._session("reading accounts") as s:
            rows = s.run(
                "SELECT account_id, currency, cash, equity, buying_power, venue, updated_at FROM accounts "
                "ORDER BY account_id"
            )
        return [
            Account(
                account_id=r[0],
                currency=r[1],
                cash=r[2],
                equity=r[3],
                buying_power=r[4],
                venue=r[5],
                ts=_utc(r[6]),
            )
            for r in rows
        ]

    def account(self, account_id: str) -> Account:
        """One account by id.

        Raises
        ------
        DataNotFoundError
            No account has that id (the message suggests the closest).
        """
        known = {a.account_id: a for a in self.accounts()}
        if account_id not in known:
            raise DataNotFoundError(
                f"no account {account_id!r} in the relational store at {self.location}."
                f"{did_you_mean(str(account_id), known)} Record it with upsert_account() first."
            )
        return known[account_id]

    # ------------------------------------------------------------------ model versions

    def record_model_version(
        self,
        name: str,
        version: str,
        config: ComponentConfig | Mapping[str, Any],
        *,
        metrics: Mapping[str, Any] | None = None,
        stage: ModelStage | str = ModelStage.CANDIDATE,
        created_at: datetime | None = None,
    ) -> ModelVersion:
        """Record a trained model version and its config.

        Parameters
        ----------
        name, version
            Identify the version (``"cnn_lstm"``, ``"2024-06-01.1"``).
        config
            The component config it was trained with, or a plain mapping; stored once per config hash.
        metrics
            Evaluation results as JSON-able values (``{"sharpe": 1.1}``); NaN is refused, use None.
        stage
            A :class:`ModelStage` (``"candidate"`` by default).
        created_at
            When it was trained (aware); now by default.

        Returns
        -------
        ModelVersion
            The stored version. Recording the same (name, version) again with the same config updates its
            metrics and stage and keeps ``created_at``.

        Raises
        ------
        ConfigError
            The (name, version) is already recorded with a different config: a version's config never
            changes, so record a new version; or an unknown stage.
        DataFormatError
            ``config`` or ``metrics`` cannot be stored as JSON.
        """
        name, version = _name(name, "name"), _name(version, "version")
        stage = _enum(ModelStage, stage, "stage")
        if isinstance(config, ComponentConfig):
            kind, config_data, config_hash = (
                type(config).__name__,
                config.model_dump(mode="json"),
                config.config_hash(),
            )
        elif isinstance(config, Mapping):
            kind, config_data = "mapping", dict(config)
            config_hash = hashlib.sha256(canonical_json(config_data, what="config").encode()).hexdigest()[:16]
        else:
            raise DataFormatError(
                f"record_model_version(): config must be a ComponentConfig or a mapping, got "
                f"{type(config).__name__}."
            )
        config_json = canonical_json(config_data, what="config")
        metrics_json = canonical_json(dict(metrics or {}), what="metrics")
        created = self._now() if created_at is None else ensure_utc(created_at, name="created_at")
        self._check_version()
        with self._session("recording a model version") as s:
            if not s.run("SELECT 1 FROM model_configs WHERE config_hash = ?", [config_hash]):
                s.run(
                    f"INSERT INTO model_configs (config_hash, kind, config, created_at) "
                    f"VALUES (?, ?, CAST(? AS {self.types['json']}), ?)",
                    [config_hash, kind, config_json, created],
                )
            stored = s.run(
                "SELECT config_hash FROM model_versions WHERE name = ? AND version = ?", [name, version]
            )
            if stored and stored[0][0] != config_hash:
                raise ConfigError(
                    f"model {name!r} version {version!r} is already recorded with config {stored[0][0]}, not "
                    f"{config_hash}; a version's config never changes, so record the new config as a new "
                    f"version."
                )
            if stored:
                s.run(
                    f"UPDATE model_versions SET metrics = CAST(? AS {self.types['json']}), stage = ? "
                    f"WHERE name = ? AND version = ?",
                    [metrics_json, stage.value, name, version],
                )
            else:
                s.run(
                    f"INSERT INTO model_versions (name, version, config_hash, metrics, stage, created_at) "
                    f"VALUES (?, ?, ?, CAST(? AS {self.types['json']}), ?, ?)",
                    [name, version, config_hash, metrics_json, stage.value, created],
                )
        return self._model_versions(name=name, version=version)[0]

    def get_model_versions(
        self, name: str | None = None, *, stage: ModelStage | str | None = None
    ) -> list[ModelVersion]:
        """Recorded model versions (of ``name``, in ``stage``), sorted by name, ``created_at``, version."""
        stage = None if stage is None else _enum(ModelStage, stage, "stage")
        return self._model_versions(name=name, stage=stage)

    def set_model_stage(self, name: str, version: str, stage: ModelStage | str) -> ModelVersion:
        """Move a recorded version to ``stage`` (promotion, retirement); returns the updated version.

        Raises
        ------
        DataNotFoundError
            The version is not recorded.
        """
        stage = _enum(ModelStage, stage, "stage")
        self._check_version()
        with self._session("changing a model stage") as s:
            if not s.run("SELECT 1 FROM model_versions WHERE name = ? AND version = ?", [name, version]):
                raise DataNotFoundError(
                    f"model {name!r} version {version!r} is not recorded in {self.location}; "
                    f"record it with record_model_version() first."
                )
            s.run(
                "UPDATE model_versions SET stage = ? WHERE name = ? AND version = ?",
                [stage.value, name, version],
            )
        return self._model_versions(name=name, version=version)[0]

    def _model_versions(
        self, *, name: str | None = None, version: str | None = None, stage: ModelStage | None = None
    ) -> list[ModelVersion]:
        where, params = [], []
        for column, value in (("v.name", name), ("v.version", version), ("v.stage", stage)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(str(value))
        self._check_version()
        with self._session("reading model versions") as s:
            rows = s.run(
                f"""
                SELECT v.name, v.version, v.config_hash, CAST(c.config AS TEXT), CAST(v.metrics AS TEXT),
                       v.stage, v.created_at
                FROM model_versions AS v JOIN model_configs AS c ON c.config_hash = v.config_hash
                {"WHERE " + " AND ".join(where) if where else ""}
                ORDER BY v.name, v.created_at, v.version
                """,
                params,
            )
        return [
            ModelVersion(
                name=r[0],
                version=r[1],
                config_hash=r[2],
                config=json.loads(r[3]),
                metrics=json.loads(r[4]),
                stage=ModelStage(r[5]),
                created_at=_utc(r[6]),
            )
            for r in rows
        ]

    # ------------------------------------------------------------------ orders and fills

    def record_order(self, order: Order, *, account_id: str | None = None) -> bool:
        """Record an order before it is sent, in state ``new``; idempotent on ``client_order_id``.

        Returns
        -------
        bool
            True when recorded now, False when the identical order was already recorded (a retry).

        Raises
        ------
        StorageError
            Its ``client_order_id`` is already recorded for a different order.
        DataNotFoundError
            ``account_id`` is not a stored account.
        """
        if not isinstance(order, Order):
            raise DataFormatError(f"record_order() takes an Order, got {type(order).__name__}.")
        self._check_version()
        with self._session("recording an order") as s:
            if account_id is not None and not s.run(
                "SELECT 1 FROM accounts WHERE account_id = ?", [account_id]
            ):
                raise DataNotFoundError(
                    f"record_order(): no account {account_id!r} in {self.location}; upsert_account() it "
                    f"first."
                )
            existing = s.run(
                f"SELECT {_ORDER_COLUMNS} FROM orders WHERE client_order_id = ?", [order.client_order_id]
            )
            if existing:
                stored = _order_record(existing[0])
                if stored.order != order or stored.account_id != account_id:
                    raise StorageError(
                        f"client_order_id {order.client_order_id!r} is already recorded for a different "
                        f"order ({stored.order.side} {stored.order.quantity} {stored.order.symbol} at "
                        f"{stored.order.ts.isoformat()}); client order ids are unique, so give a new order a "
                        f"new id (alphaloom.core.types.new_client_order_id())."
                    )
                return False
            s.run(
                """
                INSERT INTO orders (client_order_id, account_id, symbol, side, quantity, order_type,
                    limit_price, stop_price, time_in_force, ts, status, venue_order_id, filled_quantity,
                    avg_fill_price, message, updated_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, '', 0, NULL, '', ?)
                """,
                [
                    order.client_order_id,
                    account_id,
                    order.symbol,
                    order.side.value,
                    order.quantity,
                    order.order_type.value,
                    order.limit_price,
                    order.stop_price,
                    order.time_in_force.value,
                    order.ts,
                    OrderStatus.NEW.value,
                    order.ts,
                ],
            )
        return True

    def record_order_result(self, result: OrderResult) -> int:
        """Apply what a venue said about a recorded order: its state and any new fills.

        The order's state (status, venue id, filled quantity, average price, message) changes only when
        ``result.ts`` is not older than the last result applied, so a late, stale message cannot undo a
        newer one. Fills are keyed on ``fill_id``: a fill already recorded is skipped, so replaying a result
        is harmless.

        Returns
        -------
        int
            Fills recorded now.

        Raises
        ------
        DataNotFoundError
            The order was never recorded with :meth:`record_order`.
        DataFormatError
            A fill belongs to another order, symbol or side.
        StorageError
            A ``fill_id`` is already recorded for another order.
        """
        if not isinstance(result, OrderResult):
            raise DataFormatError(f"record_order_result() takes an OrderResult, got {type(result).__name__}.")
        cid = result.client_order_id
        self._check_version()
        with self._session("recording an order result") as s:
            rows = s.run("SELECT symbol, side, updated_at FROM orders WHERE client_order_id = ?", [cid])
            if not rows:
                raise DataNotFoundError(
                    f"record_order_result(): no order {cid!r} in {self.location}; record_order() it before "
                    f"sending it, so every fill has its order."
                )
            symbol, side, updated_at = rows[0][0], rows[0][1], _utc(rows[0][2])
            for fill in result.fills:
                if (fill.client_order_id, fill.symbol, fill.side.value) != (cid, symbol, side):
                    raise DataFormatError(
                        f"record_order_result(): fill {fill.fill_id!r} ({fill.client_order_id}, {fill.side} "
                        f"{fill.symbol}) does not belong to order {cid!r} ({side} {symbol})."
                    )
            if result.ts >= updated_at:
                s.run(
                    """
                    UPDATE orders SET status = ?,
                        venue_order_id = CASE WHEN ? = '' THEN venue_order_id ELSE ? END,
                        filled_quantity = ?, avg_fill_price = ?, message = ?, updated_at = ?
                    WHERE client_order_id = ?
                    """,
                    [
                        result.status.value,
                        result.venue_order_id,
                        result.venue_order_id,
                        result.filled_quantity,
                        result.avg_fill_price,
                        result.message,
                        result.ts,
                        cid,
                    ],
                )
            if not result.fills:
                return 0
            ids = [f.fill_id for f in result.fills]
            marks = ", ".join("?" * len(ids))
            held = dict(s.run(f"SELECT fill_id, client_order_id FROM fills WHERE fill_id IN ({marks})", ids))
            foreign = [f for f, owner in held.items() if owner != cid]
            if foreign:
                raise StorageError(
                    f"record_order_result(): fill id {foreign[0]!r} is already recorded for order "
                    f"{held[foreign[0]]!r}, not {cid!r}; fill ids are unique."
                )
            new = [f for f in dict.fromkeys(ids) if f not in held]
            by_id = {f.fill_id: f for f in result.fills}
            for fill_id in new:
                fill = by_id[fill_id]
                s.run(
                    "INSERT INTO fills (fill_id, client_order_id, symbol, side, quantity, price, fee, ts) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [
                        fill.fill_id,
                        cid,
                        fill.symbol,
                        fill.side.value,
                        fill.quantity,
                        fill.price,
                        fill.fee,
                        fill.ts,
                    ],
                )
        return len(new)

    def order(self, client_order_id: str) -> OrderRecord:
        """One recorded order by its client order id.

        Raises
        ------
        DataNotFoundError
            No order has that id.
        """
        self._check_version()
        with self._session("reading an order") as s:
            rows = s.run(f"SELECT {_ORDER_COLUMNS} FROM orders WHERE client_order_id = ?", [client_order_id])
        if not rows:
            raise DataNotFoundError(
                f"no order {client_order_id!r} in the relational store at {self.location}."
            )
        return _order_record(rows[0])

    def orders(
        self,
        *,
        symbol: str | None = None,
        status: OrderStatus | str | None = None,
        account_id: str | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> list[OrderRecord]:
        """Recorded orders, filtered, sorted by ``ts`` then ``client_order_id``.

        Parameters
        ----------
        symbol, status, account_id
            Keep only orders with these values.
        start, end
            Keep orders with ``start <= ts < end`` (timezone-aware; ``None`` leaves that side open).
        """
        where, params = _filters(symbol=symbol, account_id=account_id, start=start, end=end)
        if status is not None:
            where.append("status = ?")
            params.append(_enum(OrderStatus, status, "status").value)
        self._check_version()
        with self._session("reading orders") as s:
            rows = s.run(
                f"SELECT {_ORDER_COLUMNS} FROM orders {'WHERE ' + ' AND '.join(where) if where else ''} "
                f"ORDER BY ts, client_order_id",
                params,
            )
        return [_order_record(r) for r in rows]

    def fills(
        self,
        *,
        client_order_id: str | None = None,
        symbol: str | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> list[Fill]:
        """Recorded fills, filtered like :meth:`orders`, sorted by ``ts`` then ``fill_id``."""
        where, params = _filters(client_order_id=client_order_id, symbol=symbol, start=start, end=end)
        self._check_version()
        with self._session("reading fills") as s:
            rows = s.run(
                f"SELECT client_order_id, fill_id, symbol, side, quantity, price, fee, ts FROM fills "
                f"{'WHERE ' + ' AND '.join(where) if where else ''} ORDER BY ts, fill_id",
                params,
            )
        return [
            Fill(
                client_order_id=r[0],
                fill_id=r[1],
                symbol=r[2],
                side=Side(r[3]),
                quantity=r[4],
                price=r[5],
                fee=r[6],
                ts=_utc(r[7]),
            )
            for r in rows
        ]

    # ------------------------------------------------------------------ audit log

    def append_audit(
        self, actor: str, action: str, payload: Mapping[str, Any] | None = None, *, ts: datetime | None = None
    ) -> AuditRecord:
        """Append a record to the audit log, chained to the one before it.

        Parameters
        ----------
        actor
            Who acted (``"user:alice"``, ``"engine"``).
        action
            What happened (``"order.submitted"``, ``"model.promoted"``).
        payload
            Details as JSON-able values; stored exactly as its canonical JSON.
        ts
            When it happened (aware, microsecond precision); now by default.

        Returns
        -------
        AuditRecord
            The stored record with its ``id``, ``prev_hash`` and ``hash``.
        """
        actor, action = _name(actor, "actor"), _name(action, "action")
        if payload is not None and not isinstance(payload, Mapping):
            raise DataFormatError(f"append_audit(): payload must be a mapping, got {type(payload).__name__}.")
        payload_json = canonical_json(dict(payload or {}), what="the audit payload")
        when = self._now() if ts is None else ensure_utc(ts, name="ts")
        self._check_version()
        with self._session("appending to the audit log") as s:
            s.lock("audit")
            last = s.run("SELECT id, hash FROM audit_log ORDER BY id DESC LIMIT 1")
            record_id, prev_hash = (int(last[0][0]) + 1, last[0][1]) if last else (1, GENESIS_HASH)
            digest = _audit_hash(prev_hash, record_id, when, actor, action, payload_json)
            s.run(
                f"INSERT INTO audit_log (id, ts, actor, action, payload, prev_hash, hash) "
                f"VALUES (?, ?, ?, ?, CAST(? AS {self.types['json_exact']}), ?, ?)",
                [record_id, when, actor, action, payload_json, prev_hash, digest],
            )
        return AuditRecord(record_id, when, actor, action, json.loads(payload_json), prev_hash, digest)

    def audit_log(
        self,
        *,
        actor: str | None = None,
        action: str | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> list[AuditRecord]:
        """Audit records, filtered (``start <= ts < end``), in the order they were appended."""
        where, params = _filters(actor=actor, action=action, start=start, end=end)
        return [
            AuditRecord(r[0], r[1], r[2], r[3], json.loads(r[4]), r[5], r[6])
            for r in self._audit_rows(where, params)
        ]

    def verify_audit_chain(self, *, head_hash: str | None = None) -> list[AuditProblem]:
        """Check the whole audit log against its hash chain.

        Finds records whose content was edited (their hash no longer matches), records deleted or reordered
        (a broken link to the previous hash, or a gap in the ids), and a log that does not start at record 1.
        Deleting the newest records leaves a valid, shorter chain; to catch that, keep the ``hash`` of a
        record elsewhere and pass it as ``head_hash``.

        Parameters
        ----------
        head_hash
            A hash the log must still contain.

        Returns
        -------
        list of AuditProblem
            Empty when the log is intact.
        """
        problems: list[AuditProblem] = []
        expected_id, prev_hash, seen_head = 1, GENESIS_HASH, head_hash is None
        for record_id, ts, actor, action, payload_json, stored_prev, digest in self._audit_rows([], []):
            if record_id != expected_id:
                problems.append(
                    AuditProblem(
                        record_id,
                        f"expected id {expected_id}: records {expected_id}..{record_id - 1} are missing"
                        if record_id > expected_id
                        else f"expected id {expected_id}: the ids repeat or go backwards",
                    )
                )
            if stored_prev != prev_hash:
                problems.append(
                    AuditProblem(
                        record_id,
                        "prev_hash does not match the hash of the record before it; records were deleted, "
                        "reordered or replaced",
                    )
                )
            if _audit_hash(stored_prev, record_id, ts, actor, action, payload_json) != digest:
                problems.append(
                    AuditProblem(
                        record_id, "hash does not match the record's content; it was edited after writing"
                    )
                )
            seen_head = seen_head or digest == head_hash
            expected_id, prev_hash = record_id + 1, digest
        if not seen_head:
            problems.append(
                AuditProblem(
                    0, f"the hash {head_hash} is no longer in the log; records were deleted from its end"
                )
            )
        return problems

    def _audit_rows(self, where: list[str], params: list[Any]) -> list[tuple[Any, ...]]:
        self._check_version()
        with self._session("reading the audit log") as s:
            rows = s.run(
                f"SELECT id, ts, actor, action, CAST(payload AS TEXT), prev_hash, hash FROM audit_log "
                f"{'WHERE ' + ' AND '.join(where) if where else ''} ORDER BY id",
                params,
            )
        return [(int(r[0]), _utc(r[1]), *r[2:]) for r in rows]


_ORDER_COLUMNS = (
    "client_order_id, account_id, symbol, side, quantity, order_type, limit_price, stop_price, "
    "time_in_force, ts, status, venue_order_id, filled_quantity, avg_fill_price, message, updated_at"
)


def _order_record(r: Sequence[Any]) -> OrderRecord:
    order = Order(
        client_order_id=r[0],
        symbol=r[2],
        side=Side(r[3]),
        quantity=r[4],
        order_type=OrderType(r[5]),
        limit_price=r[6],
        stop_price=r[7],
        time_in_force=TimeInForce(r[8]),
        ts=_utc(r[9]),
    )
    return OrderRecord(
        order=order,
        account_id=r[1],
        status=OrderStatus(r[10]),
        venue_order_id=r[11],
        filled_quantity=r[12],
        avg_fill_price=r[13],
        message=r[14],
        updated_at=_utc(r[15]),
    )


def _filters(
    *, start: datetime | None = None, end: datetime | None = None, **equal: str | None
) -> tuple[list[str], list[Any]]:
    where: list[str] = []
    params: list[Any] = []
    for column, value in equal.items():
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    if start is not None:
        where.append("ts >= ?")
        params.append(ensure_utc(start, name="start"))
    if end is not None:
        where.append("ts < ?")
        params.append(ensure_utc(end, name="end"))
    return where, params


# ---------------------------------------------------------------------- DuckDB


class _DuckDBSession(_Session):
    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self._con = con

    def run(self, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        # Rows come through Arrow: DuckDB's own conversion of TIMESTAMPTZ to Python needs pytz.
        relation = self._con.sql(statement, params=list(params) if params else None)
        if relation is None:
            return []
        return [tuple(row.values()) for row in relation.to_arrow_table().to_pylist()]

    def lock(self, purpose: str) -> None:
        # One process writes a DuckDB file at a time, and the store's own lock serialises its threads.
        return None


class DuckDBRelationalStore(RelationalStore):
    """Relational records in a DuckDB file (the embedded default).

    Parameters
    ----------
    path
        The database file, created with its parent directories; it may be the bar store's file (the tables
        do not collide). ``":memory:"`` gives a throw-away store.
    migrate
        Bring the schema up to date on opening (default). With ``False``, call :meth:`migrate` yourself;
        the typed methods refuse an out-of-date schema.
    clock
        Source of default timestamps; the wall clock by default.

    Raises
    ------
    StorageError
        The file cannot be opened, or holds a newer schema than this alphaloom knows.
    """

    dialect = "duckdb"
    types: ClassVar[Mapping[str, str]] = {
        "text": "VARCHAR",
        "double": "DOUBLE",
        "bigint": "BIGINT",
        "ts": "TIMESTAMPTZ",
        "json": "VARCHAR",
        "json_exact": "VARCHAR",
    }

    def __init__(self, path: str | Path, *, migrate: bool = True, clock: Clock | None = None) -> None:
        super().__init__(clock=clock)
        self._memory = str(path) == _MEMORY
        self._path = Path(path) if self._memory else Path(path).expanduser()
        self._lock = threading.RLock()
        self._con: duckdb.DuckDBPyConnection | None = None
        try:
            if not self._memory:
                self._path.parent.mkdir(parents=True, exist_ok=True)
            self._con = duckdb.connect(_MEMORY if self._memory else str(self._path))
            self._con.execute("SET TimeZone = 'UTC'")
        except OSError as exc:
            raise StorageError(f"cannot create the directory for {self._path}: {exc.strerror}.") from exc
        except duckdb.Error as exc:
            raise StorageError(
                f"cannot open the relational store at {self.location}: {_first_line(exc)}"
            ) from exc
        try:
            if migrate:
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
                raise StorageError(f"the relational store at {self.location} is closed; open a new one.")
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
                    f"{action} failed on the relational store at {self.location}: {_first_line(exc)}"
                ) from exc


# ---------------------------------------------------------------------- PostgreSQL


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

    def lock(self, purpose: str) -> None:
        self._cur.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", [f"alphaloom:{self._schema}:{purpose}"]
        )


class PostgresRelationalStore(RelationalStore):
    """Relational records in a PostgreSQL schema (production).

    Parameters
    ----------
    dsn
        A libpq connection string; its password never appears in messages.
    schema
        The schema holding the tables, created when missing; it may be the bar store's schema.
    migrate
        Bring the schema up to date on opening (default); migrations take an advisory lock, so several
        processes starting at once apply them once.
    clock
        Source of default timestamps; the wall clock by default.
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
        "ts": "timestamptz",
        "json": "jsonb",
        "json_exact": "json",
    }

    def __init__(
        self,
        dsn: str,
        *,
        schema: str = "alphaloom",
        migrate: bool = True,
        clock: Clock | None = None,
        tls: PostgresTLS | None = None,
    ) -> None:
        super().__init__(clock=clock)
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
                f"opening the relational store at {self.location} failed: {self._clean(exc)}"
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
                raise StorageError(f"the relational store at {self.location} is closed; open a new one.")
            try:
                with self._con.transaction(), self._con.cursor() as cur:
                    yield _PostgresSession(cur, self._schema)
            except psycopg.Error as exc:
                raise StorageError(
                    f"{action} failed on the relational store at {self.location}: {self._clean(exc)}"
                ) from exc
