"""Drift and decay monitoring: is the live world still the one the model was trained and backtested on?

* :class:`DriftMonitor` (scikit-learn contract): ``fit`` on the training window's features (or predictions),
  ``check`` a live window: per column the population stability index (PSI, on the training window's deciles)
  and the two-sample Kolmogorov-Smirnov test, with a status (``ok``, ``warn``, ``alert``).
* :func:`performance_decay`: live returns against the backtest's expected Sharpe ratio: the probability that
  the live Sharpe ratio is at least the expected one (PSR against it); a low probability is decay.
* :class:`AlertLog`: every alert is logged (``logging``, logger ``alphaloom.monitoring``) and kept, so a
  service can expose the recent ones; :class:`RetrainTrigger` turns drift and decay into a retraining decision
  with a cool-down.

Non-finite values are never dropped silently: each column's count of non-finite live values is reported, and
the tests run on the finite ones.
"""

from __future__ import annotations

import json
import logging
import math
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, Self

import numpy as np
import numpy.typing as npt
import pandas as pd
from pydantic import Field, model_validator

from alphaloom.core.config import ComponentConfig
from alphaloom.core.exceptions import DataFormatError, NotFittedError, StorageError
from alphaloom.core.timeutil import ensure_utc
from alphaloom.risk import measures

__all__ = [
    "Alert",
    "AlertLog",
    "DecayReport",
    "DriftConfig",
    "DriftMonitor",
    "DriftReport",
    "RetrainConfig",
    "RetrainDecision",
    "RetrainTrigger",
    "performance_decay",
]

log = logging.getLogger("alphaloom.monitoring")

Status = Literal["ok", "warn", "alert"]


