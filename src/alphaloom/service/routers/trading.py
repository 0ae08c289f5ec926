"""Signals, portfolio, positions and orders of the service's paper-trading session."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse

from alphaloom.core.types import OrderStatus, OrderType, Side
from alphaloom.service.routers._common import Trader, Viewer, errors, services
from alphaloom.service.schemas import (
    OrderOut,
    OrderRefusedOut,
    OrderRequest,
    PortfolioOut,
    PositionOut,
    SignalOut,
)
from alphaloom.service.session import OrderRefused

router = APIRouter(tags=["trading"])


@router.get(
    "/signals",
    response_model=list[SignalOut],
    summary="The latest TradingSignal per symbol, with each agent's proposal and weight.",
    responses=errors(503),
)
async def signals(request: Request, _: Viewer) -> list[SignalOut]:
    session = services(request).need("session")
    return [SignalOut.model_validate(s) for _, s in sorted(session.signals.items())]


@router.get(
    "/portfolio",
    response_model=PortfolioOut,
    summary="Equity curve, cash, P&L, exposure.",
    responses=errors(503),
)
async def portfolio(request: Request, _: Viewer) -> PortfolioOut:
    return PortfolioOut.model_validate(services(request).need("session").portfolio_view())


@router.get("/positions", response_model=list[PositionOut], summary="Open positions.", responses=errors(503))
async def positions(request: Request, _: Viewer) -> list[PositionOut]:
    return [PositionOut.model_validate(p) for p in services(request).need("session").positions_view()]


@router.get(
    "/orders",
    response_model=list[OrderOut],
    summary="Orders of the session with their state.",
    responses=errors(503),
)
async def orders(
    request: Request,
    _: Viewer,
    status: Literal["new", "accepted", "partially_filled", "filled", "cancelled", "rejected"] | None = Query(
        None
    ),
) -> list[OrderOut]:
    session = services(request).need("session")
    return [
        OrderOut.model_validate(o)
        for o in session.orders_view(None if status is None else OrderStatus(status))
    ]


@router.post(
    "/orders",
    response_model=OrderOut,
    status_code=201,
    summary="Submit an order through the risk manager.",
    responses={
        **errors(400, 503),
        409: {"model": OrderRefusedOut, "description": "Refused; `reasons` say why."},
    },
)
async def submit(request: Request, body: OrderRequest, principal: Trader) -> OrderOut | JSONResponse:
    session = services(request).need("session")
    metrics = services(request).metrics
    try:
        out = await session.submit(
            symbol=body.symbol,
            side=Side(body.side),
            quantity=body.quantity,
            order_type=OrderType(body.order_type),
            limit_price=body.limit_price,
            actor=f"api:{principal.name}",
        )
    except OrderRefused as exc:
        metrics.orders.labels("refused").inc()
        first = exc.reasons[0].split(":", 1)[0] if exc.reasons else "unknown"
        metrics.risk_rejections.labels(first).inc()
        from alphaloom.service.session import order_view

        return JSONResponse(
            OrderRefusedOut(
                detail=f"order refused: {'; '.join(exc.reasons)}",
                reasons=exc.reasons,
                order=OrderOut.model_validate(order_view(exc.order)),
            ).model_dump(mode="json"),
            status_code=409,
        )
    metrics.orders.labels("accepted").inc()
    return OrderOut.model_validate(out)


@router.delete(
    "/orders/{client_order_id}",
    response_model=OrderOut,
    summary="Cancel an open order.",
    responses={**errors(404, 503), 409: {"model": OrderRefusedOut, "description": "The order is not open."}},
)
async def cancel(
    request: Request,
    principal: Trader,
    client_order_id: Annotated[str, Path(min_length=1, max_length=64)],
) -> OrderOut | JSONResponse:
    session = services(request).need("session")
    try:
        out = await session.cancel(client_order_id, f"api:{principal.name}")
    except OrderRefused as exc:
        from alphaloom.service.session import order_view

        return JSONResponse(
            OrderRefusedOut(
                detail="; ".join(exc.reasons),
                reasons=exc.reasons,
                order=OrderOut.model_validate(order_view(exc.order)),
            ).model_dump(mode="json"),
            status_code=409,
        )
    return OrderOut.model_validate(out)
