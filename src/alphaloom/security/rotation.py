"""Rotating credentials: a new value for a venue's credential, picked up by running connectors at next use.

Connectors ask their :class:`~alphaloom.core.secrets.SecretProvider` for a credential each time they sign or
send a request, and the keystore and Vault providers read their backend as it is now (the keystore re-reads
its file when it changed; Vault after ``cache_ttl_s``). So writing the new value is the whole rotation: no
restart, no signal. :func:`rotate_credential` writes it, reads it back from the backend to prove readers
see it, and reports the new version. :class:`ChainSecretProvider` tries several backends in order
(keystore, then Vault, then environment variables, for example).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol, runtime_checkable

from alphaloom.core.exceptions import ConfigError
from alphaloom.core.secrets import Secret, SecretProvider

__all__ = ["ChainSecretProvider", "CredentialRotation", "WritableSecretStore", "rotate_credential"]


@runtime_checkable
class WritableSecretStore(Protocol):
    """A backend that can store a new value: the keystore and the Vault provider."""

    def get(self, name: str) -> Secret: ...

    def set(self, name: str, value: str | Secret) -> int: ...


@dataclass(frozen=True)
class CredentialRotation:
    """What :func:`rotate_credential` did: the entry, its new version, whether it replaced a value, when."""

    name: str
    version: int
    replaced: bool
    rotated_at: datetime


def rotate_credential(
    store: WritableSecretStore,
    name: str,
    new_value: str | Secret,
    *,
    check: Callable[[Secret], None] | None = None,
) -> CredentialRotation:
    """Replace credential ``name`` with ``new_value`` in ``store``; running readers use it at next request.

    Parameters
    ----------
    store
        An :class:`~alphaloom.security.keystore.EncryptedKeystore` or a
        :class:`~alphaloom.security.vault.VaultSecretProvider`.
    name
        The entry (``oanda.token`` in a keystore; ``token`` in a per-venue Vault secret).
    new_value
        The new credential, non-empty and different from the current one.
    check
        Optional: called with the new value before it is written (e.g. a test request to the venue); an
        exception from it aborts the rotation and the old value stays.

    Raises
    ------
    ConfigError
        An empty value, the same value as now, or a read-back that does not return the new value.
    """
    plain = new_value.reveal() if isinstance(new_value, Secret) else new_value
    if not isinstance(plain, str) or not plain.strip():
        raise ConfigError(f"the new value of {name!r} must be a non-empty string.")
    try:
        current: Secret | None = store.get(name)
    except ConfigError:
        current = None
    if current is not None and current.reveal() == plain:
        raise ConfigError(
            f"the new value of {name!r} equals the current one; rotation needs a new credential from the "
            "venue."
        )
    secret = Secret(plain)
    if check is not None:
        check(secret)
    version = store.set(name, secret)
    # Both stores drop their cached copy on write, so this reads what other processes will read.
    if store.get(name).reveal() != plain:
        raise ConfigError(f"after writing {name!r}, reading it back did not return the new value; retry.")
    return CredentialRotation(
        name=name, version=int(version), replaced=current is not None, rotated_at=datetime.now(UTC)
    )


class ChainSecretProvider:
    """Ask several providers in order; the first that has the secret answers.

    Parameters
    ----------
    providers
        At least one :class:`~alphaloom.core.secrets.SecretProvider`.

    Raises
    ------
    ConfigError
        From :meth:`get`, when none has the secret; the message carries each provider's reason.
    """

    def __init__(self, *providers: SecretProvider) -> None:
        if not providers:
            raise ConfigError("ChainSecretProvider needs at least one provider.")
        for p in providers:
            if not isinstance(p, SecretProvider):
                raise ConfigError(f"{p!r} is not a SecretProvider (it has no get(name) method).")
        self.providers = tuple(providers)

    def __repr__(self) -> str:
        return f"ChainSecretProvider({', '.join(map(repr, self.providers))})"

    def get(self, name: str) -> Secret:
        """The secret ``name`` from the first provider that has it."""
        reasons = []
        for provider in self.providers:
            try:
                return provider.get(name)
            except ConfigError as exc:
                reasons.append(f"{provider!r}: {exc}")
        raise ConfigError(f"secret {name!r} was found by no provider. " + " | ".join(reasons))
