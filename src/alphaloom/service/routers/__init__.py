"""One router per resource; :data:`ROUTERS` are mounted under ``/api/v1`` (``health`` at the root)."""

from alphaloom.service.routers import (
    audit,
    auth,
    backtests,
    health,
    market,
    models,
    predict,
    risk,
    trading,
    ws,
)

ROUTERS = [
    auth.router,
    market.router,
    predict.router,
    trading.router,
    backtests.router,
    models.router,
    risk.router,
    audit.router,
    ws.router,
]

__all__ = ["ROUTERS", "health"]
