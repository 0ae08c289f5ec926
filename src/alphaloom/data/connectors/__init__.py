"""Exchange connectors: one async contract for every venue, plus the embedded paper exchange.

Typical use::

    from alphaloom.core.types import Order, Side
    from alphaloom.data import load_sample
    from alphaloom.data.connectors import PaperConfig, PaperExchange, get_connector_class

    paper = PaperExchange(PaperConfig(symbols=("SPY",)), bars=load_sample("us_equities_daily"))
    async with paper:
        async for bar in paper.get_real_time_data(["SPY"]):
            order = Order(symbol="SPY", side=Side.BUY, quantity=1, ts=paper.clock.now())
            result = await paper.place_order(order)     # fills at the next bar's open

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
