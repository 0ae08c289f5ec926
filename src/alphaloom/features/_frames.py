"""Checking a single-symbol bars frame and turning it into clean float64 arrays."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd

from alphaloom.core.exceptions import DataFormatError, EmptyRangeError, did_you_mean

PRICE_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close")
REQUIRED_COLUMNS: tuple[str, ...] = ("ts", *PRICE_COLUMNS, "volume")


class BarArrays(NamedTuple):
    """One symbol's bars as arrays of shape ``(n,)``; ``volume`` has missing values read as 0."""

    symbol: str | None
    ts: pd.DatetimeIndex
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray


def _label(symbol: str | None) -> str:
    return f" for {symbol!r}" if symbol else ""


def utc_ts(values: pd.Series | pd.Index, *, symbol: str | None = None) -> pd.DatetimeIndex:
    """``values`` as a UTC ``DatetimeIndex`` named ``ts``; naive, non-datetime or missing times raise."""
    dtype = values.dtype
    if not isinstance(dtype, pd.DatetimeTZDtype):
        if pd.api.types.is_datetime64_dtype(dtype):
            raise DataFormatError(
                f"bars{_label(symbol)}: 'ts' has no timezone; localise it first, "
                "e.g. bars['ts'] = bars['ts'].dt.tz_localize('UTC')."
            )
        raise DataFormatError(
            f"bars{_label(symbol)}: 'ts' must hold timezone-aware datetimes, got dtype {dtype}; "
            "convert with pd.to_datetime(bars['ts'], utc=True)."
        )
    index = pd.DatetimeIndex(values).tz_convert("UTC").rename("ts")
    if index.hasnans:
        raise DataFormatError(f"bars{_label(symbol)}: 'ts' has {int(index.isna().sum())} missing values.")
    return index


def check_order(ts: pd.DatetimeIndex, *, symbol: str | None = None) -> None:
    """Refuse timestamps that are not strictly increasing, naming the first offending one."""
    if len(ts) < 2:
        return
    steps = np.diff(ts.asi8)
    if (steps > 0).all():
        return
    first = int(np.flatnonzero(steps <= 0)[0]) + 1
    problem = "duplicate" if steps[first - 1] == 0 else "out-of-order"
    raise DataFormatError(
        f"bars{_label(symbol)}: 'ts' must be strictly increasing, but row {first} has a {problem} timestamp "
        f"{ts[first].isoformat()} (previous {ts[first - 1].isoformat()}); fix with "
        "bars.sort_values('ts').drop_duplicates('ts', keep='last')."
    )


def bar_arrays(bars: pd.DataFrame, *, min_rows: int, purpose: str) -> BarArrays:
    """Validate a single-symbol canonical bars frame and return its columns as float64 arrays.

    Raises
    ------
    DataFormatError
        Missing columns, several symbols, naive/unsorted/duplicate timestamps, non-positive or non-finite
        prices, negative or infinite volume.
    EmptyRangeError
        Fewer than ``min_rows`` bars (``purpose`` says what needs them).
    """
    if not isinstance(bars, pd.DataFrame):
        raise DataFormatError(f"bars must be a pandas DataFrame, got {type(bars).__name__}.")
    if "ts" not in bars.columns and bars.index.name == "ts":
        bars = bars.reset_index()
    missing = [c for c in REQUIRED_COLUMNS if c not in bars.columns]
    if missing:
        hints = "".join(did_you_mean(c, map(str, bars.columns)) for c in missing)
        raise DataFormatError(
            f"bars are missing column(s) {', '.join(map(repr, missing))}.{hints} Expected the canonical bars "
            f"frame with columns {', '.join(REQUIRED_COLUMNS)} (volume NaN where the source has none); "
            f"got {', '.join(map(str, bars.columns)) or 'no columns'}."
        )
    symbol: str | None = None
    if "symbol" in bars.columns:
        symbols = pd.unique(bars["symbol"])
        if len(symbols) > 1:
            raise DataFormatError(
                f"bars hold {len(symbols)} symbols ({', '.join(map(str, symbols[:5]))}...); this method "
                "takes one symbol's bars. Select one symbol or use transform_panel."
            )
        symbol = str(symbols[0]) if len(symbols) else None
    ts = utc_ts(bars["ts"], symbol=symbol)
    check_order(ts, symbol=symbol)
    if len(ts) < min_rows:
        raise EmptyRangeError(
            f"bars{_label(symbol)} have {len(ts)} rows but {purpose} needs at least {min_rows}; "
            "pass a longer history or shorten the windows."
        )
    prices = {}
    for col in PRICE_COLUMNS:
        values = _floats(bars[col], col, symbol)
        bad = ~np.isfinite(values) | (values <= 0.0)
        if bad.any():
            first = int(np.flatnonzero(bad)[0])
            raise DataFormatError(
                f"bars{_label(symbol)}: '{col}' must be finite and > 0, but {int(bad.sum())} row(s) are not "
                f"(first at {ts[first].isoformat()}: {values[first]!r}); drop or repair those bars first."
            )
        prices[col] = values
    volume = _floats(bars["volume"], "volume", symbol)
    bad = (volume < 0.0) | np.isinf(volume)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise DataFormatError(
            f"bars{_label(symbol)}: 'volume' must be >= 0 (or NaN when unknown), but {int(bad.sum())} row(s) "
            f"are not (first at {ts[first].isoformat()}: {volume[first]!r})."
        )
    volume = np.nan_to_num(volume, nan=0.0)
    return BarArrays(symbol, ts, prices["open"], prices["high"], prices["low"], prices["close"], volume)


def _floats(column: pd.Series, name: str, symbol: str | None) -> np.ndarray:
    try:
        return column.to_numpy(dtype=np.float64, na_value=np.nan)
    except (TypeError, ValueError) as exc:
        raise DataFormatError(
            f"bars{_label(symbol)}: '{name}' must be numeric, got dtype {column.dtype} ({exc})."
        ) from exc
