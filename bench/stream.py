"""Stream pipeline throughput and per-event latency: validator -> aggregator -> store -> in-process bus.

Two workloads, each through a DuckDB store (a file, and ``:memory:``) and the InProcessBus, with a consumer
group acknowledging every published bar:

- ``ticks``: trade ticks (8 symbols, random walks, 1 ms apart) built into 1-second bars; most events
  end in the builder, one in ~125 completes a bar that is committed and published.
- ``bars``: completed 1-minute bars passed through unchanged: every event is stored and published, so this
  one is bound by JSON (about 4 us to encode and 3 us to decode a bar event) and the store's per-row cost.

Each workload also runs fed at a fixed rate (``ticks_paced`` at 100,000 events/s, ``bars_paced`` at 20,000):
latency at a given load, rather than at saturation, where batches (and so commit latency) grow with the
backlog.

How the targets are reached: events are validated and aggregated in the event loop (about 1-2 us each);
completed bars go to a writer task that commits whatever accumulated since its last commit in one
``write_bars`` upsert (group commit) in a worker thread, then publishes them with one ``publish_many``. A
commit costs ~15 ms whatever its size, so batches grow with load instead of the store setting the pace.

Latencies: *process* is the time from an event entering the pipeline until it is validated, aggregated and
handed to the writer; *commit* is the time until its bar is durable in the store and published. The peer,
``loop``, is a bare ``async for`` over the same events: the floor any pipeline pays.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import Figures, parse_args
from alphaloom.core.types import Bar, Trade
from alphaloom.data.aggregator import IncrementalBarBuilder
from alphaloom.data.bus import BusConfig, InProcessBus
from alphaloom.data.storage import DuckDBBarStore
from alphaloom.data.streaming import PipelineConfig, PipelineStats, StreamPipeline
from alphaloom.data.validator import StreamValidator

T0 = datetime(2024, 1, 1, tzinfo=UTC)
SYMBOLS = ("BTCUSD", "ETHUSD", "SOLUSD", "LTCUSD", "XRPUSD", "ADAUSD", "DOTUSD", "LINKUSD")


def make_trades(n: int) -> list[Trade]:
    rng = np.random.default_rng(7)
    k = len(SYMBOLS)
    steps = np.exp(np.cumsum(rng.normal(0, 2e-5, (n // k + 1, k)), axis=0))
    sizes = rng.exponential(0.5, n) + 1e-6
    out = []
    for i in range(n):
        row, col = divmod(i, k)
        out.append(
            Trade(
                symbol=SYMBOLS[col],
                ts=T0 + timedelta(milliseconds=i),
                price=float(100.0 * (col + 1) * steps[row, col]),
                size=float(sizes[i]),
            )
        )
    return out


def make_bars(n: int) -> list[Bar]:
    rng = np.random.default_rng(11)
    k = len(SYMBOLS)
    closes = 100.0 * np.exp(np.cumsum(rng.normal(0, 1e-3, (n // k + 1, k)), axis=0))
    out = []
    for i in range(n):
        row, col = divmod(i, k)
        c = float(closes[row, col])
        o = float(closes[row - 1, col]) if row else c
        out.append(
            Bar(
                symbol=SYMBOLS[col],
                ts=T0 + timedelta(minutes=row),
                open=o,
                high=max(o, c) * 1.0005,
                low=min(o, c) * 0.9995,
                close=c,
                volume=float(rng.integers(1, 1000)),
                timeframe="1m",
            )
        )
    return out


async def replay(events: Sequence[Any]) -> AsyncIterator[Any]:
    for event in events:
        yield event


async def paced(events: Sequence[Any], rate_per_s: float, chunk: int = 100) -> AsyncIterator[Any]:
    """Yield ``events`` at ``rate_per_s`` (in chunks, as a network feed delivers them)."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    for i in range(0, len(events), chunk):
        delay = start + i / rate_per_s - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        for event in events[i : i + chunk]:
            yield event


async def consume(bus: InProcessBus, topic: str, stop: asyncio.Event) -> int:
    """A downstream consumer: fetch and acknowledge everything until told to stop."""
    seen = 0
    while not stop.is_set() or bus.retained(topic):
        msgs = await bus.fetch(topic, "bench", "c1", count=5000, block_ms=5)
        seen += await bus.ack_many(msgs)
    return seen


