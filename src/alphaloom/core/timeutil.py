"""Helpers that keep every timestamp timezone-aware UTC."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd

from alphaloom.core.exceptions import DataFormatError

__all__ = ["ensure_utc", "parse_utc", "to_utc_index"]


def ensure_utc(ts: datetime, *, name: str = "timestamp") -> datetime:
    """Return ``ts`` converted to UTC; naive datetimes are refused.

    Raises
    ------
    DataFormatError
        If ``ts`` has no timezone: we never guess a zone.
    """
    if not isinstance(ts, datetime):
        raise DataFormatError(f"{name} must be a datetime, got {type(ts).__name__} ({ts!r}).")
    if ts.tzinfo is None or ts.tzinfo.utcoffset(ts) is None:
        raise DataFormatError(
            f"{name} {ts.isoformat()} has no timezone; pass an aware datetime, "
            f"e.g. datetime(..., tzinfo=datetime.UTC)."
        )
    return ts.astimezone(UTC)


def parse_utc(text: str, *, name: str = "date") -> datetime:
    """Parse an ISO date or datetime string into an aware UTC datetime.

    A string without an offset (``"2020-01-31"``) is read as UTC, which is how the CLI documents it.
    """
    try:
        ts = pd.Timestamp(text)
    except (ValueError, TypeError) as exc:
        raise DataFormatError(
            f"{name} {text!r} is not a date; use ISO format such as 2020-01-31 or 2020-01-31T14:30:00Z."
        ) from exc
    if ts is pd.NaT:
        raise DataFormatError(f"{name} {text!r} is not a date; use ISO format such as 2020-01-31.")
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return ts.to_pydatetime()


def to_utc_index(values: pd.Series | pd.Index, *, assume_tz: str | None = None) -> pd.DatetimeIndex:
    """Convert timestamps (strings or datetimes) to a UTC ``DatetimeIndex``.

    Parameters
    ----------
    values
        Timestamps as strings or datetimes.
    assume_tz
        Zone of values that carry no offset (e.g. ``"America/New_York"``). When ``None``, offset-less values
        are refused, so a missing zone is never guessed.
    """
    try:
        idx = pd.DatetimeIndex(pd.to_datetime(values, utc=False, format="ISO8601"))
    except (ValueError, TypeError) as exc:
        raise DataFormatError(f"could not parse timestamps ({exc}); expected ISO-8601 strings.") from exc
    if idx.tz is None:
        if assume_tz is None:
            raise DataFormatError(
                "timestamps carry no timezone and no zone was given; pass assume_tz (e.g. 'UTC')."
            )
        idx = idx.tz_localize(assume_tz)
    return idx.tz_convert("UTC")
