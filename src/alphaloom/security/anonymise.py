"""Keyed pseudonymisation of account and user identifiers for model training data.

An identifier becomes ``HMAC-SHA256(key, namespace || 0x00 || id)``, truncated and hex-encoded with a prefix
(``acct_3f9c...``). The same key and id always give the same pseudonym, so joins and per-account features
keep working; without the key the mapping cannot be recomputed or reversed (unlike a plain hash, which
anyone can recompute over a list of candidate ids). The namespace keeps an account id and a user id that
happen to be equal from sharing a pseudonym. Rotating the key unlinks old and new data sets.
"""

from __future__ import annotations

import hashlib
import hmac
import numbers
import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from alphaloom.core.exceptions import ConfigError, DataFormatError
from alphaloom.core.secrets import Secret

if TYPE_CHECKING:  # pandas is imported where frames are handled, so the CLI starts fast
    import pandas as pd

__all__ = ["Pseudonymiser"]

_NAMESPACE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


class Pseudonymiser:
    """Replace identifiers with stable keyed pseudonyms.

    Parameters
    ----------
    key
        The HMAC key: at least 32 bytes (or 32 characters), e.g. ``secrets.token_hex(32)`` kept in the
        keystore as ``anonymise.key``. A :class:`~alphaloom.core.secrets.Secret` is accepted.
    digest_hex_chars
        Hex characters of the HMAC kept (16 to 64; 32 = 128 bits, collision-free in practice).

    Examples
    --------
    >>> p = Pseudonymiser("k" * 32)
    >>> p.pseudonymise("101-004-1234567-001", namespace="acct") == p.pseudonymise("101-004-1234567-001",
    ...     namespace="acct")
    True
    """

    def __init__(self, key: str | bytes | Secret, *, digest_hex_chars: int = 32) -> None:
        if isinstance(key, Secret):
            raw = key.reveal().encode("utf-8")
        elif isinstance(key, str):
            raw = key.encode("utf-8")
        elif isinstance(key, bytes):
            raw = key
        else:
            raise ConfigError(f"the pseudonymisation key must be str or bytes, got {type(key).__name__}.")
        if len(raw) < 32:
            raise ConfigError(
                f"the pseudonymisation key must be at least 32 bytes, got {len(raw)}; generate one with "
                "`python -c 'import secrets; print(secrets.token_hex(32))'` and keep it in the keystore."
            )
        if not isinstance(digest_hex_chars, int) or not 16 <= digest_hex_chars <= 64:
            raise ConfigError(f"digest_hex_chars must be an integer from 16 to 64, got {digest_hex_chars!r}.")
        self._key = raw
        self.digest_hex_chars = digest_hex_chars

    def __repr__(self) -> str:
        return f"Pseudonymiser(key='***', digest_hex_chars={self.digest_hex_chars})"

    def pseudonymise(self, identifier: object, *, namespace: str = "id") -> str:
        """The pseudonym of ``identifier``: ``f"{namespace}_{hex}"``.

        Parameters
        ----------
        identifier
            A non-empty string or an integer (integers are pseudonymised as their decimal text, so ``42``
            and ``"42"`` agree).
        namespace
            Lowercase letters, digits and ``_`` (``"acct"``, ``"user"``); part of the keyed input and the
            prefix of the result.

        Raises
        ------
        ConfigError
            A bad namespace.
        DataFormatError
            A missing, empty or non-string, non-integer identifier.
        """
        _check_namespace(namespace)
        text = _identifier_text(identifier)
        mac = hmac.new(self._key, namespace.encode() + b"\x00" + text.encode("utf-8"), hashlib.sha256)
        return f"{namespace}_{mac.hexdigest()[: self.digest_hex_chars]}"

    def pseudonymise_many(self, identifiers: Iterable[object], *, namespace: str = "id") -> list[str]:
        """:meth:`pseudonymise` over ``identifiers`` (each distinct id is computed once)."""
        _check_namespace(namespace)
        memo: dict[str, str] = {}
        out = []
        for identifier in identifiers:
            text = _identifier_text(identifier)
            if text not in memo:
                memo[text] = self.pseudonymise(text, namespace=namespace)
            out.append(memo[text])
        return out

    def transform_frame(self, frame: pd.DataFrame, columns: Mapping[str, str]) -> pd.DataFrame:
        """A copy of ``frame`` with each column in ``columns`` replaced by pseudonyms.

        Parameters
        ----------
        frame
            Any frame; other columns are untouched.
        columns
            Column name -> namespace, e.g. ``{"account_id": "acct", "user_id": "user"}``.

        Raises
        ------
        DataFormatError
            A listed column is missing, or holds a missing or empty identifier (named with its row).
        """
        import pandas as pd

        if not isinstance(frame, pd.DataFrame):
            raise DataFormatError(f"transform_frame expects a pandas DataFrame, got {type(frame).__name__}.")
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise DataFormatError(
                f"cannot pseudonymise column(s) {missing}: not in the frame (columns {list(frame.columns)})."
            )
        out = frame.copy()
        for column, namespace in columns.items():
            values = frame[column]
            try:
                out[column] = pd.Series(
                    self.pseudonymise_many(values.tolist(), namespace=namespace),
                    index=frame.index,
                    dtype="str",
                )
            except DataFormatError as exc:
                bad = next(i for i, v in zip(frame.index, values, strict=True) if not _valid_identifier(v))
                raise DataFormatError(f"column {column!r}, row {bad!r}: {exc}") from exc
        return out


def _check_namespace(namespace: str) -> None:
    if not isinstance(namespace, str) or not _NAMESPACE.match(namespace):
        raise ConfigError(
            f"a pseudonym namespace is 1-32 lowercase letters, digits and '_' starting with a letter "
            f"(e.g. 'acct'), got {namespace!r}."
        )


def _valid_identifier(identifier: object) -> bool:
    try:
        _identifier_text(identifier)
    except DataFormatError:
        return False
    return True


def _identifier_text(identifier: object) -> str:
    if isinstance(identifier, bool):
        raise DataFormatError(f"an identifier must be a string or an integer, got a boolean {identifier!r}.")
    if isinstance(identifier, numbers.Integral):  # int and numpy integers
        return str(int(identifier))
    if isinstance(identifier, str):
        if not identifier.strip():
            raise DataFormatError("an identifier is empty; every row needs an account or user id.")
        return identifier
    raise DataFormatError(
        f"an identifier must be a non-empty string or an integer, got {type(identifier).__name__} "
        f"{identifier!r}; fill or drop rows without an id before pseudonymising."
    )
