"""The connector contract (docs/CONNECTORS.md), run over every connector.

**Adding a connector = adding one case factory** to this file: an async context manager decorated with
``@contract_case("<registry name>")`` that starts whatever the connector needs (a local server speaking the
venue's protocol; never the internet) and yields a :class:`ContractCase`. Every test below then runs on it::

    @contract_case("oanda")
    @contextlib.asynccontextmanager
    async def oanda_case(tmp_path: Path) -> AsyncIterator[ContractCase]:
        async with start_oanda_server(tmp_path) as server:          # your local test server
            connector = OANDAConnector(OANDAConfig(base_url=server.url, ...), http=server.client(), ...)
            async with connector:
                yield ContractCase(connector=connector, symbol="EURUSD", timeframe="1h",
                                   history_start=..., history_end=..., far_limit_price=0.5)
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import hmac
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path

import pandas as pd
import pytest
from tests.data.connectors.approvals import approved

from alphaloom.core.approval import order_digest
from alphaloom.core.exceptions import ConfigError, ConnectorError, RiskLimitError
from alphaloom.core.resilience import BreakerState, RetryPolicy
from alphaloom.core.types import (
    BAR_COLUMNS,
    Account,
    Bar,
    Order,
    OrderResult,
    OrderStatus,
    OrderType,
    Position,
    Side,
)
from alphaloom.data import load_sample
from alphaloom.data.connectors import (
    ConnectorHealth,
    ExchangeConnector,
    PaperConfig,
    PaperExchange,
    get_connector_class,
)
from alphaloom.data.connectors.base import event_kind


@dataclass
class ContractCase:
    """A connector ready for the contract tests, and what to ask it.

    Attributes
    ----------
    connector
        An open connector whose hooks talk to a local test double.
    symbol
        A canonical symbol the venue trades and has history for.
    timeframe
        A timeframe with bars in ``[history_start, history_end)``.
    history_start, history_end
        A range holding at least one bar.
    far_limit_price
        A limit price for a buy of ``symbol`` that will not fill during the test (for cancel tests).
    order_quantity
        A quantity the venue accepts.
    stream_events
        How many events to read from the stream.
    """

    connector: ExchangeConnector
    symbol: str
    timeframe: str
    history_start: datetime
    history_end: datetime
    far_limit_price: float
    order_quantity: float = 1.0
    stream_events: int = 5


CaseFactory = Callable[[Path], AbstractAsyncContextManager[ContractCase]]
CASES: dict[str, CaseFactory] = {}


def contract_case(name: str) -> Callable[[CaseFactory], CaseFactory]:
    """Register a case factory under the connector's registry name."""

    def add(factory: CaseFactory) -> CaseFactory:
        CASES[name] = factory
        return factory

    return add


# ---------------------------------------------------------------------- cases


@cache
def _us_equities() -> pd.DataFrame:
    return load_sample("us_equities_daily")


@contract_case("paper")
@contextlib.asynccontextmanager
async def paper_case(tmp_path: Path) -> AsyncIterator[ContractCase]:
    start = datetime(2019, 1, 1, tzinfo=UTC)
    config = PaperConfig(
        symbols=("SPY", "QQQ"),
        start=start,
        end=datetime(2019, 4, 1, tzinfo=UTC),
        retry=RetryPolicy(max_attempts=3, base_delay_s=0.0, max_delay_s=0.0),
    )
    async with PaperExchange(config, bars=_us_equities()) as connector:
        connector.run(5)  # some history and a last price
        yield ContractCase(
            connector=connector,
            symbol="SPY",
            timeframe="1d",
            history_start=start - timedelta(days=30),
            history_end=connector.clock.now(),
            far_limit_price=1.0,
        )


