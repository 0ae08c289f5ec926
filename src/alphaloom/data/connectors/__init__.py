"""Exchange connectors: one async contract for every venue, plus the embedded paper exchange.

Typical use::

    from alphaloom.core.types import Order, Side
    from alphaloom.data import load_sample
    from alphaloom.data.connectors import PaperConfig, PaperExchange, get_connector_class
    from alphaloom.risk import RiskLimits, RiskManager

    paper = PaperExchange(PaperConfig(symbols=("SPY",)), bars=load_sample("us_equities_daily"))
    risk = RiskManager(RiskLimits(max_leverage=1.0))
    async with paper:
        async for bar in paper.get_real_time_data(["SPY"]):
            risk.mark({bar.symbol: bar.close}, bar.ts)
            order = Order(symbol="SPY", side=Side.BUY, quantity=1, ts=paper.clock.now())
            result = await risk.submit(order, paper)    # checked, then fills at the next bar's open

Every order reaches a venue through :meth:`RiskManager.submit <alphaloom.risk.manager.RiskManager.submit>`:
``place_order(order, approval)`` refuses an order without the risk manager's approval of exactly that order.

    cls = get_connector_class("oanda")       # any registered venue, by name

See docs/CONNECTORS.md for the contract and ``_template.py`` to write a new connector.
"""

from alphaloom.data.connectors.base import (
    CONNECTORS,
    TIMEFRAMES,
    ConnectorConfig,
    ConnectorHealth,
    ExchangeConnector,
    StreamEvent,
    available_connectors,
    get_connector_class,
    register_connector,
    timeframe_delta,
)
from alphaloom.data.connectors.matching import FeeModel, MatchingConfig, MatchingEngine, WorkingOrder
from alphaloom.data.connectors.paper import BpsFees, FaultPlan, PaperConfig, PaperExchange

__all__ = [
    "CONNECTORS",
    "TIMEFRAMES",
    "BpsFees",
    "ConnectorConfig",
    "ConnectorHealth",
    "ExchangeConnector",
    "FaultPlan",
    "FeeModel",
    "MatchingConfig",
    "MatchingEngine",
    "PaperConfig",
    "PaperExchange",
    "StreamEvent",
    "WorkingOrder",
    "available_connectors",
    "get_connector_class",
    "register_connector",
    "timeframe_delta",
]
