"""Tokens for API keys, and who the caller is."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from alphaloom.risk.manager import Role
from alphaloom.service.auth import Principal, require
from alphaloom.service.routers._common import Viewer, errors, services
from alphaloom.service.schemas import MeOut, TokenOut

router = APIRouter(tags=["auth"])


@router.post(
    "/auth/token",
    response_model=TokenOut,
    summary="Exchange an API key (X-API-Key) for a short-lived signed token.",
    responses=errors(),
)
async def token(request: Request, principal: Annotated[Principal, Depends(require(Role.VIEWER))]) -> TokenOut:
    svc = services(request)
    value, expires = svc.tokens.issue(principal)
    return TokenOut(token=value, expires_at=expires, role=principal.role.value)


@router.get("/me", response_model=MeOut, summary="The caller's name and role.", responses=errors())
async def me(principal: Viewer) -> MeOut:
    return MeOut(name=principal.name, role=principal.role.value)
