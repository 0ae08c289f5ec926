"""The risk manager: every order, from every path, passes through it before a venue sees it.

:meth:`RiskManager.submit` is the only place in alphaloom that calls a connector's ``place_order``, and the
connector refuses an order without the manager's :class:`~alphaloom.core.approval.RiskApproval` of exactly
that order, so backtest, paper, live, API and CLI orders all meet the same limits.

What it does
------------
- **Pre-trade checks** (:meth:`RiskManager.check`): the pure checks of :mod:`alphaloom.risk.limits` run on
  the book the manager keeps (positions and cash from :meth:`sync_portfolio` and :meth:`on_fill`, last trade
  prices from :meth:`mark`). An approved decision carries a signed approval.
- **Trading state**: :meth:`mark` re-evaluates drawdown from peak equity and the day's loss. A drawdown past
  ``reduce_drawdown_pct`` switches to REDUCING (back to NORMAL when it recovers); one past
  ``halt_drawdown_pct`` HALTS trading until an admin resumes; a daily loss past ``daily_loss_pct`` halts it
  until the next day (or an admin resume); the manual :meth:`kill_switch` halts it until an admin resumes.
  In REDUCING and HALTED only risk-reducing orders (towards a flat position, without flipping it) pass.
- **Exits** (:meth:`protective_orders`): market orders closing positions whose last trade crossed their
  stop-loss or take-profit (from the limits' percentages or :meth:`set_protection` levels).
- **Control and audit**: limits change at run time only through :meth:`set_limits` by an admin; every
  decision, state change, kill switch, resume and limit change (and every refused attempt) is appended to the
  audit sink (e.g. the hash-chained log of :class:`~alphaloom.data.storage.relational.RelationalStore`). An
  audit write that fails propagates: no approval is issued for a decision that was not recorded.

Time
----
With a ``clock`` the manager decides at ``clock.now()``; without one it runs on event time: the latest of
the orders' and marks' timestamps, so backtests see simulated time in rate windows, trading hours and the
audit log.

Limitations
-----------
Limits are checked against filled positions: orders approved but still resting at the venue are not counted,
so size resting orders with that in mind. Exchange holidays are not modelled in trading hours.
"""

from __future__ import annotations

import math
import uuid
from collections import deque
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Any, NamedTuple, Protocol, runtime_checkable
from zoneinfo import ZoneInfo

from alphaloom.core.approval import RiskApproval, _issue_approval, order_digest
from alphaloom.core.clock import Clock, LiveClock
from alphaloom.core.exceptions import ConfigError, DataFormatError, RiskLimitError
from alphaloom.core.timeutil import ensure_utc
from alphaloom.core.types import (
    AssetClass,
    Fill,
    Order,
    OrderResult,
    OrderStatus,
    OrderType,
    Portfolio,
    Position,
    Side,
)
from alphaloom.risk.limits import (
    RiskLimits,
    RiskMeasures,
    RiskSnapshot,
    TradingState,
    _loss_pct,
    check_order,
    evaluate_state,
    is_risk_reducing,
    limit_name,
    risk_measures,
)

__all__ = [
    "Actor",
    "AuditSink",
    "OrderVenue",
    "RiskDecision",
    "RiskManager",
    "Role",
    "TradingState",
]

#: The actor name the manager audits its own decisions and state changes under.
MANAGER_ACTOR = "risk-manager"


class Role(StrEnum):
    """What a person may do: watch, trade (and press the kill switch), or also resume and change limits."""

    VIEWER = "viewer"
    TRADER = "trader"
    ADMIN = "admin"


@dataclass(frozen=True)
class Actor:
    """Who asks for a control action; ``name`` is recorded in the audit log."""

    name: str
    role: Role


