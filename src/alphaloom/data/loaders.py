"""Read bar files (CSV, gzip CSV, Parquet) into the canonical bars frame.

Every problem with a file surfaces as one readable :mod:`alphaloom.core.exceptions` error that names the
file, the column and, where it applies, the first bad line and value; pandas, pyarrow and gzip errors never
reach the caller.
"""

from __future__ import annotations

import csv
import gzip
import re
import warnings
import zlib
import zoneinfo
from collections.abc import Callable
from pathlib import Path

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
from alphaloom.data._frames import (
    NUMERIC_COLUMNS,
    TS_DTYPE,
    coerce_bars,
    first_true,
    sort_bars,
    to_float_column,
)

__all__ = ["SUPPORTED_SUFFIXES", "TIMESTAMP_ALIASES", "read_bars_file"]

#: File endings :func:`read_bars_file` understands.
SUPPORTED_SUFFIXES: tuple[str, ...] = (".csv", ".csv.gz", ".parquet")

#: Accepted names of the timestamp column (case-insensitive), in order of preference.
TIMESTAMP_ALIASES: tuple[str, ...] = ("timestamp", "ts", "date", "datetime")

# A clock time followed by a UTC offset or "Z": "2020-01-02T14:30:00+00:00", "2020-01-02 09:30-0500".
_HAS_OFFSET = re.compile(r"[T ]\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?\s*(?:[zZ]|[+-]\d{2}(?::?\d{2})?)$")


def read_bars_file(
    path: str | Path, *, symbol: str | None = None, assume_tz: str | None = "UTC"
) -> pd.DataFrame:
    """Read one bar file into a bars frame.

    Parameters
    ----------
    path
        A ``.csv``, ``.csv.gz`` or ``.parquet`` file with a timestamp column (``timestamp``, ``ts``, ``date``
        or ``datetime``, any case) and ``open``, ``high``, ``low``, ``close``; ``volume`` and ``symbol`` are
        optional. Other columns are ignored.
    symbol
        For a file without a ``symbol`` column, the symbol of its bars. For a file with one, keep only this
        symbol's rows.
    assume_tz
        IANA zone of timestamps written without an offset (``"UTC"``, ``"America/New_York"``). Timestamps
        with an offset are converted to UTC whatever this says. ``None`` refuses offset-less timestamps.

    Returns
    -------
    pandas.DataFrame
        Columns ``symbol, ts, open, high, low, close, volume``: ``ts`` is ``datetime64[ns, UTC]``, prices and
        volume float64 (volume NaN where the file has none). Sorted by (symbol, ts). Values are not judged
        here (NaN or negative prices and duplicates pass through); run
        :class:`~alphaloom.data.validator.DataValidator` for that.

    Raises
    ------
    DataNotFoundError
        The file does not exist.
    DataFormatError
        Unsupported file type, unreadable file, missing columns, or a value that is not a number or a
        timestamp (the message names the column, the first bad line and its value).
    EmptyRangeError
        The file has a header but no rows.
    UnknownSymbolError
        ``symbol`` was given and the file's ``symbol`` column never has it.
    ConfigError
        ``assume_tz`` is not a time zone.
    """
    path = Path(path)
    if not path.is_file():
        what = "is a directory, not a file" if path.is_dir() else "does not exist"
        raise DataNotFoundError(f"bar file {path} {what}; check the path.")
    _check_zone(assume_tz)
    name = path.name.lower()
    if name.endswith(".parquet"):
        raw, locate = _read_parquet(path)
    elif name.endswith((".csv", ".csv.gz")):
        raw, locate = _read_csv(path)
    else:
        raise DataFormatError(
            f"bar file {path} has an unsupported type; expected one of {', '.join(SUPPORTED_SUFFIXES)}."
        )
    where = f"bar file {path}"
    columns = _resolve_columns(raw, where)
    if raw.empty:
        raise EmptyRangeError(f"{where} has a header but no rows.")

    if "symbol" in columns:
        symbols = raw[columns["symbol"]]
        if symbol is not None:
            keep = (symbols.astype("str").str.strip() == symbol).to_numpy()
            if not keep.any():
                present = sorted(symbols.dropna().astype("str").unique())
                raise UnknownSymbolError(
                    f"{where} has no rows for symbol {symbol!r}.{did_you_mean(symbol, present)} "
                    f"Symbols in the file: {', '.join(present[:20])}{' ...' if len(present) > 20 else ''}."
                )
            raw = raw.loc[keep]
            symbols = raw[columns["symbol"]]
        blank = symbols.isna().to_numpy() | (symbols.astype("str").str.strip() == "").to_numpy()
        if blank.any():
            raise DataFormatError(
                f"{where}: column {columns['symbol']!r} is empty at {locate(raw.index[first_true(blank)])}; "
                f"every row needs a symbol."
            )
        symbol_values = symbols.astype("str").str.strip()
    elif symbol is not None:
        symbol_values = pd.Series(symbol, index=raw.index, dtype="str")
    else:
        raise DataFormatError(
            f"{where} has no 'symbol' column; pass symbol='...' for a single-instrument file "
            f"(found columns {list(raw.columns)})."
        )

    frame = pd.DataFrame(
        {
            "symbol": symbol_values,
            "ts": _parse_timestamps(raw[columns["ts"]], columns["ts"], where, locate, assume_tz),
        },
        index=raw.index,
    )
    for col in NUMERIC_COLUMNS:
        if col in columns:
            values = raw[columns[col]]
            frame[col] = to_float_column(
                values,
                column=columns[col],
                where=where,
                locate=lambda pos, index=values.index: locate(index[pos]),
            )
        else:
            frame[col] = np.nan
    return sort_bars(coerce_bars(frame, where=where))


