"""HashiCorp Vault as a secret backend: KV version 2 through ``hvac``, token or AppRole auth, token renewal.

One :class:`VaultSecretProvider` reads one KV v2 secret (``<mount>/data/<path>``, e.g. ``secret`` and
``alphaloom/oanda``) whose keys are the credential names a connector asks for (``token``, ``account``).

- Auth: ``"token"`` (``VAULT_TOKEN``) or ``"approle"`` (``VAULT_ROLE_ID`` + ``VAULT_SECRET_ID``, logging in at
  ``/v1/auth/<approle_mount>/login``). The login credentials come from a
  :class:`~alphaloom.core.secrets.SecretProvider` (environment variables by default), never from the config.
- Renewal: the token's lease (``lookup-self`` for a given token, the login answer for AppRole) is renewed with
  ``renew-self`` once ``renew_fraction`` of it has passed, before any request and, optionally, from a
  background thread. When a lease can no longer be extended (its max TTL) or was revoked, an AppRole
  provider logs in again; a token provider reports that the token expired.
- Reads are cached for ``cache_ttl_s`` seconds, so a rotated credential is used within that time; writes
  (:meth:`VaultSecretProvider.set`) use check-and-set so two writers never lose each other's update.
- Errors: hvac and requests exceptions become :class:`~alphaloom.core.exceptions.ConfigError` (refused
  credentials, a missing secret or key, a bad request) or :class:`~alphaloom.core.exceptions.StorageError`
  (Vault unreachable, sealed or failing); messages never contain a token or a value.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, TypeVar

import hvac
import hvac.exceptions
import requests
from pydantic import Field, field_validator, model_validator

from alphaloom.core.config import ComponentConfig
from alphaloom.core.exceptions import ConfigError, StorageError, did_you_mean
from alphaloom.core.secrets import EnvSecretProvider, Secret, SecretProvider

__all__ = ["VaultConfig", "VaultSecret", "VaultSecretProvider"]

T = TypeVar("T")
_SEGMENT = r"[A-Za-z0-9_.\-]+"


class VaultConfig(ComponentConfig):
    """Settings of :class:`VaultSecretProvider` (no credentials: those come from a secret provider).

    Parameters
    ----------
    url
        Vault's address, ``http(s)://host:port``.
    mount
        The KV v2 engine's mount point (``secret`` by default in Vault).
    path
        The secret's path under the mount, e.g. ``alphaloom/oanda``.
    auth
        ``"token"`` or ``"approle"``.
    approle_mount
        Where the AppRole auth method is mounted (``approle``).
    namespace
        Vault Enterprise namespace, if any.
    ca_cert
        PEM bundle to verify Vault's TLS certificate (``None``: the system store).
    client_cert, client_key
        PEM client certificate and key for mutual TLS (both or neither).
    timeout_s
        Seconds per HTTP request.
    renew_fraction
        Renew the token once this fraction of its lease has passed (0.5 to 0.95).
    renew_increment_s
        Lease asked for on renewal (``None``: the token's default).
    cache_ttl_s
        Seconds a read secret is reused; a rotated value is used at most this late (0: read every time).
    """

    url: str = Field(..., pattern=r"^https?://[^\s/]+(:\d+)?/?$")
    mount: str = Field("secret", pattern=rf"^{_SEGMENT}(/{_SEGMENT})*$")
    path: str = Field(..., pattern=rf"^{_SEGMENT}(/{_SEGMENT})*$")
    auth: Literal["token", "approle"] = "token"
    approle_mount: str = Field("approle", pattern=rf"^{_SEGMENT}(/{_SEGMENT})*$")
    namespace: str | None = None
    ca_cert: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None
    timeout_s: float = Field(10.0, gt=0.0, le=300.0, allow_inf_nan=False)
    renew_fraction: float = Field(2 / 3, ge=0.5, le=0.95, allow_inf_nan=False)
    renew_increment_s: int | None = Field(None, ge=1)
    cache_ttl_s: float = Field(5.0, ge=0.0, le=3600.0, allow_inf_nan=False)

    @field_validator("mount", "path", "approle_mount")
    @classmethod
    def _no_dot_segments(cls, value: str) -> str:
        if any(part in (".", "..") for part in value.split("/")):
            raise ValueError(f"'.' and '..' are not allowed as path segments, got {value!r}")
        return value

    @field_validator("ca_cert", "client_cert", "client_key")
    @classmethod
    def _readable_file(cls, value: Path | None) -> Path | None:
        if value is not None and not Path(value).is_file():
            raise ValueError(f"{value} is not a file; give the path of a PEM file")
        return value

    @model_validator(mode="after")
    def _cert_pair(self) -> VaultConfig:
        if (self.client_cert is None) != (self.client_key is None):
            raise ValueError("client_cert and client_key go together: give both for mutual TLS, or neither")
        return self


@dataclass(frozen=True)
class VaultSecret:
    """One version of a KV v2 secret: its keys and values (as :class:`Secret`), version and creation time."""

    data: dict[str, Secret]
    version: int
    created_time: datetime | None


class VaultSecretProvider:
    """A :class:`~alphaloom.core.secrets.SecretProvider` over one KV v2 secret in HashiCorp Vault.

    Parameters
    ----------
    config
        A :class:`VaultConfig`.
    credentials
        Where the Vault login comes from: ``token`` (token auth) or ``role_id`` and ``secret_id`` (AppRole).
        Default: environment variables ``VAULT_TOKEN``, ``VAULT_ROLE_ID``, ``VAULT_SECRET_ID``.
    monotonic
        The clock for leases and the cache (seconds); injectable for tests.

    Raises
    ------
    ConfigError
        Vault refused the token or the AppRole credentials, or they are missing.
    StorageError
        Vault could not be reached.
    """

    def __init__(
        self,
        config: VaultConfig,
        *,
        credentials: SecretProvider | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if not isinstance(config, VaultConfig):
            raise ConfigError(f"VaultSecretProvider takes a VaultConfig, got {type(config).__name__}.")
        self.config = config
        self._credentials = credentials or EnvSecretProvider("VAULT_")
        self._now = monotonic
        self._lock = threading.RLock()
        cert = (str(config.client_cert), str(config.client_key)) if config.client_cert else None
        self._client = hvac.Client(
            url=config.url.rstrip("/"),
            verify=str(config.ca_cert) if config.ca_cert else True,
            cert=cert,
            timeout=config.timeout_s,
            namespace=config.namespace,
        )
        self._lease_s: float | None = None  # None: the token never expires
        self._issued_at = 0.0
        self._renewable = False
        self._cache: tuple[float, VaultSecret] | None = None
        self._renewer: threading.Thread | None = None
        self._stop = threading.Event()
        #: Counts of what the provider did (logins, renewals, reads, writes), for health checks and tests.
        self.stats = {"logins": 0, "renewals": 0, "reads": 0, "writes": 0}
        with self._lock:
            self._authenticate()

    def __repr__(self) -> str:
        return (
            f"VaultSecretProvider(url={self.config.url!r}, secret={self.config.mount}/{self.config.path!r}, "
            f"auth={self.config.auth!r})"
        )

    # ------------------------------------------------------------------ the protocol

    def get(self, name: str) -> Secret:
        """The value of key ``name`` in the latest version of the secret (cached for ``cache_ttl_s``).

        Raises
        ------
        ConfigError
            The secret or the key does not exist (the message lists the keys present, never values).
        """
        secret = self.read()
        try:
            return secret.data[name]
        except KeyError:
            raise ConfigError(
                f"Vault secret {self.config.mount}/{self.config.path} (version {secret.version}) has no key "
                f"{name!r}.{did_you_mean(name, secret.data)} Keys present: "
                f"{', '.join(sorted(secret.data)) or 'none'}. "
                f"Add it with `alphaloom secrets set {name} --backend vault`."
            ) from None

    def get_version(self, name: str, version: int) -> Secret:
        """The value of key ``name`` in version ``version`` of the secret (never cached)."""
        secret = self.read(version=version)
        if name not in secret.data:
            raise ConfigError(
                f"version {version} of Vault secret {self.config.mount}/{self.config.path} has no key "
                f"{name!r}."
            )
        return secret.data[name]

    # ------------------------------------------------------------------ KV v2

    def read(self, version: int | None = None) -> VaultSecret:
        """The latest version (``version=None``, cached) or a given version of the secret.

        Raises
        ------
        ConfigError
            No such secret or version, or it was deleted or destroyed.
        """
        if version is not None and (not isinstance(version, int) or isinstance(version, bool) or version < 1):
            raise ConfigError(f"a secret version is an integer from 1, got {version!r}.")
        with self._lock:
            now = self._now()
            if version is None and self._cache is not None and now - self._cache[0] < self.config.cache_ttl_s:
                return self._cache[1]
            answer = self._call(
                "read",
                lambda: self._client.secrets.kv.v2.read_secret_version(
                    path=self.config.path,
                    version=version,
                    mount_point=self.config.mount,
                    raise_on_deleted_version=True,
                ),
                missing=(
                    f"Vault has no secret {self.config.mount}/{self.config.path}"
                    + (f" version {version}" if version else "")
                    + " (or it was deleted). Write it with `alphaloom secrets set NAME --backend vault` or "
                    "`vault kv put`."
                ),
            )
            self.stats["reads"] += 1
            secret = _parse_secret(answer, f"{self.config.mount}/{self.config.path}")
            if version is None:
                self._cache = (now, secret)
            return secret

    def set(self, name: str, value: str | Secret) -> int:
        """Write ``name = value`` as a new version of the secret (other keys kept); returns the version.

        Uses check-and-set on the version read, retrying on a concurrent write, so no update is lost.
        """
        plain = value.reveal() if isinstance(value, Secret) else value
        if not isinstance(name, str) or not name or not isinstance(plain, str) or not plain:
            raise ConfigError("Vault set() needs a non-empty key name and a non-empty string value.")
        with self._lock:
            for _ in range(5):
                try:
                    self._cache = None
                    current = self.read()
                    data, cas = {k: v.reveal() for k, v in current.data.items()}, current.version
                except ConfigError:
                    data, cas = {}, 0  # no secret yet: cas=0 means "only if it does not exist"
                data[name] = plain
                try:
                    answer = self._call(
                        "write",
                        lambda data=data, cas=cas: self._client.secrets.kv.v2.create_or_update_secret(
                            path=self.config.path, secret=data, cas=cas, mount_point=self.config.mount
                        ),
                        missing=f"Vault has no KV v2 engine mounted at {self.config.mount!r}",
                    )
                except _CasMismatch:
                    self._cache = None
                    continue
                self.stats["writes"] += 1
                self._cache = None
                Secret(plain)  # registers the new value with the log redaction
                return int(answer["data"]["version"])
        raise StorageError(
            f"Vault secret {self.config.mount}/{self.config.path} kept changing under five write attempts; "
            "another writer is busy, retry."
        )

    # ------------------------------------------------------------------ auth and renewal

    def renew_if_due(self) -> bool:
        """Renew the token if ``renew_fraction`` of its lease has passed (log in again if it cannot be
        renewed and auth is AppRole); returns whether anything was done."""
        with self._lock:
            if self._lease_s is None:
                return False
            elapsed = self._now() - self._issued_at
            if elapsed < self.config.renew_fraction * self._lease_s:
                return False
            if self.config.auth == "approle":
                if self._renewable:
                    previous = self._lease_s
                    try:
                        self._renew()
                    except ConfigError:
                        self._authenticate()
                        return True
                    if self._lease_s is None or self._lease_s >= previous:
                        return True
                # Not renewable, or capped by its max TTL: a fresh login before it runs out.
                self._authenticate()
                return True
            if self._renewable:
                self._renew()
                return True
            if elapsed >= self._lease_s:
                raise ConfigError(
                    f"the Vault token expired {elapsed - self._lease_s:.0f}s ago and is not renewable; "
                    "issue a new token (VAULT_TOKEN) or use AppRole auth."
                )
            return False

    def start_renewal(self, interval_s: float = 5.0) -> None:
        """Check the lease every ``interval_s`` seconds in a daemon thread (for long idle periods)."""
        if self._renewer is not None:
            return
        self._stop.clear()

        def loop() -> None:
            while not self._stop.wait(interval_s):
                try:
                    self.renew_if_due()
                except (ConfigError, StorageError):
                    continue  # the next request reports it; keep trying

        self._renewer = threading.Thread(target=loop, name="vault-renewal", daemon=True)
        self._renewer.start()

    def close(self) -> None:
        """Stop the renewal thread and close the HTTP session."""
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join(timeout=5)
            self._renewer = None
        self._client.adapter.close()

    def __enter__(self) -> VaultSecretProvider:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _authenticate(self) -> None:
        if self.config.auth == "approle":
            role_id = self._credential("role_id")
            secret_id = self._credential("secret_id")
            answer = self._call(
                "AppRole login",
                lambda: self._client.auth.approle.login(
                    role_id=role_id.reveal(),
                    secret_id=secret_id.reveal(),
                    mount_point=self.config.approle_mount,
                ),
                missing=f"Vault has no AppRole auth method at auth/{self.config.approle_mount}",
                refused="Vault refused the AppRole login: check VAULT_ROLE_ID and VAULT_SECRET_ID",
                renew=False,
            )
            auth = answer.get("auth") or {}
            if not auth.get("client_token"):
                raise ConfigError("Vault's AppRole login answer holds no client token; check the role setup.")
            Secret(str(auth["client_token"]))
            self._set_lease(auth.get("lease_duration"), auth.get("renewable"))
        else:
            self._client.token = self._credential("token").reveal()
            answer = self._call(
                "token lookup",
                lambda: self._client.auth.token.lookup_self(),
                missing="Vault has no token auth method",
                refused="Vault refused the token: check VAULT_TOKEN (expired or revoked tokens are refused)",
                renew=False,
            )
            data = answer.get("data") or {}
            self._set_lease(data.get("ttl"), data.get("renewable"))
        self.stats["logins"] += 1

    def _renew(self) -> None:
        increment = self.config.renew_increment_s
        answer = self._call(
            "token renewal",
            lambda: self._client.auth.token.renew_self(increment=increment),
            missing="Vault has no token auth method",
            refused="Vault refused to renew the token (revoked, expired or past its max TTL)",
            renew=False,
        )
        auth = answer.get("auth") or {}
        self._set_lease(auth.get("lease_duration"), auth.get("renewable"))
        self.stats["renewals"] += 1

    def _set_lease(self, lease: Any, renewable: Any) -> None:
        seconds = float(lease) if isinstance(lease, int | float) and not isinstance(lease, bool) else 0.0
        self._lease_s = seconds if seconds > 0 else None  # 0: a root or non-expiring token
        self._issued_at = self._now()
        self._renewable = bool(renewable)

    def _credential(self, name: str) -> Secret:
        try:
            return self._credentials.get(name)
        except ConfigError as exc:
            need = "token" if self.config.auth == "token" else "role_id and secret_id"
            raise ConfigError(f"Vault {self.config.auth} auth needs its {need}: {exc}") from exc

    def _call(
        self,
        what: str,
        fn: Callable[[], T],
        *,
        missing: str,
        refused: str = "Vault refused the request (permission denied): check the token's policy",
        renew: bool = True,
    ) -> T:
        where = f"Vault at {self.config.url}"
        for attempt in (1, 2):
            if renew:
                self.renew_if_due()
            try:
                return fn()
            except hvac.exceptions.InvalidPath as exc:
                raise ConfigError(f"{missing}.") from exc
            except (hvac.exceptions.Forbidden, hvac.exceptions.Unauthorized) as exc:
                if renew and attempt == 1 and self.config.auth == "approle":
                    self._authenticate()  # the token was revoked or expired early: log in again once
                    continue
                raise ConfigError(f"{refused} ({what} at {where}: {_errors(exc)}).") from exc
            except hvac.exceptions.InvalidRequest as exc:
                if "check-and-set" in _errors(exc):
                    raise _CasMismatch from exc
                raise ConfigError(f"{where} rejected the {what}: {_errors(exc)}.") from exc
            except hvac.exceptions.VaultError as exc:
                raise StorageError(
                    f"{where} failed the {what} ({type(exc).__name__}: {_errors(exc)}); it may be sealed or "
                    "down. Retry, or check `vault status`."
                ) from exc
            except requests.exceptions.RequestException as exc:
                raise StorageError(
                    f"cannot reach {where} for the {what} ({type(exc).__name__}); check the url, the network "
                    "and TLS settings (ca_cert)."
                ) from exc
        raise AssertionError("unreachable")  # pragma: no cover


class _CasMismatch(Exception):
    """A check-and-set write lost a race with another writer; read again and retry."""


def _errors(exc: hvac.exceptions.VaultError) -> str:
    errors = getattr(exc, "errors", None)
    if isinstance(errors, list | tuple) and errors:
        return "; ".join(map(str, errors))
    return type(exc).__name__


def _parse_secret(answer: Mapping[str, Any], where: str) -> VaultSecret:
    try:
        data = answer["data"]["data"]
        metadata = answer["data"]["metadata"]
        version = int(metadata["version"])
    except (KeyError, TypeError, ValueError) as exc:
        raise StorageError(
            f"Vault's answer for {where} is not a KV v2 secret (no data/metadata); is the mount KV version 2?"
        ) from exc
    if data is None or metadata.get("destroyed") or metadata.get("deletion_time"):
        raise ConfigError(f"version {version} of Vault secret {where} was deleted or destroyed.")
    created: datetime | None = None
    stamp = metadata.get("created_time")
    if isinstance(stamp, str) and stamp:
        try:
            created = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
        except ValueError:
            created = None
    values = {}
    for key, value in data.items():
        if not isinstance(value, str):
            raise ConfigError(
                f"Vault secret {where} key {key!r} holds a {type(value).__name__}; credentials must be "
                "strings."
            )
        values[str(key)] = Secret(value)
    return VaultSecret(data=values, version=version, created_time=created)
