"""Keys stored hashed, tokens signed and short-lived, rate limits, CORS closed, no secret in bodies/logs."""

from __future__ import annotations

import json
import logging
import os
import stat

import pytest
from fastapi.testclient import TestClient

from alphaloom.core.exceptions import ConfigError
from alphaloom.risk.manager import Role
from alphaloom.service import KeyStore, TokenSigner, create_app, keys_path
from alphaloom.service.app import API_PREFIX
from alphaloom.service.auth import Principal

from .conftest import make_settings


def test_keys_file_holds_only_salted_hashes_with_mode_0600(tmp_path) -> None:
    store = KeyStore(tmp_path / "keys.json")
    key, info = store.create("alice", "trader")
    text = (tmp_path / "keys.json").read_text()
    secret = key.split("_", 2)[2]
    assert secret not in text
    assert key not in text
    assert stat.S_IMODE(os.stat(tmp_path / "keys.json").st_mode) == 0o600
    assert store.verify(key) == Principal("alice", Role.TRADER, info.key_id)
    assert store.verify(key[:-1] + ("A" if key[-1] != "A" else "B")) is None
    with pytest.raises(ConfigError, match="active key named 'alice'"):
        store.create("alice", "viewer")
    with pytest.raises(ConfigError, match="unknown role"):
        store.create("bob", "superuser")
    store.revoke("alice")
    assert store.verify(key) is None


def test_tokens_expire_and_reject_tampering(tmp_path) -> None:
    now = [1_000_000.0]
    signer = TokenSigner(tmp_path / "secret", ttl_s=60, clock=lambda: now[0])
    principal = Principal("alice", Role.VIEWER, "0123456789ab")
    token, _expires = signer.issue(principal)
    assert signer.verify(token) == (principal, "")
    head, payload, sig = token.split(".")
    forged = payload.replace(payload[-4:], "AAAA")
    assert signer.verify(f"{head}.{forged}.{sig}")[0] is None
    # an admin claim under the viewer's signature does not verify
    import base64

    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    raised = base64.urlsafe_b64encode(json.dumps({**claims, "role": "admin"}).encode()).rstrip(b"=").decode()
    assert "signature" in signer.verify(f"{head}.{raised}.{sig}")[1]
    now[0] += 61
    assert signer.verify(token) == (None, "the bearer token has expired")
    assert stat.S_IMODE(os.stat(tmp_path / "secret").st_mode) == 0o600


def test_revoking_a_key_invalidates_its_tokens(client: TestClient, demo_ws) -> None:
    store = KeyStore(keys_path(demo_ws))
    key, _ = store.create("short-lived", "viewer")
    token = client.post(f"{API_PREFIX}/auth/token", headers={"X-API-Key": key}).json()["token"]
    assert client.get(f"{API_PREFIX}/me", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    store.revoke("short-lived")
    r = client.get(f"{API_PREFIX}/me", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401
    assert "revoked" in r.json()["detail"]
    assert client.get(f"{API_PREFIX}/me", headers={"X-API-Key": key}).status_code == 401


def test_rate_limit_per_key_gives_429_with_retry_after(demo_ws, keys) -> None:
    settings = make_settings(demo_ws, viewer_rate_per_s=2.0, rate_burst_s=2.0, trade_paper=False)
    with TestClient(create_app(settings)) as c:
        h = {"X-API-Key": keys["viewer"]}
        codes = [c.get(f"{API_PREFIX}/me", headers=h).status_code for _ in range(8)]
        assert codes[:4] == [200] * 4
        assert 429 in codes[4:]
        r = c.get(f"{API_PREFIX}/me", headers=h)
        assert r.status_code == 429
        assert int(r.headers["Retry-After"]) >= 1
        assert "rate limit" in r.json()["detail"]
        # another key has its own bucket
        assert c.get(f"{API_PREFIX}/me", headers={"X-API-Key": keys["admin"]}).status_code == 200
        assert 'alphaloom_rate_limited_total{role="viewer"}' in c.get("/metrics").text


def test_cors_is_closed_by_default_and_open_only_to_listed_origins(client: TestClient, demo_ws, keys) -> None:
    pre = {"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"}
    r = client.options(f"{API_PREFIX}/me", headers=pre)
    assert "access-control-allow-origin" not in r.headers
    r = client.get("/healthz", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in r.headers
    settings = make_settings(demo_ws, cors_origins=("https://desk.example",), trade_paper=False)
    with TestClient(create_app(settings)) as c:
        ok = c.get("/healthz", headers={"Origin": "https://desk.example"})
        assert ok.headers["access-control-allow-origin"] == "https://desk.example"
        bad = c.get("/healthz", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in bad.headers
    with pytest.raises(ValueError, match="every web page"):
        make_settings(demo_ws, cors_origins=("*",))


def test_no_key_or_token_in_any_response_or_log_line(client: TestClient, keys, caplog) -> None:
    h = {"X-API-Key": keys["admin"]}
    token = client.post(f"{API_PREFIX}/auth/token", headers=h).json()["token"]
    secrets = [*keys.values(), token]
    handler_records: list[str] = []

    class Grab(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            handler_records.append(self.format(record))

    grab = Grab()
    for f in logging.getLogger("alphaloom").handlers[:1]:
        for flt in f.filters:
            grab.addFilter(flt)
    root = logging.getLogger("alphaloom")
    root.addHandler(grab)
    bodies = []
    try:
        with caplog.at_level(logging.DEBUG):
            for path in ("/me", "/risk", "/models", "/portfolio", "/orders", "/signals", "/audit/verify"):
                for auth in (h, {"Authorization": f"Bearer {token}"}):
                    bodies.append(client.get(API_PREFIX + path, headers=auth).text)
            # a key pasted into a query string is not echoed either
            bodies.append(client.get(f"{API_PREFIX}/market/bars?symbol={keys['admin']}", headers=h).text)
            bodies.append(client.get(f"{API_PREFIX}/me", headers={"X-API-Key": keys["admin"] + "x"}).text)
            bodies.append(client.get("/metrics").text)
    finally:
        root.removeHandler(grab)
    # the test client's own request log (httpx) shows the URL it was given; the service's lines must not
    service_lines = [r.getMessage() for r in caplog.records if r.name.startswith("alphaloom")]
    text = "\n".join(bodies + handler_records + service_lines)
    assert handler_records, "the access log wrote nothing"
    for secret in secrets:
        assert secret not in text
        assert secret.split("_")[-1] not in text
