"""PostgreSQL down -> writes journaled locally and replayed when it returns, nothing lost, nothing doubled.

Every test runs its own PostgreSQL (initdb in a temporary directory, a spare port) and crashes it with
``pg_ctl -m immediate``; the reference for "nothing lost" is the same scripted writes into an in-memory
DuckDB store that never went down: records and audit hashes must be identical.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from tests.reliability._steps import ACCOUNT, T0, order, result, snapshot, step

from alphaloom.core.exceptions import DataNotFoundError, StorageError
from alphaloom.data.storage import JournaledRelationalStore, PostgresRelationalStore
from alphaloom.data.storage.journal import is_unreachable
from alphaloom.data.storage.relational import DuckDBRelationalStore
from alphaloom.jobs.chaos import PrivatePostgres

ROOT = Path(__file__).resolve().parents[2]


def reference(n: int) -> dict[str, object]:
    with DuckDBRelationalStore(":memory:") as store:
        for i in range(n):
            step(store, i)
        return snapshot(store)


def journaled(pg: PrivatePostgres, path: Path) -> JournaledRelationalStore:
    return JournaledRelationalStore(lambda: PostgresRelationalStore(pg.dsn), path, retry_after_s=0)


def test_writes_during_an_outage_are_journaled_and_replayed_into_an_identical_chain(
    private_pg: PrivatePostgres, tmp_path: Path
) -> None:
    expected = reference(30)
    handed_back = []
    with journaled(private_pg, tmp_path / "records.journal") as store:
        for i in range(10):
            handed_back += step(store, i)
        assert store.health().ok

        private_pg.stop()  # a crash: in-flight connections are cut
        for i in range(10, 25):
            handed_back += step(store, i)
        health = store.health()
        assert health.status == "degraded"
        assert health.outages == 1
        assert health.pending == 15 * 4 + 2  # orders, results, two audits each; two account upserts
        assert health.journaled == health.pending
        # Reads answer from what this process wrote, and say the answer may be partial.
        assert [r.client_order_id for r in store.orders(symbol="SPY")][-1] == "cid-0023"
        assert store.order("cid-0024").status.value == "filled"
        with pytest.raises(DataNotFoundError, match="down"):
            store.order("cid-9999")
        with pytest.raises(StorageError, match=r"needs the database.*wait in the journal"):
            store.audit_log()
        assert store.health().partial_reads >= 2

        private_pg.start()
        for i in range(25, 30):  # the first write replays the journal, in order, then goes through
            handed_back += step(store, i)
        health = store.health()
        assert health.ok
        assert (health.pending, health.replayed, health.rejected) == (0, 62, 0)
        assert (health.journaled_total, health.replayed_total) == (62, 62)
        got = snapshot(store)
        assert store.verify_audit_chain() == []

    assert got == expected  # same rows, same audit ids, timestamps and hashes as the undisturbed run
    # The records handed back while journaling carried the ids and hashes the chain gave them.
    assert [(a.id, a.hash, a.prev_hash) for a in handed_back] == [(a[0], a[6], a[5]) for a in got["audit"]]


CHILD = """
import os, signal, sys
sys.path.insert(0, {root!r})
from alphaloom.data.storage import journal as J
from alphaloom.data.storage.relational import PostgresRelationalStore
dsn, path, mode, arg = sys.argv[1:5]
if mode == "write":  # journal steps while the database is down, then die without closing anything
    from tests.reliability._steps import step
    store = J.JournaledRelationalStore(lambda: PostgresRelationalStore(dsn), path, retry_after_s=0)
    for i in range(*map(int, arg.split(":"))):
        step(store, i)
    os.kill(os.getpid(), signal.SIGKILL)
original, seen = J._Journal.delete, [0]
def delete(self, seq):
    # Die after the database has the entry and before the journal forgets it: the worst moment.
    op = self._con.execute("SELECT op FROM pending WHERE seq = ?", (seq,)).fetchone()[0]
    if op == mode:
        seen[0] += 1
        if seen[0] > int(arg):
            os.kill(os.getpid(), signal.SIGKILL)
    original(self, seq)