class RiskDecision(NamedTuple):
    """The risk manager's answer for one order.

    Attributes
    ----------
    approved
        Whether the order may go to the venue.
    order
        The order checked.
    reasons
        Why it was refused (empty when approved); each starts with the limit's name.
    state
        The trading state at the decision.
    approval
        The signed approval to pass to ``place_order`` (``None`` when refused).
    decision_id
        The decision's id, also in the audit log.
    """

    approved: bool
    order: Order
    reasons: tuple[str, ...]
    state: TradingState
    approval: RiskApproval | None
    decision_id: str


@runtime_checkable
class AuditSink(Protocol):
    """Where the manager records what it did; :class:`RelationalStore` is one."""

    def append_audit(
        self, actor: str, action: str, payload: Mapping[str, Any] | None = None, *, ts: datetime | None = None
    ) -> Any: ...


@runtime_checkable
class OrderVenue(Protocol):
    """What :meth:`RiskManager.submit` sends to: any :class:`ExchangeConnector`."""

    async def place_order(self, order: Order, approval: RiskApproval) -> OrderResult: ...


def _check_actor(actor: object, what: str) -> Actor:
    if not isinstance(actor, Actor) or not isinstance(actor.role, Role):
        raise ConfigError(
            f"{what} needs an Actor(name, role=Role...), got {type(actor).__name__}: {actor!r}."
        )
    if not isinstance(actor.name, str) or not actor.name.strip():
        raise ConfigError(f"{what} needs an actor with a non-empty name, got {actor.name!r}.")
    return actor


