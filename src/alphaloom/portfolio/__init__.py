"""Portfolio construction and rebalancing.

Optimisers follow the scikit-learn contract (``fit(returns) -> self``, ``weights_``, ``fallback_``); the
base class :class:`PortfolioOptimizer` owns validation, the constraint check and the live fallback chain
(previous weights, then equal weight). Moments are per period of the input returns; the covariance is
Ledoit-Wolf shrunk by default.

- :class:`MeanVariance`: min-variance, max-Sharpe, max-utility, efficient return/risk with weight bounds,
  group limits, leverage, turnover and tracking error (:class:`Constraints`);
- :class:`BlackLitterman`: the posterior of views generated from the CNN+LSTM forecasts;
- :class:`RiskParity`: equal risk contribution / risk budgets;
- :class:`HierarchicalRiskParity`;
- :class:`FactorOptimizer`: a factor-model prior with factor exposure limits;
- :class:`EqualWeight`: the naive benchmark;
- rebalancing policies (:class:`CalendarPolicy`, :class:`DriftPolicy`, :class:`VolatilityTargetPolicy`,
  :class:`NoTradeBandPolicy`) on the :class:`RebalancePolicy` base.
"""

from alphaloom.portfolio.black_litterman import (
    FORECAST_VIEW_COLUMNS,
    BlackLitterman,
    BlackLittermanConfig,
    Views,
    black_litterman_posterior,
    implied_returns,
    views_from_forecasts,
)
from alphaloom.portfolio.constraints import WEIGHT_TOLERANCE, Constraints, constraint_violations
from alphaloom.portfolio.estimators import (
    COVARIANCE_METHODS,
    estimate_covariance,
    estimate_expected_returns,
    validate_returns,
)
from alphaloom.portfolio.factor import FactorModel, FactorModelConfig, FactorOptimizer, fit_factor_model
from alphaloom.portfolio.hrp import HierarchicalRiskParity, HRPConfig, hrp_weights
from alphaloom.portfolio.optimizers import (
    EqualWeight,
    EqualWeightConfig,
    FallbackRecord,
    MeanVariance,
    MeanVarianceConfig,
    OptimizerConfig,
    PortfolioOptimizer,
    RiskParity,
    RiskParityConfig,
)
from alphaloom.portfolio.rebalance import (
    CalendarConfig,
    CalendarPolicy,
    DriftConfig,
    DriftPolicy,
    NoTradeBandConfig,
    NoTradeBandPolicy,
    RebalanceContext,
    RebalancePath,
    RebalancePolicy,
    VolatilityTargetConfig,
    VolatilityTargetPolicy,
)

__all__ = [
    "COVARIANCE_METHODS",
    "FORECAST_VIEW_COLUMNS",
    "WEIGHT_TOLERANCE",
    "BlackLitterman",
    "BlackLittermanConfig",
    "CalendarConfig",
    "CalendarPolicy",
    "Constraints",
    "DriftConfig",
    "DriftPolicy",
    "EqualWeight",
    "EqualWeightConfig",
    "FactorModel",
    "FactorModelConfig",
    "FactorOptimizer",
    "FallbackRecord",
    "HRPConfig",
    "HierarchicalRiskParity",
    "MeanVariance",
    "MeanVarianceConfig",
    "NoTradeBandConfig",
    "NoTradeBandPolicy",
    "OptimizerConfig",
    "PortfolioOptimizer",
    "RebalanceContext",
    "RebalancePath",
    "RebalancePolicy",
    "RiskParity",
    "RiskParityConfig",
    "Views",
    "VolatilityTargetConfig",
    "VolatilityTargetPolicy",
    "black_litterman_posterior",
    "constraint_violations",
    "estimate_covariance",
    "estimate_expected_returns",
    "fit_factor_model",
    "hrp_weights",
    "implied_returns",
    "validate_returns",
    "views_from_forecasts",
]
