"""RobinhoodConnector against a local server (no test reaches the internet).

The server verifies every crypto request's Ed25519 signature with the registered public key, as the Crypto
Trading API documents; tests generate throwaway keys. The unofficial equities/options path is tested with and
without the opt-in. Fault injection: 25% of requests failing (5xx, 429 with Retry-After, timeouts, truncated
or garbled JSON, dropped connections) while hundreds of orders are placed and quotes are streamed.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any, TypeVar

import httpx
import pandas as pd
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from tests.data.connectors.approvals import approved
from tests.data.connectors.servers import LocalServer
from tests.data.connectors.servers.faults import FaultInjector, FaultKind, FaultPlan
from tests.data.connectors.servers.robinhood_server import (
    MISSING_HEADERS,
    RobinhoodVenue,
    RobinhoodVenueConfig,
)

from alphaloom.core.clock import SimulatedClock
from alphaloom.core.exceptions import (
    AuthenticationError,
    ConfigError,
    ConnectorError,
    OrderRejectedError,
)
from alphaloom.core.resilience import BreakerConfig, RetryPolicy
from alphaloom.core.secrets import EnvSecretProvider, StaticSecretProvider
from alphaloom.core.types import Order, OrderStatus, Quote
from alphaloom.data.connectors import get_connector_class
from alphaloom.data.connectors import robinhood as rh_module
from alphaloom.data.connectors.robinhood import (
    UNOFFICIAL_WARNING,
    RobinhoodConfig,
    RobinhoodConnector,
    load_private_key,
    sign_request,
    venue_client_id,
)

T = TypeVar("T")
VENUE_NOW = datetime(2024, 3, 6, 20, 0, tzinfo=UTC)
ORDERS = "/api/v1/crypto/trading/orders/"


def run(fn: Callable[[], Coroutine[Any, Any, T]]) -> T:
    return asyncio.run(fn())


@dataclass
class Keys:
    """Throwaway credentials for one test."""

    api_key: str
    private: Ed25519PrivateKey
    seed_b64: str
    password: str
    access_token: str

    @property
    def public(self) -> bytes:
        return self.private.public_key().public_bytes_raw()


@pytest.fixture
def keys() -> Keys:
    private = Ed25519PrivateKey.generate()
    seed = base64.b64encode(private.private_bytes_raw()).decode()
    nonce = base64.b32encode(private.public_key().public_bytes_raw()[:10]).decode().lower()
    return Keys(f"rh-api-{nonce}", private, seed, f"pw-{nonce}", f"tok-{nonce}")


def start_venue(keys: Keys, **overrides: Any) -> tuple[RobinhoodVenue, LocalServer]:
    faults = overrides.pop("faults", None)
    config = RobinhoodVenueConfig(
        api_key=keys.api_key,
        public_key=keys.public,
        password=keys.password,
        access_token=keys.access_token,
        **overrides,
    )
    venue = RobinhoodVenue(config, faults=faults)
    return venue, LocalServer(venue.app).start()


@pytest.fixture
def served(keys: Keys) -> Iterator[tuple[RobinhoodVenue, LocalServer]]:
    venue, server = start_venue(keys)
    yield venue, server
    server.stop()


def secrets_for(keys: Keys, *, equities: bool = False, token: bool = False) -> StaticSecretProvider:
    values = {"api_key": keys.api_key, "private_key": keys.seed_b64}
    if equities and token:
        values["access_token"] = keys.access_token
    elif equities:
        values.update(username="trader@example.com", password=keys.password)
    return StaticSecretProvider(values)


def make_connector(server: LocalServer, keys: Keys, **overrides: Any) -> RobinhoodConnector:
    token = overrides.pop("token", False)
    settings: dict[str, Any] = {
        "base_url": server.url,
        "equities_base_url": server.url,
        "timeout_s": 2.0,
        "rate_limit_per_s": None,
        "retry": RetryPolicy(max_attempts=3, base_delay_s=0.001, max_delay_s=0.005),
        "breaker": BreakerConfig(failure_threshold=100, reset_timeout_s=0.01),
        "poll_interval_s": 0.005,
    }
    settings.update(overrides)
    config = RobinhoodConfig(**settings)
    equities = config.enable_unofficial_equities
    return RobinhoodConnector(
        config, secrets=secrets_for(keys, equities=equities, token=token), clock=SimulatedClock(VENUE_NOW)
    )


def order(symbol: str = "BTCUSD", side: str = "buy", quantity: float = 0.01, **kw: Any) -> Order:
    return Order(symbol=symbol, side=side, quantity=quantity, ts=VENUE_NOW, **kw)


# ---------------------------------------------------------------------- signing and ids


def test_signature_covers_key_timestamp_path_method_and_body(keys: Keys) -> None:
    path = "/api/v1/crypto/trading/orders/?symbol=BTC-USD"
    body = '{"client_order_id":"x"}'
    signature = sign_request(keys.api_key, keys.private, 1_700_000_000, path, "POST", body)
    message = f"{keys.api_key}1700000000{path}POST{body}".encode()
    keys.private.public_key().verify(base64.b64decode(signature), message)  # raises if wrong
    assert signature != sign_request(keys.api_key, keys.private, 1_700_000_001, path, "POST", body)
    # The key loads from its base64 seed, or from 64 bytes (seed + public key, as PyNaCl stores it).
    assert load_private_key(keys.seed_b64).public_key().public_bytes_raw() == keys.public
    sixty_four = base64.b64encode(keys.private.private_bytes_raw() + keys.public).decode()
    assert load_private_key(sixty_four).public_key().public_bytes_raw() == keys.public


def test_a_malformed_private_key_is_a_config_error_that_does_not_echo_it() -> None:
    bad = "bm90LWEta2V5LWF0LWFsbA=="
    with pytest.raises(ConfigError, match="32-byte Ed25519 seed") as info:
        load_private_key(bad)
    assert bad not in str(info.value)
    with pytest.raises(ConfigError):
        load_private_key("***not base64***")


def test_client_ids_map_to_stable_uuids() -> None:
    cid = "al-0123456789abcdef0123456789abcdef"
    assert venue_client_id(cid) == venue_client_id(cid)
    assert venue_client_id(cid) != venue_client_id(cid + "0")
    uid = "6f0d4a52-91c4-4b57-9a0e-7d1f2b7c9e10"
    assert venue_client_id(uid) == uid


# ---------------------------------------------------------------------- config, symbols, opt-in


def test_symbols_and_the_equities_opt_in(caplog: pytest.LogCaptureFixture) -> None:
    assert get_connector_class("robinhood") is RobinhoodConnector
    assert RobinhoodConfig().base_url == "https://trading.robinhood.com"
    with caplog.at_level(logging.WARNING):
        crypto_only = RobinhoodConnector(RobinhoodConfig(), secrets=StaticSecretProvider())
    assert UNOFFICIAL_WARNING not in caplog.text
    assert crypto_only.to_venue_symbol("BTCUSD") == "BTC-USD"
    assert crypto_only.from_venue_symbol("DOGE-USD") == "DOGEUSD"
    with pytest.raises(ConfigError, match="'BTCUSD'"):
        crypto_only.to_venue_symbol("BTC-USD")
    for stock in ("SPY", "AAPL", "BRK.B", "AAPL240419C00180000"):
        with pytest.raises(ConfigError, match="enable_unofficial_equities=True"):
            crypto_only.to_venue_symbol(stock)
    with caplog.at_level(logging.WARNING):
        opted_in = RobinhoodConnector(
            RobinhoodConfig(enable_unofficial_equities=True), secrets=StaticSecretProvider()
        )
    assert UNOFFICIAL_WARNING in caplog.text
    assert "may violate Robinhood's terms" in caplog.text
    assert opted_in.to_venue_symbol("SPY") == "SPY"


def test_stock_symbols_without_the_opt_in_fail_before_any_request(
    served: tuple[RobinhoodVenue, LocalServer], keys: Keys
) -> None:
    venue, server = served

    async def main() -> None:
        async with make_connector(server, keys) as rh:
            with pytest.raises(ConfigError, match="enable_unofficial_equities"):
                await rh.get_historical_data("SPY", "1d", VENUE_NOW - timedelta(days=30), VENUE_NOW)
            with pytest.raises(ConfigError, match="enable_unofficial_equities"):
                await rh.place_order(*approved(order("AAPL", quantity=1)))
            with pytest.raises(ConfigError, match="enable_unofficial_equities"):
                async for _ in rh.get_real_time_data(["MSFT"]):
                    pass

    run(main)
    assert venue.requests == []


def test_crypto_history_is_a_clear_error(served: tuple[RobinhoodVenue, LocalServer], keys: Keys) -> None:
    _, server = served

    async def main() -> None:
        async with make_connector(server, keys) as rh:
            await rh.get_historical_data("BTCUSD", "1h", VENUE_NOW - timedelta(days=1), VENUE_NOW)

    with pytest.raises(ConnectorError, match="no candles") as info:
        run(main)
    assert "store" in str(info.value)
    assert "coinbase" in str(info.value)


# ---------------------------------------------------------------------- the server checks signatures


def test_signed_requests_pass_and_bad_or_stale_signatures_get_401(
    served: tuple[RobinhoodVenue, LocalServer], keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    venue, server = served
    other = Ed25519PrivateKey.generate()

    async def account(secrets: StaticSecretProvider) -> Any:
        cfg = RobinhoodConfig(base_url=server.url, rate_limit_per_s=None, timeout_s=2.0)
        async with RobinhoodConnector(cfg, secrets=secrets) as rh:
            return await rh.get_account()

    good = run(lambda: account(secrets_for(keys)))
    assert good.account_id == venue.account_number
    assert good.cash == venue.config.buying_power
    wrong_key = StaticSecretProvider(
        api_key=keys.api_key, private_key=base64.b64encode(other.private_bytes_raw()).decode()
    )
    with pytest.raises(AuthenticationError, match="API key or signature") as info:
        run(lambda: account(wrong_key))
    assert keys.api_key not in str(info.value)
    assert venue.auth_failures["signature does not match"] == 1  # refused once, never retried
    unknown = StaticSecretProvider(api_key="rh-api-unknown", private_key=keys.seed_b64)
    with pytest.raises(AuthenticationError):
        run(lambda: account(unknown))
    assert venue.auth_failures["unknown API key"] == 1
    # A timestamp 31 s old (the window is 30 s) is refused: a replayed request would be too.
    real_time = time.time
    monkeypatch.setattr(rh_module, "time", SimpleNamespace(time=lambda: real_time() - 31))
    with pytest.raises(AuthenticationError, match="clock"):
        run(lambda: account(secrets_for(keys)))
    assert venue.auth_failures["timestamp expired"] == 1


def test_server_refuses_missing_headers_and_tampered_bodies(
    served: tuple[RobinhoodVenue, LocalServer], keys: Keys
) -> None:
    venue, server = served
    bare = httpx.get(server.url + "/api/v1/crypto/trading/accounts/")
    assert (bare.status_code, bare.text) == (400, MISSING_HEADERS)
    stamp = int(time.time())
    signed_body = json.dumps({"client_order_id": "a"})
    headers = {
        "x-api-key": keys.api_key,
        "x-timestamp": str(stamp),
        "x-signature": sign_request(keys.api_key, keys.private, stamp, ORDERS, "POST", signed_body),
    }
    tampered = httpx.post(server.url + ORDERS, content=json.dumps({"client_order_id": "b"}), headers=headers)
    assert tampered.status_code == 401
    assert venue.auth_failures["signature does not match"] == 1
    assert venue.order_posts == 0


# ---------------------------------------------------------------------- crypto orders


def test_crypto_orders_of_every_type(served: tuple[RobinhoodVenue, LocalServer], keys: Keys) -> None:
    venue, server = served
    market = order(quantity=0.02)
    limit = order("ETHUSD", quantity=0.5, order_type="limit", limit_price=1000.0)
    stop = order(side="sell", quantity=0.01, order_type="stop", stop_price=50_000.0)
    stop_limit = order(
        side="sell", quantity=0.01, order_type="stop_limit", stop_price=50_000.0, limit_price=49_900.0
    )

    async def main() -> dict[str, Any]:
        async with make_connector(server, keys) as rh:
            placed = [await rh.place_order(*approved(o)) for o in (market, limit, stop, stop_limit)]
            got = await rh.get_order(market.client_order_id)
            cancelled = await rh.cancel_order(limit.client_order_id)
            again = await rh.cancel_order(limit.client_order_id)
            filled_cancel = await rh.cancel_order(market.client_order_id)
            return {
                "placed": placed,
                "got": got,
                "cancelled": cancelled,
                "again": again,
                "filled": filled_cancel,
            }

    out = run(main)
    bought = out["placed"][0]
    assert bought.status is OrderStatus.FILLED
    assert bought.filled_quantity == pytest.approx(0.02)
    assert bought.fills[0].symbol == "BTCUSD"
    assert out["got"] == bought
    assert [r.status for r in out["placed"][1:]] == [OrderStatus.ACCEPTED] * 3
    assert out["cancelled"].status is OrderStatus.CANCELLED
    assert out["again"].status is OrderStatus.CANCELLED
    assert out["filled"].status is OrderStatus.FILLED  # a filled order cannot be cancelled: its state returns
    sent = {o["client_order_id"]: o for o in venue.crypto_orders.values()}
    assert sent[venue_client_id(market.client_order_id)]["market_order_config"] == {"asset_quantity": "0.02"}
    assert sent[venue_client_id(limit.client_order_id)]["limit_order_config"] == {
        "asset_quantity": "0.5",
        "limit_price": "1000",
        "time_in_force": "gtc",
    }
    assert sent[venue_client_id(stop.client_order_id)]["type"] == "stop_loss"
    assert (
        sent[venue_client_id(stop_limit.client_order_id)]["stop_limit_order_config"]["limit_price"] == "49900"
    )


def test_crypto_rejections_and_unknown_orders(served: tuple[RobinhoodVenue, LocalServer], keys: Keys) -> None:
    venue, server = served

    async def main() -> None:
        async with make_connector(server, keys) as rh:
            with pytest.raises(OrderRejectedError, match="Insufficient holdings"):
                await rh.place_order(*approved(order(side="sell", quantity=5)))
            with pytest.raises(OrderRejectedError, match="good-till-cancelled"):
                await rh.place_order(
                    *approved(order(order_type="limit", limit_price=1.0, time_in_force="day"))
                )
            with pytest.raises(ConnectorError, match="no order with client_order_id"):
                await rh.get_order("al-never-sent")
            with pytest.raises(OrderRejectedError, match="no order with client id"):
                await rh.cancel_order("al-never-sent")

    run(main)
    assert venue.order_posts == 1  # the rejected sell, sent once; the bad time-in-force never left


def test_lookups_follow_pagination_and_positions_carry_cost(
    served: tuple[RobinhoodVenue, LocalServer], keys: Keys
) -> None:
    venue, server = served
    buys = [order("BTCUSD", quantity=0.01), order("ETHUSD", quantity=0.2), order("DOGEUSD", quantity=100)]
    buys.append(order("BTCUSD", quantity=0.03))
    sell = order("BTCUSD", side="sell", quantity=0.02)

    async def main() -> tuple[Any, Any, Any]:
        async with make_connector(server, keys) as rh:
            results = [await rh.place_order(*approved(o)) for o in [*buys, sell]]
        async with make_connector(server, keys) as fresh:  # knows none of the ids: lists to find them
            found = [await fresh.get_order(o.client_order_id) for o in buys]
            return results, found, (await fresh.get_positions(), await fresh.get_account())

    results, found, (positions, account) = run(main)
    assert found == results[:4]
    assert any("cursor=" in path for _, path in venue.requests)  # page_size=2: holdings span two pages
    assert set(positions) == {"BTCUSD", "ETHUSD", "DOGEUSD"}
    btc = positions["BTCUSD"]
    assert btc.quantity == pytest.approx(0.02)
    b1, b2 = results[0], results[3]
    assert btc.avg_cost == pytest.approx((0.01 * b1.avg_fill_price + 0.03 * b2.avg_fill_price) / 0.04)
    assert btc.current_price == pytest.approx(float(venue.crypto_quote("BTC-USD", 0)["price"]))
    assert account.cash == pytest.approx(venue.buying_power)
    assert account.equity == pytest.approx(account.cash + sum(p.market_value for p in positions.values()))


def test_crypto_quotes_are_polled_into_utc_quotes(keys: Keys) -> None:
    venue, server = start_venue(keys, now=None, quote_wall_s=0.01)
    try:

        async def main() -> list[Any]:
            events: list[Any] = []
            async with make_connector(server, keys) as rh:
                async for event in rh.get_real_time_data(["BTCUSD", "ETHUSD"]):
                    events.append(event)
                    if len(events) >= 40:
                        return events
            return events

        events = run(main)
    finally:
        server.stop()
    assert all(isinstance(e, Quote) for e in events)
    q = events[-1]
    k = round((q.ts - venue.config.tape_start).total_seconds())
    raw = venue.crypto_quote(q.symbol[:-3] + "-USD", k)
    assert (q.bid, q.ask) == (
        float(raw["bid_inclusive_of_sell_spread"]),
        float(raw["ask_inclusive_of_buy_spread"]),
    )
    assert raw["timestamp"].endswith("-04:00")
    assert q.ts.tzinfo is UTC
    keys_seen = [(e.symbol, e.ts) for e in events]
    assert len(keys_seen) == len(set(keys_seen))


# ---------------------------------------------------------------------- unofficial equities and options


def test_equities_history_with_password_login(served: tuple[RobinhoodVenue, LocalServer], keys: Keys) -> None:
    venue, server = served

    async def main() -> tuple[pd.DataFrame, pd.DataFrame]:
        async with make_connector(server, keys, enable_unofficial_equities=True) as rh:
            daily = await rh.get_historical_data(
                "AAPL", "1d", datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 3, 1, tzinfo=UTC)
            )
            hourly = await rh.get_historical_data(
                "SPY", "1h", datetime(2024, 3, 4, tzinfo=UTC), datetime(2024, 3, 6, tzinfo=UTC)
            )
            with pytest.raises(ConnectorError, match="last 3month"):
                await rh.get_historical_data("SPY", "1h", datetime(2023, 1, 1, tzinfo=UTC), VENUE_NOW)
            with pytest.raises(ConfigError, match="5m, 1h, 1d"):
                await rh.get_historical_data("SPY", "15m", datetime(2024, 3, 4, tzinfo=UTC), VENUE_NOW)
            return daily, hourly

    daily, hourly = run(main)
    assert venue.logins == 1
    days = {ts.date().isoformat() for ts in daily["ts"]}
    assert "2024-01-15" not in days  # market holidays: Robinhood's interpolated bars are left out
    assert "2024-02-19" not in days
    assert "2024-01-16" in days
    assert all(ts.weekday() < 5 and ts.hour == 0 for ts in daily["ts"])
    assert len(daily) == 41
    assert list(hourly["ts"].dt.hour.unique()) == [15, 16, 17, 18, 19, 20]
    assert len(hourly) == 12
    assert (daily["volume"] > 0).all()
    assert any(
        path.startswith("/quotes/historicals/AAPL/?interval=day&span=3month") for _, path in venue.requests
    )


def test_stock_and_option_orders_positions_and_chain(
    served: tuple[RobinhoodVenue, LocalServer], keys: Keys
) -> None:
    venue, server = served
    buy = order("AAPL", quantity=3)
    limit = order("MSFT", quantity=2, order_type="limit", limit_price=100.0, time_in_force="day")
    stop_limit = order(
        "SPY", side="sell", quantity=1, order_type="stop_limit", stop_price=400.0, limit_price=399.0
    )

    async def main() -> dict[str, Any]:
        async with make_connector(server, keys, enable_unofficial_equities=True, token=True) as rh:
            stock = [await rh.place_order(*approved(o)) for o in (buy, limit, stop_limit)]
            cancelled = await rh.cancel_order(limit.client_order_id)
            chain = await rh.get_option_chain("AAPL", "2024-04-19")
            contract = chain.iloc[0]
            option = order(contract.symbol, quantity=2, order_type="limit", limit_price=float(contract.ask))
            with pytest.raises(OrderRejectedError, match="limit orders"):
                await rh.place_order(*approved(order(contract.symbol, quantity=1)))
            placed = await rh.place_order(*approved(option))
            return {
                "stock": stock,
                "cancelled": cancelled,
                "chain": chain,
                "option": placed,
                "found": await rh.get_order(option.client_order_id),
                "positions": await rh.get_positions(),
                "account": await rh.get_account(),
                "contract": contract,
            }

    out = run(main)
    assert venue.logins == 0  # the access_token secret was used as is
    filled, resting, stopped = out["stock"]
    assert filled.status is OrderStatus.FILLED
    assert filled.fills[0].symbol == "AAPL"
    assert (resting.status, stopped.status) == (OrderStatus.ACCEPTED, OrderStatus.ACCEPTED)
    assert out["cancelled"].status is OrderStatus.CANCELLED
    sent = {o["ref_id"]: o for o in venue.stock_orders.values()}
    assert (
        sent[venue_client_id(buy.client_order_id)]["type"],
        sent[venue_client_id(buy.client_order_id)]["trigger"],
    ) == (
        "market",
        "immediate",
    )
    sl = sent[venue_client_id(stop_limit.client_order_id)]
    assert (sl["type"], sl["trigger"], sl["price"], sl["stop_price"]) == ("limit", "stop", "399.00", "400.00")
    assert sent[venue_client_id(limit.client_order_id)]["time_in_force"] == "gfd"
    chain = out["chain"]
    assert set(chain["expiration"]) == {"2024-04-19"}
    assert len(chain) == 10
    assert chain["symbol"].str.match(r"^AAPL240419[CP]\d{8}$").all()
    assert (chain["ask"] > chain["bid"]).all()
    assert out["option"].status is OrderStatus.FILLED
    assert out["option"].avg_fill_price == pytest.approx(float(out["contract"].ask))
    assert out["found"] == out["option"]
    positions = out["positions"]
    assert positions["AAPL"].quantity == 3
    assert positions[out["contract"].symbol].quantity == 2
    assert positions[out["contract"].symbol].avg_cost == pytest.approx(float(out["contract"].ask))
    assert out["account"].account_id == venue.brokerage_account


def test_expired_token_logs_in_again_and_bad_logins_are_auth_errors(
    served: tuple[RobinhoodVenue, LocalServer], keys: Keys
) -> None:
    venue, server = served

    async def main() -> None:
        async with make_connector(server, keys, enable_unofficial_equities=True) as rh:
            await rh.get_historical_data("SPY", "1d", datetime(2024, 2, 1, tzinfo=UTC), VENUE_NOW)
            venue.config.access_token = "rotated-" + keys.access_token
            await rh.get_historical_data("SPY", "1d", datetime(2024, 2, 1, tzinfo=UTC), VENUE_NOW)

    run(main)
    assert venue.logins == 2
    assert venue.auth_failures["token"] == 1

    async def bad_login() -> None:
        cfg = RobinhoodConfig(
            base_url=server.url, equities_base_url=server.url, enable_unofficial_equities=True
        )
        secrets = StaticSecretProvider(username="trader@example.com", password="wrong")
        async with RobinhoodConnector(cfg, secrets=secrets) as rh:
            await rh.get_historical_data("SPY", "1d", datetime(2024, 2, 1, tzinfo=UTC), VENUE_NOW)

    with pytest.raises(AuthenticationError, match="refused the login"):
        run(bad_login)


# ---------------------------------------------------------------------- fault injection

FAULT_MIX = {
    FaultKind.HTTP_500: 1.0,
    FaultKind.HTTP_503: 1.0,
    FaultKind.HTTP_429: 1.0,
    FaultKind.SLOW: 0.5,
    FaultKind.TRUNCATED: 1.0,
    FaultKind.GARBLED: 1.0,
    FaultKind.DISCONNECT: 0.5,
}


def rh_error(status: int) -> dict[str, object]:
    """An injected error in the Crypto Trading API's error format."""
    return {"type": "server_error", "errors": [{"detail": f"injected HTTP {status}", "attr": None}]}


