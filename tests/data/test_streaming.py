"""StreamPipeline on replayed real bars: killed mid-way and restarted, the store and the bus lose nothing.

Every crash test runs the pipeline on a replay, stops it abruptly (the task cancelled, the source raising,
the store or the bus failing), restarts a fresh pipeline (new validator and builder, same store, bus and
checkpoint) on the full replay, and checks that the store holds exactly the input bars and that the bus
received every bar (count after de-duplication by event id equals the number of bars).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from alphaloom.core.exceptions import ConfigError, StorageError
from alphaloom.core.types import BAR_COLUMNS, Bar, Trade
from alphaloom.data import DataValidator, DuckDBBarStore, load_sample
from alphaloom.data.aggregator import DataAggregator, IncrementalBarBuilder
from alphaloom.data.bus import BusConfig, BusError, InProcessBus, RedisStreamsBus
from alphaloom.data.streaming import (
    CheckpointEntry,
    MemoryCheckpoint,
    PipelineConfig,
    StoreCheckpoint,
    StreamPipeline,
    bar_event_id,
)
from alphaloom.data.validator import StreamValidator, ValidatorConfig

from .bus.conftest import REDIS_URL, redis_available

REPO = Path(__file__).resolve().parents[2]
SHARED = next((p for p in (Path("/work/shared/data"), REPO.parent / "shared" / "data") if p.is_dir()), None)
TOPIC = "bars"


# ---------------------------------------------------------------------- replays


def to_bars(frame: pd.DataFrame, timeframe: str) -> list[Bar]:
    """The frame's rows as Bars in replay order: by time, then symbol."""
    rows = frame.sort_values(["ts", "symbol"], kind="stable")
    return [
        Bar(
            symbol=r.symbol,
            ts=r.ts.to_pydatetime(),
            open=r.open,
            high=r.high,
            low=r.low,
            close=r.close,
            volume=None if pd.isna(r.volume) else r.volume,
            timeframe=timeframe,
        )
        for r in rows.itertuples(index=False)
    ]


@pytest.fixture(scope="module")
def daily() -> tuple[pd.DataFrame, list[Bar]]:
    """Real daily bars (shipped Bitstamp BTC/ETH/LTC sample), validated, and their replay."""
    bars = DataValidator().validate(load_sample("crypto_daily")).clean
    return bars, to_bars(bars, "1d")


async def replay(
    events: Sequence[Any], *, fail_when: Callable[[int], bool] | None = None, every: int = 25
) -> AsyncIterator[Any]:
    """Yield ``events``, suspending now and then as a network source would; raise when told to."""
    for k, event in enumerate(events):
        if fail_when is not None and fail_when(k):
            raise RuntimeError(f"feed dropped at event {k}")
        if k % every == 0:
            await asyncio.sleep(0)
        yield event


async def bus_ids(bus: Any, group: str = "audit") -> list[str]:
    """Every event id the audit group received (acknowledged as read)."""
    out: list[str] = []
    while True:
        got = await bus.fetch(TOPIC, group, "reader", count=5000, block_ms=0)
        if not got:
            return out
        for msg in got:
            out.append(msg.event["id"])
            await bus.ack(msg)


def assert_store_holds_exactly(store: DuckDBBarStore, expected: pd.DataFrame, timeframe: str) -> None:
    got = store.read_bars(timeframe=timeframe)
    want = expected.sort_values(["symbol", "ts"]).reset_index(drop=True).loc[:, list(BAR_COLUMNS)]
    pd.testing.assert_frame_equal(got, want, check_exact=True)


def new_pipeline(events: Any, store: Any, bus: Any, **config: Any) -> StreamPipeline:
    settings = {"checkpoint_interval_ms": 0, "max_batch": 500, **config}
    builder = settings.pop("builder", None)
    return StreamPipeline(
        events,
        validator=StreamValidator(),
        store=store,
        bus=bus,
        builder=builder,
        config=PipelineConfig(**settings),
    )


# ---------------------------------------------------------------------- the happy path


