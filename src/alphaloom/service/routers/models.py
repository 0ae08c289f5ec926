"""The model registry's view and the latest A/B comparison."""

from __future__ import annotations

import math
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request

from alphaloom.core.exceptions import DataNotFoundError, did_you_mean
from alphaloom.service.routers._common import Viewer, errors, services
from alphaloom.service.schemas import ABStatus, ModelDetail, ModelVersionOut

router = APIRouter(tags=["models"])
ModelName = Annotated[str, Path(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")]


def _lineage(info: Any) -> dict[str, Any]:
    lin = info.lineage
    to_dict = getattr(lin, "to_dict", None)
    if callable(to_dict):
        return to_dict()
    return {
        "data": str(getattr(lin, "data", "")),
        "feature_config_hash": getattr(lin, "feature_config_hash", ""),
        "code_version": getattr(lin, "code_version", ""),
        "parents": list(getattr(lin, "parents", ())),
    }


def _version(info: Any, serving: str | None) -> ModelVersionOut:
    return ModelVersionOut(
        name=info.name,
        version=info.version,
        kind=info.kind,
        stage=info.stage.value,
        metrics={k: (v if math.isfinite(v) else None) for k, v in info.metrics.items()},
        lineage=_lineage(info),
        created_at=info.created_at,
        aliases=list(info.aliases),
        serving=info.ref == serving,
    )


def _serving(request: Request) -> str | None:
    inference = services(request).inference
    return None if inference is None else inference.model.version


@router.get(
    "/models",
    response_model=list[ModelVersionOut],
    summary="Every registered model version.",
    responses=errors(503),
)
async def models(request: Request, _: Viewer) -> list[ModelVersionOut]:
    from alphaloom.jobs.registry import open_registry

    with open_registry(services(request).ws) as registry:
        infos = registry.list()
    serving = _serving(request)
    return [_version(i, serving) for i in sorted(infos, key=lambda i: (i.name, i.version))]


@router.get(
    "/models/{name}",
    response_model=ModelDetail,
    summary="A model's versions and lineage.",
    responses=errors(404, 503),
)
async def model(request: Request, _: Viewer, name: ModelName) -> ModelDetail:
    from alphaloom.jobs.registry import open_registry

    with open_registry(services(request).ws) as registry:
        infos = registry.list(name)
        if not infos:
            names = sorted({i.name for i in registry.list()})
            raise DataNotFoundError(
                f"no registered model {name!r}.{did_you_mean(name, names)} "
                f"Registered: {', '.join(names) or 'none'}."
            )
        champion = registry.champion(name)
    serving = _serving(request)
    return ModelDetail(
        name=name,
        champion=None if champion is None else champion.version,
        versions=[_version(i, serving) for i in sorted(infos, key=lambda i: i.version)],
    )


@router.get(
    "/ab",
    response_model=ABStatus,
    summary="The latest A/B comparison (champion vs challenger).",
    responses=errors(503),
)
async def ab(request: Request, _: Viewer) -> ABStatus:
    info = services(request).ws.manifest().get("ab_report")
    if not isinstance(info, dict):
        return ABStatus(
            available=False,
            detail="no A/B comparison has been run; run `alphaloom ab report --challenger NAME` to compare.",
        )
    stats = {
        k: (v if not isinstance(v, float) or math.isfinite(v) else None)
        for k, v in info.items()
        if k not in ("champion", "challenger", "path", "decision")
    }
    return ABStatus(
        available=True,
        champion=info.get("champion"),
        challenger=info.get("challenger"),
        decision=None if info.get("decision") is None else str(info["decision"]),
        summary=[stats],
        detail=f"report: {info.get('path', '')}",
    )