def faulty(server: LocalServer, keys: Keys, **overrides: Any) -> RobinhoodConnector:
    settings: dict[str, Any] = {
        "timeout_s": 0.5,
        "retry": RetryPolicy(max_attempts=15, base_delay_s=0.001, max_delay_s=0.01),
        "breaker": BreakerConfig(failure_threshold=20, reset_timeout_s=0.01),
        "stream_reconnect_max": 50,
    }
    return make_connector(server, keys, **{**settings, **overrides})


@pytest.mark.parametrize("asset", ["crypto", "stock"])
def test_place_order_under_faults_creates_no_duplicates(
    asset: str, keys: Keys, record_property: Callable[[str, object], None]
) -> None:
    plan = FaultPlan(failure_rate=0.25, weights=FAULT_MIX, seed=21, slow_delay_s=0.8, error_body=rh_error)
    faults = FaultInjector(plan, applies_to=lambda r: r.path != "/oauth2/token/")
    # The server creates a second order for a repeated id here, so only the connector prevents duplicates.
    venue, server = start_venue(
        keys, faults=faults, idempotent_client_ids=False, page_size=100, buying_power=10_000_000.0
    )
    count = 300 if asset == "crypto" else 100
    symbols = ["BTCUSD", "ETHUSD", "DOGEUSD"] if asset == "crypto" else ["AAPL", "SPY", "MSFT"]
    orders = [
        order(symbols[i % 3], quantity=0.001 * (i + 1) if asset == "crypto" else i + 1) for i in range(count)
    ]
    try:

        async def main() -> tuple[list[Any], Any]:
            async with faulty(server, keys, enable_unofficial_equities=asset == "stock", token=True) as rh:
                gate = asyncio.Semaphore(10)  # few enough that no answer waits in a queue for timeout_s

                async def place(o: Order) -> Any:
                    async with gate:
                        return await rh.place_order(*approved(o))

                results = await asyncio.gather(*(place(o) for o in orders))
                return results, rh.health()

        results, health = run(main)
    finally:
        server.stop()
    created = venue.created_by_client_id
    summary = (
        f"{asset}: {faults.stats.summary()}; orders={len(orders)} placed={len(created)} "
        f"order_posts={venue.order_posts} duplicates={venue.duplicate_orders} retries={health.retries}"
    )
    record_property(f"robinhood_{asset}_order_faults", summary)
    assert venue.duplicate_orders == 0, summary
    assert set(created) == {venue_client_id(o.client_order_id) for o in orders}, summary
    assert [r.client_order_id for r in results] == [o.client_order_id for o in orders]
    assert all(r.status is OrderStatus.FILLED for r in results), summary
    assert 0.15 <= faults.stats.failure_share <= 0.35, summary


