"""Real-time CNN+LSTM inference: the model loaded once, micro-batched forward passes, a prediction cache.

- :func:`load_forecaster` finds the model to serve: the registry's champion ``cnn_lstm``; else the latest
  registered version (and says so: ``fallback`` is set, ``/readyz`` and the predictions' ``model_version``
  show it); else the forecaster saved in ``<data-dir>/models/cnn_lstm``.
- :func:`load_fallback_forecaster`: when the CNN+LSTM cannot be loaded at all (a corrupt or missing file,
  an incompatible export), the persistence baseline (:class:`PersistencePredictor`) is served instead, and
  ``/readyz`` and every prediction (``source``) say so: the service degrades instead of failing.
- :class:`FeatureWindows` holds each symbol's latest complete feature window (the model's ``window`` rows of
  its feature columns, from the stored ``features`` table), i.e. the input of the next forecast.
- :class:`MicroBatcher` queues concurrent requests and runs them as one forward pass when ``max_size``
  requests are waiting or the first has waited ``max_wait_ms``; the pass runs on one worker thread, so the
  event loop keeps accepting requests meanwhile. ``forward_passes`` counts the passes.
- :class:`PredictionCache` keys a prediction by model version and the SHA-256 of its input window: an
  in-process LRU with a TTL, backed by Redis when a URL is configured (a Redis outage falls back to the
  in-process cache and is reported, never raised to the caller).

torch is imported only inside :func:`load_forecaster` (through the model package), so importing this module
stays light.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import unquote, urlparse

import numpy as np
import pandas as pd

from alphaloom.core.exceptions import (
    CacheUnavailableError,
    ConfigError,
    DataFormatError,
    DataNotFoundError,
    NotFittedError,
    StorageError,
    UnknownSymbolError,
)
from alphaloom.jobs.workspace import Workspace

__all__ = [
    "FeatureWindows",
    "ForecastModel",
    "InferenceService",
    "MicroBatcher",
    "PersistencePredictor",
    "PredictionCache",
    "load_fallback_forecaster",
    "load_forecaster",
]

logger = logging.getLogger(__name__)


@dataclass
class ForecastModel:
    """The served forecaster: a :class:`~alphaloom.models.cnn_lstm.export.Predictor` and where it came from.

    Attributes
    ----------
    predictor
        The batched predictor (``predict_windows``).
    version
        ``"cnn_lstm/3"`` for a registered version, ``"cnn_lstm@<hash>"`` for an unregistered file.
    stage
        Its registry stage (``champion``, ``candidate``, ...) or ``"unregistered"``.
    fallback
        Why it is not the champion (empty when it is).
    """

    predictor: Any
    version: str
    stage: str
    fallback: str = ""

    @property
    def window(self) -> int:
        return int(self.predictor.window)

    @property
    def source(self) -> str:
        """``"cnn_lstm"``, or ``"persistence_baseline"`` when the CNN+LSTM could not be loaded."""
        return "persistence_baseline" if self.stage == "fallback" else "cnn_lstm"

    @property
    def feature_names(self) -> list[str]:
        return list(self.predictor.feature_names or [])


def _local_path(uri: str) -> Path | None:
    parsed = urlparse(uri)
    if parsed.scheme in ("", "file"):
        return Path(unquote(parsed.path))
    return None


def load_forecaster(ws: Workspace, *, backend: str = "eager") -> ForecastModel:
    """Load the CNN+LSTM to serve (see the module docstring); :class:`NotFittedError` if none exists."""
    from alphaloom.models.cnn_lstm.export import Predictor

    why = ""
    try:
        from alphaloom.jobs.registry import FORECASTER_NAME, open_registry

        with open_registry(ws) as registry:
            info = registry.champion(FORECASTER_NAME)
            if info is None:
                versions = registry.list(FORECASTER_NAME)
                if versions:
                    info = max(versions, key=lambda v: v.version)
                    why = (
                        f"no champion {FORECASTER_NAME} in the registry; serving the latest trained version "
                        f"{info.ref} ({info.stage.value}). Promote one with `alphaloom models promote`."
                    )
            if info is not None:
                path = _local_path(info.artefact_uri) or registry.artefact_path(info.name, info.version)
                if path.is_dir() and (path / FORECASTER_NAME).exists():
                    path = path / FORECASTER_NAME  # the saved forecaster inside the artefact folder
                predictor = Predictor.load(path, backend=backend)  # type: ignore[arg-type]
                return ForecastModel(predictor, info.ref, info.stage.value, why)
            why = f"no {FORECASTER_NAME} in the registry"
    except (StorageError, DataNotFoundError, ConfigError, NotFittedError) as exc:
        why = f"the registry could not be read ({exc})"
    path = ws.models_dir / "cnn_lstm"
    if not path.exists():
        raise NotFittedError(
            f"no CNN+LSTM to serve: {why}, and nothing at {path}. Train one with "
            f"`alphaloom train cnn-lstm --data-dir {ws.root}` (or `alphaloom demo`)."
        )
    predictor = Predictor.load(path, backend=backend)  # type: ignore[arg-type]
    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for f in files:
        digest.update(f.read_bytes())
    return ForecastModel(
        predictor,
        f"cnn_lstm@{digest.hexdigest()[:12]}",
        "unregistered",
        f"{why}; serving the forecaster saved in {path}",
    )


class PersistencePredictor:
    """The forecaster served when the CNN+LSTM cannot be loaded: alphaloom's persistence baseline.

    :class:`~alphaloom.models.PersistenceForecaster` (the last ``horizon``-bar return goes on; the
    probabilities come from how often that held on the stored history) is fitted on the stored closes at
    start-up, in milliseconds, and adapted here to the predictor interface the micro-batcher calls: its
    inputs are windows of the last ``horizon + 1`` closes, ``feature_names == ["close"]``.

    Parameters
    ----------
    forecaster
        A fitted :class:`~alphaloom.models.PersistenceForecaster`.
    """

    def __init__(self, forecaster: Any) -> None:
        self.forecaster = forecaster
        self.feature_names = ["close"]
        self.window = int(forecaster.config.horizon) + 1
        # any increasing UTC index: persistence reads only the closes' order
        self._index = pd.date_range("2000-01-03", periods=self.window, freq="D", tz="UTC", name="ts")

    def predict_windows(self, windows: np.ndarray) -> Any:
        """Probabilities ``(n, 3)`` and forecast log returns ``(n,)`` for close windows ``(n, window, 1)``."""
        proba = np.empty((len(windows), 3))
        ret = np.empty(len(windows))
        for i, window in enumerate(np.asarray(windows, dtype=np.float64)):
            out = self.forecaster.predict(pd.DataFrame({"close": window[:, 0]}, index=self._index))
            if out.empty:
                raise DataFormatError("the persistence fallback needs finite, positive closes in its window.")
            last = out.iloc[-1]
            proba[i] = (last["p_down"], last["p_flat"], last["p_up"])
            ret[i] = last["pred_return"]
        return SimpleNamespace(probabilities=proba, pred_return=ret)


def load_fallback_forecaster(
    store: Any, symbols: Sequence[str], why: str
) -> tuple[ForecastModel, pd.DataFrame]:
    """The persistence baseline fitted on the stored closes of ``symbols``, and its input frame.

    Returns the model (``stage == "fallback"``, ``fallback`` saying ``why``) and the ``symbol, ts, close``
    frame its :class:`FeatureWindows` are cut from.
    """
    from alphaloom.models import PersistenceConfig, PersistenceForecaster

    bars = store.read_bars(list(symbols))[["symbol", "ts", "close"]]
    frames = {str(sym): g.set_index("ts")[["close"]] for sym, g in bars.groupby("symbol", sort=True)}
    forecaster = PersistenceForecaster(PersistenceConfig()).fit(frames)
    predictor = PersistencePredictor(forecaster)
    version = f"persistence@{forecaster.config.config_hash()[:12]}"
    return ForecastModel(predictor, version, "fallback", f"{why}; serving the persistence baseline"), bars


class FeatureWindows:
    """Each symbol's latest complete input window for the model.

    Parameters
    ----------
    features
        The stored ``features`` table (``symbol``, ``ts`` and feature columns).
    feature_names, window
        The model's input columns and window length.
    """

    def __init__(self, features: pd.DataFrame, feature_names: Sequence[str], window: int) -> None:
        missing = [c for c in ("symbol", "ts", *feature_names) if c not in features.columns]
        if missing:
            raise DataNotFoundError(
                f"the stored features lack the model's columns {missing[:5]}; re-run `alphaloom features` "
                "with the settings the model was trained on."
            )
        self._windows: dict[str, tuple[datetime, np.ndarray]] = {}
        self.skipped: dict[str, str] = {}
        for sym, g in features.groupby("symbol", sort=True):
            g = g.sort_values("ts")
            values = g[list(feature_names)].to_numpy(dtype=np.float64)
            finite = np.isfinite(values).all(axis=1)
            # the latest row whose whole window is finite
            ok = np.convolve(finite.astype(np.int64), np.ones(window, dtype=np.int64), "valid") == window
            if not ok.any():
                self.skipped[str(sym)] = f"no {window} consecutive finite feature rows"
                continue
            end = int(np.flatnonzero(ok)[-1]) + window
            ts = pd.Timestamp(g["ts"].iloc[end - 1]).to_pydatetime()
            self._windows[str(sym)] = (ts, np.ascontiguousarray(values[end - window : end]))

    @property
    def symbols(self) -> list[str]:
        return sorted(self._windows)

    def get(self, symbol: str) -> tuple[datetime, np.ndarray]:
        """The bar time of the latest complete window and the window ``(window, n_features)``."""
        try:
            return self._windows[symbol]
        except KeyError:
            from alphaloom.core.exceptions import did_you_mean

            why = f" ({self.skipped[symbol]})" if symbol in self.skipped else ""
            raise UnknownSymbolError(
                f"no features to forecast {symbol!r}{why}.{did_you_mean(symbol, self._windows)} Symbols with "
                f"features: {', '.join(self.symbols) or 'none'}."
            ) from None


def input_hash(window: np.ndarray) -> str:
    """SHA-256 (hex) of a float64 window: its shape and bytes."""
    h = hashlib.sha256(str(window.shape).encode())
    h.update(np.ascontiguousarray(window, dtype=np.float64).tobytes())
    return h.hexdigest()


@dataclass
class _Entry:
    value: dict[str, Any]
    expires: float


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    redis_errors: int = 0
    last_redis_error: str = ""


class PredictionCache:
    """Predictions by ``(model_version, input_hash)``: in-process LRU (with TTL), then Redis if configured.

    Parameters
    ----------
    size
        In-process entries kept (0 disables the in-process level).
    ttl_s
        Seconds a prediction stays valid.
    redis
        A :class:`~alphaloom.data.storage.redis_cache.RedisCache`, or ``None``.
    retry_after_s
        After a Redis failure, seconds during which only the in-process level is used.
    clock
        Monotonic seconds (injectable for tests).
    """

    def __init__(
        self,
        size: int,
        ttl_s: float,
        redis: Any | None = None,
        *,
        retry_after_s: float = 5.0,
        clock: Any = time.monotonic,
    ) -> None:
        self.size = int(size)
        self.ttl_s = float(ttl_s)
        self.redis = redis
        self.retry_after_s = float(retry_after_s)
        self._clock = clock
        self._redis_down_until = 0.0
        self._lru: OrderedDict[str, _Entry] = OrderedDict()
        self._lock = threading.Lock()
        self.stats = CacheStats()

    def _use_redis(self) -> bool:
        # after a failure Redis is left alone for retry_after_s: an outage costs one timeout per interval,
        # not one per request (the calls are synchronous, on the event loop)
        return self.redis is not None and self._clock() >= self._redis_down_until

    @staticmethod
    def key(model_version: str, digest: str) -> str:
        return f"{model_version}:{digest}"

    def get(self, model_version: str, digest: str) -> dict[str, Any] | None:
        k = self.key(model_version, digest)
        now = time.monotonic()
        with self._lock:
            entry = self._lru.get(k)
            if entry is not None:
                if entry.expires > now:
                    self._lru.move_to_end(k)
                    self.stats.hits += 1
                    return entry.value
                del self._lru[k]
        if self._use_redis():
            try:
                cached = self.redis.prediction(digest, model_version)
            except (CacheUnavailableError, StorageError, DataFormatError) as exc:
                self._redis_failed(exc)
                cached = None
            if cached is not None:
                self._put_local(k, cached.payload, now)
                self.stats.hits += 1
                return dict(cached.payload)
        self.stats.misses += 1
        return None

    def put(self, model_version: str, digest: str, value: dict[str, Any], ts: datetime) -> None:
        self._put_local(self.key(model_version, digest), value, time.monotonic())
        if self._use_redis():
            try:
                self.redis.set_prediction(digest, model_version, value, ts=ts, ttl_s=self.ttl_s)
            except (CacheUnavailableError, StorageError, DataFormatError) as exc:
                self._redis_failed(exc)

    def _put_local(self, k: str, value: dict[str, Any], now: float) -> None:
        if self.size <= 0:
            return
        with self._lock:
            self._lru[k] = _Entry(dict(value), now + self.ttl_s)
            self._lru.move_to_end(k)
            while len(self._lru) > self.size:
                self._lru.popitem(last=False)

    def _redis_failed(self, exc: Exception) -> None:
        self._redis_down_until = self._clock() + self.retry_after_s
        self.stats.redis_errors += 1
        self.stats.last_redis_error = str(exc)
        logger.warning("prediction cache: Redis failed, using the in-process cache (%s)", exc)

    def redis_state(self) -> str:
        """``"disabled"``, ``"ok"`` or ``"unavailable: <why>"``."""
        if self.redis is None:
            return "disabled"
        try:
            self.redis.ping()
        except (CacheUnavailableError, StorageError) as exc:
            self._redis_failed(exc)
            return f"unavailable: {exc}"
        self._redis_down_until = 0.0  # back: use it again at once
        return "ok"


@dataclass
class _Pending:
    window: np.ndarray
    future: asyncio.Future[tuple[np.ndarray, float]]


@dataclass
class BatchStats:
    forward_passes: int = 0
    items: int = 0
    sizes: deque[int] = field(default_factory=lambda: deque(maxlen=1024))  # the latest passes only


class MicroBatcher:
    """Runs concurrent single-window requests as batched forward passes.

    Parameters
    ----------
    predictor
        Has ``predict_windows(windows) -> Prediction`` (probabilities ``(n, 3)``, pred_return ``(n,)``).
    max_size
        Largest batch.
    max_wait_ms
        Longest a request waits for others to join its batch.
    enabled
        ``False``: every request is its own forward pass (for comparison).
    """

    def __init__(self, predictor: Any, *, max_size: int = 64, max_wait_ms: float = 2.0, enabled: bool = True):
        if max_size < 1:
            raise ConfigError(f"max_size must be >= 1, got {max_size}.")
        self.predictor = predictor
        self.max_size = int(max_size)
        self.max_wait_s = float(max_wait_ms) / 1000.0
        self.enabled = enabled
        self.stats = BatchStats()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="alphaloom-inference")
        self._queue: asyncio.Queue[_Pending] | None = None
        self._worker: asyncio.Task[None] | None = None
        self.on_batch: Any = None  # optional callback(batch_size), for metrics

    def _forward(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        out = self.predictor.predict_windows(windows)
        return np.asarray(out.probabilities, dtype=np.float64), np.asarray(out.pred_return, dtype=np.float64)

    async def _run(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.stats.forward_passes += 1
        self.stats.items += len(windows)
        self.stats.sizes.append(len(windows))
        if self.on_batch is not None:
            self.on_batch(len(windows))
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._forward, windows)

    async def predict(self, window: np.ndarray) -> tuple[np.ndarray, float]:
        """Probabilities ``(3,)`` and the forecast log return for one window."""
        if not self.enabled:
            proba, ret = await self._run(window[None])
            return proba[0], float(ret[0])
        if self._worker is None or self._worker.done():
            self._queue = asyncio.Queue()
            self._worker = asyncio.get_running_loop().create_task(self._loop(self._queue))
        assert self._queue is not None
        future: asyncio.Future[tuple[np.ndarray, float]] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Pending(window, future))
        return await future

    async def predict_many(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One forward pass for a stack of windows ``(n, window, n_features)`` (the batch endpoint)."""
        return await self._run(windows)

    async def _loop(self, queue: asyncio.Queue[_Pending]) -> None:
        loop = asyncio.get_running_loop()
        while True:
            first = await queue.get()
            batch = [first]
            deadline = loop.time() + self.max_wait_s
            while len(batch) < self.max_size:
                # take everything already queued, then wait for more until the deadline
                while len(batch) < self.max_size and not queue.empty():
                    batch.append(queue.get_nowait())
                remaining = deadline - loop.time()
                if len(batch) >= self.max_size or remaining <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(queue.get(), remaining))
                except TimeoutError:
                    break
            live = [p for p in batch if not p.future.done()]
            if not live:
                continue
            try:
                proba, ret = await self._run(np.stack([p.window for p in live]))
            except Exception as exc:  # hand the error to every waiter; the loop goes on
                for p in live:
                    if not p.future.done():
                        p.future.set_exception(exc)
                continue
            for i, p in enumerate(live):
                if not p.future.done():
                    p.future.set_result((proba[i], float(ret[i])))

    async def aclose(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._worker
        self._executor.shutdown(wait=True, cancel_futures=True)


class InferenceService:
    """Predictions for symbols: windows -> cache -> micro-batcher -> cache, with counters."""

    def __init__(
        self, model: ForecastModel, windows: FeatureWindows, cache: PredictionCache, batcher: MicroBatcher
    ) -> None:
        self.model = model
        self.windows = windows
        self.cache = cache
        self.batcher = batcher
        self.on_prediction: Any = None  # optional callback(cached: bool)

    def _payload(self, symbol: str, ts: datetime, proba: np.ndarray, ret: float) -> dict[str, Any]:
        return {
            "symbol": symbol,
            "ts": ts.isoformat(),
            "p_down": float(proba[0]),
            "p_flat": float(proba[1]),
            "p_up": float(proba[2]),
            "pred_return": float(ret),
            "model_version": self.model.version,
            "source": self.model.source,
        }

    def _count(self, cached: bool) -> None:
        if self.on_prediction is not None:
            self.on_prediction(cached)

    async def predict(self, symbol: str) -> dict[str, Any]:
        """The forecast at ``symbol``'s latest complete feature window, with ``cached``."""
        ts, window = self.windows.get(symbol)
        digest = input_hash(window)
        hit = self.cache.get(self.model.version, digest)
        if hit is not None:
            self._count(True)
            return {**hit, "cached": True}
        proba, ret = await self.batcher.predict(window)
        payload = self._payload(symbol, ts, proba, ret)
        self.cache.put(self.model.version, digest, payload, ts)
        self._count(False)
        return {**payload, "cached": False}

    async def predict_batch(self, symbols: Sequence[str]) -> list[dict[str, Any]]:
        """Forecasts for many symbols: cache hits answered at once, the rest in one forward pass."""
        found = [(s, *self.windows.get(s)) for s in symbols]  # raises for an unknown symbol first
        out: list[dict[str, Any] | None] = [None] * len(found)
        todo: list[int] = []
        digests = [input_hash(w) for _, _, w in found]
        for i, digest in enumerate(digests):
            hit = self.cache.get(self.model.version, digest)
            if hit is not None:
                out[i] = {**hit, "cached": True}
                self._count(True)
            else:
                todo.append(i)
        if todo:
            proba, ret = await self.batcher.predict_many(np.stack([found[i][2] for i in todo]))
            for j, i in enumerate(todo):
                sym, ts, _ = found[i]
                payload = self._payload(sym, ts, proba[j], float(ret[j]))
                self.cache.put(self.model.version, digests[i], payload, ts)
                out[i] = {**payload, "cached": False}
                self._count(False)
        return [o for o in out if o is not None]
