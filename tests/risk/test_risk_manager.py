"""The risk manager end to end: real prices, the paper exchange, a real audit store, the event backtester."""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from alphaloom.backtest.event import CompiledStrategy, EventConfig, Strategy, run_event_backtest
from alphaloom.core.approval import verify_approval
from alphaloom.core.exceptions import ConfigError, DataFormatError, RiskLimitError
from alphaloom.core.types import AssetClass, Fill, Order, OrderStatus, Portfolio, Position, Side
from alphaloom.data import load_sample
from alphaloom.data.connectors import BpsFees, PaperConfig, PaperExchange
from alphaloom.data.storage.relational import DuckDBRelationalStore
from alphaloom.risk import Actor, RiskLimits, RiskManager, Role, TradingState

ADMIN = Actor("alice", Role.ADMIN)
TRADER = Actor("bob", Role.TRADER)
VIEWER = Actor("carol", Role.VIEWER)
START = datetime(2008, 1, 2, tzinfo=UTC)
END = datetime(2008, 3, 1, tzinfo=UTC)


@cache
def sample() -> pd.DataFrame:
    return load_sample("us_equities_daily")


def spy(start: str = "2007-10-01", end: str = "2009-04-01") -> pd.DataFrame:
    df = sample()
    sel = df[(df["symbol"] == "SPY") & (df["ts"] >= start) & (df["ts"] < end)]
    return sel.reset_index(drop=True)


def fill(side: Side, qty: float, price: float, ts: datetime, symbol: str = "SPY") -> Fill:
    return Fill(client_order_id="x", symbol=symbol, side=side, quantity=qty, price=price, ts=ts)


# ---------------------------------------------------------------------- audit in a real store


def test_every_decision_and_control_action_lands_in_a_verified_audit_chain(tmp_path: Path) -> None:
    store = DuckDBRelationalStore(tmp_path / "audit.duckdb")
    limits = RiskLimits(max_position=100, reduce_drawdown_pct=5, halt_drawdown_pct=15)
    risk = RiskManager(limits, audit=store)
    bars = spy()
    t0 = bars["ts"].iloc[0].to_pydatetime()
    risk.sync_portfolio(Portfolio(cash=20_000.0, ts=t0))
    risk.mark({"SPY": float(bars["close"].iloc[0])}, t0)
    ok = risk.check(Order(symbol="SPY", side=Side.BUY, quantity=100, ts=t0))
    refused = risk.check(Order(symbol="SPY", side=Side.BUY, quantity=101, ts=t0))
    assert ok.approved
    assert not refused.approved
    risk.on_fill(fill(Side.BUY, 100, float(bars["close"].iloc[0]), t0))
    for ts, close in zip(bars["ts"], bars["close"], strict=True):  # the 2008 crash: reduce, then halt
        risk.mark({"SPY": float(close)}, ts.to_pydatetime())
    assert risk.state is TradingState.HALTED
    with pytest.raises(RiskLimitError, match="only an admin"):
        risk.set_limits(limits.replace(halt_drawdown_pct=50), TRADER)
    risk.kill_switch(TRADER, "desk review")
    risk.resume(ADMIN, "reviewed; loss accepted")
    assert risk.state is TradingState.NORMAL

    records = store.audit_log()
    actions = [r.action for r in records]
    assert actions[:2] == ["risk.decision", "risk.decision"]
    moves = [(r.payload["from"], r.payload["to"]) for r in records if r.action == "risk.state"]
    assert moves[0] == ("normal", "reducing")
    assert all(a[1] == b[0] for a, b in itertools.pairwise(moves))  # every change recorded
    assert ("reducing", "halted") in moves
    assert moves[-1] == ("halted", "normal")  # the admin's resume
    # Already halted: the kill switch adds its own cause but no state change; the resume changes state.
    assert actions[-4:] == ["risk.limits_change_refused", "risk.kill_switch", "risk.resume", "risk.state"]
    decision = records[1].payload
    assert decision["approved"] is False
    assert decision["order"]["quantity"] == 101
    assert decision["order"]["symbol"] == "SPY"
    assert decision["reasons"][0].startswith("max_position")
    assert decision["state"] == "normal"
    assert decision["limits_hash"] == limits.config_hash()
    assert records[0].payload["decision_id"] == ok.decision_id
    halted = next(r.payload for r in records if r.action == "risk.state" and r.payload["to"] == "halted")
    assert halted["why"].startswith("halt_drawdown_pct")
    refused_change = records[-4]
    assert refused_change.actor == "bob"
    assert refused_change.payload["changes"] == {"halt_drawdown_pct": {"from": 15.0, "to": 50.0}}
    assert store.verify_audit_chain() == []
    store.close()


