"""The exchange-connector contract: a base class that owns validation and fault tolerance.

:class:`ExchangeConnector` implements the public, validated, fault-tolerant methods once; a venue adapter
subclasses it and fills small protected hooks (``_fetch_bars``, ``_stream``, ``_submit_order``,
``_find_order``, ``_cancel_order``, ``_fetch_positions``, ``_fetch_account`` and optionally
``_translate_error``). See docs/CONNECTORS.md and copy ``_template.py`` to start a new one.

What the base class guarantees for every connector:

- Arguments are checked before any hook runs: aware datetimes, ``start < end``, a known timeframe, a
  canonical symbol (``BTCUSD``, ``EURUSD``, ``SPY``).
- Each hook call runs under a per-call timeout, a token bucket (``RateLimiter``), a ``CircuitBreaker`` and a
  ``RetryPolicy`` from :mod:`alphaloom.core.resilience`, retrying ``VenueUnavailableError`` and
  ``RateLimitError`` only.
- Every exception that is not already an :class:`~alphaloom.core.exceptions.AlphaloomError` is translated at
  the boundary: first by the connector's ``_translate_error``, then by generic rules for timeouts, network
  errors, httpx status errors and malformed responses, raised ``from`` the original.
- ``place_order`` sends nothing without the risk manager's approval of exactly that order
  (:mod:`alphaloom.core.approval`), and is idempotent on ``client_order_id``: after a failed attempt the
  venue is asked (``_find_order``) before the order is sent again, so one client id never becomes two venue
  orders.
- ``get_real_time_data`` reconnects with backoff when the stream drops, backfills missed bars from history and
  never yields the same (symbol, kind, ts) twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import logging
import math
import random
import re
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, Self, TypeVar

import pandas as pd
from pydantic import Field, field_validator

from alphaloom.core.approval import RiskApproval, verify_approval
from alphaloom.core.clock import Clock, LiveClock
from alphaloom.core.config import ComponentConfig
from alphaloom.core.exceptions import (
    AlphaloomError,
    AuthenticationError,
    ConfigError,
    ConnectorError,
    DataFormatError,
    RateLimitError,
    VenueUnavailableError,
    did_you_mean,
)
from alphaloom.core.resilience import (
    BreakerConfig,
    BreakerState,
    CircuitBreaker,
    RateLimiter,
    RetryPolicy,
    Sleep,
    call_resilient,
)
from alphaloom.core.secrets import EnvSecretProvider, SecretProvider
from alphaloom.core.timeutil import ensure_utc
from alphaloom.core.types import (
    BAR_COLUMNS,
    Account,
    Bar,
    Order,
    OrderResult,
    Position,
    Quote,
    Trade,
)

if TYPE_CHECKING:
    import httpx

__all__ = [
    "CONNECTORS",
    "TIMEFRAMES",
    "ConnectorConfig",
    "ConnectorHealth",
    "ExchangeConnector",
    "StreamEvent",
    "available_connectors",
    "event_kind",
    "get_connector_class",
    "parse_retry_after",
    "register_connector",
    "timeframe_delta",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: What a real-time stream yields.
StreamEvent = Bar | Quote | Trade

#: Timeframes every connector understands, with their length. Bars are stamped with their open time.
TIMEFRAMES: dict[str, timedelta] = {
    "1m": timedelta(minutes=1),
    "5m": timedelta(minutes=5),
    "15m": timedelta(minutes=15),
    "30m": timedelta(minutes=30),
    "1h": timedelta(hours=1),
    "4h": timedelta(hours=4),
    "1d": timedelta(days=1),
}

# Canonical symbols: upper-case letters and digits, with '.', '-' or '^' inside (BRK.B, BF-B, ^GSPC).
_CANONICAL_SYMBOL = re.compile(r"^\^?[A-Z0-9]+(?:[.\-][A-Z0-9]+)*$")
_MAX_SYMBOL_LEN = 32


def timeframe_delta(timeframe: str) -> timedelta:
    """The length of ``timeframe`` (``"5m"`` -> 5 minutes).

    Raises
    ------
    ConfigError
        For a timeframe outside :data:`TIMEFRAMES`, suggesting the closest.
    """
    if isinstance(timeframe, str) and timeframe in TIMEFRAMES:
        return TIMEFRAMES[timeframe]
    raise ConfigError(
        f"unknown timeframe {timeframe!r}.{did_you_mean(str(timeframe), TIMEFRAMES)} "
        f"Valid timeframes: {', '.join(TIMEFRAMES)}."
    )


def event_kind(event: StreamEvent) -> str:
    """``"bar"``, ``"quote"`` or ``"trade"``."""
    if isinstance(event, Bar):
        return "bar"
    if isinstance(event, Quote):
        return "quote"
    if isinstance(event, Trade):
        return "trade"
    raise DataFormatError(f"a stream must yield Bar, Quote or Trade, got {type(event).__name__}.")


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from an HTTP ``Retry-After`` header (delta-seconds or an HTTP date), or ``None``."""
    if value is None or not str(value).strip():
        return None
    text = str(value).strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            return None
        ref = now or datetime.now(when.tzinfo)
        seconds = (when - ref).total_seconds()
    return max(0.0, seconds) if math.isfinite(seconds) else None


