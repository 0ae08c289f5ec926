"""Hypothesis properties of the risk manager on random order sequences and price paths.

Price paths are windows of the shipped sample's real closes (SPY, BTCUSD, EURUSD), scaled by random shocks.
Approved orders are applied as fills at the last price to a simulated portfolio kept here, independently
of the manager, and after every step the properties are checked against that portfolio:

- an approved order never takes a measure over its limit, or further over it than it was ("never worse");
  with prices held still, a book that starts flat is within every limit at every step;
- in REDUCING and HALTED only risk-reducing orders are approved; a HALTED book never grows;
- states change exactly at the drawdown and daily-loss thresholds;
- limit changes, resumes and kill switches by the wrong role are refused, and every attempt is audited.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from alphaloom.core.exceptions import RiskLimitError
from alphaloom.core.types import AssetClass, Fill, Order, OrderType, Portfolio, Side
from alphaloom.data import load_sample
from alphaloom.risk import (
    Actor,
    ExposureLimits,
    RiskLimits,
    RiskManager,
    Role,
    TradingState,
    is_risk_reducing,
    risk_measures,
)

SYMBOLS = ("SPY", "BTCUSD", "EURUSD")
CLASSES = {"SPY": AssetClass.ETF, "BTCUSD": AssetClass.CRYPTO, "EURUSD": AssetClass.FOREX}
T0 = datetime(2019, 3, 4, 14, 0, tzinfo=UTC)
CASH = 1_000_000.0
TOL = 1e-7

PROPS = settings(
    max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)


class ListAudit:
    """An in-memory audit sink (the DuckDB store is exercised in test_risk_manager.py)."""

    def __init__(self) -> None:
        self.records: list[tuple[str, str, dict[str, Any]]] = []

    def append_audit(
        self, actor: str, action: str, payload: Mapping[str, Any] | None = None, *, ts: datetime | None = None
    ) -> None:
        assert ts is not None
        assert ts.tzinfo is not None
        self.records.append((actor, action, dict(payload or {})))

    def actions(self) -> list[str]:
        return [a for _, a, _ in self.records]


@cache
def real_closes() -> dict[str, np.ndarray]:
    bars = load_sample()
    out = {}
    for sym in SYMBOLS:
        sel = bars[bars["symbol"] == sym].sort_values("ts")
        out[sym] = sel["close"].to_numpy(dtype=float)[-700:]
    return out


@st.composite
def price_paths(draw: st.DrawFn, steps: int) -> dict[str, list[float]]:
    """Per symbol, ``steps`` real closes from a random window, times random shocks (crashes and spikes)."""
    closes = real_closes()
    start = draw(st.integers(0, 700 - steps - 1))
    shocks = draw(
        st.lists(st.sampled_from([1.0, 1.0, 1.0, 0.8, 0.9, 1.1, 1.3, 0.5]), min_size=steps, max_size=steps)
    )
    paths = {}
    for sym in SYMBOLS:
        level = 1.0
        path = []
        for k in range(steps):
            level *= shocks[k]
            path.append(float(closes[sym][start + k]) * level)
        paths[sym] = path
    return paths


def opt(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), strategy)


@st.composite
def risk_limits(draw: st.DrawFn) -> RiskLimits:
    reduce = draw(opt(st.floats(1.0, 30.0)))
    return RiskLimits(
        max_position=draw(opt(st.floats(1.0, 500.0))),
        max_notional=draw(opt(st.floats(1_000.0, 400_000.0))),
        max_order_notional=draw(opt(st.floats(1_000.0, 300_000.0))),
        max_gross_exposure=draw(opt(st.floats(10_000.0, 1_500_000.0))),
        max_net_exposure=draw(opt(st.floats(10_000.0, 1_000_000.0))),
        asset_classes=draw(
            st.dictionaries(
                st.sampled_from(list(CLASSES.values())),
                st.builds(
                    ExposureLimits,
                    max_gross=opt(st.floats(5_000.0, 800_000.0)),
                    max_net=opt(st.floats(5_000.0, 800_000.0)),
                ),
                max_size=3,
            )
        ),
        max_leverage=draw(opt(st.floats(0.1, 3.0))),
        max_concentration_pct=draw(opt(st.floats(5.0, 150.0))),
        max_orders=draw(opt(st.integers(1, 8))),
        order_window_s=draw(st.sampled_from([60.0, 3600.0, 86_400.0])),
        price_band_pct=draw(opt(st.floats(0.5, 20.0))),
        reduce_drawdown_pct=reduce,
        halt_drawdown_pct=None if reduce is None else draw(opt(st.floats(reduce, 60.0))),
        daily_loss_pct=draw(opt(st.floats(1.0, 50.0))),
    )


orders_step = st.tuples(
    st.just("order"),
    st.sampled_from(SYMBOLS),
    st.sampled_from([Side.BUY, Side.SELL]),
    st.one_of(st.floats(0.01, 5.0), st.floats(5.0, 600.0), st.floats(600.0, 200_000.0)),
    st.sampled_from([OrderType.MARKET, OrderType.MARKET, OrderType.LIMIT, OrderType.STOP]),
    st.floats(-0.3, 0.3),  # limit / stop price offset from the last trade
)


# Steps of a random session, weighted: mostly orders, some price moves, a few kill switches and resumes.
STEP_KINDS = ("mark", "order", "order", "order", "order", "mark", "mark", "kill", "order", "resume")
STILL_KINDS = tuple(k for k in STEP_KINDS if k != "mark")


class Book:
    """The simulated portfolio: fills at the last price, no fees."""

    def __init__(self) -> None:
        self.cash = CASH
        self.qty: dict[str, float] = {}

    def measures(self, prices: Mapping[str, float]) -> Any:
        return risk_measures(self.cash, self.qty, prices, CLASSES)

    def fill(self, sym: str, signed: float, price: float) -> None:
        self.qty[sym] = self.qty.get(sym, 0.0) + signed
        self.cash -= signed * price


def _measure_table(limits: RiskLimits, book: Book, prices: Mapping[str, float], sym: str) -> dict[str, tuple]:
    """(value, limit) of every limited measure that the order in ``sym`` can change."""
    m = book.measures(prices)
    q = abs(book.qty.get(sym, 0.0))
    out: dict[str, tuple] = {}
    if limits.max_position is not None:
        out["max_position"] = (q, limits.max_position)
    if limits.max_notional is not None:
        out["max_notional"] = (q * prices[sym], limits.max_notional)
    if limits.max_gross_exposure is not None:
        out["max_gross_exposure"] = (m.gross, limits.max_gross_exposure)
    if limits.max_net_exposure is not None:
        out["max_net_exposure"] = (abs(m.net), limits.max_net_exposure)
    for cls, lim in limits.asset_classes.items():
        if lim.max_gross is not None:
            out[f"{cls}.gross"] = (m.gross_by_class.get(cls, 0.0), lim.max_gross)
        if lim.max_net is not None:
            out[f"{cls}.net"] = (abs(m.net_by_class.get(cls, 0.0)), lim.max_net)
    if limits.max_leverage is not None:
        out["max_leverage"] = (m.leverage, limits.max_leverage)
    if limits.max_concentration_pct is not None:
        out["max_concentration_pct"] = (m.concentration_pct.get(sym, 0.0), limits.max_concentration_pct)
    return out


@PROPS
@given(
    limits=risk_limits(),
    data=st.data(),
    n_steps=st.integers(5, 40),
    still=st.booleans(),
)
def test_approved_orders_never_exceed_a_limit(
    limits: RiskLimits, data: st.DataObject, n_steps: int, still: bool
) -> None:
    paths = data.draw(price_paths(n_steps + 1))
    audit = ListAudit()
    risk = RiskManager(limits, audit=audit, instruments=CLASSES)
    book = Book()
    now = T0
    risk.sync_portfolio(Portfolio(cash=CASH, ts=now))
    prices = {s: paths[s][0] for s in SYMBOLS}
    risk.mark(prices, now)
    approvals: list[datetime] = []
    k = 0
    risk_day = now.date()
    n_approved = 0
    for _ in range(n_steps):
        kind = data.draw(st.sampled_from(STILL_KINDS if still else STEP_KINDS))
        step = data.draw(orders_step) if kind == "order" else (kind,)
        now += timedelta(minutes=data.draw(st.sampled_from([1, 7, 60, 600])))
        if kind == "kill":
            risk.kill_switch(Actor("desk", Role.TRADER), "random halt")
            continue
        if kind == "resume":
            risk.resume(Actor("head", Role.ADMIN), "random resume")
            continue
        if step[0] == "mark":
            k += 1
            prices = {s: paths[s][k] for s in SYMBOLS}
            state_before, day_before = risk.state, risk_day
            risk.mark(prices, now)
            risk_day = now.date()
            if state_before is TradingState.HALTED and (
                day_before == risk_day or limits.daily_loss_pct is None
            ):
                assert risk.state is TradingState.HALTED  # only an admin (or a new day) lifts a halt
            continue
        _, sym, side, qty, otype, offset = step
        px = prices[sym]
        kw: dict[str, Any] = {}
        if otype is OrderType.LIMIT:
            kw["limit_price"] = px * (1 + offset)
        elif otype is OrderType.STOP:
            kw["stop_price"] = px * (1 + offset)
        order = Order(symbol=sym, side=side, quantity=qty, order_type=otype, ts=now, **kw)
        state = risk.state
        before = _measure_table(limits, book, prices, sym)
        q0 = book.qty.get(sym, 0.0)
        decision = risk.check(order)
        assert audit.records[-1][1] == "risk.decision"
        assert audit.records[-1][2]["approved"] is decision.approved
        assert (decision.approval is not None) is decision.approved
        assert decision.approved is (not decision.reasons)
        if not decision.approved:
            continue
        reducing = is_risk_reducing(q0, order.signed_quantity)
        if state is not TradingState.NORMAL:
            assert reducing, f"{state} approved a risk-increasing order {order}"
        if limits.price_band_pct is not None:
            for p in (order.limit_price, order.stop_price):
                if p is not None:
                    assert abs(p / px - 1) * 100 <= limits.price_band_pct * (1 + TOL)
        if limits.max_order_notional is not None and not reducing:
            assert qty * px <= limits.max_order_notional * (1 + TOL)
        if limits.max_orders is not None:
            approvals.append(now)
            window = [t for t in approvals if t > now - timedelta(seconds=limits.order_window_s)]
            assert len(window) <= limits.max_orders
        book.fill(sym, order.signed_quantity, px)
        risk.on_fill(
            Fill(client_order_id=order.client_order_id, symbol=sym, side=side, quantity=qty, price=px, ts=now)
        )
        after = _measure_table(limits, book, prices, sym)
        for name, (value, limit) in after.items():
            slack = TOL * max(1.0, abs(limit))
            assert value <= limit + slack or value <= before[name][0] + slack, (
                f"{name}: {before[name][0]} -> {value} over the limit {limit} after {order}"
            )
            if still:
                assert value <= limit + slack, f"{name}: {value} > {limit} with prices held still"
        n_approved += 1
        assert risk.positions.get(sym, 0.0) == pytest.approx(book.qty[sym], abs=1e-9)
        assert risk.cash == pytest.approx(book.cash, rel=1e-12)
    event(f"approved orders: {'0' if n_approved == 0 else '1-4' if n_approved < 5 else '5+'}")
    event(f"final state: {risk.state.value}")


@settings(max_examples=1000, deadline=None)
@given(
    limits=st.builds(
        lambda r, extra, daily: RiskLimits(
            reduce_drawdown_pct=r,
            halt_drawdown_pct=None if extra is None else min(r + extra, 99.0),
            daily_loss_pct=daily,
        ),
        st.floats(1.0, 40.0),
        opt(st.floats(0.0, 40.0)),
        opt(st.floats(1.0, 30.0)),
    ),
    moves=st.lists(st.tuples(st.floats(-0.25, 0.2), st.sampled_from([0, 0, 1, 3])), min_size=1, max_size=40),
    units=st.floats(10.0, 2_000.0),
    probe=st.sampled_from([Side.BUY, Side.SELL]),
)
def test_states_switch_exactly_at_the_thresholds(
    limits: RiskLimits, moves: list[tuple[float, int]], units: float, probe: Side
) -> None:
    risk = RiskManager(limits, audit=ListAudit(), instruments=CLASSES)
    price = float(real_closes()["SPY"][0])
    cash = 100_000.0 - units * price
    now = T0
    risk.sync_portfolio(Portfolio(cash=100_000.0, ts=now))
    risk.on_fill(
        Fill(client_order_id="entry", symbol="SPY", side=Side.BUY, quantity=units, price=price, ts=now)
    )
    risk.mark({"SPY": price}, now)
    equity = cash + units * price
    peak = last = day_start = equity
    day = now.date()
    dd_halt = daily_halt = False
    for ret, days in moves:
        price *= 1 + ret
        now += timedelta(days=days, minutes=5)
        equity = cash + units * price
        if now.date() != day:
            day, day_start, daily_halt = now.date(), last, False
        peak = max(peak, equity)
        dd = 100 * (1 - equity / peak) if peak > 0 else 0.0
        if day_start > 0:
            loss = max(0.0, 100 * (1 - equity / day_start))
        else:  # no positive reference: any further fall counts as a total loss
            loss = 0.0 if equity >= day_start else 100.0
        if limits.halt_drawdown_pct is not None and dd >= limits.halt_drawdown_pct:
            dd_halt = True
        if limits.daily_loss_pct is not None and loss >= limits.daily_loss_pct:
            daily_halt = True
        expected = (
            TradingState.HALTED
            if dd_halt or daily_halt
            else TradingState.REDUCING
            if limits.reduce_drawdown_pct is not None and dd >= limits.reduce_drawdown_pct
            else TradingState.NORMAL
        )
        # Skip knife-edge cases where float rounding decides which side of a threshold the book is on.
        edges = [limits.reduce_drawdown_pct, limits.halt_drawdown_pct]
        if any(e is not None and abs(dd - e) < 1e-6 for e in edges) or (
            limits.daily_loss_pct is not None and abs(loss - limits.daily_loss_pct) < 1e-6
        ):
            return
        assert risk.mark({"SPY": price}, now) is expected, (dd, loss, limits)
        last = equity
        # A probe order: risk-increasing ones pass only in NORMAL.
        qty = units * 2 if probe is Side.SELL else 1.0  # a sell of twice the position flips it
        decision = risk.check(Order(symbol="SPY", side=probe, quantity=qty, ts=now))
        assert decision.approved is (expected is TradingState.NORMAL)
        reduce = risk.check(Order(symbol="SPY", side=Side.SELL, quantity=units / 2, ts=now))
        assert reduce.approved  # reducing is always allowed (no other limits are set)


roles = st.sampled_from(list(Role))


@settings(max_examples=600, deadline=None)
@given(
    actions=st.lists(
        st.tuples(st.sampled_from(["kill", "resume", "limits", "order"]), roles, st.floats(0.5, 3.0)),
        min_size=1,
        max_size=25,
    ),
    position=st.builds(lambda size, sign: size * sign, st.floats(0.01, 50.0), st.sampled_from([-1.0, 1.0])),
)
def test_control_actions_need_the_right_role_and_are_audited(
    actions: list[tuple[str, Role, float]], position: float
) -> None:
    audit = ListAudit()
    risk = RiskManager(RiskLimits(max_leverage=2.0), audit=audit)
    now = T0
    price = float(real_closes()["SPY"][-1])
    risk.sync_portfolio(Portfolio(cash=100_000.0, ts=now))
    side = Side.BUY if position > 0 else Side.SELL
    risk.on_fill(
        Fill(client_order_id="e", symbol="SPY", side=side, quantity=abs(position), price=price, ts=now)
    )
    risk.mark({"SPY": price}, now)
    halted = False
    for i, (what, role, value) in enumerate(actions):
        actor = Actor(f"user{i}", role)
        n = len(audit.records)
        if what == "kill":
            if role is Role.VIEWER:
                with pytest.raises(RiskLimitError):
                    risk.kill_switch(actor, "test")
                assert audit.records[n][1] == "risk.kill_switch_refused"
            else:
                risk.kill_switch(actor, "test")
                assert "risk.kill_switch" in audit.actions()[n:]
                halted = True
        elif what == "resume":
            if role is Role.ADMIN:
                risk.resume(actor, "test")
                assert audit.records[n][1] == "risk.resume"
                halted = False
            else:
                with pytest.raises(RiskLimitError):
                    risk.resume(actor, "test")
                assert audit.records[n][1] == "risk.resume_refused"
        elif what == "limits":
            new = risk.limits.replace(max_leverage=value)
            if role is Role.ADMIN:
                risk.set_limits(new, actor)
                assert risk.limits == new
                assert audit.records[n][1] == "risk.limits_changed"
            else:
                old = risk.limits
                with pytest.raises(RiskLimitError):
                    risk.set_limits(new, actor)
                assert risk.limits == old
                assert audit.records[n][1] == "risk.limits_change_refused"
                assert audit.records[n][0] == actor.name
        else:
            grow = Order(symbol="SPY", side=side, quantity=1.0, ts=now)
            decision = risk.check(grow)
            if halted:
                assert not decision.approved
            shrink = Order(
                symbol="SPY", side=Side.SELL if position > 0 else Side.BUY, quantity=abs(position) / 2, ts=now
            )
            assert risk.check(shrink).approved  # reducing passes in every state
        assert (risk.state is TradingState.HALTED) is halted
