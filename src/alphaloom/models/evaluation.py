"""Scores of three-class direction forecasts and of return forecasts, as pure functions defined once.

Every forecaster of :mod:`alphaloom.models` predicts, at each bar, the probabilities of the classes down,
flat and up of the forward log return (columns ``p_down``, ``p_flat``, ``p_up``, in the order of
:data:`~alphaloom.models.cnn_lstm.CLASS_NAMES`) and the forward log return itself (``pred_return``). The
functions here score such forecasts against what happened.

Conventions
-----------
Inputs
    ``y_true`` and ``y_pred`` are integer class labels, shape ``(n,)``: 0 (down), 1 (flat), 2 (up).
    ``proba`` has shape ``(n, 3)``, rows summing to 1. ``pred`` and ``realised`` are float returns of shape
    ``(n,)``.
NaN policy
    As for :mod:`alphaloom.risk.measures`: a NaN input is not skipped but gives a NaN result, and a score
    that is undefined for its input (any score of an empty sample, a correlation with a constant series) is
    NaN. The exception is :func:`matthews_corrcoef`, which is 0.0, as in scikit-learn, when either the
    truth or the prediction is a single class (nothing can be correlated).
Agreement
    The tests check each score against scikit-learn or scipy to 1e-12.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import numpy.typing as npt
import pandas as pd

from alphaloom.core.exceptions import DataFormatError

__all__ = [
    "N_CLASSES",
    "PROBA_COLUMNS",
    "ForecastScores",
    "accuracy",
    "balanced_accuracy",
    "classification_table",
    "forecast_scores",
    "information_coefficient",
    "log_loss",
    "log_loss_per_sample",
    "matthews_corrcoef",
    "rank_information_coefficient",
    "score_forecast_frame",
]

#: Number of direction classes (down, flat, up).
N_CLASSES = 3
#: Probability columns of every forecaster's ``predict`` frame, in class order.
PROBA_COLUMNS = ("p_down", "p_flat", "p_up")
_CLASS_NAMES = ("down", "flat", "up")
# Probabilities are clipped here before the logarithm, so a confident miss costs ~34.5 nats, not infinity.
_PROBA_FLOOR = 1e-15


def _labels(y: npt.ArrayLike, name: str) -> np.ndarray:
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise DataFormatError(f"{name} must be one-dimensional with shape (n,), got shape {arr.shape}.")
    if arr.dtype.kind == "f":
        if np.isnan(arr).any():
            raise DataFormatError(f"{name} holds NaN; class labels must be 0 (down), 1 (flat) or 2 (up).")
        if np.any(arr != np.round(arr)):
            raise DataFormatError(f"{name} must hold integer class labels 0, 1 or 2, got fractions.")
    elif arr.dtype.kind not in "iub":
        raise DataFormatError(f"{name} must hold integer class labels 0, 1 or 2, got dtype {arr.dtype}.")
    out = arr.astype(np.int64)
    if out.size and (out.min() < 0 or out.max() >= N_CLASSES):
        raise DataFormatError(
            f"{name} must hold class labels 0 (down), 1 (flat) or 2 (up), got values in "
            f"[{out.min()}, {out.max()}]."
        )
    return out


def _pair(y_true: npt.ArrayLike, y_pred: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    t, p = _labels(y_true, "y_true"), _labels(y_pred, "y_pred")
    if t.shape != p.shape:
        raise DataFormatError(f"y_true has shape {t.shape} but y_pred has shape {p.shape}; pass one per bar.")
    return t, p


def _confusion(t: np.ndarray, p: np.ndarray) -> np.ndarray:
    return np.bincount(t * N_CLASSES + p, minlength=N_CLASSES * N_CLASSES).reshape(N_CLASSES, N_CLASSES)


def _proba(proba: npt.ArrayLike, n: int | None = None) -> np.ndarray:
    arr = np.asarray(proba, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != N_CLASSES:
        raise DataFormatError(
            f"proba must have shape (n, {N_CLASSES}) with columns p_down, p_flat, p_up, got {arr.shape}."
        )
    if n is not None and arr.shape[0] != n:
        raise DataFormatError(f"proba has {arr.shape[0]} rows but there are {n} labels; pass one per bar.")
    finite = np.isfinite(arr).all(axis=1)
    if np.any(arr[finite] < 0) or np.any(np.abs(arr[finite].sum(axis=1) - 1.0) > 1e-6):
        raise DataFormatError(
            "proba rows must be probabilities: non-negative and summing to 1 (within 1e-6); normalise them "
            "with proba / proba.sum(axis=1, keepdims=True)."
        )
    return arr


def _returns(x: npt.ArrayLike, name: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 1:
        raise DataFormatError(f"{name} must be one-dimensional with shape (n,), got shape {arr.shape}.")
    return arr


def accuracy(y_true: npt.ArrayLike, y_pred: npt.ArrayLike) -> float:
    """Share of bars whose predicted class is the true class.

    Returns
    -------
    float
        In [0, 1]; NaN for an empty sample.
    """
    t, p = _pair(y_true, y_pred)
    return float(np.mean(t == p)) if t.size else math.nan


def balanced_accuracy(y_true: npt.ArrayLike, y_pred: npt.ArrayLike) -> float:
    """Mean recall over the classes present in ``y_true`` (scikit-learn's ``balanced_accuracy_score``).

    A forecaster that always predicts the majority class scores ``1 / n_classes_present``, however
    unbalanced the classes are.

    Returns
    -------
    float
        In [0, 1]; NaN for an empty sample.
    """
    t, p = _pair(y_true, y_pred)
    if not t.size:
        return math.nan
    cm = _confusion(t, p)
    support = cm.sum(axis=1)
    present = support > 0
    return float(np.mean(np.diag(cm)[present] / support[present]))


def matthews_corrcoef(y_true: npt.ArrayLike, y_pred: npt.ArrayLike) -> float:
    """Multiclass Matthews correlation coefficient (Gorodkin's R_K, scikit-learn's ``matthews_corrcoef``).

    ``(c * s - sum_k p_k t_k) / sqrt((s^2 - sum_k p_k^2) (s^2 - sum_k t_k^2))`` with ``c`` the correct
    predictions, ``s`` the sample size, ``t_k`` and ``p_k`` the true and predicted counts of class ``k``.

    Returns
    -------
    float
        In [-1, 1]; 0 means no better than chance. 0.0 when either side is a single class; NaN for an empty
        sample.
    """
    t, p = _pair(y_true, y_pred)
    if not t.size:
        return math.nan
    cm = _confusion(t, p).astype(np.float64)
    true_counts, pred_counts = cm.sum(axis=1), cm.sum(axis=0)
    s, c = cm.sum(), np.trace(cm)
    cov_tp = c * s - float(np.dot(pred_counts, true_counts))
    cov_pp = s * s - float(np.dot(pred_counts, pred_counts))
    cov_tt = s * s - float(np.dot(true_counts, true_counts))
    if cov_pp * cov_tt == 0.0:
        return 0.0
    return float(cov_tp / math.sqrt(cov_tt * cov_pp))


def log_loss_per_sample(y_true: npt.ArrayLike, proba: npt.ArrayLike) -> np.ndarray:
    """Negative log-likelihood of the true class at each bar, in nats: ``-log(proba[i, y_true[i]])``.

    Probabilities are clipped at 1e-15 below, so a confident miss costs about 34.5 nats. This is the loss
    the Diebold-Mariano comparison of :mod:`alphaloom.jobs.evaluate` is run on.

    Returns
    -------
    numpy.ndarray
        Shape ``(n,)``; NaN where a row of ``proba`` has a NaN.
    """
    t = _labels(y_true, "y_true")
    p = _proba(proba, len(t))
    return -np.log(np.clip(p[np.arange(len(t)), t], _PROBA_FLOOR, 1.0))


def log_loss(y_true: npt.ArrayLike, proba: npt.ArrayLike) -> float:
    """Mean negative log-likelihood of the true classes in nats (scikit-learn's ``log_loss``).

    ``log(3) = 1.0986`` is the score of the uniform forecast; lower is better.

    Returns
    -------
    float
        NaN for an empty sample or a NaN probability.
    """
    losses = log_loss_per_sample(y_true, proba)
    return float(np.mean(losses)) if losses.size else math.nan


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    if a.size < 2 or np.isnan(a).any() or np.isnan(b).any():
        return math.nan
    a, b = a - a.mean(), b - b.mean()
    denom = math.sqrt(float(np.dot(a, a)) * float(np.dot(b, b)))
    return float(np.dot(a, b) / denom) if denom > 0.0 else math.nan


def _average_ranks(x: np.ndarray) -> np.ndarray:
    # Ranks 1..n, ties sharing the mean of the ranks they span (scipy's rankdata(method="average")).
    order = np.argsort(x, kind="mergesort")
    ordered = x[order]
    starts_group = np.concatenate([[True], ordered[1:] != ordered[:-1]])
    group = np.cumsum(starts_group) - 1
    starts = np.flatnonzero(starts_group)
    ends = np.append(starts[1:], x.size)
    ranks = np.empty(x.size)
    ranks[order] = ((starts + ends + 1) / 2.0)[group]
    return ranks


def _pair_returns(pred: npt.ArrayLike, realised: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    a, b = _returns(pred, "pred"), _returns(realised, "realised")
    if a.shape != b.shape:
        raise DataFormatError(f"pred has shape {a.shape} but realised has shape {b.shape}; pass one per bar.")
    return a, b


def information_coefficient(pred: npt.ArrayLike, realised: npt.ArrayLike) -> float:
    """Pearson correlation of predicted and realised returns (the IC).

    Returns
    -------
    float
        In [-1, 1]; NaN for fewer than two bars, a NaN value, or a constant series.
    """
    a, b = _pair_returns(pred, realised)
    return _pearson(a, b)


def rank_information_coefficient(pred: npt.ArrayLike, realised: npt.ArrayLike) -> float:
    """Spearman rank correlation of predicted and realised returns (the rank IC); ties share ranks.

    Returns
    -------
    float
        In [-1, 1]; NaN as for :func:`information_coefficient`.
    """
    a, b = _pair_returns(pred, realised)
    if a.size < 2 or np.isnan(a).any() or np.isnan(b).any():
        return math.nan
    return _pearson(_average_ranks(a), _average_ranks(b))


class ForecastScores(NamedTuple):
    """Scores of one set of direction and return forecasts (see :func:`forecast_scores`)."""

    n: int
    """Bars scored."""
    accuracy: float
    """Share of bars whose most probable class was the true one."""
    balanced_accuracy: float
    """Mean recall over the classes present."""
    mcc: float
    """Multiclass Matthews correlation of the most probable class with the true one."""
    log_loss: float
    """Mean negative log-likelihood of the true class, nats (log 3 = 1.0986 for a uniform forecast)."""
    ic: float
    """Pearson correlation of ``pred_return`` with the realised forward log return."""
    rank_ic: float
    """Spearman correlation of ``pred_return`` with the realised forward log return."""


def forecast_scores(
    y_true: npt.ArrayLike, proba: npt.ArrayLike, pred: npt.ArrayLike, realised: npt.ArrayLike
) -> ForecastScores:
    """Every score of this module for one set of forecasts.

    Parameters
    ----------
    y_true
        True classes, shape ``(n,)``.
    proba
        Predicted class probabilities, shape ``(n, 3)``; the predicted class is the most probable one (the
        first of equals).
    pred
        Predicted forward log returns, shape ``(n,)``.
    realised
        Realised forward log returns, shape ``(n,)``.
    """
    t = _labels(y_true, "y_true")
    p = _proba(proba, len(t))
    guess = np.argmax(p, axis=1)
    return ForecastScores(
        n=len(t),
        accuracy=accuracy(t, guess),
        balanced_accuracy=balanced_accuracy(t, guess),
        mcc=matthews_corrcoef(t, guess),
        log_loss=log_loss(t, p),
        ic=information_coefficient(pred, realised),
        rank_ic=rank_information_coefficient(pred, realised),
    )


def score_forecast_frame(
    frame: pd.DataFrame, *, flat_threshold: float, realised_column: str = "realised"
) -> ForecastScores:
    """:func:`forecast_scores` of a forecaster's ``predict`` frame joined with the realised returns.

    Parameters
    ----------
    frame
        Columns ``p_down``, ``p_flat``, ``p_up``, ``pred_return`` and ``realised_column`` (the realised
        forward log return); rows with a NaN in any of them are dropped.
    flat_threshold
        ``|realised| <= flat_threshold`` is the flat class, as in
        :func:`~alphaloom.models.cnn_lstm.dataset.class_labels`.
    realised_column
        Name of the realised-return column.
    """
    needed = [*PROBA_COLUMNS, "pred_return", realised_column]
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise DataFormatError(
            f"the forecast frame lacks column(s) {missing}; it needs a forecaster's predict() columns "
            f"{[*PROBA_COLUMNS, 'pred_return']} plus the realised forward return {realised_column!r}."
        )
    if not (isinstance(flat_threshold, int | float) and flat_threshold >= 0.0):
        raise DataFormatError(f"flat_threshold must be a number >= 0, got {flat_threshold!r}.")
    rows = frame[needed].dropna()
    realised = rows[realised_column].to_numpy(dtype=np.float64)
    labels = np.ones(len(realised), dtype=np.int64)
    labels[realised < -flat_threshold] = 0
    labels[realised > flat_threshold] = 2
    return forecast_scores(
        labels,
        rows[list(PROBA_COLUMNS)].to_numpy(dtype=np.float64),
        rows["pred_return"].to_numpy(dtype=np.float64),
        realised,
    )


def classification_table(y_true: npt.ArrayLike, y_pred: npt.ArrayLike) -> pd.DataFrame:
    """Per-class precision, recall, F1 and support, like scikit-learn's ``classification_report``.

    Returns
    -------
    pandas.DataFrame
        Index ``down``, ``flat``, ``up``; columns ``precision``, ``recall``, ``f1`` and ``support`` (true
        bars of the class). A ratio with a zero denominator is NaN.
    """
    t, p = _pair(y_true, y_pred)
    cm = _confusion(t, p).astype(np.float64)
    tp = np.diag(cm)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = tp / cm.sum(axis=0)
        recall = tp / cm.sum(axis=1)
        f1 = 2.0 * precision * recall / (precision + recall)
    f1 = np.where((tp == 0) & (cm.sum(axis=0) + cm.sum(axis=1) > 0), 0.0, f1)
    return pd.DataFrame(
        {"precision": precision, "recall": recall, "f1": f1, "support": cm.sum(axis=1).astype(np.int64)},
        index=pd.Index(_CLASS_NAMES, name="class"),
    )
