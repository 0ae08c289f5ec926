"""OANDA through its v20 REST API: candles, the pricing stream, orders, positions and the account summary.

Environments: ``practice`` (``https://api-fxpractice.oanda.com``, stream ``https://stream-fxpractice.oanda.com``)
and ``live`` (``api-fxtrade`` / ``stream-fxtrade``); ``base_url``/``stream_url`` override both (tests point
them at a local server).

Credentials come from the secret provider: ``token`` (a personal access token, sent as ``Authorization:
Bearer``) and ``account`` (the v20 account id, e.g. ``101-004-1234567-001``), i.e. the environment variables
``ALPHALOOM_OANDA_TOKEN`` and ``ALPHALOOM_OANDA_ACCOUNT`` by default. ``OANDAConfig.account_id`` may name the
account instead.

How the venue maps onto the contract:

- Symbols: ``EURUSD`` <-> ``EUR_USD``; CFDs too (``XAUUSD`` <-> ``XAU_USD``, ``SPX500USD`` <->
  ``SPX500_USD``): the last three letters are the quote currency.
- History: ``GET /v3/instruments/{instrument}/candles`` with ``price=M`` (mid) or ``BA`` (bid and ask,
  averaged to mid), aligned to 00:00 UTC, paginated ``from`` + ``count`` (at most 5000 candles a request) and
  a final ``from`` + ``to`` page. Only ``complete`` candles become bars; ``volume`` is OANDA's tick volume.
  Pages already fetched survive a failed attempt, so a retry resumes where the failure happened.
- Real time: ``GET /v3/accounts/{id}/pricing/stream`` (newline-delimited ``PRICE`` and ``HEARTBEAT``
  messages) yields :class:`~alphaloom.core.types.Quote` events, and, when ``stream_bar_timeframe`` is set,
  each completed candle as a :class:`~alphaloom.core.types.Bar` as soon as the stream's clock passes its end.
  OANDA keeps no tick history, so quotes missed while the stream was down cannot be replayed; the bars of
  that gap are backfilled from candles by the base class, so the bar series has no hole.
- Orders: ``POST /v3/accounts/{id}/orders`` with signed ``units`` and ``clientExtensions.id`` = our client
  order id. MARKET orders are fill-or-kill (``ioc`` maps to IOC), LIMIT and STOP orders take ``gtc``, ``day``
  (GFD), ``ioc`` and ``fok``; a ``stop_limit`` order is sent as a STOP order with ``priceBound`` = the limit.
  Orders are found by client id (``GET .../orders/@{id}``) and cancelled the same way.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Literal
from urllib.parse import quote as urlquote

import httpx
import pandas as pd
from pydantic import Field, model_validator

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
    Bar,
    Fill,
    Order,
    OrderResult,
    OrderStatus,
    OrderType,
    Position,
    Quote,
    TimeInForce,
)
from alphaloom.data.connectors.base import (
    ConnectorConfig,
    ExchangeConnector,
    StreamEvent,
    parse_retry_after,
    timeframe_delta,
)

__all__ = ["GRANULARITIES", "OANDA_ENVIRONMENTS", "OANDAConfig", "OANDAConnector"]

logger = logging.getLogger(__name__)

#: REST and streaming hosts of each OANDA environment.
OANDA_ENVIRONMENTS: Mapping[str, tuple[str, str]] = {
    "practice": ("https://api-fxpractice.oanda.com", "https://stream-fxpractice.oanda.com"),
    "live": ("https://api-fxtrade.oanda.com", "https://stream-fxtrade.oanda.com"),
}

#: alphaloom timeframe -> OANDA candlestick granularity.
GRANULARITIES: Mapping[str, str] = {
    "1m": "M1",
    "5m": "M5",
    "15m": "M15",
    "30m": "M30",
    "1h": "H1",
    "4h": "H4",
    "1d": "D",
}

_MAX_CANDLES = 5000  # the venue's limit on one candles request
_ORDER_STATES = {
    "PENDING": OrderStatus.ACCEPTED,
    "TRIGGERED": OrderStatus.ACCEPTED,
    "FILLED": OrderStatus.FILLED,
    "CANCELLED": OrderStatus.CANCELLED,
}


class OANDAConfig(ConnectorConfig):
    """Settings of :class:`OANDAConnector`.

    Parameters
    ----------
    environment
        ``"practice"`` or ``"live"``; picks the default ``base_url`` and ``stream_url``.
    base_url, stream_url
        REST and streaming base URLs; empty means the environment's hosts.
    account_id
        The v20 account id; empty means the ``account`` secret (``ALPHALOOM_OANDA_ACCOUNT``).
    candle_price
        ``"M"`` (mid candles) or ``"BA"`` (bid and ask candles, averaged into mid bars).
    max_candles_per_request
        Page size of candle requests, at most the venue's 5000.
    stream_bar_timeframe
        Also yield completed bars of this timeframe from the real-time stream (``None``: quotes only).
    stream_timeout_s
        Seconds without any stream message (OANDA sends a heartbeat every 5 s) before the stream counts as
        dropped and reconnects.
    position_fill
        OANDA's ``positionFill`` for new orders (``DEFAULT`` nets on netting accounts).
    """

    venue: str = "oanda"
    environment: Literal["practice", "live"] = "practice"
    account_id: str = Field("", pattern=r"^[A-Za-z0-9\-]*$", max_length=64)
    candle_price: Literal["M", "BA"] = "M"
    max_candles_per_request: int = Field(_MAX_CANDLES, ge=1, le=_MAX_CANDLES)
    stream_bar_timeframe: str | None = "1m"
    stream_timeout_s: float = Field(15.0, gt=0.0, allow_inf_nan=False)
    position_fill: Literal["DEFAULT", "OPEN_ONLY", "REDUCE_FIRST", "REDUCE_ONLY"] = "DEFAULT"

    @model_validator(mode="before")
    @classmethod
    def _environment_urls(cls, data: Any) -> Any:
        if isinstance(data, dict):
            rest, stream = OANDA_ENVIRONMENTS.get(data.get("environment", "practice"), ("", ""))
            data = dict(data)
            if not data.get("base_url"):
                data["base_url"] = rest
            if not data.get("stream_url"):
                data["stream_url"] = stream
        return data

    @model_validator(mode="after")
    def _stream_timeframe_known(self) -> OANDAConfig:
        if self.stream_bar_timeframe is not None and self.stream_bar_timeframe not in GRANULARITIES:
            raise ValueError(
                f"stream_bar_timeframe must be one of {', '.join(GRANULARITIES)} or None, "
                f"got {self.stream_bar_timeframe!r}"
            )
        return self


@dataclass
class _Paging:
    """Progress of one candles download, kept across retried attempts so a retry resumes."""

    cursor: datetime
    include_first: bool = True
    rows: list[dict[str, Any]] = field(default_factory=list)


class OANDAConnector(ExchangeConnector):
    """OANDA v20: forex and CFD candles, streaming prices, orders, positions and the account.

    Parameters
    ----------
    config
        An :class:`OANDAConfig`.
    secrets, http, clock
        As for :class:`~alphaloom.data.connectors.base.ExchangeConnector`; secrets ``token`` and ``account``.

    Examples
    --------
    >>> cfg = OANDAConfig(environment="practice")  # doctest: +SKIP
    >>> async with OANDAConnector(cfg) as oanda:  # doctest: +SKIP
    ...     bars = await oanda.get_historical_data("EURUSD", "1h", start, end)
    """

    name: ClassVar[str] = "oanda"
    config_class: ClassVar[type[ConnectorConfig]] = OANDAConfig
    config: OANDAConfig

    def __init__(self, config: OANDAConfig, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self._paging: dict[tuple[str, str, datetime, datetime], _Paging] = {}

    # ------------------------------------------------------------------ symbols

    def to_venue_symbol(self, symbol: str) -> str:
        """``EURUSD`` -> ``EUR_USD`` (the last three letters are the quote currency)."""
        if "_" in symbol:
            return symbol
        if len(symbol) < 6 or not symbol[-3:].isalpha():
            raise UnknownSymbolError(
                f"OANDA lists currency pairs and CFDs as BASE_QUOTE; {symbol!r} does not end in a 3-letter "
                f"quote currency. Use e.g. 'EURUSD', 'USDJPY' or 'XAUUSD'."
            )
        return f"{symbol[:-3]}_{symbol[-3:]}"

    def from_venue_symbol(self, venue_symbol: str) -> str:
        """``EUR_USD`` -> ``EURUSD``."""
        return venue_symbol.replace("_", "")

    # ------------------------------------------------------------------ HTTP

    def _token(self) -> Secret:
        return self.secrets.get("token")

    def _account(self) -> str:
        if self.config.account_id:
            return self.config.account_id
        return self.secrets.get("account").reveal()

    def _headers(self) -> dict[str, str]:
        return {
            "Authorization": "Bearer " + self._token().reveal(),
            "Accept-Datetime-Format": "RFC3339",
            "Content-Type": "application/json",
        }

    def _account_path(self, suffix: str = "") -> str:
        return f"{self.config.base_url}/v3/accounts/{urlquote(self._account(), safe='')}{suffix}"

    async def _request(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, str | int] | None = None,
        body: Mapping[str, Any] | None = None,
        what: str,
        allow: tuple[int, ...] = (),
    ) -> tuple[int, dict[str, Any]]:
        """Send one request; returns ``(status, json)`` for 2xx and for statuses in ``allow``."""
        response = await self.http.request(
            method, url, params=params, json=body, headers=self._headers(), timeout=self.config.timeout_s
        )
        payload = _decode(response, what)
        if response.status_code < 300 or response.status_code in allow:
            if payload is None:
                raise VenueUnavailableError(
                    f"OANDA {what}: the response body was not valid JSON (HTTP {response.status_code}); "
                    "it was probably cut short, so the request will be retried."
                )
            return response.status_code, payload
        raise _error_for(response, payload, what, self.config.env_prefix())

    # ------------------------------------------------------------------ history

    async def _fetch_bars(
        self, venue_symbol: str, timeframe: str, start: datetime, end: datetime
    ) -> pd.DataFrame:
        """Complete candles in ``[start, end)``, paginated; pages fetched survive a failed attempt."""
        granularity = _granularity(timeframe)
        step = timeframe_delta(timeframe)
        key = (venue_symbol, timeframe, start, end)
        paging = self._paging.setdefault(key, _Paging(cursor=start))
        page_size = self.config.max_candles_per_request
        url = f"{self.config.base_url}/v3/instruments/{urlquote(venue_symbol, safe='')}/candles"
        while True:
            params: dict[str, str | int] = {
                "price": self.config.candle_price,
                "granularity": granularity,
                "from": _fmt_time(paging.cursor),
                "includeFirst": "true" if paging.include_first else "false",
                "dailyAlignment": 0,
                "alignmentTimezone": "UTC",
                "weeklyAlignment": "Monday",
            }
            last_page = math.ceil((end - paging.cursor) / step) <= page_size
            if last_page:
                params["to"] = _fmt_time(end)
            else:
                params["count"] = page_size
            _, payload = await self._request("GET", url, params=params, what=f"candles of {venue_symbol}")
            candles = payload.get("candles")
            if not isinstance(candles, list):
                raise ConnectorError(f"OANDA candles of {venue_symbol}: the answer has no 'candles' list.")
            reached_now = False
            for candle in candles:
                if not candle.get("complete", False):
                    reached_now = True  # the candle in progress, and nothing after it exists yet
                    continue
                paging.rows.append(self._candle_row(candle))
            if last_page or not candles or reached_now or len(candles) < page_size:
                break
            newest = _parse_time(candles[-1]["time"])
            if newest <= paging.cursor and not paging.include_first:
                break  # no progress: the venue has nothing newer
            paging.cursor, paging.include_first = newest, False
            if newest + step >= end:
                break
        del self._paging[key]
        frame = pd.DataFrame(paging.rows, columns=["ts", "open", "high", "low", "close", "volume"])
        if not frame.empty:
            frame["ts"] = pd.to_datetime(frame["ts"], utc=True, format="ISO8601")
        return frame

    def _candle_row(self, candle: Mapping[str, Any]) -> dict[str, Any]:
        if self.config.candle_price == "M":
            mid = candle["mid"]
            o, h, low, c = (float(mid[k]) for k in ("o", "h", "l", "c"))
        else:
            bid, ask = candle["bid"], candle["ask"]
            o, h, low, c = ((float(bid[k]) + float(ask[k])) / 2 for k in ("o", "h", "l", "c"))
        return {
            "ts": candle["time"],
            "open": o,
            "high": h,
            "low": low,
            "close": c,
            "volume": float(candle.get("volume", math.nan)),
        }

    # ------------------------------------------------------------------ stream

    async def _stream(self, venue_symbols: Sequence[str]) -> AsyncIterator[StreamEvent]:
        """Quotes from the pricing stream, plus completed bars when ``stream_bar_timeframe`` is set."""
        url = f"{self.config.stream_url}/v3/accounts/{urlquote(self._account(), safe='')}/pricing/stream"
        params = {"instruments": ",".join(venue_symbols), "snapshot": "true"}
        timeout = httpx.Timeout(self.config.timeout_s, read=self.config.stream_timeout_s)
        bar_tf = self.config.stream_bar_timeframe
        next_bar: dict[str, datetime] = {}  # per instrument: open time of the first bar not yet yielded
        async with self.http.stream(
            "GET", url, params=params, headers=self._headers(), timeout=timeout
        ) as response:
            if response.status_code >= 300:
                await response.aread()
                payload = _decode(response, "pricing stream")
                raise _error_for(response, payload, "pricing stream", self.config.env_prefix())
            async for line in response.aiter_lines():
                if not line.strip():
                    continue
                try:
                    message = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise VenueUnavailableError(
                        f"OANDA pricing stream sent a garbled line ({exc.msg}); reconnecting."
                    ) from exc
                kind = message.get("type")
                if kind == "PRICE":
                    quote = self._quote(message)
                    if quote is not None:
                        yield quote
                elif kind != "HEARTBEAT":
                    logger.debug("OANDA pricing stream: ignoring a message of type %r", kind)
                    continue
                if bar_tf is not None and "time" in message:
                    venue_now = _parse_time(message["time"])
                    for venue_symbol in venue_symbols:
                        for bar in await self._completed_bars(venue_symbol, bar_tf, venue_now, next_bar):
                            yield bar

    def _quote(self, message: Mapping[str, Any]) -> Quote | None:
        bids, asks = message.get("bids") or [], message.get("asks") or []
        if not bids or not asks:
            return None  # a halted or closed instrument sends empty books
        return Quote(
            symbol=self.from_venue_symbol(message["instrument"]),
            ts=_parse_time(message["time"]),
            bid=float(bids[0]["price"]),
            ask=float(asks[0]["price"]),
            bid_size=float(bids[0].get("liquidity", 0.0)),
            ask_size=float(asks[0].get("liquidity", 0.0)),
            exchange="oanda",
            ts_received=self.clock.now(),
        )

    async def _completed_bars(
        self, venue_symbol: str, timeframe: str, venue_now: datetime, next_bar: dict[str, datetime]
    ) -> list[Bar]:
        step = timeframe_delta(timeframe)
        boundary = _floor(venue_now, step)
        # A fresh connection starts with the last completed bar: the base class then sees at once whether
        # bars were missed while the stream was down (and backfills them) or drops it as already seen.
        first = next_bar.setdefault(venue_symbol, boundary - step)
        if boundary <= first:
            return []
        symbol = self.from_venue_symbol(venue_symbol)
        frame = await self.get_historical_data(symbol, timeframe, first, boundary)
        next_bar[venue_symbol] = boundary
        return [
            Bar(
                symbol=symbol,
                ts=row.ts.to_pydatetime(),
                open=row.open,
                high=row.high,
                low=row.low,
                close=row.close,
                volume=None if math.isnan(row.volume) else row.volume,
                exchange="oanda",
                timeframe=timeframe,
            )
            for row in frame.itertuples(index=False)
        ]

    # ------------------------------------------------------------------ orders

    async def _submit_order(self, order: Order) -> OrderResult:
        """POST the order with ``clientExtensions.id`` = ``order.client_order_id``."""
        instrument = self.to_venue_symbol(order.symbol)
        status, payload = await self._request(
            "POST",
            self._account_path("/orders"),
            body={"order": self._order_request(order, instrument)},
            what=f"order {order.client_order_id}",
            allow=(400,),
        )
        if status == 400:
            reject = payload.get("orderRejectTransaction") or {}
            reason = payload.get("errorCode") or reject.get("rejectReason") or ""
            if reason == "CLIENT_ORDER_ID_ALREADY_EXISTS":
                # The venue holds a pending order with this id: it is ours, sent by an earlier attempt.
                found = await self._find_order(order.client_order_id)
                if found is not None:
                    return found
            message = payload.get("errorMessage", "no message")
            raise OrderRejectedError(
                f"OANDA rejected order {order.client_order_id} ({order.side} {order.quantity:g} "
                f"{order.symbol} {order.order_type}): {message}" + (f" [{reason}]" if reason else "")
            )
        return self._result_from_create(order.client_order_id, payload)

    def _order_request(self, order: Order, instrument: str) -> dict[str, Any]:
        units = order.signed_quantity
        body: dict[str, Any] = {
            "instrument": instrument,
            "units": str(int(units)) if float(units).is_integer() else repr(units),
            "positionFill": self.config.position_fill,
            "clientExtensions": {"id": order.client_order_id, "tag": "alphaloom"},
        }
        digits = 3 if instrument.endswith("_JPY") else 5
        if order.order_type is OrderType.MARKET:
            body["type"] = "MARKET"
            body["timeInForce"] = "IOC" if order.time_in_force is TimeInForce.IOC else "FOK"
            return body
        body["timeInForce"] = {
            TimeInForce.GTC: "GTC",
            TimeInForce.DAY: "GFD",
            TimeInForce.IOC: "IOC",
            TimeInForce.FOK: "FOK",
        }[order.time_in_force]
        if order.order_type is OrderType.LIMIT:
            body["type"] = "LIMIT"
            body["price"] = f"{order.limit_price:.{digits}f}"
        else:
            body["type"] = "STOP"
            body["price"] = f"{order.stop_price:.{digits}f}"
            if order.order_type is OrderType.STOP_LIMIT:
                body["priceBound"] = f"{order.limit_price:.{digits}f}"
        return body

    def _result_from_create(self, cid: str, payload: Mapping[str, Any]) -> OrderResult:
        create = payload.get("orderCreateTransaction") or {}
        fill = payload.get("orderFillTransaction")
        cancel = payload.get("orderCancelTransaction")
        venue_id = str(create.get("id", ""))
        if fill:
            return self._filled(cid, venue_id, fill)
        ts = _parse_time(create["time"]) if "time" in create else self.clock.now()
        if cancel:
            return OrderResult(
                client_order_id=cid,
                venue_order_id=venue_id,
                status=OrderStatus.CANCELLED,
                message=f"cancelled by OANDA: {cancel.get('reason', 'no reason given')}",
                ts=_parse_time(cancel["time"]) if "time" in cancel else ts,
            )
        return OrderResult(client_order_id=cid, venue_order_id=venue_id, status=OrderStatus.ACCEPTED, ts=ts)

    def _filled(self, cid: str, venue_id: str, fill: Mapping[str, Any]) -> OrderResult:
        units = abs(float(fill["units"]))
        price = float(fill["price"])
        ts = _parse_time(fill["time"])
        symbol = self.from_venue_symbol(fill["instrument"])
        execution = Fill(
            client_order_id=cid,
            fill_id=str(fill["id"]),
            symbol=symbol,
            side="buy" if float(fill["units"]) > 0 else "sell",
            quantity=units,
            price=price,
            fee=abs(float(fill.get("commission", 0.0))),
            ts=ts,
        )
        return OrderResult(
            client_order_id=cid,
            venue_order_id=venue_id or str(fill.get("orderID", "")),
            status=OrderStatus.FILLED,
            filled_quantity=units,
            avg_fill_price=price,
            fills=(execution,),
            ts=ts,
        )

    async def _find_order(self, client_order_id: str) -> OrderResult | None:
        """``GET .../orders/@{client_order_id}``; ``None`` on 404."""
        status, payload = await self._request(
            "GET",
            self._account_path(f"/orders/@{urlquote(client_order_id, safe='')}"),
            what=f"order {client_order_id}",
            allow=(404,),
        )
        if status == 404:
            return None
        return await self._result_from_order(client_order_id, payload["order"])

    async def _result_from_order(self, cid: str, order: Mapping[str, Any]) -> OrderResult:
        state = order.get("state", "")
        venue_id = str(order.get("id", ""))
        if state == "FILLED" and order.get("fillingTransactionID"):
            _, tx = await self._request(
                "GET",
                self._account_path(f"/transactions/{urlquote(str(order['fillingTransactionID']), safe='')}"),
                what=f"fill of order {cid}",
            )
            return self._filled(cid, venue_id, tx["transaction"])
        if state not in _ORDER_STATES:
            raise ConnectorError(f"OANDA order {cid} has an unknown state {state!r}.")
        when = order.get("cancelledTime") or order.get("createTime")
        return OrderResult(
            client_order_id=cid,
            venue_order_id=venue_id,
            status=_ORDER_STATES[state],
            ts=_parse_time(when) if when else self.clock.now(),
        )

    async def _cancel_order(self, client_order_id: str) -> OrderResult:
        """``PUT .../orders/@{id}/cancel``; a finished order returns its final state."""
        status, payload = await self._request(
            "PUT",
            self._account_path(f"/orders/@{urlquote(client_order_id, safe='')}/cancel"),
            what=f"cancel of order {client_order_id}",
            allow=(404,),
        )
        if status == 404:
            found = await self._find_order(client_order_id)
            if found is None:
                raise OrderRejectedError(
                    f"OANDA has no order with client id {client_order_id!r} to cancel; check the id."
                )
            return found
        cancel = payload.get("orderCancelTransaction") or {}
        return OrderResult(
            client_order_id=client_order_id,
            venue_order_id=str(cancel.get("orderID", "")),
            status=OrderStatus.CANCELLED,
            message=str(cancel.get("reason", "")),
            ts=_parse_time(cancel["time"]) if "time" in cancel else self.clock.now(),
        )

    # ------------------------------------------------------------------ account

    async def _fetch_positions(self) -> dict[str, Position]:
        """Open positions, netted (long + short units), marked at the current mid price."""
        _, payload = await self._request("GET", self._account_path("/openPositions"), what="open positions")
        netted: dict[str, tuple[float, float, float]] = {}
        for entry in payload.get("positions", []):
            long_units = float(entry.get("long", {}).get("units", 0))
            short_units = float(entry.get("short", {}).get("units", 0))
            quantity = long_units + short_units
            if quantity == 0:
                continue
            side = entry["long"] if quantity > 0 else entry["short"]
            netted[entry["instrument"]] = (quantity, float(side["averagePrice"]), float(entry.get("pl", 0.0)))
        if not netted:
            return {}
        _, prices = await self._request(
            "GET",
            self._account_path("/pricing"),
            params={"instruments": ",".join(sorted(netted))},
            what="prices of open positions",
        )
        marks = {
            p["instrument"]: (float(p["bids"][0]["price"]) + float(p["asks"][0]["price"])) / 2
            for p in prices.get("prices", [])
            if p.get("bids") and p.get("asks")
        }
        out: dict[str, Position] = {}
        for instrument, (quantity, avg, pl) in netted.items():
            symbol = self.from_venue_symbol(instrument)
            out[symbol] = Position(
                symbol=symbol,
                quantity=quantity,
                avg_cost=avg,
                current_price=marks.get(instrument, avg),
                realized_pnl=pl,
            )
        return out

    async def _fetch_account(self) -> Account:
        """The account summary: balance as cash, NAV as equity, margin available as buying power."""
        _, payload = await self._request("GET", self._account_path("/summary"), what="account summary")
        account = payload["account"]
        return Account(
            account_id=str(account["id"]),
            currency=account.get("currency", "USD"),
            cash=float(account["balance"]),
            equity=float(account["NAV"]),
            buying_power=float(account["marginAvailable"]) if "marginAvailable" in account else None,
            venue="oanda",
            ts=self.clock.now(),
        )

    # ------------------------------------------------------------------ errors

    def _translate_error(self, exc: Exception) -> AlphaloomError | None:
        """httpx and JSON failures -> :class:`VenueUnavailableError` (retryable), named for OANDA."""
        if isinstance(exc, httpx.TimeoutException):
            return VenueUnavailableError(f"OANDA did not answer in time ({type(exc).__name__}).")
        if isinstance(exc, httpx.TransportError):
            return VenueUnavailableError(f"OANDA connection problem: {type(exc).__name__}: {exc}")
        if isinstance(exc, json.JSONDecodeError):
            return VenueUnavailableError(f"OANDA sent malformed JSON ({exc.msg}).")
        return None


# ---------------------------------------------------------------------- helpers


def _granularity(timeframe: str) -> str:
    try:
        return GRANULARITIES[timeframe]
    except KeyError:
        raise ConfigError(
            f"OANDA has no candle granularity for timeframe {timeframe!r}; supported: "
            f"{', '.join(GRANULARITIES)}."
        ) from None


def _fmt_time(ts: datetime) -> str:
    ts = ts.astimezone(UTC)
    return ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond:06d}000Z"


def _parse_time(text: str) -> datetime:
    """OANDA's RFC 3339 times carry nine fractional digits; datetime keeps six."""
    head, dot, frac = text.rstrip("Z").partition(".")
    micro = (frac + "000000")[:6] if dot else "000000"
    zone = "+00:00" if text.endswith("Z") else ""
    return datetime.fromisoformat(f"{head}.{micro}{zone}").astimezone(UTC)


