"""Masking credentials in log output: a :class:`logging.Filter` and the logging setup that installs it.

:class:`RedactionFilter` rewrites each record's final text (message with its arguments, exception traceback
and stack) before any handler writes it, masking with ``***``:

- known secret values: every :class:`~alphaloom.core.secrets.Secret` created in the process (providers hand
  credentials out as ``Secret``, and this module listens for them), values given to
  :func:`register_secret`, and environment variables whose names look like credentials; also their
  URL-encoded forms;
- ``Authorization:`` / ``Proxy-Authorization:`` header values and ``Bearer``/``Basic``/``Token`` credentials;
- ``key=value`` and ``"key": "value"`` pairs whose key names a credential (``api_key``, ``token``,
  ``password``, ``secret``, ``passphrase``, ``private_key``, ``signature``, ``X-Vault-Token``, ...);
- passwords in URLs (``scheme://user:***@host``);
- well-known token shapes: AWS access key ids, Vault (``hvs.``), GitHub, Slack, JWTs, ``sk_live_`` keys;
- long random-looking tokens (20+ characters of mixed letters and digits with high Shannon entropy; hex
  digests and UUIDs are left alone as they are ids, not credentials);
- PEM blocks (``-----BEGIN ... -----`` to ``-----END ... -----``).

A filter that fails on a record withholds the message rather than let it through unmasked.
"""

from __future__ import annotations

import logging
import math
import os
import re
import sys
import threading
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TextIO
from urllib.parse import quote

from alphaloom.core.exceptions import ConfigError
from alphaloom.core.secrets import Secret, add_secret_listener

__all__ = [
    "MASK",
    "RedactionFilter",
    "looks_random",
    "redact",
    "register_secret",
    "register_secrets_from_environ",
    "setup_logging",
]

MASK = "***"
#: Known values shorter than this are not masked: they would mask ordinary words and numbers everywhere.
MIN_KNOWN_LENGTH = 6

