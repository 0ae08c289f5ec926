"""Live ingestion: events -> validator -> (aggregator) -> store -> bus, resumable without loss or duplicates.

:class:`StreamPipeline` reads any async iterator of :class:`~alphaloom.core.types.Bar`, ``Quote`` or
``Trade`` events (a connector's ``get_real_time_data``, the paper exchange, a replay of stored bars) and, per
event:

1. skips it if the checkpoint says its bar is already committed (a restart replays from before that);
2. checks it with a :class:`~alphaloom.data.validator.StreamValidator`; failures go to the store's
   quarantine table with the reason;
3. passes it through an :class:`~alphaloom.data.aggregator.IncrementalBarBuilder`, when one is given, which
   turns ticks or fine bars into completed bars;
4. hands completed bars to a writer task, which commits them to the :class:`~alphaloom.data.storage.BarStore`
   (an idempotent upsert), then publishes them to the :class:`~alphaloom.data.bus.EventBus`, then advances
   the checkpoint.

Delivery guarantees
-------------------
Commit order is store, then bus, then checkpoint, so a crash at any point (the task cancelled, an exception,
the process killed) loses nothing: a restarted pipeline skips what the checkpoint covers and recomputes the
rest. The store ends up holding each bar exactly once (upserts are idempotent). The bus may see a bar again
after a crash (at-least-once), with the same ``id`` (``"<symbol>|<timeframe>|<ts>"``), so consumers
de-duplicate on it.

Throughput
----------
The writer commits whatever has accumulated since its last commit (group commit): under load, batches grow
to amortise the store's per-transaction cost; when quiet, each bar is committed at once. Store calls run in a
worker thread (DuckDB releases the GIL while it works), so validation and aggregation continue meanwhile; the
reading loop briefly releases the GIL while a store call is in flight, or the thread would wait a whole
switch interval for it after every C call. The store is only ever used by one thread at a time, and a
cancelled pipeline waits for an in-flight store call to finish before it returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, NamedTuple, Protocol, TypeVar, runtime_checkable

import numpy as np
import pandas as pd
from pydantic import Field, field_validator

from alphaloom.core.config import ComponentConfig
from alphaloom.core.exceptions import ConfigError, DataFormatError, DataNotFoundError
from alphaloom.core.types import Bar, Quote, Trade
from alphaloom.data._frames import TS_DTYPE
from alphaloom.data.aggregator import IncrementalBarBuilder, parse_timeframe
from alphaloom.data.bus.base import EventBus, check_name
from alphaloom.data.storage.base import BarStore, check_frame_name
from alphaloom.data.validator import StreamValidator

__all__ = [
    "Checkpoint",
    "CheckpointEntry",
    "MemoryCheckpoint",
    "PipelineConfig",
    "PipelineStats",
    "StoreCheckpoint",
    "StreamPipeline",
    "bar_event",
    "bar_event_id",
]

StreamEvent = Bar | Quote | Trade
T = TypeVar("T")

_YIELD_EVERY = 128


class CheckpointEntry(NamedTuple):
    """The last committed bar of a symbol: its open time, close and timeframe."""

    ts: datetime
    close: float
    timeframe: str


@runtime_checkable
class Checkpoint(Protocol):
    """Where a pipeline keeps its progress: the last committed bar per symbol."""

    def load(self) -> dict[str, CheckpointEntry]:
        """The saved entries by symbol (empty when nothing was saved yet)."""
        ...

    def save(self, entries: Mapping[str, CheckpointEntry]) -> None:
        """Replace the entries of these symbols (others are kept)."""
        ...


class StoreCheckpoint:
    """A checkpoint kept in the store as the derived frame ``stream_checkpoint_<name>``.

    One row per symbol (``symbol, timeframe, ts, close, saved_at``), written with
    :meth:`BarStore.write_frame <alphaloom.data.storage.BarStore.write_frame>` replacing only the saved
    symbols' rows, so pipelines with different names never overwrite each other.

    Parameters
    ----------
    store
        The store the pipeline commits bars to.
    name
        The pipeline's name: lower-case letters, digits and underscores.
    """

    def __init__(self, store: BarStore, name: str = "stream") -> None:
        self.store = store
        self.table = check_frame_name(f"stream_checkpoint_{name}")

    def __repr__(self) -> str:
        return f"StoreCheckpoint({self.store!r}, table={self.table!r})"

    def load(self) -> dict[str, CheckpointEntry]:
        try:
            frame = self.store.read_frame(self.table)
        except DataNotFoundError:
            return {}
        return {
            str(r.symbol): CheckpointEntry(
                pd.Timestamp(r.ts).to_pydatetime(), float(r.close), str(r.timeframe)
            )
            for r in frame.itertuples(index=False)
        }

    def save(self, entries: Mapping[str, CheckpointEntry]) -> None:
        if not entries:
            return
        symbols = list(entries)
        frame = pd.DataFrame(
            {
                "symbol": pd.Series(symbols, dtype="str"),
                "timeframe": pd.Series([entries[s].timeframe for s in symbols], dtype="str"),
                "ts": pd.to_datetime([entries[s].ts for s in symbols], utc=True).astype(TS_DTYPE),
                "close": np.array([entries[s].close for s in symbols], dtype="float64"),
                "saved_at": pd.Timestamp.now(tz="UTC"),
            }
        )
        self.store.write_frame(self.table, frame, replace_symbols=True)


class MemoryCheckpoint:
    """A checkpoint in a dict: for tests and for pipelines whose progress need not survive the process."""

    def __init__(self, entries: Mapping[str, CheckpointEntry] | None = None) -> None:
        self.entries: dict[str, CheckpointEntry] = dict(entries or {})

    def load(self) -> dict[str, CheckpointEntry]:
        return dict(self.entries)

    def save(self, entries: Mapping[str, CheckpointEntry]) -> None:
        self.entries.update(entries)


class PipelineConfig(ComponentConfig):
    """Settings of :class:`StreamPipeline`.

    Parameters
    ----------
    name
        Names the checkpoint (``stream_checkpoint_<name>`` in the store); lower-case letters, digits, ``_``.
    topic
        Bus topic the committed bars are published to.
    source_label
        Recorded as the ``source`` of the stored bars.
    max_batch
        The most bars waiting for the writer; the pipeline stops reading events while this many wait
        (back-pressure), and a commit takes at most this many.
    checkpoint_interval_ms
        Save the checkpoint after a commit when this long has passed since the last save (0: after every
        commit), and always at the end. A later checkpoint only means a longer, idempotent replay after a
        crash.
    flush_partial_on_end
        When the source ends, commit the builder's incomplete last bars too (a finite replay whose tail is
        known complete). Off by default: a bar is only committed complete.
    record_latency
        Keep per-event latencies in the stats (for benchmarks): processing (event in, to bars handed to the
        writer) and commit (event in, to its bar stored and published).
    """

    name: str = Field(default="stream", pattern=r"^[a-z][a-z0-9_]{0,40}$")
    topic: str = "bars"
    source_label: str = "stream"
    max_batch: int = Field(default=20_000, ge=1)
    checkpoint_interval_ms: float = Field(default=250.0, ge=0)
    flush_partial_on_end: bool = False
    record_latency: bool = False

    @field_validator("topic")
    @classmethod
    def _topic_name(cls, value: str) -> str:
        return check_name(value, "topic")


@dataclass
class PipelineStats:
    """Counts (and optionally latencies) of one :meth:`StreamPipeline.run`.

    Attributes
    ----------
    events
        Events read from the source.
    skipped
        Events skipped because the checkpoint already covers their bar.
    quarantined
        Events the validator refused (recorded in the store's quarantine).
    bars
        Bars committed to the store and published.
    commits, checkpoints
        Store commits and checkpoint saves.
    late
        Events the builder could not use (older than a bar it had already emitted).
    elapsed_s
        Wall time of the run.
    process_latency_ns, commit_latency_ns
        Per-event latencies when ``record_latency`` is on (see :class:`PipelineConfig`).
    """

    events: int = 0
    skipped: int = 0
    quarantined: int = 0
    bars: int = 0
    commits: int = 0
    checkpoints: int = 0
    late: int = 0
    elapsed_s: float = 0.0
    process_latency_ns: list[int] = field(default_factory=list, repr=False)
    commit_latency_ns: list[int] = field(default_factory=list, repr=False)

    @property
    def events_per_s(self) -> float:
        return self.events / self.elapsed_s if self.elapsed_s > 0 else math.nan

    def latency_ms(self, which: str = "process", q: float = 0.99) -> float:
        """A quantile of the recorded latencies in milliseconds (NaN when none were recorded)."""
        values = self.process_latency_ns if which == "process" else self.commit_latency_ns
        return float(np.quantile(np.asarray(values), q)) / 1e6 if values else math.nan


def bar_event_id(bar: Bar) -> str:
    """The bus id of a bar event, ``"<symbol>|<timeframe>|<ts ISO>"``: the same on every (re)publication."""
    return f"{bar.symbol}|{bar.timeframe}|{bar.ts.isoformat()}"


def bar_event(bar: Bar, extras: Mapping[str, float] | None = None) -> dict[str, Any]:
    """The bus event of a committed bar (JSON-ready; missing volume and NaN extras as ``None``)."""
    ts = bar.ts.isoformat()
    event: dict[str, Any] = {
        "type": "bar",
        "id": f"{bar.symbol}|{bar.timeframe}|{ts}",
        "symbol": bar.symbol,
        "timeframe": bar.timeframe,
        "ts": ts,
        "open": bar.open,
        "high": bar.high,
        "low": bar.low,
        "close": bar.close,
        "volume": bar.volume,
    }
    if extras:
        event["extras"] = {
            k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in extras.items()
        }
    return event


class _Pending(NamedTuple):
    bar: Bar
    extras: Mapping[str, float] | None
    t_in: int


class StreamPipeline:
    """Validate, aggregate, store and publish a stream of market events; resumable from a checkpoint.

    Parameters
    ----------
    source
        Any async iterator (or iterable) of Bar, Quote or Trade events, in time order per symbol, one
        timeframe per symbol for bars.
    validator
        Judges each event; refused events are quarantined in the store with the reason.
    store
        Where committed bars go (``write_bars``, an idempotent upsert) and where the quarantine and, by
        default, the checkpoint live.
    bus
        Where committed bars are published (topic ``config.topic``), after the store commit.
    builder
        Turns ticks or fine bars into coarser completed bars. Without one, the source must yield completed
        Bars, which are stored as they are.
    checkpoint
        Progress store; defaults to :class:`StoreCheckpoint` ``(store, config.name)``.
    config
        :class:`PipelineConfig`.

    Examples
    --------
    A restart after a crash resumes where the last run's commits end::

        pipeline = StreamPipeline(connector.get_real_time_data(["BTCUSD"]), validator=StreamValidator(),
                                  store=store, bus=bus, builder=IncrementalBarBuilder("1m"))
        stats = await pipeline.run()
    """

    def __init__(
        self,
        source: AsyncIterator[StreamEvent] | AsyncIterable[StreamEvent],
        *,
        validator: StreamValidator,
        store: BarStore,
        bus: EventBus,
        builder: IncrementalBarBuilder | None = None,
        checkpoint: Checkpoint | None = None,
        config: PipelineConfig | None = None,
    ) -> None:
        if not isinstance(source, AsyncIterable) and not hasattr(source, "__anext__"):
            raise ConfigError(
                f"StreamPipeline needs an async iterator of Bar, Quote or Trade events, got "
                f"{type(source).__name__}; wrap a plain iterable in an async generator."
            )
        self.config = config if config is not None else PipelineConfig()
        self.source = source
        self.validator = validator
        self.store = store
        self.bus = bus
        self.builder = builder
        self.checkpoint = checkpoint if checkpoint is not None else StoreCheckpoint(store, self.config.name)
        self.stats = PipelineStats()
        self._committed: dict[str, CheckpointEntry] = {}
        self._unsaved: dict[str, CheckpointEntry] = {}
        self._buffer: list[_Pending] = []
        self._stop = False
        self._running = False
        self._wake = asyncio.Event()  # bars are waiting for the writer
        self._room = asyncio.Event()  # the writer took a batch
        self._closing = False
        self._last_save = 0.0
        self._store_calls = 0

    def __repr__(self) -> str:
        return f"StreamPipeline(name={self.config.name!r}, topic={self.config.topic!r}, store={self.store!r})"

    # ------------------------------------------------------------------ control

    def stop(self) -> None:
        """Ask a running pipeline to finish: it stops reading, commits what it has, saves the checkpoint."""
        self._stop = True

    def resume_points(self) -> dict[str, datetime]:
        """Per symbol, the earliest event time a restarted source must replay from (read from the checkpoint).

        With a builder, that is the open of the bucket after the last committed bar; without, the end of the
        last committed bar. A source that replays from earlier is fine: the pipeline skips what is covered.
        """
        # While running, the store belongs to the writer: answer from memory instead of reading it.
        entries = dict(self._committed) if self._running else self.checkpoint.load()
        return {symbol: entry.ts + self._bar_step(entry.timeframe) for symbol, entry in entries.items()}

    # ------------------------------------------------------------------ the loop

    async def run(self) -> PipelineStats:
        """Run until the source ends or :meth:`stop` is called; return the stats.

        Raises
        ------
        ConfigError
            Ticks arrive without a builder, or the pipeline is already running.
        DataFormatError
            The source yields something that is not a Bar, Quote or Trade.
        StorageError, BusError
            The store or the bus failed; what was not committed is recomputed on the next run.
        """
        if self._running:
            raise ConfigError(
                "this StreamPipeline is already running; create another one to run in parallel."
            )
        self._running = True
        self._stop = False
        self._closing = False
        self._wake, self._room = asyncio.Event(), asyncio.Event()
        started = time.perf_counter()
        self._committed = await self._store_call(self.checkpoint.load)
        self._unsaved = {}
        self._last_save = time.monotonic()
        writer = asyncio.create_task(self._write_loop(), name=f"stream-writer-{self.config.name}")
        iterator = self.source.__aiter__() if hasattr(self.source, "__aiter__") else self.source
        try:
            await self._read_loop(iterator, writer)
            if self.builder is not None and self.config.flush_partial_on_end and not self._stop:
                now = time.perf_counter_ns()
                for done in self.builder.flush():
                    self._buffer.append(_Pending(done.bar, done.extras, now))
            self._closing = True
            self._wake.set()
            await writer
            await self._save_checkpoint(force=True)
        except BaseException:
            await _cancel_and_wait(writer)
            raise
        finally:
            self._running = False
            self.stats.elapsed_s = time.perf_counter() - started
            if self.builder is not None:
                self.stats.late = self.builder.late
            aclose = getattr(iterator, "aclose", None)
            if aclose is not None:
                # A source failing to close must not hide the run's outcome.
                with contextlib.suppress(Exception):
                    await aclose()
        return self.stats

    async def _read_loop(self, iterator: Any, writer: asyncio.Task[None]) -> None:
        stats = self.stats
        committed = self._committed
        builder = self.builder
        check = self.validator.check
        buffer_append = self._buffer.append
        record = self.config.record_latency
        process_latency = stats.process_latency_ns
        clock = time.perf_counter_ns
        max_batch = self.config.max_batch
        wake = self._wake
        step = builder.step if builder is not None else None
        seeded: set[tuple[type, str]] = set()
        t_in = 0
        async for event in iterator:
            if record:
                t_in = clock()
            stats.events += 1
            kind = type(event)
            symbol = getattr(event, "symbol", "")
            if (kind, symbol) not in seeded:
                self._first_event(event, kind, seeded)
            entry = committed.get(symbol)
            if entry is not None:
                covered = event.ts < entry.ts + step if step is not None else event.ts <= entry.ts
                if covered:
                    stats.skipped += 1
                    continue
            verdict = check(event)
            if not verdict.ok:
                stats.quarantined += 1
                continue
            if builder is not None:
                done = builder.update(event)
                for item in done:
                    buffer_append(_Pending(item.bar, item.extras, t_in))
                if done:
                    wake.set()
            else:
                buffer_append(_Pending(event, None, t_in))
                wake.set()
            if record:
                process_latency.append(clock() - t_in)
            if len(self._buffer) >= max_batch:
                await self._wait_for_room(writer)
            elif stats.events % _YIELD_EVERY == 0:
                if writer.done():
                    writer.result()  # the writer failed: stop reading, surface its error
                if self._store_calls:
                    # A store call runs in a thread that needs the GIL back after each C call; a busy event
                    # loop keeps it for the whole switch interval (5 ms) each time, stretching a 15 ms commit
                    # to most of a second. Releasing it here brings commits back to their own cost.
                    time.sleep(0)
                # A replayed source may never suspend; give the writer a turn to start or finish a commit.
                await asyncio.sleep(0)
            if self._stop:
                break

    def _first_event(self, event: StreamEvent, kind: type, seeded: set[tuple[type, str]]) -> None:
        if kind not in (Bar, Quote, Trade):
            raise DataFormatError(f"StreamPipeline takes Bar, Quote or Trade events, got {kind.__name__}.")
        if kind is not Bar and self.builder is None:
            raise ConfigError(
                f"the source yielded a {kind.__name__} for {event.symbol} but the pipeline has no builder; "
                f"pass builder=IncrementalBarBuilder('1m') (or another timeframe) to turn ticks into bars."
            )
        seeded.add((kind, event.symbol))
        entry = self._committed.get(event.symbol)
        if entry is not None and self.validator.last_good(event.symbol, kind=kind) is None:
            # After a restart, check the first new event against the last committed price and time.
            self.validator.seed(event.symbol, entry.ts, entry.close, kind=kind)

    async def _wait_for_room(self, writer: asyncio.Task[None]) -> None:
        room, wake = self._room, self._wake
        while len(self._buffer) >= self.config.max_batch:
            room.clear()
            wake.set()
            waiter = asyncio.ensure_future(room.wait())
            await asyncio.wait({waiter, writer}, return_when=asyncio.FIRST_COMPLETED)
            if not waiter.done():
                waiter.cancel()
            if writer.done():
                writer.result()  # re-raise the writer's failure here
                raise ConfigError("the stream writer stopped unexpectedly.")

    # ------------------------------------------------------------------ the writer

    async def _write_loop(self) -> None:
        wake, room = self._wake, self._room
        while True:
            await wake.wait()
            wake.clear()
            while self._buffer:
                batch = self._buffer[: self.config.max_batch]
                del self._buffer[: len(batch)]
                room.set()
                await self._commit(batch)
            if self._closing:
                return

    async def _commit(self, batch: Sequence[_Pending]) -> None:
        frames = _bars_frames(batch)
        for timeframe, frame in frames.items():
            await self._store_call(
                self.store.write_bars, frame, timeframe=timeframe, source=self.config.source_label
            )
        await self.bus.publish_many(self.config.topic, [bar_event(p.bar, p.extras) for p in batch])
        last = {p.bar.symbol: p.bar for p in batch}  # bars of a symbol come in time order
        for symbol, bar in last.items():
            entry = CheckpointEntry(bar.ts, bar.close, bar.timeframe)
            self._committed[symbol] = entry
            self._unsaved[symbol] = entry
        stats = self.stats
        stats.commits += 1
        stats.bars += len(batch)
        if self.config.record_latency:
            now = time.perf_counter_ns()
            stats.commit_latency_ns.extend(now - p.t_in for p in batch)
        await self._flush_quarantine()
        await self._save_checkpoint()

    async def _flush_quarantine(self) -> None:
        if self.validator.pending_quarantine:
            rows = self.validator.take_quarantine()
            await self._store_call(self.store.quarantine, rows)

    async def _save_checkpoint(self, *, force: bool = False) -> None:
        if force:
            await self._flush_quarantine()
        if not self._unsaved:
            return
        due = (time.monotonic() - self._last_save) * 1000 >= self.config.checkpoint_interval_ms
        if not (force or due):
            return
        entries, self._unsaved = self._unsaved, {}
        try:
            await self._store_call(self.checkpoint.save, entries)
        except BaseException:
            # Not saved: keep them for the next attempt (a later checkpoint only lengthens the replay).
            entries.update(self._unsaved)
            self._unsaved = entries
            raise
        self._last_save = time.monotonic()
        self.stats.checkpoints += 1

    async def _store_call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        self._store_calls += 1
        try:
            return await _in_thread(fn, *args, **kwargs)
        finally:
            self._store_calls -= 1

    def _bar_step(self, timeframe: str) -> timedelta:
        if self.builder is not None:
            return self.builder.step
        return parse_timeframe(timeframe)


# ---------------------------------------------------------------------- helpers


def _bars_frames(batch: Sequence[_Pending]) -> dict[str, pd.DataFrame]:
    """The batch's bars as one bars frame per timeframe (a source normally has one)."""
    by_tf: dict[str, list[Bar]] = {}
    for p in batch:
        by_tf.setdefault(p.bar.timeframe, []).append(p.bar)
    out = {}
    for timeframe, bars in by_tf.items():
        out[timeframe] = pd.DataFrame(
            {
                "symbol": pd.Series([b.symbol for b in bars], dtype="str"),
                "ts": pd.DatetimeIndex([b.ts for b in bars]).tz_convert("UTC").astype(TS_DTYPE),
                "open": np.fromiter((b.open for b in bars), "float64", len(bars)),
                "high": np.fromiter((b.high for b in bars), "float64", len(bars)),
                "low": np.fromiter((b.low for b in bars), "float64", len(bars)),
                "close": np.fromiter((b.close for b in bars), "float64", len(bars)),
                "volume": np.fromiter(
                    (math.nan if b.volume is None else b.volume for b in bars), "float64", len(bars)
                ),
            }
        )
    return out


async def _in_thread(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run ``fn`` in a worker thread; if cancelled, wait for it to finish before re-raising.

    The store must never be used by two threads at once, and a restarted pipeline reuses it at once.
    """
    task = asyncio.ensure_future(asyncio.to_thread(fn, *args, **kwargs))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        await asyncio.wait({task})
        raise


async def _cancel_and_wait(task: asyncio.Task[Any]) -> None:
    if not task.done():
        task.cancel()
    try:
        await asyncio.wait({task})
    except asyncio.CancelledError:
        await asyncio.wait({task})
        raise
    if not task.cancelled() and task.exception() is not None:
        task.exception()  # retrieved: the read loop's error is the one that propagates