class ConnectorConfig(ComponentConfig):
    """Settings shared by every connector; a venue subclasses it to add its own keys.

    Parameters
    ----------
    venue
        The venue's registry name (``"paper"``, ``"oanda"``, ...), used in messages and the default secret
        prefix.
    base_url, stream_url
        REST and streaming endpoints (empty for venues that need none).
    timeout_s
        Limit on one hook call (one attempt), in seconds.
    retry, breaker
        Backoff policy and circuit-breaker settings.
    rate_limit_per_s, rate_burst
        Token bucket in front of every hook call; ``rate_limit_per_s=None`` disables it.
    secret_prefix
        Environment prefix for credentials; empty means ``ALPHALOOM_{VENUE}_`` (``ALPHALOOM_OANDA_API_KEY``).
    stream_reconnect_max
        Consecutive failed stream reconnects (with no event in between) before ``get_real_time_data`` gives
        up with :class:`~alphaloom.core.exceptions.VenueUnavailableError`.
    backfill
        Fetch bars missed while a stream was down from history after it reconnects.
    order_settle_s
        After an order attempt failed ambiguously (timeout, 5xx) and the venue has no such order yet, wait
        this long and ask once more before sending it again: the first request may still be in flight and
        land late, and a venue that only de-duplicates pending orders (OANDA) would then hold two. Must be
        well under ``timeout_s``; 0 asks once only.
    """

    venue: str = Field(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_\-]*$")
    base_url: str = ""
    stream_url: str = ""
    timeout_s: float = Field(10.0, gt=0.0, allow_inf_nan=False)
    retry: RetryPolicy = RetryPolicy()
    breaker: BreakerConfig = BreakerConfig()
    rate_limit_per_s: float | None = Field(10.0, gt=0.0, allow_inf_nan=False)
    rate_burst: int = Field(10, ge=1)
    secret_prefix: str = Field("", pattern=r"^([A-Za-z_][A-Za-z0-9_]*)?$")
    stream_reconnect_max: int = Field(10, ge=0)
    backfill: bool = True
    order_settle_s: float = Field(0.0, ge=0.0, allow_inf_nan=False)

    @field_validator("base_url", "stream_url")
    @classmethod
    def _url(cls, v: str) -> str:
        v = v.strip()
        if v and not re.match(r"^[a-z][a-z0-9+.\-]*://", v):
            raise ValueError(f"expected a URL with a scheme such as https:// or wss://, got {v!r}")
        return v

    def env_prefix(self) -> str:
        """The environment prefix credentials are read from."""
        return self.secret_prefix or f"ALPHALOOM_{re.sub(r'[^A-Z0-9]', '_', self.venue.upper())}_"


@dataclass(frozen=True, slots=True)
class ConnectorHealth:
    """A connector's health at one moment, for health checks and dashboards.

    Attributes
    ----------
    venue
        The venue name.
    breaker_state
        ``closed`` (healthy), ``open`` (calls refused) or ``half_open`` (probing).
    consecutive_failures, total_failures, total_successes
        Breaker counts of hook calls (stream connections are counted in ``stream_reconnects`` instead).
    times_opened
        How often the breaker opened.
    retries
        Retries done by hook calls.
    stream_reconnects
        Reconnects of real-time streams.
    backfilled_bars
        Bars recovered from history after stream drops.
    duplicates_dropped
        Stream events dropped as already seen.
    last_error
        The last error, as ``"Type: message"`` ("" when none).
    last_error_at, last_success_at
        When (UTC, from the connector's clock).
    retry_in_s
        Seconds until an open breaker lets a trial call through.
    closed
        Whether :meth:`ExchangeConnector.aclose` was called.
    """

    venue: str
    breaker_state: BreakerState
    consecutive_failures: int
    total_failures: int
    total_successes: int
    times_opened: int
    retries: int
    stream_reconnects: int
    backfilled_bars: int
    duplicates_dropped: int
    last_error: str
    last_error_at: datetime | None
    last_success_at: datetime | None
    retry_in_s: float
    closed: bool

    @property
    def healthy(self) -> bool:
        """Open for business: breaker closed and connector not closed."""
        return self.breaker_state is BreakerState.CLOSED and not self.closed


