"""Coercion and checks of the canonical bars frame, shared by the loaders, the validator and the stores."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from alphaloom.core.exceptions import DataFormatError
from alphaloom.core.types import BAR_COLUMNS

PRICE_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close")
NUMERIC_COLUMNS: tuple[str, ...] = (*PRICE_COLUMNS, "volume")
TS_DTYPE = "datetime64[ns, UTC]"


def first_true(mask: np.ndarray | pd.Series) -> int:
    """Position of the first True in ``mask`` (callers know there is one)."""
    return int(np.flatnonzero(np.asarray(mask, dtype=bool))[0])


def at_position(pos: int) -> str:
    return f"position {pos}"


def to_float_column(
    values: pd.Series, *, column: str, where: str, locate: Callable[[int], str] = at_position
) -> pd.Series:
    """Convert a column to float64, naming the first value that is not a number.

    Missing values (NaN, None, empty strings) become NaN; they are a data-quality matter for the validator,
    not a format error. ``locate`` turns a position into the place the message reports ("line 7").
    """
    if pd.api.types.is_bool_dtype(values.dtype):
        raise DataFormatError(f"{where}: column {column!r} holds booleans; expected numbers.")
    if pd.api.types.is_numeric_dtype(values.dtype):
        return values.astype("float64")
    text = values.astype("str").str.strip()
    blank = values.isna().to_numpy() | (text == "").to_numpy()
    parsed = pd.to_numeric(text.mask(blank), errors="coerce").astype("float64")
    bad = parsed.isna().to_numpy() & ~blank
    if bad.any():
        pos = first_true(bad)
        raise DataFormatError(
            f"{where}: column {column!r} has a value that is not a number at {locate(pos)}: "
            f"{values.iloc[pos]!r} ({int(bad.sum())} bad value(s) in all); fix or remove those rows."
        )
    return parsed


def coerce_bars(frame: pd.DataFrame, *, where: str = "bars frame") -> pd.DataFrame:
    """Return ``frame`` as a canonical bars frame: the :data:`BAR_COLUMNS` in order, with canonical dtypes.

    Checks structure only: required columns, an aware ``ts`` column, non-empty symbols and numeric values.
    Bad values (NaN or negative prices, duplicates, unsorted rows) pass through for the validator to judge.
    ``volume`` may be absent; it is then all NaN. The result has a fresh RangeIndex and is not re-sorted.
    """
    if not isinstance(frame, pd.DataFrame):
        raise DataFormatError(f"{where}: expected a pandas DataFrame, got {type(frame).__name__}.")
    missing = [c for c in BAR_COLUMNS if c not in frame.columns and c != "volume"]
    if missing:
        raise DataFormatError(
            f"{where}: missing column(s) {missing}; expected {list(BAR_COLUMNS)}, "
            f"found {list(frame.columns)}."
        )
    ts = frame["ts"]
    if not isinstance(ts.dtype, pd.DatetimeTZDtype):
        if pd.api.types.is_datetime64_dtype(ts.dtype):
            hint = "localise it, e.g. frame['ts'] = frame['ts'].dt.tz_localize('UTC')"
        else:
            hint = "parse it with pd.to_datetime(..., utc=True) or read the file with read_bars_file()"
        raise DataFormatError(
            f"{where}: column 'ts' must hold timezone-aware timestamps, got dtype {ts.dtype}; {hint}."
        )
    if ts.isna().any():
        pos = first_true(ts.isna())
        raise DataFormatError(
            f"{where}: column 'ts' is missing at {at_position(pos)}; every bar needs a timestamp."
        )
    symbol = frame["symbol"]
    bad_symbol = symbol.isna().to_numpy() | (symbol.astype("str").str.strip() == "").to_numpy()
    if bad_symbol.any():
        pos = first_true(bad_symbol)
        raise DataFormatError(
            f"{where}: column 'symbol' is empty at {at_position(pos)}; every bar needs a symbol."
        )
    out = pd.DataFrame(
        {
            "symbol": symbol.astype("str").reset_index(drop=True),
            "ts": ts.dt.tz_convert("UTC").astype(TS_DTYPE).reset_index(drop=True),
        }
    )
    for col in NUMERIC_COLUMNS:
        if col in frame.columns:
            out[col] = to_float_column(frame[col], column=col, where=where).to_numpy()
        else:
            out[col] = np.nan
    return out


def sort_bars(frame: pd.DataFrame) -> pd.DataFrame:
    """Stable sort by (symbol, ts) with a fresh index."""
    return frame.sort_values(["symbol", "ts"], kind="stable").reset_index(drop=True)


def duplicate_mask(frame: pd.DataFrame) -> np.ndarray:
    """True for every repeat of a (symbol, ts) pair after its first occurrence."""
    return frame.duplicated(["symbol", "ts"], keep="first").to_numpy()
