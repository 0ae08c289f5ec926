"""CoinbaseConnector (and the generic CcxtConnector) against a local Coinbase Advanced Trade server.

ccxt's real async ``coinbase`` client is pointed at ``tests/data/connectors/servers/coinbase_server.py`` on
127.0.0.1 through ``base_url``; every connector here also gets an aiohttp session whose resolver refuses any
host name and whose trace records every request, so no test can reach the internet, and each scenario asserts
that only the local server was contacted.

Fault-injection figures (requests failed, orders placed, duplicates) are attached with ``record_property``:
``pytest tests/data/connectors/test_coinbase.py --junitxml=out.xml`` keeps them, ``-rP`` prints them.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import socket
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pandas as pd
import pytest
from aiohttp.abc import AbstractResolver, ResolveResult
from ccxt.base import errors as cx
from tests.data.connectors.approvals import approved
from tests.data.connectors.servers.coinbase_server import (
    AcceleratedClock,
    CdpKey,
    CoinbaseVenue,
    HmacKey,
    coinbase_faults,
)
from tests.data.connectors.servers.faults import FaultKind

from alphaloom.core.exceptions import (
    AuthenticationError,
    ConfigError,
    ConnectorError,
    OrderRejectedError,
    RateLimitError,
    UnknownSymbolError,
    VenueUnavailableError,
)
from alphaloom.core.resilience import BreakerConfig, RetryPolicy
from alphaloom.core.secrets import EnvSecretProvider, StaticSecretProvider
from alphaloom.core.types import Bar, Order, OrderStatus, OrderType, Quote, Side, TimeInForce
from alphaloom.data.connectors import get_connector_class
from alphaloom.data.connectors.ccxt_venue import (
    CcxtConfig,
    CcxtConnector,
    canonical_to_unified,
    unified_to_canonical,
)
from alphaloom.data.connectors.coinbase import CoinbaseConfig, CoinbaseConnector
from alphaloom.data.sample import load_sample

UTC_START = datetime(2014, 1, 1, tzinfo=UTC)
UTC_END = datetime(2021, 1, 1, tzinfo=UTC)
FAST = RetryPolicy(max_attempts=8, base_delay_s=0.0, max_delay_s=0.005)
ONCE = RetryPolicy(max_attempts=1)
#: Faults for the fault-injection scenarios: a quarter of requests fail, every kind of failure equally likely.
FAULT_RATE = 0.25
#: Retries for them: an order attempt makes 2-3 requests (look-up, ticker, create), so up to half of the
#: attempts fail; 30 attempts make running out (0.5**30 per order) negligible, as the scenarios assume.
FAULT_RETRY = RetryPolicy(max_attempts=30, base_delay_s=0.0, max_delay_s=0.005)


@pytest.fixture(scope="module")
def cdp_key() -> CdpKey:
    return CdpKey.generate()


@pytest.fixture(scope="module")
def sample() -> pd.DataFrame:
    return load_sample("crypto_daily")


# ---------------------------------------------------------------------- harness


class LocalOnlyResolver(AbstractResolver):
    """Refuses every host name: with it, aiohttp can only connect to IP literals (the local server)."""

    def __init__(self) -> None:
        self.refused: list[str] = []

    async def resolve(self, host: str, port: int = 0, family: int = socket.AF_INET) -> list[ResolveResult]:
        self.refused.append(host)
        raise OSError(f"tests may not resolve {host!r}: no test reaches the internet")

    async def close(self) -> None:
        return None


@contextlib.asynccontextmanager
async def local_only_session() -> AsyncIterator[tuple[aiohttp.ClientSession, list[str], LocalOnlyResolver]]:
    """An aiohttp session that cannot leave 127.0.0.1, and the list of hosts it was asked for."""
    hosts: list[str] = []

    async def on_start(session: Any, ctx: Any, params: aiohttp.TraceRequestStartParams) -> None:
        hosts.append(f"{params.url.host}:{params.url.port}")

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(on_start)
    resolver = LocalOnlyResolver()
    connector = aiohttp.TCPConnector(resolver=resolver, force_close=False)
    session = aiohttp.ClientSession(connector=connector, trace_configs=[trace])
    try:
        yield session, hosts, resolver
    finally:
        await session.close()


def config(url: str, **overrides: Any) -> CoinbaseConfig:
    settings: dict[str, Any] = {
        "base_url": url,
        "timeout_s": 3.0,
        "request_timeout_s": 0.25,
        "retry": FAST,
        "breaker": BreakerConfig(failure_threshold=1000, reset_timeout_s=0.01),
        "rate_limit_per_s": None,
        "poll_interval_s": 0.005,
    }
    settings.update(overrides)
    return CoinbaseConfig(**settings)


def cdp_secrets(key: CdpKey) -> StaticSecretProvider:
    return StaticSecretProvider(api_key=key.name, api_secret=key.private_pem)


@contextlib.asynccontextmanager
async def connect(
    url: str, secrets: Any, *, clock: Any = None, **overrides: Any
) -> AsyncIterator[CoinbaseConnector]:
    """A connector for the local server over a session that can reach nothing else; checks that on exit."""
    async with local_only_session() as (session, hosts, resolver):
        connector = CoinbaseConnector(config(url, **overrides), secrets=secrets, session=session, clock=clock)
        try:
            yield connector
        finally:
            await connector.aclose()
        local = url.removeprefix("http://")
        assert set(hosts) <= {local}, f"requests left the local server: {sorted(set(hosts))}"
        assert not resolver.refused


def run(scenario: Callable[[], Any]) -> Any:
    return asyncio.run(scenario())


def order(i: int, **kw: Any) -> Order:
    fields: dict[str, Any] = {
        "symbol": "BTCUSD",
        "side": Side.SELL,
        "quantity": 0.001,
        "ts": datetime.now(UTC),
        "client_order_id": f"t-{i:05d}",
    }
    fields.update(kw)
    return Order(**fields)


# ---------------------------------------------------------------------- config and symbols


def test_config_validates_exchange_and_derives_the_venue_name() -> None:
    assert CcxtConfig(exchange_id="kraken").venue == "kraken"
    assert CcxtConfig(exchange_id="kraken").env_prefix() == "ALPHALOOM_KRAKEN_"
    assert CoinbaseConfig().venue == "coinbase"
    assert CoinbaseConfig().env_prefix() == "ALPHALOOM_COINBASE_"
    with pytest.raises(ConfigError, match="Did you mean 'binance'"):
        CcxtConfig.from_dict({"exchange_id": "binanse"})
    with pytest.raises(ConfigError, match="CcxtConnector for other venues"):
        CoinbaseConfig.from_dict({"exchange_id": "kraken"})
    with pytest.raises(ConfigError, match="session="):
        CoinbaseConnector(CoinbaseConfig(), http=object())  # type: ignore[arg-type]
    assert get_connector_class("coinbase") is CoinbaseConnector


def test_symbols_map_between_canonical_ccxt_and_coinbase_forms(cdp_key: CdpKey) -> None:
    assert canonical_to_unified("BTCUSD") == "BTC/USD"
    assert canonical_to_unified("ETHUSDT") == "ETH/USDT"
    assert canonical_to_unified("BTCUSD-PERP") == "BTC/USD:USD"
    assert unified_to_canonical("BTC/USD:USD") == "BTCUSD-PERP"
    assert unified_to_canonical("BTC/USD:USD-301220") == "BTCUSD-301220"
    with pytest.raises(UnknownSymbolError, match="cannot split"):
        canonical_to_unified("FOOBAR")
    venue = CoinbaseVenue(cdp_key=cdp_key)
    with venue.serve() as server:

        async def scenario() -> None:
            async with connect(server.url, cdp_secrets(cdp_key)) as cb:
                # Before markets are loaded: by rule.
                assert cb.to_venue_symbol("BTCUSD") == "BTC/USD"
                assert cb.market_id("BTCUSD") == "BTC-USD"
                assert cb.from_venue_symbol("BTC-USD") == "BTCUSD"
                assert await cb.markets() == ["BTCUSD", "BTCUSD-PERP", "ETHUSD", "ETHUSD-PERP", "LTCUSD"]
                # After: exactly, including Coinbase's futures product ids.
                assert cb.market_id("BTCUSD-PERP") == "BIP-20DEC30-CDE"
                assert cb.from_venue_symbol("BIP-20DEC30-CDE") == "BTCUSD-PERP"
                assert cb.from_venue_symbol("ETH/USD") == "ETHUSD"
                with pytest.raises(UnknownSymbolError, match="Did you mean 'BTCUSD'"):
                    await cb.get_historical_data("BTCUSE", "1d", UTC_START, UTC_END)

        run(scenario)


def test_every_ccxt_url_is_rebased_on_the_local_server() -> None:
    """Any exchange id: every API URL ccxt would use gets the local scheme and host."""

    async def scenario() -> None:
        for exchange_id in ("coinbase", "binance", "kraken"):
            cfg = CcxtConfig(exchange_id=exchange_id, base_url="http://127.0.0.1:9")
            connector = CcxtConnector(cfg, secrets=StaticSecretProvider())
            ex = connector.exchange()
            urls: list[str] = []

            def walk(node: Any, out: list[str] = urls) -> None:
                if isinstance(node, dict):
                    for value in node.values():
                        walk(value, out)
                elif isinstance(node, str):
                    out.append(node)

            walk(ex.urls["api"])
            assert urls, exchange_id
            assert all(u.startswith("http://127.0.0.1:9") for u in urls), (exchange_id, urls)
            assert ex.enableRateLimit is False  # the base class's limiter rules
            await connector.aclose()

    run(scenario)


def test_the_host_guard_refuses_the_real_venue() -> None:
    """Without base_url ccxt would call api.coinbase.com; the test session refuses to resolve it."""

    async def scenario() -> None:
        async with local_only_session() as (session, hosts, resolver):
            cfg = CoinbaseConfig(retry=ONCE, request_timeout_s=1.0, rate_limit_per_s=None)
            cb = CoinbaseConnector(cfg, secrets=StaticSecretProvider(), session=session)
            with pytest.raises(VenueUnavailableError):
                await cb.get_historical_data("BTCUSD", "1d", UTC_START, UTC_END)
            await cb.aclose()
        assert set(resolver.refused) == {"api.coinbase.com"}
        assert set(hosts) == {"api.coinbase.com:443"}

    run(scenario)


# ---------------------------------------------------------------------- market data


def test_history_is_the_real_sample_paginated_300_at_a_time(cdp_key: CdpKey, sample: pd.DataFrame) -> None:
    venue = CoinbaseVenue(cdp_key=cdp_key)
    with venue.serve() as server:

        async def scenario() -> pd.DataFrame:
            async with connect(server.url, cdp_secrets(cdp_key)) as cb:
                return await cb.get_historical_data("BTCUSD", "1d", UTC_START, UTC_END)

        bars = run(scenario)
    expected = sample[sample["symbol"] == "BTCUSD"].reset_index(drop=True)
    pd.testing.assert_frame_equal(bars, expected)
    days = (expected["ts"].iloc[-1] - UTC_START).days
    assert venue.stats.candle_requests >= days / 300


def test_history_has_only_completed_candles(cdp_key: CdpKey) -> None:
    now = datetime(2024, 5, 1, 12, 0, 30, tzinfo=UTC)
    clock = AcceleratedClock(now, speed=1.0)
    venue = CoinbaseVenue(cdp_key=cdp_key, clock=clock.time)
    with venue.serve() as server:

        async def scenario() -> pd.DataFrame:
            async with connect(server.url, cdp_secrets(cdp_key), clock=clock) as cb:
                return await cb.get_historical_data(
                    "ETHUSD", "1m", datetime(2024, 5, 1, 11, 30, tzinfo=UTC), now + timedelta(hours=1)
                )

        bars = run(scenario)
    assert len(bars) == 30  # 11:30 .. 11:59; the 12:00 candle is still open
    assert bars["ts"].iloc[-1] == pd.Timestamp("2024-05-01 11:59", tz="UTC")
    assert bars["ts"].diff().dropna().eq(pd.Timedelta(minutes=1)).all()
    served = venue.candle("ETH-USD", 60, int(bars["ts"].iloc[-1].timestamp()))
    assert served is not None
    assert bars["close"].iloc[-1] == float(served["close"])


def test_a_timeframe_coinbase_lacks_is_refused(cdp_key: CdpKey) -> None:
    venue = CoinbaseVenue(cdp_key=cdp_key)
    with venue.serve() as server:

        async def scenario() -> None:
            async with connect(server.url, cdp_secrets(cdp_key)) as cb:
                with pytest.raises(ConfigError, match="no 4h candles"):
                    await cb.get_historical_data("BTCUSD", "4h", UTC_START, UTC_END)

        run(scenario)


def test_quote_stream_polls_top_of_book(cdp_key: CdpKey) -> None:
    clock = AcceleratedClock(datetime(2024, 5, 1, tzinfo=UTC), speed=600.0)
    venue = CoinbaseVenue(cdp_key=cdp_key, clock=clock.time)
    with venue.serve() as server:

        async def scenario() -> list[Quote]:
            quotes: list[Quote] = []
            async with connect(server.url, cdp_secrets(cdp_key), clock=clock, stream="quotes") as cb:
                async for event in cb.get_real_time_data(["BTCUSD", "ETHUSD"]):
                    assert isinstance(event, Quote)
                    quotes.append(event)
                    if len(quotes) >= 20:
                        break
            return quotes

        quotes = run(scenario)
    assert {q.symbol for q in quotes} == {"BTCUSD", "ETHUSD"}
    for symbol in ("BTCUSD", "ETHUSD"):
        stamps = [q.ts for q in quotes if q.symbol == symbol]
        assert stamps == sorted(stamps)
        assert len(set(stamps)) == len(stamps)
    assert all(q.bid < q.ask and q.bid_size == 1.5 and q.ask_size == 2.5 for q in quotes)
    assert all(q.exchange == "coinbase" and q.ts_received is not None for q in quotes)


# ---------------------------------------------------------------------- orders and account


def test_orders_carry_our_client_id_and_the_venue_deduplicates(cdp_key: CdpKey) -> None:
    venue = CoinbaseVenue(cdp_key=cdp_key)
    with venue.serve() as server:

        async def scenario() -> None:
            async with connect(server.url, cdp_secrets(cdp_key)) as cb:
                sell = await cb.place_order(*approved(order(1)))
                assert sell.status is OrderStatus.FILLED
                assert sell.filled_quantity == pytest.approx(0.001)
                assert sell.avg_fill_price is not None
                assert sell.avg_fill_price > 0
                buy = await cb.place_order(*approved(order(2, side=Side.BUY, quantity=0.01)))
                # A Coinbase market buy is sized in USD from the ask; the base amount comes back within fees.
                assert buy.status is OrderStatus.FILLED
                assert buy.filled_quantity == pytest.approx(0.01, rel=0.01)
                # The same client id again: Coinbase returns the existing order instead of a second one.
                again = await cb.exchange().create_order(
                    "BTC/USD", "market", "sell", 0.001, None, {"client_order_id": "t-00001"}
                )
                assert again["id"] == sell.venue_order_id

        run(scenario)
    assert [o["client_order_id"] for o in venue.orders] == ["t-00001", "t-00002"]
    assert venue.stats.deduplicated_creates == 1


def test_limit_order_lifecycle_and_rejections(cdp_key: CdpKey) -> None:
    venue = CoinbaseVenue(cdp_key=cdp_key)
    with venue.serve() as server:

        async def scenario() -> None:
            async with connect(server.url, cdp_secrets(cdp_key)) as cb:
                resting = order(
                    10, side=Side.BUY, order_type=OrderType.LIMIT, limit_price=1000.0, quantity=0.5
                )
                placed = await cb.place_order(*approved(resting))
                assert placed.status is OrderStatus.ACCEPTED
                assert placed.venue_order_id
                assert (await cb.get_order("t-00010")).venue_order_id == placed.venue_order_id
                stop = order(11, order_type=OrderType.STOP_LIMIT, limit_price=900.0, stop_price=950.0)
                assert (await cb.place_order(*approved(stop))).status is OrderStatus.ACCEPTED
                cancelled = await cb.cancel_order("t-00010")
                assert cancelled.status is OrderStatus.CANCELLED
                # Cancelling a finished order reports its final state.
                assert (await cb.cancel_order("t-00010")).status is OrderStatus.CANCELLED
                with pytest.raises(ConnectorError, match="no order"):
                    await cb.get_order("never-sent")
                creates = venue.stats.create_requests
                with pytest.raises(OrderRejectedError, match="Insufficient balance"):
                    await cb.place_order(*approved(order(12, quantity=500.0)))
                with pytest.raises(OrderRejectedError, match="time_in_force='day'"):
                    await cb.place_order(
                        *approved(
                            order(
                                13, order_type=OrderType.LIMIT, limit_price=1e6, time_in_force=TimeInForce.DAY
                            )
                        )
                    )
                with pytest.raises(OrderRejectedError, match="stop limit orders"):
                    await cb.place_order(*approved(order(14, order_type=OrderType.STOP, stop_price=100.0)))
                assert venue.stats.create_requests == creates + 1  # rejections are never retried

        run(scenario)


def test_an_order_is_found_by_client_id_deep_in_the_order_list(cdp_key: CdpKey) -> None:
    """A connector that did not send the order pages through the venue's list (newest first, cursor)."""
    venue = CoinbaseVenue(cdp_key=cdp_key)
    with venue.serve() as server:

        async def scenario() -> None:
            async with connect(server.url, cdp_secrets(cdp_key)) as sender:
                for i in range(120):
                    await sender.place_order(
                        *approved(order(i, side=Side.BUY, order_type=OrderType.LIMIT, limit_price=1000.0))
                    )
            listed = venue.stats.paths["/api/v3/brokerage/orders/historical/batch"]
            async with connect(server.url, cdp_secrets(cdp_key), order_page_size=50) as other:
                oldest = await other.get_order("t-00000")
                assert oldest.venue_order_id == venue.orders[0]["order_id"]
                assert oldest.status is OrderStatus.ACCEPTED
            assert venue.stats.paths["/api/v3/brokerage/orders/historical/batch"] - listed == 3

        run(scenario)


