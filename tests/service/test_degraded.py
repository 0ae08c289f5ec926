"""Graceful degradation: a CNN+LSTM that fails to load, and Redis going down while the service runs.

The service must stay up in both cases, keep answering with a simpler fallback, and say so: in ``/readyz``
(``status: degraded`` with the reason) and in what it serves (each prediction's ``source``, each signal's
``source`` and ``fallback``).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import redis
from fastapi.testclient import TestClient

from alphaloom.core.exceptions import CacheUnavailableError
from alphaloom.jobs import stages
from alphaloom.jobs.config import RunConfig
from alphaloom.jobs.registry import FORECASTER_NAME, open_registry
from alphaloom.jobs.workspace import Workspace
from alphaloom.service import KeyStore, create_app, keys_path
from alphaloom.service.app import API_PREFIX
from alphaloom.service.inference import PredictionCache

from .conftest import make_settings


def _wait(predicate, timeout_s: float = 30.0):
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


# ------------------------------------------------------------------ the CNN+LSTM fails to load


@pytest.fixture(scope="module")
def corrupt_ws(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    """A workspace of its own (store, features, a registered CNN+LSTM) whose model file is then corrupted."""
    ws = Workspace.resolve(tmp_path_factory.mktemp("corrupt_model"))
    config = RunConfig.quick(seed=3).replace(cnn_epochs=1)
    ws.save_config(config)
    stages.ingest(ws)
    stages.compute_features(ws, config)
    stages.train_forecaster(ws, config)
    with open_registry(ws) as registry:
        (info,) = registry.list(FORECASTER_NAME)
        served = Path(info.artefact_uri.removeprefix("file://"))
    assert served.is_relative_to(ws.root), served  # the test must not touch another workspace's model
    files = [served] if served.is_file() else [p for p in served.rglob("*") if p.is_file()]
    assert files
    for f in files:
        f.write_bytes(b"\x00not a model\x00" * 64)
    shutil.rmtree(ws.models_dir / "cnn_lstm", ignore_errors=True)
    (ws.models_dir / "cnn_lstm").write_bytes(b"garbage")
    return ws


@pytest.fixture(scope="module")
def corrupt_client(corrupt_ws: Workspace) -> Iterator[tuple[TestClient, dict[str, str]]]:
    key, _ = KeyStore(keys_path(corrupt_ws)).create("degraded-viewer", "viewer")
    with TestClient(create_app(make_settings(corrupt_ws)), raise_server_exceptions=False) as c:
        yield c, {"X-API-Key": key}


def test_a_model_that_fails_to_load_degrades_to_the_persistence_baseline(corrupt_client) -> None:
    client, h = corrupt_client
    r = client.get("/readyz")
    assert r.status_code == 200  # serving, with a fallback
    ready = r.json()
    assert ready["ready"] is True
    assert ready["status"] == "degraded"
    assert any("could not be loaded" in d and "persistence baseline" in d for d in ready["degraded"])
    assert ready["dependencies"]["registry"].startswith("degraded: the CNN+LSTM could not be loaded")
    assert "no RL ensemble" in ready["dependencies"]["trading"]

    p = client.post(f"{API_PREFIX}/predict", json={"symbol": "SPY"}, headers=h)
    assert p.status_code == 200, p.text
    pred = p.json()
    assert pred["source"] == "persistence_baseline"
    assert pred["model_version"].startswith("persistence@")
    assert pred["p_down"] + pred["p_flat"] + pred["p_up"] == pytest.approx(1.0)
    # persistence: the forecast return is the last 1-bar log return of the stored closes
    bars = client.get(f"{API_PREFIX}/market/bars", params={"symbol": "SPY", "limit": 2}, headers=h).json()
    assert pred["pred_return"] == pytest.approx(np.log(bars[1]["close"] / bars[0]["close"]))
    assert pd.Timestamp(pred["ts"]) == pd.Timestamp(bars[1]["ts"])
    batch = client.post(f"{API_PREFIX}/predict/batch", json={"symbols": ["SPY", "BTCUSD"]}, headers=h).json()
    assert [b["source"] for b in batch] == ["persistence_baseline"] * 2


def test_signals_say_the_trend_rule_decided_and_why(corrupt_client) -> None:
    client, h = corrupt_client
    signals = _wait(lambda: client.get(f"{API_PREFIX}/signals", headers=h).json())
    for s in signals:
        assert s["source"] == "trend_rule"
        assert "could not be loaded" in s["fallback"]
        assert s["votes"] == []


def test_when_the_fallback_fails_too_the_rest_of_the_api_serves_on(corrupt_ws, monkeypatch) -> None:
    import alphaloom.service.inference as inference

    def broken(*args, **kwargs):
        raise RuntimeError("no baseline either")

    monkeypatch.setattr(inference, "load_fallback_forecaster", broken)
    key, _ = KeyStore(keys_path(corrupt_ws)).create("degraded-viewer-2", "viewer")
    h = {"X-API-Key": key}
    with TestClient(
        create_app(make_settings(corrupt_ws, trade_paper=False)), raise_server_exceptions=False
    ) as c:
        r = c.get("/readyz")
        assert r.status_code == 503
        registry = r.json()["dependencies"]["registry"]
        assert "could not be loaded" in registry
        assert "fallback failed too (RuntimeError: no baseline either)" in registry
        p = c.post(f"{API_PREFIX}/predict", json={"symbol": "SPY"}, headers=h)
        assert p.status_code == 503
        assert "no model to serve" in p.json()["detail"]
        assert c.get(f"{API_PREFIX}/risk", headers=h).status_code == 200
        assert c.get(f"{API_PREFIX}/market/symbols", headers=h).status_code == 200


# ------------------------------------------------------------------ Redis goes down


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[tuple[subprocess.Popen, str]]:
    """A redis-server of this test only, on a spare port (the shared one on 6379 is never touched)."""
    exe = shutil.which("redis-server")
    assert exe, "redis-server is needed (apt-get install redis-server)"
    port = _free_port()
    proc = subprocess.Popen(
        [
            exe,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            tmp_path,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        client = redis.Redis.from_url(url)
        _wait(lambda: _pings(client), timeout_s=10)
        yield proc, url
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


def test_redis_down_falls_back_to_the_in_process_cache(demo_ws, keys, private_redis) -> None:
    proc, url = private_redis
    h = {"X-API-Key": keys["viewer"]}
    settings = make_settings(demo_ws, redis_url=url, trade_paper=False)
    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        ready = c.get("/readyz").json()
        assert ready["dependencies"]["redis"] == "ok"
        first = c.post(f"{API_PREFIX}/predict", json={"symbol": "SPY"}, headers=h).json()
        assert first["cached"] is False
        assert redis.Redis.from_url(url).keys("alphaloom-api:*"), "the prediction was not written to Redis"

        proc.kill()
        proc.wait(timeout=10)

        r = c.post(f"{API_PREFIX}/predict", json={"symbol": "EURUSD"}, headers=h)
        assert r.status_code == 200, r.text
        assert r.json()["cached"] is False
        again = c.post(f"{API_PREFIX}/predict", json={"symbol": "EURUSD"}, headers=h).json()
        assert again["cached"] is True  # from the in-process cache
        assert {**r.json(), "cached": True} == again
        r = c.get("/readyz")
        assert r.status_code == 200
        ready = r.json()
        assert ready["ready"] is True
        assert ready["status"] == "degraded"
        assert ready["dependencies"]["redis"].startswith("down:")
        assert "in-process cache" in ready["dependencies"]["redis"]
        assert any(d.startswith("redis: down") for d in ready["degraded"])
        assert c.get("/healthz").status_code == 200


class _FlakyRedis:
    """Counts calls; fails while ``down``."""

    def __init__(self) -> None:
        self.down = True
        self.calls = 0

    def _maybe_fail(self) -> None:
        self.calls += 1
        if self.down:
            raise CacheUnavailableError("connection refused")

    def prediction(self, digest: str, version: str):
        self._maybe_fail()

    def set_prediction(self, digest: str, version: str, value, *, ts, ttl_s) -> bool:
        self._maybe_fail()
        return True

    def ping(self) -> float:
        self._maybe_fail()
        return 0.0001


def test_prediction_cache_leaves_a_failed_redis_alone_for_retry_after_s() -> None:
    now = [100.0]
    fake = _FlakyRedis()
    cache = PredictionCache(16, 60.0, fake, retry_after_s=5.0, clock=lambda: now[0])
    from datetime import UTC, datetime

    ts = datetime(2024, 1, 2, tzinfo=UTC)
    assert cache.get("m/1", "a") is None  # Redis fails once ...
    assert fake.calls == 1
    cache.put("m/1", "a", {"p_up": 0.5}, ts)
    for _ in range(20):
        assert cache.get("m/1", "a") == {"p_up": 0.5}  # ... then the in-process level answers
        assert cache.get("m/1", "b") is None
    assert fake.calls == 1  # no call to Redis within the retry window
    now[0] += 5.1
    fake.down = False
    assert cache.get("m/1", "c") is None
    assert fake.calls == 2  # tried again after the window
    assert cache.stats.redis_errors == 1
    fake.down = True
    assert cache.redis_state().startswith("unavailable: connection refused")
