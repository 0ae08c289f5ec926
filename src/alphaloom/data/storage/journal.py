"""A relational store that survives its database going down: writes are journaled locally and replayed.

:class:`JournaledRelationalStore` wraps a :class:`~alphaloom.data.storage.relational.RelationalStore` (in
production a :class:`~alphaloom.data.storage.relational.PostgresRelationalStore`) opened by a factory. While
the database answers, every call goes straight through. When a write fails because the database cannot be
reached (connection refused or reset, the server shutting down or starting up: see :func:`is_unreachable`),
the write is appended to a local SQLite journal (committed with ``synchronous=FULL``, so it survives a
SIGKILL or a power loss) and the store reports itself degraded. Every later write joins the journal behind
it, so the order of writes is kept. Once ``retry_after_s`` has passed the store reconnects (a new
connection from the factory) and replays the journal in order, deleting each entry once the database has
it; then writes go straight through again.

Why our own journal rather than a queue or PostgreSQL's own tools: the writes must survive the trading
process being killed while the database is away, must come back in order into a hash-chained audit log, and
must be idempotent when a replay is itself interrupted. A local SQLite file with one row per write gives all
three with no extra service to run.

What is journaled: :meth:`~JournaledRelationalStore.upsert_account`,
:meth:`~JournaledRelationalStore.record_order`, :meth:`~JournaledRelationalStore.record_order_result` and
:meth:`~JournaledRelationalStore.append_audit`: the writes of a trading loop, which must never stop for a
database. Model-registry writes (``record_model_version``, ``set_model_stage``) are not on a trading path
and raise :class:`~alphaloom.core.exceptions.StorageError` while the database is down.

Audit chain. A record's hash covers its id, timestamp, actor, action, payload and the previous record's
hash, so the hash is computed by the database store at insert time, never by the journal. The journal keeps
the record's timestamp *taken when it was written* (not the replay time) and its canonical JSON payload, so
the replayed chain is byte for byte the chain an undisturbed run would have written. The record returned
while journaling carries the id and hashes the chain will give it (the last known head, kept in the journal
file, plus one per journaled record), so callers that cite audit ids (the trading engine's signal ids) cite
the right ones. This assumes one writer of the audit log, as the trading loop is; a replayed record that
lands elsewhere than predicted (another process appended meanwhile) is logged as an error, and the chain
itself stays valid.

Replay is idempotent: orders are keyed on ``client_order_id``, fills on ``fill_id``, accounts are upserts,
and an audit entry whose record (same timestamp, actor, action and payload) is already in the log is
skipped, so a process killed in the middle of a replay replays again without a duplicate. A journaled write
the database refuses for a reason other than being unreachable (a conflicting order id) cannot be handed back
to its caller any more: it is moved to the journal's ``rejected`` table with the error, logged as an error
and counted in :meth:`JournaledRelationalStore.health`, and the replay goes on.

Reads while the database is down answer from what this store knows: the orders, fills and accounts it wrote
or read in this process, and the journal's entries (also those of an earlier process). Such answers may miss
older records; :meth:`JournaledRelationalStore.health` says so (``status="degraded"``, ``partial_reads``) and
one warning is logged per outage. Audit-log reads and chain verification need the database and raise
:class:`~alphaloom.core.exceptions.StorageError` until it is back.

One process writes a journal at a time: the store holds an exclusive lock on ``<journal>.lock`` (released by
the operating system when the process dies, so a killed process never blocks its successor).
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import psycopg

from alphaloom.core.clock import Clock
from alphaloom.core.exceptions import ConfigError, DataFormatError, DataNotFoundError, StorageError
from alphaloom.core.timeutil import ensure_utc
from alphaloom.core.types import Account, Fill, Order, OrderResult, OrderStatus
from alphaloom.data.storage.relational import (
    GENESIS_HASH,
    AuditProblem,
    AuditRecord,
    ModelStage,
    ModelVersion,
    OrderRecord,
    RelationalStore,
    _audit_hash,
    _name,
    _Session,
    canonical_json,
)

try:  # POSIX; elsewhere the one-writer rule is documented but not enforced
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["JournalHealth", "JournaledRelationalStore", "is_unreachable"]

logger = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS pending (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    op TEXT NOT NULL,
    payload TEXT NOT NULL,
    written_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS rejected (
    seq INTEGER PRIMARY KEY,
    op TEXT NOT NULL,
    payload TEXT NOT NULL,
    written_at TEXT NOT NULL,
    error TEXT NOT NULL,
    rejected_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

_OPS = ("upsert_account", "record_order", "record_order_result", "append_audit")

# SQLSTATE classes and codes that mean "the server is away or going away", not "your request is wrong":
# connection exceptions (08), operator intervention (57P01 admin shutdown, 57P02 crash shutdown, 57P03
# cannot connect now) and too many connections (53300).
_TRANSIENT_SQLSTATE_PREFIXES = ("08", "57P0")
_TRANSIENT_SQLSTATES = {"53300"}
# A connection attempt fails without a SQLSTATE; the server's refusals then read "FATAL: ...". These are the
# refusals that pass by themselves (the others, a wrong password or database, are configuration errors).
_TRANSIENT_FATAL = (
    "the database system is starting up",
    "the database system is shutting down",
    "the database system is in recovery mode",
    "the database system is not yet accepting connections",
    "the database system is not accepting connections",
    "terminating connection due to administrator command",
    "too many clients",
    "remaining connection slots are reserved",
)


def is_unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` (or an exception it was raised from) means the database could not be reached.

    Connection refused or reset, a server shutting down or starting up, a lost connection, a timeout: these
    are outages, worth journaling and retrying. Anything else (a constraint, a conflicting order id, bad
    input, a wrong password or database name) is a real error and must reach the caller.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, psycopg.InterfaceError):
            return True  # the connection is closed or broken on our side
        if isinstance(current, psycopg.Error):
            state = current.sqlstate or ""
            if state:
                return state.startswith(_TRANSIENT_SQLSTATE_PREFIXES) or state in _TRANSIENT_SQLSTATES
            if isinstance(current, psycopg.OperationalError):
                text = str(current)
                return "FATAL:" not in text or any(p in text for p in _TRANSIENT_FATAL)
            return False
        if isinstance(current, ConnectionError | TimeoutError):
            return True
        current = current.__cause__ or current.__context__
    return False


@dataclass(frozen=True, slots=True)
class JournalHealth:
    """How a :class:`JournaledRelationalStore` is doing.

    Attributes
    ----------
    status
        ``"ok"`` (writes reach the database) or ``"degraded"`` (writes go to the journal).
    database
        Where the records live (password-free).
    journal
        The journal file.
    pending
        Writes in the journal, not yet in the database.
    rejected
        Journaled writes the database refused on replay (kept in the journal's ``rejected`` table).
    journaled, replayed
        Writes journaled and replayed by this process.
    journaled_total, replayed_total
        The same over the journal's whole life (every process that wrote it).
    outages
        Times the database became unreachable in this process.
    partial_reads
        Reads answered from what this store knew while the database was down (they may miss records).
    down_since
        When the current outage began (UTC), ``None`` when ok.
    last_error
        The last connection error.
    """

    status: str
    database: str
    journal: str
    pending: int
    rejected: int
    journaled: int
    replayed: int
    journaled_total: int
    replayed_total: int
    outages: int
    partial_reads: int
    down_since: datetime | None
    last_error: str

    @property
    def ok(self) -> bool:
        return self.status == "ok"


class _Journal:
    """The SQLite journal: pending writes in order, writes the database refused, and the audit head."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock_file: Any = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._take_lock(path)
            self._con = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
            self._con.execute("PRAGMA journal_mode=WAL")
            # NORMAL (survives a killed process) for the frequent head updates; appends switch to FULL.
            self._con.execute("PRAGMA synchronous=NORMAL")
            self._con.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            self._release_lock()
            raise StorageError(
                f"cannot open the write journal at {path}: {exc}; pass a writable journal path."
            ) from exc

    def _take_lock(self, path: Path) -> None:
        if fcntl is None:  # pragma: no cover - Windows
            return
        handle = open(f"{path}.lock", "a+")  # noqa: SIM115 - held for the journal's lifetime
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise StorageError(
                f"the write journal {path} is in use by another process; one process writes a journal at a "
                "time, so give each trading process its own journal file."
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._lock_file = handle

    def _release_lock(self) -> None:
        if self._lock_file is not None:
            self._lock_file.close()  # closing the descriptor releases the flock
            self._lock_file = None

    @contextmanager
    def _tx(self) -> Iterator[None]:
        # The connection runs in autocommit mode (isolation_level=None), where ``with con:`` opens no
        # transaction; the statements of one journal change must land together.
        self._con.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._con.execute("ROLLBACK")
            raise
        self._con.execute("COMMIT")

    def append(self, op: str, payload: str) -> int:
        self._con.execute("PRAGMA synchronous=FULL")
        try:
            with self._tx():
                cur = self._con.execute(
                    "INSERT INTO pending (op, payload, written_at) VALUES (?, ?, ?)",
                    (op, payload, datetime.now(UTC).isoformat()),
                )
                self._bump("journaled_total")
        finally:
            self._con.execute("PRAGMA synchronous=NORMAL")
        return int(cur.lastrowid or 0)

    def entries(self) -> list[tuple[int, str, str]]:
        return [
            (int(seq), str(op), str(payload))
            for seq, op, payload in self._con.execute("SELECT seq, op, payload FROM pending ORDER BY seq")
        ]

    def delete(self, seq: int) -> None:
        with self._tx():
            self._con.execute("DELETE FROM pending WHERE seq = ?", (seq,))
            self._bump("replayed_total")

    def _bump(self, key: str) -> None:
        self._con.execute(
            "INSERT INTO meta (key, value) VALUES (?, '1') "
            "ON CONFLICT (key) DO UPDATE SET value = CAST(value AS INTEGER) + 1",
            (key,),
        )

    def total(self, key: str) -> int:
        raw = self.get(key)
        return 0 if raw is None else int(raw)

    def reject(self, seq: int, error: str) -> None:
        with self._tx():
            self._con.execute(
                "INSERT OR REPLACE INTO rejected (seq, op, payload, written_at, error, rejected_at) "
                "SELECT seq, op, payload, written_at, ?, ? FROM pending WHERE seq = ?",
                (error, datetime.now(UTC).isoformat(), seq),
            )
            self._con.execute("DELETE FROM pending WHERE seq = ?", (seq,))

    def count(self, table: str = "pending") -> int:
        return int(self._con.execute(f"SELECT count(*) FROM {table}").fetchone()[0])

    def get(self, key: str) -> str | None:
        row = self._con.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def put(self, key: str, value: str) -> None:
        with self._tx():
            self._con.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = ?",
                (key, value, value),
            )

    def close(self) -> None:
        try:
            self._con.close()
        finally:
            self._release_lock()


class JournaledRelationalStore(RelationalStore):
    """A relational store whose writes survive the database going down; see the module docstring.

    Parameters
    ----------
    connect
        Opens the database store (called at start and again to reconnect after an outage), e.g.
        ``lambda: PostgresRelationalStore(dsn)``.
    journal
        The local SQLite journal file (created with its directories). Keep it on local disk, one per
        writer process; a journal left by a killed process is replayed by the next one.
    retry_after_s
        Wall-clock seconds between reconnection attempts while the database is down.
    clock
        Source of default timestamps of audit records (the wall clock by default); a record's timestamp is
        taken when it is written, journaled or not.

    Raises
    ------
    ConfigError
        ``connect`` is not callable or ``retry_after_s`` is negative.
    StorageError
        The journal cannot be opened or is in use by another process, or the database refuses for a reason
        other than being unreachable (wrong password or database name, a newer schema).

    Examples
    --------
    >>> records = JournaledRelationalStore(                       # doctest: +SKIP
    ...     lambda: PostgresRelationalStore("postgresql://alphaloom@db/alphaloom"), "trade/records.journal"
    ... )
    >>> records.append_audit("engine", "execution.start", {"run_id": "r1"})   # journaled if db is down
    >>> records.health().status                                   # "ok" or "degraded"
    """

    dialect = "journaled"
    types: ClassVar[Mapping[str, str]] = {}

    def __init__(
        self,
        connect: Callable[[], RelationalStore],
        journal: str | Path,
        *,
        retry_after_s: float = 1.0,
        clock: Clock | None = None,
    ) -> None:
        super().__init__(clock=clock)
        if not callable(connect):
            raise ConfigError(f"connect must be a callable that opens a RelationalStore, got {connect!r}.")
        if (
            isinstance(retry_after_s, bool)
            or not isinstance(retry_after_s, int | float)
            or not retry_after_s >= 0
        ):
            raise ConfigError(f"retry_after_s must be a number of seconds >= 0, got {retry_after_s!r}.")
        self._connect = connect
        self._retry_after_s = float(retry_after_s)
        self._journal_path = Path(journal).expanduser()
        self._journal: _Journal | None = _Journal(self._journal_path)
        self._lock = threading.RLock()
        self._inner: RelationalStore | None = None
        self._database = "the relational database (not reached yet)"
        self._down_since: datetime | None = None
        self._last_attempt = -float("inf")
        self._last_error = ""
        self._journaled = 0
        self._replayed = 0
        self._outages = 0
        self._partial_reads = 0
        self._warned_partial = False
        self._known_orders: dict[str, OrderRecord] = {}
        self._known_fills: dict[str, Fill] = {}
        self._known_accounts: dict[str, Account] = {}
        entries = self._journal.entries()
        self._pending = bool(entries)
        for _, op, payload in entries:  # what an earlier process left unreplayed
            self._remember(op, payload)
        try:
            with self._lock:
                if self._reachable(force=True):
                    self._drain()
                elif self._pending:
                    logger.warning(
                        "%d write(s) from an earlier process wait in %s; they are replayed when the database "
                        "is back",
                        len(entries),
                        self._journal_path,
                    )
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ RelationalStore plumbing

    @property
    def location(self) -> str:
        return f"{self._database} (journal {self._journal_path})"

    @property
    def journal_path(self) -> Path:
        """The local journal file."""
        return self._journal_path

    @property
    def closed(self) -> bool:
        return self._journal is None

    def close(self) -> None:
        """Replay what the journal holds if the database is back, then release both.

        A journal that still holds writes stays on disk; the next store opened on it replays them.
        """
        with self._lock:
            if self._journal is None:
                return
            try:
                if self._pending:
                    self._drain(force=True)
                pending = self._journal.count()
                if pending:
                    logger.warning(
                        "closing with %d write(s) still journaled in %s (the database is down); the next "
                        "store opened on this journal replays them",
                        pending,
                        self._journal_path,
                    )
            finally:
                if self._inner is not None:
                    try:
                        self._inner.close()
                    except Exception:  # the connection may already be broken; closing is best effort
                        logger.debug("closing the database store failed", exc_info=True)
                    self._inner = None
                self._journal.close()
                self._journal = None

    def _session(self, action: str) -> AbstractContextManager[_Session]:
        return self._with_inner(action, lambda inner: inner._session(action))

    def migrate(self) -> list[int]:
        return self._with_inner("migrating the schema", lambda inner: inner.migrate())

    def schema_version(self) -> int:
        return self._with_inner("reading the schema version", lambda inner: inner.schema_version())

    def health(self) -> JournalHealth:
        """Whether writes reach the database, and what the journal holds."""
        with self._lock:
            journal = self._journal
            return JournalHealth(
                status="ok" if self._down_since is None else "degraded",
                database=self._database,
                journal=str(self._journal_path),
                pending=0 if journal is None else journal.count(),
                rejected=0 if journal is None else journal.count("rejected"),
                journaled=self._journaled,
                replayed=self._replayed,
                journaled_total=0 if journal is None else journal.total("journaled_total"),
                replayed_total=0 if journal is None else journal.total("replayed_total"),
                outages=self._outages,
                partial_reads=self._partial_reads,
                down_since=self._down_since,
                last_error=self._last_error,
            )

    def replay(self) -> int:
        """Reconnect now if needed and replay the journal; returns the writes replayed (0 while down)."""
        with self._lock:
            self._check_open()
            before = self._replayed
            self._drain(force=True)
            return self._replayed - before

    # ------------------------------------------------------------------ journaled writes

    def upsert_account(self, account: Account) -> None:
        if not isinstance(account, Account):
            raise DataFormatError(f"upsert_account() takes an Account, got {type(account).__name__}.")
        self._write("upsert_account", account.model_dump_json())

    def record_order(self, order: Order, *, account_id: str | None = None) -> bool:
        if not isinstance(order, Order):
            raise DataFormatError(f"record_order() takes an Order, got {type(order).__name__}.")
        payload = json.dumps({"order": order.model_dump(mode="json"), "account_id": account_id})
        with self._lock:
            known = order.client_order_id in self._known_orders
            result = self._write("record_order", payload)
        if result is None:  # journaled: answer as the database would, as far as this store knows
            return not known
        return bool(result)

    def record_order_result(self, result: OrderResult) -> int:
        if not isinstance(result, OrderResult):
            raise DataFormatError(f"record_order_result() takes an OrderResult, got {type(result).__name__}.")
        cid = result.client_order_id

        def refuse_unknown() -> None:
            # Journaling the result of an order this store never saw could leave a fill without its order;
            # the database would refuse it too, and raising lets the engine record the order first.
            if cid not in self._known_orders:
                raise DataNotFoundError(
                    f"record_order_result(): no order {cid!r} is known while {self._database} is down; "
                    "record_order() it first."
                )

        with self._lock:
            new = len(
                [f for f in dict.fromkeys(f.fill_id for f in result.fills) if f not in self._known_fills]
            )
            written = self._write(
                "record_order_result", result.model_dump_json(), before_journal=refuse_unknown
            )
        return new if written is None else int(written)

    def append_audit(
        self, actor: str, action: str, payload: Mapping[str, Any] | None = None, *, ts: datetime | None = None
    ) -> AuditRecord:
        actor, action = _name(actor, "actor"), _name(action, "action")
        if payload is not None and not isinstance(payload, Mapping):
            raise DataFormatError(f"append_audit(): payload must be a mapping, got {type(payload).__name__}.")
        payload_json = canonical_json(dict(payload or {}), what="the audit payload")
        # The timestamp is taken now, journaled or not: the replayed record hashes as it would have.
        when = self._now() if ts is None else ensure_utc(ts, name="ts")
        entry = {
            "actor": actor,
            "action": action,
            "payload": payload_json,
            "ts": when.astimezone(UTC).isoformat(timespec="microseconds"),
        }
        with self._lock:
            predicted: tuple[int, str] | None = None

            def predict() -> None:
                # The id and hashes the chain will give the record when it is replayed; kept in the entry so
                # the replay can tell when the chain moved on without us.
                nonlocal predicted
                head_id, head_hash = self._head()
                record_id = head_id + 1
                digest = _audit_hash(head_hash, record_id, when, actor, action, payload_json)
                predicted = (record_id, head_hash)
                entry["predicted"] = [record_id, digest]

            record = self._write("append_audit", entry, before_journal=predict)
            if isinstance(record, AuditRecord):
                return record
            assert predicted is not None
            record_id, prev_hash = predicted
            digest = entry["predicted"][1]
            self._set_head(record_id, digest)
            return AuditRecord(record_id, when, actor, action, json.loads(payload_json), prev_hash, digest)

    # ------------------------------------------------------------------ writes that need the database

    def record_model_version(self, *args: Any, **kwargs: Any) -> ModelVersion:
        return self._with_inner(
            "recording a model version", lambda i: i.record_model_version(*args, **kwargs)
        )

    def set_model_stage(self, name: str, version: str, stage: ModelStage | str) -> ModelVersion:
        return self._with_inner("changing a model stage", lambda i: i.set_model_stage(name, version, stage))

    def get_model_versions(
        self, name: str | None = None, *, stage: ModelStage | str | None = None
    ) -> list[ModelVersion]:
        return self._with_inner("reading model versions", lambda i: i.get_model_versions(name, stage=stage))

    # ------------------------------------------------------------------ reads

    def accounts(self) -> list[Account]:
        rows = self._read("reading accounts", lambda i: i.accounts())
        if rows is None:
            return [self._known_accounts[k] for k in sorted(self._known_accounts)]
        self._known_accounts.update({a.account_id: a for a in rows})
        return rows

    def orders(
        self,
        *,
        symbol: str | None = None,
        status: OrderStatus | str | None = None,
        account_id: str | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> list[OrderRecord]:
        rows = self._read(
            "reading orders",
            lambda i: i.orders(symbol=symbol, status=status, account_id=account_id, start=start, end=end),
        )
        if rows is not None:
            for rec in rows:
                self._known_orders.setdefault(rec.client_order_id, rec)
            return rows
        status = None if status is None else OrderStatus(status)
        start = None if start is None else ensure_utc(start, name="start")
        end = None if end is None else ensure_utc(end, name="end")
        out = [
            r
            for r in self._known_orders.values()
            if (symbol is None or r.order.symbol == symbol)
            and (status is None or r.status is status)
            and (account_id is None or r.account_id == account_id)
            and (start is None or r.order.ts >= start)
            and (end is None or r.order.ts < end)
        ]
        return sorted(out, key=lambda r: (r.order.ts, r.client_order_id))

    def order(self, client_order_id: str) -> OrderRecord:
        rec = self._read("reading an order", lambda i: i.order(client_order_id))
        if rec is not None:
            return rec
        if client_order_id not in self._known_orders:
            raise DataNotFoundError(
                f"no order {client_order_id!r} is known while {self._database} is down (this store serves "
                "only the orders it wrote or read); retry when the database is back."
            )
        return self._known_orders[client_order_id]

    def fills(
        self,
        *,
        client_order_id: str | None = None,
        symbol: str | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> list[Fill]:
        rows = self._read(
            "reading fills",
            lambda i: i.fills(client_order_id=client_order_id, symbol=symbol, start=start, end=end),
        )
        if rows is not None:
            self._known_fills.update({f.fill_id: f for f in rows})
            return rows
        start = None if start is None else ensure_utc(start, name="start")
        end = None if end is None else ensure_utc(end, name="end")
        out = [
            f
            for f in self._known_fills.values()
            if (client_order_id is None or f.client_order_id == client_order_id)
            and (symbol is None or f.symbol == symbol)
            and (start is None or f.ts >= start)
            and (end is None or f.ts < end)
        ]
        return sorted(out, key=lambda f: (f.ts, f.fill_id))

    def audit_log(
        self,
        *,
        actor: str | None = None,
        action: str | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> list[AuditRecord]:
        return self._with_inner(
            "reading the audit log",
            lambda i: i.audit_log(actor=actor, action=action, start=start, end=end),
            replay_first=True,
        )

    def verify_audit_chain(self, *, head_hash: str | None = None) -> list[AuditProblem]:
        return self._with_inner(
            "verifying the audit chain",
            lambda i: i.verify_audit_chain(head_hash=head_hash),
            replay_first=True,
        )

    # ------------------------------------------------------------------ internals

    def _check_open(self) -> _Journal:
        if self._journal is None:
            raise StorageError(f"the journaled store at {self._journal_path} is closed; open a new one.")
        return self._journal

    def _open(self) -> None:
        inner = self._connect()
        if not isinstance(inner, RelationalStore):
            raise ConfigError(f"connect() must return a RelationalStore, got {type(inner).__name__}.")
        self._inner = inner
        self._database = inner.location

    def _due(self) -> bool:
        return time.monotonic() - self._last_attempt >= self._retry_after_s

    def _mark_down(self, exc: BaseException) -> None:
        first = self._down_since is None
        if first:
            self._down_since = datetime.now(UTC)
            self._outages += 1
            self._warned_partial = False
        self._last_attempt = time.monotonic()
        self._last_error = str(exc)
        if self._inner is not None:
            try:
                self._inner.close()
            except Exception:  # the connection is already broken; closing it is best effort
                logger.debug("closing a broken connection failed", exc_info=True)
            self._inner = None
        if first:
            logger.warning(
                "%s is unreachable (%s); journaling writes to %s and retrying every %.1f s",
                self._database,
                exc,
                self._journal_path,
                self._retry_after_s,
            )

    def _mark_up(self) -> None:
        if self._down_since is not None:
            down_s = (datetime.now(UTC) - self._down_since).total_seconds()
            logger.warning(
                "%s is back after %.1f s; %d journaled write(s) replayed so far",
                self._database,
                down_s,
                self._replayed,
            )
        self._down_since = None
        self._last_error = ""

    def _reachable(self, *, force: bool = False) -> bool:
        """Reconnect when down and due; True when a connection is open."""
        if self._inner is not None:
            return True
        if not force and not self._due():
            return False
        self._last_attempt = time.monotonic()
        try:
            self._open()
        except StorageError as exc:
            if not is_unreachable(exc):
                raise
            self._mark_down(exc)
            return False
        # The chain's head as the database has it (another process may have appended while this store was
        # away). With writes still journaled, the journal's own head is ahead of it and is kept.
        return self._pending or self._refresh_head()

    def _drain(self, *, force: bool = False) -> bool:
        """Reconnect if needed and replay the journal in order; True when the database is reachable and the
        journal empty afterwards."""
        journal = self._check_open()
        if not self._reachable(force=force):
            return False
        assert self._inner is not None
        if self._pending:
            for seq, op, payload in journal.entries():
                try:
                    result = self._apply(self._inner, op, payload, replay=True)
                except StorageError as exc:
                    if is_unreachable(exc):
                        self._mark_down(exc)
                        return False
                    self._reject(seq, op, exc)
                    continue
                except (DataNotFoundError, DataFormatError, ValueError, KeyError) as exc:
                    # Refused by the store's checks, or an entry that no longer parses: set aside.
                    self._reject(seq, op, exc)
                    continue
                journal.delete(seq)
                self._replayed += 1
                if isinstance(result, AuditRecord):
                    self._check_prediction(payload, result)
            self._pending = False
            if not self._refresh_head():
                return False
        self._mark_up()
        return True

    def _reject(self, seq: int, op: str, exc: BaseException) -> None:
        assert self._journal is not None
        self._journal.reject(seq, f"{type(exc).__name__}: {exc}")
        logger.error(
            "the database refused journaled write %d (%s) on replay, so it is kept in the 'rejected' "
            "table of %s for inspection and the replay goes on. The database said: %s",
            seq,
            op,
            self._journal_path,
            exc,
        )

    def _check_prediction(self, payload: str, record: AuditRecord) -> None:
        predicted = json.loads(payload).get("predicted")
        if predicted is not None and (predicted[0] != record.id or predicted[1] != record.hash):
            logger.error(
                "journaled audit record replayed as id %d, not the id %d its writer was given: another "
                "process appended to the audit log while %s was unreachable. The chain is valid; audit ids "
                "cited by records journaled in that outage are off by %d.",
                record.id,
                predicted[0],
                self._database,
                record.id - predicted[0],
            )

    def _apply(self, inner: RelationalStore, op: str, payload: str, *, replay: bool = False) -> Any:
        if op == "upsert_account":
            return inner.upsert_account(Account.model_validate_json(payload))
        if op == "record_order":
            data = json.loads(payload)
            return inner.record_order(Order.model_validate(data["order"]), account_id=data["account_id"])
        if op == "record_order_result":
            return inner.record_order_result(OrderResult.model_validate_json(payload))
        if op == "append_audit":
            data = json.loads(payload)
            ts = datetime.fromisoformat(data["ts"])
            if replay:
                # Idempotent replay: a record already written (its reply or the journal delete was lost to
                # a crash) is not written twice.
                for held in inner.audit_log(
                    actor=data["actor"], action=data["action"], start=ts, end=ts + timedelta(microseconds=1)
                ):
                    if canonical_json(held.payload) == data["payload"]:
                        return held
            return inner.append_audit(data["actor"], data["action"], json.loads(data["payload"]), ts=ts)
        raise StorageError(
            f"the write journal {self._journal_path} holds an unknown operation {op!r}; it was written by a "
            "newer alphaloom, replay it with that version."
        )

    def _write(
        self, op: str, entry: str | dict[str, Any], *, before_journal: Callable[[], None] | None = None
    ) -> Any:
        """Write through when possible (returning the store's answer), else journal (returning None)."""
        with self._lock:
            journal = self._check_open()
            payload = entry if isinstance(entry, str) else json.dumps(entry)
            if self._drain():
                assert self._inner is not None
                try:
                    result = self._apply(self._inner, op, payload)
                except StorageError as exc:
                    if not is_unreachable(exc):
                        raise
                    self._mark_down(exc)
                else:
                    self._remember(op, payload)
                    if isinstance(result, AuditRecord):
                        self._set_head(result.id, result.hash)
                    return result
            if before_journal is not None:
                before_journal()
                payload = entry if isinstance(entry, str) else json.dumps(entry)
            journal.append(op, payload)
            self._pending = True
            self._journaled += 1
            self._remember(op, payload)
            return None

    def _read(self, action: str, fn: Callable[[RelationalStore], Any]) -> Any:
        """The database's answer, or None while it is down (the caller then serves what is known)."""
        with self._lock:
            self._check_open()
            if self._drain():
                assert self._inner is not None
                try:
                    return fn(self._inner)
                except StorageError as exc:
                    if not is_unreachable(exc):
                        raise
                    self._mark_down(exc)
            self._partial_reads += 1
            if not self._warned_partial:
                self._warned_partial = True
                logger.warning(
                    "%s: %s is down; answering from the records this process wrote or read and the journal "
                    "(older records may be missing)",
                    action,
                    self._database,
                )
            return None

    def _with_inner(
        self, action: str, fn: Callable[[RelationalStore], Any], *, replay_first: bool = False
    ) -> Any:
        with self._lock:
            journal = self._check_open()
            ready = self._drain() if replay_first else self._reachable()
            if ready and self._inner is not None:
                try:
                    return fn(self._inner)
                except StorageError as exc:
                    if not is_unreachable(exc):
                        raise
                    self._mark_down(exc)
            raise StorageError(
                f"{action} needs the database, and {self._database} is unreachable ({self._last_error}); "
                f"{journal.count()} write(s) wait in the journal {self._journal_path}. Retry when the "
                "database is back."
            )

    def _head(self) -> tuple[int, str]:
        assert self._journal is not None
        raw = self._journal.get("audit_head")
        if raw is None:
            raise StorageError(
                f"cannot number an audit record while {self._database} is down: no audit head is known in "
                f"{self._journal_path} (this journal never saw the database). Start once with the database "
                "up."
            )
        record_id, digest = raw.split(":", 1)
        return int(record_id), digest

    def _set_head(self, record_id: int, digest: str) -> None:
        assert self._journal is not None
        self._journal.put("audit_head", f"{record_id}:{digest}")

    def _refresh_head(self) -> bool:
        inner = self._inner
        assert inner is not None
        try:
            with inner._session("reading the audit head") as s:
                rows = s.run("SELECT id, hash FROM audit_log ORDER BY id DESC LIMIT 1")
        except StorageError as exc:
            if not is_unreachable(exc):
                raise
            self._mark_down(exc)
            return False
        self._set_head(*((int(rows[0][0]), str(rows[0][1])) if rows else (0, GENESIS_HASH)))
        return True

    def _remember(self, op: str, payload: str) -> None:
        if op == "upsert_account":
            account = Account.model_validate_json(payload)
            self._known_accounts[account.account_id] = account
        elif op == "record_order":
            data = json.loads(payload)
            order = Order.model_validate(data["order"])
            if order.client_order_id not in self._known_orders:
                self._known_orders[order.client_order_id] = OrderRecord(
                    order=order,
                    account_id=data["account_id"],
                    status=OrderStatus.NEW,
                    venue_order_id="",
                    filled_quantity=0.0,
                    avg_fill_price=None,
                    message="",
                    updated_at=order.ts,
                )
        elif op == "record_order_result":
            res = OrderResult.model_validate_json(payload)
            held = self._known_orders.get(res.client_order_id)
            if held is not None and res.ts >= held.updated_at:
                self._known_orders[res.client_order_id] = OrderRecord(
                    order=held.order,
                    account_id=held.account_id,
                    status=res.status,
                    venue_order_id=res.venue_order_id or held.venue_order_id,
                    filled_quantity=res.filled_quantity,
                    avg_fill_price=res.avg_fill_price,
                    message=res.message,
                    updated_at=res.ts,
                )
            for fill in res.fills:
                self._known_fills.setdefault(fill.fill_id, fill)
