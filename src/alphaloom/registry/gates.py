"""The promotion gate: out-of-sample evidence and an authorised approver before a model moves up a stage.

A challenger becomes champion only when

1. the approver holds one of the roles allowed to make that move (``admin`` for champion by default),
2. there are enough out-of-sample bars (``min_bars``),
3. its deflated Sharpe ratio (the probability that its Sharpe ratio beats the best of ``n_trials`` worthless
   strategies) is at least ``min_deflated_sharpe``, and
4. against the current champion, on the same bars, it shows no significant loss (``comparison =
   "no_significant_loss"``, the default) or a significant gain (``"significantly_better"``), by the paired
   test named in ``test`` (a block bootstrap of the Sharpe difference by default), and
5. optionally (off by default), its worst market slice is not below a floor: ``min_slice_hit_rate`` and
   ``min_slice_sharpe`` against the worst slices of its bias report (:mod:`alphaloom.registry.bias`), passed
   as ``PromotionEvidence.worst_slices``. A floor that is set but has no figure in the evidence fails.

Every statistic is computed by :mod:`alphaloom.risk.measures`, so the gate, the reports and the A/B
comparison cannot disagree. A rejection is a result, not an error: :class:`GateDecision` says which checks
failed and carries every statistic, and the registry audits it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Literal, Protocol

import numpy as np
import numpy.typing as npt
from pydantic import Field, field_validator

from alphaloom.core.config import ComponentConfig
from alphaloom.core.exceptions import ConfigError, DataFormatError, did_you_mean
from alphaloom.risk import measures

__all__ = [
    "Approver",
    "ApproverLike",
    "GateCheck",
    "GateDecision",
    "PromotionEvidence",
    "PromotionGate",
    "PromotionGateConfig",
    "role_of",
]

#: Roles, in the vocabulary of ``alphaloom.risk.manager`` (viewer, trader, admin).
KNOWN_ROLES = ("viewer", "trader", "admin")


class ApproverLike(Protocol):
    """Anything with a ``name`` and a ``role`` (a string or a string enum), such as :class:`Approver` or the
    risk manager's ``Actor``."""

    name: str
    role: Any


@dataclass(frozen=True, slots=True)
class Approver:
    """Who approves a transition: a name for the audit log and a role (``viewer``, ``trader``, ``admin``)."""

    name: str
    role: str

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ConfigError(f"an approver needs a non-empty name, got {self.name!r}.")
        role_of(self)


def role_of(approver: ApproverLike) -> str:
    """The approver's role as a lower-case string; raises :class:`ConfigError` for an unknown role."""
    role = getattr(approver, "role", None)
    name = getattr(approver, "name", None)
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(
            f"an approver needs a non-empty name and a role, got {approver!r}; pass Approver(name, role)."
        )
    text = str(role.value if isinstance(role, Enum) else role).lower()
    if text not in KNOWN_ROLES:
        raise ConfigError(
            f"unknown role {role!r} for approver {name!r}.{did_you_mean(text, KNOWN_ROLES)} "
            f"Roles: {', '.join(KNOWN_ROLES)}."
        )
    return text


class PromotionGateConfig(ComponentConfig):
    """Settings of :class:`PromotionGate`.

    Attributes
    ----------
    min_deflated_sharpe
        Smallest deflated Sharpe ratio (a probability) a champion must show out of sample.
    alpha
        Significance level of the paired comparison with the champion (one-sided).
    comparison
        ``"no_significant_loss"``: reject when the challenger's Sharpe ratio is significantly below the
        champion's; ``"significantly_better"``: also require it to be significantly above.
    test
        The paired test that decides: ``"bootstrap"`` (block bootstrap of the Sharpe difference),
        ``"ledoit_wolf"`` (HAC delta method) or ``"jkm"`` (Jobson-Korkie-Memmel, iid normal). All three are
        reported.
    n_resamples, block_length, seed
        Of the bootstrap (``block_length`` None: ``n ** (1/3)``).
    min_bars
        Fewest out-of-sample bars accepted as evidence.
    champion_roles
        Roles allowed to promote a challenger to champion, and to roll back.
    challenger_roles
        Roles allowed to promote a candidate to challenger (and archive).
    min_slice_hit_rate, min_slice_sharpe
        Floors on the worst slice of the model's bias report (hit rate in ``[0, 1]``; annualised Sharpe
        ratio), checked whenever evidence is judged; ``None`` (the default) turns a floor off.
    """

    min_deflated_sharpe: float = Field(default=0.95, ge=0.0, le=1.0)
    alpha: float = Field(default=0.05, gt=0.0, lt=0.5)
    comparison: Literal["no_significant_loss", "significantly_better"] = "no_significant_loss"
    test: Literal["bootstrap", "ledoit_wolf", "jkm"] = "bootstrap"
    n_resamples: int = Field(default=2000, ge=100)
    block_length: int | None = Field(default=None, ge=1)
    seed: int = 0
    min_bars: int = Field(default=60, ge=10)
    champion_roles: tuple[str, ...] = ("admin",)
    challenger_roles: tuple[str, ...] = ("trader", "admin")
    min_slice_hit_rate: float | None = Field(default=None, ge=0.0, le=1.0)
    min_slice_sharpe: float | None = Field(default=None, allow_inf_nan=False)

    @field_validator("champion_roles", "challenger_roles")
    @classmethod
    def _known_roles(cls, roles: tuple[str, ...]) -> tuple[str, ...]:
        if not roles:
            raise ValueError("at least one role must be allowed")
        bad = [r for r in roles if r not in KNOWN_ROLES]
        if bad:
            raise ValueError(f"unknown role(s) {bad}; roles are {', '.join(KNOWN_ROLES)}")
        return roles


