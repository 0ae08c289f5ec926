"""Proof that the risk manager approved an order: the only ticket a connector accepts.

Every order, from every path (backtest, paper, live, API, CLI), must pass the risk manager
(:class:`alphaloom.risk.manager.RiskManager`) before a venue sees it. The manager hands back a
:class:`RiskApproval` for exactly the order it approved; :meth:`ExchangeConnector.place_order
<alphaloom.data.connectors.base.ExchangeConnector.place_order>` calls :func:`verify_approval` before anything
else and refuses an order whose approval is missing, forged, or issued for another order.

The approval is signed with HMAC-SHA256 under a random key drawn once per process and kept in this module, so
an approval cannot be built by hand, carried to another process, or moved to an order with different fields
(the signature covers the :func:`order_digest` of the order's symbol, side, quantity, type, prices, time in
force and client order id). Only ``risk/manager.py`` issues approvals (a structural test checks it); this is a
guard against mistakes and shortcuts in our own code, not a defence against code running in the same process
that sets out to defeat it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime

from alphaloom.core.exceptions import RiskLimitError
from alphaloom.core.timeutil import ensure_utc
from alphaloom.core.types import Order

__all__ = ["RiskApproval", "order_digest", "verify_approval"]

# Drawn once per process and never exported: approvals do not outlive the process that issued them.
_KEY: bytes = secrets.token_bytes(32)


@dataclass(frozen=True, slots=True)
class RiskApproval:
    """The risk manager's signed approval of one order.

    Attributes
    ----------
    client_order_id
        The approved order's client id.
    order_digest
        :func:`order_digest` of the approved order (hex SHA-256).
    decision_id
        The id of the risk decision that approved it (it names the decision in the audit log).
    issued_at
        When the approval was issued (aware UTC).
    signature
        HMAC-SHA256 (hex) of the fields above under this process's approval key.
    """

    client_order_id: str
    order_digest: str
    decision_id: str
    issued_at: datetime
    signature: str


def _canonical(order: Order) -> str:
    # repr() of a float round-trips exactly, so two orders share a digest only if every field is equal.
    fields = (
        order.symbol,
        order.side.value,
        repr(float(order.quantity)),
        order.order_type.value,
        "" if order.limit_price is None else repr(float(order.limit_price)),
        "" if order.stop_price is None else repr(float(order.stop_price)),
        order.time_in_force.value,
        order.client_order_id,
    )
    return "\x1f".join(fields)


def order_digest(order: Order) -> str:
    """SHA-256 (hex) of an order's canonical fields.

    The fields are symbol, side, quantity, order type, limit and stop prices, time in force and client order
    id; the order's ``ts`` is not part of it (re-stamping an order does not change what it trades).

    Raises
    ------
    RiskLimitError
        ``order`` is not an :class:`~alphaloom.core.types.Order`.
    """
    if not isinstance(order, Order):
        raise RiskLimitError(f"order_digest() takes an Order, got {type(order).__name__}.", limit="approval")
    return hashlib.sha256(_canonical(order).encode()).hexdigest()


def _sign(client_order_id: str, digest: str, decision_id: str, issued_at: datetime) -> str:
    message = "\x1f".join((client_order_id, digest, decision_id, issued_at.isoformat()))
    return hmac.new(_KEY, message.encode(), hashlib.sha256).hexdigest()


def _issue_approval(order: Order, decision_id: str, ts: datetime) -> RiskApproval:
    # Only alphaloom.risk.manager calls this (tests/risk/test_order_path.py checks it structurally).
    digest = order_digest(order)
    issued_at = ensure_utc(ts, name="ts")
    return RiskApproval(
        client_order_id=order.client_order_id,
        order_digest=digest,
        decision_id=decision_id,
        issued_at=issued_at,
        signature=_sign(order.client_order_id, digest, decision_id, issued_at),
    )


def verify_approval(order: Order, approval: RiskApproval | None) -> None:
    """Check that ``approval`` is the risk manager's approval of exactly ``order``.

    Parameters
    ----------
    order
        The order about to be sent to a venue.
    approval
        What :meth:`RiskManager.check <alphaloom.risk.manager.RiskManager.check>` returned for it.

    Raises
    ------
    RiskLimitError
        No approval, an approval that was not issued by this process's risk manager (forged or altered), or
        one issued for another order or for this order before its fields were changed. ``limit`` is
        ``"approval"``.
    """
    how = (
        "Send orders through RiskManager.submit(order, connector), or pass "
        "RiskManager.check(order).approval for this very order."
    )
    if approval is None:
        raise RiskLimitError(
            f"order {getattr(order, 'client_order_id', '?')!r} has no risk approval; nothing was sent to the "
            f"venue. {how}",
            limit="approval",
        )
    if not isinstance(approval, RiskApproval):
        raise RiskLimitError(
            f"expected a RiskApproval, got {type(approval).__name__}; nothing was sent to the venue. {how}",
            limit="approval",
        )
    digest = order_digest(order)
    if approval.client_order_id != order.client_order_id:
        raise RiskLimitError(
            f"the approval is for order {approval.client_order_id!r}, not {order.client_order_id!r}; "
            f"nothing was sent to the venue. {how}",
            limit="approval",
        )
    if not isinstance(approval.issued_at, datetime) or approval.issued_at.tzinfo is None:
        raise RiskLimitError(
            f"the approval of order {order.client_order_id!r} has no aware issued_at "
            f"(got {approval.issued_at!r}); it was not issued by the risk manager. {how}",
            limit="approval",
        )
    expected = _sign(
        approval.client_order_id, approval.order_digest, approval.decision_id, approval.issued_at
    )
    if not isinstance(approval.signature, str) or not hmac.compare_digest(expected, approval.signature):
        raise RiskLimitError(
            f"the approval of order {order.client_order_id!r} has an invalid signature: it was forged, "
            f"altered, or issued by another process; nothing was sent to the venue. {how}",
            limit="approval",
        )
    if not hmac.compare_digest(approval.order_digest, digest):
        raise RiskLimitError(
            f"order {order.client_order_id!r} differs from the order the risk manager approved (symbol, "
            f"side, quantity, type, prices or time in force changed after approval); nothing was sent to "
            f"the venue. Check the changed order again: {how}",
            limit="approval",
        )
