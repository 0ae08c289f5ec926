"""The production event bus on Redis Streams (Redis 6.2 or newer).

Redis commands behind each operation:

=================  ==================================================================================
operation          Redis
=================  ==================================================================================
publish            ``XADD <prefix><topic> [MAXLEN ~ n] * v <version> e <json>`` (pipelined in batches)
ensure_group       ``XGROUP CREATE <stream> <group> 0|$ MKSTREAM`` (an existing group is kept)
fetch              ``XAUTOCLAIM`` entries idle for ``claim_idle_ms`` (a crashed consumer's), with their
                   delivery counts from ``XPENDING``; then ``XREADGROUP GROUP <group> <consumer> ... >``
ack                ``XACK``
nack               the reason into ``<stream>:reasons:<group>`` (a hash), then ``XCLAIM ... IDLE
                   claim_idle_ms JUSTID`` so the entry is due for redelivery at once (the delivery count
                   is not raised by this), or the dead-letter move below
dead letter        ``MULTI; XADD <stream>:dead ...; XACK; HDEL; EXEC`` with the original id, group, delivery
                   count and reason
=================  ==================================================================================

Every ``redis`` exception is translated to :class:`~alphaloom.data.bus.BusError` naming the server (never
its password). Keys live under ``prefix``; :meth:`RedisStreamsBus.purge` deletes exactly those.

Surviving a Redis restart: :meth:`RedisStreamsBus.subscribe` rides through an outage of up to
``reconnect_s`` seconds, reconnecting with backoff. With the server's data kept (an append-only file), the
consumer group resumes where it was: messages acknowledged before the outage are not delivered again, those
delivered but not acknowledged are redelivered after ``claim_idle_ms``. A server that lost its data loses
the group too; it is created again (from the oldest retained message) rather than failing for ever.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit, urlunsplit

from alphaloom.core.exceptions import ConfigError
from alphaloom.data.bus.base import (
    SCHEMA_VERSION,
    BusConfig,
    BusError,
    DeadLetter,
    Message,
    PendingInfo,
    check_name,
    decode_event,
    encode_event,
    parse_version,
)

if TYPE_CHECKING:
    from alphaloom.data.storage.redis_cache import RedisTLS

__all__ = ["RedisStreamsBus"]

logger = logging.getLogger(__name__)

_PUBLISH_CHUNK = 1000


class RedisStreamsBus:
    """An :class:`~alphaloom.data.bus.EventBus` on Redis Streams consumer groups.

    Parameters
    ----------
    url
        ``redis://[user:password@]host:port/db`` (or ``rediss://`` for TLS).
    prefix
        Prepended to every key (``"alphaloom:"``): topic ``bars`` is the stream ``alphaloom:bars``.
    config
        :class:`~alphaloom.data.bus.BusConfig` (``claim_idle_ms``, ``max_deliveries``, ``block_ms``,
        ``batch_size``, ``maxlen``).
    client
        A ``redis.asyncio.Redis`` created with ``decode_responses=True`` to use instead of connecting to
        ``url`` (tests, shared pools). The bus then does not close it.
    tls
        :class:`~alphaloom.data.storage.redis_cache.RedisTLS` settings; ``None``: TLS only for ``rediss://``.

    Raises
    ------
    ConfigError
        The ``redis`` package is missing, or ``prefix`` is empty.
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        prefix: str = "alphaloom:",
        config: BusConfig | None = None,
        *,
        client: Any = None,
        tls: RedisTLS | None = None,
    ) -> None:
        try:
            import redis.asyncio as redis_asyncio
            import redis.exceptions as redis_exceptions
        except ImportError as exc:  # pragma: no cover - redis is a dependency of the data layer
            raise ConfigError("RedisStreamsBus needs the redis package: pip install 'redis>=5'.") from exc
        if not isinstance(prefix, str) or not prefix:
            raise ConfigError(f"prefix must be a non-empty string such as 'alphaloom:', got {prefix!r}.")
        self.config = config if config is not None else BusConfig()
        self.prefix = prefix
        self._where = _safe_url(url)
        self._errors = redis_exceptions
        self._owns = client is None
        from alphaloom.data.storage.redis_cache import RedisTLS

        if tls is not None and not isinstance(tls, RedisTLS):
            raise ConfigError(
                f"tls must be a RedisTLS, got {type(tls).__name__}; build it with RedisTLS(...)."
            )
        if client is None:
            url, tls_kwargs = tls.apply(url) if tls is not None else (url, {})
            try:
                client = redis_asyncio.Redis.from_url(url, decode_responses=True, **tls_kwargs)
            except ValueError as exc:
                raise ConfigError(
                    f"Redis URL {_safe_url(url)} is not valid ({exc}); expected e.g. 'redis://127.0.0.1:6379/0'."
                ) from exc
        self._client = client
        self._groups: set[tuple[str, str]] = set()
        self._next_claim: dict[tuple[str, str, str], float] = {}
        self._closed = False

    def __repr__(self) -> str:
        return f"RedisStreamsBus({self._where!r}, prefix={self.prefix!r})"

    # ------------------------------------------------------------------ keys

    def _stream(self, topic: str) -> str:
        return f"{self.prefix}{check_name(topic, 'topic')}"

    def _dead_key(self, topic: str) -> str:
        return f"{self._stream(topic)}:dead"

    def _reasons_key(self, topic: str, group: str) -> str:
        return f"{self._stream(topic)}:reasons:{group}"

    @contextmanager
    def _translate(self, action: str) -> Iterator[None]:
        if self._closed:
            raise BusError(f"the RedisStreamsBus for {self._where} is closed; create a new one.")
        try:
            yield
        except self._errors.RedisError as exc:
            text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise BusError(f"{action} failed on Redis at {self._where}: {text}") from exc

    # ------------------------------------------------------------------ publishing

    async def publish(self, topic: str, event: Mapping[str, Any]) -> str:
        """Append ``event`` to ``topic`` (``XADD``); return its id."""
        (msg_id,) = await self.publish_many(topic, [event])
        return msg_id

    async def publish_many(self, topic: str, events: Sequence[Mapping[str, Any]]) -> list[str]:
        """Append ``events`` in order with pipelined ``XADD`` s; return their ids."""
        stream = self._stream(topic)
        payloads = [encode_event(event) for event in events]
        ids: list[str] = []
        with self._translate(f"publishing to {topic!r}"):
            for start in range(0, len(payloads), _PUBLISH_CHUNK):
                pipe = self._client.pipeline(transaction=False)
                for payload in payloads[start : start + _PUBLISH_CHUNK]:
                    pipe.xadd(stream, {"v": SCHEMA_VERSION, "e": payload}, maxlen=self.config.maxlen)
                ids.extend(str(i) for i in await pipe.execute())
        return ids

    # ------------------------------------------------------------------ consuming

    async def ensure_group(self, topic: str, group: str, *, start: Literal["0", "$"] = "0") -> None:
        """Create ``group`` on ``topic`` (``XGROUP CREATE ... MKSTREAM``) if it does not exist."""
        check_name(group, "group")
        if (topic, group) in self._groups:
            return
        if start not in ("0", "$"):
            raise BusError(
                f"ensure_group(start=...) takes '0' (oldest retained) or '$' (new only), got {start!r}."
            )
        stream = self._stream(topic)
        try:
            with self._translate(f"creating group {group!r} on {topic!r}"):
                await self._client.xgroup_create(stream, group, id=start, mkstream=True)
        except BusError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._groups.add((topic, group))

    async def fetch(
        self, topic: str, group: str, consumer: str, *, count: int = 100, block_ms: int | None = None
    ) -> list[Message]:
        """Up to ``count`` messages: entries due for redelivery first (``XAUTOCLAIM``), then new ones
        (``XREADGROUP``), waiting up to ``block_ms`` (default ``config.block_ms``) when there are none."""
        check_name(consumer, "consumer")
        await self.ensure_group(topic, group)
        wait_ms = self.config.block_ms if block_ms is None else block_ms
        try:
            return await self._fetch(topic, group, consumer, count, wait_ms)
        except BusError as exc:
            if "NOGROUP" in str(exc):  # the server lost its data (restarted without persistence)
                self._groups.discard((topic, group))
            raise

    async def _fetch(self, topic: str, group: str, consumer: str, count: int, wait_ms: int) -> list[Message]:
        deadline = time.monotonic() + wait_ms / 1000
        key = (topic, group, consumer)
        # Check for entries left by crashed consumers at most every half claim interval: an XAUTOCLAIM on
        # every fetch would double the round trips of a busy consumer.
        interval = max(0.005, self.config.claim_idle_ms / 2000)
        while True:
            out: list[Message] = []
            now = time.monotonic()
            if now >= self._next_claim.get(key, 0.0):
                self._next_claim[key] = now + interval
                out.extend(await self._claim(topic, group, consumer, count))
            remaining_ms = int((deadline - time.monotonic()) * 1000)
            if len(out) < count:
                block = None if out or remaining_ms <= 0 else max(1, min(remaining_ms, int(interval * 1000)))
                out.extend(await self._read_new(topic, group, consumer, count - len(out), block))
            if out or time.monotonic() >= deadline:
                return out

    async def subscribe(
        self, topic: str, group: str, consumer: str, *, reconnect_s: float = 30.0
    ) -> AsyncIterator[Message]:
        """Messages for ``consumer`` as they come, fetched ``config.batch_size`` at a time, for ever.

        Breaking out leaves the messages delivered but not acknowledged pending, to be redelivered after
        ``claim_idle_ms`` like those of a crashed consumer. While Redis cannot be reached (a restart), the
        subscription retries with backoff for up to ``reconnect_s`` seconds and then resumes from the group's
        position; an outage longer than that raises :class:`BusError` (0: at once).
        """
        if not reconnect_s >= 0:
            raise ConfigError(f"reconnect_s must be >= 0 seconds, got {reconnect_s!r}.")
        down_since: float | None = None
        delay_s = 0.05
        while True:
            try:
                batch = await self.fetch(topic, group, consumer, count=self.config.batch_size)
            except BusError as exc:
                if not self._transient(exc):
                    raise
                now = time.monotonic()
                if down_since is None:
                    down_since = now
                    logger.warning("%s; reconnecting for up to %g s", exc, reconnect_s)
                if now - down_since >= reconnect_s:
                    raise BusError(
                        f"Redis at {self._where} stayed unreachable for {now - down_since:.1f} s "
                        f"(reconnect_s={reconnect_s:g}): {exc}. Start the server (or raise reconnect_s) and "
                        "subscribe again: the group resumes from its last acknowledged message."
                    ) from exc
                await asyncio.sleep(delay_s)
                delay_s = min(delay_s * 2, 1.0)
                continue
            if down_since is not None:
                logger.warning(
                    "Redis at %s is back after %.1f s; %s resumes in group %r",
                    self._where,
                    time.monotonic() - down_since,
                    consumer,
                    group,
                )
                down_since, delay_s = None, 0.05
            for msg in batch:
                yield msg

    def _transient(self, exc: BusError) -> bool:
        """Whether ``exc`` came from the server being away (or having lost the group), not from a bad call."""
        cause = exc.__cause__
        errors = self._errors
        return isinstance(cause, errors.ConnectionError | errors.TimeoutError) or "NOGROUP" in str(exc)

    async def _read_new(
        self, topic: str, group: str, consumer: str, count: int, block: int | None
    ) -> list[Message]:
        stream = self._stream(topic)
        with self._translate(f"reading {topic!r} for group {group!r}"):
            response = await self._client.xreadgroup(group, consumer, {stream: ">"}, count=count, block=block)
        entries = _stream_entries(response, stream)
        out = []
        for msg_id, fields in entries:
            msg = await self._to_message(topic, group, consumer, msg_id, fields, 1)
            if msg is not None:
                out.append(msg)
        return out

    async def _claim(self, topic: str, group: str, consumer: str, count: int) -> list[Message]:
        stream = self._stream(topic)
        with self._translate(f"claiming idle messages of {topic!r}"):
            response = await self._client.xautoclaim(
                stream, group, consumer, min_idle_time=self.config.claim_idle_ms, start_id="0-0", count=count
            )
            entries = [(str(i), f) for i, f in (response[1] if len(response) > 1 else [])]
            if not entries:
                return []
            pipe = self._client.pipeline(transaction=False)
            for msg_id, _ in entries:
                pipe.xpending_range(stream, group, msg_id, msg_id, 1)
            pipe.hmget(self._reasons_key(topic, group), [i for i, _ in entries])
            *infos, reasons = await pipe.execute()
        out = []
        for (msg_id, fields), info, reason in zip(entries, infos, reasons, strict=True):
            deliveries = int(info[0]["times_delivered"]) if info else 1
            if deliveries > self.config.max_deliveries:
                why = reason or f"not acknowledged within {self.config.claim_idle_ms} ms of delivery"
                done = deliveries - 1  # this delivery does not happen
                await self._dead_letter(
                    topic, group, msg_id, fields, done, f"{why} (after {done} deliveries)"
                )
                continue
            msg = await self._to_message(topic, group, consumer, msg_id, fields, deliveries)
            if msg is not None:
                out.append(msg)
        return out

    async def _to_message(
        self, topic: str, group: str, consumer: str, msg_id: str, fields: Any, deliveries: int
    ) -> Message | None:
        fields = fields or {}
        version = parse_version(fields.get("v"))
        payload = fields.get("e")
        if not fields:
            # Trimmed by MAXLEN after delivery: nothing to hand over; acknowledge so it leaves the PEL.
            with self._translate(f"acknowledging a trimmed entry of {topic!r}"):
                await self._client.xack(self._stream(topic), group, msg_id)
            return None
        if version > SCHEMA_VERSION or version == 0 or payload is None:
            why = (
                f"schema version {version} is newer than {SCHEMA_VERSION}, which this alphaloom reads; "
                f"upgrade the consumer"
                if version > SCHEMA_VERSION
                else "envelope without a schema version or payload"
            )
            await self._dead_letter(topic, group, msg_id, fields, deliveries, why)
            return None
        try:
            event = decode_event(payload)
        except BusError as exc:
            await self._dead_letter(topic, group, msg_id, fields, deliveries, str(exc))
            return None
        return Message(topic, group, consumer, msg_id, event, deliveries, version)

    # ------------------------------------------------------------------ acknowledging

    async def ack(self, msg: Message) -> bool:
        """``XACK`` the message; False if it was not pending in its group."""
        stream = self._stream(msg.topic)
        with self._translate(f"acknowledging on {msg.topic!r}"):
            pipe = self._client.pipeline(transaction=False)
            pipe.xack(stream, msg.group, msg.id)
            pipe.hdel(self._reasons_key(msg.topic, msg.group), msg.id)
            acked, _ = await pipe.execute()
        return bool(acked)

    async def ack_many(self, msgs: Sequence[Message]) -> int:
        """``XACK`` several messages (one command per topic and group); return how many were pending."""
        groups: dict[tuple[str, str], list[str]] = {}
        for msg in msgs:
            groups.setdefault((msg.topic, msg.group), []).append(msg.id)
        if not groups:
            return 0
        with self._translate("acknowledging messages"):
            pipe = self._client.pipeline(transaction=False)
            for (topic, group), ids in groups.items():
                pipe.xack(self._stream(topic), group, *ids)
                pipe.hdel(self._reasons_key(topic, group), *ids)
            results = await pipe.execute()
        return sum(int(r) for r in results[::2])

    async def nack(self, msg: Message, reason: str) -> bool:
        """Record a failed delivery: due for redelivery at once, or dead-lettered after ``max_deliveries``.
        False if the message was not pending."""
        stream = self._stream(msg.topic)
        reason = str(reason) or "nacked"
        with self._translate(f"rejecting a message of {msg.topic!r}"):
            info = await self._client.xpending_range(stream, msg.group, msg.id, msg.id, 1)
            if not info:
                return False
            deliveries = int(info[0]["times_delivered"])
            if deliveries >= self.config.max_deliveries:
                fields = await self._client.xrange(stream, msg.id, msg.id, count=1)
                body = fields[0][1] if fields else {}
                await self._dead_letter(
                    msg.topic,
                    msg.group,
                    msg.id,
                    body,
                    deliveries,
                    f"{reason} (after {deliveries} deliveries)",
                )
                return True
            pipe = self._client.pipeline(transaction=False)
            pipe.hset(self._reasons_key(msg.topic, msg.group), msg.id, reason)
            pipe.xclaim(
                stream,
                msg.group,
                info[0]["consumer"],
                0,
                [msg.id],
                idle=self.config.claim_idle_ms,
                justid=True,
            )
            await pipe.execute()
        for key in self._next_claim:
            if key[0] == msg.topic and key[1] == msg.group:
                self._next_claim[key] = 0.0
        return True

    async def _dead_letter(
        self, topic: str, group: str, msg_id: str, fields: Mapping[str, Any], deliveries: int, reason: str
    ) -> None:
        record = {
            "v": fields.get("v", ""),
            "e": fields.get("e", ""),
            "id": msg_id,
            "group": group,
            "deliveries": deliveries,
            "reason": reason,
        }
        with self._translate(f"dead-lettering a message of {topic!r}"):
            pipe = self._client.pipeline(transaction=True)
            pipe.xadd(self._dead_key(topic), record)
            pipe.xack(self._stream(topic), group, msg_id)
            pipe.hdel(self._reasons_key(topic, group), msg_id)
            await pipe.execute()

    # ------------------------------------------------------------------ inspection and lifecycle

    async def pending(self, topic: str, group: str) -> list[PendingInfo]:
        """The group's pending entries (``XPENDING``), oldest first."""
        stream = self._stream(topic)
        out: list[PendingInfo] = []
        start = "-"
        try:
            with self._translate(f"listing pending messages of {topic!r}"):
                while True:
                    rows = await self._client.xpending_range(stream, group, start, "+", 1000)
                    out.extend(
                        PendingInfo(
                            str(r["message_id"]),
                            str(r["consumer"]),
                            int(r["times_delivered"]),
                            int(r["time_since_delivered"]),
                        )
                        for r in rows
                    )
                    if len(rows) < 1000:
                        return out
                    start = f"({rows[-1]['message_id']}"
        except BusError as exc:
            if "NOGROUP" in str(exc):
                return []
            raise

    async def dead_letters(self, topic: str) -> list[DeadLetter]:
        """The topic's dead letters (``XRANGE <stream>:dead``), oldest first."""
        with self._translate(f"reading the dead letters of {topic!r}"):
            rows = await self._client.xrange(self._dead_key(topic))
        out = []
        for dead_id, f in rows:
            try:
                event: dict[str, Any] | None = decode_event(f.get("e", ""))
            except BusError:
                event = None
            out.append(
                DeadLetter(
                    topic,
                    str(f.get("group", "")),
                    str(f.get("id", "")),
                    event,
                    int(f.get("deliveries", 0) or 0),
                    str(f.get("reason", "")),
                    str(dead_id),
                    str(f.get("e", "")),
                )
            )
        return out

    async def purge(self) -> int:
        """Delete every key under this bus's prefix (streams, dead letters, reasons); return how many.

        Only keys starting with ``prefix`` are touched, never the rest of the database.
        """
        pattern = _glob_escape(self.prefix) + "*"
        deleted = 0
        with self._translate("purging the bus's keys"):
            batch: list[str] = []
            async for key in self._client.scan_iter(match=pattern, count=500):
                if str(key).startswith(self.prefix):
                    batch.append(key)
                if len(batch) >= 500:
                    deleted += int(await self._client.delete(*batch))
                    batch = []
            if batch:
                deleted += int(await self._client.delete(*batch))
        self._groups.clear()
        return deleted

    async def ping(self) -> bool:
        """Whether the server answers."""
        with self._translate("ping"):
            return bool(await self._client.ping())

    async def aclose(self) -> None:
        """Close the connection pool (when the bus created it). Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        if self._owns:
            try:
                await self._client.aclose()
            except self._errors.RedisError as exc:
                raise BusError(f"closing the connection to Redis at {self._where} failed: {exc}") from exc

    async def __aenter__(self) -> RedisStreamsBus:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def _stream_entries(response: Any, stream: str) -> list[tuple[str, Any]]:
    """Entries of ``stream`` in an XREADGROUP reply (RESP2 list or RESP3 map)."""
    if not response:
        return []
    if isinstance(response, dict):  # RESP3: {stream: [[id, fields], ...]} (or one more level of nesting)
        body = response.get(stream) or []
        if len(body) == 1 and body[0] and isinstance(body[0][0], list | tuple):
            body = body[0]
        return [(str(i), f) for i, f in body]
    for name, entries in response:
        if str(name) == stream:
            return [(str(i), f) for i, f in entries]
    return []


def _safe_url(url: str) -> str:
    """``url`` without its user and password, for messages."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable url>"
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _glob_escape(text: str) -> str:
    return "".join(f"\\{c}" if c in "*?[]\\" else c for c in text)