def _check_zone(assume_tz: str | None) -> None:
    if assume_tz is None:
        return
    try:
        if not isinstance(assume_tz, str):
            raise TypeError
        zoneinfo.ZoneInfo(assume_tz)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, TypeError) as exc:
        raise ConfigError(
            f"assume_tz {assume_tz!r} is not a time zone; "
            f"use an IANA name such as 'UTC' or 'America/New_York'."
        ) from exc


def _read_csv(path: Path) -> tuple[pd.DataFrame, Callable[[int], str]]:
    where = f"bar file {path}"
    try:
        with warnings.catch_warnings():
            # pandas drops the extra fields of a row longer than the header with only a warning (or, when
            # the first rows are all longer, silently turns the first column into the index): refuse both.
            warnings.simplefilter("error", pd.errors.ParserWarning)
            header = pd.read_csv(path, nrows=0)
            # Symbols stay text ("0700" must not become 700); everything else is inferred and checked later.
            text_columns = {c: "str" for c in header.columns if str(c).strip().lower() == "symbol"}
            frame = pd.read_csv(path, dtype=text_columns, index_col=False)
    except pd.errors.ParserWarning as exc:
        n_columns = len(header.columns)
        raise DataFormatError(
            f"{where} has a row with more fields than its {n_columns} header columns at "
            f"{_first_long_row(path, n_columns)}; quote values that contain commas or fix the row (its extra "
            f"values would otherwise be lost)."
        ) from exc
    except pd.errors.EmptyDataError as exc:
        raise DataFormatError(f"{where} is empty: it has no header line.") from exc
    except UnicodeDecodeError as exc:
        raise DataFormatError(f"{where} is not UTF-8 text ({exc.reason} at byte {exc.start}).") from exc
    except pd.errors.ParserError as exc:
        raise DataFormatError(f"{where} is not a well-formed CSV file: {_first_line(exc)}.") from exc
    except (OSError, EOFError, zlib.error) as exc:
        raise DataFormatError(
            f"{where} could not be read ({_first_line(exc)}); is it a valid gzip file?"
        ) from exc
    # Positions count data rows from 0; the header is line 1 of the file.
    return frame, lambda label: f"line {int(label) + 2}"


def _first_long_row(path: Path, n_columns: int) -> str:
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8", newline="") as fh:
            for number, row in enumerate(csv.reader(fh), start=1):
                if len(row) > n_columns:
                    return f"line {number}"
    except (csv.Error, OSError, EOFError, UnicodeDecodeError, zlib.error):
        pass
    return "some line"


def _read_parquet(path: Path) -> tuple[pd.DataFrame, Callable[[int], str]]:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:  # pragma: no cover - pyarrow is a hard dependency
        raise DataFormatError(f"reading {path} needs pyarrow: pip install pyarrow.") from exc
    try:
        table = pq.read_table(path)
        # A damaged file can decode into string columns holding invalid UTF-8, which would only fail
        # later, deep inside pandas; a full validation catches it here.
        table.validate(full=True)
        frame = table.to_pandas()
    except (pa.ArrowException, OSError, ValueError, TypeError, KeyError, IndexError) as exc:
        raise DataFormatError(f"bar file {path} is not a readable Parquet file: {_first_line(exc)}.") from exc
    # A named index (e.g. a DatetimeIndex called "ts") is data; a default one is not.
    if any(n is not None for n in frame.index.names):
        frame = frame.reset_index()
    frame = frame.reset_index(drop=True)
    return frame, lambda label: f"row {int(label) + 1}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0].rstrip(".") if text else type(exc).__name__