def _returns(x: npt.ArrayLike | None, name: str) -> np.ndarray | None:
    if x is None:
        return None
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 1:
        raise DataFormatError(f"{name} must be per-bar returns of shape (n,), got shape {arr.shape}.")
    bad = int(np.count_nonzero(~np.isfinite(arr)))
    if bad:
        raise DataFormatError(
            f"{name} holds {bad} non-finite value(s) of {arr.size}; evidence must be complete (a bar without "
            "a return is a bar the strategy could not be judged on). Fix the backtest, do not drop bars."
        )
    return arr


@dataclass(frozen=True)
class PromotionEvidence:
    """Out-of-sample evidence for a promotion.

    Attributes
    ----------
    challenger_returns
        Per-bar simple returns of the model to promote on bars it never trained on, shape ``(n,)``.
    champion_returns
        The current champion's returns on the same bars, shape ``(n,)``; None when there is no champion.
    periods_per_year
        Bars per year, for the annualised figures.
    n_trials
        Strategies tried before this one was chosen (all configurations, seeds and agents compared), for
        the deflated Sharpe ratio.
    trials_sharpe_variance
        Variance of the trials' per-bar Sharpe ratios (0 for a single trial).
    challenger_losses, champion_losses
        Optional per-bar forecast losses of the two models on the same bars, for a Diebold-Mariano test.
    source
        Where the evidence comes from (symbols, segment, backtest), for the audit log.
    worst_slices
        ``{metric: (slice, value)}``, the worst slice per metric (``hit_rate``, ``sharpe``) of the model's
        bias report (:meth:`alphaloom.registry.bias.BiasReport.worst_slices`), for the slice floors.
    """

    challenger_returns: np.ndarray
    champion_returns: np.ndarray | None = None
    periods_per_year: float = 252.0
    n_trials: int = 1
    trials_sharpe_variance: float = 0.0
    challenger_losses: np.ndarray | None = None
    champion_losses: np.ndarray | None = None
    source: str = ""
    worst_slices: Mapping[str, tuple[str, float]] | None = None

    def __post_init__(self) -> None:
        challenger = _returns(self.challenger_returns, "challenger_returns")
        champion = _returns(self.champion_returns, "champion_returns")
        assert challenger is not None
        if champion is not None and champion.shape != challenger.shape:
            raise DataFormatError(
                f"champion_returns has {champion.size} bars but challenger_returns has {challenger.size}; "
                "the comparison is paired, so pass both models' returns over the same bars."
            )
        losses = [
            _returns(self.challenger_losses, "challenger_losses"),
            _returns(self.champion_losses, "champion_losses"),
        ]
        if (losses[0] is None) != (losses[1] is None):
            raise DataFormatError("pass both challenger_losses and champion_losses, or neither.")
        if losses[0] is not None and losses[1] is not None and losses[0].shape != losses[1].shape:
            raise DataFormatError("challenger_losses and champion_losses must cover the same periods.")
        if not (isinstance(self.n_trials, int) and self.n_trials >= 1):
            raise ConfigError(f"n_trials must be an integer >= 1, got {self.n_trials!r}.")
        if not (math.isfinite(self.trials_sharpe_variance) and self.trials_sharpe_variance >= 0):
            raise ConfigError(
                f"trials_sharpe_variance must be finite and >= 0, got {self.trials_sharpe_variance!r}."
            )
        if self.n_trials > 1 and self.trials_sharpe_variance == 0.0:
            raise ConfigError(
                f"n_trials={self.n_trials} needs the variance of the trials' per-bar Sharpe ratios; estimate "
                "it with risk.measures.deflated_sharpe_ratio_from_trials, or pass n_trials=1."
            )
        object.__setattr__(self, "challenger_returns", challenger)
        object.__setattr__(self, "champion_returns", champion)
        object.__setattr__(self, "challenger_losses", losses[0])
        object.__setattr__(self, "champion_losses", losses[1])
        if self.worst_slices is not None:
            try:
                worst = {str(k): (str(v[0]), float(v[1])) for k, v in dict(self.worst_slices).items()}
            except (TypeError, ValueError, IndexError) as exc:
                raise DataFormatError(
                    "worst_slices must map a metric to (slice, value), e.g. "
                    "{'hit_rate': ('symbol=SPY', 0.48)}; "
                    f"got {self.worst_slices!r}."
                ) from exc
            object.__setattr__(self, "worst_slices", worst)

    @property
    def n_bars(self) -> int:
        return int(self.challenger_returns.size)