async def run_pipeline(
    events: Sequence[Any], store: DuckDBBarStore, timeframe: str | None, rate_per_s: float | None = None
) -> PipelineStats:
    bus = InProcessBus(BusConfig(maxsize=200_000))
    await bus.ensure_group("bars", "bench")
    stop = asyncio.Event()
    consumer = asyncio.create_task(consume(bus, "bars", stop))
    pipeline = StreamPipeline(
        replay(events) if rate_per_s is None else paced(events, rate_per_s),
        validator=StreamValidator(),
        store=store,
        bus=bus,
        builder=IncrementalBarBuilder(timeframe) if timeframe else None,
        config=PipelineConfig(name="bench", record_latency=True, checkpoint_interval_ms=250),
    )
    stats = await pipeline.run()
    stop.set()
    seen = await consumer
    if seen != stats.bars:
        raise RuntimeError(f"the consumer saw {seen} bars of {stats.bars} committed")
    return stats


def measure(
    events: Sequence[Any], timeframe: str | None, target: str, repeats: int, rate_per_s: float | None = None
) -> PipelineStats:
    """The median run (by events/s) of ``repeats`` fresh runs."""
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(repeats):
            where = ":memory:" if target == "memory" else str(Path(tmp) / f"run{k}.duckdb")
            with DuckDBBarStore(where) as store:
                runs.append(asyncio.run(run_pipeline(events, store, timeframe, rate_per_s)))
    runs.sort(key=lambda s: s.events_per_s)
    return runs[len(runs) // 2]


async def bare_loop(events: Sequence[Any]) -> float:
    started = time.perf_counter()
    async for _ in replay(events):
        pass
    return time.perf_counter() - started


def stage_costs(trades: Sequence[Trade], bars: Sequence[Bar]) -> dict[str, float]:
    """Nanoseconds per event of the validator and the builder on their own."""
    out = {}
    validator = StreamValidator()
    t = time.perf_counter()
    for e in trades:
        validator.check(e)
    out["validator_trade_ns"] = (time.perf_counter() - t) / len(trades) * 1e9
    validator = StreamValidator()
    t = time.perf_counter()
    for e in bars:
        validator.check(e)
    out["validator_bar_ns"] = (time.perf_counter() - t) / len(bars) * 1e9
    builder = IncrementalBarBuilder("1s")
    t = time.perf_counter()
    for e in trades:
        builder.update(e)
    out["builder_trade_ns"] = (time.perf_counter() - t) / len(trades) * 1e9
    return out


def add_run(figs: Figures, label: str, stats: PipelineStats, note: str = "") -> None:
    """One workload's figures; names stay short so the table reads in 80 columns (JSON has them all)."""
    figs.add("alphaloom", f"{label}_rate", stats.events_per_s, "events/s", note)
    figs.add("alphaloom", f"{label}_proc_p50", stats.latency_ms("process", 0.5), "ms")
    figs.add("alphaloom", f"{label}_proc_p99", stats.latency_ms("process", 0.99), "ms", "target < 5")
    figs.add("alphaloom", f"{label}_commit_p50", stats.latency_ms("commit", 0.5), "ms", "stored+published")
    figs.add("alphaloom", f"{label}_commit_p99", stats.latency_ms("commit", 0.99), "ms", "stored+published")
    figs.add(
        "alphaloom", f"{label}_batch", stats.bars / max(stats.commits, 1), "bars", f"{stats.commits} commits"
    )


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    n_trades = 100_000 if args.quick else 600_000
    n_bars = 50_000 if args.quick else 200_000
    repeats = 1 if args.quick else 3
    trades, bars = make_trades(n_trades), make_bars(n_bars)
    figs = Figures(
        f"Stream pipeline ({n_trades:,} trades -> 1s bars; {n_bars:,} 1m bars), DuckDB + InProcessBus"
    )

    costs = stage_costs(trades[:100_000], bars[:100_000])
    figs.add("alphaloom", "validate_trade", costs["validator_trade_ns"], "ns", "per event")
    figs.add("alphaloom", "validate_bar", costs["validator_bar_ns"], "ns", "per event")
    figs.add("alphaloom", "build_1s_from_trade", costs["builder_trade_ns"], "ns", "per event")

    add_run(figs, "ticks_file", measure(trades, "1s", "file", repeats), "target >= 100,000")
    add_run(figs, "ticks_mem", measure(trades, "1s", "memory", repeats), "DuckDB :memory:")
    add_run(figs, "ticks_paced", measure(trades, "1s", "file", 1, rate_per_s=100_000), "fed at 100,000/s")
    add_run(figs, "bars_file", measure(bars, None, "file", repeats), "each event a bar")
    add_run(figs, "bars_mem", measure(bars, None, "memory", repeats), "DuckDB :memory:")
    add_run(figs, "bars_paced", measure(bars[:60_000], None, "file", 1, rate_per_s=20_000), "fed at 20,000/s")
    for name, events in (("ticks", trades), ("bars", bars)):
        t_loop = asyncio.run(bare_loop(events))
        figs.add("loop", f"{name}_rate", len(events) / t_loop, "events/s", "bare async for")
    figs.emit(args.json)


if __name__ == "__main__":
    main()
