"""A local Coinbase Advanced Trade server for connector tests: the REST protocol ccxt speaks, on 127.0.0.1.

It answers every endpoint ccxt's ``coinbase`` class calls in the connector's flows, with the shapes Coinbase
documents and ccxt parses:

==========================================================  =============================================
``GET  /v2/currencies``, ``/v2/currencies/crypto``           currencies (``load_markets``)
``GET  /v2/exchange-rates``                                  rates (``load_markets``)
``GET  /api/v3/brokerage/market/products``                   spot products; ``?product_type=FUTURE`` the
                                                             perpetual-style futures
``GET  /api/v3/brokerage/transaction_summary``               fee tier (signed ``load_markets``)
``GET  /api/v3/brokerage/market/products/{id}/candles``      ``start``/``end`` (unix s, inclusive),
                                                             ``granularity``; <= 350 candles, newest first
``GET  /api/v3/brokerage/market/products/{id}/ticker``       last trade, ``best_bid``/``best_ask``
``GET  /api/v3/brokerage/market/product_book``               top of book
``GET  /api/v3/brokerage/best_bid_ask``                      top of book for several ``product_ids``
``POST /api/v3/brokerage/orders``                            create; deduplicated on ``client_order_id``
``GET  /api/v3/brokerage/orders/historical/batch``           list (filters, ``cursor`` paging, newest first)
``GET  /api/v3/brokerage/orders/historical/{order_id}``      one order
``POST /api/v3/brokerage/orders/batch_cancel``               cancel
``GET  /api/v3/brokerage/accounts``                          balances (``cursor`` paging)
``GET  /api/v3/brokerage/cfm/positions``                     futures positions
==========================================================  =============================================

Signed endpoints check the credentials the way Coinbase does: a CDP key (``organizations/.../apiKeys/...``
with an EC P-256 private key) sends ``Authorization: Bearer <JWT>`` signed ES256 whose ``uri`` claim names the
method, host and path; a legacy key sends ``CB-ACCESS-KEY``/``CB-ACCESS-SIGN``/``CB-ACCESS-TIMESTAMP`` with an
HMAC-SHA256 of ``timestamp + method + path + body``. Bad credentials get ``401 Unauthorized``.

Market data is real where the package ships it: ``ONE_DAY`` candles of BTC-USD, ETH-USD and LTC-USD are the
Bitstamp bars of ``load_sample("crypto_daily")`` (2014-2020). Intraday candles, tickers and books come from a
deterministic synthetic path driven by the server's clock (which tests may accelerate), and, as on the real
venue, the candle still in progress is served too.

:class:`CoinbaseVenue` holds the venue's state and builds the aiohttp application; run it with
:class:`~tests.data.connectors.servers.LocalServer` (``venue.serve()``). Faults come from the shared
:class:`~tests.data.connectors.servers.faults.FaultInjector`, placed in front of authentication like a load
balancer: 503 and 429 (with ``Retry-After``) before the work is done; 500, slow, truncated, garbled or dropped
answers after it, so a client that simply resent a lost order would create a duplicate. Injected error
bodies use Coinbase's error format.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import secrets
import time
import uuid
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pandas as pd
from aiohttp import web
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from tests.data.connectors.servers import LocalServer
from tests.data.connectors.servers.faults import FaultInjector, FaultPlan

from alphaloom.data.sample import load_sample

__all__ = [
    "GRANULARITY_S",
    "AcceleratedClock",
    "CdpKey",
    "CoinbaseVenue",
    "HmacKey",
    "ServerStats",
    "coinbase_error_body",
    "coinbase_faults",
]

#: Coinbase's candle granularities and their length in seconds.
GRANULARITY_S: dict[str, int] = {
    "ONE_MINUTE": 60,
    "FIVE_MINUTE": 300,
    "FIFTEEN_MINUTE": 900,
    "THIRTY_MINUTE": 1800,
    "ONE_HOUR": 3600,
    "TWO_HOUR": 7200,
    "SIX_HOUR": 21600,
    "ONE_DAY": 86400,
}
MAX_CANDLES = 350
TAKER_FEE = 0.006
MAKER_FEE = 0.004

_SPOT = {
    # product id: (base, base name, sample symbol, synthetic level, base increment)
    "BTC-USD": ("BTC", "Bitcoin", "BTCUSD", 29000.0, "0.00000001"),
    "ETH-USD": ("ETH", "Ethereum", "ETHUSD", 1800.0, "0.00000001"),
    "LTC-USD": ("LTC", "Litecoin", "LTCUSD", 90.0, "0.00000001"),
}
_FUTURES = {
    # product id: (root unit, display name, contract size, synthetic level)
    "BIP-20DEC30-CDE": ("BTC", "BTC PERP", "0.01", 29000.0),
    "ETP-20DEC30-CDE": ("ETH", "ETH PERP", "0.1", 1800.0),
}
_INITIAL_BALANCES = {"USD": 1_000_000.0, "BTC": 2.0, "ETH": 10.0, "LTC": 0.0}


def _fmt(x: float) -> str:
    # repr round-trips a float exactly, so a client parsing it gets the very same number.
    return repr(float(x))


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _b64url_decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


class AcceleratedClock:
    """Wall time that runs ``speed`` times faster from ``start``; share it between server and connector.

    ``now()`` makes it a :class:`alphaloom.core.clock.Clock`; ``time()`` gives epoch seconds.
    """

    def __init__(self, start: datetime, speed: float = 1.0) -> None:
        self._start = start.timestamp()
        self._t0 = time.monotonic()
        self.speed = speed

    def time(self) -> float:
        return self._start + (time.monotonic() - self._t0) * self.speed

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.time(), UTC)


@dataclass(frozen=True)
class CdpKey:
    """A Coinbase Developer Platform API key: a name and an EC P-256 private key in PEM."""

    name: str
    private_pem: str

    @classmethod
    def generate(cls) -> CdpKey:
        key = ec.generate_private_key(ec.SECP256R1())
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        ).decode()
        name = f"organizations/{uuid.uuid4()}/apiKeys/{uuid.uuid4()}"
        return cls(name=name, private_pem=pem)

    def public_key(self) -> ec.EllipticCurvePublicKey:
        key = serialization.load_pem_private_key(self.private_pem.encode(), password=None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return key.public_key()


@dataclass(frozen=True)
class HmacKey:
    """A legacy Coinbase API key signed with HMAC-SHA256."""

    key: str
    secret: str

    @classmethod
    def generate(cls) -> HmacKey:
        # 64 hex characters: not 88 long and no trailing '=', so ccxt does not take it for an Ed25519 key.
        return cls(key=secrets.token_hex(8), secret=secrets.token_hex(32))


def coinbase_error_body(status: int) -> dict[str, object]:
    """An injected error in Coinbase's formats: ``errors[]`` for 429, gRPC-style for 5xx."""
    if status == 429:
        return {"errors": [{"id": "rate_limit_exceeded", "message": "Too many requests"}]}
    return {"error": "INTERNAL", "code": 13, "message": f"injected fault: HTTP {status}", "details": []}


