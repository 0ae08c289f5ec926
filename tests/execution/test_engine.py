"""The trading engine on real sample data, through a real risk manager, against the paper venue."""

from __future__ import annotations

import asyncio
import math
from collections import Counter
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from alphaloom.core.exceptions import ConfigError, DataNotFoundError, VenueUnavailableError
from alphaloom.core.types import Bar, OrderStatus, TradingSignal
from alphaloom.data.storage.relational import DuckDBRelationalStore
from alphaloom.execution import (
    BarFeed,
    EngineConfig,
    EngineState,
    MemoryEngineCheckpoint,
    PaperFeed,
    SignalSource,
    TradingEngine,
    TrendRule,
)
from alphaloom.risk import RiskLimits, RiskManager

from .conftest import CLASSES, SYMBOLS


def _engine(paper, records, *, primary=None, limits=None, checkpoint=None, config=None, run_id="run-a"):
    risk = RiskManager(
        limits or RiskLimits(max_leverage=1.5), audit=records, clock=paper.clock, instruments=CLASSES
    )
    return TradingEngine(
        config or EngineConfig(reconcile_every=10),
        connector=paper,
        risk=risk,
        primary=primary or TrendRule(),
        fallback=TrendRule(),
        symbols=SYMBOLS,
        run_id=run_id,
        records=records,
        checkpoint=checkpoint,
        asset_classes=CLASSES,
    )


async def _run(engine: TradingEngine, feed: BarFeed):
    async with engine.connector:
        await engine.start()
        return await engine.run(feed)


def test_the_engine_trades_real_bars_and_records_everything(make_paper) -> None:
    paper = make_paper()
    with DuckDBRelationalStore(":memory:") as records:
        engine = _engine(paper, records)
        health = asyncio.run(_run(engine, PaperFeed(paper)))
        orders = records.orders()
        fills = records.fills()
        audit = records.audit_log()
        assert records.verify_audit_chain() == []
    assert paper.finished
    assert health.bars_processed == len(paper._steps)
    assert health.orders_sent > 5
    # The store holds exactly the venue's fills, and the engine's book equals the venue's.
    assert sorted(f.fill_id for f in fills) == sorted(f.fill_id for f in paper.fills)
    assert {s: p.quantity for s, p in engine.portfolio.positions.items() if p.quantity} == {
        s: p.quantity for s, p in paper.portfolio.positions.items() if p.quantity
    }
    assert engine.portfolio.cash == pytest.approx(paper.portfolio.cash, rel=1e-9)
    assert health.reconcile_differences == 0
    # Every order went through the risk manager and is in the audit trail with its signal.
    actions = Counter(r.action for r in audit)
    decided = {r.payload["order"]["client_order_id"] for r in audit if r.action == "risk.decision"}
    assert {o.client_order_id for o in orders} <= decided
    assert actions["execution.order"] == len(orders)
    assert actions["execution.fill"] == len(fills)
    signals = [r.payload for r in audit if r.action == "execution.signal"]
    assert signals
    assert all(s["model_version"].startswith("trend_rule-") and len(s["input_hash"]) == 64 for s in signals)
    assert {o.status for o in orders} <= {
        OrderStatus.FILLED,
        OrderStatus.PARTIALLY_FILLED,
        OrderStatus.ACCEPTED,
    }
    by_signal = {r.id: r for r in audit if r.action == "execution.signal"}
    for r in audit:
        if r.action == "execution.order" and r.payload["kind"] != "protective":
            sig = by_signal[r.payload["signal_audit_id"]]
            assert sig.payload["symbol"] == r.payload["symbol"]
    # Orders never exceed the target: no position beyond max_weight of equity at decision time.
    for o in orders:
        assert o.order.quantity > 0


class FlakyModel(SignalSource):
    """A primary model that fails on some bars, like a model whose input went missing."""

    name = "flaky_model"

    def __init__(self, fail_every: int) -> None:
        self.inner = TrendRule()
        self.lookback = self.inner.lookback
        self.calls = 0
        self.fail_every = fail_every

    def _decide(self, symbol: str, ts: datetime, bars: pd.DataFrame) -> tuple[TradingSignal, np.ndarray]:
        self.calls += 1
        if self.calls % self.fail_every == 0:
            raise DataNotFoundError(f"no observation for {symbol} at {ts.isoformat()}")
        signal, inputs = self.inner._decide(symbol, ts, bars)
        return signal.model_copy(update={"model_version": "flaky-1"}), inputs


