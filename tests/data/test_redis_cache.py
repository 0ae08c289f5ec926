"""RedisCache against the local Redis, and CachedBarSource falling back to the store when Redis is down.

Keys live under a prefix unique to this test session (``al-test:<uuid>:<n>``) and are deleted afterwards, so
parallel runs never collide. Outages are simulated without touching the shared Redis: a closed port
(connection refused), a socket that never answers (timeout), and a local TCP proxy in front of Redis that the
test cuts and restores (Redis going away and coming back).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
import redis

from alphaloom.core.clock import SimulatedClock
from alphaloom.core.exceptions import ConfigError, DataFormatError, StorageError, UnknownSymbolError
from alphaloom.core.types import Bar, Quote
from alphaloom.data.storage import (
    CachedBarSource,
    CacheUnavailableError,
    DuckDBBarStore,
    RedisCache,
)
from alphaloom.data.storage.redis_cache import redact_url

REDIS_URL = "redis://127.0.0.1:6379/0"
_SESSION_PREFIX = f"al-test:{uuid.uuid4().hex}"
_numbers = itertools.count()
T0 = datetime(2024, 5, 6, tzinfo=UTC)

LOGGER = "alphaloom.data.storage.redis_cache"


@pytest.fixture
def prefix() -> Iterator[str]:
    name = f"{_SESSION_PREFIX}:{next(_numbers)}"
    yield name
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=f"{name}:*"))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
def cache(prefix: str) -> Iterator[RedisCache]:
    with RedisCache(REDIS_URL, prefix=prefix, default_ttl_s=60.0) as c:
        yield c


def bar(symbol: str = "AAA", days: int = 0, close: float = 100.0, timeframe: str = "1d") -> Bar:
    return Bar(
        symbol=symbol,
        ts=T0 + timedelta(days=days),
        open=close,
        high=close * 1.01,
        low=close * 0.99,
        close=close,
        volume=1000.0,
        timeframe=timeframe,
    )


@pytest.fixture
def store() -> Iterator[DuckDBBarStore]:
    frame = pd.DataFrame(
        {
            "symbol": np.repeat(["AAA", "BBB"], 5),
            "ts": np.tile(pd.date_range(T0, periods=5, freq="D").astype("datetime64[ns, UTC]"), 2),
            "open": 100.0,
            "high": 102.0,
            "low": 99.0,
            "close": np.tile(np.arange(100.0, 101.0, 0.2), 2),
            "volume": np.nan,
        }
    )
    with DuckDBBarStore(":memory:") as s:
        s.write_bars(frame)
        yield s


# ---------------------------------------------------------------------- the cache


def test_latest_bar_round_trip_with_ttl(cache: RedisCache) -> None:
    b = bar()
    assert cache.latest_bar("AAA") is None
    assert cache.set_latest_bar(b) is True
    assert cache.latest_bar("AAA") == b
    assert cache.latest_bar("AAA", timeframe="1h") is None  # the timeframe is part of the key
    ttl_ms = cache._client.pttl(cache.bar_key("AAA"))
    assert 55_000 < ttl_ms <= 60_000
    cache.set_latest_bar(bar(days=1), ttl_s=5)
    assert 0 < cache._client.pttl(cache.bar_key("AAA")) <= 5_000


def test_an_older_bar_never_replaces_a_newer_one(cache: RedisCache) -> None:
    newer, older = bar(days=2, close=120.0), bar(days=1, close=110.0)
    assert cache.set_latest_bar(newer)
    assert cache.set_latest_bar(older) is False
    assert cache.latest_bar("AAA") == newer
    corrected = bar(days=2, close=121.0)  # same time, new values: a correction replaces it
    assert cache.set_latest_bar(corrected)
    assert cache.latest_bar("AAA") == corrected


def test_values_expire(cache: RedisCache) -> None:
    cache.set_latest_bar(bar(), ttl_s=0.05)
    time.sleep(0.15)
    assert cache.latest_bar("AAA") is None


def test_quotes_and_predictions(cache: RedisCache) -> None:
    quote = Quote(symbol="EURUSD", ts=T0, bid=1.0712, ask=1.0714, bid_size=1e6, ts_received=T0)
    assert cache.set_quote(quote)
    assert cache.latest_quote("EURUSD") == quote
    assert cache.latest_quote("GBPUSD") is None
    payload = {"p_up": 0.61, "p_down": 0.2, "pred_return": np.float64(0.002), "emb": np.arange(3.0)}
    assert cache.set_prediction("AAA", "cnn_lstm:v3", payload, ts=T0)
    got = cache.prediction("AAA", "cnn_lstm:v3")
    assert got is not None
    assert got.ts == T0
    assert got.payload == {"p_up": 0.61, "p_down": 0.2, "pred_return": 0.002, "emb": [0.0, 1.0, 2.0]}
    assert cache.set_prediction("AAA", "cnn_lstm:v3", {"p_up": 0.1}, ts=T0 - timedelta(minutes=1)) is False
    assert cache.prediction("AAA", "cnn_lstm:v2") is None
    with pytest.raises(DataFormatError, match=r"cannot be cached as JSON"):
        cache.set_prediction("AAA", "v", {"x": float("nan")})


def test_keys_carry_the_prefix_and_clear_removes_only_them(cache: RedisCache, prefix: str) -> None:
    cache.set_latest_bar(bar())
    cache.set_quote(Quote(symbol="AAA", ts=T0, bid=1.0, ask=1.1))
    neighbour = RedisCache(REDIS_URL, prefix=prefix + "-other")
    neighbour.set_latest_bar(bar())
    try:
        assert sorted(k.decode() for k in cache._client.scan_iter(match=f"{prefix}:*")) == [
            f"{prefix}:bar:1d:AAA",
            f"{prefix}:quote:AAA",
        ]
        assert cache.clear() == 2
        assert cache.latest_bar("AAA") is None
        assert neighbour.latest_bar("AAA") == bar()
    finally:
        neighbour.clear()
        neighbour.close()


def test_a_corrupt_value_is_a_data_format_error(cache: RedisCache) -> None:
    cache._client.set(cache.bar_key("AAA"), b"not json")
    with pytest.raises(DataFormatError, match=r"is not what alphaloom writes.*clear\(\)"):
        cache.latest_bar("AAA")
    cache._client.set(cache.bar_key("AAA"), b'{"ts_us": 1, "data": {"symbol": "AAA"}}')
    with pytest.raises(DataFormatError, match=r"invalid Bar"):
        cache.latest_bar("AAA")
    # The guard script treats an undecodable value as absent, so a fresh bar repairs the key.
    assert cache.set_latest_bar(bar())


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"prefix": ""}, r"prefix must be a non-empty string"),
        ({"prefix": "a b"}, r"without spaces"),
        ({"default_ttl_s": 0}, r"default_ttl_s must be a positive number"),
        ({"default_ttl_s": float("inf")}, r"default_ttl_s must be a positive number"),
        ({"timeout_s": -1}, r"timeout_s must be a positive"),
    ],
)
def test_invalid_settings(kwargs: dict, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        RedisCache(REDIS_URL, **kwargs)


def test_invalid_url() -> None:
    with pytest.raises(ConfigError, match=r"Redis URL .* is not valid"):
        RedisCache("http://127.0.0.1:6379/0")


def test_redact_url() -> None:
    assert redact_url("redis://user:s3cret@127.0.0.1:6380/2") == "redis://user@127.0.0.1:6380/2"
    assert redact_url("redis://:s3cret@127.0.0.1/0") == "redis://127.0.0.1/0"
    assert redact_url("rediss://127.0.0.1:6379") == "rediss://127.0.0.1:6379"


# ---------------------------------------------------------------------- Redis unavailable


def test_closed_port_is_cache_unavailable_without_the_password() -> None:
    cache = RedisCache("redis://:hunter2@127.0.0.1:1/0", prefix="al-test-closed")
    with pytest.raises(CacheUnavailableError, match=r"Redis at redis://127.0.0.1:1/0 is unavailable") as info:
        cache.latest_bar("AAA")
    assert "hunter2" not in str(info.value)
    assert isinstance(info.value, StorageError)
    assert isinstance(info.value.__cause__, redis.ConnectionError)
    with pytest.raises(CacheUnavailableError):
        cache.ping()


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A port that accepts connections and never answers: every Redis call times out."""
    server = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.05)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            accepted.append(conn)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join(2)
    for conn in accepted:
        conn.close()
    server.close()


