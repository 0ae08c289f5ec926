"""API keys, short-lived tokens and the role checks every route declares.

Keys
----
A key reads ``alk_<key id>_<secret>``: the id (12 hex digits) finds the record, the secret (32 random bytes,
URL-safe base64) proves possession. Only ``HMAC-SHA256(salt, secret)`` and its per-key random salt are stored,
in ``<data-dir>/service/api_keys.json`` (mode 0600): a copy of the file does not give anyone a key. A key is
shown once, when it is created (``alphaloom serve keys create --name N --role R``). The secret carries 256
bits of entropy, so a keyed hash is as strong as a slow password KDF here and costs microseconds per request.

Tokens
------
``POST /api/v1/auth/token`` with a key returns a token ``alt.<payload>.<signature>``: base64url JSON
``{"kid", "sub", "role", "iat", "exp"}`` signed with HMAC-SHA256 under a server secret kept in
``<data-dir>/service/token_secret`` (0600, created on first use). Tokens expire after
``ServiceSettings.token_ttl_s``; revoking a key also invalidates its tokens.

Roles
-----
viewer < trader < admin (:class:`alphaloom.risk.Role`). Each route depends on :func:`require` with the lowest
role that may call it; a missing or bad credential is a 401, a role too low a 403.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from alphaloom.core.exceptions import ConfigError, DataNotFoundError, StorageError
from alphaloom.risk.manager import Role

__all__ = [
    "ROLE_RANK",
    "ApiKeyInfo",
    "KeyStore",
    "Principal",
    "TokenSigner",
    "require",
]

ROLE_RANK = {Role.VIEWER: 0, Role.TRADER: 1, Role.ADMIN: 2}
_KEY_RE = re.compile(r"^alk_([0-9a-f]{12})_([A-Za-z0-9_\-]{43})$")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@\-]{0,63}$")
_TOKEN_PREFIX = "alt."


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key's name and role, and the key's id (never the key itself)."""

    name: str
    role: Role
    key_id: str

    def allows(self, role: Role) -> bool:
        return ROLE_RANK[self.role] >= ROLE_RANK[role]