def test_a_failing_primary_model_falls_back_to_the_rule_and_says_so(make_paper) -> None:
    paper = make_paper()
    primary = FlakyModel(fail_every=4)
    with DuckDBRelationalStore(":memory:") as records:
        engine = _engine(paper, records, primary=primary)
        health = asyncio.run(_run(engine, PaperFeed(paper)))
        audit = records.audit_log()
    degraded = [r.payload for r in audit if r.action == "execution.degraded"]
    signals = [r.payload for r in audit if r.action == "execution.signal"]
    assert health.signal_fallbacks == primary.calls // 4 == len(degraded)
    assert all(d["component"] == "signal" and d["using"] == "trend_rule" for d in degraded)
    fallback_signals = [s for s in signals if s["degraded"]]
    assert len(fallback_signals) == len(degraded)
    assert {s["source"] for s in fallback_signals} == {"trend_rule"}
    assert {s["model_version"] for s in signals if not s["degraded"]} == {"flaky-1"}


class FailingFeed(BarFeed):
    """Market data that fails on given calls (a venue outage), otherwise the paper replay."""

    def __init__(self, inner: PaperFeed, fail_on: set[int]) -> None:
        self.inner, self.fail_on, self.calls = inner, fail_on, 0

    async def _next(self) -> list[Bar] | None:
        self.calls += 1
        if self.calls in self.fail_on:
            raise VenueUnavailableError("market data feed timed out")
        return await self.inner._next()


def test_market_data_failures_degrade_to_cached_bars_and_recover(make_paper) -> None:
    paper = make_paper()
    cfg = EngineConfig(feed_retry_s=0.0, max_feed_failures=2)
    with DuckDBRelationalStore(":memory:") as records:
        engine = _engine(paper, records, config=cfg)
        health = asyncio.run(_run(engine, FailingFeed(PaperFeed(paper), {5, 30, 31})))
        degraded = [r.payload for r in records.audit_log(action="execution.degraded")]
    assert paper.finished  # every bar was still traded
    assert health.market_data_failures == 3
    assert "market_data" not in health.degraded  # recovered
    assert [d["component"] for d in degraded] == ["market_data"] * 3
    assert all(set(d["cached"]) == set(SYMBOLS) for d in degraded)


def test_too_many_market_data_failures_in_a_row_stop_the_run(make_paper) -> None:
    paper = make_paper()
    cfg = EngineConfig(feed_retry_s=0.0, max_feed_failures=2)
    with DuckDBRelationalStore(":memory:") as records:
        engine = _engine(paper, records, config=cfg)
        with pytest.raises(VenueUnavailableError, match="3 times in a row"):
            asyncio.run(_run(engine, FailingFeed(PaperFeed(paper), {4, 5, 6})))


def test_refused_orders_are_recorded_with_the_reasons(make_paper) -> None:
    paper = make_paper()
    with DuckDBRelationalStore(":memory:") as records:
        engine = _engine(paper, records, limits=RiskLimits(allowed_symbols=("SPY", "QQQ")))
        health = asyncio.run(_run(engine, PaperFeed(paper)))
        refused = records.orders(status="rejected")
        decisions = [
            r.payload for r in records.audit_log(action="risk.decision") if not r.payload["approved"]
        ]
    assert health.orders_refused == len(refused) > 0
    assert all("refused by the risk manager" in r.message for r in refused)
    assert {d["order"]["client_order_id"] for d in decisions} == {r.client_order_id for r in refused}
    assert {r.order.symbol for r in refused} == {"BTCUSD"}
    assert all("allowed_symbols" in r.message for r in refused)
    assert "BTCUSD" not in paper.portfolio.positions


class Killed(Exception):
    """Stands for the process dying: nothing after it runs."""


