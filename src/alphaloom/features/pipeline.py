"""Scale-free features from a bars frame, following the scikit-learn fit/transform contract.

:class:`FeatureEngineer` turns one symbol's canonical bars (``ts, open, high, low, close, volume``) into a
frame of float64 features indexed by ``ts``. Every feature is **scale-free** (a log return, a ratio of two
prices, a volatility in log units, a share of volume), so frames from stocks, forex and crypto can be pooled
to train one model. Features come in four groups, chosen by :attr:`FeatureConfig.groups`:

- **returns**: ``log_ret_{k}``, the log return over ``k`` bars.
- **price**: ``close_sma_{n}`` and ``close_ema_{n}``, the close over its moving average minus 1;
  ``bb_pctb_{n}`` and ``bb_width_{n}``, Bollinger %B and bandwidth; ``rsi_{n}``, RSI / 100; ``macd_line``,
  ``macd_signal`` and ``macd_hist``, MACD divided by the close.
- **volatility**: ``atr_{n}``, ATR / close; ``gk_vol_{n}`` and ``parkinson_vol_{n}``, Garman-Klass and
  Parkinson range volatility; ``realised_vol_{n}``, the RMS of one-bar log returns; ``vol_ratio_{s}_{l}``,
  short over long realised volatility.
- **volume**: ``vwap_dist_{n}``, close / rolling VWAP - 1; ``obv_slope_{n}``, the change in on-balance volume
  over ``n`` bars divided by the volume traded in them (in [-1, 1]); ``volume_roc_{n}``, the log of the
  volume traded in the last ``n`` bars over that of the ``n`` bars before, clipped to
  ``[-VOLUME_ROC_CLIP, VOLUME_ROC_CLIP]``.

Volatilities are per bar, in log-return units.

NaN policy
----------
- **Warm-up rows are NaN.** Row ``t`` of a feature uses bars ``<= t`` only, so the first rows of a feature
  with a ``w``-bar look-back are NaN; nothing is ever back-filled with later data. :attr:`FeatureEngineer.
  lookback` is the largest warm-up: rows from index ``lookback`` on are complete.
- **Instruments without volume** (a volume column that is all NaN or all zero, as for most forex sources)
  get every volume feature equal to 0.0 after its warm-up; :attr:`FeatureEngineer.has_volume_` records it.
- **Missing volume inside a series counts as zero volume.** Windows that traded nothing give neutral values:
  ``vwap_dist`` and ``obv_slope`` are 0.0, ``volume_roc`` is 0.0 when both windows are empty and at the
  clip when only one is.
- Prices must be finite and positive; bad input raises :class:`~alphaloom.core.exceptions.DataFormatError`
  (or :class:`~alphaloom.core.exceptions.EmptyRangeError` for too short a history) saying how to fix it.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property
from typing import Annotated, Literal, NamedTuple, Self

import numpy as np
import pandas as pd
from pydantic import Field, model_validator

from alphaloom.core.config import ComponentConfig
from alphaloom.core.exceptions import DataFormatError, EmptyRangeError, NotFittedError
from alphaloom.features import indicators as ind
from alphaloom.features._frames import BarArrays, bar_arrays

__all__ = ["FEATURE_GROUPS", "VOLUME_ROC_CLIP", "FeatureConfig", "FeatureEngineer"]

FeatureGroup = Literal["returns", "price", "volatility", "volume"]

#: Feature groups in the order their columns appear.
FEATURE_GROUPS: tuple[FeatureGroup, ...] = ("returns", "price", "volatility", "volume")

#: Bound on ``volume_roc``: a factor of about 150 either way (reached when one window traded nothing).
VOLUME_ROC_CLIP = 5.0

Window = Annotated[int, Field(ge=1, le=10_000)]


class FeatureConfig(ComponentConfig):
    """Which feature groups to compute and the window (in bars) of each indicator.

    Parameters
    ----------
    groups
        Feature groups to include; columns always come in the order returns, price, volatility, volume.
    return_windows
        Horizons of the log returns.
    sma_windows, ema_windows
        Windows of the close-over-moving-average features.
    bollinger_window, bollinger_k
        Bollinger window and band half-width in standard deviations.
    rsi_window
        Wilder RSI period.
    macd_fast, macd_slow, macd_signal
        MACD spans (``macd_fast < macd_slow``).
    atr_window
        Wilder ATR period.
    range_vol_window
        Window of the Garman-Klass and Parkinson estimates.
    realised_vol_window
        Window of the realised volatility feature.
    vol_ratio_short, vol_ratio_long
        Windows of the volatility ratio (``short < long``).
    vwap_window, obv_window, volume_roc_window
        Windows of the volume features.
    """

    groups: tuple[FeatureGroup, ...] = FEATURE_GROUPS
    return_windows: tuple[Window, ...] = (1, 5, 20)
    sma_windows: tuple[Window, ...] = (10, 50)
    ema_windows: tuple[Window, ...] = (20,)
    bollinger_window: Annotated[int, Field(ge=2, le=10_000)] = 20
    bollinger_k: float = Field(default=2.0, gt=0.0, le=10.0)
    rsi_window: Window = 14
    macd_fast: Window = 12
    macd_slow: Window = 26
    macd_signal: Window = 9
    atr_window: Window = 14
    range_vol_window: Window = 20
    realised_vol_window: Window = 20
    vol_ratio_short: Window = 5
    vol_ratio_long: Window = 20
    vwap_window: Window = 20
    obv_window: Window = 20
    volume_roc_window: Window = 5

    @model_validator(mode="after")
    def _consistent(self) -> FeatureConfig:
        if not self.groups:
            raise ValueError(f"groups must name at least one of {', '.join(FEATURE_GROUPS)}")
        if len(set(self.groups)) != len(self.groups):
            raise ValueError(f"groups must not repeat a group, got {self.groups}")
        for name in ("return_windows", "sma_windows", "ema_windows"):
            windows = getattr(self, name)
            if len(set(windows)) != len(windows):
                raise ValueError(f"{name} must not repeat a window, got {windows}")
        if self.macd_fast >= self.macd_slow:
            raise ValueError(f"macd_fast ({self.macd_fast}) must be < macd_slow ({self.macd_slow})")
        if self.vol_ratio_short >= self.vol_ratio_long:
            raise ValueError(
                f"vol_ratio_short ({self.vol_ratio_short}) must be < vol_ratio_long ({self.vol_ratio_long})"
            )
        if not _plan(self):
            raise ValueError("the selected groups and windows produce no features; add a group or a window")
        return self


class _Spec(NamedTuple):
    name: str
    group: FeatureGroup
    warmup: int  # index of the first row the feature is defined on
    compute: Callable[[_Inputs], np.ndarray]


class _Inputs:
    """One symbol's arrays plus indicators shared by several features, each computed once."""

    def __init__(self, bars: BarArrays, config: FeatureConfig) -> None:
        self.bars = bars
        self.config = config
        self.close = bars.close

    @cached_property
    def bollinger(self) -> ind.Bollinger:
        return ind.bollinger(self.close, self.config.bollinger_window, self.config.bollinger_k)

    @cached_property
    def macd(self) -> ind.MACD:
        c = self.config
        return ind.macd(self.close, c.macd_fast, c.macd_slow, c.macd_signal)