def test_a_silent_server_times_out_quickly(silent_server: int) -> None:
    cache = RedisCache(f"redis://127.0.0.1:{silent_server}/0", prefix="al-test-silent", timeout_s=0.2)
    started = time.perf_counter()
    with pytest.raises(CacheUnavailableError, match=r"unavailable"):
        cache.latest_bar("AAA")
    assert time.perf_counter() - started < 2.0  # one short timeout, no retries


# ---------------------------------------------------------------------- CachedBarSource


def test_read_through_fills_the_cache(store: DuckDBBarStore, cache: RedisCache) -> None:
    source = CachedBarSource(store, cache)
    first = source.latest_bar("AAA")
    assert first.ts == T0 + timedelta(days=4)
    assert first.close == pytest.approx(100.8)
    assert first.volume is None  # NaN volume in the store is "no volume"
    assert cache.latest_bar("AAA") == first  # filled on the miss
    assert source.latest_bar("AAA") == first
    assert source.health().cache_hits == 1
    assert source.health().store_reads == 1
    assert source.health().ok
    assert set(source.latest_bars(["AAA", "BBB"])) == {"AAA", "BBB"}
    with pytest.raises(UnknownSymbolError, match=r"'AAB'.*Did you mean 'AAA'"):
        source.latest_bar("AAB")


