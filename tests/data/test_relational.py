"""RelationalStore on both backends: migrations, accounts, model versions, orders and fills, the audit chain.

Every parametrised test runs on DuckDB (a file in ``tmp_path``) and on PostgreSQL (a schema of its own,
``al_reltest_<session>_<n>``, dropped afterwards). Tests named ``*_postgres_*`` or ``*_duckdb_*`` are about
one backend's specifics.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import psycopg
import pytest

from alphaloom.core.clock import SimulatedClock
from alphaloom.core.config import ComponentConfig
from alphaloom.core.exceptions import ConfigError, DataFormatError, DataNotFoundError, StorageError
from alphaloom.core.types import Account, Fill, Order, OrderResult, OrderStatus
from alphaloom.data.storage import (
    MIGRATIONS,
    DuckDBBarStore,
    DuckDBRelationalStore,
    Migration,
    ModelStage,
    PostgresBarStore,
    PostgresRelationalStore,
    RelationalStore,
)
from alphaloom.data.storage import relational as relational_module
from alphaloom.data.storage.relational import GENESIS_HASH, canonical_json

PG_DSN = "postgresql://postgres@127.0.0.1:5432/test"
BACKENDS = ("duckdb", "postgres")
_SESSION = f"al_reltest_{os.getpid()}_{uuid.uuid4().hex[:8]}"
_numbers = itertools.count()

T0 = datetime(2024, 3, 1, 14, 30, tzinfo=UTC)

Opener = Callable[..., RelationalStore]
Execute = Callable[[str], Any]


class TinyConfig(ComponentConfig):
    window: int = 20
    lr: float = 1e-3


@pytest.fixture(scope="module")
def admin() -> Iterator[psycopg.Connection]:
    with psycopg.connect(PG_DSN, autocommit=True, connect_timeout=10) as con:
        yield con
        for (name,) in con.execute(
            "SELECT nspname FROM pg_namespace WHERE left(nspname, %s) = %s", [len(_SESSION), _SESSION]
        ).fetchall():
            con.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


@pytest.fixture
def pg_schema(admin: psycopg.Connection) -> Iterator[str]:
    schema = f"{_SESSION}_{next(_numbers)}"
    yield schema
    admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def target(backend: str, tmp_path: Path, pg_schema: str) -> str:
    """Where this test's records live: a DuckDB file or a PostgreSQL schema."""
    return str(tmp_path / "rel" / "records.duckdb") if backend == "duckdb" else pg_schema


@pytest.fixture
def open_store(backend: str, target: str) -> Opener:
    """Opens a new handle on the test's store; keyword arguments go to the constructor."""

    def open_(**kwargs: Any) -> RelationalStore:
        if backend == "duckdb":
            return DuckDBRelationalStore(target, **kwargs)
        return PostgresRelationalStore(PG_DSN, schema=target, **kwargs)

    return open_


@pytest.fixture
def clock() -> SimulatedClock:
    return SimulatedClock(T0)


@pytest.fixture
def store(open_store: Opener, clock: SimulatedClock) -> Iterator[RelationalStore]:
    with open_store(clock=clock) as s:
        yield s


@contextmanager
def bypass(backend: str, target: str) -> Iterator[Execute]:
    """Raw SQL past the store (and past PostgreSQL's append-only trigger), to play the attacker."""
    if backend == "duckdb":
        con = duckdb.connect(target)
        try:
            yield con.execute
        finally:
            con.close()
    else:
        with psycopg.connect(PG_DSN, autocommit=True) as con:
            con.execute(f'SET search_path TO "{target}"')
            con.execute("SET session_replication_role = replica")  # no triggers in this session
            yield con.execute


def account(account_id: str = "acct-1", cash: float = 10_000.0) -> Account:
    return Account(account_id=account_id, cash=cash, equity=cash, venue="paper", ts=T0)


def order(symbol: str = "AAPL", quantity: float = 10.0, minutes: int = 0, **kwargs: Any) -> Order:
    return Order(symbol=symbol, side="buy", quantity=quantity, ts=T0 + timedelta(minutes=minutes), **kwargs)


def fill(o: Order, quantity: float, price: float, seconds: int, fill_id: str | None = None) -> Fill:
    extra = {"fill_id": fill_id} if fill_id else {}
    return Fill(
        client_order_id=o.client_order_id,
        symbol=o.symbol,
        side=o.side,
        quantity=quantity,
        price=price,
        fee=0.1,
        ts=o.ts + timedelta(seconds=seconds),
        **extra,
    )


