"""Features: indicator kernels, pluggable transformers and the batch/streaming feature pipeline.

``FeatureEngineer(FeatureConfig())`` turns bars into model inputs (a float64 frame, or a float32 matrix plus
names) and ``FeatureEngineer.stream()`` does the same one bar at a time. The transformers it runs are listed
in :mod:`alphaloom.features.transformers`; :mod:`~alphaloom.features.indicators` holds the numba indicator
kernels (TA-Lib's conventions, checked against it), :mod:`~alphaloom.features.spectral` and
:mod:`~alphaloom.features.fractal` the trailing-window estimators. New transformers subclass
:class:`~alphaloom.features.base.FeatureTransformer` and register with
:func:`~alphaloom.features.base.register_transformer`.
"""

from alphaloom.features import cross_asset, fractal, indicators, microstructure, sentiment, spectral
from alphaloom.features.base import (
    TRANSFORMERS,
    BarRow,
    FeatureContext,
    FeatureInput,
    FeatureTransformer,
    StreamState,
    register_transformer,
)
from alphaloom.features.pipeline import (
    DEFAULT_GROUPS,
    FEATURE_GROUPS,
    VOLUME_ROC_CLIP,
    FeatureConfig,
    FeatureEngineer,
    FeatureMatrix,
    FeatureStream,
)

__all__ = [
    "DEFAULT_GROUPS",
    "FEATURE_GROUPS",
    "TRANSFORMERS",
    "VOLUME_ROC_CLIP",
    "BarRow",
    "FeatureConfig",
    "FeatureContext",
    "FeatureEngineer",
    "FeatureInput",
    "FeatureMatrix",
    "FeatureStream",
    "FeatureTransformer",
    "StreamState",
    "cross_asset",
    "fractal",
    "indicators",
    "microstructure",
    "register_transformer",
    "sentiment",
    "spectral",
]
