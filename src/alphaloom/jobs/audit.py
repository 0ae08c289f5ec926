"""``alphaloom audit verify`` and ``alphaloom audit export``: check the hash-chained audit log, and write the
regulatory report of orders and fills with their decision trail.

The audit log lives in the workspace's relational store (the DuckDB file ``alphaloom.duckdb``). Each order's
*decision trail* is every audit record that names its client order id (the engine's order record, the risk
manager's decision, state changes, fills), preceded by the signal the order was sized from.
"""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, NamedTuple

from rich.table import Table

from alphaloom.core.exceptions import ConfigError, DataNotFoundError, StorageError, did_you_mean
from alphaloom.data.storage.relational import (
    AuditProblem,
    AuditRecord,
    DuckDBRelationalStore,
    OrderRecord,
    RelationalStore,
    canonical_json,
)
from alphaloom.jobs.workspace import Workspace

__all__ = [
    "EXPORT_COLUMNS",
    "AuditVerification",
    "decision_trails",
    "export_report",
    "open_records",
    "verification_table",
    "verify",
]

#: Columns of the CSV report, one row per fill (an order without fills has one row with empty fill fields).
EXPORT_COLUMNS: tuple[str, ...] = (
    "client_order_id",
    "venue",
    "account_id",
    "venue_order_id",
    "symbol",
    "side",
    "quantity",
    "order_type",
    "time_in_force",
    "order_ts",
    "status",
    "status_updated_at",
    "filled_quantity",
    "avg_fill_price",
    "message",
    "fill_id",
    "fill_ts",
    "fill_quantity",
    "fill_price",
    "fill_fee",
    "signal_ts",
    "signal_source",
    "model_version",
    "input_hash",
    "risk_decision_id",
    "risk_approved",
    "risk_reasons",
    "trail",
)


class AuditVerification(NamedTuple):
    """The result of :func:`verify`: how many records were checked and what is wrong (empty when intact)."""

    store: str
    records: int
    head_hash: str
    problems: list[AuditProblem]

    @property
    def ok(self) -> bool:
        return not self.problems


def open_records(ws: Workspace) -> RelationalStore:
    """The workspace's relational store, opened without changing it.

    Raises
    ------
    DataNotFoundError
        No store in the workspace, or one that has never held orders or an audit log.
    """
    if not ws.store_path.exists():
        raise DataNotFoundError(
            f"no store at {ws.store_path}; nothing has been traded or audited in {ws.root} yet "
            f"(run `alphaloom trade --paper --data-dir {ws.root}`)."
        )
    store = DuckDBRelationalStore(ws.store_path, migrate=False)
    if store.schema_version() == 0:
        store.close()
        raise DataNotFoundError(
            f"the store at {ws.store_path} has no audit log yet; run `alphaloom trade --paper --data-dir "
            f"{ws.root}` first."
        )
    return store


def verify(ws: Workspace, *, head_hash: str | None = None) -> AuditVerification:
    """Check the whole audit log against its hash chain (edited, deleted or reordered records).

    Parameters
    ----------
    head_hash
        A record hash kept elsewhere (e.g. from an earlier run's output) that must still be in the log; it
        catches records deleted from the end, which leave a valid but shorter chain.
    """
    with open_records(ws) as store:
        problems = store.verify_audit_chain(head_hash=head_hash)
        records = store.audit_log()
    return AuditVerification(
        store=str(ws.store_path),
        records=len(records),
        head_hash=records[-1].hash if records else "",
        problems=problems,
    )


def verification_table(result: AuditVerification) -> Table:
    title = (
        f"Audit log: {result.records} records, chain intact"
        if result.ok
        else f"Audit log: {result.records} records, {len(result.problems)} problem(s)"
    )
    table = Table(title=title)
    if result.ok:
        table.add_column("store")
        table.add_column("head hash")
        table.add_row(result.store, result.head_hash)
        return table
    table.add_column("record", justify="right")
    table.add_column("problem")
    for p in result.problems:
        table.add_row("log" if p.record_id == 0 else str(p.record_id), p.message)
    return table


def _cid_of(payload: Mapping[str, Any]) -> str | None:
    cid = payload.get("client_order_id")
    if isinstance(cid, str):
        return cid
    order = payload.get("order")
    if isinstance(order, Mapping) and isinstance(order.get("client_order_id"), str):
        return order["client_order_id"]
    return None


def _brief(record: AuditRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "ts": record.ts.isoformat(),
        "actor": record.actor,
        "action": record.action,
        "payload": record.payload,
        "hash": record.hash,
    }


def decision_trails(audit: list[AuditRecord]) -> dict[str, list[AuditRecord]]:
    """Per client order id, its decision trail: the signal it was sized from (or, for a stop-loss or
    take-profit exit, the risk manager's exit record), then every record naming it, in log order."""
    by_id = {r.id: r for r in audit}
    trails: dict[str, list[AuditRecord]] = defaultdict(list)
    for record in audit:
        cid = _cid_of(record.payload)
        if cid is None:
            continue
        if not trails[cid]:
            signal_id = record.payload.get("signal_audit_id")
            if isinstance(signal_id, int) and signal_id in by_id:
                trails[cid].append(by_id[signal_id])
        # A protective exit the engine re-keyed: the risk manager's exit record starts its trail.
        replaced = record.payload.get("replaces_client_order_id")
        if isinstance(replaced, str) and replaced in trails:
            trails[cid] = [*trails.pop(replaced), *trails[cid]]
        trails[cid].append(record)
    return dict(trails)


