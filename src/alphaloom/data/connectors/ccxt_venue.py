"""Any exchange ccxt supports, through its async client: one connector parameterised by the exchange id.

:class:`CcxtConnector` fills the :class:`~alphaloom.data.connectors.base.ExchangeConnector` hooks with ccxt's
unified API (``ccxt.async_support``): ``fetch_ohlcv`` for history, polling of ``fetch_ohlcv`` or
``fetch_order_book`` for the real-time stream, ``create_order``/``fetch_order``/``fetch_orders``/
``cancel_order`` for orders, ``fetch_balance`` and ``fetch_positions`` for the account. Changing
:attr:`CcxtConfig.exchange_id` (``"coinbase"``, ``"binance"``, ``"kraken"``, ...) changes the venue; venue
quirks live in small subclasses such as :class:`~alphaloom.data.connectors.coinbase.CoinbaseConnector`.

Symbols travel in three spellings::

    BTCUSD (canonical)  <->  BTC/USD (ccxt unified; what the hooks receive)  <->  BTC-USD (venue id)

Perpetual swaps are ``BTCUSD-PERP`` <-> ``BTC/USD:USD``; dated futures ``BTCUSD-301220`` <->
``BTC/USD:USD-301220``.

Fault tolerance is the base class's (retry with backoff, circuit breaker, rate limiter, idempotent orders);
this module makes sure ccxt's errors reach it as the right alphaloom errors:

- every 429 becomes ``RateLimitError`` carrying the venue's ``Retry-After``; every 5xx a
  ``VenueUnavailableError`` (ccxt itself would read some 5xx bodies as non-retryable ``ExchangeError``);
- a 2xx answer whose body is not valid JSON (cut short, garbled) raises instead of being read as "no data",
  which ccxt would otherwise do silently (an empty page of candles, an order without a status);
- ccxt's own rate limiter is off (the base class's token bucket rules), and a paginated history fetch that
  fails midway resumes from the last page it got when the base retries it;
- credentials (:mod:`alphaloom.core.secrets`) are handed to ccxt only as plain values at construction, and
  are masked in everything that leaves the connector: error messages (including ccxt's texts, which can echo
  request headers), the chained ccxt exception, and ccxt's debug log.

Tests point ccxt at a local server with :attr:`CcxtConfig.base_url`: every URL in the exchange's
``urls["api"]`` keeps its path but gets that scheme and host, so no request can leave for the real venue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
from collections import OrderedDict
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar, Literal
from urllib.parse import urlsplit, urlunsplit

import ccxt.async_support as ccxt_async
import pandas as pd
from ccxt.base import errors as cx
from pydantic import Field, field_validator, model_validator

from alphaloom.core.clock import Clock
from alphaloom.core.exceptions import (
    AlphaloomError,
    AuthenticationError,
    ConfigError,
    ConnectorError,
    OrderRejectedError,
    RateLimitError,
    UnknownSymbolError,
    VenueUnavailableError,
    did_you_mean,
)
from alphaloom.core.resilience import call_resilient
from alphaloom.core.secrets import Secret, SecretProvider
from alphaloom.core.types import (
    Account,
    Bar,
    Order,
    OrderResult,
    OrderStatus,
    OrderType,
    Position,
    Quote,
    Side,
    TimeInForce,
)
from alphaloom.data.connectors.base import (
    TIMEFRAMES,
    ConnectorConfig,
    ExchangeConnector,
    StreamEvent,
    parse_retry_after,
)

if TYPE_CHECKING:
    import aiohttp
    import httpx

__all__ = ["CcxtConfig", "CcxtConnector", "canonical_to_unified", "unified_to_canonical"]

logger = logging.getLogger(__name__)

#: Quote currencies tried (longest first) when splitting a canonical symbol before markets are loaded.
QUOTE_CURRENCIES: tuple[str, ...] = tuple(
    sorted(
        (
            "USD",
            "USDT",
            "USDC",
            "EUR",
            "GBP",
            "JPY",
            "AUD",
            "CAD",
            "CHF",
            "BTC",
            "ETH",
            "DAI",
            "TRY",
            "BRL",
            "KRW",
            "SGD",
            "MXN",
            "PYUSD",
            "FDUSD",
            "TUSD",
        ),
        key=len,
        reverse=True,
    )
)
_PERP = "PERP"
_MASK = "***"
# A bearer token or an HMAC signature in a header echoed back by a proxy or an error page.
_TOKEN_PATTERNS = (
    re.compile(r"(Bearer\s+)[A-Za-z0-9._~+/=-]+"),
    re.compile(
        r"((?:CB-ACCESS-SIGN|Signature|X-MBX-APIKEY|API-Sign|ACCESS-SIGN)['\"]?\s*[:=]\s*['\"]?)[^\s'\",;]+",
        re.IGNORECASE,
    ),
)


# ---------------------------------------------------------------------- symbols


def canonical_to_unified(symbol: str, quotes: Sequence[str] = QUOTE_CURRENCIES) -> str:
    """ccxt's unified symbol for a canonical one, without market data: ``BTCUSD`` -> ``BTC/USD``.

    ``BTCUSD-PERP`` -> ``BTC/USD:USD``; ``BTCUSD-301220`` -> ``BTC/USD:USD-301220``.

    Raises
    ------
    UnknownSymbolError
        When no known quote currency ends the symbol (load the venue's markets to map it exactly).
    """
    pair, _, suffix = symbol.partition("-")
    for quote in quotes:
        if pair.endswith(quote) and len(pair) > len(quote):
            base = pair[: -len(quote)]
            if not suffix:
                return f"{base}/{quote}"
            if suffix == _PERP:
                return f"{base}/{quote}:{quote}"
            return f"{base}/{quote}:{quote}-{suffix}"
    raise UnknownSymbolError(
        f"cannot split {symbol!r} into base and quote currency (known quotes: {', '.join(quotes)}); the "
        f"connector maps it exactly once the venue's markets are loaded."
    )


def unified_to_canonical(unified: str) -> str:
    """The canonical symbol for a ccxt unified symbol: ``BTC/USD`` -> ``BTCUSD``, ``BTC/USD:USD`` ->
    ``BTCUSD-PERP``, ``BTC/USD:USD-301220`` -> ``BTCUSD-301220``."""
    pair, _, settle = unified.partition(":")
    base, _, quote = pair.partition("/")
    canonical = re.sub(r"[^A-Z0-9.]", "", f"{base}{quote}".upper())
    if not settle:
        return canonical
    _, _, expiry = settle.partition("-")
    return f"{canonical}-{expiry or _PERP}"


# ---------------------------------------------------------------------- config


class CcxtConfig(ConnectorConfig):
    """Settings of a ccxt-backed venue.

    Parameters
    ----------
    venue
        Registry and credential name; defaults to ``exchange_id`` (credentials then come from
        ``ALPHALOOM_{VENUE}_API_KEY`` and ``ALPHALOOM_{VENUE}_API_SECRET``).
    exchange_id
        A ccxt exchange id (``ccxt.exchanges``): ``"coinbase"``, ``"binance"``, ``"kraken"``, ...
    base_url
        Replace the scheme and host of every ccxt API URL (tests: the local server); empty keeps ccxt's.
    request_timeout_s
        ccxt's timeout for one HTTP request, in seconds; keep it below ``timeout_s`` (one hook call, which
        may make several requests).
    sandbox
        Use the venue's sandbox URLs (where ccxt knows them).
    account_currency
        Currency of :class:`~alphaloom.core.types.Account` cash and of the markets used to value holdings.
    account_id
        ``Account.account_id`` to report.
    stream
        What :meth:`~ExchangeConnector.get_real_time_data` yields: completed ``"bars"`` of
        ``stream_timeframe``, or top-of-book ``"quotes"``.
    stream_timeframe
        Bar timeframe of the stream.
    poll_interval_s
        Pause between two polls of the stream, in seconds.
    ohlcv_page_limit
        Candles per request; ``None`` asks ccxt's ``features`` for the venue's limit (else 500).
    order_lookback_s
        Allowance for venue/local clock skew: a client order id is searched among the venue's orders created
        since this many seconds before we first sent it.
    order_page_size, order_max_pages
        Page size and page cap when searching the order list (newest first, so an order looked up right
        after it was sent is on the first page; proving an order absent reads the whole window). A search
        that reaches the cap raises rather than guess, since a wrong "absent" would resend the order.
    include_derivatives
        Report futures/swap positions (``fetch_positions``) where the venue and the account offer them.
    options
        Extra ccxt ``options`` for the exchange (advanced; venue specific).
    """

    exchange_id: str = "coinbase"
    request_timeout_s: float = Field(10.0, gt=0.0, allow_inf_nan=False)
    sandbox: bool = False
    account_currency: str = Field("USD", min_length=1, max_length=16)
    account_id: str = Field("default", min_length=1)
    stream: Literal["bars", "quotes"] = "bars"
    stream_timeframe: str = "1m"
    poll_interval_s: float = Field(1.0, ge=0.0, allow_inf_nan=False)
    ohlcv_page_limit: int | None = Field(None, ge=1, le=10_000)
    order_lookback_s: float = Field(60.0, ge=0.0, allow_inf_nan=False)
    order_page_size: int = Field(50, ge=1, le=1000)
    order_max_pages: int = Field(40, ge=1)
    include_derivatives: bool = True
    options: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _venue_defaults_to_exchange(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data.get("venue"):
            exchange_id = data.get("exchange_id") or cls.model_fields["exchange_id"].default
            data = {**data, "venue": str(exchange_id).lower().replace("_", "-")}
        return data

    @field_validator("exchange_id")
    @classmethod
    def _known_exchange(cls, v: str) -> str:
        if v not in ccxt_async.exchanges:
            raise ValueError(
                f"ccxt has no exchange {v!r}.{did_you_mean(v, ccxt_async.exchanges)} See ccxt.exchanges for "
                "the list"
            )
        return v

    @field_validator("stream_timeframe")
    @classmethod
    def _known_timeframe(cls, v: str) -> str:
        if v not in TIMEFRAMES:
            raise ValueError(f"stream_timeframe must be one of {', '.join(TIMEFRAMES)}, got {v!r}")
        return v

    @field_validator("account_currency")
    @classmethod
    def _upper(cls, v: str) -> str:
        return v.upper()


# ---------------------------------------------------------------------- ccxt guards


class _HttpGuard:
    """Put in front of a ccxt exchange class: classify HTTP failures before the venue's body parsing does."""

    id: str

    def handle_errors(
        self,
        code: int,
        reason: str,
        url: str,
        method: str,
        headers: Mapping[str, str],
        body: str,
        response: Any,
        request_headers: Any,
        request_body: Any,
    ) -> Any:
        where = f"{self.id} {method} {_strip_query(url)}"
        if code in (418, 429):
            error = cx.RateLimitExceeded(f"{where}: HTTP {code} {reason}")
            error.retry_after_s = parse_retry_after(_header(headers, "Retry-After"))  # type: ignore[attr-defined]
            raise error
        if code == 408 or code >= 500:
            raise cx.ExchangeNotAvailable(f"{where}: HTTP {code} {reason}")
        result = super().handle_errors(  # type: ignore[misc]
            code, reason, url, method, headers, body, response, request_headers, request_body
        )
        detail = " ".join((body or "").split())[:300]
        if code in (401, 407, 511):
            raise cx.AuthenticationError(f"{where}: HTTP {code} {reason} {detail}".rstrip())
        if code == 403:
            raise cx.PermissionDenied(f"{where}: HTTP {code} {reason} {detail}".rstrip())
        if code == 400:
            raise cx.BadRequest(f"{where}: HTTP {code} {reason} {detail}".rstrip())
        if 200 <= code < 300 and response is None and body and body.strip():
            # ccxt hands an unparsable body to the caller as text, which its parsers read as "no data".
            raise cx.BadResponse(f"{where}: the venue sent a malformed body ({len(body)} characters)")
        return result


