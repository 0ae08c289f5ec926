"""Why did a model forecast what it did? Attributions for the CNN+LSTM and importances for the baselines.

* :func:`integrated_gradients` (Sundararajan, Taly & Yan, 2017): per-prediction attributions of a
  :class:`~alphaloom.models.CNNLSTMForecaster` output (``pred_return`` or a class probability) over every
  feature and time step of its input window. The path integral from a baseline window (the training mean,
  i.e. zeros in the model's standardised units) is taken with Gauss-Legendre quadrature in float64, so the
  attributions add up to ``f(x) - f(baseline)`` (completeness) to about 1e-6 of the output; every
  :class:`Attribution` reports its own gap.
* :func:`tree_feature_importance`: LightGBM's split-gain importance of the tree baseline, summed over lags.
* :func:`permutation_importance`: model-agnostic, for any forecaster with ``predict`` (the tree baseline or
  the CNN+LSTM): how much the log loss of the class forecast grows when one feature column is shuffled.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch

from alphaloom.core.exceptions import (
    ConfigError,
    DataFormatError,
    EmptyRangeError,
    NotFittedError,
    did_you_mean,
)
from alphaloom.models.baselines import BaselineForecaster, LightGBMForecaster
from alphaloom.models.cnn_lstm.dataset import (
    as_frames,
    class_labels,
    forward_log_return,
    frame_arrays,
    window_end_mask,
)
from alphaloom.models.cnn_lstm.forecaster import CNNLSTMForecaster

__all__ = [
    "TARGETS",
    "Attribution",
    "integrated_gradients",
    "permutation_importance",
    "tree_feature_importance",
]

#: Outputs of the CNN+LSTM that can be attributed.
TARGETS: tuple[str, ...] = ("pred_return", "p_down", "p_flat", "p_up")


@dataclass(frozen=True)
class Attribution:
    """Integrated-gradients attribution of one forecast.

    Attributes
    ----------
    ts
        Bar time of the forecast.
    target
        The attributed output (``pred_return`` in log-return units, or a class probability).
    values
        Shape ``(window, n_features)``; row ``window - 1`` is the forecast's own bar, row 0 the oldest. In the
        units of the target.
    feature_names
        Column names of ``values``.
    output
        The target at the input window, ``f(x)``.
    baseline_output
        The target at the baseline window, ``f(x0)``.
    """

    ts: pd.Timestamp
    target: str
    values: np.ndarray
    feature_names: list[str]
    output: float
    baseline_output: float

    @property
    def completeness_gap(self) -> float:
        """``sum(values) - (output - baseline_output)``: zero for exact integration."""
        return float(self.values.sum() - (self.output - self.baseline_output))

    def by_feature(self) -> pd.Series:
        """Attribution per feature, summed over the window's time steps, largest magnitude first."""
        s = pd.Series(self.values.sum(axis=0), index=self.feature_names, name=self.target)
        return s.reindex(s.abs().sort_values(ascending=False).index)

    def by_lag(self) -> pd.Series:
        """Attribution per time step summed over features; lag 0 is the forecast's own bar."""
        return pd.Series(self.values.sum(axis=1)[::-1], index=pd.RangeIndex(len(self.values), name="lag"))


def _target_fn(model: CNNLSTMForecaster, target: str):
    if target not in TARGETS:
        raise ConfigError(
            f"unknown target {target!r}.{did_you_mean(target, TARGETS)} Targets: {', '.join(TARGETS)}."
        )
    if target == "pred_return":
        scale = float(model.ret_scale_)
        return lambda out: out[1] * scale
    k = TARGETS.index(target) - 1
    temperature = float(model.temperature_)
    return lambda out: torch.softmax(out[0] / temperature, dim=1)[:, k]


