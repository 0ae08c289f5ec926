"""A deterministic order-matching engine: working orders in, fills out. No I/O, no clock, no randomness.

The paper exchange matches with it at every replayed bar, and the backtester can share it, so simulated and
paper fills follow the same rules.

Rules (a *bar* is stamped with its open time ``ts`` and covers ``[ts, ts + timeframe)``):

- **No look-ahead.** An order submitted at ``now`` can only fill on events with ``ts >= now`` (after its
  acceptance). The caller submits with ``now`` = the time its decision was made (for a bar-driven strategy,
  the *close* of the last bar it saw), so the bar it reacted to can never fill it.
- **Latency.** ``latency_bars = n`` lets ``n`` eligible bars pass before the order is accepted, and
  ``latency_s`` delays acceptance by a time; the accepting event may fill it. Until accepted an order is
  ``NEW``.
- **Market** orders fill at the next price: the bar's open, a quote's ask (buys) or bid (sells), a trade's
  price; slippage from the fee model applies.
- **Limit** orders fill when the bar trades through the limit: at the open when the bar gaps through it
  (better than the limit), else at the limit. No slippage: a limit buy never fills above its limit.
- **Stop** orders trigger when the bar reaches the stop: at the open when it gaps through (worse than the
  stop), else at the stop, then slippage applies. A triggered stop that is not fully filled works on as a
  market order. **Stop-limit** orders trigger the same way and then work as a limit order.
- **Partial fills.** Per symbol and bar at most ``participation_rate * volume`` units fill across all
  orders, in submission order; no cap when the volume is missing (NaN/None) or the rate is ``None``. A quote
  caps fills at its displayed size, a trade at its size.
- **Time in force.** GTC works until filled or cancelled; DAY is cancelled at the first event on a later UTC
  date than its first eligible event; IOC fills what it can on its first eligible event and cancels the rest;
  FOK fills completely on its first eligible event or is cancelled.
- **Fees.** Any object with ``fill_price(units, ref_price)`` and ``commission(units, fill_price)`` (the
  backtester's ``CostModel``). Commission is computed on the order's cumulative fills, so a minimum
  commission is charged once per order, not once per partial fill.

The rules themselves are pure module-level functions over floats, ints and bools
(:func:`participation_capacity`, :func:`acceptance_step`, :func:`day_order_expired`, :func:`reference_price`,
:func:`fill_quantity`, :func:`cumulative_fill`, :func:`commission_due`, :func:`order_complete`,
:func:`cancels_rest`). :class:`MatchingEngine` calls them on its records, and the event-driven backtester
compiles the same functions with numba and calls them on its order arrays, so the two cannot drift apart.
Each calls no other function of ours, so numba compiles it as it stands
(``njit(cache=True)(reference_price)``) while this module stays free of numba. Order types and times in force
enter them as :class:`OrderTypeCode` and :class:`TimeInForceCode`, a missing price or volume as NaN, a
missing session as -1.

Order states::

    NEW -> ACCEPTED -> PARTIALLY_FILLED -> FILLED
     |        |              |
     |        +--------------+----------> CANCELLED
     +--> REJECTED / CANCELLED
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import IntEnum
from types import MappingProxyType
from typing import Protocol, runtime_checkable

from pydantic import Field

from alphaloom.core.config import ComponentConfig
from alphaloom.core.exceptions import ConnectorError, DataFormatError
from alphaloom.core.timeutil import ensure_utc
from alphaloom.core.types import (
    Bar,
    Fill,
    Order,
    OrderResult,
    OrderStatus,
    OrderType,
    Quote,
    Side,
    TimeInForce,
    Trade,
)

__all__ = [
    "FILL_EPS",
    "ORDER_TYPE_CODES",
    "TIME_IN_FORCE_CODES",
    "FeeModel",
    "MatchingConfig",
    "MatchingEngine",
    "OrderTypeCode",
    "TimeInForceCode",
    "WorkingOrder",
    "acceptance_step",
    "cancels_rest",
    "commission_due",
    "cumulative_fill",
    "day_order_expired",
    "fill_quantity",
    "order_complete",
    "participation_capacity",
    "reference_price",
]

FILL_EPS = 1e-9
"""Relative tolerance on quantities: a remainder below ``FILL_EPS * quantity`` counts as filled."""


class OrderTypeCode(IntEnum):
    """:class:`~alphaloom.core.types.OrderType` as the integers the rule functions take."""

    MARKET = 0
    LIMIT = 1
    STOP = 2
    STOP_LIMIT = 3


class TimeInForceCode(IntEnum):
    """:class:`~alphaloom.core.types.TimeInForce` as the integers the rule functions take."""

    GTC = 0
    DAY = 1
    IOC = 2
    FOK = 3


ORDER_TYPE_CODES: Mapping[OrderType, OrderTypeCode] = MappingProxyType(
    {OrderType(code.name.lower()): code for code in OrderTypeCode}
)
TIME_IN_FORCE_CODES: Mapping[TimeInForce, TimeInForceCode] = MappingProxyType(
    {TimeInForce(code.name.lower()): code for code in TimeInForceCode}
)


# --------------------------------------------------------------------------------------------------------
# The rules: pure functions, each self-contained so numba can compile it unchanged (no calls, no None).
# --------------------------------------------------------------------------------------------------------


def participation_capacity(volume: float, participation_rate: float) -> float:
    """Units one bar can fill across all orders of its symbol: ``participation_rate * volume``.

    Parameters
    ----------
    volume
        The bar's volume in units; NaN when unknown.
    participation_rate
        Largest share of the volume that fills; NaN for no cap.

    Returns
    -------
    float
        ``inf`` when either input is NaN (no cap), else ``participation_rate * volume`` (0 for no volume).
    """
    if math.isnan(volume) or math.isnan(participation_rate):
        return math.inf
    return participation_rate * volume


def acceptance_step(bars_to_wait: int, delay_elapsed: bool) -> tuple[int, bool]:
    """One eligible event seen by a ``NEW`` order: ``(bars still to wait, accepted now)``.

    While ``bars_to_wait > 0`` the event only counts down; after that the order is accepted as soon as its
    time delay has elapsed, and the accepting event may fill it.
    """
    if bars_to_wait > 0:
        return bars_to_wait - 1, False
    return 0, delay_elapsed


def day_order_expired(time_in_force: int, first_session: int, session: int) -> bool:
    """Whether a DAY order expires at an event on day ``session`` (``first_session`` -1: none seen yet)."""
    return time_in_force == TimeInForceCode.DAY and first_session >= 0 and session > first_session


def reference_price(
    order_type: int,
    buy: bool,
    triggered: bool,
    open_price: float,
    high: float,
    low: float,
    limit_price: float,
    stop_price: float,
) -> tuple[float, bool, bool]:
    """Where an accepted order fills against one event's price path, before slippage.

    Parameters
    ----------
    order_type
        An :class:`OrderTypeCode`.
    buy
        Side of the order.
    triggered
        Whether a stop or stop-limit order triggered on an earlier event.
    open_price, high, low
        The event's price path: a bar's open, high and low; a quote's ask (buys) or bid (sells), or a
        trade's price, three times.
    limit_price, stop_price
        The order's prices; NaN where its type has none.

    Returns
    -------
    tuple of (float, bool, bool)
        ``(ref_price, slippage_applies, triggered)``: ``ref_price`` is NaN when the order does not fill on
        this event. Market orders fill at the open with slippage; limit orders at the open when it is better
        than the limit, else at the limit when the path reaches it, without slippage; stops trigger at the
        open when it gaps through the stop, else at the stop, and fill there with slippage (stop-limits
        only when the trigger is within the limit, then work as limits).
    """
    if order_type == OrderTypeCode.MARKET or (order_type == OrderTypeCode.STOP and triggered):
        return open_price, True, triggered
    if order_type == OrderTypeCode.LIMIT or (order_type == OrderTypeCode.STOP_LIMIT and triggered):
        if buy:
            if open_price <= limit_price:
                return open_price, False, triggered
            return (limit_price if low <= limit_price else math.nan), False, triggered
        if open_price >= limit_price:
            return open_price, False, triggered
        return (limit_price if high >= limit_price else math.nan), False, triggered
    # An untriggered stop or stop-limit: does this path reach the stop?
    if buy:
        trigger = open_price if open_price >= stop_price else (stop_price if high >= stop_price else math.nan)
    else:
        trigger = open_price if open_price <= stop_price else (stop_price if low <= stop_price else math.nan)
    if math.isnan(trigger):
        return math.nan, False, False
    if order_type == OrderTypeCode.STOP:
        return trigger, True, True
    marketable = trigger <= limit_price if buy else trigger >= limit_price
    return (trigger if marketable else math.nan), False, True


def fill_quantity(quantity: float, remaining: float, capacity: float, fill_or_kill: bool) -> float:
    """Units an order fills given the capacity left on this event; 0.0 for no fill.

    A fill-or-kill order fills its whole remainder or nothing; a fill below ``FILL_EPS * quantity`` is none.
    """
    qty = min(remaining, capacity)
    if fill_or_kill and qty < remaining * (1.0 - FILL_EPS):
        return 0.0
    if qty <= FILL_EPS * quantity:
        return 0.0
    return qty


def cumulative_fill(
    filled_quantity: float, filled_notional: float, quantity: float, price: float
) -> tuple[float, float]:
    """An order's cumulative ``(quantity, average price)`` after a new fill of ``quantity`` at ``price``."""
    cum_qty = filled_quantity + quantity
    return cum_qty, (filled_notional + quantity * price) / cum_qty


