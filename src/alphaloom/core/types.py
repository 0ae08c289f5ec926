"""The domain vocabulary: bars, signals, orders, fills, positions and portfolios.

All types are immutable (frozen pydantic models), validated on construction, and carry timezone-aware UTC
timestamps only: a naive datetime is refused, an aware one is converted to UTC. Quantities are signed where
the sign means direction (``Position.quantity``) and strictly positive where the side says it (``Order``,
``Fill``). Derived values (unrealised PnL, market value, total portfolio value) are computed properties, never
stored fields, so they cannot disagree with the state they derive from.

Bulk market data travels as pandas frames (see :data:`BAR_COLUMNS`); :class:`Bar` is the single-record form
used by streams and connectors.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_serializer,
    field_validator,
    model_validator,
)

from alphaloom.core.exceptions import DataFormatError
from alphaloom.core.timeutil import ensure_utc

__all__ = [
    "BAR_COLUMNS",
    "Account",
    "AssetClass",
    "Bar",
    "Fill",
    "MarketData",
    "Order",
    "OrderResult",
    "OrderStatus",
    "OrderType",
    "Portfolio",
    "Position",
    "Quote",
    "Side",
    "SignalAction",
    "TimeInForce",
    "Trade",
    "TradingSignal",
    "new_client_order_id",
]

#: Columns of a bar frame, in order. ``ts`` is a UTC timestamp (bar open time), ``volume`` may be NaN for
#: quote-only instruments (most forex sources).
BAR_COLUMNS: tuple[str, ...] = ("symbol", "ts", "open", "high", "low", "close", "volume")

PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
NonNegativeFloat = Annotated[float, Field(ge=0, allow_inf_nan=False)]
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
Symbol = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._/\-^:]+$")]


class AssetClass(StrEnum):
    STOCK = "stock"
    ETF = "etf"
    OPTION = "option"
    FOREX = "forex"
    CFD = "cfd"
    CRYPTO = "crypto"
    INDEX = "index"


class Side(StrEnum):
    BUY = "buy"
    SELL = "sell"

    @property
    def sign(self) -> int:
        return 1 if self is Side.BUY else -1


class SignalAction(StrEnum):
    BUY = "BUY"
    SELL = "SELL"
    HOLD = "HOLD"


class OrderType(StrEnum):
    MARKET = "market"
    LIMIT = "limit"
    STOP = "stop"
    STOP_LIMIT = "stop_limit"


class TimeInForce(StrEnum):
    GTC = "gtc"
    DAY = "day"
    IOC = "ioc"
    FOK = "fok"


class OrderStatus(StrEnum):
    NEW = "new"
    ACCEPTED = "accepted"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCELLED = "cancelled"
    REJECTED = "rejected"

    @property
    def is_terminal(self) -> bool:
        return self in (OrderStatus.FILLED, OrderStatus.CANCELLED, OrderStatus.REJECTED)


class _Domain(BaseModel):
    """Frozen, strict-keys base for every domain type."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)

    def __init__(self, /, **data: Any) -> None:
        # Re-raise pydantic's error as ours, keeping its precise field messages.
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise DataFormatError(f"invalid {type(self).__name__}: {_summarise(exc)}") from exc


