"""Reconciliation: compare what the engine believes with what the venue holds, and resolve every difference.

The rule, stated once:

- **The venue is the source of truth for positions, cash and fills.** A local position or cash balance that
  differs from the venue's is replaced by the venue's; fills the venue reports that we had not booked are
  booked.
- **A local open order the venue does not know is lost**: it never reached the venue (the process died
  between recording and sending it, or the venue dropped it). It is marked ``rejected`` with the reason,
  and the engine's next decision re-decides the quantity it was for (sizing nets only live orders).
- **A venue order unknown locally is adopted**: it is recorded and tracked like our own (it may have been
  placed by an earlier process whose record was lost, or by hand).
- **A venue report that contradicts the local state** (``filled`` where we had ``cancelled``) replaces the
  local state.
- **A venue that cannot be reached** leaves the local state as it is; the report says what was not checked,
  and the next reconciliation tries again.

Every difference becomes a :class:`Difference` with its resolution, so the engine can report and audit it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, MutableMapping
from datetime import datetime
from typing import Any, Literal, NamedTuple

from alphaloom.core.exceptions import (
    AuthenticationError,
    ConnectorError,
    RateLimitError,
    VenueUnavailableError,
)
from alphaloom.core.timeutil import ensure_utc
from alphaloom.core.types import Account, Fill, Order, OrderResult, Position
from alphaloom.execution.orders import ManagedOrder

__all__ = ["Difference", "Reconciliation", "reconcile"]

DifferenceKind = Literal[
    "position", "cash", "order_lost", "order_adopted", "order_updated", "order_conflict", "unchecked"
]

# Differences smaller than this (relative to the larger side, and absolute floor) are float noise.
_RTOL, _ATOL = 1e-9, 1e-9
_UNREACHABLE = (VenueUnavailableError, RateLimitError, AuthenticationError)


class Difference(NamedTuple):
    """One difference between the local view and the venue's, and how it was resolved."""

    kind: DifferenceKind
    symbol: str
    client_order_id: str
    local: Any
    venue: Any
    resolution: str

    def as_dict(self) -> dict[str, Any]:
        return {
            k: (v if not isinstance(v, float) or math.isfinite(v) else None)
            for k, v in self._asdict().items()
        }


class Reconciliation(NamedTuple):
    """The outcome of :func:`reconcile`.

    Attributes
    ----------
    ts
        When it ran (UTC).
    differences
        Every difference found, with its resolution; empty when the two sides agreed.
    new_fills
        Fills the venue reported that were not booked locally (book them).
    positions
        The venue's open positions by symbol, now the local ones; ``None`` if unreachable.
    account
        The venue's account; ``None`` if unreachable.
    complete
        False when part of the check could not be done (venue unreachable).
    """

    ts: datetime
    differences: list[Difference]
    new_fills: list[Fill]
    positions: dict[str, Position] | None
    account: Account | None
    complete: bool

    @property
    def clean(self) -> bool:
        """Both sides agreed and everything was checked."""
        return self.complete and not self.differences

    def payload(self) -> dict[str, Any]:
        """A JSON-able summary for the audit log."""
        return {
            "ts": self.ts,
            "complete": self.complete,
            "differences": [d.as_dict() for d in self.differences],
            "new_fills": [f.fill_id for f in self.new_fills],
            "positions": None
            if self.positions is None
            else {s: p.quantity for s, p in sorted(self.positions.items())},
            "cash": None if self.account is None else self.account.cash,
        }


def _differs(a: float, b: float) -> bool:
    return not math.isclose(a, b, rel_tol=_RTOL, abs_tol=_ATOL)