def test_an_audit_write_that_fails_issues_no_approval(tmp_path: Path) -> None:
    store = DuckDBRelationalStore(tmp_path / "audit.duckdb")
    risk = RiskManager(RiskLimits(), audit=store)
    store.close()
    with pytest.raises(Exception, match="closed"):
        risk.check(Order(symbol="SPY", side=Side.BUY, quantity=1, ts=START))


# ---------------------------------------------------------------------- state machine on real prices


def test_drawdown_reduces_then_halts_and_only_an_admin_resumes() -> None:
    risk = RiskManager(RiskLimits(reduce_drawdown_pct=10, halt_drawdown_pct=25))
    bars = spy()
    t0, p0 = bars["ts"].iloc[0].to_pydatetime(), float(bars["close"].iloc[0])
    risk.sync_portfolio(Portfolio(cash=100_000.0, ts=t0))
    risk.on_fill(fill(Side.BUY, 600, p0, t0))
    equity, peak, seen = 100_000.0, 100_000.0, []
    for ts, close in zip(bars["ts"], bars["close"], strict=True):
        state = risk.mark({"SPY": float(close)}, ts.to_pydatetime())
        equity = 100_000.0 + 600 * (float(close) - p0)
        peak = max(peak, equity)
        dd = 100 * (1 - equity / peak)
        if state not in seen:
            seen.append(state)
            if state is TradingState.REDUCING:
                assert 10 <= dd < 25
            if state is TradingState.HALTED:
                assert dd >= 25
    assert seen == [TradingState.NORMAL, TradingState.REDUCING, TradingState.HALTED]
    now = bars["ts"].iloc[-1].to_pydatetime()
    assert not risk.check(Order(symbol="SPY", side=Side.BUY, quantity=1, ts=now)).approved
    assert risk.check(Order(symbol="SPY", side=Side.SELL, quantity=600, ts=now)).approved
    assert not risk.check(Order(symbol="SPY", side=Side.SELL, quantity=601, ts=now)).approved
    with pytest.raises(RiskLimitError, match="only an admin"):
        risk.resume(TRADER, "please")
    risk.resume(ADMIN, "accept the loss")
    assert risk.state is TradingState.NORMAL  # peak re-based to equity now
    assert risk.check(Order(symbol="SPY", side=Side.BUY, quantity=1, ts=now)).approved


def test_daily_loss_halts_until_the_next_day() -> None:
    risk = RiskManager(RiskLimits(daily_loss_pct=3))
    day = datetime(2020, 3, 9, 15, tzinfo=UTC)
    risk.sync_portfolio(
        Portfolio(
            cash=0.0,
            positions={"SPY": Position(symbol="SPY", quantity=100, avg_cost=300, current_price=300)},
            ts=day,
        )
    )
    assert risk.mark({"SPY": 300.0}, day) is TradingState.NORMAL
    assert risk.mark({"SPY": 292.0}, day + timedelta(hours=1)) is TradingState.NORMAL  # -2.7 %
    assert risk.mark({"SPY": 290.0}, day + timedelta(hours=2)) is TradingState.HALTED  # -3.3 %
    assert risk.mark({"SPY": 299.0}, day + timedelta(hours=3)) is TradingState.HALTED  # sticky within the day
    assert risk.mark({"SPY": 295.0}, day + timedelta(days=1)) is TradingState.NORMAL  # vs yesterday's 299
    assert risk.mark({"SPY": 285.0}, day + timedelta(days=1, hours=1)) is TradingState.HALTED


