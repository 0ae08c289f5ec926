"""One demo workspace (``RunConfig.quick()``, real sample data) per session, served by ``create_app``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from alphaloom.jobs.config import RunConfig
from alphaloom.jobs.demo import run_demo
from alphaloom.jobs.workspace import Workspace
from alphaloom.service import KeyStore, ServiceSettings, create_app, keys_path


@pytest.fixture(scope="session")
def demo_ws(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    ws = Workspace.resolve(tmp_path_factory.mktemp("service_ws"))
    run_demo(ws, RunConfig.quick(seed=11))
    return ws


@pytest.fixture(scope="session")
def keys(demo_ws: Workspace) -> dict[str, str]:
    store = KeyStore(keys_path(demo_ws))
    return {role: store.create(f"test-{role}", role)[0] for role in ("viewer", "trader", "admin")}


def make_settings(ws: Workspace, **changes) -> ServiceSettings:
    base = {
        "data_dir": Path(ws.root),
        "replay_interval_s": 0.02,
        "log_json": False,
        # generous limits: only the rate-limit test meets them
        "viewer_rate_per_s": 10_000.0,
        "trader_rate_per_s": 10_000.0,
        "admin_rate_per_s": 10_000.0,
    }
    return ServiceSettings(**{**base, **changes})


@pytest.fixture(scope="session")
def client(demo_ws: Workspace, keys: dict[str, str]) -> Iterator[TestClient]:
    with TestClient(create_app(make_settings(demo_ws)), raise_server_exceptions=False) as c:
        yield c


@pytest.fixture(scope="session")
def headers(keys: dict[str, str]) -> dict[str, dict[str, str]]:
    return {role: {"X-API-Key": key} for role, key in keys.items()}
