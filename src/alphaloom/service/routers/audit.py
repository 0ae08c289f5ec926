"""The audit log: verify its hash chain, export the regulatory report."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from alphaloom.service.routers._common import Admin, errors, services
from alphaloom.service.schemas import AuditVerifyOut

router = APIRouter(tags=["audit"])


@router.get(
    "/audit/verify",
    response_model=AuditVerifyOut,
    summary="Check the audit log's hash chain.",
    responses=errors(404),
)
async def verify(request: Request, _: Admin) -> AuditVerifyOut:
    from alphaloom.jobs import audit

    result = audit.verify(services(request).ws)
    return AuditVerifyOut(
        ok=result.ok,
        records=result.records,
        head_hash=result.head_hash,
        problems=[f"record {p.record_id}: {p.message}" for p in result.problems],
    )


@router.get(
    "/audit/export",
    summary="Every order and fill with its decision trail, as CSV or JSON.",
    response_class=Response,
    responses={
        200: {"content": {"text/csv": {}, "application/json": {}}, "description": "The report file."},
        **errors(404),
    },
)
async def export(request: Request, _: Admin, format: Literal["csv", "json"] = Query("csv")) -> Response:
    from alphaloom.jobs import audit

    with tempfile.TemporaryDirectory(prefix="alphaloom-audit-") as tmp:
        out = Path(tmp) / f"audit.{format}"
        audit.export_report(services(request).ws, fmt=format, out=out)
        data = out.read_bytes()
    media = "text/csv" if format == "csv" else "application/json"
    return Response(
        data,
        media_type=media,
        headers={"Content-Disposition": f'attachment; filename="alphaloom-audit.{format}"'},
    )
