"""Coinbase Advanced Trade (spot, and perpetual-style futures where the account has them) through ccxt.

:class:`CoinbaseConnector` is :class:`~alphaloom.data.connectors.ccxt_venue.CcxtConnector` configured for
ccxt's ``coinbase`` exchange, plus what Coinbase does its own way:

- symbols ``BTCUSD`` <-> ``BTC/USD`` (ccxt) <-> ``BTC-USD`` (Coinbase product id); the perpetual-style
  futures (``BTC PERP``, product ids such as ``BIP-20DEC30-CDE``) are ``BTCUSD-PERP`` <-> ``BTC/USD:USD``;
- the client order id travels as ``client_order_id`` (ccxt drops a unified ``clientOrderId`` for Coinbase and
  sends a random one), so Coinbase itself refuses to create a second order for it;
- a lost order is found by listing orders (``/orders/historical/batch``) for the product since shortly before
  it was sent, following the response ``cursor``;
- balances come from the Advanced Trade accounts endpoint (``/api/v3/brokerage/accounts``), candles at most
  300 per request, time in force ``gtc``, ``ioc`` or ``fok`` (Coinbase has no ``day`` orders).

Credentials: a CDP API key (``ALPHALOOM_COINBASE_API_KEY`` = ``organizations/.../apiKeys/...`` and
``ALPHALOOM_COINBASE_API_SECRET`` = its EC private key in PEM; requests are signed with an ES256 JWT) or a
legacy key and HMAC secret. ccxt tells them apart by their form.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field, field_validator

from alphaloom.core.types import TimeInForce
from alphaloom.data.connectors.base import ConnectorConfig
from alphaloom.data.connectors.ccxt_venue import CcxtConfig, CcxtConnector

__all__ = ["CoinbaseConfig", "CoinbaseConnector"]


class CoinbaseConfig(CcxtConfig):
    """Settings of :class:`CoinbaseConnector` (see :class:`CcxtConfig` for every key).

    ``exchange_id`` is fixed to ccxt's ``coinbase`` (or its alias ``coinbaseadvanced``); candles are fetched
    300 per request, Coinbase's documented page size in ccxt.
    """

    exchange_id: str = "coinbase"
    ohlcv_page_limit: int | None = Field(300, ge=1, le=350)

    @field_validator("exchange_id")
    @classmethod
    def _coinbase_only(cls, v: str) -> str:
        if v not in ("coinbase", "coinbaseadvanced"):
            raise ValueError(
                f"CoinbaseConfig is for ccxt's 'coinbase' exchange, got {v!r}; use "
                f"CcxtConfig(exchange_id={v!r}) with CcxtConnector for other venues"
            )
        return v


class CoinbaseConnector(CcxtConnector):
    """Coinbase Advanced Trade through ccxt's async client.

    Parameters
    ----------
    config
        A :class:`CoinbaseConfig`; ``CoinbaseConfig()`` talks to ``https://api.coinbase.com``.
    secrets, http, clock, session
        As for :class:`~alphaloom.data.connectors.ccxt_venue.CcxtConnector`.

    Examples
    --------
    >>> async with CoinbaseConnector(CoinbaseConfig()) as coinbase:  # doctest: +SKIP
    ...     bars = await coinbase.get_historical_data("BTCUSD", "1d", start, end)
    ...     result = await risk.submit(order, coinbase)   # the RiskManager checks, then places it
    """

    name: ClassVar[str] = "coinbase"
    config_class: ClassVar[type[ConnectorConfig]] = CoinbaseConfig
    client_order_id_param: ClassVar[str] = "client_order_id"
    supported_time_in_force: ClassVar[frozenset[TimeInForce] | None] = frozenset(
        {TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK}
    )
    quote_book_depth: ClassVar[int | None] = 1
    default_options: ClassVar[dict[str, Any]] = {
        # Advanced Trade balances (v3) rather than the retail app's wallets (v2).
        "fetchBalance": "v3PrivateGetBrokerageAccounts",
    }

    def _id_guess(self, unified: str) -> str:
        return unified.replace("/", "-")

    def _unified_from_id_guess(self, venue_id: str) -> str:
        base, sep, quote = venue_id.upper().partition("-")
        if sep and base and quote.isalnum():
            return f"{base}/{quote}"
        return super()._unified_from_id_guess(venue_id)

    def _next_order_page(
        self, orders: list[dict[str, Any]], since: int | None, params: dict[str, Any]
    ) -> tuple[int | None, dict[str, Any]] | None:
        # Coinbase lists newest first and pages with a cursor. ccxt leaves the cursor on the raw record of the
        # page's first order, then sorts the page by time, so the record carrying it can be anywhere.
        cursor = next((o["info"]["cursor"] for o in orders if (o.get("info") or {}).get("cursor")), None)
        if not cursor or cursor == params.get("cursor"):
            return None
        return since, {**params, "cursor": cursor}
