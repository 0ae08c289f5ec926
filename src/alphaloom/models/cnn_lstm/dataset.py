"""Turning per-symbol feature frames into windows and labels without looking ahead.

A *window ending at row t* holds feature rows ``t - window + 1 .. t``; it is usable only when every value in
it is finite (indicator warm-up rows are NaN). Its *label* is the forward log return
``log(close[t + horizon] / close[t])``, which exists only when row ``t + horizon`` lies inside the same
frame, so a training segment never borrows prices from after its end. When only some rows of a frame may be
trained on (a walk-forward fold's training rows, with purged and embargoed holes), a window is labelled only
when all of rows ``t - window + 1 .. t + horizon`` are training rows: neither its inputs nor its label touch
anything else.

:func:`build_training_set` turns ``{symbol: frame}`` (or a long panel with a ``symbol`` column, as
:meth:`~alphaloom.features.FeatureEngineer.transform_panel` returns plus ``close``) into the standardised,
pooled windows one fit trains on: the fit and validation windows of every symbol, purged from each other,
with the scaler, the flat threshold and the return scale fitted on the fit windows only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import pandas as pd
import torch

from alphaloom.core.exceptions import DataFormatError, EmptyRangeError, TrainingError, did_you_mean

if TYPE_CHECKING:
    from alphaloom.models.cnn_lstm.config import CNNLSTMConfig

__all__ = [
    "CLASS_NAMES",
    "CLOSE_COLUMN",
    "SYMBOL_COLUMN",
    "Rows",
    "TrainingSet",
    "WindowSplit",
    "as_frames",
    "build_training_set",
    "class_labels",
    "feature_columns",
    "forward_log_return",
    "frame_arrays",
    "gather_windows",
    "row_mask",
    "rows_per_symbol",
    "split_windows",
    "window_end_mask",
]

#: The column holding the close price; used for labels only, never as a model input.
CLOSE_COLUMN = "close"
#: The column naming the symbol of each row in a long panel frame.
SYMBOL_COLUMN = "symbol"
#: Row positions (ints) or a boolean mask of one frame's rows.
Rows = Sequence[int] | np.ndarray
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
    names = [str(c) for c in frame.columns if c not in (CLOSE_COLUMN, "ts", SYMBOL_COLUMN)]
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


_feature_columns = feature_columns  # build_training_set's parameter of the same name shadows the function


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


def row_mask(n_rows: int, rows: Rows | None, *, name: str = "rows") -> np.ndarray:
    """``(n_rows,)`` bool mask of the rows selected by ``rows``: positions or a boolean mask; None is all.

    Raises
    ------
    DataFormatError
        On positions out of range, a mask of the wrong length, or values that are neither.
    """
    if rows is None:
        return np.ones(n_rows, dtype=bool)
    arr = np.asarray(rows)
    if arr.dtype == bool:
        if arr.shape != (n_rows,):
            raise DataFormatError(
                f"{name}: a boolean mask needs one entry per row ({n_rows}), got {arr.shape}."
            )
        return arr.copy()
    if arr.size == 0:
        return np.zeros(n_rows, dtype=bool)
    if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
        raise DataFormatError(
            f"{name}: expected integer row positions (e.g. a walk-forward fold's train_idx) or a boolean "
            f"mask, got an array of dtype {arr.dtype} and shape {arr.shape}."
        )
    if arr.min() < 0 or arr.max() >= n_rows:
        raise DataFormatError(
            f"{name}: row positions must lie in [0, {n_rows}) for a frame of {n_rows} rows, got "
            f"{int(arr.min())} .. {int(arr.max())}."
        )
    mask = np.zeros(n_rows, dtype=bool)
    mask[arr] = True
    return mask


def split_windows(
    values: np.ndarray,
    close: np.ndarray,
    *,
    window: int,
    horizon: int,
    val_fraction: float,
    allowed: np.ndarray | None = None,
) -> WindowSplit:
    """Find one symbol's labelled windows and hold out the last ``val_fraction`` of them for validation.

    A window is labelled when its ``window`` feature rows are finite and the close ``horizon`` bars after
    its end is inside the frame; with ``allowed`` (an ``(n_rows,)`` bool mask of the rows that may be
    trained on), also only when all of rows ``t - window + 1 .. t + horizon`` are allowed, so neither its
    inputs nor its label reach into a held-out, purged or embargoed row. The fit part is purged: a fit
    window ending at ``t`` is kept only when its label's close (row ``t + horizon``) comes before the first
    feature row of the first validation window, so no fit label carries information from the validation
    period (``window + horizon - 1`` windows are dropped).
    """
    log_return = forward_log_return(close, horizon)
    labelled = window_end_mask(values, window) & np.isfinite(log_return)
    if allowed is not None:
        # Disallowed rows strictly before each position; a window is clean when its span holds none.
        outside = np.concatenate([[0], np.cumsum(~allowed)])
        ends = np.arange(len(values))
        first, last = np.clip(ends - window + 1, 0, None), np.minimum(ends + horizon, len(values) - 1)
        labelled &= outside[last + 1] - outside[first] == 0
    usable = np.flatnonzero(labelled)
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


def as_frames(
    frames: Mapping[str, pd.DataFrame] | pd.DataFrame, *, name: str = "frames"
) -> dict[str, pd.DataFrame]:
    """Normalise the accepted inputs to ``{symbol: frame}``.

    A mapping is checked and copied (shallowly); a long panel frame with a ``symbol`` column is split by
    symbol, in order of first appearance, with the column dropped; any other frame is one symbol named
    ``"frame"``.
    """
    if isinstance(frames, pd.DataFrame):
        if SYMBOL_COLUMN not in frames.columns:
            return {"frame": frames}
        out = {
            str(symbol): group.drop(columns=SYMBOL_COLUMN)
            for symbol, group in frames.groupby(SYMBOL_COLUMN, sort=False)
        }
        if not out:
            raise EmptyRangeError(f"{name}: the panel frame has no rows.")
        return out
    if not isinstance(frames, Mapping) or not frames:
        raise DataFormatError(
            f"{name}: expected a non-empty {{symbol: DataFrame}} mapping, a panel frame with a "
            f"{SYMBOL_COLUMN!r} column, or one symbol's DataFrame; got {type(frames).__name__}."
        )
    for symbol, frame in frames.items():
        if not isinstance(frame, pd.DataFrame):
            raise DataFormatError(f"{name}[{symbol!r}] should be a DataFrame, got {type(frame).__name__}.")
    return {str(symbol): frame for symbol, frame in frames.items()}


def rows_per_symbol(rows: Mapping[str, Rows] | Rows | None, symbols: Sequence[str]) -> dict[str, Rows | None]:
    """``{symbol: rows or None}``: a mapping must name each of ``symbols``; one array needs one symbol."""
    if rows is None:
        return dict.fromkeys(symbols)
    if isinstance(rows, Mapping):
        missing = [s for s in symbols if s not in rows]
        extra = [s for s in rows if s not in symbols]
        if missing or extra:
            raise DataFormatError(
                f"rows must name the training rows of every symbol and no others; missing {missing}, "
                f"unknown {extra} (symbols: {list(symbols)})."
            )
        return {s: rows[s] for s in symbols}
    if len(symbols) != 1:
        raise DataFormatError(
            f"rows for {len(symbols)} symbols must be a {{symbol: positions}} mapping, got one "
            f"{type(rows).__name__}."
        )
    return {symbols[0]: rows}


class TrainingSet(NamedTuple):
    """Everything one fit trains on: standardised feature rows, the windows into them and their labels.

    The rows of all symbols are stacked; a window is named by the stacked row where it ends, and never spans
    two symbols. Rows that no window reads are NaN, so two training sets are equal exactly when training
    sees the same inputs.

    Attributes
    ----------
    feature_names
        Feature columns, in input order.
    symbols
        Symbols in stacking order.
    window
        Bars per window.
    values
        ``(n_rows, n_features)`` float32, ``(raw - scaler_mean) / scaler_std`` where a window reads the row,
        NaN elsewhere.
    fit_ends, val_ends
        ``(n_fit,)`` and ``(n_val,)`` int64 rows where the fit and validation windows end.
    fit_labels, val_labels
        Class per window (0 down, 1 flat, 2 up), int64.
    fit_targets, val_targets
        Forward log return per window divided by ``ret_scale``, float32.
    scaler_mean, scaler_std
        ``(n_features,)`` float64 standardisation, fitted on the fit windows' rows only.
    flat_threshold
        ``|forward log return| <=`` this is flat.
    ret_scale
        Root mean square of the fit windows' forward log returns.
    class_counts
        ``(3,)`` int64 fit windows per class.
    """

    feature_names: list[str]
    symbols: list[str]
    window: int
    values: np.ndarray
    fit_ends: np.ndarray
    val_ends: np.ndarray
    fit_labels: np.ndarray
    val_labels: np.ndarray
    fit_targets: np.ndarray
    val_targets: np.ndarray
    scaler_mean: np.ndarray
    scaler_std: np.ndarray
    flat_threshold: float
    ret_scale: float
    class_counts: np.ndarray

    def windows(self, ends: np.ndarray) -> np.ndarray:
        """``(len(ends), window, n_features)`` float32 inputs of the windows ending at ``ends``."""
        return self.values[np.asarray(ends)[:, None] + np.arange(1 - self.window, 1)]


def build_training_set(
    frames: Mapping[str, pd.DataFrame] | pd.DataFrame,
    config: CNNLSTMConfig,
    *,
    feature_columns: Sequence[str] | None = None,
    rows: Mapping[str, Rows] | Rows | None = None,
) -> TrainingSet:
    """Build the standardised, labelled and purged windows one fit trains on.

    Parameters
    ----------
    frames
        ``{symbol: frame}``, a long panel frame with a ``symbol`` column, or one symbol's frame; each indexed
        by UTC bar time (or with a ``ts`` column), with the feature columns and ``close``.
    config
        Uses ``window``, ``horizon``, ``val_fraction``, ``flat_threshold`` and ``batch_size``.
    feature_columns
        Features in input order; by default every column but ``close``, ``ts`` and ``symbol`` of the first
        frame, and every symbol must have the same set.
    rows
        The rows that may be trained on: positions or a boolean mask per symbol (``{symbol: rows}``, or one
        array for a single symbol), e.g. a walk-forward fold's ``train_idx``. ``None`` is every row. Windows
        whose inputs or label would read any other row are not built (purging inside the fit).

    Returns
    -------
    TrainingSet

    Raises
    ------
    DataFormatError
        On malformed frames, rows, or feature sets that differ between symbols.
    EmptyRangeError
        If no labelled fit window can be built.
    TrainingError
        If there are fewer fit windows than ``batch_size``.
    """
    frames = as_frames(frames)
    symbols = list(frames)
    first = frames[symbols[0]]
    names = _feature_columns(first, feature_columns)
    if feature_columns is None:
        for symbol, frame in frames.items():
            other = _feature_columns(frame)
            if set(other) != set(names):
                raise DataFormatError(
                    f"frames[{symbol!r}] has features {sorted(other)} but the first frame has "
                    f"{sorted(names)}; every symbol needs the same feature columns (or pass "
                    "feature_columns=[...])."
                )
    per_symbol_rows = rows_per_symbol(rows, symbols)

    w, h = config.window, config.horizon
    fit_ends, val_ends, returns_at, scaler_rows, blocks = [], [], [], [], []
    offset = 0
    for symbol, frame in frames.items():
        _, values, close = frame_arrays(frame, names, need_close=True, name=f"frames[{symbol!r}]")
        assert close is not None
        allowed = row_mask(len(values), per_symbol_rows[symbol], name=f"rows[{symbol!r}]")
        split = split_windows(
            values, close, window=w, horizon=h, val_fraction=config.val_fraction, allowed=allowed
        )
        if len(split.fit_ends):
            seen = values[: split.fit_ends[-1] + 1][allowed[: split.fit_ends[-1] + 1]]
            scaler_rows.append(seen[np.isfinite(seen).all(axis=1)])
        fit_ends.append(split.fit_ends + offset)
        val_ends.append(split.val_ends + offset)
        returns_at.append(split.log_return)
        blocks.append(values)
        offset += len(values)
    fit_idx, val_idx = np.concatenate(fit_ends), np.concatenate(val_ends)
    returns = np.concatenate(returns_at)
    if len(fit_idx) == 0:
        raise EmptyRangeError(
            f"no training windows: each needs {w} consecutive bars of finite features and a close "
            f"{h} bar(s) later inside the same frame (and, with rows=, all of them training rows). Got "
            f"{[len(v) for v in blocks]} rows per symbol; pass longer segments, a shorter window, or fewer "
            "NaN warm-up rows."
        )
    if len(fit_idx) < config.batch_size:
        raise TrainingError(
            f"only {len(fit_idx)} fit windows for batch_size={config.batch_size}; pass more data or lower "
            "batch_size (and val_fraction)."
        )

    scaled = np.concatenate(scaler_rows)
    mean = scaled.mean(axis=0)
    std = scaled.std(axis=0)
    std = np.where(std > 1e-12, std, 1.0)
    fit_returns = returns[fit_idx]
    threshold = config.flat_threshold or float(np.quantile(np.abs(fit_returns), 1.0 / 3.0))
    ret_scale = float(np.sqrt(np.mean(fit_returns**2)))
    ret_scale = ret_scale if ret_scale > 0 else 1.0

    # Blank every row no window reads, so nothing outside the windows can reach training (or a fingerprint).
    stacked = np.concatenate(blocks)
    read = np.zeros(len(stacked) + 1, dtype=np.int64)
    for ends in (fit_idx, val_idx):
        np.add.at(read, ends - w + 1, 1)
        np.add.at(read, ends + 1, -1)
    standardised = ((stacked - mean) / std).astype(np.float32)
    standardised[np.cumsum(read[:-1]) == 0] = np.nan

    labels = class_labels(returns, threshold)
    targets = (returns / ret_scale).astype(np.float32)
    return TrainingSet(
        feature_names=list(names),
        symbols=symbols,
        window=w,
        values=standardised,
        fit_ends=fit_idx,
        val_ends=val_idx,
        fit_labels=labels[fit_idx],
        val_labels=labels[val_idx],
        fit_targets=targets[fit_idx],
        val_targets=targets[val_idx],
        scaler_mean=mean,
        scaler_std=std,
        flat_threshold=float(threshold),
        ret_scale=ret_scale,
        class_counts=np.bincount(labels[fit_idx], minlength=len(CLASS_NAMES)).astype(np.int64),
    )
