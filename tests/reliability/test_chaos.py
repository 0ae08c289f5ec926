"""The chaos suite's short form: paper trading on real sample data through venue faults, SIGKILLs of the
trading process and of the bus consumer, a PostgreSQL crash and a Redis crash, compared with an undisturbed
run (``make chaos`` runs the long form)."""

from __future__ import annotations

from pathlib import Path

import pytest

from alphaloom.core.exceptions import ConfigError
from alphaloom.data.storage.relational import AuditRecord
from alphaloom.jobs.chaos import ChaosConfig, audit_content, chaos, chaos_table


def test_the_short_chaos_run_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    report = chaos(ChaosConfig.quick(), work_dir=tmp_path / "chaos")
    failures = "; ".join(f"{c.name}: {c.detail}" for c in report.failures)
    assert report.ok, f"{failures} (logs in {report.work_dir / 'logs'})"
    counts = report.counts
    assert counts["trader SIGKILLs / restarts"] == 2
    assert counts["PostgreSQL crashes / restarts"] == 1
    assert counts["Redis SIGKILLs / restarts"] == 1
    assert counts["consumer SIGKILLs"] == 1
    assert counts["venue faults injected"] > 0  # the connector retried through them
    assert counts["writes journaled (PostgreSQL down)"] > 0
    assert counts["writes replayed"] == counts["writes journaled (PostgreSQL down)"]
    assert counts["duplicate orders"] == counts["duplicate fills"] == counts["lost orders"] == 0
    assert counts["lost bars (trading / bus)"] == "0 / 0"
    assert counts["restarts audited (execution.start)"] == 3  # the first start and two restarts
    assert {c.name for c in report.checks} >= {
        "same fills",
        "same positions and cash",
        "same audit trail content",
        "audit chains verify",
        "no duplicate orders",
        "no lost bars (trading)",
        "no lost bars (bus)",
    }
    assert chaos_table(report).row_count == len(counts) + len(report.checks)


def _record(i: int, action: str, payload: dict) -> AuditRecord:
    return AuditRecord(i, None, "engine:r", action, payload, "0" * 64, f"{i:064d}")  # type: ignore[arg-type]


def _order(cid: str, quantity: float) -> dict:
    return {"client_order_id": cid, "symbol": "SPY", "quantity": quantity, "run_id": "r"}


def test_audit_content_ignores_attempt_ids_but_not_what_happened() -> None:
    first = [
        _record(1, "execution.order", _order("a", 3)),
        _record(2, "execution.start", {"resumed_from": None}),
    ]
    again = [  # a restart re-decided the order under the next id, and audited its start
        _record(7, "execution.order", _order("b", 3)),
        _record(8, "execution.start", {"resumed_from": "2019-12-01"}),
        _record(9, "execution.order", _order("a", 3)),
    ]
    other = [_record(1, "execution.order", _order("a", 4))]
    assert audit_content(first) == audit_content(again)
    assert audit_content(first) != audit_content(other)


def test_bad_settings_are_refused_with_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="bars"):
        ChaosConfig.from_dict({"bars": 5})
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x").write_text("x")
    with pytest.raises(ConfigError, match="not empty"):
        chaos(ChaosConfig.quick(), work_dir=tmp_path / "busy")
    with pytest.raises(ConfigError, match="have no NOPE"):
        chaos(ChaosConfig.quick().replace(symbols=("SPY", "NOPE")), work_dir=tmp_path / "new")