J._Journal.delete = delete
J.JournaledRelationalStore(lambda: PostgresRelationalStore(dsn), path)
sys.exit(3)
"""


def _child(pg: PrivatePostgres, path: Path, mode: str, arg: str) -> int:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALPHALOOM_")}
    proc = subprocess.run(
        [sys.executable, "-c", CHILD.format(root=str(ROOT)), pg.dsn, str(path), mode, arg],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert proc.returncode == -9, proc.stderr[-2000:]
    return proc.returncode


def test_a_killed_writer_and_replays_killed_midway_lose_and_double_nothing(
    private_pg: PrivatePostgres, tmp_path: Path
) -> None:
    path = tmp_path / "records.journal"
    with journaled(private_pg, path) as store:  # the database up: the journal learns the chain's head
        for i in range(5):
            step(store, i)
    private_pg.stop()
    _child(private_pg, path, "write", "5:40")  # trades through the outage, then is SIGKILLed
    private_pg.start()

    # Three replays, each SIGKILLed after the database took an entry and before the journal dropped it.
    for mode, after in (("append_audit", 5), ("record_order_result", 6), ("record_order", 5)):
        _child(private_pg, path, mode, str(after))
    with psycopg.connect(private_pg.dsn) as con:
        partial = con.execute("SELECT count(*) FROM alphaloom.audit_log").fetchone()[0]
    assert 10 < partial < 80  # the replays got somewhere, and not to the end

    with journaled(private_pg, path) as store:
        health = store.health()
        assert health.ok
        assert (health.pending, health.rejected) == (0, 0)
        assert health.journaled_total == 35 * 4 + 3  # the killed writer's steps 5..39, all replayed once
        assert health.replayed_total == health.journaled_total
        got = snapshot(store)
        assert store.verify_audit_chain() == []
    assert got == reference(40)
    fill_ids = [f["fill_id"] for f in got["fills"]]
    assert len(fill_ids) == len(set(fill_ids)) == 40


def test_a_store_started_while_the_database_is_down_journals_then_catches_up(
    private_pg: PrivatePostgres, tmp_path: Path
) -> None:
    path = tmp_path / "records.journal"
    with journaled(private_pg, path) as store:
        step(store, 0)
    private_pg.stop()
    with journaled(private_pg, path) as store:  # opening does not need the database
        assert store.health().status == "degraded"
        step(store, 1)
        assert store.replay() == 0  # still down: nothing replayed, nothing raised
        private_pg.start()
        assert store.replay() == 4
        assert snapshot(store) == reference(2)


def test_without_a_known_audit_head_an_audit_write_in_an_outage_says_how_to_fix_it(tmp_path: Path) -> None:
    with PrivatePostgres() as never_started, journaled(never_started, tmp_path / "j") as store:
        store.record_order(order(0))  # orders journal fine
        with pytest.raises(StorageError, match=r"no audit head is known.*Start once with the database up"):
            store.append_audit("engine", "execution.start", {})
        assert store.health().pending == 1


def test_a_journaled_write_the_database_refuses_is_set_aside_and_the_replay_goes_on(
    private_pg: PrivatePostgres, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with journaled(private_pg, tmp_path / "j") as store:
        step(store, 0)
        private_pg.stop()
        clash = order(0).model_copy(update={"quantity": 99.0})  # same client order id, another order
        store.record_order(clash, account_id=ACCOUNT)
        step(store, 1)
        private_pg.start()
        with caplog.at_level(logging.ERROR, logger="alphaloom.data.storage.journal"):
            assert store.replay() == 4  # step 1's four writes; the clash is set aside
        health = store.health()
        assert (health.rejected, health.pending) == (1, 0)
        assert "already recorded for a different order" in caplog.text
        assert "'rejected' table" in caplog.text
        assert store.order("cid-0000").order.quantity == 1.0
        assert snapshot(store) == reference(2)


def test_a_result_for_an_order_this_store_never_saw_is_refused_while_down(
    private_pg: PrivatePostgres, tmp_path: Path
) -> None:
    with journaled(private_pg, tmp_path / "j") as store:
        step(store, 0)
        private_pg.stop()
        with pytest.raises(DataNotFoundError, match="record_order\\(\\) it first"):
            store.record_order_result(result(7))
        store.record_order(order(7))  # what the trading engine does on that error
        assert store.record_order_result(result(7)) == 1


def test_configuration_errors_are_raised_not_journaled(private_pg: PrivatePostgres, tmp_path: Path) -> None:
    wrong_db = private_pg.dsn.rsplit("/", 1)[0] + "/no_such_database"
    with pytest.raises(StorageError, match="no_such_database"):
        JournaledRelationalStore(lambda: PostgresRelationalStore(wrong_db), tmp_path / "j")
    # The journal was released: a store can open it at once.
    with journaled(private_pg, tmp_path / "j") as store:
        assert store.health().ok


def test_one_process_writes_a_journal_at_a_time(private_pg: PrivatePostgres, tmp_path: Path) -> None:
    with (
        journaled(private_pg, tmp_path / "j"),
        pytest.raises(StorageError, match="in use by another process"),
    ):
        journaled(private_pg, tmp_path / "j")


@pytest.mark.parametrize(
    ("error", "outage"),
    [
        (psycopg.OperationalError("connection failed: ... Connection refused"), True),
        (psycopg.OperationalError("server closed the connection unexpectedly"), True),
        (psycopg.errors.AdminShutdown("terminating connection due to administrator command"), True),
        (psycopg.errors.CannotConnectNow("the database system is starting up"), True),
        (psycopg.OperationalError("connection failed: FATAL:  the database system is shutting down"), True),
        (psycopg.InterfaceError("the connection is closed"), True),
        (ConnectionResetError(104, "reset"), True),
        (psycopg.OperationalError('connection failed: FATAL:  database "x" does not exist'), False),
        (psycopg.OperationalError("connection failed: FATAL:  password authentication failed"), False),
        (psycopg.errors.UniqueViolation("duplicate key"), False),
        (DataNotFoundError("no such file"), False),
        (ValueError("bad"), False),
    ],
)
def test_is_unreachable_tells_outages_from_errors(error: BaseException, outage: bool) -> None:
    assert is_unreachable(error) is outage
    wrapped = StorageError("writing failed")
    wrapped.__cause__ = error  # as `raise StorageError(...) from error` leaves it
    assert is_unreachable(wrapped) is outage


def test_bad_arguments_get_clear_errors(private_pg: PrivatePostgres, tmp_path: Path) -> None:
    from alphaloom.core.exceptions import ConfigError, DataFormatError

    with pytest.raises(ConfigError, match="callable"):
        JournaledRelationalStore("postgresql://x", tmp_path / "j")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="retry_after_s"):
        JournaledRelationalStore(
            lambda: PostgresRelationalStore(private_pg.dsn), tmp_path / "j", retry_after_s=-1
        )
    with journaled(private_pg, tmp_path / "j") as store:
        with pytest.raises(DataFormatError, match="takes an Order"):
            store.record_order({"symbol": "SPY"})  # type: ignore[arg-type]
        with pytest.raises(DataFormatError, match="payload must be a mapping"):
            store.append_audit("a", "b", ["x"])  # type: ignore[arg-type]
        assert T0.tzinfo is not None
