"""A local Robinhood server: the official Crypto Trading API and the unofficial equities/options endpoints.

Crypto Trading API (``https://trading.robinhood.com``), as documented: every request carries ``x-api-key``,
``x-timestamp`` (unix seconds) and ``x-signature`` = base64 Ed25519 signature of
``f"{api_key}{timestamp}{path}{method}{body}"`` (``path`` with its query string, ``body`` the raw JSON text or
empty). Missing headers answer 400 with the venue's plain-text message; an unknown key, a signature that does
not verify with the registered public key, or a timestamp more than ``signature_window_s`` (30 s) away from
the server's clock answer 401. Endpoints: ``accounts/``, ``holdings/`` (cursor pagination with ``next``),
``marketdata/best_bid_ask/`` (repeat ``symbol``), ``orders/`` (GET with filters and pagination, POST with
``client_order_id``), ``orders/{id}/`` and ``orders/{id}/cancel/``.

Unofficial endpoints (``https://api.robinhood.com``, the ones robin_stocks calls): ``/oauth2/token/``
(password grant, form-encoded), ``/quotes/``, ``/quotes/historicals/{symbol}/`` (interval/span/bounds, with
interpolated bars on market holidays), ``/instruments/``, ``/accounts/``, ``/orders/`` (``ref_id``),
``/positions/``, and ``/options/chains/``, ``/options/instruments/``, ``/marketdata/options/``,
``/options/orders/``, ``/options/positions/``. They take ``Authorization: Bearer <access token>``.

Client ids: with ``idempotent_client_ids`` (the documented crypto behaviour) a repeated ``client_order_id`` or
``ref_id`` returns the original order; turned off, the server creates a second order, so a fault test shows
that the connector alone prevents duplicates (:attr:`RobinhoodVenue.duplicate_orders`).
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlencode

from aiohttp import web
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from tests.data.connectors.servers.faults import FaultInjector

__all__ = ["RobinhoodVenue", "RobinhoodVenueConfig"]

CRYPTO = "/api/v1/crypto"
MISSING_HEADERS = (
    "Request missing required headers. Required headers: x-api-key, x-signature, x-timestamp. "
    "Please refer to API documentation for more information."
)
QUOTES_SERVED = web.RequestKey("quotes_served", list)  # quotes a best_bid_ask answer carried
_EDT = timezone(timedelta(hours=-4))  # the crypto API writes times with the New York offset
_SPANS = {"day": 1, "week": 7, "month": 31, "3month": 92, "year": 366, "5year": 5 * 366}
_MAX_SPAN = {"5minute": "week", "10minute": "week", "hour": "3month", "day": "5year", "week": "5year"}
_INTERVAL_S = {"5minute": 300, "10minute": 600, "hour": 3600, "day": 86400, "week": 7 * 86400}
_HOLIDAYS = {date(2024, 1, 1), date(2024, 1, 15), date(2024, 2, 19)}


def _seed(*parts: object) -> float:
    digest = hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()
    return int(digest[:12], 16) / 16**12


@dataclass
class RobinhoodVenueConfig:
    """State and behaviour of the local Robinhood venue.

    Parameters
    ----------
    api_key, public_key
        The crypto API key and the raw 32-byte Ed25519 public key registered for it.
    signature_window_s
        How far ``x-timestamp`` may be from the server's clock.
    username, password, access_token
        The unofficial API's login and the token it hands out.
    crypto, stocks
        Tradable crypto pairs and stocks/ETFs with their base prices.
    now
        The venue's clock for bars and quotes (``None``: follow the quote tape).
    tape_start, quote_wall_s
        Quote ``k`` of the tape carries ``tape_start + k`` seconds and is current ``k * quote_wall_s`` wall
        seconds after the server was built.
    page_size
        Results per page of paginated lists.
    idempotent_client_ids
        Return the original order for a repeated client id (documented for crypto) instead of creating one.
    """

    api_key: str = "rh-api-test"
    public_key: bytes = b""
    signature_window_s: float = 30.0
    username: str = "trader@example.com"
    password: str = "correct horse"
    access_token: str = "rh-access-test"
    crypto: Mapping[str, float] = field(
        default_factory=lambda: {"BTC-USD": 65_000.0, "ETH-USD": 3_500.0, "DOGE-USD": 0.15}
    )
    stocks: Mapping[str, float] = field(default_factory=lambda: {"AAPL": 180.0, "SPY": 510.0, "MSFT": 410.0})
    now: datetime | None = datetime(2024, 3, 6, 20, 0, tzinfo=UTC)
    tape_start: datetime = datetime(2024, 3, 6, 15, 0, tzinfo=UTC)
    quote_wall_s: float = 0.01
    page_size: int = 2
    idempotent_client_ids: bool = True
    buying_power: float = 100_000.0


class RobinhoodVenue:
    """The venue's state and its aiohttp application (crypto and unofficial paths on one server).

    Parameters
    ----------
    config
        Credentials, instruments, clock.
    faults
        Optional fault injector; ``on_delivered`` is wired to record which quotes really reached the client.
    """

    def __init__(self, config: RobinhoodVenueConfig | None = None, *, faults: FaultInjector | None = None):
        self.config = config or RobinhoodVenueConfig()
        self.faults = faults
        if faults is not None:
            faults.on_delivered = self._delivered
        self._public = (
            Ed25519PublicKey.from_public_bytes(self.config.public_key) if self.config.public_key else None
        )
        self._wall0 = time.monotonic()
        self.account_number = "RH-CRYPTO-0001"
        self.brokerage_account = "5QR00001"
        self.buying_power = self.config.buying_power
        self.holdings: dict[str, float] = {}
        self.crypto_orders: dict[str, dict[str, Any]] = {}
        self.stock_orders: dict[str, dict[str, Any]] = {}
        self.option_orders: dict[str, dict[str, Any]] = {}
        self.stock_positions: dict[str, list[float]] = {}  # instrument id -> [quantity, average price]
        self.option_positions: dict[
            str, list[float]
        ] = {}  # option id -> [contracts, average price per contract]
        self.created_by_client_id: Counter[str] = Counter()
        self.order_posts = 0
        self.auth_failures: Counter[str] = Counter()
        self.logins = 0
        self.delivered_quotes: list[tuple[str, str]] = []
        self.requests: list[tuple[str, str]] = []
        self.instruments = {
            sym: {
                "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"instrument/{sym}")),
                "symbol": sym,
                "type": "etp" if sym == "SPY" else "stock",
                "tradeable": True,
                "name": f"{sym} Inc." if sym != "SPY" else "SPDR S&P 500 ETF",
            }
            for sym in self.config.stocks
        }
        self.options = self._make_options()

    # ------------------------------------------------------------------ clock and prices

    def now(self) -> datetime:
        if self.config.now is not None:
            return self.config.now
        return self.config.tape_start + timedelta(seconds=self.tape_index())

    def tape_index(self) -> int:
        return int((time.monotonic() - self._wall0) / self.config.quote_wall_s)

    def crypto_quote(self, symbol: str, k: int) -> dict[str, str]:
        base = self.config.crypto[symbol]
        mid = base * (1 + 0.01 * math.sin(k / 40 + _seed(symbol) * 6))
        spread = 0.0025
        ts = (self.config.tape_start + timedelta(seconds=k)).astimezone(_EDT)
        return {
            "symbol": symbol,
            "price": f"{mid:.6f}",
            "bid_inclusive_of_sell_spread": f"{mid * (1 - spread):.6f}",
            "sell_spread": f"{spread}",
            "ask_inclusive_of_buy_spread": f"{mid * (1 + spread):.6f}",
            "buy_spread": f"{spread}",
            "timestamp": ts.isoformat(timespec="microseconds"),
        }

    def stock_price(self, symbol: str, t: datetime) -> float:
        base = self.config.stocks[symbol]
        x = t.timestamp() / 86400
        return round(base * (1 + 0.05 * math.sin(x / 20 + _seed(symbol) * 6) + 0.01 * math.sin(x * 3)), 4)

    def _current_crypto(self, symbol: str) -> dict[str, str]:
        k = self.tape_index() if self.config.now is None else 0
        return self.crypto_quote(symbol, k)

    # ------------------------------------------------------------------ app

    @property
    def app(self) -> web.Application:
        """A fresh aiohttp application serving this venue."""
        middlewares = [_json_errors, self._auth]
        if self.faults is not None:
            middlewares.insert(1, self.faults.middleware)
        app = web.Application(middlewares=middlewares)
        r = app.router
        r.add_get(f"{CRYPTO}/trading/accounts/", self._crypto_account)
        r.add_get(f"{CRYPTO}/trading/holdings/", self._holdings)
        r.add_get(f"{CRYPTO}/marketdata/best_bid_ask/", self._best_bid_ask)
        r.add_get(f"{CRYPTO}/trading/orders/", self._list_crypto_orders)
        r.add_post(f"{CRYPTO}/trading/orders/", self._create_crypto_order)
        r.add_get(f"{CRYPTO}/trading/orders/{{id}}/", self._get_crypto_order)
        r.add_post(f"{CRYPTO}/trading/orders/{{id}}/cancel/", self._cancel_crypto_order)
        r.add_post("/oauth2/token/", self._login)
        r.add_get("/quotes/", self._quotes)
        r.add_get("/quotes/historicals/{symbol}/", self._historicals)
        r.add_get("/instruments/", self._list_instruments)
        r.add_get("/instruments/{id}/", self._get_instrument)
        r.add_get("/accounts/", self._accounts)
        r.add_get("/orders/", self._list_stock_orders)
        r.add_post("/orders/", self._create_stock_order)
        r.add_post("/orders/{id}/cancel/", self._cancel_stock_order)
        r.add_get("/positions/", self._positions)
        r.add_get("/options/chains/", self._chains)
        r.add_get("/options/instruments/", self._option_instruments)
        r.add_get("/options/instruments/{id}/", self._get_option_instrument)
        r.add_get("/marketdata/options/", self._option_quotes)
        r.add_get("/options/orders/", self._list_option_orders)
        r.add_post("/options/orders/", self._create_option_order)
        r.add_post("/options/orders/{id}/cancel/", self._cancel_option_order)
        r.add_get("/options/positions/", self._option_positions)
        return app

    def _url(self, request: web.Request, path: str) -> str:
        return f"{request.scheme}://{request.host}{path}"

    @web.middleware
    async def _auth(self, request: web.Request, handler: Callable[..., Any]) -> web.StreamResponse:
        self.requests.append((request.method, request.path_qs))
        if request.path.startswith(CRYPTO):
            problem = await self._check_signature(request)
            if problem == "missing":
                return web.Response(status=400, text=MISSING_HEADERS)
            if problem:
                self.auth_failures[problem] += 1
                return _client_error(401, f"Invalid credentials: {problem}.")
        elif request.path != "/oauth2/token/" and (
            request.headers.get("Authorization") != f"Bearer {self.config.access_token}"
        ):
            self.auth_failures["token"] += 1
            return web.json_response({"detail": "Incorrect authentication credentials."}, status=401)
        return await handler(request)

    async def _check_signature(self, request: web.Request) -> str:
        key = request.headers.get("x-api-key")
        stamp = request.headers.get("x-timestamp")
        signature = request.headers.get("x-signature")
        if not key or not stamp or not signature:
            return "missing"
        if key != self.config.api_key or self._public is None:
            return "unknown API key"
        try:
            ts = int(stamp)
        except ValueError:
            return "x-timestamp is not unix seconds"
        if abs(time.time() - ts) > self.config.signature_window_s:
            return "timestamp expired"
        body = (await request.read()).decode()
        message = f"{key}{stamp}{request.path_qs}{request.method}{body}".encode()
        try:
            self._public.verify(base64.b64decode(signature, validate=True), message)
        except (InvalidSignature, ValueError):
            return "signature does not match"
        return ""

    def _delivered(self, request: web.Request) -> None:
        self.delivered_quotes.extend(request.get(QUOTES_SERVED, ()))

    def _page(self, request: web.Request, items: list[dict[str, Any]]) -> dict[str, Any]:
        offset = int(request.query.get("cursor", "0") or 0)
        size = min(int(request.query.get("limit", self.config.page_size)), 100)
        page = items[offset : offset + size]
        nxt = None
        if offset + size < len(items):
            params = [(k, v) for k, v in request.query.items() if k != "cursor"] + [
                ("cursor", str(offset + size))
            ]
            nxt = self._url(request, f"{request.path}?{urlencode(params)}")
        prev = None
        if offset > 0:
            params = [(k, v) for k, v in request.query.items() if k != "cursor"]
            params.append(("cursor", str(max(0, offset - size))))
            prev = self._url(request, f"{request.path}?{urlencode(params)}")
        return {"next": nxt, "previous": prev, "results": page}

    # ------------------------------------------------------------------ crypto

    async def _crypto_account(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "account_number": self.account_number,
                "status": "active",
                "buying_power": f"{self.buying_power:.2f}",
                "buying_power_currency": "USD",
            }
        )

    async def _holdings(self, request: web.Request) -> web.Response:
        wanted = set(request.query.getall("asset_code", []))
        items = [
            {
                "account_number": self.account_number,
                "asset_code": asset,
                "total_quantity": f"{qty:.8f}",
                "quantity_available_for_trading": f"{qty:.8f}",
            }
            for asset, qty in sorted(self.holdings.items())
            if qty and (not wanted or asset in wanted)
        ]
        return web.json_response(self._page(request, items))

    async def _best_bid_ask(self, request: web.Request) -> web.Response:
        symbols = request.query.getall("symbol", []) or sorted(self.config.crypto)
        unknown = [s for s in symbols if s not in self.config.crypto]
        if unknown:
            return _client_error(400, f"Invalid symbol(s): {', '.join(unknown)}.", attr="symbol")
        results = [self._current_crypto(s) for s in symbols]
        request[QUOTES_SERVED] = [(q["symbol"], q["timestamp"]) for q in results]
        return web.json_response({"results": results})

    def _crypto_order_view(self, order: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in order.items() if not k.startswith("_")}

    async def _list_crypto_orders(self, request: web.Request) -> web.Response:
        q = request.query
        items = list(self.crypto_orders.values())
        for key in ("client_order_id", "symbol", "side", "state", "type", "id"):
            if key in q:
                items = [o for o in items if o[key] == q[key]]
        if "created_at_start" in q:
            start = datetime.fromisoformat(q["created_at_start"])
            items = [o for o in items if datetime.fromisoformat(o["created_at"]) >= start]
        items.sort(key=lambda o: o["created_at"], reverse=True)
        return web.json_response(self._page(request, [self._crypto_order_view(o) for o in items]))

    async def _create_crypto_order(self, request: web.Request) -> web.Response:
        self.order_posts += 1
        try:
            body = json.loads(await request.read())
        except json.JSONDecodeError:
            return _client_error(400, "Request body is not valid JSON.")
        cid = str(body.get("client_order_id", ""))
        try:
            uuid.UUID(cid)
        except ValueError:
            return _client_error(400, "Must be a valid UUID.", attr="client_order_id")
        if self.config.idempotent_client_ids:
            for existing in self.crypto_orders.values():
                if existing["client_order_id"] == cid:
                    return web.json_response(self._crypto_order_view(existing), status=201)
        symbol, side, kind = body.get("symbol"), body.get("side"), body.get("type")
        if symbol not in self.config.crypto:
            return _client_error(400, f"Invalid symbol {symbol!r}.", attr="symbol")
        if side not in ("buy", "sell"):
            return _client_error(400, "Side must be buy or sell.", attr="side")
        configs = {
            "market": "market_order_config",
            "limit": "limit_order_config",
            "stop_loss": "stop_loss_order_config",
            "stop_limit": "stop_limit_order_config",
        }
        if kind not in configs or not isinstance(body.get(configs[kind]), dict):
            return _client_error(
                400, f"Order type {kind!r} needs {configs.get(kind, 'a config')}.", attr="type"
            )
        conf = body[configs[kind]]
        try:
            qty = float(conf["asset_quantity"])
        except (KeyError, ValueError):
            return _client_error(400, "asset_quantity is required.", attr="asset_quantity")
        if qty <= 0:
            return _client_error(400, "asset_quantity must be positive.", attr="asset_quantity")
        quote = self._current_crypto(symbol)
        price = float(
            quote["ask_inclusive_of_buy_spread" if side == "buy" else "bid_inclusive_of_sell_spread"]
        )
        asset = symbol.split("-")[0]
        if side == "buy" and kind == "market" and qty * price > self.buying_power:
            return _client_error(400, "Insufficient buying power.", attr="asset_quantity")
        if side == "sell" and kind == "market" and self.holdings.get(asset, 0.0) < qty - 1e-12:
            return _client_error(400, "Insufficient holdings.", attr="asset_quantity")
        now = datetime.now(UTC).astimezone(_EDT).isoformat(timespec="microseconds")
        order: dict[str, Any] = {
            "id": str(uuid.uuid4()),
            "account_number": self.account_number,
            "symbol": symbol,
            "client_order_id": cid,
            "side": side,
            "type": kind,
            "state": "open",
            "average_price": None,
            "filled_asset_quantity": "0.00000000",
            "created_at": now,
            "updated_at": now,
            "executions": [],
            configs[kind]: conf,
        }
        limit = float(conf.get("limit_price", 0) or 0)
        marketable = kind == "market" or (
            kind == "limit" and (price <= limit if side == "buy" else price >= limit)
        )
        if marketable:
            sign = 1 if side == "buy" else -1
            self.holdings[asset] = self.holdings.get(asset, 0.0) + sign * qty
            self.buying_power -= sign * qty * price
            order.update(
                state="filled",
                average_price=f"{price:.6f}",
                filled_asset_quantity=f"{qty:.8f}",
                executions=[{"effective_price": f"{price:.6f}", "quantity": f"{qty:.8f}", "timestamp": now}],
            )
        self.crypto_orders[order["id"]] = order
        self.created_by_client_id[cid] += 1
        return web.json_response(self._crypto_order_view(order), status=201)

    async def _get_crypto_order(self, request: web.Request) -> web.Response:
        order = self.crypto_orders.get(request.match_info["id"])
        if order is None:
            return _client_error(404, "Not found.")
        return web.json_response(self._crypto_order_view(order))

    async def _cancel_crypto_order(self, request: web.Request) -> web.Response:
        order = self.crypto_orders.get(request.match_info["id"])
        if order is None:
            return _client_error(404, "Not found.")
        if order["state"] not in ("open", "partially_filled"):
            return _client_error(400, f"Order is {order['state']} and cannot be canceled.")
        order["state"] = "canceled"
        order["updated_at"] = datetime.now(UTC).astimezone(_EDT).isoformat(timespec="microseconds")
        return web.Response(text=f"Cancel request was submitted for order {order['id']}")

    # ------------------------------------------------------------------ unofficial: login and market data

    async def _login(self, request: web.Request) -> web.Response:
        form = await request.post()
        if form.get("grant_type") != "password" or not form.get("client_id"):
            return web.json_response({"detail": "Invalid grant type or client."}, status=400)
        if form.get("username") != self.config.username or form.get("password") != self.config.password:
            return web.json_response({"detail": "Unable to log in with provided credentials."}, status=400)
        self.logins += 1
        return web.json_response(
            {
                "access_token": self.config.access_token,
                "expires_in": 734000,
                "token_type": "Bearer",
                "scope": "internal",
                "refresh_token": "rh-refresh-test",
            }
        )

    def _instrument_view(self, request: web.Request, sym: str) -> dict[str, Any]:
        inst = self.instruments[sym]
        return {**inst, "url": self._url(request, f"/instruments/{inst['id']}/")}

    async def _list_instruments(self, request: web.Request) -> web.Response:
        sym = request.query.get("symbol", "")
        items = [self._instrument_view(request, sym)] if sym in self.instruments else []
        return web.json_response({"next": None, "previous": None, "results": items})

    async def _get_instrument(self, request: web.Request) -> web.Response:
        for sym, inst in self.instruments.items():
            if inst["id"] == request.match_info["id"]:
                return web.json_response(self._instrument_view(request, sym))
        return web.json_response({"detail": "Not found."}, status=404)

    async def _quotes(self, request: web.Request) -> web.Response:
        symbols = [s for s in request.query.get("symbols", "").split(",") if s]
        now = self.now()
        results: list[dict[str, Any] | None] = []
        for sym in symbols:
            if sym not in self.config.stocks:
                results.append(None)
                continue
            last = self.stock_price(sym, now)
            results.append(
                {
                    "symbol": sym,
                    "bid_price": f"{last - 0.01:.4f}",
                    "bid_size": 300,
                    "ask_price": f"{last + 0.01:.4f}",
                    "ask_size": 200,
                    "last_trade_price": f"{last:.4f}",
                    "updated_at": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "trading_halted": False,
                    "has_traded": True,
                    "instrument": self._url(request, f"/instruments/{self.instruments[sym]['id']}/"),
                    "instrument_id": self.instruments[sym]["id"],
                }
            )
        return web.json_response({"results": results})

    async def _historicals(self, request: web.Request) -> web.Response:
        sym = request.match_info["symbol"]
        if sym not in self.config.stocks:
            return web.json_response({"detail": "Not found."}, status=404)
        q = request.query
        interval, span, bounds = q.get("interval", "day"), q.get("span", "year"), q.get("bounds", "regular")
        if interval not in _INTERVAL_S:
            return web.json_response({"interval": [f'"{interval}" is not a valid choice.']}, status=400)
        if span not in _SPANS or _SPANS[span] > _SPANS[_MAX_SPAN[interval]]:
            return web.json_response(
                {"span": [f"Invalid span {span!r} for interval {interval!r}."]}, status=400
            )
        step = _INTERVAL_S[interval]
        now = self.now()
        start = now - timedelta(days=_SPANS[span])
        rows = []
        if step >= 86400:
            day = start.date()
            while day < now.date():
                if day.weekday() < 5 and (step == 86400 or day.weekday() == 0):
                    rows.append(self._bar(sym, datetime(day.year, day.month, day.day, tzinfo=UTC), step, day))
                day += timedelta(days=1)
        else:
            t = datetime.fromtimestamp(math.ceil(start.timestamp() / step) * step, UTC)
            while t + timedelta(seconds=step) <= now:
                session = t.hour * 60 + t.minute
                if t.weekday() < 5 and 14 * 60 + 30 <= session < 21 * 60:
                    rows.append(self._bar(sym, t, step, t.date()))
                t += timedelta(seconds=step)
        return web.json_response(
            {
                "quote": self._url(request, f"/quotes/{sym}/"),
                "symbol": sym,
                "interval": interval,
                "span": span,
                "bounds": bounds,
                "instrument": self._url(request, f"/instruments/{self.instruments[sym]['id']}/"),
                "historicals": rows,
            }
        )

    def _bar(self, sym: str, t: datetime, step: int, day: date) -> dict[str, Any]:
        o = self.stock_price(sym, t)
        c = self.stock_price(sym, t + timedelta(seconds=step * 0.99))
        holiday = day in _HOLIDAYS
        if holiday:  # Robinhood fills market holidays with interpolated bars at the previous close
            o = c
        wiggle = 0.0 if holiday else 0.004 * o * _seed(sym, t.isoformat())
        return {
            "begins_at": t.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "open_price": f"{o:.4f}",
            "close_price": f"{c:.4f}",
            "high_price": f"{max(o, c) + wiggle:.4f}",
            "low_price": f"{min(o, c) - wiggle:.4f}",
            "volume": 0 if holiday else int(1e6 * (1 + _seed(sym, "v", t.isoformat()))),
            "session": "reg",
            "interpolated": holiday,
        }

    # ------------------------------------------------------------------ unofficial: accounts and orders

    async def _accounts(self, request: web.Request) -> web.Response:
        account = {
            "url": self._url(request, f"/accounts/{self.brokerage_account}/"),
            "account_number": self.brokerage_account,
            "type": "margin",
            "cash": f"{self.buying_power:.4f}",
            "buying_power": f"{self.buying_power:.4f}",
            "portfolio_cash": f"{self.buying_power:.4f}",
            "deactivated": False,
        }
        return web.json_response({"next": None, "previous": None, "results": [account]})

    def _symbol_of(self, instrument_url: str) -> str | None:
        for sym, inst in self.instruments.items():
            if instrument_url.rstrip("/").endswith(inst["id"]):
                return sym
        return None

    async def _create_stock_order(self, request: web.Request) -> web.Response:
        self.order_posts += 1
        body = await request.json()
        ref = str(body.get("ref_id", ""))
        if self.config.idempotent_client_ids:
            for existing in self.stock_orders.values():
                if existing["ref_id"] == ref:
                    return web.json_response(existing, status=201)
        sym = self._symbol_of(str(body.get("instrument", "")))
        if sym is None or body.get("symbol") != sym:
            return web.json_response({"detail": "Invalid instrument."}, status=400)
        if body.get("account") != self._url(request, f"/accounts/{self.brokerage_account}/"):
            return web.json_response({"detail": "Invalid account."}, status=400)
        side, kind, trigger = body.get("side"), body.get("type"), body.get("trigger", "immediate")
        qty = float(body.get("quantity", 0))
        if side not in ("buy", "sell") or kind not in ("market", "limit") or qty <= 0:
            return web.json_response({"detail": "Invalid side, type or quantity."}, status=400)
        if body.get("time_in_force") not in ("gfd", "gtc", "ioc", "opg"):
            return web.json_response({"time_in_force": ["Invalid time in force."]}, status=400)
        now = datetime.now(UTC)  # orders happen in real time; bars and quotes follow the venue clock
        last = self.stock_price(sym, self.now())
        order = {
            "id": str(uuid.uuid4()),
            "ref_id": ref,
            "url": "",
            "account": body["account"],
            "instrument": body["instrument"],
            "instrument_id": self.instruments[sym]["id"],
            "side": side,
            "type": kind,
            "trigger": trigger,
            "quantity": f"{qty:.8f}",
            "price": body.get("price"),
            "stop_price": body.get("stop_price"),
            "time_in_force": body["time_in_force"],
            "state": "confirmed",
            "cumulative_quantity": "0.00000000",
            "average_price": None,
            "executions": [],
            "created_at": now.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "updated_at": now.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        }
        order["url"] = self._url(request, f"/orders/{order['id']}/")
        order["cancel"] = self._url(request, f"/orders/{order['id']}/cancel/")
        limit = float(body["price"]) if kind == "limit" and body.get("price") else None
        if trigger == "immediate" and (limit is None or (last <= limit if side == "buy" else last >= limit)):
            fill = last if limit is None else limit
            self._book_stock(self.instruments[sym]["id"], qty if side == "buy" else -qty, fill)
            order.update(
                state="filled",
                cumulative_quantity=f"{qty:.8f}",
                average_price=f"{fill:.4f}",
                cancel=None,
                executions=[
                    {"id": str(uuid.uuid4()), "price": f"{fill:.4f}", "quantity": f"{qty:.8f}",
                     "timestamp": order["created_at"]}
                ],
            )  # fmt: skip
        self.stock_orders[order["id"]] = order
        self.created_by_client_id[ref] += 1
        return web.json_response(order, status=201)

    def _book_stock(self, instrument_id: str, dq: float, price: float) -> None:
        pos = self.stock_positions.setdefault(instrument_id, [0.0, 0.0])
        q0, q1 = pos[0], pos[0] + dq
        if q1 and (q0 == 0 or (q0 > 0) == (dq > 0)):
            pos[1] = (abs(q0) * pos[1] + abs(dq) * price) / abs(q1)
        pos[0] = q1
        self.buying_power -= dq * price

    def _order_filter(self, request: web.Request, orders: list[dict[str, Any]]) -> list[dict[str, Any]]:
        gte = request.query.get("updated_at[gte]")
        if gte:
            since = _parse(gte)
            orders = [o for o in orders if _parse(o["updated_at"]) >= since]
        return sorted(orders, key=lambda o: o["created_at"], reverse=True)

    async def _list_stock_orders(self, request: web.Request) -> web.Response:
        return web.json_response(
            self._page(request, self._order_filter(request, list(self.stock_orders.values())))
        )

    async def _cancel_stock_order(self, request: web.Request) -> web.Response:
        order = self.stock_orders.get(request.match_info["id"])
        if order is None:
            return web.json_response({"detail": "Not found."}, status=404)
        if order["state"] not in ("queued", "unconfirmed", "confirmed", "partially_filled"):
            return web.json_response({"detail": "Order cannot be cancelled."}, status=400)
        order.update(state="cancelled", cancel=None, updated_at=_stamp())
        return web.json_response({})

    async def _positions(self, request: web.Request) -> web.Response:
        items = []
        for instrument_id, (qty, avg) in sorted(self.stock_positions.items()):
            if request.query.get("nonzero") == "true" and not qty:
                continue
            items.append(
                {
                    "url": self._url(request, f"/positions/{self.brokerage_account}/{instrument_id}/"),
                    "instrument": self._url(request, f"/instruments/{instrument_id}/"),
                    "instrument_id": instrument_id,
                    "account": self._url(request, f"/accounts/{self.brokerage_account}/"),
                    "quantity": f"{qty:.8f}",
                    "average_buy_price": f"{avg:.4f}",
                }
            )
        return web.json_response(self._page(request, items))

    # ------------------------------------------------------------------ unofficial: options

    def _make_options(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for sym, base in self.config.stocks.items():
            for expiry in ("2024-03-15", "2024-04-19"):
                for k in range(-2, 3):
                    strike = round(base * (1 + 0.05 * k) / 5) * 5
                    for kind in ("call", "put"):
                        oid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"option/{sym}/{expiry}/{strike}/{kind}"))
                        out[oid] = {
                            "id": oid,
                            "chain_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"chain/{sym}")),
                            "chain_symbol": sym,
                            "expiration_date": expiry,
                            "strike_price": f"{strike:.4f}",
                            "type": kind,
                            "state": "active",
                            "tradability": "tradable",
                        }
        return out

    def _option_view(self, request: web.Request, option: dict[str, Any]) -> dict[str, Any]:
        return {**option, "url": self._url(request, f"/options/instruments/{option['id']}/")}

    def option_mark(self, option: Mapping[str, Any]) -> float:
        spot = self.stock_price(option["chain_symbol"], self.now())
        strike = float(option["strike_price"])
        intrinsic = max(0.0, spot - strike) if option["type"] == "call" else max(0.0, strike - spot)
        return round(intrinsic + 0.02 * spot, 2)

    async def _chains(self, request: web.Request) -> web.Response:
        ids = request.query.get("equity_instrument_ids", "").split(",")
        results = []
        for sym, inst in self.instruments.items():
            if inst["id"] in ids:
                expiries = sorted(
                    {o["expiration_date"] for o in self.options.values() if o["chain_symbol"] == sym}
                )
                results.append(
                    {
                        "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"chain/{sym}")),
                        "symbol": sym,
                        "can_open_position": True,
                        "expiration_dates": expiries,
                        "trade_value_multiplier": "100.0000",
                        "underlying_instruments": [{"id": inst["id"], "instrument": self._url(request, "/")}],
                    }
                )
        return web.json_response({"next": None, "previous": None, "results": results})

    async def _option_instruments(self, request: web.Request) -> web.Response:
        q = request.query
        items = [o for o in self.options.values() if o["chain_id"] == q.get("chain_id")]
        if "expiration_dates" in q:
            wanted = set(q["expiration_dates"].split(","))
            items = [o for o in items if o["expiration_date"] in wanted]
        for key in ("type", "state", "strike_price"):
            if key in q:
                items = [o for o in items if o[key] == q[key]]
        items.sort(key=lambda o: (o["expiration_date"], float(o["strike_price"]), o["type"]))
        return web.json_response(self._page(request, [self._option_view(request, o) for o in items]))

    async def _get_option_instrument(self, request: web.Request) -> web.Response:
        option = self.options.get(request.match_info["id"])
        if option is None:
            return web.json_response({"detail": "Not found."}, status=404)
        return web.json_response(self._option_view(request, option))

    async def _option_quotes(self, request: web.Request) -> web.Response:
        results = []
        for url in request.query.get("instruments", "").split(","):
            option = self.options.get(url.rstrip("/").rsplit("/", 1)[-1])
            if option is None:
                results.append(None)
                continue
            mark = self.option_mark(option)
            results.append(
                {
                    "instrument": url,
                    "instrument_id": option["id"],
                    "bid_price": f"{mark - 0.05:.2f}",
                    "ask_price": f"{mark + 0.05:.2f}",
                    "mark_price": f"{mark:.2f}",
                    "updated_at": self.now().strftime("%Y-%m-%dT%H:%M:%SZ"),
                }
            )
        return web.json_response({"results": results})

    async def _create_option_order(self, request: web.Request) -> web.Response:
        self.order_posts += 1
        body = await request.json()
        ref = str(body.get("ref_id", ""))
        if self.config.idempotent_client_ids:
            for existing in self.option_orders.values():
                if existing["ref_id"] == ref:
                    return web.json_response(existing, status=201)
        legs = body.get("legs") or []
        if len(legs) != 1 or body.get("type") != "limit" or not body.get("price"):
            return web.json_response(
                {"detail": "Option orders need one leg, type limit and a price."}, status=400
            )
        leg = legs[0]
        option = self.options.get(str(leg.get("option", "")).rstrip("/").rsplit("/", 1)[-1])
        if option is None:
            return web.json_response({"detail": "Invalid option instrument."}, status=400)
        qty, price = float(body["quantity"]), float(body["price"])
        now = _stamp()
        order = {
            "id": str(uuid.uuid4()),
            "ref_id": ref,
            "chain_symbol": option["chain_symbol"],
            "direction": body.get("direction"),
            "legs": [{**leg, "id": str(uuid.uuid4())}],
            "type": "limit",
            "trigger": body.get("trigger", "immediate"),
            "time_in_force": body.get("time_in_force", "gfd"),
            "price": f"{price:.2f}",
            "quantity": f"{qty:.5f}",
            "processed_quantity": "0.00000",
            "premium": f"{price * 100:.2f}",
            "processed_premium": "0.00",
            "state": "confirmed",
            "created_at": now,
            "updated_at": now,
        }
        mark = self.option_mark(option)
        buy = leg.get("side") == "buy"
        if (buy and price >= mark + 0.05) or (not buy and price <= mark - 0.05):
            pos = self.option_positions.setdefault(option["id"], [0.0, 0.0])
            dq = qty if buy else -qty
            if pos[0] + dq and (pos[0] == 0 or (pos[0] > 0) == (dq > 0)):
                pos[1] = (abs(pos[0]) * pos[1] + qty * price * 100) / abs(pos[0] + dq)
            pos[0] += dq
            self.buying_power -= dq * price * 100
            order.update(
                state="filled", processed_quantity=f"{qty:.5f}", processed_premium=f"{price * 100 * qty:.2f}"
            )
        self.option_orders[order["id"]] = order
        self.created_by_client_id[ref] += 1
        return web.json_response(order, status=201)

    async def _list_option_orders(self, request: web.Request) -> web.Response:
        return web.json_response(
            self._page(request, self._order_filter(request, list(self.option_orders.values())))
        )

    async def _cancel_option_order(self, request: web.Request) -> web.Response:
        order = self.option_orders.get(request.match_info["id"])
        if order is None:
            return web.json_response({"detail": "Not found."}, status=404)
        if order["state"] not in ("queued", "unconfirmed", "confirmed", "partially_filled"):
            return web.json_response({"detail": "Order cannot be cancelled."}, status=400)
        order.update(state="cancelled", updated_at=_stamp())
        return web.json_response({})

    async def _option_positions(self, request: web.Request) -> web.Response:
        items = []
        for oid, (qty, avg) in sorted(self.option_positions.items()):
            if not qty:
                continue
            option = self.options[oid]
            items.append(
                {
                    "option": self._url(request, f"/options/instruments/{oid}/"),
                    "option_id": oid,
                    "chain_symbol": option["chain_symbol"],
                    "quantity": f"{abs(qty):.4f}",
                    "type": "long" if qty > 0 else "short",
                    "average_price": f"{avg:.4f}",
                    "trade_value_multiplier": "100.0000",
                }
            )
        return web.json_response(self._page(request, items))

    # ------------------------------------------------------------------ inspection

    @property
    def duplicate_orders(self) -> int:
        """Orders created beyond the first for the same client id (0 when idempotency holds)."""
        return sum(n - 1 for n in self.created_by_client_id.values() if n > 1)


def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _client_error(status: int, detail: str, attr: str | None = None) -> web.Response:
    kind = "validation_error" if status == 400 else "client_error"
    return web.json_response({"type": kind, "errors": [{"detail": detail, "attr": attr}]}, status=status)


@web.middleware
async def _json_errors(request: web.Request, handler: Callable[..., Any]) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _client_error(exc.status, exc.reason)
