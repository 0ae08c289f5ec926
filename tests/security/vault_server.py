"""A local HashiCorp Vault for tests: exactly the HTTP endpoints the Vault provider (through hvac) calls.

Implemented, with Vault's documented request and response shapes:

- ``POST /v1/auth/<approle mount>/login`` ``{"role_id", "secret_id"}`` -> ``{"auth": {"client_token",
  "lease_duration", "renewable", "policies", ...}}``; unknown role or secret id -> 400 ``invalid role or
  secret ID``.
- ``GET /v1/auth/token/lookup-self`` -> ``{"data": {"ttl", "renewable", "expire_time", ...}}``.
- ``POST /v1/auth/token/renew-self`` ``{"increment"?}`` -> ``{"auth": {...,"lease_duration"}}``, capped at the
  token's max TTL; a non-renewable token -> 400.
- ``GET /v1/<mount>/data/<path>[?version=N]`` -> ``{"data": {"data": {...}, "metadata": {"version",
  "created_time", "deletion_time", "destroyed", "custom_metadata"}}}``; missing -> 404 ``{"errors": []}``.
- ``POST /v1/<mount>/data/<path>`` ``{"options": {"cas": N}?, "data": {...}}`` -> ``{"data": {metadata}}``; a
  check-and-set mismatch -> 400 ``check-and-set parameter did not match the current version``.

Every request but the login carries ``X-Vault-Token``; an unknown, revoked or expired token -> 403
``permission denied``. Time comes from an injectable clock (seconds), so tests move leases forward without
sleeping. ``requests`` records ``(method, path)`` of each call.
"""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