class ExchangeConnector(ABC):
    """Base of every venue adapter; see docs/CONNECTORS.md.

    Parameters
    ----------
    config
        The connector's settings (an instance of the class's ``config_class``).
    secrets
        Where credentials come from; environment variables ``config.env_prefix() + NAME`` by default.
    http
        An injected ``httpx.AsyncClient`` (tests point it at a local server). When ``None`` the connector
        creates one on first use of :attr:`http` and closes it in :meth:`aclose`; an injected client is left
        open for its owner.
    clock
        The time source for result timestamps (a ``SimulatedClock`` in replays); live UTC by default.

    Notes
    -----
    Subclasses set ``name`` (the registry name) and fill the hooks. Hooks receive checked arguments: venue
    symbols (from :meth:`to_venue_symbol`), aware UTC datetimes with ``start < end``, a known timeframe. They
    may raise vendor exceptions freely: the base translates them. Events and results they return carry
    canonical symbols.
    """

    name: ClassVar[str] = ""
    config_class: ClassVar[type[ConnectorConfig]] = ConnectorConfig

    def __init__(
        self,
        config: ConnectorConfig,
        *,
        secrets: SecretProvider | None = None,
        http: httpx.AsyncClient | None = None,
        clock: Clock | None = None,
    ) -> None:
        if not isinstance(config, self.config_class):
            raise ConfigError(
                f"{type(self).__name__} needs a {self.config_class.__name__}, got {type(config).__name__}; "
                f"build one with {self.config_class.__name__}(venue={self.name or 'name'!r}, ...)."
            )
        self.config = config
        self.secrets: SecretProvider = secrets or EnvSecretProvider(config.env_prefix())
        self.clock: Clock = clock or LiveClock()
        self._http = http
        self._owns_http = http is None
        self._sleep: Sleep = asyncio.sleep
        self._rng = random.Random()
        self.breaker = CircuitBreaker(config.breaker, name=config.venue)
        self.limiter = RateLimiter(config.rate_limit_per_s, config.rate_burst)
        self._retries = 0
        self._stream_reconnects = 0
        self._backfilled = 0
        self._duplicates = 0
        self._last_error = ""
        self._last_error_at: datetime | None = None
        self._last_success_at: datetime | None = None
        self._closed = False
        self._submitted_ids: set[str] = set()
        self._order_locks: dict[str, asyncio.Lock] = {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(venue={self.config.venue!r}, breaker={self.breaker.state.value})"

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Release connections (the owned HTTP client and whatever :meth:`_aclose` frees). Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            await self._aclose()
        finally:
            if self._owns_http and self._http is not None:
                await self._http.aclose()
            self._http = None

    @property
    def http(self) -> httpx.AsyncClient:
        """The HTTP client: the injected one, or one created on first use for ``config.base_url``."""
        self._check_open()
        if self._http is None:
            import httpx

            self._http = httpx.AsyncClient(base_url=self.config.base_url, timeout=self.config.timeout_s)
        return self._http

    def health(self) -> ConnectorHealth:
        """Breaker state, failure counts and the last error, without touching the venue."""
        b = self.breaker
        return ConnectorHealth(
            venue=self.config.venue,
            breaker_state=b.state,
            consecutive_failures=b.consecutive_failures,
            total_failures=b.total_failures,
            total_successes=b.total_successes,
            times_opened=b.times_opened,
            retries=self._retries,
            stream_reconnects=self._stream_reconnects,
            backfilled_bars=self._backfilled,
            duplicates_dropped=self._duplicates,
            last_error=self._last_error or b.last_error,
            last_error_at=self._last_error_at,
            last_success_at=self._last_success_at,
            retry_in_s=b.retry_in_s(),
            closed=self._closed,
        )

    # ------------------------------------------------------------------ symbols

    def to_venue_symbol(self, symbol: str) -> str:
        """The venue's form of canonical ``symbol`` (identity by default; ``BTCUSD`` -> ``BTC-USD``)."""
        return symbol

    def from_venue_symbol(self, venue_symbol: str) -> str:
        """The canonical form of ``venue_symbol`` (identity by default)."""
        return venue_symbol

    def check_symbol(self, symbol: str) -> str:
        """``symbol`` if it is in canonical form, else a :class:`ConfigError` with the canonical spelling."""
        if not isinstance(symbol, str):
            raise ConfigError(f"a symbol must be a string, got {type(symbol).__name__} ({symbol!r}).")
        if len(symbol) <= _MAX_SYMBOL_LEN and _CANONICAL_SYMBOL.match(symbol):
            return symbol
        guess = re.sub(r"[\s/_:]", "", symbol).upper()
        hint = (
            f" Did you mean {guess!r}?"
            if guess != symbol and _CANONICAL_SYMBOL.match(guess) and len(guess) <= _MAX_SYMBOL_LEN
            else ""
        )
        raise ConfigError(
            f"symbol {symbol!r} is not in alphaloom's canonical form (upper-case letters and digits, e.g. "
            f"'BTCUSD', 'EURUSD', 'SPY', 'BRK.B'); {self.name or type(self).__name__} maps it to the venue's "
            f"form itself.{hint}"
        )

    # ------------------------------------------------------------------ public API

    async def get_historical_data(
        self, symbol: str, timeframe: str, start: datetime, end: datetime
    ) -> pd.DataFrame:
        """Bars of ``symbol`` in ``[start, end)`` as a canonical bars frame.

        Parameters
        ----------
        symbol
            Canonical symbol (``"SPY"``, ``"BTCUSD"``).
        timeframe
            One of :data:`TIMEFRAMES`.
        start, end
            Timezone-aware bounds, ``start < end``; start inclusive, end exclusive.

        Returns
        -------
        pandas.DataFrame
            Columns :data:`~alphaloom.core.types.BAR_COLUMNS`, ``ts`` as ``datetime64[ns, UTC]`` (bar open),
            sorted, unique on ``ts``, all rows inside ``[start, end)``; empty when the venue has none.

        Raises
        ------
        ConfigError
            Bad symbol or timeframe, naive datetimes, or ``start >= end``.
        ConnectorError
            The venue failed (after retries) or refused.
        """
        symbol = self.check_symbol(symbol)
        timeframe_delta(timeframe)
        start_utc, end_utc = self._check_range(start, end)
        venue_symbol = self.to_venue_symbol(symbol)
        frame = await self._call(
            "get_historical_data", lambda: self._fetch_bars(venue_symbol, timeframe, start_utc, end_utc)
        )
        return self._normalise_bars(frame, symbol, start_utc, end_utc)

    async def get_real_time_data(self, symbols: Sequence[str]) -> AsyncIterator[StreamEvent]:
        """Stream bars, quotes or trades of ``symbols`` as they happen.

        An async generator: ``async for event in connector.get_real_time_data(["SPY"])``. When the venue's
        stream ends or fails with a retryable error it reconnects with backoff (``config.retry``); after a
        reconnect, bars missed in the gap are fetched from history (``config.backfill``) and yielded in order
        before the new ones. Events at or before the last one seen for the same (symbol, kind) are dropped,
        so no (symbol, kind, ts) is yielded twice. Bars must be completed bars with a known ``timeframe``.

        Raises
        ------
        ConfigError
            Bad or no symbols.
        VenueUnavailableError
            More than ``config.stream_reconnect_max`` reconnects in a row without an event.
        ConnectorError
            A non-retryable venue error (e.g. authentication).
        """
        if isinstance(symbols, str):
            symbols = [symbols]
        canonical = list(dict.fromkeys(self.check_symbol(s) for s in symbols))
        if not canonical:
            raise ConfigError("get_real_time_data() needs at least one symbol.")
        self._check_open()
        venue_symbols = [self.to_venue_symbol(s) for s in canonical]
        last: dict[tuple[str, str], datetime] = {}
        bar_info: dict[str, tuple[str, str]] = {}  # symbol -> (timeframe, exchange) of its bars
        recent_trade_ids: dict[str, deque[str]] = {}
        stale: set[tuple[str, str]] = set()  # bar keys seen before the latest reconnect, not since
        failures = 0
        while True:
            stream = self._stream(venue_symbols)
            events = _translated(stream, self)
            try:
                async for event in events:
                    key = (event.symbol, event_kind(event))
                    if self._is_duplicate(event, key, last, recent_trade_ids):
                        self._duplicates += 1
                        continue
                    if isinstance(event, Bar):
                        bar_info[event.symbol] = (event.timeframe, event.exchange)
                        if key in stale:
                            stale.discard(key)
                            for missed in await self._backfill(event.symbol, last[key], event.ts, bar_info):
                                last[key] = missed.ts
                                yield missed
                    last[key] = event.ts
                    failures = 0
                    yield event
                if self._stream_finished():
                    # A finite stream (a replay) is over: recover what it skipped after its last drop.
                    for key in sorted(stale):
                        tf = TIMEFRAMES.get(bar_info[key[0]][0])
                        if tf is None:
                            continue
                        until = max(self.clock.now(), last[key]) + tf
                        for missed in await self._backfill(key[0], last[key], until, bar_info):
                            last[key] = missed.ts
                            yield missed
                    return
                error: ConnectorError = VenueUnavailableError(
                    f"the {self.config.venue} stream ended unexpectedly"
                )
            except (VenueUnavailableError, RateLimitError) as exc:
                error = exc
            finally:
                await events.aclose()
                aclose = getattr(stream, "aclose", None)
                if aclose is not None:
                    with contextlib.suppress(Exception):
                        await aclose()
            failures += 1
            self._note_error(error)
            if failures > self.config.stream_reconnect_max:
                raise VenueUnavailableError(
                    f"the {self.config.venue} stream failed {failures} times in a row without delivering an "
                    f"event (last: {error}); giving up after stream_reconnect_max="
                    f"{self.config.stream_reconnect_max} reconnects."
                ) from error
            stale = {k for k in last if k[1] == "bar"}
            wait = self.config.retry.delay(
                min(failures, 64), rng=self._rng, retry_after_s=getattr(error, "retry_after_s", None)
            )
            logger.warning(
                "%s stream dropped (%s); reconnect %d in %.2f s", self.config.venue, error, failures, wait
            )
            await self._sleep(wait)
            self._check_open()
            self._stream_reconnects += 1

    async def place_order(self, order: Order, approval: RiskApproval) -> OrderResult:
        """Send ``order`` to the venue, exactly once per ``order.client_order_id``.

        The order must carry the risk manager's approval of exactly this order: it is verified
        (:func:`~alphaloom.core.approval.verify_approval`) before anything else, so an unapproved order never
        reaches the venue. Call :meth:`RiskManager.submit <alphaloom.risk.manager.RiskManager.submit>`
        rather than this method: it checks the order and passes the approval on.

        After a failed attempt (timeout, 5xx), and for a client id this connector has sent before, the venue
        is first asked for the order (``_find_order``); only if it has none is the order sent again.

        Parameters
        ----------
        order
            The order to send.
        approval
            The :class:`~alphaloom.core.approval.RiskApproval` the risk manager issued for ``order``.

        Raises
        ------
        RiskLimitError
            No approval, a forged or altered one, or one issued for another order; nothing was sent.
        ConfigError
            Not an :class:`~alphaloom.core.types.Order`, or a non-canonical symbol.
        OrderRejectedError
            The venue refused the order (never retried).
        VenueUnavailableError
            The venue stayed unavailable through every retry; the order may or may not exist, so ask
            :meth:`get_order` before placing a replacement with a new client id.
        """
        if not isinstance(order, Order):
            raise ConfigError(f"place_order() takes an Order, got {type(order).__name__}.")
        verify_approval(order, approval)
        self.check_symbol(order.symbol)
        cid = order.client_order_id
        lock = self._order_locks.setdefault(cid, asyncio.Lock())
        async with lock:
            sent = cid in self._submitted_ids

            async def attempt() -> OrderResult:
                nonlocal sent
                if sent:
                    found = await self._settled_order(cid)
                    if found is not None:
                        return found
                sent = True
                self._submitted_ids.add(cid)
                return await self._submit_order(order)

            result = await self._call("place_order", attempt)
        return self._check_result(result, cid, "place_order")

    async def _settled_order(self, cid: str) -> OrderResult | None:
        """The venue's order for ``cid``; with ``order_settle_s`` set, asked once more after that wait.

        An earlier attempt that timed out may still reach the venue; resending before it could have landed
        is how a retry creates a second order at venues that only de-duplicate pending orders.
        """
        found = await self._find_order(cid)
        if found is None and self.config.order_settle_s:
            await self._sleep(self.config.order_settle_s)
            found = await self._find_order(cid)
        return found

    async def cancel_order(self, client_order_id: str) -> OrderResult:
        """Cancel the order with ``client_order_id``; cancelling a finished order returns its final state."""
        cid = self._check_cid(client_order_id)
        result = await self._call("cancel_order", lambda: self._cancel_order(cid))
        return self._check_result(result, cid, "cancel_order")

    async def get_order(self, client_order_id: str) -> OrderResult:
        """The venue's view of the order with ``client_order_id``.

        Raises
        ------
        ConnectorError
            The venue has no order with that id.
        """
        cid = self._check_cid(client_order_id)
        result = await self._call("get_order", lambda: self._find_order(cid))
        if result is None:
            raise ConnectorError(
                f"{self.config.venue} has no order with client_order_id {cid!r}; check the id, or place the "
                f"order first."
            )
        return self._check_result(result, cid, "get_order")

    async def get_positions(self) -> dict[str, Position]:
        """Open positions by canonical symbol."""
        positions = await self._call("get_positions", self._fetch_positions)
        if not isinstance(positions, dict):
            raise ConnectorError(
                f"{type(self).__name__}._fetch_positions returned {type(positions).__name__}; "
                "expected a dict."
            )
        return dict(positions)

    async def get_account(self) -> Account:
        """Balances of the account."""
        account = await self._call("get_account", self._fetch_account)
        if not isinstance(account, Account):
            raise ConnectorError(
                f"{type(self).__name__}._fetch_account returned {type(account).__name__}; expected Account."
            )
        return account

    # ------------------------------------------------------------------ hooks

    @abstractmethod
    async def _fetch_bars(
        self, venue_symbol: str, timeframe: str, start: datetime, end: datetime
    ) -> pd.DataFrame:
        """Bars in ``[start, end)``, paginating as the venue needs; a frame with at least ts/OHLC columns."""

    @abstractmethod
    def _stream(self, venue_symbols: Sequence[str]) -> AsyncIterator[StreamEvent]:
        """An async iterator of events (canonical symbols); it may end or raise when the connection drops."""

    @abstractmethod
    async def _submit_order(self, order: Order) -> OrderResult:
        """Send ``order`` (passing its client id to the venue where supported)."""

    @abstractmethod
    async def _find_order(self, client_order_id: str) -> OrderResult | None:
        """The order with ``client_order_id``, or ``None`` if the venue has no such order."""

    @abstractmethod
    async def _cancel_order(self, client_order_id: str) -> OrderResult:
        """Cancel the order with ``client_order_id``."""

    @abstractmethod
    async def _fetch_positions(self) -> dict[str, Position]:
        """Open positions by canonical symbol."""

    @abstractmethod
    async def _fetch_account(self) -> Account:
        """The account's balances."""

    def _translate_error(self, exc: Exception) -> AlphaloomError | None:
        """The alphaloom error for vendor exception ``exc``, or ``None`` to use the generic rules."""
        return None

    def _stream_finished(self) -> bool:
        """True when ``_stream`` ended because there is nothing more to send (a finished replay)."""
        return False

    async def _aclose(self) -> None:
        """Release venue resources (websockets, sessions); called once by :meth:`aclose`."""
        return None

    # ------------------------------------------------------------------ machinery

    async def _call(self, op: str, fn: Callable[[], Awaitable[T]]) -> T:
        self._check_open()

        async def attempt() -> T:
            try:
                async with asyncio.timeout(self.config.timeout_s):
                    return await fn()
            except AlphaloomError:
                raise
            except Exception as exc:
                raise self._translate(exc, op) from exc

        def on_retry(n: int, exc: BaseException, wait: float) -> None:
            self._retries += 1
            self._note_error(exc)
            logger.info(
                "%s %s attempt %d failed (%s); retrying in %.2f s", self.config.venue, op, n, exc, wait
            )

        try:
            result = await call_resilient(
                attempt,
                retry=self.config.retry,
                breaker=self.breaker,
                limiter=self.limiter,
                before_retry=on_retry,
                sleep=self._sleep,
                rng=self._rng,
            )
        except AlphaloomError as exc:
            self._note_error(exc)
            raise
        self._last_success_at = self.clock.now()
        return result

    def _translate(self, exc: Exception, op: str) -> AlphaloomError:
        where = f"{self.config.venue} {op}"
        try:
            ours = self._translate_error(exc)
        except Exception as inner:  # a broken translator must not hide the original error
            logger.exception("%s._translate_error failed on %r", type(self).__name__, exc)
            ours = ConnectorError(f"{where}: {type(exc).__name__}: {exc} (translator failed: {inner})")
        if ours is not None:
            return ours
        return _generic_translation(exc, where)

    def _note_error(self, exc: BaseException) -> None:
        self._last_error = f"{type(exc).__name__}: {exc}"
        self._last_error_at = self.clock.now()

    def _check_open(self) -> None:
        if self._closed:
            raise ConnectorError(
                f"the {self.config.venue} connector is closed; create a new one (or use `async with`)."
            )

    @staticmethod
    def _check_range(start: datetime, end: datetime) -> tuple[datetime, datetime]:
        try:
            start_utc = ensure_utc(start, name="start")
            end_utc = ensure_utc(end, name="end")
        except DataFormatError as exc:
            raise ConfigError(str(exc)) from exc
        if not start_utc < end_utc:
            raise ConfigError(
                f"start {start_utc.isoformat()} must be before end {end_utc.isoformat()}; the range is "
                f"[start, end)."
            )
        return start_utc, end_utc

    @staticmethod
    def _check_cid(client_order_id: str) -> str:
        if not isinstance(client_order_id, str) or not client_order_id.strip():
            raise ConfigError(f"client_order_id must be a non-empty string, got {client_order_id!r}.")
        return client_order_id

    def _check_result(self, result: object, cid: str, op: str) -> OrderResult:
        if not isinstance(result, OrderResult):
            raise ConnectorError(
                f"{type(self).__name__} {op} returned {type(result).__name__}; expected OrderResult."
            )
        if result.client_order_id != cid:
            raise ConnectorError(
                f"{self.config.venue} {op} answered for client_order_id {result.client_order_id!r}, "
                f"expected {cid!r}."
            )
        return result

    def _normalise_bars(self, frame: object, symbol: str, start: datetime, end: datetime) -> pd.DataFrame:
        where = f"{self.config.venue} bars for {symbol}"
        if not isinstance(frame, pd.DataFrame):
            raise ConnectorError(
                f"{where}: _fetch_bars returned {type(frame).__name__}; expected a DataFrame."
            )
        missing = [c for c in ("ts", "open", "high", "low", "close") if c not in frame.columns]
        if missing and not frame.empty:
            raise DataFormatError(f"{where}: missing column(s) {missing}; found {list(frame.columns)}.")
        out = pd.DataFrame({c: frame[c] for c in BAR_COLUMNS if c in frame.columns and c != "symbol"})
        if out.empty:
            out = pd.DataFrame({c: pd.Series(dtype="float64") for c in BAR_COLUMNS if c != "symbol"})
        out["ts"] = pd.to_datetime(out["ts"], utc=True).astype("datetime64[ns, UTC]")
        for col in ("open", "high", "low", "close", "volume"):
            out[col] = pd.to_numeric(out[col], errors="coerce").astype("float64") if col in out else math.nan
        out.insert(0, "symbol", symbol)
        out["symbol"] = out["symbol"].astype("str")
        inside = (out["ts"] >= pd.Timestamp(start)) & (out["ts"] < pd.Timestamp(end))
        out = out.loc[inside].sort_values("ts", kind="stable")
        out = out.drop_duplicates("ts", keep="last").reset_index(drop=True)
        return out.loc[:, list(BAR_COLUMNS)]

    def _is_duplicate(
        self,
        event: StreamEvent,
        key: tuple[str, str],
        last: dict[tuple[str, str], datetime],
        recent_trade_ids: dict[str, deque[str]],
    ) -> bool:
        prev = last.get(key)
        if isinstance(event, Trade) and event.trade_id:
            seen = recent_trade_ids.setdefault(event.symbol, deque(maxlen=1024))
            if event.trade_id in seen or (prev is not None and event.ts < prev):
                return True
            seen.append(event.trade_id)
            return False
        return prev is not None and event.ts <= prev

    async def _backfill(
        self, symbol: str, last_ts: datetime, until: datetime, bar_info: dict[str, tuple[str, str]]
    ) -> list[Bar]:
        timeframe, exchange = bar_info[symbol]
        if not self.config.backfill or timeframe not in TIMEFRAMES:
            return []
        gap_start = last_ts + TIMEFRAMES[timeframe]
        if until <= gap_start:
            return []
        missed: list[Bar] = []
        frame = await self.get_historical_data(symbol, timeframe, gap_start, until)
        for row in frame.itertuples(index=False):
            ts = row.ts.to_pydatetime()
            if ts <= last_ts:
                continue
            try:
                recovered = Bar(
                    symbol=symbol,
                    ts=ts,
                    open=row.open,
                    high=row.high,
                    low=row.low,
                    close=row.close,
                    volume=None if math.isnan(row.volume) else row.volume,
                    exchange=exchange,
                    timeframe=timeframe,
                )
            except DataFormatError as exc:
                # The stream must go on; the validator downstream is where bad history gets quarantined.
                logger.warning("%s backfill skipped an invalid bar: %s", self.config.venue, exc)
                continue
            missed.append(recovered)
        self._backfilled += len(missed)
        return missed


async def _translated(
    stream: AsyncIterator[StreamEvent], owner: ExchangeConnector
) -> AsyncIterator[StreamEvent]:
    iterator = aiter(stream)
    while True:
        try:
            event = await anext(iterator)
        except StopAsyncIteration:
            return
        except AlphaloomError:
            raise
        except Exception as exc:
            raise owner._translate(exc, "stream") from exc
        yield event


def _generic_translation(exc: Exception, where: str) -> AlphaloomError:
    """Map common vendor and stdlib exceptions to ours; anything unknown becomes a plain ConnectorError."""
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    try:
        import httpx
    except ImportError:  # pragma: no cover - httpx is a dependency
        httpx = None  # type: ignore[assignment]
    if httpx is not None and isinstance(exc, httpx.HTTPStatusError):
        return _from_status(exc.response.status_code, exc.response.headers.get("Retry-After"), where, text)
    if isinstance(exc, TimeoutError) or (httpx is not None and isinstance(exc, httpx.TimeoutException)):
        return VenueUnavailableError(f"{where} timed out ({text}); the venue may be slow or down.")
    if httpx is not None and isinstance(exc, httpx.TransportError | httpx.DecodingError):
        return VenueUnavailableError(f"{where}: connection problem ({text}).")
    if isinstance(exc, ConnectionError | OSError | EOFError):
        return VenueUnavailableError(f"{where}: connection problem ({text}).")
    if isinstance(exc, json.JSONDecodeError | UnicodeDecodeError):
        return VenueUnavailableError(f"{where}: the venue sent a malformed response ({text}).")
    if isinstance(exc, LookupError | ValueError | TypeError):
        return ConnectorError(f"{where}: unexpected response from the venue ({text}).")
    return ConnectorError(f"{where}: {text}")


def _from_status(status: int, retry_after: str | None, where: str, text: str) -> AlphaloomError:
    if status in (401, 403):
        return AuthenticationError(f"{where}: the venue refused the credentials (HTTP {status}); check them.")
    if status == 429:
        return RateLimitError(
            f"{where}: rate limited (HTTP 429).", retry_after_s=parse_retry_after(retry_after)
        )
    if status == 408 or status >= 500:
        return VenueUnavailableError(f"{where}: the venue answered HTTP {status} ({text}).")
    return ConnectorError(f"{where}: the venue answered HTTP {status} ({text}).")


# ---------------------------------------------------------------------- registry

#: Built-in connectors: registry name -> "module:Class", imported on first use.
CONNECTORS: dict[str, str] = {
    "paper": "alphaloom.data.connectors.paper:PaperExchange",
    "ccxt": "alphaloom.data.connectors.ccxt_venue:CcxtConnector",
    "coinbase": "alphaloom.data.connectors.coinbase:CoinbaseConnector",
    "oanda": "alphaloom.data.connectors.oanda:OANDAConnector",
    "robinhood": "alphaloom.data.connectors.robinhood:RobinhoodConnector",
}
_LOADED: dict[str, type[ExchangeConnector]] = {}


def register_connector(name: str, target: str | type[ExchangeConnector] | None = None) -> Any:
    """Register a connector class under ``name``.

    Use as a call (``register_connector("kraken", "pkg.mod:KrakenConnector")`` or with the class) or as a
    class decorator (``@register_connector("kraken")``).
    """
    if not isinstance(name, str) or not re.match(r"^[a-z][a-z0-9_\-]*$", name):
        raise ConfigError(f"connector names are lower-case identifiers such as 'kraken', got {name!r}.")

    def add(obj: str | type[ExchangeConnector]) -> Any:
        if isinstance(obj, str):
            if ":" not in obj:
                raise ConfigError(f"register {name!r} as 'package.module:ClassName', got {obj!r}.")
            CONNECTORS[name] = obj
            _LOADED.pop(name, None)
        elif isinstance(obj, type) and issubclass(obj, ExchangeConnector):
            CONNECTORS[name] = f"{obj.__module__}:{obj.__qualname__}"
            _LOADED[name] = obj
        else:
            raise ConfigError(
                f"register_connector({name!r}) needs an ExchangeConnector subclass, got {obj!r}."
            )
        return obj

    if target is None:
        return add
    return add(target)


def available_connectors() -> list[str]:
    """Registered connector names, sorted."""
    return sorted(CONNECTORS)


def get_connector_class(name: str) -> type[ExchangeConnector]:
    """The connector class registered as ``name`` (``"paper"``, ``"oanda"``, ...).

    Raises
    ------
    ConfigError
        Unknown name (with the closest match and the valid names), or a registered module that cannot be
        imported (e.g. a missing optional dependency).
    """
    if name in _LOADED:
        return _LOADED[name]
    if name not in CONNECTORS:
        raise ConfigError(
            f"unknown connector {name!r}.{did_you_mean(str(name), CONNECTORS)} "
            f"Available: {', '.join(available_connectors())}."
        )
    module_name, _, cls_name = CONNECTORS[name].partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(
            f"connector {name!r} lives in {module_name}, which could not be imported ({exc}); install its "
            f"dependencies or check the installation."
        ) from exc
    cls = getattr(module, cls_name, None)
    if not (isinstance(cls, type) and issubclass(cls, ExchangeConnector)):
        raise ConfigError(f"{CONNECTORS[name]} is not an ExchangeConnector subclass; fix the registration.")
    _LOADED[name] = cls
    return cls
