"""Signal sources: what the trading engine asks, per symbol and bar, for a target position.

:class:`SignalSource` owns the checks; a source fills one hook, ``_decide``. The public :meth:`decide`
refuses bars from after the decision time (no look-ahead) or too few of them, checks the hook's signal
(symbol, time, a finite size in [-1, 1]) and stamps the decision with a SHA-256 hash of exactly the inputs the
hook used, so the audit log can show what a model saw.

:class:`TrendRule` is the built-in rule: a moving-average trend filter with volatility targeting, on closes
only. It needs no training, so the engine uses it as the fallback when the primary model fails.
"""

from __future__ import annotations

import hashlib
import math
from abc import ABC, abstractmethod
from datetime import datetime
from typing import NamedTuple

import numpy as np
import pandas as pd
from pydantic import Field, model_validator

from alphaloom.core.config import ComponentConfig
from alphaloom.core.exceptions import DataFormatError, EmptyRangeError
from alphaloom.core.timeutil import ensure_utc
from alphaloom.core.types import SignalAction, TradingSignal

__all__ = [
    "SignalDecision",
    "SignalSource",
    "TrendRule",
    "TrendRuleConfig",
    "input_hash",
    "make_signal",
]


class SignalDecision(NamedTuple):
    """A checked signal with the hash of its inputs and the name of the source that made it."""

    signal: TradingSignal
    input_hash: str
    source: str


def input_hash(symbol: str, ts: datetime, inputs: np.ndarray) -> str:
    """SHA-256 (hex) of a decision's inputs: the symbol, the UTC decision time and the float64 values."""
    values = np.ascontiguousarray(np.asarray(inputs, dtype=np.float64))
    h = hashlib.sha256()
    h.update(f"{symbol}|{ensure_utc(ts).isoformat()}|{values.shape}|".encode())
    h.update(values.tobytes())
    return h.hexdigest()


class SignalSource(ABC):
    """Base of every signal source; subclasses set ``name`` and ``lookback`` and implement ``_decide``.

    Parameters of :meth:`decide` reach the hook checked: an aware UTC ``ts``, and ``bars`` (one symbol's
    bars frame, sorted by ``ts``) holding at least ``lookback`` rows, none after ``ts``.
    """

    #: Short name used in logs and the audit trail.
    name: str = ""
    #: Bars of history the source needs, including the decision bar.
    lookback: int = 1

    def decide(self, symbol: str, ts: datetime, bars: pd.DataFrame) -> SignalDecision:
        """The signal for ``symbol`` at decision time ``ts`` from ``bars`` up to ``ts``.

        Raises
        ------
        DataFormatError
            ``bars`` has bars after ``ts`` (look-ahead), is not sorted, lacks a ``close`` column, or the hook
            returned a signal for another symbol or time.
        EmptyRangeError
            Fewer than ``lookback`` bars.
        """
        ts = ensure_utc(ts, name="ts")
        if not isinstance(bars, pd.DataFrame) or "ts" not in bars or "close" not in bars:
            raise DataFormatError(
                f"{self.name}: bars must be a frame with 'ts' and 'close' columns, got "
                f"{type(bars).__name__}{list(bars.columns) if isinstance(bars, pd.DataFrame) else ''}."
            )
        stamps = pd.DatetimeIndex(bars["ts"])
        if len(stamps) and stamps.max() > pd.Timestamp(ts):
            raise DataFormatError(
                f"{self.name}: bars of {symbol} run to {stamps.max().isoformat()}, after the decision time "
                f"{ts.isoformat()}; a signal may only see bars up to its decision."
            )
        if not stamps.is_monotonic_increasing:
            raise DataFormatError(f"{self.name}: bars of {symbol} must be sorted by ts.")
        if len(bars) < self.lookback:
            raise EmptyRangeError(
                f"{self.name} needs {self.lookback} bars of {symbol} up to {ts.isoformat()}, got "
                f"{len(bars)}; load more history before the first decision."
            )
        signal, inputs = self._decide(symbol, ts, bars)
        if not isinstance(signal, TradingSignal):
            raise DataFormatError(f"{self.name}._decide returned {type(signal).__name__}, not TradingSignal.")
        if signal.symbol != symbol or signal.ts != ts:
            raise DataFormatError(
                f"{self.name}._decide answered for {signal.symbol} at {signal.ts.isoformat()}, expected "
                f"{symbol} at {ts.isoformat()}."
            )
        return SignalDecision(signal, input_hash(symbol, ts, inputs), self.name)

    @abstractmethod
    def _decide(self, symbol: str, ts: datetime, bars: pd.DataFrame) -> tuple[TradingSignal, np.ndarray]:
        """The signal and the exact input values it was computed from (hashed for the audit trail)."""