@dataclass(frozen=True, slots=True)
class GateCheck:
    """One check of the gate: its name, whether it passed, the value and threshold, and a sentence."""

    name: str
    passed: bool
    value: float | str
    threshold: float | str
    detail: str


@dataclass(frozen=True)
class GateDecision:
    """What the gate decided about one promotion, with every statistic it used.

    Attributes
    ----------
    accepted
        True when every check passed.
    target_stage
        The stage the model would move to.
    checks
        Every check, passed or not, in order.
    statistics
        The numbers behind them (names as in :meth:`PromotionGate.evaluate`), JSON-able floats.
    """

    accepted: bool
    target_stage: str
    checks: tuple[GateCheck, ...]
    statistics: Mapping[str, float | int | str | None] = field(default_factory=dict)

    @property
    def reasons(self) -> tuple[str, ...]:
        """The failed checks' sentences; empty when accepted."""
        return tuple(c.detail for c in self.checks if not c.passed)

    def to_dict(self) -> dict[str, Any]:
        return {
            "accepted": self.accepted,
            "target_stage": self.target_stage,
            "checks": [
                {"name": c.name, "passed": c.passed, "value": _json(c.value), "threshold": _json(c.threshold)}
                for c in self.checks
            ],
            "reasons": list(self.reasons),
            "statistics": {k: _json(v) for k, v in self.statistics.items()},
        }

    def summary(self) -> str:
        """A few lines for a terminal or a closing note."""
        verdict = "ACCEPTED" if self.accepted else "REJECTED"
        lines = [f"promotion to {self.target_stage}: {verdict}"]
        for c in self.checks:
            lines.append(f"  [{'pass' if c.passed else 'FAIL'}] {c.name}: {c.detail}")
        return "\n".join(lines)


def _json(value: Any) -> Any:
    if isinstance(value, float | np.floating):
        v = float(value)
        return None if math.isnan(v) else (str(v) if math.isinf(v) else v)
    if isinstance(value, np.integer):
        return int(value)
    return value