@dataclass(frozen=True)
class ApiKeyInfo:
    """A stored key's public description (no secret, no hash)."""

    key_id: str
    name: str
    role: Role
    created_at: datetime
    revoked_at: datetime | None


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` atomically to ``path`` with mode 0600 (readable by the owner only)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _role(value: object) -> Role:
    try:
        return Role(str(value))
    except ValueError:
        raise ConfigError(
            f"unknown role {value!r}; choose one of {', '.join(r.value for r in Role)}."
        ) from None


class KeyStore:
    """API keys of one workspace, hashed, in a 0600 JSON file.

    Parameters
    ----------
    path
        The keys file, usually ``<data-dir>/service/api_keys.json``; created on the first :meth:`create`.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._cache: dict[str, dict[str, Any]] | None = None
        self._mtime: float | None = None

    def _load(self) -> dict[str, dict[str, Any]]:
        try:
            mtime = self.path.stat().st_mtime
        except FileNotFoundError:
            return {}
        if self._cache is not None and mtime == self._mtime:
            return self._cache
        try:
            data = json.loads(self.path.read_text())
            keys = data["keys"]
            if not isinstance(keys, dict):
                raise TypeError("keys is not an object")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise StorageError(
                f"the API keys file {self.path} is unreadable or corrupt ({exc}); restore it from a backup "
                "or delete it and create new keys with `alphaloom serve keys create`."
            ) from exc
        self._cache, self._mtime = keys, mtime
        return keys

    @contextmanager
    def _editing(self) -> Iterator[dict[str, dict[str, Any]]]:
        with self._lock:
            keys = dict(self._load())
            yield keys
            _write_private(self.path, json.dumps({"version": 1, "keys": keys}, indent=2).encode())
            self._cache, self._mtime = None, None

    def create(self, name: str, role: Role | str) -> tuple[str, ApiKeyInfo]:
        """Create a key; returns the key (shown once, never stored) and its description."""
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise ConfigError(
                f"key name must be 1-64 letters, digits, '_', '.', '@' or '-', starting with a letter or "
                f"digit; got {name!r}."
            )
        role = _role(role)
        key_id = secrets.token_hex(6)
        secret = _b64(secrets.token_bytes(32))
        salt = secrets.token_bytes(16)
        now = datetime.now(UTC)
        with self._editing() as keys:
            if any(k["name"] == name and k.get("revoked_at") is None for k in keys.values()):
                raise ConfigError(
                    f"an active key named {name!r} exists; revoke it first "
                    f"(`alphaloom serve keys revoke {name}`) or choose another name."
                )
            keys[key_id] = {
                "name": name,
                "role": role.value,
                "salt": salt.hex(),
                "hash": hmac.new(salt, secret.encode(), hashlib.sha256).hexdigest(),
                "created_at": now.isoformat(),
                "revoked_at": None,
            }
        return f"alk_{key_id}_{secret}", ApiKeyInfo(key_id, name, role, now, None)

    def list(self) -> list[ApiKeyInfo]:
        """Every key, active and revoked, oldest first."""
        out = [
            ApiKeyInfo(
                kid,
                k["name"],
                Role(k["role"]),
                datetime.fromisoformat(k["created_at"]),
                None if k.get("revoked_at") is None else datetime.fromisoformat(k["revoked_at"]),
            )
            for kid, k in self._load().items()
        ]
        return sorted(out, key=lambda k: k.created_at)

    def revoke(self, name_or_id: str) -> ApiKeyInfo:
        """Revoke the active key with this name or id; its tokens stop working at once."""
        with self._editing() as keys:
            matches = [
                kid
                for kid, k in keys.items()
                if k.get("revoked_at") is None and name_or_id in (kid, k["name"])
            ]
            if not matches:
                raise DataNotFoundError(
                    f"no active API key named or with id {name_or_id!r}; "
                    "`alphaloom serve keys list` shows them."
                )
            kid = matches[0]
            keys[kid] = {**keys[kid], "revoked_at": datetime.now(UTC).isoformat()}
            rec = keys[kid]
        return ApiKeyInfo(
            kid,
            rec["name"],
            Role(rec["role"]),
            datetime.fromisoformat(rec["created_at"]),
            datetime.fromisoformat(rec["revoked_at"]),
        )

    def verify(self, key: str) -> Principal | None:
        """The key's principal, or ``None`` for a malformed, unknown, wrong or revoked key."""
        m = _KEY_RE.match(key)
        if m is None:
            return None
        rec = self._load().get(m.group(1))
        if rec is None or rec.get("revoked_at") is not None:
            return None
        digest = hmac.new(bytes.fromhex(rec["salt"]), m.group(2).encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(digest, rec["hash"]):
            return None
        return Principal(rec["name"], Role(rec["role"]), m.group(1))

    def active(self, key_id: str) -> bool:
        rec = self._load().get(key_id)
        return rec is not None and rec.get("revoked_at") is None


class TokenSigner:
    """Issues and checks HMAC-signed short-lived tokens.

    Parameters
    ----------
    secret_path
        The server's signing secret (32 random bytes, created with mode 0600 when missing).
    ttl_s
        Token lifetime in seconds.
    clock
        Seconds since the epoch (injectable for tests).
    """

    def __init__(
        self, secret_path: str | os.PathLike[str], ttl_s: int, *, clock: Callable[[], float] = time.time
    ) -> None:
        path = Path(secret_path)
        if not path.exists():
            _write_private(path, secrets.token_bytes(32))
        self._secret = path.read_bytes()
        if len(self._secret) < 32:
            raise ConfigError(
                f"the token secret {path} holds {len(self._secret)} bytes, expected at least 32; delete it "
                "and restart to create a new one (issued tokens stop working)."
            )
        self.ttl_s = int(ttl_s)
        self._clock = clock

    def issue(self, principal: Principal) -> tuple[str, datetime]:
        now = int(self._clock())
        exp = now + self.ttl_s
        payload = _b64(
            json.dumps(
                {
                    "kid": principal.key_id,
                    "sub": principal.name,
                    "role": principal.role.value,
                    "iat": now,
                    "exp": exp,
                },
                separators=(",", ":"),
            ).encode()
        )
        sig = _b64(hmac.new(self._secret, payload.encode(), hashlib.sha256).digest())
        return f"{_TOKEN_PREFIX}{payload}.{sig}", datetime.fromtimestamp(exp, UTC)

    def verify(self, token: str) -> tuple[Principal | None, str]:
        """The token's principal, or ``None`` and why it was refused."""
        if not token.startswith(_TOKEN_PREFIX) or token.count(".") != 2:
            return None, "the bearer token is malformed"
        _, payload, sig = token.split(".")
        expected = _b64(hmac.new(self._secret, payload.encode(), hashlib.sha256).digest())
        if not hmac.compare_digest(expected, sig):
            return None, "the bearer token's signature is invalid"
        try:
            claims = json.loads(_unb64(payload))
            principal = Principal(str(claims["sub"]), Role(claims["role"]), str(claims["kid"]))
            exp = int(claims["exp"])
        except (ValueError, KeyError, TypeError):
            return None, "the bearer token's payload is malformed"
        if exp <= self._clock():
            return None, "the bearer token has expired"
        return principal, ""


_api_key_header = APIKeyHeader(
    name="X-API-Key", auto_error=False, description="An API key (`alphaloom serve keys create`)."
)
_bearer = HTTPBearer(auto_error=False, description="A token from POST /api/v1/auth/token.")


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED,
        detail=detail,
        headers={"WWW-Authenticate": 'Bearer realm="alphaloom"'},
    )


def authenticate(request: Request, api_key: str | None, bearer: str | None) -> Principal:
    """The caller's principal from an ``X-API-Key`` header or a bearer token; 401 when neither is valid."""
    state = request.app.state.services
    if api_key:
        principal = state.keys.verify(api_key)
        if principal is None:
            raise _unauthorized(
                "the X-API-Key is unknown, revoked or malformed; create a key with "
                "`alphaloom serve keys create --name NAME --role viewer|trader|admin`."
            )
        return principal
    if bearer:
        principal, why = state.tokens.verify(bearer)
        if principal is None:
            raise _unauthorized(f"{why}; get a new one from POST /api/v1/auth/token with your X-API-Key.")
        if not state.keys.active(principal.key_id):
            raise _unauthorized("the key this token was issued for has been revoked; use an active key.")
        return principal
    raise _unauthorized(
        "no credentials: send an `X-API-Key: <key>` header or `Authorization: Bearer <token>` "
        "(POST /api/v1/auth/token exchanges a key for a token)."
    )


def require(role: Role) -> Callable[..., Any]:
    """A FastAPI dependency: the caller's :class:`Principal` if its role is at least ``role``.

    It also applies the per-key rate limit (429) and records the caller on the request for the logs.
    """

    # async although it never awaits: FastAPI runs a plain ``def`` dependency on a worker thread, a thread
    # hand-off per request that cost more than the check itself (a file stat and one HMAC)
    async def dependency(
        request: Request,
        api_key: Annotated[str | None, Depends(_api_key_header)] = None,
        bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)] = None,
    ) -> Principal:
        principal = authenticate(request, api_key, bearer.credentials if bearer else None)
        request.state.principal = principal
        if not principal.allows(role):
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                detail=f"this needs the {role.value} role; "
                f"the key {principal.name!r} has {principal.role.value}. "
                "Ask an admin for a key with that role.",
            )
        request.app.state.services.limiter.check(principal)
        return principal

    dependency.__name__ = f"require_{role.value}"
    return dependency
