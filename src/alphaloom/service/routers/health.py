"""Liveness, readiness, metrics and the dashboard's entry page (no credentials)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse, Response

from alphaloom.service.metrics import CONTENT_TYPE
from alphaloom.service.routers._common import services
from alphaloom.service.schemas import HealthOut, ReadyOut

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=HealthOut, summary="Liveness: the process answers.")
async def healthz() -> HealthOut:
    return HealthOut()


@router.get(
    "/readyz",
    response_model=ReadyOut,
    summary="Readiness: the state of each dependency.",
    responses={503: {"model": ReadyOut, "description": "Not ready; the dependencies say why."}},
)
async def readyz(request: Request, response: Response) -> ReadyOut:
    svc = services(request)
    degraded: list[str] = []
    store = "ok" if svc.store is not None else svc.problems.get("store", "not open")
    if svc.inference is not None:
        model = svc.inference.model
        registry = f"ok: serving {model.version} ({model.stage})"
        if model.fallback:
            registry = f"degraded: {model.fallback}"
            if model.stage == "fallback":
                degraded.append(f"predictions: {model.fallback}")
        redis = svc.inference.cache.redis_state()
        if redis.startswith("unavailable"):
            redis = f"down: {redis.removeprefix('unavailable: ')}; predictions use the in-process cache"
            degraded.append(f"redis: {redis}")
    else:
        registry = svc.problems.get("inference", "no model loaded")
        redis = "disabled" if not svc.settings.redis_url else "unknown: inference did not start"
    connectors: dict[str, str] = {}
    session = svc.session
    if session is None:
        trading = svc.problems.get("session", "not started")
    elif not session.trading:
        trading = "off"
    else:
        trading = (
            f"error: {session.error}" if session.error else ("finished" if session.finished else "running")
        )
        health = session.exchange.health()
        state = health.breaker_state.value
        connectors[health.venue or "paper"] = state
        svc.metrics.set_breaker("paper", state)
        for why in session.degraded:
            trading += f"; degraded {why}"
            degraded.append(why)
    ready = svc.store is not None and svc.inference is not None and session is not None
    ready = ready and all(s != "open" for s in connectors.values())
    response.status_code = 200 if ready else 503
    return ReadyOut.model_validate(
        {
            "ready": ready,
            "status": ("degraded" if degraded else "ok") if ready else "unavailable",
            "degraded": degraded,
            "dependencies": {
                "store": store,
                "redis": redis,
                "registry": registry,
                "connectors": connectors,
                "trading": trading,
            },
        }
    )


@router.get(
    "/metrics",
    summary="Prometheus metrics.",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format."}},
)
async def metrics(request: Request) -> Response:
    svc = services(request)
    if svc.session is not None:
        svc.metrics.set_trading_state(svc.session.risk.state.value)
    for topic in ("signals", "fills", "risk"):
        svc.metrics.ws_clients.labels(topic).set(svc.hub.count(topic))
    return Response(svc.metrics.render(), media_type=CONTENT_TYPE)


@router.get("/", include_in_schema=False, response_model=None)
async def dashboard(request: Request) -> FileResponse | HTMLResponse:
    from alphaloom.service.app import UI_DIR

    index = UI_DIR / "index.html"
    if index.is_file():
        return FileResponse(index, media_type="text/html")
    return HTMLResponse(
        "<!doctype html><title>alphaloom</title><p>The dashboard assets are not installed; the API is at "
        "<a href='/docs'>/docs</a>.</p>"
    )
