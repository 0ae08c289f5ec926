"""The one exception tree of alphaloom.

Every error a caller can see is an :class:`AlphaloomError`. Vendor errors (duckdb, ccxt, httpx, psycopg,
torch) are translated at the boundary with ``raise OurError(...) from exc`` so callers never need to import a
vendor's exception types.

::

    AlphaloomError
    ├── ConfigError                 invalid or unknown configuration keys / values
    ├── DataError
    │   ├── DataNotFoundError       a file, table or data directory that does not exist
    │   ├── DataFormatError         a file or frame with missing/malformed columns or values
    │   ├── UnknownSymbolError      a symbol that is not in the store / data set
    │   ├── EmptyRangeError         a query or split that selects no rows
    │   └── DataValidationError     data failing quality checks where the caller asked for strict mode
    ├── StorageError                the store could not be opened, read or written
    │   ├── CacheUnavailableError   Redis unreachable (callers fall back to the store)
    │   └── BusError                the event bus could not publish, deliver or acknowledge
    │       └── BackpressureError   a bounded topic stayed full: consumers are not keeping up
    ├── ModelError
    │   ├── NotFittedError          predict/transform before fit, or a missing trained artefact
    │   └── TrainingError           training diverged or produced non-finite values
    ├── ConnectorError              anything that went wrong talking to a venue
    │   ├── AuthenticationError
    │   ├── RateLimitError
    │   ├── VenueUnavailableError   timeouts, 5xx, open circuit breaker
    │   ├── OrderRejectedError
    │   └── OrderStateError     an order report that contradicts the order's state machine
    └── RiskLimitError              an order refused by the risk manager

Every message says what was expected, what was received and how to fix it.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = [
    "AlphaloomError",
    "AuthenticationError",
    "BackpressureError",
    "BusError",
    "CacheUnavailableError",
    "ConfigError",
    "ConnectorError",
    "DataError",
    "DataFormatError",
    "DataNotFoundError",
    "DataValidationError",
    "EmptyRangeError",
    "ModelError",
    "NotFittedError",
    "OrderRejectedError",
    "OrderStateError",
    "RateLimitError",
    "RiskLimitError",
    "StorageError",
    "TrainingError",
    "UnknownSymbolError",
    "VenueUnavailableError",
    "did_you_mean",
]


class AlphaloomError(Exception):
    """Base class of every error alphaloom raises on purpose."""


class ConfigError(AlphaloomError, ValueError):
    """A configuration file or object is invalid."""


class DataError(AlphaloomError):
    """Base class for problems with market data."""


class DataNotFoundError(DataError, FileNotFoundError):
    """A data file, table or directory does not exist."""


class DataFormatError(DataError, ValueError):
    """Data is present but malformed (missing columns, unparsable values, wrong types)."""


class UnknownSymbolError(DataError, KeyError):
    """A symbol that the store or data set does not hold."""

    def __str__(self) -> str:  # KeyError quotes its message; keep ours readable.
        return str(self.args[0]) if self.args else ""


class EmptyRangeError(DataError, ValueError):
    """A selection (date range, split, filter) contains no rows."""


class DataValidationError(DataError, ValueError):
    """Data failed quality checks in strict mode."""


class StorageError(AlphaloomError):
    """The store could not be opened, read or written."""


class CacheUnavailableError(StorageError):
    """Redis could not be reached: connection refused or reset, or no answer within the timeout."""


class BusError(StorageError):
    """The event bus could not publish, deliver or acknowledge (transport failure or a bad event)."""


class BackpressureError(BusError):
    """A bounded topic stayed full for longer than ``publish_timeout_s``: consumers are not keeping up."""


class ModelError(AlphaloomError):
    """Base class for model problems."""


class NotFittedError(ModelError, RuntimeError):
    """A model or transformer was used before ``fit``, or a trained artefact is missing."""


class TrainingError(ModelError, RuntimeError):
    """Training failed (non-finite loss, empty data set)."""


class ConnectorError(AlphaloomError):
    """Base class for errors talking to a venue."""


class AuthenticationError(ConnectorError):
    """The venue refused the credentials."""


class RateLimitError(ConnectorError):
    """The venue rate-limited us; ``retry_after_s`` says when to try again, if known."""

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class VenueUnavailableError(ConnectorError):
    """Timeouts, 5xx answers or an open circuit breaker."""


class OrderRejectedError(ConnectorError):
    """The venue rejected an order."""


class OrderStateError(ConnectorError):
    """An order event that its state machine forbids (e.g. ``filled -> cancelled``), or fills that do not
    add up to what the venue reports: the venue's story contradicts itself or ours; reconcile first."""


class RiskLimitError(AlphaloomError):
    """The risk manager refused an order; ``limit`` names the limit that was hit."""

    def __init__(self, message: str, limit: str = "") -> None:
        super().__init__(message)
        self.limit = limit


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """Return ``" Did you mean 'x'?"`` for the closest of ``choices``, or ``""`` when none is close."""
    match = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1, cutoff=0.5)
    return f" Did you mean {match[0]!r}?" if match else ""
