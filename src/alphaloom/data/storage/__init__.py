"""Where bars, instruments, quarantined rows and derived frames live.

:class:`BarStore` is the interface; :class:`DuckDBBarStore` the embedded implementation.
"""

from alphaloom.data.storage.base import QUARANTINE_COLUMNS, SUMMARY_COLUMNS, BarStore, WriteResult
from alphaloom.data.storage.duckdb_store import DuckDBBarStore

__all__ = ["QUARANTINE_COLUMNS", "SUMMARY_COLUMNS", "BarStore", "DuckDBBarStore", "WriteResult"]
