"""``create_app(settings)``: the FastAPI application, its lifespan and error handling.

The lifespan opens the workspace store once, loads the CNN+LSTM once (:func:`~alphaloom.service.inference.
load_forecaster`: the registry's champion, else the latest trained version, said in ``/readyz``), starts the
paper-trading session and the backtest worker, and closes everything on shutdown. Routers read what they
need from ``request.app.state.services`` (a :class:`Services`); tests override pieces of it or the
dependencies.

Errors are always ``{"detail": "..."}``: alphaloom's own exceptions map to 404 (not found, unknown symbol),
422 (bad values), 409 (risk refusals), 503 (a venue or store unavailable); validation errors become one
readable sentence per field.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from alphaloom.core.exceptions import (
    AlphaloomError,
    CacheUnavailableError,
    ConfigError,
    ConnectorError,
    DataError,
    DataNotFoundError,
    EmptyRangeError,
    ModelError,
    NotFittedError,
    RiskLimitError,
    StorageError,
    UnknownSymbolError,
)
from alphaloom.jobs.config import RunConfig
from alphaloom.jobs.workspace import Workspace
from alphaloom.service.auth import KeyStore, TokenSigner
from alphaloom.service.logging import RequestContextMiddleware, configure_logging
from alphaloom.service.metrics import ServiceMetrics
from alphaloom.service.ratelimit import KeyRateLimiter
from alphaloom.service.settings import ServiceSettings
from alphaloom.service.ws import Hub

__all__ = ["API_PREFIX", "Services", "create_app", "keys_path"]

API_PREFIX = "/api/v1"
UI_DIR = Path(__file__).parent / "ui"
logger = logging.getLogger("alphaloom.service")


def keys_path(ws: Workspace) -> Path:
    """The workspace's API keys file."""
    return ws.root / "service" / "api_keys.json"


@dataclass
class Services:
    """What the routes use; built by the lifespan (``None`` where a part could not start, with why)."""

    settings: ServiceSettings
    ws: Workspace
    keys: KeyStore
    tokens: TokenSigner
    limiter: KeyRateLimiter
    metrics: ServiceMetrics
    hub: Hub
    config: RunConfig | None = None
    store: Any = None
    inference: Any = None
    session: Any = None
    backtests: Any = None
    problems: dict[str, str] = field(default_factory=dict)
    forecaster_problem: str = ""
    access_log: bool = True

    def need(self, part: str) -> Any:
        """The part, or a 503-mapped error saying why it is missing."""
        value = getattr(self, part)
        if value is None:
            raise ServiceUnavailable(self.problems.get(part, f"{part} is not available"))
        return value


class ServiceUnavailable(AlphaloomError):
    """A part of the service did not start (mapped to 503 with the reason)."""


def _status_for(exc: AlphaloomError) -> int:
    if isinstance(exc, ServiceUnavailable):
        return 503
    if isinstance(exc, UnknownSymbolError | DataNotFoundError):
        return 404
    if isinstance(exc, RiskLimitError):
        return 409
    if isinstance(exc, ConfigError | EmptyRangeError | DataError):
        return 422
    if isinstance(exc, NotFittedError | ModelError | ConnectorError | StorageError | CacheUnavailableError):
        return 503
    return 500


def _message(exc: BaseException) -> str:
    # UnknownSymbolError is a KeyError: str() would quote the message
    return exc.args[0] if exc.args and isinstance(exc.args[0], str) else str(exc)


