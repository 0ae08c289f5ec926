"""The paper exchange end to end on the shipped US equities sample: replay, orders, fills, faults."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path

import pandas as pd
import pytest
from tests.data.connectors.approvals import approved

from alphaloom.backtest.costs import CostModel
from alphaloom.core.clock import LiveClock, SimulatedClock
from alphaloom.core.exceptions import (
    ConfigError,
    ConnectorError,
    EmptyRangeError,
    OrderRejectedError,
    UnknownSymbolError,
)
from alphaloom.core.resilience import BreakerConfig, RetryPolicy
from alphaloom.core.types import Bar, Fill, Order, OrderStatus, OrderType, Side
from alphaloom.data import DuckDBBarStore, load_sample
from alphaloom.data.connectors import (
    BpsFees,
    FaultPlan,
    MatchingConfig,
    PaperConfig,
    PaperExchange,
)

START = datetime(2018, 1, 1, tzinfo=UTC)
END = datetime(2018, 3, 1, tzinfo=UTC)
FAST = RetryPolicy(max_attempts=30, base_delay_s=0.0, max_delay_s=0.0)
NO_FEES = BpsFees(commission_bps=0.0, slippage_bps=0.0)


@cache
def sample() -> pd.DataFrame:
    return load_sample("us_equities_daily")


def window(symbol: str) -> pd.DataFrame:
    df = sample()
    sel = df[(df["symbol"] == symbol) & (df["ts"] >= pd.Timestamp(START)) & (df["ts"] < pd.Timestamp(END))]
    return sel.reset_index(drop=True)


def paper(**changes: object) -> PaperExchange:
    fees = changes.pop("fees_obj", None)
    config = PaperConfig(symbols=("AAPL", "SPY"), start=START, end=END, retry=FAST, **changes)  # type: ignore[arg-type]
    return PaperExchange(config, bars=sample(), fees=fees)  # type: ignore[arg-type]


def buy(qty: float, ts: datetime, **kw: object) -> Order:
    return Order(symbol="SPY", side=Side.BUY, quantity=qty, ts=ts, **kw)  # type: ignore[arg-type]


# ---------------------------------------------------------------------- replay


def test_replay_streams_every_bar_in_order_and_advances_the_clock() -> None:
    exchange = paper()
    seen: list[Bar] = []

    async def run() -> None:
        async for event in exchange.get_real_time_data(["SPY", "AAPL"]):
            assert isinstance(event, Bar)
            # The clock stands at the close of the bar just streamed: nothing later is visible.
            assert exchange.clock.now() == event.ts + timedelta(days=1)
            seen.append(event)

    asyncio.run(run())
    for symbol in ("SPY", "AAPL"):
        expected = window(symbol)
        got = [b for b in seen if b.symbol == symbol]
        assert [pd.Timestamp(b.ts) for b in got] == expected["ts"].tolist()
        assert [b.close for b in got] == pytest.approx(expected["close"].tolist())
    assert exchange.finished
    assert exchange.health().healthy


def test_history_reads_the_store_and_never_shows_unclosed_bars(tmp_path: Path) -> None:
    with DuckDBBarStore(tmp_path / "bars.duckdb") as store:
        store.write_bars(sample()[sample()["symbol"].isin(["SPY", "AAPL"])])
        exchange = PaperExchange(PaperConfig(start=START, end=END), store=store)

        async def run() -> tuple[pd.DataFrame, pd.DataFrame]:
            before = await exchange.get_historical_data("SPY", "1d", START - timedelta(days=10), END)
            exchange.run(5)
            after = await exchange.get_historical_data("SPY", "1d", START - timedelta(days=10), END)
            return before, after

        before, after = asyncio.run(run())
    assert before["ts"].max() < pd.Timestamp(START)  # only history before the replay start
    assert len(after) == len(before) + 5
    assert after["ts"].max() == window("SPY")["ts"].iloc[4]
    assert exchange.universe == ["AAPL", "SPY"]


def test_speed_paces_the_replay_in_real_time() -> None:
    exchange = paper(speed=86_400 / 0.01)  # one market day per 10 ms

    async def run() -> int:
        n = 0
        async for _ in exchange.get_real_time_data(["SPY"]):
            n += 1
            if n == 6:
                break
        return n

    t0 = time.perf_counter()
    asyncio.run(run())
    assert time.perf_counter() - t0 >= 0.05


# ---------------------------------------------------------------------- orders and fills


def test_market_limit_and_stop_orders_fill_by_the_rules_on_real_bars() -> None:
    exchange = paper(
        fees=BpsFees(commission_bps=1.0, slippage_bps=2.0), matching=MatchingConfig(participation_rate=None)
    )
    spy = window("SPY")
    placed: dict[str, Order] = {}

    async def run() -> None:
        k = -1
        async for bar in exchange.get_real_time_data(["SPY"]):
            k += 1
            now = exchange.clock.now()
            if k == 2:
                placed["market"] = buy(10, now)
                placed["limit"] = buy(
                    5, now, order_type=OrderType.LIMIT, limit_price=round(bar.close * 0.99, 2)
                )
                placed["stop"] = Order(
                    symbol="SPY", side=Side.SELL, quantity=3, order_type=OrderType.STOP,
                    stop_price=round(bar.close * 0.97, 2), ts=now,
                )  # fmt: skip
                for o in placed.values():
                    assert (await exchange.place_order(*approved(o))).status is OrderStatus.ACCEPTED

    asyncio.run(run())
    fills = {f.client_order_id: f for f in exchange.fills}
    market = fills[placed["market"].client_order_id]
    assert pd.Timestamp(market.ts) == spy["ts"].iloc[3]  # the bar after the decision, not the one seen
    assert market.price == pytest.approx(spy["open"].iloc[3] * 1.0002)
    assert market.fee == pytest.approx(10 * market.price * 1e-4)
    # The February 2018 sell-off reaches both the limit buy and the sell stop.
    lim = placed["limit"]
    f = fills[lim.client_order_id]
    row = spy[spy["ts"] == pd.Timestamp(f.ts)].iloc[0]
    assert f.price <= lim.limit_price
    assert f.price == pytest.approx(min(row["open"], lim.limit_price))
    earlier = spy[(spy["ts"] > spy["ts"].iloc[2]) & (spy["ts"] < pd.Timestamp(f.ts))]
    assert (earlier["low"] > lim.limit_price).all()  # it filled on the first bar that reached it
    stop = placed["stop"]
    f = fills[stop.client_order_id]
    row = spy[spy["ts"] == pd.Timestamp(f.ts)].iloc[0]
    assert f.price == pytest.approx(min(row["open"], stop.stop_price) * (1 - 2e-4))
    assert (earlier["low"] > stop.stop_price).all()


def test_partial_fills_and_latency() -> None:
    exchange = paper(fees=NO_FEES, matching=MatchingConfig(participation_rate=1e-6, latency_bars=1))
    spy = window("SPY")
    o = buy(150, START)

    async def run() -> None:
        result = await exchange.place_order(*approved(o))
        assert result.status is OrderStatus.NEW  # waiting out its latency
        exchange.run(6)

    asyncio.run(run())
    mine = [f for f in exchange.fills if f.client_order_id == o.client_order_id]
    assert pd.Timestamp(mine[0].ts) == spy["ts"].iloc[1]  # bar 0 is the latency, bar 1 the first fill
    for f in mine[:-1]:
        vol = spy.loc[spy["ts"] == pd.Timestamp(f.ts), "volume"].iloc[0]
        assert f.quantity == pytest.approx(vol * 1e-6)
    assert math.fsum(f.quantity for f in mine) == pytest.approx(150)
    result = asyncio.run(exchange.get_order(o.client_order_id))
    assert result.status is OrderStatus.FILLED
    assert len(result.fills) == len(mine) > 1


def test_account_and_positions_reconcile_with_fills() -> None:
    exchange = paper(
        initial_cash=50_000.0, fees_obj=CostModel(commission_bps=5.0, slippage_bps=3.0, min_commission=1.0)
    )

    async def run() -> None:
        k = -1
        async for bar in exchange.get_real_time_data(["SPY", "AAPL"]):
            k += 1
            now = exchange.clock.now()
            if k % 6 == 0:
                side = Side.BUY if (k // 6) % 3 else Side.SELL
                await exchange.place_order(
                    *approved(Order(symbol=bar.symbol, side=side, quantity=7 + k % 5, ts=now))
                )

    asyncio.run(run())
    fills: Sequence[Fill] = exchange.fills
    assert len(fills) > 5
    positions = asyncio.run(exchange.get_positions())
    account = asyncio.run(exchange.get_account())
    cash = 50_000.0 - math.fsum(f.signed_quantity * f.price + f.fee for f in fills)
    assert account.cash == pytest.approx(cash, rel=1e-12)
    last_close = {s: window(s)["close"].iloc[-1] for s in ("SPY", "AAPL")}
    for symbol in ("SPY", "AAPL"):
        qty = math.fsum(f.signed_quantity for f in fills if f.symbol == symbol)
        if abs(qty) > 1e-9:
            assert positions[symbol].quantity == pytest.approx(qty)
            assert positions[symbol].current_price == pytest.approx(last_close[symbol])
    equity = cash + math.fsum(p.quantity * last_close[s] for s, p in positions.items())
    assert account.equity == pytest.approx(equity, rel=1e-12)
    assert all(f.fee >= 1.0 - 1e-12 for f in fills)  # CostModel's minimum, once per (single-fill) order


def test_cancel_and_rejections() -> None:
    exchange = paper(max_leverage=1.0)

    async def run() -> None:
        exchange.run(2)
        now = exchange.clock.now()
        far = buy(1, now, order_type=OrderType.LIMIT, limit_price=1.0)
        await exchange.place_order(*approved(far))
        exchange.run(1)
        cancelled = await exchange.cancel_order(far.client_order_id)
        assert cancelled.status is OrderStatus.CANCELLED
        with pytest.raises(OrderRejectedError, match="Did you mean 'SPY'"):
            await exchange.place_order(*approved(Order(symbol="SPX", side=Side.BUY, quantity=1, ts=now)))
        with pytest.raises(OrderRejectedError, match="max_leverage"):
            await exchange.place_order(*approved(buy(10_000, now)))
        with pytest.raises(UnknownSymbolError, match="Did you mean"):
            await exchange.get_historical_data("SPYY", "1d", START, END)
        with pytest.raises(ConfigError, match="holds 1d bars"):
            await exchange.get_historical_data("SPY", "1h", START, END)

    asyncio.run(run())


def test_construction_errors_teach() -> None:
    with pytest.raises(ConfigError, match="exactly one source"):
        PaperExchange(PaperConfig())
    with pytest.raises(ConfigError, match="SimulatedClock"):
        PaperExchange(PaperConfig(), bars=sample(), clock=LiveClock())
    with pytest.raises(EmptyRangeError, match="no 1d bars to replay"):
        PaperExchange(PaperConfig(start=datetime(2030, 1, 1, tzinfo=UTC)), bars=sample())
    with pytest.raises(UnknownSymbolError, match="ZZZ"):
        PaperExchange(PaperConfig(symbols=("ZZZ",)), bars=sample())
    with pytest.raises(ConfigError, match="timeframe"):
        PaperConfig.from_dict({"timeframe": "2d"})
    clock = SimulatedClock(START)
    exchange = PaperExchange(PaperConfig(symbols=("SPY",), start=START, end=END), bars=sample(), clock=clock)
    exchange.run(1)
    assert clock.now() == window("SPY")["ts"].iloc[0] + timedelta(days=1)


# ---------------------------------------------------------------------- fault injection


def test_orders_under_injected_faults_are_never_duplicated() -> None:
    faults = FaultPlan(fail_share=0.25, lost_reply_share=0.3, seed=11)
    exchange = paper(faults=faults, breaker=BreakerConfig(failure_threshold=10_000))
    n = 200

    async def run() -> None:
        exchange.run(3)
        now = exchange.clock.now()
        orders = [buy(1 + i % 3, now, client_order_id=f"ord-{i}") for i in range(n)]
        results = await asyncio.gather(*(exchange.place_order(*approved(o)) for o in orders))
        assert [r.client_order_id for r in results] == [o.client_order_id for o in orders]
        exchange.run(5)

    asyncio.run(run())
    assert len(exchange.engine.orders) == n
    per_order = {}
    for f in exchange.fills:
        per_order[f.client_order_id] = per_order.get(f.client_order_id, 0.0) + f.quantity
    assert all(qty == pytest.approx(1 + int(cid.split("-")[1]) % 3) for cid, qty in per_order.items())
    health = exchange.health()
    assert exchange.injected_faults > 50
    assert health.retries >= exchange.injected_faults - 1


@pytest.mark.parametrize(("drop", "gap", "repeat"), [(7, 3, 0), (5, 0, 3), (9, 4, 2)])
def test_stream_drops_are_reconnected_backfilled_and_deduplicated(drop: int, gap: int, repeat: int) -> None:
    faults = FaultPlan(stream_drop_after=drop, stream_gap_steps=gap, stream_repeat_events=repeat)
    exchange = paper(faults=faults, stream_reconnect_max=3)

    async def run() -> list[Bar]:
        return [e async for e in exchange.get_real_time_data(["SPY", "AAPL"])]  # type: ignore[misc]

    got = asyncio.run(run())
    for symbol in ("SPY", "AAPL"):
        ts = [pd.Timestamp(b.ts) for b in got if b.symbol == symbol]
        assert ts == window(symbol)["ts"].tolist()  # no missing and no duplicated bar
    health = exchange.health()
    assert health.stream_reconnects >= 80 // (drop + 2 + 2 * gap) - 1
    if gap:
        assert health.backfilled_bars >= gap
    if repeat:
        assert health.duplicates_dropped > 0


def test_replays_are_deterministic() -> None:
    def once() -> list[tuple[str, float, float, float]]:
        exchange = paper(
            faults=FaultPlan(fail_share=0.2, lost_reply_share=0.2, seed=5),
            matching=MatchingConfig(participation_rate=1e-6),
        )

        async def run() -> None:
            i = 0
            async for _ in exchange.get_real_time_data(["SPY"]):
                i += 1
                if i % 4 == 0:
                    await exchange.place_order(
                        *approved(buy(40 + i, exchange.clock.now(), client_order_id=f"d-{i}"))
                    )

        asyncio.run(run())
        return [(f.fill_id, f.quantity, f.price, f.fee) for f in exchange.fills]

    first = once()
    assert first
    assert first == once()


def test_a_newer_stream_supersedes_an_older_one() -> None:
    exchange = paper()

    async def run() -> None:
        old = exchange.get_real_time_data(["SPY"])
        await anext(old)
        new = exchange.get_real_time_data(["SPY", "AAPL"])
        first_new = await anext(new)
        assert first_new.ts > window("SPY")["ts"].iloc[0]  # the replay went on; it did not restart
        with pytest.raises(ConnectorError, match="superseded"):
            await anext(old)
        await new.aclose()

    asyncio.run(run())