def test_a_newer_cached_bar_wins_over_the_store(store: DuckDBBarStore, cache: RedisCache) -> None:
    source = CachedBarSource(store, cache)
    live = bar("AAA", days=10, close=130.0)
    assert source.set_latest_bar(live)
    assert source.latest_bar("AAA") == live


def test_a_corrupt_cached_bar_is_replaced_from_the_store(
    store: DuckDBBarStore, cache: RedisCache, caplog: pytest.LogCaptureFixture
) -> None:
    cache._client.set(cache.bar_key("AAA"), b"garbage")
    source = CachedBarSource(store, cache)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        got = source.latest_bar("AAA")
    assert got.ts == T0 + timedelta(days=4)
    assert cache.latest_bar("AAA") == got
    assert "corrupt cached bar" in caplog.text


def test_falls_back_to_the_store_when_redis_refuses(
    store: DuckDBBarStore, caplog: pytest.LogCaptureFixture
) -> None:
    down = RedisCache("redis://127.0.0.1:1/0", prefix="al-test-down")
    source = CachedBarSource(store, down, retry_after_s=0.0)
    with caplog.at_level(logging.INFO, logger=LOGGER):
        bars = [source.latest_bar("AAA") for _ in range(5)]
        assert source.set_latest_bar(bar()) is False  # an outage never raises from the write side
    assert {b.ts for b in bars} == {T0 + timedelta(days=4)}
    health = source.health()
    assert health.status == "degraded"
    assert health.degraded_since is not None
    assert "Connection refused" in health.last_error
    assert health.store_reads == 5
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1  # logged once per outage, not once per read
    assert "serving latest bars from the store" in warnings[0].getMessage()


class FlakyProxy:
    """A TCP proxy in front of the shared Redis that a test can cut and restore."""

    def __init__(self, target: tuple[str, int] = ("127.0.0.1", 6379)) -> None:
        self._target = target
        self._server = socket.create_server(("127.0.0.1", 0))
        self._server.settimeout(0.05)
        self.port = self._server.getsockname()[1]
        self._up = threading.Event()
        self._up.set()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if not self._up.is_set():
                client.close()  # the client sees the connection closed, as with a dead server
                continue
            upstream = socket.create_connection(self._target)
            with self._lock:
                self._sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                thread = threading.Thread(target=self._pump, args=(a, b), daemon=True)
                thread.start()
                self._threads.append(thread)

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        self._up.clear()
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for s in sockets:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def restore(self) -> None:
        self._up.set()

    def close(self) -> None:
        self._stop.set()
        self.cut()
        self._server.close()
        for thread in self._threads:
            thread.join(2)


@pytest.fixture
def proxy() -> Iterator[FlakyProxy]:
    p = FlakyProxy()
    yield p
    p.close()


def test_degrades_and_recovers_when_redis_goes_and_comes_back(
    store: DuckDBBarStore, prefix: str, proxy: FlakyProxy, caplog: pytest.LogCaptureFixture
) -> None:
    clock = SimulatedClock(T0)
    cache = RedisCache(f"redis://127.0.0.1:{proxy.port}/0", prefix=prefix, timeout_s=0.5)
    source = CachedBarSource(store, cache, retry_after_s=5.0, clock=clock)
    live = bar("AAA", days=10, close=130.0)
    assert source.set_latest_bar(live)
    assert source.latest_bar("AAA") == live  # from Redis

    with caplog.at_level(logging.INFO, logger=LOGGER):
        proxy.cut()
        from_store = source.latest_bar("AAA")
        assert from_store.ts == T0 + timedelta(days=4)  # the store's latest, not the cached live bar
        assert source.health().status == "degraded"
        # Within retry_after_s the source does not even try Redis.
        calls: list[str] = []
        original = cache.latest_bar
        cache.latest_bar = lambda *a, **k: calls.append("redis") or original(*a, **k)  # type: ignore[method-assign]
        clock.advance_to(T0 + timedelta(seconds=4))
        source.latest_bar("AAA")
        assert calls == []
        # After it, one probe per interval; still down.
        clock.advance_to(T0 + timedelta(seconds=6))
        source.latest_bar("AAA")
        assert calls == ["redis"]
        assert source.health().status == "degraded"

        proxy.restore()
        clock.advance_to(T0 + timedelta(seconds=12))
        assert source.latest_bar("AAA") == live  # Redis is back and still holds the live bar
        health = source.health()
        assert health.ok
        assert health.degraded_since is None

    messages = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert [level for level, _ in messages] == [logging.WARNING, logging.INFO]
    assert "is back after 12.0 s" in messages[1][1]


def test_source_arguments_are_checked(store: DuckDBBarStore, cache: RedisCache) -> None:
    with pytest.raises(ConfigError, match=r"store must be a BarStore"):
        CachedBarSource("store", cache)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"retry_after_s must be"):
        CachedBarSource(store, cache, retry_after_s=-1)
    with pytest.raises(ConfigError, match=r"ttl_s must be a positive"):
        CachedBarSource(store, cache, ttl_s=0)