def _header(headers: Mapping[str, str] | None, name: str) -> str | None:
    for key, value in (headers or {}).items():
        if key.lower() == name.lower():
            return value
    return None


def _strip_query(url: str) -> str:
    return url.split("?", 1)[0]


_GUARDED: dict[str, type[Any]] = {}


def _guarded_class(exchange_id: str) -> type[Any]:
    if exchange_id not in _GUARDED:
        base = getattr(ccxt_async, exchange_id)
        _GUARDED[exchange_id] = type(f"Guarded_{exchange_id}", (_HttpGuard, base), {})
    return _GUARDED[exchange_id]


class _Redactor:
    """Masks credential values (and bearer tokens, signatures) in text."""

    def __init__(self) -> None:
        self._values: list[str] = []

    def add(self, value: str) -> None:
        value = value.strip()
        if len(value) >= 4:
            self._values.append(value)
        if "-----BEGIN" in value:
            # A PEM key: mask each base64 line too, in case a fragment is echoed.
            self._values.extend(
                line for line in value.splitlines() if len(line) >= 16 and "-----" not in line
            )
        self._values.sort(key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for value in self._values:
            if value in text:
                text = text.replace(value, _MASK)
        for pattern in _TOKEN_PATTERNS:
            text = pattern.sub(lambda m: m.group(1) + _MASK, text)
        return text


class _RedactingLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """ccxt logs request headers at DEBUG; this adapter formats and masks each message before it is logged."""

    def __init__(self, logger_: logging.Logger, redact: _Redactor) -> None:
        super().__init__(logger_, {})
        self._redact = redact

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        if not self.isEnabledFor(level):
            return
        try:
            text = str(msg) % args if args else str(msg)
        except (TypeError, ValueError):
            text = " ".join(str(a) for a in (msg, *args))
        kwargs.pop("exc_info", None)
        self.logger.log(level, "%s", self._redact(text), **kwargs)


# ---------------------------------------------------------------------- connector


@dataclass
class _Sent:
    """What we know of an order we sent: where to look for it."""

    unified: str
    sent_at: datetime
    venue_order_id: str = ""


@dataclass
class _Pages:
    """Progress of one paginated history fetch, kept across the base class's retries."""

    cursor_ms: int
    rows: dict[int, list[float | None]] = field(default_factory=dict)


class CcxtConnector(ExchangeConnector):
    """A venue through ccxt's async client; the exchange is :attr:`CcxtConfig.exchange_id`.

    Parameters
    ----------
    config
        A :class:`CcxtConfig`.
    secrets
        Credentials ``api_key``, ``api_secret`` (and ``api_password`` where the venue needs one);
        environment variables ``ALPHALOOM_{VENUE}_API_KEY`` ... by default. Without them only public data
        works, and private calls raise :class:`~alphaloom.core.exceptions.AuthenticationError` naming the
        variables to set.
    http
        Not used: ccxt brings its own HTTP client (aiohttp); pass ``session`` to inject one.
    clock
        Time source for "now" (which candles are complete, result timestamps); live UTC by default.
    session
        An ``aiohttp.ClientSession`` for ccxt to use (tests inject one that can only reach 127.0.0.1). It is
        left open for its owner. By default ccxt creates its own, closed by :meth:`aclose`.

    Examples
    --------
    >>> config = CcxtConfig(exchange_id="kraken")  # doctest: +SKIP
    >>> async with CcxtConnector(config) as kraken:  # doctest: +SKIP
    ...     bars = await kraken.get_historical_data("BTCUSD", "1h", start, end)
    """

    name: ClassVar[str] = "ccxt"
    config_class: ClassVar[type[ConnectorConfig]] = CcxtConfig
    config: CcxtConfig

    #: The ``create_order`` param that carries our client order id to the venue.
    client_order_id_param: ClassVar[str] = "clientOrderId"
    #: Time-in-force values the venue accepts (``None``: pass any through).
    supported_time_in_force: ClassVar[frozenset[TimeInForce] | None] = None
    #: Order book depth to ask for when polling quotes (``None``: the venue's default).
    quote_book_depth: ClassVar[int | None] = None
    #: ccxt ``options`` this venue class always sets (a config's ``options`` override them).
    default_options: ClassVar[dict[str, Any]] = {}

    def __init__(
        self,
        config: ConnectorConfig,
        *,
        secrets: SecretProvider | None = None,
        http: httpx.AsyncClient | None = None,
        clock: Clock | None = None,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        super().__init__(config, secrets=secrets, http=None, clock=clock)
        if http is not None:
            raise ConfigError(
                f"{type(self).__name__} talks through ccxt, which uses aiohttp, not httpx; pass "
                "session=aiohttp.ClientSession(...) to inject the HTTP client."
            )
        self._session = session
        self._redact = _Redactor()
        self._credentials: dict[str, str] | None = None
        self._credentials_problem = ""
        self._exchange: Any = None
        self._exchange_loop: asyncio.AbstractEventLoop | None = None
        self._loop_guard: AsyncGenerator[None, None] | None = None
        self._sent: OrderedDict[str, _Sent] = OrderedDict()
        self._pages: OrderedDict[tuple[str, str, int, int], _Pages] = OrderedDict()
        self._searches: dict[str, tuple[int | None, dict[str, Any]]] = {}
        self._by_canonical: dict[str, str] = {}

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(venue={self.config.venue!r}, exchange_id={self.config.exchange_id!r}, "
            f"breaker={self.breaker.state.value})"
        )

    # ------------------------------------------------------------------ the ccxt exchange

    def _read_credentials(self) -> tuple[dict[str, str], str]:
        creds: dict[str, str] = {}
        problem = ""
        try:
            key, secret = self.secrets.get("api_key"), self.secrets.get("api_secret")
        except ConfigError as exc:
            problem = str(exc)
        else:
            creds = {"apiKey": _plain(key), "secret": _plain(secret)}
            required = getattr(_guarded_class(self.config.exchange_id), "requiredCredentials", {}) or {}
            if required.get("password"):
                try:
                    creds["password"] = _plain(self.secrets.get("api_password"))
                except ConfigError as exc:
                    problem = str(exc)
        for value in creds.values():
            self._redact.add(value)
        return creds, problem

    def _load_credentials(self) -> dict[str, str]:
        if self._credentials is None:
            self._credentials, self._credentials_problem = self._read_credentials()
        return self._credentials

    def _refresh_credentials(self, ex: Any) -> None:
        # Asked at each use, so a key rotated in the keystore or Vault reaches ccxt without a restart.
        creds, problem = self._read_credentials()
        if creds == self._credentials:
            return
        for attr in ("apiKey", "secret", "password"):
            if attr in creds or (self._credentials and attr in self._credentials):
                setattr(ex, attr, creds.get(attr, ""))
        self._credentials, self._credentials_problem = creds, problem

    def exchange(self) -> Any:
        """The ccxt exchange object, bound to the running event loop (created on first use).

        An aiohttp session cannot outlive its event loop, so the exchange is closed when its loop shuts down
        (``asyncio.run`` returning) and a new one, keeping the loaded markets, is built for the next loop.
        """
        self._check_open()
        loop = asyncio.get_running_loop()
        markets = currencies = None
        if self._exchange is not None and self._exchange_loop is not loop:
            old, self._exchange = self._exchange, None
            markets, currencies = old.markets, old.currencies
            _drop(old)
        if self._exchange is not None:
            self._refresh_credentials(self._exchange)
        if self._exchange is None:
            self._exchange = self._build_exchange()
            self._exchange_loop = loop
            if markets:
                self._exchange.set_markets(markets, currencies)
            self._loop_guard = _close_at_loop_shutdown(self._exchange, self._redact)
            # Run the guard to its ``yield`` now (it awaits nothing before it): the loop then owns it as a
            # live async generator and closes it, and with it the exchange, in ``shutdown_asyncgens``.
            with contextlib.suppress(StopIteration):
                self._loop_guard.__anext__().send(None)
        return self._exchange

    def _build_exchange(self) -> Any:
        cfg = self.config
        params: dict[str, Any] = {
            **self._load_credentials(),
            # The base class's token bucket limits the rate; two limiters would only add latency.
            "enableRateLimit": False,
            "timeout": int(cfg.request_timeout_s * 1000),
            "options": {**self.default_options, **cfg.options},
        }
        if self._session is not None:
            params["session"] = self._session
        ex = _guarded_class(cfg.exchange_id)(params)
        if not params.get("apiKey") and getattr(ex, "token", "") is None:
            # Without credentials ccxt's coinbase signs with ``"Bearer " + token`` and fails on None; an empty
            # token makes it raise its "requires apiKey credential" AuthenticationError instead.
            ex.token = ""
        if cfg.sandbox:
            ex.set_sandbox_mode(True)
        if cfg.base_url:
            ex.urls["api"] = _rebase(ex.urls["api"], cfg.base_url)
            if not cfg.base_url.startswith("https://"):
                # The pause ccxt takes on close lets TLS transports shut down; plain HTTP has none.
                ex.timeout_on_exit = 0
        ex.logger = _RedactingLogger(logging.getLogger(f"{__name__}.{cfg.exchange_id}"), self._redact)
        return ex

    async def _ready(self) -> Any:
        ex = self.exchange()
        if not ex.markets:
            # Market metadata takes several requests (ccxt's coinbase makes five) and is needed once: retry it
            # on its own, so one flaky request does not spend the retry budget of the call that needed it.
            await call_resilient(
                ex.load_markets,
                retry=self.config.retry,
                retry_on=(cx.NetworkError, cx.BadResponse),
                sleep=self._sleep,
                rng=self._rng,
            )
        if not self._by_canonical:
            self._by_canonical = {unified_to_canonical(s): s for s in ex.markets}
        return ex

    async def _aclose(self) -> None:
        ex, self._exchange = self._exchange, None
        guard, self._loop_guard = self._loop_guard, None
        if ex is None:
            return
        if guard is not None and self._exchange_loop is asyncio.get_running_loop():
            await guard.aclose()  # closes the exchange
        else:
            _drop(ex)

    # ------------------------------------------------------------------ symbols

    def to_venue_symbol(self, symbol: str) -> str:
        """ccxt's unified symbol for canonical ``symbol``: ``BTCUSD`` -> ``BTC/USD``."""
        if symbol in self._by_canonical:
            return self._by_canonical[symbol]
        if self._by_canonical:
            raise UnknownSymbolError(
                f"{self.config.venue} lists no market {symbol!r}.{did_you_mean(symbol, self._by_canonical)} "
                f"It lists {len(self._by_canonical)} markets; see connector.markets()."
            )
        return canonical_to_unified(symbol, self._quote_currencies())

    def from_venue_symbol(self, venue_symbol: str) -> str:
        """The canonical symbol for a unified symbol (``BTC/USD``) or a venue id (``BTC-USD``)."""
        ex = self._exchange
        if "/" not in venue_symbol:
            if ex is not None and ex.markets_by_id and venue_symbol in ex.markets_by_id:
                venue_symbol = ex.markets_by_id[venue_symbol][0]["symbol"]
            else:
                venue_symbol = self._unified_from_id_guess(venue_symbol)
        return unified_to_canonical(venue_symbol)

    def market_id(self, symbol: str) -> str:
        """The venue's own id for canonical ``symbol`` (``BTCUSD`` -> ``BTC-USD`` on Coinbase).

        Exact once markets are loaded (after any call that reached the venue); a best guess before.
        """
        unified = self.to_venue_symbol(self.check_symbol(symbol))
        ex = self._exchange
        if ex is not None and ex.markets and unified in ex.markets:
            return str(ex.markets[unified]["id"])
        return self._id_guess(unified)

    def _quote_currencies(self) -> tuple[str, ...]:
        account = self.config.account_currency
        return (account, *[q for q in QUOTE_CURRENCIES if q != account])

    def _id_guess(self, unified: str) -> str:
        return unified.replace("/", "")

    def _unified_from_id_guess(self, venue_id: str) -> str:
        return canonical_to_unified(venue_id.upper(), self._quote_currencies())

    def _market(self, ex: Any, unified: str) -> dict[str, Any]:
        market = ex.markets.get(unified)
        if market is None:
            canonical = unified_to_canonical(unified)
            raise UnknownSymbolError(
                f"{self.config.venue} lists no market {canonical} ({unified})."
                f"{did_you_mean(canonical, self._by_canonical)}"
                f" It lists {len(ex.markets)} markets; see connector.markets()."
            )
        return market

    async def markets(self) -> list[str]:
        """Canonical symbols of every market the venue lists."""
        await self._call("load_markets", self._ready)
        return sorted(self._by_canonical)

    # ------------------------------------------------------------------ history

    def _timeframe(self, ex: Any, timeframe: str) -> str:
        if ex.timeframes and timeframe not in ex.timeframes:
            supported = [t for t in TIMEFRAMES if t in ex.timeframes]
            raise ConfigError(
                f"{self.config.venue} has no {timeframe} candles; it offers {', '.join(supported)} of "
                f"alphaloom's timeframes."
            )
        return timeframe

    def _page_limit(self, ex: Any) -> int:
        if self.config.ohlcv_page_limit is not None:
            return self.config.ohlcv_page_limit
        features = getattr(ex, "features", None) or {}
        for section in ("spot", "default"):
            spec = features.get(section) or {}
            limit = (spec.get("fetchOHLCV") or {}).get("limit")
            if isinstance(limit, int) and limit > 0:
                return limit
        return 500

    async def _fetch_bars(
        self, venue_symbol: str, timeframe: str, start: datetime, end: datetime
    ) -> pd.DataFrame:
        ex = await self._ready()
        self._market(ex, venue_symbol)
        tf = self._timeframe(ex, timeframe)
        step_ms = int(TIMEFRAMES[timeframe].total_seconds() * 1000)
        start_ms, end_ms = _ms(start), _ms(end)
        # Only completed candles: the one containing "now" is still moving.
        stop_ms = min(end_ms, (_ms(self.clock.now()) // step_ms) * step_ms)
        key = (venue_symbol, timeframe, start_ms, end_ms)
        pages = self._pages.pop(key, None) or _Pages(cursor_ms=start_ms)
        self._pages[key] = pages  # most recent last; resumed if the base class retries this call
        while len(self._pages) > 16:
            self._pages.popitem(last=False)
        limit = self._page_limit(ex)
        while pages.cursor_ms < stop_ms:
            page_end = min(stop_ms, pages.cursor_ms + limit * step_ms)
            raw = await ex.fetch_ohlcv(
                venue_symbol, tf, since=pages.cursor_ms, limit=limit, params={"until": page_end - 1}
            )
            if not isinstance(raw, list):
                raise cx.BadResponse(f"{ex.id} fetch_ohlcv returned {type(raw).__name__}, expected a list")
            got = [row for row in raw if pages.cursor_ms <= int(row[0]) < page_end]
            for row in got:
                pages.rows[int(row[0])] = list(row[1:6])
            last = max((int(row[0]) for row in got), default=None)
            # A short page may be the venue's own cap rather than a gap: ask again from after its last candle.
            pages.cursor_ms = last + step_ms if last is not None and last + step_ms < page_end else page_end
        self._pages.pop(key, None)
        return _ohlcv_frame(pages.rows)

    # ------------------------------------------------------------------ stream

    async def _stream(self, venue_symbols: Sequence[str]) -> AsyncIterator[StreamEvent]:
        await self._call("stream", self._ready)
        if self.config.stream == "quotes":
            async for quote in self._poll_quotes(venue_symbols):
                yield quote
        else:
            async for bar in self._poll_bars(venue_symbols):
                yield bar

    async def _poll_bars(self, venue_symbols: Sequence[str]) -> AsyncIterator[Bar]:
        timeframe = self.config.stream_timeframe
        step = TIMEFRAMES[timeframe]
        last: dict[str, datetime] = {}
        while True:
            for unified in venue_symbols:
                now = self.clock.now()
                closed_end = _floor(now, step)
                # First poll: the latest completed bar only; later polls: everything completed since.
                since = last[unified] + step if unified in last else closed_end - step
                if since >= closed_end:
                    continue
                frame = await self._call(
                    "stream", lambda u=unified, s=since, e=closed_end: self._fetch_bars(u, timeframe, s, e)
                )
                canonical = self.from_venue_symbol(unified)
                for row in frame.itertuples(index=False):
                    ts = row.ts.to_pydatetime()
                    if unified in last and ts <= last[unified]:
                        continue
                    volume = None if row.volume is None or math.isnan(row.volume) else float(row.volume)
                    yield Bar(
                        symbol=canonical,
                        ts=ts,
                        open=row.open,
                        high=row.high,
                        low=row.low,
                        close=row.close,
                        volume=volume,
                        exchange=self.config.venue,
                        timeframe=timeframe,
                    )
                    last[unified] = ts
            await self._sleep(self.config.poll_interval_s)

    async def _poll_quotes(self, venue_symbols: Sequence[str]) -> AsyncIterator[Quote]:
        previous: dict[str, tuple[Any, ...]] = {}
        while True:
            for unified in venue_symbols:
                book = await self._call(
                    "stream", lambda u=unified: self.exchange().fetch_order_book(u, self.quote_book_depth)
                )
                bids, asks = book.get("bids") or [], book.get("asks") or []
                if not bids or not asks:
                    continue
                received = self.clock.now()
                stamp = book.get("timestamp")
                ts = datetime.fromtimestamp(stamp / 1000, UTC) if stamp else received
                state = (bids[0][0], asks[0][0], _size(bids[0]), _size(asks[0]))
                if previous.get(unified, (None,))[:4] == state or (
                    unified in previous and ts <= previous[unified][4]
                ):
                    continue
                previous[unified] = (*state, ts)
                yield Quote(
                    symbol=self.from_venue_symbol(unified),
                    ts=ts,
                    bid=state[0],
                    ask=state[1],
                    bid_size=state[2],
                    ask_size=state[3],
                    exchange=self.config.venue,
                    ts_received=received,
                )
            await self._sleep(self.config.poll_interval_s)

    # ------------------------------------------------------------------ orders

    def _order_request(
        self, ex: Any, market: dict[str, Any], order: Order
    ) -> tuple[str, float, float | None, dict[str, Any]]:
        params: dict[str, Any] = {self.client_order_id_param: order.client_order_id}
        tif = order.time_in_force
        allowed = self.supported_time_in_force
        if allowed is not None and tif not in allowed:
            raise OrderRejectedError(
                f"{self.config.venue} does not support time_in_force={tif.value!r}; use one of "
                f"{', '.join(sorted(t.value for t in allowed))}."
            )
        price: float | None = None
        if order.order_type is OrderType.MARKET:
            kind = "market"
        elif order.order_type is OrderType.LIMIT:
            kind, price = "limit", order.limit_price
        elif order.order_type is OrderType.STOP_LIMIT:
            kind, price = "limit", order.limit_price
            params["stopPrice"] = order.stop_price
        else:
            kind = "market"
            params["triggerPrice"] = order.stop_price
        if kind == "limit" and tif is not TimeInForce.GTC:
            params["timeInForce"] = tif.value.upper()
        amount = order.quantity
        contract_size = market.get("contractSize") if market.get("contract") else None
        if contract_size:
            # alphaloom quantities are in units of the asset; contract venues count contracts.
            amount = order.quantity / float(contract_size)
            rounded = float(ex.amount_to_precision(market["symbol"], amount))
            if not math.isclose(rounded, amount, rel_tol=1e-9, abs_tol=1e-12):
                raise OrderRejectedError(
                    f"{order.symbol}: quantity {order.quantity} is {amount} contracts of {contract_size}; "
                    f"{self.config.venue} trades steps of {market['precision'].get('amount')} contracts."
                )
        return kind, amount, price, params

    async def _market_buy_price(self, ex: Any, unified: str) -> float:
        ticker = await ex.fetch_ticker(unified)
        price = ticker.get("ask") or ticker.get("last") or ticker.get("close")
        if not price or price <= 0:
            raise cx.BadResponse(f"{ex.id}: no ask price for {unified} to size a market buy")
        return float(price)

    async def _submit_order(self, order: Order) -> OrderResult:
        ex = await self._ready()
        unified = self.to_venue_symbol(order.symbol)
        market = self._market(ex, unified)
        kind, amount, price, params = self._order_request(ex, market, order)
        needs_price = ex.options.get("createMarketBuyOrderRequiresPrice") or ex.options.get(
            "createMarketBuyRequiresPrice"
        )
        if kind == "market" and order.side is Side.BUY and market.get("spot") and needs_price:
            price = await self._market_buy_price(ex, unified)
        cid = order.client_order_id
        if cid not in self._sent:  # the first send bounds when the venue can have created it
            self._remember(cid, _Sent(unified=unified, sent_at=self.clock.now()))
        try:
            raw = await ex.create_order(unified, kind, order.side.value, amount, price, params)
        except cx.DuplicateOrderId:
            found = await self._find_order(cid)
            if found is None:
                raise
            return found
        except (
            cx.InsufficientFunds,
            cx.InvalidOrder,
            cx.BadRequest,
            cx.OperationRejected,
            cx.NotSupported,
            cx.ArgumentsRequired,
        ) as exc:
            raise OrderRejectedError(self._message(f"{self.config.venue} rejected {cid}", exc)) from exc
        except cx.ExchangeError as exc:
            if isinstance(exc, cx.AuthenticationError | cx.ExchangeClosedByUser) or _transport_cause(exc):
                raise
            raise OrderRejectedError(self._message(f"{self.config.venue} rejected {cid}", exc)) from exc
        venue_id = str(raw.get("id") or "")
        self._sent[cid].venue_order_id = venue_id
        if raw.get("status") is None and venue_id:
            # Some venues (Coinbase) answer a create with ids only; the status is one GET away. The order
            # exists either way, so a failed follow-up still reports it as accepted.
            try:
                raw = await ex.fetch_order(venue_id, unified)
            except cx.BaseError as exc:
                return self._result(raw, cid, market, note=self._message("status not fetched", exc))
        return self._result(raw, cid, market)

    async def _find_order(self, client_order_id: str) -> OrderResult | None:
        ex = await self._ready()
        sent = self._sent.get(client_order_id)
        if sent is not None and sent.venue_order_id:
            raw = await ex.fetch_order(sent.venue_order_id, sent.unified)
            return self._result(raw, client_order_id, ex.markets.get(sent.unified))
        raw = await self._search_order(ex, client_order_id, sent)
        if raw is None:
            return None
        unified = raw.get("symbol") or (sent.unified if sent else None)
        if sent is not None:
            sent.venue_order_id = str(raw.get("id") or "")
        else:
            self._remember(
                client_order_id,
                _Sent(
                    unified=str(unified), sent_at=self.clock.now(), venue_order_id=str(raw.get("id") or "")
                ),
            )
        return self._result(raw, client_order_id, ex.markets.get(unified) if unified else None)

    async def _search_order(self, ex: Any, cid: str, sent: _Sent | None) -> dict[str, Any] | None:
        """The venue's order with client id ``cid``, searched in its order list (page by page).

        A search cut short by a failed page resumes there when the base class retries: pages only grow
        longer as new orders arrive in front, so resuming can re-read an order but never skip one.
        """
        symbol = sent.unified if sent else None
        since = None
        if sent is not None:
            since = _ms(sent.sent_at - timedelta(seconds=self.config.order_lookback_s))
        params: dict[str, Any] = {}
        since, params = self._searches.pop(cid, (since, params))
        for _ in range(self.config.order_max_pages):
            self._searches[cid] = (since, params)
            orders = await ex.fetch_orders(symbol, since, self.config.order_page_size, params)
            for raw in orders:
                if raw.get("clientOrderId") == cid:
                    self._searches.pop(cid, None)
                    return raw
            following = self._next_order_page(orders, since, params)
            if following is None:
                self._searches.pop(cid, None)
                return None
            since, params = following
        self._searches.pop(cid, None)
        raise ConnectorError(
            f"{self.config.venue}: client order id {cid!r} is not in the first {self.config.order_max_pages} "
            f"pages of orders, so whether it exists is unknown; not resending it. Raise order_max_pages or "
            f"check with get_order() later."
        )

    def _next_order_page(
        self, orders: list[dict[str, Any]], since: int | None, params: dict[str, Any]
    ) -> tuple[int | None, dict[str, Any]] | None:
        """``since`` and params for the next page of ``fetch_orders``, or ``None`` after the last page.

        ccxt's unified form: a short page is the last; otherwise continue after the newest order seen.
        """
        if len(orders) < self.config.order_page_size:
            return None
        stamps = [o["timestamp"] for o in orders if o.get("timestamp") is not None]
        if not stamps or (since is not None and max(stamps) < since):
            return None
        return max(stamps) + 1, params

    async def _cancel_order(self, client_order_id: str) -> OrderResult:
        current = await self._find_order(client_order_id)
        if current is None:
            raise ConnectorError(
                f"{self.config.venue} has no order with client_order_id {client_order_id!r} to cancel."
            )
        if current.status.is_terminal:
            return current
        ex = self.exchange()
        sent = self._sent[client_order_id]
        try:
            await ex.cancel_order(current.venue_order_id, sent.unified)
        except (cx.OrderNotFound, cx.InvalidOrder, cx.BadRequest) as exc:
            # Filled or cancelled meanwhile (or by an attempt whose answer was lost): report the final state.
            after = await self._find_order(client_order_id)
            if after is not None and after.status.is_terminal:
                return after
            raise OrderRejectedError(
                self._message(f"{self.config.venue} refused to cancel {client_order_id}", exc)
            ) from exc
        after = await self._find_order(client_order_id)
        return after if after is not None else current

    def _remember(self, cid: str, sent: _Sent) -> None:
        self._sent[cid] = sent
        self._sent.move_to_end(cid)
        while len(self._sent) > 100_000:
            self._sent.popitem(last=False)

    def _result(
        self, raw: Mapping[str, Any], cid: str, market: Mapping[str, Any] | None, note: str = ""
    ) -> OrderResult:
        factor = 1.0
        if market and market.get("contract") and market.get("contractSize"):
            factor = float(market["contractSize"])
        filled = float(raw.get("filled") or 0.0) * factor
        average = raw.get("average") or raw.get("price")
        if filled > 0 and not average and raw.get("cost"):
            average = float(raw["cost"]) / filled
        raw_status = raw.get("status")
        if raw_status in ("closed",):
            status = OrderStatus.FILLED if filled > 0 else OrderStatus.CANCELLED
        elif raw_status in ("canceled", "cancelled", "expired"):
            status = OrderStatus.CANCELLED
        elif raw_status == "rejected":
            status = OrderStatus.REJECTED
        elif raw_status == "open":
            status = OrderStatus.PARTIALLY_FILLED if filled > 0 else OrderStatus.ACCEPTED
        else:
            status = OrderStatus.ACCEPTED
        stamp = raw.get("timestamp")
        return OrderResult(
            client_order_id=cid,
            venue_order_id=str(raw.get("id") or ""),
            status=status,
            filled_quantity=filled,
            avg_fill_price=float(average) if filled > 0 and average else None,
            message=note or f"{self.config.venue} status {raw_status or 'unknown'}",
            ts=datetime.fromtimestamp(stamp / 1000, UTC) if stamp else self.clock.now(),
        )

    # ------------------------------------------------------------------ account

    async def _mark_prices(self, ex: Any, unifieds: Sequence[str]) -> dict[str, float]:
        if not unifieds:
            return {}
        if ex.has.get("fetchBidsAsks"):
            tickers = await ex.fetch_bids_asks(list(unifieds))
        elif ex.has.get("fetchTickers"):
            tickers = await ex.fetch_tickers(list(unifieds))
        else:
            tickers = {u: await ex.fetch_ticker(u) for u in unifieds}
        prices = {}
        for unified, ticker in tickers.items():
            bid, ask = ticker.get("bid"), ticker.get("ask")
            price = (bid + ask) / 2 if bid and ask else ticker.get("last") or ticker.get("close")
            if price and price > 0:
                prices[unified] = float(price)
        return prices

    async def _balances(self, ex: Any) -> dict[str, dict[str, float]]:
        balance = await ex.fetch_balance()
        out: dict[str, dict[str, float]] = {}
        for code, total in (balance.get("total") or {}).items():
            if total is None:
                continue
            out[code] = {
                "total": float(total),
                "free": float((balance.get("free") or {}).get(code) or 0.0),
            }
        return out

    def _spot_markets_for(self, ex: Any, codes: Sequence[str]) -> dict[str, str]:
        quote = self.config.account_currency
        return {c: f"{c}/{quote}" for c in codes if c != quote and f"{c}/{quote}" in ex.markets}

    async def _fetch_positions(self) -> dict[str, Position]:
        ex = await self._ready()
        balances = await self._balances(ex)
        held = [c for c, b in balances.items() if b["total"] != 0]
        spot = self._spot_markets_for(ex, held)
        contracts = await self._contract_positions(ex)
        prices = await self._mark_prices(ex, sorted(set(spot.values()) | {p["symbol"] for p in contracts}))
        positions: dict[str, Position] = {}
        for code, unified in spot.items():
            price = prices.get(unified)
            if price is None:
                logger.debug("%s: no price for %s; position left out", self.config.venue, unified)
                continue
            symbol = unified_to_canonical(unified)
            # Spot venues report balances, not cost basis: the holding is valued (and costed) at market.
            positions[symbol] = Position(
                symbol=symbol, quantity=balances[code]["total"], avg_cost=price, current_price=price
            )
        for raw in contracts:
            market = ex.markets.get(raw["symbol"]) or {}
            size = float(market.get("contractSize") or raw.get("contractSize") or 1.0)
            quantity = float(raw.get("contracts") or 0.0) * size
            if raw.get("side") == "short":
                quantity = -quantity
            if quantity == 0:
                continue
            price = raw.get("markPrice") or prices.get(raw["symbol"])
            entry = raw.get("entryPrice") or price
            if not price or not entry:
                continue
            symbol = unified_to_canonical(raw["symbol"])
            positions[symbol] = Position(
                symbol=symbol,
                quantity=quantity,
                avg_cost=float(entry),
                current_price=float(price),
                realized_pnl=float(raw.get("realizedPnl") or 0.0),
            )
        return positions

    async def _contract_positions(self, ex: Any) -> list[dict[str, Any]]:
        if not self.config.include_derivatives or not ex.has.get("fetchPositions"):
            return []
        if not any(m.get("contract") for m in ex.markets.values()):
            return []
        try:
            raw = await ex.fetch_positions()
        except (cx.PermissionDenied, cx.NotSupported, cx.AccountNotEnabled) as exc:
            logger.info("%s: no derivatives positions (%s)", self.config.venue, self._redact(str(exc)))
            return []
        return [p for p in raw if p.get("symbol")]

    async def _fetch_account(self) -> Account:
        ex = await self._ready()
        balances = await self._balances(ex)
        quote = self.config.account_currency
        cash = balances.get(quote, {"total": 0.0, "free": 0.0})
        others = self._spot_markets_for(ex, [c for c, b in balances.items() if b["total"] != 0])
        prices = await self._mark_prices(ex, sorted(others.values()))
        holdings = math.fsum(
            balances[code]["total"] * prices[unified] for code, unified in others.items() if unified in prices
        )
        return Account(
            account_id=self.config.account_id,
            currency=quote,
            cash=cash["total"],
            equity=cash["total"] + holdings,
            buying_power=cash["free"],
            venue=self.config.venue,
            ts=self.clock.now(),
        )

    # ------------------------------------------------------------------ errors

    def _message(self, prefix: str, exc: BaseException) -> str:
        text = self._redact(str(exc)).strip()
        if len(text) > 400:
            text = text[:400] + "..."
        return f"{prefix}: {type(exc).__name__}: {text}" if text else f"{prefix}: {type(exc).__name__}"

    def _translate_error(self, exc: Exception) -> AlphaloomError | None:
        """Map ccxt's exception tree onto alphaloom's, masking credentials in every message."""
        if not isinstance(exc, cx.BaseError):
            return None
        # Scrub the vendor exception in place too: the base chains it (``raise ours from exc``).
        exc.args = tuple(self._redact(str(a)) for a in exc.args)
        venue = self.config.venue
        if isinstance(exc, cx.RateLimitExceeded | cx.DDoSProtection):
            return RateLimitError(
                self._message(f"{venue} rate-limited the request", exc),
                retry_after_s=getattr(exc, "retry_after_s", None),
            )
        if isinstance(exc, cx.NetworkError | cx.BadResponse | cx.CancelPending):
            return VenueUnavailableError(self._message(f"{venue} is unavailable or answered badly", exc))
        if isinstance(exc, cx.AuthenticationError):
            hint = (
                f" {self._credentials_problem}"
                if self._credentials_problem
                else " Check the API key and secret."
            )
            return AuthenticationError(self._message(f"{venue} refused the credentials", exc) + hint)
        if isinstance(exc, cx.BadSymbol):
            return UnknownSymbolError(self._message(f"{venue} does not know the symbol", exc))
        if isinstance(exc, cx.InsufficientFunds | cx.InvalidOrder | cx.OperationRejected):
            if isinstance(exc, cx.OrderNotFound):
                return ConnectorError(self._message(f"{venue} has no such order", exc))
            return OrderRejectedError(self._message(f"{venue} rejected the order", exc))
        if isinstance(exc, cx.ExchangeError) and _transport_cause(exc):
            return VenueUnavailableError(self._message(f"{venue}: connection problem", exc))
        if isinstance(exc, cx.NotSupported):
            return ConnectorError(self._message(f"{venue} does not support this through ccxt", exc))
        return ConnectorError(self._message(f"{venue} error", exc))


# ---------------------------------------------------------------------- helpers


def _plain(secret: Secret | str) -> str:
    return secret.reveal() if isinstance(secret, Secret) else str(secret)


def _rebase(urls: Any, base_url: str) -> Any:
    """``urls`` (a URL or a nested dict of them) with scheme and host replaced by ``base_url``'s."""
    if isinstance(urls, dict):
        return {k: _rebase(v, base_url) for k, v in urls.items()}
    if isinstance(urls, str) and "://" in urls:
        new = urlsplit(base_url)
        old = urlsplit(urls)
        path = new.path.rstrip("/") + old.path
        return urlunsplit((new.scheme, new.netloc, path, old.query, old.fragment))
    return urls


async def _close_at_loop_shutdown(ex: Any, redact: _Redactor) -> AsyncGenerator[None, None]:
    try:
        yield
    finally:
        try:
            await ex.close()
        except Exception as exc:  # closing must not fail the caller
            logger.debug("error while closing ccxt %s: %s", ex.id, redact(str(exc)))


def _drop(ex: Any) -> None:
    # Its event loop is gone without shutting down its async generators: nothing can be awaited on it any
    # more, so only drop the references (ccxt would otherwise warn about an unclosed exchange).
    ex.session = None
    ex.tcp_connector = None


def _transport_cause(exc: BaseException) -> bool:
    import aiohttp

    cause = exc.__cause__
    return isinstance(cause, aiohttp.ClientError | asyncio.TimeoutError | ConnectionError)


def _ms(ts: datetime) -> int:
    return round(ts.timestamp() * 1000)


def _floor(ts: datetime, step: timedelta) -> datetime:
    seconds = step.total_seconds()
    return datetime.fromtimestamp((ts.timestamp() // seconds) * seconds, UTC)


def _size(level: Sequence[Any]) -> float | None:
    return float(level[1]) if len(level) > 1 and level[1] is not None else None


def _ohlcv_frame(rows: Mapping[int, Sequence[float | None]]) -> pd.DataFrame:
    ordered = sorted(rows.items())
    frame = pd.DataFrame(
        [values for _, values in ordered], columns=["open", "high", "low", "close", "volume"], dtype="float64"
    )
    frame.insert(0, "ts", pd.to_datetime([ms for ms, _ in ordered], unit="ms", utc=True))
    return frame
