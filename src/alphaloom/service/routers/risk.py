"""Risk state, limits and the kill switch (changes need admin and are audited)."""

from __future__ import annotations

from fastapi import APIRouter, Request

from alphaloom.service.routers._common import Admin, Viewer, actor, errors, services
from alphaloom.service.schemas import ReasonRequest, RiskLimitsUpdate, RiskOut

router = APIRouter(tags=["risk"])


@router.get(
    "/risk",
    response_model=RiskOut,
    summary="Trading state, limits, halt reasons, exposures.",
    responses=errors(503),
)
async def risk(request: Request, _: Viewer) -> RiskOut:
    return RiskOut.model_validate(services(request).need("session").risk_view())


@router.put(
    "/risk/limits",
    response_model=RiskOut,
    summary="Change risk limits (only the ones given; audited).",
    responses=errors(400, 503),
)
async def set_limits(request: Request, body: RiskLimitsUpdate, principal: Admin) -> RiskOut:
    changes = body.model_dump(exclude_unset=True)
    return RiskOut.model_validate(services(request).need("session").set_limits(changes, actor(principal)))


@router.post(
    "/risk/kill", response_model=RiskOut, summary="Kill switch: halt trading now.", responses=errors(400, 503)
)
async def kill(request: Request, body: ReasonRequest, principal: Admin) -> RiskOut:
    return RiskOut.model_validate(services(request).need("session").kill(actor(principal), body.reason))


@router.post("/risk/resume", response_model=RiskOut, summary="Lift every halt.", responses=errors(400, 503))
async def resume(request: Request, body: ReasonRequest, principal: Admin) -> RiskOut:
    return RiskOut.model_validate(services(request).need("session").resume(actor(principal), body.reason))
