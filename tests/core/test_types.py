"""Domain types: validation errors, UTC handling and the accounting identities of fills."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alphaloom.core import (
    Bar,
    DataFormatError,
    Fill,
    Order,
    OrderResult,
    OrderStatus,
    Portfolio,
    Position,
    Side,
    SignalAction,
    TradingSignal,
)

T0 = datetime(2020, 1, 2, 14, 30, tzinfo=UTC)


def test_bar_converts_aware_timestamps_to_utc() -> None:
    ny = timezone(timedelta(hours=-5))
    bar = Bar(symbol="SPY", ts=datetime(2020, 1, 2, 9, 30, tzinfo=ny), open=1, high=2, low=0.5, close=1.5)
    assert bar.ts == T0
    assert bar.ts.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"ts": datetime(2020, 1, 2)}, "no timezone"),  # noqa: DTZ001 - the point of the test
        ({"high": 0.9}, "OHLC inconsistent"),
        ({"low": 1.6}, "OHLC inconsistent"),
        ({"close": -1.0}, "close"),
        ({"open": float("nan")}, "open"),
        ({"volume": -5.0}, "volume"),
        ({"symbol": ""}, "symbol"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_bar_rejects_bad_values_with_a_clear_message(changes: dict, fragment: str) -> None:
    fields = {"symbol": "SPY", "ts": T0, "open": 1.0, "high": 2.0, "low": 0.5, "close": 1.5} | changes
    with pytest.raises(DataFormatError, match=fragment) as info:
        Bar(**fields)
    assert str(info.value).startswith("invalid Bar")


def test_bar_is_immutable() -> None:
    bar = Bar(symbol="SPY", ts=T0, open=1, high=2, low=0.5, close=1.5)
    with pytest.raises(ValueError, match="frozen"):
        bar.close = 3.0  # type: ignore[misc]


def test_signal_direction_and_stop_must_agree() -> None:
    ok = TradingSignal(
        symbol="SPY", action="BUY", confidence=0.7, position_size=0.5, target_price=110, stop_loss=95,
        ts=T0, model_version="v1",
    )  # fmt: skip
    assert ok.action is SignalAction.BUY
    with pytest.raises(DataFormatError, match="BUY signal needs position_size >= 0"):
        TradingSignal(
            symbol="SPY", action="BUY", confidence=0.7, position_size=-0.5, ts=T0, model_version="v"
        )
    with pytest.raises(DataFormatError, match="stop_loss < target_price"):
        TradingSignal(
            symbol="SPY", action="BUY", confidence=0.7, position_size=0.5, target_price=90, stop_loss=95,
            ts=T0, model_version="v",
        )  # fmt: skip
    with pytest.raises(DataFormatError, match="confidence"):
        TradingSignal(symbol="SPY", action="HOLD", confidence=1.5, position_size=0, ts=T0, model_version="v")


def test_order_prices_must_match_its_type() -> None:
    with pytest.raises(DataFormatError, match="needs limit_price"):
        Order(symbol="SPY", side=Side.BUY, quantity=1, order_type="limit", ts=T0)
    with pytest.raises(DataFormatError, match="takes no limit_price"):
        Order(symbol="SPY", side=Side.BUY, quantity=1, limit_price=10, ts=T0)
    with pytest.raises(DataFormatError, match="quantity"):
        Order(symbol="SPY", side=Side.BUY, quantity=0, ts=T0)
    a, b = (Order(symbol="SPY", side=Side.SELL, quantity=2, ts=T0) for _ in range(2))
    assert a.client_order_id != b.client_order_id
    assert a.signed_quantity == -2


def test_order_result_fills_must_add_up() -> None:
    fill = Fill(client_order_id="c1", symbol="SPY", side="buy", quantity=2, price=10, ts=T0)
    with pytest.raises(DataFormatError, match="sum of fills"):
        OrderResult(
            client_order_id="c1", status="filled", filled_quantity=3, avg_fill_price=10, fills=(fill,), ts=T0
        )
    res = OrderResult(
        client_order_id="c1", status="filled", filled_quantity=2, avg_fill_price=10, fills=(fill,), ts=T0
    )
    assert res.status.is_terminal
    assert not OrderStatus.ACCEPTED.is_terminal


def test_portfolio_positions_cannot_be_mutated_and_keys_must_match() -> None:
    pos = Position(symbol="SPY", quantity=1, avg_cost=10, current_price=11)
    pf = Portfolio(cash=100, positions={"SPY": pos}, ts=T0)
    assert pf.total_value == pytest.approx(111.0)
    with pytest.raises(TypeError):
        pf.positions["QQQ"] = pos  # type: ignore[index]
    with pytest.raises(DataFormatError, match="holds a position in 'SPY'"):
        Portfolio(cash=100, positions={"QQQ": pos}, ts=T0)
    assert pf.model_dump()["positions"]["SPY"]["quantity"] == 1.0


def test_position_flip_realises_the_closed_part() -> None:
    pos = Position(symbol="X", current_price=10)
    pos = pos.apply_fill(Fill(client_order_id="a", symbol="X", side="buy", quantity=10, price=10, ts=T0))
    pos = pos.apply_fill(Fill(client_order_id="b", symbol="X", side="sell", quantity=15, price=12, ts=T0))
    assert pos.quantity == -5
    assert pos.realized_pnl == pytest.approx(20.0)
    assert pos.avg_cost == 12
    pos = pos.apply_fill(Fill(client_order_id="c", symbol="X", side="buy", quantity=5, price=11, ts=T0))
    assert pos.quantity == 0
    assert pos.avg_cost == 0
    assert pos.realized_pnl == pytest.approx(25.0)


fills_strategy = st.lists(
    st.tuples(
        st.sampled_from([Side.BUY, Side.SELL]),
        st.floats(0.01, 1_000, allow_nan=False),
        st.floats(0.5, 500, allow_nan=False),
        st.floats(0, 5, allow_nan=False),
    ),
    min_size=1,
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(fills=fills_strategy, mark=st.floats(0.5, 500, allow_nan=False))
def test_fills_conserve_money(fills: list[tuple[Side, float, float, float]], mark: float) -> None:
    """Cash, positions and PnL always reconcile: value = initial cash + realised + unrealised - fees."""
    cash0 = 1_000_000.0
    pf = Portfolio(cash=cash0, ts=T0)
    fees = 0.0
    net_qty = 0.0
    for i, (side, qty, px, fee) in enumerate(fills):
        before = pf.model_copy(
            update={"positions": {k: p.mark(px) for k, p in pf.positions.items()}}
        ).total_value
        fill = Fill(client_order_id=f"o{i}", symbol="X", side=side, quantity=qty, price=px, fee=fee, ts=T0)
        pf = pf.apply_fill(fill)
        fees += fee
        net_qty += side.sign * qty
        # Trading at the mark price changes the value by exactly the fee.
        assert math.isclose(pf.total_value, before - fee, rel_tol=1e-9, abs_tol=1e-6)
    pos = pf.positions["X"].mark(mark)
    assert math.isclose(pos.quantity, net_qty, rel_tol=1e-9, abs_tol=1e-9)
    marked = pf.model_copy(update={"positions": {"X": pos}})
    identity = cash0 + pos.realized_pnl + pos.unrealized_pnl - fees
    assert math.isclose(marked.total_value, identity, rel_tol=1e-9, abs_tol=1e-5)


def test_quote_trade_and_account_validate() -> None:
    from alphaloom.core import Account, Quote, Trade

    q = Quote(symbol="EURUSD", ts=T0, bid=1.1000, ask=1.1002, ts_received=T0 + timedelta(milliseconds=5))
    assert q.mid == pytest.approx(1.1001)
    assert q.spread == pytest.approx(0.0002)
    crossed = Quote(symbol="EURUSD", ts=T0, bid=1.1002, ask=1.1000)  # real feeds send these; flagged later
    assert crossed.spread < 0
    with pytest.raises(DataFormatError, match="bid"):
        Quote(symbol="EURUSD", ts=T0, bid=0.0, ask=1.1)
    t = Trade(symbol="BTCUSD", ts=T0, price=50_000, size=0.5, side="sell", trade_id="42")
    assert t.side is Side.SELL
    with pytest.raises(DataFormatError, match="size"):
        Trade(symbol="BTCUSD", ts=T0, price=50_000, size=0.0)
    with pytest.raises(DataFormatError, match="no timezone"):
        Account(account_id="a", cash=1.0, equity=1.0, ts=datetime(2020, 1, 1))  # noqa: DTZ001