def test_account_and_positions_spot_and_perpetual(cdp_key: CdpKey) -> None:
    venue = CoinbaseVenue(cdp_key=cdp_key, accounts_page_size=2)
    with venue.serve() as server:

        async def scenario() -> None:
            async with connect(server.url, cdp_secrets(cdp_key)) as cb:
                perp = await cb.place_order(
                    *approved(order(20, symbol="BTCUSD-PERP", side=Side.BUY, quantity=0.05))
                )
                assert perp.status is OrderStatus.FILLED
                assert perp.filled_quantity == pytest.approx(0.05)  # 5 contracts of 0.01 BTC
                account = await cb.get_account()
                positions = await cb.get_positions()
            assert account.currency == "USD"
            assert account.venue == "coinbase"
            assert account.cash == pytest.approx(venue.balances["USD"])
            btc, eth = positions["BTCUSD"], positions["ETHUSD"]
            assert btc.quantity == pytest.approx(2.0)
            assert eth.quantity == pytest.approx(10.0)
            assert account.equity == pytest.approx(
                account.cash + btc.market_value + eth.market_value, rel=1e-3
            )
            assert "LTCUSD" not in positions  # a zero balance is no position
            future = positions["BTCUSD-PERP"]
            assert future.quantity == pytest.approx(0.05)
            assert future.avg_cost == pytest.approx(perp.avg_fill_price)

        run(scenario)
    assert venue.stats.paths["/api/v3/brokerage/accounts"] >= 2  # followed the cursor


