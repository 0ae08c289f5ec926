"""The paper venue's injected timeouts and fault log, and where a trading run keeps its records."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest

from alphaloom.core.exceptions import VenueUnavailableError
from alphaloom.core.resilience import BreakerConfig, RetryPolicy
from alphaloom.core.types import Order, Side
from alphaloom.data.connectors.paper import FaultPlan, PaperConfig, PaperExchange
from alphaloom.data.sample import load_sample
from alphaloom.data.storage import JournaledRelationalStore
from alphaloom.data.storage.relational import DuckDBRelationalStore, PostgresRelationalStore
from alphaloom.jobs.chaos import PrivatePostgres
from alphaloom.jobs.config import RunConfig
from alphaloom.jobs.trade import open_records, records_journal_path
from alphaloom.jobs.workspace import Workspace
from alphaloom.risk import RiskLimits, RiskManager

START, END = datetime(2019, 6, 3, tzinfo=UTC), datetime(2019, 9, 3, tzinfo=UTC)


def _paper(faults: FaultPlan, attempts: int = 30) -> PaperExchange:
    config = PaperConfig(
        symbols=("SPY",),
        start=START,
        end=END,
        faults=faults,
        retry=RetryPolicy(max_attempts=attempts, base_delay_s=0.0, max_delay_s=0.0),
        breaker=BreakerConfig(failure_threshold=10_000),
    )
    return PaperExchange(config, bars=load_sample("us_equities_daily"))


def test_injected_timeouts_are_retried_and_every_fault_is_logged_as_it_happens(tmp_path: Path) -> None:
    log = tmp_path / "faults.log"
    faults = FaultPlan(timeout_share=0.3, hang_s=0.001, fail_share=0.2, lost_reply_share=0.3, seed=5, log=log)
    exchange = _paper(faults)
    risk = RiskManager(RiskLimits())

    async def run() -> None:
        exchange.run(3)
        risk.sync_portfolio(exchange.portfolio)
        for i in range(20):
            order = Order(
                symbol="SPY", side=Side.BUY, quantity=1, client_order_id=f"o-{i}", ts=exchange.clock.now()
            )
            await risk.submit(order, exchange)
            await exchange.get_account()
            await exchange.get_open_orders()  # retried like the hooks, never a bare TimeoutError

    asyncio.run(run())
    assert len(exchange.engine.orders) == 20  # lost replies and timeouts never doubled an order
    lines = log.read_text().splitlines()
    assert len(lines) == exchange.injected_faults > 20
    kinds = {line.split()[0] for line in lines}
    assert kinds == {"timeout", "error", "lost_reply"}
    assert exchange.health().retries >= exchange.injected_faults


def test_bounded_bursts_of_faults_never_outlast_the_retries(tmp_path: Path) -> None:
    log = tmp_path / "faults.log"
    faults = FaultPlan(fail_share=0.9, timeout_share=0.05, hang_s=0.0, max_in_a_row=2, seed=3, log=log)
    config = PaperConfig(
        symbols=("SPY",),
        start=START,
        end=END,
        faults=faults,
        retry=RetryPolicy(max_attempts=3, base_delay_s=0.0, max_delay_s=0.0),
        breaker=BreakerConfig(failure_threshold=3),
    )
    exchange = PaperExchange(config, bars=load_sample("us_equities_daily"))

    async def run() -> None:
        for _ in range(50):
            await exchange.get_account()  # three attempts: never three faults in a row

    asyncio.run(run())
    assert exchange.injected_faults == len(log.read_text().splitlines()) > 50  # nearly two per call
    assert exchange.health().breaker_state.value == "closed"


def test_a_venue_that_keeps_timing_out_raises_the_connector_error() -> None:
    exchange = _paper(FaultPlan(timeout_share=0.99, hang_s=0.0, seed=1), attempts=3)
    with pytest.raises(VenueUnavailableError, match="timed out"):
        asyncio.run(exchange.get_open_orders())


def test_a_run_keeps_records_in_duckdb_or_in_journaled_postgresql(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "ws").ensure()
    with open_records(ws, RunConfig()) as records:
        assert isinstance(records, DuckDBRelationalStore)
    with PrivatePostgres() as pg:
        pg.start()
        on = RunConfig().replace(trade={"records_dsn": pg.dsn, "records_retry_s": 0.2})
        with open_records(ws, on) as records:
            assert isinstance(records, JournaledRelationalStore)
            assert records.journal_path == records_journal_path(ws)
            assert records.health().ok
        off = RunConfig().replace(trade={"records_dsn": pg.dsn, "records_journal": False})
        with open_records(ws, off) as records:
            assert type(records) is PostgresRelationalStore
