"""OANDAConnector against a local server speaking OANDA's v20 protocol (no test reaches the internet).

Covers symbol mapping, candle pagination and completeness, the pricing stream (quotes, bars, reconnects and
backfill), orders by client id, positions, the account, error mapping, credentials hygiene, and fault
injection: 25% of requests failing (5xx, 429 with Retry-After, timeouts, truncated or garbled JSON, dropped
connections) and the stream dropping mid-way.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections import Counter
from collections.abc import Callable, Coroutine, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import httpx
import pandas as pd
import pytest
from tests.data.connectors.approvals import approved
from tests.data.connectors.servers import LocalServer
from tests.data.connectors.servers.faults import FaultInjector, FaultKind, FaultPlan
from tests.data.connectors.servers.oanda_server import OandaVenue, OandaVenueConfig, parse_time

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
from alphaloom.core.types import Bar, Order, OrderStatus, Quote
from alphaloom.data.connectors import get_connector_class
from alphaloom.data.connectors.oanda import OANDAConfig, OANDAConnector, _error_for

T = TypeVar("T")
ACCOUNT = "101-004-7777777-001"
NOW = datetime(2024, 3, 6, 12, 0, 30, tzinfo=UTC)  # a Wednesday; the 12:00 candle is still open


def run(fn: Callable[[], Coroutine[Any, Any, T]]) -> T:
    return asyncio.run(fn())


@pytest.fixture
def token() -> str:
    """A throwaway access token, different in every test."""
    return "tok-" + secrets.token_hex(16)


def start_venue(token: str, **overrides: Any) -> tuple[OandaVenue, LocalServer, FaultInjector | None]:
    faults = overrides.pop("faults", None)
    venue = OandaVenue(OandaVenueConfig(token=token, account_id=ACCOUNT, **overrides), faults=faults)
    return venue, LocalServer(venue.app).start(), faults


@pytest.fixture
def served(token: str) -> Iterator[tuple[OandaVenue, LocalServer]]:
    venue, server, _ = start_venue(token)
    yield venue, server
    server.stop()


def make_connector(server: LocalServer, token: str, **overrides: Any) -> OANDAConnector:
    settings: dict[str, Any] = {
        "base_url": server.url,
        "stream_url": server.url,
        "timeout_s": 2.0,
        "rate_limit_per_s": None,
        "retry": RetryPolicy(max_attempts=3, base_delay_s=0.001, max_delay_s=0.005),
        "breaker": BreakerConfig(failure_threshold=100, reset_timeout_s=0.01),
        "stream_timeout_s": 2.0,
    }
    settings.update(overrides)
    return OANDAConnector(OANDAConfig(**settings), secrets=StaticSecretProvider(token=token, account=ACCOUNT))


def order(symbol: str = "EURUSD", side: str = "buy", quantity: float = 1000, **kw: Any) -> Order:
    return Order(symbol=symbol, side=side, quantity=quantity, ts=NOW, **kw)


# ---------------------------------------------------------------------- config and symbols


def test_environments_pick_hosts_and_urls_can_be_overridden() -> None:
    practice = OANDAConfig()
    live = OANDAConfig(environment="live")
    local = OANDAConfig(base_url="http://127.0.0.1:9", stream_url="http://127.0.0.1:9")
    assert (practice.base_url, practice.stream_url) == (
        "https://api-fxpractice.oanda.com",
        "https://stream-fxpractice.oanda.com",
    )
    assert (live.base_url, live.stream_url) == (
        "https://api-fxtrade.oanda.com",
        "https://stream-fxtrade.oanda.com",
    )
    assert local.base_url == "http://127.0.0.1:9"
    assert get_connector_class("oanda") is OANDAConnector
    with pytest.raises(ConfigError, match="stream_bar_timeframe"):
        OANDAConfig.from_dict({"stream_bar_timeframe": "7m"})


def test_symbols_map_both_ways() -> None:
    oanda = OANDAConnector(OANDAConfig(), secrets=StaticSecretProvider())
    pairs = {"EURUSD": "EUR_USD", "USDJPY": "USD_JPY", "XAUUSD": "XAU_USD", "SPX500USD": "SPX500_USD"}
    for ours, theirs in pairs.items():
        assert oanda.to_venue_symbol(ours) == theirs
        assert oanda.from_venue_symbol(theirs) == ours
    with pytest.raises(UnknownSymbolError, match="3-letter quote currency"):
        oanda.to_venue_symbol("SPY")


# ---------------------------------------------------------------------- history


def test_history_paginates_and_returns_each_complete_candle_once(
    served: tuple[OandaVenue, LocalServer], token: str
) -> None:
    venue, server = served
    venue.config.max_count = 500
    start, end = datetime(2024, 3, 5, 10, 0, tzinfo=UTC), datetime(2024, 3, 6, 12, 5, tzinfo=UTC)

    async def main() -> pd.DataFrame:
        async with make_connector(server, token, max_candles_per_request=500) as oanda:
            return await oanda.get_historical_data("EURUSD", "1m", start, end)

    bars = run(main)
    # Up to "now" (12:00:30): the 12:00 candle is incomplete and must not appear, nor anything after it.
    expected = pd.date_range(start, datetime(2024, 3, 6, 11, 59, tzinfo=UTC), freq="1min", tz="UTC")
    assert list(bars["ts"]) == list(expected)
    assert bars["symbol"].eq("EURUSD").all()
    assert venue.candle_requests == -(-len(expected) // 500)  # ceil: full pages of 500, then the rest
    golden = venue.candle("EUR_USD", int(start.timestamp()), 60, "M")
    first = bars.iloc[0]
    assert (first.open, first.high, first.low, first.close) == tuple(float(golden["mid"][k]) for k in "ohlc")
    assert first.volume == golden["volume"]  # tick volume
    assert (bars.low <= bars[["open", "close"]].min(axis=1)).all()


def test_history_skips_the_weekend_and_aligns_daily_bars_to_utc_midnight(
    served: tuple[OandaVenue, LocalServer], token: str
) -> None:
    _, server = served

    async def main() -> tuple[pd.DataFrame, pd.DataFrame]:
        async with make_connector(server, token) as oanda:
            hourly = await oanda.get_historical_data(
                "GBPUSD", "1h", datetime(2024, 3, 1, 18, tzinfo=UTC), datetime(2024, 3, 4, 2, tzinfo=UTC)
            )
            daily = await oanda.get_historical_data(
                "GBPUSD", "1d", datetime(2024, 2, 26, tzinfo=UTC), datetime(2024, 3, 6, tzinfo=UTC)
            )
            return hourly, daily

    hourly, daily = run(main)
    hours = [ts.strftime("%a %H") for ts in hourly["ts"]]
    # Friday 18-20 h, then nothing until Sunday 21 h (the market is closed in between).
    assert hours == ["Fri 18", "Fri 19", "Fri 20", "Sun 21", "Sun 22", "Sun 23", "Mon 00", "Mon 01"]
    assert all(ts.hour == 0 and ts.minute == 0 for ts in daily["ts"])
    assert "Sat" not in {ts.strftime("%a") for ts in daily["ts"]}
    assert len(daily) == 8  # Feb 26 - Mar 5: Mon..Fri, Sun, Mon, Tue


def test_bid_ask_candles_average_to_mid(served: tuple[OandaVenue, LocalServer], token: str) -> None:
    _, server = served
    start, end = datetime(2024, 3, 6, 9, tzinfo=UTC), datetime(2024, 3, 6, 10, tzinfo=UTC)

    async def main() -> tuple[pd.DataFrame, pd.DataFrame]:
        async with (
            make_connector(server, token) as mid,
            make_connector(server, token, candle_price="BA") as ba,
        ):
            return (
                await mid.get_historical_data("EURUSD", "5m", start, end),
                await ba.get_historical_data("EURUSD", "5m", start, end),
            )

    mid, ba = run(main)
    assert len(mid) == len(ba) == 12
    pd.testing.assert_frame_equal(mid, ba, atol=2e-5, rtol=0)


def test_requests_carry_the_token_and_the_account(served: tuple[OandaVenue, LocalServer], token: str) -> None:
    venue, server = served

    async def main() -> None:
        async with make_connector(server, token) as oanda:
            await oanda.get_account()

    run(main)
    assert venue.last_request_headers["Authorization"] == f"Bearer {token}"
    assert venue.last_request_headers["Accept-Datetime-Format"] == "RFC3339"


# ---------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (400, {"errorMessage": "Invalid value specified for 'instrument'"}, UnknownSymbolError),
        (400, {"errorMessage": "Invalid value specified for 'granularity'"}, ConnectorError),
        (401, {"errorMessage": "Insufficient authorization to perform request."}, AuthenticationError),
        (403, {"errorMessage": "The provided request was forbidden."}, AuthenticationError),
        (404, {"errorMessage": "The Order specified does not exist"}, ConnectorError),
        (405, {"errorMessage": "The method is not allowed"}, ConnectorError),
        (429, {"errorMessage": "Rate limit violation"}, RateLimitError),
        (500, {"errorMessage": "Internal server error"}, VenueUnavailableError),
        (503, None, VenueUnavailableError),
    ],
)
def test_error_bodies_map_to_our_exceptions(status: int, body: dict[str, str] | None, expected: type) -> None:
    response = httpx.Response(status, json=body, headers={"Retry-After": "2"})
    error = _error_for(response, body, "candles of EUR_USD")
    assert type(error) is expected
    assert str(status) in str(error)
    if body:
        assert body["errorMessage"] in str(error)
    if expected is RateLimitError:
        assert error.retry_after_s == 2.0


def test_bad_token_is_an_authentication_error_and_never_retried(
    served: tuple[OandaVenue, LocalServer], token: str
) -> None:
    venue, server = served
    wrong = "tok-" + secrets.token_hex(16)

    async def main() -> None:
        async with make_connector(server, wrong) as oanda:
            await oanda.get_account()

    with pytest.raises(AuthenticationError, match="ALPHALOOM_OANDA_TOKEN") as info:
        run(main)
    assert wrong not in str(info.value)
    assert venue.last_request_headers["Authorization"] == f"Bearer {wrong}"


def test_unknown_instrument_and_rate_limits_are_reported(token: str) -> None:
    plan = FaultPlan(failure_rate=1.0, weights={FaultKind.HTTP_429: 1.0}, retry_after="0.02")
    faults = FaultInjector(plan, applies_to=lambda r: r.path.endswith("/summary"))
    _, server, _ = start_venue(token, now=NOW, faults=faults)
    try:

        async def unknown() -> None:
            async with make_connector(server, token) as oanda:
                await oanda.get_historical_data("EURCHF", "1h", NOW - timedelta(days=1), NOW)

        async def limited() -> None:
            async with make_connector(server, token) as oanda:
                await oanda.get_account()

        with pytest.raises(UnknownSymbolError, match="does not know this instrument"):
            run(unknown)
        with pytest.raises(RateLimitError) as info:
            run(limited)
        assert info.value.retry_after_s == pytest.approx(0.02)
        assert faults.stats.by_kind["http_429"] == 3  # max_attempts=3, each honouring Retry-After
    finally:
        server.stop()


def test_missing_credentials_name_the_variables(served: tuple[OandaVenue, LocalServer]) -> None:
    _, server = served
    env = {"ALPHALOOM_OANDA_ACCOUNT": ACCOUNT}

    async def main() -> None:
        cfg = OANDAConfig(base_url=server.url, stream_url=server.url, rate_limit_per_s=None)
        async with OANDAConnector(cfg, secrets=EnvSecretProvider("ALPHALOOM_OANDA_", environ=env)) as oanda:
            await oanda.get_account()

    with pytest.raises(ConfigError, match="ALPHALOOM_OANDA_TOKEN is not set"):
        run(main)
    env.clear()
    with pytest.raises(ConfigError, match="ALPHALOOM_OANDA_ACCOUNT is not set"):
        run(main)


# ---------------------------------------------------------------------- orders


def test_market_order_fills_at_the_ask_with_our_client_id(
    served: tuple[OandaVenue, LocalServer], token: str
) -> None:
    venue, server = served
    buy, sell = order(quantity=1000), order("USDJPY", "sell", 500)

    async def main() -> tuple[Any, Any, Any]:
        async with make_connector(server, token) as oanda:
            return (
                await oanda.place_order(*approved(buy)),
                await oanda.place_order(*approved(sell)),
                await oanda.get_order(buy.client_order_id),
            )

    bought, sold, looked_up = run(main)
    assert bought.status is OrderStatus.FILLED
    assert bought.filled_quantity == 1000
    _, ask = venue.bid_ask("EUR_USD", int(NOW.timestamp()))
    assert bought.avg_fill_price == ask
    assert sold.fills[0].side.value == "sell"
    record = venue.orders[bought.venue_order_id]
    assert record["clientExtensions"]["id"] == buy.client_order_id
    assert record["units"] == "1000"
    assert venue.orders[sold.venue_order_id]["units"] == "-500"
    assert record["timeInForce"] == "FOK"
    assert looked_up == bought


def test_limit_stop_and_stop_limit_orders_rest_and_cancel(
    served: tuple[OandaVenue, LocalServer], token: str
) -> None:
    venue, server = served
    limit = order(order_type="limit", limit_price=1.0, time_in_force="day")
    stop = order(side="sell", order_type="stop", stop_price=1.0)
    stop_limit = order(order_type="stop_limit", stop_price=1.2, limit_price=1.21)

    async def main() -> dict[str, Any]:
        async with make_connector(server, token) as oanda:
            placed = [await oanda.place_order(*approved(o)) for o in (limit, stop, stop_limit)]
            got = await oanda.get_order(limit.client_order_id)
            cancelled = await oanda.cancel_order(limit.client_order_id)
            again = await oanda.cancel_order(limit.client_order_id)
            return {"placed": placed, "got": got, "cancelled": cancelled, "again": again}

    out = run(main)
    assert [r.status for r in out["placed"]] == [OrderStatus.ACCEPTED] * 3
    assert out["got"].status is OrderStatus.ACCEPTED
    assert out["cancelled"].status is OrderStatus.CANCELLED
    assert out["again"].status is OrderStatus.CANCELLED  # cancelling twice returns the final state
    sent = {o["clientExtensions"]["id"]: o for o in venue.orders.values()}
    assert (sent[limit.client_order_id]["type"], sent[limit.client_order_id]["price"]) == ("LIMIT", "1.00000")
    assert sent[limit.client_order_id]["timeInForce"] == "GFD"
    assert (sent[stop.client_order_id]["type"], sent[stop.client_order_id]["units"]) == ("STOP", "-1000")
    create = next(
        tx
        for tx in venue.transactions.values()
        if tx.get("clientExtensions", {}).get("id") == stop_limit.client_order_id
    )
    assert (create["type"], create["price"], create["priceBound"]) == ("STOP_ORDER", "1.20000", "1.21000")


def test_cancelling_a_filled_order_returns_it_and_unknown_ids_are_errors(
    served: tuple[OandaVenue, LocalServer], token: str
) -> None:
    _, server = served
    buy = order()

    async def main() -> Any:
        async with make_connector(server, token) as oanda:
            await oanda.place_order(*approved(buy))
            result = await oanda.cancel_order(buy.client_order_id)
            with pytest.raises(ConnectorError, match="no order with client_order_id"):
                await oanda.get_order("al-unknown")
            with pytest.raises(OrderRejectedError, match="no order with client id"):
                await oanda.cancel_order("al-unknown")
            return result

    assert run(main).status is OrderStatus.FILLED


def test_rejections_are_not_retried(served: tuple[OandaVenue, LocalServer], token: str) -> None:
    venue, server = served

    async def main() -> None:
        async with make_connector(server, token) as oanda:
            await oanda.place_order(*approved(order(quantity=0.5)))

    with pytest.raises(OrderRejectedError, match="UNITS_INVALID"):
        run(main)
    assert venue.order_posts == 1


def test_place_order_is_idempotent_on_the_client_id(
    served: tuple[OandaVenue, LocalServer], token: str
) -> None:
    venue, server = served
    market, resting = order(), order(order_type="limit", limit_price=1.0)

    async def main() -> tuple[Any, Any, Any]:
        async with make_connector(server, token) as first:
            a = await first.place_order(*approved(market))
            b = await first.place_order(*approved(market))  # same connector: looked up, not re-sent
            await first.place_order(*approved(resting))
        # A fresh connector (a restarted process) re-sends; the venue refuses the pending id, we find it.
        async with make_connector(server, token) as second:
            c = await second.place_order(*approved(resting))
        return a, b, c

    a, b, c = run(main)
    assert a == b
    assert c.status is OrderStatus.ACCEPTED
    assert venue.created_by_client_id == Counter({market.client_order_id: 1, resting.client_order_id: 1})
    assert venue.order_posts == 3


def test_positions_and_account(served: tuple[OandaVenue, LocalServer], token: str) -> None:
    venue, server = served

    async def main() -> tuple[Any, Any, Any]:
        async with make_connector(server, token) as oanda:
            empty = await oanda.get_positions()
            await oanda.place_order(*approved(order(quantity=1000)))
            await oanda.place_order(*approved(order(quantity=3000)))
            await oanda.place_order(*approved(order("USDJPY", "sell", 200)))
            return empty, await oanda.get_positions(), await oanda.get_account()

    empty, positions, account = run(main)
    assert empty == {}
    assert set(positions) == {"EURUSD", "USDJPY"}
    eur = positions["EURUSD"]
    assert eur.quantity == 4000
    assert eur.avg_cost == pytest.approx(venue.positions["EUR_USD"]["avg"], abs=1e-5)
    assert eur.current_price == pytest.approx(venue.mid("EUR_USD", int(venue.now_s())), abs=1e-4)
    assert positions["USDJPY"].quantity == -200
    assert account.account_id == ACCOUNT
    assert account.cash == pytest.approx(100_000.0)
    assert account.equity < account.cash  # the spread is paid on entry
    assert account.buying_power is not None
    assert account.buying_power < account.equity


# ---------------------------------------------------------------------- stream


async def collect(
    oanda: OANDAConnector, symbols: list[str], done: Callable[[list[Any]], bool], limit_s: float = 10.0
) -> list[Any]:
    events: list[Any] = []

    async def consume() -> None:
        async for event in oanda.get_real_time_data(symbols):
            events.append(event)
            if done(events):
                return

    await asyncio.wait_for(consume(), limit_s)
    return events


def tape_done(venue: OandaVenue, symbols: list[str]) -> Callable[[list[Any]], bool]:
    """True once every symbol has its last tape quote and the last complete bar of the tape."""
    end = venue.config.tape_start + timedelta(seconds=venue.config.tape_seconds)
    last_bar = end.replace(second=0) - timedelta(minutes=1)

    def done(events: list[Any]) -> bool:
        quotes = {e.symbol for e in events if isinstance(e, Quote) and e.ts == end}
        bars = {e.symbol for e in events if isinstance(e, Bar) and e.ts == last_bar}
        return quotes == bars == set(symbols)

    return done


def test_stream_yields_quotes_and_completed_bars(token: str) -> None:
    venue, server, _ = start_venue(token, now=None, tape_seconds=150, tick_wall_s=0.003)
    symbols = ["EURUSD", "USDJPY"]
    try:

        async def main() -> list[Any]:
            async with make_connector(server, token) as oanda:
                return await collect(oanda, symbols, tape_done(venue, symbols))

        events = run(main)
    finally:
        server.stop()
    quotes = [e for e in events if isinstance(e, Quote)]
    bars = [e for e in events if isinstance(e, Bar)]
    q = quotes[-1]
    t = int(q.ts.timestamp())
    venue_symbol = q.symbol[:3] + "_" + q.symbol[3:]
    assert (q.bid, q.ask) == venue.bid_ask(venue_symbol, t)
    assert q.bid_size == q.ask_size == 10_000_000
    assert q.exchange == "oanda"
    assert q.ts_received is not None
    assert all(b.timeframe == "1m" and b.ts.second == 0 for b in bars)
    for symbol in symbols:
        ts = [b.ts for b in bars if b.symbol == symbol]
        assert ts == sorted(set(ts))
        assert ts[-1] == datetime(2024, 3, 6, 12, 1, tzinfo=UTC)


def test_stream_rejects_a_bad_token_without_reconnecting(
    served: tuple[OandaVenue, LocalServer], token: str
) -> None:
    venue, server = served

    async def main() -> None:
        async with make_connector(server, "tok-wrong") as oanda:
            await collect(oanda, ["EURUSD"], lambda events: True)

    with pytest.raises(AuthenticationError):
        run(main)
    assert venue.stream_connections == 0


def check_stream(venue: OandaVenue, events: list[Any], symbols: list[str]) -> tuple[int, int]:
    """Assert no duplicate and no missing event; returns (quotes, bars)."""
    keys = [(e.symbol, type(e).__name__, e.ts) for e in events]
    dupes = [k for k, n in Counter(keys).items() if n > 1]
    assert not dupes, f"duplicated events: {dupes[:5]}"
    quotes = [e for e in events if isinstance(e, Quote)]
    bars = [e for e in events if isinstance(e, Bar)]
    for symbol in symbols:
        venue_symbol = symbol[:3] + "_" + symbol[3:]
        got = [q.ts for q in quotes if q.symbol == symbol]
        assert got == sorted(got), "quotes out of order"
        # Every price line the server delivered whole (up to the last one we consumed) reached us once.
        delivered = {
            datetime.fromtimestamp(parse_time(t), UTC) for n, t in venue.delivered_prices if n == venue_symbol
        }
        delivered = {t for t in delivered if t <= got[-1]}
        missing = sorted(delivered - set(got))
        assert not missing, f"{symbol}: delivered quotes never yielded: {missing[:5]}"
        # Bars: one per minute, from the first to the last, none missing, none twice.
        minutes = [b.ts for b in bars if b.symbol == symbol]
        expected = list(pd.date_range(minutes[0], minutes[-1], freq="1min", tz="UTC"))
        assert minutes == expected, f"{symbol}: bars missing or out of order"
    return len(quotes), len(bars)


def test_stream_reconnects_after_drops_without_duplicates_or_gaps(
    token: str, record_property: Callable[[str, object], None]
) -> None:
    faults = FaultInjector(FaultPlan(stream_drop_after=60, max_stream_drops=4))
    venue, server, _ = start_venue(token, now=None, tape_seconds=600, tick_wall_s=0.002, faults=faults)
    symbols = ["EURUSD", "GBPUSD"]
    try:

        async def main() -> tuple[list[Any], Any]:
            # Reconnecting takes 0.3 s = 150 tape seconds: every drop misses at least one whole bar.
            slow = RetryPolicy(max_attempts=3, base_delay_s=0.3, max_delay_s=0.3, jitter="none")
            async with make_connector(server, token, retry=slow) as oanda:
                events = await collect(oanda, symbols, tape_done(venue, symbols))
                return events, oanda.health()

        events, health = run(main)
    finally:
        server.stop()
    n_quotes, n_bars = check_stream(venue, events, symbols)
    summary = (
        f"stream drops={faults.stats.stream_drops} reconnects={health.stream_reconnects} "
        f"quotes={n_quotes} bars={n_bars} backfilled_bars={health.backfilled_bars} "
        f"duplicates_dropped={health.duplicates_dropped} duplicates_yielded=0 missing=0"
    )
    record_property("oanda_stream_faults", summary)
    assert faults.stats.stream_drops >= 3, summary
    assert health.stream_reconnects >= faults.stats.stream_drops, summary
    assert health.backfilled_bars > 0, summary  # bars of the gaps came from candles


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


def faulty_connector(server: LocalServer, token: str, **overrides: Any) -> OANDAConnector:
    settings: dict[str, Any] = {
        "timeout_s": 0.5,
        # OANDA de-duplicates client ids of pending orders only: wait for a request still in flight.
        "order_settle_s": 0.2,
        "retry": RetryPolicy(max_attempts=15, base_delay_s=0.001, max_delay_s=0.01),
        "breaker": BreakerConfig(failure_threshold=20, reset_timeout_s=0.01),
    }
    return make_connector(server, token, **{**settings, **overrides})


def test_history_under_faults_returns_every_bar_exactly_once(
    token: str, record_property: Callable[[str, object], None]
) -> None:
    start, end = datetime(2024, 3, 4, 0, 0, tzinfo=UTC), datetime(2024, 3, 6, 12, 0, tzinfo=UTC)
    _, clean_server, _ = start_venue(token, now=NOW, max_count=400)
    faults = FaultInjector(FaultPlan(failure_rate=0.25, weights=FAULT_MIX, seed=11, slow_delay_s=1.0))
    _, server, _ = start_venue(token, now=NOW, max_count=400, faults=faults)
    try:

        async def main() -> tuple[pd.DataFrame, pd.DataFrame, Any, pd.DataFrame]:
            async with make_connector(clean_server, token, max_candles_per_request=400) as clean:
                reference = await clean.get_historical_data("EURUSD", "1m", start, end)
            # A hook call (all pages) has timeout_s per attempt; pages fetched survive a failed attempt.
            retry = RetryPolicy(max_attempts=30, base_delay_s=0.001, max_delay_s=0.01)
            patient = faulty_connector(server, token, max_candles_per_request=400, timeout_s=0.8, retry=retry)
            async with patient as oanda:
                frames = [await oanda.get_historical_data("EURUSD", "1m", start, end) for _ in range(3)]
                return reference, pd.concat(frames[1:]), oanda.health(), frames[0]

        reference, repeats, health, bars = run(main)
    finally:
        clean_server.stop()
        server.stop()
    summary = (
        f"{faults.stats.summary()}; bars={len(bars)} expected={len(reference)} "
        f"duplicates={int(bars['ts'].duplicated().sum())} retries={health.retries}"
    )
    record_property("oanda_history_faults", summary)
    assert len(reference) == 60 * 60  # 2.5 days of minutes, market open all along
    pd.testing.assert_frame_equal(bars, reference)
    pd.testing.assert_frame_equal(repeats.iloc[: len(reference)].reset_index(drop=True), reference)
    assert 0.15 <= faults.stats.failure_share <= 0.35, summary
    assert faults.stats.failed > 0, summary


def test_place_order_under_faults_creates_no_duplicates(
    token: str, record_property: Callable[[str, object], None]
) -> None:
    faults = FaultInjector(FaultPlan(failure_rate=0.25, weights=FAULT_MIX, seed=5, slow_delay_s=0.8))
    # The venue refuses a duplicate id only while an order is pending; these market orders fill at once, so
    # a re-sent order would be created twice: only the connector's idempotency prevents it.
    venue, server, _ = start_venue(token, now=NOW, faults=faults)
    orders = [order(side="buy" if i % 2 else "sell", quantity=100 + i) for i in range(300)]
    try:

        async def main() -> tuple[list[Any], Any]:
            async with faulty_connector(server, token) as oanda:
                gate = asyncio.Semaphore(10)  # few enough that no answer waits in a queue for timeout_s

                async def place(o: Order) -> Any:
                    async with gate:
                        return await oanda.place_order(*approved(o))

                results = await asyncio.gather(*(place(o) for o in orders))
                return results, oanda.health()

        results, health = run(main)
    finally:
        server.stop()
    created = venue.created_by_client_id
    summary = (
        f"{faults.stats.summary()}; orders={len(orders)} placed={len(created)} "
        f"order_posts={venue.order_posts} duplicates={venue.duplicate_orders} retries={health.retries}"
    )
    record_property("oanda_order_faults", summary)
    assert venue.duplicate_orders == 0, summary
    assert set(created) == {o.client_order_id for o in orders}, summary
    assert all(n == 1 for n in created.values()), summary
    assert [r.client_order_id for r in results] == [o.client_order_id for o in orders]
    assert all(r.status is OrderStatus.FILLED for r in results), summary
    assert 0.15 <= faults.stats.failure_share <= 0.35, summary
    assert venue.order_posts > len(orders) or faults.stats.by_kind["http_503"] > 0, summary


def test_stream_under_faults_backfills_bars_and_loses_no_quote(
    token: str, record_property: Callable[[str, object], None]
) -> None:
    plan = FaultPlan(
        failure_rate=0.25,
        weights=FAULT_MIX,
        seed=3,
        slow_delay_s=0.8,
        stream_drop_after=80,
        max_stream_drops=3,
    )
    faults = FaultInjector(plan, before_only=lambda r: r.path.endswith("/stream"))
    venue, server, _ = start_venue(token, now=None, tape_seconds=600, tick_wall_s=0.002, faults=faults)
    symbols = ["EURUSD", "USDJPY"]
    try:

        async def main() -> tuple[list[Any], Any]:
            retry = RetryPolicy(max_attempts=15, base_delay_s=0.3, max_delay_s=0.3, jitter="none")
            async with faulty_connector(server, token, stream_reconnect_max=50, retry=retry) as oanda:
                events = await collect(oanda, symbols, tape_done(venue, symbols), limit_s=15.0)
                return events, oanda.health()

        events, health = run(main)
    finally:
        server.stop()
    n_quotes, n_bars = check_stream(venue, events, symbols)
    summary = (
        f"{faults.stats.summary()}; quotes={n_quotes} bars={n_bars} reconnects={health.stream_reconnects} "
        f"backfilled_bars={health.backfilled_bars} duplicates_yielded=0 missing=0"
    )
    record_property("oanda_stream_rest_faults", summary)
    assert faults.stats.stream_drops >= 1, summary
    assert health.stream_reconnects >= 2, summary
    assert health.backfilled_bars > 0, summary


# ---------------------------------------------------------------------- credentials


def test_token_never_appears_in_logs_reprs_or_errors(
    token: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ALPHALOOM_OANDA_TOKEN", token)
    monkeypatch.setenv("ALPHALOOM_OANDA_ACCOUNT", ACCOUNT)
    faults = FaultInjector(FaultPlan(failure_rate=0.5, weights=FAULT_MIX, seed=1, slow_delay_s=0.8))
    venue, server, _ = start_venue(token, now=NOW, faults=faults)
    messages: list[str] = []
    caplog.set_level(logging.DEBUG)
    try:

        async def main() -> None:
            cfg = OANDAConfig(
                base_url=server.url,
                stream_url=server.url,
                timeout_s=0.3,
                rate_limit_per_s=None,
                retry=RetryPolicy(max_attempts=2, base_delay_s=0.001, max_delay_s=0.002),
            )
            async with OANDAConnector(cfg) as oanda:  # credentials from the environment
                messages.extend([repr(oanda), repr(oanda.secrets), repr(oanda.health())])
                for _ in range(20):
                    try:
                        await oanda.get_account()
                        await oanda.place_order(*approved(order()))
                    except ConnectorError as exc:
                        messages.append(f"{exc!r} {exc}")
            async with make_connector(server, "tok-" + secrets.token_hex(8)) as bad:
                with pytest.raises(AuthenticationError) as info:
                    await bad.get_positions()
                messages.append(str(info.value))

        run(main)
    finally:
        server.stop()
    assert venue.last_request_headers  # the server did see requests with the token
    assert len(messages) > 3
    text = "\n".join(messages + [r.getMessage() for r in caplog.records] + [caplog.text])
    assert token not in text
    assert token[4:] not in text