# ---------------------------------------------------------------------- credentials


def test_legacy_hmac_keys_are_signed_too() -> None:
    key = HmacKey.generate()
    venue = CoinbaseVenue(hmac_key=key)
    with venue.serve() as server:

        async def scenario() -> None:
            secrets = StaticSecretProvider(api_key=key.key, api_secret=key.secret)
            async with connect(server.url, secrets) as cb:
                assert (await cb.place_order(*approved(order(30)))).status is OrderStatus.FILLED
                assert (await cb.get_account()).cash > 0

        run(scenario)
    assert venue.stats.auth_failures == 0
    assert len(venue.orders) == 1


def test_credentials_come_from_the_environment_by_default(
    cdp_key: CdpKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ALPHALOOM_COINBASE_API_KEY", cdp_key.name)
    monkeypatch.setenv("ALPHALOOM_COINBASE_API_SECRET", cdp_key.private_pem)
    venue = CoinbaseVenue(cdp_key=cdp_key)
    with venue.serve() as server:

        async def scenario() -> None:
            async with local_only_session() as (session, _, _):
                cb = CoinbaseConnector(config(server.url), session=session)
                assert isinstance(cb.secrets, EnvSecretProvider)
                assert (await cb.get_account()).cash == pytest.approx(1_000_000.0)
                await cb.aclose()

        run(scenario)
    assert venue.stats.auth_failures == 0


def test_missing_credentials_allow_public_data_and_name_the_variables(
    cdp_key: CdpKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ALPHALOOM_COINBASE_API_KEY", raising=False)
    monkeypatch.delenv("ALPHALOOM_COINBASE_API_SECRET", raising=False)
    venue = CoinbaseVenue(cdp_key=cdp_key)
    with venue.serve() as server:

        async def scenario() -> None:
            async with connect(server.url, None) as cb:
                bars = await cb.get_historical_data("ETHUSD", "1d", UTC_START, UTC_END)
                assert len(bars) == 788
                with pytest.raises(AuthenticationError, match="ALPHALOOM_COINBASE_API_KEY"):
                    await cb.get_account()

        run(scenario)


def test_secrets_never_reach_logs_reprs_or_errors(caplog: pytest.LogCaptureFixture) -> None:
    """A legacy key puts the key itself in a header; a proxy echoes headers into its error page."""
    good = HmacKey.generate()
    wrong = HmacKey(key=good.key, secret=HmacKey.generate().secret)
    venue = CoinbaseVenue(hmac_key=good, echo_auth_in_errors=True)
    caplog.set_level(logging.DEBUG)
    with venue.serve() as server:

        async def scenario() -> tuple[list[BaseException], str]:
            secrets = StaticSecretProvider(api_key=wrong.key, api_secret=wrong.secret)
            async with connect(server.url, secrets, retry=ONCE) as cb:
                errors: list[BaseException] = []
                for call in (cb.get_account, cb.get_positions, lambda: cb.place_order(*approved(order(40)))):
                    with pytest.raises(AuthenticationError) as info:
                        await call()
                    errors.append(info.value)
                return errors, repr(cb) + repr(cb.secrets) + str(cb.health())

        errors, reprs = run(scenario)
    assert venue.stats.auth_failures == 3  # refused once each: credentials are never retried
    texts = [reprs, caplog.text]
    for error in errors:
        texts += [str(error), repr(error), str(error.__cause__), repr(error.__cause__)]
    assert "CB-ACCESS-KEY: ***" in str(errors[0].__cause__)  # the echo was there, masked
    assert "Request" in caplog.text  # ccxt logged its requests at DEBUG, through the mask
    for text in texts:
        assert wrong.key not in text
        assert wrong.secret not in text


def test_a_cdp_key_never_appears_in_debug_logs(cdp_key: CdpKey, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    venue = CoinbaseVenue(cdp_key=cdp_key)
    with venue.serve() as server:

        async def scenario() -> None:
            async with connect(server.url, cdp_secrets(cdp_key)) as cb:
                await cb.get_account()
                await cb.place_order(*approved(order(41)))

        run(scenario)
    assert "Bearer ***" in caplog.text
    pem_lines = [line for line in cdp_key.private_pem.splitlines() if "-----" not in line]
    assert cdp_key.name not in caplog.text
    assert not any(line in caplog.text for line in pem_lines)


# ---------------------------------------------------------------------- error classification


@pytest.mark.parametrize(
    ("kind", "error", "match"),
    [
        (FaultKind.HTTP_429, RateLimitError, "rate-limited"),
        (FaultKind.HTTP_503, VenueUnavailableError, "HTTP 503"),
        (FaultKind.HTTP_500, VenueUnavailableError, "HTTP 500"),
        (FaultKind.TRUNCATED, VenueUnavailableError, "malformed body"),
        (FaultKind.GARBLED, VenueUnavailableError, "malformed body"),
        (FaultKind.SLOW, VenueUnavailableError, "RequestTimeout"),
        (FaultKind.DISCONNECT, VenueUnavailableError, "unavailable"),
    ],
)
def test_each_fault_becomes_a_retryable_error(
    cdp_key: CdpKey, kind: FaultKind, error: type[Exception], match: str
) -> None:
    """Never an empty result: a garbled page of candles is an error, not "no candles"."""
    faults = coinbase_faults(1.0, weights={kind: 1.0}, retry_after="7", slow_delay_s=0.5)
    venue = CoinbaseVenue(cdp_key=cdp_key, faults=faults)
    with venue.serve() as server:

        async def scenario() -> None:
            async with connect(server.url, cdp_secrets(cdp_key), retry=ONCE) as cb:
                with pytest.raises(error, match=match) as info:
                    await cb.get_historical_data("BTCUSD", "1d", UTC_START, UTC_END)
                if kind is FaultKind.HTTP_429:
                    assert info.value.retry_after_s == 7.0  # type: ignore[attr-defined]

        run(scenario)


@pytest.mark.parametrize(
    ("vendor", "ours"),
    [
        (cx.NetworkError, VenueUnavailableError),
        (cx.RequestTimeout, VenueUnavailableError),
        (cx.ExchangeNotAvailable, VenueUnavailableError),
        (cx.OnMaintenance, VenueUnavailableError),
        (cx.BadResponse, VenueUnavailableError),
        (cx.DDoSProtection, RateLimitError),
        (cx.RateLimitExceeded, RateLimitError),
        (cx.AuthenticationError, AuthenticationError),
        (cx.PermissionDenied, AuthenticationError),
        (cx.InsufficientFunds, OrderRejectedError),
        (cx.InvalidOrder, OrderRejectedError),
        (cx.OrderNotFound, ConnectorError),
        (cx.BadSymbol, UnknownSymbolError),
        (cx.NotSupported, ConnectorError),
        (cx.ExchangeError, ConnectorError),
    ],
)
def test_ccxt_errors_map_onto_ours_with_credentials_masked(
    vendor: type[Exception], ours: type[Exception]
) -> None:
    secrets = StaticSecretProvider(api_key="key-4f2a9c", api_secret="secret-77d1e0b3")
    connector = CoinbaseConnector(CoinbaseConfig(), secrets=secrets)
    connector._load_credentials()
    exc = vendor("coinbase said: CB-ACCESS-KEY: key-4f2a9c sig secret-77d1e0b3")
    translated = connector._translate_error(exc)
    assert type(translated) is ours
    assert "key-4f2a9c" not in str(translated)
    assert "secret-77d1e0b3" not in str(translated)
    assert "key-4f2a9c" not in str(exc)  # the chained vendor error is scrubbed too
    assert connector._translate_error(ValueError("not ccxt")) is None


# ---------------------------------------------------------------------- fault injection


def test_history_under_faults_returns_every_bar_exactly_once(
    cdp_key: CdpKey, sample: pd.DataFrame, record_property: Callable[[str, object], None]
) -> None:
    faults = coinbase_faults(FAULT_RATE, seed=11)
    venue = CoinbaseVenue(cdp_key=cdp_key, faults=faults)
    with venue.serve() as server:

        async def scenario() -> dict[str, pd.DataFrame]:
            async with connect(server.url, cdp_secrets(cdp_key), retry=FAULT_RETRY) as cb:
                return {
                    s: await cb.get_historical_data(s, "1d", UTC_START, UTC_END)
                    for s in ("BTCUSD", "ETHUSD", "LTCUSD")
                }

        got = run(scenario)
    for symbol, bars in got.items():
        expected = sample[sample["symbol"] == symbol].reset_index(drop=True)
        pd.testing.assert_frame_equal(bars, expected)
    stats = faults.stats
    record_property("history_requests", stats.requests)
    record_property("history_requests_failed", stats.failed)
    record_property("history_bars", sum(len(b) for b in got.values()))
    print(f"coinbase history under faults: {stats.summary()}; bars={sum(len(b) for b in got.values())}")
    assert stats.failed >= 10
    assert 0.15 < stats.failure_share < 0.40


@pytest.mark.parametrize("venue_dedups", [True, False], ids=["coinbase-dedup", "no-venue-dedup"])
def test_orders_under_faults_are_placed_exactly_once(
    cdp_key: CdpKey, venue_dedups: bool, record_property: Callable[[str, object], None]
) -> None:
    """300 orders, 25 in flight, through 25% failing requests: every order placed, none twice.

    ``coinbase-dedup``: the venue as Coinbase documents it (a reused ``client_order_id`` returns the existing
    order) and every fault kind, slow answers included. A request that timed out on our side may still be
    processed later, so a connector alone can never rule out a resend racing it: the client id it passes is
    what makes the venue refuse the second order.

    ``no-venue-dedup``: a venue that would accept a duplicate, and faults that all come after the venue
    decided (errors, answers lost, cut short or garbled, dropped connections; no client timeouts): here only
    the connector's look-up before resending prevents duplicates.
    """
    n_orders = 300
    weights = dict.fromkeys(FaultKind, 1.0)
    if not venue_dedups:
        weights.pop(FaultKind.SLOW)
    faults = coinbase_faults(FAULT_RATE, seed=5, weights=weights, slow_delay_s=1.5)
    venue = CoinbaseVenue(cdp_key=cdp_key, faults=faults, dedup_client_order_ids=venue_dedups)
    with venue.serve() as server:

        async def scenario() -> list[Any]:
            # Slow answers (1.5 s) outlast the 1 s request timeout; ordinary ones stay well inside it even
            # on a busy machine.
            request_timeout_s = 1.0 if venue_dedups else 10.0
            async with connect(
                server.url,
                cdp_secrets(cdp_key),
                timeout_s=20.0,
                request_timeout_s=request_timeout_s,
                retry=FAULT_RETRY,
            ) as cb:
                slots = asyncio.Semaphore(25)

                async def place(i: int) -> Any:
                    if i % 3 == 0:
                        o = order(i, side=Side.BUY, order_type=OrderType.LIMIT, limit_price=1000.0)
                    elif i % 3 == 1:
                        o = order(i, side=Side.BUY, quantity=0.0005)  # sized in USD from the ask
                    else:
                        o = order(i)
                    async with slots:
                        return await cb.place_order(*approved(o))

                results = await asyncio.gather(*(place(i) for i in range(n_orders)), return_exceptions=True)
                health = cb.health()
            return [results, health]

        results, health = run(scenario)
    failures = [r for r in results if isinstance(r, BaseException)]
    per_cid = venue.orders_per_client_id()
    duplicates = venue.duplicate_orders()
    stats = faults.stats
    tag = "orders_" + ("venue_dedup" if venue_dedups else "no_venue_dedup")
    record_property(f"{tag}_requests", stats.requests)
    record_property(f"{tag}_requests_failed", stats.failed)
    record_property(f"{tag}_placed", len(per_cid))
    record_property(f"{tag}_duplicates", duplicates)
    record_property(f"{tag}_resends_refused_by_venue", venue.stats.deduplicated_creates)
    record_property(f"{tag}_retries", health.retries)
    print(
        f"coinbase orders under faults ({tag}): {stats.summary()}; orders placed={len(per_cid)}/{n_orders} "
        f"duplicates={duplicates} resends refused by the venue={venue.stats.deduplicated_creates} "
        f"retries={health.retries}"
    )
    assert not failures, failures[:3]
    assert duplicates == 0
    assert sorted(per_cid) == [f"t-{i:05d}" for i in range(n_orders)]
    by_cid = {o["client_order_id"]: o["order_id"] for o in venue.orders}
    assert all(r.venue_order_id == by_cid[r.client_order_id] for r in results)
    lost_answers = sum(stats.by_kind[k] for k in ("http_500", "truncated", "garbled", "disconnect", "slow"))
    assert lost_answers > 10
    assert 0.15 < stats.failure_share < 0.40


def test_bar_stream_under_faults_has_no_gap_and_no_duplicate(
    cdp_key: CdpKey, record_property: Callable[[str, object], None]
) -> None:
    """Polled 1-minute bars on a clock running 1200x: failures drop the stream, history fills the gap."""
    clock = AcceleratedClock(datetime(2024, 5, 1, 9, 0, 10, tzinfo=UTC), speed=1200.0)
    faults = coinbase_faults(FAULT_RATE, seed=3, slow_delay_s=0.3)
    venue = CoinbaseVenue(cdp_key=cdp_key, faults=faults, clock=clock.time)
    symbols = ["BTCUSD", "ETHUSD"]
    per_symbol = 40
    with venue.serve() as server:

        async def scenario() -> tuple[list[Bar], Any]:
            bars: list[Bar] = []
            # Two tries per poll, then the stream drops; reconnecting waits 0.06 s (over one bar at 1200x), so
            # every reconnect leaves a gap for the base class to backfill from history.
            retry = RetryPolicy(max_attempts=2, base_delay_s=0.06, max_delay_s=0.06, jitter="none")
            async with connect(
                server.url, cdp_secrets(cdp_key), clock=clock, retry=retry, stream_reconnect_max=50
            ) as cb:
                async for event in cb.get_real_time_data(symbols):
                    assert isinstance(event, Bar)
                    bars.append(event)
                    if min(sum(b.symbol == s for b in bars) for s in symbols) >= per_symbol:
                        break
                return bars, cb.health()

        bars, health = run(scenario)
    for symbol in symbols:
        stamps = [b.ts for b in bars if b.symbol == symbol]
        steps = {b - a for a, b in itertools.pairwise(stamps)}
        assert steps == {timedelta(minutes=1)}, f"{symbol}: gap or duplicate in {stamps}"
        for bar in bars:
            served = venue.candle(bar.symbol[:3] + "-USD", 60, int(bar.ts.timestamp()))
            assert served is not None
            assert bar.close == float(served["close"])
    assert all(b.timeframe == "1m" and b.ts + timedelta(minutes=1) <= clock.now() for b in bars)
    stats = faults.stats
    record_property("stream_requests", stats.requests)
    record_property("stream_requests_failed", stats.failed)
    record_property("stream_bars", len(bars))
    record_property("stream_reconnects", health.stream_reconnects)
    record_property("stream_backfilled_bars", health.backfilled_bars)
    print(
        f"coinbase bar stream under faults: {stats.summary()}; bars={len(bars)} "
        f"reconnects={health.stream_reconnects} backfilled={health.backfilled_bars} "
        f"duplicates_dropped={health.duplicates_dropped}"
    )
    assert stats.failed >= 10
    assert health.stream_reconnects >= 1
    assert health.backfilled_bars >= 1
