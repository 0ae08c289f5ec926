"""Market data: shipped samples, loaders, validation, aggregation, storage, connectors and streaming.

Connectors live in :mod:`alphaloom.data.connectors` and the event bus in :mod:`alphaloom.data.bus`; they are
imported on use so that ``import alphaloom.data`` stays light.

Typical use::

    from alphaloom.data import SAMPLE_INSTRUMENTS, DataValidator, DuckDBBarStore, load_sample

    result = DataValidator().validate(load_sample(), SAMPLE_INSTRUMENTS)
    with DuckDBBarStore(".alphaloom/alphaloom.duckdb") as store:
        store.write_instruments(SAMPLE_INSTRUMENTS)
        store.write_bars(result.clean, source="sample")
        store.quarantine(result.quarantined)
"""

from alphaloom.data.aggregator import AggregatorConfig, DataAggregator, IncrementalBarBuilder
from alphaloom.data.instruments import CALENDARS, SAMPLE_INSTRUMENTS, Calendar, Instrument
from alphaloom.data.loaders import read_bars_file
from alphaloom.data.sample import SAMPLE_SETS, load_sample, sample_path
from alphaloom.data.storage import BarStore, DuckDBBarStore, WriteResult
from alphaloom.data.symbols import canonical, to_venue
from alphaloom.data.validator import (
    CHECKS,
    DataValidator,
    Issue,
    StreamValidator,
    ValidationResult,
    ValidatorConfig,
)

__all__ = [
    "CALENDARS",
    "CHECKS",
    "SAMPLE_INSTRUMENTS",
    "SAMPLE_SETS",
    "AggregatorConfig",
    "BarStore",
    "Calendar",
    "DataAggregator",
    "DataValidator",
    "DuckDBBarStore",
    "IncrementalBarBuilder",
    "Instrument",
    "Issue",
    "StreamValidator",
    "ValidationResult",
    "ValidatorConfig",
    "WriteResult",
    "canonical",
    "load_sample",
    "read_bars_file",
    "sample_path",
    "to_venue",
]