class DriftConfig(ComponentConfig):
    """Thresholds of :class:`DriftMonitor`.

    Attributes
    ----------
    n_bins
        Equal-frequency bins of the training window for the PSI.
    psi_warn, psi_alert
        PSI at or above which a column is ``warn`` / ``alert`` (0.1 and 0.25 are the usual rules of thumb).
    ks_alpha
        A KS p-value below this also makes a column ``alert`` (when its PSI is at least ``psi_warn``, so that
        a huge live sample does not alert on differences too small to matter).
    min_live
        Fewest finite live values a column needs to be judged; fewer gives status ``ok`` with a note.
    """

    n_bins: int = Field(default=10, ge=2, le=100)
    psi_warn: float = Field(default=0.1, gt=0.0)
    psi_alert: float = Field(default=0.25, gt=0.0)
    ks_alpha: float = Field(default=0.01, gt=0.0, lt=1.0)
    min_live: int = Field(default=30, ge=5)

    @model_validator(mode="after")
    def _ordered(self) -> DriftConfig:
        if self.psi_alert < self.psi_warn:
            raise ValueError(f"psi_alert ({self.psi_alert}) must be >= psi_warn ({self.psi_warn})")
        return self


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert: when, what kind, how bad, about what, and the numbers."""

    ts: datetime
    kind: str
    """``feature_drift``, ``prediction_drift``, ``performance_decay`` or ``retrain``."""
    severity: str
    """``warn`` or ``alert``."""
    subject: str
    """The column, model or strategy concerned."""
    message: str
    value: float
    threshold: float

    def to_dict(self) -> dict[str, object]:
        out = asdict(self)
        out["ts"] = self.ts.isoformat()
        return out


class AlertLog:
    """Alerts kept in memory (the most recent ``capacity``), logged, and optionally appended to a JSONL file.

    Parameters
    ----------
    capacity
        How many recent alerts :meth:`recent` can return.
    path
        A JSON-lines file each alert is appended to (created with its parents), or None.
    """

    def __init__(self, capacity: int = 1000, path: str | Path | None = None) -> None:
        self._alerts: deque[Alert] = deque(maxlen=capacity)
        self.path = Path(path) if path is not None else None

    def add(self, alert: Alert) -> Alert:
        level = logging.WARNING if alert.severity == "warn" else logging.ERROR
        log.log(level, "%s %s on %s: %s", alert.severity, alert.kind, alert.subject, alert.message)
        self._alerts.append(alert)
        if self.path is not None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with self.path.open("a", encoding="utf-8") as fh:
                    fh.write(json.dumps(alert.to_dict(), sort_keys=True) + "\n")
            except OSError as exc:
                raise StorageError(f"cannot append the alert to {self.path}: {exc.strerror}.") from exc
        return alert

    def extend(self, alerts: Sequence[Alert]) -> list[Alert]:
        return [self.add(a) for a in alerts]

    def recent(self, n: int | None = None, *, kind: str | None = None) -> list[Alert]:
        """The most recent alerts, oldest first (of ``kind``)."""
        chosen = [a for a in self._alerts if kind is None or a.kind == kind]
        return chosen if n is None else chosen[-n:]

    def __len__(self) -> int:
        return len(self._alerts)


@dataclass(frozen=True)
class DriftReport:
    """Per-column drift of a live window against the training window."""

    kind: str
    table: pd.DataFrame
    """One row per column: ``psi``, ``ks_statistic``, ``ks_p_value``, ``n_reference``, ``n_live``,
    ``n_nonfinite_live``, ``status``."""
    alerts: tuple[Alert, ...] = field(default_factory=tuple)

    @property
    def drifted(self) -> list[str]:
        """Columns with status ``alert``."""
        return self.table.loc[self.table["status"] == "alert", "column"].tolist()

    @property
    def worst_psi(self) -> float:
        return float(self.table["psi"].max()) if len(self.table) else math.nan


class DriftMonitor:
    """PSI and KS drift of each column of a live window against a reference (training) window.

    Parameters
    ----------
    config
        Thresholds.
    kind
        ``"feature_drift"`` for model inputs, ``"prediction_drift"`` for model outputs (named in alerts).

    Attributes
    ----------
    columns_ : list of str
        The monitored columns, in the reference frame's order.
    reference_ : dict of str to ndarray
        The finite reference values of each column.
    bin_edges_ : dict of str to ndarray
        PSI bin edges of each column (reference deciles by default).
    """

    def __init__(
        self,
        config: DriftConfig | None = None,
        kind: Literal["feature_drift", "prediction_drift"] = "feature_drift",
    ) -> None:
        self.config = config if config is not None else DriftConfig()
        self.kind = kind

    def fit(self, reference: pd.DataFrame, columns: Sequence[str] | None = None) -> Self:
        """Learn the reference distributions from the training window (numeric columns by default)."""
        if not isinstance(reference, pd.DataFrame) or reference.empty:
            raise DataFormatError("fit expects a non-empty DataFrame of the training window's values.")
        cols = list(columns) if columns is not None else reference.select_dtypes("number").columns.tolist()
        missing = [c for c in cols if c not in reference.columns]
        if missing or not cols:
            raise DataFormatError(
                f"reference frame lacks column(s) {missing or 'numeric'}; got {list(reference.columns)[:10]}."
            )
        self.reference_ = {}
        self.bin_edges_ = {}
        for c in cols:
            values = reference[c].to_numpy(dtype=np.float64)
            finite = values[np.isfinite(values)]
            if finite.size < self.config.n_bins:
                raise DataFormatError(
                    f"column {c!r} has {finite.size} finite reference values, fewer than "
                    f"n_bins={self.config.n_bins}; widen the training window or drop the column."
                )
            self.reference_[c] = finite
            self.bin_edges_[c] = measures.psi_bin_edges(finite, self.config.n_bins)
        self.columns_ = cols
        return self

    def check(self, live: pd.DataFrame, *, ts: datetime | None = None) -> DriftReport:
        """Drift of ``live`` (same columns) against the reference, with alerts for ``warn`` and ``alert``."""
        if not hasattr(self, "columns_"):
            raise NotFittedError("this DriftMonitor is not fitted; call fit(training_window) first.")
        missing = [c for c in self.columns_ if c not in live.columns]
        if missing:
            raise DataFormatError(
                f"the live frame lacks monitored column(s) {missing}; pass the same columns as in fit."
            )
        cfg = self.config
        when = datetime.now(UTC) if ts is None else ensure_utc(ts, name="ts")
        rows, alerts = [], []
        for c in self.columns_:
            values = live[c].to_numpy(dtype=np.float64)
            finite = values[np.isfinite(values)]
            ref = self.reference_[c]
            row = {
                "column": c,
                "n_reference": int(ref.size),
                "n_live": int(finite.size),
                "n_nonfinite_live": int(values.size - finite.size),
            }
            if finite.size < cfg.min_live:
                rows.append(
                    row | {"psi": math.nan, "ks_statistic": math.nan, "ks_p_value": math.nan, "status": "ok"}
                )
                continue
            psi = measures.population_stability_index(ref, finite, bins=self.bin_edges_[c])
            ks = measures.ks_two_sample(ref, finite)
            status: Status = "ok"
            if psi >= cfg.psi_alert or (psi >= cfg.psi_warn and ks.p_value < cfg.ks_alpha):
                status = "alert"
            elif psi >= cfg.psi_warn:
                status = "warn"
            rows.append(
                row | {"psi": psi, "ks_statistic": ks.statistic, "ks_p_value": ks.p_value, "status": status}
            )
            if status != "ok":
                alerts.append(
                    Alert(
                        when,
                        self.kind,
                        status,
                        c,
                        f"PSI {psi:.3f} (warn {cfg.psi_warn}, alert {cfg.psi_alert}), "
                        f"KS D {ks.statistic:.3f} p {ks.p_value:.2g} over {finite.size} live values",
                        psi,
                        cfg.psi_alert if status == "alert" else cfg.psi_warn,
                    )
                )
        table = pd.DataFrame(rows)[
            [
                "column",
                "psi",
                "ks_statistic",
                "ks_p_value",
                "n_reference",
                "n_live",
                "n_nonfinite_live",
                "status",
            ]
        ]
        return DriftReport(self.kind, table, tuple(alerts))


@dataclass(frozen=True)
class DecayReport:
    """Live performance against the backtest's expectation."""

    n_bars: int
    live_sharpe_annual: float
    expected_sharpe_annual: float
    probability_on_track: float
    """PSR of the live returns against the expected Sharpe ratio: the probability that the live Sharpe ratio
    is at least the expected one given the live sample."""
    live_max_drawdown: float
    expected_max_drawdown: float
    decayed: bool
    alerts: tuple[Alert, ...] = ()


