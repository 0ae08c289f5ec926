"""`alphaloom audit verify` catches an edited or deleted record; `audit export` writes the report."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from alphaloom.data.storage.relational import DuckDBRelationalStore


def run_cli(*args: str, data_dir: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "ALPHALOOM_DATA_DIR"}
    env["COLUMNS"] = "200"
    cmd = [sys.executable, "-m", "alphaloom.cli.main", *args, "--data-dir", str(data_dir)]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, check=False)


@pytest.fixture(scope="module")
def traded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace with a finished paper run on real data."""
    ws = tmp_path_factory.mktemp("audit_cli") / "ws"
    for args in (
        ("data", "ingest", "--sample", "us_equities_daily", "--sample", "crypto_daily"),
        ("trade", "--paper", "--symbols", "SPY,BTCUSD", "--bars", "90", "--end", "2019-12-01"),
    ):
        proc = run_cli(*args, data_dir=ws)
        assert proc.returncode == 0, proc.stderr
    return ws


@pytest.fixture
def copy(traded: Path, tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    shutil.copytree(traded, ws)
    return ws


def test_an_intact_log_verifies(traded: Path) -> None:
    proc = run_cli("audit", "verify", data_dir=traded)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "chain intact" in proc.stdout


def test_an_edited_record_fails_verification_and_is_named(copy: Path) -> None:
    con = duckdb.connect(str(copy / "alphaloom.duckdb"))
    target = con.execute(
        "SELECT id FROM audit_log WHERE action = 'execution.fill' ORDER BY id LIMIT 1 OFFSET 1"
    ).fetchone()[0]
    con.execute(
        "UPDATE audit_log SET payload = replace(payload, '\"price\":', '\"price\":1') WHERE id = ?", [target]
    )
    con.close()
    proc = run_cli("audit", "verify", data_dir=copy)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "1 problem(s)" in proc.stdout
    row = next(ln for ln in proc.stdout.splitlines() if ln.strip("│ ").startswith(str(target)))
    assert "edited" in row


def test_a_deleted_record_fails_verification(copy: Path) -> None:
    con = duckdb.connect(str(copy / "alphaloom.duckdb"))
    con.execute("DELETE FROM audit_log WHERE id = 7")
    con.close()
    proc = run_cli("audit", "verify", data_dir=copy)
    assert proc.returncode == 1
    assert "missing" in proc.stdout
    assert "deleted" in proc.stdout


def test_export_csv_has_every_fill_with_its_decision_trail(traded: Path, tmp_path: Path) -> None:
    out = tmp_path / "report" / "orders.csv"
    proc = run_cli("audit", "export", "--format", "csv", "--out", str(out), data_dir=traded)
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader(out.open()))
    with DuckDBRelationalStore(traded / "alphaloom.duckdb") as store:
        fills = store.fills()
        orders = store.orders()
        audit = {r.id: r for r in store.audit_log()}
    assert sorted(r["fill_id"] for r in rows if r["fill_id"]) == sorted(f.fill_id for f in fills)
    assert {r["client_order_id"] for r in rows} == {o.client_order_id for o in orders}
    for row in rows:
        assert row["venue"] == "paper"
        assert row["order_ts"]
        assert row["status"]
        trail = [audit[int(i)] for i in row["trail"].split(">")]
        actions = [r.action for r in trail]
        # signal -> order -> risk decision -> ... -> fills, in that order
        assert actions[:3] == ["execution.signal", "execution.order", "risk.decision"]
        assert row["risk_approved"] == "True"
        assert row["model_version"].startswith("trend_rule-")
        assert len(row["input_hash"]) == 64
        if row["fill_id"]:
            assert "execution.fill" in actions


def test_export_json_nests_fills_and_full_trail(traded: Path, tmp_path: Path) -> None:
    out = tmp_path / "orders.json"
    proc = run_cli("audit", "export", "--format", "json", "--out", str(out), data_dir=traded)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    assert report["audit_chain_ok"] is True
    filled = [o for o in report["orders"] if o["fills"]]
    assert filled
    for order in filled:
        assert sum(f["quantity"] for f in order["fills"]) == pytest.approx(order["filled_quantity"])
        assert all(len(r["hash"]) == 64 for r in order["trail"])
        fill_ids = {r["payload"].get("fill_id") for r in order["trail"] if r["action"] == "execution.fill"}
        assert {f["fill_id"] for f in order["fills"]} == fill_ids


def test_export_refuses_an_unknown_format(traded: Path, tmp_path: Path) -> None:
    proc = run_cli("audit", "export", "--format", "xml", "--out", str(tmp_path / "x"), data_dir=traded)
    assert proc.returncode == 2
    assert "csv or json" in proc.stderr


def test_audit_without_a_store(tmp_path: Path) -> None:
    proc = run_cli("audit", "verify", data_dir=tmp_path / "none")
    assert proc.returncode == 2
    assert "alphaloom trade --paper" in proc.stderr