class RiskManager:
    """Pre-trade checks, trading state, exits and audited control; see the module docstring.

    Parameters
    ----------
    limits
        The limits, usually ``load_config(RiskLimits, path, "risk")``.
    audit
        Where every decision and control action is recorded (``None``: nowhere).
    clock
        The decision time source; event time (orders' and marks' timestamps) when ``None``.
    instruments
        Asset class per symbol, for exposure limits per class and trading hours.

    Examples
    --------
    >>> risk = RiskManager(RiskLimits(max_leverage=1.0, halt_drawdown_pct=20))
    >>> risk.sync_portfolio(Portfolio(cash=100_000, ts=now))            # doctest: +SKIP
    >>> risk.mark({"SPY": 500.0}, now)                                   # doctest: +SKIP
    >>> result = await risk.submit(order, connector)                     # doctest: +SKIP
    """

    def __init__(
        self,
        limits: RiskLimits,
        *,
        audit: AuditSink | None = None,
        clock: Clock | None = None,
        instruments: Mapping[str, AssetClass] | None = None,
    ) -> None:
        if not isinstance(limits, RiskLimits):
            raise ConfigError(
                f"RiskManager needs a RiskLimits, got {type(limits).__name__}; build one with "
                f"RiskLimits(...) or load_config(RiskLimits, path, 'risk')."
            )
        if audit is not None and not callable(getattr(audit, "append_audit", None)):
            raise ConfigError(
                f"audit must have an append_audit(actor, action, payload, *, ts) method (a RelationalStore), "
                f"got {type(audit).__name__}."
            )
        if clock is not None and not callable(getattr(clock, "now", None)):
            raise ConfigError(f"clock must have a now() method, got {type(clock).__name__}.")
        classes: dict[str, AssetClass] = {}
        for sym, cls in (instruments or {}).items():
            try:
                classes[sym] = AssetClass(cls)
            except ValueError:
                valid = ", ".join(c.value for c in AssetClass)
                raise ConfigError(
                    f"instruments[{sym!r}]: {cls!r} is not an asset class; valid: {valid}."
                ) from None
        self._limits = limits
        self._audit = audit
        self._clock = clock
        self._classes = classes
        self._cash = 0.0
        self._positions: dict[str, float] = {}
        self._avg_cost: dict[str, float] = {}
        self._prices: dict[str, float] = {}
        self._synced = False
        self._state = TradingState.NORMAL
        self._halts: dict[str, str] = {}  # cause -> message; any cause means HALTED
        self._reducing = False
        self._peak: float | None = None
        self._day: date | None = None
        self._day_start: float | None = None
        self._last_equity: float | None = None
        self._event_now: datetime | None = None
        self._recent: deque[datetime] = deque()
        self._seen_fills: set[str] = set()
        self._exits: dict[str, tuple[str, float]] = {}  # symbol -> (exit order id, position when emitted)
        self._protection: dict[str, tuple[float | None, float | None]] = {}

    def __repr__(self) -> str:
        return f"RiskManager(state={self._state.value}, limits={self._limits.config_hash()})"

    # ------------------------------------------------------------------ read-only views

    @property
    def state(self) -> TradingState:
        """The trading state now."""
        return self._state

    @property
    def limits(self) -> RiskLimits:
        """The limits in force."""
        return self._limits

    @property
    def halt_reasons(self) -> tuple[str, ...]:
        """Why trading is halted (empty unless HALTED)."""
        return tuple(self._halts.values())

    @property
    def positions(self) -> dict[str, float]:
        """Signed position per symbol (units) as the manager knows it."""
        return {s: q for s, q in self._positions.items() if q != 0}

    @property
    def cash(self) -> float:
        """Cash in the account currency as the manager knows it."""
        return self._cash

    @property
    def prices(self) -> dict[str, float]:
        """Last trade price per symbol."""
        return dict(self._prices)

    def measures(self) -> RiskMeasures:
        """The book's exposures at the last trade prices.

        Raises
        ------
        RiskLimitError
            An open position has no price yet (``limit`` is ``"no_price"``).
        """
        missing = sorted(s for s, q in self._positions.items() if q != 0 and s not in self._prices)
        if missing:
            raise RiskLimitError(
                f"positions in {missing} have no price; call mark() with their last trades first.",
                limit="no_price",
            )
        return risk_measures(self._cash, self._positions, self._prices, self._classes)

    # ------------------------------------------------------------------ book keeping

    def mark(self, prices: Mapping[str, float], ts: datetime) -> TradingState:
        """Record last trade prices and re-evaluate drawdown and the day's loss.

        Parameters
        ----------
        prices
            Last trade price per symbol (positive, finite); symbols not given keep their last price.
        ts
            When the prices were observed (aware).

        Returns
        -------
        TradingState
            The state after the re-evaluation.
        """
        ts = ensure_utc(ts, name="ts")
        if not isinstance(prices, Mapping):
            raise DataFormatError(f"mark() takes a mapping of symbol -> price, got {type(prices).__name__}.")
        clean: dict[str, float] = {}
        for sym, px in prices.items():
            try:
                value = float(px)
            except (TypeError, ValueError):
                value = math.nan
            if not math.isfinite(value) or value <= 0:
                raise DataFormatError(
                    f"mark(): the price of {sym!r} must be a positive finite number, got {px!r}; drop the "
                    f"symbol from the mapping instead of marking it with a bad price."
                )
            clean[str(sym)] = value
        self._prices.update(clean)
        self._touch(ts)
        return self._evaluate()

    def sync_portfolio(self, portfolio: Portfolio) -> None:
        """Take positions and cash from the venue or the engine (replacing what the manager had).

        Each position's ``current_price`` becomes the symbol's price where no trade was marked yet.
        """
        if not isinstance(portfolio, Portfolio):
            raise DataFormatError(
                f"sync_portfolio() takes a Portfolio, got {type(portfolio).__name__}; build one from the "
                f"venue's account and positions."
            )
        self._cash = float(portfolio.cash)
        self._positions = {s: p.quantity for s, p in portfolio.positions.items() if p.quantity != 0}
        self._avg_cost = {s: p.avg_cost for s, p in portfolio.positions.items() if p.quantity != 0}
        for s, p in portfolio.positions.items():
            self._prices.setdefault(s, p.current_price)
        self._synced = True
        for sym in list(self._protection):
            if self._positions.get(sym, 0.0) == 0:
                del self._protection[sym]
        self._touch(portfolio.ts)
        self._evaluate()

    def on_fill(self, fill: Fill) -> None:
        """Book a fill (once per ``fill_id``; a repeated fill is ignored)."""
        if not isinstance(fill, Fill):
            raise DataFormatError(f"on_fill() takes a Fill, got {type(fill).__name__}.")
        if fill.fill_id in self._seen_fills:
            return
        self._seen_fills.add(fill.fill_id)
        sym = fill.symbol
        q0 = self._positions.get(sym, 0.0)
        pos = Position(
            symbol=sym,
            quantity=q0,
            avg_cost=self._avg_cost.get(sym, 0.0) if q0 != 0 else 0.0,
            current_price=fill.price,
        ).apply_fill(fill)
        self._cash -= fill.signed_quantity * fill.price + fill.fee
        self._positions[sym] = pos.quantity
        self._avg_cost[sym] = pos.avg_cost
        self._prices.setdefault(sym, fill.price)
        if pos.quantity == 0 or (q0 != 0 and (q0 > 0) != (pos.quantity > 0)):
            self._protection.pop(sym, None)  # levels belong to the position they were set for
        if pos.quantity == 0:
            self._exits.pop(sym, None)
        self._touch(fill.ts)

    def set_protection(
        self, symbol: str, *, stop_loss: float | None = None, take_profit: float | None = None
    ) -> None:
        """Exit levels (prices) for the open position in ``symbol``, instead of the limits' percentages.

        They apply until the position is closed or flips. ``None`` for both clears them.
        """
        if self._positions.get(symbol, 0.0) == 0:
            raise RiskLimitError(
                f"set_protection(): there is no open position in {symbol!r}; set exits after the entry "
                f"fills.",
                limit="protection",
            )
        for name, level in (("stop_loss", stop_loss), ("take_profit", take_profit)):
            if level is not None and (not math.isfinite(level) or level <= 0):
                raise ConfigError(f"set_protection(): {name} must be a positive price, got {level!r}.")
        if stop_loss is None and take_profit is None:
            self._protection.pop(symbol, None)
        else:
            self._protection[symbol] = (stop_loss, take_profit)

    # ------------------------------------------------------------------ orders

    def check(self, order: Order) -> RiskDecision:
        """Decide whether ``order`` may go to a venue, and record the decision in the audit log.

        Returns
        -------
        RiskDecision
            With a signed ``approval`` when approved, the reasons when refused.
        """
        if not isinstance(order, Order):
            raise ConfigError(f"check() takes an Order, got {type(order).__name__}.")
        self._touch(order.ts)
        now = self._now()
        window_start = now - timedelta(seconds=self._limits.order_window_s)
        while self._recent and self._recent[0] <= window_start:
            self._recent.popleft()
        book = RiskSnapshot(
            state=self._state,
            cash=self._cash,
            quantities=dict(self._positions),
            prices=dict(self._prices),
            asset_classes=self._classes,
            now=now,
            recent_orders=tuple(self._recent),
        )
        reasons = check_order(order, book, self._limits)
        reducing = is_risk_reducing(self._positions.get(order.symbol, 0.0), order.signed_quantity)
        if not reasons and self._limits.needs_equity and not self._synced and not reducing:
            reasons = (
                "equity: leverage and concentration limits need the account's equity, and no portfolio was "
                "synced; call RiskManager.sync_portfolio() with the venue's cash and positions first.",
            )
        decision_id = uuid.uuid4().hex
        approved = not reasons
        approval = _issue_approval(order, decision_id, now) if approved else None
        self._record(
            "risk.decision",
            {
                "decision_id": decision_id,
                "approved": approved,
                "order": order.model_dump(mode="json"),
                "order_digest": order_digest(order),
                "reasons": list(reasons),
                "state": self._state.value,
                "limits_hash": self._limits.config_hash(),
            },
            now,
        )
        if approved:
            self._recent.append(now)
        return RiskDecision(approved, order, tuple(reasons), self._state, approval, decision_id)

    async def submit(self, order: Order, connector: OrderVenue) -> OrderResult:
        """Check ``order`` and, if approved, send it with its approval to ``connector.place_order``.

        Fills in the venue's answer are booked (:meth:`on_fill`; booking them again later is harmless).

        Raises
        ------
        RiskLimitError
            The order was refused; the message lists every reason and ``limit`` names the first limit hit.
            Nothing was sent.
        """
        if not callable(getattr(connector, "place_order", None)):
            raise ConfigError(
                f"submit() sends to a connector with place_order(order, approval), got "
                f"{type(connector).__name__}."
            )
        decision = self.check(order)
        if not decision.approved:
            self._forget_exit(order)
            raise RiskLimitError(
                f"order {order.client_order_id} ({order.side.value} {order.quantity:g} {order.symbol}) "
                f"refused by the risk manager: " + " | ".join(decision.reasons),
                limit=limit_name(decision.reasons[0]),
            )
        try:
            result = await connector.place_order(order, decision.approval)
        except BaseException:
            self._forget_exit(order)
            raise
        for fill in result.fills:
            self.on_fill(fill)
        if result.status in (OrderStatus.REJECTED, OrderStatus.CANCELLED):
            self._forget_exit(order)
        return result

    def protective_orders(
        self, client_order_id: Callable[[str], str] | None = None, *, exclude: Collection[str] = ()
    ) -> list[Order]:
        """Market orders that close positions whose stop-loss or take-profit the last trade crossed.

        One exit per position: an exit is not issued again while the position is unchanged, unless it was
        refused or rejected. Each exit is audited (``risk.exit``).

        Parameters
        ----------
        client_order_id
            Makes the exit's client order id from its symbol (e.g. the trading engine's deterministic ids),
            so a refusal or rejection of that id is recognised and the exit issued again; random ids when
            omitted.
        exclude
            Symbols to leave alone this time (e.g. an order is already working there); their exits are
            neither issued nor remembered, so they come again at the next call.
        """
        now = self._now_or_none()
        if now is None:
            return []
        orders: list[Order] = []
        for sym, q in sorted(self._positions.items()):
            if q == 0 or sym not in self._prices or sym in exclude:
                continue
            pending = self._exits.get(sym)
            if pending is not None and pending[1] == q:
                continue
            trigger = self._exit_trigger(sym, q, self._prices[sym])
            if trigger is None:
                continue
            ids = {} if client_order_id is None else {"client_order_id": client_order_id(sym)}
            order = Order(
                symbol=sym,
                side=Side.SELL if q > 0 else Side.BUY,
                quantity=abs(q),
                order_type=OrderType.MARKET,
                ts=now,
                **ids,
            )
            self._exits[sym] = (order.client_order_id, q)
            self._record(
                "risk.exit",
                {
                    "order": order.model_dump(mode="json"),
                    "trigger": trigger,
                    "position": q,
                    "avg_cost": self._avg_cost.get(sym),
                    "price": self._prices[sym],
                    "state": self._state.value,
                    "limits_hash": self._limits.config_hash(),
                },
                now,
            )
            orders.append(order)
        return orders

    # ------------------------------------------------------------------ control

    def kill_switch(self, actor: Actor, reason: str) -> None:
        """Halt trading now (traders and admins); only risk-reducing orders pass until an admin resumes."""
        actor = _check_actor(actor, "kill_switch()")
        reason = self._check_reason(reason, "kill_switch()")
        now = self._now_or_clock()
        if actor.role is Role.VIEWER:
            self._record(
                "risk.kill_switch_refused",
                {"actor_role": actor.role.value, "reason": reason, "state": self._state.value},
                now,
                actor=actor.name,
            )
            raise RiskLimitError(
                f"{actor.name} is a viewer; the kill switch needs the trader or admin role.", limit="role"
            )
        self._halts["kill_switch"] = f"kill_switch: pressed by {actor.name}: {reason}"
        self._record(
            "risk.kill_switch",
            {"actor_role": actor.role.value, "reason": reason, "limits_hash": self._limits.config_hash()},
            now,
            actor=actor.name,
        )
        self._set_state(TradingState.HALTED, now, f"kill switch by {actor.name}: {reason}")

    def resume(self, actor: Actor, reason: str) -> None:
        """Lift every halt (admins only) and re-base peak and day-start equity to equity now.

        Re-basing accepts the loss so far: without it the drawdown that halted trading would halt it again
        at the next mark.
        """
        actor = _check_actor(actor, "resume()")
        reason = self._check_reason(reason, "resume()")
        now = self._now_or_clock()
        if actor.role is not Role.ADMIN:
            self._record(
                "risk.resume_refused",
                {"actor_role": actor.role.value, "reason": reason, "state": self._state.value},
                now,
                actor=actor.name,
            )
            raise RiskLimitError(
                f"{actor.name} ({actor.role.value}) may not resume trading; only an admin may.", limit="role"
            )
        lifted = dict(self._halts)
        self._halts.clear()
        equity = self._equity()
        if equity is not None:
            self._peak = equity
            self._day_start = equity
        self._record(
            "risk.resume",
            {
                "actor_role": actor.role.value,
                "reason": reason,
                "lifted": list(lifted.values()),
                "rebased_equity": equity,
                "limits_hash": self._limits.config_hash(),
            },
            now,
            actor=actor.name,
        )
        self._evaluate(why=f"resumed by {actor.name}: {reason}")

    def set_limits(self, limits: RiskLimits, actor: Actor) -> None:
        """Replace the limits (admins only); the change, or the refused attempt, is audited.

        Raises
        ------
        ConfigError
            ``limits`` is not a :class:`RiskLimits` or ``actor`` not an :class:`Actor`.
        RiskLimitError
            The actor is not an admin.
        """
        actor = _check_actor(actor, "set_limits()")
        if not isinstance(limits, RiskLimits):
            raise ConfigError(
                f"set_limits() takes a RiskLimits, got {type(limits).__name__}; build it with "
                f"RiskLimits.from_dict(...) so it is validated."
            )
        now = self._now_or_clock()
        old, new = self._limits.model_dump(mode="json"), limits.model_dump(mode="json")
        changes = {k: {"from": old[k], "to": new[k]} for k in new if old[k] != new[k]}
        payload = {
            "actor_role": actor.role.value,
            "old_hash": self._limits.config_hash(),
            "new_hash": limits.config_hash(),
            "changes": changes,
        }
        if actor.role is not Role.ADMIN:
            self._record("risk.limits_change_refused", payload, now, actor=actor.name)
            raise RiskLimitError(
                f"{actor.name} ({actor.role.value}) may not change risk limits; only an admin may. The "
                f"attempt was recorded in the audit log.",
                limit="role",
            )
        self._record("risk.limits_changed", payload, now, actor=actor.name)
        self._limits = limits
        if self._equity() is not None:
            self._evaluate(why=f"limits changed by {actor.name}")

    # ------------------------------------------------------------------ internals

    def _check_reason(self, reason: object, what: str) -> str:
        if not isinstance(reason, str) or not reason.strip():
            raise ConfigError(f"{what} needs a reason for the audit log, got {reason!r}.")
        return reason

    def _touch(self, ts: datetime) -> None:
        ts = ensure_utc(ts, name="ts")
        if self._event_now is None or ts > self._event_now:
            self._event_now = ts

    def _now_or_none(self) -> datetime | None:
        return (
            ensure_utc(self._clock.now(), name="clock.now()") if self._clock is not None else self._event_now
        )

    def _now(self) -> datetime:
        now = self._now_or_none()
        assert now is not None  # _touch ran first
        return now

    def _now_or_clock(self) -> datetime:
        now = self._now_or_none()
        if now is None:  # a control action before any event: record it at wall-clock time
            now = LiveClock().now()
        return now

    def _equity(self) -> float | None:
        if not self._synced and not self._positions:
            return None
        if any(q != 0 and s not in self._prices for s, q in self._positions.items()):
            return None
        return self._cash + math.fsum(q * self._prices[s] for s, q in self._positions.items() if q != 0)

    def _evaluate(self, why: str = "") -> TradingState:
        now = self._now_or_clock()
        equity = self._equity()
        if equity is not None:
            day = now.astimezone(ZoneInfo(self._limits.day_timezone)).date()
            if self._day is None or day != self._day:
                # The day's loss counts from the last equity of the previous day (overnight gaps included).
                self._day_start = self._last_equity if self._last_equity is not None else equity
                if self._day is not None and "daily_loss_pct" in self._halts:
                    del self._halts["daily_loss_pct"]
                    why = why or f"a new day ({day.isoformat()}) lifts the daily loss halt"
                self._day = day
            if self._peak is None or equity > self._peak:
                self._peak = equity
            assert self._day_start is not None
            _, causes, messages = evaluate_state(equity, self._peak, self._day_start, self._limits)
            for cause, message in zip(causes, messages, strict=False):
                self._halts.setdefault(cause, message)
            reduce_at = self._limits.reduce_drawdown_pct
            self._reducing = reduce_at is not None and _loss_pct(equity, self._peak) >= reduce_at
            self._last_equity = equity
            why = why or "; ".join(messages)
        if self._halts:
            state = TradingState.HALTED
        elif self._reducing:
            state = TradingState.REDUCING
        else:
            state = TradingState.NORMAL
        self._set_state(state, now, why or "drawdown back below reduce_drawdown_pct", equity=equity)
        return self._state

    def _set_state(
        self, state: TradingState, now: datetime, why: str, *, equity: float | None = None
    ) -> None:
        if state is self._state:
            return
        previous, self._state = self._state, state
        self._record(
            "risk.state",
            {
                "from": previous.value,
                "to": state.value,
                "why": why,
                "halts": list(self._halts.values()),
                "equity": equity if equity is not None else self._equity(),
                "peak_equity": self._peak,
                "day_start_equity": self._day_start,
                "limits_hash": self._limits.config_hash(),
            },
            now,
        )

    def _exit_trigger(self, sym: str, q: float, price: float) -> str | None:
        stop, take = self._protection.get(sym, (None, None))
        avg = self._avg_cost.get(sym, 0.0)
        lim = self._limits
        if stop is None and lim.stop_loss_pct is not None and avg > 0:
            stop = avg * (1 - lim.stop_loss_pct / 100) if q > 0 else avg * (1 + lim.stop_loss_pct / 100)
        if take is None and lim.take_profit_pct is not None and avg > 0:
            take = (
                avg * (1 + lim.take_profit_pct / 100)
                if q > 0
                else max(avg * (1 - lim.take_profit_pct / 100), 0)
            )
        long = q > 0
        if stop is not None and (price <= stop if long else price >= stop):
            return f"stop_loss: last trade {price:g} crossed the stop {stop:g}"
        if take is not None and take > 0 and (price >= take if long else price <= take):
            return f"take_profit: last trade {price:g} crossed the target {take:g}"
        return None

    def _forget_exit(self, order: Order) -> None:
        pending = self._exits.get(order.symbol)
        if pending is not None and pending[0] == order.client_order_id:
            del self._exits[order.symbol]

    def _record(
        self, action: str, payload: Mapping[str, Any], ts: datetime, *, actor: str = MANAGER_ACTOR
    ) -> None:
        if self._audit is not None:
            self._audit.append_audit(actor, action, dict(payload), ts=ts)