def result(
    o: Order, status: OrderStatus, fills: tuple[Fill, ...], seconds: int, **kwargs: Any
) -> OrderResult:
    filled = sum(f.quantity for f in fills)
    avg = sum(f.quantity * f.price for f in fills) / filled if filled else None
    return OrderResult(
        client_order_id=o.client_order_id,
        status=status,
        filled_quantity=filled,
        avg_fill_price=avg,
        fills=fills,
        ts=o.ts + timedelta(seconds=seconds),
        **kwargs,
    )


# ---------------------------------------------------------------------- migrations


def test_migrations_are_numbered_one_by_one() -> None:
    assert [m.version for m in MIGRATIONS] == list(range(1, len(MIGRATIONS) + 1))
    assert all(m.description for m in MIGRATIONS)


def test_migrate_applies_each_step_once(open_store: Opener) -> None:
    with open_store(migrate=False) as s:
        assert s.schema_version() == 0
        with pytest.raises(StorageError, match=r"schema version 0, this alphaloom needs 2; call migrate\(\)"):
            s.upsert_account(account())
        assert s.migrate() == [1, 2]
        assert s.migrate() == []
        assert s.schema_version() == len(MIGRATIONS)
        s.upsert_account(account())
    with open_store() as again:  # migrate=True on a current schema is a no-op
        assert again.schema_version() == 2
        assert [a.account_id for a in again.accounts()] == ["acct-1"]


def test_a_newer_schema_is_refused(
    store: RelationalStore, open_store: Opener, backend: str, target: str
) -> None:
    store.close()
    with bypass(backend, target) as run:
        run("INSERT INTO schema_version VALUES (99, 'from the future', TIMESTAMPTZ '2030-01-01 00:00+00')")
    with pytest.raises(StorageError, match=r"schema version 99, newer than this alphaloom knows \(2\)"):
        open_store()
    with pytest.raises(StorageError, match=r"schema version 99"):
        open_store(migrate=False)


