"""The feature pipeline: pluggable transformers configured from TOML, in batch and streaming mode.

:class:`FeatureEngineer` runs the transformers named in :attr:`FeatureConfig.groups` over one symbol's
canonical bars (``ts, open, high, low, close, volume``) and returns their features side by side, as a
float64 frame (:meth:`~FeatureEngineer.transform`) or a float32 matrix plus names
(:meth:`~FeatureEngineer.transform_matrix`, the models' input); :meth:`~FeatureEngineer.transform_panel`
does it per symbol for a panel and can add cross-sectional ranks. :meth:`~FeatureEngineer.stream` returns a
:class:`FeatureStream` that takes one bar at a time and gives the batch row for it to rounding.

A config in TOML names the groups and overrides any transformer's settings in a table of its kind::

    groups = ["returns", "price", "volatility", "volume", "wavelet", "hurst"]
    rank_features = ["log_ret_20"]

    [price]
    sma_windows = [10, 50, 200]

    [hurst]
    window = 512

The built-in kinds and their features are listed in :mod:`alphaloom.features.transformers`; a transformer
registered with :func:`~alphaloom.features.base.register_transformer` is configured from its own table the
same way (under ``[plugins.<kind>]``).

NaN policy
----------
- **Warm-up rows are NaN.** Row ``t`` of a feature uses bars ``<= t`` only, so the first rows of a feature
  with a ``w``-bar look-back are NaN; nothing is ever back-filled with later data. :attr:`FeatureEngineer.
  lookback` is the largest warm-up: rows from index ``lookback`` on are complete.
- **Instruments without volume** (a volume column that is all NaN or all zero, as for most forex sources)
  get every volume feature equal to 0.0 after its warm-up; the volume transformer's ``has_volume_`` records
  it.
- **Missing volume inside a series counts as zero volume.** Windows that traded nothing give neutral values:
  ``vwap_dist`` and ``obv_slope`` are 0.0, ``volume_roc`` is 0.0 when both windows are empty and at the
  clip when only one is.
- **Undefined estimators stay NaN** after the warm-up where the maths has no value (a spectral or fractal
  estimate on a perfectly flat window); models drop incomplete rows rather than guess.
- Prices must be finite and positive and timestamps strictly increasing and UTC; bad input raises
  :class:`~alphaloom.core.exceptions.DataFormatError` (or :class:`~alphaloom.core.exceptions.EmptyRangeError`
  for a history shorter than the look-back) saying how to fix it.

Batch and streaming
-------------------
Both modes share each transformer's definitions: O(1) recursions where the maths allows (EMA, RSI, MACD,
ATR, OBV, session VWAP), O(window) for window statistics and for estimators without a recursion (wavelet,
Fourier, fractal, Hurst), which the stream recomputes on its trailing window with the batch kernel. The
test-suite feeds real bars one at a time through every transformer and checks the batch values to 1e-9.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple, Self

import numpy as np
import pandas as pd
from pydantic import Field, model_validator

from alphaloom.core.config import ComponentConfig
from alphaloom.core.exceptions import (
    ConfigError,
    DataFormatError,
    EmptyRangeError,
    NotFittedError,
    did_you_mean,
)
from alphaloom.features._frames import bar_arrays
from alphaloom.features.base import (
    TRANSFORMERS,
    BarRow,
    FeatureContext,
    FeatureInput,
    FeatureTransformer,
    FloatArray,
    TransformerStream,
)
from alphaloom.features.microstructure import MicrostructureConfig
from alphaloom.features.transformers import (
    VOLUME_ROC_CLIP,
    CrossAssetConfig,
    FourierConfig,
    FractalConfig,
    HurstConfig,
    PriceConfig,
    ReturnsConfig,
    SentimentFeatureConfig,
    VolatilityConfig,
    VolumeConfig,
    WaveletConfig,
)

__all__ = [
    "DEFAULT_GROUPS",
    "FEATURE_GROUPS",
    "VOLUME_ROC_CLIP",
    "FeatureConfig",
    "FeatureEngineer",
    "FeatureMatrix",
    "FeatureStream",
]

#: The groups computed by default: 20 scale-free features from OHLCV alone, look-back 49 bars.
DEFAULT_GROUPS: tuple[str, ...] = ("returns", "price", "volatility", "volume")
#: Deprecated alias of :data:`DEFAULT_GROUPS`.
FEATURE_GROUPS = DEFAULT_GROUPS


class FeatureConfig(ComponentConfig):
    """Which transformers to run and each one's settings.

    Parameters
    ----------
    groups
        Transformer kinds to run (see :mod:`alphaloom.features.transformers`); columns come in the
        registry's order whatever order they are listed in.
    returns, price, volatility, volume, wavelet, fourier, fractal, hurst, cross_asset, sentiment,
    microstructure
        Settings of each built-in kind (used only when the kind is in ``groups``).
    plugins
        Settings of registered third-party kinds, by kind.
    rank_features
        Features to rank across a panel's symbols at each timestamp (:meth:`FeatureEngineer.
        transform_panel` adds ``rank_<name>`` columns in [0, 1]).
    """

    groups: tuple[str, ...] = DEFAULT_GROUPS
    returns: ReturnsConfig = Field(default_factory=ReturnsConfig)
    price: PriceConfig = Field(default_factory=PriceConfig)
    volatility: VolatilityConfig = Field(default_factory=VolatilityConfig)
    volume: VolumeConfig = Field(default_factory=VolumeConfig)
    wavelet: WaveletConfig = Field(default_factory=WaveletConfig)
    fourier: FourierConfig = Field(default_factory=FourierConfig)
    fractal: FractalConfig = Field(default_factory=FractalConfig)
    hurst: HurstConfig = Field(default_factory=HurstConfig)
    cross_asset: CrossAssetConfig = Field(default_factory=CrossAssetConfig)
    microstructure: MicrostructureConfig = Field(default_factory=MicrostructureConfig)
    sentiment: SentimentFeatureConfig = Field(default_factory=SentimentFeatureConfig)
    plugins: dict[str, dict[str, Any]] = Field(default_factory=dict)
    rank_features: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _consistent(self) -> FeatureConfig:
        if not self.groups:
            raise ValueError(f"groups must name at least one of {', '.join(TRANSFORMERS)}")
        if len(set(self.groups)) != len(self.groups):
            raise ValueError(f"groups must not repeat a kind, got {self.groups}")
        unknown = [g for g in self.groups if g not in TRANSFORMERS]
        if unknown:
            hints = "".join(did_you_mean(g, TRANSFORMERS) for g in unknown)
            raise ValueError(f"unknown group(s) {unknown}.{hints} Registered: {', '.join(TRANSFORMERS)}")
        for kind, params in self.plugins.items():
            if kind not in TRANSFORMERS:
                raise ValueError(f"plugins.{kind}: no transformer of kind {kind!r} is registered")
            if kind in type(self).model_fields:
                raise ValueError(f"plugins.{kind}: built-in kinds are configured in their own [{kind}] table")
            TRANSFORMERS[kind].config_class.from_dict(params, source=f"plugins.{kind}")
        names = [n for t in _build(self) for n in t.get_feature_names_out()]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise ValueError(f"feature names collide across groups: {duplicated}; change a window")
        missing = [n for n in self.rank_features if n not in names]
        if missing:
            hints = "".join(did_you_mean(n, names) for n in missing)
            raise ValueError(f"rank_features {missing} are not produced by the groups.{hints}")
        return self

    def config_for(self, kind: str) -> ComponentConfig:
        """The settings of transformer ``kind``."""
        if kind in type(self).model_fields and isinstance(getattr(self, kind), ComponentConfig):
            return getattr(self, kind)
        cls = TRANSFORMERS[kind].config_class
        return cls.from_dict(self.plugins.get(kind, {}), source=f"plugins.{kind}")


def _build(config: FeatureConfig) -> list[FeatureTransformer[Any]]:
    order = {kind: i for i, kind in enumerate(TRANSFORMERS)}
    kinds = sorted(config.groups, key=order.__getitem__)
    return [TRANSFORMERS[kind](config.config_for(kind)) for kind in kinds]


class FeatureMatrix(NamedTuple):
    """Features as the models take them.

    ``values`` has shape ``(n_bars, n_features)`` and dtype float32 (NaN in warm-up rows), ``names`` the
    ``n_features`` column names and ``ts`` the bars' UTC timestamps; rows from ``lookback`` on are complete.
    """

    values: np.ndarray
    names: list[str]
    ts: pd.DatetimeIndex
    lookback: int


class FeatureEngineer:
    """Run feature transformers over bars (scikit-learn contract: ``fit``, ``transform``).

    Parameters
    ----------
    config
        Which transformers to run; the default gives 20 OHLCV features with a look-back of 49 bars.

    Attributes
    ----------
    transformers_ : list of FeatureTransformer
        The fitted transformers, in column order (set by ``fit``).
    feature_names_ : list of str
        Feature columns, in output order (set by ``fit``).
    has_volume_ : bool
        Whether the fitted instrument reports volume.
    timings_ : dict of str to float
        Seconds each transformer took in the last ``transform`` (for profiling).

    Notes
    -----
    Window features of a slice equal those of the whole series from row :attr:`lookback` of the slice on;
    the exponentially smoothed ones (EMA, RSI, MACD, ATR) are seeded at the start of what they are given,
    and that seed's influence decays geometrically (by ``1 - alpha`` a bar), so give them a few times their
    window of history before the rows you use. See the module docstring for the NaN policy.
    """

    def __init__(self, config: FeatureConfig | None = None) -> None:
        self.config = config if config is not None else FeatureConfig()
        self._custom: list[FeatureTransformer[Any]] | None = None

    @classmethod
    def from_transformers(cls, transformers: Sequence[FeatureTransformer[Any]]) -> Self:
        """An engineer running exactly ``transformers`` (unfitted instances), in that column order."""
        transformers = list(transformers)
        if not transformers:
            raise ConfigError("from_transformers needs at least one transformer.")
        for t in transformers:
            if not isinstance(t, FeatureTransformer):
                raise ConfigError(f"expected FeatureTransformer instances, got {type(t).__name__}.")
        engineer = cls(FeatureConfig())
        engineer._custom = transformers
        return engineer

    def __repr__(self) -> str:
        if self._custom is not None:
            return f"{type(self).__name__}.from_transformers({self._custom!r})"
        return f"{type(self).__name__}(config={self.config!r})"

    def _fresh(self) -> list[FeatureTransformer[Any]]:
        if self._custom is not None:
            return [type(t)(t.config) for t in self._custom]
        return _build(self.config)

    @property
    def lookback(self) -> int:
        """Bars needed before the first complete row: rows ``0 .. lookback - 1`` contain NaN warm-up."""
        return max(t.lookback for t in self._fresh())

    def get_feature_names_out(self) -> list[str]:
        """Feature column names (available before ``fit``: they depend on the config only)."""
        return [n for t in self._fresh() for n in t.get_feature_names_out()]

    # ------------------------------------------------------------------------------------------ inputs
    def inputs(self, bars: pd.DataFrame, context: FeatureContext | None = None) -> FeatureInput:
        """Validate one symbol's bars and align every side input the transformers need.

        Parameters
        ----------
        bars
            One symbol's canonical bars frame, at least ``lookback + 1`` rows.
        context
            Side data (reference asset, news, quotes and trades) for the transformers that read it.

        Returns
        -------
        FeatureInput
            The bars as float64 arrays plus the aligned side inputs.
        """
        lookback = self.lookback
        arrays = bar_arrays(bars, min_rows=lookback + 1, purpose=f"a feature look-back of {lookback}")
        data = FeatureInput(
            arrays.symbol, arrays.ts, arrays.open, arrays.high, arrays.low, arrays.close, arrays.volume, {}
        )
        context = context or FeatureContext()
        extras: dict[str, FloatArray] = dict(context.extras)
        for t in self._fresh():
            for name, values in t.side_inputs(context, data).items():
                extras.setdefault(name, values)
        for name, values in extras.items():
            values = np.asarray(values, dtype=np.float64)
            if values.shape != (data.n_bars,):
                raise DataFormatError(
                    f"side input {name!r} has shape {values.shape} but the bars have {data.n_bars} rows; "
                    "align it to the bars (one value per bar) first."
                )
            extras[name] = values
        return FeatureInput(
            data.symbol, data.ts, data.open, data.high, data.low, data.close, data.volume, extras
        )

    # ----------------------------------------------------------------------------------------- fitting
    def fit(self, bars: pd.DataFrame, context: FeatureContext | None = None) -> Self:
        """Fit every transformer on one symbol's bars; returns ``self``."""
        data = self.inputs(bars, context)
        self._fit_inputs(data)
        return self

    def _fit_inputs(self, data: FeatureInput) -> None:
        transformers = self._fresh()
        for t in transformers:
            t.fit(data)
        self.transformers_ = transformers
        self.feature_names_ = [n for t in transformers for n in t.feature_names_]
        self.has_volume_ = bool(np.any(data.volume > 0.0))

    def _require_fitted(self) -> list[FeatureTransformer[Any]]:
        if not hasattr(self, "transformers_"):
            raise NotFittedError(
                f"{type(self).__name__} is not fitted; call fit(bars) or fit_transform(bars) first."
            )
        return self.transformers_

    def _values(self, data: FeatureInput) -> FloatArray:
        transformers = self._require_fitted()
        blocks = []
        timings: dict[str, float] = {}
        for t in transformers:
            t0 = time.perf_counter()
            blocks.append(t.transform(data))
            timings[t.kind] = time.perf_counter() - t0
        self.timings_ = timings
        return np.concatenate(blocks, axis=1)

    def transform(self, bars: pd.DataFrame, context: FeatureContext | None = None) -> pd.DataFrame:
        """Features of ``bars``, one row per bar.

        Returns
        -------
        pandas.DataFrame
            Shape ``(n_bars, n_features)``, float64 columns ``feature_names_``, indexed by the bars' ``ts``
            (UTC ``DatetimeIndex`` named ``ts``). The first ``lookback`` rows hold NaN warm-up values.
        """
        self._require_fitted()
        data = self.inputs(bars, context)
        return pd.DataFrame(self._values(data), index=data.ts, columns=self.feature_names_)

    def transform_matrix(self, bars: pd.DataFrame, context: FeatureContext | None = None) -> FeatureMatrix:
        """Features of ``bars`` as a float32 matrix plus names (the models' input)."""
        self._require_fitted()
        data = self.inputs(bars, context)
        values = self._values(data).astype(np.float32)
        return FeatureMatrix(values, list(self.feature_names_), data.ts, self.lookback)

    def fit_transform(self, bars: pd.DataFrame, context: FeatureContext | None = None) -> pd.DataFrame:
        """``fit(bars).transform(bars)``, validating and aligning the inputs once."""
        data = self.inputs(bars, context)
        self._fit_inputs(data)
        return pd.DataFrame(self._values(data), index=data.ts, columns=self.feature_names_)

    # ------------------------------------------------------------------------------------------- panel
    def transform_panel(
        self,
        bars_panel: pd.DataFrame,
        context: FeatureContext | None = None,
        *,
        on_symbol: Callable[[str], None] | None = None,
    ) -> pd.DataFrame:
        """Features of a multi-symbol panel, fitting a fresh engineer on each symbol's bars.

        This object is left unchanged: each symbol gets its own clone, so fitted state (such as whether an
        instrument has volume) is decided per instrument. A cross-asset reference named in the config that is
        one of the panel's symbols is taken from the panel.

        Parameters
        ----------
        bars_panel
            Canonical bars frame with a ``symbol`` column; each symbol needs ``lookback + 1`` bars.
        context
            Side data shared by the symbols (news, quotes and trades carry a ``symbol`` column).
        on_symbol
            Called with each symbol once its features are done (for progress bars).

        Returns
        -------
        pandas.DataFrame
            Columns ``symbol``, ``ts``, the features, then ``rank_<name>`` for each of
            :attr:`FeatureConfig.rank_features`; symbols in order of first appearance, each sorted by
            ``ts``, with a fresh ``RangeIndex``.
        """
        if not isinstance(bars_panel, pd.DataFrame):
            raise DataFormatError(f"bars_panel must be a pandas DataFrame, got {type(bars_panel).__name__}.")
        if "symbol" not in bars_panel.columns:
            raise DataFormatError(
                "bars_panel has no 'symbol' column; use transform() for one symbol's bars, or add the column."
            )
        if bars_panel.empty:
            raise EmptyRangeError("bars_panel has no rows; select a date range or symbols that hold data.")
        context = context or FeatureContext()
        frames = []
        for symbol, group in bars_panel.groupby("symbol", sort=False):
            clone = type(self)(self.config)
            clone._custom = self._custom
            sym_context = context
            for t in clone._fresh():
                sym_context = t.panel_context(sym_context, bars_panel)
            features = clone.fit_transform(group, sym_context).reset_index()
            features.insert(0, "symbol", symbol)
            frames.append(features)
            if on_symbol is not None:
                on_symbol(str(symbol))
        panel = pd.concat(frames, ignore_index=True)
        if self.config.rank_features:
            from alphaloom.features.cross_asset import cross_sectional_rank

            ranks = cross_sectional_rank(panel, columns=list(self.config.rank_features))
            for name in self.config.rank_features:
                panel[f"rank_{name}"] = ranks[f"{name}_rank"].to_numpy()
        return panel

    # --------------------------------------------------------------------------------------- streaming
    def stream(self) -> FeatureStream:
        """A streaming twin of :meth:`transform` for the fitted instrument: one bar in, one row out."""
        transformers = self._require_fitted()
        return FeatureStream([t.stream() for t in transformers], list(self.feature_names_))


class FeatureStream:
    """Incremental features: :meth:`update` takes the next bar and returns its feature row.

    Bars must arrive in strictly increasing time with finite, positive prices; missing volume counts as
    zero, as in batch mode. Side inputs (a reference close, sentiment, microstructure) come with each bar
    in ``extras``, aligned the way the batch pipeline aligns them.
    """

    def __init__(self, streams: list[TransformerStream], names: list[str]) -> None:
        self._streams = streams
        self.names = names
        self.n_features = len(names)
        self._last_ts_ns: int | None = None

    def update(self, bar: Any, extras: Mapping[str, float] | None = None) -> FloatArray:
        """Features of the next bar, shape ``(n_features,)``, float64; NaN during warm-up.

        Parameters
        ----------
        bar
            A :class:`~alphaloom.core.types.Bar`, a mapping with ``ts`` (UTC datetime or ns int), ``open``,
            ``high``, ``low``, ``close`` and ``volume``, or a :class:`~alphaloom.features.base.BarRow`.
        extras
            This bar's side inputs, by name.
        """
        row = self._row(bar, extras)
        out = np.empty(self.n_features, dtype=np.float64)
        j = 0
        for stream in self._streams:
            values = stream.update(row)
            out[j : j + len(values)] = values
            j += len(values)
        return out

    def _row(self, bar: Any, extras: Mapping[str, float] | None) -> BarRow:
        if isinstance(bar, BarRow):
            row = bar if extras is None else bar._replace(extras={**bar.extras, **extras})
        else:
            get = bar.get if isinstance(bar, Mapping) else lambda k, d=None: getattr(bar, k, d)
            ts = get("ts")
            if isinstance(ts, pd.Timestamp | np.datetime64) or hasattr(ts, "tzinfo"):
                stamp = pd.Timestamp(ts)
                if stamp.tzinfo is None:
                    raise DataFormatError(f"bar ts {ts!r} has no timezone; features take UTC timestamps.")
                ts_ns = int(stamp.value)
            elif isinstance(ts, int | np.integer):
                ts_ns = int(ts)
            else:
                raise DataFormatError(f"bar needs a 'ts' (UTC datetime or ns since the epoch), got {ts!r}.")
            volume = get("volume")
            row = BarRow(
                ts_ns,
                float(get("open")),
                float(get("high")),
                float(get("low")),
                float(get("close")),
                0.0 if volume is None or math.isnan(float(volume)) else float(volume),
                dict(extras or {}),
            )
        for name in ("open", "high", "low", "close"):
            value = getattr(row, name)
            if not (math.isfinite(value) and value > 0.0):
                raise DataFormatError(
                    f"bar at {pd.Timestamp(row.ts_ns, tz='UTC').isoformat()}: '{name}' must be finite and "
                    f"> 0, got {value!r}; drop or repair the bar before streaming it."
                )
        if not (row.volume >= 0.0 and math.isfinite(row.volume)):
            raise DataFormatError(f"bar volume must be >= 0 (or missing), got {row.volume!r}.")
        if self._last_ts_ns is not None and row.ts_ns <= self._last_ts_ns:
            raise DataFormatError(
                "bars must arrive in strictly increasing time: "
                f"{pd.Timestamp(row.ts_ns, tz='UTC').isoformat()} follows "
                f"{pd.Timestamp(self._last_ts_ns, tz='UTC').isoformat()}."
            )
        self._last_ts_ns = row.ts_ns
        return row
