"""A Redis cache of the latest bars, quotes and predictions, and a bar source that survives Redis going down.

:class:`RedisCache` keeps one JSON value per key with a TTL::

    <prefix>:bar:<timeframe>:<symbol>         the latest bar
    <prefix>:quote:<symbol>                   the latest quote
    <prefix>:pred:<symbol>:<model_version>    the latest prediction of a model version

Each value is ``{"ts_us": <event time in microseconds since 1970>, "data": {...}}``. A small Lua script writes
a value only when it is not older than the cached one, so a late or replayed message never replaces a newer
one, atomically even with several writers.

:class:`CachedBarSource` serves the latest bar from the cache and reads through to a
:class:`~alphaloom.data.storage.base.BarStore` on a miss. When Redis is down (connection refused, reset or
timed out) it serves every read from the store, logs one warning, reports itself degraded in
:meth:`CachedBarSource.health`, tries Redis again after ``retry_after_s``, and logs once more when Redis is
back.

Redis errors are translated at this boundary: :class:`CacheUnavailableError` (a
:class:`~alphaloom.core.exceptions.StorageError`) when Redis cannot be reached, :class:`StorageError` for
anything else Redis refuses, :class:`~alphaloom.core.exceptions.DataFormatError` for a cached value that does
not decode.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import redis
from pydantic import ValidationError, model_validator
from redis.backoff import NoBackoff
from redis.retry import Retry

from alphaloom.core.clock import Clock, LiveClock
from alphaloom.core.config import ComponentConfig
from alphaloom.core.exceptions import CacheUnavailableError, ConfigError, DataFormatError, StorageError
from alphaloom.core.timeutil import ensure_utc
from alphaloom.core.types import Bar, Quote
from alphaloom.data.storage.base import BarStore

__all__ = [
    "CacheHealth",
    "CacheUnavailableError",
    "CachedBarSource",
    "CachedPrediction",
    "RedisCache",
    "RedisTLS",
    "redact_url",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# Set KEYS[1] to ARGV[1] with a TTL of ARGV[3] ms unless the cached value is newer than ARGV[2] (ts_us).
_SET_IF_NOT_OLDER = """
local current = redis.call('GET', KEYS[1])
if current then
    local ok, old = pcall(cjson.decode, current)
    if ok and type(old) == 'table' then
        local held = tonumber(old['ts_us'])
        if held and held > tonumber(ARGV[2]) then
            return 0
        end
    end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