def test_a_failing_migration_changes_nothing(
    store: RelationalStore, open_store: Opener, backend: str, target: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = Migration(3, "broken on purpose", ("CREATE TABLE extra (x INTEGER)", "THIS IS NOT SQL"))
    monkeypatch.setattr(relational_module, "MIGRATIONS", (*MIGRATIONS, broken))
    monkeypatch.setattr(relational_module, "_LATEST", 3)
    with pytest.raises(StorageError, match=r"migrating the schema failed"):
        open_store()
    monkeypatch.undo()
    assert store.schema_version() == 2
    store.close()
    with bypass(backend, target) as run:
        tables = run(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = 'extra' "
            "AND table_schema = current_schema()"
        ).fetchall()
    assert tables == [(0,)]


# ---------------------------------------------------------------------- accounts


def test_accounts_upsert_replaces_by_id(store: RelationalStore) -> None:
    store.upsert_account(account("acct-2"))
    store.upsert_account(account("acct-1"))
    store.upsert_account(account("acct-1", cash=5_000.0))
    assert [a.account_id for a in store.accounts()] == ["acct-1", "acct-2"]
    assert store.account("acct-1") == account("acct-1", cash=5_000.0)
    with pytest.raises(DataNotFoundError, match=r"no account 'acct-1x'.*Did you mean 'acct-1'"):
        store.account("acct-1x")
    with pytest.raises(DataFormatError, match=r"takes an Account"):
        store.upsert_account({"account_id": "x"})  # type: ignore[arg-type]


# ---------------------------------------------------------------------- model versions


def test_model_version_with_a_component_config(store: RelationalStore) -> None:
    config = TinyConfig(window=30)
    mv = store.record_model_version("cnn_lstm", "v1", config, metrics={"sharpe": 1.25, "folds": [1, 2]})
    assert mv.config_hash == config.config_hash()
    assert mv.config == {"window": 30, "lr": 1e-3}
    assert mv.metrics == {"sharpe": 1.25, "folds": [1, 2]}
    assert mv.stage is ModelStage.CANDIDATE
    assert mv.created_at == T0
    assert store.get_model_versions() == [mv]


def test_recording_a_version_again(store: RelationalStore, clock: SimulatedClock) -> None:
    first = store.record_model_version("cnn_lstm", "v1", TinyConfig(), metrics={"sharpe": 1.0})
    clock.advance_to(T0 + timedelta(hours=1))
    again = store.record_model_version(
        "cnn_lstm", "v1", TinyConfig(), metrics={"sharpe": 1.1}, stage="staging"
    )
    assert again.metrics == {"sharpe": 1.1}
    assert again.stage is ModelStage.STAGING
    assert again.created_at == first.created_at  # the version's birth does not move
    with pytest.raises(ConfigError, match=r"already recorded with config .*record the new config as a new"):
        store.record_model_version("cnn_lstm", "v1", TinyConfig(window=5))


def test_model_versions_filter_sort_and_promote(store: RelationalStore, clock: SimulatedClock) -> None:
    for i, name in enumerate(["ppo", "cnn_lstm", "cnn_lstm"]):
        clock.advance_to(T0 + timedelta(days=i))
        store.record_model_version(name, f"v{i}", {"seed": i})
    assert [(m.name, m.version) for m in store.get_model_versions()] == [
        ("cnn_lstm", "v1"),
        ("cnn_lstm", "v2"),
        ("ppo", "v0"),
    ]
    promoted = store.set_model_stage("cnn_lstm", "v2", ModelStage.PRODUCTION)
    assert promoted.stage is ModelStage.PRODUCTION
    assert [m.version for m in store.get_model_versions(stage="production")] == ["v2"]
    assert [m.version for m in store.get_model_versions("cnn_lstm", stage="candidate")] == ["v1"]
    with pytest.raises(ConfigError, match=r"stage 'prod' is not valid.*Did you mean 'production'"):
        store.set_model_stage("cnn_lstm", "v1", "prod")
    with pytest.raises(DataNotFoundError, match=r"model 'cnn_lstm' version 'v9' is not recorded"):
        store.set_model_stage("cnn_lstm", "v9", "archived")


def test_mapping_configs_hash_by_content(store: RelationalStore) -> None:
    a = store.record_model_version("m", "1", {"b": 2, "a": [1, {"c": None}]})
    b = store.record_model_version("m", "2", {"a": [1, {"c": None}], "b": 2})
    assert a.config_hash == b.config_hash
    assert len(a.config_hash) == 16
    with pytest.raises(DataFormatError, match=r"metrics cannot be stored as JSON.*store None instead"):
        store.record_model_version("m", "3", {"a": 1}, metrics={"sharpe": math.nan})


# ---------------------------------------------------------------------- orders and fills


def test_record_order_is_idempotent_on_client_order_id(store: RelationalStore) -> None:
    store.upsert_account(account())
    o = order(order_type="limit", limit_price=150.0)
    assert store.record_order(o, account_id="acct-1") is True
    assert store.record_order(o, account_id="acct-1") is False  # a retry records nothing
    assert len(store.orders()) == 1
    record = store.order(o.client_order_id)
    assert record.order == o
    assert record.status is OrderStatus.NEW
    assert record.account_id == "acct-1"
    other = order(quantity=99.0, client_order_id=o.client_order_id)
    with pytest.raises(StorageError, match=r"already recorded for a different order.*new_client_order_id"):
        store.record_order(other, account_id="acct-1")
    with pytest.raises(DataNotFoundError, match=r"no account 'nobody'"):
        store.record_order(order(), account_id="nobody")


def test_results_update_state_and_record_fills_once(store: RelationalStore) -> None:
    o = order(quantity=10.0)
    store.record_order(o)
    f1 = fill(o, 4.0, 100.0, seconds=1)
    f2 = fill(o, 6.0, 101.0, seconds=2)
    partial = result(o, OrderStatus.PARTIALLY_FILLED, (f1,), seconds=1, venue_order_id="V-1")
    assert store.record_order_result(partial) == 1
    assert store.record_order_result(partial) == 0  # replayed
    done = result(o, OrderStatus.FILLED, (f1, f2), seconds=2)
    assert store.record_order_result(done) == 1
    record = store.order(o.client_order_id)
    assert record.status is OrderStatus.FILLED
    assert record.filled_quantity == 10.0
    assert record.avg_fill_price == pytest.approx(100.6)
    assert record.venue_order_id == "V-1"  # kept when a later result carries none
    assert record.updated_at == o.ts + timedelta(seconds=2)
    assert store.fills() == [f1, f2]
    assert store.fills(client_order_id="other") == []
    assert [r.client_order_id for r in store.orders(status="filled")] == [o.client_order_id]


def test_a_stale_result_does_not_undo_a_newer_one(store: RelationalStore) -> None:
    o = order()
    store.record_order(o)
    f = fill(o, 10.0, 100.0, seconds=5)
    store.record_order_result(result(o, OrderStatus.FILLED, (f,), seconds=5))
    late = result(o, OrderStatus.ACCEPTED, (), seconds=1, message="accepted (late)")
    assert store.record_order_result(late) == 0
    assert store.order(o.client_order_id).status is OrderStatus.FILLED


def test_results_and_fills_must_match_their_order(store: RelationalStore) -> None:
    o, other = order(), order(symbol="MSFT")
    with pytest.raises(DataNotFoundError, match=r"no order .*record_order\(\) it before sending it"):
        store.record_order_result(result(o, OrderStatus.ACCEPTED, (), seconds=1))
    store.record_order(o)
    store.record_order(other)
    wrong_symbol = Fill(
        client_order_id=o.client_order_id, symbol="MSFT", side="buy", quantity=1.0, price=1.0, ts=T0
    )
    with pytest.raises(DataFormatError, match=r"does not belong to order"):
        store.record_order_result(result(o, OrderStatus.PARTIALLY_FILLED, (wrong_symbol,), seconds=1))
    store.record_order_result(
        result(o, OrderStatus.FILLED, (fill(o, 10.0, 1.0, 1, fill_id="F1"),), seconds=1)
    )
    reused = fill(other, 10.0, 1.0, 1, fill_id="F1")
    with pytest.raises(StorageError, match=r"fill id 'F1' is already recorded for order"):
        store.record_order_result(result(other, OrderStatus.FILLED, (reused,), seconds=1))
    assert store.order(other.client_order_id).status is OrderStatus.NEW  # the failed call changed nothing


def test_order_and_fill_queries(store: RelationalStore) -> None:
    store.upsert_account(account())
    orders = [order("AAPL", minutes=0), order("MSFT", minutes=1), order("AAPL", minutes=2)]
    for i, o in enumerate(orders):
        store.record_order(o, account_id="acct-1" if i else None)
        store.record_order_result(result(o, OrderStatus.FILLED, (fill(o, 10.0, 50.0 + i, 30),), seconds=30))
    assert [r.order for r in store.orders()] == orders
    assert [r.order for r in store.orders(symbol="AAPL")] == [orders[0], orders[2]]
    assert [r.order for r in store.orders(account_id="acct-1")] == orders[1:]
    window = {"start": T0 + timedelta(minutes=1), "end": T0 + timedelta(minutes=2)}
    assert [r.order for r in store.orders(**window)] == [orders[1]]  # start inclusive, end exclusive
    assert [f.price for f in store.fills(symbol="AAPL")] == [50.0, 52.0]
    assert [f.price for f in store.fills(start=T0 + timedelta(minutes=1, seconds=30))] == [51.0, 52.0]
    with pytest.raises(DataFormatError, match=r"start .* has no timezone"):
        store.orders(start=datetime(2024, 1, 1))  # noqa: DTZ001 - the point of the test
    with pytest.raises(ConfigError, match=r"status 'done' is not valid"):
        store.orders(status="done")


# ---------------------------------------------------------------------- audit log


def expected_hash(prev: str, record_id: int, ts: datetime, actor: str, action: str, payload: dict) -> str:
    record = {"id": record_id, "ts": ts.isoformat(timespec="microseconds"), "actor": actor, "action": action}
    record["payload"] = payload
    text = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256((prev + text).encode()).hexdigest()


def test_audit_records_chain_by_hash(store: RelationalStore, clock: SimulatedClock) -> None:
    payload = {"order": "al-1", "qty": 10.5, "note": "é ✓", "tags": ["a", "b"], "nested": {"z": 1, "a": None}}
    first = store.append_audit("user:alice", "order.submitted", payload)
    clock.advance_to(T0 + timedelta(seconds=1, microseconds=7))
    second = store.append_audit("engine", "order.filled")
    assert (first.id, second.id) == (1, 2)
    assert first.prev_hash == GENESIS_HASH
    assert second.prev_hash == first.hash
    assert first.hash == expected_hash(GENESIS_HASH, 1, T0, "user:alice", "order.submitted", payload)
    assert second.hash == expected_hash(first.hash, 2, clock.now(), "engine", "order.filled", {})
    assert store.audit_log() == [first, second]
    assert store.audit_log(actor="engine") == [second]
    assert store.audit_log(end=T0 + timedelta(seconds=1)) == [first]
    assert store.verify_audit_chain() == []
    assert store.verify_audit_chain(head_hash=second.hash) == []


def test_audit_payload_must_be_json(store: RelationalStore) -> None:
    with pytest.raises(DataFormatError, match=r"audit payload cannot be stored as JSON"):
        store.append_audit("a", "b", {"x": math.inf})
    with pytest.raises(DataFormatError, match=r"payload must be a mapping"):
        store.append_audit("a", "b", ["not", "a", "mapping"])  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"actor must be a non-empty string"):
        store.append_audit("", "b")
    assert store.audit_log() == []


