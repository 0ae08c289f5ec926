"""A/B testing of a challenger against the champion: routing, recording, significance and attribution.

:class:`ABRouter` sits where the signal service asks a model for a target: it asks both arms on the same
inputs and records both answers. In ``shadow`` mode the champion alone acts; in ``split`` mode the challenger
acts on a fixed share of symbols (assigned by a salted hash, so the assignment is stable across restarts and
machines) or of capital (the target is ``(1 - share) * champion + share * challenger``).

:func:`compare_arms` judges the two arms' per-bar returns over the same bars with the paired tests of
:mod:`alphaloom.risk.measures` (block bootstrap of the Sharpe difference, Ledoit-Wolf, Jobson-Korkie-Memmel
and, given forecast losses, Diebold-Mariano), reports the minimum sample size, and decides:

* ``promote``: the challenger's Sharpe ratio is higher beyond chance (one-sided p below ``alpha``);
* ``keep``: it is lower beyond chance, or the sample is already large enough to have seen a difference of
  the observed size and did not;
* ``need_more_data``: no significant difference yet, and fewer bars than the minimum sample size.

:func:`attribute_returns` splits the comparison by asset, agent or market regime
(:func:`regime_labels`).
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, NamedTuple

import numpy as np
import numpy.typing as npt
import pandas as pd
from pydantic import Field

from alphaloom.core.config import ComponentConfig
from alphaloom.core.exceptions import ConfigError, DataFormatError
from alphaloom.core.timeutil import ensure_utc
from alphaloom.risk import measures

__all__ = [
    "ABComparison",
    "ABConfig",
    "ABDecision",
    "ABRecord",
    "ABRouter",
    "ABTestConfig",
    "SignalFn",
    "attribute_returns",
    "compare_arms",
    "regime_labels",
]

log = logging.getLogger(__name__)

#: A signal source as the router sees it: ``(symbol, decision time, inputs) -> target weight``.
SignalFn = Callable[[str, datetime, np.ndarray], float]

Decision = Literal["promote", "keep", "need_more_data"]


class ABConfig(ComponentConfig):
    """How the router splits decisions between the champion and the challenger.

    Attributes
    ----------
    mode
        ``"shadow"``: the challenger runs on the same inputs and is recorded, the champion alone acts.
        ``"split"``: the challenger acts on ``challenger_share`` of symbols or capital.
    split_by
        ``"symbol"`` or ``"capital"`` (split mode).
    challenger_share
        Share of symbols (in expectation) or of capital the challenger trades in split mode, in (0, 1).
    salt
        Salt of the symbol assignment hash; change it to draw a new assignment.
    """

    mode: Literal["shadow", "split"] = "shadow"
    split_by: Literal["symbol", "capital"] = "symbol"
    challenger_share: float = Field(default=0.5, gt=0.0, lt=1.0)
    salt: str = "alphaloom-ab"


class ABRecord(NamedTuple):
    """One arm's answer to one decision."""

    ts: datetime
    symbol: str
    arm: str
    """``"champion"`` or ``"challenger"``."""
    model: str
    """The arm's model name (e.g. ``"ensemble/3"``)."""
    signal: float
    """Target weight the arm asked for (NaN when it failed)."""
    weight: float
    """Share of the executed target this arm carries: 1 or 0 per symbol, the capital share, 0 in shadow."""
    error: str
    """Why the arm failed, empty when it answered."""


class ABDecision(NamedTuple):
    """The routed decision: the target to execute and both arms' answers."""

    symbol: str
    ts: datetime
    target: float
    champion_signal: float
    challenger_signal: float
    challenger_weight: float