return 1
"""


def redact_url(url: str) -> str:
    """A Redis URL without its password (``redis://user@host:6379/0``), safe for logs and messages."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        netloc = f"{parts.username}@" if parts.username else ""
        netloc += f"[{host}]" if ":" in host else host
        if parts.port is not None:
            netloc += f":{parts.port}"
    except ValueError:
        return "<invalid Redis URL>"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _ts_us(ts: datetime) -> int:
    return (ensure_utc(ts) - _EPOCH) // timedelta(microseconds=1)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return ensure_utc(value, name="a datetime in the payload").isoformat()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


@dataclass(frozen=True, slots=True)
class CachedPrediction:
    """A model's latest prediction for a symbol: ``payload`` as given to :meth:`RedisCache.set_prediction`."""

    symbol: str
    model_version: str
    ts: datetime
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class CacheHealth:
    """How a :class:`CachedBarSource` is doing.

    Attributes
    ----------
    status
        ``"ok"`` while Redis answers; ``"degraded"`` while reads fall back to the store.
    cache
        The Redis URL, without password.
    degraded_since
        When Redis first failed in the current outage (UTC), else ``None``.
    last_error
        The latest Redis failure, ``""`` when there was none.
    cache_hits, store_reads
        Latest bars served from Redis, and read from the store (misses and fallbacks), since creation.
    """

    status: Literal["ok", "degraded"]
    cache: str
    degraded_since: datetime | None
    last_error: str
    cache_hits: int
    store_reads: int

    @property
    def ok(self) -> bool:
        return self.status == "ok"


class RedisTLS(ComponentConfig):
    """TLS settings of Redis connections (redis-py's ``ssl_*`` options), shared by the cache and the bus.

    Parameters
    ----------
    ssl
        Connect with TLS. A ``rediss://`` URL means TLS as well; ``ssl=False`` with such a URL is refused.
    ssl_ca_certs
        PEM file of the certificate authorities trusted for the server (``None``: the system store).
    ssl_certfile, ssl_keyfile
        Client certificate and key (PEM) for servers that require one (``tls-auth-clients yes``); both or
        neither.
    ssl_cert_reqs
        ``"required"`` (verify the server certificate; the default), ``"optional"`` or ``"none"``.
    ssl_check_hostname
        Check that the certificate names the host (needs ``ssl_cert_reqs="required"``).

    Raises
    ------
    ConfigError
        A missing or unreadable file, a certificate without its key, files given without ``ssl``, or
        hostname checking without certificate verification.
    """

    ssl: bool = False
    ssl_ca_certs: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    ssl_cert_reqs: Literal["required", "optional", "none"] = "required"
    ssl_check_hostname: bool = True

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:  # built directly (not from a file): still one of our errors
            text = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg'].removeprefix('Value error, ')}"
                for e in exc.errors()
            )
            raise ConfigError(f"invalid RedisTLS: {text}") from exc

    @model_validator(mode="after")
    def _consistent(self) -> RedisTLS:
        files = {n: getattr(self, n) for n in ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile")}
        for name, path in files.items():
            if path is None:
                continue
            if not Path(path).is_file():
                raise ValueError(f"{name} {path} is not a file; give the path of a PEM file")
            try:
                with open(path, "rb") as fh:
                    fh.read(1)
            except OSError as exc:
                raise ValueError(f"{name} {path} cannot be read ({exc.strerror})") from exc
        if not self.ssl and any(files.values()):
            raise ValueError("certificate files were given but ssl is false; set ssl=true to use TLS")
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            raise ValueError("ssl_certfile and ssl_keyfile go together: give both, or neither")
        if self.ssl and self.ssl_check_hostname and self.ssl_cert_reqs != "required":
            raise ValueError(
                f"ssl_check_hostname needs ssl_cert_reqs='required' (got {self.ssl_cert_reqs!r}); set "
                "ssl_check_hostname=false to connect without verifying the server (not recommended)"
            )
        return self

    def apply(self, url: str) -> tuple[str, dict[str, Any]]:
        """``url`` with the ``rediss`` scheme when TLS is on, and the ``ssl_*`` keyword arguments for
        ``Redis.from_url`` (sync or asyncio).

        Raises
        ------
        ConfigError
            A ``rediss://`` URL with ``ssl=False``, or TLS asked for on a ``unix://`` socket.
        """
        scheme = url.split("://", 1)[0].lower() if "://" in url else ""
        if scheme == "rediss" and not self.ssl:
            raise ConfigError(
                f"the Redis URL {redact_url(url)} asks for TLS (rediss://) but RedisTLS has ssl=false; "
                "set ssl=true or use redis://."
            )
        if not self.ssl:
            return url, {}
        if scheme == "unix":
            raise ConfigError("TLS settings do not apply to a unix:// socket; use redis:// or rediss://.")
        if scheme == "redis":
            url = "rediss" + url[len("redis") :]
        kwargs: dict[str, Any] = {
            "ssl_cert_reqs": self.ssl_cert_reqs,
            "ssl_check_hostname": self.ssl_check_hostname,
        }
        for name in ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile"):
            value = getattr(self, name)
            if value is not None:
                kwargs[name] = str(value)
        return url, kwargs


class RedisCache:
    """Latest bars, quotes and predictions in Redis, as JSON with a TTL.

    Parameters
    ----------
    url
        A ``redis://`` (or ``rediss://``, ``unix://``) URL; its password never appears in messages.
    prefix
        Start of every key (``"alphaloom"`` -> ``alphaloom:bar:1d:AAPL``), so several deployments or test runs
        share one Redis without colliding. No spaces.
    default_ttl_s
        Seconds a value lives when a setter is given no ``ttl_s``.
    timeout_s
        Seconds to wait for a connection or an answer before Redis counts as unavailable. Short, because a
        cache that answers slowly is worse than none; no retries, for the same reason.
    client
        A ready ``redis.Redis`` client to use instead of one built from ``url`` (tests, shared pools).
    tls
        :class:`RedisTLS` settings (CA, client certificate, verification); ``None``: TLS only for
        ``rediss://`` URLs, with redis-py's defaults.

    Raises
    ------
    ConfigError
        An invalid URL, prefix, TTL, timeout or TLS setting. Nothing is sent to Redis until the first call.
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        prefix: str = "alphaloom",
        default_ttl_s: float = 300.0,
        timeout_s: float = 0.5,
        client: redis.Redis | None = None,
        tls: RedisTLS | None = None,
    ) -> None:
        if not isinstance(prefix, str) or not prefix or any(c.isspace() for c in prefix):
            raise ConfigError(f"prefix must be a non-empty string without spaces, got {prefix!r}.")
        self._default_ttl_ms = _ttl_ms(default_ttl_s, "default_ttl_s")
        if not (isinstance(timeout_s, int | float) and math.isfinite(timeout_s) and timeout_s > 0):
            raise ConfigError(f"timeout_s must be a positive number of seconds, got {timeout_s!r}.")
        self._url = url
        self._location = redact_url(url)
        self._prefix = prefix
        if tls is not None and not isinstance(tls, RedisTLS):
            raise ConfigError(
                f"tls must be a RedisTLS, got {type(tls).__name__}; build it with RedisTLS(...)."
            )
        if client is None:
            url, tls_kwargs = tls.apply(url) if tls is not None else (url, {})
            try:
                client = redis.Redis.from_url(
                    url,
                    **tls_kwargs,
                    socket_timeout=timeout_s,
                    socket_connect_timeout=timeout_s,
                    retry=Retry(NoBackoff(), 0),
                    health_check_interval=0,
                )
            except (ValueError, redis.RedisError) as exc:
                raise ConfigError(
                    f"Redis URL {self._location} is not valid ({exc}); expected e.g. 'redis://127.0.0.1:6379/0'."
                ) from exc
        self._client = client
        self._set_if_not_older = client.register_script(_SET_IF_NOT_OLDER)

    @property
    def location(self) -> str:
        """The Redis URL without password."""
        return self._location

    @property
    def prefix(self) -> str:
        """The start of every key this cache writes."""
        return self._prefix

    def __repr__(self) -> str:
        return f"RedisCache({self._location!r}, prefix={self._prefix!r})"

    def close(self) -> None:
        """Close the connection pool (safe to call twice)."""
        self._client.close()

    def __enter__(self) -> RedisCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ keys and transport

    def bar_key(self, symbol: str, timeframe: str = "1d") -> str:
        """The key of a symbol's latest bar of ``timeframe``."""
        return f"{self._prefix}:bar:{timeframe}:{symbol}"

    def quote_key(self, symbol: str) -> str:
        """The key of a symbol's latest quote."""
        return f"{self._prefix}:quote:{symbol}"

    def prediction_key(self, symbol: str, model_version: str) -> str:
        """The key of a model version's latest prediction for a symbol."""
        return f"{self._prefix}:pred:{symbol}:{model_version}"

    def _call(self, action: str, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except (redis.ConnectionError, redis.TimeoutError, TimeoutError, ConnectionError) as exc:
            if isinstance(exc, redis.AuthenticationError):
                raise StorageError(
                    f"{action}: Redis at {self._location} refused the credentials ({exc}); check the URL's "
                    f"user and password."
                ) from exc
            raise CacheUnavailableError(
                f"{action}: Redis at {self._location} is unavailable ({exc}); is it running and reachable?"
            ) from exc
        except redis.RedisError as exc:
            raise StorageError(f"{action} failed on Redis at {self._location}: {exc}") from exc

    def _put(self, action: str, key: str, ts: datetime, data: Mapping[str, Any], ttl_s: float | None) -> bool:
        ts_us = _ts_us(ts)
        try:
            value = json.dumps(
                {"ts_us": ts_us, "data": data}, separators=(",", ":"), allow_nan=False, default=_json_default
            )
        except (TypeError, ValueError) as exc:
            raise DataFormatError(
                f"{action}: the value cannot be cached as JSON ({exc}); use numbers, strings, booleans, "
                f"None, lists and dicts (NaN and infinity are not JSON)."
            ) from exc
        ttl_ms = self._default_ttl_ms if ttl_s is None else _ttl_ms(ttl_s, "ttl_s")
        stored = self._call(action, lambda: self._set_if_not_older(keys=[key], args=[value, ts_us, ttl_ms]))
        return bool(stored)

    def _get(self, action: str, key: str) -> dict[str, Any] | None:
        raw = self._call(action, lambda: self._client.get(key))
        if raw is None:
            return None
        try:
            value = json.loads(raw)
            data = value["data"]
            if not isinstance(data, dict):
                raise TypeError("data is not an object")
        except (ValueError, TypeError, KeyError) as exc:
            raise DataFormatError(
                f"{action}: the cached value at {key!r} in {self._location} is not what alphaloom writes "
                f"({exc}); delete the key or clear() the cache."
            ) from exc
        return data

    # ------------------------------------------------------------------ bars

    def set_latest_bar(self, bar: Bar, *, ttl_s: float | None = None) -> bool:
        """Cache ``bar`` as the latest of its symbol and timeframe unless a newer one is cached.

        Parameters
        ----------
        bar
            The bar; its ``timeframe`` is part of the key.
        ttl_s
            Seconds it lives; the cache's ``default_ttl_s`` when ``None``.

        Returns
        -------
        bool
            True when cached, False when the cache already holds a bar with a later ``ts``.

        Raises
        ------
        CacheUnavailableError
            Redis cannot be reached.
        """
        if not isinstance(bar, Bar):
            raise DataFormatError(f"set_latest_bar() takes a Bar, got {type(bar).__name__}.")
        return self._put(
            "caching a bar",
            self.bar_key(bar.symbol, bar.timeframe),
            bar.ts,
            bar.model_dump(mode="json"),
            ttl_s,
        )

    def latest_bar(self, symbol: str, timeframe: str = "1d") -> Bar | None:
        """The cached latest bar of ``symbol`` (``None`` on a miss or after its TTL).

        Raises
        ------
        CacheUnavailableError
            Redis cannot be reached.
        DataFormatError
            The cached value does not decode as a bar.
        """
        data = self._get("reading a cached bar", self.bar_key(symbol, timeframe))
        return None if data is None else Bar(**data)

    # ------------------------------------------------------------------ quotes

    def set_quote(self, quote: Quote, *, ttl_s: float | None = None) -> bool:
        """Cache ``quote`` as its symbol's latest unless a newer one is cached; see :meth:`set_latest_bar`."""
        if not isinstance(quote, Quote):
            raise DataFormatError(f"set_quote() takes a Quote, got {type(quote).__name__}.")
        return self._put(
            "caching a quote", self.quote_key(quote.symbol), quote.ts, quote.model_dump(mode="json"), ttl_s
        )

    def latest_quote(self, symbol: str) -> Quote | None:
        """The cached latest quote of ``symbol``, or ``None``."""
        data = self._get("reading a cached quote", self.quote_key(symbol))
        return None if data is None else Quote(**data)

    # ------------------------------------------------------------------ predictions

    def set_prediction(
        self,
        symbol: str,
        model_version: str,
        payload: Mapping[str, Any],
        *,
        ts: datetime | None = None,
        ttl_s: float | None = None,
    ) -> bool:
        """Cache a model version's latest prediction for ``symbol`` unless a newer one is cached.

        Parameters
        ----------
        symbol, model_version
            What the prediction is about and which model made it.
        payload
            JSON-able values (``{"p_up": 0.61, "pred_return": 0.002}``).
        ts
            Time the prediction is for (aware); now when ``None``.
        ttl_s
            Seconds it lives; the cache's ``default_ttl_s`` when ``None``.
        """
        for name, value in (("symbol", symbol), ("model_version", model_version)):
            if not isinstance(value, str) or not value:
                raise ConfigError(f"set_prediction(): {name} must be a non-empty string, got {value!r}.")
        if not isinstance(payload, Mapping):
            raise DataFormatError(
                f"set_prediction(): payload must be a mapping, got {type(payload).__name__}."
            )
        when = datetime.now(UTC) if ts is None else ensure_utc(ts, name="ts")
        data = {"symbol": symbol, "model_version": model_version, "ts": when, "payload": dict(payload)}
        return self._put(
            "caching a prediction", self.prediction_key(symbol, model_version), when, data, ttl_s
        )

    def prediction(self, symbol: str, model_version: str) -> CachedPrediction | None:
        """The cached latest prediction of ``model_version`` for ``symbol``, or ``None``."""
        key = self.prediction_key(symbol, model_version)
        data = self._get("reading a cached prediction", key)
        if data is None:
            return None
        try:
            return CachedPrediction(
                symbol=str(data["symbol"]),
                model_version=str(data["model_version"]),
                ts=ensure_utc(datetime.fromisoformat(data["ts"])),
                payload=dict(data["payload"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise DataFormatError(
                f"reading a cached prediction: the value at {key!r} is not what alphaloom writes ({exc}); "
                f"delete the key."
            ) from exc

    # ------------------------------------------------------------------ housekeeping

    def ping(self) -> float:
        """Round-trip time to Redis in seconds; raises :class:`CacheUnavailableError` when unreachable."""
        start = time.perf_counter()
        self._call("pinging", self._client.ping)
        return time.perf_counter() - start

    def clear(self) -> int:
        """Delete every key under this cache's prefix; returns how many were deleted."""

        def run() -> int:
            deleted = 0
            batch: list[bytes] = []
            for key in self._client.scan_iter(match=f"{_glob_escape(self._prefix)}:*", count=1000):
                batch.append(key)
                if len(batch) >= 1000:
                    deleted += int(self._client.unlink(*batch))
                    batch.clear()
            if batch:
                deleted += int(self._client.unlink(*batch))
            return deleted

        return self._call("clearing the cache", run)


def _ttl_ms(ttl_s: Any, name: str) -> int:
    if (
        isinstance(ttl_s, bool)
        or not isinstance(ttl_s, int | float)
        or not math.isfinite(ttl_s)
        or ttl_s <= 0
    ):
        raise ConfigError(f"{name} must be a positive number of seconds, got {ttl_s!r}.")
    return max(1, round(ttl_s * 1000))


def _glob_escape(text: str) -> str:
    return "".join(f"\\{c}" if c in "*?[]\\" else c for c in text)


class CachedBarSource:
    """The latest bar of a symbol from Redis, from the store when Redis misses or is down.

    A miss reads the store and fills the cache. When Redis is unavailable, every read goes to the store; the
    source logs one warning, reports ``"degraded"`` in :meth:`health`, and tries Redis again once
    ``retry_after_s`` has passed since the last failure (so an outage costs one timeout per interval, not one
    per read). When Redis answers again it logs once and reports ``"ok"``.

    Parameters
    ----------
    store
        Where bars live (the source of truth).
    cache
        The Redis cache in front of it.
    timeframe
        Which bars (``"1d"``).
    retry_after_s
        Seconds between attempts to reach Redis while degraded.
    ttl_s
        TTL of bars this source puts into the cache; the cache's default when ``None``.
    clock
        Time source for the retry interval and ``degraded_since``; the wall clock by default.
    """

    def __init__(
        self,
        store: BarStore,
        cache: RedisCache,
        *,
        timeframe: str = "1d",
        retry_after_s: float = 5.0,
        ttl_s: float | None = None,
        clock: Clock | None = None,
    ) -> None:
        if not isinstance(store, BarStore):
            raise ConfigError(f"store must be a BarStore, got {type(store).__name__}.")
        if not isinstance(cache, RedisCache):
            raise ConfigError(f"cache must be a RedisCache, got {type(cache).__name__}.")
        if not (
            isinstance(retry_after_s, int | float) and math.isfinite(retry_after_s) and retry_after_s >= 0
        ):
            raise ConfigError(f"retry_after_s must be a number of seconds >= 0, got {retry_after_s!r}.")
        if ttl_s is not None:
            _ttl_ms(ttl_s, "ttl_s")
        self._store = store
        self._cache = cache
        self._timeframe = timeframe
        self._retry_after_s = float(retry_after_s)
        self._ttl_s = ttl_s
        self._clock: Clock = clock if clock is not None else LiveClock()
        self._lock = threading.Lock()
        self._degraded_since: datetime | None = None
        self._last_failure: datetime | None = None
        self._last_error = ""
        self._hits = 0
        self._store_reads = 0

    # ------------------------------------------------------------------ reads

    def latest_bar(self, symbol: str) -> Bar:
        """The latest bar of ``symbol``: from Redis when it has it, else from the store.

        Raises
        ------
        UnknownSymbolError, EmptyRangeError
            The store holds no bars of ``symbol`` (the cache missed or was down).
        """
        if self._cache_usable():
            try:
                cached = self._cache.latest_bar(symbol, self._timeframe)
            except CacheUnavailableError as exc:
                self._mark_down(exc)
            except DataFormatError as exc:
                logger.warning("ignoring a corrupt cached bar and reading the store instead: %s", exc)
                self._mark_up()
                return self._read_through(symbol, refill=True)
            else:
                self._mark_up()
                if cached is not None:
                    with self._lock:
                        self._hits += 1
                    return cached
                return self._read_through(symbol, refill=True)
        return self._read_through(symbol, refill=False)

    def latest_bars(self, symbols: Iterable[str]) -> dict[str, Bar]:
        """:meth:`latest_bar` of each symbol, by symbol."""
        return {s: self.latest_bar(s) for s in dict.fromkeys(symbols)}

    def set_latest_bar(self, bar: Bar) -> bool:
        """Put a new bar into the cache (e.g. after writing it to the store); never raises for an outage.

        Returns
        -------
        bool
            True when cached; False when the cache holds a newer bar or Redis is unavailable.
        """
        if not self._cache_usable():
            return False
        try:
            stored = self._cache.set_latest_bar(bar, ttl_s=self._ttl_s)
        except CacheUnavailableError as exc:
            self._mark_down(exc)
            return False
        self._mark_up()
        return stored

    def health(self) -> CacheHealth:
        """Whether Redis is serving, since when it is not, and how reads were served."""
        with self._lock:
            return CacheHealth(
                status="ok" if self._degraded_since is None else "degraded",
                cache=self._cache.location,
                degraded_since=self._degraded_since,
                last_error=self._last_error,
                cache_hits=self._hits,
                store_reads=self._store_reads,
            )

    # ------------------------------------------------------------------ internals

    def _read_through(self, symbol: str, *, refill: bool) -> Bar:
        with self._lock:
            self._store_reads += 1
        bar = self._from_store(symbol)
        if refill:
            try:
                self._cache.set_latest_bar(bar, ttl_s=self._ttl_s)
            except CacheUnavailableError as exc:
                self._mark_down(exc)
        return bar

    def _from_store(self, symbol: str) -> Bar:
        summary = self._store.summary()
        row = summary[(summary["symbol"] == symbol) & (summary["timeframe"] == self._timeframe)]
        # With no row, read_bars raises the store's own UnknownSymbolError / EmptyRangeError.
        start = None if row.empty else row["last_ts"].iloc[0].to_pydatetime()
        frame = self._store.read_bars(symbol, start=start, timeframe=self._timeframe)
        last = frame.iloc[-1]
        volume = float(last["volume"])
        return Bar(
            symbol=symbol,
            ts=last["ts"].to_pydatetime(),
            open=float(last["open"]),
            high=float(last["high"]),
            low=float(last["low"]),
            close=float(last["close"]),
            volume=None if math.isnan(volume) else volume,
            timeframe=self._timeframe,
        )

    def _cache_usable(self) -> bool:
        with self._lock:
            if self._degraded_since is None or self._last_failure is None:
                return True
            waited = (self._clock.now() - self._last_failure).total_seconds()
            return waited >= self._retry_after_s

    def _mark_down(self, exc: CacheUnavailableError) -> None:
        now = self._clock.now()
        with self._lock:
            first = self._degraded_since is None
            if first:
                self._degraded_since = now
            self._last_failure = now
            self._last_error = str(exc)
        if first:
            logger.warning(
                "Redis cache at %s is unavailable; serving latest bars from the store at %s until it is back "
                "(retrying every %.1f s): %s",
                self._cache.location,
                self._store.location,
                self._retry_after_s,
                exc,
            )

    def _mark_up(self) -> None:
        with self._lock:
            since, self._degraded_since = self._degraded_since, None
            self._last_failure = None
        if since is not None:
            down_s = (self._clock.now() - since).total_seconds()
            logger.info(
                "Redis cache at %s is back after %.1f s; serving from the cache again",
                self._cache.location,
                down_s,
            )