class CrashAfter(MemoryEngineCheckpoint):
    """A checkpoint whose save fails at bar ``n``: the process "dies" after sending that bar's orders."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.n = n

    def save(self, state: EngineState) -> None:
        if state.bars_processed == self.n:
            self.n = -1  # the restarted process does not die again
            raise Killed(f"killed after sending the orders of bar {self.n}")
        super().save(state)


def _venue_state(paper) -> tuple:
    return (
        {s: p.quantity for s, p in paper.portfolio.positions.items() if p.quantity},
        round(paper.portfolio.cash, 6),
        [(f.symbol, f.side, f.quantity, round(f.price, 9), f.ts) for f in paper.fills],
    )


@pytest.fixture(scope="module")
def reference(bars) -> tuple:
    """The uninterrupted run: the venue's end state and the recorded orders."""
    from alphaloom.data.connectors.paper import PaperConfig, PaperExchange

    from .conftest import END, START

    paper = PaperExchange(PaperConfig(symbols=tuple(SYMBOLS), start=START, end=END), bars=bars)
    with DuckDBRelationalStore(":memory:") as records:
        asyncio.run(_run(_engine(paper, records), PaperFeed(paper)))
        return _venue_state(paper), {o.client_order_id: o for o in records.orders()}


@pytest.mark.parametrize("crash_at", [3, 40])
def test_dying_mid_bar_and_restarting_neither_loses_nor_duplicates(
    make_paper, tmp_path: Path, crash_at: int, reference: tuple
) -> None:
    ref_state, ref_orders = reference
    # The run that dies after sending bar `crash_at`'s orders, before its checkpoint.
    journal, db = tmp_path / "venue.sqlite", tmp_path / "records.duckdb"
    checkpoint = CrashAfter(crash_at)
    paper = make_paper(journal)
    with DuckDBRelationalStore(db) as records, pytest.raises(Killed):
        asyncio.run(_run(_engine(paper, records, checkpoint=checkpoint), PaperFeed(paper)))
    assert checkpoint.state is not None
    assert checkpoint.state.bars_processed == crash_at - 1
    # A new process: the venue reopens on its journal, the engine on its store and checkpoint.
    paper2 = make_paper(journal)
    with DuckDBRelationalStore(db) as records:
        engine = _engine(paper2, records, checkpoint=checkpoint)
        health = asyncio.run(_run(engine, PaperFeed(paper2)))
        orders = {o.client_order_id: o for o in records.orders()}
        assert records.verify_audit_chain() == []
    assert health.bars_processed == len(paper2._steps)
    assert _venue_state(paper2) == ref_state
    # Same deterministic ids, each order once at the venue, nothing lost.
    assert set(orders) == set(ref_orders)
    assert set(paper2.engine.orders) == set(ref_orders)
    assert all(orders[c].status == ref_orders[c].status for c in orders)
    assert all(math.isclose(orders[c].filled_quantity, ref_orders[c].filled_quantity) for c in orders)


def test_a_checkpoint_of_another_run_is_refused(make_paper) -> None:
    paper = make_paper()
    engine = _engine(paper, None, checkpoint=MemoryEngineCheckpoint(EngineState("other", None, 0)))
    with pytest.raises(ConfigError, match="belongs to run 'other'"):
        asyncio.run(engine.start())


def test_stop_loss_exits_go_through_the_risk_manager_with_their_trail(make_paper) -> None:
    from alphaloom.jobs.audit import decision_trails

    paper = make_paper()
    with DuckDBRelationalStore(":memory:") as records:
        engine = _engine(paper, records, limits=RiskLimits(stop_loss_pct=2.0))
        asyncio.run(_run(engine, PaperFeed(paper)))
        audit = records.audit_log()
        orders = {o.client_order_id: o for o in records.orders()}
    exits = [r.payload for r in audit if r.action == "execution.order" and r.payload["kind"] == "protective"]
    assert exits, "a 2 % stop on BTC over four months of 2019 must trigger"
    trails = decision_trails(audit)
    for e in exits:
        trail = [r.action for r in trails[e["client_order_id"]]]
        assert trail[:3] == ["risk.exit", "execution.order", "risk.decision"]
        assert orders[e["client_order_id"]].status is OrderStatus.FILLED
        assert e["client_order_id"] != e["replaces_client_order_id"]