def test_kill_switch_needs_a_trading_role() -> None:
    risk = RiskManager(RiskLimits())
    with pytest.raises(RiskLimitError, match="viewer"):
        risk.kill_switch(VIEWER, "curious")
    assert risk.state is TradingState.NORMAL
    risk.kill_switch(TRADER, "fat finger upstream")
    assert risk.state is TradingState.HALTED
    assert "fat finger upstream" in risk.halt_reasons[0]
    with pytest.raises(ConfigError, match="reason"):
        risk.kill_switch(TRADER, " ")
    with pytest.raises(ConfigError, match="Actor"):
        risk.resume("alice", "x")  # type: ignore[arg-type]


def test_limit_changes_need_an_admin_and_apply_at_once() -> None:
    risk = RiskManager(RiskLimits(max_position=10))
    order = Order(symbol="SPY", side=Side.BUY, quantity=20, ts=START)
    assert not risk.check(order).approved
    with pytest.raises(RiskLimitError, match="only an admin"):
        risk.set_limits(RiskLimits(max_position=50), TRADER)
    assert risk.limits.max_position == 10
    with pytest.raises(ConfigError, match="RiskLimits"):
        risk.set_limits({"max_position": 50}, ADMIN)  # type: ignore[arg-type]
    risk.set_limits(RiskLimits(max_position=50), ADMIN)
    assert risk.check(order).approved


# ---------------------------------------------------------------------- exits


def test_stop_loss_and_take_profit_exits_are_issued_once() -> None:
    risk = RiskManager(RiskLimits(stop_loss_pct=10, take_profit_pct=20))
    bars = spy()
    t0, p0 = bars["ts"].iloc[0].to_pydatetime(), float(bars["close"].iloc[0])
    risk.sync_portfolio(Portfolio(cash=100_000.0, ts=t0))
    risk.on_fill(fill(Side.BUY, 50, p0, t0))
    risk.mark({"SPY": p0}, t0)
    assert risk.protective_orders() == []
    exits: list[tuple[datetime, Order]] = []
    for ts, close in zip(bars["ts"], bars["close"], strict=True):
        risk.mark({"SPY": float(close)}, ts.to_pydatetime())
        exits += [(ts, o) for o in risk.protective_orders()]
    assert len(exits) == 1  # issued once while the position is unchanged
    ts, exit_order = exits[0]
    first_breach = bars[bars["close"] <= p0 * 0.9].iloc[0]
    assert ts == first_breach["ts"]
    assert (exit_order.side, exit_order.quantity) == (Side.SELL, 50)
    assert risk.check(exit_order).approved
    # A short with explicit levels: the take-profit below the entry.
    risk.on_fill(fill(Side.SELL, 50, float(first_breach["close"]), ts.to_pydatetime()))
    risk.on_fill(fill(Side.SELL, 10, 100.0, ts.to_pydatetime()))
    risk.set_protection("SPY", stop_loss=120.0, take_profit=90.0)
    risk.mark({"SPY": 89.0}, ts.to_pydatetime())
    (cover,) = risk.protective_orders()
    assert (cover.side, cover.quantity) == (Side.BUY, 10)
    with pytest.raises(RiskLimitError, match="no open position"):
        risk.set_protection("QQQ", stop_loss=1.0)