def test_verify_finds_edits_and_deletions(
    store: RelationalStore, open_store: Opener, backend: str, target: str
) -> None:
    records = [store.append_audit("u", f"action{i}", {"i": i}) for i in range(6)]
    store.close()
    with bypass(backend, target) as run:
        run("""UPDATE audit_log SET payload = '{"i":200}' WHERE id = 2""")
        run("DELETE FROM audit_log WHERE id = 4")
        run("DELETE FROM audit_log WHERE id = 6")
    with open_store() as again:
        problems = again.verify_audit_chain(head_hash=records[-1].hash)
    assert [(p.record_id, p.message.split(";")[0]) for p in problems] == [
        (2, "hash does not match the record's content"),
        (5, "expected id 4: records 4..4 are missing"),
        (5, "prev_hash does not match the hash of the record before it"),
        (0, f"the hash {records[-1].hash} is no longer in the log"),
    ]
    assert str(problems[0]).startswith("audit record 2: hash does not match")


def test_concurrent_appends_keep_one_chain(store: RelationalStore, open_store: Opener, backend: str) -> None:
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            if backend == "duckdb":  # one process writes a DuckDB file: threads share the store
                for i in range(10):
                    store.append_audit(f"thread{n}", "tick", {"i": i})
            else:
                with open_store() as own:
                    for i in range(10):
                        own.append_audit(f"thread{n}", "tick", {"i": i})
        except BaseException as exc:  # re-raised below in the test thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    log = store.audit_log()
    assert [r.id for r in log] == list(range(1, 41))
    assert store.verify_audit_chain() == []