def commission_due(total_commission: float, fees_paid: float) -> float:
    """Fee of a new fill: the commission on the cumulative fill less what earlier fills paid (never < 0).

    So a minimum commission is charged once per order, not once per partial fill.
    """
    return max(0.0, total_commission - fees_paid)


def order_complete(quantity: float, filled_quantity: float) -> bool:
    """Whether ``filled_quantity`` completes an order of ``quantity`` (within ``FILL_EPS``)."""
    return quantity - filled_quantity <= FILL_EPS * quantity


def cancels_rest(time_in_force: int, first_event: bool) -> bool:
    """Whether an order still working after its first eligible event is cancelled there (IOC and FOK)."""
    return first_event and (time_in_force == TimeInForceCode.IOC or time_in_force == TimeInForceCode.FOK)


@runtime_checkable
class FeeModel(Protocol):
    """Prices a fill: slippage and commission (``alphaloom.backtest.costs.CostModel`` satisfies it).

    ``units`` is signed (positive buys); both methods must be pure.
    """

    def fill_price(self, units: float, ref_price: float) -> float: ...

    def commission(self, units: float, fill_price: float) -> float: ...


class MatchingConfig(ComponentConfig):
    """Settings of the :class:`MatchingEngine`.

    Parameters
    ----------
    participation_rate
        Largest share of a bar's volume that fills (across all orders of the symbol); ``None`` = no cap.
    latency_bars
        Eligible bars that pass before an order is accepted (0 = accepted on submission).
    latency_s
        Seconds after submission before an order can be accepted.
    """

    participation_rate: float | None = Field(0.1, gt=0.0, le=1.0)
    latency_bars: int = Field(0, ge=0)
    latency_s: float = Field(0.0, ge=0.0, allow_inf_nan=False)


