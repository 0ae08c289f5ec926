"""A copy-me template for a new venue connector. It is a template, not a working connector.

Every hook below raises :class:`NotImplementedError` on purpose. To add a venue:

1. Copy this file to ``alphaloom/data/connectors/<venue>.py`` and rename ``TemplateConnector`` and
   ``TemplateConfig``.
2. Fill the **required** hooks. The base class (:class:`~alphaloom.data.connectors.base.ExchangeConnector`)
   already validates every argument, verifies the risk manager's approval of every order before
   ``_submit_order`` can run, rate-limits, retries with backoff, runs the circuit breaker, makes
   ``place_order`` idempotent and reconnects/backfills/de-duplicates streams: do none of that here (and never
   override ``place_order``: that would skip the risk check).
3. Override the **optional** hooks where the venue needs them (symbol mapping, error translation, cleanup).
4. Register the class: ``CONNECTORS`` in ``base.py`` for a built-in venue, or
   ``register_connector("<venue>", "package.module:Class")`` for a plug-in.
5. Add one fixture factory for it to ``tests/data/connectors/test_contract.py`` (against a local test
   server speaking the venue's protocol; no test reaches the internet).

Rules for hooks:

- Arguments arrive checked: venue symbols (from :meth:`to_venue_symbol`), aware UTC datetimes with
  ``start < end``, a timeframe from :data:`~alphaloom.data.connectors.base.TIMEFRAMES`.
- Raise vendor exceptions freely (httpx, json, the SDK's): the base translates them, first with
  :meth:`_translate_error`, then with generic rules (timeouts, network errors, HTTP 401/403/429/5xx).
- Return canonical symbols in every result and event (``from_venue_symbol``).
- Credentials: ``self.secrets.get("api_key")`` returns a :class:`~alphaloom.core.secrets.Secret`; call
  ``.reveal()`` only where it is sent. Never log or format the plain value.
- HTTP: use ``self.http`` (an ``httpx.AsyncClient``, injected by tests or created for ``config.base_url``).
- Times: ``self.clock.now()`` for result timestamps.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import ClassVar

import pandas as pd

from alphaloom.core.exceptions import AlphaloomError
from alphaloom.core.types import Account, Order, OrderResult, Position
from alphaloom.data.connectors.base import ConnectorConfig, ExchangeConnector, StreamEvent

__all__ = ["TemplateConfig", "TemplateConnector"]


class TemplateConfig(ConnectorConfig):
    """Settings of the template venue: add the venue's own keys here (account id, environment, ...)."""

    venue: str = "template"
    base_url: str = "https://api.example.com"
    stream_url: str = "wss://stream.example.com"


class TemplateConnector(ExchangeConnector):
    """A template, not a connector: every hook raises ``NotImplementedError`` until filled in."""

    name: ClassVar[str] = "template"
    config_class: ClassVar[type[ConnectorConfig]] = TemplateConfig

    # ----------------------------------------------------------------- required hooks

    async def _fetch_bars(
        self, venue_symbol: str, timeframe: str, start: datetime, end: datetime
    ) -> pd.DataFrame:
        """Bars of ``venue_symbol`` in ``[start, end)``.

        Page through the venue's candles endpoint until ``end`` (the base trims to ``[start, end)``, sorts,
        removes duplicate timestamps and sets the canonical symbol). Return a frame with columns ``ts``
        (UTC, bar open time), ``open``, ``high``, ``low``, ``close`` and, where the venue has it, ``volume``.
        Only completed bars.
        """
        raise NotImplementedError("template: request the venue's candles and return a bars frame")

    def _stream(self, venue_symbols: Sequence[str]) -> AsyncIterator[StreamEvent]:
        """Connect to the venue's stream and yield :class:`Bar`, :class:`Quote` or :class:`Trade` events.

        Write it as an ``async def`` generator. Let it end or raise when the connection drops: the base
        reconnects with backoff, backfills missed bars through :meth:`_fetch_bars` and drops duplicates.
        Yield completed bars only, with ``timeframe`` set, and canonical symbols.
        """
        raise NotImplementedError("template: open the venue's stream and yield events")

    async def _submit_order(self, order: Order) -> OrderResult:
        """Send ``order`` once; pass ``order.client_order_id`` as the venue's client id where supported.

        Map ``order.symbol`` with :meth:`to_venue_symbol`. Raise
        :class:`~alphaloom.core.exceptions.OrderRejectedError` when the venue refuses the order (it is
        never retried). Return the venue's answer as an :class:`OrderResult` with the same client id.
        """
        raise NotImplementedError("template: POST the order and return an OrderResult")

    async def _find_order(self, client_order_id: str) -> OrderResult | None:
        """The order with ``client_order_id``, or ``None`` when the venue has none.

        The base calls this before re-sending an order after a failure, so it must not return ``None`` for
        an order the venue holds: look it up by client id (or by a tag/label the venue stores for you).
        """
        raise NotImplementedError("template: look the order up by client id")

    async def _cancel_order(self, client_order_id: str) -> OrderResult:
        """Cancel the order; for an order already finished return its final state rather than failing."""
        raise NotImplementedError("template: cancel the order and return its state")

    async def _fetch_positions(self) -> dict[str, Position]:
        """Open positions keyed by canonical symbol."""
        raise NotImplementedError("template: fetch positions")

    async def _fetch_account(self) -> Account:
        """The account's cash, equity and buying power in its currency."""
        raise NotImplementedError("template: fetch the account")

    # ----------------------------------------------------------------- optional hooks

    def to_venue_symbol(self, symbol: str) -> str:
        """Canonical -> venue symbol, e.g. ``"BTCUSD"`` -> ``"BTC-USD"``; identity by default.

        Raise :class:`~alphaloom.core.exceptions.UnknownSymbolError` for a symbol the venue does not list.
        """
        return symbol

    def from_venue_symbol(self, venue_symbol: str) -> str:
        """Venue -> canonical symbol, the inverse of :meth:`to_venue_symbol`."""
        return venue_symbol

    def _translate_error(self, exc: Exception) -> AlphaloomError | None:
        """Map a vendor exception to ours, or return ``None`` for the generic rules.

        Typical: an error body that says "insufficient funds" -> ``OrderRejectedError``; a venue-specific
        throttling code -> ``RateLimitError(retry_after_s=...)``; "invalid token" ->
        ``AuthenticationError``. Never put credentials in the message.
        """
        return None

    def _stream_finished(self) -> bool:
        """True only when the stream ended because there is no more data (finite replays)."""
        return False

    async def _aclose(self) -> None:
        """Close websockets or sessions the connector opened (the owned HTTP client is closed by the base)."""
        return None
