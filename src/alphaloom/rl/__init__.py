"""Reinforcement learning: the trading environment, four agents and the ensemble that combines them.

The environment executes every bar through :func:`alphaloom.backtest.execution.execute_bar` with the same
:class:`~alphaloom.backtest.costs.CostModel` as the backtester, so what an agent learns to pay is what a
backtest charges, and :meth:`SingleAssetTradingEnv.rollout` targets replay through the backtester exactly.
"""

from alphaloom.rl.actions import DiscreteActionGrid, DiscreteActionWrapper, DiscreteVecActionWrapper
from alphaloom.rl.agents import (
    Agent,
    AgentConfig,
    PPOAgent,
    PPOConfig,
    ProgressFn,
    RainbowConfig,
    RainbowDQNAgent,
    SACAgent,
    SACConfig,
    TD3Agent,
    TD3Config,
)
from alphaloom.rl.checker import EnvCheckError, check_trading_env
from alphaloom.rl.ensemble import (
    ActionProposer,
    AgentFailure,
    EnsembleConfig,
    EnsembleStep,
    RLEnsemble,
)
from alphaloom.rl.env import (
    PORTFOLIO_FEATURES,
    BarRecord,
    RolloutResult,
    SingleAssetTradingEnv,
    TradingEnvConfig,
    make_vec_env,
)
from alphaloom.rl.portfolio_env import PortfolioEnv, PortfolioEnvConfig, VecPortfolioEnv
from alphaloom.rl.toy import ToyMarket, toy_market
from alphaloom.rl.vec_env import FastTradingEnv, VecTradingEnv, VecTradingEnvConfig, windows_from_folds

__all__ = [
    "PORTFOLIO_FEATURES",
    "ActionProposer",
    "Agent",
    "AgentConfig",
    "AgentFailure",
    "BarRecord",
    "DiscreteActionGrid",
    "DiscreteActionWrapper",
    "DiscreteVecActionWrapper",
    "EnsembleConfig",
    "EnsembleStep",
    "EnvCheckError",
    "FastTradingEnv",
    "PPOAgent",
    "PPOConfig",
    "PortfolioEnv",
    "PortfolioEnvConfig",
    "ProgressFn",
    "RLEnsemble",
    "RainbowConfig",
    "RainbowDQNAgent",
    "RolloutResult",
    "SACAgent",
    "SACConfig",
    "SingleAssetTradingEnv",
    "TD3Agent",
    "TD3Config",
    "ToyMarket",
    "TradingEnvConfig",
    "VecPortfolioEnv",
    "VecTradingEnv",
    "VecTradingEnvConfig",
    "check_trading_env",
    "make_vec_env",
    "toy_market",
    "windows_from_folds",
]