class FakeClock:
    """Seconds that move only when told to; shared by the server and the provider under test."""

    def __init__(self, start: float = 1_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Token:
    ttl: float  # 0: never expires (a root token)
    max_ttl: float
    renewable: bool
    created: float
    expires: float
    policies: list[str] = field(default_factory=lambda: ["default", "alphaloom"])
    revoked: bool = False


@dataclass
class Role:
    secret_id: str
    token_ttl: float
    token_max_ttl: float


class VaultServer:
    """Vault's KV v2 and auth endpoints over HTTP on 127.0.0.1 (a free port), in a background thread."""

    def __init__(self, clock: Callable[[], float] | None = None, mount: str = "secret") -> None:
        self.clock = clock or FakeClock()
        self.mount = mount
        self.tokens: dict[str, Token] = {}
        self.roles: dict[str, Role] = {}
        self.kv: dict[str, list[dict[str, Any]]] = {}  # path -> versions (index 0 = version 1)
        self.requests: list[tuple[str, str]] = []
        self.before_write: Callable[[str], None] | None = None  # test hook: runs before a KV write
        self._lock = threading.RLock()
        handler = type("Handler", (_Handler,), {"vault": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="local-vault", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def start(self) -> VaultServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    # ------------------------------------------------------------------ set-up helpers

    def issue_token(self, ttl: float = 0, max_ttl: float = 0, renewable: bool = True) -> str:
        token = "hvs." + secrets.token_urlsafe(24)
        now = self.clock()
        with self._lock:
            self.tokens[token] = Token(ttl, max_ttl, renewable, now, now + ttl if ttl else 0.0)
        return token

    def add_role(self, token_ttl: float = 60, token_max_ttl: float = 600) -> tuple[str, str]:
        role_id, secret_id = secrets.token_hex(16), secrets.token_hex(16)
        self.roles[role_id] = Role(secret_id, token_ttl, token_max_ttl)
        return role_id, secret_id

    def put(self, path: str, data: dict[str, str]) -> int:
        with self._lock:
            versions = self.kv.setdefault(path, [])
            versions.append({"data": dict(data), "created": self._stamp(), "deleted": ""})
            return len(versions)

    def delete_version(self, path: str, version: int) -> None:
        self.kv[path][version - 1]["deleted"] = self._stamp()

    def count(self, method: str, path: str) -> int:
        return sum(1 for m, p in self.requests if m == method and p == path)

    def _stamp(self) -> str:
        return (
            (datetime(2024, 1, 1, tzinfo=UTC) + timedelta(seconds=self.clock()))
            .isoformat()
            .replace("+00:00", "Z")
        )

    # ------------------------------------------------------------------ request handling

    def handle(self, method: str, raw_path: str, headers: dict[str, str], body: Any) -> tuple[int, Any]:
        parts = urlsplit(raw_path)
        path = parts.path
        query = parse_qs(parts.query)
        with self._lock:
            self.requests.append((method, path))
            if method == "POST" and path.startswith("/v1/auth/") and path.endswith("/login"):
                return self._login(body)
            token = self._valid_token(headers.get("x-vault-token", ""))
            if token is None:
                return 403, {"errors": ["permission denied"]}
            if path == "/v1/auth/token/lookup-self" and method == "GET":
                return 200, {"data": self._token_data(token)}
            if path == "/v1/auth/token/renew-self" and method == "POST":
                return self._renew(headers["x-vault-token"], token, body or {})
            prefix = f"/v1/{self.mount}/data/"
            if path.startswith(prefix):
                kv_path = path[len(prefix) :]
                if method == "GET":
                    version = int(query["version"][0]) if "version" in query else None
                    return self._read(kv_path, version)
                if method == "POST":
                    return self._write(kv_path, body or {})
            return 404, {"errors": [f"no handler for route {path!r}"]}

    def _valid_token(self, value: str) -> Token | None:
        token = self.tokens.get(value)
        if token is None or token.revoked:
            return None
        if token.ttl and self.clock() >= token.expires:
            return None
        return token

    def _login(self, body: Any) -> tuple[int, Any]:
        role = self.roles.get(str(body.get("role_id", "")))
        if role is None or role.secret_id != body.get("secret_id"):
            return 400, {"errors": ["invalid role or secret ID"]}
        token = self.issue_token(role.token_ttl, role.token_max_ttl, renewable=True)
        return 200, {
            "auth": {
                "client_token": token,
                "accessor": secrets.token_hex(8),
                "policies": ["default", "alphaloom"],
                "token_policies": ["default", "alphaloom"],
                "metadata": {"role_name": "alphaloom"},
                "lease_duration": int(role.token_ttl),
                "renewable": True,
            }
        }

    def _token_data(self, token: Token) -> dict[str, Any]:
        remaining = max(0, int(token.expires - self.clock())) if token.ttl else 0
        return {
            "accessor": "acc",
            "creation_ttl": int(token.ttl),
            "explicit_max_ttl": int(token.max_ttl),
            "policies": token.policies,
            "renewable": token.renewable,
            "ttl": remaining,
            "type": "service",
        }

    def _renew(self, value: str, token: Token, body: dict[str, Any]) -> tuple[int, Any]:
        if not token.renewable or not token.ttl:
            return 400, {"errors": ["lease is not renewable"]}
        now = self.clock()
        lease = float(body.get("increment") or token.ttl)
        if token.max_ttl:
            lease = min(lease, token.created + token.max_ttl - now)
        token.expires = now + lease
        return 200, {
            "auth": {
                "client_token": value,
                "policies": token.policies,
                "lease_duration": int(lease),
                "renewable": token.renewable,
            }
        }

    def _read(self, path: str, version: int | None) -> tuple[int, Any]:
        versions = self.kv.get(path)
        if not versions or (version is not None and not 1 <= version <= len(versions)):
            return 404, {"errors": []}
        n = version or len(versions)
        entry = versions[n - 1]
        metadata = {
            "created_time": entry["created"],
            "custom_metadata": None,
            "deletion_time": entry["deleted"],
            "destroyed": False,
            "version": n,
        }
        if entry["deleted"]:
            return 404, {"data": {"data": None, "metadata": metadata}}
        return 200, {
            "request_id": secrets.token_hex(8),
            "lease_id": "",
            "renewable": False,
            "lease_duration": 0,
            "data": {"data": dict(entry["data"]), "metadata": metadata},
            "wrap_info": None,
            "warnings": None,
            "auth": None,
        }

    def _write(self, path: str, body: dict[str, Any]) -> tuple[int, Any]:
        if self.before_write is not None:
            hook, self.before_write = self.before_write, None
            hook(path)
        data = body.get("data")
        if not isinstance(data, dict):
            return 400, {"errors": ["no data provided"]}
        cas = (body.get("options") or {}).get("cas")
        current = len(self.kv.get(path, []))
        if cas is not None and int(cas) != current:
            return 400, {"errors": ["check-and-set parameter did not match the current version"]}
        n = self.put(path, data)
        entry = self.kv[path][n - 1]
        return 200, {
            "data": {
                "created_time": entry["created"],
                "custom_metadata": None,
                "deletion_time": "",
                "destroyed": False,
                "version": n,
            }
        }


class _Handler(BaseHTTPRequestHandler):
    vault: VaultServer

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        return

    def _dispatch(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except json.JSONDecodeError:
            status, payload = 400, {"errors": ["failed to parse JSON input"]}
        else:
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, payload = self.vault.handle(method, self.path, headers, body)
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("POST")