def test_quote_stream_under_faults_loses_and_repeats_nothing(
    keys: Keys, record_property: Callable[[str, object], None]
) -> None:
    plan = FaultPlan(failure_rate=0.25, weights=FAULT_MIX, seed=8, slow_delay_s=0.8, error_body=rh_error)
    faults = FaultInjector(plan)
    venue, server = start_venue(keys, now=None, quote_wall_s=0.01, faults=faults)
    symbols = ["BTCUSD", "ETHUSD"]
    try:

        async def main() -> tuple[list[Any], Any]:
            events: list[Any] = []
            async with faulty(server, keys) as rh:
                async for event in rh.get_real_time_data(symbols):
                    events.append(event)
                    if len(events) >= 300:
                        break
                return events, rh.health()

        events, health = run(main)
    finally:
        server.stop()
    keys_seen = [(e.symbol, e.ts) for e in events]
    assert len(keys_seen) == len(set(keys_seen)), "a quote was yielded twice"
    missing = 0
    for symbol in symbols:
        got = {e.ts for e in events if e.symbol == symbol}
        delivered = {
            datetime.fromisoformat(t).astimezone(UTC)
            for s, t in venue.delivered_quotes
            if s == symbol[:-3] + "-USD"
        }
        missing += len({t for t in delivered if t <= max(got)} - got)
    summary = (
        f"{faults.stats.summary()}; quotes={len(events)} reconnects={health.stream_reconnects} "
        f"duplicates_dropped={health.duplicates_dropped} duplicates_yielded=0 missing={missing}"
    )
    record_property("robinhood_stream_faults", summary)
    assert missing == 0, summary
    assert faults.stats.failed > 0, summary
    assert health.stream_reconnects > 0, summary