class ABRouter:
    """Ask the champion and the challenger for every decision; act as the config says; record both.

    Parameters
    ----------
    champion, challenger
        Signal sources ``(symbol, ts, inputs) -> target weight``.
    config
        The split; shadow mode by default.
    champion_name, challenger_name
        Names recorded with each answer (registry references such as ``"ensemble/3"``).
    sink
        Called with each :class:`ABRecord` as it is made (e.g. to write it to a store); records are kept in
        :attr:`records_` either way.

    Notes
    -----
    A challenger that raises is recorded with its error and carries no weight for that decision: an
    experiment never stops the live loop. A champion that raises propagates, so the engine's own fallback
    applies.
    """

    def __init__(
        self,
        champion: SignalFn,
        challenger: SignalFn,
        config: ABConfig | None = None,
        *,
        champion_name: str = "champion",
        challenger_name: str = "challenger",
        sink: Callable[[ABRecord], None] | None = None,
    ) -> None:
        if not (callable(champion) and callable(challenger)):
            raise ConfigError(
                "champion and challenger must be callables (symbol, ts, inputs) -> target weight."
            )
        self.champion = champion
        self.challenger = challenger
        self.config = config if config is not None else ABConfig()
        if not isinstance(self.config, ABConfig):
            raise ConfigError(f"ABRouter takes an ABConfig, got {type(self.config).__name__}.")
        self.champion_name = champion_name
        self.challenger_name = challenger_name
        self.sink = sink
        self.records_: list[ABRecord] = []

    def assigned_to_challenger(self, symbol: str) -> bool:
        """Whether the challenger trades ``symbol`` in a split by symbol (stable: a salted SHA-256)."""
        digest = hashlib.sha256(f"{self.config.salt}|{symbol}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2.0**64 < self.config.challenger_share

    def challenger_weight(self, symbol: str) -> float:
        """Share of the executed target the challenger carries for ``symbol``."""
        cfg = self.config
        if cfg.mode == "shadow":
            return 0.0
        if cfg.split_by == "capital":
            return cfg.challenger_share
        return 1.0 if self.assigned_to_challenger(symbol) else 0.0

    def decide(self, symbol: str, ts: datetime, inputs: npt.ArrayLike) -> ABDecision:
        """Route one decision: both arms see the same (read-only) inputs; both answers are recorded.

        Raises
        ------
        DataFormatError
            The champion returned a non-finite target.
        """
        if not isinstance(symbol, str) or not symbol:
            raise DataFormatError(f"symbol must be a non-empty string, got {symbol!r}.")
        ts = ensure_utc(ts, name="ts")
        x = np.array(inputs, dtype=np.float64, copy=True)
        x.flags.writeable = False  # neither arm can change what the other sees
        champion = float(self.champion(symbol, ts, x))
        if not math.isfinite(champion):
            raise DataFormatError(
                f"the champion {self.champion_name} returned a non-finite target {champion!r} for {symbol} "
                f"at {ts.isoformat()}."
            )
        error = ""
        try:
            challenger = float(self.challenger(symbol, ts, x))
            if not math.isfinite(challenger):
                error = f"non-finite target {challenger!r}"
        except Exception as exc:  # an experiment must not stop the live loop; the error is recorded
            challenger, error = math.nan, f"{type(exc).__name__}: {exc}"
        w = 0.0 if error else self.challenger_weight(symbol)
        if error:
            log.warning("A/B challenger %s failed on %s at %s: %s", self.challenger_name, symbol, ts, error)
        target = (1.0 - w) * champion + (w * challenger if w else 0.0)
        for record in (
            ABRecord(ts, symbol, "champion", self.champion_name, champion, 1.0 - w, ""),
            ABRecord(
                ts,
                symbol,
                "challenger",
                self.challenger_name,
                challenger if not error else math.nan,
                w,
                error,
            ),
        ):
            self.records_.append(record)
            if self.sink is not None:
                self.sink(record)
        return ABDecision(symbol, ts, target, champion, challenger if not error else math.nan, w)

    def frame(self) -> pd.DataFrame:
        """The records so far, one row per arm and decision."""
        return pd.DataFrame(self.records_, columns=list(ABRecord._fields))


# ----------------------------------------------------------------------------------------- significance
class ABTestConfig(ComponentConfig):
    """Settings of :func:`compare_arms`.

    Attributes
    ----------
    alpha
        One-sided significance level of the deciding test.
    power
        Power wanted for the minimum sample size.
    test
        The deciding test: ``"bootstrap"``, ``"ledoit_wolf"`` or ``"jkm"`` (all are reported).
    n_resamples, block_length, seed
        Of the bootstrap.
    min_bars
        Below this many paired bars the decision is ``need_more_data`` whatever the tests say.
    """

    alpha: float = Field(default=0.05, gt=0.0, lt=0.5)
    power: float = Field(default=0.8, gt=0.0, lt=1.0)
    test: Literal["bootstrap", "ledoit_wolf", "jkm"] = "bootstrap"
    n_resamples: int = Field(default=2000, ge=100)
    block_length: int | None = Field(default=None, ge=1)
    seed: int = 0
    min_bars: int = Field(default=30, ge=5)


@dataclass(frozen=True)
class ABComparison:
    """The paired comparison of the two arms and the decision; see :func:`compare_arms`."""

    n_bars: int
    periods_per_year: float
    champion_sharpe_annual: float
    challenger_sharpe_annual: float
    difference_annual: float
    bootstrap: measures.BootstrapSharpeDifference
    ledoit_wolf: measures.SharpeDifference
    jkm: measures.SharpeDifference
    diebold_mariano: measures.DieboldMariano | None
    p_gain: float
    p_loss: float
    min_sample_bars: float
    decision: Decision
    reason: str

    def statistics(self) -> dict[str, float | str]:
        """Every figure by name (annualised Sharpe figures; p-values; bars)."""
        root = math.sqrt(self.periods_per_year)
        out: dict[str, float | str] = {
            "n_bars": float(self.n_bars),
            "champion_sharpe_annual": self.champion_sharpe_annual,
            "challenger_sharpe_annual": self.challenger_sharpe_annual,
            "sharpe_difference_annual": self.difference_annual,
            "bootstrap_low_annual": self.bootstrap.low * root,
            "bootstrap_high_annual": self.bootstrap.high * root,
            "bootstrap_p_two_sided": self.bootstrap.p_value,
            "ledoit_wolf_z": self.ledoit_wolf.statistic,
            "ledoit_wolf_p_two_sided": self.ledoit_wolf.p_value,
            "jkm_z": self.jkm.statistic,
            "jkm_p_two_sided": self.jkm.p_value,
            "return_correlation": self.ledoit_wolf.correlation,
            "p_gain": self.p_gain,
            "p_loss": self.p_loss,
            "min_sample_bars": self.min_sample_bars,
            "decision": self.decision,
        }
        if self.diebold_mariano is not None:
            out["diebold_mariano_stat"] = self.diebold_mariano.statistic
            out["diebold_mariano_p"] = self.diebold_mariano.p_value
        return out


def _series(x: npt.ArrayLike, name: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 1:
        raise DataFormatError(f"{name} must have shape (n,), got {arr.shape}.")
    bad = int(np.count_nonzero(~np.isfinite(arr)))
    if bad:
        raise DataFormatError(
            f"{name} holds {bad} non-finite value(s); align the arms on bars where both have a return "
            "(and report the rest) rather than passing gaps."
        )
    return arr


def compare_arms(
    champion_returns: npt.ArrayLike,
    challenger_returns: npt.ArrayLike,
    *,
    periods_per_year: float = 252.0,
    config: ABTestConfig | None = None,
    champion_losses: npt.ArrayLike | None = None,
    challenger_losses: npt.ArrayLike | None = None,
) -> ABComparison:
    """Compare the arms' per-bar returns over the same bars and decide promote, keep or need more data.

    Parameters
    ----------
    champion_returns, challenger_returns
        Simple returns per bar, shape ``(n,)`` each, over the same bars (shadow mode gives both on every
        bar).
    periods_per_year
        Bars per year, for the annualised figures.
    config
        Level, power, the deciding test and its settings.
    champion_losses, challenger_losses
        Optional per-bar forecast losses over the same periods, for a Diebold-Mariano test (reported; the
        decision rests on returns).

    Returns
    -------
    ABComparison
    """
    cfg = config if config is not None else ABTestConfig()
    champ = _series(champion_returns, "champion_returns")
    chall = _series(challenger_returns, "challenger_returns")
    if champ.shape != chall.shape:
        raise DataFormatError(
            f"champion_returns has {champ.size} bars, challenger_returns {chall.size}; pass both arms over "
            "the same bars."
        )
    if not (isinstance(periods_per_year, int | float) and 0 < periods_per_year < math.inf):
        raise ConfigError(
            f"periods_per_year must be a positive number of bars per year, got {periods_per_year!r}."
        )
    ppy = float(periods_per_year)
    root = math.sqrt(ppy)
    boot_kw: dict[str, Any] = {
        "n_resamples": cfg.n_resamples,
        "block_length": cfg.block_length,
        "seed": cfg.seed,
    }
    boot = measures.paired_bootstrap_sharpe_difference(chall, champ, **boot_kw)
    lw = measures.sharpe_difference_test(chall, champ, method="ledoit_wolf")
    jkm = measures.sharpe_difference_test(chall, champ, method="jkm")
    if cfg.test == "bootstrap":
        p_gain = measures.paired_bootstrap_sharpe_difference(
            chall, champ, alternative="greater", **boot_kw
        ).p_value
        p_loss = measures.paired_bootstrap_sharpe_difference(
            chall, champ, alternative="less", **boot_kw
        ).p_value
    else:
        p_gain = measures.sharpe_difference_test(chall, champ, method=cfg.test, alternative="greater").p_value
        p_loss = measures.sharpe_difference_test(chall, champ, method=cfg.test, alternative="less").p_value
    dm = None
    if (champion_losses is None) != (challenger_losses is None):
        raise DataFormatError("pass both champion_losses and challenger_losses, or neither.")
    if champion_losses is not None and challenger_losses is not None:
        dm = measures.diebold_mariano(
            _series(challenger_losses, "challenger_losses"), _series(champion_losses, "champion_losses")
        )
    n = int(champ.size)
    needed = measures.sharpe_difference_sample_size(
        chall, champ, alpha=cfg.alpha, power=cfg.power, alternative="greater"
    )
    diff = lw.difference * root
    decision: Decision
    if n < cfg.min_bars or math.isnan(p_gain):
        decision, reason = (
            "need_more_data",
            f"only {n} paired bars with defined Sharpe ratios (need {cfg.min_bars})",
        )
    elif p_gain < cfg.alpha:
        decision = "promote"
        reason = f"challenger better by {diff:+.2f} Sharpe a year, one-sided p = {p_gain:.4f} < {cfg.alpha}"
    elif p_loss < cfg.alpha:
        decision = "keep"
        reason = f"challenger worse by {diff:+.2f} Sharpe a year, one-sided p = {p_loss:.4f} < {cfg.alpha}"
    elif n < needed:
        decision = "need_more_data"
        reason = (
            f"no significant difference ({diff:+.2f} Sharpe a year, p = {p_gain:.3f}); detecting a "
            f"difference this size with power {cfg.power} needs about {needed:.0f} bars, have {n}"
        )
    else:
        decision = "keep"
        reason = (
            f"no significant gain ({diff:+.2f} Sharpe a year, p = {p_gain:.3f}) after {n} bars, more than "
            f"the {needed:.0f} needed to see a difference this size"
        )
    return ABComparison(
        n_bars=n,
        periods_per_year=ppy,
        champion_sharpe_annual=measures.sharpe_ratio(champ, ppy),
        challenger_sharpe_annual=measures.sharpe_ratio(chall, ppy),
        difference_annual=diff,
        bootstrap=boot,
        ledoit_wolf=lw,
        jkm=jkm,
        diebold_mariano=dm,
        p_gain=p_gain,
        p_loss=p_loss,
        min_sample_bars=needed,
        decision=decision,
        reason=reason,
    )


# ----------------------------------------------------------------------------------------- attribution
def regime_labels(close: npt.ArrayLike, window: int = 63) -> np.ndarray:
    """Market regime at each bar from trailing data only: trend (``bull``/``bear``) x volatility
    (``calm``/``volatile``).

    Trend is the sign of the log return over the last ``window`` bars; volatility is high when the trailing
    ``window``-bar standard deviation of log returns is above its own expanding median up to that bar. The
    label at bar ``t`` reads closes up to ``t`` only.

    Parameters
    ----------
    close
        Closing prices, shape ``(n,)``, positive.
    window
        Look-back in bars, at least 5.

    Returns
    -------
    ndarray of str, shape ``(n,)``
        ``"bull/calm"``, ``"bull/volatile"``, ``"bear/calm"``, ``"bear/volatile"``; ``"warm-up"`` for
        the first ``window`` bars.
    """
    c = np.asarray(close, dtype=np.float64)
    if c.ndim != 1:
        raise DataFormatError(f"close must have shape (n,), got {c.shape}.")
    if not (isinstance(window, int) and window >= 5):
        raise ConfigError(f"window must be an integer >= 5 bars, got {window!r}.")
    if not (np.isfinite(c).all() and (c > 0).all()):
        raise DataFormatError("close must hold positive finite prices to label regimes.")
    logp = pd.Series(np.log(c))
    trend = logp.diff(window)
    vol = logp.diff().rolling(window).std()
    typical = vol.expanding().median()
    out = np.where(trend > 0, "bull", "bear").astype(object)
    out = out + np.where(vol > typical, "/volatile", "/calm").astype(object)
    out[vol.isna().to_numpy() | trend.isna().to_numpy()] = "warm-up"
    return out.astype(str)


def attribute_returns(
    frame: pd.DataFrame, by: str, *, periods_per_year: float | Mapping[str, float] = 252.0
) -> pd.DataFrame:
    """Compare the arms group by group (asset, agent, regime).

    Parameters
    ----------
    frame
        One row per bar (and group), with columns ``by``, ``champion`` and ``challenger`` (per-bar simple
        returns of each arm).
    by
        The grouping column (``"symbol"``, ``"agent"``, ``"regime"``).
    periods_per_year
        Bars per year, one number or one per group value.

    Returns
    -------
    DataFrame
        One row per group: ``n_bars``, ``champion_return``, ``challenger_return`` (compounded), their
        annualised Sharpe ratios and ``sharpe_difference``, and ``contribution``: the group's share of the
        total difference in summed returns.
    """
    needed = [by, "champion", "challenger"]
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise DataFormatError(f"attribute_returns needs columns {needed}; missing {missing}.")
    total = float(frame["challenger"].sum() - frame["champion"].sum())
    rows = []
    for key, g in frame.groupby(by, sort=True):
        ppy = (
            periods_per_year.get(str(key), 252.0)
            if isinstance(periods_per_year, Mapping)
            else periods_per_year
        )
        a, b = g["champion"].to_numpy(float), g["challenger"].to_numpy(float)
        s_a, s_b = measures.sharpe_ratio(a, ppy), measures.sharpe_ratio(b, ppy)
        rows.append(
            {
                by: key,
                "n_bars": len(g),
                "champion_return": measures.total_return(a),
                "challenger_return": measures.total_return(b),
                "champion_sharpe": s_a,
                "challenger_sharpe": s_b,
                "sharpe_difference": s_b - s_a,
                "contribution": float(b.sum() - a.sum()) / total if total else math.nan,
            }
        )
    return pd.DataFrame(rows)
