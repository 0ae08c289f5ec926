"""The contract every feature transformer follows, in batch and in streaming mode alike.

A :class:`FeatureTransformer` turns one symbol's bars (plus any aligned side inputs it declares, such as a
reference asset's close or the news sentiment) into a block of named float64 features, one row per bar. It
follows the scikit-learn contract (``fit`` returns ``self``, learned state ends in ``_``, ``transform``
never refits) and declares, per feature, the first row that has a full look-back.

The base class owns the loop; subclasses fill small hooks:

- ``_names()`` and ``_warmups()``: the feature names and, for each, the index of its first defined row;
- ``_transform(data)``: the batch values, shape ``(n_bars, n_features)``;
- ``_stream()``: a fresh :class:`StreamState` whose ``update(row)`` returns the features of one more bar.

Validation, warm-up masking and shape checks live in the public methods, so no subclass can skip them: rows
before a feature's warm-up are NaN in both modes, whatever the hook returned. A stream fed the same bars
one at a time gives the batch result to rounding (the test-suite checks 1e-9 for every registered
transformer), and row ``t`` never depends on bars after ``t`` (checked by a property test).

Writing a transformer
---------------------
Subclass :class:`FeatureTransformer`, give it a frozen config class and a ``kind``, implement the hooks and
decorate it with :func:`register_transformer`; :class:`~alphaloom.features.pipeline.FeatureEngineer` then
builds it from a ``[<kind>]`` table of the feature config. ``requires`` names the side inputs it reads from
:attr:`FeatureInput.extras` (the pipeline aligns them to the bars without look-ahead).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, NamedTuple, Self, TypeVar

import numpy as np
import numpy.typing as npt
import pandas as pd

from alphaloom.core.config import ComponentConfig
from alphaloom.core.exceptions import ConfigError, DataFormatError, NotFittedError, did_you_mean

__all__ = [
    "TRANSFORMERS",
    "BarRow",
    "FeatureContext",
    "FeatureInput",
    "FeatureTransformer",
    "StreamState",
    "TransformerStream",
    "register_transformer",
]

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class FeatureContext:
    """Side data some transformers read besides the bars; every part is optional.

    Parameters
    ----------
    reference
        Bars of the reference asset for cross-asset features (``ts`` and ``close`` columns at least).
    news
        News or social items for sentiment features (see :mod:`alphaloom.features.sentiment`).
    quotes, trades
        L1 quotes and trades for microstructure features (see :mod:`alphaloom.features.microstructure`).
    extras
        Side inputs already aligned to the bars, by name, shape ``(n_bars,)`` each.
    """

    reference: pd.DataFrame | None = None
    news: pd.DataFrame | None = None
    quotes: pd.DataFrame | None = None
    trades: pd.DataFrame | None = None
    extras: Mapping[str, FloatArray] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class FeatureInput:
    """One symbol's bars as arrays of shape ``(n_bars,)``, plus aligned side inputs.

    ``volume`` reads missing values as 0. ``extras`` maps a side-input name (``"ref_close"``,
    ``"sent_mean"``, ``"quoted_spread_bps"``...) to a float64 array of shape ``(n_bars,)`` whose element
    ``t`` is known at bar ``t`` (aligned without look-ahead by the pipeline).
    """

    symbol: str | None
    ts: pd.DatetimeIndex
    open: FloatArray
    high: FloatArray
    low: FloatArray
    close: FloatArray
    volume: FloatArray
    extras: Mapping[str, FloatArray]

    @property
    def n_bars(self) -> int:
        """Number of bars."""
        return len(self.ts)

    def head(self, n: int) -> FeatureInput:
        """The first ``n`` bars (side inputs included)."""
        return FeatureInput(
            self.symbol,
            self.ts[:n],
            self.open[:n],
            self.high[:n],
            self.low[:n],
            self.close[:n],
            self.volume[:n],
            {k: v[:n] for k, v in self.extras.items()},
        )

    def row(self, t: int) -> BarRow:
        """Bar ``t`` as a :class:`BarRow`, as a stream would receive it."""
        return BarRow(
            int(self.ts.asi8[t]),
            float(self.open[t]),
            float(self.high[t]),
            float(self.low[t]),
            float(self.close[t]),
            float(self.volume[t]),
            {k: float(v[t]) for k, v in self.extras.items()},
        )


class BarRow(NamedTuple):
    """One bar for a stream: event time in ns since the epoch (UTC), prices, volume and side inputs."""

    ts_ns: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    extras: Mapping[str, float]


class StreamState(ABC):
    """Incremental state of one transformer: ``update`` takes a bar and returns its features."""

    @abstractmethod
    def update(self, row: BarRow) -> FloatArray | list[float] | tuple[float, ...]:
        """Features of ``row`` given every bar seen before, shape ``(n_features,)``."""


class TransformerStream:
    """A transformer's stream: its :class:`StreamState` plus warm-up masking and shape checks."""

    def __init__(self, state: StreamState, names: tuple[str, ...], warmups: tuple[int, ...]) -> None:
        self._state = state
        self.names = names
        self._warmups = np.asarray(warmups, dtype=np.int64)
        self._max_warmup = int(self._warmups.max()) if len(warmups) else 0
        self.n_seen = 0

    def update(self, row: BarRow) -> FloatArray:
        """Features of one more bar, shape ``(n_features,)``; NaN where the warm-up is not over."""
        out = np.array(self._state.update(row), dtype=np.float64)
        if out.shape != (len(self.names),):
            raise RuntimeError(
                f"{type(self._state).__name__}.update returned shape {out.shape}, "
                f"expected ({len(self.names)},)"
            )
        if self.n_seen < self._max_warmup:
            out[self.n_seen < self._warmups] = np.nan
        self.n_seen += 1
        return out