# ---------------------------------------------------------------------- credentials


def test_keys_never_appear_in_logs_reprs_or_errors(
    keys: Keys, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ALPHALOOM_ROBINHOOD_API_KEY", keys.api_key)
    monkeypatch.setenv("ALPHALOOM_ROBINHOOD_PRIVATE_KEY", keys.seed_b64)
    monkeypatch.setenv("ALPHALOOM_ROBINHOOD_USERNAME", "trader@example.com")
    monkeypatch.setenv("ALPHALOOM_ROBINHOOD_PASSWORD", keys.password)
    plan = FaultPlan(failure_rate=0.5, weights=FAULT_MIX, seed=2, slow_delay_s=0.8, error_body=rh_error)
    venue, server = start_venue(keys, faults=FaultInjector(plan))
    messages: list[str] = []
    caplog.set_level(logging.DEBUG)
    try:

        async def main() -> None:
            cfg = RobinhoodConfig(
                base_url=server.url,
                equities_base_url=server.url,
                enable_unofficial_equities=True,
                timeout_s=0.3,
                rate_limit_per_s=None,
                retry=RetryPolicy(max_attempts=2, base_delay_s=0.001, max_delay_s=0.002),
            )
            async with RobinhoodConnector(cfg, clock=SimulatedClock(VENUE_NOW)) as rh:  # env credentials
                assert isinstance(rh.secrets, EnvSecretProvider)
                messages.extend([repr(rh), repr(rh.secrets), repr(rh.health()), repr(rh.config)])
                for i in range(15):
                    try:
                        await rh.place_order(*approved(order(quantity=0.001)))
                        await rh.place_order(*approved(order("SPY", quantity=1)))
                        await rh.get_account()
                    except ConnectorError as exc:
                        messages.append(f"{exc!r} {exc} {i}")
            wrong = StaticSecretProvider(
                api_key=keys.api_key,
                private_key=base64.b64encode(Ed25519PrivateKey.generate().private_bytes_raw()).decode(),
            )
            cfg = RobinhoodConfig(
                base_url=server.url,
                rate_limit_per_s=None,
                timeout_s=0.3,
                retry=RetryPolicy(max_attempts=30, base_delay_s=0.001, max_delay_s=0.002),
            )
            async with RobinhoodConnector(cfg, secrets=wrong) as bad:
                with pytest.raises(AuthenticationError) as info:
                    await bad.get_account()
                messages.append(str(info.value))

        run(main)
    finally:
        server.stop()
    assert venue.order_posts > 0
    assert len(messages) > 4
    text = "\n".join(messages + [r.getMessage() for r in caplog.records] + [caplog.text])
    for secret in (keys.api_key, keys.seed_b64, keys.password, keys.access_token):
        assert secret not in text