def performance_decay(
    live_returns: npt.ArrayLike,
    *,
    expected_sharpe_annual: float,
    expected_max_drawdown: float | None = None,
    periods_per_year: float = 252.0,
    confidence: float = 0.95,
    drawdown_multiple: float = 1.5,
    min_bars: int = 20,
    subject: str = "strategy",
    ts: datetime | None = None,
) -> DecayReport:
    """Has live performance fallen below what the backtest promised?

    Decay is declared when the probability that the live Sharpe ratio is at least ``expected_sharpe_annual``
    (:func:`~alphaloom.risk.measures.probabilistic_sharpe_ratio` against it) drops below ``1 - confidence``,
    or when the live drawdown exceeds ``drawdown_multiple`` times the backtest's maximum drawdown.

    Parameters
    ----------
    live_returns
        Per-bar simple returns since the model went live, shape ``(n,)``, finite.
    expected_sharpe_annual
        The backtest's annualised Sharpe ratio.
    expected_max_drawdown
        The backtest's maximum drawdown (fraction), or None to skip the drawdown check.
    periods_per_year
        Bars per year.
    confidence
        How sure the decay call must be.
    drawdown_multiple
        Live drawdown beyond this multiple of the backtest's is decay.
    min_bars
        Fewer live bars: never decayed (too early to tell).
    subject, ts
        Named in the alerts; ``ts`` defaults to now.
    """
    r = np.asarray(live_returns, dtype=np.float64)
    if r.ndim != 1 or not np.isfinite(r).all():
        raise DataFormatError("live_returns must be finite per-bar returns of shape (n,).")
    when = datetime.now(UTC) if ts is None else ensure_utc(ts, name="ts")
    bench = measures.per_period_sharpe(expected_sharpe_annual, periods_per_year)
    prob = measures.probabilistic_sharpe_ratio(r, bench) if r.size >= 2 else math.nan
    live_dd = measures.max_drawdown(r) if r.size else 0.0
    alerts = []
    if r.size >= min_bars and not math.isnan(prob) and prob < 1.0 - confidence:
        alerts.append(
            Alert(
                when,
                "performance_decay",
                "alert",
                subject,
                f"live Sharpe {measures.sharpe_ratio(r, periods_per_year):.2f} a year over {r.size} bars; "
                f"probability it is at least the backtest's {expected_sharpe_annual:.2f} is {prob:.3f}",
                prob,
                1.0 - confidence,
            )
        )
    if (
        expected_max_drawdown is not None
        and r.size >= min_bars
        and live_dd > drawdown_multiple * expected_max_drawdown
    ):
        alerts.append(
            Alert(
                when,
                "performance_decay",
                "alert",
                subject,
                f"live drawdown {live_dd:.1%} beyond {drawdown_multiple}x the backtest's "
                f"{expected_max_drawdown:.1%}",
                live_dd,
                drawdown_multiple * expected_max_drawdown,
            )
        )
    return DecayReport(
        n_bars=int(r.size),
        live_sharpe_annual=measures.sharpe_ratio(r, periods_per_year) if r.size >= 2 else math.nan,
        expected_sharpe_annual=float(expected_sharpe_annual),
        probability_on_track=prob,
        live_max_drawdown=live_dd,
        expected_max_drawdown=math.nan if expected_max_drawdown is None else float(expected_max_drawdown),
        decayed=bool(alerts),
        alerts=tuple(alerts),
    )


