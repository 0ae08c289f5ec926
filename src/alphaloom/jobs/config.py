"""Settings of the main job (``alphaloom demo``) and of each of its stages."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from alphaloom.backtest.costs import CostModel
from alphaloom.core.config import ComponentConfig
from alphaloom.data.connectors.paper import FaultPlan
from alphaloom.execution.engine import EngineConfig
from alphaloom.execution.signals import TrendRuleConfig
from alphaloom.features.pipeline import FeatureConfig
from alphaloom.risk.limits import RiskLimits

__all__ = ["DEFAULT_SYMBOLS", "QUICK_SYMBOLS", "RLBudget", "RunConfig", "SplitConfig", "TradeConfig"]

#: One symbol set across the three asset classes the platform trades.
DEFAULT_SYMBOLS: tuple[str, ...] = ("SPY", "AAPL", "IWM", "EURUSD", "GBPUSD", "BTCUSD", "ETHUSD")
QUICK_SYMBOLS: tuple[str, ...] = ("SPY", "EURUSD", "BTCUSD")


class SplitConfig(ComponentConfig):
    """A walk-forward split of each symbol's history into three consecutive segments.

    ``[forecaster training | embargo | agent training | embargo | out-of-sample test]``. The forecaster never
    sees the agent segment, so the agents learn from honest (out-of-sample) forecasts, and neither model sees
    the test segment. The embargo (in bars) keeps label horizons and feature look-backs from straddling a
    boundary.
    """

    forecaster_fraction: float = Field(default=0.55, gt=0.1, lt=0.9)
    agent_fraction: float = Field(default=0.25, gt=0.05, lt=0.9)
    embargo_bars: int = Field(default=5, ge=0, le=500)

    @model_validator(mode="after")
    def _leaves_a_test_segment(self) -> SplitConfig:
        if self.forecaster_fraction + self.agent_fraction >= 0.95:
            raise ValueError(
                "forecaster_fraction + agent_fraction must be < 0.95 so at least 5% is left for testing"
            )
        return self


class RLBudget(ComponentConfig):
    """Training timesteps for each agent (summed over the vectorised environments)."""

    ppo: int = Field(default=200_000, ge=64)
    sac: int = Field(default=50_000, ge=64)
    td3: int = Field(default=50_000, ge=64)
    rainbow: int = Field(default=60_000, ge=64)


class TradeConfig(ComponentConfig):
    """Settings of ``alphaloom trade`` (the ``[trade]`` table).

    Parameters
    ----------
    bars
        Paper trading: how many of the last stored bar times to trade.
    speed
        Paper replay speed: 0 = as fast as possible, 1 = real time.
    grace_s
        Live venues: seconds to wait for the rest of a timestamp's bars before deciding.
    engine
        The trading engine's settings (sizing, reconciliation interval, history).
    fallback
        The trend rule used when the RL ensemble is missing or fails.
    records_dsn
        PostgreSQL DSN for the run's orders, fills and audit log; ``None`` keeps them in the workspace's
        DuckDB file.
    records_journal
        With ``records_dsn``: while PostgreSQL is unreachable, journal the writes to
        ``<data-dir>/trade/records.journal`` and replay them when it is back, so trading never stops for the
        database (see docs/RELIABILITY.md). Off: a database outage stops the run.
    records_retry_s
        Seconds between reconnection attempts while PostgreSQL is down.
    paper_faults
        Paper trading only: failures the paper venue injects (chaos testing; none by default).
    """

    bars: int = Field(default=250, ge=1)
    speed: float = Field(default=0.0, ge=0.0)
    grace_s: float = Field(default=2.0, gt=0.0)
    engine: EngineConfig = EngineConfig()
    fallback: TrendRuleConfig = TrendRuleConfig()
    records_dsn: str | None = Field(default=None, min_length=1)
    records_journal: bool = True
    records_retry_s: float = Field(default=1.0, ge=0.0, le=3600.0)
    paper_faults: FaultPlan = FaultPlan()


#: The risk limits a run trades under unless its ``[risk]`` table says otherwise.
DEFAULT_RISK_LIMITS = RiskLimits(
    max_leverage=1.5,
    max_concentration_pct=60.0,
    reduce_drawdown_pct=15.0,
    halt_drawdown_pct=30.0,
)


class RunConfig(ComponentConfig):
    """Everything the main job needs; saved in the data directory so stages run alone stay consistent."""

    symbols: tuple[str, ...] = DEFAULT_SYMBOLS
    start: str | None = None
    end: str | None = None
    max_bars_per_symbol: int | None = Field(default=None, ge=300)
    seed: int = 7
    split: SplitConfig = SplitConfig()
    costs: CostModel = CostModel(commission_bps=1.0, slippage_bps=2.0)
    initial_cash: float = Field(default=100_000.0, gt=0)
    cnn_epochs: int = Field(default=20, ge=1)
    cnn_window: int = Field(default=32, ge=8)
    cnn_hidden: int = Field(default=32, ge=4)
    rl_budget: RLBudget = RLBudget()
    rl_episode_len: int = Field(default=128, ge=16)
    rl_seeds: int = Field(default=1, ge=1, le=32)
    rl_validation_fraction: float = Field(default=0.2, gt=0.05, lt=0.5)
    ensemble_method: Literal["performance", "thompson", "meta"] = "meta"
    ensemble_window: int = Field(default=20, ge=2)
    ensemble_confidence: float = Field(default=0.55, ge=0.0, le=1.0)
    features: FeatureConfig = FeatureConfig()
    risk: RiskLimits = DEFAULT_RISK_LIMITS
    trade: TradeConfig = TradeConfig()

    @classmethod
    def quick(cls, seed: int = 7) -> RunConfig:
        """A small setting that runs the whole job in well under two minutes (used by the tests)."""
        return cls(
            symbols=QUICK_SYMBOLS,
            max_bars_per_symbol=900,
            seed=seed,
            cnn_epochs=2,
            cnn_window=16,
            cnn_hidden=16,
            rl_budget=RLBudget(ppo=4_096, sac=1_000, td3=1_000, rainbow=2_000),
            rl_episode_len=64,
        )
