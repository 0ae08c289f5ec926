"""Credentials: where they come from, and a wrapper that keeps them out of logs.

Connectors ask a :class:`SecretProvider` for each credential by a short name (``"api_key"``); the provider
decides where it lives. :class:`EnvSecretProvider` reads environment variables (``ALPHALOOM_OANDA_API_KEY``
for prefix ``ALPHALOOM_OANDA_`` and name ``"api_key"``); :class:`StaticSecretProvider` holds values in memory
for tests. The encrypted keystore and HashiCorp Vault (:mod:`alphaloom.security`) implement the same small
protocol.

A value handed out is a :class:`Secret`: a ``str`` subclass (so it can go straight into a header) whose
``repr`` and ``str`` are ``'***'``, so an f-string, a log line or an exception message never shows it. Use
:meth:`Secret.reveal` at the one place that needs the plain value. Error messages name the variable to set,
never the value.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from typing import Any, Protocol, runtime_checkable

from alphaloom.core.exceptions import ConfigError, did_you_mean

__all__ = [
    "EnvSecretProvider",
    "Secret",
    "SecretProvider",
    "StaticSecretProvider",
    "add_secret_listener",
    "remove_secret_listener",
]

_MASK = "***"
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
# Called with the plain value of every Secret created (the log redaction filter registers itself here, so
# any credential a provider hands out is masked in logs without the provider knowing about logging).
_LISTENERS: list[Callable[[str], None]] = []


def add_secret_listener(listener: Callable[[str], None]) -> None:
    """Call ``listener(value)`` with the plain value of every :class:`Secret` created from now on.

    The log redaction filter (:mod:`alphaloom.security.redaction`) uses it to learn each credential that any
    provider hands out. Adding the same listener twice has no effect.
    """
    if listener not in _LISTENERS:
        _LISTENERS.append(listener)


def remove_secret_listener(listener: Callable[[str], None]) -> None:
    """Stop calling ``listener``; a listener that was never added is ignored."""
    if listener in _LISTENERS:
        _LISTENERS.remove(listener)


class Secret(str):
    """A string whose text form is ``'***'``; the value is available through :meth:`reveal` only.

    It is still a ``str`` (equality, hashing, ``len`` and byte encoding use the real value), so it can be
    passed to an HTTP client as a header value, but formatting it, printing it or putting it in a message
    shows ``***``. String operations (``+``, slicing, ``.split()``) return plain ``str`` carrying the value:
    build credentials from :meth:`reveal` at the point of use, never into text that may be logged.
    """

    __slots__ = ()

    def __new__(cls, value: str = "") -> Secret:
        # str(secret) is the mask, so unwrap a Secret before str.__new__ sees it.
        plain = value.reveal() if isinstance(value, Secret) else value
        obj = super().__new__(cls, plain)
        for listener in tuple(_LISTENERS):
            listener(str.__str__(obj))
        return obj

    def reveal(self) -> str:
        """The plain value. Call it only where the credential is actually sent or used."""
        return str.__str__(self)

    def __repr__(self) -> str:
        return f"Secret({_MASK!r})"

    def __str__(self) -> str:
        return _MASK

    def __format__(self, format_spec: str) -> str:
        return format(_MASK, format_spec)

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickling carries the value (processes need it) but keeps the type.
        return (Secret, (self.reveal(),))


@runtime_checkable
class SecretProvider(Protocol):
    """Anything that returns a credential by name.

    ``get`` raises :class:`~alphaloom.core.exceptions.ConfigError` when the secret is missing, naming where
    to put it (e.g. the environment variable to set) and never any value.
    """

    def get(self, name: str) -> Secret: ...


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(
            f"secret names are letters, digits and underscores starting with a letter (e.g. 'api_key'), "
            f"got {name!r}."
        )
    return name


class EnvSecretProvider:
    """Secrets from environment variables ``{prefix}{NAME}`` (the name upper-cased).

    Parameters
    ----------
    prefix
        Prepended to the upper-cased name, e.g. ``"ALPHALOOM_OANDA_"``. Letters, digits and underscores.
    environ
        The mapping to read; :data:`os.environ` when ``None`` (injectable for tests).
    """

    def __init__(self, prefix: str = "ALPHALOOM_", *, environ: Mapping[str, str] | None = None) -> None:
        if prefix and not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", prefix):
            raise ConfigError(
                f"an environment variable prefix is letters, digits and underscores, got {prefix!r}."
            )
        self.prefix = prefix
        self._environ = environ

    def __repr__(self) -> str:
        return f"EnvSecretProvider(prefix={self.prefix!r})"

    def var_name(self, name: str) -> str:
        """The environment variable that holds secret ``name``."""
        return f"{self.prefix}{_check_name(name).upper()}"

    def get(self, name: str) -> Secret:
        """The secret ``name`` from the environment.

        Raises
        ------
        ConfigError
            If the variable is unset or empty; the message names the variable to set.
        """
        var = self.var_name(name)
        environ = os.environ if self._environ is None else self._environ
        value = environ.get(var, "")
        if not value.strip():
            state = "is empty" if var in environ else "is not set"
            raise ConfigError(
                f"secret {name!r} is missing: environment variable {var} {state}. "
                f"Set it (e.g. `export {var}=...`) or pass another SecretProvider."
            )
        return Secret(value.strip())


class StaticSecretProvider:
    """Secrets held in memory, for tests and notebooks.

    Parameters
    ----------
    values
        Secret name -> value.
    """

    def __init__(self, values: Mapping[str, str] | None = None, **kwargs: str) -> None:
        merged = {**(values or {}), **kwargs}
        self._values = {_check_name(k): Secret(v) for k, v in merged.items()}

    def __repr__(self) -> str:
        return f"StaticSecretProvider(names={sorted(self._values)!r})"

    def get(self, name: str) -> Secret:
        """The secret ``name``.

        Raises
        ------
        ConfigError
            If no value was given for ``name``; lists the names that exist, never their values.
        """
        try:
            return self._values[name]
        except KeyError:
            raise ConfigError(
                f"secret {name!r} is missing from StaticSecretProvider.{did_you_mean(name, self._values)} "
                f"Names held: {', '.join(sorted(self._values)) or 'none'}."
            ) from None