def make_signal(
    symbol: str, ts: datetime, position_size: float, confidence: float, model_version: str
) -> TradingSignal:
    """A :class:`TradingSignal` whose action follows the sign of ``position_size`` (0: HOLD)."""
    if not (math.isfinite(position_size) and math.isfinite(confidence)):
        raise DataFormatError(
            f"a signal needs a finite size and confidence, got {position_size!r}, {confidence!r}."
        )
    size = min(1.0, max(-1.0, position_size))
    action = SignalAction.BUY if size > 0 else SignalAction.SELL if size < 0 else SignalAction.HOLD
    return TradingSignal(
        symbol=symbol,
        action=action,
        confidence=min(1.0, max(0.0, confidence)),
        position_size=size,
        ts=ts,
        model_version=model_version,
    )


class TrendRuleConfig(ComponentConfig):
    """Settings of :class:`TrendRule`.

    Parameters
    ----------
    fast_window, slow_window
        Moving averages of the close, in bars; long (or short) while the fast one is above (below) the slow.
    vol_window
        Bars of log returns for the realised volatility.
    target_vol
        Annualised volatility a position is sized for (0.15 = 15 %).
    max_weight
        Cap on one symbol's target weight.
    periods_per_year
        Bars per year, to annualise the volatility (252 trading days).
    allow_short
        Go short in a down-trend (otherwise flat).
    """

    fast_window: int = Field(20, ge=2)
    slow_window: int = Field(60, ge=3)
    vol_window: int = Field(20, ge=2)
    target_vol: float = Field(0.15, gt=0.0, le=2.0)
    max_weight: float = Field(0.5, gt=0.0, le=1.0)
    periods_per_year: float = Field(252.0, gt=0.0)
    allow_short: bool = False

    @model_validator(mode="after")
    def _windows(self) -> TrendRuleConfig:
        if self.fast_window >= self.slow_window:
            raise ValueError(
                f"fast_window ({self.fast_window}) must be shorter than slow_window ({self.slow_window})"
            )
        return self


class TrendRule(SignalSource):
    """Moving-average trend with volatility targeting, on closes only (the engine's fallback).

    The target weight is ``direction * min(max_weight, target_vol / realised_vol)`` where the direction is
    the sign of ``MA_fast - MA_slow`` (0 when shorting is off and the trend is down), and the confidence is
    ``|log(MA_fast / MA_slow)|`` in units of the slow window's volatility, capped at 1.
    """

    name = "trend_rule"

    def __init__(self, config: TrendRuleConfig | None = None) -> None:
        self.config = config if config is not None else TrendRuleConfig()
        self.lookback = max(self.config.slow_window, self.config.vol_window + 1)
        self.model_version = f"trend_rule-{self.config.config_hash()}"

    def _decide(self, symbol: str, ts: datetime, bars: pd.DataFrame) -> tuple[TradingSignal, np.ndarray]:
        cfg = self.config
        closes = bars["close"].to_numpy(dtype=np.float64)[-self.lookback :]
        if not (np.isfinite(closes).all() and (closes > 0).all()):
            raise DataFormatError(f"{self.name}: closes of {symbol} must be finite and > 0.")
        fast = closes[-cfg.fast_window :].mean()
        slow = closes[-cfg.slow_window :].mean()
        rets = np.diff(np.log(closes[-(cfg.vol_window + 1) :]))
        vol = float(rets.std(ddof=1)) if len(rets) > 1 else 0.0
        trend = math.log(fast / slow)
        direction = 1.0 if trend > 0 else (-1.0 if trend < 0 and cfg.allow_short else 0.0)
        if vol > 0:
            size = min(cfg.max_weight, cfg.target_vol / (vol * math.sqrt(cfg.periods_per_year)))
            confidence = min(1.0, abs(trend) / (vol * math.sqrt(cfg.slow_window)))
        else:
            size, confidence = cfg.max_weight, 1.0
        return make_signal(symbol, ts, direction * size, confidence, self.model_version), closes
