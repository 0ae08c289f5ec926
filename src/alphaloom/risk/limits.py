"""Risk limits (one frozen config) and the pure pre-trade checks the risk manager runs on them.

:class:`RiskLimits` holds every limit; it loads from the ``[risk]`` table of a TOML run config
(``load_config(RiskLimits, path, "risk")``). Every limit is off (``None``) unless set, so a manager built with
``RiskLimits()`` only enforces the trading state and the approval path; set what your book needs::

    [risk]
    allowed_symbols = ["SPY", "QQQ", "BTCUSD"]
    max_position = 1000           # units per symbol
    max_notional = 250000         # account currency per symbol
    max_order_notional = 100000   # one order, account currency (fat-finger size)
    max_gross_exposure = 400000   # account currency, all symbols
    max_net_exposure = 300000
    max_leverage = 2.0            # gross exposure / equity
    max_concentration_pct = 40    # one symbol's |value| / equity, percent
    max_orders = 30               # orders approved per rolling window
    order_window_s = 60
    price_band_pct = 5            # limit/stop price vs the last trade, percent
    reduce_drawdown_pct = 10      # drawdown from peak equity -> REDUCING
    halt_drawdown_pct = 20        # -> HALTED (admin resume)
    daily_loss_pct = 5            # loss since the day's start -> HALTED until the next day
    stop_loss_pct = 8             # default exits, percent from the average cost
    take_profit_pct = 25

    [risk.symbols.BTCUSD]         # per-symbol overrides of max_position / max_notional
    max_position = 5

    [risk.asset_classes.crypto]   # gross / net exposure per asset class, account currency
    max_gross = 100000

    [risk.trading_hours.stock]    # missing asset classes trade 24/7 (crypto)
    timezone = "America/New_York"
    open = 09:30:00
    close = 16:00:00

The checks below are pure functions of an order, a :class:`RiskSnapshot` of the book and the limits, so they
can be tested (and property-tested) without a manager. Position limits use a "never worse" rule: an order is
refused when the book after it would be over a limit *and* further over it than before, so an order never
takes the book over a limit, while orders that bring a book back under a limit (after a market move took it
over) still go through. Measures are taken at the last trade price; fees and slippage are not in them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, time, timedelta
from enum import StrEnum
from typing import Annotated, NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator, model_validator

from alphaloom.core.config import ComponentConfig
from alphaloom.core.exceptions import did_you_mean
from alphaloom.core.types import AssetClass, Order

__all__ = [
    "FOREX_HOURS",
    "US_EQUITY_HOURS",
    "ExposureLimits",
    "RiskLimits",
    "RiskMeasures",
    "RiskSnapshot",
    "SymbolLimits",
    "TradingHours",
    "TradingState",
    "check_order",
    "evaluate_state",
    "is_risk_reducing",
    "limit_name",
    "risk_measures",
]

Positive = Annotated[float, Field(gt=0, allow_inf_nan=False)]
Percent = Annotated[float, Field(gt=0, lt=100, allow_inf_nan=False)]

#: Relative slack for float comparisons against limits (a position exactly at its limit is allowed).
_REL_TOL = 1e-9


class TradingState(StrEnum):
    """What the risk manager lets through: all orders within limits, only risk-reducing ones, or no new risk.

    ``REDUCING`` and ``HALTED`` both let risk-reducing orders (towards a flat position, without flipping it)
    through; they refuse every risk-increasing one.
    """

    NORMAL = "normal"
    REDUCING = "reducing"
    HALTED = "halted"


class TradingHours(ComponentConfig):
    """When an asset class trades: a session opening at ``open`` (local time) on each of ``weekdays``.

    A session ends at ``close`` the same day, or the next day when ``close <= open`` (``open == close`` is a
    24-hour session). Exchange holidays are not modelled; the venue refuses orders on them.

    Parameters
    ----------
    timezone
        IANA zone of ``open`` and ``close`` (``"America/New_York"``); daylight saving follows the zone.
    open, close
        Local session times.
    weekdays
        Days a session opens on, Monday = 0 ... Sunday = 6.
    """

    timezone: str = "UTC"
    open: time = time(0, 0)
    close: time = time(0, 0)
    weekdays: tuple[int, ...] = (0, 1, 2, 3, 4, 5, 6)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {v!r}; use an IANA name such as 'America/New_York'") from exc
        return v

    @field_validator("open", "close")
    @classmethod
    def _naive_time(cls, v: time) -> time:
        if v.tzinfo is not None:
            raise ValueError("give session times without an offset; the zone comes from 'timezone'")
        return v

    @field_validator("weekdays")
    @classmethod
    def _days(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if not v or any(d not in range(7) for d in v) or len(set(v)) != len(v):
            raise ValueError(f"weekdays must be distinct days 0 (Monday) .. 6 (Sunday), got {v}")
        return tuple(sorted(v))

    def is_open(self, ts: datetime) -> bool:
        """Whether a session is open at ``ts`` (aware)."""
        zone = ZoneInfo(self.timezone)
        local = ts.astimezone(zone)
        for back in (0, 1):
            day = local.date() - timedelta(days=back)
            if day.weekday() not in self.weekdays:
                continue
            start = datetime.combine(day, self.open, zone)
            end_day = day if self.close > self.open else day + timedelta(days=1)
            end = datetime.combine(end_day, self.close, zone)
            if start.astimezone(UTC) <= ts.astimezone(UTC) < end.astimezone(UTC):
                return True
        return False


#: US equity regular session (NYSE/Nasdaq), 09:30-16:00 New York time, Monday to Friday; no holidays.
US_EQUITY_HOURS = TradingHours(
    timezone="America/New_York", open=time(9, 30), close=time(16, 0), weekdays=(0, 1, 2, 3, 4)
)
#: Spot forex: Sunday 17:00 to Friday 17:00 New York time, continuously.
FOREX_HOURS = TradingHours(
    timezone="America/New_York", open=time(17, 0), close=time(17, 0), weekdays=(6, 0, 1, 2, 3)
)


class SymbolLimits(ComponentConfig):
    """Per-symbol overrides; a limit left ``None`` falls back to the book-wide one in :class:`RiskLimits`.

    Parameters
    ----------
    max_position
        Largest absolute position, in units.
    max_notional
        Largest absolute position value, in the account currency.
    """

    max_position: Positive | None = None
    max_notional: Positive | None = None


class ExposureLimits(ComponentConfig):
    """Exposure limits of one asset class, in the account currency.

    Parameters
    ----------
    max_gross
        Largest sum of absolute position values.
    max_net
        Largest absolute sum of signed position values.
    """

    max_gross: Positive | None = None
    max_net: Positive | None = None


class RiskLimits(ComponentConfig):
    """Every limit the risk manager enforces; ``None`` turns a limit off. See the module docstring.

    Parameters
    ----------
    allowed_symbols
        Symbols that may be traded (``None``: all).
    max_position, max_notional
        Largest absolute position per symbol, in units and in the account currency.
    symbols
        Per-symbol overrides of ``max_position`` and ``max_notional``.
    max_order_notional
        Largest value of one risk-increasing order, in the account currency (a fat-finger size check).
    max_gross_exposure, max_net_exposure
        Book-wide gross (sum of absolute values) and absolute net exposure, in the account currency.
    asset_classes
        Gross and net exposure limits per asset class.
    max_leverage
        Largest gross exposure divided by equity.
    max_concentration_pct
        Largest share of equity held in one symbol (absolute value), in percent (may exceed 100 with
        leverage).
    max_orders, order_window_s
        At most ``max_orders`` approvals in any rolling window of ``order_window_s`` seconds.
    price_band_pct
        Largest distance of an order's limit or stop price from the last trade, in percent (fat-finger).
    trading_hours
        Sessions per asset class; an asset class without an entry trades around the clock.
    reduce_drawdown_pct
        Drawdown from peak equity, in percent, at which trading switches to REDUCING (and back to NORMAL
        once the drawdown is smaller again).
    halt_drawdown_pct
        Drawdown at which trading is HALTED until an admin resumes it; at least ``reduce_drawdown_pct``.
    daily_loss_pct
        Loss since the start of the day (the last equity of the previous day), in percent, at which trading
        is HALTED until the next day or an admin resume.
    day_timezone
        IANA zone whose midnight starts a new day for ``daily_loss_pct``.
    stop_loss_pct, take_profit_pct
        Default exits: a position is closed once the last trade is this far, in percent, against (stop) or
        in favour of (take profit) its average cost.
    """

    allowed_symbols: tuple[str, ...] | None = None
    max_position: Positive | None = None
    max_notional: Positive | None = None
    symbols: dict[str, SymbolLimits] = Field(default_factory=dict)
    max_order_notional: Positive | None = None
    max_gross_exposure: Positive | None = None
    max_net_exposure: Positive | None = None
    asset_classes: dict[AssetClass, ExposureLimits] = Field(default_factory=dict)
    max_leverage: Positive | None = None
    max_concentration_pct: Positive | None = None
    max_orders: Annotated[int, Field(ge=1)] | None = None
    order_window_s: Positive = 60.0
    price_band_pct: Positive | None = None
    trading_hours: dict[AssetClass, TradingHours] = Field(default_factory=dict)
    reduce_drawdown_pct: Percent | None = None
    halt_drawdown_pct: Percent | None = None
    daily_loss_pct: Percent | None = None
    day_timezone: str = "UTC"
    stop_loss_pct: Percent | None = None
    take_profit_pct: Positive | None = None

    @field_validator("day_timezone")
    @classmethod
    def _zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {v!r}; use an IANA name such as 'UTC'") from exc
        return v

    @field_validator("allowed_symbols")
    @classmethod
    def _symbols(cls, v: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if v is None:
            return None
        if not v:
            raise ValueError("allowed_symbols is empty, which would refuse every order; use None for all")
        return tuple(sorted(set(v)))

    @model_validator(mode="after")
    def _consistent(self) -> RiskLimits:
        if (
            self.reduce_drawdown_pct is not None
            and self.halt_drawdown_pct is not None
            and self.halt_drawdown_pct < self.reduce_drawdown_pct
        ):
            raise ValueError(
                f"halt_drawdown_pct ({self.halt_drawdown_pct}) must be at least reduce_drawdown_pct "
                f"({self.reduce_drawdown_pct}): trading reduces before it halts"
            )
        if self.allowed_symbols is not None:
            stray = sorted(set(self.symbols) - set(self.allowed_symbols))
            if stray:
                raise ValueError(
                    f"symbols has limits for {stray}, which allowed_symbols does not allow; add them to "
                    f"allowed_symbols or drop their limits"
                )
        return self

    def position_limit(self, symbol: str) -> float | None:
        """Largest absolute position in ``symbol``, in units (``None``: unlimited)."""
        own = self.symbols.get(symbol)
        return own.max_position if own is not None and own.max_position is not None else self.max_position

    def notional_limit(self, symbol: str) -> float | None:
        """Largest absolute position value in ``symbol``, account currency (``None``: unlimited)."""
        own = self.symbols.get(symbol)
        return own.max_notional if own is not None and own.max_notional is not None else self.max_notional

    @property
    def needs_prices(self) -> bool:
        """Whether any limit needs the last trade price of the traded symbol."""
        return (
            self.max_notional is not None
            or any(s.max_notional is not None for s in self.symbols.values())
            or self.max_order_notional is not None
            or self.needs_equity
            or self.max_gross_exposure is not None
            or self.max_net_exposure is not None
            or bool(self.asset_classes)
            or self.price_band_pct is not None
        )

    @property
    def needs_equity(self) -> bool:
        """Whether any limit is a share of equity."""
        return self.max_leverage is not None or self.max_concentration_pct is not None


class RiskSnapshot(NamedTuple):
    """The book as the risk manager sees it before an order; the input of :func:`check_order`.

    Attributes
    ----------
    state
        The trading state.
    cash
        Cash in the account currency.
    quantities
        Signed position per symbol, in units.
    prices
        Last trade price per symbol.
    asset_classes
        Asset class per symbol (symbols without one are ``None`` in measures).
    now
        The decision time (aware UTC).
    recent_orders
        Times of the approvals inside the rate window, oldest first.
    """

    state: TradingState
    cash: float
    quantities: Mapping[str, float]
    prices: Mapping[str, float]
    asset_classes: Mapping[str, AssetClass]
    now: datetime
    recent_orders: Sequence[datetime] = ()


class RiskMeasures(NamedTuple):
    """The book's exposures at the last trade prices (account currency; ``leverage`` a ratio).

    ``gross_by_class`` / ``net_by_class`` are keyed by asset class (``None`` for symbols without one);
    ``concentration_pct`` is each symbol's absolute value as a percentage of equity (``inf`` when equity is
    not positive and the position is open).
    """

    equity: float
    gross: float
    net: float
    leverage: float
    gross_by_class: Mapping[AssetClass | None, float]
    net_by_class: Mapping[AssetClass | None, float]
    value: Mapping[str, float]
    concentration_pct: Mapping[str, float]


def risk_measures(
    cash: float,
    quantities: Mapping[str, float],
    prices: Mapping[str, float],
    asset_classes: Mapping[str, AssetClass],
) -> RiskMeasures:
    """Exposures of a book: cash plus signed ``quantities`` at ``prices`` (every open symbol needs one).

    Raises
    ------
    KeyError
        An open position without a price (the manager checks for this before calling).
    """
    value = {s: q * prices[s] for s, q in quantities.items() if q != 0}
    gross = math.fsum(abs(v) for v in value.values())
    net = math.fsum(value.values())
    equity = cash + net
    gross_by: dict[AssetClass | None, float] = {}
    net_by: dict[AssetClass | None, float] = {}
    for s, v in value.items():
        cls = asset_classes.get(s)
        gross_by[cls] = gross_by.get(cls, 0.0) + abs(v)
        net_by[cls] = net_by.get(cls, 0.0) + v
    if equity > 0:
        leverage = gross / equity
        conc = {s: 100.0 * abs(v) / equity for s, v in value.items()}
    else:
        leverage = math.inf if gross > 0 else 0.0
        conc = {s: math.inf for s in value}
    return RiskMeasures(equity, gross, net, leverage, gross_by, net_by, value, conc)


def is_risk_reducing(position: float, signed_quantity: float) -> bool:
    """Whether trading ``signed_quantity`` moves ``position`` towards zero without flipping it.

    Parameters
    ----------
    position
        The signed position before the order, in units.
    signed_quantity
        The order's signed quantity (positive buys), in units.
    """
    if position == 0 or signed_quantity == 0:
        return False
    return (position > 0) != (signed_quantity > 0) and abs(signed_quantity) <= abs(position) * (1 + _REL_TOL)


def limit_name(reason: str) -> str:
    """The limit a reason names (the text before its first colon)."""
    return reason.split(":", 1)[0]


def evaluate_state(
    equity: float,
    peak_equity: float,
    day_start_equity: float,
    limits: RiskLimits,
) -> tuple[TradingState, tuple[str, ...], tuple[str, ...]]:
    """The trading state that drawdown and daily loss call for.

    Parameters
    ----------
    equity
        Equity now, account currency.
    peak_equity
        Highest equity since trading started (or since the last resume).
    day_start_equity
        Equity at the start of the day.
    limits
        The limits (``reduce_drawdown_pct``, ``halt_drawdown_pct``, ``daily_loss_pct``).

    Returns
    -------
    tuple
        The state, the halt causes (``"halt_drawdown_pct"``, ``"daily_loss_pct"``) and one message per
        threshold hit.
    """
    drawdown = _loss_pct(equity, peak_equity)
    daily = _loss_pct(equity, day_start_equity)
    causes: list[str] = []
    messages: list[str] = []
    if limits.halt_drawdown_pct is not None and drawdown >= limits.halt_drawdown_pct:
        causes.append("halt_drawdown_pct")
        messages.append(
            f"halt_drawdown_pct: drawdown {drawdown:.4g}% from peak equity {peak_equity:.2f} reached the "
            f"{limits.halt_drawdown_pct}% limit"
        )
    if limits.daily_loss_pct is not None and daily >= limits.daily_loss_pct:
        causes.append("daily_loss_pct")
        messages.append(
            f"daily_loss_pct: loss {daily:.4g}% since the day's start equity {day_start_equity:.2f} reached "
            f"the {limits.daily_loss_pct}% limit"
        )
    if causes:
        return TradingState.HALTED, tuple(causes), tuple(messages)
    if limits.reduce_drawdown_pct is not None and drawdown >= limits.reduce_drawdown_pct:
        messages.append(
            f"reduce_drawdown_pct: drawdown {drawdown:.4g}% from peak equity {peak_equity:.2f} reached the "
            f"{limits.reduce_drawdown_pct}% limit"
        )
        return TradingState.REDUCING, (), tuple(messages)
    return TradingState.NORMAL, (), ()


def _loss_pct(equity: float, reference: float) -> float:
    if reference <= 0:
        return 0.0 if equity >= reference else 100.0
    return max(0.0, 100.0 * (1.0 - equity / reference))


def _over(after: float, before: float, limit: float) -> bool:
    # "Never worse": refused only if the order takes the measure over the limit, or further over it.
    slack = _REL_TOL * max(1.0, abs(limit))
    return after > limit + slack and after > before + slack


def check_order(order: Order, book: RiskSnapshot, limits: RiskLimits) -> tuple[str, ...]:
    """Every reason to refuse ``order`` given ``book`` and ``limits``; empty when it may go.

    Each reason starts with the name of the limit it hit (``"max_position: ..."``, see :func:`limit_name`)
    and says what the order would do, what the limit allows and how to fix it.

    Parameters
    ----------
    order
        The order to check.
    book
        The book before the order.
    limits
        The limits.

    Returns
    -------
    tuple of str
        The reasons, in a fixed order (state, symbol, hours, rate, prices, size, exposures).
    """
    reasons: list[str] = []
    sym = order.symbol
    q0 = float(book.quantities.get(sym, 0.0))
    dq = order.signed_quantity
    q1 = q0 + dq
    reducing = is_risk_reducing(q0, dq)
    where = f"{order.side.value} {order.quantity:g} {sym}"

    if book.state is not TradingState.NORMAL and not reducing:
        reasons.append(
            f"trading_state: trading is {book.state.value.upper()}, which lets only risk-reducing orders "
            f"through (towards a flat position, without flipping it); {where} with a position of {q0:g} "
            f"increases risk. "
            + (
                "An admin must resume trading (RiskManager.resume)."
                if book.state is TradingState.HALTED
                else "Trading returns to NORMAL when the drawdown is below reduce_drawdown_pct."
            )
        )

    if limits.allowed_symbols is not None and sym not in limits.allowed_symbols:
        reasons.append(
            f"allowed_symbols: {sym!r} is not an allowed symbol.{did_you_mean(sym, limits.allowed_symbols)} "
            f"Allowed: {', '.join(limits.allowed_symbols)}."
        )

    cls = book.asset_classes.get(sym)
    if limits.trading_hours:
        if cls is None:
            reasons.append(
                f"trading_hours: the asset class of {sym!r} is unknown, so its trading hours cannot be "
                f"checked; pass instruments={{{sym!r}: AssetClass...}} to the RiskManager."
            )
        elif cls in limits.trading_hours and not limits.trading_hours[cls].is_open(book.now):
            hours = limits.trading_hours[cls]
            reasons.append(
                f"trading_hours: {cls.value} trades {hours.open:%H:%M}-{hours.close:%H:%M} "
                f"{hours.timezone} on weekdays {list(hours.weekdays)}; {book.now.isoformat()} is outside "
                f"those hours."
            )

    if limits.max_orders is not None:
        start = book.now - timedelta(seconds=limits.order_window_s)
        n = sum(1 for t in book.recent_orders if t > start)
        if n >= limits.max_orders:
            reasons.append(
                f"max_orders: {n} orders were approved in the last {limits.order_window_s:g} s, the limit is "
                f"{limits.max_orders}; wait, or raise max_orders if the strategy really trades this fast."
            )

    pos_limit = limits.position_limit(sym)
    if pos_limit is not None and _over(abs(q1), abs(q0), pos_limit):
        room = max(0.0, pos_limit - abs(q0)) if not reducing else abs(q0)
        reasons.append(
            f"max_position: the {sym} position would be {q1:g} units, the limit is {pos_limit:g}; the order "
            f"can be at most {room:g} units in that direction."
        )

    if not limits.needs_prices:
        return tuple(reasons)
    price = book.prices.get(sym)
    if price is None or not math.isfinite(price) or price <= 0:
        reasons.append(
            f"no_price: there is no last trade price for {sym!r}, so notional, exposure and price-band "
            f"limits cannot be checked; call RiskManager.mark() with its price first."
        )
        return tuple(reasons)
    unpriced = sorted(s for s, q in book.quantities.items() if q != 0 and s not in book.prices)
    if unpriced:
        reasons.append(
            f"no_price: open positions in {unpriced} have no last trade price, so exposures cannot be "
            f"measured; mark them with RiskManager.mark() or sync the portfolio first."
        )
        return tuple(reasons)

    if limits.price_band_pct is not None:
        for name, px in (("limit", order.limit_price), ("stop", order.stop_price)):
            if px is None:
                continue
            off = 100.0 * abs(px / price - 1.0)
            if off > limits.price_band_pct * (1 + _REL_TOL):
                reasons.append(
                    f"price_band_pct: the {name} price {px:g} is {off:.3g}% from the last trade {price:g}, "
                    f"the band is {limits.price_band_pct:g}%; check the price (a typo?) or mark a fresh one."
                )

    notional_limit = limits.notional_limit(sym)
    if notional_limit is not None and _over(abs(q1) * price, abs(q0) * price, notional_limit):
        reasons.append(
            f"max_notional: the {sym} position would be worth {abs(q1) * price:,.2f} at {price:g}, the limit "
            f"is {notional_limit:,.2f}; reduce the quantity."
        )
    order_value = order.quantity * price
    max_order = limits.max_order_notional
    if max_order is not None and not reducing and order_value > max_order * (1 + _REL_TOL):
        reasons.append(
            f"max_order_notional: the order is worth {order_value:,.2f} at {price:g}, one order may be "
            f"worth at most {max_order:,.2f}; split it or check the quantity (a typo?)."
        )

    q_after = dict(book.quantities)
    q_after[sym] = q1
    before = risk_measures(book.cash, book.quantities, book.prices, book.asset_classes)
    # The order fills at the last trade price in these measures: cash pays exactly what the position gains.
    after = risk_measures(book.cash - dq * price, q_after, book.prices, book.asset_classes)

    if limits.max_gross_exposure is not None and _over(after.gross, before.gross, limits.max_gross_exposure):
        reasons.append(
            f"max_gross_exposure: gross exposure would be {after.gross:,.2f}, the limit is "
            f"{limits.max_gross_exposure:,.2f}; reduce the order or other positions."
        )
    if limits.max_net_exposure is not None and _over(
        abs(after.net), abs(before.net), limits.max_net_exposure
    ):
        reasons.append(
            f"max_net_exposure: net exposure would be {after.net:,.2f}, the limit is "
            f"±{limits.max_net_exposure:,.2f}; reduce the order or hedge."
        )
    for klass, lim in limits.asset_classes.items():
        if cls is not klass:
            continue
        g0, g1 = before.gross_by_class.get(klass, 0.0), after.gross_by_class.get(klass, 0.0)
        n0, n1 = before.net_by_class.get(klass, 0.0), after.net_by_class.get(klass, 0.0)
        if lim.max_gross is not None and _over(g1, g0, lim.max_gross):
            reasons.append(
                f"asset_classes.{klass.value}.max_gross: {klass.value} gross exposure would be {g1:,.2f}, "
                f"the limit is {lim.max_gross:,.2f}; reduce the order or other {klass.value} positions."
            )
        if lim.max_net is not None and _over(abs(n1), abs(n0), lim.max_net):
            reasons.append(
                f"asset_classes.{klass.value}.max_net: {klass.value} net exposure would be {n1:,.2f}, the "
                f"limit is ±{lim.max_net:,.2f}; reduce the order or hedge."
            )
    if limits.asset_classes and cls is None:
        reasons.append(
            f"asset_classes: the asset class of {sym!r} is unknown, so its exposure limits cannot be "
            f"checked; pass instruments={{{sym!r}: AssetClass...}} to the RiskManager."
        )

    if limits.needs_equity and after.equity <= 0 and not reducing:
        reasons.append(
            f"equity: equity is {after.equity:,.2f}; with no positive equity only risk-reducing orders may "
            f"go. Sync the portfolio (RiskManager.sync_portfolio) if this is wrong."
        )
    else:
        if limits.max_leverage is not None and _over(after.leverage, before.leverage, limits.max_leverage):
            reasons.append(
                f"max_leverage: leverage would be {after.leverage:.4g}x (gross {after.gross:,.2f} / equity "
                f"{after.equity:,.2f}), the limit is {limits.max_leverage:g}x; reduce the order."
            )
        if limits.max_concentration_pct is not None:
            c0 = before.concentration_pct.get(sym, 0.0)
            c1 = after.concentration_pct.get(sym, 0.0)
            if _over(c1, c0, limits.max_concentration_pct):
                reasons.append(
                    f"max_concentration_pct: {sym} would be {c1:.4g}% of equity, the limit is "
                    f"{limits.max_concentration_pct:g}%; reduce the order."
                )
    return tuple(reasons)
