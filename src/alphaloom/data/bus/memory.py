"""An in-process event bus on asyncio, with the semantics of Redis Streams consumer groups.

It is the embedded default: no server, nothing persisted, one event loop. Topics are bounded: a topic retains
at most ``config.maxsize`` messages that some consumer group still needs, and ``publish`` waits
(back-pressure) until consumers acknowledge. Messages no group needs any more are dropped; while a topic has
no group at all, it keeps the newest ``maxsize`` messages for the first group to come, without blocking the
publisher. Everything else (acknowledgements, redelivery after ``claim_idle_ms``, ``nack``, dead letters after
``max_deliveries``, JSON envelopes) behaves as in :class:`~alphaloom.data.bus.RedisStreamsBus`.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, Literal

from alphaloom.data.bus.base import (
    SCHEMA_VERSION,
    BackpressureError,
    BusConfig,
    BusError,
    DeadLetter,
    Message,
    PendingInfo,
    check_name,
    decode_event,
    encode_event,
)

__all__ = ["InProcessBus"]

_COMPACT_AT = 4096


class _Entry:
    __slots__ = ("id", "orphan", "payload", "refs", "version")

    def __init__(self, id_: str, payload: str, refs: int) -> None:
        self.id = id_
        self.payload = payload
        self.version = SCHEMA_VERSION
        self.refs = refs  # groups that still need the message
        self.orphan = refs == 0  # published before any group existed


class _Pending:
    __slots__ = ("consumer", "delivered_ms", "deliveries", "reason", "seq")

    def __init__(self, seq: int, consumer: str, now_ms: float) -> None:
        self.seq = seq
        self.consumer = consumer
        self.deliveries = 1
        self.delivered_ms = now_ms
        self.reason = ""


class _Group:
    __slots__ = ("cursor", "next_claim_ms", "pending")

    def __init__(self, cursor: int) -> None:
        self.cursor = cursor  # absolute sequence number of the next new message
        self.pending: dict[str, _Pending] = {}
        self.next_claim_ms = math.inf


class _Topic:
    __slots__ = ("base", "changed", "dead", "groups", "head", "last_ms", "log", "seq", "waiting")

    def __init__(self) -> None:
        self.log: list[_Entry] = []
        self.head = 0  # index in log of the oldest retained entry
        self.base = 0  # absolute sequence number of log[0]
        self.groups: dict[str, _Group] = {}
        self.dead: list[DeadLetter] = []
        self.last_ms = 0
        self.seq = 0
        self.changed = asyncio.Condition()  # new messages, room freed, or a nack
        self.waiting = 0  # tasks waiting on ``changed``; waking is skipped when none

    @property
    def end(self) -> int:
        return self.base + len(self.log)

    @property
    def retained(self) -> int:
        return len(self.log) - self.head

    def entry(self, seq: int) -> _Entry:
        return self.log[seq - self.base]

    def next_id(self, now_ms: int) -> str:
        if now_ms <= self.last_ms:
            self.seq += 1
        else:
            self.last_ms, self.seq = now_ms, 0
        return f"{self.last_ms}-{self.seq}"

    def trim(self) -> bool:
        log, head, moved = self.log, self.head, False
        while head < len(log) and log[head].refs <= 0 and not log[head].orphan:
            head += 1
            moved = True
        if head >= _COMPACT_AT and head * 2 >= len(log):
            del log[:head]
            self.base += head
            head = 0
        self.head = head
        return moved


class InProcessBus:
    """The embedded :class:`~alphaloom.data.bus.EventBus`: asyncio, bounded topics, consumer groups.

    Parameters
    ----------
    config
        :class:`~alphaloom.data.bus.BusConfig`; ``maxsize`` bounds each topic, ``publish_timeout_s`` limits
        how long ``publish`` waits for room.

    Notes
    -----
    Use it from one event loop. It is not durable: a process restart loses what it holds, which is why the
    stream pipeline commits to the store before publishing and publishes again after a restart.

    Examples
    --------
    >>> import asyncio
    >>> async def demo():
    ...     bus = InProcessBus()
    ...     await bus.publish("bars", {"symbol": "SPY"})
    ...     (msg,) = await bus.fetch("bars", "writers", "w1")
    ...     return msg.event, await bus.ack(msg)
    >>> asyncio.run(demo())
    ({'symbol': 'SPY'}, True)
    """

    def __init__(self, config: BusConfig | None = None) -> None:
        self.config = config if config is not None else BusConfig()
        self._topics: dict[str, _Topic] = {}
        self._closed = False

    def __repr__(self) -> str:
        return f"InProcessBus(topics={sorted(self._topics)})"

    # ------------------------------------------------------------------ publishing

    async def publish(self, topic: str, event: Mapping[str, Any]) -> str:
        """Append ``event`` to ``topic`` and return its id; wait while the topic is full.

        Raises
        ------
        BackpressureError
            The topic stayed full for ``config.publish_timeout_s``.
        BusError
            The event is not JSON-serialisable, or the bus is closed.
        """
        (msg_id,) = await self.publish_many(topic, [event])
        return msg_id

    async def publish_many(self, topic: str, events: Sequence[Mapping[str, Any]]) -> list[str]:
        """Append ``events`` in order and return their ids, waking consumers once; waits while full."""
        payloads = [encode_event(event) for event in events]
        t = self._topic(topic)
        ids = []
        now_ms = int(time.time() * 1000)
        for payload in payloads:
            if t.groups and t.retained >= self.config.maxsize:
                await _wake(t)
                await self._wait_for_room(topic, t)
                now_ms = int(time.time() * 1000)
            refs = len(t.groups)
            entry = _Entry(t.next_id(now_ms), payload, refs)
            t.log.append(entry)
            if not refs and t.retained > self.config.maxsize:  # nobody listens yet: keep the newest maxsize
                t.log[t.head].orphan = False
                t.trim()
            ids.append(entry.id)
        await _wake(t)
        return ids

    async def _wait_for_room(self, name: str, t: _Topic) -> None:
        timeout = self.config.publish_timeout_s
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        async with t.changed:
            while t.groups and t.retained >= self.config.maxsize:
                remaining = None if deadline is None else deadline - loop.time()
                if remaining is not None and remaining <= 0:
                    raise BackpressureError(
                        f"topic {name!r} stayed full ({t.retained} of maxsize {self.config.maxsize} messages "
                        f"unacknowledged) for {timeout:g} s; consumers are not keeping up. Acknowledge "
                        f"faster, add consumers, or raise BusConfig.maxsize."
                    )
                t.waiting += 1
                try:
                    await asyncio.wait_for(t.changed.wait(), remaining)
                except TimeoutError:
                    continue
                finally:
                    t.waiting -= 1

    # ------------------------------------------------------------------ consuming

    async def ensure_group(self, topic: str, group: str, *, start: Literal["0", "$"] = "0") -> None:
        """Create ``group`` on ``topic`` if absent: from the oldest retained message (``"0"``) or new only."""
        t = self._topic(topic)
        check_name(group, "group")
        if group in t.groups:
            return
        if start not in ("0", "$"):
            raise BusError(
                f"ensure_group(start=...) takes '0' (oldest retained) or '$' (new only), got {start!r}."
            )
        if start == "$":
            t.groups[group] = _Group(t.end)
            return
        for entry in t.log[t.head :]:
            if entry.orphan:
                entry.orphan, entry.refs = False, 1
            else:
                entry.refs += 1
        t.groups[group] = _Group(t.base + t.head)

    async def fetch(
        self, topic: str, group: str, consumer: str, *, count: int = 100, block_ms: int | None = None
    ) -> list[Message]:
        """Up to ``count`` messages: those due for redelivery first, then new ones in order.

        Parameters
        ----------
        topic, group, consumer
            Where to read; the group is created (from the oldest retained message) if absent.
        count
            The most messages to return.
        block_ms
            How long to wait when there are none; defaults to ``config.block_ms``. 0 returns at once.
        """
        check_name(consumer, "consumer")
        await self.ensure_group(topic, group)
        t = self._topics[topic]
        g = t.groups[group]
        wait_ms = self.config.block_ms if block_ms is None else block_ms
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_ms / 1000
        while True:
            out, freed = self._claim(topic, t, g, group, consumer, count)
            if freed:
                await _wake(t)
            if len(out) < count:
                out.extend(self._new(topic, t, g, group, consumer, count - len(out)))
            remaining = deadline - loop.time()
            if out or remaining <= 0:
                return out
            until_claim = (g.next_claim_ms - _now_ms()) / 1000
            async with t.changed:
                t.waiting += 1
                try:
                    await asyncio.wait_for(t.changed.wait(), max(0.0, min(remaining, until_claim)))
                except TimeoutError:
                    pass
                finally:
                    t.waiting -= 1

    async def subscribe(self, topic: str, group: str, consumer: str) -> AsyncIterator[Message]:
        """Messages for ``consumer`` as they come, fetched ``config.batch_size`` at a time, for ever.

        Breaking out leaves the messages delivered but not acknowledged pending, to be redelivered after
        ``claim_idle_ms`` like those of a crashed consumer.
        """
        while True:
            for msg in await self.fetch(topic, group, consumer, count=self.config.batch_size):
                yield msg

    def _claim(
        self, name: str, t: _Topic, g: _Group, group: str, consumer: str, count: int
    ) -> tuple[list[Message], bool]:
        now = _now_ms()
        if not g.pending or now < g.next_claim_ms:
            return [], False
        idle = self.config.claim_idle_ms
        out: list[Message] = []
        freed = False
        due = [(k, p) for k, p in g.pending.items() if now - p.delivered_ms >= idle]
        for key, p in due:
            if len(out) >= count:
                break
            p.deliveries += 1
            if p.deliveries > self.config.max_deliveries:
                reason = p.reason or f"not acknowledged within {idle} ms of delivery"
                p.deliveries -= 1  # this delivery did not happen
                freed |= self._dead_letter(
                    name, t, g, group, key, p, f"{reason} (after {p.deliveries} deliveries)"
                )
                continue
            p.consumer, p.delivered_ms = consumer, now
            msg = self._message(name, t, g, group, consumer, key, p)
            if msg is not None:
                out.append(msg)
        g.next_claim_ms = min((p.delivered_ms + idle for p in g.pending.values()), default=math.inf)
        return out, freed

    def _new(self, name: str, t: _Topic, g: _Group, group: str, consumer: str, count: int) -> list[Message]:
        out: list[Message] = []
        end = min(t.end, g.cursor + count)
        if g.cursor >= end:
            return out
        now = _now_ms()
        for seq in range(g.cursor, end):
            entry = t.entry(seq)
            p = _Pending(seq, consumer, now)
            g.pending[entry.id] = p
            msg = self._message(name, t, g, group, consumer, entry.id, p)
            if msg is not None:
                out.append(msg)
        g.cursor = end
        g.next_claim_ms = min(g.next_claim_ms, now + self.config.claim_idle_ms)
        return out

    def _message(
        self, name: str, t: _Topic, g: _Group, group: str, consumer: str, key: str, p: _Pending
    ) -> Message | None:
        entry = t.entry(p.seq)
        if entry.version > SCHEMA_VERSION:
            reason = (
                f"schema version {entry.version} is newer than {SCHEMA_VERSION}, which this alphaloom "
                f"reads; upgrade the consumer"
            )
            self._dead_letter(name, t, g, group, key, p, reason)
            return None
        return Message(name, group, consumer, key, decode_event(entry.payload), p.deliveries, entry.version)

    # ------------------------------------------------------------------ acknowledging

    async def ack(self, msg: Message) -> bool:
        """Acknowledge ``msg``; False if it was not pending in its group."""
        t = self._topics.get(msg.topic)
        g = t.groups.get(msg.group) if t is not None else None
        p = g.pending.pop(msg.id, None) if g is not None else None
        if p is None or t is None:
            return False
        if self._release(t, p):
            await _wake(t)
        return True

    async def ack_many(self, msgs: Sequence[Message]) -> int:
        """Acknowledge several messages; return how many were pending."""
        done = 0
        touched: dict[str, _Topic] = {}
        for msg in msgs:
            t = self._topics.get(msg.topic)
            g = t.groups.get(msg.group) if t is not None else None
            p = g.pending.pop(msg.id, None) if g is not None else None
            if p is None or t is None:
                continue
            done += 1
            t.entry(p.seq).refs -= 1
            touched[msg.topic] = t
        for t in touched.values():
            if t.trim():
                await _wake(t)
        return done

    async def nack(self, msg: Message, reason: str) -> bool:
        """Record a failed delivery of ``msg``: redeliver it at once, or dead-letter it after
        ``max_deliveries``. False if it was not pending."""
        t = self._topics.get(msg.topic)
        g = t.groups.get(msg.group) if t is not None else None
        p = g.pending.get(msg.id) if g is not None else None
        if p is None or t is None or g is None:
            return False
        p.reason = str(reason) or "nacked"
        if p.deliveries >= self.config.max_deliveries:
            reason = f"{p.reason} (after {p.deliveries} deliveries)"
            self._dead_letter(msg.topic, t, g, msg.group, msg.id, p, reason)
        else:
            p.delivered_ms = -math.inf
            g.next_claim_ms = -math.inf
        await _wake(t)
        return True

    @staticmethod
    def _release(t: _Topic, p: _Pending) -> bool:
        """Drop one group's claim on the message; True if that freed room in the topic."""
        t.entry(p.seq).refs -= 1
        return t.trim()

    def _dead_letter(
        self, name: str, t: _Topic, g: _Group, group: str, key: str, p: _Pending, reason: str
    ) -> bool:
        entry = t.entry(p.seq)
        try:
            event: dict[str, Any] | None = decode_event(entry.payload)
        except BusError:
            event = None
        t.dead.append(
            DeadLetter(name, group, key, event, p.deliveries, reason, f"{len(t.dead) + 1}", entry.payload)
        )
        g.pending.pop(key, None)
        return self._release(t, p)

    # ------------------------------------------------------------------ inspection and lifecycle

    async def pending(self, topic: str, group: str) -> list[PendingInfo]:
        """The group's delivered, unacknowledged messages, oldest first."""
        t = self._topics.get(topic)
        g = t.groups.get(group) if t is not None else None
        if g is None:
            return []
        now = _now_ms()
        rows = sorted(g.pending.items(), key=lambda kv: kv[1].seq)
        return [
            PendingInfo(k, p.consumer, p.deliveries, int(now - p.delivered_ms) if p.delivered_ms > 0 else 0)
            for k, p in rows
        ]

    async def dead_letters(self, topic: str) -> list[DeadLetter]:
        """The topic's dead letters, oldest first."""
        t = self._topics.get(topic)
        return list(t.dead) if t is not None else []

    def retained(self, topic: str) -> int:
        """Messages ``topic`` holds now (what back-pressure counts)."""
        t = self._topics.get(topic)
        return t.retained if t is not None else 0

    async def aclose(self) -> None:
        """Close the bus; later calls raise :class:`~alphaloom.data.bus.BusError`."""
        self._closed = True

    async def __aenter__(self) -> InProcessBus:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def _topic(self, topic: str) -> _Topic:
        if self._closed:
            raise BusError("the InProcessBus is closed; create a new one.")
        t = self._topics.get(topic)
        if t is None:
            t = self._topics[check_name(topic, "topic")] = _Topic()
        return t


async def _wake(t: _Topic) -> None:
    if t.waiting:
        async with t.changed:
            t.changed.notify_all()


def _now_ms() -> float:
    return time.monotonic() * 1000.0
