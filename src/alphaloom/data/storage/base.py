"""The storage interface every backend implements (DuckDB now; PostgreSQL/TimescaleDB later).

:class:`BarStore` owns the public methods: they check arguments and frames, normalise times to UTC and turn
empty selections into errors that say what the store does hold. A backend fills the small protected hooks
(``_write_bars``, ``_read_bars``, ...), which receive arguments that are already checked, so no backend can
skip the checks or word its errors differently.

What a store holds:

- **bars**, unique on (symbol, timeframe, ts); writes are idempotent upserts.
- **instruments**, by symbol.
- **quarantine**: rows the validator refused, with the check and the reason, unique on
  (symbol, timeframe, ts, check).
- **derived frames** (features, predictions, results): named tables written by later pipeline stages.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import NamedTuple, Self

import numpy as np
import pandas as pd

from alphaloom.core.exceptions import (
    ConfigError,
    DataFormatError,
    DataNotFoundError,
    EmptyRangeError,
    UnknownSymbolError,
    did_you_mean,
)
from alphaloom.core.timeutil import ensure_utc
from alphaloom.core.types import BAR_COLUMNS
from alphaloom.data._frames import (
    PRICE_COLUMNS,
    TS_DTYPE,
    at_position,
    coerce_bars,
    duplicate_mask,
    first_true,
    sort_bars,
)
from alphaloom.data.instruments import Instrument

__all__ = [
    "QUARANTINE_COLUMNS",
    "SUMMARY_COLUMNS",
    "BarStore",
    "WriteResult",
    "check_frame_name",
]

#: Columns of :meth:`BarStore.read_quarantine`.
QUARANTINE_COLUMNS: tuple[str, ...] = (
    "symbol",
    "timeframe",
    "ts",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "check",
    "reason",
)

#: Columns of :meth:`BarStore.summary`.
SUMMARY_COLUMNS: tuple[str, ...] = ("symbol", "timeframe", "n_bars", "first_ts", "last_ts", "asset_class")

_FRAME_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
_TIMEFRAME = re.compile(r"^[1-9][0-9]*[a-zA-Z]{1,3}$")


class WriteResult(NamedTuple):
    """What :meth:`BarStore.write_bars` did, in rows."""

    inserted: int
    updated: int
    unchanged: int

    @property
    def total(self) -> int:
        return self.inserted + self.updated + self.unchanged


def check_frame_name(name: str) -> str:
    """Return ``name`` if it is a valid derived-frame name, else raise :class:`ConfigError`."""
    if not isinstance(name, str) or not _FRAME_NAME.match(name):
        raise ConfigError(
            f"frame name {name!r} is not valid; use 1-63 lowercase letters, digits and underscores, "
            f"starting with a letter (e.g. 'features_daily')."
        )
    return name


def _check_timeframe(timeframe: str) -> str:
    if not isinstance(timeframe, str) or not _TIMEFRAME.match(timeframe):
        raise ConfigError(
            f"timeframe {timeframe!r} is not valid; use a count and a unit such as '1d', '1h', '5m'."
        )
    return timeframe


def _symbol_list(symbols: str | Iterable[str] | None) -> list[str] | None:
    if symbols is None:
        return None
    chosen = [symbols] if isinstance(symbols, str) else list(dict.fromkeys(symbols))
    if not chosen:
        raise EmptyRangeError("no symbols requested; pass symbols=None for all of them.")
    bad = [s for s in chosen if not isinstance(s, str) or not s]
    if bad:
        raise ConfigError(f"symbols must be non-empty strings, got {bad[0]!r}.")
    return chosen


def _fmt_ts(ts: datetime | pd.Timestamp | None) -> str:
    if ts is None or pd.isna(ts):
        return "open"
    stamp = pd.Timestamp(ts)
    return stamp.strftime("%Y-%m-%d") if stamp == stamp.normalize() else stamp.isoformat()


def _empty_bars() -> pd.DataFrame:
    frame = pd.DataFrame({c: pd.Series(dtype="float64") for c in BAR_COLUMNS})
    frame["symbol"] = frame["symbol"].astype("str")
    frame["ts"] = frame["ts"].astype(TS_DTYPE)
    return frame


class BarStore(ABC):
    """Abstract store of bars, instruments, quarantined rows and derived frames.

    Use it as a context manager, or call :meth:`close`. Timestamps go in and come out as timezone-aware UTC
    (``datetime64[ns, UTC]`` in frames); naive datetimes are refused.

    Subclasses implement the protected hooks below; see :class:`~alphaloom.data.storage.DuckDBBarStore`.
    """

    # ------------------------------------------------------------------ lifecycle

    @property
    @abstractmethod
    def location(self) -> str:
        """Where the store lives (a path or a URL without credentials), for messages."""

    @abstractmethod
    def close(self) -> None:
        """Release the connection. Safe to call twice; any later use raises :class:`StorageError`."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.location!r})"

    # ------------------------------------------------------------------ bars

    def write_bars(self, bars: pd.DataFrame, *, timeframe: str = "1d", source: str = "") -> WriteResult:
        """Insert or update bars; idempotent.

        Parameters
        ----------
        bars
            A bars frame (``symbol, ts, open, high, low, close, volume``), ``ts`` timezone-aware. Prices must
            be finite and positive, volume non-negative or NaN, and (symbol, ts) unique: run
            :class:`~alphaloom.data.validator.DataValidator` first and write its ``clean`` frame.
        timeframe
            Bar length such as ``"1d"`` or ``"1h"``; part of the key, so one symbol can hold several.
        source
            Free text recorded with the rows (e.g. ``"sample:us_equities_daily"``).

        Returns
        -------
        WriteResult
            Rows ``inserted`` (new keys), ``updated`` (existing keys whose values changed) and ``unchanged``
            (existing keys with identical values). Writing the same frame twice gives all-unchanged.

        Raises
        ------
        DataFormatError
            The frame is malformed or holds values a clean bar cannot have.
        StorageError
            The backend failed; nothing was written.
        """
        timeframe = _check_timeframe(timeframe)
        frame = coerce_bars(bars, where="write_bars()")
        _check_storable(frame)
        if frame.empty:
            return WriteResult(0, 0, 0)
        return self._write_bars(sort_bars(frame), timeframe, str(source))

    def read_bars(
        self,
        symbols: str | Iterable[str] | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        *,
        timeframe: str = "1d",
    ) -> pd.DataFrame:
        """Read bars of some or all symbols in ``[start, end)``.

        Parameters
        ----------
        symbols
            One symbol, several, or ``None`` for every symbol of ``timeframe``.
        start, end
            Timezone-aware bounds; ``start`` is inclusive and ``end`` exclusive. ``None`` leaves that side
            open. Naive datetimes are refused.
        timeframe
            Which bars to read (``"1d"``).

        Returns
        -------
        pandas.DataFrame
            A bars frame sorted by (symbol, ts), ``ts`` as ``datetime64[ns, UTC]``.

        Raises
        ------
        UnknownSymbolError
            A requested symbol has no bars of ``timeframe`` (the message suggests the closest).
        EmptyRangeError
            ``start >= end``, or the range holds no bars; the message gives the range the store holds.
        DataFormatError
            ``start`` or ``end`` is naive.
        """
        timeframe = _check_timeframe(timeframe)
        wanted = _symbol_list(symbols)
        start_utc = None if start is None else ensure_utc(start, name="start")
        end_utc = None if end is None else ensure_utc(end, name="end")
        if start_utc is not None and end_utc is not None and start_utc >= end_utc:
            raise EmptyRangeError(
                f"read_bars(): start {_fmt_ts(start_utc)} is not before end {_fmt_ts(end_utc)}; "
                f"the range [start, end) is empty."
            )
        ranges = self._bar_ranges(timeframe)
        held = ranges["symbol"].tolist()
        if not held:
            raise EmptyRangeError(
                f"the store at {self.location} holds no {timeframe} bars; write some first "
                f"(e.g. `alphaloom data ingest`)."
            )
        if wanted is None:
            wanted = held
        else:
            self._require_symbols(wanted, held, f"{timeframe} bars", timeframe)
        frame = self._read_bars(wanted, start_utc, end_utc, timeframe)
        if frame.empty:
            sel = ranges[ranges["symbol"].isin(wanted)]
            holds = ", ".join(
                f"{r.symbol} {_fmt_ts(r.first_ts)}..{_fmt_ts(r.last_ts)}" for r in sel.itertuples(index=False)
            )
            names = ", ".join(wanted[:10]) + (" ..." if len(wanted) > 10 else "")
            raise EmptyRangeError(
                f"no {timeframe} bars for {names} in [{_fmt_ts(start_utc)}, {_fmt_ts(end_utc)}); "
                f"the store holds {holds}."
            )
        return _canonical_bars(frame)

    def symbols(self, timeframe: str | None = None) -> list[str]:
        """Sorted symbols that have bars (of ``timeframe``, or of any timeframe when ``None``)."""
        ranges = self._bar_ranges(None if timeframe is None else _check_timeframe(timeframe))
        return sorted(set(ranges["symbol"]))

    def summary(self) -> pd.DataFrame:
        """One row per (symbol, timeframe): ``n_bars``, ``first_ts``, ``last_ts`` and ``asset_class``.

        ``asset_class`` is the stored instrument's asset class, or missing when no instrument is stored.
        """
        ranges = self._bar_ranges(None)
        known = self._read_instruments()
        out = ranges.copy()
        out["asset_class"] = pd.Series(
            [known[s].asset_class.value if s in known else None for s in out["symbol"]],
            index=out.index,
            dtype="str",
        )
        return out.loc[:, list(SUMMARY_COLUMNS)].reset_index(drop=True)

    # ------------------------------------------------------------------ instruments

    def write_instruments(self, instruments: Iterable[Instrument] | Mapping[str, Instrument]) -> int:
        """Insert or replace instruments by symbol; returns how many were written."""
        items = list(instruments.values()) if isinstance(instruments, Mapping) else list(instruments)
        bad = [i for i in items if not isinstance(i, Instrument)]
        if bad:
            raise DataFormatError(
                f"write_instruments() takes Instrument objects, got {type(bad[0]).__name__} ({bad[0]!r})."
            )
        unique = list({i.symbol: i for i in items}.values())
        if not unique:
            return 0
        self._write_instruments(unique)
        return len(unique)

    def instruments(self) -> dict[str, Instrument]:
        """Stored instruments by symbol, sorted by symbol."""
        return dict(sorted(self._read_instruments().items()))

    # ------------------------------------------------------------------ quarantine

    def quarantine(self, rows: pd.DataFrame, *, timeframe: str = "1d") -> int:
        """Record rows the validator refused; idempotent on (symbol, timeframe, ts, check).

        Parameters
        ----------
        rows
            Bars-frame rows plus ``check`` (the check's name) and ``reason`` (text) columns, such as
            :attr:`ValidationResult.quarantined <alphaloom.data.validator.ValidationResult.quarantined>`.
            Prices may be NaN or invalid; that is why they are here. A ``timeframe`` column, when present,
            overrides the ``timeframe`` argument row by row.
        timeframe
            Timeframe of rows that carry none.

        Returns
        -------
        int
            Rows newly recorded (rows already quarantined under the same key are left as they are).
        """
        timeframe = _check_timeframe(timeframe)
        missing = [c for c in ("check", "reason") if c not in getattr(rows, "columns", ())]
        if missing:
            raise DataFormatError(
                f"quarantine(): missing column(s) {missing}; pass the validator's `quarantined` frame "
                f"(bars columns plus 'check' and 'reason')."
            )
        frame = coerce_bars(rows, where="quarantine()")
        if "timeframe" in rows.columns:
            tf = rows["timeframe"].fillna(timeframe).astype("str").reset_index(drop=True)
            for value in tf.unique():
                _check_timeframe(value)
        else:
            tf = pd.Series(timeframe, index=frame.index, dtype="str")
        frame.insert(1, "timeframe", tf)
        check = rows["check"].astype("str").reset_index(drop=True)
        blank = check.isna().to_numpy() | (check.str.strip() == "").to_numpy()
        if blank.any():
            raise DataFormatError(
                f"quarantine(): column 'check' is empty at {at_position(first_true(blank))}; "
                f"every quarantined row names the check it failed."
            )
        frame["check"] = check
        frame["reason"] = rows["reason"].fillna("").astype("str").reset_index(drop=True)
        frame = frame.drop_duplicates(["symbol", "timeframe", "ts", "check"], keep="first")
        if frame.empty:
            return 0
        return self._write_quarantine(frame.reset_index(drop=True))

    def read_quarantine(
        self, symbols: str | Iterable[str] | None = None, *, timeframe: str | None = None
    ) -> pd.DataFrame:
        """Quarantined rows (columns :data:`QUARANTINE_COLUMNS`), sorted by symbol, timeframe, ts, check."""
        tf = None if timeframe is None else _check_timeframe(timeframe)
        frame = self._read_quarantine(_symbol_list(symbols), tf)
        if frame.empty:
            frame = pd.DataFrame({c: pd.Series(dtype="float64") for c in QUARANTINE_COLUMNS})
            for col in ("symbol", "timeframe", "check", "reason"):
                frame[col] = frame[col].astype("str")
        frame["ts"] = pd.to_datetime(frame["ts"], utc=True).astype(TS_DTYPE)
        return frame.loc[:, list(QUARANTINE_COLUMNS)].reset_index(drop=True)

    def clear_quarantine(
        self, symbols: str | Iterable[str] | None = None, *, timeframe: str | None = None
    ) -> int:
        """Delete quarantined rows (of ``symbols``, or all); returns how many were deleted."""
        tf = None if timeframe is None else _check_timeframe(timeframe)
        return self._clear_quarantine(_symbol_list(symbols), tf)

    # ------------------------------------------------------------------ derived frames

    def write_frame(self, name: str, df: pd.DataFrame, *, replace_symbols: bool = True) -> int:
        """Store a derived frame (features, predictions, results) as table ``name``.

        Parameters
        ----------
        name
            Lowercase identifier (``"features_daily"``).
        df
            Any frame with string column names. A named index is stored as column(s); an unnamed one is
            dropped. Datetime columns must be timezone-aware (they are stored in UTC).
        replace_symbols
            When ``df`` has a ``symbol`` column, replace only the rows of the symbols present in ``df`` and
            keep the others. When ``False``, or when ``df`` has no ``symbol`` column, replace the whole table.

        Returns
        -------
        int
            Rows written.
        """
        name = check_frame_name(name)
        frame = _prepare_frame(df, name)
        partial = replace_symbols and "symbol" in frame.columns and self._has_frame(name)
        self._write_frame(name, frame, partial)
        return len(frame)

    def read_frame(self, name: str, symbols: str | Iterable[str] | None = None) -> pd.DataFrame:
        """Read a derived frame, sorted by ``symbol`` then ``ts`` where those columns exist, else as written.

        Raises
        ------
        DataNotFoundError
            No such table; run the stage that writes it.
        UnknownSymbolError
            A requested symbol has no rows in the table.
        """
        name = check_frame_name(name)
        if not self._has_frame(name):
            known = self._frame_names()
            raise DataNotFoundError(
                f"no table {name!r} in the store at {self.location}; run the stage that writes it."
                f"{did_you_mean(name, known)}"
            )
        wanted = _symbol_list(symbols)
        if wanted is not None:
            held = self._frame_symbols(name)
            if held is None:
                raise DataFormatError(f"table {name!r} has no 'symbol' column; read it with symbols=None.")
            self._require_symbols(wanted, held, f"table {name!r}")
        frame = self._read_frame(name, wanted)
        for col in frame.columns:
            if isinstance(frame[col].dtype, pd.DatetimeTZDtype):
                frame[col] = frame[col].dt.tz_convert("UTC").astype(TS_DTYPE)
        return frame.reset_index(drop=True)

    def has_frame(self, name: str) -> bool:
        """Whether a derived table ``name`` exists."""
        return self._has_frame(check_frame_name(name))

    def frame_names(self) -> list[str]:
        """Names of the derived tables, sorted."""
        return sorted(self._frame_names())

    # ------------------------------------------------------------------ shared helpers

    def _require_symbols(
        self, wanted: Sequence[str], held: Sequence[str], what: str, timeframe: str | None = None
    ) -> None:
        held_set = set(held)
        unknown = [s for s in wanted if s not in held_set]
        if not unknown:
            return
        sym = unknown[0]
        others = self._timeframes_of(sym) if timeframe is not None else []
        elsewhere = f" It has bars of timeframe {', '.join(others)}." if others else ""
        shown = ", ".join(sorted(held)[:30]) + (" ..." if len(held) > 30 else "")
        raise UnknownSymbolError(
            f"symbol {sym!r} is not in the store at {self.location} ({what}).{did_you_mean(sym, held)}"
            f"{elsewhere} Symbols held: {shown or 'none'}."
        )

    def _timeframes_of(self, symbol: str) -> list[str]:
        ranges = self._bar_ranges(None)
        return sorted(ranges.loc[ranges["symbol"] == symbol, "timeframe"].unique())

    # ------------------------------------------------------------------ hooks for backends

    @abstractmethod
    def _write_bars(self, bars: pd.DataFrame, timeframe: str, source: str) -> WriteResult:
        """Upsert a checked, sorted, non-empty bars frame with unique (symbol, ts) in one transaction."""

    @abstractmethod
    def _read_bars(
        self, symbols: Sequence[str], start: datetime | None, end: datetime | None, timeframe: str
    ) -> pd.DataFrame:
        """Bars of ``symbols`` with ``start <= ts < end`` (UTC; None = open), sorted; may be empty."""

    @abstractmethod
    def _bar_ranges(self, timeframe: str | None) -> pd.DataFrame:
        """Columns ``symbol, timeframe, n_bars, first_ts, last_ts`` (UTC), sorted by symbol, timeframe."""

    @abstractmethod
    def _write_instruments(self, instruments: Sequence[Instrument]) -> None:
        """Insert or replace these instruments (unique symbols)."""

    @abstractmethod
    def _read_instruments(self) -> dict[str, Instrument]:
        """All stored instruments."""

    @abstractmethod
    def _write_quarantine(self, rows: pd.DataFrame) -> int:
        """Insert rows whose key (symbol, timeframe, ts, check) is new; return how many were inserted."""

    @abstractmethod
    def _read_quarantine(self, symbols: Sequence[str] | None, timeframe: str | None) -> pd.DataFrame:
        """Quarantined rows, sorted by symbol, timeframe, ts, check."""

    @abstractmethod
    def _clear_quarantine(self, symbols: Sequence[str] | None, timeframe: str | None) -> int:
        """Delete quarantined rows; return how many."""

    @abstractmethod
    def _write_frame(self, name: str, frame: pd.DataFrame, partial: bool) -> None:
        """Write a prepared frame: replace the rows of its symbols (``partial``) or the whole table."""

    @abstractmethod
    def _read_frame(self, name: str, symbols: Sequence[str] | None) -> pd.DataFrame:
        """A derived table, sorted by symbol, ts (where present), then write order."""

    @abstractmethod
    def _has_frame(self, name: str) -> bool:
        """Whether the derived table exists."""

    @abstractmethod
    def _frame_names(self) -> list[str]:
        """Names of all derived tables."""

    @abstractmethod
    def _frame_symbols(self, name: str) -> list[str] | None:
        """Distinct symbols of a derived table, or None when it has no ``symbol`` column."""


