"""Backtests as background jobs: start, poll, fetch the offline HTML tearsheet."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request
from fastapi.responses import FileResponse

from alphaloom.core.exceptions import DataNotFoundError
from alphaloom.service.routers._common import Trader, Viewer, errors, services
from alphaloom.service.schemas import BacktestJob, BacktestRequest

router = APIRouter(tags=["backtests"])
JobId = Annotated[str, Path(min_length=1, max_length=32, pattern=r"^[0-9a-f]+$")]


@router.post(
    "/backtests",
    response_model=BacktestJob,
    status_code=202,
    summary="Start a backtest job.",
    responses=errors(400, 404, 503),
)
async def start(request: Request, body: BacktestRequest, _: Trader) -> BacktestJob:
    svc = services(request)
    jobs = svc.need("backtests")
    job = jobs.submit(body.symbols, body.strategy, svc.need("store").symbols())
    return BacktestJob.model_validate(job.view())


@router.get(
    "/backtests",
    response_model=list[BacktestJob],
    summary="Backtest jobs, newest first.",
    responses=errors(503),
)
async def list_jobs(request: Request, _: Viewer) -> list[BacktestJob]:
    return [BacktestJob.model_validate(j.view()) for j in services(request).need("backtests").list()]


@router.get(
    "/backtests/{job_id}",
    response_model=BacktestJob,
    summary="One job's state and statistics.",
    responses=errors(404, 503),
)
async def get_job(request: Request, _: Viewer, job_id: JobId) -> BacktestJob:
    return BacktestJob.model_validate(services(request).need("backtests").get(job_id).view())


@router.get(
    "/backtests/{job_id}/report",
    summary="The job's self-contained HTML tearsheet.",
    response_class=FileResponse,
    responses={200: {"content": {"text/html": {}}, "description": "HTML report."}, **errors(404, 409, 503)},
)
async def report(request: Request, _: Viewer, job_id: JobId) -> FileResponse:
    job = services(request).need("backtests").get(job_id)
    if job.report is None or not job.report.is_file():
        raise DataNotFoundError(
            f"job {job_id} has no report yet (status {job.status}"
            + (f": {job.error}" if job.error else "")
            + "); poll GET /api/v1/backtests/{id} until it is done."
        )
    return FileResponse(job.report, media_type="text/html")
