"""The trading engine: signals -> target weights -> lot-rounded orders -> risk manager -> venue.

- :mod:`~alphaloom.execution.orders`: the order state machine and deterministic client order ids;
- :mod:`~alphaloom.execution.sizing`: target weights to lot-rounded order quantities;
- :mod:`~alphaloom.execution.signals`: the :class:`SignalSource` base and the :class:`TrendRule` fallback;
- :mod:`~alphaloom.execution.reconcile`: local state against the venue's, with one stated rule;
- :mod:`~alphaloom.execution.feeds`: closed bars one timestamp at a time (paper replay or a live stream);
- :mod:`~alphaloom.execution.engine`: the :class:`TradingEngine` loop, its health and checkpoint.

Every order goes through :meth:`RiskManager.submit <alphaloom.risk.manager.RiskManager.submit>`; nothing
here calls a connector's ``place_order``.
"""

from alphaloom.execution.engine import (
    BarReport,
    EngineCheckpoint,
    EngineConfig,
    EngineHealth,
    EngineState,
    MemoryEngineCheckpoint,
    StoreEngineCheckpoint,
    TradingEngine,
)
from alphaloom.execution.feeds import BarFeed, PaperFeed, StreamFeed
from alphaloom.execution.orders import (
    LEGAL_TRANSITIONS,
    ManagedOrder,
    check_transition,
    deterministic_client_order_id,
)
from alphaloom.execution.reconcile import Difference, Reconciliation, reconcile
from alphaloom.execution.signals import SignalDecision, SignalSource, TrendRule, TrendRuleConfig, input_hash
from alphaloom.execution.sizing import (
    DEFAULT_LOTS,
    LotSpec,
    OrderIntent,
    SizingConfig,
    SizingResult,
    SizingSkip,
    round_to_lot,
    size_orders,
)

__all__ = [
    "DEFAULT_LOTS",
    "LEGAL_TRANSITIONS",
    "BarFeed",
    "BarReport",
    "Difference",
    "EngineCheckpoint",
    "EngineConfig",
    "EngineHealth",
    "EngineState",
    "LotSpec",
    "ManagedOrder",
    "MemoryEngineCheckpoint",
    "OrderIntent",
    "PaperFeed",
    "Reconciliation",
    "SignalDecision",
    "SignalSource",
    "SizingConfig",
    "SizingResult",
    "SizingSkip",
    "StoreEngineCheckpoint",
    "StreamFeed",
    "TradingEngine",
    "TrendRule",
    "TrendRuleConfig",
    "check_transition",
    "deterministic_client_order_id",
    "input_hash",
    "reconcile",
    "round_to_lot",
    "size_orders",
]