def _check_storable(frame: pd.DataFrame) -> None:
    """Values a stored (clean) bar must satisfy; the validator quarantines rows that fail these."""
    prices = frame.loc[:, list(PRICE_COLUMNS)].to_numpy()
    bad = ~(np.isfinite(prices) & (prices > 0)).all(axis=1)
    if bad.any():
        pos = first_true(bad)
        row = frame.iloc[pos]
        raise DataFormatError(
            f"write_bars(): {int(bad.sum())} row(s) have missing, infinite or non-positive prices, first "
            f"{row['symbol']} {_fmt_ts(row['ts'])} (open={row['open']}, high={row['high']}, "
            f"low={row['low']}, close={row['close']}); validate with DataValidator and write its clean frame."
        )
    volume = frame["volume"].to_numpy()
    bad = (volume < 0) | np.isinf(volume)
    if bad.any():
        row = frame.iloc[first_true(bad)]
        raise DataFormatError(
            f"write_bars(): {int(bad.sum())} row(s) have negative or infinite volume, first {row['symbol']} "
            f"{_fmt_ts(row['ts'])} (volume={row['volume']}); validate with DataValidator first."
        )
    dup = duplicate_mask(frame)
    if dup.any():
        row = frame.iloc[first_true(dup)]
        raise DataFormatError(
            f"write_bars(): {int(dup.sum())} duplicate (symbol, ts) row(s), first {row['symbol']} "
            f"{_fmt_ts(row['ts'])}; an upsert needs one row per key. DataValidator keeps the first copy."
        )


