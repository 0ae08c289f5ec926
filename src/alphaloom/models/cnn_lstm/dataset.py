"""Turning per-symbol feature frames into windows and labels without looking ahead.

A *window ending at row t* holds feature rows ``t - window + 1 .. t``; it is usable only when every value in
it is finite (indicator warm-up rows are NaN). Its *label* is the forward log return
``log(close[t + horizon] / close[t])``, which exists only when row ``t + horizon`` lies inside the same
frame, so a training segment never borrows prices from after its end.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd
import torch

from alphaloom.core.exceptions import DataFormatError, did_you_mean

__all__ = [
    "CLASS_NAMES",
    "CLOSE_COLUMN",
    "WindowSplit",
    "class_labels",
    "feature_columns",
    "forward_log_return",
    "frame_arrays",
    "gather_windows",
    "split_windows",
    "window_end_mask",
]

#: The column holding the close price; used for labels only, never as a model input.
CLOSE_COLUMN = "close"
#: Class order of the classification head and of the ``p_*`` prediction columns.
CLASS_NAMES = ("down", "flat", "up")


def feature_columns(frame: pd.DataFrame, requested: Sequence[str] | None = None) -> list[str]:
    """The feature columns: ``requested`` if given, else all columns of ``frame`` but ``close`` and ``ts``."""
    if requested is not None:
        names = list(requested)
        if not names:
            raise DataFormatError("feature_columns is empty; name at least one feature column.")
        if CLOSE_COLUMN in names:
            raise DataFormatError(
                f"{CLOSE_COLUMN!r} cannot be a feature: it defines the labels. Add a transformed copy "
                "(e.g. a log return) under another name instead."
            )
        return names
    names = [str(c) for c in frame.columns if c not in (CLOSE_COLUMN, "ts")]
    bad = [
        c
        for c in names
        if not pd.api.types.is_numeric_dtype(frame[c]) or pd.api.types.is_bool_dtype(frame[c])
    ]
    if bad:
        raise DataFormatError(
            f"feature columns must be numeric, but {bad} are not. Drop them or pass feature_columns=[...] "
            "to choose the features explicitly."
        )
    if not names:
        raise DataFormatError(
            f"the frame has no feature columns (columns: {list(frame.columns)}); the model needs numeric "
            f"features besides {CLOSE_COLUMN!r}."
        )
    return names


def _utc_index(frame: pd.DataFrame, name: str) -> pd.DatetimeIndex:
    index = frame.index
    if not isinstance(index, pd.DatetimeIndex) and "ts" in frame.columns:
        index = pd.DatetimeIndex(frame["ts"])
    if not isinstance(index, pd.DatetimeIndex):
        raise DataFormatError(
            f"{name}: expected a DatetimeIndex of UTC bar times (or a 'ts' column), "
            f"got {type(index).__name__}."
        )
    if index.tz is None:
        raise DataFormatError(f"{name}: bar times carry no timezone; localise them to UTC first.")
    index = index.tz_convert("UTC")
    if not index.is_monotonic_increasing or not index.is_unique:
        raise DataFormatError(f"{name}: bar times must be strictly increasing (sorted, no duplicates).")
    return index.rename("ts")


def frame_arrays(
    frame: pd.DataFrame, features: Sequence[str], *, need_close: bool, name: str = "frame"
) -> tuple[pd.DatetimeIndex, np.ndarray, np.ndarray | None]:
    """Validate ``frame`` and return ``(index, features (n_rows, n_features) float64, close or None)``.

    Raises
    ------
    DataFormatError
        On a non-UTC or unsorted index, missing feature or ``close`` columns, or non-positive closes.
    """
    if not isinstance(frame, pd.DataFrame):
        raise DataFormatError(f"{name}: expected a pandas DataFrame, got {type(frame).__name__}.")
    index = _utc_index(frame, name)
    missing = [c for c in features if c not in frame.columns]
    if missing:
        hints = "".join(did_you_mean(c, map(str, frame.columns)) for c in missing[:3])
        raise DataFormatError(
            f"{name}: missing feature column(s) {missing}; the model was built on {list(features)}.{hints}"
        )
    try:
        values = frame.loc[:, list(features)].to_numpy(dtype=np.float64, copy=True)
    except (TypeError, ValueError) as exc:
        raise DataFormatError(f"{name}: feature columns must be numeric ({exc}).") from exc
    close = None
    if need_close:
        if CLOSE_COLUMN not in frame.columns:
            raise DataFormatError(
                f"{name}: no {CLOSE_COLUMN!r} column; labels are forward log returns of the close price, "
                "so training and evaluation frames need it."
                f"{did_you_mean(CLOSE_COLUMN, map(str, frame.columns))}"
            )
        close = frame[CLOSE_COLUMN].to_numpy(dtype=np.float64, copy=True)
        if np.any(close <= 0):
            raise DataFormatError(f"{name}: {CLOSE_COLUMN!r} must be > 0 where present (log returns).")
    return index, values, close


def window_end_mask(values: np.ndarray, window: int) -> np.ndarray:
    """``(n_rows,)`` bool: True at row ``t`` when rows ``t - window + 1 .. t`` are all finite."""
    bad_row = ~np.isfinite(values).all(axis=1)
    bad_before = np.concatenate([[0], np.cumsum(bad_row)])  # bad rows strictly before each position
    mask = np.zeros(len(values), dtype=bool)
    if len(values) >= window:
        ends = np.arange(window - 1, len(values))
        mask[ends] = bad_before[ends + 1] - bad_before[ends + 1 - window] == 0
    return mask


def forward_log_return(close: np.ndarray, horizon: int) -> np.ndarray:
    """``(n_rows,)`` ``log(close[t + horizon] / close[t])``; NaN where ``t + horizon`` is past the end."""
    out = np.full(len(close), np.nan)
    if len(close) > horizon:
        with np.errstate(invalid="ignore", divide="ignore"):
            out[:-horizon] = np.log(close[horizon:] / close[:-horizon])
    return out


class WindowSplit(NamedTuple):
    """One symbol's labelled windows, named by the row where they end, split in time.

    Attributes
    ----------
    fit_ends, val_ends
        Rows where the fit and the validation windows end, ascending; every fit end precedes every
        validation end.
    log_return
        ``(n_rows,)`` forward log return (the label), NaN where it would need a close past the frame.
    """

    fit_ends: np.ndarray
    val_ends: np.ndarray
    log_return: np.ndarray


def split_windows(
    values: np.ndarray, close: np.ndarray, *, window: int, horizon: int, val_fraction: float
) -> WindowSplit:
    """Find one symbol's labelled windows and hold out the last ``val_fraction`` of them for validation.

    A window is labelled when its ``window`` feature rows are finite and the close ``horizon`` bars after
    its end is inside the frame. The fit part is purged: a fit window ending at ``t`` is kept only when its
    label's close (row ``t + horizon``) comes before the first feature row of the first validation window,
    so no fit label carries information from the validation period (``window + horizon - 1`` windows are
    dropped).
    """
    log_return = forward_log_return(close, horizon)
    usable = np.flatnonzero(window_end_mask(values, window) & np.isfinite(log_return))
    n_val = int(len(usable) * val_fraction)
    if n_val == 0:
        return WindowSplit(usable, usable[:0], log_return)
    val = usable[len(usable) - n_val :]
    first_val_row = val[0] - window + 1
    return WindowSplit(usable[usable + horizon < first_val_row], val, log_return)


def class_labels(log_return: np.ndarray, flat_threshold: float) -> np.ndarray:
    """Class per return: 0 (down) if ``r < -threshold``, 1 (flat) if ``|r| <= threshold``, else 2 (up)."""
    labels = np.ones(len(log_return), dtype=np.int64)
    labels[log_return < -flat_threshold] = 0
    labels[log_return > flat_threshold] = 2
    return labels


def gather_windows(values: torch.Tensor, ends: torch.Tensor, window: int) -> torch.Tensor:
    """Stack the windows ending at rows ``ends`` of ``values (n_rows, n_features)`` into ``(len(ends), window,
    n_features)``, time ascending."""
    offsets = torch.arange(1 - window, 1, device=values.device)
    return values[ends.unsqueeze(1) + offsets]
