"""Bar feeds: how the trading engine receives each timestamp's closed bars.

A feed hands over all bars of one timestamp at once, so the engine decides on a complete cross-section, and
it must do so *before* the venue can fill anything on the following bar:

- :class:`PaperFeed` drives the paper exchange one replay step at a time (paced at its ``speed``): the
  engine's orders, sent after a step's bars, can only fill on the next step, exactly as the backtester's
  decide-at-close, fill-at-next-open rule.
- :class:`StreamFeed` groups a live venue's real-time bar stream by timestamp: a group is complete when a
  bar of a later timestamp arrives or ``grace_s`` seconds pass without another bar.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Sequence
from typing import Any

from alphaloom.core.exceptions import ConfigError, DataFormatError
from alphaloom.core.types import Bar
from alphaloom.data.connectors.paper import PaperExchange

__all__ = ["BarFeed", "PaperFeed", "StreamFeed"]

logger = logging.getLogger(__name__)


class BarFeed(ABC):
    """Source of closed bars, one timestamp at a time."""

    async def next_bars(self) -> list[Bar] | None:
        """The bars of the next timestamp (all symbols that have one), or ``None`` when the feed is over.

        Raises
        ------
        ConnectorError
            The market data could not be fetched (the engine degrades to its cached bars and retries).
        DataFormatError
            The feed's hook returned bars of several timestamps, or something that is not a Bar.
        """
        bars = await self._next()
        if bars is None:
            return None
        if not all(isinstance(b, Bar) for b in bars):
            raise DataFormatError(f"{type(self).__name__} must return Bar objects.")
        if len({b.ts for b in bars}) > 1:
            raise DataFormatError(
                f"{type(self).__name__} returned bars of several timestamps in one group: "
                f"{sorted({b.ts.isoformat() for b in bars})}."
            )
        return bars

    @abstractmethod
    async def _next(self) -> list[Bar] | None:
        """The next timestamp's bars, ``[]`` when a step had none, or ``None`` at the end."""

    async def aclose(self) -> None:
        """Release the feed's resources."""
        return None


class PaperFeed(BarFeed):
    """Replays a :class:`~alphaloom.data.connectors.paper.PaperExchange` step by step.

    Parameters
    ----------
    exchange
        The paper exchange (its journal, if any, records every step before it is played).
    symbols
        Symbols to hand over (others are played but not returned); all when ``None``.
    speed
        0 = as fast as possible; otherwise simulated seconds per wall-clock second (``1`` = real time).
    """

    def __init__(
        self, exchange: PaperExchange, symbols: Sequence[str] | None = None, *, speed: float | None = None
    ) -> None:
        if not isinstance(exchange, PaperExchange):
            raise ConfigError(f"PaperFeed drives a PaperExchange, got {type(exchange).__name__}.")
        self.exchange = exchange
        self.symbols = None if symbols is None else frozenset(symbols)
        self.speed = exchange.config.speed if speed is None else float(speed)
        if not self.speed >= 0:
            raise ConfigError(f"speed must be >= 0, got {speed!r}.")

    async def _next(self) -> list[Bar] | None:
        before = self.exchange.clock.now()
        bars = self.exchange.step()
        if bars is None:
            return None
        gap_s = (self.exchange.clock.now() - before).total_seconds()
        await asyncio.sleep(gap_s / self.speed if self.speed > 0 else 0)
        return [b for b in bars if self.symbols is None or b.symbol in self.symbols]


class StreamFeed(BarFeed):
    """Groups a venue's real-time bars by timestamp.

    Parameters
    ----------
    stream
        ``connector.get_real_time_data(symbols)``: it reconnects and backfills by itself.
    grace_s
        Seconds to wait for more bars of the current timestamp before handing the group over.
    """

    def __init__(self, stream: AsyncIterator[Any], *, grace_s: float = 2.0) -> None:
        if not grace_s > 0:
            raise ConfigError(f"grace_s must be > 0, got {grace_s!r}.")
        self._stream = aiter(stream)
        self._grace_s = grace_s
        self._pending: asyncio.Task[Any] | None = None
        self._held: Bar | None = None
        self._done = False

    async def _next(self) -> list[Bar] | None:
        group: list[Bar] = []
        if self._held is not None:
            group.append(self._held)
            self._held = None
        while not self._done:
            if self._pending is None:
                self._pending = asyncio.ensure_future(anext(self._stream))
            # Wait without cancelling: a cancelled anext() would close the venue's stream.
            done, _ = await asyncio.wait({self._pending}, timeout=self._grace_s if group else None)
            if not done:
                break
            task, self._pending = self._pending, None
            try:
                event = task.result()
            except StopAsyncIteration:
                self._done = True
                break
            if not isinstance(event, Bar):
                continue  # quotes and trades are not bars; this feed trades on closed bars only
            if group and event.ts > group[0].ts:
                self._held = event
                break
            if group and event.ts < group[0].ts:
                logger.warning(
                    "late bar of %s at %s arrived after its timestamp was handed over; not traded on",
                    event.symbol,
                    event.ts.isoformat(),
                )
                continue
            group.append(event)
        if not group and self._done:
            return None
        return group

    async def aclose(self) -> None:
        if self._pending is not None:
            self._pending.cancel()
            with contextlib.suppress(BaseException):
                await self._pending
        aclose = getattr(self._stream, "aclose", None)
        if aclose is not None:
            with contextlib.suppress(Exception):
                await aclose()