@contract_case("coinbase")
@contextlib.asynccontextmanager
async def coinbase_case(tmp_path: Path) -> AsyncIterator[ContractCase]:
    # ccxt's real async coinbase client against the local Advanced Trade server (ES256-signed CDP key);
    # the shared clock runs 600x so the polled 1-minute bar stream produces a bar every 0.1 s.
    from tests.data.connectors.servers.coinbase_server import AcceleratedClock, CdpKey, CoinbaseVenue

    from alphaloom.core.secrets import StaticSecretProvider
    from alphaloom.data.connectors.coinbase import CoinbaseConfig, CoinbaseConnector

    key = CdpKey.generate()
    clock = AcceleratedClock(datetime(2024, 5, 1, tzinfo=UTC), speed=600.0)
    venue = CoinbaseVenue(cdp_key=key, clock=clock.time)
    with venue.serve() as server:
        config = CoinbaseConfig(
            base_url=server.url,
            timeout_s=5.0,
            request_timeout_s=2.0,
            retry=RetryPolicy(max_attempts=3, base_delay_s=0.0, max_delay_s=0.0),
            poll_interval_s=0.01,
        )
        secrets = StaticSecretProvider(api_key=key.name, api_secret=key.private_pem)
        async with CoinbaseConnector(config, secrets=secrets, clock=clock) as connector:
            yield ContractCase(
                connector=connector,
                symbol="BTCUSD",
                timeframe="1d",
                history_start=datetime(2019, 1, 1, tzinfo=UTC),
                history_end=datetime(2019, 4, 1, tzinfo=UTC),
                far_limit_price=1000.0,
                order_quantity=0.01,
                stream_events=3,
            )


@contract_case("oanda")
@contextlib.asynccontextmanager
async def oanda_case(tmp_path: Path) -> AsyncIterator[ContractCase]:
    # The OANDA v20 protocol served locally; the venue's clock follows a price tape running at one tape second
    # per 2 ms, so the pricing stream flows and candles complete while the test runs.
    import uuid

    from tests.data.connectors.servers import LocalServer
    from tests.data.connectors.servers.oanda_server import OandaVenue, OandaVenueConfig

    from alphaloom.core.secrets import StaticSecretProvider
    from alphaloom.data.connectors.oanda import OANDAConfig, OANDAConnector

    token = f"tok-{uuid.uuid4().hex}"  # throwaway
    venue = OandaVenue(OandaVenueConfig(token=token, now=None, tick_wall_s=0.002))
    with LocalServer(venue.app) as server:
        config = OANDAConfig(
            base_url=server.url,
            stream_url=server.url,
            timeout_s=5.0,
            retry=RetryPolicy(max_attempts=3, base_delay_s=0.0, max_delay_s=0.0),
        )
        secrets = StaticSecretProvider(token=token, account=venue.config.account_id)
        async with OANDAConnector(config, secrets=secrets) as connector:
            yield ContractCase(
                connector=connector,
                symbol="EURUSD",
                timeframe="1h",
                history_start=datetime(2024, 3, 4, tzinfo=UTC),
                history_end=datetime(2024, 3, 6, tzinfo=UTC),
                far_limit_price=0.5,
                order_quantity=1000.0,
            )


@contract_case("robinhood")
@contextlib.asynccontextmanager
async def robinhood_case(tmp_path: Path) -> AsyncIterator[ContractCase]:
    # Crypto has no history on Robinhood (get_historical_data says so), so the contract runs on a stock
    # through the opt-in unofficial endpoints; the local server checks Ed25519 signatures with a fresh key.
    import base64
    import uuid

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from tests.data.connectors.servers import LocalServer
    from tests.data.connectors.servers.robinhood_server import RobinhoodVenue, RobinhoodVenueConfig

    from alphaloom.core.clock import SimulatedClock
    from alphaloom.core.secrets import StaticSecretProvider
    from alphaloom.data.connectors.robinhood import RobinhoodConfig, RobinhoodConnector

    key = Ed25519PrivateKey.generate()
    api_key, token = f"rh-api-{uuid.uuid4().hex}", f"tok-{uuid.uuid4().hex}"  # throwaway
    venue_config = RobinhoodVenueConfig(
        api_key=api_key,
        public_key=key.public_key().public_bytes_raw(),
        access_token=token,
        now=None,
        quote_wall_s=0.005,
    )
    venue = RobinhoodVenue(venue_config)
    with LocalServer(venue.app) as server:
        config = RobinhoodConfig(
            base_url=server.url,
            equities_base_url=server.url,
            enable_unofficial_equities=True,
            poll_interval_s=0.005,
            timeout_s=5.0,
            retry=RetryPolicy(max_attempts=3, base_delay_s=0.0, max_delay_s=0.0),
        )
        secrets = StaticSecretProvider(
            api_key=api_key,
            private_key=base64.b64encode(key.private_bytes_raw()).decode(),
            access_token=token,
        )
        clock = SimulatedClock(datetime(2024, 3, 6, 20, tzinfo=UTC))
        async with RobinhoodConnector(config, secrets=secrets, clock=clock) as connector:
            yield ContractCase(
                connector=connector,
                symbol="SPY",
                timeframe="1d",
                history_start=datetime(2024, 2, 1, tzinfo=UTC),
                history_end=datetime(2024, 3, 1, tzinfo=UTC),
                far_limit_price=1.0,
            )