def _shift(x: np.ndarray, k: int) -> np.ndarray:
    out = np.full_like(x, np.nan)
    if k < len(x):
        out[k:] = x[: len(x) - k]
    return out


def _vwap_distance(x: _Inputs, n: int) -> np.ndarray:
    b = x.bars
    vwap = ind.vwap(b.high, b.low, b.close, b.volume, n)
    return np.where(np.isnan(vwap), 0.0, b.close / vwap - 1.0)


def _obv_slope(x: _Inputs, n: int) -> np.ndarray:
    b = x.bars
    obv = ind.obv(b.close, b.volume)
    change = obv - _shift(obv, n)
    traded = ind.rolling_sum(b.volume, n)
    out = np.zeros_like(change)
    np.divide(change, traded, out=out, where=traded > 0.0)
    return out


def _volume_roc(x: _Inputs, n: int) -> np.ndarray:
    traded = ind.rolling_sum(x.bars.volume, n)
    before = _shift(traded, n)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.log(traded) - np.log(before)
    out[(traded == 0.0) & (before == 0.0)] = 0.0
    return np.clip(out, -VOLUME_ROC_CLIP, VOLUME_ROC_CLIP)


def _plan(c: FeatureConfig) -> list[_Spec]:
    specs: list[_Spec] = []

    def add(name: str, group: FeatureGroup, warmup: int, compute: Callable[[_Inputs], np.ndarray]) -> None:
        specs.append(_Spec(name, group, warmup, compute))

    for k in c.return_windows:
        add(f"log_ret_{k}", "returns", k, lambda x, k=k: ind.log_return(x.close, k))

    for n in c.sma_windows:
        add(f"close_sma_{n}", "price", n - 1, lambda x, n=n: x.close / ind.sma(x.close, n) - 1.0)
    for n in c.ema_windows:
        add(f"close_ema_{n}", "price", n - 1, lambda x, n=n: x.close / ind.ema(x.close, n) - 1.0)
    bb = c.bollinger_window
    add(f"bb_pctb_{bb}", "price", bb - 1, lambda x: x.bollinger.percent_b)
    add(f"bb_width_{bb}", "price", bb - 1, lambda x: x.bollinger.bandwidth)
    add(f"rsi_{c.rsi_window}", "price", c.rsi_window, lambda x: ind.rsi(x.close, c.rsi_window) / 100.0)
    signal_warmup = c.macd_slow + c.macd_signal - 2
    add("macd_line", "price", c.macd_slow - 1, lambda x: x.macd.line / x.close)
    add("macd_signal", "price", signal_warmup, lambda x: x.macd.signal / x.close)
    add("macd_hist", "price", signal_warmup, lambda x: x.macd.hist / x.close)

    add(
        f"atr_{c.atr_window}",
        "volatility",
        c.atr_window,
        lambda x: ind.atr(x.bars.high, x.bars.low, x.close, c.atr_window) / x.close,
    )
    rv = c.range_vol_window
    add(
        f"gk_vol_{rv}",
        "volatility",
        rv - 1,
        lambda x: ind.garman_klass_volatility(x.bars.open, x.bars.high, x.bars.low, x.close, rv),
    )
    add(
        f"parkinson_vol_{rv}",
        "volatility",
        rv - 1,
        lambda x: ind.parkinson_volatility(x.bars.high, x.bars.low, rv),
    )
    add(
        f"realised_vol_{c.realised_vol_window}",
        "volatility",
        c.realised_vol_window,
        lambda x: ind.realised_volatility(x.close, c.realised_vol_window),
    )
    short, long = c.vol_ratio_short, c.vol_ratio_long
    add(f"vol_ratio_{short}_{long}", "volatility", long, lambda x: ind.volatility_ratio(x.close, short, long))

    add(f"vwap_dist_{c.vwap_window}", "volume", c.vwap_window - 1, lambda x: _vwap_distance(x, c.vwap_window))
    add(f"obv_slope_{c.obv_window}", "volume", c.obv_window, lambda x: _obv_slope(x, c.obv_window))
    add(
        f"volume_roc_{c.volume_roc_window}",
        "volume",
        2 * c.volume_roc_window - 1,
        lambda x: _volume_roc(x, c.volume_roc_window),
    )

    # Stable column order whatever order the config lists its groups in.
    rank = {group: i for i, group in enumerate(FEATURE_GROUPS)}
    return sorted((s for s in specs if s.group in c.groups), key=lambda s: rank[s.group])