def test_postgres_audit_log_is_append_only(pg_schema: str) -> None:
    with PostgresRelationalStore(PG_DSN, schema=pg_schema) as s:
        s.append_audit("u", "a", {"x": 1})
    with psycopg.connect(PG_DSN, autocommit=True) as con:
        for statement in ("UPDATE audit_log SET actor = 'x'", "DELETE FROM audit_log", "TRUNCATE audit_log"):
            with pytest.raises(psycopg.errors.RaiseException, match=r"audit_log is append-only"):
                con.execute(f'SET search_path TO "{pg_schema}"; {statement}')


def test_canonical_json() -> None:
    assert canonical_json({"b": 1, "a": [1.5, None, "é"]}) == '{"a":[1.5,null,"é"],"b":1}'
    assert (
        canonical_json({"t": T0, "s": ModelStage.STAGING})
        == '{"s":"staging","t":"2024-03-01T14:30:00+00:00"}'
    )
    with pytest.raises(DataFormatError, match=r"NaN and infinity are not JSON"):
        canonical_json({"x": math.nan})
    with pytest.raises(DataFormatError, match=r"has no timezone"):
        canonical_json({"t": datetime(2024, 1, 1)})  # noqa: DTZ001 - the point of the test


# ---------------------------------------------------------------------- lifecycle and sharing


def test_closed_store(open_store: Opener) -> None:
    s = open_store()
    s.close()
    s.close()
    assert s.closed
    with pytest.raises(StorageError, match=r"is closed"):
        s.accounts()


def test_duckdb_records_can_share_the_bar_store_file(tmp_path: Path) -> None:
    path = tmp_path / "alphaloom.duckdb"
    with DuckDBBarStore(path) as bars, DuckDBRelationalStore(path) as records:
        bars.write_bars(
            pd.DataFrame(
                {
                    "symbol": ["AAA"],
                    "ts": pd.to_datetime(["2024-01-02"], utc=True),
                    "open": [1.0],
                    "high": [1.0],
                    "low": [1.0],
                    "close": [1.0],
                    "volume": [1.0],
                }
            )
        )
        records.append_audit("u", "ingest", {"rows": 1})
        assert bars.symbols() == ["AAA"]
        assert records.verify_audit_chain() == []


def test_postgres_records_can_share_the_bar_store_schema(pg_schema: str) -> None:
    dsn = "postgresql://postgres:hunter2@127.0.0.1:5432/test"
    with (
        PostgresBarStore(dsn, schema=pg_schema) as bars,
        PostgresRelationalStore(dsn, schema=pg_schema) as rec,
    ):
        assert "hunter2" not in rec.location
        assert bars.symbols() == []
        rec.upsert_account(account())
        assert rec.schema_version() == 2