# ---------------------------------------------------------------------- harness


@dataclass
class Runner:
    """Runs a test body against one case, inside its own event loop."""

    name: str
    factory: CaseFactory
    tmp_path: Path

    def __call__(self, body: Callable[[ContractCase], Awaitable[None]]) -> None:
        async def main() -> None:
            async with self.factory(self.tmp_path) as case:
                await asyncio.wait_for(body(case), timeout=20)

        asyncio.run(main())


@pytest.fixture(params=sorted(CASES))
def run_case(request: pytest.FixtureRequest, tmp_path: Path) -> Runner:
    return Runner(request.param, CASES[request.param], tmp_path)


def _order(case: ContractCase, **kw: object) -> Order:
    return Order(
        symbol=case.symbol,
        side=Side.BUY,
        quantity=case.order_quantity,
        ts=case.connector.clock.now(),
        **kw,  # type: ignore[arg-type]
    )


# ---------------------------------------------------------------------- the contract


def test_registered_under_its_name(run_case: Runner) -> None:
    async def body(case: ContractCase) -> None:
        cls = type(case.connector)
        assert cls.name == run_case.name
        assert get_connector_class(cls.name) is cls
        assert isinstance(case.connector.config, cls.config_class)

    run_case(body)


def test_historical_data_is_a_canonical_frame(run_case: Runner) -> None:
    async def body(case: ContractCase) -> None:
        frame = await case.connector.get_historical_data(
            case.symbol, case.timeframe, case.history_start, case.history_end
        )
        assert list(frame.columns) == list(BAR_COLUMNS)
        assert str(frame["ts"].dtype) == "datetime64[ns, UTC]"
        assert len(frame) > 0
        assert (frame["symbol"] == case.symbol).all()
        assert frame["ts"].is_monotonic_increasing
        assert frame["ts"].is_unique
        assert frame["ts"].min() >= pd.Timestamp(case.history_start)
        assert frame["ts"].max() < pd.Timestamp(case.history_end)
        assert (frame["high"] >= frame["low"]).all()

    run_case(body)


def test_inputs_are_checked_before_the_venue_is_called(run_case: Runner) -> None:
    async def body(case: ContractCase) -> None:
        c = case.connector
        before = c.health().total_successes + c.health().total_failures
        naive = case.history_start.replace(tzinfo=None)
        with pytest.raises(ConfigError):
            await c.get_historical_data(case.symbol, case.timeframe, naive, case.history_end)
        with pytest.raises(ConfigError):
            await c.get_historical_data(case.symbol, case.timeframe, case.history_end, case.history_start)
        with pytest.raises(ConfigError, match="timeframe"):
            await c.get_historical_data(case.symbol, "7x", case.history_start, case.history_end)
        with pytest.raises(ConfigError, match="canonical"):
            await c.get_historical_data(
                case.symbol.lower() + "/x", case.timeframe, case.history_start, case.history_end
            )
        with pytest.raises(ConfigError):
            await c.cancel_order("")
        assert c.health().total_successes + c.health().total_failures == before

    run_case(body)