def _floor(ts: datetime, step: timedelta) -> datetime:
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    return epoch + ((ts - epoch) // step) * step


def _decode(response: httpx.Response, what: str) -> dict[str, Any] | None:
    try:
        payload = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        logger.debug("OANDA %s: HTTP %d with a body that is not JSON", what, response.status_code)
        return None
    return payload if isinstance(payload, dict) else None


def _error_for(
    response: httpx.Response, payload: Mapping[str, Any] | None, what: str, env: str = "ALPHALOOM_OANDA_"
) -> AlphaloomError:
    status = response.status_code
    message = (payload or {}).get("errorMessage") or "(no readable error body)"
    code = (payload or {}).get("errorCode")
    detail = f"{message}" + (f" [{code}]" if code else "")
    where = f"OANDA {what}"
    if status == 401:
        return AuthenticationError(
            f"{where}: the access token was refused (HTTP 401: {detail}). Check {env}TOKEN and that it "
            "belongs to the configured environment (practice tokens do not work on live)."
        )
    if status == 403:
        return AuthenticationError(
            f"{where}: the token may not use this account (HTTP 403: {detail}). Check {env}ACCOUNT."
        )
    if status == 429:
        return RateLimitError(
            f"{where}: rate limited (HTTP 429: {detail}).",
            retry_after_s=parse_retry_after(response.headers.get("Retry-After")),
        )
    if status >= 500:
        return VenueUnavailableError(f"{where}: OANDA is unavailable (HTTP {status}: {detail}).")
    if status == 400 and "instrument" in str(message).lower():
        return UnknownSymbolError(f"{where}: OANDA does not know this instrument (HTTP 400: {detail}).")
    if status == 404:
        return ConnectorError(f"{where}: not found (HTTP 404: {detail}).")
    if status == 405:
        return ConnectorError(
            f"{where}: OANDA does not allow this method here (HTTP 405: {detail}); this is a connector bug."
        )
    return ConnectorError(f"{where}: OANDA refused the request (HTTP {status}: {detail}).")
