"""Bias and fairness checks: does a model work on every slice of the market, or only on some?

"Fair" for a trading model means it does not quietly work for one slice of the market and fail on another.
A :class:`BiasReport` breaks a model's out-of-sample behaviour down by slice and tests whether the slices
differ by more than chance:

* **Slices** (:func:`slice_labels`), each from data up to the bar only: ``asset_class``, ``symbol``,
  ``vol_regime`` (terciles of the trailing realised volatility; the tercile thresholds are expanding quantiles
  of the symbol's *past* volatility, so a label never reads a later bar), ``trend_regime`` (``up`` when the
  trailing ``trend_fast``-bar mean close is above the ``trend_slow``-bar one), ``time_of_day`` (the UTC hour;
  one slice for daily bars) and ``day_of_week``. Bars before a regime can be known are labelled
  ``warm-up``.
* **Forecasters** (:func:`forecast_bias`): per slice the hit rate (the sign of ``p_up - p_down`` against the
  sign of the realised return), the 3-class accuracy, the mean forecast error ``pred_return - realised`` and
  its sign, the direction bias (mean of ``(p_up - p_down) - (1{up} - 1{down})``: positive is too bullish),
  the top-label expected calibration error, the Brier score and the log loss.
* **Strategies and agents** (:func:`returns_bias`): per slice the annualised Sharpe ratio, mean and total
  return, hit rate (winning bars among bars with a non-zero return) and exposure. A return realised over bar
  ``t`` is sliced by the labels of bar ``t - 1``, where its position was decided: the regime it was chosen
  in, not one that its own return helped to define.
* **Disparity tests**, per dimension, over the slices with at least ``min_slice_size`` bars: a chi-square
  test of independence of hits and slices; Kruskal-Wallis on the per-bar forecast errors and Brier scores
  (forecasters) or returns (strategies); a permutation test of the spread of per-slice Sharpe ratios
  (strategies). The p-values of one report are corrected together for multiple testing (Holm by default).
* **Minimum slice size.** A slice with fewer bars than ``min_slice_size`` stays in the table with status
  ``too small`` and its figures, but takes part in no test and no promotion floor; a ``warm-up`` slice is
  shown the same way. Nothing is dropped silently; a dimension with fewer than two usable slices gets a test
  row saying so.

The report is stored with the model in the registry (:func:`store_bias_report`: ``alphaloom/bias.json`` in
the version's run, its headline figures as ``bias.*`` metrics and tags, and an audit record) and rendered
by :func:`write_bias_html`. :meth:`BiasReport.worst_slices` feeds the promotion gate's slice floors
(:class:`~alphaloom.registry.gates.PromotionGateConfig` ``min_slice_hit_rate`` / ``min_slice_sharpe``).
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
from pydantic import Field, field_validator, model_validator

from alphaloom.core.config import ComponentConfig
from alphaloom.core.exceptions import ConfigError, DataFormatError, did_you_mean
from alphaloom.risk import measures

if TYPE_CHECKING:
    from alphaloom.registry.registry import ModelRegistry, ModelVersionInfo

__all__ = [
    "BIAS_ARTEFACT",
    "DIMENSIONS",
    "BiasConfig",
    "BiasReport",
    "adjust_p_values",
    "forecast_bias",
    "load_bias_report",
    "returns_bias",
    "slice_labels",
    "store_bias_report",
    "write_bias_html",
]

#: The slice dimensions, in report order.
DIMENSIONS: tuple[str, ...] = (
    "asset_class",
    "symbol",
    "vol_regime",
    "trend_regime",
    "time_of_day",
    "day_of_week",
)
#: Label of bars whose regime cannot be known yet (not enough history).
WARM_UP = "warm-up"
#: Where a report lives in a model version's run.
BIAS_ARTEFACT = "alphaloom/bias.json"

_FORMAT = "alphaloom.bias_report"
_FORMAT_VERSION = 1
_PROBA = ("p_down", "p_flat", "p_up")
_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_ORDER = {"vol_regime": ("low", "mid", "high"), "trend_regime": ("down", "up"), "day_of_week": _DAYS}
#: The per-slice metric each promotion floor applies to, and whether higher is better.
FLOOR_METRICS: Mapping[str, str] = {"hit_rate": "hit_rate", "sharpe": "sharpe"}


class BiasConfig(ComponentConfig):
    """Settings of the bias and fairness checks.

    Attributes
    ----------
    dimensions
        Which slice dimensions to report (a subset of :data:`DIMENSIONS`).
    min_slice_size
        Fewest bars a slice needs to take part in the disparity tests and the promotion floors; smaller
        slices are shown with status ``too small``.
    alpha
        Significance level, applied to the corrected p-values.
    correction
        Multiple-testing correction over all tests of one report: ``holm`` (step-down Bonferroni, controls
        the family-wise error), ``bonferroni``, ``benjamini_hochberg`` (controls the false discovery rate)
        or ``none``.
    vol_window
        Bars of log returns in the trailing realised volatility.
    vol_min_history
        Volatility values a symbol needs before its tercile thresholds are trusted; earlier bars are
        ``warm-up``.
    trend_fast, trend_slow
        Bars of the two trailing mean closes whose order is the trend regime.
    ece_bins
        Equal-width confidence bins of the expected calibration error.
    n_permutations, seed
        Of the permutation test of the Sharpe spread. Its smallest p-value is ``1 / (n_permutations + 1)``,
        so keep ``n_permutations`` well above (number of tests) / ``alpha`` for a corrected p-value to be
        able to reach ``alpha``.
    """

    dimensions: tuple[str, ...] = DIMENSIONS
    min_slice_size: int = Field(default=30, ge=2)
    alpha: float = Field(default=0.05, gt=0.0, lt=0.5)
    correction: Literal["holm", "bonferroni", "benjamini_hochberg", "none"] = "holm"
    vol_window: int = Field(default=20, ge=2)
    vol_min_history: int = Field(default=60, ge=3)
    trend_fast: int = Field(default=50, ge=1)
    trend_slow: int = Field(default=200, ge=2)
    ece_bins: int = Field(default=10, ge=2, le=100)
    n_permutations: int = Field(default=2000, ge=99)
    seed: int = 0

    @field_validator("dimensions")
    @classmethod
    def _known_dimensions(cls, dims: tuple[str, ...]) -> tuple[str, ...]:
        if not dims:
            raise ValueError(f"at least one dimension is needed; dimensions are {', '.join(DIMENSIONS)}")
        bad = [d for d in dims if d not in DIMENSIONS]
        if bad:
            hint = "".join(did_you_mean(d, DIMENSIONS) for d in bad)
            raise ValueError(f"unknown dimension(s) {bad}.{hint} Dimensions are {', '.join(DIMENSIONS)}")
        if len(set(dims)) != len(dims):
            raise ValueError(f"dimensions repeat a name: {dims}")
        return dims

    @model_validator(mode="after")
    def _ordered_trend(self) -> BiasConfig:
        if self.trend_fast >= self.trend_slow:
            raise ValueError(
                f"trend_fast ({self.trend_fast}) must be shorter than trend_slow ({self.trend_slow})"
            )
        return self


# --------------------------------------------------------------------------------------------- slices
def _bars_frame(bars: pd.DataFrame, needed: Sequence[str], what: str) -> pd.DataFrame:
    if not isinstance(bars, pd.DataFrame):
        raise DataFormatError(f"{what} must be a DataFrame, got {type(bars).__name__}.")
    missing = [c for c in needed if c not in bars.columns]
    if missing:
        raise DataFormatError(
            f"{what} lacks column(s) {missing}; it needs {list(needed)} (got {list(bars.columns)})."
        )
    ts = bars["ts"]
    if not isinstance(ts.dtype, pd.DatetimeTZDtype):
        raise DataFormatError(f"{what}: 'ts' must hold timezone-aware UTC times, got dtype {ts.dtype}.")
    frame = bars.assign(ts=ts.dt.tz_convert("UTC"))
    if frame.duplicated(["symbol", "ts"]).any():
        raise DataFormatError(f"{what} repeats a (symbol, ts) pair; pass one row per symbol and bar.")
    return frame.sort_values(["symbol", "ts"]).reset_index(drop=True)


def slice_labels(
    bars: pd.DataFrame,
    config: BiasConfig | None = None,
    asset_classes: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """Label every bar with its slice in each dimension, from data up to that bar only.

    Parameters
    ----------
    bars
        Canonical bars (``symbol``, ``ts``, ``close``; other columns ignored), the whole history available
        before and during the period judged, so that trailing regimes are known from its first bar.
    config
        Windows of the regimes.
    asset_classes
        ``{symbol: asset class}`` (e.g. from the store's instruments); a symbol missing from it is
        ``unknown``.

    Returns
    -------
    DataFrame
        ``symbol``, ``ts`` and one string column per dimension of :data:`DIMENSIONS`, one row per bar,
        sorted by ``symbol, ts``.
    """
    cfg = config or BiasConfig()
    frame = _bars_frame(bars, ("symbol", "ts", "close"), "bars")
    close = frame["close"].to_numpy(dtype=np.float64)
    if not (np.isfinite(close).all() and (close > 0).all()):
        raise DataFormatError("bars: 'close' must hold positive finite prices to label regimes.")
    classes = {str(k): str(getattr(v, "value", v)) for k, v in (asset_classes or {}).items()}
    parts = []
    for symbol, g in frame.groupby("symbol", sort=True):
        c = pd.Series(g["close"].to_numpy(dtype=np.float64))
        ret = np.log(c).diff()
        vol = ret.rolling(cfg.vol_window).std()
        # Thresholds from the expanding distribution of volatility up to and including this bar.
        low = vol.expanding(min_periods=cfg.vol_min_history).quantile(1.0 / 3.0)
        high = vol.expanding(min_periods=cfg.vol_min_history).quantile(2.0 / 3.0)
        vol_regime = np.where(vol <= low, "low", np.where(vol <= high, "mid", "high")).astype(object)
        vol_regime[(vol.isna() | low.isna()).to_numpy()] = WARM_UP
        fast = c.rolling(cfg.trend_fast).mean()
        slow = c.rolling(cfg.trend_slow).mean()
        trend = np.where(fast > slow, "up", "down").astype(object)
        trend[slow.isna().to_numpy()] = WARM_UP
        ts = pd.DatetimeIndex(g["ts"])
        parts.append(
            pd.DataFrame(
                {
                    "symbol": str(symbol),
                    "ts": ts,
                    "asset_class": classes.get(str(symbol), "unknown"),
                    "vol_regime": vol_regime.astype(str),
                    "trend_regime": trend.astype(str),
                    "time_of_day": [f"{h:02d}:00 UTC" for h in ts.hour],
                    "day_of_week": list(ts.day_name()),
                }
            )
        )
    out = pd.concat(parts, ignore_index=True)
    return out[["symbol", "ts", *[d for d in DIMENSIONS if d != "symbol"]]]


def _sort_key(dimension: str, label: str) -> tuple[int, int, str]:
    if label == WARM_UP:
        return (1, 0, label)
    order = _ORDER.get(dimension)
    if order is not None and label in order:
        return (0, order.index(label), label)
    return (0, len(order or ()), label)


# ------------------------------------------------------------------------------------- p-value helpers
def adjust_p_values(p_values: Sequence[float], method: str = "holm") -> np.ndarray:
    """Multiple-testing corrected p-values (NaN entries stay NaN and are not counted as tests).

    Written here because scipy offers only the false-discovery-rate corrections
    (``scipy.stats.false_discovery_control``) and statsmodels is not a dependency; Holm's step-down
    procedure is a few lines.

    Parameters
    ----------
    p_values
        Raw p-values, shape ``(m,)``.
    method
        ``holm``, ``bonferroni``, ``benjamini_hochberg`` or ``none``.

    Returns
    -------
    ndarray of shape (m,)
        Adjusted p-values, each in ``[0, 1]`` and at least its raw value.
    """
    p = np.asarray(p_values, dtype=np.float64)
    methods = ("holm", "bonferroni", "benjamini_hochberg", "none")
    if method not in methods:
        raise ConfigError(f"unknown correction {method!r}.{did_you_mean(method, methods)}")
    out = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    m = int(ok.sum())
    if m == 0:
        return out
    q = p[ok]
    if method == "none":
        adjusted = q
    elif method == "bonferroni":
        adjusted = np.minimum(q * m, 1.0)
    elif method == "holm":
        order = np.argsort(q)
        stepped = np.maximum.accumulate((m - np.arange(m)) * q[order])
        adjusted = np.empty(m)
        adjusted[order] = np.minimum(stepped, 1.0)
    else:
        from scipy.stats import false_discovery_control

        adjusted = false_discovery_control(q, method="bh")
    out[ok] = adjusted
    return out


def _chi_square(successes: np.ndarray, totals: np.ndarray) -> tuple[float, float]:
    table = np.vstack([successes, totals - successes])
    if (table.sum(axis=1) == 0).any():  # every slice all hits (or all misses): no disparity to test
        return 0.0, 1.0
    from scipy.stats import chi2_contingency  # scipy.stats is imported on use: alphaloom.registry stays light

    res = chi2_contingency(table, correction=False)
    return float(res.statistic), float(res.pvalue)


def _kruskal(groups: Sequence[np.ndarray]) -> tuple[float, float]:
    pooled = np.concatenate(groups)
    if np.ptp(pooled) == 0:  # all values equal: nothing differs
        return 0.0, 1.0
    from scipy.stats import kruskal

    res = kruskal(*groups)
    return float(res.statistic), float(res.pvalue)


def _sharpe_spread_test(
    values: np.ndarray, codes: np.ndarray, k: int, n_permutations: int, seed: int
) -> tuple[float, float]:
    # Range (max - min) of the per-bar Sharpe ratios of the k slices; the null distribution permutes the
    # slice labels of the bars. Group sums by bincount keep one permutation at a few array passes.
    def spread(labels: np.ndarray) -> float:
        n = np.bincount(labels, minlength=k).astype(np.float64)
        s1 = np.bincount(labels, weights=values, minlength=k)
        s2 = np.bincount(labels, weights=values * values, minlength=k)
        mean = s1 / n
        var = (s2 - n * mean * mean) / np.maximum(n - 1.0, 1.0)
        sd = np.sqrt(np.maximum(var, 0.0))
        with np.errstate(divide="ignore", invalid="ignore"):
            sharpe = np.where(sd > 0, mean / sd, 0.0)
        return float(sharpe.max() - sharpe.min())

    observed = spread(codes)
    rng = np.random.default_rng(seed)
    exceed = sum(spread(rng.permutation(codes)) >= observed - 1e-15 for _ in range(n_permutations))
    return observed, (1.0 + exceed) / (1.0 + n_permutations)


# ------------------------------------------------------------------------------------------------ report
@dataclass(frozen=True)
class BiasReport:
    """A model's behaviour by slice and the tests of disparity between slices.

    Attributes
    ----------
    model
        What was judged (``"name/version"``, or any label).
    kind
        ``"forecast"`` (class probabilities against realised returns) or ``"returns"`` (a strategy's
        per-bar returns).
    slices
        One row per (dimension, slice): ``dimension``, ``slice``, ``n``, ``status`` (``ok``, ``too small``,
        ``warm-up``) and the metrics of the kind (see :func:`forecast_bias` and :func:`returns_bias`).
    tests
        One row per (dimension, metric): ``dimension``, ``metric``, ``test``, ``n_slices`` (that took part),
        ``statistic``, ``p_value``, ``p_adjusted``, ``significant`` and ``note``.
    config
        The settings used.
    n_bars
        Bars judged.
    period
        First and last bar judged, ISO UTC.
    notes
        What else the reader should know (bars without a label, dimensions with one slice, ...).
    """

    model: str
    kind: Literal["forecast", "returns"]
    slices: pd.DataFrame
    tests: pd.DataFrame
    config: BiasConfig
    n_bars: int
    period: tuple[str, str]
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def significant(self) -> pd.DataFrame:
        """The tests whose corrected p-value is below ``alpha``."""
        return self.tests[self.tests["significant"].astype(bool)]

    def worst_slices(self) -> dict[str, tuple[str, float]]:
        """Per floor metric (``hit_rate``, and ``sharpe`` for returns), the lowest value over the slices
        with status ``ok``, as ``(dimension=slice, value)``."""
        out: dict[str, tuple[str, float]] = {}
        usable = self.slices[self.slices["status"] == "ok"]
        for metric in FLOOR_METRICS:
            if metric not in usable.columns:
                continue
            values = usable[metric].astype(float)
            if not np.isfinite(values).any():
                continue
            row = usable.loc[values.idxmin()]
            out[metric] = (f"{row['dimension']}={row['slice']}", float(row[metric]))
        return out

    def summary(self) -> dict[str, float]:
        """Headline figures, logged as the version's ``bias.*`` metrics."""
        status = self.slices["status"]
        out = {
            "bias.n_bars": float(self.n_bars),
            "bias.n_slices": float(len(self.slices)),
            "bias.n_slices_too_small": float((status == "too small").sum()),
            "bias.n_tests": float(np.isfinite(self.tests["p_value"].astype(float)).sum()),
            "bias.n_significant": float(self.tests["significant"].astype(bool).sum()),
        }
        adjusted = self.tests["p_adjusted"].astype(float)
        out["bias.min_p_adjusted"] = float(adjusted.min()) if np.isfinite(adjusted).any() else math.nan
        for metric, (_, value) in self.worst_slices().items():
            out[f"bias.worst_{metric}"] = value
        return out

    def tags(self) -> dict[str, str]:
        """String tags for the registry: the worst slices, the significant disparities, the config hash."""
        out = {
            "bias.kind": self.kind,
            "bias.config_hash": self.config.config_hash(),
            "bias.disparities": ", ".join(
                f"{r.dimension}:{r.metric}" for r in self.significant.itertuples(index=False)
            )
            or "none",
        }
        for metric, (label, value) in self.worst_slices().items():
            out[f"bias.worst_{metric}_slice"] = f"{label} ({value:.4g})"
        return out

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (NaN as null); :meth:`from_dict` reads it back."""
        return {
            "format": _FORMAT,
            "version": _FORMAT_VERSION,
            "model": self.model,
            "kind": self.kind,
            "config": self.config.model_dump(mode="json"),
            "n_bars": self.n_bars,
            "period": list(self.period),
            "notes": list(self.notes),
            "slices": _records(self.slices),
            "tests": _records(self.tests),
            "columns": {"slices": list(self.slices.columns), "tests": list(self.tests.columns)},
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BiasReport:
        if not isinstance(data, Mapping) or data.get("format") != _FORMAT:
            raise DataFormatError("not an alphaloom bias report (format field missing or different).")
        if data.get("version") != _FORMAT_VERSION:
            raise DataFormatError(
                f"bias report format version {data.get('version')}; this alphaloom reads {_FORMAT_VERSION}. "
                "Recompute it with `alphaloom models bias`."
            )
        columns = data.get("columns", {})
        slices = pd.DataFrame(data["slices"], columns=columns.get("slices"))
        tests = pd.DataFrame(data["tests"], columns=columns.get("tests"))
        for col in slices.columns:
            if col not in ("dimension", "slice", "status", "error_sign"):
                slices[col] = slices[col].astype(float)
        slices["n"] = slices["n"].astype(int)
        for col in ("statistic", "p_value", "p_adjusted"):
            tests[col] = tests[col].astype(float)
        tests["significant"] = tests["significant"].astype(bool)
        tests["n_slices"] = tests["n_slices"].astype(int)
        return cls(
            model=str(data["model"]),
            kind=data["kind"],
            slices=slices,
            tests=tests,
            config=BiasConfig.from_dict(dict(data["config"]), source="bias report"),
            n_bars=int(data["n_bars"]),
            period=(str(data["period"][0]), str(data["period"][1])),
            notes=tuple(str(n) for n in data.get("notes", ())),
        )


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    out = []
    for row in frame.to_dict(orient="records"):
        clean = {}
        for key, value in row.items():
            if isinstance(value, np.generic):
                value = value.item()
            if isinstance(value, float) and not math.isfinite(value):
                value = None
            clean[str(key)] = value
        out.append(clean)
    return out


# ------------------------------------------------------------------------------------------- forecasts
def _expected_calibration_error(proba: np.ndarray, labels: np.ndarray, n_bins: int) -> float:
    # The top-label ECE of models.cnn_lstm.expected_calibration_error (Guo et al., 2017), written again
    # because the registry may not import the models package (torch); a test checks the two agree.
    if len(labels) == 0:
        return math.nan
    confidence = proba.max(axis=1)
    correct = (proba.argmax(axis=1) == labels).astype(np.float64)
    bins = np.minimum((confidence * n_bins).astype(np.int64), n_bins - 1)
    gap = np.bincount(bins, weights=correct - confidence, minlength=n_bins)
    return float(np.abs(gap).sum() / len(labels))


def _join_labels(
    values: pd.DataFrame, labels: pd.DataFrame, cfg: BiasConfig, *, decision_lag: int
) -> tuple[pd.DataFrame, list[str]]:
    lab = _bars_frame(labels, ("symbol", "ts", *[d for d in cfg.dimensions if d != "symbol"]), "labels")
    dims = [d for d in cfg.dimensions if d != "symbol"]
    moving = [d for d in dims if d != "asset_class"]  # an asset class does not change from bar to bar
    if decision_lag and moving:
        shifted = lab.groupby("symbol", sort=False)[moving].shift(decision_lag)
        lab = lab.assign(**{d: shifted[d].fillna(WARM_UP) for d in moving})
    merged = values.merge(lab[["symbol", "ts", *dims]], on=["symbol", "ts"], how="left")
    notes = []
    unlabelled = merged[dims[0]].isna() if dims else pd.Series(False, index=merged.index)
    if unlabelled.any():
        notes.append(
            f"{int(unlabelled.sum())} bar(s) had no slice labels (no bar history at their time); they are "
            "labelled 'unknown'."
        )
        merged[dims] = merged[dims].fillna("unknown")
    return merged, notes


def _frame_period(frame: pd.DataFrame) -> tuple[str, str]:
    if frame.empty:
        return ("", "")
    return (frame["ts"].min().isoformat(), frame["ts"].max().isoformat())


def _sign(mean_error: float) -> str:
    if not math.isfinite(mean_error):
        return ""
    return "over" if mean_error > 0 else "under"


def _status(n: int, label: str, cfg: BiasConfig) -> str:
    if label in (WARM_UP, "unknown"):
        return WARM_UP
    return "too small" if n < cfg.min_slice_size else "ok"


def forecast_bias(
    predictions: pd.DataFrame,
    labels: pd.DataFrame,
    *,
    flat_threshold: float,
    config: BiasConfig | None = None,
    model: str = "",
) -> BiasReport:
    """Bias of a forecaster's out-of-sample predictions, slice by slice.

    Parameters
    ----------
    predictions
        One row per (symbol, bar) judged: ``symbol``, ``ts`` (UTC), ``p_down``, ``p_flat``, ``p_up`` (rows
        summing to 1), ``realised`` (the forward log return the forecast was about) and optionally
        ``pred_return`` (the forecast log return). Rows whose ``realised`` is NaN (label not known yet) are
        left out and counted in the notes.
    labels
        :func:`slice_labels` of the bars (the forecast at ``t`` is sliced by the labels of bar ``t``, the
        bar it was made at).
    flat_threshold
        ``|realised| <= flat_threshold`` is the flat class (the forecaster's ``flat_threshold_``).
    config
        Slices, tests and their settings.
    model
        A label for the report.

    Returns
    -------
    BiasReport
        ``kind="forecast"``; slice columns ``n``, ``status``, ``hit_rate``, ``accuracy``, ``mean_error``
        (log-return units; NaN without ``pred_return``), ``error_sign`` (``over``, ``under``),
        ``direction_bias``, ``ece``, ``brier``, ``log_loss``; tests ``hit_rate`` (chi-square),
        ``forecast_error`` and ``brier`` (Kruskal-Wallis).
    """
    cfg = config or BiasConfig()
    if not (
        isinstance(flat_threshold, int | float) and math.isfinite(flat_threshold) and flat_threshold >= 0
    ):
        raise ConfigError(f"flat_threshold must be a finite number >= 0, got {flat_threshold!r}.")
    frame = _bars_frame(predictions, ("symbol", "ts", *_PROBA, "realised"), "predictions")
    proba_all = frame[list(_PROBA)].to_numpy(dtype=np.float64)
    if not np.isfinite(proba_all).all() or (proba_all < -1e-9).any() or (proba_all > 1 + 1e-9).any():
        raise DataFormatError("predictions: p_down, p_flat and p_up must be finite probabilities in [0, 1].")
    if np.abs(proba_all.sum(axis=1) - 1.0).max(initial=0.0) > 1e-4:
        raise DataFormatError("predictions: p_down + p_flat + p_up must be 1 on every row.")
    notes: list[str] = []
    pending = frame["realised"].isna()
    if pending.any():
        notes.append(f"{int(pending.sum())} forecast(s) without a realised return yet were left out.")
    frame = frame[~pending].reset_index(drop=True)
    merged, more = _join_labels(frame, labels, cfg, decision_lag=0)
    notes += more
    proba = merged[list(_PROBA)].to_numpy(dtype=np.float64)
    realised = merged["realised"].to_numpy(dtype=np.float64)
    y = np.ones(len(realised), dtype=np.int64)
    y[realised < -flat_threshold] = 0
    y[realised > flat_threshold] = 2
    onehot = np.eye(3)[y]
    edge = proba[:, 2] - proba[:, 0]
    hit = np.where(realised != 0, np.sign(edge) == np.sign(realised), np.nan)
    has_return = "pred_return" in merged.columns
    error = merged["pred_return"].to_numpy(dtype=np.float64) - realised if has_return else None
    direction_error = edge - (onehot[:, 2] - onehot[:, 0])
    brier = ((proba - onehot) ** 2).sum(axis=1)
    logloss = -np.log(np.clip(proba[np.arange(len(y)), y], 1e-12, 1.0))
    per_bar = pd.DataFrame(
        {
            "hit": hit,
            "correct": (proba.argmax(axis=1) == y).astype(np.float64),
            "error": error if error is not None else np.full(len(y), np.nan),
            "direction_error": direction_error,
            "brier": brier,
            "logloss": logloss,
        }
    )
    if not has_return:
        notes.append("no pred_return column: mean_error is empty and the error test uses direction_error.")
    err_col = "error" if has_return else "direction_error"

    rows, tests = [], []
    for dim in cfg.dimensions:
        groups = merged.groupby(dim, sort=False).indices
        usable: list[tuple[str, np.ndarray]] = []
        for label in sorted(groups, key=lambda s: _sort_key(dim, str(s))):
            idx = groups[label]
            g = per_bar.iloc[idx]
            n = len(idx)
            status = _status(n, str(label), cfg)
            mean_error = float(g["error"].mean()) if has_return else math.nan
            rows.append(
                {
                    "dimension": dim,
                    "slice": str(label),
                    "n": n,
                    "status": status,
                    "hit_rate": float(np.nanmean(g["hit"])) if g["hit"].notna().any() else math.nan,
                    "accuracy": float(g["correct"].mean()),
                    "mean_error": mean_error,
                    "error_sign": _sign(mean_error),
                    "direction_bias": float(g["direction_error"].mean()),
                    "ece": _expected_calibration_error(proba[idx], y[idx], cfg.ece_bins),
                    "brier": float(g["brier"].mean()),
                    "log_loss": float(g["logloss"].mean()),
                }
            )
            if status == "ok":
                usable.append((str(label), idx))
        tests += _forecast_tests(dim, usable, per_bar, err_col, cfg)
    return _finish(model, "forecast", rows, tests, cfg, merged, notes)


def _too_few(dim: str, metric: str, test: str, k: int, cfg: BiasConfig) -> dict[str, Any]:
    return {
        "dimension": dim,
        "metric": metric,
        "test": test,
        "n_slices": k,
        "statistic": math.nan,
        "p_value": math.nan,
        "note": f"fewer than 2 slices with at least {cfg.min_slice_size} bars: nothing to compare",
    }


def _forecast_tests(
    dim: str, usable: list[tuple[str, np.ndarray]], per_bar: pd.DataFrame, err_col: str, cfg: BiasConfig
) -> list[dict[str, Any]]:
    k = len(usable)
    specs = (("hit_rate", "chi-square"), ("forecast_error", "kruskal-wallis"), ("brier", "kruskal-wallis"))
    if k < 2:
        return [_too_few(dim, metric, test, k, cfg) for metric, test in specs]
    hits = [per_bar["hit"].to_numpy()[idx] for _, idx in usable]
    hits = [h[np.isfinite(h)] for h in hits]
    chi, p_chi = _chi_square(np.array([h.sum() for h in hits]), np.array([len(h) for h in hits], dtype=float))
    err = [per_bar[err_col].to_numpy()[idx] for _, idx in usable]
    h_err, p_err = _kruskal(err)
    h_brier, p_brier = _kruskal([per_bar["brier"].to_numpy()[idx] for _, idx in usable])
    return [
        {"dimension": dim, "metric": "hit_rate", "test": "chi-square", "n_slices": k, "statistic": chi,
         "p_value": p_chi, "note": ""},
        {"dimension": dim, "metric": "forecast_error", "test": "kruskal-wallis", "n_slices": k,
         "statistic": h_err, "p_value": p_err, "note": "" if err_col == "error" else "on direction_error"},
        {"dimension": dim, "metric": "brier", "test": "kruskal-wallis", "n_slices": k, "statistic": h_brier,
         "p_value": p_brier, "note": ""},
    ]  # fmt: skip


def _finish(
    model: str,
    kind: Literal["forecast", "returns"],
    rows: list[dict[str, Any]],
    tests: list[dict[str, Any]],
    cfg: BiasConfig,
    merged: pd.DataFrame,
    notes: list[str],
) -> BiasReport:
    slices = pd.DataFrame(rows)
    test_frame = pd.DataFrame(tests)
    test_frame["p_adjusted"] = adjust_p_values(test_frame["p_value"].to_numpy(dtype=float), cfg.correction)
    test_frame["significant"] = test_frame["p_adjusted"].fillna(1.0) < cfg.alpha
    test_frame = test_frame[
        [
            "dimension",
            "metric",
            "test",
            "n_slices",
            "statistic",
            "p_value",
            "p_adjusted",
            "significant",
            "note",
        ]
    ]
    for dim in cfg.dimensions:
        n_slices = int((slices["dimension"] == dim).sum())
        if n_slices == 1:
            only = slices.loc[slices["dimension"] == dim, "slice"].iloc[0]
            notes.append(f"{dim}: every bar is in one slice ({only}); nothing to compare.")
    small = slices[slices["status"] == "too small"]
    if len(small):
        listed = ", ".join(f"{r.dimension}={r.slice} ({r.n})" for r in small.itertuples(index=False))
        notes.append(
            f"{len(small)} slice(s) have fewer than {cfg.min_slice_size} bars and take part in no test or "
            f"floor: {listed}."
        )
    return BiasReport(
        model=model,
        kind=kind,
        slices=slices,
        tests=test_frame.reset_index(drop=True),
        config=cfg,
        n_bars=len(merged),
        period=_frame_period(merged),
        notes=tuple(notes),
    )


# --------------------------------------------------------------------------------------------- returns
def returns_bias(
    returns: pd.DataFrame,
    labels: pd.DataFrame,
    *,
    periods_per_year: float | Mapping[str, float] = 252.0,
    config: BiasConfig | None = None,
    model: str = "",
) -> BiasReport:
    """Bias of a strategy's (an agent's, the ensemble's) per-bar returns, slice by slice.

    Parameters
    ----------
    returns
        ``symbol``, ``ts`` (UTC) and ``return`` (simple return realised over the bar ending at ``ts``, after
        costs), one row per symbol and bar judged.
    labels
        :func:`slice_labels` of the bars, including the bar before each return's: a return over bar ``t`` is
        sliced by the labels of bar ``t - 1`` (where its position was decided).
    periods_per_year
        Bars per year, one number or ``{symbol: bars per year}``; a slice's Sharpe ratio uses the mean over
        its bars.
    config, model
        As in :func:`forecast_bias`.

    Returns
    -------
    BiasReport
        ``kind="returns"``; slice columns ``n``, ``status``, ``sharpe`` (annualised), ``mean_return``,
        ``total_return`` (compounded), ``hit_rate``, ``exposure`` (share of bars with a non-zero return);
        tests ``sharpe`` (permutation test of the spread of slice Sharpe ratios), ``hit_rate``
        (chi-square), ``return`` (Kruskal-Wallis).
    """
    cfg = config or BiasConfig()
    frame = _bars_frame(returns, ("symbol", "ts", "return"), "returns")
    r_all = frame["return"].to_numpy(dtype=np.float64)
    if not np.isfinite(r_all).all():
        raise DataFormatError(
            f"returns: {int((~np.isfinite(r_all)).sum())} non-finite return(s); every judged bar needs one."
        )
    if isinstance(periods_per_year, Mapping):
        missing = sorted(set(frame["symbol"]) - set(periods_per_year))
        if missing:
            raise ConfigError(f"periods_per_year has no entry for {missing}.")
        ppy = frame["symbol"].map(periods_per_year).to_numpy(dtype=np.float64)
    else:
        ppy = np.full(len(frame), float(periods_per_year))
    if not (np.isfinite(ppy).all() and (ppy > 0).all()):
        raise ConfigError("periods_per_year must be positive.")
    merged, notes = _join_labels(frame, labels, cfg, decision_lag=1)
    merged = merged.assign(_ppy=merged["symbol"].map(dict(zip(frame["symbol"], ppy, strict=True))))
    r = merged["return"].to_numpy(dtype=np.float64)
    ppy_bar = merged["_ppy"].to_numpy(dtype=np.float64)
    rows, tests = [], []
    for dim in cfg.dimensions:
        groups = merged.groupby(dim, sort=False).indices
        usable: list[tuple[str, np.ndarray]] = []
        for label in sorted(groups, key=lambda s: _sort_key(dim, str(s))):
            idx = groups[label]
            g = r[idx]
            n = len(idx)
            status = _status(n, str(label), cfg)
            rows.append(
                {
                    "dimension": dim,
                    "slice": str(label),
                    "n": n,
                    "status": status,
                    "sharpe": measures.sharpe_ratio(g, float(ppy_bar[idx].mean())),
                    "mean_return": float(g.mean()),
                    "total_return": measures.total_return(g),
                    "hit_rate": measures.hit_rate(g),
                    "exposure": float(np.mean(g != 0.0)),
                }
            )  # fmt: skip
            if status == "ok":
                usable.append((str(label), idx))
        tests += _returns_tests(dim, usable, r, cfg)
    return _finish(model, "returns", rows, tests, cfg, merged, notes)


def _returns_tests(
    dim: str, usable: list[tuple[str, np.ndarray]], r: np.ndarray, cfg: BiasConfig
) -> list[dict[str, Any]]:
    k = len(usable)
    specs = (("sharpe", "permutation"), ("hit_rate", "chi-square"), ("return", "kruskal-wallis"))
    if k < 2:
        return [_too_few(dim, metric, test, k, cfg) for metric, test in specs]
    values = np.concatenate([r[idx] for _, idx in usable])
    codes = np.concatenate([np.full(len(idx), i) for i, (_, idx) in enumerate(usable)])
    spread, p_spread = _sharpe_spread_test(values, codes, k, cfg.n_permutations, cfg.seed)
    active = [r[idx][r[idx] != 0.0] for _, idx in usable]
    if sum(len(a) > 0 for a in active) >= 2:
        chi, p_chi = _chi_square(
            np.array([(a > 0).sum() for a in active], dtype=float),
            np.array([len(a) for a in active], dtype=float),
        )
        chi_note = ""
    else:
        chi, p_chi, chi_note = math.nan, math.nan, "fewer than 2 slices with a non-zero return"
    h, p_h = _kruskal([r[idx] for _, idx in usable])
    return [
        {"dimension": dim, "metric": "sharpe", "test": "permutation", "n_slices": k, "statistic": spread,
         "p_value": p_spread, "note": "statistic: max - min per-bar Sharpe over the slices"},
        {"dimension": dim, "metric": "hit_rate", "test": "chi-square", "n_slices": k, "statistic": chi,
         "p_value": p_chi, "note": chi_note},
        {"dimension": dim, "metric": "return", "test": "kruskal-wallis", "n_slices": k, "statistic": h,
         "p_value": p_h, "note": ""},
    ]  # fmt: skip


# ------------------------------------------------------------------------------------------- registry
def store_bias_report(
    registry: ModelRegistry, name: str, version: int, report: BiasReport, *, actor: str = "job:bias"
) -> ModelVersionInfo:
    """Store ``report`` with ``name/version``: ``alphaloom/bias.json`` in its run, :meth:`BiasReport.summary`
    as run metrics, :meth:`BiasReport.tags` as version tags, and an audit record ``model.bias_report``."""
    return registry.attach_text(
        name,
        version,
        BIAS_ARTEFACT,
        report.to_json(),
        tags=report.tags(),
        metrics=report.summary(),
        actor=actor,
        action="model.bias_report",
    )


def load_bias_report(registry: ModelRegistry, name: str, version: int) -> BiasReport | None:
    """The bias report stored with ``name/version``, or None when none was stored."""
    text = registry.read_text(name, version, BIAS_ARTEFACT)
    return None if text is None else BiasReport.from_dict(json.loads(text))


# ---------------------------------------------------------------------------------------------- HTML
def _fmt(value: Any) -> str:
    if isinstance(value, bool | np.bool_):
        return "yes" if value else ""
    if isinstance(value, float | np.floating):
        return "" if not math.isfinite(value) else f"{value:.4g}"
    return str(value)


def _table_html(frame: pd.DataFrame) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    body = []
    for row in frame.itertuples(index=False):
        status = getattr(row, "status", "ok")
        css = "" if status == "ok" else ' class="muted"'
        if getattr(row, "significant", False) is True:
            css = ' class="flag"'
        body.append(f"<tr{css}>" + "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in row) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _figure(report: BiasReport, floors: Mapping[str, float]) -> Any:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    metrics = ["hit_rate", "ece"] if report.kind == "forecast" else ["sharpe", "hit_rate"]
    fig = make_subplots(rows=1, cols=len(metrics), subplot_titles=[m.replace("_", " ") for m in metrics])
    colours = {"ok": "#1f77b4", "too small": "#bbbbbb", WARM_UP: "#dddddd"}
    for col, metric in enumerate(metrics, start=1):
        s = report.slices
        fig.add_trace(
            go.Bar(
                x=s[metric].astype(float),
                y=[f"{d}={v}" for d, v in zip(s["dimension"], s["slice"], strict=True)],
                orientation="h",
                marker_color=[colours.get(x, "#999999") for x in s["status"]],
                text=[f"n={n}" for n in s["n"]],
                showlegend=False,
                name=metric,
            ),
            row=1,
            col=col,
        )
        floor = floors.get(metric)
        if floor is not None:
            fig.add_vline(x=floor, line_dash="dash", line_color="red", row=1, col=col)
    fig.update_yaxes(autorange="reversed")
    fig.update_layout(height=max(360, 22 * len(report.slices) + 120), template="plotly_white")
    return fig


def write_bias_html(
    path: str | Path, reports: Sequence[BiasReport], *, floors: Mapping[str, float] | None = None
) -> Path:
    """Write one self-contained HTML page (plotly inlined, opens offline) with every report: a chart of the
    floor metrics by slice (grey bars: too small or warm-up; red dashes: the configured floors), the slice
    table and the disparity tests (significant ones highlighted)."""
    from plotly.offline import get_plotlyjs

    if not reports:
        raise DataFormatError("write_bias_html got no reports.")
    floors = dict(floors or {})
    body = ["<h1>Bias and fairness by market slice</h1>"]
    body.append(
        "<p>Out-of-sample behaviour by slice: asset class, symbol, volatility regime (terciles of trailing "
        "realised volatility against the symbol's own past), trend regime (trailing mean closes), time of "
        "day (UTC) and day of week. Slices below the minimum size are shown in grey and take part in no "
        "test; p-values are corrected for multiple testing across each model's tests.</p>"
    )
    body.append(
        "<nav>"
        + " ".join(f'<a href="#model-{i}">{html.escape(r.model)}</a>' for i, r in enumerate(reports))
        + "</nav>"
    )
    for i, report in enumerate(reports):
        cfg = report.config
        body.append(f'<h2 id="model-{i}">{html.escape(report.model)} ({report.kind})</h2>')
        body.append(
            f"<p>{report.n_bars} bars, {html.escape(report.period[0])} .. {html.escape(report.period[1])}; "
            f"minimum slice {cfg.min_slice_size} bars; {cfg.correction} correction at alpha {cfg.alpha}.</p>"
        )
        worst = report.worst_slices()
        if worst:
            body.append(
                "<p>Worst slices: "
                + "; ".join(
                    f"{html.escape(m)} {v:.4g} at {html.escape(lab)}" for m, (lab, v) in worst.items()
                )
                + "</p>"
            )
        if report.notes:
            body.append("<ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in report.notes) + "</ul>")
        body.append(
            _figure(report, floors).to_html(full_html=False, include_plotlyjs=False, div_id=f"bias-{i}")
        )
        body.append("<h3>Slices</h3>")
        body.append(_table_html(report.slices))
        body.append("<h3>Disparity tests</h3>")
        body.append(_table_html(report.tests))
    page = (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Bias and fairness</title>'
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin:1em 0}"
        "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}tr.muted td{color:#999}"
        "tr.flag td{background:#fde2e2}nav a{margin-right:1em}</style>"
        f'<script type="text/javascript">{get_plotlyjs()}</script></head><body>'
        + "\n".join(body)
        + "</body></html>"
    )
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    return out