def _canonical_bars(frame: pd.DataFrame) -> pd.DataFrame:
    if frame.empty:
        return _empty_bars()
    out = frame.loc[:, list(BAR_COLUMNS)].reset_index(drop=True)
    out["symbol"] = out["symbol"].astype("str")
    out["ts"] = pd.to_datetime(out["ts"], utc=True).astype(TS_DTYPE)
    for col in ("open", "high", "low", "close", "volume"):
        out[col] = out[col].astype("float64")
    return out


def _prepare_frame(df: pd.DataFrame, name: str) -> pd.DataFrame:
    if not isinstance(df, pd.DataFrame):
        raise DataFormatError(f"write_frame({name!r}): expected a pandas DataFrame, got {type(df).__name__}.")
    frame = df.reset_index() if any(n is not None for n in df.index.names) else df.reset_index(drop=True)
    names = [str(c) for c in frame.columns]
    if any(not isinstance(c, str) for c in frame.columns):
        raise DataFormatError(
            f"write_frame({name!r}): column names must be strings, got {list(frame.columns)[:10]}; "
            f"flatten or rename them first."
        )
    lowered = [c.lower() for c in names]
    clash = sorted({c for c in lowered if lowered.count(c) > 1})
    if clash:
        raise DataFormatError(
            f"write_frame({name!r}): column names must be unique ignoring case, {clash} repeat; rename them."
        )
    reserved = [c for c in names if c.startswith("__al_")]
    if reserved:
        raise DataFormatError(
            f"write_frame({name!r}): column names starting with '__al_' are reserved: {reserved}."
        )
    if frame.shape[1] == 0:
        raise DataFormatError(f"write_frame({name!r}): the frame has no columns.")
    for col in frame.columns:
        dtype = frame[col].dtype
        if isinstance(dtype, pd.DatetimeTZDtype):
            frame[col] = frame[col].dt.tz_convert("UTC")
        elif pd.api.types.is_datetime64_dtype(dtype):
            raise DataFormatError(
                f"write_frame({name!r}): column {col!r} holds naive timestamps; localise them to UTC first "
                f"(frame[{col!r}] = frame[{col!r}].dt.tz_localize('UTC'))."
            )
    if "symbol" in frame.columns and frame["symbol"].isna().any():
        pos = first_true(frame["symbol"].isna())
        raise DataFormatError(f"write_frame({name!r}): column 'symbol' is empty at {at_position(pos)}.")
    return frame