def integrated_gradients(
    model: CNNLSTMForecaster,
    frame: pd.DataFrame,
    *,
    at: Sequence[pd.Timestamp | str] | None = None,
    target: Literal["pred_return", "p_down", "p_flat", "p_up"] = "pred_return",
    n_steps: int = 64,
    baseline: np.ndarray | None = None,
) -> list[Attribution]:
    """Attribute CNN+LSTM forecasts to the features and time steps of their input windows.

    Parameters
    ----------
    model
        A fitted forecaster.
    frame
        One symbol's feature frame as for :meth:`CNNLSTMForecaster.predict`.
    at
        Bar times to explain; by default the last bar with a full window.
    target
        The output to attribute.
    n_steps
        Gauss-Legendre nodes along the path (64 gives a completeness gap near float64 rounding for these
        smooth networks; the gap is reported either way).
    baseline
        The reference window in the model's input units (raw feature values), shape ``(window, n_features)``
        or ``(n_features,)``; by default the training mean of each feature.

    Returns
    -------
    list of Attribution
        One per requested bar, in order.

    Raises
    ------
    EmptyRangeError
        A requested bar has no full window of finite features before it.
    """
    if not hasattr(model, "network_"):
        raise NotFittedError("integrated_gradients needs a fitted CNNLSTMForecaster; call fit or load first.")
    if not isinstance(n_steps, int) or n_steps < 2:
        raise ConfigError(f"n_steps must be an integer >= 2 (quadrature nodes), got {n_steps!r}.")
    frames = as_frames(frame, name="frame")
    if len(frames) != 1:
        raise DataFormatError(
            f"integrated_gradients explains one symbol's frame at a time, got {len(frames)}."
        )
    one = next(iter(frames.values()))
    index, values, _ = frame_arrays(one, model.feature_names_, need_close=False)
    window = model.config.window
    usable = window_end_mask(values, window)
    if at is None:
        if not usable.any():
            raise EmptyRangeError(f"no bar has {window} finite feature rows before it; pass a longer frame.")
        rows = [int(np.flatnonzero(usable)[-1])]
    else:
        rows = []
        for stamp in at:
            t = pd.Timestamp(stamp)
            t = t.tz_localize("UTC") if t.tzinfo is None else t
            pos = index.get_indexer([t])[0]
            if pos < 0:
                raise DataFormatError(f"bar {t.isoformat()} is not in the frame.")
            if not usable[pos]:
                raise EmptyRangeError(
                    f"bar {t.isoformat()} has no full window of {window} finite feature rows before it."
                )
            rows.append(int(pos))
    mean, std = np.asarray(model.scaler_mean_, np.float64), np.asarray(model.scaler_std_, np.float64)
    x = np.stack([(values[r - window + 1 : r + 1] - mean) / std for r in rows])
    if baseline is None:
        x0 = np.zeros_like(x[0])
    else:
        b = np.asarray(baseline, dtype=np.float64)
        if b.shape not in ((len(mean),), (window, len(mean))):
            raise DataFormatError(
                f"baseline must have shape ({len(mean)},) or ({window}, {len(mean)}), got {b.shape}."
            )
        x0 = np.broadcast_to((b - mean) / std, x[0].shape).copy()
    fn = _target_fn(model, target)
    network = copy.deepcopy(model.network_).to("cpu").double().eval()
    nodes, weights = np.polynomial.legendre.leggauss(n_steps)
    alphas, weights = (nodes + 1.0) / 2.0, weights / 2.0
    xt = torch.from_numpy(x)
    x0t = torch.from_numpy(x0).expand_as(xt)
    delta = xt - x0t
    total = torch.zeros_like(xt)
    for alpha, w in zip(alphas, weights, strict=True):
        point = (x0t + float(alpha) * delta).clone().requires_grad_(True)
        out = fn(network(point))
        (grad,) = torch.autograd.grad(out.sum(), point)
        total += float(w) * grad
    attributions = (delta * total).detach().numpy()
    with torch.no_grad():
        f_x = fn(network(xt)).numpy()
        f_0 = fn(network(x0t[:1])).numpy()[0]
    return [
        Attribution(index[r], target, attributions[i], list(model.feature_names_), float(f_x[i]), float(f_0))
        for i, r in enumerate(rows)
    ]


