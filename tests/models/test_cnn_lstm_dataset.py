"""Windowing and labels: finite windows only, labels inside the segment, and no look-ahead by construction."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from alphaloom.core import DataFormatError
from alphaloom.models.cnn_lstm.dataset import (
    class_labels,
    feature_columns,
    forward_log_return,
    frame_arrays,
    gather_windows,
    split_windows,
    window_end_mask,
)


def _frame(n: int = 40, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    index = pd.date_range("2021-01-01", periods=n, freq="h", tz="UTC", name="ts")
    frame = pd.DataFrame(rng.standard_normal((n, 3)), index=index, columns=["a", "b", "c"])
    frame["close"] = 50 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    return frame


def test_window_mask_needs_a_full_finite_window() -> None:
    values = np.ones((10, 2))
    values[4, 1] = np.nan
    values[7, 0] = np.inf
    mask = window_end_mask(values, 3)
    # ends 2,3 ok; 4..6 touch row 4; 7..9 touch row 7
    assert mask.tolist() == [False, False, True, True, False, False, False, False, False, False]
    assert not window_end_mask(np.ones((2, 2)), 3).any()


def test_forward_returns_stop_inside_the_segment() -> None:
    close = np.array([1.0, 2.0, 4.0, 8.0])
    r = forward_log_return(close, 2)
    np.testing.assert_allclose(r[:2], np.log([4.0, 4.0]))
    assert np.isnan(r[2:]).all()
    assert np.isnan(forward_log_return(close, 5)).all()


def test_class_labels_use_the_threshold_inclusively_for_flat() -> None:
    r = np.array([-0.02, -0.01, 0.0, 0.01, 0.02])
    assert class_labels(r, 0.01).tolist() == [0, 1, 1, 1, 2]
    assert class_labels(r, 0.0).tolist() == [0, 0, 1, 2, 2]


@pytest.mark.parametrize("row", [0, 17, 39])
def test_changing_a_feature_row_changes_only_windows_that_contain_it(row: int) -> None:
    window = 5
    frame = _frame()
    _, values, _ = frame_arrays(frame, ["a", "b", "c"], need_close=False)
    ends = torch.from_numpy(np.flatnonzero(window_end_mask(values, window)))
    before = gather_windows(torch.from_numpy(values), ends, window)
    values[row] += 10.0
    after = gather_windows(torch.from_numpy(values), ends, window)
    changed = ends[(before != after).any(dim=2).any(dim=1)].tolist()
    assert changed == [t for t in ends.tolist() if t - window < row <= t]
    torch.testing.assert_close(before[0], torch.tensor(frame[["a", "b", "c"]].to_numpy()[:window]))


@pytest.mark.parametrize("row", [3, 20, 39])
def test_changing_a_close_changes_only_the_labels_that_span_it(row: int) -> None:
    horizon = 3
    frame = _frame()
    before = forward_log_return(frame["close"].to_numpy(), horizon)
    bumped = frame["close"].to_numpy().copy()
    bumped[row] *= 1.5
    after = forward_log_return(bumped, horizon)
    changed = np.flatnonzero(~np.isclose(before, after, equal_nan=True)).tolist()
    assert changed == [t for t in (row - horizon, row) if 0 <= t < len(bumped) - horizon]


def test_frame_checks_teach_what_to_fix() -> None:
    frame = _frame()
    with pytest.raises(DataFormatError, match=r"missing feature column\(s\) \['d'\]"):
        frame_arrays(frame, ["a", "d"], need_close=False)
    with pytest.raises(DataFormatError, match="no timezone"):
        frame_arrays(frame.tz_localize(None), ["a"], need_close=False)
    with pytest.raises(DataFormatError, match="strictly increasing"):
        frame_arrays(frame.iloc[::-1], ["a"], need_close=False)
    with pytest.raises(DataFormatError, match="'close'"):
        frame_arrays(frame.drop(columns="close"), ["a"], need_close=True)
    with pytest.raises(DataFormatError, match="> 0"):
        frame_arrays(frame.assign(close=-1.0), ["a"], need_close=True)
    with pytest.raises(DataFormatError, match="must be numeric"):
        feature_columns(frame.assign(venue="X"))
    with pytest.raises(DataFormatError, match="cannot be a feature"):
        feature_columns(frame, ["a", "close"])


def test_a_ts_column_works_as_the_index() -> None:
    frame = _frame().reset_index()
    index, values, close = frame_arrays(frame, ["a", "b"], need_close=True)
    assert index.name == "ts"
    assert str(index.tz) == "UTC"
    assert values.shape == (40, 2)
    assert close is not None
    assert feature_columns(frame) == ["a", "b", "c"]


@pytest.mark.parametrize(("window", "horizon", "val_fraction"), [(5, 1, 0.2), (8, 3, 0.15), (4, 2, 0.0)])
def test_split_holds_out_the_end_and_purges_the_gap(window: int, horizon: int, val_fraction: float) -> None:
    frame = _frame(n=120)
    _, values, close = frame_arrays(frame, ["a", "b", "c"], need_close=True)
    assert close is not None
    values[:3] = np.nan  # warm-up
    split = split_windows(values, close, window=window, horizon=horizon, val_fraction=val_fraction)
    usable = np.arange(3 + window - 1, 120 - horizon)  # full finite window and a close `horizon` bars later
    n_val = int(len(usable) * val_fraction)
    np.testing.assert_array_equal(split.val_ends, usable[len(usable) - n_val :])
    if n_val:
        first_val_row = split.val_ends[0] - window + 1
        assert split.fit_ends[-1] + horizon == first_val_row - 1  # the last fit label stops just before it
        assert len(split.fit_ends) == len(usable) - n_val - (window + horizon - 1)
    else:
        np.testing.assert_array_equal(split.fit_ends, usable)
    assert np.isfinite(split.log_return[split.fit_ends]).all()
