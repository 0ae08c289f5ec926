"""Market data: shipped samples, file loaders, validation and storage.

Typical use::

    from alphaloom.data import SAMPLE_INSTRUMENTS, DataValidator, DuckDBBarStore, load_sample

    result = DataValidator().validate(load_sample(), SAMPLE_INSTRUMENTS)
    with DuckDBBarStore(".alphaloom/alphaloom.duckdb") as store:
        store.write_instruments(SAMPLE_INSTRUMENTS)
        store.write_bars(result.clean, source="sample")
        store.quarantine(result.quarantined)
"""

from alphaloom.data.instruments import CALENDARS, SAMPLE_INSTRUMENTS, Calendar, Instrument
from alphaloom.data.loaders import read_bars_file
from alphaloom.data.sample import SAMPLE_SETS, load_sample, sample_path
from alphaloom.data.storage import BarStore, DuckDBBarStore, WriteResult
from alphaloom.data.validator import CHECKS, DataValidator, Issue, ValidationResult, ValidatorConfig

__all__ = [
    "CALENDARS",
    "CHECKS",
    "SAMPLE_INSTRUMENTS",
    "SAMPLE_SETS",
    "BarStore",
    "Calendar",
    "DataValidator",
    "DuckDBBarStore",
    "Instrument",
    "Issue",
    "ValidationResult",
    "ValidatorConfig",
    "WriteResult",
    "load_sample",
    "read_bars_file",
    "sample_path",
]