class RetrainConfig(ComponentConfig):
    """When :class:`RetrainTrigger` asks for retraining.

    Attributes
    ----------
    max_drifted_features
        Retrain when more than this many features are in ``alert``.
    on_prediction_drift
        Retrain when any prediction column is in ``alert``.
    on_decay
        Retrain on performance decay.
    cooldown_bars
        After a retrain request, ignore further triggers for this many bars (retraining takes time).
    """

    max_drifted_features: int = Field(default=2, ge=0)
    on_prediction_drift: bool = True
    on_decay: bool = True
    cooldown_bars: int = Field(default=20, ge=0)


@dataclass(frozen=True)
class RetrainDecision:
    retrain: bool
    reasons: tuple[str, ...]
    suppressed: bool = False
    """True when a trigger fired during the cool-down."""


class RetrainTrigger:
    """Turn drift and decay reports into a retraining decision, at most once per cool-down.

    Parameters
    ----------
    config
        Rules and cool-down.
    on_retrain
        Called with the decision when retraining is requested (e.g. to queue the training job).
    alerts
        An :class:`AlertLog` that receives a ``retrain`` alert for each request.
    """

    def __init__(
        self,
        config: RetrainConfig | None = None,
        on_retrain: Callable[[RetrainDecision], None] | None = None,
        alerts: AlertLog | None = None,
    ) -> None:
        self.config = config if config is not None else RetrainConfig()
        self.on_retrain = on_retrain
        self.alerts = alerts
        self._bars_since: int | None = None

    def update(
        self,
        *,
        features: DriftReport | None = None,
        predictions: DriftReport | None = None,
        decay: DecayReport | None = None,
        bars_elapsed: int = 1,
        ts: datetime | None = None,
    ) -> RetrainDecision:
        """Feed the latest reports (``bars_elapsed`` bars since the last call); returns the decision."""
        cfg = self.config
        if self._bars_since is not None:
            self._bars_since += bars_elapsed
        reasons = []
        if features is not None and len(features.drifted) > cfg.max_drifted_features:
            reasons.append(f"{len(features.drifted)} features drifted: {', '.join(features.drifted[:8])}")
        if cfg.on_prediction_drift and predictions is not None and predictions.drifted:
            reasons.append(f"predictions drifted: {', '.join(predictions.drifted)}")
        if cfg.on_decay and decay is not None and decay.decayed:
            reasons.append("; ".join(a.message for a in decay.alerts))
        if not reasons:
            return RetrainDecision(False, ())
        if self._bars_since is not None and self._bars_since < cfg.cooldown_bars:
            return RetrainDecision(False, tuple(reasons), suppressed=True)
        decision = RetrainDecision(True, tuple(reasons))
        self._bars_since = 0
        if self.alerts is not None:
            when = datetime.now(UTC) if ts is None else ensure_utc(ts, name="ts")
            self.alerts.add(
                Alert(when, "retrain", "alert", "model", "; ".join(reasons), float(len(reasons)), 1.0)
            )
        if self.on_retrain is not None:
            self.on_retrain(decision)
        return decision
