"""WebSocket fan-out: topics (``signals``, ``fills``, ``risk``), one bounded queue per client.

A message is ``{"type": <topic or "hello"/"error">, "data": {...}, "sent_at": <unix seconds>}``
(``sent_at``: when the hub published it, so clients can measure delivery delay). :meth:`Hub.publish` never
blocks the publisher: it encodes the message once (orjson) and puts the same text on every subscriber's
queue, so a fan-out to many clients costs one encoding, not one per client. A client whose queue is full
(it stopped reading) is disconnected with close code 1013 ("try again later") and the drop is logged and
counted: a slow client cannot stall the others, and no client silently misses messages while staying
connected.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson

__all__ = ["TOPICS", "Hub", "Subscription"]

TOPICS = ("signals", "fills", "risk")
logger = logging.getLogger(__name__)


@dataclass(eq=False)
class Subscription:
    topic: str
    queue: asyncio.Queue[str | None]
    overflowed: bool = False


@dataclass
class Hub:
    """Publish/subscribe of JSON messages per topic.

    Parameters
    ----------
    max_queue
        Messages buffered per client before it is dropped as too slow.
    """

    max_queue: int = 1000
    _subs: dict[str, set[Subscription]] = field(default_factory=lambda: {t: set() for t in TOPICS})
    published: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TOPICS, 0))
    dropped_clients: int = 0
    last: dict[str, dict[str, Any]] = field(default_factory=dict)

    def count(self, topic: str) -> int:
        return len(self._subs[topic])

    @contextmanager
    def subscribe(self, topic: str) -> Iterator[Subscription]:
        sub = Subscription(topic, asyncio.Queue(self.max_queue))
        self._subs[topic].add(sub)
        try:
            yield sub
        finally:
            self._subs[topic].discard(sub)

    def publish(self, topic: str, data: dict[str, Any]) -> int:
        """Queue ``{"type": topic, "data": data, "sent_at": now}`` for every subscriber; returns how many
        got it."""
        message = {"type": topic, "data": data, "sent_at": time.time()}
        text = orjson.dumps(message, option=orjson.OPT_SERIALIZE_NUMPY).decode()
        self.published[topic] += 1
        self.last[topic] = message
        delivered = 0
        for sub in list(self._subs[topic]):
            if sub.overflowed:
                continue
            try:
                sub.queue.put_nowait(text)
                delivered += 1
            except asyncio.QueueFull:
                sub.overflowed = True
                self.dropped_clients += 1
                logger.warning("websocket client on %s dropped: %d messages unread", topic, self.max_queue)
                # make room for the end marker so the sender loop wakes up and closes the socket
                sub.queue.get_nowait()
                sub.queue.put_nowait(None)
        return delivered
