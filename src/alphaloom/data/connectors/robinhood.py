"""Robinhood: the official Crypto Trading API, and (opt-in) the unofficial equities and options endpoints.

**Crypto** (``https://trading.robinhood.com``, Robinhood's documented Crypto Trading API). Every request is
signed with Ed25519: the headers ``x-api-key``, ``x-timestamp`` (unix seconds) and ``x-signature`` =
base64(ed25519_sign(private_key, f"{api_key}{timestamp}{path}{method}{body}")), where ``path`` includes the
query string and ``body`` is the exact JSON text sent (empty for GET). Robinhood accepts a signature for 30
seconds, so the machine clock must be right. Credentials come from the secret provider: ``api_key`` and
``private_key`` (the base64 Ed25519 seed from the API credentials portal), i.e.
``ALPHALOOM_ROBINHOOD_API_KEY`` and ``ALPHALOOM_ROBINHOOD_PRIVATE_KEY`` by default.

- Symbols: ``BTCUSD`` <-> ``BTC-USD``.
- History: the Crypto Trading API has **no candles endpoint**, so :meth:`get_historical_data` raises a
  :class:`~alphaloom.core.exceptions.ConnectorError` saying where to get history instead.
- Real time: ``best_bid_ask`` is polled every ``poll_interval_s``; each answer becomes a
  :class:`~alphaloom.core.types.Quote` (bid and ask inclusive of Robinhood's spread, i.e. the prices one can
  trade at); an unchanged quote (same venue timestamp) is dropped by the base class.
- Orders: ``client_order_id`` must be a UUID, so alphaloom's client order id is mapped to a deterministic
  UUID (:func:`venue_client_id`); ``_find_order`` lists orders filtered by that id (following ``next``).
  Market, limit, ``stop`` (Robinhood's ``stop_loss``) and stop-limit orders; limit-type orders are ``gtc``.
- Positions: holdings, marked at the mid price; the average cost is rebuilt from the account's filled orders
  (the API reports none), and holdings that orders do not explain (transfers in) are costed at the mid.

**Stocks, ETFs and options** (``https://api.robinhood.com``) use the endpoints that widely used unofficial
clients such as robin_stocks call. They are undocumented, may change or break without notice, and using them
may violate Robinhood's terms of service, so they are **disabled unless** ``enable_unofficial_equities=True``
(which logs a warning when the connector is built). Credentials: ``access_token``, or ``username`` and
``password`` (plus ``mfa_code`` where the account requires one) for the ``/oauth2/token/`` password grant.

- Symbols: tickers as they are (``AAPL``, ``SPY``, ``BRK.B``); options as OCC symbols
  (``AAPL240419C00180000``: root, expiry YYMMDD, C/P, strike x 1000 in 8 digits).
- History: ``/quotes/historicals/{symbol}/`` with ``interval`` 5minute, hour or day (alphaloom ``5m``, ``1h``,
  ``1d``) and the shortest ``span`` that reaches back to ``start`` (5minute: a week, hour: 3 months, day: 5
  years at most); interpolated bars (market holidays) are left out.
- Orders: ``/orders/`` with ``ref_id`` = :func:`venue_client_id` (found again by listing orders), options
  through ``/options/orders/`` (limit orders, one leg). Option quantities are contracts and option prices are
  per-share premiums, as Robinhood quotes them (a contract is worth ``100 x`` the premium).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import json
import logging
import math
import re
import time
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Literal
from urllib.parse import urlencode, urlsplit

import httpx
import pandas as pd
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import Field

from alphaloom.core.exceptions import (
    AlphaloomError,
    AuthenticationError,
    ConfigError,
    ConnectorError,
    OrderRejectedError,
    RateLimitError,
    UnknownSymbolError,
    VenueUnavailableError,
)
from alphaloom.core.secrets import Secret
from alphaloom.core.types import (
    Account,
    Fill,
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
    ConnectorConfig,
    ExchangeConnector,
    StreamEvent,
    parse_retry_after,
)

__all__ = [
    "UNOFFICIAL_WARNING",
    "RobinhoodConfig",
    "RobinhoodConnector",
    "load_private_key",
    "sign_request",
    "venue_client_id",
]

logger = logging.getLogger(__name__)

#: Logged when a connector is built with ``enable_unofficial_equities=True``.
UNOFFICIAL_WARNING = (
    "RobinhoodConnector: unofficial stock, ETF and option endpoints are enabled "
    "(enable_unofficial_equities=True). They are not a documented Robinhood API: they may change or break "
    "without notice, and using them may violate Robinhood's terms of service. Use at your own risk; crypto "
    "goes through the official, documented Crypto Trading API."
)

#: Intervals of ``/quotes/historicals/`` for alphaloom timeframes, and the longest span each allows.
HISTORICAL_INTERVALS: Mapping[str, tuple[str, str]] = {
    "5m": ("5minute", "week"),
    "1h": ("hour", "3month"),
    "1d": ("day", "5year"),
}
_SPAN_DAYS = {"day": 1, "week": 7, "month": 31, "3month": 92, "year": 366, "5year": 5 * 366}
_OCC = re.compile(r"^([A-Z]{1,6})(\d{2})(\d{2})(\d{2})([CP])(\d{8})$")
_CID_NAMESPACE = uuid.UUID("6f0d4a52-91c4-4b57-9a0e-7d1f2b7c9e10")  # fixed: the mapping must never change
_CRYPTO = "/api/v1/crypto"
_CRYPTO_STATES = {
    "open": OrderStatus.ACCEPTED,
    "partially_filled": OrderStatus.PARTIALLY_FILLED,
    "filled": OrderStatus.FILLED,
    "canceled": OrderStatus.CANCELLED,
    "failed": OrderStatus.REJECTED,
}
_EQUITY_STATES = {
    "queued": OrderStatus.NEW,
    "unconfirmed": OrderStatus.NEW,
    "confirmed": OrderStatus.ACCEPTED,
    "partially_filled": OrderStatus.PARTIALLY_FILLED,
    "filled": OrderStatus.FILLED,
    "cancelled": OrderStatus.CANCELLED,
    "rejected": OrderStatus.REJECTED,
    "failed": OrderStatus.REJECTED,
}
# The public client id of Robinhood's web app, which the unofficial clients send to /oauth2/token/.
_WEB_CLIENT_ID = "c82SH0WZOsabOXGP2sxqcj34FxkvfnWRZBKlBjFS"

Kind = Literal["crypto", "stock", "option"]


class RobinhoodConfig(ConnectorConfig):
    """Settings of :class:`RobinhoodConnector`.

    Parameters
    ----------
    base_url
        The Crypto Trading API (``https://trading.robinhood.com``).
    equities_base_url
        The unofficial API host for stocks, ETFs and options (``https://api.robinhood.com``).
    enable_unofficial_equities
        Allow stocks, ETFs and options through undocumented endpoints (see the module docstring); off by
        default.
    poll_interval_s
        Seconds between quote polls of the real-time stream.
    max_pages
        Most pages followed through ``next`` in one listing (orders, holdings, positions).
    order_lookback_s
        When looking an order up, list orders created this long before it was first sent (clock skew).
    """

    venue: str = "robinhood"
    base_url: str = "https://trading.robinhood.com"
    equities_base_url: str = "https://api.robinhood.com"
    enable_unofficial_equities: bool = False
    poll_interval_s: float = Field(1.0, gt=0.0, allow_inf_nan=False)
    max_pages: int = Field(50, ge=1)
    order_lookback_s: float = Field(300.0, ge=0.0, allow_inf_nan=False)


def load_private_key(encoded: str | Secret) -> Ed25519PrivateKey:
    """An Ed25519 private key from its base64 form (the 32-byte seed, or 64 bytes seed + public key).

    Raises
    ------
    ConfigError
        When the text is not base64 of 32 or 64 bytes; the message never contains the text.
    """
    plain = encoded.reveal() if isinstance(encoded, Secret) else str(encoded)
    try:
        raw = base64.b64decode(plain.strip(), validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) not in (32, 64):
        raise ConfigError(
            "the Robinhood private key must be the base64 text of a 32-byte Ed25519 seed (as the API "
            "credentials "
            f"portal gives it); what was provided decodes to {len(raw)} bytes. Check the private_key secret."
        )
    return Ed25519PrivateKey.from_private_bytes(raw[:32])


def sign_request(
    api_key: str, private_key: Ed25519PrivateKey, timestamp: int, path: str, method: str, body: str = ""
) -> str:
    """The ``x-signature`` header: base64 Ed25519 signature of ``api_key + timestamp + path + method + body``.

    Parameters
    ----------
    api_key
        The plain API key.
    private_key
        The signing key (see :func:`load_private_key`).
    timestamp
        Unix seconds, the same value sent as ``x-timestamp``.
    path
        The request path with its query string, e.g. ``/api/v1/crypto/trading/orders/?symbol=BTC-USD``.
    method
        ``"GET"`` or ``"POST"`` (upper case).
    body
        The exact request body text; empty for requests without a body.
    """
    message = f"{api_key}{timestamp}{path}{method}{body}".encode()
    return base64.b64encode(private_key.sign(message)).decode("ascii")


def venue_client_id(client_order_id: str) -> str:
    """The UUID Robinhood gets as ``client_order_id``/``ref_id`` for alphaloom's ``client_order_id``.

    Deterministic (UUID v5), so every retry and every process sends the same id; a UUID is passed through.
    """
    try:
        return str(uuid.UUID(client_order_id))
    except ValueError:
        return str(uuid.uuid5(_CID_NAMESPACE, client_order_id))


def symbol_kind(symbol: str) -> Kind:
    """``"option"`` for an OCC symbol, ``"crypto"`` for ``<ASSET>USD`` (6+ characters), else ``"stock"``."""
    if _OCC.match(symbol):
        return "option"
    if len(symbol) >= 6 and symbol.endswith("USD") and symbol.isalnum():
        return "crypto"
    return "stock"


@dataclass(frozen=True, slots=True)
class _Sent:
    kind: Kind
    at: datetime
    symbol: str


class RobinhoodConnector(ExchangeConnector):
    """Robinhood crypto (official, signed API) and, opt-in, stocks, ETFs and options (unofficial endpoints).

    Parameters
    ----------
    config
        A :class:`RobinhoodConfig`.
    secrets, http, clock
        As for :class:`~alphaloom.data.connectors.base.ExchangeConnector`. Secrets: ``api_key`` and
        ``private_key`` (crypto); ``access_token`` or ``username``/``password``/``mfa_code`` (unofficial).
    """

    name: ClassVar[str] = "robinhood"
    config_class: ClassVar[type[ConnectorConfig]] = RobinhoodConfig
    config: RobinhoodConfig

    def __init__(self, config: RobinhoodConfig, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        if config.enable_unofficial_equities:
            logger.warning(UNOFFICIAL_WARNING)
        self._signing_key: Ed25519PrivateKey | None = None
        self._signing_key_digest = b""
        self._access_token: Secret | None = None
        self._login_lock = asyncio.Lock()
        self._sent: dict[str, _Sent] = {}
        self._instrument_urls: dict[str, str] = {}  # symbol -> instrument URL
        self._instrument_symbols: dict[str, str] = {}  # instrument URL -> symbol
        self._option_symbols: dict[str, str] = {}  # option instrument URL -> OCC symbol
        self._account_url: str | None = None

    # ------------------------------------------------------------------ symbols

    def to_venue_symbol(self, symbol: str) -> str:
        """``BTCUSD`` -> ``BTC-USD``; stocks and OCC options unchanged (only with the unofficial opt-in)."""
        if symbol.endswith("-USD"):
            raise ConfigError(
                f"{symbol!r} is Robinhood's spelling; pass alphaloom's canonical symbol "
                f"{symbol.replace('-', '')!r} and the connector maps it."
            )
        kind = symbol_kind(symbol)
        if kind == "crypto":
            return f"{symbol[:-3]}-USD"
        self._require_equities(symbol, kind)
        return symbol

    def from_venue_symbol(self, venue_symbol: str) -> str:
        """``BTC-USD`` -> ``BTCUSD``; anything else unchanged."""
        return venue_symbol.replace("-USD", "USD") if venue_symbol.endswith("-USD") else venue_symbol

    def _require_equities(self, symbol: str, kind: str) -> None:
        if not self.config.enable_unofficial_equities:
            what = "an option" if kind == "option" else "a stock or ETF"
            raise ConfigError(
                f"{symbol!r} is {what}; Robinhood's official API covers crypto only (symbols like 'BTCUSD'). "
                "Stocks, ETFs and options go through undocumented endpoints that may change or break and may "
                "violate Robinhood's terms; to use them anyway, set enable_unofficial_equities=True in the "
                "Robinhood connector config."
            )

    # ------------------------------------------------------------------ crypto HTTP (signed)

    def _key(self) -> Ed25519PrivateKey:
        # Asked at each request (a rotated key is used at once); parsed again only when it changed.
        encoded = self.secrets.get("private_key")
        digest = hashlib.sha256(encoded.reveal().encode()).digest()
        if self._signing_key is None or digest != self._signing_key_digest:
            self._signing_key = load_private_key(encoded)
            self._signing_key_digest = digest
        return self._signing_key

    async def _crypto(
        self,
        method: str,
        path: str,
        *,
        params: Sequence[tuple[str, str]] = (),
        body: Mapping[str, Any] | None = None,
        what: str,
        allow: tuple[int, ...] = (),
        url: str | None = None,
        expect_json: bool = True,
    ) -> tuple[int, Any]:
        """One signed request to the Crypto Trading API; ``url`` (a ``next`` link) replaces the path."""
        if url is not None:
            parts, base = urlsplit(url), urlsplit(self.config.base_url)
            if (parts.scheme, parts.netloc) != (base.scheme, base.netloc):
                raise ConnectorError(
                    f"Robinhood {what}: a pagination link points to another host ({parts.netloc}); refusing "
                    "to "
                    "send signed requests there."
                )
            path_qs = parts.path + (f"?{parts.query}" if parts.query else "")
        else:
            path_qs = path + (f"?{urlencode(list(params))}" if params else "")
        text = json.dumps(body, separators=(",", ":")) if body is not None else ""
        api_key = self.secrets.get("api_key")
        stamp = int(
            time.time()
        )  # the venue checks it against real time, whatever clock the connector runs on
        signature = sign_request(api_key.reveal(), self._key(), stamp, path_qs, method, text)
        headers = {
            "x-api-key": api_key.reveal(),
            "x-timestamp": str(stamp),
            "x-signature": signature,
            "Content-Type": "application/json; charset=utf-8",
        }
        response = await self.http.request(
            method,
            self.config.base_url + path_qs,
            content=text.encode() if text else None,
            headers=headers,
            timeout=self.config.timeout_s,
        )
        return self._answer(response, what, allow, official=True, expect_json=expect_json)

    # ------------------------------------------------------------------ unofficial HTTP (bearer token)

    async def _token(self) -> Secret:
        with contextlib.suppress(ConfigError):
            return self.secrets.get("access_token")  # a given token is read at each use, so rotation applies
        if self._access_token is not None:
            return self._access_token
        async with self._login_lock:
            if self._access_token is None:
                self._access_token = await self._login()
        return self._access_token

    async def _login(self) -> Secret:
        try:
            return self.secrets.get("access_token")
        except ConfigError:
            pass
        try:
            username, password = self.secrets.get("username"), self.secrets.get("password")
        except ConfigError as exc:
            prefix = self.config.env_prefix()
            raise ConfigError(
                f"the unofficial Robinhood endpoints need {prefix}ACCESS_TOKEN, or {prefix}USERNAME and "
                f"{prefix}PASSWORD (and {prefix}MFA_CODE if the account asks for one). ({exc})"
            ) from exc
        form = {
            "client_id": _WEB_CLIENT_ID,
            "expires_in": "86400",
            "grant_type": "password",
            "scope": "internal",
            "username": username.reveal(),
            "password": password.reveal(),
            "device_token": str(uuid.uuid5(_CID_NAMESPACE, "device:" + username.reveal())),
        }
        with contextlib.suppress(ConfigError):
            form["mfa_code"] = self.secrets.get("mfa_code").reveal()
        response = await self.http.post(
            self.config.equities_base_url + "/oauth2/token/", data=form, timeout=self.config.timeout_s
        )
        if response.status_code == 400:
            detail = _detail(_json(response)) or "no reason given"
            raise AuthenticationError(
                f"Robinhood refused the login ({detail}). Check {self.config.env_prefix()}USERNAME and "
                f"{self.config.env_prefix()}PASSWORD (and MFA_CODE), or provide an ACCESS_TOKEN."
            )
        _, payload = self._answer(response, "login", (), official=False)
        token = payload.get("access_token") if isinstance(payload, dict) else None
        if not token:
            raise AuthenticationError("Robinhood's login answer holds no access_token; log in another way.")
        return Secret(token)

    async def _equities(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Mapping[str, Any] | None = None,
        what: str,
        allow: tuple[int, ...] = (),
    ) -> tuple[int, Any]:
        """One request to the unofficial API (``url`` absolute, or a path on ``equities_base_url``)."""
        if not url.startswith("http"):
            url = self.config.equities_base_url + url
        elif urlsplit(url).netloc != urlsplit(self.config.equities_base_url).netloc:
            raise ConnectorError(
                f"Robinhood {what}: refusing to send the access token to {urlsplit(url).netloc}."
            )
        for attempt in (1, 2):
            token = await self._token()
            response = await self.http.request(
                method,
                url,
                params=params,
                json=body,
                headers={"Authorization": "Bearer " + token.reveal(), "Accept": "application/json"},
                timeout=self.config.timeout_s,
            )
            if response.status_code == 401 and attempt == 1 and self._can_relogin():
                self._access_token = None  # expired: log in again once
                continue
            return self._answer(response, what, allow, official=False)
        raise AssertionError("unreachable")  # pragma: no cover

    def _can_relogin(self) -> bool:
        try:
            self.secrets.get("access_token")
        except ConfigError:
            return True
        return False

    # ------------------------------------------------------------------ answers and errors

    def _answer(
        self,
        response: httpx.Response,
        what: str,
        allow: tuple[int, ...],
        *,
        official: bool,
        expect_json: bool = True,
    ) -> tuple[int, Any]:
        status = response.status_code
        payload = _json(response)
        if status < 300 or status in allow:
            if expect_json and payload is _NOT_JSON:
                # Cut short or garbled on the way: the request may have worked, so it is retried (orders are
                # looked up before they are sent again).
                raise VenueUnavailableError(
                    f"Robinhood {what}: the response body was not valid JSON (HTTP {status}); retrying."
                )
            return status, payload
        raise self._error(response, payload, what, official=official)

    def _error(self, response: httpx.Response, payload: Any, what: str, *, official: bool) -> AlphaloomError:
        status = response.status_code
        detail = _detail(payload) or response.text[:200].strip() or "no details"
        where = f"Robinhood {what}"
        prefix = self.config.env_prefix()
        if status == 400 and "missing required headers" in detail:
            return AuthenticationError(f"{where}: the request was not signed ({detail}).")
        if status in (401, 403):
            if official:
                return AuthenticationError(
                    f"{where}: Robinhood refused the API key or signature (HTTP {status}: {detail}). Check "
                    f"{prefix}API_KEY and {prefix}PRIVATE_KEY, and that this machine's clock is right "
                    "(signatures are valid for 30 seconds)."
                )
            return AuthenticationError(
                f"{where}: Robinhood refused the access token (HTTP {status}: {detail}); log in again."
            )
        if status == 429:
            return RateLimitError(
                f"{where}: rate limited (HTTP 429: {detail}).",
                retry_after_s=parse_retry_after(response.headers.get("Retry-After")),
            )
        if status >= 500 or status == 408:
            return VenueUnavailableError(f"{where}: Robinhood is unavailable (HTTP {status}: {detail}).")
        return ConnectorError(f"{where}: Robinhood refused the request (HTTP {status}: {detail}).")

    def _translate_error(self, exc: Exception) -> AlphaloomError | None:
        """httpx and JSON failures -> :class:`VenueUnavailableError` (retryable), named for Robinhood."""
        if isinstance(exc, httpx.TimeoutException):
            return VenueUnavailableError(f"Robinhood did not answer in time ({type(exc).__name__}).")
        if isinstance(exc, httpx.TransportError):
            return VenueUnavailableError(f"Robinhood connection problem: {type(exc).__name__}: {exc}")
        if isinstance(exc, json.JSONDecodeError):
            return VenueUnavailableError(f"Robinhood sent malformed JSON ({exc.msg}).")
        return None

    async def _pages(self, first: tuple[int, Any], fetch_next: Any, what: str) -> list[dict[str, Any]]:
        """All ``results`` of a paginated listing, following ``next`` up to ``max_pages``."""
        _, payload = first
        out: list[dict[str, Any]] = []
        for _ in range(self.config.max_pages):
            if not isinstance(payload, dict) or not isinstance(payload.get("results"), list):
                raise VenueUnavailableError(f"Robinhood {what}: the answer has no 'results' list; retrying.")
            out.extend(r for r in payload["results"] if r is not None)
            nxt = payload.get("next")
            if not nxt:
                return out
            _, payload = await fetch_next(nxt)
        raise ConnectorError(
            f"Robinhood {what}: more than max_pages={self.config.max_pages} pages; raise max_pages or narrow "
            "the "
            "query."
        )

    # ------------------------------------------------------------------ history

    async def _fetch_bars(
        self, venue_symbol: str, timeframe: str, start: datetime, end: datetime
    ) -> pd.DataFrame:
        """Stock and ETF bars from ``/quotes/historicals/`` (opt-in); crypto and options have none here."""
        kind = symbol_kind(self.from_venue_symbol(venue_symbol))
        if kind == "crypto":
            raise ConnectorError(
                "Robinhood's Crypto Trading API has no candles or history endpoint, so there are no bars for "
                f"{self.from_venue_symbol(venue_symbol)}. Read history from the store "
                "(`alphaloom data ingest` "
                "from files) or from a venue that serves crypto candles, e.g. the 'coinbase' connector; "
                "Robinhood itself can stream live quotes with get_real_time_data()."
            )
        if kind == "option":
            raise ConnectorError(
                f"Robinhood serves no option price history; {venue_symbol} has no bars here."
            )
        if timeframe not in HISTORICAL_INTERVALS:
            raise ConfigError(
                f"Robinhood's historicals have no {timeframe!r} bars; use one of "
                f"{', '.join(HISTORICAL_INTERVALS)}."
            )
        interval, longest = HISTORICAL_INTERVALS[timeframe]
        needed = self.clock.now() - start
        span = next((s for s, d in _SPAN_DAYS.items() if timedelta(days=d) >= needed), None)
        if span is None or _SPAN_DAYS[span] > _SPAN_DAYS[longest]:
            raise ConnectorError(
                f"Robinhood keeps {interval} bars for the last {longest} only; {venue_symbol} from "
                f"{start.date()} is further back. Choose a later start or a longer timeframe, or load older "
                "history from files into the store."
            )
        _, payload = await self._equities(
            "GET",
            f"/quotes/historicals/{venue_symbol}/",
            params={"interval": interval, "span": span, "bounds": "regular"},
            what=f"historicals of {venue_symbol}",
        )
        if not isinstance(payload, dict) or not isinstance(payload.get("historicals"), list):
            raise VenueUnavailableError(f"Robinhood historicals of {venue_symbol}: no 'historicals' list.")
        rows = [
            {
                "ts": bar["begins_at"],
                "open": float(bar["open_price"]),
                "high": float(bar["high_price"]),
                "low": float(bar["low_price"]),
                "close": float(bar["close_price"]),
                "volume": float(bar.get("volume", math.nan)),
            }
            for bar in payload["historicals"]
            if not bar.get("interpolated", False)
        ]
        frame = pd.DataFrame(rows, columns=["ts", "open", "high", "low", "close", "volume"])
        if not frame.empty:
            frame["ts"] = pd.to_datetime(frame["ts"], utc=True, format="ISO8601")
        return frame

    # ------------------------------------------------------------------ stream

    async def _stream(self, venue_symbols: Sequence[str]) -> AsyncIterator[StreamEvent]:
        """Poll quotes every ``poll_interval_s``: ``best_bid_ask`` for crypto, ``/quotes/`` for stocks."""
        crypto = [s for s in venue_symbols if s.endswith("-USD")]
        options = [s for s in venue_symbols if symbol_kind(s) == "option"]
        stocks = [s for s in venue_symbols if s not in crypto and s not in options]
        if options:
            raise ConfigError(
                f"Robinhood quotes are streamed for crypto, stocks and ETFs, not options: {options}."
            )
        while True:
            if crypto:
                _, payload = await self._crypto(
                    "GET",
                    f"{_CRYPTO}/marketdata/best_bid_ask/",
                    params=[("symbol", s) for s in crypto],
                    what="best bid/ask",
                )
                for entry in _results(payload, "best bid/ask"):
                    yield Quote(
                        symbol=self.from_venue_symbol(entry["symbol"]),
                        ts=_parse_time(entry["timestamp"]),
                        bid=float(entry["bid_inclusive_of_sell_spread"]),
                        ask=float(entry["ask_inclusive_of_buy_spread"]),
                        exchange="robinhood",
                        ts_received=self.clock.now(),
                    )
            if stocks:
                _, payload = await self._equities(
                    "GET", "/quotes/", params={"symbols": ",".join(stocks)}, what="stock quotes"
                )
                for symbol, entry in zip(
                    stocks, _results(payload, "stock quotes", keep_none=True), strict=False
                ):
                    if entry is None:
                        raise UnknownSymbolError(f"Robinhood has no quote for {symbol!r}; check the ticker.")
                    yield Quote(
                        symbol=entry["symbol"],
                        ts=_parse_time(entry["updated_at"]),
                        bid=float(entry["bid_price"]),
                        ask=float(entry["ask_price"]),
                        bid_size=float(entry.get("bid_size") or 0),
                        ask_size=float(entry.get("ask_size") or 0),
                        exchange="robinhood",
                        ts_received=self.clock.now(),
                    )
            await self._sleep(self.config.poll_interval_s)

    # ------------------------------------------------------------------ orders

    async def _submit_order(self, order: Order) -> OrderResult:
        """Send the order to the crypto API, or (opt-in) the unofficial stock or option order endpoint."""
        kind = symbol_kind(order.symbol)
        cid = order.client_order_id
        # Real time, not self.clock: the venue stamps orders with real time and lookups filter on it.
        self._sent.setdefault(cid, _Sent(kind, datetime.now(UTC), order.symbol))
        if kind == "crypto":
            return await self._submit_crypto(order)
        self._require_equities(order.symbol, kind)
        if kind == "stock":
            return await self._submit_stock(order)
        return await self._submit_option(order)

    async def _submit_crypto(self, order: Order) -> OrderResult:
        qty = _decimal(order.quantity)
        if order.order_type is not OrderType.MARKET and order.time_in_force is not TimeInForce.GTC:
            raise OrderRejectedError(
                f"Robinhood crypto limit, stop and stop-limit orders are good-till-cancelled only; order "
                f"{order.client_order_id} asks for {order.time_in_force.value!r}. Use time_in_force='gtc'."
            )
        if order.order_type is OrderType.MARKET:
            kind, conf = "market", {"asset_quantity": qty}
        elif order.order_type is OrderType.LIMIT:
            kind, conf = (
                "limit",
                {"asset_quantity": qty, "limit_price": _decimal(order.limit_price), "time_in_force": "gtc"},
            )
        elif order.order_type is OrderType.STOP:
            kind, conf = (
                "stop_loss",
                {"asset_quantity": qty, "stop_price": _decimal(order.stop_price), "time_in_force": "gtc"},
            )
        else:
            kind = "stop_limit"
            conf = {
                "asset_quantity": qty,
                "limit_price": _decimal(order.limit_price),
                "stop_price": _decimal(order.stop_price),
                "time_in_force": "gtc",
            }
        body = {
            "client_order_id": venue_client_id(order.client_order_id),
            "side": order.side.value,
            "type": kind,
            "symbol": self.to_venue_symbol(order.symbol),
            f"{kind}_order_config": conf,
        }
        status, payload = await self._crypto(
            "POST",
            f"{_CRYPTO}/trading/orders/",
            body=body,
            what=f"order {order.client_order_id}",
            allow=(400,),
        )
        if status == 400:
            found = (
                await self._find_crypto(order.client_order_id) if "client_order_id" in str(payload) else None
            )
            if found is not None:
                return found
            raise OrderRejectedError(
                f"Robinhood rejected order {order.client_order_id} ({order.side.value} {order.quantity:g} "
                f"{order.symbol} {order.order_type.value}): {_detail(payload) or 'no reason given'}"
            )
        return self._crypto_result(order.client_order_id, payload)

    def _crypto_result(self, cid: str, data: Mapping[str, Any]) -> OrderResult:
        state = data.get("state", "")
        if state not in _CRYPTO_STATES:
            raise ConnectorError(f"Robinhood crypto order {cid} has an unknown state {state!r}.")
        symbol = self.from_venue_symbol(data["symbol"])
        side = Side(data["side"])
        fills = tuple(
            Fill(
                client_order_id=cid,
                fill_id=f"{data['id']}-{i}",
                symbol=symbol,
                side=side,
                quantity=float(e["quantity"]),
                price=float(e["effective_price"]),
                ts=_parse_time(e["timestamp"]),
            )
            for i, e in enumerate(data.get("executions") or [])
        )
        filled = float(data.get("filled_asset_quantity") or 0.0)
        avg = data.get("average_price")
        if fills and not math.isclose(sum(f.quantity for f in fills), filled, rel_tol=1e-9, abs_tol=1e-12):
            fills = ()  # executions page truncated: keep the totals, which are authoritative
        return OrderResult(
            client_order_id=cid,
            venue_order_id=str(data["id"]),
            status=_CRYPTO_STATES[state],
            filled_quantity=filled,
            avg_fill_price=float(avg) if avg and filled > 0 else None,
            fills=fills,
            ts=_parse_time(data.get("updated_at") or data["created_at"]),
        )

    async def _find_crypto(self, cid: str) -> OrderResult | None:
        venue_cid = venue_client_id(cid)
        params = [("client_order_id", venue_cid)]
        sent = self._sent.get(cid)
        if sent is not None:
            since = sent.at - timedelta(seconds=self.config.order_lookback_s)
            params.append(("created_at_start", _fmt_time(since)))
        first = await self._crypto(
            "GET", f"{_CRYPTO}/trading/orders/", params=params, what=f"lookup of {cid}"
        )
        orders = await self._pages(
            first, lambda nxt: self._crypto("GET", "", url=nxt, what=f"lookup of {cid}"), f"lookup of {cid}"
        )
        # The filter is checked here too: an order only counts if it carries our id.
        matches = [o for o in orders if o.get("client_order_id") == venue_cid]
        return self._crypto_result(cid, matches[0]) if matches else None

    async def _find_order(self, client_order_id: str) -> OrderResult | None:
        """Look the order up by its client id where it was sent (crypto, stocks or options)."""
        sent = self._sent.get(client_order_id)
        kinds: list[Kind] = [sent.kind] if sent is not None else ["crypto"]
        if sent is None and self.config.enable_unofficial_equities:
            kinds += ["stock", "option"]
        for kind in kinds:
            if kind == "crypto":
                found = await self._find_crypto(client_order_id)
            else:
                found = await self._find_equity(client_order_id, option=kind == "option")
            if found is not None:
                return found
        return None

    async def _cancel_order(self, client_order_id: str) -> OrderResult:
        """Cancel an open order; a finished order returns its final state."""
        found = await self._find_order(client_order_id)
        if found is None:
            raise OrderRejectedError(
                f"Robinhood has no order with client id {client_order_id!r} to cancel; check the id."
            )
        if found.status.is_terminal:
            return found
        sent = self._sent.get(client_order_id)
        kind = sent.kind if sent is not None else await self._kind_of(client_order_id)
        what = f"cancel of order {client_order_id}"
        if kind == "crypto":
            path = f"{_CRYPTO}/trading/orders/{found.venue_order_id}/cancel/"
            # Robinhood answers a cancel with plain text ("Cancel request was submitted ...").
            await self._crypto("POST", path, what=what, allow=(400,), expect_json=False)
        else:
            prefix = "/options/orders/" if kind == "option" else "/orders/"
            await self._equities("POST", f"{prefix}{found.venue_order_id}/cancel/", what=what, allow=(400,))
        after = await self._find_order(client_order_id)
        if after is None:  # pragma: no cover - the venue lost an order it just listed
            raise ConnectorError(f"Robinhood lost order {client_order_id} while cancelling it.")
        if not after.status.is_terminal:
            raise VenueUnavailableError(
                f"Robinhood has not cancelled order {client_order_id} yet (state {after.status.value}); "
                "retrying."
            )
        return after

    async def _kind_of(self, client_order_id: str) -> Kind:
        for kind in ("crypto", "stock", "option"):
            if kind == "crypto":
                hit = await self._find_crypto(client_order_id)
            elif self.config.enable_unofficial_equities:
                hit = await self._find_equity(client_order_id, option=kind == "option")
            else:
                hit = None
            if hit is not None:
                return kind  # type: ignore[return-value]
        raise OrderRejectedError(f"Robinhood has no order with client id {client_order_id!r}.")

    # ------------------------------------------------------------------ unofficial orders

    async def _instrument_url(self, symbol: str) -> str:
        if symbol not in self._instrument_urls:
            _, payload = await self._equities(
                "GET", "/instruments/", params={"symbol": symbol}, what=f"instrument {symbol}"
            )
            results = _results(payload, f"instrument {symbol}")
            if not results:
                raise UnknownSymbolError(f"Robinhood lists no instrument {symbol!r}; check the ticker.")
            self._instrument_urls[symbol] = results[0]["url"]
            self._instrument_symbols[results[0]["url"]] = symbol
        return self._instrument_urls[symbol]

    async def _symbol_of(self, instrument_url: str) -> str:
        if instrument_url not in self._instrument_symbols:
            _, payload = await self._equities("GET", instrument_url, what="instrument")
            self._instrument_symbols[instrument_url] = payload["symbol"]
            self._instrument_urls.setdefault(payload["symbol"], instrument_url)
        return self._instrument_symbols[instrument_url]

    async def _brokerage_account(self) -> dict[str, Any]:
        _, payload = await self._equities("GET", "/accounts/", what="accounts")
        accounts = _results(payload, "accounts")
        if not accounts:
            raise ConnectorError("Robinhood lists no brokerage account for this login.")
        self._account_url = accounts[0]["url"]
        return accounts[0]

    async def _account_link(self) -> str:
        if self._account_url is None:
            await self._brokerage_account()
        assert self._account_url is not None
        return self._account_url

    def _equity_tif(self, order: Order) -> str:
        tif = {TimeInForce.GTC: "gtc", TimeInForce.DAY: "gfd", TimeInForce.IOC: "ioc"}.get(
            order.time_in_force
        )
        if tif is None:
            raise OrderRejectedError(
                f"Robinhood stock and option orders take time_in_force gtc, day or ioc; order "
                f"{order.client_order_id} asks for {order.time_in_force.value!r}."
            )
        return tif

    async def _submit_stock(self, order: Order) -> OrderResult:
        body: dict[str, Any] = {
            "account": await self._account_link(),
            "instrument": await self._instrument_url(order.symbol),
            "symbol": order.symbol,
            "side": order.side.value,
            "quantity": _decimal(order.quantity),
            "time_in_force": self._equity_tif(order),
            "ref_id": venue_client_id(order.client_order_id),
            "extended_hours": False,
            "market_hours": "regular_hours",
        }
        body["type"] = "limit" if order.order_type in (OrderType.LIMIT, OrderType.STOP_LIMIT) else "market"
        body["trigger"] = (
            "stop" if order.order_type in (OrderType.STOP, OrderType.STOP_LIMIT) else "immediate"
        )
        if order.limit_price is not None:
            body["price"] = f"{order.limit_price:.2f}"
        if order.stop_price is not None:
            body["stop_price"] = f"{order.stop_price:.2f}"
        status, payload = await self._equities(
            "POST", "/orders/", body=body, what=f"order {order.client_order_id}", allow=(400,)
        )
        if status == 400:
            raise OrderRejectedError(
                f"Robinhood rejected order {order.client_order_id} ({order.side.value} {order.quantity:g} "
                f"{order.symbol} {order.order_type.value}): {_detail(payload) or 'no reason given'}"
            )
        return self._equity_result(order.client_order_id, payload, order.symbol)

    def _equity_result(self, cid: str, data: Mapping[str, Any], symbol: str) -> OrderResult:
        state = data.get("state", "")
        if state not in _EQUITY_STATES:
            raise ConnectorError(f"Robinhood order {cid} has an unknown state {state!r}.")
        side = Side(data["side"])
        fills = tuple(
            Fill(
                client_order_id=cid,
                fill_id=str(e.get("id") or f"{data['id']}-{i}"),
                symbol=symbol,
                side=side,
                quantity=float(e["quantity"]),
                price=float(e["price"]),
                ts=_parse_time(e["timestamp"]),
            )
            for i, e in enumerate(data.get("executions") or [])
        )
        filled = float(data.get("cumulative_quantity") or 0.0)
        avg = data.get("average_price")
        if fills and not math.isclose(sum(f.quantity for f in fills), filled, rel_tol=1e-9, abs_tol=1e-12):
            fills = ()
        return OrderResult(
            client_order_id=cid,
            venue_order_id=str(data["id"]),
            status=_EQUITY_STATES[state],
            filled_quantity=filled,
            avg_fill_price=float(avg) if avg and filled > 0 else None,
            fills=fills,
            ts=_parse_time(data.get("updated_at") or data["created_at"]),
        )

    async def _find_equity(self, cid: str, *, option: bool) -> OrderResult | None:
        ref = venue_client_id(cid)
        path = "/options/orders/" if option else "/orders/"
        params: dict[str, str] = {}
        sent = self._sent.get(cid)
        if sent is not None:
            params["updated_at[gte]"] = _fmt_time(sent.at - timedelta(seconds=self.config.order_lookback_s))
        what = f"lookup of {cid}"
        first = await self._equities("GET", path, params=params, what=what)
        orders = await self._pages(first, lambda nxt: self._equities("GET", nxt, what=what), what)
        match = next((o for o in orders if o.get("ref_id") == ref), None)
        if match is None:
            return None
        if option:
            return await self._option_result(cid, match)
        symbol = sent.symbol if sent is not None else await self._symbol_of(match["instrument"])
        return self._equity_result(cid, match, symbol)

    async def _option_url(self, occ: str) -> str:
        root, yy, mm, dd, right, strike = _OCC.match(occ).groups()  # type: ignore[union-attr]
        expiry = f"20{yy}-{mm}-{dd}"
        instrument = await self._instrument_url(root)
        instrument_id = instrument.rstrip("/").rsplit("/", 1)[-1]
        _, chains = await self._equities(
            "GET",
            "/options/chains/",
            params={"equity_instrument_ids": instrument_id},
            what=f"chain of {root}",
        )
        chain = next((c for c in _results(chains, f"chain of {root}") if c.get("symbol") == root), None)
        if chain is None:
            raise UnknownSymbolError(f"Robinhood lists no option chain for {root!r}.")
        params = {
            "chain_id": chain["id"],
            "expiration_dates": expiry,
            "strike_price": f"{int(strike) / 1000:.4f}",
            "type": "call" if right == "C" else "put",
            "state": "active",
        }
        first = await self._equities("GET", "/options/instruments/", params=params, what=f"option {occ}")
        found = await self._pages(
            first, lambda n: self._equities("GET", n, what=f"option {occ}"), f"option {occ}"
        )
        if not found:
            raise UnknownSymbolError(
                f"Robinhood lists no active option {occ} ({root} {expiry} {right} {int(strike) / 1000:g}); "
                "see get_option_chain() for what exists."
            )
        self._option_symbols[found[0]["url"]] = occ
        return found[0]["url"]

    async def _submit_option(self, order: Order) -> OrderResult:
        if order.order_type is not OrderType.LIMIT:
            raise OrderRejectedError(
                f"Robinhood option orders go in as limit orders; order {order.client_order_id} is "
                f"{order.order_type.value}. Give it order_type='limit' and a limit_price (per-share premium)."
            )
        if not float(order.quantity).is_integer():
            raise OrderRejectedError(f"option quantities are whole contracts; got {order.quantity:g}.")
        option_url = await self._option_url(order.symbol)
        held = (await self._option_holdings()).get(option_url, 0.0)
        closing = (order.side is Side.SELL and held > 0) or (order.side is Side.BUY and held < 0)
        body = {
            "account": await self._account_link(),
            "direction": "debit" if order.side is Side.BUY else "credit",
            "time_in_force": self._equity_tif(order),
            "legs": [
                {
                    "option": option_url,
                    "position_effect": "close" if closing else "open",
                    "side": order.side.value,
                    "ratio_quantity": 1,
                }
            ],
            "type": "limit",
            "trigger": "immediate",
            "price": f"{order.limit_price:.2f}",
            "quantity": str(int(order.quantity)),
            "override_day_trade_checks": False,
            "override_dtbp_checks": False,
            "ref_id": venue_client_id(order.client_order_id),
        }
        status, payload = await self._equities(
            "POST", "/options/orders/", body=body, what=f"option order {order.client_order_id}", allow=(400,)
        )
        if status == 400:
            raise OrderRejectedError(
                f"Robinhood rejected option order {order.client_order_id}: "
                f"{_detail(payload) or 'no reason given'}"
            )
        return await self._option_result(order.client_order_id, payload)

    async def _option_result(self, cid: str, data: Mapping[str, Any]) -> OrderResult:
        state = data.get("state", "")
        if state not in _EQUITY_STATES:
            raise ConnectorError(f"Robinhood option order {cid} has an unknown state {state!r}.")
        filled = float(data.get("processed_quantity") or 0.0)
        premium = float(data.get("processed_premium") or 0.0)
        avg = premium / (100 * filled) if filled > 0 else None
        return OrderResult(
            client_order_id=cid,
            venue_order_id=str(data["id"]),
            status=_EQUITY_STATES[state],
            filled_quantity=filled,
            avg_fill_price=avg,
            ts=_parse_time(data.get("updated_at") or data["created_at"]),
        )

    async def _option_holdings(self) -> dict[str, float]:
        what = "option positions"
        first = await self._equities("GET", "/options/positions/", params={"nonzero": "True"}, what=what)
        rows = await self._pages(first, lambda n: self._equities("GET", n, what=what), what)
        return {
            r["option"]: float(r["quantity"]) * (1 if r.get("type", "long") == "long" else -1) for r in rows
        }

    async def get_option_chain(self, underlying: str, expiration: str | None = None) -> pd.DataFrame:
        """The option contracts on ``underlying`` with their quotes (unofficial endpoints, opt-in).

        Parameters
        ----------
        underlying
            A stock or ETF ticker (``"AAPL"``).
        expiration
            ``"YYYY-MM-DD"`` to keep one expiry; all listed expiries when ``None``.

        Returns
        -------
        pandas.DataFrame
            One row per contract: ``symbol`` (OCC), ``expiration`` (date string), ``strike``, ``right``
            (``"call"``/``"put"``), ``bid``, ``ask``, ``mark`` (per-share premiums), sorted by expiry, strike
            and right.
        """
        symbol = self.check_symbol(underlying)
        self._require_equities(symbol, "stock")

        async def fetch() -> pd.DataFrame:
            instrument = await self._instrument_url(symbol)
            _, chains = await self._equities(
                "GET",
                "/options/chains/",
                params={"equity_instrument_ids": instrument.rstrip("/").rsplit("/", 1)[-1]},
                what=f"chain of {symbol}",
            )
            chain = next((c for c in _results(chains, "chain") if c.get("symbol") == symbol), None)
            if chain is None:
                raise UnknownSymbolError(f"Robinhood lists no option chain for {symbol!r}.")
            params = {"chain_id": chain["id"], "state": "active"}
            if expiration is not None:
                params["expiration_dates"] = expiration
            first = await self._equities("GET", "/options/instruments/", params=params, what="chain")
            contracts = await self._pages(first, lambda n: self._equities("GET", n, what="chain"), "chain")
            quotes: dict[str, dict[str, Any]] = {}
            for i in range(0, len(contracts), 40):
                urls = ",".join(c["url"] for c in contracts[i : i + 40])
                _, payload = await self._equities(
                    "GET", "/marketdata/options/", params={"instruments": urls}, what="option quotes"
                )
                for q in _results(payload, "option quotes", keep_none=True):
                    if q is not None:
                        quotes[q["instrument"]] = q
            rows = []
            for c in contracts:
                q = quotes.get(c["url"], {})
                occ = _occ(symbol, c["expiration_date"], c["type"], float(c["strike_price"]))
                self._option_symbols[c["url"]] = occ
                rows.append(
                    {
                        "symbol": occ,
                        "expiration": c["expiration_date"],
                        "strike": float(c["strike_price"]),
                        "right": c["type"],
                        "bid": float(q["bid_price"]) if q.get("bid_price") else math.nan,
                        "ask": float(q["ask_price"]) if q.get("ask_price") else math.nan,
                        "mark": float(q["mark_price"]) if q.get("mark_price") else math.nan,
                    }
                )
            columns = ["symbol", "expiration", "strike", "right", "bid", "ask", "mark"]
            frame = pd.DataFrame(rows, columns=columns)
            return frame.sort_values(["expiration", "strike", "right"], kind="stable").reset_index(drop=True)

        return await self._call("get_option_chain", fetch)

    # ------------------------------------------------------------------ positions and account

    async def _crypto_marks(self, venue_symbols: Sequence[str]) -> dict[str, float]:
        if not venue_symbols:
            return {}
        _, payload = await self._crypto(
            "GET",
            f"{_CRYPTO}/marketdata/best_bid_ask/",
            params=[("symbol", s) for s in venue_symbols],
            what="best bid/ask",
        )
        return {q["symbol"]: float(q["price"]) for q in _results(payload, "best bid/ask")}

    async def _crypto_positions(self) -> dict[str, Position]:
        what = "holdings"
        first = await self._crypto("GET", f"{_CRYPTO}/trading/holdings/", what=what)
        holdings = await self._pages(first, lambda n: self._crypto("GET", "", url=n, what=what), what)
        held = {
            h["asset_code"]: float(h["total_quantity"]) for h in holdings if float(h["total_quantity"]) > 0
        }
        if not held:
            return {}
        marks = await self._crypto_marks([f"{a}-USD" for a in held])
        what = "filled orders"
        first = await self._crypto(
            "GET", f"{_CRYPTO}/trading/orders/", params=[("state", "filled")], what=what
        )
        filled = await self._pages(first, lambda n: self._crypto("GET", "", url=n, what=what), what)
        out: dict[str, Position] = {}
        for asset, quantity in held.items():
            symbol, mark = f"{asset}USD", marks.get(f"{asset}-USD")
            if mark is None:
                continue  # a delisted asset with no quote: cannot be valued
            avg = self._cost_basis(symbol, quantity, mark, filled)
            out[symbol] = Position(symbol=symbol, quantity=quantity, avg_cost=avg, current_price=mark)
        return out

    def _cost_basis(self, symbol: str, quantity: float, mark: float, orders: list[dict[str, Any]]) -> float:
        book = Position(symbol=symbol, current_price=mark)
        for data in sorted(orders, key=lambda o: o["created_at"]):
            if self.from_venue_symbol(data.get("symbol", "")) != symbol:
                continue
            result = self._crypto_result(data["client_order_id"], data)
            if result.filled_quantity > 0 and result.avg_fill_price is not None:
                book = book.apply_fill(
                    Fill(
                        client_order_id=result.client_order_id,
                        symbol=symbol,
                        side=data["side"],
                        quantity=result.filled_quantity,
                        price=result.avg_fill_price,
                        ts=result.ts,
                    )
                )
        if book.quantity <= 0:
            return mark
        explained = min(book.quantity, quantity)
        # Holdings the orders do not explain (transfers in) are costed at the current mid.
        return (explained * book.avg_cost + (quantity - explained) * mark) / quantity

    async def _stock_positions(self) -> dict[str, Position]:
        what = "positions"
        first = await self._equities("GET", "/positions/", params={"nonzero": "true"}, what=what)
        rows = await self._pages(first, lambda n: self._equities("GET", n, what=what), what)
        held = [
            (await self._symbol_of(r["instrument"]), float(r["quantity"]), float(r["average_buy_price"]))
            for r in rows
        ]
        held = [h for h in held if h[1] != 0]
        if not held:
            return {}
        _, payload = await self._equities(
            "GET", "/quotes/", params={"symbols": ",".join(h[0] for h in held)}, what="stock quotes"
        )
        last = {
            q["symbol"]: float(q["last_trade_price"])
            for q in _results(payload, "quotes", keep_none=True)
            if q
        }
        return {
            sym: Position(symbol=sym, quantity=qty, avg_cost=avg, current_price=last.get(sym, avg))
            for sym, qty, avg in held
        }

    async def _option_positions(self) -> dict[str, Position]:
        what = "option positions"
        first = await self._equities("GET", "/options/positions/", params={"nonzero": "True"}, what=what)
        rows = await self._pages(first, lambda n: self._equities("GET", n, what=what), what)
        if not rows:
            return {}
        _, payload = await self._equities(
            "GET",
            "/marketdata/options/",
            params={"instruments": ",".join(r["option"] for r in rows)},
            what=what,
        )
        marks = {
            q["instrument"]: float(q["mark_price"]) for q in _results(payload, what, keep_none=True) if q
        }
        out: dict[str, Position] = {}
        for r in rows:
            occ = self._option_symbols.get(r["option"])
            if occ is None:
                _, option = await self._equities("GET", r["option"], what="option instrument")
                occ = _occ(
                    option["chain_symbol"],
                    option["expiration_date"],
                    option["type"],
                    float(option["strike_price"]),
                )
                self._option_symbols[r["option"]] = occ
            multiplier = float(r.get("trade_value_multiplier") or 100.0)
            avg = float(r["average_price"]) / multiplier
            qty = float(r["quantity"]) * (1 if r.get("type", "long") == "long" else -1)
            out[occ] = Position(
                symbol=occ, quantity=qty, avg_cost=avg, current_price=marks.get(r["option"], avg)
            )
        return out

    async def _fetch_positions(self) -> dict[str, Position]:
        """Crypto holdings, plus stock and option positions when the unofficial endpoints are enabled."""
        positions = await self._crypto_positions()
        if self.config.enable_unofficial_equities:
            positions.update(await self._stock_positions())
            positions.update(await self._option_positions())
        return positions

    async def _fetch_account(self) -> Account:
        """Crypto buying power as cash, equity with holdings at market (opt-in: the brokerage account)."""
        _, crypto = await self._crypto("GET", f"{_CRYPTO}/trading/accounts/", what="account")
        positions = await self._fetch_positions()
        value = math.fsum(p.market_value for p in positions.values())
        if self.config.enable_unofficial_equities:
            brokerage = await self._brokerage_account()
            cash = float(brokerage["cash"])
            return Account(
                account_id=str(brokerage["account_number"]),
                currency="USD",
                cash=cash,
                equity=cash + value,
                buying_power=float(brokerage["buying_power"]),
                venue="robinhood",
                ts=self.clock.now(),
            )
        cash = float(crypto["buying_power"])
        return Account(
            account_id=str(crypto["account_number"]),
            currency=crypto.get("buying_power_currency", "USD"),
            cash=cash,
            equity=cash + value,
            buying_power=cash,
            venue="robinhood",
            ts=self.clock.now(),
        )


# ---------------------------------------------------------------------- helpers

_NOT_JSON: Any = object()


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return _NOT_JSON


def _detail(payload: Any) -> str:
    if isinstance(payload, dict):
        errors = payload.get("errors")
        if isinstance(errors, list) and errors:
            return "; ".join(
                f"{e.get('attr')}: {e.get('detail')}" if e.get("attr") else str(e.get("detail"))
                for e in errors
            )
        if "detail" in payload:
            return str(payload["detail"])
        return "; ".join(f"{k}: {v}" for k, v in payload.items() if isinstance(v, list | str))
    return ""


def _results(payload: Any, what: str, *, keep_none: bool = False) -> list[Any]:
    if not isinstance(payload, dict) or not isinstance(payload.get("results"), list):
        raise VenueUnavailableError(f"Robinhood {what}: the answer has no 'results' list; retrying.")
    return [r for r in payload["results"] if keep_none or r is not None]


def _decimal(value: float | None) -> str:
    assert value is not None
    text = f"{value:.8f}".rstrip("0").rstrip(".")
    return text or "0"


def _parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def _fmt_time(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _occ(root: str, expiration: str, right: str, strike: float) -> str:
    yymmdd = expiration[2:4] + expiration[5:7] + expiration[8:10]
    return f"{root}{yymmdd}{'C' if right == 'call' else 'P'}{round(strike * 1000):08d}"