def test_exits_take_the_callers_ids_and_skipped_or_refused_exits_come_again() -> None:
    risk = RiskManager(RiskLimits(stop_loss_pct=10))
    t0 = START
    risk.sync_portfolio(Portfolio(cash=100_000.0, ts=t0))
    risk.on_fill(fill(Side.BUY, 50, 100.0, t0))
    risk.mark({"SPY": 85.0}, t0 + timedelta(hours=1))
    # An order already working on SPY: the exit is left for later and not remembered.
    assert risk.protective_orders(exclude={"SPY"}) == []
    (first,) = risk.protective_orders(lambda sym: f"engine-{sym}-1")
    assert first.client_order_id == "engine-SPY-1"
    assert risk.protective_orders(lambda sym: f"engine-{sym}-2") == []  # issued once
    # The exit is refused (an admin has just taken SPY off the list): it must come again under a new id.
    risk.set_limits(RiskLimits(stop_loss_pct=10, allowed_symbols=("QQQ",)), ADMIN)
    paper = PaperExchange(PaperConfig(symbols=("SPY",), start=START, end=END), bars=sample())
    with pytest.raises(RiskLimitError, match="allowed_symbols"):
        asyncio.run(risk.submit(first, paper))  # refused before the venue
    (again,) = risk.protective_orders(lambda sym: f"engine-{sym}-3")
    assert again.client_order_id == "engine-SPY-3"
    assert (again.side, again.quantity) == (Side.SELL, 50)


# ---------------------------------------------------------------------- submit through the paper exchange


def test_submit_sends_approved_orders_and_refuses_the_rest_before_the_venue() -> None:
    paper = PaperExchange(
        PaperConfig(symbols=("SPY", "AAPL"), start=START, end=END, fees=BpsFees(commission_bps=1.0)),
        bars=sample(),
    )
    risk = RiskManager(
        RiskLimits(allowed_symbols=("SPY",), max_notional=20_000, max_leverage=1.0),
        instruments={"SPY": AssetClass.ETF},
    )

    async def run() -> None:
        async with paper:
            paper.run(1)
            risk.sync_portfolio(paper.portfolio)
            closes = sample()
            last = closes[(closes["symbol"] == "SPY") & (closes["ts"] < paper.clock.now())]["close"].iloc[-1]
            risk.mark({"SPY": float(last)}, paper.clock.now())
            buy = Order(symbol="SPY", side=Side.BUY, quantity=100, ts=paper.clock.now())
            result = await risk.submit(buy, paper)
            assert result.status is OrderStatus.ACCEPTED
            with pytest.raises(RiskLimitError, match="allowed_symbols") as info:
                await risk.submit(
                    Order(symbol="AAPL", side=Side.BUY, quantity=1, ts=paper.clock.now()), paper
                )
            assert info.value.limit == "allowed_symbols"
            too_big = Order(symbol="SPY", side=Side.BUY, quantity=1_000, ts=paper.clock.now())
            with pytest.raises(RiskLimitError, match="max_notional"):
                await risk.submit(too_big, paper)
            assert set(paper.engine.orders) == {buy.client_order_id}  # the refused ones never reached it
            paper.run(1)
            for f in paper.fills:
                risk.on_fill(f)
                risk.on_fill(f)  # booked once per fill id
            assert risk.positions == {"SPY": 100.0}
            assert risk.cash == pytest.approx(paper.portfolio.cash)

    asyncio.run(run())


def test_an_approval_does_not_survive_a_change_to_its_order() -> None:
    risk = RiskManager(RiskLimits(max_position=10))
    order = Order(symbol="SPY", side=Side.BUY, quantity=10, ts=START)
    decision = risk.check(order)
    verify_approval(order, decision.approval)
    with pytest.raises(RiskLimitError, match="differs from the order"):
        verify_approval(order.model_copy(update={"quantity": 1_000.0}), decision.approval)


