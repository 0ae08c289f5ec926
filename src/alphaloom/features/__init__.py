"""Features: indicator kernels and the scale-free feature pipeline.

``FeatureEngineer(FeatureConfig())`` turns bars into model inputs; :mod:`alphaloom.features.indicators` holds
the pure numpy kernels it is built from. :mod:`~alphaloom.features.spectral` (wavelet and Fourier) and
:mod:`~alphaloom.features.fractal` (fractal dimension, Hurst) hold trailing-window kernels with streaming
twins that match them to 1e-12; they join the pipeline's groups with the feature-engineering issue.
"""

from alphaloom.features import fractal, indicators, spectral
from alphaloom.features.pipeline import FEATURE_GROUPS, VOLUME_ROC_CLIP, FeatureConfig, FeatureEngineer

__all__ = [
    "FEATURE_GROUPS",
    "VOLUME_ROC_CLIP",
    "FeatureConfig",
    "FeatureEngineer",
    "fractal",
    "indicators",
    "spectral",
]