def test_every_bar_is_stored_and_published_once(tmp_path: Path, daily) -> None:
    bars, events = daily

    async def scenario() -> None:
        bus = InProcessBus()
        await bus.ensure_group(TOPIC, "audit")
        with DuckDBBarStore(tmp_path / "s.duckdb") as store:
            stats = await new_pipeline(replay(events), store, bus).run()
            assert (stats.events, stats.bars, stats.quarantined, stats.skipped) == (
                len(events),
                len(events),
                0,
                0,
            )
            assert_store_holds_exactly(store, bars, "1d")
            ids = await bus_ids(bus)
            assert len(ids) == len(set(ids)) == len(events)
            last = bars.sort_values("ts").groupby("symbol").tail(1).set_index("symbol")
            saved = StoreCheckpoint(store).load()
            assert {s: (e.ts, e.close) for s, e in saved.items()} == {
                s: (r.ts.to_pydatetime(), r.close) for s, r in last.iterrows()
            }
            # A second run over the same replay finds everything committed: nothing stored or sent again.
            again = await new_pipeline(replay(events), store, bus).run()
            assert (again.skipped, again.bars) == (len(events), 0)
            assert await bus_ids(bus) == []

    asyncio.run(scenario())


# ---------------------------------------------------------------------- crashes and restarts


class FlakyStore:
    """A store that fails once on the n-th bars write, and checks it is never used by two threads at once."""

    def __init__(self, store: DuckDBBarStore, fail_on_write: int | None = None, delay_s: float = 0.0) -> None:
        self._store = store
        self._fail_on = fail_on_write
        self._delay_s = delay_s
        self._lock = threading.Lock()
        self.writes = 0
        self.writing = threading.Event()

    def write_bars(self, *args: Any, **kwargs: Any) -> Any:
        if not self._lock.acquire(blocking=False):
            raise AssertionError("the store is used by two threads at once")
        try:
            self.writes += 1
            self.writing.set()
            if self.writes == self._fail_on:
                raise StorageError("disk full (injected)")
            result = self._store.write_bars(*args, **kwargs)
            if self._delay_s:
                threading.Event().wait(self._delay_s)  # a slow commit, still holding the store
            return result
        finally:
            self.writing.clear()
            self._lock.release()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


