"""What the routers share: the role dependencies, the services accessor and the error responses."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request

from alphaloom.risk.manager import Actor, Role
from alphaloom.service.auth import Principal, require
from alphaloom.service.schemas import ErrorOut

__all__ = ["Admin", "Trader", "Viewer", "actor", "errors", "services"]

Viewer = Annotated[Principal, Depends(require(Role.VIEWER))]
Trader = Annotated[Principal, Depends(require(Role.TRADER))]
Admin = Annotated[Principal, Depends(require(Role.ADMIN))]

_DESCRIPTIONS = {
    400: "The body is not valid JSON.",
    401: "No credentials, or a bad, expired or revoked key or token.",
    403: "The key's role is too low for this route.",
    404: "Not found.",
    409: "Refused (risk manager, or the order's state).",
    422: "Invalid input: the message names the field, what was expected and what was received.",
    429: "Rate limit of the key's role exceeded; see Retry-After.",
    503: "A part of the service (store, model, trading session) is unavailable; the message says why.",
}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for these error codes, plus 401/403/422/429 every protected route has."""
    wanted = sorted({401, 403, 422, 429, *codes})
    return {c: {"model": ErrorOut, "description": _DESCRIPTIONS[c]} for c in wanted}


def services(request: Request) -> Any:
    return request.app.state.services


def actor(principal: Principal) -> Actor:
    """The risk manager's view of the caller (its name is recorded in the audit log)."""
    return Actor(f"api:{principal.name}", principal.role)
