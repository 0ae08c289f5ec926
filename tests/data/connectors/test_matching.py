"""The matching engine: pinned fills for each order type, then hypothesis properties over random tapes."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alphaloom.core.exceptions import ConnectorError, DataFormatError
from alphaloom.core.types import (
    Bar,
    Order,
    OrderStatus,
    OrderType,
    Portfolio,
    Quote,
    Side,
    TimeInForce,
    Trade,
)
from alphaloom.data.connectors.matching import FeeModel, MatchingConfig, MatchingEngine
from alphaloom.data.connectors.paper import BpsFees

T0 = datetime(2024, 3, 4, tzinfo=UTC)
DAY = timedelta(days=1)
NO_CAP = MatchingConfig(participation_rate=None)


def bar(
    k: int, o: float, h: float, lo: float, c: float, volume: float | None = 1e6, symbol: str = "SPY"
) -> Bar:
    return Bar(symbol=symbol, ts=T0 + k * DAY, open=o, high=h, low=lo, close=c, volume=volume)


def order(
    side: Side = Side.BUY, qty: float = 10.0, kind: OrderType = OrderType.MARKET, **kw: object
) -> Order:
    return Order(symbol="SPY", side=side, quantity=qty, order_type=kind, ts=T0, **kw)  # type: ignore[arg-type]


# ---------------------------------------------------------------------- pinned behaviour


def test_market_order_fills_at_the_next_open_never_the_bar_it_saw() -> None:
    engine = MatchingEngine(NO_CAP)
    engine.on_bar(bar(0, 100, 105, 99, 104))
    o = order()
    engine.submit(o, now=T0 + DAY)  # decided at the close of bar 0
    assert engine.on_bar(bar(0, 100, 105, 99, 104)) == []  # bar 0 again (same ts) cannot fill it
    (fill,) = engine.on_bar(bar(1, 103, 106, 102, 105))
    assert fill.price == 103
    assert fill.quantity == 10
    assert fill.ts == T0 + DAY
    assert engine.get(o.client_order_id).status is OrderStatus.FILLED
    assert fill.fill_id == f"{o.client_order_id}-1"


def test_limit_buy_fills_at_limit_or_better_on_a_gap() -> None:
    engine = MatchingEngine(NO_CAP)
    a = engine.submit(order(kind=OrderType.LIMIT, limit_price=100.0), now=T0)
    b = engine.submit(order(kind=OrderType.LIMIT, limit_price=95.0), now=T0)
    c = engine.submit(order(side=Side.SELL, kind=OrderType.LIMIT, limit_price=104.0), now=T0)
    fills = engine.on_bar(bar(0, 102, 103, 99, 101))
    assert [(f.client_order_id, f.price) for f in fills] == [(a.client_order_id, 100.0)]
    fills = engine.on_bar(bar(1, 94, 106, 93, 105))  # gaps below 95, trades up through 104
    assert [(f.client_order_id, f.price) for f in fills] == [
        (b.client_order_id, 94.0),
        (c.client_order_id, 104.0),
    ]


def test_stop_orders_trigger_at_the_stop_or_worse_on_a_gap_with_slippage() -> None:
    fees = BpsFees(commission_bps=0.0, slippage_bps=10.0)
    engine = MatchingEngine(NO_CAP, fees)
    buy_stop = engine.submit(order(kind=OrderType.STOP, stop_price=105.0), now=T0)
    sell_stop = engine.submit(order(side=Side.SELL, kind=OrderType.STOP, stop_price=95.0), now=T0)
    assert engine.on_bar(bar(0, 100, 104, 96, 101)) == []
    (f1,) = engine.on_bar(bar(1, 101, 107, 100, 106))
    assert f1.client_order_id == buy_stop.client_order_id
    assert f1.price == pytest.approx(105.0 * 1.001)
    (f2,) = engine.on_bar(bar(2, 90, 92, 88, 91))  # gaps through the sell stop: filled at the open, worse
    assert f2.client_order_id == sell_stop.client_order_id
    assert f2.price == pytest.approx(90.0 * 0.999)


def test_stop_limit_triggers_then_works_as_a_limit() -> None:
    engine = MatchingEngine(NO_CAP)
    o = engine.submit(order(kind=OrderType.STOP_LIMIT, stop_price=105.0, limit_price=106.0), now=T0)
    assert engine.on_bar(bar(0, 108, 110, 107, 109)) == []  # triggered at 108 > limit: no fill yet
    assert engine.get(o.client_order_id).triggered
    assert engine.on_bar(bar(1, 108, 109, 106.5, 107)) == []
    (fill,) = engine.on_bar(bar(2, 107, 107.5, 105, 106))
    assert fill.price == 106.0


def test_partial_fills_are_capped_by_participation_and_shared_in_submission_order() -> None:
    engine = MatchingEngine(MatchingConfig(participation_rate=0.1))
    first = engine.submit(order(qty=150.0), now=T0)
    second = engine.submit(order(qty=100.0), now=T0)
    fills = engine.on_bar(bar(0, 100, 101, 99, 100, volume=1000.0))  # capacity 100
    assert [(f.client_order_id, f.quantity) for f in fills] == [(first.client_order_id, 100.0)]
    assert engine.get(first.client_order_id).status is OrderStatus.PARTIALLY_FILLED
    fills = engine.on_bar(bar(1, 100, 101, 99, 100, volume=1000.0))
    assert [(f.client_order_id, f.quantity) for f in fills] == [
        (first.client_order_id, 50.0),
        (second.client_order_id, 50.0),
    ]
    assert engine.on_bar(bar(2, 100, 101, 99, 100, volume=0.0)) == []  # no volume, no fill
    (last,) = engine.on_bar(bar(3, 100, 101, 99, 100, volume=None))  # unknown volume: no cap
    assert last.quantity == 50.0
    result = engine.get(second.client_order_id).to_result()
    assert result.status is OrderStatus.FILLED
    assert result.filled_quantity == 100.0


def test_minimum_commission_is_charged_once_per_order_across_partial_fills() -> None:
    fees = BpsFees(commission_bps=10.0, slippage_bps=0.0, min_commission=5.0)
    engine = MatchingEngine(MatchingConfig(participation_rate=0.5), fees)
    o = engine.submit(order(qty=40.0), now=T0)
    fills = []
    for k in range(4):
        fills += engine.on_bar(bar(k, 100, 100, 100, 100, volume=20.0))
    assert [f.quantity for f in fills] == [10.0, 10.0, 10.0, 10.0]
    assert math.fsum(f.fee for f in fills) == pytest.approx(5.0)  # 40 * 100 * 10 bps = 4 < min 5
    assert engine.get(o.client_order_id).fees == pytest.approx(5.0)


def test_latency_in_bars_and_seconds_delays_acceptance() -> None:
    engine = MatchingEngine(MatchingConfig(participation_rate=None, latency_bars=2))
    o = engine.submit(order(), now=T0)
    assert engine.get(o.client_order_id).status is OrderStatus.NEW
    assert engine.on_bar(bar(0, 100, 101, 99, 100)) == []
    assert engine.on_bar(bar(1, 101, 102, 100, 101)) == []
    (fill,) = engine.on_bar(bar(2, 102, 103, 101, 102))
    assert fill.price == 102
    rec = engine.get(o.client_order_id)
    assert rec.accepted_at == T0 + 2 * DAY
    timed = MatchingEngine(MatchingConfig(participation_rate=None, latency_s=36 * 3600))
    o2 = timed.submit(order(), now=T0)
    assert timed.on_bar(bar(0, 100, 101, 99, 100)) == []
    assert timed.on_bar(bar(1, 101, 102, 100, 101)) == []  # T0 + 1 day < T0 + 36 h
    assert timed.on_bar(bar(2, 102, 103, 101, 102))[0].client_order_id == o2.client_order_id


@pytest.mark.parametrize(
    ("tif", "expected_status", "filled"),
    [
        (TimeInForce.IOC, OrderStatus.CANCELLED, 100.0),
        (TimeInForce.FOK, OrderStatus.CANCELLED, 0.0),
        (TimeInForce.GTC, OrderStatus.PARTIALLY_FILLED, 100.0),
        (TimeInForce.DAY, OrderStatus.PARTIALLY_FILLED, 100.0),
    ],
)
def test_time_in_force(tif: TimeInForce, expected_status: OrderStatus, filled: float) -> None:
    engine = MatchingEngine(MatchingConfig(participation_rate=0.1))
    o = engine.submit(order(qty=150.0, time_in_force=tif), now=T0)
    engine.on_bar(bar(0, 100, 101, 99, 100, volume=1000.0))
    rec = engine.get(o.client_order_id)
    assert rec.status is expected_status
    assert rec.filled_quantity == filled
    if tif is TimeInForce.DAY:
        engine.on_bar(bar(1, 100, 101, 99, 100, volume=1000.0))
        assert engine.get(o.client_order_id).status is OrderStatus.CANCELLED
        assert "DAY" in engine.get(o.client_order_id).message


def test_quotes_and_trades_fill_at_the_touch_capped_by_size() -> None:
    engine = MatchingEngine(NO_CAP)
    buy = engine.submit(order(qty=5.0), now=T0)
    sell = engine.submit(order(side=Side.SELL, qty=5.0, kind=OrderType.LIMIT, limit_price=100.2), now=T0)
    fills = engine.on_quote(Quote(symbol="SPY", ts=T0, bid=100.0, ask=100.1, ask_size=3.0, bid_size=9.0))
    assert [(f.client_order_id, f.price, f.quantity) for f in fills] == [(buy.client_order_id, 100.1, 3.0)]
    fills = engine.on_trade(Trade(symbol="SPY", ts=T0 + DAY, price=100.3, size=4.0))
    assert [(f.client_order_id, f.price, f.quantity) for f in fills] == [
        (buy.client_order_id, 100.3, 2.0),
        (sell.client_order_id, 100.3, 2.0),
    ]


def test_cancel_resubmit_reject_and_event_order() -> None:
    engine = MatchingEngine(NO_CAP)
    o = order(kind=OrderType.LIMIT, limit_price=50.0)
    first = engine.submit(o, now=T0)
    assert engine.submit(o, now=T0 + DAY) is first  # same client id: same order, never a second one
    cancelled = engine.cancel(o.client_order_id, T0)
    assert cancelled.status is OrderStatus.CANCELLED
    assert engine.cancel(o.client_order_id, T0 + DAY) is cancelled  # terminal: unchanged
    assert engine.working() == []
    assert engine.on_bar(bar(0, 50, 51, 40, 45)) == []
    rejected = engine.reject(order(), T0, "insufficient funds")
    assert rejected.to_result().status is OrderStatus.REJECTED
    with pytest.raises(ConnectorError, match="no order"):
        engine.cancel("nope", T0)
    with pytest.raises(DataFormatError, match="time order"):
        engine.on_bar(bar(-1, 50, 51, 40, 45))
    with pytest.raises(ConnectorError, match="fill_price"):
        MatchingEngine(fees=object())  # type: ignore[arg-type]
    assert isinstance(BpsFees(), FeeModel)


# ---------------------------------------------------------------------- properties


@st.composite
def tapes(draw: st.DrawFn) -> list[Bar]:
    n = draw(st.integers(1, 25))
    price = draw(st.floats(10.0, 500.0))
    out = []
    for k in range(n):
        o = price * math.exp(draw(st.floats(-0.1, 0.1)))
        c = o * math.exp(draw(st.floats(-0.1, 0.1)))
        h = max(o, c) * (1 + draw(st.floats(0.0, 0.05)))
        lo = min(o, c) * (1 - draw(st.floats(0.0, 0.05)))
        vol = draw(st.one_of(st.none(), st.floats(0.0, 500.0)))
        out.append(bar(k, o, h, lo, c, volume=vol))
        price = c
    return out


@st.composite
def orders(draw: st.DrawFn) -> Order:
    kind = draw(st.sampled_from(list(OrderType)))
    side = draw(st.sampled_from(list(Side)))
    qty = draw(st.floats(0.5, 300.0))
    px = draw(st.floats(5.0, 800.0))
    kw: dict[str, object] = {}
    if kind in (OrderType.LIMIT, OrderType.STOP_LIMIT):
        kw["limit_price"] = px
    if kind in (OrderType.STOP, OrderType.STOP_LIMIT):
        kw["stop_price"] = draw(st.floats(5.0, 800.0))
    tif = draw(st.sampled_from(list(TimeInForce)))
    return Order(symbol="SPY", side=side, quantity=qty, order_type=kind, time_in_force=tif, ts=T0, **kw)  # type: ignore[arg-type]


@settings(max_examples=150, deadline=None)
@given(
    tape=tapes(),
    book=st.lists(st.tuples(orders(), st.integers(0, 24)), min_size=1, max_size=8),
    rate=st.one_of(st.none(), st.floats(0.01, 1.0)),
    latency=st.integers(0, 2),
    fees=st.builds(
        BpsFees,
        commission_bps=st.floats(0, 50),
        slippage_bps=st.floats(0, 50),
        min_commission=st.floats(0, 5),
    ),
)
def test_matching_properties(
    tape: list[Bar], book: list[tuple[Order, int]], rate: float | None, latency: int, fees: BpsFees
) -> None:
    engine = MatchingEngine(MatchingConfig(participation_rate=rate, latency_bars=latency), fees)
    submit_at = {o.client_order_id: T0 + k * DAY for o, k in book}
    portfolio = Portfolio(cash=1e6, ts=T0)
    fills = []
    pending = sorted(book, key=lambda item: item[1])
    for b in tape:
        while pending and T0 + pending[0][1] * DAY <= b.ts:
            o, k = pending.pop(0)
            engine.submit(o, now=T0 + k * DAY)
        # Each fill costs exactly its fee when positions are marked at the fill price.
        for f in engine.on_bar(b):
            before = _value_at(portfolio, f.symbol, f.price)
            portfolio = portfolio.apply_fill(f)
            after = _value_at(portfolio, f.symbol, f.price)
            assert before - after == pytest.approx(f.fee, rel=1e-9, abs=1e-6)
            # No look-ahead: never a bar before submission (or acceptance).
            rec = engine.get(f.client_order_id)
            assert f.ts >= submit_at[f.client_order_id]
            assert rec.accepted_at is not None
            assert f.ts >= rec.accepted_at
            # Prices: inside the bar for limits and never through the limit.
            o = rec.order
            if o.order_type is OrderType.LIMIT or o.order_type is OrderType.STOP_LIMIT:
                if o.side is Side.BUY:
                    assert f.price <= o.limit_price
                else:
                    assert f.price >= o.limit_price
                assert b.low - 1e-9 <= f.price <= b.high + 1e-9
            fills.append(f)
        if b.volume is not None and rate is not None:
            assert math.fsum(f.quantity for f in fills if f.ts == b.ts) <= rate * b.volume * (1 + 1e-9) + 1e-9
    for cid, rec in engine.orders.items():
        filled = math.fsum(f.quantity for f in fills if f.client_order_id == cid)
        assert filled <= rec.order.quantity * (1 + 1e-9)
        assert filled == pytest.approx(rec.filled_quantity)
        if rec.status is OrderStatus.FILLED:
            assert filled == pytest.approx(rec.order.quantity)
        if rec.order.time_in_force is TimeInForce.FOK:
            assert filled in (0.0, pytest.approx(rec.order.quantity))
        result = rec.to_result()
        assert result.filled_quantity == pytest.approx(filled)


def _value_at(portfolio: Portfolio, symbol: str, price: float) -> float:
    pos = portfolio.positions.get(symbol)
    return portfolio.cash + (pos.quantity * price if pos is not None else 0.0)


@settings(max_examples=50, deadline=None)
@given(tape=tapes(), book=st.lists(orders(), min_size=1, max_size=6))
def test_matching_is_deterministic(tape: list[Bar], book: list[Order]) -> None:
    def run() -> list[tuple[str, float, float, float]]:
        engine = MatchingEngine(MatchingConfig(participation_rate=0.3), BpsFees())
        for o in book:
            engine.submit(o, now=T0)
        return [(f.fill_id, f.quantity, f.price, f.fee) for b in tape for f in engine.on_bar(b)]

    assert run() == run()