C = TypeVar("C", bound=ComponentConfig)


class FeatureTransformer(ABC, Generic[C]):
    """Base of every feature transformer (scikit-learn contract, batch and streaming).

    Parameters
    ----------
    config
        The transformer's frozen config; ``None`` takes the defaults.

    Attributes
    ----------
    feature_names_ : list of str
        Output columns, set by ``fit``.
    """

    #: Name of the transformer's table in the feature config (``[price]``, ``[hurst]``...).
    kind: ClassVar[str]
    #: The frozen config class it takes.
    config_class: ClassVar[type[ComponentConfig]]
    #: Side inputs it reads from :attr:`FeatureInput.extras`.
    requires: ClassVar[tuple[str, ...]] = ()
    #: Whether every feature at row ``t`` depends only on rows ``t - lookback .. t``. False for recursive
    #: (exponentially smoothed) features, whose seed influence decays but never vanishes.
    finite_memory: ClassVar[bool] = True

    def __init__(self, config: C | None = None) -> None:
        if config is None:
            config = self.config_class()  # type: ignore[assignment]
        if not isinstance(config, self.config_class):
            raise ConfigError(
                f"{type(self).__name__} takes a {self.config_class.__name__}, got {type(config).__name__}."
            )
        self.config: C = config  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config!r})"

    # ---------------------------------------------------------------------------------------- hooks
    @abstractmethod
    def _names(self) -> tuple[str, ...]:
        """Feature names, from the config only."""

    @abstractmethod
    def _warmups(self) -> tuple[int, ...]:
        """Index of the first defined row of each feature."""

    def _fit(self, data: FeatureInput) -> None:
        """Learn data-dependent state (most transformers learn nothing)."""

    @abstractmethod
    def _transform(self, data: FeatureInput) -> FloatArray:
        """Batch values, shape ``(n_bars, n_features)``."""

    @abstractmethod
    def _stream(self) -> StreamState:
        """A fresh incremental state."""

    # --------------------------------------------------------------------------------------- public
    def get_feature_names_out(self) -> list[str]:
        """Output column names (they depend on the config only)."""
        return list(self._names())

    @property
    def warmups(self) -> dict[str, int]:
        """Per feature, the index of its first defined row."""
        return dict(zip(self._names(), self._warmups(), strict=True))

    @property
    def lookback(self) -> int:
        """Rows ``0 .. lookback - 1`` hold NaN warm-up for at least one feature; later rows are complete."""
        return max(self._warmups(), default=0)

    def _check_input(self, data: FeatureInput) -> None:
        if not isinstance(data, FeatureInput):
            raise DataFormatError(
                f"{type(self).__name__} takes a FeatureInput (see FeatureEngineer.inputs), "
                f"got {type(data).__name__}."
            )
        missing = [name for name in self.requires if name not in data.extras]
        if missing:
            hints = "".join(did_you_mean(m, data.extras) for m in missing)
            raise DataFormatError(
                f"{type(self).__name__} needs the side input(s) {', '.join(map(repr, missing))}.{hints} "
                f"{self._side_input_hint()}"
            )

    def _side_input_hint(self) -> str:
        return "Pass the data they come from in FeatureEngineer's context (FeatureContext)."

    def side_inputs(self, context: FeatureContext, data: FeatureInput) -> dict[str, FloatArray]:
        """Side inputs this transformer derives from ``context``, aligned to ``data``'s bars.

        The default derives nothing. Overrides must align without look-ahead: element ``t`` may only use
        information available at bar ``t``.
        """
        return {}

    def panel_context(self, context: FeatureContext, panel: pd.DataFrame) -> FeatureContext:
        """The context to use for one symbol of ``panel`` (e.g. a reference asset taken from the panel)."""
        return context

    def fit(self, data: FeatureInput) -> Self:
        """Check the input and learn what the transformer needs (usually nothing); returns ``self``."""
        self._check_input(data)
        self._fit(data)
        self.feature_names_ = self.get_feature_names_out()
        return self

    def _require_fitted(self) -> None:
        if not hasattr(self, "feature_names_"):
            raise NotFittedError(f"{type(self).__name__} is not fitted; call fit(data) first.")

    def transform(self, data: FeatureInput) -> FloatArray:
        """Features of every bar, shape ``(n_bars, n_features)``, float64, warm-up rows NaN."""
        self._require_fitted()
        self._check_input(data)
        values = np.asarray(self._transform(data), dtype=np.float64)
        expected = (data.n_bars, len(self.feature_names_))
        if values.ndim == 1 and expected[1] == 1:
            values = values[:, None]
        if values.shape != expected:
            raise RuntimeError(
                f"{type(self).__name__}._transform returned {values.shape}, expected {expected}"
            )
        values = np.array(values, dtype=np.float64, order="C")
        for j, warm in enumerate(self._warmups()):
            values[: min(warm, len(values)), j] = np.nan
        return values

    def fit_transform(self, data: FeatureInput) -> FloatArray:
        """``fit(data).transform(data)``."""
        return self.fit(data).transform(data)

    def stream(self) -> TransformerStream:
        """A fresh incremental twin of :meth:`transform`: feed it bars in time order, one at a time."""
        self._require_fitted()
        return TransformerStream(self._stream(), tuple(self.feature_names_), tuple(self._warmups()))


#: Registered transformer classes by ``kind``, in registration order.
TRANSFORMERS: dict[str, type[FeatureTransformer[Any]]] = {}

T = TypeVar("T", bound=type[FeatureTransformer[Any]])


def register_transformer(cls: T) -> T:
    """Class decorator: make a transformer available to the feature config under ``cls.kind``."""
    kind = getattr(cls, "kind", None)
    if not isinstance(kind, str) or not kind.isidentifier():
        raise ConfigError(f"{cls.__name__}.kind must be an identifier string, got {kind!r}.")
    existing = TRANSFORMERS.get(kind)
    if existing is not None and existing is not cls:
        raise ConfigError(f"transformer kind {kind!r} is already registered by {existing.__name__}.")
    TRANSFORMERS[kind] = cls
    return cls
