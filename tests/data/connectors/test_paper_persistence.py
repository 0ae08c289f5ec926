"""The paper venue's journal: a venue reopened on its journal stands exactly where the last one left off."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from alphaloom.core.exceptions import ConfigError
from alphaloom.core.types import Order, OrderStatus, OrderType, Side
from alphaloom.data.connectors.paper import PaperConfig, PaperExchange
from alphaloom.data.sample import load_sample
from alphaloom.risk import RiskLimits, RiskManager

START = datetime(2019, 1, 2, tzinfo=UTC)
END = datetime(2019, 4, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def bars() -> pd.DataFrame:
    sample = load_sample(["us_equities_daily", "crypto_daily"])
    return sample[sample["symbol"].isin(["SPY", "BTCUSD"])].reset_index(drop=True)


def _exchange(bars: pd.DataFrame, journal: Path | None, **changes) -> PaperExchange:
    cfg = PaperConfig(symbols=("SPY", "BTCUSD"), start=START, end=END, journal=journal, **changes)
    return PaperExchange(cfg, bars=bars)


async def _session(ex: PaperExchange, risk: RiskManager) -> list[str]:
    """Steps and orders of every kind: filled market orders, a working limit, a cancelled stop."""
    ids = []

    async def send(**kw) -> str:
        order = Order(ts=ex.clock.now(), client_order_id=f"al-session-{len(ids)}", **kw)
        await risk.submit(order, ex)
        ids.append(order.client_order_id)
        return order.client_order_id

    ex.run(5)
    await send(symbol="SPY", side=Side.BUY, quantity=20)
    await send(symbol="BTCUSD", side=Side.BUY, quantity=0.75)
    ex.run(7)
    await send(symbol="SPY", side=Side.SELL, quantity=5)
    await send(symbol="SPY", side=Side.BUY, quantity=3, order_type=OrderType.LIMIT, limit_price=150.0)
    stop = await send(
        symbol="BTCUSD", side=Side.SELL, quantity=0.25, order_type=OrderType.STOP, stop_price=900.0
    )
    ex.run(3)
    await ex.cancel_order(stop)
    ex.run(4)
    return ids


def _state(ex: PaperExchange) -> tuple:
    p = ex.portfolio
    orders = {cid: (w.status, w.filled_quantity, w.fills) for cid, w in ex.engine.orders.items()}
    return (
        ex.clock.now(),
        ex.steps_left,
        round(p.cash, 9),
        {s: (pos.quantity, round(pos.avg_cost, 9)) for s, pos in p.positions.items()},
        ex.fills,
        orders,
    )


def test_a_reopened_venue_stands_where_the_last_one_left_off(bars: pd.DataFrame, tmp_path: Path) -> None:
    journal = tmp_path / "venue" / "paper.sqlite"
    risk = RiskManager(RiskLimits())

    async def first() -> tuple:
        ex = _exchange(bars, journal)
        async with ex:
            await _session(ex, risk)
            return _state(ex)

    async def memory_only() -> tuple:
        ex = _exchange(bars, None)
        async with ex:
            await _session(ex, risk)
            return _state(ex)

    before = asyncio.run(first())
    reference = asyncio.run(memory_only())
    assert before == reference  # journaling changes nothing about what the venue does
    assert len(before[4]) >= 3
    assert before[5]
    reopened = _exchange(bars, journal)
    assert _state(reopened) == before
    statuses = {st for st, _, _ in before[5].values()}
    assert {OrderStatus.FILLED, OrderStatus.CANCELLED} <= statuses


def test_the_reopened_venue_goes_on_like_one_that_never_stopped(bars: pd.DataFrame, tmp_path: Path) -> None:
    journal = tmp_path / "paper.sqlite"
    risk = RiskManager(RiskLimits())

    async def run(*, reopen: bool) -> tuple:
        ex = _exchange(bars, journal if reopen else None)
        await _session(ex, risk)
        if reopen:  # the process ends; a new one opens the venue on its journal
            await ex.aclose()
            ex = _exchange(bars, journal)
        async with ex:
            order = Order(
                symbol="BTCUSD", side=Side.SELL, quantity=0.5, ts=ex.clock.now(), client_order_id="al-x"
            )
            await risk.submit(order, ex)
            ex.run(10)
            return _state(ex)

    assert asyncio.run(run(reopen=True)) == asyncio.run(run(reopen=False))


def test_a_resent_client_order_id_after_a_restart_is_not_a_second_order(
    bars: pd.DataFrame, tmp_path: Path
) -> None:
    journal = tmp_path / "paper.sqlite"
    risk = RiskManager(RiskLimits())
    order = Order(symbol="SPY", side=Side.BUY, quantity=10, ts=START, client_order_id="al-once")

    async def place(ex: PaperExchange):
        async with ex:
            ex.run(2)
            return await risk.submit(order, ex)

    first = asyncio.run(place(_exchange(bars, journal)))
    again = _exchange(bars, journal)
    second = asyncio.run(place(again))
    assert second.client_order_id == first.client_order_id == "al-once"
    assert second.venue_order_id == first.venue_order_id
    assert len(again.engine.orders) == 1


def test_open_orders_are_listed_for_reconciliation(bars: pd.DataFrame) -> None:
    risk = RiskManager(RiskLimits())

    async def run():
        ex = _exchange(bars, None)
        async with ex:
            ids = await _session(ex, risk)
            return ids, await ex.get_open_orders()

    ids, listed = asyncio.run(run())
    assert [o.client_order_id for o, _ in listed] == [ids[3]]  # only the limit buy far below the market
    order, result = listed[0]
    assert result.status is OrderStatus.ACCEPTED
    assert order.limit_price == 150.0


def test_a_journal_of_other_settings_is_refused(bars: pd.DataFrame, tmp_path: Path) -> None:
    journal = tmp_path / "paper.sqlite"
    _exchange(bars, journal).run(3)
    with pytest.raises(ConfigError, match="other settings or data"):
        _exchange(bars, journal, initial_cash=5_000.0)
