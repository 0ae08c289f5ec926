"""Features: indicator kernels and the scale-free feature pipeline.

``FeatureEngineer(FeatureConfig())`` turns bars into model inputs; :mod:`alphaloom.features.indicators` holds
the pure numpy kernels it is built from.
"""

from alphaloom.features import indicators
from alphaloom.features.pipeline import FEATURE_GROUPS, VOLUME_ROC_CLIP, FeatureConfig, FeatureEngineer

__all__ = ["FEATURE_GROUPS", "VOLUME_ROC_CLIP", "FeatureConfig", "FeatureEngineer", "indicators"]