def test_orders_round_trip_and_are_idempotent(run_case: Runner) -> None:
    async def body(case: ContractCase) -> None:
        c = case.connector
        o = _order(case, order_type=OrderType.LIMIT, limit_price=case.far_limit_price)
        placed = await c.place_order(*approved(o))
        assert isinstance(placed, OrderResult)
        assert placed.client_order_id == o.client_order_id
        assert placed.status in (OrderStatus.NEW, OrderStatus.ACCEPTED)
        again = await c.place_order(*approved(o))  # the same client id must not create a second order
        assert again.client_order_id == o.client_order_id
        assert again.venue_order_id == placed.venue_order_id
        fetched = await c.get_order(o.client_order_id)
        assert fetched.venue_order_id == placed.venue_order_id
        cancelled = await c.cancel_order(o.client_order_id)
        assert cancelled.status is OrderStatus.CANCELLED
        assert (await c.get_order(o.client_order_id)).status is OrderStatus.CANCELLED
        with pytest.raises(ConnectorError):
            await c.get_order("al-does-not-exist")

    run_case(body)


def test_orders_without_a_valid_risk_approval_never_reach_the_venue(run_case: Runner) -> None:
    async def body(case: ContractCase) -> None:
        c = case.connector
        o = _order(case, order_type=OrderType.LIMIT, limit_price=case.far_limit_price)
        other, other_approval = approved(_order(case))
        _, good = approved(o)
        bigger = o.model_copy(update={"quantity": o.quantity * 10})  # same client id, changed after approval
        key = b"k" * 32
        forged_sig = hmac.new(key, o.client_order_id.encode(), hashlib.sha256).hexdigest()
        before = c.health().total_successes + c.health().total_failures
        attempts = [
            (o, None, "no risk approval"),
            (o, "approved", "expected a RiskApproval"),
            (o, other_approval, "is for order"),
            (o, dataclasses.replace(good, signature=forged_sig), "invalid signature"),
            (o, dataclasses.replace(good, order_digest=order_digest(other)), "invalid signature"),
            (o, dataclasses.replace(good, decision_id="made-up"), "invalid signature"),
            (bigger, good, "differs from the order the risk manager approved"),
        ]
        for order, approval, message in attempts:
            with pytest.raises(RiskLimitError, match=message) as info:
                await c.place_order(order, approval)  # type: ignore[arg-type]
            assert info.value.limit == "approval"
        # Nothing reached the venue: no hook ran, and the venue has no order under that client id.
        assert c.health().total_successes + c.health().total_failures == before
        with pytest.raises(ConnectorError):
            await c.get_order(o.client_order_id)
        placed = await c.place_order(o, good)  # the genuine approval still works
        assert placed.client_order_id == o.client_order_id
        await c.cancel_order(o.client_order_id)

    run_case(body)


def test_positions_and_account(run_case: Runner) -> None:
    async def body(case: ContractCase) -> None:
        positions = await case.connector.get_positions()
        assert isinstance(positions, dict)
        assert all(isinstance(p, Position) and p.symbol == s for s, p in positions.items())
        account = await case.connector.get_account()
        assert isinstance(account, Account)
        assert account.equity == account.equity  # finite (not NaN)

    run_case(body)


def test_stream_yields_fresh_events_of_the_requested_symbols(run_case: Runner) -> None:
    async def body(case: ContractCase) -> None:
        seen: set[tuple[str, str, datetime]] = set()
        last: dict[tuple[str, str], datetime] = {}
        n = 0
        async for event in case.connector.get_real_time_data([case.symbol]):
            kind = event_kind(event)
            assert event.symbol == case.symbol
            key = (event.symbol, kind, event.ts)
            if kind != "trade":  # trades may share a timestamp
                assert key not in seen
                assert event.ts > last.get((event.symbol, kind), datetime.min.replace(tzinfo=UTC))
            seen.add(key)
            last[(event.symbol, kind)] = event.ts
            if isinstance(event, Bar):
                assert event.timeframe
            n += 1
            if n >= case.stream_events:
                break
        assert n == case.stream_events

    run_case(body)


def test_health_and_close(run_case: Runner) -> None:
    async def body(case: ContractCase) -> None:
        c = case.connector
        await c.get_account()
        health = c.health()
        assert isinstance(health, ConnectorHealth)
        assert health.breaker_state is BreakerState.CLOSED
        assert health.healthy
        assert health.last_success_at is not None
        await c.aclose()
        await c.aclose()  # idempotent
        assert c.health().closed
        with pytest.raises(ConnectorError, match="closed"):
            await c.get_account()

    run_case(body)
