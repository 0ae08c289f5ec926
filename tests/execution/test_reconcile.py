"""Reconciliation with the paper venue: every difference found, reported and resolved by the stated rule."""

from __future__ import annotations

import asyncio

import pytest

from alphaloom.core.exceptions import VenueUnavailableError
from alphaloom.core.resilience import RetryPolicy
from alphaloom.core.types import Order, OrderStatus, OrderType, Side
from alphaloom.execution.orders import ManagedOrder
from alphaloom.execution.reconcile import reconcile
from alphaloom.risk import RiskLimits, RiskManager

RISK = RiskManager(RiskLimits())


def _order(paper, symbol: str = "SPY", qty: float = 10.0, **kw) -> Order:
    return Order(symbol=symbol, side=Side.BUY, quantity=qty, ts=paper.clock.now(), **kw)


def test_agreeing_books_give_a_clean_report(make_paper) -> None:
    paper = make_paper()

    async def run():
        paper.run(3)
        order = _order(paper)
        result = await RISK.submit(order, paper)
        orders = {order.client_order_id: ManagedOrder(order)}
        orders[order.client_order_id].apply_result(result)
        paper.run(1)  # it fills at the next open
        fill = paper.fills[-1]
        return await reconcile(
            paper, orders, {}, paper.portfolio.cash + fill.notional + fill.fee, ts=paper.clock.now()
        )

    report = asyncio.run(run())
    kinds = [d.kind for d in report.differences]
    assert kinds == ["order_updated"]  # the fill we had not polled yet: booked, and then the books agree
    assert len(report.new_fills) == 1
    assert report.complete
    assert report.positions["SPY"].quantity == 10.0


def test_a_local_order_the_venue_never_got_is_marked_lost(make_paper) -> None:
    paper = make_paper()
    order = _order(paper)
    orders = {order.client_order_id: ManagedOrder(order)}
    report = asyncio.run(reconcile(paper, orders, {}, None, ts=paper.clock.now()))
    (diff,) = report.differences
    assert diff.kind == "order_lost"
    assert diff.client_order_id == order.client_order_id
    assert orders[order.client_order_id].status is OrderStatus.REJECTED
    assert orders[order.client_order_id].message.startswith("lost")


def test_a_venue_order_unknown_locally_is_adopted(make_paper) -> None:
    paper = make_paper()

    async def run():
        paper.run(2)
        limit = _order(paper, qty=4.0, order_type=OrderType.LIMIT, limit_price=100.0)
        await RISK.submit(limit, paper)  # e.g. placed by a process whose records were lost
        orders: dict[str, ManagedOrder] = {}
        return limit, orders, await reconcile(paper, orders, {}, None, ts=paper.clock.now())

    limit, orders, report = asyncio.run(run())
    assert [d.kind for d in report.differences] == ["order_adopted"]
    assert orders[limit.client_order_id].status is OrderStatus.ACCEPTED
    assert orders[limit.client_order_id].remaining == 4.0


def test_position_and_cash_differences_take_the_venues_values(make_paper) -> None:
    paper = make_paper()

    async def run():
        paper.run(2)
        await RISK.submit(_order(paper, "QQQ", 7.0), paper)
        paper.run(1)
        # The local book believes it holds 3 SPY and no QQQ, with 1,000 more cash than the venue says.
        return await reconcile(paper, {}, {"SPY": 3.0}, paper.portfolio.cash + 1000.0, ts=paper.clock.now())

    report = asyncio.run(run())
    diffs = {(d.kind, d.symbol): d for d in report.differences}
    assert diffs[("position", "SPY")].local == 3.0
    assert diffs[("position", "SPY")].venue == 0.0
    assert diffs[("position", "QQQ")].venue == 7.0
    assert diffs[("cash", "")].venue == pytest.approx(diffs[("cash", "")].local - 1000.0)
    assert all(d.resolution.startswith("took the venue's") for d in diffs.values())
    assert set(report.positions) == {"QQQ"}
    payload = report.payload()
    assert payload["positions"] == {"QQQ": 7.0}


def test_an_unreachable_venue_leaves_local_state_alone(make_paper) -> None:
    from alphaloom.data.connectors.paper import FaultPlan

    paper = make_paper(faults=FaultPlan(fail_share=0.999, seed=3), retry=RetryPolicy(max_attempts=1))
    order = _order(paper)
    orders = {order.client_order_id: ManagedOrder(order)}
    report = asyncio.run(reconcile(paper, orders, {"SPY": 5.0}, 1000.0, ts=paper.clock.now()))
    assert not report.complete
    assert {d.kind for d in report.differences} == {"unchecked"}
    assert orders[order.client_order_id].status is OrderStatus.NEW  # not marked lost: we could not ask
    assert report.positions is None
    assert report.account is None
    with pytest.raises(VenueUnavailableError):
        asyncio.run(paper.get_positions())