def _risk_fields(trail: list[AuditRecord]) -> dict[str, Any]:
    for record in trail:
        if not record.action.startswith("risk"):
            continue
        p = record.payload
        if "approved" in p or "decision_id" in p:
            reasons = p.get("reasons") or []
            return {
                "risk_decision_id": p.get("decision_id", ""),
                "risk_approved": p.get("approved", ""),
                "risk_reasons": "; ".join(map(str, reasons)) if isinstance(reasons, list) else str(reasons),
            }
    return {"risk_decision_id": "", "risk_approved": "", "risk_reasons": ""}


def _signal_fields(trail: list[AuditRecord]) -> dict[str, Any]:
    for record in trail:
        if record.action == "execution.signal":
            p = record.payload
            return {
                "signal_ts": p.get("ts", ""),
                "signal_source": p.get("source", ""),
                "model_version": p.get("model_version", ""),
                "input_hash": p.get("input_hash", ""),
            }
    return {"signal_ts": "", "signal_source": "", "model_version": "", "input_hash": ""}


def _order_fields(rec: OrderRecord, venues: Mapping[str, str]) -> dict[str, Any]:
    o = rec.order
    return {
        "client_order_id": o.client_order_id,
        "venue": venues.get(rec.account_id or "", ""),
        "account_id": rec.account_id or "",
        "venue_order_id": rec.venue_order_id,
        "symbol": o.symbol,
        "side": o.side.value,
        "quantity": o.quantity,
        "order_type": o.order_type.value,
        "time_in_force": o.time_in_force.value,
        "order_ts": o.ts.isoformat(),
        "status": rec.status.value,
        "status_updated_at": rec.updated_at.isoformat(),
        "filled_quantity": rec.filled_quantity,
        "avg_fill_price": rec.avg_fill_price,
        "message": rec.message,
    }


def export_report(ws: Workspace, *, fmt: Literal["csv", "json"] | str, out: Path) -> dict[str, Any]:
    """Write the regulatory report: every recorded order and fill with timestamps, venue and decision trail.

    ``csv`` writes one row per fill (columns :data:`EXPORT_COLUMNS`; ``trail`` lists the audit record ids of
    the decision trail, in order); ``json`` writes one object per order with its fills and its full trail
    (each audit record with its hash), plus the chain's verification result.

    Returns
    -------
    dict
        ``orders``, ``fills``, ``audit_records``, ``chain_ok`` and ``path``.
    """
    if fmt not in ("csv", "json"):
        raise ConfigError(
            f"unknown export format {fmt!r}.{did_you_mean(str(fmt), ['csv', 'json'])} Use csv or json."
        )
    with open_records(ws) as store:
        orders = store.orders()
        fills = store.fills()
        venues = {a.account_id: a.venue for a in store.accounts()}
        audit = store.audit_log()
        problems = store.verify_audit_chain()
    fills_by: dict[str, list] = defaultdict(list)
    for f in fills:
        fills_by[f.client_order_id].append(f)
    trails = decision_trails(audit)
    rows: list[dict[str, Any]] = []
    documents: list[dict[str, Any]] = []
    for rec in orders:
        cid = rec.client_order_id
        trail = trails.get(cid, [])
        base = {
            **_order_fields(rec, venues),
            **_signal_fields(trail),
            **_risk_fields(trail),
            "trail": ">".join(str(r.id) for r in trail),
        }
        order_fills = fills_by.get(cid, [])
        for f in order_fills or [None]:
            rows.append(
                {
                    **base,
                    "fill_id": "" if f is None else f.fill_id,
                    "fill_ts": "" if f is None else f.ts.isoformat(),
                    "fill_quantity": "" if f is None else f.quantity,
                    "fill_price": "" if f is None else f.price,
                    "fill_fee": "" if f is None else f.fee,
                }
            )
        documents.append(
            {
                **{k: v for k, v in base.items() if k != "trail"},
                "fills": [
                    {
                        "fill_id": f.fill_id,
                        "ts": f.ts.isoformat(),
                        "quantity": f.quantity,
                        "price": f.price,
                        "fee": f.fee,
                    }
                    for f in order_fills
                ],
                "trail": [_brief(r) for r in trail],
            }
        )
    out = out.expanduser()
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        if fmt == "csv":
            with out.open("w", newline="", encoding="utf-8") as fh:
                writer = csv.DictWriter(fh, fieldnames=list(EXPORT_COLUMNS))
                writer.writeheader()
                for row in rows:
                    writer.writerow({k: ("" if row[k] is None else row[k]) for k in EXPORT_COLUMNS})
        else:
            report = {
                "generated_at": datetime.now(UTC).isoformat(),
                "store": str(ws.store_path),
                "audit_records": len(audit),
                "audit_chain_ok": not problems,
                "audit_problems": [str(p) for p in problems],
                "orders": documents,
            }
            out.write_text(json.dumps(json.loads(canonical_json(report)), indent=2), encoding="utf-8")
    except OSError as exc:
        raise StorageError(f"cannot write the report to {out}: {exc.strerror}.") from exc
    return {
        "orders": len(orders),
        "fills": len(fills),
        "audit_records": len(audit),
        "chain_ok": not problems,
        "path": str(out),
    }
