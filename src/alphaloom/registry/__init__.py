"""Model registry, promotion gates and A/B testing.

- :class:`ModelRegistry` (MLflow underneath): register models with their :class:`Lineage`, list and show
  them, promote through ``candidate -> challenger -> champion -> archived`` behind a :class:`PromotionGate`,
  roll back; every transition is written to the relational store's hash-chained audit log.
- :class:`PromotionGate`: out-of-sample evidence (deflated Sharpe, a paired test against the champion) and
  an authorised approver.
- :class:`ABRouter` and :func:`compare_arms`: run a challenger beside the champion (shadow) or on a share of
  symbols or capital (split), record both, and decide with paired significance tests.
- :func:`forecast_bias` and :func:`returns_bias`: a model's behaviour by market slice (asset class, symbol,
  volatility and trend regime, time of day and week) with disparity tests; stored with the model
  (:func:`store_bias_report`) and usable as a promotion floor.
"""

from alphaloom.registry.ab import (
    ABComparison,
    ABConfig,
    ABDecision,
    ABRecord,
    ABRouter,
    ABTestConfig,
    attribute_returns,
    compare_arms,
    regime_labels,
)
from alphaloom.registry.bias import (
    BiasConfig,
    BiasReport,
    forecast_bias,
    load_bias_report,
    returns_bias,
    slice_labels,
    store_bias_report,
    write_bias_html,
)
from alphaloom.registry.gates import (
    Approver,
    ApproverLike,
    GateCheck,
    GateDecision,
    PromotionEvidence,
    PromotionGate,
    PromotionGateConfig,
)
from alphaloom.registry.lineage import DataFingerprint, Lineage, code_version
from alphaloom.registry.registry import MODEL_KINDS, ModelRegistry, ModelVersionInfo, PromotionResult, Stage

__all__ = [
    "MODEL_KINDS",
    "ABComparison",
    "ABConfig",
    "ABDecision",
    "ABRecord",
    "ABRouter",
    "ABTestConfig",
    "Approver",
    "ApproverLike",
    "BiasConfig",
    "BiasReport",
    "DataFingerprint",
    "GateCheck",
    "GateDecision",
    "Lineage",
    "ModelRegistry",
    "ModelVersionInfo",
    "PromotionEvidence",
    "PromotionGate",
    "PromotionGateConfig",
    "PromotionResult",
    "Stage",
    "attribute_returns",
    "code_version",
    "compare_arms",
    "forecast_bias",
    "load_bias_report",
    "regime_labels",
    "returns_bias",
    "slice_labels",
    "store_bias_report",
    "write_bias_html",
]