def coinbase_faults(
    failure_rate: float, *, seed: int = 0, slow_delay_s: float = 0.5, **kwargs: object
) -> FaultInjector:
    """A :class:`FaultInjector` whose error bodies look like Coinbase's."""
    plan = FaultPlan(
        failure_rate=failure_rate,
        seed=seed,
        slow_delay_s=slow_delay_s,
        error_body=coinbase_error_body,
        **kwargs,
    )
    return FaultInjector(plan)


@dataclass
class ServerStats:
    """What the server saw; the fault-injection tests quote these."""

    requests: int = 0
    auth_failures: int = 0
    orders_created: int = 0
    create_requests: int = 0
    deduplicated_creates: int = 0
    candle_requests: int = 0
    hosts: set[str] = field(default_factory=set)
    paths: Counter[str] = field(default_factory=Counter)


class CoinbaseVenue:
    """The venue's state and handlers: ``with venue.serve() as server:``, then use ``server.url``.

    Parameters
    ----------
    cdp_key, hmac_key
        Accepted credentials (either or both). Signed endpoints refuse requests when neither is set.
    faults
        Fault injection in front of authentication; ``None`` for a healthy venue.
    clock
        Epoch seconds; the real time by default, an :class:`AcceleratedClock`'s ``time`` in stream tests.
    dedup_client_order_ids
        Return the existing order when a ``client_order_id`` is reused, as Coinbase documents. Turn it off
        to prove a client never resends an order on its own.
    accounts_page_size
        Accounts per page, so clients must follow the cursor.
    echo_auth_in_errors
        Answer a refused request with a 401 page that echoes its headers (as some proxies do), to check that
        clients mask credentials in the errors they raise.
    """

    def __init__(
        self,
        *,
        cdp_key: CdpKey | None = None,
        hmac_key: HmacKey | None = None,
        faults: FaultInjector | None = None,
        clock: Callable[[], float] = time.time,
        dedup_client_order_ids: bool = True,
        accounts_page_size: int = 2,
        echo_auth_in_errors: bool = False,
    ) -> None:
        self.cdp_key = cdp_key
        self.hmac_key = hmac_key
        self._cdp_public = cdp_key.public_key() if cdp_key else None
        self.faults = faults
        self.clock = clock
        self.dedup_client_order_ids = dedup_client_order_ids
        self.accounts_page_size = accounts_page_size
        self.echo_auth_in_errors = echo_auth_in_errors
        self.stats = ServerStats()
        self.orders: list[dict[str, Any]] = []  # in creation order
        self._orders_by_id: dict[str, dict[str, Any]] = {}
        self.balances = dict(_INITIAL_BALANCES)
        self.holds: dict[str, float] = dict.fromkeys(_INITIAL_BALANCES, 0.0)
        self.futures_positions: dict[str, dict[str, float]] = {}
        self._account_ids = {c: str(uuid.uuid5(uuid.NAMESPACE_OID, c)) for c in _INITIAL_BALANCES}
        self._daily = self._load_daily()

    # ------------------------------------------------------------------ serving

    def app(self) -> web.Application:
        """The aiohttp application: bookkeeping, then faults, then authentication, then the endpoints."""
        middlewares = [self._record]
        if self.faults is not None:
            middlewares.append(self.faults.middleware)
        middlewares.append(self._auth)
        app = web.Application(middlewares=middlewares)
        app.router.add_get("/v2/currencies", self._currencies)
        app.router.add_get("/v2/currencies/crypto", self._currencies_crypto)
        app.router.add_get("/v2/exchange-rates", self._exchange_rates)
        app.router.add_get("/api/v3/brokerage/market/products", self._products)
        app.router.add_get("/api/v3/brokerage/market/products/{product_id}/candles", self._candles)
        app.router.add_get("/api/v3/brokerage/market/products/{product_id}/ticker", self._ticker)
        app.router.add_get("/api/v3/brokerage/market/product_book", self._product_book)
        app.router.add_get("/api/v3/brokerage/transaction_summary", self._transaction_summary)
        app.router.add_get("/api/v3/brokerage/best_bid_ask", self._best_bid_ask)
        app.router.add_post("/api/v3/brokerage/orders", self._create_order)
        app.router.add_get("/api/v3/brokerage/orders/historical/batch", self._list_orders)
        app.router.add_get("/api/v3/brokerage/orders/historical/{order_id}", self._get_order)
        app.router.add_post("/api/v3/brokerage/orders/batch_cancel", self._batch_cancel)
        app.router.add_get("/api/v3/brokerage/accounts", self._accounts)
        app.router.add_get("/api/v3/brokerage/cfm/positions", self._cfm_positions)
        return app

    def serve(self) -> LocalServer:
        """A :class:`LocalServer` for this venue (a context manager; ``.url`` once started)."""
        return LocalServer(self.app())

    # ------------------------------------------------------------------ helpers for tests

    def orders_per_client_id(self) -> Counter[str]:
        """How many venue orders each client order id has (more than one is a duplicate)."""
        return Counter(o["client_order_id"] for o in self.orders)

    def duplicate_orders(self) -> int:
        """Orders beyond the first for any client order id."""
        return sum(n - 1 for n in self.orders_per_client_id().values() if n > 1)

    def price(self, product_id: str, ts: float | None = None) -> float:
        """The synthetic traded price of ``product_id`` at epoch second ``ts`` (now by default)."""
        ts = self.clock() if ts is None else ts
        return self._path(product_id, ts)

    def candle(self, product_id: str, granularity_s: int, start: int) -> dict[str, str] | None:
        """The candle opening at ``start`` as the server serves it (``None`` before it opens)."""
        now = self.clock()
        if start > now:
            return None
        return self._synthetic_candle(product_id, granularity_s, start, now)

    # ------------------------------------------------------------------ middleware: faults, auth, stats

    @web.middleware
    async def _record(self, request: web.Request, handler: Callable[..., Any]) -> web.StreamResponse:
        self.stats.requests += 1
        self.stats.hosts.add(request.host)
        self.stats.paths[request.path] += 1
        return await handler(request)

    @web.middleware
    async def _auth(self, request: web.Request, handler: Callable[..., Any]) -> web.StreamResponse:
        if self._is_private(request.path):
            problem = await self._authenticate(request)
            if problem is not None:
                self.stats.auth_failures += 1
                if self.echo_auth_in_errors:
                    # Some proxies echo request headers in their error pages; clients must not repeat them.
                    echoed = "; ".join(f"{k}: {v}" for k, v in request.headers.items())
                    return web.Response(status=401, text=f"Unauthorized ({problem}); request: {echoed}")
                return web.Response(status=401, text="Unauthorized\n")
        return await handler(request)

    @staticmethod
    def _is_private(path: str) -> bool:
        return path.startswith("/api/v3/brokerage/") and not path.startswith("/api/v3/brokerage/market/")

    async def _authenticate(self, request: web.Request) -> str | None:
        auth = request.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            return self._check_jwt(request, auth.removeprefix("Bearer "))
        if "CB-ACCESS-KEY" in request.headers:
            return await self._check_hmac(request)
        return "no credentials"

    def _check_jwt(self, request: web.Request, token: str) -> str | None:
        if self.cdp_key is None or self._cdp_public is None:
            return "CDP keys are not accepted"
        try:
            head_b64, claims_b64, sig_b64 = token.split(".")
            header = json.loads(_b64url_decode(head_b64))
            claims = json.loads(_b64url_decode(claims_b64))
            signature = _b64url_decode(sig_b64)
        except (ValueError, json.JSONDecodeError):
            return "malformed JWT"
        if header.get("alg") != "ES256" or header.get("kid") != self.cdp_key.name or not header.get("nonce"):
            return "bad JWT header"
        if len(signature) != 64:
            return "bad signature length"
        der = encode_dss_signature(
            int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
        )
        try:
            self._cdp_public.verify(der, f"{head_b64}.{claims_b64}".encode(), ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            return "bad signature"
        now = time.time()  # token lifetimes are wall-clock, whatever the market clock does
        if claims.get("sub") != self.cdp_key.name or claims.get("iss") != "coinbase-cloud":
            return "bad subject or issuer"
        if "retail_rest_api_proxy" not in claims.get("aud", []):
            return "bad audience"
        if not (claims.get("nbf", math.inf) - 5 <= now <= claims.get("exp", -math.inf)):
            return "expired token"
        uri = str(claims.get("uri", ""))
        method, _, target = uri.partition(" ")
        target = target.removeprefix("https://").removeprefix("http://")
        if method != request.method or target != f"{request.host}{request.path}":
            return f"token is for {uri!r}"
        return None

    async def _check_hmac(self, request: web.Request) -> str | None:
        if self.hmac_key is None:
            return "legacy keys are not accepted"
        if request.headers.get("CB-ACCESS-KEY") != self.hmac_key.key:
            return "unknown key"
        stamp = request.headers.get("CB-ACCESS-TIMESTAMP", "")
        if not stamp.isdigit() or abs(int(stamp) - time.time()) > 30:
            return "request timestamp expired"
        body = await request.text() if request.method != "GET" else ""
        message = f"{stamp}{request.method}{request.path}{body}".encode()
        expected = hmac.new(self.hmac_key.secret.encode(), message, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, request.headers.get("CB-ACCESS-SIGN", "")):
            return "bad signature"
        return None

    # ------------------------------------------------------------------ market data

    @staticmethod
    def _load_daily() -> dict[str, pd.DataFrame]:
        bars = load_sample("crypto_daily")
        by_product = {}
        for product_id, (_, _, sample_symbol, _, _) in _SPOT.items():
            frame = bars[bars["symbol"] == sample_symbol].copy()
            frame["start"] = frame["ts"].map(lambda t: int(t.timestamp()))
            by_product[product_id] = frame.set_index("start")
        return by_product

    @staticmethod
    def _level(product_id: str) -> float:
        if product_id in _SPOT:
            return _SPOT[product_id][3]
        return _FUTURES[product_id][3]

    def _path(self, product_id: str, ts: float) -> float:
        # A smooth, deterministic path: a few slow waves around the product's level.
        level = self._level(product_id)
        phase = (zlib_crc(product_id) % 1000) / 100.0
        m = ts / 60.0
        wave = 0.01 * math.sin(m / 9.0 + phase) + 0.004 * math.sin(m / 2.3 + 2 * phase)
        return round(level * (1.0 + wave), 2)

    def _synthetic_candle(self, product_id: str, gran: int, start: int, now: float) -> dict[str, str]:
        end = min(start + gran, now)
        steps = max(2, min(12, int((end - start) / max(1, gran / 12)) + 1))
        prices = [self._path(product_id, start + (end - start) * k / (steps - 1)) for k in range(steps)]
        volume = round(1.0 + (zlib_crc(f"{product_id}{start}") % 1000) / 100.0, 8)
        return {
            "start": str(start),
            "low": _fmt(min(prices)),
            "high": _fmt(max(prices)),
            "open": _fmt(prices[0]),
            "close": _fmt(prices[-1]),
            "volume": _fmt(volume * (end - start) / gran),
        }

    def _top_of_book(self, product_id: str) -> tuple[float, float, float]:
        mid = self.price(product_id)
        half = round(max(0.01, mid * 0.00005), 2)
        return round(mid - half, 2), round(mid + half, 2), mid

    def _product(self, product_id: str) -> dict[str, Any]:
        mid = self._top_of_book(product_id)[2]
        if product_id in _SPOT:
            base, name, _, _, base_increment = _SPOT[product_id]
            return {
                "product_id": product_id,
                "price": _fmt(mid),
                "price_percentage_change_24h": "0.5",
                "volume_24h": "1000",
                "volume_percentage_change_24h": "1.0",
                "base_increment": base_increment,
                "quote_increment": "0.01",
                "quote_min_size": "1",
                "quote_max_size": "150000000",
                "base_min_size": "0.00000001",
                "base_max_size": "3400",
                "base_name": name,
                "quote_name": "US Dollar",
                "watched": False,
                "is_disabled": False,
                "new": False,
                "status": "online",
                "cancel_only": False,
                "limit_only": False,
                "post_only": False,
                "trading_disabled": False,
                "auction_mode": False,
                "product_type": "SPOT",
                "quote_currency_id": "USD",
                "base_currency_id": base,
                "fcm_trading_session_details": None,
                "mid_market_price": "",
                "alias": "",
                "alias_to": [],
                "base_display_symbol": base,
                "quote_display_symbol": "USD",
                "view_only": False,
                "price_increment": "0.01",
                "display_name": product_id,
                "product_venue": "CBE",
            }
        root, display, contract_size, _ = _FUTURES[product_id]
        return {
            "product_id": product_id,
            "price": _fmt(mid),
            "base_increment": "1",
            "quote_increment": "0.01",
            "quote_min_size": "0",
            "quote_max_size": "100000000",
            "base_min_size": "1",
            "base_max_size": "100000000",
            "base_name": "",
            "quote_name": "US Dollar",
            "is_disabled": False,
            "status": "",
            "trading_disabled": False,
            "product_type": "FUTURE",
            "quote_currency_id": "USD",
            "base_currency_id": "",
            "fcm_trading_session_details": {"is_session_open": True},
            "mid_market_price": _fmt(mid),
            "alias": "",
            "alias_to": [],
            "view_only": False,
            "price_increment": "0.01",
            "display_name": display,
            "product_venue": "FCM",
            "future_product_details": {
                "venue": "cde",
                "contract_code": product_id.split("-")[0],
                "contract_expiry": "2030-12-20T16:00:00Z",
                "contract_size": contract_size,
                "contract_root_unit": root,
                "contract_expiry_type": "EXPIRING",
                "funding_interval": "3600s",
                "contract_display_name": display,
            },
        }

    # ------------------------------------------------------------------ public handlers

    async def _currencies(self, request: web.Request) -> web.Response:
        return web.json_response({"data": [{"id": "USD", "name": "US Dollar", "min_size": "0.01"}]})

    async def _currencies_crypto(self, request: web.Request) -> web.Response:
        data = [
            {
                "asset_id": str(uuid.uuid5(uuid.NAMESPACE_OID, base)),
                "code": base,
                "name": name,
                "color": "#000000",
                "sort_index": 100,
                "exponent": 8,
                "type": "crypto",
                "address_regex": "^.+$",
            }
            for base, name, *_ in _SPOT.values()
        ]
        return web.json_response({"data": data})

    async def _exchange_rates(self, request: web.Request) -> web.Response:
        rates = {"USD": "1"}
        for product_id, (base, *_) in _SPOT.items():
            rates[base] = _fmt(1.0 / self.price(product_id))
        return web.json_response({"data": {"currency": "USD", "rates": rates}})

    async def _products(self, request: web.Request) -> web.Response:
        kind = request.query.get("product_type", "SPOT")
        ids = list(_FUTURES) if kind == "FUTURE" else list(_SPOT)
        products = [self._product(p) for p in ids]
        return web.json_response({"products": products, "num_products": len(products)})

    async def _candles(self, request: web.Request) -> web.Response:
        self.stats.candle_requests += 1
        product_id = request.match_info["product_id"]
        if product_id not in _SPOT and product_id not in _FUTURES:
            return _not_found(f"product {product_id} not found")
        granularity = request.query.get("granularity", "")
        if granularity not in GRANULARITY_S:
            return _invalid(f"granularity must be one of {', '.join(GRANULARITY_S)}, got {granularity!r}")
        try:
            start, end = int(request.query["start"]), int(request.query["end"])
        except (KeyError, ValueError):
            return _invalid("start and end are required unix timestamps in seconds")
        gran = GRANULARITY_S[granularity]
        if end < start:
            return _invalid("end must not be before start")
        if (end - start) // gran + 1 > MAX_CANDLES:
            return _invalid(f"number of candles requested should be less than {MAX_CANDLES}")
        candles: list[dict[str, str]] = []
        if gran == 86400 and product_id in self._daily:
            frame = self._daily[product_id]
            rows = frame.loc[(frame.index >= start) & (frame.index <= end)]
            for key, row in rows.iterrows():
                candles.append(
                    {
                        "start": str(key),
                        "low": _fmt(row["low"]),
                        "high": _fmt(row["high"]),
                        "open": _fmt(row["open"]),
                        "close": _fmt(row["close"]),
                        "volume": _fmt(row["volume"]),
                    }
                )
        elif gran != 86400:
            now = self.clock()
            first = -(-start // gran) * gran
            for s in range(first, min(end, int(now)) + 1, gran):
                candles.append(self._synthetic_candle(product_id, gran, s, now))
        candles.sort(key=lambda c: int(c["start"]), reverse=True)
        return web.json_response({"candles": candles})

    async def _ticker(self, request: web.Request) -> web.Response:
        product_id = request.match_info["product_id"]
        if product_id not in _SPOT and product_id not in _FUTURES:
            return _not_found(f"product {product_id} not found")
        bid, ask, mid = self._top_of_book(product_id)
        now = self.clock()
        trade = {
            "trade_id": str(int(now * 1000)),
            "product_id": product_id,
            "price": _fmt(mid),
            "size": "0.01",
            "time": _iso(now),
            "side": "BUY",
            "bid": "",
            "ask": "",
        }
        return web.json_response({"trades": [trade], "best_bid": _fmt(bid), "best_ask": _fmt(ask)})

    def _book(self, product_id: str) -> dict[str, Any]:
        bid, ask, _ = self._top_of_book(product_id)
        return {
            "product_id": product_id,
            "bids": [{"price": _fmt(bid), "size": "1.5"}],
            "asks": [{"price": _fmt(ask), "size": "2.5"}],
            "time": _iso(self.clock()),
        }

    async def _product_book(self, request: web.Request) -> web.Response:
        product_id = request.query.get("product_id", "")
        if product_id not in _SPOT and product_id not in _FUTURES:
            return _not_found(f"product {product_id!r} not found")
        return web.json_response({"pricebook": self._book(product_id)})

    # ------------------------------------------------------------------ private handlers

    async def _transaction_summary(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "total_volume": 0,
                "total_fees": 0,
                "fee_tier": {
                    "pricing_tier": "Advanced 1",
                    "usd_from": "0",
                    "usd_to": "10000",
                    "taker_fee_rate": _fmt(TAKER_FEE),
                    "maker_fee_rate": _fmt(MAKER_FEE),
                },
                "margin_rate": None,
                "goods_and_services_tax": None,
                "advanced_trade_only_volume": 0,
                "advanced_trade_only_fees": 0,
                "coinbase_pro_volume": 0,
                "coinbase_pro_fees": 0,
            }
        )

    async def _best_bid_ask(self, request: web.Request) -> web.Response:
        ids = request.query.getall("product_ids", []) or list(_SPOT)
        unknown = [p for p in ids if p not in _SPOT and p not in _FUTURES]
        if unknown:
            return _not_found(f"products {unknown} not found")
        return web.json_response({"pricebooks": [self._book(p) for p in ids]})

    async def _accounts(self, request: web.Request) -> web.Response:
        currencies = list(self.balances)
        limit = min(int(request.query.get("limit", "49")), self.accounts_page_size)
        start = int(request.query.get("cursor") or 0)
        page = currencies[start : start + limit]
        accounts = []
        for code in page:
            hold = self.holds.get(code, 0.0)
            accounts.append(
                {
                    "uuid": self._account_ids[code],
                    "name": f"{code} Wallet",
                    "currency": code,
                    "available_balance": {"value": _fmt(self.balances[code] - hold), "currency": code},
                    "default": True,
                    "active": True,
                    "created_at": "2023-01-04T06:20:06.456Z",
                    "updated_at": "2023-01-04T06:20:07.181Z",
                    "deleted_at": None,
                    "type": "ACCOUNT_TYPE_FIAT" if code == "USD" else "ACCOUNT_TYPE_CRYPTO",
                    "ready": True,
                    "hold": {"value": _fmt(hold), "currency": code},
                }
            )
        nxt = start + len(page)
        has_next = nxt < len(currencies)
        return web.json_response(
            {
                "accounts": accounts,
                "has_next": has_next,
                "cursor": str(nxt) if has_next else "",
                "size": len(page),
            }
        )

    async def _cfm_positions(self, request: web.Request) -> web.Response:
        positions = []
        for product_id, pos in self.futures_positions.items():
            if pos["contracts"] == 0:
                continue
            price = self.price(product_id)
            size = float(_FUTURES[product_id][2])
            unrealized = pos["contracts"] * size * (price - pos["avg_entry_price"])
            positions.append(
                {
                    "product_id": product_id,
                    "expiration_time": "2030-12-20T16:00:00Z",
                    "side": "LONG" if pos["contracts"] > 0 else "SHORT",
                    "number_of_contracts": _fmt(abs(pos["contracts"])),
                    "current_price": _fmt(price),
                    "avg_entry_price": _fmt(pos["avg_entry_price"]),
                    "unrealized_pnl": _fmt(unrealized),
                    "daily_realized_pnl": "0",
                }
            )
        return web.json_response({"positions": positions})

    async def _create_order(self, request: web.Request) -> web.Response:
        self.stats.create_requests += 1
        try:
            body = await request.json()
        except json.JSONDecodeError:
            return _invalid("request body is not JSON")
        client_order_id = str(body.get("client_order_id") or "")
        if not client_order_id:
            return _invalid("client_order_id is required")
        if self.dedup_client_order_ids:
            for existing in self.orders:
                if existing["client_order_id"] == client_order_id:
                    self.stats.deduplicated_creates += 1
                    return web.json_response(_create_success(existing))
        product_id = body.get("product_id", "")
        side = body.get("side", "")
        config = body.get("order_configuration") or {}
        if product_id not in _SPOT and product_id not in _FUTURES:
            return web.json_response(_create_failure("INVALID_PRODUCT_ID", "unknown product", config))
        if side not in ("BUY", "SELL") or len(config) != 1:
            return web.json_response(
                _create_failure("INVALID_ARGUMENT", "need side BUY/SELL and one configuration", config)
            )
        kind, params = next(iter(config.items()))
        try:
            order = self._new_order(client_order_id, product_id, side, kind, params)
        except _Reject as reject:
            return web.json_response(_create_failure(reject.code, reject.message, config, reject.preview))
        self.orders.append(order)
        self._orders_by_id[order["order_id"]] = order
        self.stats.orders_created += 1
        return web.json_response(_create_success(order))

    def _new_order(
        self, client_order_id: str, product_id: str, side: str, kind: str, params: dict[str, Any]
    ) -> dict[str, Any]:
        now = self.clock()
        bid, ask, _ = self._top_of_book(product_id)
        order: dict[str, Any] = {
            "order_id": str(uuid.uuid4()),
            "product_id": product_id,
            "user_id": "11111111-1111-1111-1111-111111111111",
            "order_configuration": {kind: params},
            "side": side,
            "client_order_id": client_order_id,
            "status": "OPEN",
            "time_in_force": "GOOD_UNTIL_CANCELLED",
            "created_time": _iso(now),
            "completion_percentage": "0",
            "filled_size": "0",
            "average_filled_price": "0",
            "fee": "",
            "number_of_fills": "0",
            "filled_value": "0",
            "pending_cancel": False,
            "size_in_quote": False,
            "total_fees": "0",
            "size_inclusive_of_fees": False,
            "total_value_after_fees": "0",
            "trigger_status": "INVALID_ORDER_TYPE",
            "order_type": "LIMIT",
            "reject_reason": "REJECT_REASON_UNSPECIFIED",
            "settled": False,
            "product_type": "FUTURE" if product_id in _FUTURES else "SPOT",
            "reject_message": "",
            "cancel_message": "",
            "_created": now,
        }
        try:
            base_size = float(params["base_size"]) if "base_size" in params else None
            quote_size = float(params["quote_size"]) if "quote_size" in params else None
            limit_price = float(params["limit_price"]) if "limit_price" in params else None
        except (TypeError, ValueError) as exc:
            raise _Reject("INVALID_ARGUMENT", f"bad number in order configuration: {exc}") from None
        if kind == "market_market_ioc":
            order["order_type"] = "MARKET"
            order["time_in_force"] = "IMMEDIATE_OR_CANCEL"
            price = ask if side == "BUY" else bid
            if quote_size is not None:
                size = quote_size / (price * (1 + TAKER_FEE))
                order["size_in_quote"] = True
                order["size_inclusive_of_fees"] = True
            elif base_size is not None:
                size = base_size
            else:
                raise _Reject("INVALID_ARGUMENT", "market orders need base_size or quote_size")
            self._fill(order, size, price, TAKER_FEE)
            return order
        if kind in ("limit_limit_gtc", "limit_limit_gtd", "limit_limit_fok", "sor_limit_ioc"):
            if base_size is None or limit_price is None:
                raise _Reject("INVALID_ARGUMENT", "limit orders need base_size and limit_price")
            order["time_in_force"] = {
                "limit_limit_gtc": "GOOD_UNTIL_CANCELLED",
                "limit_limit_gtd": "GOOD_UNTIL_DATE_TIME",
                "limit_limit_fok": "FILL_OR_KILL",
                "sor_limit_ioc": "IMMEDIATE_OR_CANCEL",
            }[kind]
            marketable = limit_price >= ask if side == "BUY" else limit_price <= bid
            if marketable and params.get("post_only"):
                raise _Reject("INVALID_LIMIT_PRICE_POST_ONLY", "post-only order would cross the book")
            if marketable:
                self._fill(order, base_size, ask if side == "BUY" else bid, TAKER_FEE)
            elif kind in ("limit_limit_fok", "sor_limit_ioc"):
                order["status"] = "CANCELLED"
                order["cancel_message"] = "not marketable"
            else:
                self._hold(order, base_size, limit_price)
            return order
        if kind in ("stop_limit_stop_limit_gtc", "stop_limit_stop_limit_gtd"):
            if base_size is None or limit_price is None or "stop_price" not in params:
                raise _Reject("INVALID_ARGUMENT", "stop-limit orders need base_size, limit_price, stop_price")
            order["order_type"] = "STOP_LIMIT"
            order["trigger_status"] = "STOP_PENDING"
            self._hold(order, base_size, limit_price)
            return order
        raise _Reject("UNSUPPORTED_ORDER_CONFIGURATION", f"order configuration {kind!r} is not supported")

    def _split(self, product_id: str) -> tuple[str, str]:
        if product_id in _SPOT:
            return _SPOT[product_id][0], "USD"
        return _FUTURES[product_id][0], "USD"

    def _hold(self, order: dict[str, Any], size: float, price: float) -> None:
        product_id = order["product_id"]
        if product_id in _FUTURES:
            return
        base, quote = self._split(product_id)
        if order["side"] == "BUY":
            need, currency = size * price * (1 + MAKER_FEE), quote
        else:
            need, currency = size, base
        if self.balances[currency] - self.holds[currency] < need - 1e-12:
            raise _Reject(
                "INSUFFICIENT_FUND", "Insufficient balance in source account", "PREVIEW_INSUFFICIENT_FUND"
            )
        self.holds[currency] += need
        order["_hold"] = (currency, need)

    def _fill(self, order: dict[str, Any], size: float, price: float, fee_rate: float) -> None:
        product_id = order["product_id"]
        if product_id in _FUTURES:
            contract_size = float(_FUTURES[product_id][2])
            notional = size * contract_size * price
            fee = notional * fee_rate
            pos = self.futures_positions.setdefault(product_id, {"contracts": 0.0, "avg_entry_price": 0.0})
            signed = size if order["side"] == "BUY" else -size
            old = pos["contracts"]
            new = old + signed
            if old == 0 or (old > 0) == (signed > 0):
                pos["avg_entry_price"] = (abs(old) * pos["avg_entry_price"] + size * price) / abs(new)
            elif new == 0:
                pos["avg_entry_price"] = 0.0
            elif (new > 0) != (old > 0):
                pos["avg_entry_price"] = price
            pos["contracts"] = new
            self.balances["USD"] -= fee
        else:
            base, quote = self._split(product_id)
            notional = size * price
            fee = notional * fee_rate
            if order["side"] == "BUY":
                if self.balances[quote] - self.holds[quote] < notional + fee - 1e-9:
                    raise _Reject(
                        "INSUFFICIENT_FUND",
                        "Insufficient balance in source account",
                        "PREVIEW_INSUFFICIENT_FUND",
                    )
                self.balances[quote] -= notional + fee
                self.balances[base] += size
            else:
                if self.balances[base] - self.holds[base] < size - 1e-12:
                    raise _Reject(
                        "INSUFFICIENT_FUND",
                        "Insufficient balance in source account",
                        "PREVIEW_INSUFFICIENT_FUND",
                    )
                self.balances[base] -= size
                self.balances[quote] += notional - fee
        order.update(
            {
                "status": "FILLED",
                "completion_percentage": "100",
                "filled_size": _fmt(size),
                "average_filled_price": _fmt(price),
                "number_of_fills": "1",
                "filled_value": _fmt(notional),
                "total_fees": _fmt(fee),
                "total_value_after_fees": _fmt(notional + fee if order["side"] == "BUY" else notional - fee),
                "settled": True,
            }
        )

    def _public_order(self, order: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in order.items() if not k.startswith("_")}

    async def _list_orders(self, request: web.Request) -> web.Response:
        q = request.query
        product_ids = set(q.getall("product_ids", [])) | set(q.getall("product_id", []))
        order_ids = set(q.getall("order_ids", []))
        statuses = set(q.getall("order_status", []))
        start = _parse_iso(q.get("start_date"))
        end = _parse_iso(q.get("end_date"))
        try:
            limit = max(1, min(int(q.get("limit", "100")), 1000))
            offset = int(q.get("cursor") or 0)
        except ValueError:
            return _invalid("limit and cursor must be integers")
        selected = [
            o
            for o in reversed(self.orders)  # newest first, as Coinbase sorts
            if (not product_ids or o["product_id"] in product_ids)
            and (not order_ids or o["order_id"] in order_ids)
            and (not statuses or o["status"] in statuses)
            and (start is None or o["_created"] >= start)
            and (end is None or o["_created"] <= end)
        ]
        page = selected[offset : offset + limit]
        nxt = offset + len(page)
        has_next = nxt < len(selected)
        return web.json_response(
            {
                "orders": [self._public_order(o) for o in page],
                "sequence": "0",
                "has_next": has_next,
                "cursor": str(nxt) if has_next else "",
            }
        )

    async def _get_order(self, request: web.Request) -> web.Response:
        order = self._orders_by_id.get(request.match_info["order_id"])
        if order is None:
            return _not_found("order with this orderID was not found")
        return web.json_response({"order": self._public_order(order)})

    async def _batch_cancel(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except json.JSONDecodeError:
            return _invalid("request body is not JSON")
        results = []
        for order_id in body.get("order_ids") or []:
            order = self._orders_by_id.get(order_id)
            if order is None:
                results.append(
                    {"success": False, "failure_reason": "UNKNOWN_CANCEL_ORDER", "order_id": order_id}
                )
            elif order["status"] != "OPEN":
                results.append(
                    {"success": False, "failure_reason": "INVALID_CANCEL_REQUEST", "order_id": order_id}
                )
            else:
                order["status"] = "CANCELLED"
                order["cancel_message"] = "User requested cancel"
                hold = order.pop("_hold", None)
                if hold is not None:
                    self.holds[hold[0]] -= hold[1]
                results.append(
                    {"success": True, "failure_reason": "UNKNOWN_CANCEL_FAILURE_REASON", "order_id": order_id}
                )
        return web.json_response({"results": results})


class _Reject(Exception):
    def __init__(self, code: str, message: str, preview: str = "") -> None:
        super().__init__(message)
        self.code, self.message, self.preview = code, message, preview


def _create_success(order: dict[str, Any]) -> dict[str, Any]:
    return {
        "success": True,
        "failure_reason": "UNKNOWN_FAILURE_REASON",
        "order_id": order["order_id"],
        "success_response": {
            "order_id": order["order_id"],
            "product_id": order["product_id"],
            "side": order["side"],
            "client_order_id": order["client_order_id"],
        },
        "order_configuration": order["order_configuration"],
    }


def _create_failure(code: str, message: str, config: dict[str, Any], preview: str = "") -> dict[str, Any]:
    return {
        "success": False,
        "failure_reason": "UNKNOWN_FAILURE_REASON",
        "order_id": "",
        "error_response": {
            "error": code,
            "message": message,
            "error_details": message,
            "preview_failure_reason": preview or "UNKNOWN_PREVIEW_FAILURE_REASON",
            "new_order_failure_reason": code,
        },
        "order_configuration": config,
    }


def _invalid(message: str) -> web.Response:
    return web.json_response(
        {"error": "INVALID_ARGUMENT", "error_details": message, "message": message}, status=400
    )


def _not_found(message: str) -> web.Response:
    return web.json_response({"error": "NOT_FOUND", "error_details": message, "message": message}, status=404)


def _parse_iso(value: str | None) -> float | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def zlib_crc(text: str) -> int:
    """A stable (unsalted) hash of ``text``, for deterministic synthetic data."""
    return zlib.crc32(text.encode())
