"""``alphaloom data stream``: live ingestion from a venue into the store and the event bus.

connector -> stream validator -> store (idempotent upsert) -> bus, through
:class:`alphaloom.data.streaming.StreamPipeline`, whose checkpoint (kept in the store) lets a killed process
restart without losing or duplicating a bar. The paper venue replays the shipped real data as a live feed.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator, Sequence
from typing import Any, Literal

from alphaloom.core.exceptions import ConfigError
from alphaloom.core.timeutil import parse_utc
from alphaloom.jobs.progress import NullProgress, StageProgress
from alphaloom.jobs.venues import make_connector
from alphaloom.jobs.workspace import Workspace

__all__ = ["stream"]


def _make_bus(kind: str, redis_url: str, prefix: str):
    from alphaloom.data.bus import InProcessBus, RedisStreamsBus

    if kind == "memory":
        return InProcessBus()
    if kind == "redis":
        return RedisStreamsBus(redis_url, prefix=prefix)
    raise ConfigError(f"unknown bus {kind!r}; use 'memory' (in-process) or 'redis' (Redis Streams).")


async def _counted(source: AsyncIterator[Any], task) -> AsyncIterator[Any]:
    async for event in source:
        task.advance()
        yield event


def stream(
    ws: Workspace,
    *,
    venue: str,
    symbols: Sequence[str],
    timeframe: str = "1d",
    speed: float = 0.0,
    start: str | None = None,
    end: str | None = None,
    bus: Literal["memory", "redis"] = "memory",
    redis_url: str = "redis://127.0.0.1:6379/0",
    topic: str = "bars",
    venue_config_file: Any = None,
    progress: StageProgress | None = None,
) -> dict[str, Any]:
    """Run live ingestion until the venue's stream ends (a finite replay) or SIGINT/SIGTERM.

    A stop by signal commits what was received and saves the checkpoint; a hard kill loses nothing either:
    the next run skips what the checkpoint covers and re-derives the rest.
    """
    from alphaloom.data.instruments import SAMPLE_INSTRUMENTS
    from alphaloom.data.streaming import PipelineConfig, StreamPipeline
    from alphaloom.data.validator import StreamValidator

    progress = progress or NullProgress()
    if not symbols:
        raise ConfigError("data stream needs --symbols, e.g. --symbols SPY,EURUSD.")
    t_start = parse_utc(start, name="--start") if start else None
    t_end = parse_utc(end, name="--end") if end else None

    async def run() -> dict[str, Any]:
        with ws.open_store() as store:
            store.write_instruments(list(SAMPLE_INSTRUMENTS.values()))
            event_bus = _make_bus(bus, redis_url, prefix=f"alphaloom:{ws.root.name}:")
            connector = make_connector(
                venue,
                symbols,
                config_file=venue_config_file,
                speed=speed,
                timeframe=timeframe,
                start=t_start,
                end=t_end,
            )
            task = progress.task(f"stream {venue}", total=None)
            try:
                async with connector:
                    pipeline = StreamPipeline(
                        _counted(connector.get_real_time_data(list(symbols)), task),
                        validator=StreamValidator(),
                        store=store,
                        bus=event_bus,
                        config=PipelineConfig(name=f"{venue}_{timeframe}", topic=topic, source_label=venue),
                    )
                    loop = asyncio.get_running_loop()
                    for sig in (signal.SIGINT, signal.SIGTERM):
                        with contextlib.suppress(NotImplementedError, RuntimeError):
                            loop.add_signal_handler(sig, pipeline.stop)
                    stats = await pipeline.run()
            finally:
                await event_bus.aclose()
        return {
            "venue": venue,
            "events": stats.events,
            "bars_committed": stats.bars,
            "skipped_already_committed": stats.skipped,
            "quarantined": stats.quarantined,
            "seconds": round(stats.elapsed_s, 3),
        }

    info = asyncio.run(run())
    ws.record("stream", info)
    return info
