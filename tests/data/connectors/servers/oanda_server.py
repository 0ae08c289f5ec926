"""A local OANDA v20 REST and streaming server, speaking the documented protocol for the endpoints we use.

Implemented (``/v3`` paths, ``Authorization: Bearer <token>`` on every request):

- ``GET  /v3/instruments/{instrument}/candles``: ``price`` (any of M, B, A), ``granularity`` (S5 ... D, W),
  ``count`` (default 500, at most ``max_count`` = 5000), ``from``, ``to``, ``includeFirst``,
  ``dailyAlignment``/``alignmentTimezone``/``weeklyAlignment`` (UTC alignment only). The same rules as the
  venue: ``count`` together with both ``from`` and ``to`` is a 400, and so is a range holding more than
  ``max_count`` candles; the candle containing "now" is returned with ``complete: false``; there are no
  candles while the forex market is closed (Friday 21:00 to Sunday 21:00 UTC).
- ``GET  /v3/accounts/{id}/pricing/stream?instruments=...``: newline-delimited JSON, ``PRICE`` and
  ``HEARTBEAT`` messages, from a deterministic tape (one tick per instrument per tape second).
- ``GET  /v3/accounts/{id}/pricing?instruments=...``: the latest prices.
- ``POST /v3/accounts/{id}/orders``: MARKET (FOK/IOC), LIMIT and STOP orders with signed ``units`` and
  ``clientExtensions.id``; market and marketable orders fill at once at the ask (buy) or bid (sell).
- ``GET  /v3/accounts/{id}/orders/{specifier}`` (``@clientID`` or the order id),
  ``PUT  /v3/accounts/{id}/orders/{specifier}/cancel``, ``GET /v3/accounts/{id}/transactions/{id}``,
  ``GET  /v3/accounts/{id}/openPositions``, ``GET /v3/accounts/{id}/summary``.

Errors use OANDA's body ``{"errorMessage": ..., "errorCode": ...}`` (order rejections add the reject
transaction). Like the venue, a client order id is refused only while another *pending* order holds it, so
filled market orders with the same id would be created twice: the connector's idempotency is what prevents
that, and :attr:`OandaVenue.created_by_client_id` counts it.

Time: ``now`` is fixed (``OandaVenueConfig.now``) or, with a tape, follows it: tape second ``k`` is reached
``k * tick_wall_s`` wall seconds after the server was built, so candles complete as the stream advances; the
clock stops at the end of the tape.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import math
import re
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from tests.data.connectors.servers.faults import FaultInjector, write_partial_and_drop

__all__ = ["GRANULARITY_SECONDS", "OandaVenue", "OandaVenueConfig", "fmt_time", "parse_time"]

GRANULARITY_SECONDS: dict[str, int] = {
    "S5": 5, "S10": 10, "S15": 15, "S30": 30,
    "M1": 60, "M2": 120, "M4": 240, "M5": 300, "M10": 600, "M15": 900, "M30": 1800,
    "H1": 3600, "H2": 7200, "H3": 10800, "H4": 14400, "H6": 21600, "H8": 28800, "H12": 43200,
    "D": 86400, "W": 604800,
}  # fmt: skip

_WEEK = 7 * 86400
_MONDAY_OFFSET = 4 * 86400  # 1970-01-01 was a Thursday; Monday-aligned weeks start 4 days later
_CLOSE_FRI = 4 * 86400 + 21 * 3600  # seconds after the Monday-aligned week start... of Friday 21:00
_OPEN_SUN = 6 * 86400 + 21 * 3600  # ... and of Sunday 21:00


def fmt_time(epoch_s: float) -> str:
    """RFC 3339 with nine fractional digits and ``Z``, as OANDA writes times."""
    whole = math.floor(epoch_s)
    nanos = round((epoch_s - whole) * 1e9)
    if nanos >= 1_000_000_000:
        whole, nanos = whole + 1, 0
    base = datetime.fromtimestamp(whole, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{base}.{nanos:09d}Z"


def parse_time(text: str) -> float:
    """Epoch seconds from RFC 3339 (up to nine fractional digits) or a UNIX seconds string."""
    text = text.strip()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    m = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)", text)
    if not m:
        raise ValueError(text)
    base = datetime.fromisoformat(m.group(1) + ("+00:00" if m.group(3) == "Z" else m.group(3)))
    frac = float("0." + m.group(2)) if m.group(2) else 0.0
    return base.timestamp() + frac


def market_open(epoch_s: float) -> bool:
    """Whether the forex market trades at ``epoch_s`` (closed Friday 21:00 to Sunday 21:00 UTC)."""
    in_week = (epoch_s - _MONDAY_OFFSET) % _WEEK
    return not (_CLOSE_FRI <= in_week < _OPEN_SUN)


def _phase(instrument: str) -> float:
    return int(hashlib.sha256(instrument.encode()).hexdigest()[:8], 16) / 2**32 * 2 * math.pi


@dataclass
class OandaVenueConfig:
    """State and behaviour of the local OANDA venue.

    Parameters
    ----------
    token, account_id
        The only credentials accepted.
    instruments
        Tradable instruments and their base mid price.
    now
        The venue's fixed "now" (``None``: follow the tape clock, see ``tape_start``).
    tape_start
        Tape second 0 (an aware datetime inside market hours).
    tick_wall_s
        Wall seconds per tape second: the stream sends one tick per instrument every ``tick_wall_s``.
    tape_seconds
        Length of the tape; after it the stream only sends heartbeats.
    heartbeat_every
        A HEARTBEAT after this many tape seconds.
    max_count
        Most candles one request may return (the venue's 5000).
    reject_duplicate_pending_ids
        Refuse an order whose client id a *pending* order already holds (the venue's rule).
    balance
        Starting balance in the account currency (USD).
    """

    token: str = "test-token"
    account_id: str = "101-004-0000000-001"
    instruments: Mapping[str, float] = field(
        default_factory=lambda: {"EUR_USD": 1.10, "GBP_USD": 1.27, "USD_JPY": 148.0}
    )
    now: datetime | None = datetime(2024, 3, 6, 12, 0, 30, tzinfo=UTC)
    tape_start: datetime = datetime(2024, 3, 6, 12, 0, 0, tzinfo=UTC)
    tick_wall_s: float = 0.004
    tape_seconds: int = 3600
    heartbeat_every: int = 5
    max_count: int = 5000
    reject_duplicate_pending_ids: bool = True
    balance: float = 100_000.0


class OandaVenue:
    """The venue's state (prices, orders, positions) and its aiohttp application.

    Parameters
    ----------
    config
        Credentials, instruments, clock and limits.
    faults
        Optional fault injector, applied to every REST request; the stream uses its drop plan.
    """

    def __init__(self, config: OandaVenueConfig | None = None, *, faults: FaultInjector | None = None):
        self.config = config or OandaVenueConfig()
        self.faults = faults
        self._wall0 = time.monotonic()
        self._tape0 = self.config.tape_start.timestamp()
        self.orders: dict[str, dict[str, Any]] = {}
        self.transactions: dict[str, dict[str, Any]] = {}
        self.positions: dict[str, dict[str, float]] = {}
        self.balance = self.config.balance
        self.realized_pl = 0.0
        self._next_tx = 100
        self.order_posts = 0
        self.created_by_client_id: Counter[str] = Counter()
        self.candle_requests = 0
        self.stream_connections = 0
        self.delivered_prices: list[tuple[str, str]] = []  # (instrument, time) of PRICE lines written whole
        self.last_request_headers: dict[str, str] = {}

    # ------------------------------------------------------------------ clock and prices

    def now_s(self) -> float:
        """The venue's current time in epoch seconds."""
        if self.config.now is not None:
            return self.config.now.timestamp()
        elapsed = (time.monotonic() - self._wall0) / self.config.tick_wall_s
        return self._tape0 + min(elapsed, float(self.config.tape_seconds))

    def tape_index(self) -> int:
        """The tape second reached now (it stops at the end of the tape, and so does the clock)."""
        return min(int((time.monotonic() - self._wall0) / self.config.tick_wall_s), self.config.tape_seconds)

    def _digits(self, instrument: str) -> int:
        return 3 if instrument.endswith("JPY") else 5

    def mid(self, instrument: str, t: float) -> float:
        base = self.config.instruments[instrument]
        ph = _phase(instrument)
        value = base * (1 + 0.004 * math.sin(t / 5400 + ph) + 0.0008 * math.sin(t / 47 + 2 * ph))
        return round(value, self._digits(instrument))

    def bid_ask(self, instrument: str, t: float) -> tuple[float, float]:
        mid = self.mid(instrument, t)
        half = self.config.instruments[instrument] * 0.00005
        d = self._digits(instrument)
        return round(mid - half, d), round(mid + half, d)

    def candle(self, instrument: str, t0: int, seconds: int, price: str) -> dict[str, Any]:
        """The candle of ``[t0, t0 + seconds)`` with the requested price components."""
        n = seconds if seconds <= 15 else 16  # every tape second for short candles, else 16 samples
        samples = [t0 + round(i * (seconds - 1) / max(1, n - 1)) for i in range(n)]
        mids = [self.mid(instrument, s) for s in samples]
        d = self._digits(instrument)
        half = self.config.instruments[instrument] * 0.00005
        out: dict[str, Any] = {
            "complete": t0 + seconds <= self.now_s(),
            "volume": 1 + int(abs(math.sin(t0 * 0.37 + _phase(instrument))) * 40 * math.sqrt(seconds)),
            "time": fmt_time(t0),
        }

        def ohlc(shift: float) -> dict[str, str]:
            vals = [round(m + shift, d) for m in mids]
            return {
                "o": f"{vals[0]:.{d}f}",
                "h": f"{max(vals):.{d}f}",
                "l": f"{min(vals):.{d}f}",
                "c": f"{vals[-1]:.{d}f}",
            }

        if "M" in price:
            out["mid"] = ohlc(0.0)
        if "B" in price:
            out["bid"] = ohlc(-half)
        if "A" in price:
            out["ask"] = ohlc(half)
        return out

    def price_message(self, instrument: str, t: float) -> dict[str, Any]:
        """A ``PRICE`` message (stream line or /pricing entry)."""
        bid, ask = self.bid_ask(instrument, t)
        d = self._digits(instrument)
        return {
            "type": "PRICE",
            "time": fmt_time(t),
            "bids": [{"price": f"{bid:.{d}f}", "liquidity": 10_000_000}],
            "asks": [{"price": f"{ask:.{d}f}", "liquidity": 10_000_000}],
            "closeoutBid": f"{bid:.{d}f}",
            "closeoutAsk": f"{ask:.{d}f}",
            "status": "tradeable",
            "tradeable": True,
            "instrument": instrument,
        }

    # ------------------------------------------------------------------ app

    @property
    def app(self) -> web.Application:
        """A fresh aiohttp application serving this venue."""
        middlewares = [_json_errors, self._auth]
        if self.faults is not None:
            middlewares.insert(1, self.faults.middleware)
        app = web.Application(middlewares=middlewares)
        r = app.router
        r.add_get("/v3/instruments/{instrument}/candles", self._candles)
        r.add_get("/v3/accounts/{account}/pricing/stream", self._stream)
        r.add_get("/v3/accounts/{account}/pricing", self._pricing)
        r.add_post("/v3/accounts/{account}/orders", self._create_order)
        r.add_get("/v3/accounts/{account}/orders/{spec}", self._get_order)
        r.add_put("/v3/accounts/{account}/orders/{spec}/cancel", self._cancel_order)
        r.add_get("/v3/accounts/{account}/transactions/{tx}", self._get_transaction)
        r.add_get("/v3/accounts/{account}/openPositions", self._open_positions)
        r.add_get("/v3/accounts/{account}/summary", self._summary)
        return app

    @web.middleware
    async def _auth(self, request: web.Request, handler: Callable[..., Any]) -> web.StreamResponse:
        self.last_request_headers = dict(request.headers)
        if request.headers.get("Authorization", "") != f"Bearer {self.config.token}":
            return _error(401, "Insufficient authorization to perform request.")
        account = request.match_info.get("account")
        if account is not None and account != self.config.account_id:
            return _error(403, "The provided request was forbidden.")
        return await handler(request)

    def _instrument(self, name: str) -> str:
        if name not in self.config.instruments:
            raise _Reply(400, "Invalid value specified for 'instrument'", "INVALID_INSTRUMENT")
        return name

    # ------------------------------------------------------------------ candles

    async def _candles(self, request: web.Request) -> web.Response:
        self.candle_requests += 1
        instrument = self._instrument(request.match_info["instrument"])
        q = request.query
        gran = q.get("granularity", "S5")
        if gran not in GRANULARITY_SECONDS:
            return _error(400, f"Invalid value specified for 'granularity': {gran}")
        price = q.get("price", "M")
        if not price or set(price) - set("MBA"):
            return _error(400, f"Invalid value specified for 'price': {price}")
        step = GRANULARITY_SECONDS[gran]
        if q.get("alignmentTimezone", "UTC") != "UTC" or q.get("weeklyAlignment", "Monday") != "Monday":
            return _error(400, "this server implements alignmentTimezone=UTC, weeklyAlignment=Monday only")
        align = int(q.get("dailyAlignment", "0")) * 3600 if step >= 86400 else 0
        if gran == "W":
            align += _MONDAY_OFFSET
        try:
            start = parse_time(q["from"]) if "from" in q else None
            stop = parse_time(q["to"]) if "to" in q else None
        except ValueError as exc:
            return _error(400, f"Invalid value specified for 'from'/'to': {exc}")
        if "count" in q and start is not None and stop is not None:
            return _error(400, "'count' cannot be specified when both 'from' and 'to' are specified")
        count = int(q.get("count", "500"))
        if not 1 <= count <= self.config.max_count:
            return _error(400, "Maximum value for 'count' exceeded" if count > 0 else "Invalid 'count'")
        include_first = q.get("includeFirst", "true").lower() != "false"
        now = self.now_s()

        def floor(t: float) -> int:
            return int(math.floor((t - align) / step) * step + align)

        def exists(t0: int) -> bool:
            # A candle exists when any part of it overlaps trading hours and it has started.
            if t0 > now:
                return False
            if step <= 3600:
                return market_open(t0)
            probe = range(t0, t0 + step, 3600)
            return any(market_open(p) for p in probe)

        if start is not None and stop is not None:
            if stop <= start:
                return _error(400, "Invalid value specified for 'to': must be after 'from'")
            if (stop - start) / step > self.config.max_count:
                return _error(400, "Maximum value for 'count' exceeded")
        times: list[int] = []
        if start is not None:
            t = floor(start)
            if t < start or (t == start and not include_first):
                t += step
            limit = stop if stop is not None else math.inf
            while t < limit and t <= now and len(times) < (count if stop is None else self.config.max_count):
                if exists(t):
                    times.append(t)
                t += step
        else:
            t = floor(min(stop if stop is not None else now, now))
            if stop is not None and t >= stop:
                t -= step
            while len(times) < count and t > now - 400 * 86400:
                if exists(t):
                    times.append(t)
                t -= step
            times.reverse()
        candles = [self.candle(instrument, t0, step, price) for t0 in times]
        return web.json_response({"instrument": instrument, "granularity": gran, "candles": candles})

    # ------------------------------------------------------------------ pricing

    async def _pricing(self, request: web.Request) -> web.Response:
        names = [self._instrument(n) for n in request.query.get("instruments", "").split(",") if n]
        now = self.now_s()
        return web.json_response(
            {"prices": [self.price_message(n, math.floor(now)) for n in names], "time": fmt_time(now)}
        )

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        names = [n for n in request.query.get("instruments", "").split(",") if n]
        if not names:
            return _error(400, "Invalid value specified for 'instruments'")
        for n in names:
            self._instrument(n)
        self.stream_connections += 1
        resp = web.StreamResponse(status=200, headers={"Content-Type": "application/octet-stream"})
        await resp.prepare(request)
        with contextlib.suppress(ConnectionError):  # the client went away; nothing to answer
            await self._stream_tape(request, resp, names)
        return resp

    async def _stream_tape(self, request: web.Request, resp: web.StreamResponse, names: list[str]) -> None:
        cfg = self.config
        index = min(self.tape_index(), cfg.tape_seconds)
        # snapshot=true (the default): the current price first, then every tick from here on.
        if request.query.get("snapshot", "true").lower() != "false":
            index = max(0, index - 1)
        sent = 0
        while True:
            target = min(self.tape_index(), cfg.tape_seconds)
            while index <= target:
                t = self._tape0 + index
                lines = [(n, self.price_message(n, t)) for n in names]
                if index % cfg.heartbeat_every == 0:
                    lines.append(("", {"type": "HEARTBEAT", "time": fmt_time(t)}))
                for name, msg in lines:
                    data = (json.dumps(msg, separators=(",", ":")) + "\n").encode()
                    if self.faults is not None and self.faults.should_drop_stream(sent):
                        await write_partial_and_drop(request, resp, data)
                        return
                    await resp.write(data)
                    sent += 1
                    if name:
                        self.delivered_prices.append((name, msg["time"]))
                index += 1
            if index > cfg.tape_seconds:
                # Tape over, clock stopped: heartbeats only, at the wall pace of heartbeat_every ticks.
                await asyncio.sleep(cfg.tick_wall_s * cfg.heartbeat_every)
                t = self.now_s()
                await resp.write((json.dumps({"type": "HEARTBEAT", "time": fmt_time(t)}) + "\n").encode())
                continue
            await asyncio.sleep(cfg.tick_wall_s)

    # ------------------------------------------------------------------ orders

    def _tx(self, kind: str, **fields: Any) -> dict[str, Any]:
        self._next_tx += 1
        tx = {
            "id": str(self._next_tx),
            "type": kind,
            "accountID": self.config.account_id,
            "time": fmt_time(self.now_s()),
            "batchID": str(self._next_tx),
            **fields,
        }
        self.transactions[tx["id"]] = tx
        return tx

    def _reject(self, status: int, code: str, message: str, order: Mapping[str, Any]) -> web.Response:
        kind = str(order.get("type", "MARKET")).upper() + "_ORDER_REJECT"
        reject = self._tx(kind, rejectReason=code, **{k: v for k, v in order.items() if k != "type"})
        body = {
            "orderRejectTransaction": reject,
            "relatedTransactionIDs": [reject["id"]],
            "lastTransactionID": reject["id"],
            "errorCode": code,
            "errorMessage": message,
        }
        return web.json_response(body, status=status)

    async def _create_order(self, request: web.Request) -> web.Response:
        self.order_posts += 1
        try:
            payload = await request.json()
            order = payload["order"]
            if not isinstance(order, dict):
                raise TypeError
        except (json.JSONDecodeError, KeyError, TypeError):
            return _error(400, 'Invalid JSON body: expected {"order": {...}}', "INVALID_BODY")
        kind = str(order.get("type", "")).upper()
        if kind not in ("MARKET", "LIMIT", "STOP"):
            return self._reject(400, "ORDER_TYPE_INVALID", f"Order type {kind!r} is not supported", order)
        instrument = order.get("instrument", "")
        if instrument not in self.config.instruments:
            return self._reject(400, "INSTRUMENT_NOT_TRADEABLE", "The instrument is not tradeable", order)
        try:
            units = float(order.get("units", "0"))
        except ValueError:
            units = 0.0
        if units == 0 or not math.isfinite(units) or units != int(units):
            return self._reject(400, "UNITS_INVALID", "The units specified are invalid", order)
        tif = order.get("timeInForce", "FOK" if kind == "MARKET" else "GTC")
        valid_tif = ("FOK", "IOC") if kind == "MARKET" else ("GTC", "GFD", "GTD", "FOK", "IOC")
        if tif not in valid_tif:
            return self._reject(400, "TIME_IN_FORCE_INVALID", f"Time in force {tif} is invalid", order)
        price = None
        if kind in ("LIMIT", "STOP"):
            try:
                price = float(order["price"])
            except (KeyError, ValueError):
                return self._reject(400, "PRICE_INVALID", "The price specified is invalid", order)
        client = order.get("clientExtensions") or {}
        cid = client.get("id")
        if cid and self.config.reject_duplicate_pending_ids:
            for existing in self.orders.values():
                if existing.get("clientExtensions", {}).get("id") == cid and existing["state"] == "PENDING":
                    return self._reject(
                        400,
                        "CLIENT_ORDER_ID_ALREADY_EXISTS",
                        "The client Order ID specified is already assigned to another pending Order",
                        order,
                    )
        now = self.now_s()
        create = self._tx(
            f"{kind}_ORDER",
            instrument=instrument,
            units=order["units"],
            timeInForce=tif,
            positionFill=order.get("positionFill", "DEFAULT"),
            reason="CLIENT_ORDER",
            **({"price": order["price"]} if price is not None else {}),
            **({"priceBound": order["priceBound"]} if "priceBound" in order else {}),
            **({"clientExtensions": client} if client else {}),
        )
        record: dict[str, Any] = {
            "id": create["id"],
            "createTime": create["time"],
            "type": kind,
            "instrument": instrument,
            "units": order["units"],
            "timeInForce": tif,
            "positionFill": order.get("positionFill", "DEFAULT"),
            "state": "PENDING",
            **({"price": order["price"]} if price is not None else {}),
            **({"clientExtensions": client} if client else {}),
        }
        self.orders[record["id"]] = record
        if cid:
            self.created_by_client_id[cid] += 1
        body: dict[str, Any] = {"orderCreateTransaction": create}
        bid, ask = self.bid_ask(instrument, math.floor(now))
        market = ask if units > 0 else bid
        fills_now = (
            kind == "MARKET"
            or (kind == "LIMIT" and price is not None and (market <= price if units > 0 else market >= price))
            or (kind == "STOP" and price is not None and (market >= price if units > 0 else market <= price))
        )
        if fills_now:
            fill = self._fill(record, market)
            body["orderFillTransaction"] = fill
        elif kind == "MARKET" or tif in ("FOK", "IOC"):
            cancel = self._tx("ORDER_CANCEL", orderID=record["id"], reason="MARKET_HALTED")
            record.update(
                state="CANCELLED", cancellingTransactionID=cancel["id"], cancelledTime=cancel["time"]
            )
            body["orderCancelTransaction"] = cancel
        ids = [tx["id"] for tx in body.values() if isinstance(tx, dict)]
        body["relatedTransactionIDs"] = ids
        body["lastTransactionID"] = ids[-1]
        return web.json_response(body, status=201)

    def _fill(self, record: dict[str, Any], price: float) -> dict[str, Any]:
        units = float(record["units"])
        instrument = record["instrument"]
        pos = self.positions.setdefault(instrument, {"units": 0.0, "avg": 0.0, "pl": 0.0})
        pl = 0.0
        q0 = pos["units"]
        q1 = q0 + units
        if q0 == 0 or math.copysign(1, q0) == math.copysign(1, units):
            pos["avg"] = (abs(q0) * pos["avg"] + abs(units) * price) / abs(q1)
        else:
            closed = min(abs(units), abs(q0))
            pl = closed * (price - pos["avg"]) * math.copysign(1, q0)
            if q1 == 0:
                pos["avg"] = 0.0
            elif math.copysign(1, q1) != math.copysign(1, q0):
                pos["avg"] = price
        pos["units"] = q1
        pos["pl"] += pl
        self.balance += pl
        self.realized_pl += pl
        d = self._digits(instrument)
        fill = self._tx(
            "ORDER_FILL",
            orderID=record["id"],
            instrument=instrument,
            units=record["units"],
            price=f"{price:.{d}f}",
            fullVWAP=f"{price:.{d}f}",
            pl=f"{pl:.4f}",
            financing="0.0000",
            commission="0.0000",
            accountBalance=f"{self.balance:.4f}",
            reason=f"{record['type']}_ORDER",
            **(
                {"clientOrderID": record["clientExtensions"]["id"]}
                if record.get("clientExtensions", {}).get("id")
                else {}
            ),
        )
        record.update(state="FILLED", fillingTransactionID=fill["id"], filledTime=fill["time"])
        record["tradeOpenedID"] = fill["id"]
        return fill

    def _lookup(self, spec: str) -> dict[str, Any] | None:
        if spec.startswith("@"):
            cid = spec[1:]
            matches = [o for o in self.orders.values() if o.get("clientExtensions", {}).get("id") == cid]
            return matches[-1] if matches else None
        return self.orders.get(spec)

    async def _get_order(self, request: web.Request) -> web.Response:
        order = self._lookup(request.match_info["spec"])
        if order is None:
            return _error(404, "The Order specified does not exist", "NO_SUCH_ORDER")
        return web.json_response({"order": order, "lastTransactionID": str(self._next_tx)})

    async def _cancel_order(self, request: web.Request) -> web.Response:
        spec = request.match_info["spec"]
        order = self._lookup(spec)
        if order is None or order["state"] != "PENDING":
            reject = self._tx(
                "ORDER_CANCEL_REJECT",
                orderID=order["id"] if order else "",
                rejectReason="ORDER_DOESNT_EXIST",
                **({"clientOrderID": spec[1:]} if spec.startswith("@") else {}),
            )
            body = {
                "orderCancelRejectTransaction": reject,
                "relatedTransactionIDs": [reject["id"]],
                "lastTransactionID": reject["id"],
                "errorCode": "ORDER_DOESNT_EXIST",
                "errorMessage": "The Order specified does not exist",
            }
            return web.json_response(body, status=404)
        cancel = self._tx(
            "ORDER_CANCEL",
            orderID=order["id"],
            reason="CLIENT_REQUEST",
            **({"clientOrderID": order["clientExtensions"]["id"]} if order.get("clientExtensions") else {}),
        )
        order.update(state="CANCELLED", cancellingTransactionID=cancel["id"], cancelledTime=cancel["time"])
        return web.json_response(
            {
                "orderCancelTransaction": cancel,
                "relatedTransactionIDs": [cancel["id"]],
                "lastTransactionID": cancel["id"],
            }
        )

    async def _get_transaction(self, request: web.Request) -> web.Response:
        tx = self.transactions.get(request.match_info["tx"])
        if tx is None:
            return _error(404, "The Transaction specified does not exist", "NO_SUCH_TRANSACTION")
        return web.json_response({"transaction": tx, "lastTransactionID": str(self._next_tx)})

    # ------------------------------------------------------------------ account

    def _unrealized(self, instrument: str, pos: Mapping[str, float]) -> float:
        bid, ask = self.bid_ask(instrument, math.floor(self.now_s()))
        mark = bid if pos["units"] > 0 else ask
        return pos["units"] * (mark - pos["avg"])

    async def _open_positions(self, request: web.Request) -> web.Response:
        out = []
        for instrument, pos in sorted(self.positions.items()):
            if pos["units"] == 0:
                continue
            upl = self._unrealized(instrument, pos)
            units = pos["units"]
            side = {
                "units": f"{units:.0f}",
                "averagePrice": f"{pos['avg']:.{self._digits(instrument)}f}",
                "pl": f"{pos['pl']:.4f}",
                "unrealizedPL": f"{upl:.4f}",
                "tradeIDs": ["1"],
            }
            empty = {"units": "0", "pl": "0.0000", "unrealizedPL": "0.0000"}
            out.append(
                {
                    "instrument": instrument,
                    "long": side if units > 0 else empty,
                    "short": side if units < 0 else empty,
                    "pl": f"{pos['pl']:.4f}",
                    "unrealizedPL": f"{upl:.4f}",
                    "marginUsed": f"{abs(units) * pos['avg'] * 0.02:.4f}",
                }
            )
        return web.json_response({"positions": out, "lastTransactionID": str(self._next_tx)})

    async def _summary(self, request: web.Request) -> web.Response:
        upl = sum(self._unrealized(i, p) for i, p in self.positions.items() if p["units"])
        margin = sum(abs(p["units"]) * p["avg"] * 0.02 for p in self.positions.values())
        nav = self.balance + upl
        account = {
            "id": self.config.account_id,
            "alias": "Primary",
            "currency": "USD",
            "balance": f"{self.balance:.4f}",
            "NAV": f"{nav:.4f}",
            "unrealizedPL": f"{upl:.4f}",
            "pl": f"{self.realized_pl:.4f}",
            "marginUsed": f"{margin:.4f}",
            "marginAvailable": f"{nav - margin:.4f}",
            "openPositionCount": sum(1 for p in self.positions.values() if p["units"]),
            "pendingOrderCount": sum(1 for o in self.orders.values() if o["state"] == "PENDING"),
            "lastTransactionID": str(self._next_tx),
        }
        return web.json_response({"account": account, "lastTransactionID": str(self._next_tx)})

    # ------------------------------------------------------------------ inspection

    @property
    def duplicate_orders(self) -> int:
        """Orders created beyond the first for the same client id (0 when idempotency holds)."""
        return sum(n - 1 for n in self.created_by_client_id.values() if n > 1)


class _Reply(Exception):
    def __init__(self, status: int, message: str, code: str = "") -> None:
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


def _error(status: int, message: str, code: str = "") -> web.Response:
    body: dict[str, str] = {"errorMessage": message}
    if code:
        body["errorCode"] = code
    return web.json_response(body, status=status)


@web.middleware
async def _json_errors(request: web.Request, handler: Callable[..., Any]) -> web.StreamResponse:
    # OANDA answers every error (unknown path, wrong method included) with a JSON errorMessage body.
    try:
        return await handler(request)
    except _Reply as exc:
        return _error(exc.status, exc.message, exc.code)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        message = {404: "The requested resource was not found", 405: "The method is not allowed"}
        return _error(exc.status, message.get(exc.status, exc.reason))
