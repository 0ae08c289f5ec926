"""The order state machine: legal moves only, fills booked once, quantities that add up; deterministic ids."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alphaloom.core.exceptions import ConfigError, DataFormatError, OrderStateError
from alphaloom.core.types import Fill, Order, OrderResult, OrderStatus, Side
from alphaloom.execution.orders import LEGAL_TRANSITIONS, ManagedOrder, deterministic_client_order_id

T0 = datetime(2020, 3, 2, tzinfo=UTC)
S = OrderStatus


def _order(qty: float = 10.0, side: Side = Side.BUY) -> Order:
    return Order(symbol="SPY", side=side, quantity=qty, client_order_id="al-test", ts=T0)


def _fill(n: int, qty: float, side: Side = Side.BUY, price: float = 300.0) -> Fill:
    return Fill(
        client_order_id="al-test", fill_id=f"f{n}", symbol="SPY", side=side, quantity=qty, price=price, ts=T0
    )


def test_the_happy_path_walks_new_accepted_partial_filled() -> None:
    m = ManagedOrder(_order(10))
    m.accept("v-1")
    assert m.add_fill(_fill(1, 4))
    assert m.status is S.PARTIALLY_FILLED
    assert m.remaining == pytest.approx(6)
    assert m.add_fill(_fill(2, 6, price=310.0))
    assert m.status is S.FILLED
    assert m.history == [S.NEW, S.ACCEPTED, S.PARTIALLY_FILLED, S.FILLED]
    assert m.avg_fill_price == pytest.approx((4 * 300 + 6 * 310) / 10)
    assert m.remaining == 0.0


@pytest.mark.parametrize(
    ("path", "illegal"),
    [
        ([], S.PARTIALLY_FILLED),
        ([S.ACCEPTED, S.CANCELLED], S.ACCEPTED),
        ([S.REJECTED], S.ACCEPTED),
        ([S.ACCEPTED], S.NEW),
    ],
)
def test_illegal_moves_raise_and_change_nothing(path: list[OrderStatus], illegal: OrderStatus) -> None:
    m = ManagedOrder(_order())
    for status in path:
        m._move(status)
    before = (m.status, list(m.history))
    with pytest.raises(OrderStateError, match=f"illegal state change {m.status.value} -> {illegal.value}"):
        m._move(illegal)
    assert (m.status, m.history) == before


def test_a_fill_reported_twice_is_booked_once_and_overfills_are_refused() -> None:
    m = ManagedOrder(_order(10))
    m.accept()
    assert m.add_fill(_fill(1, 4))
    assert not m.add_fill(_fill(1, 4))
    assert m.filled_quantity == 4
    with pytest.raises(DataFormatError, match="above its quantity"):
        m.add_fill(_fill(2, 7))
    with pytest.raises(DataFormatError, match="does not belong"):
        m.add_fill(_fill(3, 1, side=Side.SELL))


def test_a_new_order_cannot_fill_before_it_is_accepted() -> None:
    with pytest.raises(OrderStateError, match="new -> partially_filled"):
        ManagedOrder(_order(10)).add_fill(_fill(1, 4))


def test_a_venue_report_that_skips_states_walks_the_legal_path() -> None:
    m = ManagedOrder(_order(10))
    result = OrderResult(
        client_order_id="al-test",
        venue_order_id="paper-7",
        status=S.FILLED,
        filled_quantity=10,
        avg_fill_price=300.0,
        fills=(_fill(1, 10),),
        ts=T0,
    )
    assert [f.fill_id for f in m.apply_result(result)] == ["f1"]
    assert m.history == [S.NEW, S.ACCEPTED, S.FILLED]
    assert m.venue_order_id == "paper-7"
    assert m.apply_result(result) == []  # the same report again changes nothing


def test_stale_reports_are_ignored_but_contradictions_raise_and_roll_back() -> None:
    m = ManagedOrder(_order(10))
    filled = OrderResult(
        client_order_id="al-test",
        status=S.FILLED,
        filled_quantity=10,
        avg_fill_price=300.0,
        fills=(_fill(1, 10),),
        ts=T0,
    )
    m.apply_result(filled)
    m.apply_result(OrderResult(client_order_id="al-test", status=S.ACCEPTED, ts=T0))  # older news
    assert m.status is S.FILLED
    with pytest.raises(OrderStateError, match="filled -> cancelled"):
        m.apply_result(OrderResult(client_order_id="al-test", status=S.CANCELLED, ts=T0))
    assert m.status is S.FILLED
    assert m.history == [S.NEW, S.ACCEPTED, S.FILLED]


def test_a_report_counting_fills_it_did_not_send_raises() -> None:
    m = ManagedOrder(_order(10))
    m.accept()
    report = OrderResult(
        client_order_id="al-test", status=S.PARTIALLY_FILLED, filled_quantity=3, avg_fill_price=300.0, ts=T0
    )
    with pytest.raises(OrderStateError, match="get_order"):
        m.apply_result(report)
    assert m.status is S.ACCEPTED


def test_from_venue_adopts_the_venues_state() -> None:
    result = OrderResult(
        client_order_id="al-test",
        status=S.PARTIALLY_FILLED,
        filled_quantity=4,
        avg_fill_price=300.0,
        fills=(_fill(1, 4),),
        ts=T0,
    )
    m = ManagedOrder.from_venue(_order(10), result)
    assert (m.status, m.filled_quantity, m.remaining, m.signed_remaining) == (S.PARTIALLY_FILLED, 4, 6, 6)


# ------------------------------------------------------------------ property test

events = st.lists(
    st.one_of(
        st.tuples(st.just("accept"), st.just(0.0)),
        st.tuples(st.just("cancel"), st.just(0.0)),
        st.tuples(st.just("reject"), st.just(0.0)),
        st.tuples(st.just("fill"), st.floats(min_value=0.01, max_value=12.0)),
        st.tuples(st.just("refill"), st.just(0.0)),
        st.tuples(st.sampled_from(list(S)), st.floats(min_value=0.0, max_value=12.0)),
    ),
    max_size=25,
)


@settings(max_examples=600, deadline=None)
@given(events, st.sampled_from([Side.BUY, Side.SELL]))
def test_random_event_sequences_never_reach_an_illegal_state(seq: list, side: Side) -> None:
    qty = 10.0
    m = ManagedOrder(_order(qty, side))
    n = 0
    for kind, x in seq:
        before = (m.status, dict(m.fills), list(m.history))
        try:
            if kind == "accept":
                m.accept()
            elif kind == "cancel":
                m.cancel()
            elif kind == "reject":
                m.reject("no")
            elif kind == "fill":
                n += 1
                m.add_fill(_fill(n, x, side=side))
            elif kind == "refill":
                if m.fills:
                    assert not m.add_fill(next(iter(m.fills.values())))
            else:  # a venue report: status kind, cumulative fills up to x
                fills = tuple(m.fills.values())
                have = math.fsum(f.quantity for f in fills)
                if x > have and kind in (S.PARTIALLY_FILLED, S.FILLED):
                    n += 1
                    fills += (_fill(n, x - have, side=side),)
                total = math.fsum(f.quantity for f in fills)
                m.apply_result(
                    OrderResult(
                        client_order_id="al-test",
                        status=kind,
                        filled_quantity=total,
                        avg_fill_price=300.0 if total > 0 else None,
                        fills=fills,
                        ts=T0,
                    )
                )
        except (OrderStateError, DataFormatError):
            assert (m.status, m.fills, m.history) == before  # a refused event changes nothing
        # Invariants after every event.
        for a, b in zip(m.history, m.history[1:], strict=False):
            assert b in LEGAL_TRANSITIONS[a]
        assert m.history[-1] is m.status
        filled = math.fsum(f.quantity for f in m.fills.values())
        assert filled == pytest.approx(m.filled_quantity)
        assert filled <= qty * (1 + 1e-9)
        assert (m.status is S.FILLED) == (filled >= qty * (1 - 1e-9) and S.FILLED in m.history)
        if m.status.is_terminal:
            assert m.remaining == 0.0
        else:
            assert m.remaining == pytest.approx(qty - filled)
        if m.fills:
            assert m.status in (S.PARTIALLY_FILLED, S.FILLED, S.CANCELLED)


# ------------------------------------------------------------------ client order ids


def test_client_order_ids_are_deterministic_and_distinct() -> None:
    a = deterministic_client_order_id("run1", T0, "SPY", 0)
    assert a == deterministic_client_order_id("run1", T0.astimezone(UTC), "SPY", 0)
    others = {
        deterministic_client_order_id("run2", T0, "SPY", 0),
        deterministic_client_order_id("run1", T0 + timedelta(days=1), "SPY", 0),
        deterministic_client_order_id("run1", T0, "AAPL", 0),
        deterministic_client_order_id("run1", T0, "SPY", 1),
    }
    assert a not in others
    assert len(others) == 4
    assert a.startswith("al-")
    assert len(a) == 35
    Order(symbol="SPY", side=Side.BUY, quantity=1, client_order_id=a, ts=T0)  # fits the Order type


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (("", T0, "SPY", 0), "run_id"),
        (("r", datetime(2020, 1, 1), "SPY", 0), "timezone"),  # noqa: DTZ001 - a naive time on purpose
        (("r", T0, "", 0), "symbol"),
        (("r", T0, "SPY", -1), "seq"),
    ],
)
def test_bad_id_inputs_are_refused(args: tuple, match: str) -> None:
    with pytest.raises((ConfigError, DataFormatError), match=match):
        deterministic_client_order_id(*args)
