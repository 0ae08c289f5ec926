"""Real risk approvals for connector tests: every order goes through a permissive ``RiskManager``.

``place_order`` refuses an order without the risk manager's approval of exactly that order, so connector
tests obtain one the way production code does: ``RiskManager.check(order).approval``. The limits are wide
open (``RiskLimits()`` turns every limit off), so these tests still test the connectors, not the limits.
"""

from __future__ import annotations

from alphaloom.core.approval import RiskApproval
from alphaloom.core.types import Order
from alphaloom.risk import RiskLimits, RiskManager

#: One manager for the whole test session, as one process has one risk manager.
PERMISSIVE = RiskManager(RiskLimits())


def approved(order: Order) -> tuple[Order, RiskApproval]:
    """``(order, approval)`` for ``place_order(*approved(order))``; fails the test if the order is refused."""
    decision = PERMISSIVE.check(order)
    assert decision.approved, decision.reasons
    assert decision.approval is not None
    return order, decision.approval