class FeatureEngineer:
    """Compute scale-free features for one symbol (scikit-learn contract: ``fit``, ``transform``).

    Parameters
    ----------
    config
        Which features to compute; the default gives 20 features with a look-back of 49 bars.

    Attributes
    ----------
    feature_names_ : list of str
        Feature columns, in output order (set by ``fit``).
    has_volume_ : bool
        Whether the fitted instrument reports volume; when ``False`` every volume feature is 0.0.

    Notes
    -----
    Nothing data-dependent is learned except ``has_volume_``: every feature is a causal function of past
    bars. Window features of a slice equal those of the whole series from row :attr:`lookback` of the slice
    on; the exponentially smoothed ones (EMA, RSI, MACD, ATR) are seeded at the start of what they are given,
    and that seed's influence decays geometrically (by ``1 - alpha`` a bar), so give them a few times their
    window of history before the rows you use. See the module docstring for the NaN policy.
    """

    def __init__(self, config: FeatureConfig | None = None) -> None:
        self.config = config if config is not None else FeatureConfig()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(config={self.config!r})"

    @property
    def lookback(self) -> int:
        """Bars needed before the first complete row: rows ``0 .. lookback - 1`` contain NaN warm-up."""
        return max(spec.warmup for spec in self._specs)

    @property
    def _specs(self) -> list[_Spec]:
        return _plan(self.config)

    def _arrays(self, bars: pd.DataFrame) -> BarArrays:
        return bar_arrays(bars, min_rows=self.lookback + 1, purpose=f"a feature look-back of {self.lookback}")

    def fit(self, bars: pd.DataFrame) -> Self:
        """Learn the feature names and whether the instrument has volume.

        Parameters
        ----------
        bars
            One symbol's canonical bars frame, at least ``lookback + 1`` rows.

        Returns
        -------
        FeatureEngineer
            ``self``.
        """
        arrays = self._arrays(bars)
        self.feature_names_ = [spec.name for spec in self._specs]
        self.has_volume_ = bool(np.any(arrays.volume > 0.0))
        return self

    def transform(self, bars: pd.DataFrame) -> pd.DataFrame:
        """Features of ``bars``, one row per bar.

        Parameters
        ----------
        bars
            One symbol's canonical bars frame, at least ``lookback + 1`` rows.

        Returns
        -------
        pandas.DataFrame
            Shape ``(n_bars, n_features)``, float64 columns ``feature_names_``, indexed by the bars' ``ts``
            (UTC ``DatetimeIndex`` named ``ts``). The first ``lookback`` rows hold NaN warm-up values.
        """
        if not hasattr(self, "feature_names_"):
            raise NotFittedError(
                f"{type(self).__name__} is not fitted; call fit(bars) or fit_transform(bars) first."
            )
        arrays = self._arrays(bars)
        inputs = _Inputs(arrays, self.config)
        columns: dict[str, np.ndarray] = {}
        with np.errstate(divide="ignore", invalid="ignore"):
            for spec in self._specs:
                if spec.group == "volume" and not self.has_volume_:
                    values = np.zeros(len(arrays.ts))
                else:
                    values = np.asarray(spec.compute(inputs), dtype=np.float64)
                values[: spec.warmup] = np.nan
                columns[spec.name] = values
        return pd.DataFrame(columns, index=arrays.ts, columns=self.feature_names_, dtype=np.float64)

    def fit_transform(self, bars: pd.DataFrame) -> pd.DataFrame:
        """``fit(bars).transform(bars)``."""
        return self.fit(bars).transform(bars)

    def transform_panel(self, bars_panel: pd.DataFrame) -> pd.DataFrame:
        """Features of a multi-symbol panel, fitting a fresh engineer on each symbol's bars.

        This object is left unchanged: each symbol gets its own clone, so ``has_volume_`` is decided per
        instrument.

        Parameters
        ----------
        bars_panel
            Canonical bars frame with a ``symbol`` column; each symbol needs ``lookback + 1`` bars.

        Returns
        -------
        pandas.DataFrame
            Columns ``symbol``, ``ts``, then the features; symbols in order of first appearance, each sorted
            by ``ts``, with a fresh ``RangeIndex``.
        """
        if not isinstance(bars_panel, pd.DataFrame):
            raise DataFormatError(f"bars_panel must be a pandas DataFrame, got {type(bars_panel).__name__}.")
        if "symbol" not in bars_panel.columns:
            raise DataFormatError(
                "bars_panel has no 'symbol' column; use transform() for one symbol's bars, or add the column."
            )
        if bars_panel.empty:
            raise EmptyRangeError("bars_panel has no rows; select a date range or symbols that hold data.")
        frames = []
        for symbol, group in bars_panel.groupby("symbol", sort=False):
            features = type(self)(self.config).fit_transform(group).reset_index()
            features.insert(0, "symbol", symbol)
            frames.append(features)
        return pd.concat(frames, ignore_index=True)

    def get_feature_names_out(self) -> list[str]:
        """Feature column names (available before ``fit``: they depend on the config only)."""
        return [spec.name for spec in self._specs]
