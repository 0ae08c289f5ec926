"""Where bars, instruments, quarantined rows, derived frames and operational records live.

- :class:`BarStore` is the interface of the market-data stores: :class:`DuckDBBarStore` (embedded, the
  default) and :class:`PostgresBarStore` (production; a TimescaleDB hypertable when the extension is there).
- :class:`RelationalStore` holds accounts, model configs and versions, orders and fills and the hash-chained
  audit log, with numbered migrations: :class:`DuckDBRelationalStore` and :class:`PostgresRelationalStore`.
- :class:`ResultsStore` keeps result runs (feature vectors, predictions, backtest statistics, equity curves
  and trades, live performance) for later comparison: :class:`DuckDBResultsStore` and
  :class:`PostgresResultsStore`.
- :class:`JournaledRelationalStore` wraps a relational store (PostgreSQL) so that writes made while the
  database is down go to a local journal and are replayed, in order and idempotently, when it is back.
- :class:`RedisCache` caches the latest bars, quotes and predictions; :class:`CachedBarSource` serves the
  latest bar from it and falls back to a :class:`BarStore` while Redis is down.

The PostgreSQL and Redis classes are imported on first use, so ``import alphaloom.data`` stays light and
does not load psycopg or redis unless they are needed.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from alphaloom.data.storage.base import QUARANTINE_COLUMNS, SUMMARY_COLUMNS, BarStore, WriteResult
from alphaloom.data.storage.duckdb_store import DuckDBBarStore

if TYPE_CHECKING:
    from alphaloom.data.storage.journal import JournaledRelationalStore, JournalHealth
    from alphaloom.data.storage.postgres_store import PostgresBarStore, PostgresTLS, redact_dsn
    from alphaloom.data.storage.redis_cache import (
        CachedBarSource,
        CachedPrediction,
        CacheHealth,
        CacheUnavailableError,
        RedisCache,
        RedisTLS,
    )
    from alphaloom.data.storage.relational import (
        MIGRATIONS,
        AuditProblem,
        AuditRecord,
        DuckDBRelationalStore,
        Migration,
        ModelStage,
        ModelVersion,
        OrderRecord,
        PostgresRelationalStore,
        RelationalStore,
    )
    from alphaloom.data.storage.results import (
        DuckDBResultsStore,
        PostgresResultsStore,
        ResultKind,
        ResultRun,
        ResultsStore,
    )

__all__ = [
    "MIGRATIONS",
    "QUARANTINE_COLUMNS",
    "SUMMARY_COLUMNS",
    "AuditProblem",
    "AuditRecord",
    "BarStore",
    "CacheHealth",
    "CacheUnavailableError",
    "CachedBarSource",
    "CachedPrediction",
    "DuckDBBarStore",
    "DuckDBRelationalStore",
    "DuckDBResultsStore",
    "JournalHealth",
    "JournaledRelationalStore",
    "Migration",
    "ModelStage",
    "ModelVersion",
    "OrderRecord",
    "PostgresBarStore",
    "PostgresRelationalStore",
    "PostgresResultsStore",
    "PostgresTLS",
    "RedisCache",
    "RedisTLS",
    "RelationalStore",
    "ResultKind",
    "ResultRun",
    "ResultsStore",
    "WriteResult",
    "redact_dsn",
]

_LAZY = {
    "JournalHealth": "journal",
    "JournaledRelationalStore": "journal",
    "PostgresBarStore": "postgres_store",
    "PostgresTLS": "postgres_store",
    "redact_dsn": "postgres_store",
    "CacheHealth": "redis_cache",
    "CacheUnavailableError": "redis_cache",
    "CachedBarSource": "redis_cache",
    "CachedPrediction": "redis_cache",
    "RedisCache": "redis_cache",
    "RedisTLS": "redis_cache",
    "MIGRATIONS": "relational",
    "AuditProblem": "relational",
    "AuditRecord": "relational",
    "DuckDBRelationalStore": "relational",
    "Migration": "relational",
    "ModelStage": "relational",
    "ModelVersion": "relational",
    "OrderRecord": "relational",
    "PostgresRelationalStore": "relational",
    "RelationalStore": "relational",
    "DuckDBResultsStore": "results",
    "PostgresResultsStore": "results",
    "ResultKind": "results",
    "ResultRun": "results",
    "ResultsStore": "results",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