def tree_feature_importance(
    model: LightGBMForecaster, importance_type: Literal["gain", "split"] = "gain"
) -> pd.DataFrame:
    """LightGBM importance of each feature (summed over its lags) in the classifier and the regressor.

    Returns
    -------
    DataFrame
        Indexed by feature: ``classifier`` and ``regressor`` importance (total gain, or number of splits),
        each also as a share of its model's total (``classifier_share``, ``regressor_share``), sorted by
        ``classifier_share``.
    """
    if not isinstance(model, LightGBMForecaster):
        raise ConfigError(f"tree_feature_importance takes a LightGBMForecaster, got {type(model).__name__}.")
    if not hasattr(model, "classifier_"):
        raise NotFittedError("this LightGBMForecaster is not fitted; call fit first.")
    if importance_type not in ("gain", "split"):
        raise ConfigError(f"importance_type must be 'gain' or 'split', got {importance_type!r}.")
    names = model.feature_names_
    lags = len(model.classifier_.booster_.feature_name()) // len(names)
    out = {}
    for part, est in (("classifier", model.classifier_), ("regressor", model.regressor_)):
        raw = est.booster_.feature_importance(importance_type=importance_type).astype(np.float64)
        per_feature = raw.reshape(lags, len(names)).sum(axis=0)  # inputs are lag-major: oldest lag first
        out[part] = per_feature
        total = per_feature.sum()
        out[f"{part}_share"] = per_feature / total if total > 0 else np.full(len(names), np.nan)
    frame = pd.DataFrame(out, index=pd.Index(names, name="feature"))
    return frame.sort_values("classifier_share", ascending=False)


def _log_loss(model: Any, frames: Mapping[str, pd.DataFrame]) -> tuple[float, int]:
    losses = []
    for frame in frames.values():
        pred = model.predict(frame)
        close = frame["close"].to_numpy(dtype=np.float64)
        fwd = pd.Series(forward_log_return(close, model.config.horizon), index=frame.index).reindex(
            pred.index
        )
        ok = np.isfinite(fwd.to_numpy())
        labels = class_labels(fwd.to_numpy()[ok], model.flat_threshold_)
        proba = pred[["p_down", "p_flat", "p_up"]].to_numpy()[ok]
        losses.append(-np.log(np.clip(proba[np.arange(len(labels)), labels], 1e-12, 1.0)))
    joined = np.concatenate(losses) if losses else np.empty(0)
    if joined.size == 0:
        raise EmptyRangeError("no labelled forecast to score; pass frames with a close beyond the horizon.")
    return float(joined.mean()), int(joined.size)


def permutation_importance(
    model: BaselineForecaster | CNNLSTMForecaster,
    frames: Mapping[str, pd.DataFrame] | pd.DataFrame,
    *,
    n_repeats: int = 5,
    seed: int = 0,
) -> pd.DataFrame:
    """Increase of the forecast's log loss when one feature column is shuffled (rows permuted per symbol).

    Parameters
    ----------
    model
        A fitted forecaster with ``predict`` (class probabilities), ``feature_names_``, ``flat_threshold_``.
    frames
        Held-out frames (``{symbol: frame}`` or one frame) with the features and ``close`` (for labels).
    n_repeats
        Shuffles per feature; the mean and standard deviation of the increase are reported.
    seed
        Seed of the shuffles.

    Returns
    -------
    DataFrame
        Indexed by feature: ``importance`` (mean log-loss increase, nats), ``std``, sorted descending;
        ``attrs["baseline_log_loss"]`` and ``attrs["n_scored"]`` hold the unshuffled score and its count.
    """
    if not hasattr(model, "feature_names_"):
        raise NotFittedError(f"this {type(model).__name__} is not fitted; call fit first.")
    if not isinstance(n_repeats, int) or n_repeats < 1:
        raise ConfigError(f"n_repeats must be an integer >= 1, got {n_repeats!r}.")
    data = {k: v for k, v in as_frames(frames, name="frames").items()}
    for sym, f in data.items():
        if "close" not in f.columns:
            raise DataFormatError(f"frames[{sym!r}] needs a close column to label the forecasts.")
    base, n = _log_loss(model, data)
    rng = np.random.default_rng(seed)
    rows = []
    for feature in model.feature_names_:
        increases = []
        for _ in range(n_repeats):
            shuffled = {}
            for sym, f in data.items():
                g = f.copy()
                g[feature] = rng.permutation(g[feature].to_numpy())
                shuffled[sym] = g
            increases.append(_log_loss(model, shuffled)[0] - base)
        rows.append(
            {"feature": feature, "importance": float(np.mean(increases)), "std": float(np.std(increases))}
        )
    out = pd.DataFrame(rows).set_index("feature").sort_values("importance", ascending=False)
    out.attrs["baseline_log_loss"] = base
    out.attrs["n_scored"] = n
    return out
