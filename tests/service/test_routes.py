"""Every route: the happy path on a real demo workspace, and 401 / 403 / 422 for each protected one."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from fastapi.testclient import TestClient

from alphaloom.jobs.stages import FEATURES_TABLE
from alphaloom.service.app import API_PREFIX

# (method, path, lowest role, a valid body or None). The parametrised auth tests run over all of it.
ROUTES = [
    ("POST", "/auth/token", "viewer", None),
    ("GET", "/me", "viewer", None),
    ("GET", "/market/symbols", "viewer", None),
    ("GET", "/market/bars?symbol=SPY", "viewer", None),
    ("GET", "/features?symbol=SPY", "viewer", None),
    ("POST", "/predict", "viewer", {"symbol": "SPY"}),
    ("POST", "/predict/batch", "viewer", {"symbols": ["SPY"]}),
    ("GET", "/signals", "viewer", None),
    ("GET", "/portfolio", "viewer", None),
    ("GET", "/positions", "viewer", None),
    ("GET", "/orders", "viewer", None),
    ("POST", "/orders", "trader", {"symbol": "SPY", "side": "buy", "quantity": 1}),
    ("DELETE", "/orders/al-does-not-exist", "trader", None),
    ("POST", "/backtests", "trader", {"symbols": ["SPY"], "strategy": "buy_and_hold"}),
    ("GET", "/backtests", "viewer", None),
    ("GET", "/backtests/abc123", "viewer", None),
    ("GET", "/backtests/abc123/report", "viewer", None),
    ("GET", "/models", "viewer", None),
    ("GET", "/models/cnn_lstm", "viewer", None),
    ("GET", "/ab", "viewer", None),
    ("GET", "/risk", "viewer", None),
    ("PUT", "/risk/limits", "admin", {"max_leverage": 2.0}),
    ("POST", "/risk/kill", "admin", {"reason": "test"}),
    ("POST", "/risk/resume", "admin", {"reason": "test"}),
    ("GET", "/audit/verify", "admin", None),
    ("GET", "/audit/export?format=json", "admin", None),
]
LOWER = {"trader": "viewer", "admin": "trader"}


def _call(client: TestClient, method: str, path: str, body, headers=None):
    return client.request(method, API_PREFIX + path, json=body, headers=headers or {})


def test_route_table_covers_every_api_route(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    documented = {
        (m.upper(), p) for p, ops in schema["paths"].items() for m in ops if p.startswith(API_PREFIX)
    }
    table = {(m, API_PREFIX + p.split("?")[0]) for m, p, _, _ in ROUTES}
    normalise = {
        "/api/v1/orders/al-does-not-exist": "/api/v1/orders/{client_order_id}",
        "/api/v1/backtests/abc123": "/api/v1/backtests/{job_id}",
        "/api/v1/backtests/abc123/report": "/api/v1/backtests/{job_id}/report",
        "/api/v1/models/cnn_lstm": "/api/v1/models/{name}",
    }
    table = {(m, normalise.get(p, p)) for m, p in table}
    assert table == documented


@pytest.mark.parametrize(
    ("method", "path", "role", "body"), ROUTES, ids=[f"{m} {p}" for m, p, _, _ in ROUTES]
)
def test_401_without_or_with_a_bad_credential(client: TestClient, method, path, role, body) -> None:
    for headers in ({}, {"X-API-Key": "alk_000000000000_" + "A" * 43}, {"Authorization": "Bearer alt.x.y"}):
        r = _call(client, method, path, body, headers)
        assert r.status_code == 401, (headers, r.text)
        detail = r.json()["detail"]
        assert isinstance(detail, str)
        assert "X-API-Key" in detail or "token" in detail


@pytest.mark.parametrize(
    ("method", "path", "role", "body"),
    [r for r in ROUTES if r[2] != "viewer"],
    ids=[f"{m} {p}" for m, p, role, _ in ROUTES if role != "viewer"],
)
def test_403_with_a_role_too_low(client: TestClient, headers, method, path, role, body) -> None:
    r = _call(client, method, path, body, headers[LOWER[role]])
    assert r.status_code == 403, r.text
    assert f"needs the {role} role" in r.json()["detail"]


BAD_INPUT = [
    ("GET", "/market/bars?symbol=SPY&limit=0", None, "limit"),
    ("GET", "/market/bars?symbol=SPY&start=2021-01-01T00:00:00", None, "timezone"),
    ("GET", "/market/bars", None, "symbol"),
    ("GET", "/features?symbol=SPY&limit=-1", None, "limit"),
    ("POST", "/predict", {"symbl": "SPY"}, "symbol"),
    ("POST", "/predict", {"symbol": "SPY; DROP"}, "symbol"),
    ("POST", "/predict/batch", {"symbols": []}, "symbols"),
    ("POST", "/orders", {"symbol": "SPY", "side": "hold", "quantity": 1}, "side"),
    ("POST", "/orders", {"symbol": "SPY", "side": "buy", "quantity": -3}, "quantity"),
    (
        "POST",
        "/orders",
        {"symbol": "SPY", "side": "buy", "quantity": 1, "order_type": "limit"},
        "limit_price",
    ),
    ("POST", "/backtests", {"strategy": "magic"}, "strategy"),
    ("PUT", "/risk/limits", {"max_leveage": 2.0}, "max_leverage"),
    ("PUT", "/risk/limits", {"max_leverage": -1}, "max_leverage"),
    ("PUT", "/risk/limits", {}, "no limits"),
    ("POST", "/risk/kill", {}, "reason"),
    ("POST", "/risk/resume", {"reason": ""}, "reason"),
    ("GET", "/audit/export?format=xml", None, "format"),
]


@pytest.mark.parametrize(
    ("method", "path", "body", "mentions"), BAD_INPUT, ids=[f"{m} {p} {b}" for m, p, b, _ in BAD_INPUT]
)
def test_422_with_a_message_naming_the_problem(
    client: TestClient, headers, method, path, body, mentions
) -> None:
    r = _call(client, method, path, body, headers["admin"])
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert isinstance(detail, str)
    assert mentions in detail


def test_health_ready_and_metrics_need_no_credentials(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz").json()
    deps = ready["dependencies"]
    assert ready["ready"] is True
    assert deps["store"] == "ok"
    assert deps["redis"] == "disabled"
    # the quick demo registers the forecaster as a candidate: the fallback is said, not hidden
    assert "cnn_lstm/1" in deps["registry"]
    assert "no champion" in deps["registry"]
    assert deps["connectors"] == {"paper": "closed"}
    text = client.get("/metrics").text
    assert "alphaloom_http_request_duration_seconds_bucket" in text
    assert 'alphaloom_breaker_state{connector="paper",state="closed"} 1.0' in text


def test_token_authenticates_and_carries_the_role(client: TestClient, headers) -> None:
    tok = client.post(f"{API_PREFIX}/auth/token", headers=headers["trader"]).json()
    assert tok["role"] == "trader"
    me = client.get(f"{API_PREFIX}/me", headers={"Authorization": f"Bearer {tok['token']}"}).json()
    assert me == {"name": "test-trader", "role": "trader"}


def test_market_symbols_bars_and_features_come_from_the_store(client: TestClient, headers, demo_ws) -> None:
    h = headers["viewer"]
    symbols = client.get(f"{API_PREFIX}/market/symbols", headers=h).json()
    assert "SPY" in symbols
    assert symbols == sorted(symbols)
    bars = client.get(f"{API_PREFIX}/market/bars", params={"symbol": "SPY", "limit": 5}, headers=h).json()
    with demo_ws.require_store() as store:
        stored = store.read_bars(["SPY"]).tail(5)
    assert [b["close"] for b in bars] == pytest.approx(stored["close"].tolist())
    ranged = client.get(
        f"{API_PREFIX}/market/bars",
        params={"symbol": "SPY", "start": "2020-01-01T00:00:00Z", "end": "2020-02-01T00:00:00Z"},
        headers=h,
    ).json()
    assert ranged
    assert all("2020-01" in b["ts"] for b in ranged)
    r = client.get(f"{API_PREFIX}/market/bars", params={"symbol": "SPX"}, headers=h)
    assert r.status_code == 404
    assert "SPY" in r.json()["detail"]
    feats = client.get(f"{API_PREFIX}/features", params={"symbol": "SPY", "limit": 3}, headers=h).json()
    assert len(feats["rows"]) == 3
    assert "log_ret_1" in feats["columns"]
    with demo_ws.require_store() as store:
        last = store.read_frame(FEATURES_TABLE, ["SPY"]).sort_values("ts").iloc[-1]
    assert feats["rows"][-1]["log_ret_1"] == pytest.approx(float(last["log_ret_1"]))


def test_predict_returns_calibrated_probabilities_and_caches(client: TestClient, headers) -> None:
    h = headers["viewer"]
    a = client.post(f"{API_PREFIX}/predict", json={"symbol": "EURUSD"}, headers=h).json()
    assert a["p_down"] + a["p_flat"] + a["p_up"] == pytest.approx(1.0, abs=1e-5)
    assert a["model_version"] == "cnn_lstm/1"
    b = client.post(f"{API_PREFIX}/predict", json={"symbol": "EURUSD"}, headers=h).json()
    assert b["cached"] is True
    assert {**a, "cached": True} == b
    batch = client.post(f"{API_PREFIX}/predict/batch", json={"symbols": ["EURUSD", "SPY"]}, headers=h).json()
    assert [p["symbol"] for p in batch] == ["EURUSD", "SPY"]
    assert batch[0]["p_up"] == a["p_up"]
    r = client.post(f"{API_PREFIX}/predict", json={"symbol": "NOPE"}, headers=h)
    assert r.status_code == 404
    assert "features" in r.json()["detail"]


def _wait(predicate, timeout_s: float = 20.0):
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def test_signals_portfolio_positions_come_from_the_live_session(client: TestClient, headers) -> None:
    h = headers["viewer"]
    signals = _wait(lambda: client.get(f"{API_PREFIX}/signals", headers=h).json())
    for s in signals:
        assert s["action"] in ("BUY", "SELL", "HOLD")
        assert -1 <= s["position_size"] <= 1
        assert len(s["input_hash"]) == 64
        if s["source"] == "rl_ensemble":
            assert [v["agent"] for v in s["votes"]] == ["ppo", "sac", "td3", "rainbow"]
    port = _wait(lambda: (p := client.get(f"{API_PREFIX}/portfolio", headers=h).json())["equity"] and p)
    assert port["total_value"] == pytest.approx(port["equity"][-1]["equity"], rel=0.05)
    assert port["pnl"] == pytest.approx(port["total_value"] - 100_000.0)
    positions = client.get(f"{API_PREFIX}/positions", headers=h).json()
    assert all(p["quantity"] != 0 for p in positions)


def test_orders_submit_list_cancel_and_refusal(client: TestClient, headers) -> None:
    h = headers["trader"]
    r = client.post(
        f"{API_PREFIX}/orders",
        json={"symbol": "SPY", "side": "buy", "quantity": 1, "order_type": "limit", "limit_price": 1.0},
        headers=h,
    )
    assert r.status_code == 201, r.text
    order = r.json()
    assert order["status"] in ("new", "accepted")
    listed = client.get(f"{API_PREFIX}/orders", headers=h).json()
    assert order["client_order_id"] in {o["client_order_id"] for o in listed}
    r = client.delete(f"{API_PREFIX}/orders/{order['client_order_id']}", headers=h)
    assert r.status_code == 200
    assert r.json()["status"] == "cancelled"
    again = client.delete(f"{API_PREFIX}/orders/{order['client_order_id']}", headers=h)
    assert again.status_code == 409
    assert "cancelled" in again.json()["detail"]
    cancelled = client.get(f"{API_PREFIX}/orders", params={"status": "cancelled"}, headers=h).json()
    assert order["client_order_id"] in {o["client_order_id"] for o in cancelled}
    huge = client.post(
        f"{API_PREFIX}/orders", json={"symbol": "SPY", "side": "buy", "quantity": 1e9}, headers=h
    )
    assert huge.status_code == 409
    body = huge.json()
    assert body["order"]["status"] == "rejected"
    assert any(reason.startswith("max_") for reason in body["reasons"])
    assert client.delete(f"{API_PREFIX}/orders/al-nope", headers=h).status_code == 404


def test_kill_switch_halts_new_risk_until_an_admin_resumes(client: TestClient, headers) -> None:
    admin = headers["admin"]
    halted = client.post(f"{API_PREFIX}/risk/kill", json={"reason": "route test"}, headers=admin).json()
    assert halted["state"] == "halted"
    assert any("route test" in r for r in halted["halt_reasons"])
    r = client.post(
        f"{API_PREFIX}/orders",
        json={"symbol": "SPY", "side": "buy", "quantity": 1},
        headers=headers["trader"],
    )
    assert r.status_code == 409
    resumed = client.post(
        f"{API_PREFIX}/risk/resume", json={"reason": "route test over"}, headers=admin
    ).json()
    assert resumed["state"] in ("normal", "reducing")
    assert resumed["halt_reasons"] == []
    before = client.get(f"{API_PREFIX}/risk", headers=headers["viewer"]).json()["limits"]["max_leverage"]
    changed = client.put(
        f"{API_PREFIX}/risk/limits", json={"max_leverage": before + 0.5}, headers=admin
    ).json()
    assert changed["limits"]["max_leverage"] == before + 0.5
    audit = client.get(f"{API_PREFIX}/audit/verify", headers=admin).json()
    assert audit["ok"] is True
    assert audit["problems"] == []
    export = client.get(f"{API_PREFIX}/audit/export", params={"format": "json"}, headers=admin)
    assert export.status_code == 200
    assert isinstance(json.loads(export.content), dict | list)
    csv = client.get(f"{API_PREFIX}/audit/export", params={"format": "csv"}, headers=admin)
    assert csv.status_code == 200
    assert csv.headers["content-type"].startswith("text/csv")


def test_backtest_job_runs_in_the_background_and_serves_its_report(client: TestClient, headers) -> None:
    r = client.post(
        f"{API_PREFIX}/backtests",
        json={"symbols": ["SPY"], "strategy": "buy_and_hold"},
        headers=headers["trader"],
    )
    assert r.status_code == 202
    assert r.json()["status"] in ("queued", "running")
    job_id = r.json()["id"]
    done = _wait(
        lambda: (
            (j := client.get(f"{API_PREFIX}/backtests/{job_id}", headers=headers["viewer"]).json())["status"]
            in ("done", "failed")
            and j
        ),
        timeout_s=120,
    )
    assert done["status"] == "done", done
    row = done["stats"][0]
    assert row["symbol"] == "SPY"
    assert row["strategy"] == "buy_and_hold"
    assert np.isfinite(row["final_equity"])
    listed = client.get(f"{API_PREFIX}/backtests", headers=headers["viewer"]).json()
    assert job_id in {j["id"] for j in listed}
    report = client.get(f"{API_PREFIX}/backtests/{job_id}/report", headers=headers["viewer"])
    assert report.status_code == 200
    assert "<html" in report.text[:500].lower()
    assert '<script src="http' not in report.text
    missing = client.get(f"{API_PREFIX}/backtests/ffff00/report", headers=headers["viewer"])
    assert missing.status_code == 404
    unknown = client.post(f"{API_PREFIX}/backtests", json={"symbols": ["ZZZ"]}, headers=headers["trader"])
    assert unknown.status_code == 404


def test_models_and_ab_views(client: TestClient, headers) -> None:
    h = headers["viewer"]
    models = client.get(f"{API_PREFIX}/models", headers=h).json()
    names = {m["name"] for m in models}
    assert {"cnn_lstm", "ensemble", "ppo", "sac", "td3", "rainbow"} <= names
    served = [m for m in models if m["serving"]]
    assert [(m["name"], m["version"]) for m in served] == [("cnn_lstm", 1)]
    detail = client.get(f"{API_PREFIX}/models/ensemble", headers=h).json()
    assert detail["champion"] is None
    assert len(detail["versions"][0]["lineage"]["parents"]) == 4
    r = client.get(f"{API_PREFIX}/models/cnn_lsmt", headers=h)
    assert r.status_code == 404
    assert "cnn_lstm" in r.json()["detail"]
    ab = client.get(f"{API_PREFIX}/ab", headers=h).json()
    assert ab["available"] is False
    assert "alphaloom ab report" in ab["detail"]


def test_dashboard_is_served_at_the_root(client: TestClient) -> None:
    r = client.get("/")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
