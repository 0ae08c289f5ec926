"""The connector base class, driven through a small in-test fake venue with fault injection."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import httpx
import numpy as np
import pandas as pd
import pytest
from tests.data.connectors.approvals import approved

from alphaloom.core.exceptions import (
    AuthenticationError,
    ConfigError,
    ConnectorError,
    OrderRejectedError,
    RateLimitError,
    VenueUnavailableError,
)
from alphaloom.core.resilience import BreakerConfig, BreakerState, RetryPolicy
from alphaloom.core.types import (
    Account,
    Bar,
    Order,
    OrderResult,
    OrderStatus,
    Position,
    Quote,
    Side,
    Trade,
)
from alphaloom.data.connectors import (
    ConnectorConfig,
    ExchangeConnector,
    available_connectors,
    get_connector_class,
    register_connector,
)
from alphaloom.data.connectors.base import StreamEvent, parse_retry_after

T0 = datetime(2024, 1, 2, 14, 30, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
FAST = RetryPolicy(max_attempts=6, base_delay_s=0.0, max_delay_s=0.0)


def minute_bars(n: int, symbol: str = "SPY") -> list[Bar]:
    rng = np.random.default_rng(7)
    closes = 100 * np.exp(np.cumsum(rng.normal(0, 0.001, n)))
    return [
        Bar(
            symbol=symbol,
            ts=T0 + i * MINUTE,
            open=c,
            high=c * 1.001,
            low=c * 0.999,
            close=c,
            volume=1000.0,
            timeframe="1m",
        )
        for i, c in enumerate(closes)
    ]


class FakeVenue(ExchangeConnector):
    """A venue in memory whose calls fail on demand.

    ``fail_share`` of order submissions time out, half of them after the venue has recorded the order (the
    answer is lost: the dangerous case for duplicates). The stream drops after ``drop_every`` events, skips
    ``gap`` bars while disconnected and replays ``replay`` old bars on reconnect.
    """

    name: ClassVar[str] = "fake"

    def __init__(
        self, config: ConnectorConfig, *, http: httpx.AsyncClient | None = None, **faults: Any
    ) -> None:
        super().__init__(config, http=http)
        self.bars: list[Bar] = faults.pop("bars", [])
        self.fail_share: float = faults.pop("fail_share", 0.0)
        self.fail_next: list[Exception] = faults.pop("fail_next", [])
        self.drop_every: int = faults.pop("drop_every", 0)
        self.gap: int = faults.pop("gap", 0)
        self.replay: int = faults.pop("replay", 0)
        self.extra_events: list[StreamEvent] = faults.pop("extra_events", [])
        assert not faults, faults
        self.rng = random.Random(3)
        self.venue_orders: dict[str, list[Order]] = {}
        self.submit_calls = 0
        self.find_calls = 0
        self.fetch_calls = 0
        self.cursor = 0
        self.connects = 0

    def _maybe_fail(self) -> None:
        if self.fail_next:
            raise self.fail_next.pop(0)

    async def _fetch_bars(
        self, venue_symbol: str, timeframe: str, start: datetime, end: datetime
    ) -> pd.DataFrame:
        self.fetch_calls += 1
        self._maybe_fail()
        rows = [b.model_dump() for b in self.bars if start <= b.ts < end and b.symbol == venue_symbol]
        return pd.DataFrame(rows, columns=["ts", "open", "high", "low", "close", "volume"])

    async def _stream(self, venue_symbols: Sequence[str]) -> AsyncIterator[StreamEvent]:
        self.connects += 1
        self._maybe_fail()
        if self.connects > 1:
            self.cursor = max(0, self.cursor + self.gap - self.replay)
        for event in self.extra_events:
            yield event
        sent = 0
        while self.cursor < len(self.bars):
            if self.drop_every and sent == self.drop_every:
                raise ConnectionResetError("peer closed the stream")
            yield self.bars[self.cursor]
            self.cursor += 1
            sent += 1

    def _stream_finished(self) -> bool:
        return self.cursor >= len(self.bars)

    async def _submit_order(self, order: Order) -> OrderResult:
        self.submit_calls += 1
        self._maybe_fail()
        roll = self.rng.random()
        if roll < self.fail_share / 2:
            raise TimeoutError("request timed out before reaching the venue")
        self.venue_orders.setdefault(order.client_order_id, []).append(order)
        if roll < self.fail_share:
            raise httpx.ReadTimeout("answer lost")
        return self._result(order.client_order_id)

    async def _find_order(self, client_order_id: str) -> OrderResult | None:
        self.find_calls += 1
        self._maybe_fail()
        if client_order_id not in self.venue_orders:
            return None
        return self._result(client_order_id)

    async def _cancel_order(self, client_order_id: str) -> OrderResult:
        return self._result(client_order_id, OrderStatus.CANCELLED)

    async def _fetch_positions(self) -> dict[str, Position]:
        self._maybe_fail()
        return {"SPY": Position(symbol="SPY", quantity=1.0, avg_cost=100.0, current_price=101.0)}

    async def _fetch_account(self) -> Account:
        self._maybe_fail()
        return Account(account_id="fake-1", cash=1000.0, equity=1101.0, ts=T0)

    def _translate_error(self, exc: Exception) -> Any:
        if isinstance(exc, KeyError) and exc.args == ("insufficient_funds",):
            return OrderRejectedError("fake: insufficient funds")
        return None

    def _result(self, cid: str, status: OrderStatus = OrderStatus.ACCEPTED) -> OrderResult:
        return OrderResult(client_order_id=cid, venue_order_id=f"v-{cid}", status=status, ts=T0)


def make(**faults: Any) -> FakeVenue:
    config = ConnectorConfig(
        venue="fake",
        retry=faults.pop("retry", FAST),
        breaker=faults.pop("breaker", BreakerConfig(failure_threshold=50, reset_timeout_s=60)),
        rate_limit_per_s=None,
        stream_reconnect_max=faults.pop("stream_reconnect_max", 10),
        timeout_s=faults.pop("timeout_s", 5.0),
    )
    return FakeVenue(config, **faults)


def order(i: int = 0) -> Order:
    return Order(symbol="SPY", side=Side.BUY, quantity=1.0 + i % 3, ts=T0, client_order_id=f"cid-{i}")


async def collect(venue: FakeVenue, symbols: Sequence[str], limit: int = 10_000) -> list[StreamEvent]:
    out: list[StreamEvent] = []
    async for event in venue.get_real_time_data(symbols):
        out.append(event)
        if len(out) >= limit:
            break
    return out


# ---------------------------------------------------------------------- validation


def test_historical_data_validates_inputs_before_calling_the_venue() -> None:
    venue = make(bars=minute_bars(10))

    async def check() -> None:
        naive = datetime(2024, 1, 2)  # noqa: DTZ001 - the point of the test
        with pytest.raises(ConfigError, match="no timezone"):
            await venue.get_historical_data("SPY", "1m", naive, T0 + MINUTE)
        with pytest.raises(ConfigError, match="must be before end"):
            await venue.get_historical_data("SPY", "1m", T0, T0)
        with pytest.raises(ConfigError, match="Did you mean '1m'"):
            await venue.get_historical_data("SPY", "1min", T0, T0 + MINUTE)
        with pytest.raises(ConfigError, match="Did you mean 'BTCUSD'"):
            await venue.get_historical_data("btc/usd", "1m", T0, T0 + MINUTE)

    asyncio.run(check())
    assert venue.fetch_calls == 0


def test_historical_data_is_a_canonical_frame_inside_the_range() -> None:
    bars = minute_bars(10)
    venue = make(bars=bars)
    frame = asyncio.run(venue.get_historical_data("SPY", "1m", T0 + 2 * MINUTE, T0 + 5 * MINUTE))
    assert list(frame.columns) == ["symbol", "ts", "open", "high", "low", "close", "volume"]
    assert str(frame["ts"].dtype) == "datetime64[ns, UTC]"
    assert frame["ts"].tolist() == [pd.Timestamp(T0 + k * MINUTE) for k in (2, 3, 4)]
    assert (frame["symbol"] == "SPY").all()
    empty = asyncio.run(venue.get_historical_data("SPY", "1m", T0 - 10 * MINUTE, T0))
    assert empty.empty
    assert list(empty.columns) == list(frame.columns)


def test_order_and_ids_are_checked() -> None:
    venue = make()

    async def check() -> None:
        with pytest.raises(ConfigError, match="takes an Order"):
            await venue.place_order({"symbol": "SPY"}, None)  # type: ignore[arg-type]
        with pytest.raises(ConfigError, match="canonical"):
            await venue.place_order(*approved(Order(symbol="btc/usd", side=Side.BUY, quantity=1, ts=T0)))
        with pytest.raises(ConfigError, match="client_order_id"):
            await venue.cancel_order("  ")
        with pytest.raises(ConnectorError, match="no order"):
            await venue.get_order("nope")

    asyncio.run(check())


# ---------------------------------------------------------------------- retries and breaker


def test_retries_then_succeeds_and_counts_retries() -> None:
    venue = make(fail_next=[TimeoutError(), ConnectionResetError("reset"), json.JSONDecodeError("x", "{", 0)])
    account = asyncio.run(venue.get_account())
    assert account.account_id == "fake-1"
    health = venue.health()
    assert health.retries == 3
    assert health.breaker_state is BreakerState.CLOSED
    assert health.total_failures == 3
    assert health.total_successes == 1
    assert "malformed" in health.last_error


def test_non_retryable_errors_are_raised_at_once_translated() -> None:
    request = httpx.Request("GET", "https://venue.test/account")
    unauthorised = httpx.HTTPStatusError(
        "401", request=request, response=httpx.Response(401, request=request)
    )
    venue = make(fail_next=[unauthorised])
    with pytest.raises(AuthenticationError) as info:
        asyncio.run(venue.get_account())
    assert isinstance(info.value.__cause__, httpx.HTTPStatusError)
    venue = make(fail_next=[KeyError("insufficient_funds")])
    with pytest.raises(OrderRejectedError):
        asyncio.run(venue.place_order(*approved(order())))
    assert venue.submit_calls == 1
    venue = make(fail_next=[KeyError("price")])
    with pytest.raises(ConnectorError, match="unexpected response"):
        asyncio.run(venue.get_positions())


def test_http_429_retry_after_is_honoured() -> None:
    request = httpx.Request("GET", "https://venue.test/positions")
    limited = httpx.Response(429, headers={"Retry-After": "0.05"}, request=request)
    venue = make(fail_next=[httpx.HTTPStatusError("429", request=request, response=limited)])
    waits: list[float] = []

    async def fake_sleep(s: float) -> None:
        waits.append(s)

    venue._sleep = fake_sleep
    positions = asyncio.run(venue.get_positions())
    assert set(positions) == {"SPY"}
    assert waits == [pytest.approx(0.05)]
    assert (
        parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=datetime(2015, 10, 21, 7, 27, tzinfo=UTC))
        == 60
    )


def test_timeout_of_a_slow_hook_is_a_retryable_failure() -> None:
    class Slow(FakeVenue):
        slow_calls = 1

        async def _fetch_account(self) -> Account:
            if self.slow_calls:
                self.slow_calls -= 1
                await asyncio.sleep(10)
            return await super()._fetch_account()

    venue = Slow(ConnectorConfig(venue="fake", timeout_s=0.02, retry=FAST, rate_limit_per_s=None))
    assert asyncio.run(venue.get_account()).cash == 1000.0
    assert venue.health().retries == 1
    assert "timed out" in venue.health().last_error


def test_breaker_opens_and_health_shows_it() -> None:
    venue = make(
        fail_next=[VenueUnavailableError("503")] * 10,
        retry=RetryPolicy(max_attempts=2, base_delay_s=0.0, max_delay_s=0.0),
        breaker=BreakerConfig(failure_threshold=3, reset_timeout_s=60),
    )

    async def run() -> None:
        with pytest.raises(VenueUnavailableError):
            await venue.get_account()  # failures 1, 2
        with pytest.raises(VenueUnavailableError, match=r"circuit breaker .* is open"):
            await venue.get_account()  # failure 3 opens it; the retry is refused by the breaker

    asyncio.run(run())
    health = venue.health()
    assert health.breaker_state is BreakerState.OPEN
    assert not health.healthy
    assert health.times_opened == 1
    assert health.retry_in_s > 0
    assert len(venue.fail_next) == 7  # the open breaker kept calls away from the venue
    venue.breaker._opened_at -= 61  # the cool-down elapses
    venue.fail_next.clear()
    assert venue.health().breaker_state is BreakerState.HALF_OPEN
    asyncio.run(venue.get_account())
    assert venue.health().breaker_state is BreakerState.CLOSED


# ---------------------------------------------------------------------- idempotent orders


def test_place_order_is_idempotent_under_injected_timeouts() -> None:
    venue = make(fail_share=0.4, retry=RetryPolicy(max_attempts=20, base_delay_s=0.0, max_delay_s=0.0))
    n = 300

    async def run() -> list[OrderResult]:
        return await asyncio.gather(*(venue.place_order(*approved(order(i))) for i in range(n)))

    results = asyncio.run(run())
    assert [r.client_order_id for r in results] == [f"cid-{i}" for i in range(n)]
    assert len(venue.venue_orders) == n
    duplicates = sum(len(v) - 1 for v in venue.venue_orders.values())
    assert duplicates == 0
    assert venue.health().retries > 50
    assert venue.find_calls > 50


def test_placing_the_same_client_id_twice_asks_the_venue_first() -> None:
    venue = make()

    async def run() -> tuple[OrderResult, OrderResult]:
        return await venue.place_order(*approved(order(1))), await venue.place_order(*approved(order(1)))

    first, second = asyncio.run(run())
    assert first.venue_order_id == second.venue_order_id
    assert venue.submit_calls == 1
    assert venue.find_calls == 1


# ---------------------------------------------------------------------- streams


@pytest.mark.parametrize(
    ("drop_every", "gap", "replay"), [(7, 3, 0), (5, 0, 4), (11, 6, 2), (1, 2, 1), (4, 2, 3)]
)
def test_stream_reconnects_backfills_and_deduplicates(drop_every: int, gap: int, replay: int) -> None:
    bars = minute_bars(120)
    venue = make(bars=bars, drop_every=drop_every, gap=gap, replay=replay, stream_reconnect_max=3)
    got = asyncio.run(collect(venue, ["SPY"]))
    assert [b.ts for b in got] == [b.ts for b in bars]  # no missing, no duplicated bar, in order
    assert [b.close for b in got] == pytest.approx([b.close for b in bars])
    health = venue.health()
    assert health.stream_reconnects >= 120 // (drop_every + gap) - 1
    if gap > replay:
        assert health.backfilled_bars > 0
    if replay > gap:
        assert health.duplicates_dropped > 0


def test_stream_gives_up_after_reconnect_max_without_progress() -> None:
    venue = make(bars=minute_bars(5), fail_next=[ConnectionRefusedError()] * 10, stream_reconnect_max=2)
    with pytest.raises(VenueUnavailableError, match="stream_reconnect_max=2"):
        asyncio.run(collect(venue, ["SPY"]))
    assert venue.connects == 3


def test_stream_auth_error_is_not_retried() -> None:
    venue = make(bars=minute_bars(5), fail_next=[AuthenticationError("bad token")])
    with pytest.raises(AuthenticationError):
        asyncio.run(collect(venue, ["SPY"]))
    assert venue.connects == 1


def test_stream_drops_stale_quotes_and_repeated_trades_but_keeps_same_time_trades() -> None:
    q1 = Quote(symbol="SPY", ts=T0, bid=99.0, ask=101.0)
    q_old = Quote(symbol="SPY", ts=T0 - MINUTE, bid=98.0, ask=100.0)
    t1 = Trade(symbol="SPY", ts=T0, price=100.0, size=1.0, trade_id="a")
    t2 = Trade(symbol="SPY", ts=T0, price=100.5, size=2.0, trade_id="b")
    venue = make(extra_events=[q1, q_old, q1, t1, t2, t1])
    got = asyncio.run(collect(venue, ["SPY"]))
    assert got == [q1, t1, t2]
    assert venue.health().duplicates_dropped == 3


def test_stream_needs_symbols_and_stops_when_the_consumer_stops() -> None:
    venue = make(bars=minute_bars(50))
    with pytest.raises(ConfigError, match="at least one symbol"):
        asyncio.run(collect(venue, []))
    assert len(asyncio.run(collect(venue, "SPY", limit=5))) == 5


# ---------------------------------------------------------------------- lifecycle and registry


def test_async_with_closes_and_closed_connector_refuses_calls() -> None:
    async def run() -> FakeVenue:
        async with make() as venue:
            await venue.get_account()
        return venue

    venue = asyncio.run(run())
    assert venue.health().closed
    with pytest.raises(ConnectorError, match="closed"):
        asyncio.run(venue.get_account())


def test_injected_http_client_is_left_open_and_owned_one_is_closed() -> None:
    async def run() -> tuple[httpx.AsyncClient, httpx.AsyncClient]:
        injected = httpx.AsyncClient()
        venue = FakeVenue(ConnectorConfig(venue="fake"), http=injected)
        assert venue.http is injected
        owned_venue = FakeVenue(ConnectorConfig(venue="fake", base_url="https://venue.test"))
        owned = owned_venue.http
        await venue.aclose()
        await owned_venue.aclose()
        return injected, owned

    injected, owned = asyncio.run(run())
    assert not injected.is_closed
    assert owned.is_closed


def test_config_checks_and_secret_prefix() -> None:
    assert ConnectorConfig(venue="oanda").env_prefix() == "ALPHALOOM_OANDA_"
    assert ConnectorConfig(venue="x", secret_prefix="MY_").env_prefix() == "MY_"
    with pytest.raises(ConfigError, match="Did you mean 'timeout_s'"):
        ConnectorConfig.from_dict({"venue": "x", "timeout": 3})
    with pytest.raises(ConfigError, match="scheme"):
        ConnectorConfig.from_dict({"venue": "x", "base_url": "api.venue.test"})
    with pytest.raises(ConfigError, match="needs a"):
        FakeVenue("paper")  # type: ignore[arg-type]


def test_registry_resolves_names_and_suggests_close_ones() -> None:
    assert "paper" in available_connectors()
    assert get_connector_class("paper").name == "paper"
    with pytest.raises(ConfigError, match="Did you mean 'paper'"):
        get_connector_class("papr")
    register_connector("fake-test", FakeVenue)
    assert get_connector_class("fake-test") is FakeVenue
    with pytest.raises(ConfigError, match="module:ClassName"):
        register_connector("broken", "no_colon_here")


def test_rate_429_without_retry_after_and_long_retry_after_give_up() -> None:
    venue = make(fail_next=[RateLimitError("slow down", retry_after_s=3600.0)])
    with pytest.raises(RateLimitError):
        asyncio.run(venue.get_account())
    assert venue.health().retries == 0


class LateLandingVenue(FakeVenue):
    """The first submission times out but still reaches the venue 50 ms later (a request in flight)."""

    async def _submit_order(self, order: Order) -> OrderResult:
        self.submit_calls += 1
        if self.submit_calls == 1:
            loop = asyncio.get_running_loop()
            loop.call_later(
                0.05, lambda: self.venue_orders.setdefault(order.client_order_id, []).append(order)
            )
            raise TimeoutError("request timed out; it is still travelling")
        self.venue_orders.setdefault(order.client_order_id, []).append(order)
        return self._result(order.client_order_id)


@pytest.mark.parametrize(("settle_s", "expected_orders"), [(0.0, 2), (0.2, 1)])
def test_order_settle_window_covers_a_request_still_in_flight(settle_s: float, expected_orders: int) -> None:
    """Without a settle wait a late-landing first request and the retry are two orders; with one, one."""
    config = ConnectorConfig(
        venue="fake", retry=FAST, rate_limit_per_s=None, timeout_s=5.0, order_settle_s=settle_s
    )
    venue = LateLandingVenue(config)

    async def run() -> OrderResult:
        result = await venue.place_order(*approved(order(7)))
        await asyncio.sleep(0.1)  # let the late request land whatever happened
        return result

    result = asyncio.run(run())
    assert result.client_order_id == "cid-7"
    assert len(venue.venue_orders["cid-7"]) == expected_orders