async def reconcile(
    connector: Any,
    orders: MutableMapping[str, ManagedOrder],
    positions: Mapping[str, float],
    cash: float | None,
    *,
    ts: datetime,
) -> Reconciliation:
    """Reconcile ``orders``, ``positions`` and ``cash`` with ``connector``'s venue (see the module rule).

    Parameters
    ----------
    connector
        An :class:`~alphaloom.data.connectors.ExchangeConnector`. When it also has
        ``get_open_orders() -> list[tuple[Order, OrderResult]]`` (the paper exchange does), venue orders
        unknown locally are adopted.
    orders
        The engine's orders by client order id; updated in place (lost orders marked, adopted ones added,
        contradicted ones replaced).
    positions
        Local signed positions in units, before the fills this reconciliation recovers (those are added
        before comparing, so only unexplained differences are reported).
    cash
        Local cash, or ``None`` to skip the cash check (recovered fills are applied to it the same way).
    ts
        The time of the reconciliation (aware).
    """
    ts = ensure_utc(ts, name="ts")
    diffs: list[Difference] = []
    new_fills: list[Fill] = []
    complete = True

    for cid, managed in list(orders.items()):
        if not managed.is_open:
            continue
        symbol = managed.order.symbol
        try:
            result = await connector.get_order(cid)
        except _UNREACHABLE as exc:
            complete = False
            diffs.append(
                Difference(
                    "unchecked",
                    symbol,
                    cid,
                    managed.status.value,
                    None,
                    f"venue unreachable ({exc}); retried",
                )
            )
            continue
        except ConnectorError as exc:
            before = managed.status.value
            managed_lost(managed, f"lost: the venue has no such order at reconciliation ({exc})")
            diffs.append(
                Difference(
                    "order_lost",
                    symbol,
                    cid,
                    before,
                    None,
                    "marked rejected; its quantity is re-decided at the next bar",
                )
            )
            continue
        before_status, before_filled = managed.status, managed.filled_quantity
        try:
            added = managed.apply_result(result)
        except ConnectorError as exc:
            orders[cid] = replacement = ManagedOrder.from_venue(managed.order, result)
            added = [f for f in replacement.fills.values() if f.fill_id not in managed.fills]
            diffs.append(
                Difference(
                    "order_conflict",
                    symbol,
                    cid,
                    before_status.value,
                    result.status.value,
                    f"replaced by the venue's state ({exc})",
                )
            )
        else:
            if managed.status is not before_status or added:
                diffs.append(
                    Difference(
                        "order_updated",
                        symbol,
                        cid,
                        f"{before_status.value} ({before_filled:g} filled)",
                        f"{managed.status.value} ({managed.filled_quantity:g} filled)",
                        f"took the venue's state; {len(added)} fill(s) booked",
                    )
                )
        new_fills += added

    list_open = getattr(connector, "get_open_orders", None)
    if callable(list_open):
        try:
            venue_open: list[tuple[Order, OrderResult]] = await list_open()
        except _UNREACHABLE as exc:
            complete = False
            diffs.append(Difference("unchecked", "", "", None, None, f"open orders not listed ({exc})"))
            venue_open = []
        for order, result in venue_open:
            cid = order.client_order_id
            if cid in orders:
                continue
            orders[cid] = adopted = ManagedOrder.from_venue(order, result)
            new_fills += list(adopted.fills.values())
            diffs.append(
                Difference(
                    "order_adopted",
                    order.symbol,
                    cid,
                    None,
                    f"{result.status.value} {order.side.value} {order.quantity:g}",
                    "adopted: recorded and tracked like our own",
                )
            )

    expected = dict(positions)
    for fill in new_fills:
        expected[fill.symbol] = expected.get(fill.symbol, 0.0) + fill.signed_quantity
    venue_positions: dict[str, Position] | None = None
    try:
        held = await connector.get_positions()
    except _UNREACHABLE as exc:
        complete = False
        diffs.append(Difference("unchecked", "", "", None, None, f"positions not fetched ({exc})"))
    else:
        venue_positions = {s: p for s, p in held.items() if p.quantity != 0}
        for symbol in sorted(set(expected) | set(venue_positions)):
            local_q = expected.get(symbol, 0.0)
            venue_q = venue_positions[symbol].quantity if symbol in venue_positions else 0.0
            if _differs(local_q, venue_q):
                diffs.append(
                    Difference("position", symbol, "", local_q, venue_q, "took the venue's position")
                )

    account: Account | None = None
    try:
        account = await connector.get_account()
    except _UNREACHABLE as exc:
        complete = False
        diffs.append(Difference("unchecked", "", "", None, None, f"account not fetched ({exc})"))
    else:
        if cash is not None:
            local_cash = cash - math.fsum(f.signed_quantity * f.price + f.fee for f in new_fills)
            if _differs(local_cash, account.cash):
                diffs.append(Difference("cash", "", "", local_cash, account.cash, "took the venue's cash"))

    return Reconciliation(ts, diffs, new_fills, venue_positions, account, complete)


def managed_lost(managed: ManagedOrder, reason: str) -> None:
    """Mark an open order the venue does not know as rejected (or cancelled once something had filled)."""
    if managed.filled_quantity > 0:
        managed.cancel(reason)
    else:
        managed.reject(reason)