@dataclass(frozen=True, slots=True)
class WorkingOrder:
    """The engine's record of one order; replaced (never mutated) on every change.

    Attributes
    ----------
    order
        The order as submitted.
    status
        Current :class:`~alphaloom.core.types.OrderStatus`.
    seq
        Submission sequence number (matching priority).
    submitted_at
        When it was submitted (UTC).
    accept_after
        Earliest time it can be accepted (``submitted_at + latency_s``).
    bars_to_wait
        Eligible bars still to pass before acceptance.
    accepted_at
        When it was accepted, or ``None`` while ``NEW``.
    triggered
        Whether a stop or stop-limit order has triggered.
    fills
        Its fills, in order.
    fees
        Sum of fill fees, in account currency.
    first_session
        UTC date of its first eligible event (for DAY orders).
    updated_at
        Time of the last change.
    message
        Why it was rejected or cancelled.
    """

    order: Order
    status: OrderStatus
    seq: int
    submitted_at: datetime
    accept_after: datetime
    bars_to_wait: int
    accepted_at: datetime | None = None
    triggered: bool = False
    fills: tuple[Fill, ...] = ()
    fees: float = 0.0
    first_session: date | None = None
    updated_at: datetime | None = None
    message: str = ""

    @property
    def client_order_id(self) -> str:
        return self.order.client_order_id

    @property
    def filled_quantity(self) -> float:
        return math.fsum(f.quantity for f in self.fills)

    @property
    def remaining(self) -> float:
        """Units not yet filled (a cancelled order keeps its unfilled remainder; check :attr:`status`)."""
        return max(0.0, self.order.quantity - self.filled_quantity)

    @property
    def avg_fill_price(self) -> float | None:
        qty = self.filled_quantity
        if qty <= 0:
            return None
        return math.fsum(f.quantity * f.price for f in self.fills) / qty

    @property
    def is_working(self) -> bool:
        return not self.status.is_terminal

    def to_result(self, venue_order_id: str = "") -> OrderResult:
        """This order as an :class:`~alphaloom.core.types.OrderResult`."""
        return OrderResult(
            client_order_id=self.client_order_id,
            venue_order_id=venue_order_id,
            status=self.status,
            filled_quantity=self.filled_quantity,
            avg_fill_price=self.avg_fill_price,
            fills=self.fills,
            message=self.message,
            ts=self.updated_at or self.submitted_at,
        )


