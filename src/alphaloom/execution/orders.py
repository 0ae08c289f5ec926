"""The order state machine and deterministic, idempotent client order ids.

Order states and the only legal moves between them::

    NEW ──> ACCEPTED ──> PARTIALLY_FILLED ──> FILLED
     │         │  │            │  ^   │
     │         │  │            └──┘   └──────> CANCELLED
     │         │  └───────────────────────────> FILLED / CANCELLED
     │         └──> REJECTED
     └──> REJECTED / CANCELLED

FILLED, CANCELLED and REJECTED are terminal. A fill reported for a ``NEW`` order means the venue accepted it
without telling us first, so :meth:`ManagedOrder.apply_result` passes through ``ACCEPTED`` on the way;
anything else outside the table raises, and the order is left as it was.

Client order ids are derived from the run id, the decision time, the symbol and a sequence number, so a
process that restarts and re-decides the same bar produces the same id again and the venue's idempotency on
client order ids turns the second submission into a no-op instead of a second order.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Final

from alphaloom.core.exceptions import ConfigError, DataFormatError, OrderStateError
from alphaloom.core.timeutil import ensure_utc
from alphaloom.core.types import Fill, Order, OrderResult, OrderStatus

__all__ = [
    "LEGAL_TRANSITIONS",
    "ManagedOrder",
    "check_transition",
    "deterministic_client_order_id",
]

S = OrderStatus

#: From each state, the states an order may move to. Terminal states have none.
LEGAL_TRANSITIONS: Final = MappingProxyType(
    {
        S.NEW: frozenset({S.ACCEPTED, S.REJECTED, S.CANCELLED}),
        S.ACCEPTED: frozenset({S.PARTIALLY_FILLED, S.FILLED, S.CANCELLED, S.REJECTED}),
        S.PARTIALLY_FILLED: frozenset({S.PARTIALLY_FILLED, S.FILLED, S.CANCELLED}),
        S.FILLED: frozenset(),
        S.CANCELLED: frozenset(),
        S.REJECTED: frozenset(),
    }
)

# How far along each state is; a report less advanced than what we know is stale, not a contradiction.
_RANK: Final = MappingProxyType(
    {S.NEW: 0, S.ACCEPTED: 1, S.PARTIALLY_FILLED: 2, S.FILLED: 3, S.CANCELLED: 3, S.REJECTED: 3}
)

# Relative tolerance on quantities: a remainder below this share of the order counts as filled.
_QTY_RTOL = 1e-9

# Namespace of the deterministic ids (a fixed random UUID, so our ids never collide with other uuid5 users).
_CID_NAMESPACE = uuid.UUID("5b0e43c2-6f7e-4d55-9a63-2d1c0f5e8a71")


def check_transition(order_id: str, current: OrderStatus, new: OrderStatus) -> None:
    """Raise unless ``current -> new`` is in :data:`LEGAL_TRANSITIONS`.

    Raises
    ------
    OrderStateError
        The move is not legal (a venue reporting it is inconsistent with what it reported before).
    """
    if new not in LEGAL_TRANSITIONS[current]:
        allowed = ", ".join(sorted(s.value for s in LEGAL_TRANSITIONS[current])) or "none (terminal)"
        raise OrderStateError(
            f"order {order_id}: illegal state change {current.value} -> {new.value}; from {current.value} "
            f"the legal next states are {allowed}. The venue's report contradicts what it said before; "
            "reconcile with the venue before trading on."
        )


def deterministic_client_order_id(run_id: str, decided_at: datetime, symbol: str, seq: int) -> str:
    """The client order id of the ``seq``-th order for ``symbol`` decided at ``decided_at`` in ``run_id``.

    The same inputs always give the same id (``"al-"`` and 32 hex digits, like
    :func:`~alphaloom.core.types.new_client_order_id`), so re-deciding a bar after a restart re-sends the
    same id and the venue de-duplicates it.

    Parameters
    ----------
    run_id
        Identifies the trading run (non-empty).
    decided_at
        The decision time (aware; normalised to UTC, microsecond precision).
    symbol
        The order's symbol.
    seq
        Order number for this symbol and decision, from 0.
    """
    if not isinstance(run_id, str) or not run_id.strip():
        raise ConfigError(f"run_id must be a non-empty string, got {run_id!r}.")
    if not isinstance(symbol, str) or not symbol:
        raise ConfigError(f"symbol must be a non-empty string, got {symbol!r}.")
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
        raise ConfigError(f"seq must be an integer >= 0, got {seq!r}.")
    ts = ensure_utc(decided_at, name="decided_at").isoformat(timespec="microseconds")
    return f"al-{uuid.uuid5(_CID_NAMESPACE, f'{run_id}|{ts}|{symbol}|{seq}').hex}"


@dataclass
class ManagedOrder:
    """One order's life as the engine tracks it: state, fills (each once) and the venue's messages.

    Parameters
    ----------
    order
        The order as sent.
    status
        Its state; ``NEW`` until the venue says otherwise.

    Attributes
    ----------
    fills
        Fills by ``fill_id``, in arrival order; a fill reported twice is kept once.
    venue_order_id, message
        From the venue's latest report.
    history
        Every state the order went through, starting with its first.
    """

    order: Order
    status: OrderStatus = OrderStatus.NEW
    fills: dict[str, Fill] = field(default_factory=dict)
    venue_order_id: str = ""
    message: str = ""
    history: list[OrderStatus] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not isinstance(self.order, Order):
            raise DataFormatError(f"ManagedOrder needs an Order, got {type(self.order).__name__}.")
        self.status = OrderStatus(self.status)
        if not self.history:
            self.history.append(self.status)

    @classmethod
    def from_venue(cls, order: Order, result: OrderResult) -> ManagedOrder:
        """The order as the venue reports it (used to adopt an order, or to replace a contradicted record)."""
        if result.client_order_id != order.client_order_id:
            raise DataFormatError(
                f"result for {result.client_order_id!r} does not belong to order {order.client_order_id!r}."
            )
        return cls(
            order,
            result.status,
            fills={f.fill_id: f for f in result.fills},
            venue_order_id=result.venue_order_id,
            message=result.message,
        )

    # ------------------------------------------------------------------ views

    @property
    def client_order_id(self) -> str:
        return self.order.client_order_id

    @property
    def filled_quantity(self) -> float:
        """Units filled so far (sum of distinct fills)."""
        return math.fsum(f.quantity for f in self.fills.values())

    @property
    def remaining(self) -> float:
        """Units still to fill; 0 for a terminal order (nothing more can fill)."""
        if self.status.is_terminal:
            return 0.0
        return max(0.0, self.order.quantity - self.filled_quantity)

    @property
    def signed_remaining(self) -> float:
        """:attr:`remaining` with the order's sign (+ buy, - sell)."""
        return self.order.side.sign * self.remaining

    @property
    def avg_fill_price(self) -> float | None:
        qty = self.filled_quantity
        if qty <= 0:
            return None
        return math.fsum(f.quantity * f.price for f in self.fills.values()) / qty

    @property
    def is_open(self) -> bool:
        return not self.status.is_terminal

    # ------------------------------------------------------------------ events

    def accept(self, venue_order_id: str = "") -> None:
        """The venue acknowledged the order."""
        self._move(OrderStatus.ACCEPTED)
        if venue_order_id:
            self.venue_order_id = venue_order_id

    def reject(self, reason: str) -> None:
        """The venue (or the risk manager) refused the order."""
        self._move(OrderStatus.REJECTED)
        self.message = reason

    def cancel(self, reason: str = "cancelled") -> None:
        """The order was cancelled; what filled stays filled."""
        self._move(OrderStatus.CANCELLED)
        self.message = reason

    def add_fill(self, fill: Fill) -> bool:
        """Book ``fill``; returns False when it was booked before (same ``fill_id``).

        Raises
        ------
        DataFormatError
            The fill belongs to another order, symbol or side, or would fill more than the order's quantity.
        OrderStateError
            The order cannot fill in its state (cancelled, rejected, filled, or still ``NEW``).
        """
        if not isinstance(fill, Fill):
            raise DataFormatError(f"add_fill() takes a Fill, got {type(fill).__name__}.")
        o = self.order
        if (fill.client_order_id, fill.symbol, fill.side) != (o.client_order_id, o.symbol, o.side):
            raise DataFormatError(
                f"fill {fill.fill_id} ({fill.client_order_id}, {fill.side} {fill.symbol}) does not belong to "
                f"order {o.client_order_id} ({o.side} {o.symbol})."
            )
        if fill.fill_id in self.fills:
            return False
        total = self.filled_quantity + fill.quantity
        if total > o.quantity * (1.0 + _QTY_RTOL):
            raise DataFormatError(
                f"fill {fill.fill_id} of {fill.quantity:g} would take order {o.client_order_id} to "
                f"{total:g} filled, above its quantity {o.quantity:g}; the venue over-filled it."
            )
        done = total >= o.quantity * (1.0 - _QTY_RTOL)
        self._move(OrderStatus.FILLED if done else OrderStatus.PARTIALLY_FILLED)
        self.fills[fill.fill_id] = fill
        return True

    def apply_result(self, result: OrderResult) -> list[Fill]:
        """Bring the order up to the venue's report; returns the fills that are new.

        The report may skip states the venue never sent separately (``NEW`` straight to ``FILLED``): the
        legal path is walked through. A report that goes backwards (``FILLED`` after ``CANCELLED``) raises
        and changes nothing.
        """
        if not isinstance(result, OrderResult):
            raise DataFormatError(f"apply_result() takes an OrderResult, got {type(result).__name__}.")
        if result.client_order_id != self.client_order_id:
            raise DataFormatError(
                f"result for {result.client_order_id!r} applied to order {self.client_order_id!r}."
            )
        snapshot = (self.status, dict(self.fills), self.venue_order_id, self.message, list(self.history))
        try:
            return self._apply(result)
        except BaseException:
            self.status, self.fills, self.venue_order_id, self.message, self.history = snapshot
            raise

    def _apply(self, result: OrderResult) -> list[Fill]:
        new_fills = [f for f in result.fills if f.fill_id not in self.fills]
        if new_fills and self.status is OrderStatus.NEW:
            self.accept(result.venue_order_id)
        added = [f for f in new_fills if self.add_fill(f)]
        if result.venue_order_id:
            self.venue_order_id = result.venue_order_id
        target, current = result.status, self.status
        if target is not current:
            if _RANK[target] < _RANK[current] and not (target.is_terminal and current.is_terminal):
                pass  # a stale report, older than what we know: nothing to do
            elif target in (OrderStatus.PARTIALLY_FILLED, OrderStatus.FILLED):
                if not math.isclose(
                    self.filled_quantity, result.filled_quantity, rel_tol=1e-9, abs_tol=1e-12
                ):
                    raise OrderStateError(
                        f"order {self.client_order_id}: the venue reports {target.value} with "
                        f"{result.filled_quantity:g} filled but sent fills for {self.filled_quantity:g}; "
                        "fetch the order again (get_order) to receive its fills."
                    )
                if target is OrderStatus.FILLED and self.filled_quantity < self.order.quantity * (
                    1 - _QTY_RTOL
                ):
                    raise OrderStateError(
                        f"order {self.client_order_id}: the venue reports it filled, but its fills add up to "
                        f"{self.filled_quantity:g} of {self.order.quantity:g}; fetch the order again."
                    )
                self._move(target)
            else:
                self._move(target)
        if result.message:
            self.message = result.message
        return added

    def _move(self, new: OrderStatus) -> None:
        check_transition(self.client_order_id, self.status, new)
        self.status = new
        self.history.append(new)
