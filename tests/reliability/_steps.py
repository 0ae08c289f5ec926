"""A scripted trading session's writes to a relational store, shared by the tests and their child processes.

Step ``i`` records an order, audits it, records its fill and audits that, all at fixed timestamps, so two
stores fed the same steps (one disturbed, one not) must end up with identical records and audit hashes.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from alphaloom.core.types import Account, Fill, Order, OrderResult, OrderStatus, Side
from alphaloom.data.storage.relational import AuditRecord, RelationalStore

T0 = datetime(2024, 1, 2, 14, 30, tzinfo=UTC)
ACCOUNT = "acc-1"


def order(i: int) -> Order:
    return Order(
        symbol="SPY" if i % 2 else "BTCUSD",
        side=Side.BUY if i % 3 else Side.SELL,
        quantity=1.0 + i,
        client_order_id=f"cid-{i:04d}",
        ts=T0 + timedelta(minutes=i),
    )


def result(i: int) -> OrderResult:
    o = order(i)
    fill = Fill(
        client_order_id=o.client_order_id,
        fill_id=f"fill-{i:04d}",
        symbol=o.symbol,
        side=o.side,
        quantity=o.quantity,
        price=100.0 + i / 8,
        fee=0.01 * (i + 1),
        ts=o.ts + timedelta(seconds=30),
    )
    return OrderResult(
        client_order_id=o.client_order_id,
        venue_order_id=f"v-{i}",
        status=OrderStatus.FILLED,
        filled_quantity=o.quantity,
        avg_fill_price=fill.price,
        fills=(fill,),
        ts=fill.ts,
    )


def step(store: RelationalStore, i: int) -> list[AuditRecord]:
    """Write step ``i``; returns the audit records the store handed back."""
    if i % 10 == 0:
        store.upsert_account(
            Account(account_id=ACCOUNT, cash=100_000.0 - i, equity=100_000.0 + i, venue="paper", ts=T0)
        )
    o = order(i)
    store.record_order(o, account_id=ACCOUNT)
    audits = [
        store.append_audit(
            "engine:test",
            "execution.order",
            {"client_order_id": o.client_order_id, "quantity": o.quantity, "side": o.side, "i": i},
            ts=o.ts,
        )
    ]
    store.record_order_result(result(i))
    audits.append(
        store.append_audit(
            "engine:test",
            "execution.fill",
            {"fill_id": f"fill-{i:04d}", "signal_audit_id": audits[0].id, "price": 100.0 + i / 8},
            ts=o.ts + timedelta(seconds=30),
        )
    )
    return audits


def snapshot(store: RelationalStore) -> dict[str, object]:
    """Everything the store holds, comparable across backends."""
    return {
        "accounts": [a.model_dump() for a in store.accounts()],
        "orders": [
            (
                r.order.model_dump(),
                r.account_id,
                r.status,
                r.venue_order_id,
                r.filled_quantity,
                r.avg_fill_price,
            )
            for r in store.orders()
        ],
        "fills": [f.model_dump() for f in store.fills()],
        "audit": [(a.id, a.ts, a.actor, a.action, a.payload, a.prev_hash, a.hash) for a in store.audit_log()],
    }