class FlakyBus:
    """A bus whose n-th publish fails after publishing half of the batch (a connection lost mid-way)."""

    def __init__(self, bus: InProcessBus, fail_on_publish: int) -> None:
        self._bus = bus
        self._fail_on = fail_on_publish
        self.publishes = 0

    async def publish_many(self, topic: str, events: Sequence[Any]) -> list[str]:
        self.publishes += 1
        if self.publishes == self._fail_on:
            await self._bus.publish_many(topic, events[: len(events) // 2])
            raise BusError("connection reset (injected)")
        return await self._bus.publish_many(topic, events)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._bus, name)


CRASHES = ("cancel", "cancel_mid_commit", "source_raises", "store_fails", "bus_fails")


@pytest.mark.parametrize("crash", CRASHES)
def test_restart_after_a_crash_loses_and_duplicates_nothing(tmp_path: Path, daily, crash: str) -> None:
    bars, events = daily

    async def scenario() -> None:
        inner_bus = InProcessBus()
        await inner_bus.ensure_group(TOPIC, "audit")
        with DuckDBBarStore(tmp_path / "s.duckdb") as real_store:
            store: Any = real_store
            bus: Any = inner_bus
            fail_when = None
            if crash == "store_fails":
                store = FlakyStore(real_store, fail_on_write=3)
            elif crash == "bus_fails":
                bus = FlakyBus(inner_bus, fail_on_publish=3)
            elif crash == "cancel_mid_commit":
                store = FlakyStore(real_store, delay_s=0.05)
            if crash == "source_raises":
                fail_when = lambda k: pipeline.stats.commits >= 3  # noqa: E731 - crash after real progress
            pipeline = new_pipeline(replay(events, fail_when=fail_when), store, bus)

            task = asyncio.create_task(pipeline.run())
            if crash.startswith("cancel"):
                while pipeline.stats.commits < 3:
                    await asyncio.sleep(0.001)
                if crash == "cancel_mid_commit":
                    while not store.writing.is_set():  # kill it while a commit is in the store
                        await asyncio.sleep(0.0005)
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
            else:
                with pytest.raises((RuntimeError, StorageError, BusError)):
                    await task
            first = pipeline.stats
            assert 0 < first.events < len(events)
            stored_before = len(real_store.read_bars(timeframe="1d"))

            restarted = new_pipeline(replay(events), real_store, inner_bus)
            stats = await restarted.run()
            assert stats.skipped > 0  # the checkpoint saved progress ...
            assert stats.skipped <= stored_before  # ... and never more than was stored
            assert stats.skipped + stats.bars == len(events)
            assert_store_holds_exactly(real_store, bars, "1d")
            ids = await bus_ids(inner_bus)
            assert len(set(ids)) == len(events)  # every bar reached the bus ...
            assert set(ids) == {bar_event_id(e) for e in events}  # ... under its stable id
            assert len(ids) - len(set(ids)) <= first.bars + 500  # re-sent: at most the uncheckpointed tail

    asyncio.run(scenario())


@pytest.mark.skipif(not redis_available(), reason=f"no Redis server at {REDIS_URL}")
def test_restart_with_redis_streams(tmp_path: Path, daily) -> None:
    bars, events = daily

    async def scenario() -> None:
        bus = RedisStreamsBus(REDIS_URL, prefix=f"alphaloom-test:stream:{tmp_path.name}:")
        try:
            await bus.purge()
            await bus.ensure_group(TOPIC, "audit")
            with DuckDBBarStore(tmp_path / "s.duckdb") as store:
                pipeline = new_pipeline(
                    replay(events, fail_when=lambda k: pipeline.stats.commits >= 2), store, bus
                )
                with pytest.raises(RuntimeError, match="feed dropped"):
                    await pipeline.run()
                await new_pipeline(replay(events), store, bus).run()
                assert_store_holds_exactly(store, bars, "1d")
                ids = await bus_ids(bus)
                assert len(set(ids)) == len(events)
        finally:
            await bus.purge()
            await bus.aclose()

    asyncio.run(scenario())


@pytest.mark.skipif(SHARED is None, reason="the shared real-data directory (../shared/data) is not present")
def test_aggregating_pipeline_restarts_at_a_bucket_boundary(tmp_path: Path) -> None:
    """Real Coinbase 1-minute bars aggregated to 5 minutes, crashed mid-way: equal to the batch resample."""
    raw = pd.read_csv(SHARED / "crypto" / "lean_coinbase_1min_trade_bars_2016-2018_sample_days.csv.gz")
    days = raw["timestamp"].str.slice(0, 10).isin(["2018-04-04", "2018-04-05"])  # all four symbols trade
    minute = DataAggregator().normalize(raw.loc[days])
    events = to_bars(minute, "1m")
    expected = DataAggregator().resample(minute, "5m", source_timeframe="1m")

    async def scenario() -> None:
        bus = InProcessBus()
        await bus.ensure_group(TOPIC, "audit")
        with DuckDBBarStore(tmp_path / "s.duckdb") as store:
            pipeline = new_pipeline(
                replay(events, fail_when=lambda k: pipeline.stats.commits >= 4),
                store,
                bus,
                max_batch=50,
                builder=IncrementalBarBuilder("5m"),
            )
            with pytest.raises(RuntimeError):
                await pipeline.run()
            resume = pipeline.resume_points()
            assert set(resume) == {"BTCEUR", "BTCUSD", "ETHUSD", "LTCUSD"}
            assert all(ts.minute % 5 == 0 for ts in resume.values())  # a bucket boundary
            stats = await new_pipeline(
                replay(events), store, bus, max_batch=50, builder=IncrementalBarBuilder("5m")
            ).run()
            assert stats.quarantined == 0
            assert stats.skipped > 0
            assert_store_holds_exactly(store, expected, "5m")
            ids = await bus_ids(bus)
            assert len(set(ids)) == len(expected)

    asyncio.run(scenario())


# ---------------------------------------------------------------------- validation, control and errors


def test_bad_events_are_quarantined_with_their_reason(tmp_path: Path) -> None:
    t0 = datetime(2024, 1, 1, tzinfo=UTC)

    def bar(k: int, close: float) -> Bar:
        return Bar(
            symbol="BTCUSD",
            ts=t0 + timedelta(days=k),
            open=close,
            high=close,
            low=close,
            close=close,
            volume=1.0,
            timeframe="1d",
        )

    events = [bar(0, 100.0), bar(1, 101.0), bar(1, 101.0), bar(2, 1010.0), bar(3, 102.0), bar(0, 99.0)]

    async def scenario() -> None:
        with DuckDBBarStore(tmp_path / "s.duckdb") as store:
            stats = await new_pipeline(replay(events), store, InProcessBus()).run()
            assert (stats.bars, stats.quarantined) == (3, 3)
            assert store.read_bars(timeframe="1d")["close"].tolist() == [100.0, 101.0, 102.0]
            q = store.read_quarantine()
            assert q["check"].tolist() == ["out_of_order", "duplicate", "price_band"]
            assert "outside the band" in q["reason"].iloc[2]

    asyncio.run(scenario())


def test_trades_are_built_into_bars_and_the_tail_waits_for_completion(tmp_path: Path) -> None:
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    trades = [
        Trade(symbol="ETHUSD", ts=t0 + timedelta(seconds=20 * k), price=100.0 + k, size=1.0)
        for k in range(10)
    ]

    async def scenario() -> None:
        with DuckDBBarStore(tmp_path / "s.duckdb") as store:
            stats = await new_pipeline(
                replay(trades), store, InProcessBus(), builder=IncrementalBarBuilder("1m")
            ).run()
            # 10 trades over 3 minutes 20 s: three complete minutes; the fourth is partial and waits.
            assert stats.bars == 3
            assert store.read_bars(timeframe="1m")["volume"].tolist() == [3.0, 3.0, 3.0]

    asyncio.run(scenario())
    with DuckDBBarStore(tmp_path / "s2.duckdb") as store:
        pipeline = new_pipeline(
            replay(trades),
            store,
            InProcessBus(),
            builder=IncrementalBarBuilder("1m"),
            flush_partial_on_end=True,
        )
        assert asyncio.run(pipeline.run()).bars == 4


def test_ticks_without_a_builder_are_refused(tmp_path: Path) -> None:
    trade = Trade(symbol="BTCUSD", ts=datetime(2024, 1, 1, tzinfo=UTC), price=1.0, size=1.0)
    with DuckDBBarStore(tmp_path / "s.duckdb") as store:
        pipeline = new_pipeline(replay([trade]), store, InProcessBus())
        with pytest.raises(ConfigError, match="has no builder; pass builder=IncrementalBarBuilder"):
            asyncio.run(pipeline.run())
    with pytest.raises(ConfigError, match="async iterator"):
        StreamPipeline([trade], validator=StreamValidator(), store=store, bus=InProcessBus())  # type: ignore[arg-type]


def test_stop_commits_what_it_has(tmp_path: Path, daily) -> None:
    _, events = daily

    async def scenario() -> None:
        with DuckDBBarStore(tmp_path / "s.duckdb") as store:

            async def source() -> AsyncIterator[Bar]:
                async for event in replay(events):
                    if pipeline.stats.events == 1000:
                        pipeline.stop()
                    yield event

            pipeline = new_pipeline(source(), store, InProcessBus())
            stats = await pipeline.run()
            assert stats.events == 1001  # the event in hand when stop() came is still processed
            assert stats.bars == 1001 == len(store.read_bars(timeframe="1d"))
            assert set(StoreCheckpoint(store).load()) == {e.symbol for e in events[:1001]}

    asyncio.run(scenario())


def test_checkpoints_round_trip(tmp_path: Path) -> None:
    entry = CheckpointEntry(datetime(2024, 1, 2, tzinfo=UTC), 101.5, "1d")
    with DuckDBBarStore(tmp_path / "s.duckdb") as store:
        a, b = StoreCheckpoint(store, "alpha"), StoreCheckpoint(store, "beta")
        assert a.load() == {}
        a.save({"BTCUSD": entry, "ETHUSD": entry})
        b.save({"BTCUSD": entry._replace(close=1.0)})
        a.save({"BTCUSD": entry._replace(close=102.0)})
        assert a.load() == {"BTCUSD": entry._replace(close=102.0), "ETHUSD": entry}
        assert b.load() == {"BTCUSD": entry._replace(close=1.0)}
    memory = MemoryCheckpoint()
    memory.save({"X": entry})
    assert memory.load() == {"X": entry}
    with pytest.raises(ConfigError, match="name"):
        PipelineConfig.from_dict({"name": "Bad Name"})


def test_validator_is_seeded_from_the_checkpoint_after_a_restart(tmp_path: Path) -> None:
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    checkpoint = MemoryCheckpoint({"BTCUSD": CheckpointEntry(t0, 100.0, "1d")})
    spike = Bar(
        symbol="BTCUSD", ts=t0 + timedelta(days=1), open=900, high=900, low=900, close=900, timeframe="1d"
    )

    async def scenario() -> None:
        with DuckDBBarStore(tmp_path / "s.duckdb") as store:
            pipeline = StreamPipeline(
                replay([spike]),
                validator=StreamValidator(ValidatorConfig(price_band=0.5)),
                store=store,
                bus=InProcessBus(),
                checkpoint=checkpoint,
            )
            stats = await pipeline.run()
            assert stats.quarantined == 1  # judged against the last committed close, not accepted blindly

    asyncio.run(scenario())
    assert BusConfig().max_deliveries == 5