_CRED_WORD = (
    r"api[_\-.]?keys?|apikey|api[_\-.]?secret|secret[_\-.]?(?:access[_\-.]?)?key|secrets?|tokens?|"
    r"access[_\-.]?token|refresh[_\-.]?token|auth[_\-.]?token|id[_\-.]?token|client[_\-.]?secret|"
    r"passwords?|passwd|pwd|passphrase|private[_\-.]?key|secret[_\-.]?id|signature|credentials?|"
    r"x-api-key|x-vault-token|session[_\-.]?(?:id|key)|mfa[_\-.]?code|otp"
)
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # PEM blocks, whole (and a truncated private key to the end of the text).
    (
        re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----.*?-----END \1-----", re.S),
        r"-----BEGIN \1-----***-----END \1-----",
    ),
    (
        re.compile(r"-----BEGIN ([A-Z0-9 ]*PRIVATE KEY)-----(?:(?!-----END).)*\Z", re.S),
        r"-----BEGIN \1-----***",
    ),
    # user:password@ in URLs.
    (re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*://[^\s:/@'\"]*:)([^\s@/'\"]+)(@)"), r"\1***\3"),
    # Authorization headers, with or without a scheme word.
    (
        re.compile(
            r"(?i)((?:proxy-)?authorization['\"]?\s*[:=]\s*['\"]?(?:(?:bearer|basic|token|digest|hmac)\s+)?)"
            r"([^\s'\",;]+)"
        ),
        r"\1***",
    ),
    (re.compile(r"(?i)\b(bearer|basic)(\s+)([A-Za-z0-9\-._~+/]{6,}=*)"), r"\1\2***"),
    # key=value, key: value, "key": "value" where the key names a credential.
    (
        re.compile(
            r"(?i)((?<![A-Za-z0-9])(?:[A-Za-z0-9]+[_\-.])*(?:" + _CRED_WORD + r")['\"]?\s*(?:=|:)\s*['\"]?)"
            r"([^\s'\",;&}\]\)]+)"
        ),
        r"\1***",
    ),
    # Token shapes with a recognisable prefix.
    (re.compile(r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|AIPA|ANPA|ANVA|ABIA|ACCA)[A-Z0-9]{16}\b"), MASK),
    (re.compile(r"\bhv[sbr]\.[A-Za-z0-9_\-]{20,}"), MASK),
    (re.compile(r"\bgh[pousr]_[A-Za-z0-9]{30,}"), MASK),
    (re.compile(r"\bxox[abprs]-[A-Za-z0-9\-]{10,}"), MASK),
    (re.compile(r"\beyJ[A-Za-z0-9_\-]{5,}\.eyJ[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]{5,}"), MASK),
    (re.compile(r"\b(?:sk|rk|pk)[_\-](?:live|test)[_\-][A-Za-z0-9]{8,}"), MASK),
)
_TOKEN = re.compile(r"(?<![A-Za-z0-9_\-+])[A-Za-z0-9_\-+]{20,}={0,2}(?![A-Za-z0-9_\-+=])")
_HEXISH = re.compile(r"^[0-9a-fA-F\-]+$")
_SECRET_ENV = re.compile(
    r"(?i)(KEY|SECRET|TOKEN|PASSWORD|PASSWD|PASSPHRASE|CREDENTIAL|PRIVATE|SIGNATURE|MFA|ACCOUNT|SECRET_ID|ROLE_ID)"
)


def _entropy(text: str) -> float:
    counts = Counter(text)
    n = len(text)
    return -sum(c / n * math.log2(c / n) for c in counts.values())


def looks_random(token: str) -> bool:
    """Whether ``token`` looks like a generated credential rather than a word, id or digest.

    20+ characters; not hex or a UUID (digests and ids); either upper case, lower case and digits with
    Shannon entropy of at least 3.3 bits per character, or 32+ characters of two classes with at least 4.3.
    """
    core = token.rstrip("=")
    if len(core) < 20 or _HEXISH.match(core):
        return False
    upper = any(c.isupper() for c in core)
    lower = any(c.islower() for c in core)
    digit = any(c.isdigit() for c in core)
    h = _entropy(core)
    if upper and lower and digit and h >= 3.3:
        return True
    return len(core) >= 32 and upper + lower + digit >= 2 and h >= 4.3


class _Registry:
    """The process's known secret values, shared by every filter."""

    def __init__(self) -> None:
        self._values: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self._lock = threading.Lock()

    def add(self, value: str) -> None:
        value = value.reveal() if isinstance(value, Secret) else str(value)
        if len(value.strip()) < MIN_KNOWN_LENGTH:
            return
        forms = {value, value.strip(), quote(value, safe=""), quote(value, safe="/:")}
        with self._lock:
            if forms <= self._values:
                return
            self._values |= {f for f in forms if len(f) >= MIN_KNOWN_LENGTH}
            self._pattern = None

    def sub(self, text: str) -> str:
        with self._lock:
            if not self._values:
                return text
            if self._pattern is None:
                ordered = sorted(self._values, key=len, reverse=True)
                self._pattern = re.compile("|".join(map(re.escape, ordered)))
            pattern = self._pattern
        return pattern.sub(MASK, text)

    def __len__(self) -> int:
        return len(self._values)


_REGISTRY = _Registry()


def _learn(value: str) -> None:
    _REGISTRY.add(value)


add_secret_listener(_learn)


def register_secret(value: str | Secret) -> None:
    """Mask ``value`` in every log record from now on (values under 6 characters are ignored)."""
    _REGISTRY.add(value)


def register_secrets_from_environ(environ: Mapping[str, str] | None = None) -> int:
    """Register the values of environment variables whose names look like credentials; returns how many.

    A name counts when it contains KEY, SECRET, TOKEN, PASSWORD, PASSPHRASE, CREDENTIAL, PRIVATE, SIGNATURE,
    MFA, ACCOUNT, SECRET_ID or ROLE_ID (``ALPHALOOM_OANDA_TOKEN``, ``AWS_SECRET_ACCESS_KEY``,
    ``VAULT_TOKEN``).
    """
    environ = os.environ if environ is None else environ
    n = 0
    for name, value in environ.items():
        if _SECRET_ENV.search(name) and len(value.strip()) >= MIN_KNOWN_LENGTH:
            _REGISTRY.add(value)
            n += 1
    return n


def redact(text: str, extra: Iterable[str] = ()) -> str:
    """``text`` with known secrets, credential pairs, token shapes, random-looking tokens and PEM blocks
    masked as ``***``.

    Parameters
    ----------
    text
        Any text (a log message, a traceback, a report).
    extra
        More secret values to mask in this call only.
    """
    if not text:
        return text
    for value in extra:
        plain = value.reveal() if isinstance(value, Secret) else str(value)
        if plain:
            text = text.replace(plain, MASK)
    text = _REGISTRY.sub(text)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return _TOKEN.sub(lambda m: MASK if looks_random(m.group(0)) else m.group(0), text)


class RedactionFilter(logging.Filter):
    """A logging filter that masks credentials in each record's text; attach it to handlers.

    It never drops a record: it rewrites ``msg`` (with the arguments merged in), ``exc_text`` and
    ``stack_info``. On an internal failure the message is replaced by a notice, never passed through.

    Parameters
    ----------
    extra
        Secret values to mask in addition to the process-wide known ones.
    """

    def __init__(self, extra: Iterable[str] = ()) -> None:
        super().__init__()
        self._extra = [v.reveal() if isinstance(v, Secret) else str(v) for v in extra if v]

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            record.msg = redact(record.getMessage(), self._extra)
            record.args = None
            if record.exc_info and not record.exc_text:
                record.exc_text = logging.Formatter().formatException(record.exc_info)
            if record.exc_text:
                record.exc_text = redact(record.exc_text, self._extra)
            if record.stack_info:
                record.stack_info = redact(record.stack_info, self._extra)
        except Exception as exc:  # a log filter must not raise; fail closed
            record.msg = f"[log message withheld: redaction failed with {type(exc).__name__}]"
            record.args = None
            record.exc_info = None
            record.exc_text = None
        return True


class _CurrentStderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    # Writes to whatever sys.stderr is at emit time (test runners swap it), like logging's lastResort.
    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property  # type: ignore[override]
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass


_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_LEVELS = ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG")


def setup_logging(
    level: str = "WARNING", log_file: str | Path | None = None, *, stream: TextIO | None = None
) -> RedactionFilter:
    """Configure the root logger with a redacting stderr handler (and a redacting file handler).

    Registers credential-like environment variables as known secrets, routes :mod:`warnings` through
    logging, and replaces handlers installed by an earlier call, so calling it twice does not duplicate
    output.

    Parameters
    ----------
    level
        ``DEBUG``, ``INFO``, ``WARNING``, ``ERROR`` or ``CRITICAL`` (any case).
    log_file
        Also append records to this file (its directory must exist).
    stream
        Where the console handler writes; ``sys.stderr`` by default.

    Returns
    -------
    RedactionFilter
        The filter attached to the handlers.

    Raises
    ------
    ConfigError
        An unknown level or a log file that cannot be opened.
    """
    name = str(level).upper()
    if name not in _LEVELS:
        raise ConfigError(f"log level must be one of {', '.join(_LEVELS)}, got {level!r}.")
    handlers: list[logging.Handler] = [logging.StreamHandler(stream) if stream else _CurrentStderrHandler()]
    if log_file is not None:
        try:
            handlers.append(logging.FileHandler(log_file, encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"cannot open log file {log_file}: {exc.strerror}; check the path.") from exc
    register_secrets_from_environ()
    flt = RedactionFilter()
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_alphaloom_redacting", False):
            root.removeHandler(handler)
            handler.close()
    for handler in handlers:
        handler.addFilter(flt)
        handler.setFormatter(logging.Formatter(_FORMAT))
        handler._alphaloom_redacting = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(name)
    logging.captureWarnings(True)
    return flt