def _validation_detail(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
        got = err.get("input")
        shown = repr(got)
        if len(shown) > 80:
            shown = shown[:77] + "..."
        parts.append(f"{loc}: {err.get('msg', 'invalid')} (got {shown})")
    return _redact("invalid request: " + "; ".join(parts) + ". See /docs for the expected schema.")


def _redact(text: str) -> str:
    """Mask credentials (a key pasted into the wrong field) before text is echoed back or logged."""
    try:
        from alphaloom.security.redaction import redact
    except ImportError:
        return text
    return redact(text)


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": _validation_detail(exc)}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 404 and detail == "Not Found":
            detail = "no such route; the API lives under /api/v1 (see /docs)."
        if exc.status_code == 400 and detail == "There was an error parsing the body":
            detail = "the request body is not valid JSON (UTF-8 encoded); see /docs for the expected schema."
        if exc.status_code == 405:
            detail = f"method not allowed here ({detail}); see /docs for the methods of this route."
        return JSONResponse({"detail": detail}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(AlphaloomError)
    async def _ours(request: Request, exc: AlphaloomError) -> JSONResponse:
        status_code = _status_for(exc)
        if status_code >= 500:
            logger.warning("%s %s -> %d: %s", request.method, request.url.path, status_code, _message(exc))
        return JSONResponse({"detail": _redact(_message(exc))}, status_code=status_code)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error in %s %s", request.method, request.url.path)
        return JSONResponse(
            {"detail": f"internal error ({type(exc).__name__}); the service logged it with the request id."},
            status_code=500,
        )


async def _start(services: Services) -> None:
    ws, settings = services.ws, services.settings
    try:
        services.config = ws.load_config() or RunConfig()
    except ConfigError as exc:
        services.problems["config"] = str(exc)
        services.config = RunConfig()
    try:
        services.store = ws.require_store()
    except (DataNotFoundError, StorageError) as exc:
        for part in ("store", "inference", "session", "backtests"):
            services.problems[part] = str(exc)
        return
    services.problems.pop("store", None)
    await _start_inference(services)
    from alphaloom.service.backtests import BacktestJobs

    services.backtests = BacktestJobs(ws, services.config)
    from alphaloom.service.session import TradingSession

    try:
        session = TradingSession(
            ws,
            services.config,
            services.store,
            services.hub,
            replay_interval_s=settings.replay_interval_s,
            replay_bars=settings.replay_bars,
            trade=settings.trade_paper,
            forecaster_problem=services.forecaster_problem,
        )
        await session.start()
        services.session = session
        services.metrics.set_trading_state(session.risk.state.value)
    except AlphaloomError as exc:
        services.problems["session"] = f"the trading session could not start: {exc}"
        logger.warning("trading session not started: %s", exc)


async def _start_inference(services: Services) -> None:
    from alphaloom.jobs.stages import FEATURES_TABLE
    from alphaloom.service.inference import (
        FeatureWindows,
        InferenceService,
        MicroBatcher,
        PredictionCache,
        load_fallback_forecaster,
        load_forecaster,
    )

    settings, ws = services.settings, services.ws
    try:
        try:
            model = load_forecaster(ws, backend=settings.backend)
        except Exception as exc:  # any load failure (corrupt file, bad export, torch error): degrade, not die
            services.forecaster_problem = (
                f"the CNN+LSTM could not be loaded ({type(exc).__name__}: {_message(exc)})"
            )
            logger.warning("%s; falling back to the persistence baseline", services.forecaster_problem)
            assert services.config is not None
            model, frame = load_fallback_forecaster(
                services.store, services.config.symbols, services.forecaster_problem
            )
        else:
            if not services.store.has_frame(FEATURES_TABLE):
                raise DataNotFoundError(
                    f"no stored features in {ws.root}; run `alphaloom features --data-dir {ws.root}`."
                )
            frame = services.store.read_frame(FEATURES_TABLE)
        windows = FeatureWindows(frame, model.feature_names, model.window)
    except Exception as exc:  # the rest of the API (orders, risk, data) serves on; /readyz says why
        why = _message(exc) if isinstance(exc, AlphaloomError | OSError) else f"{type(exc).__name__}: {exc}"
        if services.forecaster_problem:
            why = f"{services.forecaster_problem}, and the persistence fallback failed too ({why})"
        services.problems["inference"] = f"no model to serve: {why}"
        logger.warning("inference not available: %s", why, exc_info=not isinstance(exc, AlphaloomError))
        return
    redis = None
    if settings.redis_url:
        from alphaloom.data.storage.redis_cache import RedisCache

        redis = RedisCache(settings.redis_url, prefix="alphaloom-api", default_ttl_s=settings.cache_ttl_s)
    cache = PredictionCache(settings.cache_size, settings.cache_ttl_s, redis)
    batcher = MicroBatcher(
        model.predictor,
        max_size=settings.batch_max_size,
        max_wait_ms=settings.batch_max_wait_ms,
        enabled=settings.batching,
    )
    batcher.on_batch = services.metrics.batch_size.observe
    service = InferenceService(model, windows, cache, batcher)
    service.on_prediction = lambda cached: services.metrics.predictions.labels(str(cached).lower()).inc()
    services.inference = service
    if model.fallback:
        logger.warning("serving a fallback model: %s", model.fallback)


async def _stop(services: Services) -> None:
    if services.session is not None:
        await services.session.stop()
    if services.inference is not None:
        await services.inference.batcher.aclose()
        if services.inference.cache.redis is not None:
            services.inference.cache.redis.close()
    if services.backtests is not None:
        services.backtests.shutdown()
    if services.store is not None:
        services.store.close()


def create_app(settings: ServiceSettings | None = None) -> FastAPI:
    """Build the API (and mount the dashboard) for ``settings``; nothing starts until the lifespan runs."""
    settings = settings or ServiceSettings()
    ws = Workspace.resolve(settings.data_dir)
    ws.ensure()
    if settings.log_json:
        configure_logging(json_lines=True)
    services = Services(
        settings=settings,
        ws=ws,
        keys=KeyStore(keys_path(ws)),
        tokens=TokenSigner(ws.root / "service" / "token_secret", settings.token_ttl_s),
        limiter=KeyRateLimiter(settings),
        metrics=ServiceMetrics(),
        hub=Hub(),
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await _start(services)
        # What start-up loaded (torch, pandas, the model, the registry client: ~600k objects) would otherwise
        # be rescanned by every full garbage collection, a ~300 ms stop of the event loop that showed as the
        # p99 of /predict under load. Frozen, they are left out of collections; later garbage is not.
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            await _stop(services)

    app = FastAPI(
        title="alphaloom",
        version="1",
        summary="AI trading platform: market data, CNN+LSTM forecasts, RL signals, paper trading, risk.",
        description=(
            "Authenticate with `X-API-Key: <key>` (create one with `alphaloom serve keys create --name N "
            "--role viewer|trader|admin`) or `Authorization: Bearer <token>` from `POST /api/v1/auth/token`. "
            'Roles: viewer < trader < admin. Every error is `{"detail": "..."}`.'
        ),
        lifespan=lifespan,
    )
    app.state.services = services
    _add_error_handlers(app)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST", "PUT", "DELETE"],
            allow_headers=["X-API-Key", "Authorization", "Content-Type", "X-Request-ID"],
        )
    app.add_middleware(RequestContextMiddleware)

    from alphaloom.service.routers import ROUTERS, health

    app.include_router(health.router)
    for router in ROUTERS:
        app.include_router(router, prefix=API_PREFIX)
    if UI_DIR.is_dir():
        app.mount("/ui", StaticFiles(directory=UI_DIR), name="ui")
    return app