class PromotionGate:
    """Decides whether a model may move up a stage; see the module docstring for the rule.

    Parameters
    ----------
    config
        Thresholds, the deciding test and the allowed roles.
    """

    def __init__(self, config: PromotionGateConfig | None = None) -> None:
        self.config = config if config is not None else PromotionGateConfig()
        if not isinstance(self.config, PromotionGateConfig):
            raise ConfigError(f"PromotionGate takes a PromotionGateConfig, got {type(self.config).__name__}.")

    def evaluate(
        self, target_stage: str, approver: ApproverLike, evidence: PromotionEvidence | None
    ) -> GateDecision:
        """Check a promotion to ``target_stage`` (``"challenger"`` or ``"champion"``).

        A move to challenger needs an approver with a ``challenger_roles`` role, and, when evidence is given,
        passes the sample-size and deflated-Sharpe checks too. A move to champion needs a ``champion_roles``
        approver and evidence; with a champion's returns in it, the paired comparison as configured.

        Returns
        -------
        GateDecision
            ``statistics`` holds ``n_bars``, ``sharpe_annual``, ``psr``, ``deflated_sharpe``,
            ``expected_max_sharpe_per_bar``, ``min_track_record_bars`` and, with a champion,
            ``champion_sharpe_annual``, ``sharpe_difference_annual``, ``bootstrap_low_annual``,
            ``bootstrap_high_annual``, ``bootstrap_p_two_sided``, ``ledoit_wolf_z``,
            ``ledoit_wolf_p_two_sided``, ``jkm_z``, ``jkm_p_two_sided``, ``p_loss`` and ``p_gain`` (one-sided
            p-values of the deciding test),
            ``return_correlation``, ``min_sample_bars`` and, with losses, ``diebold_mariano_stat`` and
            ``diebold_mariano_p``.
        """
        cfg = self.config
        if target_stage not in ("challenger", "champion"):
            raise ConfigError(
                f"the gate judges promotions to 'challenger' or 'champion', got {target_stage!r}; archiving "
                "and rollback need only an authorised approver."
            )
        checks: list[GateCheck] = []
        stats: dict[str, Any] = {"approver": getattr(approver, "name", str(approver))}
        allowed = cfg.champion_roles if target_stage == "champion" else cfg.challenger_roles
        role = role_of(approver)
        stats["approver_role"] = role
        checks.append(
            GateCheck(
                "approver",
                role in allowed,
                role,
                ", ".join(allowed),
                f"{approver.name} ({role}) may promote to {target_stage}"
                if role in allowed
                else f"{approver.name} has role {role!r}; promotion to {target_stage} needs one of "
                f"{', '.join(allowed)}",
            )
        )
        if evidence is None:
            if target_stage == "champion":
                checks.append(
                    GateCheck(
                        "evidence",
                        False,
                        "none",
                        "out-of-sample returns",
                        "no out-of-sample evidence was given; a champion needs its returns on bars it never "
                        "trained on (and the champion's on the same bars)",
                    )
                )
            return GateDecision(all(c.passed for c in checks), target_stage, tuple(checks), stats)
        if not isinstance(evidence, PromotionEvidence):
            raise DataFormatError(f"evidence must be a PromotionEvidence, got {type(evidence).__name__}.")
        r = evidence.challenger_returns
        ppy = evidence.periods_per_year
        n = evidence.n_bars
        stats["n_bars"] = n
        stats["source"] = evidence.source
        checks.append(
            GateCheck(
                "sample size",
                n >= cfg.min_bars,
                float(n),
                float(cfg.min_bars),
                f"{n} out-of-sample bars (need {cfg.min_bars})",
            )
        )
        summary = measures.summary_statistics(
            r,
            periods_per_year=ppy,
            n_trials=evidence.n_trials,
            trials_sharpe_variance=evidence.trials_sharpe_variance if evidence.n_trials > 1 else None,
        )
        dsr = summary["deflated_sharpe"]
        sr_star = measures.expected_max_sharpe(evidence.n_trials, evidence.trials_sharpe_variance)
        stats |= {
            "sharpe_annual": summary["sharpe_annual"],
            "total_return": summary["total_return"],
            "max_drawdown": summary["max_drawdown"],
            "psr": summary["probabilistic_sharpe"],
            "deflated_sharpe": dsr,
            "n_trials": evidence.n_trials,
            "expected_max_sharpe_per_bar": sr_star,
            # Bars of this record needed for the deflated Sharpe to reach the threshold (MinTRL).
            "min_track_record_bars": measures.minimum_track_record_length(r, sr_star, cfg.min_deflated_sharpe)
            if 0.0 < cfg.min_deflated_sharpe < 1.0
            else math.nan,
        }
        dsr_ok = not math.isnan(dsr) and dsr >= cfg.min_deflated_sharpe
        checks.append(
            GateCheck(
                "deflated Sharpe",
                dsr_ok,
                dsr,
                cfg.min_deflated_sharpe,
                f"deflated Sharpe {dsr:.3f} (Sharpe {summary['sharpe_annual']:.2f} a year over {n} bars, "
                f"{evidence.n_trials} trial(s)) {'>=' if dsr_ok else '<'} {cfg.min_deflated_sharpe}",
            )
        )
        checks.extend(self._slice_floors(evidence, stats))
        champion = evidence.champion_returns
        if target_stage == "champion" and champion is not None:
            checks.append(self._compare(r, champion, ppy, stats))
            if evidence.challenger_losses is not None:
                dm = measures.diebold_mariano(evidence.challenger_losses, evidence.champion_losses)
                stats["diebold_mariano_stat"] = dm.statistic
                stats["diebold_mariano_p"] = dm.p_value
        elif target_stage == "champion":
            stats["comparison"] = "no champion yet: nothing to compare with"
        return GateDecision(all(c.passed for c in checks), target_stage, tuple(checks), stats)

    def _slice_floors(self, evidence: PromotionEvidence, stats: dict[str, Any]) -> list[GateCheck]:
        cfg = self.config
        checks = []
        worst = dict(evidence.worst_slices or {})
        for metric, floor in (("hit_rate", cfg.min_slice_hit_rate), ("sharpe", cfg.min_slice_sharpe)):
            if floor is None:
                continue
            name = f"worst slice {metric.replace('_', ' ')}"
            if metric not in worst:
                checks.append(
                    GateCheck(
                        name,
                        False,
                        "none",
                        floor,
                        f"a {metric} floor of {floor} is set but the evidence has no slice {metric}; compute "
                        "the model's bias report (`alphaloom models bias NAME`) and pass its worst_slices",
                    )
                )
                continue
            label, value = worst[metric]
            stats[f"worst_slice_{metric}"] = float(value)
            stats[f"worst_slice_{metric}_at"] = str(label)
            ok = math.isfinite(value) and value >= floor
            checks.append(
                GateCheck(
                    name,
                    ok,
                    float(value),
                    floor,
                    f"worst slice {label}: {metric} {value:.4g} {'>=' if ok else '<'} floor {floor}",
                )
            )
        return checks

    def _compare(self, r: np.ndarray, champion: np.ndarray, ppy: float, stats: dict[str, Any]) -> GateCheck:
        cfg = self.config
        root = math.sqrt(ppy)
        lw = measures.sharpe_difference_test(r, champion, method="ledoit_wolf")
        jkm = measures.sharpe_difference_test(r, champion, method="jkm")
        boot = measures.paired_bootstrap_sharpe_difference(
            r, champion, n_resamples=cfg.n_resamples, block_length=cfg.block_length, seed=cfg.seed
        )
        if cfg.test == "bootstrap":
            kw = {"n_resamples": cfg.n_resamples, "block_length": cfg.block_length, "seed": cfg.seed}
            p_gain = measures.paired_bootstrap_sharpe_difference(
                r, champion, alternative="greater", **kw
            ).p_value
            p_loss = measures.paired_bootstrap_sharpe_difference(
                r, champion, alternative="less", **kw
            ).p_value
        else:
            p_gain = measures.sharpe_difference_test(
                r, champion, method=cfg.test, alternative="greater"
            ).p_value
            p_loss = measures.sharpe_difference_test(r, champion, method=cfg.test, alternative="less").p_value
        stats |= {
            "champion_sharpe_annual": measures.sharpe_ratio(champion, ppy),
            "sharpe_difference_annual": lw.difference * root,
            "return_correlation": lw.correlation,
            "bootstrap_low_annual": boot.low * root,
            "bootstrap_high_annual": boot.high * root,
            "bootstrap_p_two_sided": boot.p_value,
            "ledoit_wolf_z": lw.statistic,
            "ledoit_wolf_p_two_sided": lw.p_value,
            "jkm_z": jkm.statistic,
            "jkm_p_two_sided": jkm.p_value,
            "deciding_test": cfg.test,
            "p_gain": p_gain,
            "p_loss": p_loss,
            "min_sample_bars": measures.sharpe_difference_sample_size(r, champion, alpha=cfg.alpha),
        }
        diff = stats["sharpe_difference_annual"]
        if cfg.comparison == "significantly_better":
            ok = p_gain < cfg.alpha
            detail = (
                f"Sharpe difference {diff:+.2f} a year vs the champion, one-sided p = {p_gain:.4f} "
                f"({cfg.test}) {'<' if ok else '>='} {cfg.alpha}: "
                + ("better beyond chance" if ok else "not better beyond chance")
            )
            return GateCheck("better than champion", ok, p_gain, cfg.alpha, detail)
        ok = not p_loss < cfg.alpha
        detail = (
            f"Sharpe difference {diff:+.2f} a year vs the champion, one-sided p(loss) = {p_loss:.4f} "
            f"({cfg.test}): " + ("no significant loss" if ok else f"significantly worse at {cfg.alpha}")
        )
        return GateCheck("no significant loss vs champion", ok, p_loss, cfg.alpha, detail)