def _resolve_columns(raw: pd.DataFrame, where: str) -> dict[str, str]:
    """Map canonical names (``ts``, ``open``, ..., ``symbol``) to the file's own column names."""
    by_lower: dict[str, str] = {}
    for col in raw.columns:
        key = str(col).strip().lower()
        if key in by_lower:
            raise DataFormatError(
                f"{where} has the column {key!r} twice ({by_lower[key]!r} and {col!r}); rename one."
            )
        by_lower[key] = str(col)
    columns = {name: by_lower[name] for name in (*NUMERIC_COLUMNS, "symbol") if name in by_lower}
    ts_name = next((by_lower[a] for a in TIMESTAMP_ALIASES if a in by_lower), None)
    missing = [c for c in ("open", "high", "low", "close") if c not in columns]
    if ts_name is None:
        missing.insert(0, "timestamp (or ts/date/datetime)")
    if missing:
        raise DataFormatError(
            f"{where} is missing column(s) {', '.join(missing)}; found {list(map(str, raw.columns))}."
        )
    columns["ts"] = ts_name
    return columns


def _parse_timestamps(
    values: pd.Series, column: str, where: str, locate: Callable[[int], str], assume_tz: str | None
) -> pd.Series:
    def at(pos: int) -> str:
        return locate(values.index[pos])

    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        missing = values.isna().to_numpy()
        if missing.any():
            raise DataFormatError(f"{where}: column {column!r} is missing at {at(first_true(missing))}.")
        if isinstance(values.dtype, pd.DatetimeTZDtype):
            return values.dt.tz_convert("UTC").astype(TS_DTYPE)
        return _localise(values, column, where, at, assume_tz, np.arange(len(values)))

    text = values.astype("str").str.strip()
    missing = values.isna().to_numpy() | (text == "").to_numpy()
    if missing.any():
        raise DataFormatError(
            f"{where}: column {column!r} is empty at {at(first_true(missing))}; every bar needs a timestamp."
        )
    has_offset = text.str.contains(_HAS_OFFSET).to_numpy()
    parts = []
    if has_offset.any():
        parts.append(pd.to_datetime(text[has_offset], format="ISO8601", utc=True, errors="coerce"))
    naive_pos = np.flatnonzero(~has_offset)
    if naive_pos.size:
        naive = pd.to_datetime(text.iloc[naive_pos], format="ISO8601", errors="coerce")
        bad = naive.isna().to_numpy()
        if bad.any():
            pos = naive_pos[first_true(bad)]
            raise _bad_timestamp(where, column, at(pos), values.iloc[pos], int(bad.sum()))
        parts.append(_localise(naive, column, where, at, assume_tz, naive_pos))
    # The index is unique (file rows), so the parts recombine in file order.
    out = pd.concat([p.astype(TS_DTYPE) for p in parts]).reindex(values.index) if len(parts) > 1 else parts[0]
    bad = out.isna().to_numpy()
    if bad.any():
        pos = first_true(bad)
        raise _bad_timestamp(where, column, at(pos), values.iloc[pos], int(bad.sum()))
    return out.astype(TS_DTYPE)


def _localise(
    naive: pd.Series,
    column: str,
    where: str,
    at: Callable[[int], str],
    assume_tz: str | None,
    positions: np.ndarray,
) -> pd.Series:
    if assume_tz is None:
        raise DataFormatError(
            f"{where}: column {column!r} has a timestamp without a UTC offset at {at(int(positions[0]))} "
            f"and assume_tz=None; pass assume_tz='UTC' (or the file's zone) or write offsets in the file."
        )
    try:
        return naive.dt.tz_localize(assume_tz).dt.tz_convert("UTC").astype(TS_DTYPE)
    except ValueError as exc:  # nonexistent or ambiguous local times around a DST change
        raise DataFormatError(
            f"{where}: column {column!r} has a local time that does not exist or is ambiguous in {assume_tz} "
            f"({_first_line(exc)}); write the file in UTC or with offsets."
        ) from exc


def _bad_timestamp(where: str, column: str, location: str, value: object, n_bad: int) -> DataFormatError:
    return DataFormatError(
        f"{where}: column {column!r} has a value that is not an ISO-8601 timestamp at {location}: {value!r} "
        f"({n_bad} bad value(s) in all); expected e.g. 2020-01-31 or 2020-01-31T14:30:00+00:00."
    )