@dataclass(slots=True)
class _Tape:
    """One market event seen by both sides: price path (open, high, low) and a capacity pool per side."""

    ts: datetime
    prices: dict[Side, tuple[float, float, float]]
    capacity: dict[Side, list[float]]  # a one-element list, shared between sides when the pool is shared


class MatchingEngine:
    """Working orders plus market events in, fills out; deterministic and free of I/O.

    Parameters
    ----------
    config
        Participation cap and latency.
    fees
        A :class:`FeeModel`; ``None`` means no slippage and no commission.

    Examples
    --------
    >>> engine = MatchingEngine(MatchingConfig(participation_rate=None))
    >>> engine.submit(order, now=close_of_last_bar)        # doctest: +SKIP
    >>> fills = engine.on_bar(next_bar)                     # doctest: +SKIP
    """

    def __init__(self, config: MatchingConfig | None = None, fees: FeeModel | None = None) -> None:
        if fees is not None and not isinstance(fees, FeeModel):
            raise ConnectorError(
                f"fees must have fill_price(units, ref_price) and commission(units, fill_price), "
                f"got {type(fees).__name__}."
            )
        self.config = config or MatchingConfig()
        self.fees = fees
        self._orders: dict[str, WorkingOrder] = {}
        self._working: dict[str, dict[str, None]] = {}  # symbol -> ordered set of working client ids
        self._last_ts: dict[str, datetime] = {}
        self._seq = 0

    def __repr__(self) -> str:
        n = sum(len(v) for v in self._working.values())
        return f"MatchingEngine(orders={len(self._orders)}, working={n})"

    # ------------------------------------------------------------------ queries

    @property
    def orders(self) -> Mapping[str, WorkingOrder]:
        """Every order ever submitted, by client order id (read-only)."""
        return MappingProxyType(self._orders)

    def get(self, client_order_id: str) -> WorkingOrder | None:
        """The order with ``client_order_id``, or ``None``."""
        return self._orders.get(client_order_id)

    def working(self, symbol: str | None = None) -> list[WorkingOrder]:
        """Orders not yet terminal (of ``symbol``, or all), in submission order."""
        symbols = [symbol] if symbol is not None else list(self._working)
        out = [self._orders[cid] for s in symbols for cid in self._working.get(s, {})]
        return sorted(out, key=lambda w: w.seq)

    # ------------------------------------------------------------------ commands

    def submit(self, order: Order, now: datetime | None = None) -> WorkingOrder:
        """Add ``order`` to the book at time ``now`` (default ``order.ts``).

        Submitting a client order id that the engine already holds returns the existing record unchanged,
        so a retried submission can never create a second order.
        """
        if not isinstance(order, Order):
            raise DataFormatError(f"submit() takes an Order, got {type(order).__name__}.")
        existing = self._orders.get(order.client_order_id)
        if existing is not None:
            return existing
        now = ensure_utc(now if now is not None else order.ts, name="now")
        self._seq += 1
        waiting = self.config.latency_bars > 0 or self.config.latency_s > 0
        record = WorkingOrder(
            order=order,
            status=OrderStatus.NEW if waiting else OrderStatus.ACCEPTED,
            seq=self._seq,
            submitted_at=now,
            accept_after=now + timedelta(seconds=self.config.latency_s),
            bars_to_wait=self.config.latency_bars,
            accepted_at=None if waiting else now,
            updated_at=now,
        )
        self._store(record)
        return record

    def reject(self, order: Order, now: datetime, reason: str) -> WorkingOrder:
        """Record ``order`` as ``REJECTED`` with ``reason`` (used by venues for risk or balance checks)."""
        existing = self._orders.get(order.client_order_id)
        if existing is not None:
            return existing
        self._seq += 1
        now = ensure_utc(now, name="now")
        record = WorkingOrder(
            order=order,
            status=OrderStatus.REJECTED,
            seq=self._seq,
            submitted_at=now,
            accept_after=now,
            bars_to_wait=0,
            updated_at=now,
            message=reason,
        )
        self._store(record)
        return record

    def cancel(
        self, client_order_id: str, now: datetime, reason: str = "cancelled by client"
    ) -> WorkingOrder:
        """Cancel a working order; a terminal order is returned unchanged.

        Raises
        ------
        ConnectorError
            No order with that id.
        """
        record = self._orders.get(client_order_id)
        if record is None:
            raise ConnectorError(f"no order with client_order_id {client_order_id!r} to cancel.")
        if record.status.is_terminal:
            return record
        return self._store(
            dataclasses.replace(
                record, status=OrderStatus.CANCELLED, updated_at=ensure_utc(now, name="now"), message=reason
            )
        )

    # ------------------------------------------------------------------ market events

    def on_bar(self, bar: Bar) -> list[Fill]:
        """Match the working orders of ``bar.symbol`` against ``bar``; returns the new fills in order."""
        rate = self.config.participation_rate
        pool = [
            participation_capacity(
                math.nan if bar.volume is None else bar.volume, math.nan if rate is None else rate
            )
        ]
        path = (bar.open, bar.high, bar.low)
        tape = _Tape(bar.ts, {Side.BUY: path, Side.SELL: path}, {Side.BUY: pool, Side.SELL: pool})
        return self._match(bar.symbol, tape)

    def on_quote(self, quote: Quote) -> list[Fill]:
        """Match against top of book: buys at the ask (up to ``ask_size``), sells at the bid."""
        ask, bid = quote.ask, quote.bid
        tape = _Tape(
            quote.ts,
            {Side.BUY: (ask, ask, ask), Side.SELL: (bid, bid, bid)},
            {
                Side.BUY: [math.inf if quote.ask_size is None else quote.ask_size],
                Side.SELL: [math.inf if quote.bid_size is None else quote.bid_size],
            },
        )
        return self._match(quote.symbol, tape)

    def on_trade(self, trade: Trade) -> list[Fill]:
        """Match against a print: at its price, up to its size."""
        p = trade.price
        pool = [trade.size]
        tape = _Tape(trade.ts, {Side.BUY: (p, p, p), Side.SELL: (p, p, p)}, {Side.BUY: pool, Side.SELL: pool})
        return self._match(trade.symbol, tape)

    def on_events(self, events: Iterable[Bar | Quote | Trade]) -> list[Fill]:
        """Feed several events in order; all their fills."""
        fills: list[Fill] = []
        for event in events:
            if isinstance(event, Bar):
                fills += self.on_bar(event)
            elif isinstance(event, Quote):
                fills += self.on_quote(event)
            elif isinstance(event, Trade):
                fills += self.on_trade(event)
            else:
                raise DataFormatError(f"on_events() takes Bar, Quote or Trade, got {type(event).__name__}.")
        return fills

    # ------------------------------------------------------------------ internals

    def _store(self, record: WorkingOrder) -> WorkingOrder:
        cid, symbol = record.client_order_id, record.order.symbol
        self._orders[cid] = record
        book = self._working.setdefault(symbol, {})
        if record.status.is_terminal:
            book.pop(cid, None)
            if not book:
                del self._working[symbol]
        else:
            book[cid] = None
        return record

    def _match(self, symbol: str, tape: _Tape) -> list[Fill]:
        last = self._last_ts.get(symbol)
        if last is not None and tape.ts < last:
            raise DataFormatError(
                f"market events for {symbol} must arrive in time order: got {tape.ts.isoformat()} after "
                f"{last.isoformat()}."
            )
        self._last_ts[symbol] = tape.ts
        fills: list[Fill] = []
        for cid in list(self._working.get(symbol, {})):
            record = self._orders[cid]
            if tape.ts < record.submitted_at:
                continue  # an event from before the order existed can never fill it
            record = self._accept(record, tape.ts)
            if record.status is OrderStatus.NEW:
                self._store(record)
                continue
            tif = record.order.time_in_force
            session = tape.ts.date()
            first = -1 if record.first_session is None else record.first_session.toordinal()
            if day_order_expired(TIME_IN_FORCE_CODES[tif], first, session.toordinal()):
                self._store(
                    dataclasses.replace(
                        record,
                        status=OrderStatus.CANCELLED,
                        updated_at=tape.ts,
                        message="DAY order expired at the end of its session",
                    )
                )
                continue
            first_event = record.first_session is None
            if first_event:
                record = dataclasses.replace(record, first_session=session)
            record, fill = self._fill(record, tape)
            if fill is not None:
                fills.append(fill)
            if not record.status.is_terminal and cancels_rest(TIME_IN_FORCE_CODES[tif], first_event):
                what = "filled what it could" if record.fills else "could not fill"
                record = dataclasses.replace(
                    record,
                    status=OrderStatus.CANCELLED,
                    updated_at=tape.ts,
                    message=f"{tif.value.upper()} order {what} on its first eligible event; rest cancelled",
                )
            self._store(record)
        return fills

    def _accept(self, record: WorkingOrder, ts: datetime) -> WorkingOrder:
        if record.status is not OrderStatus.NEW:
            return record
        bars_to_wait, accepted = acceptance_step(record.bars_to_wait, ts >= record.accept_after)
        if bars_to_wait != record.bars_to_wait:
            return dataclasses.replace(record, bars_to_wait=bars_to_wait)
        if not accepted:
            return record
        return dataclasses.replace(record, status=OrderStatus.ACCEPTED, accepted_at=ts, updated_at=ts)

    def _fill(self, record: WorkingOrder, tape: _Tape) -> tuple[WorkingOrder, Fill | None]:
        order = record.order
        side = order.side
        o, h, lo = tape.prices[side]
        buy = side is Side.BUY
        ref, slip, triggered = reference_price(
            ORDER_TYPE_CODES[order.order_type],
            buy,
            record.triggered,
            o,
            h,
            lo,
            math.nan if order.limit_price is None else order.limit_price,
            math.nan if order.stop_price is None else order.stop_price,
        )
        if triggered != record.triggered:
            record = dataclasses.replace(record, triggered=True, updated_at=tape.ts)
        if math.isnan(ref):
            return record, None
        pool = tape.capacity[side]
        qty = fill_quantity(order.quantity, record.remaining, pool[0], order.time_in_force is TimeInForce.FOK)
        if qty == 0.0:
            return record, None
        pool[0] -= qty
        signed = qty if buy else -qty
        price = self.fees.fill_price(signed, ref) if (slip and self.fees is not None) else ref
        if not (price > 0 and math.isfinite(price)):
            raise ConnectorError(f"the fee model priced a fill of {order.symbol} at {price}; expected > 0.")
        fee = self._fee(record, qty, price)
        n = len(record.fills) + 1
        fill = Fill(
            client_order_id=record.client_order_id,
            fill_id=f"{record.client_order_id}-{n}",
            symbol=order.symbol,
            side=side,
            quantity=qty,
            price=price,
            fee=fee,
            ts=tape.ts,
        )
        fills = (*record.fills, fill)
        done = order_complete(order.quantity, math.fsum(f.quantity for f in fills))
        record = dataclasses.replace(
            record,
            fills=fills,
            fees=record.fees + fee,
            status=OrderStatus.FILLED if done else OrderStatus.PARTIALLY_FILLED,
            updated_at=tape.ts,
        )
        return record, fill

    def _fee(self, record: WorkingOrder, qty: float, price: float) -> float:
        if self.fees is None:
            return 0.0
        cum_qty, avg_price = cumulative_fill(
            record.filled_quantity, math.fsum(f.quantity * f.price for f in record.fills), qty, price
        )
        signed = cum_qty if record.order.side is Side.BUY else -cum_qty
        return commission_due(self.fees.commission(signed, avg_price), record.fees)