def _summarise(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        msg = err["msg"].removeprefix("Value error, ")
        if err["loc"]:
            loc = ".".join(str(p) for p in err["loc"])
            parts.append(f"{loc}: {msg} (got {err.get('input')!r})")
        else:
            parts.append(msg)
    return "; ".join(parts)


def _utc(value: datetime) -> datetime:
    return ensure_utc(value)


class Bar(_Domain):
    """One OHLCV bar: ``ts`` is the open time in UTC; ``volume`` is ``None`` when the source has none."""

    symbol: Symbol
    ts: datetime
    open: PositiveFloat
    high: PositiveFloat
    low: PositiveFloat
    close: PositiveFloat
    volume: NonNegativeFloat | None = None
    exchange: str = ""
    timeframe: str = "1d"

    _ts = field_validator("ts")(classmethod(lambda cls, v: _utc(v)))

    @model_validator(mode="after")
    def _ohlc_consistent(self) -> Bar:
        if self.low > min(self.open, self.close) or self.high < max(self.open, self.close):
            raise ValueError(
                f"OHLC inconsistent: need low <= open, close <= high, got open={self.open} high={self.high} "
                f"low={self.low} close={self.close}"
            )
        return self


#: The seed design calls a bar ``MarketData``.
MarketData = Bar


class TradingSignal(_Domain):
    """A model's decision for one symbol.

    ``position_size`` is the target exposure as a fraction of equity in [-1, 1] (negative = short);
    ``confidence`` is a calibrated probability in [0, 1].
    """

    symbol: Symbol
    action: SignalAction
    confidence: Annotated[float, Field(ge=0.0, le=1.0)]
    position_size: Annotated[float, Field(ge=-1.0, le=1.0)]
    target_price: PositiveFloat | None = None
    stop_loss: PositiveFloat | None = None
    ts: datetime
    model_version: Annotated[str, Field(min_length=1)]

    _ts = field_validator("ts")(classmethod(lambda cls, v: _utc(v)))

    @model_validator(mode="after")
    def _consistent(self) -> TradingSignal:
        if self.action is SignalAction.BUY and self.position_size < 0:
            raise ValueError(f"a BUY signal needs position_size >= 0, got {self.position_size}")
        if self.action is SignalAction.SELL and self.position_size > 0:
            raise ValueError(f"a SELL signal needs position_size <= 0, got {self.position_size}")
        if self.target_price is not None and self.stop_loss is not None:
            if self.action is SignalAction.BUY and not self.stop_loss < self.target_price:
                raise ValueError(
                    f"a BUY needs stop_loss < target_price, got {self.stop_loss} >= {self.target_price}"
                )
            if self.action is SignalAction.SELL and not self.stop_loss > self.target_price:
                raise ValueError(
                    f"a SELL needs stop_loss > target_price, got {self.stop_loss} <= {self.target_price}"
                )
        return self


def new_client_order_id() -> str:
    """A fresh client order id. Generate it once per order so retries can never create a second order."""
    return f"al-{uuid.uuid4().hex}"


class Order(_Domain):
    """An instruction to trade. ``quantity`` is positive; ``side`` gives the direction."""

    symbol: Symbol
    side: Side
    quantity: PositiveFloat
    order_type: OrderType = OrderType.MARKET
    limit_price: PositiveFloat | None = None
    stop_price: PositiveFloat | None = None
    time_in_force: TimeInForce = TimeInForce.GTC
    client_order_id: Annotated[str, Field(min_length=1, max_length=64)] = Field(
        default_factory=new_client_order_id
    )
    ts: datetime

    _ts = field_validator("ts")(classmethod(lambda cls, v: _utc(v)))

    @model_validator(mode="after")
    def _prices_match_type(self) -> Order:
        needs_limit = self.order_type in (OrderType.LIMIT, OrderType.STOP_LIMIT)
        needs_stop = self.order_type in (OrderType.STOP, OrderType.STOP_LIMIT)
        if needs_limit and self.limit_price is None:
            raise ValueError(f"a {self.order_type} order needs limit_price")
        if not needs_limit and self.limit_price is not None:
            raise ValueError(f"a {self.order_type} order takes no limit_price; use order_type='limit'")
        if needs_stop and self.stop_price is None:
            raise ValueError(f"a {self.order_type} order needs stop_price")
        if not needs_stop and self.stop_price is not None:
            raise ValueError(f"a {self.order_type} order takes no stop_price; use order_type='stop'")
        return self

    @property
    def signed_quantity(self) -> float:
        return self.side.sign * self.quantity


class Fill(_Domain):
    """One execution of (part of) an order. ``fee`` is in the account currency and never negative."""

    client_order_id: Annotated[str, Field(min_length=1)]
    fill_id: Annotated[str, Field(min_length=1)] = Field(default_factory=lambda: uuid.uuid4().hex)
    symbol: Symbol
    side: Side
    quantity: PositiveFloat
    price: PositiveFloat
    fee: NonNegativeFloat = 0.0
    ts: datetime

    _ts = field_validator("ts")(classmethod(lambda cls, v: _utc(v)))

    @property
    def signed_quantity(self) -> float:
        return self.side.sign * self.quantity

    @property
    def notional(self) -> float:
        return self.quantity * self.price


class OrderResult(_Domain):
    """What a venue said about an order."""

    client_order_id: Annotated[str, Field(min_length=1)]
    venue_order_id: str = ""
    status: OrderStatus
    filled_quantity: NonNegativeFloat = 0.0
    avg_fill_price: PositiveFloat | None = None
    fills: tuple[Fill, ...] = ()
    message: str = ""
    ts: datetime

    _ts = field_validator("ts")(classmethod(lambda cls, v: _utc(v)))

    @model_validator(mode="after")
    def _fills_add_up(self) -> OrderResult:
        total = math.fsum(f.quantity for f in self.fills)
        if self.fills and not math.isclose(total, self.filled_quantity, rel_tol=1e-9, abs_tol=1e-12):
            raise ValueError(f"filled_quantity {self.filled_quantity} != sum of fills {total}")
        if self.filled_quantity > 0 and self.avg_fill_price is None:
            raise ValueError("a result with filled_quantity > 0 needs avg_fill_price")
        if self.status is OrderStatus.FILLED and self.filled_quantity <= 0:
            raise ValueError("a FILLED result needs filled_quantity > 0")
        return self


class Position(_Domain):
    """A holding in one symbol. ``quantity`` is signed (negative = short); ``avg_cost`` is per unit."""

    symbol: Symbol
    quantity: FiniteFloat = 0.0
    avg_cost: NonNegativeFloat = 0.0
    current_price: PositiveFloat
    realized_pnl: FiniteFloat = 0.0

    @model_validator(mode="after")
    def _flat_has_no_cost(self) -> Position:
        if self.quantity == 0 and self.avg_cost != 0:
            raise ValueError("a flat position (quantity 0) must have avg_cost 0")
        if self.quantity != 0 and self.avg_cost <= 0:
            raise ValueError("an open position needs avg_cost > 0")
        return self

    @property
    def market_value(self) -> float:
        return self.quantity * self.current_price

    @property
    def unrealized_pnl(self) -> float:
        return self.quantity * (self.current_price - self.avg_cost)

    def mark(self, price: float) -> Position:
        """The same position valued at ``price``."""
        return Position(
            symbol=self.symbol,
            quantity=self.quantity,
            avg_cost=self.avg_cost,
            current_price=price,
            realized_pnl=self.realized_pnl,
        )

    def apply_fill(self, fill: Fill) -> Position:
        """The position after ``fill`` (fees are booked in cash by :meth:`Portfolio.apply_fill`, not here).

        Adding to a position averages the cost; reducing realises PnL at the fill price against the average
        cost; crossing zero realises the closed part and opens the remainder at the fill price.
        """
        if fill.symbol != self.symbol:
            raise DataFormatError(f"fill for {fill.symbol!r} applied to position in {self.symbol!r}")
        q0, dq = self.quantity, fill.signed_quantity
        q1 = q0 + dq
        if abs(q1) < 1e-12 * max(1.0, abs(q0), abs(dq)):
            q1 = 0.0
        realized = self.realized_pnl
        if q0 == 0 or math.copysign(1, q0) == math.copysign(1, dq):
            avg = (abs(q0) * self.avg_cost + abs(dq) * fill.price) / abs(q1)
        else:
            closed = min(abs(dq), abs(q0))
            realized += closed * (fill.price - self.avg_cost) * math.copysign(1, q0)
            if q1 == 0:
                avg = 0.0
            elif math.copysign(1, q1) == math.copysign(1, q0):
                avg = self.avg_cost
            else:
                avg = fill.price
        return Position(
            symbol=self.symbol, quantity=q1, avg_cost=avg, current_price=fill.price, realized_pnl=realized
        )


class Portfolio(_Domain):
    """Cash plus positions. ``total_value`` is derived, so it always equals cash plus marked positions."""

    account_id: Annotated[str, Field(min_length=1)] = "default"
    cash: FiniteFloat
    positions: Mapping[str, Position] = Field(default_factory=dict)
    ts: datetime

    _ts = field_validator("ts")(classmethod(lambda cls, v: _utc(v)))

    @field_validator("positions", mode="after")
    @classmethod
    def _freeze(cls, v: Mapping[str, Position]) -> Mapping[str, Position]:
        for key, pos in v.items():
            if key != pos.symbol:
                raise ValueError(f"positions key {key!r} holds a position in {pos.symbol!r}")
        return MappingProxyType(dict(v))

    @property
    def total_value(self) -> float:
        return self.cash + math.fsum(p.market_value for p in self.positions.values())

    @property
    def gross_exposure(self) -> float:
        return math.fsum(abs(p.market_value) for p in self.positions.values())

    def apply_fill(self, fill: Fill) -> Portfolio:
        """The portfolio after ``fill``: cash pays the notional and the fee, the position updates."""
        old = self.positions.get(fill.symbol) or Position(symbol=fill.symbol, current_price=fill.price)
        positions = dict(self.positions)
        positions[fill.symbol] = old.apply_fill(fill)
        cash = self.cash - fill.signed_quantity * fill.price - fill.fee
        ts = max(self.ts, fill.ts)
        return Portfolio(account_id=self.account_id, cash=cash, positions=positions, ts=ts)

    @field_serializer("positions")
    def _ser_positions(self, v: Mapping[str, Position]) -> dict[str, Position]:
        return dict(v)


class Quote(_Domain):
    """Top of book. ``ts`` is the venue's event time; ``ts_received`` when we got it (both UTC).

    A crossed or locked book (``bid >= ask``) is representable, because real feeds send it; the validator
    flags it rather than the type refusing it.
    """

    symbol: Symbol
    ts: datetime
    bid: PositiveFloat
    ask: PositiveFloat
    bid_size: NonNegativeFloat | None = None
    ask_size: NonNegativeFloat | None = None
    exchange: str = ""
    ts_received: datetime | None = None

    _ts = field_validator("ts")(classmethod(lambda cls, v: _utc(v)))
    _ts_received = field_validator("ts_received")(classmethod(lambda cls, v: None if v is None else _utc(v)))

    @property
    def mid(self) -> float:
        return 0.5 * (self.bid + self.ask)

    @property
    def spread(self) -> float:
        return self.ask - self.bid


class Trade(_Domain):
    """One print on the tape. ``side`` is the taker's side when the venue reports it."""

    symbol: Symbol
    ts: datetime
    price: PositiveFloat
    size: PositiveFloat
    side: Side | None = None
    trade_id: str = ""
    exchange: str = ""
    ts_received: datetime | None = None

    _ts = field_validator("ts")(classmethod(lambda cls, v: _utc(v)))
    _ts_received = field_validator("ts_received")(classmethod(lambda cls, v: None if v is None else _utc(v)))


class Account(_Domain):
    """A venue account's balances in its currency. ``equity`` includes open positions at market."""

    account_id: Annotated[str, Field(min_length=1)]
    currency: Annotated[str, Field(min_length=1, max_length=16)] = "USD"
    cash: FiniteFloat
    equity: FiniteFloat
    buying_power: FiniteFloat | None = None
    venue: str = ""
    ts: datetime

    _ts = field_validator("ts")(classmethod(lambda cls, v: _utc(v)))