def test_bad_inputs_are_refused_clearly() -> None:
    with pytest.raises(ConfigError, match="RiskLimits"):
        RiskManager({"max_position": 1})  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="asset class"):
        RiskManager(RiskLimits(), instruments={"SPY": "bond"})  # type: ignore[dict-item]
    risk = RiskManager(RiskLimits())
    with pytest.raises(DataFormatError, match="positive finite"):
        risk.mark({"SPY": float("nan")}, START)
    with pytest.raises(ConfigError, match="takes an Order"):
        risk.check({"symbol": "SPY"})  # type: ignore[arg-type]
    with pytest.raises(DataFormatError, match="Portfolio"):
        risk.sync_portfolio({"cash": 1.0})  # type: ignore[arg-type]


def test_leverage_limits_need_a_synced_portfolio() -> None:
    risk = RiskManager(RiskLimits(max_leverage=1.0))
    risk.mark({"SPY": 100.0}, START)
    decision = risk.check(Order(symbol="SPY", side=Side.BUY, quantity=1, ts=START))
    assert not decision.approved
    assert "sync_portfolio" in decision.reasons[0]


# ---------------------------------------------------------------------- the event backtester


class BuyEveryBar(Strategy):
    def on_bar(self, ctx) -> None:  # type: ignore[no-untyped-def]
        self.buy(10)


def test_event_backtest_passes_every_order_through_the_risk_manager() -> None:
    bars = spy("2007-01-01", "2008-01-01")
    config = EventConfig(initial_cash=1_000_000.0)
    plain = run_event_backtest(bars, BuyEveryBar(), config)
    audit: list[str] = []

    class Sink:
        def append_audit(self, actor, action, payload=None, *, ts=None):  # type: ignore[no-untyped-def]
            audit.append(action)

    risk = RiskManager(RiskLimits(max_position=200), audit=Sink())
    limited = run_event_backtest(bars, BuyEveryBar(), config, risk=risk)
    assert plain.units.max() == pytest.approx(10 * (len(bars) - 1))
    assert limited.units.max() == pytest.approx(200)
    n_refused = len(bars) - 20
    assert len(limited.refused) == n_refused
    assert (limited.orders["status"] == "rejected").sum() == n_refused
    assert limited.orders.loc[limited.orders["status"] == "rejected", "message"].str.contains("risk").all()
    assert limited.refused["reasons"].str.startswith("max_position").all()
    assert audit.count("risk.decision") == len(bars)
    assert len(plain.refused) == 0
    # With limits that never bind the result is the plain one, bar for bar.
    wide = run_event_backtest(bars, BuyEveryBar(), config, risk=RiskLimits())
    np.testing.assert_array_equal(wide.equity, plain.equity)


def test_event_backtest_halts_and_exits_on_the_2008_crash() -> None:
    class Hold(Strategy):
        def on_bar(self, ctx) -> None:  # type: ignore[no-untyped-def]
            if ctx.t == 0:
                self.order_target_percent(1.0)
            elif ctx.t % 20 == 0 and ctx.position == 0:
                self.buy(5)

    bars = spy("2007-10-01", "2009-04-01")
    risk = RiskManager(RiskLimits(stop_loss_pct=15, halt_drawdown_pct=14))
    result = run_event_backtest(bars, Hold(), EventConfig(initial_cash=100_000.0), risk=risk)
    assert risk.state is TradingState.HALTED
    assert result.units[-1] == 0  # the stop-loss exit went through while halted
    assert len(result.refused) > 0
    assert result.refused["reasons"].str.startswith("trading_state").all()
    assert result.final_equity > 0.8 * 100_000


def test_compiled_strategies_cannot_be_risk_checked() -> None:
    import numba

    @numba.njit(cache=False)
    def decide(t, o, h, low, c, v, account, params, state, orders):  # type: ignore[no-untyped-def]
        return 0

    with pytest.raises(ConfigError, match="Python Strategy"):
        run_event_backtest(spy(), CompiledStrategy(decide), risk=RiskLimits())
